//! The protocol layer: one synchronous loop over the messages of an
//! `lsp_server::Connection`, keeping the open documents and the workspace's
//! deployment, and answering each request with a call into [`crate::ide`]
//! plus conversions ([`crate::convert`]).
//!
//! Edits are applied as they come (incremental sync); diagnostics are
//! published once the queue of incoming messages is empty, so a burst of
//! keystrokes costs one analysis. A request that panics (it should not: the
//! IDE functions do not panic) gets an internal-error response and the server
//! keeps running.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types as lsp;
use scl_lang::modules::ModuleTable;
use scl_lang::{Severity, Span};
use serde_json::Value;

use crate::convert::{Encoding, LineIndex, uri_to_path, utf16_len};
use crate::ide::completion::CompletionKind;
use crate::ide::deployment::{self, DeploymentInfo};
use crate::ide::index::SymbolKind;
use crate::ide::semantic::{MODIFIERS, TokenType};
use crate::ide::{self, Analysis, World};

/// An open document.
struct Document {
    uri: lsp::Uri,
    text: String,
    version: i32,
    lines: LineIndex,
    /// The analysis of `text`, computed when first needed.
    analysis: Option<Analysis>,
    /// Diagnostics must be (re)published.
    stale_diagnostics: bool,
}

/// The deployment file found in the workspace.
struct LoadedDeployment {
    path: PathBuf,
    modified: Option<SystemTime>,
    info: DeploymentInfo,
}

pub(crate) struct Server<'c> {
    connection: &'c Connection,
    encoding: Encoding,
    modules: ModuleTable,
    roots: Vec<PathBuf>,
    deployment: Option<LoadedDeployment>,
    documents: HashMap<String, Document>,
}

/// The server's capabilities, in the encoding agreed with the client.
fn capabilities(encoding: Encoding) -> lsp::ServerCapabilities {
    let legend = lsp::SemanticTokensLegend {
        token_types: TokenType::ALL
            .iter()
            .map(|t| lsp::SemanticTokenType::new(t.name()))
            .collect(),
        token_modifiers: MODIFIERS
            .iter()
            .map(|m| lsp::SemanticTokenModifier::new(m))
            .collect(),
    };
    lsp::ServerCapabilities {
        position_encoding: Some(match encoding {
            Encoding::Utf8 => lsp::PositionEncodingKind::UTF8,
            Encoding::Utf16 => lsp::PositionEncodingKind::UTF16,
        }),
        text_document_sync: Some(lsp::TextDocumentSyncCapability::Options(
            lsp::TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(lsp::TextDocumentSyncKind::INCREMENTAL),
                save: Some(lsp::TextDocumentSyncSaveOptions::Supported(true)),
                ..lsp::TextDocumentSyncOptions::default()
            },
        )),
        hover_provider: Some(lsp::HoverProviderCapability::Simple(true)),
        completion_provider: Some(lsp::CompletionOptions {
            trigger_characters: Some(vec![".".to_string(), "\"".to_string()]),
            ..lsp::CompletionOptions::default()
        }),
        signature_help_provider: Some(lsp::SignatureHelpOptions {
            trigger_characters: Some(vec!["(".to_string(), ",".to_string()]),
            ..lsp::SignatureHelpOptions::default()
        }),
        definition_provider: Some(lsp::OneOf::Left(true)),
        references_provider: Some(lsp::OneOf::Left(true)),
        rename_provider: Some(lsp::OneOf::Right(lsp::RenameOptions {
            prepare_provider: Some(true),
            work_done_progress_options: lsp::WorkDoneProgressOptions::default(),
        })),
        document_symbol_provider: Some(lsp::OneOf::Left(true)),
        document_formatting_provider: Some(lsp::OneOf::Left(true)),
        code_action_provider: Some(lsp::CodeActionProviderCapability::Options(
            lsp::CodeActionOptions {
                code_action_kinds: Some(vec![lsp::CodeActionKind::QUICKFIX]),
                ..lsp::CodeActionOptions::default()
            },
        )),
        semantic_tokens_provider: Some(
            lsp::SemanticTokensServerCapabilities::SemanticTokensOptions(
                lsp::SemanticTokensOptions {
                    legend,
                    full: Some(lsp::SemanticTokensFullOptions::Bool(true)),
                    range: None,
                    work_done_progress_options: lsp::WorkDoneProgressOptions::default(),
                },
            ),
        ),
        ..lsp::ServerCapabilities::default()
    }
}

/// Runs the initialize handshake and then the server until `exit`.
pub(crate) fn run(connection: &Connection) -> Result<(), String> {
    let (id, params) = connection.initialize_start().map_err(|e| e.to_string())?;
    let params: lsp::InitializeParams = serde_json::from_value(params).unwrap_or_default();
    let offers_utf8 = params
        .capabilities
        .general
        .as_ref()
        .and_then(|general| general.position_encodings.as_ref())
        .is_some_and(|encodings| encodings.contains(&lsp::PositionEncodingKind::UTF8));
    let encoding = if offers_utf8 {
        Encoding::Utf8
    } else {
        Encoding::Utf16
    };
    let result = serde_json::json!({
        "capabilities": capabilities(encoding),
        "serverInfo": { "name": "scl-lsp", "version": env!("CARGO_PKG_VERSION") },
    });
    connection
        .initialize_finish(id, result)
        .map_err(|e| e.to_string())?;
    let mut server = Server {
        connection,
        encoding,
        modules: scl_stdlib::signatures::module_table(),
        roots: workspace_roots(&params),
        deployment: None,
        documents: HashMap::new(),
    };
    server.discover_deployment(None);
    server.main_loop()
}

#[allow(deprecated)] // `root_path` and `root_uri` are still what many clients send.
fn workspace_roots(params: &lsp::InitializeParams) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = params
        .workspace_folders
        .iter()
        .flatten()
        .filter_map(|folder| uri_to_path(folder.uri.as_str()))
        .collect();
    if roots.is_empty() {
        if let Some(root) = params
            .root_uri
            .as_ref()
            .and_then(|uri| uri_to_path(uri.as_str()))
        {
            roots.push(root);
        } else if let Some(root) = &params.root_path {
            roots.push(PathBuf::from(root));
        }
    }
    roots
}

/// The deployment file of a folder: `deploy.toml`, else any `*.toml` that
/// looks like one.
fn deployment_in(folder: &Path) -> Option<PathBuf> {
    let preferred = folder.join("deploy.toml");
    if preferred.is_file() {
        return Some(preferred);
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(folder)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    candidates.sort();
    candidates.into_iter().find(|path| {
        std::fs::read_to_string(path).is_ok_and(|text| deployment::looks_like_deployment(&text))
    })
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Server<'_> {
    fn main_loop(&mut self) -> Result<(), String> {
        loop {
            let Ok(message) = self.connection.receiver.recv() else {
                return Ok(());
            };
            if self.handle(message)? {
                return Ok(());
            }
            // Take everything that is already queued before analysing.
            while let Ok(message) = self.connection.receiver.try_recv() {
                if self.handle(message)? {
                    return Ok(());
                }
            }
            self.refresh_deployment();
            self.publish_diagnostics();
        }
    }

    /// Handles one message; true when the server must stop.
    fn handle(&mut self, message: Message) -> Result<bool, String> {
        match message {
            Message::Request(request) => {
                if self
                    .connection
                    .handle_shutdown(&request)
                    .map_err(|e| e.to_string())?
                {
                    return Ok(true);
                }
                let id = request.id.clone();
                let method = request.method.clone();
                let response = match catch_unwind(AssertUnwindSafe(|| self.request(request))) {
                    Ok(response) => response,
                    Err(_) => Response::new_err(
                        id,
                        ErrorCode::InternalError as i32,
                        format!("internal error while answering {method}"),
                    ),
                };
                self.send(Message::Response(response));
            }
            Message::Notification(notification) => {
                if notification.method == "exit" {
                    return Ok(true);
                }
                let method = notification.method.clone();
                if catch_unwind(AssertUnwindSafe(|| self.notification(notification))).is_err() {
                    self.log(&format!("internal error while handling {method}"));
                }
            }
            Message::Response(_) => {}
        }
        Ok(false)
    }

    fn send(&self, message: Message) {
        // The client went away when this fails; the loop ends on the next receive.
        let _ = self.connection.sender.send(message);
    }

    fn notify<N: lsp::notification::Notification>(&self, params: N::Params) {
        self.send(Message::Notification(Notification::new(
            N::METHOD.to_string(),
            params,
        )));
    }

    fn log(&self, message: &str) {
        self.notify::<lsp::notification::LogMessage>(lsp::LogMessageParams {
            typ: lsp::MessageType::WARNING,
            message: message.to_string(),
        });
    }

    // ----- The deployment -----

    /// Finds the deployment file: in a workspace folder, else in the folders
    /// above `near`, else the one already loaded (if it still exists).
    fn discover_deployment(&mut self, near: Option<&Path>) {
        let mut found = self.roots.iter().find_map(|root| deployment_in(root));
        if found.is_none()
            && let Some(file) = near
        {
            // No workspace root (or none with a deployment): the nearest folder
            // above the file with a `deploy.toml`.
            found = file
                .ancestors()
                .skip(1)
                .map(|folder| folder.join("deploy.toml"))
                .find(|p| p.is_file());
        }
        if found.is_none() {
            found = self
                .deployment
                .as_ref()
                .map(|d| d.path.clone())
                .filter(|p| p.is_file());
        }
        match found {
            Some(path) => self.load_deployment(path),
            None => self.deployment = None,
        }
    }

    fn load_deployment(&mut self, path: PathBuf) {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) => {
                self.log(&format!("cannot read {}: {error}", path.display()));
                self.deployment = None;
                return;
            }
        };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        match deployment::parse(&text, &base) {
            Ok(info) => {
                self.deployment = Some(LoadedDeployment {
                    modified: modified(&path),
                    path,
                    info,
                });
            }
            Err(error) => {
                // Keep the names known so far while the file is being edited.
                self.log(&format!("{}: {error}", path.display()));
                if let Some(loaded) = &mut self.deployment {
                    loaded.modified = modified(&path);
                }
            }
        }
        for document in self.documents.values_mut() {
            document.analysis = None;
            document.stale_diagnostics = true;
        }
    }

    /// Reloads the deployment when its file changed on disk.
    fn refresh_deployment(&mut self) {
        let Some(loaded) = &self.deployment else {
            return;
        };
        if modified(&loaded.path) != loaded.modified {
            let path = loaded.path.clone();
            self.load_deployment(path);
        }
    }

    // ----- Documents -----

    /// What the file at `uri` is checked against.
    fn world(&self, uri: &str) -> World<'_> {
        let deployed =
            uri_to_path(uri).and_then(|path| self.deployment.as_ref()?.info.script(&path));
        World {
            modules: &self.modules,
            kind: deployed.map(|s| s.kind),
            names: self.deployment.as_ref().map(|d| &d.info.names),
            template: deployed.and_then(|s| s.template.as_deref()),
        }
    }

    /// Makes sure the document at `uri` has an up-to-date analysis.
    fn prepare(&mut self, uri: &str) -> Result<(), (ErrorCode, String)> {
        let document = self.documents.get(uri).ok_or_else(|| not_open(uri))?;
        if document.analysis.is_none() {
            let analysis = ide::analyze(&document.text, &self.world(uri));
            if let Some(document) = self.documents.get_mut(uri) {
                document.analysis = Some(analysis);
            }
        }
        Ok(())
    }

    /// An open document with its analysis (after [`Server::prepare`]).
    fn document(&self, uri: &str) -> Result<(&Document, &Analysis), (ErrorCode, String)> {
        let document = self.documents.get(uri).ok_or_else(|| not_open(uri))?;
        let analysis = document.analysis.as_ref().ok_or_else(|| not_open(uri))?;
        Ok((document, analysis))
    }

    fn publish_diagnostics(&mut self) {
        let stale: Vec<String> = self
            .documents
            .iter()
            .filter(|(_, d)| d.stale_diagnostics)
            .map(|(uri, _)| uri.clone())
            .collect();
        for uri in stale {
            let encoding = self.encoding;
            if self.prepare(&uri).is_err() {
                continue;
            }
            let Ok((document, analysis)) = self.document(&uri) else {
                continue;
            };
            let diagnostics = analysis
                .diagnostics()
                .iter()
                .map(|d| to_lsp_diagnostic(document, d, encoding))
                .collect();
            let params = lsp::PublishDiagnosticsParams {
                uri: document.uri.clone(),
                diagnostics,
                version: Some(document.version),
            };
            if let Some(document) = self.documents.get_mut(&uri) {
                document.stale_diagnostics = false;
            }
            self.notify::<lsp::notification::PublishDiagnostics>(params);
        }
    }

    fn notification(&mut self, notification: Notification) {
        use lsp::notification::{
            DidChangeTextDocument, DidChangeWatchedFiles, DidCloseTextDocument,
            DidOpenTextDocument, DidSaveTextDocument, Notification as _,
        };
        let method = notification.method.as_str();
        let params = notification.params;
        match method {
            DidOpenTextDocument::METHOD => {
                let Ok(params) = serde_json::from_value::<lsp::DidOpenTextDocumentParams>(params)
                else {
                    return;
                };
                let document = params.text_document;
                if self.deployment.is_none()
                    && let Some(path) = uri_to_path(document.uri.as_str())
                {
                    self.discover_deployment(Some(&path));
                }
                self.documents.insert(
                    document.uri.as_str().to_string(),
                    Document {
                        lines: LineIndex::new(&document.text),
                        uri: document.uri,
                        text: document.text,
                        version: document.version,
                        analysis: None,
                        stale_diagnostics: true,
                    },
                );
            }
            DidChangeTextDocument::METHOD => {
                let Ok(params) = serde_json::from_value::<lsp::DidChangeTextDocumentParams>(params)
                else {
                    return;
                };
                let encoding = self.encoding;
                let Some(document) = self.documents.get_mut(params.text_document.uri.as_str())
                else {
                    return;
                };
                for change in params.content_changes {
                    match change.range {
                        Some(range) => {
                            let span = document.lines.span(&document.text, range, encoding);
                            document.text.replace_range(span.range(), &change.text);
                        }
                        None => document.text = change.text,
                    }
                    document.lines = LineIndex::new(&document.text);
                }
                document.version = params.text_document.version;
                document.analysis = None;
                document.stale_diagnostics = true;
            }
            DidCloseTextDocument::METHOD => {
                let Ok(params) = serde_json::from_value::<lsp::DidCloseTextDocumentParams>(params)
                else {
                    return;
                };
                if self
                    .documents
                    .remove(params.text_document.uri.as_str())
                    .is_some()
                {
                    self.notify::<lsp::notification::PublishDiagnostics>(
                        lsp::PublishDiagnosticsParams {
                            uri: params.text_document.uri,
                            diagnostics: Vec::new(),
                            version: None,
                        },
                    );
                }
            }
            DidSaveTextDocument::METHOD => {
                let Ok(params) = serde_json::from_value::<lsp::DidSaveTextDocumentParams>(params)
                else {
                    return;
                };
                if params.text_document.uri.as_str().ends_with(".toml") {
                    let saved = uri_to_path(params.text_document.uri.as_str());
                    self.discover_deployment(saved.as_deref());
                }
            }
            DidChangeWatchedFiles::METHOD => {
                let Ok(params) = serde_json::from_value::<lsp::DidChangeWatchedFilesParams>(params)
                else {
                    return;
                };
                if params
                    .changes
                    .iter()
                    .any(|c| c.uri.as_str().ends_with(".toml"))
                {
                    self.discover_deployment(None);
                }
            }
            _ => {}
        }
    }

    // ----- Requests -----

    fn request(&mut self, request: Request) -> Response {
        use lsp::request::{
            CodeActionRequest, Completion, DocumentSymbolRequest, Formatting, GotoDefinition,
            HoverRequest, PrepareRenameRequest, References, Rename, Request as _,
            SemanticTokensFullRequest, SignatureHelpRequest,
        };
        let id = request.id.clone();
        let result: Result<Value, (ErrorCode, String)> = match request.method.as_str() {
            HoverRequest::METHOD => self.with_params(request, |s, p: lsp::HoverParams| {
                s.hover(p.text_document_position_params)
            }),
            Completion::METHOD => {
                self.with_params(request, |s, p: lsp::CompletionParams| s.completion(p))
            }
            SignatureHelpRequest::METHOD => self
                .with_params(request, |s, p: lsp::SignatureHelpParams| {
                    s.signature_help(p.text_document_position_params)
                }),
            GotoDefinition::METHOD => self
                .with_params(request, |s, p: lsp::GotoDefinitionParams| {
                    s.definition(p.text_document_position_params)
                }),
            References::METHOD => {
                self.with_params(request, |s, p: lsp::ReferenceParams| s.references(p))
            }
            PrepareRenameRequest::METHOD => self
                .with_params(request, |s, p: lsp::TextDocumentPositionParams| {
                    s.prepare_rename(p)
                }),
            Rename::METHOD => self.with_params(request, |s, p: lsp::RenameParams| s.rename(p)),
            DocumentSymbolRequest::METHOD => self
                .with_params(request, |s, p: lsp::DocumentSymbolParams| {
                    s.document_symbols(&p.text_document)
                }),
            SemanticTokensFullRequest::METHOD => self
                .with_params(request, |s, p: lsp::SemanticTokensParams| {
                    s.semantic_tokens(&p.text_document)
                }),
            Formatting::METHOD => self
                .with_params(request, |s, p: lsp::DocumentFormattingParams| {
                    s.formatting(&p.text_document)
                }),
            CodeActionRequest::METHOD => {
                self.with_params(request, |s, p: lsp::CodeActionParams| s.code_actions(p))
            }
            other => Err((
                ErrorCode::MethodNotFound,
                format!("unsupported request {other}"),
            )),
        };
        match result {
            Ok(value) => Response::new_ok(id, value),
            Err((code, message)) => Response::new_err(id, code as i32, message),
        }
    }

    fn with_params<P: serde::de::DeserializeOwned>(
        &mut self,
        request: Request,
        handler: impl FnOnce(&mut Self, P) -> Result<Value, (ErrorCode, String)>,
    ) -> Result<Value, (ErrorCode, String)> {
        match serde_json::from_value::<P>(request.params) {
            Ok(params) => handler(self, params),
            Err(error) => Err((ErrorCode::InvalidParams, error.to_string())),
        }
    }

    /// Prepares the document of a position; its URI and the byte offset.
    fn position(
        &mut self,
        position: &lsp::TextDocumentPositionParams,
    ) -> Result<(String, usize), (ErrorCode, String)> {
        let uri = position.text_document.uri.as_str().to_string();
        self.prepare(&uri)?;
        let (document, _) = self.document(&uri)?;
        let offset = document
            .lines
            .offset(&document.text, position.position, self.encoding);
        Ok((uri, offset))
    }

    fn range(&self, document: &Document, span: Span) -> lsp::Range {
        document.lines.range(&document.text, span, self.encoding)
    }

    fn location(&self, document: &Document, span: Span) -> lsp::Location {
        lsp::Location {
            uri: document.uri.clone(),
            range: self.range(document, span),
        }
    }

    fn hover(
        &mut self,
        params: lsp::TextDocumentPositionParams,
    ) -> Result<Value, (ErrorCode, String)> {
        let (uri, offset) = self.position(&params)?;
        let (document, analysis) = self.document(&uri)?;
        let Some(hover) = ide::hover::hover(analysis, &self.world(&uri), offset) else {
            return Ok(Value::Null);
        };
        to_value(lsp::Hover {
            contents: lsp::HoverContents::Markup(lsp::MarkupContent {
                kind: lsp::MarkupKind::Markdown,
                value: hover.markdown,
            }),
            range: Some(self.range(document, hover.span)),
        })
    }

    fn completion(&mut self, params: lsp::CompletionParams) -> Result<Value, (ErrorCode, String)> {
        let (uri, offset) = self.position(&params.text_document_position)?;
        let (document, _) = self.document(&uri)?;
        let items: Vec<lsp::CompletionItem> =
            ide::completion::completions(&document.text, &self.world(&uri), offset)
                .into_iter()
                .enumerate()
                .map(|(rank, item)| lsp::CompletionItem {
                    kind: Some(completion_kind(item.kind)),
                    detail: item.detail,
                    documentation: item.documentation.map(markdown),
                    sort_text: Some(format!("{rank:04}")),
                    filter_text: Some(item.label.clone()),
                    text_edit: Some(lsp::CompletionTextEdit::Edit(lsp::TextEdit {
                        range: self.range(document, item.replace),
                        new_text: item.label.clone(),
                    })),
                    label: item.label,
                    ..lsp::CompletionItem::default()
                })
                .collect();
        to_value(lsp::CompletionResponse::List(lsp::CompletionList {
            is_incomplete: false,
            items,
        }))
    }

    fn signature_help(
        &mut self,
        params: lsp::TextDocumentPositionParams,
    ) -> Result<Value, (ErrorCode, String)> {
        let (uri, offset) = self.position(&params)?;
        let (_, analysis) = self.document(&uri)?;
        let Some(help) = ide::signature::signature_help(analysis, &self.world(&uri), offset) else {
            return Ok(Value::Null);
        };
        let parameters = help
            .parameters
            .iter()
            .map(|&(start, end)| lsp::ParameterInformation {
                label: lsp::ParameterLabel::LabelOffsets([
                    utf16_len(help.label.get(..start).unwrap_or("")),
                    utf16_len(help.label.get(..end).unwrap_or("")),
                ]),
                documentation: None,
            })
            .collect();
        let active = help.active_parameter as u32;
        to_value(lsp::SignatureHelp {
            signatures: vec![lsp::SignatureInformation {
                label: help.label,
                documentation: help.documentation.map(markdown),
                parameters: Some(parameters),
                active_parameter: Some(active),
            }],
            active_signature: Some(0),
            active_parameter: Some(active),
        })
    }

    fn definition(
        &mut self,
        params: lsp::TextDocumentPositionParams,
    ) -> Result<Value, (ErrorCode, String)> {
        let (uri, offset) = self.position(&params)?;
        let (document, analysis) = self.document(&uri)?;
        match ide::navigation::definition(analysis, offset) {
            Some(span) => to_value(lsp::GotoDefinitionResponse::Scalar(
                self.location(document, span),
            )),
            None => Ok(Value::Null),
        }
    }

    fn references(&mut self, params: lsp::ReferenceParams) -> Result<Value, (ErrorCode, String)> {
        let include = params.context.include_declaration;
        let (uri, offset) = self.position(&params.text_document_position)?;
        let (document, analysis) = self.document(&uri)?;
        let locations: Vec<lsp::Location> = ide::navigation::references(analysis, offset, include)
            .into_iter()
            .map(|span| self.location(document, span))
            .collect();
        to_value(locations)
    }

    fn prepare_rename(
        &mut self,
        params: lsp::TextDocumentPositionParams,
    ) -> Result<Value, (ErrorCode, String)> {
        let (uri, offset) = self.position(&params)?;
        let (document, analysis) = self.document(&uri)?;
        match ide::navigation::prepare_rename(analysis, offset) {
            Some(span) => to_value(lsp::PrepareRenameResponse::Range(
                self.range(document, span),
            )),
            None => Ok(Value::Null),
        }
    }

    fn rename(&mut self, params: lsp::RenameParams) -> Result<Value, (ErrorCode, String)> {
        let (uri, offset) = self.position(&params.text_document_position)?;
        let (document, analysis) = self.document(&uri)?;
        let edits = ide::navigation::rename(analysis, offset, &params.new_name)
            .map_err(|message| (ErrorCode::RequestFailed, message))?
            .into_iter()
            .map(|(span, new_text)| lsp::TextEdit {
                range: self.range(document, span),
                new_text,
            })
            .collect();
        to_value(lsp::WorkspaceEdit {
            changes: Some(HashMap::from([(document.uri.clone(), edits)])),
            ..lsp::WorkspaceEdit::default()
        })
    }

    fn document_symbols(
        &mut self,
        text_document: &lsp::TextDocumentIdentifier,
    ) -> Result<Value, (ErrorCode, String)> {
        let uri = text_document.uri.as_str();
        self.prepare(uri)?;
        let (document, analysis) = self.document(uri)?;
        let symbols: Vec<lsp::DocumentSymbol> = ide::symbols::document_symbols(analysis)
            .into_iter()
            .map(|symbol| self.document_symbol(document, symbol))
            .collect();
        to_value(lsp::DocumentSymbolResponse::Nested(symbols))
    }

    #[allow(deprecated)] // `deprecated` is a field the type requires.
    fn document_symbol(
        &self,
        document: &Document,
        symbol: ide::symbols::DocumentSymbol,
    ) -> lsp::DocumentSymbol {
        lsp::DocumentSymbol {
            name: symbol.name,
            detail: symbol.detail,
            kind: match symbol.kind {
                SymbolKind::Function => lsp::SymbolKind::FUNCTION,
                SymbolKind::Type => lsp::SymbolKind::STRUCT,
                SymbolKind::Let => lsp::SymbolKind::CONSTANT,
                _ => lsp::SymbolKind::VARIABLE,
            },
            tags: None,
            deprecated: None,
            range: self.range(document, symbol.span),
            selection_range: self.range(document, symbol.selection),
            children: Some(
                symbol
                    .children
                    .into_iter()
                    .map(|c| self.document_symbol(document, c))
                    .collect(),
            ),
        }
    }

    fn semantic_tokens(
        &mut self,
        text_document: &lsp::TextDocumentIdentifier,
    ) -> Result<Value, (ErrorCode, String)> {
        let uri = text_document.uri.as_str();
        self.prepare(uri)?;
        let (document, analysis) = self.document(uri)?;
        let mut data = Vec::new();
        let mut previous = lsp::Position {
            line: 0,
            character: 0,
        };
        for token in ide::semantic::semantic_tokens(analysis) {
            let range = self.range(document, token.span);
            let start = range.start;
            let delta_line = start.line.saturating_sub(previous.line);
            let delta_start = if delta_line == 0 {
                start.character.saturating_sub(previous.character)
            } else {
                start.character
            };
            data.push(lsp::SemanticToken {
                delta_line,
                delta_start,
                length: range.end.character.saturating_sub(start.character),
                token_type: token.kind.index(),
                token_modifiers_bitset: token.modifiers,
            });
            previous = start;
        }
        to_value(lsp::SemanticTokensResult::Tokens(lsp::SemanticTokens {
            result_id: None,
            data,
        }))
    }

    fn formatting(
        &mut self,
        text_document: &lsp::TextDocumentIdentifier,
    ) -> Result<Value, (ErrorCode, String)> {
        let uri = text_document.uri.as_str();
        let document = self.documents.get(uri).ok_or_else(|| not_open(uri))?;
        let edits = match scl_lang::format::format(&document.text) {
            Ok(formatted) if formatted != document.text => vec![lsp::TextEdit {
                range: self.range(document, Span::new(0, document.text.len())),
                new_text: formatted,
            }],
            // Unchanged, or not formatted because of syntax errors (which the
            // diagnostics already show).
            _ => Vec::new(),
        };
        to_value(edits)
    }

    fn code_actions(
        &mut self,
        params: lsp::CodeActionParams,
    ) -> Result<Value, (ErrorCode, String)> {
        let uri = params.text_document.uri.as_str();
        self.prepare(uri)?;
        let (document, analysis) = self.document(uri)?;
        let range = document
            .lines
            .span(&document.text, params.range, self.encoding);
        let actions: Vec<lsp::CodeActionOrCommand> = ide::actions::fixes(analysis, range)
            .into_iter()
            .map(|fix| {
                let edits = fix
                    .edits
                    .into_iter()
                    .map(|(span, new_text)| lsp::TextEdit {
                        range: self.range(document, span),
                        new_text,
                    })
                    .collect();
                lsp::CodeActionOrCommand::CodeAction(lsp::CodeAction {
                    title: fix.title,
                    kind: Some(lsp::CodeActionKind::QUICKFIX),
                    diagnostics: Some(vec![to_lsp_diagnostic(
                        document,
                        &fix.diagnostic,
                        self.encoding,
                    )]),
                    edit: Some(lsp::WorkspaceEdit {
                        changes: Some(HashMap::from([(document.uri.clone(), edits)])),
                        ..lsp::WorkspaceEdit::default()
                    }),
                    is_preferred: Some(true),
                    ..lsp::CodeAction::default()
                })
            })
            .collect();
        to_value(actions)
    }
}

fn markdown(value: String) -> lsp::Documentation {
    lsp::Documentation::MarkupContent(lsp::MarkupContent {
        kind: lsp::MarkupKind::Markdown,
        value,
    })
}

fn not_open(uri: &str) -> (ErrorCode, String) {
    (ErrorCode::InvalidParams, format!("{uri} is not open"))
}

fn to_value(value: impl serde::Serialize) -> Result<Value, (ErrorCode, String)> {
    serde_json::to_value(value).map_err(|e| (ErrorCode::InternalError, e.to_string()))
}

fn completion_kind(kind: CompletionKind) -> lsp::CompletionItemKind {
    match kind {
        CompletionKind::Variable => lsp::CompletionItemKind::VARIABLE,
        CompletionKind::Parameter => lsp::CompletionItemKind::VARIABLE,
        CompletionKind::Function => lsp::CompletionItemKind::FUNCTION,
        CompletionKind::Module => lsp::CompletionItemKind::MODULE,
        CompletionKind::Method => lsp::CompletionItemKind::METHOD,
        CompletionKind::Field => lsp::CompletionItemKind::FIELD,
        CompletionKind::Type => lsp::CompletionItemKind::STRUCT,
        CompletionKind::Keyword => lsp::CompletionItemKind::KEYWORD,
        CompletionKind::DeploymentName => lsp::CompletionItemKind::VALUE,
    }
}

/// A diagnostic as `scl check` reports it: the same code and message; the
/// help and the secondary labels become related information.
fn to_lsp_diagnostic(
    document: &Document,
    diagnostic: &scl_lang::Diagnostic,
    encoding: Encoding,
) -> lsp::Diagnostic {
    let range = |span| document.lines.range(&document.text, span, encoding);
    let mut related: Vec<lsp::DiagnosticRelatedInformation> = diagnostic
        .secondary
        .iter()
        .map(|label| lsp::DiagnosticRelatedInformation {
            location: lsp::Location {
                uri: document.uri.clone(),
                range: range(label.span),
            },
            message: label.message.clone().unwrap_or_default(),
        })
        .collect();
    if let Some(help) = &diagnostic.help {
        related.push(lsp::DiagnosticRelatedInformation {
            location: lsp::Location {
                uri: document.uri.clone(),
                range: range(diagnostic.primary.span),
            },
            message: format!("help: {help}"),
        });
    }
    lsp::Diagnostic {
        range: range(diagnostic.primary.span),
        severity: Some(match diagnostic.severity {
            Severity::Error => lsp::DiagnosticSeverity::ERROR,
            Severity::Warning => lsp::DiagnosticSeverity::WARNING,
        }),
        code: Some(lsp::NumberOrString::String(diagnostic.code.id.to_string())),
        source: Some("scl".to_string()),
        message: diagnostic.message.clone(),
        related_information: (!related.is_empty()).then_some(related),
        ..lsp::Diagnostic::default()
    }
}
