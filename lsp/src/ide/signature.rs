//! Signature help: the signature of the function, module function or
//! method whose argument list the cursor is in, with the argument under the
//! cursor.

use scl_lang::Span;
use scl_lang::checker::value_methods;
use scl_lang::lexer::TokenKind;
use scl_lang::modules::{HostFnSig, Owner};
use scl_lang::types::Type;

use super::call_context::{CallSite, Callee, Receiver, enclosing_call};
use super::hover::{find_function, kinds_note, one_line};
use super::index::{Role, SymbolKind};
use super::{Analysis, BUILTIN_FUNCTIONS, World};

#[derive(Clone, Debug, PartialEq)]
pub struct SignatureHelp {
    /// `name(a: T, b: U) -> R`
    pub label: String,
    /// Each parameter's byte range in `label`.
    pub parameters: Vec<(usize, usize)>,
    pub active_parameter: usize,
    /// Markdown.
    pub documentation: Option<String>,
}

/// Builds a label from a name, parameters and a result, remembering where
/// each parameter is.
fn label(name: &str, params: &[String], ret: Option<String>) -> (String, Vec<(usize, usize)>) {
    let mut text = format!("{name}(");
    let mut ranges = Vec::new();
    for (index, param) in params.iter().enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        ranges.push((text.len(), text.len() + param.len()));
        text.push_str(param);
    }
    text.push(')');
    if let Some(ret) = ret {
        text.push_str(" -> ");
        text.push_str(&ret);
    }
    (text, ranges)
}

fn host_help(
    signature: &HostFnSig,
    analysis: &Analysis,
) -> (String, Vec<(usize, usize)>, Option<String>) {
    let params: Vec<String> = signature
        .params
        .iter()
        .map(|(n, t)| format!("{n}: {t}"))
        .collect();
    let ret = (!matches!(signature.ret, Type::Void)).then(|| signature.ret.to_string());
    let (text, ranges) = label(&signature.qualified_name(), &params, ret);
    let doc = format!(
        "{}\n\n{}",
        signature.doc,
        kinds_note(signature, analysis.kind)
    );
    (text, ranges, Some(doc))
}

/// The signature help at `offset`.
pub fn signature_help(analysis: &Analysis, world: &World, offset: usize) -> Option<SignatureHelp> {
    let before = analysis.token_index_at(offset.min(analysis.source.len()));
    let site = enclosing_call(analysis.tokens(), before)?;
    let modules = world.modules;
    let (text, parameters, documentation) = match &site.callee {
        Callee::Function { name, .. } => {
            let function = analysis
                .index()
                .items()
                .find(|s| s.kind == SymbolKind::Function && &s.name == name)
                .and_then(|s| find_function(analysis, s.span));
            if let Some(function) = function {
                let params: Vec<String> = function
                    .params
                    .iter()
                    .map(|p| format!("{}: {}", p.name.name, one_line(analysis.text(p.ty.span))))
                    .collect();
                let ret = function
                    .ret
                    .as_ref()
                    .map(|r| one_line(analysis.text(r.span)));
                let (text, ranges) = label(name, &params, ret);
                (text, ranges, None)
            } else {
                let (_, signature, doc) = BUILTIN_FUNCTIONS.iter().find(|(n, _, _)| n == name)?;
                let inside = signature.split_once('(')?.1.split_once(')')?.0;
                let params: Vec<String> = inside.split(", ").map(str::to_string).collect();
                let ret = signature.split_once(" -> ").map(|(_, r)| r.to_string());
                let (text, ranges) = label(name, &params, ret);
                (text, ranges, Some(doc.to_string()))
            }
        }
        Callee::Member {
            receiver,
            name,
            span,
        } => {
            let role = analysis
                .index()
                .at(span.start as usize)
                .filter(|o| o.span == *span)
                .map(|o| &o.role);
            let owner = match (role, receiver) {
                (Some(Role::ModuleMember { module }), _) => Some(Owner::Module(module.clone())),
                (Some(Role::Member { receiver, .. }), _) => {
                    match receiver_type(analysis, world, *receiver, &site) {
                        Some(Type::Host(host)) => Some(Owner::HostType(host.clone())),
                        Some(ty @ (Type::String | Type::List(_) | Type::Map(_))) => {
                            let method = value_methods(&ty).into_iter().find(|m| m.name == name)?;
                            let params: Vec<String> = method
                                .params
                                .iter()
                                .map(|(n, t)| format!("{n}: {t}"))
                                .collect();
                            let ret =
                                (!matches!(method.ret, Type::Void)).then(|| method.ret.to_string());
                            let (text, ranges) = label(name, &params, ret);
                            return Some(SignatureHelp {
                                label: text,
                                parameters: ranges,
                                active_parameter: site.argument,
                                documentation: Some(format!("{}\n\nMethod of `{ty}`.", method.doc)),
                            });
                        }
                        _ => None,
                    }
                }
                (_, Receiver::Name(module)) if modules.is_module(module) => {
                    Some(Owner::Module(module.clone()))
                }
                (
                    _,
                    Receiver::ModuleCall {
                        module, function, ..
                    },
                ) => {
                    let id = modules.lookup(&Owner::Module(module.clone()), function)?;
                    match &modules.function(id).ret {
                        Type::Host(host) => Some(Owner::HostType(host.clone())),
                        _ => None,
                    }
                }
                _ => None,
            }?;
            let id = modules.lookup(&owner, name)?;
            host_help(modules.function(id), analysis)
        }
    };
    Some(SignatureHelp {
        label: text,
        parameters,
        active_parameter: site.argument,
        documentation,
    })
}

/// The type of a method call's receiver. While the call is being typed it
/// often does not check (too few arguments), and then the receiver has no
/// type in the analysis; checked without the `.method(...)` it has one.
fn receiver_type(
    analysis: &Analysis,
    world: &World,
    receiver: Span,
    site: &CallSite,
) -> Option<Type> {
    if let Some(ty) = analysis.type_of(receiver) {
        return Some(ty.clone());
    }
    let tokens = analysis.tokens();
    let dot = site.open.checked_sub(2)?;
    if tokens[dot].kind != TokenKind::Dot {
        return None;
    }
    // The end of the call: its `)`, or the end of the statement being typed.
    let mut depth = 0usize;
    let mut end = tokens[site.open].span.end as usize;
    for token in &tokens[site.open..] {
        match token.kind {
            TokenKind::LParen | TokenKind::LBracket | TokenKind::LBrace => depth += 1,
            TokenKind::RParen | TokenKind::RBracket | TokenKind::RBrace => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    end = token.span.end as usize;
                    break;
                }
            }
            TokenKind::Semi | TokenKind::Eof => break,
            _ => {}
        }
        end = token.span.end as usize;
    }
    let source = &analysis.source;
    let start = tokens[dot].span.start as usize;
    let alone = format!("{}{}", source.get(..start)?, source.get(end..)?);
    super::analyze(&alone, world).type_of(receiver).cloned()
}
