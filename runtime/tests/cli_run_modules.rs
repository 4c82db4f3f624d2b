//! `scl run --config` through the real binary with the real outbound modules: an
//! `ExternalSystem.Call` to a real HTTP server started here (axum on loopback), a SQLite file
//! through `Database.Connection`, a `CachedCall` that fails transiently and is buffered into
//! the site's store-and-forward buffer under the deployment's `data_dir`, and `--dry-run`,
//! which still sends nothing.

mod external_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use external_support::{Answer, CountingServer, runtime};
use scl_runtime::saf::{Saf, SafConfig, Status};
use serde_json::{Value, json};

fn scl(directory: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scl"))
        .args(args)
        .current_dir(directory)
        .output()
        .expect("the scl binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A deployment with one site, the `MES` system at `base_url` and the `Plant` SQLite file.
fn deployment(directory: &Path, base_url: &str) -> PathBuf {
    let toml = format!(
        r#"
data_dir = "data"

[[site]]
name = "plant-a"
listen = "127.0.0.1:7101"
url = "http://127.0.0.1:7101"

[external_systems.MES]
base_url = "{base_url}"
timeout_s = 5
retry = {{ max_retries = 3, interval_s = 60 }}
methods.GetOrder = {{ http = "GET", path = "/orders/{{id}}" }}
methods.PostReading = {{ http = "POST", path = "/readings" }}

[databases.Plant]
driver = "sqlite"
url = "sqlite://plant.db"
"#
    );
    let path = directory.join("deploy.toml");
    std::fs::write(&path, toml).expect("write the deployment");
    path
}

const SCRIPT: &str = r#"
fn main(id: int) -> json {
    let order = ExternalSystem.Call("MES", "GetOrder", { id: id });
    let db = Database.Connection("Plant");
    db.Execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, body TEXT)", []);
    db.Execute("INSERT INTO orders(id, body) VALUES (@p1, @p2)", [id, Json.Stringify(order)]);
    let stored = db.Query("SELECT id, body FROM orders", []);
    var route = "";
    try {
        Route.To("PUMP-001").Call("Status", {});
    } catch e {
        route = e.kind;
    }
    return { order: order, stored: stored, route: route };
}
"#;

#[test]
fn call_and_database_are_real_with_config() {
    let runtime = runtime();
    let server = CountingServer::start(&runtime);
    server.default_answer(
        "/orders/42",
        Answer::json(200, r#"{"order": 42, "state": "released"}"#),
    );
    let directory = tempfile::tempdir().expect("temporary folder");
    deployment(directory.path(), &server.url());
    std::fs::write(directory.path().join("job.scl"), SCRIPT).expect("write the script");

    let output = scl(
        directory.path(),
        &[
            "run",
            "job.scl",
            "--config",
            "deploy.toml",
            "--arg",
            "id=42",
        ],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let result: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(
        result,
        json!({
            "order": {"order": 42, "state": "released"},
            "stored": [{"id": 42, "body": "{\"order\":42,\"state\":\"released\"}"}],
            "route": "unavailable"
        })
    );
    // The request really reached the server.
    let requests = server.requests_to("/orders/42");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    // The run's counters are printed with its stats.
    assert!(stderr.contains("callouts 1"), "{stderr}");
    assert!(stderr.contains("database.queries 3"), "{stderr}");
    // The SQLite file is next to the deployment, with the row.
    let connection = rusqlite::Connection::open(directory.path().join("plant.db")).expect("open");
    let count: i64 = connection
        .query_row("SELECT COUNT(*) FROM orders", [], |row| row.get(0))
        .expect("count");
    assert_eq!(count, 1);

    // A failing call is a catchable error... and uncaught, the run fails with its kind/code.
    server.default_answer(
        "/orders/7",
        Answer::json(404, r#"{"error": "no such order"}"#),
    );
    let output = scl(
        directory.path(),
        &["run", "job.scl", "--config", "deploy.toml", "--arg", "id=7"],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error [permanent/"), "{stderr}");
    assert!(
        stderr.contains("event external_call_failed"),
        "the permanent failure is reported as an event: {stderr}"
    );
}

#[test]
fn cached_call_is_buffered_in_the_sites_buffer_and_dry_run_sends_nothing() {
    let runtime = runtime();
    let server = CountingServer::start(&runtime);
    server.default_answer("/readings", Answer::status(503));
    let directory = tempfile::tempdir().expect("temporary folder");
    deployment(directory.path(), &server.url());
    std::fs::write(
        directory.path().join("push.scl"),
        r#"
fn main() -> json {
    let d = ExternalSystem.CachedCall("MES", "PostReading", { asset: "P1", value: 2.5 });
    return { id: d.id, status: d.status };
}
"#,
    )
    .expect("write the script");

    let output = scl(
        directory.path(),
        &["run", "push.scl", "--config", "deploy.toml"],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let result: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(result["status"], json!("buffered"), "{result}");
    let id = result["id"].as_str().expect("an id").to_owned();
    assert_eq!(
        server.requests_to("/readings").len(),
        1,
        "one first attempt"
    );
    assert!(
        stderr.contains("scl run` only buffers"),
        "the run says the buffer is not forwarded: {stderr}"
    );

    // The message is on disk in the site's buffer, waiting for a site node.
    let buffer = directory.path().join("data/site-plant-a/saf");
    let saf = Saf::open(SafConfig::new(&buffer)).expect("open the buffer");
    let report = saf.status(&id).expect("read").expect("the buffered call");
    assert_eq!(report.status, Status::Retrying);
    assert_eq!(report.target, "MES/PostReading");
    assert_eq!(report.attempts, 1);
    saf.close_and_wait().expect("close");

    // --dry-run keeps printing instead of sending.
    let output = scl(
        directory.path(),
        &["run", "push.scl", "--config", "deploy.toml", "--dry-run"],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("dry-run: ExternalSystem.CachedCall"),
        "{stderr}"
    );
    assert_eq!(server.requests_to("/readings").len(), 1, "nothing sent");
}

#[test]
fn without_config_the_outbound_modules_are_unavailable() {
    let directory = tempfile::tempdir().expect("temporary folder");
    std::fs::write(
        directory.path().join("q.scl"),
        r#"
fn main() -> json {
    return Database.Connection("Plant").Query("SELECT 1", []);
}
"#,
    )
    .expect("write the script");
    let output = scl(directory.path(), &["run", "q.scl"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error [unavailable/needs_site]"),
        "{stderr}"
    );
    assert!(stderr.contains("--config"), "{stderr}");
}
