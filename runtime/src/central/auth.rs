//! Key checks for the inbound API and the admin routes.
//!
//! Keys are stored as SHA-256 hashes (the deployment's `sha256`). A presented
//! key is hashed once and compared with **every** stored hash in constant
//! time; the index of the match is selected without branching, so neither the
//! time taken nor an early exit tells a caller which key (or whether a
//! disabled key) matched.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::deployment::ApiKeyDef;

/// One stored key: its name, its hash and whether it is enabled.
#[derive(Clone)]
struct StoredKey {
    /// Shared with every request that presents the key (no copy per call).
    name: Arc<str>,
    hash: [u8; 32],
    enabled: bool,
}

/// The keys of one kind (API or admin), ready for constant-time lookup.
#[derive(Clone, Default)]
pub(crate) struct KeyTable {
    keys: Vec<StoredKey>,
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: hashes stay out of debug output too.
        f.debug_list()
            .entries(self.keys.iter().map(|k| &k.name))
            .finish()
    }
}

/// What a presented key turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyCheck {
    /// An enabled key, by name.
    Valid(Arc<str>),
    /// No stored key matches, or the matching key is disabled (one answer
    /// for both, so callers cannot tell them apart).
    Invalid,
}

impl KeyTable {
    /// Builds the table; hashes that are not 64 hex digits were rejected when
    /// the deployment was validated, so any left are skipped here.
    pub(crate) fn new(keys: &BTreeMap<String, ApiKeyDef>) -> KeyTable {
        let keys = keys
            .iter()
            .filter_map(|(name, def)| {
                decode_hex(&def.sha256).map(|hash| StoredKey {
                    name: Arc::from(name.as_str()),
                    hash,
                    enabled: def.enabled,
                })
            })
            .collect();
        KeyTable { keys }
    }

    /// Checks a presented key (the raw header bytes).
    pub(crate) fn check(&self, presented: &[u8]) -> KeyCheck {
        let presented_hash: [u8; 32] = Sha256::digest(presented).into();
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, key) in self.keys.iter().enumerate() {
            let equal = presented_hash.ct_eq(&key.hash);
            index = u32::conditional_select(&index, &(i as u32), equal);
            found |= equal;
        }
        if !bool::from(found) {
            return KeyCheck::Invalid;
        }
        match self.keys.get(index as usize) {
            Some(key) if key.enabled => KeyCheck::Valid(Arc::clone(&key.name)),
            _ => KeyCheck::Invalid,
        }
    }
}

fn decode_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let high = (pair[0] as char).to_digit(16)?;
        let low = (pair[1] as char).to_digit(16)?;
        out[i] = (high * 16 + low) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::sha256_hex;

    fn table() -> KeyTable {
        let mut keys = BTreeMap::new();
        keys.insert(
            "erp".to_string(),
            ApiKeyDef {
                sha256: sha256_hex("good"),
                enabled: true,
            },
        );
        keys.insert(
            "old".to_string(),
            ApiKeyDef {
                sha256: sha256_hex("retired").to_uppercase(),
                enabled: false,
            },
        );
        KeyTable::new(&keys)
    }

    #[test]
    fn finds_enabled_keys_and_rejects_the_rest() {
        let table = table();
        assert_eq!(table.check(b"good"), KeyCheck::Valid("erp".into()));
        assert_eq!(table.check(b"retired"), KeyCheck::Invalid);
        assert_eq!(table.check(b"nope"), KeyCheck::Invalid);
        assert_eq!(table.check(b""), KeyCheck::Invalid);
        assert_eq!(KeyTable::default().check(b"good"), KeyCheck::Invalid);
    }

    #[test]
    fn debug_output_has_names_only() {
        let shown = format!("{:?}", table());
        assert_eq!(shown, r#"["erp", "old"]"#);
    }
}
