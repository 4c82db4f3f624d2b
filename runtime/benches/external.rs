//! Benchmark: the overhead of `ExternalSystem.Call` over a bare reqwest call to the same
//! local peer (the target: < 10 % at the median).
//!
//! Both sides run from a plain thread (as a script thread does), block on the same tokio
//! runtime, send the same JSON body to the same loopback axum peer with a keep-alive client
//! configured alike, and parse the JSON answer. The bare side builds its request by hand; the
//! module side goes through definition lookup, encoding, header building, classification
//! and error scrubbing. Calls alternate in blocks so drift hits both sides alike.
//!
//! Run: `cargo bench -p scl-runtime --bench external` (release). `SCL_BENCH_CALLS` sets the
//! calls per side (default 5,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use scl_runtime::external::ReqwestTransport;
use scl_stdlib::external::{
    Authentication, BaseUrl, DryRunOutbox, ExternalSystemModule, ExternalSystems, HttpVerb,
    NoEventLog, PathTemplate, Secret, SigningSecret, SystemConfig,
};
use serde_json::{Value, json};
#[path = "common/bench_line.rs"]
mod bench_line;
use bench_line::bench_line;

fn main() {
    let calls: usize = std::env::var("SCL_BENCH_CALLS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(5_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let address = listener.local_addr().expect("its address");
    let peer = axum::Router::new().route(
        "/readings",
        axum::routing::post(|body: axum::body::Bytes| async move {
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            axum::Json(json!({"ok": true, "asset": value["asset"]}))
        }),
    );
    runtime.spawn(async move {
        let _ = axum::serve(listener, peer).await;
    });
    let base = format!("http://{address}");
    let params = json!({"asset": "PUMP-001", "value": 71.5, "at": "2026-11-23T10:00:00Z", "tags": ["a", "b"]});

    let bare_client = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a reqwest client");
    let bare_url = format!("{base}/readings");
    let bare = || {
        runtime.block_on(async {
            let response = bare_client
                .post(&bare_url)
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .body(serde_json::to_vec(&params).expect("JSON"))
                .send()
                .await
                .expect("bare call");
            assert!(response.status().is_success());
            let bytes = response.bytes().await.expect("bare body");
            let value: Value = serde_json::from_slice(&bytes).expect("bare JSON");
            value
        })
    };

    let module = |signed: bool| {
        let mut config = SystemConfig::new("Peer", BaseUrl::parse(&base).expect("base URL"))
            .with_method(
                "Post",
                HttpVerb::Post,
                PathTemplate::parse("/readings").expect("path"),
            );
        config.timeout = Duration::from_secs(10);
        if signed {
            config.authentication =
                Authentication::api_key("X-Api-Key", Secret::new("bench-key")).expect("auth");
            config.signing_secrets = vec![
                SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret"),
            ];
        }
        let mut systems = ExternalSystems::default();
        systems.insert(config);
        let transport =
            ReqwestTransport::new(runtime.handle().clone(), &systems).expect("transport");
        ExternalSystemModule::new(
            Arc::new(systems),
            Arc::new(transport),
            Arc::new(DryRunOutbox::default()),
            Arc::new(NoEventLog),
        )
    };
    let plain = module(false);
    let signed = module(true);
    let call_plain = || plain.call("Peer", "Post", &params).expect("module call");
    let call_signed = || {
        signed
            .call("Peer", "Post", &params)
            .expect("signed module call")
    };
    assert_eq!(bare(), call_plain(), "both sides get the same answer");

    // Warm up connections, allocator and caches.
    for _ in 0..500 {
        bare();
        call_plain();
        call_signed();
    }
    let mut bare_times = Vec::with_capacity(calls);
    let mut plain_times = Vec::with_capacity(calls);
    let mut signed_times = Vec::with_capacity(calls);
    let block = 100;
    while bare_times.len() < calls {
        for _ in 0..block {
            let start = Instant::now();
            std::hint::black_box(bare());
            bare_times.push(start.elapsed());
        }
        for _ in 0..block {
            let start = Instant::now();
            std::hint::black_box(call_plain());
            plain_times.push(start.elapsed());
        }
        for _ in 0..block {
            let start = Instant::now();
            std::hint::black_box(call_signed());
            signed_times.push(start.elapsed());
        }
    }
    let bare_median = report("bare reqwest", &mut bare_times);
    let plain_median = report("ExternalSystem.Call", &mut plain_times);
    let signed_median = report("Call + API key + signing", &mut signed_times);
    let micros = |median: Duration| median.as_secs_f64() * 1e6;
    let samples = bare_times.len();
    bench_line(
        "external_call",
        "scl",
        micros(plain_median),
        "µs",
        "lower",
        samples,
    );
    bench_line(
        "external_call",
        "baseline",
        micros(bare_median),
        "µs",
        "lower",
        samples,
    );
    bench_line(
        "external_call_signed",
        "scl",
        micros(signed_median),
        "µs",
        "lower",
        samples,
    );
    bench_line(
        "external_call_signed",
        "baseline",
        micros(bare_median),
        "µs",
        "lower",
        samples,
    );
    let overhead = |median: Duration| {
        (median.as_secs_f64() - bare_median.as_secs_f64()) / bare_median.as_secs_f64() * 100.0
    };
    println!(
        "overhead at the median: Call {:+.1} % ({:+.1} µs), Call with API key and signature {:+.1} % ({:+.1} µs)",
        overhead(plain_median),
        (plain_median.as_secs_f64() - bare_median.as_secs_f64()) * 1e6,
        overhead(signed_median),
        (signed_median.as_secs_f64() - bare_median.as_secs_f64()) * 1e6,
    );
}

fn report(name: &str, times: &mut [Duration]) -> Duration {
    times.sort();
    let at = |fraction: f64| times[((times.len() - 1) as f64 * fraction) as usize];
    let median = at(0.5);
    println!(
        "{name:<26} n={:>6}  median {:>7.1} µs  p10 {:>7.1} µs  p90 {:>7.1} µs  p99 {:>7.1} µs",
        times.len(),
        median.as_secs_f64() * 1e6,
        at(0.1).as_secs_f64() * 1e6,
        at(0.9).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
    );
    median
}
