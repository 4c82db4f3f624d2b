//! The store-and-forward data model: what a buffered message is, its status, its
//! retry policy and its attempt history.
//!
//! Every type here is plain data with serde derives: the same JSON shape is returned by
//! status queries and written by `export` (one message per line), so an export can always be
//! imported back. LMDB stores a compact binary record of [`Message`] instead
//! ([`super::record`]); format 1 stored this JSON, which is still read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::error::SafError;

/// Milliseconds since the Unix epoch (UTC). Every timestamp of the engine uses this unit.
pub type UnixMillis = u64;

/// The wall clock now, in [`UnixMillis`].
pub fn now_ms() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// Longest message id, in bytes (LMDB keys are at most 511 bytes and the id is part of the
/// index keys together with the target).
pub const MAX_ID_BYTES: usize = 200;
/// Longest target, in bytes.
pub const MAX_TARGET_BYTES: usize = 200;
/// Longest response body excerpt kept in an attempt record, in bytes.
pub const MAX_RESPONSE_BODY_BYTES: usize = 1024;
/// Longest error text kept in an attempt record or in `last_error`, in bytes.
pub const MAX_ERROR_BYTES: usize = 512;

/// Which producer a message comes from; each category has its own deliverer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// `ExternalSystem.CachedCall`: the payload is the call to redo.
    ExternalCall,
    /// `Notify.To(list).Send`: the payload is the email to send.
    Notification,
    /// `Database.CachedWrite`: the payload holds connection name, SQL and parameter values.
    CachedWrite,
    /// An outbound webhook.
    Webhook,
}

impl Category {
    /// Every category, in a fixed order.
    pub const ALL: [Category; 4] = [
        Category::ExternalCall,
        Category::Notification,
        Category::CachedWrite,
        Category::Webhook,
    ];

    /// The snake_case name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::ExternalCall => "external_call",
            Category::Notification => "notification",
            Category::CachedWrite => "cached_write",
            Category::Webhook => "webhook",
        }
    }
}

impl std::str::FromStr for Category {
    type Err = SafError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|category| category.as_str() == text)
            .ok_or_else(|| SafError::InvalidInput(format!("unknown category `{text}`")))
    }
}

/// Where a message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Accepted and not yet attempted (or put back by a manual retry).
    Pending,
    /// At least one attempt failed transiently; another is scheduled.
    Retrying,
    /// Delivered; kept for the retention period, then pruned.
    Delivered,
    /// Given up: a permanent failure, or the retries were exhausted. Waits for an operator.
    Parked,
    /// Dropped by an operator; kept for the retention period, then pruned.
    Discarded,
}

impl Status {
    /// Every status, in a fixed order.
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Retrying,
        Status::Delivered,
        Status::Parked,
        Status::Discarded,
    ];

    /// The snake_case name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Retrying => "retrying",
            Status::Delivered => "delivered",
            Status::Parked => "parked",
            Status::Discarded => "discarded",
        }
    }

    /// Whether the forwarder still works on messages in this status.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Pending | Status::Retrying)
    }
}

impl std::str::FromStr for Status {
    type Err = SafError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or_else(|| SafError::InvalidInput(format!("unknown status `{text}`")))
    }
}

/// How long to wait before each retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    /// The same interval before every retry (the seed's "fixed time between retries").
    Fixed {
        /// Interval in milliseconds.
        interval_ms: u64,
    },
    /// Retry `n` (1-based) waits `delays_ms[n - 1]`; retries past the end of the list reuse
    /// its last entry.
    Schedule {
        /// Delays in milliseconds; never empty.
        delays_ms: Vec<u64>,
    },
}

/// The retry settings of one message, copied from its target's configuration when the
/// message is buffered, so that later configuration changes do not rewrite history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// How many retries follow the first attempt. A message is parked when its first attempt
    /// and `max_retries` retries have all failed: `1 + max_retries` attempts in all.
    pub max_retries: u32,
    /// The delay before each retry.
    pub backoff: Backoff,
}

impl RetryPolicy {
    /// `max_retries` retries, `interval` apart (the seed's retry settings).
    pub fn fixed(max_retries: u32, interval: Duration) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            backoff: Backoff::Fixed {
                interval_ms: interval.as_millis() as u64,
            },
        }
    }

    /// `max_retries` retries following a list of delays. An empty list means retry at once.
    pub fn schedule(max_retries: u32, delays: &[Duration]) -> RetryPolicy {
        let mut delays_ms: Vec<u64> = delays.iter().map(|d| d.as_millis() as u64).collect();
        if delays_ms.is_empty() {
            delays_ms.push(0);
        }
        RetryPolicy {
            max_retries,
            backoff: Backoff::Schedule { delays_ms },
        }
    }

    /// The delay before retry number `retry` (1-based), before jitter.
    pub fn delay_before_retry(&self, retry: u32) -> Duration {
        let ms = match &self.backoff {
            Backoff::Fixed { interval_ms } => *interval_ms,
            Backoff::Schedule { delays_ms } => {
                let index = (retry.max(1) as usize - 1).min(delays_ms.len().saturating_sub(1));
                delays_ms.get(index).copied().unwrap_or(0)
            }
        };
        Duration::from_millis(ms)
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The peer accepted the message.
    Delivered,
    /// A failure worth retrying (connection refused, timeout, HTTP 408/429/5xx, SMTP 4xx).
    Transient,
    /// A failure that a retry cannot fix (other HTTP 4xx, SMTP 5xx).
    Permanent,
}

/// One delivery attempt, as kept in a message's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When the attempt started.
    pub at_ms: UnixMillis,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The protocol status code, where there was one (HTTP status, SMTP reply code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// A short error text for failures (at most [`MAX_ERROR_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the attempt took.
    pub duration_ms: u64,
    /// The start of the peer's response body, for deliverers that keep it (webhooks keep
    /// at most [`MAX_RESPONSE_BODY_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
}

impl Attempt {
    /// An attempt record, with `error` shortened to [`MAX_ERROR_BYTES`].
    pub fn new(
        at_ms: UnixMillis,
        outcome: AttemptOutcome,
        status_code: Option<u16>,
        error: Option<String>,
        duration: Duration,
    ) -> Attempt {
        Attempt {
            at_ms,
            outcome,
            status_code,
            error: error.map(|text| shorten(&text)),
            duration_ms: duration.as_millis() as u64,
            response_body: None,
        }
    }
}

/// A buffered message: everything needed to redo the operation, and its delivery state.
///
/// This is the stored record (in binary, `saf/record.rs`), the status report and the export
/// line at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    /// Stable id: the caller's idempotency key, or a generated UUIDv7. Every attempt carries
    /// the same id so the peer can deduplicate.
    pub id: String,
    /// Which producer made it, and so which deliverer sends it.
    pub category: Category,
    /// What it is sent to: `System/Method`, a notification list, a connection name.
    pub target: String,
    /// The producer's own description of the operation (opaque JSON).
    pub payload: Box<RawValue>,
    /// Retry settings.
    pub policy: RetryPolicy,
    /// Current status.
    pub status: Status,
    /// When it was buffered.
    pub created_at_ms: UnixMillis,
    /// When it last changed.
    pub updated_at_ms: UnixMillis,
    /// When the next attempt is due (pending and retrying messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at_ms: Option<UnixMillis>,
    /// Attempts made so far, the producer's own first attempt included.
    pub attempts: u32,
    /// Attempts made before the last manual retry: a manual retry gives the message a fresh
    /// budget of `1 + max_retries` attempts and keeps its history.
    #[serde(default)]
    pub attempts_before_requeue: u32,
    /// The error of the last failed attempt (or the reason for parking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The most recent attempts, oldest first (at most the store's history limit; `attempts`
    /// counts them all).
    #[serde(default)]
    pub history: Vec<Attempt>,
}

impl Message {
    /// Parse the payload into the producer's own type.
    pub fn payload_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, SafError> {
        serde_json::from_str(self.payload.get()).map_err(|error| {
            SafError::InvalidInput(format!("payload of message `{}`: {error}", self.id))
        })
    }

    /// Failed attempts that count against the current retry budget.
    pub fn attempts_in_budget(&self) -> u32 {
        self.attempts.saturating_sub(self.attempts_before_requeue)
    }
}

/// The status of one message, without its payload: what a status query by id answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The message id.
    pub id: String,
    /// Its category.
    pub category: Category,
    /// Its target.
    pub target: String,
    /// Its status.
    pub status: Status,
    /// Attempts so far.
    pub attempts: u32,
    /// Attempts left before it is parked (0 once parked, delivered or discarded).
    pub attempts_remaining: u32,
    /// The error of the last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it was buffered.
    pub created_at_ms: UnixMillis,
    /// When it last changed (for a delivered message: when it was delivered).
    pub updated_at_ms: UnixMillis,
    /// When the next attempt is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at_ms: Option<UnixMillis>,
    /// The most recent attempts.
    pub history: Vec<Attempt>,
}

impl From<&Message> for StatusReport {
    fn from(message: &Message) -> StatusReport {
        let budget = 1 + message.policy.max_retries;
        let attempts_remaining = if message.status.is_active() {
            budget.saturating_sub(message.attempts_in_budget())
        } else {
            0
        };
        StatusReport {
            id: message.id.clone(),
            category: message.category,
            target: message.target.clone(),
            status: message.status,
            attempts: message.attempts,
            attempts_remaining,
            last_error: message.last_error.clone(),
            created_at_ms: message.created_at_ms,
            updated_at_ms: message.updated_at_ms,
            next_attempt_at_ms: message.next_attempt_at_ms,
            history: message.history.clone(),
        }
    }
}

/// A message to buffer, as a producer hands it over.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The idempotency key; `None` generates a UUIDv7. Enqueueing an id that is already in
    /// the buffer does nothing and reports a duplicate.
    pub id: Option<String>,
    /// The producer's category.
    pub category: Category,
    /// The target (`System/Method`, list name, connection name).
    pub target: String,
    /// What the deliverer needs to redo the operation.
    pub payload: Box<RawValue>,
    /// Retry settings of the target.
    pub policy: RetryPolicy,
    /// The producer's own first attempt, when it already tried once (`CachedCall` tries the
    /// call before buffering it): the message then starts as `retrying` with one attempt
    /// spent, or parked at once if that was its whole budget.
    pub prior_attempt: Option<PriorAttempt>,
    /// Do not attempt before this time (default: at once).
    pub not_before_ms: Option<UnixMillis>,
}

/// A failed attempt the producer made before buffering.
#[derive(Debug, Clone)]
pub struct PriorAttempt {
    /// The attempt (its outcome should be transient: a permanent failure is returned to the
    /// script and never buffered).
    pub attempt: Attempt,
    /// The peer's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
}

impl NewMessage {
    /// A message with a payload serialised from any serde value.
    pub fn new(
        category: Category,
        target: impl Into<String>,
        payload: &impl Serialize,
        policy: RetryPolicy,
    ) -> Result<NewMessage, SafError> {
        let payload = serde_json::value::to_raw_value(payload)
            .map_err(|error| SafError::InvalidInput(format!("payload is not JSON: {error}")))?;
        Ok(NewMessage {
            id: None,
            category,
            target: target.into(),
            payload,
            policy,
            prior_attempt: None,
            not_before_ms: None,
        })
    }

    /// Use a caller-given idempotency key as the id.
    pub fn with_id(mut self, id: impl Into<String>) -> NewMessage {
        self.id = Some(id.into());
        self
    }

    /// Record the producer's own failed first attempt.
    pub fn with_prior_attempt(
        mut self,
        attempt: Attempt,
        retry_after: Option<Duration>,
    ) -> NewMessage {
        self.prior_attempt = Some(PriorAttempt {
            attempt,
            retry_after,
        });
        self
    }
}

/// What `enqueue` answers once the message is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The message id (generated or the caller's).
    pub id: String,
    /// True when a message with this id was already buffered: nothing was written.
    pub duplicate: bool,
    /// The status of the (new or existing) message.
    pub status: Status,
}

/// Which messages a query or an operator action applies to. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListFilter {
    /// Statuses to include (empty: every status).
    #[serde(default)]
    pub statuses: Vec<Status>,
    /// Only this category.
    #[serde(default)]
    pub category: Option<Category>,
    /// Only this target.
    #[serde(default)]
    pub target: Option<String>,
    /// Only messages created at or after this time.
    #[serde(default)]
    pub created_from_ms: Option<UnixMillis>,
    /// Only messages created before this time.
    #[serde(default)]
    pub created_before_ms: Option<UnixMillis>,
    /// At most this many results (`list` only; default 1,000).
    #[serde(default)]
    pub limit: Option<usize>,
}

impl ListFilter {
    /// Everything in one status.
    pub fn status(status: Status) -> ListFilter {
        ListFilter {
            statuses: vec![status],
            ..ListFilter::default()
        }
    }

    /// Whether a message matches every field but the status list.
    pub(crate) fn matches_fields(&self, message: &Message) -> bool {
        self.category.is_none_or(|c| c == message.category)
            && self.target.as_deref().is_none_or(|t| t == message.target)
            && self
                .created_from_ms
                .is_none_or(|from| message.created_at_ms >= from)
            && self
                .created_before_ms
                .is_none_or(|before| message.created_at_ms < before)
    }

    /// Whether a message matches the whole filter.
    pub fn matches(&self, message: &Message) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&message.status))
            && self.matches_fields(message)
    }
}

/// One message by id, or every message matching a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Exactly this message.
    Id(String),
    /// Every message matching the filter (its `limit` is ignored).
    Filter(ListFilter),
}

/// Shorten an error text to [`MAX_ERROR_BYTES`] at a character boundary.
pub fn shorten(text: &str) -> String {
    shorten_to(text, MAX_ERROR_BYTES)
}

/// Shorten a text to at most `max` bytes (at least 3) at a character boundary, marking the
/// cut with `...`.
pub fn shorten_to(text: &str, max: usize) -> String {
    let max = max.max(3);
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_reuses_its_last_delay() {
        let policy = RetryPolicy::schedule(5, &[Duration::from_secs(1), Duration::from_secs(10)]);
        assert_eq!(policy.delay_before_retry(1), Duration::from_secs(1));
        assert_eq!(policy.delay_before_retry(2), Duration::from_secs(10));
        assert_eq!(policy.delay_before_retry(7), Duration::from_secs(10));
    }

    #[test]
    fn shorten_keeps_char_boundaries() {
        let long = "é".repeat(600);
        let short = shorten(&long);
        assert!(short.len() <= MAX_ERROR_BYTES);
        assert!(short.ends_with("..."));
    }

    #[test]
    fn names_round_trip() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>().ok(), Some(status));
        }
        for category in Category::ALL {
            assert_eq!(category.as_str().parse::<Category>().ok(), Some(category));
        }
        assert!("nope".parse::<Status>().is_err());
    }
}
