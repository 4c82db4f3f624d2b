//! The formatter (`scl fmt`) on real files: the repository's own scripts are
//! formatted (and stay so), formatting keeps the syntax tree and the
//! comments, and formatting formatted text changes nothing.
//!
//! `UPDATE_EXPECT=1 cargo test -p scl-lang --test format` rewrites the
//! repository's scripts in the canonical layout (never `tests/diagnostics/`,
//! whose files are deliberately broken).

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use scl_lang::format::{equivalent, format, format_unverified};

/// The checkout's root. The test runner's `CARGO_MANIFEST_DIR` first: a binary
/// built by another clone into a shared target dir (and not rebuilt, because
/// this crate's sources are older than it) still carries that clone's path.
fn repository_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("..")
}

fn scl_files(folder: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        panic!("cannot read {}", folder.display());
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            scl_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "scl") {
            files.push(path);
        }
    }
}

/// The scripts that must be in the canonical layout.
fn formatted_files() -> Vec<PathBuf> {
    let root = repository_root();
    let mut files = Vec::new();
    scl_files(&root.join("examples"), &mut files);
    scl_files(&root.join("tests/conformance"), &mut files);
    assert!(
        files.len() > 10,
        "expected the example and conformance scripts, found {files:?}"
    );
    files
}

/// Formats `source`, checking meaning and idempotence, and returns the output.
fn checked_format(name: &str, source: &str) -> Option<String> {
    let output = format_unverified(source).ok()?;
    if let Err(problem) = equivalent(source, &output) {
        panic!("{name}: {problem}\n--- output:\n{output}");
    }
    let again = format_unverified(&output).expect("formatted output parses");
    assert_eq!(again, output, "{name}: formatting is not idempotent");
    Some(output)
}

#[test]
fn repository_scripts_are_formatted() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut unformatted = Vec::new();
    for path in formatted_files() {
        let name = path.display().to_string();
        let source = std::fs::read_to_string(&path).expect("readable script");
        let Some(output) = checked_format(&name, &source) else {
            panic!("{name} has syntax errors");
        };
        if output != source {
            if update {
                std::fs::write(&path, &output).expect("writable script");
            } else {
                unformatted.push(name);
            }
        }
    }
    assert!(
        unformatted.is_empty(),
        "not in the canonical layout (run `scl fmt` on them, or UPDATE_EXPECT=1): {unformatted:?}"
    );
}

/// The diagnostics corpus is full of odd but parsable programs: formatting
/// each one keeps its meaning and is idempotent.
#[test]
fn diagnostics_corpus_formats_without_changing_meaning() {
    let mut files = Vec::new();
    scl_files(&repository_root().join("tests/diagnostics"), &mut files);
    let mut formatted = 0;
    for path in files {
        let source = std::fs::read_to_string(&path).expect("readable script");
        if checked_format(&path.display().to_string(), &source).is_some() {
            formatted += 1;
        }
    }
    assert!(
        formatted > 20,
        "only {formatted} diagnostics programs parsed"
    );
}

#[test]
fn format_returns_syntax_errors() {
    let errors = format("fn main() { let x = ; }").expect_err("a syntax error");
    assert_eq!(errors[0].code.id, "SCL0010");
}

#[test]
fn a_long_script_is_laid_out_canonically() {
    let source = r#"// kind: instance
type Reading={asset:string,value:float,unit:string?}
fn main(limit:float)->void{
let t=Attributes.Get("Temperature") as float;var n=0;
ExternalSystem.CachedCall("MES","PostReading",{asset:Instance.Code(),value:t,at:Time.Now(),extra:[1,2,3]});
if t>limit&&!(n>=3||t<0.0){Notify.To("Operators").Send("High","${Instance.Code()} is at ${t} C");}
else if t==limit{n+=1;}else{n=-n;}
for i in 0..10{if i%2==0{continue;}n*=i;}
try{throw error("code","message");}catch e{Log.Warn(e.message);}
let m:map<list<int>> ={};
let x=(m.get("a")??[]).len();
while n>0{n-=1;}
}
"#;
    let expected = r#"// kind: instance
type Reading = { asset: string, value: float, unit: string? }

fn main(limit: float) -> void {
    let t = Attributes.Get("Temperature") as float;
    var n = 0;
    ExternalSystem.CachedCall(
        "MES",
        "PostReading",
        { asset: Instance.Code(), value: t, at: Time.Now(), extra: [1, 2, 3] },
    );
    if t > limit && !(n >= 3 || t < 0.0) {
        Notify.To("Operators").Send("High", "${Instance.Code()} is at ${t} C");
    } else if t == limit {
        n += 1;
    } else {
        n = -n;
    }
    for i in 0..10 {
        if i % 2 == 0 {
            continue;
        }
        n *= i;
    }
    try {
        throw error("code", "message");
    } catch e {
        Log.Warn(e.message);
    }
    let m: map<list<int>> = {};
    let x = (m.get("a") ?? []).len();
    while n > 0 {
        n -= 1;
    }
}
"#;
    if let Err(errors) = format_unverified(source) {
        panic!("the script does not parse: {errors:?}");
    }
    assert_eq!(
        checked_format("long script", source).as_deref(),
        Some(expected)
    );
}

/// The places between two tokens of a formatted script where a comment
/// can be put without changing the tokens: after each token.
fn token_ends(source: &str) -> Vec<usize> {
    let tokens = scl_lang::lexer::lex(source).tokens;
    let mut ends = Vec::new();
    let mut depth = 0i32;
    for token in &tokens {
        use scl_lang::lexer::TokenKind;
        match token.kind {
            TokenKind::StrStart => depth += 1,
            TokenKind::StrEnd => depth -= 1,
            _ => {}
        }
        // Inside a string or its interpolations a comment would be text, or
        // would end the string.
        if depth == 0 && token.kind != TokenKind::Eof {
            ends.push(token.span.end as usize);
        }
    }
    ends
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Comments put anywhere between tokens of the repository's scripts
    /// survive formatting, in order, without changing the tree, and the
    /// result is a fixed point.
    #[test]
    fn comments_anywhere_survive(
        file_index in 0usize..1000,
        places in proptest::collection::vec((0usize..10_000, 0usize..4), 1..6),
    ) {
        let files = formatted_files();
        let path = &files[file_index % files.len()];
        let original = std::fs::read_to_string(path).expect("readable script");
        let ends = token_ends(&original);
        let mut insertions: Vec<(usize, &str)> = places
            .iter()
            .map(|(place, style)| {
                let comment = match style {
                    0 => " // note\n",
                    1 => " /* inline */ ",
                    2 => "\n// own line\n",
                    _ => "\n\n/* block\n   over lines */\n",
                };
                (ends[place % ends.len()], comment)
            })
            .collect();
        insertions.sort_by_key(|(offset, _)| std::cmp::Reverse(*offset));
        let mut source = original.clone();
        for (offset, comment) in insertions {
            source.insert_str(offset, comment);
        }
        let name = format!("{} with comments", path.display());
        let output = checked_format(&name, &source);
        prop_assert!(output.is_some(), "{name} no longer parses:\n{source}");
    }
}

/// Random expressions, written with every parenthesis (which the tree does
/// not keep): the formatter must put back exactly the ones precedence needs.
fn expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("1".to_string()),
        Just("2.5".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("\"s\"".to_string()),
        Just("\"x${a}y\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("aVeryLongVariableNameThatFillsTheLine".to_string()),
    ];
    leaf.prop_recursive(5, 48, 3, |inner| {
        let operators = prop_oneof![
            Just("+"),
            Just("-"),
            Just("*"),
            Just("/"),
            Just("%"),
            Just("=="),
            Just("!="),
            Just("<"),
            Just("<="),
            Just(">"),
            Just(">="),
            Just("&&"),
            Just("||"),
            Just("??"),
        ];
        prop_oneof![
            (inner.clone(), operators, inner.clone())
                .prop_map(|(l, op, r)| format!("({l} {op} {r})")),
            inner.clone().prop_map(|e| format!("(-{e})")),
            inner.clone().prop_map(|e| format!("(!{e})")),
            inner.clone().prop_map(|e| format!("({e} as int)")),
            inner.clone().prop_map(|e| format!("({e} as list<json>)")),
            inner.clone().prop_map(|e| format!("({e}).f")),
            (inner.clone(), inner.clone()).prop_map(|(e, i)| format!("({e})[{i}]")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("f({a}, {b})")),
            (inner.clone(), inner.clone()).prop_map(|(e, a)| format!("({e}).m({a})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("[{a}, {b}]")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("{{ k: {a}, \"q r\": {b} }}")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Parentheses and line breaks never change the tree.
    #[test]
    fn precedence_and_breaking_keep_the_tree(expr in expression(), target in expression()) {
        let source = format!("fn main() {{\n    let x = {expr};\n    y[{target}] = {expr};\n    g({target});\n}}\n");
        prop_assert!(checked_format("random expression", &source).is_some(), "does not parse:\n{source}");
    }
}
