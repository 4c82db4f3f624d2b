//! Shared by the central tests: a deployment in a temp dir, central started on
//! 127.0.0.1:0, and a stand-in of a site's internal API (a real HTTP peer
//! implementing the routes of `scl_runtime::protocol`).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use scl_runtime::central::{self, CentralConfig, CentralHandle};
use scl_runtime::deployment::Deployment;
use scl_runtime::keys::sha256_hex;
use scl_runtime::protocol::{
    AttributesResponse, CallRequest, CallResponse, ErrorBody, GetAttributesRequest,
    SetAttributesRequest, TOKEN_HEADER,
};
use serde_json::{Value, json};

pub const ERP_KEY: &str = "scl_test_erp_key";
pub const OTHER_KEY: &str = "scl_test_other_key";
pub const OLD_KEY: &str = "scl_test_old_key";
pub const ADMIN_KEY: &str = "scl_test_admin_key";
pub const SITE_TOKEN: &str = "site-token-for-tests";

/// What the site stand-in holds and counts.
#[derive(Default)]
pub struct SiteState {
    pub attributes: Mutex<HashMap<String, BTreeMap<String, Value>>>,
    pub get_requests: AtomicUsize,
    pub set_requests: AtomicUsize,
    pub call_requests: AtomicUsize,
}

/// A running site stand-in.
pub struct SiteStandIn {
    pub url: String,
    pub state: Arc<SiteState>,
}

fn site_error(status: StatusCode, code: &str, kind: &str, message: &str) -> Response {
    (
        status,
        Json(ErrorBody {
            error: message.to_string(),
            code: code.to_string(),
            kind: Some(kind.to_string()),
        }),
    )
        .into_response()
}

/// `None` when the token is right, else the 401 answer.
fn unauthorised(headers: &HeaderMap) -> Option<Response> {
    match headers.get(TOKEN_HEADER) {
        Some(token) if token.as_bytes() == SITE_TOKEN.as_bytes() => None,
        _ => Some(site_error(
            StatusCode::UNAUTHORIZED,
            "bad_token",
            "unauthorized",
            "bad token",
        )),
    }
}

async fn site_call(
    State(state): State<Arc<SiteState>>,
    Path(code): Path<String>,
    headers: HeaderMap,
    Json(request): Json<CallRequest>,
) -> Response {
    if let Some(response) = unauthorised(&headers) {
        return response;
    }
    state.call_requests.fetch_add(1, Ordering::SeqCst);
    if !state.attributes.lock().expect("lock").contains_key(&code) {
        return site_error(
            StatusCode::NOT_FOUND,
            "unknown_instance",
            "not_found",
            "no such instance",
        );
    }
    match request.script.as_str() {
        "Echo" => Json(CallResponse {
            result: json!({ "instance": code, "params": request.params }),
        })
        .into_response(),
        "Slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Json(CallResponse {
                result: json!(null),
            })
            .into_response()
        }
        _ => site_error(
            StatusCode::NOT_FOUND,
            "unknown_script",
            "not_found",
            "no such script",
        ),
    }
}

async fn site_get(
    State(state): State<Arc<SiteState>>,
    Path(code): Path<String>,
    headers: HeaderMap,
    Json(request): Json<GetAttributesRequest>,
) -> Response {
    if let Some(response) = unauthorised(&headers) {
        return response;
    }
    state.get_requests.fetch_add(1, Ordering::SeqCst);
    let attributes = state.attributes.lock().expect("lock");
    let Some(values) = attributes.get(&code) else {
        return site_error(
            StatusCode::NOT_FOUND,
            "unknown_instance",
            "not_found",
            "no such instance",
        );
    };
    let mut out = BTreeMap::new();
    for name in request.names {
        match values.get(&name) {
            Some(value) => {
                out.insert(name, value.clone());
            }
            None => {
                return site_error(
                    StatusCode::NOT_FOUND,
                    "unknown_attribute",
                    "not_found",
                    "no such attribute",
                );
            }
        }
    }
    Json(AttributesResponse { values: out }).into_response()
}

async fn site_set(
    State(state): State<Arc<SiteState>>,
    Path(code): Path<String>,
    headers: HeaderMap,
    Json(request): Json<SetAttributesRequest>,
) -> Response {
    if let Some(response) = unauthorised(&headers) {
        return response;
    }
    state.set_requests.fetch_add(1, Ordering::SeqCst);
    let mut attributes = state.attributes.lock().expect("lock");
    let Some(values) = attributes.get_mut(&code) else {
        return site_error(
            StatusCode::NOT_FOUND,
            "unknown_instance",
            "not_found",
            "no such instance",
        );
    };
    values.extend(request.values);
    Json(json!({})).into_response()
}

/// Starts the stand-in with instance `PUMP-001` (Speed 1450.0, Running false).
pub async fn start_site() -> SiteStandIn {
    let state = Arc::new(SiteState::default());
    state.attributes.lock().expect("lock").insert(
        "PUMP-001".into(),
        BTreeMap::from([
            ("Speed".to_string(), json!(1450.0)),
            ("Running".to_string(), json!(false)),
        ]),
    );
    let app = axum::Router::new()
        .route("/internal/instances/{code}/call", post(site_call))
        .route("/internal/instances/{code}/attributes/get", post(site_get))
        .route("/internal/instances/{code}/attributes/set", post(site_set))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind site");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    SiteStandIn { url, state }
}

/// A port nothing listens on.
pub async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{address}")
}

/// The scripts every test deployment has.
pub const SCRIPTS: &[(&str, &str)] = &[
    (
        "api/echo.scl",
        r#"fn main(name: string, count: int) -> { name: string, count: int } {
    return { name: name, count: count };
}
"#,
    ),
    (
        "api/order.scl",
        r#"type Item = { sku: string, qty: int, note: string? }

fn main(order: string, items: list<Item>, tags: map<float>, urgent: bool?) -> int {
    var total = 0;
    for item in items {
        total += item.qty;
    }
    return total;
}
"#,
    ),
    (
        "api/fail.scl",
        r#"fn main() -> int {
    throw error("boom", "cannot open /srv/secret/path.db: SELECT * FROM users");
}
"#,
    ),
    (
        "api/sum.scl",
        r#"fn main(n: int, width: int) -> { total: int, length: int } {
    var total = 0;
    for i in 0..n {
        total += i;
    }
    var chunk = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    for i in 0..10 {
        chunk = chunk + chunk;
    }
    var parts: list<string> = [];
    for i in 0..width {
        parts.push(chunk + "!");
    }
    var length = 0;
    for part in parts {
        length += part.len();
    }
    return { total: total, length: length };
}
"#,
    ),
    (
        "api/spin.scl",
        r#"fn main() -> int {
    var i = 0;
    while true {
        i += 1;
    }
    return i;
}
"#,
    ),
    (
        "api/route_call.scl",
        r#"fn main(code: string) -> json {
    return Route.To(code).Call("Echo", { x: 1 });
}
"#,
    ),
    (
        "api/route_attrs.scl",
        r#"fn main(code: string) -> map<json> {
    Route.To(code).SetAttributes({ Speed: 1500.0, Running: true });
    return Route.To(code).GetAttributes(["Speed", "Running"]);
}
"#,
    ),
    (
        "api/route_one.scl",
        r#"fn main(code: string) -> json {
    Route.To(code).SetAttribute("Speed", 12.5);
    return Route.To(code).GetAttribute("Speed");
}
"#,
    ),
    (
        "api/route_kind.scl",
        r#"fn main(code: string) -> string {
    try {
        Route.To(code).GetAttribute("Speed");
        return "ok";
    } catch e {
        return e.kind;
    }
}
"#,
    ),
    (
        "api/route_raw.scl",
        r#"fn main(code: string) -> json {
    return Route.To(code).GetAttribute("Speed");
}
"#,
    ),
    (
        "api/route_slow.scl",
        r#"fn main(code: string) -> string {
    try {
        Route.To(code).Call("Slow", {});
    } catch e {
        return "caught ${e.kind}";
    }
    return "finished";
}
"#,
    ),
    (
        "api/db_answer.scl",
        r#"fn main(value: int) -> int {
    let db = Database.Connection("Central");
    db.Execute("CREATE TABLE IF NOT EXISTS answers (v INTEGER)", []);
    db.Execute("INSERT INTO answers (v) VALUES (@p1)", [value]);
    return db.Scalar("SELECT max(v) FROM answers", []) as int;
}
"#,
    ),
    (
        "site/echo.scl",
        "fn main(x: int) -> int {\n    return x;\n}\n",
    ),
];

/// The deployment text; `site_a` and `site_b` are the sites' URLs.
pub fn deployment_text(site_a: &str, site_b: &str, max_body_bytes: u64) -> String {
    let erp = sha256_hex(ERP_KEY);
    let other = sha256_hex(OTHER_KEY);
    let old = sha256_hex(OLD_KEY);
    let admin = sha256_hex(ADMIN_KEY);
    let mut text = format!(
        r#"data_dir = "./data"

[central]
listen = "127.0.0.1:0"
max_body_bytes = {max_body_bytes}

[[site]]
name = "plant-a"
listen = "127.0.0.1:0"
url = "{site_a}"
token_env = "SCL_TEST_SITE_TOKEN"

[[site]]
name = "plant-b"
listen = "127.0.0.1:0"
url = "{site_b}"
token_env = "SCL_TEST_SITE_TOKEN"

[templates.Pump.attributes]
Speed = {{ type = "float", default = 0.0 }}
Running = {{ type = "bool", default = false }}

[templates.Pump.scripts]
Echo = {{ file = "site/echo.scl", kind = "instance" }}
Slow = {{ file = "site/echo.scl", kind = "instance" }}

[[instance]]
code = "PUMP-001"
template = "Pump"
site = "plant-a"

[[instance]]
code = "PUMP-900"
template = "Pump"
site = "plant-b"

[api_keys.erp]
sha256 = "{erp}"

[api_keys.other]
sha256 = "{other}"

[api_keys.old]
sha256 = "{old}"
enabled = false

[admin_keys.ops]
sha256 = "{admin}"

[databases.Central]
driver = "sqlite"
url = "sqlite://central.db"
"#
    );
    let methods: &[(&str, &str, u64)] = &[
        ("Echo", "api/echo.scl", 30),
        ("Order", "api/order.scl", 30),
        ("Fail", "api/fail.scl", 30),
        ("Spin", "api/spin.scl", 1),
        ("Sum", "api/sum.scl", 30),
        ("RouteCall", "api/route_call.scl", 30),
        ("RouteAttributes", "api/route_attrs.scl", 30),
        ("RouteOne", "api/route_one.scl", 30),
        ("RouteKind", "api/route_kind.scl", 30),
        ("RouteRaw", "api/route_raw.scl", 30),
        ("RouteSlow", "api/route_slow.scl", 1),
        ("DbAnswer", "api/db_answer.scl", 30),
    ];
    for (name, script, timeout) in methods {
        text.push_str(&format!(
            "\n[api_methods.{name}]\nscript = \"{script}\"\napproved_keys = [\"erp\", \"old\"]\ntimeout_s = {timeout}\n"
        ));
    }
    text
}

/// A deployment on disk and central serving it.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub central: Option<CentralHandle>,
    pub base: String,
    pub client: reqwest::Client,
    pub site: SiteStandIn,
}

impl Fixture {
    pub async fn start() -> Fixture {
        Fixture::start_with_limit(64 * 1024).await
    }

    pub async fn start_with_limit(max_body_bytes: u64) -> Fixture {
        let site = start_site().await;
        let closed = closed_port_url().await;
        let dir = tempfile::tempdir().expect("temp dir");
        for (path, source) in SCRIPTS {
            let full = dir.path().join(path);
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(&full, source).expect("write script");
        }
        let config_path = dir.path().join("deploy.toml");
        std::fs::write(
            &config_path,
            deployment_text(&site.url, &closed, max_body_bytes),
        )
        .expect("write deployment");
        let deployment = Deployment::load(&config_path).unwrap_or_else(|errors| {
            panic!("deployment: {errors:?}");
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind central");
        let config = CentralConfig {
            script_threads: 4,
            env: Arc::new(|name: &str| {
                (name == "SCL_TEST_SITE_TOKEN").then(|| SITE_TOKEN.to_string())
            }),
            ..CentralConfig::default()
        };
        let central = central::start(Arc::new(deployment), listener, config)
            .await
            .unwrap_or_else(|e| panic!("central did not start: {e}"));
        let base = format!("http://{}", central.local_addr());
        Fixture {
            dir,
            config_path,
            central: Some(central),
            base,
            client: reqwest::Client::new(),
            site,
        }
    }

    /// POSTs JSON to `/api/{method}` with `key`; returns status and body.
    pub async fn call(&self, method: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!("{}/api/{method}", self.base))
            .json(&body);
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.expect("JSON body");
        (status, body)
    }

    pub async fn stop(&mut self) {
        if let Some(central) = self.central.take() {
            central.shutdown().await.expect("clean shutdown");
        }
    }
}
