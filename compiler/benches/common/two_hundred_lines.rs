//! The benchmark's 200-line script, shared by `benches/engine.rs` and
//! `examples/compile_profile.rs` so that both measure the same program.

/// A 200-line script: helpers with loops, strings, lists, maps, records and try/catch.
pub fn two_hundred_lines() -> String {
    let mut source =
        String::from("type Reading = { asset: string, value: float, tags: list<string> }\n");
    let mut i = 0;
    while source.lines().count() < 190 {
        source.push_str(&format!(
            "fn helper{i}(n: int, label: string) -> Reading {{\n\
             \x20   var total = 0;\n\
             \x20   var names: map<int> = {{}};\n\
             \x20   for k in 0..n {{\n\
             \x20       total += k * {i};\n\
             \x20       names[\"k${{k}}\"] = k;\n\
             \x20   }}\n\
             \x20   try {{\n\
             \x20       total = total / (n - {i});\n\
             \x20   }} catch e {{\n\
             \x20       total = -1;\n\
             \x20   }}\n\
             \x20   return {{ asset: label + string(total), value: float(total) * 0.5, tags: names.keys() }};\n\
             }}\n"
        ));
        i += 1;
    }
    source.push_str("fn main(n: int) -> float {\n    var sum = 0.0;\n");
    for j in 0..i {
        source.push_str(&format!("    sum += helper{j}(n, \"a\").value;\n"));
    }
    source.push_str("    return sum;\n}\n");
    source
}
