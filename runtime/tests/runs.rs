//! The execution log (issue 10, seed 004 stream A) with central and a site as
//! real processes: every run — SUCCESS, FAILURE, TIMEOUT, LIMIT, on central
//! and on the site — leaves one row with its counters, error and log lines,
//! queryable over the admin API (central's own log and, with `node=`, the
//! site's) and with `scl runs` from the data directory.

mod process_support;

use std::time::Duration;

use process_support::{Api, Folder, api_keys, eventually, free_port, nodes};
use serde_json::{Value, json};

const KEY: &str = "scl_runs_test_key";
const ADMIN: &str = "scl_runs_admin_key";

fn deployment(central: u16, site: u16) -> String {
    let admin = scl_runtime::keys::sha256_hex(ADMIN);
    nodes(Some(central), &[("plant-a", site)])
        + &api_keys(&[("erp", KEY)])
        + &format!(
            r#"
[execution_log]
retention_days = 3
max_log_lines = 2

[databases.Central]
driver = "sqlite"
url = "sqlite://central.db"

[templates.Pump.attributes]
Speed = {{ type = "float", default = 10.0 }}

[templates.Pump.scripts]
Work = {{ file = "scripts/work.scl", kind = "instance" }}

[[instance]]
code = "PUMP-1"
template = "Pump"
site = "plant-a"

[admin_keys.ops]
sha256 = "{admin}"

[api_methods.Store]
script = "scripts/store.scl"
approved_keys = ["erp"]

[api_methods.Work]
script = "scripts/api_work.scl"
approved_keys = ["erp"]

[api_methods.Divide]
script = "scripts/divide.scl"
approved_keys = ["erp"]

[api_methods.Spin]
script = "scripts/spin.scl"
approved_keys = ["erp"]
timeout_s = 1

[api_methods.Deep]
script = "scripts/deep.scl"
approved_keys = ["erp"]
"#
        )
}

const SCRIPTS: &[(&str, &str)] = &[
    (
        "scripts/store.scl",
        "fn main(n: int) -> int {\n    let db = Database.Connection(\"Central\");\n    db.Execute(\"CREATE TABLE IF NOT EXISTS t (n INTEGER)\", []);\n    db.Execute(\"INSERT INTO t (n) VALUES (@p1), (@p2)\", [n, n + 1]);\n    Log.Info(\"stored ${n}\");\n    Log.Warn(\"second line\");\n    Log.Info(\"third line is not kept\");\n    return db.Scalar(\"SELECT count(*) FROM t\", []) as int;\n}\n",
    ),
    (
        "scripts/api_work.scl",
        "fn main(by: float) -> json {\n    return Route.To(\"PUMP-1\").Call(\"Work\", { by: by });\n}\n",
    ),
    (
        "scripts/work.scl",
        "fn main(by: float) -> float {\n    Log.Info(\"working by ${by}\");\n    return (Attributes.Get(\"Speed\") as float) / by;\n}\n",
    ),
    (
        "scripts/divide.scl",
        "fn main(d: int) -> int {\n    return 10 / d;\n}\n",
    ),
    (
        "scripts/spin.scl",
        "fn main() -> int {\n    var i = 0;\n    while true {\n        i += 1;\n    }\n    return i;\n}\n",
    ),
    (
        "scripts/deep.scl",
        "fn down(n: int) -> int {\n    return down(n + 1) + 1;\n}\n\nfn main() -> int {\n    return down(0);\n}\n",
    ),
];

async fn admin_runs(api: &Api, query: &str, key: &str) -> (u16, Value) {
    let response = api
        .http
        .get(format!("{}/admin/runs?{query}", api.base))
        .header("X-Admin-Key", key)
        .send()
        .await
        .expect("GET /admin/runs");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn by_script<'a>(runs: &'a Value, script: &str) -> Vec<&'a Value> {
    runs["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|run| run["script"] == script)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_run_leaves_a_row_on_its_node() {
    let (central_port, site_port) = (free_port(), free_port());
    let folder = Folder::new(&deployment(central_port, site_port), SCRIPTS);
    let mut site = folder.serve("site:plant-a", &[], &[]);
    let mut central = folder.serve("central", &[], &[]);
    let api = Api::new(format!("http://127.0.0.1:{central_port}"));
    api.wait_healthy().await;
    let answer = eventually(
        "the site to run the deployment",
        Duration::from_secs(60),
        || async {
            let answer = api
                .try_call("Work", Some(KEY), &json!({ "by": 2.0 }))
                .await
                .ok()?;
            (answer.0 == 200).then_some(answer)
        },
    )
    .await;
    assert_eq!(answer.1, json!(5.0));
    assert_eq!(
        api.call("Store", Some(KEY), json!({ "n": 7 })).await,
        (200, json!(2))
    );
    assert_eq!(
        api.call("Divide", Some(KEY), json!({ "d": 0 })).await.0,
        500
    );
    assert_eq!(api.call("Spin", Some(KEY), json!({})).await.0, 500);
    assert_eq!(api.call("Deep", Some(KEY), json!({})).await.0, 500);
    // A second run on the site.
    assert_eq!(
        api.call("Work", Some(KEY), json!({ "by": 4.0 })).await,
        (200, json!(2.5))
    );

    // Central's rows (the writer commits in the background: poll).
    let runs = eventually("central's runs", Duration::from_secs(30), || async {
        let (status, runs) = admin_runs(&api, "limit=50", ADMIN).await;
        assert_eq!(status, 200, "{runs}");
        let worked = by_script(&runs, "Work")
            .iter()
            .filter(|r| r["status"] == "SUCCESS")
            .count();
        (by_script(&runs, "Deep").len() == 1 && worked == 2).then_some(runs)
    })
    .await;
    let store = by_script(&runs, "Store")[0];
    assert_eq!(store["status"], "SUCCESS");
    assert_eq!(
        (&store["node"], &store["kind"], &store["trigger"]),
        (&json!("central"), &json!("api"), &json!("api"))
    );
    assert_eq!(store["queries"], 3);
    assert_eq!(store["dml_rows"], 2);
    assert_eq!(store["logs"], json!(["INFO stored 7", "WARN second line"]));
    assert!(store["duration_ms"].as_f64() > Some(0.0), "{store}");
    assert!(store["cpu_ms"].as_f64() > Some(0.0), "{store}");
    // `time` is not stored; the log derives it from `unix_ms` on reading.
    let unix_ms = store["unix_ms"].as_i64().expect("unix_ms");
    let time = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(unix_ms)
        .expect("in range")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(store["time"], json!(time), "{store}");
    let divide = by_script(&runs, "Divide")[0];
    assert_eq!(divide["status"], "FAILURE");
    assert!(
        divide["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("script/division_by_zero at 2:")),
        "{divide}"
    );
    assert_eq!(by_script(&runs, "Spin")[0]["status"], "TIMEOUT");
    assert_eq!(by_script(&runs, "Deep")[0]["status"], "LIMIT");
    // Work ran twice through to the site (tries before the site was ready failed on central).
    let worked = by_script(&runs, "Work");
    assert_eq!(
        worked.iter().filter(|r| r["status"] == "SUCCESS").count(),
        2,
        "{runs:#}"
    );

    // Filters: status, script, and a time window that excludes everything.
    let (_, failed) = admin_runs(&api, "status=failure", ADMIN).await;
    let failed = failed["runs"].as_array().expect("runs").clone();
    assert!(
        failed.iter().all(|r| r["status"] == "FAILURE"),
        "{failed:?}"
    );
    assert_eq!(failed.iter().filter(|r| r["script"] == "Divide").count(), 1);
    let (_, work) = admin_runs(&api, "script=Work&limit=1", ADMIN).await;
    assert_eq!(work["runs"].as_array().map(Vec::len), Some(1));
    let (_, none) = admin_runs(&api, "until=2000-01-01T00:00:00Z", ADMIN).await;
    assert_eq!(none["runs"], json!([]));
    // The site's rows, through central.
    let site_runs = eventually("the site's runs", Duration::from_secs(30), || async {
        let (status, runs) = admin_runs(&api, "node=plant-a&script=Work", ADMIN).await;
        assert_eq!(status, 200, "{runs}");
        (runs["runs"].as_array().map(Vec::len) == Some(2)).then_some(runs)
    })
    .await;
    let newest = &site_runs["runs"][0];
    assert_eq!(
        (
            &newest["node"],
            &newest["kind"],
            &newest["trigger"],
            &newest["instance"]
        ),
        (
            &json!("plant-a"),
            &json!("instance"),
            &json!("call"),
            &json!("PUMP-1")
        )
    );
    assert_eq!(newest["logs"], json!(["INFO working by 4.0"]));

    // Refusals: an API key is not an admin key; bad queries and nodes are 400.
    assert_eq!(admin_runs(&api, "", KEY).await.0, 401);
    let (status, body) = admin_runs(&api, "status=MAYBE", ADMIN).await;
    assert_eq!((status, &body["code"]), (400, &json!("invalid_query")));
    let (status, body) = admin_runs(&api, "node=plant-z", ADMIN).await;
    assert_eq!((status, &body["code"]), (400, &json!("invalid_query")));

    // `scl runs` reads the same rows from the data directories.
    central.stop();
    site.stop();
    let config = folder.config();
    let config = config.to_string_lossy();
    let output = folder.scl(&["runs", "--config", &config, "--status", "TIMEOUT"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("TIMEOUT") && text.contains("api Spin"),
        "{text}"
    );
    let output = folder.scl(&[
        "runs", "--config", &config, "--site", "plant-a", "--format", "json",
    ]);
    let rows: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter()
            .all(|row| row["script"] == "Work" && row["status"] == "SUCCESS")
    );
    let output = folder.scl(&["runs", "--config", &config, "--status", "nope"]);
    assert_eq!(output.status.code(), Some(2));
}
