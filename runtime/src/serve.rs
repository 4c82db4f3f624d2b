//! `scl serve`: run central, sites, or both from one deployment file.
//!
//! `--role all` (the default) runs central and every site of the file in one
//! process, each with its own data directory under the file's `data_dir`
//! (`central/`, `site-{name}/`): the embedded default. `--role central` and
//! `--role site:NAME` run one node each, for installations with separate
//! processes or machines. Central nodes are stateless peers: any number may
//! run from one file (`--listen` gives each its address on one machine) behind
//! a load balancer.
//!
//! Central↔site requests carry the token named by each site's `token_env`.
//! In `all` mode a site whose variable is unset gets a random token for the
//! life of the process (nothing outside the process talks to it); a
//! separate site or central node refuses to start without it.
//!
//! Central pushes the deployment bundle to every site when it starts and
//! keeps retrying a site that is away; `scl deploy` pushes a changed file to
//! running sites. SIGTERM or SIGINT stops every node gracefully.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::central::{self, CentralConfig};
use crate::deployment::Deployment;
use crate::protocol::{Bundle, SiteClient};
use crate::site::{Site, SiteOptions};

/// Which nodes this process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    All,
    Central,
    Site(String),
}

impl Role {
    /// `all`, `central` or `site:NAME`.
    pub fn parse(text: &str) -> Result<Role, String> {
        match text {
            "all" => Ok(Role::All),
            "central" => Ok(Role::Central),
            _ => match text.strip_prefix("site:") {
                Some(name) if !name.is_empty() => Ok(Role::Site(name.to_owned())),
                _ => Err(format!(
                    "unknown role `{text}`; expected `all`, `central` or `site:NAME`"
                )),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServeRequest {
    pub config: PathBuf,
    pub role: Role,
    pub log_json: bool,
    /// Central's listen address instead of `[central] listen`.
    pub listen: Option<String>,
    /// Run the standby node of the site's pair (`--standby`, [`crate::failover`]).
    pub standby: bool,
    /// Workers of the async runtime (`--io-threads`); [`io_threads_default`] when `None`.
    pub io_threads: Option<usize>,
}

/// Workers of a node's async runtime unless `--io-threads` says otherwise: half
/// the cores, at least one.
///
/// The async workers serve HTTP (hyper, routing, the API-key check, reading the
/// body, writing the answer); the rest of a central API call (reading its JSON,
/// checking the parameters, the script, the execution-log row) runs on script
/// threads. With a worker per core, the workers took every core under load and a
/// woken script thread waited for the kernel's next tick (4 ms on a 250 Hz kernel)
/// to run: on 2 cores the routed method's p99 was 5.1-5.5 ms against 2.8-3.0 ms
/// with one worker, and throughput rose from 0.71x-0.74x to 0.82x-0.86x of bare
/// axum (docs/benchmarks.md, "Central, session 13"); measured on 2 cores only.
pub fn io_threads_default() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The async runtime of a node process: `io_threads` workers (default
/// [`io_threads_default`]) named `scl-io`.
pub fn io_runtime(io_threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(io_threads.unwrap_or_else(io_threads_default).max(1))
        .enable_all()
        .thread_name("scl-io")
        .build()
}

type Env = crate::site::EnvLookup;

/// How long a client of a site's internal API may take to send its headers.
const SITE_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `scl serve` until SIGTERM/SIGINT; returns the exit code.
pub fn serve(request: &ServeRequest) -> i32 {
    init_logs(request.log_json);
    let deployment = match Deployment::load(&request.config) {
        Ok(deployment) => deployment,
        Err(errors) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            return 2;
        }
    };
    let runtime = match io_runtime(request.io_threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return 2;
        }
    };
    match runtime.block_on(run(request, deployment)) {
        Ok(()) => 0,
        Err(message) => {
            tracing::error!("{message}");
            eprintln!("error: {message}");
            1
        }
    }
}

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SCL_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,cranelift_jit=warn,cranelift_codegen=warn,cranelift_module=warn",
        )
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The environment, with a generated token for each site whose token
/// variable is unset when the whole installation runs in this process.
fn environment(deployment: &Deployment, role: &Role) -> Result<Env, String> {
    let mut generated: HashMap<String, String> = HashMap::new();
    for site in &deployment.file.site {
        let name = site.name.get_ref();
        let involved = match role {
            Role::All | Role::Central => true,
            Role::Site(own) => own == name,
        };
        if !involved {
            continue;
        }
        let Some(variable) = &site.token_env else {
            return Err(format!(
                "site `{name}` has no `token_env`: central and the site need a shared token \
                 (name an environment variable; `scl serve` generates one when it runs both)"
            ));
        };
        if std::env::var(variable).is_ok() {
            continue;
        }
        if *role != Role::All {
            return Err(format!(
                "environment variable `{variable}` (the token of site `{name}`) is not set"
            ));
        }
        let token =
            crate::keys::generate_key().map_err(|e| format!("cannot generate a token: {e}"))?;
        generated.insert(variable.clone(), token);
    }
    Ok(Arc::new(move |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| generated.get(name).cloned())
    }))
}

/// The token of a site: the value of its `token_env` variable.
fn site_token(deployment: &Deployment, name: &str, env: &Env) -> Result<String, String> {
    let variable = deployment
        .file
        .site
        .iter()
        .find(|s| s.name.get_ref() == name)
        .and_then(|s| s.token_env.as_ref())
        .ok_or_else(|| format!("site `{name}` has no `token_env`"))?;
    env(variable).ok_or_else(|| format!("environment variable `{variable}` is not set"))
}

/// The node data directory of the deployment (relative to its file).
pub fn data_dir(deployment: &Deployment) -> PathBuf {
    deployment.base_dir().join(&deployment.file.data_dir)
}

struct RunningSite {
    site: Site,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

async fn run(request: &ServeRequest, deployment: Deployment) -> Result<(), String> {
    if request.listen.is_some() && matches!(request.role, Role::Site(_)) {
        return Err("`--listen` sets central's address; a site listens on its `listen` key".into());
    }
    if request.standby && !matches!(request.role, Role::Site(_)) {
        return Err("`--standby` runs the standby node of one site: use `--role site:NAME`".into());
    }
    let env = environment(&deployment, &request.role)?;
    let data_dir = data_dir(&deployment);
    let site_names: Vec<String> = match &request.role {
        Role::All => deployment
            .file
            .site
            .iter()
            .map(|s| s.name.get_ref().clone())
            .collect(),
        Role::Central => Vec::new(),
        Role::Site(name) => {
            if !deployment
                .file
                .site
                .iter()
                .any(|s| s.name.get_ref() == name)
            {
                let known: Vec<&str> = deployment
                    .file
                    .site
                    .iter()
                    .map(|s| s.name.get_ref().as_str())
                    .collect();
                return Err(format!(
                    "the deployment has no site `{name}` (sites: {})",
                    known.join(", ")
                ));
            }
            vec![name.clone()]
        }
    };
    let mut sites = Vec::new();
    // The sites this process runs, for central's in-process `Route.To`.
    let mut in_process_sites = HashMap::new();
    // Nodes of active/standby pairs; a pair node that ends on its own ends the process.
    let mut pairs = Vec::new();
    let (pair_failed, mut pair_failures) = tokio::sync::mpsc::unbounded_channel::<String>();
    for name in &site_names {
        let Some(definition) = deployment
            .file
            .site
            .iter()
            .find(|s| s.name.get_ref() == name)
        else {
            continue;
        };
        let token = site_token(&deployment, name, &env)?;
        let central_url = deployment
            .file
            .central
            .as_ref()
            .and_then(|c| c.url.as_deref());
        let node = crate::failover::PairNode::of(definition, central_url, request.standby);
        if request.standby && node.is_none() {
            return Err(format!(
                "`--standby`: site `{name}` has no `standby` node in the deployment"
            ));
        }
        let own_dir = match &node {
            Some(node) if !node.primary => format!("site-{name}-standby"),
            _ => format!("site-{name}"),
        };
        let mut options =
            SiteOptions::new(name, deployment.path.clone(), data_dir.join(own_dir), token);
        options.env = Arc::clone(&env);
        if let Some(node) = node {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let (deployment, failed) = (deployment.clone(), pair_failed.clone());
            let task = tokio::spawn(async move {
                let result = crate::failover::run_node(
                    node,
                    options,
                    deployment,
                    stopped,
                    SITE_HEADER_READ_TIMEOUT,
                )
                .await;
                if let Err(message) = &result {
                    let _ = failed.send(message.clone());
                }
            });
            pairs.push((stop, task));
            continue;
        }
        let site = Site::start(options, &deployment).await?;
        let listener = tokio::net::TcpListener::bind(&definition.listen)
            .await
            .map_err(|e| format!("site `{name}`: cannot listen on {}: {e}", definition.listen))?;
        tracing::info!(site = %name, listen = %definition.listen, "site node serving");
        let router = crate::site::api::router(&site);
        in_process_sites.insert(name.clone(), site.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            // The site API has the same slow-client protection as central's.
            let served =
                crate::http_server::serve(listener, router, SITE_HEADER_READ_TIMEOUT, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "site server stopped");
            }
        });
        sites.push(RunningSite { site, stop, server });
    }
    let central = match (&request.role, &deployment.file.central) {
        (Role::All | Role::Central, Some(definition)) => {
            let listen = request.listen.as_deref().unwrap_or(&definition.listen);
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| format!("central: cannot listen on {listen}: {e}"))?;
            let config = CentralConfig {
                // The failures log goes to `{data_dir}/central/failures`,
                // where `scl failures` reads it.
                data_dir: Some(data_dir.clone()),
                env: Arc::clone(&env),
                in_process_sites: std::mem::take(&mut in_process_sites),
                ..CentralConfig::default()
            };
            let handle = central::start(Arc::new(deployment.clone()), listener, config).await?;
            tracing::info!(%listen, "central node serving");
            let bundle = crate::bundle::build(&deployment)?;
            tokio::spawn(push_until_accepted(
                deployment.clone(),
                bundle,
                Arc::clone(&env),
            ));
            Some(handle)
        }
        (Role::Central, None) => {
            return Err("the deployment has no [central] section".to_owned());
        }
        _ => None,
    };
    drop(pair_failed);
    let failure = tokio::select! {
        () = shutdown_signal() => None,
        Some(message) = pair_failures.recv() => Some(message),
    };
    tracing::info!("stopping");
    for (stop, task) in pairs {
        let _ = stop.send(());
        let _ = task.await;
    }
    if let Some(central) = central
        && let Err(error) = central.shutdown().await
    {
        tracing::warn!(%error, "central did not stop cleanly");
    }
    for running in sites {
        let _ = running.stop.send(());
        let _ = running.server.await;
        running.site.shutdown().await;
    }
    tracing::info!("stopped");
    match failure {
        Some(message) => Err(message),
        None => Ok(()),
    }
}

/// Pushes `bundle` to every site, retrying each site that is away or
/// refuses, with a growing pause (1 s … 60 s), until all accepted.
async fn push_until_accepted(deployment: Deployment, bundle: Bundle, env: Env) {
    let mut waiting = clients(&deployment, &env);
    let mut pause = Duration::from_secs(1);
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for client in waiting {
            match client.push_bundle(&bundle).await {
                Ok(accepted) => tracing::info!(
                    site = %client.site(),
                    version = %crate::bundle::short(&accepted.version),
                    "deployment accepted"
                ),
                Err(error) => {
                    tracing::warn!(site = %client.site(), "deployment not accepted yet: {error}");
                    still.push(client);
                }
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(60));
        }
    }
}

fn clients(deployment: &Deployment, env: &Env) -> Vec<SiteClient> {
    let mut clients = Vec::new();
    for site in &deployment.file.site {
        let name = site.name.get_ref();
        let token = site
            .token_env
            .as_deref()
            .and_then(|variable| env(variable))
            .unwrap_or_default();
        match SiteClient::new(name, &site.url, &token, Duration::from_secs(60)) {
            Ok(client) => clients.push(match &site.standby {
                Some(standby) => client.with_standby(&standby.get_ref().url),
                None => client,
            }),
            Err(error) => tracing::error!("{error}"),
        }
    }
    clients
}

/// `scl deploy`: checks the deployment and pushes it to its running sites
/// (all, or `only`); returns the exit code.
pub fn deploy(config: &Path, only: Option<&str>) -> i32 {
    let deployment = match Deployment::load(config) {
        Ok(deployment) => deployment,
        Err(errors) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            return 2;
        }
    };
    let bundle = match crate::bundle::build(&deployment) {
        Ok(bundle) => bundle,
        Err(error) => {
            eprintln!("error: {error}");
            return 2;
        }
    };
    let env: Env = Arc::new(|name| std::env::var(name).ok());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return 2;
        }
    };
    let mut exit = 0;
    runtime.block_on(async {
        for client in clients(&deployment, &env) {
            if only.is_some_and(|name| name != client.site()) {
                continue;
            }
            match client.push_bundle(&bundle).await {
                Ok(accepted) => println!(
                    "{}: running deployment {}",
                    client.site(),
                    crate::bundle::short(&accepted.version)
                ),
                Err(error) => {
                    eprintln!("{}: {}", client.site(), error.message);
                    exit = 1;
                }
            }
        }
    });
    exit
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
