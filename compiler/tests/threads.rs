//! One compiled script called from several threads at once.

mod common;

use common::*;
use scl_compiler::{CallOptions, Tier, Value};

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

/// A script that runs long enough in quick code is compiled optimized in the
/// background while four threads keep calling it; every call, before and
/// after the switch, gives the same answer.
#[test]
fn hot_script_tiers_up_while_threads_call_it() {
    let script = compile(
        "fn main(n: int) -> int { var total = 0; for i in 0..n { total += i % 7; } return total; }",
    );
    assert_eq!(script.tier(), Tier::Quick);
    let expected: i64 = (0..20_000i64).map(|i| i % 7).sum();
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let script = script.clone();
            scope.spawn(move || {
                while script.tier() == Tier::Quick
                    && started.elapsed() < std::time::Duration::from_secs(60)
                {
                    let outcome =
                        script.call_main(vec![Value::Int(20_000)], &CallOptions::default());
                    assert_eq!(outcome.result, Ok(Value::Int(expected)));
                }
                for _ in 0..20 {
                    let outcome =
                        script.call_main(vec![Value::Int(20_000)], &CallOptions::default());
                    assert_eq!(outcome.result, Ok(Value::Int(expected)));
                }
            });
        }
    });
    assert_eq!(
        script.tier(),
        Tier::Optimized,
        "no tier-up after {:?} of calls",
        started.elapsed()
    );
}
