//! Snapshot tests of `scl check` on the invalid programs in
//! `tests/diagnostics/`: each snapshot shows the source and the rendered
//! diagnostics together. The programs are checked against the bundled plant's
//! deployment (`examples/plant/deploy.toml`) so deployment-name codes fire.
//! Refresh with `cargo insta review` (or `INSTA_UPDATE=always`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use scl_runtime::check::{CheckFormat, CheckRequest, run};

/// Codes that are warnings: their programs check with exit code 0.
const WARNING_CODES: &[&str] = &["SCL0305"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn check(path: &Path, format: CheckFormat) -> (i32, String, String) {
    let request = CheckRequest {
        files: vec![path.to_path_buf()],
        kind: None,
        format,
        config: Some(workspace().join("examples/plant/deploy.toml")),
        colour: false,
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = run(&request, &mut out, &mut err);
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

fn programs() -> Vec<(String, PathBuf)> {
    let dir = workspace().join("tests/diagnostics");
    let mut programs: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .expect("tests/diagnostics")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "scl"))
        .map(|p| {
            (
                p.file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string(),
                p,
            )
        })
        .collect();
    programs.sort();
    programs
}

fn expected_exit(name: &str) -> i32 {
    if WARNING_CODES.iter().any(|code| name.starts_with(code)) {
        0
    } else {
        1
    }
}

#[test]
fn invalid_programs() {
    let root = workspace().display().to_string();
    insta::glob!("../../tests/diagnostics", "*.scl", |path| {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let source = std::fs::read_to_string(path).expect("readable test program");
        let (code, _, rendered) = check(path, CheckFormat::Human);
        // Paths in the output are the ones given; make them stable across machines.
        let rendered = rendered.replace(&root, "<root>");
        assert_eq!(code, expected_exit(name), "{}:\n{rendered}", path.display());
        insta::assert_snapshot!(format!(
            "----- SOURCE CODE\n{source}\n----- DIAGNOSTICS\n{rendered}"
        ));
    });
}

/// Each program is named after the code it demonstrates, and that code is
/// what `scl check --format json` reports; together the programs cover every
/// code in the registry.
#[test]
fn every_code_is_demonstrated() {
    let programs = programs();
    assert!(
        programs.len() >= 60,
        "at least 60 invalid programs, found {}",
        programs.len()
    );
    let mut covered = BTreeSet::new();
    for (name, path) in &programs {
        let expected = name.get(..7).unwrap_or_default();
        let (code, json, _) = check(path, CheckFormat::Json);
        assert_eq!(code, expected_exit(name), "{name}");
        let codes: Vec<String> = json
            .lines()
            .map(|line| {
                let value: serde_json::Value =
                    serde_json::from_str(line).expect("one JSON object per line");
                for field in ["code", "severity", "message", "file", "line", "column"] {
                    assert!(
                        value.get(field).is_some(),
                        "{name}: JSON diagnostic lacks `{field}`"
                    );
                }
                value["code"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        assert!(
            codes.iter().any(|c| c == expected),
            "{name}: expected {expected}, got {codes:?}"
        );
        covered.insert(expected.to_string());
    }
    let missing: Vec<&str> = scl_lang::codes::ALL
        .iter()
        .map(|c| c.id)
        .filter(|id| !covered.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "codes without an invalid program: {missing:?}"
    );
}

/// One mistake, one diagnostic: each program (except the one that shows
/// recovery from three mistakes) reports exactly one diagnostic.
#[test]
fn one_mistake_one_diagnostic() {
    for (name, path) in programs() {
        let (_, json, _) = check(&path, CheckFormat::Json);
        let expected = if name.contains("three_errors") { 3 } else { 1 };
        assert_eq!(json.lines().count(), expected, "{name}: {json}");
    }
}

#[test]
fn diagnostics_page_is_generated_from_the_registry() {
    let page = std::fs::read_to_string(workspace().join("docs/diagnostics.md"))
        .expect("docs/diagnostics.md");
    assert_eq!(
        page,
        scl_lang::codes::render_markdown(),
        "regenerate with `cargo run -p scl-runtime --bin scl -- codes > docs/diagnostics.md`"
    );
}
