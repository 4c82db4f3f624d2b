//! Central's side of the webhooks ([`crate::webhooks`]): its store-and-forward buffer, the
//! lease that lets one central node forward it, and the delivery history route.
//!
//! Central's events (`script_failed` of `api` scripts, `bulk_job_finished`) are buffered in
//! `<data_dir>/central/saf`, opened by every central node of the data directory (LMDB
//! coordinates the processes' writes). Only one node forwards it at a time: the node holding
//! an exclusive lock on `<data_dir>/central/saf-forwarder.lock` (an OS file lock, released
//! by the kernel when the process dies, so another node takes over within a second) runs the
//! forwarder; the others only buffer. As a node's forwarder is not woken by another
//! process's writes, the holder looks for new messages every [`RESCAN`].
//!
//! `GET /admin/webhooks/{name}/deliveries?status=&limit=` lists the deliveries of one
//! subscription from central's buffer and every site's (over the sites' internal API),
//! newest first.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{ApiError, Central, admin_key, codes, internal, invalid_query};
use crate::saf::{Category, Deliverers, Forwarder, ForwarderConfig, Saf, SafConfig};
use crate::webhooks::{DeliveryView, Webhooks, deliveries, history_query};

/// How often the lease holder looks for messages other nodes buffered.
const RESCAN: Duration = Duration::from_secs(1);
/// How often a node without the lease tries to take it.
const LEASE_RETRY: Duration = Duration::from_secs(1);
/// How long a site may take to answer a history query.
const SITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens central's webhook buffer (only when the deployment has subscriptions).
pub(crate) fn open_buffer(data_dir: &FsPath) -> Result<Saf, String> {
    let mut config = SafConfig::new(data_dir.join("central").join("saf"));
    // Several processes may have the environment open; a larger first map makes growing it
    // (which each process does on its own) rare for central's few events.
    config.initial_map_size = 1 << 30;
    Saf::open(config).map_err(|e| format!("central webhook buffer: {e}"))
}

fn lock_path(data_dir: &FsPath) -> PathBuf {
    data_dir.join("central").join("saf-forwarder.lock")
}

/// Runs until `stopping` is set: takes the forwarding lease when it is free and forwards
/// the buffer while it holds it.
pub(crate) async fn forward_with_lease(
    saf: Saf,
    webhooks: Arc<Webhooks>,
    data_dir: PathBuf,
    stopping: Arc<AtomicBool>,
) {
    let path = lock_path(&data_dir);
    let lock = loop {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        match std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(file) => match file.try_lock() {
                Ok(()) => break file,
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(error)) => {
                    tracing::error!(path = %path.display(), %error, "webhook forwarding lease");
                }
            },
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "webhook forwarding lease");
            }
        }
        tokio::time::sleep(LEASE_RETRY).await;
    };
    tracing::info!("this central node forwards the central webhook buffer");
    let deliverers = Deliverers::default().with(Category::Webhook, webhooks.deliverer());
    let forwarder = match Forwarder::start(saf.clone(), deliverers, ForwarderConfig::default()) {
        Ok(forwarder) => forwarder,
        Err(error) => {
            tracing::error!(%error, "central webhook forwarder");
            return;
        }
    };
    while !stopping.load(Ordering::SeqCst) {
        tokio::time::sleep(RESCAN).await;
        saf.shared().wake_forwarder.notify_one();
    }
    forwarder.shutdown(Duration::from_secs(2)).await;
    drop(lock);
}

/// `GET /admin/webhooks/{name}/deliveries`.
pub(crate) async fn history(
    State(central): State<Arc<Central>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Err(error) = admin_key(&central, &headers) {
        return error.into_response();
    }
    if !central.webhooks.has(&name) {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            codes::UNKNOWN_WEBHOOK,
            format!("there is no webhook `{name}`"),
        )
        .into_response();
    }
    let Ok(Query(params)) = query else {
        return invalid_query("the query string is malformed").into_response();
    };
    let (status, limit) = match history_query(&params) {
        Ok(parsed) => parsed,
        Err(problem) => return invalid_query(&problem).into_response(),
    };
    let mut all: Vec<DeliveryView> = Vec::new();
    if let Some(saf) = &central.webhook_buffer {
        let (saf, lookup) = (saf.clone(), name.clone());
        let local = tokio::task::spawn_blocking(move || {
            deliveries(&saf, "central", &lookup, status, limit)
        })
        .await;
        match local {
            Ok(Ok(rows)) => all.extend(rows),
            Ok(Err(problem)) => {
                tracing::error!("reading the central webhook buffer: {problem}");
                return internal().into_response();
            }
            Err(problem) => {
                tracing::error!("reading the central webhook buffer: {problem}");
                return internal().into_response();
            }
        }
    }
    let mut lookups = tokio::task::JoinSet::new();
    for site in central.routes.sites() {
        let (site, name, params) = (Arc::clone(site), name.clone(), params.clone());
        lookups.spawn(async move {
            let answer =
                tokio::time::timeout(SITE_TIMEOUT, site.webhook_deliveries(&name, &params)).await;
            (site.site().to_owned(), answer)
        });
    }
    let mut unreachable = Vec::new();
    while let Some(joined) = lookups.join_next().await {
        let Ok((site, answer)) = joined else { continue };
        match answer {
            Ok(Ok(rows)) => all.extend(rows),
            Ok(Err(error)) => {
                tracing::warn!(%site, "webhook history query failed: {error}");
                unreachable.push(site);
            }
            Err(_) => {
                tracing::warn!(%site, "webhook history query timed out");
                unreachable.push(site);
            }
        }
    }
    all.sort_by(|a, b| {
        b.created
            .cmp(&a.created)
            .then_with(|| b.event_id.cmp(&a.event_id))
    });
    all.truncate(limit);
    unreachable.sort();
    axum::Json(serde_json::json!({
        "webhook": name,
        "deliveries": all,
        "unreachable_sites": unreachable,
    }))
    .into_response()
}
