//! ExternalSystem against a real httpbin under gunicorn (started by `tests/run.sh`): every row
//! of the classification table in both call modes, query versus body encoding, API key and
//! Basic auth reaching the peer, and the per-system timeout. The systems come from a
//! deployment file, read by the real loader, with secrets from (test) environment variables.

mod external_support;

use std::path::Path;
use std::sync::Arc;

use scl_runtime::deployment::Deployment;
use scl_runtime::external::{ExternalRuntime, external_systems};
use scl_runtime::saf::{Saf, SafConfig, Status};
use scl_stdlib::external::{
    CallMode, DeliveryStatus, ErrorCode, ExternalError, ExternalSystemModule, FailureKind,
};
use serde_json::{Value, json};

use external_support::{MemoryEventLog, httpbin_url, refused_port, runtime};

const API_KEY: &str = "test-api-key-7f3a9c";
const PASSWORD: &str = "secret-pw-51d2";

fn env(name: &str) -> Option<String> {
    match name {
        "BIN_KEY" => Some(API_KEY.to_owned()),
        "BIN_PASSWORD" => Some(PASSWORD.to_owned()),
        "WRONG_PASSWORD" => Some("not-the-password".to_owned()),
        _ => None,
    }
}

fn deployment() -> Deployment {
    let url = httpbin_url();
    let refused = refused_port();
    let source = format!(
        r#"
[external_systems.Bin]
base_url = "{url}"
timeout_s = 5
auth = {{ kind = "api_key", header = "X-Api-Key", value_env = "BIN_KEY" }}
retry = {{ max_retries = 3, interval_s = 3600 }}
methods.Status = {{ http = "GET", path = "/status/{{code}}" }}
methods.PostStatus = {{ http = "POST", path = "/status/{{code}}" }}
methods.Get = {{ http = "GET", path = "/anything/orders/{{id}}" }}
methods.Post = {{ http = "POST", path = "/anything/orders/{{id}}" }}
methods.Put = {{ http = "PUT", path = "/anything/orders/{{id}}" }}
methods.Delete = {{ http = "DELETE", path = "/anything/orders" }}
methods.Json = {{ http = "GET", path = "/json" }}
methods.Html = {{ http = "GET", path = "/html" }}

[external_systems.Basic]
base_url = "{url}"
auth = {{ kind = "basic", username = "plant", password_env = "BIN_PASSWORD" }}
methods.Check = {{ http = "GET", path = "/basic-auth/plant/{PASSWORD}" }}

[external_systems.WrongBasic]
base_url = "{url}"
auth = {{ kind = "basic", username = "plant", password_env = "WRONG_PASSWORD" }}
methods.Check = {{ http = "GET", path = "/basic-auth/plant/{PASSWORD}" }}

[external_systems.Slow]
base_url = "{url}"
timeout_s = 1
methods.Delay = {{ http = "GET", path = "/delay/{{seconds}}" }}

[external_systems.Patient]
base_url = "{url}"
timeout_s = 10
methods.Delay = {{ http = "GET", path = "/delay/{{seconds}}" }}

[external_systems.Down]
base_url = "http://127.0.0.1:{refused}"
timeout_s = 2
methods.Post = {{ http = "POST", path = "/x" }}

[external_systems.Unset]
base_url = "{url}"
auth = {{ kind = "api_key", header = "X-Api-Key", value_env = "SCL_TEST_NOT_SET_ANYWHERE" }}
methods.Get = {{ http = "GET", path = "/get" }}
"#
    );
    Deployment::from_source(Path::new("deploy.toml"), source)
        .unwrap_or_else(|errors| panic!("test deployment: {errors:?}"))
}

struct Setup {
    runtime: tokio::runtime::Runtime,
    module: Arc<ExternalSystemModule>,
    saf: Saf,
    events: Arc<MemoryEventLog>,
    problems: Vec<String>,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(dir.path().join("saf"))).unwrap();
    let events = Arc::new(MemoryEventLog::default());
    let external = ExternalRuntime::new(
        runtime.handle().clone(),
        &deployment().file,
        &env,
        saf.clone(),
        events.clone(),
    )
    .unwrap();
    Setup {
        runtime,
        module: external.module,
        saf,
        events,
        problems: external.problems,
        _dir: dir,
    }
}

fn assert_no_secret(error: &ExternalError) {
    let text = format!("{error} {error:?}");
    for secret in [API_KEY, PASSWORD] {
        assert!(!text.contains(secret), "a secret leaked into {text}");
    }
}

/// `(status, expected kind or None for success)`, the classification table of the issue.
const STATUS_ROWS: [(u16, Option<FailureKind>); 9] = [
    (200, None),
    (204, None),
    (400, Some(FailureKind::Permanent)),
    (401, Some(FailureKind::Permanent)),
    (404, Some(FailureKind::Permanent)),
    (408, Some(FailureKind::Transient)),
    (429, Some(FailureKind::Transient)),
    (500, Some(FailureKind::Transient)),
    (503, Some(FailureKind::Transient)),
];

#[test]
fn call_classifies_every_status_of_the_table() {
    let setup = setup();
    for (status, expected) in STATUS_ROWS {
        let result = setup
            .module
            .call("Bin", "Status", &json!({ "code": status }));
        match (expected, result) {
            (None, Ok(value)) => assert_eq!(value, Value::Null, "{status}: empty body is null"),
            (Some(kind), Err(error)) => {
                assert_eq!(error.kind, kind, "{status}: {error}");
                assert_eq!(error.code, ErrorCode::HttpStatus, "{status}");
                assert_eq!(error.status, Some(status));
                assert!(
                    error
                        .message
                        .contains(&format!("Bin.Status: HTTP {status}")),
                    "{error}"
                );
                assert_no_secret(&error);
            }
            (expected, result) => panic!("{status}: expected {expected:?}, got {result:?}"),
        }
    }
    // Only permanent failures reach the event log.
    let logged: Vec<Option<u16>> = setup
        .events
        .events()
        .iter()
        .map(|e| e.error.status)
        .collect();
    assert_eq!(logged, [Some(400), Some(401), Some(404)]);
}

#[test]
fn cached_call_classifies_every_status_of_the_table() {
    let setup = setup();
    for (status, expected) in STATUS_ROWS {
        let result = setup
            .module
            .cached_call("Bin", "PostStatus", &json!({ "code": status }));
        match (expected, result) {
            (None, Ok(delivery)) => assert_eq!(delivery.status, DeliveryStatus::Delivered),
            (Some(FailureKind::Transient), Ok(delivery)) => {
                assert_eq!(delivery.status, DeliveryStatus::Buffered, "{status}");
                let report = setup
                    .saf
                    .status(&delivery.id)
                    .unwrap()
                    .expect("buffered on disk");
                assert_eq!(report.status, Status::Retrying, "{status}");
                assert_eq!(report.attempts, 1, "{status}: the first attempt is counted");
                assert_eq!(report.history[0].status_code, Some(status));
                assert_eq!(report.target, "Bin/PostStatus");
            }
            (Some(FailureKind::Permanent), Err(error)) => {
                assert_eq!(
                    (error.kind, error.status),
                    (FailureKind::Permanent, Some(status))
                );
                assert_no_secret(&error);
            }
            (expected, result) => panic!("{status}: expected {expected:?}, got {result:?}"),
        }
    }
    // Permanent failures are not buffered: only the four transient rows are queued.
    assert_eq!(setup.saf.stats().unwrap().queued, 4);
    let logged: Vec<(CallMode, Option<u16>, bool)> = setup
        .events
        .events()
        .iter()
        .map(|e| (e.mode, e.error.status, e.delivery_id.is_some()))
        .collect();
    assert_eq!(
        logged,
        [
            (CallMode::CachedCall, Some(400), true),
            (CallMode::CachedCall, Some(401), true),
            (CallMode::CachedCall, Some(404), true)
        ]
    );
}

#[test]
fn connection_refused_and_timeout_are_transient_in_both_modes() {
    let setup = setup();
    let refused = setup
        .module
        .call("Down", "Post", &json!({"a": 1}))
        .unwrap_err();
    assert_eq!(
        (refused.kind, refused.code),
        (FailureKind::Transient, ErrorCode::Connection)
    );
    assert!(
        refused.message.starts_with("Down.Post: cannot connect"),
        "{refused}"
    );
    let buffered = setup
        .module
        .cached_call("Down", "Post", &json!({"a": 1}))
        .unwrap();
    assert_eq!(buffered.status, DeliveryStatus::Buffered);

    let timeout = setup
        .module
        .call("Slow", "Delay", &json!({"seconds": 3}))
        .unwrap_err();
    assert_eq!(
        (timeout.kind, timeout.code),
        (FailureKind::Transient, ErrorCode::Timeout)
    );
    assert!(timeout.message.contains("within 1 s"), "{timeout}");
    let buffered = setup
        .module
        .cached_call("Slow", "Delay", &json!({"seconds": 3}))
        .unwrap();
    assert_eq!(buffered.status, DeliveryStatus::Buffered);
    let report = setup.saf.status(&buffered.id).unwrap().unwrap();
    assert!(report.last_error.unwrap().contains("within 1 s"));

    // The timeout belongs to the system: the same endpoint answers within Patient's 10 s.
    let value = setup
        .module
        .call("Patient", "Delay", &json!({"seconds": 2}))
        .unwrap();
    assert!(
        value["url"].as_str().unwrap().ends_with("/delay/2"),
        "{value}"
    );
}

#[test]
fn get_and_delete_send_query_parameters_post_and_put_a_json_body() {
    let setup = setup();
    let get = setup
        .module
        .call(
            "Bin",
            "Get",
            &json!({"id": "A/1 ü", "q": "x y&z", "n": 2, "tags": ["a", "b"]}),
        )
        .unwrap();
    assert_eq!(get["method"], "GET");
    assert_eq!(
        get["args"],
        json!({"q": "x y&z", "n": "2", "tags": ["a", "b"]})
    );
    assert_eq!(get["json"], Value::Null);
    assert_eq!(get["data"], "");
    // httpbin shows the decoded path; the raw encoding is checked with the counting server.
    assert!(
        get["url"]
            .as_str()
            .unwrap()
            .contains("/anything/orders/A/1%20"),
        "{get}"
    );

    let delete = setup
        .module
        .call("Bin", "Delete", &json!({"id": 7}))
        .unwrap();
    assert_eq!(delete["method"], "DELETE");
    assert_eq!(delete["args"], json!({"id": "7"}));

    for method in ["Post", "Put"] {
        let echo = setup
            .module
            .call(
                "Bin",
                method,
                &json!({"id": 5, "asset": "P1", "value": 2.5, "tags": ["x"]}),
            )
            .unwrap();
        assert_eq!(echo["method"], method.to_uppercase());
        assert_eq!(
            echo["json"],
            json!({"asset": "P1", "value": 2.5, "tags": ["x"]})
        );
        assert_eq!(echo["args"], json!({}));
        assert!(
            echo["url"]
                .as_str()
                .unwrap()
                .ends_with("/anything/orders/5")
        );
        assert_eq!(echo["headers"]["Content-Type"], "application/json");
    }
}

#[test]
fn json_responses_are_returned_and_non_json_is_an_error() {
    let setup = setup();
    let value = setup.module.call("Bin", "Json", &json!({})).unwrap();
    assert!(value["slideshow"].is_object(), "{value}");
    let error = setup.module.call("Bin", "Html", &json!({})).unwrap_err();
    assert_eq!(
        (error.kind, error.code),
        (FailureKind::Permanent, ErrorCode::InvalidResponse)
    );
    // A CachedCall discards the response: an HTML answer to a 200 is still delivered.
    let delivery = setup.module.cached_call("Bin", "Html", &json!({})).unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Delivered);
}

#[test]
fn api_key_and_basic_auth_reach_the_peer() {
    let setup = setup();
    let echo = setup.module.call("Bin", "Get", &json!({"id": 1})).unwrap();
    assert_eq!(echo["headers"]["X-Api-Key"], API_KEY);
    assert_eq!(echo["headers"]["Accept"], "application/json");
    assert!(
        echo["headers"]["User-Agent"]
            .as_str()
            .unwrap()
            .starts_with("scl/")
    );

    let basic = setup.module.call("Basic", "Check", &json!({})).unwrap();
    assert_eq!(basic, json!({"authenticated": true, "user": "plant"}));

    let wrong = setup
        .module
        .call("WrongBasic", "Check", &json!({}))
        .unwrap_err();
    assert_eq!(
        (wrong.kind, wrong.status),
        (FailureKind::Permanent, Some(401))
    );
    assert_no_secret(&wrong);
}

#[test]
fn a_system_with_a_missing_secret_fails_permanently_and_is_reported() {
    let setup = setup();
    assert_eq!(setup.problems.len(), 1, "{:?}", setup.problems);
    assert!(setup.problems[0].contains("SCL_TEST_NOT_SET_ANYWHERE"));
    let error = setup.module.call("Unset", "Get", &json!({})).unwrap_err();
    assert_eq!(
        (error.kind, error.code),
        (FailureKind::Permanent, ErrorCode::Configuration)
    );
    assert!(error.message.contains("is not set"), "{error}");
}

#[test]
fn dry_run_describes_the_exact_request_with_secrets_masked() {
    let setup = setup();
    let text = setup
        .module
        .describe(CallMode::Call, "Basic", "Check", &json!({"x": 1}))
        .unwrap()
        .to_string();
    let url = httpbin_url();
    assert!(
        text.starts_with(&format!("GET {url}/basic-auth/plant/{PASSWORD}?x=1\n")),
        "{text}"
    );
    assert!(text.contains("Authorization: Basic ***\n"), "{text}");

    let (systems, _) = external_systems(&deployment().file, &env);
    let bin = systems.get("Bin").unwrap();
    assert!(
        !format!("{bin:?}").contains(API_KEY),
        "Debug of a definition shows no secret"
    );

    let printed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = printed.clone();
    let (dry, _) =
        scl_runtime::external::dry_run_module(&deployment().file, &env, move |request| {
            sink.lock().unwrap().push(request.to_string())
        });
    assert_eq!(
        dry.call("Bin", "Post", &json!({"id": 3, "v": true}))
            .unwrap(),
        Value::Null
    );
    let printed = printed.lock().unwrap();
    assert!(
        printed[0].starts_with(&format!("POST {url}/anything/orders/3\n")),
        "{}",
        printed[0]
    );
    assert!(printed[0].contains("X-Api-Key: ***\n"));
    assert!(printed[0].ends_with("\n{\"v\":true}\n"));
    drop(setup.runtime);
}
