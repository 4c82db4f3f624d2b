//! The Database module against a real PostgreSQL server (Debian's packages, started by
//! `tests/run.sh` through `tests/servers/postgres.sh`): queries with parameters, inserts and
//! updates, transactions, stored procedures, unicode, nulls, type mapping, SQL errors, the
//! end-of-execution rollback, timeouts, an unreachable server, and `CachedWrite` buffering
//! while the server is down, then writing exactly once when it is back, or parking.

mod database_support;

use std::time::Duration;

use database_support::{
    Harness, Session, closed_port, database_table, required_env, server_control, unique_name,
};
use scl_runtime::saf::Status;
use serde_json::{Value, json};

fn url() -> String {
    required_env("SCL_TEST_POSTGRES_URL")
}

fn harness(extra: &str) -> Harness {
    Harness::central(&database_table("postgres", &url(), extra))
}

fn create_table(db: &Session<'_>, table: &str) {
    db.execute(
        &format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY, asset TEXT NOT NULL, value DOUBLE PRECISION, \
             running BOOLEAN, note TEXT, at TIMESTAMPTZ, price NUMERIC(12, 4), day DATE, doc JSONB, \
             big BIGINT, tag UUID)"
        ),
        &[],
    );
}

#[test]
fn query_with_parameters_unicode_nulls_and_types() {
    let harness = harness("");
    let execution = harness.execution();
    let db = Session::open(&execution);
    let table = unique_name("pg_types");
    create_table(&db, &table);
    let inserted = db.execute(
        &format!(
            "INSERT INTO {table}(id, asset, value, running, note, at, price, day, doc, big, tag) \
             VALUES (@p1, @p2, @p3, @p4, @p5, @p6, @p7, @p8, @p9, @p10, @p11)"
        ),
        &[
            json!(1),
            json!("Grüße-温度-🌡"),
            json!(21.5),
            json!(true),
            Value::Null,
            json!("2024-05-01T14:00:00+02:00"),
            json!("12.50"),
            json!("2024-05-01"),
            json!("{\"a\": [1, 2]}"),
            json!(9_007_199_254_740_993_i64),
            json!("00010203-0405-0607-0809-0a0b0c0d0e0f"),
        ],
    );
    assert_eq!(inserted, 1);
    let rows = db.query(
        &format!("SELECT * FROM {table} WHERE asset = @p1"),
        &[json!("Grüße-温度-🌡")],
    );
    assert_eq!(
        Value::from(rows),
        json!([{
            "id": 1, "asset": "Grüße-温度-🌡", "value": 21.5, "running": true, "note": null,
            "at": "2024-05-01T12:00:00Z", "price": "12.5000", "day": "2024-05-01",
            "doc": {"a": [1, 2]}, "big": 9_007_199_254_740_993_i64,
            "tag": "00010203-0405-0607-0809-0a0b0c0d0e0f"
        }])
    );
    assert_eq!(
        db.scalar("SELECT '@p1' || @p1::text", &[json!("x")]),
        json!("@p1x")
    );
    assert_eq!(
        db.scalar(
            &format!("SELECT COUNT(*) FROM {table} WHERE note IS NULL"),
            &[]
        ),
        json!(1)
    );
    assert_eq!(db.scalar("SELECT @p1::int + 1", &[json!(41)]), json!(42));
    assert_eq!(db.scalar("SELECT NULL::text", &[]), Value::Null);
    let unsupported = execution
        .scalar(&db.handle, "SELECT interval '1 day'", &[])
        .err();
    assert_eq!(
        unsupported.map(|e| e.code),
        Some("unsupported_type".to_owned())
    );
}

#[test]
fn insert_update_and_rows_affected() {
    let harness = harness("");
    let execution = harness.execution();
    let db = Session::open(&execution);
    let table = unique_name("pg_update");
    create_table(&db, &table);
    for id in 1..=3 {
        db.execute(
            &format!("INSERT INTO {table}(id, asset, value) VALUES (@p1, 'P', @p2)"),
            &[json!(id), json!(id * 10)],
        );
    }
    let updated = db.execute(
        &format!("UPDATE {table} SET value = value + @p1 WHERE id >= @p2"),
        &[json!(0.5), json!(2)],
    );
    assert_eq!(updated, 2);
    let values = db.query(&format!("SELECT value FROM {table} ORDER BY id"), &[]);
    assert_eq!(
        Value::from(values),
        json!([{"value": 10.0}, {"value": 20.5}, {"value": 30.5}])
    );
}

#[test]
fn transactions_commit_roll_back_and_end_of_execution() {
    let harness = harness("pool_size = 1\ntimeout_s = 5");
    let table = unique_name("pg_tx");
    {
        let execution = harness.execution();
        let db = Session::open(&execution);
        create_table(&db, &table);
        db.begin();
        db.execute(
            &format!("INSERT INTO {table}(id, asset) VALUES (1, 'rolled back')"),
            &[],
        );
        db.rollback();
        db.begin();
        db.execute(
            &format!("INSERT INTO {table}(id, asset) VALUES (2, 'committed')"),
            &[],
        );
        db.commit();
        db.begin();
        db.execute(
            &format!("INSERT INTO {table}(id, asset) VALUES (3, 'left open')"),
            &[],
        );
        // The script ends here with its transaction open.
    }
    // Pool of one: the connection came back (rolled back), or this would time out.
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
    let table = unique_name("pg_proc");
    create_table(&db, &table);
    let procedure = unique_name("add_reading");
    db.execute(
        &format!(
            "CREATE PROCEDURE {procedure}(p_id INT, p_asset TEXT, INOUT total BIGINT DEFAULT NULL) \
             LANGUAGE plpgsql AS $$ BEGIN \
               INSERT INTO {table}(id, asset) VALUES (p_id, p_asset); \
               SELECT COUNT(*) INTO total FROM {table}; \
             END $$"
        ),
        &[],
    );
    let mut params = serde_json::Map::new();
    params.insert("p_id".into(), json!(1));
    params.insert("p_asset".into(), json!("Ü-1"));
    params.insert("total".into(), Value::Null);
    let rows = execution
        .procedure(&db.handle, &procedure, &params)
        .unwrap_or_else(|error| panic!("Procedure: {error:?}"));
    assert_eq!(Value::from(rows), json!([{"total": 1}]));
    assert_eq!(
        db.scalar(&format!("SELECT asset FROM {table} WHERE id = 1"), &[]),
        json!("Ü-1")
    );
}

#[test]
fn sql_errors_reach_the_script_with_their_sqlstate() {
    let harness = harness("");
    let execution = harness.execution();
    let db = Session::open(&execution);
    let table = unique_name("pg_errors");
    create_table(&db, &table);
    let syntax = db
        .try_execute("SELEC 1", &[])
        .err()
        .unwrap_or_else(|| panic!("syntax error expected"));
    assert_eq!(
        (syntax.script_kind(), syntax.code.as_str()),
        ("permanent", "42601")
    );
    assert!(
        syntax.message.starts_with("database \"Db\": syntax error"),
        "{}",
        syntax.message
    );
    db.execute(
        &format!("INSERT INTO {table}(id, asset) VALUES (1, 'a')"),
        &[],
    );
    let duplicate = db
        .try_execute(
            &format!("INSERT INTO {table}(id, asset) VALUES (1, 'b')"),
            &[],
        )
        .err();
    assert_eq!(
        duplicate.map(|e| (e.script_kind(), e.code)),
        Some(("permanent", "23505".to_owned()))
    );
    let bad_value = db
        .try_execute(
            &format!("INSERT INTO {table}(id, asset) VALUES (@p1, 'x')"),
            &[json!("seven")],
        )
        .err();
    assert_eq!(bad_value.map(|e| e.code), Some("22P02".to_owned()));
    let missing = db.try_execute("SELECT * FROM no_such_table", &[]).err();
    assert_eq!(missing.map(|e| e.code), Some("42P01".to_owned()));
    // The connection is still good after errors.
    assert_eq!(db.scalar("SELECT 1", &[]), json!(1));
}

#[test]
fn a_statement_past_its_timeout_is_cancelled() {
    let harness = harness("timeout_s = 1");
    let execution = harness.execution();
    let db = Session::open(&execution);
    let error = execution
        .scalar(&db.handle, "SELECT pg_sleep(10)", &[])
        .err();
    assert_eq!(error.map(|e| e.script_kind()), Some("timeout"));
    assert_eq!(
        db.scalar("SELECT 2", &[]),
        json!(2),
        "the next statement gets a good connection"
    );
}

#[test]
fn an_unreachable_server_is_a_transient_error_and_nothing_is_buffered() {
    let port = closed_port();
    let toml = database_table(
        "postgres",
        &format!("postgres://postgres:x@127.0.0.1:{port}/postgres"),
        "timeout_s = 5",
    );
    let harness = Harness::site(&toml);
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
    let stats = harness.saf.as_ref().and_then(|saf| saf.stats().ok());
    assert_eq!(stats.map(|s| s.queued), Some(0));
}

#[test]
fn wrong_password_is_a_permanent_error_without_the_password() {
    let good = url();
    let bad = good.replacen(":testpw@", ":not-the-password@", 1);
    let harness = Harness::central(&database_table("postgres", &bad, ""));
    let execution = harness.execution();
    let db = Session::open(&execution);
    let error = db
        .try_execute("SELECT 1", &[])
        .err()
        .unwrap_or_else(|| panic!("error expected"));
    assert_eq!(
        (error.script_kind(), error.code.as_str()),
        ("permanent", "28P01")
    );
    assert!(!format!("{error:?}").contains("not-the-password"));
}

#[test]
fn cached_write_buffers_while_the_server_is_down_and_writes_exactly_once() {
    let outage_url = required_env("SCL_TEST_POSTGRES_OUTAGE_URL");
    let control = required_env("SCL_TEST_POSTGRES_CONTROL");
    let table = unique_name("pg_outage");
    let toml = database_table(
        "postgres",
        &outage_url,
        "timeout_s = 5\nretry = { max_retries = 30, interval_s = 1 }",
    );
    let harness = Harness::site(&toml);
    // Prepare the table while the server is up, then take the server down.
    server_control(&control, "start");
    {
        let execution = harness.execution();
        let db = Session::open(&execution);
        create_table(&db, &table);
    }
    server_control(&control, "stop");
    let execution = harness.execution();
    let delivery = execution
        .cached_write(
            "Db",
            &format!("INSERT INTO {table}(id, asset, value) VALUES (@p1, @p2, @p3)"),
            &[json!(7), json!("Grüße"), json!(1.5)],
        )
        .unwrap_or_else(|error| panic!("CachedWrite: {error:?}"));
    assert_eq!(delivery.to_json()["status"], json!("buffered"));
    let buffered = harness
        .status(&delivery.id)
        .unwrap_or_else(|| panic!("buffered message"));
    assert_eq!(buffered.target, "Db");
    server_control(&control, "start");
    let delivered =
        harness.wait_for_status(&delivery.id, Status::Delivered, Duration::from_secs(60));
    assert!(delivered.attempts >= 2, "{delivered:?}");
    let db = Session::open(&execution);
    assert_eq!(
        db.scalar(
            &format!("SELECT COUNT(*) FROM {table} WHERE id = 7 AND asset = 'Grüße'"),
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
        "postgres",
        &format!("postgres://postgres:x@127.0.0.1:{port}/postgres"),
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

#[test]
fn cached_write_returns_permanent_failures() {
    let harness = Harness::site(&database_table("postgres", &url(), ""));
    let execution = harness.execution();
    let error = execution
        .cached_write(
            "Db",
            "INSERT INTO no_such_table(a) VALUES (@p1)",
            &[json!(1)],
        )
        .err();
    assert_eq!(
        error.map(|e| (e.script_kind(), e.code)),
        Some(("permanent", "42P01".to_owned()))
    );
    let stats = harness.saf.as_ref().and_then(|saf| saf.stats().ok());
    assert_eq!(stats.map(|s| s.queued + s.parked), Some(0));
}
