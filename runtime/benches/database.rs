//! Benchmark: the round trip of a one-row `Query` through the Database module, against the same
//! query written with the plain driver, on the same pool, per driver.
//!
//! Both sides borrow a connection from the same deadpool pool on every iteration and use the
//! driver's statement cache; the module side is a script's `Query` host call (reading its
//! arguments, placeholder rewriting, parameter conversion, the governor count, JSON values and
//! the script's `list<map<json>>`), the plain side reads the row into a tuple. Rounds of the two alternate so that a machine that changes speed
//! affects both alike. Prints medians and the module's overhead per driver.
//!
//! `cargo bench -p scl-runtime --bench database` — SQLite always; PostgreSQL and MS SQL when
//! `SCL_TEST_POSTGRES_URL` / `SCL_TEST_MSSQL_URL` are set (tests/run.sh exports them).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scl_compiler::{HostObject, Value};
use scl_runtime::database::ConnectionSettings;
use scl_runtime::database::mssql::MssqlConnector;
use scl_runtime::database::postgres::PostgresConnector;
use scl_runtime::database::sqlite::SqliteConnector;
use scl_runtime::deployment::{DatabaseDef, DatabaseDriver};
use scl_stdlib::database::host::CONNECTION_TYPE;
use scl_stdlib::database::{Database, DatabaseLimits, QueryCall, SqlConnector};

/// The allocator of the `scl` binary (`src/main.rs`), which is where scripts run their queries:
/// both sides allocate through it (the module side's result is a few small allocations per row,
/// the plain side's a `String`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUNDS: usize = 20;

fn settings(driver: DatabaseDriver, url: &str, base: &Path) -> ConnectionSettings {
    let definition = DatabaseDef {
        driver,
        url: Some(url.to_owned()),
        url_env: None,
        retry: None,
        pool_size: Some(2),
        timeout_s: Some(30),
    };
    ConnectionSettings::from_definition("Bench", &definition, base, &|_| None)
        .unwrap_or_else(|error| panic!("settings: {error}"))
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Alternate rounds of `module` and `plain`, `per_round` iterations each; per-iteration medians.
fn compare(name: &str, per_round: usize, mut module: impl FnMut(), mut plain: impl FnMut()) {
    for _ in 0..per_round {
        module();
        plain();
    }
    let mut module_samples = Vec::with_capacity(ROUNDS * per_round);
    let mut plain_samples = Vec::with_capacity(ROUNDS * per_round);
    for _ in 0..ROUNDS {
        for _ in 0..per_round {
            let started = Instant::now();
            module();
            module_samples.push(started.elapsed());
        }
        for _ in 0..per_round {
            let started = Instant::now();
            plain();
            plain_samples.push(started.elapsed());
        }
    }
    let module_median = median(&mut module_samples);
    let plain_median = median(&mut plain_samples);
    let overhead = (module_median.as_secs_f64() / plain_median.as_secs_f64() - 1.0) * 100.0;
    println!(
        "{name:<10} one-row Query median: module {:>8.1} µs, plain driver {:>8.1} µs, overhead {overhead:+.1} % ({} samples each)",
        module_median.as_secs_f64() * 1e6,
        plain_median.as_secs_f64() * 1e6,
        module_samples.len()
    );
}

/// The module side: what the host function of a script's `connection.Query(sql, [1])` does
/// with the arguments the engine hands it (reading them, the query, the `list<map<json>>`
/// result); only the engine's own call machinery and its counter are left out.
fn module_query(database: &Database, sql: &str) -> impl FnMut() {
    let execution = database.execution(DatabaseLimits::default());
    let handle = execution
        .connection("Bench")
        .unwrap_or_else(|error| panic!("connection: {error}"));
    let args = vec![
        Value::Host(HostObject::new(CONNECTION_TYPE, handle)),
        Value::String(sql.to_owned()),
        Value::List(vec![Value::Int(1)]),
    ];
    move || {
        let rows = QueryCall::from_args(&args)
            .and_then(|call| call.run(&execution))
            .unwrap_or_else(|error| panic!("query: {error:?}"));
        assert!(matches!(&rows, Value::List(rows) if rows.len() == 1));
    }
}

fn database_of(connector: Arc<dyn SqlConnector>) -> Database {
    let mut connectors: BTreeMap<String, Arc<dyn SqlConnector>> = BTreeMap::new();
    connectors.insert("Bench".into(), connector);
    Database::new(connectors, None)
}

fn bench_sqlite(runtime: &tokio::runtime::Runtime, directory: &Path) {
    let connector = SqliteConnector::new(
        &settings(DatabaseDriver::Sqlite, "sqlite://bench.db", directory),
        runtime.handle().clone(),
    )
    .unwrap_or_else(|error| panic!("sqlite: {error}"));
    {
        let object = connector
            .raw_checkout()
            .unwrap_or_else(|error| panic!("checkout: {error}"));
        object
            .connection()
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS bench (id INTEGER PRIMARY KEY, name TEXT, value REAL); \
                 INSERT OR REPLACE INTO bench VALUES (1, 'pump-1', 21.5);",
            )
            .unwrap_or_else(|error| panic!("setup: {error}"));
    }
    let database = database_of(connector.clone());
    let plain = {
        let connector = connector.clone();
        move || {
            let object = connector
                .raw_checkout()
                .unwrap_or_else(|error| panic!("checkout: {error}"));
            let mut statement = object
                .connection()
                .prepare_cached("SELECT id, name, value FROM bench WHERE id = ?1")
                .unwrap_or_else(|error| panic!("prepare: {error}"));
            let row: (i64, String, f64) = statement
                .query_row([1], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .unwrap_or_else(|error| panic!("query: {error}"));
            assert_eq!(row.0, 1);
        }
    };
    compare(
        "sqlite",
        500,
        module_query(
            &database,
            "SELECT id, name, value FROM bench WHERE id = @p1",
        ),
        plain,
    );
}

fn bench_postgres(runtime: &tokio::runtime::Runtime, url: &str) {
    let connector = PostgresConnector::new(
        &settings(DatabaseDriver::Postgres, url, Path::new(".")),
        runtime.handle().clone(),
    )
    .unwrap_or_else(|error| panic!("postgres: {error}"));
    {
        let object = connector
            .raw_checkout()
            .unwrap_or_else(|error| panic!("checkout: {error}"));
        runtime
            .block_on(object.client().batch_execute(
                "CREATE TABLE IF NOT EXISTS scl_bench (id INT PRIMARY KEY, name TEXT, value DOUBLE PRECISION); \
                 INSERT INTO scl_bench VALUES (1, 'pump-1', 21.5) ON CONFLICT DO NOTHING;",
            ))
            .unwrap_or_else(|error| panic!("setup: {error}"));
    }
    let database = database_of(connector.clone());
    let handle = runtime.handle().clone();
    let plain = {
        let connector = connector.clone();
        move || {
            let mut object = connector
                .raw_checkout()
                .unwrap_or_else(|error| panic!("checkout: {error}"));
            let row = handle
                .block_on(async {
                    let statement = object
                        .prepared("SELECT id, name, value FROM scl_bench WHERE id = $1")
                        .await?;
                    object.client().query_one(&statement, &[&1i32]).await
                })
                .unwrap_or_else(|error| panic!("query: {error}"));
            let (id, _name, _value): (i32, &str, f64) = (row.get(0), row.get(1), row.get(2));
            assert_eq!(id, 1);
        }
    };
    compare(
        "postgres",
        100,
        module_query(
            &database,
            "SELECT id, name, value FROM scl_bench WHERE id = @p1",
        ),
        plain,
    );
}

fn bench_mssql(runtime: &tokio::runtime::Runtime, url: &str) {
    let connector = MssqlConnector::new(
        &settings(DatabaseDriver::Mssql, url, Path::new(".")),
        runtime.handle().clone(),
    )
    .unwrap_or_else(|error| panic!("mssql: {error}"));
    let table = format!("scl_bench_{}", std::process::id());
    {
        let mut object = connector
            .raw_checkout()
            .unwrap_or_else(|error| panic!("checkout: {error}"));
        runtime
            .block_on(async {
                let client = object.client();
                client
                    .execute(format!("CREATE TABLE {table} (id INT PRIMARY KEY, name NVARCHAR(50), value FLOAT)"), &[])
                    .await?;
                client.execute(format!("INSERT INTO {table} VALUES (1, N'pump-1', 21.5)"), &[]).await
            })
            .unwrap_or_else(|error| panic!("setup: {error}"));
    }
    let database = database_of(connector.clone());
    let select_module = format!("SELECT id, name, value FROM {table} WHERE id = @p1");
    let select_plain = format!("SELECT id, name, value FROM {table} WHERE id = @P1");
    let handle = runtime.handle().clone();
    let plain = {
        let connector = connector.clone();
        move || {
            let mut object = connector
                .raw_checkout()
                .unwrap_or_else(|error| panic!("checkout: {error}"));
            let row = handle
                .block_on(async {
                    let mut query = tiberius::Query::new(select_plain.as_str());
                    query.bind(1i64);
                    query.query(object.client()).await?.into_row().await
                })
                .unwrap_or_else(|error| panic!("query: {error}"))
                .unwrap_or_else(|| panic!("no row"));
            let id: Option<i32> = row.get(0);
            let _name: Option<&str> = row.get(1);
            let _value: Option<f64> = row.get(2);
            assert_eq!(id, Some(1));
        }
    };
    compare("mssql", 100, module_query(&database, &select_module), plain);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("tokio: {error}"));
    let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("temporary folder: {error}"));
    bench_sqlite(&runtime, directory.path());
    match std::env::var("SCL_TEST_POSTGRES_URL") {
        Ok(url) => bench_postgres(&runtime, &url),
        Err(_) => println!(
            "postgres   skipped: SCL_TEST_POSTGRES_URL is unset (tests/run.sh starts the server)"
        ),
    }
    match std::env::var("SCL_TEST_MSSQL_URL") {
        Ok(url) => bench_mssql(&runtime, &url),
        Err(_) => println!(
            "mssql      skipped: SCL_TEST_MSSQL_URL is unset (tests/run.sh starts the server)"
        ),
    }
}
