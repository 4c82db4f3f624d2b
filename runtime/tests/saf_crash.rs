//! Crash safety: a child process buffers under load from 8 producer threads and forwards to
//! a real HTTP peer; the test `kill -9`s it at random moments, 25 times, on the same data
//! directory, then drains the buffer and checks that every acknowledged message was
//! delivered, none lost, and that duplicates at the peer only come from attempts that were in
//! flight when a child was killed.
//!
//! The child is this test binary run again with `SAF_CRASH_CHILD_DIR` set.

mod saf_support;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use saf_support::{CountingServer, HttpDeliverer, wait_until};
use scl_runtime::saf::{
    AttemptOutcome, Category, Deliverers, Forwarder, ForwarderConfig, NewMessage, RetryPolicy, Saf,
    SafConfig, Status, block_on,
};
use serde_json::json;

const RUNS: usize = 25;
const PRODUCERS: usize = 8;
const PER_PRODUCER: usize = 150;
const CONCURRENCY: usize = 8;
const TARGET: &str = "MES/PostReading";

#[test]
fn kill_9_under_load_loses_nothing() {
    if let Ok(dir) = std::env::var("SAF_CRASH_CHILD_DIR") {
        child(&dir);
        return;
    }
    let server = CountingServer::always_ok();
    let dir = tempfile::tempdir().unwrap();
    let random = std::collections::hash_map::RandomState::new();
    let mut acknowledged: HashSet<String> = HashSet::new();
    for run in 0..RUNS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "kill_9_under_load_loses_nothing",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("SAF_CRASH_CHILD_DIR", dir.path())
            .env("SAF_CRASH_URL", server.url())
            .env("SAF_CRASH_RUN", run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let acks = Arc::new(Mutex::new(Vec::new()));
        let reader_acks = Arc::clone(&acks);
        let reader = std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            // Only complete lines count: a line cut by the kill was never fully acknowledged.
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(id) = line
                    .strip_prefix("ACK ")
                    .and_then(|rest| rest.strip_suffix('\n'))
                {
                    reader_acks.lock().unwrap().push(id.to_owned());
                }
                line.clear();
            }
        });
        wait_until(
            "the child acknowledges its first message",
            Duration::from_secs(60),
            || !acks.lock().unwrap().is_empty(),
        );
        // The kill lands at a random moment of the load (a sleep is the point here).
        let mut hasher = random.build_hasher();
        hasher.write_usize(run);
        std::thread::sleep(Duration::from_millis(hasher.finish() % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        acknowledged.extend(acks.lock().unwrap().drain(..));
    }
    assert!(
        acknowledged.len() > RUNS,
        "the children did work: {}",
        acknowledged.len()
    );

    // Drain whatever is left in this process.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    let forwarder = {
        let _entered = runtime.enter();
        start_forwarder(&saf, server.url(), "final")
    };
    wait_until("the buffer drains", Duration::from_secs(300), || {
        saf.stats().unwrap().queued == 0
    });
    runtime.block_on(forwarder.shutdown(Duration::from_secs(10)));

    let hits = server.all_hits();
    for id in &acknowledged {
        let report = saf
            .status(id)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {id} is lost"));
        assert_eq!(report.status, Status::Delivered, "{id}");
        let delivered_attempts = report
            .history
            .iter()
            .filter(|attempt| attempt.outcome == AttemptOutcome::Delivered)
            .count();
        assert_eq!(delivered_attempts, 1, "{id}: one recorded delivery");
        assert!(hits.contains_key(id), "{id} never reached the peer");
    }

    // Duplicates: the same id twice within one process life would be a bug; across lives it
    // is an attempt that was in flight at a kill, at most CONCURRENCY per kill.
    let mut in_flight_at_kill: HashMap<String, usize> = HashMap::new();
    let mut duplicated = 0;
    for (id, id_hits) in &hits {
        let runs: Vec<&str> = id_hits
            .iter()
            .map(|hit| hit.run.as_deref().unwrap_or("?"))
            .collect();
        let distinct: HashSet<&&str> = runs.iter().collect();
        assert_eq!(
            distinct.len(),
            runs.len(),
            "{id} delivered twice within one run: {runs:?}"
        );
        if runs.len() > 1 {
            duplicated += 1;
            for run in &runs[..runs.len() - 1] {
                assert_ne!(*run, "final", "{id}: the final run is never killed");
                *in_flight_at_kill.entry((*run).to_owned()).or_default() += 1;
            }
        }
    }
    for (run, count) in &in_flight_at_kill {
        assert!(
            *count <= CONCURRENCY,
            "run {run}: {count} redelivered ids, more than were in flight"
        );
    }
    eprintln!(
        "crash test: {} acknowledged, {} delivered, {} redelivered after a kill",
        acknowledged.len(),
        hits.len(),
        duplicated
    );
    saf.close().unwrap();
}

fn start_forwarder(saf: &Saf, url: String, run: &str) -> Forwarder {
    let mut deliverer = HttpDeliverer::new(url);
    deliverer.run = Some(run.to_owned());
    let config = ForwarderConfig {
        concurrency_per_target: CONCURRENCY,
        ..ForwarderConfig::default()
    };
    Forwarder::start(
        saf.clone(),
        Deliverers::default().with(Category::ExternalCall, deliverer),
        config,
    )
    .unwrap()
}

/// The child: 8 producer threads enqueue as fast as they can and print each acknowledged id;
/// a forwarder delivers meanwhile. Runs until killed.
fn child(dir: &str) {
    let url = std::env::var("SAF_CRASH_URL").unwrap();
    let run = std::env::var("SAF_CRASH_RUN").unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let saf = Saf::open(SafConfig::new(dir)).unwrap();
    let _forwarder = {
        let _entered = runtime.enter();
        start_forwarder(&saf, url, &run)
    };
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let saf = saf.clone();
            std::thread::spawn(move || {
                for n in 0..PER_PRODUCER {
                    let message = NewMessage::new(
                        Category::ExternalCall,
                        TARGET,
                        &json!({ "producer": producer, "n": n }),
                        RetryPolicy::fixed(100, Duration::from_millis(100)),
                    )
                    .unwrap();
                    let id = saf.enqueue_blocking(message).unwrap().id;
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {id}").unwrap();
                }
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    // Keep forwarding until killed.
    block_on(std::future::pending::<()>());
}
