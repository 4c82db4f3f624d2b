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
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares a presented key with a stored hex hash in constant time.
pub fn key_matches(presented: &str, stored_hex: &str) -> bool {
    let presented_hash = sha256_hex(presented);
    presented_hash
        .as_bytes()
        .ct_eq(stored_hex.to_ascii_lowercase().as_bytes())
        .into()
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
    }

    #[test]
    fn known_hash() {
        assert_eq!(
            sha256_hex("password"),
            "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        );
    }
}
