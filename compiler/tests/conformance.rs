//! Runs every program of `tests/conformance/` (at the workspace root) under
//! the JIT and the reference evaluator and checks its `// expect:` or
//! `// expect-error:` directive.

mod common;

use std::path::PathBuf;

use scl_compiler::{Backend, CallOptions, Limits};

#[test]
fn conformance_programs() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/conformance");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/conformance exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "scl"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 40,
        "expected the conformance corpus, found {} programs",
        paths.len()
    );
    let mut failures = Vec::new();
    for path in &paths {
        let source = std::fs::read_to_string(path).unwrap();
        if let Err(message) = check_program(&source) {
            failures.push(format!(
                "{}: {message}",
                path.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} programs failed:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
}

fn directive<'a>(source: &'a str, name: &str) -> Option<&'a str> {
    source
        .lines()
        .take_while(|l| l.starts_with("//"))
        .find_map(|l| l.strip_prefix(name).map(str::trim))
}

fn check_program(source: &str) -> Result<(), String> {
    let script = common::engine()
        .compile(source, &scl_compiler::CompileOptions::default())
        .map_err(|e| format!("does not compile: {e}"))?;
    let args: serde_json::Value = match directive(source, "// args:") {
        Some(text) => serde_json::from_str(text).map_err(|e| format!("bad args directive: {e}"))?,
        None => serde_json::json!({}),
    };
    let mut results = Vec::new();
    // Quick code, optimized code and the evaluator must agree.
    for backend in [Backend::Jit, Backend::JitOptimized, Backend::Eval] {
        let options = CallOptions {
            limits: Limits::default(),
            backend,
            ..CallOptions::default()
        };
        results.push(script.call_main_json(&args, &options).result);
    }
    for (other, name) in [(1, "optimized JIT"), (2, "evaluator")] {
        if results[0] != results[other] {
            return Err(format!(
                "quick JIT and {name} disagree: {:?} vs {:?}",
                results[0], results[other]
            ));
        }
    }
    let result = results.remove(0);
    if let Some(expected) = directive(source, "// expect:") {
        let expected: serde_json::Value =
            serde_json::from_str(expected).map_err(|e| format!("bad expect directive: {e}"))?;
        match result {
            Ok(value) if value.to_json() == expected => Ok(()),
            Ok(value) => Err(format!("expected {expected}, got {}", value.to_json())),
            Err(error) => Err(format!("expected {expected}, failed with {error}")),
        }
    } else if let Some(expected) = directive(source, "// expect-error:") {
        match result {
            Err(error) if format!("{}/{}", error.kind, error.code) == expected => Ok(()),
            Err(error) => Err(format!("expected error {expected}, got {error}")),
            Ok(value) => Err(format!(
                "expected error {expected}, got {}",
                value.to_json()
            )),
        }
    } else {
        Err("no expect directive".to_string())
    }
}
