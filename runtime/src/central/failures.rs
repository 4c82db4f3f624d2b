//! The failures log: every inbound API call that answered 500, kept in LMDB
//! under central's data directory (`{data_dir}/central/failures`), pruned by
//! age. Successful calls are never recorded (seed CD-IA-4).
//!
//! A row is the time, the method, the name of the API key (never the key),
//! the error code, the operator's message (the script error with its kind,
//! code and line) and the duration, in a [`TimeLog`].
//!
//! `GET /admin/failures` and `scl failures` (from the data directory) read it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::timelog::{TimeLog, Window};
pub use crate::timelog::{now_ms, parse_since, rfc3339_ms};

/// One failed call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    pub unix_ms: i64,
    pub method: String,
    /// The API key's name from the deployment.
    pub key: String,
    /// The error code the caller got (`script_error`, `timeout`, ...).
    pub code: String,
    /// What went wrong, for operators (the caller got a safe message).
    pub message: String,
    pub duration_ms: u64,
}

/// Which rows to read.
#[derive(Debug, Clone, Default)]
pub struct FailureQuery {
    /// Only rows at or after this time (Unix milliseconds).
    pub since_ms: Option<i64>,
    pub method: Option<String>,
    /// At most this many rows, newest first; default 1,000.
    pub limit: Option<usize>,
}

/// The open failures log.
#[derive(Debug)]
pub struct FailureLog {
    log: TimeLog,
}

const DEFAULT_LIMIT: usize = 1000;
const WHAT: &str = "failures log";

/// Where a deployment's central keeps its failures log.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join("central").join("failures")
}

impl FailureLog {
    /// Opens (creating if needed) the log in `path`.
    pub fn open(path: &Path, retention: Duration) -> Result<FailureLog, String> {
        TimeLog::open(path, retention, WHAT).map(|log| FailureLog { log })
    }

    /// Opens an existing log for reading (`scl failures`); `None` when central
    /// never recorded anything there.
    pub fn open_existing(path: &Path) -> Result<Option<FailureLog>, String> {
        Ok(TimeLog::open_existing(path, WHAT)?.map(|log| FailureLog { log }))
    }

    /// Adds a row (and prunes rows past the retention).
    pub fn record(&self, record: &FailureRecord) -> Result<(), String> {
        self.log.append(&[(record.unix_ms, record)], record.unix_ms)
    }

    /// Deletes rows older than the retention; returns how many.
    pub fn prune(&self, now_ms: i64) -> Result<usize, String> {
        self.log.prune(now_ms)
    }

    /// Rows matching `query`, newest first.
    pub fn query(&self, query: &FailureQuery) -> Result<Vec<FailureRecord>, String> {
        let window = Window {
            since_ms: query.since_ms,
            until_ms: None,
            limit: query.limit.unwrap_or(DEFAULT_LIMIT),
        };
        self.log.query(&window, |record: &FailureRecord| {
            query.method.as_ref().is_none_or(|m| *m == record.method)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(unix_ms: i64, method: &str) -> FailureRecord {
        FailureRecord {
            time: rfc3339_ms(unix_ms),
            unix_ms,
            method: method.into(),
            key: "erp".into(),
            code: "script_error".into(),
            message: "boom".into(),
            duration_ms: 3,
        }
    }

    #[test]
    fn records_queries_and_prunes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let day = 86_400_000;
        let log =
            FailureLog::open(dir.path(), Duration::from_millis(30 * day as u64)).expect("opens");
        let now = now_ms();
        log.record(&row(now - 40 * day, "Old")).expect("written");
        log.record(&row(now - 2 * day, "A")).expect("written");
        log.record(&row(now - day, "B")).expect("written");
        log.record(&row(now, "A")).expect("written");
        let all = log.query(&FailureQuery::default()).expect("read");
        // The 40-day-old row was pruned by the later writes.
        assert_eq!(
            all.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(),
            ["A", "B", "A"]
        );
        let only_a = log
            .query(&FailureQuery {
                method: Some("A".into()),
                since_ms: Some(now - day - 1),
                limit: None,
            })
            .expect("read");
        assert_eq!(only_a.len(), 1);
        assert_eq!(only_a[0].unix_ms, now);
    }
}
