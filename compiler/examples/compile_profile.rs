//! Where compile time goes: parse, check, lower and JIT of the benchmark's
//! 200-line script, each timed (median of 21). `cargo run --release -p
//! scl-compiler --example compile_profile`.

use std::time::{Duration, Instant};

use scl_compiler::{CompileOptions, Engine};

#[path = "../benches/common/two_hundred_lines.rs"]
mod two_hundred_lines;
use two_hundred_lines::two_hundred_lines;

/// The allocator of the `scl` binary (`runtime/src/main.rs`), which embeds
/// the engine: the front end and cranelift allocate many small objects.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn process_cpu() -> Duration {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` into the live local.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut time) };
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
}

fn main() {
    let engine = Engine::default();
    let source = if let Some(path) = std::env::args().nth(1) {
        std::fs::read_to_string(path).unwrap()
    } else {
        two_hundred_lines()
    };
    let table = engine.module_table();
    let (mut p, mut c, mut l, mut j, mut all) = (vec![], vec![], vec![], vec![], vec![]);
    let mut cpu = vec![];
    // `SCL_RUNS=n` for fewer rounds (under valgrind, say).
    let runs = std::env::var("SCL_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(21);
    for _ in 0..runs {
        let t = Instant::now();
        let parsed = scl_lang::parse(&source);
        p.push(t.elapsed());
        let t = Instant::now();
        let options = scl_lang::CheckOptions::new(&table);
        let checked = scl_lang::checker::check(&parsed, &options);
        let program = checked.into_program().unwrap();
        c.push(t.elapsed());
        let t = Instant::now();
        let lowered = scl_compiler::lower(&program, &source);
        l.push(t.elapsed());
        let t = Instant::now();
        let compiled = lowered.compile().unwrap();
        j.push(t.elapsed());
        drop(compiled);
        let t = Instant::now();
        let c0 = process_cpu();
        let script = engine.compile(&source, &CompileOptions::default()).unwrap();
        all.push(t.elapsed());
        cpu.push(process_cpu() - c0);
        drop(script);
    }
    println!(
        "parse {:?} check {:?} lower {:?} jit {:?} | engine.compile {:?} wall, {:?} process cpu",
        median(p),
        median(c),
        median(l),
        median(j),
        median(all),
        median(cpu)
    );
    if std::env::var_os("SCL_OPTIMIZE").is_some() {
        let script = engine.compile(&source, &CompileOptions::default()).unwrap();
        script.optimize().unwrap();
    }
    if std::env::var_os("SCL_PRINT_IR").is_some() {
        let parsed = scl_lang::parse(&source);
        let options = scl_lang::CheckOptions::new(&table);
        let program = scl_lang::checker::check(&parsed, &options)
            .into_program()
            .unwrap();
        println!("{}", scl_compiler::lower(&program, &source));
    }
}
