//! The MS SQL driver: tiberius over tokio (TDS 7.3+, rustls), one pool per named connection.
//!
//! Statements go through `sp_executesql` with `@P1…` parameters (the script's `@p1…` are
//! rewritten before they get here). `Begin`/`Commit`/`Rollback` are T-SQL batches
//! (`BEGIN TRANSACTION`, …), which SQL Server keeps open across later batches of the session.
//!
//! **Parameters**: int → `bigint`, float → `float`, bool → `bit`, string → `nvarchar`, null →
//! a null `nvarchar`; SQL Server converts them to the column's type (dates as ISO 8601 text,
//! decimals as text).
//!
//! **Results**: tinyint/smallint/int/bigint → int; real/float → float; bit → bool;
//! char/varchar/nchar/nvarchar/text/xml → string; decimal/numeric (and money) → exact decimal
//! string; uniqueidentifier → string; binary/varbinary → base64 string; datetime,
//! smalldatetime, datetime2 → RFC 3339 read as UTC (`…Z`); datetimeoffset → RFC 3339 in UTC;
//! date → `YYYY-MM-DD`; time → `HH:MM:SS[.fffffff]`.
//!
//! **Transient** failures: I/O and connection errors (refused, reset, routing), timeouts, and
//! server errors 1205 (deadlock victim), 1222 (lock request timeout), -2 (timeout), 4060
//! (database unavailable), 40197, 40501, 40613, 49918–49920, 10928, 10929 (Azure SQL
//! throttling and failover), 233, 10053, 10054, 10060 (transport). Everything else the server
//! reports — syntax (102), unknown object (208), constraint violations (547, 2601, 2627), login
//! failure (18456) — is permanent.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use deadpool::managed::{Manager, Metrics, Object, Pool, RecycleError, RecycleResult};
use scl_stdlib::database::{
    DatabaseError, DatabaseErrorKind, Driver, RowSet, SqlConnector, SqlSession, SqlValue, Statement,
};
use serde_json::Value;
use tiberius::{AuthMethod, Client, ColumnData, Config, EncryptionLevel, FromSql};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::pool::{IDLE_CHECK_AFTER, block, build_pool, checkout, within};
use super::settings::{ConnectionSettings, PoolSettings};

/// The tiberius client over a tokio socket.
pub type MssqlClient = Client<Compat<TcpStream>>;

/// A pooled MS SQL connection.
pub struct MssqlConnection {
    client: MssqlClient,
    broken: bool,
    in_transaction: bool,
}

impl MssqlConnection {
    /// The tiberius client.
    pub fn client(&mut self) -> &mut MssqlClient {
        &mut self.client
    }

    async fn query(&mut self, statement: &Statement) -> Result<RowSet, DatabaseError> {
        let result = query_rows(&mut self.client, statement).await;
        result.map_err(|error| self.failed(&error))
    }

    async fn execute(&mut self, statement: &Statement) -> Result<u64, DatabaseError> {
        let query = bind(statement);
        match query.execute(&mut self.client).await {
            Ok(result) => Ok(result.total()),
            Err(error) => Err(self.failed(&error)),
        }
    }

    async fn batch(&mut self, sql: &str) -> Result<(), DatabaseError> {
        let result = match self.client.simple_query(sql).await {
            Ok(stream) => stream.into_results().await.map(|_| ()),
            Err(error) => Err(error),
        };
        result.map_err(|error| self.failed(&error))
    }

    fn failed(&mut self, error: &tiberius::error::Error) -> DatabaseError {
        let classified = mssql_error(error);
        if classified.kind == DatabaseErrorKind::Unreachable {
            self.broken = true;
        }
        classified
    }
}

fn bind(statement: &Statement) -> tiberius::Query<'_> {
    let mut query = tiberius::Query::new(&*statement.sql);
    for value in &statement.params {
        match value {
            SqlValue::Null => query.bind(Option::<&str>::None),
            SqlValue::Int(int) => query.bind(*int),
            SqlValue::Float(float) => query.bind(*float),
            SqlValue::Bool(flag) => query.bind(*flag),
            SqlValue::Text(text) => query.bind(text.as_str()),
        }
    }
    query
}

/// Run a query on a plain client (shared with the benchmark's comparison path).
pub async fn query_rows(
    client: &mut MssqlClient,
    statement: &Statement,
) -> Result<RowSet, tiberius::error::Error> {
    let mut stream = bind(statement).query(client).await?;
    let columns: Vec<String> = stream
        .columns()
        .await?
        .map(|columns| {
            columns
                .iter()
                .map(|column| column.name().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let rows = stream.into_first_result().await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut values = Vec::with_capacity(columns.len());
        for cell in row {
            values.push(cell_to_json(&cell)?);
        }
        out.push(values);
    }
    Ok(RowSet { columns, rows: out })
}

fn rfc3339_utc(naive: chrono::NaiveDateTime) -> String {
    naive
        .and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// One result cell as JSON (see the module documentation for the mapping).
pub fn cell_to_json(cell: &ColumnData<'static>) -> Result<Value, tiberius::error::Error> {
    let text = |value: Option<String>| value.map_or(Value::Null, Value::String);
    Ok(match cell {
        ColumnData::U8(value) => value.map_or(Value::Null, Value::from),
        ColumnData::I16(value) => value.map_or(Value::Null, Value::from),
        ColumnData::I32(value) => value.map_or(Value::Null, Value::from),
        ColumnData::I64(value) => value.map_or(Value::Null, Value::from),
        ColumnData::F32(value) => value.map_or(Value::Null, |float| {
            scl_stdlib::database::value::float_to_json(f64::from(float))
        }),
        ColumnData::F64(value) => {
            value.map_or(Value::Null, scl_stdlib::database::value::float_to_json)
        }
        ColumnData::Bit(value) => value.map_or(Value::Null, Value::Bool),
        ColumnData::String(value) => text(value.as_ref().map(|s| s.to_string())),
        ColumnData::Guid(value) => text(value.map(|uuid| uuid.to_string())),
        ColumnData::Binary(value) => text(
            value
                .as_ref()
                .map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes)),
        ),
        ColumnData::Numeric(value) => text(value.map(|numeric| numeric.to_string())),
        ColumnData::Xml(value) => text(value.as_ref().map(|xml| xml.to_string())),
        ColumnData::DateTime(_) | ColumnData::SmallDateTime(_) | ColumnData::DateTime2(_) => {
            text(chrono::NaiveDateTime::from_sql(cell)?.map(rfc3339_utc))
        }
        ColumnData::DateTimeOffset(_) => text(
            chrono::DateTime::<chrono::Utc>::from_sql(cell)?
                .map(|instant| instant.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        ),
        ColumnData::Date(_) => {
            text(chrono::NaiveDate::from_sql(cell)?.map(|date| date.format("%Y-%m-%d").to_string()))
        }
        ColumnData::Time(_) => text(
            chrono::NaiveTime::from_sql(cell)?.map(|time| time.format("%H:%M:%S%.f").to_string()),
        ),
    })
}

/// Opens MS SQL connections for the pool.
pub struct MssqlManager {
    config: Config,
}

/// Open one tiberius client, following a server's routing redirect once (Azure SQL).
pub async fn connect(config: &Config) -> Result<MssqlClient, DatabaseError> {
    let first = open_socket_and_login(config.clone()).await;
    match first {
        Err(tiberius::error::Error::Routing { host, port }) => {
            let mut redirected = config.clone();
            redirected.host(&host);
            redirected.port(port);
            open_socket_and_login(redirected)
                .await
                .map_err(|e| mssql_error(&e))
        }
        other => other.map_err(|e| mssql_error(&e)),
    }
}

async fn open_socket_and_login(config: Config) -> Result<MssqlClient, tiberius::error::Error> {
    let tcp = TcpStream::connect(config.get_addr()).await?;
    tcp.set_nodelay(true)?;
    Client::connect(config, tcp.compat_write()).await
}

impl Manager for MssqlManager {
    type Type = MssqlConnection;
    type Error = DatabaseError;

    async fn create(&self) -> Result<MssqlConnection, DatabaseError> {
        Ok(MssqlConnection {
            client: connect(&self.config).await?,
            broken: false,
            in_transaction: false,
        })
    }

    async fn recycle(
        &self,
        connection: &mut MssqlConnection,
        metrics: &Metrics,
    ) -> RecycleResult<DatabaseError> {
        if connection.broken || connection.in_transaction {
            return Err(RecycleError::message(
                "connection was left broken or inside a transaction",
            ));
        }
        if metrics.last_used() > IDLE_CHECK_AFTER {
            connection
                .batch("SELECT 1")
                .await
                .map_err(RecycleError::Backend)?;
        }
        Ok(())
    }
}

/// One named MS SQL connection: its pool.
pub struct MssqlConnector {
    pool: Pool<MssqlManager>,
    handle: Handle,
    settings: PoolSettings,
}

impl MssqlConnector {
    /// The pool for `settings` (connects nothing yet).
    pub fn new(
        settings: &ConnectionSettings,
        handle: Handle,
    ) -> Result<Arc<MssqlConnector>, DatabaseError> {
        let config = mssql_config(settings.url.expose())?;
        Ok(Arc::new(MssqlConnector {
            pool: build_pool(MssqlManager { config }, &settings.pool)?,
            handle,
            settings: settings.pool,
        }))
    }

    /// Borrow a pooled connection (for benchmarks that compare with plain tiberius).
    pub fn raw_checkout(&self) -> Result<Object<MssqlManager>, DatabaseError> {
        checkout(&self.handle, &self.pool, &self.settings)
    }

    /// The pool itself (for async callers such as benchmarks).
    pub fn pool(&self) -> &Pool<MssqlManager> {
        &self.pool
    }
}

/// A tiberius configuration from `mssql://` / `sqlserver://` URLs or an ADO.NET string.
/// Errors never quote the URL (it may hold a password).
pub fn mssql_config(url: &str) -> Result<Config, DatabaseError> {
    let is_url = url.starts_with("mssql://") || url.starts_with("sqlserver://");
    if !is_url {
        return Config::from_ado_string(url).map_err(|_| {
            DatabaseError::configuration(
                "the MS SQL connection string is not valid (use mssql://user:password@host:port/database \
                 or an ADO.NET string such as Server=tcp:host,1433;User Id=…;Password=…)",
            )
        });
    }
    let parsed = url::Url::parse(url).map_err(|error| {
        DatabaseError::configuration(format!("the MS SQL URL is not valid: {error}"))
    })?;
    let decode = |text: &str| {
        percent_decode(text)
            .ok_or_else(|| DatabaseError::configuration("the MS SQL URL has bad %-escapes"))
    };
    let mut config = Config::new();
    config.host(parsed.host_str().unwrap_or("localhost"));
    config.port(parsed.port().unwrap_or(1433));
    let database = parsed.path().trim_start_matches('/');
    if !database.is_empty() {
        config.database(decode(database)?);
    }
    if !parsed.username().is_empty() {
        let password = decode(parsed.password().unwrap_or(""))?;
        config.authentication(AuthMethod::sql_server(decode(parsed.username())?, password));
    }
    config.application_name("scl");
    let mut encryption = EncryptionLevel::Required;
    for (key, value) in parsed.query_pairs() {
        match (key.as_ref(), value.as_ref()) {
            ("encrypt", "off" | "false" | "no" | "disable" | "not_supported") => {
                encryption = EncryptionLevel::NotSupported;
            }
            ("encrypt", "on" | "true" | "yes") => encryption = EncryptionLevel::On,
            ("encrypt", "required" | "strict") => encryption = EncryptionLevel::Required,
            ("trust_server_certificate" | "trustservercertificate", "true" | "yes" | "1") => {
                config.trust_cert()
            }
            ("trust_server_certificate" | "trustservercertificate", _) => {}
            ("application_name", name) => config.application_name(name),
            (key, _) => {
                return Err(DatabaseError::configuration(format!(
                    "unknown MS SQL URL parameter `{key}` (known: encrypt, trust_server_certificate, \
                     application_name, pool_size, statement_timeout_s, connect_timeout_s, pool_timeout_s)"
                )));
            }
        }
    }
    config.encryption(encryption);
    Ok(config)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl SqlConnector for MssqlConnector {
    fn driver(&self) -> Driver {
        Driver::Mssql
    }

    fn checkout(&self) -> Result<Box<dyn SqlSession>, DatabaseError> {
        let object = self.raw_checkout()?;
        Ok(Box::new(MssqlSession {
            object: Some(object),
            handle: self.handle.clone(),
            statement_timeout: self.settings.statement_timeout,
        }))
    }
}

struct MssqlSession {
    object: Option<Object<MssqlManager>>,
    handle: Handle,
    statement_timeout: Duration,
}

impl MssqlSession {
    /// Run one operation with the statement timeout; a connection that timed out mid-stream
    /// is closed, not reused.
    fn run<T>(
        &mut self,
        operation: impl AsyncFnOnce(&mut MssqlConnection) -> Result<T, DatabaseError>,
    ) -> Result<T, DatabaseError> {
        let timeout = self.statement_timeout;
        let connection = self.object.as_deref_mut().ok_or_else(|| {
            DatabaseError::unreachable("connection_lost", "the connection was closed")
        })?;
        if connection.broken {
            return Err(DatabaseError::unreachable(
                "connection_lost",
                "the connection to the server was lost",
            ));
        }
        match block(&self.handle, within(timeout, operation(connection))) {
            Some(result) => result,
            None => {
                connection.broken = true;
                Err(DatabaseError::timeout(
                    "timeout",
                    format!("the statement ran longer than {} s", timeout.as_secs()),
                ))
            }
        }
    }
}

impl SqlSession for MssqlSession {
    fn query(&mut self, statement: &Statement) -> Result<RowSet, DatabaseError> {
        self.run(async |connection| connection.query(statement).await)
    }

    fn execute(&mut self, statement: &Statement) -> Result<u64, DatabaseError> {
        self.run(async |connection| connection.execute(statement).await)
    }

    fn begin(&mut self) -> Result<(), DatabaseError> {
        self.run(async |connection| {
            connection.batch("BEGIN TRANSACTION").await?;
            connection.in_transaction = true;
            Ok(())
        })
    }

    fn commit(&mut self) -> Result<(), DatabaseError> {
        self.run(async |connection| {
            let result = connection.batch("COMMIT TRANSACTION").await;
            connection.in_transaction = false;
            result
        })
    }

    fn rollback(&mut self) -> Result<(), DatabaseError> {
        self.run(async |connection| {
            connection.batch("ROLLBACK TRANSACTION").await?;
            connection.in_transaction = false;
            Ok(())
        })
    }
}

impl Drop for MssqlSession {
    fn drop(&mut self) {
        if let Some(object) = self.object.take()
            && (object.broken || object.in_transaction)
        {
            drop(Object::take(object));
        }
    }
}

fn is_transient_server_error(code: u32) -> bool {
    matches!(
        code,
        1205 | 1222
            | 4060
            | 40197
            | 40501
            | 40613
            | 49918
            | 49919
            | 49920
            | 10928
            | 10929
            | 233
            | 10053
            | 10054
            | 10060
    )
}

/// Error -2 (a client-side timeout reported as a server error), as the u32 tiberius gives.
const TIMEOUT_ERROR: u32 = (-2i32) as u32;

/// Classify a tiberius error.
pub fn mssql_error(error: &tiberius::error::Error) -> DatabaseError {
    use tiberius::error::{Error, IoErrorKind};
    match error {
        Error::Server(token) => {
            let code = token.code();
            let message = token.message().to_owned();
            if code == TIMEOUT_ERROR {
                DatabaseError::timeout("-2", message)
            } else {
                DatabaseError::sql(code.to_string(), message, is_transient_server_error(code))
            }
        }
        Error::Io { kind, message } => match kind {
            IoErrorKind::TimedOut => {
                DatabaseError::timeout("connect_timeout", format!("timed out: {message}"))
            }
            IoErrorKind::UnexpectedEof
            | IoErrorKind::ConnectionReset
            | IoErrorKind::ConnectionAborted
            | IoErrorKind::BrokenPipe => DatabaseError::unreachable(
                "connection_lost",
                format!("the connection to the server was lost: {message}"),
            ),
            _ => DatabaseError::unreachable(
                "unreachable",
                format!("cannot reach the server: {message}"),
            ),
        },
        Error::Routing { host, port } => DatabaseError::unreachable(
            "unreachable",
            format!("the server redirected the connection to {host}:{port} again"),
        ),
        Error::Protocol(message) => {
            DatabaseError::unreachable("connection_lost", format!("TDS protocol error: {message}"))
        }
        Error::Tls(message) => {
            DatabaseError::sql("tls", format!("TLS handshake failed: {message}"), false)
        }
        other => DatabaseError::sql("driver_error", other.to_string(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_configs_without_leaking_passwords() {
        let config = mssql_config("mssql://sa:p%40ss@127.0.0.1:14330/master?encrypt=off");
        let Ok(config) = config else { panic!("config") };
        assert_eq!(config.get_addr(), "127.0.0.1:14330");
        let error = mssql_config("mssql://sa:hunter2@h/db?bogus=1").err();
        assert!(
            error.is_some_and(|e| e.message.contains("bogus") && !e.message.contains("hunter2"))
        );
        let ado = mssql_config(
            "Server=tcp:db.example,1433;User Id=sa;Password=hunter2;TrustServerCertificate=true",
        );
        assert!(ado.is_ok());
    }

    #[test]
    fn server_errors_are_classified() {
        assert!(is_transient_server_error(1205));
        assert!(!is_transient_server_error(2627));
        assert!(!is_transient_server_error(102));
    }
}
