//! The site node's HTTP server: the internal API central calls (see
//! [`crate::protocol`] for the routes and bodies), `/health`, `/metrics`
//! (Prometheus text) and `/admin/events`.
//!
//! Every `/internal` and `/admin` request must carry the shared token; it is
//! compared as a SHA-256 digest in constant time. Bodies are read as bytes
//! and parsed here, so every error, including malformed JSON, is the JSON
//! error body with a stable code.

// Handlers return early with a ready `Response` as the error (axum's own
// style); its size does not matter on this path.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use super::instance::{self, CallError};
use super::store::EventFilter;
use super::{Site, SiteShared};
use crate::protocol::{
    AttributesResponse, Bundle, BundleAccepted, CallRequest, CallResponse, ErrorBody,
    GetAttributesRequest, SetAttributesRequest, TOKEN_HEADER,
};

/// Largest request body (a bundle with its scripts is the largest).
const MAX_BODY: usize = 16 * 1024 * 1024;

#[derive(Clone)]
struct ApiState {
    site: Site,
    token_digest: String,
}

/// The site's router.
pub fn router(site: &Site) -> Router {
    let state = ApiState {
        token_digest: crate::keys::sha256_hex(&site.shared.options.token),
        site: site.clone(),
    };
    Router::new()
        .route("/internal/instances/{code}/call", post(call))
        .route(
            "/internal/instances/{code}/attributes/get",
            post(get_attributes),
        )
        .route(
            "/internal/instances/{code}/attributes/set",
            post(set_attributes),
        )
        .route("/internal/bundle", get(bundle_version).put(put_bundle))
        .route("/internal/deliveries/{id}", get(delivery))
        .route(
            "/internal/webhooks/{name}/deliveries",
            get(webhook_deliveries),
        )
        .route("/admin/events", get(events))
        .route("/admin/runs", get(runs))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// An error answer: status and `{"error", "code", "kind"}`.
pub(crate) fn error(
    status: StatusCode,
    code: &str,
    kind: Option<&str>,
    message: impl Into<String>,
) -> Response {
    let body = ErrorBody {
        error: message.into(),
        code: code.to_owned(),
        kind: kind.map(str::to_owned),
    };
    (status, axum::Json(body)).into_response()
}

fn authorised(state: &ApiState, headers: &HeaderMap) -> Result<(), Response> {
    let presented = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if crate::keys::key_matches(presented, &state.token_digest) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            Some("unauthorized"),
            "missing or wrong site token",
        ))
    }
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            Some("type"),
            format!("the request body is not valid: {e}"),
        )
    })
}

fn call_error(failure: CallError) -> Response {
    let (status, code, kind, message) = failure.answer();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, code, Some(kind), message)
}

async fn call(
    State(state): State<ApiState>,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state
        .site
        .shared
        .metrics
        .internal_requests
        .fetch_add(1, Ordering::Relaxed);
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let request: CallRequest = match parse(&body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match instance::call(&state.site.shared, &code, &request.script, request.params).await {
        Ok(result) => axum::Json(CallResponse { result }).into_response(),
        Err(failure) => call_error(failure),
    }
}

async fn get_attributes(
    State(state): State<ApiState>,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let request: GetAttributesRequest = match parse(&body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    match instance::get_attributes(&state.site.shared, &code, &request.names) {
        Ok(values) => {
            let values: BTreeMap<_, _> = request.names.into_iter().zip(values).collect();
            axum::Json(AttributesResponse { values }).into_response()
        }
        Err(failure) => call_error(failure),
    }
}

async fn set_attributes(
    State(state): State<ApiState>,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let request: SetAttributesRequest = match parse(&body) {
        Ok(request) => request,
        Err(response) => return response,
    };
    let values = request.values.into_iter().collect();
    match instance::set(&state.site.shared, &code, values).await {
        Ok(()) => axum::Json(serde_json::json!({})).into_response(),
        Err(failure) => call_error(failure),
    }
}

async fn bundle_version(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    match state.site.version() {
        Some(version) => axum::Json(BundleAccepted { version }).into_response(),
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_deployment",
            None,
            "the site has no deployment yet",
        ),
    }
}

async fn put_bundle(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let bundle: Bundle = match parse(&body) {
        Ok(bundle) => bundle,
        Err(response) => return response,
    };
    match state.site.deploy(bundle).await {
        Ok(version) => axum::Json(BundleAccepted { version }).into_response(),
        Err(problems) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "deployment_refused",
            None,
            problems.join("\n"),
        ),
    }
}

async fn events(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(filter): Query<EventFilter>,
) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let store = Arc::clone(&state.site.shared.store);
    match tokio::task::spawn_blocking(move || store.events(&filter)).await {
        Ok(Ok(events)) => axum::Json(events).into_response(),
        Ok(Err(problem)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            None,
            problem.to_string(),
        ),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            None,
            "the event query did not finish",
        ),
    }
}

/// The buffer's record of one delivery (`GET /api/deliveries/{id}` on
/// central asks every site this).
async fn delivery(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let saf = state.site.shared.saf.clone();
    let lookup = id.clone();
    match tokio::task::spawn_blocking(move || saf.status(&lookup)).await {
        Ok(Ok(Some(report))) => axum::Json(report).into_response(),
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            crate::protocol::UNKNOWN_DELIVERY,
            Some("not_found"),
            format!("no delivery `{id}` in the buffer of this site"),
        ),
        Ok(Err(problem)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            None,
            problem.to_string(),
        ),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            None,
            "the delivery lookup did not finish",
        ),
    }
}

/// The deliveries of one webhook subscription in this site's buffer
/// (`GET /admin/webhooks/{name}/deliveries` on central asks every site).
async fn webhook_deliveries(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let (status, limit) = match crate::webhooks::history_query(&params) {
        Ok(parsed) => parsed,
        Err(problem) => return error(StatusCode::BAD_REQUEST, "invalid_query", None, problem),
    };
    let saf = state.site.shared.saf.clone();
    let node = state.site.shared.options.name.clone();
    let listed = tokio::task::spawn_blocking(move || {
        crate::webhooks::deliveries(&saf, &node, &name, status, limit)
    })
    .await;
    match listed {
        Ok(Ok(rows)) => axum::Json(rows).into_response(),
        Ok(Err(problem)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            None,
            problem.to_string(),
        ),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            None,
            "the webhook history query did not finish",
        ),
    }
}

/// The execution log: `GET /admin/runs?script=&status=&instance=&since=&until=&limit=`.
async fn runs(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(response) = authorised(&state, &headers) {
        return response;
    }
    let query = match crate::runs::RunQuery::from_params(
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ) {
        Ok(query) => query,
        Err(problem) => {
            return error(StatusCode::BAD_REQUEST, "invalid_query", None, problem);
        }
    };
    let shared = Arc::clone(&state.site.shared);
    match tokio::task::spawn_blocking(move || shared.runs.query(&query)).await {
        Ok(Ok(runs)) => axum::Json(runs).into_response(),
        Ok(Err(problem)) => error(StatusCode::INTERNAL_SERVER_ERROR, "storage", None, problem),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            None,
            "the run query did not finish",
        ),
    }
}

async fn health(State(state): State<ApiState>) -> Response {
    let site = &state.site;
    let body = serde_json::json!({
        "status": if site.version().is_some() { "ok" } else { "starting" },
        "role": "site",
        "site": site.name(),
        "version": site.version(),
        "instances": site.shared.instances.read().map(|i| i.len()).unwrap_or(0),
        "replication": site.replication_status(),
    });
    axum::Json(body).into_response()
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let shared = Arc::clone(&state.site.shared);
    let text = tokio::task::spawn_blocking(move || render_metrics(&shared))
        .await
        .unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn render_metrics(shared: &SiteShared) -> String {
    let m = &shared.metrics;
    let site = &shared.options.name;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP scl_site_script_runs_total Script runs by final status."
    );
    let _ = writeln!(out, "# TYPE scl_site_script_runs_total counter");
    for (status, counter) in [
        ("success", &m.runs_success),
        ("failure", &m.runs_failure),
        ("timeout", &m.runs_timeout),
        ("limit", &m.runs_limit),
    ] {
        let _ = writeln!(
            out,
            "scl_site_script_runs_total{{site=\"{site}\",status=\"{status}\"}} {}",
            counter.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP scl_site_script_run_seconds_total Time spent in script runs."
    );
    let _ = writeln!(out, "# TYPE scl_site_script_run_seconds_total counter");
    let seconds = m.run_micros.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(
        out,
        "scl_site_script_run_seconds_total{{site=\"{site}\"}} {seconds}"
    );
    for (name, help, counter) in [
        (
            "scl_site_triggers_skipped_total",
            "Interval runs skipped because the previous one had not started.",
            &m.triggers_skipped,
        ),
        (
            "scl_site_internal_requests_total",
            "Script calls from central.",
            &m.internal_requests,
        ),
        (
            "scl_site_deployments_total",
            "Deployments swapped in since start.",
            &m.deployments,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(
            out,
            "{name}{{site=\"{site}\"}} {}",
            counter.load(Ordering::Relaxed)
        );
    }
    let instances = shared.instances.read().map(|i| i.len()).unwrap_or(0);
    let _ = writeln!(
        out,
        "# HELP scl_site_instances Instances running on the site."
    );
    let _ = writeln!(out, "# TYPE scl_site_instances gauge");
    let _ = writeln!(out, "scl_site_instances{{site=\"{site}\"}} {instances}");
    if let Ok(stats) = shared.saf.stats() {
        let _ = writeln!(
            out,
            "# HELP scl_saf_messages Store-and-forward messages by state."
        );
        let _ = writeln!(out, "# TYPE scl_saf_messages gauge");
        for (state, count) in [
            ("queued", stats.queued),
            ("parked", stats.parked),
            ("delivered", stats.delivered),
            ("discarded", stats.discarded),
        ] {
            let _ = writeln!(
                out,
                "scl_saf_messages{{site=\"{site}\",state=\"{state}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP scl_saf_file_bytes Size of the buffer's data file."
        );
        let _ = writeln!(out, "# TYPE scl_saf_file_bytes gauge");
        let _ = writeln!(
            out,
            "scl_saf_file_bytes{{site=\"{site}\"}} {}",
            stats.file_size
        );
    }
    if let Some(link) = shared.replication_metrics.get() {
        link.render(site, &mut out);
    }
    out
}

/// The site API of the standby node of a pair: every route answers 503 `standby`, so
/// central's client tries the other node ([`crate::failover`]).
/// `/metrics` shows its link's gauges.
pub fn standby_router(site: &str, link: Arc<crate::saf::replication::LinkMetrics>) -> Router {
    let message = format!("this node is the standby of site `{site}`; the other node is active");
    let name = site.to_owned();
    let (health_message, health_link) = (message.clone(), Arc::clone(&link));
    Router::new()
        .route(
            "/health",
            get(move || {
                let (message, link) = (health_message.clone(), Arc::clone(&health_link));
                async move {
                    // 503 `standby` as on every route (central's client and load balancers
                    // see a node that serves nothing), with the link's state.
                    let body = serde_json::json!({
                        "error": message,
                        "code": "standby",
                        "role": "standby",
                        "replication": link.state().name(),
                        "takeover_held": link.held().map(|held| held.describe()),
                    });
                    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let (name, link) = (name.clone(), Arc::clone(&link));
                async move {
                    let mut text = String::new();
                    link.render(&name, &mut text);
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response()
                }
            }),
        )
        .fallback(move || {
            let message = message.clone();
            async move { error(StatusCode::SERVICE_UNAVAILABLE, "standby", None, message) }
        })
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no_route", None, "no such route")
}
