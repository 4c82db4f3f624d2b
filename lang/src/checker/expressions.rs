//! Expressions: literals, names, fields, indexing, operators and `as`.
//!
//! Promise: each expression is checked once, with an optional *hint* (the
//! type its place expects) that literals adopt — `[]` where `list<int>` is
//! expected is a `list<int>`, `{ a: 1 }` where `map<int>` is expected is a
//! `hir::ExprKind::Map`, and where `json` is expected a record whose fields
//! are `json` and which is then converted `ToJson`. Without a hint, types are
//! inferred locally, and `[]`, `{}` and `null` cannot be (`CANNOT_INFER`).

use super::coercion::{Reason, error_expr, same_type, typed};
use super::{Checker, nearest_name};
use crate::ast::{self, BinOp, UnaryOp};
use crate::codes;
use crate::diagnostics::Diagnostic;
use crate::hir;
use crate::span::Span;
use crate::types::{RecordType, Type};

/// What a literal should become: the hint without its optional wrapper.
fn literal_hint(hint: Option<&Type>) -> Option<&Type> {
    match hint {
        Some(Type::Optional(inner)) => Some(inner),
        other => other,
    }
}

/// The result type of `lhs op rhs` for `+ - * / %`, when defined.
pub(super) fn arithmetic_result(op: BinOp, lhs: &Type, rhs: &Type) -> Option<Type> {
    match (lhs, rhs) {
        (Type::Int, Type::Int) => Some(Type::Int),
        (Type::Float, Type::Float) => Some(Type::Float),
        (Type::String, Type::String) if op == BinOp::Add => Some(Type::String),
        _ => None,
    }
}

/// A hint for operands that do not fit an operator.
pub(super) fn operand_help(lhs: &Type, rhs: &Type) -> Option<String> {
    match (lhs, rhs) {
        (Type::Int, Type::Float) | (Type::Float, Type::Int) => Some(
            "int and float do not mix: convert with `float(...)` (or `int(...)` to truncate)"
                .into(),
        ),
        (Type::String, _) | (_, Type::String) => {
            Some("convert with `string(...)`, or use interpolation: \"text ${value}\"".into())
        }
        (Type::Optional(_), _) | (_, Type::Optional(_)) => {
            Some("give the optional a default with `??` first".into())
        }
        (Type::Json, _) | (_, Type::Json) => {
            Some("convert the JSON value with `as` first, for example `value as int`".into())
        }
        _ => None,
    }
}

/// True when `==`/`!=` compares two values of this type directly.
fn has_equality(ty: &Type) -> bool {
    matches!(
        ty,
        Type::Int | Type::Float | Type::Bool | Type::String | Type::Json
    )
}

/// True when `ty` contains `json` somewhere, which `as` needs to convert from.
fn mentions_json(ty: &Type) -> bool {
    match ty {
        Type::Json => true,
        Type::List(inner) | Type::Map(inner) | Type::Optional(inner) => mentions_json(inner),
        Type::Record(record) => record.fields.iter().any(|(_, t)| mentions_json(t)),
        _ => false,
    }
}

/// True when a value of type `source` can possibly convert to `target`
/// through JSON: the shapes agree, and wherever `source` is not `json` the
/// types are the same.
fn as_shapes_agree(source: &Type, target: &Type) -> bool {
    match (source, target) {
        (Type::Json, _) | (_, Type::Json) | (Type::Error, _) | (_, Type::Error) => true,
        (Type::Optional(s), Type::Optional(t)) => as_shapes_agree(s, t),
        (Type::Optional(s), t) => as_shapes_agree(s, t),
        (s, Type::Optional(t)) => as_shapes_agree(s, t),
        (Type::List(s), Type::List(t)) | (Type::Map(s), Type::Map(t)) => as_shapes_agree(s, t),
        (Type::Map(s), Type::Record(r)) => r.fields.iter().all(|(_, t)| as_shapes_agree(s, t)),
        (Type::Record(r), Type::Map(t)) => r.fields.iter().all(|(_, s)| as_shapes_agree(s, t)),
        (Type::Record(a), Type::Record(b)) => {
            a.fields.len() == b.fields.len()
                && a.fields
                    .iter()
                    .zip(&b.fields)
                    .all(|((na, ta), (nb, tb))| na == nb && as_shapes_agree(ta, tb))
        }
        (s, t) => same_type(s, t),
    }
}

impl Checker<'_> {
    /// Checks an expression and makes it fit `expected` (with the implicit
    /// conversions), reporting a mismatch once.
    pub(super) fn check_expr_expecting(
        &mut self,
        expr: &ast::Expr,
        expected: &Type,
        reason: Option<Reason>,
    ) -> hir::Expr {
        let checked = self.check_expr(expr, Some(expected));
        self.coerce(checked, expected, reason)
    }

    /// Checks an expression. `hint` is the type its place expects, used by
    /// literals only; the caller still coerces the result.
    pub(super) fn check_expr(&mut self, expr: &ast::Expr, hint: Option<&Type>) -> hir::Expr {
        let span = expr.span;
        match &expr.kind {
            ast::ExprKind::Int(value) => typed(hir::ExprKind::Int(*value), Type::Int, span),
            ast::ExprKind::Float(value) => typed(hir::ExprKind::Float(*value), Type::Float, span),
            ast::ExprKind::Bool(value) => typed(hir::ExprKind::Bool(*value), Type::Bool, span),
            ast::ExprKind::Null => match hint {
                Some(ty @ (Type::Optional(_) | Type::Json)) => {
                    typed(hir::ExprKind::Null, ty.clone(), span)
                }
                _ => typed(hir::ExprKind::Null, Type::Null, span),
            },
            ast::ExprKind::Str(parts) => self.check_string(parts, span),
            ast::ExprKind::List(elements) => self.check_list_literal(elements, hint, span),
            ast::ExprKind::Record(fields) => self.check_record_literal(fields, hint, span),
            ast::ExprKind::Name(ident) => match self.lookup_local(&ident.name) {
                Some(local) => {
                    let ty = self.body.locals[local.0 as usize].ty.clone();
                    typed(hir::ExprKind::Local(local), ty, span)
                }
                None => {
                    self.report_unknown_name(ident);
                    error_expr(span)
                }
            },
            ast::ExprKind::Field { base, field } => self.check_field(base, field, span),
            ast::ExprKind::Index { base, index } => self.check_index(base, index, span),
            ast::ExprKind::Call { callee, args } => self.check_call(callee, args, span),
            ast::ExprKind::MethodCall {
                receiver,
                method,
                args,
            } => self.check_method_call(receiver, method, args, span),
            ast::ExprKind::Unary { op, operand } => self.check_unary(*op, operand, span),
            ast::ExprKind::Binary { op, lhs, rhs } => self.check_binary(*op, lhs, rhs, span),
            ast::ExprKind::As { expr: inner, ty } => self.check_as(inner, ty, span),
            ast::ExprKind::Error => error_expr(span),
        }
    }

    /// Checks arguments that have no expected type (after an error, or
    /// beyond a function's parameters), so their own mistakes are reported.
    pub(super) fn check_loose_arguments(&mut self, args: &[ast::Expr]) {
        for arg in args {
            self.check_discarded(arg);
        }
    }

    /// Checks an expression whose value is not used because something
    /// around it was already reported: its own mistakes are reported, but
    /// literals accept anything (the `Type::Error` hint), so `[]` or `{}`
    /// there is not a second error.
    pub(super) fn check_discarded(&mut self, expr: &ast::Expr) {
        self.check_expr(expr, Some(&Type::Error));
    }

    fn check_string(&mut self, parts: &[ast::StrPart], span: Span) -> hir::Expr {
        if parts.iter().all(|p| matches!(p, ast::StrPart::Text(_))) {
            let text: String = parts
                .iter()
                .map(|p| match p {
                    ast::StrPart::Text(text) => text.as_str(),
                    ast::StrPart::Interp(_) => "",
                })
                .collect();
            return typed(hir::ExprKind::Str(text), Type::String, span);
        }
        let mut pieces = Vec::new();
        let mut failed = false;
        for part in parts {
            match part {
                ast::StrPart::Text(text) => {
                    pieces.push(typed(hir::ExprKind::Str(text.clone()), Type::String, span));
                }
                ast::StrPart::Interp(expr) => {
                    let checked = self.check_expr(expr, None);
                    match self.stringify_expr(checked, "interpolate") {
                        Some(piece) => pieces.push(piece),
                        None => failed = true,
                    }
                }
            }
        }
        if failed {
            return error_expr(span);
        }
        typed(hir::ExprKind::Concat(pieces), Type::String, span)
    }

    /// `value` as a string (unchanged when it is one), for interpolation
    /// and `string(...)`; `None` after reporting a value that has no text.
    pub(super) fn stringify_expr(&mut self, value: hir::Expr, verb: &str) -> Option<hir::Expr> {
        let span = value.span;
        match &value.ty {
            Type::String | Type::Error => Some(value),
            Type::Void => {
                self.report(
                    Diagnostic::error(
                        codes::VOID_VALUE,
                        span,
                        format!("cannot {verb} a call that returns nothing"),
                    )
                    .with_primary_label("returns `void`"),
                );
                None
            }
            Type::Null => {
                let null = typed(hir::ExprKind::Null, Type::Json, span);
                Some(typed(
                    hir::ExprKind::Builtin {
                        func: hir::Builtin::ToString,
                        args: vec![null],
                    },
                    Type::String,
                    span,
                ))
            }
            ty if ty.is_json_representable() => Some(typed(
                hir::ExprKind::Builtin {
                    func: hir::Builtin::ToString,
                    args: vec![value],
                },
                Type::String,
                span,
            )),
            other => {
                self.report(
                    Diagnostic::error(codes::INVALID_CONVERSION, span, format!("cannot {verb} a `{other}` as text"))
                        .with_primary_label(format!("this is `{other}`"))
                        .with_help("only values that have a JSON form (numbers, strings, lists, maps, records, ...) convert to text"),
                );
                None
            }
        }
    }

    fn check_list_literal(
        &mut self,
        elements: &[ast::Expr],
        hint: Option<&Type>,
        span: Span,
    ) -> hir::Expr {
        let element_type = match literal_hint(hint) {
            Some(Type::List(element)) => Some((**element).clone()),
            Some(Type::Json) => Some(Type::Json),
            Some(Type::Error) => Some(Type::Error),
            _ => None,
        };
        if let Some(element_type) = element_type {
            let items: Vec<hir::Expr> = elements
                .iter()
                .map(|element| self.check_expr_expecting(element, &element_type, None))
                .collect();
            return typed(hir::ExprKind::List(items), Type::list(element_type), span);
        }
        if elements.is_empty() {
            match literal_hint(hint) {
                Some(other) if !other.is_error() => {
                    self.report(
                        Diagnostic::error(
                            codes::TYPE_MISMATCH,
                            span,
                            format!("expected `{other}`, found a list"),
                        )
                        .with_primary_label("this is a list"),
                    );
                }
                Some(_) => {}
                None => {
                    self.report(
                        Diagnostic::error(
                            codes::CANNOT_INFER,
                            span,
                            "cannot infer the element type of an empty list",
                        )
                        .with_primary_label("element type unknown")
                        .with_help("write the type, for example `let xs: list<string> = [];`"),
                    );
                }
            }
            return error_expr(span);
        }
        let items: Vec<hir::Expr> = elements
            .iter()
            .map(|element| self.check_expr(element, None))
            .collect();
        let has_null = items.iter().any(|item| matches!(item.ty, Type::Null));
        let Some(first) = items
            .iter()
            .find(|item| !matches!(item.ty, Type::Null | Type::Error))
        else {
            if has_null {
                self.report(
                    Diagnostic::error(
                        codes::CANNOT_INFER,
                        span,
                        "cannot infer the element type of a list of `null`s",
                    )
                    .with_primary_label("element type unknown")
                    .with_help("write the type, for example `let xs: list<int?> = [null];`"),
                );
            }
            return error_expr(span);
        };
        if matches!(first.ty, Type::Void) {
            self.report(
                Diagnostic::error(
                    codes::VOID_VALUE,
                    first.span,
                    "this call returns nothing; it cannot be a list element",
                )
                .with_primary_label("returns `void`"),
            );
            return error_expr(span);
        }
        let element_type = if has_null {
            Type::optional(first.ty.clone())
        } else {
            first.ty.clone()
        };
        let reason_span = first.span;
        let items: Vec<hir::Expr> = items
            .into_iter()
            .map(|item| {
                self.coerce(
                    item,
                    &element_type,
                    Reason::at(reason_span, "the first element sets the list's type"),
                )
            })
            .collect();
        typed(hir::ExprKind::List(items), Type::list(element_type), span)
    }

    fn check_record_literal(
        &mut self,
        fields: &[ast::FieldInit],
        hint: Option<&Type>,
        span: Span,
    ) -> hir::Expr {
        // Duplicate names are reported once and the later field is dropped.
        let mut unique: Vec<&ast::FieldInit> = Vec::new();
        for field in fields {
            if let Some(first) = unique.iter().find(|f| f.name.name == field.name.name) {
                let first_span = first.name.span;
                self.report(
                    Diagnostic::error(
                        codes::DUPLICATE_DEFINITION,
                        field.name.span,
                        format!("field `{}` is given twice", field.name.name),
                    )
                    .with_primary_label("given again here")
                    .with_label(first_span, "first given here"),
                );
                self.check_discarded(&field.value);
            } else {
                unique.push(field);
            }
        }
        match literal_hint(hint) {
            Some(Type::Record(record)) => self.check_record_against(&unique, record, span),
            Some(Type::Map(value_type)) => {
                let value_type = (**value_type).clone();
                let entries = unique
                    .iter()
                    .map(|field| {
                        (
                            field.name.name.clone(),
                            self.check_expr_expecting(&field.value, &value_type, None),
                        )
                    })
                    .collect();
                typed(hir::ExprKind::Map(entries), Type::map(value_type), span)
            }
            Some(Type::Error) => {
                for field in &unique {
                    self.check_discarded(&field.value);
                }
                error_expr(span)
            }
            Some(Type::Json) => {
                let mut values: Vec<(String, hir::Expr)> = unique
                    .iter()
                    .map(|field| {
                        (
                            field.name.name.clone(),
                            self.check_expr_expecting(&field.value, &Type::Json, None),
                        )
                    })
                    .collect();
                values.sort_by(|a, b| a.0.cmp(&b.0));
                let record_type = RecordType::new(
                    None,
                    values
                        .iter()
                        .map(|(n, _)| (n.clone(), Type::Json))
                        .collect(),
                );
                let values = values.into_iter().map(|(_, v)| v).collect();
                typed(
                    hir::ExprKind::Record(values),
                    Type::Record(record_type),
                    span,
                )
            }
            other => {
                if unique.is_empty() {
                    match other {
                        Some(other) if !other.is_error() => {
                            self.report(
                                Diagnostic::error(
                                    codes::TYPE_MISMATCH,
                                    span,
                                    format!("expected `{other}`, found a record"),
                                )
                                .with_primary_label("this is a record"),
                            );
                        }
                        Some(_) => {}
                        None => {
                            self.report(
                                Diagnostic::error(
                                    codes::CANNOT_INFER,
                                    span,
                                    "cannot infer the type of an empty `{}`",
                                )
                                .with_primary_label("a record, a map or a JSON object?")
                                .with_help("write the type, for example `let m: map<int> = {};`"),
                            );
                        }
                    }
                    return error_expr(span);
                }
                self.infer_record_literal(&unique, span)
            }
        }
    }

    /// A record literal with no expected type: its type is its fields'.
    fn infer_record_literal(&mut self, fields: &[&ast::FieldInit], span: Span) -> hir::Expr {
        let mut values: Vec<(String, hir::Expr)> = Vec::new();
        let mut failed = false;
        for field in fields {
            let value = self.check_expr(&field.value, None);
            match value.ty {
                Type::Null => {
                    self.report(
                        Diagnostic::error(
                            codes::CANNOT_INFER,
                            value.span,
                            format!(
                                "cannot infer the type of field `{}` from `null`",
                                field.name.name
                            ),
                        )
                        .with_primary_label("type unknown")
                        .with_help(
                            "declare the record's type with `type` and write it on the variable",
                        ),
                    );
                    failed = true;
                }
                Type::Void => {
                    self.report(
                        Diagnostic::error(
                            codes::VOID_VALUE,
                            value.span,
                            "this call returns nothing; it cannot be a field value",
                        )
                        .with_primary_label("returns `void`"),
                    );
                    failed = true;
                }
                _ => values.push((field.name.name.clone(), value)),
            }
        }
        if failed {
            return error_expr(span);
        }
        values.sort_by(|a, b| a.0.cmp(&b.0));
        let record_type = RecordType::new(
            None,
            values
                .iter()
                .map(|(n, v)| (n.clone(), v.ty.clone()))
                .collect(),
        );
        let values = values.into_iter().map(|(_, v)| v).collect();
        typed(
            hir::ExprKind::Record(values),
            Type::Record(record_type),
            span,
        )
    }

    /// A record literal where a record type is expected: every field of the
    /// type must be given (optional ones may be left out: they are `null`),
    /// and no other.
    fn check_record_against(
        &mut self,
        fields: &[&ast::FieldInit],
        record: &RecordType,
        span: Span,
    ) -> hir::Expr {
        let mut values: Vec<Option<hir::Expr>> = vec![None; record.fields.len()];
        let mut unknown: Vec<&ast::FieldInit> = Vec::new();
        for field in fields {
            match record.field(&field.name.name) {
                Some((index, field_type)) => {
                    let field_type = field_type.clone();
                    let value = self.check_expr_expecting(&field.value, &field_type, None);
                    if let Some(slot) = values.get_mut(index) {
                        *slot = Some(value);
                    }
                }
                None => {
                    self.check_discarded(&field.value);
                    unknown.push(field);
                }
            }
        }
        let missing: Vec<&str> = record
            .fields
            .iter()
            .zip(&values)
            .filter(|((_, ty), value)| value.is_none() && !matches!(ty, Type::Optional(_)))
            .map(|((name, _), _)| name.as_str())
            .collect();
        let record_type = Type::Record(record.clone());
        if !missing.is_empty() || !unknown.is_empty() {
            let mut problems = Vec::new();
            if !missing.is_empty() {
                let list: Vec<String> = missing.iter().map(|n| format!("`{n}`")).collect();
                let plural = if missing.len() == 1 { "" } else { "s" };
                problems.push(format!("missing field{plural} {}", list.join(", ")));
            }
            if !unknown.is_empty() {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("`{}`", f.name.name))
                    .collect();
                let plural = if unknown.len() == 1 { "" } else { "s" };
                problems.push(format!("unknown field{plural} {}", list.join(", ")));
            }
            let mut diagnostic = Diagnostic::error(
                codes::RECORD_FIELDS,
                span,
                format!(
                    "this record does not match `{record_type}`: {}",
                    problems.join("; ")
                ),
            )
            .with_primary_label(format!("expected `{record_type}`"));
            for field in &unknown {
                diagnostic = diagnostic.with_label(
                    field.name.span,
                    format!("`{record_type}` has no field `{}`", field.name.name),
                );
            }
            if let [only] = unknown.as_slice() {
                let candidates = if missing.is_empty() {
                    record.fields.iter().map(|(n, _)| n.as_str()).collect()
                } else {
                    missing.clone()
                };
                if let Some(suggestion) = nearest_name(&only.name.name, candidates) {
                    diagnostic = diagnostic.with_help(format!("did you mean `{suggestion}`?"));
                }
            }
            self.report(diagnostic);
            return error_expr(span);
        }
        let values = record
            .fields
            .iter()
            .zip(values)
            .map(|((_, ty), value)| {
                value.unwrap_or_else(|| typed(hir::ExprKind::Null, ty.clone(), span))
            })
            .collect();
        typed(hir::ExprKind::Record(values), record_type, span)
    }

    fn check_field(&mut self, base: &ast::Expr, field: &ast::Ident, span: Span) -> hir::Expr {
        let base = self.check_expr(base, None);
        let name = field.name.as_str();
        let (message, help) = match &base.ty {
            Type::Error => return error_expr(span),
            Type::Record(record) => match record.field(name) {
                Some((index, field_type)) => {
                    let field_type = field_type.clone();
                    return typed(
                        hir::ExprKind::Field {
                            base: Box::new(base),
                            index: index as u32,
                        },
                        field_type,
                        span,
                    );
                }
                None => {
                    let candidates = record.fields.iter().map(|(n, _)| n.as_str());
                    let help = match nearest_name(name, candidates) {
                        Some(suggestion) => format!("did you mean `{suggestion}`?"),
                        None => {
                            let names: Vec<String> = record
                                .fields
                                .iter()
                                .map(|(n, _)| format!("`{n}`"))
                                .collect();
                            format!("its fields are {}", names.join(", "))
                        }
                    };
                    (format!("`{}` has no field `{name}`", base.ty), Some(help))
                }
            },
            Type::Optional(inner) if matches!(**inner, Type::Record(_)) => {
                self.report(
                    Diagnostic::error(
                        codes::OPTIONAL_NOT_UNWRAPPED,
                        base.span,
                        format!("cannot read field `{name}` of the optional `{}`", base.ty),
                    )
                    .with_primary_label("may be null")
                    .with_help("give a default with `??` first"),
                );
                return error_expr(span);
            }
            Type::Json => (
                format!("a `json` value has no fields; `{name}` cannot be read with `.`"),
                Some(format!(
                    "index it: `value[\"{name}\"]`, or convert it to a record type with `as`"
                )),
            ),
            Type::Map(_) => (
                format!("a map has no fields; `{name}` cannot be read with `.`"),
                Some(format!(
                    "index it: `m[\"{name}\"]`, or `m.get(\"{name}\")` for an optional"
                )),
            ),
            other => {
                let help = if super::methods::has_value_method(other, name) {
                    Some(format!("`{name}` is a method: call it with `.{name}()`"))
                } else {
                    None
                };
                (format!("`{other}` has no field `{name}`"), help)
            }
        };
        let mut diagnostic = Diagnostic::error(codes::UNKNOWN_FIELD, field.span, message)
            .with_primary_label("unknown field");
        if let Some(help) = help {
            diagnostic = diagnostic.with_help(help);
        }
        self.report(diagnostic);
        error_expr(span)
    }

    fn check_index(&mut self, base: &ast::Expr, index: &ast::Expr, span: Span) -> hir::Expr {
        let base = self.check_expr(base, None);
        let (index, ty) = match base.ty.clone() {
            Type::Error => {
                self.check_discarded(index);
                return error_expr(span);
            }
            Type::List(element) => (self.check_index_key(index, &Type::Int, &base.ty), *element),
            Type::Map(value) => (self.check_index_key(index, &Type::String, &base.ty), *value),
            Type::Json => {
                let index = self.check_expr(index, None);
                if !matches!(index.ty, Type::Int | Type::String | Type::Error) {
                    self.report(
                        Diagnostic::error(
                            codes::NOT_INDEXABLE,
                            index.span,
                            format!(
                                "a `json` value is indexed by `int` or `string`, not `{}`",
                                index.ty
                            ),
                        )
                        .with_primary_label(format!("this is `{}`", index.ty)),
                    );
                    return error_expr(span);
                }
                (index, Type::Json)
            }
            other => {
                self.check_discarded(index);
                let (code, help) = match other {
                    Type::Optional(_) => (
                        codes::OPTIONAL_NOT_UNWRAPPED,
                        "give a default with `??` first",
                    ),
                    Type::Record(_) => (
                        codes::NOT_INDEXABLE,
                        "read a record's field with `.`: `r.name`",
                    ),
                    Type::String => (
                        codes::NOT_INDEXABLE,
                        "take a part of a string with `s.substring(start, end)`",
                    ),
                    _ => (
                        codes::NOT_INDEXABLE,
                        "only lists (by `int`), maps (by `string`) and `json` can be indexed",
                    ),
                };
                self.report(
                    Diagnostic::error(
                        code,
                        base.span,
                        format!("cannot index a value of type `{other}`"),
                    )
                    .with_primary_label(format!("this is `{other}`"))
                    .with_help(help),
                );
                return error_expr(span);
            }
        };
        typed(
            hir::ExprKind::Index {
                base: Box::new(base),
                index: Box::new(index),
            },
            ty,
            span,
        )
    }

    /// The index of `base[index]` on a list (`key_type` is `int`) or a map
    /// (`string`). Another type cannot index this value: `NOT_INDEXABLE`.
    pub(super) fn check_index_key(
        &mut self,
        index: &ast::Expr,
        key_type: &Type,
        base_type: &Type,
    ) -> hir::Expr {
        let checked = self.check_expr(index, Some(key_type));
        match super::coercion::convert(checked, key_type) {
            Ok(converted) => converted,
            Err(checked) => {
                if matches!(checked.ty, Type::Optional(_) | Type::Void | Type::Null) {
                    self.report_mismatch(&checked, key_type, None);
                } else {
                    let help = match key_type {
                        Type::Int => {
                            "a list is indexed by position; for string keys use a `map<T>`"
                        }
                        _ => "map keys are strings: convert with `string(...)`",
                    };
                    self.report(
                        Diagnostic::error(
                            codes::NOT_INDEXABLE,
                            checked.span,
                            format!(
                                "a `{base_type}` is indexed by `{key_type}`, not `{}`",
                                checked.ty
                            ),
                        )
                        .with_primary_label(format!("this is `{}`", checked.ty))
                        .with_help(help),
                    );
                }
                error_expr(checked.span)
            }
        }
    }

    fn check_unary(&mut self, op: UnaryOp, operand: &ast::Expr, span: Span) -> hir::Expr {
        let operand = self.check_expr(operand, None);
        let ty = match (op, &operand.ty) {
            (_, Type::Error) => return error_expr(span),
            (UnaryOp::Neg, Type::Int) => Type::Int,
            (UnaryOp::Neg, Type::Float) => Type::Float,
            (UnaryOp::Not, Type::Bool) => Type::Bool,
            (_, other) => {
                let (symbol, wants) = match op {
                    UnaryOp::Neg => ("-", "an `int` or a `float`"),
                    UnaryOp::Not => ("!", "a `bool`"),
                };
                self.report(
                    Diagnostic::error(
                        codes::INVALID_OPERANDS,
                        span,
                        format!("cannot apply `{symbol}` to `{other}`; it needs {wants}"),
                    )
                    .with_primary_label(format!("this is `{other}`")),
                );
                return error_expr(span);
            }
        };
        typed(
            hir::ExprKind::Unary {
                op,
                operand: Box::new(operand),
            },
            ty,
            span,
        )
    }

    fn check_binary(
        &mut self,
        op: BinOp,
        lhs: &ast::Expr,
        rhs: &ast::Expr,
        span: Span,
    ) -> hir::Expr {
        match op {
            BinOp::And | BinOp::Or => {
                let note = format!("`{}` needs `bool` operands", op.symbol());
                let lhs = self.check_expr_expecting(lhs, &Type::Bool, Reason::note(note.clone()));
                let rhs = self.check_expr_expecting(rhs, &Type::Bool, Reason::note(note));
                typed(
                    hir::ExprKind::Logical {
                        and: op == BinOp::And,
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    },
                    Type::Bool,
                    span,
                )
            }
            BinOp::Coalesce => self.check_coalesce(lhs, rhs, span),
            BinOp::Eq | BinOp::Ne => self.check_equality(op, lhs, rhs, span),
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let lhs = self.check_expr(lhs, None);
                let rhs = self.check_expr(rhs, None);
                let ordered = matches!(
                    (&lhs.ty, &rhs.ty),
                    (Type::Int, Type::Int)
                        | (Type::Float, Type::Float)
                        | (Type::String, Type::String)
                );
                if !ordered && !lhs.ty.is_error() && !rhs.ty.is_error() {
                    self.report_operands(
                        op,
                        &lhs,
                        &rhs,
                        span,
                        "only `int`, `float` and `string` values are ordered",
                    );
                }
                binary(op, lhs, rhs, Type::Bool, span)
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
                let lhs = self.check_expr(lhs, None);
                let rhs = self.check_expr(rhs, None);
                if lhs.ty.is_error() || rhs.ty.is_error() {
                    return error_expr(span);
                }
                match arithmetic_result(op, &lhs.ty, &rhs.ty) {
                    Some(ty) => binary(op, lhs, rhs, ty, span),
                    None => {
                        let needs = if op == BinOp::Add {
                            "`+` adds two `int`s or two `float`s, or joins two `string`s"
                        } else {
                            "arithmetic needs two `int`s or two `float`s"
                        };
                        self.report_operands(op, &lhs, &rhs, span, needs);
                        error_expr(span)
                    }
                }
            }
        }
    }

    fn report_operands(
        &mut self,
        op: BinOp,
        lhs: &hir::Expr,
        rhs: &hir::Expr,
        span: Span,
        needs: &str,
    ) {
        let help = operand_help(&lhs.ty, &rhs.ty).unwrap_or_else(|| needs.to_string());
        self.report(
            Diagnostic::error(
                codes::INVALID_OPERANDS,
                span,
                format!(
                    "cannot apply `{}` to `{}` and `{}`",
                    op.symbol(),
                    lhs.ty,
                    rhs.ty
                ),
            )
            .with_primary_label(format!("`{}` {} `{}`", lhs.ty, op.symbol(), rhs.ty))
            .with_label(lhs.span, format!("`{}`", lhs.ty))
            .with_label(rhs.span, format!("`{}`", rhs.ty))
            .with_help(help),
        );
    }

    /// `==` and `!=`: scalars of one type, `json` with `json` (or with a
    /// scalar, which is converted), and an optional or `json` with `null`.
    fn check_equality(
        &mut self,
        op: BinOp,
        lhs: &ast::Expr,
        rhs: &ast::Expr,
        span: Span,
    ) -> hir::Expr {
        let lhs = self.check_expr(lhs, None);
        let rhs = self.check_expr(rhs, None);
        if lhs.ty.is_error() || rhs.ty.is_error() {
            return binary(op, lhs, rhs, Type::Bool, span);
        }
        let nullable = |ty: &Type| matches!(ty, Type::Optional(_) | Type::Json);
        match (&lhs.ty, &rhs.ty) {
            (Type::Null, other) if nullable(other) => {
                let lhs = typed(hir::ExprKind::Null, other.clone(), lhs.span);
                binary(op, lhs, rhs, Type::Bool, span)
            }
            (other, Type::Null) if nullable(other) => {
                let rhs = typed(hir::ExprKind::Null, other.clone(), rhs.span);
                binary(op, lhs, rhs, Type::Bool, span)
            }
            (Type::Null, _) | (_, Type::Null) => {
                let other = if matches!(lhs.ty, Type::Null) {
                    &rhs
                } else {
                    &lhs
                };
                self.report(
                    Diagnostic::error(
                        codes::INVALID_OPERANDS,
                        span,
                        format!(
                            "a `{}` is never `null`; comparing it with `null` is a mistake",
                            other.ty
                        ),
                    )
                    .with_primary_label(format!("`{}` {} `null`", other.ty, op.symbol()))
                    .with_help("only optionals (`T?`) and `json` can be null"),
                );
                error_expr(span)
            }
            (left, right) if has_equality(left) && same_type(left, right) => {
                binary(op, lhs, rhs, Type::Bool, span)
            }
            (Type::Json, right) if has_equality(right) => {
                let rhs = self.coerce(rhs, &Type::Json, None);
                binary(op, lhs, rhs, Type::Bool, span)
            }
            (left, Type::Json) if has_equality(left) => {
                let lhs = self.coerce(lhs, &Type::Json, None);
                binary(op, lhs, rhs, Type::Bool, span)
            }
            _ => {
                self.report_operands(
                    op,
                    &lhs,
                    &rhs,
                    span,
                    "`==` compares two `int`s, `float`s, `bool`s, `string`s or `json` values, or an optional with `null`",
                );
                error_expr(span)
            }
        }
    }

    /// `value ?? default`: `value` is `T?` (or `json`), `default` a `T`.
    fn check_coalesce(&mut self, lhs: &ast::Expr, rhs: &ast::Expr, span: Span) -> hir::Expr {
        let value = self.check_expr(lhs, None);
        let result_type = match &value.ty {
            Type::Error => {
                self.check_discarded(rhs);
                return error_expr(span);
            }
            Type::Optional(inner) => (**inner).clone(),
            Type::Json => Type::Json,
            other => {
                let message = if matches!(other, Type::Null) {
                    "the left side of `??` is always `null`".to_string()
                } else {
                    format!("the left side of `??` is a `{other}`, which is never `null`")
                };
                self.report(
                    Diagnostic::error(codes::INVALID_OPERANDS, value.span, message)
                        .with_primary_label(format!("this is `{other}`"))
                        .with_help("`??` gives a default for an optional (`T?`) or `json` value; remove it"),
                );
                self.check_discarded(rhs);
                return error_expr(span);
            }
        };
        let default = self.check_expr_expecting(
            rhs,
            &result_type,
            Reason::note(format!(
                "the default of a `{}` must be a `{result_type}`",
                value.ty
            )),
        );
        typed(
            hir::ExprKind::Coalesce {
                value: Box::new(value),
                default: Box::new(default),
            },
            result_type,
            span,
        )
    }

    fn check_as(&mut self, inner: &ast::Expr, written: &ast::TypeExpr, span: Span) -> hir::Expr {
        let value = self.check_expr(inner, None);
        let target = self.resolve_type(written, false);
        if value.ty.is_error() || target.is_error() {
            return error_expr(span);
        }
        let problem = if !target.is_json_representable() {
            Some((
                format!("cannot convert to `{target}`: it has no JSON form"),
                None,
            ))
        } else if !mentions_json(&value.ty) {
            let help = if same_type(&value.ty, &target) {
                Some(format!(
                    "the value is already a `{target}`: remove `as {target}`"
                ))
            } else {
                match (&value.ty, &target) {
                    (Type::Int, Type::Float) => Some("convert with `float(...)`".to_string()),
                    (Type::Float, Type::Int) => {
                        Some("convert with `int(...)` (it truncates)".to_string())
                    }
                    (_, Type::String) => Some("convert with `string(...)`".to_string()),
                    _ => None,
                }
            };
            Some((
                format!("`as` converts JSON values; this is a `{}`", value.ty),
                help,
            ))
        } else if !as_shapes_agree(&value.ty, &target) {
            Some((
                format!("a `{}` can never convert to a `{target}`", value.ty),
                None,
            ))
        } else {
            None
        };
        if let Some((message, help)) = problem {
            let mut diagnostic = Diagnostic::error(codes::INVALID_AS, span, message)
                .with_primary_label(format!("`{}` as `{target}`", value.ty));
            if let Some(help) = help {
                diagnostic = diagnostic.with_help(help);
            }
            self.report(diagnostic);
            return error_expr(span);
        }
        typed(
            hir::ExprKind::As {
                expr: Box::new(value),
            },
            target,
            span,
        )
    }
}

fn binary(op: BinOp, lhs: hir::Expr, rhs: hir::Expr, ty: Type, span: Span) -> hir::Expr {
    typed(
        hir::ExprKind::Binary {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        },
        ty,
        span,
    )
}
