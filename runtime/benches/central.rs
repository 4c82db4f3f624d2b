//! Inbound API throughput and latency: a trivial method (`Echo`: two
//! parameters in, a record out) through central — key check, parameter check,
//! script pool, JIT — against a bare axum handler answering the same JSON, in
//! the same process and run, at 64 concurrent connections.
//!
//! The same for a method doing one `Route.To(code).GetAttributes` to a site
//! running in the same process, against a bare axum handler answering the same
//! attributes: `routed` hands the request to the site's router as `scl serve
//! --role all` does, `routed_http` goes over loopback HTTP as separate central
//! and site processes do.
//!
//! The load comes from `wrk` (one thread, its own process; Debian package
//! `wrk`, installed by `tests/bench/run.sh`) when it is on the PATH, else from a
//! reqwest client inside this process, which takes a large share of the two
//! cores and so flatters the slower server; `SCL_BENCH_LOADGEN=reqwest`
//! forces the latter.
//!
//! `cargo bench -p scl-runtime --bench central [-- SECONDS ROUNDS [NAME...]]`
//! (NAME: `central`, `routed`, `routed_http`; all when none is given); prints
//! requests/s, p50 and p99 per round and the medians with their ratios. Never
//! asserts on time: the machine is shared. `SCL_BENCH_SCRIPT_THREADS` sets
//! central's script threads (default 8).

use std::sync::Arc;
use std::time::{Duration, Instant};

use scl_runtime::central::{self, CentralConfig};
use scl_runtime::deployment::Deployment;
use scl_runtime::keys::sha256_hex;
use serde_json::{Value, json};
#[path = "common/bench_line.rs"]
mod bench_line;
use bench_line::bench_line;

/// The allocator of the `scl` binary (`src/main.rs`), so central runs here as it
/// does there; the bare handler in the same process uses it too.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONNECTIONS: usize = 64;
const KEY: &str = "scl_bench_key";

/// Script threads of the central under test: `SCL_BENCH_SCRIPT_THREADS`, default 8.
fn script_threads() -> usize {
    std::env::var("SCL_BENCH_SCRIPT_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

struct Round {
    requests_per_second: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

/// Where the load comes from: `wrk` in its own process when it is on the PATH
/// (one thread, so the servers keep most of the two cores), else a reqwest
/// client in this process. `SCL_BENCH_LOADGEN=reqwest` forces the latter.
#[derive(Clone)]
enum Loader {
    Wrk,
    Reqwest(reqwest::Client),
}

impl Loader {
    fn pick(client: reqwest::Client) -> Loader {
        let forced = std::env::var("SCL_BENCH_LOADGEN").is_ok_and(|v| v == "reqwest");
        let wrk_works = std::process::Command::new("wrk")
            .arg("--version")
            .output()
            .is_ok();
        if wrk_works && !forced {
            Loader::Wrk
        } else {
            Loader::Reqwest(client)
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Loader::Wrk => "wrk -t1 (own process)",
            Loader::Reqwest(_) => "reqwest (in this process)",
        }
    }

    async fn load(&self, url: &str, key: &str, seconds: f64, body: String) -> Round {
        match self {
            Loader::Wrk => wrk(url, key, seconds, body).await,
            Loader::Reqwest(client) => load(client, url, key, seconds, body).await,
        }
    }
}

/// One `wrk` run of `seconds` at [`CONNECTIONS`] connections, POSTing `body`.
async fn wrk(url: &str, key: &str, seconds: f64, body: String) -> Round {
    let script = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        script.path(),
        format!(
            "wrk.method = \"POST\"\nwrk.body = [[{body}]]\n\
             wrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"X-API-Key\"] = \"{key}\"\n"
        ),
    )
    .expect("wrk script");
    let args = vec![
        "-t1".to_owned(),
        format!("-c{CONNECTIONS}"),
        format!("-d{}s", seconds.ceil().max(1.0)),
        "--latency".to_owned(),
        "-s".to_owned(),
        script.path().display().to_string(),
        url.to_owned(),
    ];
    let output =
        tokio::task::spawn_blocking(move || std::process::Command::new("wrk").args(&args).output())
            .await
            .expect("wrk thread")
            .expect("wrk runs");
    drop(script);
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::trim)
    };
    let latency = |p: &str| field(p).and_then(wrk_duration).unwrap_or_default();
    let errors = field("Non-2xx or 3xx responses:")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0)
        + usize::from(field("Socket errors:").is_some());
    Round {
        requests_per_second: field("Requests/sec:")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0),
        p50: latency("50%"),
        p99: latency("99%"),
        errors,
    }
}

/// `812.00us`, `1.23ms`, `2.01s` as wrk prints them.
fn wrk_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

async fn load(client: &reqwest::Client, url: &str, key: &str, seconds: f64, body: String) -> Round {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let client = client.clone();
        let url = url.to_string();
        let key = key.to_string();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < until {
                let started = Instant::now();
                let response = client
                    .post(&url)
                    .header("X-API-Key", &key)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        latencies.push(started.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        if let Ok((mut task_latencies, task_errors)) = task.await {
            latencies.append(&mut task_latencies);
            errors += task_errors;
        }
    }
    let elapsed = started.elapsed().as_secs_f64().max(seconds);
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Round {
        requests_per_second: latencies.len() as f64 / elapsed,
        p50: at(0.50),
        p99: at(0.99),
        errors,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The runtime central (and the routed site) runs on: `scl serve`'s
/// ([`scl_runtime::serve::io_runtime`], half the cores as async workers, at
/// least one), or `SCL_BENCH_IO_THREADS` workers. The bare handlers keep the
/// bench's own runtime, tokio's default of a worker per core, which is their
/// fastest here (one worker: about a quarter fewer requests/s).
fn io_runtime() -> &'static tokio::runtime::Runtime {
    static IO: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    IO.get_or_init(|| {
        let threads = std::env::var("SCL_BENCH_IO_THREADS")
            .ok()
            .and_then(|v| v.parse().ok());
        scl_runtime::serve::io_runtime(threads).expect("io runtime")
    })
}

/// Runs `work` on the I/O runtime (what it spawns stays there) and waits for it.
async fn on_io<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    io_runtime().spawn(work).await.expect("io task")
}

/// Starts central on the I/O runtime, listening on a free loopback port.
async fn start_central(
    deployment: Arc<Deployment>,
    config: CentralConfig,
) -> central::CentralHandle {
    on_io(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        central::start(deployment, listener, config)
            .await
            .expect("central starts")
    })
    .await
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let seconds: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let only: Vec<String> = args.iter().skip(2).cloned().collect();
    let wanted = move |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("echo.scl"),
            "fn main(name: string, count: int) -> { name: string, count: int } {\n    return { name: name, count: count };\n}\n",
        )
        .expect("script");
        let config_path = dir.path().join("deploy.toml");
        std::fs::write(
            &config_path,
            format!(
                "data_dir = \"./data\"\n[central]\nlisten = \"127.0.0.1:0\"\n\n[api_keys.bench]\nsha256 = \"{}\"\n\n[api_methods.Echo]\nscript = \"echo.scl\"\napproved_keys = [\"bench\"]\n",
                sha256_hex(KEY)
            ),
        )
        .expect("deployment");
        let deployment = Deployment::load(&config_path).expect("deployment loads");
        let central = start_central(
            Arc::new(deployment),
            CentralConfig {
                script_threads: script_threads(),
                ..CentralConfig::default()
            },
        )
        .await;
        let central_url = format!("http://{}/api/Echo", central.local_addr());

        // The baseline: axum parsing the same body and answering the same JSON.
        let bare = axum::Router::new().route(
            "/api/Echo",
            axum::routing::post(|axum::Json(body): axum::Json<Value>| async move {
                axum::Json(json!({ "name": body["name"], "count": body["count"] }))
            }),
        );
        let bare_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let bare_url = format!("http://{}/api/Echo", bare_listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(bare_listener, bare).await;
        });

        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(CONNECTIONS)
            .build()
            .expect("client");
        let body = json!({ "name": "pump", "count": 3 }).to_string();
        let loader = Loader::pick(client.clone());
        println!("load generator: {}", loader.name());
        if wanted("central") {
            compare(&loader, "central", &central_url, &bare_url, &body, seconds, rounds).await;
        }
        let _ = central.shutdown().await;
        routed(&client, &loader, seconds, rounds, &wanted).await;
    });
}

/// Warms both up, then runs `rounds` rounds of central against the bare
/// handler and prints each round, the medians (also as `BENCH` lines, rows
/// `{name}_throughput`, `{name}_p50`, `{name}_p99`) and the ratios.
async fn compare(
    loader: &Loader,
    name: &str,
    central_url: &str,
    bare_url: &str,
    body: &str,
    seconds: f64,
    rounds: usize,
) {
    // Warm up both (connections, JIT'd code paths, allocator).
    loader.load(central_url, KEY, 0.5, body.to_owned()).await;
    loader.load(bare_url, KEY, 0.5, body.to_owned()).await;
    println!("{name} vs bare axum, {CONNECTIONS} connections, {seconds} s x {rounds} rounds");
    let mut central_rounds = Vec::new();
    let mut bare_rounds = Vec::new();
    for round in 1..=rounds {
        let c = loader
            .load(central_url, KEY, seconds, body.to_owned())
            .await;
        let b = loader.load(bare_url, KEY, seconds, body.to_owned()).await;
        println!(
            "round {round}: {name} {:>8.0} req/s p50 {:>7.3} ms p99 {:>7.3} ms (errors {}) | bare {:>8.0} req/s p50 {:>7.3} ms p99 {:>7.3} ms (errors {})",
            c.requests_per_second,
            c.p50.as_secs_f64() * 1e3,
            c.p99.as_secs_f64() * 1e3,
            c.errors,
            b.requests_per_second,
            b.p50.as_secs_f64() * 1e3,
            b.p99.as_secs_f64() * 1e3,
            b.errors,
        );
        central_rounds.push(c);
        bare_rounds.push(b);
    }
    let summary = |rounds: &[Round]| {
        (
            median(rounds.iter().map(|r| r.requests_per_second).collect()),
            median(rounds.iter().map(|r| r.p50.as_secs_f64() * 1e3).collect()),
            median(rounds.iter().map(|r| r.p99.as_secs_f64() * 1e3).collect()),
        )
    };
    let (c_rps, c_p50, c_p99) = summary(&central_rounds);
    let (b_rps, b_p50, b_p99) = summary(&bare_rounds);
    println!(
        "median: {name} {c_rps:.0} req/s, p50 {c_p50:.3} ms, p99 {c_p99:.3} ms; bare {b_rps:.0} req/s, p50 {b_p50:.3} ms, p99 {b_p99:.3} ms"
    );
    for (row, scl, bare, unit, better) in [
        ("throughput", c_rps, b_rps, "req/s", "higher"),
        ("p50", c_p50, b_p50, "ms", "lower"),
        ("p99", c_p99, b_p99, "ms", "lower"),
    ] {
        let row = format!("{name}_{row}");
        bench_line(&row, "scl", scl, unit, better, rounds);
        bench_line(&row, "baseline", bare, unit, better, rounds);
    }
    println!(
        "ratio {name}/bare: throughput {:.2}, p50 {:.2}, p99 {:.2}",
        c_rps / b_rps.max(1.0),
        c_p50 / b_p50.max(1e-9),
        c_p99 / b_p99.max(1e-9)
    );
}

/// `Route.To(code).GetAttributes(["Speed", "Running"])` through central to a
/// site in this process, against a bare axum handler with the same answer.
async fn routed(
    client: &reqwest::Client,
    loader: &Loader,
    seconds: f64,
    rounds: usize,
    wanted: &dyn Fn(&str) -> bool,
) {
    const TOKEN: &str = "bench-site-token";
    let dir = tempfile::tempdir().expect("temp dir");
    let site_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    site_listener.set_nonblocking(true).expect("nonblocking");
    let site_addr = site_listener.local_addr().expect("addr");
    std::fs::write(
        dir.path().join("attrs.scl"),
        "fn main(code: string) -> json {\n    return Route.To(code).GetAttributes([\"Speed\", \"Running\"]);\n}\n",
    )
    .expect("script");
    let config_path = dir.path().join("deploy.toml");
    std::fs::write(
        &config_path,
        format!(
            "data_dir = \"./data\"\n[central]\nlisten = \"127.0.0.1:0\"\n\n\
             [[site]]\nname = \"plant-a\"\nlisten = \"{site_addr}\"\nurl = \"http://{site_addr}\"\ntoken_env = \"BENCH_SITE_TOKEN\"\n\n\
             [templates.Pump.attributes]\nSpeed = {{ type = \"float\", default = 1450.0 }}\nRunning = {{ type = \"bool\", default = true }}\n\n\
             [[instance]]\ncode = \"PUMP-1\"\ntemplate = \"Pump\"\nsite = \"plant-a\"\n\n\
             [api_keys.bench]\nsha256 = \"{}\"\n\n[api_methods.Attrs]\nscript = \"attrs.scl\"\napproved_keys = [\"bench\"]\n",
            sha256_hex(KEY)
        ),
    )
    .expect("deployment");
    let deployment = Deployment::load(&config_path).expect("deployment loads");
    let env: scl_runtime::site::EnvLookup =
        Arc::new(|name| (name == "BENCH_SITE_TOKEN").then(|| TOKEN.to_owned()));
    let mut options = scl_runtime::site::SiteOptions::new(
        "plant-a",
        config_path.clone(),
        dir.path().join("data/site-plant-a"),
        TOKEN.to_owned(),
    );
    options.env = Arc::clone(&env);
    let site = {
        let deployment = deployment.clone();
        on_io(async move {
            let site = scl_runtime::site::Site::start(options, &deployment)
                .await
                .expect("site starts");
            let served = scl_runtime::site::api::router(&site);
            let listener = tokio::net::TcpListener::from_std(site_listener).expect("listener");
            tokio::spawn(async move {
                let _ = axum::serve(listener, served).await;
            });
            site
        })
        .await
    };
    let bare = axum::Router::new().route(
        "/api/Attrs",
        axum::routing::post(|axum::Json(_): axum::Json<Value>| async move {
            axum::Json(json!({ "Speed": 1450.0, "Running": true }))
        }),
    );
    let bare_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let bare_url = format!(
        "http://{}/api/Attrs",
        bare_listener.local_addr().expect("addr")
    );
    tokio::spawn(async move {
        let _ = axum::serve(bare_listener, bare).await;
    });
    let deployment = Arc::new(deployment);
    let body = json!({ "code": "PUMP-1" }).to_string();
    // `routed`: the site in central's process, as `scl serve --role all` runs it (requests
    // handed to the site's router); `routed_http`: the same site over loopback HTTP, as
    // separate central and site processes reach each other.
    for (name, in_process) in [("routed", true), ("routed_http", false)] {
        if !wanted(name) {
            continue;
        }
        let mut in_process_sites = std::collections::HashMap::new();
        if in_process {
            in_process_sites.insert("plant-a".to_owned(), site.clone());
        }
        let central = start_central(
            Arc::clone(&deployment),
            CentralConfig {
                script_threads: script_threads(),
                env: Arc::clone(&env),
                data_dir: Some(dir.path().join(format!("data-{name}"))),
                in_process_sites,
                ..CentralConfig::default()
            },
        )
        .await;
        let central_url = format!("http://{}/api/Attrs", central.local_addr());
        // The answer is the site's, before anything is timed.
        let check = client
            .post(&central_url)
            .header("X-API-Key", KEY)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("a routed call");
        let answer: Value = check.json().await.expect("json");
        assert_eq!(answer, json!({ "Speed": 1450.0, "Running": true }));
        compare(
            loader,
            name,
            &central_url,
            &bare_url,
            &body,
            seconds,
            rounds,
        )
        .await;
        let _ = central.shutdown().await;
    }
    site.shutdown().await;
}
