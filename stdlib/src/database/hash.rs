//! A fast hash for the module's small caches (rewritten SQL by text, column lists by statement):
//! the keys come from deployed scripts, not from the network, so a keyed hash's protection
//! against chosen collisions buys nothing there, while its cost shows on every statement.
//! Word-at-a-time multiply-rotate, as rustc's own `FxHasher`.

use std::hash::{BuildHasherDefault, Hasher};

/// [`FastHasher`] for `HashMap`s.
pub type FastHash = BuildHasherDefault<FastHasher>;

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// See the module documentation.
#[derive(Clone, Copy, Debug, Default)]
pub struct FastHasher {
    hash: u64,
}

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The tail's length goes into its free top byte, so `"\0"` and `""` differ.
            word[7] = rest.len() as u8;
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn equal_texts_hash_alike_and_different_ones_apart() {
        let hash = |text: &str| FastHash::default().hash_one(text);
        assert_eq!(hash("SELECT 1"), hash("SELECT 1"));
        assert_ne!(hash("SELECT 1"), hash("SELECT 2"));
        assert_ne!(hash("SELECT 12345678"), hash("SELECT 12345679"));
        assert_ne!(hash(""), hash("\0"));
    }
}
