//! No input makes an IDE feature panic: property tests feed the analysis,
//! every feature (at every kind of position) and the formatter with
//! fragments of SCL glued together at random — half-typed calls, unclosed
//! strings and comments, stray delimiters, non-ASCII text.

use std::path::Path;

use proptest::prelude::*;
use scl_lang::ScriptKind;
use scl_lang::Span;
use scl_lsp::ide::{self, World};

const FRAGMENTS: &[&str] = &[
    "fn",
    " main",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    " let ",
    " var ",
    "x",
    "y",
    " = ",
    "1",
    "2.5",
    ";",
    ",",
    ":",
    ".",
    "\"",
    "\"a\"",
    "\"${",
    "x}",
    "}\"",
    " int",
    " list<",
    "map<",
    ">",
    "?",
    " ?? ",
    " as ",
    "json",
    "/*",
    "*/",
    "// c",
    "\n",
    " ",
    "\u{e9}",
    "\u{1F600}",
    " return ",
    " if ",
    " else ",
    " for ",
    " in ",
    "0..",
    " try ",
    " catch e ",
    " throw ",
    " type ",
    "T",
    " = { a: int }",
    "r.a",
    "Log.",
    "Info(",
    "Attributes.Get(\"",
    "Speed",
    "Route.To(\"PUMP-001\").",
    "GetAttribute(\"",
    "Database.Connection(\"Historian\").",
    "Query(",
    "ExternalSystem.Call(\"MES\", \"",
    "Notify.To(\"",
    "Scripts.Call(\"",
    "Shared.Call(\"",
    "float(",
    "error(\"c\", ",
    "s.len()",
    ".upper(",
    "+",
    "-",
    "*",
    "==",
    "&&",
    "!",
    "99999999999999999999",
    "0x",
    "\\q",
    "break;",
    "continue;",
];

fn source() -> impl Strategy<Value = String> {
    proptest::collection::vec(0..FRAGMENTS.len(), 0..60)
        .prop_map(|picks| picks.into_iter().map(|i| FRAGMENTS[i]).collect::<String>())
}

fn deployment() -> ide::deployment::DeploymentInfo {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plant");
    let text = std::fs::read_to_string(root.join("deploy.toml")).expect("example deployment");
    ide::deployment::parse(&text, &root).expect("example deployment parses")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn no_feature_panics(
        text in source(),
        positions in proptest::collection::vec(0usize..10_000, 1..6),
        kind in 0usize..5,
    ) {
        let modules = scl_stdlib::signatures::module_table();
        let info = deployment();
        let world = World {
            modules: &modules,
            kind: ScriptKind::ALL.get(kind).copied(),
            names: Some(&info.names),
            template: Some("Pump"),
        };
        let analysis = ide::analyze(&text, &world);
        let _ = analysis.diagnostics();
        let _ = ide::symbols::document_symbols(&analysis);
        let tokens = ide::semantic::semantic_tokens(&analysis);
        for pair in tokens.windows(2) {
            prop_assert!(pair[0].span.end <= pair[1].span.start, "overlapping tokens {pair:?}");
        }
        for position in positions {
            let offset = position % (text.len() + 1);
            let _ = ide::hover::hover(&analysis, &world, offset);
            let _ = ide::completion::completions(&text, &world, offset);
            let _ = ide::signature::signature_help(&analysis, &world, offset);
            let _ = ide::navigation::definition(&analysis, offset);
            let _ = ide::navigation::references(&analysis, offset, true);
            let _ = ide::navigation::prepare_rename(&analysis, offset);
            let _ = ide::navigation::rename(&analysis, offset, "renamed");
            let end = (offset + 7).min(text.len());
            let _ = ide::actions::fixes(&analysis, Span::new(offset, end));
        }
        // The formatter keeps the meaning and is idempotent on whatever parses.
        if let Ok(formatted) = scl_lang::format::format_unverified(&text) {
            let same = scl_lang::format::equivalent(&text, &formatted);
            prop_assert!(same.is_ok(), "{:?}\n--- formatted:\n{}", same, formatted);
            let again = scl_lang::format::format_unverified(&formatted);
            prop_assert_eq!(again.as_deref(), Ok(formatted.as_str()));
        }
    }
}
