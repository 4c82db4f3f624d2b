//! Errors of the Database module, as the script sees them.
//!
//! Every failure — an unknown connection name, an unreachable server, an SQL error with the
//! server's own code, a timeout, a bad parameter value, a governor limit — is one
//! [`DatabaseError`]: a [`DatabaseErrorKind`], a stable `code` and a message that never contains
//! a secret (drivers' messages do not carry passwords, and connection URLs are never quoted).
//! [`DatabaseError::script_kind`] gives the `Error.kind` the script's `catch` sees, and
//! [`DatabaseError::is_transient`] decides whether `CachedWrite` buffers the write.

use std::fmt;

/// What went wrong, in the module's own terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatabaseErrorKind {
    /// The connection name is not defined in the deployment.
    NotFound,
    /// The server could not be reached, or the connection broke (refused, reset, DNS, TLS
    /// handshake, connection lost mid-statement). Transient.
    Unreachable,
    /// Connecting, waiting for a pooled connection, or a statement took longer than the
    /// connection's timeout. Transient.
    Timeout,
    /// The server rejected the statement; `code` is the server's own code (SQLSTATE for
    /// PostgreSQL, error number for MS SQL, result code name for SQLite). Transient only for
    /// deadlocks, serialization failures, lock timeouts and server shutdowns.
    Sql,
    /// A parameter value the module cannot bind, or `@pN` placeholders that do not match the
    /// parameter list. Never sent to the server.
    Parameter,
    /// The operation does not exist for this driver (stored procedures on SQLite).
    NotSupported,
    /// `Commit`/`Rollback` without `Begin`, or `Begin` twice.
    TransactionState,
    /// The execution reached its query or DML-row limit. Ends the execution (not catchable).
    Limit,
    /// The connection's definition cannot be used (bad URL, missing environment variable).
    Configuration,
    /// `CachedWrite` failed transiently and the store-and-forward buffer refused the write
    /// (disk full, buffer closed): it was NOT buffered.
    Buffer,
}

/// A failure of a Database operation.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseError {
    /// What went wrong.
    pub kind: DatabaseErrorKind,
    /// A stable code: the server's code for SQL errors, otherwise one of `not_found`,
    /// `unreachable`, `connection_lost`, `timeout`, `connect_timeout`, `pool_timeout`,
    /// `bad_parameter`, `not_supported`, `no_transaction`, `transaction_open`,
    /// `query_limit`, `dml_row_limit`, `configuration`, `buffer_failed`.
    pub code: String,
    /// A sentence for people, naming the connection.
    pub message: String,
    /// Whether retrying later may succeed (decides `CachedWrite` buffering).
    pub transient: bool,
}

impl DatabaseError {
    /// An error of `kind` with its usual transience.
    pub fn new(
        kind: DatabaseErrorKind,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> DatabaseError {
        let transient = matches!(
            kind,
            DatabaseErrorKind::Unreachable | DatabaseErrorKind::Timeout | DatabaseErrorKind::Buffer
        );
        DatabaseError {
            kind,
            code: code.into(),
            message: message.into(),
            transient,
        }
    }

    /// A server-side SQL error with the server's code; `transient` for deadlocks and the like.
    pub fn sql(
        code: impl Into<String>,
        message: impl Into<String>,
        transient: bool,
    ) -> DatabaseError {
        DatabaseError {
            kind: DatabaseErrorKind::Sql,
            code: code.into(),
            message: message.into(),
            transient,
        }
    }

    /// A bad parameter or placeholder.
    pub fn parameter(message: impl Into<String>) -> DatabaseError {
        DatabaseError::new(DatabaseErrorKind::Parameter, "bad_parameter", message)
    }

    /// The server could not be reached or the connection broke.
    pub fn unreachable(code: &str, message: impl Into<String>) -> DatabaseError {
        DatabaseError::new(DatabaseErrorKind::Unreachable, code, message)
    }

    /// A timeout; `code` is `timeout`, `connect_timeout` or `pool_timeout`.
    pub fn timeout(code: &str, message: impl Into<String>) -> DatabaseError {
        DatabaseError::new(DatabaseErrorKind::Timeout, code, message)
    }

    /// A connection definition that cannot be used.
    pub fn configuration(message: impl Into<String>) -> DatabaseError {
        DatabaseError::new(DatabaseErrorKind::Configuration, "configuration", message)
    }

    /// Whether `CachedWrite` should buffer after this failure.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// Whether the script may catch it (limit violations end the execution).
    pub fn is_catchable(&self) -> bool {
        self.kind != DatabaseErrorKind::Limit
    }

    /// The `Error.kind` the script sees: `not_found`, `transient`, `timeout`, `permanent`,
    /// `type` or `limit`.
    pub fn script_kind(&self) -> &'static str {
        match self.kind {
            DatabaseErrorKind::NotFound => "not_found",
            DatabaseErrorKind::Timeout => "timeout",
            DatabaseErrorKind::Parameter => "type",
            DatabaseErrorKind::Limit => "limit",
            DatabaseErrorKind::Unreachable | DatabaseErrorKind::Buffer => "transient",
            DatabaseErrorKind::Sql if self.transient => "transient",
            DatabaseErrorKind::Sql
            | DatabaseErrorKind::NotSupported
            | DatabaseErrorKind::TransactionState
            | DatabaseErrorKind::Configuration => "permanent",
        }
    }

    /// The same error with `database "NAME": ` in front of the message, unless it is there.
    pub fn for_connection(mut self, connection: &str) -> DatabaseError {
        let prefix = format!("database \"{connection}\": ");
        if !self.message.starts_with(&prefix) {
            self.message.insert_str(0, &prefix);
        }
        self
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl fmt::Debug for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseError")
            .field("kind", &self.kind)
            .field("code", &self.code)
            .field("message", &self.message)
            .field("transient", &self.transient)
            .finish()
    }
}

impl std::error::Error for DatabaseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_kinds_follow_the_language_reference() {
        assert_eq!(
            DatabaseError::sql("42601", "syntax", false).script_kind(),
            "permanent"
        );
        assert_eq!(
            DatabaseError::sql("40P01", "deadlock", true).script_kind(),
            "transient"
        );
        assert_eq!(
            DatabaseError::timeout("timeout", "slow").script_kind(),
            "timeout"
        );
        assert_eq!(DatabaseError::parameter("bad").script_kind(), "type");
        assert!(DatabaseError::unreachable("unreachable", "down").is_transient());
        assert!(!DatabaseError::parameter("bad").is_transient());
    }

    #[test]
    fn connection_prefix_is_added_once() {
        let error = DatabaseError::parameter("bad")
            .for_connection("H")
            .for_connection("H");
        assert_eq!(error.message, "database \"H\": bad");
    }
}
