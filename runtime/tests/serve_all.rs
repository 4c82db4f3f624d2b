//! The embedded default, as the README's first command runs it: `scl serve`
//! of the bundled example plant (central and one site in one process, SQLite
//! as the historian, no other server), driven through the public API. This is
//! the thin path end to end: inbound API → api script → `Route.To` → the
//! site's instance script → the answer.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

#[test]
fn the_example_plant_answers_through_central_and_its_site() {
    let dir = tempfile::tempdir().expect("dir");
    let plant = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plant");
    copy_dir(&plant, dir.path());
    // The example's fixed ports may be taken on a shared machine: move them.
    let (central, site) = (free_port(), free_port());
    let config = dir.path().join("deploy.toml");
    let text = std::fs::read_to_string(&config)
        .expect("read")
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{central}"))
        .replace("127.0.0.1:9101", &format!("127.0.0.1:{site}"));
    std::fs::write(&config, text).expect("write");

    // One thread serving HTTP for central and the site together (what half of a
    // 2-core machine's cores gives by default, stated so every machine runs it).
    let mut child = Command::new(env!("CARGO_BIN_EXE_scl"))
        .args(["serve", "--io-threads", "1", "--config"])
        .arg(&config)
        .env_remove("SCL_SITE_TOKEN")
        .env("SCL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("scl serve");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let http = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{central}/api/GetPumpStatus");
    let call = |body: Value, key: &str| {
        rt.block_on(async {
            let response = http
                .post(&api)
                .header("X-API-Key", key)
                .json(&body)
                .send()
                .await?;
            let status = response.status().as_u16();
            let body: Value = response.json().await?;
            Ok::<_, reqwest::Error>((status, body))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        match call(
            json!({"pumpCode": "PUMP-001", "includeAlarms": true}),
            "scl_example-plant-key",
        ) {
            Ok(answer) if answer.0 != 500 && answer.0 != 503 => break answer,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("central never answered: {other:?}"),
        }
    };
    assert_eq!(
        answer,
        (
            200,
            json!({"code": "PUMP-001", "running": false, "speed": 1450.0, "alarms": []})
        )
    );
    let (status, body) = call(
        json!({"pumpCode": "PUMP-404", "includeAlarms": false}),
        "scl_example-plant-key",
    )
    .expect("answer");
    assert_eq!(status, 500, "{body}");
    assert!(
        body["code"].is_string() && body["error"].is_string(),
        "{body}"
    );
    let (status, _) = call(
        json!({"pumpCode": "PUMP-001", "includeAlarms": false}),
        "wrong-key",
    )
    .expect("answer");
    assert_eq!(status, 401);

    let health = rt
        .block_on(async {
            reqwest::get(format!("http://127.0.0.1:{site}/health"))
                .await?
                .json::<Value>()
                .await
        })
        .expect("site health");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["instances"], 2);

    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(status.success(), "scl serve exited with {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "scl serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_refuses_zero_io_threads_before_starting() {
    let output = Command::new(env!("CARGO_BIN_EXE_scl"))
        .args(["serve", "--config", "deploy.toml", "--io-threads", "0"])
        .output()
        .expect("scl serve");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--io-threads") && stderr.contains("0"),
        "{stderr}"
    );
}
