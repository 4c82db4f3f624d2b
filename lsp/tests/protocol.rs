//! The language server over its real transport: each test starts the
//! `scl-lsp` binary as a child process and talks JSON-RPC to it over
//! stdin/stdout with a tiny client, as an editor would.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(20);

/// A minimal LSP client: framing, ids, and a queue of notifications.
struct Client {
    child: Child,
    stdin: ChildStdin,
    incoming: Receiver<Value>,
    next_id: i64,
    notifications: Vec<Value>,
    /// The server's answer to `initialize`.
    capabilities: Value,
}

fn read_message(reader: &mut impl BufRead) -> Option<Value> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("Content-Length: ") {
            length = value.parse::<usize>().ok();
        }
    }
    let mut body = vec![0; length?];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

impl Client {
    /// Starts the server with `root` as the workspace folder.
    fn start(root: &Path) -> Client {
        Client::start_with(
            root,
            json!({ "general": { "positionEncodings": ["utf-16"] } }),
        )
    }

    /// Starts the server with these client capabilities.
    fn start_with(root: &Path, capabilities: Value) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_scl-lsp"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the scl-lsp binary starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, incoming) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            while let Some(message) = read_message(&mut reader) {
                if sender.send(message).is_err() {
                    break;
                }
            }
        });
        let mut client = Client {
            child,
            stdin,
            incoming,
            next_id: 1,
            notifications: Vec::new(),
            capabilities: Value::Null,
        };
        let result = client.request(
            "initialize",
            json!({
                "processId": null,
                "rootUri": uri(root),
                "workspaceFolders": [{ "uri": uri(root), "name": "test" }],
                "capabilities": capabilities,
            }),
        );
        client.capabilities = result["capabilities"].clone();
        client.notify("initialized", json!({}));
        client
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len())
            .expect("write to the server");
        self.stdin.flush().expect("flush");
    }

    fn receive(&mut self) -> Value {
        self.incoming
            .recv_timeout(TIMEOUT)
            .expect("the server answers in time")
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Sends a request and returns the whole response.
    fn request_raw(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        loop {
            let message = self.receive();
            if message.get("id") == Some(&json!(id)) && message.get("method").is_none() {
                return message;
            }
            if message.get("method").is_some() && message.get("id").is_none() {
                self.notifications.push(message);
            }
        }
    }

    /// Sends a request and returns its result, failing on an error response.
    fn request(&mut self, method: &str, params: Value) -> Value {
        let response = self.request_raw(method, params);
        assert!(
            response.get("error").is_none(),
            "{method} failed: {response}"
        );
        response["result"].clone()
    }

    /// Waits for a notification `method` whose params satisfy `wanted`.
    fn notification(&mut self, method: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        if let Some(index) = self
            .notifications
            .iter()
            .position(|n| n["method"] == method && wanted(&n["params"]))
        {
            return self.notifications.remove(index)["params"].clone();
        }
        loop {
            let message = self.receive();
            if message["method"] == method && wanted(&message["params"]) {
                return message["params"].clone();
            }
        }
    }

    /// The diagnostics published for `uri` at document version `version`.
    fn diagnostics(&mut self, uri: &str, version: i64) -> Vec<Value> {
        let params = self.notification("textDocument/publishDiagnostics", |p| {
            p["uri"] == uri && p["version"] == version
        });
        params["diagnostics"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn open(&mut self, uri: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({ "textDocument": { "uri": uri, "languageId": "scl", "version": 1, "text": text } }),
        );
    }

    /// Shuts the server down cleanly and checks that it exits with success.
    fn shutdown(mut self) {
        let result = self.request("shutdown", Value::Null);
        assert_eq!(result, Value::Null);
        self.notify("exit", Value::Null);
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "the server exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = self.child.kill();
        panic!("the server did not exit after `exit`");
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn position(text: &str, marker: &str) -> Value {
    let offset = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in the text"));
    let before = &text[..offset];
    let line = before.matches('\n').count();
    let column: usize = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .encode_utf16()
        .count();
    json!({ "line": line, "character": column })
}

fn at(uri: &str, text: &str, marker: &str) -> Value {
    json!({ "textDocument": { "uri": uri }, "position": position(text, marker) })
}

/// A scratch folder, removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A scratch folder with a copy of the example plant (scripts and deployment).
fn plant() -> Scratch {
    let folder = std::env::temp_dir().join(format!(
        "scl-lsp-protocol-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    copy_folder(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plant"),
        &folder,
    );
    Scratch(folder)
}

fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("scratch folder");
    for entry in std::fs::read_dir(from).expect("example folder") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_folder(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

fn codes(diagnostics: &[Value]) -> Vec<String> {
    diagnostics
        .iter()
        .map(|d| d["code"].as_str().unwrap_or("").to_string())
        .collect()
}

fn labels(completion: &Value) -> Vec<String> {
    let items = completion["items"]
        .as_array()
        .or(completion.as_array())
        .cloned()
        .unwrap_or_default();
    items
        .iter()
        .map(|i| i["label"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The diagnostics `scl check` would report for a text: the same front end
/// and module table, for comparing codes and messages.
fn check_like_scl_check(text: &str) -> Vec<(String, String)> {
    let modules = scl_stdlib::signatures::module_table();
    let parsed = scl_lang::parse(text);
    let mut options = scl_lang::CheckOptions::new(&modules);
    options.kind = scl_lang::kind_from_comment(text);
    let checked = scl_lang::checker::check(&parsed, &options);
    let mut all = parsed.diagnostics.clone();
    all.extend(checked.diagnostics);
    all.sort_by_key(|d| (d.primary.span.start, d.primary.span.end));
    all.iter()
        .map(|d| (d.code.id.to_string(), d.message.clone()))
        .collect()
}

#[test]
fn initialize_advertises_every_feature() {
    let folder = plant();
    let mut client = Client::start(&folder);
    let capabilities = client.capabilities.clone();
    assert_eq!(
        capabilities["textDocumentSync"]["change"], 2,
        "incremental sync: {capabilities}"
    );
    assert_eq!(capabilities["textDocumentSync"]["openClose"], true);
    assert_eq!(capabilities["hoverProvider"], true);
    assert_eq!(
        capabilities["completionProvider"]["triggerCharacters"],
        json!([".", "\""])
    );
    assert_eq!(
        capabilities["signatureHelpProvider"]["triggerCharacters"],
        json!(["(", ","])
    );
    assert_eq!(capabilities["definitionProvider"], true);
    assert_eq!(capabilities["referencesProvider"], true);
    assert_eq!(capabilities["renameProvider"]["prepareProvider"], true);
    assert_eq!(capabilities["documentSymbolProvider"], true);
    assert_eq!(capabilities["documentFormattingProvider"], true);
    assert_eq!(
        capabilities["codeActionProvider"]["codeActionKinds"],
        json!(["quickfix"])
    );
    let legend = &capabilities["semanticTokensProvider"]["legend"];
    assert!(
        legend["tokenTypes"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("parameter"))),
        "{legend}"
    );
    assert_eq!(capabilities["semanticTokensProvider"]["full"], true);
    // A request about a file that is not open is an error, not a crash.
    let response = client.request_raw("textDocument/hover", json!({
        "textDocument": { "uri": "file:///nowhere.scl" }, "position": { "line": 0, "character": 0 }
    }));
    assert!(response.get("error").is_some(), "{response}");
    let response = client.request_raw("workspace/unknownRequest", json!({}));
    assert_eq!(response["error"]["code"], -32601, "{response}");
    client.shutdown();
}

#[test]
fn utf8_positions_when_the_client_offers_them() {
    let folder = plant();
    let mut client = Client::start_with(
        &folder,
        json!({ "general": { "positionEncodings": ["utf-8", "utf-16"] } }),
    );
    assert_eq!(client.capabilities["positionEncoding"], "utf-8");
    let uri = uri(&folder.join("scratch.scl"));
    let text = "fn main() -> int { let s = \"\u{e9}\u{1F600}\"; return cout; }\n";
    client.open(&uri, text);
    let diagnostics = client.diagnostics(&uri, 1);
    assert_eq!(
        diagnostics[0]["range"]["start"]["character"],
        text.find("cout").unwrap()
    );
    client.shutdown();
}

#[test]
fn diagnostics_follow_incremental_edits_with_the_codes_and_messages_of_scl_check() {
    let folder = plant();
    let mut client = Client::start(&folder);
    let file = folder.join("scratch.scl");
    let uri = uri(&file);
    let text =
        "// kind: api\nfn main() -> int {\n    let s = \"\u{e9}\u{1F600}\"; return cout;\n}\n";
    client.open(&uri, text);
    let diagnostics = client.diagnostics(&uri, 1);
    let expected = check_like_scl_check(text);
    let got: Vec<(String, String)> = diagnostics
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap_or("").to_string(),
                d["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert!(
        codes(&diagnostics).contains(&"SCL0101".to_string()),
        "{diagnostics:?}"
    );
    // The range of `cout` counts UTF-16 units after the non-ASCII names.
    let unknown = diagnostics
        .iter()
        .find(|d| d["code"] == "SCL0101")
        .expect("unknown name");
    assert_eq!(unknown["range"]["start"], position(text, "cout"));
    assert_eq!(unknown["source"], "scl");

    // Replace `cout` with `1` by an incremental change: no more errors.
    let start = position(text, "cout");
    let end =
        json!({ "line": start["line"], "character": start["character"].as_u64().unwrap() + 4 });
    client.notify(
        "textDocument/didChange",
        json!({
            "textDocument": { "uri": uri, "version": 2 },
            "contentChanges": [{ "range": { "start": start, "end": end }, "text": "1" }]
        }),
    );
    assert_eq!(client.diagnostics(&uri, 2), Vec::<Value>::new());

    // Two changes in one notification: insert a line, then break it.
    client.notify("textDocument/didChange", json!({
        "textDocument": { "uri": uri, "version": 3 },
        "contentChanges": [
            { "range": { "start": { "line": 2, "character": 0 }, "end": { "line": 2, "character": 0 } },
              "text": "    let x = 1\n" },
            { "range": { "start": { "line": 2, "character": 4 }, "end": { "line": 2, "character": 7 } },
              "text": "var" }
        ]
    }));
    let diagnostics = client.diagnostics(&uri, 3);
    assert_eq!(codes(&diagnostics), ["SCL0012"], "{diagnostics:?}");
    assert_eq!(
        diagnostics[0]["range"]["start"],
        json!({ "line": 2, "character": 13 })
    );

    // A full-text change replaces everything.
    client.notify("textDocument/didChange", json!({
        "textDocument": { "uri": uri, "version": 4 },
        "contentChanges": [{ "text": "fn main() { Attributes.Set(\"Speed\", 1.0); }\n// kind: api\n" }]
    }));
    // The kind comment must be on the first line: no kind, no kind error.
    assert_eq!(client.diagnostics(&uri, 4), Vec::<Value>::new());
    client.notify("textDocument/didChange", json!({
        "textDocument": { "uri": uri, "version": 5 },
        "contentChanges": [{ "text": "// kind: api\nfn main() { Attributes.Set(\"Speed\", 1.0); }\n" }]
    }));
    assert_eq!(codes(&client.diagnostics(&uri, 5)), ["SCL0401"]);

    client.notify(
        "textDocument/didClose",
        json!({ "textDocument": { "uri": uri } }),
    );
    let closed = client.notification("textDocument/publishDiagnostics", |p| {
        p["uri"] == uri && p["version"].is_null()
    });
    assert_eq!(closed["diagnostics"], json!([]));
    client.shutdown();
}

#[test]
fn the_deployment_gives_kinds_templates_and_names() {
    let folder = plant();
    let mut client = Client::start(&folder);
    // An instance script of the deployment: `Route.To` is for api scripts, and
    // attribute names are checked against the Pump template.
    let file = folder.join("scripts/read_temp.scl");
    let uri = uri(&file);
    let text = std::fs::read_to_string(&file).expect("example script").replace(
        "let t = Attributes.Get(\"Temperature\") as float;",
        "let t = Attributes.Get(\"Temperatur\") as float;\n    let r = Route.To(\"PUMP-002\").GetAttribute(\"Speed\");",
    );
    client.open(&uri, &text);
    let diagnostics = client.diagnostics(&uri, 1);
    assert_eq!(
        codes(&diagnostics),
        ["SCL0506", "SCL0403"],
        "{diagnostics:?}"
    );
    let related = diagnostics[0]["relatedInformation"]
        .as_array()
        .expect("help as related information");
    assert!(
        related
            .iter()
            .any(|r| r["message"] == "help: did you mean `Temperature`?"),
        "{related:?}"
    );

    // The quick fix replaces the string with the suggested name.
    let actions = client.request("textDocument/codeAction", json!({
        "textDocument": { "uri": uri },
        "range": { "start": position(&text, "\"Temperatur\""), "end": position(&text, "\"Temperatur\"") },
        "context": { "diagnostics": [] }
    }));
    let action = &actions[0];
    assert_eq!(action["kind"], "quickfix");
    assert_eq!(
        action["title"],
        "Replace `\"Temperatur\"` with `\"Temperature\"`"
    );
    let edit = &action["edit"]["changes"][&uri][0];
    assert_eq!(edit["newText"], "\"Temperature\"");
    assert_eq!(edit["range"]["start"], position(&text, "\"Temperatur\""));

    // The API script of the deployment may route, and has no attributes.
    let api = folder.join("scripts/api/get_pump_status.scl");
    let api_uri = self::uri(&api);
    let api_text = std::fs::read_to_string(&api).expect("example script");
    client.open(&api_uri, &api_text);
    assert_eq!(client.diagnostics(&api_uri, 1), Vec::<Value>::new());
    client.shutdown();
}

#[test]
fn hover_shows_types_and_module_docs() {
    let folder = plant();
    let mut client = Client::start(&folder);
    let file = folder.join("scripts/read_temp.scl");
    let uri = uri(&file);
    let text = std::fs::read_to_string(&file).expect("example script");
    client.open(&uri, &text);
    let hover = client.request("textDocument/hover", at(&uri, &text, "t > limit"));
    let markdown = hover["contents"]["value"].as_str().expect("markdown");
    assert!(markdown.contains("let t: float"), "{markdown}");
    assert_eq!(hover["contents"]["kind"], "markdown");

    let hover = client.request("textDocument/hover", at(&uri, &text, "CachedCall"));
    let markdown = hover["contents"]["value"].as_str().expect("markdown");
    let modules = scl_stdlib::signatures::module_table();
    let cached_call = modules
        .functions
        .iter()
        .find(|f| f.name == "CachedCall")
        .expect("ExternalSystem.CachedCall in the module table");
    assert!(
        markdown.contains(
            "ExternalSystem.CachedCall(system: string, method: string, params: json) -> Delivery"
        ),
        "{markdown}"
    );
    assert!(markdown.contains(&cached_call.doc), "{markdown}");
    assert!(markdown.contains("`instance`"), "{markdown}");

    let hover = client.request(
        "textDocument/hover",
        at(&uri, &text, "limit: float) -> void"),
    );
    assert!(
        hover["contents"]["value"]
            .as_str()
            .expect("markdown")
            .contains("limit: float")
    );
    let hover = client.request("textDocument/hover", at(&uri, &text, "Log.Warn"));
    assert!(
        hover["contents"]["value"]
            .as_str()
            .expect("markdown")
            .contains("module Log")
    );
    let hover = client.request("textDocument/hover", at(&uri, &text, "message}"));
    assert!(
        hover["contents"]["value"]
            .as_str()
            .expect("markdown")
            .contains("message: string")
    );
    // Nothing to say about a keyword.
    assert_eq!(
        client.request("textDocument/hover", at(&uri, &text, "try")),
        Value::Null
    );
    client.shutdown();
}

#[test]
fn completion_of_names_members_and_deployment_names() {
    let folder = plant();
    let mut client = Client::start(&folder);
    let file = folder.join("scripts/read_temp.scl");
    let uri = uri(&file);
    let text = "fn helper(x: int) -> int { return x; }\n\
                fn main(limit: float) -> void {\n\
                \x20   let reading = { value: 1.5, unit: \"C\" };\n\
                \x20   let name = \"pump\";\n\
                \x20   let a = rea;\n\
                \x20   let b = reading.;\n\
                \x20   let c = name.;\n\
                \x20   let d = Database.Connection(\"Historian\").;\n\
                \x20   Log.;\n\
                \x20   ExternalSystem.Call(\"\", \"\", {});\n\
                \x20   ExternalSystem.CachedCall(\"MES\", \"P\", {});\n\
                \x20   Notify.To(\"\").Send(\"s\", \"b\");\n\
                \x20   Database.CachedWrite(\"\", \"sql\", []);\n\
                \x20   let t = Attributes.Get(\"T\");\n\
                \x20   Scripts.Call(\"\", {});\n\
                \x20   Shared.Call(\"\", {});\n\
                }\n";
    client.open(&uri, text);
    let complete = |client: &mut Client, marker: &str, shift: i64| {
        let mut position = position(text, marker);
        position["character"] = json!(position["character"].as_i64().unwrap() + shift);
        client.request(
            "textDocument/completion",
            json!({ "textDocument": { "uri": uri }, "position": position }),
        )
    };
    let names = labels(&complete(&mut client, "rea;", 3));
    for wanted in [
        "reading",
        "name",
        "limit",
        "helper",
        "float",
        "Log",
        "ExternalSystem",
        "return",
    ] {
        assert!(
            names.contains(&wanted.to_string()),
            "{wanted} missing from {names:?}"
        );
    }
    // An instance script: `Route` is not allowed, so not offered.
    assert!(!names.contains(&"Route".to_string()), "{names:?}");
    assert_eq!(
        labels(&complete(&mut client, "reading.;", 8)),
        ["unit", "value"]
    );
    let methods = labels(&complete(&mut client, "name.;", 5));
    assert!(
        methods.contains(&"upper".to_string()) && methods.contains(&"split".to_string()),
        "{methods:?}"
    );
    let connection = labels(&complete(&mut client, "(\"Historian\").;", 14));
    assert!(
        connection.contains(&"Query".to_string()) && connection.contains(&"Execute".to_string()),
        "{connection:?}"
    );
    let log = labels(&complete(&mut client, "Log.;", 4));
    assert!(
        log.contains(&"Info".to_string()) && log.contains(&"Warn".to_string()),
        "{log:?}"
    );

    // Inside string arguments: the deployment's names.
    assert_eq!(
        labels(&complete(&mut client, "Call(\"\", \"\"", 6)),
        ["MES"]
    );
    let methods = labels(&complete(&mut client, "\"P\", {}", 2));
    assert_eq!(methods, ["GetOrder", "PostReading"]);
    assert_eq!(labels(&complete(&mut client, "To(\"\")", 4)), ["Operators"]);
    assert_eq!(
        labels(&complete(&mut client, "CachedWrite(\"\"", 13)),
        ["Historian"]
    );
    let attributes = complete(&mut client, "Get(\"T\")", 6);
    assert_eq!(labels(&attributes), ["Running", "Speed", "Temperature"]);
    // The edit replaces the text typed so far inside the quotes.
    let edit = &attributes["items"][0]["textEdit"];
    assert_eq!(edit["range"]["start"], {
        let mut p = position(text, "T\")");
        p["character"] = json!(p["character"].as_i64().unwrap());
        p
    });
    assert_eq!(
        labels(&complete(&mut client, "Scripts.Call(\"\"", 14)),
        ["ActiveAlarms", "Hot", "ReadTemp"]
    );
    assert_eq!(
        labels(&complete(&mut client, "Shared.Call(\"\"", 13)),
        ["Helpers"]
    );

    // An API script routes to instances.
    let api_uri = self::uri(&folder.join("scripts/api/get_pump_status.scl"));
    let api_text = "fn main() -> json {\n    return Route.To(\"\").GetAttribute(\"\");\n}\n";
    client.open(&api_uri, api_text);
    let mut position = position(api_text, "To(\"\")");
    position["character"] = json!(position["character"].as_i64().unwrap() + 4);
    let instances = client.request(
        "textDocument/completion",
        json!({ "textDocument": { "uri": api_uri }, "position": position }),
    );
    assert_eq!(labels(&instances), ["PUMP-001", "PUMP-002"]);
    client.shutdown();
}

#[test]
fn signature_help_tracks_the_argument() {
    let folder = plant();
    let mut client = Client::start(&folder);
    let uri = uri(&folder.join("scripts/read_temp.scl"));
    let text = "fn scale(value: float, factor: float) -> float { return value * factor; }\n\
                fn main() { let x = scale(1.0, ); ExternalSystem.Call(\"MES\", \"GetOrder\", ); let s = \"a\".replace(\"a\", ); }\n";
    client.open(&uri, text);
    let help = client.request("textDocument/signatureHelp", at(&uri, text, " );"));
    assert_eq!(
        help["signatures"][0]["label"],
        "scale(value: float, factor: float) -> float"
    );
    assert_eq!(help["activeParameter"], 1);
    assert_eq!(
        help["signatures"][0]["parameters"][1]["label"],
        json!([20, 33])
    );
    let help = client.request("textDocument/signatureHelp", at(&uri, text, " ); let s"));
    assert_eq!(
        help["signatures"][0]["label"],
        "ExternalSystem.Call(system: string, method: string, params: json) -> json"
    );
    assert_eq!(help["activeParameter"], 2);
    let help = client.request("textDocument/signatureHelp", at(&uri, text, " ); }"));
    assert_eq!(
        help["signatures"][0]["label"],
        "replace(from: string, to: string) -> string"
    );
    assert_eq!(help["activeParameter"], 1);
    client.shutdown();
}

#[test]
fn definition_references_and_rename() {
    let folder = plant();
    let mut client = Client::start(&folder);
    let uri = uri(&folder.join("scratch.scl"));
    let text = "type Point = { x: int, y: int }\n\
                fn norm(p: Point) -> int { return p.x * p.x + p.y * p.y; }\n\
                fn main() -> int {\n    let origin: Point = { x: 0, y: 0 };\n    var total = norm(origin);\n    total += norm({ x: 1, y: 2 });\n    return total;\n}\n";
    client.open(&uri, text);
    let line_of = |marker: &str| position(text, marker)["line"].clone();

    // A function: from a call to its declaration, and every use.
    let definition = client.request("textDocument/definition", at(&uri, text, "norm(origin)"));
    assert_eq!(definition["uri"], uri);
    assert_eq!(definition["range"]["start"], position(text, "norm(p"));
    let references = client.request("textDocument/references", json!({
        "textDocument": { "uri": uri }, "position": position(text, "norm(p"), "context": { "includeDeclaration": true }
    }));
    assert_eq!(references.as_array().map(Vec::len), Some(3));
    // A type.
    let definition = client.request("textDocument/definition", at(&uri, text, "Point = {"));
    assert_eq!(definition["range"]["start"], position(text, "Point = {"));
    let references = client.request("textDocument/references", json!({
        "textDocument": { "uri": uri }, "position": position(text, "Point)"), "context": { "includeDeclaration": false }
    }));
    assert_eq!(references.as_array().map(Vec::len), Some(2));
    // A local.
    let definition = client.request("textDocument/definition", at(&uri, text, "total;"));
    assert_eq!(definition["range"]["start"]["line"], line_of("var total"));

    // Rename a local and a function.
    let prepared = client.request("textDocument/prepareRename", at(&uri, text, "total +="));
    assert_eq!(prepared["start"], position(text, "total +="));
    let edit = client.request(
        "textDocument/rename",
        json!({
            "textDocument": { "uri": uri }, "position": position(text, "total +="), "newName": "sum"
        }),
    );
    let edits = edit["changes"][&uri].as_array().expect("edits");
    assert_eq!(edits.len(), 3);
    assert!(edits.iter().all(|e| e["newText"] == "sum"));
    let edit = client.request("textDocument/rename", json!({
        "textDocument": { "uri": uri }, "position": position(text, "norm(p"), "newName": "length"
    }));
    assert_eq!(edit["changes"][&uri].as_array().map(Vec::len), Some(3));
    // Not a valid name: an error response.
    let refused = client.request_raw(
        "textDocument/rename",
        json!({
            "textDocument": { "uri": uri }, "position": position(text, "norm(p"), "newName": "fn"
        }),
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not a valid name"),
        "{refused}"
    );
    // Keywords cannot be renamed.
    assert_eq!(
        client.request("textDocument/prepareRename", at(&uri, text, "return total")),
        Value::Null
    );
    client.shutdown();
}

#[test]
fn document_symbols_and_semantic_tokens() {
    let folder = plant();
    let mut client = Client::start(&folder);
    let uri = uri(&folder.join("scratch.scl"));
    let text = "// A note.\ntype Reading = { value: float }\nfn main(limit: float) -> float {\n    let r: Reading = { value: 1.0 };\n    Log.Info(\"x\");\n    return r.value + limit;\n}\n";
    client.open(&uri, text);
    let symbols = client.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": uri } }),
    );
    let symbols = symbols.as_array().expect("symbols");
    assert_eq!(symbols.len(), 2);
    assert_eq!(symbols[0]["name"], "Reading");
    assert_eq!(symbols[0]["kind"], 23); // Struct
    assert_eq!(symbols[1]["name"], "main");
    assert_eq!(symbols[1]["kind"], 12); // Function
    assert_eq!(symbols[1]["detail"], "fn main(limit: float) -> float");
    let children: Vec<&str> = symbols[1]["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(children, ["limit", "r"]);

    let result = client.request(
        "textDocument/semanticTokens/full",
        json!({ "textDocument": { "uri": uri } }),
    );
    let data: Vec<u64> = result["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(data.len() % 5, 0);
    // Decode to (line, column, length, type) and look some up.
    let legend = [
        "namespace",
        "type",
        "function",
        "method",
        "property",
        "parameter",
        "variable",
        "keyword",
        "string",
        "number",
        "comment",
        "operator",
    ];
    let mut decoded = Vec::new();
    let (mut line, mut column) = (0, 0);
    for chunk in data.chunks(5) {
        if chunk[0] > 0 {
            line += chunk[0];
            column = chunk[1];
        } else {
            column += chunk[1];
        }
        decoded.push((line, column, chunk[2], legend[chunk[3] as usize], chunk[4]));
    }
    let kind_at = |marker: &str| {
        let p = position(text, marker);
        decoded
            .iter()
            .find(|(l, c, _, _, _)| {
                *l == p["line"].as_u64().unwrap() && *c == p["character"].as_u64().unwrap()
            })
            .map(|t| t.3)
    };
    assert_eq!(kind_at("// A note."), Some("comment"));
    assert_eq!(kind_at("type Reading"), Some("keyword"));
    assert_eq!(kind_at("Reading = {"), Some("type"));
    assert_eq!(kind_at("main("), Some("function"));
    assert_eq!(kind_at("limit: float"), Some("parameter"));
    assert_eq!(kind_at("float) ->"), Some("type"));
    assert_eq!(kind_at("Log."), Some("namespace"));
    assert_eq!(kind_at("Info("), Some("function"));
    assert_eq!(kind_at("\"x\""), Some("string"));
    assert_eq!(kind_at("value + limit"), Some("property"));
    assert_eq!(kind_at("1.0"), Some("number"));
    assert_eq!(kind_at("r.value"), Some("variable"));
    client.shutdown();
}

#[test]
fn formatting_is_the_formatter_of_scl_fmt() {
    let folder = plant();
    let mut client = Client::start(&folder);
    let uri = uri(&folder.join("scratch.scl"));
    let text = "fn main( )->int{ // entry\nlet x=1+2;return x;}";
    client.open(&uri, text);
    let edits = client.request(
        "textDocument/formatting",
        json!({
            "textDocument": { "uri": uri }, "options": { "tabSize": 4, "insertSpaces": true }
        }),
    );
    let edits = edits.as_array().expect("edits");
    assert_eq!(edits.len(), 1);
    let expected = scl_lang::format::format(text).expect("formats");
    assert_eq!(edits[0]["newText"], expected);
    assert_eq!(
        expected,
        "fn main() -> int { // entry\n    let x = 1 + 2;\n    return x;\n}\n"
    );
    assert_eq!(
        edits[0]["range"]["start"],
        json!({ "line": 0, "character": 0 })
    );
    // A file with syntax errors is left alone.
    client.notify("textDocument/didChange", json!({
        "textDocument": { "uri": uri, "version": 2 }, "contentChanges": [{ "text": "fn main( {" }]
    }));
    let edits = client.request(
        "textDocument/formatting",
        json!({
            "textDocument": { "uri": uri }, "options": { "tabSize": 4, "insertSpaces": true }
        }),
    );
    assert_eq!(edits, json!([]));
    client.shutdown();
}

#[test]
fn quick_fixes_for_obvious_mistakes() {
    let folder = plant();
    let mut client = Client::start(&folder);
    let uri = uri(&folder.join("scratch.scl"));
    let text = "fn main() -> int {\n    let total = 1;\n    total = totl + 1;\n    let s = \"a\".uper();\n    Log.Inf(\"x\")\n    return total;\n}\n";
    client.open(&uri, text);
    let diagnostics = client.diagnostics(&uri, 1);
    assert!(!diagnostics.is_empty());
    let fix_at = |client: &mut Client, marker: &str| {
        let actions = client.request(
            "textDocument/codeAction",
            json!({
                "textDocument": { "uri": uri },
                "range": { "start": position(text, marker), "end": position(text, marker) },
                "context": { "diagnostics": [] }
            }),
        );
        actions.as_array().cloned().unwrap_or_default()
    };
    let titles = |actions: &[Value]| {
        actions
            .iter()
            .map(|a| a["title"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        titles(&fix_at(&mut client, "totl")).contains(&"Replace `totl` with `total`".to_string())
    );
    assert!(
        titles(&fix_at(&mut client, "uper")).contains(&"Replace `uper` with `upper`".to_string())
    );
    assert!(
        titles(&fix_at(&mut client, "Inf(")).contains(&"Replace `Inf` with `Info`".to_string())
    );
    let semicolon = fix_at(&mut client, "\n    return");
    assert!(
        titles(&semicolon).contains(&"Add `;`".to_string()),
        "{semicolon:?}"
    );
    let immutable = fix_at(&mut client, "total = totl");
    let fix = immutable
        .iter()
        .find(|a| a["title"] == "Declare `total` with `var`")
        .expect("let to var");
    let edit = &fix["edit"]["changes"][&uri][0];
    assert_eq!(edit["newText"], "var");
    assert_eq!(edit["range"]["start"], position(text, "let total"));
    assert_eq!(fix["diagnostics"][0]["code"], "SCL0301");
    client.shutdown();
}

#[test]
fn hostile_input_never_breaks_the_server() {
    let folder = plant();
    let mut client = Client::start(&folder);
    let uri = uri(&folder.join("scratch.scl"));
    let text = "fn main( { \"${ \u{1F600} /* never closed\n\u{0} \"\\u{110000}\" 99999999999999999999 ]]]) as as .";
    client.open(&uri, text);
    let diagnostics = client.diagnostics(&uri, 1);
    assert!(!diagnostics.is_empty());
    let lines = text.lines().count() as i64;
    for line in 0..=lines {
        for character in [0, 1, 3, 7, 200] {
            let position = json!({ "line": line, "character": character });
            let params = json!({ "textDocument": { "uri": uri }, "position": position });
            for method in [
                "textDocument/hover",
                "textDocument/completion",
                "textDocument/signatureHelp",
                "textDocument/definition",
                "textDocument/prepareRename",
            ] {
                client.request(method, params.clone());
            }
            client.request("textDocument/references", json!({
                "textDocument": { "uri": uri }, "position": position, "context": { "includeDeclaration": true }
            }));
        }
    }
    client.request(
        "textDocument/semanticTokens/full",
        json!({ "textDocument": { "uri": uri } }),
    );
    client.request(
        "textDocument/documentSymbol",
        json!({ "textDocument": { "uri": uri } }),
    );
    // An edit with a range beyond the end of the text is clamped.
    client.notify("textDocument/didChange", json!({
        "textDocument": { "uri": uri, "version": 2 },
        "contentChanges": [{ "range": { "start": { "line": 99, "character": 0 }, "end": { "line": 120, "character": 5 } }, "text": "x" }]
    }));
    client.diagnostics(&uri, 2);
    client.shutdown();
}
