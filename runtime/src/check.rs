//! `scl check`: parse and check script files, print diagnostics.

use std::io::Write;
use std::path::{Path, PathBuf};

use scl_lang::ScriptKind;
use scl_lang::checker::{CheckOptions, check};
use scl_lang::diagnostics::{render_human, render_json};
use scl_lang::modules::{DeploymentNames, ModuleTable};

use crate::cli::shown;
use crate::deployment::Deployment;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckFormat {
    Human,
    Json,
}

#[derive(Debug)]
pub struct CheckRequest {
    pub files: Vec<PathBuf>,
    pub kind: Option<ScriptKind>,
    pub format: CheckFormat,
    pub config: Option<PathBuf>,
    pub colour: bool,
}

/// One script to check and what is known about it.
struct Target {
    path: PathBuf,
    kind: Option<ScriptKind>,
    template: Option<String>,
}

/// Runs `scl check`; returns the exit code (0 clean, 1 errors, 2 usage/IO).
pub fn run(request: &CheckRequest, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let deployment = match &request.config {
        None => None,
        Some(path) => match Deployment::load(path) {
            Ok(deployment) => Some(deployment),
            Err(errors) => {
                for error in &errors {
                    let _ = writeln!(err, "error: {error}");
                }
                return if errors.iter().any(|e| e.line == 0) {
                    2
                } else {
                    1
                };
            }
        },
    };
    let targets = match targets(request, deployment.as_ref()) {
        Ok(targets) => targets,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            return 2;
        }
    };
    let modules = scl_stdlib::signatures::module_table();
    let names = deployment.as_ref().map(Deployment::names);
    let mut exit = 0;
    let mut error_count = 0;
    for target in &targets {
        let source = match std::fs::read_to_string(&target.path) {
            Ok(source) => source,
            Err(error) => {
                let _ = writeln!(err, "error: cannot read {}: {error}", shown(&target.path));
                exit = 2;
                continue;
            }
        };
        let diagnostics = check_source(&source, target, &modules, names.as_ref(), request.kind);
        let errors = diagnostics.iter().filter(|d| d.is_error()).count();
        error_count += errors;
        if errors > 0 && exit == 0 {
            exit = 1;
        }
        let file_name = shown(&target.path);
        match request.format {
            CheckFormat::Human => {
                let _ = write!(
                    err,
                    "{}",
                    render_human(&file_name, &source, &diagnostics, request.colour)
                );
            }
            CheckFormat::Json => {
                for diagnostic in &diagnostics {
                    let _ = writeln!(out, "{}", render_json(&file_name, &source, diagnostic));
                }
            }
        }
    }
    if request.format == CheckFormat::Human {
        let files = targets.len();
        let plural = if files == 1 { "" } else { "s" };
        if error_count == 0 {
            let _ = writeln!(err, "checked {files} file{plural}: no errors");
        } else {
            let _ = writeln!(err, "checked {files} file{plural}: {error_count} error(s)");
        }
    }
    exit
}

fn check_source(
    source: &str,
    target: &Target,
    modules: &ModuleTable,
    names: Option<&DeploymentNames>,
    kind_argument: Option<ScriptKind>,
) -> Vec<scl_lang::Diagnostic> {
    let kind = target
        .kind
        .or(kind_argument)
        .or_else(|| scl_lang::kind_from_comment(source));
    let parsed = scl_lang::parse(source);
    let options = CheckOptions {
        modules,
        kind,
        names,
        template: target.template.as_deref(),
        require_main: true,
    };
    let checked = check(&parsed, &options);
    let mut diagnostics = parsed.diagnostics.clone();
    diagnostics.extend(checked.diagnostics);
    diagnostics.sort_by_key(|d| (d.primary.span.start, d.primary.span.end));
    diagnostics
}

/// The files to check: the ones named, with what the deployment says of
/// them, or every script of the deployment.
fn targets(request: &CheckRequest, deployment: Option<&Deployment>) -> Result<Vec<Target>, String> {
    let scripts = deployment.map(Deployment::scripts).unwrap_or_default();
    if request.files.is_empty() {
        if deployment.is_none() {
            return Err("no files to check (name script files, or give --config)".to_string());
        }
        return Ok(scripts
            .into_iter()
            .map(|s| Target {
                path: s.path,
                kind: Some(s.kind),
                template: s.template,
            })
            .collect());
    }
    Ok(request
        .files
        .iter()
        .map(|path| {
            let known = scripts.iter().find(|s| same_file(&s.path, path));
            Target {
                path: path.clone(),
                kind: known.map(|s| s.kind),
                template: known.and_then(|s| s.template.clone()),
            }
        })
        .collect())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
