//! The Database module against real SQLite files (the embedded default driver): queries with
//! parameters, inserts and updates, transactions, unicode and nulls, SQL errors, the
//! end-of-execution rollback, timeouts, and `CachedWrite` buffering while another connection
//! holds the write lock, then writing exactly once, or parking after the last retry.

mod database_support;

use std::time::Duration;

use database_support::{Harness, Session, database_table};
use scl_runtime::saf::Status;
use serde_json::{Value, json};

fn sqlite_harness(extra: &str, site: bool) -> (Harness, std::path::PathBuf) {
    // The file lives in the harness's temporary folder (URLs are relative to the deployment).
    let toml = database_table("sqlite", "sqlite://plant.db", extra);
    let harness = if site {
        Harness::site(&toml)
    } else {
        Harness::central(&toml)
    };
    let path = harness.directory.path().join("plant.db");
    (harness, path)
}

const CREATE: &str = "CREATE TABLE readings (id INTEGER PRIMARY KEY, asset TEXT NOT NULL, value REAL, \
                      running BOOLEAN, note TEXT, at TEXT, price TEXT)";

#[test]
fn query_with_parameters_unicode_and_nulls() {
    let (harness, path) = sqlite_harness("", false);
    let execution = harness.execution();
    let db = Session::open(&execution);
    db.execute(CREATE, &[]);
    assert!(
        path.exists(),
        "the database file is created next to the deployment"
    );
    let inserted = db.execute(
        "INSERT INTO readings(id, asset, value, running, note, at, price) VALUES (@p1, @p2, @p3, @p4, @p5, @p6, @p7)",
        &[json!(1), json!("Grüße-温度-🌡"), json!(21.5), json!(true), Value::Null, json!("2024-05-01T12:00:00Z"), json!("12.50")],
    );
    assert_eq!(inserted, 1);
    db.execute(
        "INSERT INTO readings(id, asset, value) VALUES (@p1, @p2, @p3)",
        &[json!(2), json!("P2"), json!(-3)],
    );
    let rows = db.query(
        "SELECT * FROM readings WHERE asset = @p1",
        &[json!("Grüße-温度-🌡")],
    );
    assert_eq!(
        Value::from(rows),
        json!([{ "id": 1, "asset": "Grüße-温度-🌡", "value": 21.5, "running": true, "note": null,
                 "at": "2024-05-01T12:00:00Z", "price": "12.50" }])
    );
    // '@p1' inside a string literal is text, not a placeholder.
    let literal = db.scalar("SELECT '@p1' || @p1", &[json!("x")]);
    assert_eq!(literal, json!("@p1x"));
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM readings WHERE note IS NULL", &[]),
        json!(2)
    );
    assert_eq!(
        db.scalar("SELECT note FROM readings WHERE id = @p1", &[json!(99)]),
        Value::Null
    );
    assert_eq!(execution.counters().queries, 7);
}

#[test]
fn insert_update_and_rows_affected() {
    let (harness, _) = sqlite_harness("", false);
    let execution = harness.execution();
    let db = Session::open(&execution);
    db.execute(CREATE, &[]);
    for id in 1..=3 {
        db.execute(
            "INSERT INTO readings(id, asset, value) VALUES (@p1, 'P', @p2)",
            &[json!(id), json!(id * 10)],
        );
    }
    let updated = db.execute(
        "UPDATE readings SET value = value + @p1 WHERE id >= @p2",
        &[json!(0.5), json!(2)],
    );
    assert_eq!(updated, 2);
    let values = db.query("SELECT value FROM readings ORDER BY id", &[]);
    assert_eq!(
        Value::from(values),
        json!([{"value": 10.0}, {"value": 20.5}, {"value": 30.5}])
    );
    assert_eq!(execution.counters().dml_rows, 3 + 2);
}

#[test]
fn transactions_commit_and_roll_back() {
    let (harness, _) = sqlite_harness("", false);
    let execution = harness.execution();
    let db = Session::open(&execution);
    db.execute(CREATE, &[]);
    db.begin();
    db.execute(
        "INSERT INTO readings(id, asset) VALUES (1, 'rolled back')",
        &[],
    );
    db.rollback();
    db.begin();
    db.execute(
        "INSERT INTO readings(id, asset) VALUES (2, 'committed')",
        &[],
    );
    db.commit();
    let rows = db.query("SELECT asset FROM readings", &[]);
    assert_eq!(Value::from(rows), json!([{"asset": "committed"}]));
}

#[test]
fn the_end_of_execution_rolls_back_and_returns_the_connection() {
    let (harness, _) = sqlite_harness("pool_size = 1\ntimeout_s = 2", false);
    {
        let execution = harness.execution();
        let db = Session::open(&execution);
        db.execute(CREATE, &[]);
        db.begin();
        db.execute(
            "INSERT INTO readings(id, asset) VALUES (1, 'left open')",
            &[],
        );
        let report = execution.end();
        assert_eq!(report.rolled_back, ["Db"]);
    }
    // With a pool of one, this would wait for a free connection and time out if the hook had
    // not returned it; the row is gone because the transaction was rolled back.
    let execution = harness.execution();
    let db = Session::open(&execution);
    assert_eq!(db.scalar("SELECT COUNT(*) FROM readings", &[]), json!(0));
}

#[test]
fn sql_errors_reach_the_script_with_their_codes() {
    let (harness, _) = sqlite_harness("", false);
    let execution = harness.execution();
    let db = Session::open(&execution);
    db.execute(CREATE, &[]);
    let syntax = db.try_execute("INSERT INTO readings VALUES (", &[]).err();
    let syntax = syntax.unwrap_or_else(|| panic!("syntax error expected"));
    assert_eq!(
        (syntax.script_kind(), syntax.code.as_str()),
        ("permanent", "SQLITE_ERROR")
    );
    assert!(
        syntax.message.starts_with("database \"Db\": "),
        "{}",
        syntax.message
    );
    db.execute("INSERT INTO readings(id, asset) VALUES (1, 'a')", &[]);
    let duplicate = db
        .try_execute("INSERT INTO readings(id, asset) VALUES (1, 'b')", &[])
        .err();
    assert_eq!(
        duplicate.map(|e| e.code),
        Some("SQLITE_CONSTRAINT_PRIMARYKEY".to_owned())
    );
    let not_null = db
        .try_execute(
            "INSERT INTO readings(id, asset) VALUES (@p1, @p2)",
            &[json!(5), Value::Null],
        )
        .err();
    assert_eq!(
        not_null.map(|e| e.code),
        Some("SQLITE_CONSTRAINT_NOTNULL".to_owned())
    );
    let procedure = execution
        .procedure(&db.handle, "p", &serde_json::Map::new())
        .err();
    assert_eq!(procedure.map(|e| e.code), Some("not_supported".to_owned()));
    let placeholder = db.try_execute("SELECT @p2", &[json!(1)]).err();
    assert_eq!(placeholder.map(|e| e.script_kind()), Some("type"));
}

#[test]
fn a_statement_past_its_timeout_is_interrupted() {
    let (harness, _) = sqlite_harness("timeout_s = 1", false);
    let execution = harness.execution();
    let db = Session::open(&execution);
    let endless =
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT COUNT(*) FROM n";
    let error = execution.scalar(&db.handle, endless, &[]).err();
    assert_eq!(
        error.map(|e| (e.script_kind(), e.code)),
        Some(("timeout", "timeout".to_owned()))
    );
    assert_eq!(
        db.scalar("SELECT 1 + 1", &[]),
        json!(2),
        "the connection is usable afterwards"
    );
}

/// Hold SQLite's write lock from another connection, as another process would.
fn hold_write_lock(path: &std::path::Path) -> rusqlite::Connection {
    let locker = rusqlite::Connection::open(path).unwrap_or_else(|error| panic!("open: {error}"));
    locker
        .execute_batch("BEGIN EXCLUSIVE")
        .unwrap_or_else(|error| panic!("lock: {error}"));
    locker
}

#[test]
fn cached_write_buffers_while_locked_and_writes_exactly_once() {
    let (harness, path) = sqlite_harness(
        "timeout_s = 1\nretry = { max_retries = 20, interval_s = 1 }",
        true,
    );
    let execution = harness.execution();
    let db = Session::open(&execution);
    db.execute(CREATE, &[]);
    let locker = hold_write_lock(&path);
    let delivery = execution
        .cached_write(
            "Db",
            "INSERT INTO readings(id, asset, value) VALUES (@p1, @p2, @p3)",
            &[json!(7), json!("P7"), json!(1.5)],
        )
        .unwrap_or_else(|error| panic!("CachedWrite: {error:?}"));
    assert_eq!(delivery.to_json()["status"], json!("buffered"));
    let report = harness
        .status(&delivery.id)
        .unwrap_or_else(|| panic!("buffered message"));
    assert_eq!(report.target, "Db");
    assert!(
        report
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("SQLITE_BUSY")),
        "{report:?}"
    );
    locker
        .execute_batch("COMMIT")
        .unwrap_or_else(|error| panic!("unlock: {error}"));
    drop(locker);
    let delivered =
        harness.wait_for_status(&delivery.id, Status::Delivered, Duration::from_secs(30));
    assert!(delivered.attempts >= 2, "{delivered:?}");
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM readings WHERE id = 7", &[]),
        json!(1),
        "written exactly once"
    );
}

#[test]
fn cached_write_is_parked_after_the_last_retry() {
    let (harness, path) = sqlite_harness(
        "timeout_s = 1\nretry = { max_retries = 1, interval_s = 0 }",
        true,
    );
    let execution = harness.execution();
    let db = Session::open(&execution);
    db.execute(CREATE, &[]);
    let _locker = hold_write_lock(&path);
    let delivery = execution
        .cached_write(
            "Db",
            "INSERT INTO readings(id, asset) VALUES (@p1, @p2)",
            &[json!(8), json!("P8")],
        )
        .unwrap_or_else(|error| panic!("CachedWrite: {error:?}"));
    assert_eq!(delivery.to_json()["status"], json!("buffered"));
    let parked = harness.wait_for_status(&delivery.id, Status::Parked, Duration::from_secs(30));
    assert_eq!(
        parked.attempts, 2,
        "first attempt and one retry: {parked:?}"
    );
}

#[test]
fn cached_write_returns_permanent_failures_without_buffering() {
    let (harness, _) = sqlite_harness("", true);
    let execution = harness.execution();
    let db = Session::open(&execution);
    db.execute(CREATE, &[]);
    db.execute("INSERT INTO readings(id, asset) VALUES (1, 'a')", &[]);
    let error = execution
        .cached_write(
            "Db",
            "INSERT INTO readings(id, asset) VALUES (@p1, @p2)",
            &[json!(1), json!("dup")],
        )
        .err();
    assert_eq!(
        error.map(|e| (e.script_kind(), e.code)),
        Some(("permanent", "SQLITE_CONSTRAINT_PRIMARYKEY".to_owned()))
    );
    let stats = harness.saf.as_ref().and_then(|saf| saf.stats().ok());
    assert_eq!(
        stats.map(|s| s.queued + s.parked),
        Some(0),
        "nothing was buffered"
    );
    let delivered = execution.cached_write(
        "Db",
        "INSERT INTO readings(id, asset) VALUES (@p1, @p2)",
        &[json!(2), json!("b")],
    );
    assert_eq!(
        delivered.ok().map(|d| d.to_json()["status"].clone()),
        Some(json!("delivered"))
    );
}

#[test]
fn central_has_no_cached_write() {
    let (harness, _) = sqlite_harness("", false);
    let execution = harness.execution();
    let error = execution.cached_write("Db", "SELECT 1", &[]).err();
    assert!(
        error.is_some_and(|e| e.code == "configuration" && e.message.contains("store-and-forward"))
    );
}
