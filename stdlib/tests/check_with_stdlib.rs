//! The checker against the real module table: every checker code's example
//! in `codes.rs` triggers exactly that code, the language.md scripts and the
//! example plant's scripts check clean with their kinds, the diagnostics
//! corpus (`tests/diagnostics/SCLnnnn_*.scl`) gives its file's code and only
//! that, and the conformance programs check clean.

use std::path::{Path, PathBuf};

use scl_lang::checker::{CheckOptions, check};
use scl_lang::modules::{DeploymentNames, ModuleTable, ScriptKind, TemplateNames};
use scl_lang::span::line_column;
use scl_lang::{codes, parse};
use scl_stdlib::signatures::module_table;

/// The names of `examples/plant/deploy.toml`.
fn plant_names() -> DeploymentNames {
    let strings = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    DeploymentNames {
        external_systems: vec![("MES".to_string(), strings(&["PostReading", "GetOrder"]))],
        notification_lists: strings(&["Operators"]),
        databases: strings(&["Historian"]),
        instances: vec![
            ("PUMP-001".to_string(), "Pump".to_string()),
            ("PUMP-002".to_string(), "Pump".to_string()),
        ],
        templates: vec![TemplateNames {
            name: "Pump".to_string(),
            attributes: strings(&["Speed", "Running", "Temperature"]),
            scripts: strings(&["ReadTemp", "ActiveAlarms"]),
        }],
        shared_scripts: strings(&["Helpers"]),
    }
}

/// Every diagnostic (parser's, then checker's) as `CODE@line:column message`.
fn diagnose(
    source: &str,
    table: &ModuleTable,
    kind: Option<ScriptKind>,
    names: Option<&DeploymentNames>,
) -> Vec<(String, String)> {
    let parsed = parse(source);
    let template = match kind {
        Some(ScriptKind::Instance | ScriptKind::Alarm) => Some("Pump"),
        _ => None,
    };
    let options = CheckOptions {
        modules: table,
        kind,
        names,
        template,
        require_main: true,
    };
    let checked = check(&parsed, &options);
    parsed
        .diagnostics
        .iter()
        .chain(&checked.diagnostics)
        .map(|d| {
            let (line, column) = line_column(source, d.primary.span.start as usize);
            (
                d.code.id.to_string(),
                format!("{}@{line}:{column} {}", d.code.id, d.message),
            )
        })
        .collect()
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scl_files(directory: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(directory)
        .unwrap_or_else(|e| panic!("{}: {e}", directory.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "scl"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_checker_code_example_triggers_its_code_and_only_it() {
    let table = module_table();
    let names = plant_names();
    let mut failures = Vec::new();
    let mut count = 0;
    for code in codes::ALL.iter().filter(|c| c.id >= "SCL0101") {
        count += 1;
        let kind = scl_lang::kind_from_comment(code.example);
        let found = diagnose(code.example, &table, kind, Some(&names));
        let ids: Vec<&str> = found.iter().map(|(id, _)| id.as_str()).collect();
        if ids.is_empty() || ids.iter().any(|id| *id != code.id) {
            let lines: Vec<&str> = found.iter().map(|(_, line)| line.as_str()).collect();
            failures.push(format!(
                "{} ({}):\n{}\n  got {lines:#?}",
                code.id, code.name, code.example
            ));
        }
    }
    assert!(count >= 37, "only {count} checker codes");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

const API_EXAMPLE: &str = r#"// api script: the implementation of the inbound API method "GetPumpStatus"
type Status = { code: string, running: bool, speed: float, alarms: list<string> }

fn main(pumpCode: string, includeAlarms: bool) -> Status {
    let attrs = Route.To(pumpCode).GetAttributes(["Running", "Speed"]);
    var alarms: list<string> = [];
    if includeAlarms {
        alarms = Route.To(pumpCode).Call("ActiveAlarms", {}) as list<string>;
    }
    return { code: pumpCode, running: attrs["Running"] as bool,
             speed: attrs["Speed"] as float, alarms: alarms };
}
"#;

const INSTANCE_EXAMPLE: &str = r#"// instance script on a site: push a reading, tell people when it is hot
fn main(limit: float) -> void {
    let t = Attributes.Get("Temperature") as float;
    ExternalSystem.CachedCall("MES", "PostReading",
        { asset: Instance.Code(), value: t, at: Time.Now() });
    if t > limit {
        Notify.To("Operators").Send("High temperature",
            "${Instance.Code()} is at ${t} C (limit ${limit})");
    }
    try {
        Database.Connection("Historian").Execute(
            "INSERT INTO readings(asset, value) VALUES (@p1, @p2)", [Instance.Code(), t]);
    } catch e {
        Log.Warn("historian write failed: ${e.message}");
        Database.CachedWrite("Historian",
            "INSERT INTO readings(asset, value) VALUES (@p1, @p2)", [Instance.Code(), t]);
    }
}
"#;

#[test]
fn language_md_examples_check_clean_with_their_kinds() {
    let table = module_table();
    let names = plant_names();
    for (source, kind) in [
        (API_EXAMPLE, ScriptKind::Api),
        (INSTANCE_EXAMPLE, ScriptKind::Instance),
    ] {
        for names in [None, Some(&names)] {
            let found = diagnose(source, &table, Some(kind), names);
            assert!(found.is_empty(), "{} script: {found:#?}", kind.name());
        }
        let parsed = parse(source);
        let options = CheckOptions {
            kind: Some(kind),
            ..CheckOptions::new(&table)
        };
        assert!(check(&parsed, &options).into_program().is_ok());
    }
}

#[test]
fn language_md_examples_are_rejected_in_the_wrong_kind() {
    let table = module_table();
    let api_as_instance = diagnose(API_EXAMPLE, &table, Some(ScriptKind::Instance), None);
    let ids: Vec<&str> = api_as_instance.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["SCL0403", "SCL0403"],
        "one error per Route.To call: {api_as_instance:#?}"
    );
    let instance_as_api = diagnose(INSTANCE_EXAMPLE, &table, Some(ScriptKind::Api), None);
    let ids: Vec<&str> = instance_as_api.iter().map(|(id, _)| id.as_str()).collect();
    // Attributes.Get, ExternalSystem.CachedCall, Notify.To, Database.CachedWrite
    // and 4 × Instance.Code; Database.Connection is allowed in api scripts.
    assert!(
        ids.iter().all(|id| *id == "SCL0401"),
        "{instance_as_api:#?}"
    );
    assert_eq!(ids.len(), 8, "{instance_as_api:#?}");
}

#[test]
fn example_plant_scripts_check_clean() {
    let table = module_table();
    let names = plant_names();
    let scripts = repository_root().join("examples/plant/scripts");
    let groups = [
        (scripts.clone(), ScriptKind::Instance),
        (scripts.join("api"), ScriptKind::Api),
        (scripts.join("shared"), ScriptKind::Shared),
    ];
    let mut checked = 0;
    for (directory, kind) in groups {
        if !directory.exists() {
            continue;
        }
        for path in scl_files(&directory) {
            let source = std::fs::read_to_string(&path).unwrap_or_default();
            let found = diagnose(&source, &table, Some(kind), Some(&names));
            assert!(found.is_empty(), "{}: {found:#?}", path.display());
            checked += 1;
        }
    }
    assert!(checked > 0, "no example scripts found");
}

/// Each `tests/diagnostics/SCLnnnn_*.scl` of a checker code (SCL01xx and
/// up) gives that code and no other; lexer and parser files are the
/// parser's tests.
#[test]
fn diagnostics_corpus_gives_each_files_code_only() {
    let table = module_table();
    let names = plant_names();
    let directory = repository_root().join("tests/diagnostics");
    if !directory.exists() {
        return;
    }
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in scl_files(&directory) {
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let Some(expected) = file_name.get(..7).filter(|id| *id >= "SCL0101") else {
            continue;
        };
        let source = std::fs::read_to_string(&path).unwrap_or_default();
        let kind = scl_lang::kind_from_comment(&source);
        let found = diagnose(&source, &table, kind, Some(&names));
        checked += 1;
        if found.is_empty() || found.iter().any(|(id, _)| id != expected) {
            let lines: Vec<&str> = found.iter().map(|(_, line)| line.as_str()).collect();
            failures.push(format!("{file_name}:\n{source}\n  got {lines:#?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn conformance_programs_check_clean() {
    let table = module_table();
    let directory = repository_root().join("tests/conformance");
    if !directory.exists() {
        return;
    }
    let mut failures = Vec::new();
    for path in scl_files(&directory) {
        let source = std::fs::read_to_string(&path).unwrap_or_default();
        let kind = scl_lang::kind_from_comment(&source);
        let found = diagnose(&source, &table, kind, None);
        if !found.is_empty() {
            let lines: Vec<&str> = found.iter().map(|(_, line)| line.as_str()).collect();
            failures.push(format!("{}:\n  {lines:#?}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
