//! Stage 2: the type checker — `ast::File` in, `hir::Program` out.
//!
//! What it promises:
//! - every name is resolved (locals to [`hir::LocalId`], functions to
//!   [`hir::FnId`], module functions to [`crate::modules::HostFnId`]), every
//!   expression carries its type, and every implicit conversion (`T → json`,
//!   `T → T?`) is written out as [`hir::ExprKind::Convert`];
//! - one mistake gives one diagnostic: an expression whose checking failed has
//!   [`Type::Error`], which is compatible with every type and never reported
//!   again (nor is anything built from it);
//! - it never panics, whatever the tree looks like (the parser leaves `Error`
//!   nodes where it recovered; those check silently);
//! - it reads the host world only through [`CheckOptions`]: the module table,
//!   the script kind and, for `scl check --config`, the deployment's names.
//!
//! The work is split by topic: [`type_resolution`] (type expressions and
//! `type` aliases), [`coercion`] (type compatibility and implicit
//! conversions), [`statements`] (scopes, statements, control flow),
//! [`expressions`] (literals, names, operators, `as`), [`methods`] (built-in
//! functions and methods on values), [`host_calls`] (module calls, script
//! kinds, deployment names); "did you mean" comes from [`crate::suggest`].

use std::collections::HashMap;

use crate::ast;
use crate::codes;
use crate::diagnostics::Diagnostic;
use crate::hir;
use crate::modules::{DeploymentNames, ModuleTable, ScriptKind};
use crate::parser::Parsed;
use crate::span::Span;
use crate::types::{RecordType, Type};

mod coercion;
mod expressions;
mod host_calls;
mod methods;
mod statements;
mod type_resolution;

use crate::suggest::nearest as nearest_name;
pub use methods::{BUILTIN_FUNCTIONS, ValueMethodInfo, value_methods};

/// What the checker needs to know besides the file itself.
#[derive(Clone, Copy, Debug)]
pub struct CheckOptions<'a> {
    /// The host modules and named types the script can see.
    pub modules: &'a ModuleTable,
    /// The script's kind, when known; `None` skips the kind table.
    pub kind: Option<ScriptKind>,
    /// The deployment's names, for `scl check --config`; `None` skips the
    /// checks of literal names (external systems, attributes, scripts, ...).
    pub names: Option<&'a DeploymentNames>,
    /// The template of the instance the script belongs to, for the checks of
    /// `Attributes.Get("...")` and `Scripts.Call("...")` names.
    pub template: Option<&'a str>,
    /// Report a file without `fn main` (every script needs one).
    pub require_main: bool,
}

impl<'a> CheckOptions<'a> {
    /// Options for a script of unknown kind with no deployment: only the
    /// module table is consulted, and `main` is required.
    pub fn new(modules: &'a ModuleTable) -> CheckOptions<'a> {
        CheckOptions {
            modules,
            kind: None,
            names: None,
            template: None,
            require_main: true,
        }
    }
}

/// The output of the checker: the program (built even for a broken file, with
/// `Type::Error` where checking failed) and the checker's own diagnostics.
///
/// `diagnostics` holds only what the checker found; the parser's diagnostics
/// stay in [`Parsed::diagnostics`] (tools print both). [`Checked::into_program`]
/// considers both.
#[derive(Clone, Debug)]
pub struct Checked {
    pub program: hir::Program,
    pub diagnostics: Vec<Diagnostic>,
    /// The parser's errors, kept so that a file that did not parse never
    /// yields a program.
    parse_errors: Vec<Diagnostic>,
}

impl Checked {
    /// True when the parser or the checker reported an error (warnings do not count).
    pub fn has_errors(&self) -> bool {
        !self.parse_errors.is_empty() || self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The program, when neither the parser nor the checker reported an
    /// error; otherwise every error (the parser's first).
    pub fn into_program(self) -> Result<hir::Program, Vec<Diagnostic>> {
        if self.has_errors() {
            let mut errors = self.parse_errors;
            errors.extend(self.diagnostics.into_iter().filter(Diagnostic::is_error));
            Err(errors)
        } else {
            Ok(self.program)
        }
    }
}

/// Checks a parsed file. The checker's diagnostics come in source order;
/// the parser's are not repeated in [`Checked::diagnostics`] (see
/// [`Checked::into_program`]).
pub fn check(parsed: &Parsed, options: &CheckOptions) -> Checked {
    let parse_errors: Vec<Diagnostic> = parsed
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .cloned()
        .collect();
    let mut checker = Checker::new(options, !parse_errors.is_empty());
    let program = checker.check_file(&parsed.file);
    let mut diagnostics = checker.diagnostics;
    diagnostics.sort_by_key(|d| d.primary.span.start);
    Checked {
        program,
        diagnostics,
        parse_errors,
    }
}

/// The built-in `Error` record, the type of `catch` variables and of
/// `error(code, message)`: `{ kind: string, code: string, message: string, status: int? }`.
pub fn error_value_type() -> Type {
    Type::Record(RecordType::new(
        Some("Error".to_string()),
        vec![
            ("kind".to_string(), Type::String),
            ("code".to_string(), Type::String),
            ("message".to_string(), Type::String),
            ("status".to_string(), Type::optional(Type::Int)),
        ],
    ))
}

/// The signature of a script function, collected before any body is checked
/// so that functions can be called before their declaration.
#[derive(Clone, Debug)]
struct FunctionSignature {
    name: String,
    name_span: Span,
    params: Vec<ParamSignature>,
    ret: Type,
    /// The written return type, when there is one.
    ret_span: Option<Span>,
}

#[derive(Clone, Debug)]
struct ParamSignature {
    name: String,
    span: Span,
    ty: Type,
    ty_span: Span,
}

/// How a local came to be, for messages about assignments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LocalKind {
    Let,
    Var,
    Parameter,
    LoopVariable,
    CatchVariable,
}

/// A loop being checked: whether a `break` leaves it (for the
/// "`while true` never falls through" rule).
#[derive(Clone, Copy, Debug, Default)]
struct LoopFrame {
    has_break: bool,
}

/// The state of the function body being checked.
#[derive(Debug)]
struct BodyState {
    locals: Vec<hir::Local>,
    local_kinds: Vec<LocalKind>,
    /// Innermost scope last; each maps names to locals in declaration order.
    scopes: Vec<Vec<(String, hir::LocalId)>>,
    loops: Vec<LoopFrame>,
    ret: Type,
    ret_span: Option<Span>,
    function_name: String,
}

impl BodyState {
    fn new(function_name: &str, ret: Type, ret_span: Option<Span>) -> BodyState {
        BodyState {
            locals: Vec::new(),
            local_kinds: Vec::new(),
            scopes: vec![Vec::new()],
            loops: Vec::new(),
            ret,
            ret_span,
            function_name: function_name.to_string(),
        }
    }
}

struct Checker<'a> {
    options: &'a CheckOptions<'a>,
    /// The parser reported errors: suppress diagnostics that a missing piece
    /// of the tree would explain (`MISSING_MAIN`).
    parse_failed: bool,
    diagnostics: Vec<Diagnostic>,
    aliases: Vec<type_resolution::Alias>,
    alias_by_name: HashMap<String, usize>,
    /// Names of host types (`Connection`, `RouteTarget`, ...) in the module table.
    host_type_names: Vec<String>,
    functions: Vec<FunctionSignature>,
    function_by_name: HashMap<String, hir::FnId>,
    body: BodyState,
}

impl<'a> Checker<'a> {
    fn new(options: &'a CheckOptions<'a>, parse_failed: bool) -> Checker<'a> {
        Checker {
            options,
            parse_failed,
            diagnostics: Vec::new(),
            aliases: Vec::new(),
            alias_by_name: HashMap::new(),
            host_type_names: host_type_names(options.modules),
            functions: Vec::new(),
            function_by_name: HashMap::new(),
            body: BodyState::new("", Type::Void, None),
        }
    }

    fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn check_file(&mut self, file: &ast::File) -> hir::Program {
        self.collect_type_declarations(file);
        self.collect_function_signatures(file);
        let mut functions = Vec::new();
        let mut index = 0;
        for item in &file.items {
            if let ast::Item::Fn(declaration) = item {
                functions.push(self.check_function(declaration, index));
                index += 1;
            }
        }
        let main = self.check_main();
        hir::Program { functions, main }
    }

    fn collect_function_signatures(&mut self, file: &ast::File) {
        for item in &file.items {
            let ast::Item::Fn(declaration) = item else {
                continue;
            };
            let mut params: Vec<ParamSignature> = Vec::new();
            for param in &declaration.params {
                let ty = self.resolve_type(&param.ty, false);
                if param.name.name != "_"
                    && let Some(first) = params.iter().find(|p| p.name == param.name.name)
                {
                    let first_span = first.span;
                    self.report(
                        Diagnostic::error(
                            codes::DUPLICATE_DEFINITION,
                            param.name.span,
                            format!("parameter `{}` is declared twice", param.name.name),
                        )
                        .with_primary_label("second declaration")
                        .with_label(first_span, "first declared here"),
                    );
                }
                params.push(ParamSignature {
                    name: param.name.name.clone(),
                    span: param.name.span,
                    ty,
                    ty_span: param.ty.span,
                });
            }
            let (ret, ret_span) = match &declaration.ret {
                Some(written) => (self.resolve_type(written, true), Some(written.span)),
                None => (Type::Void, None),
            };
            let name = declaration.name.name.clone();
            let id = hir::FnId(self.functions.len() as u32);
            if methods::is_builtin_function(&name) {
                self.report(
                    Diagnostic::error(
                        codes::DUPLICATE_DEFINITION,
                        declaration.name.span,
                        format!("`{name}` is a built-in function and cannot be redefined"),
                    )
                    .with_primary_label("redefines a built-in")
                    .with_help("choose another name"),
                );
            } else if let Some(first) = self.function_by_name.get(&name) {
                let first_span = self.functions[first.0 as usize].name_span;
                self.report(
                    Diagnostic::error(
                        codes::DUPLICATE_DEFINITION,
                        declaration.name.span,
                        format!("function `{name}` is declared twice"),
                    )
                    .with_primary_label("second declaration")
                    .with_label(first_span, "first declared here"),
                );
            } else {
                self.function_by_name.insert(name.clone(), id);
            }
            self.functions.push(FunctionSignature {
                name,
                name_span: declaration.name.span,
                params,
                ret,
                ret_span,
            });
        }
    }

    fn check_function(&mut self, declaration: &ast::FnDecl, index: usize) -> hir::Function {
        let signature = self.functions[index].clone();
        self.body = BodyState::new(&signature.name, signature.ret.clone(), signature.ret_span);
        let mut params = Vec::new();
        for param in &signature.params {
            // Duplicate parameters were reported with the signature.
            let local = self.new_local(
                &param.name,
                param.span,
                param.ty.clone(),
                LocalKind::Parameter,
            );
            if param.name != "_" {
                self.body.scopes[0].push((param.name.clone(), local));
            }
            params.push(local);
        }
        // Parameters and the body's top-level declarations share one scope,
        // so `fn f(x: int) { let x = 1; }` is a duplicate (as in C# and TS).
        let (body, completes) = self.check_statements(&declaration.body.stmts);
        if completes && !matches!(signature.ret, Type::Void | Type::Error) {
            let mut diagnostic = Diagnostic::error(
                codes::MISSING_RETURN,
                declaration.name.span,
                format!(
                    "function `{}` can reach its end without returning a value",
                    signature.name
                ),
            )
            .with_primary_label("not every path returns")
            .with_help("end every path with `return` (or `throw`)");
            if let Some(ret_span) = signature.ret_span {
                diagnostic = diagnostic
                    .with_label(ret_span, format!("declared to return `{}`", signature.ret));
            }
            self.report(diagnostic);
        }
        let state = std::mem::replace(&mut self.body, BodyState::new("", Type::Void, None));
        hir::Function {
            name: signature.name,
            params,
            ret: signature.ret,
            locals: state.locals,
            body,
            span: declaration.span,
        }
    }

    /// Finds `main` and checks that its parameters and result can cross the
    /// JSON boundary.
    fn check_main(&mut self) -> Option<hir::FnId> {
        let Some(&id) = self.function_by_name.get("main") else {
            if self.options.require_main && !self.parse_failed {
                self.report(
                    Diagnostic::error(codes::MISSING_MAIN, Span::new(0, 0), "this script has no `fn main`")
                        .with_primary_label("expected `fn main(...)` in this file")
                        .with_help("add the entry point: `fn main() { ... }`; its parameters are the script's parameters"),
                );
            }
            return None;
        };
        let signature = self.functions[id.0 as usize].clone();
        for param in &signature.params {
            if !param.ty.is_json_representable() {
                self.report(
                    Diagnostic::error(
                        codes::INVALID_MAIN,
                        param.ty_span,
                        format!(
                            "`main`'s parameter `{}` has type `{}`, which cannot be passed as JSON",
                            param.name, param.ty
                        ),
                    )
                    .with_primary_label("not JSON-representable")
                    .with_help("script parameters arrive as JSON: use int, float, bool, string, json, lists, maps, records or optionals of those"),
                );
            }
        }
        if !matches!(signature.ret, Type::Void) && !signature.ret.is_json_representable() {
            let span = signature.ret_span.unwrap_or(signature.name_span);
            self.report(
                Diagnostic::error(
                    codes::INVALID_MAIN,
                    span,
                    format!("`main` returns `{}`, which cannot be returned as JSON", signature.ret),
                )
                .with_primary_label("not JSON-representable")
                .with_help("a script's result is sent as JSON: return a JSON-representable type or nothing"),
            );
        }
        Some(id)
    }
}

/// Every host type name the module table mentions, as an owner of methods or
/// in a signature.
fn host_type_names(modules: &ModuleTable) -> Vec<String> {
    fn collect(ty: &Type, names: &mut Vec<String>) {
        match ty {
            Type::Host(name) if !names.contains(name) => names.push(name.clone()),
            Type::List(inner) | Type::Map(inner) | Type::Optional(inner) => collect(inner, names),
            Type::Record(record) => record.fields.iter().for_each(|(_, t)| collect(t, names)),
            _ => {}
        }
    }
    let mut names = Vec::new();
    for function in &modules.functions {
        if let crate::modules::Owner::HostType(name) = &function.owner
            && !names.contains(name)
        {
            names.push(name.clone());
        }
        collect(&function.ret, &mut names);
        function
            .params
            .iter()
            .for_each(|(_, t)| collect(t, &mut names));
    }
    names
}
