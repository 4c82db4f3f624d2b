//! Unit tests of the module's decisions with in-memory ports. The behaviour against real
//! peers is tested in `runtime/tests/external_*.rs`.

use std::sync::Mutex;

use serde_json::json;

use super::*;

/// A transport that answers from a script of results and remembers every request.
#[derive(Default)]
struct ScriptedTransport {
    answers: Mutex<Vec<Result<HttpResponse, TransportError>>>,
    seen: Mutex<Vec<PreparedRequest>>,
}

impl ScriptedTransport {
    fn answering(answer: Result<HttpResponse, TransportError>) -> Arc<ScriptedTransport> {
        Arc::new(ScriptedTransport {
            answers: Mutex::new(vec![answer]),
            seen: Mutex::default(),
        })
    }
}

impl HttpTransport for ScriptedTransport {
    fn send(
        &self,
        _system: &str,
        request: &PreparedRequest,
        _timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        self.seen.lock().unwrap().push(request.clone());
        self.answers
            .lock()
            .unwrap()
            .pop()
            .unwrap_or(Err(TransportError::Timeout))
    }
}

#[derive(Default)]
struct MemoryOutbox {
    buffered: Mutex<Vec<OutboxCall>>,
    delivered: Mutex<Vec<OutboxCall>>,
    refuse: bool,
}

impl Outbox for MemoryOutbox {
    fn new_id(&self) -> String {
        "id-1".to_owned()
    }
    fn buffer(&self, call: OutboxCall) -> Result<BufferedStatus, String> {
        if self.refuse {
            return Err("disk full".to_owned());
        }
        let parked = call.retry.max_retries == 0;
        self.buffered.lock().unwrap().push(call);
        Ok(if parked {
            BufferedStatus::Parked
        } else {
            BufferedStatus::Buffered
        })
    }
    fn record_delivered(&self, call: OutboxCall) {
        self.delivered.lock().unwrap().push(call);
    }
}

#[derive(Default)]
struct MemoryEventLog(Mutex<Vec<FailureEvent>>);

impl EventLog for MemoryEventLog {
    fn permanent_failure(&self, event: &FailureEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

struct Fixture {
    module: ExternalSystemModule,
    transport: Arc<ScriptedTransport>,
    outbox: Arc<MemoryOutbox>,
    events: Arc<MemoryEventLog>,
}

fn fixture(answer: Result<HttpResponse, TransportError>, outbox: MemoryOutbox) -> Fixture {
    let mut config = SystemConfig::new("MES", BaseUrl::parse("http://peer").unwrap()).with_method(
        "Post",
        HttpVerb::Post,
        PathTemplate::parse("/p").unwrap(),
    );
    config.authentication =
        Authentication::api_key("X-Api-Key", Secret::new("s3cret-key")).unwrap();
    let mut systems = ExternalSystems::default();
    systems.insert(config);
    systems.insert_unusable("Broken", "environment variable `BROKEN_KEY` is not set");
    let transport = ScriptedTransport::answering(answer);
    let outbox = Arc::new(outbox);
    let events = Arc::new(MemoryEventLog::default());
    let module = ExternalSystemModule::new(
        Arc::new(systems),
        transport.clone(),
        outbox.clone(),
        events.clone(),
    );
    Fixture {
        module,
        transport,
        outbox,
        events,
    }
}

fn status(code: u16, body: &str) -> Result<HttpResponse, TransportError> {
    Ok(HttpResponse {
        status: code,
        body: body.as_bytes().to_vec(),
        ..HttpResponse::default()
    })
}

#[test]
fn call_returns_the_json_result() {
    let f = fixture(status(200, r#"{"ok":true}"#), MemoryOutbox::default());
    assert_eq!(
        f.module.call("MES", "Post", &json!({"a": 1})).unwrap(),
        json!({"ok": true})
    );
    let seen = f.transport.seen.lock().unwrap();
    assert!(
        seen[0]
            .headers
            .iter()
            .all(|(name, _)| name != "Idempotency-Key")
    );
}

#[test]
fn call_returns_transient_errors_without_logging_them() {
    let f = fixture(status(503, ""), MemoryOutbox::default());
    let error = f.module.call("MES", "Post", &json!({})).unwrap_err();
    assert_eq!(
        (error.kind, error.status),
        (FailureKind::Transient, Some(503))
    );
    assert!(f.events.0.lock().unwrap().is_empty());
}

#[test]
fn permanent_errors_never_show_the_secret_and_are_logged() {
    // A peer that echoes the request headers into its error body.
    let f = fixture(
        status(400, r#"{"headers":{"X-Api-Key":"s3cret-key"}}"#),
        MemoryOutbox::default(),
    );
    let error = f.module.call("MES", "Post", &json!({})).unwrap_err();
    assert_eq!(error.kind, FailureKind::Permanent);
    assert!(!error.message.contains("s3cret-key"), "{}", error.message);
    assert!(error.message.contains("***"));
    let events = f.events.0.lock().unwrap();
    assert_eq!(events.len(), 1);
    assert!(!format!("{:?}", events[0]).contains("s3cret-key"));
}

#[test]
fn cached_call_delivers_records_and_discards_the_response() {
    let f = fixture(status(200, r#"{"ignored":1}"#), MemoryOutbox::default());
    let delivery = f.module.cached_call("MES", "Post", &json!({})).unwrap();
    assert_eq!(
        delivery.to_json(),
        json!({"id": "id-1", "status": "delivered"})
    );
    assert_eq!(f.outbox.delivered.lock().unwrap().len(), 1);
    let seen = f.transport.seen.lock().unwrap();
    let key = seen[0]
        .headers
        .iter()
        .find(|(name, _)| name == "Idempotency-Key");
    assert_eq!(key.map(|(_, value)| value.expose()), Some("id-1"));
}

#[test]
fn cached_call_buffers_transient_failures_with_their_retry_after() {
    let answer = Ok(HttpResponse {
        status: 429,
        retry_after: Some("9".into()),
        ..HttpResponse::default()
    });
    let f = fixture(answer, MemoryOutbox::default());
    let delivery = f
        .module
        .cached_call("MES", "Post", &json!({"v": 1}))
        .unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Buffered);
    let buffered = f.outbox.buffered.lock().unwrap();
    let error = buffered[0].first_attempt.error.clone().unwrap();
    assert_eq!(error.retry_after, Some(Duration::from_secs(9)));
    assert_eq!(buffered[0].call.body.as_deref(), Some(r#"{"v":1}"#));
}

#[test]
fn cached_call_reports_a_buffer_failure_as_an_error() {
    let f = fixture(
        Err(TransportError::Timeout),
        MemoryOutbox {
            refuse: true,
            ..MemoryOutbox::default()
        },
    );
    let error = f.module.cached_call("MES", "Post", &json!({})).unwrap_err();
    assert_eq!(error.code, ErrorCode::BufferFailed);
    assert!(error.message.contains("NOT be buffered"));
}

#[test]
fn cached_call_returns_permanent_failures_without_buffering() {
    let f = fixture(status(404, ""), MemoryOutbox::default());
    let error = f.module.cached_call("MES", "Post", &json!({})).unwrap_err();
    assert_eq!(
        (error.kind, error.status),
        (FailureKind::Permanent, Some(404))
    );
    assert!(f.outbox.buffered.lock().unwrap().is_empty());
    let events = f.events.0.lock().unwrap();
    assert_eq!(events[0].delivery_id.as_deref(), Some("id-1"));
    assert_eq!(events[0].mode, CallMode::CachedCall);
}

#[test]
fn unknown_and_unusable_systems_fail_before_sending() {
    let f = fixture(status(200, ""), MemoryOutbox::default());
    let unknown = f.module.call("Nope", "Post", &json!({})).unwrap_err();
    assert_eq!(unknown.code, ErrorCode::UnknownSystem);
    let method = f.module.call("MES", "Nope", &json!({})).unwrap_err();
    assert_eq!(method.code, ErrorCode::UnknownMethod);
    assert!(method.message.contains("it has: Post"));
    let broken = f
        .module
        .cached_call("Broken", "Post", &json!({}))
        .unwrap_err();
    assert_eq!(broken.code, ErrorCode::Configuration);
    assert!(f.transport.seen.lock().unwrap().is_empty());
}

#[test]
fn describe_masks_secrets() {
    let f = fixture(status(200, ""), MemoryOutbox::default());
    let text = f
        .module
        .describe(CallMode::CachedCall, "MES", "Post", &json!({"a": 1}))
        .unwrap()
        .to_string();
    assert!(text.starts_with("POST http://peer/p\n"), "{text}");
    assert!(text.contains("X-Api-Key: ***\n"), "{text}");
    assert!(text.contains("Idempotency-Key: id-1\n"), "{text}");
    assert!(text.ends_with("\n{\"a\":1}\n"), "{text}");
    assert!(!text.contains("s3cret-key"));
}

#[test]
fn dry_run_transport_sends_nothing_and_answers_null() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mut systems = ExternalSystems::default();
    systems.insert(
        SystemConfig::new("MES", BaseUrl::parse("http://peer").unwrap()).with_method(
            "Get",
            HttpVerb::Get,
            PathTemplate::parse("/g/{id}").unwrap(),
        ),
    );
    let module = ExternalSystemModule::new(
        Arc::new(systems),
        Arc::new(DryRunTransport::new(move |request| {
            sink.lock().unwrap().push(request)
        })),
        Arc::new(DryRunOutbox::default()),
        Arc::new(NoEventLog),
    );
    assert_eq!(
        module
            .call("MES", "Get", &json!({"id": 4, "q": "a b"}))
            .unwrap(),
        Value::Null
    );
    let delivery = module.cached_call("MES", "Get", &json!({"id": 5})).unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Delivered);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].url, "http://peer/g/4?q=a%20b");
    assert_eq!(seen[1].url, "http://peer/g/5");
}
