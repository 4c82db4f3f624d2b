//! Site failover (issue 13 part 5): a site runs as an active/standby pair of real
//! `scl serve --role site:plant-a [--standby]` processes behind a real central node.
//! Callers load the inbound API (`Run` → `Route.To` → the site script, which makes an
//! `ExternalSystem.CachedCall` to an ERP peer this test runs; the peer refuses about half
//! the attempts with 503, so messages go through the buffer and wait there). The active
//! node is killed with SIGKILL mid-load; the standby takes over and central routes to it;
//! the killed node is restarted, comes back as the new standby and is resynced; then the
//! new active is killed, and so on for [`CYCLES`] kills. Afterwards every call that was
//! answered (so its message was buffered on the active and, with `replication = "sync"`,
//! on the standby) has reached the peer: lost = 0. Duplicates at the peer are counted and
//! bounded by the attempts in flight at the kills.

mod process_support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use process_support::{Api, Folder, api_keys, eventually, free_port};
use serde_json::{Value, json};

const CYCLES: usize = 4;
const CALLERS: usize = 6;
const KEY: &str = "failover-test-key";

/// The ERP peer: accepted Idempotency-Keys (with repeats), and a coin that refuses every
/// other attempt.
#[derive(Default)]
struct Erp {
    accepted: Mutex<Vec<String>>,
    attempts: AtomicU64,
}

async fn readings(State(erp): State<Arc<Erp>>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
    if erp.attempts.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "busy" })),
        );
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    erp.accepted.lock().expect("lock").push(key);
    (StatusCode::OK, Json(json!({ "ok": true })))
}

struct Ports {
    central: u16,
    primary: u16,
    primary_link: u16,
    standby: u16,
    standby_link: u16,
    erp: u16,
}

fn deployment(ports: &Ports) -> String {
    format!(
        r#"data_dir = "./data"

[central]
listen = "127.0.0.1:{central}"

[[site]]
name = "plant-a"
listen = "127.0.0.1:{primary}"
url = "http://127.0.0.1:{primary}"
token_env = "SCL_SITE_TOKEN"
link = "127.0.0.1:{primary_link}"
standby = {{ listen = "127.0.0.1:{standby}", url = "http://127.0.0.1:{standby}", link = "127.0.0.1:{standby_link}" }}
replication = "sync"
takeover_after_ms = 2500

[external_systems.Erp]
base_url = "http://127.0.0.1:{erp}"
timeout_s = 5
retry = {{ max_retries = 1000, interval_s = 1 }}
methods.PostReading = {{ http = "POST", path = "/readings" }}

[templates.Pump.attributes]
Speed = {{ type = "float", default = 0.0 }}

[templates.Pump.scripts]
Work = {{ file = "scripts/work.scl", kind = "instance" }}

[[instance]]
code = "PUMP-1"
template = "Pump"
site = "plant-a"

[[instance]]
code = "PUMP-2"
template = "Pump"
site = "plant-a"

[api_methods.Run]
script = "scripts/api/run.scl"
approved_keys = ["erp"]
timeout_s = 20
{keys}"#,
        central = ports.central,
        primary = ports.primary,
        primary_link = ports.primary_link,
        standby = ports.standby,
        standby_link = ports.standby_link,
        erp = ports.erp,
        keys = api_keys(&[("erp", KEY)]),
    )
}

const WORK: &str = "fn main(tag: string) -> json {\n    \
    let call = ExternalSystem.CachedCall(\"Erp\", \"PostReading\", { tag: tag });\n    \
    return { call: call.id };\n}\n";

const RUN: &str = "fn main(code: string, tag: string) -> json {\n    \
    return Route.To(code).Call(\"Work\", { tag: tag });\n}\n";

/// `GET /health` of one site node: `Some(replication state)` when it is the active node,
/// `None` when it is down or standby.
async fn active_replication(http: &reqwest::Client, port: u16) -> Option<String> {
    let response = http
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body: Value = response.json().await.ok()?;
    Some(body["replication"].as_str().unwrap_or_default().to_owned())
}

/// The value of the sample `series` (name and labels, exactly) in `GET /metrics` of a node.
async fn metric(http: &reqwest::Client, port: u16, series: &str) -> Option<f64> {
    let text = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_active_node_under_load_loses_no_buffered_message() {
    let erp = Arc::new(Erp::default());
    let router = axum::Router::new()
        .route("/readings", post(readings))
        .with_state(Arc::clone(&erp));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let erp_port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let ports = Ports {
        central: free_port(),
        primary: free_port(),
        primary_link: free_port(),
        standby: free_port(),
        standby_link: free_port(),
        erp: erp_port,
    };
    let folder = Folder::new(
        &deployment(&ports),
        &[("scripts/work.scl", WORK), ("scripts/api/run.scl", RUN)],
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let api = Api::new(format!("http://127.0.0.1:{}", ports.central));

    // Node 0 is the configured primary, node 1 the standby (`--standby`).
    let node_ports = [ports.primary, ports.standby];
    let start = |which: usize| {
        let extra: &[&str] = if which == 1 { &["--standby"] } else { &[] };
        folder.serve("site:plant-a", extra, &[])
    };
    let mut nodes = [Some(start(0)), Some(start(1))];
    let _central = folder.serve("central", &[], &[]);
    api.wait_healthy().await;
    let mut active = 0usize;
    eventually(
        "the primary to be active with its standby current",
        Duration::from_secs(60),
        || async { (active_replication(&http, node_ports[0]).await? == "up").then_some(()) },
    )
    .await;
    // Both nodes show the link in `/metrics`.
    let series = |role: &str, name: &str| format!("{name}{{site=\"plant-a\",role=\"{role}\"}}");
    let up = |role: &str| {
        format!("scl_replication_state{{site=\"plant-a\",role=\"{role}\",state=\"up\"}}")
    };
    assert_eq!(metric(&http, node_ports[0], &up("active")).await, Some(1.0));
    eventually(
        "the standby's /metrics to show the link up",
        Duration::from_secs(30),
        || async { (metric(&http, node_ports[1], &up("standby")).await? == 1.0).then_some(()) },
    )
    .await;
    for (port, role) in [(node_ports[0], "active"), (node_ports[1], "standby")] {
        let epoch = series(role, "scl_replication_epoch");
        assert_eq!(metric(&http, port, &epoch).await, Some(0.0), "{role}");
        let takeovers = series(role, "scl_replication_takeovers_total");
        assert_eq!(metric(&http, port, &takeovers).await, Some(0.0), "{role}");
        let refused = series(role, "scl_replication_refused_total");
        assert_eq!(metric(&http, port, &refused).await, Some(0.0), "{role}");
    }

    let told: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let counter = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut callers = Vec::new();
    for caller in 0..CALLERS {
        let (api, told, counter, stop, answered, failed) = (
            api.clone(),
            Arc::clone(&told),
            Arc::clone(&counter),
            Arc::clone(&stop),
            Arc::clone(&answered),
            Arc::clone(&failed),
        );
        callers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let tag = format!("t{}", counter.fetch_add(1, Ordering::SeqCst));
                let code = if caller % 2 == 0 { "PUMP-1" } else { "PUMP-2" };
                let params = json!({ "code": code, "tag": tag });
                match api.try_call("Run", Some(KEY), &params).await {
                    Ok((200, body)) if body["call"].is_string() => {
                        let id = body["call"].as_str().unwrap_or_default().to_owned();
                        told.lock().expect("lock").push((tag, id));
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    // The active died under the call, or the pair is between roles:
                    // nothing was promised.
                    _ => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }

    for cycle in 0..CYCLES {
        let before = answered.load(Ordering::SeqCst);
        let kill_after = before + 30 + (cycle as u64 * 11) % 40;
        eventually("calls to be answered", Duration::from_secs(120), || async {
            (answered.load(Ordering::SeqCst) >= kill_after).then_some(())
        })
        .await;
        let victim = active;
        nodes[victim].as_mut().expect("running").kill();
        nodes[victim] = None;
        active = 1 - victim;
        // The standby takes over; central finds it and calls are answered again.
        let resumed = answered.load(Ordering::SeqCst) + 10;
        eventually(
            "the standby to take over and answer calls",
            Duration::from_secs(120),
            || async { (answered.load(Ordering::SeqCst) >= resumed).then_some(()) },
        )
        .await;
        assert!(
            active_replication(&http, node_ports[active])
                .await
                .is_some(),
            "node {active} answers as active after the kill of node {victim}"
        );
        // The first takeover of each node raises the epoch to the cycle's number.
        let takeovers = series("active", "scl_replication_takeovers_total");
        assert_eq!(
            metric(&http, node_ports[active], &takeovers).await,
            Some(1.0)
        );
        let epoch = series("active", "scl_replication_epoch");
        assert_eq!(
            metric(&http, node_ports[active], &epoch).await,
            Some((cycle + 1) as f64)
        );
        // The killed node comes back as the new standby and is resynced.
        nodes[victim] = Some(start(victim));
        eventually(
            "the new standby to be current",
            Duration::from_secs(120),
            || async {
                (active_replication(&http, node_ports[active]).await? == "up").then_some(())
            },
        )
        .await;
        assert!(
            active_replication(&http, node_ports[victim])
                .await
                .is_none(),
            "the restarted node {victim} stays standby"
        );
        let position = series("standby", "scl_replication_position");
        let standby_position = metric(&http, node_ports[victim], &position).await;
        assert!(
            standby_position.is_some_and(|p| p > 0.0),
            "standby position {standby_position:?}"
        );
    }
    stop.store(true, Ordering::SeqCst);
    for caller in callers {
        let _ = caller.await;
    }

    let expected = told.lock().expect("lock").clone();
    let ids: HashSet<String> = expected.iter().map(|(_, id)| id.clone()).collect();
    // Every answered call reaches the peer: polled with a generous deadline, then counted.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let lost = loop {
        let accepted: HashSet<String> =
            erp.accepted.lock().expect("lock").iter().cloned().collect();
        let lost = ids.difference(&accepted).count();
        if lost == 0 || std::time::Instant::now() > deadline {
            break lost;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        lost,
        0,
        "answered calls that never reached the peer, of {}",
        ids.len()
    );
    let accepted = erp.accepted.lock().expect("lock").clone();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for key in &accepted {
        *per_id.entry(key.as_str()).or_insert(0) += 1;
    }
    let duplicates: usize = per_id.values().map(|n| n - 1).sum();
    eprintln!(
        "site failover: {CYCLES} kills of the active, {} calls answered (buffered), {} failed \
         during takeovers, lost 0, duplicates {duplicates}",
        expected.len(),
        failed.load(Ordering::SeqCst),
    );
    // Only attempts in flight at a kill (recorded on the dead node's disk only, or not at
    // all) can repeat: the forwarder runs a few per target at a time.
    assert!(duplicates <= CYCLES * 16, "duplicates {duplicates}");
    // SIGTERM stops the standby (while its active still streams to it), then the active.
    for which in [1 - active, active] {
        let code = nodes[which].as_mut().expect("running").stop();
        assert_eq!(code, Some(0), "node {which} stops cleanly");
    }
}

/// A TCP gate in front of a port: while open it forwards every connection; closing it stops
/// listening and cuts the connections it carries, as a broken cable would. (The same as the
/// gate of `e2e.rs`, which is private to that test.)
struct Gate {
    port: u16,
    target: u16,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Gate {
    fn new(target: u16) -> Gate {
        Gate {
            port: free_port(),
            target,
            task: Mutex::new(None),
        }
    }

    async fn open(&self) {
        let listener = eventually("the gate's port", Duration::from_secs(10), || async {
            tokio::net::TcpListener::bind(("127.0.0.1", self.port))
                .await
                .ok()
        })
        .await;
        let target = self.target;
        let task = tokio::spawn(async move {
            // Dropping the set (when the gate closes) aborts every connection.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        *self.task.lock().expect("lock") = Some(task);
    }

    async fn close(&self) {
        let task = self.task.lock().expect("lock").take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }
}

/// `GET /health` of a standby: why it holds back a takeover, if it does (`None` when it
/// does not, or does not answer as a standby).
async fn takeover_held(http: &reqwest::Client, port: u16) -> Option<String> {
    let response = http
        .get(format!("http://127.0.0.1:{port}/health"))
        .send()
        .await
        .ok()?;
    let body: Value = response.json().await.ok()?;
    (body["code"] == "standby")
        .then(|| body["takeover_held"].as_str().map(str::to_owned))
        .flatten()
}

/// Central as the witness: when only the link between the nodes breaks (a gate in front of
/// the standby's link port is closed) the standby asks central, central still reaches the
/// active, and the standby does not take over however long the silence lasts; once the
/// active is killed, central cannot reach it either and the standby takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_does_not_take_over_while_central_reaches_the_active() {
    let (central, primary, primary_link, standby, standby_link) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let gate = Gate::new(standby_link);
    let deployment = format!(
        r#"data_dir = "./data"

[central]
listen = "127.0.0.1:{central}"
url = "http://127.0.0.1:{central}"

[[site]]
name = "plant-a"
listen = "127.0.0.1:{primary}"
url = "http://127.0.0.1:{primary}"
token_env = "SCL_SITE_TOKEN"
link = "127.0.0.1:{primary_link}"
standby = {{ listen = "127.0.0.1:{standby}", url = "http://127.0.0.1:{standby}", link = "127.0.0.1:{gate}", link_listen = "127.0.0.1:{standby_link}" }}
takeover_after_ms = 1000
witness = "central"
takeover_without_witness = false
"#,
        gate = gate.port,
    );
    let folder = Folder::new(&deployment, &[]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    gate.open().await;
    let _central = folder.serve("central", &[], &[]);
    Api::new(format!("http://127.0.0.1:{central}"))
        .wait_healthy()
        .await;
    let mut primary_node = folder.serve("site:plant-a", &[], &[]);
    let mut standby_node = folder.serve("site:plant-a", &["--standby"], &[]);
    eventually(
        "the primary to be active with its standby current",
        Duration::from_secs(60),
        || async { (active_replication(&http, primary).await? == "up").then_some(()) },
    )
    .await;
    let held_gauge = "scl_replication_takeover_held{site=\"plant-a\",role=\"standby\"}";
    let takeovers = "scl_replication_takeovers_total{site=\"plant-a\",role=\"standby\"}";
    assert_eq!(metric(&http, standby, held_gauge).await, Some(0.0));

    // Only the link breaks: the standby hears nothing, asks central, and holds back.
    gate.close().await;
    let why = eventually(
        "the standby to hold back its takeover",
        Duration::from_secs(30),
        || takeover_held(&http, standby),
    )
    .await;
    assert!(why.contains("central still reaches it"), "{why}");
    // Many takeover times later it still has not taken over (the active answers all along).
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert!(
            active_replication(&http, standby).await.is_none(),
            "the standby took over while central reached the active"
        );
        assert_eq!(
            active_replication(&http, primary).await.as_deref(),
            Some("down"),
            "the primary stays the only active node"
        );
    }
    assert_eq!(metric(&http, standby, held_gauge).await, Some(1.0));
    assert_eq!(metric(&http, standby, takeovers).await, Some(0.0));

    // The active dies: central cannot reach it either, and the standby takes over.
    primary_node.kill();
    eventually(
        "the standby to take over once central cannot reach the active",
        Duration::from_secs(30),
        || async { active_replication(&http, standby).await.map(|_| ()) },
    )
    .await;
    let takeovers = "scl_replication_takeovers_total{site=\"plant-a\",role=\"active\"}";
    assert_eq!(metric(&http, standby, takeovers).await, Some(1.0));
    let held = "scl_replication_takeover_held{site=\"plant-a\",role=\"active\"}";
    assert_eq!(metric(&http, standby, held).await, Some(0.0));
    assert_eq!(standby_node.stop(), Some(0), "the new active stops cleanly");
}

/// The link is keyed by the site's token: a standby started with another token refuses the
/// active's connections (counted in its `/metrics`, logged without either token) and holds
/// nothing, and the active carries on alone (`replication: down`), retrying every second
/// (three refusals: the start probe, the first connection and one retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_with_another_token_is_never_fed() {
    let (primary, primary_link, standby, standby_link) =
        (free_port(), free_port(), free_port(), free_port());
    // A takeover time far beyond the test: the standby must not take over here.
    let deployment = format!(
        r#"data_dir = "./data"

[[site]]
name = "plant-a"
listen = "127.0.0.1:{primary}"
url = "http://127.0.0.1:{primary}"
token_env = "SCL_SITE_TOKEN"
link = "127.0.0.1:{primary_link}"
standby = {{ listen = "127.0.0.1:{standby}", url = "http://127.0.0.1:{standby}", link = "127.0.0.1:{standby_link}" }}
takeover_after_ms = 120000
"#
    );
    let folder = Folder::new(&deployment, &[]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let other_token = "scl_another-sites-token-entirely";
    let mut standby_node = folder.serve(
        "site:plant-a",
        &["--standby"],
        &[("SCL_SITE_TOKEN", other_token)],
    );
    let mut primary_node = folder.serve("site:plant-a", &[], &[]);
    let refused = "scl_replication_refused_total{site=\"plant-a\",role=\"standby\"}";
    eventually(
        "the standby to refuse the active's connections",
        // Well below the heartbeat interval (40 s): the retries must not wait for it.
        Duration::from_secs(20),
        || async { (metric(&http, standby, refused).await? >= 3.0).then_some(()) },
    )
    .await;
    eventually(
        "the primary to serve as active with its link down",
        Duration::from_secs(60),
        || async { (active_replication(&http, primary).await? == "down").then_some(()) },
    )
    .await;
    let state = "scl_replication_state{site=\"plant-a\",role=\"standby\",state=\"down\"}";
    assert_eq!(metric(&http, standby, state).await, Some(1.0));
    let position = "scl_replication_position{site=\"plant-a\",role=\"standby\"}";
    assert_eq!(metric(&http, standby, position).await, Some(0.0));
    assert_eq!(standby_node.stop(), Some(0));
    assert_eq!(primary_node.stop(), Some(0));
    let logs = standby_node.logs();
    assert_eq!(
        logs.matches("replication connection refused").count(),
        1,
        "one line for the first refusal: {logs}"
    );
    let primary_logs = primary_node.logs();
    for token in [other_token, process_support::SITE_TOKEN] {
        assert!(
            !logs.contains(token) && !primary_logs.contains(token),
            "a token in the logs"
        );
    }
}
