//! Checking and timing: a result is compared with the reference before anything is timed,
//! then the median of several runs of this thread's CPU time is printed as a `BENCH` line.

use std::time::Duration;

use crate::workloads::{Output, Reference, Workload};

/// CPU time of this thread: on a shared, loaded machine wall time mostly measures the
/// scheduler, and every engine here runs on the calling thread.
pub fn cpu_now() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` into the live local.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// How long the timed runs of one (workload, engine) pair may take in total.
const BUDGET: Duration = Duration::from_secs(3);
const MIN_RUNS: usize = 3;
const MAX_RUNS: usize = 21;

pub struct Sink {
    pub reference: Reference,
    pub failures: usize,
    /// Only these workloads run (`--workloads a,b`, for profiling one of them).
    pub workloads: Option<Vec<String>>,
}

impl Sink {
    pub fn new(reference: Reference) -> Sink {
        Sink {
            reference,
            failures: 0,
            workloads: None,
        }
    }

    /// Runs `run` once untimed and checks `check(result)` against the reference; if it
    /// matches, times it and prints the median.
    pub fn run<R>(
        &mut self,
        workload: Workload,
        engine: &str,
        note: &str,
        mut run: impl FnMut() -> R,
        check: impl Fn(&R) -> Output,
    ) {
        if !self.wanted(workload) {
            return;
        }
        let start = cpu_now();
        let first = run();
        let first_time = cpu_now() - start;
        let output = check(&first);
        drop(first);
        let expected = self
            .reference
            .output(workload)
            .expect("every timed workload has a reference");
        if !output.matches(expected) {
            self.failures += 1;
            println!(
                "FAIL\t{workload}\t{engine}\tresult {output:?} differs from the reference {expected:?}"
            );
            return;
        }
        let runs = (BUDGET.as_secs_f64() / first_time.as_secs_f64().max(1e-9)) as usize;
        let runs = runs.clamp(MIN_RUNS, MAX_RUNS);
        let mut samples = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = cpu_now();
            let result = run();
            samples.push(cpu_now() - start);
            drop(std::hint::black_box(result));
        }
        self.print(workload, engine, median(samples), runs, note);
    }

    /// Compile latency: `compile` runs `COMPILE_RUNS` times, each timed.
    pub fn compile(&mut self, engine: &str, note: &str, mut compile: impl FnMut()) {
        if !self.wanted(Workload::Compile) {
            return;
        }
        compile();
        let mut samples = Vec::new();
        for _ in 0..crate::workloads::COMPILE_RUNS {
            let start = cpu_now();
            compile();
            samples.push(cpu_now() - start);
        }
        self.print(
            Workload::Compile,
            engine,
            median(samples),
            crate::workloads::COMPILE_RUNS,
            note,
        );
    }

    fn wanted(&self, workload: Workload) -> bool {
        let name = workload.to_string();
        self.workloads
            .as_ref()
            .is_none_or(|w| w.iter().any(|w| *w == name))
    }

    pub fn skip(&mut self, workload: Workload, engine: &str, reason: &str) {
        if !self.wanted(workload) {
            return;
        }
        println!("SKIP\t{workload}\t{engine}\t{reason}");
    }

    fn print(&self, workload: Workload, engine: &str, median: Duration, runs: usize, note: &str) {
        println!(
            "BENCH\t{workload}\t{engine}\t{:.4}\tms\tlower\t{runs}\t{note}",
            median.as_secs_f64() * 1e3
        );
    }
}
