//! Fuzz target of the checker with the real module table: mutated scripts
//! from the corpus (`tests/fuzz/corpus/scl/`, the conformance, diagnostics
//! and example scripts) are parsed and checked as every script kind, with
//! and without deployment names. The checker never panics, always returns a
//! program or diagnostics, and every diagnostic has a stable code and a span
//! inside the text. See `tests/fuzz/harness.rs` for longer runs.

#[path = "../../tests/fuzz/harness.rs"]
mod harness;

use proptest::prelude::*;
use scl_lang::checker::{CheckOptions, check};
use scl_lang::modules::{DeploymentNames, ScriptKind, TemplateNames};
use scl_lang::parse;
use scl_stdlib::signatures::module_table;

fn seeds() -> &'static [(std::path::PathBuf, Vec<u8>)] {
    static SEEDS: std::sync::OnceLock<Vec<(std::path::PathBuf, Vec<u8>)>> =
        std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        harness::corpus(
            "scl",
            &["tests/conformance", "tests/diagnostics", "examples"],
        )
        .into_iter()
        .filter(|(path, _)| path.extension().is_some_and(|e| e == "scl"))
        .collect()
    })
}

const PIECES: &[&[u8]] = &[
    b"Attributes.Get(\"Speed\")",
    b"Route.To(\"PUMP-001\").",
    b"ExternalSystem.Call(\"MES\", ",
    b"Notify.To(\"Operators\").Send(",
    b"Database.Connection(\"Historian\")",
    b"Json.Parse(",
    b" as int",
    b" as json",
    b" as list<int>",
    b"null",
    b"?",
    b"??",
    b"[]",
    b"{}",
    b"x",
    b"main",
    b"File.",
    b"Process.",
    b"Env.",
    b"std::",
    b"{ a: 1 }",
    b".len()",
    b"[0]",
    b"\"",
    b";",
    b"}",
];

fn names() -> DeploymentNames {
    DeploymentNames {
        external_systems: vec![("MES".to_string(), vec!["PostReading".to_string()])],
        notification_lists: vec!["Operators".to_string()],
        databases: vec!["Historian".to_string()],
        instances: vec![("PUMP-001".to_string(), "Pump".to_string())],
        templates: vec![TemplateNames {
            name: "Pump".to_string(),
            attributes: vec!["Speed".to_string()],
            scripts: vec!["ActiveAlarms".to_string()],
        }],
        shared_scripts: vec!["Helpers".to_string()],
    }
}

fn checker_holds(bytes: &[u8]) -> Result<(), String> {
    let source = String::from_utf8_lossy(bytes);
    let parsed = parse(&source);
    let table = module_table();
    let names = names();
    for kind in [
        None,
        Some(ScriptKind::Api),
        Some(ScriptKind::Instance),
        Some(ScriptKind::Shared),
        Some(ScriptKind::Alarm),
    ] {
        for deployment in [None, Some(&names)] {
            let options = CheckOptions {
                modules: &table,
                kind,
                names: deployment,
                template: Some("Pump"),
                require_main: true,
            };
            let checked = check(&parsed, &options);
            for diagnostic in &checked.diagnostics {
                let span = diagnostic.primary.span;
                if span.start > span.end || span.end as usize > source.len() {
                    return Err(format!("span {span:?} outside the text: {diagnostic:?}"));
                }
                if !diagnostic.code.id.starts_with("SCL") {
                    return Err(format!("no stable code: {diagnostic:?}"));
                }
            }
            // A file with syntax errors is never a clean program.
            if parsed.has_errors() && checked.into_program().is_ok() {
                return Err("a program with syntax errors checked clean".into());
            }
        }
    }
    Ok(())
}

#[test]
fn fuzz_checker_corpus_replays() {
    assert!(seeds().len() > 100, "only {} corpus inputs", seeds().len());
    harness::replay(seeds(), checker_holds);
}

proptest! {
    #![proptest_config(harness::config(1_000))]

    #[test]
    fn fuzz_checker_mutated_scripts(
        pick in any::<usize>(),
        ops in prop::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 1..6),
    ) {
        let seed = &seeds()[pick % seeds().len()].1;
        let bytes = harness::mutate(seed, &ops, PIECES);
        checker_holds(&bytes).map_err(TestCaseError::fail)?;
    }
}
