//! The shared part of the in-tree fuzz harness, included by each crate's
//! `fuzz_*` tests with `#[path = "../../tests/fuzz/harness.rs"] mod harness;`.
//!
//! Every target is a proptest property with a fixed number of cases and a
//! fixed seed, so a CI run is bounded and reproducible, plus a replay of the
//! checked-in corpus under `tests/fuzz/corpus/<target>/`. A longer, fresh run
//! is the same test with proptest's own variables:
//!
//! ```sh
//! PROPTEST_CASES=100000 PROPTEST_RNG_SEED=$RANDOM cargo nextest run --workspace fuzz_
//! ```
//!
//! An input that once failed is added to the corpus as a file, so every
//! later run replays it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use proptest::test_runner::{Config, RngSeed};

/// The seed of CI runs (`PROPTEST_RNG_SEED` overrides it).
pub const FIXED_SEED: u64 = 0x5c1_f022;

/// A proptest configuration with `cases` cases unless `PROPTEST_CASES` is
/// set, a fixed seed unless `PROPTEST_RNG_SEED` is set, and no failure
/// files written into the source tree (failures go into the corpus by hand).
pub fn config(cases: u32) -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(FIXED_SEED);
    }
    config.failure_persistence = None;
    config
}

/// The repository's root directory.
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("a crate inside the workspace")
        .to_path_buf()
}

/// Every file (recursively, sorted) under `tests/fuzz/corpus/<target>` and
/// the extra repository folders given, with its bytes.
pub fn corpus(target: &str, extra_folders: &[&str]) -> Vec<(PathBuf, Vec<u8>)> {
    let root = repository_root();
    let mut files = Vec::new();
    collect(&root.join("tests/fuzz/corpus").join(target), &mut files);
    for folder in extra_folders {
        collect(&root.join(folder), &mut files);
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("a readable corpus file");
            (path, bytes)
        })
        .collect()
}

fn collect(folder: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.file_name().and_then(|n| n.to_str()) != Some("README.md") {
            files.push(path);
        }
    }
}

/// Runs `check` on every corpus input and fails naming every input that
/// failed (a panic inside `check` counts as a failure of that input).
pub fn replay(inputs: &[(PathBuf, Vec<u8>)], check: impl Fn(&[u8]) -> Result<(), String>) {
    let mut failures = Vec::new();
    for (path, bytes) in inputs {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(bytes)));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(problem)) => failures.push(format!("{}: {problem}", path.display())),
            Err(_) => failures.push(format!("{}: panicked", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus inputs failed:\n{}",
        failures.len(),
        inputs.len(),
        failures.join("\n")
    );
}

/// Small deterministic mutations of a seed input (the classic fuzzer moves:
/// delete, duplicate, insert a piece, flip a byte, splice), driven by `ops`.
pub fn mutate(seed: &[u8], ops: &[(u8, usize, usize)], pieces: &[&[u8]]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for &(op, at, arg) in ops {
        let len = bytes.len();
        let at = if len == 0 { 0 } else { at % (len + 1) };
        match op % 5 {
            0 => {
                let end = (at + arg % 16).min(len);
                bytes.drain(at..end);
            }
            1 => {
                let end = (at + arg % 32).min(len);
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            2 if !pieces.is_empty() => {
                let piece = pieces[arg % pieces.len()];
                bytes.splice(at..at, piece.iter().copied());
            }
            3 if at < len => bytes[at] ^= 1 << (arg % 8),
            _ => {
                let from = if len == 0 { 0 } else { arg % len };
                let end = (from + 8).min(len);
                let copy = bytes[from..end].to_vec();
                bytes.splice(at..at, copy);
            }
        }
    }
    bytes
}
