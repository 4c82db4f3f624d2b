//! Limits: timeout, fuel, heap, call depth, host-call caps; never a crash.

mod common;

use std::time::{Duration, Instant};

use common::*;
use scl_compiler::{
    Backend, CallOptions, CompileOptions, Engine, HostContext, HostError, Limits, Status, Value,
};
use scl_lang::modules::Owner;

#[test]
fn infinite_loop_stops_at_its_deadline() {
    let script = compile("fn main() -> void { while true { } }");
    script.optimize().unwrap();
    for backend in [Backend::Jit, Backend::JitOptimized, Backend::Eval] {
        let started = Instant::now();
        let options = CallOptions {
            limits: Limits {
                timeout: Some(Duration::from_millis(50)),
                ..Limits::default()
            },
            backend,
            ..CallOptions::default()
        };
        let outcome = script.call_main(vec![], &options);
        let elapsed = started.elapsed();
        assert_eq!(outcome.stats.status, Status::Timeout);
        assert_eq!(outcome.result.unwrap_err().kind, "timeout");
        assert!(elapsed >= Duration::from_millis(50), "{elapsed:?}");
        // Generous on a shared machine; the mechanism's bound is ~1 ms past the deadline.
        assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
    }
}

/// The deadline must be seen within a tick or two, not eventually: a ticker
/// writing into the counter the loop itself decrements loses its store to the
/// loop's next one nearly every time (a tight loop overshot its deadline by
/// 80 ms at the median that way). Medians of 9 runs, so one descheduled run
/// on a busy machine does not decide.
#[test]
fn tight_loop_sees_its_deadline_within_a_few_ticks() {
    let script = compile("fn main() -> void { while true { } }");
    script.optimize().unwrap();
    let timeout = Duration::from_millis(20);
    for backend in [Backend::Jit, Backend::JitOptimized] {
        let mut overshoot: Vec<Duration> = (0..9)
            .map(|_| {
                let options = CallOptions {
                    limits: Limits {
                        timeout: Some(timeout),
                        ..Limits::default()
                    },
                    backend,
                    ..CallOptions::default()
                };
                let started = Instant::now();
                let outcome = script.call_main(vec![], &options);
                assert_eq!(outcome.stats.status, Status::Timeout);
                started.elapsed().saturating_sub(timeout)
            })
            .collect();
        overshoot.sort();
        assert!(
            overshoot[4] < Duration::from_millis(25),
            "{backend:?}: median overshoot {:?} ({overshoot:?})",
            overshoot[4]
        );
    }
}

/// Every run's deadline is watched, not only the first one's: a run that
/// starts with an earlier deadline than one already running stops on time
/// (a ticker that slept until the deadline it planned for would let it
/// overshoot by the long run's remaining time).
#[test]
fn a_short_deadline_is_kept_while_a_long_one_runs() {
    let script = compile("fn main() -> void { while true { } }");
    let timed = |timeout: Duration| CallOptions {
        limits: Limits {
            timeout: Some(timeout),
            ..Limits::default()
        },
        ..CallOptions::default()
    };
    let long_timeout = Duration::from_millis(1500);
    let long = {
        let script = script.clone();
        let options = timed(long_timeout);
        std::thread::spawn(move || {
            let started = Instant::now();
            let outcome = script.call_main(vec![], &options);
            (outcome.stats.status, started.elapsed())
        })
    };
    // Let the long run register, so the ticker plans for its deadline.
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let outcome = script.call_main(vec![], &timed(Duration::from_millis(30)));
    let elapsed = started.elapsed();
    assert_eq!(outcome.stats.status, Status::Timeout);
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
    let (status, elapsed) = long.join().unwrap();
    assert_eq!(status, Status::Timeout);
    assert!(elapsed >= long_timeout, "{elapsed:?}");
}

#[test]
fn timeout_in_a_recursion_without_loops() {
    let src = "fn spin(n: int) -> int { if n <= 0 { return 0; } return spin(n - 1) + spin(n - 1); }\nfn main() -> int { return spin(60); }";
    let outcome = run_with(
        src,
        vec![],
        Limits {
            timeout: Some(Duration::from_millis(30)),
            ..Limits::default()
        },
    );
    assert_eq!(outcome.stats.status, Status::Timeout);
}

#[test]
fn fuel_limit() {
    let src = "fn main() -> int { var i = 0; while i < 1000000 { i += 1; } return i; }";
    let outcome = run_with(
        src,
        vec![],
        Limits {
            fuel: Some(1000),
            ..Limits::default()
        },
    );
    assert_eq!(outcome.stats.status, Status::Limit);
    let outcome = run_with(
        src,
        vec![],
        Limits {
            fuel: Some(2_000_000),
            ..Limits::default()
        },
    );
    assert_eq!(outcome.result, Ok(Value::Int(1_000_000)));
    assert!(outcome.stats.fuel_used >= 1_000_000);
}

#[test]
fn runaway_recursion_is_a_limit_error_not_a_stack_overflow() {
    let src =
        "fn down(n: int) -> int { return down(n + 1) + 1; }\nfn main() -> int { return down(0); }";
    // Test threads have 2 MiB stacks: the default depth must fit.
    let outcome = run(src, vec![]);
    assert_eq!(outcome.stats.status, Status::Limit);
    assert_eq!(outcome.result.unwrap_err().code, "call_depth");
    let outcome = run_with(
        src,
        vec![],
        Limits {
            max_call_depth: 50,
            ..Limits::default()
        },
    );
    assert_eq!(outcome.stats.status, Status::Limit);
}

#[test]
fn deep_but_bounded_recursion_is_fine() {
    let src = "fn sum(n: int) -> int { if n == 0 { return 0; } return n + sum(n - 1); }\nfn main() -> int { return sum(900); }";
    // The evaluator's frames are large in debug builds: give it room.
    let limits = Limits {
        stack_bytes: 32 << 20,
        ..Limits::default()
    };
    let outcome = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || run_with(src, vec![], limits))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(outcome.result, Ok(Value::Int(900 * 901 / 2)));
}

#[test]
fn heap_limit() {
    let src = "fn main() -> int { var xs: list<string> = []; while true { xs.push(\"0123456789012345678901234567890123456789\"); } return 0; }";
    let outcome = run_with(
        src,
        vec![],
        Limits {
            heap_bytes: Some(1 << 20),
            ..Limits::default()
        },
    );
    assert_eq!(outcome.stats.status, Status::Limit);
    assert_eq!(outcome.result.unwrap_err().code, "heap");
    assert!(outcome.stats.heap_peak_bytes >= 1 << 20);
    assert!(
        outcome.stats.heap_peak_bytes < 4 << 20,
        "{}",
        outcome.stats.heap_peak_bytes
    );
}

#[test]
fn heap_peak_is_reported() {
    let src = "fn main() -> int { var s = \"\"; for i in 0..100 { s = s + \"0123456789\"; } return s.len(); }";
    let outcome = run(src, vec![]);
    assert_eq!(outcome.result, Ok(Value::Int(1000)));
    assert!(outcome.stats.heap_peak_bytes >= 1000);
}

#[test]
fn host_call_caps() {
    let mut engine = engine();
    let table = engine.module_table();
    let id = table
        .lookup(&scl_lang::modules::Owner::Module("Log".into()), "Info")
        .unwrap();
    engine.set_category(id, "callouts");
    let script = engine
        .compile(
            "fn main() -> void { for i in 0..10 { try { Log.Info(\"x\"); } catch e { } } }",
            &Default::default(),
        )
        .unwrap();
    let capped = CallOptions {
        limits: Limits {
            caps: vec![("callouts".into(), 3)],
            ..Limits::default()
        },
        ..CallOptions::default()
    };
    let outcome = script.call_main(vec![], &capped);
    assert_eq!(outcome.stats.status, Status::Limit);
    assert_eq!(outcome.stats.logs.len(), 3);
    assert_eq!(outcome.stats.counters, vec![("callouts".to_string(), 4)]);
    let outcome = script.call_main(vec![], &CallOptions::default());
    assert_eq!(outcome.stats.status, Status::Success);
    assert_eq!(outcome.stats.counters, vec![("callouts".to_string(), 10)]);
}

#[test]
fn stats_report_time_and_logs() {
    let outcome = run(
        "fn main() -> void { Log.Info(\"hello\"); Log.Warn(\"careful\"); }",
        vec![],
    );
    assert_eq!(outcome.stats.status, Status::Success);
    assert_eq!(outcome.stats.logs.len(), 2);
    assert!(outcome.stats.duration >= outcome.stats.cpu_time / 2);
}

#[test]
fn stack_budget_stops_recursion_on_a_small_thread() {
    let script = compile(
        "fn down(n: int) -> int { return down(n + 1) + 1; }\nfn main() -> int { return down(0); }",
    );
    let outcome = std::thread::Builder::new()
        .stack_size(512 << 10)
        .spawn(move || {
            let limits = Limits {
                max_call_depth: 1_000_000,
                stack_bytes: 256 << 10,
                ..Limits::default()
            };
            script.call_main(
                vec![],
                &CallOptions {
                    limits,
                    ..CallOptions::default()
                },
            )
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(outcome.stats.status, Status::Limit);
    assert_eq!(outcome.result.unwrap_err().code, "call_depth");
}

/// The quick tier checks the status once after a run of allocating calls
/// (an interpolation, say): wherever in the run the heap limit strikes, the
/// error must name the same place as the optimized tier and the evaluator,
/// which check after every call.
#[test]
fn heap_limit_inside_a_run_of_allocations_names_the_failing_one() {
    let src = "fn main() -> int {\n    var xs: list<string> = [];\n    var i = 0;\n    while true {\n        i += 1;\n        xs.push(\"<${i}:${i}>\" + \"0123456789\" + string(i) + \"${i}${i}\");\n    }\n    return 0;\n}";
    let optimized = compile(src);
    optimized.optimize().unwrap();
    let mut places = std::collections::HashSet::new();
    for limit in (0..60).map(|k| (1 << 16) + k * 13) {
        let mut seen = Vec::new();
        for backend in [Backend::Jit, Backend::JitOptimized, Backend::Eval] {
            // Quick code runs until a script has run 10 ms: a fresh one.
            let quick = compile(src);
            let script = if backend == Backend::Jit {
                &quick
            } else {
                &optimized
            };
            let options = CallOptions {
                limits: Limits {
                    heap_bytes: Some(limit),
                    ..Limits::default()
                },
                backend,
                ..CallOptions::default()
            };
            let outcome = script.call_main(vec![], &options);
            assert_eq!(outcome.stats.status, Status::Limit);
            let error = outcome.result.unwrap_err();
            assert_eq!(error.code, "heap");
            assert!(error.span.is_some(), "{backend:?}: {error:?}");
            seen.push(error.span);
        }
        assert_eq!(seen[0], seen[1], "limit {limit}");
        assert_eq!(seen[0], seen[2], "limit {limit}");
        places.insert(seen[0]);
    }
    // The limits make different calls of the run fail.
    assert!(places.len() > 1, "{places:?}");
}

/// Generated code keeps the run's fuel in a register: a host function that
/// runs another script in the middle of a run (with its own fuel) must leave
/// the outer run's count as it was, in both tiers, as the evaluator counts.
#[test]
fn a_nested_run_inside_a_host_call_keeps_the_outer_fuel() {
    let inner = std::sync::Arc::new(
        Engine::default()
            .compile(
                "fn main(n: int) -> int { var s = 0; for i in 0..n { s += i; } return s; }",
                &CompileOptions::default(),
            )
            .unwrap(),
    );
    inner.optimize().unwrap();
    let mut engine = Engine::default();
    engine
        .register_fn(
            Owner::Module("Nested".into()),
            "Run",
            &["n"],
            move |_: &mut HostContext<'_, '_>, n: i64| {
                let options = CallOptions {
                    limits: Limits {
                        fuel: Some(1_000_000),
                        ..Limits::default()
                    },
                    ..CallOptions::default()
                };
                let outcome = inner.call_main(vec![Value::Int(n * 10)], &options);
                assert!(outcome.stats.fuel_used > 0);
                match outcome.result {
                    Ok(Value::Int(sum)) => Ok::<i64, HostError>(sum),
                    other => panic!("the nested run failed: {other:?}"),
                }
            },
        )
        .unwrap();
    let outer = engine
        .compile(
            "fn main() -> int { var total = 0; for k in 0..40 { total += Nested.Run(k); } return total; }",
            &CompileOptions::default(),
        )
        .unwrap();
    outer.optimize().unwrap();
    for fuel in [20, 1_000] {
        let outcomes: Vec<_> = [Backend::Jit, Backend::JitOptimized, Backend::Eval]
            .into_iter()
            .map(|backend| {
                let options = CallOptions {
                    limits: Limits {
                        fuel: Some(fuel),
                        ..Limits::default()
                    },
                    backend,
                    ..CallOptions::default()
                };
                outer.call_main(vec![], &options)
            })
            .collect();
        for outcome in &outcomes[1..] {
            assert_eq!(outcome.result, outcomes[0].result, "fuel {fuel}");
            assert_eq!(outcome.stats.fuel_used, outcomes[0].stats.fuel_used);
            assert_eq!(outcome.stats.status, outcomes[0].stats.status);
        }
        let expected = if fuel == 20 {
            Status::Limit
        } else {
            Status::Success
        };
        assert_eq!(outcomes[0].stats.status, expected, "fuel {fuel}");
    }
}
