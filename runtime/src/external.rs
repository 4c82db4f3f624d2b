//! # ExternalSystem in the runtime: the real outside world of `scl_stdlib::external`
//!
//! - [`external_systems`] resolves the deployment's `[external_systems.*]` into checked
//!   definitions, reading secrets from the environment variables the file names. A system
//!   whose definition is unusable (a missing variable, a bad path) is kept as unusable: its
//!   calls fail permanently with the problem, and the problem is reported at startup.
//! - [`ReqwestTransport`] sends requests with one pooled reqwest client per system
//!   (keep-alive, rustls, no redirects, the system's timeout over the whole exchange). Script
//!   threads call it blocking; the store-and-forward deliverer calls it async.
//! - [`SafOutbox`] buffers `CachedCall`s in the store-and-forward engine (on disk before it
//!   returns) with the first attempt already recorded, and the call's id as message id.
//! - [`ExternalCallDeliverer`] is the forwarder's deliverer for `external_call` messages: it
//!   resends the stored call unchanged with the same `Idempotency-Key` (and a fresh signature
//!   timestamp) and classifies the result, honouring `Retry-After`.
//! - [`TracingEventLog`] writes permanent failures as `scl::event_log` tracing events until
//!   the site event log exists.
//!
//! **Invariant:** no secret value reaches a log line, an error or an event: secrets are typed
//! in stdlib and every message is scrubbed there; reqwest errors are reported without URLs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use scl_stdlib::external::{
    AttemptContext, Authentication, BaseUrl, BufferedStatus, CallMode, DEFAULT_MAX_PAYLOAD_BYTES,
    EncodedCall, EventLog, ExternalSystemModule, ExternalSystems, FailureEvent, FailureKind,
    HttpResponse, HttpTransport, HttpVerb, MethodConfig, Outbox, OutboxCall, PathTemplate,
    PreparedRequest, RetryBackoff, RetrySettings, Secret, SigningSecret, SystemConfig,
    TransportError, unix_seconds,
};
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::deployment::{self, DeploymentFile, ExternalSystemDef, HttpAuthDef};
use crate::saf::{
    Attempt, AttemptOutcome, Category, Deliverer, DeliveryFuture, Message, NewMessage, Outcome,
    RetryPolicy, Saf, Status, now_ms,
};

/// Largest response body read, in bytes; a larger one is a permanent `invalid_response`.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Resolve the deployment's external systems, reading secrets through `env` (normally
/// `std::env::var`). Returns the systems and one line per unusable system.
pub fn external_systems(
    file: &DeploymentFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> (ExternalSystems, Vec<String>) {
    let mut systems = ExternalSystems::default();
    let mut problems = Vec::new();
    for (name, definition) in &file.external_systems {
        match system_config(name, definition, env) {
            Ok(config) => systems.insert(config),
            Err(problem) => {
                problems.push(format!("external system `{name}`: {problem}"));
                systems.insert_unusable(name.clone(), problem);
            }
        }
    }
    (systems, problems)
}

/// The environment of the process, as [`external_systems`] wants it.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn system_config(
    name: &str,
    definition: &ExternalSystemDef,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SystemConfig, String> {
    let read_secret = |variable: &str, what: &str| -> Result<Secret, String> {
        match env(variable) {
            Some(value) if !value.is_empty() => Ok(Secret::new(value)),
            Some(_) => Err(format!(
                "environment variable `{variable}` ({what}) is empty"
            )),
            None => Err(format!(
                "environment variable `{variable}` ({what}) is not set"
            )),
        }
    };
    let mut config = SystemConfig::new(name, BaseUrl::parse(&definition.base_url)?);
    if definition.timeout_s == 0 {
        return Err("timeout_s must be at least 1".to_owned());
    }
    config.timeout = Duration::from_secs(definition.timeout_s);
    config.authentication = match &definition.auth {
        None | Some(HttpAuthDef::None) => Authentication::None,
        Some(HttpAuthDef::ApiKey { header, value_env }) => {
            Authentication::api_key(header, read_secret(value_env, "the API key")?)?
        }
        Some(HttpAuthDef::Basic {
            username,
            password_env,
        }) => Authentication::basic(username, read_secret(password_env, "the password")?)?,
    };
    if let Some(retry) = &definition.retry {
        let backoff = match &retry.backoff_s {
            Some(delays) if !delays.is_empty() => {
                RetryBackoff::Schedule(delays.iter().map(|s| Duration::from_secs(*s)).collect())
            }
            _ => RetryBackoff::Fixed(Duration::from_secs(retry.interval_s.unwrap_or(60))),
        };
        config.retry = RetrySettings {
            max_retries: retry.max_retries,
            backoff,
        };
    }
    for (method_name, method) in &definition.methods {
        let path = PathTemplate::parse(&method.path)
            .map_err(|problem| format!("method `{method_name}`: {problem}"))?;
        let verb = match method.http {
            deployment::HttpVerb::Get => HttpVerb::Get,
            deployment::HttpVerb::Post => HttpVerb::Post,
            deployment::HttpVerb::Put => HttpVerb::Put,
            deployment::HttpVerb::Delete => HttpVerb::Delete,
            deployment::HttpVerb::Patch => HttpVerb::Patch,
        };
        config
            .methods
            .insert(method_name.clone(), MethodConfig { verb, path });
    }
    for variable in &definition.signing_secrets_env {
        let secret = read_secret(variable, "a signing secret")?;
        let signing = SigningSecret::parse(secret.expose())
            .map_err(|problem| format!("environment variable `{variable}`: {problem}"))?;
        config.signing_secrets.push(signing);
    }
    config.max_payload_bytes = match definition.max_payload_bytes {
        Some(limit) => usize::try_from(limit).unwrap_or(usize::MAX),
        None => DEFAULT_MAX_PAYLOAD_BYTES,
    };
    Ok(config)
}

/// Sends requests with reqwest: one pooled client per system.
#[derive(Clone)]
pub struct ReqwestTransport {
    runtime: Handle,
    clients: Arc<HashMap<String, reqwest::Client>>,
    fallback: reqwest::Client,
    max_response_bytes: usize,
}

impl std::fmt::Debug for ReqwestTransport {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ReqwestTransport")
            .field("systems", &self.clients.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn build_client(timeout: Option<Duration>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true);
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    builder
        .build()
        .map_err(|error| format!("cannot create the HTTP client: {}", error_text(&error)))
}

impl ReqwestTransport {
    /// A transport for `systems`, running its I/O on `runtime` (a multi-thread tokio runtime
    /// whose threads are not script threads).
    pub fn new(runtime: Handle, systems: &ExternalSystems) -> Result<ReqwestTransport, String> {
        let mut clients = HashMap::new();
        for system in systems.iter() {
            clients.insert(system.name.clone(), build_client(Some(system.timeout))?);
        }
        Ok(ReqwestTransport {
            runtime,
            clients: Arc::new(clients),
            fallback: build_client(None)?,
            max_response_bytes: MAX_RESPONSE_BYTES,
        })
    }

    fn client(&self, system: &str) -> reqwest::Client {
        self.clients
            .get(system)
            .cloned()
            .unwrap_or_else(|| self.fallback.clone())
    }

    /// Send a request from async code (the store-and-forward deliverer).
    pub async fn send_async(
        &self,
        system: &str,
        request: &PreparedRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        exchange(
            self.client(system),
            request,
            timeout,
            self.max_response_bytes,
        )
        .await
    }
}

impl HttpTransport for ReqwestTransport {
    /// Send from a script thread, blocking it until the response or the timeout.
    fn send(
        &self,
        system: &str,
        request: &PreparedRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        let client = self.client(system);
        match Handle::try_current() {
            // A plain thread (a script thread): drive the exchange here; the runtime's
            // threads run the I/O driver.
            Err(_) => {
                self.runtime
                    .block_on(exchange(client, request, timeout, self.max_response_bytes))
            }
            Ok(current) if current.runtime_flavor() == RuntimeFlavor::CurrentThread => {
                Err(TransportError::WrongThread(
                    "ExternalSystem calls block, and this thread runs a single-threaded async \
                     runtime; call them from a script thread"
                        .to_owned(),
                ))
            }
            // Inside a multi-thread runtime: run the exchange as a task and wait for it.
            Ok(_) => {
                let request = request.clone();
                let limit = self.max_response_bytes;
                let (sender, receiver) = std::sync::mpsc::sync_channel(1);
                self.runtime.spawn(async move {
                    let result = exchange(client, &request, timeout, limit).await;
                    let _ = sender.send(result);
                });
                receiver.recv().unwrap_or_else(|_| {
                    Err(TransportError::Connection(
                        "the HTTP runtime stopped before the response arrived".to_owned(),
                    ))
                })
            }
        }
    }
}

/// One request and its whole response, within `timeout`.
async fn exchange(
    client: reqwest::Client,
    request: &PreparedRequest,
    timeout: Duration,
    max_response_bytes: usize,
) -> Result<HttpResponse, TransportError> {
    let work = async {
        let method = match request.verb {
            HttpVerb::Get => reqwest::Method::GET,
            HttpVerb::Post => reqwest::Method::POST,
            HttpVerb::Put => reqwest::Method::PUT,
            HttpVerb::Delete => reqwest::Method::DELETE,
            HttpVerb::Patch => reqwest::Method::PATCH,
        };
        let mut builder = client.request(method, &request.url).timeout(timeout);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.expose());
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let mut response = builder.send().await.map_err(transport_error)?;
        let header = |name: reqwest::header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after = header(reqwest::header::RETRY_AFTER);
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > max_response_bytes {
                return Err(TransportError::ResponseTooLarge(max_response_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            retry_after,
            content_type,
            body,
        })
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(TransportError::Timeout),
    }
}

fn transport_error(error: reqwest::Error) -> TransportError {
    if error.is_timeout() {
        return TransportError::Timeout;
    }
    let detail = error_text(&error);
    if error.is_builder() {
        TransportError::InvalidRequest(detail)
    } else if error.is_connect() {
        TransportError::Connection(format!("cannot connect: {detail}"))
    } else {
        TransportError::Connection(detail)
    }
}

/// An error and its causes on one line, without the URL.
fn error_text(error: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts
            .iter()
            .any(|part| part.contains(&text) || text.contains(part.as_str()))
        {
            parts.push(text);
        } else if let Some(last) = parts.last_mut()
            && text.len() < last.len()
            && last.contains(&text)
        {
            *last = text;
        }
        source = cause.source();
    }
    if parts.is_empty() {
        // reqwest's own text names the URL; say what kind of failure it was instead.
        let kind = if error.is_connect() {
            "connection failed"
        } else if error.is_body() || error.is_decode() {
            "the response body broke off"
        } else if error.is_request() {
            "the request failed"
        } else {
            "HTTP failure"
        };
        return kind.to_owned();
    }
    parts.join(": ")
}

/// The store-and-forward engine as the module's outbox.
#[derive(Debug, Clone)]
pub struct SafOutbox {
    saf: Saf,
    runtime: Handle,
    record_deliveries: bool,
}

impl SafOutbox {
    /// An outbox on `saf`. Calls delivered at their first attempt are recorded as delivered
    /// (so their status can be queried by id), in the background on `runtime`.
    pub fn new(saf: Saf, runtime: Handle) -> SafOutbox {
        SafOutbox {
            saf,
            runtime,
            record_deliveries: true,
        }
    }

    /// Do not record calls delivered at their first attempt (saves one buffer write per
    /// successful `CachedCall`; their ids are then unknown to status queries).
    pub fn without_delivery_records(mut self) -> SafOutbox {
        self.record_deliveries = false;
        self
    }
}

/// The store-and-forward retry policy of a system's retry settings.
pub fn retry_policy(retry: &RetrySettings) -> RetryPolicy {
    match &retry.backoff {
        RetryBackoff::Fixed(interval) => RetryPolicy::fixed(retry.max_retries, *interval),
        RetryBackoff::Schedule(delays) => RetryPolicy::schedule(retry.max_retries, delays),
    }
}

/// The store-and-forward target of a call: `System/Method`.
pub fn target(call: &EncodedCall) -> String {
    format!("{}/{}", call.system, call.method)
}

fn outbox_message(call: OutboxCall, outcome: AttemptOutcome) -> Result<NewMessage, String> {
    let first = &call.first_attempt;
    let (error, retry_after) = match &first.error {
        Some(error) => (Some(error.message.clone()), error.retry_after),
        None => (None, None),
    };
    let attempt = Attempt::new(
        first.started_unix_ms,
        outcome,
        first.status,
        error,
        first.duration,
    );
    let message = NewMessage::new(
        Category::ExternalCall,
        target(&call.call),
        &call.call,
        retry_policy(&call.retry),
    )
    .map_err(|error| error.to_string())?;
    Ok(message
        .with_id(call.id)
        .with_prior_attempt(attempt, retry_after))
}

impl Outbox for SafOutbox {
    fn new_id(&self) -> String {
        crate::saf::store::new_id(now_ms())
    }

    fn buffer(&self, call: OutboxCall) -> Result<BufferedStatus, String> {
        let message = outbox_message(call, AttemptOutcome::Transient)?;
        let enqueued = self
            .saf
            .enqueue_blocking(message)
            .map_err(|error| error.to_string())?;
        Ok(match enqueued.status {
            Status::Parked => BufferedStatus::Parked,
            _ => BufferedStatus::Buffered,
        })
    }

    fn record_delivered(&self, call: OutboxCall) {
        if !self.record_deliveries {
            return;
        }
        let id = call.id.clone();
        let message = match outbox_message(call, AttemptOutcome::Delivered) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%id, %error, "delivered external call not recorded");
                return;
            }
        };
        let saf = self.saf.clone();
        self.runtime.spawn(async move {
            if let Err(error) = saf.enqueue(message).await {
                tracing::warn!(%id, %error, "delivered external call not recorded");
            }
        });
    }
}

/// The forwarder's deliverer of `external_call` messages.
#[derive(Clone)]
pub struct ExternalCallDeliverer {
    systems: Arc<ExternalSystems>,
    transport: ReqwestTransport,
    event_log: Arc<dyn EventLog>,
}

impl ExternalCallDeliverer {
    /// A deliverer over the current definitions.
    pub fn new(
        systems: Arc<ExternalSystems>,
        transport: ReqwestTransport,
        event_log: Arc<dyn EventLog>,
    ) -> ExternalCallDeliverer {
        ExternalCallDeliverer {
            systems,
            transport,
            event_log,
        }
    }

    async fn attempt(&self, message: &Message) -> Outcome {
        let call: EncodedCall = match message.payload_as() {
            Ok(call) => call,
            Err(error) => {
                return Outcome::Permanent {
                    error: format!("the buffered call cannot be read: {error}"),
                    status: None,
                };
            }
        };
        let attempt = AttemptContext {
            delivery_id: &message.id,
            idempotency_key: true,
            unix_seconds: unix_seconds(SystemTime::now()),
        };
        let checked = match self.systems.prepare(&call, attempt) {
            Ok((request, timeout)) => {
                let result = self
                    .transport
                    .send_async(&call.system, &request, timeout)
                    .await;
                self.systems
                    .check_attempt(&call, result, timeout, SystemTime::now())
            }
            Err(error) => Err(error),
        };
        match checked {
            Ok(response) => Outcome::Delivered {
                status: Some(response.status),
            },
            Err(error) if error.kind == FailureKind::Transient => Outcome::Transient {
                error: error.message,
                status: error.status,
                retry_after: error.retry_after,
            },
            Err(error) => {
                self.event_log.permanent_failure(&FailureEvent {
                    system: call.system.clone(),
                    method: call.method.clone(),
                    mode: CallMode::Retry,
                    delivery_id: Some(message.id.clone()),
                    error: error.clone(),
                });
                Outcome::Permanent {
                    error: error.message,
                    status: error.status,
                }
            }
        }
    }
}

impl Deliverer for ExternalCallDeliverer {
    fn deliver<'a>(&'a self, message: &'a Message) -> DeliveryFuture<'a> {
        Box::pin(self.attempt(message))
    }
}

/// Permanent failures as `scl::event_log` tracing events (warn level), until the site event
/// log exists. The error message holds no secret.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingEventLog;

impl EventLog for TracingEventLog {
    fn permanent_failure(&self, event: &FailureEvent) {
        tracing::warn!(
            target: "scl::event_log",
            system = %event.system,
            method = %event.method,
            mode = event.mode.as_str(),
            delivery_id = event.delivery_id.as_deref().unwrap_or(""),
            code = event.error.code.as_str(),
            status = event.error.status,
            "external system call failed permanently: {}",
            event.error.message
        );
    }
}

/// Everything a site needs for the ExternalSystem module: the module the host functions
/// call, and the deliverer to register with the store-and-forward forwarder.
pub struct ExternalRuntime {
    /// What `ExternalSystem.Call` / `CachedCall` call.
    pub module: Arc<ExternalSystemModule>,
    /// Register under [`Category::ExternalCall`] with the forwarder.
    pub deliverer: ExternalCallDeliverer,
    /// Unusable systems, one line each, to report at startup.
    pub problems: Vec<String>,
}

impl ExternalRuntime {
    /// Wire the module to reqwest (I/O on `runtime`), the buffer `saf` and `event_log`.
    pub fn new(
        runtime: Handle,
        file: &DeploymentFile,
        env: &dyn Fn(&str) -> Option<String>,
        saf: Saf,
        event_log: Arc<dyn EventLog>,
    ) -> Result<ExternalRuntime, String> {
        let (systems, problems) = external_systems(file, env);
        let systems = Arc::new(systems);
        let transport = ReqwestTransport::new(runtime.clone(), &systems)?;
        let outbox = SafOutbox::new(saf, runtime);
        let module = ExternalSystemModule::new(
            Arc::clone(&systems),
            Arc::new(transport.clone()),
            Arc::new(outbox),
            Arc::clone(&event_log),
        );
        Ok(ExternalRuntime {
            module: Arc::new(module),
            deliverer: ExternalCallDeliverer::new(systems, transport, event_log),
            problems,
        })
    }
}

/// The module for `scl run --dry-run`: every request is described to `sink` (secrets
/// masked) and nothing is sent or buffered. A secret whose environment variable is not set
/// is replaced by a placeholder (it is masked anyway), and named in the returned notes.
pub fn dry_run_module(
    file: &DeploymentFile,
    env: &dyn Fn(&str) -> Option<String>,
    sink: impl Fn(scl_stdlib::external::DryRunRequest) + Send + Sync + 'static,
) -> (ExternalSystemModule, Vec<String>) {
    /// `whsec_` + base64 of "dry-run-placeholder": usable as a key, a password and a
    /// signing secret.
    const PLACEHOLDER: &str = "whsec_ZHJ5LXJ1bi1wbGFjZWhvbGRlcg==";
    let missing = std::sync::Mutex::new(Vec::new());
    let lenient = |name: &str| {
        env(name).or_else(|| {
            missing
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(name.to_owned());
            Some(PLACEHOLDER.to_owned())
        })
    };
    let (systems, mut notes) = external_systems(file, &lenient);
    let mut missing = missing
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    missing.sort();
    missing.dedup();
    for name in missing {
        notes.push(format!(
            "environment variable `{name}` is not set; the dry run uses a placeholder"
        ));
    }
    let module = ExternalSystemModule::new(
        Arc::new(systems),
        Arc::new(scl_stdlib::external::DryRunTransport::new(sink)),
        Arc::new(scl_stdlib::external::DryRunOutbox::default()),
        Arc::new(scl_stdlib::external::NoEventLog),
    );
    (module, notes)
}
