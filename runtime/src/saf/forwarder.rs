//! The forwarder: a tokio task that attempts due messages and records what happened.
//!
//! Each pass reads the `due` index target by target (rotating the starting target), takes the
//! earliest due messages of each target up to its free concurrency (a semaphore per target),
//! and spawns one attempt per message through the [`Deliverer`] of its category. So a target
//! with a large backlog takes only its own permits: new messages of other targets go out at
//! once, and within a target messages go out by next-attempt time, so fresh messages
//! interleave with retries instead of queueing behind the whole backlog.
//!
//! An attempt's outcome is recorded by the writer thread (delivered, rescheduled with jitter
//! or the peer's `Retry-After`, or parked). A message stays in `due` with its old time while
//! its attempt runs: if the process dies, it is due again on restart with the same id
//! (at-least-once).
//!
//! Shutdown stops new attempts, lets running ones finish within a grace period, and abandons
//! the rest (still due, so they are retried after restart).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::Saf;
use super::error::SafError;
use super::model::{Attempt, AttemptOutcome, Category, Message, Status, UnixMillis, now_ms};

/// The future a [`Deliverer`] returns.
pub type DeliveryFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// The future of [`Deliverer::deliver_with_body`]: the outcome and the start of the peer's
/// response body.
pub type DetailedDeliveryFuture<'a> =
    Pin<Box<dyn Future<Output = (Outcome, Option<String>)> + Send + 'a>>;

/// Sends messages of one category (HTTP call, email, SQL write, webhook) and classifies the
/// result. Implementations must not retry on their own: the engine does.
pub trait Deliverer: Send + Sync + 'static {
    /// Attempt delivery of `message` once. Include `message.id` in what is sent so the peer
    /// can deduplicate (delivery is at-least-once).
    fn deliver<'a>(&'a self, message: &'a Message) -> DeliveryFuture<'a>;

    /// Like [`Deliverer::deliver`], also returning the start of the peer's response body,
    /// which the attempt record keeps. The forwarder calls this one; by default it keeps no
    /// body.
    fn deliver_with_body<'a>(&'a self, message: &'a Message) -> DetailedDeliveryFuture<'a> {
        Box::pin(async move { (self.deliver(message).await, None) })
    }

    /// Told after an attempt of `message` was recorded and left it parked (a permanent
    /// failure, or its last retry failed). By default nothing happens.
    fn parked(&self, message: &Message, attempt: &Attempt) {
        let _ = (message, attempt);
    }
}

/// How one attempt ended, as the deliverer classifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted by the peer.
    Delivered {
        /// The peer's status code, if the protocol has one.
        status: Option<u16>,
    },
    /// Worth retrying: connection refused or reset, timeout, HTTP 408/429/5xx, SMTP 4xx.
    Transient {
        /// A short description.
        error: String,
        /// The peer's status code, if any.
        status: Option<u16>,
        /// The peer's `Retry-After`, honoured instead of the policy's delay.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: other HTTP 4xx, SMTP 5xx. The message is parked at once.
    Permanent {
        /// A short description.
        error: String,
        /// The peer's status code, if any.
        status: Option<u16>,
    },
}

impl Outcome {
    fn into_attempt(self, at_ms: UnixMillis, took: Duration) -> (Attempt, Option<Duration>) {
        match self {
            Outcome::Delivered { status } => (
                Attempt::new(at_ms, AttemptOutcome::Delivered, status, None, took),
                None,
            ),
            Outcome::Transient {
                error,
                status,
                retry_after,
            } => (
                Attempt::new(at_ms, AttemptOutcome::Transient, status, Some(error), took),
                retry_after,
            ),
            Outcome::Permanent { error, status } => (
                Attempt::new(at_ms, AttemptOutcome::Permanent, status, Some(error), took),
                None,
            ),
        }
    }
}

/// The deliverer of each category.
#[derive(Clone, Default)]
pub struct Deliverers {
    by_category: HashMap<Category, Arc<dyn Deliverer>>,
}

impl Deliverers {
    /// Register (or replace) the deliverer of a category.
    pub fn with(mut self, category: Category, deliverer: impl Deliverer) -> Deliverers {
        self.by_category.insert(category, Arc::new(deliverer));
        self
    }

    /// Register (or replace) a shared deliverer.
    pub fn insert(&mut self, category: Category, deliverer: Arc<dyn Deliverer>) {
        self.by_category.insert(category, deliverer);
    }

    /// Replace every registered deliverer with `wrap(category, deliverer)` (to observe
    /// attempts of every category, e.g. parked messages).
    pub fn wrap_all(
        mut self,
        wrap: impl Fn(Category, Arc<dyn Deliverer>) -> Arc<dyn Deliverer>,
    ) -> Deliverers {
        self.by_category = self
            .by_category
            .into_iter()
            .map(|(category, deliverer)| (category, wrap(category, deliverer)))
            .collect();
        self
    }

    fn get(&self, category: Category) -> Option<Arc<dyn Deliverer>> {
        self.by_category.get(&category).cloned()
    }
}

/// Settings of the forwarder.
#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    /// Attempts running at once per target, unless `target_concurrency` says otherwise.
    /// Default 8.
    pub concurrency_per_target: usize,
    /// Per-target overrides of `concurrency_per_target`.
    pub target_concurrency: HashMap<String, usize>,
    /// Attempts running at once in all. Default 256.
    pub max_in_flight: usize,
    /// Spread of retry delays: ±`jitter` × delay (Retry-After waits are only lengthened, by up
    /// to `jitter` × wait). Default 0.1.
    pub jitter: f64,
    /// An attempt still running after this long counts as a transient failure. Default 5 min.
    pub attempt_timeout: Duration,
    /// How often delivered and discarded records past the retention are pruned. Default 60 s.
    pub prune_interval: Duration,
}

impl Default for ForwarderConfig {
    fn default() -> ForwarderConfig {
        ForwarderConfig {
            concurrency_per_target: 8,
            target_concurrency: HashMap::new(),
            max_in_flight: 256,
            jitter: 0.1,
            attempt_timeout: Duration::from_secs(300),
            prune_interval: Duration::from_secs(60),
        }
    }
}

/// What [`Forwarder::shutdown`] did with the attempts that were running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Attempts that finished (and were recorded) within the grace period.
    pub finished: usize,
    /// Attempts cut off at the end of the grace period; their messages stay due and are
    /// attempted again after restart.
    pub abandoned: usize,
}

/// A running forwarder. Stop it with [`Forwarder::shutdown`]; dropping it stops it too, with
/// no grace period.
pub struct Forwarder {
    stop: watch::Sender<Option<Duration>>,
    task: Option<JoinHandle<ShutdownReport>>,
    pruner: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Start forwarding the buffer's due messages. Must be called inside a tokio runtime.
    pub fn start(
        saf: Saf,
        deliverers: Deliverers,
        config: ForwarderConfig,
    ) -> Result<Forwarder, SafError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SafError::NoRuntime)?;
        let (stop, stop_receiver) = watch::channel(None);
        let pruner = runtime.spawn(prune_loop(saf.clone(), config.prune_interval));
        let scheduler = Scheduler {
            saf,
            deliverers,
            config,
            in_flight: HashSet::new(),
            task_ids: HashMap::new(),
            tasks: JoinSet::new(),
            semaphores: HashMap::new(),
            rotation: 0,
        };
        let task = runtime.spawn(scheduler.run(stop_receiver));
        Ok(Forwarder {
            stop,
            task: Some(task),
            pruner: Some(pruner),
        })
    }

    /// Stop taking new attempts, wait up to `grace` for running ones to finish and be
    /// recorded, and abandon the rest (their messages stay due). Nothing is lost either way.
    pub async fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        let _ = self.stop.send(Some(grace));
        if let Some(pruner) = self.pruner.take() {
            pruner.abort();
            let _ = pruner.await;
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => ShutdownReport::default(),
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.stop.send(Some(Duration::ZERO));
        if let Some(pruner) = self.pruner.take() {
            pruner.abort();
        }
    }
}

async fn prune_loop(saf: Saf, every: Duration) {
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match saf.prune().await {
            Ok(0) => {}
            Ok(count) => tracing::debug!(count, "store-and-forward records pruned"),
            Err(SafError::Closed) => return,
            Err(error) => tracing::warn!(%error, "store-and-forward pruning failed"),
        }
    }
}

struct Scheduler {
    saf: Saf,
    deliverers: Deliverers,
    config: ForwarderConfig,
    in_flight: HashSet<String>,
    task_ids: HashMap<tokio::task::Id, String>,
    tasks: JoinSet<()>,
    semaphores: HashMap<String, Arc<Semaphore>>,
    rotation: usize,
}

/// How long to sleep when nothing is scheduled (new work wakes the forwarder anyway).
const IDLE_RESCAN: Duration = Duration::from_secs(30);

impl Scheduler {
    async fn run(mut self, mut stop: watch::Receiver<Option<Duration>>) -> ShutdownReport {
        let grace = loop {
            if let Some(grace) = *stop.borrow() {
                break grace;
            }
            let wait = match self.pass() {
                Ok(next_due) => next_due
                    .map(|due| Duration::from_millis(due.saturating_sub(now_ms())))
                    .unwrap_or(IDLE_RESCAN),
                Err(error) => {
                    tracing::error!(%error, "store-and-forward forwarder pass failed");
                    Duration::from_secs(1)
                }
            };
            // A wake-up sent since the pass is not lost: `Notify` keeps one permit.
            tokio::select! {
                _ = self.saf.shared().wake_forwarder.notified() => {}
                joined = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.finished(joined);
                    while let Some(joined) = self.tasks.try_join_next_with_id() {
                        self.finished(Some(joined));
                    }
                }
                _ = tokio::time::sleep(wait) => {}
                changed = stop.changed() => {
                    if changed.is_err() {
                        break Duration::ZERO;
                    }
                }
            }
        };
        self.drain(grace).await
    }

    fn finished(&mut self, joined: Option<Result<(tokio::task::Id, ()), tokio::task::JoinError>>) {
        let task_id = match joined {
            Some(Ok((task_id, ()))) => task_id,
            Some(Err(error)) => error.id(),
            None => return,
        };
        if let Some(message_id) = self.task_ids.remove(&task_id) {
            self.in_flight.remove(&message_id);
        }
    }

    async fn drain(mut self, grace: Duration) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        let deadline = Instant::now() + grace;
        while !self.tasks.is_empty() {
            tokio::select! {
                joined = self.tasks.join_next_with_id() => {
                    report.finished += 1;
                    self.finished(joined);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    report.abandoned = self.tasks.len();
                    self.tasks.abort_all();
                    while self.tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
        report
    }

    fn limit_for(&self, target: &str) -> usize {
        self.config
            .target_concurrency
            .get(target)
            .copied()
            .unwrap_or(self.config.concurrency_per_target)
            .max(1)
    }

    /// Dispatch what is due now; returns when the next known message falls due.
    fn pass(&mut self) -> Result<Option<UnixMillis>, SafError> {
        let now = now_ms();
        let mut global_free = self
            .config
            .max_in_flight
            .max(1)
            .saturating_sub(self.in_flight.len());
        if global_free == 0 {
            return Ok(None);
        }
        let mut earliest: Option<UnixMillis> = None;
        let mut to_start: Vec<(Arc<Semaphore>, Message)> = Vec::new();
        {
            let reader = self.saf.shared().read()?;
            let mut targets = reader.due_targets()?;
            if !targets.is_empty() {
                let start = self.rotation % targets.len();
                targets.rotate_left(start);
                self.rotation = self.rotation.wrapping_add(1);
            }
            for target in targets {
                if global_free == 0 {
                    break;
                }
                let limit = self.limit_for(&target);
                let semaphore = Arc::clone(
                    self.semaphores
                        .entry(target.clone())
                        .or_insert_with(|| Arc::new(Semaphore::new(limit))),
                );
                let free = semaphore.available_permits().min(global_free);
                let (ids, next_due) = reader.due_of_target(&target, now, free, &self.in_flight)?;
                if let Some(due) = next_due {
                    earliest = Some(earliest.map_or(due, |e| e.min(due)));
                }
                for id in ids {
                    match reader.message(&id) {
                        Ok(Some(message)) if message.status.is_active() => {
                            global_free -= 1;
                            to_start.push((Arc::clone(&semaphore), message));
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::error!(%error, "store-and-forward message unreadable")
                        }
                    }
                }
            }
        }
        for (semaphore, message) in to_start {
            let Ok(permit) = semaphore.try_acquire_owned() else {
                continue;
            };
            self.start(message, permit);
        }
        Ok(earliest)
    }

    fn start(&mut self, message: Message, permit: OwnedSemaphorePermit) {
        let deliverer = self.deliverers.get(message.category);
        let saf = self.saf.clone();
        let timeout = self.config.attempt_timeout;
        let jitter = self.config.jitter;
        let id = message.id.clone();
        let handle = self.tasks.spawn(async move {
            attempt_one(saf, deliverer, message, timeout, jitter).await;
            drop(permit);
        });
        self.task_ids.insert(handle.id(), id.clone());
        self.in_flight.insert(id);
    }
}

async fn attempt_one(
    saf: Saf,
    deliverer: Option<Arc<dyn Deliverer>>,
    message: Message,
    timeout: Duration,
    jitter: f64,
) {
    let at_ms = now_ms();
    let started = Instant::now();
    let (outcome, response_body) = match &deliverer {
        None => (
            Outcome::Transient {
                error: format!(
                    "no deliverer is registered for category `{}`",
                    message.category.as_str()
                ),
                status: None,
                retry_after: None,
            },
            None,
        ),
        Some(deliverer) => {
            let attempt = CatchUnwind(deliverer.deliver_with_body(&message));
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(detailed)) => detailed,
                Ok(Err(panic)) => (
                    Outcome::Transient {
                        error: format!("the deliverer panicked: {panic}"),
                        status: None,
                        retry_after: None,
                    },
                    None,
                ),
                Err(_) => (
                    Outcome::Transient {
                        error: format!("attempt timed out after {} ms", timeout.as_millis()),
                        status: None,
                        retry_after: None,
                    },
                    None,
                ),
            }
        }
    };
    let (mut attempt, retry_after) = outcome.into_attempt(at_ms, started.elapsed());
    attempt.response_body = response_body;
    let recorded = saf
        .record_attempt(&message.id, attempt.clone(), retry_after, jitter)
        .await;
    match recorded {
        Ok(Some(Status::Parked)) => {
            if let Some(deliverer) = &deliverer {
                deliverer.parked(&message, &attempt);
            }
        }
        Ok(_) => {}
        Err(error) => {
            // The message is still due under its old time; wait a little so a broken disk
            // does not turn into a busy loop of attempts.
            tracing::warn!(id = %message.id, %error, "store-and-forward attempt not recorded");
            if !matches!(error, SafError::Closed) {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Turns a panic inside a deliverer's future into an error value.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(context))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                Poll::Ready(Err(text))
            }
        }
    }
}
