//! Diagnostics: one type for every stage, stable codes, rendering with miette.
//!
//! A [`Diagnostic`] is plain data (code, message, labels, help); rendering to
//! text or JSON happens at the edge ([`render_human`], [`render_json`]).

use std::fmt;

use crate::codes::Code;
use crate::span::{Span, line_column};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub span: Span,
    pub message: Option<String>,
}

/// A problem found in a script. Build one with [`Diagnostic::error`] and the
/// `with_*` builders; it must be pushed somewhere or it is lost.
#[must_use]
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub primary: Label,
    pub secondary: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            primary: Label {
                span,
                message: None,
            },
            secondary: Vec::new(),
            help: None,
        }
    }

    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, span, message)
        }
    }

    /// The text under the primary span.
    pub fn with_primary_label(mut self, message: impl Into<String>) -> Diagnostic {
        self.primary.message = Some(message.into());
        self
    }

    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.secondary.push(Label {
            span,
            message: Some(message.into()),
        });
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// A diagnostic bound to its source, in the form miette renders.
struct Report<'a> {
    diagnostic: &'a Diagnostic,
    source: miette::NamedSource<String>,
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.diagnostic, f)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.diagnostic.code.id))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diagnostic.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diagnostic
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let primary = &self.diagnostic.primary;
        let primary =
            miette::LabeledSpan::new_primary_with_span(primary.message.clone(), primary.span);
        let secondary = self
            .diagnostic
            .secondary
            .iter()
            .map(|l| miette::LabeledSpan::new_with_span(l.message.clone(), l.span));
        Some(Box::new(std::iter::once(primary).chain(secondary)))
    }
}

/// Renders diagnostics the way `scl check` prints them, without colour when
/// `colour` is false (tests and pipes).
pub fn render_human(
    file_name: &str,
    source: &str,
    diagnostics: &[Diagnostic],
    colour: bool,
) -> String {
    let theme = if colour {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    for diagnostic in diagnostics {
        if !snippet_fits(source, diagnostic) {
            render_plain(&mut out, file_name, source, diagnostic);
            continue;
        }
        let report = Report {
            diagnostic,
            source: miette::NamedSource::new(file_name, source.to_string()),
        };
        // Writing into a String cannot fail.
        let _ = handler.render_report(&mut out, &report);
    }
    out
}

/// The widest column a label may start or end at for the diagnostic to be
/// drawn with its source line. miette pads with `{:width$}`, and a width
/// above 65,535 panics inside `format!` (found by the fuzz target
/// `fuzz_deep_nesting_is_a_diagnostic`); such lines are unreadable drawn
/// anyway.
const MAX_SNIPPET_COLUMN: usize = 2_000;

fn snippet_fits(source: &str, diagnostic: &Diagnostic) -> bool {
    std::iter::once(&diagnostic.primary)
        .chain(&diagnostic.secondary)
        .all(|label| {
            [label.span.start, label.span.end]
                .iter()
                .all(|&offset| line_column(source, offset as usize).1 <= MAX_SNIPPET_COLUMN)
        })
}

/// `file:line:column: severity[code]: message`, then the label and help,
/// without the source line.
fn render_plain(out: &mut String, file_name: &str, source: &str, diagnostic: &Diagnostic) {
    use std::fmt::Write as _;
    let (line, column) = line_column(source, diagnostic.primary.span.start as usize);
    let _ = writeln!(
        out,
        "{file_name}:{line}:{column}: {}[{}]: {}",
        diagnostic.severity.name(),
        diagnostic.code.id,
        diagnostic.message
    );
    if let Some(label) = &diagnostic.primary.message {
        let _ = writeln!(out, "  = {label}");
    }
    if let Some(help) = &diagnostic.help {
        let _ = writeln!(out, "  help: {help}");
    }
}

/// One JSON object per diagnostic, as `scl check --format json` prints them.
pub fn render_json(file_name: &str, source: &str, diagnostic: &Diagnostic) -> serde_json::Value {
    let (line, column) = line_column(source, diagnostic.primary.span.start as usize);
    let (end_line, end_column) = line_column(source, diagnostic.primary.span.end as usize);
    serde_json::json!({
        "code": diagnostic.code.id,
        "severity": diagnostic.severity.name(),
        "message": diagnostic.message,
        "file": file_name,
        "line": line,
        "column": column,
        "end_line": end_line,
        "end_column": end_column,
        "label": diagnostic.primary.message,
        "help": diagnostic.help,
    })
}
