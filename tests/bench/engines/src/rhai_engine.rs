//! Rhai 1.x (tree-walking interpreter) on the same workloads.

use std::hint::black_box;
use std::rc::Rc;

use rhai::{AST, Array, Dynamic, Engine, Scope};

use crate::host;
use crate::measure::Sink;
use crate::native::BODIES;
use crate::workloads::*;

const ENGINE: &str = "rhai";

/// Rhai clones values freely, so its `RustData` shares the string (as in script-bench-rs).
#[derive(Clone)]
struct RhaiData(Rc<str>);

fn engine() -> Engine {
    let mut engine = Engine::new();
    engine.set_max_call_levels(1000);
    engine.set_max_expr_depths(0, 0);
    engine
        .register_type_with_name::<RhaiData>("RustData")
        .register_fn("new_data", |s: &str| RhaiData(s.into()))
        .register_fn("<", |l: &mut RhaiData, r: RhaiData| *l.0 < *r.0)
        .register_fn("rand", host::rand);
    engine
}

fn call(engine: &Engine, ast: &AST, args: impl rhai::FuncArgs) -> Dynamic {
    engine
        .call_fn::<Dynamic>(&mut Scope::new(), ast, "main", args)
        .unwrap_or_else(|e| panic!("rhai: {e}"))
}

fn int(value: &Dynamic) -> Output {
    Output::Int(value.as_int().expect("an int"))
}

pub fn bench(sink: &mut Sink) {
    let engine = engine();
    let compile = |source: &str| {
        engine
            .compile(source)
            .unwrap_or_else(|e| panic!("rhai: {e}"))
    };

    let sort = compile(include_str!("../scripts/sort_userdata.rhai"));
    sink.run(
        Workload::SortUserdata,
        ENGINE,
        "host `<` as operator",
        || {
            host::reset_rand();
            call(&engine, &sort, (SORT_ITEMS,))
        },
        |result| {
            let items = result.clone().into_array().expect("an array");
            let items: Vec<RhaiData> = items
                .into_iter()
                .map(|d| d.try_cast::<RhaiData>().expect("RustData"))
                .collect();
            Output::sorted(items.iter().map(|d| &*d.0))
        },
    );

    let fib = compile(include_str!("../scripts/fib.rhai"));
    sink.run(
        Workload::Fib,
        ENGINE,
        "",
        || call(&engine, &fib, (FIB_N,)),
        int,
    );

    let count = compile(include_str!("../scripts/loop.rhai"));
    sink.run(
        Workload::Loop,
        ENGINE,
        "",
        || call(&engine, &count, (LOOP_N,)),
        int,
    );

    let sieve = compile(include_str!("../scripts/sieve.rhai"));
    sink.run(
        Workload::Sieve,
        ENGINE,
        "",
        || call(&engine, &sieve, (SIEVE_N,)),
        int,
    );

    let strings = compile(include_str!("../scripts/strings.rhai"));
    sink.run(
        Workload::Strings,
        ENGINE,
        "string += interpolation",
        || call(&engine, &strings, (STRING_PIECES,)),
        |s| Output::text(&s.clone().into_string().expect("a string")),
    );

    let nbody = compile(include_str!("../scripts/nbody.rhai"));
    let bodies: Array = BODIES.iter().flatten().map(|v| Dynamic::from(*v)).collect();
    sink.run(
        Workload::NBody,
        ENGINE,
        "",
        || call(&engine, &nbody, (NBODY_STEPS, bodies.clone())),
        |e| Output::Float(e.as_float().expect("a float")),
    );

    let json = compile(include_str!("../scripts/json.rhai"));
    let document = sink.reference.json_document.clone();
    sink.run(
        Workload::Json,
        ENGINE,
        "parse_json (Rhai's own parser)",
        || call(&engine, &json, (document.clone(),)),
        int,
    );

    let source = two_hundred_lines();
    sink.compile(ENGINE, "parse to AST (no code generation)", || {
        black_box(compile(&source));
    });
}

/// The shape of SCL's 200-line compile script in Rhai: as many helpers, each with a loop,
/// a map, string interpolation, try/catch and an object map result.
fn two_hundred_lines() -> String {
    let mut source = String::new();
    let helpers = crate::scl::helper_count();
    for i in 0..helpers {
        source.push_str(&format!(
            "fn helper{i}(n, label) {{\n\
             \x20   let total = 0;\n\
             \x20   let names = #{{}};\n\
             \x20   for k in 0..n {{\n\
             \x20       total += k * {i};\n\
             \x20       names[`k${{k}}`] = k;\n\
             \x20   }}\n\
             \x20   try {{\n\
             \x20       total = total / (n - {i});\n\
             \x20   }} catch (e) {{\n\
             \x20       total = -1;\n\
             \x20   }}\n\
             \x20   #{{ asset: label + total, value: total.to_float() * 0.5, tags: names.keys() }}\n\
             }}\n"
        ));
    }
    source.push_str("fn main(n) {\n    let sum = 0.0;\n");
    for j in 0..helpers {
        source.push_str(&format!("    sum += helper{j}(n, \"a\").value;\n"));
    }
    source.push_str("    sum\n}\n");
    source
}
