//! # Webhooks: outbound event subscriptions
//!
//! The deployment's `[[webhook]]` tables subscribe URLs to runtime events. A node produces an
//! [`Event`] (a stable id `evt_…` made once, a type, a time and a JSON `data` object) where the
//! thing happens — a site when an attribute changes, an alarm is raised or cleared, a script
//! fails or a store-and-forward message is parked; central when an API method's script fails
//! or a bulk job finishes — and [`Webhooks::emit`] turns each matching (event, subscription)
//! pair into one store-and-forward message of category [`Category::Webhook`] in the node's
//! own buffer (a site's buffer, or central's `central/saf`). The message id is
//! `{event id}.{subscription}`, so emitting the same event twice buffers it once.
//!
//! The forwarder delivers it with [`WebhookDeliverer`]: a `POST` of the event's JSON
//! (`{"type", "timestamp", "data"}`) with the Standard Webhooks headers `webhook-id` (the event
//! id, the same on every attempt), `webhook-timestamp` and `webhook-signature` (stdlib's
//! signer), plus the subscription's own headers. 2xx is delivered; 408, 429, 5xx and
//! connection failures are retried on the subscription's policy (honouring `Retry-After`);
//! any other status parks the message at once. Each attempt record keeps the first
//! [`MAX_RESPONSE_BODY_BYTES`] of the response body for the delivery history
//! ([`deliveries`], `GET /admin/webhooks/{name}/deliveries`).
//!
//! Matching happens at production time: the event type, then `instances` and `attributes`,
//! then the optional `filter`, an SCL boolean expression over `event: json` compiled with our
//! own front end and engine as `fn main(event: json) -> bool { return (FILTER); }` (checked
//! when the deployment loads, so a bad filter is an error with its file position).
//!
//! **Secrets:** a subscription's signing secret is read from the environment variable its
//! `secret_env` names and lives only in memory; no log line, error, event or buffered
//! message contains it (a missing or malformed secret is reported by the variable's name).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use scl_compiler::{CallOptions, CompileError, CompileOptions, Engine, Limits, Script};
use scl_lang::checker::{CheckOptions, check};
use scl_lang::modules::ModuleTable;
use scl_stdlib::external::SigningSecret;
use scl_stdlib::external::classify::{StatusClass, classify_status, parse_retry_after};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::deployment::{Deployment, WebhookDef, default_webhook_policy};
use crate::saf::{
    Attempt, AttemptOutcome, Category, Deliverer, DeliveryFuture, DetailedDeliveryFuture,
    ListFilter, MAX_RESPONSE_BODY_BYTES, Message, NewMessage, Outcome, RetryPolicy, Saf, SafError,
    Status, shorten_to,
};
use crate::timelog::rfc3339_ms;

/// The events a subscription can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A site: an instance's attribute changed value.
    AttributeChanged,
    /// A site: an alarm's `when` condition became true.
    AlarmRaised,
    /// A site: an alarm's `when` condition became false again.
    AlarmCleared,
    /// A site (instance and shared scripts) or central (`api` scripts): a run failed.
    ScriptFailed,
    /// A site: a store-and-forward message (CachedCall, notification, cached write) was
    /// parked. Parked webhook deliveries produce no event.
    MessageParked,
    /// Central: a bulk job ended (`COMPLETED`, `FAILED` or `ABORTED`).
    BulkJobFinished,
}

impl EventType {
    /// Every event type, in a fixed order.
    pub const ALL: [EventType; 6] = [
        EventType::AttributeChanged,
        EventType::AlarmRaised,
        EventType::AlarmCleared,
        EventType::ScriptFailed,
        EventType::MessageParked,
        EventType::BulkJobFinished,
    ];

    /// The name used in the deployment file and in payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::AttributeChanged => "attribute_changed",
            EventType::AlarmRaised => "alarm_raised",
            EventType::AlarmCleared => "alarm_cleared",
            EventType::ScriptFailed => "script_failed",
            EventType::MessageParked => "message_parked",
            EventType::BulkJobFinished => "bulk_job_finished",
        }
    }

    /// The event type of a name.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// Every name, for messages.
    pub fn names() -> Vec<&'static str> {
        EventType::ALL.iter().map(|t| t.as_str()).collect()
    }
}

/// One runtime event, made once where it happens.
#[derive(Debug, Clone)]
pub struct Event {
    /// `evt_` and a time-ordered unique id; the `webhook-id` of every delivery of it.
    pub id: String,
    pub event_type: EventType,
    /// RFC 3339 time of production.
    pub timestamp: String,
    /// The event's own fields (an object).
    pub data: Value,
}

impl Event {
    /// A new event with a fresh id.
    pub fn new(event_type: EventType, data: Value) -> Event {
        let now = crate::saf::now_ms();
        Event {
            id: format!("evt_{}", crate::saf::store::new_id(now)),
            event_type,
            timestamp: rfc3339_ms(i64::try_from(now).unwrap_or(i64::MAX)),
            data,
        }
    }

    /// A new event with an id derived from something already unique and stable (a bulk
    /// job's id), so producing it again after a crash buffers nothing twice.
    pub fn with_stable_id(id: String, event_type: EventType, data: Value) -> Event {
        Event {
            id,
            ..Event::new(event_type, data)
        }
    }

    /// The request body: `{"type", "timestamp", "data"}` (Standard Webhooks' payload shape).
    pub fn body(&self) -> String {
        json!({
            "type": self.event_type.as_str(),
            "timestamp": self.timestamp,
            "data": self.data,
        })
        .to_string()
    }

    /// What a filter sees as `event`: the body's fields and the id.
    fn filter_input(&self) -> Value {
        json!({
            "id": self.id,
            "type": self.event_type.as_str(),
            "timestamp": self.timestamp,
            "data": self.data,
        })
    }

    /// The instance the event is about, if any.
    fn instance(&self) -> Option<&str> {
        self.data.get("instance").and_then(Value::as_str)
    }
}

/// The text before a filter expression in the program it is compiled as.
const FILTER_PREFIX: &str = "fn main(event: json) -> bool {\n    return (";

/// The program a filter is compiled as.
fn filter_source(filter: &str) -> String {
    format!("{FILTER_PREFIX}{filter}\n    );\n}}\n")
}

/// Checks a filter expression: every error as (byte offset in the filter text, message).
/// Used when the deployment loads.
pub fn check_filter(filter: &str) -> Vec<(usize, String)> {
    let source = filter_source(filter);
    let parsed = scl_lang::parse(&source);
    let table = ModuleTable::default();
    let options = CheckOptions {
        modules: &table,
        kind: None,
        names: None,
        template: None,
        require_main: true,
    };
    let checked = check(&parsed, &options);
    let mut errors: Vec<(usize, String)> = parsed
        .diagnostics
        .iter()
        .chain(checked.diagnostics.iter())
        .filter(|d| d.is_error())
        .map(|d| {
            let offset = (d.primary.span.start as usize)
                .saturating_sub(FILTER_PREFIX.len())
                .min(filter.len());
            (offset, format!("{} [{}]", d.message, d.code.id))
        })
        .collect();
    // A filter is one expression: text that closes `main` and declares more (functions
    // with loops) is refused, so evaluating a filter stays a short, bounded step.
    if errors.is_empty() && parsed.file.items.len() != 1 {
        errors.push((
            0,
            "a filter is a single boolean expression, not declarations".to_owned(),
        ));
    }
    errors
}

/// Compiles a filter that [`check_filter`] accepted.
fn compile_filter(engine: &Engine, filter: &str) -> Result<Script, String> {
    let options = CompileOptions {
        kind: None,
        require_main: true,
    };
    match engine.compile(&filter_source(filter), &options) {
        Ok(script) => Ok(script),
        Err(CompileError::Diagnostics(diagnostics)) => Err(diagnostics
            .iter()
            .map(|d| d.message.clone())
            .collect::<Vec<_>>()
            .join("; ")),
        Err(other) => Err(other.to_string()),
    }
}

/// One subscription, ready to match and deliver.
struct Subscription {
    name: String,
    url: reqwest::Url,
    events: Vec<EventType>,
    headers: HeaderMap,
    /// The secret, or why there is none usable (names the variable, never a value).
    secret: Option<Result<SigningSecret, String>>,
    policy: RetryPolicy,
    instances: Vec<String>,
    attributes: Vec<String>,
    filter: Option<Script>,
    timeout: Duration,
    enabled: bool,
}

impl Subscription {
    fn build(
        definition: &WebhookDef,
        engine: &Engine,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Subscription, String> {
        let name = definition.name.get_ref().clone();
        let url = reqwest::Url::parse(definition.url.get_ref())
            .map_err(|e| format!("webhook `{name}`: bad url: {e}"))?;
        let mut headers = HeaderMap::new();
        for (header, value) in &definition.headers {
            let header_name = HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| format!("webhook `{name}`: bad header name `{header}`"))?;
            let header_value = HeaderValue::from_str(value)
                .map_err(|_| format!("webhook `{name}`: bad value of header `{header}`"))?;
            headers.insert(header_name, header_value);
        }
        let secret = definition
            .secret_env
            .as_ref()
            .map(|variable| match env(variable) {
                None => Err(format!(
                    "webhook `{name}`: environment variable `{variable}` (secret_env) is not set"
                )),
                Some(text) => SigningSecret::parse(&text).map_err(|problem| {
                    format!("webhook `{name}`: environment variable `{variable}`: {problem}")
                }),
            });
        let policy = match &definition.retry {
            None => default_webhook_policy(),
            Some(retry) => retry
                .get_ref()
                .policy()
                .map_err(|p| format!("webhook `{name}`: retry: {p}"))?,
        };
        let filter = match &definition.filter {
            None => None,
            Some(filter) => Some(
                compile_filter(engine, filter.get_ref())
                    .map_err(|p| format!("webhook `{name}`: filter: {p}"))?,
            ),
        };
        Ok(Subscription {
            url,
            events: definition
                .events
                .iter()
                .filter_map(|e| EventType::parse(e.get_ref()))
                .collect(),
            headers,
            secret,
            policy,
            instances: definition
                .instances
                .iter()
                .map(|i| i.get_ref().clone())
                .collect(),
            attributes: definition
                .attributes
                .iter()
                .map(|a| a.get_ref().clone())
                .collect(),
            filter,
            timeout: Duration::from_secs(definition.timeout_s.max(1)),
            enabled: definition.enabled,
            name,
        })
    }

    /// Whether this subscription wants `event`.
    fn matches(&self, event: &Event) -> bool {
        if !self.enabled || !self.events.contains(&event.event_type) {
            return false;
        }
        if !self.instances.is_empty()
            && !event
                .instance()
                .is_some_and(|i| self.instances.iter().any(|wanted| wanted == i))
        {
            return false;
        }
        if event.event_type == EventType::AttributeChanged && !self.attributes.is_empty() {
            let attribute = event.data.get("attribute").and_then(Value::as_str);
            if !attribute.is_some_and(|a| self.attributes.iter().any(|wanted| wanted == a)) {
                return false;
            }
        }
        let Some(filter) = &self.filter else {
            return true;
        };
        let options = CallOptions {
            limits: Limits {
                timeout: Some(Duration::from_secs(1)),
                heap_bytes: Some(16 << 20),
                ..Limits::default()
            },
            ..CallOptions::default()
        };
        let outcome = filter.call_main_json(&json!({ "event": event.filter_input() }), &options);
        match outcome.result {
            Ok(scl_compiler::Value::Bool(holds)) => holds,
            Ok(_) => false,
            Err(error) => {
                // A filter that fails on an event (a `json` conversion that does not fit)
                // does not select it.
                tracing::debug!(webhook = %self.name, code = %error.code, "webhook filter failed on an event");
                false
            }
        }
    }
}

/// What a webhook message carries in the buffer (no secrets, no headers: those come from
/// the running deployment at each attempt).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct WebhookPayload {
    subscription: String,
    event_id: String,
    event_type: EventType,
    /// The exact body sent on every attempt.
    body: String,
}

/// The subscriptions of one node and its buffer.
pub struct Webhooks {
    subscriptions: Vec<Subscription>,
    saf: Option<Saf>,
    client: reqwest::Client,
    problems: Vec<String>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field(
                "subscriptions",
                &self
                    .subscriptions
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// The deployment's subscriptions, buffering into `saf` (`None`: events are dropped,
    /// for nodes without a buffer). Filters are compiled here; a missing or malformed secret
    /// is a [`Webhooks::problems`] line and makes the deliveries of that subscription fail
    /// transiently until the node restarts with it.
    pub fn build(
        deployment: &Deployment,
        env: &dyn Fn(&str) -> Option<String>,
        saf: Option<Saf>,
    ) -> Result<Arc<Webhooks>, String> {
        let engine = Engine::default();
        let mut subscriptions = Vec::new();
        let mut problems = Vec::new();
        for definition in &deployment.file.webhook {
            let subscription = Subscription::build(definition, &engine, env)?;
            if let Some(Err(problem)) = &subscription.secret {
                problems.push(problem.clone());
            }
            subscriptions.push(subscription);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("webhooks: cannot build the HTTP client: {e}"))?;
        Ok(Arc::new(Webhooks {
            subscriptions,
            saf,
            client,
            problems,
        }))
    }

    /// Startup problems (missing secrets), one line each, without secret values.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Whether some subscription takes events of this type (check before building an
    /// event's data).
    pub fn wants(&self, event_type: EventType) -> bool {
        self.saf.is_some()
            && self
                .subscriptions
                .iter()
                .any(|s| s.enabled && s.events.contains(&event_type))
    }

    /// Whether a subscription of this name is deployed.
    pub fn has(&self, name: &str) -> bool {
        self.subscriptions.iter().any(|s| s.name == name)
    }

    /// The messages that deliver `event` to every subscription it matches.
    fn messages(&self, event: &Event) -> Vec<NewMessage> {
        let body = event.body();
        self.subscriptions
            .iter()
            .filter(|s| s.matches(event))
            .filter_map(|subscription| {
                let payload = WebhookPayload {
                    subscription: subscription.name.clone(),
                    event_id: event.id.clone(),
                    event_type: event.event_type,
                    body: body.clone(),
                };
                NewMessage::new(
                    Category::Webhook,
                    subscription.name.clone(),
                    &payload,
                    subscription.policy.clone(),
                )
                .ok()
                .map(|m| m.with_id(format!("{}.{}", event.id, subscription.name)))
            })
            .collect()
    }

    /// Buffers `event` for every matching subscription, waiting until it is on disk. For
    /// threads outside the async runtime (script threads).
    pub fn emit_blocking(&self, event: &Event) {
        let Some(saf) = &self.saf else { return };
        for message in self.messages(event) {
            if let Err(error) = saf.enqueue_blocking(message) {
                report_lost(event, &error);
            }
        }
    }

    /// Buffers `event` for every matching subscription, returning once it is on disk.
    pub async fn emit(&self, event: &Event) {
        let Some(saf) = &self.saf else { return };
        for message in self.messages(event) {
            if let Err(error) = saf.enqueue(message).await {
                report_lost(event, &error);
            }
        }
    }

    /// The deliverer of this node's webhook messages.
    pub fn deliverer(self: &Arc<Self>) -> WebhookDeliverer {
        WebhookDeliverer(Arc::clone(self))
    }

    /// One delivery attempt.
    async fn attempt(&self, message: &Message) -> (Outcome, Option<String>) {
        let payload: WebhookPayload = match message.payload_as() {
            Ok(payload) => payload,
            Err(error) => return (permanent(error.to_string()), None),
        };
        let Some(subscription) = self
            .subscriptions
            .iter()
            .find(|s| s.name == payload.subscription)
        else {
            return (
                permanent(format!(
                    "webhook `{}` is no longer deployed",
                    payload.subscription
                )),
                None,
            );
        };
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut request = self
            .client
            .post(subscription.url.clone())
            .timeout(subscription.timeout)
            .headers(subscription.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &payload.event_id)
            .header("webhook-timestamp", timestamp.to_string());
        match &subscription.secret {
            None => {}
            Some(Ok(secret)) => {
                let signature = scl_stdlib::external::signing::signature_header(
                    std::slice::from_ref(secret),
                    &payload.event_id,
                    timestamp,
                    &payload.body,
                );
                request = request.header("webhook-signature", signature);
            }
            // Retried, so nothing is lost while an operator sets the variable and restarts.
            Some(Err(problem)) => return (transient(problem.clone(), None, None), None),
        }
        let response = match request.body(payload.body.clone()).send().await {
            Ok(response) => response,
            Err(error) => return (transient(transport_error(&error), None, None), None),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = read_capped(response).await;
        let outcome = match classify_status(status) {
            StatusClass::Success => Outcome::Delivered {
                status: Some(status),
            },
            StatusClass::Transient => {
                transient(format!("HTTP {status}"), Some(status), retry_after)
            }
            StatusClass::Permanent => Outcome::Permanent {
                error: format!("HTTP {status}"),
                status: Some(status),
            },
        };
        (outcome, Some(body))
    }
}

fn report_lost(event: &Event, error: &SafError) {
    tracing::error!(event = %event.id, event_type = event.event_type.as_str(), %error, "a webhook event could not be buffered");
}

fn permanent(error: String) -> Outcome {
    Outcome::Permanent {
        error,
        status: None,
    }
}

fn transient(error: String, status: Option<u16>, retry_after: Option<Duration>) -> Outcome {
    Outcome::Transient {
        error,
        status,
        retry_after,
    }
}

/// What kind of failure a request had (reqwest's own text names the URL, which may carry
/// credentials; say the kind instead).
fn transport_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "the request timed out".to_owned()
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else {
        "the request failed before a response arrived".to_owned()
    }
}

/// The first [`MAX_RESPONSE_BODY_BYTES`] of a response body (lossy UTF-8); the rest is not
/// read.
async fn read_capped(mut response: reqwest::Response) -> String {
    let mut bytes: Vec<u8> = Vec::new();
    let mut cut = false;
    while let Ok(Some(chunk)) = response.chunk().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_RESPONSE_BODY_BYTES {
            cut = true;
            break;
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if cut || text.len() > MAX_RESPONSE_BODY_BYTES {
        shorten_to(&text, MAX_RESPONSE_BODY_BYTES)
    } else {
        text
    }
}

/// The store-and-forward deliverer of [`Category::Webhook`].
#[derive(Clone)]
pub struct WebhookDeliverer(Arc<Webhooks>);

impl Deliverer for WebhookDeliverer {
    fn deliver<'a>(&'a self, message: &'a Message) -> DeliveryFuture<'a> {
        Box::pin(async move { self.0.attempt(message).await.0 })
    }

    fn deliver_with_body<'a>(&'a self, message: &'a Message) -> DetailedDeliveryFuture<'a> {
        Box::pin(self.0.attempt(message))
    }
}

/// Wraps a deliverer of another category: when one of its messages is parked, emits
/// `message_parked`.
pub struct ParkedEvents {
    inner: Arc<dyn Deliverer>,
    webhooks: Arc<Webhooks>,
    node: String,
}

impl ParkedEvents {
    /// Wrap `inner` (webhook messages are passed through unwrapped by the caller: a parked
    /// webhook delivery makes no event, or one failing receiver would feed itself).
    pub fn wrap(
        inner: Arc<dyn Deliverer>,
        webhooks: &Arc<Webhooks>,
        node: &str,
    ) -> Arc<dyn Deliverer> {
        Arc::new(ParkedEvents {
            inner,
            webhooks: Arc::clone(webhooks),
            node: node.to_owned(),
        })
    }
}

impl Deliverer for ParkedEvents {
    fn deliver<'a>(&'a self, message: &'a Message) -> DeliveryFuture<'a> {
        self.inner.deliver(message)
    }

    fn deliver_with_body<'a>(&'a self, message: &'a Message) -> DetailedDeliveryFuture<'a> {
        self.inner.deliver_with_body(message)
    }

    fn parked(&self, message: &Message, attempt: &Attempt) {
        self.inner.parked(message, attempt);
        if message.category == Category::Webhook || !self.webhooks.wants(EventType::MessageParked) {
            return;
        }
        let event = Event::new(
            EventType::MessageParked,
            json!({
                "site": self.node,
                "message_id": message.id,
                "category": message.category.as_str(),
                "target": message.target,
                "attempts": message.attempts + 1,
                "status_code": attempt.status_code,
                "error": attempt.error,
            }),
        );
        let webhooks = Arc::clone(&self.webhooks);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { webhooks.emit(&event).await });
        }
    }
}

/// One attempt as the delivery history shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptView {
    /// RFC 3339 start of the attempt.
    pub at: String,
    /// `delivered`, `transient` or `permanent`.
    pub outcome: AttemptOutcome,
    /// The receiver's HTTP status, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_status: Option<u16>,
    pub duration_ms: u64,
    /// The first 1 KiB of the response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// What went wrong, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One delivery (an event to one subscription) as `GET /admin/webhooks/{name}/deliveries`
/// lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryView {
    pub event_id: String,
    pub event_type: EventType,
    /// Where it is buffered: `central` or the site's name.
    pub node: String,
    /// `pending`, `retrying`, `delivered`, `parked` or `discarded`.
    pub status: Status,
    /// Attempts made (the history keeps the most recent 50).
    pub attempt_count: u32,
    pub attempts: Vec<AttemptView>,
    pub created: String,
    pub updated: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Most deliveries one history answer lists.
pub const MAX_HISTORY: usize = 1000;

/// The deliveries of subscription `name` in `saf`, newest first.
pub fn deliveries(
    saf: &Saf,
    node: &str,
    name: &str,
    status: Option<Status>,
    limit: usize,
) -> Result<Vec<DeliveryView>, SafError> {
    let filter = ListFilter {
        statuses: status.into_iter().collect(),
        category: Some(Category::Webhook),
        target: Some(name.to_owned()),
        limit: Some(usize::MAX),
        ..ListFilter::default()
    };
    let mut reports = saf.list(&filter)?;
    reports.sort_by(|a, b| {
        b.created_at_ms
            .cmp(&a.created_at_ms)
            .then_with(|| b.id.cmp(&a.id))
    });
    reports.truncate(limit.min(MAX_HISTORY));
    let time = |ms: u64| rfc3339_ms(i64::try_from(ms).unwrap_or(i64::MAX));
    let mut out = Vec::with_capacity(reports.len());
    for report in reports {
        let Some(message) = saf.show(&report.id)? else {
            continue;
        };
        let Ok(payload) = message.payload_as::<WebhookPayload>() else {
            continue;
        };
        out.push(DeliveryView {
            event_id: payload.event_id,
            event_type: payload.event_type,
            node: node.to_owned(),
            status: report.status,
            attempt_count: report.attempts,
            attempts: report
                .history
                .iter()
                .map(|a| AttemptView {
                    at: time(a.at_ms),
                    outcome: a.outcome,
                    response_status: a.status_code,
                    duration_ms: a.duration_ms,
                    response_body: a.response_body.clone(),
                    error: a.error.clone(),
                })
                .collect(),
            created: time(report.created_at_ms),
            updated: time(report.updated_at_ms),
            next_attempt_at: report.next_attempt_at_ms.map(time),
            last_error: report.last_error,
        });
    }
    Ok(out)
}

/// Parses `?status=` and `?limit=` of a history query.
pub fn history_query(params: &[(String, String)]) -> Result<(Option<Status>, usize), String> {
    let mut status = None;
    let mut limit = 100;
    for (key, value) in params {
        match key.as_str() {
            "status" => {
                status = Some(value.parse::<Status>().map_err(|_| {
                    format!(
                        "`status` is one of pending, retrying, delivered, parked, discarded; not `{value}`"
                    )
                })?);
            }
            "limit" => {
                limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_HISTORY).contains(l))
                    .ok_or_else(|| {
                        format!("`limit` is a number from 1 to {MAX_HISTORY}, not `{value}`")
                    })?;
            }
            other => return Err(format!("unknown query parameter `{other}`")),
        }
    }
    Ok((status, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_is_checked_with_positions_inside_its_text() {
        assert!(check_filter(r#"event["data"]["attribute"] == "temperature""#).is_empty());
        let errors = check_filter("event.nope + 1");
        assert!(!errors.is_empty());
        let errors = check_filter("1 + true");
        assert!(!errors.is_empty(), "{errors:?}");
        assert!(errors[0].0 <= "1 + true".len());
        let smuggled = "true);\n}\nfn spin() -> bool {\n    while true {\n    }\n    return (true";
        let errors = check_filter(smuggled);
        assert!(
            errors
                .iter()
                .any(|(_, m)| m.contains("single boolean expression")),
            "{errors:?}"
        );
    }

    #[test]
    fn event_types_round_trip() {
        for event_type in EventType::ALL {
            assert_eq!(EventType::parse(event_type.as_str()), Some(event_type));
        }
        assert_eq!(EventType::parse("nope"), None);
    }
}
