//! The LMDB side of the buffer: the environment, its tables, key layout, ids, and every
//! read.
//!
//! Layout (all keys and values are bytes; big-endian integers so keys sort by time):
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `messages` | message id | the [`Message`] as a binary record (`record.rs`; JSON in format 1) |
//! | `due` | target, `0x00`, next attempt (u64 ms), id | empty |
//! | `parked` | parked at (u64 ms), id | empty |
//! | `delivered` | delivered at (u64 ms), id | empty |
//! | `discarded` | discarded at (u64 ms), id | empty |
//! | `meta` | `format` | `2` (`1`: JSON records, read as well and marked `2` on open) |
//!
//! Every message is in `messages` and in exactly one index: `due` while pending or retrying
//! (the forwarder's schedule, grouped by target so one slow target cannot hide another),
//! otherwise the index of its status (ordered by the time it got there, which is what pruning
//! and the parked list need). Generated ids are UUIDv7, time-ordered, so new messages append
//! at the right edge of `messages`; new `due` keys append at the right edge of their target.
//!
//! Resizing the map needs every transaction of the process closed, so every transaction is
//! opened under the `gate` read lock and the writer takes the write lock to resize.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock, RwLockReadGuard};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, RoTxn, WithoutTls};

use super::error::SafError;
use super::model::{ListFilter, MAX_ID_BYTES, MAX_TARGET_BYTES, Message, Status, UnixMillis};

/// A table of byte keys and byte values.
pub(crate) type Table = Database<'static, Bytes, Bytes>;

/// Which index a message is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexTable {
    Due,
    Parked,
    Delivered,
    Discarded,
}

/// Every table of the environment, by a number that is stable on the replication link
/// ([`super::replication`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum TableId {
    Messages,
    Due,
    Parked,
    Delivered,
    Discarded,
    Meta,
}

impl TableId {
    /// The tables a replica snapshot copies and replaces (`meta` keeps its format key).
    pub const DATA: [TableId; 5] = [
        TableId::Messages,
        TableId::Due,
        TableId::Parked,
        TableId::Delivered,
        TableId::Discarded,
    ];
}

impl From<IndexTable> for TableId {
    fn from(table: IndexTable) -> TableId {
        match table {
            IndexTable::Due => TableId::Due,
            IndexTable::Parked => TableId::Parked,
            IndexTable::Delivered => TableId::Delivered,
            IndexTable::Discarded => TableId::Discarded,
        }
    }
}

/// The tables of one environment.
#[derive(Clone, Copy)]
pub(crate) struct Tables {
    pub messages: Table,
    pub due: Table,
    pub parked: Table,
    pub delivered: Table,
    pub discarded: Table,
    /// The format version and, on a replicated site, the link position and the epoch.
    pub meta: Table,
}

impl Tables {
    pub fn index(&self, table: IndexTable) -> Table {
        match table {
            IndexTable::Due => self.due,
            IndexTable::Parked => self.parked,
            IndexTable::Delivered => self.delivered,
            IndexTable::Discarded => self.discarded,
        }
    }

    pub fn table(&self, table: TableId) -> Table {
        match table {
            TableId::Messages => self.messages,
            TableId::Due => self.due,
            TableId::Parked => self.parked,
            TableId::Delivered => self.delivered,
            TableId::Discarded => self.discarded,
            TableId::Meta => self.meta,
        }
    }
}

/// What the writer thread and the readers share.
pub(crate) struct Shared {
    pub env: Env<WithoutTls>,
    pub tables: Tables,
    /// Held (shared) by every open transaction; taken exclusively to resize the map.
    pub gate: RwLock<()>,
    pub path: PathBuf,
    /// Wakes the forwarder when something became due.
    pub wake_forwarder: tokio::sync::Notify,
    /// The replication link to a standby, when this node is the active of a pair.
    pub link: super::replication::LinkSlot,
}

/// The on-disk format version in `meta`: `2`, binary records ([`super::record`]).
const FORMAT_VERSION: &[u8] = b"2";
/// The format before it, JSON records, which this version reads as well. Opening such a
/// buffer marks it `2` at once (new records are binary), so an older version refuses it
/// instead of finding records it cannot read.
const FORMAT_VERSION_JSON: &[u8] = b"1";

/// Where this process maps `file` (start address and length), from /proc/self/maps; `None`
/// when it is not mapped or the list cannot be read.
fn data_file_mapping(file: &Path) -> Option<(usize, usize)> {
    use std::os::unix::fs::MetadataExt as _;
    let inode = std::fs::metadata(file).ok()?.ino();
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| parse_mapping(line, inode))
}

/// A `/proc/self/maps` line's address range, when it maps the file with `inode`.
fn parse_mapping(line: &str, inode: u64) -> Option<(usize, usize)> {
    // "start-end perms offset dev inode pathname"
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let inode_field = fields.nth(3)?;
    if inode_field.parse::<u64>().ok()? != inode {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    (end > start).then(|| (start, end - start))
}

/// Round up to a multiple of 64 KiB, a multiple of every page size LMDB runs with.
pub(crate) fn round_map_size(size: usize) -> usize {
    const UNIT: usize = 64 * 1024;
    size.max(UNIT).div_ceil(UNIT) * UNIT
}

impl Shared {
    /// Drops this process's page-table entries for the data file's memory map, so pages that
    /// lookups, scans and commits touched stop counting in the process's RSS. The pages stay
    /// in the kernel's page cache (shared, reclaimable memory): the next read of one maps it
    /// again from there, with the same bytes. Called by the writer thread about once a
    /// second; see `docs/reliability.md` (memory).
    pub(crate) fn trim_mapped_pages(&self) {
        // LMDB reports its map's address only for a fixed map (`MDB_FIXEDMAP`), so the
        // mapping of the data file is looked up in the process's own map list by inode.
        let Some((start, length)) = data_file_mapping(&self.path.join("data.mdb")) else {
            return;
        };
        // SAFETY: `start`/`length` are this process's current mapping of the buffer's data
        // file (matched by inode in /proc/self/maps): page aligned, `MAP_SHARED` and
        // read-only (the environment is opened without `WRITEMAP`, so LMDB writes with
        // `pwrite`). `MADV_DONTNEED` on a shared file mapping only unmaps pages; a later
        // access faults the same file page back in, so a reader on another thread sees the
        // same bytes and no data is lost. The mapping cannot be replaced between the lookup
        // and this call: LMDB remaps only in `grow_map`, which runs on the writer thread, the
        // only caller of this function.
        let result =
            unsafe { libc::madvise(start as *mut libc::c_void, length, libc::MADV_DONTNEED) };
        if result != 0 {
            tracing::debug!(
                path = %self.path.display(),
                error = %std::io::Error::last_os_error(),
                "trimming the buffer's mapped pages failed"
            );
        }
    }

    /// Open (creating if needed) the environment in `path`.
    pub fn open(path: &Path, map_size: usize) -> Result<Shared, SafError> {
        std::fs::create_dir_all(path).map_err(|source| SafError::Io {
            path: path.to_owned(),
            source,
        })?;
        let heed_error = |error| SafError::from_heed(path, error);
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(round_map_size(map_size)).max_dbs(8);
        // SAFETY: LMDB memory-maps the data file; it is undefined behaviour if the file is
        // truncated or rewritten by something else while mapped, or opened twice by this
        // process. heed refuses a second open in the same process, and the data directory
        // belongs to this node alone (the `scl saf` command works on it only when the node is
        // stopped, or through the node's admin API).
        let env = unsafe { options.open(path) }.map_err(heed_error)?;
        // Reader slots of a process that died (kill -9) would pin old pages forever.
        env.clear_stale_readers().map_err(heed_error)?;
        let wtxn = env.write_txn().map_err(heed_error)?;
        let tables = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
                let messages = opener.create_database::<Bytes, Bytes>(wtxn, Some("messages"))?;
                let due = opener.create_database::<Bytes, Bytes>(wtxn, Some("due"))?;
                let parked = opener.create_database::<Bytes, Bytes>(wtxn, Some("parked"))?;
                let delivered = opener.create_database::<Bytes, Bytes>(wtxn, Some("delivered"))?;
                let discarded = opener.create_database::<Bytes, Bytes>(wtxn, Some("discarded"))?;
                let meta = opener.create_database::<Bytes, Bytes>(wtxn, Some("meta"))?;
                match meta.get(wtxn, b"format")? {
                    Some(FORMAT_VERSION) => {}
                    None | Some(FORMAT_VERSION_JSON) => {
                        meta.put(wtxn, b"format", FORMAT_VERSION)?
                    }
                    Some(found) => {
                        return Ok(CommitOrAbort::Abort(
                            String::from_utf8_lossy(found).into_owned(),
                        ));
                    }
                }
                Ok(CommitOrAbort::Commit((
                    messages, due, parked, delivered, discarded, meta,
                )))
            })
            .map_err(heed_error)?;
        let (messages, due, parked, delivered, discarded, meta) = match tables {
            CommitOrAbort::Commit(tables) => tables,
            CommitOrAbort::Abort(found) => {
                return Err(SafError::Storage {
                    path: path.to_owned(),
                    message: format!(
                        "on-disk format `{found}` is not a supported format (`1` or `2`); \
                         export it with the version that wrote it"
                    ),
                });
            }
        };
        Ok(Shared {
            env,
            tables: Tables {
                messages,
                due,
                parked,
                delivered,
                discarded,
                meta,
            },
            gate: RwLock::new(()),
            path: path.to_owned(),
            wake_forwarder: tokio::sync::Notify::new(),
            link: std::sync::Mutex::new(None),
        })
    }

    pub fn heed_error(&self, error: heed::Error) -> SafError {
        SafError::from_heed(&self.path, error)
    }

    /// A read transaction under the resize gate. Keep it short: the writer cannot grow the
    /// map while it is open.
    pub fn read(&self) -> Result<Reader<'_>, SafError> {
        let gate = self
            .gate
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let txn = self.env.read_txn().map_err(|e| self.heed_error(e))?;
        Ok(Reader {
            txn,
            shared: self,
            _gate: gate,
        })
    }
}

/// A read transaction together with the gate guard that keeps resizing away.
pub(crate) struct Reader<'s> {
    // Field order matters: the transaction must end before the guard is released.
    pub txn: RoTxn<'s, WithoutTls>,
    pub shared: &'s Shared,
    _gate: RwLockReadGuard<'s, ()>,
}

impl Reader<'_> {
    pub fn message(&self, id: &str) -> Result<Option<Message>, SafError> {
        let bytes = self
            .shared
            .tables
            .messages
            .get(&self.txn, id.as_bytes())
            .map_err(|e| self.shared.heed_error(e))?;
        bytes
            .map(|bytes| decode_message(id.as_bytes(), bytes))
            .transpose()
    }

    /// Messages matching a filter, in index order, starting after index key `after` of the
    /// index being walked; at most `limit`. Returns the messages and where to resume (`None`
    /// when the walk is complete). Walks at most `scan_budget` index entries.
    pub fn scan(
        &self,
        filter: &ListFilter,
        resume: Option<&ScanPosition>,
        limit: usize,
        scan_budget: usize,
    ) -> Result<(Vec<Message>, Option<ScanPosition>), SafError> {
        let tables = &self.shared.tables;
        let mut wanted: Vec<IndexTable> = Vec::new();
        let statuses: Vec<Status> = if filter.statuses.is_empty() {
            Status::ALL.to_vec()
        } else {
            filter.statuses.clone()
        };
        for status in &statuses {
            let table = index_table_of(*status);
            if !wanted.contains(&table) {
                wanted.push(table);
            }
        }
        let mut found = Vec::new();
        let mut scanned = 0usize;
        let start_table = resume.map(|r| r.table);
        let mut started = start_table.is_none();
        for table in wanted {
            if !started {
                if Some(table) != start_table {
                    continue;
                }
                started = true;
            }
            // Where in this index to begin: after the resume key, or at the target's prefix.
            let prefix: Vec<u8> = match (&filter.target, table) {
                (Some(target), IndexTable::Due) => due_prefix(target),
                _ => Vec::new(),
            };
            let lower: Vec<u8> = match resume {
                Some(position) if position.table == table => position.after_key.clone(),
                _ => prefix.clone(),
            };
            // LMDB refuses an empty key, so "from the start" is an unbounded range.
            let lower_bound = match resume {
                Some(position) if position.table == table => Bound::Excluded(lower.as_slice()),
                _ if lower.is_empty() => Bound::Unbounded,
                _ => Bound::Included(lower.as_slice()),
            };
            let range = (lower_bound, Bound::<&[u8]>::Unbounded);
            let iter = tables
                .index(table)
                .range(&self.txn, &range)
                .map_err(|e| self.shared.heed_error(e))?;
            for entry in iter {
                let (key, _) = entry.map_err(|e| self.shared.heed_error(e))?;
                if !key.starts_with(&prefix) {
                    break;
                }
                scanned += 1;
                let id = id_of_index_key(table, key);
                if let Some(message) = self.message_by_bytes(id)?
                    && filter.matches(&message)
                {
                    found.push(message);
                }
                if found.len() >= limit || scanned >= scan_budget {
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

    fn message_by_bytes(&self, id: &[u8]) -> Result<Option<Message>, SafError> {
        let bytes = self
            .shared
            .tables
            .messages
            .get(&self.txn, id)
            .map_err(|e| self.shared.heed_error(e))?;
        bytes.map(|bytes| decode_message(id, bytes)).transpose()
    }

    /// Distinct targets that have entries in `due`, found by seeking past each target.
    pub fn due_targets(&self) -> Result<Vec<String>, SafError> {
        let due = self.shared.tables.due;
        let mut targets = Vec::new();
        let mut seek: Vec<u8> = Vec::new();
        loop {
            // LMDB refuses an empty key: the first seek is `first`.
            let entry = if seek.is_empty() {
                due.first(&self.txn)
            } else {
                due.get_greater_than_or_equal_to(&self.txn, seek.as_slice())
            }
            .map_err(|e| self.shared.heed_error(e))?;
            let Some((key, _)) = entry else { break };
            let Some(end) = key.iter().position(|byte| *byte == 0) else {
                // A key without separator cannot be written by this code; skip past it.
                seek = key.to_vec();
                seek.push(0);
                continue;
            };
            targets.push(String::from_utf8_lossy(&key[..end]).into_owned());
            seek = key[..end].to_vec();
            seek.push(1);
        }
        Ok(targets)
    }

    /// Due entries of one target, earliest first: `(due at, id)`, skipping ids in
    /// `skip`, stopping at the first entry due after `now` (returned as the next wake time)
    /// or after `want` entries.
    pub fn due_of_target(
        &self,
        target: &str,
        now: UnixMillis,
        want: usize,
        skip: &HashSet<String>,
    ) -> Result<(Vec<String>, Option<UnixMillis>), SafError> {
        let prefix = due_prefix(target);
        let range = (
            Bound::Included(prefix.as_slice()),
            Bound::<&[u8]>::Unbounded,
        );
        let iter = self
            .shared
            .tables
            .due
            .range(&self.txn, &range)
            .map_err(|e| self.shared.heed_error(e))?;
        let mut ids = Vec::new();
        for entry in iter {
            let (key, _) = entry.map_err(|e| self.shared.heed_error(e))?;
            if !key.starts_with(&prefix) {
                break;
            }
            let Some((due_at, id)) = split_time_key(&key[prefix.len()..]) else {
                continue;
            };
            let id = String::from_utf8_lossy(id);
            if skip.contains(id.as_ref()) {
                continue;
            }
            if due_at > now {
                return Ok((ids, Some(due_at)));
            }
            if ids.len() >= want {
                return Ok((ids, None));
            }
            ids.push(id.into_owned());
        }
        Ok((ids, None))
    }

    pub fn count(&self, table: IndexTable) -> Result<u64, SafError> {
        self.shared
            .tables
            .index(table)
            .len(&self.txn)
            .map_err(|e| self.shared.heed_error(e))
    }
}

/// Where a paginated walk over the indexes stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanPosition {
    pub table: IndexTable,
    pub after_key: Vec<u8>,
}

pub(crate) fn index_table_of(status: Status) -> IndexTable {
    match status {
        Status::Pending | Status::Retrying => IndexTable::Due,
        Status::Parked => IndexTable::Parked,
        Status::Delivered => IndexTable::Delivered,
        Status::Discarded => IndexTable::Discarded,
    }
}

pub(crate) fn due_prefix(target: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(target.len() + 1);
    key.extend_from_slice(target.as_bytes());
    key.push(0);
    key
}

fn time_key(into: &mut Vec<u8>, at: UnixMillis, id: &str) {
    into.extend_from_slice(&at.to_be_bytes());
    into.extend_from_slice(id.as_bytes());
}

fn split_time_key(key: &[u8]) -> Option<(UnixMillis, &[u8])> {
    let (time, id) = key.split_at_checked(8)?;
    let time: [u8; 8] = time.try_into().ok()?;
    Some((u64::from_be_bytes(time), id))
}

/// The index a message belongs in, and its key there.
pub(crate) fn index_key(message: &Message) -> (IndexTable, Vec<u8>) {
    let table = index_table_of(message.status);
    let mut key = Vec::with_capacity(message.target.len() + message.id.len() + 9);
    match table {
        IndexTable::Due => {
            key.extend_from_slice(&due_prefix(&message.target));
            let due_at = message.next_attempt_at_ms.unwrap_or(message.updated_at_ms);
            time_key(&mut key, due_at, &message.id);
        }
        _ => time_key(&mut key, message.updated_at_ms, &message.id),
    }
    (table, key)
}

/// The message id at the end of an index key.
pub(crate) fn id_of_index_key(table: IndexTable, key: &[u8]) -> &[u8] {
    let rest = match table {
        IndexTable::Due => match key.iter().position(|byte| *byte == 0) {
            Some(end) => &key[end + 1..],
            None => key,
        },
        _ => key,
    };
    rest.get(8..).unwrap_or_default()
}

/// The message stored under `key` (its id): a binary record, or a JSON one of format 1
/// ([`super::record`]).
pub(crate) fn decode_message(key: &[u8], bytes: &[u8]) -> Result<Message, SafError> {
    super::record::decode(key, bytes)
}

/// The stored record of a message (binary, [`super::record`]).
pub(crate) fn encode_message(message: &Message) -> Vec<u8> {
    super::record::encode(message)
}

/// Check an id or a target: non-empty, short enough for LMDB keys, and without NUL (the
/// `due` key separator).
pub(crate) fn validate_key_part(what: &str, text: &str) -> Result<(), SafError> {
    let max = if what == "id" {
        MAX_ID_BYTES
    } else {
        MAX_TARGET_BYTES
    };
    if text.is_empty() {
        return Err(SafError::InvalidInput(format!("{what} is empty")));
    }
    if text.len() > max {
        return Err(SafError::InvalidInput(format!(
            "{what} is {} bytes long; at most {max} are allowed",
            text.len()
        )));
    }
    if text.contains('\0') {
        return Err(SafError::InvalidInput(format!(
            "{what} contains a NUL character"
        )));
    }
    Ok(())
}

/// A process-wide random source: `RandomState` is seeded from the OS once, and SipHash of a
/// counter under that key is unpredictable enough for ids and jitter.
pub(crate) fn random_u64(salt: u64) -> u64 {
    static STATE: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = STATE.get_or_init(Default::default).build_hasher();
    hasher.write_u64(salt);
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// A fresh UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, a 12-bit counter that keeps
/// ids strictly increasing within this process, and 62 random bits.
pub(crate) fn new_id(now: UnixMillis) -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let mut previous = LAST.load(Ordering::Relaxed);
    let stamp = loop {
        let candidate = (now << 12).max(previous + 1);
        match LAST.compare_exchange_weak(previous, candidate, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => break candidate,
            Err(actual) => previous = actual,
        }
    };
    let millis = stamp >> 12;
    let counter = stamp & 0xfff;
    let random = random_u64(stamp);
    let high: u64 = (millis << 16) | (0x7 << 12) | counter;
    let low: u64 = (0b10 << 62) | (random >> 2);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_v7_and_increase() {
        let first = new_id(1_700_000_000_000);
        let second = new_id(1_700_000_000_000);
        assert_eq!(first.len(), 36);
        assert_eq!(&first[14..15], "7");
        assert!(second > first, "{second} after {first}");
        let earlier_clock = new_id(1_600_000_000_000);
        assert!(earlier_clock > second, "ids never go backwards");
    }

    #[test]
    fn index_keys_carry_the_id() {
        let key = {
            let mut key = due_prefix("MES/PostReading");
            time_key(&mut key, 42, "abc");
            key
        };
        assert_eq!(id_of_index_key(IndexTable::Due, &key), b"abc");
        let mut parked = Vec::new();
        time_key(&mut parked, 42, "xyz");
        assert_eq!(id_of_index_key(IndexTable::Parked, &parked), b"xyz");
    }

    /// Resident bytes of this process's mapping of `file` (from /proc/self/smaps).
    fn resident_bytes_of(file: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        let inode = std::fs::metadata(file).expect("data file").ino();
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let mut inside = false;
        let mut total = 0;
        for line in smaps.lines() {
            if let Some(value) = line.strip_prefix("Rss:") {
                if inside {
                    let kib: u64 = value.trim().trim_end_matches("kB").trim().parse().unwrap();
                    total += kib * 1024;
                }
            } else if line
                .split_whitespace()
                .next()
                .is_some_and(|f| f.contains('-'))
            {
                inside = parse_mapping(line, inode).is_some();
            }
        }
        total
    }

    #[test]
    fn trimming_unmaps_the_data_files_pages_and_keeps_their_bytes() {
        let dir = tempfile::tempdir().expect("dir");
        let shared = Shared::open(dir.path(), 64 << 20).expect("open");
        let data = dir.path().join("data.mdb");
        let record = vec![7u8; 600];
        let mut wtxn = shared.env.write_txn().expect("write txn");
        for n in 0..20_000u32 {
            let key = format!("{n:08}");
            shared
                .tables
                .messages
                .put(&mut wtxn, key.as_bytes(), &record)
                .expect("put");
        }
        wtxn.commit().expect("commit");
        let read_all = || {
            let rtxn = shared.env.read_txn().expect("read txn");
            let mut count = 0;
            for entry in shared.tables.messages.iter(&rtxn).expect("iter") {
                let (_, value) = entry.expect("entry");
                assert_eq!(value, record.as_slice());
                count += 1;
            }
            count
        };
        assert_eq!(read_all(), 20_000);
        let before = resident_bytes_of(&data);
        assert!(before > 8 << 20, "reading 12 MB maps it: {before} bytes");
        shared.trim_mapped_pages();
        let after = resident_bytes_of(&data);
        assert!(
            after < 1 << 20,
            "{before} bytes before, {after} after the trim"
        );
        // The bytes are still there, read back through the same map.
        assert_eq!(read_all(), 20_000);
    }

    #[test]
    fn key_parts_are_checked() {
        assert!(validate_key_part("id", "").is_err());
        assert!(validate_key_part("target", "a\0b").is_err());
        assert!(validate_key_part("id", &"x".repeat(MAX_ID_BYTES + 1)).is_err());
        assert!(validate_key_part("target", "MES/PostReading").is_ok());
    }
}
