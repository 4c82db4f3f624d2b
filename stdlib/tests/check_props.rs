//! Property tests: parse-then-check never panics, whatever the input, and a
//! program that checks without errors never contains `Type::Error` (every
//! expression of a clean program has a real type).
//!
//! Three kinds of input: arbitrary text, a soup of SCL tokens (which gets
//! much further into the checker than random characters), and valid
//! programs with a fragment spliced in.

use proptest::prelude::*;
use scl_lang::checker::{CheckOptions, check};
use scl_lang::hir::{self, ExprKind, Place, StmtKind};
use scl_lang::modules::{DeploymentNames, ModuleTable, ScriptKind, TemplateNames};
use scl_lang::parse;
use scl_lang::types::Type;
use scl_stdlib::signatures::module_table;

const FRAGMENTS: &[&str] = &[
    "fn",
    "main",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    "<",
    ">",
    ",",
    ";",
    ":",
    ".",
    "..",
    "=",
    "==",
    "!=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "+=",
    "&&",
    "||",
    "!",
    "??",
    "?",
    "->",
    "let",
    "var",
    "if",
    "else",
    "while",
    "for",
    "in",
    "break",
    "continue",
    "return",
    "try",
    "catch",
    "throw",
    "type",
    "as",
    "true",
    "false",
    "null",
    "int",
    "float",
    "bool",
    "string",
    "json",
    "void",
    "list",
    "map",
    "Error",
    "Connection",
    "Delivery",
    "x",
    "y",
    "xs",
    "m",
    "e",
    "f",
    "T",
    "0",
    "1",
    "2.5",
    "\"a\"",
    "\"${x}\"",
    "\"MES\"",
    "\"Speed\"",
    "Log",
    "Info",
    "Route",
    "To",
    "Attributes",
    "Get",
    "Database",
    "Execute",
    "len",
    "push",
    "get",
    "float",
    "error",
    "ExternalSystem",
    "Call",
    "Notify",
    "Send",
    "Shared",
    "Instance",
    "Code",
    "Json",
    "Parse",
];

const VALID: &[&str] = &[
    "fn main(limit: float) -> void {\n    let t = Attributes.Get(\"Temperature\") as float;\n    \
     ExternalSystem.CachedCall(\"MES\", \"PostReading\", { asset: Instance.Code(), value: t, at: Time.Now() });\n    \
     if t > limit { Notify.To(\"Operators\").Send(\"High\", \"${t} C\"); }\n    \
     try { Database.Connection(\"Historian\").Execute(\"INSERT\", [Instance.Code(), t]); }\n    \
     catch e { Log.Warn(\"failed: ${e.message}\"); }\n}\n",
    "type Status = { code: string, running: bool, alarms: list<string> }\n\
     fn main(code: string) -> Status {\n    let attrs = Route.To(code).GetAttributes([\"Running\"]);\n    \
     var alarms: list<string> = [];\n    alarms = Route.To(code).Call(\"ActiveAlarms\", {}) as list<string>;\n    \
     return { code: code, running: attrs[\"Running\"] as bool, alarms: alarms };\n}\n",
    "fn fib(n: int) -> int { if n < 2 { return n; } return fib(n - 1) + fib(n - 2); }\n\
     fn main() -> map<int> { var m: map<int> = {}; for i in 0..10 { m[string(i)] = fib(i); }\n\
     let xs = [1, 2, 3]; xs.push(4); while true { break; } return m; }\n",
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

/// Parses and checks `source` in every way a tool would, and checks the
/// clean-program invariant.
fn check_everything(
    source: &str,
    table: &ModuleTable,
    names: &DeploymentNames,
) -> Result<(), TestCaseError> {
    let parsed = parse(source);
    for kind in [
        None,
        Some(ScriptKind::Api),
        Some(ScriptKind::Instance),
        Some(ScriptKind::Shared),
    ] {
        let options = CheckOptions {
            modules: table,
            kind,
            names: Some(names),
            template: Some("Pump"),
            require_main: true,
        };
        let checked = check(&parsed, &options);
        for diagnostic in &checked.diagnostics {
            prop_assert!(
                diagnostic.primary.span.end as usize <= source.len(),
                "span out of the source: {diagnostic:?}"
            );
        }
        if let Ok(program) = checked.into_program() {
            for function in &program.functions {
                prop_assert!(!has_error_type(&function.ret), "{source}");
                for local in &function.locals {
                    prop_assert!(
                        !has_error_type(&local.ty),
                        "local {} in {source}",
                        local.name
                    );
                }
                prop_assert!(
                    block_is_typed(&function.body),
                    "an Error type in a clean program:\n{source}"
                );
            }
        }
    }
    Ok(())
}

fn has_error_type(ty: &Type) -> bool {
    match ty {
        Type::Error => true,
        Type::List(inner) | Type::Map(inner) | Type::Optional(inner) => has_error_type(inner),
        Type::Record(record) => record.fields.iter().any(|(_, t)| has_error_type(t)),
        _ => false,
    }
}

fn block_is_typed(block: &hir::Block) -> bool {
    block.stmts.iter().all(|stmt| match &stmt.kind {
        StmtKind::Let { init, .. } => expr_is_typed(init),
        StmtKind::Assign { place, value, .. } => {
            let place_typed = match place {
                Place::Local(_) => true,
                Place::ListElement { list, index } => expr_is_typed(list) && expr_is_typed(index),
                Place::MapEntry { map, key } => expr_is_typed(map) && expr_is_typed(key),
            };
            place_typed && expr_is_typed(value)
        }
        StmtKind::Expr(expr) | StmtKind::Throw(expr) | StmtKind::Return(Some(expr)) => {
            expr_is_typed(expr)
        }
        StmtKind::If {
            cond,
            then_block,
            else_block,
        } => {
            expr_is_typed(cond)
                && block_is_typed(then_block)
                && else_block.as_ref().is_none_or(block_is_typed)
        }
        StmtKind::While { cond, body } => expr_is_typed(cond) && block_is_typed(body),
        StmtKind::ForRange {
            start, end, body, ..
        } => expr_is_typed(start) && expr_is_typed(end) && block_is_typed(body),
        StmtKind::ForEach { iterable, body, .. } => expr_is_typed(iterable) && block_is_typed(body),
        StmtKind::Try { body, handler, .. } => block_is_typed(body) && block_is_typed(handler),
        StmtKind::Break | StmtKind::Continue | StmtKind::Return(None) => true,
    })
}

fn expr_is_typed(expr: &hir::Expr) -> bool {
    if has_error_type(&expr.ty) {
        return false;
    }
    match &expr.kind {
        ExprKind::Int(_)
        | ExprKind::Float(_)
        | ExprKind::Bool(_)
        | ExprKind::Null
        | ExprKind::Str(_)
        | ExprKind::Local(_) => true,
        ExprKind::Concat(items) | ExprKind::List(items) | ExprKind::Record(items) => {
            items.iter().all(expr_is_typed)
        }
        ExprKind::Map(entries) => entries.iter().all(|(_, e)| expr_is_typed(e)),
        ExprKind::Field { base, .. } => expr_is_typed(base),
        ExprKind::Index { base, index } => expr_is_typed(base) && expr_is_typed(index),
        ExprKind::Call { args, .. }
        | ExprKind::Builtin { args, .. }
        | ExprKind::Method { args, .. }
        | ExprKind::Host { args, .. } => args.iter().all(expr_is_typed),
        ExprKind::Unary { operand, .. } => expr_is_typed(operand),
        ExprKind::Binary { lhs, rhs, .. } | ExprKind::Logical { lhs, rhs, .. } => {
            expr_is_typed(lhs) && expr_is_typed(rhs)
        }
        ExprKind::Coalesce { value, default } => expr_is_typed(value) && expr_is_typed(default),
        ExprKind::Convert { expr, .. } | ExprKind::As { expr } => expr_is_typed(expr),
    }
}

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..120)
        .prop_map(|tokens| tokens.join(" "))
}

fn spliced_program() -> impl Strategy<Value = String> {
    (
        prop::sample::select(VALID),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        token_soup(),
    )
        .prop_map(|(program, start, length, insert)| {
            let boundaries: Vec<usize> = (0..=program.len())
                .filter(|i| program.is_char_boundary(*i))
                .collect();
            let start_at = boundaries[start.index(boundaries.len())];
            let rest: Vec<usize> = boundaries
                .iter()
                .copied()
                .filter(|b| *b >= start_at)
                .take(12)
                .collect();
            let end_at = rest[length.index(rest.len())];
            let fragment: String = insert.split(' ').take(4).collect::<Vec<_>>().join(" ");
            format!("{}{fragment}{}", &program[..start_at], &program[end_at..])
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn checking_arbitrary_text_never_panics(source in any::<String>()) {
        check_everything(&source, &module_table(), &names())?;
    }

    #[test]
    fn checking_token_soup_never_panics(source in token_soup()) {
        check_everything(&source, &module_table(), &names())?;
    }

    #[test]
    fn checking_spliced_programs_never_panics(source in spliced_program()) {
        check_everything(&source, &module_table(), &names())?;
    }
}

#[test]
fn the_valid_programs_are_clean() {
    let table = module_table();
    for source in VALID {
        let parsed = parse(source);
        let checked = check(&parsed, &CheckOptions::new(&table));
        assert!(checked.into_program().is_ok(), "{source}");
    }
}
