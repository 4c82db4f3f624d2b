//! The comparison harness behind `tests/bench/run.sh`: the same workloads in SCL, Rhai,
//! Roto, Lua 5.4, Luau and native Rust, measured in one process on one machine.
//!
//! Every engine's result is checked against the native Rust reference before anything is
//! timed; a wrong result is reported as a failure, never timed. Each figure is the median
//! of several runs of this thread's CPU time (the machine is shared, so wall time would
//! mostly measure the scheduler), after one untimed warm-up run that is also the checked
//! one. Results go to stdout as tab-separated `BENCH` lines that `tests/bench/report.py`
//! folds into `docs/benchmarks.md`:
//!
//! ```text
//! BENCH <workload> <engine> <median> <unit> lower <runs> <note>
//! SKIP  <workload> <engine> <reason>
//! ```

mod host;
mod measure;
mod native;
mod scl;
mod workloads;

#[cfg(any(feature = "lua54", feature = "luau"))]
mod lua;
#[cfg(feature = "rhai")]
mod rhai_engine;
#[cfg(feature = "roto")]
mod roto_engine;

use measure::Sink;

fn main() {
    // `--only scl,native` limits the engines (the Lua builds run only their Lua).
    let args: Vec<String> = std::env::args().collect();
    // `--workloads fib30,loop1e8` limits the workloads (for profiling one).
    let list = |flag: &str| -> Option<Vec<String>> {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|list| list.split(',').map(str::to_string).collect())
    };
    let only = list("--only");
    let wanted = |engine: &str| only.as_ref().is_none_or(|o| o.iter().any(|e| e == engine));

    let mut sink = Sink::new(workloads::Reference::compute());
    sink.workloads = list("--workloads");
    if wanted("native") {
        native::bench(&mut sink);
    }
    if wanted("scl") {
        scl::bench(&mut sink);
    }
    #[cfg(feature = "rhai")]
    if wanted("rhai") {
        rhai_engine::bench(&mut sink);
    }
    #[cfg(feature = "roto")]
    if wanted("roto") {
        roto_engine::bench(&mut sink);
    }
    #[cfg(any(feature = "lua54", feature = "luau"))]
    if wanted(lua::ENGINE) {
        lua::bench(&mut sink);
    }
    if sink.failures > 0 {
        eprintln!("{} result check(s) failed", sink.failures);
        std::process::exit(1);
    }
}
