//! # Central: the inbound API
//!
//! The HTTP server of a central node (axum). Central nodes are stateless:
//! everything they answer comes from the deployment and the sites, so any
//! number of them can sit behind a load balancer. See `docs/api.md` for the
//! caller's view.
//!
//! | route | what |
//! | --- | --- |
//! | `POST /api/{method}` | run the method's `api` script with the JSON body's fields as `main`'s parameters |
//! | `GET /api/openapi.json` | OpenAPI 3.1, generated from the methods' typed `main` signatures |
//! | `GET /admin/failures` | the failures log (header `X-Admin-Key`); `?since=24h&method=M&limit=N` |
//! | `GET /health` | `{"status":"ok"}` (503 `shutting_down` while stopping) |
//! | `GET /metrics` | Prometheus text: requests by method and status, durations |
//!
//! ## Embedding (for `scl serve`)
//!
//! ```ignore
//! let listener = tokio::net::TcpListener::bind(addr).await?;
//! let central = central::start(deployment, listener, CentralConfig::default()).await?;
//! // ... on Ctrl-C:
//! central.shutdown().await?;   // stops accepting, lets in-flight calls finish
//! ```
//!
//! [`start`] compiles every API method's script (kind `api`) once, opens the
//! failures log under the data directory, builds one [`SiteClient`] per site
//! and serves on the listener until [`CentralHandle::shutdown`].
//!
//! ## Promises
//!
//! - Scripts run on the [`ScriptPool`]'s threads, never on the reactor;
//!   `Route.To()` blocks the script thread, not the reactor.
//! - The per-method timeout (`timeout_s`, default 30) starts when the request
//!   arrives and covers the queue wait, the script and every routed call
//!   (each gets what is left as its deadline); a call that runs out answers
//!   500 `timeout`.
//! - API keys are compared as SHA-256 hashes in constant time against every
//!   stored key ([`auth`]); keys and site tokens never appear in answers,
//!   logs or the failures log (which records the key's *name*).
//! - Every answer that is not a 200 has the body `{"error", "code"}` with one
//!   of the stable codes in [`codes`]; a 500 carries a safe message (no
//!   paths, SQL or script internals), the details go to the failures log.
//! - Only 500s are recorded in the failures log (seed CD-IA-4).
//!
//! [`SiteClient`]: crate::protocol::SiteClient

mod apps;
mod auth;
mod bulk;
mod composite;
pub mod failures;
mod metrics;
mod openapi;
mod route;
mod schema;
mod webhooks;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use scl_compiler::{CallOptions, CompileError, CompileOptions, Engine, Limits, Script, Status};
use scl_lang::ScriptKind;
use scl_lang::types::Type;

use crate::deployment::Deployment;
use crate::modules::{NodeEvents, NodeModules, NodeRole, TracingEvents};
use crate::pool::ScriptPool;
use crate::runs::{RunLog, RunQuery, RunRecord, RunSource};
pub use failures::{FailureLog, FailureQuery, FailureRecord};
pub use route::ApiRun;

/// The stable error codes of the inbound API (the `code` field of an error
/// body), with their HTTP status.
pub mod codes {
    /// 400: the body is not valid JSON.
    pub const INVALID_JSON: &str = "invalid_json";
    /// 400: the body is JSON but not an object.
    pub const INVALID_BODY: &str = "invalid_body";
    /// 400: a parameter `main` requires is absent.
    pub const MISSING_PARAMETER: &str = "missing_parameter";
    /// 400: a field `main` has no parameter for.
    pub const UNKNOWN_PARAMETER: &str = "unknown_parameter";
    /// 400: a parameter (or a value inside it) has the wrong type; the
    /// message names its path, such as `items[2].qty`.
    pub const INVALID_PARAMETER: &str = "invalid_parameter";
    /// 401: no `X-API-Key` header.
    pub const MISSING_API_KEY: &str = "missing_api_key";
    /// 401: the key is unknown or disabled (one code for both).
    pub const INVALID_API_KEY: &str = "invalid_api_key";
    /// 403: the key is valid but not approved for this method.
    pub const KEY_NOT_APPROVED: &str = "key_not_approved";
    /// 404: no such method.
    pub const UNKNOWN_METHOD: &str = "unknown_method";
    /// 404: no such route.
    pub const NOT_FOUND: &str = "not_found";
    /// 405: a verb other than the route's (`POST` for `/api/{method}`).
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// 408: the body did not arrive within `[central] body_read_timeout_s`.
    pub const REQUEST_TIMEOUT: &str = "request_timeout";
    /// 413: the body is larger than `[central] max_body_bytes`.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// 415: a body that is not `application/json`.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// 500: the script failed (an uncaught error).
    pub const SCRIPT_ERROR: &str = "script_error";
    /// 500: the method's timeout ran out (script or routed calls).
    pub const TIMEOUT: &str = "timeout";
    /// 500: a site the script needed could not be reached (and the script
    /// did not catch the error); 502 on `GET /api/deliveries/{id}` when a
    /// site that may hold the id did not answer.
    pub const SITE_UNREACHABLE: &str = "site_unreachable";
    /// 500: the script went over a resource limit (memory, call depth).
    pub const LIMIT_EXCEEDED: &str = "limit_exceeded";
    /// 401: a bearer token that is malformed, forged, expired or revoked.
    pub const INVALID_TOKEN: &str = "invalid_token";
    /// 403: a connected app calling from outside its `allow_ips`.
    pub const IP_NOT_ALLOWED: &str = "ip_not_allowed";
    /// 429: a connected app over its `rate_limit_per_hour`.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// 400: a composite sub-request refers to an unknown earlier result.
    pub const INVALID_REFERENCE: &str = "invalid_reference";
    /// 400: a composite sub-request not run because an earlier one failed
    /// (`allOrNone`).
    pub const PROCESSING_HALTED: &str = "processing_halted";
    /// 404: no bulk job with that id for this caller.
    pub const UNKNOWN_JOB: &str = "unknown_job";
    /// 404: no webhook of that name (`GET /admin/webhooks/{name}/deliveries`).
    pub const UNKNOWN_WEBHOOK: &str = "unknown_webhook";
    /// 404: no site holds the delivery id (`GET /api/deliveries/{id}`).
    pub const UNKNOWN_DELIVERY: &str = "unknown_delivery";
    /// 503: the node is shutting down.
    pub const SHUTTING_DOWN: &str = "shutting_down";
    /// 401: `/admin/*` without a valid `X-Admin-Key`.
    pub const INVALID_ADMIN_KEY: &str = "invalid_admin_key";
    /// 400: a bad query string on an admin route.
    pub const INVALID_QUERY: &str = "invalid_query";
    /// 500: central itself failed (the failures log could not be read, ...).
    pub const INTERNAL: &str = "internal";
    /// 401: an internal site route without the site's token.
    pub const INVALID_SITE_TOKEN: &str = "invalid_site_token";
    /// 404: an internal site route for a site the deployment does not have (or that runs
    /// no active/standby pair, for the witness).
    pub const UNKNOWN_SITE: &str = "unknown_site";
}

/// The header that carries the API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// The header that carries the admin key.
pub const ADMIN_KEY_HEADER: &str = "x-admin-key";

/// Settings of a central node that are not in the deployment file.
#[derive(Clone)]
pub struct CentralConfig {
    /// Script threads (a routed call holds its thread while it waits).
    pub script_threads: usize,
    /// The node's data directory; default: the deployment's `data_dir`
    /// (relative to the deployment file). The failures log is in
    /// `{data_dir}/central/failures`.
    pub data_dir: Option<PathBuf>,
    /// Reads environment variables (site tokens, database URLs, external
    /// systems' secrets); default: the process's.
    pub env: EnvReader,
    /// Where the modules report events (permanent failures); default: the
    /// tracing log.
    pub events: Arc<dyn NodeEvents>,
    /// Sites running in this process (`scl serve --role all`), by site name: `Route.To`
    /// calls them directly ([`crate::protocol::LocalSite`]) instead of going over loopback
    /// HTTP. A site with a standby is always reached over HTTP (its active node can change).
    pub in_process_sites: HashMap<String, crate::site::Site>,
}

/// Reads an environment variable by name.
pub type EnvReader = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl Default for CentralConfig {
    fn default() -> CentralConfig {
        CentralConfig {
            script_threads: 16,
            data_dir: None,
            env: Arc::new(crate::external::process_env),
            events: Arc::new(TracingEvents),
            in_process_sites: HashMap::new(),
        }
    }
}

impl std::fmt::Debug for CentralConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CentralConfig")
            .field("script_threads", &self.script_threads)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// A running central node.
pub struct CentralHandle {
    local_addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// The webhook forwarder's lease task and its stop flag.
    webhook_forwarding: Option<(Arc<AtomicBool>, tokio::task::JoinHandle<()>)>,
    server: tokio::task::JoinHandle<Result<(), String>>,
    central: Arc<Central>,
}

impl std::fmt::Debug for CentralHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CentralHandle")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl CentralHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Graceful shutdown: `/health` answers 503, the listener stops
    /// accepting, calls in flight finish, then the script threads stop.
    pub async fn shutdown(mut self) -> Result<(), String> {
        self.central.shutting_down.store(true, Ordering::SeqCst);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some((stopping, task)) = self.webhook_forwarding.take() {
            stopping.store(true, Ordering::SeqCst);
            let _ = task.await;
        }
        let served = (&mut self.server)
            .await
            .map_err(|e| format!("central server task failed: {e}"))?;
        let pool = self.central.pool.clone();
        tokio::task::spawn_blocking(move || pool.shutdown())
            .await
            .map_err(|e| format!("stopping the script threads failed: {e}"))?;
        let central = Arc::clone(&self.central);
        let _ = tokio::task::spawn_blocking(move || central.runs.flush()).await;
        served
    }
}

/// One API method, compiled.
struct Method {
    name: Arc<str>,
    script: Script,
    params: Arc<[(String, Type)]>,
    approved_keys: Vec<String>,
    timeout: Duration,
    /// Whether the script calls a host function (worked out once: it walks the
    /// IR); one that does not runs without a modules scope.
    calls_host: bool,
}

/// What the handlers share.
struct Central {
    methods: HashMap<String, Method>,
    /// `Database.Connection` (central's databases) and the other modules.
    modules: NodeModules,
    api_keys: auth::KeyTable,
    admin_keys: auth::KeyTable,
    /// Connected apps (OAuth2 client credentials).
    apps: apps::Apps,
    /// Bulk jobs (`/api/bulk/*`).
    bulk: bulk::BulkStore,
    /// Webhook subscriptions; central's events buffer into `webhook_buffer`.
    webhooks: Arc<crate::webhooks::Webhooks>,
    /// `central/saf`, when the deployment has webhooks.
    webhook_buffer: Option<crate::saf::Saf>,
    pool: ScriptPool,
    failures: Arc<FailureLog>,
    /// One row per method run ([`crate::runs`]).
    runs: RunLog,
    metrics: metrics::Metrics,
    /// `Route.To` and the site clients (delivery lookups ask every site).
    routes: Arc<route::Routes>,
    openapi: Bytes,
    shutting_down: AtomicBool,
    /// How long a request's body may take to arrive (`[central] body_read_timeout_s`).
    body_read_timeout: Duration,
    /// `[central] max_body_bytes`.
    max_body_bytes: u64,
}

/// How long past the deadline central waits for a script to stop on its own
/// (the engine stops JIT code within about a millisecond) before answering.
const DEADLINE_GRACE: Duration = Duration::from_millis(100);

const DEFAULT_TIMEOUT_S: u64 = 30;

/// Compiles the API methods, opens the failures log and serves the inbound
/// API on `listener` until [`CentralHandle::shutdown`].
pub async fn start(
    deployment: Arc<Deployment>,
    listener: tokio::net::TcpListener,
    config: CentralConfig,
) -> Result<CentralHandle, String> {
    let central = Arc::new(build(&deployment, &config)?);
    let max_body_bytes = deployment
        .file
        .central
        .as_ref()
        .map_or(1024 * 1024, |c| c.max_body_bytes);
    let header_read_timeout = Duration::from_secs(
        deployment
            .file
            .central
            .as_ref()
            .map_or(10, |c| c.header_read_timeout_s)
            .max(1),
    );
    let app = router(Arc::clone(&central), max_body_bytes);
    let local_addr = listener
        .local_addr()
        .map_err(|e| format!("central: cannot read the listening address: {e}"))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        crate::http_server::serve(listener, app, header_read_timeout, async move {
            let _ = stopped.await;
        })
        .await
    });
    let batch_size = deployment
        .file
        .central
        .as_ref()
        .map_or(200, |c| c.bulk_batch_size)
        .max(1);
    let bulk_retention = deployment
        .file
        .central
        .as_ref()
        .map_or(Duration::from_secs(7 * 86_400), |c| c.bulk_retention());
    tokio::spawn(bulk::work(Arc::clone(&central), batch_size, bulk_retention));
    let webhook_forwarding = central.webhook_buffer.clone().map(|saf| {
        let stopping = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(webhooks::forward_with_lease(
            saf,
            Arc::clone(&central.webhooks),
            data_dir_of(&deployment, &config),
            Arc::clone(&stopping),
        ));
        (stopping, task)
    });
    // Prune the failures log once a day even when nothing fails.
    let failures = Arc::downgrade(&central.failures);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(24 * 3600));
        loop {
            ticker.tick().await;
            let Some(log) = failures.upgrade() else {
                return;
            };
            let _ = tokio::task::spawn_blocking(move || log.prune(failures::now_ms())).await;
        }
    });
    tracing::info!(%local_addr, methods = central.methods.len(), "central inbound API listening");
    Ok(CentralHandle {
        local_addr,
        stop: Some(stop),
        webhook_forwarding,
        server,
        central,
    })
}

/// The node's data directory: the configured one or the deployment's `data_dir`.
fn data_dir_of(deployment: &Deployment, config: &CentralConfig) -> PathBuf {
    config
        .data_dir
        .clone()
        .unwrap_or_else(|| deployment.base_dir().join(&deployment.file.data_dir))
}

fn build(deployment: &Deployment, config: &CentralConfig) -> Result<Central, String> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| "central::start must run inside a tokio runtime".to_string())?;
    let routes = Arc::new(route::Routes::new(
        deployment,
        &*config.env,
        &config.in_process_sites,
        handle.clone(),
    )?);
    let modules = NodeModules::build(
        deployment,
        NodeRole::Central,
        handle,
        None,
        &*config.env,
        Arc::clone(&config.events),
    )?;
    for problem in modules.problems() {
        tracing::warn!("central: {problem}");
    }
    let engine = engine(&modules, &routes)?;
    let mut methods = HashMap::new();
    let mut problems = Vec::new();
    for script in deployment
        .scripts()
        .into_iter()
        .filter(|s| s.kind == ScriptKind::Api)
    {
        let Some(definition) = deployment.file.api_methods.get(&script.name) else {
            continue;
        };
        let shown = script.path.display().to_string();
        let source = match std::fs::read_to_string(&script.path) {
            Ok(source) => source,
            Err(e) => {
                problems.push(format!(
                    "API method `{}`: cannot read {shown}: {e}",
                    script.name
                ));
                continue;
            }
        };
        let options = CompileOptions {
            kind: Some(ScriptKind::Api),
            require_main: true,
        };
        let compiled = match engine.compile(&source, &options) {
            Ok(compiled) => compiled,
            Err(CompileError::Diagnostics(diagnostics)) => {
                problems.push(format!(
                    "API method `{}` does not compile:\n{}",
                    script.name,
                    scl_lang::diagnostics::render_human(&shown, &source, &diagnostics, false)
                ));
                continue;
            }
            Err(other) => {
                problems.push(format!("API method `{}`: {other}", script.name));
                continue;
            }
        };
        let params: Arc<[(String, Type)]> = Arc::from(compiled.params("main").unwrap_or(&[]));
        let timeout_s = definition.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S).max(1);
        methods.insert(
            script.name.clone(),
            Method {
                name: Arc::from(script.name.as_str()),
                calls_host: compiled.calls_host(),
                script: compiled,
                params,
                approved_keys: definition
                    .approved_keys
                    .iter()
                    .map(|k| k.get_ref().clone())
                    .collect(),
                timeout: Duration::from_secs(timeout_s),
            },
        );
    }
    if !problems.is_empty() {
        return Err(problems.join("\n"));
    }
    let data_dir = data_dir_of(deployment, config);
    let webhook_buffer = if deployment.file.webhook.is_empty() {
        None
    } else {
        Some(webhooks::open_buffer(&data_dir)?)
    };
    let central_webhooks =
        crate::webhooks::Webhooks::build(deployment, &*config.env, webhook_buffer.clone())?;
    for problem in central_webhooks.problems() {
        tracing::warn!("central: {problem}");
    }
    let retention_days = deployment
        .file
        .central
        .as_ref()
        .map_or(30, |c| c.failure_retention_days);
    let failures = FailureLog::open(
        &failures::default_path(&data_dir),
        Duration::from_secs(retention_days.saturating_mul(86_400)),
    )?;
    let token_key = match deployment
        .file
        .central
        .as_ref()
        .and_then(|c| c.token_key_env.as_deref())
    {
        Some(variable) => (config.env)(variable)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                format!("environment variable `{variable}` (the token signing key) is not set")
            })?
            .into_bytes(),
        None => {
            if !deployment.file.apps.is_empty() {
                tracing::warn!(
                    "[central] token_key_env is not set: app tokens are signed with a key of this \
                     node alone, so other central nodes refuse them"
                );
            }
            crate::keys::generate_key()
                .map_err(|e| format!("cannot generate a token key: {e}"))?
                .into_bytes()
        }
    };
    let apps = apps::Apps::new(deployment, token_key, Some(&data_dir))?;
    let runs = RunLog::open(
        &crate::runs::path(&data_dir.join("central")),
        deployment.file.execution_log.retention(),
        deployment.file.execution_log.max_log_lines,
    )?;
    let openapi = openapi::document(
        deployment,
        methods.iter().map(|(name, method)| {
            let ret = method
                .script
                .lowered()
                .signatures
                .iter()
                .find(|s| s.name == "main")
                .map_or(Type::Void, |s| s.ret.clone());
            (name.as_str(), &method.params[..], ret)
        }),
    );
    let openapi = serde_json::to_vec_pretty(&openapi)
        .map_err(|e| format!("central: cannot write the OpenAPI document: {e}"))?;
    let pool = ScriptPool::new("scl-api", config.script_threads)
        .map_err(|e| format!("central: cannot start the script threads: {e}"))?;
    Ok(Central {
        methods,
        modules,
        api_keys: auth::KeyTable::new(&deployment.file.api_keys),
        admin_keys: auth::KeyTable::new(&deployment.file.admin_keys),
        apps,
        bulk: bulk::BulkStore::open(&data_dir)?,
        webhooks: central_webhooks,
        webhook_buffer,
        pool,
        failures: Arc::new(failures),
        runs,
        metrics: metrics::Metrics::default(),
        routes,
        openapi: Bytes::from(openapi),
        shutting_down: AtomicBool::new(false),
        body_read_timeout: Duration::from_secs(
            deployment
                .file
                .central
                .as_ref()
                .map_or(30, |c| c.body_read_timeout_s)
                .max(1),
        ),
        max_body_bytes: deployment
            .file
            .central
            .as_ref()
            .map_or(1024 * 1024, |c| c.max_body_bytes),
    })
}

/// The engine api scripts compile against: the core modules, the node's
/// modules (`Database.Connection` for central's databases; the ones central
/// cannot serve answer `unavailable`), `Route`, and stand-ins for the
/// site-only modules (the checker refuses them in api scripts; registering
/// them keeps its "not allowed in api scripts" diagnostic).
fn engine(modules: &NodeModules, routes: &Arc<route::Routes>) -> Result<Engine, String> {
    let mut engine = Engine::default();
    scl_stdlib::core_modules::register_core_modules(&mut engine)?;
    modules.register(&mut engine)?;
    routes.register(&mut engine)?;
    let registered = engine.module_table();
    for signature in scl_stdlib::signatures::module_table().functions {
        if registered
            .lookup(&signature.owner, &signature.name)
            .is_some()
        {
            continue;
        }
        let qualified = signature.qualified_name();
        engine
            .register_raw(signature, move |_, _| {
                Err(scl_compiler::HostError::new(
                    "unavailable",
                    "not_on_central",
                    format!("`{qualified}` is not available on central"),
                ))
            })
            .map_err(|e| format!("central: {e}"))?;
    }
    Ok(engine)
}

/// Paths under `/api/` that are not methods; a method with one of these names
/// is reached through `/api/{method}` (and is shadowed there, as before).
const API_ROUTES: [&str; 2] = ["openapi.json", "composite"];

/// Whether `name` can be a literal route segment: matchit treats `{`, `}`, `*`
/// and `/` specially, and a name with anything unusual keeps the generic route.
fn literal_segment(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !API_ROUTES.contains(&name)
}

fn router(central: Arc<Central>, max_body_bytes: u64) -> Router {
    let limit = usize::try_from(max_body_bytes).unwrap_or(usize::MAX);
    // Each method also has a literal route: a match without a path parameter
    // costs the router no parameter list and the handler no `Path` extraction
    // (a measurable share of a trivial call). `/api/{method}` still answers
    // the rest: unknown methods (404), percent-encoded names, other names.
    let mut methods = Router::new();
    for name in central.methods.keys().filter(|name| literal_segment(name)) {
        let name: Arc<str> = Arc::from(name.as_str());
        methods = methods.route(
            &format!("/api/{name}"),
            post(
                move |State(central): State<Arc<Central>>, request: Request| async move {
                    respond(&central, &name, request).await
                },
            )
            .fallback(only_post),
        );
    }
    // The other routes get axum's body limit for their extractors; method
    // calls read their body themselves within `max_body_bytes` (`read_body`),
    // so theirs would only cost an extension insert per request.
    let rest = Router::new()
        .route(
            "/api/openapi.json",
            get(openapi_document).fallback(only_get),
        )
        .route("/api/{method}", post(call_method).fallback(only_post))
        .route(
            "/api/composite",
            post(composite::composite).fallback(only_post),
        )
        .route("/api/bulk/{id}", post(bulk::submit).get(bulk::status))
        .route(
            "/api/bulk/{id}/results",
            get(bulk::results).fallback(only_get),
        )
        .route(
            "/api/bulk/{id}/abort",
            post(bulk::abort).fallback(only_post),
        )
        .route(
            "/api/deliveries/{id}",
            get(delivery_status).fallback(only_get),
        )
        .route("/admin/failures", get(admin_failures).fallback(only_get))
        .route("/admin/runs", get(admin_runs).fallback(only_get))
        .route(
            "/admin/webhooks/{name}/deliveries",
            get(webhooks::history).fallback(only_get),
        )
        .route("/oauth/token", post(oauth_token).fallback(only_post))
        .route("/oauth/revoke", post(oauth_revoke).fallback(only_post))
        .route("/health", get(health).fallback(only_get))
        .route("/metrics", get(prometheus).fallback(only_get))
        .route(
            "/internal/sites/{site}/witness",
            get(site_witness).fallback(only_get),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit));
    methods.merge(rest).with_state(central)
}

/// An answer that is not a 200.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// `Retry-After` seconds (429).
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "code": self.code });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A failed run, with what operators need (never sent to the caller).
struct Failure {
    code: &'static str,
    safe_message: &'static str,
    detail: String,
}

async fn call_method(
    State(central): State<Arc<Central>>,
    method: Result<Path<String>, axum::extract::rejection::PathRejection>,
    request: Request,
) -> Response {
    let name = method.map(|Path(name)| name).unwrap_or_default();
    respond(&central, &name, request).await
}

/// Answers a call of method `name` and counts it in the metrics.
async fn respond(central: &Arc<Central>, name: &str, request: Request) -> Response {
    let started = Instant::now();
    let label = if central.methods.contains_key(name) {
        name
    } else {
        "_unknown"
    };
    let response = match answer(central, name, request, started).await {
        Ok(reply) => reply.into_response(),
        Err(error) => error.into_response(),
    };
    central
        .metrics
        .observe(label, response.status().as_u16(), started.elapsed());
    response
}

async fn answer(
    central: &Arc<Central>,
    name: &str,
    request: Request,
    started: Instant,
) -> Result<Reply, ApiError> {
    refuse_when_stopping(central)?;
    // The caller first, so that callers without a key learn nothing about the methods.
    let caller = caller(central, request.headers(), peer_of())?;
    let method = approved_method(central, &caller, name)?;
    let body = read_body(request, central.body_read_timeout, central.max_body_bytes).await?;
    invoke(
        central,
        &caller.label(),
        name,
        method,
        Params::Body(body),
        started,
        Form::Text,
    )
    .await
}

/// A call's parameters as they came: a request body not yet read as JSON (read and
/// checked where the method runs, so a script thread does it rather than the HTTP
/// worker), or a value (the sub-requests of composite and bulk calls).
pub(crate) enum Params {
    Body(Option<Bytes>),
    Value(serde_json::Value),
}

impl Params {
    /// The parameters as a JSON object that fits `main`'s signature, or the 400
    /// that says what does not.
    fn checked(self, signature: &[(String, Type)]) -> Result<serde_json::Value, ApiError> {
        let params = match self {
            Params::Value(value) => value,
            Params::Body(None) => serde_json::Value::Object(serde_json::Map::new()),
            Params::Body(Some(bytes)) => serde_json::from_slice(&bytes).map_err(|error| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    codes::INVALID_JSON,
                    format!("the body is not valid JSON: {error}"),
                )
            })?,
        };
        if !params.is_object() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                codes::INVALID_BODY,
                "the body must be a JSON object with the method's parameters as fields",
            ));
        }
        if let Err(error) = crate::params::check(&params, signature) {
            let code = match error.code {
                "missing_parameter" => codes::MISSING_PARAMETER,
                "unknown_parameter" => codes::UNKNOWN_PARAMETER,
                "invalid_params" => codes::INVALID_BODY,
                _ => codes::INVALID_PARAMETER,
            };
            return Err(ApiError::new(StatusCode::BAD_REQUEST, code, error.message));
        }
        Ok(params)
    }
}

/// How a caller wants a method's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// JSON text, written straight from the script's value (an HTTP answer).
    Text,
    /// A JSON value, for callers that look inside it (composite and bulk requests).
    Value,
}

/// A method's result, in the [`Form`] asked for.
#[derive(Debug)]
pub(crate) enum Reply {
    Text(Vec<u8>),
    Value(serde_json::Value),
}

impl Reply {
    /// The result as a JSON value.
    pub(crate) fn into_value(self) -> serde_json::Value {
        match self {
            Reply::Value(value) => value,
            // Text the engine wrote from a value: it reads back.
            Reply::Text(text) => serde_json::from_slice(&text).unwrap_or_default(),
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Reply::Text(text) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                text,
            )
                .into_response(),
            Reply::Value(value) => (StatusCode::OK, axum::Json(value)).into_response(),
        }
    }
}

/// 503 while the node stops, so callers retry on another node.
fn refuse_when_stopping(central: &Central) -> Result<(), ApiError> {
    if central.shutting_down.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::SHUTTING_DOWN,
            "the node is shutting down; retry on another node",
        ));
    }
    Ok(())
}

/// The method `name`, when it exists (404) and the caller may call it (403).
fn approved_method<'c>(
    central: &'c Central,
    caller: &Caller,
    name: &str,
) -> Result<&'c Method, ApiError> {
    let Some(method) = central.methods.get(name) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            codes::UNKNOWN_METHOD,
            format!("there is no API method `{name}`"),
        ));
    };
    let approved = match caller {
        Caller::Key(key) => method.approved_keys.iter().any(|k| **k == **key),
        Caller::App(grant) => grant.scopes.is_empty() || grant.scopes.iter().any(|s| s == name),
    };
    if !approved {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            codes::KEY_NOT_APPROVED,
            match caller {
                Caller::Key(_) => format!("the API key is not approved for method `{name}`"),
                Caller::App(_) => format!("the token's scopes do not include method `{name}`"),
            },
        ));
    }
    Ok(method)
}

/// Checks `params` against the method's `main` and runs it; a failed run is
/// recorded in the failures log and answered with its safe message.
async fn invoke(
    central: &Arc<Central>,
    key_name: &str,
    name: &str,
    method: &Method,
    params: Params,
    started: Instant,
    form: Form,
) -> Result<Reply, ApiError> {
    match run(central, method, params, started, form).await {
        Ok(reply) => Ok(reply),
        Err(Stop::Refused(error)) => Err(error),
        Err(Stop::Failed(failure)) if failure.code == codes::SHUTTING_DOWN => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::SHUTTING_DOWN,
            failure.safe_message,
        )),
        Err(Stop::Failed(failure)) => {
            let duration = started.elapsed();
            tracing::warn!(
                method = name,
                key = key_name,
                code = failure.code,
                duration_ms = duration.as_millis() as u64,
                "API call failed: {}",
                failure.detail
            );
            let unix_ms = failures::now_ms();
            let record = FailureRecord {
                time: failures::rfc3339_ms(unix_ms),
                unix_ms,
                method: name.to_string(),
                key: key_name.to_owned(),
                code: failure.code.to_string(),
                message: failure.detail,
                duration_ms: duration.as_millis() as u64,
            };
            let log = Arc::clone(&central.failures);
            match tokio::task::spawn_blocking(move || log.record(&record)).await {
                Ok(Ok(())) => {}
                Ok(Err(problem)) => tracing::error!("cannot record a failed API call: {problem}"),
                Err(problem) => tracing::error!("cannot record a failed API call: {problem}"),
            }
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                failure.code,
                failure.safe_message,
            ))
        }
    }
}

/// Reads the body within the size limit; `None` for an empty body.
async fn read_body(
    request: Request,
    timeout: Duration,
    max_body_bytes: u64,
) -> Result<Option<Bytes>, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|value| is_json(value.as_bytes()));
    if content_type == Some(false) {
        return Err(unsupported_media_type());
    }
    // A declared length far over the limit is refused before waiting for a
    // body that may never come.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let drain_limit = max_body_bytes.saturating_mul(4);
    if declared.is_some_and(|length| length > drain_limit) {
        return Err(payload_too_large());
    }
    // A small body nearly always came with the head: one poll reads it, and
    // the read timeout's timer (registered in the runtime's timer wheel and
    // removed again) is only armed for a body that is still on its way.
    let mut reading = std::pin::pin!(read_limited(
        request.into_body(),
        max_body_bytes,
        drain_limit
    ));
    let read = match std::future::poll_fn(|cx| Poll::Ready(reading.as_mut().poll(cx))).await {
        Poll::Ready(read) => read,
        Poll::Pending => match tokio::time::timeout(timeout, reading).await {
            Ok(read) => read,
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    codes::REQUEST_TIMEOUT,
                    "the body did not arrive in time",
                ));
            }
        },
    };
    let bytes = match read {
        BodyRead::Complete(bytes) => Bytes::from(bytes),
        BodyRead::TooLarge => return Err(payload_too_large()),
        BodyRead::Broken => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                codes::INVALID_JSON,
                "the body could not be read",
            ));
        }
    };
    if bytes.is_empty() {
        return Ok(None);
    }
    if content_type.is_none() {
        return Err(unsupported_media_type());
    }
    Ok(Some(bytes))
}

enum BodyRead {
    Complete(Vec<u8>),
    TooLarge,
    Broken,
}

/// Reads a body of at most `limit` bytes. A larger one is read on, and
/// dropped, up to `drain_limit` bytes before it is refused: a client that
/// is still sending when the connection closes with its bytes unread is
/// reset and may lose the 413 (found by the long `fuzz_api` run). Past
/// `drain_limit` reading stops.
async fn read_limited(mut body: axum::body::Body, limit: u64, drain_limit: u64) -> BodyRead {
    use http_body_util::BodyExt as _;
    let mut bytes = Vec::new();
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return BodyRead::Broken;
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        received = received.saturating_add(data.len() as u64);
        if received > drain_limit {
            return BodyRead::TooLarge;
        }
        if received <= limit {
            bytes.extend_from_slice(&data);
        }
    }
    if received > limit {
        BodyRead::TooLarge
    } else {
        BodyRead::Complete(bytes)
    }
}

fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        codes::PAYLOAD_TOO_LARGE,
        "the body is larger than this server accepts",
    )
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        codes::UNSUPPORTED_MEDIA_TYPE,
        "the body must be JSON (Content-Type: application/json)",
    )
}

/// `application/json` or `application/<something>+json`, with any parameters
/// (compared without allocating: this runs on every request).
fn is_json(content_type: &[u8]) -> bool {
    let essence = content_type
        .split(|byte| *byte == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    let Some(subtype) = strip_prefix_ignore_case(essence, b"application/") else {
        return false;
    };
    subtype.eq_ignore_ascii_case(b"json")
        || (subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

fn strip_prefix_ignore_case<'a>(text: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = text.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

/// Runs the method on the script pool: its parameters read and checked there,
/// then its script with its full limits.
async fn run_on_pool(
    central: &Arc<Central>,
    method: &Method,
    params: Params,
    deadline: Instant,
    form: Form,
) -> Result<Ran, Stop> {
    let shared = Arc::clone(central);
    let script = method.script.clone();
    let calls_host = method.calls_host;
    let name = Arc::clone(&method.name);
    let signature = Arc::clone(&method.params);
    let job = central.pool.run(move || {
        let params = match params.checked(&signature) {
            Ok(params) => params,
            Err(refused) => return Some(Err(refused)),
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return None;
        }
        let limits = Limits {
            timeout: Some(remaining),
            heap_bytes: Some(crate::pool::SCRIPT_HEAP_BYTES),
            ..Limits::default()
        };
        let ran = execute(
            &shared,
            (&script, calls_host),
            &params,
            deadline,
            limits,
            form,
        );
        record(&shared, &name, &ran);
        Some(Ok(ran))
    });
    match tokio::time::timeout_at((deadline + DEADLINE_GRACE).into(), job).await {
        Err(_) | Ok(Ok(None)) => Err(Stop::Failed(method_timed_out(method))),
        Ok(Err(_closed)) => Err(Stop::Failed(Failure {
            code: codes::SHUTTING_DOWN,
            safe_message: "the node is shutting down",
            detail: "the script threads were stopped".into(),
        })),
        Ok(Ok(Some(ran))) => ran.map_err(Stop::Refused),
    }
}

/// Why a call ended without a result: its parameters were refused (400, not a
/// failure of the method) or the run failed.
enum Stop {
    Refused(ApiError),
    Failed(Failure),
}

/// What one run of a method left: its outcome, its result as JSON text (when
/// asked for in [`Form::Text`]), the connections whose open transactions were
/// rolled back, and when it started (for the execution log).
struct Ran {
    outcome: scl_compiler::Outcome,
    text: Vec<u8>,
    rolled_back: Vec<String>,
    started_ms: i64,
}

/// One run of a method's `main` on this (script) thread. A script that calls
/// no host function (`calls_host` false) runs without a modules scope: nothing
/// in it could use one.
fn execute(
    central: &Central,
    (script, calls_host): (&Script, bool),
    params: &serde_json::Value,
    deadline: Instant,
    limits: Limits,
    form: Form,
) -> Ran {
    let scope = calls_host.then(|| central.modules.scope(Some(Arc::new(ApiRun { deadline }))));
    let options = CallOptions {
        limits,
        host_data: scope
            .as_ref()
            .map(|scope| scope as &(dyn std::any::Any + Sync)),
        ..CallOptions::default()
    };
    let started_ms = crate::timelog::now_ms();
    let mut text = Vec::new();
    let outcome = match form {
        Form::Text => script.call_main_json_into(params, &options, &mut text),
        Form::Value => script.call_main_json_to_json(params, &options),
    };
    // Roll back what the script left open, on this thread.
    let rolled_back = scope
        .map(|scope| scope.end().rolled_back)
        .unwrap_or_default();
    Ran {
        outcome,
        text,
        rolled_back,
        started_ms,
    }
}

/// Puts a run in the execution log and warns about transactions it left open.
fn record(central: &Central, name: &str, ran: &Ran) {
    central.runs.record(RunRecord::from_outcome(
        RunSource {
            node: "central",
            script: name,
            kind: ScriptKind::Api.name(),
            trigger: "api",
            instance: None,
        },
        ran.started_ms,
        &ran.outcome,
        central.runs.max_log_lines(),
    ));
    if !ran.rolled_back.is_empty() {
        tracing::warn!(
            "an API method left transactions open; rolled back on: {}",
            ran.rolled_back.join(", ")
        );
    }
}

fn method_timed_out(method: &Method) -> Failure {
    Failure {
        code: codes::TIMEOUT,
        safe_message: "the method did not finish in time",
        detail: format!(
            "the method's timeout of {} s ran out",
            method.timeout.as_secs()
        ),
    }
}

/// Runs the method's script on the script pool within the method's time.
async fn run(
    central: &Arc<Central>,
    method: &Method,
    params: Params,
    started: Instant,
    form: Form,
) -> Result<Reply, Stop> {
    let deadline = started + method.timeout;
    let ran = run_on_pool(central, method, params, deadline, form).await?;
    let outcome = ran.outcome;
    let error = match outcome.result {
        Ok(value) => {
            return Ok(match form {
                Form::Text => Reply::Text(ran.text),
                Form::Value => Reply::Value(value.into_json()),
            });
        }
        Err(error) => error,
    };
    let at = match (error.line, error.column) {
        (Some(line), Some(column)) => format!(" (at {line}:{column})"),
        _ => String::new(),
    };
    let detail = format!("{}/{}: {}{at}", error.kind, error.code, error.message);
    let status = outcome.stats.status;
    if central
        .webhooks
        .wants(crate::webhooks::EventType::ScriptFailed)
    {
        let event = crate::webhooks::Event::new(
            crate::webhooks::EventType::ScriptFailed,
            serde_json::json!({
                "node": "central",
                "script": &*method.name,
                "kind": ScriptKind::Api.name(),
                "trigger": "api",
                "status": status.name(),
                "error": {
                    "kind": error.kind,
                    "code": error.code,
                    "message": error.message,
                    "line": error.line,
                    "column": error.column,
                },
            }),
        );
        central.webhooks.emit(&event).await;
    }
    let failure = if status == Status::Timeout
        || (status == Status::Limit && error.code == "timeout")
        || Instant::now() >= deadline
    {
        Failure {
            detail,
            ..method_timed_out(method)
        }
    } else if status == Status::Limit {
        Failure {
            code: codes::LIMIT_EXCEEDED,
            safe_message: "the method went over a resource limit",
            detail,
        }
    } else if error.kind == "unreachable" {
        Failure {
            code: codes::SITE_UNREACHABLE,
            safe_message: "a site this method needs is unreachable",
            detail,
        }
    } else {
        Failure {
            code: codes::SCRIPT_ERROR,
            safe_message: "the method failed",
            detail,
        }
    };
    Err(Stop::Failed(failure))
}

async fn openapi_document(State(central): State<Arc<Central>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        central.openapi.clone(),
    )
        .into_response()
}

async fn health(State(central): State<Arc<Central>>) -> Response {
    if central.shutting_down.load(Ordering::SeqCst) {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            codes::SHUTTING_DOWN,
            "the node is shutting down",
        )
        .into_response();
    }
    axum::Json(serde_json::json!({ "status": "ok", "methods": central.methods.len() }))
        .into_response()
}

async fn prometheus(State(central): State<Arc<Central>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        central.metrics.render(),
    )
        .into_response()
}

/// Who is calling: an API key by name, or a connected app's bearer token.
enum Caller {
    Key(Arc<str>),
    App(apps::Grant),
}

impl Caller {
    /// The caller's name in the failures log.
    fn label(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Caller::Key(name) => std::borrow::Cow::Borrowed(name),
            Caller::App(grant) => std::borrow::Cow::Owned(format!("app:{}", grant.app)),
        }
    }
}

/// The TCP peer's address (unspecified when unknown, so allow-lists fail closed).
fn peer_of() -> IpAddr {
    crate::http_server::peer().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| peer.ip())
}

/// The caller: a bearer token when `Authorization: Bearer` is sent, else
/// the API key; the 401/403/429 otherwise.
fn caller(central: &Central, headers: &HeaderMap, peer: IpAddr) -> Result<Caller, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let Some(token) = bearer else {
        return api_key(central, headers).map(Caller::Key);
    };
    central
        .apps
        .bearer(token.trim(), peer)
        .map(Caller::App)
        .map_err(refusal)
}

/// The answer to a refused token or app call.
fn refusal(refused: apps::Refusal) -> ApiError {
    match refused {
        apps::Refusal::IpNotAllowed => ApiError::new(
            StatusCode::FORBIDDEN,
            codes::IP_NOT_ALLOWED,
            "the app may not call from this address",
        ),
        apps::Refusal::RateLimited(seconds) => ApiError {
            retry_after: Some(seconds),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                codes::RATE_LIMITED,
                format!("the app's hourly limit is used up; retry in {seconds} s"),
            )
        },
        _ => ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::INVALID_TOKEN,
            "the bearer token is not valid (malformed, expired or revoked)",
        ),
    }
}

/// The name of the enabled API key the request carries, else the 401.
fn api_key(central: &Central, headers: &HeaderMap) -> Result<Arc<str>, ApiError> {
    match headers.get(API_KEY_HEADER) {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::MISSING_API_KEY,
            "the X-API-Key header (or an Authorization: Bearer token) is missing",
        )),
        Some(value) => match central.api_keys.check(value.as_bytes()) {
            auth::KeyCheck::Valid(name) => Ok(name),
            auth::KeyCheck::Invalid => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::INVALID_API_KEY,
                "the API key is not valid",
            )),
        },
    }
}

/// `GET /api/deliveries/{id}`: where a CachedCall, notification or cached
/// write stands, from the buffer of whichever site holds it. Every site is
/// asked at once; the first that has the id answers (ids are unique).
async fn delivery_status(
    State(central): State<Arc<Central>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(error) = caller(&central, &headers, peer_of()) {
        return error.into_response();
    }
    let mut lookups = tokio::task::JoinSet::new();
    for site in central.routes.sites() {
        let (site, id) = (Arc::clone(site), id.clone());
        lookups.spawn(async move {
            let answer = tokio::time::timeout(DELIVERY_LOOKUP_TIMEOUT, site.delivery(&id)).await;
            (site.site().to_owned(), answer)
        });
    }
    let mut unreachable = Vec::new();
    while let Some(joined) = lookups.join_next().await {
        let Ok((site, answer)) = joined else { continue };
        match answer {
            Ok(Ok(Some(report))) => {
                let mut body = serde_json::to_value(report).unwrap_or_default();
                if let Some(object) = body.as_object_mut() {
                    object.insert("site".into(), serde_json::Value::String(site));
                }
                return (StatusCode::OK, axum::Json(body)).into_response();
            }
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%site, "delivery lookup failed: {error}");
                unreachable.push(site);
            }
            Err(_) => {
                tracing::warn!(%site, "delivery lookup timed out");
                unreachable.push(site);
            }
        }
    }
    if unreachable.is_empty() {
        ApiError::new(
            StatusCode::NOT_FOUND,
            codes::UNKNOWN_DELIVERY,
            format!("no site holds a delivery `{id}`"),
        )
    } else {
        unreachable.sort();
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            codes::SITE_UNREACHABLE,
            format!(
                "no reachable site holds a delivery `{id}`; not asked: {}",
                unreachable.join(", ")
            ),
        )
    }
    .into_response()
}

/// The body of an OAuth request: form fields, the Basic credentials and the peer.
async fn oauth_form(
    request: Request,
) -> Result<(HashMap<String, String>, Option<(String, String)>, IpAddr), Response> {
    let peer = peer_of();
    let basic = apps::basic_credentials(
        request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    );
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = axum::body::to_bytes(request.into_body(), 64 * 1024)
        .await
        .map_err(|_| {
            oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the body is larger than 64 KiB or broke off",
            )
        })?;
    let mut form = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(&bytes) {
        if form.insert(name.to_string(), value.into_owned()).is_some() {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("`{name}` is given twice"),
            ));
        }
    }
    Ok((form, basic, peer))
}

/// An RFC 6749 §5.2 error (`code` repeats `error`, as on every other route).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body =
        serde_json::json!({ "error": error, "error_description": description, "code": error });
    let mut response = (status, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"scl\""),
        );
    }
    response
}

fn oauth_refusal(refused: apps::Refusal) -> Response {
    match refused {
        apps::Refusal::InvalidClient => oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client, wrong secret or disabled app",
        ),
        apps::Refusal::InvalidRequest(message) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &message)
        }
        apps::Refusal::UnsupportedGrantType => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=client_credentials is supported",
        ),
        apps::Refusal::InvalidScope(message) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &message)
        }
        apps::Refusal::IpNotAllowed => oauth_error(
            StatusCode::FORBIDDEN,
            "unauthorized_client",
            "the app may not call from this address",
        ),
        apps::Refusal::InvalidToken | apps::Refusal::RateLimited(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request was refused",
        ),
    }
}

/// `POST /oauth/token`: client credentials → a bearer token.
async fn oauth_token(State(central): State<Arc<Central>>, request: Request) -> Response {
    let (form, basic, peer) = match oauth_form(request).await {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    match central.apps.issue(&form, basic, peer) {
        Ok((token, expires_in, scopes)) => {
            let mut body = serde_json::json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": expires_in,
            });
            if !scopes.is_empty() {
                body["scope"] = serde_json::Value::String(scopes.join(" "));
            }
            let mut response = (StatusCode::OK, axum::Json(body)).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(refused) => oauth_refusal(refused),
    }
}

/// `POST /oauth/revoke` (RFC 7009): 200 for any token the client may revoke,
/// known or not.
async fn oauth_revoke(State(central): State<Arc<Central>>, request: Request) -> Response {
    let (form, basic, peer) = match oauth_form(request).await {
        Ok(parts) => parts,
        Err(response) => return response,
    };
    let shared = Arc::clone(&central);
    match tokio::task::spawn_blocking(move || shared.apps.revoke(&form, basic, peer)).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(refused)) => oauth_refusal(refused),
        Err(_) => internal().into_response(),
    }
}

/// How long central waits for a site's answer to a delivery lookup.
const DELIVERY_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

async fn admin_failures(
    State(central): State<Arc<Central>>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(error) = admin_key(&central, &headers) {
        return error.into_response();
    }
    let Ok(Query(query)) = query else {
        return invalid_query("the query string is malformed").into_response();
    };
    let mut filter = FailureQuery::default();
    for (name, value) in query {
        match name.as_str() {
            "since" => match failures::parse_since(&value, failures::now_ms()) {
                Ok(ms) => filter.since_ms = Some(ms),
                Err(problem) => return invalid_query(&problem).into_response(),
            },
            "method" => filter.method = Some(value),
            "limit" => match value.parse() {
                Ok(limit) => filter.limit = Some(limit),
                Err(_) => return invalid_query("`limit` must be a number").into_response(),
            },
            other => {
                return invalid_query(&format!("unknown query parameter `{other}`"))
                    .into_response();
            }
        }
    }
    let log = Arc::clone(&central.failures);
    match tokio::task::spawn_blocking(move || log.query(&filter)).await {
        Ok(Ok(rows)) => axum::Json(serde_json::json!({ "failures": rows })).into_response(),
        Ok(Err(problem)) => {
            tracing::error!("reading the failures log: {problem}");
            internal().into_response()
        }
        Err(problem) => {
            tracing::error!("reading the failures log: {problem}");
            internal().into_response()
        }
    }
}

/// `Ok` when the request carries an enabled admin key (never an API key).
fn admin_key(central: &Central, headers: &HeaderMap) -> Result<(), ApiError> {
    let authorised = headers
        .get(ADMIN_KEY_HEADER)
        .map(|key| central.admin_keys.check(key.as_bytes()));
    if matches!(authorised, Some(auth::KeyCheck::Valid(_))) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::INVALID_ADMIN_KEY,
            "a valid X-Admin-Key header is required",
        ))
    }
}

/// `GET /admin/runs`: the execution log of central (`node=central`, the
/// default) or of a site (`node=SITE`, asked over its internal API).
async fn admin_runs(
    State(central): State<Arc<Central>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(error) = admin_key(&central, &headers) {
        return error.into_response();
    }
    let Ok(Query(params)) = query else {
        return invalid_query("the query string is malformed").into_response();
    };
    let filter = match RunQuery::from_params(params.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(filter) => filter,
        Err(problem) => return invalid_query(&problem).into_response(),
    };
    let node = params
        .iter()
        .find(|(k, _)| k == "node")
        .map_or_else(|| "central".to_owned(), |(_, v)| v.clone());
    let node = node.as_str();
    if node == "central" {
        let shared = Arc::clone(&central);
        return match tokio::task::spawn_blocking(move || shared.runs.query(&filter)).await {
            Ok(Ok(rows)) => axum::Json(serde_json::json!({ "runs": rows })).into_response(),
            Ok(Err(problem)) => {
                tracing::error!("reading the execution log: {problem}");
                internal().into_response()
            }
            Err(problem) => {
                tracing::error!("reading the execution log: {problem}");
                internal().into_response()
            }
        };
    }
    let Some(site) = central.routes.sites().iter().find(|s| s.site() == node) else {
        return invalid_query(&format!(
            "`node` is `central` or a site; there is no site `{node}`"
        ))
        .into_response();
    };
    let forwarded: Vec<(String, String)> =
        params.into_iter().filter(|(k, _)| k != "node").collect();
    match site.runs(&forwarded).await {
        Ok(rows) => axum::Json(serde_json::json!({ "runs": rows })).into_response(),
        Err(error) => {
            tracing::warn!(site = node, "execution log query failed: {error}");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                codes::SITE_UNREACHABLE,
                format!("site `{node}` did not answer"),
            )
            .into_response()
        }
    }
}

/// How long central waits for the other node's `/health` when it acts as a pair's witness.
const WITNESS_PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// `GET /internal/sites/{site}/witness?asking=primary|standby`: a node of an active/standby
/// pair that lost its link asks whether central still reaches the other node
/// (`docs/reliability.md`, site failover). Authenticated with the site's token, like the
/// site's own internal routes.
async fn site_witness(
    State(central): State<Arc<Central>>,
    Path(site): Path<String>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(client) = central.routes.sites().iter().find(|s| s.site() == site) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            codes::UNKNOWN_SITE,
            "the deployment has no such site",
        )
        .into_response();
    };
    let token = headers
        .get(crate::protocol::TOKEN_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !client.token_matches(token) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::INVALID_SITE_TOKEN,
            "the site's token is required",
        )
        .into_response();
    }
    let Ok(Query(params)) = query else {
        return invalid_query("the query string is malformed").into_response();
    };
    let asking = match params
        .iter()
        .find(|(k, _)| k == "asking")
        .map(|(_, v)| v.as_str())
    {
        Some("primary") => 0,
        Some("standby") => 1,
        _ => {
            return invalid_query("`asking` is `primary` or `standby`").into_response();
        }
    };
    match client.witness(asking, WITNESS_PROBE_TIMEOUT).await {
        Some(answer) => {
            tracing::info!(site, asking, ?answer, "witness asked by a pair node");
            axum::Json(answer).into_response()
        }
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            codes::UNKNOWN_SITE,
            format!("site `{site}` runs no active/standby pair"),
        )
        .into_response(),
    }
}

fn invalid_query(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, codes::INVALID_QUERY, message)
}

fn internal() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        codes::INTERNAL,
        "central could not answer",
    )
}

fn method_not_allowed(allow: &'static str) -> Response {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        codes::METHOD_NOT_ALLOWED,
        format!("this route only accepts {allow}"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

async fn only_post() -> Response {
    method_not_allowed("POST")
}

async fn only_get() -> Response {
    method_not_allowed("GET, HEAD")
}

async fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, "no such route").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json(b"application/json"));
        assert!(is_json(b"Application/JSON; charset=utf-8"));
        assert!(is_json(b"application/vnd.api+json"));
        assert!(!is_json(b"text/plain"));
        assert!(!is_json(b"application/x-www-form-urlencoded"));
        assert!(is_json(b"  application/json  ;q=1"));
        assert!(!is_json(b"application/jsonx"));
        assert!(!is_json(b"application/+json"));
        assert!(!is_json(b"application"));
        assert!(!is_json(b"text/json"));
        assert!(!is_json(&[0xff, 0xfe]));
    }
}
