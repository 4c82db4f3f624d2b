//! The workloads, their sizes, and the reference results every engine must reproduce.

use std::fmt;

pub const SORT_ITEMS: i64 = 10_000;
pub const FIB_N: i64 = 30;
pub const LOOP_N: i64 = 100_000_000;
pub const SIEVE_N: i64 = 1_000_000;
pub const STRING_PIECES: i64 = 100_000;
pub const NBODY_STEPS: i64 = 50_000;
pub const JSON_MIN_BYTES: usize = 1_000_000;
pub const COMPILE_RUNS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    SortUserdata,
    Fib,
    Loop,
    Sieve,
    Strings,
    NBody,
    Json,
    Compile,
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Workload::SortUserdata => "sort_userdata",
            Workload::Fib => "fib30",
            Workload::Loop => "loop1e8",
            Workload::Sieve => "sieve1e6",
            Workload::Strings => "string100k",
            Workload::NBody => "nbody",
            Workload::Json => "json1mb",
            Workload::Compile => "compile200",
        })
    }
}

/// What a run produced, in a form that can be compared across engines.
#[derive(Clone, Debug)]
pub enum Output {
    Int(i64),
    /// Compared to within `1e-9`.
    Float(f64),
    /// A string, by length and FNV-1a hash.
    Text {
        len: usize,
        hash: u64,
    },
    /// The sorted objects' strings: how many, whether in order, and the hash of them all.
    Sorted {
        count: usize,
        in_order: bool,
        hash: u64,
    },
}

impl Output {
    pub fn text(s: &str) -> Output {
        Output::Text {
            len: s.len(),
            hash: crate::host::fnv(s.as_bytes()),
        }
    }

    pub fn sorted<'a>(strings: impl IntoIterator<Item = &'a str>) -> Output {
        let mut count = 0;
        let mut in_order = true;
        let mut previous: Option<&str> = None;
        let mut hash = crate::host::FNV_OFFSET;
        for s in strings {
            if previous.is_some_and(|p| p > s) {
                in_order = false;
            }
            previous = Some(s);
            hash = crate::host::fnv_extend(hash, s.as_bytes());
            hash = crate::host::fnv_extend(hash, b"\n");
            count += 1;
        }
        Output::Sorted {
            count,
            in_order,
            hash,
        }
    }

    pub fn matches(&self, reference: &Output) -> bool {
        match (self, reference) {
            (Output::Float(a), Output::Float(b)) => (a - b).abs() <= 1e-9,
            (Output::Int(a), Output::Int(b)) => a == b,
            (
                Output::Text { len, hash },
                Output::Text {
                    len: len2,
                    hash: hash2,
                },
            ) => len == len2 && hash == hash2,
            (
                Output::Sorted {
                    count,
                    in_order,
                    hash,
                },
                Output::Sorted {
                    count: count2,
                    hash: hash2,
                    ..
                },
            ) => *in_order && count == count2 && hash == hash2,
            _ => false,
        }
    }
}

/// The reference results (from the native Rust versions, themselves checked against known
/// values where one exists) and the shared inputs.
pub struct Reference {
    pub json_document: String,
    pub outputs: Vec<(Workload, Output)>,
}

impl Reference {
    pub fn compute() -> Reference {
        let json_document = json_document();
        let outputs = vec![
            (
                Workload::SortUserdata,
                Output::sorted(crate::native::sort_userdata().iter().map(|d| d.0.as_str())),
            ),
            (Workload::Fib, Output::Int(crate::native::fib(FIB_N))),
            (
                Workload::Loop,
                Output::Int(crate::native::count_loop(LOOP_N)),
            ),
            (Workload::Sieve, Output::Int(crate::native::sieve(SIEVE_N))),
            (
                Workload::Strings,
                Output::text(&crate::native::strings(STRING_PIECES)),
            ),
            (
                Workload::NBody,
                Output::Float(crate::native::nbody(NBODY_STEPS)),
            ),
            (
                Workload::Json,
                Output::Int(crate::native::json_sum(&json_document)),
            ),
        ];
        let reference = Reference {
            json_document,
            outputs,
        };
        // Known answers, so the reference itself cannot drift.
        assert!(matches!(
            reference.output(Workload::Fib),
            Some(Output::Int(832_040))
        ));
        assert!(matches!(
            reference.output(Workload::Loop),
            Some(Output::Int(4_999_999_950_000_000))
        ));
        assert!(matches!(
            reference.output(Workload::Sieve),
            Some(Output::Int(78_498))
        ));
        reference
    }

    pub fn output(&self, workload: Workload) -> Option<&Output> {
        self.outputs
            .iter()
            .find(|(w, _)| *w == workload)
            .map(|(_, o)| o)
    }
}

/// A deterministic JSON document of at least `JSON_MIN_BYTES`: `{"items": [{...}, ...]}`,
/// each item with an `id`, a `name`, a `value` (the field the scripts sum), a flag and tags.
fn json_document() -> String {
    let mut items = Vec::new();
    let mut size = 12;
    let mut i: i64 = 0;
    while size < JSON_MIN_BYTES {
        let item = serde_json::json!({
            "id": i,
            "name": format!("sensor-{i}"),
            "value": (i * 37) % 1000,
            "ok": i % 3 != 0,
            "tags": ["line-a", format!("cell-{}", i % 17)],
            "reading": { "t": (i % 400) as f64 * 0.25, "unit": "C" },
        });
        size += item.to_string().len() + 1;
        items.push(item);
        i += 1;
    }
    serde_json::json!({ "site": "bench", "items": items }).to_string()
}
