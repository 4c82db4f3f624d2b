//! # ExternalSystem — calls to REST/JSON systems defined in the deployment
//!
//! The host side of `ExternalSystem.Call(system, method, params) -> json` and
//! `ExternalSystem.CachedCall(system, method, params) -> Delivery` (WP-6, WP-7, WP-8). This
//! module holds the logic; the world is behind the traits of [`ports`] (HTTP, the
//! store-and-forward outbox, the site event log), which the runtime implements with reqwest
//! and LMDB.
//!
//! What it promises:
//! - **Requests** ([`request`]): JSON only; parameters as the JSON body for POST/PUT/PATCH and
//!   as the query for GET/DELETE; `{name}` path parameters filled, URL-encoded and removed from
//!   the rest; credentials on every request; Standard Webhooks signature headers when the
//!   system has signing secrets ([`signing`]).
//! - **Classification** ([`classify`]): transient = connection failure, timeout, 408, 429,
//!   5xx; permanent = every other non-2xx status and every problem found before sending.
//! - **`call`** returns the response's JSON (`null` for an empty body) or the error, whatever
//!   its kind. **`cached_call`** tries once with an `Idempotency-Key`: delivered → `{id,
//!   "delivered"}` (the response is discarded); transient → handed to the outbox, durable
//!   before it returns → `{id, "buffered"}`; permanent → the error at once, never buffered.
//!   Permanent failures of either mode go to the site event log.
//! - **Payload limit**: an oversized payload is a permanent error before any attempt.
//! - **No secret leaks**: secret values are typed ([`config::Secret`], printed `***`), and
//!   every error message is scrubbed of the system's secret texts before it leaves.
//! - **Dry run** ([`dry_run`]): the exact request, secrets masked, sent nowhere.

pub mod classify;
pub mod config;
pub mod dry_run;
pub mod host;
pub mod ports;
pub mod request;
pub mod signing;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

pub use classify::{
    ErrorCode, ExternalError, FailureKind, HttpResponse, StatusClass, TransportError,
    classify_status,
};
pub use config::{
    Authentication, BaseUrl, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_TIMEOUT, HttpVerb, MethodConfig,
    PathTemplate, RetryBackoff, RetrySettings, Secret, SigningSecret, SystemConfig,
};
pub use dry_run::{DryRunOutbox, DryRunRequest, DryRunTransport};
pub use host::register_external_system;
pub use ports::{
    BufferedStatus, CallMode, EventLog, FailureEvent, FirstAttempt, HttpTransport, NoEventLog,
    Outbox, OutboxCall,
};
pub use request::{AttemptContext, EncodedCall, HeaderValue, PreparedRequest};

/// What `CachedCall` gives the script: `{id, status}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The delivery id: the same on every attempt, sent as `Idempotency-Key`.
    pub id: String,
    /// Where the call is.
    pub status: DeliveryStatus,
}

impl Delivery {
    /// The script's `Delivery` record.
    pub fn to_json(&self) -> Value {
        serde_json::json!({ "id": self.id, "status": self.status.as_str() })
    }
}

/// The status of a `CachedCall` when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// The first attempt succeeded.
    Delivered,
    /// The first attempt failed transiently; the call is on disk and will be retried.
    Buffered,
    /// The first attempt failed transiently and the system allows no retries: the call is
    /// on disk, parked, waiting for an operator.
    Parked,
}

impl DeliveryStatus {
    /// `"delivered"`, `"buffered"` or `"parked"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Buffered => "buffered",
            DeliveryStatus::Parked => "parked",
        }
    }
}

#[derive(Debug, Clone)]
enum SystemEntry {
    Ready {
        config: Arc<SystemConfig>,
        secrets: Vec<String>,
    },
    /// Defined, but its definition cannot be used (a missing environment variable, …): every
    /// call fails permanently with this problem.
    Unusable(String),
}

/// The external systems of a deployment, by name.
#[derive(Debug, Clone, Default)]
pub struct ExternalSystems {
    systems: BTreeMap<String, SystemEntry>,
}

impl ExternalSystems {
    /// Add (or replace) a system.
    pub fn insert(&mut self, config: SystemConfig) {
        let secrets = config.secret_texts();
        self.systems.insert(
            config.name.clone(),
            SystemEntry::Ready {
                config: Arc::new(config),
                secrets,
            },
        );
    }

    /// Record a defined system whose definition cannot be used; calls to it fail with
    /// `problem` (which must not contain a secret).
    pub fn insert_unusable(&mut self, name: impl Into<String>, problem: impl Into<String>) {
        self.systems
            .insert(name.into(), SystemEntry::Unusable(problem.into()));
    }

    /// A usable system.
    pub fn get(&self, name: &str) -> Option<&Arc<SystemConfig>> {
        match self.systems.get(name) {
            Some(SystemEntry::Ready { config, .. }) => Some(config),
            _ => None,
        }
    }

    /// Every usable system.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<SystemConfig>> {
        self.systems.values().filter_map(|entry| match entry {
            SystemEntry::Ready { config, .. } => Some(config),
            SystemEntry::Unusable(_) => None,
        })
    }

    fn system(&self, name: &str) -> Result<&Arc<SystemConfig>, ExternalError> {
        match self.systems.get(name) {
            Some(SystemEntry::Ready { config, .. }) => Ok(config),
            Some(SystemEntry::Unusable(problem)) => Err(ExternalError::permanent(
                ErrorCode::Configuration,
                format!("external system `{name}` cannot be used: {problem}"),
            )),
            None => Err(ExternalError::permanent(
                ErrorCode::UnknownSystem,
                format!("no external system `{name}` is defined in the deployment"),
            )),
        }
    }

    /// Encode a call: check the system, the method, the parameters and the payload size.
    pub fn encode(
        &self,
        system: &str,
        method: &str,
        params: &Value,
    ) -> Result<EncodedCall, ExternalError> {
        let config = self.system(system)?;
        let method_config = config.methods.get(method).ok_or_else(|| {
            let known: Vec<&str> = config.methods.keys().map(String::as_str).collect();
            ExternalError::permanent(
                ErrorCode::UnknownMethod,
                format!(
                    "external system `{system}` has no method `{method}` (it has: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })?;
        request::encode_call(config, method, method_config, params)
            .map_err(|error| self.redact(system, error))
    }

    /// The request of one attempt of `call`, with the system's current base URL,
    /// credentials and signing secrets, and its timeout.
    pub fn prepare(
        &self,
        call: &EncodedCall,
        attempt: AttemptContext<'_>,
    ) -> Result<(PreparedRequest, Duration), ExternalError> {
        let config = self.system(&call.system)?;
        Ok((
            request::prepare_request(config, call, attempt),
            config.timeout,
        ))
    }

    /// Classify the result of one attempt of `call`: the response of a success, or the
    /// error (secrets removed). `now` is used for `Retry-After` dates.
    pub fn check_attempt(
        &self,
        call: &EncodedCall,
        result: Result<HttpResponse, TransportError>,
        timeout: Duration,
        now: SystemTime,
    ) -> Result<HttpResponse, ExternalError> {
        let label = call.label();
        let checked = match result {
            Ok(response) => classify::check_response(&label, response, now),
            Err(error) => Err(classify::transport_failure(&label, error, timeout)),
        };
        checked.map_err(|error| self.redact(&call.system, error))
    }

    /// The response's JSON value (`null` for an empty body), secrets removed from errors.
    pub fn response_json(
        &self,
        call: &EncodedCall,
        response: &HttpResponse,
    ) -> Result<Value, ExternalError> {
        classify::response_json(&call.label(), response)
            .map_err(|error| self.redact(&call.system, error))
    }

    /// Remove the system's secret texts from an error message.
    pub fn redact(&self, system: &str, mut error: ExternalError) -> ExternalError {
        if let Some(SystemEntry::Ready { secrets, .. }) = self.systems.get(system) {
            error.message = classify::redact(&error.message, secrets);
        }
        error
    }
}

/// The ExternalSystem module: what the host functions `ExternalSystem.Call` and
/// `ExternalSystem.CachedCall` call, on a script thread.
pub struct ExternalSystemModule {
    systems: Arc<ExternalSystems>,
    transport: Arc<dyn HttpTransport>,
    outbox: Arc<dyn Outbox>,
    event_log: Arc<dyn EventLog>,
}

impl ExternalSystemModule {
    /// The module over these systems and this outside world.
    pub fn new(
        systems: Arc<ExternalSystems>,
        transport: Arc<dyn HttpTransport>,
        outbox: Arc<dyn Outbox>,
        event_log: Arc<dyn EventLog>,
    ) -> ExternalSystemModule {
        ExternalSystemModule {
            systems,
            transport,
            outbox,
            event_log,
        }
    }

    /// The systems it calls.
    pub fn systems(&self) -> &Arc<ExternalSystems> {
        &self.systems
    }

    /// `ExternalSystem.Call`: send now, wait for the answer, return its JSON (`null` for an
    /// empty body). Every failure is returned.
    pub fn call(&self, system: &str, method: &str, params: &Value) -> Result<Value, ExternalError> {
        let result = self.call_inner(system, method, params);
        if let Err(error) = &result {
            self.log_permanent(system, method, CallMode::Call, None, error);
        }
        result
    }

    fn call_inner(
        &self,
        system: &str,
        method: &str,
        params: &Value,
    ) -> Result<Value, ExternalError> {
        let call = self.systems.encode(system, method, params)?;
        let delivery_id = if self
            .systems
            .get(system)
            .is_some_and(|c| !c.signing_secrets.is_empty())
        {
            self.outbox.new_id()
        } else {
            String::new()
        };
        let attempt = AttemptContext {
            delivery_id: &delivery_id,
            idempotency_key: false,
            unix_seconds: unix_seconds(SystemTime::now()),
        };
        let (request, timeout) = self.systems.prepare(&call, attempt)?;
        let result = self.transport.send(system, &request, timeout);
        let response = self
            .systems
            .check_attempt(&call, result, timeout, SystemTime::now())?;
        self.systems.response_json(&call, &response)
    }

    /// `ExternalSystem.CachedCall`: try once; delivered, or buffered on a transient failure
    /// (on disk before this returns), or a permanent error at once.
    pub fn cached_call(
        &self,
        system: &str,
        method: &str,
        params: &Value,
    ) -> Result<Delivery, ExternalError> {
        let call = match self.systems.encode(system, method, params) {
            Ok(call) => call,
            Err(error) => {
                self.log_permanent(system, method, CallMode::CachedCall, None, &error);
                return Err(error);
            }
        };
        let id = self.outbox.new_id();
        let started_unix_ms = unix_millis(SystemTime::now());
        let started = Instant::now();
        let attempt = AttemptContext {
            delivery_id: &id,
            idempotency_key: true,
            unix_seconds: started_unix_ms / 1000,
        };
        let outcome = self
            .systems
            .prepare(&call, attempt)
            .and_then(|(request, timeout)| {
                let result = self.transport.send(system, &request, timeout);
                self.systems
                    .check_attempt(&call, result, timeout, SystemTime::now())
            });
        let duration = started.elapsed();
        let retry = self
            .systems
            .get(system)
            .map(|config| config.retry.clone())
            .unwrap_or_default();
        match outcome {
            Ok(response) => {
                self.outbox.record_delivered(OutboxCall {
                    id: id.clone(),
                    call,
                    retry,
                    first_attempt: FirstAttempt {
                        started_unix_ms,
                        duration,
                        status: Some(response.status),
                        error: None,
                    },
                });
                Ok(Delivery {
                    id,
                    status: DeliveryStatus::Delivered,
                })
            }
            Err(error) if error.kind == FailureKind::Transient => {
                let status = error.status;
                let buffered = self.outbox.buffer(OutboxCall {
                    id: id.clone(),
                    call,
                    retry,
                    first_attempt: FirstAttempt {
                        started_unix_ms,
                        duration,
                        status,
                        error: Some(error.clone()),
                    },
                });
                match buffered {
                    Ok(BufferedStatus::Buffered) => Ok(Delivery {
                        id,
                        status: DeliveryStatus::Buffered,
                    }),
                    Ok(BufferedStatus::Parked) => Ok(Delivery {
                        id,
                        status: DeliveryStatus::Parked,
                    }),
                    Err(problem) => Err(ExternalError {
                        kind: FailureKind::Transient,
                        code: ErrorCode::BufferFailed,
                        message: format!(
                            "{}; the call could NOT be buffered for retry: {problem}",
                            error.message
                        ),
                        status,
                        retry_after: error.retry_after,
                    }),
                }
            }
            Err(error) => {
                self.log_permanent(system, method, CallMode::CachedCall, Some(&id), &error);
                Err(error)
            }
        }
    }

    /// The request a call would send, for `scl run --dry-run` (secrets masked). `mode`
    /// decides whether an `Idempotency-Key` is shown (`CachedCall`).
    pub fn describe(
        &self,
        mode: CallMode,
        system: &str,
        method: &str,
        params: &Value,
    ) -> Result<DryRunRequest, ExternalError> {
        let call = self.systems.encode(system, method, params)?;
        let id = self.outbox.new_id();
        let attempt = AttemptContext {
            delivery_id: &id,
            idempotency_key: mode != CallMode::Call,
            unix_seconds: unix_seconds(SystemTime::now()),
        };
        let (request, _) = self.systems.prepare(&call, attempt)?;
        Ok(DryRunRequest::describe(system, &request))
    }

    fn log_permanent(
        &self,
        system: &str,
        method: &str,
        mode: CallMode,
        delivery_id: Option<&str>,
        error: &ExternalError,
    ) {
        if error.kind == FailureKind::Permanent {
            self.event_log.permanent_failure(&FailureEvent {
                system: system.to_owned(),
                method: method.to_owned(),
                mode,
                delivery_id: delivery_id.map(str::to_owned),
                error: error.clone(),
            });
        }
    }
}

/// Seconds since the Unix epoch.
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
