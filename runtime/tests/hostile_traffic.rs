//! Hostile inbound traffic against a real `scl serve` process (central and
//! one site in one process, the embedded default), and a check that no
//! configured secret ever reaches its output or its stores.
//!
//! One process serves every part of the test, so what one attack leaves
//! behind (a stuck thread, a held connection, a flood of log lines) would
//! show in the next. The process runs with `SCL_LOG=debug`, the most a
//! operator can turn on, and its stdout and stderr go to files the test
//! reads at the end.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use scl_runtime::keys::sha256_hex;
use serde_json::{Value, json};

const API_KEY: &str = "scl_hostile-test-key-7f3a9c1e5b";
const ADMIN_KEY: &str = "scl_hostile-admin-key-2d8e4b6a0c";
/// Secrets given through the environment, as in production.
const SITE_TOKEN: &str = "site-token-S3CR3T-41c7e2";
const SMTP_PASSWORD: &str = "smtp-pw-S3CR3T-9b2d51";
const MES_KEY: &str = "mes-key-S3CR3T-70aa3f";
const DB_PASSWORD: &str = "db-pw-S3CR3T-e5c918";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

const SCRIPTS: &[(&str, &str)] = &[
    (
        "api/echo.scl",
        "fn main(name: string, count: int) -> { name: string, count: int } {\n    return { name: name, count: count };\n}\n",
    ),
    (
        "api/fail.scl",
        "fn main() -> int {\n    throw error(\"boom\", \"cannot open /srv/secret/path.db: SELECT * FROM users WHERE pw = 'x'\");\n}\n",
    ),
    (
        "api/spin.scl",
        "fn main() -> int {\n    var i = 0;\n    while true {\n        i += 1;\n    }\n    return i;\n}\n",
    ),
    (
        "api/grow.scl",
        "fn main() -> int {\n    var s = \"ab\";\n    while true {\n        s = s + s;\n    }\n    return s.len();\n}\n",
    ),
    (
        "api/db.scl",
        "fn main() -> int {\n    return Database.Connection(\"Plant\").Scalar(\"SELECT 1\", []) as int;\n}\n",
    ),
    (
        "site/outbound.scl",
        "fn main() -> void {\n    ExternalSystem.CachedCall(\"MES\", \"Post\", { value: 1 });\n    Notify.To(\"Ops\").Send(\"subject\", \"body\");\n    try {\n        Database.Connection(\"Plant\").Execute(\"INSERT INTO t VALUES (1)\", []);\n    } catch e {\n        Log.Warn(\"database: ${e.message}\");\n        Database.CachedWrite(\"Plant\", \"INSERT INTO t VALUES (1)\", []);\n    }\n    ExternalSystem.Call(\"MES\", \"Post\", { value: 2 });\n}\n",
    ),
];

struct Server {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let site_port = free_port();
        let closed = free_port();
        for (path, text) in SCRIPTS {
            write(&dir.path().join(path), text);
        }
        let deployment = format!(
            r#"data_dir = "./data"

[central]
listen = "127.0.0.1:{port}"
max_body_bytes = 65536
header_read_timeout_s = 1
body_read_timeout_s = 2

[[site]]
name = "plant-a"
listen = "127.0.0.1:{site_port}"
url = "http://127.0.0.1:{site_port}"
token_env = "HOSTILE_SITE_TOKEN"

[smtp]
host = "127.0.0.1"
port = {closed}
tls = "none"
from = "scada@plant.example"
timeout_s = 2
auth = {{ kind = "basic", username = "scada", password_env = "HOSTILE_SMTP_PASSWORD" }}
retry = {{ max_retries = 2, interval_s = 1 }}

[notification_lists]
Ops = ["op@plant.example"]

[external_systems.MES]
base_url = "http://127.0.0.1:{closed}"
timeout_s = 2
auth = {{ kind = "api_key", header = "X-Api-Key", value_env = "HOSTILE_MES_KEY" }}
retry = {{ max_retries = 2, interval_s = 1 }}
methods.Post = {{ http = "POST", path = "/readings" }}

[databases.Plant]
driver = "postgres"
url_env = "HOSTILE_DB_URL"
timeout_s = 2
retry = {{ max_retries = 2, interval_s = 1 }}

[templates.Pump.attributes]
Speed = {{ type = "float", default = 0.0 }}

[templates.Pump.scripts]
Outbound = {{ file = "site/outbound.scl", kind = "instance", every_s = 1 }}

[[instance]]
code = "PUMP-001"
template = "Pump"
site = "plant-a"

[api_keys.erp]
sha256 = "{key}"

[admin_keys.ops]
sha256 = "{admin}"

[api_methods.Echo]
script = "api/echo.scl"
approved_keys = ["erp"]

[api_methods.Fail]
script = "api/fail.scl"
approved_keys = ["erp"]

[api_methods.Spin]
script = "api/spin.scl"
approved_keys = ["erp"]
timeout_s = 1

[api_methods.Grow]
script = "api/grow.scl"
approved_keys = ["erp"]
timeout_s = 20

[api_methods.Db]
script = "api/db.scl"
approved_keys = ["erp"]
"#,
            key = sha256_hex(API_KEY),
            admin = sha256_hex(ADMIN_KEY),
        );
        write(&dir.path().join("deploy.toml"), &deployment);
        let stdout = std::fs::File::create(dir.path().join("stdout.log")).expect("stdout file");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("stderr file");
        let child = Command::new(env!("CARGO_BIN_EXE_scl"))
            .args(["serve", "--config"])
            .arg(dir.path().join("deploy.toml"))
            .env("SCL_LOG", "debug")
            .envs(secret_env())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("scl serve starts");
        let server = Server { dir, child, port };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(answer) =
                self.raw("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                && answer.starts_with("HTTP/1.1 200")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "central did not come up: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        stream
    }

    /// Sends raw bytes and reads the answer until the server closes.
    fn raw(&self, request: &str) -> std::io::Result<String> {
        self.raw_bytes(request.as_bytes())
    }

    fn raw_bytes(&self, request: &[u8]) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(15)))?;
        stream.write_all(request)?;
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        Ok(String::from_utf8_lossy(&answer).into_owned())
    }

    /// POSTs `body` to `/api/{method}`; returns status and the JSON body.
    fn post(&self, method: &str, key: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        let mut request = format!(
            "POST /api/{method} HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        let answer = self.raw_bytes(&request).expect("an answer");
        parse_answer(&answer)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    fn log_bytes(&self) -> u64 {
        ["stdout.log", "stderr.log"]
            .iter()
            .map(|f| std::fs::metadata(self.dir.path().join(f)).map_or(0, |m| m.len()))
            .sum()
    }

    fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().expect("status").is_none(),
            "scl serve died: {}",
            self.stderr()
        );
        let answer = self
            .raw("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .expect("health");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// SIGTERM, and wait for a clean exit.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "scl serve exited with {status}: {}",
                    self.stderr()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "scl serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn secret_env() -> Vec<(&'static str, String)> {
    vec![
        ("HOSTILE_SITE_TOKEN", SITE_TOKEN.to_string()),
        ("HOSTILE_SMTP_PASSWORD", SMTP_PASSWORD.to_string()),
        ("HOSTILE_MES_KEY", MES_KEY.to_string()),
        (
            "HOSTILE_DB_URL",
            format!(
                "postgres://scada:{DB_PASSWORD}@127.0.0.1:{}/plant",
                free_port()
            ),
        ),
    ]
}

fn parse_answer(answer: &str) -> (u16, Value) {
    let status = answer
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // A chunked answer: take the JSON between the first line and the end.
    let body = if answer
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.split_once("\r\n")
            .map_or("", |(_, rest)| rest)
            .rsplit_once("\r\n0\r\n")
            .map_or("", |(b, _)| b)
    } else {
        body
    };
    let value = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, value)
}

fn assert_error(status_and_body: &(u16, Value), status: u16, code: &str) {
    let (got, body) = status_and_body;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["code"], json!(code), "{body}");
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{body}");
}

/// Text that must never be in an answer: the script's own error text,
/// paths, SQL, Rust panics and source locations.
fn assert_no_internals(body: &Value) {
    let text = body.to_string();
    for leak in [
        "/srv",
        "SELECT",
        "secret",
        "panicked",
        ".rs:",
        "backtrace",
        "postgres://",
        DB_PASSWORD,
    ] {
        assert!(!text.contains(leak), "`{leak}` in an answer: {text}");
    }
}

#[test]
fn hostile_traffic_against_a_real_server_and_no_secret_in_any_output() {
    let mut server = Server::start();

    // A good call first: the server works.
    let ok = server.post(
        "Echo",
        API_KEY,
        "application/json",
        br#"{"name":"a","count":1}"#,
    );
    assert_eq!(ok, (200, json!({"name": "a", "count": 1})));

    // Malformed JSON, wrong content types, bodies that are not objects.
    for body in [
        &b"{"[..],
        b"{\"name\":",
        b"\xff\xfe",
        b"nul\0l",
        b"{\"name\":\"a\",\"count\":1}}",
        b"[1,2",
    ] {
        assert_error(
            &server.post("Echo", API_KEY, "application/json", body),
            400,
            "invalid_json",
        );
    }
    assert_error(
        &server.post("Echo", API_KEY, "application/json", b"[1]"),
        400,
        "invalid_body",
    );
    for content_type in [
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
    ] {
        assert_error(
            &server.post("Echo", API_KEY, content_type, br#"{"name":"a","count":1}"#),
            415,
            "unsupported_media_type",
        );
    }

    // Deep nesting: 100,000 `[` and 100,000 `{"a":` are refused, not recursed into.
    let started = Instant::now();
    assert_error(
        &server.post(
            "Echo",
            API_KEY,
            "application/json",
            "[".repeat(100_000).as_bytes(),
        ),
        413,
        "payload_too_large",
    );
    let deep = format!("{{\"name\":{}", "[".repeat(60_000));
    assert_error(
        &server.post("Echo", API_KEY, "application/json", deep.as_bytes()),
        400,
        "invalid_json",
    );
    let deep = "{\"a\":".repeat(12_000);
    assert_error(
        &server.post("Echo", API_KEY, "application/json", deep.as_bytes()),
        400,
        "invalid_json",
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "deep JSON took {:?}",
        started.elapsed()
    );

    // Oversized bodies, declared and chunked.
    let big = format!("{{\"name\":\"{}\",\"count\":1}}", "x".repeat(70_000));
    assert_error(
        &server.post("Echo", API_KEY, "application/json", big.as_bytes()),
        413,
        "payload_too_large",
    );
    let chunk = "x".repeat(40_000);
    let chunked = format!(
        "POST /api/Echo HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{n:x}\r\n{chunk}\r\n{n:x}\r\n{chunk}\r\n0\r\n\r\n",
        n = chunk.len()
    );
    assert_error(
        &parse_answer(&server.raw(&chunked).expect("answer")),
        413,
        "payload_too_large",
    );
    // A Content-Length far larger than the limit: 413 before any body byte
    // is read (the client has sent only its headers).
    let answer = server
        .raw(&format!("POST /api/Echo HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\nConnection: close\r\n\r\n"))
        .expect("answer");
    assert_error(&parse_answer(&answer), 413, "payload_too_large");

    // Unknown methods, verbs, routes and garbage requests.
    assert_error(
        &server.post("NoSuchMethod", API_KEY, "application/json", b"{}"),
        404,
        "unknown_method",
    );
    assert_error(
        &server.post(&"M".repeat(5_000), API_KEY, "application/json", b"{}"),
        404,
        "unknown_method",
    );
    assert_error(
        &server.post("..%2F..%2Fetc%2Fpasswd", API_KEY, "application/json", b"{}"),
        404,
        "unknown_method",
    );
    for verb in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "FOO"] {
        let answer = server
            .raw(&format!("{verb} /api/Echo HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\nConnection: close\r\n\r\n"))
            .expect("answer");
        assert_error(&parse_answer(&answer), 405, "method_not_allowed");
    }
    let answer = server
        .raw("GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("answer");
    assert_error(&parse_answer(&answer), 404, "not_found");
    for garbage in [
        "GARBAGE\r\n\r\n",
        "POST /api/Echo HTTP/9.9\r\n\r\n",
        "POST /api/Echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        "POST /api/Echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "\r\n\r\n\r\n",
    ] {
        let answer = server.raw(garbage).expect("answer");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "{garbage:?} → {answer}"
        );
        assert!(!answer.starts_with("HTTP/1.1 5"), "{answer}");
    }
    // Headers far larger than any real client sends.
    let answer = server
        .raw(&format!(
            "POST /api/Echo HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\n\r\n",
            "j".repeat(1 << 20)
        ))
        .unwrap_or_default();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    server.assert_alive();

    // 500s never carry internals, whatever the script's error said; a
    // runaway script is stopped by its limit and the next call is fine.
    let failed = server.post("Fail", API_KEY, "application/json", b"{}");
    assert_error(&failed, 500, "script_error");
    assert_no_internals(&failed.1);
    let spun = server.post("Spin", API_KEY, "application/json", b"{}");
    assert_error(&spun, 500, "timeout");
    assert_no_internals(&spun.1);
    let grew = server.post("Grow", API_KEY, "application/json", b"{}");
    assert_error(&grew, 500, "limit_exceeded");
    assert_no_internals(&grew.1);
    let db = server.post("Db", API_KEY, "application/json", b"{}");
    assert_eq!(db.0, 500, "{}", db.1);
    assert_no_internals(&db.1);
    assert_eq!(
        server
            .post(
                "Echo",
                API_KEY,
                "application/json",
                br#"{"name":"b","count":2}"#
            )
            .0,
        200
    );

    // Slow clients. Headers sent a byte at a time: the connection is closed
    // once `header_read_timeout_s` (1 s here) has passed, for every one of
    // fifty such clients, while normal calls go on.
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut stream = server.connect();
            stream
                .write_all(b"POST /api/Echo HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .expect("write");
            stream
        })
        .collect();
    assert_eq!(
        server
            .post(
                "Echo",
                API_KEY,
                "application/json",
                br#"{"name":"c","count":3}"#
            )
            .0,
        200
    );
    let mut closed = 0;
    while closed < slow.len() && started.elapsed() < Duration::from_secs(10) {
        closed = 0;
        for stream in &mut slow {
            // Another byte of the header every round; a closed connection
            // fails to take it (or reads as the end of the stream).
            let alive = stream.write_all(b"a").is_ok() && {
                stream.set_nonblocking(true).expect("nonblocking");
                let mut byte = [0u8; 64];
                let read = stream.read(&mut byte);
                stream.set_nonblocking(false).expect("blocking");
                // Nothing to read yet: still open. End of stream, an
                // answer or a reset: closed by the server.
                matches!(read, Err(error) if error.kind() == std::io::ErrorKind::WouldBlock)
            };
            if !alive {
                closed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        closed,
        slow.len(),
        "slow-header clients still connected after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the timeout"
    );
    drop(slow);
    // A body that stops arriving: 408 once `body_read_timeout_s` (2 s) has passed.
    let started = Instant::now();
    let mut stream = server.connect();
    stream
        .write_all(format!("POST /api/Echo HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":").as_bytes())
        .expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert_error(&parse_answer(&answer), 408, "request_timeout");
    assert!(
        started.elapsed() >= Duration::from_millis(1900)
            && started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // An idle connection that never sends a request is closed as well.
    let mut idle = server.connect();
    let started = Instant::now();
    let mut nothing = Vec::new();
    let _ = idle.read_to_end(&mut nothing);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "an idle connection stayed open {:?}",
        started.elapsed()
    );
    server.assert_alive();

    // A thousand bad keys in a row: all 401, quickly, and the logs do not
    // grow with them (4xx answers are not logged).
    let logs_before = server.log_bytes();
    let started = Instant::now();
    // (A connection per request: the server may close a keep-alive
    // connection whose body it did not read, which a 401 never does.)
    for i in 0..1000 {
        let answer = server.post(
            "Echo",
            &format!("scl_wrong-{i:05}"),
            "application/json",
            br#"{"name":"a","count":1}"#,
        );
        assert_error(&answer, 401, "invalid_api_key");
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "1000 bad keys took {took:?}"
    );
    let grown = server.log_bytes() - logs_before;
    assert!(
        grown < 64 * 1024,
        "1000 bad keys grew the logs by {grown} bytes"
    );
    assert_eq!(
        server
            .post(
                "Echo",
                API_KEY,
                "application/json",
                br#"{"name":"d","count":4}"#
            )
            .0,
        200
    );
    server.assert_alive();

    // Let the site's outbound script fail against the closed MES, SMTP and
    // database ports a few times (each failure is logged and recorded).
    std::thread::sleep(Duration::from_secs(3));
    server.assert_alive();
    server.stop();

    // Secrets: not in stdout/stderr, not in the event log or failures log
    // (read with the CLI), not anywhere in the data directory's files.
    let config = server.dir.path().join("deploy.toml");
    let events = Command::new(env!("CARGO_BIN_EXE_scl"))
        .args(["events", "--config"])
        .arg(&config)
        .args(["--site", "plant-a", "--limit", "10000"])
        .output()
        .expect("scl events");
    let failures = Command::new(env!("CARGO_BIN_EXE_scl"))
        .args(["failures", "--config"])
        .arg(&config)
        .args(["--format", "json"])
        .output()
        .expect("scl failures");
    let events_text = String::from_utf8_lossy(&events.stdout).into_owned();
    let failures_text = String::from_utf8_lossy(&failures.stdout).into_owned();
    // The modules holding the secrets were used: the MES call failed (its
    // API key header was built), the email was buffered (SMTP login), and
    // the `Db` method failed against the database URL with its password.
    for kind in ["script_failed", "notification_buffered", "MES.Post"] {
        assert!(
            events_text.contains(kind),
            "no {kind} in the event log: {events_text}"
        );
    }
    assert!(
        failures_text.contains("\"Fail\"") && failures_text.contains("\"Db\""),
        "the failures log has the failed call: {failures_text} {}",
        String::from_utf8_lossy(&failures.stderr)
    );
    let stderr = server.stderr();
    assert!(
        stderr.len() > 1000,
        "the process logged at debug level: {stderr}"
    );
    let mut outputs: Vec<(String, Vec<u8>)> = vec![
        (
            "stdout".into(),
            std::fs::read(server.dir.path().join("stdout.log")).expect("stdout"),
        ),
        ("stderr".into(), stderr.into_bytes()),
        ("scl events".into(), events.stdout.clone()),
        ("scl failures".into(), failures.stdout.clone()),
    ];
    collect_files(&server.dir.path().join("data"), &mut outputs);
    let secrets = [
        SITE_TOKEN,
        SMTP_PASSWORD,
        MES_KEY,
        DB_PASSWORD,
        API_KEY,
        ADMIN_KEY,
    ];
    for (name, bytes) in &outputs {
        for secret in secrets {
            assert!(
                !contains(bytes, secret.as_bytes()),
                "the secret {secret} is in {name}"
            );
        }
    }
}

fn collect_files(folder: &Path, files: &mut Vec<(String, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let path: PathBuf = entry.path();
        if path.is_dir() {
            collect_files(&path, files);
        } else if let Ok(bytes) = std::fs::read(&path) {
            files.push((path.display().to_string(), bytes));
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}
