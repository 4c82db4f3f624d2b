//! The embedding API: typed registration and its checks, host types, named
//! parameters from JSON, host data, calling any function by name.

mod common;

use std::sync::Arc;

use scl_compiler::{
    CallOptions, CompileOptions, Engine, HostContext, HostError, HostType, Status, Value,
};
use scl_lang::modules::{HostFnSig, Owner};
use scl_lang::types::Type;

fn sig(owner: Owner, name: &str, params: &[(&str, Type)], ret: Type) -> HostFnSig {
    HostFnSig {
        owner,
        name: name.into(),
        params: params
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect(),
        ret,
        kinds: Vec::new(),
        name_args: Vec::new(),
        doc: String::new(),
    }
}

#[test]
fn bind_checks_rust_types_against_the_script_signature() {
    let mut engine = Engine::default();
    let declared = sig(
        Owner::Module("Math".into()),
        "Add",
        &[("a", Type::Int), ("b", Type::Float)],
        Type::Int,
    );
    let error = engine
        .bind(
            declared.clone(),
            |_: &mut HostContext<'_, '_>, a: i64, b: i64| Ok::<i64, HostError>(a + b),
        )
        .unwrap_err();
    assert!(error.message.contains("`Math.Add`"), "{}", error.message);
    assert!(
        error.message.contains("parameter 2 `b` is `float`"),
        "{}",
        error.message
    );
    let error = engine
        .bind(declared.clone(), |_: &mut HostContext<'_, '_>, a: i64| {
            Ok::<i64, HostError>(a)
        })
        .unwrap_err();
    assert!(
        error.message.contains("takes 2 parameters"),
        "{}",
        error.message
    );
    let error = engine
        .bind(
            declared.clone(),
            |_: &mut HostContext<'_, '_>, a: i64, b: f64| Ok::<f64, HostError>(a as f64 + b),
        )
        .unwrap_err();
    assert!(error.message.contains("returns `int`"), "{}", error.message);
    engine
        .bind(
            declared.clone(),
            |_: &mut HostContext<'_, '_>, a: i64, b: f64| Ok::<i64, HostError>(a + b as i64),
        )
        .unwrap();
    let error = engine
        .bind(declared, |_: &mut HostContext<'_, '_>, a: i64, b: f64| {
            Ok::<i64, HostError>(a + b as i64)
        })
        .unwrap_err();
    assert!(
        error.message.contains("registered twice"),
        "{}",
        error.message
    );
    let script = engine
        .compile(
            "fn main() -> int { return Math.Add(2, 0.5); }",
            &CompileOptions::default(),
        )
        .unwrap();
    assert_eq!(
        script.call_main(vec![], &CallOptions::default()).result,
        Ok(Value::Int(2))
    );
}

/// A raw host function whose result does not fit its declared type fails the
/// call with `type/host_result`, naming where in the result it went wrong.
#[test]
fn a_host_result_of_the_wrong_shape_names_its_position() {
    let mut engine = Engine::default();
    let record = Type::Record(scl_lang::types::RecordType::new(
        None,
        vec![("tags".into(), Type::list(Type::String))],
    ));
    engine
        .register_raw(
            sig(Owner::Module("Plant".into()), "Read", &[], record),
            |_: &mut HostContext<'_, '_>, _| {
                Ok(Value::Json(serde_json::json!({ "tags": ["a", 2] })))
            },
        )
        .unwrap();
    let script = engine
        .compile(
            "fn main() -> int { return Plant.Read().tags.len(); }",
            &CompileOptions::default(),
        )
        .unwrap();
    let error = script
        .call_main(vec![], &CallOptions::default())
        .result
        .unwrap_err();
    assert_eq!(
        (error.kind.as_str(), error.code.as_str()),
        ("type", "host_result")
    );
    assert!(
        error
            .message
            .contains("result of Plant.Read.tags[1]: expected string"),
        "{}",
        error.message
    );
}

struct Counter {
    start: i64,
}

impl HostType for Counter {
    const NAME: &'static str = "Counter";
}

#[test]
fn host_types_with_methods_and_host_data() {
    let mut engine = Engine::default();
    engine
        .register_fn(
            Owner::Module("Counters".into()),
            "Make",
            &["start"],
            |_: &mut HostContext<'_, '_>, start: i64| {
                Ok::<Arc<Counter>, HostError>(Arc::new(Counter { start }))
            },
        )
        .unwrap();
    engine
        .register_fn(
            Owner::HostType("Counter".into()),
            "Plus",
            &["n"],
            |cx: &mut HostContext<'_, '_>, c: Arc<Counter>, n: i64| {
                let offset = cx.host_data::<i64>().copied().unwrap_or(0);
                Ok::<i64, HostError>(c.start + n + offset)
            },
        )
        .unwrap();
    let error = engine
        .register_fn(
            Owner::HostType("Counter".into()),
            "Bad",
            &[],
            |_: &mut HostContext<'_, '_>, n: i64| Ok::<i64, HostError>(n),
        )
        .unwrap_err();
    assert!(error.message.contains("receiver"), "{}", error.message);
    let script = engine
        .compile(
            "fn main(n: int) -> list<int> { let c = Counters.Make(10); let d = c; return [c.Plus(n), d.Plus(1)]; }",
            &CompileOptions::default(),
        )
        .unwrap();
    let offset: i64 = 100;
    let options = CallOptions {
        host_data: Some(&offset),
        ..CallOptions::default()
    };
    assert_eq!(
        script.call_main(vec![Value::Int(5)], &options).result,
        Ok(Value::List(vec![Value::Int(115), Value::Int(111)]))
    );
}

#[test]
fn named_parameters_from_json() {
    let script = common::compile(
        "type P = { id: int, tags: list<string> }\nfn main(p: P, scale: float, note: string?) -> string { return \"${p.id}:${p.tags.len()}:${scale}:${note ?? \"-\"}\"; }",
    );
    let options = CallOptions::default();
    let good = serde_json::json!({ "p": { "id": 7, "tags": ["a", "b"] }, "scale": 2 });
    assert_eq!(
        script.call_main_json(&good, &options).result,
        Ok(Value::String("7:2:2.0:-".into()))
    );
    // An optional parameter given as `null` is the same as one left out.
    let null_note = serde_json::json!({ "p": { "id": 7, "tags": [] }, "scale": 1, "note": null });
    assert_eq!(
        script.call_main_json(&null_note, &options).result,
        Ok(Value::String("7:0:1.0:-".into()))
    );
    let missing = serde_json::json!({ "scale": 2.0, "note": "n" });
    let error = script
        .call_main_json(&missing, &options)
        .result
        .unwrap_err();
    assert_eq!(
        (error.kind.as_str(), error.code.as_str()),
        ("type", "missing_parameter")
    );
    assert!(error.message.contains("`p`"));
    let extra = serde_json::json!({ "p": { "id": 7, "tags": [] }, "scale": 2.0, "colour": 1 });
    let error = script.call_main_json(&extra, &options).result.unwrap_err();
    assert!(error.message.contains("`colour`"), "{}", error.message);
    let mistyped = serde_json::json!({ "p": { "id": 7, "tags": [1] }, "scale": 2.0 });
    let error = script
        .call_main_json(&mistyped, &options)
        .result
        .unwrap_err();
    assert_eq!(error.kind, "type");
    assert!(
        error
            .message
            .contains("parameter `p`.tags[0]: expected string"),
        "{}",
        error.message
    );
}

/// `call_main_json_to_json` answers what `call_main_json` answers, as JSON:
/// records, maps, lists, optionals and floats, and the same errors.
#[test]
fn json_results_match_value_results() {
    let script = common::compile(
        "type Line = { sku: string, qty: int, note: string? }\n\
         fn main(lines: list<Line>, scale: float, tags: map<int>?) -> { total: float, lines: list<Line>, tags: map<int>?, first: Line? } {\n\
             var first: Line? = null;\n\
             if lines.len() > 0 { first = lines[0]; }\n\
             return { total: scale * 2.0, lines: lines, tags: tags, first: first };\n\
         }",
    );
    let options = CallOptions::default();
    for params in [
        serde_json::json!({ "lines": [{ "sku": "a", "qty": 2 }, { "sku": "ü", "qty": -1, "note": "x" }], "scale": 1.5, "tags": { "k": 1 } }),
        serde_json::json!({ "lines": [], "scale": 0, "tags": null }),
        serde_json::json!({ "lines": [], "scale": 2 }),
    ] {
        let as_value = script.call_main_json(&params, &options).result;
        let as_json = script.call_main_json_to_json(&params, &options).result;
        let expected = as_value.expect("runs").to_json();
        assert_eq!(as_json, Ok(Value::Json(expected.clone())), "{params}");
        let mut text = b"[".to_vec();
        let outcome = script.call_main_json_into(&params, &options, &mut text);
        assert_eq!(outcome.result, Ok(Value::Null), "{params}");
        let expected = format!("[{}", serde_json::to_string(&expected).expect("text"));
        assert_eq!(
            String::from_utf8(text).expect("utf-8"),
            expected,
            "{params}"
        );
    }
    for bad in [
        serde_json::json!({ "lines": [{ "sku": 1, "qty": 2 }], "scale": 1 }),
        serde_json::json!({ "scale": 1 }),
        serde_json::json!({ "lines": [], "scale": 1, "extra": true }),
    ] {
        let as_value = script.call_main_json(&bad, &options).result;
        let as_json = script.call_main_json_to_json(&bad, &options).result;
        let mut text = Vec::new();
        let as_text = script.call_main_json_into(&bad, &options, &mut text).result;
        assert_eq!(as_value.clone().unwrap_err(), as_json.unwrap_err(), "{bad}");
        assert_eq!(as_value.unwrap_err(), as_text.unwrap_err(), "{bad}");
        assert!(text.is_empty(), "{bad}");
    }
}

/// JSON text written straight from a script's value is the text of the JSON value the same
/// call returns, for every kind of value: floats JSON cannot hold, `json` values, nested
/// optionals, maps in insertion order, empty lists and records, and `void`.
#[test]
fn json_text_results_match_json_results() {
    for (ret, body) in [
        ("float", "return 0.1 + 0.2;"),
        ("float", "return 1.0 / 0.0;"),
        ("list<float>", "return [1.0, 2.5e300, 0.0 / 0.0, -0.0];"),
        ("int", "return -9223372036854775807 - 1;"),
        ("string", "return \"ü \\\" \\n \u{1}\";"),
        (
            "map<int?>",
            "var m: map<int?> = {}; m[\"z\"] = 1; m[\"a\"] = null; return m;",
        ),
        (
            "json",
            "let j: json = { b: [1, 2], c: 2.5, a: true, d: { e: \"f\" } }; return j;",
        ),
        (
            "{ a: int?, b: list<string>, c: {} }",
            "return { a: null, b: [], c: {} };",
        ),
        ("list<{ x: float }>?", "return [{ x: 1.0 }, { x: 2.0 }];"),
        ("bool?", "return null;"),
        ("void", "return;"),
    ] {
        let script = common::compile(&format!("fn main() -> {ret} {{ {body} }}"));
        let options = CallOptions::default();
        let params = serde_json::json!({});
        let as_json = match script.call_main_json_to_json(&params, &options).result {
            Ok(Value::Json(json)) => json,
            Ok(Value::Null) => serde_json::Value::Null,
            other => panic!("{ret}: {other:?}"),
        };
        let mut text = Vec::new();
        let outcome = script.call_main_json_into(&params, &options, &mut text);
        assert_eq!(outcome.result, Ok(Value::Null), "{ret}");
        assert_eq!(
            String::from_utf8(text).expect("utf-8"),
            serde_json::to_string(&as_json).expect("text"),
            "{ret}: {body}"
        );
    }
}

#[test]
fn any_function_by_name_and_unknown_names() {
    let script =
        common::compile("fn twice(x: int) -> int { return x * 2; }\nfn main() -> void { }");
    let options = CallOptions::default();
    assert_eq!(
        script.call("twice", vec![Value::Int(21)], &options).result,
        Ok(Value::Int(42))
    );
    assert_eq!(
        script.call("main", vec![], &options).result,
        Ok(Value::Null)
    );
    let outcome = script.call("nope", vec![], &options);
    assert_eq!(outcome.stats.status, Status::Failure);
    let outcome = script.call("twice", vec![], &options);
    assert_eq!(outcome.result.unwrap_err().code, "argument_count");
}

#[test]
fn lowered_ir_prints() {
    let script = common::compile("fn main(a: int) -> int { if a > 1 { return a * 2; } return 0; }");
    let text = script.lowered().to_string();
    assert!(text.contains("fn main(v1: i64) -> i64"), "{text}");
    assert!(text.contains("mul.checked"), "{text}");
    assert!(text.contains("enter !bb1"), "{text}");
}
