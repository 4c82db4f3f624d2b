//! The site runtime as real processes: `scl serve --role site:NAME` for two
//! sites of one deployment (three instances), driven over the internal API
//! with the protocol's client, restarted, redeployed with `scl deploy`, and
//! inspected with `scl events`. Waits poll the real state with a deadline;
//! nothing sleeps for a fixed time to "let things happen".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use scl_runtime::protocol::SiteClient;
use serde_json::{Value, json};

const TOKEN: &str = "site-test-token";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Plant {
    dir: tempfile::TempDir,
    ports: [u16; 2],
}

const TEMPLATE_SCRIPTS: &[(&str, &str)] = &[
    (
        "scripts/tick.scl",
        "fn main() -> void {\n    let n = Attributes.Get(\"Ticks\") as int;\n    Attributes.Set(\"Ticks\", n + 1);\n}\n",
    ),
    (
        "scripts/on_speed.scl",
        "fn main() -> void {\n    Attributes.Set(\"LastSpeed\", Attributes.Get(\"Speed\"));\n}\n",
    ),
    (
        "scripts/increment.scl",
        "fn main(by: int) -> int {\n    let n = Attributes.Get(\"Count\") as int;\n    Attributes.Set(\"Count\", n + by);\n    return n + by;\n}\n",
    ),
    (
        "scripts/fail.scl",
        "fn main(d: int) -> int {\n    return 10 / d;\n}\n",
    ),
    (
        "scripts/version.scl",
        "fn main() -> string {\n    return \"v1 ${Instance.Code()} ${Shared.Call(\"Twice\", {x: 21})}\";\n}\n",
    ),
    (
        "scripts/high_temp.scl",
        "fn main(alarm: string, state: string) -> void {\n    Attributes.Set(\"AlarmState\", \"${alarm}:${state}\");\n}\n",
    ),
    (
        "scripts/twice.scl",
        "fn main(x: int) -> int {\n    return x * 2;\n}\n",
    ),
];

impl Plant {
    fn new() -> Plant {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = [free_port(), free_port()];
        for (path, text) in TEMPLATE_SCRIPTS {
            write(&dir.path().join(path), text);
        }
        write(&dir.path().join("deploy.toml"), &deployment(ports));
        Plant { dir, ports }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("deploy.toml")
    }

    fn start(&self, site: &str) -> Node {
        let child = Command::new(env!("CARGO_BIN_EXE_scl"))
            .args(["serve", "--config"])
            .arg(self.config())
            .args(["--role", &format!("site:{site}")])
            .env("SCL_SITE_TOKEN", TOKEN)
            .env("SCL_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("scl serve starts");
        let port = if site == "plant-a" {
            self.ports[0]
        } else {
            self.ports[1]
        };
        let client = SiteClient::new(
            site,
            &format!("http://127.0.0.1:{port}"),
            TOKEN,
            Duration::from_secs(10),
        )
        .expect("client");
        let node = Node { child, client };
        node.wait_ready();
        node
    }

    fn scl(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_scl"))
            .args(args)
            .env("SCL_SITE_TOKEN", TOKEN)
            .output()
            .expect("scl runs")
    }
}

fn deployment(ports: [u16; 2]) -> String {
    format!(
        r#"data_dir = "./data"

[[site]]
name = "plant-a"
listen = "127.0.0.1:{a}"
url = "http://127.0.0.1:{a}"
token_env = "SCL_SITE_TOKEN"

[[site]]
name = "plant-b"
listen = "127.0.0.1:{b}"
url = "http://127.0.0.1:{b}"
token_env = "SCL_SITE_TOKEN"

[templates.Pump.attributes]
Speed      = {{ type = "float", default = 0.0 }}
LastSpeed  = {{ type = "float", default = 0.0 }}
Ticks      = {{ type = "int", default = 0 }}
Count      = {{ type = "int", default = 0 }}
Temp       = {{ type = "float", default = 20.0 }}
AlarmState = {{ type = "string", default = "none" }}

[templates.Pump.scripts]
Tick      = {{ file = "scripts/tick.scl", kind = "instance", every_s = 1 }}
OnSpeed   = {{ file = "scripts/on_speed.scl", kind = "instance", on_change = ["Speed"] }}
Increment = {{ file = "scripts/increment.scl", kind = "instance" }}
Fail      = {{ file = "scripts/fail.scl", kind = "instance" }}
Version   = {{ file = "scripts/version.scl", kind = "instance" }}
HighTemp  = {{ file = "scripts/high_temp.scl", kind = "alarm", when = "Temp > 80.0" }}

[shared_scripts]
Twice = "scripts/twice.scl"

[[instance]]
code = "P-1"
template = "Pump"
site = "plant-a"
attributes = {{ Speed = 1450.0 }}

[[instance]]
code = "P-2"
template = "Pump"
site = "plant-a"

[[instance]]
code = "P-3"
template = "Pump"
site = "plant-b"
"#,
        a = ports[0],
        b = ports[1]
    )
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

struct Node {
    child: Child,
    client: SiteClient,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

impl Node {
    fn wait_ready(&self) {
        let rt = runtime();
        let deadline = Instant::now() + Duration::from_secs(60);
        while rt.block_on(self.client.bundle_version()).is_err() {
            assert!(Instant::now() < deadline, "site did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn call(&self, instance: &str, script: &str, params: Value) -> Result<Value, String> {
        runtime()
            .block_on(self.client.call(instance, script, params, None))
            .map_err(|e| format!("{}/{}/{:?}: {}", e.kind, e.code, e.status, e.message))
    }

    fn get(&self, instance: &str, names: &[&str]) -> BTreeMap<String, Value> {
        runtime()
            .block_on(self.client.get_attributes(
                instance,
                names.iter().map(|n| (*n).to_owned()).collect(),
                None,
            ))
            .expect("get attributes")
    }

    fn set(&self, instance: &str, values: Value) -> Result<(), String> {
        let values = values
            .as_object()
            .expect("object")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        runtime()
            .block_on(self.client.set_attributes(instance, values, None))
            .map_err(|e| format!("{}/{}: {}", e.kind, e.code, e.message))
    }

    /// Polls an attribute until `ok` holds (or fails after 30 s).
    fn await_attribute(&self, instance: &str, name: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self
                .get(instance, &[name])
                .remove(name)
                .unwrap_or(Value::Null);
            if ok(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{instance}.{name} stayed {value}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn stop(mut self) {
        // SIGTERM: a graceful stop.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "site exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "site did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_sites_three_instances_triggers_ordering_persistence_and_redeploy() {
    let plant = Plant::new();
    let a = plant.start("plant-a");
    let b = plant.start("plant-b");

    // Instances live only on their own site.
    assert!(
        a.call("P-3", "Increment", json!({"by": 1}))
            .is_err_and(|e| e.starts_with("not_found"))
    );
    assert_eq!(b.call("P-3", "Increment", json!({"by": 5})), Ok(json!(5)));

    // Interval trigger (every 1 s) fires on every instance of the site.
    a.await_attribute("P-1", "Ticks", |v| v.as_i64().is_some_and(|n| n >= 2));
    a.await_attribute("P-2", "Ticks", |v| v.as_i64().is_some_and(|n| n >= 1));

    // On-change trigger.
    a.set("P-1", json!({"Speed": 1200.5})).expect("set");
    a.await_attribute("P-1", "LastSpeed", |v| v == &json!(1200.5));

    // Alarm: condition over attributes becomes true → the alarm script runs.
    a.set("P-2", json!({"Temp": 95.0})).expect("set");
    a.await_attribute("P-2", "AlarmState", |v| v == &json!("HighTemp:raised"));
    a.set("P-2", json!({"Temp": 50})).expect("set");
    a.await_attribute("P-2", "AlarmState", |v| v == &json!("HighTemp:cleared"));

    // Type checks against the template; all-or-nothing batch.
    let refused = a.set("P-1", json!({"Speed": 1.0, "Count": "many"}));
    assert!(refused.is_err_and(|e| e.contains("Count")));
    assert_eq!(a.get("P-1", &["Speed"])["Speed"], json!(1200.5));

    // Per-instance ordering: 40 concurrent read-modify-write runs lose nothing.
    let threads: Vec<_> = (0..40)
        .map(|_| {
            let client = a.client.clone();
            std::thread::spawn(move || {
                runtime()
                    .block_on(client.call("P-1", "Increment", json!({"by": 1}), None))
                    .expect("increment")
            })
        })
        .collect();
    let mut results: Vec<i64> = threads
        .into_iter()
        .map(|t| t.join().expect("thread").as_i64().expect("int"))
        .collect();
    results.sort_unstable();
    assert_eq!(
        results,
        (1..=40).collect::<Vec<i64>>(),
        "each run saw the previous one"
    );

    // A failing script is an error to the caller, logged, and stops nothing.
    let failed = a
        .call("P-2", "Fail", json!({"d": 0}))
        .expect_err("division by zero");
    assert!(
        failed.starts_with("script/division_by_zero/Some(500)"),
        "{failed}"
    );
    let bad_params = a
        .call("P-2", "Fail", json!({"d": "x"}))
        .expect_err("mistyped");
    assert!(
        bad_params.starts_with("type/invalid_parameter/Some(400)"),
        "{bad_params}"
    );
    assert_eq!(a.call("P-2", "Fail", json!({"d": 5})), Ok(json!(2)));
    assert_eq!(a.call("P-1", "Version", json!({})), Ok(json!("v1 P-1 42")));

    // Redeploy a changed script without a restart.
    write(
        &plant.dir.path().join("scripts/version.scl"),
        "fn main() -> string {\n    return \"v2 ${Instance.Code()}\";\n}\n",
    );
    let deployed = plant.scl(&[
        "deploy",
        "--config",
        plant.config().to_str().expect("utf-8"),
    ]);
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    assert_eq!(a.call("P-1", "Version", json!({})), Ok(json!("v2 P-1")));
    assert_eq!(b.call("P-3", "Version", json!({})), Ok(json!("v2 P-3")));

    // A deployment whose script does not compile is refused; the running one stays.
    write(
        &plant.dir.path().join("scripts/version.scl"),
        "fn main() -> string {\n    return 1 +;\n}\n",
    );
    let refused = plant.scl(&[
        "deploy",
        "--config",
        plant.config().to_str().expect("utf-8"),
    ]);
    assert_eq!(refused.status.code(), Some(1));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("scripts/version.scl does not compile"),
        "{message}"
    );
    assert_eq!(a.call("P-1", "Version", json!({})), Ok(json!("v2 P-1")));

    // Attribute values survive a restart; the site restarts from the bundle it
    // accepted (v2), not from the (now broken) file.
    let count = a.get("P-1", &["Count"])["Count"].clone();
    a.stop();
    let a = plant.start("plant-a");
    assert_eq!(a.get("P-1", &["Count", "Speed"])["Count"], count);
    assert_eq!(a.get("P-1", &["Speed"])["Speed"], json!(1200.5));
    assert_eq!(a.call("P-1", "Version", json!({})), Ok(json!("v2 P-1")));
    a.stop();
    b.stop();

    // The event log, read with `scl events` while the node is stopped.
    let config = plant.config();
    let config = config.to_str().expect("utf-8");
    let events = plant.scl(&[
        "events", "--config", config, "--site", "plant-a", "--limit", "1000",
    ]);
    assert!(
        events.status.success(),
        "{}",
        String::from_utf8_lossy(&events.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&events.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let kinds: Vec<&str> = lines.iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in [
        "script_failed",
        "deployed",
        "deploy_refused",
        "started",
        "stopped",
    ] {
        assert!(kinds.contains(&kind), "no `{kind}` event in {kinds:?}");
    }
    let failure = lines
        .iter()
        .find(|e| e["kind"] == "script_failed")
        .expect("failure event");
    assert_eq!(failure["instance"], "P-2");
    assert_eq!(failure["script"], "Fail");
    assert!(
        failure["message"]
            .as_str()
            .is_some_and(|m| m.contains("division_by_zero"))
    );
}

#[test]
fn a_bad_deployment_file_is_refused_with_its_position() {
    let plant = Plant::new();
    let config = plant.config();
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(
        &config,
        text.replace(
            "template = \"Pump\"\nsite = \"plant-b\"",
            "template = \"Pmup\"\nsite = \"plant-b\"",
        ),
    )
    .expect("write");
    let output = plant.scl(&[
        "serve",
        "--config",
        config.to_str().expect("utf-8"),
        "--role",
        "site:plant-a",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("deploy.toml:"), "{message}");
    assert!(message.contains("did you mean `Pump`"), "{message}");
}
