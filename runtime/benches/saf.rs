//! Store-and-forward benchmark (run with `cargo bench -p scl-runtime --bench saf`).
//!
//! Prints: durable enqueue rate and acknowledgement latency with 1 and 64 concurrent
//! producers; forward rate to a local HTTP sink; RSS and status lookup time with 1,000,000
//! buffered messages (measured in a child process so earlier phases do not inflate RSS).
//! Each figure is the median of `SAF_BENCH_ROUNDS` rounds (default 3); `SAF_BENCH_PHASES`
//! (`single,many,forward,million` by default) picks the phases to run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use scl_runtime::saf::{
    Category, Deliverer, Deliverers, DeliveryFuture, Forwarder, ForwarderConfig, Message,
    NewMessage, Outcome, RetryPolicy, Saf, SafConfig,
};
use serde_json::json;
#[path = "common/bench_line.rs"]
mod bench_line;
use bench_line::bench_line;

/// The allocator of the `scl` binary (`src/main.rs`), so the RSS figures are the
/// ones a site node has.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if std::env::args().any(|arg| arg == "--million-child") {
        million();
        return;
    }
    let rounds: usize = std::env::var("SAF_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // `SAF_BENCH_PHASES=many,forward` runs only those phases (all four by default), so
    // an A/B comparison of one figure does not wait for the others.
    let phases =
        std::env::var("SAF_BENCH_PHASES").unwrap_or_else(|_| "single,many,forward,million".into());
    let wanted = |phase: &str| phases.split(',').any(|p| p.trim() == phase);

    let mut single = Vec::new();
    let mut many = Vec::new();
    let mut forward = Vec::new();
    for _ in 0..rounds {
        if wanted("single") {
            single.push(enqueue_single(3_000));
        }
        if wanted("many") {
            many.push(runtime.block_on(enqueue_concurrent(64, 3_000)));
        }
        if wanted("forward") {
            forward.push(runtime.block_on(forward_rate(20_000)));
        }
    }
    if !single.is_empty() {
        let rate = report("durable enqueue, 1 producer", &mut single);
        bench_line("saf_enqueue_1", "scl", rate, "msgs/s", "higher", rounds);
    }
    if !many.is_empty() {
        let rate = report("durable enqueue, 64 producers", &mut many);
        bench_line("saf_enqueue_64", "scl", rate, "msgs/s", "higher", rounds);
    }
    if !forward.is_empty() {
        forward.sort_by(f64::total_cmp);
        let rate = forward[forward.len() / 2];
        println!("forward to local HTTP sink: {rate:.0} msgs/s (median of {rounds})");
        bench_line("saf_forward", "scl", rate, "msgs/s", "higher", rounds);
    }

    if wanted("million") {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("--million-child")
            .output()
            .unwrap();
        print!("{}", String::from_utf8_lossy(&output.stdout));
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
    }
}

struct Run {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

fn report(what: &str, runs: &mut [Run]) -> f64 {
    runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let median = &runs[runs.len() / 2];
    let mut p50: Vec<_> = runs.iter().map(|r| r.p50).collect();
    let mut p99: Vec<_> = runs.iter().map(|r| r.p99).collect();
    p50.sort();
    p99.sort();
    println!(
        "{what}: {:.0} msgs/s, ack p50 {:?}, p99 {:?} (medians of {})",
        median.rate,
        p50[p50.len() / 2],
        p99[p99.len() / 2],
        runs.len()
    );
    median.rate
}

fn message(n: usize) -> NewMessage {
    NewMessage::new(
        Category::ExternalCall,
        "MES/PostReading",
        &json!({ "system": "MES", "method": "PostReading", "params": { "pump": "PUMP-001", "value": n } }),
        RetryPolicy::fixed(5, Duration::from_secs(30)),
    )
    .unwrap()
}

fn percentile(latencies: &mut [Duration], p: f64) -> Duration {
    latencies.sort();
    latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)]
}

fn enqueue_single(count: usize) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    let mut latencies = Vec::with_capacity(count);
    let start = Instant::now();
    for n in 0..count {
        let t = Instant::now();
        saf.enqueue_blocking(message(n)).unwrap();
        latencies.push(t.elapsed());
    }
    let rate = count as f64 / start.elapsed().as_secs_f64();
    saf.close_and_wait().unwrap();
    Run {
        rate,
        p50: percentile(&mut latencies, 0.5),
        p99: percentile(&mut latencies, 0.99),
    }
}

async fn enqueue_concurrent(producers: usize, per_producer: usize) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    let start = Instant::now();
    let tasks: Vec<_> = (0..producers)
        .map(|_| {
            let saf = saf.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_producer);
                for n in 0..per_producer {
                    let t = Instant::now();
                    saf.enqueue(message(n)).await.unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let rate = latencies.len() as f64 / start.elapsed().as_secs_f64();
    saf.close_and_wait().unwrap();
    Run {
        rate,
        p50: percentile(&mut latencies, 0.5),
        p99: percentile(&mut latencies, 0.99),
    }
}

struct Sink {
    client: reqwest::Client,
    url: String,
}

impl Deliverer for Sink {
    fn deliver<'a>(&'a self, message: &'a Message) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let sent = self
                .client
                .post(&self.url)
                .header("x-event-id", &message.id)
                .header("content-type", "application/json")
                .body(message.payload.get().to_owned())
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => Outcome::Delivered {
                    status: Some(response.status().as_u16()),
                },
                Ok(response) => Outcome::Transient {
                    error: format!("HTTP {}", response.status()),
                    status: Some(response.status().as_u16()),
                    retry_after: None,
                },
                Err(error) => Outcome::Transient {
                    error: error.to_string(),
                    status: None,
                    retry_after: None,
                },
            }
        })
    }
}

async fn forward_rate(count: usize) -> f64 {
    let received = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&received);
    let app = axum::Router::new().route(
        "/sink",
        axum::routing::post(move |_body: String| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    let producers: Vec<_> = (0..16)
        .map(|p| {
            let saf = saf.clone();
            tokio::spawn(async move {
                for n in 0..count / 16 {
                    saf.enqueue(message(p * count + n)).await.unwrap();
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }
    let total = (count / 16) * 16;
    let sink = Sink {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(128)
            .build()
            .unwrap(),
        url: format!("http://{addr}/sink"),
    };
    let config = ForwarderConfig {
        concurrency_per_target: 64,
        ..ForwarderConfig::default()
    };
    let start = Instant::now();
    let forwarder = Forwarder::start(
        saf.clone(),
        Deliverers::default().with(Category::ExternalCall, sink),
        config,
    )
    .unwrap();
    loop {
        if saf.stats().unwrap().delivered as usize >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    forwarder.shutdown(Duration::from_secs(5)).await;
    saf.close_and_wait().unwrap();
    server.abort();
    rate
}

fn rss_kib() -> (u64, u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"), field("RssFile:"))
}

fn print_rss(what: &str) -> (u64, u64, u64) {
    let (rss, anon, file) = rss_kib();
    println!(
        "{what}: {} MB (anon {} MB, file-backed {} MB)",
        rss / 1024,
        anon / 1024,
        file / 1024
    );
    (rss, anon, file)
}

/// 1,000,000 messages buffered by 64 producers, then RSS and status lookups of random ids.
fn million() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    let total = 1_000_000;
    let producers = 64;
    let start = Instant::now();
    let ids: Vec<String> = runtime.block_on(async {
        let tasks: Vec<_> = (0..producers)
            .map(|_| {
                let saf = saf.clone();
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for n in 0..total / producers {
                        let id = saf.enqueue(message(n)).await.unwrap().id;
                        if n % 100 == 0 {
                            ids.push(id);
                        }
                    }
                    ids
                })
            })
            .collect();
        let mut ids = Vec::new();
        for task in tasks {
            ids.extend(task.await.unwrap());
        }
        ids
    });
    let elapsed = start.elapsed();
    let stats = saf.stats().unwrap();
    println!(
        "1,000,000 buffered ({} queued) in {:.1} s ({:.0} msgs/s); data file {} MB",
        stats.queued,
        elapsed.as_secs_f64(),
        stats.queued as f64 / elapsed.as_secs_f64(),
        stats.file_size / 1_000_000
    );
    print_rss("RSS with 1,000,000 buffered, right after the fill");
    // The writer drops the process's mapped pages of the data file about once a second
    // (`Shared::trim_mapped_pages`); what the process holds after that is its steady size.
    std::thread::sleep(Duration::from_millis(1500));
    let (rss, _, _) = print_rss("RSS with 1,000,000 buffered, 1.5 s later");
    bench_line(
        "saf_million_rss",
        "scl",
        rss as f64 / 1024.0,
        "MB",
        "lower",
        1,
    );
    bench_line(
        "saf_million_fill",
        "scl",
        stats.queued as f64 / elapsed.as_secs_f64(),
        "msgs/s",
        "higher",
        1,
    );
    // Status lookups of ids spread over the whole buffer, in a scrambled order.
    let mut latencies = Vec::new();
    let step = 7919 % ids.len().max(1);
    let mut index = 0usize;
    for _ in 0..10_000 {
        index = (index + step.max(1)) % ids.len();
        let t = Instant::now();
        let report = saf.status(&ids[index]).unwrap();
        latencies.push(t.elapsed());
        assert!(report.is_some());
    }
    latencies.sort();
    println!(
        "status lookup with 1,000,000 buffered: p50 {:?}, p99 {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
        latencies[latencies.len() - 1]
    );
    print_rss("RSS right after the lookups");
    std::thread::sleep(Duration::from_millis(1500));
    print_rss("RSS 1.5 s after the lookups");
    saf.close_and_wait().unwrap();
}
