//! `scl-lsp`: the language server on stdio (the same server as `scl lsp`).

fn main() {
    if let Err(error) = scl_lsp::run_lsp_stdio() {
        eprintln!("scl-lsp: {error}");
        std::process::exit(1);
    }
}
