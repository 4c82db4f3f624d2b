//! A time-ordered log of JSON rows in LMDB, pruned by age: the storage under
//! central's failures log ([`crate::central::failures`]) and every node's
//! execution log ([`crate::runs`]).
//!
//! Keys are the row's time in Unix milliseconds and a sequence number, both
//! big-endian, so rows are in time order, a time range is a key range, and
//! pruning by age is one range delete. Several processes may open the same
//! folder (central nodes on one machine sharing a data directory, `scl runs`
//! next to a running node): LMDB's lock file coordinates them.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, WithoutTls};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The map is sparse on disk; 1 GiB holds millions of rows.
const MAP_SIZE: usize = 1 << 30;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// RFC 3339 (UTC, milliseconds) of a Unix time in milliseconds.
/// Every run's row has one, so the digits are written directly
/// (`YYYY-MM-DDTHH:MM:SS.mmmZ`) rather than through chrono's formatter,
/// which costs several times more; years outside 0-9999 take chrono's path.
pub fn rfc3339_ms(unix_ms: i64) -> String {
    use chrono::{Datelike as _, Timelike as _};
    let Some(time) = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(unix_ms) else {
        return String::new();
    };
    let Ok(year) = u32::try_from(time.year()) else {
        return time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    };
    if year > 9999 {
        return time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    }
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for slot in out[at..at + width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, time.month());
    put(8, 2, time.day());
    put(11, 2, time.hour());
    put(14, 2, time.minute());
    put(17, 2, time.second());
    put(20, 3, time.timestamp_subsec_millis().min(999));
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads `--since`/`--until` values: RFC 3339 times, or an age such as
/// `30m`, `24h`, `7d` (before now).
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

/// Which rows to read: a time window, newest first, at most `limit`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Only rows at or after this time (Unix milliseconds).
    pub since_ms: Option<i64>,
    /// Only rows before this time (Unix milliseconds).
    pub until_ms: Option<i64>,
    pub limit: usize,
}

/// The open log. `what` names it in errors ("failures log", "execution log").
pub struct TimeLog {
    env: Env<WithoutTls>,
    rows: Database<'static, Bytes, Bytes>,
    sequence: AtomicU64,
    retention: Duration,
    path: PathBuf,
    what: &'static str,
}

impl std::fmt::Debug for TimeLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeLog")
            .field("what", &self.what)
            .field("path", &self.path)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

fn key(unix_ms: i64, sequence: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&(unix_ms.max(0) as u64).to_be_bytes());
    key[8..].copy_from_slice(&sequence.to_be_bytes());
    key
}

impl TimeLog {
    /// Opens (creating if needed) the log in `path`.
    pub fn open(path: &Path, retention: Duration, what: &'static str) -> Result<TimeLog, String> {
        std::fs::create_dir_all(path)
            .map_err(|e| format!("cannot create the {what} folder {}: {e}", path.display()))?;
        let problem = |e: heed::Error| format!("{what} {}: {e}", path.display());
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(MAP_SIZE).max_dbs(2);
        // SAFETY: LMDB memory-maps the data file; it is undefined behaviour if the file is
        // truncated or rewritten by something other than LMDB while mapped, or opened twice
        // by this process. heed refuses a second open in the same process; other processes
        // open it through LMDB too (its lock file coordinates them), and nothing else writes
        // the folder.
        let env = unsafe { options.open(path) }.map_err(problem)?;
        env.clear_stale_readers().map_err(problem)?;
        let wtxn = env.write_txn().map_err(problem)?;
        let rows = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
                let rows = opener.create_database::<Bytes, Bytes>(wtxn, Some("rows"))?;
                Ok(CommitOrAbort::<_, ()>::Commit(rows))
            })
            .map_err(problem)?;
        let CommitOrAbort::Commit(rows) = rows else {
            return Err(format!("{what} {}: not created", path.display()));
        };
        // Rows written in the same millisecond by another process (or before a
        // restart) must not be overwritten: start the sequence past the clock.
        let sequence = AtomicU64::new(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        );
        Ok(TimeLog {
            env,
            rows,
            sequence,
            retention,
            path: path.to_owned(),
            what,
        })
    }

    /// Opens an existing log for reading (the CLI); `None` when nothing was
    /// ever recorded there.
    pub fn open_existing(path: &Path, what: &'static str) -> Result<Option<TimeLog>, String> {
        if !path.join("data.mdb").exists() {
            return Ok(None);
        }
        TimeLog::open(path, Duration::MAX, what).map(Some)
    }

    fn problem(&self, e: heed::Error) -> String {
        format!("{} {}: {e}", self.what, self.path.display())
    }

    /// Adds rows `(unix_ms, row)` in one transaction and prunes rows past the
    /// retention (measured from `now_ms`).
    pub fn append<T: Serialize>(&self, rows: &[(i64, &T)], now_ms: i64) -> Result<(), String> {
        let mut wtxn = self.env.write_txn().map_err(|e| self.problem(e))?;
        for (unix_ms, row) in rows {
            let value = serde_json::to_vec(row).map_err(|e| format!("{}: {e}", self.what))?;
            let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
            self.rows
                .put(&mut wtxn, &key(*unix_ms, sequence), &value)
                .map_err(|e| self.problem(e))?;
        }
        self.prune_in(&mut wtxn, now_ms)
            .map_err(|e| self.problem(e))?;
        wtxn.commit().map_err(|e| self.problem(e))
    }

    /// Deletes rows older than the retention; returns how many.
    pub fn prune(&self, now_ms: i64) -> Result<usize, String> {
        let mut wtxn = self.env.write_txn().map_err(|e| self.problem(e))?;
        let pruned = self
            .prune_in(&mut wtxn, now_ms)
            .map_err(|e| self.problem(e))?;
        wtxn.commit().map_err(|e| self.problem(e))?;
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

    /// Rows in `window` that `keep` accepts, newest first. Rows that do not
    /// decode as `T` (written by another version) are skipped.
    pub fn query<T: DeserializeOwned>(
        &self,
        window: &Window,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, String> {
        let rtxn = self.env.read_txn().map_err(|e| self.problem(e))?;
        let lower = window.since_ms.map(|ms| (ms.max(0) as u64).to_be_bytes());
        let upper = window.until_ms.map(|ms| (ms.max(0) as u64).to_be_bytes());
        let range = (
            match &lower {
                Some(lower) => Bound::Included(lower.as_slice()),
                None => Bound::Unbounded,
            },
            match &upper {
                Some(upper) => Bound::Excluded(upper.as_slice()),
                None => Bound::<&[u8]>::Unbounded,
            },
        );
        let mut out = Vec::new();
        for entry in self
            .rows
            .rev_range(&rtxn, &range)
            .map_err(|e| self.problem(e))?
        {
            if out.len() >= window.limit {
                break;
            }
            let (_, value) = entry.map_err(|e| self.problem(e))?;
            let Ok(row) = serde_json::from_slice::<T>(value) else {
                continue;
            };
            if keep(&row) {
                out.push(row);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_ms_matches_chrono() {
        let chrono_text = |ms: i64| {
            chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default()
        };
        let mut ms: i64 = -62_167_219_200_000 - 5_000; // just before 0000-01-01
        while ms < 253_402_300_800_000 + 5_000 {
            // past 9999-12-31
            assert_eq!(rfc3339_ms(ms), chrono_text(ms), "{ms}");
            ms += 86_399_999_937;
        }
        for ms in [
            0,
            1,
            999,
            1_000,
            1_763_900_000_123,
            -1,
            -1_001,
            i64::MAX,
            i64::MIN,
        ] {
            assert_eq!(rfc3339_ms(ms), chrono_text(ms), "{ms}");
        }
        assert_eq!(rfc3339_ms(1_763_900_000_123), "2025-11-23T12:13:20.123Z");
    }

    #[test]
    fn since_accepts_times_and_ages() {
        assert_eq!(parse_since("2h", 10_000_000), Ok(10_000_000 - 7_200_000));
        assert_eq!(parse_since("1970-01-01T00:00:01Z", 0), Ok(1000));
        assert!(parse_since("yesterday", 0).is_err());
        assert!(parse_since("5w", 0).is_err());
    }

    #[test]
    fn rows_in_one_millisecond_keep_their_order_and_the_window_bounds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = TimeLog::open(dir.path(), Duration::MAX, "test log").expect("opens");
        let rows: Vec<(i64, String)> = (0..5).map(|i| (1_000 + i / 2, format!("r{i}"))).collect();
        let refs: Vec<(i64, &String)> = rows.iter().map(|(t, r)| (*t, r)).collect();
        log.append(&refs, 1_000).expect("written");
        let all: Vec<String> = log
            .query(
                &Window {
                    since_ms: None,
                    until_ms: None,
                    limit: 10,
                },
                |_| true,
            )
            .expect("read");
        assert_eq!(all, ["r4", "r3", "r2", "r1", "r0"]);
        let middle: Vec<String> = log
            .query(
                &Window {
                    since_ms: Some(1_001),
                    until_ms: Some(1_002),
                    limit: 10,
                },
                |_| true,
            )
            .expect("read");
        assert_eq!(middle, ["r3", "r2"]);
    }
}
