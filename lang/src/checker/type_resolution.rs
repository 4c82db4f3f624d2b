//! Type expressions to [`Type`]s, and `type` aliases.
//!
//! Promise: every `type` declaration is resolved once, in any order (a type
//! may be used before it is declared); a declaration that refers to itself,
//! directly or through others, is reported once as `RECURSIVE_TYPE` and
//! becomes `Type::Error`. Named record types keep their name for messages;
//! equality stays structural.

use super::{Checker, error_value_type, nearest_name};
use crate::ast;
use crate::codes;
use crate::diagnostics::Diagnostic;
use crate::types::{RecordType, Type};

/// The names of the built-in types, for "did you mean" and duplicate checks.
const PRIMITIVE_TYPE_NAMES: [&str; 6] = ["int", "float", "bool", "string", "json", "void"];

/// One `type Name = T` declaration and how far its resolution got.
#[derive(Debug)]
pub(super) struct Alias {
    declaration: ast::TypeDecl,
    state: AliasState,
}

#[derive(Debug)]
enum AliasState {
    Pending,
    /// Being resolved; a reference now is a cycle. `cycle_reported` keeps
    /// the cycle to one diagnostic.
    Resolving {
        cycle_reported: bool,
    },
    Done(Type),
}

impl Checker<'_> {
    /// Registers every `type` declaration, then resolves each (reporting the
    /// mistakes inside them once).
    pub(super) fn collect_type_declarations(&mut self, file: &ast::File) {
        let mut duplicates = Vec::new();
        for item in &file.items {
            let ast::Item::Type(declaration) = item else {
                continue;
            };
            let name = declaration.name.name.as_str();
            let builtin = PRIMITIVE_TYPE_NAMES.contains(&name)
                || name == "Error"
                || self.options.modules.named_type(name).is_some()
                || self.host_type_names.iter().any(|h| h == name);
            if builtin {
                self.report(
                    Diagnostic::error(
                        codes::DUPLICATE_DEFINITION,
                        declaration.name.span,
                        format!("`{name}` is a built-in type and cannot be redefined"),
                    )
                    .with_primary_label("redefines a built-in type")
                    .with_help("choose another name"),
                );
                duplicates.push(declaration);
            } else if let Some(&first) = self.alias_by_name.get(name) {
                let first_span = self.aliases[first].declaration.name.span;
                self.report(
                    Diagnostic::error(
                        codes::DUPLICATE_DEFINITION,
                        declaration.name.span,
                        format!("type `{name}` is declared twice"),
                    )
                    .with_primary_label("second declaration")
                    .with_label(first_span, "first declared here"),
                );
                duplicates.push(declaration);
            } else {
                self.alias_by_name
                    .insert(name.to_string(), self.aliases.len());
                self.aliases.push(Alias {
                    declaration: declaration.clone(),
                    state: AliasState::Pending,
                });
            }
        }
        for index in 0..self.aliases.len() {
            let span = self.aliases[index].declaration.name.span;
            self.resolve_alias(index, span);
        }
        // A rejected declaration still gets its own mistakes reported.
        for declaration in duplicates {
            self.resolve_type(&declaration.ty, false);
        }
    }

    /// Resolves a written type. `void` is only accepted where `allow_void`
    /// (a function's return type).
    pub(super) fn resolve_type(&mut self, written: &ast::TypeExpr, allow_void: bool) -> Type {
        match &written.kind {
            ast::TypeExprKind::Named(ident) => match ident.name.as_str() {
                "int" => Type::Int,
                "float" => Type::Float,
                "bool" => Type::Bool,
                "string" => Type::String,
                "json" => Type::Json,
                "void" if allow_void => Type::Void,
                "void" => {
                    self.report(
                        Diagnostic::error(
                            codes::TYPE_MISMATCH,
                            ident.span,
                            "`void` can only be the return type of a function",
                        )
                        .with_primary_label("not a value type"),
                    );
                    Type::Error
                }
                _ => self.resolve_named_type(ident),
            },
            ast::TypeExprKind::List(element) => Type::list(self.resolve_type(element, false)),
            ast::TypeExprKind::Map(value) => Type::map(self.resolve_type(value, false)),
            ast::TypeExprKind::Optional(inner) => Type::optional(self.resolve_type(inner, false)),
            ast::TypeExprKind::Record(fields) => {
                let mut resolved: Vec<(String, Type)> = Vec::new();
                let mut spans: Vec<(String, crate::span::Span)> = Vec::new();
                for field in fields {
                    let ty = self.resolve_type(&field.ty, false);
                    if let Some((_, first_span)) = spans.iter().find(|(n, _)| *n == field.name.name)
                    {
                        let first_span = *first_span;
                        self.report(
                            Diagnostic::error(
                                codes::DUPLICATE_DEFINITION,
                                field.name.span,
                                format!("field `{}` is declared twice", field.name.name),
                            )
                            .with_primary_label("second declaration")
                            .with_label(first_span, "first declared here"),
                        );
                        continue;
                    }
                    spans.push((field.name.name.clone(), field.name.span));
                    resolved.push((field.name.name.clone(), ty));
                }
                Type::Record(RecordType::new(None, resolved))
            }
            ast::TypeExprKind::Error => Type::Error,
        }
    }

    fn resolve_named_type(&mut self, ident: &ast::Ident) -> Type {
        let name = ident.name.as_str();
        if let Some(&index) = self.alias_by_name.get(name) {
            return self.resolve_alias(index, ident.span);
        }
        if let Some(ty) = self.options.modules.named_type(name) {
            return ty.clone();
        }
        if name == "Error" {
            return error_value_type();
        }
        if self.host_type_names.iter().any(|h| h == name) {
            return Type::Host(name.to_string());
        }
        let mut candidates: Vec<&str> = PRIMITIVE_TYPE_NAMES.to_vec();
        candidates.extend(["list", "map", "Error"]);
        candidates.extend(self.alias_by_name.keys().map(String::as_str));
        candidates.extend(self.options.modules.types.iter().map(|(n, _)| n.as_str()));
        candidates.extend(self.host_type_names.iter().map(String::as_str));
        let mut diagnostic = Diagnostic::error(
            codes::UNKNOWN_TYPE,
            ident.span,
            format!("unknown type `{name}`"),
        )
        .with_primary_label("not a built-in type or a `type` declared in this file");
        if let Some(suggestion) = nearest_name(name, candidates) {
            diagnostic = diagnostic.with_help(format!("did you mean `{suggestion}`?"));
        } else {
            diagnostic = diagnostic.with_help(format!("declare it: `type {name} = {{ ... }}`"));
        }
        self.report(diagnostic);
        Type::Error
    }

    /// The type an alias stands for; `reference` is where it is used (the
    /// label of a cycle diagnostic).
    fn resolve_alias(&mut self, index: usize, reference: crate::span::Span) -> Type {
        match &mut self.aliases[index].state {
            AliasState::Done(ty) => ty.clone(),
            AliasState::Resolving { cycle_reported } => {
                if !*cycle_reported {
                    *cycle_reported = true;
                    let declaration = &self.aliases[index].declaration;
                    let name = declaration.name.name.clone();
                    let declaration_span = declaration.name.span;
                    let mut diagnostic = Diagnostic::error(
                        codes::RECURSIVE_TYPE,
                        reference,
                        format!("type `{name}` refers to itself"),
                    )
                    .with_primary_label(format!("`{name}` is used inside its own definition"))
                    .with_help("SCL records cannot be recursive; use `json` for nested data of unknown depth");
                    if declaration_span != reference {
                        diagnostic = diagnostic.with_label(declaration_span, "declared here");
                    }
                    self.report(diagnostic);
                }
                Type::Error
            }
            AliasState::Pending => {
                self.aliases[index].state = AliasState::Resolving {
                    cycle_reported: false,
                };
                let written = self.aliases[index].declaration.ty.clone();
                let name = self.aliases[index].declaration.name.name.clone();
                let mut ty = self.resolve_type(&written, false);
                if let Type::Record(record) = &mut ty
                    && record.name.is_none()
                {
                    record.name = Some(name);
                }
                if matches!(
                    self.aliases[index].state,
                    AliasState::Resolving {
                        cycle_reported: true
                    }
                ) {
                    ty = Type::Error;
                }
                self.aliases[index].state = AliasState::Done(ty.clone());
                ty
            }
        }
    }
}
