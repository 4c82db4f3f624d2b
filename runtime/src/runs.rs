//! The execution log (seed 004, stream A): one row for every script run on a
//! node — api methods on central, instance, alarm and shared scripts on a
//! site — with its status, times, module counters, error and the log lines
//! the script wrote. Kept in a [`TimeLog`] under the node's data directory
//! (`central/runs`, `site-NAME/runs`) and pruned by age
//! (`[execution_log] retention_days`, default 7).
//!
//! Script threads never wait for the disk: [`RunLog::record`] hands the row
//! to a writer thread, which commits whatever has arrived in one transaction.
//! The writer commits at most once per `COMMIT_INTERVAL` (25 ms) while rows
//! keep coming, so a crash loses at most the rows of about the last 25 ms
//! (the log is for diagnostics; deliveries are in the store-and-forward
//! buffer); [`RunLog::flush`] commits at once. When more
//! than [`QUEUE`] rows wait, new ones are dropped and counted, so a runaway
//! trigger cannot grow memory without bound.
//!
//! Read with `GET /admin/runs` (central's admin key; `node=SITE` asks a site)
//! and `scl runs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scl_compiler::{LogLevel, Outcome};
use serde::{Deserialize, Serialize};

use crate::timelog::{TimeLog, Window, now_ms, rfc3339_ms};

/// One script run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// When the run started: RFC 3339, UTC, milliseconds. Not stored: the
    /// log derives it from `unix_ms` when it reads a row (rows written by
    /// earlier versions carry it and keep it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time: String,
    pub unix_ms: i64,
    /// `central` or the site's name.
    pub node: String,
    pub script: String,
    /// `api`, `instance`, `alarm` or `shared`.
    pub kind: String,
    /// What started it: `api` (an inbound call), `call` (`Route.To().Call`),
    /// `interval`, `on_change`, `alarm`, `nested` (`Scripts.Call`/`Shared.Call`).
    pub trigger: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// `SUCCESS`, `FAILURE`, `TIMEOUT` or `LIMIT`.
    pub status: String,
    pub duration_ms: f64,
    pub cpu_ms: f64,
    /// `Database` statements run.
    pub queries: u64,
    /// Rows changed by `Database` statements.
    pub dml_rows: u64,
    /// `ExternalSystem` calls.
    pub callouts: u64,
    /// `Notify` sends.
    pub notifications: u64,
    /// `kind/code at line:column: message` of a run that did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The lines the script logged (`LEVEL message`), at most
    /// `[execution_log] max_log_lines`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
}

/// Where a run came from, for [`RunRecord::from_outcome`].
#[derive(Debug, Clone, Copy)]
pub struct RunSource<'a> {
    pub node: &'a str,
    pub script: &'a str,
    pub kind: &'a str,
    pub trigger: &'a str,
    pub instance: Option<&'a str>,
}

/// The longest logged line kept, in bytes.
const MAX_LINE_BYTES: usize = 1024;

fn counter(outcome: &Outcome, name: &str) -> u64 {
    outcome
        .stats
        .counters
        .iter()
        .filter(|(counter, _)| counter == name)
        .map(|(_, value)| *value)
        .sum()
}

fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

impl RunRecord {
    /// The row for a finished run; `started_ms` is when it started.
    pub fn from_outcome(
        source: RunSource<'_>,
        started_ms: i64,
        outcome: &Outcome,
        max_log_lines: usize,
    ) -> RunRecord {
        let error = outcome.result.as_ref().err().map(|error| {
            let at = match (error.line, error.column) {
                (Some(line), Some(column)) => format!(" at {line}:{column}"),
                _ => String::new(),
            };
            format!("{}/{}{at}: {}", error.kind, error.code, error.message)
        });
        let logs = outcome
            .stats
            .logs
            .iter()
            .take(max_log_lines)
            .map(|line| {
                let level = match line.level {
                    LogLevel::Info => "INFO",
                    LogLevel::Warn => "WARN",
                    LogLevel::Error => "ERROR",
                };
                let mut text = format!("{level} {}", line.message);
                if text.len() > MAX_LINE_BYTES {
                    let mut cut = MAX_LINE_BYTES;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                    text.push('…');
                }
                text
            })
            .collect();
        RunRecord {
            time: String::new(),
            unix_ms: started_ms,
            node: source.node.to_owned(),
            script: source.script.to_owned(),
            kind: source.kind.to_owned(),
            trigger: source.trigger.to_owned(),
            instance: source.instance.map(str::to_owned),
            status: outcome.status().name().to_owned(),
            duration_ms: ms(outcome.stats.duration),
            cpu_ms: ms(outcome.stats.cpu_time),
            queries: counter(outcome, scl_stdlib::database::execution::QUERY_COUNTER),
            dml_rows: counter(outcome, scl_stdlib::database::execution::DML_ROWS_COUNTER),
            callouts: counter(outcome, scl_stdlib::external::host::CALLOUTS),
            notifications: counter(outcome, "notifications"),
            error,
            logs,
        }
    }
}

/// Which runs to read.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub script: Option<String>,
    /// `SUCCESS`, `FAILURE`, `TIMEOUT` or `LIMIT` (any case).
    pub status: Option<String>,
    pub instance: Option<String>,
    /// At most this many rows, newest first; default 100.
    pub limit: Option<usize>,
}

impl RunQuery {
    fn keeps(&self, run: &RunRecord) -> bool {
        self.script.as_ref().is_none_or(|s| *s == run.script)
            && self
                .status
                .as_ref()
                .is_none_or(|s| s.eq_ignore_ascii_case(&run.status))
            && self
                .instance
                .as_ref()
                .is_none_or(|i| run.instance.as_ref() == Some(i))
    }

    /// Reads the admin API's query parameters (`since`, `until`, `script`,
    /// `status`, `instance`, `limit`; `node` is the caller's).
    pub fn from_params<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<RunQuery, String> {
        let mut query = RunQuery::default();
        let now = now_ms();
        for (name, value) in params {
            match name {
                "since" => query.since_ms = Some(crate::timelog::parse_since(value, now)?),
                "until" => query.until_ms = Some(crate::timelog::parse_since(value, now)?),
                "script" => query.script = Some(value.to_owned()),
                "instance" => query.instance = Some(value.to_owned()),
                "status" => {
                    let status = value.to_ascii_uppercase();
                    if !["SUCCESS", "FAILURE", "TIMEOUT", "LIMIT"].contains(&status.as_str()) {
                        return Err(format!(
                            "`status` is SUCCESS, FAILURE, TIMEOUT or LIMIT, not `{value}`"
                        ));
                    }
                    query.status = Some(status);
                }
                "limit" => {
                    query.limit = Some(
                        value
                            .parse()
                            .map_err(|_| "`limit` must be a number".to_owned())?,
                    );
                }
                "node" => {}
                other => return Err(format!("unknown query parameter `{other}`")),
            }
        }
        Ok(query)
    }
}

const DEFAULT_LIMIT: usize = 100;
const WHAT: &str = "execution log";
/// Rows waiting for the writer before new ones are dropped.
pub const QUEUE: usize = 100_000;

enum Job {
    Row(Box<RunRecord>),
    Flush(SyncSender<()>),
}

/// The open execution log of one node.
pub struct RunLog {
    log: Arc<TimeLog>,
    sender: Mutex<Option<SyncSender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    dropped: Arc<AtomicU64>,
    max_log_lines: usize,
}

impl std::fmt::Debug for RunLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLog").field("log", &self.log).finish()
    }
}

/// Where a node keeps its execution log.
pub fn path(node_dir: &Path) -> PathBuf {
    node_dir.join("runs")
}

impl RunLog {
    /// Opens (creating) the log in `path` and starts its writer thread.
    pub fn open(path: &Path, retention: Duration, max_log_lines: usize) -> Result<RunLog, String> {
        let log = Arc::new(TimeLog::open(path, retention, WHAT)?);
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = {
            let log = Arc::clone(&log);
            std::thread::Builder::new()
                .name("scl-runs".into())
                .spawn(move || write_rows(&log, &receiver))
                .map_err(|e| format!("{WHAT}: cannot start its writer: {e}"))?
        };
        Ok(RunLog {
            log,
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            dropped,
            max_log_lines,
        })
    }

    /// Opens an existing log for reading (`scl runs`); `None` when the node
    /// never recorded a run there.
    pub fn open_existing(path: &Path) -> Result<Option<TimeLog>, String> {
        TimeLog::open_existing(path, WHAT)
    }

    /// How many log lines of a run are kept.
    pub fn max_log_lines(&self) -> usize {
        self.max_log_lines
    }

    /// Queues a row for the writer; never blocks.
    pub fn record(&self, run: RunRecord) {
        // `try_send` under the lock (it never blocks) rather than a clone of
        // the sender: no counter traffic on the channel per run.
        let Ok(sender) = self.sender.lock() else {
            return;
        };
        let Some(sender) = sender.as_ref() else {
            return;
        };
        match sender.try_send(Job::Row(Box::new(run))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!("the execution log cannot keep up; rows are being dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Rows dropped because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every row recorded so far is committed.
    pub fn flush(&self) {
        let sender = self.sender.lock().ok().and_then(|s| s.clone());
        let Some(sender) = sender else { return };
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if sender.send(Job::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// Rows matching `query`, newest first.
    pub fn query(&self, query: &RunQuery) -> Result<Vec<RunRecord>, String> {
        read(&self.log, query)
    }

    /// Commits what is queued and stops the writer.
    pub fn close(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

impl Drop for RunLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// Rows of an open log matching `query`, newest first.
pub fn read(log: &TimeLog, query: &RunQuery) -> Result<Vec<RunRecord>, String> {
    let window = Window {
        since_ms: query.since_ms,
        until_ms: query.until_ms,
        limit: query.limit.unwrap_or(DEFAULT_LIMIT),
    };
    let mut rows = log.query(&window, |run: &RunRecord| query.keeps(run))?;
    for row in rows.iter_mut().filter(|row| row.time.is_empty()) {
        row.time = rfc3339_ms(row.unix_ms);
    }
    Ok(rows)
}

/// The writer's pace: at most one commit per this interval while rows keep
/// coming, so a busy node pays one LMDB commit (two disk syncs) per interval
/// instead of one per few runs. A flush commits at once.
const COMMIT_INTERVAL: Duration = Duration::from_millis(25);
/// The most rows one commit takes.
const MAX_BATCH: usize = 5_000;

/// The writer: blocks for the first job, takes whatever else has arrived
/// (up to [`MAX_BATCH`] rows), commits them in one transaction, then lets
/// rows gather for the rest of [`COMMIT_INTERVAL`] unless a flush asked for
/// them. While it sleeps, a script thread's `record` wakes nobody.
fn write_rows(log: &TimeLog, receiver: &Receiver<Job>) {
    while let Ok(first) = receiver.recv() {
        let started = std::time::Instant::now();
        let mut rows = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next {
            match job {
                Job::Row(row) => rows.push(row),
                Job::Flush(done) => flushes.push(done),
            }
            next = if rows.len() < MAX_BATCH {
                receiver.try_recv().ok()
            } else {
                None
            };
        }
        if !rows.is_empty() {
            let batch: Vec<(i64, &RunRecord)> = rows.iter().map(|r| (r.unix_ms, &**r)).collect();
            if let Err(problem) = log.append(&batch, now_ms()) {
                tracing::error!("cannot write {} execution log rows: {problem}", rows.len());
            }
        }
        let flushed = !flushes.is_empty();
        for done in flushes {
            let _ = done.send(());
        }
        if !flushed {
            std::thread::sleep(COMMIT_INTERVAL.saturating_sub(started.elapsed()));
        }
    }
}
