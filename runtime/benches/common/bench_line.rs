//! The machine-readable line `tests/bench/run.sh` collects from every benchmark's output
//! and folds into `docs/benchmarks.md`, next to the human-readable lines:
//!
//! ```text
//! BENCH <row> <column> <value> <unit> <better> <runs> <note>      (tab-separated)
//! ```
//!
//! `column` is `scl` for our figure and `baseline` for the bare library measured in the
//! same run; `better` is `higher` or `lower`.

pub fn bench_line(row: &str, column: &str, value: f64, unit: &str, better: &str, runs: usize) {
    println!("BENCH\t{row}\t{column}\t{value:.4}\t{unit}\t{better}\t{runs}\t");
}
