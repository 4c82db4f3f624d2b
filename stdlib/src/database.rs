//! # The `Database` module: named connections and cached writes
//!
//! The script-side behaviour of `Database.Connection(name)` (`Query`, `Execute`, `Scalar`,
//! `Procedure`, `Begin`/`Commit`/`Rollback`) and `Database.CachedWrite(name, sql, params)`,
//! independent of any driver. Drivers, pools and the store-and-forward buffer are behind the
//! traits of [`backend`]; the runtime implements them for SQLite, PostgreSQL and MS SQL.
//!
//! What this module promises (`docs/modules/database.md` is the user-facing version):
//! - **Parameters are bound, never spliced.** Scripts write `@p1…@pN`; [`placeholders`]
//!   rewrites them per driver outside strings, quoted identifiers and comments.
//! - **Typed values both ways** ([`value`]): null, int, float, bool, string in; rows out as
//!   `list<map<json>>` with datetimes as RFC 3339 text and decimals as text.
//! - **Failures are typed** ([`error`]): unreachable, timeout, SQL error with the server's code,
//!   bad parameter; `Connection` operations return every failure to the script and buffer
//!   nothing.
//! - **`CachedWrite` buffers only transient failures** (connection refused or lost, timeouts,
//!   deadlocks and serialization failures); a permanent one (syntax, constraint) is returned to
//!   the script. A buffered write is on disk before the script hears `buffered`; the forwarder
//!   retries it through [`Database::deliver_cached_write`] and parks it after the last retry.
//! - **Nothing outlives an execution** ([`execution`]): transactions still open when the script
//!   ends are rolled back and their connections returned to the pool.

pub mod backend;
pub mod error;
pub mod execution;
pub mod hash;
pub mod host;
pub mod placeholders;
pub mod procedure;
pub mod value;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use backend::{
    CachedWriteEntry, FailedAttempt, RowSink, SqlConnector, SqlSession, WriteOutbox, WriteOutcome,
};
pub use error::{DatabaseError, DatabaseErrorKind};
pub use execution::{
    ConnectionHandle, DML_ROWS_COUNTER, DatabaseCounters, DatabaseExecution, DatabaseLimits,
    Delivery, DeliveryStatus, EndReport, QUERY_COUNTER,
};
pub use host::{DatabaseScope, QueryCall, register_database};
pub use placeholders::{Driver, Translations};
pub use value::{RowSet, SqlParams, SqlValue, Statement};

struct Inner {
    connectors: BTreeMap<String, Arc<dyn SqlConnector>>,
    outbox: Option<Arc<dyn WriteOutbox>>,
    /// Rewritten SQL of the statements seen so far, shared by every execution.
    translations: Translations,
}

/// The named connections of one node and, on a site, its store-and-forward outbox. Cheap to
/// clone; every clone shares the pools.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database")
            .field(
                "connections",
                &self.inner.connectors.keys().collect::<Vec<_>>(),
            )
            .field("outbox", &self.inner.outbox.is_some())
            .finish()
    }
}

impl Database {
    /// The module over these connections; `outbox` is `None` where `CachedWrite` is not
    /// available (central).
    pub fn new(
        connectors: BTreeMap<String, Arc<dyn SqlConnector>>,
        outbox: Option<Arc<dyn WriteOutbox>>,
    ) -> Database {
        Database {
            inner: Arc::new(Inner {
                connectors,
                outbox,
                translations: Translations::default(),
            }),
        }
    }

    /// The defined connection names, sorted.
    pub fn connection_names(&self) -> impl Iterator<Item = &str> {
        self.inner.connectors.keys().map(String::as_str)
    }

    /// The connector of a named connection, or a `not_found` error naming the defined ones.
    pub fn connector(&self, name: &str) -> Result<&Arc<dyn SqlConnector>, DatabaseError> {
        self.inner.connectors.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.connection_names().collect();
            DatabaseError::new(
                DatabaseErrorKind::NotFound,
                "not_found",
                if known.is_empty() {
                    format!("no database connection named \"{name}\" (the deployment defines none)")
                } else {
                    format!(
                        "no database connection named \"{name}\" (defined: {})",
                        known.join(", ")
                    )
                },
            )
        })
    }

    pub(crate) fn translations(&self) -> &Translations {
        &self.inner.translations
    }

    pub(crate) fn outbox(&self) -> Option<&Arc<dyn WriteOutbox>> {
        self.inner.outbox.as_ref()
    }

    /// The state of one script execution; call [`DatabaseExecution::end`] when it finishes
    /// (dropping it does the same).
    pub fn execution(&self, limits: DatabaseLimits) -> DatabaseExecution {
        DatabaseExecution::new(self.clone(), limits)
    }

    /// One delivery attempt of a buffered `CachedWrite` (the store-and-forward deliverer calls
    /// this on a blocking thread): autocommit on a pooled connection, classified.
    pub fn deliver_cached_write(&self, entry: &CachedWriteEntry) -> WriteOutcome {
        let attempt = self.connector(&entry.connection).and_then(|connector| {
            let statement =
                execution::prepare(self, connector.as_ref(), &entry.sql, &entry.params)?;
            connector.checkout()?.execute(&statement)
        });
        match attempt.map_err(|e| e.for_connection(&entry.connection)) {
            Ok(rows_affected) => WriteOutcome::Written { rows_affected },
            Err(error) if error.is_transient() => WriteOutcome::Transient(error),
            Err(error) => WriteOutcome::Permanent(error),
        }
    }
}

#[cfg(test)]
mod tests;
