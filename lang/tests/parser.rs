//! Parser tests, data-driven: each table pairs a source snippet with the
//! expected S-expression dump of its tree and its diagnostics (one line
//! each: code, span, message).
//!
//! When a table changes on purpose, run with `UPDATE_EXPECT=1` to print the
//! actual table, review it, and paste it back.

use scl_lang::ast::{self, ExprKind, Item, StmtKind};
use scl_lang::codes;
use scl_lang::{Parsed, parse};

/// The dump of a whole file followed by its diagnostics.
fn render_file(source: &str) -> String {
    let parsed = parse(source);
    let mut out = ast::dump(&parsed.file).trim_end().to_string();
    out.push_str(&render_diagnostics(&parsed));
    out
}

/// The dump of one expression, written as `let _ = <source>;` in `main`.
fn render_expression(source: &str) -> String {
    let wrapped = format!("fn main() {{ let _ = {source}; }}");
    let parsed = parse(&wrapped);
    let mut out = match parsed.file.items.first() {
        Some(Item::Fn(function)) => match function.body.stmts.first().map(|stmt| &stmt.kind) {
            Some(StmtKind::Let { init, .. }) => ast::dump::dump_expr(init),
            _ => format!("no let statement in {}", ast::dump(&parsed.file)),
        },
        _ => "no function".to_string(),
    };
    out.push_str(&render_diagnostics(&parsed));
    out
}

fn render_diagnostics(parsed: &Parsed) -> String {
    let mut out = String::new();
    for diagnostic in &parsed.diagnostics {
        let span = diagnostic.primary.span;
        out.push_str(&format!(
            "\n{} {}..{} {}",
            diagnostic.code.id, span.start, span.end, diagnostic.message
        ));
    }
    out
}

/// Compares every case of a table; on mismatch prints the whole actual
/// table (ready to paste back) and fails.
fn check_table(name: &str, cases: &[(&str, &str)], render: fn(&str) -> String) {
    let mut failures = Vec::new();
    let mut actual_table = format!("const {name}: &[(&str, &str)] = &[\n");
    for (source, expected) in cases {
        let actual = render(source);
        actual_table.push_str(&format!("    ({}, {}),\n", raw(source), raw(&actual)));
        if actual != *expected {
            failures.push(format!(
                "--- source:\n{source}\n--- expected:\n{expected}--- actual:\n{actual}"
            ));
        }
    }
    actual_table.push_str("];\n");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        println!("{actual_table}");
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A Rust string literal for `text`: plain when possible, raw otherwise.
fn raw(text: &str) -> String {
    if !text.contains(['"', '\\', '\n']) {
        return format!("\"{text}\"");
    }
    let mut hashes = String::from("#");
    while text.contains(&format!("\"{hashes}")) {
        hashes.push('#');
    }
    format!("r{hashes}\"{text}\"{hashes}")
}

#[test]
fn expressions() {
    check_table("EXPRESSIONS", EXPRESSIONS, render_expression);
}

#[test]
fn statements_and_items() {
    check_table("STATEMENTS", STATEMENTS, render_file);
}

#[test]
fn errors_and_recovery() {
    check_table("ERRORS", ERRORS, render_file);
}

/// Every lexer and parser code (SCL0001–SCL0014) is triggered by the example
/// in its registry entry, as the only diagnostic of that program.
#[test]
fn each_syntax_code_is_triggered_by_its_example() {
    let syntax_codes: Vec<_> = codes::ALL
        .iter()
        .filter(|code| code.id <= "SCL0014")
        .collect();
    assert_eq!(
        syntax_codes.len(),
        11,
        "the lexer and parser own eleven codes"
    );
    for code in syntax_codes {
        let parsed = parse(code.example);
        let found: Vec<&str> = parsed.diagnostics.iter().map(|d| d.code.id).collect();
        assert_eq!(
            found,
            vec![code.id],
            "example of {} ({}):\n{}",
            code.id,
            code.name,
            code.example
        );
    }
}

#[test]
fn the_language_reference_examples_parse_cleanly() {
    for (name, source) in [
        (
            "api example",
            include_str!("scripts/language_example_api.scl"),
        ),
        (
            "instance example",
            include_str!("scripts/language_example_instance.scl"),
        ),
    ] {
        let parsed = parse(source);
        assert!(
            parsed.diagnostics.is_empty(),
            "{name}: {:?}",
            parsed.diagnostics
        );
        assert!(
            parsed
                .file
                .items
                .iter()
                .any(|item| matches!(item, Item::Fn(f) if f.name.name == "main"))
        );
    }
    let api = parse(include_str!("scripts/language_example_api.scl"));
    assert_eq!(api.file.items.len(), 2, "a type and main");
    let Some(Item::Fn(main)) = api.file.items.get(1) else {
        panic!("main is the second item")
    };
    assert_eq!(main.params.len(), 2);
    assert_eq!(main.body.stmts.len(), 4, "let, var, if, return");
}

/// Collects every expression id of a file in pre-order.
fn expression_ids(file: &ast::File) -> Vec<u32> {
    fn expr(e: &ast::Expr, out: &mut Vec<u32>) {
        out.push(e.id.0);
        match &e.kind {
            ExprKind::Str(parts) => {
                for part in parts {
                    if let ast::StrPart::Interp(inner) = part {
                        expr(inner, out);
                    }
                }
            }
            ExprKind::List(items) | ExprKind::Call { args: items, .. } => {
                items.iter().for_each(|item| expr(item, out));
            }
            ExprKind::Record(fields) => fields.iter().for_each(|field| expr(&field.value, out)),
            ExprKind::Field { base, .. } => expr(base, out),
            ExprKind::Index { base, index } => {
                expr(base, out);
                expr(index, out);
            }
            ExprKind::MethodCall { receiver, args, .. } => {
                expr(receiver, out);
                args.iter().for_each(|arg| expr(arg, out));
            }
            ExprKind::Unary { operand, .. } => expr(operand, out),
            ExprKind::Binary { lhs, rhs, .. } => {
                expr(lhs, out);
                expr(rhs, out);
            }
            ExprKind::As { expr: inner, .. } => expr(inner, out),
            _ => {}
        }
    }
    fn block(b: &ast::Block, out: &mut Vec<u32>) {
        b.stmts.iter().for_each(|s| stmt(s, out));
    }
    fn stmt(s: &ast::Stmt, out: &mut Vec<u32>) {
        match &s.kind {
            StmtKind::Let { init, .. } => expr(init, out),
            StmtKind::Assign { target, value, .. } => {
                expr(target, out);
                expr(value, out);
            }
            StmtKind::Expr(e) | StmtKind::Throw(e) | StmtKind::Return(Some(e)) => expr(e, out),
            StmtKind::If {
                cond,
                then_block,
                else_branch,
            } => {
                expr(cond, out);
                block(then_block, out);
                match else_branch.as_deref() {
                    Some(ast::ElseBranch::If(s)) => stmt(s, out),
                    Some(ast::ElseBranch::Block(b)) => block(b, out),
                    None => {}
                }
            }
            StmtKind::While { cond, body } => {
                expr(cond, out);
                block(body, out);
            }
            StmtKind::For { iter, body, .. } => {
                match iter {
                    ast::ForIter::Range { start, end } => {
                        expr(start, out);
                        expr(end, out);
                    }
                    ast::ForIter::Each(e) => expr(e, out),
                }
                block(body, out);
            }
            StmtKind::Try { body, handler, .. } => {
                block(body, out);
                block(handler, out);
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for item in &file.items {
        if let Item::Fn(function) = item {
            block(&function.body, &mut out);
        }
    }
    out
}

#[test]
fn expression_ids_count_up_from_zero_in_pre_order() {
    let sources = [
        include_str!("scripts/language_example_api.scl"),
        include_str!("scripts/language_example_instance.scl"),
        "fn a() { let x = f(1 + 2, [3]) as int; }\nfn b() { for i in 0..n { s = \"${i * 2}\"; } }",
        // Broken input is numbered the same way.
        "fn a() { let x = 1 +; f() = 2; let y = (3; }\nfn b() { return {a: [1, }; }",
    ];
    for source in sources {
        let ids = expression_ids(&parse(source).file);
        let expected: Vec<u32> = (0..ids.len() as u32).collect();
        assert_eq!(ids, expected, "{source}");
        assert!(ids.len() > 5, "{source}");
    }
}

/// The text under each expression's span, in pre-order.
fn span_texts(source: &str) -> Vec<String> {
    let parsed = parse(source);
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let Some(Item::Fn(function)) = parsed.file.items.first() else {
        panic!("no function")
    };
    let Some(StmtKind::Let { init, .. }) = function.body.stmts.first().map(|s| &s.kind) else {
        panic!("no let")
    };
    let mut texts = Vec::new();
    let mut stack = vec![init];
    while let Some(e) = stack.pop() {
        texts.push(source[e.span.range()].to_string());
        match &e.kind {
            ExprKind::Binary { lhs, rhs, .. } => {
                stack.push(rhs);
                stack.push(lhs);
            }
            ExprKind::MethodCall { receiver, args, .. } => {
                args.iter().rev().for_each(|arg| stack.push(arg));
                stack.push(receiver);
            }
            ExprKind::Index { base, index } => {
                stack.push(index);
                stack.push(base);
            }
            ExprKind::As { expr, .. } | ExprKind::Unary { operand: expr, .. } => stack.push(expr),
            ExprKind::Call { args, .. } | ExprKind::List(args) => {
                args.iter().rev().for_each(|arg| stack.push(arg));
            }
            _ => {}
        }
    }
    texts
}

#[test]
fn expression_spans_cover_their_source_text() {
    let source = "fn main() { let v = foo.bar(1) + -xs[2] as float * f([\"s\"]); }";
    assert_eq!(
        span_texts(source),
        vec![
            "foo.bar(1) + -xs[2] as float * f([\"s\"])",
            "foo.bar(1)",
            "foo",
            "1",
            "-xs[2] as float * f([\"s\"])",
            "-xs[2] as float",
            "-xs[2]",
            "xs[2]",
            "xs",
            "2",
            "f([\"s\"])",
            "[\"s\"]",
            "\"s\"",
        ]
    );
}

#[test]
fn statement_and_item_spans() {
    let source = "type T = { a: int }\nfn main(x: int) -> int {\n    let y = x;\n    return y;\n}";
    let parsed = parse(source);
    assert!(parsed.diagnostics.is_empty());
    let texts: Vec<&str> = parsed
        .file
        .items
        .iter()
        .map(|item| match item {
            Item::Fn(f) => &source[f.span.range()],
            Item::Type(t) => &source[t.span.range()],
        })
        .collect();
    assert_eq!(
        texts,
        vec![
            "type T = { a: int }",
            "fn main(x: int) -> int {\n    let y = x;\n    return y;\n}"
        ]
    );
    let Some(Item::Fn(main)) = parsed.file.items.get(1) else {
        panic!()
    };
    let statements: Vec<&str> = main
        .body
        .stmts
        .iter()
        .map(|s| &source[s.span.range()])
        .collect();
    assert_eq!(statements, vec!["let y = x;", "return y;"]);
    assert_eq!(&source[main.params[0].span.range()], "x: int");
    assert_eq!(&source[main.params[0].name.span.range()], "x");
}

#[test]
fn unclosed_delimiter_labels_the_opening_delimiter() {
    let source = "fn main() -> int { return (1 + 2; }";
    let parsed = parse(source);
    assert_eq!(parsed.diagnostics.len(), 1);
    let diagnostic = &parsed.diagnostics[0];
    assert_eq!(diagnostic.code, codes::UNCLOSED_DELIMITER);
    assert_eq!(&source[diagnostic.primary.span.range()], ";");
    assert_eq!(diagnostic.secondary.len(), 1);
    assert_eq!(&source[diagnostic.secondary[0].span.range()], "(");
    assert_eq!(diagnostic.secondary[0].span.start, 26);
}

#[test]
fn missing_semicolon_points_just_after_the_previous_token() {
    let source = "fn main() {\n    let x = foo(1)\n    return x;\n}";
    let parsed = parse(source);
    assert_eq!(parsed.diagnostics.len(), 1);
    let diagnostic = &parsed.diagnostics[0];
    assert_eq!(diagnostic.code, codes::MISSING_SEMICOLON);
    let after_call = source.find("foo(1)").unwrap() + "foo(1)".len();
    assert_eq!(diagnostic.primary.span.range(), after_call..after_call);
    assert_eq!(diagnostic.primary.message.as_deref(), Some("add `;` here"));
}

#[test]
fn messages_name_tokens_readably() {
    let messages: Vec<String> = [
        "fn main() { let x = 1 + 2 3; }",
        "fn main() { let x = 1 + 2 foo; }",
        "fn main() { let x = 1 + 2 \"s\"; }",
        "fn main() { let x = 1 + 2 while; }",
        "fn main() { let x = 1 + 2 2.5; }",
        "fn main() { let x = ",
    ]
    .iter()
    .map(|source| parse(source).diagnostics[0].message.clone())
    .collect();
    assert_eq!(
        messages,
        vec![
            "expected `;` or an operator, found integer `3`",
            "expected `;` or an operator, found identifier `foo`",
            "expected `;` or an operator, found a string",
            "expected `;` after the statement, found keyword `while`",
            "expected `;` or an operator, found number `2.5`",
            "expected an expression, found end of file",
        ]
    );
    for message in &messages {
        assert!(
            !message.contains("TokenKind") && !message.contains("Some("),
            "{message}"
        );
    }
}

/// Input nested far beyond any real script must not overflow the stack: it
/// gets a diagnostic and a tree.
#[test]
fn deep_nesting_is_reported_not_a_stack_overflow() {
    let depth = 20_000;
    let cases = [
        format!(
            "fn main() {{ let x = {}1{}; }}",
            "(".repeat(depth),
            ")".repeat(depth)
        ),
        format!("fn main() {{ let x = {}1; }}", "-".repeat(depth)),
        format!("fn main() {{ let x = {}1; }}", "!".repeat(depth)),
        format!(
            "fn main() {{ let x = {}1{}; }}",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
        format!("fn main() {{ let x = 1{}; }}", " + 1".repeat(depth)),
        format!("fn main() {{ let x = 1{}; }}", " ?? 1".repeat(depth)),
        format!("fn main() {{ let x = a{}; }}", ".b".repeat(depth)),
        format!("fn main() {{ let x = a{}; }}", " as int".repeat(depth)),
        format!("fn main() {{ {} }}", "if x { ".repeat(depth)),
        format!(
            "fn main() {{ if x {{ }} {} }}",
            "else if x { } ".repeat(depth)
        ),
        format!(
            "fn main(x: {}int{}) {{ }}",
            "list<".repeat(depth),
            ">".repeat(depth)
        ),
        format!(
            "fn main() {{ let x = {}1{}; }}",
            "{a: ".repeat(depth),
            "}".repeat(depth)
        ),
        format!("fn main() {{ let x = {}; }}", "\"${".repeat(depth)),
        format!(
            "fn main() {{ let x = {}1{}; }}",
            "f(".repeat(depth),
            ")".repeat(depth)
        ),
    ];
    for source in &cases {
        let parsed = parse(source);
        assert!(!parsed.diagnostics.is_empty(), "{}", &source[..60]);
        assert!(!parsed.file.items.is_empty(), "{}", &source[..60]);
    }
    // Nesting that real scripts use is fine.
    let moderate = format!(
        "fn main() {{ let x = {}1{}; }}",
        "(".repeat(40),
        ")".repeat(40)
    );
    assert!(parse(&moderate).diagnostics.is_empty());
}

const EXPRESSIONS: &[(&str, &str)] = &[
    ("a ?? b ?? c", "(?? a (?? b c))"),
    ("a || b ?? c", "(?? (|| a b) c)"),
    ("a ?? b || c", "(?? a (|| b c))"),
    ("a || b && c", "(|| a (&& b c))"),
    ("a && b || c", "(|| (&& a b) c)"),
    ("a && b == c", "(&& a (== b c))"),
    ("a == b && c", "(&& (== a b) c)"),
    ("a == b != c", "(!= (== a b) c)"),
    ("a != b < c", "(!= a (< b c))"),
    ("a < b == c < d", "(== (< a b) (< c d))"),
    ("a <= b + c", "(<= a (+ b c))"),
    ("a > b - c", "(> a (- b c))"),
    ("a >= b * c", "(>= a (* b c))"),
    ("a + b * c", "(+ a (* b c))"),
    ("a * b + c", "(+ (* a b) c)"),
    ("a - b - c", "(- (- a b) c)"),
    ("a / b % c", "(% (/ a b) c)"),
    ("a - b / c", "(- a (/ b c))"),
    ("-a * b", "(* (neg a) b)"),
    ("!a && b", "(&& (not a) b)"),
    ("- -a", "(neg (neg a))"),
    ("!!a", "(not (not a))"),
    ("-x as float", "(as (neg x) float)"),
    ("a + b as int", "(+ a (as b int))"),
    ("a * b as float", "(* a (as b float))"),
    ("!x as bool", "(as (not x) bool)"),
    ("x as int as float", "(as (as x int) float)"),
    ("x as int? ?? 0", "(?? (as x (opt int)) 0)"),
    ("x as list<int?>", "(as x (list (opt int)))"),
    ("x as map<list<int>>", "(as x (map (list int)))"),
    (
        "x as {a: int, b: string?}",
        "(as x (record (a int) (b (opt string))))",
    ),
    ("x as json", "(as x json)"),
    ("-a.b", "(neg (. a b))"),
    ("-f(x)", "(neg (call f x))"),
    ("(a + b) * c", "(* (+ a b) c)"),
    ("a < (b < c)", "(< a (< b c))"),
    ("f(x).y[0]", "(index (. (call f x) y) 0)"),
    ("a.b(c).d", "(. (method a b c) d)"),
    ("a.b.c", "(. (. a b) c)"),
    ("xs[i][j]", "(index (index xs i) j)"),
    ("f()", "(call f)"),
    ("f(1, 2,)", "(call f 1 2)"),
    (r#"Log.Info("x")"#, r#"(method Log Info "x")"#),
    (
        r#"Route.To(code).Call("S", {})"#,
        r#"(method (method Route To code) Call "S" (record))"#,
    ),
    (r#"m["k"].len()"#, r#"(method (index m "k") len)"#),
    ("42", "42"),
    ("1_000", "1000"),
    ("0xFF", "255"),
    ("0x_ff", "255"),
    ("0", "0"),
    ("9223372036854775807", "9223372036854775807"),
    ("3.14", "3.14"),
    ("1e-3", "0.001"),
    ("2.5E10", "25000000000.0"),
    ("1_000.5", "1000.5"),
    ("1E+2", "100.0"),
    ("0.5e1", "5.0"),
    ("true", "true"),
    ("false", "false"),
    ("null", "null"),
    ("x", "x"),
    ("[]", "(list)"),
    ("[1, 2,]", "(list 1 2)"),
    ("[[1], []]", "(list (list 1) (list))"),
    ("{}", "(record)"),
    (
        r#"{ a: 1, "quoted key": 2, }"#,
        r#"(record (a 1) ("quoted key" 2))"#,
    ),
    ("{a: {b: [1]}}", "(record (a (record (b (list 1)))))"),
    (r#""""#, r#""""#),
    (r#""plain""#, r#""plain""#),
    (
        r#""esc \n \t \r \\ \" \$ \0 \u{1F600}""#,
        r#""esc \n \t \r \\ \" $ \0 😀""#,
    ),
    (r#""a ${b} c""#, r#"(str "a " b " c")"#),
    (r#""${x}""#, "(str x)"),
    (r#""${x}${y}""#, "(str x y)"),
    (
        r#""a ${ {x: "}"}.x } b""#,
        r#"(str "a " (. (record (x "}")) x) " b")"#,
    ),
    (
        r#""outer ${ "inner ${y}" } end""#,
        r#"(str "outer " (str "inner " y) " end")"#,
    ),
    (r#""$notinterp""#, r#""$notinterp""#),
    (r#""\${x}""#, r#""${x}""#),
    (r#""${ a + b * 2 }""#, "(str (+ a (* b 2)))"),
    (r#""${m["k"]}""#, r#"(str (index m "k"))"#),
    (r#""100% $ {x}""#, r#""100% $ {x}""#),
    ("/* a /* b */ c */ 1", "1"),
    ("1 /* x */ + /**/ 2", "(+ 1 2)"),
    (
        r#"1 // tail
"#,
        "1",
    ),
];

const STATEMENTS: &[(&str, &str)] = &[
    (
        r#"fn main() { let r: { type: string, in: int } = {type: "p", in: 1}; let t = r.type; r.for(); }"#,
        r#"(fn main () void (block (let r (record (type string) (in int)) (record (type "p") (in 1))) (let t (. r type)) (expr (method r for))))"#,
    ),
    ("fn main() {}", "(fn main () void (block))"),
    (
        "fn main(a: int, b: list<string>, c: map<json>?,) -> { ok: bool } { }",
        "(fn main ((a int) (b (list string)) (c (opt (map json)))) (record (ok bool)) (block))",
    ),
    (
        "type Pump = { code: string, speed: float?, tags: list<string>, }",
        "(type Pump (record (code string) (speed (opt float)) (tags (list string))))",
    ),
    (
        "type Alias = map<list<int?>>",
        "(type Alias (map (list (opt int))))",
    ),
    (
        "fn main() { let x = 1; let y: float = 2.0; var z: list<int> = []; }",
        "(fn main () void (block (let x 1) (let y float 2.0) (var z (list int) (list))))",
    ),
    (
        r#"fn main() { x = 1; x += 1; x -= 2; x *= 3; x /= 4; x %= 5; xs[0] = v; r.f = 1; m["k"] += 1; }"#,
        r#"(fn main () void (block (= x 1) (=+ x 1) (=- x 2) (=* x 3) (=/ x 4) (=% x 5) (= (index xs 0) v) (= (. r f) 1) (=+ (index m "k") 1)))"#,
    ),
    (
        "fn main() { f(x); x.m(); 1 + 2; }",
        "(fn main () void (block (expr (call f x)) (expr (method x m)) (expr (+ 1 2))))",
    ),
    (
        "fn main() { if a { x(); } }",
        "(fn main () void (block (if a (block (expr (call x))))))",
    ),
    (
        "fn main() { if a { x(); } else { y(); } }",
        "(fn main () void (block (if a (block (expr (call x))) (else (block (expr (call y)))))))",
    ),
    (
        "fn main() { if a { x(); } else if b { y(); } else if c { z(); } else { w(); } }",
        "(fn main () void (block (if a (block (expr (call x))) (else (if b (block (expr (call y))) (else (if c (block (expr (call z))) (else (block (expr (call w)))))))))))",
    ),
    (
        "fn main() { if (a) { } }",
        "(fn main () void (block (if a (block))))",
    ),
    (
        "fn main() { if x == {a: 1} { } }",
        "(fn main () void (block (if (== x (record (a 1))) (block))))",
    ),
    (
        "fn main() { while i < 10 { i += 1; } }",
        "(fn main () void (block (while (< i 10) (block (=+ i 1)))))",
    ),
    (
        "fn main() { for x in xs { } }",
        "(fn main () void (block (for x (each xs) (block))))",
    ),
    (
        "fn main() { for i in 0..n { } }",
        "(fn main () void (block (for i (range 0 n) (block))))",
    ),
    (
        "fn main() { for i in a + 1..b * 2 { } }",
        "(fn main () void (block (for i (range (+ a 1) (* b 2)) (block))))",
    ),
    (
        "fn main() { for k in m.keys() { continue; } }",
        "(fn main () void (block (for k (each (method m keys)) (block (continue)))))",
    ),
    (
        "fn main() { while true { break; } }",
        "(fn main () void (block (while true (block (break)))))",
    ),
    (
        "fn main() -> int { return 1; }",
        "(fn main () int (block (return 1)))",
    ),
    (
        "fn main() { return; }",
        "(fn main () void (block (return)))",
    ),
    (
        r#"fn main() { throw "boom"; throw error("c", "m"); }"#,
        r#"(fn main () void (block (throw "boom") (throw (call error "c" "m"))))"#,
    ),
    (
        "fn main() { try { f(); } catch e { Log.Warn(e.message); } }",
        "(fn main () void (block (try (block (expr (call f))) (catch e (block (expr (method Log Warn (. e message))))))))",
    ),
    (
        r#"fn f(n: int) -> int { if n < 2 { return n; } return f(n - 1) + f(n - 2); }
fn main() -> int { return f(10); }"#,
        r#"(fn f ((n int)) int (block (if (< n 2) (block (return n))) (return (+ (call f (- n 1)) (call f (- n 2))))))
(fn main () int (block (return (call f 10))))"#,
    ),
];

const ERRORS: &[(&str, &str)] = &[
    (
        r#"fn a() -> int { let x = 1 + ; return x; }
fn b() { foo(1 2); }
fn c() { let y = (3; }"#,
        r#"(fn a () int (block (let x (+ 1 <error>)) (return x)))
(fn b () void (block (expr (call foo 1))))
(fn c () void (block (let y 3)))
SCL0010 28..29 expected an expression, found `;`
SCL0010 57..58 expected `,` or `)`, found integer `2`
SCL0011 82..83 unclosed `(`: expected `)`, found `;`"#,
    ),
    (
        r#"fn main() {
  let a = ;
  let b = 1 2;
  let c = [1, 2;
  let d = 4;
}"#,
        r#"(fn main () void (block (let a <error>) (let b 1) (let c (list 1 2)) (let d 4)))
SCL0010 22..23 expected an expression, found `;`
SCL0010 36..37 expected `;` or an operator, found integer `2`
SCL0011 54..55 unclosed `[`: expected `]`, found `;`"#,
    ),
    (
        r#"let x = 1;
fn main() { let y = 1 return y; }
type = int"#,
        r#"(fn main () void (block (let y 1) (return y)))
SCL0014 0..10 expected `fn` or `type`, found keyword `let`
SCL0012 32..32 expected `;` after the statement, found keyword `return`
SCL0010 50..51 expected a type name, found `=`"#,
    ),
    (
        "fn main() { let x = 1 return x; }",
        r#"(fn main () void (block (let x 1) (return x)))
SCL0012 21..21 expected `;` after the statement, found keyword `return`"#,
    ),
    (
        r#"fn main() { let x = 1
  let y = 2; }"#,
        r#"(fn main () void (block (let x 1) (let y 2)))
SCL0012 21..21 expected `;` after the statement, found keyword `let`"#,
    ),
    (
        "fn main() { let x = 1; let y = 2 }",
        r#"(fn main () void (block (let x 1) (let y 2)))
SCL0012 32..32 expected `;` after the statement, found `}`"#,
    ),
    (
        "fn main() -> int { return (1 + 2; }",
        r#"(fn main () int (block (return (+ 1 2))))
SCL0011 32..33 unclosed `(`: expected `)`, found `;`"#,
    ),
    (
        "fn main() { let x = [1, 2; }",
        r#"(fn main () void (block (let x (list 1 2))))
SCL0011 25..26 unclosed `[`: expected `]`, found `;`"#,
    ),
    (
        "fn main() { foo(; }",
        r#"(fn main () void (block (expr (call foo))))
SCL0011 16..17 unclosed `(`: expected `)`, found `;`"#,
    ),
    (
        "fn main() { let x = (1 + (2 * 3); let y = 4; }",
        r#"(fn main () void (block (let x (+ 1 (* 2 3))) (let y 4)))
SCL0011 32..33 unclosed `(`: expected `)`, found `;`"#,
    ),
    (
        "fn main() { if x { y(); }",
        r#"(fn main () void (block (if x (block (expr (call y))))))
SCL0011 25..25 unclosed `{`: expected `}`, found end of file"#,
    ),
    (
        r#"fn a() { let x = 1;
fn b() {}"#,
        r#"(fn a () void (block (let x 1)))
(fn b () void (block))
SCL0011 20..22 unclosed `{`: expected `}`, found keyword `fn`"#,
    ),
    (
        "fn main() -> int { return 1 +; }",
        r#"(fn main () int (block (return (+ 1 <error>))))
SCL0010 29..30 expected an expression, found `;`"#,
    ),
    (
        "fn main() { let x = 1 + 2 3; }",
        r#"(fn main () void (block (let x (+ 1 2))))
SCL0010 26..27 expected `;` or an operator, found integer `3`"#,
    ),
    (
        "fn main() { let = 5; let y = 2; }",
        r#"(fn main () void (block <error-stmt> (let y 2)))
SCL0010 16..17 expected a variable name, found `=`"#,
    ),
    (
        "fn main() { let x: = 1; }",
        r#"(fn main () void (block <error-stmt>))
SCL0010 19..20 expected a type, found `=`"#,
    ),
    (
        "fn main() { let x; }",
        r#"(fn main () void (block <error-stmt>))
SCL0010 17..18 expected `:` or `=`, found `;`"#,
    ),
    (
        "fn main() { let x = {a: 1, b 2}; x = 3; }",
        r#"(fn main () void (block (let x (record (a 1))) (= x 3)))
SCL0010 29..30 expected `:` and the field's value, found integer `2`"#,
    ),
    (
        "fn main() { x = y = 1; }",
        r#"(fn main () void (block (= x y)))
SCL0010 18..19 expected `;` or an operator, found `=`"#,
    ),
    (
        "fn main() { if x == 1 y(); }",
        r#"(fn main () void (block <error-stmt>))
SCL0010 22..23 expected `{`, found identifier `y`"#,
    ),
    (
        "fn main() { for x xs { } }",
        r#"(fn main () void (block <error-stmt>))
SCL0010 18..20 expected `in`, found identifier `xs`"#,
    ),
    (
        "fn main() { try { } }",
        r#"(fn main () void (block <error-stmt>))
SCL0010 20..21 expected `catch`, found `}`"#,
    ),
    (
        "fn main() { else { } }",
        r#"(fn main () void (block <error-stmt>))
SCL0010 12..16 expected a statement, found keyword `else`"#,
    ),
    (
        "fn main() { { let x = 1; } let y = 2; }",
        r#"(fn main () void (block <error-stmt> (let y 2)))
SCL0010 12..13 expected a statement, found `{`"#,
    ),
    (
        "fn main(a int, b: int) {}",
        r#"(fn main ((b int)) void (block))
SCL0010 10..13 expected `:` and the parameter's type, found identifier `int`"#,
    ),
    (
        r#"fn main( { }
fn b() {}"#,
        r#"(fn b () void (block))
SCL0010 9..10 expected a parameter name, found `{`"#,
    ),
    (
        "fn main() -> list<int { }",
        r#"(fn main () <error> (block))
SCL0010 22..23 expected `>` to close `list<...>`, found `{`"#,
    ),
    (
        r#"type T = { a: int, b }
fn main() {}"#,
        r#"(type T (record (a int)))
(fn main () void (block))
SCL0010 21..22 expected `:` and the field's type, found `}`"#,
    ),
    (
        "fn main() { return a.; }",
        r#"(fn main () void (block (return a)))
SCL0010 21..22 expected a field or method name after `.`, found `;`"#,
    ),
    (
        "fn main() { a.b.c = 1; a[1] += 2; 1 = 2; f() = 3; a.m() += 1; }",
        r#"(fn main () void (block (= (. (. a b) c) 1) (=+ (index a 1) 2) <error-stmt> <error-stmt> <error-stmt>))
SCL0013 34..35 invalid assignment target
SCL0013 41..44 invalid assignment target
SCL0013 50..55 invalid assignment target"#,
    ),
    (
        "fn main() { (f)(x); g()(y); }",
        r#"(fn main () void (block (expr (call f x)) (expr <error>)))
SCL0010 23..24 only a function name can be called here"#,
    ),
    (
        r#"}
fn main() {}"#,
        r#"(fn main () void (block))
SCL0014 0..1 expected `fn` or `type`, found `}`"#,
    ),
    (
        r#"fn main() { let x = 1; } }
fn b() {}"#,
        r#"(fn main () void (block (let x 1)))
(fn b () void (block))
SCL0014 25..26 expected `fn` or `type`, found `}`"#,
    ),
    (
        r#"fn main() { let s = "${x +}"; }"#,
        r#"(fn main () void (block (let s (str (+ x <error>)))))
SCL0010 26..27 expected an expression, found `}` (the end of the interpolation)"#,
    ),
    (
        "fn main() { let x = a & b; }",
        r#"(fn main () void (block (let x a)))
SCL0001 22..23 invalid character `&`"#,
    ),
    (
        "fn main() { let x = 1 ### 2; }",
        r#"(fn main () void (block (let x 1)))
SCL0001 22..25 invalid characters `###`"#,
    ),
    (
        "fn main() { let x = £; }",
        r#"(fn main () void (block (let x <error>)))
SCL0001 20..22 invalid character `£`"#,
    ),
    (
        "fn main() { let x = 0x; let y = 1e; let z = 1.5e+; }",
        r#"(fn main () void (block (let x <error>) (let y <error>) (let z <error>)))
SCL0006 20..22 malformed number: hexadecimal literal has no digits
SCL0006 32..34 malformed number: exponent has no digits
SCL0006 44..49 malformed number: exponent has no digits"#,
    ),
    (
        "fn main() { let x = 99999999999999999999 + 1; let y = 0x8000000000000000; }",
        r#"(fn main () void (block (let x (+ <error> 1)) (let y <error>)))
SCL0005 20..40 integer literal is too large
SCL0005 54..72 integer literal is too large"#,
    ),
    (
        r#"fn main() { let x = "abc\q\u{110000}\u{zz}"; }"#,
        r#"(fn main () void (block (let x "abczz}")))
SCL0004 24..26 invalid escape: unknown escape `\q`
SCL0004 26..36 invalid escape: `110000` is not a unicode code point
SCL0004 36..39 invalid escape: a unicode escape is written `\u{1F600}`"#,
    ),
    (
        r#"fn main() { let s = "${x"; }"#,
        r#"(fn main () void (block (let s "")))
SCL0002 20..28 unterminated string"#,
    ),
    (
        r#"fn main() { let s = "${ "abc }";
  let y = 2; }"#,
        r#"(fn main () void (block (let s "") (let y 2)))
SCL0002 20..32 unterminated string"#,
    ),
    (
        r#"fn main() { let s = "abc
  let y = 2; }"#,
        r#"(fn main () void (block (let s "") (let y 2)))
SCL0002 20..24 unterminated string"#,
    ),
    (
        "fn main() { /* never closed",
        r#"(fn main () void (block (expr <error>)))
SCL0003 12..14 unterminated block comment"#,
    ),
    (
        r#"fn main() { let x = {"a${b}": 1}; }"#,
        r#"(fn main () void (block (let x (record (a 1)))))
SCL0010 25..26 a record key cannot be interpolated"#,
    ),
];
