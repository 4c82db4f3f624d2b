//! Completion: locals and parameters in scope, functions, built-ins,
//! modules and keywords where a name is expected; module functions after a
//! module's `.`; fields, methods on strings, lists and maps, and host-value
//! methods after a value's `.`; type names in types; and, inside the string
//! arguments that name deployment objects (`ExternalSystem.Call("MES",
//! "PostReading", ...)`, `Attributes.Get("Speed")`, ...), the names the
//! deployment defines.
//!
//! How: the word at the cursor is replaced by a placeholder identifier and
//! the file is analysed again, so that even `x.` (which does not parse)
//! becomes a field access whose receiver has a type. String arguments are
//! recognised from the tokens ([`super::call_context`]), which stay intact
//! while a call is being typed.

use scl_lang::Span;
use scl_lang::checker::value_methods;
use scl_lang::lexer::{self, TokenKind};
use scl_lang::modules::{HostFnSig, NameRef, Owner, ScriptKind};
use scl_lang::types::Type;

use super::call_context::{Callee, Receiver, enclosing_call, nth_string_argument};
use super::hover::{
    find_function, function_signature, host_signature, kinds_note, value_method_signature,
};
use super::index::{Role, SymbolKind};
use super::{
    Analysis, BUILTIN_FUNCTIONS, BUILTIN_TYPES, CONTAINER_TYPES, KEYWORDS, World, analyze,
};

/// The identifier put at the cursor to analyse an incomplete line.
pub const PLACEHOLDER: &str = "__scl_completion__";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionKind {
    Variable,
    Parameter,
    Function,
    Module,
    Method,
    Field,
    Type,
    Keyword,
    /// A name from the deployment (a system, a list, an attribute, ...).
    DeploymentName,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CompletionItem {
    pub label: String,
    pub kind: CompletionKind,
    /// A signature or a type.
    pub detail: Option<String>,
    /// Markdown.
    pub documentation: Option<String>,
    /// The source range the item replaces (the word at the cursor, or the
    /// text of the string argument).
    pub replace: Span,
}

/// The completions at `offset` in `source`.
pub fn completions(source: &str, world: &World, offset: usize) -> Vec<CompletionItem> {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let tokens = lexer::lex(source).tokens;
    if lexer::comments(source, &tokens)
        .iter()
        .any(|c| (c.span.start as usize) < offset && offset <= c.span.end as usize)
    {
        return Vec::new();
    }
    if let Some(string) = string_at(&tokens, offset) {
        return deployment_names(source, world, &tokens, string, offset);
    }
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let word_start = source[..offset]
        .char_indices()
        .rev()
        .find(|(_, c)| !is_word(*c))
        .map_or(0, |(index, c)| index + c.len_utf8());
    let word_end = source[offset..]
        .find(|c: char| !is_word(c))
        .map_or(source.len(), |i| offset + i);
    let replace = Span::new(word_start, word_end);
    let patched = format!(
        "{}{PLACEHOLDER}{}",
        &source[..word_start],
        &source[word_end..]
    );
    let analysis = analyze(&patched, world);
    let placeholder = analysis
        .index()
        .occurrences
        .iter()
        .find(|o| o.span.start as usize == word_start && o.name == PLACEHOLDER);
    let mut items = match placeholder.map(|o| &o.role) {
        Some(Role::Member { receiver, .. }) => {
            // `x.name` does not check when `name` is not a member, and then the
            // receiver has no type; checked alone (without `.name`), it has one.
            let dot = source[..word_start].trim_end().len().saturating_sub(1);
            let receiver_alone =
                format!("{}{}", source.get(..dot).unwrap_or(""), &source[word_end..]);
            member_items(&analyze(&receiver_alone, world), world, *receiver)
        }
        Some(Role::ModuleMember { module }) => module_items(world, module, analysis.kind),
        Some(Role::UnresolvedType | Role::BuiltinType) => type_items(&analysis, world),
        Some(Role::Reference(id)) if analysis.index().symbol(*id).kind == SymbolKind::Type => {
            type_items(&analysis, world)
        }
        Some(Role::Definition(_) | Role::RecordKey) => Vec::new(),
        Some(_) => name_items(&analysis, world, word_start),
        None => {
            let before = source[..word_start].trim_end();
            if before.ends_with('.') {
                Vec::new()
            } else {
                name_items(&analyze(source, world), world, word_start)
            }
        }
    };
    for item in &mut items {
        item.replace = replace;
    }
    items
}

fn item(
    label: &str,
    kind: CompletionKind,
    detail: Option<String>,
    documentation: Option<String>,
) -> CompletionItem {
    CompletionItem {
        label: label.to_string(),
        kind,
        detail,
        documentation,
        replace: Span::default(),
    }
}

fn allowed(signature: &HostFnSig, kind: Option<ScriptKind>) -> bool {
    match kind {
        Some(kind) => signature.kinds.is_empty() || signature.kinds.contains(&kind),
        None => true,
    }
}

/// Names where an expression is expected.
fn name_items(analysis: &Analysis, world: &World, offset: usize) -> Vec<CompletionItem> {
    let mut items = Vec::new();
    for local in analysis.index().locals_at(offset) {
        if local.name == PLACEHOLDER || local.name == "_" {
            continue;
        }
        let kind = if local.kind == SymbolKind::Parameter {
            CompletionKind::Parameter
        } else {
            CompletionKind::Variable
        };
        let detail = analysis.local_type(local.span).map(ToString::to_string);
        items.push(item(&local.name, kind, detail, None));
    }
    for symbol in analysis.index().items() {
        if symbol.kind != SymbolKind::Function || items.iter().any(|i| i.label == symbol.name) {
            continue;
        }
        let detail = find_function(analysis, symbol.span).map(|f| function_signature(analysis, f));
        items.push(item(&symbol.name, CompletionKind::Function, detail, None));
    }
    for (name, signature, doc) in BUILTIN_FUNCTIONS {
        items.push(item(
            name,
            CompletionKind::Function,
            Some(signature.to_string()),
            Some(doc.to_string()),
        ));
    }
    let mut modules: Vec<&str> = Vec::new();
    for function in &world.modules.functions {
        if let Owner::Module(module) = &function.owner
            && !modules.contains(&module.as_str())
            && allowed(function, analysis.kind)
        {
            modules.push(module);
        }
    }
    for module in modules {
        items.push(item(
            module,
            CompletionKind::Module,
            Some("built-in module".to_string()),
            None,
        ));
    }
    for keyword in KEYWORDS {
        items.push(item(keyword, CompletionKind::Keyword, None, None));
    }
    items
}

fn host_items(world: &World, owner: &Owner, kind: Option<ScriptKind>) -> Vec<CompletionItem> {
    world
        .modules
        .members(owner)
        .filter(|f| allowed(f, kind))
        .map(|f| {
            item(
                &f.name,
                CompletionKind::Method,
                Some(host_signature(f)),
                Some(format!("{}\n\n{}", f.doc, kinds_note(f, kind))),
            )
        })
        .collect()
}

fn module_items(world: &World, module: &str, kind: Option<ScriptKind>) -> Vec<CompletionItem> {
    host_items(world, &Owner::Module(module.to_string()), kind)
}

/// Members of the value at `receiver`, by its type.
fn member_items(analysis: &Analysis, world: &World, receiver: Span) -> Vec<CompletionItem> {
    let Some(ty) = analysis.type_of(receiver) else {
        return Vec::new();
    };
    match ty {
        Type::Host(name) => host_items(world, &Owner::HostType(name.clone()), analysis.kind),
        Type::Record(record) => record
            .fields
            .iter()
            .map(|(name, field_type)| {
                item(
                    name,
                    CompletionKind::Field,
                    Some(field_type.to_string()),
                    None,
                )
            })
            .collect(),
        Type::String | Type::List(_) | Type::Map(_) => value_methods(ty)
            .iter()
            .map(|method| {
                item(
                    method.name,
                    CompletionKind::Method,
                    Some(value_method_signature(ty, method)),
                    Some(method.doc.to_string()),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn type_items(analysis: &Analysis, world: &World) -> Vec<CompletionItem> {
    let mut items: Vec<CompletionItem> = BUILTIN_TYPES
        .iter()
        .chain(CONTAINER_TYPES.iter())
        .map(|(name, doc)| item(name, CompletionKind::Type, None, Some(doc.to_string())))
        .collect();
    for symbol in analysis.index().items() {
        if symbol.kind == SymbolKind::Type && symbol.name != PLACEHOLDER {
            items.push(item(&symbol.name, CompletionKind::Type, None, None));
        }
    }
    for (name, _) in &world.modules.types {
        if !items.iter().any(|i| &i.label == name) {
            items.push(item(
                name,
                CompletionKind::Type,
                Some("built-in type".to_string()),
                None,
            ));
        }
    }
    items
}

/// A string literal the cursor is in: the token index of its `"` and the
/// range of its text (up to the closing quote, or to the cursor when the
/// string is not closed yet).
#[derive(Clone, Copy, Debug)]
struct StringAt {
    start_token: usize,
    content: Span,
}

fn string_at(tokens: &[lexer::Token], offset: usize) -> Option<StringAt> {
    // Innermost last: `Some(index of StrStart)` for a string, `None` for
    // the code of an interpolation.
    let mut stack: Vec<Option<usize>> = Vec::new();
    for (index, token) in tokens.iter().enumerate() {
        if token.span.start as usize >= offset {
            break;
        }
        match token.kind {
            TokenKind::StrStart => stack.push(Some(index)),
            TokenKind::InterpStart => stack.push(None),
            TokenKind::InterpEnd | TokenKind::StrEnd => {
                stack.pop();
            }
            // An unterminated string: the cursor is in it unless past it.
            TokenKind::Error
                if matches!(stack.last(), Some(Some(_))) && (token.span.end as usize) < offset =>
            {
                stack.pop();
            }
            _ => {}
        }
    }
    let start_token = (*stack.last()?)?;
    let content_start = tokens[start_token].span.end;
    let mut end = offset as u32;
    for token in &tokens[start_token + 1..] {
        match token.kind {
            TokenKind::StrText(_) => {}
            TokenKind::StrEnd => {
                end = token.span.start;
                break;
            }
            // Interpolated strings name nothing in the deployment.
            TokenKind::InterpStart => return None,
            _ => break,
        }
    }
    Some(StringAt {
        start_token,
        content: Span {
            start: content_start,
            end: end.max(offset as u32),
        },
    })
}

/// The host function a call site calls, if it is a module function or a
/// host-value method.
fn host_function<'w>(
    source: &str,
    world: &World<'w>,
    callee: &Callee,
    offset: usize,
) -> Option<&'w HostFnSig> {
    let Callee::Member { receiver, name, .. } = callee else {
        return None;
    };
    let modules = world.modules;
    let owner = match receiver {
        Receiver::Name(module) if modules.is_module(module) => Owner::Module(module.clone()),
        Receiver::Name(local) => {
            // A local holding a host value, such as a `Connection`.
            let analysis = analyze(source, world);
            let symbol = analysis
                .index()
                .locals_at(offset)
                .into_iter()
                .find(|s| &s.name == local)?;
            match analysis.local_type(symbol.span)? {
                Type::Host(host) => Owner::HostType(host.clone()),
                _ => return None,
            }
        }
        Receiver::ModuleCall {
            module, function, ..
        } => {
            let id = modules.lookup(&Owner::Module(module.clone()), function)?;
            match &modules.function(id).ret {
                Type::Host(host) => Owner::HostType(host.clone()),
                _ => return None,
            }
        }
        Receiver::Expression { .. } => return None,
    };
    modules.lookup(&owner, name).map(|id| modules.function(id))
}

fn deployment_names(
    source: &str,
    world: &World,
    tokens: &[lexer::Token],
    string: StringAt,
    offset: usize,
) -> Vec<CompletionItem> {
    let Some(names) = world.names else {
        return Vec::new();
    };
    let Some(site) = enclosing_call(tokens, string.start_token) else {
        return Vec::new();
    };
    let Some(signature) = host_function(source, world, &site.callee, offset) else {
        return Vec::new();
    };
    let Some(&(_, name_ref)) = signature
        .name_args
        .iter()
        .find(|(index, _)| *index == site.argument)
    else {
        return Vec::new();
    };
    let routed_template = || {
        let Callee::Member {
            receiver:
                Receiver::ModuleCall {
                    first_argument: Some(code),
                    ..
                },
            ..
        } = &site.callee
        else {
            return None;
        };
        names
            .instances
            .iter()
            .find(|(c, _)| c == code)
            .map(|(_, template)| template.as_str())
    };
    // (name, detail)
    let mut found: Vec<(String, String)> = Vec::new();
    match name_ref {
        NameRef::ExternalSystem => {
            for (system, _) in &names.external_systems {
                found.push((system.clone(), "external system".to_string()));
            }
        }
        NameRef::ExternalMethod { system_arg } => {
            let system = nth_string_argument(tokens, site.open, system_arg);
            for (name, methods) in &names.external_systems {
                if system.as_ref().is_none_or(|s| s == name) {
                    for method in methods {
                        found.push((method.clone(), format!("method of {name}")));
                    }
                }
            }
        }
        NameRef::NotificationList => {
            for list in &names.notification_lists {
                found.push((list.clone(), "notification list".to_string()));
            }
        }
        NameRef::Database => {
            for database in &names.databases {
                found.push((database.clone(), "database connection".to_string()));
            }
        }
        NameRef::Instance => {
            for (code, template) in &names.instances {
                found.push((code.clone(), format!("instance of {template}")));
            }
        }
        NameRef::SharedScript => {
            for script in &names.shared_scripts {
                found.push((script.clone(), "shared script".to_string()));
            }
        }
        NameRef::Attribute | NameRef::Script | NameRef::RoutedAttribute | NameRef::RoutedScript => {
            let attribute = matches!(name_ref, NameRef::Attribute | NameRef::RoutedAttribute);
            let template = if matches!(name_ref, NameRef::Attribute | NameRef::Script) {
                world.template
            } else {
                routed_template()
            };
            for candidate in &names.templates {
                if template.is_some_and(|t| t != candidate.name) {
                    continue;
                }
                let (list, what) = if attribute {
                    (&candidate.attributes, "attribute")
                } else {
                    (&candidate.scripts, "script")
                };
                for name in list {
                    if !found.iter().any(|(n, _)| n == name) {
                        found.push((name.clone(), format!("{what} of {}", candidate.name)));
                    }
                }
            }
        }
    }
    found.sort();
    found.dedup_by(|a, b| a.0 == b.0);
    found
        .into_iter()
        .map(|(name, detail)| CompletionItem {
            label: name,
            kind: CompletionKind::DeploymentName,
            detail: Some(detail),
            documentation: None,
            replace: string.content,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(source: &str, world: &World) -> Vec<String> {
        let offset = source.find('|').expect("cursor marker");
        let source = source.replacen('|', "", 1);
        completions(&source, world, offset)
            .into_iter()
            .map(|i| i.label)
            .collect()
    }

    #[test]
    fn completes_locals_methods_fields_and_modules() {
        let modules = scl_stdlib::signatures::module_table();
        let world = World::new(&modules);
        let locals = labels("fn main(limit: int) { let speed = 1; let x = sp| }", &world);
        assert!(locals.contains(&"speed".to_string()) && locals.contains(&"limit".to_string()));
        assert!(locals.contains(&"Log".to_string()));
        let methods = labels("fn main() { let s = \"a\"; s.| }", &world);
        assert!(methods.contains(&"upper".to_string()), "{methods:?}");
        let fields = labels(
            "fn main() { let r = { value: 1, unit: \"C\" }; let v = r.| }",
            &world,
        );
        assert_eq!(fields, ["unit", "value"]);
        let members = labels("fn main() { Log.| }", &world);
        assert!(members.contains(&"Info".to_string()), "{members:?}");
        let connection = labels("fn main() { Database.Connection(\"H\").| }", &world);
        assert!(connection.contains(&"Query".to_string()), "{connection:?}");
    }
}
