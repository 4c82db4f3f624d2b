//! The failures log: every inbound API call that answered 500, kept in LMDB
//! under central's data directory (`{data_dir}/central/failures`), pruned by
//! age. Successful calls are never recorded (seed CD-IA-4).
//!
//! A row is the time, the method, the name of the API key (never the key),
//! the error code, the operator's message (the script error with its kind,
//! code and line) and the duration. Keys are the time in milliseconds and a
//! sequence number, both big-endian, so rows are in time order and pruning by
//! age is one range delete.
//!
//! `GET /admin/failures` reads it while central runs; `scl failures` reads it
//! from the data directory when central is stopped.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, WithoutTls};
use serde::{Deserialize, Serialize};

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
pub struct FailureLog {
    env: Env<WithoutTls>,
    rows: Database<'static, Bytes, Bytes>,
    sequence: AtomicU64,
    retention: Duration,
    path: PathBuf,
}

impl std::fmt::Debug for FailureLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureLog")
            .field("path", &self.path)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

/// The map is sparse on disk; 1 GiB holds millions of rows.
const MAP_SIZE: usize = 1 << 30;
const DEFAULT_LIMIT: usize = 1000;

/// Where a deployment's central keeps its failures log.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join("central").join("failures")
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// RFC 3339 (UTC, milliseconds) of a Unix time in milliseconds.
pub fn rfc3339_ms(unix_ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(unix_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl FailureLog {
    /// Opens (creating if needed) the log in `path`.
    pub fn open(path: &Path, retention: Duration) -> Result<FailureLog, String> {
        std::fs::create_dir_all(path).map_err(|e| {
            format!(
                "cannot create the failures log folder {}: {e}",
                path.display()
            )
        })?;
        let problem = |e: heed::Error| format!("failures log {}: {e}", path.display());
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(MAP_SIZE).max_dbs(2);
        // SAFETY: LMDB memory-maps the data file; it is undefined behaviour if the file is
        // truncated or rewritten by something else while mapped, or opened twice by this
        // process. heed refuses a second open in the same process, and the folder belongs to
        // this central node alone (`scl failures` reads it only when the node is stopped).
        let env = unsafe { options.open(path) }.map_err(problem)?;
        env.clear_stale_readers().map_err(problem)?;
        let wtxn = env.write_txn().map_err(problem)?;
        let rows = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
                let rows = opener.create_database::<Bytes, Bytes>(wtxn, Some("failures"))?;
                Ok(CommitOrAbort::<_, ()>::Commit(rows))
            })
            .map_err(problem)?;
        let CommitOrAbort::Commit(rows) = rows else {
            return Err(format!("failures log {}: not created", path.display()));
        };
        Ok(FailureLog {
            env,
            rows,
            sequence: AtomicU64::new(0),
            retention,
            path: path.to_owned(),
        })
    }

    /// Opens an existing log for reading (`scl failures`); `None` when central
    /// never recorded anything there.
    pub fn open_existing(path: &Path) -> Result<Option<FailureLog>, String> {
        if !path.join("data.mdb").exists() {
            return Ok(None);
        }
        FailureLog::open(path, Duration::MAX).map(Some)
    }

    /// Adds a row (and prunes rows past the retention).
    pub fn record(&self, record: &FailureRecord) -> Result<(), String> {
        let problem = |e: heed::Error| format!("failures log {}: {e}", self.path.display());
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&(record.unix_ms.max(0) as u64).to_be_bytes());
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        key[8..].copy_from_slice(&sequence.to_be_bytes());
        let value = serde_json::to_vec(record).map_err(|e| format!("failures log: {e}"))?;
        let mut wtxn = self.env.write_txn().map_err(problem)?;
        self.rows.put(&mut wtxn, &key, &value).map_err(problem)?;
        self.prune_in(&mut wtxn, record.unix_ms).map_err(problem)?;
        wtxn.commit().map_err(problem)
    }

    /// Deletes rows older than the retention; returns how many.
    pub fn prune(&self, now_ms: i64) -> Result<usize, String> {
        let problem = |e: heed::Error| format!("failures log {}: {e}", self.path.display());
        let mut wtxn = self.env.write_txn().map_err(problem)?;
        let pruned = self.prune_in(&mut wtxn, now_ms).map_err(problem)?;
        wtxn.commit().map_err(problem)?;
        Ok(pruned)
    }

    fn prune_in(&self, wtxn: &mut heed::RwTxn<'_>, now_ms: i64) -> heed::Result<usize> {
        let retention_ms = self.retention.as_millis().min(i64::MAX as u128) as i64;
        let cutoff = now_ms.saturating_sub(retention_ms);
        if cutoff <= 0 {
            return Ok(0);
        }
        let upper = (cutoff as u64).to_be_bytes();
        let range = (Bound::<&[u8]>::Unbounded, Bound::Excluded(upper.as_slice()));
        self.rows.delete_range(wtxn, &range)
    }

    /// Rows matching `query`, newest first.
    pub fn query(&self, query: &FailureQuery) -> Result<Vec<FailureRecord>, String> {
        let problem = |e: heed::Error| format!("failures log {}: {e}", self.path.display());
        let rtxn = self.env.read_txn().map_err(problem)?;
        let lower = query.since_ms.map(|ms| (ms.max(0) as u64).to_be_bytes());
        let range = (
            match &lower {
                Some(lower) => Bound::Included(lower.as_slice()),
                None => Bound::Unbounded,
            },
            Bound::<&[u8]>::Unbounded,
        );
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
        let mut out = Vec::new();
        for entry in self.rows.rev_range(&rtxn, &range).map_err(problem)? {
            if out.len() >= limit {
                break;
            }
            let (_, value) = entry.map_err(problem)?;
            let Ok(record) = serde_json::from_slice::<FailureRecord>(value) else {
                continue;
            };
            if query.method.as_ref().is_some_and(|m| *m != record.method) {
                continue;
            }
            out.push(record);
        }
        Ok(out)
    }
}

/// Reads `--since` values: RFC 3339 times, or an age such as `30m`, `24h`,
/// `7d` (before now).
pub fn parse_since(text: &str, now_ms: i64) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(time.timestamp_millis());
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("`{text}` is neither an RFC 3339 time nor an age like 24h"))?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("`{text}`: the unit of an age is s, m, h or d")),
    };
    Ok(now_ms.saturating_sub(number.saturating_mul(unit_ms)))
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

    #[test]
    fn since_accepts_times_and_ages() {
        assert_eq!(parse_since("2h", 10_000_000), Ok(10_000_000 - 7_200_000));
        assert_eq!(parse_since("1970-01-01T00:00:01Z", 0), Ok(1000));
        assert!(parse_since("yesterday", 0).is_err());
        assert!(parse_since("5w", 0).is_err());
    }
}
