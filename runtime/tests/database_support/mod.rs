//! Shared helpers of the Database integration tests (`database_*.rs`): a tokio runtime for the
//! drivers, a deployment with one connection, a store-and-forward buffer with its forwarder,
//! and waits with deadlines.
//!
//! The tests call the module the way the engine's host functions will: from a plain thread
//! (never a reactor task), through `DatabaseExecution`.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use scl_runtime::database::{CachedWriteDeliverer, DatabaseSetup};
use scl_runtime::deployment::Deployment;
use scl_runtime::saf::{
    Category, Deliverers, Forwarder, ForwarderConfig, Saf, SafConfig, Status, StatusReport,
};
use scl_stdlib::database::{
    ConnectionHandle, Database, DatabaseError, DatabaseExecution, DatabaseLimits,
};
use serde_json::{Map, Value};

/// The value of a variable the test script exports, or a failure that says how to get it.
pub fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!("start the servers with tests/run.sh: {name} is unset"),
    }
}

/// A name no other test (or earlier run) uses: `prefix_<pid>_<nanos>`.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// A runtime, one named connection `Db`, and (for sites) a buffer and its forwarder.
pub struct Harness {
    pub runtime: tokio::runtime::Runtime,
    pub database: Database,
    pub saf: Option<Saf>,
    forwarder: Option<Forwarder>,
    pub directory: tempfile::TempDir,
}

/// The `[databases.Db]` table for a driver and URL, with extra keys.
pub fn database_table(driver: &str, url: &str, extra: &str) -> String {
    format!("[databases.Db]\ndriver = \"{driver}\"\nurl = \"{url}\"\n{extra}\n")
}

impl Harness {
    /// A node with the connections of `toml`, no buffer (like central).
    pub fn central(toml: &str) -> Harness {
        Harness::build(toml, false)
    }

    /// A site node: connections, a buffer in a temporary folder, and a running forwarder.
    pub fn site(toml: &str) -> Harness {
        Harness::build(toml, true)
    }

    fn build(toml: &str, with_buffer: bool) -> Harness {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|error| panic!("tokio runtime: {error}"));
        let directory =
            tempfile::tempdir().unwrap_or_else(|error| panic!("temporary folder: {error}"));
        let path = directory.path().join("deploy.toml");
        let deployment = Deployment::from_source(&path, toml.to_owned())
            .unwrap_or_else(|errors| panic!("deployment: {errors:?}"));
        let setup = DatabaseSetup::from_deployment(&deployment, runtime.handle());
        assert!(setup.problems.is_empty(), "{:?}", setup.problems);
        if !with_buffer {
            return Harness {
                runtime,
                database: setup.into_central_database(),
                saf: None,
                forwarder: None,
                directory,
            };
        }
        let saf = Saf::open(SafConfig::new(directory.path().join("saf")))
            .unwrap_or_else(|error| panic!("store-and-forward: {error}"));
        let database = setup.into_site_database(saf.clone());
        let deliverers = Deliverers::default().with(
            Category::CachedWrite,
            CachedWriteDeliverer::new(database.clone()),
        );
        let forwarder = {
            let _entered = runtime.enter();
            Forwarder::start(saf.clone(), deliverers, ForwarderConfig::default())
                .unwrap_or_else(|error| panic!("forwarder: {error}"))
        };
        Harness {
            runtime,
            database,
            saf: Some(saf),
            forwarder: Some(forwarder),
            directory,
        }
    }

    /// A new execution with no limits.
    pub fn execution(&self) -> DatabaseExecution {
        self.database.execution(DatabaseLimits::default())
    }

    /// Status of a buffered write.
    pub fn status(&self, id: &str) -> Option<StatusReport> {
        self.saf
            .as_ref()
            .and_then(|saf| saf.status(id).ok().flatten())
    }

    /// Wait (at most `limit`) until the buffered write `id` has `status`.
    pub fn wait_for_status(&self, id: &str, status: Status, limit: Duration) -> StatusReport {
        let deadline = Instant::now() + limit;
        loop {
            let report = self.status(id);
            if let Some(report) = &report
                && report.status == status
            {
                return report.clone();
            }
            assert!(
                Instant::now() < deadline,
                "message {id} did not become {} within {limit:?}; last: {report:?}",
                status.as_str()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(forwarder) = self.forwarder.take() {
            self.runtime
                .block_on(forwarder.shutdown(Duration::from_secs(5)));
        }
        if let Some(saf) = self.saf.take() {
            let _ = saf.close();
        }
    }
}

/// Shortcuts over an execution and one handle.
pub struct Session<'a> {
    pub execution: &'a DatabaseExecution,
    pub handle: ConnectionHandle,
}

impl<'a> Session<'a> {
    /// `Database.Connection("Db")` on `execution`.
    pub fn open(execution: &'a DatabaseExecution) -> Session<'a> {
        let handle = execution
            .connection("Db")
            .unwrap_or_else(|error| panic!("Database.Connection: {error}"));
        Session { execution, handle }
    }

    pub fn execute(&self, sql: &str, params: &[Value]) -> i64 {
        self.execution
            .execute(&self.handle, sql, params)
            .unwrap_or_else(|error| panic!("Execute {sql}: {error:?}"))
    }

    pub fn query(&self, sql: &str, params: &[Value]) -> Vec<Map<String, Value>> {
        self.execution
            .query(&self.handle, sql, params)
            .unwrap_or_else(|error| panic!("Query {sql}: {error:?}"))
    }

    pub fn scalar(&self, sql: &str, params: &[Value]) -> Value {
        self.execution
            .scalar(&self.handle, sql, params)
            .unwrap_or_else(|error| panic!("Scalar {sql}: {error:?}"))
    }

    pub fn try_execute(&self, sql: &str, params: &[Value]) -> Result<i64, DatabaseError> {
        self.execution.execute(&self.handle, sql, params)
    }

    pub fn begin(&self) {
        self.execution
            .begin(&self.handle)
            .unwrap_or_else(|error| panic!("Begin: {error:?}"));
    }

    pub fn commit(&self) {
        self.execution
            .commit(&self.handle)
            .unwrap_or_else(|error| panic!("Commit: {error:?}"));
    }

    pub fn rollback(&self) {
        self.execution
            .rollback(&self.handle)
            .unwrap_or_else(|error| panic!("Rollback: {error:?}"));
    }
}

/// Run a control command of a test server script (`bash SCRIPT outage start|stop`).
pub fn server_control(script: &str, action: &str) {
    let status = std::process::Command::new("bash")
        .arg(script)
        .args(["outage", action])
        .status()
        .unwrap_or_else(|error| panic!("running {script}: {error}"));
    assert!(
        status.success(),
        "{script} outage {action} failed: {status}"
    );
}

/// Whether `path` exists (for SQLite files).
pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// A loopback port where nothing listens (bound, then released).
pub fn closed_port() -> u16 {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|error| panic!("bind: {error}"));
    listener
        .local_addr()
        .map(|address| address.port())
        .unwrap_or(1)
}
