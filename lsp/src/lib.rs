//! # scl-lsp — the language server
//!
//! `scl lsp` speaks the Language Server Protocol over stdio: diagnostics as
//! you type (the codes and messages of `scl check`), hover, completion
//! (including the deployment's names inside string arguments), signature
//! help, go to definition, references, rename, document symbols, semantic
//! tokens, formatting (the formatter of `scl fmt`) and quick fixes.
//!
//! Two layers: [`ide`] answers questions about one file as pure functions of
//! (source, position) without protocol types; `server` is the thin protocol
//! layer on `lsp-server` that keeps the open documents and the deployment
//! and converts positions ([`convert`]).
//!
//! **Architecture invariant:** `lsp-types` appear only in this crate, and
//! only in `server` and `convert`; `ide` has none.

pub mod convert;
pub mod ide;
mod server;

use lsp_server::Connection;

/// Runs the language server on stdin/stdout until the client says `exit`.
/// This is `scl lsp`.
pub fn run_lsp_stdio() -> Result<(), String> {
    let (connection, io_threads) = Connection::stdio();
    run_connection(&connection)?;
    drop(connection);
    io_threads.join().map_err(|error| error.to_string())
}

/// Runs the language server over any connection (`Connection::memory()` in
/// tests) until the client says `exit` or hangs up.
pub fn run_connection(connection: &Connection) -> Result<(), String> {
    server::run(connection)
}
