//! Replication of the buffer from the active node of a site to its standby: primary-backup
//! log shipping over one TCP connection (the scheme of DRBD and PostgreSQL streaming
//! replication, not a consensus protocol).
//!
//! What it promises:
//! - **The standby holds what the active acknowledged.** The writer thread records the raw
//!   table writes of every group commit ([`super::writer::Journal`]) and, after its local
//!   commit, hands them to the link thread ([`run_link`]). In `sync` mode the writer waits
//!   until the standby has applied the batch in one LMDB transaction and committed it durably
//!   (its answer is [`Frame::Ack`]), and only then tells the producers "buffered" — protocol C
//!   in DRBD's terms. In `async` mode it does not wait: a window of acknowledged batches may be
//!   missing on the standby when the active dies.
//! - **Availability over strict sync.** When the standby cannot be reached (or does not answer
//!   within the ack timeout) the link is *down*: the active keeps acknowledging on its own
//!   disk alone and keeps trying to reconnect; the state is visible to the caller through the
//!   [`LinkStatus`] watch. This is DRBD with fencing disabled; a takeover while the link is
//!   down loses what the active acknowledged meanwhile.
//! - **A returning standby is brought up to date first.** Every connection starts with a full
//!   snapshot (every record of every data table, read in one read transaction) followed by the
//!   live stream. Every batch carries its position (`seq`, kept in the `meta` table inside the
//!   batch's own transaction), so the link knows which queued batches the snapshot already
//!   holds. A standby whose snapshot is not complete ([`META_REPLICA`]) never takes over.
//! - **Fencing by epoch.** Each buffer keeps an epoch in `meta`, raised on every takeover. A
//!   standby refuses an active with a lower epoch ([`Frame::Fenced`]); the refused node must
//!   stop acting as active. Ties go to the node configured as primary.
//!
//! - **Only the site's nodes speak on the link.** Every connection starts with a mutual
//!   challenge-response ([`LinkAuth`]) keyed by the site's central↔site token: the accepting
//!   node sends a random nonce, the connecting node answers HMAC-SHA256 over it and its own
//!   nonce, the accepting node proves itself on that one. The token never crosses the wire,
//!   an answer is worthless for any other nonce, and a connection that fails is closed and
//!   counted ([`LinkMetrics`]) before anything it sends is read as a frame to apply.
//!
//! Frames are a big-endian `u32` length, a version byte ([`PROTOCOL_VERSION`]) and a bincode
//! body. Nothing here runs scripts: the node orchestration (which role to start in, when to
//! take over) is [`crate::failover`].

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use heed::RwTxn;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::Saf;
use super::error::SafError;
use super::store::{Shared, TableId};

/// The version byte of every frame; a peer speaking another version is disconnected.
///
/// Version 3: the `messages` records a batch or snapshot carries are binary
/// (`saf/record.rs`). A node of version 2 reads only JSON records, so it must not hold a
/// replica of a newer node (it would find them damaged on takeover): the two refuse each
/// other, and a pair is upgraded node by node with the link down meanwhile.
pub const PROTOCOL_VERSION: u8 = 3;
/// Largest frame accepted (a snapshot chunk or batch is cut well below it).
const MAX_FRAME_BYTES: usize = 256 << 20;
/// A snapshot chunk is sent once it holds this many bytes of keys and values.
const SNAPSHOT_CHUNK_BYTES: usize = 4 << 20;

/// `meta` key: the position of the last batch (big-endian u64).
pub(crate) const META_SEQ: &[u8] = b"replication_seq";
/// `meta` key: the epoch (big-endian u64), raised on every takeover.
pub(crate) const META_EPOCH: &[u8] = b"replication_epoch";
/// `meta` key: `complete` once a snapshot was applied in full, `partial` while one is.
pub(crate) const META_REPLICA: &[u8] = b"replication_replica";

/// One raw table write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Op {
    pub table: TableId,
    pub key: Vec<u8>,
    /// `None` deletes the key.
    pub value: Option<Vec<u8>>,
}

/// What travels on the link.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Frame {
    /// An active node introduces itself (first frame of its connection).
    Hello {
        site: String,
        epoch: u64,
        primary: bool,
    },
    /// The standby accepts the active.
    Welcome {
        epoch: u64,
    },
    /// The receiver has the newer history (`epoch`): the sender must not act as active.
    Fenced {
        epoch: u64,
    },
    /// A starting node asks which role the peer is in.
    Probe,
    /// The answer to a probe.
    Role {
        active: bool,
        epoch: u64,
        primary: bool,
    },
    /// A piece of a snapshot; `clear` on the first one empties the standby's data tables.
    Snapshot {
        clear: bool,
        ops: Vec<Op>,
    },
    /// The snapshot is complete; it holds every batch up to `seq`.
    SnapshotEnd {
        seq: u64,
    },
    /// One group commit of the active.
    Batch {
        seq: u64,
        ops: Vec<Op>,
    },
    Heartbeat,
    /// The standby committed the frame before it durably.
    Ack,
    /// The accepting node's nonce (first frame of every connection).
    Challenge {
        nonce: Vec<u8>,
    },
    /// The connecting node's answer to the challenge, and its own nonce.
    Proof {
        mac: Vec<u8>,
        nonce: Vec<u8>,
    },
    /// The accepting node's answer to the connecting node's nonce.
    Proven {
        mac: Vec<u8>,
    },
}

/// Length of a handshake nonce.
const NONCE_BYTES: usize = 32;
/// Domain separation of the handshake's MACs.
const AUTH_LABEL: &[u8] = b"scl-replication";
/// How long a handshake may take at most (a silent peer must not hold the accept loop).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The key of a site's link: its name and its central↔site token (`[[site]] token_env`).
/// `Debug` never shows the token.
#[derive(Clone)]
pub struct LinkAuth {
    site: String,
    token: Arc<str>,
}

impl std::fmt::Debug for LinkAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkAuth")
            .field("site", &self.site)
            .finish_non_exhaustive()
    }
}

/// Which side of a connection a MAC is computed for (so an answer cannot be reflected).
#[derive(Clone, Copy)]
enum Side {
    Connecting,
    Accepting,
}

impl LinkAuth {
    pub fn new(site: &str, token: &str) -> LinkAuth {
        LinkAuth {
            site: site.to_owned(),
            token: Arc::from(token),
        }
    }

    fn mac(&self, side: Side, nonce: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.token.as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(AUTH_LABEL);
        mac.update(match side {
            Side::Connecting => b"/connecting/",
            Side::Accepting => b"/accepting//",
        });
        mac.update(nonce);
        mac.update(self.site.as_bytes());
        mac
    }

    fn answer(&self, side: Side, nonce: &[u8]) -> Vec<u8> {
        self.mac(side, nonce).finalize().into_bytes().to_vec()
    }

    /// Constant-time check of `answer` (`hmac`'s `verify_slice` compares with `subtle`).
    fn verify(&self, side: Side, nonce: &[u8], answer: &[u8]) -> bool {
        nonce.len() == NONCE_BYTES && self.mac(side, nonce).verify_slice(answer).is_ok()
    }
}

fn nonce() -> std::io::Result<Vec<u8>> {
    let mut nonce = vec![0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce)
        .map_err(|e| std::io::Error::other(format!("no randomness: {e}")))?;
    Ok(nonce)
}

/// The connecting side of the handshake: answers the peer's challenge and checks the peer's
/// proof. An error means the peer is not a node of this site (or the link broke).
fn authenticate_connecting(
    reader: &mut impl Read,
    writer: &mut impl Write,
    auth: &LinkAuth,
) -> std::io::Result<()> {
    let Frame::Challenge { nonce: theirs } = read_frame(reader)? else {
        return Err(std::io::Error::other("the peer sent no challenge"));
    };
    if theirs.len() != NONCE_BYTES {
        return Err(std::io::Error::other("the peer's challenge is malformed"));
    }
    let ours = nonce()?;
    write_frame(
        writer,
        &Frame::Proof {
            mac: auth.answer(Side::Connecting, &theirs),
            nonce: ours.clone(),
        },
    )?;
    match read_frame(reader)? {
        Frame::Proven { mac } if auth.verify(Side::Accepting, &ours, &mac) => Ok(()),
        _ => Err(std::io::Error::other(
            "the peer failed the link handshake (another site token?)",
        )),
    }
}

/// Why an accepted connection was not served.
enum Accepted {
    /// The peer proved the token.
    Authenticated,
    /// The peer failed the handshake (counted and logged by the caller).
    Refused(String),
}

/// The accepting side of the handshake.
fn authenticate_accepting(
    reader: &mut impl Read,
    writer: &mut impl Write,
    auth: &LinkAuth,
) -> std::io::Result<Accepted> {
    let ours = nonce()?;
    write_frame(
        writer,
        &Frame::Challenge {
            nonce: ours.clone(),
        },
    )?;
    let (mac, theirs) = match read_frame(reader) {
        Ok(Frame::Proof { mac, nonce }) => (mac, nonce),
        Ok(other) => {
            return Ok(Accepted::Refused(format!(
                "sent {} instead of a proof",
                frame_name(&other)
            )));
        }
        // A frame of another version, oversized or undecodable.
        Err(error) if error.kind() == std::io::ErrorKind::Other => {
            return Ok(Accepted::Refused(format!(
                "sent an unreadable frame: {error}"
            )));
        }
        // The peer went away or stayed silent (a probe that gave up, a port scanner): it
        // sent nothing to refuse.
        Err(error) => return Err(error),
    };
    if !auth.verify(Side::Connecting, &ours, &mac) {
        return Ok(Accepted::Refused(
            "wrong proof (another site token?)".to_owned(),
        ));
    }
    if theirs.len() != NONCE_BYTES {
        return Ok(Accepted::Refused("malformed nonce".to_owned()));
    }
    write_frame(
        writer,
        &Frame::Proven {
            mac: auth.answer(Side::Accepting, &theirs),
        },
    )?;
    Ok(Accepted::Authenticated)
}

/// The variant of a frame, for logs (never its content).
fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Hello { .. } => "Hello",
        Frame::Welcome { .. } => "Welcome",
        Frame::Fenced { .. } => "Fenced",
        Frame::Probe => "Probe",
        Frame::Role { .. } => "Role",
        Frame::Snapshot { .. } => "Snapshot",
        Frame::SnapshotEnd { .. } => "SnapshotEnd",
        Frame::Batch { .. } => "Batch",
        Frame::Heartbeat => "Heartbeat",
        Frame::Ack => "Ack",
        Frame::Challenge { .. } => "Challenge",
        Frame::Proof { .. } => "Proof",
        Frame::Proven { .. } => "Proven",
    }
}

/// Authenticates an accepted connection; refusals are counted and logged without the token
/// or the proof: one line for the first, then at most one a minute with the count (a
/// misconfigured peer retries every second). `true` when the peer may go on.
fn admit(
    reader: &mut impl Read,
    writer: &mut impl Write,
    auth: &LinkAuth,
    metrics: &LinkMetrics,
    remote: &SocketAddr,
) -> bool {
    match authenticate_accepting(reader, writer, auth) {
        Ok(Accepted::Authenticated) => true,
        Ok(Accepted::Refused(why)) => {
            let refused = metrics.refused.fetch_add(1, Ordering::Relaxed) + 1;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs());
            let last = metrics.refusal_logged_at.load(Ordering::Relaxed);
            if (last == 0 || now >= last + 60)
                && metrics
                    .refusal_logged_at
                    .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::warn!(site = %auth.site, %remote, refused, "replication connection refused: {why}");
            }
            false
        }
        Err(error) => {
            tracing::debug!(site = %auth.site, %remote, %error, "replication handshake broke off");
            false
        }
    }
}

/// The state of one node's side of the link, for `/metrics` (shared by the link threads and
/// the HTTP handlers; lock-free).
#[derive(Debug, Default)]
pub struct LinkMetrics {
    /// [`LinkState`] as a byte.
    state: AtomicU8,
    /// Whether this node is the active one.
    active: AtomicU8,
    /// Active: the last batch the standby acknowledged. Standby: the last batch applied.
    pub position: AtomicU64,
    /// This node's epoch.
    pub epoch: AtomicU64,
    /// Takeovers by this node since it started.
    pub takeovers: AtomicU64,
    /// Connections that failed the handshake.
    pub refused: AtomicU64,
    /// When a refusal was last logged (Unix seconds; 0: never).
    refusal_logged_at: AtomicU64,
    /// [`TakeoverHeld`] as a byte; 0 while no takeover is held back.
    held: AtomicU8,
}

/// The state of the link as `/metrics` shows it, on either node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Down = 0,
    Syncing = 1,
    Up = 2,
    Fenced = 3,
}

impl LinkState {
    pub const ALL: [LinkState; 4] = [
        LinkState::Down,
        LinkState::Syncing,
        LinkState::Up,
        LinkState::Fenced,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LinkState::Down => "down",
            LinkState::Syncing => "syncing",
            LinkState::Up => "up",
            LinkState::Fenced => "fenced",
        }
    }
}

impl LinkMetrics {
    pub fn set_state(&self, state: LinkState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn state(&self) -> LinkState {
        match self.state.load(Ordering::Relaxed) {
            1 => LinkState::Syncing,
            2 => LinkState::Up,
            3 => LinkState::Fenced,
            _ => LinkState::Down,
        }
    }

    pub fn set_active(&self, active: bool) {
        self.active.store(u8::from(active), Ordering::Relaxed);
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed) == 1
    }

    pub fn set_held(&self, held: Option<TakeoverHeld>) {
        self.held
            .store(held.map_or(0, |h| h as u8), Ordering::Relaxed);
    }

    /// Why this standby holds back a takeover, if it does.
    pub fn held(&self) -> Option<TakeoverHeld> {
        match self.held.load(Ordering::Relaxed) {
            1 => Some(TakeoverHeld::ActiveAlive),
            2 => Some(TakeoverHeld::NoWitness),
            _ => None,
        }
    }

    /// Appends the Prometheus text of these gauges and counters for `site`.
    pub fn render(&self, site: &str, out: &mut String) {
        use std::fmt::Write as _;
        let role = if self.is_active() {
            "active"
        } else {
            "standby"
        };
        let current = self.state();
        let _ = writeln!(
            out,
            "# HELP scl_replication_state State of the replication link on this node (1 for the current state)."
        );
        let _ = writeln!(out, "# TYPE scl_replication_state gauge");
        for state in LinkState::ALL {
            let _ = writeln!(
                out,
                "scl_replication_state{{site=\"{site}\",role=\"{role}\",state=\"{}\"}} {}",
                state.name(),
                u8::from(state == current)
            );
        }
        for (name, kind, help, value) in [
            (
                "scl_replication_position",
                "gauge",
                "Active: the last batch the standby acknowledged; standby: the last batch applied.",
                self.position.load(Ordering::Relaxed),
            ),
            (
                "scl_replication_epoch",
                "gauge",
                "The epoch of this node (raised on every takeover).",
                self.epoch.load(Ordering::Relaxed),
            ),
            (
                "scl_replication_takeovers_total",
                "counter",
                "Takeovers by this node since it started.",
                self.takeovers.load(Ordering::Relaxed),
            ),
            (
                "scl_replication_takeover_held",
                "gauge",
                "1 while a standby holds back a takeover on its witness's word (or silence).",
                u64::from(self.held().is_some()),
            ),
            (
                "scl_replication_refused_total",
                "counter",
                "Link connections refused for failing the handshake.",
                self.refused.load(Ordering::Relaxed),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name}{{site=\"{site}\",role=\"{role}\"}} {value}");
        }
    }
}

/// Writes one frame.
pub(crate) fn write_frame(out: &mut impl Write, frame: &Frame) -> std::io::Result<()> {
    let body = bincode::serialize(frame).map_err(std::io::Error::other)?;
    let length = u32::try_from(body.len() + 1)
        .ok()
        .filter(|length| (*length as usize) <= MAX_FRAME_BYTES)
        .ok_or_else(|| std::io::Error::other("replication frame too large"))?;
    out.write_all(&length.to_be_bytes())?;
    out.write_all(&[PROTOCOL_VERSION])?;
    out.write_all(&body)?;
    out.flush()
}

/// Reads one frame; a wrong version or an oversized or undecodable frame is an error.
pub(crate) fn read_frame(input: &mut impl Read) -> std::io::Result<Frame> {
    let mut length = [0u8; 4];
    input.read_exact(&mut length)?;
    let length = u32::from_be_bytes(length) as usize;
    if length == 0 || length > MAX_FRAME_BYTES {
        return Err(std::io::Error::other(format!(
            "replication frame of {length} bytes refused"
        )));
    }
    let mut body = vec![0u8; length];
    input.read_exact(&mut body)?;
    if body[0] != PROTOCOL_VERSION {
        return Err(std::io::Error::other(format!(
            "replication protocol version {} is not the supported {PROTOCOL_VERSION}",
            body[0]
        )));
    }
    bincode::deserialize(&body[1..]).map_err(std::io::Error::other)
}

/// Reads a big-endian u64 from `meta` inside a write transaction.
pub(crate) fn read_u64(
    shared: &Shared,
    txn: &RwTxn<'_>,
    key: &[u8],
) -> Result<Option<u64>, heed::Error> {
    Ok(shared
        .tables
        .meta
        .get(txn, key)?
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .map(u64::from_be_bytes))
}

/// The state of the active side of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    /// No standby connected: acknowledgements rest on this node's disk alone.
    Down,
    /// A snapshot is being sent.
    Syncing,
    /// The standby is current; every batch is shipped.
    Up,
    /// The peer holds a newer epoch: this node must stop acting as active.
    Fenced { peer_epoch: u64 },
}

/// One committed batch for the link thread; `done` is answered (or dropped) once the batch
/// is on the standby's disk or the link is down.
pub(crate) struct Shipment {
    pub seq: u64,
    pub ops: Vec<Op>,
    pub done: Option<std::sync::mpsc::SyncSender<()>>,
}

/// The writer's end of the link.
#[derive(Clone)]
pub(crate) struct LinkSender {
    sender: Sender<Shipment>,
    sync: bool,
}

impl LinkSender {
    /// Hands a committed batch to the link; in sync mode waits for the standby (or for the
    /// link to give up on it).
    pub fn ship(&self, seq: u64, ops: Vec<Op>) {
        if self.sync {
            let (done, waited) = std::sync::mpsc::sync_channel(1);
            let shipment = Shipment {
                seq,
                ops,
                done: Some(done),
            };
            if self.sender.send(shipment).is_ok() {
                // An error means the link thread dropped the answer: the link is down.
                let _ = waited.recv();
            }
        } else {
            let _ = self.sender.send(Shipment {
                seq,
                ops,
                done: None,
            });
        }
    }
}

/// How the active node's link runs.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The site's name (checked by the standby).
    pub site: String,
    /// The standby's link address.
    pub peer: String,
    /// This node's epoch.
    pub epoch: u64,
    /// Whether this node is the site's configured primary (wins epoch ties).
    pub primary: bool,
    /// `sync` (wait for the standby before acknowledging) or not.
    pub sync: bool,
    /// How long to wait for the standby's answer before the link is declared down; the
    /// heartbeat is sent at a third of it.
    pub ack_timeout: Duration,
    /// The key of the link.
    pub auth: LinkAuth,
    /// Where this node's link state is published for `/metrics`.
    pub metrics: Arc<LinkMetrics>,
}

/// Starts shipping every later group commit of `saf` to the standby at `config.peer`, and
/// returns the watch of the link's state. The link thread ends when the buffer closes or
/// when the peer fences this node.
pub fn start_link(
    saf: &Saf,
    config: LinkConfig,
) -> Result<tokio::sync::watch::Receiver<LinkStatus>, SafError> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let (status, watch) = tokio::sync::watch::channel(LinkStatus::Down);
    // Weak: the link must not keep a closed buffer's environment open.
    let shared = Arc::downgrade(&saf.shared_arc());
    let path = saf.path().to_owned();
    let sync = config.sync;
    std::thread::Builder::new()
        .name("saf-link".to_owned())
        .spawn(move || run_link(&shared, &config, &receiver, &status))
        .map_err(|source| SafError::Io { path, source })?;
    saf.shared().attach_link(LinkSender { sender, sync });
    Ok(watch)
}

fn run_link(
    shared: &Weak<Shared>,
    config: &LinkConfig,
    receiver: &Receiver<Shipment>,
    status: &tokio::sync::watch::Sender<LinkStatus>,
) {
    let heartbeat = config.ack_timeout / 3;
    config.metrics.set_active(true);
    config.metrics.epoch.store(config.epoch, Ordering::Relaxed);
    let report = |state: LinkStatus| {
        config.metrics.set_state(match state {
            LinkStatus::Down => LinkState::Down,
            LinkStatus::Syncing => LinkState::Syncing,
            LinkStatus::Up => LinkState::Up,
            LinkStatus::Fenced { .. } => LinkState::Fenced,
        });
        status.send_replace(state);
    };
    let mut connection: Option<Connection> = None;
    let mut next_connect = Instant::now();
    let mut warned = false;
    loop {
        if connection.is_none() && Instant::now() >= next_connect {
            next_connect = Instant::now() + Duration::from_secs(1);
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let connected = connect(&shared, config, status);
            match connected {
                Ok(Connected::Ready(ready)) => {
                    tracing::info!(site = %config.site, peer = %config.peer, "standby is current");
                    report(LinkStatus::Up);
                    warned = false;
                    connection = Some(ready);
                }
                Ok(Connected::Fenced(peer_epoch)) => {
                    tracing::error!(site = %config.site, peer = %config.peer, peer_epoch, "the peer has a newer epoch: this node must not act as active");
                    shared.detach_link();
                    drop(shared);
                    report(LinkStatus::Fenced { peer_epoch });
                    // Answer whatever waits, so the writer is not held.
                    while receiver.try_recv().is_ok() {}
                    return;
                }
                Err(error) => {
                    report(LinkStatus::Down);
                    if !warned {
                        tracing::warn!(site = %config.site, peer = %config.peer, %error, "standby unreachable: acknowledging on this node alone");
                        warned = true;
                    }
                }
            }
        }
        // Without a standby, wake up for the next connection attempt (every second, whatever
        // the heartbeat interval).
        let wait = if connection.is_none() {
            next_connect
                .saturating_duration_since(Instant::now())
                .clamp(
                    Duration::from_millis(10),
                    heartbeat.max(Duration::from_millis(10)),
                )
        } else {
            heartbeat
        };
        match receiver.recv_timeout(wait) {
            Ok(shipment) => {
                if let Some(open) = connection.as_mut()
                    && shipment.seq > open.position
                {
                    let frame = Frame::Batch {
                        seq: shipment.seq,
                        ops: shipment.ops,
                    };
                    match open.exchange(&frame) {
                        Ok(()) => {
                            open.position = shipment.seq;
                            config
                                .metrics
                                .position
                                .store(shipment.seq, Ordering::Relaxed);
                        }
                        Err(error) => {
                            tracing::warn!(site = %config.site, %error, "replication link lost: acknowledging on this node alone");
                            report(LinkStatus::Down);
                            connection = None;
                        }
                    }
                }
                if let Some(done) = shipment.done {
                    let _ = done.send(());
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Some(open) = connection.as_mut()
                    && let Err(error) = open.exchange(&Frame::Heartbeat)
                {
                    tracing::warn!(site = %config.site, %error, "replication link lost: acknowledging on this node alone");
                    report(LinkStatus::Down);
                    connection = None;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

struct Connection {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
    /// The last batch the standby holds.
    position: u64,
}

impl Connection {
    /// Connects to `address` and passes the handshake with `auth`.
    fn open(address: &str, timeout: Duration, auth: &LinkAuth) -> std::io::Result<Connection> {
        let addresses: Vec<SocketAddr> = address.to_socket_addrs()?.collect();
        let mut last = std::io::Error::other(format!("`{address}` resolves to no address"));
        for candidate in addresses {
            match TcpStream::connect_timeout(&candidate, timeout.min(Duration::from_secs(2))) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    stream.set_read_timeout(Some(timeout.min(HANDSHAKE_TIMEOUT)))?;
                    stream.set_write_timeout(Some(timeout.min(HANDSHAKE_TIMEOUT)))?;
                    let mut connection = Connection {
                        reader: BufReader::new(stream.try_clone()?),
                        writer: BufWriter::new(stream),
                        position: 0,
                    };
                    authenticate_connecting(&mut connection.reader, &mut connection.writer, auth)?;
                    let stream = connection.writer.get_ref();
                    stream.set_read_timeout(Some(timeout))?;
                    stream.set_write_timeout(Some(timeout))?;
                    return Ok(connection);
                }
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    fn send(&mut self, frame: &Frame) -> std::io::Result<()> {
        write_frame(&mut self.writer, frame)
    }

    fn receive(&mut self) -> std::io::Result<Frame> {
        read_frame(&mut self.reader)
    }

    /// Sends a frame and waits for its [`Frame::Ack`].
    fn exchange(&mut self, frame: &Frame) -> std::io::Result<()> {
        self.send(frame)?;
        match self.receive()? {
            Frame::Ack => Ok(()),
            other => Err(std::io::Error::other(format!(
                "the standby answered {} instead of an acknowledgement",
                frame_name(&other)
            ))),
        }
    }
}

enum Connected {
    Ready(Connection),
    Fenced(u64),
}

/// Connects, introduces this node and sends the snapshot.
fn connect(
    shared: &Shared,
    config: &LinkConfig,
    status: &tokio::sync::watch::Sender<LinkStatus>,
) -> std::io::Result<Connected> {
    let mut connection = Connection::open(&config.peer, config.ack_timeout, &config.auth)?;
    connection.send(&Frame::Hello {
        site: config.site.clone(),
        epoch: config.epoch,
        primary: config.primary,
    })?;
    match connection.receive()? {
        Frame::Welcome { .. } => {}
        Frame::Fenced { epoch } => return Ok(Connected::Fenced(epoch)),
        other => {
            return Err(std::io::Error::other(format!(
                "the peer answered {} to the introduction",
                frame_name(&other)
            )));
        }
    }
    status.send_replace(LinkStatus::Syncing);
    let started = Instant::now();
    let (records, seq) = send_snapshot(shared, &mut connection)?;
    connection.position = seq;
    config.metrics.position.store(seq, Ordering::Relaxed);
    tracing::info!(
        site = %config.site,
        records,
        seq,
        millis = started.elapsed().as_millis() as u64,
        "snapshot sent to the standby"
    );
    Ok(Connected::Ready(connection))
}

/// Sends every record of every data table as of one read transaction, then the position
/// that transaction had. Returns (records, position).
fn send_snapshot(shared: &Shared, connection: &mut Connection) -> std::io::Result<(u64, u64)> {
    let reader = shared.read().map_err(std::io::Error::other)?;
    let txn = &reader.txn;
    let seq = shared
        .tables
        .meta
        .get(txn, META_SEQ)
        .map_err(std::io::Error::other)?
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .map_or(0, u64::from_be_bytes);
    let mut chunk = Vec::new();
    let mut chunk_bytes = 0usize;
    let mut first = true;
    let mut records = 0u64;
    for table in TableId::DATA {
        let iterator = shared
            .tables
            .table(table)
            .iter(txn)
            .map_err(std::io::Error::other)?;
        for entry in iterator {
            let (key, value) = entry.map_err(std::io::Error::other)?;
            chunk_bytes += key.len() + value.len() + 16;
            chunk.push(Op {
                table,
                key: key.to_vec(),
                value: Some(value.to_vec()),
            });
            records += 1;
            if chunk_bytes >= SNAPSHOT_CHUNK_BYTES {
                let ops = std::mem::take(&mut chunk);
                connection.exchange(&Frame::Snapshot { clear: first, ops })?;
                first = false;
                chunk_bytes = 0;
            }
        }
    }
    connection.exchange(&Frame::Snapshot {
        clear: first,
        ops: chunk,
    })?;
    drop(reader);
    connection.exchange(&Frame::SnapshotEnd { seq })?;
    Ok((records, seq))
}

/// Asks the node at `peer` for its role: `None` when it cannot be reached or answers
/// nonsense (or fails the handshake: a node that cannot prove the site's token is no peer).
pub fn probe(peer: &str, timeout: Duration, auth: &LinkAuth) -> Option<(bool, u64, bool)> {
    let mut connection = Connection::open(peer, timeout, auth).ok()?;
    connection.send(&Frame::Probe).ok()?;
    match connection.receive().ok()? {
        Frame::Role {
            active,
            epoch,
            primary,
        } => Some((active, epoch, primary)),
        _ => None,
    }
}

/// Whether `(epoch, primary)` of one node outranks the other's: the higher epoch wins, a
/// tie goes to the configured primary.
pub fn outranks(epoch: u64, primary: bool, other_epoch: u64, other_primary: bool) -> bool {
    (epoch, primary) > (other_epoch, other_primary)
}

/// What the witness says about a silent active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WitnessVerdict {
    /// The witness still reaches the active: only the link broke; no takeover.
    ActiveAlive,
    /// The witness cannot reach the active either: take over.
    ActiveGone,
    /// The witness itself could not be asked.
    NoAnswer,
}

/// A witness to ask before a takeover (central, [`crate::failover`]).
#[derive(Clone)]
pub struct Witness {
    /// Asks the witness (blocking; bounded by its own timeouts).
    pub ask: Arc<dyn Fn() -> WitnessVerdict + Send + Sync>,
    /// Whether to take over when the witness gives [`WitnessVerdict::NoAnswer`].
    pub takeover_without_answer: bool,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("takeover_without_answer", &self.takeover_without_answer)
            .finish_non_exhaustive()
    }
}

/// Why a standby whose active is silent has not taken over, for `/health` and `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeoverHeld {
    /// Central still reaches the active: the link is what broke.
    ActiveAlive = 1,
    /// Central could not be asked and `takeover_without_witness = false`.
    NoWitness = 2,
}

impl TakeoverHeld {
    pub fn describe(self) -> &'static str {
        match self {
            TakeoverHeld::ActiveAlive => {
                "the active is silent on the link but central still reaches it: the link is \
                 broken; not taking over"
            }
            TakeoverHeld::NoWitness => {
                "the active is silent and central cannot be asked: not taking over \
                 (takeover_without_witness = false)"
            }
        }
    }
}

/// How a standby waits.
#[derive(Debug, Clone)]
pub struct StandbyConfig {
    pub site: String,
    /// Whether this node is the site's configured primary.
    pub primary: bool,
    /// Silence of the active (no frame, no connection) after which this node takes over.
    pub takeover_after: Duration,
    /// The key of the link: a connection that cannot prove it is closed unread.
    pub auth: LinkAuth,
    /// Where this node's link state is published for `/metrics`.
    pub metrics: Arc<LinkMetrics>,
    /// Asked before a takeover; `None`: the silence alone decides.
    pub witness: Option<Witness>,
}

/// Why [`run_standby`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyEnd {
    /// The active was silent for the takeover time: this node is now active with `epoch`.
    TakeOver { epoch: u64 },
    /// Told to stop.
    Stopped,
}

/// Serves the link as a standby on `listener` — applying the active's snapshot and batches
/// to `saf` and acknowledging each after its durable commit — until the active has been
/// silent for `takeover_after` while the replica is complete; then raises the epoch durably
/// and returns [`StandbyEnd::TakeOver`]. `stop` ends it early.
pub fn run_standby(
    listener: &TcpListener,
    saf: &Saf,
    config: &StandbyConfig,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<StandbyEnd, SafError> {
    let io_error = |source| SafError::Io {
        path: saf.path().to_owned(),
        source,
    };
    listener.set_nonblocking(true).map_err(io_error)?;
    config.metrics.set_active(false);
    config.metrics.set_state(LinkState::Down);
    config
        .metrics
        .epoch
        .store(saf.meta_u64(META_EPOCH)?.unwrap_or(0), Ordering::Relaxed);
    let mut last_contact = Instant::now();
    let mut warned_incomplete = false;
    let mut last_verdict = None;
    loop {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(StandbyEnd::Stopped);
        }
        match listener.accept() {
            Ok((stream, remote)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_nodelay(true);
                let handshake = config.takeover_after.min(HANDSHAKE_TIMEOUT);
                let _ = stream.set_read_timeout(Some(handshake));
                let _ = stream.set_write_timeout(Some(handshake));
                match serve_active(stream, saf, config, &mut last_contact, stop, &remote) {
                    Ok(()) => {}
                    Err(error) => {
                        tracing::warn!(site = %config.site, %remote, %error, "replication connection ended");
                    }
                }
                config.metrics.set_state(LinkState::Down);
                if config.metrics.held().is_none() {
                    // An active was heard from: a later silence is news again.
                    last_verdict = None;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(error) => {
                tracing::warn!(site = %config.site, %error, "accepting a replication connection failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if last_contact.elapsed() >= config.takeover_after {
            if saf.replica_complete()?
                && let Some(witness) = &config.witness
            {
                let verdict = (witness.ask)();
                let held = match verdict {
                    WitnessVerdict::ActiveGone => None,
                    WitnessVerdict::ActiveAlive => Some(TakeoverHeld::ActiveAlive),
                    WitnessVerdict::NoAnswer if witness.takeover_without_answer => None,
                    WitnessVerdict::NoAnswer => Some(TakeoverHeld::NoWitness),
                };
                if last_verdict != Some(verdict) {
                    match (verdict, held) {
                        (_, Some(held)) => {
                            tracing::error!(site = %config.site, "{}", held.describe());
                        }
                        (WitnessVerdict::NoAnswer, None) => tracing::warn!(
                            site = %config.site,
                            "the active is silent and central cannot be asked: taking over \
                             without the witness (takeover_without_witness = true)"
                        ),
                        _ => tracing::info!(
                            site = %config.site,
                            "central cannot reach the active either: taking over"
                        ),
                    }
                    last_verdict = Some(verdict);
                }
                config.metrics.set_held(held);
                if held.is_some() {
                    // Ask again after another takeover time of silence.
                    last_contact = Instant::now();
                    continue;
                }
            }
            if saf.replica_complete()? {
                let epoch = saf.meta_u64(META_EPOCH)?.unwrap_or(0) + 1;
                saf.set_meta_u64(META_EPOCH, epoch)?;
                config.metrics.epoch.store(epoch, Ordering::Relaxed);
                config.metrics.takeovers.fetch_add(1, Ordering::Relaxed);
                return Ok(StandbyEnd::TakeOver { epoch });
            }
            if !warned_incomplete {
                tracing::error!(site = %config.site, "the active is silent but this standby never received a complete snapshot: it cannot take over");
                warned_incomplete = true;
            }
        }
    }
}

/// One connection to the standby: a probe, or an active's introduction and stream.
fn serve_active(
    stream: TcpStream,
    saf: &Saf,
    config: &StandbyConfig,
    last_contact: &mut Instant,
    stop: &std::sync::atomic::AtomicBool,
    remote: &SocketAddr,
) -> Result<(), SafError> {
    let io_error = |source| SafError::Io {
        path: saf.path().to_owned(),
        source,
    };
    let mut reader = BufReader::new(stream.try_clone().map_err(io_error)?);
    let mut writer = BufWriter::new(stream);
    if !admit(
        &mut reader,
        &mut writer,
        &config.auth,
        &config.metrics,
        remote,
    ) {
        return Ok(());
    }
    let stream = writer.get_ref();
    let _ = stream.set_read_timeout(Some(config.takeover_after));
    let _ = stream.set_write_timeout(Some(config.takeover_after));
    let own_epoch = saf.meta_u64(META_EPOCH)?.unwrap_or(0);
    match read_frame(&mut reader).map_err(io_error)? {
        Frame::Probe => {
            let role = Frame::Role {
                active: false,
                epoch: own_epoch,
                primary: config.primary,
            };
            return write_frame(&mut writer, &role).map_err(io_error);
        }
        Frame::Hello { site, epoch, .. } => {
            if site != config.site {
                return Err(io_error(std::io::Error::other(format!(
                    "an active of site `{site}` connected to a standby of site `{}`",
                    config.site
                ))));
            }
            // Equal epochs are the normal case (the active this standby followed).
            if own_epoch > epoch {
                tracing::warn!(site = %config.site, own_epoch, peer_epoch = epoch, "fenced a stale active");
                return write_frame(&mut writer, &Frame::Fenced { epoch: own_epoch })
                    .map_err(io_error);
            }
            if epoch > own_epoch {
                saf.set_meta_u64(META_EPOCH, epoch)?;
                config.metrics.epoch.store(epoch, Ordering::Relaxed);
            }
            write_frame(&mut writer, &Frame::Welcome { epoch }).map_err(io_error)?;
            *last_contact = Instant::now();
            config.metrics.set_held(None);
        }
        other => {
            return Err(io_error(std::io::Error::other(format!(
                "unexpected first frame {}",
                frame_name(&other)
            ))));
        }
    }
    // The active sends at least a heartbeat every third of its ack timeout, so a stop is
    // noticed within that.
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let frame = read_frame(&mut reader).map_err(io_error)?;
        match frame {
            Frame::Snapshot { clear, mut ops } => {
                if clear {
                    ops.insert(0, replica_op(b"partial"));
                    config.metrics.set_state(LinkState::Syncing);
                }
                saf.apply_replicated(clear, ops)?;
            }
            Frame::SnapshotEnd { seq } => {
                saf.apply_replicated(
                    false,
                    vec![
                        Op {
                            table: TableId::Meta,
                            key: META_SEQ.to_vec(),
                            value: Some(seq.to_be_bytes().to_vec()),
                        },
                        replica_op(b"complete"),
                    ],
                )?;
                config.metrics.position.store(seq, Ordering::Relaxed);
                config.metrics.set_state(LinkState::Up);
                tracing::info!(site = %config.site, seq, "replica complete");
            }
            Frame::Batch { seq, ops } => {
                saf.apply_replicated(false, ops)?;
                config.metrics.position.store(seq, Ordering::Relaxed);
            }
            Frame::Heartbeat => {}
            other => {
                return Err(io_error(std::io::Error::other(format!(
                    "unexpected frame {}",
                    frame_name(&other)
                ))));
            }
        }
        write_frame(&mut writer, &Frame::Ack).map_err(io_error)?;
        *last_contact = Instant::now();
    }
    Ok(())
}

fn replica_op(state: &[u8]) -> Op {
    Op {
        table: TableId::Meta,
        key: META_REPLICA.to_vec(),
        value: Some(state.to_vec()),
    }
}

/// Answers probes and introductions on the link address of an active node, until `stop`.
/// An introduction from a node that outranks this one fences this node (`on_fenced`); any
/// other is answered [`Frame::Fenced`].
#[allow(clippy::too_many_arguments)]
pub fn answer_as_active(
    listener: &TcpListener,
    epoch: u64,
    primary: bool,
    auth: &LinkAuth,
    metrics: &LinkMetrics,
    stop: &std::sync::atomic::AtomicBool,
    on_fenced: &(dyn Fn(u64) + Sync),
) {
    let _ = listener.set_nonblocking(true);
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, remote)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
                let _ = stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT));
                let Ok(read_half) = stream.try_clone() else {
                    continue;
                };
                let mut reader = BufReader::new(read_half);
                let mut writer = BufWriter::new(stream);
                if !admit(&mut reader, &mut writer, auth, metrics, &remote) {
                    continue;
                }
                match read_frame(&mut reader) {
                    Ok(Frame::Probe) => {
                        let _ = write_frame(
                            &mut writer,
                            &Frame::Role {
                                active: true,
                                epoch,
                                primary,
                            },
                        );
                    }
                    Ok(Frame::Hello {
                        epoch: peer_epoch,
                        primary: peer_primary,
                        ..
                    }) => {
                        if outranks(peer_epoch, peer_primary, epoch, primary) {
                            on_fenced(peer_epoch);
                        } else {
                            let _ = write_frame(&mut writer, &Frame::Fenced { epoch });
                        }
                    }
                    _ => {}
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A shared handle on the link sender inside [`Shared`].
pub(crate) type LinkSlot = std::sync::Mutex<Option<LinkSender>>;

impl Shared {
    pub(crate) fn attach_link(&self, link: LinkSender) {
        *self.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(link);
    }

    pub(crate) fn detach_link(&self) {
        *self.link.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) fn link(&self) -> Option<LinkSender> {
        self.link.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_other_versions_are_refused() {
        let frame = Frame::Batch {
            seq: 7,
            ops: vec![Op {
                table: TableId::Due,
                key: b"k".to_vec(),
                value: None,
            }],
        };
        let mut bytes = Vec::new();
        write_frame(&mut bytes, &frame).expect("write");
        match read_frame(&mut bytes.as_slice()).expect("read") {
            Frame::Batch { seq, ops } => {
                assert_eq!(seq, 7);
                assert_eq!(ops[0].key, b"k");
                assert_eq!(ops[0].value, None);
            }
            other => panic!("read back {other:?}"),
        }
        bytes[4] = PROTOCOL_VERSION + 1;
        let error = read_frame(&mut bytes.as_slice()).expect_err("other version");
        assert!(error.to_string().contains("version"), "{error}");
        let huge = (MAX_FRAME_BYTES as u32 + 1).to_be_bytes();
        assert!(read_frame(&mut huge.as_slice()).is_err());
    }

    #[test]
    fn higher_epochs_outrank_and_ties_go_to_the_primary() {
        assert!(outranks(2, false, 1, true));
        assert!(outranks(1, true, 1, false));
        assert!(!outranks(1, false, 1, true));
        assert!(!outranks(1, true, 2, false));
    }
}
