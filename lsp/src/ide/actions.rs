//! Quick fixes: a code action for each diagnostic whose fix is obvious —
//! the nearest name that the diagnostic's help suggests ("did you mean
//! `X`?", for unknown locals, functions, types, fields, methods, module
//! functions and deployment names), a missing `;`, and `let` → `var` for an
//! assignment to a `let` variable.

use scl_lang::codes;
use scl_lang::lexer::TokenKind;
use scl_lang::{Diagnostic, Span};

use super::Analysis;

#[derive(Clone, Debug, PartialEq)]
pub struct Fix {
    pub title: String,
    /// The diagnostic the fix resolves.
    pub diagnostic: Diagnostic,
    /// Replacements: (source range, new text).
    pub edits: Vec<(Span, String)>,
}

/// The fixes for the diagnostics that touch `range`.
pub fn fixes(analysis: &Analysis, range: Span) -> Vec<Fix> {
    analysis
        .diagnostics()
        .into_iter()
        .filter(|d| d.primary.span.start <= range.end && range.start <= d.primary.span.end)
        .filter_map(|diagnostic| fix(analysis, diagnostic))
        .collect()
}

/// The name in a "did you mean `X`?" help.
fn suggestion(help: &str) -> Option<&str> {
    let rest = help.strip_prefix("did you mean `")?;
    let end = rest.find("`?")?;
    Some(&rest[..end])
}

fn is_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn fix(analysis: &Analysis, diagnostic: Diagnostic) -> Option<Fix> {
    if diagnostic.code == codes::MISSING_SEMICOLON {
        let at = diagnostic.primary.span.start;
        return Some(Fix {
            title: "Add `;`".to_string(),
            edits: vec![(Span { start: at, end: at }, ";".to_string())],
            diagnostic,
        });
    }
    if diagnostic.code == codes::ASSIGN_TO_IMMUTABLE {
        let declared = diagnostic.secondary.first()?.span;
        let name_token = analysis.tokens().iter().position(|t| t.span == declared)?;
        let keyword = analysis.tokens().get(name_token.checked_sub(1)?)?;
        if keyword.kind != TokenKind::Let {
            return None;
        }
        let name = analysis.text(declared).to_string();
        return Some(Fix {
            title: format!("Declare `{name}` with `var`"),
            edits: vec![(keyword.span, "var".to_string())],
            diagnostic,
        });
    }
    let suggested = suggestion(diagnostic.help.as_deref()?)?;
    // The misspelt name: the primary span, or the one labelled span that is a name.
    let labels = std::iter::once(&diagnostic.primary).chain(diagnostic.secondary.iter());
    let (target, replacement) = labels.into_iter().find_map(|label| {
        let text = analysis.text(label.span);
        if text.starts_with('"') && text.ends_with('"') && text.len() >= 2 {
            return Some((label.span, format!("\"{suggested}\"")));
        }
        if is_name(text) {
            // `Module.Member` suggestions replace the member only.
            let name = suggested.rsplit('.').next().unwrap_or(suggested);
            return Some((label.span, name.to_string()));
        }
        None
    })?;
    let old = analysis.text(target).to_string();
    Some(Fix {
        title: format!("Replace `{old}` with `{replacement}`"),
        edits: vec![(target, replacement)],
        diagnostic,
    })
}
