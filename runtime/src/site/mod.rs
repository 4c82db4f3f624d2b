//! The site runtime: instances with typed attributes, their scripts and
//! triggers, the event log, and the internal API central calls.
//!
//! A site node holds the deployment it accepted last (a [`Bundle`], persisted
//! in its state store) and runs the instances placed on it. Every instance
//! is an actor: its scripts run one at a time, in the order they were asked
//! for, on the shared [`ScriptPool`]; different instances run in parallel.
//! Nothing runs scripts on the async reactor.
//!
//! Life of a deployment: [`Site::deploy`] opens the bundle against the
//! node's own deployment file, builds the modules, compiles every script and
//! alarm condition (any error refuses the bundle and keeps the running one),
//! then swaps it in: instances keep their attribute values, the forwarder of
//! the store-and-forward buffer restarts with the new deliverers, interval
//! triggers restart, and the bundle is stored so a restart comes back to it.

pub mod api;
mod deployed;
mod host;
mod instance;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::deployment::Deployment;
use crate::modules::NodeEvents;
use crate::pool::ScriptPool;
use crate::protocol::{Bundle, LocalFuture, RemoteError};
use crate::saf::replication::{LinkMetrics, LinkStatus};
use crate::saf::{Category, Forwarder, ForwarderConfig, Saf, SafConfig};

pub(crate) use deployed::Deployed;
pub(crate) use instance::Instance;
use store::{Event, SiteStore};

/// The store-and-forward buffer's directory of a node.
pub fn saf_dir(options: &SiteOptions) -> PathBuf {
    options.data_dir.join("saf")
}

/// Reads an environment variable (secrets named by `*_env` keys).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// How to start a site node.
#[derive(Clone)]
pub struct SiteOptions {
    /// The site's name in the deployment.
    pub name: String,
    /// The node's own deployment file: data paths resolve against its folder,
    /// and it is the deployment the node starts from before any bundle.
    pub config_file: PathBuf,
    /// This node's data directory (state store and store-and-forward buffer).
    pub data_dir: PathBuf,
    /// Script threads (default: 4 per core, at least 8: scripts block on I/O).
    pub threads: usize,
    /// The shared central↔site token every internal request must carry.
    pub token: String,
    /// Events older than this are deleted (default 30 days).
    pub event_retention: Duration,
    /// Environment lookup for secrets named by `*_env` keys.
    pub env: EnvLookup,
}

impl std::fmt::Debug for SiteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteOptions")
            .field("name", &self.name)
            .field("config_file", &self.config_file)
            .field("data_dir", &self.data_dir)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl SiteOptions {
    /// Options with the defaults, secrets from the process environment.
    pub fn new(name: &str, config_file: PathBuf, data_dir: PathBuf, token: String) -> SiteOptions {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        SiteOptions {
            name: name.to_owned(),
            config_file,
            data_dir,
            threads: (cores * 4).max(8),
            token,
            event_retention: Duration::from_secs(30 * 24 * 3600),
            env: Arc::new(|name| std::env::var(name).ok()),
        }
    }
}

/// A running site node. Cheap to clone.
#[derive(Clone)]
pub struct Site {
    shared: Arc<SiteShared>,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("name", &self.shared.options.name)
            .finish_non_exhaustive()
    }
}

pub(crate) struct SiteShared {
    pub options: SiteOptions,
    pub store: Arc<SiteStore>,
    pub saf: Saf,
    pub pool: ScriptPool,
    pub handle: Handle,
    pub current: RwLock<Option<Arc<Deployed>>>,
    pub instances: RwLock<HashMap<String, Arc<Instance>>>,
    /// Held while a deployment is prepared and swapped in.
    pub deploying: tokio::sync::Mutex<Running>,
    pub metrics: Metrics,
    /// One row per script run ([`crate::runs`]).
    pub runs: crate::runs::RunLog,
    /// The replication link of the active node of a pair ([`crate::failover`]).
    pub replication: std::sync::OnceLock<tokio::sync::watch::Receiver<LinkStatus>>,
    /// The link's gauges for `/metrics` (pair nodes only).
    pub replication_metrics: std::sync::OnceLock<Arc<LinkMetrics>>,
}

/// What a deployment starts and the next one stops.
#[derive(Default)]
pub(crate) struct Running {
    forwarder: Option<Forwarder>,
    triggers: Vec<JoinHandle<()>>,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub(crate) struct Metrics {
    pub runs_success: AtomicU64,
    pub runs_failure: AtomicU64,
    pub runs_timeout: AtomicU64,
    pub runs_limit: AtomicU64,
    pub run_micros: AtomicU64,
    pub triggers_skipped: AtomicU64,
    pub internal_requests: AtomicU64,
    pub deployments: AtomicU64,
}

/// The event log as the modules see it.
struct SiteEvents(Arc<SiteStore>);

impl NodeEvents for SiteEvents {
    fn record(&self, kind: &str, message: &str, delivery_id: Option<&str>) {
        let event = Event {
            time: String::new(),
            kind: kind.to_owned(),
            instance: None,
            script: None,
            message: message.to_owned(),
            delivery_id: delivery_id.map(str::to_owned),
        };
        if let Err(error) = self.0.record(event) {
            tracing::error!(%error, "cannot write the site event log");
        }
    }
}

impl SiteShared {
    /// Appends to the event log; a failing log is reported, never fatal.
    pub fn event(&self, kind: &str, instance: Option<&str>, script: Option<&str>, message: String) {
        let event = Event {
            time: String::new(),
            kind: kind.to_owned(),
            instance: instance.map(str::to_owned),
            script: script.map(str::to_owned),
            message,
            delivery_id: None,
        };
        if let Err(error) = self.store.record(event) {
            tracing::error!(%error, "cannot write the site event log");
        }
    }

    pub fn deployed(&self) -> Option<Arc<Deployed>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn instance(&self, code: &str) -> Option<Arc<Instance>> {
        self.instances
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(code)
            .cloned()
    }

    pub fn events(&self) -> Arc<dyn NodeEvents> {
        Arc::new(SiteEvents(Arc::clone(&self.store)))
    }
}

impl Site {
    /// Opens the node's state and buffer, and starts from the bundle it
    /// accepted last or, the first time, from `local` (its own deployment
    /// file). Must be called inside a tokio runtime.
    pub async fn start(options: SiteOptions, local: &Deployment) -> Result<Site, String> {
        let saf = Saf::open(SafConfig::new(saf_dir(&options)))
            .map_err(|e| format!("site `{}`: {e}", options.name))?;
        Site::start_with_saf(options, local, saf).await
    }

    /// [`Site::start`] on a buffer that is already open (the standby of a pair kept it
    /// up to date before it took over, [`crate::failover`]).
    pub async fn start_with_saf(
        options: SiteOptions,
        local: &Deployment,
        saf: Saf,
    ) -> Result<Site, String> {
        let store = SiteStore::open(&options.data_dir.join("state")).map_err(|e| e.to_string())?;
        let pool = ScriptPool::new(&format!("site-{}", options.name), options.threads)
            .map_err(|e| format!("cannot start the script threads: {e}"))?;
        let stored = store.bundle().map_err(|e| e.to_string())?;
        let runs = crate::runs::RunLog::open(
            &crate::runs::path(&options.data_dir),
            local.file.execution_log.retention(),
            local.file.execution_log.max_log_lines,
        )
        .map_err(|e| format!("site `{}`: {e}", options.name))?;
        let shared = Arc::new(SiteShared {
            store: Arc::new(store),
            saf,
            pool,
            handle: Handle::current(),
            current: RwLock::new(None),
            instances: RwLock::new(HashMap::new()),
            deploying: tokio::sync::Mutex::new(Running::default()),
            metrics: Metrics::default(),
            runs,
            replication: std::sync::OnceLock::new(),
            replication_metrics: std::sync::OnceLock::new(),
            options,
        });
        let site = Site { shared };
        let name = site.shared.options.name.clone();
        let bundle = match stored {
            Some(bundle) => bundle,
            None => crate::bundle::build(local)?,
        };
        if let Err(problems) = site.deploy(bundle).await {
            // A stored bundle that no longer loads (e.g. a removed secret):
            // fall back to the local file rather than not starting.
            tracing::warn!(site = %name, "the stored deployment does not load: {}", problems.join("; "));
            let bundle = crate::bundle::build(local)?;
            site.deploy(bundle).await.map_err(|p| p.join("\n"))?;
        }
        site.shared
            .event("started", None, None, format!("site `{name}` started"));
        site.spawn_retention();
        Ok(site)
    }

    /// The site's name.
    pub fn name(&self) -> &str {
        &self.shared.options.name
    }

    /// The running deployment's version.
    pub fn version(&self) -> Option<String> {
        self.shared.deployed().map(|d| d.version.clone())
    }

    /// The store-and-forward buffer of this node.
    pub fn saf(&self) -> &Saf {
        &self.shared.saf
    }

    /// Reports the replication link of an active node of a pair in `/health` and the event
    /// log.
    pub fn watch_replication(
        &self,
        mut status: tokio::sync::watch::Receiver<LinkStatus>,
        metrics: Arc<LinkMetrics>,
    ) {
        let _ = self.shared.replication.set(status.clone());
        let _ = self.shared.replication_metrics.set(metrics);
        let shared = Arc::downgrade(&self.shared);
        self.shared.handle.spawn(async move {
            let mut last = *status.borrow_and_update();
            while status.changed().await.is_ok() {
                let now = *status.borrow_and_update();
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                match (last, now) {
                    (LinkStatus::Up, LinkStatus::Down) => shared.event(
                        "replication_down",
                        None,
                        None,
                        "the standby is unreachable: buffered messages rest on this node alone"
                            .to_owned(),
                    ),
                    (_, LinkStatus::Up) if last != LinkStatus::Up => shared.event(
                        "replication_up",
                        None,
                        None,
                        "the standby is current".to_owned(),
                    ),
                    _ => {}
                }
                last = now;
            }
        });
    }

    /// `up`, `down`, `syncing` or `fenced` for the active node of a pair; `None` otherwise.
    pub fn replication_status(&self) -> Option<&'static str> {
        let status = *self.shared.replication.get()?.borrow();
        Some(match status {
            LinkStatus::Up => "up",
            LinkStatus::Down => "down",
            LinkStatus::Syncing => "syncing",
            LinkStatus::Fenced { .. } => "fenced",
        })
    }

    /// Appends to the node's event log.
    pub fn record_event(&self, kind: &str, message: String) {
        self.shared.event(kind, None, None, message);
    }

    /// The state store (attributes, events).
    pub fn store(&self) -> &SiteStore {
        &self.shared.store
    }

    /// Prepares `bundle` and, when every script compiles, swaps it in.
    /// On any problem the running deployment stays and the problems are
    /// returned (and logged as a `deploy_refused` event).
    pub async fn deploy(&self, bundle: Bundle) -> Result<String, Vec<String>> {
        let shared = Arc::clone(&self.shared);
        let mut running = shared.deploying.lock().await;
        if shared
            .deployed()
            .is_some_and(|d| d.version == bundle.version)
        {
            return Ok(bundle.version);
        }
        let preparing = Arc::clone(&shared);
        let prepared = shared
            .pool
            .run(move || Deployed::prepare(&preparing, &bundle).map(|d| (d, bundle)))
            .await
            .map_err(|e| vec![e.to_string()])?;
        let (deployed, bundle) = match prepared {
            Ok(prepared) => prepared,
            Err(problems) => {
                shared.event(
                    "deploy_refused",
                    None,
                    None,
                    format!("deployment refused: {}", problems.join("; ")),
                );
                return Err(problems);
            }
        };
        let deployed = Arc::new(deployed);
        // Stop what the previous deployment started before the new one runs.
        for trigger in running.triggers.drain(..) {
            trigger.abort();
        }
        if let Some(forwarder) = running.forwarder.take() {
            forwarder.shutdown(Duration::from_secs(5)).await;
        }
        if let Err(error) = shared.store.put_bundle(&bundle) {
            tracing::error!(%error, "cannot store the accepted bundle");
        }
        instance::adopt(&shared, &deployed);
        *shared.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&deployed));
        // Webhook deliveries, and every other category watched for parked messages.
        let site_name = shared.options.name.clone();
        let deliverers = deployed
            .modules
            .deliverers()
            .wrap_all(|_, inner| {
                crate::webhooks::ParkedEvents::wrap(inner, &deployed.webhooks, &site_name)
            })
            .with(Category::Webhook, deployed.webhooks.deliverer());
        running.forwarder = Some(
            Forwarder::start(shared.saf.clone(), deliverers, ForwarderConfig::default())
                .map_err(|e| vec![e.to_string()])?,
        );
        running.triggers = instance::start_triggers(&shared, &deployed);
        shared.metrics.deployments.fetch_add(1, Ordering::Relaxed);
        let version = deployed.version.clone();
        shared.event(
            "deployed",
            None,
            None,
            format!(
                "deployment {} running with {} instances",
                crate::bundle::short(&version),
                deployed.instances.len()
            ),
        );
        tracing::info!(site = %shared.options.name, version = %crate::bundle::short(&version), "deployment running");
        Ok(version)
    }

    /// Stops triggers, the forwarder (waiting up to 5 s for running
    /// attempts) and the script threads (after their queued work).
    pub async fn shutdown(&self) {
        let mut running = self.shared.deploying.lock().await;
        for trigger in running.triggers.drain(..) {
            trigger.abort();
        }
        if let Some(forwarder) = running.forwarder.take() {
            forwarder.shutdown(Duration::from_secs(5)).await;
        }
        let pool = self.shared.pool.clone();
        let _ = tokio::task::spawn_blocking(move || pool.shutdown()).await;
        let shared = Arc::clone(&self.shared);
        let _ = tokio::task::spawn_blocking(move || shared.runs.flush()).await;
        self.shared.event(
            "stopped",
            None,
            None,
            format!("site `{}` stopped", self.shared.options.name),
        );
    }

    /// Deletes events past the retention once an hour.
    fn spawn_retention(&self) {
        let shared = Arc::downgrade(&self.shared);
        self.shared.handle.spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(3600));
            loop {
                ticks.tick().await;
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                let retention = shared.options.event_retention;
                let store = Arc::clone(&shared.store);
                drop(shared);
                match tokio::task::spawn_blocking(move || store.prune_events(retention)).await {
                    Ok(Ok(0)) | Err(_) => {}
                    Ok(Ok(count)) => tracing::debug!(count, "site events pruned"),
                    Ok(Err(error)) => tracing::warn!(%error, "pruning site events failed"),
                }
            }
        });
    }

    /// Runs `script` of `instance` with `params`, as the internal API does,
    /// and waits for its result.
    pub async fn call(
        &self,
        instance: &str,
        script: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, instance::CallError> {
        instance::call(&self.shared, instance, script, params).await
    }

    /// Current attribute values of an instance.
    pub fn attributes(
        &self,
        instance: &str,
    ) -> Option<std::collections::BTreeMap<String, serde_json::Value>> {
        self.shared.instance(instance).map(|i| i.snapshot())
    }
}

/// Central's typed calls into a site of the same process ([`crate::protocol::SiteClient::in_process`]):
/// the same work and the same answers as the internal API's instance routes in [`api`].
impl crate::protocol::LocalSite for Site {
    fn get_attributes(
        &self,
        instance: &str,
        names: &[String],
    ) -> Result<Vec<serde_json::Value>, RemoteError> {
        instance::get_attributes(&self.shared, instance, names).map_err(remote)
    }

    fn call<'a>(
        &'a self,
        instance: &'a str,
        script: &'a str,
        params: serde_json::Value,
    ) -> LocalFuture<'a, serde_json::Value> {
        self.shared
            .metrics
            .internal_requests
            .fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            instance::call(&self.shared, instance, script, params)
                .await
                .map_err(remote)
        })
    }

    fn set_attributes<'a>(
        &'a self,
        instance: &'a str,
        values: Vec<(String, serde_json::Value)>,
    ) -> LocalFuture<'a, ()> {
        Box::pin(async move {
            instance::set(&self.shared, instance, values)
                .await
                .map_err(remote)
        })
    }
}

/// A failure as central's client reads it from the route's error answer.
fn remote(failure: instance::CallError) -> RemoteError {
    let (status, code, kind, message) = failure.answer();
    RemoteError {
        kind: kind.to_owned(),
        code: code.to_owned(),
        message: message.to_owned(),
        status: Some(status),
    }
}
