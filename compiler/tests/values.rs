//! Strings, lists, maps, records, optionals, json, conversions and methods.

mod common;

use common::*;
use scl_compiler::Value;

fn s(text: &str) -> Value {
    Value::String(text.into())
}

#[test]
fn float_formatting_and_conversions() {
    assert_eq!(
        eval(
            "string",
            "string(10.0) + \" \" + string(2.5) + \" \" + string(0.0000001)"
        ),
        s("10.0 2.5 1e-7")
    );
    assert_eq!(
        eval("string", "\"${1e21} ${-0.0} ${0.1 + 0.2}\""),
        s("1e21 -0.0 0.30000000000000004")
    );
    assert_eq!(eval("int", "int(-2.9)"), Value::Int(-2));
    assert_eq!(eval("float", "float(3) / 2.0"), Value::Float(1.5));
    assert_eq!(eval("int", "int(\" 42 \")"), Value::Int(42));
    assert_eq!(eval("float", "float(\"2.5e1\")"), Value::Float(25.0));
    assert_eq!(eval("float", "7.5 % 2.0"), Value::Float(1.5));
    assert_eq!(eval("bool", "1.0 / 0.0 > 1e308"), Value::Bool(true));
    assert_eq!(
        eval(
            "string",
            "string(true) + string(42) + string([1, 2]) + string({ a: 1 })"
        ),
        s("true42[1,2]{\"a\":1}")
    );
}

#[test]
fn string_methods() {
    assert_eq!(eval("int", "\"héllo\".len()"), Value::Int(5));
    assert_eq!(
        eval("string", "\" Ab \".trim().upper() + \"Ab\".lower()"),
        s("ABab")
    );
    assert_eq!(
        eval(
            "bool",
            "\"abc\".contains(\"b\") && \"abc\".starts_with(\"a\") && \"abc\".ends_with(\"c\")"
        ),
        Value::Bool(true)
    );
    assert_eq!(
        eval("list<string>", "\"a,b,,c\".split(\",\")"),
        Value::List(vec![s("a"), s("b"), s(""), s("c")])
    );
    assert_eq!(eval("string", "\"aXbX\".replace(\"X\", \"-\")"), s("a-b-"));
    assert_eq!(eval("string", "\"héllo\".substring(1, 3)"), s("él"));
    assert_eq!(
        eval(
            "int",
            "\"héllo\".index_of(\"l\") * 10 + \"x\".index_of(\"y\")"
        ),
        Value::Int(19)
    );
    assert_eq!(
        eval(
            "bool",
            "\"abc\" < \"abd\" && \"b\" > \"abc\" && \"x\" == \"x\" && \"x\" != \"y\""
        ),
        Value::Bool(true)
    );
}

#[test]
fn list_methods_and_reference_semantics() {
    let src = r#"
fn main() -> json {
    var xs = [3, 1, 2];
    xs.push(0);
    let alias = xs;
    alias.sort();
    let popped = xs.pop();
    xs.reverse();
    let names = ["b", "a"];
    return { xs: xs, popped: popped, has2: xs.contains(2), slice: xs.slice(0, 2), joined: names.join("+"), n: xs.len() };
}"#;
    let expected = serde_json::json!({ "xs": [2, 1, 0], "popped": 3, "has2": true, "slice": [2, 1], "joined": "b+a", "n": 3 });
    assert_eq!(ok(src, vec![]).to_json(), expected);
}

#[test]
fn maps_keep_insertion_order() {
    let src = r#"
fn main() -> json {
    var m: map<int> = {};
    m["z"] = 1;
    m["a"] = 2;
    m["z"] += 10;
    let removed = m.remove("a");
    let none = m.remove("nope");
    m["b"] = 3;
    var keys = "";
    for k in m { keys = keys + k; }
    return { keys: keys, values: m.values(), list: m.keys(), got: m.get("b") ?? 0, missing: m.get("q") ?? -1,
             removed: removed ?? 0, none: none == null, has: m.contains_key("z"), n: m.len() };
}"#;
    let expected = serde_json::json!({ "keys": "zb", "values": [11, 3], "list": ["z", "b"], "got": 3, "missing": -1,
        "removed": 2, "none": true, "has": true, "n": 2 });
    assert_eq!(ok(src, vec![]).to_json(), expected);
}

#[test]
fn records_and_optionals() {
    let src = r#"
type P = { x: int, y: int, label: string? }
fn main() -> json {
    let a: P = { x: 1, y: 2, label: null };
    let c: P = { y: 2, x: 1, label: "c" };
    var maybe: int? = null;
    let first = maybe ?? 7;
    let was_null = maybe == null;
    maybe = 5;
    return [a.x + c.y, c.label ?? "none", a.label ?? "none", first, maybe ?? 0, was_null, maybe != null, a];
}"#;
    assert_eq!(
        ok(src, vec![]).to_json(),
        serde_json::json!([3, "c", "none", 7, 5, true, true, { "label": null, "x": 1, "y": 2 }])
    );
}

#[test]
fn json_values_and_as() {
    let src = r#"
type Reading = { asset: string, value: float, tags: list<string>? }
fn main() -> json {
    let doc = Json.Parse("{\"asset\": \"P1\", \"value\": 2, \"extra\": null, \"xs\": [1, 2.0]}");
    let xs = doc["xs"] as list<int>;
    let r: Reading = { asset: doc["asset"] as string, value: doc["value"] as float, tags: null };
    let n: json = null;
    return { xs: xs, r: r, isnull: n == null, notnull: doc != null, fallback: doc["extra"] ?? "d", v: doc["value"] };
}"#;
    let expected = serde_json::json!({ "xs": [1, 2], "r": { "asset": "P1", "value": 2.0, "tags": null },
        "isnull": true, "notnull": true, "fallback": "d", "v": 2 });
    assert_eq!(ok(src, vec![]).to_json(), expected);
}

#[test]
fn interpolation_and_concat() {
    assert_eq!(
        eval("string", "\"a${1 + 1}b${\"c\" + \"d\"}e${true}${[1]}\""),
        s("a2bcdetrue[1]")
    );
}

#[test]
fn loops_with_shadowing_and_reassigned_iterables() {
    let src = r#"
fn main() -> int {
    var xs = [1, 2, 3];
    var total = 0;
    for x in xs {
        xs = [100];
        total += x;
    }
    var i = 0;
    while true {
        i += 1;
        if i > 5 { break; }
        if i % 2 == 0 { continue; }
        total += 10;
    }
    for k in 0..3 { let total = k; }
    return total;
}"#;
    assert_eq!(ok(src, vec![]), Value::Int(36));
}
