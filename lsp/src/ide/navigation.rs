//! Go to definition, find references and rename, for functions, types and
//! locals (parameters, `let`/`var`, loop and catch variables). Everything
//! stays in one file: a script's functions and types are private to it.

use scl_lang::Span;

use super::Analysis;
use super::index::SymbolKind;

/// The declaration of the name at `offset`.
pub fn definition(analysis: &Analysis, offset: usize) -> Option<Span> {
    let id = analysis.index().symbol_at(offset)?;
    Some(analysis.index().symbol(id).span)
}

/// Every use of the name at `offset`, with its declaration when asked.
pub fn references(analysis: &Analysis, offset: usize, include_declaration: bool) -> Vec<Span> {
    let Some(id) = analysis.index().symbol_at(offset) else {
        return Vec::new();
    };
    let declaration = analysis.index().symbol(id).span;
    analysis
        .index()
        .occurrences_of(id)
        .map(|o| o.span)
        .filter(|span| include_declaration || *span != declaration)
        .collect()
}

/// The name that a rename at `offset` would change, if it can be renamed.
pub fn prepare_rename(analysis: &Analysis, offset: usize) -> Option<Span> {
    let occurrence = analysis.index().at(offset)?;
    analysis.index().symbol_at(offset)?;
    Some(occurrence.span)
}

/// The edits that rename the function, type or local at `offset` to
/// `new_name`, or why it cannot be done.
pub fn rename(
    analysis: &Analysis,
    offset: usize,
    new_name: &str,
) -> Result<Vec<(Span, String)>, String> {
    let Some(id) = analysis.index().symbol_at(offset) else {
        return Err("only functions, types and variables can be renamed".to_string());
    };
    if !super::is_identifier(new_name) {
        return Err(format!("`{new_name}` is not a valid name"));
    }
    let symbol = analysis.index().symbol(id);
    if symbol.kind == SymbolKind::Function
        && super::BUILTIN_FUNCTIONS
            .iter()
            .any(|(name, _, _)| *name == new_name)
    {
        return Err(format!("`{new_name}` is a built-in function"));
    }
    if symbol.kind == SymbolKind::Type
        && super::BUILTIN_TYPES
            .iter()
            .chain(super::CONTAINER_TYPES.iter())
            .any(|(name, _)| *name == new_name)
    {
        return Err(format!("`{new_name}` is a built-in type"));
    }
    let mut edits: Vec<(Span, String)> = analysis
        .index()
        .occurrences_of(id)
        .map(|o| (o.span, new_name.to_string()))
        .collect();
    edits.dedup_by_key(|(span, _)| *span);
    Ok(edits)
}
