//! The Database module through the engine: JIT-compiled scripts using
//! `Database.Connection(..).Query/Execute/Scalar/Begin/Commit/Rollback`, `Database.CachedWrite`
//! and `Deliveries.Status` against a real SQLite file, with the modules built by
//! `NodeModules` from deployment TOML exactly as a site builds them, and the store-and-forward
//! forwarder running on the deliverers it hands out.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scl_compiler::{CallOptions, CompileOptions, Engine, Limits, Outcome, Status, Value};
use scl_runtime::deployment::Deployment;
use scl_runtime::modules::{NodeEvents, NodeModules, NodeRole};
use scl_runtime::saf::{Forwarder, ForwarderConfig, Saf, SafConfig};
use serde_json::json;

/// Events as the test sees them.
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

struct Site {
    runtime: tokio::runtime::Runtime,
    directory: tempfile::TempDir,
    modules: NodeModules,
    engine: Engine,
    saf: Saf,
    forwarder: Option<Forwarder>,
}

impl Site {
    fn new(extra: &str) -> Site {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let directory = tempfile::tempdir().expect("temporary folder");
        let toml = format!(
            "[databases.Plant]\ndriver = \"sqlite\"\nurl = \"sqlite://plant.db\"\n{extra}\n"
        );
        let deployment = Deployment::from_source(&directory.path().join("deploy.toml"), toml)
            .unwrap_or_else(|errors| panic!("deployment: {errors:?}"));
        let saf = Saf::open(SafConfig::new(directory.path().join("saf"))).expect("buffer");
        let modules = NodeModules::build(
            &deployment,
            NodeRole::Site,
            runtime.handle().clone(),
            Some(saf.clone()),
            &|_| None,
            Arc::new(Recorded::default()),
        )
        .expect("modules");
        assert!(modules.problems().is_empty(), "{:?}", modules.problems());
        let mut engine = Engine::default();
        scl_stdlib::core_modules::register_core_modules(&mut engine).expect("core modules");
        modules.register(&mut engine).expect("node modules");
        Site {
            runtime,
            directory,
            modules,
            engine,
            saf,
            forwarder: None,
        }
    }

    fn start_forwarder(&mut self) {
        let _entered = self.runtime.enter();
        self.forwarder = Some(
            Forwarder::start(
                self.saf.clone(),
                self.modules.deliverers(),
                ForwarderConfig::default(),
            )
            .expect("forwarder"),
        );
    }

    fn db_path(&self) -> PathBuf {
        self.directory.path().join("plant.db")
    }

    /// Compile and run `source` once with a fresh scope; also returns what the end of the
    /// run rolled back.
    fn run(&self, source: &str, limits: Limits) -> (Outcome, Vec<String>) {
        let script = self
            .engine
            .compile(source, &CompileOptions::default())
            .unwrap_or_else(|error| panic!("compile: {error}"));
        let scope = self.modules.scope(None);
        let outcome = script.call_main_json(
            &json!({}),
            &CallOptions {
                limits,
                host_data: Some(&scope),
                ..CallOptions::default()
            },
        );
        let ended = scope.end();
        assert!(ended.failures.is_empty(), "{:?}", ended.failures);
        (outcome, ended.rolled_back)
    }

    fn run_ok(&self, source: &str) -> serde_json::Value {
        let (outcome, rolled_back) = self.run(source, Limits::default());
        assert!(rolled_back.is_empty(), "{rolled_back:?}");
        match outcome.result {
            Ok(value) => value.to_json(),
            Err(error) => panic!("the script failed: {error}"),
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(forwarder) = self.forwarder.take() {
            self.runtime
                .block_on(forwarder.shutdown(Duration::from_secs(5)));
        }
    }
}

fn counter(outcome: &Outcome, name: &str) -> Option<u64> {
    outcome
        .stats
        .counters
        .iter()
        .find(|(counter, _)| counter == name)
        .map(|(_, value)| *value)
}

const CREATE: &str = r#"
fn main() -> int {
    return Database.Connection("Plant").Execute(
        "CREATE TABLE readings (id INTEGER PRIMARY KEY, asset TEXT NOT NULL, value REAL)", []);
}
"#;

fn count_rows(path: &Path) -> i64 {
    let connection = rusqlite::Connection::open(path).expect("open the file");
    connection
        .query_row("SELECT COUNT(*) FROM readings", [], |row| row.get(0))
        .expect("count")
}

#[test]
fn a_script_queries_executes_and_uses_transactions() {
    let site = Site::new("");
    site.run_ok(CREATE);
    let source = r#"
fn main() -> json {
    let db = Database.Connection("Plant");
    let inserted = db.Execute(
        "INSERT INTO readings(id, asset, value) VALUES (@p1, @p2, @p3), (@p4, @p5, @p6)",
        [1, "P1", 1.5, 2, "Grüße-温度", 2.5]);
    db.Begin();
    db.Execute("UPDATE readings SET value = @p1 WHERE id = @p2", [10.0, 1]);
    db.Commit();
    db.Begin();
    db.Execute("DELETE FROM readings", []);
    db.Rollback();
    let rows = db.Query("SELECT id, asset, value FROM readings WHERE id >= @p1 ORDER BY id", [1]);
    let count = db.Scalar("SELECT COUNT(*) FROM readings", []) as int;
    let none = db.Scalar("SELECT asset FROM readings WHERE id = @p1", [99]);
    var error = "";
    try {
        db.Query("SELEC 1", []);
    } catch e {
        error = e.kind;
    }
    var missing = "";
    try {
        Database.Connection("Nope");
    } catch e {
        missing = e.kind + "/" + e.code;
    }
    var twice = "";
    db.Begin();
    try {
        db.Begin();
    } catch e {
        twice = e.code;
    }
    db.Rollback();
    return { inserted: inserted, rows: rows, count: count, none: none, error: error,
             missing: missing, twice: twice };
}
"#;
    let (outcome, rolled_back) = site.run(source, Limits::default());
    assert!(rolled_back.is_empty(), "{rolled_back:?}");
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
                {"id": 1, "asset": "P1", "value": 10.0},
                {"id": 2, "asset": "Grüße-温度", "value": 2.5}
            ],
            "count": 2,
            "none": null,
            "error": "permanent",
            "missing": "not_found/not_found",
            "twice": "transaction_open"
        })
    );
    // INSERT, UPDATE, DELETE, SELECT, COUNT, SELECT, the bad query: 7 statements; rows
    // affected: 2 inserted, 1 updated, 2 deleted (then rolled back, but counted).
    assert_eq!(counter(&outcome, "database.queries"), Some(7));
    assert_eq!(counter(&outcome, "database.dml_rows"), Some(5));
    assert_eq!(count_rows(&site.db_path()), 2);
}

#[test]
fn a_transaction_left_open_is_rolled_back_at_the_end_of_the_run() {
    let site = Site::new("");
    site.run_ok(CREATE);
    let source = r#"
fn main() -> int {
    let db = Database.Connection("Plant");
    db.Begin();
    db.Execute("INSERT INTO readings(id, asset, value) VALUES (@p1, @p2, @p3)", [1, "P1", 1.0]);
    return db.Scalar("SELECT COUNT(*) FROM readings", []) as int;
}
"#;
    let (outcome, rolled_back) = site.run(source, Limits::default());
    // Inside the transaction the row is there...
    assert_eq!(outcome.result, Ok(Value::Int(1)));
    // ...and the end of the run rolled it back.
    assert_eq!(rolled_back, ["Plant"]);
    assert_eq!(count_rows(&site.db_path()), 0);

    // A script that fails inside its transaction is covered too, and the pool is usable after.
    let failing = r#"
fn main() -> int {
    let db = Database.Connection("Plant");
    db.Begin();
    db.Execute("INSERT INTO readings(id, asset, value) VALUES (@p1, @p2, @p3)", [2, "P2", 2.0]);
    throw "stop here";
}
"#;
    let (outcome, rolled_back) = site.run(failing, Limits::default());
    assert_eq!(outcome.status(), Status::Failure);
    assert_eq!(rolled_back, ["Plant"]);
    assert_eq!(count_rows(&site.db_path()), 0);
    let after = site.run_ok(
        r#"fn main() -> int { return Database.Connection("Plant").Execute("INSERT INTO readings(id, asset) VALUES (3, 'P3')", []); }"#,
    );
    assert_eq!(after, json!(1));
}

#[test]
fn a_query_cap_ends_the_run_before_the_statement_is_sent() {
    let site = Site::new("");
    site.run_ok(CREATE);
    let source = r#"
fn main() -> int {
    let db = Database.Connection("Plant");
    for i in 0..5 {
        db.Execute("INSERT INTO readings(id, asset) VALUES (@p1, 'P')", [i]);
    }
    return 0;
}
"#;
    let limits = Limits {
        caps: vec![("database.queries".to_owned(), 3)],
        ..Limits::default()
    };
    let (outcome, _) = site.run(source, limits);
    assert_eq!(outcome.status(), Status::Limit);
    assert_eq!(count_rows(&site.db_path()), 3);
}

#[test]
fn cached_write_is_written_at_once_or_buffered_and_forwarded() {
    let mut site = Site::new("timeout_s = 1\nretry = { max_retries = 20, interval_s = 1 }");
    site.run_ok(CREATE);
    let write = r#"
fn main(id: int) -> json {
    let d = Database.CachedWrite("Plant",
        "INSERT INTO readings(id, asset, value) VALUES (@p1, @p2, @p3)", [id, "P", 1.5]);
    return { id: d.id, status: d.status };
}
"#;
    let script = site
        .engine
        .compile(write, &CompileOptions::default())
        .unwrap_or_else(|error| panic!("{error}"));
    let run = |id: i64| {
        let scope = site.modules.scope(None);
        let outcome = script.call_main_json(
            &json!({ "id": id }),
            &CallOptions {
                host_data: Some(&scope),
                ..CallOptions::default()
            },
        );
        (outcome.result.clone(), outcome)
    };

    let (result, outcome) = run(1);
    let result = result.unwrap_or_else(|error| panic!("{error}")).to_json();
    assert_eq!(result["status"], json!("delivered"));
    assert_eq!(counter(&outcome, "database.queries"), Some(1));
    assert_eq!(counter(&outcome, "database.dml_rows"), Some(1));

    // Another process holds SQLite's write lock: the write is buffered.
    let locker = rusqlite::Connection::open(site.db_path()).expect("open");
    locker.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let (result, _) = run(2);
    let result = result.unwrap_or_else(|error| panic!("{error}")).to_json();
    assert_eq!(result["status"], json!("buffered"), "{result}");
    let id = result["id"].as_str().expect("an id").to_owned();

    // The script sees it in the buffer through Deliveries.Status.
    let status_source = r#"
fn main(id: string) -> json {
    let s = Deliveries.Status(id);
    var unknown = "";
    try {
        Deliveries.Status("no-such-id");
    } catch e {
        unknown = e.kind;
    }
    return { status: s.status, attempts: s.attempts, has_error: s.last_error != null,
             unknown: unknown };
}
"#;
    let status_script = site
        .engine
        .compile(status_source, &CompileOptions::default())
        .unwrap_or_else(|error| panic!("{error}"));
    let scope = site.modules.scope(None);
    let status = status_script
        .call_main_json(
            &json!({ "id": id }),
            &CallOptions {
                host_data: Some(&scope),
                ..CallOptions::default()
            },
        )
        .result
        .unwrap_or_else(|error| panic!("{error}"))
        .to_json();
    assert_eq!(
        status,
        json!({"status": "retrying", "attempts": 1, "has_error": true, "unknown": "not_found"})
    );

    // The lock goes away and the forwarder, with NodeModules' deliverers, writes it once.
    locker.execute_batch("COMMIT").expect("unlock");
    drop(locker);
    site.start_forwarder();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let report = site.saf.status(&id).expect("status").expect("known");
        if report.status == scl_runtime::saf::Status::Delivered {
            break;
        }
        assert!(Instant::now() < deadline, "not delivered: {report:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count_rows(&site.db_path()), 2);
}

#[test]
fn central_has_connections_but_no_cached_operations() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let directory = tempfile::tempdir().expect("temporary folder");
    let toml = "[databases.Plant]\ndriver = \"sqlite\"\nurl = \"sqlite://central.db\"\n\
                [notification_lists]\nOps = [\"ops@plant.example\"]\n";
    let deployment = Deployment::from_source(&directory.path().join("deploy.toml"), toml.into())
        .unwrap_or_else(|errors| panic!("{errors:?}"));
    let modules = NodeModules::build(
        &deployment,
        NodeRole::Central,
        runtime.handle().clone(),
        None,
        &|_| None,
        Arc::new(Recorded::default()),
    )
    .expect("modules");
    let mut engine = Engine::default();
    scl_stdlib::core_modules::register_core_modules(&mut engine).expect("core");
    modules.register(&mut engine).expect("register");
    let source = r#"
fn main() -> json {
    let db = Database.Connection("Plant");
    let one = db.Scalar("SELECT 1", []);
    var write = "";
    try {
        Database.CachedWrite("Plant", "SELECT 1", []);
    } catch e {
        write = e.kind;
    }
    var notify = "";
    try {
        Notify.To("Ops").Send("s", "b");
    } catch e {
        notify = e.kind;
    }
    return { one: one, write: write, notify: notify };
}
"#;
    let script = engine
        .compile(source, &CompileOptions::default())
        .unwrap_or_else(|error| panic!("{error}"));
    let scope = modules.scope(None);
    let result = script
        .call_main_json(
            &json!({}),
            &CallOptions {
                host_data: Some(&scope),
                ..CallOptions::default()
            },
        )
        .result
        .unwrap_or_else(|error| panic!("{error}"))
        .to_json();
    assert_eq!(
        result,
        json!({"one": 1, "write": "unavailable", "notify": "unavailable"})
    );
    // An api script may not use them at all: the checker says so.
    let api = engine.compile(
        "fn main() -> void { Notify.To(\"Ops\").Send(\"s\", \"b\"); }",
        &CompileOptions {
            kind: Some(scl_lang::ScriptKind::Api),
            require_main: true,
        },
    );
    assert!(api.is_err());
}
