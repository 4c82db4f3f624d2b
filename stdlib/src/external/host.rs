//! The script-facing wiring: `ExternalSystem.Call` and `ExternalSystem.CachedCall` registered
//! in an [`Engine`] with the signatures of [`crate::signatures::module_table`], calling an
//! [`ExternalSystemModule`]. Errors reach the script as catchable errors with the module's
//! kind (`transient` / `permanent`), code, message and HTTP status.

use std::sync::Arc;

use scl_compiler::{Engine, HostError, Value};
use scl_lang::modules::Owner;

use super::{Delivery, ExternalError, ExternalSystemModule};

/// The run counter every `Call` and `CachedCall` adds one to (a cap in `Limits::caps` limits
/// the calls of one run).
pub const CALLOUTS: &str = "callouts";

/// Register `ExternalSystem.Call` and `ExternalSystem.CachedCall` in `engine`, both calling
/// `module` (on the script's thread, which they block until the answer). Each call counts in
/// the run's [`CALLOUTS`] counter.
pub fn register_external_system(
    engine: &mut Engine,
    module: Arc<ExternalSystemModule>,
) -> Result<(), String> {
    let table = crate::signatures::module_table();
    for (name, ty) in &table.types {
        engine.register_named_type(name, ty.clone());
    }
    for signature in table.functions {
        if signature.owner != Owner::Module("ExternalSystem".to_owned()) {
            continue;
        }
        let qualified = signature.qualified_name();
        let module = Arc::clone(&module);
        let registered = match signature.name.as_str() {
            "Call" => engine.register_raw(signature, move |_, args| {
                let (system, method, params) = arguments(&args)?;
                module
                    .call(system, method, &params)
                    .map(Value::Json)
                    .map_err(host_error)
            }),
            "CachedCall" => engine.register_raw(signature, move |_, args| {
                let (system, method, params) = arguments(&args)?;
                module
                    .cached_call(system, method, &params)
                    .map(delivery_value)
                    .map_err(host_error)
            }),
            other => {
                return Err(format!(
                    "`ExternalSystem.{other}` has no host implementation"
                ));
            }
        };
        let id = registered.map_err(|error| format!("`{qualified}`: {error}"))?;
        engine.set_category(id, CALLOUTS);
    }
    Ok(())
}

fn arguments(args: &[Value]) -> Result<(&str, &str, serde_json::Value), HostError> {
    let text = |index: usize| {
        args.get(index).and_then(Value::as_str).ok_or_else(|| {
            HostError::new(
                "type",
                "invalid_argument",
                "ExternalSystem: expected a string argument",
            )
        })
    };
    let params = args
        .get(2)
        .map(Value::to_json)
        .unwrap_or(serde_json::Value::Null);
    Ok((text(0)?, text(1)?, params))
}

/// The script's `Delivery` record (fields in canonical order).
fn delivery_value(delivery: Delivery) -> Value {
    Value::Record(vec![
        ("id".into(), Value::String(delivery.id)),
        (
            "status".into(),
            Value::String(delivery.status.as_str().to_owned()),
        ),
    ])
}

fn host_error(error: ExternalError) -> HostError {
    let host = HostError::new(error.kind.as_str(), error.code.as_str(), error.message);
    match error.status {
        Some(status) => host.with_status(i64::from(status)),
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use scl_compiler::{CallOptions, CompileOptions};
    use serde_json::json;

    use super::*;
    use crate::external::{
        BaseUrl, DryRunOutbox, DryRunTransport, ExternalSystems, HttpVerb, NoEventLog,
        PathTemplate, SystemConfig,
    };

    #[test]
    fn scripts_reach_the_module_and_catch_its_errors() {
        let mut systems = ExternalSystems::default();
        systems.insert(
            SystemConfig::new("MES", BaseUrl::parse("http://peer").unwrap()).with_method(
                "Get",
                HttpVerb::Get,
                PathTemplate::parse("/o/{id}").unwrap(),
            ),
        );
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let module = ExternalSystemModule::new(
            Arc::new(systems),
            Arc::new(DryRunTransport::new(move |request| {
                sink.lock().unwrap().push(request.url)
            })),
            Arc::new(DryRunOutbox::default()),
            Arc::new(NoEventLog),
        );
        let mut engine = Engine::default();
        register_external_system(&mut engine, Arc::new(module)).unwrap();
        let source = r#"
fn main() -> string {
    let r = ExternalSystem.Call("MES", "Get", { id: 4 });
    let d = ExternalSystem.CachedCall("MES", "Get", { id: 5 });
    var code = "";
    try {
        ExternalSystem.Call("MES", "Nope", {});
    } catch e {
        code = e.kind + "/" + e.code;
    }
    return "${d.status} ${code}";
}
"#;
        let script = engine
            .compile(source, &CompileOptions::default())
            .unwrap_or_else(|error| panic!("{error:?}"));
        let outcome = script.call_main_json(&json!({}), &CallOptions::default());
        assert_eq!(
            outcome.result,
            Ok(Value::String("delivered permanent/unknown_method".into()))
        );
        assert_eq!(
            *seen.lock().unwrap(),
            ["http://peer/o/4", "http://peer/o/5"]
        );
    }
}
