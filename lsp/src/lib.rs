//! # scl-lsp — the language server
//!
//! **Architecture invariant:** `lsp-types` appear only in this crate.
