//! # Store-and-forward: a durable outbox on LMDB
//!
//! Everything a site sends "later" — `ExternalSystem.CachedCall`, `Notify.To().Send`,
//! `Database.CachedWrite`, webhooks — is a [`Message`] in this buffer until it is delivered,
//! parked or discarded. One buffer is one LMDB environment in a data directory, owned by one
//! node.
//!
//! What it promises:
//! - **Durable acknowledgement.** [`Saf::enqueue`] returns only after the message is committed
//!   (fsynced) to disk. One writer thread group-commits whatever producers queued meanwhile, so
//!   concurrent producers share an fsync ([`writer`]).
//! - **No size cap.** The LMDB map starts at [`SafConfig::initial_map_size`] and grows when full;
//!   only the disk bounds the buffer. A full disk fails the whole batch with
//!   [`SafError::DiskFull`] and writes nothing of it.
//! - **At-least-once delivery with a stable id.** The [`Forwarder`] attempts every due message
//!   through the [`Deliverer`] of its category, records each attempt, and reschedules on its own
//!   retry policy, or parks it. An attempt in flight when the process dies is simply due again
//!   after restart, with the same id.
//! - **Status by id** with a point lookup ([`Saf::status`]), listing, operator retry/discard,
//!   export to JSON lines and import back ([`Saf::list`], [`Saf::retry`], [`Saf::discard`],
//!   [`Saf::export_jsonl`], [`Saf::import_jsonl`]).
//!
//! Manual retry (from parked) puts a message back to `pending`, due at once, with a fresh
//! budget of `1 + max_retries` attempts; the attempt count and history continue.
//!
//! The storage layout is described in [`store`].

mod error;
mod forwarder;
mod model;
mod record;
pub mod replication;
pub mod store;
pub mod writer;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

pub use error::SafError;
pub use forwarder::{
    Deliverer, Deliverers, DeliveryFuture, DetailedDeliveryFuture, Forwarder, ForwarderConfig,
    Outcome, ShutdownReport,
};
pub use model::{
    Attempt, AttemptOutcome, Backoff, Category, Enqueued, ListFilter, MAX_ERROR_BYTES,
    MAX_ID_BYTES, MAX_RESPONSE_BODY_BYTES, MAX_TARGET_BYTES, Message, NewMessage, PriorAttempt,
    RetryPolicy, Selector, Status, StatusReport, UnixMillis, now_ms, shorten, shorten_to,
};

use store::{IndexTable, ScanPosition, Shared, encode_message, index_key, validate_key_part};
use tokio::sync::oneshot;
use writer::{Command, CommandKind, Reply, WriterConfig};

/// Settings of one buffer.
#[derive(Debug, Clone)]
pub struct SafConfig {
    /// The directory of the LMDB environment (created if missing).
    pub data_dir: PathBuf,
    /// The map size to start with; it grows on demand. Default 64 MiB.
    pub initial_map_size: usize,
    /// Largest payload accepted, in bytes. Default 16 MiB.
    pub max_payload_bytes: usize,
    /// How long delivered and discarded records stay queryable. Default 7 days.
    pub retention: Duration,
    /// Most commands in one group commit. Default 4,096.
    pub max_batch: usize,
    /// Attempts kept in a message's history (the count keeps going). Default 50.
    pub history_limit: usize,
}

impl SafConfig {
    /// Defaults for a buffer in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> SafConfig {
        SafConfig {
            data_dir: data_dir.into(),
            initial_map_size: 64 << 20,
            max_payload_bytes: 16 << 20,
            retention: Duration::from_secs(7 * 24 * 3600),
            max_batch: 4096,
            history_limit: 50,
        }
    }
}

/// Counts and sizes of a buffer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SafStats {
    /// Pending and retrying messages.
    pub queued: u64,
    /// Parked messages.
    pub parked: u64,
    /// Delivered records still retained.
    pub delivered: u64,
    /// Discarded records still retained.
    pub discarded: u64,
    /// Current LMDB map size in bytes.
    pub map_size: u64,
    /// Size of the data file in bytes.
    pub file_size: u64,
}

/// What [`Saf::import_jsonl`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportReport {
    /// Messages written.
    pub imported: usize,
    /// Lines whose id was already in the buffer (left untouched).
    pub skipped_existing: usize,
}

struct Inner {
    shared: Arc<Shared>,
    sender: RwLock<Option<Sender<Command>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    config: SafConfig,
}

/// A handle on one store-and-forward buffer. Cheap to clone; every clone talks to the same
/// writer thread.
#[derive(Clone)]
pub struct Saf {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Saf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saf")
            .field("data_dir", &self.inner.config.data_dir)
            .finish()
    }
}

impl Saf {
    /// Open the buffer (creating it if needed) and start its writer thread. Every pending and
    /// retrying message on disk is due again as soon as a [`Forwarder`] runs.
    pub fn open(config: SafConfig) -> Result<Saf, SafError> {
        let shared = Arc::new(Shared::open(&config.data_dir, config.initial_map_size)?);
        let (sender, receiver) = std::sync::mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        let writer_config = WriterConfig {
            max_batch: config.max_batch.max(1),
            history_limit: config.history_limit.max(1),
        };
        let writer = std::thread::Builder::new()
            .name("saf-writer".to_owned())
            .spawn(move || writer::run(writer_shared, receiver, writer_config))
            .map_err(|source| SafError::Io {
                path: config.data_dir.clone(),
                source,
            })?;
        Ok(Saf {
            inner: Arc::new(Inner {
                shared,
                sender: RwLock::new(Some(sender)),
                writer: Mutex::new(Some(writer)),
                config,
            }),
        })
    }

    /// The buffer's settings.
    pub fn config(&self) -> &SafConfig {
        &self.inner.config
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.inner.config.data_dir
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    pub(crate) fn shared_arc(&self) -> Arc<Shared> {
        Arc::clone(&self.inner.shared)
    }

    /// Applies raw table writes received from the active node of a replicated site in one
    /// durable group commit ([`replication`]). Blocks the calling (plain) thread.
    pub(crate) fn apply_replicated(
        &self,
        clear: bool,
        ops: Vec<replication::Op>,
    ) -> Result<(), SafError> {
        match block_on(self.call(CommandKind::Replicate { clear, ops }))? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// A big-endian u64 of the `meta` table (replication position and epoch).
    pub(crate) fn meta_u64(&self, key: &[u8]) -> Result<Option<u64>, SafError> {
        let reader = self.shared().read()?;
        let value = self
            .shared()
            .tables
            .meta
            .get(&reader.txn, key)
            .map_err(|e| self.shared().heed_error(e))?;
        Ok(value
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map(u64::from_be_bytes))
    }

    /// Writes a big-endian u64 to the `meta` table, durably.
    pub(crate) fn set_meta_u64(&self, key: &[u8], value: u64) -> Result<(), SafError> {
        let op = replication::Op {
            table: store::TableId::Meta,
            key: key.to_vec(),
            value: Some(value.to_be_bytes().to_vec()),
        };
        self.apply_replicated(false, vec![op])
    }

    /// The replication epoch of this buffer (0 before any takeover).
    pub fn epoch(&self) -> Result<u64, SafError> {
        Ok(self.meta_u64(replication::META_EPOCH)?.unwrap_or(0))
    }

    /// Whether this buffer holds a complete replica: a snapshot from an active node was
    /// applied in full (a buffer that never was a replica answers false).
    pub fn replica_complete(&self) -> Result<bool, SafError> {
        let reader = self.shared().read()?;
        let value = self
            .shared()
            .tables
            .meta
            .get(&reader.txn, replication::META_REPLICA)
            .map_err(|e| self.shared().heed_error(e))?;
        Ok(value == Some(b"complete".as_slice()))
    }

    fn send(
        &self,
        kind: CommandKind,
    ) -> Result<oneshot::Receiver<Result<Reply, SafError>>, SafError> {
        let (reply, receiver) = oneshot::channel();
        let guard = self
            .inner
            .sender
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let sender = guard.as_ref().ok_or(SafError::Closed)?;
        sender
            .send(Command { kind, reply })
            .map_err(|_| SafError::Closed)?;
        Ok(receiver)
    }

    async fn call(&self, kind: CommandKind) -> Result<Reply, SafError> {
        let receiver = self.send(kind)?;
        receiver.await.map_err(|_| SafError::Closed)?
    }

    /// Buffer a message durably. Returns once it is on disk (or once an existing message
    /// with the same id was found: then nothing is written and `duplicate` is true).
    pub async fn enqueue(&self, message: NewMessage) -> Result<Enqueued, SafError> {
        let (id, kind) = self.prepare(message)?;
        match self.call(kind).await? {
            Reply::Enqueued { duplicate, status } => Ok(Enqueued {
                id,
                duplicate,
                status,
            }),
            other => Err(unexpected(other)),
        }
    }

    /// [`Saf::enqueue`] for plain threads (script threads): blocks until the message is on
    /// disk. Safe to call from any thread, inside a tokio runtime or not.
    pub fn enqueue_blocking(&self, message: NewMessage) -> Result<Enqueued, SafError> {
        block_on(self.enqueue(message))
    }

    /// Validate and encode on the producer's thread, so the writer only copies bytes.
    fn prepare(&self, new: NewMessage) -> Result<(String, CommandKind), SafError> {
        let now = now_ms();
        validate_key_part("target", &new.target)?;
        let size = new.payload.get().len();
        if size > self.inner.config.max_payload_bytes {
            return Err(SafError::PayloadTooLarge {
                size,
                limit: self.inner.config.max_payload_bytes,
            });
        }
        let id = match new.id {
            Some(id) => {
                validate_key_part("id", &id)?;
                id
            }
            None => store::new_id(now),
        };
        let mut message = Message {
            id: id.clone(),
            category: new.category,
            target: new.target,
            payload: new.payload,
            policy: new.policy,
            status: Status::Pending,
            created_at_ms: now,
            updated_at_ms: now,
            next_attempt_at_ms: Some(new.not_before_ms.unwrap_or(now).max(now)),
            attempts: 0,
            attempts_before_requeue: 0,
            last_error: None,
            history: Vec::new(),
        };
        if let Some(prior) = new.prior_attempt {
            message = writer::after_attempt(
                &message,
                &prior.attempt,
                prior.retry_after,
                0.1,
                now,
                self.inner.config.history_limit.max(1),
            );
            message.updated_at_ms = now;
        }
        let record = encode_message(&message);
        let index = index_key(&message);
        Ok((
            id.clone(),
            CommandKind::Enqueue {
                id,
                status: message.status,
                record,
                index,
            },
        ))
    }

    /// The status of one message: a point lookup.
    pub fn status(&self, id: &str) -> Result<Option<StatusReport>, SafError> {
        Ok(self.show(id)?.as_ref().map(StatusReport::from))
    }

    /// One message with its payload.
    pub fn show(&self, id: &str) -> Result<Option<Message>, SafError> {
        self.shared().read()?.message(id)
    }

    /// Messages matching a filter (status reports, no payloads), at most `filter.limit`
    /// (default 1,000). Pending and retrying come in due order per target; parked,
    /// delivered and discarded in the order they got there.
    pub fn list(&self, filter: &ListFilter) -> Result<Vec<StatusReport>, SafError> {
        let limit = filter.limit.unwrap_or(1000);
        let mut found = Vec::new();
        let mut resume: Option<ScanPosition> = None;
        loop {
            let reader = self.shared().read()?;
            let (page, next) = reader.scan(filter, resume.as_ref(), limit - found.len(), 10_000)?;
            drop(reader);
            found.extend(page.iter().map(StatusReport::from));
            match next {
                Some(position) if found.len() < limit => resume = Some(position),
                _ => return Ok(found),
            }
        }
    }

    /// Write every message matching `filter` (its limit ignored) as JSON lines, each line a
    /// full [`Message`]. Returns how many were written. Reads in short transactions, so the
    /// buffer keeps working meanwhile; messages that change during the export may appear in
    /// their old or new state.
    pub fn export_jsonl(
        &self,
        filter: &ListFilter,
        out: &mut dyn Write,
    ) -> Result<usize, SafError> {
        let mut written = 0;
        let mut resume: Option<ScanPosition> = None;
        let io_error = |source| SafError::Io {
            path: self.path().to_owned(),
            source,
        };
        loop {
            let reader = self.shared().read()?;
            let (page, next) = reader.scan(filter, resume.as_ref(), 1000, 10_000)?;
            drop(reader);
            for message in &page {
                serde_json::to_writer(&mut *out, message)
                    .map_err(|error| io_error(std::io::Error::other(error)))?;
                out.write_all(b"\n").map_err(io_error)?;
                written += 1;
            }
            match next {
                Some(position) => resume = Some(position),
                None => {
                    out.flush().map_err(io_error)?;
                    return Ok(written);
                }
            }
        }
    }

    /// Read JSON lines written by [`Saf::export_jsonl`] and store every message whose id is
    /// not in the buffer yet, keeping its status, attempts and history (pending and retrying
    /// ones are forwarded as usual). Blank lines are skipped. Work is committed in chunks of
    /// 1,000 lines: on a bad line, the chunks before it are imported and the error names the
    /// line; importing the file again after fixing it is safe (existing ids are skipped).
    pub async fn import_jsonl(&self, input: &mut dyn BufRead) -> Result<ImportReport, SafError> {
        let mut report = ImportReport::default();
        let mut chunk: Vec<Message> = Vec::new();
        let mut line_number = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            let read = input.read_line(&mut line).map_err(|source| SafError::Io {
                path: self.path().to_owned(),
                source,
            })?;
            if read > 0 {
                line_number += 1;
                if !line.trim().is_empty() {
                    chunk.push(parse_import_line(&line, line_number)?);
                }
            }
            if chunk.len() >= 1000 || (read == 0 && !chunk.is_empty()) {
                let messages = std::mem::take(&mut chunk);
                match self.call(CommandKind::Import { messages }).await? {
                    Reply::Imported { imported, skipped } => {
                        report.imported += imported;
                        report.skipped_existing += skipped;
                    }
                    other => return Err(unexpected(other)),
                }
            }
            if read == 0 {
                return Ok(report);
            }
        }
    }

    /// Put parked messages back to `pending`, due now, with a fresh retry budget (attempt count
    /// and history continue). An id selector fails with [`SafError::WrongStatus`] for a message
    /// that is not parked; a filter selector (statuses default to parked) changes every parked
    /// match. Returns how many messages changed.
    pub async fn retry(&self, selector: Selector) -> Result<usize, SafError> {
        self.operator_loop(selector, |selector, resume| CommandKind::Requeue {
            selector,
            resume,
        })
        .await
    }

    /// Mark messages discarded (never delivered; pruned after the retention). An id selector
    /// accepts a pending, retrying or parked message; a filter selector's statuses default to
    /// parked. Returns how many messages changed.
    pub async fn discard(&self, selector: Selector) -> Result<usize, SafError> {
        self.operator_loop(selector, |selector, resume| CommandKind::Discard {
            selector,
            resume,
        })
        .await
    }

    async fn operator_loop(
        &self,
        selector: Selector,
        make: impl Fn(Selector, Option<ScanPosition>) -> CommandKind,
    ) -> Result<usize, SafError> {
        let mut total = 0;
        let mut resume = None;
        loop {
            match self.call(make(selector.clone(), resume)).await? {
                Reply::Changed {
                    count,
                    resume: next,
                } => {
                    total += count;
                    match next {
                        Some(position) => resume = Some(position),
                        None => return Ok(total),
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    /// Delete delivered and discarded records older than the retention. Returns how many.
    pub async fn prune(&self) -> Result<usize, SafError> {
        let retention = self.inner.config.retention.as_millis() as u64;
        let before = now_ms().saturating_sub(retention);
        self.prune_before(before).await
    }

    /// Delete delivered and discarded records that reached that status before `before`.
    pub async fn prune_before(&self, before: UnixMillis) -> Result<usize, SafError> {
        let mut total = 0;
        loop {
            match self.call(CommandKind::Prune { before }).await? {
                Reply::Pruned(count) => {
                    total += count;
                    if count < writer::PRUNE_CHUNK {
                        return Ok(total);
                    }
                }
                other => return Err(unexpected(other)),
            }
        }
    }

    /// Record the outcome of one attempt (the forwarder's job; public for producers that
    /// deliver on their own).
    pub(crate) async fn record_attempt(
        &self,
        id: &str,
        attempt: Attempt,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Result<Option<Status>, SafError> {
        let kind = CommandKind::RecordAttempt {
            id: id.to_owned(),
            attempt,
            retry_after,
            jitter,
        };
        match self.call(kind).await? {
            Reply::Recorded(status) => Ok(status),
            other => Err(unexpected(other)),
        }
    }

    /// Wait until everything sent to the writer before this call is committed.
    pub async fn flush(&self) -> Result<(), SafError> {
        match self.call(CommandKind::Flush).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Counts per status and sizes (constant time).
    pub fn stats(&self) -> Result<SafStats, SafError> {
        let shared = self.shared();
        let reader = shared.read()?;
        let stats = SafStats {
            queued: reader.count(IndexTable::Due)?,
            parked: reader.count(IndexTable::Parked)?,
            delivered: reader.count(IndexTable::Delivered)?,
            discarded: reader.count(IndexTable::Discarded)?,
            map_size: shared.env.info().map_size as u64,
            file_size: shared.env.real_disk_size().unwrap_or(0),
        };
        Ok(stats)
    }

    /// Stop taking work, commit everything already handed to the writer, and stop the writer
    /// thread. Later calls on any clone fail with [`SafError::Closed`]. The environment itself
    /// closes when the last clone is dropped; reopening the same directory in this process
    /// needs every clone (the forwarder's included) dropped first, which
    /// [`Saf::close_and_wait`] does for the last one.
    pub fn close(&self) -> Result<(), SafError> {
        let sender = self
            .inner
            .sender
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(sender) = sender {
            let (reply, receiver) = oneshot::channel();
            let sent = sender.send(Command {
                kind: CommandKind::Shutdown,
                reply,
            });
            drop(sender);
            if sent.is_ok() {
                // The writer answers after committing everything queued before the shutdown.
                let _ = block_on(receiver);
            }
        }
        let writer = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let joined = writer.map(JoinHandle::join);
        // The replication link thread (if any) ends when its sender is gone.
        self.shared().detach_link();
        if let Some(Err(_)) = joined {
            return Err(SafError::Storage {
                path: self.path().to_owned(),
                message: "the writer thread panicked".to_owned(),
            });
        }
        Ok(())
    }

    /// [`Saf::close`], then, if this is the last handle, wait until LMDB has closed the
    /// environment so the directory can be opened again at once.
    pub fn close_and_wait(self) -> Result<(), SafError> {
        self.close()?;
        if let Ok(inner) = Arc::try_unwrap(self.inner)
            && let Ok(shared) = Arc::try_unwrap(inner.shared)
        {
            shared.env.prepare_for_closing().wait();
        }
        Ok(())
    }
}

fn parse_import_line(line: &str, line_number: usize) -> Result<Message, SafError> {
    let message: Message = serde_json::from_str(line).map_err(|error| SafError::Import {
        line: line_number,
        message: error.to_string(),
    })?;
    let check = |what, text: &str| {
        validate_key_part(what, text).map_err(|error| SafError::Import {
            line: line_number,
            message: error.to_string(),
        })
    };
    check("id", &message.id)?;
    check("target", &message.target)?;
    Ok(message)
}

fn unexpected(reply: Reply) -> SafError {
    SafError::Storage {
        path: PathBuf::new(),
        message: format!("internal: unexpected writer reply {reply:?}"),
    }
}

/// Drive a future to completion on the current thread, parking between wake-ups. Works
/// inside or outside a tokio runtime, for futures that need no runtime (every future of
/// [`Saf`] only waits for the writer thread): this is how the command line and script threads
/// call the async operations.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pending message as format 1 stored it: its JSON.
    const JSON_RECORD: &str = r#"{"id":"old-1","category":"notification","target":"Operators","payload":{"subject":"Pump down","to":["a@example.com"]},"policy":{"max_retries":4,"backoff":{"fixed":{"interval_ms":5000}}},"status":"retrying","created_at_ms":1763900000000,"updated_at_ms":1763900000200,"next_attempt_at_ms":1763900005200,"attempts":1,"attempts_before_requeue":0,"last_error":"421 try later","history":[{"at_ms":1763900000100,"outcome":"transient","status_code":421,"error":"421 try later","duration_ms":80}]}"#;

    fn format_of(saf: &Saf) -> Vec<u8> {
        let reader = saf.shared().read().expect("read");
        let found = saf.shared().tables.meta.get(&reader.txn, b"format");
        found.expect("meta").expect("format key").to_vec()
    }

    fn raw_record(saf: &Saf, id: &str) -> Vec<u8> {
        let reader = saf.shared().read().expect("read");
        let found = saf.shared().tables.messages.get(&reader.txn, id.as_bytes());
        found.expect("get").expect("record").to_vec()
    }

    #[test]
    fn a_buffer_of_json_records_keeps_working() {
        let dir = tempfile::tempdir().expect("dir");
        {
            // Make a buffer of format 1 by hand: the format key and a JSON record with its
            // index entry.
            let shared = Shared::open(dir.path(), 1 << 20).expect("open");
            let message = store::decode_message(b"old-1", JSON_RECORD.as_bytes()).expect("json");
            let (table, key) = index_key(&message);
            let mut wtxn = shared.env.write_txn().expect("write txn");
            let tables = shared.tables;
            tables.meta.put(&mut wtxn, b"format", b"1").expect("put");
            tables
                .messages
                .put(&mut wtxn, b"old-1", JSON_RECORD.as_bytes())
                .expect("put");
            tables.index(table).put(&mut wtxn, &key, &[]).expect("put");
            wtxn.commit().expect("commit");
            shared.env.prepare_for_closing().wait();
        }
        let saf = Saf::open(SafConfig::new(dir.path())).expect("reopen");
        assert_eq!(format_of(&saf), b"2", "opening marks the buffer format 2");

        let report = saf.status("old-1").expect("status").expect("found");
        assert_eq!(report.status, Status::Retrying);
        assert_eq!(report.attempts, 1);
        assert_eq!(report.attempts_remaining, 4);
        assert_eq!(report.history[0].status_code, Some(421));
        let listed = saf.list(&ListFilter::default()).expect("list");
        assert_eq!(listed, vec![report]);

        // The export is JSON lines, the record's own JSON.
        let mut exported = Vec::new();
        assert_eq!(
            saf.export_jsonl(&ListFilter::default(), &mut exported)
                .expect("export"),
            1
        );
        let line: serde_json::Value = serde_json::from_slice(&exported).expect("a JSON line");
        let original: serde_json::Value = serde_json::from_str(JSON_RECORD).expect("json");
        assert_eq!(line, original);

        // A change writes the record again, binary, with its history.
        assert_eq!(
            block_on(saf.discard(Selector::Id("old-1".into()))).expect("discard"),
            1
        );
        assert_eq!(raw_record(&saf, "old-1")[0], record::BINARY_V1);
        let message = saf.show("old-1").expect("show").expect("found");
        assert_eq!(message.status, Status::Discarded);
        assert_eq!(message.history.len(), 1);
        assert_eq!(
            message.payload.get(),
            r#"{"subject":"Pump down","to":["a@example.com"]}"#
        );

        // The export of format 1 imports into a new buffer, stored binary there.
        let other_dir = tempfile::tempdir().expect("dir");
        let other = Saf::open(SafConfig::new(other_dir.path())).expect("open");
        let report = block_on(other.import_jsonl(&mut exported.as_slice())).expect("import");
        assert_eq!(report.imported, 1);
        assert_eq!(raw_record(&other, "old-1")[0], record::BINARY_V1);
        let imported = other.show("old-1").expect("show").expect("found");
        assert_eq!(
            serde_json::to_value(&imported).expect("json"),
            original,
            "every field survives export, import and the binary record"
        );
        other.close_and_wait().expect("close");
        saf.close_and_wait().expect("close");
    }

    #[test]
    fn a_buffer_of_an_unknown_format_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let shared = Shared::open(dir.path(), 1 << 20).expect("open");
            let mut wtxn = shared.env.write_txn().expect("write txn");
            shared
                .tables
                .meta
                .put(&mut wtxn, b"format", b"3")
                .expect("put");
            wtxn.commit().expect("commit");
            shared.env.prepare_for_closing().wait();
        }
        let error = Saf::open(SafConfig::new(dir.path())).expect_err("format 3");
        assert!(error.to_string().contains("format `3`"), "{error}");
    }
}
