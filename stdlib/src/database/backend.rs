//! The outside world of the Database module, as small traits the runtime implements.
//!
//! - [`SqlConnector`]: one named connection's pool; [`SqlConnector::checkout`] lends a
//!   [`SqlSession`] (a pooled connection) that goes back to the pool when dropped.
//! - [`RowSink`]: where a driver may write a query's rows as it reads them (the script's
//!   `Query` result), instead of collecting a [`RowSet`] first.
//! - [`WriteOutbox`]: the store-and-forward buffer, for `CachedWrite` entries that failed
//!   transiently.
//!
//! Every method blocks the calling thread: they are called from script threads (never from the
//! async reactor) and from the forwarder's blocking pool. Implementations may block on a tokio
//! runtime handle. Unit tests use in-memory implementations; integration tests use the
//! runtime's real drivers against real servers.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::DatabaseError;
use super::placeholders::Driver;
use super::value::{RowSet, Statement};

/// Where a query's rows go as a driver reads them: [`SqlSession::query_into`] and
/// [`SqlConnector::query_once`] call `start_row`, then `cell` once per column in column order,
/// then `end_row`, for each row of the first result set. Column names are unique within the
/// result (renamed as [`RowSet::with_unique_columns`] does) and shared: a driver makes each
/// name once per result (SQLite once per cached statement) and hands every row the same
/// `Arc`, which the script's maps keep as their keys. After an error the sink may hold part of
/// the rows; the caller drops it.
///
/// This is what lets the script host call build its `list<map<json>>` straight from the
/// driver's rows: no vector per row, no vector of rows and no copy of the column names in
/// between (on SQLite that intermediate was a fifth of the module's cost of a one-row query).
pub trait RowSink {
    /// A row of `width` cells begins.
    fn start_row(&mut self, width: usize);

    /// The next cell of the current row.
    fn cell(&mut self, column: &Arc<str>, value: Value);

    /// The current row is complete.
    fn end_row(&mut self);
}

/// One named connection: its driver and its pool.
pub trait SqlConnector: Send + Sync + 'static {
    /// The driver, which decides placeholder syntax and procedure calls.
    fn driver(&self) -> Driver;

    /// Borrow a connection from the pool, connecting if none is idle. Waits at most the
    /// connection's pool timeout. The session returns to the pool when dropped.
    fn checkout(&self) -> Result<Box<dyn SqlSession>, DatabaseError>;

    /// Run one query outside any transaction on a connection borrowed for just this query,
    /// writing its rows to `sink`; the connection goes back to the pool before this returns.
    /// The same as [`SqlConnector::checkout`] then [`SqlSession::query_into`] (which is the
    /// default); a driver overrides it to skip boxing the session (an allocation per
    /// statement).
    fn query_once(
        &self,
        statement: &Statement,
        sink: &mut dyn RowSink,
    ) -> Result<(), DatabaseError> {
        self.checkout()?.query_into(statement, sink)
    }
}

/// A connection borrowed from a pool.
///
/// Dropping it returns it to the pool, unless it broke (an I/O error or a timeout in the
/// middle of a statement) or still has a transaction open: then the implementation closes it
/// instead, so no later borrower inherits its state.
pub trait SqlSession: Send {
    /// Run a statement that returns rows (its first result set).
    fn query(&mut self, statement: &Statement) -> Result<RowSet, DatabaseError>;

    /// [`SqlSession::query`], the rows written to `sink` as they are read (see [`RowSink`]).
    /// The default collects the [`RowSet`] first; a driver overrides it to save the
    /// intermediate vectors.
    fn query_into(
        &mut self,
        statement: &Statement,
        sink: &mut dyn RowSink,
    ) -> Result<(), DatabaseError> {
        self.query(statement).map(|rows| rows.write_to(sink))
    }

    /// Run a statement and return the number of rows it affected.
    fn execute(&mut self, statement: &Statement) -> Result<u64, DatabaseError>;

    /// Start a transaction.
    fn begin(&mut self) -> Result<(), DatabaseError>;

    /// Commit the open transaction.
    fn commit(&mut self) -> Result<(), DatabaseError>;

    /// Roll the open transaction back.
    fn rollback(&mut self) -> Result<(), DatabaseError>;
}

/// What a buffered `CachedWrite` stores (seed 5.6-4): the connection name, the SQL as the
/// script wrote it (with `@pN` placeholders, rewritten for the driver at each attempt) and
/// the parameter values. This is the store-and-forward payload; the message id is the
/// `Delivery` id the script got.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedWriteEntry {
    /// The named connection.
    pub connection: String,
    /// The statement, with `@pN` placeholders.
    pub sql: String,
    /// The parameter values, `@p1` first.
    pub params: Vec<Value>,
}

/// The failed first attempt of a `CachedWrite`, recorded with the buffered entry.
#[derive(Clone, Debug, PartialEq)]
pub struct FailedAttempt {
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// How long it took.
    pub duration: Duration,
    /// Why it failed.
    pub error: DatabaseError,
}

/// The store-and-forward buffer, as `CachedWrite` needs it.
pub trait WriteOutbox: Send + Sync + 'static {
    /// A fresh message id (the `Delivery` id), also for writes that succeed at once.
    fn new_id(&self) -> String;

    /// Buffer `entry` under `id` durably, with the connection's retry settings: on disk
    /// before this returns. An error means it was NOT buffered.
    fn buffer(
        &self,
        id: &str,
        entry: &CachedWriteEntry,
        first_attempt: &FailedAttempt,
    ) -> Result<(), DatabaseError>;
}

/// How one delivery attempt of a buffered write ended.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOutcome {
    /// Written and committed.
    Written {
        /// Rows affected, as the driver reports them.
        rows_affected: u64,
    },
    /// Worth retrying later (server down, timeout, deadlock).
    Transient(DatabaseError),
    /// Retrying cannot help (SQL error, unknown connection, bad parameter): park it.
    Permanent(DatabaseError),
}
