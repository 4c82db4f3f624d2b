//! The reference evaluator: a plain interpreter over the IR.
//!
//! It gives every IR instruction the meaning `codegen` is meant to give it,
//! written the obvious way (Rust's checked arithmetic, a `Vec` per frame for
//! registers and slots), and calls the same runtime functions. Running a
//! program under both and comparing results, errors and logs checks the
//! code generator — which is what the cross-checking tests do. It is not
//! meant to be fast.

use std::sync::atomic::Ordering;

use crate::ir::{
    CmpOp, Const, FloatOp, FuncIndex, InstKind, IntOp, Module, Operand, Repr, Site, Terminator,
};
use crate::runtime::{ExecCtx, RtFn, STATUS_ERROR, STATUS_OK, release, retain, with_ctx};

/// Runs `func` with arguments given as bits; the result is bits (a `Ptr` is a new reference).
pub(crate) fn eval_function(
    module: &Module,
    func: FuncIndex,
    ctx: *mut ExecCtx<'_>,
    args: &[i64],
) -> i64 {
    let Some(function) = module.functions.get(func.0 as usize) else {
        return 0;
    };
    let mut regs = vec![0i64; function.vars.len()];
    let mut slots = vec![0i64; function.slots as usize];
    for (param, &bits) in function.params.iter().zip(args) {
        regs[param.0 as usize] = bits;
    }
    let status = |ctx: *mut ExecCtx<'_>| with_ctx(ctx, |c| c.status);
    let mut block = 0usize;
    'blocks: loop {
        let Some(current) = function.blocks.get(block) else {
            return 0;
        };
        for inst in &current.insts {
            let failed = step(module, &inst.kind, &mut regs, &mut slots, ctx);
            if let Some(site) = inst.site
                && (failed || status(ctx) != STATUS_OK)
            {
                block = on_error(ctx, site);
                continue 'blocks;
            }
        }
        match &current.term {
            Terminator::Jump(target) => block = target.0 as usize,
            Terminator::Branch {
                cond,
                then_block,
                else_block,
            } => {
                block = if regs[cond.0 as usize] & 1 != 0 {
                    then_block.0 as usize
                } else {
                    else_block.0 as usize
                };
            }
            Terminator::Return(value) => {
                let result = value.map_or(0, |v| regs[v.0 as usize]);
                leave(ctx, &slots);
                return result;
            }
            Terminator::ReturnError => {
                leave(ctx, &slots);
                return 0;
            }
            Terminator::IfCatchable {
                catch_block,
                propagate,
            } => {
                block = if status(ctx) == STATUS_ERROR {
                    catch_block.0 as usize
                } else {
                    propagate.0 as usize
                };
            }
            Terminator::Unreachable => {
                RtFn::RaiseUnreachable.pointer().call(ctx, &[]);
                leave(ctx, &slots);
                return 0;
            }
        }
    }
}

fn on_error(ctx: *mut ExecCtx<'_>, site: Site) -> usize {
    RtFn::Locate
        .pointer()
        .call(ctx, &[site.span.start as i64, site.span.end as i64]);
    site.on_error.0 as usize
}

fn leave(ctx: *mut ExecCtx<'_>, slots: &[i64]) {
    for &pointer in slots {
        release(pointer);
    }
    with_ctx(ctx, |c| c.depth = c.depth.wrapping_sub(1));
}

fn float(bits: i64) -> f64 {
    f64::from_bits(bits as u64)
}

fn float_bits(x: f64) -> i64 {
    x.to_bits() as i64
}

/// Executes one instruction; returns true when it failed by itself (checked
/// arithmetic), having raised the error in the context.
fn step(
    module: &Module,
    kind: &InstKind,
    regs: &mut [i64],
    slots: &mut [i64],
    ctx: *mut ExecCtx<'_>,
) -> bool {
    let raise = |func: RtFn| {
        func.pointer().call(ctx, &[]);
        true
    };
    match kind {
        InstKind::Const { dst, value } => {
            regs[dst.0 as usize] = match value {
                Const::Int(i) => *i,
                Const::Float(x) => float_bits(*x),
                Const::Bool(b) => *b as i64,
                Const::Null => 0,
            };
        }
        InstKind::Copy { dst, src } => regs[dst.0 as usize] = regs[src.0 as usize],
        InstKind::IntArith { op, dst, lhs, rhs } => {
            let (a, b) = (regs[lhs.0 as usize], regs[rhs.0 as usize]);
            let result = match op {
                IntOp::Add => a.checked_add(b),
                IntOp::Sub => a.checked_sub(b),
                IntOp::Mul => a.checked_mul(b),
                IntOp::Div | IntOp::Rem if b == 0 => return raise(RtFn::RaiseDivisionByZero),
                IntOp::Div => a.checked_div(b),
                IntOp::Rem => Some(if b == -1 { 0 } else { a % b }),
            };
            match result {
                Some(value) => regs[dst.0 as usize] = value,
                None => return raise(RtFn::RaiseOverflow),
            }
        }
        InstKind::IntNeg { dst, src } => match regs[src.0 as usize].checked_neg() {
            Some(value) => regs[dst.0 as usize] = value,
            None => return raise(RtFn::RaiseOverflow),
        },
        InstKind::FloatArith { op, dst, lhs, rhs } => {
            let (a, b) = (float(regs[lhs.0 as usize]), float(regs[rhs.0 as usize]));
            regs[dst.0 as usize] = float_bits(match op {
                FloatOp::Add => a + b,
                FloatOp::Sub => a - b,
                FloatOp::Mul => a * b,
                FloatOp::Div => a / b,
            });
        }
        InstKind::FloatNeg { dst, src } => {
            regs[dst.0 as usize] = float_bits(-float(regs[src.0 as usize]))
        }
        InstKind::Cmp {
            op,
            repr,
            dst,
            lhs,
            rhs,
        } => {
            let (a, b) = (regs[lhs.0 as usize], regs[rhs.0 as usize]);
            let result = if *repr == Repr::Float {
                let (a, b) = (float(a), float(b));
                match op {
                    CmpOp::Eq => a == b,
                    CmpOp::Ne => a != b,
                    CmpOp::Lt => a < b,
                    CmpOp::Le => a <= b,
                    CmpOp::Gt => a > b,
                    CmpOp::Ge => a >= b,
                }
            } else {
                match op {
                    CmpOp::Eq => a == b,
                    CmpOp::Ne => a != b,
                    CmpOp::Lt => a < b,
                    CmpOp::Le => a <= b,
                    CmpOp::Gt => a > b,
                    CmpOp::Ge => a >= b,
                }
            };
            regs[dst.0 as usize] = result as i64;
        }
        InstKind::Not { dst, src } => regs[dst.0 as usize] = (regs[src.0 as usize] == 0) as i64,
        InstKind::IsNull { dst, src } => regs[dst.0 as usize] = (regs[src.0 as usize] == 0) as i64,
        InstKind::IntToFloat { dst, src } => {
            regs[dst.0 as usize] = float_bits(regs[src.0 as usize] as f64)
        }
        InstKind::LoadSlot { dst, slot } => regs[dst.0 as usize] = slots[slot.0 as usize],
        InstKind::StoreSlot { slot, src, owned } => {
            let value = regs[src.0 as usize];
            if !owned {
                retain(value);
            }
            let old = std::mem::replace(&mut slots[slot.0 as usize], value);
            release(old);
        }
        InstKind::Retain { src } => retain(regs[src.0 as usize]),
        InstKind::Call { dst, func, args } => {
            let args: Vec<i64> = args.iter().map(|a| regs[a.0 as usize]).collect();
            let result = eval_function(module, *func, ctx, &args);
            if let Some(dst) = dst {
                regs[dst.0 as usize] = result;
            }
        }
        InstKind::Rt { dst, func, args } => {
            // Rows for `Argv` operands must stay alive during the call.
            let rows: Vec<Vec<i64>> = args
                .iter()
                .filter_map(|a| match a {
                    Operand::Argv(vars) => Some(vars.iter().map(|v| regs[v.0 as usize]).collect()),
                    _ => None,
                })
                .collect();
            let mut values = Vec::with_capacity(args.len() + 2);
            let mut next_row = rows.iter();
            for arg in args {
                match arg {
                    Operand::Var(v) => values.push(regs[v.0 as usize]),
                    Operand::Imm(i) => values.push(*i),
                    Operand::Argv(vars) => {
                        let row = next_row.next();
                        let pointer = match row {
                            Some(row) if !vars.is_empty() => row.as_ptr() as i64,
                            _ => 0,
                        };
                        values.push(pointer);
                        values.push(vars.len() as i64);
                    }
                }
            }
            let result = func.pointer().call(ctx, &values);
            if let Some(dst) = dst {
                // Booleans come back as 0 or 1; other results keep their bits.
                regs[dst.0 as usize] = result;
            }
        }
        InstKind::Enter => {
            let (trips, depth_left) = with_ctx(ctx, |c| {
                c.depth += 1;
                let depth_left = c.max_depth as i64 + 1 - c.depth as i64;
                let out_of_budget = spend_step(c);
                (
                    depth_left <= 0
                        || out_of_budget
                        || crate::runtime::stack_address() < c.stack_limit,
                    depth_left,
                )
            });
            if trips {
                RtFn::EnterSlow.pointer().call(ctx, &[depth_left]);
            }
        }
        InstKind::Poll => {
            if with_ctx(ctx, spend_step) {
                RtFn::PollSlow.pointer().call(ctx, &[]);
            }
        }
        InstKind::TakeError { slot, ty } => {
            let record = RtFn::TakeError.pointer().call(ctx, &[ty.0 as i64]);
            let old = std::mem::replace(&mut slots[slot.0 as usize], record);
            release(old);
        }
    }
    false
}

/// One step off the run's budget, as generated code does it; true when the
/// check trips (fuel used up, or the deadline's floor raised).
fn spend_step(ctx: &mut ExecCtx<'_>) -> bool {
    let budget = ctx.budget();
    let left = budget.fuel.load(Ordering::Relaxed).wrapping_sub(1);
    budget.fuel.store(left, Ordering::Relaxed);
    left < budget.floor.load(Ordering::Relaxed)
}
