//! The site node's own state in LMDB (heed): attribute values, the event
//! log, and the deployment bundle it accepted. One environment per site node
//! under `{data_dir}/site-{name}/state`, beside the store-and-forward buffer.
//!
//! Tables:
//! - `attributes`: `instance \0 attribute` → the value as JSON text. Written
//!   through on every change, so a restart keeps the last values.
//! - `events`: big-endian `(unix nanos, sequence)` → an [`Event`] as JSON;
//!   keys sort by time, so retention deletes from the front.
//! - `meta`: `bundle` → the accepted [`Bundle`] as JSON.
//!
//! The map is 4 GiB of address space (LMDB files grow as they fill, so this
//! costs nothing until used); the event log is kept small by retention.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use heed::types::Bytes;
use heed::{Database, Env, EnvOpenOptions, WithoutTls};
use serde::{Deserialize, Serialize};

use crate::protocol::Bundle;

type Table = Database<'static, Bytes, Bytes>;

const MAP_SIZE: usize = 4 << 30;

/// One entry of the site event log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// RFC 3339, UTC.
    pub time: String,
    /// `script_failed`, `delivery_failed`, `message_parked`, `message_buffered`,
    /// `deployed`, `deploy_refused`, `started`, `stopped`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
}

/// Which events to return.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventFilter {
    pub kind: Option<String>,
    pub instance: Option<String>,
    /// Only events at or after this many milliseconds since the epoch.
    pub since_ms: Option<u64>,
    /// At most this many, newest first (default 100).
    pub limit: Option<usize>,
}

/// A site node's state environment.
pub struct SiteStore {
    env: Env<WithoutTls>,
    attributes: Table,
    events: Table,
    meta: Table,
    path: PathBuf,
    /// One writer at a time (LMDB allows one write transaction anyway; the
    /// mutex keeps the waiting in Rust, off LMDB's lock).
    write: Mutex<()>,
    sequence: AtomicU32,
}

impl std::fmt::Debug for SiteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A storage failure, with the environment's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

impl SiteStore {
    /// Opens (creating if needed) the state environment in `path`.
    pub fn open(path: &Path) -> Result<SiteStore, StoreError> {
        std::fs::create_dir_all(path)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", path.display())))?;
        let error = |e: heed::Error| StoreError(format!("site state {}: {e}", path.display()));
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(MAP_SIZE).max_dbs(4);
        // SAFETY: LMDB memory-maps the data file; it is undefined behaviour if
        // the file is truncated or rewritten by something else while mapped,
        // or opened twice by this process. heed refuses a second open in the
        // same process, and the directory belongs to this site node alone.
        let env = unsafe { options.open(path) }.map_err(error)?;
        env.clear_stale_readers().map_err(error)?;
        let wtxn = env.write_txn().map_err(error)?;
        let tables = env
            .create_databases_and_commit(wtxn, |opener, wtxn| -> heed::Result<_> {
                let attributes =
                    opener.create_database::<Bytes, Bytes>(wtxn, Some("attributes"))?;
                let events = opener.create_database::<Bytes, Bytes>(wtxn, Some("events"))?;
                let meta = opener.create_database::<Bytes, Bytes>(wtxn, Some("meta"))?;
                Ok(heed::CommitOrAbort::<_, ()>::Commit((
                    attributes, events, meta,
                )))
            })
            .map_err(error)?;
        let heed::CommitOrAbort::Commit((attributes, events, meta)) = tables else {
            return Err(StoreError(format!(
                "site state {}: not created",
                path.display()
            )));
        };
        Ok(SiteStore {
            env,
            attributes,
            events,
            meta,
            path: path.to_owned(),
            write: Mutex::new(()),
            sequence: AtomicU32::new(0),
        })
    }

    fn error(&self, e: heed::Error) -> StoreError {
        StoreError(format!("site state {}: {e}", self.path.display()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every stored attribute value of `instance`.
    pub fn attributes(
        &self,
        instance: &str,
    ) -> Result<BTreeMap<String, serde_json::Value>, StoreError> {
        let rtxn = self.env.read_txn().map_err(|e| self.error(e))?;
        let prefix = attribute_key(instance, "");
        let mut values = BTreeMap::new();
        for entry in self
            .attributes
            .prefix_iter(&rtxn, &prefix)
            .map_err(|e| self.error(e))?
        {
            let (key, value) = entry.map_err(|e| self.error(e))?;
            let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            // A value that no longer parses (written by a newer format) is
            // dropped: the instance starts from its initial value instead.
            if let Ok(value) = serde_json::from_slice(value) {
                values.insert(name, value);
            }
        }
        Ok(values)
    }

    /// Stores several attribute values of one instance in one transaction.
    pub fn put_attributes(
        &self,
        instance: &str,
        values: &[(String, serde_json::Value)],
    ) -> Result<(), StoreError> {
        let _guard = self.lock();
        let mut wtxn = self.env.write_txn().map_err(|e| self.error(e))?;
        for (name, value) in values {
            let bytes = serde_json::to_vec(value)
                .map_err(|e| StoreError(format!("attribute `{name}`: {e}")))?;
            self.attributes
                .put(&mut wtxn, &attribute_key(instance, name), &bytes)
                .map_err(|e| self.error(e))?;
        }
        wtxn.commit().map_err(|e| self.error(e))
    }

    /// Appends an event; its time is now.
    pub fn record(&self, mut event: Event) -> Result<(), StoreError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if event.time.is_empty() {
            event.time = scl_stdlib::core_modules::rfc3339(
                i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
                now.subsec_millis(),
            );
        }
        let mut key = Vec::with_capacity(20);
        key.extend_from_slice(&now.as_nanos().min(u128::from(u64::MAX)).to_be_bytes()[8..]);
        key.extend_from_slice(&self.sequence.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        let bytes = serde_json::to_vec(&event).map_err(|e| StoreError(e.to_string()))?;
        let _guard = self.lock();
        let mut wtxn = self.env.write_txn().map_err(|e| self.error(e))?;
        self.events
            .put(&mut wtxn, &key, &bytes)
            .map_err(|e| self.error(e))?;
        wtxn.commit().map_err(|e| self.error(e))
    }

    /// Events matching `filter`, newest first.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let limit = filter.limit.unwrap_or(100);
        let since_nanos = filter.since_ms.map(|ms| ms.saturating_mul(1_000_000));
        let rtxn = self.env.read_txn().map_err(|e| self.error(e))?;
        let mut found = Vec::new();
        for entry in self.events.rev_iter(&rtxn).map_err(|e| self.error(e))? {
            if found.len() >= limit {
                break;
            }
            let (key, value) = entry.map_err(|e| self.error(e))?;
            if since_nanos.is_some_and(|since| key_nanos(key) < since) {
                break;
            }
            let Ok(event) = serde_json::from_slice::<Event>(value) else {
                continue;
            };
            if filter.kind.as_ref().is_some_and(|k| *k != event.kind) {
                continue;
            }
            if filter
                .instance
                .as_ref()
                .is_some_and(|i| Some(i) != event.instance.as_ref())
            {
                continue;
            }
            found.push(event);
        }
        Ok(found)
    }

    /// Deletes events older than `max_age`; returns how many.
    pub fn prune_events(&self, max_age: std::time::Duration) -> Result<usize, StoreError> {
        let cutoff = SystemTime::now()
            .checked_sub(max_age)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64);
        let _guard = self.lock();
        let mut wtxn = self.env.write_txn().map_err(|e| self.error(e))?;
        let mut removed = 0;
        let mut iter = self.events.iter_mut(&mut wtxn).map_err(|e| self.error(e))?;
        while let Some(entry) = iter.next() {
            let (key, _) = entry.map_err(|e| self.error(e))?;
            if key_nanos(key) >= cutoff {
                break;
            }
            // SAFETY: the key and value borrowed from this entry are not used
            // after the deletion (heed's requirement for `del_current`).
            let deleted = unsafe { iter.del_current() }.map_err(|e| self.error(e))?;
            removed += usize::from(deleted);
        }
        drop(iter);
        wtxn.commit().map_err(|e| self.error(e))?;
        Ok(removed)
    }

    /// The bundle this site accepted last, if any.
    pub fn bundle(&self) -> Result<Option<Bundle>, StoreError> {
        let rtxn = self.env.read_txn().map_err(|e| self.error(e))?;
        let Some(bytes) = self.meta.get(&rtxn, b"bundle").map_err(|e| self.error(e))? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes)
            .map(Some)
            .map_err(|e| StoreError(format!("the stored bundle is unreadable: {e}")))
    }

    /// Stores the accepted bundle.
    pub fn put_bundle(&self, bundle: &Bundle) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(bundle).map_err(|e| StoreError(e.to_string()))?;
        let _guard = self.lock();
        let mut wtxn = self.env.write_txn().map_err(|e| self.error(e))?;
        self.meta
            .put(&mut wtxn, b"bundle", &bytes)
            .map_err(|e| self.error(e))?;
        wtxn.commit().map_err(|e| self.error(e))
    }
}

fn attribute_key(instance: &str, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(instance.len() + name.len() + 1);
    key.extend_from_slice(instance.as_bytes());
    key.push(0);
    key.extend_from_slice(name.as_bytes());
    key
}

fn key_nanos(key: &[u8]) -> u64 {
    key.get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, instance: &str) -> Event {
        Event {
            time: String::new(),
            kind: kind.into(),
            instance: Some(instance.into()),
            script: None,
            message: "m".into(),
            delivery_id: None,
        }
    }

    #[test]
    fn attributes_survive_reopening() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let store = SiteStore::open(dir.path()).expect("open");
            store
                .put_attributes(
                    "P-1",
                    &[("Speed".into(), json!(1.5)), ("On".into(), json!(true))],
                )
                .expect("put");
            store
                .put_attributes("P-10", &[("Speed".into(), json!(9))])
                .expect("put");
        }
        let store = SiteStore::open(dir.path()).expect("reopen");
        let values = store.attributes("P-1").expect("read");
        assert_eq!(values.len(), 2);
        assert_eq!(values["Speed"], json!(1.5));
    }

    #[test]
    fn events_filter_and_prune() {
        let dir = tempfile::tempdir().expect("dir");
        let store = SiteStore::open(dir.path()).expect("open");
        store.record(event("script_failed", "A")).expect("record");
        store.record(event("deployed", "B")).expect("record");
        store.record(event("script_failed", "B")).expect("record");
        let failed = store
            .events(&EventFilter {
                kind: Some("script_failed".into()),
                ..EventFilter::default()
            })
            .expect("query");
        assert_eq!(failed.len(), 2);
        assert_eq!(failed[0].instance.as_deref(), Some("B"), "newest first");
        assert_eq!(
            store
                .prune_events(std::time::Duration::from_secs(3600))
                .expect("prune"),
            0
        );
        assert_eq!(
            store
                .prune_events(std::time::Duration::ZERO)
                .expect("prune"),
            3
        );
        assert!(
            store
                .events(&EventFilter::default())
                .expect("query")
                .is_empty()
        );
    }
}
