//! The PostgreSQL driver: tokio-postgres, one pool per named connection, each pooled
//! connection keeping its prepared statements (so a repeated query costs one round trip).
//!
//! **Parameters** are sent in PostgreSQL's *text* format and the server converts them to the
//! type it inferred for each `$n`: a script's `"2024-05-01T12:00:00Z"` becomes a `timestamptz`,
//! `"12.50"` a `numeric`, `42` an `int4` or `int8` — the same "the server converts" rule as MS
//! SQL, with no guessing on our side. A value the type cannot take is the server's error
//! (`22P02`, permanent).
//!
//! **Results** (binary format): bool, int2/4/8, oid → int; float4/8 → float; numeric → string
//! (exact, any precision; `NaN`/`Infinity` as text); text, varchar, char, name, citext, enums →
//! string; json/jsonb → the JSON value itself; timestamptz → RFC 3339 UTC (`…Z`); timestamp
//! (no zone) → RFC 3339 read as UTC; date → `YYYY-MM-DD`; time → `HH:MM:SS[.ffffff]`; uuid →
//! string; bytea → base64 string; domains as their base type. Any other type (interval, arrays,
//! geometric, …) is a clear `unsupported_type` error naming the column and suggesting a cast.
//!
//! **Transient** failures: connection errors (refused, reset, closed; SQLSTATE class 08),
//! `40001` serialization failure, `40P01` deadlock, `55P03` lock not available, class 53
//! (insufficient resources, e.g. too many connections), `57P01`–`57P03` (server shutting down
//! or starting); `57014` (statement cancelled by a server timeout) and our own statement
//! timeout are timeouts. Every other SQLSTATE is permanent.
//!
//! TLS is not supported yet (connections use `NoTls`; `sslmode=require` fails to connect).

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::BytesMut;
use deadpool::managed::{Manager, Metrics, Object, Pool, RecycleError, RecycleResult};
use scl_stdlib::database::{
    DatabaseError, DatabaseErrorKind, Driver, RowSet, SqlConnector, SqlSession, SqlValue, Statement,
};
use serde_json::Value;
use tokio::runtime::Handle;
use tokio_postgres::types::{Format, FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls};

use super::pool::{IDLE_CHECK_AFTER, block, build_pool, checkout, within};
use super::settings::{ConnectionSettings, PoolSettings};

/// Prepared statements kept per connection before the cache is emptied.
const STATEMENT_CACHE: usize = 256;

/// A pooled PostgreSQL connection with its prepared statements.
pub struct PostgresConnection {
    client: Client,
    statements: HashMap<String, tokio_postgres::Statement>,
    broken: bool,
    in_transaction: bool,
}

impl PostgresConnection {
    /// The tokio-postgres client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The prepared statement for `sql`, preparing it on first use.
    pub async fn prepared(
        &mut self,
        sql: &str,
    ) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        if self.statements.len() >= STATEMENT_CACHE {
            self.statements.clear();
        }
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    async fn query(&mut self, statement: &Statement) -> Result<RowSet, DatabaseError> {
        let prepared = self
            .prepared(&statement.sql)
            .await
            .map_err(|e| self.failed(&statement.sql, &e))?;
        check_column_types(&prepared)?;
        let params: Vec<PostgresParameter<'_>> =
            statement.params.iter().map(PostgresParameter).collect();
        let references: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = self
            .client
            .query(&prepared, &references)
            .await
            .map_err(|e| self.failed(&statement.sql, &e))?;
        let columns: Vec<String> = prepared
            .columns()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(columns.len());
            for index in 0..columns.len() {
                let cell: PostgresCell = row
                    .try_get(index)
                    .map_err(|e| self.failed(&statement.sql, &e))?;
                values.push(cell.0);
            }
            out.push(values);
        }
        Ok(RowSet { columns, rows: out })
    }

    async fn execute(&mut self, statement: &Statement) -> Result<u64, DatabaseError> {
        let prepared = self
            .prepared(&statement.sql)
            .await
            .map_err(|e| self.failed(&statement.sql, &e))?;
        let params: Vec<PostgresParameter<'_>> =
            statement.params.iter().map(PostgresParameter).collect();
        let references: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        self.client
            .execute(&prepared, &references)
            .await
            .map_err(|e| self.failed(&statement.sql, &e))
    }

    async fn batch(&mut self, sql: &str) -> Result<(), DatabaseError> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| self.failed(sql, &e))
    }

    /// Classify an error; forget the statement (its plan may be stale) and remember a broken
    /// connection.
    fn failed(&mut self, sql: &str, error: &tokio_postgres::Error) -> DatabaseError {
        self.statements.remove(sql);
        let classified = postgres_error(error);
        if classified.kind == DatabaseErrorKind::Unreachable || self.client.is_closed() {
            self.broken = true;
        }
        classified
    }
}

/// Opens PostgreSQL connections for the pool.
pub struct PostgresManager {
    config: tokio_postgres::Config,
}

impl Manager for PostgresManager {
    type Type = PostgresConnection;
    type Error = DatabaseError;

    async fn create(&self) -> Result<PostgresConnection, DatabaseError> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| postgres_error(&e))?;
        // The connection object does the socket I/O; it ends when the client is dropped.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(PostgresConnection {
            client,
            statements: HashMap::new(),
            broken: false,
            in_transaction: false,
        })
    }

    async fn recycle(
        &self,
        connection: &mut PostgresConnection,
        metrics: &Metrics,
    ) -> RecycleResult<DatabaseError> {
        if connection.broken || connection.in_transaction || connection.client.is_closed() {
            return Err(RecycleError::message(
                "connection was left broken or inside a transaction",
            ));
        }
        if metrics.last_used() > IDLE_CHECK_AFTER {
            connection
                .client
                .simple_query("")
                .await
                .map_err(|e| RecycleError::Backend(postgres_error(&e)))?;
        }
        Ok(())
    }
}

/// One named PostgreSQL connection: its pool.
pub struct PostgresConnector {
    pool: Pool<PostgresManager>,
    handle: Handle,
    settings: PoolSettings,
}

impl PostgresConnector {
    /// The pool for `settings` (connects nothing yet).
    pub fn new(
        settings: &ConnectionSettings,
        handle: Handle,
    ) -> Result<Arc<PostgresConnector>, DatabaseError> {
        let mut config: tokio_postgres::Config =
            settings.url.expose().parse().map_err(|error| {
                DatabaseError::configuration(format!("the PostgreSQL URL is not valid: {error}"))
            })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(settings.pool.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("scl");
        }
        Ok(Arc::new(PostgresConnector {
            pool: build_pool(PostgresManager { config }, &settings.pool)?,
            handle,
            settings: settings.pool,
        }))
    }

    /// Borrow a pooled connection (for benchmarks that compare with plain tokio-postgres).
    pub fn raw_checkout(&self) -> Result<Object<PostgresManager>, DatabaseError> {
        checkout(&self.handle, &self.pool, &self.settings)
    }

    /// The pool itself (for async callers such as benchmarks).
    pub fn pool(&self) -> &Pool<PostgresManager> {
        &self.pool
    }
}

impl SqlConnector for PostgresConnector {
    fn driver(&self) -> Driver {
        Driver::Postgres
    }

    fn checkout(&self) -> Result<Box<dyn SqlSession>, DatabaseError> {
        let object = self.raw_checkout()?;
        Ok(Box::new(PostgresSession {
            object: Some(object),
            handle: self.handle.clone(),
            statement_timeout: self.settings.statement_timeout,
        }))
    }
}

struct PostgresSession {
    object: Option<Object<PostgresManager>>,
    handle: Handle,
    statement_timeout: Duration,
}

impl PostgresSession {
    /// Run one operation on the connection with the statement timeout. On a timeout the
    /// server is asked to cancel the statement and the connection is closed, not reused.
    fn run<T>(
        &mut self,
        operation: impl AsyncFnOnce(&mut PostgresConnection) -> Result<T, DatabaseError>,
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
                let cancel = connection.client.cancel_token();
                self.handle.spawn(async move {
                    let _ = cancel.cancel_query(NoTls).await;
                });
                Err(DatabaseError::timeout(
                    "timeout",
                    format!(
                        "the statement ran longer than {} s and was cancelled",
                        timeout.as_secs()
                    ),
                ))
            }
        }
    }
}

impl SqlSession for PostgresSession {
    fn query(&mut self, statement: &Statement) -> Result<RowSet, DatabaseError> {
        self.run(async |connection| connection.query(statement).await)
    }

    fn execute(&mut self, statement: &Statement) -> Result<u64, DatabaseError> {
        self.run(async |connection| connection.execute(statement).await)
    }

    fn begin(&mut self) -> Result<(), DatabaseError> {
        self.run(async |connection| {
            connection.batch("BEGIN").await?;
            connection.in_transaction = true;
            Ok(())
        })
    }

    fn commit(&mut self) -> Result<(), DatabaseError> {
        self.run(async |connection| {
            let result = connection.batch("COMMIT").await;
            connection.in_transaction = false;
            result
        })
    }

    fn rollback(&mut self) -> Result<(), DatabaseError> {
        self.run(async |connection| {
            connection.batch("ROLLBACK").await?;
            connection.in_transaction = false;
            Ok(())
        })
    }
}

impl Drop for PostgresSession {
    fn drop(&mut self) {
        if let Some(object) = self.object.take()
            && (object.broken || object.in_transaction)
        {
            drop(Object::take(object));
        }
    }
}

/// A parameter in text format: the server converts it to the type it inferred.
#[derive(Debug)]
pub struct PostgresParameter<'a>(pub &'a SqlValue);

impl ToSql for PostgresParameter<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        use std::fmt::Write;
        match self.0 {
            SqlValue::Null => return Ok(IsNull::Yes),
            SqlValue::Int(int) => write!(out, "{int}")?,
            SqlValue::Float(float) if float.is_nan() => out.extend_from_slice(b"NaN"),
            SqlValue::Float(float) if float.is_infinite() => {
                out.extend_from_slice(if *float > 0.0 {
                    b"Infinity"
                } else {
                    b"-Infinity"
                });
            }
            SqlValue::Float(float) => write!(out, "{float}")?,
            SqlValue::Bool(flag) => out.extend_from_slice(if *flag { b"true" } else { b"false" }),
            SqlValue::Text(text) => out.extend_from_slice(text.as_bytes()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// The base type of a domain, or the type itself.
fn base_type(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(inner) => base_type(inner),
        _ => ty,
    }
}

fn is_text_like(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::CHAR
    ) || matches!(ty.kind(), Kind::Enum(_))
        || ty.name() == "citext"
}

fn is_supported(ty: &Type) -> bool {
    let ty = base_type(ty);
    is_text_like(ty)
        || matches!(
            *ty,
            Type::BOOL
                | Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::OID
                | Type::FLOAT4
                | Type::FLOAT8
                | Type::NUMERIC
                | Type::JSON
                | Type::JSONB
                | Type::TIMESTAMPTZ
                | Type::TIMESTAMP
                | Type::DATE
                | Type::TIME
                | Type::UUID
                | Type::BYTEA
                | Type::VOID
        )
}

fn check_column_types(statement: &tokio_postgres::Statement) -> Result<(), DatabaseError> {
    match statement
        .columns()
        .iter()
        .find(|column| !is_supported(column.type_()))
    {
        None => Ok(()),
        Some(column) => Err(DatabaseError::new(
            DatabaseErrorKind::NotSupported,
            "unsupported_type",
            format!(
                "column `{}` has type `{}`, which the Database module cannot convert; cast it in \
                 the SQL (for example `{}::text`)",
                column.name(),
                column.type_().name(),
                column.name()
            ),
        )),
    }
}

/// One result cell as JSON (see the module documentation for the mapping).
#[derive(Debug)]
pub struct PostgresCell(pub Value);

type BoxError = Box<dyn StdError + Sync + Send>;

impl<'a> FromSql<'a> for PostgresCell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<PostgresCell, BoxError> {
        let ty = base_type(ty);
        let value = if is_text_like(ty) {
            Value::String(std::str::from_utf8(raw)?.to_owned())
        } else {
            match *ty {
                Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
                Type::INT2 => Value::from(i16::from_sql(ty, raw)?),
                Type::INT4 => Value::from(i32::from_sql(ty, raw)?),
                Type::INT8 => Value::from(i64::from_sql(ty, raw)?),
                Type::OID => Value::from(u32::from_sql(ty, raw)?),
                Type::FLOAT4 => {
                    scl_stdlib::database::value::float_to_json(f64::from(f32::from_sql(ty, raw)?))
                }
                Type::FLOAT8 => scl_stdlib::database::value::float_to_json(f64::from_sql(ty, raw)?),
                Type::NUMERIC => Value::String(numeric_to_string(raw)?),
                Type::JSON | Type::JSONB => serde_json::Value::from_sql(ty, raw)?,
                Type::TIMESTAMPTZ => {
                    let instant = chrono::DateTime::<chrono::Utc>::from_sql(ty, raw)?;
                    Value::String(instant.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                }
                Type::TIMESTAMP => {
                    let naive = chrono::NaiveDateTime::from_sql(ty, raw)?;
                    Value::String(
                        naive
                            .and_utc()
                            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                    )
                }
                Type::DATE => Value::String(
                    chrono::NaiveDate::from_sql(ty, raw)?
                        .format("%Y-%m-%d")
                        .to_string(),
                ),
                Type::TIME => Value::String(
                    chrono::NaiveTime::from_sql(ty, raw)?
                        .format("%H:%M:%S%.f")
                        .to_string(),
                ),
                Type::UUID => Value::String(uuid_to_string(raw)?),
                Type::BYTEA => Value::String(base64::engine::general_purpose::STANDARD.encode(raw)),
                Type::VOID => Value::Null,
                _ => return Err(format!("type `{}` is not supported", ty.name()).into()),
            }
        };
        Ok(PostgresCell(value))
    }

    fn from_sql_null(_ty: &Type) -> Result<PostgresCell, BoxError> {
        Ok(PostgresCell(Value::Null))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

fn uuid_to_string(raw: &[u8]) -> Result<String, BoxError> {
    if raw.len() != 16 {
        return Err("a uuid has 16 bytes".into());
    }
    let hex: String = raw.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// PostgreSQL's binary `numeric` as exact decimal text.
pub fn numeric_to_string(raw: &[u8]) -> Result<String, BoxError> {
    let word = |index: usize| -> Result<u16, BoxError> {
        raw.get(index * 2..index * 2 + 2)
            .map(|bytes| u16::from_be_bytes([bytes[0], bytes[1]]))
            .ok_or_else(|| "numeric value is truncated".into())
    };
    let digit_count = usize::from(word(0)?);
    let weight = i64::from(word(1)? as i16);
    let sign = word(2)?;
    let scale = usize::from(word(3)?);
    match sign {
        0xC000 => return Ok("NaN".to_owned()),
        0xD000 => return Ok("Infinity".to_owned()),
        0xF000 => return Ok("-Infinity".to_owned()),
        _ => {}
    }
    let digits: Vec<u16> = (0..digit_count)
        .map(|index| word(4 + index))
        .collect::<Result<_, _>>()?;
    let digit_at = |position: i64| -> u16 {
        usize::try_from(position)
            .ok()
            .and_then(|position| digits.get(position).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        for position in 0..=weight {
            if position == 0 {
                text.push_str(&digit_at(position).to_string());
            } else {
                text.push_str(&format!("{:04}", digit_at(position)));
            }
        }
    }
    if scale > 0 {
        let mut fraction = String::new();
        let groups = scale.div_ceil(4) as i64;
        for group in 0..groups {
            fraction.push_str(&format!("{:04}", digit_at(weight + 1 + group)));
        }
        fraction.truncate(scale);
        text.push('.');
        text.push_str(&fraction);
    }
    if text == "-0" || (text.starts_with("-") && text[1..].chars().all(|c| c == '0' || c == '.')) {
        text.remove(0);
    }
    Ok(text)
}

fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03"
        )
}

/// Classify a tokio-postgres error.
pub fn postgres_error(error: &tokio_postgres::Error) -> DatabaseError {
    if let Some(database_error) = error.as_db_error() {
        let code = database_error.code().code();
        let mut message = database_error.message().to_owned();
        if let Some(detail) = database_error.detail() {
            message.push_str(" (");
            message.push_str(detail);
            message.push(')');
        }
        if code == "57014" {
            return DatabaseError::timeout(code, message);
        }
        if code.starts_with("08") {
            return DatabaseError::new(DatabaseErrorKind::Unreachable, code, message);
        }
        return DatabaseError::sql(code, message, is_transient_sqlstate(code));
    }
    if error.is_closed() {
        return DatabaseError::unreachable(
            "connection_lost",
            "the connection to the server was lost",
        );
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return if io.kind() == std::io::ErrorKind::TimedOut {
                DatabaseError::timeout("connect_timeout", format!("connecting timed out: {io}"))
            } else {
                DatabaseError::unreachable("unreachable", format!("cannot reach the server: {io}"))
            };
        }
        source = cause.source();
    }
    let text = error.to_string();
    if text.contains("timed out") {
        return DatabaseError::timeout("connect_timeout", text);
    }
    if text.starts_with("error connecting") || text.contains("connection") {
        return DatabaseError::unreachable("unreachable", text);
    }
    DatabaseError::sql("driver_error", text, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(words: &[u16]) -> String {
        let raw: Vec<u8> = words.iter().flat_map(|word| word.to_be_bytes()).collect();
        numeric_to_string(&raw).unwrap_or_else(|error| format!("ERROR {error}"))
    }

    #[test]
    fn numerics_decode_exactly() {
        // 12.50: digits [12, 5000], weight 0, scale 2.
        assert_eq!(numeric(&[2, 0, 0, 2, 12, 5000]), "12.50");
        // -0.0001234: digits [1, 2340], weight -1 (the first group is 10000^-1), scale 7.
        assert_eq!(
            numeric(&[2, (-1i16) as u16, 0x4000, 7, 1, 2340]),
            "-0.0001234"
        );
        // 100000000: digits [1], weight 2, scale 0.
        assert_eq!(numeric(&[1, 2, 0, 0, 1]), "100000000");
        // 0 with scale 3.
        assert_eq!(numeric(&[0, 0, 0, 3]), "0.000");
        assert_eq!(numeric(&[0, 0, 0xC000, 0]), "NaN");
        assert!(numeric(&[3, 0, 0, 0, 1]).starts_with("ERROR"));
    }

    #[test]
    fn uuids_are_hyphenated() {
        let raw: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            uuid_to_string(&raw).ok().as_deref(),
            Some("00010203-0405-0607-0809-0a0b0c0d0e0f")
        );
    }

    #[test]
    fn sqlstates_are_classified() {
        assert!(is_transient_sqlstate("40001"));
        assert!(is_transient_sqlstate("40P01"));
        assert!(is_transient_sqlstate("08006"));
        assert!(!is_transient_sqlstate("23505"));
        assert!(!is_transient_sqlstate("42601"));
    }
}
