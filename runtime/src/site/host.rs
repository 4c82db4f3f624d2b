//! The site's own modules: `Instance.Code`, `Attributes.Get/Set`,
//! `Scripts.Call` and `Shared.Call`. Each run's [`RunNode`] (in
//! `RunScope::node`) says which instance and deployment the run belongs to.

use std::sync::Arc;

use scl_compiler::{Engine, HostContext, HostError, Value};
use scl_lang::modules::Owner;

use super::SiteShared;
use super::deployed::Deployed;
use super::instance::{self, CallError, Instance, MAX_NESTING, RunRequest, SetError, Trigger};
use crate::modules::RunScope;

/// What a site script run carries for the site's host functions.
pub(crate) struct RunNode {
    pub shared: Arc<SiteShared>,
    pub deployed: Arc<Deployed>,
    pub instance: Option<Arc<Instance>>,
    pub depth: u32,
}

/// The modules of this file, by qualified name.
const SITE_FUNCTIONS: [&str; 5] = [
    "Instance.Code",
    "Attributes.Get",
    "Attributes.Set",
    "Scripts.Call",
    "Shared.Call",
];

/// Registers the site modules, and every other module function of the
/// standard table the engine does not have yet (`Route`, which is for api
/// scripts on central) as an error of kind `unavailable`, so site scripts
/// are checked against the same table as `scl check`.
pub(crate) fn register(engine: &mut Engine) -> Result<(), String> {
    let registered: Vec<String> = engine
        .module_table()
        .functions
        .iter()
        .map(|f| f.qualified_name())
        .collect();
    for signature in scl_stdlib::signatures::module_table().functions {
        let qualified = signature.qualified_name();
        if registered.contains(&qualified) {
            continue;
        }
        let result = if SITE_FUNCTIONS.contains(&qualified.as_str()) {
            let name = qualified.clone();
            engine.register_raw(signature, move |context, args| call(&name, context, args))
        } else {
            let owner = match &signature.owner {
                Owner::Module(m) | Owner::HostType(m) => m.clone(),
            };
            engine.register_raw(signature, move |_, _| {
                Err(HostError::new(
                    "unavailable",
                    "module_unavailable",
                    format!("`{owner}` is not available on a site"),
                ))
            })
        };
        result.map_err(|e| format!("`{qualified}`: {e:?}"))?;
    }
    Ok(())
}

fn node<'c>(context: &'c HostContext<'_, '_>) -> Result<&'c RunNode, HostError> {
    context
        .host_data::<RunScope>()
        .and_then(|scope| scope.node.as_ref())
        .and_then(|node| node.downcast_ref::<RunNode>())
        .ok_or_else(|| {
            HostError::new(
                "unavailable",
                "no_site",
                "this function runs only in a site's scripts",
            )
        })
}

fn text(args: &[Value], index: usize) -> Result<&str, HostError> {
    args.get(index)
        .and_then(Value::as_str)
        .ok_or_else(|| HostError::new("type", "invalid_argument", "expected a string argument"))
}

fn json(args: &[Value], index: usize) -> serde_json::Value {
    args.get(index)
        .map_or(serde_json::Value::Null, Value::to_json)
}

fn this_instance(node: &RunNode) -> Result<&Arc<Instance>, HostError> {
    node.instance.as_ref().ok_or_else(|| {
        HostError::new(
            "unavailable",
            "no_instance",
            "this script does not run for an instance",
        )
    })
}

fn call(
    name: &str,
    context: &mut HostContext<'_, '_>,
    args: Vec<Value>,
) -> Result<Value, HostError> {
    let node = node(context)?;
    match name {
        "Instance.Code" => Ok(Value::String(this_instance(node)?.code.clone())),
        "Attributes.Get" => {
            let instance = this_instance(node)?;
            let attribute = text(&args, 0)?;
            instance.get(attribute).map(Value::Json).ok_or_else(|| {
                HostError::new(
                    "not_found",
                    "unknown_attribute",
                    format!(
                        "instance `{}` has no attribute `{attribute}`",
                        instance.code
                    ),
                )
            })
        }
        "Attributes.Set" => {
            let instance = this_instance(node)?;
            let attribute = text(&args, 0)?.to_owned();
            let value = json(&args, 1);
            instance::set_attributes(
                &node.shared,
                &node.deployed,
                instance,
                vec![(attribute, value)],
            )
            .map(|()| Value::Null)
            .map_err(|error| match error {
                SetError::Unknown(message) => {
                    HostError::new("not_found", "unknown_attribute", message)
                }
                SetError::Mistyped(message) => HostError::new("type", "invalid_attribute", message),
                SetError::Storage(message) => HostError::new("storage", "storage", message),
            })
        }
        "Scripts.Call" => {
            let instance = this_instance(node)?;
            let script = text(&args, 0)?;
            let params = json(&args, 1);
            nested(node)?;
            instance::run_script(
                &node.shared,
                &node.deployed,
                instance,
                script,
                &params,
                Trigger::Nested,
                node.depth + 1,
            )
            .map(Value::Json)
            .map_err(call_error)
        }
        "Shared.Call" => {
            let script = text(&args, 0)?;
            let params = json(&args, 1);
            nested(node)?;
            let compiled = node.deployed.shared_scripts.get(script).ok_or_else(|| {
                HostError::new(
                    "not_found",
                    "unknown_script",
                    format!("there is no shared script `{script}`"),
                )
            })?;
            instance::run_compiled(
                &node.shared,
                &node.deployed,
                node.instance.as_ref(),
                RunRequest {
                    name: script,
                    compiled,
                    params: &params,
                    trigger: Trigger::Nested,
                    depth: node.depth + 1,
                },
            )
            .map(Value::Json)
            .map_err(call_error)
        }
        other => Err(HostError::new(
            "unavailable",
            "module_unavailable",
            format!("`{other}` is not available on a site"),
        )),
    }
}

fn nested(node: &RunNode) -> Result<(), HostError> {
    if node.depth + 1 >= MAX_NESTING {
        Err(HostError::new(
            "script",
            "nesting_too_deep",
            format!("scripts calling scripts nest at most {MAX_NESTING} deep"),
        ))
    } else {
        Ok(())
    }
}

/// A nested call's failure, as the calling script sees it.
fn call_error(error: CallError) -> HostError {
    match error {
        CallError::NotFound(message) => HostError::new("not_found", "unknown_script", message),
        CallError::BadParams { code, message } => HostError::new("type", &code, message),
        CallError::Failed {
            kind,
            code,
            message,
        } => HostError::new(&kind, &code, message),
        CallError::Unavailable(message) => HostError::new("unavailable", "unavailable", message),
        CallError::UnknownAttribute(message) => {
            HostError::new("not_found", "unknown_attribute", message)
        }
    }
}
