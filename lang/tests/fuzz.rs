//! Fuzz targets of the front end (lexer, parser, formatter), bounded for CI.
//! See `tests/fuzz/harness.rs` for how to run them longer; the corpus is
//! `tests/fuzz/corpus/scl/` plus every script under `tests/` and `examples/`.
//!
//! - `fuzz_lexer`: any text lexes without panicking into tokens that lie in
//!   the text, in order, without overlap, ending with one `Eof`; every
//!   diagnostic has a stable `SCLnnnn` code and a span inside the text.
//! - `fuzz_parser`: any text parses into a tree plus diagnostics (the front
//!   end never fails), and rendering both never panics.
//! - `fuzz_format`: for every input that parses, `format` keeps the tree
//!   (`format::equivalent`) and is idempotent: `format(format(x)) ==
//!   format(x)`.

#[path = "../../tests/fuzz/harness.rs"]
mod harness;

use proptest::prelude::*;
use scl_lang::format::{equivalent, format_unverified};
use scl_lang::lexer::{TokenKind, lex};
use scl_lang::{Diagnostic, parse};

/// Scripts the mutators start from (read once per test process).
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

/// Pieces a mutation inserts: the tokens and the troublemakers of SCL.
const PIECES: &[&[u8]] = &[
    b"{",
    b"}",
    b"(",
    b")",
    b"[",
    b"]",
    b"<",
    b">",
    b"\"",
    b"${",
    b"\\",
    b"\\u{",
    b"/*",
    b"*/",
    b"//",
    b"\n",
    b"\r\n",
    b";",
    b",",
    b".",
    b"..",
    b"?",
    b"??",
    b"->",
    b"=",
    b"fn ",
    b"let ",
    b"var ",
    b"if ",
    b"else ",
    b"while ",
    b"for ",
    b" in ",
    b"try ",
    b"catch e ",
    b"throw ",
    b"return ",
    b"type ",
    b"as ",
    b"null",
    b"0x",
    b"1e",
    b"99999999999999999999",
    b"\xc3\xa9",
    b"\xe2\x88\x91",
    b"\xf0\x9f\x98\x80",
    b"\0",
    b"\t",
    b"\xef\xbb\xbf",
    b"main",
    b"int",
    b"json",
    b"list<",
    b"map<",
];

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn check_diagnostics(source: &str, diagnostics: &[Diagnostic]) -> Result<(), String> {
    for diagnostic in diagnostics {
        let span = diagnostic.primary.span;
        if span.start > span.end || span.end as usize > source.len() {
            return Err(format!("span {span:?} outside {} bytes", source.len()));
        }
        let id = diagnostic.code.id;
        if !(id.len() == 7 && id.starts_with("SCL") && id[3..].bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(format!("diagnostic without a stable code: {id:?}"));
        }
    }
    Ok(())
}

fn lexer_holds(source: &str) -> Result<(), String> {
    let lexed = lex(source);
    let Some(last) = lexed.tokens.last() else {
        return Err("no tokens at all".into());
    };
    if last.kind != TokenKind::Eof {
        return Err(format!("the last token is {:?}", last.kind));
    }
    let mut end = 0u32;
    for token in &lexed.tokens {
        let span = token.span;
        if span.start < end || span.start > span.end || span.end as usize > source.len() {
            return Err(format!("token {token:?} after offset {end}"));
        }
        if token.kind == TokenKind::Eof && !std::ptr::eq(token, last) {
            return Err("an Eof before the end".into());
        }
        end = span.end;
    }
    check_diagnostics(source, &lexed.diagnostics)
}

fn parser_holds(source: &str) -> Result<(), String> {
    let parsed = parse(source);
    check_diagnostics(source, &parsed.diagnostics)?;
    let _ = scl_lang::ast::dump(&parsed.file);
    let _ = scl_lang::diagnostics::render_human("fuzz.scl", source, &parsed.diagnostics, false);
    Ok(())
}

fn format_holds(source: &str) -> Result<(), String> {
    let Ok(once) = format_unverified(source) else {
        // Syntax errors: `format` must say so rather than guess, which it did.
        return if parse(source).has_errors() {
            Ok(())
        } else {
            Err("format refused a program that parses".into())
        };
    };
    equivalent(source, &once).map_err(|problem| format!("format changed the tree: {problem}"))?;
    let twice = format_unverified(&once).map_err(|d| format!("formatted text fails: {d:?}"))?;
    if twice != once {
        return Err(format!(
            "not idempotent:\n--- once\n{once}\n--- twice\n{twice}"
        ));
    }
    Ok(())
}

fn everything_holds(bytes: &[u8]) -> Result<(), String> {
    let source = lossy(bytes);
    lexer_holds(&source)?;
    parser_holds(&source)?;
    format_holds(&source)
}

fn mutations() -> impl Strategy<Value = (usize, Vec<(u8, usize, usize)>)> {
    (
        any::<usize>(),
        prop::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 1..6),
    )
}

#[test]
fn fuzz_corpus_replays() {
    let inputs = seeds();
    assert!(inputs.len() > 100, "only {} corpus inputs", inputs.len());
    harness::replay(inputs, everything_holds);
}

/// Valid programs whose layout is shuffled (white space and comments between
/// tokens) format back to one layout with the same tree.
fn relaid(source: &str, choices: &[u8]) -> String {
    let tokens = lex(source).tokens;
    let mut out = String::new();
    let mut previous = 0usize;
    // Inside a string (and its interpolations) no line may break.
    let mut in_string = 0u32;
    for (index, token) in tokens.iter().enumerate() {
        let start = token.span.start as usize;
        let gap = &source[previous..start];
        let choice = choices
            .get(index % choices.len().max(1))
            .copied()
            .unwrap_or(0);
        match token.kind {
            TokenKind::StrStart => in_string += 1,
            TokenKind::StrEnd => in_string = in_string.saturating_sub(1),
            _ => {}
        }
        // Only gaps of plain white space are changed: comments stay put.
        if in_string > 0 || token.kind == TokenKind::StrEnd {
            out.push_str(gap);
        } else if gap.chars().all(char::is_whitespace) && !gap.is_empty() {
            out.push_str(match choice % 4 {
                0 => " ",
                1 => "\n",
                // A blank line is kept by the formatter (it separates
                // groups of statements), so the shuffle adds none.
                2 => "\t \n  ",
                _ => gap,
            });
        } else {
            out.push_str(gap);
        }
        out.push_str(&source[start..token.span.end as usize]);
        previous = token.span.end as usize;
    }
    out.push_str(&source[previous..]);
    out
}

proptest! {
    #![proptest_config(harness::config(2_000))]

    #[test]
    fn fuzz_lexer(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let source = lossy(&bytes);
        lexer_holds(&source).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn fuzz_lexer_text(source in any::<String>()) {
        lexer_holds(&source).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn fuzz_parser_mutated_scripts((pick, ops) in mutations()) {
        let inputs = seeds();
        let seed = &inputs[pick % inputs.len()].1;
        let bytes = harness::mutate(seed, &ops, PIECES);
        everything_holds(&bytes).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(harness::config(300))]

    #[test]
    fn fuzz_format_relaid_programs(pick in any::<usize>(), choices in prop::collection::vec(any::<u8>(), 1..64)) {
        let inputs: Vec<_> = seeds()
            .iter()
            .map(|(_, bytes)| lossy(bytes))
            .filter(|source| !parse(source).has_errors())
            .collect();
        let source = &inputs[pick % inputs.len()];
        let shuffled = relaid(source, &choices);
        prop_assert!(!parse(&shuffled).has_errors(), "relaying broke the program:\n{}", shuffled);
        format_holds(&shuffled).map_err(TestCaseError::fail)?;
        // Every layout of one program formats to the same text.
        let canonical = format_unverified(source).expect("a valid program formats");
        let from_shuffled = format_unverified(&shuffled).expect("a valid program formats");
        prop_assert_eq!(canonical, from_shuffled);
    }
}

/// The smallest stack any caller of the front end runs it on: Rust's
/// default for spawned threads (script pool threads have 8 MiB, the language
/// server and `scl check` run on the main thread). The parser's caps keep an
/// unoptimised build well inside it; 512 KiB is not enough for an
/// unoptimised build at the caps, and no caller uses so little.
const STACK: usize = 2 << 20;

/// Nesting far past the parser's caps is a diagnostic, not a stack overflow.
#[test]
fn fuzz_deep_nesting_is_a_diagnostic() {
    let handle = std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(|| {
            for (open, close) in [("(", ")"), ("[", "]"), ("{", "}"), ("-", ""), ("!", "")] {
                for depth in [1_000usize, 100_000] {
                    let body = format!("{}1{}", open.repeat(depth), close.repeat(depth));
                    let source = format!("fn main() -> void {{ let x = {body}; }}");
                    everything_holds(source.as_bytes())
                        .unwrap_or_else(|p| panic!("`{open}` × {depth}: {p}"));
                    assert!(
                        parse(&source).has_errors(),
                        "depth {depth} of `{open}` accepted"
                    );
                }
            }
            let interpolations = format!(
                "fn main() -> void {{ let x = {}1{}; }}",
                "\"${".repeat(50_000),
                "}\"".repeat(50_000)
            );
            everything_holds(interpolations.as_bytes()).unwrap_or_else(|p| panic!("{p}"));
        })
        .expect("a thread");
    handle.join().expect("no stack overflow or panic");
}

/// Regression: a diagnostic past column 65,535 of its line made miette's
/// renderer panic inside `format!` (found by the test above). It is now
/// rendered without the source line.
#[test]
fn fuzz_regression_diagnostic_on_a_very_long_line() {
    for column in [2_001usize, 65_536, 200_000] {
        let source = format!(
            "fn main() -> void {{ let x = 1;{} let y = ; }}",
            " ".repeat(column)
        );
        let parsed = parse(&source);
        assert!(parsed.has_errors());
        let text =
            scl_lang::diagnostics::render_human("long.scl", &source, &parsed.diagnostics, false);
        assert!(text.contains("long.scl:1:"), "{text}");
        assert!(text.contains("SCL"), "{text}");
    }
    // Short lines keep the drawn snippet.
    let parsed = parse("fn main() -> void { let y = ; }");
    let text = scl_lang::diagnostics::render_human(
        "short.scl",
        "fn main() -> void { let y = ; }",
        &parsed.diagnostics,
        false,
    );
    assert!(text.contains("let y = ;"), "{text}");
}
