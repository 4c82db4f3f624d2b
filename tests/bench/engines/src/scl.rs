//! SCL through its embedding API (`scl_compiler::Engine`), with the real core modules of
//! `scl_stdlib` (`Json`, `Math`, ...) and the benchmark's host module `Bench`.

use std::hint::black_box;
use std::sync::Arc;

use scl_compiler::{
    CallOptions, CompileOptions, Engine, HostContext, HostError, HostType, Script, Value,
};
use scl_lang::modules::Owner;

use crate::host::{self, RustData};
use crate::measure::Sink;
use crate::native::BODIES;
use crate::workloads::*;

const ENGINE: &str = "scl";

impl HostType for RustData {
    const NAME: &'static str = "RustData";
}

fn engine() -> Engine {
    let mut engine = Engine::default();
    scl_stdlib::core_modules::register_core_modules(&mut engine).expect("core modules");
    let bench = Owner::Module("Bench".into());
    engine
        .register_fn(
            bench.clone(),
            "Rand",
            &["n"],
            |_: &mut HostContext<'_, '_>, n: i64| Ok::<i64, HostError>(host::rand(n)),
        )
        .expect("Bench.Rand");
    engine
        .register_fn(
            bench,
            "Data",
            &["text"],
            |_: &mut HostContext<'_, '_>, text: String| {
                Ok::<Arc<RustData>, HostError>(Arc::new(RustData(text)))
            },
        )
        .expect("Bench.Data");
    engine
        .register_fn(
            Owner::HostType("RustData".into()),
            "Lt",
            &["other"],
            |_: &mut HostContext<'_, '_>, this: Arc<RustData>, other: Arc<RustData>| {
                Ok::<bool, HostError>(this.0 < other.0)
            },
        )
        .expect("RustData.Lt");
    engine
}

/// A workload script in its optimized tier: what a script that runs often
/// (every workload here) runs once the engine has tiered it up.
fn compile(engine: &Engine, source: &str) -> Script {
    let script = quick(engine, source);
    script
        .optimize()
        .unwrap_or_else(|error| panic!("benchmark script does not optimize:\n{error}"));
    script
}

/// What `Engine::compile` returns: quick code, ready to run.
fn quick(engine: &Engine, source: &str) -> Script {
    engine
        .compile(source, &CompileOptions::default())
        .unwrap_or_else(|error| panic!("benchmark script does not compile:\n{error}"))
}

fn int(result: &Result<Value, String>) -> Output {
    match result {
        Ok(Value::Int(n)) => Output::Int(*n),
        other => panic!("expected an int, got {other:?}"),
    }
}

pub fn bench(sink: &mut Sink) {
    let engine = engine();
    let options = CallOptions::default();
    let call = |script: &Script, args: Vec<Value>| {
        script
            .call_main(args, &options)
            .result
            .map_err(|e| e.to_string())
    };

    let sort = engine
        .compile(
            include_str!("../scripts/sort_userdata.scl"),
            &CompileOptions {
                require_main: false,
                ..CompileOptions::default()
            },
        )
        .unwrap_or_else(|error| panic!("sort_userdata.scl does not compile:\n{error}"));
    sort.optimize()
        .unwrap_or_else(|error| panic!("sort_userdata.scl does not optimize:\n{error}"));
    sink.run(
        Workload::SortUserdata,
        ENGINE,
        "host `<` as method a.Lt(b)",
        || {
            host::reset_rand();
            sort.call("sort_userdata", vec![Value::Int(SORT_ITEMS)], &options)
                .result
                .map_err(|e| e.to_string())
        },
        |result| match result {
            Ok(Value::List(items)) => {
                let items: Vec<Arc<RustData>> = items
                    .iter()
                    .map(|v| match v {
                        Value::Host(h) => h.downcast_arc::<RustData>().expect("RustData"),
                        other => panic!("expected RustData, got {other:?}"),
                    })
                    .collect();
                Output::sorted(items.iter().map(|d| d.0.as_str()))
            }
            other => panic!("expected a list, got {other:?}"),
        },
    );

    let fib = compile(&engine, include_str!("../scripts/fib.scl"));
    sink.run(
        Workload::Fib,
        ENGINE,
        "",
        || call(&fib, vec![Value::Int(FIB_N)]),
        int,
    );

    let count = compile(&engine, include_str!("../scripts/loop.scl"));
    sink.run(
        Workload::Loop,
        ENGINE,
        "",
        || call(&count, vec![Value::Int(LOOP_N)]),
        int,
    );

    let sieve = compile(&engine, include_str!("../scripts/sieve.scl"));
    sink.run(
        Workload::Sieve,
        ENGINE,
        "",
        || call(&sieve, vec![Value::Int(SIEVE_N)]),
        int,
    );

    let strings = compile(&engine, include_str!("../scripts/strings.scl"));
    sink.run(
        Workload::Strings,
        ENGINE,
        "list of interpolated pieces, join",
        || call(&strings, vec![Value::Int(STRING_PIECES)]),
        |result| match result {
            Ok(Value::String(s)) => Output::text(s),
            other => panic!("expected a string, got {other:?}"),
        },
    );

    let nbody = compile(&engine, include_str!("../scripts/nbody.scl"));
    let bodies = Value::List(BODIES.iter().flatten().map(|v| Value::Float(*v)).collect());
    sink.run(
        Workload::NBody,
        ENGINE,
        "parallel float lists; Math.Sqrt is a host call",
        || call(&nbody, vec![Value::Int(NBODY_STEPS), bodies.clone()]),
        |result| match result {
            Ok(Value::Float(e)) => Output::Float(*e),
            other => panic!("expected a float, got {other:?}"),
        },
    );

    let json = compile(&engine, include_str!("../scripts/json.scl"));
    let document = Value::String(sink.reference.json_document.clone());
    sink.run(
        Workload::Json,
        ENGINE,
        "Json.Parse (serde_json), `as list<json>`",
        || call(&json, vec![document.clone()]),
        int,
    );

    let source = two_hundred_lines();
    sink.compile(
        ENGINE,
        "parse + check + lower + cranelift (quick tier, runnable)",
        || {
            black_box(quick(&engine, &source));
        },
    );
}

// The 200-line script of `compiler/benches/engine.rs`, from the one file that bench and
// `compile_profile` share, so all three measure the same program.
#[path = "../../../../compiler/benches/common/two_hundred_lines.rs"]
mod two_hundred_lines;
pub use two_hundred_lines::two_hundred_lines;

/// How many helpers `two_hundred_lines` makes (the peers' scripts have as many).
pub fn helper_count() -> usize {
    two_hundred_lines()
        .lines()
        .filter(|l| l.starts_with("fn helper"))
        .count()
}
