//! The end-to-end suite of seed 000 WP-13: central and two sites as separate
//! `scl serve` processes on loopback, driven only through the inbound API,
//! against real peers — httpbin (`tests/servers/httpbin.sh`), the aiosmtpd
//! server (`tests/servers/smtp.sh`), PostgreSQL (`tests/servers/postgres.sh`)
//! and an ERP peer this test runs (a real HTTP server that records what it
//! receives and answers 503 while it is "down"). Outages of SMTP and
//! PostgreSQL are made by a TCP gate in front of the real server that refuses
//! and cuts connections while closed.
//!
//! Every scenario goes inbound API → api script → `Route.To` → site script →
//! module, and is checked at the receiving end (the ERP peer's log, the SMTP
//! server's maildir, the database's rows), not only by what the script says.

mod process_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use process_support::{Api, Folder, SITE_TOKEN, eventually, free_port, server_env};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const KEY: &str = "scl_e2e_erp_key";
const OLD_KEY: &str = "scl_e2e_disabled_key";
const OTHER_KEY: &str = "scl_e2e_other_key";

// --- peers -----------------------------------------------------------------------------------

/// What the ERP peer received: (Idempotency-Key, body) of each accepted call.
#[derive(Default)]
struct Erp {
    down: AtomicBool,
    accepted: Mutex<Vec<(String, Value)>>,
    refused: Mutex<u32>,
    missing: Mutex<u32>,
}

async fn readings(
    State(erp): State<Arc<Erp>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if erp.down.load(Ordering::SeqCst) {
        *erp.refused.lock().expect("lock") += 1;
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "down for maintenance" })),
        );
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    erp.accepted.lock().expect("lock").push((key, body));
    (StatusCode::OK, Json(json!({ "ok": true })))
}

async fn missing(State(erp): State<Arc<Erp>>) -> (StatusCode, Json<Value>) {
    *erp.missing.lock().expect("lock") += 1;
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "no such resource" })),
    )
}

async fn start_erp() -> (u16, Arc<Erp>) {
    let erp = Arc::new(Erp::default());
    let router = axum::Router::new()
        .route("/readings", post(readings))
        .route("/missing", post(missing))
        .with_state(Arc::clone(&erp));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (port, erp)
}

/// A TCP gate in front of a real server: while open it forwards every
/// connection; closing it stops listening (connections are refused) and cuts
/// the connections it carries, as a network outage would.
struct Gate {
    port: u16,
    target: u16,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Gate {
    fn new(target: u16) -> Gate {
        Gate {
            port: free_port(),
            target,
            task: Mutex::new(None),
        }
    }

    async fn open(&self) {
        let listener = eventually("the gate's port", Duration::from_secs(10), || async {
            TcpListener::bind(("127.0.0.1", self.port)).await.ok()
        })
        .await;
        let target = self.target;
        let task = tokio::spawn(async move {
            // Dropping the set (when the gate closes) aborts every connection.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        *self.task.lock().expect("lock") = Some(task);
    }

    async fn close(&self) {
        let task = self.task.lock().expect("lock").take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Whether the SMTP server stored a message whose Message-ID carries `id`.
fn mail_stored(id: &str) -> bool {
    let needle = format!("Message-ID: <{id}@");
    let Ok(entries) = std::fs::read_dir(server_env("SCL_TEST_SMTP_MAILDIR")) else {
        return false;
    };
    entries
        .flatten()
        .any(|entry| std::fs::read_to_string(entry.path()).is_ok_and(|text| text.contains(&needle)))
}

// --- the installation ------------------------------------------------------------------------

struct Ports {
    central: u16,
    a: u16,
    b: u16,
    smtp: u16,
    erp: u16,
}

fn deployment(ports: &Ports, httpbin: &str) -> String {
    let hash = scl_runtime::keys::sha256_hex;
    format!(
        r#"data_dir = "./data"

[central]
listen = "127.0.0.1:{central}"

[[site]]
name = "plant-a"
listen = "127.0.0.1:{a}"
url = "http://127.0.0.1:{a}"
token_env = "SCL_SITE_TOKEN"

[[site]]
name = "plant-b"
listen = "127.0.0.1:{b}"
url = "http://127.0.0.1:{b}"
token_env = "SCL_SITE_TOKEN"

[smtp]
host = "127.0.0.1"
port = {smtp}
tls = "none"
from = "scada@plant.example"
timeout_s = 5
auth = {{ kind = "basic", username = "alice", password_env = "SCL_TEST_SMTP_PASSWORD" }}
retry = {{ max_retries = 100, interval_s = 1 }}

[notification_lists]
Operators = ["op1@plant.example", "op2@plant.example"]

[external_systems.Httpbin]
base_url = "{httpbin}"
timeout_s = 10
methods.Echo = {{ http = "POST", path = "/anything/orders" }}

[external_systems.Erp]
base_url = "http://127.0.0.1:{erp}"
timeout_s = 5
retry = {{ max_retries = 100, interval_s = 1 }}
methods.PostReading = {{ http = "POST", path = "/readings" }}
methods.Missing     = {{ http = "POST", path = "/missing" }}

[databases.Historian]
driver = "postgres"
url_env = "E2E_HISTORIAN_URL"
retry = {{ max_retries = 100, interval_s = 1 }}

[templates.Pump.attributes]
Speed   = {{ type = "float", default = 0.0 }}
Running = {{ type = "bool",  default = false }}
Label   = {{ type = "string", default = "" }}

[templates.Pump.scripts]
Status  = {{ file = "scripts/status.scl", kind = "instance" }}
Httpbin = {{ file = "scripts/httpbin.scl", kind = "instance" }}
Reading = {{ file = "scripts/reading.scl", kind = "instance" }}
Missing = {{ file = "scripts/missing.scl", kind = "instance" }}
Mail    = {{ file = "scripts/mail.scl", kind = "instance" }}
Rows    = {{ file = "scripts/rows.scl", kind = "instance" }}
Write   = {{ file = "scripts/write.scl", kind = "instance" }}

[[instance]]
code = "PUMP-A1"
template = "Pump"
site = "plant-a"
attributes = {{ Speed = 1450.0 }}

[[instance]]
code = "PUMP-B1"
template = "Pump"
site = "plant-b"
attributes = {{ Speed = 900.0 }}

[api_keys.erp]
sha256 = "{erp_key}"

[api_keys.old]
sha256 = "{old_key}"
enabled = false

[api_keys.other]
sha256 = "{other_key}"

[api_methods.Run]
script = "scripts/api/run.scl"
approved_keys = ["erp", "old"]
timeout_s = 20

[api_methods.Attrs]
script = "scripts/api/attrs.scl"
approved_keys = ["erp"]

[api_methods.Divide]
script = "scripts/api/divide.scl"
approved_keys = ["erp"]
"#,
        central = ports.central,
        a = ports.a,
        b = ports.b,
        smtp = ports.smtp,
        erp = ports.erp,
        erp_key = hash(KEY),
        old_key = hash(OLD_KEY),
        other_key = hash(OTHER_KEY),
    )
}

const SCRIPTS: &[(&str, &str)] = &[
    (
        "scripts/status.scl",
        "fn main() -> json {\n    return { code: Instance.Code(), speed: Attributes.Get(\"Speed\") };\n}\n",
    ),
    (
        "scripts/httpbin.scl",
        "fn main(order: string) -> json {\n    return ExternalSystem.Call(\"Httpbin\", \"Echo\", { order: order, asset: Instance.Code() });\n}\n",
    ),
    (
        "scripts/reading.scl",
        "fn main(value: float) -> json {\n    let d = ExternalSystem.CachedCall(\"Erp\", \"PostReading\", { asset: Instance.Code(), value: value });\n    return { id: d.id, status: d.status };\n}\n",
    ),
    (
        "scripts/missing.scl",
        "fn main() -> json {\n    try {\n        ExternalSystem.CachedCall(\"Erp\", \"Missing\", {});\n    } catch e {\n        return { kind: e.kind, code: e.code, status: e.status };\n    }\n    return \"no error\";\n}\n",
    ),
    (
        "scripts/mail.scl",
        "fn main(subject: string) -> json {\n    let d = Notify.To(\"Operators\").Send(subject, \"sent by ${Instance.Code()}\");\n    return { id: d.id, status: d.status };\n}\n",
    ),
    (
        "scripts/rows.scl",
        "fn main(table: string) -> json {\n    let db = Database.Connection(\"Historian\");\n    db.Execute(\"CREATE TABLE IF NOT EXISTS ${table} (asset TEXT NOT NULL, value DOUBLE PRECISION)\", []);\n    return db.Query(\"SELECT asset, value FROM ${table} ORDER BY value\", []);\n}\n",
    ),
    (
        "scripts/write.scl",
        "fn main(table: string, value: float) -> json {\n    let d = Database.CachedWrite(\"Historian\", \"INSERT INTO ${table} (asset, value) VALUES (@p1, @p2)\", [Instance.Code(), value]);\n    return { id: d.id, status: d.status };\n}\n",
    ),
    (
        "scripts/api/run.scl",
        "// Runs an instance script wherever its instance lives.\nfn main(code: string, script: string, params: json) -> json {\n    return Route.To(code).Call(script, params);\n}\n",
    ),
    (
        "scripts/api/attrs.scl",
        "// Writes a batch of attributes, then reads a batch: two round trips.\nfn main(code: string, set: map<json>, names: list<string>) -> json {\n    Route.To(code).SetAttributes(set);\n    return Route.To(code).GetAttributes(names);\n}\n",
    ),
    (
        "scripts/api/divide.scl",
        "fn main(d: int) -> int {\n    return 10 / d;\n}\n",
    ),
];

fn assert_error(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "{answer:?}");
    assert_eq!(answer.1["code"], code, "{answer:?}");
    assert!(
        answer.1["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{answer:?}"
    );
}

/// Runs `script` of instance `code` through the inbound API.
async fn run(api: &Api, code: &str, script: &str, params: Value) -> (u16, Value) {
    api.call(
        "Run",
        Some(KEY),
        json!({ "code": code, "script": script, "params": params }),
    )
    .await
}

async fn site_metric(port: u16, state: &str) -> u64 {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("site metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find(|line| {
            line.starts_with("scl_saf_messages{") && line.contains(&format!("state=\"{state}\""))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("scl_saf_messages in the site's metrics")
}

async fn buffered_total(port: u16) -> u64 {
    let mut total = 0;
    for state in ["queued", "parked", "delivered", "discarded"] {
        total += site_metric(port, state).await;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wp13_central_and_two_sites_end_to_end() {
    let (erp_port, erp) = start_erp().await;
    let smtp = Gate::new(
        server_env("SCL_TEST_SMTP_PLAIN_PORT")
            .parse()
            .expect("smtp port"),
    );
    let postgres_url = server_env("SCL_TEST_POSTGRES_URL");
    let postgres_port: u16 = postgres_url
        .rsplit(':')
        .next()
        .and_then(|tail| tail.split('/').next())
        .and_then(|port| port.parse().ok())
        .expect("the port of SCL_TEST_POSTGRES_URL");
    let postgres = Gate::new(postgres_port);
    let historian_url = postgres_url.replace(
        &format!(":{postgres_port}/"),
        &format!(":{}/", postgres.port),
    );
    smtp.open().await;
    postgres.open().await;
    let ports = Ports {
        central: free_port(),
        a: free_port(),
        b: free_port(),
        smtp: smtp.port,
        erp: erp_port,
    };
    let folder = Folder::new(
        &deployment(&ports, &server_env("SCL_TEST_HTTPBIN_URL")),
        SCRIPTS,
    );
    let env = [("E2E_HISTORIAN_URL", historian_url.as_str())];
    let mut site_a = folder.serve("site:plant-a", &[], &env);
    let mut site_b = folder.serve("site:plant-b", &[], &env);
    let mut central = folder.serve("central", &[], &env);
    let api = Api::new(format!("http://127.0.0.1:{}", ports.central));
    api.wait_healthy().await;
    for (code, speed) in [("PUMP-A1", 1450.0), ("PUMP-B1", 900.0)] {
        let answer = eventually(
            "both sites to run the deployment",
            Duration::from_secs(60),
            || async {
                let answer = api
                    .try_call(
                        "Run",
                        Some(KEY),
                        &json!({ "code": code, "script": "Status", "params": {} }),
                    )
                    .await
                    .ok()?;
                (answer.0 == 200).then_some(answer)
            },
        )
        .await;
        // Test 1: inbound API → Route.To → site script → the answer flows back.
        assert_eq!(answer.1, json!({ "code": code, "speed": speed }));
    }

    // Test 2: ExternalSystem.Call → a real HTTP request → the response reaches the script
    // (httpbin echoes the JSON body it received).
    let answer = run(&api, "PUMP-A1", "Httpbin", json!({ "order": "A-17" })).await;
    assert_eq!(answer.0, 200, "{answer:?}");
    assert_eq!(
        answer.1["json"],
        json!({ "order": "A-17", "asset": "PUMP-A1" })
    );
    assert_eq!(answer.1["method"], "POST");

    // Test 3: CachedCall while the ERP answers 503 → buffered → retried → delivered once.
    erp.down.store(true, Ordering::SeqCst);
    let answer = run(&api, "PUMP-A1", "Reading", json!({ "value": 21.5 })).await;
    assert_eq!(answer.0, 200, "{answer:?}");
    assert_eq!(answer.1["status"], "buffered");
    let id = answer.1["id"].as_str().expect("delivery id").to_owned();
    eventually("a retry to be refused", Duration::from_secs(30), || async {
        (*erp.refused.lock().expect("lock") >= 2).then_some(())
    })
    .await;
    erp.down.store(false, Ordering::SeqCst);
    eventually("the reading to arrive", Duration::from_secs(30), || async {
        (!erp.accepted.lock().expect("lock").is_empty()).then_some(())
    })
    .await;
    eventually(
        "the buffer to record the delivery",
        Duration::from_secs(30),
        || async { (site_metric(ports.a, "delivered").await >= 1).then_some(()) },
    )
    .await;
    assert_eq!(
        *erp.accepted.lock().expect("lock"),
        [(id.clone(), json!({ "asset": "PUMP-A1", "value": 21.5 }))]
    );
    // Its history over the API (seed 003 FR-011/FR-015): delivered, after refused attempts.
    let report = api.delivery(&id, Some(KEY)).await;
    assert_eq!(report.0, 200, "{report:?}");
    let report = report.1;
    assert_eq!(report["site"], "plant-a");
    assert_eq!(report["status"], "delivered");
    assert_eq!(report["category"], "external_call");
    assert_eq!(report["target"], "Erp/PostReading");
    let history = report["history"].as_array().expect("history");
    assert!(report["attempts"].as_u64() >= Some(3), "{report}");
    assert_eq!(
        history.last().map(|a| &a["outcome"]),
        Some(&json!("delivered"))
    );
    assert!(
        history[..history.len() - 1]
            .iter()
            .all(|a| a["outcome"] == "transient" && a["status_code"] == 503),
        "{report}"
    );
    // The answer has the shape the OpenAPI document promises.
    let document: Value = api
        .http
        .get(format!("{}/api/openapi.json", api.base))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let schema = &document["components"]["schemas"]["Delivery"];
    for field in report.as_object().expect("object").keys() {
        assert!(
            schema["properties"].get(field).is_some(),
            "{field} is not documented"
        );
    }
    for field in schema["required"].as_array().expect("required") {
        assert!(
            report.get(field.as_str().unwrap_or_default()).is_some(),
            "{field} missing"
        );
    }
    assert_error(
        &api.delivery("0190a0a0-0000-7000-8000-000000000000", Some(KEY))
            .await,
        404,
        "unknown_delivery",
    );
    assert_error(&api.delivery(&id, None).await, 401, "missing_api_key");
    assert_error(
        &api.delivery(&id, Some(OLD_KEY)).await,
        401,
        "invalid_api_key",
    );
    // While up, CachedCall delivers at once.
    let answer = run(&api, "PUMP-B1", "Reading", json!({ "value": 7.0 })).await;
    assert_eq!(answer.1["status"], "delivered", "{answer:?}");

    // Test 8: CachedCall with a permanent 4xx → an error to the script, nothing buffered.
    let before = buffered_total(ports.a).await;
    let answer = run(&api, "PUMP-A1", "Missing", json!({})).await;
    assert_eq!(
        answer,
        (
            200,
            json!({ "kind": "permanent", "code": "http_status", "status": 404 })
        ),
    );
    assert_eq!(
        *erp.missing.lock().expect("lock"),
        1,
        "one attempt, no retry"
    );
    assert_eq!(
        buffered_total(ports.a).await,
        before,
        "nothing was buffered"
    );

    // Test 4: Notify → SMTP delivery succeeds (the server stored it).
    let answer = run(&api, "PUMP-A1", "Mail", json!({ "subject": "e2e up" })).await;
    assert_eq!(answer.1["status"], "delivered", "{answer:?}");
    let id = answer.1["id"].as_str().expect("id").to_owned();
    assert!(mail_stored(&id), "message {id} is in the maildir");

    // Test 5: SMTP unreachable → buffered → retried → delivered when it is back.
    smtp.close().await;
    let answer = run(&api, "PUMP-B1", "Mail", json!({ "subject": "e2e down" })).await;
    assert_eq!(answer.1["status"], "buffered", "{answer:?}");
    let id = answer.1["id"].as_str().expect("id").to_owned();
    assert!(!mail_stored(&id));
    let report = api.delivery(&id, Some(KEY)).await.1;
    assert_eq!(
        (&report["site"], &report["category"]),
        (&json!("plant-b"), &json!("notification"))
    );
    assert!(
        matches!(report["status"].as_str(), Some("pending" | "retrying")),
        "{report}"
    );
    assert!(
        report["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{report}"
    );
    smtp.open().await;
    eventually(
        "the buffered mail to be sent",
        Duration::from_secs(30),
        || async { mail_stored(&id).then_some(()) },
    )
    .await;

    // Test 6: Database.Connection → a real query.
    let table = format!("e2e_readings_{}", std::process::id());
    let answer = run(&api, "PUMP-A1", "Rows", json!({ "table": table })).await;
    assert_eq!(answer, (200, json!([])));

    // Test 7: CachedWrite while the database is unreachable → buffered → written once.
    postgres.close().await;
    let answer = run(
        &api,
        "PUMP-A1",
        "Write",
        json!({ "table": table, "value": 3.5 }),
    )
    .await;
    assert_eq!(answer.1["status"], "buffered", "{answer:?}");
    postgres.open().await;
    let rows = eventually(
        "the buffered write to land",
        Duration::from_secs(30),
        || async {
            let answer = run(&api, "PUMP-A1", "Rows", json!({ "table": table })).await;
            (answer.0 == 200 && answer.1.as_array().is_some_and(|rows| !rows.is_empty()))
                .then_some(answer.1)
        },
    )
    .await;
    assert_eq!(rows, json!([{ "asset": "PUMP-A1", "value": 3.5 }]));

    // Test 11: batch SetAttributes / GetAttributes through Route.To.
    let answer = api
        .call(
            "Attrs",
            Some(KEY),
            json!({
                "code": "PUMP-B1",
                "set": { "Speed": 1200, "Running": true, "Label": "north" },
                "names": ["Speed", "Running", "Label"]
            }),
        )
        .await;
    assert_eq!(
        answer,
        (
            200,
            json!({ "Speed": 1200.0, "Running": true, "Label": "north" })
        )
    );
    // A batch with one bad value changes nothing.
    let answer = api
        .call(
            "Attrs",
            Some(KEY),
            json!({ "code": "PUMP-B1", "set": { "Speed": 5, "Running": "yes" }, "names": [] }),
        )
        .await;
    assert_eq!(answer.0, 500, "{answer:?}");
    let answer = run(&api, "PUMP-B1", "Status", json!({})).await;
    assert_eq!(answer.1["speed"], 1200.0);

    // Test 10 and the key negatives: disabled key 401, unknown key 401, unapproved 403.
    assert_error(
        &api.call("Run", Some(OLD_KEY), json!({})).await,
        401,
        "invalid_api_key",
    );
    assert_error(
        &api.call("Run", Some("not-a-key"), json!({})).await,
        401,
        "invalid_api_key",
    );
    assert_error(
        &api.call("Run", Some(OTHER_KEY), json!({})).await,
        403,
        "key_not_approved",
    );
    // Bad parameters: 400 naming the parameter.
    let answer = api
        .call(
            "Run",
            Some(KEY),
            json!({ "code": 7, "script": "Status", "params": {} }),
        )
        .await;
    assert_error(&answer, 400, "invalid_parameter");
    assert!(
        answer.1["error"]
            .as_str()
            .is_some_and(|m| m.contains("code")),
        "{answer:?}"
    );
    // A script failure: 500 with a safe message.
    let answer = api.call("Divide", Some(KEY), json!({ "d": 0 })).await;
    assert_error(&answer, 500, "script_error");
    let message = answer.1["error"].as_str().unwrap_or_default();
    assert!(
        !message.contains("divide.scl") && !message.contains(".rs"),
        "{answer:?}"
    );

    // Test 9: a site that is down → an error to the caller at once, nothing buffered.
    site_b.stop();
    let answer = api
        .call(
            "Attrs",
            Some(KEY),
            json!({ "code": "PUMP-B1", "set": { "Label": "while down" }, "names": ["Label"] }),
        )
        .await;
    assert_error(&answer, 500, "site_unreachable");
    let mut site_b_again = folder.serve("site:plant-b", &[], &env);
    let answer = eventually("plant-b to come back", Duration::from_secs(60), || async {
        let answer = api
            .try_call(
                "Run",
                Some(KEY),
                &json!({ "code": "PUMP-B1", "script": "Status", "params": {} }),
            )
            .await
            .ok()?;
        (answer.0 == 200).then_some(answer)
    })
    .await;
    assert_eq!(answer.1["speed"], 1200.0, "attributes survived the restart");
    let answer = api
        .call(
            "Attrs",
            Some(KEY),
            json!({ "code": "PUMP-B1", "set": {}, "names": ["Label"] }),
        )
        .await;
    assert_eq!(
        answer,
        (200, json!({ "Label": "north" })),
        "the write was not buffered"
    );

    // The failures log holds the 500s (seed CD-IA-4), not the successes.
    let data = folder.dir.path().join("data/central");
    central.stop();
    let failures = folder.scl(&["failures", "--config", &folder.config().to_string_lossy()]);
    let text = String::from_utf8_lossy(&failures.stdout);
    assert!(failures.status.success(), "{failures:?}");
    assert!(
        text.contains("Divide") && text.contains("site_unreachable"),
        "{text}"
    );
    assert!(data.exists());

    // No secret reached any log.
    site_a.stop();
    site_b_again.stop();
    let password = server_env("SCL_TEST_SMTP_PASSWORD");
    for node in [&site_a, &site_b, &site_b_again, &central] {
        let logs = node.logs();
        for secret in [KEY, OLD_KEY, SITE_TOKEN, password.as_str(), "testpw"] {
            assert!(!logs.contains(secret), "{} logged a secret", node.role);
        }
    }
}

/// Seed [7.4-8-rt]: an api script may not call a shared script. The
/// deployment is refused by `scl check` and by a central node, with the
/// diagnostic's code and position.
#[test]
fn an_api_script_calling_a_shared_script_is_refused() {
    let folder = Folder::new(
        "[central]\nlisten = \"127.0.0.1:1\"\n\n[shared_scripts]\nHelper = \"scripts/helper.scl\"\n\n\
         [api_methods.Sneaky]\nscript = \"scripts/sneaky.scl\"\n",
        &[
            (
                "scripts/helper.scl",
                "fn main() -> int {\n    return 1;\n}\n",
            ),
            (
                "scripts/sneaky.scl",
                "fn main() -> json {\n    return Shared.Call(\"Helper\", {});\n}\n",
            ),
        ],
    );
    let config = folder.config();
    let check = folder.scl(&["check", "--config", &config.to_string_lossy()]);
    let text = String::from_utf8_lossy(&check.stdout).into_owned()
        + &String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{text}");
    assert!(
        text.contains("SCL0402") && text.contains("sneaky.scl:2:12"),
        "{text}"
    );
    let mut central = folder.serve("central", &[], &[]);
    let code = central.wait_exit(Duration::from_secs(60));
    assert_ne!(code, Some(0));
    let logs = central.logs();
    assert!(logs.contains("SCL0402"), "{logs}");
}
