//! Benchmark: parse + check of a generated 10,000-line script (issue goal:
//! under 50 ms). Prints the median and spread of repeated runs; it is a
//! benchmark, not a test, so it asserts nothing about time.
//!
//! Run: `cargo bench -p scl-stdlib --bench check`

use std::time::{Duration, Instant};

use scl_lang::checker::{CheckOptions, check};

/// A realistic script of about `lines` lines: many helper functions with
/// records, loops, string interpolation, maps, json conversions and module calls.
fn generate(lines: usize) -> String {
    let mut source =
        String::from("type Reading = { asset: string, value: float, tags: list<string> }\n\n");
    let mut index = 0;
    while source.lines().count() < lines {
        source.push_str(&format!(
            "fn helper{index}(limit: float, names: list<string>) -> map<json> {{\n\
             \x20   var totals: map<json> = {{}};\n\
             \x20   var sum = 0.0;\n\
             \x20   for i in 0..names.len() {{\n\
             \x20       let r: Reading = {{ asset: names[i], value: float(i) * 1.5, tags: [\"a\", \"b\"] }};\n\
             \x20       if r.value > limit && !r.tags.contains(\"skip\") {{\n\
             \x20           sum += r.value;\n\
             \x20           totals[r.asset] = r.value;\n\
             \x20       }} else {{\n\
             \x20           Log.Info(\"skipped ${{r.asset}} at ${{r.value}}\");\n\
             \x20       }}\n\
             \x20   }}\n\
             \x20   let doc = Json.Parse(\"{{\\\"n\\\": 1}}\");\n\
             \x20   let n = doc[\"n\"] as int;\n\
             \x20   totals[\"count\"] = n + names.len();\n\
             \x20   totals[\"sum\"] = sum;\n\
             \x20   return totals;\n\
             }}\n\n"
        ));
        index += 1;
    }
    source.push_str("fn main() -> map<json> {\n    return helper0(1.0, [\"P1\", \"P2\"]);\n}\n");
    source
}

fn main() {
    let source = generate(10_000);
    let modules = scl_stdlib::signatures::module_table();
    let options = CheckOptions {
        modules: &modules,
        kind: Some(scl_lang::ScriptKind::Instance),
        names: None,
        template: None,
        require_main: true,
    };
    // Warm up and make sure the generated program is valid.
    let parsed = scl_lang::parse(&source);
    let checked = check(&parsed, &options);
    assert!(
        parsed.diagnostics.is_empty() && checked.diagnostics.is_empty(),
        "generated program must check clean: {:?}",
        checked.diagnostics.first()
    );
    let mut samples: Vec<Duration> = (0..30)
        .map(|_| {
            let start = Instant::now();
            let parsed = scl_lang::parse(&source);
            let checked = check(&parsed, &options);
            std::hint::black_box((&parsed, &checked));
            start.elapsed()
        })
        .collect();
    samples.sort();
    let lines = source.lines().count();
    println!(
        "scl check of a {lines}-line script (parse + check): median {:.2} ms, min {:.2} ms, max {:.2} ms over {} runs",
        samples[samples.len() / 2].as_secs_f64() * 1e3,
        samples[0].as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        samples.len()
    );
}
