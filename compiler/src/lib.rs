//! # scl-compiler — the SCL engine
//!
//! `hir::Program → ir::Module → cranelift → native code`, the value model and
//! the host-call ABI. **Architecture invariant:** no tokio, no network, no
//! knowledge of sites or deployments; host functions arrive through the
//! embedding API ([`Engine`]).
//!
//! ```text
//!   scl_lang::Checked ──lower──▶ Lowered (ir::Module, printable)
//!                                   │ compile (cranelift-jit)
//!                                   ▼
//!                               Compiled ──▶ Script ──call──▶ Outcome { result, stats }
//!                                                 │    ▲
//!                         generated code ──rt_*──▶ runtime (objects, strings, json, host door)
//! ```
//!
//! The stages are types: [`lower`] gives a [`Lowered`] program, and only a
//! `Lowered` program can be compiled into a [`Compiled`] one; the reference
//! evaluator ([`eval`]) runs the same `Lowered` IR.

pub mod codegen;
pub mod engine;
pub mod eval;
pub mod exec;
pub mod ir;
pub mod lower;
pub mod runtime;
pub mod value;

use std::fmt;
use std::sync::Arc;

use scl_lang::hir;
use scl_lang::types::Type;

pub use codegen::Tier;
pub use engine::{
    Backend, CallOptions, CompileError, CompileOptions, Engine, HostFunction, HostType, IntoHostFn,
    RawHostFn, RegistrationError, Script, ScriptType, TIER_UP_AFTER,
};
pub use exec::{
    ExecStats, HostContext, HostError, Limits, LogLevel, LogLine, MAX_LOG_BYTES, MAX_LOG_LINES,
    Outcome, ScriptError, Status,
};
pub use runtime::live_objects;
pub use value::{HostObject, Value};

/// The script-side signature of a lowered function.
#[derive(Clone, Debug)]
pub struct FnSignature {
    pub name: String,
    pub params: Vec<(String, Type)>,
    pub ret: Type,
}

/// Stage 3: the program in our IR.
#[derive(Clone, Debug)]
pub struct Lowered {
    pub module: ir::Module,
    pub signatures: Vec<FnSignature>,
    pub source: Arc<str>,
}

/// Lowers a checked program; `source` is its text (for error locations).
pub fn lower(program: &hir::Program, source: &str) -> Lowered {
    let module = lower::lower_program(program);
    let signatures = program
        .functions
        .iter()
        .map(|f| FnSignature {
            name: f.name.clone(),
            params: f
                .params
                .iter()
                .map(|&p| (f.local(p).name.clone(), f.local(p).ty.clone()))
                .collect(),
            ret: f.ret.clone(),
        })
        .collect();
    Lowered {
        module,
        signatures,
        source: source.into(),
    }
}

impl Lowered {
    /// Stage 4: native code for every function, quick tier (the engine
    /// compiles the optimized tier later, see [`Script::tier`]).
    pub fn compile(self) -> Result<Compiled, String> {
        let native = codegen::compile(&self.module, codegen::Tier::Quick)?;
        Ok(Compiled {
            lowered: self,
            native,
        })
    }
}

impl fmt::Display for Lowered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.module.fmt(f)
    }
}

/// Stage 4: the JIT module and the entry points of every function.
pub struct Compiled {
    pub(crate) lowered: Lowered,
    pub(crate) native: codegen::NativeCode,
}
