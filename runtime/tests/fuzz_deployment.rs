//! Fuzz target of the deployment file loader (`Deployment::load`): any bytes
//! — arbitrary, or real deployment files mutated byte by byte and line by
//! line — give a deployment or errors that each name the file and a real
//! position (line and column from 1, inside the file), never a panic.
//! Corpus: `tests/fuzz/corpus/deployment/` plus `examples/`. See
//! `tests/fuzz/harness.rs` for longer runs.

#[path = "../../tests/fuzz/harness.rs"]
mod harness;

use proptest::prelude::*;
use scl_runtime::deployment::Deployment;

fn seeds() -> &'static [(std::path::PathBuf, Vec<u8>)] {
    static SEEDS: std::sync::OnceLock<Vec<(std::path::PathBuf, Vec<u8>)>> =
        std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        harness::corpus("deployment", &["examples"])
            .into_iter()
            .filter(|(path, _)| path.extension().is_some_and(|e| e == "toml"))
            .collect()
    })
}

const PIECES: &[&[u8]] = &[
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"=",
    b"\"",
    b"'''",
    b"\"\"\"",
    b"{",
    b"}",
    b",",
    b"\n",
    b"#",
    b"\\u",
    b"\\",
    b"0x",
    b"1e999",
    b"-",
    b"inf",
    b"nan",
    b"9999999999999999999999",
    b"[[site]]\nname = \"x\"\n",
    b"[central]\n",
    b"[api_methods.M]\nscript = \"none.scl\"\n",
    b"approved_keys = [\"nobody\"]\n",
    b"when = \"Speed >\"\n",
    b"kind = \"alarm\"\n",
    b"every_s = 0\n",
    b"timeout_s = -1\n",
    b"max_body_bytes = 18446744073709551615\n",
    b"1979-05-27T07:32:00Z",
    b"\xff",
    b"\xc3",
    b"\0",
    b"\xef\xbb\xbf",
];

/// Loads `bytes` as a deployment file and checks every error names a
/// position inside it.
fn loader_holds(bytes: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("deploy.toml");
    std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
    let lines = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
    match Deployment::load(&path) {
        Ok(deployment) => {
            // Everything a node does with a loaded deployment first.
            let _ = deployment.validate();
            let _ = deployment.scripts();
            let _ = deployment.names();
            let _ = deployment.base_dir();
            Ok(())
        }
        Err(errors) => {
            if errors.is_empty() {
                return Err("an error without any message".into());
            }
            for error in errors {
                let shown = error.to_string();
                if error.file != path
                    || error.line == 0
                    || error.column == 0
                    || error.line > lines
                    || error.message.trim().is_empty()
                    || !shown.starts_with(&format!(
                        "{}:{}:{}: ",
                        path.display(),
                        error.line,
                        error.column
                    ))
                {
                    return Err(format!(
                        "an error without a position: {error:?} ({lines} lines)"
                    ));
                }
            }
            Ok(())
        }
    }
}

#[test]
fn fuzz_deployment_corpus_replays() {
    assert!(
        seeds().len() >= 5,
        "only {} deployment seeds",
        seeds().len()
    );
    harness::replay(seeds(), loader_holds);
}

/// Whole lines moved around: sections end up in the wrong place, keys under
/// the wrong table, duplicates.
fn shuffle_lines(seed: &[u8], moves: &[(usize, usize, bool)]) -> Vec<u8> {
    let mut lines: Vec<&[u8]> = seed.split(|&b| b == b'\n').collect();
    for &(from, to, duplicate) in moves {
        if lines.is_empty() {
            break;
        }
        let from = from % lines.len();
        let line = lines[from];
        if !duplicate {
            lines.remove(from);
        }
        let to = to % (lines.len() + 1);
        lines.insert(to, line);
    }
    lines.join(&b'\n')
}

proptest! {
    #![proptest_config(harness::config(1_000))]

    #[test]
    fn fuzz_deployment_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        loader_holds(&bytes).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn fuzz_deployment_mutated_files(
        pick in any::<usize>(),
        ops in prop::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 1..6),
    ) {
        let seed = &seeds()[pick % seeds().len()].1;
        loader_holds(&harness::mutate(seed, &ops, PIECES)).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn fuzz_deployment_shuffled_lines(
        pick in any::<usize>(),
        moves in prop::collection::vec((any::<usize>(), any::<usize>(), any::<bool>()), 1..4),
    ) {
        let seed = &seeds()[pick % seeds().len()].1;
        loader_holds(&shuffle_lines(seed, &moves)).map_err(TestCaseError::fail)?;
    }
}

/// Bytes that are not UTF-8 are an error at the line and column of the
/// first bad byte (this used to be reported at line 0, column 0).
#[test]
fn fuzz_deployment_non_utf8_names_the_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("deploy.toml");
    std::fs::write(&path, b"data_dir = \"x\"\n[central]\nlisten = \"\xff\"\n").expect("write");
    let errors = Deployment::load(&path).expect_err("not UTF-8");
    assert_eq!((errors[0].line, errors[0].column), (3, 11), "{errors:?}");
    assert!(errors[0].message.contains("UTF-8"), "{errors:?}");
}
