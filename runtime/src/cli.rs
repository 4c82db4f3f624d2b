//! The `scl` command line: argument parsing and the subcommands' edges.
//!
//! Exit codes: 0 success, 1 a script or check failed, 2 a usage or I/O error.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::check::{CheckFormat, CheckRequest};

#[derive(Parser, Debug)]
#[command(
    name = "scl",
    version,
    about = "SCL: typed scripts for industrial integration"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check scripts for errors without running them.
    Check {
        /// Script files; with --config and no files, every script of the deployment.
        files: Vec<PathBuf>,
        /// The script kind, when neither the deployment nor a `// kind:` comment gives it.
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        /// Output format.
        #[arg(long, value_enum, default_value = "human")]
        format: FormatArg,
        /// A deployment file: script names are checked against it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Compile a script with the JIT and run its `main` once; the result is
    /// printed as JSON on stdout, logs and statistics on stderr.
    Run {
        file: PathBuf,
        /// A parameter of `main` as name=value (strings as written, others as JSON).
        #[arg(long = "arg", value_name = "NAME=VALUE")]
        args: Vec<String>,
        /// All parameters of `main` as one JSON object.
        #[arg(long, value_name = "JSON")]
        args_json: Option<String>,
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Perform no outbound call: print each call that would be made.
        #[arg(long)]
        dry_run: bool,
        #[arg(long, value_name = "N")]
        timeout_ms: Option<u64>,
        /// The instance an instance script runs for (its attributes come from --config).
        #[arg(long, value_name = "CODE")]
        instance: Option<String>,
        /// An attribute value as name=value (JSON, or text).
        #[arg(long = "attr", value_name = "NAME=VALUE")]
        attrs: Vec<String>,
    },
    /// Format scripts in the canonical layout.
    Fmt {
        files: Vec<PathBuf>,
        /// Change nothing; exit 1 when a file is not formatted.
        #[arg(long)]
        check: bool,
    },
    /// Run the language server on standard input and output.
    Lsp,
    /// Print the diagnostic code reference (the source of docs/diagnostics.md).
    Codes,
    /// Run central and sites (the embedded default), or one node.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// `all` (central and every site in this process), `central`, or `site:NAME`.
        #[arg(long, default_value = "all")]
        role: String,
        /// Logs as JSON lines instead of human text.
        #[arg(long)]
        log_json: bool,
        /// Central listens here instead of on `[central] listen`: several central
        /// nodes of one deployment on one machine (they are stateless peers).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Run the standby node of the site's active/standby pair (`--role site:NAME` of a
        /// site with a `standby`): its `listen`, `link` and data directory.
        #[arg(long)]
        standby: bool,
        /// Threads that serve HTTP (the async runtime's workers); scripts run on
        /// script threads of their own. Default: half the cores, at least one.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        io_threads: Option<u16>,
    },
    /// Check a deployment and push it to its running sites (redeploy without restart).
    Deploy {
        #[arg(long)]
        config: PathBuf,
        /// Only this site.
        #[arg(long)]
        site: Option<String>,
    },
    /// Show a site node's event log (script failures, parked messages, deployments, …).
    Events {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        site: String,
        /// Only events of this kind (`script_failed`, `message_parked`, `deployed`, …).
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        instance: Option<String>,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show the central failures log (failed inbound API calls), newest
    /// first; reads the data directory of a stopped central node.
    Failures {
        #[arg(long)]
        config: PathBuf,
        /// Only failures since an RFC 3339 time or an age (30m, 24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only failures of this API method.
        #[arg(long, value_name = "M")]
        method: Option<String>,
        /// At most this many rows (default 1000).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// The node's data directory, when it is not the deployment's `data_dir`.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Output format: one line per failure, or JSON lines.
        #[arg(long, value_enum, default_value = "human")]
        format: FormatArg,
    },
    /// Show a node's execution log (one row per script run), newest first;
    /// reads the node's data directory (also while it runs).
    Runs {
        #[arg(long)]
        config: PathBuf,
        /// A site's log instead of central's.
        #[arg(long)]
        site: Option<String>,
        /// Only runs of this script.
        #[arg(long)]
        script: Option<String>,
        /// Only runs with this status: SUCCESS, FAILURE, TIMEOUT or LIMIT.
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this instance.
        #[arg(long)]
        instance: Option<String>,
        /// Only runs since an RFC 3339 time or an age (30m, 24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only runs before an RFC 3339 time or an age.
        #[arg(long)]
        until: Option<String>,
        /// At most this many rows (default 100).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Output format: one line per run, or JSON lines.
        #[arg(long, value_enum, default_value = "human")]
        format: FormatArg,
    },
    /// Manage API keys.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Bulk jobs on central's inbound API.
    Bulk {
        #[command(subcommand)]
        command: BulkCommand,
    },
    /// Manage connected apps (OAuth2 client credentials).
    App {
        #[command(subcommand)]
        command: AppCommand,
    },
}

#[derive(Subcommand, Debug)]
enum BulkCommand {
    /// Submit a file of parameter records (JSON lines, or a JSON array) as a
    /// bulk job and follow it with a progress bar. The API key is read from
    /// the variable SCL_API_KEY.
    Submit {
        file: PathBuf,
        #[arg(long)]
        method: String,
        /// Central's address from the deployment's `[central] listen` ...
        #[arg(long, conflicts_with = "url")]
        config: Option<PathBuf>,
        /// ... or given directly (http://host:port).
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum AppCommand {
    /// Print a client id and secret for a new app, and its `[apps.NAME]` lines.
    New { name: String },
    /// Print a new secret for an app of the deployment and the lines that keep
    /// the current secret working for the overlap window.
    Rotate {
        name: String,
        #[arg(long)]
        config: PathBuf,
        /// How long the current secret keeps working (30m, 24h, 7d); default 24h.
        #[arg(long, default_value = "24h")]
        overlap: String,
    },
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Print a fresh API key and the `sha256` line for the deployment file.
    New,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum KindArg {
    Api,
    Instance,
    Alarm,
    Shared,
}

impl From<KindArg> for scl_lang::ScriptKind {
    fn from(kind: KindArg) -> scl_lang::ScriptKind {
        match kind {
            KindArg::Api => scl_lang::ScriptKind::Api,
            KindArg::Instance => scl_lang::ScriptKind::Instance,
            KindArg::Alarm => scl_lang::ScriptKind::Alarm,
            KindArg::Shared => scl_lang::ScriptKind::Shared,
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum FormatArg {
    Human,
    Json,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { 2 } else { 0 };
            let _ = error.print();
            return code;
        }
    };
    match cli.command {
        Command::Check {
            files,
            kind,
            format,
            config,
        } => {
            let request = CheckRequest {
                files,
                kind: kind.map(Into::into),
                format: match format {
                    FormatArg::Human => CheckFormat::Human,
                    FormatArg::Json => CheckFormat::Json,
                },
                config,
                colour: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            crate::check::run(
                &request,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            )
        }
        Command::Run {
            file,
            args,
            args_json,
            kind,
            config,
            dry_run,
            timeout_ms,
            instance,
            attrs,
        } => {
            let request = crate::run::RunRequest {
                file,
                args,
                args_json,
                kind: kind.map(Into::into),
                config,
                dry_run,
                timeout_ms,
                instance,
                attrs,
            };
            crate::run::run(
                &request,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            )
        }
        Command::Fmt { files, check } => fmt(&files, check),
        Command::Lsp => match scl_lsp::run_lsp_stdio() {
            Ok(()) => 0,
            Err(message) => {
                eprintln!("error: {message}");
                2
            }
        },
        Command::Codes => {
            print!("{}", scl_lang::codes::render_markdown());
            0
        }
        Command::Key {
            command: KeyCommand::New,
        } => key_new(&mut std::io::stdout().lock()),
        Command::App { command } => app_command(command, &mut std::io::stdout().lock()),
        Command::Bulk {
            command:
                BulkCommand::Submit {
                    file,
                    method,
                    config,
                    url,
                },
        } => crate::bulk_cli::submit(&file, &method, config.as_deref(), url.as_deref()),
        Command::Serve {
            config,
            role,
            log_json,
            listen,
            standby,
            io_threads,
        } => match crate::serve::Role::parse(&role) {
            Ok(role) => crate::serve::serve(&crate::serve::ServeRequest {
                config,
                role,
                log_json,
                listen,
                standby,
                io_threads: io_threads.map(usize::from),
            }),
            Err(message) => {
                eprintln!("error: {message}");
                2
            }
        },
        Command::Deploy { config, site } => crate::serve::deploy(&config, site.as_deref()),
        Command::Events {
            config,
            site,
            kind,
            instance,
            limit,
        } => events(&config, &site, kind, instance, limit),
        Command::Failures {
            config,
            since,
            method,
            limit,
            data_dir,
            format,
        } => failures(
            &config,
            since.as_deref(),
            method,
            limit,
            data_dir,
            matches!(format, FormatArg::Json),
            &mut std::io::stdout().lock(),
        ),
        Command::Runs {
            config,
            site,
            script,
            status,
            instance,
            since,
            until,
            limit,
            format,
        } => {
            let mut params: Vec<(&str, String)> = Vec::new();
            for (name, value) in [
                ("script", script),
                ("status", status),
                ("instance", instance),
                ("since", since),
                ("until", until),
                ("limit", limit.map(|n| n.to_string())),
            ] {
                if let Some(value) = value {
                    params.push((name, value));
                }
            }
            runs(
                &config,
                site.as_deref(),
                &params,
                matches!(format, FormatArg::Json),
                &mut std::io::stdout().lock(),
            )
        }
    }
}

/// `scl runs`: reads a node's execution log from its data directory.
fn runs(
    config: &Path,
    site: Option<&str>,
    params: &[(&str, String)],
    json: bool,
    out: &mut dyn Write,
) -> i32 {
    let deployment = match load_deployment(config) {
        Ok(deployment) => deployment,
        Err(code) => return code,
    };
    let query =
        match crate::runs::RunQuery::from_params(params.iter().map(|(k, v)| (*k, v.as_str()))) {
            Ok(query) => query,
            Err(problem) => {
                eprintln!("error: {problem}");
                return 2;
            }
        };
    let data_dir = crate::serve::data_dir(&deployment);
    let node_dir = match site {
        Some(name) => data_dir.join(format!("site-{name}")),
        None => data_dir.join("central"),
    };
    let path = crate::runs::path(&node_dir);
    let log = match crate::runs::RunLog::open_existing(&path) {
        Ok(Some(log)) => log,
        Ok(None) => {
            eprintln!("no runs recorded ({} does not exist)", shown(&path));
            return 0;
        }
        Err(problem) => {
            eprintln!("error: {problem}");
            return 2;
        }
    };
    let rows = match crate::runs::read(&log, &query) {
        Ok(rows) => rows,
        Err(problem) => {
            eprintln!("error: {problem}");
            return 2;
        }
    };
    for row in &rows {
        let line = if json {
            serde_json::to_string(row).unwrap_or_default()
        } else {
            format!(
                "{}  {:<7}  {} {}{}  {}  {:.3} ms  cpu {:.3} ms  queries {}  dml {}  callouts {}{}",
                row.time,
                row.status,
                row.kind,
                row.script,
                row.instance
                    .as_deref()
                    .map(|i| format!(" @{i}"))
                    .unwrap_or_default(),
                row.trigger,
                row.duration_ms,
                row.cpu_ms,
                row.queries,
                row.dml_rows,
                row.callouts,
                row.error
                    .as_deref()
                    .map(|e| format!("  {e}"))
                    .unwrap_or_default(),
            )
        };
        if writeln!(out, "{line}").is_err() {
            return 2;
        }
    }
    if !json {
        eprintln!("{} run(s)", rows.len());
    }
    0
}

/// `scl events`: reads the site node's state store directly (LMDB lets
/// another process read while the node runs); one JSON object per line.
fn events(
    config: &Path,
    site: &str,
    kind: Option<String>,
    instance: Option<String>,
    limit: usize,
) -> i32 {
    let deployment = match load_deployment(config) {
        Ok(deployment) => deployment,
        Err(code) => return code,
    };
    if !deployment
        .file
        .site
        .iter()
        .any(|s| s.name.get_ref() == site)
    {
        eprintln!("error: the deployment has no site `{site}`");
        return 2;
    }
    let path = crate::serve::data_dir(&deployment)
        .join(format!("site-{site}"))
        .join("state");
    if !path.exists() {
        eprintln!("error: site `{site}` has no data at {} yet", path.display());
        return 2;
    }
    let store = match crate::site::store::SiteStore::open(&path) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("error: {error}");
            return 2;
        }
    };
    let filter = crate::site::store::EventFilter {
        kind,
        instance,
        since_ms: None,
        limit: Some(limit),
    };
    match store.events(&filter) {
        Ok(events) => {
            let mut out = std::io::stdout().lock();
            for event in events {
                let line = serde_json::to_string(&event).unwrap_or_default();
                if writeln!(out, "{line}").is_err() {
                    return 2;
                }
            }
            0
        }
        Err(error) => {
            eprintln!("error: {error}");
            2
        }
    }
}

fn fmt(files: &[PathBuf], check: bool) -> i32 {
    if files.is_empty() {
        eprintln!("error: no files to format");
        return 2;
    }
    let mut exit = 0;
    for path in files {
        let source = match std::fs::read_to_string(path) {
            Ok(source) => source,
            Err(error) => {
                eprintln!("error: cannot read {}: {error}", shown(path));
                return 2;
            }
        };
        match scl_lang::format::format(&source) {
            Ok(formatted) if formatted == source => {}
            Ok(_) if check => {
                eprintln!("{} is not formatted", shown(path));
                exit = 1;
            }
            Ok(formatted) => {
                if let Err(error) = std::fs::write(path, formatted) {
                    eprintln!("error: cannot write {}: {error}", shown(path));
                    return 2;
                }
                eprintln!("formatted {}", shown(path));
            }
            Err(diagnostics) => {
                let name = shown(path);
                eprint!(
                    "{}",
                    scl_lang::diagnostics::render_human(&name, &source, &diagnostics, false)
                );
                eprintln!("{} has syntax errors; not formatted", shown(path));
                exit = 1;
            }
        }
    }
    exit
}

/// `scl app new|rotate`: secrets are printed once and stored only as hashes.
fn app_command(command: AppCommand, out: &mut dyn Write) -> i32 {
    let secret = match crate::keys::generate_key() {
        Ok(secret) => secret,
        Err(error) => {
            eprintln!("error: the operating system's random source failed: {error}");
            return 2;
        }
    };
    let hash = crate::keys::sha256_hex(&secret);
    match command {
        AppCommand::New { name } => {
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                eprintln!("error: an app name is letters, digits, `_` and `-`");
                return 2;
            }
            let suffix: String = hash.chars().take(8).collect();
            let _ = writeln!(out, "client secret (shown once): {secret}");
            let _ = writeln!(out);
            let _ = writeln!(out, "[apps.{name}]");
            let _ = writeln!(out, "client_id = \"{name}-{suffix}\"");
            let _ = writeln!(out, "secret_sha256 = \"{hash}\"");
            let _ = writeln!(out, "scopes = [\"*\"]");
            0
        }
        AppCommand::Rotate {
            name,
            config,
            overlap,
        } => {
            let deployment = match load_deployment(&config) {
                Ok(deployment) => deployment,
                Err(code) => return code,
            };
            let Some(app) = deployment.file.apps.get(&name) else {
                eprintln!("error: the deployment has no app `{name}`");
                return 2;
            };
            let now = crate::timelog::now_ms();
            // An age before now, turned around: now + overlap.
            let until = match crate::timelog::parse_since(&overlap, now) {
                Ok(before) => now + (now - before),
                Err(problem) => {
                    eprintln!("error: --overlap {problem}");
                    return 2;
                }
            };
            let _ = writeln!(out, "client secret (shown once): {secret}");
            let _ = writeln!(out);
            let _ = writeln!(out, "# in [apps.{name}], replace the secret lines with:");
            let _ = writeln!(out, "secret_sha256 = \"{hash}\"");
            let _ = writeln!(out, "previous_secret_sha256 = \"{}\"", app.secret_sha256);
            let _ = writeln!(
                out,
                "previous_valid_until = \"{}\"",
                crate::timelog::rfc3339_ms(until)
            );
            0
        }
    }
}

fn key_new(out: &mut dyn Write) -> i32 {
    let key = match crate::keys::generate_key() {
        Ok(key) => key,
        Err(error) => {
            eprintln!("error: the operating system's random source failed: {error}");
            return 2;
        }
    };
    let hash = crate::keys::sha256_hex(&key);
    let _ = writeln!(out, "key:    {key}");
    let _ = writeln!(out, "sha256 = \"{hash}\"");
    0
}

/// `scl failures`: the central failures log, read from the data directory.
fn failures(
    config: &Path,
    since: Option<&str>,
    method: Option<String>,
    limit: Option<usize>,
    data_dir: Option<PathBuf>,
    json: bool,
    out: &mut dyn Write,
) -> i32 {
    use crate::central::failures;
    let deployment = match load_deployment(config) {
        Ok(deployment) => deployment,
        Err(code) => return code,
    };
    let since_ms = match since.map(|s| failures::parse_since(s, failures::now_ms())) {
        None => None,
        Some(Ok(ms)) => Some(ms),
        Some(Err(problem)) => {
            eprintln!("error: --since {problem}");
            return 2;
        }
    };
    let data_dir =
        data_dir.unwrap_or_else(|| deployment.base_dir().join(&deployment.file.data_dir));
    let path = failures::default_path(&data_dir);
    let log = match failures::FailureLog::open_existing(&path) {
        Ok(Some(log)) => log,
        Ok(None) => {
            eprintln!("no failures recorded ({} does not exist)", shown(&path));
            return 0;
        }
        Err(problem) => {
            eprintln!("error: {problem}");
            return 2;
        }
    };
    let query = failures::FailureQuery {
        since_ms,
        method,
        limit,
    };
    let rows = match log.query(&query) {
        Ok(rows) => rows,
        Err(problem) => {
            eprintln!("error: {problem}");
            return 2;
        }
    };
    for row in &rows {
        let line = if json {
            serde_json::to_string(row).unwrap_or_default()
        } else {
            format!(
                "{}  {}  key={}  {}  {} ms  {}",
                row.time, row.method, row.key, row.code, row.duration_ms, row.message
            )
        };
        if writeln!(out, "{line}").is_err() {
            return 2;
        }
    }
    if !json {
        eprintln!("{} failure(s)", rows.len());
    }
    0
}

/// The deployment at `config`, or its errors printed and exit code 2.
fn load_deployment(config: &Path) -> Result<crate::deployment::Deployment, i32> {
    crate::deployment::Deployment::load(config).map_err(|errors| {
        for error in errors {
            eprintln!("error: {error}");
        }
        2
    })
}

/// A path as the user wrote it, for messages.
pub(crate) fn shown(path: &Path) -> String {
    path.display().to_string()
}
