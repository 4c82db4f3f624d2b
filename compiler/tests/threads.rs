//! One compiled script called from several threads at once.

mod common;

use common::*;
use scl_compiler::{CallOptions, Value};

#[test]
fn one_script_many_threads() {
    let script = compile(
        "fn fib(n: int) -> int { if n < 2 { return n; } return fib(n - 1) + fib(n - 2); }\nfn main(n: int, name: string) -> string { return \"${name}:${fib(n)}\"; }",
    );
    std::thread::scope(|scope| {
        for t in 0..4 {
            let script = script.clone();
            scope.spawn(move || {
                for i in 0..200 {
                    let n = (i % 15) as i64;
                    let outcome = script.call_main(
                        vec![Value::Int(n), Value::String(format!("t{t}"))],
                        &CallOptions::default(),
                    );
                    let expected = {
                        let (mut a, mut b) = (0i64, 1i64);
                        for _ in 0..n {
                            (a, b) = (b, a + b);
                        }
                        a
                    };
                    assert_eq!(
                        outcome.result,
                        Ok(Value::String(format!("t{t}:{expected}")))
                    );
                }
            });
        }
    });
}

#[test]
fn script_is_send_and_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<scl_compiler::Script>();
}
