//! The outside world of the ExternalSystem module, as small traits the runtime implements:
//! an HTTP transport, the store-and-forward outbox, and the site event log.
//!
//! Every method is called on a script thread and may block it (CD-ESG-7): from the script's
//! view a call waits for its answer. Unit tests use in-memory versions; the runtime's
//! implementations use reqwest and the LMDB store-and-forward engine.

use std::time::Duration;

use super::classify::{ExternalError, HttpResponse, TransportError};
use super::config::RetrySettings;
use super::request::{EncodedCall, PreparedRequest};

/// Sends one HTTP request and returns the whole response.
pub trait HttpTransport: Send + Sync {
    /// Send `request` to `system` and wait for the complete response, at most `timeout` from
    /// the start of the request to the end of the body. Must not retry and must not follow
    /// redirects.
    fn send(
        &self,
        system: &str,
        request: &PreparedRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, TransportError>;
}

/// The first attempt of a `CachedCall`, made by the module before it buffers the call.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstAttempt {
    /// When it started, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// How long it took.
    pub duration: Duration,
    /// The HTTP status, if the peer answered.
    pub status: Option<u16>,
    /// The failure (for a buffered call; `None` when it was delivered).
    pub error: Option<ExternalError>,
}

/// A call handed to store-and-forward after a transient failure of its first attempt, or
/// recorded as delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxCall {
    /// The delivery id, sent as `Idempotency-Key` on every attempt.
    pub id: String,
    /// The encoded call, resent unchanged.
    pub call: EncodedCall,
    /// The system's retry settings at the time of the call.
    pub retry: RetrySettings,
    /// What the first attempt did.
    pub first_attempt: FirstAttempt,
}

/// Where a buffered call ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferedStatus {
    /// Waiting for its next attempt.
    Buffered,
    /// Parked at once: the system allows no retries (`max_retries = 0`).
    Parked,
}

/// The durable store-and-forward buffer, as the module needs it.
pub trait Outbox: Send + Sync {
    /// A fresh, unique delivery id.
    fn new_id(&self) -> String;

    /// Buffer a call whose first attempt failed transiently. Returns once the call is on
    /// disk; an error means it was NOT buffered.
    fn buffer(&self, call: OutboxCall) -> Result<BufferedStatus, String>;

    /// Note that a call was delivered at its first attempt, so its status can be queried by
    /// id. Need not be durable, need not block; the default does nothing.
    fn record_delivered(&self, call: OutboxCall) {
        let _ = call;
    }
}

/// Which script-facing function made a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMode {
    /// `ExternalSystem.Call`.
    Call,
    /// `ExternalSystem.CachedCall`.
    CachedCall,
    /// A store-and-forward retry of a `CachedCall`.
    Retry,
}

impl CallMode {
    /// The name used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            CallMode::Call => "Call",
            CallMode::CachedCall => "CachedCall",
            CallMode::Retry => "retry",
        }
    }
}

/// A permanent failure, for the site event log (WP-8). Its message holds no secret.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureEvent {
    /// The system.
    pub system: String,
    /// The method.
    pub method: String,
    /// How the call was made.
    pub mode: CallMode,
    /// The delivery id, for `CachedCall` and retries.
    pub delivery_id: Option<String>,
    /// The error.
    pub error: ExternalError,
}

/// The site event log.
pub trait EventLog: Send + Sync {
    /// Record a permanent failure.
    fn permanent_failure(&self, event: &FailureEvent);
}

/// An event log that drops everything (for tools that have no site, and for tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEventLog;

impl EventLog for NoEventLog {
    fn permanent_failure(&self, _event: &FailureEvent) {}
}
