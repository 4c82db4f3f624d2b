//! Site node figures with a real `scl serve --role site:bench` process:
//! - idle RSS with 1,000 instances (no triggers);
//! - script runs per second for a trivial interval script (every 1 s) on
//!   1,000 instances, and for the same instances called back to back over
//!   the internal API (64 concurrent callers).
//!
//! `cargo bench -p scl-runtime --bench site`. Prints figures; asserts nothing
//! about time.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scl_runtime::protocol::SiteClient;
#[path = "common/bench_line.rs"]
mod bench_line;
use bench_line::bench_line;

const INSTANCES: usize = 1000;
const TOKEN: &str = "bench-token";

fn deployment(port: u16, every: bool) -> String {
    let mut text = format!(
        "data_dir = \"./data\"\n\n[[site]]\nname = \"bench\"\nlisten = \"127.0.0.1:{port}\"\nurl = \"http://127.0.0.1:{port}\"\ntoken_env = \"SCL_SITE_TOKEN\"\n\n\
         [templates.Pump.attributes]\nCount = {{ type = \"int\", default = 0 }}\n\n[templates.Pump.scripts]\n"
    );
    if every {
        text.push_str("Tick = { file = \"tick.scl\", kind = \"instance\", every_s = 1 }\n");
    } else {
        text.push_str("Tick = { file = \"tick.scl\", kind = \"instance\" }\n");
    }
    for n in 0..INSTANCES {
        text.push_str(&format!(
            "\n[[instance]]\ncode = \"P-{n}\"\ntemplate = \"Pump\"\nsite = \"bench\"\n"
        ));
    }
    text
}

fn start(dir: &Path, every: bool) -> (Child, SiteClient) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    std::fs::write(
        dir.join("tick.scl"),
        "fn main() -> int {\n    let n = Attributes.Get(\"Count\") as int;\n    Attributes.Set(\"Count\", n + 1);\n    return n + 1;\n}\n",
    )
    .expect("write");
    std::fs::write(dir.join("deploy.toml"), deployment(port, every)).expect("write");
    let child = Command::new(env!("CARGO_BIN_EXE_scl"))
        .args(["serve", "--role", "site:bench", "--config"])
        .arg(dir.join("deploy.toml"))
        .env("SCL_SITE_TOKEN", TOKEN)
        .env("SCL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("scl serve");
    let client = SiteClient::new(
        "bench",
        &format!("http://127.0.0.1:{port}"),
        TOKEN,
        Duration::from_secs(30),
    )
    .expect("client");
    (child, client)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

async fn metric(client_url: &str, status: &str) -> u64 {
    let text = reqwest::get(format!("{client_url}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find(|l| {
            l.starts_with("scl_site_script_runs_total")
                && l.contains(&format!("status=\"{status}\""))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn wait_up(client: &SiteClient) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while client.bundle_version().await.is_err() {
        assert!(Instant::now() < deadline, "site did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Idle RSS, and calls over the internal API.
        let dir = tempfile::tempdir().expect("dir");
        let (mut child, client) = start(dir.path(), false);
        let started = Instant::now();
        wait_up(&client).await;
        let startup = started.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle = rss_kib(child.id());
        println!("site start with {INSTANCES} instances: {:.0} ms", startup.as_secs_f64() * 1e3);
        println!("idle site RSS with {INSTANCES} instances: {:.1} MiB", idle as f64 / 1024.0);
        bench_line("site_start", "scl", startup.as_secs_f64() * 1e3, "ms", "lower", 1);
        bench_line("site_idle_rss", "scl", idle as f64 / 1024.0, "MiB", "lower", 1);

        let calls = 20_000;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for worker in 0..64 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = worker;
                while n < calls {
                    let t = Instant::now();
                    client
                        .call(&format!("P-{}", n % INSTANCES), "Tick", serde_json::json!({}), None)
                        .await
                        .expect("call");
                    latencies.push(t.elapsed());
                    n += 64;
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.expect("task"));
        }
        let elapsed = started.elapsed();
        latencies.sort();
        println!(
            "internal API calls, 64 callers over {INSTANCES} instances: {:.0} runs/s, p50 {:.2} ms, p99 {:.2} ms",
            calls as f64 / elapsed.as_secs_f64(),
            latencies[latencies.len() / 2].as_secs_f64() * 1e3,
            latencies[latencies.len() * 99 / 100].as_secs_f64() * 1e3,
        );
        println!("site RSS after the calls: {:.1} MiB", rss_kib(child.id()) as f64 / 1024.0);
        let _ = child.kill();
        let _ = child.wait();

        // Interval triggers: every instance every second.
        let dir = tempfile::tempdir().expect("dir");
        let (mut child, client) = start(dir.path(), true);
        wait_up(&client).await;
        let url = format!("http://127.0.0.1:{}", {
            let text = std::fs::read_to_string(dir.path().join("deploy.toml")).expect("read");
            text.split("listen = \"127.0.0.1:")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("0")
                .to_owned()
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = metric(&url, "success").await;
        let window = Duration::from_secs(10);
        tokio::time::sleep(window).await;
        let after = metric(&url, "success").await;
        println!(
            "interval script (every 1 s) on {INSTANCES} instances: {:.0} runs/s (ideal {INSTANCES}), RSS {:.1} MiB",
            (after - before) as f64 / window.as_secs_f64(),
            rss_kib(child.id()) as f64 / 1024.0
        );
        let _ = child.kill();
        let _ = child.wait();
    });
}
