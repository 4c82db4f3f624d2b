//! The SQLite driver: rusqlite (SQLite bundled, so nothing to install), one pool per named
//! connection, statements run on the calling blocking thread (a script thread or the
//! forwarder's blocking pool — never the reactor).
//!
//! Each connection opens the file read-write (creating it), in WAL mode (readers do not block
//! the writer), with foreign keys on, a busy timeout equal to the statement timeout, and a
//! progress handler that interrupts a statement running past the statement timeout.
//! `Begin()` is `BEGIN IMMEDIATE`, so a transaction that writes takes the write lock up front
//! instead of failing halfway with `SQLITE_BUSY`.
//!
//! Values: INTEGER → int (0/1 in a column declared `BOOL`/`BOOLEAN` → bool), REAL → float,
//! TEXT → string, BLOB → base64 string, NULL → null. Parameters: bool binds as 0/1.
//! Transient failures: `SQLITE_BUSY`, `SQLITE_LOCKED` (another connection holds the lock),
//! `SQLITE_CANTOPEN`, `SQLITE_IOERR`, `SQLITE_FULL`; an interrupted statement is a timeout.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use deadpool::managed::{Manager, Metrics, Object, Pool, RecycleError, RecycleResult};
use rusqlite::hooks::Authorization;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use scl_stdlib::database::hash::FastHash;
use scl_stdlib::database::{
    DatabaseError, DatabaseErrorKind, Driver, RowSet, RowSink, SqlConnector, SqlSession, SqlValue,
    Statement,
};
use serde_json::Value;
use tokio::runtime::Handle;

use super::pool::{IDLE_CHECK_AFTER, build_pool, checkout};
use super::settings::{ConnectionSettings, PoolSettings};

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;

/// Column lists kept per connection (see [`ColumnCache`]); past that it starts afresh.
const COLUMN_CACHE: usize = 256;

/// What a query's rows need to know about its columns: the names (the script's map keys) and
/// which ones are declared `BOOL`/`BOOLEAN`.
#[derive(Debug, PartialEq)]
struct ColumnInfo {
    /// Already made unique ([`RowSet::unique_columns`]), so that a [`RowSink`] takes them as
    /// they are, without a check per query; shared, so each row's map keys are these same
    /// texts (no copy per cell).
    names: Vec<Arc<str>>,
    booleans: Vec<bool>,
}

/// The column lists of the queries this connection ran, by SQL text, so a repeated query does
/// not read names and declared types from SQLite (and copy them) on every call.
///
/// **Staleness.** A statement's columns change only when SQLite compiles it again: after a
/// schema change (its own `ALTER TABLE`, `DROP`/`CREATE`, or another connection's, noticed
/// when the statement steps), or when rusqlite's statement cache dropped it and prepares it
/// anew. Every compile on this connection calls its authorizer, which counts compiles
/// (`compiles`, see [`open`]); an entry is used only while that count is the one it was read
/// at, and while the column count matches. The count is read after the statement's first step,
/// since that step is where a schema change makes SQLite recompile it. Any compile (of any
/// statement) makes entries re-read once; in a steady state nothing compiles.
///
/// Entries are keyed by the address of the statement's shared SQL text (the Database module's
/// cache of rewritten SQL hands out the same `Arc` for the same script text, so the lookup
/// hashes one word instead of the text); each entry holds that `Arc`, so the address cannot be
/// reused for another text while the entry exists.
#[derive(Default)]
struct ColumnCache {
    entries: HashMap<usize, CachedColumns, FastHash>,
    /// The entry used last, checked first (a script repeating one query skips the hash
    /// lookup); held like the entries, checked like them.
    last: Option<CachedColumns>,
    /// Lookups answered from an entry (for tests).
    hits: u64,
}

impl ColumnCache {
    /// The columns of `statement` (already stepped once), from the cache while no compile
    /// happened since they were read. Borrowed from the cache (no reference count taken and
    /// given back per query).
    fn current(
        &mut self,
        sql: &Arc<str>,
        compiles: u64,
        statement: &rusqlite::Statement<'_>,
    ) -> &Arc<ColumnInfo> {
        let ColumnCache {
            entries,
            last,
            hits,
        } = self;
        if last
            .as_ref()
            .is_some_and(|entry| entry.is_current(sql, compiles, statement))
        {
            *hits += 1;
        } else {
            *last = None;
        }
        &last
            .get_or_insert_with(|| find_or_read(entries, hits, sql, compiles, statement))
            .info
    }

    /// [`ColumnCache::current`], shared.
    fn columns(
        &mut self,
        sql: &Arc<str>,
        compiles: u64,
        statement: &rusqlite::Statement<'_>,
    ) -> Arc<ColumnInfo> {
        Arc::clone(self.current(sql, compiles, statement))
    }
}

#[derive(Clone)]
struct CachedColumns {
    /// Keeps the text (and so the key's address) alive.
    sql: Arc<str>,
    /// The connection's compile count when the columns were read.
    compiles: u64,
    info: Arc<ColumnInfo>,
}

impl CachedColumns {
    /// Whether these are the columns of `statement` (the text `sql`) as it is compiled now:
    /// the same text, no compile on the connection since they were read, the same width.
    fn is_current(
        &self,
        sql: &Arc<str>,
        compiles: u64,
        statement: &rusqlite::Statement<'_>,
    ) -> bool {
        self.compiles == compiles
            && Arc::ptr_eq(&self.sql, sql)
            && self.info.names.len() == statement.column_count()
    }
}

/// The [`ColumnCache`] entry for `sql` from its map if it is current, else the columns read from the
/// statement (and kept).
fn find_or_read(
    entries: &mut HashMap<usize, CachedColumns, FastHash>,
    hits: &mut u64,
    sql: &Arc<str>,
    compiles: u64,
    statement: &rusqlite::Statement<'_>,
) -> CachedColumns {
    let key = Arc::as_ptr(sql).cast::<u8>() as usize;
    if let Some(entry) = entries.get(&key)
        && entry.is_current(sql, compiles, statement)
    {
        *hits += 1;
        return entry.clone();
    }
    let count = statement.column_count();
    let mut names = Vec::with_capacity(count);
    let mut booleans = Vec::with_capacity(count);
    for column in statement.columns() {
        names.push(column.name().to_owned());
        booleans.push(is_boolean_declaration(column.decl_type()));
    }
    let info = Arc::new(ColumnInfo {
        names: RowSet::unique_columns(names)
            .into_iter()
            .map(Arc::from)
            .collect(),
        booleans,
    });
    if entries.len() >= COLUMN_CACHE && !entries.contains_key(&key) {
        entries.clear();
    }
    let entry = CachedColumns {
        sql: Arc::clone(sql),
        compiles,
        info,
    };
    entries.insert(key, entry.clone());
    entry
}

/// A connection's own state besides rusqlite's, boxed so that the pooled object (which deadpool
/// moves by value on every checkout) stays as small as a bare connection's.
struct ConnectionState {
    /// When the running statement must stop, as nanoseconds after [`clock_base`]; read by the
    /// progress handler installed at open (once per connection: installing one per statement
    /// cost about 5% of a one-row query).
    deadline: Arc<AtomicU64>,
    /// How many statement compiles (prepares and re-prepares) this connection did, counted by
    /// its authorizer: what tells [`ColumnCache`] entries are still current.
    compiles: Arc<AtomicU64>,
    columns: ColumnCache,
}

/// A pooled SQLite connection.
pub struct SqliteConnection {
    connection: Connection,
    statement_timeout: Duration,
    state: Box<ConnectionState>,
    broken: bool,
}

/// The origin of statement deadlines.
fn clock_base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn clock_nanos(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(clock_base()).as_nanos()).unwrap_or(u64::MAX)
}

/// Opens SQLite connections for the pool.
pub struct SqliteManager {
    path: PathBuf,
    statement_timeout: Duration,
}

impl Manager for SqliteManager {
    type Type = SqliteConnection;
    type Error = DatabaseError;

    async fn create(&self) -> Result<SqliteConnection, DatabaseError> {
        open(&self.path, self.statement_timeout)
    }

    async fn recycle(
        &self,
        connection: &mut SqliteConnection,
        metrics: &Metrics,
    ) -> RecycleResult<DatabaseError> {
        if connection.broken || !connection.connection.is_autocommit() {
            return Err(RecycleError::message(
                "connection was left broken or inside a transaction",
            ));
        }
        if metrics.last_used() > IDLE_CHECK_AFTER {
            connection
                .connection
                .execute_batch("SELECT 1")
                .map_err(|error| RecycleError::Backend(sqlite_error(&error)))?;
        }
        Ok(())
    }
}

fn open(
    path: &std::path::Path,
    statement_timeout: Duration,
) -> Result<SqliteConnection, DatabaseError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut connection =
        Connection::open_with_flags(path, flags).map_err(|error| sqlite_error(&error))?;
    connection
        .busy_timeout(statement_timeout)
        .map_err(|error| sqlite_error(&error))?;
    connection
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;")
        .map_err(|error| sqlite_error(&error))?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let deadline = Arc::new(AtomicU64::new(u64::MAX));
    let handler_deadline = Arc::clone(&deadline);
    // Every 1,000 virtual-machine steps: stop once past the deadline.
    connection
        .progress_handler(
            1_000,
            Some(move || clock_nanos(Instant::now()) > handler_deadline.load(Ordering::Relaxed)),
        )
        .map_err(|error| sqlite_error(&error))?;
    // Called for every statement SQLite compiles (also when it recompiles a cached one after a
    // schema change): allows everything, counts compiles for the column cache.
    let compiles = Arc::new(AtomicU64::new(0));
    let authorizer_compiles = Arc::clone(&compiles);
    connection
        .authorizer(Some(move |_: rusqlite::hooks::AuthContext<'_>| {
            authorizer_compiles.fetch_add(1, Ordering::Relaxed);
            Authorization::Allow
        }))
        .map_err(|error| sqlite_error(&error))?;
    Ok(SqliteConnection {
        connection,
        statement_timeout,
        state: Box::new(ConnectionState {
            deadline,
            compiles,
            columns: ColumnCache::default(),
        }),
        broken: false,
    })
}

/// One named SQLite connection: its pool.
pub struct SqliteConnector {
    pool: Pool<SqliteManager>,
    handle: Handle,
    settings: PoolSettings,
}

impl SqliteConnector {
    /// The pool for `settings` (opens nothing yet).
    pub fn new(
        settings: &ConnectionSettings,
        handle: Handle,
    ) -> Result<Arc<SqliteConnector>, DatabaseError> {
        let path = settings.sqlite_path.clone().ok_or_else(|| {
            DatabaseError::configuration("a sqlite connection needs a database file")
        })?;
        let manager = SqliteManager {
            path,
            statement_timeout: settings.pool.statement_timeout,
        };
        Ok(Arc::new(SqliteConnector {
            pool: build_pool(manager, &settings.pool)?,
            handle,
            settings: settings.pool,
        }))
    }

    /// Borrow a pooled connection (for benchmarks and tests that compare with plain rusqlite).
    pub fn raw_checkout(&self) -> Result<Object<SqliteManager>, DatabaseError> {
        checkout(&self.handle, &self.pool, &self.settings)
    }
}

impl SqliteConnection {
    /// The rusqlite connection.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }
}

impl SqlConnector for SqliteConnector {
    fn driver(&self) -> Driver {
        Driver::Sqlite
    }

    fn checkout(&self) -> Result<Box<dyn SqlSession>, DatabaseError> {
        let object = self.raw_checkout()?;
        Ok(Box::new(SqliteSession {
            object: Some(object),
        }))
    }

    /// The pooled connection itself instead of a session: the same statement run with the
    /// same deadline, and the connection returned or closed as dropping a session does
    /// ([`must_close`]), without moving it into a session and out again (each move of the
    /// pooled object is a `memcpy` of a few hundred bytes).
    fn query_once(
        &self,
        statement: &Statement,
        sink: &mut dyn RowSink,
    ) -> Result<(), DatabaseError> {
        // Used where the pool's answer lies: taking the object out of the `Result` moved it
        // twice more (two `memcpy`s of the object per statement).
        let mut borrowed = self.raw_checkout();
        let Ok(object) = &mut borrowed else {
            return borrowed.map(|_| ());
        };
        let result = with_deadline(object, |connection| write_rows(connection, statement, sink));
        if must_close(object)
            && let Ok(object) = borrowed
        {
            drop(Object::take(object));
        }
        result
    }
}

/// Whether a borrowed connection must be closed instead of going back to the pool: it broke,
/// or it still has a transaction open; no later borrower may inherit its state.
fn must_close(connection: &SqliteConnection) -> bool {
    connection.broken || !connection.connection.is_autocommit()
}

/// Run `work` on `connection` with the statement deadline armed; interruptions become
/// timeouts.
fn with_deadline<T>(
    connection: &mut SqliteConnection,
    work: impl FnOnce(&mut SqliteConnection) -> Result<T, rusqlite::Error>,
) -> Result<T, DatabaseError> {
    let timeout = connection.statement_timeout;
    connection
        .state
        .deadline
        .store(clock_nanos(Instant::now() + timeout), Ordering::Relaxed);
    let result = work(connection);
    connection.state.deadline.store(u64::MAX, Ordering::Relaxed);
    result.map_err(|error| {
        let error = sqlite_error(&error);
        if error.kind == DatabaseErrorKind::Timeout {
            DatabaseError::timeout(
                "timeout",
                format!("the statement ran longer than {} s", timeout.as_secs()),
            )
        } else {
            error
        }
    })
}

struct SqliteSession {
    object: Option<Object<SqliteManager>>,
}

impl SqliteSession {
    fn connection(&mut self) -> Result<&mut SqliteConnection, DatabaseError> {
        self.object.as_deref_mut().ok_or_else(|| {
            DatabaseError::unreachable("connection_lost", "the connection was closed")
        })
    }

    /// Run `work` with the statement deadline armed; interruptions become timeouts.
    fn with_deadline<T>(
        &mut self,
        work: impl FnOnce(&mut SqliteConnection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, DatabaseError> {
        with_deadline(self.connection()?, work)
    }
}

fn bind(
    statement: &mut rusqlite::CachedStatement<'_>,
    params: &[SqlValue],
) -> Result<(), rusqlite::Error> {
    for (index, value) in params.iter().enumerate() {
        let position = index + 1;
        match value {
            SqlValue::Null => statement.raw_bind_parameter(position, rusqlite::types::Null)?,
            SqlValue::Int(int) => statement.raw_bind_parameter(position, int)?,
            SqlValue::Float(float) => statement.raw_bind_parameter(position, float)?,
            SqlValue::Bool(flag) => statement.raw_bind_parameter(position, i64::from(*flag))?,
            SqlValue::Text(text) => statement.raw_bind_parameter(position, text.as_str())?,
        }
    }
    Ok(())
}

fn is_boolean_declaration(declared: Option<&str>) -> bool {
    declared.is_some_and(|declared| {
        declared.eq_ignore_ascii_case("BOOL") || declared.eq_ignore_ascii_case("BOOLEAN")
    })
}

fn cell_to_json(value: ValueRef<'_>, boolean_column: bool) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(int) if boolean_column && (int == 0 || int == 1) => Value::Bool(int == 1),
        ValueRef::Integer(int) => Value::from(int),
        ValueRef::Real(float) => scl_stdlib::database::value::float_to_json(float),
        // Valid UTF-8 (nearly always) is copied after one check; `from_utf8_lossy` walks the
        // text in chunks first (about 0.1k instructions for a short text).
        ValueRef::Text(bytes) => Value::String(match std::str::from_utf8(bytes) {
            Ok(text) => text.to_owned(),
            Err(_) => String::from_utf8_lossy(bytes).into_owned(),
        }),
        ValueRef::Blob(bytes) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

/// The statement from the connection's cache of prepared statements, with its parameters
/// bound, and the column cache with the compile count its entries are checked against.
fn prepare_bound<'c>(
    connection: &'c mut SqliteConnection,
    statement: &Statement,
) -> Result<
    (
        rusqlite::CachedStatement<'c>,
        &'c mut ColumnCache,
        &'c AtomicU64,
    ),
    rusqlite::Error,
> {
    let SqliteConnection {
        connection, state, ..
    } = connection;
    let ConnectionState {
        compiles, columns, ..
    } = &mut **state;
    let mut prepared = connection.prepare_cached(&statement.sql)?;
    bind(&mut prepared, &statement.params)?;
    Ok((prepared, columns, &**compiles))
}

/// Run a query: every row of its result, with the column list from the connection's cache.
fn query_rows(
    connection: &mut SqliteConnection,
    statement: &Statement,
) -> Result<RowSet, rusqlite::Error> {
    let (mut prepared, cache, compiles) = prepare_bound(connection, statement)?;
    let mut columns: Option<Arc<ColumnInfo>> = None;
    let mut out = Vec::new();
    let mut rows = prepared.raw_query();
    while let Some(row) = rows.next()? {
        // Read after the first step: that is where SQLite recompiles after a schema change.
        let info = columns.get_or_insert_with(|| {
            cache.columns(
                &statement.sql,
                compiles.load(Ordering::Relaxed),
                row.as_ref(),
            )
        });
        let mut values = Vec::with_capacity(info.booleans.len());
        for (index, boolean_column) in info.booleans.iter().enumerate() {
            values.push(cell_to_json(row.get_ref(index)?, *boolean_column));
        }
        out.push(values);
    }
    drop(rows);
    let info = match columns {
        Some(info) => info,
        None => cache.columns(&statement.sql, compiles.load(Ordering::Relaxed), &prepared),
    };
    Ok(RowSet {
        columns: info
            .names
            .iter()
            .map(|name| String::from(&**name))
            .collect(),
        rows: out,
    })
}

/// Run a query and write every row of its result to `sink` (no [`RowSet`] in between), with
/// the column list from the connection's cache, read after the first step.
fn write_rows(
    connection: &mut SqliteConnection,
    statement: &Statement,
    sink: &mut dyn RowSink,
) -> Result<(), rusqlite::Error> {
    let (mut prepared, cache, compiles) = prepare_bound(connection, statement)?;
    let mut rows = prepared.raw_query();
    let Some(first) = rows.next()? else {
        return Ok(());
    };
    // Read after the first step: that is where SQLite recompiles after a schema change.
    let info = cache.current(
        &statement.sql,
        compiles.load(Ordering::Relaxed),
        first.as_ref(),
    );
    write_row(first, info, sink)?;
    while let Some(row) = rows.next()? {
        write_row(row, info, sink)?;
    }
    Ok(())
}

fn write_row(
    row: &rusqlite::Row<'_>,
    info: &ColumnInfo,
    sink: &mut dyn RowSink,
) -> Result<(), rusqlite::Error> {
    sink.start_row(info.names.len());
    for (index, (name, boolean_column)) in info.names.iter().zip(&info.booleans).enumerate() {
        sink.cell(name, cell_to_json(row.get_ref(index)?, *boolean_column));
    }
    sink.end_row();
    Ok(())
}

impl SqlSession for SqliteSession {
    fn query(&mut self, statement: &Statement) -> Result<RowSet, DatabaseError> {
        self.with_deadline(|connection| query_rows(connection, statement))
    }

    fn query_into(
        &mut self,
        statement: &Statement,
        sink: &mut dyn RowSink,
    ) -> Result<(), DatabaseError> {
        self.with_deadline(|connection| write_rows(connection, statement, sink))
    }

    fn execute(&mut self, statement: &Statement) -> Result<u64, DatabaseError> {
        self.with_deadline(|connection| {
            let connection = &connection.connection;
            let mut prepared = connection.prepare_cached(&statement.sql)?;
            bind(&mut prepared, &statement.params)?;
            if prepared.column_count() > 0 {
                // A statement that returns rows (`INSERT … RETURNING`): step through them.
                let mut rows = prepared.raw_query();
                while rows.next()?.is_some() {}
                return Ok(connection.changes());
            }
            prepared.raw_execute().map(|changes| changes as u64)
        })
    }

    fn begin(&mut self) -> Result<(), DatabaseError> {
        self.with_deadline(|connection| connection.connection.execute_batch("BEGIN IMMEDIATE"))
    }

    fn commit(&mut self) -> Result<(), DatabaseError> {
        self.with_deadline(|connection| connection.connection.execute_batch("COMMIT"))
    }

    fn rollback(&mut self) -> Result<(), DatabaseError> {
        let result =
            self.with_deadline(|connection| connection.connection.execute_batch("ROLLBACK"));
        if result.is_err()
            && let Ok(connection) = self.connection()
        {
            connection.broken = true;
        }
        result
    }
}

impl Drop for SqliteSession {
    fn drop(&mut self) {
        if let Some(object) = self.object.take()
            && must_close(&object)
        {
            // Close it instead of lending its state to the next borrower.
            drop(Object::take(object));
        }
    }
}

fn sqlite_code_name(extended: i32) -> String {
    let extended_name = match extended {
        275 => Some("SQLITE_CONSTRAINT_CHECK"),
        787 => Some("SQLITE_CONSTRAINT_FOREIGNKEY"),
        1299 => Some("SQLITE_CONSTRAINT_NOTNULL"),
        1555 => Some("SQLITE_CONSTRAINT_PRIMARYKEY"),
        1811 => Some("SQLITE_CONSTRAINT_TRIGGER"),
        2067 => Some("SQLITE_CONSTRAINT_UNIQUE"),
        2579 => Some("SQLITE_CONSTRAINT_ROWID"),
        517 => Some("SQLITE_BUSY_SNAPSHOT"),
        773 => Some("SQLITE_BUSY_TIMEOUT"),
        262 => Some("SQLITE_LOCKED_SHAREDCACHE"),
        _ => None,
    };
    if let Some(name) = extended_name {
        return name.to_owned();
    }
    let primary = match extended & 0xff {
        1 => "SQLITE_ERROR",
        2 => "SQLITE_INTERNAL",
        3 => "SQLITE_PERM",
        4 => "SQLITE_ABORT",
        5 => "SQLITE_BUSY",
        6 => "SQLITE_LOCKED",
        7 => "SQLITE_NOMEM",
        8 => "SQLITE_READONLY",
        9 => "SQLITE_INTERRUPT",
        10 => "SQLITE_IOERR",
        11 => "SQLITE_CORRUPT",
        13 => "SQLITE_FULL",
        14 => "SQLITE_CANTOPEN",
        15 => "SQLITE_PROTOCOL",
        17 => "SQLITE_SCHEMA",
        18 => "SQLITE_TOOBIG",
        19 => "SQLITE_CONSTRAINT",
        20 => "SQLITE_MISMATCH",
        21 => "SQLITE_MISUSE",
        23 => "SQLITE_AUTH",
        25 => "SQLITE_RANGE",
        26 => "SQLITE_NOTADB",
        _ => "SQLITE_UNKNOWN",
    };
    primary.to_owned()
}

/// Classify a rusqlite error.
pub fn sqlite_error(error: &rusqlite::Error) -> DatabaseError {
    use rusqlite::ffi::ErrorCode;
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let code = sqlite_code_name(failure.extended_code);
            let text = message.clone().unwrap_or_else(|| failure.to_string());
            match failure.code {
                ErrorCode::OperationInterrupted => DatabaseError::timeout("timeout", text),
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                    DatabaseError::sql(code, text, true)
                }
                ErrorCode::CannotOpen | ErrorCode::SystemIoFailure | ErrorCode::DiskFull => {
                    DatabaseError::new(DatabaseErrorKind::Unreachable, code, text)
                }
                _ => DatabaseError::sql(code, text, false),
            }
        }
        rusqlite::Error::MultipleStatement => DatabaseError::sql(
            "multiple_statements",
            "one statement per call: split the SQL into several Execute calls (inside Begin/Commit \
             if they belong together)",
            false,
        ),
        rusqlite::Error::InvalidParameterCount(given, expected) => DatabaseError::parameter(
            format!("the statement takes {expected} parameter(s) but {given} were given"),
        ),
        other => DatabaseError::sql("driver_error", other.to_string(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scl_stdlib::database::SqlParams;
    use serde_json::json;

    thread_local! {
        /// One shared text per SQL text, as the Database module's cache of rewritten SQL hands
        /// them out.
        static TEXTS: std::cell::RefCell<HashMap<String, Arc<str>>> = Default::default();
    }

    fn statement(sql: &str, params: Vec<SqlValue>) -> Statement {
        let sql = TEXTS.with(|texts| {
            Arc::clone(
                texts
                    .borrow_mut()
                    .entry(sql.to_owned())
                    .or_insert_with(|| sql.into()),
            )
        });
        Statement {
            sql,
            params: params.into(),
        }
    }

    fn query(connection: &mut SqliteConnection, sql: &str) -> RowSet {
        query_rows(connection, &statement(sql, Vec::new()))
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
    }

    fn open_in(directory: &tempfile::TempDir) -> SqliteConnection {
        open(&directory.path().join("t.db"), Duration::from_secs(5))
            .unwrap_or_else(|error| panic!("open: {error}"))
    }

    fn run(connection: &SqliteConnection, sql: &str) {
        connection
            .connection
            .execute_batch(sql)
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
    }

    /// What [`write_rows`] hands a sink: a row per row, `(column, value)` per cell.
    #[derive(Default)]
    struct Cells {
        rows: Vec<Vec<(String, Value)>>,
    }

    impl RowSink for Cells {
        fn start_row(&mut self, _width: usize) {
            self.rows.push(Vec::new());
        }

        fn cell(&mut self, column: &Arc<str>, value: Value) {
            if let Some(row) = self.rows.last_mut() {
                row.push((String::from(&**column), value));
            }
        }

        fn end_row(&mut self) {}
    }

    fn cells(connection: &mut SqliteConnection, sql: &str) -> Vec<Vec<(String, Value)>> {
        let mut sink = Cells::default();
        write_rows(connection, &statement(sql, Vec::new()), &mut sink)
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        sink.rows
    }

    fn named(cells: &[(&str, Value)]) -> Vec<(String, Value)> {
        cells
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect()
    }

    #[test]
    fn rows_written_to_a_sink_match_the_row_set_with_unique_names() {
        let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let mut connection = open_in(&directory);
        run(
            &connection,
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, on_duty BOOLEAN); \
             INSERT INTO t VALUES (1, 'a', 1); INSERT INTO t VALUES (2, NULL, 0);",
        );
        let sql = "SELECT id, name AS id, on_duty, 2.5 AS \"\" FROM t ORDER BY t.id";
        let expected = vec![
            named(&[
                ("id", json!(1)),
                ("id_2", json!("a")),
                ("on_duty", json!(true)),
                ("column4", json!(2.5)),
            ]),
            named(&[
                ("id", json!(2)),
                ("id_2", Value::Null),
                ("on_duty", json!(false)),
                ("column4", json!(2.5)),
            ]),
        ];
        // Both orders of first use: the sink's and the row set's share the column cache.
        assert_eq!(cells(&mut connection, sql), expected);
        let rows = query(&mut connection, sql);
        assert_eq!(rows.columns, ["id", "id_2", "on_duty", "column4"]);
        let mut from_row_set = Cells::default();
        rows.write_to(&mut from_row_set);
        assert_eq!(from_row_set.rows, expected);
        assert_eq!(cells(&mut connection, sql), expected);
        assert!(cells(&mut connection, "SELECT * FROM t WHERE id = 9").is_empty());
    }

    #[test]
    fn rows_written_to_a_sink_follow_schema_changes() {
        let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let mut connection = open_in(&directory);
        run(
            &connection,
            "CREATE TABLE t (id INTEGER, flag INTEGER); INSERT INTO t VALUES (1, 1);",
        );
        let sql = "SELECT * FROM t";
        let before = named(&[("id", json!(1)), ("flag", json!(1))]);
        assert_eq!(cells(&mut connection, sql), std::slice::from_ref(&before));
        assert_eq!(cells(&mut connection, sql), [before]);
        run(
            &connection,
            "DROP TABLE t; CREATE TABLE t (key INTEGER, active BOOL); INSERT INTO t VALUES (7, 1);",
        );
        assert_eq!(
            cells(&mut connection, sql),
            [named(&[("key", json!(7)), ("active", json!(true))])]
        );
    }

    #[test]
    fn a_repeated_query_reads_its_columns_once_and_another_text_has_its_own() {
        let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let mut connection = open_in(&directory);
        run(
            &connection,
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, on_duty BOOLEAN); \
             INSERT INTO t VALUES (1, 'a', 1);",
        );
        let first = query(&mut connection, "SELECT * FROM t");
        let hits = connection.state.columns.hits;
        let again = query(&mut connection, "SELECT * FROM t");
        assert_eq!(first, again);
        assert_eq!(again.columns, ["id", "name", "on_duty"]);
        assert_eq!(again.rows, [[json!(1), json!("a"), json!(true)]]);
        assert_eq!(connection.state.columns.hits, hits + 1);
        let other = query(&mut connection, "SELECT name AS label FROM t");
        assert_eq!(other.columns, ["label"]);
        assert_eq!(other.rows, [[json!("a")]]);
        // No rows: the columns all the same, from the cache too.
        let sql = "SELECT id, name FROM t WHERE id = ?1";
        let none = query_rows(&mut connection, &statement(sql, vec![SqlValue::Int(9)]));
        assert_eq!(
            none.ok().map(|rows| rows.columns),
            Some(vec!["id".into(), "name".into()])
        );
        let hits = connection.state.columns.hits;
        let none = query_rows(&mut connection, &statement(sql, vec![SqlValue::Int(9)]));
        assert_eq!(none.ok().map(|rows| rows.rows.len()), Some(0));
        assert_eq!(connection.state.columns.hits, hits + 1);
    }

    #[test]
    fn the_column_list_follows_schema_changes_on_the_same_connection() {
        let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let mut connection = open_in(&directory);
        run(
            &connection,
            "CREATE TABLE t (id INTEGER PRIMARY KEY, flag INTEGER); INSERT INTO t VALUES (1, 1);",
        );
        let sql = "SELECT * FROM t";
        assert_eq!(query(&mut connection, sql).columns, ["id", "flag"]);
        assert_eq!(query(&mut connection, sql).rows, [[json!(1), json!(1)]]);
        run(
            &connection,
            "ALTER TABLE t ADD COLUMN note TEXT DEFAULT 'x'",
        );
        let rows = query(&mut connection, sql);
        assert_eq!(rows.columns, ["id", "flag", "note"]);
        assert_eq!(rows.rows, [[json!(1), json!(1), json!("x")]]);
        // Dropped and made again with other names and a BOOL column: same count of columns.
        run(
            &connection,
            "DROP TABLE t; CREATE TABLE t (key INTEGER, active BOOL, label TEXT); \
             INSERT INTO t VALUES (7, 1, 'y');",
        );
        let rows = query(&mut connection, sql);
        assert_eq!(rows.columns, ["key", "active", "label"]);
        assert_eq!(rows.rows, [[json!(7), json!(true), json!("y")]]);
        assert_eq!(query(&mut connection, sql), rows);
        // Renaming a column keeps the count and the statement text.
        run(&connection, "ALTER TABLE t RENAME COLUMN label TO title");
        assert_eq!(
            query(&mut connection, sql).columns,
            ["key", "active", "title"]
        );
    }

    #[test]
    fn the_column_list_follows_schema_changes_made_by_another_connection() {
        let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let mut connection = open_in(&directory);
        let other = open_in(&directory);
        run(
            &other,
            "CREATE TABLE t (id INTEGER, flag INTEGER); INSERT INTO t VALUES (1, 1);",
        );
        let sql = "SELECT * FROM t";
        assert_eq!(query(&mut connection, sql).rows, [[json!(1), json!(1)]]);
        assert_eq!(query(&mut connection, sql).columns, ["id", "flag"]);
        run(
            &other,
            "DROP TABLE t; CREATE TABLE t (id INTEGER, on_duty BOOLEAN); \
             INSERT INTO t VALUES (2, 0);",
        );
        let rows = query(&mut connection, sql);
        assert_eq!(rows.columns, ["id", "on_duty"]);
        assert_eq!(rows.rows, [[json!(2), json!(false)]]);
    }

    #[test]
    fn the_column_list_follows_a_statement_the_statement_cache_dropped() {
        let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let mut connection = open_in(&directory);
        run(
            &connection,
            "CREATE TABLE t (a INTEGER); INSERT INTO t VALUES (1);",
        );
        let sql = "SELECT * FROM t";
        assert_eq!(query(&mut connection, sql).columns, ["a"]);
        connection.connection.flush_prepared_statement_cache();
        run(
            &connection,
            "DROP TABLE t; CREATE TABLE t (b TEXT); INSERT INTO t VALUES ('z');",
        );
        let rows = query(&mut connection, sql);
        assert_eq!(rows.columns, ["b"]);
        assert_eq!(rows.rows, [[json!("z")]]);
    }

    #[test]
    fn another_text_with_the_same_sql_has_its_own_entry() {
        let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let mut connection = open_in(&directory);
        let sql = "SELECT 1 AS one";
        let shared = statement(sql, Vec::new());
        let own = Statement {
            sql: sql.into(),
            params: SqlParams::new(),
        };
        for statement in [&shared, &own, &shared, &own] {
            let rows = query_rows(&mut connection, statement).ok();
            assert_eq!(rows.map(|rows| rows.columns), Some(vec!["one".to_owned()]));
        }
        assert_eq!(connection.state.columns.entries.len(), 2);
        assert_eq!(connection.state.columns.hits, 2);
    }

    #[test]
    fn the_column_cache_starts_afresh_when_full() {
        let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let mut connection = open_in(&directory);
        for index in 0..=COLUMN_CACHE {
            let rows = query(&mut connection, &format!("SELECT {index} AS c{index}"));
            assert_eq!(rows.columns, [format!("c{index}")]);
        }
        assert_eq!(connection.state.columns.entries.len(), 1);
    }
}
