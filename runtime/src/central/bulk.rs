//! Bulk jobs (issue 10, seed 004): many calls of one API method, submitted at
//! once and run in the background.
//!
//! `POST /api/bulk/{method}` takes a JSON array of parameter objects (or JSON
//! lines) and answers `202 {"id", "status": "QUEUED", "total"}` once the job
//! and all its records are on disk. A worker on every central node runs jobs
//! in batches (`[central] bulk_batch_size`, default 200): each record is
//! checked and run like a single call, and each batch's results and the job's
//! counters are committed in one transaction. Job state lives in LMDB under
//! `central/bulk`, so a job survives a restart: the node resumes after the
//! last committed batch (records of a batch cut off by a crash run again —
//! at-least-once per record, like any retried call). Nodes sharing the data
//! directory take jobs through a lease (10 s, renewed as records run), so a
//! job runs on one node at a time and moves on when its node dies.
//!
//! `GET /api/bulk/{id}` → `{"id", "method", "status", "total", "processed",
//! "succeeded", "failed", ...}` with status `QUEUED`, `PROCESSING`,
//! `COMPLETED`, `FAILED` (the job could not run, e.g. its method is gone) or
//! `ABORTED`; `GET /api/bulk/{id}/results?status=failed|succeeded&offset&limit`
//! → per-record results; `POST /api/bulk/{id}/abort`. Only the caller who
//! submitted a job (the same API key or app) sees or aborts it.
//!
//! A finished job (and its records and results) is removed by the worker once
//! it has not changed for `[central] bulk_retention_days` (default 7); its id
//! then answers 404 `unknown_job`. The end of a job emits the webhook event
//! `bulk_job_finished` ([`crate::webhooks`]).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use heed::types::Bytes as RawBytes;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, WithoutTls};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    ApiError, Central, Form, Params, Reply, approved_method, caller, codes, invoke, peer_of,
    read_body, refuse_when_stopping,
};
use crate::timelog::{now_ms, rfc3339_ms};

/// Records of one job at most.
pub const MAX_RECORDS: usize = 1_000_000;
/// How long a node holds a job without renewing its lease (renewed when half
/// of it is gone, between records): the pause before another node takes over
/// the job of a node that died.
const LEASE_MS: i64 = 10_000;
const MAP_SIZE: usize = 8 << 30;

/// A job as stored and as `GET /api/bulk/{id}` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub method: String,
    /// The submitting caller (API key name or `app:NAME`).
    pub caller: String,
    pub status: String,
    pub total: u64,
    pub processed: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub created: String,
    pub updated: String,
    #[serde(default)]
    pub lease_owner: String,
    #[serde(default)]
    pub lease_until_ms: i64,
}

impl Job {
    /// What callers see (not the lease or the caller's name).
    fn public(&self) -> Value {
        json!({
            "id": self.id,
            "method": self.method,
            "status": self.status,
            "total": self.total,
            "processed": self.processed,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "created": self.created,
            "updated": self.updated,
        })
    }

    fn active(&self) -> bool {
        self.status == "QUEUED" || self.status == "PROCESSING"
    }
}

/// One record's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordResult {
    index: u64,
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
}

/// The job store.
pub(crate) struct BulkStore {
    env: Env<WithoutTls>,
    jobs: Database<'static, RawBytes, RawBytes>,
    records: Database<'static, RawBytes, RawBytes>,
    results: Database<'static, RawBytes, RawBytes>,
    /// This node's lease name.
    node: String,
}

fn key(id: &str, index: u64) -> Vec<u8> {
    let mut key = id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

impl BulkStore {
    pub(crate) fn open(data_dir: &Path) -> Result<BulkStore, String> {
        let path = data_dir.join("central").join("bulk");
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let problem = |e: heed::Error| format!("bulk jobs {}: {e}", path.display());
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(MAP_SIZE).max_dbs(4);
        // SAFETY: LMDB maps the data file; it must not be truncated or rewritten by anything
        // but LMDB while mapped, nor opened twice by this process. heed refuses a second open
        // in one process; other central processes open it through LMDB (its lock file
        // coordinates them) and nothing else writes the folder.
        let env = unsafe { options.open(&path) }.map_err(problem)?;
        env.clear_stale_readers().map_err(problem)?;
        let wtxn = env.write_txn().map_err(problem)?;
        let opened = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
                let jobs = opener.create_database(wtxn, Some("jobs"))?;
                let records = opener.create_database(wtxn, Some("records"))?;
                let results = opener.create_database(wtxn, Some("results"))?;
                Ok(CommitOrAbort::<_, ()>::Commit((jobs, records, results)))
            })
            .map_err(problem)?;
        let CommitOrAbort::Commit((jobs, records, results)) = opened else {
            return Err(format!("bulk jobs {}: not created", path.display()));
        };
        let node = format!(
            "{}-{}",
            std::process::id(),
            crate::keys::generate_key().map_err(|e| e.to_string())?
        );
        Ok(BulkStore {
            env,
            jobs,
            records,
            results,
            node,
        })
    }

    fn job(&self, id: &str) -> Result<Option<Job>, String> {
        let rtxn = self.env.read_txn().map_err(|e| e.to_string())?;
        let raw = self
            .jobs
            .get(&rtxn, id.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(raw.and_then(|raw| serde_json::from_slice(raw).ok()))
    }

    fn put_job(&self, wtxn: &mut heed::RwTxn<'_>, job: &Job) -> Result<(), String> {
        let value = serde_json::to_vec(job).map_err(|e| e.to_string())?;
        self.jobs
            .put(wtxn, job.id.as_bytes(), &value)
            .map_err(|e| e.to_string())
    }

    fn create(&self, job: &Job, records: &[Value]) -> Result<(), String> {
        let mut wtxn = self.env.write_txn().map_err(|e| e.to_string())?;
        for (index, record) in records.iter().enumerate() {
            let value = serde_json::to_vec(record).map_err(|e| e.to_string())?;
            self.records
                .put(&mut wtxn, &key(&job.id, index as u64), &value)
                .map_err(|e| e.to_string())?;
        }
        self.put_job(&mut wtxn, job)?;
        wtxn.commit().map_err(|e| e.to_string())
    }

    /// Takes the oldest active job whose lease is free (or ours), renewing it.
    fn claim(&self) -> Result<Option<Job>, String> {
        let now = now_ms();
        let mut wtxn = self.env.write_txn().map_err(|e| e.to_string())?;
        let mut found: Option<Job> = None;
        for entry in self.jobs.iter(&wtxn).map_err(|e| e.to_string())? {
            let (_, raw) = entry.map_err(|e| e.to_string())?;
            let Ok(job) = serde_json::from_slice::<Job>(raw) else {
                continue;
            };
            let free = job.lease_owner == self.node || job.lease_until_ms < now;
            if job.active() && free && found.as_ref().is_none_or(|f| job.created < f.created) {
                found = Some(job);
            }
        }
        let Some(mut job) = found else {
            return Ok(None);
        };
        job.lease_owner = self.node.clone();
        job.lease_until_ms = now + LEASE_MS;
        job.status = "PROCESSING".into();
        job.updated = rfc3339_ms(now);
        self.put_job(&mut wtxn, &job)?;
        wtxn.commit().map_err(|e| e.to_string())?;
        Ok(Some(job))
    }

    fn records(&self, id: &str, from: u64, count: u64) -> Result<Vec<(u64, Value)>, String> {
        let rtxn = self.env.read_txn().map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for index in from..from + count {
            let Some(raw) = self
                .records
                .get(&rtxn, &key(id, index))
                .map_err(|e| e.to_string())?
            else {
                break;
            };
            out.push((index, serde_json::from_slice(raw).unwrap_or(Value::Null)));
        }
        Ok(out)
    }

    /// Loads job `id` in a write transaction, lets `change` edit it (and
    /// write beside it), and stores it when `change` says so; the job as it
    /// then stands.
    fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut heed::RwTxn<'_>, &mut Job) -> Result<bool, String>,
    ) -> Result<Option<Job>, String> {
        let mut wtxn = self.env.write_txn().map_err(|e| e.to_string())?;
        let raw = self
            .jobs
            .get(&wtxn, id.as_bytes())
            .map_err(|e| e.to_string())?;
        let Some(mut job) = raw.and_then(|raw| serde_json::from_slice::<Job>(raw).ok()) else {
            return Ok(None);
        };
        if change(&mut wtxn, &mut job)? {
            job.updated = rfc3339_ms(now_ms());
            self.put_job(&mut wtxn, &job)?;
            wtxn.commit().map_err(|e| e.to_string())?;
        }
        Ok(Some(job))
    }

    fn ours(&self, job: &Job) -> bool {
        job.active() && job.lease_owner == self.node
    }

    /// Commits a batch's results and counters unless the job was aborted or
    /// taken over meanwhile; the job as stored afterwards.
    fn commit_batch(&self, id: &str, results: &[RecordResult]) -> Result<Option<Job>, String> {
        self.update(id, |wtxn, job| {
            if !self.ours(job) {
                return Ok(false);
            }
            for result in results {
                let value = serde_json::to_vec(result).map_err(|e| e.to_string())?;
                self.results
                    .put(wtxn, &key(id, result.index), &value)
                    .map_err(|e| e.to_string())?;
                job.processed += 1;
                if result.status == "succeeded" {
                    job.succeeded += 1;
                } else {
                    job.failed += 1;
                }
            }
            if job.processed >= job.total {
                job.status = "COMPLETED".into();
                job.lease_owner.clear();
            }
            job.lease_until_ms = now_ms() + LEASE_MS;
            Ok(true)
        })
    }

    /// Extends this node's lease on an active job; false when the job is no
    /// longer ours (aborted, finished or taken over).
    fn renew(&self, id: &str) -> Result<bool, String> {
        let mut renewed = false;
        self.update(id, |_, job| {
            renewed = self.ours(job);
            if renewed {
                job.lease_until_ms = now_ms() + LEASE_MS;
            }
            Ok(renewed)
        })?;
        Ok(renewed)
    }

    /// Sets a final status on an active job; the job afterwards.
    fn finish(&self, id: &str, status: &str) -> Result<Option<Job>, String> {
        self.update(id, |_, job| {
            if !job.active() {
                return Ok(false);
            }
            job.status = status.to_owned();
            job.lease_owner.clear();
            Ok(true)
        })
    }

    /// Removes finished jobs (`COMPLETED`, `FAILED`, `ABORTED`) last changed before
    /// `before_ms`, with their records and results; how many jobs went.
    fn prune(&self, before_ms: i64) -> Result<usize, String> {
        let mut wtxn = self.env.write_txn().map_err(|e| e.to_string())?;
        let mut old: Vec<String> = Vec::new();
        for entry in self.jobs.iter(&wtxn).map_err(|e| e.to_string())? {
            let (_, raw) = entry.map_err(|e| e.to_string())?;
            let Ok(job) = serde_json::from_slice::<Job>(raw) else {
                continue;
            };
            let updated_ms = chrono::DateTime::parse_from_rfc3339(&job.updated)
                .map_or(i64::MAX, |t| t.timestamp_millis());
            if !job.active() && updated_ms < before_ms {
                old.push(job.id);
            }
        }
        for id in &old {
            let mut start = id.as_bytes().to_vec();
            start.push(0);
            let mut end = id.as_bytes().to_vec();
            end.push(1);
            let range = (
                std::ops::Bound::Included(start.as_slice()),
                std::ops::Bound::Excluded(end.as_slice()),
            );
            self.records
                .delete_range(&mut wtxn, &range)
                .map_err(|e| e.to_string())?;
            self.results
                .delete_range(&mut wtxn, &range)
                .map_err(|e| e.to_string())?;
            self.jobs
                .delete(&mut wtxn, id.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        wtxn.commit().map_err(|e| e.to_string())?;
        Ok(old.len())
    }

    fn results(
        &self,
        id: &str,
        status: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<RecordResult>, String> {
        let rtxn = self.env.read_txn().map_err(|e| e.to_string())?;
        let mut prefix = id.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        let mut skipped = 0;
        for entry in self
            .results
            .prefix_iter(&rtxn, &prefix)
            .map_err(|e| e.to_string())?
        {
            let (_, raw) = entry.map_err(|e| e.to_string())?;
            let Ok(result) = serde_json::from_slice::<RecordResult>(raw) else {
                continue;
            };
            if status.is_some_and(|s| s != result.status) {
                continue;
            }
            if skipped < offset {
                skipped += 1;
                continue;
            }
            if out.len() >= limit {
                break;
            }
            out.push(result);
        }
        Ok(out)
    }
}

/// Runs the jobs this node can take, batch by batch, until the node stops.
pub(crate) async fn work(central: Arc<Central>, batch_size: usize, retention: Duration) {
    let every = prune_interval(retention);
    let mut next_prune = Instant::now();
    loop {
        if central
            .shutting_down
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        if Instant::now() >= next_prune {
            next_prune = Instant::now() + every;
            let store = Arc::clone(&central);
            let before =
                now_ms().saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
            match tokio::task::spawn_blocking(move || store.bulk.prune(before)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(count)) => {
                    tracing::info!(count, "finished bulk jobs past the retention removed")
                }
                Ok(Err(problem)) => tracing::error!("bulk jobs pruning: {problem}"),
                Err(problem) => tracing::error!("bulk jobs pruning: {problem}"),
            }
        }
        let store = Arc::clone(&central);
        let claimed = tokio::task::spawn_blocking(move || store.bulk.claim()).await;
        let job = match claimed {
            Ok(Ok(Some(job))) => job,
            Ok(Ok(None)) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Ok(Err(problem)) => {
                tracing::error!("bulk jobs: {problem}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(problem) => {
                tracing::error!("bulk jobs: {problem}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        run_job(&central, job, batch_size).await;
    }
}

async fn run_job(central: &Arc<Central>, mut job: Job, batch_size: usize) {
    let Some(method) = central.methods.get(&job.method) else {
        tracing::warn!(job = %job.id, method = %job.method, "bulk job's method is not deployed");
        if let Ok(Some(failed)) = central.bulk.finish(&job.id, "FAILED")
            && failed.status == "FAILED"
        {
            job_finished(central, &failed).await;
        }
        return;
    };
    while job.active() && job.lease_owner == central.bulk.node {
        if central
            .shutting_down
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let records = match central
            .bulk
            .records(&job.id, job.processed, batch_size as u64)
        {
            Ok(records) => records,
            Err(problem) => {
                tracing::error!(job = %job.id, "bulk job records: {problem}");
                return;
            }
        };
        let mut results = Vec::with_capacity(records.len());
        let mut lease_until = job.lease_until_ms;
        for (index, params) in records {
            if now_ms() > lease_until - LEASE_MS / 2 {
                let store = Arc::clone(central);
                let id = job.id.clone();
                match tokio::task::spawn_blocking(move || store.bulk.renew(&id)).await {
                    Ok(Ok(true)) => lease_until = now_ms() + LEASE_MS,
                    _ => return,
                }
            }
            let answer = invoke(
                central,
                &job.caller,
                &job.method,
                method,
                Params::Value(params),
                Instant::now(),
                Form::Value,
            )
            .await
            .map(Reply::into_value);
            // A node that stops mid-batch leaves the batch to the next node
            // (or itself, after the restart) instead of recording 503s.
            if matches!(&answer, Err(error) if error.code == codes::SHUTTING_DOWN) {
                return;
            }
            results.push(match answer {
                Ok(value) => RecordResult {
                    index,
                    status: "succeeded".into(),
                    result: Some(value),
                    error: None,
                },
                Err(error) => RecordResult {
                    index,
                    status: "failed".into(),
                    result: None,
                    error: Some(json!({
                        "httpStatusCode": error.status.as_u16(),
                        "error": error.message,
                        "code": error.code,
                    })),
                },
            });
        }
        let store = Arc::clone(central);
        let id = job.id.clone();
        match tokio::task::spawn_blocking(move || store.bulk.commit_batch(&id, &results)).await {
            Ok(Ok(Some(next))) => job = next,
            Ok(Ok(None)) => return,
            Ok(Err(problem)) => {
                tracing::error!(job = %job.id, "bulk job progress: {problem}");
                return;
            }
            Err(problem) => {
                tracing::error!(job = %job.id, "bulk job progress: {problem}");
                return;
            }
        }
    }
    if job.status == "COMPLETED" {
        tracing::info!(job = %job.id, succeeded = job.succeeded, failed = job.failed, "bulk job completed");
        job_finished(central, &job).await;
    }
}

/// Emits `bulk_job_finished` for a job that just ended. The event id is derived from the job
/// id, so the event is buffered once per job even if two nodes see the end.
async fn job_finished(central: &Arc<Central>, job: &Job) {
    use crate::webhooks::{Event, EventType};
    if !central.webhooks.wants(EventType::BulkJobFinished) {
        return;
    }
    let event = Event::with_stable_id(
        format!("evt_bulk_{}", job.id),
        EventType::BulkJobFinished,
        json!({ "job": job.public() }),
    );
    central.webhooks.emit(&event).await;
}

/// How often the worker looks for finished jobs past the retention: a quarter of the
/// retention, between 1 s and 10 min.
fn prune_interval(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, codes::INVALID_BODY, message)
}

fn storage(problem: String) -> ApiError {
    tracing::error!("bulk jobs: {problem}");
    super::internal()
}

/// The records of a submission: a JSON array of objects, or JSON lines.
fn parse_records(body: &Bytes) -> Result<Vec<Value>, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8"))?;
    let records: Vec<Value> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                codes::INVALID_JSON,
                format!("the body is not a JSON array: {e}"),
            )
        })?
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(number, line)| {
                serde_json::from_str(line).map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        codes::INVALID_JSON,
                        format!("line {}: {e}", number + 1),
                    )
                })
            })
            .collect::<Result<_, _>>()?
    };
    if records.is_empty() || records.len() > MAX_RECORDS {
        return Err(bad(format!(
            "a bulk job holds 1 to {MAX_RECORDS} records, not {}",
            records.len()
        )));
    }
    if let Some(index) = records.iter().position(|r| !r.is_object()) {
        return Err(bad(format!(
            "record {index} is not a JSON object of the method's parameters"
        )));
    }
    Ok(records)
}

/// `POST /api/bulk/{method}`.
pub(crate) async fn submit(
    State(central): State<Arc<Central>>,
    UrlPath(method): UrlPath<String>,
    request: Request,
) -> Response {
    match submit_job(&central, &method, request).await {
        Ok(job) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "id": job.id, "status": job.status, "total": job.total })),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

async fn submit_job(central: &Arc<Central>, name: &str, request: Request) -> Result<Job, ApiError> {
    refuse_when_stopping(central)?;
    let caller = caller(central, request.headers(), peer_of())?;
    approved_method(central, &caller, name)?;
    let body = read_body(request, central.body_read_timeout, central.max_body_bytes)
        .await?
        .ok_or_else(|| bad("the body must hold the records"))?;
    let records = parse_records(&body)?;
    let now = now_ms();
    let job = Job {
        id: format!(
            "bulk-{}",
            crate::keys::generate_key().map_err(|e| storage(e.to_string()))?
        ),
        method: name.to_owned(),
        caller: caller.label().into_owned(),
        status: "QUEUED".into(),
        total: records.len() as u64,
        processed: 0,
        succeeded: 0,
        failed: 0,
        created: rfc3339_ms(now),
        updated: rfc3339_ms(now),
        lease_owner: String::new(),
        lease_until_ms: 0,
    };
    let store = Arc::clone(central);
    let stored = job.clone();
    tokio::task::spawn_blocking(move || store.bulk.create(&stored, &records))
        .await
        .map_err(|e| storage(e.to_string()))?
        .map_err(storage)?;
    Ok(job)
}

/// The job `id` when the request's caller submitted it (404 otherwise, so
/// callers cannot probe other callers' jobs).
fn own_job(central: &Central, request: &Request, id: &str) -> Result<Job, ApiError> {
    refuse_when_stopping(central)?;
    let caller = caller(central, request.headers(), peer_of())?;
    let job = central.bulk.job(id).map_err(storage)?;
    job.filter(|job| *job.caller == *caller.label())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                codes::UNKNOWN_JOB,
                format!("there is no bulk job `{id}`"),
            )
        })
}

/// `GET /api/bulk/{id}`.
pub(crate) async fn status(
    State(central): State<Arc<Central>>,
    UrlPath(id): UrlPath<String>,
    request: Request,
) -> Response {
    match own_job(&central, &request, &id) {
        Ok(job) => axum::Json(job.public()).into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResultsQuery {
    status: Option<String>,
    #[serde(default)]
    offset: usize,
    limit: Option<usize>,
}

/// `GET /api/bulk/{id}/results?status=failed|succeeded&offset=&limit=`.
pub(crate) async fn results(
    State(central): State<Arc<Central>>,
    UrlPath(id): UrlPath<String>,
    query: Result<Query<ResultsQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Response {
    let job = match own_job(&central, &request, &id) {
        Ok(job) => job,
        Err(error) => return error.into_response(),
    };
    let Ok(Query(query)) = query else {
        return super::invalid_query("the query string takes status, offset and limit")
            .into_response();
    };
    if query
        .status
        .as_deref()
        .is_some_and(|s| s != "failed" && s != "succeeded")
    {
        return super::invalid_query("`status` is `failed` or `succeeded`").into_response();
    }
    let limit = query.limit.unwrap_or(1_000).min(10_000);
    match central
        .bulk
        .results(&job.id, query.status.as_deref(), query.offset, limit)
    {
        Ok(rows) => axum::Json(json!({ "id": job.id, "results": rows })).into_response(),
        Err(problem) => storage(problem).into_response(),
    }
}

/// `POST /api/bulk/{id}/abort`: records not yet run are not run.
pub(crate) async fn abort(
    State(central): State<Arc<Central>>,
    UrlPath(id): UrlPath<String>,
    request: Request,
) -> Response {
    let job = match own_job(&central, &request, &id) {
        Ok(job) => job,
        Err(error) => return error.into_response(),
    };
    match central.bulk.finish(&job.id, "ABORTED") {
        Ok(Some(finished)) => {
            if job.active() && finished.status == "ABORTED" {
                job_finished(&central, &finished).await;
            }
            axum::Json(finished.public()).into_response()
        }
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(problem) => storage(problem).into_response(),
    }
}
