//! Scripts reach nothing outside the modules: no file, process, environment
//! or network access exists in the language, and every attempt to name one
//! is a diagnostic with a stable code at check time (so `scl check`, the
//! language server and deployment all refuse it before anything runs).

use scl_lang::checker::{CheckOptions, check};
use scl_lang::modules::{Owner, ScriptKind};
use scl_lang::parse;
use scl_stdlib::signatures::module_table;

/// The complete host surface: these modules and nothing else (adding one is
/// a reviewed change to this list).
const MODULES: &[&str] = &[
    "Attributes",
    "Database",
    "Deliveries",
    "ExternalSystem",
    "Instance",
    "Json",
    "Log",
    "Math",
    "Notify",
    "Route",
    "Scripts",
    "Shared",
    "Time",
];

#[test]
fn the_host_surface_is_exactly_the_documented_modules() {
    let table = module_table();
    let mut modules: Vec<&str> = table
        .functions
        .iter()
        .filter_map(|f| match &f.owner {
            Owner::Module(m) => Some(m.as_str()),
            Owner::HostType(_) => None,
        })
        .collect();
    modules.sort_unstable();
    modules.dedup();
    assert_eq!(modules, MODULES);
    // Every host function by name: each is a door out of the script, so a new
    // one is a reviewed change here too.
    let mut functions: Vec<String> = table.functions.iter().map(|f| f.qualified_name()).collect();
    functions.sort();
    let expected: Vec<String> = HOST_FUNCTIONS.iter().map(|s| (*s).to_string()).collect();
    assert_eq!(
        functions, expected,
        "the host functions changed: {functions:#?}"
    );
}

/// Every host function. Files, processes, the environment and the network
/// are reached only through these, and only to what the deployment names
/// (its external systems, databases, lists, sites and instances).
const HOST_FUNCTIONS: &[&str] = &[
    "Attributes.Get",
    "Attributes.Set",
    "Connection.Begin",
    "Connection.Commit",
    "Connection.Execute",
    "Connection.Procedure",
    "Connection.Query",
    "Connection.Rollback",
    "Connection.Scalar",
    "Database.CachedWrite",
    "Database.Connection",
    "Deliveries.Status",
    "ExternalSystem.CachedCall",
    "ExternalSystem.Call",
    "Instance.Code",
    "Json.Parse",
    "Json.Stringify",
    "Log.Error",
    "Log.Info",
    "Log.Warn",
    "Math.Abs",
    "Math.Ceil",
    "Math.Floor",
    "Math.Max",
    "Math.Min",
    "Math.Pow",
    "Math.Round",
    "Math.Sqrt",
    "Notify.To",
    "NotifyTarget.Send",
    "Route.To",
    "RouteTarget.Call",
    "RouteTarget.GetAttribute",
    "RouteTarget.GetAttributes",
    "RouteTarget.SetAttribute",
    "RouteTarget.SetAttributes",
    "Scripts.Call",
    "Shared.Call",
    "Time.Now",
    "Time.UnixMillis",
];

const ATTEMPTS: &[(&str, &str)] = &[
    (
        "file",
        "fn main() -> string { return File.Read(\"/etc/passwd\"); }",
    ),
    (
        "file write",
        "fn main() -> void { File.Write(\"/tmp/x\", \"y\"); }",
    ),
    (
        "process",
        "fn main() -> void { Process.Run(\"sh\", [\"-c\", \"id\"]); }",
    ),
    (
        "environment",
        "fn main() -> string { return Env.Get(\"HOME\"); }",
    ),
    (
        "environment lower",
        "fn main() -> string { return env(\"HOME\"); }",
    ),
    (
        "network",
        "fn main() -> void { Net.Connect(\"10.0.0.1\", 22); }",
    ),
    ("http", "fn main() -> void { Http.Get(\"http://x\"); }"),
    (
        "rust std path",
        "fn main() -> void { std::fs::read(\"x\"); }",
    ),
    (
        "rust std process",
        "fn main() -> void { std::process::exit(1); }",
    ),
    ("import", "import os\nfn main() -> void { }"),
    ("use", "use std::fs;\nfn main() -> void { }"),
    (
        "extern",
        "extern fn system(cmd: string) -> int;\nfn main() -> void { }",
    ),
    ("unsafe", "fn main() -> void { unsafe { } }"),
    (
        "hidden member",
        "fn main() -> void { Log.__system(\"id\"); }",
    ),
    (
        "system on a module",
        "fn main() -> void { Json.Exec(\"id\"); }",
    ),
    ("eval", "fn main() -> void { eval(\"1\"); }"),
    ("shell escape", "fn main() -> void { `rm -rf /`; }"),
];

#[test]
fn every_way_out_is_a_diagnostic_with_a_code() {
    let table = module_table();
    for (what, source) in ATTEMPTS {
        let parsed = parse(source);
        for kind in [
            ScriptKind::Api,
            ScriptKind::Instance,
            ScriptKind::Shared,
            ScriptKind::Alarm,
        ] {
            let options = CheckOptions {
                modules: &table,
                kind: Some(kind),
                names: None,
                template: None,
                require_main: true,
            };
            let checked = check(&parsed, &options);
            let errors: Vec<_> = parsed
                .diagnostics
                .iter()
                .chain(&checked.diagnostics)
                .filter(|d| d.is_error())
                .map(|d| (d.code.id, d.message.clone()))
                .collect();
            assert!(
                !errors.is_empty(),
                "{what} ({kind:?}) checked clean: {source}"
            );
            for (code, message) in &errors {
                assert!(
                    code.starts_with("SCL") && code.len() == 7,
                    "{what}: `{message}` has no stable code"
                );
            }
            assert!(
                checked.into_program().is_err(),
                "{what} produced a program: {source}"
            );
        }
    }
}
