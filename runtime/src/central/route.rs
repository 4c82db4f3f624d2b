//! `Route.To(code)` for api scripts: reach an instance on whichever site
//! hosts it, through the site's internal API ([`crate::protocol::SiteClient`]).
//!
//! Promises:
//! - the instance's site comes from the deployment; an instance it does not
//!   name is an error of kind `not_found` at once, before any network call;
//! - every call is synchronous for the script and bounded by what is left of
//!   the method's time ([`ApiRun::deadline`]); when nothing is left the run
//!   ends with a `timeout` limit error that no `catch` takes;
//! - an unreachable site is an error of kind `unreachable` for the script,
//!   never buffered (seed CD-IA-8);
//! - `GetAttributes` / `SetAttributes` are one round trip each (CD-IA-9).
//!
//! The host functions run on script threads (never on the reactor) and wait
//! for the async client with `Handle::block_on`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scl_compiler::{Engine, HostContext, HostError, HostObject, Value};
use scl_lang::modules::{HostFnSig, Owner};

use crate::deployment::Deployment;
use crate::modules::RunScope;
use crate::protocol::{RemoteError, SiteClient};

/// Per-run data the Route functions read: when the method's time runs out.
#[derive(Debug, Clone, Copy)]
pub struct ApiRun {
    pub deadline: Instant,
}

/// Instance codes to the clients of their sites.
pub(crate) struct Routes {
    instances: HashMap<String, Arc<SiteClient>>,
    /// Every site's client, in the deployment's order.
    sites: Vec<Arc<SiteClient>>,
    handle: tokio::runtime::Handle,
}

/// The value behind a script's `RouteTarget`.
struct RouteTarget {
    instance: String,
    site: Arc<SiteClient>,
}

/// The longest a single site request may take when no deadline is shorter.
const SITE_REQUEST_CEILING: Duration = Duration::from_secs(300);

impl Routes {
    /// One client per site (its token from the variable `token_env` names,
    /// read through `env`), and the instance → site map.
    pub(crate) fn new(
        deployment: &Deployment,
        env: &dyn Fn(&str) -> Option<String>,
        in_process: &HashMap<String, crate::site::Site>,
        handle: tokio::runtime::Handle,
    ) -> Result<Routes, String> {
        let mut sites: HashMap<String, Arc<SiteClient>> = HashMap::new();
        let mut ordered = Vec::new();
        for site in &deployment.file.site {
            let name = site.name.get_ref();
            let token = match &site.token_env {
                Some(variable) => env(variable).filter(|t| !t.is_empty()).ok_or_else(|| {
                    format!(
                        "site `{name}`: environment variable `{variable}` (the site token) is not set"
                    )
                })?,
                None => String::new(),
            };
            let mut client = SiteClient::new(name, &site.url, &token, SITE_REQUEST_CEILING)?;
            if let Some(standby) = &site.standby {
                client = client.with_standby(&standby.get_ref().url);
            } else if let Some(site) = in_process.get(name) {
                client = client.in_process(crate::site::api::router(site), Arc::new(site.clone()));
            }
            let client = Arc::new(client);
            ordered.push(Arc::clone(&client));
            sites.insert(name.clone(), client);
        }
        let mut instances = HashMap::new();
        for instance in &deployment.file.instance {
            if let Some(client) = sites.get(instance.site.get_ref()) {
                instances.insert(instance.code.get_ref().clone(), Arc::clone(client));
            }
        }
        Ok(Routes {
            instances,
            sites: ordered,
            handle,
        })
    }

    /// Every site's client.
    pub(crate) fn sites(&self) -> &[Arc<SiteClient>] {
        &self.sites
    }

    /// Registers `Route.To` and the `RouteTarget` methods.
    pub(crate) fn register(self: &Arc<Self>, engine: &mut Engine) -> Result<(), String> {
        for signature in scl_stdlib::signatures::module_table().functions {
            let is_route = matches!(&signature.owner,
                Owner::Module(m) if m == "Route")
                || matches!(&signature.owner, Owner::HostType(t) if t == "RouteTarget");
            if !is_route {
                continue;
            }
            let routes = Arc::clone(self);
            let described = signature.clone();
            engine
                .register_raw(signature, move |context, args| {
                    routes.dispatch(&described, context, args)
                })
                .map_err(|e| format!("registering Route: {e}"))?;
        }
        Ok(())
    }

    fn dispatch(
        &self,
        signature: &HostFnSig,
        context: &mut HostContext<'_, '_>,
        args: Vec<Value>,
    ) -> Result<Value, HostError> {
        let mut args = args.into_iter();
        if matches!(&signature.owner, Owner::Module(_)) {
            // Route.To(instance)
            let code = string_arg(args.next())?;
            let Some(site) = self.instances.get(&code) else {
                return Err(HostError::new(
                    "not_found",
                    "unknown_instance",
                    format!("the deployment has no instance `{code}`"),
                ));
            };
            return Ok(Value::Host(HostObject::new(
                "RouteTarget",
                RouteTarget {
                    instance: code,
                    site: Arc::clone(site),
                },
            )));
        }
        let receiver = args.next();
        let target = match &receiver {
            Some(Value::Host(object)) => object.downcast_ref::<RouteTarget>(),
            _ => None,
        }
        .ok_or_else(|| internal("the RouteTarget receiver is missing"))?;
        let deadline = run_of(context)
            .map(|run| run.deadline)
            .ok_or_else(|| internal("Route needs an api method run"))?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(time_is_up());
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            // Blocking here would stall the reactor: script threads never get here.
            return Err(internal("Route called on an async thread"));
        }
        let instance = target.instance.as_str();
        let site = &target.site;
        let result = match signature.name.as_str() {
            "Call" => {
                let script = string_arg(args.next())?;
                let params = args.next().map_or(serde_json::Value::Null, |v| v.to_json());
                let params = match params {
                    serde_json::Value::Null => serde_json::Value::Object(Default::default()),
                    other => other,
                };
                self.handle
                    .block_on(site.call(instance, &script, params, Some(remaining)))
                    .map(Value::Json)
            }
            "GetAttribute" => {
                let name = string_arg(args.next())?;
                self.read(site, instance, std::slice::from_ref(&name), remaining)
                    .and_then(|values| {
                        values
                            .into_iter()
                            .next()
                            .map(Value::Json)
                            .ok_or_else(|| missing_attribute(instance, &name))
                    })
            }
            "GetAttributes" => {
                let names: Vec<String> = match args.next() {
                    Some(Value::List(items)) => items
                        .into_iter()
                        .map(|item| string_arg(Some(item)))
                        .collect::<Result<_, _>>()?,
                    _ => return Err(internal("GetAttributes wants a list of names")),
                };
                self.read(site, instance, &names, remaining).map(|values| {
                    Value::Map(
                        names
                            .into_iter()
                            .zip(values)
                            .map(|(name, value)| (name.into(), Value::Json(value)))
                            .collect(),
                    )
                })
            }
            "SetAttribute" => {
                let name = string_arg(args.next())?;
                let value = args.next().map_or(serde_json::Value::Null, |v| v.to_json());
                let values = BTreeMap::from([(name, value)]);
                self.handle
                    .block_on(site.set_attributes(instance, values, Some(remaining)))
                    .map(|()| Value::Null)
            }
            "SetAttributes" => {
                let values: BTreeMap<String, serde_json::Value> = match args.next() {
                    Some(Value::Map(entries)) => entries
                        .into_iter()
                        .map(|(name, value)| (String::from(&*name), value.to_json()))
                        .collect(),
                    Some(Value::Json(serde_json::Value::Object(map))) => map.into_iter().collect(),
                    _ => return Err(internal("SetAttributes wants a map of values")),
                };
                self.handle
                    .block_on(site.set_attributes(instance, values, Some(remaining)))
                    .map(|()| Value::Null)
            }
            other => return Err(internal(&format!("unknown RouteTarget method `{other}`"))),
        };
        result.map_err(|error| {
            if error.kind == "timeout" && Instant::now() + Duration::from_millis(5) >= deadline {
                time_is_up()
            } else {
                remote(error)
            }
        })
    }

    /// The values of `names`, in that order: straight from a site in this process (a
    /// read waits for nothing), else one request within `remaining`.
    fn read(
        &self,
        site: &SiteClient,
        instance: &str,
        names: &[String],
        remaining: Duration,
    ) -> Result<Vec<serde_json::Value>, RemoteError> {
        if let Some(local) = site.local() {
            return local.get_attributes(instance, names);
        }
        let values =
            self.handle
                .block_on(site.get_attributes(instance, names.to_vec(), Some(remaining)))?;
        names
            .iter()
            .map(|name| {
                values
                    .get(name)
                    .cloned()
                    .ok_or_else(|| missing_attribute(instance, name))
            })
            .collect()
    }
}

/// The method's per-run data, whether passed alone or inside the modules'
/// run scope.
fn run_of<'c>(context: &'c HostContext<'_, '_>) -> Option<&'c ApiRun> {
    context
        .host_data::<RunScope>()
        .and_then(RunScope::node::<ApiRun>)
        .or_else(|| context.host_data::<ApiRun>())
}

fn string_arg(value: Option<Value>) -> Result<String, HostError> {
    match value {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Json(serde_json::Value::String(s))) => Ok(s),
        _ => Err(internal("expected a string argument")),
    }
}

fn internal(message: &str) -> HostError {
    HostError::new("script", "internal", message.to_string())
}

fn missing_attribute(instance: &str, name: &str) -> RemoteError {
    RemoteError {
        kind: "not_found".into(),
        code: "unknown_attribute".into(),
        message: format!("instance `{instance}` has no attribute `{name}`"),
        status: None,
    }
}

/// The method's time ran out: ends the run (no `catch` takes it).
fn time_is_up() -> HostError {
    HostError::limit("timeout", "the method's time ran out during a routed call")
}

fn remote(error: RemoteError) -> HostError {
    let host = HostError::new(&error.kind, &error.code, error.message);
    match error.status {
        Some(status) => host.with_status(i64::from(status)),
        None => host,
    }
}
