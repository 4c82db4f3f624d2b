//! `scl run --dry-run`: the exact request each call would send, with secrets masked, and a
//! transport and an outbox that send and store nothing.
//!
//! In a dry run, `ExternalSystem.Call` returns `null` and `ExternalSystem.CachedCall` returns
//! `{id, status: "delivered"}` after the request is described; nothing leaves the process.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::classify::{HttpResponse, TransportError};
use super::ports::{BufferedStatus, HttpTransport, Outbox, OutboxCall};
use super::request::PreparedRequest;

/// A request as a dry run shows it: method, URL, headers (secrets masked), body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DryRunRequest {
    /// The system's name.
    pub system: String,
    /// The HTTP method.
    pub method: String,
    /// The full URL.
    pub url: String,
    /// Header names and values, in the order they would be sent; secret values are `***`.
    pub headers: Vec<(String, String)>,
    /// The body exactly as it would be sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl DryRunRequest {
    /// Describe a prepared request to `system`.
    pub fn describe(system: &str, request: &PreparedRequest) -> DryRunRequest {
        DryRunRequest {
            system: system.to_owned(),
            method: request.verb.as_str().to_owned(),
            url: request.url.clone(),
            headers: request
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.masked().to_owned()))
                .collect(),
            body: request.body.clone(),
        }
    }
}

impl fmt::Display for DryRunRequest {
    /// The request in HTTP/1.1 message style:
    ///
    /// ```text
    /// POST http://127.0.0.1:18080/anything/readings
    /// Accept: application/json
    /// X-Api-Key: ***
    ///
    /// {"asset":"P1","value":2.5}
    /// ```
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(formatter, "{} {}", self.method, self.url)?;
        for (name, value) in &self.headers {
            writeln!(formatter, "{name}: {value}")?;
        }
        if let Some(body) = &self.body {
            writeln!(formatter)?;
            writeln!(formatter, "{body}")?;
        }
        Ok(())
    }
}

/// A transport that sends nothing: it hands each request's description to a sink and
/// answers `200` with an empty body.
pub struct DryRunTransport {
    sink: Box<dyn Fn(DryRunRequest) + Send + Sync>,
}

impl DryRunTransport {
    /// A dry-run transport that gives every description to `sink` (which prints it).
    pub fn new(sink: impl Fn(DryRunRequest) + Send + Sync + 'static) -> DryRunTransport {
        DryRunTransport {
            sink: Box::new(sink),
        }
    }
}

impl HttpTransport for DryRunTransport {
    fn send(
        &self,
        system: &str,
        request: &PreparedRequest,
        _timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        (self.sink)(DryRunRequest::describe(system, request));
        Ok(HttpResponse {
            status: 200,
            ..HttpResponse::default()
        })
    }
}

/// An outbox that stores nothing, for dry runs: ids are `dry-run-1`, `dry-run-2`, …
#[derive(Debug, Default)]
pub struct DryRunOutbox {
    next: AtomicU64,
}

impl Outbox for DryRunOutbox {
    fn new_id(&self) -> String {
        format!("dry-run-{}", self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn buffer(&self, _call: OutboxCall) -> Result<BufferedStatus, String> {
        Err("a dry run buffers nothing".to_owned())
    }
}
