//! No leaks: a script exercising every kind of heap value, run many times
//! (and failing half the time), leaves no live object behind.
//!
//! Under Valgrind: `valgrind --leak-check=full --error-exitcode=1
//! $CARGO_TARGET_DIR/debug/deps/leaks-<hash> --test-threads=1`
//! (see compiler/README section "Memory checks").

mod common;

use common::*;
use scl_compiler::{Backend, CallOptions, Value, live_objects};

const SCRIPT: &str = r#"
type Item = { name: string, tags: list<string>, score: int? }
fn make(i: int) -> Item {
    return { name: "item${i}", tags: ["a", "b${i}"], score: if_odd(i) };
}
fn if_odd(i: int) -> int? {
    if i % 2 == 1 { return i; }
    return null;
}
fn main(n: int, fail: bool) -> json {
    var items: list<Item> = [];
    var index: map<int> = {};
    for i in 0..n {
        let item = make(i);
        items.push(item);
        index[item.name] = i;
    }
    var text = "";
    for k in index {
        text = text + k + ",";
    }
    let doc: json = { items: items, text: text, count: index.len() };
    let back = doc["items"] as list<json>;
    try {
        let bad = doc["missing"];
    } catch e {
        text = e.message;
    }
    if fail {
        let parts = text.split(",");
        return parts[1000];
    }
    return { doc: doc, back: back.len(), removed: index.remove("item0") ?? -1 };
}
"#;

#[test]
fn no_live_objects_after_many_executions() {
    let script = compile(SCRIPT);
    let before = live_objects();
    for backend in [Backend::Jit, Backend::JitOptimized, Backend::Eval] {
        let options = CallOptions {
            backend,
            ..CallOptions::default()
        };
        let rounds = match backend {
            Backend::Jit => 100_000,
            Backend::JitOptimized => 20_000,
            Backend::Eval => 2_000,
        };
        for round in 0..rounds {
            let fail = round % 2 == 1;
            let outcome = script.call_main(vec![Value::Int(3), Value::Bool(fail)], &options);
            assert_eq!(outcome.result.is_err(), fail);
            assert_eq!(
                live_objects(),
                before,
                "objects leaked in round {round} ({backend:?})"
            );
        }
    }
}
