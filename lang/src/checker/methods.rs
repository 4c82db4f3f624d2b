//! Calls of script functions and built-in functions, and methods on values.
//!
//! Promise: `f(args)` resolves to a function of the file (declared anywhere
//! in it) or to a built-in (`float`, `int`, `string`, `error`); functions are
//! not values. `value.method(args)` on a string, list or map resolves to a
//! [`hir::Method`] from the fixed table of [`value_methods`] (the receiver
//! becomes `args[0]`); on a host value or a module name it is a host call
//! (see `host_calls`). Arguments get the same implicit conversions as any
//! other place that expects a type.

use super::coercion::{Reason, error_expr, typed};
use super::{Checker, nearest_name};
use crate::ast;
use crate::codes;
use crate::diagnostics::Diagnostic;
use crate::hir;
use crate::span::Span;
use crate::types::Type;

/// The functions called by plain name that every script has.
pub const BUILTIN_FUNCTIONS: [&str; 4] = ["float", "int", "string", "error"];

pub(super) fn is_builtin_function(name: &str) -> bool {
    BUILTIN_FUNCTIONS.contains(&name)
}

/// A method of a built-in value type, for the checker and for completion.
#[derive(Clone, Debug)]
pub struct ValueMethodInfo {
    pub name: &'static str,
    pub method: hir::Method,
    /// Parameter names and types (the receiver is not listed).
    pub params: Vec<(&'static str, Type)>,
    pub ret: Type,
    pub doc: &'static str,
}

fn method(
    name: &'static str,
    method: hir::Method,
    params: Vec<(&'static str, Type)>,
    ret: Type,
    doc: &'static str,
) -> ValueMethodInfo {
    ValueMethodInfo {
        name,
        method,
        params,
        ret,
        doc,
    }
}

/// The methods of values of type `receiver` (strings, lists, maps); empty
/// for every other type.
pub fn value_methods(receiver: &Type) -> Vec<ValueMethodInfo> {
    use hir::Method as M;
    let s = || Type::String;
    match receiver {
        Type::String => vec![
            method(
                "len",
                M::StrLen,
                vec![],
                Type::Int,
                "The number of characters.",
            ),
            method(
                "upper",
                M::StrUpper,
                vec![],
                s(),
                "The string in upper case.",
            ),
            method(
                "lower",
                M::StrLower,
                vec![],
                s(),
                "The string in lower case.",
            ),
            method(
                "trim",
                M::StrTrim,
                vec![],
                s(),
                "The string without leading and trailing white space.",
            ),
            method(
                "contains",
                M::StrContains,
                vec![("text", s())],
                Type::Bool,
                "True when `text` occurs in the string.",
            ),
            method(
                "starts_with",
                M::StrStartsWith,
                vec![("prefix", s())],
                Type::Bool,
                "True when the string starts with `prefix`.",
            ),
            method(
                "ends_with",
                M::StrEndsWith,
                vec![("suffix", s())],
                Type::Bool,
                "True when the string ends with `suffix`.",
            ),
            method(
                "split",
                M::StrSplit,
                vec![("separator", s())],
                Type::list(s()),
                "The parts between occurrences of `separator`.",
            ),
            method(
                "replace",
                M::StrReplace,
                vec![("from", s()), ("to", s())],
                s(),
                "Every occurrence of `from` replaced by `to`.",
            ),
            method(
                "substring",
                M::StrSubstring,
                vec![("start", Type::Int), ("end", Type::Int)],
                s(),
                "The characters from `start` up to (not including) `end`; out of range is an error.",
            ),
            method(
                "index_of",
                M::StrIndexOf,
                vec![("text", s())],
                Type::Int,
                "The character index of the first occurrence of `text`, or -1 when it does not occur.",
            ),
        ],
        Type::List(element) => {
            let element = (**element).clone();
            vec![
                method(
                    "len",
                    M::ListLen,
                    vec![],
                    Type::Int,
                    "The number of elements.",
                ),
                method(
                    "push",
                    M::ListPush,
                    vec![("value", element.clone())],
                    Type::Void,
                    "Appends `value` at the end.",
                ),
                method(
                    "pop",
                    M::ListPop,
                    vec![],
                    element.clone(),
                    "Removes and returns the last element; an empty list is an error.",
                ),
                method(
                    "contains",
                    M::ListContains,
                    vec![("value", element.clone())],
                    Type::Bool,
                    "True when an element equals `value` (lists of int, float, bool or string).",
                ),
                method(
                    "sort",
                    M::ListSort,
                    vec![],
                    Type::Void,
                    "Sorts the list in place, ascending (lists of int, float or string).",
                ),
                method(
                    "reverse",
                    M::ListReverse,
                    vec![],
                    Type::Void,
                    "Reverses the list in place.",
                ),
                method(
                    "join",
                    M::ListJoin,
                    vec![("separator", s())],
                    s(),
                    "The elements joined with `separator` between them (lists of string).",
                ),
                method(
                    "slice",
                    M::ListSlice,
                    vec![("start", Type::Int), ("end", Type::Int)],
                    Type::list(element),
                    "A new list of the elements from `start` up to (not including) `end`; out of range is an error.",
                ),
            ]
        }
        Type::Map(value) => {
            let value = (**value).clone();
            vec![
                method(
                    "len",
                    M::MapLen,
                    vec![],
                    Type::Int,
                    "The number of entries.",
                ),
                method(
                    "get",
                    M::MapGet,
                    vec![("key", s())],
                    Type::optional(value.clone()),
                    "The value for `key`, or null when absent.",
                ),
                method(
                    "keys",
                    M::MapKeys,
                    vec![],
                    Type::list(s()),
                    "The keys, in insertion order.",
                ),
                method(
                    "values",
                    M::MapValues,
                    vec![],
                    Type::list(value.clone()),
                    "The values, in insertion order.",
                ),
                method(
                    "contains_key",
                    M::MapContainsKey,
                    vec![("key", s())],
                    Type::Bool,
                    "True when `key` has an entry.",
                ),
                method(
                    "remove",
                    M::MapRemove,
                    vec![("key", s())],
                    Type::optional(value),
                    "Removes the entry for `key` and returns its value, or null when absent.",
                ),
            ]
        }
        _ => Vec::new(),
    }
}

pub(super) fn has_value_method(receiver: &Type, name: &str) -> bool {
    value_methods(receiver).iter().any(|m| m.name == name)
}

/// Element types a list method needs, when it is restricted.
/// A test of element types, with the description of what it accepts.
type ElementRequirement = (fn(&Type) -> bool, &'static str);

fn element_requirement(method: hir::Method) -> Option<ElementRequirement> {
    match method {
        hir::Method::ListContains => Some((
            |t| {
                matches!(
                    t,
                    Type::Int | Type::Float | Type::Bool | Type::String | Type::Error
                )
            },
            "a list of `int`, `float`, `bool` or `string`",
        )),
        hir::Method::ListSort => Some((
            |t| matches!(t, Type::Int | Type::Float | Type::String | Type::Error),
            "a list of `int`, `float` or `string`",
        )),
        hir::Method::ListJoin => Some((
            |t| matches!(t, Type::String | Type::Error),
            "a `list<string>`",
        )),
        _ => None,
    }
}

impl Checker<'_> {
    /// `callee(args)`: a function of the file or a built-in.
    pub(super) fn check_call(
        &mut self,
        callee: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
    ) -> hir::Expr {
        let name = callee.name.as_str();
        if let Some(&id) = self.function_by_name.get(name) {
            return self.check_function_call(id, callee, args, span);
        }
        if is_builtin_function(name) {
            return self.check_builtin_call(callee, args, span);
        }
        let mut diagnostic = Diagnostic::error(
            codes::UNKNOWN_FUNCTION,
            callee.span,
            format!("unknown function `{name}`"),
        )
        .with_primary_label("not declared in this file, nor built in");
        if self.lookup_local(name).is_some() {
            diagnostic = diagnostic.with_help(format!(
                "`{name}` is a variable; functions are not values and variables cannot be called"
            ));
        } else if self.options.modules.is_module(name) {
            diagnostic = diagnostic.with_help(format!(
                "`{name}` is a module: call one of its functions, `{name}.Function(...)`"
            ));
        } else {
            let candidates: Vec<&str> = self
                .functions
                .iter()
                .map(|f| f.name.as_str())
                .chain(BUILTIN_FUNCTIONS)
                .collect();
            if let Some(suggestion) = nearest_name(name, candidates) {
                diagnostic = diagnostic.with_help(format!("did you mean `{suggestion}`?"));
            }
        }
        self.report(diagnostic);
        self.check_loose_arguments(args);
        error_expr(span)
    }

    fn check_function_call(
        &mut self,
        id: hir::FnId,
        callee: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
    ) -> hir::Expr {
        let signature = self.functions[id.0 as usize].clone();
        if args.len() != signature.params.len() {
            self.report(
                wrong_argument_count(
                    &signature.name,
                    signature.params.len(),
                    args.len(),
                    callee.span,
                )
                .with_label(signature.name_span, "declared here"),
            );
        }
        let mut checked = Vec::new();
        for (index, arg) in args.iter().enumerate() {
            match signature.params.get(index) {
                Some(param) => {
                    let reason = Reason::at(
                        param.ty_span,
                        format!("parameter `{}` is declared here", param.name),
                    );
                    checked.push(self.check_expr_expecting(arg, &param.ty, reason));
                }
                None => {
                    self.check_discarded(arg);
                }
            }
        }
        typed(
            hir::ExprKind::Call {
                func: id,
                args: checked,
            },
            signature.ret,
            span,
        )
    }

    /// `float(x)`, `int(x)`, `string(x)` and `error(code, message)`.
    fn check_builtin_call(
        &mut self,
        callee: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
    ) -> hir::Expr {
        let name = callee.name.as_str();
        let expected = if name == "error" { 2 } else { 1 };
        if args.len() != expected {
            self.report(wrong_argument_count(
                name,
                expected,
                args.len(),
                callee.span,
            ));
            self.check_loose_arguments(args);
            return error_expr(span);
        }
        if name == "error" {
            let reason = || Reason::note("`error(code, message)` takes two strings");
            let code = self.check_expr_expecting(&args[0], &Type::String, reason());
            let message = self.check_expr_expecting(&args[1], &Type::String, reason());
            return typed(
                hir::ExprKind::Builtin {
                    func: hir::Builtin::MakeError,
                    args: vec![code, message],
                },
                super::error_value_type(),
                span,
            );
        }
        let value = self.check_expr(&args[0], None);
        if value.ty.is_error() {
            return error_expr(span);
        }
        if name == "string" {
            return match self.stringify_expr(value, "convert") {
                Some(converted) => typed(converted.kind, Type::String, span),
                None => error_expr(span),
            };
        }
        let (builtin, target, accepted) = if name == "float" {
            (
                hir::Builtin::ToFloat,
                Type::Float,
                matches!(value.ty, Type::Int | Type::String),
            )
        } else {
            (
                hir::Builtin::ToInt,
                Type::Int,
                matches!(value.ty, Type::Float | Type::String),
            )
        };
        if value.ty == target {
            // `float(2.5)` is the value itself.
            return typed(value.kind, target, span);
        }
        if !accepted {
            let help = match &value.ty {
                Type::Json => format!("convert a JSON value with `as`: `value as {target}`"),
                Type::Optional(_) => "give the optional a default with `??` first".to_string(),
                Type::Void => "this call returns nothing".to_string(),
                _ => format!(
                    "`{name}(...)` takes {}",
                    if name == "float" {
                        "an `int` or a `string`"
                    } else {
                        "a `float` or a `string`"
                    }
                ),
            };
            self.report(
                Diagnostic::error(
                    codes::INVALID_CONVERSION,
                    value.span,
                    format!("cannot convert a `{}` with `{name}(...)`", value.ty),
                )
                .with_primary_label(format!("this is `{}`", value.ty))
                .with_help(help),
            );
            return error_expr(span);
        }
        typed(
            hir::ExprKind::Builtin {
                func: builtin,
                args: vec![value],
            },
            target,
            span,
        )
    }

    /// `receiver.method(args)`: a module function (`Log.Info`), a method of a
    /// host value (`connection.Query`), or a method of a string, list or map.
    pub(super) fn check_method_call(
        &mut self,
        receiver: &ast::Expr,
        method_name: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
    ) -> hir::Expr {
        if let ast::ExprKind::Name(ident) = &receiver.kind
            && self.lookup_local(&ident.name).is_none()
        {
            if self.options.modules.is_module(&ident.name) {
                return self.check_module_call(ident, method_name, args, span);
            }
            self.report_unknown_receiver(ident);
            self.check_loose_arguments(args);
            return error_expr(span);
        }
        let receiver_hir = self.check_expr(receiver, None);
        match receiver_hir.ty.clone() {
            Type::Error => {
                self.check_loose_arguments(args);
                error_expr(span)
            }
            Type::Host(host_type) => self.check_host_method_call(
                receiver,
                receiver_hir,
                &host_type,
                method_name,
                args,
                span,
            ),
            Type::Optional(_) => {
                self.report(
                    Diagnostic::error(
                        codes::OPTIONAL_NOT_UNWRAPPED,
                        receiver_hir.span,
                        format!(
                            "cannot call `{}` on the optional `{}`",
                            method_name.name, receiver_hir.ty
                        ),
                    )
                    .with_primary_label("may be null")
                    .with_help("give a default with `??` first"),
                );
                self.check_loose_arguments(args);
                error_expr(span)
            }
            receiver_type => {
                self.check_value_method_call(receiver_hir, &receiver_type, method_name, args, span)
            }
        }
    }

    fn check_value_method_call(
        &mut self,
        receiver: hir::Expr,
        receiver_type: &Type,
        method_name: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
    ) -> hir::Expr {
        let methods = value_methods(receiver_type);
        let Some(info) = methods.iter().find(|m| m.name == method_name.name) else {
            let mut diagnostic = Diagnostic::error(
                codes::UNKNOWN_METHOD,
                method_name.span,
                format!("`{receiver_type}` has no method `{}`", method_name.name),
            )
            .with_primary_label("unknown method");
            let help = if methods.is_empty() {
                match receiver_type {
                    Type::Json => Some("a `json` value has no methods: convert it with `as` first (`value as string`, `value as list<json>`)".to_string()),
                    _ => Some(format!("values of type `{receiver_type}` have no methods")),
                }
            } else if let Some(suggestion) =
                nearest_name(&method_name.name, methods.iter().map(|m| m.name))
            {
                Some(format!("did you mean `{suggestion}`?"))
            } else {
                let names: Vec<&str> = methods.iter().map(|m| m.name).collect();
                Some(format!(
                    "the methods of `{receiver_type}` are {}",
                    names.join(", ")
                ))
            };
            if let Some(help) = help {
                diagnostic = diagnostic.with_help(help);
            }
            self.report(diagnostic);
            self.check_loose_arguments(args);
            return error_expr(span);
        };
        if let (Some((accepts, wanted)), Type::List(element)) =
            (element_requirement(info.method), receiver_type)
            && !accepts(element)
        {
            self.report(
                Diagnostic::error(
                    codes::UNKNOWN_METHOD,
                    method_name.span,
                    format!(
                        "`{}` needs {wanted}; this is a `{receiver_type}`",
                        info.name
                    ),
                )
                .with_primary_label(format!("not available on `{receiver_type}`")),
            );
            self.check_loose_arguments(args);
            return error_expr(span);
        }
        if args.len() != info.params.len() {
            self.report(wrong_argument_count(
                info.name,
                info.params.len(),
                args.len(),
                method_name.span,
            ));
        }
        let mut checked = vec![receiver];
        for (index, arg) in args.iter().enumerate() {
            match info.params.get(index) {
                Some((param_name, param_type)) => {
                    let reason =
                        Reason::note(format!("argument `{param_name}` of `{}`", info.name));
                    checked.push(self.check_expr_expecting(arg, param_type, reason));
                }
                None => {
                    self.check_discarded(arg);
                }
            }
        }
        typed(
            hir::ExprKind::Method {
                method: info.method,
                args: checked,
            },
            info.ret.clone(),
            span,
        )
    }

    /// `Name.member(...)` where `Name` is neither a local nor a module.
    fn report_unknown_receiver(&mut self, ident: &ast::Ident) {
        let name = ident.name.as_str();
        let modules = module_names(self.options.modules);
        let mut candidates = self.visible_local_names();
        candidates.extend(modules.iter().map(String::as_str));
        let mut diagnostic = Diagnostic::error(
            codes::UNKNOWN_NAME,
            ident.span,
            format!("unknown name `{name}`"),
        )
        .with_primary_label("not a variable in scope, nor a module");
        if let Some(suggestion) = nearest_name(name, candidates) {
            diagnostic = diagnostic.with_help(format!("did you mean `{suggestion}`?"));
        }
        self.report(diagnostic);
    }
}

/// The distinct module names of a table, in declaration order.
pub(super) fn module_names(modules: &crate::modules::ModuleTable) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for function in &modules.functions {
        if let crate::modules::Owner::Module(name) = &function.owner
            && !names.contains(name)
        {
            names.push(name.clone());
        }
    }
    names
}

pub(super) fn wrong_argument_count(
    name: &str,
    expected: usize,
    given: usize,
    span: Span,
) -> Diagnostic {
    let plural = if expected == 1 { "" } else { "s" };
    let verb = if given == 1 { "was" } else { "were" };
    Diagnostic::error(
        codes::WRONG_ARGUMENT_COUNT,
        span,
        format!("`{name}` takes {expected} argument{plural}, but {given} {verb} given"),
    )
    .with_primary_label(format!("expects {expected} argument{plural}"))
}
