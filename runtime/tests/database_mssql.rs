//! The Database module over TDS with tiberius, against the `iridium_server` SQL Server emulator
//! (started by `tests/run.sh` through `tests/servers/mssql.sh`): queries with parameters,
//! inserts and updates, transactions, stored procedures, unicode, nulls, SQL errors, the
//! end-of-execution rollback, an unreachable server, and `CachedWrite` buffering while the
//! server is down, then writing exactly once when it is back, or parking.
//!
//! Emulator deviations (shared/docs/test-infra.md) are not ours: it reports 0 rows affected, so
//! row counts are asserted through a SELECT; some errors come back as 50000 instead of SQL
//! Server's number, so those tests assert the kind and the message, and say so. It also cannot
//! parse the `float(53)` declaration tiberius gives a float parameter (SQL Server can), so float
//! values are passed here as text, which the server converts to the FLOAT column.

mod database_support;

use std::time::Duration;

use database_support::{
    Harness, Session, closed_port, database_table, required_env, server_control, unique_name,
};
use scl_runtime::saf::Status;
use serde_json::{Value, json};

fn url() -> String {
    required_env("SCL_TEST_MSSQL_URL")
}

fn harness(extra: &str) -> Harness {
    Harness::central(&database_table("mssql", &url(), extra))
}

fn create_table(db: &Session<'_>, table: &str) {
    db.execute(
        &format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY, asset NVARCHAR(100) NOT NULL, value FLOAT NULL, \
             running BIT NULL, note NVARCHAR(100) NULL, price DECIMAL(12, 4) NULL)"
        ),
        &[],
    );
}

#[test]
fn query_with_parameters_unicode_and_nulls() {
    let harness = harness("");
    let execution = harness.execution();
    let db = Session::open(&execution);
    let table = unique_name("ms_types");
    create_table(&db, &table);
    db.execute(
        &format!("INSERT INTO {table}(id, asset, value, running, note, price) VALUES (@p1, @p2, @p3, @p4, @p5, @p6)"),
        // 21.5 as text: the emulator cannot parse a float(53) parameter declaration.
        &[json!(1), json!("Grüße-温度-🌡"), json!("21.5"), json!(true), Value::Null, json!("12.50")],
    );
    db.execute(
        &format!("INSERT INTO {table}(id, asset) VALUES (@p1, @p2)"),
        &[json!(2), json!("P2")],
    );
    let rows = db.query(
        &format!("SELECT id, asset, value, running, note, price FROM {table} WHERE asset = @p1"),
        &[json!("Grüße-温度-🌡")],
    );
    assert_eq!(
        Value::from(rows),
        json!([{ "id": 1, "asset": "Grüße-温度-🌡", "value": 21.5, "running": true, "note": null, "price": "12.5000" }])
    );
    assert_eq!(
        db.scalar(
            &format!("SELECT COUNT(*) FROM {table} WHERE note IS NULL"),
            &[]
        ),
        json!(2)
    );
    assert_eq!(
        db.scalar(
            &format!("SELECT note FROM {table} WHERE id = @p1"),
            &[json!(99)]
        ),
        Value::Null
    );
}

#[test]
fn insert_and_update_checked_through_select() {
    let harness = harness("");
    let execution = harness.execution();
    let db = Session::open(&execution);
    let table = unique_name("ms_update");
    create_table(&db, &table);
    for id in 1..=3 {
        db.execute(
            &format!("INSERT INTO {table}(id, asset, value) VALUES (@p1, N'P', @p2)"),
            &[json!(id), json!(id * 10)],
        );
    }
    // The emulator reports 0 rows affected (SQL Server would say 2): assert through a SELECT.
    // 0.5 as text: the emulator cannot parse a float(53) parameter declaration; and it adds
    // text to a float by concatenation (SQL Server converts), hence the CAST.
    db.execute(
        &format!("UPDATE {table} SET value = value + CAST(@p1 AS FLOAT) WHERE id >= @p2"),
        &[json!("0.5"), json!(2)],
    );
    let values = db.query(&format!("SELECT value FROM {table} ORDER BY id"), &[]);
    assert_eq!(
        Value::from(values),
        json!([{"value": 10.0}, {"value": 20.5}, {"value": 30.5}])
    );
}

#[test]
fn transactions_commit_roll_back_and_end_of_execution() {
    let harness = harness("pool_size = 1\ntimeout_s = 5");
    let table = unique_name("ms_tx");
    {
        let execution = harness.execution();
        let db = Session::open(&execution);
        create_table(&db, &table);
        db.begin();
        db.execute(
            &format!("INSERT INTO {table}(id, asset) VALUES (1, N'rolled back')"),
            &[],
        );
        db.rollback();
        db.begin();
        db.execute(
            &format!("INSERT INTO {table}(id, asset) VALUES (2, N'committed')"),
            &[],
        );
        db.commit();
        db.begin();
        db.execute(
            &format!("INSERT INTO {table}(id, asset) VALUES (3, N'left open')"),
            &[],
        );
        // The script ends here with its transaction open.
    }
    let execution = harness.execution();
    let db = Session::open(&execution);
    let rows = db.query(&format!("SELECT asset FROM {table} ORDER BY id"), &[]);
    assert_eq!(Value::from(rows), json!([{"asset": "committed"}]));
}

#[test]
fn stored_procedures_are_called_with_named_parameters() {
    let harness = harness("");
    let execution = harness.execution();
    let db = Session::open(&execution);
    let table = unique_name("ms_proc");
    create_table(&db, &table);
    let procedure = unique_name("AddReading");
    // No parameters: the T-SQL, with its own @id/@asset variables, is sent unchanged.
    db.execute(
        &format!(
            "CREATE PROCEDURE {procedure} @id INT, @asset NVARCHAR(100) AS BEGIN \
               INSERT INTO {table}(id, asset) VALUES (@id, @asset); \
               SELECT id, asset FROM {table} WHERE id = @id; \
             END"
        ),
        &[],
    );
    let mut params = serde_json::Map::new();
    params.insert("id".into(), json!(1));
    params.insert("@asset".into(), json!("Ü-1"));
    let rows = execution
        .procedure(&db.handle, &procedure, &params)
        .unwrap_or_else(|error| panic!("Procedure: {error:?}"));
    assert_eq!(Value::from(rows), json!([{"id": 1, "asset": "Ü-1"}]));
    assert_eq!(
        db.scalar(&format!("SELECT COUNT(*) FROM {table}"), &[]),
        json!(1)
    );
}

#[test]
fn sql_errors_reach_the_script() {
    let harness = harness("");
    let execution = harness.execution();
    let db = Session::open(&execution);
    let table = unique_name("ms_errors");
    create_table(&db, &table);
    let syntax = db
        .try_execute("SELEC 1", &[])
        .err()
        .unwrap_or_else(|| panic!("syntax error expected"));
    assert_eq!(syntax.script_kind(), "permanent");
    assert!(
        syntax.message.starts_with("database \"Db\": "),
        "{}",
        syntax.message
    );
    assert!(!syntax.code.is_empty());
    db.execute(
        &format!("INSERT INTO {table}(id, asset) VALUES (1, N'a')"),
        &[],
    );
    let duplicate = db
        .try_execute(
            &format!("INSERT INTO {table}(id, asset) VALUES (1, N'b')"),
            &[],
        )
        .err();
    let duplicate = duplicate.unwrap_or_else(|| panic!("duplicate key error expected"));
    assert_eq!(duplicate.script_kind(), "permanent", "{duplicate:?}");
    let missing = db
        .try_execute("SELECT * FROM no_such_table_here", &[])
        .err();
    assert_eq!(missing.map(|e| e.script_kind()), Some("permanent"));
    assert_eq!(
        db.scalar("SELECT 1 AS one", &[]),
        json!(1),
        "the connection is still good"
    );
}

#[test]
fn an_unreachable_server_is_a_transient_error() {
    let port = closed_port();
    let toml = database_table(
        "mssql",
        &format!("mssql://sa:x@127.0.0.1:{port}/master?encrypt=off"),
        "timeout_s = 5",
    );
    let harness = Harness::central(&toml);
    let execution = harness.execution();
    let db = Session::open(&execution);
    let error = db
        .try_execute("SELECT 1", &[])
        .err()
        .unwrap_or_else(|| panic!("error expected"));
    assert_eq!(
        (error.script_kind(), error.code.as_str()),
        ("transient", "unreachable")
    );
}

#[test]
fn cached_write_buffers_while_the_server_is_down_and_writes_exactly_once() {
    let outage_url = required_env("SCL_TEST_MSSQL_OUTAGE_URL");
    let control = required_env("SCL_TEST_MSSQL_CONTROL");
    let table = unique_name("ms_outage");
    let toml = database_table(
        "mssql",
        &outage_url,
        "timeout_s = 5\nretry = { max_retries = 30, interval_s = 1 }",
    );
    let harness = Harness::site(&toml);
    // The outage server keeps its tables on disk: create the table while it is up, then stop it.
    server_control(&control, "start");
    {
        let setup = harness.execution();
        let db = Session::open(&setup);
        create_table(&db, &table);
    }
    server_control(&control, "stop");
    let execution = harness.execution();
    let delivery = execution
        .cached_write(
            "Db",
            &format!("INSERT INTO {table}(id, asset, value) VALUES (@p1, @p2, @p3)"),
            &[json!(7), json!("Grüße"), json!("1.5")],
        )
        .unwrap_or_else(|error| panic!("CachedWrite: {error:?}"));
    assert_eq!(delivery.to_json()["status"], json!("buffered"));
    server_control(&control, "start");
    let delivered =
        harness.wait_for_status(&delivery.id, Status::Delivered, Duration::from_secs(60));
    assert!(delivered.attempts >= 2, "{delivered:?}");
    let db = Session::open(&execution);
    assert_eq!(
        db.scalar(
            &format!("SELECT COUNT(*) FROM {table} WHERE id = 7 AND asset = N'Grüße'"),
            &[]
        ),
        json!(1)
    );
    server_control(&control, "stop");
}

#[test]
fn cached_write_is_parked_after_the_last_retry() {
    let port = closed_port();
    let toml = database_table(
        "mssql",
        &format!("mssql://sa:x@127.0.0.1:{port}/master?encrypt=off"),
        "timeout_s = 5\nretry = { max_retries = 2, interval_s = 0 }",
    );
    let harness = Harness::site(&toml);
    let execution = harness.execution();
    let delivery = execution
        .cached_write("Db", "INSERT INTO t(a) VALUES (@p1)", &[json!(1)])
        .unwrap_or_else(|error| panic!("CachedWrite: {error:?}"));
    assert_eq!(delivery.to_json()["status"], json!("buffered"));
    let parked = harness.wait_for_status(&delivery.id, Status::Parked, Duration::from_secs(30));
    assert_eq!(
        parked.attempts, 3,
        "first attempt and two retries: {parked:?}"
    );
}
