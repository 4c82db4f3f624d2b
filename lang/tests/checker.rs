//! Checker tests, data-driven: each case pairs a source with the
//! diagnostics it must produce, written `CODE@line:column` (the start of the
//! primary label), in order — an empty list means the file checks clean.
//! A second group checks the shape of the HIR the checker builds.
//!
//! These tests use a small hand-made module table (the real one lives in
//! `scl-stdlib`, which this crate cannot depend on; its tests run the codes'
//! examples and the language.md scripts against it).

use scl_lang::checker::{CheckOptions, Checked, check};
use scl_lang::hir::{self, ExprKind, StmtKind};
use scl_lang::modules::{
    DeploymentNames, HostFnSig, ModuleTable, NameRef, Owner, ScriptKind, TemplateNames,
};
use scl_lang::span::line_column;
use scl_lang::types::Type;
use scl_lang::{codes, parse};

fn signature(
    owner: Owner,
    name: &str,
    params: &[(&str, Type)],
    ret: Type,
    kinds: &[ScriptKind],
) -> HostFnSig {
    HostFnSig {
        owner,
        name: name.to_string(),
        params: params
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect(),
        ret,
        kinds: kinds.to_vec(),
        name_args: Vec::new(),
        doc: String::new(),
    }
}

fn module(name: &str) -> Owner {
    Owner::Module(name.to_string())
}

/// A few modules shaped like the real ones.
fn small_table() -> ModuleTable {
    use ScriptKind::{Alarm, Api, Instance, Shared};
    let connection = Type::Host("Connection".to_string());
    let route_target = Type::Host("RouteTarget".to_string());
    let mut functions = vec![
        signature(
            module("Log"),
            "Info",
            &[("message", Type::String)],
            Type::Void,
            &[],
        ),
        signature(
            module("Database"),
            "Connection",
            &[("name", Type::String)],
            connection.clone(),
            &[],
        ),
        signature(
            Owner::HostType("Connection".to_string()),
            "Execute",
            &[("sql", Type::String), ("params", Type::list(Type::Json))],
            Type::Int,
            &[],
        ),
        signature(
            module("Attributes"),
            "Get",
            &[("name", Type::String)],
            Type::Json,
            &[Instance, Alarm],
        ),
        signature(
            module("Route"),
            "To",
            &[("instance", Type::String)],
            route_target,
            &[Api],
        ),
        signature(
            Owner::HostType("RouteTarget".to_string()),
            "GetAttribute",
            &[("name", Type::String)],
            Type::Json,
            &[Api],
        ),
        signature(
            module("Shared"),
            "Call",
            &[("name", Type::String), ("params", Type::Json)],
            Type::Json,
            &[Instance, Alarm, Shared],
        ),
        signature(
            module("ExternalSystem"),
            "Call",
            &[
                ("system", Type::String),
                ("method", Type::String),
                ("params", Type::Json),
            ],
            Type::Json,
            &[Instance, Alarm, Shared],
        ),
        signature(module("Time"), "Now", &[], Type::String, &[]),
    ];
    functions[1].name_args = vec![(0, NameRef::Database)];
    functions[3].name_args = vec![(0, NameRef::Attribute)];
    functions[4].name_args = vec![(0, NameRef::Instance)];
    functions[5].name_args = vec![(0, NameRef::RoutedAttribute)];
    functions[6].name_args = vec![(0, NameRef::SharedScript)];
    functions[7].name_args = vec![
        (0, NameRef::ExternalSystem),
        (1, NameRef::ExternalMethod { system_arg: 0 }),
    ];
    ModuleTable {
        functions,
        types: Vec::new(),
    }
}

fn small_names() -> DeploymentNames {
    DeploymentNames {
        external_systems: vec![(
            "MES".to_string(),
            vec!["GetOrder".to_string(), "PostReading".to_string()],
        )],
        notification_lists: vec!["Operators".to_string()],
        databases: vec!["Historian".to_string()],
        instances: vec![("PUMP-001".to_string(), "Pump".to_string())],
        templates: vec![TemplateNames {
            name: "Pump".to_string(),
            attributes: vec!["Speed".to_string(), "Running".to_string()],
            scripts: vec!["ReadTemp".to_string()],
        }],
        shared_scripts: vec!["Helpers".to_string()],
    }
}

/// Parses (the source must parse cleanly) and checks with the small table;
/// the kind comes from a `// kind: ...` first line.
fn check_source(source: &str, names: Option<&DeploymentNames>) -> Checked {
    let parsed = parse(source);
    assert!(
        !parsed.has_errors(),
        "test source does not parse:\n{source}\n{:#?}",
        parsed.diagnostics
    );
    let table = small_table();
    let options = CheckOptions {
        modules: &table,
        kind: scl_lang::kind_from_comment(source),
        names,
        template: names.map(|_| "Pump"),
        require_main: true,
    };
    check(&parsed, &options)
}

fn rendered(source: &str, checked: &Checked) -> Vec<String> {
    checked
        .diagnostics
        .iter()
        .map(|d| {
            let (line, column) = line_column(source, d.primary.span.start as usize);
            format!("{}@{line}:{column}", d.code.id)
        })
        .collect()
}

/// Runs a table of cases and reports every mismatch at once.
fn check_cases(cases: &[(&str, &[&str])], names: Option<&DeploymentNames>) {
    let mut failures = Vec::new();
    for (source, expected) in cases {
        let checked = check_source(source, names);
        for diagnostic in &checked.diagnostics {
            assert!(
                diagnostic.primary.message.is_some(),
                "no primary label text: {diagnostic:#?}"
            );
        }
        let _ =
            scl_lang::diagnostics::render_human("test.scl", source, &checked.diagnostics, false);
        let actual = rendered(source, &checked);
        if actual != *expected {
            let details: Vec<String> = checked
                .diagnostics
                .iter()
                .map(|d| format!("    {}: {} ({:?})", d.code.id, d.message, d.help))
                .collect();
            failures.push(format!(
                "--- source:\n{source}\n--- expected {expected:?}\n--- actual   {actual:?}\n{}",
                details.join("\n")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn valid_programs_check_clean() {
    let cases: &[(&str, &[&str])] = &[
        ("fn main() {}", &[]),
        (
            "fn main() -> int { let x = 1; var y = x + 2; y += 3; y -= 1; return y * 2 % 5 / 1; }",
            &[],
        ),
        (
            "fn main() -> int { return fib(10); }\n\
             fn fib(n: int) -> int { if n < 2 { return n; } return fib(n - 1) + fib(n - 2); }",
            &[],
        ),
        (
            "fn main() -> P { return { b: 2, a: 1 }; }\ntype P = { a: int, b: int }",
            &[],
        ),
        (
            "type A = { b: B }\ntype B = { c: list<int> }\nfn main() -> A { return { b: { c: [1] } }; }",
            &[],
        ),
        (
            "fn main() -> map<int> { var m: map<int> = {}; m[\"a\"] = 1; return { x: 1, y: m[\"a\"] }; }",
            &[],
        ),
        (
            "fn main() -> json { let x: json = { a: 1, b: [1, \"two\", null, 2.5], c: { d: true }, e: [] }; return x; }",
            &[],
        ),
        (
            "fn main(x: int?) -> int { let m: map<int> = { a: 1 }; let y = m.get(\"a\") ?? 0;\n\
             if x == null { return y; } if null != x { return 2; } return x ?? 0; }",
            &[],
        ),
        (
            "fn main(s: string) -> list<string> { let t = s.trim().upper().lower() + \"!\";\n\
             if t.contains(\"a\") && t.len() > 2 || t.starts_with(\"x\") && !t.ends_with(\"y\") { return t.split(\",\"); }\n\
             let i = t.index_of(\"z\") + t.replace(\"a\", \"b\").substring(0, 1).len(); return []; }",
            &[],
        ),
        (
            "fn main() -> string { let xs = [\"b\", \"a\"]; xs.push(\"c\"); xs.sort(); xs.reverse();\n\
             let last = xs.pop(); let ys = xs.slice(0, 2); if ys.contains(last) { return \"\"; }\n\
             return ys.join(\",\") + string(xs.len()); }",
            &[],
        ),
        (
            "fn main() -> int { let m: map<int> = { a: 1 }; let keys = m.keys(); let values = m.values();\n\
             if m.contains_key(\"a\") { return m.len() + keys.len() + values.len() + (m.remove(\"a\") ?? 0); } return 0; }",
            &[],
        ),
        (
            "fn main() -> int { var total = 0; for i in 0..10 { total += i; if i == 3 { continue; } }\n\
             for x in [1, 2] { total += x; } let m: map<int> = { a: 1 }; for k in m { total += m[k]; }\n\
             while total > 100 { total -= 1; if total == 50 { break; } } return total; }",
            &[],
        ),
        (
            "fn main() -> int { var i = 0; while true { i += 1; if i > 10 { return i; } } }",
            &[],
        ),
        (
            "fn main() -> string { try { throw \"boom\"; } catch e { return e.message + e.code + e.kind; } }",
            &[],
        ),
        (
            "fn f() -> int { throw error(\"bad\", \"really\"); }\nfn main() {}",
            &[],
        ),
        (
            "fn main() { try { Log.Info(\"x\"); } catch e { let s: int? = e.status; throw e; } }",
            &[],
        ),
        (
            "fn main(j: json) -> list<int> { let xs = j as list<int>; let m = j as map<string>;\n\
             let r = j[\"a\"] as { b: int }; let ys = [j, j] as list<float>; let f = j[0] as float?; return xs; }",
            &[],
        ),
        (
            "fn main(rows: list<map<json>>) -> int { let rs = rows as list<{ a: int }>; return rs[0].a; }",
            &[],
        ),
        (
            "fn main() -> int { let x = 1; if true { let x = \"s\"; } return x; }",
            &[],
        ),
        (
            "fn main() -> float { let i = 3; let f = float(i) + 0.5; let s = string(f); let n = int(s);\n\
             let g = int(2.5) + int(7); return float(n) + float(\"2.5\") + float(2.0); }",
            &[],
        ),
        (
            "fn main(x: float) -> string { return \"v=${x} n=${1} b=${true} l=${[1, 2]} j=${null}\"; }",
            &[],
        ),
        (
            "fn main(j: json) -> bool { return j == null || j[\"a\"] == 1 || j == j || \"s\" != j[0]; }",
            &[],
        ),
        (
            "fn sign(x: int) -> int { if x > 0 { return 1; } else if x < 0 { return -1; } else { return 0; } }\n\
             fn main() {}",
            &[],
        ),
        (
            "type R = { a: int, b: string? }\nfn main() -> R { return { a: 1 }; }",
            &[],
        ),
        (
            "type P = { name: string, tags: list<string> }\n\
             fn main() -> int { let p: P = { name: \"x\", tags: [] }; return p.tags.len() + p.name.len(); }",
            &[],
        ),
        ("fn main() { let _ = 1; let _ = 2; }", &[]),
        ("fn main() -> int? { return 1; }", &[]),
        ("fn main() -> int? { return null; }", &[]),
        ("fn main() -> list<int?> { return [1, null]; }", &[]),
        (
            "fn main() -> list<int?> { let xs = [null, 1]; return xs; }",
            &[],
        ),
        (
            "fn main() { let c = Database.Connection(\"Historian\"); let n = c.Execute(\"x\", [1, \"a\", 2.5]); }",
            &[],
        ),
        (
            "fn main() -> json { return { asset: Time.Now(), at: [Time.Now()] }; }",
            &[],
        ),
        ("fn main(xs: list<int>) -> json { return xs; }", &[]),
        ("fn main() -> float { return -1.5 * -(2.0); }", &[]),
        (
            "fn helper(c: Connection) -> int { return c.Execute(\"x\", []); }\nfn main() {}",
            &[],
        ),
        (
            "fn main(f: float, i: int) -> bool { return f < 1.0 && i >= 2 && \"a\" <= \"b\"; }",
            &[],
        ),
        (
            "fn main(s: string) { var t = s; t += \"x\"; let xs: list<int> = []; xs[0] = 1; }",
            &[],
        ),
    ];
    check_cases(cases, None);
}

#[test]
fn name_diagnostics() {
    let cases: &[(&str, &[&str])] = &[
        ("fn main() -> int { return y; }", &["SCL0101@1:27"]),
        (
            "fn main() -> int { let value = 1; return valeu; }",
            &["SCL0101@1:42"],
        ),
        (
            "fn main() -> int { if true { let x = 1; } return x; }",
            &["SCL0101@1:50"],
        ),
        (
            "fn main() -> int { let x = x + 1; return x; }",
            &["SCL0101@1:28"],
        ),
        ("fn main() -> int { return fib(3); }", &["SCL0102@1:27"]),
        ("fn main() { let x = 1; x(); }", &["SCL0102@1:24"]),
        ("fn main(x: Pump) {}", &["SCL0103@1:12"]),
        ("fn main(x: list<Strin>) {}", &["SCL0103@1:17"]),
        ("fn f() {}\nfn f() {}\nfn main() {}", &["SCL0104@2:4"]),
        ("fn main(a: int, a: int) {}", &["SCL0104@1:17"]),
        ("fn main() { let a = 1; let a = 2; }", &["SCL0104@1:28"]),
        ("fn main(a: int) { let a = 2; }", &["SCL0104@1:23"]),
        (
            "type T = { a: int, a: int }\nfn main() {}",
            &["SCL0104@1:20"],
        ),
        (
            "type T = int\ntype T = string\nfn main() {}",
            &["SCL0104@2:6"],
        ),
        (
            "fn main() -> json { return { a: 1, a: 2 }; }",
            &["SCL0104@1:36"],
        ),
        (
            "fn float(x: int) -> float { return 1.0; }\nfn main() {}",
            &["SCL0104@1:4"],
        ),
        ("type Error = int\nfn main() {}", &["SCL0104@1:6"]),
        ("fn main() { Log.Debug(\"x\"); }", &["SCL0105@1:17"]),
        (
            "fn main() { Database.Connection(\"x\").Querry(\"s\", []); }",
            &["SCL0105@1:38"],
        ),
        ("fn main() { Logg.Info(\"x\"); }", &["SCL0101@1:13"]),
        (
            "fn main() -> int { let r = { a: 1 }; return r.b; }",
            &["SCL0106@1:47"],
        ),
        (
            "type P = { speed: float }\nfn main(p: P) -> float { return p.sped; }",
            &["SCL0106@2:35"],
        ),
        (
            "fn main(j: json) -> json { return j.a; }",
            &["SCL0106@1:37"],
        ),
        (
            "fn main() -> int { let s = \"abc\"; return s.size(); }",
            &["SCL0107@1:44"],
        ),
        (
            "fn main() -> int { let s = \"abc\"; return s.lenn(); }",
            &["SCL0107@1:44"],
        ),
        (
            "fn main(j: json) -> int { return j.len(); }",
            &["SCL0107@1:36"],
        ),
        (
            "fn main(xs: list<{ a: int }>) { xs.sort(); }",
            &["SCL0107@1:36"],
        ),
        (
            "fn main(xs: list<int>) -> string { return xs.join(\",\"); }",
            &["SCL0107@1:46"],
        ),
        ("fn helper() {}", &["SCL0108@1:1"]),
        (
            "type Node = { next: Node? }\nfn main() {}",
            &["SCL0110@1:21"],
        ),
        (
            "type A = { b: B }\ntype B = { a: A }\nfn main(a: A) -> int { return a.b; }",
            &["SCL0110@2:15"],
        ),
        (
            "type Tree = { children: list<Tree> }\nfn main() {}",
            &["SCL0110@1:30"],
        ),
    ];
    check_cases(cases, None);
}

#[test]
fn type_diagnostics() {
    let cases: &[(&str, &[&str])] = &[
        (
            "fn main() -> int { let x: int = \"a\"; return x; }",
            &["SCL0201@1:33"],
        ),
        ("fn main() -> float { return 1; }", &["SCL0201@1:29"]),
        (
            "fn main(xs: list<int>) -> list<json> { return xs; }",
            &["SCL0201@1:47"],
        ),
        (
            "fn f(x: int) -> int { return x; }\nfn main() -> int { return f(\"a\"); }",
            &["SCL0201@2:29"],
        ),
        ("fn main() { let x: int = null; }", &["SCL0201@1:26"]),
        ("fn main() { let x: int = [1]; }", &["SCL0201@1:26"]),
        ("fn main() { let x: int = []; }", &["SCL0201@1:26"]),
        ("fn main() { let x: string = {}; }", &["SCL0201@1:29"]),
        ("fn main() { if 1 { } }", &["SCL0201@1:16"]),
        ("fn main() { for x in 5 { } }", &["SCL0201@1:22"]),
        ("fn main() { let xs = [1, \"a\"]; }", &["SCL0201@1:26"]),
        (
            "fn main(c: Connection) -> json { return c; }\n",
            &["SCL0307@1:12", "SCL0201@1:41"],
        ),
        (
            "fn f(a: int) -> int { return a; }\nfn main() -> int { return f(1, 2); }",
            &["SCL0202@2:27"],
        ),
        (
            "fn main() -> int { let s = \"a\"; return s.len(1); }",
            &["SCL0202@1:42"],
        ),
        ("fn main() { Log.Info(); }", &["SCL0202@1:17"]),
        (
            "fn main() -> float { return float(1, 2); }",
            &["SCL0202@1:29"],
        ),
        ("fn main() -> float { return 1 + 2.5; }", &["SCL0203@1:29"]),
        (
            "fn main() -> string { return \"a\" + 1; }",
            &["SCL0203@1:30"],
        ),
        ("fn main() -> bool { return !1; }", &["SCL0203@1:28"]),
        ("fn main() -> bool { return 1 < 2.0; }", &["SCL0203@1:28"]),
        (
            "fn main() -> bool { return [1] == [1]; }",
            &["SCL0203@1:28"],
        ),
        ("fn main() -> bool { return 1 == null; }", &["SCL0203@1:28"]),
        ("fn main() -> int { return 1 ?? 2; }", &["SCL0203@1:27"]),
        ("fn main() { var x = 1; x += 1.5; }", &["SCL0203@1:24"]),
        (
            "fn main() -> int { let x = 5; return x[0]; }",
            &["SCL0204@1:38"],
        ),
        (
            "type R = { a: int }\nfn main(r: R) -> int { return r[\"a\"]; }",
            &["SCL0204@2:31"],
        ),
        (
            "fn main() -> int { let x = 5; return x as int; }",
            &["SCL0205@1:38"],
        ),
        (
            "fn main(j: json) -> json { let c = Database.Connection(\"x\"); return j as Connection; }",
            &["SCL0205@1:69"],
        ),
        (
            "fn main(xs: list<json>) -> int { return xs as int; }",
            &["SCL0205@1:41"],
        ),
        ("fn main() { let xs = []; }", &["SCL0206@1:22"]),
        ("fn main() { let m = {}; }", &["SCL0206@1:21"]),
        ("fn main() { let x = null; }", &["SCL0206@1:21"]),
        ("fn main() { let r = { a: null }; }", &["SCL0206@1:26"]),
        (
            "fn main() -> int { let m: map<int> = {}; return m.get(\"a\"); }",
            &["SCL0207@1:49"],
        ),
        (
            "fn main(x: int?) -> int { return x + 1; }",
            &["SCL0203@1:34"],
        ),
        (
            "fn main(s: string?) -> int { return s.len(); }",
            &["SCL0207@1:37"],
        ),
        (
            "type P = { a: int, b: int }\nfn main() -> P { return { a: 1 }; }",
            &["SCL0208@2:25"],
        ),
        (
            "type P = { a: int }\nfn main() -> P { return { a: 1, c: 2 }; }",
            &["SCL0208@2:25"],
        ),
        (
            "fn f() {}\nfn main() -> int { let x = f(); return 1; }",
            &["SCL0209@2:28"],
        ),
        (
            "fn f() {}\nfn main() -> int { return f(); }",
            &["SCL0209@2:27"],
        ),
        (
            "fn f() {}\nfn main() { Log.Info(\"${f()}\"); }",
            &["SCL0209@2:25"],
        ),
        (
            "fn main() -> float { return float(true); }",
            &["SCL0210@1:35"],
        ),
        (
            "fn main(j: json) -> int { return int(j); }",
            &["SCL0210@1:38"],
        ),
        (
            "fn main() -> string { let c = Database.Connection(\"x\"); return string(c); }",
            &["SCL0210@1:71"],
        ),
    ];
    check_cases(cases, None);
}

#[test]
fn statement_diagnostics() {
    let cases: &[(&str, &[&str])] = &[
        (
            "fn main() -> int { let x = 1; x = 2; return x; }",
            &["SCL0301@1:31"],
        ),
        ("fn main(x: int) { x = 2; }", &["SCL0301@1:19"]),
        ("fn main() { for i in 0..3 { i = 2; } }", &["SCL0301@1:29"]),
        (
            "fn main() { try { } catch e { e = error(\"a\", \"b\"); } }",
            &["SCL0301@1:31"],
        ),
        (
            "type R = { a: int }\nfn main(r: R) { r.a = 1; }",
            &["SCL0013@2:17"],
        ),
        ("fn main(j: json) { j[\"a\"] = 1; }", &["SCL0013@1:20"]),
        (
            "fn f(x: int) -> int { if x > 0 { return 1; } }\nfn main() {}",
            &["SCL0302@1:4"],
        ),
        (
            "fn f() -> int { while true { break; } }\nfn main() {}",
            &["SCL0302@1:4"],
        ),
        (
            "fn f() -> int { for i in 0..3 { return i; } }\nfn main() {}",
            &["SCL0302@1:4"],
        ),
        (
            "fn f() -> int { try { return 1; } catch e { Log.Info(e.message); } }\nfn main() {}",
            &["SCL0302@1:4"],
        ),
        (
            "fn f() -> int { try { return 1; } catch e { throw e; } }\nfn main() {}",
            &[],
        ),
        ("fn main() { break; }", &["SCL0303@1:13"]),
        ("fn main() { continue; }", &["SCL0303@1:13"]),
        ("fn main() { return 1; }", &["SCL0304@1:20"]),
        ("fn main() -> int { return; }", &["SCL0304@1:20"]),
        (
            "fn main() -> int { return 1; let x = 2; }",
            &["SCL0305@1:30"],
        ),
        (
            "fn main() { while true { break; Log.Info(\"a\"); Log.Info(\"b\"); } }",
            &["SCL0305@1:33"],
        ),
        ("fn main() { throw 42; }", &["SCL0306@1:19"]),
        ("fn main(c: Connection) {}", &["SCL0307@1:12"]),
        (
            "fn main() -> Connection { return Database.Connection(\"x\"); }",
            &["SCL0307@1:14"],
        ),
    ];
    check_cases(cases, None);
}

#[test]
fn kind_diagnostics() {
    let cases: &[(&str, &[&str])] = &[
        (
            "// kind: api\nfn main() -> json { return Attributes.Get(\"Speed\"); }",
            &["SCL0401@2:28"],
        ),
        (
            "// kind: api\nfn main() -> json { return Shared.Call(\"Helpers\", {}); }",
            &["SCL0402@2:28"],
        ),
        (
            "// kind: instance\nfn main() -> json { return Route.To(\"PUMP-001\").GetAttribute(\"Speed\"); }",
            &["SCL0403@2:28"],
        ),
        (
            "// kind: shared\nfn main() -> json { return ExternalSystem.Call(\"MES\", \"GetOrder\", {}); }",
            &[],
        ),
        (
            "// kind: api\nfn main() { Database.Connection(\"Historian\").Execute(\"x\", []); }",
            &[],
        ),
        (
            "fn main() -> json { return Attributes.Get(\"Speed\"); }",
            &[],
        ),
    ];
    check_cases(cases, None);
}

#[test]
fn deployment_name_diagnostics() {
    let names = small_names();
    let cases: &[(&str, &[&str])] = &[
        (
            "fn main() -> json { return ExternalSystem.Call(\"MESS\", \"GetOrder\", {}); }",
            &["SCL0501@1:48"],
        ),
        (
            "fn main() -> json { return ExternalSystem.Call(\"MES\", \"GetOrders\", {}); }",
            &["SCL0502@1:55"],
        ),
        (
            "fn main() { Database.Connection(\"Histrian\").Execute(\"SELECT 1\", []); }",
            &["SCL0504@1:33"],
        ),
        (
            "// kind: api\nfn main() -> json { return Route.To(\"PUMP-999\").GetAttribute(\"Speed\"); }",
            &["SCL0505@2:37"],
        ),
        (
            "// kind: api\nfn main() -> json { return Route.To(\"PUMP-001\").GetAttribute(\"Sped\"); }",
            &["SCL0506@2:62"],
        ),
        (
            "// kind: instance\nfn main() -> json { return Attributes.Get(\"Sped\"); }",
            &["SCL0506@2:43"],
        ),
        (
            "// kind: instance\nfn main() -> json { return Shared.Call(\"Helper\", {}); }",
            &["SCL0508@2:40"],
        ),
        // A kind error hides the name check of the same call.
        (
            "// kind: api\nfn main() -> json { return Attributes.Get(\"Sped\"); }",
            &["SCL0401@2:28"],
        ),
        // Names built at run time are not checked.
        (
            "fn main(s: string) -> json { return ExternalSystem.Call(\"MES\", \"Get${s}\", {}); }",
            &[],
        ),
        (
            "// kind: instance\nfn main() -> json { return ExternalSystem.Call(\"MES\", \"PostReading\", { a: 1 }); }",
            &[],
        ),
    ];
    check_cases(cases, Some(&names));
}

/// One mistake, one error: a misspelt variable used three times gives three
/// `UNKNOWN_NAME`s and nothing downstream of them.
#[test]
fn no_cascades() {
    let cases: &[(&str, &[&str])] = &[
        (
            "fn main() -> int {\n let a = valu + 1;\n let b = a * valu;\n return b + valu.len() + [valu][0].x; \n}",
            &[
                "SCL0101@2:10",
                "SCL0101@3:14",
                "SCL0101@4:13",
                "SCL0101@4:27",
            ],
        ),
        (
            "fn main(p: Pmp) -> int { return p.x + p.y(1) + p[0]; }",
            &["SCL0103@1:12"],
        ),
        ("fn f() -> Foo { }\nfn main() {}", &["SCL0103@1:11"]),
        // `b` is a mistake of its own: the record's shape is known.
        (
            "fn main() -> int { let r = { a: nope }; return r.a + r.b.c; }",
            &["SCL0101@1:33", "SCL0106@1:56"],
        ),
        (
            "fn main() { for x in nope { Log.Info(x.name); } }",
            &["SCL0101@1:22"],
        ),
        (
            "fn main() -> string { let x = nope as string; return x.upper() + missing(1); }",
            &["SCL0101@1:31", "SCL0102@1:66"],
        ),
        ("fn main() { throw nope; }", &["SCL0101@1:19"]),
        (
            "fn main() -> bool { return nope == null && nope > 2; }",
            &["SCL0101@1:28", "SCL0101@1:44"],
        ),
        (
            "fn main() { Log.Info(nope); Log.Nope(nope); }",
            &["SCL0101@1:22", "SCL0105@1:33", "SCL0101@1:38"],
        ),
    ];
    check_cases(cases, None);
}

/// Every checker code (SCL0101 and up) has an example in `codes.rs`; run
/// the ones the small table can express.
#[test]
fn code_examples_trigger_their_code() {
    let names = small_names();
    let mut failures = Vec::new();
    for code in codes::ALL.iter().filter(|c| c.id >= "SCL0101") {
        let parsed = parse(code.example);
        let table = small_table();
        let options = CheckOptions {
            modules: &table,
            kind: scl_lang::kind_from_comment(code.example),
            names: Some(&names),
            template: Some("Pump"),
            require_main: true,
        };
        let checked = check(&parsed, &options);
        // Examples that need modules beyond the small table are run by
        // scl-stdlib's tests with the real one.
        let needs_real_table = checked.diagnostics.iter().any(|d| {
            (d.code == codes::UNKNOWN_NAME || d.code == codes::UNKNOWN_MODULE_MEMBER)
                && d.code != *code
        });
        if needs_real_table {
            continue;
        }
        let mut all: Vec<_> = parsed.diagnostics.iter().map(|d| d.code.id).collect();
        all.extend(checked.diagnostics.iter().map(|d| d.code.id));
        if all.first().copied() != Some(code.id) || !all.iter().all(|id| *id == code.id) {
            failures.push(format!(
                "{} ({}): got {all:?}\n{}",
                code.id, code.name, code.example
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The `main` of a checked program that must check clean.
fn main_of(source: &str) -> (hir::Program, hir::Function) {
    let checked = check_source(source, None);
    let program = match checked.into_program() {
        Ok(program) => program,
        Err(errors) => panic!("{source}\n{errors:#?}"),
    };
    let main = program.main.expect("main");
    let function = program.function(main).clone();
    (program, function)
}

/// The value of the first `return` (or `let`) in `main`.
fn first_value(function: &hir::Function) -> hir::Expr {
    for stmt in &function.body.stmts {
        match &stmt.kind {
            StmtKind::Return(Some(value)) => return value.clone(),
            StmtKind::Let { init, .. } => return init.clone(),
            _ => {}
        }
    }
    panic!("no value in {function:#?}");
}

#[test]
fn hir_inserts_to_json_for_a_record_where_json_is_expected() {
    let (_, main) = main_of("fn main() -> json { return { a: 1, b: \"x\" }; }");
    let value = first_value(&main);
    assert_eq!(value.ty, Type::Json);
    let ExprKind::Convert {
        conversion: hir::Conversion::ToJson,
        expr,
    } = &value.kind
    else {
        panic!("{value:#?}")
    };
    let ExprKind::Record(fields) = &expr.kind else {
        panic!("{expr:#?}")
    };
    assert_eq!(fields.len(), 2);
    assert!(fields.iter().all(|f| f.ty == Type::Json));
}

#[test]
fn hir_turns_a_record_literal_into_a_map_where_a_map_is_expected() {
    let (_, main) =
        main_of("fn main() -> map<int> { let m: map<int> = { b: 2, a: 1 }; return m; }");
    let value = first_value(&main);
    assert_eq!(value.ty, Type::map(Type::Int));
    let ExprKind::Map(entries) = &value.kind else {
        panic!("{value:#?}")
    };
    let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["b", "a"], "a map keeps the written order");
}

#[test]
fn hir_orders_record_fields_canonically_and_fills_optional_ones() {
    let (_, main) = main_of(
        "type R = { b: int, a: string, c: int? }\nfn main() -> R { return { b: 1, a: \"x\" }; }",
    );
    let value = first_value(&main);
    let ExprKind::Record(fields) = &value.kind else {
        panic!("{value:#?}")
    };
    assert!(matches!(fields[0].kind, ExprKind::Str(_)));
    assert!(matches!(fields[1].kind, ExprKind::Int(1)));
    assert!(matches!(fields[2].kind, ExprKind::Null));
    assert_eq!(fields[2].ty, Type::optional(Type::Int));
}

#[test]
fn hir_wraps_values_to_optional_and_types_null() {
    let (_, main) = main_of("fn main() -> int? { return 1; }");
    let value = first_value(&main);
    assert!(matches!(
        value.kind,
        ExprKind::Convert {
            conversion: hir::Conversion::ToOptional,
            ..
        }
    ));
    assert_eq!(value.ty, Type::optional(Type::Int));
    let (_, main) = main_of("fn main(x: int?) -> bool { return x == null; }");
    let ExprKind::Binary { rhs, .. } = &first_value(&main).kind else {
        panic!()
    };
    assert!(matches!(rhs.kind, ExprKind::Null));
    assert_eq!(rhs.ty, Type::optional(Type::Int));
}

#[test]
fn hir_list_literal_adopts_the_expected_element_type() {
    let (_, main) =
        main_of("fn main() { let c = Database.Connection(\"x\"); c.Execute(\"s\", [1, \"a\"]); }");
    let StmtKind::Expr(call) = &main.body.stmts[1].kind else {
        panic!()
    };
    let ExprKind::Host { args, .. } = &call.kind else {
        panic!("{call:#?}")
    };
    assert_eq!(args.len(), 3, "receiver first, then the written arguments");
    assert_eq!(args[0].ty, Type::Host("Connection".to_string()));
    let ExprKind::List(items) = &args[2].kind else {
        panic!()
    };
    assert_eq!(args[2].ty, Type::list(Type::Json));
    assert!(items.iter().all(|i| matches!(
        i.kind,
        ExprKind::Convert {
            conversion: hir::Conversion::ToJson,
            ..
        }
    )));
}

#[test]
fn hir_throw_of_text_makes_an_error_value() {
    let (_, main) = main_of("fn main() { throw \"boom\"; }");
    let StmtKind::Throw(value) = &main.body.stmts[0].kind else {
        panic!()
    };
    let ExprKind::Builtin {
        func: hir::Builtin::MakeError,
        args,
    } = &value.kind
    else {
        panic!("{value:#?}")
    };
    assert!(matches!(&args[0].kind, ExprKind::Str(code) if code == "error"));
    assert_eq!(value.ty, scl_lang::checker::error_value_type());
}

#[test]
fn hir_interpolation_is_a_concat_of_strings() {
    let (_, main) = main_of("fn main(x: float) -> string { return \"x=${x}!\"; }");
    let value = first_value(&main);
    let ExprKind::Concat(parts) = &value.kind else {
        panic!("{value:#?}")
    };
    assert_eq!(parts.len(), 3);
    assert!(parts.iter().all(|p| p.ty == Type::String));
    assert!(matches!(
        parts[1].kind,
        ExprKind::Builtin {
            func: hir::Builtin::ToString,
            ..
        }
    ));
}

#[test]
fn hir_locals_parameters_first_and_shadowing_makes_new_locals() {
    let (_, main) = main_of(
        "fn main(a: int) -> int { let b = a; if true { let b = \"s\"; } for i in 0..2 { } return b; }",
    );
    let names: Vec<&str> = main.locals.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "b", "i"]);
    assert_eq!(main.params, [hir::LocalId(0)]);
    assert!(!main.locals[0].mutable);
    assert_eq!(main.locals[2].ty, Type::String);
}

#[test]
fn hir_module_calls_and_methods_resolve() {
    let (program, main) = main_of(
        "fn main(s: string) -> int { Log.Info(s); return helper(s.len()); }\nfn helper(n: int) -> int { return n; }",
    );
    let StmtKind::Expr(call) = &main.body.stmts[0].kind else {
        panic!()
    };
    assert!(matches!(call.kind, ExprKind::Host { .. }));
    let value = first_value(&main);
    let ExprKind::Call { func, args } = &value.kind else {
        panic!()
    };
    assert_eq!(program.function(*func).name, "helper");
    assert!(matches!(
        args[0].kind,
        ExprKind::Method {
            method: hir::Method::StrLen,
            ..
        }
    ));
}

#[test]
fn a_file_that_did_not_parse_yields_no_program() {
    let parsed = parse("fn main() { let x = ; }");
    assert!(parsed.has_errors());
    let table = small_table();
    let checked = check(&parsed, &CheckOptions::new(&table));
    assert!(checked.diagnostics.is_empty(), "{:#?}", checked.diagnostics);
    assert!(checked.into_program().is_err());
}

/// The parser bounds nesting; whatever it accepts, the checker must check
/// on an ordinary thread stack (tests run on 2 MiB threads).
#[test]
fn deeply_nested_programs_check_without_overflowing_the_stack() {
    let table = small_table();
    let long_sum = format!(
        "fn main() -> int {{ let x = 1; return {}; }}",
        vec!["x"; 250].join(" + ")
    );
    let nested_lists = format!(
        "fn main() {{ let x = {}1{}; }}",
        "[".repeat(90),
        "]".repeat(90)
    );
    let nested_parens = format!(
        "fn main() -> int {{ return {}1{}; }}",
        "(-".repeat(45),
        ")".repeat(45)
    );
    let nested_blocks = format!(
        "fn main() {{ {}{} }}",
        "if true { ".repeat(90),
        "}".repeat(90)
    );
    let chained_calls = format!(
        "fn main(s: string) -> string {{ return s{}; }}",
        ".trim()".repeat(250)
    );
    for source in [
        long_sum,
        nested_lists,
        nested_parens,
        nested_blocks,
        chained_calls,
    ] {
        let parsed = parse(&source);
        assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics.first());
        let checked = check(&parsed, &CheckOptions::new(&table));
        assert!(checked.into_program().is_ok());
    }
}
