//! Fuzz target of central's inbound request decoding (`POST /api/{method}`):
//! arbitrary bytes, arbitrary JSON values, mutated valid bodies and odd
//! content types go over real HTTP to a central node started in this
//! process. Every answer is a 200 or a 4xx with exactly `{"error", "code"}`
//! and a documented code — never a 500 — except the one 500 the method can
//! legitimately give (`Order` sums quantities and overflows, a script error).
//! `POST /api/composite` (several calls in one body) and `POST /api/bulk/{method}`
//! (a bulk job's records) are fuzzed the same way.
//! Corpus: `tests/fuzz/corpus/api/`. See `tests/fuzz/harness.rs` for longer
//! runs.

mod central_support;
#[path = "../../tests/fuzz/harness.rs"]
mod harness;

use central_support::{ERP_KEY, Fixture};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::Value;

/// The 4xx codes a body can cause (docs/api.md).
const BODY_CODES: &[&str] = &[
    "invalid_json",
    "invalid_body",
    "missing_parameter",
    "unknown_parameter",
    "invalid_parameter",
    "payload_too_large",
    "unsupported_media_type",
];

#[derive(Debug)]
struct Sent {
    method: &'static str,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Whether `Order`'s script overflows on this body (its only runtime error).
fn order_overflows(body: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let Some(items) = value.get("items").and_then(Value::as_array) else {
        return false;
    };
    let total: i128 = items
        .iter()
        .filter_map(|item| item.get("qty").and_then(Value::as_i64))
        .map(i128::from)
        .sum();
    let mut running: i128 = 0;
    let mut overflowed = false;
    for item in items {
        running += item
            .get("qty")
            .and_then(Value::as_i64)
            .map_or(0, i128::from);
        overflowed |= running > i64::MAX as i128 || running < i64::MIN as i128;
    }
    overflowed || total > i64::MAX as i128 || total < i64::MIN as i128
}

async fn send(fixture: &Fixture, sent: &Sent) -> Result<(), String> {
    let mut request = fixture
        .client
        .post(format!("{}/api/{}", fixture.base, sent.method))
        .header("X-API-Key", ERP_KEY)
        .body(sent.body.clone());
    if let Some(content_type) = &sent.content_type {
        request = request.header("content-type", content_type.as_str());
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    let status = response.status().as_u16();
    let text = response
        .bytes()
        .await
        .map_err(|e| format!("no body: {e}"))?;
    let body: Value = serde_json::from_slice(&text)
        .map_err(|e| format!("{status}: the answer is not JSON ({e}): {text:?}"))?;
    // 202: a bulk job was accepted (its records are checked one by one later).
    if status == 200 || (status == 202 && sent.method.starts_with("bulk/")) {
        return Ok(());
    }
    let Some(object) = body.as_object() else {
        return Err(format!("{status}: not an object: {body}"));
    };
    let code = object.get("code").and_then(Value::as_str).unwrap_or("");
    if object.len() != 2 || !object.get("error").is_some_and(Value::is_string) {
        return Err(format!("{status}: not {{error, code}}: {body}"));
    }
    if status == 500
        && code == "script_error"
        && sent.method == "Order"
        && order_overflows(&sent.body)
    {
        return Ok(());
    }
    if !(400..500).contains(&status) || !BODY_CODES.contains(&code) {
        return Err(format!("{status} {code}: {body}"));
    }
    Ok(())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z]{0,6}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
        Just(Value::from(u64::MAX)),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        let keys = prop_oneof![
            Just("name".to_string()),
            Just("count".to_string()),
            Just("order".to_string()),
            Just("items".to_string()),
            Just("tags".to_string()),
            Just("urgent".to_string()),
            Just("sku".to_string()),
            Just("qty".to_string()),
            Just("note".to_string()),
            Just("allOrNone".to_string()),
            Just("compositeRequest".to_string()),
            Just("referenceId".to_string()),
            Just("method".to_string()),
            Just("params".to_string()),
            "[a-z]{1,4}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((keys, inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        6 => Just(Some("application/json".to_string())),
        1 => Just(None),
        1 => Just(Some("application/json; charset=utf-8".to_string())),
        1 => Just(Some("application/problem+json".to_string())),
        1 => Just(Some("text/plain".to_string())),
        1 => Just(Some("APPLICATION/JSON".to_string())),
        1 => Just(Some("application/x-www-form-urlencoded".to_string())),
        1 => Just(Some(";;;".to_string())),
    ]
}

fn method() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("Echo"),
        Just("Order"),
        Just("composite"),
        Just("bulk/Echo")
    ]
}

fn corpus() -> Vec<(std::path::PathBuf, Vec<u8>)> {
    harness::corpus("api", &[])
}

fn run_target(cases: u32, strategy: impl Strategy<Value = Sent>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut fixture = runtime.block_on(Fixture::start_with_limit(64 * 1024));
    let mut runner = TestRunner::new(harness::config(cases));
    let result = runner.run(&strategy, |sent| {
        runtime
            .block_on(send(&fixture, &sent))
            .map_err(TestCaseError::fail)
    });
    runtime.block_on(fixture.stop());
    if let Err(error) = result {
        panic!("{error}");
    }
}

#[test]
fn fuzz_api_arbitrary_bytes() {
    run_target(
        1_000,
        (
            method(),
            content_type(),
            prop::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(method, content_type, body)| Sent {
                method,
                content_type,
                body,
            }),
    );
}

#[test]
fn fuzz_api_arbitrary_json() {
    run_target(
        1_000,
        (method(), json_value()).prop_map(|(method, value)| Sent {
            method,
            content_type: Some("application/json".into()),
            body: value.to_string().into_bytes(),
        }),
    );
}

#[test]
fn fuzz_api_mutated_bodies() {
    let seeds = corpus();
    assert!(seeds.len() >= 5, "only {} api corpus bodies", seeds.len());
    const PIECES: &[&[u8]] = &[
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"\"",
        b"null",
        b"1e999",
        b"-0",
        b"\\u0000",
        b"\\ud800",
        b"99999999999999999999",
        b"\"qty\":",
        b"\xff",
        b"true",
    ];
    run_target(
        1_000,
        (
            method(),
            any::<usize>(),
            prop::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 1..5),
        )
            .prop_map(move |(method, pick, ops)| Sent {
                method,
                content_type: Some("application/json".into()),
                body: harness::mutate(&seeds[pick % seeds.len()].1, &ops, PIECES),
            }),
    );
}

/// Every corpus body, to both methods, and a few shapes no generator above
/// reaches in a bounded run (nesting far past serde_json's recursion limit,
/// a body just under and just over the size limit).
#[test]
fn fuzz_api_corpus_replays() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut fixture = runtime.block_on(Fixture::start_with_limit(64 * 1024));
    let mut inputs = corpus();
    inputs.push(("deep arrays".into(), "[".repeat(100_000).into_bytes()));
    inputs.push(("deep objects".into(), "{\"a\":".repeat(20_000).into_bytes()));
    inputs.push((
        "deep valid json parameter".into(),
        format!(
            "{{\"name\":{}1{},\"count\":1}}",
            "[".repeat(127),
            "]".repeat(127)
        )
        .into_bytes(),
    ));
    inputs.push((
        "just over the limit".into(),
        format!("{{\"name\":\"{}\",\"count\":1}}", "x".repeat(64 * 1024)).into_bytes(),
    ));
    harness::replay(&inputs, |body| {
        for method in ["Echo", "Order", "composite", "bulk/Echo"] {
            let sent = Sent {
                method,
                content_type: Some("application/json".into()),
                body: body.to_vec(),
            };
            runtime.block_on(send(&fixture, &sent))?;
        }
        Ok(())
    });
    runtime.block_on(fixture.stop());
}
