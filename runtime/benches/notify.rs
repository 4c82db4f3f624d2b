//! Notify benchmarks against the local test servers (start them with tests/run.sh, or source
//! tests/servers/{oauth,smtp}.sh and call start_oauth and start_smtp):
//!
//! 1. Sustained sends per second through `NotifyService::send` (compose, render, pool, SMTP
//!    to the aiosmtpd server on the plain port, no login) with 5 connections, from 10 script
//!    threads so the pool is always busy.
//! 2. The same with OAuth2 (XOAUTH2 on the implicit-TLS port), so every send passes the token
//!    cache.
//! 3. The token cache's warm path: `TokenCache::cached` (what every send does before it
//!    touches the network), and `TokenCache::token` on a warm cache driven to completion.
//!
//! `cargo bench -p scl-runtime --bench notify` (release build). Prints one line per figure.
//! Bounded in count and time; it talks only to loopback.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scl_runtime::deployment::Deployment;
use scl_runtime::notify::{NotifyConfig, NotifyService, TracingEventLog};
use scl_runtime::saf::{Saf, SafConfig};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!(
            "start the servers with tests/run.sh (or tests/servers/smtp.sh): {name} is unset"
        );
        std::process::exit(2);
    })
}

fn service(
    smtp: &str,
    secrets: &[(&str, String)],
    runtime: &tokio::runtime::Runtime,
    data: &Path,
) -> NotifyService {
    let text = format!(
        "[smtp]\nfrom = \"scada@plant.example\"\nmax_connections = 5\n{smtp}\n\
         [notification_lists]\nOperators = [\"op1@plant.example\", \"op2@plant.example\", \"op3@plant.example\"]\n"
    );
    let deployment =
        Deployment::from_source(Path::new("/tmp/bench/deploy.toml"), text).expect("deployment");
    let secrets: BTreeMap<String, String> = secrets
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let config = NotifyConfig::from_deployment(&deployment, |name| secrets.get(name).cloned())
        .expect("settings");
    let saf = Saf::open(SafConfig::new(data)).expect("buffer");
    NotifyService::new(
        config,
        saf,
        runtime.handle().clone(),
        Arc::new(TracingEventLog),
    )
    .expect("service")
}

/// Sends `total` notifications from `threads` threads; returns sends per second.
fn sustained(service: &NotifyService, threads: usize, total: usize) -> f64 {
    let per_thread = total / threads;
    let started = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            scope.spawn(move || {
                for n in 0..per_thread {
                    let delivery = service
                        .send(
                            "Operators",
                            &format!("bench {thread}/{n}"),
                            "Pump PUMP-001 is at 92.5 C (limit 80 C)",
                        )
                        .expect("send");
                    assert_eq!(
                        delivery.status.as_str(),
                        "delivered",
                        "the server should accept every message"
                    );
                }
            });
        }
    });
    (per_thread * threads) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = tempfile::tempdir().unwrap();

    // 1. Plain port, no login.
    let plain = format!(
        "host = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n",
        env("SCL_TEST_SMTP_PLAIN_PORT")
    );
    let service_plain = service(&plain, &[], &runtime, &data.path().join("plain"));
    sustained(&service_plain, 10, 200); // warm-up: connections open, code paths hot
    let rate = sustained(&service_plain, 10, 2000);
    let stats = service_plain.client().unwrap().stats();
    println!(
        "notify/sustained_plain_5_connections: {rate:.0} sends/s (2000 sends, 10 threads, {} connections opened)",
        stats.connections_opened
    );

    // 2. Implicit TLS with XOAUTH2.
    let oauth = format!(
        "host = \"127.0.0.1\"\nport = {}\ntls = \"ssl\"\ntrusted_roots = [\"{}\"]\n\
         auth = {{ kind = \"oauth2\", tenant_id = \"bench\", client_id = \"scl-notify-30\", \
         client_secret_env = \"SECRET\", token_url = \"{}\" }}\n",
        env("SCL_TEST_SMTP_TLS_PORT"),
        env("SCL_TEST_SMTP_CA"),
        env("SCL_TEST_OAUTH_TOKEN_URL"),
    );
    let secret = env("SCL_TEST_OAUTH_CLIENT_SECRET");
    let service_oauth = service(
        &oauth,
        &[("SECRET", secret)],
        &runtime,
        &data.path().join("oauth"),
    );
    sustained(&service_oauth, 10, 200);
    let rate = sustained(&service_oauth, 10, 1000);
    let client = service_oauth.client().unwrap();
    println!(
        "notify/sustained_tls_xoauth2_5_connections: {rate:.0} sends/s (1000 sends, 10 threads, {} token fetch(es))",
        client.stats().token_fetches
    );

    // 3. The token cache on a warm path.
    let cache = client.token_cache().expect("OAuth2 client");
    assert!(
        cache.cached().is_some(),
        "the cache is warm after the sends above"
    );
    let iterations = 5_000_000u32;
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(cache.cached());
        }
        best = best.min(started.elapsed());
    }
    println!(
        "notify/token_cache_warm_cached: {:.1} ns/op (best of 5 x {iterations})",
        best.as_nanos() as f64 / f64::from(iterations)
    );
    let iterations = 1_000_000u32;
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        for _ in 0..iterations {
            let token = scl_runtime::saf::block_on(cache.token()).expect("warm token");
            std::hint::black_box(token);
        }
        best = best.min(started.elapsed());
    }
    println!(
        "notify/token_cache_warm_token_future: {:.1} ns/op (best of 5 x {iterations})",
        best.as_nanos() as f64 / f64::from(iterations)
    );
    // The cached token may only be used while it is not due for refresh; the loops above
    // must not have fetched.
    println!(
        "notify/token_fetches_total: {}",
        client.stats().token_fetches
    );
}
