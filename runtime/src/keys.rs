//! API keys: generation and hashing. Keys are stored only as SHA-256 hashes
//! and compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A fresh random key: `scl_` and 43 URL-safe base64 characters (256 bits).
/// Fails only when the operating system has no random source.
pub fn generate_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes);
    Ok(format!("scl_{encoded}"))
}

/// Lower-case hex SHA-256 of a key.
pub fn sha256_hex(key: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(key.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    hex
}

/// Compares a presented key with a stored hex hash (either case) in constant
/// time. Runs on every internal request, so it compares digests as bytes
/// rather than formatting the presented one as hex.
pub fn key_matches(presented: &str, stored_hex: &str) -> bool {
    let presented_hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut stored = [0u8; 32];
    let bytes = stored_hex.as_bytes();
    let mut valid = subtle::Choice::from(u8::from(bytes.len() == 64));
    for (slot, pair) in stored.iter_mut().zip(bytes.chunks_exact(2)) {
        let (high, low) = (hex_value(pair[0]), hex_value(pair[1]));
        valid &= subtle::Choice::from(u8::from(high.is_some() && low.is_some()));
        *slot = (high.unwrap_or(0) << 4) | low.unwrap_or(0);
    }
    bool::from(valid & presented_hash.ct_eq(&stored))
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_distinct_and_verify() {
        let a = generate_key().expect("random source");
        let b = generate_key().expect("random source");
        assert_ne!(a, b);
        assert!(a.starts_with("scl_"));
        assert!(key_matches(&a, &sha256_hex(&a)));
        assert!(!key_matches(&b, &sha256_hex(&a)));
        assert!(key_matches(&a, &sha256_hex(&a).to_uppercase()));
        assert!(!key_matches(&a, &sha256_hex(&a)[..62]));
        assert!(!key_matches(&a, ""));
        let mut bad = sha256_hex(&a);
        bad.replace_range(0..1, "g");
        assert!(!key_matches(&a, &bad));
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn known_hash() {
        assert_eq!(
            sha256_hex("password"),
            "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        );
    }
}
