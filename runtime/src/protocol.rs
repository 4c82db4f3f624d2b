//! The site's internal API (central → site): the request and response types
//! on the wire and the client central uses. The server side is in
//! [`crate::site::api`].
//!
//! Every request carries the shared token in [`TOKEN_HEADER`]; the site
//! compares it in constant time. Errors are `{"error", "code", "kind"}` with
//! an HTTP status: 401 bad token, 404 unknown instance or script (kind
//! `not_found`), 400 bad parameters (kind `type`), 500 a failed script (its
//! error kind and code), 503 a site that is starting or stopping.
//!
//! | route | body | answer |
//! | --- | --- | --- |
//! | `POST /internal/instances/{code}/call` | [`CallRequest`] | [`CallResponse`] |
//! | `POST /internal/instances/{code}/attributes/get` | [`GetAttributesRequest`] | [`AttributesResponse`] |
//! | `POST /internal/instances/{code}/attributes/set` | [`SetAttributesRequest`] | `{}` |
//! | `PUT /internal/bundle` | [`Bundle`] | [`BundleAccepted`] |
//! | `GET /internal/bundle` | — | [`BundleAccepted`] (the running version) |
//! | `GET /internal/deliveries/{id}` | — | [`StatusReport`], or 404 [`UNKNOWN_DELIVERY`] |
//! | `GET /admin/runs?…` | — | the execution log ([`crate::runs::RunRecord`]s, newest first) |

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::saf::StatusReport;

/// The header with the shared central↔site token.
pub const TOKEN_HEADER: &str = "x-scl-site-token";

/// The error code of a delivery id the site's buffer does not hold.
pub const UNKNOWN_DELIVERY: &str = "unknown_delivery";

/// Run a script of an instance (`Route.To(code).Call(script, params)`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CallRequest {
    pub script: String,
    /// `main`'s parameters by name.
    #[serde(default = "empty_object")]
    pub params: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CallResponse {
    /// The script's result (`null` for `void`).
    pub result: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GetAttributesRequest {
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttributesResponse {
    pub values: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SetAttributesRequest {
    pub values: BTreeMap<String, serde_json::Value>,
}

/// The error body of every internal and public route.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: String,
    pub code: String,
    /// The script error kind (`not_found`, `type`, `script`, …), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A versioned deployment: the deployment file's text and every script it
/// names, by the path the file gives. Central builds it; sites persist the
/// one they accepted and restart from it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Hex SHA-256 over the deployment text and the scripts.
    pub version: String,
    pub deployment: String,
    /// Script path as written in the deployment file → source text.
    pub scripts: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BundleAccepted {
    pub version: String,
}

/// An error from a site, as the calling script sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteError {
    /// Script error kind: `unreachable`, `not_found`, `type`, `unauthorized`,
    /// `timeout`, or the remote script's own kind.
    pub kind: String,
    pub code: String,
    pub message: String,
    /// The HTTP status the site answered with, if it answered.
    pub status: Option<u16>,
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}/{})", self.message, self.kind, self.code)
    }
}

impl std::error::Error for RemoteError {}

/// Central's answer to a node of a pair asking whether central reaches the *other* node
/// (`GET /internal/sites/{site}/witness?asking=primary|standby`, with [`TOKEN_HEADER`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct WitnessAnswer {
    /// The other node answered `/health` at all.
    pub reachable: bool,
    /// It answered as the active node (200; a standby answers 503).
    pub active: bool,
}

/// A future of a [`LocalSite`] call.
pub type LocalFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, RemoteError>> + Send + 'a>>;

/// A site running in this process (`scl serve --role all`), reached without HTTP: the
/// instance routes of the internal API as typed calls. Each answers what its route
/// answers, and an error is the [`RemoteError`] the HTTP client makes of the route's error
/// answer (same kind, code, message and status). Implemented by [`crate::site::Site`].
pub trait LocalSite: Send + Sync {
    /// `attributes/get`: the values of `names`, in that order.
    fn get_attributes(
        &self,
        instance: &str,
        names: &[String],
    ) -> Result<Vec<serde_json::Value>, RemoteError>;

    /// `call`: runs `script` of `instance` with `params` and waits for its result.
    fn call<'a>(
        &'a self,
        instance: &'a str,
        script: &'a str,
        params: serde_json::Value,
    ) -> LocalFuture<'a, serde_json::Value>;

    /// `attributes/set`: writes `values` through the instance and waits for it.
    fn set_attributes<'a>(
        &'a self,
        instance: &'a str,
        values: Vec<(String, serde_json::Value)>,
    ) -> LocalFuture<'a, ()>;
}

/// A site in this process: its router for every route, its typed calls for the instance
/// routes.
#[derive(Clone)]
struct InProcess {
    router: axum::Router,
    site: Arc<dyn LocalSite>,
}

/// Central's client for one site's internal API.
///
/// A site that runs in the same process as central (`scl serve --role all`) can be given
/// to the client ([`SiteClient::in_process`]). The instance routes (`call`,
/// `attributes/get`, `attributes/set`) are then typed calls into the site ([`LocalSite`]):
/// no request, token check or JSON text, with the same answers and errors, and
/// `attributes/get` without waiting at all ([`SiteClient::local`]). Every other request is
/// the same HTTP request (method, path, token header, JSON body) handed to the site's
/// router without a socket, and answered the same way. The site keeps its listener for
/// everything outside the process.
#[derive(Clone)]
pub struct SiteClient {
    site: String,
    /// The site's node URLs: one, or the active/standby pair's two.
    base_urls: Arc<[String]>,
    /// The node that answered last (the active one of a pair).
    active: Arc<AtomicUsize>,
    token: String,
    http: reqwest::Client,
    /// The site when it runs in this process.
    local: Option<InProcess>,
    /// The bound of a request without a shorter deadline (the HTTP client's own timeout).
    timeout: Duration,
}

impl std::fmt::Debug for SiteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteClient")
            .field("site", &self.site)
            .field("base_urls", &self.base_urls)
            .field("in_process", &self.local.is_some())
            .finish_non_exhaustive()
    }
}

/// The base URL requests to an in-process site are built with (only its path is used).
const IN_PROCESS_BASE: &str = "http://in-process.scl";

impl SiteClient {
    /// A client for the site `site` at `base_url` (no trailing slash needed).
    /// `timeout` bounds each request; the method's own timeout is shorter when
    /// the caller passes one to [`SiteClient::with_deadline`].
    pub fn new(
        site: &str,
        base_url: &str,
        token: &str,
        timeout: Duration,
    ) -> Result<SiteClient, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| format!("site `{site}`: cannot build the HTTP client: {e}"))?;
        Ok(SiteClient {
            site: site.to_owned(),
            base_urls: Arc::from(vec![base_url.trim_end_matches('/').to_owned()]),
            active: Arc::new(AtomicUsize::new(0)),
            token: token.to_owned(),
            http,
            local: None,
            timeout,
        })
    }

    /// The same client for a site running in this process: instance requests go to `site`
    /// as typed calls, the others to `router` (the site's [`crate::site::api::router`]),
    /// instead of over loopback HTTP.
    pub fn in_process(mut self, router: axum::Router, site: Arc<dyn LocalSite>) -> SiteClient {
        self.local = Some(InProcess { router, site });
        self
    }

    /// The site, when it runs in this process.
    pub fn local(&self) -> Option<&dyn LocalSite> {
        self.local.as_ref().map(|local| &*local.site)
    }

    /// The same client for a site that runs as an active/standby pair: a request goes to
    /// the node that answered last; when that node refuses the connection or answers 503
    /// `standby`, the other node is tried and remembered.
    pub fn with_standby(mut self, standby_url: &str) -> SiteClient {
        let mut urls = self.base_urls.to_vec();
        urls.push(standby_url.trim_end_matches('/').to_owned());
        self.base_urls = Arc::from(urls);
        self
    }

    /// The site's name.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// Whether `token` is the site's token (constant time in its content).
    pub fn token_matches(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.token.as_bytes().ct_eq(token.as_bytes()))
    }

    /// For the witness of a pair: probes `GET /health` of the node other than `asking`
    /// (0 the primary, 1 the standby) within `timeout`. `None` when the site is no pair.
    pub async fn witness(&self, asking: usize, timeout: Duration) -> Option<WitnessAnswer> {
        if self.base_urls.len() != 2 || asking > 1 {
            return None;
        }
        let other = &self.base_urls[1 - asking];
        let answer = match self
            .http
            .get(format!("{other}/health"))
            .timeout(timeout)
            .send()
            .await
        {
            Ok(response) => WitnessAnswer {
                reachable: true,
                active: response.status().is_success(),
            },
            Err(_) => WitnessAnswer {
                reachable: false,
                active: false,
            },
        };
        Some(answer)
    }

    pub async fn call(
        &self,
        instance: &str,
        script: &str,
        params: serde_json::Value,
        deadline: Option<Duration>,
    ) -> Result<serde_json::Value, RemoteError> {
        if let Some(local) = self.local() {
            return self
                .in_time(deadline, local.call(instance, script, params))
                .await;
        }
        let body = CallRequest {
            script: script.to_owned(),
            params,
        };
        let path = format!("/internal/instances/{}/call", encode(instance));
        let response: CallResponse = self.post(&path, &body, deadline).await?;
        Ok(response.result)
    }

    pub async fn get_attributes(
        &self,
        instance: &str,
        names: Vec<String>,
        deadline: Option<Duration>,
    ) -> Result<BTreeMap<String, serde_json::Value>, RemoteError> {
        if let Some(local) = self.local() {
            let values = local.get_attributes(instance, &names)?;
            return Ok(names.into_iter().zip(values).collect());
        }
        let path = format!("/internal/instances/{}/attributes/get", encode(instance));
        let response: AttributesResponse = self
            .post(&path, &GetAttributesRequest { names }, deadline)
            .await?;
        Ok(response.values)
    }

    pub async fn set_attributes(
        &self,
        instance: &str,
        values: BTreeMap<String, serde_json::Value>,
        deadline: Option<Duration>,
    ) -> Result<(), RemoteError> {
        if let Some(local) = self.local() {
            let values = values.into_iter().collect();
            return self
                .in_time(deadline, local.set_attributes(instance, values))
                .await;
        }
        let path = format!("/internal/instances/{}/attributes/set", encode(instance));
        let _: serde_json::Value = self
            .post(&path, &SetAttributesRequest { values }, deadline)
            .await?;
        Ok(())
    }

    pub async fn push_bundle(&self, bundle: &Bundle) -> Result<BundleAccepted, RemoteError> {
        self.send(|base| {
            self.http
                .put(format!("{base}/internal/bundle"))
                .header(TOKEN_HEADER, &self.token)
                .json(bundle)
        })
        .await
    }

    /// The buffer's record of a delivery (`Ok(None)` when the site has none).
    pub async fn delivery(&self, id: &str) -> Result<Option<StatusReport>, RemoteError> {
        let path = format!("/internal/deliveries/{}", encode(id));
        let request = |base: &str| {
            self.http
                .get(format!("{base}{path}"))
                .header(TOKEN_HEADER, &self.token)
        };
        match self.send(request).await {
            Ok(report) => Ok(Some(report)),
            Err(error) if error.status == Some(404) && error.code == UNKNOWN_DELIVERY => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The site's execution log (`GET /admin/runs` with the same query).
    pub async fn runs(
        &self,
        query: &[(String, String)],
    ) -> Result<Vec<crate::runs::RunRecord>, RemoteError> {
        self.send(|base| {
            self.http
                .get(format!("{base}/admin/runs"))
                .query(query)
                .header(TOKEN_HEADER, &self.token)
        })
        .await
    }

    /// The deliveries of one webhook subscription buffered on the site
    /// (`GET /internal/webhooks/{name}/deliveries` with `status`/`limit`).
    pub async fn webhook_deliveries(
        &self,
        name: &str,
        query: &[(String, String)],
    ) -> Result<Vec<crate::webhooks::DeliveryView>, RemoteError> {
        let path = format!("/internal/webhooks/{}/deliveries", encode(name));
        self.send(|base| {
            self.http
                .get(format!("{base}{path}"))
                .query(query)
                .header(TOKEN_HEADER, &self.token)
        })
        .await
    }

    pub async fn bundle_version(&self) -> Result<BundleAccepted, RemoteError> {
        self.send(|base| {
            self.http
                .get(format!("{base}/internal/bundle"))
                .header(TOKEN_HEADER, &self.token)
        })
        .await
    }

    async fn post<B: Serialize, R: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        body: &B,
        deadline: Option<Duration>,
    ) -> Result<R, RemoteError> {
        self.send(|base| {
            let request = self
                .http
                .post(format!("{base}{path}"))
                .header(TOKEN_HEADER, &self.token)
                .json(body);
            match deadline {
                Some(deadline) => request.timeout(deadline),
                None => request,
            }
        })
        .await
    }

    /// Sends the request `build` makes for a node's base URL. With a pair, a node that
    /// refuses the connection (the request never left) or answers 503 `standby` (it ran
    /// nothing) is skipped for the other; the node that answers is remembered.
    async fn send<R: for<'de> Deserialize<'de>>(
        &self,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<R, RemoteError> {
        if let Some(InProcess { router, .. }) = &self.local {
            let request = build(IN_PROCESS_BASE)
                .build()
                .map_err(|e| self.transport_error(&e))?;
            let limit = request.timeout().copied().unwrap_or(self.timeout);
            return match tokio::time::timeout(limit, exchange_in_process(router, request)).await {
                Ok(Ok((status, bytes))) => self.answer(status, &bytes),
                Ok(Err(message)) => Err(RemoteError {
                    kind: "unreachable".into(),
                    code: "site_unreachable".into(),
                    message: format!("site `{}`: {message}", self.site),
                    status: None,
                }),
                Err(_) => Err(self.timeout_error()),
            };
        }
        let count = self.base_urls.len();
        let first = self.active.load(Ordering::Relaxed) % count;
        let mut step = 0;
        let (status, bytes) = loop {
            let index = (first + step) % count;
            step += 1;
            let last = step == count;
            let response = match build(&self.base_urls[index]).send().await {
                Ok(response) => response,
                Err(error) if error.is_connect() && !last => continue,
                Err(error) => return Err(self.transport_error(&error)),
            };
            let status = response.status();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| self.transport_error(&e))?;
            let standby = status == reqwest::StatusCode::SERVICE_UNAVAILABLE
                && serde_json::from_slice::<ErrorBody>(&bytes).is_ok_and(|b| b.code == "standby");
            if standby && !last {
                continue;
            }
            if !standby {
                self.active.store(index, Ordering::Relaxed);
            }
            break (status, bytes);
        };
        self.answer(status, &bytes)
    }

    /// The result of a site's answer: its JSON on success, its error otherwise.
    fn answer<R: for<'de> Deserialize<'de>>(
        &self,
        status: reqwest::StatusCode,
        bytes: &[u8],
    ) -> Result<R, RemoteError> {
        if status.is_success() {
            return serde_json::from_slice(bytes).map_err(|e| RemoteError {
                kind: "unreachable".into(),
                code: "bad_response".into(),
                message: format!("site `{}` sent an unreadable answer: {e}", self.site),
                status: Some(status.as_u16()),
            });
        }
        let body: Option<ErrorBody> = serde_json::from_slice(bytes).ok();
        let (kind, code, message) = match body {
            Some(body) => (
                body.kind
                    .unwrap_or_else(|| kind_for_status(status.as_u16())),
                body.code,
                body.error,
            ),
            None => (
                kind_for_status(status.as_u16()),
                format!("http_{}", status.as_u16()),
                format!("site `{}` answered {status}", self.site),
            ),
        };
        Err(RemoteError {
            kind,
            code,
            message,
            status: Some(status.as_u16()),
        })
    }

    /// An in-process call bounded as an HTTP request would be: by `deadline`, else by the
    /// client's own timeout.
    async fn in_time<T>(
        &self,
        deadline: Option<Duration>,
        call: LocalFuture<'_, T>,
    ) -> Result<T, RemoteError> {
        tokio::time::timeout(deadline.unwrap_or(self.timeout), call)
            .await
            .unwrap_or_else(|_| Err(self.timeout_error()))
    }

    fn timeout_error(&self) -> RemoteError {
        RemoteError {
            kind: "timeout".into(),
            code: "site_timeout".into(),
            message: format!("site `{}` did not answer in time", self.site),
            status: None,
        }
    }

    fn transport_error(&self, error: &reqwest::Error) -> RemoteError {
        if error.is_timeout() {
            self.timeout_error()
        } else {
            RemoteError {
                kind: "unreachable".into(),
                code: "site_unreachable".into(),
                message: format!("site `{}` is unreachable", self.site),
                status: None,
            }
        }
    }
}

/// Hands `request` to an in-process site's router: the same method, path, query, headers
/// and body as on the wire, and the answer's status and body.
async fn exchange_in_process(
    router: &axum::Router,
    request: reqwest::Request,
) -> Result<(reqwest::StatusCode, axum::body::Bytes), String> {
    use tower::ServiceExt as _;
    let target = match request.url().query() {
        Some(query) => format!("{}?{query}", request.url().path()),
        None => request.url().path().to_owned(),
    };
    let body = request
        .body()
        .and_then(reqwest::Body::as_bytes)
        .map(axum::body::Bytes::copy_from_slice)
        .unwrap_or_default();
    let mut forwarded = axum::http::Request::builder()
        .method(request.method().clone())
        .uri(target)
        .body(axum::body::Body::from(body))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    *forwarded.headers_mut() = request.headers().clone();
    let response = router
        .clone()
        .oneshot(forwarded)
        .await
        .unwrap_or_else(|never| match never {});
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    Ok((status, bytes))
}

fn kind_for_status(status: u16) -> String {
    match status {
        401 | 403 => "unauthorized",
        404 => "not_found",
        400 => "type",
        503 => "unreachable",
        _ => "script",
    }
    .to_owned()
}

/// Percent-encodes an instance code for a path segment.
pub(crate) fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_codes_are_encoded_for_the_path() {
        assert_eq!(encode("PUMP-001"), "PUMP-001");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn call_request_rejects_unknown_fields() {
        let bad = serde_json::from_str::<CallRequest>(r#"{"script":"s","extra":1}"#);
        assert!(bad.is_err());
        let good: CallRequest = serde_json::from_str(r#"{"script":"s"}"#).expect("valid");
        assert_eq!(good.params, serde_json::json!({}));
    }
}
