//! Site failover: one node of a site's active/standby pair (`scl serve --role site:NAME`,
//! with `--standby` for the standby node).
//!
//! A node starts by asking its peer's link address which role the peer is in
//! ([`replication::probe`]): if the peer is active, or outranks this node (higher epoch, or
//! the configured primary on a tie), this node starts as standby; if the peer cannot be
//! reached, the configured primary starts as active and the standby as standby.
//!
//! - **Standby**: opens the buffer, serves the link ([`replication::run_standby`]) and
//!   answers every site API route with 503 `standby`. It runs no scripts and no forwarder.
//!   When the active has been silent for `takeover_after_ms` and its replica is complete, it
//!   raises the epoch and becomes active on the same buffer.
//! - **Active**: starts the site runtime (instances, scripts, triggers, forwarder) on its
//!   buffer, ships every group commit to the peer ([`replication::start_link`]) and answers
//!   probes on its own link address. When the peer proves to hold a newer epoch, the node is
//!   fenced: it logs why and exits with code 3 at once (no orderly shutdown, which would
//!   keep forwarding); restarted, it finds the peer active and becomes its standby.
//!
//! What is replicated is the store-and-forward buffer only. Attribute values, the event log
//! and the run log stay on the node that wrote them; a node that takes over starts from its
//! own state store (or its deployment file) like a restarted node.
//!
//! Every link connection is authenticated with the site's token ([`LinkAuth`]). With
//! `witness = "central"` a standby whose active is silent first asks central
//! ([`central_witness`]) and holds back while central still reaches the active.
//!
//! **Architecture invariant:** two nodes, central as the only (optional) witness. Without
//! it, a network split that leaves both nodes running but unable to reach each other makes
//! both active (split brain) for the length of the split; with it, that needs central to be
//! cut off from the active too, or to be unreachable with `takeover_without_witness = true`.
//! The epoch fences the loser when the link comes back. See `docs/reliability.md` for the
//! trade-off.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::deployment::{Deployment, SiteDef};
use crate::saf::replication::{
    self, LinkAuth, LinkConfig, LinkMetrics, LinkStatus, StandbyConfig, StandbyEnd, Witness,
    WitnessVerdict,
};
use crate::saf::{Saf, SafConfig};
use crate::site::{Site, SiteOptions};

/// The exit code of a node that found out it must not be active.
pub const FENCED_EXIT_CODE: i32 = 3;

/// How long a starting node waits for its peer's answer to a probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Which node of the pair this process is, with its addresses.
#[derive(Debug, Clone)]
pub struct PairNode {
    pub site: String,
    /// True for the node configured as primary (the `[[site]]` keys), false for `standby`.
    pub primary: bool,
    pub listen: String,
    pub link: String,
    pub peer_link: String,
    pub sync: bool,
    pub takeover_after: Duration,
    /// The address this node listens on for the link (`link` unless `link_listen`).
    pub link_listen: String,
    /// Central's URL when central is the pair's witness.
    pub witness: Option<String>,
    /// Whether to take over when the witness cannot be asked.
    pub takeover_without_witness: bool,
}

impl PairNode {
    /// The node of `definition` this process runs; `None` when the site has no standby.
    pub fn of(definition: &SiteDef, central_url: Option<&str>, standby: bool) -> Option<PairNode> {
        let pair = definition.standby.as_ref()?.get_ref();
        let primary_link = definition.link.as_ref()?.get_ref().clone();
        let (listen, link, peer_link) = if standby {
            (pair.listen.clone(), pair.link.clone(), primary_link)
        } else {
            (definition.listen.clone(), primary_link, pair.link.clone())
        };
        let link_listen = match (&pair.link_listen, standby) {
            (Some(address), true) => address.clone(),
            _ => link.clone(),
        };
        Some(PairNode {
            site: definition.name.get_ref().clone(),
            primary: !standby,
            listen,
            link,
            peer_link,
            sync: definition.replication_is_sync(),
            takeover_after: definition.takeover_after(),
            link_listen,
            witness: central_url
                .filter(|_| definition.witness_is_central())
                .map(|url| url.trim_end_matches('/').to_owned()),
            takeover_without_witness: definition.takeover_without_witness(),
        })
    }
}

/// Runs one node of a pair until `stop` resolves (SIGTERM), or exits the process when
/// fenced.
pub async fn run_node(
    node: PairNode,
    options: SiteOptions,
    deployment: Deployment,
    stop: tokio::sync::oneshot::Receiver<()>,
    header_read_timeout: Duration,
) -> Result<(), String> {
    let name = node.site.clone();
    let saf = Saf::open(SafConfig::new(crate::site::saf_dir(&options)))
        .map_err(|e| format!("site `{name}`: {e}"))?;
    let listener = TcpListener::bind(&node.link_listen).map_err(|e| {
        format!(
            "site `{name}`: cannot listen on link {}: {e}",
            node.link_listen
        )
    })?;
    let listener = Arc::new(listener);
    let epoch = saf.epoch().map_err(|e| e.to_string())?;
    // The link is keyed by the site's central↔site token (`[[site]] token_env`).
    let auth = LinkAuth::new(&name, &options.token);
    let metrics = Arc::new(LinkMetrics::default());
    metrics.epoch.store(epoch, Ordering::Relaxed);
    let peer_link = node.peer_link.clone();
    let probe_auth = auth.clone();
    let peer = tokio::task::spawn_blocking(move || {
        replication::probe(&peer_link, PROBE_TIMEOUT, &probe_auth)
    })
    .await
    .map_err(|e| e.to_string())?;
    let start_active = match peer {
        Some((true, _, _)) => false,
        Some((false, peer_epoch, peer_primary)) => {
            replication::outranks(epoch, node.primary, peer_epoch, peer_primary)
        }
        None => node.primary,
    };
    tracing::info!(site = %name, epoch, ?peer, active = start_active, "pair node starting");
    let mut stop = stop;
    let mut took_over = None;
    if !start_active {
        let link = (&auth, &metrics);
        let witness = node
            .witness
            .as_ref()
            .map(|central| central_witness(central, &node, &options.token))
            .transpose()?;
        match standby_phase(
            &node,
            &saf,
            &listener,
            link,
            witness,
            &mut stop,
            header_read_timeout,
        )
        .await?
        {
            Some(epoch) => took_over = Some(epoch),
            None => return Ok(()),
        }
    }
    active_phase(
        &node,
        options,
        &deployment,
        saf,
        listener,
        (auth, metrics),
        stop,
        header_read_timeout,
        took_over,
    )
    .await
}

/// Serves as standby; `Some(epoch)` once this node took over, `None` when stopped.
async fn standby_phase(
    node: &PairNode,
    saf: &Saf,
    listener: &Arc<TcpListener>,
    (auth, metrics): (&LinkAuth, &Arc<LinkMetrics>),
    witness: Option<Witness>,
    stop: &mut tokio::sync::oneshot::Receiver<()>,
    header_read_timeout: Duration,
) -> Result<Option<u64>, String> {
    let name = &node.site;
    let http = tokio::net::TcpListener::bind(&node.listen)
        .await
        .map_err(|e| format!("site `{name}`: cannot listen on {}: {e}", node.listen))?;
    tracing::info!(site = %name, listen = %node.listen, link = %node.link, "standby node serving");
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let router = crate::site::api::standby_router(name, Arc::clone(metrics));
    let http_server = tokio::spawn(async move {
        let _ = crate::http_server::serve(http, router, header_read_timeout, async {
            let _ = http_stopped.await;
        })
        .await;
    });
    let stopping = Arc::new(AtomicBool::new(false));
    let config = StandbyConfig {
        site: name.clone(),
        primary: node.primary,
        takeover_after: node.takeover_after,
        auth: auth.clone(),
        metrics: Arc::clone(metrics),
        witness,
    };
    let mut standby = {
        let (listener, saf, stopping) = (Arc::clone(listener), saf.clone(), Arc::clone(&stopping));
        tokio::task::spawn_blocking(move || {
            replication::run_standby(&listener, &saf, &config, &stopping)
        })
    };
    let ended = tokio::select! {
        ended = &mut standby => ended,
        _ = &mut *stop => {
            stopping.store(true, Ordering::SeqCst);
            let _ = (&mut standby).await;
            let _ = http_stop.send(());
            let _ = http_server.await;
            return Ok(None);
        }
    };
    let _ = http_stop.send(());
    let _ = http_server.await;
    match ended.map_err(|e| e.to_string())? {
        Ok(StandbyEnd::TakeOver { epoch }) => {
            tracing::warn!(site = %name, epoch, "the active is silent: taking over");
            Ok(Some(epoch))
        }
        Ok(StandbyEnd::Stopped) => Ok(None),
        Err(error) => Err(format!("site `{name}`: standby failed: {error}")),
    }
}

#[allow(clippy::too_many_arguments)]
async fn active_phase(
    node: &PairNode,
    options: SiteOptions,
    deployment: &Deployment,
    saf: Saf,
    listener: Arc<TcpListener>,
    (auth, metrics): (LinkAuth, Arc<LinkMetrics>),
    stop: tokio::sync::oneshot::Receiver<()>,
    header_read_timeout: Duration,
    took_over: Option<u64>,
) -> Result<(), String> {
    let name = node.site.clone();
    let epoch = saf.epoch().map_err(|e| e.to_string())?;
    metrics.set_active(true);
    metrics.epoch.store(epoch, Ordering::Relaxed);
    let stop_answering = Arc::new(AtomicBool::new(false));
    {
        let (stop_answering, primary) = (Arc::clone(&stop_answering), node.primary);
        let (auth, metrics) = (auth.clone(), Arc::clone(&metrics));
        std::thread::Builder::new()
            .name("saf-link-answer".to_owned())
            .spawn(move || {
                replication::answer_as_active(
                    &listener,
                    epoch,
                    primary,
                    &auth,
                    &metrics,
                    &stop_answering,
                    &fenced,
                )
            })
            .map_err(|e| format!("site `{name}`: cannot start the link thread: {e}"))?;
    }
    let status = replication::start_link(
        &saf,
        LinkConfig {
            site: name.clone(),
            peer: node.peer_link.clone(),
            epoch,
            primary: node.primary,
            sync: node.sync,
            // A standby slower than this is as good as gone (the link goes down and the
            // active acknowledges alone); it is also how long a hung standby can hold the
            // writer in sync mode.
            ack_timeout: node.takeover_after,
            auth,
            metrics: Arc::clone(&metrics),
        },
    )
    .map_err(|e| format!("site `{name}`: {e}"))?;
    {
        let mut status = status.clone();
        tokio::spawn(async move {
            while status.changed().await.is_ok() {
                if let LinkStatus::Fenced { peer_epoch } = *status.borrow_and_update() {
                    fenced(peer_epoch);
                }
            }
        });
    }
    let site = Site::start_with_saf(options, deployment, saf).await?;
    site.watch_replication(status, metrics);
    if let Some(epoch) = took_over {
        site.record_event(
            "takeover",
            format!("this node took over site `{name}` as active (epoch {epoch})"),
        );
    }
    let http = tokio::net::TcpListener::bind(&node.listen)
        .await
        .map_err(|e| format!("site `{name}`: cannot listen on {}: {e}", node.listen))?;
    tracing::info!(site = %name, listen = %node.listen, epoch, "active node serving");
    let router = crate::site::api::router(&site);
    let served = crate::http_server::serve(http, router, header_read_timeout, async {
        let _ = stop.await;
    })
    .await;
    stop_answering.store(true, Ordering::SeqCst);
    site.shutdown().await;
    served
}

/// How long a standby waits for central's witness answer (central probes the active within
/// 1.5 s of it).
const WITNESS_TIMEOUT: Duration = Duration::from_secs(3);

/// Central as the witness of `node`'s takeovers: `GET {central}/internal/sites/{site}/witness`
/// with the site's token; central answers whether it reaches the other node.
fn central_witness(central: &str, node: &PairNode, token: &str) -> Result<Witness, String> {
    let name = &node.site;
    let http = reqwest::Client::builder()
        .timeout(WITNESS_TIMEOUT)
        .build()
        .map_err(|e| format!("site `{name}`: cannot build the witness client: {e}"))?;
    let url = format!(
        "{central}/internal/sites/{}/witness?asking={}",
        crate::protocol::encode(name),
        if node.primary { "primary" } else { "standby" }
    );
    let (token, handle, site) = (
        token.to_owned(),
        tokio::runtime::Handle::current(),
        name.clone(),
    );
    let ask = move || {
        // Called on the standby's blocking thread, never on a runtime worker.
        handle.block_on(async {
            let response = http
                .get(&url)
                .header(crate::protocol::TOKEN_HEADER, &token)
                .send()
                .await;
            let answer = match response {
                Ok(response) if response.status().is_success() => {
                    response.json::<crate::protocol::WitnessAnswer>().await.ok()
                }
                Ok(response) => {
                    tracing::warn!(site = %site, status = %response.status(), "central refused the witness question");
                    None
                }
                Err(error) => {
                    tracing::warn!(site = %site, error = %error.without_url(), "central cannot be asked as witness");
                    None
                }
            };
            match answer {
                Some(answer) if answer.active => WitnessVerdict::ActiveAlive,
                Some(_) => WitnessVerdict::ActiveGone,
                None => WitnessVerdict::NoAnswer,
            }
        })
    };
    Ok(Witness {
        ask: Arc::new(ask),
        takeover_without_answer: node.takeover_without_witness,
    })
}

/// The peer holds the newer history: stop at once, without the orderly shutdown that would
/// keep delivering from a buffer that is no longer the site's.
fn fenced(peer_epoch: u64) {
    tracing::error!(
        peer_epoch,
        "fenced: the peer node is active with a newer epoch; this node stops (restart it to \
         follow the peer as standby)"
    );
    eprintln!(
        "error: fenced: the peer node is active with epoch {peer_epoch}; restart this node to \
         follow it as standby"
    );
    std::process::exit(FENCED_EXIT_CODE);
}
