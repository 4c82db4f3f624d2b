//! One script execution's use of the Database module: its `Connection` handles, their open
//! transactions, its governor counters, and the end-of-execution hook.
//!
//! **Connections and the pool.** `Database.Connection(name)` gives a handle and touches no
//! server. Outside a transaction every operation borrows a pooled connection for exactly that
//! operation, so a script that does one query and then waits on something else holds nothing,
//! and `Database.Connection("H").Execute(...)` in a loop never drains the pool. `Begin()` pins
//! one pooled connection to the handle until `Commit()` or `Rollback()`; every operation on that
//! handle in between runs on it. Two handles are two connections, as in ADO.NET.
//!
//! **End of execution.** [`DatabaseExecution::end`] (also run on drop, so a script that
//! failed, timed out or hit a limit is covered) rolls back every transaction still open and
//! returns its connection to the pool; a connection whose rollback fails is closed, not reused.
//!
//! **Governor.** Every `Query`, `Execute`, `Scalar`, `Procedure` and `CachedWrite` counts one
//! query (checked before it is sent); rows affected by `Execute` and `CachedWrite` count toward
//! the DML-row limit (checked after, since only the server knows the count; a statement inside
//! a transaction is then rolled back by the end hook). `Begin`/`Commit`/`Rollback` are free.
//!
//! The execution is `Sync` (a mutex inside) because the engine keeps host state behind a
//! shared reference; it is used from the one script thread that runs the execution.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::Database;
use super::backend::{CachedWriteEntry, FailedAttempt, RowSink, SqlConnector, SqlSession};
use super::error::{DatabaseError, DatabaseErrorKind};
use super::procedure::procedure_statement;
use super::value::{RowSet, SqlParams, SqlValue, Statement};

/// Name of the governor counter of queries (for the engine's limit table).
pub const QUERY_COUNTER: &str = "database.queries";
/// Name of the governor counter of DML rows affected.
pub const DML_ROWS_COUNTER: &str = "database.dml_rows";

/// Per-execution limits; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatabaseLimits {
    /// Most statements one execution may send.
    pub max_queries: Option<u64>,
    /// Most rows its `Execute`/`CachedWrite` statements may affect in all.
    pub max_dml_rows: Option<u64>,
}

/// What an execution has used so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatabaseCounters {
    /// Statements sent (or attempted).
    pub queries: u64,
    /// Rows affected by `Execute` and `CachedWrite`, as the drivers report them.
    pub dml_rows: u64,
}

/// A script's `Connection` value: a named connection and which handle it is. It keeps the
/// connection's connector (looked up once, by `Database.Connection(name)`), so a statement
/// does not look the name up again. Two handles are equal when they are the same handle of
/// the same connection.
#[derive(Clone)]
pub struct ConnectionHandle {
    name: Arc<str>,
    id: u64,
    connector: Arc<dyn SqlConnector>,
}

impl ConnectionHandle {
    /// The connection name from the deployment.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl PartialEq for ConnectionHandle {
    fn eq(&self, other: &ConnectionHandle) -> bool {
        self.id == other.id && self.name == other.name
    }
}

impl Eq for ConnectionHandle {}

impl std::hash::Hash for ConnectionHandle {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.id.hash(state);
    }
}

impl std::fmt::Debug for ConnectionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionHandle")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// What `CachedWrite` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Written at once.
    Delivered,
    /// Failed transiently; durably buffered for retries.
    Buffered,
}

impl DeliveryStatus {
    /// `"delivered"` or `"buffered"`, as the script's `Delivery.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Buffered => "buffered",
        }
    }
}

/// The script's `Delivery = { id, status }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Stable id: the store-and-forward message id when buffered.
    pub id: String,
    /// Delivered or buffered.
    pub status: DeliveryStatus,
}

impl Delivery {
    /// The `Delivery` record as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::json!({ "id": self.id, "status": self.status.as_str() })
    }
}

/// What the end-of-execution hook did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndReport {
    /// Connection names whose open transaction was rolled back, one entry per handle.
    pub rolled_back: Vec<String>,
    /// Rollbacks that failed (their connections were closed instead of reused).
    pub failures: Vec<DatabaseError>,
}

/// A handle's open transaction: the connection name and the connection pinned to it.
type Pinned = (Arc<str>, Box<dyn SqlSession>);

struct State {
    /// Handles with an open transaction and the connection pinned to them.
    transactions: HashMap<u64, Pinned>,
    /// Rows affected by `Execute` and `CachedWrite` so far.
    dml_rows: u64,
}

/// One execution's Database state. Create with [`Database::execution`].
///
/// The query count and the number of open transactions are atomics beside the locked state,
/// so a statement outside a transaction (most of them) is counted and dispatched without
/// taking the lock.
pub struct DatabaseExecution {
    database: Database,
    limits: DatabaseLimits,
    next_handle: AtomicU64,
    /// Statements sent (or attempted), checked against `limits.max_queries`.
    queries: AtomicU64,
    /// Transactions open on this execution's handles (`state.transactions` with the ones a
    /// running statement took out); changed only under the state's lock.
    open_transactions: AtomicUsize,
    state: Mutex<State>,
}

impl DatabaseExecution {
    pub(super) fn new(database: Database, limits: DatabaseLimits) -> DatabaseExecution {
        DatabaseExecution {
            database,
            limits,
            next_handle: AtomicU64::new(1),
            queries: AtomicU64::new(0),
            open_transactions: AtomicUsize::new(0),
            state: Mutex::new(State {
                transactions: HashMap::new(),
                dml_rows: 0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `Database.Connection(name)`: a handle on a defined connection (no server contact).
    pub fn connection(&self, name: &str) -> Result<ConnectionHandle, DatabaseError> {
        let connector = Arc::clone(self.database.connector(name)?);
        Ok(ConnectionHandle {
            name: Arc::from(name),
            id: self.next_handle.fetch_add(1, Ordering::Relaxed),
            connector,
        })
    }

    /// Whether `CachedWrite` can buffer here (a site); without a buffer (central) it is
    /// unavailable.
    pub fn can_buffer(&self) -> bool {
        self.database.outbox().is_some()
    }

    /// Queries and DML rows used so far.
    pub fn counters(&self) -> DatabaseCounters {
        DatabaseCounters {
            queries: self.queries.load(Ordering::Relaxed),
            dml_rows: self.state().dml_rows,
        }
    }

    /// `Connection.Query(sql, params)`: every row of the first result set.
    pub fn query(
        &self,
        handle: &ConnectionHandle,
        sql: &str,
        params: &[Value],
    ) -> Result<Vec<Map<String, Value>>, DatabaseError> {
        self.query_rows(handle, sql, params).map(RowSet::into_maps)
    }

    /// `Connection.Query(sql, params)` as column names (already made unique, see
    /// [`RowSet::into_maps`]) and rows of values, without building a JSON object per row:
    /// what the script host call uses to make the script's `list<map<json>>` directly.
    pub fn query_rows(
        &self,
        handle: &ConnectionHandle,
        sql: &str,
        params: &[Value],
    ) -> Result<RowSet, DatabaseError> {
        let params =
            SqlValue::list_from_json(params).map_err(|e| e.for_connection(handle.name()))?;
        self.query_values(handle, sql, params)
    }

    /// [`DatabaseExecution::query_rows`] with the parameters already converted (the script
    /// host call converts its values directly, without JSON).
    pub fn query_values(
        &self,
        handle: &ConnectionHandle,
        sql: &str,
        params: SqlParams,
    ) -> Result<RowSet, DatabaseError> {
        let connector = &handle.connector;
        let statement = statement(&self.database, connector.as_ref(), sql, params)
            .map_err(|e| e.for_connection(handle.name()))?;
        self.run(connector, handle, |session| session.query(&statement))
            .map(RowSet::with_unique_columns)
    }

    /// [`DatabaseExecution::query_values`] with the rows written to `sink` as the driver reads
    /// them (see [`RowSink`]): what the script host call uses. Outside a transaction the
    /// connector runs it on a connection borrowed for just this query
    /// ([`SqlConnector::query_once`]); errors and their order are those of `query_values`.
    pub fn query_into(
        &self,
        handle: &ConnectionHandle,
        sql: &str,
        params: SqlParams,
        sink: &mut dyn RowSink,
    ) -> Result<(), DatabaseError> {
        let connector = &handle.connector;
        let statement = statement(&self.database, connector.as_ref(), sql, params)
            .map_err(|e| e.for_connection(handle.name()))?;
        match self.charge_and_pin(handle)? {
            Some(pinned) => self.on_pinned(handle, pinned, |session| {
                session.query_into(&statement, sink)
            }),
            None => connector
                .query_once(&statement, sink)
                .map_err(|e| e.for_connection(handle.name())),
        }
    }

    /// `Connection.Scalar(sql, params)`: the first column of the first row, `null` without rows.
    pub fn scalar(
        &self,
        handle: &ConnectionHandle,
        sql: &str,
        params: &[Value],
    ) -> Result<Value, DatabaseError> {
        let connector = &handle.connector;
        let statement = prepare(&self.database, connector.as_ref(), sql, params)
            .map_err(|e| e.for_connection(handle.name()))?;
        self.run(connector, handle, |session| session.query(&statement))
            .map(|rows| rows.into_scalar())
    }

    /// `Connection.Execute(sql, params)`: rows affected.
    pub fn execute(
        &self,
        handle: &ConnectionHandle,
        sql: &str,
        params: &[Value],
    ) -> Result<i64, DatabaseError> {
        let connector = &handle.connector;
        let statement = prepare(&self.database, connector.as_ref(), sql, params)
            .map_err(|e| e.for_connection(handle.name()))?;
        let rows = self.run(connector, handle, |session| session.execute(&statement))?;
        self.charge_rows(rows)?;
        Ok(i64::try_from(rows).unwrap_or(i64::MAX))
    }

    /// `Connection.Procedure(name, params)`: the rows the procedure returns.
    pub fn procedure(
        &self,
        handle: &ConnectionHandle,
        name: &str,
        params: &Map<String, Value>,
    ) -> Result<Vec<Map<String, Value>>, DatabaseError> {
        let connector = &handle.connector;
        let statement = procedure_statement(connector.driver(), name, params)
            .map_err(|e| e.for_connection(handle.name()))?;
        self.run(connector, handle, |session| session.query(&statement))
            .map(|rows| rows.into_maps())
    }

    /// `Connection.Begin()`: pin a pooled connection to the handle and start a transaction.
    pub fn begin(&self, handle: &ConnectionHandle) -> Result<(), DatabaseError> {
        if self.state().transactions.contains_key(&handle.id) {
            return Err(DatabaseError::new(
                DatabaseErrorKind::TransactionState,
                "transaction_open",
                "a transaction is already open on this connection; Commit() or Rollback() it first",
            )
            .for_connection(handle.name()));
        }
        let connector = &handle.connector;
        let mut session = connector
            .checkout()
            .map_err(|e| e.for_connection(handle.name()))?;
        session
            .begin()
            .map_err(|e| e.for_connection(handle.name()))?;
        let mut state = self.state();
        state
            .transactions
            .insert(handle.id, (Arc::clone(&handle.name), session));
        self.open_transactions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// `Connection.Commit()`: commit and return the connection to the pool.
    pub fn commit(&self, handle: &ConnectionHandle) -> Result<(), DatabaseError> {
        let (_, mut session) = self.take_transaction(handle, "Commit")?;
        session
            .commit()
            .map_err(|e| e.for_connection(handle.name()))
    }

    /// `Connection.Rollback()`: roll back and return the connection to the pool.
    pub fn rollback(&self, handle: &ConnectionHandle) -> Result<(), DatabaseError> {
        let (_, mut session) = self.take_transaction(handle, "Rollback")?;
        session
            .rollback()
            .map_err(|e| e.for_connection(handle.name()))
    }

    /// `Database.CachedWrite(name, sql, params)`: try once on a pooled connection (never inside
    /// a script's transaction); on a transient failure buffer the write durably and answer
    /// `buffered`; any other failure is returned and nothing is buffered.
    pub fn cached_write(
        &self,
        name: &str,
        sql: &str,
        params: &[Value],
    ) -> Result<Delivery, DatabaseError> {
        let connector = self.database.connector(name)?;
        let outbox = self.database.outbox().ok_or_else(|| {
            DatabaseError::configuration(
                "CachedWrite needs a store-and-forward buffer, which this node does not have \
                 (central has none: use Database.Connection there)",
            )
            .for_connection(name)
        })?;
        let statement = prepare(&self.database, connector.as_ref(), sql, params)
            .map_err(|e| e.for_connection(name))?;
        self.charge_query()?;
        let id = outbox.new_id();
        let started_at_unix_ms = unix_millis();
        let started = Instant::now();
        let attempt = connector
            .checkout()
            .and_then(|mut session| session.execute(&statement))
            .map_err(|e| e.for_connection(name));
        match attempt {
            Ok(rows) => {
                self.charge_rows(rows)?;
                Ok(Delivery {
                    id,
                    status: DeliveryStatus::Delivered,
                })
            }
            Err(error) if error.is_transient() => {
                let entry = CachedWriteEntry {
                    connection: name.to_owned(),
                    sql: sql.to_owned(),
                    params: params.to_vec(),
                };
                let first_attempt = FailedAttempt {
                    started_at_unix_ms,
                    duration: started.elapsed(),
                    error,
                };
                outbox
                    .buffer(&id, &entry, &first_attempt)
                    .map_err(|e| e.for_connection(name))?;
                Ok(Delivery {
                    id,
                    status: DeliveryStatus::Buffered,
                })
            }
            Err(error) => Err(error),
        }
    }

    /// The end-of-execution hook: roll back every open transaction and return (or, if the
    /// rollback fails, close) its connection. Safe to call more than once.
    pub fn end(&self) -> EndReport {
        let open: Vec<_> = {
            let mut state = self.state();
            self.open_transactions.store(0, Ordering::Relaxed);
            state.transactions.drain().map(|(_, open)| open).collect()
        };
        let mut report = EndReport::default();
        for (name, mut session) in open {
            match session.rollback() {
                Ok(()) => report.rolled_back.push(name.to_string()),
                Err(error) => report.failures.push(error.for_connection(&name)),
            }
            // Dropping the session returns it to the pool (or closes it if it broke).
            drop(session);
        }
        report
    }

    fn take_transaction(
        &self,
        handle: &ConnectionHandle,
        operation: &str,
    ) -> Result<(Arc<str>, Box<dyn SqlSession>), DatabaseError> {
        let mut state = self.state();
        let taken = state.transactions.remove(&handle.id);
        if taken.is_some() {
            self.open_transactions.fetch_sub(1, Ordering::Relaxed);
        }
        taken.ok_or_else(|| {
            DatabaseError::new(
                DatabaseErrorKind::TransactionState,
                "no_transaction",
                format!("{operation}() without an open transaction on this connection; call Begin() first"),
            )
            .for_connection(handle.name())
        })
    }

    /// Count one query, then run `operation` on the handle's transaction connection or on a
    /// connection borrowed from `connector` (the handle's) for just this operation.
    fn run<T>(
        &self,
        connector: &Arc<dyn SqlConnector>,
        handle: &ConnectionHandle,
        operation: impl FnOnce(&mut dyn SqlSession) -> Result<T, DatabaseError>,
    ) -> Result<T, DatabaseError> {
        match self.charge_and_pin(handle)? {
            Some(pinned) => self.on_pinned(handle, pinned, operation),
            None => {
                let mut session = connector
                    .checkout()
                    .map_err(|e| e.for_connection(handle.name()))?;
                operation(session.as_mut()).map_err(|e| e.for_connection(handle.name()))
            }
        }
    }

    /// Count one query and take the handle's transaction connection out of the state, if it
    /// has one (returned by [`DatabaseExecution::on_pinned`]). No lock while no transaction
    /// is open (most executions).
    fn charge_and_pin(&self, handle: &ConnectionHandle) -> Result<Option<Pinned>, DatabaseError> {
        self.charge_query()?;
        Ok(if self.open_transactions.load(Ordering::Relaxed) == 0 {
            None
        } else {
            self.state().transactions.remove(&handle.id)
        })
    }

    /// Run `operation` on a transaction connection taken by
    /// [`DatabaseExecution::charge_and_pin`], then put it back.
    fn on_pinned<T>(
        &self,
        handle: &ConnectionHandle,
        (name, mut session): Pinned,
        operation: impl FnOnce(&mut dyn SqlSession) -> Result<T, DatabaseError>,
    ) -> Result<T, DatabaseError> {
        let result = operation(session.as_mut());
        self.state().transactions.insert(handle.id, (name, session));
        result.map_err(|e| e.for_connection(handle.name()))
    }

    /// Count one query, unless the execution already sent its limit.
    fn charge_query(&self) -> Result<(), DatabaseError> {
        let limit = self.limits.max_queries;
        self.queries
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |sent| match limit {
                Some(limit) if sent >= limit => None,
                _ => Some(sent.saturating_add(1)),
            })
            .map(|_| ())
            .map_err(|_| {
                DatabaseError::new(
                    DatabaseErrorKind::Limit,
                    "query_limit",
                    format!(
                        "the execution reached its limit of {} database queries",
                        limit.unwrap_or(0)
                    ),
                )
            })
    }

    fn charge_rows(&self, rows: u64) -> Result<(), DatabaseError> {
        let mut state = self.state();
        state.dml_rows = state.dml_rows.saturating_add(rows);
        match self.limits.max_dml_rows {
            Some(limit) if state.dml_rows > limit => Err(DatabaseError::new(
                DatabaseErrorKind::Limit,
                "dml_row_limit",
                format!(
                    "the execution affected {} database rows, above its limit of {limit}",
                    state.dml_rows
                ),
            )),
            _ => Ok(()),
        }
    }
}

impl Drop for DatabaseExecution {
    fn drop(&mut self) {
        let _ = self.end();
    }
}

/// Rewrite placeholders and convert parameters for the connector's driver.
pub(super) fn prepare(
    database: &Database,
    connector: &dyn SqlConnector,
    sql: &str,
    params: &[Value],
) -> Result<Statement, DatabaseError> {
    statement(database, connector, sql, SqlValue::list_from_json(params)?)
}

/// Rewrite placeholders for the connector's driver (from the database's cache when the text
/// was seen before).
fn statement(
    database: &Database,
    connector: &dyn SqlConnector,
    sql: &str,
    params: SqlParams,
) -> Result<Statement, DatabaseError> {
    let sql = database
        .translations()
        .translate(sql, connector.driver(), params.len())?;
    Ok(Statement { sql, params })
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}
