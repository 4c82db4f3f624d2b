//! The replication link of the store-and-forward buffer (`saf::replication`), in one
//! process with two real LMDB buffers on loopback TCP: a standby that joins late gets a
//! snapshot; in `sync` mode every message is on the standby's disk before `enqueue`
//! returns; operator changes follow; a silent active is taken over with a raised epoch; an
//! active with an older epoch is fenced.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use scl_runtime::saf::replication::{
    self, LinkAuth, LinkConfig, LinkMetrics, LinkState, LinkStatus, StandbyConfig, StandbyEnd,
    TakeoverHeld, Witness, WitnessVerdict, answer_as_active, run_standby, start_link,
};
use scl_runtime::saf::{Category, NewMessage, RetryPolicy, Saf, SafConfig, Selector, Status};
use serde_json::json;

fn message(n: usize) -> NewMessage {
    NewMessage::new(
        Category::ExternalCall,
        "Erp/PostReading",
        &json!({ "n": n }),
        RetryPolicy::fixed(3, Duration::from_secs(30)),
    )
    .expect("message")
}

const TOKEN: &str = "scl_the-shared-site-token";

fn auth(token: &str) -> LinkAuth {
    LinkAuth::new("plant-a", token)
}

fn wait_status(
    watch: &mut tokio::sync::watch::Receiver<LinkStatus>,
    what: &str,
    wanted: impl Fn(LinkStatus) -> bool,
) -> LinkStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = *watch.borrow_and_update();
        if wanted(status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_sync_standby_holds_every_acknowledged_message_and_takes_over_when_the_active_is_silent() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let active_dir = tempfile::tempdir().expect("dir");
    let standby_dir = tempfile::tempdir().expect("dir");
    let active = Saf::open(SafConfig::new(active_dir.path())).expect("active");
    let standby = Saf::open(SafConfig::new(standby_dir.path())).expect("standby");

    // Messages buffered before the standby exists reach it through the snapshot.
    let early: Vec<String> = (0..150)
        .map(|n| active.enqueue_blocking(message(n)).expect("enqueue").id)
        .collect();

    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").expect("bind"));
    let link_address = listener.local_addr().expect("addr").to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let standby_metrics = Arc::new(LinkMetrics::default());
    let active_metrics = Arc::new(LinkMetrics::default());
    let standby_thread = {
        let (listener, standby, stop) = (Arc::clone(&listener), standby.clone(), Arc::clone(&stop));
        let standby_metrics = Arc::clone(&standby_metrics);
        std::thread::spawn(move || {
            let config = StandbyConfig {
                site: "plant-a".to_owned(),
                primary: false,
                takeover_after: Duration::from_millis(800),
                auth: auth(TOKEN),
                metrics: standby_metrics,
                witness: None,
            };
            run_standby(&listener, &standby, &config, &stop)
        })
    };
    assert!(!standby.replica_complete().expect("meta"));
    let mut status = start_link(
        &active,
        LinkConfig {
            site: "plant-a".to_owned(),
            peer: link_address.clone(),
            epoch: 0,
            primary: true,
            sync: true,
            ack_timeout: Duration::from_secs(5),
            auth: auth(TOKEN),
            metrics: Arc::clone(&active_metrics),
        },
    )
    .expect("link");
    wait_status(&mut status, "the standby to be current", |s| {
        s == LinkStatus::Up
    });
    assert!(standby.replica_complete().expect("meta"));
    for id in &early {
        assert!(
            standby.status(id).expect("read").is_some(),
            "{id} in the snapshot"
        );
    }

    // Sync: on the standby's disk before `enqueue` returns, from concurrent producers.
    let producers: Vec<_> = (0..4)
        .map(|producer| {
            let (active, standby) = (active.clone(), standby.clone());
            std::thread::spawn(move || {
                for n in 0..100 {
                    let id = active
                        .enqueue_blocking(message(1000 * producer + n))
                        .expect("enqueue")
                        .id;
                    assert!(
                        standby.status(&id).expect("read").is_some(),
                        "{id} acknowledged before it reached the standby"
                    );
                }
            })
        })
        .collect();
    for producer in producers {
        producer.join().expect("producer");
    }
    // Operator changes travel the same way.
    let block_on = scl_runtime::saf::block_on;
    block_on(active.discard(Selector::Id(early[0].clone()))).expect("discard");
    assert_eq!(
        standby
            .status(&early[0])
            .expect("read")
            .expect("there")
            .status,
        Status::Discarded
    );
    assert_eq!(
        active.stats().expect("stats").queued,
        standby.stats().expect("stats").queued
    );

    // Both nodes publish the link's state and position for `/metrics`.
    let acknowledged = active_metrics.position.load(Ordering::Relaxed);
    // A position counts group commits (batches), not messages.
    assert!(acknowledged > 1, "position {acknowledged}");
    assert_eq!(
        standby_metrics.position.load(Ordering::Relaxed),
        acknowledged
    );
    assert_eq!(active_metrics.state(), LinkState::Up);
    assert_eq!(standby_metrics.state(), LinkState::Up);
    let mut text = String::new();
    active_metrics.render("plant-a", &mut text);
    assert!(
        text.contains("scl_replication_state{site=\"plant-a\",role=\"active\",state=\"up\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "scl_replication_position{{site=\"plant-a\",role=\"active\"}} {acknowledged}"
        )),
        "{text}"
    );
    let mut text = String::new();
    standby_metrics.render("plant-a", &mut text);
    assert!(
        text.contains("scl_replication_state{site=\"plant-a\",role=\"standby\",state=\"up\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("scl_replication_takeovers_total{site=\"plant-a\",role=\"standby\"} 0"),
        "{text}"
    );

    // The active goes silent: the standby takes over with a raised epoch.
    active.close_and_wait().expect("close");
    let ended = standby_thread
        .join()
        .expect("standby thread")
        .expect("standby");
    assert_eq!(ended, StandbyEnd::TakeOver { epoch: 1 });
    assert_eq!(standby.epoch().expect("epoch"), 1);
    assert_eq!(standby_metrics.takeovers.load(Ordering::Relaxed), 1);
    assert_eq!(standby_metrics.epoch.load(Ordering::Relaxed), 1);
    assert_eq!(standby.stats().expect("stats").queued, 150 + 400 - 1);

    // A node that still thinks it is active with epoch 0 is fenced by the new active.
    let stop_answering = Arc::new(AtomicBool::new(false));
    let answering = {
        let (listener, stop_answering) = (Arc::clone(&listener), Arc::clone(&stop_answering));
        std::thread::spawn(move || {
            let metrics = LinkMetrics::default();
            answer_as_active(
                &listener,
                1,
                false,
                &auth(TOKEN),
                &metrics,
                &stop_answering,
                &|_| panic!("the new active must not be fenced by an older epoch"),
            );
        })
    };
    assert_eq!(
        replication::probe(&link_address, Duration::from_secs(5), &auth(TOKEN)),
        Some((true, 1, false))
    );
    // Without the token a probe learns nothing.
    assert_eq!(
        replication::probe(&link_address, Duration::from_secs(5), &auth("scl_wrong")),
        None
    );
    let stale_dir = tempfile::tempdir().expect("dir");
    let stale = Saf::open(SafConfig::new(stale_dir.path())).expect("stale");
    let mut stale_status = start_link(
        &stale,
        LinkConfig {
            site: "plant-a".to_owned(),
            peer: link_address,
            epoch: 0,
            primary: true,
            sync: true,
            ack_timeout: Duration::from_secs(5),
            auth: auth(TOKEN),
            metrics: Arc::new(LinkMetrics::default()),
        },
    )
    .expect("link");
    let fenced = wait_status(&mut stale_status, "the stale active to be fenced", |s| {
        matches!(s, LinkStatus::Fenced { .. })
    });
    assert_eq!(fenced, LinkStatus::Fenced { peer_epoch: 1 });
    // Fenced, its buffer still acknowledges locally (the node exits; this test only checks
    // that the writer is not held).
    stale
        .enqueue_blocking(message(9))
        .expect("enqueue after fencing");
    stop_answering.store(true, std::sync::atomic::Ordering::SeqCst);
    answering.join().expect("answering");
}

/// A peer that does not hold the site's token is refused at the handshake: nothing it sends
/// reaches the standby's buffer, the refusal is counted, and the standby still takes over
/// (the impostor's connection is no sign of life of the active).
#[test]
fn a_peer_without_the_sites_token_is_refused_and_writes_nothing() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let impostor_dir = tempfile::tempdir().expect("dir");
    let standby_dir = tempfile::tempdir().expect("dir");
    let impostor = Saf::open(SafConfig::new(impostor_dir.path())).expect("impostor");
    let standby = Saf::open(SafConfig::new(standby_dir.path())).expect("standby");
    let planted: Vec<String> = (0..20)
        .map(|n| impostor.enqueue_blocking(message(n)).expect("enqueue").id)
        .collect();

    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").expect("bind"));
    let link_address = listener.local_addr().expect("addr").to_string();
    let standby_metrics = Arc::new(LinkMetrics::default());
    let stop = Arc::new(AtomicBool::new(false));
    let standby_thread = {
        let (listener, standby, stop) = (Arc::clone(&listener), standby.clone(), Arc::clone(&stop));
        let metrics = Arc::clone(&standby_metrics);
        std::thread::spawn(move || {
            let config = StandbyConfig {
                site: "plant-a".to_owned(),
                primary: false,
                takeover_after: Duration::from_millis(2500),
                auth: auth(TOKEN),
                metrics,
                witness: None,
            };
            run_standby(&listener, &standby, &config, &stop)
        })
    };
    let impostor_metrics = Arc::new(LinkMetrics::default());
    let mut status = start_link(
        &impostor,
        LinkConfig {
            site: "plant-a".to_owned(),
            peer: link_address.clone(),
            epoch: 7,
            primary: true,
            sync: true,
            ack_timeout: Duration::from_secs(5),
            auth: auth("scl_not-the-token"),
            metrics: Arc::clone(&impostor_metrics),
        },
    )
    .expect("link");
    // The link retries every second: wait for at least two refusals.
    let deadline = Instant::now() + Duration::from_secs(20);
    while standby_metrics.refused.load(Ordering::Relaxed) < 2 {
        assert!(Instant::now() < deadline, "the impostor was never refused");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A raw peer that skips the handshake and sends a batch straight away is refused too.
    {
        use std::io::Write as _;
        let mut raw = std::net::TcpStream::connect(&link_address).expect("connect");
        let mut frame = Vec::new();
        frame.extend_from_slice(&9u32.to_be_bytes());
        frame.extend_from_slice(&[replication::PROTOCOL_VERSION, 7, 0, 0, 0, 1, 2, 3, 4]);
        let _ = raw.write_all(&frame);
        let refused = standby_metrics.refused.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(10);
        while standby_metrics.refused.load(Ordering::Relaxed) == refused {
            assert!(Instant::now() < deadline, "the raw peer was never refused");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(*status.borrow_and_update(), LinkStatus::Down);
    assert_eq!(impostor_metrics.state(), LinkState::Down);
    // Nothing reached the standby: no snapshot, no epoch, no message.
    assert!(!standby.replica_complete().expect("meta"));
    assert_eq!(standby.epoch().expect("epoch"), 0);
    assert_eq!(standby.stats().expect("stats").queued, 0);
    for id in &planted {
        assert!(standby.status(id).expect("read").is_none(), "{id} planted");
    }
    assert_eq!(standby_metrics.state(), LinkState::Down);
    let mut text = String::new();
    standby_metrics.render("plant-a", &mut text);
    assert!(
        text.contains("scl_replication_refused_total{site=\"plant-a\",role=\"standby\"}"),
        "{text}"
    );
    stop.store(true, Ordering::SeqCst);
    assert_eq!(
        standby_thread.join().expect("thread").expect("standby"),
        StandbyEnd::Stopped
    );
    impostor.close_and_wait().expect("close");
}

/// With a witness, a silent active is taken over only when the witness cannot reach it
/// either; while it can, the standby holds back (and says why), however long the silence.
#[test]
fn a_standby_holds_back_while_its_witness_reaches_the_active() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let active_dir = tempfile::tempdir().expect("dir");
    let standby_dir = tempfile::tempdir().expect("dir");
    let active = Saf::open(SafConfig::new(active_dir.path())).expect("active");
    let standby = Saf::open(SafConfig::new(standby_dir.path())).expect("standby");
    active.enqueue_blocking(message(1)).expect("enqueue");
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0").expect("bind"));
    let link_address = listener.local_addr().expect("addr").to_string();
    let metrics = Arc::new(LinkMetrics::default());
    // 0: the witness reaches the active; 1: it does not; 2: it cannot be asked.
    let verdict = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let asked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let standby_thread = {
        let (listener, standby, stop) = (Arc::clone(&listener), standby.clone(), Arc::clone(&stop));
        let (metrics, verdict, asked) = (
            Arc::clone(&metrics),
            Arc::clone(&verdict),
            Arc::clone(&asked),
        );
        std::thread::spawn(move || {
            let config = StandbyConfig {
                site: "plant-a".to_owned(),
                primary: false,
                takeover_after: Duration::from_millis(400),
                auth: auth(TOKEN),
                metrics,
                witness: Some(Witness {
                    ask: Arc::new(move || {
                        asked.fetch_add(1, Ordering::SeqCst);
                        match verdict.load(Ordering::SeqCst) {
                            0 => WitnessVerdict::ActiveAlive,
                            1 => WitnessVerdict::ActiveGone,
                            _ => WitnessVerdict::NoAnswer,
                        }
                    }),
                    takeover_without_answer: false,
                }),
            };
            run_standby(&listener, &standby, &config, &stop)
        })
    };
    let mut status = start_link(
        &active,
        LinkConfig {
            site: "plant-a".to_owned(),
            peer: link_address,
            epoch: 0,
            primary: true,
            sync: true,
            ack_timeout: Duration::from_secs(5),
            auth: auth(TOKEN),
            metrics: Arc::new(LinkMetrics::default()),
        },
    )
    .expect("link");
    wait_status(&mut status, "the standby to be current", |s| {
        s == LinkStatus::Up
    });
    active.close_and_wait().expect("close");
    // Silent for many takeover times, but the witness reaches the active.
    let deadline = Instant::now() + Duration::from_secs(20);
    while asked.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "the witness was never asked");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !standby_thread.is_finished(),
        "took over although the active is alive"
    );
    assert_eq!(metrics.held(), Some(TakeoverHeld::ActiveAlive));
    assert_eq!(standby.epoch().expect("epoch"), 0);
    // The witness cannot be asked and takeover_without_witness is false: still held.
    verdict.store(2, Ordering::SeqCst);
    let asked_before = asked.load(Ordering::SeqCst);
    while asked.load(Ordering::SeqCst) < asked_before + 2 {
        assert!(Instant::now() < deadline, "the witness was not asked again");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !standby_thread.is_finished(),
        "took over without the witness"
    );
    assert_eq!(metrics.held(), Some(TakeoverHeld::NoWitness));
    // The witness cannot reach the active either: take over.
    verdict.store(1, Ordering::SeqCst);
    let ended = standby_thread.join().expect("thread").expect("standby");
    assert_eq!(ended, StandbyEnd::TakeOver { epoch: 1 });
    assert_eq!(metrics.held(), None);
    assert_eq!(metrics.takeovers.load(Ordering::Relaxed), 1);
}
