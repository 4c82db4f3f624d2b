//! # scl-lang — the SCL front end
//!
//! Text in, typed program out: `source → tokens → ast::File → hir::Program`.
//! The stages are types ([`Parsed`], [`Checked`]) so they cannot be run out of
//! order, and none of them fails: every stage returns its result together with
//! the diagnostics it found, so one run reports every mistake in a file.
//!
//! **Architecture invariant:** this crate does no I/O, knows nothing of tokio,
//! cranelift or LSP, and never panics on any input.

pub mod ast;
pub mod checker;
pub mod codes;
pub mod diagnostics;
pub mod format;
pub mod hir;
pub mod lexer;
pub mod modules;
pub mod parser;
pub mod span;
pub mod suggest;
pub mod types;

pub use checker::{CheckOptions, Checked};
pub use diagnostics::{Diagnostic, Severity};
pub use modules::ScriptKind;
pub use parser::{Parsed, parse};
pub use span::Span;

/// Reads the script kind from a first-line comment such as `// kind: api`,
/// used when neither the deployment nor the command line gives one.
pub fn kind_from_comment(source: &str) -> Option<ScriptKind> {
    let first = source.lines().next()?.trim();
    let rest = first.strip_prefix("//")?.trim();
    let kind = rest.strip_prefix("kind:")?.trim();
    ScriptKind::parse(kind)
}
