//! The editor packages agree with the language and with each other: the VS
//! Code manifest points at files that exist, the TextMate grammar knows
//! every keyword, built-in module and host type, and the documented Neovim
//! setup starts `scl lsp`.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `match` and `begin` regex of a grammar.
fn regexes(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("match" | "begin" | "end", Value::String(regex)) => out.push(regex.clone()),
                    _ => regexes(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| regexes(item, out)),
        _ => {}
    }
}

/// Whether `word` is an alternative of a `\b(a|b|c)\b`-style regex.
fn names_word(regexes: &[String], word: &str) -> bool {
    regexes.iter().any(|regex| {
        // Escapes such as `\b` and `\s` are not letters of a word.
        let mut plain = String::new();
        let mut escaped = false;
        for c in regex.chars() {
            match (escaped, c) {
                (true, _) => {
                    escaped = false;
                    plain.push(' ');
                }
                (false, '\\') => escaped = true,
                (false, c) => plain.push(c),
            }
        }
        plain
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|part| part == word)
    })
}

#[test]
fn the_vscode_manifest_points_at_real_files() {
    let folder = repository().join("editors/vscode");
    let manifest = json(&folder.join("package.json"));
    let language = &manifest["contributes"]["languages"][0];
    assert_eq!(language["id"], "scl");
    assert_eq!(language["extensions"], serde_json::json!([".scl"]));
    let configuration = json(&folder.join(language["configuration"].as_str().expect("path")));
    assert_eq!(configuration["comments"]["lineComment"], "//");
    let grammar_entry = &manifest["contributes"]["grammars"][0];
    let grammar = json(&folder.join(grammar_entry["path"].as_str().expect("path")));
    assert_eq!(grammar["scopeName"], grammar_entry["scopeName"]);
    assert!(
        folder
            .join(manifest["main"].as_str().expect("main"))
            .is_file()
    );
    let settings = &manifest["contributes"]["configuration"]["properties"];
    assert_eq!(settings["scl.server.path"]["default"], "scl");
    assert_eq!(
        settings["scl.server.args"]["default"],
        serde_json::json!(["lsp"])
    );
    assert!(manifest["dependencies"]["vscode-languageclient"].is_string());
    let client = std::fs::read_to_string(folder.join("extension.js")).expect("client");
    assert!(
        client.contains("'server.args', ['lsp']"),
        "the client starts `scl lsp`"
    );
}

#[test]
fn the_grammar_knows_the_language() {
    let grammar = json(&repository().join("editors/vscode/syntaxes/scl.tmLanguage.json"));
    let mut all = Vec::new();
    regexes(&grammar, &mut all);
    for keyword in scl_lsp::ide::KEYWORDS {
        assert!(
            names_word(&all, keyword),
            "the grammar misses the keyword `{keyword}`"
        );
    }
    for (name, _) in scl_lsp::ide::BUILTIN_TYPES
        .iter()
        .chain(scl_lsp::ide::CONTAINER_TYPES.iter())
    {
        assert!(
            names_word(&all, name),
            "the grammar misses the type `{name}`"
        );
    }
    let modules = scl_stdlib::signatures::module_table();
    for function in &modules.functions {
        let owner = match &function.owner {
            scl_lang::modules::Owner::Module(name) | scl_lang::modules::Owner::HostType(name) => {
                name
            }
        };
        assert!(names_word(&all, owner), "the grammar misses `{owner}`");
    }
    for (name, _) in &modules.types {
        assert!(
            names_word(&all, name),
            "the grammar misses the type `{name}`"
        );
    }
    // Every regex is well formed as far as a simple check can tell:
    // parentheses balance outside escapes and character classes.
    for regex in &all {
        let mut depth = 0i32;
        let mut escaped = false;
        let mut in_class = false;
        for c in regex.chars() {
            match (escaped, in_class, c) {
                (true, _, _) => escaped = false,
                (false, _, '\\') => escaped = true,
                (false, false, '[') => in_class = true,
                (false, true, ']') => in_class = false,
                (false, false, '(') => depth += 1,
                (false, false, ')') => depth -= 1,
                _ => {}
            }
            assert!(depth >= 0, "unbalanced: {regex}");
        }
        assert_eq!(depth, 0, "unbalanced: {regex}");
    }
}

#[test]
fn the_documented_neovim_setup_starts_the_server() {
    let docs =
        std::fs::read_to_string(repository().join("docs/editors.md")).expect("docs/editors.md");
    assert!(docs.contains("cmd = { 'scl', 'lsp' }"));
    assert!(docs.contains("vim.lsp.enable('scl')"));
    assert!(docs.contains("root_markers = { 'deploy.toml', '.git' }"));
}
