//! Runaway and hostile scripts, one after another on the same thread: each
//! is stopped by its own limit with the right status and error code, no
//! object is left alive, and the next, ordinary script on that thread runs
//! normally. Several of these used to bring the host down (see
//! `docs/reliability.md`): a `replace` or `join` whose result is far larger
//! than the heap limit asked the allocator for it before the limit was
//! checked, and log lines (which are not script heap) grew without bound.

mod common;

use std::time::{Duration, Instant};

use scl_compiler::{
    CallOptions, Limits, MAX_LOG_BYTES, MAX_LOG_LINES, Status, Value, live_objects,
};

/// The limits a node gives a run, scaled down for a test.
fn limits() -> Limits {
    Limits {
        timeout: Some(Duration::from_millis(300)),
        heap_bytes: Some(16 << 20),
        ..Limits::default()
    }
}

/// Runs `source` (JIT) and returns status, error code, and the outcome.
fn run(source: &str, args: Vec<Value>, limits: Limits) -> scl_compiler::Outcome {
    let script = common::compile(source);
    script.call_main(
        args,
        &CallOptions {
            limits,
            ..CallOptions::default()
        },
    )
}

const FINE: &str =
    "fn main(n: int) -> string { var s = \"\"; for i in 0..n { s = s + string(i); } return s; }";

/// After a runaway run: nothing leaked, and an ordinary script works.
fn thread_is_fine(before: i64) {
    assert_eq!(live_objects(), before, "objects left alive");
    let outcome = run(FINE, vec![Value::Int(5)], limits());
    assert_eq!(outcome.result, Ok(Value::String("01234".into())));
    assert_eq!(outcome.stats.status, Status::Success);
}

struct Case {
    name: &'static str,
    source: &'static str,
    status: Status,
    code: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "infinite loop",
        source: "fn main() -> int { var i = 0; while true { i = i + 1; } return i; }",
        status: Status::Timeout,
        code: "timeout",
    },
    Case {
        name: "infinite loop inside try/catch (a catch cannot take a timeout)",
        source: "fn main() -> int { while true { try { while true { } } catch e { } } return 0; }",
        status: Status::Timeout,
        code: "timeout",
    },
    Case {
        name: "unbounded recursion",
        source: "fn down(n: int) -> int { return down(n + 1) + 1; }\nfn main() -> int { return down(0); }",
        status: Status::Limit,
        code: "call_depth",
    },
    Case {
        name: "exponential recursion",
        source: "fn f(n: int) -> int { if n == 0 { return 1; } return f(n - 1) + f(n - 1); }\nfn main() -> int { return f(200); }",
        status: Status::Timeout,
        code: "timeout",
    },
    Case {
        name: "string doubling",
        source: "fn main() -> int { var s = \"ab\"; while true { s = s + s; } return s.len(); }",
        status: Status::Limit,
        code: "heap",
    },
    Case {
        name: "list doubling",
        source: "fn main() -> int { var xs: list<string> = [\"x\"]; while true { let n = xs.len(); for i in 0..n { xs.push(xs[i] + \"y\"); } } return 0; }",
        status: Status::Limit,
        code: "heap",
    },
    Case {
        name: "map growth",
        source: "fn main() -> int { var m: map<string> = {}; var i = 0; while true { m[string(i)] = \"value ${i}\"; i = i + 1; } return 0; }",
        status: Status::Limit,
        code: "heap",
    },
    Case {
        name: "replace that multiplies the text (used to abort the process)",
        source: "fn main() -> int { var s = \"a\"; for i in 0..20 { s = s + s; } return s.replace(\"a\", s).len(); }",
        status: Status::Limit,
        code: "heap",
    },
    Case {
        name: "join with a huge separator (used to abort the process)",
        source: "fn main() -> int { var s = \"-\"; for i in 0..20 { s = s + s; } var xs: list<string> = []; for i in 0..100000 { xs.push(\"\"); } return xs.join(s).len(); }",
        status: Status::Limit,
        code: "heap",
    },
    Case {
        name: "split into a million characters",
        source: "fn main() -> int { var s = \"ab\"; for i in 0..20 { s = s + s; } return s.split(\"\").len(); }",
        status: Status::Limit,
        code: "heap",
    },
    Case {
        name: "interpolation doubling",
        source: "fn main() -> int { var s = \"x\"; while true { s = \"${s}${s}\"; } return 0; }",
        status: Status::Limit,
        code: "heap",
    },
];

#[test]
fn runaway_scripts_stop_at_their_limits_and_the_thread_goes_on() {
    let before = live_objects();
    for case in CASES {
        let started = Instant::now();
        // The cases meant for another limit get time enough to reach it
        // (an unoptimised test build is slow).
        let limits = if case.status == Status::Timeout {
            limits()
        } else {
            Limits {
                timeout: Some(Duration::from_secs(20)),
                ..limits()
            }
        };
        let outcome = run(case.source, vec![], limits);
        let error = outcome
            .result
            .as_ref()
            .expect_err(&format!("{}: should have been stopped", case.name));
        assert_eq!(
            (outcome.stats.status, error.code.as_str()),
            (case.status, case.code),
            "{}: {error}",
            case.name
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}: took {:?}",
            case.name,
            started.elapsed()
        );
        // The heap limit holds within one operation's overshoot.
        assert!(
            outcome.stats.heap_peak_bytes < 3 * (16 << 20),
            "{}: heap peaked at {}",
            case.name,
            outcome.stats.heap_peak_bytes
        );
        thread_is_fine(before);
    }
}

/// A script calling a host module in a tight loop: stopped by its timeout,
/// or by the call cap of the module's category; its log stays bounded.
#[test]
fn a_tight_loop_of_host_calls_is_stopped_and_its_log_bounded() {
    let before = live_objects();
    let source = "fn main() -> void { var i = 0; while true { Log.Info(\"line ${i} ................................................................\"); i = i + 1; } }";
    let outcome = run(source, vec![], limits());
    assert_eq!(outcome.stats.status, Status::Timeout);
    let logs = &outcome.stats.logs;
    assert_eq!(logs.len(), MAX_LOG_LINES + 1, "the log is bounded");
    let bytes: usize = logs.iter().map(|l| l.message.len()).sum();
    assert!(bytes <= MAX_LOG_BYTES + 200);
    let last = &logs.last().expect("a last line").message;
    assert!(last.contains("more log lines were dropped"), "{last}");
    thread_is_fine(before);

    // Huge single lines are bounded by bytes, not just lines.
    let source = "fn main() -> void { var s = \"x\"; for i in 0..16 { s = s + s; } for i in 0..100 { Log.Warn(s); } }";
    let outcome = run(source, vec![], limits());
    assert_eq!(outcome.stats.status, Status::Success);
    let bytes: usize = outcome.stats.logs.iter().map(|l| l.message.len()).sum();
    assert!(bytes <= MAX_LOG_BYTES + 200, "{bytes} bytes of log kept");
    thread_is_fine(before);

    // The call cap of a host category.
    let mut engine = common::engine();
    let table = engine.module_table();
    let id = table
        .lookup(&scl_lang::modules::Owner::Module("Log".into()), "Info")
        .expect("Log.Info");
    engine.set_category(id, "callouts");
    let script = engine
        .compile(
            "fn main() -> void { while true { try { Log.Info(\"x\"); } catch e { } } }",
            &Default::default(),
        )
        .expect("compiles");
    let outcome = script.call_main(
        vec![],
        &CallOptions {
            limits: Limits {
                caps: vec![("callouts".into(), 500)],
                ..limits()
            },
            ..CallOptions::default()
        },
    );
    assert_eq!(outcome.stats.status, Status::Limit, "{:?}", outcome.result);
    thread_is_fine(before);
}

/// A huge JSON input: within the heap limit it is used, past it the run is
/// a limit error before the script does anything with it.
#[test]
fn huge_json_input_is_bounded_by_the_heap_limit() {
    let before = live_objects();
    let source = "fn main(data: json) -> int { return (data as list<json>).len(); }";
    let script = common::compile(source);
    let small = serde_json::json!({ "data": (0..1000).collect::<Vec<i64>>() });
    let options = CallOptions {
        limits: Limits {
            timeout: Some(Duration::from_secs(20)),
            ..limits()
        },
        ..CallOptions::default()
    };
    let outcome = script.call_main_json(&small, &options);
    assert_eq!(outcome.result, Ok(Value::Int(1000)));
    // About 40 MiB of JSON values against a 16 MiB limit.
    let huge = serde_json::json!({ "data": (0..1_000_000).map(|i| format!("item {i}")).collect::<Vec<_>>() });
    let outcome = script.call_main_json(&huge, &options);
    assert_eq!(outcome.stats.status, Status::Limit, "{:?}", outcome.result);
    assert_eq!(outcome.result.expect_err("a limit").code, "heap");
    drop(huge);
    thread_is_fine(before);

    // Json.Parse of a large text made by the script itself.
    let source = "fn main() -> int { var s = \"1\"; for i in 0..20 { s = s + \",\" + s; } let v = Json.Parse(\"[\" + s + \"]\"); return (v as list<int>).len(); }";
    let outcome = run(
        source,
        vec![],
        Limits {
            timeout: Some(Duration::from_secs(20)),
            ..limits()
        },
    );
    assert_eq!(outcome.stats.status, Status::Limit, "{:?}", outcome.result);
    assert_eq!(outcome.result.expect_err("a limit").code, "heap");
    thread_is_fine(before);
}
