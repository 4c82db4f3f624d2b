//! Type compatibility and the two implicit conversions.
//!
//! Promise: a value is accepted where type `E` is expected when its type is
//! `E` (structurally, with `Type::Error` matching anything), or when one of the
//! two implicit conversions applies — any JSON-representable value to `json`
//! (`hir::Conversion::ToJson`) and `T` to `T?` (`hir::Conversion::ToOptional`);
//! `null` takes the optional or `json` type it meets. Containers never convert
//! element-wise: a `list<int>` is not a `list<json>` (a list *literal* adopts
//! the expected element type instead, see `expressions`).

use super::Checker;
use crate::codes;
use crate::diagnostics::Diagnostic;
use crate::hir;
use crate::span::Span;
use crate::types::Type;

/// Why a type is expected, shown as a secondary label on a mismatch.
#[derive(Clone, Debug)]
pub(super) struct Reason {
    pub span: Option<Span>,
    pub note: String,
}

impl Reason {
    pub fn at(span: Span, note: impl Into<String>) -> Option<Reason> {
        Some(Reason {
            span: Some(span),
            note: note.into(),
        })
    }

    pub fn note(note: impl Into<String>) -> Option<Reason> {
        Some(Reason {
            span: None,
            note: note.into(),
        })
    }
}

/// Structural type equality where `Type::Error` (at any depth) matches anything.
pub(super) fn same_type(found: &Type, expected: &Type) -> bool {
    match (found, expected) {
        (Type::Error, _) | (_, Type::Error) => true,
        (Type::List(a), Type::List(b)) | (Type::Map(a), Type::Map(b)) => same_type(a, b),
        (Type::Optional(a), Type::Optional(b)) => same_type(a, b),
        (Type::Record(a), Type::Record(b)) => {
            a.fields.len() == b.fields.len()
                && a.fields
                    .iter()
                    .zip(&b.fields)
                    .all(|((name_a, type_a), (name_b, type_b))| {
                        name_a == name_b && same_type(type_a, type_b)
                    })
        }
        _ => found == expected,
    }
}

/// An expression of a known type, for the checker's own constructions.
pub(super) fn typed(kind: hir::ExprKind, ty: Type, span: Span) -> hir::Expr {
    hir::Expr { kind, ty, span }
}

/// The stand-in for an expression whose checking failed. It is never
/// compiled: a file with an error yields no program.
pub(super) fn error_expr(span: Span) -> hir::Expr {
    typed(hir::ExprKind::Null, Type::Error, span)
}

/// Applies the implicit conversions that make `expr` fit `expected`, or
/// gives the expression back unchanged when none does.
pub(super) fn convert(expr: hir::Expr, expected: &Type) -> Result<hir::Expr, hir::Expr> {
    if same_type(&expr.ty, expected) {
        return Ok(expr);
    }
    match expected {
        Type::Json => {
            if matches!(expr.ty, Type::Null) {
                let span = expr.span;
                Ok(typed(hir::ExprKind::Null, Type::Json, span))
            } else if expr.ty.is_json_representable() {
                let span = expr.span;
                Ok(typed(
                    hir::ExprKind::Convert {
                        conversion: hir::Conversion::ToJson,
                        expr: Box::new(expr),
                    },
                    Type::Json,
                    span,
                ))
            } else {
                Err(expr)
            }
        }
        Type::Optional(inner) => {
            if matches!(expr.ty, Type::Null) {
                let span = expr.span;
                return Ok(typed(hir::ExprKind::Null, expected.clone(), span));
            }
            if matches!(expr.ty, Type::Optional(_)) {
                return Err(expr);
            }
            let converted = convert(expr, inner)?;
            let span = converted.span;
            Ok(typed(
                hir::ExprKind::Convert {
                    conversion: hir::Conversion::ToOptional,
                    expr: Box::new(converted),
                },
                expected.clone(),
                span,
            ))
        }
        _ => Err(expr),
    }
}

/// True when a value of type `found` is accepted where `expected` is required.
pub(super) fn convertible(found: &Type, expected: &Type) -> bool {
    if same_type(found, expected) {
        return true;
    }
    match expected {
        Type::Json => matches!(found, Type::Null) || found.is_json_representable(),
        Type::Optional(inner) => {
            matches!(found, Type::Null)
                || (!matches!(found, Type::Optional(_)) && convertible(found, inner))
        }
        _ => false,
    }
}

impl Checker<'_> {
    /// Makes `expr` fit `expected`, reporting a mismatch (once) when it cannot.
    pub(super) fn coerce(
        &mut self,
        expr: hir::Expr,
        expected: &Type,
        reason: Option<Reason>,
    ) -> hir::Expr {
        match convert(expr, expected) {
            Ok(converted) => converted,
            Err(expr) => {
                self.report_mismatch(&expr, expected, reason);
                error_expr(expr.span)
            }
        }
    }

    /// Reports that `expr` does not fit `expected`, with the most specific
    /// code and help the pair allows.
    pub(super) fn report_mismatch(
        &mut self,
        expr: &hir::Expr,
        expected: &Type,
        reason: Option<Reason>,
    ) {
        let found = &expr.ty;
        let mut message_suffix = String::new();
        if let Some(Reason { span: None, note }) = &reason {
            message_suffix = format!(" ({note})");
        }
        let mut diagnostic = match found {
            Type::Void => Diagnostic::error(
                codes::VOID_VALUE,
                expr.span,
                format!(
                    "this call returns nothing, but a `{expected}` is expected{message_suffix}"
                ),
            )
            .with_primary_label("returns `void`"),
            Type::Optional(inner) if convertible(inner, expected) => Diagnostic::error(
                codes::OPTIONAL_NOT_UNWRAPPED,
                expr.span,
                format!("expected `{expected}`, found the optional `{found}`{message_suffix}"),
            )
            .with_primary_label("may be null")
            .with_help("give a default with `??`, for example `value ?? fallback`"),
            Type::Null => Diagnostic::error(
                codes::TYPE_MISMATCH,
                expr.span,
                format!("`null` is not a `{expected}`{message_suffix}"),
            )
            .with_primary_label("null")
            .with_help(format!(
                "only optionals and `json` can be null: declare the type as `{expected}?`"
            )),
            _ => {
                let diagnostic = Diagnostic::error(
                    codes::TYPE_MISMATCH,
                    expr.span,
                    format!("expected `{expected}`, found `{found}`{message_suffix}"),
                )
                .with_primary_label(format!("this is `{found}`"));
                match mismatch_help(found, expected) {
                    Some(help) => diagnostic.with_help(help),
                    None => diagnostic,
                }
            }
        };
        if let Some(Reason {
            span: Some(span),
            note,
        }) = reason
        {
            diagnostic = diagnostic.with_label(span, note);
        }
        self.report(diagnostic);
    }
}

/// A hint for the common mismatches.
fn mismatch_help(found: &Type, expected: &Type) -> Option<String> {
    let expected_inner = match expected {
        Type::Optional(inner) => inner,
        other => other,
    };
    match (found, expected_inner) {
        (Type::Int, Type::Float) => {
            Some("convert with `float(...)`, or write a float literal such as `1.0`".into())
        }
        (Type::Float, Type::Int) => {
            Some("convert with `int(...)` (it truncates toward zero)".into())
        }
        (Type::Json, target) if target.is_json_representable() => Some(format!(
            "convert the JSON value with `as {expected_inner}` (checked at run time)"
        )),
        (_, Type::String) if found.is_json_representable() => {
            Some("convert with `string(...)`, or use interpolation: \"${...}\"".into())
        }
        (Type::List(_), Type::List(element)) if matches!(**element, Type::Json) => Some(format!(
            "a `{found}` is not a `list<json>`: write the list literal where it is used, or declare the variable as `list<json>`"
        )),
        (Type::Map(_), Type::Map(value)) if matches!(**value, Type::Json) => Some(format!(
            "a `{found}` is not a `map<json>`: write the literal where it is used, or declare the variable as `map<json>`"
        )),
        _ => None,
    }
}
