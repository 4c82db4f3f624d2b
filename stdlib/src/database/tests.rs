//! Unit tests of the module logic over an in-memory connector and outbox (the real drivers are
//! tested against real servers in `runtime/tests/database_*.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::*;

/// What the fake server saw, shared by every session of a connector.
#[derive(Default)]
struct Log {
    events: Vec<String>,
    sessions_out: i64,
    next_failure: Option<DatabaseError>,
}

struct FakeConnector {
    driver: Driver,
    log: Arc<Mutex<Log>>,
}

struct FakeSession {
    number: usize,
    log: Arc<Mutex<Log>>,
}

impl SqlConnector for FakeConnector {
    fn driver(&self) -> Driver {
        self.driver
    }

    fn checkout(&self) -> Result<Box<dyn SqlSession>, DatabaseError> {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.sessions_out += 1;
        let number = log
            .events
            .iter()
            .filter(|e| e.starts_with("checkout"))
            .count()
            + 1;
        log.events.push(format!("checkout {number}"));
        Ok(Box::new(FakeSession {
            number,
            log: Arc::clone(&self.log),
        }))
    }
}

impl FakeSession {
    fn record(&self, what: String) -> Result<(), DatabaseError> {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.events.push(format!("{} {what}", self.number));
        match log.next_failure.take() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

impl SqlSession for FakeSession {
    fn query(&mut self, statement: &Statement) -> Result<RowSet, DatabaseError> {
        self.record(format!("query {} {:?}", statement.sql, statement.params))?;
        Ok(RowSet {
            columns: vec!["id".into(), "name".into()],
            rows: vec![vec![json!(1), json!("ä")], vec![json!(2), Value::Null]],
        })
    }

    fn execute(&mut self, statement: &Statement) -> Result<u64, DatabaseError> {
        self.record(format!("execute {}", statement.sql))?;
        Ok(3)
    }

    fn begin(&mut self) -> Result<(), DatabaseError> {
        self.record("begin".into())
    }

    fn commit(&mut self) -> Result<(), DatabaseError> {
        self.record("commit".into())
    }

    fn rollback(&mut self) -> Result<(), DatabaseError> {
        self.record("rollback".into())
    }
}

impl Drop for FakeSession {
    fn drop(&mut self) {
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.sessions_out -= 1;
        log.events.push(format!("{} returned", self.number));
    }
}

#[derive(Default)]
struct FakeOutbox {
    buffered: Mutex<Vec<(String, CachedWriteEntry, FailedAttempt)>>,
}

impl WriteOutbox for FakeOutbox {
    fn new_id(&self) -> String {
        "msg-1".to_owned()
    }

    fn buffer(
        &self,
        id: &str,
        entry: &CachedWriteEntry,
        first: &FailedAttempt,
    ) -> Result<(), DatabaseError> {
        self.buffered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id.to_owned(), entry.clone(), first.clone()));
        Ok(())
    }
}

struct Fixture {
    database: Database,
    log: Arc<Mutex<Log>>,
    outbox: Arc<FakeOutbox>,
}

fn fixture(driver: Driver) -> Fixture {
    let log = Arc::new(Mutex::new(Log::default()));
    let outbox = Arc::new(FakeOutbox::default());
    let mut connectors: BTreeMap<String, Arc<dyn SqlConnector>> = BTreeMap::new();
    connectors.insert(
        "Historian".into(),
        Arc::new(FakeConnector {
            driver,
            log: Arc::clone(&log),
        }),
    );
    let database = Database::new(
        connectors,
        Some(Arc::clone(&outbox) as Arc<dyn WriteOutbox>),
    );
    Fixture {
        database,
        log,
        outbox,
    }
}

impl Fixture {
    fn events(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .clone()
    }

    fn sessions_out(&self) -> i64 {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sessions_out
    }

    fn fail_next(&self, error: DatabaseError) {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next_failure = Some(error);
    }
}

#[test]
fn unknown_connection_names_the_defined_ones() {
    let fixture = fixture(Driver::Sqlite);
    let execution = fixture.database.execution(DatabaseLimits::default());
    let error = execution.connection("Historain").err();
    assert_eq!(error.as_ref().map(|e| e.script_kind()), Some("not_found"));
    assert!(error.is_some_and(|e| e.message.contains("defined: Historian")));
}

#[test]
fn query_binds_parameters_and_returns_maps() {
    let fixture = fixture(Driver::Postgres);
    let execution = fixture.database.execution(DatabaseLimits::default());
    let connection = execution.connection("Historian").ok();
    let rows = connection.as_ref().map(|c| {
        execution.query(
            c,
            "SELECT * FROM t WHERE a = @p1 AND b = '@p2'",
            &[json!("x")],
        )
    });
    let rows = rows.and_then(Result::ok).unwrap_or_default();
    assert_eq!(
        Value::from(rows),
        json!([{"id": 1, "name": "ä"}, {"id": 2, "name": null}])
    );
    assert_eq!(
        fixture.events(),
        [
            "checkout 1",
            "1 query SELECT * FROM t WHERE a = $1 AND b = '@p2' [Text(\"x\")]",
            "1 returned"
        ]
    );
    assert_eq!(execution.counters().queries, 1);
}

#[test]
fn scalar_is_the_first_column_of_the_first_row() {
    let fixture = fixture(Driver::Sqlite);
    let execution = fixture.database.execution(DatabaseLimits::default());
    let value = execution
        .connection("Historian")
        .and_then(|c| execution.scalar(&c, "SELECT id FROM t", &[]));
    assert_eq!(value.ok(), Some(json!(1)));
}

#[test]
fn a_transaction_pins_one_connection_until_commit() {
    let fixture = fixture(Driver::Mssql);
    let execution = fixture.database.execution(DatabaseLimits::default());
    let connection = execution.connection("Historian");
    let result = connection.and_then(|c| {
        execution.begin(&c)?;
        execution.execute(&c, "UPDATE t SET a = @p1", &[json!(1)])?;
        assert_eq!(fixture.sessions_out(), 1);
        execution.commit(&c)
    });
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        fixture.events(),
        [
            "checkout 1",
            "1 begin",
            "1 execute UPDATE t SET a = @P1",
            "1 commit",
            "1 returned"
        ]
    );
    assert_eq!(fixture.sessions_out(), 0);
}

#[test]
fn commit_without_begin_and_begin_twice_are_errors() {
    let fixture = fixture(Driver::Postgres);
    let execution = fixture.database.execution(DatabaseLimits::default());
    let Ok(connection) = execution.connection("Historian") else {
        panic!("connection");
    };
    assert_eq!(
        execution.commit(&connection).err().map(|e| e.code),
        Some("no_transaction".into())
    );
    assert!(execution.begin(&connection).is_ok());
    assert_eq!(
        execution.begin(&connection).err().map(|e| e.code),
        Some("transaction_open".into())
    );
    assert!(execution.rollback(&connection).is_ok());
}

#[test]
fn the_end_of_execution_rolls_back_and_returns_connections() {
    let fixture = fixture(Driver::Postgres);
    let execution = fixture.database.execution(DatabaseLimits::default());
    let first = execution.connection("Historian");
    let second = execution.connection("Historian");
    let began = first.and_then(|f| {
        second.and_then(|s| {
            execution.begin(&f)?;
            execution.begin(&s)
        })
    });
    assert!(began.is_ok());
    assert_eq!(fixture.sessions_out(), 2);
    let report = execution.end();
    assert_eq!(report.rolled_back, ["Historian", "Historian"]);
    assert_eq!(fixture.sessions_out(), 0);
    assert_eq!(execution.end(), EndReport::default());
}

#[test]
fn dropping_the_execution_runs_the_end_hook() {
    let fixture = fixture(Driver::Postgres);
    {
        let execution = fixture.database.execution(DatabaseLimits::default());
        let began = execution
            .connection("Historian")
            .and_then(|c| execution.begin(&c));
        assert!(began.is_ok());
    }
    assert!(fixture.events().contains(&"1 rollback".to_owned()));
    assert_eq!(fixture.sessions_out(), 0);
}

#[test]
fn sql_errors_reach_the_script_and_nothing_is_buffered() {
    let fixture = fixture(Driver::Postgres);
    let execution = fixture.database.execution(DatabaseLimits::default());
    fixture.fail_next(DatabaseError::sql(
        "42601",
        "syntax error at or near \"SELEC\"",
        false,
    ));
    let error = execution
        .connection("Historian")
        .and_then(|c| execution.query(&c, "SELEC 1", &[]))
        .err();
    assert_eq!(error.as_ref().map(|e| e.code.as_str()), Some("42601"));
    assert!(error.is_some_and(|e| {
        e.message
            .starts_with("database \"Historian\": syntax error")
    }));
    assert!(
        fixture
            .outbox
            .buffered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    );
}

#[test]
fn cached_write_delivers_at_once_when_it_can() {
    let fixture = fixture(Driver::Sqlite);
    let execution = fixture.database.execution(DatabaseLimits::default());
    let delivery = execution.cached_write("Historian", "INSERT INTO t VALUES (@p1)", &[json!(1)]);
    assert_eq!(
        delivery.ok().map(|d| d.to_json()),
        Some(json!({"id": "msg-1", "status": "delivered"}))
    );
    assert_eq!(
        execution.counters(),
        DatabaseCounters {
            queries: 1,
            dml_rows: 3
        }
    );
}

#[test]
fn cached_write_buffers_transient_failures_with_connection_sql_and_values() {
    let fixture = fixture(Driver::Postgres);
    let execution = fixture.database.execution(DatabaseLimits::default());
    fixture.fail_next(DatabaseError::unreachable(
        "unreachable",
        "connection refused",
    ));
    let delivery = execution.cached_write(
        "Historian",
        "INSERT INTO t VALUES (@p1, @p2)",
        &[json!("a"), json!(null)],
    );
    assert_eq!(
        delivery.ok().map(|d| d.status),
        Some(DeliveryStatus::Buffered)
    );
    let buffered = fixture
        .outbox
        .buffered
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert_eq!(buffered.len(), 1);
    let (id, entry, first) = &buffered[0];
    assert_eq!(id, "msg-1");
    assert_eq!(entry.connection, "Historian");
    assert_eq!(entry.sql, "INSERT INTO t VALUES (@p1, @p2)");
    assert_eq!(entry.params, [json!("a"), json!(null)]);
    assert_eq!(first.error.code, "unreachable");
}

#[test]
fn cached_write_returns_permanent_failures() {
    let fixture = fixture(Driver::Mssql);
    let execution = fixture.database.execution(DatabaseLimits::default());
    fixture.fail_next(DatabaseError::sql(
        "2627",
        "Violation of PRIMARY KEY constraint",
        false,
    ));
    let error = execution
        .cached_write("Historian", "INSERT INTO t VALUES (1)", &[])
        .err();
    assert_eq!(error.map(|e| e.script_kind()), Some("permanent"));
    assert!(
        fixture
            .outbox
            .buffered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    );
}

#[test]
fn cached_write_without_an_outbox_is_a_clear_error() {
    let fixture = fixture(Driver::Sqlite);
    let connectors: BTreeMap<String, Arc<dyn SqlConnector>> = fixture
        .database
        .connection_names()
        .filter_map(|name| {
            fixture
                .database
                .connector(name)
                .ok()
                .map(|c| (name.to_owned(), Arc::clone(c)))
        })
        .collect();
    let central = Database::new(connectors, None);
    let execution = central.execution(DatabaseLimits::default());
    let error = execution
        .cached_write("Historian", "INSERT INTO t VALUES (1)", &[])
        .err();
    assert!(error.is_some_and(|e| e.message.contains("store-and-forward")));
}

#[test]
fn bad_parameters_are_never_sent() {
    let fixture = fixture(Driver::Sqlite);
    let execution = fixture.database.execution(DatabaseLimits::default());
    let error = execution
        .cached_write("Historian", "INSERT INTO t VALUES (@p1)", &[json!([1, 2])])
        .err();
    assert_eq!(error.map(|e| e.script_kind()), Some("type"));
    assert!(fixture.events().is_empty());
}

#[test]
fn governor_limits_queries_and_rows() {
    let fixture = fixture(Driver::Sqlite);
    let limits = DatabaseLimits {
        max_queries: Some(2),
        max_dml_rows: Some(5),
    };
    let execution = fixture.database.execution(limits);
    let Ok(connection) = execution.connection("Historian") else {
        panic!("connection");
    };
    assert!(execution.execute(&connection, "DELETE FROM t", &[]).is_ok());
    let rows_error = execution.execute(&connection, "DELETE FROM t", &[]).err();
    assert_eq!(
        rows_error.as_ref().map(|e| e.code.as_str()),
        Some("dml_row_limit")
    );
    assert!(rows_error.is_some_and(|e| !e.is_catchable() && e.script_kind() == "limit"));
    let query_error = execution.query(&connection, "SELECT 1", &[]).err();
    assert_eq!(query_error.map(|e| e.code), Some("query_limit".into()));
    assert_eq!(
        execution.counters(),
        DatabaseCounters {
            queries: 2,
            dml_rows: 6
        }
    );
}

#[test]
fn procedure_on_sqlite_is_not_supported() {
    let fixture = fixture(Driver::Sqlite);
    let execution = fixture.database.execution(DatabaseLimits::default());
    let error = execution
        .connection("Historian")
        .and_then(|c| execution.procedure(&c, "p", &serde_json::Map::new()))
        .err();
    assert_eq!(error.map(|e| e.code), Some("not_supported".into()));
}

#[test]
fn delivery_attempts_are_classified() {
    let fixture = fixture(Driver::Postgres);
    let entry = CachedWriteEntry {
        connection: "Historian".into(),
        sql: "INSERT INTO t VALUES (@p1)".into(),
        params: vec![json!(1)],
    };
    assert_eq!(
        fixture.database.deliver_cached_write(&entry),
        WriteOutcome::Written { rows_affected: 3 }
    );
    fixture.fail_next(DatabaseError::sql("40P01", "deadlock detected", true));
    assert!(matches!(
        fixture.database.deliver_cached_write(&entry),
        WriteOutcome::Transient(_)
    ));
    fixture.fail_next(DatabaseError::sql("23505", "duplicate key", false));
    assert!(matches!(
        fixture.database.deliver_cached_write(&entry),
        WriteOutcome::Permanent(_)
    ));
    let gone = CachedWriteEntry {
        connection: "Removed".into(),
        ..entry
    };
    assert!(matches!(
        fixture.database.deliver_cached_write(&gone),
        WriteOutcome::Permanent(_)
    ));
}

/// Collects what a driver writes to a [`RowSink`].
#[derive(Default)]
struct Collected {
    rows: Vec<Vec<(String, Value)>>,
    widths: Vec<usize>,
}

impl RowSink for Collected {
    fn start_row(&mut self, width: usize) {
        self.widths.push(width);
        self.rows.push(Vec::new());
    }

    fn cell(&mut self, column: &std::sync::Arc<str>, value: Value) {
        if let Some(row) = self.rows.last_mut() {
            row.push((String::from(&**column), value));
        }
    }

    fn end_row(&mut self) {}
}

#[test]
fn query_into_borrows_a_connection_for_just_the_query_and_writes_every_row() {
    let fixture = fixture(Driver::Sqlite);
    let execution = fixture.database.execution(DatabaseLimits::default());
    let Ok(connection) = execution.connection("Historian") else {
        panic!("connection");
    };
    let mut sink = Collected::default();
    let result = execution.query_into(
        &connection,
        "SELECT * FROM t WHERE a = @p1",
        SqlParams::from_vec(vec![SqlValue::Int(4)]),
        &mut sink,
    );
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(
        sink.rows,
        [
            vec![("id".to_owned(), json!(1)), ("name".to_owned(), json!("ä"))],
            vec![
                ("id".to_owned(), json!(2)),
                ("name".to_owned(), Value::Null)
            ],
        ]
    );
    assert_eq!(sink.widths, [2, 2]);
    assert_eq!(
        fixture.events(),
        [
            "checkout 1",
            "1 query SELECT * FROM t WHERE a = ?1 [Int(4)]",
            "1 returned"
        ]
    );
    assert_eq!(execution.counters().queries, 1);
    assert_eq!(fixture.sessions_out(), 0);
}

#[test]
fn query_into_runs_on_the_transaction_connection_and_keeps_errors_and_counts() {
    let fixture = fixture(Driver::Postgres);
    let limits = DatabaseLimits {
        max_queries: Some(2),
        max_dml_rows: None,
    };
    let execution = fixture.database.execution(limits);
    let Ok(connection) = execution.connection("Historian") else {
        panic!("connection");
    };
    assert!(execution.begin(&connection).is_ok());
    let mut sink = Collected::default();
    assert!(
        execution
            .query_into(&connection, "SELECT 1", SqlParams::new(), &mut sink)
            .is_ok()
    );
    assert_eq!(sink.rows.len(), 2);
    fixture.fail_next(DatabaseError::sql("42P01", "no such table", false));
    let error = execution
        .query_into(
            &connection,
            "SELECT 2",
            SqlParams::new(),
            &mut Collected::default(),
        )
        .err();
    assert_eq!(error.as_ref().map(|e| e.code.as_str()), Some("42P01"));
    assert!(error.is_some_and(|e| e.message.contains("Historian")));
    // A bad placeholder is refused before the query is counted or sent.
    let error = execution
        .query_into(
            &connection,
            "SELECT @p2",
            SqlParams::from_vec(vec![SqlValue::Int(1)]),
            &mut sink,
        )
        .err();
    assert_eq!(error.map(|e| e.script_kind()), Some("type"));
    let limit = execution
        .query_into(&connection, "SELECT 3", SqlParams::new(), &mut sink)
        .err();
    assert_eq!(limit.map(|e| e.code), Some("query_limit".into()));
    assert!(execution.commit(&connection).is_ok());
    assert_eq!(
        fixture.events(),
        [
            "checkout 1",
            "1 begin",
            "1 query SELECT 1 []",
            "1 query SELECT 2 []",
            "1 commit",
            "1 returned"
        ]
    );
}

#[test]
fn statements_find_their_handles_transaction_and_only_theirs() {
    let fixture = fixture(Driver::Postgres);
    let execution = fixture.database.execution(DatabaseLimits::default());
    let (Ok(first), Ok(second)) = (
        execution.connection("Historian"),
        execution.connection("Historian"),
    ) else {
        panic!("connection");
    };
    let mut sink = Collected::default();
    let mut query = |handle: &ConnectionHandle, sql: &str| {
        execution
            .query_into(handle, sql, SqlParams::new(), &mut sink)
            .map_err(|error| error.code)
    };
    assert_eq!(query(&first, "SELECT 1"), Ok(()));
    assert!(execution.begin(&first).is_ok());
    // The other handle has no transaction: a connection of its own, returned at once.
    assert_eq!(query(&second, "SELECT 2"), Ok(()));
    assert_eq!(query(&first, "SELECT 3"), Ok(()));
    assert!(execution.commit(&first).is_ok());
    // After the commit nothing is pinned: the next statement borrows again.
    assert_eq!(query(&first, "SELECT 4"), Ok(()));
    assert!(execution.begin(&second).is_ok());
    assert_eq!(query(&second, "SELECT 5"), Ok(()));
    let report = execution.end();
    assert_eq!(report.rolled_back, ["Historian"]);
    assert_eq!(query(&second, "SELECT 6"), Ok(()));
    assert_eq!(
        fixture.events(),
        [
            "checkout 1",
            "1 query SELECT 1 []",
            "1 returned",
            "checkout 2",
            "2 begin",
            "checkout 3",
            "3 query SELECT 2 []",
            "3 returned",
            "2 query SELECT 3 []",
            "2 commit",
            "2 returned",
            "checkout 4",
            "4 query SELECT 4 []",
            "4 returned",
            "checkout 5",
            "5 begin",
            "5 query SELECT 5 []",
            "5 rollback",
            "5 returned",
            "checkout 6",
            "6 query SELECT 6 []",
            "6 returned"
        ]
    );
    assert_eq!(execution.counters().queries, 6);
    assert_eq!(fixture.sessions_out(), 0);
}
