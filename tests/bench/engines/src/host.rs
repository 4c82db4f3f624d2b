//! What every engine's host side shares: the seeded random generator that `rand(n)` calls,
//! the `RustData` objects of `sort_userdata`, and the hash results are compared by.
//!
//! `rand` is a xorshift generator reset before each run, so every engine that calls it in
//! the same order (the scripts do) builds the same 10,000 strings and must sort them into
//! the same sequence.

use std::cell::Cell;

thread_local! {
    static STATE: Cell<u64> = const { Cell::new(SEED) };
}

const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

pub fn reset_rand() {
    STATE.with(|s| s.set(SEED));
}

/// A number in `0..n` (`n > 0`).
pub fn rand(n: i64) -> i64 {
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x % n as u64) as i64
    })
}

/// The host object of `sort_userdata`: a string the script can only compare.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RustData(pub String);

pub const CHARSET: &str = "0123456789abcdef";

pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

pub fn fnv_extend(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= *byte as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

pub fn fnv(bytes: &[u8]) -> u64 {
    fnv_extend(FNV_OFFSET, bytes)
}
