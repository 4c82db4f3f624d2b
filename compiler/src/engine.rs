//! The embedding API: register host modules and types, compile scripts once,
//! call them many times from many threads.
//!
//! **API boundary.** This is what `stdlib`, `runtime` and third-party hosts
//! use. A host registers functions with a script-side signature
//! ([`HostFnSig`]); the registrations give the checker its [`ModuleTable`]
//! and the engine the implementations, so the two cannot drift apart. Typed
//! registration ([`Engine::register_fn`], [`Engine::bind`]) derives or checks
//! the signature from the Rust closure's parameter types and names the
//! function and parameter on a mismatch.
//!
//! A [`Script`] is immutable once compiled (`Send + Sync`, cheap to clone);
//! every call gets its own execution context, limits and statistics.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::Duration;

use scl_lang::hir;
use scl_lang::modules::{HostFnId, HostFnSig, ModuleTable, Owner};
use scl_lang::types::Type;

use crate::codegen::{NativeCode, Tier};
use crate::exec::{
    Budget, CpuMeter, ExecStats, HostContext, HostError, Limits, Outcome, ScriptError, Status,
    TimedExecution,
};
use crate::ir::{self, FuncIndex};
use crate::runtime::convert::{
    JsonOf, Trail, json_to_val, repr_of, val_to_json, val_to_value, value_to_val,
};
use crate::runtime::{
    CtxInner, ExecCtx, HeapCounters, STATUS_OK, ScriptTables, Val, heap_counters, release,
    set_heap_counters,
};
use crate::value::{HostObject, Value};

/// The Rust side of a host function: gets the arguments converted by the
/// signature, returns the result (or an error the script can catch).
pub type RawHostFn =
    Arc<dyn Fn(&mut HostContext<'_, '_>, Vec<Value>) -> Result<Value, HostError> + Send + Sync>;

/// A registered host function.
#[derive(Clone)]
pub struct HostFunction {
    pub(crate) signature: HostFnSig,
    /// [`argument_types`] of the signature, worked out once: every call
    /// converts its arguments by them.
    pub(crate) argument_types: Vec<Type>,
    /// The counter each call adds one to (`callouts`, `notifications`, ...).
    pub(crate) category: Option<String>,
    pub(crate) implementation: RawHostFn,
}

/// The types of the arguments a host function receives: its parameters,
/// after the receiver for a host-type method (the checker's signatures leave
/// the receiver out; the HIR passes it as the first argument).
pub fn argument_types(signature: &HostFnSig) -> Vec<Type> {
    let mut types = Vec::with_capacity(signature.params.len() + 1);
    if let Owner::HostType(name) = &signature.owner {
        types.push(Type::Host(name.clone()));
    }
    types.extend(signature.params.iter().map(|(_, t)| t.clone()));
    types
}

/// Splits the receiver off a typed closure's parameter types for a host-type
/// method, checking it is the host type.
fn split_receiver(
    owner: &Owner,
    qualified: &str,
    mut types: Vec<Type>,
) -> Result<Vec<Type>, RegistrationError> {
    if let Owner::HostType(name) = owner {
        let receiver = Type::Host(name.clone());
        if types.first() != Some(&receiver) {
            return Err(RegistrationError {
                message: format!(
                    "host method `{qualified}`: the Rust function's first parameter must be the receiver `{name}` (an `Arc<T>` with `T: HostType<NAME = \"{name}\">`)"
                ),
            });
        }
        types.remove(0);
    }
    Ok(types)
}

/// A registration that does not fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrationError {
    pub message: String,
}

impl fmt::Display for RegistrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RegistrationError {}

/// A Rust type that stands for a script type in typed registrations.
pub trait ScriptType: Sized {
    fn script_type() -> Type;
    fn from_value(value: Value) -> Option<Self>;
    fn into_value(self) -> Value;
}

macro_rules! script_type {
    ($t:ty, $script:expr, $variant:ident) => {
        impl ScriptType for $t {
            fn script_type() -> Type {
                $script
            }
            fn from_value(value: Value) -> Option<Self> {
                match value {
                    Value::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn into_value(self) -> Value {
                Value::$variant(self)
            }
        }
    };
}
script_type!(i64, Type::Int, Int);
script_type!(f64, Type::Float, Float);
script_type!(bool, Type::Bool, Bool);
script_type!(String, Type::String, String);
script_type!(serde_json::Value, Type::Json, Json);

impl ScriptType for () {
    fn script_type() -> Type {
        Type::Void
    }
    fn from_value(_: Value) -> Option<Self> {
        Some(())
    }
    fn into_value(self) -> Value {
        Value::Null
    }
}

impl<T: ScriptType> ScriptType for Vec<T> {
    fn script_type() -> Type {
        Type::list(T::script_type())
    }
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::List(items) => items.into_iter().map(T::from_value).collect(),
            _ => None,
        }
    }
    fn into_value(self) -> Value {
        Value::List(self.into_iter().map(T::into_value).collect())
    }
}

impl<T: ScriptType> ScriptType for Option<T> {
    fn script_type() -> Type {
        Type::optional(T::script_type())
    }
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
    fn into_value(self) -> Value {
        self.map_or(Value::Null, T::into_value)
    }
}

/// A Rust type scripts see as the opaque host type [`HostType::NAME`].
pub trait HostType: Any + Send + Sync {
    const NAME: &'static str;
}

impl<T: HostType> ScriptType for Arc<T> {
    fn script_type() -> Type {
        Type::Host(T::NAME.to_string())
    }
    fn from_value(value: Value) -> Option<Self> {
        match value {
            Value::Host(h) => h.downcast_arc::<T>(),
            _ => None,
        }
    }
    fn into_value(self) -> Value {
        Value::Host(HostObject::from_arc(T::NAME, self))
    }
}

/// A Rust closure usable as a host function:
/// `Fn(&mut HostContext, A1, ..., An) -> Result<R, HostError>` with every
/// `Ai` and `R` a [`ScriptType`].
pub trait IntoHostFn<Marker> {
    fn param_types() -> Vec<Type>;
    fn ret_type() -> Type;
    fn into_raw(self, qualified_name: String) -> RawHostFn;
}

macro_rules! into_host_fn {
    ($($arg:ident),*) => {
        impl<F, R, $($arg,)*> IntoHostFn<(R, $($arg,)*)> for F
        where
            F: for<'a, 's> Fn(&mut HostContext<'a, 's>, $($arg),*) -> Result<R, HostError> + Send + Sync + 'static,
            R: ScriptType,
            $($arg: ScriptType,)*
        {
            fn param_types() -> Vec<Type> {
                vec![$($arg::script_type()),*]
            }
            fn ret_type() -> Type {
                R::script_type()
            }
            #[allow(non_snake_case, unused_mut, unused_variables)]
            fn into_raw(self, qualified_name: String) -> RawHostFn {
                Arc::new(move |cx: &mut HostContext<'_, '_>, args: Vec<Value>| {
                    let mut args = args.into_iter();
                    $(
                        let $arg = args.next().and_then($arg::from_value).ok_or_else(|| {
                            HostError::new("type", "host_argument", format!("bad argument for {qualified_name}"))
                        })?;
                    )*
                    self(cx, $($arg),*).map(R::into_value)
                })
            }
        }
    };
}
into_host_fn!();
into_host_fn!(A1);
into_host_fn!(A1, A2);
into_host_fn!(A1, A2, A3);
into_host_fn!(A1, A2, A3, A4);
into_host_fn!(A1, A2, A3, A4, A5);

/// Compiles and runs scripts against a set of host modules.
///
/// ```
/// use scl_compiler::{Engine, HostContext, HostError, Value, CallOptions};
/// use scl_lang::modules::Owner;
///
/// let mut engine = Engine::default();
/// engine
///     .register_fn(Owner::Module("Pump".into()), "Speed", &["code"], |_: &mut HostContext<'_, '_>, code: String| {
///         Ok::<f64, HostError>(if code == "P1" { 1450.0 } else { 0.0 })
///     })
///     .unwrap();
/// assert!(engine.module_table().lookup(&Owner::Module("Pump".into()), "Speed").is_some());
/// ```
#[derive(Clone, Default)]
pub struct Engine {
    functions: Vec<HostFunction>,
    types: Vec<(String, Type)>,
}

impl Engine {
    /// The signatures of everything registered, for the checker.
    pub fn module_table(&self) -> ModuleTable {
        ModuleTable {
            functions: self.functions.iter().map(|f| f.signature.clone()).collect(),
            types: self.types.clone(),
        }
    }

    /// Adds a named type every script sees (such as `Delivery`).
    pub fn register_named_type(&mut self, name: &str, ty: Type) {
        self.types.retain(|(n, _)| n != name);
        self.types.push((name.to_string(), ty));
    }

    fn push(&mut self, function: HostFunction) -> Result<HostFnId, RegistrationError> {
        let sig = &function.signature;
        if self
            .functions
            .iter()
            .any(|f| f.signature.owner == sig.owner && f.signature.name == sig.name)
        {
            return Err(RegistrationError {
                message: format!(
                    "host function `{}` is registered twice",
                    sig.qualified_name()
                ),
            });
        }
        if let Some((name, ty)) = sig.params.iter().find(|(_, t)| *t == Type::Void) {
            return Err(RegistrationError {
                message: format!(
                    "host function `{}`: parameter `{name}` cannot have type `{ty}`",
                    sig.qualified_name()
                ),
            });
        }
        self.functions.push(function);
        Ok(HostFnId(self.functions.len() as u32 - 1))
    }

    /// Registers a host function whose arguments and result are checked
    /// against `signature` at every call, but not against Rust types.
    pub fn register_raw(
        &mut self,
        signature: HostFnSig,
        implementation: impl Fn(&mut HostContext<'_, '_>, Vec<Value>) -> Result<Value, HostError>
        + Send
        + Sync
        + 'static,
    ) -> Result<HostFnId, RegistrationError> {
        self.push(HostFunction {
            argument_types: argument_types(&signature),
            signature,
            category: None,
            implementation: Arc::new(implementation),
        })
    }

    /// Registers a typed Rust closure; the script-side signature is derived
    /// from its parameter types (`i64` is `int`, `Vec<T>` is `list<T>`, ...).
    /// For a method of a host type (`Owner::HostType`), the closure's first
    /// parameter is the receiver and `param_names` name the others.
    pub fn register_fn<M, F: IntoHostFn<M>>(
        &mut self,
        owner: Owner,
        name: &str,
        param_names: &[&str],
        function: F,
    ) -> Result<HostFnId, RegistrationError> {
        let qualified = match &owner {
            Owner::Module(m) | Owner::HostType(m) => format!("{m}.{name}"),
        };
        let types = split_receiver(&owner, &qualified, F::param_types())?;
        if types.len() != param_names.len() {
            return Err(RegistrationError {
                message: format!(
                    "host function `{qualified}`: {} parameter names given for a Rust function of {} parameters",
                    param_names.len(),
                    types.len()
                ),
            });
        }
        let signature = HostFnSig {
            owner,
            name: name.to_string(),
            params: param_names
                .iter()
                .map(|n| n.to_string())
                .zip(types)
                .collect(),
            ret: F::ret_type(),
            kinds: Vec::new(),
            name_args: Vec::new(),
            doc: String::new(),
        };
        self.push(HostFunction {
            argument_types: argument_types(&signature),
            signature,
            category: None,
            implementation: function.into_raw(qualified),
        })
    }

    /// Binds a typed Rust closure to a declared script-side signature,
    /// checking that every parameter type and the result type agree.
    pub fn bind<M, F: IntoHostFn<M>>(
        &mut self,
        signature: HostFnSig,
        function: F,
    ) -> Result<HostFnId, RegistrationError> {
        let qualified = signature.qualified_name();
        let rust_params = split_receiver(&signature.owner, &qualified, F::param_types())?;
        if rust_params.len() != signature.params.len() {
            return Err(RegistrationError {
                message: format!(
                    "host function `{qualified}` takes {} parameters in the script signature, but the Rust function takes {}",
                    signature.params.len(),
                    rust_params.len()
                ),
            });
        }
        for (i, ((name, script_ty), rust_ty)) in
            signature.params.iter().zip(&rust_params).enumerate()
        {
            if script_ty != rust_ty {
                return Err(RegistrationError {
                    message: format!(
                        "host function `{qualified}`: parameter {} `{name}` is `{script_ty}` in the script signature, but the Rust function takes `{rust_ty}`",
                        i + 1
                    ),
                });
            }
        }
        let rust_ret = F::ret_type();
        if rust_ret != signature.ret {
            return Err(RegistrationError {
                message: format!(
                    "host function `{qualified}` returns `{}` in the script signature, but the Rust function returns `{rust_ret}`",
                    signature.ret
                ),
            });
        }
        self.push(HostFunction {
            argument_types: argument_types(&signature),
            signature,
            category: None,
            implementation: function.into_raw(qualified),
        })
    }

    /// Makes every call of a host function add one to a counter (which a
    /// [`Limits::caps`] entry can cap).
    pub fn set_category(&mut self, id: HostFnId, category: &str) {
        if let Some(f) = self.functions.get_mut(id.0 as usize) {
            f.category = Some(category.to_string());
        }
    }

    /// Parses, checks and compiles a script against this engine's modules.
    pub fn compile(&self, source: &str, options: &CompileOptions) -> Result<Script, CompileError> {
        let parsed = scl_lang::parse(source);
        let table = self.module_table();
        let mut check_options = scl_lang::CheckOptions::new(&table);
        check_options.kind = options.kind;
        check_options.require_main = options.require_main;
        let checked = scl_lang::checker::check(&parsed, &check_options);
        let program = checked.into_program().map_err(CompileError::Diagnostics)?;
        self.compile_program(&program, source)
    }

    /// Compiles a checked program. `source` is the text it was checked
    /// from (for error locations); the program must have been checked
    /// against this engine's [`module_table`](Engine::module_table).
    pub fn compile_program(
        &self,
        program: &hir::Program,
        source: &str,
    ) -> Result<Script, CompileError> {
        let lowered = crate::lower(program, source);
        let compiled = lowered.compile().map_err(CompileError::Internal)?;
        Ok(self.script(compiled))
    }

    fn script(&self, compiled: crate::Compiled) -> Script {
        let crate::Compiled { lowered, native } = compiled;
        let tables = ScriptTables {
            strings: lowered.module.strings.clone(),
            types: lowered.module.types.clone(),
            host_functions: self.functions.clone().into(),
            source: lowered.source.clone(),
        };
        Script {
            inner: Arc::new(ScriptInner {
                lowered,
                quick: native,
                optimized: OnceLock::new(),
                quick_nanos: AtomicU64::new(0),
                tier_up_queued: AtomicBool::new(false),
                tables,
            }),
        }
    }
}

/// How to compile a script.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    /// The script's kind, which decides the modules it may use; `None`
    /// allows every module.
    pub kind: Option<scl_lang::ScriptKind>,
    /// Report a file without `fn main`.
    pub require_main: bool,
}

impl Default for CompileOptions {
    fn default() -> CompileOptions {
        CompileOptions {
            kind: None,
            require_main: true,
        }
    }
}

/// Why a script did not compile.
#[derive(Clone, Debug)]
pub enum CompileError {
    /// Errors in the script (from the parser and checker).
    Diagnostics(Vec<scl_lang::Diagnostic>),
    /// The code generator failed: a bug in the engine, not in the script.
    Internal(String),
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompileError::Diagnostics(d) => {
                for diagnostic in d {
                    writeln!(f, "{}: {}", diagnostic.code.id, diagnostic.message)?;
                }
                Ok(())
            }
            CompileError::Internal(message) => write!(f, "internal compiler error: {message}"),
        }
    }
}

impl std::error::Error for CompileError {}

/// Which code runs a call: the JIT's, or the reference evaluator (tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// Native code of the script's current tier (see [`Script::tier`]).
    #[default]
    Jit,
    /// Native code of the optimized tier, compiled now if it is not yet
    /// (tests use it to check both tiers against the evaluator).
    JitOptimized,
    Eval,
}

/// Per-call settings.
#[derive(Clone, Default)]
pub struct CallOptions<'h> {
    pub limits: Limits,
    /// What host functions get from [`HostContext::host_data`].
    pub host_data: Option<&'h (dyn Any + Sync)>,
    pub backend: Backend,
}

/// A compiled script: immutable, shareable between threads.
#[derive(Clone)]
pub struct Script {
    inner: Arc<ScriptInner>,
}

/// Tiered compilation. A script is compiled to quick code (cranelift with
/// no optimisation and the single-pass register allocator), so it can run
/// after about a third of the optimized compile time. Once it has spent
/// [`TIER_UP_AFTER`] running in quick code, one background thread compiles
/// the optimized tier; calls that start after it is ready run it. Both
/// tiers come from the same IR, so they agree (the tests check both against
/// the reference evaluator).
struct ScriptInner {
    lowered: crate::Lowered,
    quick: NativeCode,
    optimized: OnceLock<NativeCode>,
    /// Wall time spent in quick code so far.
    quick_nanos: AtomicU64,
    tier_up_queued: AtomicBool,
    tables: ScriptTables,
}

/// Run time in quick code after which a script is compiled optimized.
pub const TIER_UP_AFTER: Duration = Duration::from_millis(10);

impl ScriptInner {
    /// The optimized code, compiling it on this thread if it is not there.
    fn optimized_now(&self) -> Result<&NativeCode, String> {
        if let Some(code) = self.optimized.get() {
            return Ok(code);
        }
        let code = crate::codegen::compile(&self.lowered.module, Tier::Optimized)?;
        Ok(self.optimized.get_or_init(|| code))
    }

    /// Counts a run of quick code and queues the optimized compile once
    /// the script has run long enough.
    fn ran_quick(self: &Arc<Self>, wall: Duration) {
        let total = self
            .quick_nanos
            .fetch_add(wall.as_nanos() as u64, Ordering::Relaxed)
            + wall.as_nanos() as u64;
        if total >= TIER_UP_AFTER.as_nanos() as u64
            && !self.tier_up_queued.swap(true, Ordering::Relaxed)
        {
            tier_up_queue().send(Arc::clone(self)).ok();
        }
    }
}

/// The one background thread that compiles optimized tiers, in order.
fn tier_up_queue() -> &'static mpsc::Sender<Arc<ScriptInner>> {
    static QUEUE: OnceLock<mpsc::Sender<Arc<ScriptInner>>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Arc<ScriptInner>>();
        let spawned = std::thread::Builder::new()
            .name("scl-tier-up".into())
            .spawn(move || {
                for script in receiver {
                    // A failure leaves the script on its quick code, which
                    // is complete and correct.
                    let _ = script.optimized_now();
                }
            });
        // Without the thread every script stays on quick code; the
        // receiver is dropped and `send` fails quietly.
        drop(spawned);
        sender
    })
}

impl Script {
    /// The lowered IR (printable).
    pub fn lowered(&self) -> &crate::Lowered {
        &self.inner.lowered
    }

    /// Whether the script calls any host function (see
    /// [`ir::Module::calls_host`](crate::ir::Module::calls_host)).
    pub fn calls_host(&self) -> bool {
        self.inner.lowered.module.calls_host()
    }

    /// Which native code new calls run: [`Tier::Quick`] until the
    /// optimized tier has been compiled.
    pub fn tier(&self) -> Tier {
        if self.inner.optimized.get().is_some() {
            Tier::Optimized
        } else {
            Tier::Quick
        }
    }

    /// Compiles the optimized tier now, on this thread, if it is not there
    /// (for hosts that would rather pay the compile time up front).
    pub fn optimize(&self) -> Result<(), CompileError> {
        self.inner
            .optimized_now()
            .map(drop)
            .map_err(CompileError::Internal)
    }

    /// The parameters of a function, by name and type.
    pub fn params(&self, function: &str) -> Option<&[(String, Type)]> {
        let index = self.function_index(function)?;
        Some(&self.inner.lowered.signatures[index.0 as usize].params)
    }

    fn function_index(&self, name: &str) -> Option<FuncIndex> {
        self.inner
            .lowered
            .signatures
            .iter()
            .position(|s| s.name == name)
            .map(|i| FuncIndex(i as u32))
    }

    /// Calls `main` with positional arguments.
    pub fn call_main(&self, args: Vec<Value>, options: &CallOptions<'_>) -> Outcome {
        self.call("main", args, options)
    }

    /// Calls `main` with a JSON object of named parameters; a missing, extra
    /// or mistyped field is an error of kind `type` naming it.
    pub fn call_main_json(&self, params: &serde_json::Value, options: &CallOptions<'_>) -> Outcome {
        self.call_main_json_as(params, options, ResultForm::Value)
    }

    /// [`call_main_json`](Self::call_main_json) for hosts that answer in JSON
    /// (central's API): the result comes back as [`Value::Json`], converted
    /// straight from the script's value without building a [`Value`] first.
    pub fn call_main_json_to_json(
        &self,
        params: &serde_json::Value,
        options: &CallOptions<'_>,
    ) -> Outcome {
        self.call_main_json_as(params, options, ResultForm::Json)
    }

    /// [`call_main_json`](Self::call_main_json) for hosts that answer with JSON
    /// text (central's HTTP API): on success the result is written to `out` as
    /// JSON text, straight from the script's value (the same text as
    /// serializing [`call_main_json_to_json`](Self::call_main_json_to_json)'s
    /// result), and the outcome's value is [`Value::Null`]. `out` is left as it
    /// was when the call fails.
    pub fn call_main_json_into(
        &self,
        params: &serde_json::Value,
        options: &CallOptions<'_>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        self.call_main_json_as(params, options, ResultForm::Text(out))
    }

    fn call_main_json_as(
        &self,
        params: &serde_json::Value,
        options: &CallOptions<'_>,
        form: ResultForm<'_>,
    ) -> Outcome {
        let Some(index) = self.function_index("main") else {
            return failed(ScriptError::new(
                "type",
                "no_main",
                "the script has no `main`",
            ));
        };
        let signature = &self.inner.lowered.signatures[index.0 as usize];
        let Some(object) = params.as_object() else {
            return failed(ScriptError::new(
                "type",
                "invalid_params",
                "the parameters must be a JSON object",
            ));
        };
        if let Some(extra) = object
            .keys()
            .find(|k| !signature.params.iter().any(|(n, _)| n == *k))
        {
            return failed(ScriptError::new(
                "type",
                "unknown_parameter",
                format!("`main` has no parameter `{extra}`"),
            ));
        }
        let mut args = Vec::with_capacity(signature.params.len());
        for (name, ty) in &signature.params {
            match object.get(name) {
                // An optional parameter given as `null` is the same as one left out.
                Some(serde_json::Value::Null) | None if matches!(ty, Type::Optional(_)) => {
                    args.push(None);
                }
                Some(value) => args.push(Some(value)),
                None => {
                    return failed(ScriptError::new(
                        "type",
                        "missing_parameter",
                        format!("missing parameter `{name}` of type {ty}"),
                    ));
                }
            }
        }
        self.call_index(index, Args::Json(&args), options, form)
    }

    /// Calls any function of the script by name.
    pub fn call(&self, function: &str, args: Vec<Value>, options: &CallOptions<'_>) -> Outcome {
        match self.function_index(function) {
            Some(index) => self.call_index(index, Args::Values(&args), options, ResultForm::Value),
            None => failed(ScriptError::new(
                "type",
                "unknown_function",
                format!("the script has no function `{function}`"),
            )),
        }
    }

    fn call_index(
        &self,
        index: FuncIndex,
        args: Args<'_>,
        options: &CallOptions<'_>,
        form: ResultForm<'_>,
    ) -> Outcome {
        let inner = &*self.inner;
        let signature = &inner.lowered.signatures[index.0 as usize];
        if args.len() != signature.params.len() {
            return failed(ScriptError::new(
                "type",
                "argument_count",
                format!(
                    "`{}` takes {} arguments, {} given",
                    signature.name,
                    signature.params.len(),
                    args.len()
                ),
            ));
        }
        // The code to run, chosen (and for `JitOptimized` compiled) before
        // the clock starts: compiling is not the script's time.
        let mut quick = false;
        let code = match options.backend {
            Backend::Jit => Some(match inner.optimized.get() {
                Some(code) => code,
                None => {
                    quick = true;
                    &inner.quick
                }
            }),
            Backend::JitOptimized => match inner.optimized_now() {
                Ok(code) => Some(code),
                Err(message) => return failed(ScriptError::new("script", "internal", message)),
            },
            Backend::Eval => None,
        };
        let meter = CpuMeter::start();
        let start = meter.wall_start();
        let outer_heap = heap_counters();
        set_heap_counters(HeapCounters {
            live_objects: outer_heap.live_objects,
            live_bytes: 0,
            peak_bytes: 0,
        });

        let mut arg_vals = Vec::with_capacity(args.len());
        for (at, (name, ty)) in signature.params.iter().enumerate() {
            // The path names where a conversion failed; it is only built
            // (by converting again) when one does, to keep calls cheap.
            match args.convert(at, ty, &mut Trail::off()) {
                Ok(val) => arg_vals.push(val),
                Err(_) => {
                    let mut path = Trail::at(format!("parameter `{name}`"));
                    let message = args
                        .convert(at, ty, &mut path)
                        .err()
                        .unwrap_or_else(|| format!("{path}: cannot be converted"));
                    drop(arg_vals);
                    restore_heap(outer_heap);
                    return failed(ScriptError::new("type", "invalid_argument", message));
                }
            }
        }
        let arg_bits: Vec<i64> = arg_vals.iter().map(borrowed_bits).collect();

        let limits = &options.limits;
        let fuel = limits
            .fuel
            .map_or(i64::MAX, |f| f.min(i64::MAX as u64) as i64);
        // A timed run shares its budget with the deadline ticker; others
        // keep it on the stack.
        let local_budget = Budget::new(fuel);
        let shared_budget = limits.timeout.map(|_| Arc::new(Budget::new(fuel)));
        let budget: &Budget = shared_budget.as_deref().unwrap_or(&local_budget);
        let timed = limits
            .timeout
            .zip(shared_budget.clone())
            .map(|(t, shared)| TimedExecution::start(start + t, shared));
        let mut ctx = ExecCtx {
            status: STATUS_OK,
            budget,
            stack_limit: crate::runtime::stack_address().saturating_sub(limits.stack_bytes as u64),
            max_depth: limits.max_call_depth as u64,
            depth: 0,
            inner: CtxInner {
                tables: &inner.tables,
                host_data: options.host_data,
                error: None,
                deadline: limits.timeout.map(|t| start + t),
                timeout_ms: limits.timeout.map_or(0, |t| t.as_millis() as u64),
                fuel_limit: limits.fuel,
                heap_limit: limits.heap_bytes.map(|b| b.min(i64::MAX as usize) as i64),
                counters: Vec::new(),
                caps: limits.caps.clone(),
                logs: Vec::new(),
                log_bytes: 0,
                logs_dropped: 0,
                dry_run: limits.dry_run,
            },
        };
        let ret_bits = match code {
            Some(code) => call_entry(code.entries[index.0 as usize], &mut ctx, &arg_bits),
            None => crate::eval::eval_function(&inner.lowered.module, index, &mut ctx, &arg_bits),
        };
        drop(timed);
        let result = if ctx.status != STATUS_OK {
            Err(ctx
                .inner
                .error
                .take()
                .unwrap_or_else(|| ScriptError::new("script", "internal", "unknown error")))
        } else if signature.ret == Type::Void {
            if let ResultForm::Text(out) = form {
                out.extend_from_slice(b"null");
            }
            Ok(Value::Null)
        } else {
            let val = Val::from_bits(ret_bits, repr_of(&signature.ret));
            release_result(ret_bits, &signature.ret);
            match form {
                ResultForm::Value => Ok(val_to_value(&val, &signature.ret)),
                ResultForm::Json => Ok(Value::Json(val_to_json(&val, &signature.ret))),
                ResultForm::Text(out) => {
                    let json = JsonOf {
                        val: &val,
                        ty: &signature.ret,
                    };
                    let start = out.len();
                    serde_json::to_writer(&mut *out, &json)
                        .map(|()| Value::Null)
                        .map_err(|error| {
                            out.truncate(start);
                            ScriptError::new(
                                "script",
                                "internal",
                                format!("the result cannot be written as JSON: {error}"),
                            )
                        })
                }
            }
        };
        drop(arg_vals);
        let heap = heap_counters();
        restore_heap(outer_heap);
        let status = match &result {
            Ok(_) => Status::Success,
            Err(error) => error.exec_status(),
        };
        let fuel_used = (fuel - budget.remaining()).max(0) as u64;
        if ctx.inner.logs_dropped > 0 {
            ctx.inner
                .logs
                .push(crate::exec::dropped_logs_line(ctx.inner.logs_dropped));
        }
        let (duration, cpu_time) = meter.finish();
        if quick {
            self.inner.ran_quick(duration);
        }
        Outcome {
            result,
            stats: ExecStats {
                status,
                duration,
                cpu_time,
                fuel_used,
                heap_peak_bytes: heap.peak_bytes.max(0) as u64,
                counters: std::mem::take(&mut ctx.inner.counters),
                logs: std::mem::take(&mut ctx.inner.logs),
            },
        }
    }
}

/// Where the arguments of a call come from.
enum Args<'a> {
    /// Host values, in parameter order.
    Values(&'a [Value]),
    /// Fields of a JSON object, in parameter order; `None` for an optional
    /// parameter left out or given as `null`.
    Json(&'a [Option<&'a serde_json::Value>]),
}

impl Args<'_> {
    fn len(&self) -> usize {
        match self {
            Args::Values(values) => values.len(),
            Args::Json(fields) => fields.len(),
        }
    }

    /// Argument `at` as a run-time value of type `ty`.
    fn convert(&self, at: usize, ty: &Type, path: &mut Trail) -> Result<Val, String> {
        match self {
            Args::Values(values) => match values.get(at) {
                Some(value) => value_to_val(value, ty, path),
                None => Err(format!("{path}: no argument")),
            },
            Args::Json(fields) => match fields.get(at) {
                Some(Some(json)) => json_to_val(json, ty, path),
                Some(None) => Ok(Val::Null),
                None => Err(format!("{path}: no argument")),
            },
        }
    }
}

/// What a call's result is handed back as.
#[derive(Debug)]
enum ResultForm<'o> {
    /// A [`Value`] of the function's return type.
    Value,
    /// [`Value::Json`].
    Json,
    /// JSON text appended to the buffer; the outcome's value is [`Value::Null`].
    Text(&'o mut Vec<u8>),
}

fn release_result(bits: i64, ty: &Type) {
    if repr_of(ty) == ir::Repr::Ptr {
        release(bits);
    }
}

fn restore_heap(outer: HeapCounters) {
    let inner = heap_counters();
    set_heap_counters(HeapCounters {
        live_objects: inner.live_objects,
        live_bytes: outer.live_bytes + inner.live_bytes,
        peak_bytes: outer.peak_bytes.max(outer.live_bytes + inner.peak_bytes),
    });
}

fn borrowed_bits(val: &Val) -> i64 {
    match val {
        Val::Int(i) => *i,
        Val::Float(x) => x.to_bits() as i64,
        Val::Bool(b) => *b as i64,
        Val::Null => 0,
        Val::Obj(obj) => std::rc::Rc::as_ptr(obj) as i64,
    }
}

fn failed(error: ScriptError) -> Outcome {
    let status = error.exec_status();
    Outcome {
        result: Err(error),
        stats: ExecStats {
            status,
            duration: Default::default(),
            cpu_time: Default::default(),
            fuel_used: 0,
            heap_peak_bytes: 0,
            counters: Vec::new(),
            logs: Vec::new(),
        },
    }
}

/// The one call into generated code.
fn call_entry(
    (entry, function): (*const u8, *const u8),
    ctx: &mut ExecCtx<'_>,
    args: &[i64],
) -> i64 {
    type Entry = for<'a> unsafe extern "C" fn(*mut ExecCtx<'a>, *const i64, *mut i64, *const u8);
    let mut result = 0i64;
    // SAFETY: `entry` is the entry trampoline `codegen::build_entry` made for
    // the signature of `function` (both from the same `NativeCode` entry),
    // with exactly the `Entry` signature; it calls `function` with the
    // arguments it unpacks by that signature. The code both point into lives
    // as long as the `Script` the caller borrows; `args` holds one `i64` per
    // parameter (checked by the caller), borrowed values kept alive by
    // `arg_vals`; `ctx` is exclusively ours for the duration of the call.
    unsafe {
        let entry: Entry = std::mem::transmute::<*const u8, Entry>(entry);
        entry(ctx, args.as_ptr(), &mut result, function);
    }
    result
}
