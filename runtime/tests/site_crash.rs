//! Crash safety of a site node (issue 13 part 3): a real `scl serve --role
//! site:NAME` process runs a script that makes a `CachedCall`, a `Notify` and a
//! `CachedWrite` per call, under load from 8 callers, against real peers — an
//! ERP peer this test runs (a real HTTP server that refuses about half the
//! attempts with 503, so messages go through the buffer), the aiosmtpd server
//! (`tests/servers/smtp.sh`) and PostgreSQL (`tests/servers/postgres.sh`). The
//! node is killed with SIGKILL 20 times at varying moments and restarted on the
//! same data directory. Afterwards every delivery the script was told about
//! (its id came back in an answer) has arrived at its peer; duplicates at the
//! peers are counted and are bounded by the attempts in flight at the kills.

mod process_support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use process_support::{Folder, SITE_TOKEN, eventually, free_port, server_env};
use scl_runtime::protocol::SiteClient;
use serde_json::{Value, json};

const CYCLES: usize = 20;

/// What one answered call promised: its tag and its three delivery ids
/// (CachedCall, Notify, CachedWrite).
type Told = (String, String, String, String);
const CALLERS: usize = 8;

/// The ERP peer: accepted Idempotency-Keys (with repeats), and a coin that
/// refuses every other attempt.
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

fn deployment(site: u16, erp: u16, smtp: &str) -> String {
    format!(
        r#"data_dir = "./data"

[[site]]
name = "plant-a"
listen = "127.0.0.1:{site}"
url = "http://127.0.0.1:{site}"
token_env = "SCL_SITE_TOKEN"

[smtp]
host = "127.0.0.1"
port = {smtp}
tls = "none"
from = "scada@plant.example"
auth = {{ kind = "basic", username = "alice", password_env = "SCL_TEST_SMTP_PASSWORD" }}
retry = {{ max_retries = 1000, interval_s = 1 }}

[notification_lists]
Operators = ["op@plant.example"]

[external_systems.Erp]
base_url = "http://127.0.0.1:{erp}"
timeout_s = 5
retry = {{ max_retries = 1000, interval_s = 1 }}
methods.PostReading = {{ http = "POST", path = "/readings" }}

[databases.Historian]
driver = "postgres"
url_env = "SCL_TEST_POSTGRES_URL"
retry = {{ max_retries = 1000, interval_s = 1 }}

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
"#
    )
}

fn work_script(table: &str) -> String {
    format!(
        "fn main(tag: string) -> json {{\n    \
         let call = ExternalSystem.CachedCall(\"Erp\", \"PostReading\", {{ tag: tag }});\n    \
         let mail = Notify.To(\"Operators\").Send(\"crash ${{tag}}\", \"tag ${{tag}}\");\n    \
         let write = Database.CachedWrite(\"Historian\", \"INSERT INTO {table} (tag) VALUES (@p1)\", [tag]);\n    \
         return {{ call: call.id, mail: mail.id, write: write.id }};\n}}\n"
    )
}

/// Message-IDs in the SMTP server's maildir that carry one of `ids`, counted.
fn mails(ids: &HashSet<String>) -> HashMap<String, usize> {
    let mut found = HashMap::new();
    let Ok(entries) = std::fs::read_dir(server_env("SCL_TEST_SMTP_MAILDIR")) else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Some(start) = text.find("Message-ID: <") else {
            continue;
        };
        let rest = &text[start + 13..];
        let Some(end) = rest.find('@') else { continue };
        let id = &rest[..end];
        if ids.contains(id) {
            *found.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_killed_20_times_under_mixed_load_loses_nothing() {
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
    let table = format!("site_crash_{}", std::process::id());
    let (db, connection) =
        tokio_postgres::connect(&server_env("SCL_TEST_POSTGRES_URL"), tokio_postgres::NoTls)
            .await
            .expect("postgres");
    tokio::spawn(connection);
    db.batch_execute(&format!("CREATE TABLE {table} (tag TEXT NOT NULL)"))
        .await
        .expect("table");

    let site_port = free_port();
    let folder = Folder::new(
        &deployment(site_port, erp_port, &server_env("SCL_TEST_SMTP_PLAIN_PORT")),
        &[("scripts/work.scl", &work_script(&table))],
    );
    let client = SiteClient::new(
        "plant-a",
        &format!("http://127.0.0.1:{site_port}"),
        SITE_TOKEN,
        Duration::from_secs(10),
    )
    .expect("client");
    // Deliveries the script reported (so they were buffered or delivered), by peer.
    let told: Arc<Mutex<Vec<Told>>> = Arc::default();
    let counter = Arc::new(AtomicU64::new(0));
    for cycle in 0..=CYCLES {
        let mut node = folder.serve("site:plant-a", &[], &[]);
        eventually("the site to answer", Duration::from_secs(60), || async {
            client.bundle_version().await.ok()
        })
        .await;
        if cycle == CYCLES {
            // The last run is not killed: it drains the buffer.
            let expected = told.lock().expect("lock").clone();
            let calls: HashSet<String> = expected.iter().map(|t| t.1.clone()).collect();
            let mail_ids: HashSet<String> = expected.iter().map(|t| t.2.clone()).collect();
            let tags: HashSet<String> = expected.iter().map(|t| t.0.clone()).collect();
            eventually(
                "every told delivery to arrive",
                Duration::from_secs(180),
                || {
                    let (erp, db, table) = (Arc::clone(&erp), &db, &table);
                    let (calls, mail_ids, tags) = (&calls, &mail_ids, &tags);
                    async move {
                        let accepted: HashSet<String> =
                            erp.accepted.lock().expect("lock").iter().cloned().collect();
                        if !calls.is_subset(&accepted) {
                            return None;
                        }
                        if mails(mail_ids).len() < mail_ids.len() {
                            return None;
                        }
                        let rows = db
                            .query(&format!("SELECT DISTINCT tag FROM {table}"), &[])
                            .await
                            .ok()?;
                        let written: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
                        tags.is_subset(&written).then_some(())
                    }
                },
            )
            .await;
            // Duplicates: deliveries that reached a peer more than once.
            let accepted = erp.accepted.lock().expect("lock").clone();
            let mut per_call: HashMap<&str, usize> = HashMap::new();
            for key in &accepted {
                *per_call.entry(key.as_str()).or_insert(0) += 1;
            }
            let call_dups: usize = per_call.values().map(|n| n - 1).sum();
            let mail_dups: usize = mails(&mail_ids).values().map(|n| n - 1).sum();
            let rows = db
                .query(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .expect("count");
            let row_count: i64 = rows[0].get(0);
            let write_dups = row_count as usize - tags.len();
            eprintln!(
                "site crash: {CYCLES} kills, {} calls told, lost 0; duplicates: CachedCall {call_dups}, Notify {mail_dups}, CachedWrite {write_dups}",
                expected.len()
            );
            // At most the attempts in flight at each kill can repeat: the forwarder
            // runs at most a few per target at a time.
            let bound = CYCLES * 16;
            assert!(call_dups <= bound && mail_dups <= bound && write_dups <= bound);
            node.stop();
            break;
        }
        // Load, then a kill after a varying number of answered calls.
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let mut callers = Vec::new();
        for caller in 0..CALLERS {
            let (client, told, counter, stop, answered) = (
                client.clone(),
                Arc::clone(&told),
                Arc::clone(&counter),
                Arc::clone(&stop),
                Arc::clone(&answered),
            );
            callers.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let tag = format!("t{}", counter.fetch_add(1, Ordering::SeqCst));
                    let instance = if caller % 2 == 0 { "PUMP-1" } else { "PUMP-2" };
                    match client
                        .call(instance, "Work", json!({ "tag": tag }), None)
                        .await
                    {
                        Ok(ids) => {
                            let id = |k: &str| ids[k].as_str().unwrap_or_default().to_owned();
                            told.lock().expect("lock").push((
                                tag,
                                id("call"),
                                id("mail"),
                                id("write"),
                            ));
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        // The node died under the call: nothing was promised.
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            }));
        }
        let kill_after = 10 + (cycle as u64 * 7) % 40;
        eventually("calls to be answered", Duration::from_secs(60), || async {
            (answered.load(Ordering::SeqCst) >= kill_after).then_some(())
        })
        .await;
        node.kill();
        stop.store(true, Ordering::SeqCst);
        for caller in callers {
            let _ = caller.await;
        }
    }
    let _ = db.batch_execute(&format!("DROP TABLE {table}")).await;
}
