//! Stage 3 output: our own IR, the [`Lowered`](crate::Lowered) program.
//!
//! A function is a control-flow graph of basic blocks over typed *virtual
//! registers* ([`Var`]) and *owned slots* ([`SlotId`]). It is deliberately
//! close to what cranelift wants, so the code generator is a straight
//! translation, and simple enough that [`eval`](crate::eval) can interpret it.
//!
//! Decisions (they are the contract between `lower`, `codegen` and `eval`):
//!
//! - **Four representations** ([`Repr`]): `int` is an `i64`, `float` an
//!   `f64`, `bool` an `i8` holding 0 or 1, and every other value (string,
//!   list, map, record, json, optional, host handle) is a pointer to a
//!   reference-counted runtime object (`Ptr`, null only for an optional that
//!   is `null`).
//! - **Ownership lives in slots.** Each function owns a frame of pointer-sized
//!   slots, all zero at entry. `StoreSlot` releases the slot's previous value;
//!   the `Return` and `ReturnError` terminators release every slot. A `Ptr`
//!   register is always a *borrowed* view of a value some slot (or a caller's
//!   slot, for parameters) keeps alive. Runtime functions and script calls
//!   that return a `Ptr` return a new (+1) reference, which the lowering stores
//!   into a fresh temporary slot at once; so no path, including every error
//!   path, can leak or free too early.
//! - **Errors are values in the context, not unwinding.** An instruction that
//!   can fail carries a [`Site`]: its source span and the block to continue at
//!   when the context's status is non-zero afterwards (the nearest enclosing
//!   `try` landing, or the function's error exit). Landing blocks end in
//!   [`Terminator::IfCatchable`], which sends limit errors straight on to the
//!   error exit so no `catch` can intercept them.
//! - **Calls into the runtime are uniform**: every runtime function takes the
//!   context pointer and up to six `i64` arguments and returns an `i64`
//!   ([`RtFn`]); floats travel as their bits, variable-length argument lists as
//!   a pointer and a count ([`Operand::Argv`]). Host functions go through the
//!   one runtime door [`RtFn::HostCall`].
//! - `Enter` (at function entry) and `Poll` (at every loop head) are where
//!   call depth, fuel and the deadline are checked.

use std::fmt;

use scl_lang::Span;

use crate::runtime::RtFn;

/// How a value is held in a register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Repr {
    Int,
    Float,
    Bool,
    Ptr,
}

impl Repr {
    /// The code runtime functions receive to know how to read an `i64` argument.
    pub fn code(self) -> i64 {
        match self {
            Repr::Int => 0,
            Repr::Float => 1,
            Repr::Bool => 2,
            Repr::Ptr => 3,
        }
    }

    pub fn from_code(code: i64) -> Repr {
        match code {
            0 => Repr::Int,
            1 => Repr::Float,
            2 => Repr::Bool,
            _ => Repr::Ptr,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Repr::Int => "i64",
            Repr::Float => "f64",
            Repr::Bool => "bool",
            Repr::Ptr => "ptr",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Var(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId(pub u32);

/// Index of a function in [`Module::functions`] (the same as the HIR `FnId`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FuncIndex(pub u32);

/// Index into [`Module::types`]: a static type some runtime function needs
/// (for `as`, conversion to `json`, `string(x)`, record layouts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TypeIndex(pub u32);

/// The lowered program: every function of the script plus the tables the
/// runtime reads while it runs.
#[derive(Clone, Debug)]
pub struct Module {
    pub functions: Vec<Function>,
    /// String literals, by index ([`RtFn::StrLit`]).
    pub strings: Vec<String>,
    /// Static types runtime functions need, by [`TypeIndex`].
    pub types: Vec<scl_lang::types::Type>,
}

#[derive(Clone, Debug)]
pub struct Function {
    pub name: String,
    /// Parameters arrive in these registers, in order.
    pub params: Vec<Var>,
    /// `None` for `void`.
    pub ret: Option<Repr>,
    /// The representation of every register, by index.
    pub vars: Vec<Repr>,
    /// How many owned slots the frame has.
    pub slots: u32,
    /// `blocks[0]` is the entry block.
    pub blocks: Vec<BasicBlock>,
    pub span: Span,
}

#[derive(Clone, Debug, Default)]
pub struct BasicBlock {
    pub insts: Vec<Inst>,
    pub term: Terminator,
}

/// An instruction; `site` is present exactly when it can fail.
#[derive(Clone, Debug)]
pub struct Inst {
    pub kind: InstKind,
    pub site: Option<Site>,
}

/// Where a failing instruction is in the source and where control goes when it fails.
#[derive(Clone, Copy, Debug)]
pub struct Site {
    pub span: Span,
    pub on_error: BlockId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntOp {
    Add,
    Sub,
    Mul,
    /// Truncates toward zero; `/ 0` and `MIN / -1` fail.
    Div,
    /// Takes the sign of the dividend; `% 0` fails, `MIN % -1` is 0.
    Rem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Const {
    Int(i64),
    Float(f64),
    Bool(bool),
    /// The null pointer (an optional that is `null`).
    Null,
}

/// An argument of a runtime call.
#[derive(Clone, Debug)]
pub enum Operand {
    Var(Var),
    /// A constant: a type index, a representation code, a string index.
    Imm(i64),
    /// A pointer to the registers' values stored in a row of `i64`s, then their count.
    Argv(Vec<Var>),
}

#[derive(Clone, Debug)]
pub enum InstKind {
    Const {
        dst: Var,
        value: Const,
    },
    Copy {
        dst: Var,
        src: Var,
    },
    /// Checked `i64` arithmetic (fails with `overflow` / `division_by_zero`).
    IntArith {
        op: IntOp,
        dst: Var,
        lhs: Var,
        rhs: Var,
    },
    /// Checked negation (fails with `overflow` on `i64::MIN`).
    IntNeg {
        dst: Var,
        src: Var,
    },
    FloatArith {
        op: FloatOp,
        dst: Var,
        lhs: Var,
        rhs: Var,
    },
    FloatNeg {
        dst: Var,
        src: Var,
    },
    /// Compares two `Int`, `Float` or `Bool` registers (IEEE for floats).
    Cmp {
        op: CmpOp,
        repr: Repr,
        dst: Var,
        lhs: Var,
        rhs: Var,
    },
    Not {
        dst: Var,
        src: Var,
    },
    /// `dst = (src == null)` on a `Ptr`.
    IsNull {
        dst: Var,
        src: Var,
    },
    IntToFloat {
        dst: Var,
        src: Var,
    },
    /// `dst` borrows the slot's value.
    LoadSlot {
        dst: Var,
        slot: SlotId,
    },
    /// Releases the slot's previous value, then stores `src`: retained first
    /// when `owned` is false, taken over as it is when `owned` is true.
    StoreSlot {
        slot: SlotId,
        src: Var,
        owned: bool,
    },
    /// Adds a reference to a `Ptr` (used to hand a borrowed value to a caller).
    Retain {
        src: Var,
    },
    /// A script function; a `Ptr` result is a new reference.
    Call {
        dst: Option<Var>,
        func: FuncIndex,
        args: Vec<Var>,
    },
    /// A runtime function; `dst`'s representation says how to read the `i64` result.
    Rt {
        dst: Option<Var>,
        func: RtFn,
        args: Vec<Operand>,
    },
    /// Function entry: call depth +1, fuel, deadline.
    Enter,
    /// Loop head: fuel and deadline.
    Poll,
    /// In a `catch` block: moves the current error, as an `Error` record, into
    /// the slot and clears the context's status.
    TakeError {
        slot: SlotId,
        ty: TypeIndex,
    },
}

#[derive(Clone, Debug, Default)]
pub enum Terminator {
    Jump(BlockId),
    Branch {
        cond: Var,
        then_block: BlockId,
        else_block: BlockId,
    },
    /// Releases every slot, leaves the frame and returns the register (a
    /// `Ptr` must already be a new reference).
    Return(Option<Var>),
    /// Releases every slot, leaves the frame and returns with the context's
    /// status still set.
    ReturnError,
    /// A `try` landing: on a catchable error go to `catch_block`, otherwise
    /// (a limit) on to `propagate`.
    IfCatchable {
        catch_block: BlockId,
        propagate: BlockId,
    },
    /// A block no path reaches (after `return`, `break`, ...). It raises an
    /// internal error and returns, so even a lowering mistake cannot crash.
    #[default]
    Unreachable,
}

impl Module {
    /// Whether any function calls a host function ([`RtFn::HostCall`]). A script
    /// that does not can only compute: it does no I/O, blocks on nothing and has
    /// no effect outside its own run, so a host may run it where blocking is not
    /// allowed and run it again when it stopped early.
    pub fn calls_host(&self) -> bool {
        self.functions.iter().any(|function| {
            function.blocks.iter().any(|block| {
                block.insts.iter().any(|inst| {
                    matches!(
                        inst.kind,
                        InstKind::Rt {
                            func: RtFn::HostCall,
                            ..
                        }
                    )
                })
            })
        })
    }
}

impl Terminator {
    pub fn successors(&self) -> Vec<BlockId> {
        match self {
            Terminator::Jump(b) => vec![*b],
            Terminator::Branch {
                then_block,
                else_block,
                ..
            } => vec![*then_block, *else_block],
            Terminator::IfCatchable {
                catch_block,
                propagate,
            } => vec![*catch_block, *propagate],
            Terminator::Return(_) | Terminator::ReturnError | Terminator::Unreachable => vec![],
        }
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, function) in self.functions.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{function}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

impl fmt::Display for SlotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bb{}", self.0)
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fn {}(", self.name)?;
        for (i, param) in self.params.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{param}: {}", self.vars[param.0 as usize].name())?;
        }
        f.write_str(")")?;
        if let Some(ret) = self.ret {
            write!(f, " -> {}", ret.name())?;
        }
        writeln!(f, " slots={} {{", self.slots)?;
        for (index, block) in self.blocks.iter().enumerate() {
            writeln!(f, "bb{index}:")?;
            for inst in &block.insts {
                write!(f, "    ")?;
                write_inst(f, self, inst)?;
                if let Some(site) = inst.site {
                    write!(f, " !{}", site.on_error)?;
                }
                writeln!(f)?;
            }
            write!(f, "    ")?;
            match &block.term {
                Terminator::Jump(b) => writeln!(f, "jump {b}")?,
                Terminator::Branch {
                    cond,
                    then_block,
                    else_block,
                } => writeln!(f, "br {cond}, {then_block}, {else_block}")?,
                Terminator::Return(Some(v)) => writeln!(f, "ret {v}")?,
                Terminator::Return(None) => writeln!(f, "ret")?,
                Terminator::ReturnError => writeln!(f, "ret_error")?,
                Terminator::IfCatchable {
                    catch_block,
                    propagate,
                } => writeln!(f, "if_catchable {catch_block}, {propagate}")?,
                Terminator::Unreachable => writeln!(f, "unreachable")?,
            }
        }
        writeln!(f, "}}")
    }
}

fn write_inst(f: &mut fmt::Formatter<'_>, function: &Function, inst: &Inst) -> fmt::Result {
    let ty = |v: &Var| function.vars[v.0 as usize].name();
    match &inst.kind {
        InstKind::Const { dst, value } => match value {
            Const::Int(i) => write!(f, "{dst}: i64 = {i}"),
            Const::Float(x) => write!(f, "{dst}: f64 = {x:?}"),
            Const::Bool(b) => write!(f, "{dst}: bool = {b}"),
            Const::Null => write!(f, "{dst}: ptr = null"),
        },
        InstKind::Copy { dst, src } => write!(f, "{dst}: {} = {src}", ty(dst)),
        InstKind::IntArith { op, dst, lhs, rhs } => {
            write!(
                f,
                "{dst}: i64 = {}.checked {lhs}, {rhs}",
                format!("{op:?}").to_lowercase()
            )
        }
        InstKind::IntNeg { dst, src } => write!(f, "{dst}: i64 = neg.checked {src}"),
        InstKind::FloatArith { op, dst, lhs, rhs } => {
            write!(
                f,
                "{dst}: f64 = f{} {lhs}, {rhs}",
                format!("{op:?}").to_lowercase()
            )
        }
        InstKind::FloatNeg { dst, src } => write!(f, "{dst}: f64 = fneg {src}"),
        InstKind::Cmp {
            op,
            repr,
            dst,
            lhs,
            rhs,
        } => write!(
            f,
            "{dst}: bool = {}.{} {lhs}, {rhs}",
            format!("{op:?}").to_lowercase(),
            repr.name()
        ),
        InstKind::Not { dst, src } => write!(f, "{dst}: bool = not {src}"),
        InstKind::IsNull { dst, src } => write!(f, "{dst}: bool = is_null {src}"),
        InstKind::IntToFloat { dst, src } => write!(f, "{dst}: f64 = int_to_float {src}"),
        InstKind::LoadSlot { dst, slot } => write!(f, "{dst}: ptr = load {slot}"),
        InstKind::StoreSlot { slot, src, owned } => {
            write!(
                f,
                "store{} {slot}, {src}",
                if *owned { ".owned" } else { ".retain" }
            )
        }
        InstKind::Retain { src } => write!(f, "retain {src}"),
        InstKind::Call { dst, func, args } => {
            if let Some(dst) = dst {
                write!(f, "{dst}: {} = ", ty(dst))?;
            }
            write!(f, "call f{}(", func.0)?;
            write_list(f, args)?;
            f.write_str(")")
        }
        InstKind::Rt { dst, func, args } => {
            if let Some(dst) = dst {
                write!(f, "{dst}: {} = ", ty(dst))?;
            }
            write!(f, "rt.{}(", func.name())?;
            for (i, arg) in args.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                match arg {
                    Operand::Var(v) => write!(f, "{v}")?,
                    Operand::Imm(i) => write!(f, "#{i}")?,
                    Operand::Argv(vs) => {
                        f.write_str("[")?;
                        write_list(f, vs)?;
                        f.write_str("]")?;
                    }
                }
            }
            f.write_str(")")
        }
        InstKind::Enter => f.write_str("enter"),
        InstKind::Poll => f.write_str("poll"),
        InstKind::TakeError { slot, ty } => write!(f, "take_error {slot}, type#{}", ty.0),
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, vars: &[Var]) -> fmt::Result {
    for (i, v) in vars.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{v}")?;
    }
    Ok(())
}
