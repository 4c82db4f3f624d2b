//! Hover: the type of a local, the signature of a function, the definition
//! of a type, and the signature and documentation of built-in module
//! functions, host-value methods and methods on strings, lists and maps.

use scl_lang::Span;
use scl_lang::ast::{FnDecl, Item, TypeDecl};
use scl_lang::checker::value_methods;
use scl_lang::modules::{HostFnSig, ModuleTable, Owner, ScriptKind};
use scl_lang::types::Type;

use super::index::{Role, SymbolId, SymbolKind};
use super::{Analysis, BUILTIN_FUNCTIONS, BUILTIN_TYPES, CONTAINER_TYPES, World};

/// Hover text (Markdown) for the name at a position.
#[derive(Clone, Debug, PartialEq)]
pub struct Hover {
    /// The name hovered.
    pub span: Span,
    pub markdown: String,
}

/// What to show for the name at `offset`, if anything.
pub fn hover(analysis: &Analysis, world: &World, offset: usize) -> Option<Hover> {
    let occurrence = analysis.index().at(offset)?;
    let name = occurrence.name.as_str();
    let markdown = match &occurrence.role {
        Role::Definition(id) | Role::Reference(id) => symbol_hover(analysis, *id)?,
        Role::Module => module_hover(world.modules, name, analysis.kind),
        Role::ModuleMember { module } => {
            let id = world.modules.lookup(&Owner::Module(module.clone()), name)?;
            host_function_hover(world.modules.function(id), analysis.kind)
        }
        Role::Member { receiver, call } => member_hover(analysis, world, *receiver, name, *call)?,
        Role::BuiltinFunction => {
            let (_, signature, doc) = BUILTIN_FUNCTIONS.iter().find(|(n, _, _)| *n == name)?;
            code_block(signature, doc)
        }
        Role::BuiltinType => builtin_type_hover(world.modules, name)?,
        Role::RecordKey | Role::Unresolved | Role::UnresolvedType => return None,
    };
    Some(Hover {
        span: occurrence.span,
        markdown,
    })
}

pub(crate) fn code_block(code: &str, text: &str) -> String {
    if text.is_empty() {
        format!("```scl\n{code}\n```")
    } else {
        format!("```scl\n{code}\n```\n\n{text}")
    }
}

/// Source text on one line (declarations may be written over several).
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn find_function(analysis: &Analysis, name_span: Span) -> Option<&FnDecl> {
    analysis
        .parsed
        .file
        .items
        .iter()
        .find_map(|item| match item {
            Item::Fn(function) if function.name.span == name_span => Some(function),
            _ => None,
        })
}

fn find_type(analysis: &Analysis, name_span: Span) -> Option<&TypeDecl> {
    analysis
        .parsed
        .file
        .items
        .iter()
        .find_map(|item| match item {
            Item::Type(declaration) if declaration.name.span == name_span => Some(declaration),
            _ => None,
        })
}

/// `fn name(a: T) -> R`, from the declaration as written.
pub(crate) fn function_signature(analysis: &Analysis, function: &FnDecl) -> String {
    let params: Vec<String> = function
        .params
        .iter()
        .map(|p| format!("{}: {}", p.name.name, one_line(analysis.text(p.ty.span))))
        .collect();
    let ret = match &function.ret {
        Some(ret) => format!(" -> {}", one_line(analysis.text(ret.span))),
        None => String::new(),
    };
    format!("fn {}({}){ret}", function.name.name, params.join(", "))
}

fn symbol_hover(analysis: &Analysis, id: SymbolId) -> Option<String> {
    let symbol = analysis.index().symbol(id);
    let text = match symbol.kind {
        SymbolKind::Function => {
            let function = find_function(analysis, symbol.span)?;
            let doc = if function.name.name == "main" {
                "The script's entry point: its parameters are the script's parameters, its result the script's result."
            } else {
                ""
            };
            code_block(&function_signature(analysis, function), doc)
        }
        SymbolKind::Type => {
            let declaration = find_type(analysis, symbol.span)?;
            code_block(
                &format!(
                    "type {} = {}",
                    declaration.name.name,
                    one_line(analysis.text(declaration.ty.span))
                ),
                "",
            )
        }
        kind => {
            let ty = analysis.local_type(symbol.span);
            let typed = match ty {
                Some(ty) => format!("{}: {ty}", symbol.name),
                None => symbol.name.clone(),
            };
            let (code, what) = match kind {
                SymbolKind::Let => (format!("let {typed}"), ""),
                SymbolKind::Var => (format!("var {typed}"), ""),
                SymbolKind::Parameter => (typed, "Parameter."),
                SymbolKind::LoopVariable => (typed, "Loop variable."),
                _ => (typed, "The caught error."),
            };
            code_block(&code, what)
        }
    };
    Some(text)
}

/// `Module.Function(a: T) -> R`.
pub(crate) fn host_signature(signature: &HostFnSig) -> String {
    let params: Vec<String> = signature
        .params
        .iter()
        .map(|(n, t)| format!("{n}: {t}"))
        .collect();
    let ret = if matches!(signature.ret, Type::Void) {
        String::new()
    } else {
        format!(" -> {}", signature.ret)
    };
    format!("{}({}){ret}", signature.qualified_name(), params.join(", "))
}

/// Which script kinds may call a host function, for its documentation.
pub(crate) fn kinds_note(signature: &HostFnSig, kind: Option<ScriptKind>) -> String {
    if signature.kinds.is_empty() {
        return "Every script kind may call it.".to_string();
    }
    let names: Vec<String> = signature
        .kinds
        .iter()
        .map(|k| format!("`{}`", k.name()))
        .collect();
    let mut note = format!("Script kinds: {}.", names.join(", "));
    if let Some(kind) = kind
        && !signature.kinds.contains(&kind)
    {
        note.push_str(&format!(" **Not allowed in `{}` scripts.**", kind.name()));
    }
    note
}

pub(crate) fn host_function_hover(signature: &HostFnSig, kind: Option<ScriptKind>) -> String {
    code_block(
        &host_signature(signature),
        &format!("{}\n\n{}", signature.doc, kinds_note(signature, kind)),
    )
}

fn module_hover(modules: &ModuleTable, name: &str, kind: Option<ScriptKind>) -> String {
    let owner = Owner::Module(name.to_string());
    let members: Vec<String> = modules
        .members(&owner)
        .map(|f| {
            let allowed = match kind {
                Some(kind) => f.kinds.is_empty() || f.kinds.contains(&kind),
                None => true,
            };
            let marker = if allowed { "" } else { " (not allowed here)" };
            format!("- `{}`{marker}", host_signature(f))
        })
        .collect();
    code_block(
        &format!("module {name}"),
        &format!("Built-in module.\n\n{}", members.join("\n")),
    )
}

fn member_hover(
    analysis: &Analysis,
    world: &World,
    receiver: Span,
    name: &str,
    call: bool,
) -> Option<String> {
    let receiver_type = analysis.type_of(receiver)?;
    match receiver_type {
        Type::Host(host) => {
            let id = world.modules.lookup(&Owner::HostType(host.clone()), name)?;
            Some(host_function_hover(
                world.modules.function(id),
                analysis.kind,
            ))
        }
        Type::Record(record) if !call => {
            let (_, field_type) = record.field(name)?;
            let owner = match &record.name {
                Some(type_name) => format!("Field of `{type_name}`."),
                None => "Record field.".to_string(),
            };
            Some(code_block(&format!("{name}: {field_type}"), &owner))
        }
        Type::String | Type::List(_) | Type::Map(_) => {
            let method = value_methods(receiver_type)
                .into_iter()
                .find(|m| m.name == name)?;
            Some(code_block(
                &value_method_signature(receiver_type, &method),
                &format!("{}\n\nMethod of `{receiver_type}`.", method.doc),
            ))
        }
        _ => None,
    }
}

/// `len() -> int`.
pub(crate) fn value_method_signature(
    _receiver: &Type,
    method: &scl_lang::checker::ValueMethodInfo,
) -> String {
    let params: Vec<String> = method
        .params
        .iter()
        .map(|(n, t)| format!("{n}: {t}"))
        .collect();
    let ret = if matches!(method.ret, Type::Void) {
        String::new()
    } else {
        format!(" -> {}", method.ret)
    };
    format!("{}({}){ret}", method.name, params.join(", "))
}

fn builtin_type_hover(modules: &ModuleTable, name: &str) -> Option<String> {
    if let Some((_, doc)) = BUILTIN_TYPES
        .iter()
        .chain(CONTAINER_TYPES.iter())
        .find(|(n, _)| *n == name)
    {
        return Some(code_block(name, doc));
    }
    if name == "Error" {
        let error = scl_lang::checker::error_value_type();
        return Some(code_block(
            &format!("type Error = {}", record_text(&error)),
            "What `catch` receives and `error(code, message)` makes.",
        ));
    }
    if let Some(ty) = modules.named_type(name) {
        return Some(code_block(
            &format!("type {name} = {}", record_text(ty)),
            "Built-in type.",
        ));
    }
    let methods: Vec<String> = modules
        .members(&Owner::HostType(name.to_string()))
        .map(|f| format!("- `{}`", host_signature(f)))
        .collect();
    Some(code_block(
        name,
        &format!("A value made by the host.\n\n{}", methods.join("\n")),
    ))
}

/// A record type written out field by field (its name is not used).
fn record_text(ty: &Type) -> String {
    match ty {
        Type::Record(record) => {
            let fields: Vec<String> = record
                .fields
                .iter()
                .map(|(n, t)| format!("{n}: {t}"))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        other => other.to_string(),
    }
}
