//! `NodeModules` through the engine against the real servers `tests/run.sh` starts: a
//! JIT-compiled api script on central querying PostgreSQL (`tests/servers/postgres.sh`), and
//! an instance script on a site sending through the aiosmtpd server (`tests/servers/smtp.sh`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scl_compiler::{CallOptions, CompileOptions, Engine, Outcome};
use scl_lang::ScriptKind;
use scl_runtime::deployment::Deployment;
use scl_runtime::modules::{NodeEvents, NodeModules, NodeRole};
use scl_runtime::saf::{Saf, SafConfig};
use serde_json::json;

fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!("start the servers with tests/run.sh: {name} is unset"),
    }
}

#[derive(Default)]
struct Recorded(Mutex<Vec<(String, String, Option<String>)>>);

impl NodeEvents for Recorded {
    fn record(&self, kind: &str, message: &str, delivery_id: Option<&str>) {
        self.0.lock().unwrap().push((
            kind.to_owned(),
            message.to_owned(),
            delivery_id.map(str::to_owned),
        ));
    }
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn engine(modules: &NodeModules) -> Engine {
    let mut engine = Engine::default();
    scl_stdlib::core_modules::register_core_modules(&mut engine).expect("core modules");
    modules.register(&mut engine).expect("node modules");
    engine
}

fn run(
    engine: &Engine,
    modules: &NodeModules,
    kind: ScriptKind,
    source: &str,
    params: serde_json::Value,
) -> (Outcome, Vec<String>) {
    let script = engine
        .compile(
            source,
            &CompileOptions {
                kind: Some(kind),
                require_main: true,
            },
        )
        .unwrap_or_else(|error| panic!("compile: {error}"));
    let scope = modules.scope(None);
    let outcome = script.call_main_json(
        &params,
        &CallOptions {
            host_data: Some(&scope),
            ..CallOptions::default()
        },
    );
    (outcome, scope.end().rolled_back)
}

fn counter(outcome: &Outcome, name: &str) -> Option<u64> {
    outcome
        .stats
        .counters
        .iter()
        .find(|(counter, _)| counter == name)
        .map(|(_, value)| *value)
}

#[test]
fn an_api_script_on_central_queries_postgres() {
    let runtime = tokio_runtime();
    // The URL (with its password) comes from the environment variable the file names.
    let deployment = Deployment::from_source(
        Path::new("/nonexistent/deploy.toml"),
        "[databases.Central]\ndriver = \"postgres\"\nurl_env = \"SCL_TEST_POSTGRES_URL\"\n".into(),
    )
    .unwrap_or_else(|errors| panic!("{errors:?}"));
    let modules = NodeModules::build(
        &deployment,
        NodeRole::Central,
        runtime.handle().clone(),
        None,
        &|name| (name == "SCL_TEST_POSTGRES_URL").then(|| env(name)),
        Arc::new(Recorded::default()),
    )
    .expect("modules");
    assert!(modules.problems().is_empty(), "{:?}", modules.problems());
    let engine = engine(&modules);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let table = format!("modules_orders_{}_{nanos}", std::process::id());

    let source = format!(
        r#"
fn main(asset: string) -> json {{
    let db = Database.Connection("Central");
    db.Execute("CREATE TABLE {table} (id INT PRIMARY KEY, asset TEXT NOT NULL, qty NUMERIC(10, 2))", []);
    let n = db.Execute("INSERT INTO {table}(id, asset, qty) VALUES (@p1, @p2, @p3), (@p4, @p5, @p6)",
        [1, asset, 2.5, 2, "Grüße", null]);
    let rows = db.Query("SELECT id, asset, qty FROM {table} WHERE asset = @p1 OR qty IS NULL ORDER BY id", [asset]);
    db.Begin();
    db.Execute("DELETE FROM {table}", []);
    let inside = db.Scalar("SELECT COUNT(*) FROM {table}", []);
    var code = "";
    try {{
        db.Query("SELECT * FROM no_such_table_here", []);
    }} catch e {{
        code = e.kind + "/" + e.code;
    }}
    return {{ inserted: n, rows: rows, inside: inside, code: code }};
}}
"#
    );
    let (outcome, rolled_back) = run(
        &engine,
        &modules,
        ScriptKind::Api,
        &source,
        json!({"asset": "P-7"}),
    );
    let result = outcome
        .result
        .as_ref()
        .unwrap_or_else(|error| panic!("{error}"))
        .to_json();
    assert_eq!(
        result,
        json!({
            "inserted": 2,
            "rows": [
                {"id": 1, "asset": "P-7", "qty": "2.50"},
                {"id": 2, "asset": "Grüße", "qty": null}
            ],
            "inside": 0,
            // The failed statement aborted the open transaction on PostgreSQL; it was still
            // the script's to catch.
            "code": "permanent/42P01"
        })
    );
    // The DELETE inside the transaction the script never finished was rolled back.
    assert_eq!(rolled_back, ["Central"]);
    assert_eq!(counter(&outcome, "database.queries"), Some(6));
    assert_eq!(counter(&outcome, "database.dml_rows"), Some(4));
    let (after, _) = run(
        &engine,
        &modules,
        ScriptKind::Api,
        &format!(
            r#"fn main() -> json {{
    let db = Database.Connection("Central");
    let count = db.Scalar("SELECT COUNT(*) FROM {table}", []);
    db.Execute("DROP TABLE {table}", []);
    return count;
}}"#
        ),
        json!({}),
    );
    assert_eq!(
        after
            .result
            .unwrap_or_else(|error| panic!("{error}"))
            .to_json(),
        json!(2)
    );
}

/// Where the SMTP server stores messages: wait for the one with this delivery id.
fn stored_message(delivery_id: &str) -> String {
    let maildir = PathBuf::from(env("SCL_TEST_SMTP_MAILDIR"));
    let needle = format!("{delivery_id}@");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(entries) = std::fs::read_dir(&maildir) {
            for entry in entries.flatten() {
                if let Ok(text) = std::fs::read_to_string(entry.path())
                    && text.contains(&needle)
                {
                    return text;
                }
            }
        }
        assert!(
            Instant::now() < until,
            "the SMTP server did not store {delivery_id}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn an_instance_script_on_a_site_sends_a_notification() {
    let runtime = tokio_runtime();
    let directory = tempfile::tempdir().expect("temporary folder");
    let toml = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"scada@plant.example\"\n\
         auth = {{ kind = \"basic\", username = \"{}\", password_env = \"SMTP_PASSWORD\" }}\n\
         [notification_lists]\nOps = [\"op1@plant.example\", \"op2@plant.example\"]\n\
         Rejecting = [\"reject550@plant.example\"]\n",
        env("SCL_TEST_SMTP_PLAIN_PORT"),
        env("SCL_TEST_SMTP_USER"),
    );
    let deployment = Deployment::from_source(&directory.path().join("deploy.toml"), toml)
        .unwrap_or_else(|errors| panic!("{errors:?}"));
    let saf = Saf::open(SafConfig::new(directory.path().join("saf"))).expect("buffer");
    let events = Arc::new(Recorded::default());
    let modules = NodeModules::build(
        &deployment,
        NodeRole::Site,
        runtime.handle().clone(),
        Some(saf),
        &|name| (name == "SMTP_PASSWORD").then(|| env("SCL_TEST_SMTP_PASSWORD")),
        Arc::clone(&events) as Arc<dyn NodeEvents>,
    )
    .expect("modules");
    assert!(modules.problems().is_empty(), "{:?}", modules.problems());
    let engine = engine(&modules);
    let source = r#"
fn main(t: float) -> json {
    let d = Notify.To("Ops").Send("High temperature", "P-7 is at ${t} C");
    var rejected = "";
    try {
        Notify.To("Rejecting").Send("s", "b");
    } catch e {
        rejected = "${e.kind}/${e.code}/${e.status ?? 0}";
    }
    return { id: d.id, status: d.status, rejected: rejected };
}
"#;
    let (outcome, _) = run(
        &engine,
        &modules,
        ScriptKind::Instance,
        source,
        json!({"t": 81.5}),
    );
    let result = outcome
        .result
        .as_ref()
        .unwrap_or_else(|error| panic!("{error}"))
        .to_json();
    assert_eq!(result["status"], json!("delivered"), "{result}");
    assert_eq!(result["rejected"], json!("permanent/smtp_reply/550"));
    assert_eq!(counter(&outcome, "notifications"), Some(2));
    let id = result["id"].as_str().expect("an id");
    let stored = stored_message(id);
    assert!(stored.contains("op1@plant.example") && stored.contains("op2@plant.example"));
    // The permanent failure went to the node's events.
    let events = events.0.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|(kind, message, _)| kind == "notification_failed" && message.contains("550")),
        "{events:?}"
    );
}
