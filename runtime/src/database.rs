//! # Database connections of a node, and cached writes through store-and-forward
//!
//! The runtime half of the `Database` module (the script-side logic is
//! `scl_stdlib::database`): it reads the deployment's `[databases.NAME]` definitions into one
//! pool per named connection, for the driver each names — [`sqlite`] (rusqlite, embedded),
//! [`postgres`] (tokio-postgres) and [`mssql`] (tiberius) — and connects `CachedWrite` to the
//! store-and-forward buffer ([`SafWriteOutbox`] buffers, [`CachedWriteDeliverer`] retries).
//!
//! What it promises:
//! - **Lazy pools.** Building a node's connections opens nothing: a database that is down at
//!   start-up fails the scripts that use it (or buffers their cached writes), not the node.
//! - **A bad definition fails only its own connection.** [`DatabaseSetup::problems`] lists them
//!   for start-up logs and `scl check`; using such a connection gives its `configuration` error.
//! - **Blocking callers only.** Connectors block the calling thread on the tokio runtime handle
//!   they were given; they are called from script threads and the forwarder's blocking pool,
//!   never from a task on the reactor.
//! - **Secrets stay secret.** URLs (which may hold passwords) are never logged or quoted.

pub mod mssql;
pub mod pool;
pub mod postgres;
pub mod settings;
pub mod sqlite;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use scl_stdlib::database::{
    CachedWriteEntry, Database, DatabaseError, DatabaseErrorKind, Driver, FailedAttempt,
    SqlConnector, SqlSession, WriteOutbox, WriteOutcome,
};
use tokio::runtime::Handle;

use crate::deployment::Deployment;
use crate::saf::{
    Attempt, AttemptOutcome, Category, Deliverer, DeliveryFuture, Message, NewMessage, Outcome,
    RetryPolicy, Saf, SafError,
};

pub use settings::{ConnectionSettings, PoolSettings, Secret};

/// One named connection's connector, by driver.
pub fn connector(
    settings: &ConnectionSettings,
    handle: Handle,
) -> Result<Arc<dyn SqlConnector>, DatabaseError> {
    let connector: Arc<dyn SqlConnector> = match settings.driver {
        Driver::Sqlite => sqlite::SqliteConnector::new(settings, handle)?,
        Driver::Postgres => postgres::PostgresConnector::new(settings, handle)?,
        Driver::Mssql => mssql::MssqlConnector::new(settings, handle)?,
    };
    Ok(connector)
}

/// A connection whose definition cannot be used: every operation fails with its error.
struct Misconfigured(DatabaseError, Driver);

impl SqlConnector for Misconfigured {
    fn driver(&self) -> Driver {
        self.1
    }

    fn checkout(&self) -> Result<Box<dyn SqlSession>, DatabaseError> {
        Err(self.0.clone())
    }
}

/// A node's database connections, ready to become a [`Database`].
pub struct DatabaseSetup {
    /// One connector per defined name (misconfigured ones fail when used).
    pub connectors: BTreeMap<String, Arc<dyn SqlConnector>>,
    /// Retry settings of each connection, for buffered writes.
    pub retry_policies: HashMap<String, RetryPolicy>,
    /// Definitions that cannot be used, with why.
    pub problems: Vec<DatabaseError>,
}

impl DatabaseSetup {
    /// Read every `[databases.NAME]` of the deployment; URLs from `url_env` are read from the
    /// process environment.
    pub fn from_deployment(deployment: &Deployment, handle: &Handle) -> DatabaseSetup {
        DatabaseSetup::from_deployment_with(deployment, handle, &|name| std::env::var(name).ok())
    }

    /// [`DatabaseSetup::from_deployment`] with an explicit environment lookup.
    pub fn from_deployment_with(
        deployment: &Deployment,
        handle: &Handle,
        environment: &dyn Fn(&str) -> Option<String>,
    ) -> DatabaseSetup {
        let base_dir = deployment.base_dir();
        let mut setup = DatabaseSetup {
            connectors: BTreeMap::new(),
            retry_policies: HashMap::new(),
            problems: Vec::new(),
        };
        for (name, definition) in &deployment.file.databases {
            let settings =
                ConnectionSettings::from_definition(name, definition, &base_dir, environment);
            let built = settings.and_then(|settings| {
                setup
                    .retry_policies
                    .insert(name.clone(), settings.retry.clone());
                connector(&settings, handle.clone()).map_err(|e| e.for_connection(name))
            });
            let connector = match built {
                Ok(connector) => connector,
                Err(error) => {
                    let driver = match definition.driver {
                        crate::deployment::DatabaseDriver::Sqlite => Driver::Sqlite,
                        crate::deployment::DatabaseDriver::Postgres => Driver::Postgres,
                        crate::deployment::DatabaseDriver::Mssql => Driver::Mssql,
                    };
                    setup.problems.push(error.clone());
                    Arc::new(Misconfigured(error, driver))
                }
            };
            setup.connectors.insert(name.clone(), connector);
        }
        setup
    }

    /// The module for a site: `CachedWrite` buffers into `saf`. Register
    /// [`CachedWriteDeliverer`] for [`Category::CachedWrite`] on the same buffer's forwarder.
    pub fn into_site_database(self, saf: Saf) -> Database {
        let outbox = SafWriteOutbox {
            saf,
            retry_policies: self.retry_policies,
        };
        Database::new(self.connectors, Some(Arc::new(outbox)))
    }

    /// The module for central: `Connection` only (central has no store-and-forward buffer, so
    /// `CachedWrite` is not available to api scripts — the checker already refuses it there).
    pub fn into_central_database(self) -> Database {
        Database::new(self.connectors, None)
    }
}

/// `CachedWrite`'s side of the store-and-forward buffer: one message per failed write, in
/// category `cached_write`, targeted at the connection name, with the connection's retry
/// settings and the failed first attempt recorded (so it starts as `retrying`).
pub struct SafWriteOutbox {
    saf: Saf,
    retry_policies: HashMap<String, RetryPolicy>,
}

impl SafWriteOutbox {
    /// An outbox over `saf` with each connection's retry settings (others get the default).
    pub fn new(saf: Saf, retry_policies: HashMap<String, RetryPolicy>) -> SafWriteOutbox {
        SafWriteOutbox {
            saf,
            retry_policies,
        }
    }
}

impl WriteOutbox for SafWriteOutbox {
    fn new_id(&self) -> String {
        crate::saf::store::new_id(crate::saf::now_ms())
    }

    fn buffer(
        &self,
        id: &str,
        entry: &CachedWriteEntry,
        first_attempt: &FailedAttempt,
    ) -> Result<(), DatabaseError> {
        let policy = self
            .retry_policies
            .get(&entry.connection)
            .cloned()
            .unwrap_or_else(|| settings::retry_policy(None));
        let attempt = Attempt::new(
            first_attempt.started_at_unix_ms,
            AttemptOutcome::Transient,
            None,
            Some(first_attempt.error.to_string()),
            first_attempt.duration,
        );
        let message = NewMessage::new(
            Category::CachedWrite,
            entry.connection.clone(),
            entry,
            policy,
        )
        .map_err(buffer_error)?
        .with_id(id)
        .with_prior_attempt(attempt, None);
        self.saf
            .enqueue_blocking(message)
            .map(|_| ())
            .map_err(buffer_error)
    }
}

fn buffer_error(error: SafError) -> DatabaseError {
    DatabaseError::new(
        DatabaseErrorKind::Buffer,
        "buffer_failed",
        format!("the write failed and could NOT be buffered: {error}"),
    )
}

/// The store-and-forward deliverer of `cached_write` messages: each attempt runs the stored
/// SQL with its stored values on a pooled connection of the stored name (autocommit), on the
/// blocking pool, and reports transient failures for a retry and permanent ones for parking.
pub struct CachedWriteDeliverer {
    database: Database,
}

impl CachedWriteDeliverer {
    /// A deliverer over a node's connections.
    pub fn new(database: Database) -> CachedWriteDeliverer {
        CachedWriteDeliverer { database }
    }
}

impl Deliverer for CachedWriteDeliverer {
    fn deliver<'a>(&'a self, message: &'a Message) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let entry: CachedWriteEntry = match message.payload_as() {
                Ok(entry) => entry,
                Err(error) => {
                    return Outcome::Permanent {
                        error: format!("not a cached write: {error}"),
                        status: None,
                    };
                }
            };
            let database = self.database.clone();
            let attempt =
                tokio::task::spawn_blocking(move || database.deliver_cached_write(&entry)).await;
            match attempt {
                Ok(WriteOutcome::Written { .. }) => Outcome::Delivered { status: None },
                Ok(WriteOutcome::Transient(error)) => Outcome::Transient {
                    error: error.to_string(),
                    status: None,
                    retry_after: None,
                },
                Ok(WriteOutcome::Permanent(error)) => Outcome::Permanent {
                    error: error.to_string(),
                    status: None,
                },
                Err(join_error) => Outcome::Transient {
                    error: format!("the write attempt did not finish: {join_error}"),
                    status: None,
                    retry_after: Some(Duration::from_secs(1)),
                },
            }
        })
    }
}
