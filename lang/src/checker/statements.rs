//! Scopes, statements and control flow.
//!
//! Promise: names are looked up innermost block first; a name may be
//! redeclared in an inner block (shadowing) but not twice in one block (the
//! function's parameters and the top level of its body are one block). Each
//! statement is checked once, and the checker knows whether it can complete
//! normally, which gives `MISSING_RETURN` (a function with a result must
//! `return` or `throw` on every path; `while true` without `break` never
//! falls through) and the `UNREACHABLE_CODE` warning.

use super::coercion::{Reason, error_expr, typed};
use super::{Checker, LocalKind, LoopFrame, error_value_type, nearest_name};
use crate::ast;
use crate::codes;
use crate::diagnostics::Diagnostic;
use crate::hir;
use crate::span::Span;
use crate::types::Type;

impl Checker<'_> {
    /// Adds a local to the function (not to any scope).
    pub(super) fn new_local(
        &mut self,
        name: &str,
        span: Span,
        ty: Type,
        kind: LocalKind,
    ) -> hir::LocalId {
        let id = hir::LocalId(self.body.locals.len() as u32);
        let mutable = kind == LocalKind::Var;
        self.body.locals.push(hir::Local {
            name: name.to_string(),
            ty,
            mutable,
            span,
        });
        self.body.local_kinds.push(kind);
        id
    }

    /// Declares a local in the innermost scope, reporting a second
    /// declaration of the same name in that scope.
    /// The name `_` declares a local that can never be read, so it never
    /// clashes (`let _ = f();` twice is fine).
    pub(super) fn declare_local(
        &mut self,
        name: &ast::Ident,
        ty: Type,
        kind: LocalKind,
    ) -> hir::LocalId {
        if name.name == "_" {
            return self.new_local(&name.name, name.span, ty, kind);
        }
        let previous = self
            .body
            .scopes
            .last()
            .and_then(|scope| scope.iter().rev().find(|(n, _)| *n == name.name))
            .map(|(_, id)| *id);
        if let Some(previous) = previous {
            let previous_span = self.body.locals[previous.0 as usize].span;
            self.report(
                Diagnostic::error(
                    codes::DUPLICATE_DEFINITION,
                    name.span,
                    format!("`{}` is already declared in this block", name.name),
                )
                .with_primary_label("declared again here")
                .with_label(previous_span, "first declared here")
                .with_help(
                    "choose another name, or assign to the existing variable (declared with `var`)",
                ),
            );
        }
        let id = self.new_local(&name.name, name.span, ty, kind);
        if let Some(scope) = self.body.scopes.last_mut() {
            scope.push((name.name.clone(), id));
        }
        id
    }

    pub(super) fn lookup_local(&self, name: &str) -> Option<hir::LocalId> {
        self.body.scopes.iter().rev().find_map(|scope| {
            scope
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, id)| *id)
        })
    }

    /// Every local name in scope, innermost first, for suggestions.
    pub(super) fn visible_local_names(&self) -> Vec<&str> {
        self.body
            .scopes
            .iter()
            .rev()
            .flat_map(|scope| scope.iter().rev().map(|(n, _)| n.as_str()))
            .collect()
    }

    /// Checks a block in a scope of its own; the flag is true when the end of
    /// the block can be reached.
    pub(super) fn check_block(&mut self, block: &ast::Block) -> (hir::Block, bool) {
        self.body.scopes.push(Vec::new());
        let result = self.check_statements(&block.stmts);
        self.body.scopes.pop();
        result
    }

    /// Checks statements in the current scope.
    pub(super) fn check_statements(&mut self, statements: &[ast::Stmt]) -> (hir::Block, bool) {
        let mut checked = Vec::new();
        let mut completes = true;
        // The statement after which the rest is unreachable, once known.
        let mut ended_by: Option<Span> = None;
        let mut warned = false;
        for statement in statements {
            if let Some(end) = ended_by
                && !warned
                && !matches!(statement.kind, ast::StmtKind::Error)
            {
                warned = true;
                self.report(
                    Diagnostic::warning(
                        codes::UNREACHABLE_CODE,
                        statement.span,
                        "unreachable code",
                    )
                    .with_primary_label("this can never run")
                    .with_label(end, "any code after this is unreachable"),
                );
            }
            let (statement_hir, statement_completes) = self.check_statement(statement);
            checked.extend(statement_hir);
            if completes && !statement_completes {
                completes = false;
                // A statement the parser could not read says nothing about flow.
                if !matches!(statement.kind, ast::StmtKind::Error) {
                    ended_by = Some(statement.span);
                }
            }
        }
        (hir::Block { stmts: checked }, completes)
    }

    /// Checks one statement; the flag is true when it can complete normally.
    fn check_statement(&mut self, statement: &ast::Stmt) -> (Option<hir::Stmt>, bool) {
        let span = statement.span;
        let wrap = |kind: hir::StmtKind| Some(hir::Stmt { kind, span });
        match &statement.kind {
            ast::StmtKind::Let {
                mutable,
                name,
                ty,
                init,
            } => {
                let (local_type, init) = match ty {
                    Some(written) => {
                        let declared = self.resolve_type(written, false);
                        let init = self.check_expr_expecting(
                            init,
                            &declared,
                            Reason::at(written.span, "expected because of this type"),
                        );
                        (declared, init)
                    }
                    None => {
                        let init = self.check_expr(init, None);
                        let inferred = self.inferred_local_type(&init, name);
                        (inferred, init)
                    }
                };
                let kind = if *mutable {
                    LocalKind::Var
                } else {
                    LocalKind::Let
                };
                let local = self.declare_local(name, local_type, kind);
                (wrap(hir::StmtKind::Let { local, init }), true)
            }
            ast::StmtKind::Assign { target, op, value } => {
                (self.check_assignment(target, *op, value, span), true)
            }
            ast::StmtKind::Expr(expr) => {
                let mut expr = self.check_expr(expr, None);
                // A lone `null;` still needs a type to compile.
                if matches!(expr.ty, Type::Null) {
                    expr.ty = Type::Json;
                }
                (wrap(hir::StmtKind::Expr(expr)), true)
            }
            ast::StmtKind::If {
                cond,
                then_block,
                else_branch,
            } => {
                let cond = self.check_condition(cond);
                let (then_block, then_completes) = self.check_block(then_block);
                let (else_block, else_completes) = match else_branch.as_deref() {
                    None => (None, true),
                    Some(ast::ElseBranch::Block(block)) => {
                        let (block, completes) = self.check_block(block);
                        (Some(block), completes)
                    }
                    Some(ast::ElseBranch::If(nested)) => {
                        self.body.scopes.push(Vec::new());
                        let (nested, completes) = self.check_statement(nested);
                        self.body.scopes.pop();
                        (
                            Some(hir::Block {
                                stmts: nested.into_iter().collect(),
                            }),
                            completes,
                        )
                    }
                };
                (
                    wrap(hir::StmtKind::If {
                        cond,
                        then_block,
                        else_block,
                    }),
                    then_completes || else_completes,
                )
            }
            ast::StmtKind::While { cond, body } => {
                let endless = matches!(cond.kind, ast::ExprKind::Bool(true));
                let cond = self.check_condition(cond);
                self.body.loops.push(LoopFrame::default());
                let (body, _) = self.check_block(body);
                let frame = self.body.loops.pop().unwrap_or_default();
                (
                    wrap(hir::StmtKind::While { cond, body }),
                    !endless || frame.has_break,
                )
            }
            ast::StmtKind::For { var, iter, body } => (self.check_for(var, iter, body, span), true),
            ast::StmtKind::Break | ast::StmtKind::Continue => {
                let is_break = matches!(statement.kind, ast::StmtKind::Break);
                let word = if is_break { "break" } else { "continue" };
                match self.body.loops.last_mut() {
                    Some(frame) => {
                        if is_break {
                            frame.has_break = true;
                        }
                        let kind = if is_break {
                            hir::StmtKind::Break
                        } else {
                            hir::StmtKind::Continue
                        };
                        (wrap(kind), false)
                    }
                    None => {
                        self.report(
                            Diagnostic::error(
                                codes::BREAK_OUTSIDE_LOOP,
                                span,
                                format!("`{word}` outside of a loop"),
                            )
                            .with_primary_label(format!(
                                "`{word}` needs an enclosing `while` or `for`"
                            )),
                        );
                        (None, true)
                    }
                }
            }
            ast::StmtKind::Return(value) => (
                wrap(hir::StmtKind::Return(
                    self.check_return(value.as_ref(), span),
                )),
                false,
            ),
            ast::StmtKind::Throw(value) => {
                (wrap(hir::StmtKind::Throw(self.check_throw(value))), false)
            }
            ast::StmtKind::Try {
                body,
                catch_var,
                handler,
            } => {
                let (body, body_completes) = self.check_block(body);
                self.body.scopes.push(Vec::new());
                let catch_var =
                    self.declare_local(catch_var, error_value_type(), LocalKind::CatchVariable);
                let (handler, handler_completes) = self.check_block(handler);
                self.body.scopes.pop();
                (
                    wrap(hir::StmtKind::Try {
                        body,
                        catch_var,
                        handler,
                    }),
                    body_completes || handler_completes,
                )
            }
            // The parser reported it; what it stood for is unknown, so it is
            // not taken to fall through (no MISSING_RETURN because of it).
            ast::StmtKind::Error => (None, false),
        }
    }

    /// The type of a `let x = init` without an annotation.
    fn inferred_local_type(&mut self, init: &hir::Expr, name: &ast::Ident) -> Type {
        match &init.ty {
            Type::Null => {
                self.report(
                    Diagnostic::error(
                        codes::CANNOT_INFER,
                        init.span,
                        format!("cannot infer the type of `{}` from `null`", name.name),
                    )
                    .with_primary_label("the type of this `null` is unknown")
                    .with_help(format!(
                        "write the type: `let {}: string? = null;`",
                        name.name
                    )),
                );
                Type::Error
            }
            Type::Void => {
                self.report(
                    Diagnostic::error(
                        codes::VOID_VALUE,
                        init.span,
                        "this call returns nothing; it has no value to store",
                    )
                    .with_primary_label("returns `void`"),
                );
                Type::Error
            }
            other => other.clone(),
        }
    }

    fn check_condition(&mut self, cond: &ast::Expr) -> hir::Expr {
        self.check_expr_expecting(
            cond,
            &Type::Bool,
            Reason::note("a condition must be a `bool`"),
        )
    }

    fn check_for(
        &mut self,
        var: &ast::Ident,
        iter: &ast::ForIter,
        body: &ast::Block,
        span: Span,
    ) -> Option<hir::Stmt> {
        let kind = match iter {
            ast::ForIter::Range { start, end } => {
                let start = self.check_expr_expecting(
                    start,
                    &Type::Int,
                    Reason::note("a range is of `int`s"),
                );
                let end = self.check_expr_expecting(
                    end,
                    &Type::Int,
                    Reason::note("a range is of `int`s"),
                );
                self.body.scopes.push(Vec::new());
                let var = self.declare_local(var, Type::Int, LocalKind::LoopVariable);
                self.body.loops.push(LoopFrame::default());
                let (body, _) = self.check_block(body);
                self.body.loops.pop();
                self.body.scopes.pop();
                hir::StmtKind::ForRange {
                    var,
                    start,
                    end,
                    body,
                }
            }
            ast::ForIter::Each(iterable) => {
                let iterable = self.check_expr(iterable, None);
                let element = self.iteration_element_type(&iterable);
                self.body.scopes.push(Vec::new());
                let var = self.declare_local(var, element, LocalKind::LoopVariable);
                self.body.loops.push(LoopFrame::default());
                let (body, _) = self.check_block(body);
                self.body.loops.pop();
                self.body.scopes.pop();
                hir::StmtKind::ForEach {
                    var,
                    iterable,
                    body,
                }
            }
        };
        Some(hir::Stmt { kind, span })
    }

    /// What `for x in iterable` binds `x` to: list elements, or map keys.
    fn iteration_element_type(&mut self, iterable: &hir::Expr) -> Type {
        match &iterable.ty {
            Type::List(element) => (**element).clone(),
            Type::Map(_) => Type::String,
            Type::Error => Type::Error,
            Type::Optional(_) => {
                self.report(
                    Diagnostic::error(
                        codes::OPTIONAL_NOT_UNWRAPPED,
                        iterable.span,
                        format!("cannot iterate over the optional `{}`", iterable.ty),
                    )
                    .with_primary_label("may be null")
                    .with_help("give a default with `??`, for example `xs ?? []`"),
                );
                Type::Error
            }
            other => {
                let help = match other {
                    Type::Json => "convert it first: `for x in value as list<json> { ... }`",
                    Type::Int => "to count, use a range: `for i in 0..n { ... }`",
                    _ => "`for` iterates over a list (its elements) or a map (its keys)",
                };
                self.report(
                    Diagnostic::error(
                        codes::TYPE_MISMATCH,
                        iterable.span,
                        format!("cannot iterate over `{other}`"),
                    )
                    .with_primary_label(format!("this is `{other}`"))
                    .with_help(help),
                );
                Type::Error
            }
        }
    }

    fn check_return(&mut self, value: Option<&ast::Expr>, span: Span) -> Option<hir::Expr> {
        let ret = self.body.ret.clone();
        let ret_span = self.body.ret_span;
        match (value, &ret) {
            (None, Type::Void | Type::Error) => None,
            (None, _) => {
                let mut diagnostic = Diagnostic::error(
                    codes::RETURN_MISMATCH,
                    span,
                    format!(
                        "`{}` returns `{ret}`, so `return` needs a value",
                        self.body.function_name
                    ),
                )
                .with_primary_label("missing value");
                if let Some(ret_span) = ret_span {
                    diagnostic = diagnostic.with_label(ret_span, "return type declared here");
                }
                self.report(diagnostic);
                None
            }
            (Some(value), Type::Void) => {
                let checked = self.check_expr(value, None);
                if !checked.ty.is_error() {
                    self.report(
                        Diagnostic::error(
                            codes::RETURN_MISMATCH,
                            checked.span,
                            format!(
                                "`{}` returns nothing, but this `return` has a value",
                                self.body.function_name
                            ),
                        )
                        .with_primary_label("unexpected value")
                        .with_help(format!(
                            "declare the result type: `fn {}(...) -> {}`, or remove the value",
                            self.body.function_name,
                            if checked.ty.is_json_representable()
                                && !matches!(checked.ty, Type::Null)
                            {
                                checked.ty.to_string()
                            } else {
                                "T".to_string()
                            }
                        )),
                    );
                }
                Some(checked)
            }
            (Some(value), _) => {
                let reason = match ret_span {
                    Some(ret_span) => Reason::at(ret_span, "return type declared here"),
                    None => None,
                };
                Some(self.check_expr_expecting(value, &ret, reason))
            }
        }
    }

    /// `throw "text"` makes an `Error` with code `"error"`; `throw e` needs an `Error`.
    fn check_throw(&mut self, value: &ast::Expr) -> hir::Expr {
        let checked = self.check_expr(value, None);
        let error_type = error_value_type();
        match &checked.ty {
            Type::String => {
                let span = checked.span;
                let code = typed(hir::ExprKind::Str("error".to_string()), Type::String, span);
                typed(
                    hir::ExprKind::Builtin {
                        func: hir::Builtin::MakeError,
                        args: vec![code, checked],
                    },
                    error_type,
                    span,
                )
            }
            ty if super::coercion::same_type(ty, &error_type) => checked,
            other => {
                self.report(
                    Diagnostic::error(codes::INVALID_THROW, checked.span, format!("cannot throw a `{other}`"))
                        .with_primary_label(format!("this is `{other}`"))
                        .with_help("throw a message (`throw \"...\"`) or an `Error` (`throw error(\"code\", \"message\")`)"),
                );
                error_expr(checked.span)
            }
        }
    }

    fn check_assignment(
        &mut self,
        target: &ast::Expr,
        op: Option<ast::BinOp>,
        value: &ast::Expr,
        span: Span,
    ) -> Option<hir::Stmt> {
        let Some((place, place_type)) = self.check_place(target) else {
            // The target was reported (or unreadable); check the value on its own.
            self.check_discarded(value);
            return None;
        };
        let value = match op {
            None => self.check_expr_expecting(value, &place_type, None),
            Some(op) => {
                let value = self.check_expr(value, None);
                self.check_compound_operands(op, &place_type, &value, target.span.to(value.span));
                value
            }
        };
        Some(hir::Stmt {
            kind: hir::StmtKind::Assign { place, op, value },
            span,
        })
    }

    /// `place op= value` is `place = place op value`: the operator must
    /// give back the place's own type.
    fn check_compound_operands(
        &mut self,
        op: ast::BinOp,
        place_type: &Type,
        value: &hir::Expr,
        span: Span,
    ) {
        if place_type.is_error() || value.ty.is_error() {
            return;
        }
        let arithmetic = matches!(
            op,
            ast::BinOp::Add | ast::BinOp::Sub | ast::BinOp::Mul | ast::BinOp::Div | ast::BinOp::Rem
        );
        let result = if arithmetic {
            super::expressions::arithmetic_result(op, place_type, &value.ty)
        } else {
            None
        };
        if result.as_ref() == Some(place_type) {
            return;
        }
        let diagnostic = Diagnostic::error(
            codes::INVALID_OPERANDS,
            span,
            format!(
                "cannot apply `{}=` to `{place_type}` and `{}`",
                op.symbol(),
                value.ty
            ),
        )
        .with_primary_label(format!("`{place_type}` {}= `{}`", op.symbol(), value.ty));
        let diagnostic = match super::expressions::operand_help(place_type, &value.ty) {
            Some(help) => diagnostic.with_help(help),
            None => diagnostic,
        };
        self.report(diagnostic);
    }

    /// Resolves an assignment target to a place and its type; `None` when
    /// it is not assignable (reported) or its checking failed.
    fn check_place(&mut self, target: &ast::Expr) -> Option<(hir::Place, Type)> {
        match &target.kind {
            ast::ExprKind::Name(ident) => {
                let Some(local) = self.lookup_local(&ident.name) else {
                    self.report_unknown_name(ident);
                    return None;
                };
                let index = local.0 as usize;
                let declared = &self.body.locals[index];
                let (ty, declared_span, declared_mutable) =
                    (declared.ty.clone(), declared.span, declared.mutable);
                if !declared_mutable {
                    let kind = self.body.local_kinds[index];
                    let (what, label, help) = match kind {
                        LocalKind::Parameter => (
                            "parameter",
                            "parameter declared here",
                            format!(
                                "parameters cannot be assigned; copy it first: `var {0} = {0};`",
                                ident.name
                            ),
                        ),
                        LocalKind::LoopVariable => (
                            "loop variable",
                            "loop variable declared here",
                            "the loop sets it on every iteration; use a `var` of your own"
                                .to_string(),
                        ),
                        LocalKind::CatchVariable => (
                            "caught error",
                            "declared here",
                            "copy it into a `var` of your own".to_string(),
                        ),
                        LocalKind::Let | LocalKind::Var => (
                            "`let` variable",
                            "declared with `let` here",
                            format!(
                                "declare it with `var` to make it mutable: `var {} = ...`",
                                ident.name
                            ),
                        ),
                    };
                    self.report(
                        Diagnostic::error(
                            codes::ASSIGN_TO_IMMUTABLE,
                            ident.span,
                            format!("cannot assign to the {what} `{}`", ident.name),
                        )
                        .with_primary_label("cannot be assigned")
                        .with_label(declared_span, label)
                        .with_help(help),
                    );
                }
                Some((hir::Place::Local(local), ty))
            }
            ast::ExprKind::Index { base, index } => {
                let base = self.check_expr(base, None);
                match base.ty.clone() {
                    Type::List(element) => {
                        let index = self.check_index_key(index, &Type::Int, &base.ty);
                        Some((hir::Place::ListElement { list: base, index }, *element))
                    }
                    Type::Map(value) => {
                        let key = self.check_index_key(index, &Type::String, &base.ty);
                        Some((hir::Place::MapEntry { map: base, key }, *value))
                    }
                    Type::Error => {
                        self.check_discarded(index);
                        None
                    }
                    other => {
                        self.check_discarded(index);
                        let help = match other {
                            Type::Json => {
                                "a `json` value cannot be changed in place: convert it (`as map<json>` or `as list<json>`) into a variable, change that, and convert back"
                            }
                            Type::Optional(_) => "give a default with `??` first",
                            _ => {
                                "only list elements `xs[i]` and map entries `m[k]` can be assigned"
                            }
                        };
                        self.report(
                            Diagnostic::error(
                                codes::INVALID_ASSIGNMENT_TARGET,
                                target.span,
                                format!("cannot assign into a `{other}`"),
                            )
                            .with_primary_label("not an assignable element")
                            .with_help(help),
                        );
                        None
                    }
                }
            }
            ast::ExprKind::Field { base, field } => {
                let base = self.check_expr(base, None);
                if !base.ty.is_error() {
                    self.report(
                        Diagnostic::error(
                            codes::INVALID_ASSIGNMENT_TARGET,
                            target.span,
                            format!("cannot assign to the field `{}`: records are values", field.name),
                        )
                        .with_primary_label("not assignable")
                        .with_help("build a new record (`r = { ...fields... };` on a `var`), or use a `map<T>`"),
                    );
                }
                None
            }
            ast::ExprKind::Error => None,
            _ => {
                // The parser only hands us names, indexing and fields; anything
                // else is reported here in case a tree is built by hand.
                let checked = self.check_expr(target, None);
                if !checked.ty.is_error() {
                    self.report(
                        Diagnostic::error(
                            codes::INVALID_ASSIGNMENT_TARGET,
                            target.span,
                            "cannot assign to this expression",
                        )
                        .with_primary_label("not a variable, list element or map entry"),
                    );
                }
                None
            }
        }
    }

    /// `UNKNOWN_NAME` for a name that is not a local, with the nearest local
    /// (or module) as a suggestion.
    pub(super) fn report_unknown_name(&mut self, ident: &ast::Ident) {
        let name = ident.name.as_str();
        let mut diagnostic = Diagnostic::error(
            codes::UNKNOWN_NAME,
            ident.span,
            format!("unknown name `{name}`"),
        )
        .with_primary_label("not declared in this scope");
        if self.function_by_name.contains_key(name) {
            diagnostic = diagnostic.with_help(format!(
                "`{name}` is a function; functions are not values: call it with `{name}(...)`"
            ));
        } else if self.options.modules.is_module(name) {
            diagnostic = diagnostic.with_help(format!(
                "`{name}` is a module: call one of its functions, `{name}.Function(...)`"
            ));
        } else {
            let locals = self.visible_local_names();
            if let Some(suggestion) = nearest_name(name, locals) {
                diagnostic = diagnostic.with_help(format!("did you mean `{suggestion}`?"));
            }
        }
        self.report(diagnostic);
    }
}
