//! # The outbound modules of a node, as one bundle
//!
//! [`NodeModules`] builds `ExternalSystem`, `Notify`, `Database` and (on a site)
//! `Deliveries` from the deployment once per node, registers them in an [`Engine`], hands the
//! store-and-forward deliverers to the site's forwarder, and makes the per-run [`RunScope`]
//! that the host functions of one script run reach through `CallOptions::host_data`. The site
//! runtime, central and `scl run` all use it, so the three agree on what a script can do.
//!
//! ```text
//! let modules = NodeModules::build(&deployment, NodeRole::Site, handle, Some(saf), &process_env, events)?;
//! for problem in modules.problems() { warn!("{problem}") }
//! let mut engine = Engine::default();
//! register_core_modules(&mut engine)?;
//! modules.register(&mut engine)?;             // + the node's own Route/Attributes/... modules
//! Forwarder::start(saf, modules.deliverers(), config)?;
//! // per run:
//! let scope = modules.scope(Some(node_data));
//! let outcome = script.call_main_json(&params, &CallOptions { host_data: Some(&scope), .. });
//! let ended = scope.end();                    // rolls back transactions left open
//! ```
//!
//! **Roles.** A site gets everything, with `CachedCall`, `Notify` and `CachedWrite` buffering
//! into its store-and-forward buffer. Central has no buffer: `ExternalSystem.Call` and
//! `Database.Connection` work, while `ExternalSystem.CachedCall` fails (`buffer_failed`) and
//! `CachedWrite`, `Notify` and `Deliveries` fail with kind `unavailable`; the checker already
//! refuses them in `api` scripts. They are still *registered* on central, so a script that
//! uses them gets the checker's "not allowed in api scripts" diagnostic rather than "unknown
//! module".
//!
//! **Events.** Permanent failures of external calls, notifications and cached writes, and
//! notifications buffered for retry, go to the node's [`NodeEvents`] (the site's event log);
//! the module-specific `EventLog` traits forward to it.
//!
//! **Counters** of a run (`callouts`, `notifications`, `database.queries`,
//! `database.dml_rows`) are engine counters, so they appear in `Outcome::stats.counters` and
//! can be capped with `Limits::caps`.
//!
//! Changes to the contract first proposed for this module:
//! - `RunScope::end` (ending the run's database execution, also done on drop) returns what it
//!   rolled back, so the caller can log it.
//! - `scl_stdlib::database::register_database::<T>` takes no `Database`: the run's execution
//!   in its scope already carries it.
//! - [`saf_dir`] is the proposed place of a site's buffer under `data_dir`
//!   (`<data_dir>/site-<site>/saf`), which `scl run` buffers into.

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

use scl_compiler::{Engine, HostError, Value};
use scl_lang::modules::Owner;
use scl_stdlib::database::{
    Database, DatabaseExecution, DatabaseLimits, DatabaseScope, EndReport, register_database,
};
use scl_stdlib::external::{
    EventLog as ExternalEventLog, ExternalSystemModule, FailureEvent, register_external_system,
};
use scl_stdlib::notify::{EventLog as NotifyEventLog, NotifyEvent};
use tokio::runtime::Handle;

use crate::database::{CachedWriteDeliverer, DatabaseSetup};
use crate::deployment::Deployment;
use crate::external::{ExternalRuntime, ReqwestTransport, external_systems};
use crate::notify::{NotifyConfig, NotifyService};
use crate::saf::{Category, Deliverer, Deliverers, DeliveryFuture, Message, Outcome, Saf};

/// Events the modules report (permanent failures, buffered/parked messages); the site
/// implements it with its event log. Messages hold no secret.
pub trait NodeEvents: Send + Sync + 'static {
    /// Record one event: `kind` is a short stable name (`external_call_failed`,
    /// `notification_failed`, `notification_buffered`, `cached_write_failed`).
    fn record(&self, kind: &str, message: &str, delivery_id: Option<&str>);
}

/// [`NodeEvents`] as `scl::event_log` tracing events (warn level), for tools without an event
/// log.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingEvents;

impl NodeEvents for TracingEvents {
    fn record(&self, kind: &str, message: &str, delivery_id: Option<&str>) {
        tracing::warn!(
            target: "scl::event_log",
            kind,
            delivery_id = delivery_id.unwrap_or(""),
            "{message}"
        );
    }
}

/// What host functions of one script run can reach: `CallOptions::host_data` is a
/// `&RunScope`.
pub struct RunScope {
    /// The run's Database state (open transactions, counters).
    pub database: Option<DatabaseExecution>,
    /// The site's or central's own per-run data (instance, deadline); host functions of those
    /// roles downcast it (see [`RunScope::node`]).
    pub node: Option<Arc<dyn Any + Send + Sync>>,
}

impl RunScope {
    /// A scope with no modules' state (for a run that uses none of them).
    pub fn empty() -> RunScope {
        RunScope {
            database: None,
            node: None,
        }
    }

    /// The node's per-run data, if it is a `T`.
    pub fn node<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.node
            .as_deref()
            .and_then(|node| node.downcast_ref::<T>())
    }

    /// End the run: roll back every database transaction the script left open and return the
    /// connections to their pools. Dropping the scope does the same; calling this first tells
    /// what was rolled back. Safe to call more than once.
    pub fn end(&self) -> EndReport {
        self.database
            .as_ref()
            .map(DatabaseExecution::end)
            .unwrap_or_default()
    }
}

impl DatabaseScope for RunScope {
    fn database(&self) -> Option<&DatabaseExecution> {
        self.database.as_ref()
    }
}

/// Which node the modules are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// A site node: everything, with a store-and-forward buffer.
    Site,
    /// A central node: no buffer, so no cached operations, no Notify, no Deliveries.
    Central,
}

/// The outbound modules of one node, built from the deployment.
pub struct NodeModules {
    role: NodeRole,
    external: Arc<ExternalSystemModule>,
    external_runtime: Option<ExternalRuntime>,
    /// The Notify service, or why Notify cannot be used on this node.
    notify: Result<Arc<NotifyService>, String>,
    database: Database,
    saf: Option<Saf>,
    events: Arc<dyn NodeEvents>,
    problems: Vec<String>,
}

impl std::fmt::Debug for NodeModules {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("NodeModules")
            .field("role", &self.role)
            .field("database", &self.database)
            .field("saf", &self.saf)
            .field("problems", &self.problems)
            .finish_non_exhaustive()
    }
}

impl NodeModules {
    /// Builds ExternalSystem, Notify, Database (and Deliveries on a site) from the
    /// deployment. `saf` is the site's store-and-forward buffer (required on a site; ignored
    /// on central, which never buffers). Secrets are read through `env`. Definitions that
    /// cannot be used do not fail the build: they fail the scripts that use them and are
    /// listed in [`NodeModules::problems`]. Fails only when the node cannot run at all (a
    /// site without a buffer, an HTTP client that cannot be created).
    pub fn build(
        deployment: &Deployment,
        role: NodeRole,
        handle: Handle,
        saf: Option<Saf>,
        env: &dyn Fn(&str) -> Option<String>,
        events: Arc<dyn NodeEvents>,
    ) -> Result<NodeModules, String> {
        let saf = match (role, saf) {
            (NodeRole::Site, Some(saf)) => Some(saf),
            (NodeRole::Site, None) => {
                return Err("a site node needs its store-and-forward buffer".to_owned());
            }
            (NodeRole::Central, _) => None,
        };
        let mut problems = Vec::new();
        let external_events: Arc<dyn ExternalEventLog> =
            Arc::new(ExternalEvents(Arc::clone(&events)));

        // ExternalSystem.
        let (external, external_runtime) = match &saf {
            Some(saf) => {
                let runtime = ExternalRuntime::new(
                    handle.clone(),
                    &deployment.file,
                    env,
                    saf.clone(),
                    external_events,
                )?;
                problems.extend(runtime.problems.iter().cloned());
                (Arc::clone(&runtime.module), Some(runtime))
            }
            None => {
                let (systems, system_problems) = external_systems(&deployment.file, env);
                problems.extend(system_problems);
                let systems = Arc::new(systems);
                let transport = ReqwestTransport::new(handle.clone(), &systems)?;
                let module = ExternalSystemModule::new(
                    systems,
                    Arc::new(transport),
                    Arc::new(NoBuffer),
                    external_events,
                );
                (Arc::new(module), None)
            }
        };

        // Notify.
        let notify = match &saf {
            None => Err(
                "Notify is not available on central: notifications are sent by sites".to_owned(),
            ),
            Some(saf) => {
                let notify_events: Arc<dyn NotifyEventLog> =
                    Arc::new(NotifyEvents(Arc::clone(&events)));
                match NotifyConfig::from_deployment(deployment, |name| env(name)) {
                    Ok(config) => {
                        NotifyService::new(config, saf.clone(), handle.clone(), notify_events)
                            .map(Arc::new)
                            .map_err(|problem| {
                                problems.push(format!("notify: {problem}"));
                                format!("Notify cannot be used on this node: {problem}")
                            })
                    }
                    Err(config_problems) => {
                        problems.extend(config_problems.iter().map(|p| format!("notify: {p}")));
                        Err(
                            "Notify cannot be used on this node: the deployment's [smtp] or \
                             [notification_lists] settings have problems (see the node's \
                             startup log)"
                                .to_owned(),
                        )
                    }
                }
            }
        };

        // Database.
        let setup = DatabaseSetup::from_deployment_with(deployment, &handle, env);
        problems.extend(setup.problems.iter().map(ToString::to_string));
        let database = match &saf {
            Some(saf) => setup.into_site_database(saf.clone()),
            None => setup.into_central_database(),
        };

        Ok(NodeModules {
            role,
            external,
            external_runtime,
            notify,
            database,
            saf,
            events,
            problems,
        })
    }

    /// Registers every module this role may use in `engine`: ExternalSystem, Notify,
    /// Database and Deliveries (on central those it cannot serve are registered as
    /// `unavailable`). Core modules are excluded: the caller registers them with
    /// `scl_stdlib::core_modules::register_core_modules`. Runs must pass a [`RunScope`] from
    /// [`NodeModules::scope`] as their host data.
    pub fn register(&self, engine: &mut Engine) -> Result<(), String> {
        register_external_system(engine, Arc::clone(&self.external))?;
        match &self.notify {
            Ok(service) => crate::notify::host::register(engine, Arc::clone(service))?,
            Err(reason) => {
                let code = match self.role {
                    NodeRole::Central => "not_on_this_node",
                    NodeRole::Site => "not_configured",
                };
                register_unavailable(engine, &["Notify", "NotifyTarget"], code, reason)?
            }
        }
        register_database::<RunScope>(engine)?;
        match &self.saf {
            Some(saf) => register_deliveries(engine, saf.clone())?,
            None => register_unavailable(
                engine,
                &["Deliveries"],
                "not_on_this_node",
                "Deliveries is not available on central: deliveries are buffered on sites",
            )?,
        }
        Ok(())
    }

    /// The deliverers to give the site's store-and-forward `Forwarder` (external calls,
    /// notifications, cached writes). Empty on central.
    pub fn deliverers(&self) -> Deliverers {
        let mut deliverers = Deliverers::default();
        if self.saf.is_none() {
            return deliverers;
        }
        if let Some(runtime) = &self.external_runtime {
            deliverers.insert(Category::ExternalCall, Arc::new(runtime.deliverer.clone()));
        }
        if let Some(deliverer) = self.notify.as_ref().ok().and_then(|s| s.deliverer()) {
            deliverers.insert(Category::Notification, Arc::new(deliverer));
        }
        deliverers.insert(
            Category::CachedWrite,
            Arc::new(EventedCachedWrites {
                inner: CachedWriteDeliverer::new(self.database.clone()),
                events: Arc::clone(&self.events),
            }),
        );
        deliverers
    }

    /// A fresh [`RunScope`] for one script run, carrying the node's own per-run data.
    pub fn scope(&self, node: Option<Arc<dyn Any + Send + Sync>>) -> RunScope {
        RunScope {
            database: Some(self.database.execution(DatabaseLimits::default())),
            node,
        }
    }

    /// Startup problems (unusable systems, missing env vars), one line each. No secret values.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// The role the modules were built for.
    pub fn role(&self) -> NodeRole {
        self.role
    }

    /// The node's database connections.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The ExternalSystem module.
    pub fn external(&self) -> &Arc<ExternalSystemModule> {
        &self.external
    }

    /// The Notify service, when this node can send notifications.
    pub fn notify(&self) -> Option<&Arc<NotifyService>> {
        self.notify.as_ref().ok()
    }

    /// The store-and-forward buffer (a site's).
    pub fn saf(&self) -> Option<&Saf> {
        self.saf.as_ref()
    }
}

/// Where a site keeps its store-and-forward buffer: `<data_dir>/site-<site>/saf` (as
/// `scl serve` lays out a site node's data directory), with
/// `data_dir` relative to the deployment file; `<data_dir>/saf` when no site is named (a
/// buffer no site node forwards).
pub fn saf_dir(deployment: &Deployment, site: Option<&str>) -> PathBuf {
    let data_dir = deployment.base_dir().join(&deployment.file.data_dir);
    match site {
        Some(site) => data_dir.join(format!("site-{site}")).join("saf"),
        None => data_dir.join("saf"),
    }
}

/// `Deliveries.Status(id)`: the buffer's record of a delivery.
fn register_deliveries(engine: &mut Engine, saf: Saf) -> Result<(), String> {
    let table = scl_stdlib::signatures::module_table();
    let owner = Owner::Module("Deliveries".to_owned());
    let signature = table
        .lookup(&owner, "Status")
        .map(|id| table.function(id).clone())
        .ok_or("scl_stdlib::signatures declares no `Deliveries.Status`")?;
    engine
        .register_raw(signature, move |_context, args| {
            let id = args.first().and_then(Value::as_str).ok_or_else(|| {
                HostError::new(
                    "type",
                    "host_argument",
                    "Deliveries.Status: bad `id` argument",
                )
            })?;
            match saf.status(id) {
                Ok(Some(report)) => Ok(status_value(&report)),
                Ok(None) => Err(HostError::new(
                    "not_found",
                    "unknown_delivery",
                    format!(
                        "Deliveries.Status: no delivery `{id}` in the store-and-forward buffer"
                    ),
                )),
                Err(error) => Err(HostError::transient(
                    "buffer_unavailable",
                    format!(
                        "Deliveries.Status: the store-and-forward buffer cannot be read: {error}"
                    ),
                )),
            }
        })
        .map_err(|error| format!("Deliveries.Status: {error}"))?;
    Ok(())
}

/// The script's `DeliveryStatus` record (fields in canonical, sorted order).
fn status_value(report: &crate::saf::StatusReport) -> Value {
    let time = |ms: u64| {
        Value::String(scl_stdlib::core_modules::rfc3339(
            i64::try_from(ms / 1000).unwrap_or(i64::MAX),
            u32::try_from(ms % 1000).unwrap_or(0),
        ))
    };
    Value::Record(vec![
        ("attempts".into(), Value::Int(i64::from(report.attempts))),
        ("created_at".into(), time(report.created_at_ms)),
        ("id".into(), Value::String(report.id.clone())),
        (
            "last_error".into(),
            report.last_error.clone().map_or(Value::Null, Value::String),
        ),
        (
            "status".into(),
            Value::String(report.status.as_str().to_owned()),
        ),
        ("updated_at".into(), time(report.updated_at_ms)),
    ])
}

/// Register every function of these modules / host types as failing with kind `unavailable`
/// and `code`.
fn register_unavailable(
    engine: &mut Engine,
    owners: &[&str],
    code: &'static str,
    reason: &str,
) -> Result<(), String> {
    for signature in scl_stdlib::signatures::module_table().functions {
        let (Owner::Module(name) | Owner::HostType(name)) = &signature.owner;
        if !owners.contains(&name.as_str()) {
            continue;
        }
        let qualified = signature.qualified_name();
        let message = format!("`{qualified}`: {reason}");
        engine
            .register_raw(signature, move |_context, _args| {
                Err(HostError::new("unavailable", code, message.clone()))
            })
            .map_err(|error| format!("`{qualified}`: {error}"))?;
    }
    Ok(())
}

/// Central's outbox for `CachedCall`: nothing can be buffered.
struct NoBuffer;

impl scl_stdlib::external::Outbox for NoBuffer {
    fn new_id(&self) -> String {
        crate::saf::store::new_id(crate::saf::now_ms())
    }

    fn buffer(
        &self,
        _call: scl_stdlib::external::OutboxCall,
    ) -> Result<scl_stdlib::external::BufferedStatus, String> {
        Err("this node has no store-and-forward buffer (CachedCall runs on sites)".to_owned())
    }
}

/// ExternalSystem's event log, forwarding to the node's events.
struct ExternalEvents(Arc<dyn NodeEvents>);

impl ExternalEventLog for ExternalEvents {
    fn permanent_failure(&self, event: &FailureEvent) {
        let status = event
            .error
            .status
            .map(|status| format!(", HTTP {status}"))
            .unwrap_or_default();
        let message = format!(
            "ExternalSystem {}.{} ({}) failed permanently [{}{status}]: {}",
            event.system,
            event.method,
            event.mode.as_str(),
            event.error.code.as_str(),
            event.error.message
        );
        self.0.record(
            "external_call_failed",
            &message,
            event.delivery_id.as_deref(),
        );
    }
}

/// Notify's event log, forwarding to the node's events.
struct NotifyEvents(Arc<dyn NodeEvents>);

impl NotifyEventLog for NotifyEvents {
    fn record(&self, event: &NotifyEvent) {
        match event {
            NotifyEvent::Rejected {
                list,
                delivery_id,
                retry,
                error,
            } => {
                let when = if *retry { "at a retry" } else { "at once" };
                self.0.record(
                    "notification_failed",
                    &format!(
                        "notification to `{list}` failed permanently {when} [{}]: {error}",
                        error.code().as_str()
                    ),
                    Some(delivery_id),
                );
            }
            NotifyEvent::Buffered {
                list,
                delivery_id,
                failure,
            } => self.0.record(
                "notification_buffered",
                &format!("notification to `{list}` buffered for retry: {failure}"),
                Some(delivery_id),
            ),
        }
    }
}

/// The cached-write deliverer, reporting permanent failures (the write is parked) as events.
struct EventedCachedWrites {
    inner: CachedWriteDeliverer,
    events: Arc<dyn NodeEvents>,
}

impl Deliverer for EventedCachedWrites {
    fn deliver<'a>(&'a self, message: &'a Message) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let outcome = self.inner.deliver(message).await;
            if let Outcome::Permanent { error, .. } = &outcome {
                self.events.record(
                    "cached_write_failed",
                    &format!(
                        "cached write to `{}` failed permanently and is parked: {error}",
                        message.target
                    ),
                    Some(&message.id),
                );
            }
            outcome
        })
    }
}
