//! `CachedCall` through the real store-and-forward engine (LMDB in a temporary directory,
//! the real forwarder) to our counting server, where attempts are counted: a peer that is
//! down and comes back gets each call exactly once per id; every attempt carries the same
//! `Idempotency-Key`; `Retry-After` is honoured; calls are parked after the last retry;
//! Standard Webhooks signatures verify with independent implementations (HMAC written out
//! here from RFC 2104 over `sha2`, and the Python helper of the module's documentation);
//! an oversized payload never reaches the peer.

mod external_support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use scl_runtime::external::{ExternalCallDeliverer, ReqwestTransport, SafOutbox};
use scl_runtime::saf::{Category, Deliverers, Forwarder, ForwarderConfig, Saf, SafConfig, Status};
use scl_stdlib::external::{
    Authentication, BaseUrl, CallMode, DeliveryStatus, ErrorCode, ExternalSystemModule,
    ExternalSystems, FailureKind, HttpVerb, PathTemplate, RetryBackoff, RetrySettings, Secret,
    SigningSecret, SystemConfig,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use external_support::{Answer, CountingServer, MemoryEventLog, await_condition, runtime};

const OLD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW_SECRET: &str = "whsec_c2VjcmV0LWtleS1mb3ItdGhlLXJvdGF0aW9uLXRlc3Q=";
const DEADLINE: Duration = Duration::from_secs(30);

struct Site {
    runtime: tokio::runtime::Runtime,
    server: CountingServer,
    module: ExternalSystemModule,
    saf: Saf,
    events: Arc<MemoryEventLog>,
    forwarder: Option<Forwarder>,
    _dir: tempfile::TempDir,
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(forwarder) = self.forwarder.take() {
            self.runtime
                .block_on(forwarder.shutdown(Duration::from_secs(5)));
        }
    }
}

/// The counting server's system `Peer`, retrying every `interval` up to `max_retries`
/// times, with whatever `adjust` changes.
fn site(
    server: CountingServer,
    runtime: tokio::runtime::Runtime,
    adjust: impl FnOnce(&mut SystemConfig),
) -> Site {
    let mut config = SystemConfig::new("Peer", BaseUrl::parse(&server.url()).unwrap())
        .with_method(
            "Push",
            HttpVerb::Post,
            PathTemplate::parse("/push").unwrap(),
        )
        .with_method(
            "Busy",
            HttpVerb::Post,
            PathTemplate::parse("/busy").unwrap(),
        )
        .with_method(
            "Order",
            HttpVerb::Get,
            PathTemplate::parse("/orders/{id}").unwrap(),
        );
    config.timeout = Duration::from_secs(5);
    config.authentication = Authentication::api_key("X-Api-Key", Secret::new("peer-key")).unwrap();
    config.retry = RetrySettings {
        max_retries: 100,
        backoff: RetryBackoff::Fixed(Duration::from_millis(100)),
    };
    adjust(&mut config);
    let mut systems = ExternalSystems::default();
    systems.insert(config);
    let systems = Arc::new(systems);
    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path().join("saf"))).unwrap();
    let events = Arc::new(MemoryEventLog::default());
    let transport = ReqwestTransport::new(runtime.handle().clone(), &systems).unwrap();
    let deliverer = ExternalCallDeliverer::new(systems.clone(), transport.clone(), events.clone());
    let forwarder = {
        let _inside = runtime.enter();
        Forwarder::start(
            saf.clone(),
            Deliverers::default().with(Category::ExternalCall, deliverer),
            ForwarderConfig::default(),
        )
        .unwrap()
    };
    let module = ExternalSystemModule::new(
        systems,
        Arc::new(transport),
        Arc::new(SafOutbox::new(saf.clone(), runtime.handle().clone())),
        events.clone(),
    );
    Site {
        runtime,
        server,
        module,
        saf,
        events,
        forwarder: Some(forwarder),
        _dir: dir,
    }
}

fn status_of(saf: &Saf, id: &str) -> Option<Status> {
    saf.status(id).unwrap().map(|report| report.status)
}

#[test]
fn a_peer_that_is_down_and_comes_back_gets_every_call_exactly_once_per_id() {
    let runtime = runtime();
    let server = CountingServer::stopped(&runtime);
    let mut site = site(server, runtime, |_| {});
    let mut ids = BTreeSet::new();
    for reading in 0..20 {
        let delivery = site
            .module
            .cached_call("Peer", "Push", &json!({"asset": "P1", "reading": reading}))
            .unwrap();
        assert_eq!(
            delivery.status,
            DeliveryStatus::Buffered,
            "peer down: buffered"
        );
        assert!(
            site.saf.status(&delivery.id).unwrap().is_some(),
            "on disk when it returns"
        );
        ids.insert(delivery.id);
    }
    assert!(site.server.requests().is_empty());

    let Site {
        server, runtime, ..
    } = &mut site;
    server.resume(runtime);
    await_condition("every buffered call is delivered", DEADLINE, || {
        ids.iter()
            .all(|id| status_of(&site.saf, id) == Some(Status::Delivered))
    });

    let accepted = site.server.accepted_by_key();
    assert_eq!(accepted.keys().cloned().collect::<BTreeSet<_>>(), ids);
    assert!(accepted.values().all(|count| *count == 1), "{accepted:?}");
    let readings: BTreeSet<i64> = site
        .server
        .requests_to("/push")
        .iter()
        .map(|request| {
            serde_json::from_slice::<serde_json::Value>(&request.body).unwrap()["reading"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(readings, (0..20).collect());
    assert!(
        site.server
            .requests()
            .iter()
            .all(|r| r.header("x-api-key") == Some("peer-key"))
    );
}

#[test]
fn every_attempt_carries_the_same_id_and_the_call_is_parked_after_the_last_retry() {
    let runtime = runtime();
    let server = CountingServer::start(&runtime);
    server.default_answer("/busy", Answer::status(503));
    let site = site(server, runtime, |config| {
        config.retry = RetrySettings {
            max_retries: 2,
            backoff: RetryBackoff::Fixed(Duration::from_millis(50)),
        };
    });
    let delivery = site
        .module
        .cached_call("Peer", "Busy", &json!({"n": 1}))
        .unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Buffered);
    await_condition("the call is parked", DEADLINE, || {
        status_of(&site.saf, &delivery.id) == Some(Status::Parked)
    });
    let requests = site.server.requests_to("/busy");
    assert_eq!(requests.len(), 3, "the first attempt and two retries");
    for request in &requests {
        assert_eq!(
            request.header("idempotency-key"),
            Some(delivery.id.as_str())
        );
        assert_eq!(
            request.body, requests[0].body,
            "the same content on every attempt"
        );
    }
    let report = site.saf.status(&delivery.id).unwrap().unwrap();
    assert_eq!((report.attempts, report.attempts_remaining), (3, 0));
    assert!(report.last_error.unwrap().contains("HTTP 503"));
}

#[test]
fn retry_after_is_honoured_and_reported() {
    let runtime = runtime();
    let server = CountingServer::start(&runtime);
    server.queue(
        "/busy",
        [
            Answer::status(429).header("retry-after", "1"),
            Answer::status(200),
        ],
    );
    let site = site(server, runtime, |config| {
        // Without the peer's Retry-After the retry would come an hour later.
        config.retry = RetrySettings {
            max_retries: 3,
            backoff: RetryBackoff::Fixed(Duration::from_secs(3600)),
        };
    });
    let delivery = site.module.cached_call("Peer", "Busy", &json!({})).unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Buffered);
    await_condition("the retry after Retry-After delivers", DEADLINE, || {
        status_of(&site.saf, &delivery.id) == Some(Status::Delivered)
    });
    let requests = site.server.requests_to("/busy");
    assert_eq!(requests.len(), 2);
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(
        gap >= Duration::from_millis(900),
        "retried after {gap:?}, before the peer's 1 s"
    );

    site.server
        .queue("/busy", [Answer::status(429).header("retry-after", "7")]);
    let error = site.module.call("Peer", "Busy", &json!({})).unwrap_err();
    assert_eq!(
        (error.kind, error.status),
        (FailureKind::Transient, Some(429))
    );
    assert_eq!(error.retry_after, Some(Duration::from_secs(7)));
}

#[test]
fn a_permanent_failure_on_a_retry_parks_the_call_and_is_logged() {
    let runtime = runtime();
    let server = CountingServer::start(&runtime);
    server.queue("/busy", [Answer::status(503), Answer::status(422)]);
    let site = site(server, runtime, |_| {});
    let delivery = site.module.cached_call("Peer", "Busy", &json!({})).unwrap();
    await_condition("the call is parked", DEADLINE, || {
        status_of(&site.saf, &delivery.id) == Some(Status::Parked)
    });
    assert_eq!(site.server.requests_to("/busy").len(), 2);
    let events = site.events.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].mode, CallMode::Retry);
    assert_eq!(events[0].delivery_id.as_deref(), Some(delivery.id.as_str()));
    assert_eq!(events[0].error.status, Some(422));
}

#[test]
fn path_parameters_are_url_encoded_on_the_wire() {
    let runtime = runtime();
    let server = CountingServer::start(&runtime);
    let site = site(server, runtime, |_| {});
    site.module
        .call("Peer", "Order", &json!({"id": "A/1 ü?", "q": "x&y"}))
        .unwrap();
    let request = &site.server.requests()[0];
    assert_eq!(request.path, "/orders/A%2F1%20%C3%BC%3F");
    assert_eq!(request.query.as_deref(), Some("q=x%26y"));
    assert_eq!(request.method, "GET");
    assert!(request.body.is_empty());
}

#[test]
fn an_oversized_payload_is_a_permanent_error_before_any_attempt() {
    let runtime = runtime();
    let server = CountingServer::start(&runtime);
    let site = site(server, runtime, |config| config.max_payload_bytes = 100);
    let big = json!({"text": "x".repeat(200)});
    for result in [
        site.module.cached_call("Peer", "Push", &big).map(|_| ()),
        site.module.call("Peer", "Push", &big).map(|_| ()),
    ] {
        let error = result.unwrap_err();
        assert_eq!(
            (error.kind, error.code),
            (FailureKind::Permanent, ErrorCode::PayloadTooLarge)
        );
        assert!(error.message.contains("limit of 100 bytes"), "{error}");
    }
    assert!(
        site.server.requests().is_empty(),
        "nothing reached the peer"
    );
    assert_eq!(site.saf.stats().unwrap().queued, 0, "nothing was buffered");
    assert_eq!(site.events.events().len(), 2, "both were logged");
    // Just under the limit goes through.
    site.module
        .call("Peer", "Push", &json!({"text": "x".repeat(80)}))
        .unwrap();
}

/// HMAC-SHA256 written out from RFC 2104, independent of the `hmac` crate the module uses.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = block.iter().map(|byte| byte ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|byte| byte ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&inner_pad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&outer_pad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn expected_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, &content))
    )
}

/// The Python helper of docs/modules/external-system.md, run on a recorded request.
fn python_helper_accepts(secrets: &[&str], request: &external_support::Recorded) -> bool {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/modules/external-system.md"
    ))
    .expect("docs/modules/external-system.md");
    let start = docs
        .find("```python\n")
        .expect("a python block in the docs")
        + "```python\n".len();
    let helper = &docs[start..start + docs[start..].find("```").unwrap()];
    let input = json!({
        "secrets": secrets,
        "headers": request.headers,
        "body": base64::engine::general_purpose::STANDARD.encode(&request.body),
    });
    let script = format!(
        "{helper}\nimport base64, json, sys\ndata = json.loads(sys.argv[1])\n\
         print(verify_webhook(data['secrets'], data['headers'], base64.b64decode(data['body'])))\n"
    );
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(input.to_string())
        .output()
        .expect("python3 runs (tests/run.sh needs it for httpbin too)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    match String::from_utf8_lossy(&output.stdout).trim() {
        "True" => true,
        "False" => false,
        other => panic!("the helper printed {other}"),
    }
}

#[test]
fn signatures_verify_independently_on_every_attempt_with_either_secret() {
    let runtime = runtime();
    let server = CountingServer::start(&runtime);
    server.queue("/push", [Answer::status(503), Answer::status(204)]);
    let site = site(server, runtime, |config| {
        config.signing_secrets = vec![
            SigningSecret::parse(NEW_SECRET).unwrap(),
            SigningSecret::parse(OLD_SECRET).unwrap(),
        ];
    });
    let delivery = site
        .module
        .cached_call(
            "Peer",
            "Push",
            &json!({"asset": "P1", "value": 2.5, "note": "ü"}),
        )
        .unwrap();
    await_condition("the signed call is delivered", DEADLINE, || {
        status_of(&site.saf, &delivery.id) == Some(Status::Delivered)
    });
    let requests = site.server.requests_to("/push");
    assert_eq!(requests.len(), 2);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for request in &requests {
        let id = request.header("webhook-id").unwrap();
        let timestamp = request.header("webhook-timestamp").unwrap();
        assert_eq!(id, delivery.id, "webhook-id is the delivery id");
        assert_eq!(request.header("idempotency-key"), Some(id));
        assert!((timestamp.parse::<i64>().unwrap() - now).abs() < 60);
        let signatures: Vec<&str> = request
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .collect();
        assert_eq!(
            signatures,
            [
                expected_signature(NEW_SECRET, id, timestamp, &request.body),
                expected_signature(OLD_SECRET, id, timestamp, &request.body)
            ]
        );
        assert!(python_helper_accepts(&[OLD_SECRET], request));
        assert!(python_helper_accepts(&[NEW_SECRET], request));
        let mut tampered = request.clone();
        tampered.body.push(b' ');
        assert!(!python_helper_accepts(&[OLD_SECRET, NEW_SECRET], &tampered));
    }
}

#[test]
fn call_mode_returns_transient_failures_without_buffering() {
    let runtime = runtime();
    let server = CountingServer::stopped(&runtime);
    let site = site(server, runtime, |_| {});
    let error = site.module.call("Peer", "Push", &json!({})).unwrap_err();
    assert_eq!(
        (error.kind, error.code),
        (FailureKind::Transient, ErrorCode::Connection)
    );
    assert_eq!(site.saf.stats().unwrap().queued, 0);
    assert!(
        site.events.events().is_empty(),
        "transient failures are the script's to handle"
    );
}
