//! Errors of external-system calls and the transient/permanent classification (KDD-ext-3):
//!
//! | outcome | class |
//! | --- | --- |
//! | 2xx | success (204 or an empty body is `null`) |
//! | connection refused, reset, DNS failure, broken response | transient |
//! | no complete response within the system's timeout | transient (`timeout`) |
//! | 408, 429, 5xx | transient (`Retry-After` kept) |
//! | 3xx (redirects are not followed), other 4xx, other statuses | permanent |
//! | request that cannot be built, payload over the limit, unknown system or method | permanent |
//!
//! Every error has a kind, a stable code, the HTTP status where there was one, and a short
//! message. Messages name the system and method and never a secret: the module passes them
//! through [`redact`] before they leave it.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde_json::Value;

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Retrying may succeed: `CachedCall` buffers it.
    Transient,
    /// Retrying cannot help: both modes return it to the script at once.
    Permanent,
}

impl FailureKind {
    /// The error kind the script sees (`"transient"` or `"permanent"`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::Permanent => "permanent",
        }
    }
}

/// What went wrong, as a stable code the script can test (`e.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The peer answered with a non-2xx status (`e.status` holds it).
    HttpStatus,
    /// The peer answered with a redirect; redirects are not followed.
    Redirect,
    /// No connection (refused, reset, DNS), or the response broke off.
    Connection,
    /// No complete response within the system's timeout.
    Timeout,
    /// The payload is larger than the system's `max_payload_bytes`.
    PayloadTooLarge,
    /// The deployment defines no such system.
    UnknownSystem,
    /// The system defines no such method.
    UnknownMethod,
    /// The parameters cannot be encoded for the method (a missing path parameter, a GET
    /// with non-object parameters, …).
    InvalidParams,
    /// A 2xx response whose body is not JSON, or larger than the response limit.
    InvalidResponse,
    /// The system's definition is unusable (a missing environment variable, …) or the
    /// request could not be built.
    Configuration,
    /// `CachedCall` failed transiently and the call could not be buffered either.
    BufferFailed,
    /// The call was made where it cannot block (on an async runtime thread).
    WrongThread,
}

impl ErrorCode {
    /// The code the script sees.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::HttpStatus => "http_status",
            ErrorCode::Redirect => "redirect",
            ErrorCode::Connection => "connection",
            ErrorCode::Timeout => "timeout",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnknownSystem => "unknown_system",
            ErrorCode::UnknownMethod => "unknown_method",
            ErrorCode::InvalidParams => "invalid_params",
            ErrorCode::InvalidResponse => "invalid_response",
            ErrorCode::Configuration => "configuration",
            ErrorCode::BufferFailed => "buffer_failed",
            ErrorCode::WrongThread => "wrong_thread",
        }
    }
}

/// A failed call, as the script receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalError {
    /// Transient or permanent.
    pub kind: FailureKind,
    /// What went wrong.
    pub code: ErrorCode,
    /// A short description naming the system and method; never a secret.
    pub message: String,
    /// The HTTP status, when the peer answered.
    pub status: Option<u16>,
    /// The peer's `Retry-After`, when it sent one with a transient status.
    pub retry_after: Option<Duration>,
}

impl ExternalError {
    /// A permanent error without a status.
    pub fn permanent(code: ErrorCode, message: impl Into<String>) -> ExternalError {
        ExternalError {
            kind: FailureKind::Permanent,
            code,
            message: message.into(),
            status: None,
            retry_after: None,
        }
    }

    /// A transient error without a status.
    pub fn transient(code: ErrorCode, message: impl Into<String>) -> ExternalError {
        ExternalError {
            kind: FailureKind::Transient,
            code,
            message: message.into(),
            status: None,
            retry_after: None,
        }
    }

    /// The script's `Error` record: `{kind, code, message, status}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "kind": self.kind.as_str(),
            "code": self.code.as_str(),
            "message": self.message,
            "status": self.status,
        })
    }
}

impl fmt::Display for ExternalError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} ({}, {})",
            self.message,
            self.kind.as_str(),
            self.code.as_str()
        )
    }
}

impl std::error::Error for ExternalError {}

/// A complete HTTP response, as a transport hands it back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The whole body.
    pub body: Vec<u8>,
}

/// Why a transport got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// No complete response within the timeout.
    Timeout,
    /// No connection, or the connection broke (refused, reset, DNS, truncated response).
    Connection(String),
    /// The request could not be built or sent as given (invalid URL or header).
    InvalidRequest(String),
    /// The response body was larger than the transport's limit (bytes).
    ResponseTooLarge(usize),
    /// The call was made on a thread that must not block.
    WrongThread(String),
}

/// How a status code is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx.
    Success,
    /// 408, 429, 5xx.
    Transient,
    /// Everything else.
    Permanent,
}

/// Classify a status code (KDD-ext-3).
pub fn classify_status(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        408 | 429 | 500..=599 => StatusClass::Transient,
        _ => StatusClass::Permanent,
    }
}

/// Longest excerpt of a peer's error body quoted in a message.
const BODY_EXCERPT_CHARS: usize = 200;

/// Turn a response into the body of a success or into an error. `label` names the call
/// (`MES.PostReading`); `now` is used for `Retry-After` dates.
pub fn check_response(
    label: &str,
    response: HttpResponse,
    now: SystemTime,
) -> Result<HttpResponse, ExternalError> {
    let status = response.status;
    let class = classify_status(status);
    if class == StatusClass::Success {
        return Ok(response);
    }
    let excerpt = body_excerpt(&response.body);
    let suffix = if excerpt.is_empty() {
        String::new()
    } else {
        format!(": {excerpt}")
    };
    let (kind, code, message) = match (class, status) {
        (_, 300..=399) => (
            FailureKind::Permanent,
            ErrorCode::Redirect,
            format!(
                "{label}: the peer answered HTTP {status} (a redirect; redirects are not followed, \
                 check the system's base_url and the method's path)"
            ),
        ),
        (StatusClass::Transient, _) => (
            FailureKind::Transient,
            ErrorCode::HttpStatus,
            format!("{label}: HTTP {status}{}{suffix}", reason(status)),
        ),
        _ => (
            FailureKind::Permanent,
            ErrorCode::HttpStatus,
            format!("{label}: HTTP {status}{}{suffix}", reason(status)),
        ),
    };
    let retry_after = match kind {
        FailureKind::Transient => response
            .retry_after
            .as_deref()
            .and_then(|value| parse_retry_after(value, now)),
        FailureKind::Permanent => None,
    };
    Err(ExternalError {
        kind,
        code,
        message,
        status: Some(status),
        retry_after,
    })
}

/// The error for a transport failure. `timeout` is the system's timeout, for the message.
pub fn transport_failure(label: &str, error: TransportError, timeout: Duration) -> ExternalError {
    match error {
        TransportError::Timeout => ExternalError::transient(
            ErrorCode::Timeout,
            format!(
                "{label}: no complete response within {} (the system's timeout)",
                seconds_text(timeout)
            ),
        ),
        TransportError::Connection(detail) => {
            ExternalError::transient(ErrorCode::Connection, format!("{label}: {detail}"))
        }
        TransportError::InvalidRequest(detail) => ExternalError::permanent(
            ErrorCode::Configuration,
            format!("{label}: the request cannot be sent: {detail}"),
        ),
        TransportError::ResponseTooLarge(limit) => ExternalError::permanent(
            ErrorCode::InvalidResponse,
            format!("{label}: the response body is larger than {limit} bytes"),
        ),
        TransportError::WrongThread(detail) => {
            ExternalError::permanent(ErrorCode::WrongThread, format!("{label}: {detail}"))
        }
    }
}

/// The JSON value of a successful response body: `null` when it is empty (a 204, say).
pub fn response_json(label: &str, response: &HttpResponse) -> Result<Value, ExternalError> {
    let body = response.body.trim_ascii();
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|error| {
        let content_type = response.content_type.as_deref().unwrap_or("no content type");
        ExternalError {
            kind: FailureKind::Permanent,
            code: ErrorCode::InvalidResponse,
            message: format!(
                "{label}: HTTP {} answered with a body that is not JSON ({content_type}; {error}): {}",
                response.status,
                body_excerpt(body)
            ),
            status: Some(response.status),
            retry_after: None,
        }
    })
}

/// Parse `Retry-After`: a number of seconds, or an HTTP date (a date in the past is zero).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Replace every secret text in `text` with `***`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut redacted = text.to_owned();
    for secret in secrets {
        if !secret.is_empty() && redacted.contains(secret.as_str()) {
            redacted = redacted.replace(secret.as_str(), "***");
        }
    }
    redacted
}

/// The start of a body as one line of text.
fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let collapsed: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= BODY_EXCERPT_CHARS {
        collapsed
    } else {
        let cut: String = collapsed.chars().take(BODY_EXCERPT_CHARS).collect();
        format!("{cut}…")
    }
}

fn seconds_text(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => " Bad Request",
        401 => " Unauthorized",
        403 => " Forbidden",
        404 => " Not Found",
        405 => " Method Not Allowed",
        408 => " Request Timeout",
        409 => " Conflict",
        413 => " Content Too Large",
        422 => " Unprocessable Content",
        429 => " Too Many Requests",
        500 => " Internal Server Error",
        502 => " Bad Gateway",
        503 => " Service Unavailable",
        504 => " Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16) -> HttpResponse {
        HttpResponse {
            status,
            ..HttpResponse::default()
        }
    }

    #[test]
    fn statuses_are_classified_as_the_seed_says() {
        for status in [200, 201, 204, 299] {
            assert_eq!(classify_status(status), StatusClass::Success, "{status}");
        }
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify_status(status), StatusClass::Transient, "{status}");
        }
        for status in [100, 301, 304, 400, 401, 403, 404, 409, 413, 422] {
            assert_eq!(classify_status(status), StatusClass::Permanent, "{status}");
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_after_is_kept_only_for_transient_statuses() {
        let mut busy = response(429);
        busy.retry_after = Some("3".into());
        let error = check_response("S.M", busy, SystemTime::now()).unwrap_err();
        assert_eq!(
            (error.kind, error.status),
            (FailureKind::Transient, Some(429))
        );
        assert_eq!(error.retry_after, Some(Duration::from_secs(3)));
        let mut bad = response(400);
        bad.retry_after = Some("3".into());
        let error = check_response("S.M", bad, SystemTime::now()).unwrap_err();
        assert_eq!(
            (error.kind, error.retry_after),
            (FailureKind::Permanent, None)
        );
    }

    #[test]
    fn redirects_are_permanent() {
        let error = check_response("S.M", response(302), SystemTime::now()).unwrap_err();
        assert_eq!(
            (error.kind, error.code),
            (FailureKind::Permanent, ErrorCode::Redirect)
        );
    }

    #[test]
    fn empty_bodies_are_null_and_bad_json_is_an_error() {
        assert_eq!(response_json("S.M", &response(204)).unwrap(), Value::Null);
        let mut text = response(200);
        text.body = b"<html>hi</html>".to_vec();
        let error = response_json("S.M", &text).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidResponse);
    }

    #[test]
    fn redact_replaces_every_secret() {
        let secrets = vec!["k3y".to_owned(), String::new()];
        assert_eq!(redact("a k3y and k3y", &secrets), "a *** and ***");
    }
}
