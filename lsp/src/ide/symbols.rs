//! Document symbols: the file's functions (with their parameters and
//! locals) and types, for the editor's outline.

use scl_lang::Span;

use super::Analysis;
use super::hover::{find_function, function_signature, one_line};
use super::index::SymbolKind;

#[derive(Clone, Debug, PartialEq)]
pub struct DocumentSymbol {
    pub name: String,
    pub kind: SymbolKind,
    /// A signature or a type.
    pub detail: Option<String>,
    /// The whole declaration.
    pub span: Span,
    /// The declared name.
    pub selection: Span,
    pub children: Vec<DocumentSymbol>,
}

/// The outline of the file, in source order.
pub fn document_symbols(analysis: &Analysis) -> Vec<DocumentSymbol> {
    let index = &analysis.index();
    let mut outline = Vec::new();
    for item in index.items() {
        let detail = match item.kind {
            SymbolKind::Function => {
                find_function(analysis, item.span).map(|f| function_signature(analysis, f))
            }
            _ => analysis.parsed.file.items.iter().find_map(|i| match i {
                scl_lang::ast::Item::Type(declaration) if declaration.name.span == item.span => {
                    Some(one_line(analysis.text(declaration.ty.span)))
                }
                _ => None,
            }),
        };
        let children = index
            .symbols
            .iter()
            .filter(|s| {
                s.kind.is_local()
                    && s.function == Some(item.span)
                    && item.kind == SymbolKind::Function
            })
            .map(|local| DocumentSymbol {
                name: local.name.clone(),
                kind: local.kind,
                detail: analysis.local_type(local.span).map(ToString::to_string),
                span: local.declaration.to(local.span),
                selection: local.span,
                children: Vec::new(),
            })
            .collect();
        outline.push(DocumentSymbol {
            name: item.name.clone(),
            kind: item.kind,
            detail,
            span: item.declaration.to(item.span),
            selection: item.span,
            children,
        });
    }
    outline
}
