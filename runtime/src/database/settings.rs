//! A named database connection's settings, read from its deployment definition.
//!
//! The URL comes from `url` or from the environment variable `url_env` names (where a password
//! belongs). It is held as a [`Secret`] and never printed: errors say which connection and which
//! key is wrong, never the URL. Pool size and timeouts come from the file keys `pool_size` and
//! `timeout_s`, and may be overridden by query parameters of the URL, which are removed before
//! the driver sees it (so a URL in an environment variable can tune one machine):
//!
//! | URL parameter | file key | default | meaning |
//! | --- | --- | --- | --- |
//! | `pool_size` | `pool_size` | 10 (SQLite 4) | most open connections of this name |
//! | `statement_timeout_s` | `timeout_s` | 30 | longest a statement may run |
//! | `connect_timeout_s` | `timeout_s` | 30 | longest connecting may take |
//! | `pool_timeout_s` | `timeout_s` | 30 | longest to wait for a free pooled connection |
//!
//! URL forms: `sqlite://relative/to/deployment.db`, `sqlite:///absolute/path.db`;
//! `postgres://user:password@host:port/database?sslmode=disable` (any tokio-postgres key);
//! `mssql://user:password@host:port/database?encrypt=off|on|required&trust_server_certificate=true`
//! (also `sqlserver://`), or an ADO.NET connection string
//! (`Server=tcp:host,1433;User Id=sa;Password=…;Database=…;TrustServerCertificate=true`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use scl_stdlib::database::{DatabaseError, Driver};

use crate::deployment::{DatabaseDef, DatabaseDriver, RetryDef};
use crate::saf::RetryPolicy;

/// Retries of a buffered write when the deployment gives no `retry` table: ten, a minute apart
/// (the same default as external systems and notifications).
pub const DEFAULT_MAX_RETRIES: u32 = 10;
/// The wait between retries by default.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(60);
/// Timeouts by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Pool size of server databases by default.
pub const DEFAULT_POOL_SIZE: usize = 10;
/// Pool size of SQLite by default (one writer at a time anyway).
pub const DEFAULT_SQLITE_POOL_SIZE: usize = 4;

/// Text that must never be shown: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret itself, for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Pool size and timeouts of one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most open connections.
    pub size: usize,
    /// Longest a statement may run.
    pub statement_timeout: Duration,
    /// Longest connecting may take.
    pub connect_timeout: Duration,
    /// Longest to wait for a free pooled connection.
    pub pool_timeout: Duration,
}

/// Everything needed to open one named connection's pool.
#[derive(Clone, Debug)]
pub struct ConnectionSettings {
    /// The connection name.
    pub name: String,
    /// The driver.
    pub driver: Driver,
    /// The URL without our pool parameters (still secret: it may hold a password).
    pub url: Secret,
    /// For SQLite: the database file.
    pub sqlite_path: Option<PathBuf>,
    /// Pool size and timeouts.
    pub pool: PoolSettings,
    /// Retries of buffered writes.
    pub retry: RetryPolicy,
}

impl ConnectionSettings {
    /// Read a definition: the URL from `url` or the environment (through `environment`, so
    /// tests need not touch the process environment), paths relative to `base_dir`.
    pub fn from_definition(
        name: &str,
        definition: &DatabaseDef,
        base_dir: &Path,
        environment: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ConnectionSettings, DatabaseError> {
        let fail = |message: String| DatabaseError::configuration(message).for_connection(name);
        let driver = match definition.driver {
            DatabaseDriver::Sqlite => Driver::Sqlite,
            DatabaseDriver::Postgres => Driver::Postgres,
            DatabaseDriver::Mssql => Driver::Mssql,
        };
        let raw_url = match (&definition.url, &definition.url_env) {
            (Some(_), Some(_)) => {
                return Err(fail("give either `url` or `url_env`, not both".to_owned()));
            }
            (Some(url), None) => Secret::new(url.clone()),
            (None, Some(variable)) => match environment(variable) {
                Some(value) if !value.trim().is_empty() => Secret::new(value),
                _ => {
                    return Err(fail(format!(
                        "the environment variable `{variable}` (its `url_env`) is not set"
                    )));
                }
            },
            (None, None) => return Err(fail("needs `url` or `url_env`".to_owned())),
        };
        let defaults = PoolSettings {
            size: definition.pool_size.map(|size| size as usize).unwrap_or(
                if driver == Driver::Sqlite {
                    DEFAULT_SQLITE_POOL_SIZE
                } else {
                    DEFAULT_POOL_SIZE
                },
            ),
            statement_timeout: definition
                .timeout_s
                .map_or(DEFAULT_TIMEOUT, Duration::from_secs),
            connect_timeout: definition
                .timeout_s
                .map_or(DEFAULT_TIMEOUT, Duration::from_secs),
            pool_timeout: definition
                .timeout_s
                .map_or(DEFAULT_TIMEOUT, Duration::from_secs),
        };
        let (url, pool) = split_pool_parameters(raw_url.expose(), defaults).map_err(fail)?;
        if pool.size == 0 {
            return Err(fail("`pool_size` must be at least 1".to_owned()));
        }
        let sqlite_path = match driver {
            Driver::Sqlite => Some(sqlite_path(&url, base_dir).map_err(fail)?),
            _ => None,
        };
        Ok(ConnectionSettings {
            name: name.to_owned(),
            driver,
            url: Secret::new(url),
            sqlite_path,
            pool,
            retry: retry_policy(definition.retry.as_ref()),
        })
    }
}

/// The retry policy of a `retry` table (or the default).
pub fn retry_policy(retry: Option<&RetryDef>) -> RetryPolicy {
    match retry {
        None => RetryPolicy::fixed(DEFAULT_MAX_RETRIES, DEFAULT_RETRY_INTERVAL),
        Some(RetryDef {
            max_retries,
            backoff_s: Some(schedule),
            ..
        }) if !schedule.is_empty() => {
            let delays: Vec<Duration> = schedule.iter().copied().map(Duration::from_secs).collect();
            RetryPolicy::schedule(*max_retries, &delays)
        }
        Some(RetryDef {
            max_retries,
            interval_s,
            ..
        }) => RetryPolicy::fixed(
            *max_retries,
            interval_s.map_or(DEFAULT_RETRY_INTERVAL, Duration::from_secs),
        ),
    }
}

const POOL_PARAMETERS: [&str; 4] = [
    "pool_size",
    "statement_timeout_s",
    "connect_timeout_s",
    "pool_timeout_s",
];

/// Remove our pool parameters from the URL's query (any URL form that has `?`), applying them
/// over `defaults`. Messages never quote the URL.
fn split_pool_parameters(
    url: &str,
    defaults: PoolSettings,
) -> Result<(String, PoolSettings), String> {
    let mut pool = defaults;
    // An ADO.NET connection string has no query; only URLs are searched.
    let is_url = url.contains("://") || url.starts_with("sqlite:");
    let Some((base, query)) = url.split_once('?').filter(|_| is_url) else {
        return Ok((url.to_owned(), pool));
    };
    let mut kept: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !POOL_PARAMETERS.contains(&key) {
            kept.push(pair);
            continue;
        }
        let number: u64 = value
            .parse()
            .map_err(|_| format!("URL parameter `{key}` must be a whole number, not `{value}`"))?;
        match key {
            "pool_size" => pool.size = usize::try_from(number).unwrap_or(usize::MAX),
            "statement_timeout_s" => pool.statement_timeout = Duration::from_secs(number),
            "connect_timeout_s" => pool.connect_timeout = Duration::from_secs(number),
            _ => pool.pool_timeout = Duration::from_secs(number),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, pool))
}

/// `sqlite://relative.db` (relative to the deployment file), `sqlite:///absolute.db`, or
/// `sqlite:relative.db`.
fn sqlite_path(url: &str, base_dir: &Path) -> Result<PathBuf, String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| {
            "a sqlite URL starts with `sqlite://` (sqlite://file.db, sqlite:///abs/path.db)"
                .to_owned()
        })?;
    if rest.is_empty() || rest.contains('?') || rest == ":memory:" {
        return Err(
            "a sqlite URL names a database file (sqlite://file.db); in-memory databases are not \
             supported because every pooled connection would see a different database"
                .to_owned(),
        );
    }
    let path = Path::new(rest);
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(driver: DatabaseDriver, url: &str) -> DatabaseDef {
        DatabaseDef {
            driver,
            url: Some(url.to_owned()),
            url_env: None,
            retry: None,
            pool_size: None,
            timeout_s: Some(7),
        }
    }

    fn no_environment(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn url_parameters_override_file_keys_and_are_removed() {
        let def = definition(
            DatabaseDriver::Postgres,
            "postgres://u:secret@h:5432/db?sslmode=disable&pool_size=3&statement_timeout_s=2",
        );
        let settings =
            ConnectionSettings::from_definition("H", &def, Path::new("/d"), &no_environment);
        let settings = settings.unwrap_or_else(|error| panic!("{error:?}"));
        assert_eq!(
            settings.url.expose(),
            "postgres://u:secret@h:5432/db?sslmode=disable"
        );
        assert_eq!(settings.pool.size, 3);
        assert_eq!(settings.pool.statement_timeout, Duration::from_secs(2));
        assert_eq!(settings.pool.connect_timeout, Duration::from_secs(7));
        assert_eq!(
            settings.retry,
            RetryPolicy::fixed(10, Duration::from_secs(60))
        );
    }

    #[test]
    fn secrets_never_print() {
        let def = definition(
            DatabaseDriver::Postgres,
            "postgres://u:hunter2@h/db?pool_size=x",
        );
        let error =
            ConnectionSettings::from_definition("H", &def, Path::new("/d"), &no_environment).err();
        let text = format!(
            "{error:?} {}",
            error.as_ref().map(ToString::to_string).unwrap_or_default()
        );
        assert!(!text.contains("hunter2"), "{text}");
        let settings = ConnectionSettings::from_definition(
            "H",
            &definition(DatabaseDriver::Postgres, "postgres://u:hunter2@h/db"),
            Path::new("/d"),
            &no_environment,
        );
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn sqlite_paths_are_relative_to_the_deployment() {
        let settings = ConnectionSettings::from_definition(
            "H",
            &definition(DatabaseDriver::Sqlite, "sqlite://data/h.db"),
            Path::new("/plant"),
            &no_environment,
        );
        assert_eq!(
            settings.ok().and_then(|s| s.sqlite_path),
            Some(PathBuf::from("/plant/data/h.db"))
        );
        let absolute = ConnectionSettings::from_definition(
            "H",
            &definition(DatabaseDriver::Sqlite, "sqlite:///var/h.db"),
            Path::new("/plant"),
            &no_environment,
        );
        assert_eq!(
            absolute.ok().and_then(|s| s.sqlite_path),
            Some(PathBuf::from("/var/h.db"))
        );
    }

    #[test]
    fn url_env_must_be_set() {
        let mut def = definition(DatabaseDriver::Postgres, "");
        def.url = None;
        def.url_env = Some("HISTORIAN_URL".into());
        let missing =
            ConnectionSettings::from_definition("H", &def, Path::new("/"), &no_environment).err();
        assert!(missing.is_some_and(|e| e.message.contains("`HISTORIAN_URL`")));
        let present = ConnectionSettings::from_definition("H", &def, Path::new("/"), &|_| {
            Some("postgres://h/db".into())
        });
        assert!(present.is_ok());
    }

    #[test]
    fn retry_tables_become_policies() {
        let schedule = RetryDef {
            max_retries: 3,
            interval_s: None,
            backoff_s: Some(vec![1, 5]),
        };
        assert_eq!(
            retry_policy(Some(&schedule)),
            RetryPolicy::schedule(3, &[Duration::from_secs(1), Duration::from_secs(5)])
        );
        let fixed = RetryDef {
            max_retries: 2,
            interval_s: Some(0),
            backoff_s: None,
        };
        assert_eq!(
            retry_policy(Some(&fixed)),
            RetryPolicy::fixed(2, Duration::ZERO)
        );
    }
}
