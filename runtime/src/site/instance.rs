//! Instances as actors: each has a mailbox of jobs that run one at a time,
//! in order, on the script pool; the triggers (interval, on-change, alarm)
//! and the internal API put jobs in it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use scl_compiler::{CallOptions, Limits, Status};
use tokio::task::JoinHandle;

use super::deployed::{Compiled, Deployed, coerce, fits, type_name};
use super::{SiteShared, host};
use crate::runs::{RunRecord, RunSource};
use crate::webhooks::{Event, EventType};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// How many jobs one turn on a pool thread runs before the instance yields
/// the thread to others.
const TURN: usize = 32;

/// Scripts calling scripts (`Scripts.Call`, `Shared.Call`) nest at most this deep.
pub(crate) const MAX_NESTING: u32 = 16;

/// One instance on this site.
pub(crate) struct Instance {
    pub code: String,
    state: Mutex<InstanceState>,
    mailbox: Mutex<Mailbox>,
    /// Interval scripts with a run waiting in the mailbox (not queued twice).
    pending: Mutex<HashSet<String>>,
}

struct InstanceState {
    template: String,
    attributes: BTreeMap<String, serde_json::Value>,
    /// Alarm script → whether its condition held at the last evaluation.
    alarms: HashMap<String, bool>,
}

#[derive(Default)]
struct Mailbox {
    jobs: VecDeque<Job>,
    running: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Instance {
    pub fn template(&self) -> String {
        lock(&self.state).template.clone()
    }

    pub fn snapshot(&self) -> BTreeMap<String, serde_json::Value> {
        lock(&self.state).attributes.clone()
    }

    pub fn get(&self, name: &str) -> Option<serde_json::Value> {
        lock(&self.state).attributes.get(name).cloned()
    }
}

/// Why a call did not return a result.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// Unknown instance or script (HTTP 404).
    NotFound(String),
    /// Parameters that do not fit `main` (HTTP 400).
    BadParams { code: String, message: String },
    /// The script failed (HTTP 500).
    Failed {
        kind: String,
        code: String,
        message: String,
    },
    /// The site is shutting down (HTTP 503).
    Unavailable(String),
    /// An attribute the instance does not have, read by name (HTTP 404).
    UnknownAttribute(String),
}

impl CallError {
    /// What the internal API answers for it: HTTP status, error code, error kind and
    /// message. The HTTP routes and the in-process client ([`super::LocalSite`]) both
    /// answer from here, so the two transports cannot differ.
    pub fn answer(&self) -> (u16, &str, &str, &str) {
        match self {
            CallError::NotFound(message) => (404, "not_found", "not_found", message),
            CallError::UnknownAttribute(message) => {
                (404, "unknown_attribute", "not_found", message)
            }
            CallError::BadParams { code, message } => (400, code, "type", message),
            CallError::Failed {
                kind,
                code,
                message,
            } => (500, code, kind, message),
            CallError::Unavailable(message) => (503, "unavailable", "unreachable", message),
        }
    }
}

/// The values of `names` of instance `code`, in the order asked (one lock of its state,
/// no copy of the attributes not asked for).
pub(crate) fn get_attributes(
    shared: &SiteShared,
    code: &str,
    names: &[String],
) -> Result<Vec<serde_json::Value>, CallError> {
    let instance = shared
        .instance(code)
        .ok_or_else(|| CallError::NotFound(format!("instance `{code}` is not on this site")))?;
    let state = lock(&instance.state);
    names
        .iter()
        .map(|name| {
            state.attributes.get(name).cloned().ok_or_else(|| {
                CallError::UnknownAttribute(format!("instance `{code}` has no attribute `{name}`"))
            })
        })
        .collect()
}

/// Creates or updates the actors for the instances of a new deployment.
/// Values stored on disk win over the deployment's initial values when they
/// still fit the attribute's type.
pub(crate) fn adopt(shared: &Arc<SiteShared>, deployed: &Arc<Deployed>) {
    let mut instances = shared.instances.write().unwrap_or_else(|p| p.into_inner());
    let mut next = HashMap::with_capacity(deployed.instances.len());
    for plan in &deployed.instances {
        let Some(template) = deployed.templates.get(&plan.template) else {
            continue;
        };
        let stored = match instances.get(&plan.code) {
            Some(existing) => existing.snapshot(),
            None => shared.store.attributes(&plan.code).unwrap_or_else(|error| {
                tracing::error!(%error, instance = %plan.code, "cannot read stored attributes");
                BTreeMap::new()
            }),
        };
        let mut attributes = plan.initial.clone();
        for (name, value) in stored {
            if let Some(definition) = template.attributes.get(&name)
                && fits(definition.ty, &value)
            {
                attributes.insert(name, coerce(definition.ty, value));
            }
        }
        let instance = match instances.get(&plan.code) {
            Some(existing) => {
                let mut state = lock(&existing.state);
                state.template = plan.template.clone();
                state.attributes = attributes;
                state
                    .alarms
                    .retain(|name, _| template.alarms.iter().any(|a| &a.script == name));
                drop(state);
                Arc::clone(existing)
            }
            None => Arc::new(Instance {
                code: plan.code.clone(),
                state: Mutex::new(InstanceState {
                    template: plan.template.clone(),
                    attributes,
                    alarms: HashMap::new(),
                }),
                mailbox: Mutex::new(Mailbox::default()),
                pending: Mutex::new(HashSet::new()),
            }),
        };
        next.insert(plan.code.clone(), instance);
    }
    *instances = next;
    drop(instances);
    // Alarms whose condition already holds are raised once the deployment runs.
    for instance in shared
        .instances
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
    {
        let job_shared = Arc::clone(shared);
        let job_instance = Arc::clone(instance);
        let job_deployed = Arc::clone(deployed);
        let _ = submit(
            shared,
            instance,
            Box::new(move || evaluate_alarms(&job_shared, &job_deployed, &job_instance)),
        );
    }
}

/// Queues a job for an instance; it runs after every job queued before it.
pub(crate) fn submit(
    shared: &Arc<SiteShared>,
    instance: &Arc<Instance>,
    job: Job,
) -> Result<(), crate::pool::PoolClosed> {
    let start = {
        let mut mailbox = lock(&instance.mailbox);
        mailbox.jobs.push_back(job);
        !std::mem::replace(&mut mailbox.running, true)
    };
    if start {
        schedule(shared, instance)
    } else {
        Ok(())
    }
}

fn schedule(
    shared: &Arc<SiteShared>,
    instance: &Arc<Instance>,
) -> Result<(), crate::pool::PoolClosed> {
    let turn_shared = Arc::clone(shared);
    let turn_instance = Arc::clone(instance);
    let scheduled = shared
        .pool
        .spawn(move || run_turn(&turn_shared, &turn_instance));
    if scheduled.is_err() {
        let mut mailbox = lock(&instance.mailbox);
        mailbox.jobs.clear();
        mailbox.running = false;
    }
    scheduled
}

/// Runs up to [`TURN`] jobs of one instance, then yields the thread.
fn run_turn(shared: &Arc<SiteShared>, instance: &Arc<Instance>) {
    for _ in 0..TURN {
        let job = {
            let mut mailbox = lock(&instance.mailbox);
            match mailbox.jobs.pop_front() {
                Some(job) => job,
                None => {
                    mailbox.running = false;
                    return;
                }
            }
        };
        // A bug in a host function must not stop the instance's mailbox.
        if std::panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!(instance = %instance.code, "a job of the instance panicked");
        }
    }
    let _ = schedule(shared, instance);
}

/// What started a run, for the event log.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trigger {
    Call,
    Interval,
    Change,
    Alarm,
    Nested,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Call => "call",
            Trigger::Interval => "interval",
            Trigger::Change => "on_change",
            Trigger::Alarm => "alarm",
            Trigger::Nested => "nested",
        }
    }
}

/// One script run: which script, with what, why, and how deep in
/// scripts calling scripts.
pub(crate) struct RunRequest<'a> {
    pub name: &'a str,
    pub compiled: &'a Compiled,
    pub params: &'a serde_json::Value,
    pub trigger: Trigger,
    pub depth: u32,
}

/// Runs a compiled script for `instance` on the current thread (which is
/// the instance's turn on the pool).
pub(crate) fn run_compiled(
    shared: &Arc<SiteShared>,
    deployed: &Arc<Deployed>,
    instance: Option<&Arc<Instance>>,
    run: RunRequest<'_>,
) -> Result<serde_json::Value, CallError> {
    let RunRequest {
        name,
        compiled,
        params,
        trigger,
        depth,
    } = run;
    if let Err(error) = crate::params::check(params, &compiled.params) {
        return Err(CallError::BadParams {
            code: error.code.to_owned(),
            message: format!("script `{name}`: {}", error.message),
        });
    }
    let node: Arc<dyn std::any::Any + Send + Sync> = Arc::new(host::RunNode {
        shared: Arc::clone(shared),
        deployed: Arc::clone(deployed),
        instance: instance.cloned(),
        depth,
    });
    let scope = deployed.modules.scope(Some(node));
    let options = CallOptions {
        limits: Limits {
            timeout: Some(compiled.timeout),
            heap_bytes: Some(crate::pool::SCRIPT_HEAP_BYTES),
            ..Limits::default()
        },
        host_data: Some(&scope),
        ..CallOptions::default()
    };
    let started = Instant::now();
    let started_ms = crate::timelog::now_ms();
    let outcome = compiled.script.call_main_json(params, &options);
    drop(scope);
    shared.runs.record(RunRecord::from_outcome(
        RunSource {
            node: &shared.options.name,
            script: name,
            kind: compiled.kind,
            trigger: trigger.as_str(),
            instance: instance.map(|i| i.code.as_str()),
        },
        started_ms,
        &outcome,
        shared.runs.max_log_lines(),
    ));
    let metrics = &shared.metrics;
    metrics.run_micros.fetch_add(
        u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    let counter = match outcome.status() {
        Status::Success => &metrics.runs_success,
        Status::Failure => &metrics.runs_failure,
        Status::Timeout => &metrics.runs_timeout,
        Status::Limit => &metrics.runs_limit,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let outcome_status = outcome.status();
    match outcome.result {
        Ok(value) => Ok(value.to_json()),
        Err(error) => {
            let at = match (error.line, error.column) {
                (Some(line), Some(column)) => format!(" at {line}:{column}"),
                _ => String::new(),
            };
            // Nested failures are logged once, by the outermost run.
            if depth == 0 && deployed.webhooks.wants(EventType::ScriptFailed) {
                let event = Event::new(
                    EventType::ScriptFailed,
                    serde_json::json!({
                        "site": shared.options.name,
                        "instance": instance.map(|i| i.code.as_str()),
                        "script": name,
                        "kind": compiled.kind,
                        "trigger": trigger.as_str(),
                        "status": outcome_status.name(),
                        "error": {
                            "kind": error.kind,
                            "code": error.code,
                            "message": error.message,
                        },
                    }),
                );
                deployed.webhooks.emit_blocking(&event);
            }
            if depth == 0 {
                shared.event(
                    "script_failed",
                    instance.map(|i| i.code.as_str()),
                    Some(name),
                    format!(
                        "{} run failed [{}/{}]{at}: {}",
                        trigger.as_str(),
                        error.kind,
                        error.code,
                        error.message
                    ),
                );
            }
            Err(CallError::Failed {
                kind: error.kind,
                code: error.code,
                message: error.message,
            })
        }
    }
}

/// Runs a script of the instance's template (on the instance's turn).
pub(crate) fn run_script(
    shared: &Arc<SiteShared>,
    deployed: &Arc<Deployed>,
    instance: &Arc<Instance>,
    name: &str,
    params: &serde_json::Value,
    trigger: Trigger,
    depth: u32,
) -> Result<serde_json::Value, CallError> {
    let template = instance.template();
    let Some(compiled) = deployed
        .templates
        .get(&template)
        .and_then(|t| t.scripts.get(name))
    else {
        return Err(CallError::NotFound(format!(
            "instance `{}` (template `{template}`) has no script `{name}`",
            instance.code
        )));
    };
    run_compiled(
        shared,
        deployed,
        Some(instance),
        RunRequest {
            name,
            compiled,
            params,
            trigger,
            depth,
        },
    )
}

/// Queues a run the site starts itself (interval, on-change, alarm): its
/// parameters are the definition's `args`, plus `extra` where `main` has
/// such a parameter.
fn queue_triggered(
    shared: &Arc<SiteShared>,
    deployed: &Arc<Deployed>,
    instance: &Arc<Instance>,
    name: &str,
    extra: &[(&str, serde_json::Value)],
    trigger: Trigger,
) {
    let template = instance.template();
    let Some(compiled) = deployed
        .templates
        .get(&template)
        .and_then(|t| t.scripts.get(name))
    else {
        return;
    };
    let mut params = compiled.args.clone();
    for (key, value) in extra {
        if compiled.params.iter().any(|(p, _)| p == key) {
            params.insert((*key).to_owned(), value.clone());
        }
    }
    let params = serde_json::Value::Object(params);
    let job_shared = Arc::clone(shared);
    let job_deployed = Arc::clone(deployed);
    let job_instance = Arc::clone(instance);
    let name = name.to_owned();
    let _ = submit(
        shared,
        instance,
        Box::new(move || {
            if matches!(trigger, Trigger::Interval) {
                lock(&job_instance.pending).remove(&name);
            }
            let _ = run_script(
                &job_shared,
                &job_deployed,
                &job_instance,
                &name,
                &params,
                trigger,
                0,
            );
        }),
    );
}

/// Starts one interval timer per (instance, interval script).
pub(crate) fn start_triggers(
    shared: &Arc<SiteShared>,
    deployed: &Arc<Deployed>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let instances: Vec<Arc<Instance>> = shared
        .instances
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    for instance in instances {
        let Some(template) = deployed.templates.get(&instance.template()) else {
            continue;
        };
        for (name, compiled) in &template.scripts {
            let Some(every) = compiled.every else {
                continue;
            };
            let shared = Arc::downgrade(shared);
            let deployed = Arc::downgrade(deployed);
            let instance = Arc::clone(&instance);
            let name = name.clone();
            let handle = tokio::runtime::Handle::current();
            tasks.push(handle.spawn(async move {
                let start = tokio::time::Instant::now() + every;
                let mut ticks = tokio::time::interval_at(start, every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let (Some(shared), Some(deployed)) = (shared.upgrade(), deployed.upgrade())
                    else {
                        return;
                    };
                    if !lock(&instance.pending).insert(name.clone()) {
                        // The previous run has not started yet: skip, don't pile up.
                        shared
                            .metrics
                            .triggers_skipped
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    queue_triggered(&shared, &deployed, &instance, &name, &[], Trigger::Interval);
                }
            }));
        }
    }
    tasks
}

/// An attribute that cannot be set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SetError {
    Unknown(String),
    Mistyped(String),
    Storage(String),
}

/// Sets attributes of an instance (all or none), persists them, then queues
/// the on-change scripts of the changed ones and evaluates the alarms.
/// Runs on the instance's turn.
pub(crate) fn set_attributes(
    shared: &Arc<SiteShared>,
    deployed: &Arc<Deployed>,
    instance: &Arc<Instance>,
    values: Vec<(String, serde_json::Value)>,
) -> Result<(), SetError> {
    let template_name = instance.template();
    let Some(template) = deployed.templates.get(&template_name) else {
        return Err(SetError::Unknown(format!(
            "template `{template_name}` is not deployed"
        )));
    };
    let mut checked = Vec::with_capacity(values.len());
    for (name, value) in values {
        let Some(definition) = template.attributes.get(&name) else {
            return Err(SetError::Unknown(format!(
                "template `{template_name}` has no attribute `{name}`"
            )));
        };
        if !fits(definition.ty, &value) {
            return Err(SetError::Mistyped(format!(
                "attribute `{name}` is {}, not {value}",
                type_name(definition.ty)
            )));
        }
        checked.push((name, coerce(definition.ty, value)));
    }
    let (changed, previous): (Vec<(String, serde_json::Value)>, Vec<serde_json::Value>) = {
        let state = lock(&instance.state);
        checked
            .into_iter()
            .filter(|(name, value)| state.attributes.get(name) != Some(value))
            .map(|(name, value)| {
                let previous = state
                    .attributes
                    .get(&name)
                    .cloned()
                    .unwrap_or(serde_json::Value::Null);
                ((name, value), previous)
            })
            .unzip()
    };
    if changed.is_empty() {
        return Ok(());
    }
    shared
        .store
        .put_attributes(&instance.code, &changed)
        .map_err(|e| SetError::Storage(e.to_string()))?;
    {
        let mut state = lock(&instance.state);
        for (name, value) in &changed {
            state.attributes.insert(name.clone(), value.clone());
        }
    }
    if deployed.webhooks.wants(EventType::AttributeChanged) {
        for ((name, value), previous) in changed.iter().zip(previous) {
            let event = Event::new(
                EventType::AttributeChanged,
                serde_json::json!({
                    "site": shared.options.name,
                    "instance": instance.code,
                    "template": template_name,
                    "attribute": name,
                    "value": value,
                    "previous": previous,
                }),
            );
            deployed.webhooks.emit_blocking(&event);
        }
    }
    let mut triggered: Vec<&String> = template
        .scripts
        .iter()
        .filter(|(_, c)| {
            c.on_change
                .iter()
                .any(|a| changed.iter().any(|(n, _)| n == a))
        })
        .map(|(name, _)| name)
        .collect();
    triggered.sort();
    for name in triggered {
        queue_triggered(shared, deployed, instance, name, &[], Trigger::Change);
    }
    evaluate_alarms(shared, deployed, instance);
    Ok(())
}

/// Evaluates the alarm conditions of an instance and queues the alarm
/// scripts whose condition changed (`state` = `raised` or `cleared`).
pub(crate) fn evaluate_alarms(
    shared: &Arc<SiteShared>,
    deployed: &Arc<Deployed>,
    instance: &Arc<Instance>,
) {
    let Some(template) = deployed.templates.get(&instance.template()) else {
        return;
    };
    if template.alarms.is_empty() {
        return;
    }
    let attributes = serde_json::Value::Object(instance.snapshot().into_iter().collect());
    for alarm in &template.alarms {
        let options = CallOptions {
            limits: Limits {
                timeout: Some(Duration::from_secs(1)),
                heap_bytes: Some(crate::pool::SCRIPT_HEAP_BYTES),
                ..Limits::default()
            },
            ..CallOptions::default()
        };
        let outcome = alarm.condition.call_main_json(&attributes, &options);
        // A condition that cannot be evaluated (an attribute without a value)
        // counts as not holding.
        let holds = matches!(outcome.result, Ok(scl_compiler::Value::Bool(true)));
        let was = {
            let mut state = lock(&instance.state);
            state.alarms.insert(alarm.script.clone(), holds)
        }
        .unwrap_or(false);
        if holds != was {
            let state = if holds { "raised" } else { "cleared" };
            let event_type = if holds {
                EventType::AlarmRaised
            } else {
                EventType::AlarmCleared
            };
            if deployed.webhooks.wants(event_type) {
                let event = Event::new(
                    event_type,
                    serde_json::json!({
                        "site": shared.options.name,
                        "instance": instance.code,
                        "template": instance.template(),
                        "alarm": alarm.script,
                        "attributes": attributes,
                    }),
                );
                deployed.webhooks.emit_blocking(&event);
            }
            queue_triggered(
                shared,
                deployed,
                instance,
                &alarm.script,
                &[
                    ("alarm", serde_json::Value::String(alarm.script.clone())),
                    ("state", serde_json::Value::String(state.to_owned())),
                ],
                Trigger::Alarm,
            );
        }
    }
}

/// Runs a script of an instance through its mailbox and waits for it.
pub(crate) async fn call(
    shared: &Arc<SiteShared>,
    code: &str,
    script: &str,
    params: serde_json::Value,
) -> Result<serde_json::Value, CallError> {
    let instance = shared
        .instance(code)
        .ok_or_else(|| CallError::NotFound(format!("instance `{code}` is not on this site")))?;
    let deployed = shared
        .deployed()
        .ok_or_else(|| CallError::Unavailable("the site has no deployment yet".to_owned()))?;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let job_shared = Arc::clone(shared);
    let job_instance = Arc::clone(&instance);
    let script = script.to_owned();
    submit(
        shared,
        &instance,
        Box::new(move || {
            let result = run_script(
                &job_shared,
                &deployed,
                &job_instance,
                &script,
                &params,
                Trigger::Call,
                0,
            );
            let _ = sender.send(result);
        }),
    )
    .map_err(|e| CallError::Unavailable(e.to_string()))?;
    receiver
        .await
        .map_err(|_| CallError::Unavailable("the site is shutting down".to_owned()))?
}

/// Sets attributes through the instance's mailbox and waits for it.
pub(crate) async fn set(
    shared: &Arc<SiteShared>,
    code: &str,
    values: Vec<(String, serde_json::Value)>,
) -> Result<(), CallError> {
    let instance = shared
        .instance(code)
        .ok_or_else(|| CallError::NotFound(format!("instance `{code}` is not on this site")))?;
    let deployed = shared
        .deployed()
        .ok_or_else(|| CallError::Unavailable("the site has no deployment yet".to_owned()))?;
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let job_shared = Arc::clone(shared);
    let job_instance = Arc::clone(&instance);
    submit(
        shared,
        &instance,
        Box::new(move || {
            let _ = sender.send(set_attributes(
                &job_shared,
                &deployed,
                &job_instance,
                values,
            ));
        }),
    )
    .map_err(|e| CallError::Unavailable(e.to_string()))?;
    match receiver.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(SetError::Unknown(message))) => Err(CallError::NotFound(message)),
        Ok(Err(SetError::Mistyped(message))) => Err(CallError::BadParams {
            code: "invalid_attribute".to_owned(),
            message,
        }),
        Ok(Err(SetError::Storage(message))) => Err(CallError::Failed {
            kind: "storage".to_owned(),
            code: "storage".to_owned(),
            message,
        }),
        Err(_) => Err(CallError::Unavailable(
            "the site is shutting down".to_owned(),
        )),
    }
}
