//! Forwarding against a real HTTP peer: independent retry timing, parking after exactly
//! `max_retries`, permanent failures, Retry-After, operator retry, restart, graceful shutdown,
//! and fairness between targets.

mod saf_support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use saf_support::{Answer, CountingServer, HttpDeliverer, wait_for};
use scl_runtime::saf::{
    AttemptOutcome, Category, Deliverers, Forwarder, ForwarderConfig, ListFilter, NewMessage,
    RetryPolicy, Saf, SafConfig, Selector, Status,
};
use serde_json::json;

const LONG: Duration = Duration::from_secs(30);

fn forwarder(saf: &Saf, server: &CountingServer, config: ForwarderConfig) -> Forwarder {
    let deliverers =
        Deliverers::default().with(Category::ExternalCall, HttpDeliverer::new(server.url()));
    Forwarder::start(saf.clone(), deliverers, config).unwrap()
}

fn no_jitter() -> ForwarderConfig {
    ForwarderConfig {
        jitter: 0.0,
        ..ForwarderConfig::default()
    }
}

fn call(target: &str, id: &str, policy: RetryPolicy) -> NewMessage {
    NewMessage::new(Category::ExternalCall, target, &json!({ "id": id }), policy)
        .unwrap()
        .with_id(id)
}

fn status_of(saf: &Saf, id: &str) -> Option<Status> {
    saf.status(id).unwrap().map(|report| report.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_retries_on_its_own_schedule() {
    let server = CountingServer::start(Arc::new(|_, nth| {
        if nth <= 2 {
            Answer::status(503)
        } else {
            Answer::OK
        }
    }));
    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    let forwarder = forwarder(&saf, &server, no_jitter());
    saf.enqueue(call(
        "MES/PostReading",
        "slow",
        RetryPolicy::fixed(5, Duration::from_millis(600)),
    ))
    .await
    .unwrap();
    saf.enqueue(call(
        "MES/PostReading",
        "fast",
        RetryPolicy::fixed(5, Duration::from_millis(100)),
    ))
    .await
    .unwrap();
    wait_for("both delivered", LONG, || {
        status_of(&saf, "fast") == Some(Status::Delivered)
            && status_of(&saf, "slow") == Some(Status::Delivered)
    })
    .await;
    let fast = server.hits("fast");
    let slow = server.hits("slow");
    assert_eq!(fast.len(), 3);
    assert_eq!(slow.len(), 3);
    for pair in fast.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(98),
            "fast retried after {gap:?}"
        );
    }
    for pair in slow.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(
            gap >= Duration::from_millis(598),
            "slow retried after {gap:?}"
        );
    }
    // Independence: the fast message finished before the slow one even retried once.
    assert!(fast[2].at < slow[1].at, "fast was held back by slow");

    let report = saf.status("fast").unwrap().unwrap();
    assert_eq!(report.attempts, 3);
    let outcomes: Vec<_> = report.history.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            AttemptOutcome::Transient,
            AttemptOutcome::Transient,
            AttemptOutcome::Delivered
        ]
    );
    assert_eq!(report.history[0].status_code, Some(503));
    assert_eq!(report.history[2].status_code, Some(200));
    forwarder.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_parked_after_exactly_max_retries() {
    let server = CountingServer::start(Arc::new(|_, _| Answer::status(503)));
    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    let forwarder = forwarder(&saf, &server, no_jitter());
    saf.enqueue(call(
        "MES/PostReading",
        "doomed",
        RetryPolicy::fixed(3, Duration::from_millis(50)),
    ))
    .await
    .unwrap();
    wait_for("parked", LONG, || {
        status_of(&saf, "doomed") == Some(Status::Parked)
    })
    .await;
    // The first attempt and three retries, then nothing more.
    assert_eq!(server.count("doomed"), 4);
    let report = saf.status("doomed").unwrap().unwrap();
    assert_eq!(report.attempts, 4);
    assert_eq!(report.attempts_remaining, 0);
    assert_eq!(report.history.len(), 4);
    assert!(
        report
            .history
            .iter()
            .all(|a| a.outcome == AttemptOutcome::Transient)
    );
    let last_error = report.last_error.unwrap();
    assert!(
        last_error.contains("retries exhausted after 4 attempts"),
        "{last_error}"
    );
    assert!(last_error.contains("HTTP 503"), "{last_error}");
    assert!(report.next_attempt_at_ms.is_none());
    // Wait four retry intervals: a parked message is never attempted again. (Nothing can be
    // awaited for an attempt that must not happen.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.count("doomed"), 4);
    forwarder.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_parks_at_once_and_an_operator_retry_delivers() {
    let server = CountingServer::start(Arc::new(|_, _| Answer::status(400)));
    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    let forwarder = forwarder(&saf, &server, no_jitter());
    saf.enqueue(call(
        "MES/PostReading",
        "rejected",
        RetryPolicy::fixed(5, Duration::from_millis(10)),
    ))
    .await
    .unwrap();
    wait_for("parked", LONG, || {
        status_of(&saf, "rejected") == Some(Status::Parked)
    })
    .await;
    assert_eq!(server.count("rejected"), 1);
    let report = saf.status("rejected").unwrap().unwrap();
    assert_eq!(report.last_error.as_deref(), Some("HTTP 400"));
    assert_eq!(report.history[0].outcome, AttemptOutcome::Permanent);
    let parked = saf.list(&ListFilter::status(Status::Parked)).unwrap();
    assert_eq!(parked.len(), 1);

    // The peer is fixed; the operator retries everything parked for that target.
    server.set_script(Arc::new(|_, _| Answer::OK));
    let filter = ListFilter {
        target: Some("MES/PostReading".into()),
        ..ListFilter::default()
    };
    assert_eq!(saf.retry(Selector::Filter(filter)).await.unwrap(), 1);
    wait_for("delivered", LONG, || {
        status_of(&saf, "rejected") == Some(Status::Delivered)
    })
    .await;
    assert_eq!(server.count("rejected"), 2);
    let report = saf.status("rejected").unwrap().unwrap();
    assert_eq!(
        report.attempts, 2,
        "attempts continue across a manual retry"
    );
    assert_eq!(report.history.len(), 2);
    forwarder.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let server = CountingServer::start(Arc::new(|_, nth| {
        if nth == 1 {
            Answer {
                status: 429,
                retry_after_s: Some(1),
                delay_ms: 0,
            }
        } else {
            Answer::OK
        }
    }));
    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    let forwarder = forwarder(&saf, &server, ForwarderConfig::default());
    saf.enqueue(call(
        "MES/PostReading",
        "throttled",
        RetryPolicy::fixed(5, Duration::from_millis(10)),
    ))
    .await
    .unwrap();
    wait_for("delivered", LONG, || {
        status_of(&saf, "throttled") == Some(Status::Delivered)
    })
    .await;
    let hits = server.hits("throttled");
    assert_eq!(hits.len(), 2);
    let gap = hits[1].at - hits[0].at;
    assert!(
        gap >= Duration::from_millis(999),
        "retried {gap:?} after a Retry-After of 1 s"
    );
    forwarder.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_every_pending_message() {
    let server = CountingServer::always_ok();
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..50).map(|n| format!("resume-{n}")).collect();
    {
        // Buffered while no forwarder runs (the peer "was down"), then the node stops.
        let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
        for id in &ids {
            saf.enqueue(call(
                "MES/PostReading",
                id,
                RetryPolicy::fixed(3, Duration::from_secs(1)),
            ))
            .await
            .unwrap();
        }
        saf.close_and_wait().unwrap();
    }
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    assert_eq!(saf.stats().unwrap().queued, 50);
    let forwarder = forwarder(&saf, &server, ForwarderConfig::default());
    wait_for("all delivered", LONG, || {
        saf.stats().unwrap().delivered == 50
    })
    .await;
    for id in &ids {
        assert_eq!(server.count(id), 1, "{id} delivered once");
    }
    forwarder.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_loses_nothing() {
    let server = CountingServer::start(Arc::new(|_, _| Answer::OK.delayed(20)));
    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    let config = ForwarderConfig {
        concurrency_per_target: 4,
        ..ForwarderConfig::default()
    };
    let forwarder = forwarder(&saf, &server, config.clone());
    // Four producers keep enqueueing while the forwarder works and then shuts down.
    let mut producers = Vec::new();
    for producer in 0..4 {
        let saf = saf.clone();
        producers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for n in 0..100 {
                let id = format!("p{producer}-{n}");
                match saf
                    .enqueue(call(
                        "MES/PostReading",
                        &id,
                        RetryPolicy::fixed(3, Duration::from_secs(1)),
                    ))
                    .await
                {
                    Ok(_) => acknowledged.push(id),
                    Err(_) => break, // closed: the buffer stopped taking work
                }
            }
            acknowledged
        }));
    }
    wait_for("some deliveries", LONG, || {
        server.delivered_ids().len() >= 20
    })
    .await;
    let report = forwarder.shutdown(Duration::from_secs(10)).await;
    assert_eq!(
        report.abandoned, 0,
        "every in-flight attempt finished within the grace"
    );
    saf.close().unwrap();
    let mut acknowledged = Vec::new();
    for producer in producers {
        acknowledged.extend(producer.await.unwrap());
    }
    drop(saf);

    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    let seen: HashSet<String> = server.delivered_ids().into_iter().collect();
    for id in &acknowledged {
        let status =
            status_of(&saf, id).unwrap_or_else(|| panic!("{id} was acknowledged but is lost"));
        // In-flight attempts were recorded before shutdown: the buffer agrees with the peer.
        assert_eq!(
            status == Status::Delivered,
            seen.contains(id),
            "{id} is {status:?}"
        );
    }
    let forwarder = forwarder_again(&saf, &server, config);
    wait_for("the rest delivered", LONG, || {
        acknowledged
            .iter()
            .all(|id| status_of(&saf, id) == Some(Status::Delivered))
    })
    .await;
    for id in &acknowledged {
        assert_eq!(
            server.count(id),
            1,
            "{id} delivered exactly once across a graceful restart"
        );
    }
    forwarder.shutdown(Duration::from_secs(5)).await;
}

fn forwarder_again(saf: &Saf, server: &CountingServer, config: ForwarderConfig) -> Forwarder {
    forwarder(saf, server, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_on_one_target_does_not_starve_another() {
    let server = CountingServer::start(Arc::new(|id: &str, _| {
        if id.starts_with("backlog") {
            Answer::OK.delayed(20)
        } else {
            Answer::OK
        }
    }));
    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    for n in 0..300 {
        saf.enqueue(call(
            "Slow/Backlog",
            &format!("backlog-{n}"),
            RetryPolicy::fixed(3, Duration::from_secs(1)),
        ))
        .await
        .unwrap();
    }
    let config = ForwarderConfig {
        concurrency_per_target: 2,
        ..ForwarderConfig::default()
    };
    let forwarder = forwarder(&saf, &server, config);
    wait_for("backlog flowing", LONG, || {
        server.delivered_ids().len() >= 5
    })
    .await;
    saf.enqueue(call(
        "Fast/New",
        "newcomer",
        RetryPolicy::fixed(3, Duration::from_secs(1)),
    ))
    .await
    .unwrap();
    wait_for("newcomer delivered", LONG, || {
        status_of(&saf, "newcomer") == Some(Status::Delivered)
    })
    .await;
    let backlog_done = saf.stats().unwrap().delivered;
    assert!(
        backlog_done < 150,
        "the newcomer waited for {backlog_done} backlog messages"
    );
    forwarder.shutdown(Duration::from_secs(10)).await;
}
