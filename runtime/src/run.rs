//! `scl run`: compile a script with the JIT and run its `main` once, offline.
//!
//! `Log`, `Json`, `Time` and `Math` are the real modules. `Attributes` and
//! `Instance` read the values given with `--attr` (or, with `--config` and
//! `--instance`, the instance's initial values); `Attributes.Set` is printed,
//! not persisted.
//!
//! With `--config` (and no `--dry-run`) the modules that reach the world are the
//! real ones, built by [`NodeModules`] as on a site: `ExternalSystem.Call` goes
//! out, `Notify` sends, `Database.Connection` queries, and the cached operations
//! (`CachedCall`, a notification that fails transiently, `CachedWrite`) are
//! buffered into the site's store-and-forward buffer under the deployment's
//! `data_dir` ([`crate::modules::saf_dir`]; the site is the `--instance`'s, or the
//! only one). `scl run` only buffers: it starts no forwarder, so buffered
//! messages wait there until a site node (`scl serve`) forwards them.
//!
//! With `--dry-run` those modules print each call that would be made (module,
//! target, payload) and return an empty result of the declared type; without
//! `--config` or `--dry-run` they are an error of kind `unavailable` naming the
//! flags. `Route`, `Scripts` and `Shared` need a running node and are always
//! `unavailable` under `scl run` (printed, not performed, with `--dry-run`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scl_compiler::{
    CallOptions, CompileError, CompileOptions, Engine, HostContext, HostError, HostObject, Limits,
    Outcome, Status, Value,
};
use scl_lang::ScriptKind;
use scl_lang::modules::HostFnSig;
use scl_lang::types::Type;

use crate::deployment::Deployment;
use crate::modules::{NodeEvents, NodeModules, NodeRole, RunScope};
use crate::saf::{Saf, SafConfig};

#[derive(Debug, Default)]
pub struct RunRequest {
    pub file: PathBuf,
    /// `name=value` pairs for `main`'s parameters.
    pub args: Vec<String>,
    pub args_json: Option<String>,
    pub kind: Option<ScriptKind>,
    pub config: Option<PathBuf>,
    pub dry_run: bool,
    pub timeout_ms: Option<u64>,
    pub instance: Option<String>,
    /// `name=value` attribute values (JSON, or text when not JSON).
    pub attrs: Vec<String>,
}

/// What offline host functions share during one run.
struct OfflineState {
    instance_code: String,
    attributes: Mutex<BTreeMap<String, serde_json::Value>>,
    dry_run: bool,
    /// Printed lines (`Attributes.Set`, dry-run calls), in order.
    printed: Mutex<Vec<String>>,
    next_delivery: Mutex<u64>,
}

/// The real outbound modules of `scl run --config` without `--dry-run`.
struct LiveModules {
    /// The I/O runtime the modules block on (script threads are not its threads).
    runtime: tokio::runtime::Runtime,
    modules: NodeModules,
    saf: Saf,
}

impl LiveModules {
    fn build(
        deployment: &Deployment,
        request: &RunRequest,
        state: &Arc<OfflineState>,
    ) -> Result<LiveModules, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("scl-run-io")
            .enable_all()
            .build()
            .map_err(|e| format!("error: cannot start the I/O runtime: {e}"))?;
        let site = run_site(deployment, request.instance.as_deref());
        let directory = crate::modules::saf_dir(deployment, site.as_deref());
        let saf = Saf::open(SafConfig::new(&directory)).map_err(|e| {
            format!(
                "error: cannot open the store-and-forward buffer in {}: {e}",
                directory.display()
            )
        })?;
        let events: Arc<dyn NodeEvents> = Arc::new(PrintedEvents(Arc::clone(state)));
        let modules = NodeModules::build(
            deployment,
            NodeRole::Site,
            runtime.handle().clone(),
            Some(saf.clone()),
            &crate::external::process_env,
            events,
        )
        .map_err(|e| format!("error: {e}"))?;
        for problem in modules.problems() {
            print(state, format!("note: {problem}")).map_err(|e| e.message)?;
        }
        Ok(LiveModules {
            runtime,
            modules,
            saf,
        })
    }

    /// After the run: say what waits in the buffer, close it and stop the I/O runtime.
    fn finish(self, state: &OfflineState) {
        if let Ok(stats) = self.saf.stats()
            && stats.queued > 0
        {
            let _ = print(
                state,
                format!(
                    "note: {} deliveries wait in the store-and-forward buffer in {}; \
                     `scl run` only buffers, a site node (`scl serve`) forwards them",
                    stats.queued,
                    self.saf.path().display()
                ),
            );
        }
        drop(self.modules);
        if let Err(error) = self.saf.close() {
            let _ = print(
                state,
                format!("note: closing the store-and-forward buffer: {error}"),
            );
        }
        self.runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

/// The site whose buffer `scl run` uses: the `--instance`'s, or the deployment's only site.
fn run_site(deployment: &Deployment, instance: Option<&str>) -> Option<String> {
    let from_instance = instance.and_then(|code| {
        deployment
            .file
            .instance
            .iter()
            .find(|i| i.code.get_ref() == code)
            .map(|i| i.site.get_ref().clone())
    });
    from_instance.or_else(|| match deployment.file.site.as_slice() {
        [only] => Some(only.name.get_ref().clone()),
        _ => None,
    })
}

/// Module events (permanent failures, buffered notifications), printed with the run.
struct PrintedEvents(Arc<OfflineState>);

impl NodeEvents for PrintedEvents {
    fn record(&self, kind: &str, message: &str, delivery_id: Option<&str>) {
        let id = delivery_id
            .map(|id| format!(" (delivery {id})"))
            .unwrap_or_default();
        let _ = print(&self.0, format!("event {kind}: {message}{id}"));
    }
}

/// Runs `scl run`; returns the exit code (0 success, 1 script failure, 2
/// usage or compile error).
pub fn run(request: &RunRequest, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match prepare_and_run(request, err) {
        Ok((outcome, printed)) => report(&outcome, &printed, out, err),
        Err(message) => {
            let _ = writeln!(err, "{message}");
            2
        }
    }
}

fn prepare_and_run(
    request: &RunRequest,
    err: &mut dyn Write,
) -> Result<(Outcome, Vec<String>), String> {
    let source = std::fs::read_to_string(&request.file)
        .map_err(|e| format!("error: cannot read {}: {e}", request.file.display()))?;
    let deployment = match &request.config {
        Some(path) => Some(Deployment::load(path).map_err(|errors| {
            errors
                .iter()
                .map(|e| format!("error: {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        })?),
        None => None,
    };
    let deployed_kind = deployment.as_ref().and_then(|d| {
        d.scripts()
            .into_iter()
            .find(|s| same_file(&s.path, &request.file))
            .map(|s| s.kind)
    });
    let kind = deployed_kind
        .or(request.kind)
        .or_else(|| scl_lang::kind_from_comment(&source));
    let state = Arc::new(OfflineState {
        instance_code: request
            .instance
            .clone()
            .unwrap_or_else(|| "SCL-RUN".to_string()),
        attributes: Mutex::new(initial_attributes(request, deployment.as_ref())?),
        dry_run: request.dry_run,
        printed: Mutex::new(Vec::new()),
        next_delivery: Mutex::new(1),
    });
    let live = match &deployment {
        Some(deployment) if !request.dry_run => {
            Some(LiveModules::build(deployment, request, &state)?)
        }
        _ => None,
    };
    let engine = engine(&state, live.as_ref().map(|l| &l.modules))?;
    let options = CompileOptions {
        kind,
        require_main: true,
    };
    let script = match engine.compile(&source, &options) {
        Ok(script) => script,
        Err(CompileError::Diagnostics(diagnostics)) => {
            let name = request.file.display().to_string();
            let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let _ = write!(
                err,
                "{}",
                scl_lang::diagnostics::render_human(&name, &source, &diagnostics, colour)
            );
            return Err(format!(
                "error: {} does not compile",
                request.file.display()
            ));
        }
        Err(other) => return Err(format!("error: {other}")),
    };
    let params = parameters(request, script.params("main").unwrap_or(&[]))?;
    let limits = Limits {
        timeout: request.timeout_ms.map(Duration::from_millis),
        dry_run: request.dry_run,
        heap_bytes: Some(crate::pool::SCRIPT_HEAP_BYTES),
        ..Limits::default()
    };
    let scope = match &live {
        Some(live) => live.modules.scope(None),
        None => RunScope::empty(),
    };
    let outcome = script.call_main_json(
        &params,
        &CallOptions {
            limits,
            host_data: Some(&scope),
            ..CallOptions::default()
        },
    );
    let ended = scope.end();
    for connection in &ended.rolled_back {
        print(
            &state,
            format!(
                "database: the transaction left open on `{connection}` was rolled back at the end of the run"
            ),
        )
        .map_err(|e| e.message)?;
    }
    for failure in &ended.failures {
        print(
            &state,
            format!("database: rolling back at the end of the run failed: {failure}"),
        )
        .map_err(|e| e.message)?;
    }
    drop(scope);
    if let Some(live) = live {
        live.finish(&state);
    }
    let printed = state.printed.lock().map(|p| p.clone()).unwrap_or_default();
    Ok((outcome, printed))
}

fn report(outcome: &Outcome, printed: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    for line in printed {
        let _ = writeln!(err, "{line}");
    }
    for line in &outcome.stats.logs {
        let _ = writeln!(err, "log {:?}: {}", line.level, line.message);
    }
    let stats = &outcome.stats;
    let status = match stats.status {
        Status::Success => "SUCCESS",
        Status::Failure => "FAILURE",
        Status::Timeout => "TIMEOUT",
        Status::Limit => "LIMIT",
    };
    let _ = writeln!(
        err,
        "status {status}, {:.3} ms, cpu {:.3} ms, fuel {}, heap peak {} bytes{}",
        stats.duration.as_secs_f64() * 1e3,
        stats.cpu_time.as_secs_f64() * 1e3,
        stats.fuel_used,
        stats.heap_peak_bytes,
        stats
            .counters
            .iter()
            .map(|(n, c)| format!(", {n} {c}"))
            .collect::<String>()
    );
    match &outcome.result {
        Ok(value) => {
            let _ = writeln!(out, "{}", value.to_json());
            0
        }
        Err(error) => {
            let at = match (error.line, error.column) {
                (Some(line), Some(column)) => format!(" at {line}:{column}"),
                _ => String::new(),
            };
            let _ = writeln!(
                err,
                "error [{}/{}]{at}: {}",
                error.kind, error.code, error.message
            );
            1
        }
    }
}

/// `main`'s parameters as a JSON object, from `--args-json` and `--arg`.
fn parameters(
    request: &RunRequest,
    params: &[(String, Type)],
) -> Result<serde_json::Value, String> {
    let mut object = match &request.args_json {
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) => return Err("error: --args-json must be a JSON object".to_string()),
            Err(e) => return Err(format!("error: --args-json is not valid JSON: {e}")),
        },
        None => serde_json::Map::new(),
    };
    for pair in &request.args {
        let (name, text) = pair
            .split_once('=')
            .ok_or_else(|| format!("error: --arg `{pair}` must be name=value"))?;
        let Some((_, ty)) = params.iter().find(|(n, _)| n == name) else {
            let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
            return Err(format!(
                "error: `main` has no parameter `{name}` (it has: {})",
                names.join(", ")
            ));
        };
        object.insert(name.to_string(), argument_value(name, text, ty)?);
    }
    Ok(serde_json::Value::Object(object))
}

/// Converts `--arg` text to the parameter's type: strings are taken as
/// written, everything else is read as JSON.
fn argument_value(name: &str, text: &str, ty: &Type) -> Result<serde_json::Value, String> {
    let wants_string = matches!(ty, Type::String)
        || matches!(ty, Type::Optional(inner) if **inner == Type::String);
    if wants_string {
        return Ok(serde_json::Value::String(text.to_string()));
    }
    serde_json::from_str(text)
        .map_err(|e| format!("error: --arg {name}: `{text}` is not a valid {ty} ({e})"))
}

fn initial_attributes(
    request: &RunRequest,
    deployment: Option<&Deployment>,
) -> Result<BTreeMap<String, serde_json::Value>, String> {
    let mut attributes = BTreeMap::new();
    if let (Some(deployment), Some(code)) = (deployment, &request.instance) {
        let instance = deployment
            .file
            .instance
            .iter()
            .find(|i| i.code.get_ref() == code)
            .ok_or_else(|| format!("error: the deployment has no instance `{code}`"))?;
        if let Some(template) = deployment.file.templates.get(instance.template.get_ref()) {
            for (name, attribute) in &template.attributes {
                let value = attribute
                    .default
                    .as_ref()
                    .map(toml_to_json)
                    .unwrap_or(serde_json::Value::Null);
                attributes.insert(name.clone(), value);
            }
        }
        for (name, value) in &instance.attributes {
            attributes.insert(name.clone(), toml_to_json(value));
        }
    }
    for pair in &request.attrs {
        let (name, text) = pair
            .split_once('=')
            .ok_or_else(|| format!("error: --attr `{pair}` must be name=value"))?;
        let value = serde_json::from_str(text)
            .unwrap_or_else(|_| serde_json::Value::String(text.to_string()));
        attributes.insert(name.to_string(), value);
    }
    Ok(attributes)
}

fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// The engine of one run: the core modules, the real outbound modules when `live` is given,
/// and the offline implementations (or `unavailable` errors) of everything else.
fn engine(state: &Arc<OfflineState>, live: Option<&NodeModules>) -> Result<Engine, String> {
    let mut engine = Engine::default();
    scl_stdlib::core_modules::register_core_modules(&mut engine)?;
    if let Some(modules) = live {
        modules
            .register(&mut engine)
            .map_err(|e| format!("error: {e}"))?;
    }
    let registered = engine.module_table();
    let live = live.is_some();
    for signature in scl_stdlib::signatures::module_table().functions {
        if registered
            .lookup(&signature.owner, &signature.name)
            .is_some()
        {
            continue;
        }
        let state = Arc::clone(state);
        let described = signature.clone();
        engine
            .register_raw(signature, move |context, args| {
                offline_call(&state, &described, live, context, args)
            })
            .map_err(|e| format!("error: {e:?}"))?;
    }
    Ok(engine)
}

fn offline_call(
    state: &OfflineState,
    signature: &HostFnSig,
    live: bool,
    _context: &mut HostContext<'_, '_>,
    args: Vec<Value>,
) -> Result<Value, HostError> {
    let qualified = signature.qualified_name();
    match qualified.as_str() {
        "Instance.Code" => return Ok(Value::String(state.instance_code.clone())),
        "Attributes.Get" => {
            let name = args.first().and_then(Value::as_str).unwrap_or_default();
            let attributes = state.attributes.lock().map_err(|_| poisoned())?;
            return match attributes.get(name) {
                Some(value) => Ok(Value::Json(value.clone())),
                None => Err(HostError::new(
                    "not_found",
                    "unknown_attribute",
                    format!("attribute `{name}` has no value (give it with --attr {name}=VALUE)"),
                )),
            };
        }
        "Attributes.Set" => {
            let name = args
                .first()
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let value = args
                .get(1)
                .map(Value::to_json)
                .unwrap_or(serde_json::Value::Null);
            print(
                state,
                format!("Attributes.Set {name} = {value} (not persisted by scl run)"),
            )?;
            state
                .attributes
                .lock()
                .map_err(|_| poisoned())?
                .insert(name, value);
            return Ok(Value::Null);
        }
        _ => {}
    }
    if live {
        return Err(HostError::new(
            "unavailable",
            "needs_node",
            format!(
                "`{qualified}` needs a running site or central (`scl serve`); `scl run` does not provide it (`--dry-run` prints the call instead)"
            ),
        ));
    }
    if !state.dry_run {
        return Err(HostError::new(
            "unavailable",
            "needs_site",
            format!(
                "`{qualified}` reaches the outside world: give `--config deploy.toml` to use the deployment's real systems, use `scl run --dry-run`, or run the script on a site (`scl serve`)"
            ),
        ));
    }
    let rendered: Vec<String> = args.iter().map(describe_argument).collect();
    print(
        state,
        format!("dry-run: {qualified}({})", rendered.join(", ")),
    )?;
    empty_value(state, &signature.ret, &qualified, &args)
}

fn describe_argument(value: &Value) -> String {
    match value {
        Value::Host(object) => match object.downcast_ref::<String>() {
            Some(target) => format!("{}({target:?})", object.type_name()),
            None => object.type_name().to_string(),
        },
        other => other.to_json().to_string(),
    }
}

/// A plausible empty result of type `ty` for a dry run.
fn empty_value(
    state: &OfflineState,
    ty: &Type,
    qualified: &str,
    args: &[Value],
) -> Result<Value, HostError> {
    Ok(match ty {
        Type::Void | Type::Null | Type::Optional(_) | Type::Error => Value::Null,
        Type::Int => Value::Int(0),
        Type::Float => Value::Float(0.0),
        Type::Bool => Value::Bool(false),
        Type::String => Value::String(String::new()),
        Type::Json => Value::Json(serde_json::Value::Null),
        Type::List(_) => Value::List(Vec::new()),
        Type::Map(_) => Value::Map(Vec::new()),
        Type::Host(name) => {
            // Keep the target (list, connection, instance) for the calls made on it.
            let target = args
                .first()
                .and_then(Value::as_str)
                .unwrap_or(qualified)
                .to_string();
            Value::Host(HostObject::new(name, target))
        }
        Type::Record(record) => {
            let mut fields = Vec::with_capacity(record.fields.len());
            for (name, field_type) in &record.fields {
                let value = match name.as_str() {
                    "id" => {
                        let mut next = state.next_delivery.lock().map_err(|_| poisoned())?;
                        let id = format!("dry-run-{}", *next);
                        *next += 1;
                        Value::String(id)
                    }
                    "status" => Value::String("dry-run".to_string()),
                    _ => empty_value(state, field_type, qualified, args)?,
                };
                fields.push((name.as_str().into(), value));
            }
            Value::Record(fields)
        }
    })
}

fn print(state: &OfflineState, line: String) -> Result<(), HostError> {
    state.printed.lock().map_err(|_| poisoned())?.push(line);
    Ok(())
}

fn poisoned() -> HostError {
    HostError::new("script", "internal", "a previous host call panicked")
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
