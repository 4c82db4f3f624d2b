//! Latency of diagnostics as you type, on a 5,000-line script.
//!
//! `cargo bench -p scl-lsp --bench diagnostics_latency` (release build). Two
//! measurements:
//! - **analysis**: `ide::analyze` (lex, parse, check, index) plus the
//!   diagnostics, in process;
//! - **protocol**: the `scl-lsp` binary over stdio, from sending an
//!   incremental `didChange` to receiving the `publishDiagnostics` for that
//!   version (what an editor waits for).
//!
//! The target is 100 ms; the process exits with failure when the protocol
//! latency's 95th percentile misses it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use scl_lsp::ide::{self, World};
use serde_json::{Value, json};

const LINES: usize = 5_000;
const ROUNDS: usize = 40;
const TARGET: Duration = Duration::from_millis(100);

/// A valid script of at least `LINES` lines, exercising every construct.
fn script() -> String {
    let mut text = String::from(
        "// kind: instance\n\
         type Reading = { asset: string, value: float, unit: string? }\n\
         \n",
    );
    let mut index = 0;
    while text.lines().count() < LINES - 30 {
        text.push_str(&format!(
            r#"fn step{index}(readings: list<Reading>, limit: float) -> map<float> {{
    var totals: map<float> = {{}};
    var count = 0;
    for reading in readings {{
        if reading.value > limit && reading.unit != null {{
            totals[reading.asset] = (totals.get(reading.asset) ?? 0.0) + reading.value;
            count += 1;
        }} else if reading.value < 0.0 {{
            Log.Warn("negative reading on ${{reading.asset}}: ${{reading.value}}");
        }}
    }}
    try {{
        let speed = Attributes.Get("Speed") as float;
        if speed > limit {{
            ExternalSystem.CachedCall("MES", "PostReading", {{ asset: "P{index}", value: speed }});
        }}
    }} catch e {{
        Log.Error("step {index} failed: ${{e.message}}");
    }}
    for i in 0..count {{
        totals["n${{i}}"] = float(i) * 1.5;
    }}
    let names = "a,b,c".split(",");
    totals["names"] = float(names.len());
    return totals;
}}

"#
        ));
        index += 1;
    }
    text.push_str("fn main(limit: float) -> json {\n    var all: list<json> = [];\n");
    for i in 0..index.min(20) {
        text.push_str(&format!("    all.push(step{i}([], limit));\n"));
    }
    text.push_str("    return all;\n}\n");
    while text.lines().count() < LINES {
        text.push_str("// padding\n");
    }
    text
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let p95 = percentile(&samples, 0.95);
    println!(
        "{name:>9}: median {:>7.2} ms, p95 {:>7.2} ms, max {:>7.2} ms ({} runs)",
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        samples.len()
    );
    p95
}

fn read_message(reader: &mut impl BufRead) -> Option<Value> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("Content-Length: ") {
            length = value.parse::<usize>().ok();
        }
    }
    let mut body = vec![0; length?];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

fn main() {
    let text = script();
    let lines = text.lines().count();
    println!("script: {lines} lines, {} bytes", text.len());

    // In process.
    let modules = scl_stdlib::signatures::module_table();
    let world = World::new(&modules);
    let clean = ide::analyze(&text, &world).diagnostics();
    assert!(
        clean.is_empty(),
        "the generated script has diagnostics: {:?}",
        &clean[..clean.len().min(3)]
    );
    let mut samples = Vec::new();
    for round in 0..ROUNDS {
        let edited = if round % 2 == 0 {
            text.replacen("fn main(limit", "fn main(limt", 1)
        } else {
            text.clone()
        };
        let start = Instant::now();
        let diagnostics = ide::analyze(&edited, &world).diagnostics();
        samples.push(start.elapsed());
        assert_eq!(diagnostics.is_empty(), round % 2 == 1);
    }
    report("analysis", samples);
    // Where the time goes, stage by stage.
    let mut stages = [Duration::ZERO; 4];
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let tokens = scl_lang::lexer::lex(&text).tokens;
        let lexed = Instant::now();
        let parsed = scl_lang::parse(&text);
        let parsed_at = Instant::now();
        let checked = scl_lang::checker::check(&parsed, &scl_lang::CheckOptions::new(&modules));
        let checked_at = Instant::now();
        let index = ide::index::build(&parsed.file, &modules);
        let indexed = Instant::now();
        stages[0] += lexed - start;
        stages[1] += parsed_at - lexed;
        stages[2] += checked_at - parsed_at;
        stages[3] += indexed - checked_at;
        drop((tokens, checked, index));
    }
    let mean = |total: Duration| total.as_secs_f64() * 1e3 / ROUNDS as f64;
    println!(
        "   stages: lex {:.2} ms, parse (with lex) {:.2} ms, check {:.2} ms, index {:.2} ms (means)",
        mean(stages[0]),
        mean(stages[1]),
        mean(stages[2]),
        mean(stages[3])
    );

    // Over the protocol.
    let mut child = Command::new(env!("CARGO_BIN_EXE_scl-lsp"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("scl-lsp starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (sender, incoming) = channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        while let Some(message) = read_message(&mut reader) {
            if sender.send(message).is_err() {
                break;
            }
        }
    });
    let mut send = |message: Value| {
        let body = message.to_string();
        write!(stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("write");
        stdin.flush().expect("flush");
    };
    let wait_for = |wanted: &dyn Fn(&Value) -> bool| loop {
        let message = incoming
            .recv_timeout(Duration::from_secs(30))
            .expect("the server answers");
        if wanted(&message) {
            return message;
        }
    };
    send(
        json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "capabilities": {} } }),
    );
    wait_for(&|m| m["id"] == 1);
    send(json!({ "jsonrpc": "2.0", "method": "initialized", "params": {} }));
    let uri = "file:///tmp/scl-latency-bench.scl";
    send(
        json!({ "jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {
        "textDocument": { "uri": uri, "languageId": "scl", "version": 1, "text": text } } }),
    );
    wait_for(&|m| m["method"] == "textDocument/publishDiagnostics" && m["params"]["version"] == 1);
    // The parameter `limit` of `main`, near the end of the file.
    let main_line = text
        .lines()
        .position(|l| l.starts_with("fn main(limit"))
        .expect("main") as u64;
    let mut samples = Vec::new();
    for round in 0..ROUNDS {
        let version = round as i64 + 2;
        // Alternately break and repair the parameter's name.
        let (range, new_text) = if round % 2 == 0 {
            (
                json!({ "start": { "line": main_line, "character": 11 }, "end": { "line": main_line, "character": 12 } }),
                "",
            )
        } else {
            (
                json!({ "start": { "line": main_line, "character": 11 }, "end": { "line": main_line, "character": 11 } }),
                "i",
            )
        };
        let start = Instant::now();
        send(
            json!({ "jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
            "textDocument": { "uri": uri, "version": version },
            "contentChanges": [{ "range": range, "text": new_text }] } }),
        );
        let published = wait_for(&|m| {
            m["method"] == "textDocument/publishDiagnostics" && m["params"]["version"] == version
        });
        samples.push(start.elapsed());
        let count = published["params"]["diagnostics"]
            .as_array()
            .map_or(0, Vec::len);
        assert_eq!(
            count > 0,
            round % 2 == 0,
            "round {round}: {count} diagnostics"
        );
    }
    let p95 = report("protocol", samples);
    send(json!({ "jsonrpc": "2.0", "id": 2, "method": "shutdown", "params": null }));
    wait_for(&|m| m["id"] == 2);
    send(json!({ "jsonrpc": "2.0", "method": "exit", "params": null }));
    let _ = child.wait();
    if p95 > TARGET {
        println!(
            "FAIL: p95 {:.2} ms is over the {} ms target",
            p95.as_secs_f64() * 1e3,
            TARGET.as_millis()
        );
        std::process::exit(1);
    }
    println!(
        "ok: diagnostics within {} ms of a change",
        TARGET.as_millis()
    );
}
