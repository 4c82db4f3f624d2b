//! Store-and-forward buffer on real LMDB in temp directories: durable enqueue, idempotency,
//! status lookups, map growth, restart, listing, export/import, discard and pruning.

mod saf_support;

use std::io::BufReader;
use std::time::Duration;

use scl_runtime::saf::{
    Attempt, AttemptOutcome, Category, ListFilter, NewMessage, RetryPolicy, Saf, SafConfig,
    SafError, Selector, Status, block_on, now_ms,
};
use serde_json::json;

fn policy() -> RetryPolicy {
    RetryPolicy::fixed(3, Duration::from_secs(30))
}

fn message(target: &str, n: usize) -> NewMessage {
    NewMessage::new(Category::ExternalCall, target, &json!({ "n": n }), policy()).unwrap()
}

#[test]
fn enqueue_is_durable_and_status_is_a_point_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    let enqueued = saf.enqueue_blocking(message("MES/PostReading", 1)).unwrap();
    assert!(!enqueued.duplicate);
    assert_eq!(enqueued.status, Status::Pending);
    assert_eq!(enqueued.id.len(), 36, "a generated UUIDv7");

    let report = saf.status(&enqueued.id).unwrap().expect("buffered");
    assert_eq!(report.status, Status::Pending);
    assert_eq!(report.category, Category::ExternalCall);
    assert_eq!(report.target, "MES/PostReading");
    assert_eq!(report.attempts, 0);
    assert_eq!(report.attempts_remaining, 4);
    assert!(report.next_attempt_at_ms.is_some());
    assert!(saf.status("no-such-id").unwrap().is_none());

    let shown = saf.show(&enqueued.id).unwrap().unwrap();
    assert_eq!(shown.payload.get(), r#"{"n":1}"#);

    // Acknowledged means on disk: close and reopen, it is still there.
    saf.close_and_wait().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    assert_eq!(
        saf.status(&enqueued.id).unwrap().unwrap().status,
        Status::Pending
    );
    assert_eq!(saf.stats().unwrap().queued, 1);
}

#[test]
fn a_caller_given_id_is_an_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    let first = saf
        .enqueue_blocking(message("MES/PostReading", 1).with_id("reading-42"))
        .unwrap();
    assert_eq!(first.id, "reading-42");
    assert!(!first.duplicate);
    let again = saf
        .enqueue_blocking(message("MES/PostReading", 2).with_id("reading-42"))
        .unwrap();
    assert!(again.duplicate);
    let kept = saf.show("reading-42").unwrap().unwrap();
    assert_eq!(
        kept.payload.get(),
        r#"{"n":1}"#,
        "the first message is kept"
    );
    assert_eq!(saf.stats().unwrap().queued, 1);
}

#[test]
fn bad_input_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SafConfig::new(dir.path());
    config.max_payload_bytes = 100;
    let saf = Saf::open(config).unwrap();
    let too_big = NewMessage::new(Category::Webhook, "hook", &"x".repeat(200), policy()).unwrap();
    assert!(matches!(
        saf.enqueue_blocking(too_big),
        Err(SafError::PayloadTooLarge {
            size: 202,
            limit: 100
        })
    ));
    assert!(matches!(
        saf.enqueue_blocking(message("bad\0target", 1)),
        Err(SafError::InvalidInput(_))
    ));
    assert!(matches!(
        saf.enqueue_blocking(message("", 1)),
        Err(SafError::InvalidInput(_))
    ));
    assert!(matches!(
        saf.enqueue_blocking(message("t", 1).with_id("x".repeat(300))),
        Err(SafError::InvalidInput(_))
    ));
    assert_eq!(saf.stats().unwrap().queued, 0);
}

#[test]
fn opening_the_same_directory_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    assert!(matches!(
        Saf::open(SafConfig::new(dir.path())),
        Err(SafError::AlreadyOpen { .. })
    ));
}

#[test]
fn a_prior_failed_attempt_starts_the_message_as_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    let failed = Attempt::new(
        now_ms(),
        AttemptOutcome::Transient,
        Some(503),
        Some("HTTP 503".into()),
        Duration::from_millis(12),
    );
    let id = saf
        .enqueue_blocking(message("MES/PostReading", 1).with_prior_attempt(failed, None))
        .unwrap()
        .id;
    let report = saf.status(&id).unwrap().unwrap();
    assert_eq!(report.status, Status::Retrying);
    assert_eq!(report.attempts, 1);
    assert_eq!(report.attempts_remaining, 3);
    assert_eq!(report.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(report.history.len(), 1);
    assert_eq!(report.history[0].status_code, Some(503));
    // Retry 1 waits the policy interval (30 s) give or take the jitter.
    let wait = report.next_attempt_at_ms.unwrap() - report.updated_at_ms;
    assert!((26_000..=34_000).contains(&wait), "waits {wait} ms");

    // With no retries allowed, the failed first attempt parks the message at once.
    let failed = Attempt::new(
        now_ms(),
        AttemptOutcome::Transient,
        None,
        Some("refused".into()),
        Duration::ZERO,
    );
    let no_retries = NewMessage::new(
        Category::Notification,
        "Operators",
        &json!({}),
        RetryPolicy::fixed(0, Duration::from_secs(1)),
    )
    .unwrap()
    .with_prior_attempt(failed, None);
    let id = saf.enqueue_blocking(no_retries).unwrap().id;
    assert_eq!(saf.status(&id).unwrap().unwrap().status, Status::Parked);
}

#[test]
fn the_map_grows_past_its_initial_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SafConfig::new(dir.path());
    config.initial_map_size = 1 << 20;
    let saf = Saf::open(config.clone()).unwrap();
    let initial = saf.stats().unwrap().map_size;
    assert!(initial <= 1 << 20);
    let blob = "x".repeat(10_000);
    let mut ids = Vec::new();
    // 2,000 messages of 10 kB: 20 MB, twenty times the initial map, from 8 producers.
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|producer| {
                let saf = saf.clone();
                let blob = &blob;
                scope.spawn(move || {
                    (0..250)
                        .map(|n| {
                            let new = NewMessage::new(
                                Category::CachedWrite,
                                "Historian",
                                &json!({ "sql": "INSERT", "params": [producer, n, blob] }),
                                policy(),
                            )
                            .unwrap();
                            saf.enqueue_blocking(new)
                                .expect("enqueue while the map grows")
                                .id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            ids.extend(handle.join().unwrap());
        }
    });
    let stats = saf.stats().unwrap();
    assert_eq!(stats.queued, 2000);
    assert!(stats.map_size >= 20 << 20, "map grew to {}", stats.map_size);
    assert!(
        stats.file_size >= 20_000_000,
        "file is {} bytes",
        stats.file_size
    );
    saf.close_and_wait().unwrap();

    // Reopening with the small configured size keeps everything readable.
    let saf = Saf::open(config).unwrap();
    assert_eq!(saf.stats().unwrap().queued, 2000);
    for id in &ids {
        assert_eq!(saf.status(id).unwrap().unwrap().status, Status::Pending);
    }
    saf.enqueue_blocking(message("after-reopen", 1)).unwrap();
}

#[test]
fn list_filters_by_status_category_target_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    let before = now_ms();
    for n in 0..5 {
        saf.enqueue_blocking(message("A", n)).unwrap();
        saf.enqueue_blocking(message("B", n)).unwrap();
    }
    let note = NewMessage::new(Category::Notification, "Operators", &json!({}), policy()).unwrap();
    saf.enqueue_blocking(note).unwrap();

    let all = saf.list(&ListFilter::default()).unwrap();
    assert_eq!(all.len(), 11);
    let only_a = saf
        .list(&ListFilter {
            target: Some("A".into()),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(only_a.len(), 5);
    assert!(only_a.iter().all(|report| report.target == "A"));
    let notes = saf
        .list(&ListFilter {
            category: Some(Category::Notification),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(notes.len(), 1);
    let limited = saf
        .list(&ListFilter {
            limit: Some(3),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(limited.len(), 3);
    let parked = saf.list(&ListFilter::status(Status::Parked)).unwrap();
    assert!(parked.is_empty());
    let future = saf
        .list(&ListFilter {
            created_from_ms: Some(now_ms() + 60_000),
            ..ListFilter::default()
        })
        .unwrap();
    assert!(future.is_empty());
    let window = saf
        .list(&ListFilter {
            created_from_ms: Some(before),
            created_before_ms: Some(now_ms() + 1),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(window.len(), 11);
}

#[test]
fn export_and_import_round_trip() {
    let source_dir = tempfile::tempdir().unwrap();
    let source = Saf::open(SafConfig::new(source_dir.path())).unwrap();
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(
            source
                .enqueue_blocking(message("MES/PostReading", n))
                .unwrap()
                .id,
        );
    }
    // Park a few through the permanent path, discard one.
    let failed = Attempt::new(
        now_ms(),
        AttemptOutcome::Transient,
        Some(503),
        None,
        Duration::ZERO,
    );
    let parked_id = source
        .enqueue_blocking(
            NewMessage::new(
                Category::Webhook,
                "hook",
                &json!({"p": 1}),
                RetryPolicy::fixed(0, Duration::ZERO),
            )
            .unwrap()
            .with_id("parked-one")
            .with_prior_attempt(failed, None),
        )
        .unwrap()
        .id;
    assert_eq!(
        block_on(source.discard(Selector::Id(ids[0].clone()))).unwrap(),
        1
    );

    let mut exported = Vec::new();
    let count = source
        .export_jsonl(&ListFilter::default(), &mut exported)
        .unwrap();
    assert_eq!(count, 31);
    let text = String::from_utf8(exported.clone()).unwrap();
    assert_eq!(text.lines().count(), 31);

    let target_dir = tempfile::tempdir().unwrap();
    let target = Saf::open(SafConfig::new(target_dir.path())).unwrap();
    let report = block_on(target.import_jsonl(&mut BufReader::new(exported.as_slice()))).unwrap();
    assert_eq!(report.imported, 31);
    assert_eq!(report.skipped_existing, 0);
    for id in ids.iter().chain([&parked_id]) {
        let original = source.show(id).unwrap().unwrap();
        let copy = target.show(id).unwrap().unwrap();
        assert_eq!(
            serde_json::to_string(&original).unwrap(),
            serde_json::to_string(&copy).unwrap()
        );
    }
    assert_eq!(target.stats().unwrap(), {
        let mut stats = source.stats().unwrap();
        let target_stats = target.stats().unwrap();
        stats.map_size = target_stats.map_size;
        stats.file_size = target_stats.file_size;
        stats
    });

    // Importing again changes nothing; a bad line names its number.
    let again = block_on(target.import_jsonl(&mut BufReader::new(exported.as_slice()))).unwrap();
    assert_eq!(again.imported, 0);
    assert_eq!(again.skipped_existing, 31);
    let broken = format!("{}\nnot json\n", text.lines().next().unwrap());
    match block_on(target.import_jsonl(&mut BufReader::new(broken.as_bytes()))) {
        Err(SafError::Import { line: 2, .. }) => {}
        other => panic!("expected an import error on line 2, got {other:?}"),
    }

    // Export of parked only.
    let mut parked_only = Vec::new();
    assert_eq!(
        target
            .export_jsonl(&ListFilter::status(Status::Parked), &mut parked_only)
            .unwrap(),
        1
    );
}

#[test]
fn discard_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    let ids: Vec<String> = (0..10)
        .map(|n| saf.enqueue_blocking(message("T", n)).unwrap().id)
        .collect();
    // Discard by filter: pending messages of target T.
    let filter = ListFilter {
        statuses: vec![Status::Pending],
        target: Some("T".into()),
        ..ListFilter::default()
    };
    assert_eq!(block_on(saf.discard(Selector::Filter(filter))).unwrap(), 10);
    assert_eq!(saf.stats().unwrap().discarded, 10);
    assert!(matches!(
        block_on(saf.discard(Selector::Id(ids[0].clone()))),
        Err(SafError::WrongStatus { .. })
    ));
    assert!(matches!(
        block_on(saf.retry(Selector::Id(ids[0].clone()))),
        Err(SafError::WrongStatus { .. })
    ));
    assert!(matches!(
        block_on(saf.retry(Selector::Id("missing".into()))),
        Err(SafError::NotFound(_))
    ));
    // Nothing is older than the retention yet.
    assert_eq!(block_on(saf.prune()).unwrap(), 0);
    // Everything discarded before "now + 1 s" goes.
    assert_eq!(block_on(saf.prune_before(now_ms() + 1000)).unwrap(), 10);
    assert!(saf.status(&ids[3]).unwrap().is_none());
    assert_eq!(saf.stats().unwrap().discarded, 0);
}

#[test]
fn closed_buffer_refuses_work() {
    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path())).unwrap();
    let id = saf.enqueue_blocking(message("T", 1)).unwrap().id;
    let other_handle = saf.clone();
    saf.close().unwrap();
    assert!(matches!(
        other_handle.enqueue_blocking(message("T", 2)),
        Err(SafError::Closed)
    ));
    // Reads still work on a closed buffer until the last handle goes.
    assert!(other_handle.status(&id).unwrap().is_some());
}
