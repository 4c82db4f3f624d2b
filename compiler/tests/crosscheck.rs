//! The JIT against the reference evaluator on generated programs.
//!
//! Proptest draws a seed; a small deterministic generator turns it into a
//! well-typed SCL program over ints, bools, strings and lists with `if`,
//! `for`, `while`, calls, recursion, `try/catch/throw` and logging, whose
//! arithmetic can overflow, divide by zero or index out of range. Both
//! backends run it with the same fuel limit; the result (or error, with its
//! location), the status and the log lines must be identical.
//!
//! This is also the compiler's fuzz target (`fuzz_jit_*`): the count of
//! generated programs follows `tests/fuzz/harness.rs` (fixed seed in CI,
//! `PROPTEST_CASES`/`PROPTEST_RNG_SEED` for longer runs), and the programs in
//! `tests/fuzz/corpus/jit/` (ones that once disagreed, or reach corners the
//! generator does not) are replayed on both backends too.

mod common;
#[path = "../../tests/fuzz/harness.rs"]
mod harness;

use proptest::prelude::*;
use scl_compiler::{Backend, CallOptions, Limits};

struct Gen {
    state: u64,
    fresh: u32,
    ints: Vec<String>,
    depth: u32,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            state: seed | 1,
            fresh: 0,
            ints: vec!["a".into(), "b".into()],
            depth: 0,
        }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn int_literal(&mut self) -> String {
        match self.below(10) {
            0 => "9223372036854775807".into(),
            1 => "(-9223372036854775807 - 1)".into(),
            2 => "4611686018427387904".into(),
            3 => "0".into(),
            4 => "-1".into(),
            _ => self.below(20).to_string(),
        }
    }

    fn int(&mut self, depth: u32) -> String {
        if depth == 0 {
            return match self.below(3) {
                0 => self.int_literal(),
                _ => {
                    let i = self.below(self.ints.len() as u64) as usize;
                    self.ints[i].clone()
                }
            };
        }
        let d = depth - 1;
        match self.below(11) {
            0..=4 => {
                let op = self.pick(&["+", "-", "*", "/", "%"]);
                format!("({} {op} {})", self.int(d), self.int(d))
            }
            5 => format!("(-{})", self.int(d)),
            6 => "xs.len()".into(),
            7 => format!("xs[{}]", self.int(d)),
            8 => format!("h1({}, {})", self.int(d), self.int(d)),
            9 => format!("h2({} % 30)", self.int(d)),
            10 => match self.below(4) {
                0 => format!("int({})", self.float(d)),
                1 => "m.len()".into(),
                2 => format!("(m.get({}) ?? {})", self.string(d), self.int(d)),
                _ => format!("m[{}]", self.string(d)),
            },
            _ => format!("{}.len()", self.string(d)),
        }
    }

    fn float(&mut self, depth: u32) -> String {
        if depth == 0 {
            return match self.below(4) {
                0 => "f".into(),
                1 => self.pick(&["0.0", "-0.0", "1.5", "1e308", "0.1"]).into(),
                _ => format!("float({})", self.int(0)),
            };
        }
        let d = depth - 1;
        match self.below(5) {
            0..=2 => {
                let op = self.pick(&["+", "-", "*", "/"]);
                format!("({} {op} {})", self.float(d), self.float(d))
            }
            3 => format!("(-{})", self.float(d)),
            _ => format!("float({})", self.int(d)),
        }
    }

    fn boolean(&mut self, depth: u32) -> String {
        if depth == 0 {
            return self.pick(&["true", "false"]).into();
        }
        let d = depth - 1;
        match self.below(8) {
            0 | 1 => {
                let op = self.pick(&["<", "<=", ">", ">=", "==", "!="]);
                format!("({} {op} {})", self.int(d), self.int(d))
            }
            2 => format!("({} && {})", self.boolean(d), self.boolean(d)),
            3 => format!("({} || {})", self.boolean(d), self.boolean(d)),
            4 => format!("!{}", self.boolean(d)),
            5 => {
                let op = self.pick(&["<", ">=", "==", "!="]);
                format!("({} {op} {})", self.float(d), self.float(d))
            }
            6 => format!("m.contains_key({})", self.string(d)),
            _ => format!("xs.contains({})", self.int(d)),
        }
    }

    fn string(&mut self, depth: u32) -> String {
        if depth == 0 {
            return match self.below(3) {
                0 => "s".into(),
                _ => format!("\"{}\"", self.pick(&["", "a", "xy", "é∑"])),
            };
        }
        let d = depth - 1;
        match self.below(5) {
            0 => format!("({} + string({}))", self.string(d), self.int(d)),
            1 => format!("\"<${{{}}}|${{{}}}>\"", self.int(d), self.string(d)),
            2 => format!("{}.upper()", self.string(d)),
            3 => match self.below(2) {
                0 => format!("string({})", self.boolean(d)),
                _ => format!("string({})", self.float(d)),
            },
            _ => format!("({} + {})", self.string(d), self.string(d)),
        }
    }

    fn block(&mut self, n: u64) -> String {
        let mut out = String::new();
        for _ in 0..=self.below(n) {
            out.push_str(&self.stmt());
        }
        out
    }

    fn stmt(&mut self) -> String {
        let nested = self.depth < 3;
        let choice = if nested {
            self.below(15)
        } else {
            self.below(6)
        };
        match choice {
            0 | 1 => format!("a = {};\n", self.int(2)),
            2 => format!("b = {};\n", self.int(2)),
            3 => format!("s = {};\n", self.string(2)),
            4 => format!("xs.push({});\n", self.int(1)),
            5 => format!("Log.Info({});\n", self.string(2)),
            6 => {
                self.depth += 1;
                let text = format!(
                    "if {} {{\n{}}} else {{\n{}}}\n",
                    self.boolean(2),
                    self.block(3),
                    self.block(2)
                );
                self.depth -= 1;
                text
            }
            7 => {
                self.fresh += 1;
                let var = format!("i{}", self.fresh);
                let bound = self.below(6);
                self.ints.push(var.clone());
                self.depth += 1;
                let body = self.block(3);
                self.depth -= 1;
                self.ints.pop();
                format!("for {var} in 0..{bound} {{\n{body}}}\n")
            }
            8 => {
                self.fresh += 1;
                let var = format!("w{}", self.fresh);
                let bound = self.below(5);
                self.depth += 1;
                let body = self.block(3);
                self.depth -= 1;
                format!("var {var} = 0;\nwhile {var} < {bound} {{\n{var} = {var} + 1;\n{body}}}\n")
            }
            9 => {
                self.depth += 1;
                let body = self.block(4);
                let handler = self.block(2);
                self.depth -= 1;
                format!("try {{\n{body}}} catch e {{\ns = s + e.code;\n{handler}}}\n")
            }
            10 => format!("if {} {{ throw \"thrown\"; }}\n", self.boolean(1)),
            11 => format!("f = {};\n", self.float(2)),
            12 => format!("m[{}] = {};\n", self.string(1), self.int(1)),
            13 => {
                self.fresh += 1;
                let var = format!("removed{}", self.fresh);
                format!(
                    "let {var} = m.remove({}) ?? 0;\na = a + {var};\n",
                    self.string(1)
                )
            }
            _ => format!("if {} {{ return s + string(a); }}\n", self.boolean(1)),
        }
    }

    fn program(&mut self) -> String {
        let helper_body = {
            let saved = std::mem::replace(&mut self.ints, vec!["x".into(), "y".into()]);
            let op = self.pick(&["+", "-", "*", "/", "%"]);
            let body = format!("var r = x {op} y;\nif r > 1000 {{ r = r % 1000; }}\n");
            self.ints = saved;
            body
        };
        let main_body = self.block(8);
        format!(
            "fn h1(x: int, y: int) -> int {{\n{helper_body}return r;\n}}\n\
             fn h2(n: int) -> int {{ if n <= 0 {{ return 1; }} return h2(n - 1) + n; }}\n\
             fn main() -> string {{\nvar a = 1;\nvar b = 2;\nvar s = \"s\";\nvar xs: list<int> = [1, 2, 3];\nvar f = 0.5;\nvar m: map<int> = {{ a: 1 }};\n\
             {main_body}return s + \"|\" + string(a) + \"|\" + string(b) + \"|\" + string(xs) + \"|\" + string(f) + \"|\" + string(m.keys()) + string(m.values());\n}}\n"
        )
    }
}

fn cross_check(seed: u64) -> Result<(), TestCaseError> {
    let source = Gen::new(seed).program();
    cross_check_source(&source, &format!("seed {seed}"))
}

fn cross_check_source(source: &str, seed: &str) -> Result<(), TestCaseError> {
    let script = common::compile(source);
    let limits = Limits {
        fuel: Some(20_000),
        ..Limits::default()
    };
    let jit = script.call_main(
        vec![],
        &CallOptions {
            limits: limits.clone(),
            ..CallOptions::default()
        },
    );
    let optimized = script.call_main(
        vec![],
        &CallOptions {
            limits: limits.clone(),
            backend: Backend::JitOptimized,
            ..CallOptions::default()
        },
    );
    prop_assert_eq!(
        &jit.result,
        &optimized.result,
        "quick and optimized code differ for seed {}:\n{}",
        seed,
        source
    );
    prop_assert_eq!(jit.stats.fuel_used, optimized.stats.fuel_used);
    let eval = script.call_main(
        vec![],
        &CallOptions {
            limits,
            backend: Backend::Eval,
            ..CallOptions::default()
        },
    );
    prop_assert_eq!(
        &jit.result,
        &eval.result,
        "results differ for seed {}:\n{}",
        seed,
        source
    );
    prop_assert_eq!(
        jit.stats.status,
        eval.stats.status,
        "status differs for seed {}",
        seed
    );
    prop_assert_eq!(
        &jit.stats.logs,
        &eval.stats.logs,
        "logs differ for seed {}",
        seed
    );
    prop_assert_eq!(
        jit.stats.fuel_used,
        eval.stats.fuel_used,
        "fuel differs for seed {}",
        seed
    );
    Ok(())
}

proptest! {
    #![proptest_config(harness::config(500))]

    #[test]
    fn fuzz_jit_agrees_with_the_evaluator(seed in any::<u64>()) {
        cross_check(seed)?;
    }
}

/// The checked-in programs run on both backends with the same outcome.
#[test]
fn fuzz_jit_corpus_replays() {
    let inputs = harness::corpus("jit", &[]);
    assert!(
        inputs.len() >= 5,
        "only {} jit corpus programs",
        inputs.len()
    );
    harness::replay(&inputs, |bytes| {
        let source = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
        cross_check_source(source, "corpus").map_err(|e| e.to_string())
    });
}

/// The generator must reach the interesting outcomes, or the cross-check proves little.
#[test]
fn generated_programs_cover_errors_and_successes() {
    let (mut successes, mut failures, mut codes) = (0, 0, std::collections::BTreeSet::new());
    for seed in 0..300u64 {
        let source = Gen::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).program();
        let outcome = common::compile(&source).call_main(
            vec![],
            &CallOptions {
                limits: Limits {
                    fuel: Some(20_000),
                    ..Limits::default()
                },
                ..CallOptions::default()
            },
        );
        match outcome.result {
            Ok(_) => successes += 1,
            Err(error) => {
                failures += 1;
                codes.insert(error.code);
            }
        }
    }
    assert!(
        successes > 30 && failures > 30,
        "{successes} successes, {failures} failures"
    );
    for code in [
        "overflow",
        "division_by_zero",
        "index_out_of_range",
        "error",
    ] {
        assert!(
            codes.contains(code),
            "no generated program failed with {code}: {codes:?}"
        );
    }
}
