//! HIR → IR: the lowering stage (`Checked` program → [`Lowered`](crate::Lowered)).
//!
//! The HIR arrives fully resolved and typed with every implicit conversion
//! explicit, so lowering never looks a name up or infers a type; it decides
//! representations, makes control flow, error edges and ownership explicit:
//!
//! - a local of a heap type lives in a slot, a primitive local in a register;
//! - every heap value a runtime function or call returns is stored into a
//!   fresh temporary slot at once (`own`), so registers only ever borrow;
//! - a fallible instruction's error edge goes to the innermost `try` landing,
//!   or to the function's error exit;
//! - `Enter` starts every function, `Poll` every loop iteration.

use std::collections::HashMap;

use scl_lang::Span;
use scl_lang::ast::{BinOp, UnaryOp};
use scl_lang::hir::{self, Builtin, Conversion, ExprKind, Method, Place, StmtKind};
use scl_lang::types::Type;

use crate::ir::{
    BasicBlock, BlockId, CmpOp, Const, FloatOp, FuncIndex, Function, Inst, InstKind, IntOp, Module,
    Operand, Repr, Site, SlotId, Terminator, TypeIndex, Var,
};
use crate::runtime::RtFn;
use crate::runtime::convert::repr_of;

/// Lowers a checked program.
pub(crate) fn lower_program(program: &hir::Program) -> Module {
    let mut tables = Tables::default();
    let functions = program
        .functions
        .iter()
        .map(|function| FnLowerer::new(program, function, &mut tables).lower())
        .collect();
    Module {
        functions,
        strings: tables.strings,
        types: tables.types,
    }
}

#[derive(Default)]
struct Tables {
    strings: Vec<String>,
    string_index: HashMap<String, u32>,
    types: Vec<Type>,
}

impl Tables {
    fn string(&mut self, text: &str) -> i64 {
        if let Some(&index) = self.string_index.get(text) {
            return index as i64;
        }
        let index = self.strings.len() as u32;
        self.strings.push(text.to_string());
        self.string_index.insert(text.to_string(), index);
        index as i64
    }

    fn type_index(&mut self, ty: &Type) -> TypeIndex {
        // Records compare structurally; keep the first spelling (its name is for messages only).
        if let Some(i) = self.types.iter().position(|t| t == ty) {
            return TypeIndex(i as u32);
        }
        self.types.push(ty.clone());
        TypeIndex(self.types.len() as u32 - 1)
    }
}

#[derive(Clone, Copy)]
enum Storage {
    Register(Var),
    Slot(SlotId),
}

struct Loop {
    continue_to: BlockId,
    break_to: BlockId,
}

struct FnLowerer<'a> {
    program: &'a hir::Program,
    function: &'a hir::Function,
    tables: &'a mut Tables,
    vars: Vec<Repr>,
    slots: u32,
    blocks: Vec<BasicBlock>,
    terminated: Vec<bool>,
    current: BlockId,
    locals: Vec<Storage>,
    loops: Vec<Loop>,
    handlers: Vec<BlockId>,
    error_exit: BlockId,
}

fn element_type(ty: &Type) -> Type {
    match ty {
        Type::List(t) | Type::Map(t) | Type::Optional(t) => (**t).clone(),
        _ => Type::Json,
    }
}

fn is_primitive(ty: &Type) -> bool {
    matches!(ty, Type::Int | Type::Float | Type::Bool)
}

fn is_null_literal(expr: &hir::Expr) -> bool {
    matches!(expr.kind, ExprKind::Null) || matches!(expr.ty, Type::Null)
}

impl<'a> FnLowerer<'a> {
    fn new(
        program: &'a hir::Program,
        function: &'a hir::Function,
        tables: &'a mut Tables,
    ) -> FnLowerer<'a> {
        let mut lowerer = FnLowerer {
            program,
            function,
            tables,
            vars: Vec::new(),
            slots: 0,
            blocks: Vec::new(),
            terminated: Vec::new(),
            current: BlockId(0),
            locals: Vec::new(),
            loops: Vec::new(),
            handlers: Vec::new(),
            error_exit: BlockId(0),
        };
        let entry = lowerer.new_block();
        lowerer.current = entry;
        lowerer.error_exit = lowerer.new_block();
        lowerer.blocks[lowerer.error_exit.0 as usize].term = Terminator::ReturnError;
        lowerer.terminated[lowerer.error_exit.0 as usize] = true;
        lowerer
    }

    fn lower(mut self) -> Function {
        let function = self.function;
        for local in &function.locals {
            let storage = match repr_of(&local.ty) {
                Repr::Ptr => Storage::Slot(self.new_slot()),
                repr => Storage::Register(self.new_var(repr)),
            };
            self.locals.push(storage);
        }
        let mut params = Vec::new();
        for &param in &function.params {
            let ty = &function.local(param).ty;
            let var = self.new_var(repr_of(ty));
            params.push(var);
        }
        self.emit_fallible(InstKind::Enter, function.span);
        for (&param, &var) in function.params.iter().zip(&params) {
            match self.locals[param.0 as usize] {
                Storage::Register(local) => self.emit(InstKind::Copy {
                    dst: local,
                    src: var,
                }),
                Storage::Slot(slot) => self.emit(InstKind::StoreSlot {
                    slot,
                    src: var,
                    owned: false,
                }),
            }
        }
        self.block(&function.body);
        if !self.terminated[self.current.0 as usize] {
            let term = if function.ret == Type::Void {
                Terminator::Return(None)
            } else {
                Terminator::Unreachable
            };
            self.terminate(term);
        }
        let ret = match &function.ret {
            Type::Void => None,
            ty => Some(repr_of(ty)),
        };
        Function {
            name: function.name.clone(),
            params,
            ret,
            vars: self.vars,
            slots: self.slots,
            blocks: self.blocks,
            span: function.span,
        }
    }

    // ------------------------------------------------------------ building blocks

    fn new_var(&mut self, repr: Repr) -> Var {
        self.vars.push(repr);
        Var(self.vars.len() as u32 - 1)
    }

    fn new_slot(&mut self) -> SlotId {
        self.slots += 1;
        SlotId(self.slots - 1)
    }

    fn new_block(&mut self) -> BlockId {
        self.blocks.push(BasicBlock::default());
        self.terminated.push(false);
        BlockId(self.blocks.len() as u32 - 1)
    }

    fn switch_to(&mut self, block: BlockId) {
        self.current = block;
    }

    fn emit(&mut self, kind: InstKind) {
        self.blocks[self.current.0 as usize]
            .insts
            .push(Inst { kind, site: None });
    }

    fn site(&self, span: Span) -> Site {
        Site {
            span,
            on_error: self.handlers.last().copied().unwrap_or(self.error_exit),
        }
    }

    fn emit_fallible(&mut self, kind: InstKind, span: Span) {
        let site = self.site(span);
        self.blocks[self.current.0 as usize].insts.push(Inst {
            kind,
            site: Some(site),
        });
    }

    /// Ends the current block; code that follows goes to a fresh (dead) block.
    fn terminate(&mut self, term: Terminator) {
        let index = self.current.0 as usize;
        if !self.terminated[index] {
            self.blocks[index].term = term;
            self.terminated[index] = true;
        }
    }

    fn jump_to(&mut self, target: BlockId) {
        self.terminate(Terminator::Jump(target));
    }

    fn start_dead_block(&mut self) {
        let dead = self.new_block();
        self.switch_to(dead);
    }

    /// Takes ownership of a new reference into a fresh temporary slot; the
    /// register then borrows it.
    fn own(&mut self, var: Var) -> Var {
        let slot = self.new_slot();
        self.emit(InstKind::StoreSlot {
            slot,
            src: var,
            owned: true,
        });
        var
    }

    fn constant(&mut self, value: Const) -> Var {
        let repr = match value {
            Const::Int(_) => Repr::Int,
            Const::Float(_) => Repr::Float,
            Const::Bool(_) => Repr::Bool,
            Const::Null => Repr::Ptr,
        };
        let dst = self.new_var(repr);
        self.emit(InstKind::Const { dst, value });
        dst
    }

    /// A runtime call whose result has representation `repr` (None: unused).
    fn rt(
        &mut self,
        func: RtFn,
        args: Vec<Operand>,
        repr: Option<Repr>,
        span: Span,
    ) -> Option<Var> {
        let dst = repr.map(|r| self.new_var(r));
        let kind = InstKind::Rt { dst, func, args };
        if func.can_fail() {
            self.emit_fallible(kind, span);
        } else {
            self.emit(kind);
        }
        match (dst, repr) {
            (Some(dst), Some(Repr::Ptr)) => Some(self.own(dst)),
            _ => dst,
        }
    }

    /// A runtime call returning a value of static type `ty`.
    fn rt_typed(&mut self, func: RtFn, args: Vec<Operand>, ty: &Type, span: Span) -> Option<Var> {
        let repr = if *ty == Type::Void {
            None
        } else {
            Some(repr_of(ty))
        };
        self.rt(func, args, repr, span)
    }

    fn rt_value(&mut self, func: RtFn, args: Vec<Operand>, repr: Repr, span: Span) -> Var {
        match self.rt(func, args, Some(repr), span) {
            Some(var) => var,
            None => self.constant(Const::Int(0)),
        }
    }

    fn type_imm(&mut self, ty: &Type) -> Operand {
        Operand::Imm(self.tables.type_index(ty).0 as i64)
    }

    // ------------------------------------------------------------ statements

    fn block(&mut self, block: &hir::Block) {
        for stmt in &block.stmts {
            self.stmt(stmt);
        }
    }

    fn store_local(&mut self, local: hir::LocalId, value: Var) {
        match self.locals[local.0 as usize] {
            Storage::Register(dst) => self.emit(InstKind::Copy { dst, src: value }),
            Storage::Slot(slot) => self.emit(InstKind::StoreSlot {
                slot,
                src: value,
                owned: false,
            }),
        }
    }

    fn load_local(&mut self, local: hir::LocalId) -> Var {
        match self.locals[local.0 as usize] {
            Storage::Register(var) => var,
            Storage::Slot(slot) => {
                let dst = self.new_var(Repr::Ptr);
                self.emit(InstKind::LoadSlot { dst, slot });
                dst
            }
        }
    }

    fn stmt(&mut self, stmt: &hir::Stmt) {
        let span = stmt.span;
        match &stmt.kind {
            StmtKind::Let { local, init } => {
                let value = self.value(init);
                self.store_local(*local, value);
            }
            StmtKind::Assign { place, op, value } => self.assign(place, *op, value, span),
            StmtKind::Expr(expr) => {
                self.expr(expr);
            }
            StmtKind::If {
                cond,
                then_block,
                else_block,
            } => {
                let cond = self.value(cond);
                let then_bb = self.new_block();
                let join = self.new_block();
                let else_bb = if else_block.is_some() {
                    self.new_block()
                } else {
                    join
                };
                self.terminate(Terminator::Branch {
                    cond,
                    then_block: then_bb,
                    else_block: else_bb,
                });
                self.switch_to(then_bb);
                self.block(then_block);
                self.jump_to(join);
                if let Some(else_block) = else_block {
                    self.switch_to(else_bb);
                    self.block(else_block);
                    self.jump_to(join);
                }
                self.switch_to(join);
            }
            StmtKind::While { cond, body } => {
                let header = self.new_block();
                let body_bb = self.new_block();
                let exit = self.new_block();
                self.jump_to(header);
                self.switch_to(header);
                self.emit_fallible(InstKind::Poll, span);
                let cond = self.value(cond);
                self.terminate(Terminator::Branch {
                    cond,
                    then_block: body_bb,
                    else_block: exit,
                });
                self.switch_to(body_bb);
                self.loops.push(Loop {
                    continue_to: header,
                    break_to: exit,
                });
                self.block(body);
                self.loops.pop();
                self.jump_to(header);
                self.switch_to(exit);
            }
            StmtKind::ForRange {
                var,
                start,
                end,
                body,
            } => {
                let start = self.value(start);
                let end_value = self.value(end);
                let end = self.new_var(Repr::Int);
                self.emit(InstKind::Copy {
                    dst: end,
                    src: end_value,
                });
                let counter = self.new_var(Repr::Int);
                self.emit(InstKind::Copy {
                    dst: counter,
                    src: start,
                });
                self.counted_loop(counter, end, span, body, |this, counter| {
                    this.store_local(*var, counter)
                });
            }
            StmtKind::ForEach {
                var,
                iterable,
                body,
            } => {
                let iterable_ty = iterable.ty.clone();
                let value = self.value(iterable);
                // Hold the collection for the whole loop, whatever the body assigns.
                let hold = self.new_slot();
                self.emit(InstKind::StoreSlot {
                    slot: hold,
                    src: value,
                    owned: false,
                });
                let collection = self.new_var(Repr::Ptr);
                self.emit(InstKind::LoadSlot {
                    dst: collection,
                    slot: hold,
                });
                let is_map = matches!(iterable_ty, Type::Map(_));
                let len_fn = if is_map { RtFn::MapLen } else { RtFn::ListLen };
                let counter = self.constant(Const::Int(0));
                let element_ty = element_type(&iterable_ty);
                // The length is read again on every iteration, so a body that
                // changes the collection cannot run past its end.
                let len = self.new_var(Repr::Int);
                self.counted_loop_with_len(
                    counter,
                    len,
                    collection,
                    len_fn,
                    span,
                    body,
                    |this, counter| {
                        let element = if is_map {
                            this.rt_value(
                                RtFn::MapKeyAt,
                                vec![Operand::Var(collection), Operand::Var(counter)],
                                Repr::Ptr,
                                span,
                            )
                        } else {
                            let repr = repr_of(&element_ty);
                            this.rt_value(
                                RtFn::ListGet,
                                vec![
                                    Operand::Var(collection),
                                    Operand::Var(counter),
                                    Operand::Imm(repr.code()),
                                ],
                                repr,
                                span,
                            )
                        };
                        this.store_local(*var, element);
                    },
                );
            }
            StmtKind::Break => {
                if let Some(target) = self.loops.last().map(|l| l.break_to) {
                    self.jump_to(target);
                }
                self.start_dead_block();
            }
            StmtKind::Continue => {
                if let Some(target) = self.loops.last().map(|l| l.continue_to) {
                    self.jump_to(target);
                }
                self.start_dead_block();
            }
            StmtKind::Return(value) => {
                let value = value.as_ref().and_then(|v| self.expr(v));
                if let Some(value) = value
                    && self.vars[value.0 as usize] == Repr::Ptr
                {
                    self.emit(InstKind::Retain { src: value });
                }
                self.terminate(Terminator::Return(value));
                self.start_dead_block();
            }
            StmtKind::Throw(value) => {
                let ty = value.ty.clone();
                let record = self.value(value);
                let ty = self.type_imm(&ty);
                self.rt(RtFn::Throw, vec![Operand::Var(record), ty], None, span);
                self.terminate(Terminator::Unreachable);
                self.start_dead_block();
            }
            StmtKind::Try {
                body,
                catch_var,
                handler,
            } => {
                let landing = self.new_block();
                let catch_bb = self.new_block();
                let after = self.new_block();
                self.handlers.push(landing);
                self.block(body);
                self.handlers.pop();
                self.jump_to(after);
                self.switch_to(landing);
                self.terminate(Terminator::IfCatchable {
                    catch_block: catch_bb,
                    propagate: self.error_exit,
                });
                self.switch_to(catch_bb);
                let error_ty = self.function.local(*catch_var).ty.clone();
                let ty = self.tables.type_index(&error_ty);
                match self.locals[catch_var.0 as usize] {
                    Storage::Slot(slot) => self.emit(InstKind::TakeError { slot, ty }),
                    Storage::Register(_) => {
                        let slot = self.new_slot();
                        self.emit(InstKind::TakeError { slot, ty });
                    }
                }
                self.block(handler);
                self.jump_to(after);
                self.switch_to(after);
            }
        }
    }

    /// `for counter in counter..end`: `init` stores the counter into the loop variable.
    fn counted_loop(
        &mut self,
        counter: Var,
        end: Var,
        span: Span,
        body: &hir::Block,
        init: impl FnOnce(&mut Self, Var),
    ) {
        let header = self.new_block();
        let body_bb = self.new_block();
        let latch = self.new_block();
        let exit = self.new_block();
        self.jump_to(header);
        self.switch_to(header);
        self.emit_fallible(InstKind::Poll, span);
        let cond = self.new_var(Repr::Bool);
        self.emit(InstKind::Cmp {
            op: CmpOp::Lt,
            repr: Repr::Int,
            dst: cond,
            lhs: counter,
            rhs: end,
        });
        self.terminate(Terminator::Branch {
            cond,
            then_block: body_bb,
            else_block: exit,
        });
        self.switch_to(body_bb);
        init(self, counter);
        self.loops.push(Loop {
            continue_to: latch,
            break_to: exit,
        });
        self.block(body);
        self.loops.pop();
        self.jump_to(latch);
        self.switch_to(latch);
        let one = self.constant(Const::Int(1));
        // `counter < end <= i64::MAX`, so this cannot overflow.
        self.emit_fallible(
            InstKind::IntArith {
                op: IntOp::Add,
                dst: counter,
                lhs: counter,
                rhs: one,
            },
            span,
        );
        self.jump_to(header);
        self.switch_to(exit);
    }

    #[allow(clippy::too_many_arguments)]
    fn counted_loop_with_len(
        &mut self,
        counter: Var,
        len: Var,
        collection: Var,
        len_fn: RtFn,
        span: Span,
        body: &hir::Block,
        init: impl FnOnce(&mut Self, Var),
    ) {
        let header = self.new_block();
        let body_bb = self.new_block();
        let latch = self.new_block();
        let exit = self.new_block();
        self.jump_to(header);
        self.switch_to(header);
        self.emit_fallible(InstKind::Poll, span);
        self.emit(InstKind::Rt {
            dst: Some(len),
            func: len_fn,
            args: vec![Operand::Var(collection)],
        });
        let cond = self.new_var(Repr::Bool);
        self.emit(InstKind::Cmp {
            op: CmpOp::Lt,
            repr: Repr::Int,
            dst: cond,
            lhs: counter,
            rhs: len,
        });
        self.terminate(Terminator::Branch {
            cond,
            then_block: body_bb,
            else_block: exit,
        });
        self.switch_to(body_bb);
        init(self, counter);
        self.loops.push(Loop {
            continue_to: latch,
            break_to: exit,
        });
        self.block(body);
        self.loops.pop();
        self.jump_to(latch);
        self.switch_to(latch);
        let one = self.constant(Const::Int(1));
        self.emit_fallible(
            InstKind::IntArith {
                op: IntOp::Add,
                dst: counter,
                lhs: counter,
                rhs: one,
            },
            span,
        );
        self.jump_to(header);
        self.switch_to(exit);
    }

    fn assign(&mut self, place: &Place, op: Option<BinOp>, value: &hir::Expr, span: Span) {
        match place {
            Place::Local(local) => {
                let new_value = match op {
                    Some(op) => {
                        let ty = self.function.local(*local).ty.clone();
                        let current = self.load_local(*local);
                        let rhs = self.value(value);
                        self.binary(op, &ty, current, rhs, span)
                    }
                    None => self.value(value),
                };
                self.store_local(*local, new_value);
            }
            Place::ListElement { list, index } => {
                let element_ty = element_type(&list.ty);
                let repr = repr_of(&element_ty);
                let list = self.value(list);
                let index = self.value(index);
                let new_value = match op {
                    Some(op) => {
                        let current = self.rt_value(
                            RtFn::ListGet,
                            vec![
                                Operand::Var(list),
                                Operand::Var(index),
                                Operand::Imm(repr.code()),
                            ],
                            repr,
                            span,
                        );
                        let rhs = self.value(value);
                        self.binary(op, &element_ty, current, rhs, span)
                    }
                    None => self.value(value),
                };
                self.rt(
                    RtFn::ListSet,
                    vec![
                        Operand::Var(list),
                        Operand::Var(index),
                        Operand::Var(new_value),
                        Operand::Imm(repr.code()),
                    ],
                    None,
                    span,
                );
            }
            Place::MapEntry { map, key } => {
                let element_ty = element_type(&map.ty);
                let repr = repr_of(&element_ty);
                let map = self.value(map);
                let key = self.value(key);
                let new_value = match op {
                    Some(op) => {
                        let current = self.rt_value(
                            RtFn::MapGet,
                            vec![
                                Operand::Var(map),
                                Operand::Var(key),
                                Operand::Imm(repr.code()),
                            ],
                            repr,
                            span,
                        );
                        let rhs = self.value(value);
                        self.binary(op, &element_ty, current, rhs, span)
                    }
                    None => self.value(value),
                };
                self.rt(
                    RtFn::MapInsert,
                    vec![
                        Operand::Var(map),
                        Operand::Var(key),
                        Operand::Var(new_value),
                        Operand::Imm(repr.code()),
                    ],
                    None,
                    span,
                );
            }
        }
    }

    // ------------------------------------------------------------ expressions

    /// An expression that has a value (a `void` one gives a dummy 0).
    fn value(&mut self, expr: &hir::Expr) -> Var {
        match self.expr(expr) {
            Some(var) => var,
            None => self.constant(Const::Int(0)),
        }
    }

    fn expr(&mut self, expr: &hir::Expr) -> Option<Var> {
        let span = expr.span;
        let ty = &expr.ty;
        Some(match &expr.kind {
            ExprKind::Int(i) => self.constant(Const::Int(*i)),
            ExprKind::Float(x) => self.constant(Const::Float(*x)),
            ExprKind::Bool(b) => self.constant(Const::Bool(*b)),
            ExprKind::Null => {
                if *ty == Type::Json {
                    self.rt_value(RtFn::JsonNull, vec![], Repr::Ptr, span)
                } else {
                    self.constant(Const::Null)
                }
            }
            ExprKind::Str(text) => {
                let index = self.tables.string(text);
                self.rt_value(RtFn::StrLit, vec![Operand::Imm(index)], Repr::Ptr, span)
            }
            ExprKind::Concat(parts) => {
                let parts: Vec<Var> = parts.iter().map(|p| self.value(p)).collect();
                self.rt_value(RtFn::Concat, vec![Operand::Argv(parts)], Repr::Ptr, span)
            }
            ExprKind::List(items) => {
                let repr = repr_of(&element_type(ty));
                let items: Vec<Var> = items.iter().map(|p| self.value(p)).collect();
                self.rt_value(
                    RtFn::ListNew,
                    vec![Operand::Argv(items), Operand::Imm(repr.code())],
                    Repr::Ptr,
                    span,
                )
            }
            ExprKind::Map(entries) => {
                let repr = repr_of(&element_type(ty));
                let map = self.rt_value(RtFn::MapNew, vec![], Repr::Ptr, span);
                for (key, value) in entries {
                    let value = self.value(value);
                    let index = self.tables.string(key);
                    let key =
                        self.rt_value(RtFn::StrLit, vec![Operand::Imm(index)], Repr::Ptr, span);
                    self.rt(
                        RtFn::MapInsert,
                        vec![
                            Operand::Var(map),
                            Operand::Var(key),
                            Operand::Var(value),
                            Operand::Imm(repr.code()),
                        ],
                        None,
                        span,
                    );
                }
                map
            }
            ExprKind::Record(fields) => {
                let fields: Vec<Var> = fields.iter().map(|p| self.value(p)).collect();
                let ty = self.type_imm(ty);
                self.rt_value(
                    RtFn::RecordNew,
                    vec![Operand::Argv(fields), ty],
                    Repr::Ptr,
                    span,
                )
            }
            ExprKind::Local(local) => self.load_local(*local),
            ExprKind::Field { base, index } => {
                let base = self.value(base);
                let repr = repr_of(ty);
                self.rt_value(
                    RtFn::RecordGet,
                    vec![
                        Operand::Var(base),
                        Operand::Imm(*index as i64),
                        Operand::Imm(repr.code()),
                    ],
                    repr,
                    span,
                )
            }
            ExprKind::Index { base, index } => {
                let base_ty = base.ty.clone();
                let index_is_int = index.ty == Type::Int;
                let base = self.value(base);
                let index = self.value(index);
                let repr = repr_of(ty);
                match base_ty {
                    Type::List(_) => self.rt_value(
                        RtFn::ListGet,
                        vec![
                            Operand::Var(base),
                            Operand::Var(index),
                            Operand::Imm(repr.code()),
                        ],
                        repr,
                        span,
                    ),
                    Type::Map(_) => self.rt_value(
                        RtFn::MapGet,
                        vec![
                            Operand::Var(base),
                            Operand::Var(index),
                            Operand::Imm(repr.code()),
                        ],
                        repr,
                        span,
                    ),
                    _ => self.rt_value(
                        RtFn::JsonIndex,
                        vec![
                            Operand::Var(base),
                            Operand::Var(index),
                            Operand::Imm(index_is_int as i64),
                        ],
                        Repr::Ptr,
                        span,
                    ),
                }
            }
            ExprKind::Call { func, args } => {
                let args: Vec<Var> = args.iter().map(|a| self.value(a)).collect();
                let callee = self.program.function(*func);
                let dst = match &callee.ret {
                    Type::Void => None,
                    ret => Some(self.new_var(repr_of(ret))),
                };
                self.emit_fallible(
                    InstKind::Call {
                        dst,
                        func: FuncIndex(func.0),
                        args,
                    },
                    span,
                );
                let dst = dst?;
                if self.vars[dst.0 as usize] == Repr::Ptr {
                    self.own(dst)
                } else {
                    dst
                }
            }
            ExprKind::Builtin { func, args } => return self.builtin(*func, args, ty, span),
            ExprKind::Method { method, args } => return self.method(*method, args, ty, span),
            ExprKind::Host { func, args } => {
                let args: Vec<Var> = args.iter().map(|a| self.value(a)).collect();
                return self.rt_typed(
                    RtFn::HostCall,
                    vec![Operand::Imm(func.0 as i64), Operand::Argv(args)],
                    ty,
                    span,
                );
            }
            ExprKind::Unary { op, operand } => {
                let operand_ty = operand.ty.clone();
                let src = self.value(operand);
                match (op, operand_ty) {
                    (UnaryOp::Neg, Type::Float) => {
                        let dst = self.new_var(Repr::Float);
                        self.emit(InstKind::FloatNeg { dst, src });
                        dst
                    }
                    (UnaryOp::Neg, _) => {
                        let dst = self.new_var(Repr::Int);
                        self.emit_fallible(InstKind::IntNeg { dst, src }, span);
                        dst
                    }
                    (UnaryOp::Not, _) => {
                        let dst = self.new_var(Repr::Bool);
                        self.emit(InstKind::Not { dst, src });
                        dst
                    }
                }
            }
            ExprKind::Binary { op, lhs, rhs } => {
                if matches!(op, BinOp::Eq | BinOp::Ne)
                    && (is_null_literal(lhs) || is_null_literal(rhs))
                {
                    let other = if is_null_literal(lhs) { rhs } else { lhs };
                    let other_is_json = other.ty == Type::Json;
                    let value = self.value(other);
                    let is_null = if other_is_json {
                        self.rt_value(
                            RtFn::JsonIsNull,
                            vec![Operand::Var(value)],
                            Repr::Bool,
                            span,
                        )
                    } else if self.vars[value.0 as usize] == Repr::Ptr {
                        let dst = self.new_var(Repr::Bool);
                        self.emit(InstKind::IsNull { dst, src: value });
                        dst
                    } else {
                        // A primitive is never null.
                        self.constant(Const::Bool(false))
                    };
                    return Some(if *op == BinOp::Ne {
                        self.not(is_null)
                    } else {
                        is_null
                    });
                }
                let operand_ty = lhs.ty.clone();
                let lhs = self.value(lhs);
                let rhs = self.value(rhs);
                self.binary(*op, &operand_ty, lhs, rhs, span)
            }
            ExprKind::Logical { and, lhs, rhs } => {
                let result = self.new_var(Repr::Bool);
                let lhs = self.value(lhs);
                self.emit(InstKind::Copy {
                    dst: result,
                    src: lhs,
                });
                let rhs_bb = self.new_block();
                let join = self.new_block();
                let (then_block, else_block) = if *and { (rhs_bb, join) } else { (join, rhs_bb) };
                self.terminate(Terminator::Branch {
                    cond: lhs,
                    then_block,
                    else_block,
                });
                self.switch_to(rhs_bb);
                let rhs = self.value(rhs);
                self.emit(InstKind::Copy {
                    dst: result,
                    src: rhs,
                });
                self.jump_to(join);
                self.switch_to(join);
                result
            }
            ExprKind::Coalesce { value, default } => {
                let value_is_json = value.ty == Type::Json;
                let value = self.value(value);
                let result_repr = repr_of(ty);
                let result = self.new_var(result_repr);
                let is_null = if value_is_json {
                    self.rt_value(
                        RtFn::JsonIsNull,
                        vec![Operand::Var(value)],
                        Repr::Bool,
                        span,
                    )
                } else {
                    let dst = self.new_var(Repr::Bool);
                    self.emit(InstKind::IsNull { dst, src: value });
                    dst
                };
                let default_bb = self.new_block();
                let some_bb = self.new_block();
                let join = self.new_block();
                self.terminate(Terminator::Branch {
                    cond: is_null,
                    then_block: default_bb,
                    else_block: some_bb,
                });
                self.switch_to(some_bb);
                if result_repr == Repr::Ptr {
                    self.emit(InstKind::Copy {
                        dst: result,
                        src: value,
                    });
                } else {
                    let unboxed = self.rt_value(
                        RtFn::Unbox,
                        vec![Operand::Var(value), Operand::Imm(result_repr.code())],
                        result_repr,
                        span,
                    );
                    self.emit(InstKind::Copy {
                        dst: result,
                        src: unboxed,
                    });
                }
                self.jump_to(join);
                self.switch_to(default_bb);
                let default = self.value(default);
                self.emit(InstKind::Copy {
                    dst: result,
                    src: default,
                });
                self.jump_to(join);
                self.switch_to(join);
                result
            }
            ExprKind::Convert {
                conversion,
                expr: inner,
            } => {
                let inner_ty = inner.ty.clone();
                match conversion {
                    Conversion::ToJson => {
                        if inner_ty == Type::Json {
                            return self.expr(inner);
                        }
                        if inner_ty == Type::Null {
                            return Some(self.rt_value(RtFn::JsonNull, vec![], Repr::Ptr, span));
                        }
                        let value = self.value(inner);
                        let ty = self.type_imm(&inner_ty);
                        self.rt_value(RtFn::ToJson, vec![Operand::Var(value), ty], Repr::Ptr, span)
                    }
                    Conversion::ToOptional => {
                        if inner_ty == Type::Null {
                            return Some(self.constant(Const::Null));
                        }
                        let value = self.value(inner);
                        if is_primitive(&inner_ty) {
                            let repr = repr_of(&inner_ty);
                            self.rt_value(
                                RtFn::Box,
                                vec![Operand::Var(value), Operand::Imm(repr.code())],
                                Repr::Ptr,
                                span,
                            )
                        } else {
                            value
                        }
                    }
                }
            }
            ExprKind::As { expr: inner } => {
                let from = inner.ty.clone();
                let value = self.value(inner);
                let from = self.type_imm(&from);
                let to = self.type_imm(ty);
                self.rt_value(
                    RtFn::As,
                    vec![Operand::Var(value), from, to],
                    repr_of(ty),
                    span,
                )
            }
        })
    }

    fn not(&mut self, src: Var) -> Var {
        let dst = self.new_var(Repr::Bool);
        self.emit(InstKind::Not { dst, src });
        dst
    }

    fn cmp_op(op: BinOp) -> Option<CmpOp> {
        Some(match op {
            BinOp::Eq => CmpOp::Eq,
            BinOp::Ne => CmpOp::Ne,
            BinOp::Lt => CmpOp::Lt,
            BinOp::Le => CmpOp::Le,
            BinOp::Gt => CmpOp::Gt,
            BinOp::Ge => CmpOp::Ge,
            _ => return None,
        })
    }

    /// `lhs op rhs` where both operands have type `ty`.
    fn binary(&mut self, op: BinOp, ty: &Type, lhs: Var, rhs: Var, span: Span) -> Var {
        if let Some(cmp) = Self::cmp_op(op) {
            return self.compare(cmp, ty, lhs, rhs, span);
        }
        match ty {
            Type::Int => {
                let op = match op {
                    BinOp::Add => IntOp::Add,
                    BinOp::Sub => IntOp::Sub,
                    BinOp::Mul => IntOp::Mul,
                    BinOp::Div => IntOp::Div,
                    _ => IntOp::Rem,
                };
                let dst = self.new_var(Repr::Int);
                self.emit_fallible(InstKind::IntArith { op, dst, lhs, rhs }, span);
                dst
            }
            Type::Float => {
                let op = match op {
                    BinOp::Add => FloatOp::Add,
                    BinOp::Sub => FloatOp::Sub,
                    BinOp::Mul => FloatOp::Mul,
                    BinOp::Div => FloatOp::Div,
                    _ => {
                        return self.rt_value(
                            RtFn::FloatRem,
                            vec![Operand::Var(lhs), Operand::Var(rhs)],
                            Repr::Float,
                            span,
                        );
                    }
                };
                let dst = self.new_var(Repr::Float);
                self.emit(InstKind::FloatArith { op, dst, lhs, rhs });
                dst
            }
            // `+` on strings (the only other arithmetic the checker allows).
            _ => self.rt_value(
                RtFn::Concat,
                vec![Operand::Argv(vec![lhs, rhs])],
                Repr::Ptr,
                span,
            ),
        }
    }

    fn compare(&mut self, op: CmpOp, ty: &Type, lhs: Var, rhs: Var, span: Span) -> Var {
        match ty {
            Type::Int | Type::Float | Type::Bool => {
                let dst = self.new_var(Repr::Bool);
                self.emit(InstKind::Cmp {
                    op,
                    repr: repr_of(ty),
                    dst,
                    lhs,
                    rhs,
                });
                dst
            }
            Type::String if !matches!(op, CmpOp::Eq | CmpOp::Ne) => {
                let order = self.rt_value(
                    RtFn::Compare,
                    vec![Operand::Var(lhs), Operand::Var(rhs)],
                    Repr::Int,
                    span,
                );
                let zero = self.constant(Const::Int(0));
                let dst = self.new_var(Repr::Bool);
                self.emit(InstKind::Cmp {
                    op,
                    repr: Repr::Int,
                    dst,
                    lhs: order,
                    rhs: zero,
                });
                dst
            }
            _ => {
                let equal = self.rt_value(
                    RtFn::Equal,
                    vec![
                        Operand::Var(lhs),
                        Operand::Var(rhs),
                        Operand::Imm(Repr::Ptr.code()),
                    ],
                    Repr::Bool,
                    span,
                );
                if op == CmpOp::Ne {
                    self.not(equal)
                } else {
                    equal
                }
            }
        }
    }

    fn builtin(&mut self, func: Builtin, args: &[hir::Expr], ty: &Type, span: Span) -> Option<Var> {
        let arg_ty = args.first().map(|a| a.ty.clone()).unwrap_or(Type::Void);
        let values: Vec<Var> = args.iter().map(|a| self.value(a)).collect();
        let first = values
            .first()
            .copied()
            .unwrap_or_else(|| self.constant(Const::Int(0)));
        Some(match func {
            Builtin::ToFloat => match arg_ty {
                Type::Int => {
                    let dst = self.new_var(Repr::Float);
                    self.emit(InstKind::IntToFloat { dst, src: first });
                    dst
                }
                Type::String => self.rt_value(
                    RtFn::StrToFloat,
                    vec![Operand::Var(first)],
                    Repr::Float,
                    span,
                ),
                _ => first,
            },
            Builtin::ToInt => match arg_ty {
                Type::Float => {
                    self.rt_value(RtFn::FloatToInt, vec![Operand::Var(first)], Repr::Int, span)
                }
                Type::String => {
                    self.rt_value(RtFn::StrToInt, vec![Operand::Var(first)], Repr::Int, span)
                }
                _ => first,
            },
            Builtin::ToString => {
                if arg_ty == Type::String {
                    first
                } else {
                    let arg_ty = self.type_imm(&arg_ty);
                    self.rt_value(
                        RtFn::ToString,
                        vec![Operand::Var(first), arg_ty],
                        Repr::Ptr,
                        span,
                    )
                }
            }
            Builtin::MakeError => {
                let message = values.get(1).copied().unwrap_or(first);
                let ty = self.type_imm(ty);
                self.rt_value(
                    RtFn::MakeError,
                    vec![Operand::Var(first), Operand::Var(message), ty],
                    Repr::Ptr,
                    span,
                )
            }
        })
    }

    fn method(&mut self, method: Method, args: &[hir::Expr], ty: &Type, span: Span) -> Option<Var> {
        let receiver_ty = args.first().map(|a| a.ty.clone()).unwrap_or(Type::Void);
        let element_ty = element_type(&receiver_ty);
        let element_repr = repr_of(&element_ty);
        let values: Vec<Var> = args.iter().map(|a| self.value(a)).collect();
        let mut operands: Vec<Operand> = values.iter().map(|&v| Operand::Var(v)).collect();
        let (func, extra): (RtFn, Vec<Operand>) = match method {
            Method::StrLen => (RtFn::StrLen, vec![]),
            Method::StrUpper => (RtFn::StrUpper, vec![]),
            Method::StrLower => (RtFn::StrLower, vec![]),
            Method::StrTrim => (RtFn::StrTrim, vec![]),
            Method::StrContains => (RtFn::StrContains, vec![]),
            Method::StrStartsWith => (RtFn::StrStartsWith, vec![]),
            Method::StrEndsWith => (RtFn::StrEndsWith, vec![]),
            Method::StrSplit => (RtFn::StrSplit, vec![]),
            Method::StrReplace => (RtFn::StrReplace, vec![]),
            Method::StrIndexOf => (RtFn::StrIndexOf, vec![]),
            Method::StrSubstring | Method::ListSlice => {
                let func = if method == Method::StrSubstring {
                    RtFn::StrSubstring
                } else {
                    RtFn::ListSlice
                };
                if values.len() >= 3 {
                    (func, vec![Operand::Imm(1)])
                } else {
                    (func, vec![Operand::Imm(0), Operand::Imm(0)])
                }
            }
            Method::ListLen => (RtFn::ListLen, vec![]),
            Method::ListPush => (RtFn::ListPush, vec![Operand::Imm(element_repr.code())]),
            Method::ListPop => {
                let optional = *ty != element_ty;
                (
                    RtFn::ListPop,
                    vec![
                        Operand::Imm(element_repr.code()),
                        Operand::Imm(optional as i64),
                    ],
                )
            }
            Method::ListContains => (RtFn::ListContains, vec![Operand::Imm(element_repr.code())]),
            Method::ListSort => (RtFn::ListSort, vec![]),
            Method::ListReverse => (RtFn::ListReverse, vec![]),
            Method::ListJoin => {
                let element = self.type_imm(&element_ty);
                (RtFn::ListJoin, vec![element])
            }
            Method::MapLen => (RtFn::MapLen, vec![]),
            Method::MapGet => (
                RtFn::MapGetOptional,
                vec![Operand::Imm(element_repr.code())],
            ),
            Method::MapKeys => (RtFn::MapKeys, vec![]),
            Method::MapValues => (RtFn::MapValues, vec![]),
            Method::MapContainsKey => (RtFn::MapContainsKey, vec![]),
            Method::MapRemove => (RtFn::MapRemove, vec![Operand::Imm(element_repr.code())]),
        };
        operands.extend(extra);
        if method == Method::MapRemove {
            // Always a `T?` new reference: own it even when the script ignores it.
            let removed = self.rt_value(func, operands, Repr::Ptr, span);
            return (*ty != Type::Void).then_some(removed);
        }
        self.rt_typed(func, operands, ty, span)
    }
}
