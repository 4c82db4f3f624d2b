//! Calls into the host: module functions (`ExternalSystem.Call(...)`) and
//! methods of host values (`Database.Connection("X").Query(...)`).
//!
//! Promise: a host call is resolved through the [`ModuleTable`] only; its
//! arguments get the usual implicit conversions; when the script's kind is
//! known, a module function the kind may not use is reported once, at the
//! module call (methods of the host value it returns are not reported
//! again); when the deployment's names are known, literal names
//! (`"MES"`, `"Speed"`, ...) are checked with a "did you mean" — but not
//! after a kind error, and a method name is not checked when its system is
//! unknown (one mistake, one error).
//!
//! `HostFnSig::params` and `HostFnSig::name_args` count the written
//! arguments only; the receiver of a host-type method is not among them.

use super::coercion::{Reason, error_expr, typed};
use super::methods::wrong_argument_count;
use super::{Checker, nearest_name};
use crate::ast;
use crate::codes::{self, Code};
use crate::diagnostics::Diagnostic;
use crate::hir;
use crate::modules::{DeploymentNames, HostFnId, ModuleTable, NameRef, Owner, ScriptKind};
use crate::span::Span;

/// The text of a string literal without interpolation.
fn literal_string(expr: &ast::Expr) -> Option<String> {
    let ast::ExprKind::Str(parts) = &expr.kind else {
        return None;
    };
    let mut text = String::new();
    for part in parts {
        match part {
            ast::StrPart::Text(piece) => text.push_str(piece),
            ast::StrPart::Interp(_) => return None,
        }
    }
    Some(text)
}

/// The literal names an argument spells out: a string literal, the string
/// literals of a list literal, or the field names of a record literal
/// (`SetAttributes({ Speed: 1.0 })`).
fn literal_names(arg: &ast::Expr) -> Vec<(String, Span)> {
    match &arg.kind {
        ast::ExprKind::Str(_) => literal_string(arg)
            .map(|text| (text, arg.span))
            .into_iter()
            .collect(),
        ast::ExprKind::List(elements) => elements
            .iter()
            .filter_map(|e| literal_string(e).map(|text| (text, e.span)))
            .collect(),
        ast::ExprKind::Record(fields) => fields
            .iter()
            .map(|f| (f.name.name.clone(), f.name.span))
            .collect(),
        _ => Vec::new(),
    }
}

fn kind_allows(modules: &ModuleTable, id: HostFnId, kind: Option<ScriptKind>) -> bool {
    let signature = modules.function(id);
    match kind {
        None => true,
        Some(kind) => signature.kinds.is_empty() || signature.kinds.contains(&kind),
    }
}

impl Checker<'_> {
    /// `Module.member(args)`.
    pub(super) fn check_module_call(
        &mut self,
        module: &ast::Ident,
        member: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
    ) -> hir::Expr {
        let modules = self.options.modules;
        let owner = Owner::Module(module.name.clone());
        let Some(id) = modules.lookup(&owner, &member.name) else {
            self.report_unknown_member(&owner, member);
            self.check_loose_arguments(args);
            return error_expr(span);
        };
        let allowed = self.check_kind(id, &module.name, module.span.to(member.span));
        let checked = self.check_host_arguments(id, None, args, member.span);
        if allowed {
            self.check_deployment_names(id, args, None);
        }
        typed(
            hir::ExprKind::Host {
                func: id,
                args: checked,
            },
            modules.function(id).ret.clone(),
            span,
        )
    }

    /// `value.member(args)` on a value of host type `host_type`.
    pub(super) fn check_host_method_call(
        &mut self,
        receiver_ast: &ast::Expr,
        receiver: hir::Expr,
        host_type: &str,
        member: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
    ) -> hir::Expr {
        let modules = self.options.modules;
        let owner = Owner::HostType(host_type.to_string());
        let Some(id) = modules.lookup(&owner, &member.name) else {
            self.report_unknown_member(&owner, member);
            self.check_loose_arguments(args);
            return error_expr(span);
        };
        let checked = self.check_host_arguments(id, Some(receiver), args, member.span);
        self.check_deployment_names(id, args, Some(receiver_ast));
        typed(
            hir::ExprKind::Host {
                func: id,
                args: checked,
            },
            modules.function(id).ret.clone(),
            span,
        )
    }

    fn report_unknown_member(&mut self, owner: &Owner, member: &ast::Ident) {
        let modules = self.options.modules;
        let names: Vec<&str> = modules.members(owner).map(|f| f.name.as_str()).collect();
        let (owner_name, what, message) = match owner {
            Owner::Module(name) => (
                name,
                "function",
                format!("module `{name}` has no function `{}`", member.name),
            ),
            Owner::HostType(name) => (
                name,
                "method",
                format!("`{name}` has no method `{}`", member.name),
            ),
        };
        let mut diagnostic = Diagnostic::error(codes::UNKNOWN_MODULE_MEMBER, member.span, message)
            .with_primary_label(format!("unknown {what}"));
        if let Some(suggestion) = nearest_name(&member.name, names.iter().copied()) {
            diagnostic = diagnostic.with_help(format!("did you mean `{owner_name}.{suggestion}`?"));
        } else if !names.is_empty() {
            diagnostic = diagnostic.with_help(format!("`{owner_name}` has {}", names.join(", ")));
        }
        self.report(diagnostic);
    }

    /// Reports a module function the script's kind may not use; true when allowed.
    fn check_kind(&mut self, id: HostFnId, module: &str, span: Span) -> bool {
        let modules = self.options.modules;
        if kind_allows(modules, id, self.options.kind) {
            return true;
        }
        let Some(kind) = self.options.kind else {
            return true;
        };
        let signature = modules.function(id);
        let qualified = signature.qualified_name();
        let allowed: Vec<String> = signature
            .kinds
            .iter()
            .map(|k| format!("`{}`", k.name()))
            .collect();
        let diagnostic = if module == "Shared" && kind == ScriptKind::Api {
            Diagnostic::error(codes::SHARED_CALL_IN_API, span, "api scripts cannot call shared scripts")
                .with_primary_label("not available in api scripts")
                .with_help("api scripts run on central and shared scripts on sites: reach an instance with `Route.To(code).Call(script, params)`")
        } else if module == "Route" {
            Diagnostic::error(
                codes::ROUTE_OUTSIDE_API,
                span,
                format!("`{qualified}` is only available in api scripts; this is a {} script", kind.name()),
            )
            .with_primary_label(format!("not available in {} scripts", kind.name()))
            .with_help("a site-side script reaches its own instance with `Attributes.Get/Set` and `Scripts.Call`")
        } else {
            Diagnostic::error(
                codes::MODULE_NOT_ALLOWED,
                span,
                format!("`{qualified}` is not available in {} scripts", kind.name()),
            )
            .with_primary_label(format!("not available in {} scripts", kind.name()))
            .with_help(format!(
                "`{qualified}` may be used in {} scripts",
                allowed.join(", ")
            ))
        };
        self.report(diagnostic);
        false
    }

    /// Checks the written arguments against the signature; a host-type
    /// method's receiver comes first in the result.
    fn check_host_arguments(
        &mut self,
        id: HostFnId,
        receiver: Option<hir::Expr>,
        args: &[ast::Expr],
        name_span: Span,
    ) -> Vec<hir::Expr> {
        let signature = self.options.modules.function(id);
        let qualified = signature.qualified_name();
        if args.len() != signature.params.len() {
            self.report(wrong_argument_count(
                &qualified,
                signature.params.len(),
                args.len(),
                name_span,
            ));
        }
        let mut checked: Vec<hir::Expr> = receiver.into_iter().collect();
        for (index, arg) in args.iter().enumerate() {
            match signature.params.get(index) {
                Some((param_name, param_type)) => {
                    let reason = Reason::note(format!("argument `{param_name}` of `{qualified}`"));
                    checked.push(self.check_expr_expecting(arg, param_type, reason));
                }
                None => {
                    self.check_discarded(arg);
                }
            }
        }
        checked
    }

    /// With the deployment's names, checks the literal names among the arguments.
    fn check_deployment_names(
        &mut self,
        id: HostFnId,
        args: &[ast::Expr],
        receiver: Option<&ast::Expr>,
    ) {
        let Some(names) = self.options.names else {
            return;
        };
        let signature = self.options.modules.function(id);
        for &(index, name_ref) in &signature.name_args {
            let Some(arg) = args.get(index) else { continue };
            for (text, span) in literal_names(arg) {
                self.check_deployment_name(names, name_ref, &text, span, args, receiver);
            }
        }
    }

    fn check_deployment_name(
        &mut self,
        names: &DeploymentNames,
        name_ref: NameRef,
        text: &str,
        span: Span,
        args: &[ast::Expr],
        receiver: Option<&ast::Expr>,
    ) {
        match name_ref {
            NameRef::ExternalSystem => {
                let candidates = names
                    .external_systems
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect();
                self.check_name_in(
                    candidates,
                    text,
                    span,
                    codes::UNKNOWN_EXTERNAL_SYSTEM,
                    format!("no external system named `{text}` in the deployment"),
                    "external systems",
                );
            }
            NameRef::ExternalMethod { system_arg } => {
                let Some(system) = args.get(system_arg).and_then(literal_string) else {
                    return;
                };
                let Some((_, methods)) = names.external_systems.iter().find(|(n, _)| *n == system)
                else {
                    return;
                };
                self.check_name_in(
                    methods.iter().map(String::as_str).collect(),
                    text,
                    span,
                    codes::UNKNOWN_EXTERNAL_METHOD,
                    format!("external system `{system}` has no method `{text}`"),
                    "methods",
                );
            }
            NameRef::NotificationList => self.check_name_in(
                names
                    .notification_lists
                    .iter()
                    .map(String::as_str)
                    .collect(),
                text,
                span,
                codes::UNKNOWN_NOTIFICATION_LIST,
                format!("no notification list named `{text}` in the deployment"),
                "notification lists",
            ),
            NameRef::Database => self.check_name_in(
                names.databases.iter().map(String::as_str).collect(),
                text,
                span,
                codes::UNKNOWN_DATABASE,
                format!("no database connection named `{text}` in the deployment"),
                "database connections",
            ),
            NameRef::Instance => self.check_name_in(
                names
                    .instances
                    .iter()
                    .map(|(code, _)| code.as_str())
                    .collect(),
                text,
                span,
                codes::UNKNOWN_INSTANCE,
                format!("no instance with code `{text}` in the deployment"),
                "instances",
            ),
            NameRef::SharedScript => self.check_name_in(
                names.shared_scripts.iter().map(String::as_str).collect(),
                text,
                span,
                codes::UNKNOWN_SHARED_SCRIPT,
                format!("no shared script named `{text}` in the deployment"),
                "shared scripts",
            ),
            NameRef::Attribute | NameRef::Script => {
                let Some(template_name) = self.options.template else {
                    return;
                };
                self.check_template_member(
                    names,
                    template_name,
                    None,
                    name_ref == NameRef::Attribute,
                    text,
                    span,
                );
            }
            NameRef::RoutedAttribute | NameRef::RoutedScript => {
                let Some(code) = receiver.and_then(|r| self.routed_instance_code(r)) else {
                    return;
                };
                let Some((_, template_name)) = names.instances.iter().find(|(c, _)| *c == code)
                else {
                    return;
                };
                let attribute = name_ref == NameRef::RoutedAttribute;
                self.check_template_member(
                    names,
                    template_name,
                    Some(&code),
                    attribute,
                    text,
                    span,
                );
            }
        }
    }

    /// An attribute or script name of a template (the current instance's,
    /// or the routed instance `instance`'s).
    fn check_template_member(
        &mut self,
        names: &DeploymentNames,
        template_name: &str,
        instance: Option<&str>,
        attribute: bool,
        text: &str,
        span: Span,
    ) {
        let Some(template) = names.templates.iter().find(|t| t.name == template_name) else {
            return;
        };
        let owner = match instance {
            Some(code) => format!("instance `{code}` (template `{template_name}`)"),
            None => format!("template `{template_name}`"),
        };
        let (list, code, what, plural) = if attribute {
            (
                &template.attributes,
                codes::UNKNOWN_ATTRIBUTE,
                "attribute",
                "attributes",
            )
        } else {
            (
                &template.scripts,
                codes::UNKNOWN_SCRIPT,
                "script",
                "scripts",
            )
        };
        self.check_name_in(
            list.iter().map(String::as_str).collect(),
            text,
            span,
            code,
            format!("{owner} has no {what} `{text}`"),
            plural,
        );
    }

    fn check_name_in(
        &mut self,
        candidates: Vec<&str>,
        text: &str,
        span: Span,
        code: Code,
        message: String,
        plural: &str,
    ) {
        if candidates.contains(&text) {
            return;
        }
        let mut diagnostic =
            Diagnostic::error(code, span, message).with_primary_label("not in the deployment");
        if let Some(suggestion) = nearest_name(text, candidates.iter().copied()) {
            diagnostic = diagnostic.with_help(format!("did you mean `{suggestion}`?"));
        } else if candidates.is_empty() {
            diagnostic = diagnostic.with_help(format!("the deployment defines no {plural} here"));
        } else if candidates.len() <= 10 {
            let quoted: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
            diagnostic =
                diagnostic.with_help(format!("the deployment defines {}", quoted.join(", ")));
        }
        self.report(diagnostic);
    }

    /// The instance code in a receiver written as `Route.To("CODE")` (any
    /// module function whose argument names an instance), when the call is
    /// allowed for the script's kind.
    fn routed_instance_code(&self, receiver: &ast::Expr) -> Option<String> {
        let ast::ExprKind::MethodCall {
            receiver: module,
            method,
            args,
        } = &receiver.kind
        else {
            return None;
        };
        let ast::ExprKind::Name(module) = &module.kind else {
            return None;
        };
        if self.lookup_local(&module.name).is_some() {
            return None;
        }
        let modules = self.options.modules;
        let id = modules.lookup(&Owner::Module(module.name.clone()), &method.name)?;
        if !kind_allows(modules, id, self.options.kind) {
            return None;
        }
        let (index, _) = modules
            .function(id)
            .name_args
            .iter()
            .find(|(_, r)| *r == NameRef::Instance)?;
        literal_string(args.get(*index)?)
    }
}
