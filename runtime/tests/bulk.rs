//! Bulk jobs (issue 10) on a real central process: a 10,000-record job is
//! killed with SIGKILL mid-way, resumes after the restart and ends with exact
//! counts and per-record results; abort, ownership, bad input, and
//! `scl bulk submit` with its progress bar.

mod process_support;

use std::time::Duration;

use process_support::{Api, Folder, api_keys, eventually, free_port, nodes};
use serde_json::{Value, json};

const KEY: &str = "scl_bulk_key";
const OTHER: &str = "scl_bulk_other_key";
const RECORDS: u64 = 10_000;

fn deployment(port: u16) -> String {
    nodes(Some(port), &[])
        + "bulk_batch_size = 100\n"
        + &api_keys(&[("erp", KEY), ("other", OTHER)])
        + r#"
[api_methods.Divide]
script = "scripts/divide.scl"
approved_keys = ["erp", "other"]
"#
}

/// Some work per record, so a job takes long enough to be killed mid-way.
const DIVIDE: &str = "fn main(n: int, d: int) -> int {\n    var i = 0;\n    while i < 50000 {\n        i += 1;\n    }\n    return n / d;\n}\n";

/// Record `n` divides by zero when `n % 97 == 0`.
fn records() -> String {
    (0..RECORDS)
        .map(|n| json!({ "n": n, "d": if n % 97 == 0 { 0 } else { 1 } }).to_string() + "\n")
        .collect()
}

async fn request(
    api: &Api,
    verb: &str,
    path: &str,
    key: &str,
    body: Option<String>,
) -> (u16, Value) {
    let url = format!("{}{path}", api.base);
    let builder = if verb == "POST" {
        api.http.post(url)
    } else {
        api.http.get(url)
    };
    let mut builder = builder.header("X-API-Key", key);
    if let Some(body) = body {
        builder = builder
            .header("Content-Type", "application/json")
            .body(body);
    }
    let response = builder.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_survives_a_killed_central_and_ends_with_exact_counts() {
    let port = free_port();
    let folder = Folder::new(&deployment(port), &[("scripts/divide.scl", DIVIDE)]);
    let mut central = folder.serve("central", &[], &[]);
    let api = Api::new(format!("http://127.0.0.1:{port}"));
    api.wait_healthy().await;

    let (status, job) = request(&api, "POST", "/api/bulk/Divide", KEY, Some(records())).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(
        (&job["status"], &job["total"]),
        (&json!("QUEUED"), &json!(RECORDS))
    );
    let id = job["id"].as_str().expect("id").to_owned();

    // Kill the node while the job is part-way through.
    let at_kill = eventually(
        "the job to be part-way",
        Duration::from_secs(120),
        || async {
            let (_, job) = request(&api, "GET", &format!("/api/bulk/{id}"), KEY, None).await;
            let processed = job["processed"].as_u64()?;
            (processed >= 500).then_some(job)
        },
    )
    .await;
    central.kill();
    let processed_at_kill = at_kill["processed"].as_u64().unwrap_or(0);
    assert!(
        processed_at_kill < RECORDS,
        "the job finished before the kill ({at_kill}); make the records slower"
    );
    assert_eq!(at_kill["status"], "PROCESSING");

    // A new process on the same data directory resumes it.
    let _central = folder.serve("central", &[], &[]);
    api.wait_healthy().await;
    let done = eventually("the job to complete", Duration::from_secs(300), || async {
        let (_, job) = request(&api, "GET", &format!("/api/bulk/{id}"), KEY, None).await;
        (job["status"] == "COMPLETED").then_some(job)
    })
    .await;
    let failing = (0..RECORDS).filter(|n| n % 97 == 0).count() as u64;
    assert_eq!(
        (
            &done["total"],
            &done["processed"],
            &done["succeeded"],
            &done["failed"]
        ),
        (
            &json!(RECORDS),
            &json!(RECORDS),
            &json!(RECORDS - failing),
            &json!(failing)
        ),
        "{done}"
    );
    eprintln!("bulk: killed at {processed_at_kill} of {RECORDS}; completed after the restart");

    // Per-record results: exactly the failing records, with the error of each.
    let (status, failed) = request(
        &api,
        "GET",
        &format!("/api/bulk/{id}/results?status=failed&limit=1000"),
        KEY,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let failed = failed["results"].as_array().expect("results").clone();
    let indexes: Vec<u64> = failed.iter().filter_map(|r| r["index"].as_u64()).collect();
    let expected: Vec<u64> = (0..RECORDS).filter(|n| n % 97 == 0).collect();
    assert_eq!(indexes, expected);
    assert_eq!(failed[0]["error"]["code"], "script_error");
    assert_eq!(failed[0]["error"]["httpStatusCode"], 500);
    let (_, ok) = request(
        &api,
        "GET",
        &format!("/api/bulk/{id}/results?status=succeeded&offset=2&limit=2"),
        KEY,
        None,
    )
    .await;
    assert_eq!(
        ok["results"],
        json!([
            { "index": 3, "status": "succeeded", "result": 3 },
            { "index": 4, "status": "succeeded", "result": 4 }
        ])
    );

    // Another caller cannot see the job; a wrong status filter is a 400.
    let (status, body) = request(&api, "GET", &format!("/api/bulk/{id}"), OTHER, None).await;
    assert_eq!((status, &body["code"]), (404, &json!("unknown_job")));
    let (status, _) = request(
        &api,
        "GET",
        &format!("/api/bulk/{id}/results?status=maybe"),
        KEY,
        None,
    )
    .await;
    assert_eq!(status, 400);

    // Abort: the rest of the records do not run.
    let (_, job) = request(&api, "POST", "/api/bulk/Divide", KEY, Some(records())).await;
    let second = job["id"].as_str().expect("id").to_owned();
    let (status, aborted) = request(
        &api,
        "POST",
        &format!("/api/bulk/{second}/abort"),
        KEY,
        None,
    )
    .await;
    assert_eq!(
        (status, &aborted["status"]),
        (200, &json!("ABORTED")),
        "{aborted}"
    );
    let (_, later) = request(&api, "GET", &format!("/api/bulk/{second}"), KEY, None).await;
    assert_eq!(later["status"], "ABORTED");
    assert!(later["processed"].as_u64() < Some(RECORDS));

    // Bad submissions.
    let (status, body) =
        request(&api, "POST", "/api/bulk/Divide", KEY, Some("[1, 2]".into())).await;
    assert_eq!((status, &body["code"]), (400, &json!("invalid_body")));
    let (status, body) = request(
        &api,
        "POST",
        "/api/bulk/Divide",
        KEY,
        Some("{\"n\": 1}\n{oops\n".into()),
    )
    .await;
    assert_eq!((status, &body["code"]), (400, &json!("invalid_json")));
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("line 2")),
        "{body}"
    );
    let (status, _) = request(&api, "POST", "/api/bulk/Nope", KEY, Some("[{}]".into())).await;
    assert_eq!(status, 404);

    // The command line: a small job with a progress bar, exit 0 when completed.
    let file = folder.dir.path().join("small.jsonl");
    let small: String = (1..=50)
        .map(|n| json!({ "n": n, "d": 1 }).to_string() + "\n")
        .collect();
    std::fs::write(&file, small).expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_scl"))
        .args(["bulk", "submit"])
        .arg(&file)
        .args(["--method", "Divide", "--url", &api.base])
        .env("SCL_API_KEY", KEY)
        .output()
        .expect("scl bulk submit");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        text.contains("COMPLETED: 50 succeeded, 0 failed of 50"),
        "{text}"
    );
}
