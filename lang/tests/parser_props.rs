//! Property tests: `parse` never panics and keeps its invariants on any
//! input — arbitrary strings, and "token soups" made of SCL's own tokens,
//! which reach far deeper into the parser than random characters do.

use proptest::prelude::*;
use scl_lang::ast::{self, ExprKind, Item, StmtKind};
use scl_lang::parse;

/// Pieces of SCL text: every keyword and operator, literals (good and bad),
/// string fragments with interpolation, comments and line breaks.
const PIECES: &[&str] = &[
    "fn",
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
    "true",
    "false",
    "null",
    "as",
    "main",
    "x",
    "xs",
    "int",
    "float",
    "list",
    "map",
    "string",
    "json",
    "Log",
    "+",
    "-",
    "*",
    "/",
    "%",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "&&",
    "||",
    "!",
    "??",
    "=",
    "+=",
    "-=",
    "*=",
    "/=",
    "%=",
    ".",
    ",",
    ";",
    ":",
    "->",
    "..",
    "?",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "42",
    "1_000",
    "0xFF",
    "0x",
    "3.14",
    "1e-3",
    "1e",
    "99999999999999999999",
    "\"",
    "\"s\"",
    "\"a ${",
    "${",
    "\\n",
    "\\q",
    "\\u{1F600}",
    "//",
    "/*",
    "*/",
    "\n",
    "#",
    "é",
    "\u{0}",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(PIECES), prop::bool::ANY), 0..60).prop_map(
        |pieces| {
            let mut source = String::new();
            for (piece, spaced) in pieces {
                source.push_str(piece);
                if spaced {
                    source.push(' ');
                }
            }
            source
        },
    )
}

/// A valid program with a broken fragment spliced in somewhere.
fn damaged_program() -> impl Strategy<Value = String> {
    const PROGRAM: &str = "type S = { a: int, b: list<string>? }\n\
        fn helper(x: int) -> int { return x * 2 + 1; }\n\
        fn main(limit: float) -> S {\n\
            let t = Attributes.Get(\"T\") as float;\n\
            var xs: list<string> = [];\n\
            if t > limit { xs.push(\"hot ${t}\"); } else if t < 0.0 { throw \"cold\"; }\n\
            for i in 0..10 { if i % 2 == 0 { continue; } }\n\
            try { Log.Info(\"x\"); } catch e { Log.Warn(e.message); }\n\
            return { a: helper(1), b: xs };\n\
        }\n";
    (
        0..PROGRAM.len(),
        0..PROGRAM.len(),
        prop::sample::select(PIECES),
    )
        .prop_map(|(cut_start, cut_length, piece)| {
            let start = floor_boundary(PROGRAM, cut_start);
            let end = floor_boundary(PROGRAM, (start + cut_length % 8).min(PROGRAM.len()));
            format!("{}{}{}", &PROGRAM[..start], piece, &PROGRAM[end..])
        })
}

fn floor_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// Parses and checks what must hold for every input.
fn check_invariants(source: &str) -> Result<(), TestCaseError> {
    let parsed = parse(source);
    let length = source.len() as u32;
    for diagnostic in &parsed.diagnostics {
        let span = diagnostic.primary.span;
        prop_assert!(
            span.start <= span.end && span.end <= length,
            "bad span {span:?}"
        );
        for label in &diagnostic.secondary {
            prop_assert!(label.span.start <= label.span.end && label.span.end <= length);
        }
        prop_assert!(
            !diagnostic.message.contains("TokenKind"),
            "{}",
            diagnostic.message
        );
    }
    // One diagnostic per position, in source order.
    for pair in parsed.diagnostics.windows(2) {
        prop_assert!(pair[0].primary.span.start < pair[1].primary.span.start);
    }
    // Expression ids are 0, 1, 2, … in pre-order and spans lie in the file.
    let mut ids = Vec::new();
    for item in &parsed.file.items {
        if let Item::Fn(function) = item {
            prop_assert!(function.span.end <= length);
            visit_block(&function.body, &mut ids, length)?;
        }
    }
    let expected: Vec<u32> = (0..ids.len() as u32).collect();
    prop_assert_eq!(ids, expected);
    // Rendering never panics either.
    let _ = ast::dump(&parsed.file);
    let _ = scl_lang::diagnostics::render_human("t.scl", source, &parsed.diagnostics, false);
    Ok(())
}

fn visit_block(block: &ast::Block, ids: &mut Vec<u32>, length: u32) -> Result<(), TestCaseError> {
    prop_assert!(block.span.start <= block.span.end && block.span.end <= length);
    for stmt in &block.stmts {
        prop_assert!(stmt.span.start <= stmt.span.end && stmt.span.end <= length);
        match &stmt.kind {
            StmtKind::Let { init, .. } => visit_expr(init, ids, length)?,
            StmtKind::Assign { target, value, .. } => {
                visit_expr(target, ids, length)?;
                visit_expr(value, ids, length)?;
            }
            StmtKind::Expr(e) | StmtKind::Throw(e) | StmtKind::Return(Some(e)) => {
                visit_expr(e, ids, length)?;
            }
            StmtKind::If {
                cond,
                then_block,
                else_branch,
            } => {
                visit_expr(cond, ids, length)?;
                visit_block(then_block, ids, length)?;
                match else_branch.as_deref() {
                    Some(ast::ElseBranch::If(inner)) => {
                        let wrapper = ast::Block {
                            stmts: vec![inner.clone()],
                            span: inner.span,
                        };
                        visit_block(&wrapper, ids, length)?;
                    }
                    Some(ast::ElseBranch::Block(inner)) => visit_block(inner, ids, length)?,
                    None => {}
                }
            }
            StmtKind::While { cond, body } => {
                visit_expr(cond, ids, length)?;
                visit_block(body, ids, length)?;
            }
            StmtKind::For { iter, body, .. } => {
                match iter {
                    ast::ForIter::Range { start, end } => {
                        visit_expr(start, ids, length)?;
                        visit_expr(end, ids, length)?;
                    }
                    ast::ForIter::Each(e) => visit_expr(e, ids, length)?,
                }
                visit_block(body, ids, length)?;
            }
            StmtKind::Try { body, handler, .. } => {
                visit_block(body, ids, length)?;
                visit_block(handler, ids, length)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn visit_expr(expr: &ast::Expr, ids: &mut Vec<u32>, length: u32) -> Result<(), TestCaseError> {
    prop_assert!(
        expr.span.start <= expr.span.end && expr.span.end <= length,
        "{:?}",
        expr.span
    );
    ids.push(expr.id.0);
    let mut children: Vec<&ast::Expr> = Vec::new();
    match &expr.kind {
        ExprKind::Str(parts) => {
            for part in parts {
                if let ast::StrPart::Interp(inner) = part {
                    children.push(inner);
                }
            }
        }
        ExprKind::List(items) | ExprKind::Call { args: items, .. } => children.extend(items),
        ExprKind::Record(fields) => children.extend(fields.iter().map(|field| &field.value)),
        ExprKind::Field { base, .. } => children.push(base),
        ExprKind::Index { base, index } => children.extend([&**base, &**index]),
        ExprKind::MethodCall { receiver, args, .. } => {
            children.push(receiver);
            children.extend(args);
        }
        ExprKind::Unary { operand, .. } => children.push(operand),
        ExprKind::Binary { lhs, rhs, .. } => children.extend([&**lhs, &**rhs]),
        ExprKind::As { expr: inner, .. } => children.push(inner),
        _ => {}
    }
    for child in children {
        visit_expr(child, ids, length)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_500))]

    #[test]
    fn arbitrary_strings_never_panic(source in any::<String>()) {
        check_invariants(&source)?;
    }

    #[test]
    fn token_soups_never_panic(source in token_soup()) {
        check_invariants(&source)?;
    }

    #[test]
    fn damaged_programs_never_panic(source in damaged_program()) {
        check_invariants(&source)?;
    }
}

/// The undamaged program behind `damaged_program` is valid, so the damage is
/// what the parser reacts to.
#[test]
fn damaged_program_base_is_valid() {
    let source = "type S = { a: int, b: list<string>? }\n\
        fn helper(x: int) -> int { return x * 2 + 1; }\n\
        fn main(limit: float) -> S {\n\
            let t = Attributes.Get(\"T\") as float;\n\
            var xs: list<string> = [];\n\
            if t > limit { xs.push(\"hot ${t}\"); } else if t < 0.0 { throw \"cold\"; }\n\
            for i in 0..10 { if i % 2 == 0 { continue; } }\n\
            try { Log.Info(\"x\"); } catch e { Log.Warn(e.message); }\n\
            return { a: helper(1), b: xs };\n\
        }\n";
    let parsed = parse(source);
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    assert_eq!(parsed.file.items.len(), 3);
}
