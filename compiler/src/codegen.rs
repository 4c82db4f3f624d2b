//! IR → native code with cranelift: the [`Compiled`](crate::Compiled) stage.
//!
//! A straight translation of [`ir`](crate::ir): IR registers become
//! cranelift variables (or, for the temporaries of one block, just the
//! value last defined), the slot frame one explicit stack slot, and runtime
//! functions are called at their addresses (all `(ctx, i64...) -> i64`).
//! Per fallible instruction the code loads the context's status and
//! branches to a cold block that records the source location and jumps to
//! the error edge, so the fast path pays one load and one predictable
//! branch. In the quick tier every site with the same handler shares one
//! such block (the site's span travels as a block argument), and a run of
//! calls that only allocate shares one status check (see
//! [`Translator::in_run`]), as do the checks of consecutive arithmetic (see
//! [`Translator::flush_checks`]), which keeps the function small to compile:
//! cranelift's cost grows with CLIF blocks far more than with instructions
//! (about 22,000 host instructions per block at `opt_level=none`).
//!
//! Script functions take two hidden arguments, the context and
//! `depth_left` (the call depth still allowed). Each distinct signature gets
//! an entry trampoline `extern "C" fn(ctx, argv: *const i64, ret: *mut i64,
//! function)` that unpacks the arguments, calls `function` and stores its
//! result as bits. That uniform signature is what lets [`exec`](crate::exec)
//! call any function through one `unsafe` door, whatever its parameter types.
//! Trampolines are compiled once per process and signature (see
//! [`shared_entry`]).
//!
//! **Compile pipeline.** The functions of a module are declared in one
//! `JITModule`; then each function (and any trampoline not in the shared
//! cache) is translated and
//! compiled by cranelift independently, on two threads when the module is
//! big enough to pay for the second one; the finished machine code is placed
//! in the module serially and finalized. The optimized tier first translates
//! every function, so that direct calls of small functions can be inlined
//! (one level) before cranelift optimizes.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::inline::{Inline, InlineCommand};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    AbiParam, Block, BlockArg, ExtFuncData, ExternalName, FuncRef, Function, InstBuilder,
    MemFlagsData, SigRef, Signature, StackSlotData, StackSlotKind, UserExternalName, UserFuncName,
    Value, types,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{Context, isa};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module as _, ModuleReloc, default_libcall_names};

use crate::exec::{BUDGET_FLOOR, BUDGET_FUEL};
use crate::ir::{
    self, BlockId, CmpOp, Const, FloatOp, InstKind, IntOp, Operand, Repr, Site, Terminator,
};
use crate::runtime::{CTX_OFFSETS, RtFn, STATUS_ERROR};

/// Native code for every function of a lowered module.
pub(crate) struct NativeCode {
    /// Owns the executable memory; freed when the code is dropped.
    module: Option<JITModule>,
    /// Per function, by `FuncIndex`: the entry trampoline of its signature
    /// and the function's own address, which the trampoline calls.
    pub(crate) entries: Vec<(*const u8, *const u8)>,
}

// SAFETY: the JIT memory is immutable once finalised, the entry pointers are
// plain addresses into it, and `JITModule` itself is `Send`; nothing in
// `NativeCode` is mutated after `compile` returns (except by `Drop`, which
// needs `&mut`). Shared use from several threads only reads.
unsafe impl Sync for NativeCode {}
// SAFETY: as above; the raw pointers are addresses into memory `module` owns.
unsafe impl Send for NativeCode {}

impl Drop for NativeCode {
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: `NativeCode` is only dropped when the last `Script`
            // holding it goes, and every execution borrows the `Script`, so
            // no generated code is running or will run again.
            unsafe { module.free_memory() };
        }
    }
}

fn pointer_type() -> types::Type {
    types::I64
}

fn cl_type(repr: Repr) -> types::Type {
    match repr {
        Repr::Int | Repr::Ptr => types::I64,
        Repr::Float => types::F64,
        Repr::Bool => types::I8,
    }
}

fn flags() -> MemFlagsData {
    MemFlagsData::trusted()
}

/// How much work cranelift puts into the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Compiled when the script is: no e-graph optimisation, the single-pass
    /// register allocator, shared error edges. Under half the optimized
    /// compile time; the code runs up to about 2.5x slower.
    Quick,
    /// `opt_level=speed`, the backtracking register allocator and one level
    /// of inlining of small functions; compiled in the background once a
    /// script has run long enough in quick code.
    Optimized,
}

/// Compiles a lowered module to native code.
/// The target of one tier: the host's CPU features and the tier's settings,
/// found once per process instead of at every compile.
fn target(tier: Tier) -> Result<isa::OwnedTargetIsa, String> {
    static QUICK: OnceLock<Result<isa::OwnedTargetIsa, String>> = OnceLock::new();
    static OPTIMIZED: OnceLock<Result<isa::OwnedTargetIsa, String>> = OnceLock::new();
    let cell = match tier {
        Tier::Quick => &QUICK,
        Tier::Optimized => &OPTIMIZED,
    };
    cell.get_or_init(|| make_target(tier)).clone()
}

fn make_target(tier: Tier) -> Result<isa::OwnedTargetIsa, String> {
    let (opt_level, regalloc) = match tier {
        Tier::Quick => ("none", "single_pass"),
        Tier::Optimized => ("speed", "backtracking"),
    };
    let mut flag_builder = settings::builder();
    flag_builder
        .set("opt_level", opt_level)
        .map_err(|e| e.to_string())?;
    flag_builder
        .set("regalloc_algorithm", regalloc)
        .map_err(|e| e.to_string())?;
    // Cranelift's IR verifier is about 30% of compile time. Debug builds
    // (every test) keep it on, so each program the suite compiles is
    // verified; release builds trust the translation it has checked.
    flag_builder
        .set(
            "enable_verifier",
            if cfg!(debug_assertions) {
                "true"
            } else {
                "false"
            },
        )
        .map_err(|e| e.to_string())?;
    // Optimized code keeps the run's fuel in the pinned register (r15 on
    // x86-64, x21 on AArch64): see `limit_check`. Cranelift has a pinned
    // register on these two hosts only, which are the ones the engine runs
    // on. Quick code keeps the register for allocation.
    flag_builder
        .set(
            "enable_pinned_reg",
            if fuel_in_register(tier) {
                "true"
            } else {
                "false"
            },
        )
        .map_err(|e| e.to_string())?;
    flag_builder
        .set("use_colocated_libcalls", "false")
        .map_err(|e| e.to_string())?;
    flag_builder
        .set("is_pic", "false")
        .map_err(|e| e.to_string())?;
    let isa_builder = cranelift_native::builder().map_err(|e| format!("unsupported host: {e}"))?;
    isa_builder
        .finish(settings::Flags::new(flag_builder))
        .map_err(|e| e.to_string())
}

/// Whether a tier's code keeps the run's fuel in the pinned register (the
/// optimized tier) or decrements it in the budget (the quick tier, whose
/// single-pass register allocator pays for every register taken away with
/// spills: quick fib ran about 4% slower with the register pinned, and
/// compiles took 1.2% more instructions). A run executes wholly in one tier,
/// so each run keeps to one of the two.
fn fuel_in_register(tier: Tier) -> bool {
    tier == Tier::Optimized
}

pub(crate) fn compile(module: &ir::Module, tier: Tier) -> Result<NativeCode, String> {
    let isa = target(tier)?;
    // Runtime functions are called at their address (a constant in the
    // code), so the module declares, links and relocates only the script's
    // own functions.
    let builder = JITBuilder::with_isa(isa.clone(), default_libcall_names());
    let mut jit = JITModule::new(builder);
    let call_conv = isa.default_call_conv();

    let runtime_sigs = std::array::from_fn(|arity| {
        let mut sig = Signature::new(call_conv);
        sig.params.push(AbiParam::new(pointer_type()));
        for _ in 0..arity {
            sig.params.push(AbiParam::new(types::I64));
        }
        sig.returns.push(AbiParam::new(types::I64));
        sig
    });
    let mut functions = Vec::with_capacity(module.functions.len());
    for (index, function) in module.functions.iter().enumerate() {
        let sig = function_signature(call_conv, &param_reprs(function), function.ret);
        let id = jit
            .declare_function(
                &format!("scl_{index}_{}", function.name),
                Linkage::Local,
                &sig,
            )
            .map_err(|e| e.to_string())?;
        functions.push((id, sig));
    }
    // One entry trampoline per distinct signature (a script's functions
    // mostly share a few), which calls the function whose address it gets.
    let mut shapes: Vec<Shape> = Vec::new();
    let mut shape_of = Vec::with_capacity(module.functions.len());
    for function in &module.functions {
        let shape = (param_reprs(function), function.ret);
        let index = match shapes.iter().position(|s| *s == shape) {
            Some(index) => index,
            None => {
                shapes.push(shape);
                shapes.len() - 1
            }
        };
        shape_of.push(index);
    }
    // Trampolines depend on the signature and tier only: most come compiled
    // from the process-wide cache, the rest are compiled with the script.
    let cached: Vec<Option<*const u8>> = shapes
        .iter()
        .map(|shape| shared_entry(shape, tier))
        .collect::<Result<_, _>>()?;
    let mut entry_ids = Vec::with_capacity(shapes.len());
    for (index, cached) in cached.iter().enumerate() {
        if cached.is_some() {
            entry_ids.push(None);
            continue;
        }
        let id = jit
            .declare_function(
                &format!("scl_entry_{index}"),
                Linkage::Local,
                &entry_signature(call_conv),
            )
            .map_err(|e| e.to_string())?;
        entry_ids.push(Some(id));
    }
    let decls = Decls {
        runtime_sigs,
        functions,
        call_conv,
        frontend: isa.frontend_config(),
        tier,
    };

    // Largest first, so that two workers finish at about the same time.
    let mut jobs: Vec<Job> = (0..module.functions.len())
        .map(Job::Function)
        .chain(
            (0..shapes.len())
                .filter(|&i| cached[i].is_none())
                .map(Job::Entry),
        )
        .collect();
    let size = |job: &Job| match job {
        Job::Function(index) => module.functions[*index]
            .blocks
            .iter()
            .map(|b| b.insts.len() + 1)
            .sum::<usize>(),
        Job::Entry(_) => 1,
    };
    jobs.sort_by_key(|job| std::cmp::Reverse(size(job)));
    let total: usize = jobs.iter().map(size).sum();
    let mut bodies = Vec::new();
    let mut by_id = HashMap::new();
    if tier == Tier::Optimized {
        let mut builder_ctx = FunctionBuilderContext::new();
        for (index, function) in module.functions.iter().enumerate() {
            let mut func = Function::new();
            translate(&mut func, &mut builder_ctx, &decls, index, function);
            bodies.push(func);
            by_id.insert(decls.functions[index].0.as_u32(), index);
        }
    }
    let work = Work {
        inline: (tier == Tier::Optimized).then_some(Inliner {
            bodies: &bodies,
            by_id: &by_id,
        }),
        isa: &*isa,
        module,
        decls: &decls,
        shapes: &shapes,
        entry_ids: &entry_ids,
        jobs: &jobs,
        next: AtomicUsize::new(0),
    };
    // Cranelift compiles each function independently: a second thread
    // does half the work once there is enough of it to pay for the thread.
    let parallel = total >= PARALLEL_MIN_INSTS && jobs.len() >= 2 && cores() >= 2;
    let finished = if parallel {
        std::thread::scope(|scope| {
            let helper = std::thread::Builder::new()
                .name("scl-compile".into())
                .spawn_scoped(scope, || work.run());
            let mine = work.run();
            let theirs = match helper {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err("a compile thread panicked".to_string())),
                // Without a second thread this one did every job.
                Err(_) => Ok(Vec::new()),
            };
            let mut all = mine?;
            all.extend(theirs?);
            Ok::<_, String>(all)
        })?
    } else {
        work.run()?
    };
    for code in &finished {
        jit.define_function_bytes(code.id, code.alignment, &code.bytes, &code.relocs)
            .map_err(|e| format!("cranelift failed on `{}`: {e:?}", code.name))?;
    }
    jit.finalize_definitions().map_err(|e| e.to_string())?;
    let entries = shape_of
        .iter()
        .zip(&decls.functions)
        .map(|(&shape, (id, _))| {
            let entry = match (cached[shape], entry_ids[shape]) {
                (Some(entry), _) => entry,
                (None, Some(own)) => jit.get_finalized_function(own),
                (None, None) => unreachable!("every shape has a trampoline"),
            };
            (entry, jit.get_finalized_function(*id))
        })
        .collect();
    Ok(NativeCode {
        module: Some(jit),
        entries,
    })
}

/// Entry trampolines compiled once per process: one per signature and tier
/// (the tiers keep the fuel in different places), in a module of their own
/// that is never freed. A trampoline is a few
/// instructions, but cranelift charges about 40 µs for any function, and
/// scripts share a handful of signatures.
struct EntryCache {
    module: JITModule,
    entries: HashMap<Shape, usize>,
}

// SAFETY: the module's memory is only written under the cache's lock
// (compiling a new trampoline); finished trampolines are immutable code
// that any thread may call.
unsafe impl Send for EntryCache {}

/// At most this many signatures get a shared trampoline (so that a process
/// compiling endless distinct signatures does not grow without bound);
/// beyond it each script compiles its own.
const SHARED_ENTRIES_MAX: usize = 1024;

/// The shared trampoline for `shape`, compiled on first use; `None` once
/// the cache is full.
fn shared_entry(shape: &Shape, tier: Tier) -> Result<Option<*const u8>, String> {
    static QUICK: std::sync::Mutex<Option<EntryCache>> = std::sync::Mutex::new(None);
    static OPTIMIZED: std::sync::Mutex<Option<EntryCache>> = std::sync::Mutex::new(None);
    let cache = match tier {
        Tier::Quick => &QUICK,
        Tier::Optimized => &OPTIMIZED,
    };
    let mut guard = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(cache) = guard.as_ref()
        && let Some(&entry) = cache.entries.get(shape)
    {
        return Ok(Some(entry as *const u8));
    }
    if guard
        .as_ref()
        .is_some_and(|cache| cache.entries.len() >= SHARED_ENTRIES_MAX)
    {
        return Ok(None);
    }
    let isa = target(tier)?;
    let cache = guard.get_or_insert_with(|| EntryCache {
        module: JITModule::new(JITBuilder::with_isa(isa.clone(), default_libcall_names())),
        entries: HashMap::new(),
    });
    let call_conv = isa.default_call_conv();
    let id = cache
        .module
        .declare_function(
            &format!("scl_shared_entry_{}", cache.entries.len()),
            Linkage::Local,
            &entry_signature(call_conv),
        )
        .map_err(|e| e.to_string())?;
    let mut ctx = Context::new();
    ctx.func.signature = entry_signature(call_conv);
    ctx.func.name = UserFuncName::user(0, id.as_u32());
    let mut builder_ctx = FunctionBuilderContext::new();
    let builder = FunctionBuilder::new(&mut ctx.func, &mut builder_ctx);
    build_entry(builder, call_conv, isa.frontend_config(), shape, tier);
    cache
        .module
        .define_function(id, &mut ctx)
        .map_err(|e| format!("cranelift failed on a trampoline: {e:?}"))?;
    cache
        .module
        .finalize_definitions()
        .map_err(|e| e.to_string())?;
    let entry = cache.module.get_finalized_function(id);
    cache.entries.insert(shape.clone(), entry as usize);
    Ok(Some(entry))
}

/// The number of cores this process may use, asked once (on Linux the
/// answer reads cgroup files).
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Runtime functions take the context and 0 to 4 more arguments.
const RUNTIME_ARITIES: usize = 5;

/// Below this many IR instructions a module is compiled on one thread.
const PARALLEL_MIN_INSTS: usize = 150;

/// The parameter and return representations of an entry trampoline.
type Shape = (Vec<Repr>, Option<Repr>);

/// What translating a function needs of the module: the ids and signatures
/// it imports, and the tier.
struct Decls {
    /// The signature of the runtime functions of each arity (context first).
    runtime_sigs: [Signature; RUNTIME_ARITIES],
    functions: Vec<(FuncId, Signature)>,
    call_conv: CallConv,
    frontend: TargetFrontendConfig,
    tier: Tier,
}

impl Decls {
    /// What `Module::declare_func_in_func` does for one of the script's
    /// functions, without the module (so that worker threads can translate).
    fn import(&self, func: &mut Function, id: FuncId, sig: &Signature) -> FuncRef {
        let signature = func.import_signature(sig.clone());
        let name = func.declare_imported_user_function(UserExternalName {
            namespace: 0,
            index: id.as_u32(),
        });
        func.import_function(ExtFuncData {
            name: ExternalName::user(name),
            signature,
            colocated: true,
            patchable: false,
        })
    }
}

enum Job {
    Function(usize),
    Entry(usize),
}

/// A function's machine code, to be placed in the JIT module.
struct Finished {
    id: FuncId,
    name: String,
    alignment: u64,
    bytes: Vec<u8>,
    relocs: Vec<ModuleReloc>,
}

/// The jobs of one compile, shared by the threads that take them in turn.
struct Work<'a> {
    isa: &'a dyn isa::TargetIsa,
    module: &'a ir::Module,
    decls: &'a Decls,
    shapes: &'a [Shape],
    /// The script's own trampolines (`None`: from the shared cache).
    entry_ids: &'a [Option<FuncId>],
    jobs: &'a [Job],
    next: AtomicUsize,
    /// The optimized tier's inlining, over every function translated first.
    inline: Option<Inliner<'a>>,
}

/// Translates function `index` into `func`.
fn translate(
    func: &mut Function,
    builder_ctx: &mut FunctionBuilderContext,
    decls: &Decls,
    index: usize,
    function: &ir::Function,
) {
    let (id, sig) = &decls.functions[index];
    func.signature = sig.clone();
    func.name = UserFuncName::user(0, id.as_u32());
    let builder = FunctionBuilder::new(func, builder_ctx);
    let mut translator = Translator::new(builder, decls, function);
    translator.translate(function);
    translator.builder.seal_all_blocks();
    translator.builder.finalize(decls.frontend);
}

/// Functions of at most this many CLIF instructions are inlined into
/// their callers in the optimized tier (a small recursive function such as
/// `fib` gets one level of its recursion inlined, as LLVM does).
const INLINE_MAX_INSTS: usize = 80;

/// The optimized tier's inlining decisions: direct calls of small script
/// functions, one level deep. An inlined body keeps every check of the
/// function it came from (fuel, the depth argument, the stack, the status
/// after each call), so limits and errors behave as without inlining.
#[derive(Clone, Copy)]
struct Inliner<'a> {
    bodies: &'a [Function],
    /// Script functions by their `FuncId`.
    by_id: &'a HashMap<u32, usize>,
}

impl Inline for Inliner<'_> {
    fn inline(
        &mut self,
        caller: &Function,
        _call: cranelift_codegen::ir::Inst,
        _opcode: cranelift_codegen::ir::Opcode,
        callee: FuncRef,
        _args: &[Value],
    ) -> InlineCommand<'_> {
        let ExternalName::User(name) = &caller.dfg.ext_funcs[callee].name else {
            return InlineCommand::KeepCall;
        };
        let target = &caller.params.user_named_funcs()[*name];
        match self.by_id.get(&target.index) {
            Some(&index) if self.bodies[index].dfg.num_insts() <= INLINE_MAX_INSTS => {
                InlineCommand::Inline {
                    callee: std::borrow::Cow::Borrowed(&self.bodies[index]),
                    visit_callee: false,
                }
            }
            _ => InlineCommand::KeepCall,
        }
    }
}

impl Work<'_> {
    /// Translates and compiles jobs until none are left.
    fn run(&self) -> Result<Vec<Finished>, String> {
        let mut ctx = Context::new();
        let mut builder_ctx = FunctionBuilderContext::new();
        let mut done = Vec::new();
        loop {
            let Some(job) = self.jobs.get(self.next.fetch_add(1, Ordering::Relaxed)) else {
                return Ok(done);
            };
            ctx.clear();
            let (id, name) = match *job {
                Job::Function(index) => {
                    let function = &self.module.functions[index];
                    let (id, _) = &self.decls.functions[index];
                    match self.inline {
                        // The optimized tier: the translation made up front,
                        // with calls of small functions inlined (one level).
                        Some(inliner) => {
                            ctx.func = inliner.bodies[index].clone();
                            let mut inliner = inliner;
                            ctx.inline(&mut inliner).map_err(|e| {
                                format!(
                                    "cranelift failed to inline into `{}`: {e:?}",
                                    function.name
                                )
                            })?;
                        }
                        None => {
                            translate(&mut ctx.func, &mut builder_ctx, self.decls, index, function)
                        }
                    }
                    (*id, function.name.clone())
                }
                Job::Entry(shape) => {
                    let id = self.entry_ids[shape].expect("a job only for a trampoline of its own");
                    ctx.func.signature = entry_signature(self.decls.call_conv);
                    ctx.func.name = UserFuncName::user(0, id.as_u32());
                    let builder = FunctionBuilder::new(&mut ctx.func, &mut builder_ctx);
                    build_entry(
                        builder,
                        self.decls.call_conv,
                        self.decls.frontend,
                        &self.shapes[shape],
                        self.decls.tier,
                    );
                    (id, format!("entry {shape}"))
                }
            };
            let alignment = match ctx.compile(self.isa, &mut ControlPlane::default()) {
                Ok(code) => code.buffer.alignment as u64,
                Err(e) => return Err(format!("cranelift failed on `{name}`: {:?}", e.inner)),
            };
            let code = ctx
                .compiled_code()
                .ok_or_else(|| format!("cranelift kept no code for `{name}`"))?;
            let relocs = code
                .buffer
                .relocs()
                .iter()
                .map(|reloc| ModuleReloc::from_mach_reloc(reloc, &ctx.func, id))
                .collect();
            done.push(Finished {
                id,
                name,
                alignment,
                bytes: code.code_buffer().to_vec(),
                relocs,
            });
        }
    }
}

fn param_reprs(function: &ir::Function) -> Vec<Repr> {
    function
        .params
        .iter()
        .map(|param| function.vars[param.0 as usize])
        .collect()
}

fn function_signature(call_conv: CallConv, params: &[Repr], ret: Option<Repr>) -> Signature {
    let mut sig = Signature::new(call_conv);
    sig.params.push(AbiParam::new(pointer_type()));
    // The hidden `depth_left`: how many more nested calls the run allows.
    sig.params.push(AbiParam::new(types::I64));
    for &repr in params {
        sig.params.push(AbiParam::new(cl_type(repr)));
    }
    if let Some(ret) = ret {
        sig.returns.push(AbiParam::new(cl_type(ret)));
    }
    sig
}

/// `extern "C" fn(ctx, argv: *const i64, ret: *mut i64, function: *const u8)`.
fn entry_signature(call_conv: CallConv) -> Signature {
    let mut sig = Signature::new(call_conv);
    for _ in 0..4 {
        sig.params.push(AbiParam::new(pointer_type()));
    }
    sig
}

/// The entry trampoline of one signature and tier: unpacks `argv`, calls
/// the function at the address it is given with the run's call depth (and,
/// for the optimized tier, its fuel in the pinned register), and stores the
/// result as bits.
fn build_entry(
    mut builder: FunctionBuilder<'_>,
    call_conv: CallConv,
    frontend: TargetFrontendConfig,
    shape: &Shape,
    tier: Tier,
) {
    let (params, ret) = shape;
    let block = builder.create_block();
    builder.append_block_params_for_function_params(block);
    builder.switch_to_block(block);
    builder.seal_block(block);
    let values = builder.block_params(block).to_vec();
    let (ctx, argv, ret_ptr, callee) = (values[0], values[1], values[2], values[3]);
    let depth = builder
        .ins()
        .load(types::I64, flags(), ctx, CTX_OFFSETS.max_depth);
    // Optimized code: the run's fuel goes into the pinned register for the
    // call and back into the budget after it. The register is callee-saved
    // for our caller (Rust), so its old value is kept and put back.
    let pinned = fuel_in_register(tier).then(|| {
        let callers = builder.ins().get_pinned_reg(types::I64);
        let budget = builder
            .ins()
            .load(pointer_type(), flags(), ctx, CTX_OFFSETS.budget);
        let fuel = builder.ins().load(types::I64, flags(), budget, BUDGET_FUEL);
        builder.ins().set_pinned_reg(fuel);
        (callers, budget)
    });
    let mut args = vec![ctx, depth];
    for (i, &repr) in params.iter().enumerate() {
        let bits = builder
            .ins()
            .load(types::I64, flags(), argv, (i * 8) as i32);
        args.push(from_bits(&mut builder, bits, repr));
    }
    let sig = builder.import_signature(function_signature(call_conv, params, *ret));
    let call = builder.ins().call_indirect(sig, callee, &args);
    if let Some((callers, budget)) = pinned {
        let left = builder.ins().get_pinned_reg(types::I64);
        builder.ins().store(flags(), left, budget, BUDGET_FUEL);
        builder.ins().set_pinned_reg(callers);
    }
    if let Some(repr) = *ret {
        let result = builder.inst_results(call)[0];
        let bits = to_bits(&mut builder, result, repr);
        builder.ins().store(flags(), bits, ret_ptr, 0);
    }
    builder.ins().return_(&[]);
    builder.finalize(frontend);
}

/// The register an instruction defines, if any.
fn defined_var(kind: &InstKind) -> Option<ir::Var> {
    match kind {
        InstKind::Const { dst, .. }
        | InstKind::Copy { dst, .. }
        | InstKind::IntArith { dst, .. }
        | InstKind::IntNeg { dst, .. }
        | InstKind::FloatArith { dst, .. }
        | InstKind::FloatNeg { dst, .. }
        | InstKind::Cmp { dst, .. }
        | InstKind::Not { dst, .. }
        | InstKind::IsNull { dst, .. }
        | InstKind::IntToFloat { dst, .. }
        | InstKind::LoadSlot { dst, .. } => Some(*dst),
        InstKind::Call { dst, .. } | InstKind::Rt { dst, .. } => *dst,
        InstKind::StoreSlot { .. }
        | InstKind::Retain { .. }
        | InstKind::Enter
        | InstKind::Poll
        | InstKind::TakeError { .. } => None,
    }
}

/// Calls `f` with every register an instruction reads.
fn used_vars(kind: &InstKind, mut f: impl FnMut(ir::Var)) {
    match kind {
        InstKind::Const { .. }
        | InstKind::LoadSlot { .. }
        | InstKind::Enter
        | InstKind::Poll
        | InstKind::TakeError { .. } => {}
        InstKind::Copy { src, .. }
        | InstKind::IntNeg { src, .. }
        | InstKind::FloatNeg { src, .. }
        | InstKind::Not { src, .. }
        | InstKind::IsNull { src, .. }
        | InstKind::IntToFloat { src, .. }
        | InstKind::StoreSlot { src, .. }
        | InstKind::Retain { src } => f(*src),
        InstKind::IntArith { lhs, rhs, .. }
        | InstKind::FloatArith { lhs, rhs, .. }
        | InstKind::Cmp { lhs, rhs, .. } => {
            f(*lhs);
            f(*rhs);
        }
        InstKind::Call { args, .. } => args.iter().copied().for_each(f),
        InstKind::Rt { args, .. } => {
            for arg in args {
                match arg {
                    Operand::Var(v) => f(*v),
                    Operand::Imm(_) => {}
                    Operand::Argv(vars) => vars.iter().copied().for_each(&mut f),
                }
            }
        }
    }
}

/// The registers whose every definition and use lies in one block, each
/// use after a definition in that block (the temporaries of expressions).
/// They need no cranelift variable: the translation keeps the value it
/// defined last, which spares the SSA builder and every block the work of
/// tracking them.
fn block_local_vars(function: &ir::Function) -> Vec<bool> {
    let n = function.vars.len();
    let mut local = vec![true; n];
    // The block (plus one) that defines each register; 0 for none yet.
    let mut home = vec![0usize; n];
    for param in &function.params {
        local[param.0 as usize] = false;
    }
    for (index, block) in function.blocks.iter().enumerate() {
        let stamp = index + 1;
        let use_var = |var: ir::Var, local: &mut [bool], home: &[usize]| {
            if home[var.0 as usize] != stamp {
                local[var.0 as usize] = false;
            }
        };
        for inst in &block.insts {
            used_vars(&inst.kind, |var| use_var(var, &mut local, &home));
            if let Some(var) = defined_var(&inst.kind) {
                let slot = &mut home[var.0 as usize];
                if *slot != 0 && *slot != stamp {
                    local[var.0 as usize] = false;
                }
                *slot = stamp;
            }
        }
        match &block.term {
            Terminator::Branch { cond, .. } => use_var(*cond, &mut local, &home),
            Terminator::Return(Some(var)) => use_var(*var, &mut local, &home),
            _ => {}
        }
    }
    local
}

/// The slots only one block reads or writes (the owners of temporaries).
fn block_local_slots(function: &ir::Function) -> Vec<bool> {
    let n = function.slots as usize;
    let mut local = vec![true; n];
    let mut home = vec![usize::MAX; n];
    for (index, block) in function.blocks.iter().enumerate() {
        for inst in &block.insts {
            let slot = match inst.kind {
                InstKind::LoadSlot { slot, .. }
                | InstKind::StoreSlot { slot, .. }
                | InstKind::TakeError { slot, .. } => slot.0 as usize,
                _ => continue,
            };
            if home[slot] != usize::MAX && home[slot] != index {
                local[slot] = false;
            }
            home[slot] = index;
        }
    }
    local
}

/// A range one `int` register is known to be in: `(register, min, max)`,
/// both inclusive.
type Bound = (ir::Var, i64, i64);

/// Per block, a range of one `int` register at the block's start: for a
/// block whose only (reachable) way in is one edge of a branch on `x < y`,
/// `x <= y`, `x > y` or `x >= y`, where `x` does not change between the
/// comparison and the branch. With a constant `y` the range follows from
/// it; otherwise `x < y` and `x > y` still keep `x` off `i64::MAX` and
/// `i64::MIN` (so the counter of `for k in a..b` can be incremented
/// without an overflow check).
fn entry_bounds(function: &ir::Function) -> Vec<Option<Bound>> {
    let n = function.blocks.len();
    let mut reachable = vec![false; n];
    let mut work = vec![0usize];
    while let Some(block) = work.pop() {
        if std::mem::replace(&mut reachable[block], true) {
            continue;
        }
        let body = &function.blocks[block];
        work.extend(successors(&body.term));
        work.extend(
            body.insts
                .iter()
                .filter_map(|inst| inst.site.map(|site| site.on_error.0 as usize)),
        );
    }
    let mut preds = vec![0u32; n];
    let mut only_pred = vec![0usize; n];
    for (index, block) in function.blocks.iter().enumerate() {
        if !reachable[index] {
            continue;
        }
        for target in successors(&block.term) {
            preds[target] += 1;
            only_pred[target] = index;
        }
        for inst in &block.insts {
            if let Some(site) = inst.site {
                // Reached by an error edge too: no single way in.
                preds[site.on_error.0 as usize] += 2;
            }
        }
    }
    (0..n)
        .map(|block| {
            if block == 0 || preds[block] != 1 {
                return None;
            }
            let pred = &function.blocks[only_pred[block]];
            let Terminator::Branch {
                cond, then_block, ..
            } = pred.term
            else {
                return None;
            };
            let taken = then_block.0 as usize == block;
            let defining = pred
                .insts
                .iter()
                .rposition(|inst| defined_var(&inst.kind) == Some(cond))?;
            let InstKind::Cmp {
                op,
                repr: Repr::Int,
                lhs,
                rhs,
                ..
            } = pred.insts[defining].kind
            else {
                return None;
            };
            let after = &pred.insts[defining + 1..];
            if after
                .iter()
                .any(|inst| defined_var(&inst.kind) == Some(lhs))
            {
                return None;
            }
            let before = &pred.insts[..defining];
            let constant = before
                .iter()
                .rposition(|inst| defined_var(&inst.kind) == Some(rhs))
                .and_then(|constant| match before[constant].kind {
                    InstKind::Const {
                        value: Const::Int(c),
                        ..
                    } => Some(c),
                    _ => None,
                });
            // Normalise to the comparison that holds on this edge.
            let holds = match (op, taken) {
                (op, true) => op,
                (CmpOp::Lt, false) => CmpOp::Ge,
                (CmpOp::Le, false) => CmpOp::Gt,
                (CmpOp::Gt, false) => CmpOp::Le,
                (CmpOp::Ge, false) => CmpOp::Lt,
                _ => return None,
            };
            let (min, max) = match (holds, constant) {
                (CmpOp::Lt, Some(c)) => (i64::MIN, c.checked_sub(1)?),
                (CmpOp::Le, Some(c)) => (i64::MIN, c),
                (CmpOp::Gt, Some(c)) => (c.checked_add(1)?, i64::MAX),
                (CmpOp::Ge, Some(c)) => (c, i64::MAX),
                (CmpOp::Lt, None) => (i64::MIN, i64::MAX - 1),
                (CmpOp::Gt, None) => (i64::MIN + 1, i64::MAX),
                _ => return None,
            };
            Some((lhs, min, max))
        })
        .collect()
}

/// A site's span in one `i64` (start in the high half, end in the low),
/// the block argument of the quick tier's shared error edges.
fn pack_span(site: Site) -> i64 {
    (((site.span.start as u64) << 32) | site.span.end as u64) as i64
}

/// Per slot: true when the slot is written at exactly one place, in a block
/// on no cycle of the control-flow graph. That write runs at most once per
/// call, so the slot still holds the null it was given at entry and the
/// store needs no release of an old value.
fn fresh_slots(function: &ir::Function) -> Vec<bool> {
    let mut writes = vec![(0u32, 0usize); function.slots as usize];
    for (index, block) in function.blocks.iter().enumerate() {
        for inst in &block.insts {
            let slot = match &inst.kind {
                InstKind::StoreSlot { slot, .. } | InstKind::TakeError { slot, .. } => slot,
                _ => continue,
            };
            let entry = &mut writes[slot.0 as usize];
            entry.0 += 1;
            entry.1 = index;
        }
    }
    let cyclic = blocks_on_cycles(function);
    writes
        .iter()
        .map(|&(count, block)| count == 1 && !cyclic[block])
        .collect()
}

fn successors(term: &Terminator) -> Vec<usize> {
    match term {
        Terminator::Jump(target) => vec![target.0 as usize],
        Terminator::Branch {
            then_block,
            else_block,
            ..
        } => vec![then_block.0 as usize, else_block.0 as usize],
        Terminator::IfCatchable {
            catch_block,
            propagate,
        } => vec![catch_block.0 as usize, propagate.0 as usize],
        Terminator::Return(_) | Terminator::ReturnError | Terminator::Unreachable => Vec::new(),
    }
}

/// Which blocks lie on a cycle, counting the error edges of sites (a
/// fallible instruction may continue at its handler): Tarjan's strongly
/// connected components, iteratively.
fn blocks_on_cycles(function: &ir::Function) -> Vec<bool> {
    let n = function.blocks.len();
    let edges: Vec<Vec<usize>> = function
        .blocks
        .iter()
        .map(|block| {
            let mut out = successors(&block.term);
            for inst in &block.insts {
                if let Some(site) = inst.site {
                    out.push(site.on_error.0 as usize);
                }
            }
            out.sort_unstable();
            out.dedup();
            out
        })
        .collect();
    const UNSEEN: usize = usize::MAX;
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut cyclic = vec![false; n];
    let mut counter = 0;
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        // (block, next edge to look at)
        let mut calls = vec![(root, 0)];
        index[root] = counter;
        low[root] = counter;
        counter += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut edge)) = calls.last_mut() {
            if let Some(&w) = edges[v].get(*edge) {
                *edge += 1;
                if index[w] == UNSEEN {
                    index[w] = counter;
                    low[w] = counter;
                    counter += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                let looped = component.len() > 1 || edges[v].contains(&v);
                if looped {
                    for w in component {
                        cyclic[w] = true;
                    }
                }
            }
        }
    }
    cyclic
}

fn to_bits(builder: &mut FunctionBuilder<'_>, value: Value, repr: Repr) -> Value {
    match repr {
        Repr::Int | Repr::Ptr => value,
        Repr::Float => builder
            .ins()
            .bitcast(types::I64, MemFlagsData::new(), value),
        Repr::Bool => builder.ins().uextend(types::I64, value),
    }
}

fn from_bits(builder: &mut FunctionBuilder<'_>, bits: Value, repr: Repr) -> Value {
    match repr {
        Repr::Int | Repr::Ptr => bits,
        Repr::Float => builder.ins().bitcast(types::F64, MemFlagsData::new(), bits),
        Repr::Bool => builder.ins().ireduce(types::I8, bits),
    }
}

/// Cold blocks made while translating, emitted at the end.
enum Pending {
    /// The optimized tier's error edge of one site: locate, then jump.
    Locate { block: Block, site: Site },
    /// The optimized tier's raise of one site, then its `Locate` block.
    Raise {
        block: Block,
        raise: RtFn,
        then: Block,
    },
    /// The quick tier's error edge shared by every site with the same
    /// handler: the site arrives as a block argument (its span, packed).
    SharedLocate { block: Block, on_error: BlockId },
    /// The quick tier's shared raise: `raise`, then the shared `Locate`.
    SharedRaise {
        block: Block,
        raise: RtFn,
        then: Block,
    },
    /// The quick tier's shared raise of merged checks (see
    /// [`Translator::flush_checks`]): the raise function's address arrives
    /// as a second block argument.
    SharedRaiseAny { block: Block, then: Block },
}

struct Translator<'a, 'b> {
    pending: Vec<Pending>,
    /// The quick tier's shared error edges, by handler block.
    shared_locate: HashMap<BlockId, Block>,
    /// The quick tier's shared raises, by raise function and handler block.
    shared_raise: HashMap<(RtFn, BlockId), Block>,
    /// The quick tier's shared raises of merged checks, by handler block.
    shared_raise_any: HashMap<BlockId, Block>,
    /// The quick tier's arithmetic checks not branched on yet (see
    /// [`Translator::flush_checks`]): each failure condition, its raise
    /// and site, in program order.
    pending_checks: Vec<(Value, RtFn, Site)>,
    builder: FunctionBuilder<'b>,
    decls: &'a Decls,
    blocks: Vec<Block>,
    /// Per slot: its only write is reached once per call at most, so the
    /// slot still holds null there (no old value to release).
    fresh_slots: Vec<bool>,
    /// One zero constant per type, made at entry.
    zeros: Option<[Value; 3]>,
    /// Per block, a range one `int` register has at its start.
    entry_bounds: Vec<Option<Bound>>,
    /// That range while the block is translated, until the register changes.
    bound: Option<Bound>,
    /// Registers holding a known `int` constant in the current block.
    constants: HashMap<ir::Var, i64>,
    vars: Vec<Variable>,
    var_reprs: Vec<Repr>,
    /// Registers local to one block (see [`block_local_vars`]) and the
    /// value each holds, instead of a cranelift variable.
    local: Vec<bool>,
    local_values: Vec<Option<Value>>,
    /// Slots local to one block (see [`block_local_slots`]).
    local_slots: Vec<bool>,
    /// The quick tier's run of calls whose status is checked once, after
    /// the last (see [`Translator::in_run`]): each call's result and site.
    run: Vec<(Value, Site)>,
    /// Set while translating an instruction that joins the run.
    joining_run: bool,
    /// The imported runtime signature of each arity, made on first use.
    runtime_sigs: [Option<SigRef>; RUNTIME_ARITIES],
    function_refs: Vec<Option<FuncRef>>,
    ctx: Value,
    /// The hidden `depth_left` argument, and that minus one for callees.
    depth_left: Value,
    callee_depth: Option<Value>,
    slots: Option<cranelift_codegen::ir::StackSlot>,
    /// The address of the slot area, made at entry.
    slot_base: Option<Value>,
    slot_count: u32,
    ret: Option<Repr>,
}

impl<'a, 'b> Translator<'a, 'b> {
    fn new(
        mut builder: FunctionBuilder<'b>,
        decls: &'a Decls,
        function: &ir::Function,
    ) -> Translator<'a, 'b> {
        let blocks: Vec<Block> = function
            .blocks
            .iter()
            .map(|_| builder.create_block())
            .collect();
        let vars = function
            .vars
            .iter()
            .map(|&repr| builder.declare_var(cl_type(repr)))
            .collect();
        let slots = (function.slots > 0).then(|| {
            builder.create_sized_stack_slot(StackSlotData::new(
                StackSlotKind::ExplicitSlot,
                function.slots * 8,
                4,
            ))
        });
        let function_refs = vec![None; decls.functions.len()];
        let placeholder = Value::from_u32(0);
        Translator {
            pending: Vec::new(),
            shared_locate: HashMap::new(),
            shared_raise: HashMap::new(),
            shared_raise_any: HashMap::new(),
            pending_checks: Vec::new(),
            builder,
            decls,
            blocks,
            fresh_slots: fresh_slots(function),
            zeros: None,
            entry_bounds: entry_bounds(function),
            bound: None,
            constants: HashMap::new(),
            vars,
            var_reprs: function.vars.clone(),
            local: block_local_vars(function),
            local_values: vec![None; function.vars.len()],
            local_slots: block_local_slots(function),
            run: Vec::new(),
            joining_run: false,
            runtime_sigs: [None; RUNTIME_ARITIES],
            function_refs,
            ctx: placeholder,
            depth_left: placeholder,
            callee_depth: None,
            slots,
            slot_base: None,
            slot_count: function.slots,
            ret: function.ret,
        }
    }

    fn translate(&mut self, function: &ir::Function) {
        let entry = self.blocks[0];
        self.builder.append_block_params_for_function_params(entry);
        self.builder.switch_to_block(entry);
        let params = self.builder.block_params(entry).to_vec();
        self.ctx = params[0];
        self.depth_left = params[1];
        let calls = function.blocks.iter().any(|b| {
            b.insts
                .iter()
                .any(|i| matches!(i.kind, InstKind::Call { .. }))
        });
        if calls {
            self.callee_depth = Some(self.builder.ins().iadd_imm_s(self.depth_left, -1));
        }
        for (param, &value) in function.params.iter().zip(&params[2..]) {
            self.builder.def_var(self.vars[param.0 as usize], value);
        }
        // Define every register at entry so no path reads an undefined one.
        let zeros = [Repr::Int, Repr::Bool, Repr::Float].map(|repr| self.zero(repr));
        self.zeros = Some(zeros);
        for (index, &repr) in function.vars.iter().enumerate() {
            if self.local[index] || function.params.iter().any(|p| p.0 as usize == index) {
                continue;
            }
            let zero = self.zero(repr);
            self.builder.def_var(self.vars[index], zero);
        }
        if let Some(slots) = self.slots {
            // One base address for every slot access (`base + 8 * slot`),
            // and the slots zeroed 16 bytes at a time.
            let base = self.builder.ins().stack_addr(pointer_type(), slots, 0);
            self.slot_base = Some(base);
            let pairs = self.slot_count / 2;
            if pairs > 0 {
                let bytes = self.builder.func.dfg.constants.insert(vec![0u8; 16].into());
                let wide = self.builder.ins().vconst(types::I64X2, bytes);
                // The slot area is 16-byte aligned, but say nothing about
                // alignment: an unaligned vector store is as fast here.
                let unaligned = MemFlagsData::new().with_notrap();
                for pair in 0..pairs {
                    self.builder
                        .ins()
                        .store(unaligned, wide, base, (pair * 16) as i32);
                }
            }
            if self.slot_count % 2 == 1 {
                let last = (self.slot_count - 1) * 8;
                self.builder
                    .ins()
                    .store(flags(), zeros[0], base, last as i32);
            }
        }
        // A block can be sealed (no predecessor will be added) once every
        // block jumping to it is translated: blocks reached only forward.
        // Handlers (reached through error edges, made at the end) and loop
        // heads are sealed at the end. Sealing early spares the SSA builder
        // the block parameters it would add for each variable in doubt.
        let mut last_pred = vec![0usize; function.blocks.len()];
        for (index, block) in function.blocks.iter().enumerate() {
            for target in successors(&block.term) {
                last_pred[target] = last_pred[target].max(index);
            }
            for inst in &block.insts {
                if let Some(site) = inst.site {
                    last_pred[site.on_error.0 as usize] = usize::MAX;
                }
            }
        }
        // A block whose only way in is a jump from the block before it is
        // translated as the rest of that block: one CLIF block fewer (each
        // costs cranelift far more than a few instructions), and what is
        // known at the jump (constants, a register's range) still holds.
        let mut preds = vec![0u32; function.blocks.len()];
        for block in &function.blocks {
            for target in successors(&block.term) {
                preds[target] += 1;
            }
            for inst in &block.insts {
                if let Some(site) = inst.site {
                    preds[site.on_error.0 as usize] += 2;
                }
            }
        }
        let continues = |index: usize| {
            index > 0
                && index < preds.len()
                && preds[index] == 1
                && matches!(function.blocks[index - 1].term, Terminator::Jump(t) if t.0 as usize == index)
        };
        self.builder.seal_block(entry);
        for (index, block) in function.blocks.iter().enumerate() {
            if !continues(index) {
                if index > 0 {
                    self.builder.switch_to_block(self.blocks[index]);
                    if last_pred[index] < index {
                        self.builder.seal_block(self.blocks[index]);
                    }
                }
                self.bound = self.entry_bounds[index];
                self.constants.clear();
            }
            for inst in &block.insts {
                if !self.defers_checks(&inst.kind, inst.site) {
                    self.flush_checks();
                }
                self.joining_run = self.in_run(&inst.kind, inst.site);
                if !self.joining_run {
                    self.check_run();
                }
                self.inst(&inst.kind, inst.site);
                if self.joining_run
                    && matches!(inst.kind, InstKind::Rt { func, .. } if func.ends_runs())
                {
                    self.check_run();
                }
                if let Some(var) = defined_var(&inst.kind) {
                    if self.bound.is_some_and(|(bounded, _, _)| bounded == var) {
                        self.bound = None;
                    }
                    match inst.kind {
                        InstKind::Const {
                            value: Const::Int(value),
                            ..
                        } => self.constants.insert(var, value),
                        _ => self.constants.remove(&var),
                    };
                }
            }
            self.flush_checks();
            self.check_run();
            if !continues(index + 1) {
                self.terminator(&block.term);
            }
        }
        self.emit_pending();
    }

    /// A zero of `repr`: the constants made once at entry (which dominates
    /// every use), or new ones before they exist.
    fn zero(&mut self, repr: Repr) -> Value {
        let index = match repr {
            Repr::Int | Repr::Ptr => 0,
            Repr::Bool => 1,
            Repr::Float => 2,
        };
        if let Some(zeros) = self.zeros {
            return zeros[index];
        }
        match repr {
            Repr::Int | Repr::Ptr => self.builder.ins().iconst(types::I64, 0),
            Repr::Bool => self.builder.ins().iconst(types::I8, 0),
            Repr::Float => self.builder.ins().f64const(0.0),
        }
    }

    fn var(&mut self, var: ir::Var) -> Value {
        let index = var.0 as usize;
        if self.local[index] {
            return self.local_values[index]
                .expect("a block-local register is defined before its uses");
        }
        self.builder.use_var(self.vars[index])
    }

    fn set(&mut self, var: ir::Var, value: Value) {
        let index = var.0 as usize;
        if self.local[index] {
            self.local_values[index] = Some(value);
            return;
        }
        // A handler may read this register: it must not see a value
        // computed after a failed check.
        self.flush_checks();
        self.builder.def_var(self.vars[index], value);
    }

    /// Calls runtime function `func` at its address, which is fixed for the
    /// life of the process (as `call` of an imported symbol would: a 64-bit
    /// constant and an indirect call, without a symbol to declare and
    /// resolve for every compile).
    fn call_rt(&mut self, func: RtFn, args: &[Value]) -> Value {
        let pointer = func.pointer();
        let sig = self.runtime_sig(pointer.arity());
        let address = self
            .builder
            .ins()
            .iconst(pointer_type(), pointer.address() as i64);
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(self.ctx);
        all.extend_from_slice(args);
        let call = self.builder.ins().call_indirect(sig, address, &all);
        self.builder.inst_results(call)[0]
    }

    /// The imported signature of runtime functions of `arity`.
    fn runtime_sig(&mut self, arity: usize) -> SigRef {
        match self.runtime_sigs[arity] {
            Some(sig) => sig,
            None => {
                let sig = self
                    .builder
                    .import_signature(self.decls.runtime_sigs[arity].clone());
                self.runtime_sigs[arity] = Some(sig);
                sig
            }
        }
    }

    fn ctx_load(&mut self, offset: i32) -> Value {
        self.builder
            .ins()
            .load(types::I64, flags(), self.ctx, offset)
    }

    /// The slot area's base (made at entry) and the slot's offset from it.
    fn slot_addr(&mut self, slot: ir::SlotId) -> (Value, i32) {
        let base = self
            .slot_base
            .expect("a function that names a slot has a slot area");
        (base, (slot.0 * 8) as i32)
    }

    /// A cold block that records the location and jumps to the error edge
    /// (filled in by `emit_pending`, as cranelift wants one block at a time).
    fn error_block(&mut self, site: Site) -> Block {
        let block = self.builder.create_block();
        self.builder.set_cold_block(block);
        self.pending.push(Pending::Locate { block, site });
        block
    }

    /// The quick tier's error edge of every site with this handler: a
    /// block taking the site's packed span (see [`pack_span`]).
    fn shared_locate(&mut self, on_error: BlockId) -> Block {
        if let Some(&block) = self.shared_locate.get(&on_error) {
            return block;
        }
        let block = self.builder.create_block();
        self.builder.set_cold_block(block);
        self.builder.append_block_param(block, types::I64);
        self.pending.push(Pending::SharedLocate { block, on_error });
        self.shared_locate.insert(on_error, block);
        block
    }

    fn shared_raise(&mut self, raise: RtFn, on_error: BlockId) -> Block {
        if let Some(&block) = self.shared_raise.get(&(raise, on_error)) {
            return block;
        }
        let then = self.shared_locate(on_error);
        let block = self.builder.create_block();
        self.builder.set_cold_block(block);
        self.builder.append_block_param(block, types::I64);
        self.pending
            .push(Pending::SharedRaise { block, raise, then });
        self.shared_raise.insert((raise, on_error), block);
        block
    }

    /// Branches to `fail` (the optimized tier's per-site block, or the
    /// quick tier's shared one with the site's span) when `cond` holds.
    fn branch_to_error(&mut self, cond: Value, fail: Block, site: Site) {
        let next = self.builder.create_block();
        self.branch_to_error_then(cond, fail, site, next);
        self.builder.seal_block(next);
        self.builder.switch_to_block(next);
    }

    fn branch_to_error_then(&mut self, cond: Value, fail: Block, site: Site, next: Block) {
        if self.decls.tier == Tier::Quick {
            let span = self.builder.ins().iconst(types::I64, pack_span(site));
            self.builder
                .ins()
                .brif(cond, fail, &[BlockArg::Value(span)], next, &[]);
        } else {
            self.builder.ins().brif(cond, fail, &[], next, &[]);
        }
    }

    /// The block a failed site continues at: the quick tier's shared error
    /// edge of its handler, or the optimized tier's own locate block.
    fn error_edge(&mut self, site: Site) -> Block {
        match self.decls.tier {
            Tier::Quick => self.shared_locate(site.on_error),
            Tier::Optimized => self.error_block(site),
        }
    }

    /// Whether an instruction can join the quick tier's run of unchecked
    /// calls: a call of a function that is checked in runs (see
    /// [`RtFn::checked_in_runs`]) with the run's handler, a call that ends
    /// the run (see [`RtFn::ends_runs`]: checked right after), or an instruction
    /// without effects, into a register or slot nothing outside this block
    /// sees. After a call of the run failed, the rest of the run then does
    /// nothing anyone can observe: the functions return 0 at once, and the
    /// registers and slots they fill are dead on the error edge (every slot
    /// is still released on the way out). Anything else first checks the
    /// run (see [`Translator::check_run`]).
    fn in_run(&self, kind: &InstKind, site: Option<Site>) -> bool {
        if self.decls.tier != Tier::Quick {
            return false;
        }
        let local = |var: &ir::Var| self.local[var.0 as usize];
        match kind {
            InstKind::Rt { dst, func, .. } => {
                let Some(site) = site else { return false };
                let same_handler = self
                    .run
                    .first()
                    .is_none_or(|(_, first)| first.on_error == site.on_error);
                let member = match dst {
                    Some(dst) => func.checked_in_runs() && local(dst),
                    None => false,
                };
                // A function that ends runs only joins one already going.
                let last =
                    func.ends_runs() && !self.run.is_empty() && dst.as_ref().is_none_or(local);
                same_handler && (member || last)
            }
            InstKind::StoreSlot {
                slot,
                src,
                owned: true,
            } => self.local_slots[slot.0 as usize] && local(src),
            InstKind::LoadSlot { dst, .. } => local(dst),
            _ => pure_dst(kind).is_some_and(local),
        }
    }

    /// Checks the status once for the run of calls since the last check:
    /// the error edge gets the span of the first call that returned 0 (the
    /// one that failed: the functions of a run never return 0 otherwise).
    fn check_run(&mut self) {
        let Some(&(last, site)) = self.run.last() else {
            return;
        };
        if self.run.len() == 1 {
            self.run.clear();
            let _ = last;
            self.check_status(Some(site));
            return;
        }
        let mut span = self.builder.ins().iconst(types::I64, pack_span(site));
        let run = std::mem::take(&mut self.run);
        for &(result, site) in run[..run.len() - 1].iter().rev() {
            let failed = self.builder.ins().icmp_imm_s(IntCC::Equal, result, 0);
            let here = self.builder.ins().iconst(types::I64, pack_span(site));
            span = self.builder.ins().select(failed, here, span);
        }
        let status = self.ctx_load(CTX_OFFSETS.status);
        let error = self.shared_locate(site.on_error);
        let next = self.builder.create_block();
        self.builder
            .ins()
            .brif(status, error, &[BlockArg::Value(span)], next, &[]);
        self.builder.seal_block(next);
        self.builder.switch_to_block(next);
    }

    /// After a call that may have failed: branch on the context's status.
    fn check_status(&mut self, site: Option<Site>) {
        let Some(site) = site else { return };
        let status = self.ctx_load(CTX_OFFSETS.status);
        let error = self.error_edge(site);
        self.branch_to_error(status, error, site);
    }

    /// Branches to a cold block calling `raise` (then the error edge) when
    /// `cond` holds. The quick tier only notes the check, and branches once
    /// for the checks of consecutive arithmetic (see
    /// [`Translator::flush_checks`]).
    fn fail_if(&mut self, cond: Value, raise: RtFn, site: Option<Site>) {
        let Some(site) = site else { return };
        if self.decls.tier == Tier::Quick {
            if self
                .pending_checks
                .first()
                .is_some_and(|(_, _, first)| first.on_error != site.on_error)
            {
                self.flush_checks();
            }
            self.pending_checks.push((cond, raise, site));
            return;
        }
        self.branch_to_raise(cond, raise, site);
    }

    fn branch_to_raise(&mut self, cond: Value, raise: RtFn, site: Site) {
        let fail = match self.decls.tier {
            Tier::Quick => self.shared_raise(raise, site.on_error),
            Tier::Optimized => {
                let error = self.error_block(site);
                let fail = self.builder.create_block();
                self.builder.set_cold_block(fail);
                self.pending.push(Pending::Raise {
                    block: fail,
                    raise,
                    then: error,
                });
                fail
            }
        };
        self.branch_to_error(cond, fail, site);
    }

    /// Whether an instruction may come between an arithmetic check and its
    /// branch (quick tier): integer arithmetic and other instructions
    /// without effects, into a register only this block sees, with the
    /// handler of the checks already noted. Such an instruction computes a
    /// value no one can observe if a noted check failed: its register is dead on the
    /// error edge, and it neither traps nor touches memory (a division
    /// branches on its own checks before it divides).
    fn defers_checks(&self, kind: &InstKind, site: Option<Site>) -> bool {
        if self.pending_checks.is_empty() {
            return true;
        }
        let local = |var: &ir::Var| self.local[var.0 as usize];
        let same_handler = site.is_none_or(|site| {
            self.pending_checks
                .first()
                .is_none_or(|(_, _, first)| first.on_error == site.on_error)
        });
        match kind {
            InstKind::IntArith { dst, .. } | InstKind::IntNeg { dst, .. } => {
                local(dst) && same_handler
            }
            _ => pure_dst(kind).is_some_and(local),
        }
    }

    /// Branches on the noted arithmetic checks (quick tier): one branch for
    /// all of them, to the raise of the first that failed in program order
    /// (its raise function and span chosen with `select`s), so that
    /// `total += k * 3` or `x / (n - 3)` cost one CLIF block instead of two
    /// or three.
    fn flush_checks(&mut self) {
        if self.pending_checks.is_empty() {
            return;
        }
        let checks = std::mem::take(&mut self.pending_checks);
        if let [(cond, raise, site)] = checks[..] {
            self.branch_to_raise(cond, raise, site);
            return;
        }
        let (last_cond, last_raise, last_site) = *checks.last().expect("two checks or more");
        let same_raise = checks.iter().all(|&(_, raise, _)| raise == last_raise);
        let mut failed = last_cond;
        let mut span = self.builder.ins().iconst(types::I64, pack_span(last_site));
        let mut raise = (!same_raise).then(|| {
            self.builder
                .ins()
                .iconst(pointer_type(), last_raise.pointer().address() as i64)
        });
        // While every later check has the same span (or raise), the chain
        // is that constant and a check with the same one needs no `select`.
        let mut uniform_span = Some(pack_span(last_site));
        let mut uniform_raise = Some(last_raise);
        for &(cond, check_raise, site) in checks[..checks.len() - 1].iter().rev() {
            failed = self.builder.ins().bor(cond, failed);
            if uniform_span != Some(pack_span(site)) {
                let here = self.builder.ins().iconst(types::I64, pack_span(site));
                span = self.builder.ins().select(cond, here, span);
                uniform_span = None;
            }
            if let Some(chosen) = raise
                && uniform_raise != Some(check_raise)
            {
                let address = self
                    .builder
                    .ins()
                    .iconst(pointer_type(), check_raise.pointer().address() as i64);
                raise = Some(self.builder.ins().select(cond, address, chosen));
                uniform_raise = None;
            }
        }
        let next = self.builder.create_block();
        if let Some(raise) = raise {
            let fail = self.shared_raise_any(last_site.on_error);
            self.builder.ins().brif(
                failed,
                fail,
                &[BlockArg::Value(span), BlockArg::Value(raise)],
                next,
                &[],
            );
        } else {
            let fail = self.shared_raise(last_raise, last_site.on_error);
            self.builder
                .ins()
                .brif(failed, fail, &[BlockArg::Value(span)], next, &[]);
        }
        self.builder.seal_block(next);
        self.builder.switch_to_block(next);
    }

    fn shared_raise_any(&mut self, on_error: BlockId) -> Block {
        if let Some(&block) = self.shared_raise_any.get(&on_error) {
            return block;
        }
        let then = self.shared_locate(on_error);
        let block = self.builder.create_block();
        self.builder.set_cold_block(block);
        self.builder.append_block_param(block, types::I64);
        self.builder.append_block_param(block, pointer_type());
        self.pending.push(Pending::SharedRaiseAny { block, then });
        self.shared_raise_any.insert(on_error, block);
        block
    }

    fn emit_pending(&mut self) {
        while let Some(pending) = self.pending.pop() {
            match pending {
                Pending::Locate { block, site } => {
                    self.builder.seal_block(block);
                    self.builder.switch_to_block(block);
                    let start = self
                        .builder
                        .ins()
                        .iconst(types::I64, site.span.start as i64);
                    let end = self.builder.ins().iconst(types::I64, site.span.end as i64);
                    self.call_rt(RtFn::Locate, &[start, end]);
                    let target = self.blocks[site.on_error.0 as usize];
                    self.builder.ins().jump(target, &[]);
                }
                Pending::Raise { block, raise, then } => {
                    self.builder.seal_block(block);
                    self.builder.switch_to_block(block);
                    self.call_rt(raise, &[]);
                    self.builder.ins().jump(then, &[]);
                }
                Pending::SharedLocate { block, on_error } => {
                    self.builder.switch_to_block(block);
                    let span = self.builder.block_params(block)[0];
                    let start = self.builder.ins().ushr_imm_u(span, 32);
                    let end = self.builder.ins().band_imm_u(span, 0xffff_ffff);
                    self.call_rt(RtFn::Locate, &[start, end]);
                    let target = self.blocks[on_error.0 as usize];
                    self.builder.ins().jump(target, &[]);
                }
                Pending::SharedRaise { block, raise, then } => {
                    self.builder.switch_to_block(block);
                    let span = self.builder.block_params(block)[0];
                    self.call_rt(raise, &[]);
                    self.builder.ins().jump(then, &[BlockArg::Value(span)]);
                }
                Pending::SharedRaiseAny { block, then } => {
                    self.builder.switch_to_block(block);
                    let (span, raise) = (
                        self.builder.block_params(block)[0],
                        self.builder.block_params(block)[1],
                    );
                    let sig = self.runtime_sig(0);
                    self.builder.ins().call_indirect(sig, raise, &[self.ctx]);
                    self.builder.ins().jump(then, &[BlockArg::Value(span)]);
                }
            }
        }
    }

    fn operand_bits(&mut self, var: ir::Var, repr: Repr) -> Value {
        let value = self.var(var);
        to_bits(&mut self.builder, value, repr)
    }

    fn inst(&mut self, kind: &InstKind, site: Option<Site>) {
        match kind {
            InstKind::Const { dst, value } => {
                let v = match value {
                    Const::Int(i) => self.builder.ins().iconst(types::I64, *i),
                    Const::Float(x) => self.builder.ins().f64const(*x),
                    Const::Bool(b) => self.builder.ins().iconst(types::I8, *b as i64),
                    Const::Null => self.builder.ins().iconst(types::I64, 0),
                };
                self.set(*dst, v);
            }
            InstKind::Copy { dst, src } => {
                let v = self.var(*src);
                self.set(*dst, v);
            }
            InstKind::IntArith { op, dst, lhs, rhs } => {
                let (a, b) = (self.var(*lhs), self.var(*rhs));
                let result = match op {
                    IntOp::Add | IntOp::Sub | IntOp::Mul
                        if self.cannot_overflow(*op, *lhs, *rhs) =>
                    {
                        match op {
                            IntOp::Add => self.builder.ins().iadd(a, b),
                            IntOp::Sub => self.builder.ins().isub(a, b),
                            _ => self.builder.ins().imul(a, b),
                        }
                    }
                    IntOp::Add | IntOp::Sub | IntOp::Mul => {
                        let (value, overflow) = match op {
                            IntOp::Add => self.builder.ins().sadd_overflow(a, b),
                            IntOp::Sub => self.builder.ins().ssub_overflow(a, b),
                            _ => self.builder.ins().smul_overflow(a, b),
                        };
                        self.fail_if(overflow, RtFn::RaiseOverflow, site);
                        value
                    }
                    IntOp::Div | IntOp::Rem => {
                        let zero = self.builder.ins().icmp_imm_s(IntCC::Equal, b, 0);
                        self.fail_if(zero, RtFn::RaiseDivisionByZero, site);
                        let minus_one = self.builder.ins().icmp_imm_s(IntCC::Equal, b, -1);
                        if *op == IntOp::Div {
                            let min = self.builder.ins().icmp_imm_s(IntCC::Equal, a, i64::MIN);
                            let overflow = self.builder.ins().band(min, minus_one);
                            self.fail_if(overflow, RtFn::RaiseOverflow, site);
                            // The hardware traps on a zero divisor: the
                            // checks branch before the division.
                            self.flush_checks();
                            self.builder.ins().sdiv(a, b)
                        } else {
                            // `x % -1` is 0; dividing by 1 instead avoids the
                            // hardware trap on `i64::MIN % -1`.
                            let one = self.builder.ins().iconst(types::I64, 1);
                            let divisor = self.builder.ins().select(minus_one, one, b);
                            self.flush_checks();
                            self.builder.ins().srem(a, divisor)
                        }
                    }
                };
                self.set(*dst, result);
            }
            InstKind::IntNeg { dst, src } => {
                if let Some(negated) = self.constants.get(src).and_then(|c| c.checked_neg()) {
                    let result = self.builder.ins().iconst(types::I64, negated);
                    self.set(*dst, result);
                    return;
                }
                let v = self.var(*src);
                let min = self.builder.ins().icmp_imm_s(IntCC::Equal, v, i64::MIN);
                self.fail_if(min, RtFn::RaiseOverflow, site);
                let result = self.builder.ins().ineg(v);
                self.set(*dst, result);
            }
            InstKind::FloatArith { op, dst, lhs, rhs } => {
                let (a, b) = (self.var(*lhs), self.var(*rhs));
                let result = match op {
                    FloatOp::Add => self.builder.ins().fadd(a, b),
                    FloatOp::Sub => self.builder.ins().fsub(a, b),
                    FloatOp::Mul => self.builder.ins().fmul(a, b),
                    FloatOp::Div => self.builder.ins().fdiv(a, b),
                };
                self.set(*dst, result);
            }
            InstKind::FloatNeg { dst, src } => {
                let v = self.var(*src);
                let result = self.builder.ins().fneg(v);
                self.set(*dst, result);
            }
            InstKind::Cmp {
                op,
                repr,
                dst,
                lhs,
                rhs,
            } => {
                let (a, b) = (self.var(*lhs), self.var(*rhs));
                let result = if *repr == Repr::Float {
                    let cc = match op {
                        CmpOp::Eq => FloatCC::Equal,
                        CmpOp::Ne => FloatCC::NotEqual,
                        CmpOp::Lt => FloatCC::LessThan,
                        CmpOp::Le => FloatCC::LessThanOrEqual,
                        CmpOp::Gt => FloatCC::GreaterThan,
                        CmpOp::Ge => FloatCC::GreaterThanOrEqual,
                    };
                    self.builder.ins().fcmp(cc, a, b)
                } else {
                    let cc = match op {
                        CmpOp::Eq => IntCC::Equal,
                        CmpOp::Ne => IntCC::NotEqual,
                        CmpOp::Lt => IntCC::SignedLessThan,
                        CmpOp::Le => IntCC::SignedLessThanOrEqual,
                        CmpOp::Gt => IntCC::SignedGreaterThan,
                        CmpOp::Ge => IntCC::SignedGreaterThanOrEqual,
                    };
                    self.builder.ins().icmp(cc, a, b)
                };
                self.set(*dst, result);
            }
            InstKind::Not { dst, src } => {
                let v = self.var(*src);
                let result = self.builder.ins().icmp_imm_s(IntCC::Equal, v, 0);
                self.set(*dst, result);
            }
            InstKind::IsNull { dst, src } => {
                let v = self.var(*src);
                let result = self.builder.ins().icmp_imm_s(IntCC::Equal, v, 0);
                self.set(*dst, result);
            }
            InstKind::IntToFloat { dst, src } => {
                let v = self.var(*src);
                let result = self.builder.ins().fcvt_from_sint(types::F64, v);
                self.set(*dst, result);
            }
            InstKind::LoadSlot { dst, slot } => {
                let (base, offset) = self.slot_addr(*slot);
                let v = self.builder.ins().load(types::I64, flags(), base, offset);
                self.set(*dst, v);
            }
            InstKind::StoreSlot { slot, src, owned } => {
                let v = self.var(*src);
                if !owned {
                    self.call_rt(RtFn::Retain, &[v]);
                }
                self.store_slot(*slot, v);
            }
            InstKind::Retain { src } => {
                let v = self.var(*src);
                self.call_rt(RtFn::Retain, &[v]);
            }
            InstKind::Call { dst, func, args } => {
                let index = func.0 as usize;
                let callee = match self.function_refs[index] {
                    Some(r) => r,
                    None => {
                        let (id, sig) = &self.decls.functions[index];
                        let r = self.decls.import(self.builder.func, *id, sig);
                        self.function_refs[index] = Some(r);
                        r
                    }
                };
                let depth = self
                    .callee_depth
                    .expect("a function with calls computes its callees' depth");
                let mut values = vec![self.ctx, depth];
                for arg in args {
                    values.push(self.var(*arg));
                }
                let call = self.builder.ins().call(callee, &values);
                if let Some(dst) = dst {
                    let result = self.builder.inst_results(call)[0];
                    self.set(*dst, result);
                }
                self.check_status(site);
            }
            InstKind::Rt { dst, func, args } => {
                let mut values = Vec::with_capacity(args.len() + 1);
                for arg in args {
                    match arg {
                        Operand::Var(v) => {
                            let repr = self.repr_of_var(*v);
                            let bits = self.operand_bits(*v, repr);
                            values.push(bits);
                        }
                        Operand::Imm(i) => values.push(self.builder.ins().iconst(types::I64, *i)),
                        Operand::Argv(vars) => {
                            if vars.is_empty() {
                                let zero = self.builder.ins().iconst(types::I64, 0);
                                values.push(zero);
                                values.push(zero);
                            } else {
                                let row = self.builder.create_sized_stack_slot(StackSlotData::new(
                                    StackSlotKind::ExplicitSlot,
                                    vars.len() as u32 * 8,
                                    3,
                                ));
                                for (i, v) in vars.iter().enumerate() {
                                    let repr = self.repr_of_var(*v);
                                    let bits = self.operand_bits(*v, repr);
                                    self.builder.ins().stack_store(
                                        pointer_type(),
                                        bits,
                                        row,
                                        (i * 8) as i32,
                                    );
                                }
                                let addr = self.builder.ins().stack_addr(pointer_type(), row, 0);
                                let n = self.builder.ins().iconst(types::I64, vars.len() as i64);
                                values.push(addr);
                                values.push(n);
                            }
                        }
                    }
                }
                let result = self.call_rt(*func, &values);
                if let Some(dst) = dst {
                    let repr = self.repr_of_var(*dst);
                    let value = from_bits(&mut self.builder, result, repr);
                    self.set(*dst, value);
                }
                if func.can_fail() {
                    match site {
                        Some(site) if self.joining_run => self.run.push((result, site)),
                        _ => self.check_status(site),
                    }
                }
            }
            InstKind::Enter => self.limit_check(true, site),
            InstKind::Poll => self.limit_check(false, site),
            InstKind::TakeError { slot, ty } => {
                let ty = self.builder.ins().iconst(types::I64, ty.0 as i64);
                let record = self.call_rt(RtFn::TakeError, &[ty]);
                self.store_slot(*slot, record);
            }
        }
    }

    /// Stores a new reference into a slot, releasing the slot's old value
    /// unless the slot is known to hold null there.
    fn store_slot(&mut self, slot: ir::SlotId, value: Value) {
        let (base, offset) = self.slot_addr(slot);
        if self.fresh_slots[slot.0 as usize] {
            self.builder.ins().store(flags(), value, base, offset);
            return;
        }
        let old = self.builder.ins().load(types::I64, flags(), base, offset);
        self.builder.ins().store(flags(), value, base, offset);
        self.release_if_set(old);
    }

    fn release_if_set(&mut self, old: Value) {
        if self.decls.tier == Tier::Quick {
            // `rt_release` ignores null: two blocks fewer to compile.
            self.call_rt(RtFn::Release, &[old]);
            return;
        }
        let release = self.builder.create_block();
        let next = self.builder.create_block();
        self.builder.ins().brif(old, release, &[], next, &[]);
        self.builder.seal_block(release);
        self.builder.switch_to_block(release);
        self.call_rt(RtFn::Release, &[old]);
        self.builder.ins().jump(next, &[]);
        self.builder.seal_block(next);
        self.builder.switch_to_block(next);
    }

    /// Whether `lhs op rhs` is known not to overflow: `rhs` is a constant
    /// and either cannot overflow whatever `lhs` is (adding or subtracting
    /// 0, multiplying by 0 or 1), or `lhs` has a range here (from the
    /// comparison that led to this block) that the constant keeps within
    /// `i64` (so `n - 1` after `if n < 2 { return ...; }` and `k + 1` in
    /// the body of `for k in 0..n` need no check).
    fn cannot_overflow(&self, op: IntOp, lhs: ir::Var, rhs: ir::Var) -> bool {
        let Some(&constant) = self.constants.get(&rhs) else {
            return false;
        };
        match (op, constant) {
            (IntOp::Add | IntOp::Sub, 0) | (IntOp::Mul, 0 | 1) => return true,
            (IntOp::Add | IntOp::Sub, _) => {}
            _ => return false,
        }
        let Some((bounded, min, max)) = self.bound else {
            return false;
        };
        if bounded != lhs {
            return false;
        }
        let (low, high) = if op == IntOp::Add {
            (min.checked_add(constant), max.checked_add(constant))
        } else {
            (min.checked_sub(constant), max.checked_sub(constant))
        };
        low.is_some() && high.is_some()
    }

    fn repr_of_var(&self, var: ir::Var) -> Repr {
        self.var_reprs[var.0 as usize]
    }

    /// The inline check at function entries (`enter`) and loop heads: one
    /// decrement of the run's fuel compared with the budget's floor (fuel,
    /// and the deadline the ticker folds into the floor), and at entries the
    /// hidden depth argument and the stack pointer against the stack budget.
    /// The runtime is only called when one trips.
    ///
    /// In the optimized tier the fuel itself is in the pinned register,
    /// never in memory, while generated code runs: the entry trampoline
    /// loads it from the budget and stores it back, and so does the slow
    /// path around its call into the runtime (the only runtime code that
    /// reads or refills it). A counter in memory made every entry and loop
    /// head wait for the store of the one before (store-to-load
    /// forwarding); in fib that chain was about a tenth of the run time.
    /// The quick tier decrements the budget's counter in memory (see
    /// [`fuel_in_register`]).
    fn limit_check(&mut self, enter: bool, site: Option<Site>) {
        // The context's budget pointer and stack limit never change while a
        // run goes on, and the context pointer is valid throughout: read-only
        // loads the optimizer may share and move.
        let fixed = flags().with_readonly().with_can_move();
        let budget = self
            .builder
            .ins()
            .load(pointer_type(), fixed, self.ctx, CTX_OFFSETS.budget);
        let pinned = fuel_in_register(self.decls.tier);
        let fuel = if pinned {
            self.builder.ins().get_pinned_reg(types::I64)
        } else {
            self.builder
                .ins()
                .load(types::I64, flags(), budget, BUDGET_FUEL)
        };
        let fuel = self.builder.ins().iadd_imm_s(fuel, -1);
        if pinned {
            self.builder.ins().set_pinned_reg(fuel);
        } else {
            self.builder.ins().store(flags(), fuel, budget, BUDGET_FUEL);
        }
        // The ticker raises the floor at the deadline: a plain load each
        // time (never shared or hoisted), which the compare can fold in.
        let floor = self
            .builder
            .ins()
            .load(types::I64, flags(), budget, BUDGET_FLOOR);
        let out_of_budget = self.builder.ins().icmp(IntCC::SignedLessThan, fuel, floor);
        let slow = self.builder.create_block();
        self.builder.set_cold_block(slow);
        let next = self.builder.create_block();
        if !enter {
            self.builder.ins().brif(out_of_budget, slow, &[], next, &[]);
        } else if self.decls.tier == Tier::Quick {
            // One branch on the three conditions: fewer blocks to compile.
            let too_deep = self
                .builder
                .ins()
                .icmp_imm_s(IntCC::Equal, self.depth_left, 0);
            let low = self.stack_low(fixed);
            let tripped = self.builder.ins().bor(too_deep, low);
            let cond = self.builder.ins().bor(out_of_budget, tripped);
            self.builder.ins().brif(cond, slow, &[], next, &[]);
        } else {
            // One compare-and-branch per condition: cheaper to run than
            // combining the flags (no setcc/or chain on the hot path).
            let depth_ok = self.builder.create_block();
            self.builder
                .ins()
                .brif(out_of_budget, slow, &[], depth_ok, &[]);
            self.builder.seal_block(depth_ok);
            self.builder.switch_to_block(depth_ok);
            let too_deep = self
                .builder
                .ins()
                .icmp_imm_s(IntCC::Equal, self.depth_left, 0);
            let stack_ok = self.builder.create_block();
            self.builder.ins().brif(too_deep, slow, &[], stack_ok, &[]);
            self.builder.seal_block(stack_ok);
            self.builder.switch_to_block(stack_ok);
            let low = self.stack_low(fixed);
            self.builder.ins().brif(low, slow, &[], next, &[]);
        }
        self.builder.seal_block(slow);
        self.builder.switch_to_block(slow);
        // The runtime reads the fuel from the budget and may refill it.
        if pinned {
            self.builder.ins().store(flags(), fuel, budget, BUDGET_FUEL);
        }
        if enter {
            let depth = self.depth_left;
            self.call_rt(RtFn::EnterSlow, &[depth]);
        } else {
            self.call_rt(RtFn::PollSlow, &[]);
        }
        if pinned {
            let fuel = self
                .builder
                .ins()
                .load(types::I64, flags(), budget, BUDGET_FUEL);
            self.builder.ins().set_pinned_reg(fuel);
        }
        // A limit error goes to the error edge, otherwise on to `next`
        // through a cold block of its own: `next` then has one edge from the
        // hot path and one from cold code, and the edge cranelift splits for
        // the slow path is laid out with the cold code, not on the hot path.
        if let Some(site) = site
            && self.decls.tier == Tier::Quick
        {
            // The quick tier straight back to `next`: one block fewer.
            let status = self.ctx_load(CTX_OFFSETS.status);
            let error = self.error_edge(site);
            self.branch_to_error_then(status, error, site, next);
        } else if let Some(site) = site {
            let status = self.ctx_load(CTX_OFFSETS.status);
            let error = self.error_edge(site);
            let resume = self.builder.create_block();
            self.builder.set_cold_block(resume);
            self.branch_to_error_then(status, error, site, resume);
            self.builder.seal_block(resume);
            self.builder.switch_to_block(resume);
            self.builder.ins().jump(next, &[]);
        } else {
            self.builder.ins().jump(next, &[]);
        }
        self.builder.seal_block(next);
        self.builder.switch_to_block(next);
    }

    /// Whether the stack pointer is below the run's stack budget.
    fn stack_low(&mut self, fixed: MemFlagsData) -> Value {
        let sp = self.builder.ins().get_stack_pointer(pointer_type());
        let stack_limit =
            self.builder
                .ins()
                .load(types::I64, fixed, self.ctx, CTX_OFFSETS.stack_limit);
        self.builder
            .ins()
            .icmp(IntCC::UnsignedLessThan, sp, stack_limit)
    }

    /// Releases every slot before the frame is left.
    fn leave(&mut self) {
        if let Some(base) = self.slot_base {
            let n = self
                .builder
                .ins()
                .iconst(types::I64, self.slot_count as i64);
            self.call_rt(RtFn::ReleaseSlots, &[base, n]);
        }
    }

    fn return_error(&mut self) {
        self.leave();
        match self.ret {
            Some(repr) => {
                let zero = self.zero(repr);
                self.builder.ins().return_(&[zero]);
            }
            None => {
                self.builder.ins().return_(&[]);
            }
        }
    }

    fn terminator(&mut self, term: &Terminator) {
        let block = |this: &Self, b: BlockId| this.blocks[b.0 as usize];
        match term {
            Terminator::Jump(target) => {
                let target = block(self, *target);
                self.builder.ins().jump(target, &[]);
            }
            Terminator::Branch {
                cond,
                then_block,
                else_block,
            } => {
                let c = self.var(*cond);
                let (t, e) = (block(self, *then_block), block(self, *else_block));
                self.builder.ins().brif(c, t, &[], e, &[]);
            }
            Terminator::Return(value) => {
                let value = value.map(|v| self.var(v));
                self.leave();
                match value {
                    Some(v) => self.builder.ins().return_(&[v]),
                    None => self.builder.ins().return_(&[]),
                };
            }
            Terminator::ReturnError => self.return_error(),
            Terminator::IfCatchable {
                catch_block,
                propagate,
            } => {
                let status = self.ctx_load(CTX_OFFSETS.status);
                let catchable =
                    self.builder
                        .ins()
                        .icmp_imm_s(IntCC::Equal, status, STATUS_ERROR as i64);
                let (c, p) = (block(self, *catch_block), block(self, *propagate));
                self.builder.ins().brif(catchable, c, &[], p, &[]);
            }
            Terminator::Unreachable => {
                self.call_rt(RtFn::RaiseUnreachable, &[]);
                self.return_error();
            }
        }
    }
}

/// The register of an instruction that neither traps, nor touches memory,
/// nor has any other effect (constants, copies, float arithmetic,
/// comparisons, `!`, null tests, int-to-float): what may sit inside a run of
/// calls or between an arithmetic check and its branch.
fn pure_dst(kind: &InstKind) -> Option<&ir::Var> {
    match kind {
        InstKind::Const { dst, .. }
        | InstKind::Copy { dst, .. }
        | InstKind::FloatArith { dst, .. }
        | InstKind::FloatNeg { dst, .. }
        | InstKind::Cmp { dst, .. }
        | InstKind::Not { dst, .. }
        | InstKind::IsNull { dst, .. }
        | InstKind::IntToFloat { dst, .. } => Some(dst),
        _ => None,
    }
}
