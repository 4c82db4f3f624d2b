//! Webhooks against real processes (issue 10 item 5): `scl serve` runs central and a site,
//! and Python receivers (`tests/servers/webhook_receiver.py`) verify every request's
//! Standard Webhooks signature with the PyPI package `standardwebhooks`, an implementation
//! independent of ours. One receiver answers 503 to the first two attempts of every event
//! id; another answers 400 to everything. The tests check that each event arrives exactly
//! once per event id, signed, with the custom headers; that the filters hold events back;
//! that a 4xx parks; that a bulk job's end is an event; that
//! `GET /admin/webhooks/{name}/deliveries` shows the attempts; and that finished bulk jobs
//! are pruned after `[central] bulk_retention_days`.
//!
//! Needs `tests/servers/webhooks.sh` (run by `tests/run.sh`): SCL_TEST_WEBHOOK_PYTHON and
//! SCL_TEST_WEBHOOK_RECEIVER.

mod process_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use process_support::{Api, Folder, api_keys, eventually, free_port, nodes, server_env};
use serde_json::{Value, json};

const KEY: &str = "scl_webhooks_key";
const ADMIN: &str = "scl_webhooks_admin";
/// The example secret of the Standard Webhooks reference libraries.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One Python receiver process; killed when dropped.
struct Receiver {
    child: Child,
    url: String,
    record: PathBuf,
}

impl Receiver {
    fn start(dir: &Path, name: &str, args: &[&str]) -> Receiver {
        let record = dir.join(format!("{name}.jsonl"));
        let mut child = Command::new(server_env("SCL_TEST_WEBHOOK_PYTHON"))
            .arg(server_env("SCL_TEST_WEBHOOK_RECEIVER"))
            .arg("--record")
            .arg(&record)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the webhook receiver starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the receiver prints its port");
        let port = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("unexpected receiver output: {line}"));
        Receiver {
            child,
            url: format!("http://127.0.0.1:{port}/hook"),
            record,
        }
    }

    /// Every request it received so far.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// The requests it accepted (answered 2xx).
    fn accepted(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r["answered"]
                    .as_u64()
                    .is_some_and(|s| (200..300).contains(&s))
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn deployment(central: u16, site: u16, main_url: &str, rejecting_url: &str) -> String {
    let admin = scl_runtime::keys::sha256_hex(ADMIN);
    let down = free_port();
    nodes(Some(central), &[("plant", site)])
        + &api_keys(&[("erp", KEY)])
        + &format!(
            r#"
[admin_keys.ops]
sha256 = "{admin}"

[templates.Pump.attributes]
temperature = {{ type = "float", default = 20.0 }}
pressure = {{ type = "float", default = 1.0 }}

[templates.Pump.scripts]
Hot = {{ file = "hot.scl", kind = "alarm", when = "temperature > 80.0" }}

[[instance]]
code = "P1"
template = "Pump"
site = "plant"

[[instance]]
code = "P2"
template = "Pump"
site = "plant"

[api_methods.SetAttr]
script = "set_attr.scl"
approved_keys = ["erp"]

[api_methods.Divide]
script = "divide.scl"
approved_keys = ["erp"]

[api_methods.Buffer]
script = "buffer.scl"
approved_keys = ["erp"]

[templates.Pump.scripts.Post]
file = "post.scl"
kind = "instance"

# Nothing listens on its port: a CachedCall is buffered, retried once and parked.
[external_systems.Down]
base_url = "http://127.0.0.1:{down}"
timeout_s = 2
retry = {{ max_retries = 1, interval_s = 1 }}
methods.Post = {{ http = "POST", path = "/readings" }}

[[webhook]]
name = "main"
url = "{main_url}"
events = ["attribute_changed", "alarm_raised", "alarm_cleared", "script_failed", "message_parked", "bulk_job_finished"]
attributes = ["temperature"]
filter = '(event["type"] != "attribute_changed" && event["type"] != "alarm_raised") || event["data"]["instance"] == "P1"'
headers = {{ X-Tenant = "acme" }}
secret_env = "SCL_TEST_WEBHOOK_SECRET"
retry = {{ backoff_s = [1, 1, 1] }}

[[webhook]]
name = "rejecting"
url = "{rejecting_url}"
events = ["attribute_changed"]
secret_env = "SCL_TEST_WEBHOOK_SECRET"
retry = {{ backoff_s = [1, 1, 1] }}
"#
        )
}

const SCRIPTS: &[(&str, &str)] = &[
    (
        "hot.scl",
        "fn main(alarm: string, state: string) -> int {\n    Log.Info(\"${alarm} ${state}\");\n    return 0;\n}\n",
    ),
    (
        "set_attr.scl",
        "fn main(code: string, name: string, value: json) -> int {\n    Route.To(code).SetAttribute(name, value);\n    return 1;\n}\n",
    ),
    (
        "divide.scl",
        "fn main(d: int) -> int {\n    return 10 / d;\n}\n",
    ),
    (
        "buffer.scl",
        "fn main(code: string) -> json {\n    return Route.To(code).Call(\"Post\", {});\n}\n",
    ),
    (
        "post.scl",
        "fn main() -> json {\n    let d = ExternalSystem.CachedCall(\"Down\", \"Post\", { asset: Instance.Code() });\n    return { id: d.id, status: d.status };\n}\n",
    ),
];

async fn get(api: &Api, path: &str, admin: bool) -> (u16, Value) {
    let mut request = api.http.get(format!("{}{path}", api.base));
    request = if admin {
        request.header("X-Admin-Key", ADMIN)
    } else {
        request.header("X-API-Key", KEY)
    };
    let response = request.send().await.expect("GET");
    let status = response.status().as_u16();
    let body = response.bytes().await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn set(api: &Api, code: &str, name: &str, value: Value) {
    let (status, body) = api
        .call(
            "SetAttr",
            Some(KEY),
            json!({ "code": code, "name": name, "value": value }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// A short description of an accepted request, to compare sets.
fn describe(request: &Value) -> String {
    let event = &request["event"];
    let data = &event["data"];
    match event["type"].as_str().unwrap_or_default() {
        "attribute_changed" => format!(
            "attribute_changed {} {}={}",
            data["instance"].as_str().unwrap_or_default(),
            data["attribute"].as_str().unwrap_or_default(),
            data["value"]
        ),
        "alarm_raised" | "alarm_cleared" => format!(
            "{} {} {}",
            event["type"].as_str().unwrap_or_default(),
            data["instance"].as_str().unwrap_or_default(),
            data["alarm"].as_str().unwrap_or_default()
        ),
        "script_failed" => format!(
            "script_failed {} {}",
            data["node"].as_str().unwrap_or_default(),
            data["script"].as_str().unwrap_or_default()
        ),
        "message_parked" => format!(
            "message_parked {} {}",
            data["category"].as_str().unwrap_or_default(),
            data["target"].as_str().unwrap_or_default()
        ),
        "bulk_job_finished" => format!(
            "bulk_job_finished {}",
            data["job"]["status"].as_str().unwrap_or_default()
        ),
        other => other.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_signed_once_per_id_despite_503s_and_4xx_parks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let main = Receiver::start(
        dir.path(),
        "main",
        &["--secret", SECRET, "--fail-first", "2"],
    );
    let rejecting = Receiver::start(
        dir.path(),
        "rejecting",
        &["--secret", SECRET, "--status", "400"],
    );
    let (central_port, site_port) = (free_port(), free_port());
    let folder = Folder::new(
        &deployment(central_port, site_port, &main.url, &rejecting.url),
        SCRIPTS,
    );
    let _node = folder.serve("all", &[], &[("SCL_TEST_WEBHOOK_SECRET", SECRET)]);
    let api = Api::new(format!("http://127.0.0.1:{central_port}"));
    api.wait_healthy().await;

    // P1 gets hot: attribute_changed + alarm_raised. P2 too, but the filter keeps both of
    // its events from `main`. A pressure change is outside `attributes`. P1 cools down:
    // attribute_changed + alarm_cleared.
    set(&api, "P1", "temperature", json!(90.0)).await;
    set(&api, "P2", "temperature", json!(95.0)).await;
    set(&api, "P1", "pressure", json!(3.5)).await;
    set(&api, "P1", "temperature", json!(20.0)).await;
    // An api script fails on central: script_failed.
    let (status, _) = api.call("Divide", Some(KEY), json!({ "d": 0 })).await;
    assert_eq!(status, 500);
    // A CachedCall to a system that is down is buffered, retried once, and parked:
    // message_parked.
    let (status, buffered) = api.call("Buffer", Some(KEY), json!({ "code": "P1" })).await;
    assert_eq!(status, 200, "{buffered}");
    assert_eq!(buffered["status"], "buffered", "{buffered}");
    // A bulk job runs to its end: bulk_job_finished.
    let response = api
        .http
        .post(format!("{}/api/bulk/Divide", api.base))
        .header("X-API-Key", KEY)
        .header("Content-Type", "application/json")
        .body(r#"[{"d": 1}, {"d": 2}, {"d": 5}]"#)
        .send()
        .await
        .expect("bulk submit");
    assert_eq!(response.status().as_u16(), 202);

    let expected: BTreeSet<String> = [
        "attribute_changed P1 temperature=90.0",
        "alarm_raised P1 Hot",
        "attribute_changed P1 temperature=20.0",
        "alarm_cleared P1 Hot",
        "script_failed central Divide",
        "bulk_job_finished COMPLETED",
        "message_parked external_call Down/Post",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    // Every event delivered: the history says `delivered` for as many deliveries as events.
    let history = eventually(
        "every event delivered to `main`",
        Duration::from_secs(90),
        || async {
            let (status, body) = get(
                &api,
                "/admin/webhooks/main/deliveries?status=delivered",
                true,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let rows = body["deliveries"].as_array().cloned().unwrap_or_default();
            (rows.len() >= expected.len()).then_some(rows)
        },
    )
    .await;
    assert_eq!(history.len(), expected.len(), "{history:#?}");

    let requests = main.requests();
    assert!(
        requests.iter().all(|r| r["verified"] == json!(true)),
        "a signature did not verify: {requests:#?}"
    );
    let accepted = main.accepted();
    let described: BTreeSet<String> = accepted.iter().map(describe).collect();
    assert_eq!(described, expected, "{accepted:#?}");
    // Exactly once per event id, each after two 503s.
    let mut attempts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for request in &requests {
        attempts
            .entry(request["id"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(request["answered"].as_u64().unwrap_or_default());
    }
    assert_eq!(attempts.len(), expected.len(), "{attempts:?}");
    for (id, answers) in &attempts {
        assert!(id.starts_with("evt_"), "{id}");
        assert_eq!(answers, &vec![503, 503, 200], "event {id}");
    }
    let parked_event = accepted
        .iter()
        .find(|r| r["type"] == "message_parked")
        .expect("message_parked");
    assert_eq!(parked_event["event"]["data"]["message_id"], buffered["id"]);
    assert_eq!(parked_event["event"]["data"]["attempts"], 2);
    for request in &accepted {
        assert_eq!(request["headers"]["x-tenant"], "acme", "{request}");
        assert_eq!(request["headers"]["content-type"], "application/json");
        assert!(request["event"]["timestamp"].is_string(), "{request}");
    }

    // The history shows the attempts with their status codes and capped bodies.
    for row in &history {
        assert_eq!(row["status"], "delivered", "{row}");
        let statuses: Vec<u64> = row["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .map(|a| a["response_status"].as_u64().unwrap_or_default())
            .collect();
        assert_eq!(statuses, vec![503, 503, 200], "{row}");
        let last = &row["attempts"][2];
        let body = last["response_body"].as_str().expect("a response body");
        assert!(body.starts_with("{\"ok\": true"), "{body}");
        assert!(
            body.len() <= 1024,
            "the body is capped: {} bytes",
            body.len()
        );
        assert_eq!(row["attempts"][0]["response_body"], "try again later");
        assert!(row["attempts"][0]["duration_ms"].is_u64(), "{row}");
        assert!(
            row["event_id"]
                .as_str()
                .is_some_and(|id| attempts.contains_key(id))
        );
    }
    let nodes: BTreeSet<&str> = history.iter().filter_map(|r| r["node"].as_str()).collect();
    assert_eq!(nodes, BTreeSet::from(["central", "plant"]));

    // Every temperature and pressure change went to `rejecting`, which answers 400: each is
    // parked after one attempt.
    let parked = eventually(
        "four deliveries parked",
        Duration::from_secs(60),
        || async {
            let (_, body) = get(
                &api,
                "/admin/webhooks/rejecting/deliveries?status=parked",
                true,
            )
            .await;
            let rows = body["deliveries"].as_array().cloned().unwrap_or_default();
            (rows.len() >= 4).then_some(rows)
        },
    )
    .await;
    assert_eq!(parked.len(), 4, "{parked:#?}");
    for row in &parked {
        assert_eq!(row["attempt_count"], 1, "{row}");
        assert_eq!(row["attempts"][0]["response_status"], 400, "{row}");
        assert_eq!(row["attempts"][0]["outcome"], "permanent", "{row}");
        assert_eq!(
            row["attempts"][0]["response_body"],
            "rejected by the test receiver"
        );
    }
    assert_eq!(rejecting.requests().len(), 4);

    // `?limit=`, a bad status, an unknown subscription, no admin key.
    let (_, limited) = get(&api, "/admin/webhooks/main/deliveries?limit=2", true).await;
    assert_eq!(limited["deliveries"].as_array().map(Vec::len), Some(2));
    let (status, body) = get(&api, "/admin/webhooks/main/deliveries?status=lost", true).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, body) = get(&api, "/admin/webhooks/nope/deliveries", true).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("unknown_webhook"))
    );
    assert!(body["error"].is_string());
    let (status, body) = get(&api, "/admin/webhooks/main/deliveries", false).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_admin_key"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_bulk_jobs_are_pruned_after_the_retention() {
    let port = free_port();
    // 0.00003 days is 2.6 s; the worker then looks for old jobs every second.
    let text = nodes(Some(port), &[])
        .replace("[central]\n", "[central]\nbulk_retention_days = 0.00003\n")
        + &api_keys(&[("erp", KEY)])
        + "\n[api_methods.Divide]\nscript = \"divide.scl\"\napproved_keys = [\"erp\"]\n";
    let folder = Folder::new(&text, &[SCRIPTS[2]]);
    let _node = folder.serve("central", &[], &[]);
    let api = Api::new(format!("http://127.0.0.1:{port}"));
    api.wait_healthy().await;
    let response = api
        .http
        .post(format!("{}/api/bulk/Divide", api.base))
        .header("X-API-Key", KEY)
        .header("Content-Type", "application/json")
        .body(r#"[{"d": 1}, {"d": 0}]"#)
        .send()
        .await
        .expect("bulk submit");
    assert_eq!(response.status().as_u16(), 202);
    let job: Value = response.json().await.expect("job");
    let id = job["id"].as_str().expect("id").to_owned();
    let path = format!("/api/bulk/{id}");
    eventually("the job completes", Duration::from_secs(30), || async {
        let (status, body) = get(&api, &path, false).await;
        (status == 200 && body["status"] == "COMPLETED").then_some(())
    })
    .await;
    let (status, body) = get(&api, &format!("{path}/results"), false).await;
    assert_eq!(status, 200);
    assert_eq!(body["results"].as_array().map(Vec::len), Some(2));
    // Then it goes, results and all.
    let gone = eventually(
        "the finished job is pruned",
        Duration::from_secs(30),
        || async {
            let (status, body) = get(&api, &path, false).await;
            (status == 404).then_some(body)
        },
    )
    .await;
    assert_eq!(gone["code"], "unknown_job");
    let (status, body) = get(&api, &format!("{path}/results"), false).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("unknown_job")));
}

/// Two central nodes of one file on one machine share `data_dir`, so they share central's
/// webhook buffer: both buffer their events, one forwards (the holder of the file lock), and
/// when it dies the other takes over. Every event arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_nodes_sharing_a_data_dir_deliver_each_event_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let receiver = Receiver::start(
        dir.path(),
        "central",
        &["--secret", SECRET, "--fail-first", "1"],
    );
    let (first_port, second_port) = (free_port(), free_port());
    let admin = scl_runtime::keys::sha256_hex(ADMIN);
    let text = nodes(Some(first_port), &[])
        + &api_keys(&[("erp", KEY)])
        + &format!(
            r#"
[admin_keys.ops]
sha256 = "{admin}"

[api_methods.Divide]
script = "divide.scl"
approved_keys = ["erp"]

[[webhook]]
name = "failures"
url = "{url}"
events = ["script_failed"]
secret_env = "SCL_TEST_WEBHOOK_SECRET"
retry = {{ backoff_s = [1] }}
"#,
            url = receiver.url
        );
    let folder = Folder::new(&text, &[SCRIPTS[2]]);
    let env = [("SCL_TEST_WEBHOOK_SECRET", SECRET)];
    let first_listen = format!("127.0.0.1:{first_port}");
    let second_listen = format!("127.0.0.1:{second_port}");
    let mut first = folder.serve("central", &["--listen", &first_listen], &env);
    let _second = folder.serve("central", &["--listen", &second_listen], &env);
    let first_api = Api::new(format!("http://{first_listen}"));
    let second_api = Api::new(format!("http://{second_listen}"));
    first_api.wait_healthy().await;
    second_api.wait_healthy().await;

    let fail_on = |api: Api| async move {
        let (status, _) = api.call("Divide", Some(KEY), json!({ "d": 0 })).await;
        assert_eq!(status, 500);
    };
    for _ in 0..3 {
        fail_on(first_api.clone()).await;
        fail_on(second_api.clone()).await;
    }
    let delivered = |api: Api, count: usize| async move {
        eventually("the events delivered", Duration::from_secs(60), || async {
            let (status, body) = get(
                &api,
                "/admin/webhooks/failures/deliveries?status=delivered",
                true,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let rows = body["deliveries"].as_array().map_or(0, Vec::len);
            (rows >= count).then_some(rows)
        })
        .await
    };
    assert_eq!(delivered(second_api.clone(), 6).await, 6);

    // The first node dies (it may or may not hold the lease); the second buffers and
    // forwards on its own.
    first.kill();
    fail_on(second_api.clone()).await;
    fail_on(second_api.clone()).await;
    assert_eq!(delivered(second_api.clone(), 8).await, 8);

    let mut answers: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for request in receiver.requests() {
        assert_eq!(request["verified"], true, "{request}");
        answers
            .entry(request["id"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(request["answered"].as_u64().unwrap_or_default());
    }
    assert_eq!(answers.len(), 8, "{answers:?}");
    for (id, answered) in &answers {
        assert_eq!(
            answered,
            &vec![503, 200],
            "event {id} was not delivered exactly once"
        );
    }
}
