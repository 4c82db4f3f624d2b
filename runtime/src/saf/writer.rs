//! The single writer thread: every change to the buffer goes through it, batched into group
//! commits.
//!
//! Producers, the forwarder and operator actions send [`Command`]s over a channel. The thread
//! takes whatever is queued (up to `max_batch`), applies it in one LMDB write transaction,
//! commits (LMDB fsyncs data and meta page on commit), and only then answers every command of
//! the batch: so many concurrent producers share one fsync, and nobody hears "buffered" before
//! the message is on disk.
//!
//! Group commit waits a little for the producers it has just answered: when the last batch
//! held n commands, the next one is committed once n have arrived, or after half the time
//! the last commit took (at most [`MAX_LINGER`]), whichever is first. With many concurrent
//! producers each commit then carries nearly all of them (one fsync pair for 64 messages
//! instead of two for 35 + 29); a lone producer (n = 1) never waits.
//!
//! When LMDB reports `MDB_MAP_FULL` the transaction is aborted, the map is grown (here, where
//! the write lock of the resize gate guarantees no transaction of the process is open) and the
//! same batch is applied again. Any other failure (a full disk, an I/O error) aborts the batch:
//! nothing of it is written and every command of it gets the error.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use heed::{PutFlags, RwTxn};
use tokio::sync::oneshot;

use super::error::SafError;
use super::model::{
    Attempt, AttemptOutcome, ListFilter, Message, Selector, Status, UnixMillis, now_ms, shorten,
};
use super::replication::{META_SEQ, Op, read_u64};
use super::store::{
    IndexTable, ScanPosition, Shared, TableId, decode_message, encode_message, id_of_index_key,
    index_key, index_table_of, random_u64,
};

/// How many index entries one filtered operator command walks before it yields the writer
/// to other work (the caller sends the next chunk).
pub(crate) const FILTER_SCAN_BUDGET: usize = 20_000;
/// How many records one prune command deletes at most.
pub(crate) const PRUNE_CHUNK: usize = 10_000;

/// One change for the writer thread, with where to send its answer.
pub(crate) struct Command {
    pub kind: CommandKind,
    pub reply: oneshot::Sender<Result<Reply, SafError>>,
}

pub(crate) enum CommandKind {
    /// Store a new message (already validated and encoded by the producer).
    Enqueue {
        id: String,
        status: Status,
        record: Vec<u8>,
        index: (IndexTable, Vec<u8>),
    },
    /// The forwarder's result of one attempt.
    RecordAttempt {
        id: String,
        attempt: Attempt,
        retry_after: Option<Duration>,
        jitter: f64,
    },
    /// Put parked messages back to pending.
    Requeue {
        selector: Selector,
        resume: Option<ScanPosition>,
    },
    /// Mark messages discarded.
    Discard {
        selector: Selector,
        resume: Option<ScanPosition>,
    },
    /// Delete delivered and discarded records last changed before `before`.
    Prune { before: UnixMillis },
    /// Store exported messages whose ids are not in the buffer yet.
    Import { messages: Vec<Message> },
    /// Raw table writes shipped by the active node of a replicated site, applied as they
    /// are (after emptying the data tables when `clear`: the start of a snapshot).
    Replicate { clear: bool, ops: Vec<Op> },
    /// Answer once everything sent before it is committed.
    Flush,
    /// Commit what is queued and stop.
    Shutdown,
}

#[derive(Debug)]
pub(crate) enum Reply {
    Enqueued {
        duplicate: bool,
        status: Status,
    },
    Recorded(Option<Status>),
    /// How many messages an operator command changed, and where to continue.
    Changed {
        count: usize,
        resume: Option<ScanPosition>,
    },
    Pruned(usize),
    Imported {
        imported: usize,
        skipped: usize,
    },
    Done,
}

/// The writer's settings.
pub(crate) struct WriterConfig {
    pub max_batch: usize,
    pub history_limit: usize,
}

/// How often the writer drops the process's mapped pages of the data file
/// ([`Shared::trim_mapped_pages`]).
const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// The longest the writer waits for more commands once a batch has begun (see the module
/// documentation).
const MAX_LINGER: Duration = Duration::from_micros(500);

/// The writer thread's main loop; returns when told to shut down or when every sender is gone.
pub(crate) fn run(shared: Arc<Shared>, receiver: Receiver<Command>, config: WriterConfig) {
    let mut batch: Vec<Command> = Vec::with_capacity(config.max_batch);
    let mut trimmed = Instant::now();
    let mut expected = 1;
    let mut last_commit = Duration::ZERO;
    loop {
        if trimmed.elapsed() >= TRIM_INTERVAL {
            shared.trim_mapped_pages();
            trimmed = Instant::now();
        }
        let first = match receiver.recv_timeout(TRIM_INTERVAL) {
            Ok(command) => command,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        batch.push(first);
        let linger = (last_commit / 2).min(MAX_LINGER);
        collect(&receiver, &mut batch, config.max_batch, expected, linger);
        expected = batch.len();
        let stop = batch
            .iter()
            .any(|command| matches!(command.kind, CommandKind::Shutdown));
        let started = Instant::now();
        commit_batch(&shared, &config, &mut batch);
        last_commit = started.elapsed();
        if stop {
            return;
        }
    }
}

/// Adds what is queued to `batch` (up to `max`); while fewer than `expected` commands are
/// in it, waits for more until `linger` has passed. A flush or shutdown ends the wait.
fn collect(
    receiver: &Receiver<Command>,
    batch: &mut Vec<Command>,
    max: usize,
    expected: usize,
    linger: Duration,
) {
    let urgent =
        |command: &Command| matches!(command.kind, CommandKind::Flush | CommandKind::Shutdown);
    if batch.last().is_some_and(urgent) {
        return;
    }
    let deadline = Instant::now() + linger;
    while batch.len() < max {
        let command = match receiver.try_recv() {
            Ok(command) => command,
            Err(TryRecvError::Disconnected) => return,
            Err(TryRecvError::Empty) => {
                let now = Instant::now();
                if batch.len() >= expected || now >= deadline {
                    return;
                }
                match receiver.recv_timeout(deadline - now) {
                    Ok(command) => command,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
                }
            }
        };
        let stop = urgent(&command);
        batch.push(command);
        if stop {
            return;
        }
    }
}

fn commit_batch(shared: &Shared, config: &WriterConfig, batch: &mut Vec<Command>) {
    let mut growths = 0u32;
    let link = shared.link();
    let mut journal = Journal::new(link.is_some());
    let result = loop {
        let now = now_ms();
        let attempt = {
            let _gate = shared.gate.read().unwrap_or_else(|p| p.into_inner());
            journal.clear();
            apply_all(shared, config, batch, now, &mut journal)
        };
        match attempt {
            Err(heed::Error::Mdb(heed::MdbError::MapFull)) if growths < 48 => {
                growths += 1;
                if let Err(error) = grow_map(shared) {
                    break Err(error);
                }
            }
            Err(error) => break Err(shared.heed_error(error)),
            Ok(replies) => break Ok(replies),
        }
    };
    match result {
        Ok(replies) => {
            if let Some(link) = link
                && !journal.ops.is_empty()
            {
                // The batch is on the local disk; in sync mode it must also be on the
                // standby's before anyone hears about it (or the link is reported down).
                link.ship(journal.seq, std::mem::take(&mut journal.ops));
            }
            let mut wake = false;
            for (command, reply) in batch.drain(..).zip(replies) {
                wake |= matches!(
                    (&command.kind, &reply),
                    (
                        CommandKind::Enqueue { .. },
                        Ok(Reply::Enqueued {
                            duplicate: false,
                            ..
                        })
                    ) | (CommandKind::Requeue { .. }, Ok(Reply::Changed { .. }))
                        | (CommandKind::Import { .. }, Ok(Reply::Imported { .. }))
                );
                // A producer that stopped waiting is not an error of the batch.
                let _ = command.reply.send(reply);
            }
            if wake {
                shared.wake_forwarder.notify_one();
            }
        }
        Err(error) => {
            tracing::error!(path = %shared.path.display(), %error, "store-and-forward batch failed");
            for command in batch.drain(..) {
                let _ = command.reply.send(Err(error.duplicate()));
            }
        }
    }
}

/// Double the map (by at most 1 GiB at a time) with no transaction of the process open.
fn grow_map(shared: &Shared) -> Result<(), SafError> {
    let _exclusive = shared.gate.write().unwrap_or_else(|p| p.into_inner());
    let current = shared.env.info().map_size;
    let step = current.clamp(1 << 20, 1 << 30);
    let new_size = super::store::round_map_size(current + step);
    // SAFETY: `resize` requires that no transaction of this process is open. Every
    // transaction is opened under the read side of `gate` and ends before its guard is
    // released, and we hold the write side here.
    unsafe { shared.env.resize(new_size) }.map_err(|e| shared.heed_error(e))?;
    tracing::info!(
        path = %shared.path.display(),
        from = current,
        to = new_size,
        "store-and-forward map grown"
    );
    Ok(())
}

type ApplyResult = Result<Vec<Result<Reply, SafError>>, heed::Error>;

/// Apply a whole batch in one transaction and commit it. A heed error aborts everything;
/// a per-command problem (unknown id, wrong status, damaged record) is that command's answer.
fn apply_all(
    shared: &Shared,
    config: &WriterConfig,
    batch: &[Command],
    now: UnixMillis,
    journal: &mut Journal,
) -> ApplyResult {
    let mut txn = shared.env.write_txn()?;
    let mut replies = Vec::with_capacity(batch.len());
    for command in batch {
        replies.push(apply(
            shared,
            config,
            &mut txn,
            &command.kind,
            now,
            journal,
        )?);
    }
    if journal.enabled && !journal.ops.is_empty() {
        // The link position travels with the batch, so a snapshot taken in any read
        // transaction says exactly which batches it already contains.
        let seq = read_u64(shared, &txn, META_SEQ)?.unwrap_or(0) + 1;
        journal.put(
            shared,
            &mut txn,
            TableId::Meta,
            META_SEQ,
            &seq.to_be_bytes(),
        )?;
        journal.seq = seq;
    }
    txn.commit()?;
    Ok(replies)
}

fn apply(
    shared: &Shared,
    config: &WriterConfig,
    txn: &mut RwTxn<'_>,
    kind: &CommandKind,
    now: UnixMillis,
    journal: &mut Journal,
) -> Result<Result<Reply, SafError>, heed::Error> {
    let tables = &shared.tables;
    match kind {
        CommandKind::Enqueue {
            id,
            status,
            record,
            index,
        } => {
            let put =
                tables
                    .messages
                    .put_with_flags(txn, PutFlags::NO_OVERWRITE, id.as_bytes(), record);
            match put {
                Ok(()) => {
                    journal.record(TableId::Messages, id.as_bytes(), Some(record));
                    journal.put(shared, txn, index.0.into(), &index.1, &[])?;
                    Ok(Ok(Reply::Enqueued {
                        duplicate: false,
                        status: *status,
                    }))
                }
                Err(heed::Error::Mdb(heed::MdbError::KeyExist)) => {
                    let existing = match load(shared, txn, id)? {
                        Ok(Some(message)) => message.status,
                        _ => *status,
                    };
                    Ok(Ok(Reply::Enqueued {
                        duplicate: true,
                        status: existing,
                    }))
                }
                Err(error) => Err(error),
            }
        }
        CommandKind::RecordAttempt {
            id,
            attempt,
            retry_after,
            jitter,
        } => {
            let old = match load(shared, txn, id)? {
                Ok(Some(message)) => message,
                Ok(None) => return Ok(Ok(Reply::Recorded(None))),
                Err(error) => return Ok(Err(error)),
            };
            let new = after_attempt(
                &old,
                attempt,
                *retry_after,
                *jitter,
                now,
                config.history_limit,
            );
            let status = new.status;
            replace(shared, txn, journal, Some(&old), &new)?;
            Ok(Ok(Reply::Recorded(Some(status))))
        }
        CommandKind::Requeue { selector, resume } => operator_change(
            shared,
            txn,
            journal,
            selector,
            resume.as_ref(),
            Status::Parked,
            |message| {
                if message.status != Status::Parked {
                    return None;
                }
                let mut new = message.clone();
                new.status = Status::Pending;
                new.attempts_before_requeue = message.attempts;
                new.next_attempt_at_ms = Some(now);
                new.updated_at_ms = now;
                Some(new)
            },
        ),
        CommandKind::Discard { selector, resume } => operator_change(
            shared,
            txn,
            journal,
            selector,
            resume.as_ref(),
            Status::Parked,
            |message| {
                if matches!(message.status, Status::Delivered | Status::Discarded) {
                    return None;
                }
                let mut new = message.clone();
                new.status = Status::Discarded;
                new.next_attempt_at_ms = None;
                new.updated_at_ms = now;
                Some(new)
            },
        ),
        CommandKind::Prune { before } => {
            let mut pruned = 0usize;
            for table in [IndexTable::Delivered, IndexTable::Discarded] {
                let index = tables.index(table);
                let upper = before.to_be_bytes();
                let range = (
                    std::ops::Bound::<&[u8]>::Unbounded,
                    std::ops::Bound::Excluded(upper.as_slice()),
                );
                let keys: Vec<Vec<u8>> = index
                    .range(txn, &range)?
                    .take(PRUNE_CHUNK - pruned)
                    .map(|entry| entry.map(|(key, _)| key.to_vec()))
                    .collect::<Result<_, _>>()?;
                for key in keys {
                    journal.delete(shared, txn, TableId::Messages, id_of_index_key(table, &key))?;
                    journal.delete(shared, txn, table.into(), &key)?;
                    pruned += 1;
                }
            }
            Ok(Ok(Reply::Pruned(pruned)))
        }
        CommandKind::Import { messages } => {
            let mut imported = 0;
            let mut skipped = 0;
            for message in messages {
                if tables.messages.get(txn, message.id.as_bytes())?.is_some() {
                    skipped += 1;
                    continue;
                }
                replace(shared, txn, journal, None, message)?;
                imported += 1;
            }
            Ok(Ok(Reply::Imported { imported, skipped }))
        }
        CommandKind::Replicate { clear, ops } => {
            if *clear {
                for table in TableId::DATA {
                    tables.table(table).clear(txn)?;
                }
            }
            for op in ops {
                let table = tables.table(op.table);
                match &op.value {
                    Some(value) => table.put(txn, &op.key, value)?,
                    None => {
                        table.delete(txn, &op.key)?;
                    }
                }
            }
            Ok(Ok(Reply::Done))
        }
        CommandKind::Flush | CommandKind::Shutdown => Ok(Ok(Reply::Done)),
    }
}

fn load(
    shared: &Shared,
    txn: &RwTxn<'_>,
    id: &str,
) -> Result<Result<Option<Message>, SafError>, heed::Error> {
    let bytes = shared.tables.messages.get(txn, id.as_bytes())?;
    Ok(bytes
        .map(|bytes| decode_message(id.as_bytes(), bytes))
        .transpose())
}

/// Write `new` and move its index entry from where `old` had it.
fn replace(
    shared: &Shared,
    txn: &mut RwTxn<'_>,
    journal: &mut Journal,
    old: Option<&Message>,
    new: &Message,
) -> Result<(), heed::Error> {
    let record = encode_message(new);
    let (new_table, new_key) = index_key(new);
    if let Some(old) = old {
        let (old_table, old_key) = index_key(old);
        if (old_table, &old_key) != (new_table, &new_key) {
            journal.delete(shared, txn, old_table.into(), &old_key)?;
        }
    }
    journal.put(shared, txn, TableId::Messages, new.id.as_bytes(), &record)?;
    journal.put(shared, txn, new_table.into(), &new_key, &[])?;
    Ok(())
}

/// The message after one more attempt: delivered, rescheduled, or parked.
pub(crate) fn after_attempt(
    old: &Message,
    attempt: &Attempt,
    retry_after: Option<Duration>,
    jitter: f64,
    now: UnixMillis,
    history_limit: usize,
) -> Message {
    let mut new = old.clone();
    new.attempts = old.attempts.saturating_add(1);
    new.updated_at_ms = now;
    new.history.push(attempt.clone());
    if new.history.len() > history_limit {
        let excess = new.history.len() - history_limit;
        new.history.drain(..excess);
    }
    match attempt.outcome {
        AttemptOutcome::Delivered => {
            new.status = Status::Delivered;
            new.next_attempt_at_ms = None;
        }
        AttemptOutcome::Permanent => {
            new.last_error = Some(failure_text(attempt));
            if old.status.is_active() {
                new.status = Status::Parked;
                new.next_attempt_at_ms = None;
            }
        }
        AttemptOutcome::Transient => {
            new.last_error = Some(failure_text(attempt));
            if old.status.is_active() {
                let budget = 1 + u64::from(old.policy.max_retries);
                if u64::from(new.attempts_in_budget()) >= budget {
                    new.status = Status::Parked;
                    new.next_attempt_at_ms = None;
                    new.last_error = Some(shorten(&format!(
                        "retries exhausted after {} attempts; last error: {}",
                        new.attempts_in_budget(),
                        failure_text(attempt)
                    )));
                } else {
                    new.status = Status::Retrying;
                    let retry_number = new.attempts_in_budget();
                    let delay = retry_delay(old, retry_number, retry_after, jitter);
                    new.next_attempt_at_ms = Some(now + delay.as_millis() as u64);
                }
            }
        }
    }
    new
}

fn failure_text(attempt: &Attempt) -> String {
    match (&attempt.error, attempt.status_code) {
        (Some(error), _) => error.clone(),
        (None, Some(code)) => format!("status {code}"),
        (None, None) => "failed".to_owned(),
    }
}

/// The wait before retry `retry_number`: the peer's `Retry-After` when it sent one (never
/// shortened by jitter), otherwise the policy's delay spread by ±`jitter`.
pub(crate) fn retry_delay(
    message: &Message,
    retry_number: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    let unit = (random_u64(u64::from(retry_number)) >> 11) as f64 / (1u64 << 53) as f64;
    match retry_after {
        Some(wait) => wait.mul_f64(1.0 + jitter * unit),
        None => message
            .policy
            .delay_before_retry(retry_number)
            .mul_f64(1.0 + jitter * (2.0 * unit - 1.0)),
    }
}

/// Apply `change` to the selected messages; an id selector reports why it did nothing.
fn operator_change(
    shared: &Shared,
    txn: &mut RwTxn<'_>,
    journal: &mut Journal,
    selector: &Selector,
    resume: Option<&ScanPosition>,
    default_status: Status,
    change: impl Fn(&Message) -> Option<Message>,
) -> Result<Result<Reply, SafError>, heed::Error> {
    match selector {
        Selector::Id(id) => {
            let old = match load(shared, txn, id)? {
                Ok(Some(message)) => message,
                Ok(None) => return Ok(Err(SafError::NotFound(id.clone()))),
                Err(error) => return Ok(Err(error)),
            };
            let Some(new) = change(&old) else {
                return Ok(Err(SafError::WrongStatus {
                    id: id.clone(),
                    status: old.status.as_str(),
                    expected: if default_status == Status::Parked {
                        "parked"
                    } else {
                        default_status.as_str()
                    },
                }));
            };
            replace(shared, txn, journal, Some(&old), &new)?;
            Ok(Ok(Reply::Changed {
                count: 1,
                resume: None,
            }))
        }
        Selector::Filter(filter) => {
            let mut filter: ListFilter = filter.clone();
            if filter.statuses.is_empty() {
                filter.statuses = vec![default_status];
            }
            let (matches, resume) = scan_in_txn(shared, txn, &filter, resume)?;
            let mut count = 0;
            for old in matches {
                if let Some(new) = change(&old) {
                    replace(shared, txn, journal, Some(&old), &new)?;
                    count += 1;
                }
            }
            Ok(Ok(Reply::Changed { count, resume }))
        }
    }
}

/// The filter walk of [`super::store::Reader::scan`], inside the write transaction.
fn scan_in_txn(
    shared: &Shared,
    txn: &RwTxn<'_>,
    filter: &ListFilter,
    resume: Option<&ScanPosition>,
) -> Result<(Vec<Message>, Option<ScanPosition>), heed::Error> {
    let tables = &shared.tables;
    let mut tables_wanted: Vec<IndexTable> = Vec::new();
    for status in &filter.statuses {
        let table = index_table_of(*status);
        if !tables_wanted.contains(&table) {
            tables_wanted.push(table);
        }
    }
    let mut found = Vec::new();
    let mut scanned = 0usize;
    let mut started = resume.is_none();
    for table in tables_wanted {
        if !started {
            if resume.map(|r| r.table) != Some(table) {
                continue;
            }
            started = true;
        }
        let after: Option<&[u8]> = resume
            .filter(|position| position.table == table)
            .map(|position| position.after_key.as_slice());
        let range = match after {
            Some(key) => (
                std::ops::Bound::Excluded(key),
                std::ops::Bound::<&[u8]>::Unbounded,
            ),
            None => (
                std::ops::Bound::Unbounded,
                std::ops::Bound::<&[u8]>::Unbounded,
            ),
        };
        for entry in tables.index(table).range(txn, &range)? {
            let (key, _) = entry?;
            scanned += 1;
            let id = id_of_index_key(table, key);
            if let Some(bytes) = tables.messages.get(txn, id)?
                && let Ok(message) = decode_message(id, bytes)
                && filter.matches(&message)
            {
                found.push(message);
            }
            if scanned >= FILTER_SCAN_BUDGET {
                return Ok((
                    found,
                    Some(ScanPosition {
                        table,
                        after_key: key.to_vec(),
                    }),
                ));
            }
        }
    }
    Ok((found, None))
}

/// The raw writes of one batch, recorded (when a standby is attached) for the replication
/// link: the standby applies exactly these, so it never re-runs the decisions (retry delays,
/// jitter, clocks) the active node made.
pub(crate) struct Journal {
    enabled: bool,
    pub ops: Vec<Op>,
    /// The link position the batch was given.
    pub seq: u64,
}

impl Journal {
    pub fn new(enabled: bool) -> Journal {
        Journal {
            enabled,
            ops: Vec::new(),
            seq: 0,
        }
    }

    fn clear(&mut self) {
        self.ops.clear();
        self.seq = 0;
    }

    fn record(&mut self, table: TableId, key: &[u8], value: Option<&[u8]>) {
        if self.enabled {
            self.ops.push(Op {
                table,
                key: key.to_vec(),
                value: value.map(<[u8]>::to_vec),
            });
        }
    }

    fn put(
        &mut self,
        shared: &Shared,
        txn: &mut RwTxn<'_>,
        table: TableId,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), heed::Error> {
        shared.tables.table(table).put(txn, key, value)?;
        self.record(table, key, Some(value));
        Ok(())
    }

    fn delete(
        &mut self,
        shared: &Shared,
        txn: &mut RwTxn<'_>,
        table: TableId,
        key: &[u8],
    ) -> Result<(), heed::Error> {
        shared.tables.table(table).delete(txn, key)?;
        self.record(table, key, None);
        Ok(())
    }
}
