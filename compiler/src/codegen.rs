//! IR → native code with cranelift: the [`Compiled`](crate::Compiled) stage.
//!
//! A straight translation of [`ir`](crate::ir): IR registers become
//! cranelift variables, the slot frame one explicit stack slot, runtime
//! functions imported symbols (all `(ctx, i64...) -> i64`). Per fallible
//! instruction the code loads the context's status and branches to a cold
//! block that records the source location and jumps to the error edge, so the
//! fast path pays one load and one predictable branch.
//!
//! Each script function `f` also gets an entry trampoline
//! `extern "C" fn(ctx, argv: *const i64, ret: *mut i64)` that unpacks the
//! arguments, calls `f` and stores its result as bits. That uniform
//! signature is what lets [`exec`](crate::exec) call any function through one
//! `unsafe` door, whatever its parameter types.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    AbiParam, Block, FuncRef, InstBuilder, MemFlagsData, Signature, StackSlotData, StackSlotKind,
    UserFuncName, Value, types,
};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::{Context, isa};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module as _, default_libcall_names};

use crate::ir::{
    self, BlockId, CmpOp, Const, FloatOp, InstKind, IntOp, Operand, Repr, Site, Terminator,
};
use crate::runtime::{CTX_OFFSETS, RtFn, STATUS_ERROR};

/// Native code for every function of a lowered module.
pub(crate) struct NativeCode {
    /// Owns the executable memory; freed when the code is dropped.
    module: Option<JITModule>,
    /// The entry trampoline of each function, by `FuncIndex`.
    pub(crate) entries: Vec<*const u8>,
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
    /// register allocator. About a third of the optimized compile time;
    /// the code runs up to about 2x slower.
    Quick,
    /// `opt_level=speed` and the backtracking register allocator; compiled
    /// in the background once a script has run long enough in quick code.
    Optimized,
}

/// Compiles a lowered module to native code.
pub(crate) fn compile(module: &ir::Module, tier: Tier) -> Result<NativeCode, String> {
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
    flag_builder
        .set("use_colocated_libcalls", "false")
        .map_err(|e| e.to_string())?;
    flag_builder
        .set("is_pic", "false")
        .map_err(|e| e.to_string())?;
    let isa_builder = cranelift_native::builder().map_err(|e| format!("unsupported host: {e}"))?;
    let isa: isa::OwnedTargetIsa = isa_builder
        .finish(settings::Flags::new(flag_builder))
        .map_err(|e| e.to_string())?;
    let mut builder = JITBuilder::with_isa(isa, default_libcall_names());
    for &func in RtFn::ALL {
        builder.symbol(format!("scl_rt_{}", func.name()), func.pointer().address());
    }
    let mut jit = JITModule::new(builder);

    let mut runtime_ids = Vec::with_capacity(RtFn::ALL.len());
    for &func in RtFn::ALL {
        let mut sig = jit.make_signature();
        sig.params.push(AbiParam::new(pointer_type()));
        for _ in 0..func.arity() {
            sig.params.push(AbiParam::new(types::I64));
        }
        sig.returns.push(AbiParam::new(types::I64));
        let id = jit
            .declare_function(&format!("scl_rt_{}", func.name()), Linkage::Import, &sig)
            .map_err(|e| e.to_string())?;
        runtime_ids.push(id);
    }

    let mut function_ids = Vec::with_capacity(module.functions.len());
    for (index, function) in module.functions.iter().enumerate() {
        let sig = function_signature(&jit, function);
        let id = jit
            .declare_function(
                &format!("scl_{index}_{}", function.name),
                Linkage::Local,
                &sig,
            )
            .map_err(|e| e.to_string())?;
        function_ids.push(id);
    }
    let mut entry_ids = Vec::with_capacity(module.functions.len());
    for (index, function) in module.functions.iter().enumerate() {
        let mut sig = jit.make_signature();
        for _ in 0..3 {
            sig.params.push(AbiParam::new(pointer_type()));
        }
        let id = jit
            .declare_function(
                &format!("scl_entry_{index}_{}", function.name),
                Linkage::Local,
                &sig,
            )
            .map_err(|e| e.to_string())?;
        entry_ids.push(id);
    }

    let mut ctx = jit.make_context();
    let mut builder_ctx = FunctionBuilderContext::new();
    for (index, function) in module.functions.iter().enumerate() {
        ctx.func.signature = function_signature(&jit, function);
        ctx.func.name = UserFuncName::user(0, index as u32);
        {
            let ids = Ids {
                runtime: &runtime_ids,
                functions: &function_ids,
            };
            let builder = FunctionBuilder::new(&mut ctx.func, &mut builder_ctx);
            let mut translator = Translator::new(builder, &mut jit, ids, function);
            translator.translate(function);
            translator.builder.seal_all_blocks();
            let config = translator.jit.target_config();
            translator.builder.finalize(config);
        }
        define(&mut jit, function_ids[index], &mut ctx, &function.name)?;

        ctx.func.signature = {
            let mut sig = jit.make_signature();
            for _ in 0..3 {
                sig.params.push(AbiParam::new(pointer_type()));
            }
            sig
        };
        ctx.func.name = UserFuncName::user(1, index as u32);
        {
            let builder = FunctionBuilder::new(&mut ctx.func, &mut builder_ctx);
            build_entry(builder, &mut jit, function_ids[index], function);
        }
        define(&mut jit, entry_ids[index], &mut ctx, &function.name)?;
    }
    jit.finalize_definitions().map_err(|e| e.to_string())?;
    let entries = entry_ids
        .iter()
        .map(|&id| jit.get_finalized_function(id))
        .collect();
    Ok(NativeCode {
        module: Some(jit),
        entries,
    })
}

fn define(jit: &mut JITModule, id: FuncId, ctx: &mut Context, name: &str) -> Result<(), String> {
    let result = jit
        .define_function(id, ctx)
        .map_err(|e| format!("cranelift failed on `{name}`: {e:?}"));
    jit.clear_context(ctx);
    result
}

fn function_signature(jit: &JITModule, function: &ir::Function) -> Signature {
    let mut sig = jit.make_signature();
    sig.params.push(AbiParam::new(pointer_type()));
    // The hidden `depth_left`: how many more nested calls the run allows.
    sig.params.push(AbiParam::new(types::I64));
    for param in &function.params {
        sig.params
            .push(AbiParam::new(cl_type(function.vars[param.0 as usize])));
    }
    if let Some(ret) = function.ret {
        sig.returns.push(AbiParam::new(cl_type(ret)));
    }
    sig
}

fn build_entry(
    mut builder: FunctionBuilder<'_>,
    jit: &mut JITModule,
    callee: FuncId,
    function: &ir::Function,
) {
    let block = builder.create_block();
    builder.append_block_params_for_function_params(block);
    builder.switch_to_block(block);
    builder.seal_block(block);
    let params = builder.block_params(block).to_vec();
    let (ctx, argv, ret) = (params[0], params[1], params[2]);
    let depth = builder
        .ins()
        .load(types::I64, flags(), ctx, CTX_OFFSETS.max_depth);
    let mut args = vec![ctx, depth];
    for (i, param) in function.params.iter().enumerate() {
        let bits = builder
            .ins()
            .load(types::I64, flags(), argv, (i * 8) as i32);
        args.push(from_bits(
            &mut builder,
            bits,
            function.vars[param.0 as usize],
        ));
    }
    let callee = jit.declare_func_in_func(callee, builder.func);
    let call = builder.ins().call(callee, &args);
    if let Some(repr) = function.ret {
        let result = builder.inst_results(call)[0];
        let bits = to_bits(&mut builder, result, repr);
        builder.ins().store(flags(), bits, ret, 0);
    }
    builder.ins().return_(&[]);
    builder.finalize(jit.target_config());
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

struct Ids<'a> {
    runtime: &'a [FuncId],
    functions: &'a [FuncId],
}

/// Cold blocks made while translating a block, emitted after it.
enum Pending {
    Locate {
        block: Block,
        site: Site,
    },
    Raise {
        block: Block,
        raise: RtFn,
        then: Block,
    },
}

struct Translator<'a, 'b> {
    pending: Vec<Pending>,
    builder: FunctionBuilder<'b>,
    jit: &'a mut JITModule,
    ids: Ids<'a>,
    blocks: Vec<Block>,
    vars: Vec<Variable>,
    var_reprs: Vec<Repr>,
    runtime_refs: Vec<Option<FuncRef>>,
    function_refs: Vec<Option<FuncRef>>,
    ctx: Value,
    /// The hidden `depth_left` argument, and that minus one for callees.
    depth_left: Value,
    callee_depth: Option<Value>,
    slots: Option<cranelift_codegen::ir::StackSlot>,
    slot_count: u32,
    ret: Option<Repr>,
}

impl<'a, 'b> Translator<'a, 'b> {
    fn new(
        mut builder: FunctionBuilder<'b>,
        jit: &'a mut JITModule,
        ids: Ids<'a>,
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
                3,
            ))
        });
        let runtime_refs = vec![None; ids.runtime.len()];
        let function_refs = vec![None; ids.functions.len()];
        let placeholder = Value::from_u32(0);
        Translator {
            pending: Vec::new(),
            builder,
            jit,
            ids,
            blocks,
            vars,
            var_reprs: function.vars.clone(),
            runtime_refs,
            function_refs,
            ctx: placeholder,
            depth_left: placeholder,
            callee_depth: None,
            slots,
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
        for (index, &repr) in function.vars.iter().enumerate() {
            if function.params.iter().any(|p| p.0 as usize == index) {
                continue;
            }
            let zero = self.zero(repr);
            self.builder.def_var(self.vars[index], zero);
        }
        if let Some(slots) = self.slots {
            let zero = self.builder.ins().iconst(types::I64, 0);
            for i in 0..self.slot_count {
                self.builder
                    .ins()
                    .stack_store(pointer_type(), zero, slots, (i * 8) as i32);
            }
        }
        for (index, block) in function.blocks.iter().enumerate() {
            if index > 0 {
                self.builder.switch_to_block(self.blocks[index]);
            }
            for inst in &block.insts {
                self.inst(&inst.kind, inst.site);
            }
            self.terminator(&block.term);
        }
        self.emit_pending();
    }

    fn zero(&mut self, repr: Repr) -> Value {
        match repr {
            Repr::Int | Repr::Ptr => self.builder.ins().iconst(types::I64, 0),
            Repr::Bool => self.builder.ins().iconst(types::I8, 0),
            Repr::Float => self.builder.ins().f64const(0.0),
        }
    }

    fn var(&mut self, var: ir::Var) -> Value {
        self.builder.use_var(self.vars[var.0 as usize])
    }

    fn set(&mut self, var: ir::Var, value: Value) {
        self.builder.def_var(self.vars[var.0 as usize], value);
    }

    fn runtime_ref(&mut self, func: RtFn) -> FuncRef {
        let index = RtFn::ALL.iter().position(|&f| f == func).unwrap_or(0);
        if let Some(r) = self.runtime_refs[index] {
            return r;
        }
        let r = self
            .jit
            .declare_func_in_func(self.ids.runtime[index], self.builder.func);
        self.runtime_refs[index] = Some(r);
        r
    }

    fn call_rt(&mut self, func: RtFn, args: &[Value]) -> Value {
        let callee = self.runtime_ref(func);
        let mut all = Vec::with_capacity(args.len() + 1);
        all.push(self.ctx);
        all.extend_from_slice(args);
        let call = self.builder.ins().call(callee, &all);
        self.builder.inst_results(call)[0]
    }

    fn ctx_load(&mut self, offset: i32) -> Value {
        self.builder
            .ins()
            .load(types::I64, flags(), self.ctx, offset)
    }

    fn slot_addr(&mut self, slot: ir::SlotId) -> Value {
        let slots = self
            .slots
            .expect("a function that names a slot has a slot area");
        self.builder
            .ins()
            .stack_addr(pointer_type(), slots, (slot.0 * 8) as i32)
    }

    /// A cold block that records the location and jumps to the error edge
    /// (filled in by `emit_pending`, as cranelift wants one block at a time).
    fn error_block(&mut self, site: Site) -> Block {
        let block = self.builder.create_block();
        self.builder.set_cold_block(block);
        self.pending.push(Pending::Locate { block, site });
        block
    }

    /// After a call that may have failed: branch on the context's status.
    fn check_status(&mut self, site: Option<Site>) {
        let Some(site) = site else { return };
        let status = self.ctx_load(CTX_OFFSETS.status);
        let error = self.error_block(site);
        let next = self.builder.create_block();
        self.builder.ins().brif(status, error, &[], next, &[]);
        self.builder.switch_to_block(next);
    }

    /// Branches to a cold block calling `raise` (then the error edge) when `cond` holds.
    fn fail_if(&mut self, cond: Value, raise: RtFn, site: Option<Site>) {
        let Some(site) = site else { return };
        let error = self.error_block(site);
        let fail = self.builder.create_block();
        self.builder.set_cold_block(fail);
        self.pending.push(Pending::Raise {
            block: fail,
            raise,
            then: error,
        });
        let next = self.builder.create_block();
        self.builder.ins().brif(cond, fail, &[], next, &[]);
        self.builder.switch_to_block(next);
    }

    fn emit_pending(&mut self) {
        while let Some(pending) = self.pending.pop() {
            match pending {
                Pending::Locate { block, site } => {
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
                    self.builder.switch_to_block(block);
                    self.call_rt(raise, &[]);
                    self.builder.ins().jump(then, &[]);
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
                            self.builder.ins().sdiv(a, b)
                        } else {
                            // `x % -1` is 0; dividing by 1 instead avoids the
                            // hardware trap on `i64::MIN % -1`.
                            let one = self.builder.ins().iconst(types::I64, 1);
                            let divisor = self.builder.ins().select(minus_one, one, b);
                            self.builder.ins().srem(a, divisor)
                        }
                    }
                };
                self.set(*dst, result);
            }
            InstKind::IntNeg { dst, src } => {
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
                let addr = self.slot_addr(*slot);
                let v = self.builder.ins().load(types::I64, flags(), addr, 0);
                self.set(*dst, v);
            }
            InstKind::StoreSlot { slot, src, owned } => {
                let v = self.var(*src);
                if !owned {
                    self.call_rt(RtFn::Retain, &[v]);
                }
                let addr = self.slot_addr(*slot);
                let old = self.builder.ins().load(types::I64, flags(), addr, 0);
                self.builder.ins().store(flags(), v, addr, 0);
                self.release_if_set(old);
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
                        let r = self
                            .jit
                            .declare_func_in_func(self.ids.functions[index], self.builder.func);
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
                    self.check_status(site);
                }
            }
            InstKind::Enter => self.limit_check(true, site),
            InstKind::Poll => self.limit_check(false, site),
            InstKind::TakeError { slot, ty } => {
                let ty = self.builder.ins().iconst(types::I64, ty.0 as i64);
                let record = self.call_rt(RtFn::TakeError, &[ty]);
                let addr = self.slot_addr(*slot);
                let old = self.builder.ins().load(types::I64, flags(), addr, 0);
                self.builder.ins().store(flags(), record, addr, 0);
                self.release_if_set(old);
            }
        }
    }

    fn release_if_set(&mut self, old: Value) {
        let release = self.builder.create_block();
        let next = self.builder.create_block();
        self.builder.ins().brif(old, release, &[], next, &[]);
        self.builder.switch_to_block(release);
        self.call_rt(RtFn::Release, &[old]);
        self.builder.ins().jump(next, &[]);
        self.builder.switch_to_block(next);
    }

    fn repr_of_var(&self, var: ir::Var) -> Repr {
        self.var_reprs[var.0 as usize]
    }

    /// The inline check at function entries (`enter`) and loop heads: one
    /// decrement of the run's budget (fuel, and the deadline the ticker
    /// folds into it), and at entries the hidden depth argument and the
    /// stack pointer against the stack budget. The runtime is only called
    /// when one trips.
    fn limit_check(&mut self, enter: bool, site: Option<Site>) {
        // The context's budget pointer and stack limit never change while a
        // run goes on: read-only loads, which the optimizer may share.
        let fixed = flags().with_readonly();
        let budget = self
            .builder
            .ins()
            .load(pointer_type(), fixed, self.ctx, CTX_OFFSETS.budget);
        let fuel = self.builder.ins().load(types::I64, flags(), budget, 0);
        let fuel = self.builder.ins().iadd_imm_s(fuel, -1);
        self.builder.ins().store(flags(), fuel, budget, 0);
        let out_of_budget = self
            .builder
            .ins()
            .icmp_imm_s(IntCC::SignedLessThan, fuel, 0);
        let slow = self.builder.create_block();
        self.builder.set_cold_block(slow);
        let next = self.builder.create_block();
        // One compare-and-branch per condition: cheaper than combining
        // the flags into one (no setcc/or chain on the hot path).
        if enter {
            let depth_ok = self.builder.create_block();
            self.builder
                .ins()
                .brif(out_of_budget, slow, &[], depth_ok, &[]);
            self.builder.switch_to_block(depth_ok);
            let too_deep = self
                .builder
                .ins()
                .icmp_imm_s(IntCC::Equal, self.depth_left, 0);
            let stack_ok = self.builder.create_block();
            self.builder.ins().brif(too_deep, slow, &[], stack_ok, &[]);
            self.builder.switch_to_block(stack_ok);
            let sp = self.builder.ins().get_stack_pointer(pointer_type());
            let stack_limit =
                self.builder
                    .ins()
                    .load(types::I64, fixed, self.ctx, CTX_OFFSETS.stack_limit);
            let low = self
                .builder
                .ins()
                .icmp(IntCC::UnsignedLessThan, sp, stack_limit);
            self.builder.ins().brif(low, slow, &[], next, &[]);
        } else {
            self.builder.ins().brif(out_of_budget, slow, &[], next, &[]);
        }
        self.builder.switch_to_block(slow);
        if enter {
            let depth = self.depth_left;
            self.call_rt(RtFn::EnterSlow, &[depth]);
        } else {
            self.call_rt(RtFn::PollSlow, &[]);
        }
        self.check_status(site);
        self.builder.ins().jump(next, &[]);
        self.builder.switch_to_block(next);
    }

    /// Releases every slot before the frame is left.
    fn leave(&mut self) {
        if let Some(slots) = self.slots {
            let base = self.builder.ins().stack_addr(pointer_type(), slots, 0);
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
