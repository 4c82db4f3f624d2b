//! The outside world of the Notify module, as small traits the runtime implements: the SMTP
//! transport, the store-and-forward outbox, and the site event log.
//!
//! Every method is called on a script thread and may block it (CD-ESG-7): from the script's
//! view `Send` waits for its first attempt. Unit tests use in-memory versions; the runtime's
//! implementations use lettre and the LMDB store-and-forward engine.

use std::time::Duration;

use super::classify::{NotifyError, SmtpFailure};
use super::email::Email;
use super::settings::RetrySettings;

/// Hands one email to the SMTP server.
pub trait MailTransport: Send + Sync {
    /// Send `email` once: its envelope is the sender and its recipients, its headers name
    /// only the sender. Must not retry on its own (one login retry after a token refresh is
    /// part of one attempt); waits at most the configured timeout per step.
    fn send(&self, email: &Email) -> Result<(), SmtpFailure>;
}

/// The first attempt of a `Send`, made by the module before it buffers the email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstAttempt {
    /// When it started, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// How long it took.
    pub duration: Duration,
    /// How it failed (always a transient failure: permanent ones are not buffered).
    pub failure: SmtpFailure,
}

/// Where a buffered email ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferedStatus {
    /// Waiting for its next attempt.
    Buffered,
    /// Parked at once: the settings allow no retries (`max_retries = 0`).
    Parked,
}

/// The durable store-and-forward buffer, as the module needs it.
pub trait Outbox: Send + Sync {
    /// A fresh, unique delivery id.
    fn new_id(&self) -> String;

    /// Buffer an email whose first attempt failed transiently, under `email.delivery_id`,
    /// with the first attempt counted against `retry`. Returns once the email is on disk; an
    /// error means it was NOT buffered.
    fn buffer(
        &self,
        email: &Email,
        retry: &RetrySettings,
        first_attempt: &FirstAttempt,
    ) -> Result<BufferedStatus, String>;
}

/// Something the site event log should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyEvent {
    /// A notification failed permanently: returned to the script (at its first attempt) or
    /// parked by store-and-forward (at a retry).
    Rejected {
        /// The list.
        list: String,
        /// The delivery id.
        delivery_id: String,
        /// Whether it was a store-and-forward retry rather than the script's own attempt.
        retry: bool,
        /// The error, as the script would see it (no secret in it).
        error: NotifyError,
    },
    /// A notification failed transiently and is buffered for retries.
    Buffered {
        /// The list.
        list: String,
        /// The delivery id.
        delivery_id: String,
        /// Why the first attempt failed.
        failure: SmtpFailure,
    },
}

/// The site event log.
pub trait EventLog: Send + Sync {
    /// Record an event.
    fn record(&self, event: &NotifyEvent);
}

/// An event log that drops everything (for tools that have no site, and for tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEventLog;

impl EventLog for NoEventLog {
    fn record(&self, _event: &NotifyEvent) {}
}
