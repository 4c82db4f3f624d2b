//! Roto 0.12 (statically typed, cranelift JIT) on the workloads it can express.

use std::hint::black_box;

use roto::{FileTree, List, NoCtx, Package, RotoString, Runtime, Val, library};

use crate::host;
use crate::measure::Sink;
use crate::workloads::*;

const ENGINE: &str = "roto";

#[derive(Clone, Default, PartialEq)]
pub struct RotoData(pub RotoString);

fn runtime() -> Runtime<NoCtx> {
    let lib = library! {
        fn rand(n: u64) -> u64 {
            crate::host::rand(n as i64) as u64
        }

        fn char_at(s: RotoString, index: u64) -> RotoString {
            s[index as usize..index as usize + 1].into()
        }

        #[clone] type RustData = Val<RotoData>;

        impl Val<RotoData> {
            fn new(s: RotoString) -> Val<RotoData> {
                Val(RotoData(s))
            }

            fn lt(this: Val<RotoData>, other: Val<RotoData>) -> bool {
                *this.0.0 < *other.0.0
            }
        }
    };
    Runtime::from_lib(lib).expect("roto library")
}

fn compile(runtime: &Runtime<NoCtx>, name: &str, source: &str) -> Package<NoCtx> {
    FileTree::test_file(name, source, 0)
        .compile(runtime)
        .unwrap_or_else(|e| panic!("roto: {e}"))
}

pub fn bench(sink: &mut Sink) {
    let runtime = runtime();

    let mut sort = compile(
        &runtime,
        "sort_userdata.roto",
        include_str!("../scripts/sort_userdata.roto"),
    );
    let main = sort
        .get_function::<fn(u64) -> List<Val<RotoData>>>("main")
        .expect("main");
    sink.run(
        Workload::SortUserdata,
        ENGINE,
        "host `<` as method a.lt(b)",
        || {
            host::reset_rand();
            main.call(SORT_ITEMS as u64)
        },
        |list| {
            let items: Vec<Val<RotoData>> = list.clone().into_iter().collect();
            Output::sorted(items.iter().map(|d| &*d.0.0))
        },
    );

    let mut fib = compile(&runtime, "fib.roto", include_str!("../scripts/fib.roto"));
    let main = fib.get_function::<fn(i64) -> i64>("main").expect("main");
    sink.run(
        Workload::Fib,
        ENGINE,
        "",
        || main.call(FIB_N),
        |n| Output::Int(*n),
    );

    let mut count = compile(&runtime, "loop.roto", include_str!("../scripts/loop.roto"));
    let main = count.get_function::<fn(i64) -> i64>("main").expect("main");
    sink.run(
        Workload::Loop,
        ENGINE,
        "while loop",
        || main.call(LOOP_N),
        |n| Output::Int(*n),
    );

    sink.skip(
        Workload::Sieve,
        ENGINE,
        "not expressible: Roto lists have no element assignment",
    );

    let mut strings = compile(
        &runtime,
        "strings.roto",
        include_str!("../scripts/strings.roto"),
    );
    let main = strings
        .get_function::<fn(i64) -> RotoString>("main")
        .expect("main");
    sink.run(
        Workload::Strings,
        ENGINE,
        "f-strings into a list, join",
        || main.call(STRING_PIECES),
        |s| Output::text(s),
    );

    sink.skip(
        Workload::NBody,
        ENGINE,
        "not expressible: Roto lists have no element assignment",
    );
    sink.skip(Workload::Json, ENGINE, "not expressible: Roto has no JSON");

    let source = two_hundred_lines();
    sink.compile(
        ENGINE,
        "parse + typecheck + cranelift; no maps or try in Roto",
        || {
            black_box(compile(&runtime, "compile.roto", &source));
        },
    );
}

/// SCL's 200-line compile script in the shape Roto can express: as many helpers, each with
/// a loop, string building with f-strings and a list, and arithmetic.
fn two_hundred_lines() -> String {
    let mut source = String::new();
    let helpers = crate::scl::helper_count();
    for i in 0..helpers {
        source.push_str(&format!(
            "fn helper{i}(n: i64, label: String) -> i64 {{\n\
             \x20   let total = 0;\n\
             \x20   let names = [];\n\
             \x20   let k = 0;\n\
             \x20   while k < n {{\n\
             \x20       total = total + k * {i};\n\
             \x20       names.push(f\"k{{k}}\");\n\
             \x20       k = k + 1;\n\
             \x20   }}\n\
             \x20   if n != {i} {{\n\
             \x20       total = total / (n - {i});\n\
             \x20   }}\n\
             \x20   let text = label + names.join(\",\");\n\
             \x20   if text == \"\" {{ total }} else {{ total + 1 }}\n\
             }}\n"
        ));
    }
    source.push_str("fn main(n: i64) -> i64 {\n    let sum = 0;\n");
    for j in 0..helpers {
        source.push_str(&format!("    sum = sum + helper{j}(n, \"a\");\n"));
    }
    source.push_str("    sum\n}\n");
    source
}
