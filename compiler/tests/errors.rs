//! Every runtime error code path, caught and uncaught, with locations.

mod common;

use common::*;
use scl_compiler::{Limits, Status, Value};

fn catch_code(body: &str) -> Value {
    ok(
        &format!(
            "fn main() -> string {{\n    try {{\n        {body}\n    }} catch e {{\n        return \"${{e.kind}}/${{e.code}}\";\n    }}\n    return \"no error\";\n}}"
        ),
        vec![],
    )
}

#[test]
fn script_errors_are_catchable_with_kind_and_code() {
    let cases = [
        (
            "let x = 9223372036854775807; let y = x + 1;",
            "script/overflow",
        ),
        (
            "let x = -9223372036854775807 - 1; let y = x - 1;",
            "script/overflow",
        ),
        (
            "let x = 4611686018427387904; let y = x * 2;",
            "script/overflow",
        ),
        (
            "let x = -9223372036854775807 - 1; let y = x / -1;",
            "script/overflow",
        ),
        (
            "let x = -9223372036854775807 - 1; let y = -x;",
            "script/overflow",
        ),
        ("let z = 0; let y = 1 / z;", "script/division_by_zero"),
        ("let z = 0; let y = 1 % z;", "script/division_by_zero"),
        (
            "let xs = [1, 2]; let y = xs[2];",
            "script/index_out_of_range",
        ),
        (
            "let xs = [1, 2]; let y = xs[-1];",
            "script/index_out_of_range",
        ),
        (
            "var xs: list<int> = []; let y = xs.pop();",
            "script/index_out_of_range",
        ),
        ("let xs = [1, 2]; xs[5] = 1;", "script/index_out_of_range"),
        (
            "let s = \"abc\"; let t = s.substring(2, 9);",
            "script/index_out_of_range",
        ),
        (
            "let xs = [1, 2, 3]; let t = xs.slice(2, 1);",
            "script/index_out_of_range",
        ),
        (
            "let m: map<int> = { a: 1 }; let y = m[\"b\"];",
            "script/missing_key",
        ),
        ("let y = int(\"12x\");", "script/invalid_conversion"),
        ("let y = float(\"abc\");", "script/invalid_conversion"),
        (
            "let n = 0.0; let y = int(n / n);",
            "script/invalid_conversion",
        ),
        ("let y = int(1e300);", "script/invalid_conversion"),
        (
            "let j: json = [1, \"x\"]; let y = j as list<int>;",
            "type/invalid_conversion",
        ),
        (
            "let j: json = 2.5; let y = j as int;",
            "type/invalid_conversion",
        ),
        (
            "let j: json = { a: 1 }; let y = j[\"b\"];",
            "script/missing_key",
        ),
        (
            "let j: json = [1]; let y = j[3];",
            "script/index_out_of_range",
        ),
        ("throw \"boom\";", "script/error"),
        ("throw error(\"mine\", \"text\");", "script/mine"),
        (
            "Test.Fail(\"transient\", \"http_503\");",
            "transient/http_503",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            catch_code(body),
            Value::String(expected.into()),
            "for `{body}`"
        );
    }
}

#[test]
fn maps_of_map_literal_missing_key() {
    let src = "fn main() -> int { var m: map<int> = {}; m[\"a\"] = 1; return m[\"zz\"]; }";
    let error = err(src, vec![]);
    assert_eq!(
        (error.kind.as_str(), error.code.as_str()),
        ("script", "missing_key")
    );
}

#[test]
fn uncaught_error_has_location_and_failure_status() {
    let src = "fn main() -> int {\n    let z = 0;\n    return 10 / z;\n}";
    let outcome = run(src, vec![]);
    assert_eq!(outcome.stats.status, Status::Failure);
    let error = outcome.result.unwrap_err();
    assert_eq!(error.code, "division_by_zero");
    assert_eq!((error.line, error.column), (Some(3), Some(12)));
}

#[test]
fn location_is_where_the_error_started_not_where_it_left() {
    let src = "fn inner(xs: list<int>) -> int {\n  return xs[3];\n}\nfn main() -> int {\n  return inner([1]);\n}";
    let error = err(src, vec![]);
    assert_eq!(error.line, Some(2));
}

#[test]
fn as_error_names_the_path() {
    let src = "fn main() -> list<string> {\n let j = Json.Parse(\"{\\\"alarms\\\": [\\\"a\\\", \\\"b\\\", 3]}\");\n return j[\"alarms\"] as list<string>;\n}";
    let error = err(src, vec![]);
    assert_eq!(error.kind, "type");
    assert!(error.message.contains("$[2]"), "{}", error.message);
    let src = "type A = { alarms: list<string> }\nfn main() -> A {\n let j = Json.Parse(\"{\\\"alarms\\\": [\\\"a\\\", 3]}\");\n return j as A;\n}";
    let error = err(src, vec![]);
    assert!(error.message.contains("$.alarms[1]"), "{}", error.message);
}

#[test]
fn catch_variable_fields_and_host_status() {
    let src = "fn main() -> string {\n try { Test.Fail(\"permanent\", \"bad\"); } catch e { return \"${e.kind} ${e.code} ${e.message} ${e.status ?? 0}\"; }\n return \"\";\n}";
    assert_eq!(
        ok(src, vec![]),
        Value::String("permanent bad host failed with bad 503".into())
    );
}

#[test]
fn nested_try_rethrow_and_error_in_handler() {
    let src = r#"
fn f(n: int) -> int {
    try {
        if n > 2 { throw error("big", "n is ${n}"); }
        return n;
    } catch e {
        throw error("wrapped", e.message);
    }
}
fn main() -> string {
    var out = "";
    for i in 0..5 {
        try {
            out = out + string(f(i)) + ",";
        } catch e {
            out = out + e.code + ":" + e.message + ",";
        }
    }
    return out;
}"#;
    assert_eq!(
        ok(src, vec![]),
        Value::String("0,1,2,wrapped:n is 3,wrapped:n is 4,".into())
    );
}

#[test]
fn limit_errors_are_not_caught() {
    let src = "fn main() -> int { var n = 0; try { while true { n += 1; } } catch e { return -1; } return n; }";
    let outcome = run_with(
        src,
        vec![],
        Limits {
            fuel: Some(10_000),
            ..Limits::default()
        },
    );
    assert_eq!(outcome.stats.status, Status::Limit);
    assert_eq!(outcome.result.unwrap_err().code, "fuel");
}

#[test]
fn break_continue_and_return_inside_try() {
    let src = r#"
fn main() -> int {
    var total = 0;
    for i in 0..10 {
        try {
            if i == 2 { continue; }
            if i == 7 { break; }
            total += i;
        } catch e { total = -100; }
    }
    try { return total; } catch e { return -1; }
}"#;
    assert_eq!(ok(src, vec![]), Value::Int(1 + 3 + 4 + 5 + 6));
}

/// The quick tier branches once for the checks of consecutive arithmetic
/// (`a * b + c`, `x / (n - k)`): whichever of them fails, the error must be
/// the first failing one's, at its place, as the evaluator and the optimized
/// tier report it (`err` compares all three), also inside a `try`.
#[test]
fn merged_arithmetic_checks_report_the_first_failure() {
    let product = "fn main(a: int, b: int, c: int) -> int { return a * b + c; }";
    let max = i64::MAX;
    // The failing operation by its text: `a * b` or the whole `a * b + c`.
    for (args, failing) in [
        (vec![max, 2, 0], "a * b"),
        (vec![max, 1, 1], "a * b + c"),
        (vec![max, 2, -1], "a * b"),
    ] {
        let error = err(product, args.into_iter().map(Value::Int).collect());
        let span = error.span.expect("a located error");
        assert_eq!(error.code, "overflow");
        assert_eq!(&product[span.start as usize..span.end as usize], failing);
    }
    let quotient = "fn main(x: int, n: int) -> int { return x / (n - 3); }";
    for (args, code, column) in [
        (vec![1, i64::MIN], "overflow", 46),
        (vec![1, 3], "division_by_zero", 41),
        (vec![i64::MIN, 2], "overflow", 41),
    ] {
        let error = err(quotient, args.into_iter().map(Value::Int).collect());
        assert_eq!((error.code.as_str(), error.column), (code, Some(column)));
    }
    let caught = "fn main(x: int, n: int) -> string {\n    var total = 7;\n    try {\n        total = total * x + x / (n - 3);\n    } catch e {\n        return \"${e.code} ${total}\";\n    }\n    return \"ok ${total}\";\n}";
    for (args, expected) in [
        (vec![2, 4], "ok 16"),
        (vec![i64::MAX, 4], "overflow 7"),
        (vec![1, 3], "division_by_zero 7"),
        (vec![1, i64::MIN], "overflow 7"),
    ] {
        assert_eq!(
            ok(caught, args.into_iter().map(Value::Int).collect()),
            Value::String(expected.into())
        );
    }
}
