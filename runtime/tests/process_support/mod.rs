//! Shared by the tests that run SCL as real processes: a deployment folder,
//! `scl serve` nodes (central and sites) started, stopped and killed, and an
//! HTTP client for the inbound API. Waits poll real state with a deadline.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SITE_TOKEN: &str = "e2e-site-token";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, text).expect("write");
}

/// The head of a test deployment: `data_dir`, `[central]` listening on
/// `central` (when given) and one `[[site]]` per `(name, port)`, all sharing
/// [`SITE_TOKEN`] through `SCL_SITE_TOKEN`.
pub fn nodes(central: Option<u16>, sites: &[(&str, u16)]) -> String {
    let mut text = String::from("data_dir = \"./data\"\n");
    if let Some(port) = central {
        text.push_str(&format!("\n[central]\nlisten = \"127.0.0.1:{port}\"\n"));
    }
    for (name, port) in sites {
        text.push_str(&format!(
            "\n[[site]]\nname = \"{name}\"\nlisten = \"127.0.0.1:{port}\"\nurl = \"http://127.0.0.1:{port}\"\ntoken_env = \"SCL_SITE_TOKEN\"\n"
        ));
    }
    text
}

/// `[api_keys.NAME]` sections with the hash of each `(name, key)`.
pub fn api_keys(keys: &[(&str, &str)]) -> String {
    keys.iter()
        .map(|(name, key)| {
            format!(
                "\n[api_keys.{name}]\nsha256 = \"{}\"\n",
                scl_runtime::keys::sha256_hex(key)
            )
        })
        .collect()
}

/// The value of a variable `tests/run.sh` exports when it starts a server.
pub fn server_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!("start the servers with tests/run.sh: {name} is unset"),
    }
}

/// A deployment folder: `deploy.toml` plus script files.
pub struct Folder {
    pub dir: tempfile::TempDir,
}

impl Folder {
    pub fn new(deployment: &str, scripts: &[(&str, &str)]) -> Folder {
        let dir = tempfile::tempdir().expect("temp dir");
        write(&dir.path().join("deploy.toml"), deployment);
        for (path, text) in scripts {
            write(&dir.path().join(path), text);
        }
        Folder { dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("deploy.toml")
    }

    /// Starts `scl serve --role ROLE` with `extra` arguments and variables.
    pub fn serve(&self, role: &str, extra: &[&str], env: &[(&str, &str)]) -> Node {
        let log = self
            .dir
            .path()
            .join(format!("{}-{}.log", role.replace(':', "-"), free_port()));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_scl"));
        command
            .args(["serve", "--config"])
            .arg(self.config())
            .args(["--role", role])
            .args(extra)
            .env("SCL_SITE_TOKEN", SITE_TOKEN)
            .env("SCL_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn().expect("scl serve starts");
        Node {
            child: Some(child),
            role: role.to_owned(),
            log,
        }
    }

    /// Runs an `scl` command in the folder's environment.
    pub fn scl(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_scl"))
            .args(args)
            .env("SCL_SITE_TOKEN", SITE_TOKEN)
            .output()
            .expect("scl runs")
    }
}

/// One `scl serve` process; killed when dropped.
pub struct Node {
    child: Option<Child>,
    pub role: String,
    pub log: PathBuf,
}

impl Node {
    /// `kill -9`: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a graceful exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not stop within 30 s", self.role);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to end on its own; its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            assert!(Instant::now() < deadline, "{} is still running", self.role);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The inbound API of one central node (or of a load balancer in front).
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: String) -> Api {
        Api {
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    /// `POST /api/{method}`: the status and the JSON body (Null when none).
    pub async fn call(&self, method: &str, key: Option<&str>, params: Value) -> (u16, Value) {
        match self.try_call(method, key, &params).await {
            Ok(answer) => answer,
            Err(error) => panic!("POST /api/{method}: {error}"),
        }
    }

    pub async fn try_call(
        &self,
        method: &str,
        key: Option<&str>,
        params: &Value,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut request = self
            .http
            .post(format!("{}/api/{method}", self.base))
            .json(params);
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// `GET /api/deliveries/{id}`: the status and the JSON body.
    pub async fn delivery(&self, id: &str, key: Option<&str>) -> (u16, Value) {
        let mut request = self.http.get(format!("{}/api/deliveries/{id}", self.base));
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        let response = request.send().await.expect("GET /api/deliveries");
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("body");
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// Waits until `/health` answers 200.
    pub async fn wait_healthy(&self) {
        let url = format!("{}/health", self.base);
        eventually(&url, Duration::from_secs(60), || async {
            match self.http.get(&url).send().await {
                Ok(response) if response.status().is_success() => Some(()),
                _ => None,
            }
        })
        .await
    }
}
