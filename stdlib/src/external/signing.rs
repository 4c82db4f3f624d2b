//! Standard Webhooks signatures (seed 004's HMAC signing, in the format of
//! <https://www.standardwebhooks.com>).
//!
//! The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, where the id is the call's
//! delivery id (stable across retries), the timestamp is the attempt's Unix time in seconds,
//! and the body is the exact bytes sent (empty for GET and DELETE, whose query is therefore
//! not covered). `webhook-signature` is `v1,<base64 of HMAC-SHA256(key, content)>`, once per
//! secret, separated by spaces, so a receiver that knows either the old or the new secret
//! accepts requests during a rotation.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::config::SigningSecret;

/// The `webhook-signature` value for `body`, signed with every secret.
pub fn signature_header(
    secrets: &[SigningSecret],
    id: &str,
    unix_seconds: u64,
    body: &str,
) -> String {
    let content = format!("{id}.{unix_seconds}.{body}");
    secrets
        .iter()
        .map(|secret| format!("v1,{}", sign(secret, content.as_bytes())))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Base64 of HMAC-SHA256 of `content` under `secret`.
fn sign(secret: &SigningSecret, content: &[u8]) -> String {
    // HMAC accepts keys of any length, so creating it cannot fail; fall back to an empty
    // signature rather than panic if the crate ever says otherwise.
    match Hmac::<Sha256>::new_from_slice(secret.key()) {
        Ok(mut mac) => {
            mac.update(content);
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries.
    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        let secret = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let header = signature_header(
            &[secret],
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(header, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    /// The Rust receiver of `docs/modules/external-system.md` (the same code, formatted), so
    /// that it stays correct and compiles.
    mod receiver_from_the_docs {
        use base64::{Engine as _, engine::general_purpose::STANDARD};
        use hmac::{Hmac, Mac};
        use sha2::Sha256;

        /// True when the request was signed with one of `secrets` ("whsec_..." strings).
        pub fn verify_webhook(
            secrets: &[&str],
            id: &str,
            timestamp: &str,
            signatures: &str,
            body: &[u8],
            now_unix_s: i64,
        ) -> bool {
            let Ok(sent_at) = timestamp.parse::<i64>() else {
                return false;
            };
            if (now_unix_s - sent_at).abs() > 300 {
                return false;
            }
            secrets.iter().any(|secret| {
                let Ok(key) = STANDARD.decode(secret.trim_start_matches("whsec_")) else {
                    return false;
                };
                signatures
                    .split(' ')
                    .filter_map(|s| s.strip_prefix("v1,"))
                    .any(|candidate| {
                        let Ok(candidate) = STANDARD.decode(candidate) else {
                            return false;
                        };
                        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
                            return false;
                        };
                        mac.update(format!("{id}.{timestamp}.").as_bytes());
                        mac.update(body);
                        mac.verify_slice(&candidate).is_ok() // constant-time comparison
                    })
            })
        }
    }

    #[test]
    fn the_documented_rust_receiver_accepts_our_signatures() {
        let old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let new = "whsec_c2VjcmV0LWtleS1mb3ItdGhlLXJvdGF0aW9uLXRlc3Q=";
        let secrets = [
            SigningSecret::parse(new).unwrap(),
            SigningSecret::parse(old).unwrap(),
        ];
        let header = signature_header(&secrets, "id-9", 1_700_000_000, "{\"a\":1}");
        let verify = receiver_from_the_docs::verify_webhook;
        let now = 1_700_000_100;
        assert!(verify(
            &[old],
            "id-9",
            "1700000000",
            &header,
            b"{\"a\":1}",
            now
        ));
        assert!(verify(
            &[new],
            "id-9",
            "1700000000",
            &header,
            b"{\"a\":1}",
            now
        ));
        assert!(!verify(
            &[old],
            "id-9",
            "1700000000",
            &header,
            b"{\"a\":2}",
            now
        ));
        assert!(!verify(
            &[old],
            "id-8",
            "1700000000",
            &header,
            b"{\"a\":1}",
            now
        ));
        assert!(!verify(
            &[old],
            "id-9",
            "1700000000",
            &header,
            b"{\"a\":1}",
            now + 1000
        ));
    }

    #[test]
    fn every_secret_signs() {
        let header = signature_header(
            &[
                SigningSecret::from_key(b"old".to_vec()),
                SigningSecret::from_key(b"new".to_vec()),
            ],
            "id",
            1,
            "{}",
        );
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|part| part.starts_with("v1,")));
        assert_ne!(parts[0], parts[1]);
    }
}
