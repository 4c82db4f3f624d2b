//! Engine benchmarks (run with `cargo bench -p scl-compiler`): compile time of
//! a 200-line script, fib(30) against the same function compiled by rustc in
//! the same run, and the overhead of calling a compiled `main`. Prints
//! medians; compare ratios, not absolute figures, on a shared machine.
//!
//! The process runs on the `scl` binary's allocator (mimalloc), as the
//! engine does in the binary; `docs/benchmarks.md` (session 9) gives the
//! compile figures with the system allocator too.

use std::hint::black_box;
use std::time::{Duration, Instant};

use scl_compiler::{Backend, CallOptions, CompileOptions, Engine, Value};

/// The allocator of the `scl` binary (`runtime/src/main.rs`), which embeds
/// the engine.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// CPU time of this thread: on a shared, loaded machine wall time mostly
/// measures the scheduler.
fn cpu_now() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` into the live local.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

fn rust_fib(n: i64) -> i64 {
    if n < 2 {
        n
    } else {
        rust_fib(n - 1) + rust_fib(n - 2)
    }
}

#[path = "common/two_hundred_lines.rs"]
mod two_hundred_lines;
use two_hundred_lines::two_hundred_lines;

const FIB: &str = "fn fib(n: int) -> int { if n < 2 { return n; } return fib(n - 1) + fib(n - 2); }\nfn main(n: int) -> int { return fib(n); }";

fn main() {
    let engine = Engine::default();
    let options = CallOptions::default();

    // Compile time: parse + check + lower + cranelift, of a 200-line script.
    let source = two_hundred_lines();
    let lines = source.lines().count();
    let mut samples = Vec::new();
    for _ in 0..21 {
        let start = Instant::now();
        let script = engine
            .compile(&source, &CompileOptions::default())
            .expect("the benchmark script compiles");
        samples.push(start.elapsed());
        black_box(script);
    }
    // The optimized tier, which a hot script gets in the background.
    let mut optimize = Vec::new();
    for _ in 0..21 {
        let script = engine.compile(&source, &CompileOptions::default()).unwrap();
        let start = Instant::now();
        script.optimize().expect("the optimized tier compiles");
        optimize.push(start.elapsed());
    }
    let script = engine.compile(&source, &CompileOptions::default()).unwrap();
    assert!(
        script
            .call_main(vec![Value::Int(5)], &options)
            .result
            .is_ok()
    );
    println!(
        "compile {lines}-line script (parse+check+JIT, quick tier, runnable): median {:?}",
        median(samples)
    );
    println!(
        "optimized tier of the same script (background, once it is hot): median {:?}",
        median(optimize)
    );

    // fib(30): JIT vs rustc, in the same run.
    let fib = engine.compile(FIB, &CompileOptions::default()).unwrap();
    let (mut quick, mut jit, mut native) = (Vec::new(), Vec::new(), Vec::new());
    let quick_options = CallOptions {
        backend: Backend::Jit,
        ..CallOptions::default()
    };
    let optimized_options = CallOptions {
        backend: Backend::JitOptimized,
        ..CallOptions::default()
    };
    // Quick code first: the first call of a fresh script runs it.
    for _ in 0..7 {
        let fresh = engine.compile(FIB, &CompileOptions::default()).unwrap();
        let start = cpu_now();
        let outcome = fresh.call_main(vec![Value::Int(30)], &quick_options);
        quick.push(cpu_now() - start);
        assert_eq!(outcome.result, Ok(Value::Int(832_040)));
    }
    fib.optimize().unwrap();
    for _ in 0..7 {
        let start = cpu_now();
        let outcome = fib.call_main(vec![Value::Int(30)], &optimized_options);
        jit.push(cpu_now() - start);
        assert_eq!(outcome.result, Ok(Value::Int(832_040)));
        let start = cpu_now();
        assert_eq!(black_box(rust_fib(black_box(30))), 832_040);
        native.push(cpu_now() - start);
    }
    let (quick, jit, native) = (median(quick), median(jit), median(native));
    println!(
        "fib(30) cpu time: JIT median {jit:?} (quick tier {quick:?}), rustc median {native:?}, ratio {:.2} (quick {:.2})",
        jit.as_secs_f64() / native.as_secs_f64(),
        quick.as_secs_f64() / native.as_secs_f64()
    );

    // Per-call overhead of `main` with small arguments.
    let add = engine
        .compile(
            "fn main(a: int, b: int) -> int { return a + b; }",
            &CompileOptions::default(),
        )
        .unwrap();
    let greet = engine
        .compile(
            "fn main(name: string) -> string { return \"hi ${name}\"; }",
            &CompileOptions::default(),
        )
        .unwrap();
    for (label, script, args) in [
        (
            "main(int, int) -> int",
            &add,
            vec![Value::Int(1), Value::Int(2)],
        ),
        (
            "main(string) -> string",
            &greet,
            vec![Value::String("pump".into())],
        ),
    ] {
        let mut samples = Vec::new();
        for _ in 0..11 {
            let calls = 100_000;
            let start = cpu_now();
            for _ in 0..calls {
                black_box(script.call_main(black_box(args.clone()), &options));
            }
            samples.push((cpu_now() - start) / calls);
        }
        println!(
            "call {label}: median {:?} cpu per call (including stats and argument conversion)",
            median(samples)
        );
    }
}
