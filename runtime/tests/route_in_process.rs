//! `Route.To` to a site running in central's process (`scl serve --role all`): central calls
//! the site directly (`LocalSite`) instead of going over loopback HTTP. The site here is a
//! real [`Site`] (its instances, attributes and scripts) and the deployment gives it a URL on
//! which nothing listens, so every answer below can only have come through the in-process
//! path. Errors, attribute writes, instance scripts and the method's deadline behave as over
//! HTTP (`e2e.rs` and `central_api.rs` cover the HTTP transport).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scl_runtime::central::{self, CentralConfig};
use scl_runtime::deployment::Deployment;
use scl_runtime::keys::sha256_hex;
use scl_runtime::protocol::{RemoteError, SiteClient};
use scl_runtime::site::{EnvLookup, Site, SiteOptions};
use serde_json::{Value, json};

const KEY: &str = "scl_in_process_key";
const TOKEN: &str = "in-process-site-token";
const ADMIN_KEY: &str = "scl_in_process_admin";

fn closed_port() -> u16 {
    // Bound and released: nothing listens there while the test runs.
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

fn write(dir: &std::path::Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

struct Plant {
    _dir: tempfile::TempDir,
    site: Site,
    /// `plant-b`: a site of its own, reached over loopback HTTP.
    elsewhere: Site,
    elsewhere_server: tokio::task::JoinHandle<()>,
    central: central::CentralHandle,
    http: reqwest::Client,
}

impl Plant {
    async fn start() -> Plant {
        let dir = tempfile::tempdir().expect("dir");
        let port = closed_port();
        let elsewhere_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let elsewhere = elsewhere_listener.local_addr().expect("addr");
        write(
            dir.path(),
            "get.scl",
            "fn main(code: string, names: list<string>) -> json {\n    try {\n        return Route.To(code).GetAttributes(names);\n    } catch e {\n        return { kind: e.kind, code: e.code, status: e.status };\n    }\n}\n",
        );
        write(
            dir.path(),
            "set.scl",
            "fn main(code: string, speed: float) -> json {\n    Route.To(code).SetAttribute(\"Speed\", speed);\n    return Route.To(code).GetAttribute(\"Speed\");\n}\n",
        );
        write(
            dir.path(),
            "call.scl",
            "fn main(code: string, script: string) -> json {\n    return Route.To(code).Call(script, { factor: 3 });\n}\n",
        );
        write(
            dir.path(),
            "scripts/scaled.scl",
            "fn main(factor: int) -> json {\n    let speed = Attributes.Get(\"Speed\") as float;\n    return { scaled: speed * 3.0, factor: factor };\n}\n",
        );
        write(
            dir.path(),
            "scripts/spin.scl",
            "fn main(factor: int) -> int {\n    var n = 0;\n    while true { n = n + 1; }\n    return n;\n}\n",
        );
        let text = format!(
            "data_dir = \"./data\"\n[central]\nlisten = \"127.0.0.1:0\"\n\n\
             [[site]]\nname = \"plant-a\"\nlisten = \"127.0.0.1:{port}\"\nurl = \"http://127.0.0.1:{port}\"\ntoken_env = \"IN_PROCESS_SITE_TOKEN\"\n\n\
             [templates.Pump.attributes]\nSpeed = {{ type = \"float\", default = 1450.0 }}\nRunning = {{ type = \"bool\", default = true }}\n\n\
             [templates.Pump.scripts]\nScaled = {{ file = \"scripts/scaled.scl\", kind = \"instance\" }}\nSpin = {{ file = \"scripts/spin.scl\", kind = \"instance\", timeout_s = 2 }}\n\n\
             [[site]]\nname = \"plant-b\"\nlisten = \"{elsewhere}\"\nurl = \"http://{elsewhere}\"\ntoken_env = \"IN_PROCESS_SITE_TOKEN\"\n\n\
             [[instance]]\ncode = \"PUMP-1\"\ntemplate = \"Pump\"\nsite = \"plant-a\"\n\n\
             [[instance]]\ncode = \"PUMP-2\"\ntemplate = \"Pump\"\nsite = \"plant-b\"\n\n\
             [api_keys.test]\nsha256 = \"{}\"\n\n\
             [admin_keys.ops]\nsha256 = \"{}\"\n\n\
             [api_methods.Get]\nscript = \"get.scl\"\napproved_keys = [\"test\"]\n\n\
             [api_methods.Set]\nscript = \"set.scl\"\napproved_keys = [\"test\"]\n\n\
             [api_methods.Call]\nscript = \"call.scl\"\napproved_keys = [\"test\"]\ntimeout_s = 1\n",
            sha256_hex(KEY),
            sha256_hex(ADMIN_KEY)
        );
        write(dir.path(), "deploy.toml", &text);
        let config = dir.path().join("deploy.toml");
        let deployment = Deployment::load(&config).expect("the deployment loads");
        let env: EnvLookup =
            Arc::new(|name| (name == "IN_PROCESS_SITE_TOKEN").then(|| TOKEN.to_owned()));
        let start = |name: &str| {
            let mut options = SiteOptions::new(
                name,
                config.clone(),
                dir.path().join(format!("data/site-{name}")),
                TOKEN.to_owned(),
            );
            options.env = Arc::clone(&env);
            Site::start(options, &deployment)
        };
        let site = start("plant-a").await.expect("the site starts");
        let site_b = start("plant-b").await.expect("the other site starts");
        let served = scl_runtime::site::api::router(&site_b);
        let elsewhere_server = tokio::spawn(async move {
            let _ = axum::serve(elsewhere_listener, served).await;
        });
        let mut in_process_sites = HashMap::new();
        in_process_sites.insert("plant-a".to_owned(), site.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let central = central::start(
            Arc::new(deployment),
            listener,
            CentralConfig {
                script_threads: 4,
                env,
                data_dir: Some(dir.path().join("data")),
                in_process_sites,
                ..CentralConfig::default()
            },
        )
        .await
        .expect("central starts");
        Plant {
            _dir: dir,
            site,
            elsewhere: site_b,
            elsewhere_server,
            central,
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("http://{}/api/{method}", self.central.local_addr()))
            .header("X-API-Key", KEY)
            .json(&body)
            .send()
            .await
            .expect("central answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON answer"))
    }

    /// The rows of central's execution log for `script`.
    async fn runs(&self, script: &str) -> Vec<Value> {
        let response = self
            .http
            .get(format!(
                "http://{}/admin/runs?script={script}&limit=1000",
                self.central.local_addr()
            ))
            .header("X-Admin-Key", ADMIN_KEY)
            .send()
            .await
            .expect("GET /admin/runs");
        let body: Value = response.json().await.expect("a JSON answer");
        body["runs"].as_array().cloned().unwrap_or_default()
    }

    async fn stop(self) {
        let _ = self.central.shutdown().await;
        self.elsewhere_server.abort();
        self.elsewhere.shutdown().await;
        self.site.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_calls_reach_an_in_process_site_without_a_socket() {
    let plant = Plant::start().await;

    // Attributes come from the site's instance (nothing listens on the site's URL).
    let (status, body) = plant
        .call(
            "Get",
            json!({ "code": "PUMP-1", "names": ["Speed", "Running"] }),
        )
        .await;
    assert_eq!(
        (status, &body),
        (200, &json!({ "Speed": 1450.0, "Running": true }))
    );

    // The site's own errors reach the script with the site's kind, code and status, as over
    // HTTP.
    let (status, body) = plant
        .call("Get", json!({ "code": "PUMP-1", "names": ["Pressure"] }))
        .await;
    assert_eq!(
        (status, &body),
        (
            200,
            &json!({ "kind": "not_found", "code": "unknown_attribute", "status": 404 })
        )
    );

    // A write goes to the site and is read back from it.
    let (status, body) = plant
        .call("Set", json!({ "code": "PUMP-1", "speed": 990.5 }))
        .await;
    assert_eq!((status, &body), (200, &json!(990.5)));

    // An instance script runs on the site with the caller's parameters.
    let (status, body) = plant
        .call("Call", json!({ "code": "PUMP-1", "script": "Scaled" }))
        .await;
    assert_eq!(
        (status, &body),
        (200, &json!({ "scaled": 2971.5, "factor": 3 }))
    );

    // The method's deadline (timeout_s = 1) bounds an in-process call as it bounds an HTTP one.
    let started = Instant::now();
    let (status, body) = plant
        .call("Call", json!({ "code": "PUMP-1", "script": "Spin" }))
        .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], "timeout", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the deadline did not end the call: {:?}",
        started.elapsed()
    );

    plant.stop().await;
}

/// The typed in-process calls answer exactly what the HTTP routes answer: every result and
/// every error (kind, code, message, status) of the same operations, asked once over a real
/// socket to the site's router and once through `SiteClient::in_process`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_answers_equal_the_http_answers() {
    let plant = Plant::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let router = scl_runtime::site::api::router(&plant.site);
    let served = router.clone();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, served).await;
    });
    let limit = Duration::from_secs(30);
    let http = SiteClient::new("plant-a", &url, TOKEN, limit).expect("client");
    let local = SiteClient::new("plant-a", "http://127.0.0.1:9", TOKEN, limit)
        .expect("client")
        .in_process(router, Arc::new(plant.site.clone()));
    assert!(local.local().is_some() && http.local().is_none());

    type Answer = Result<Value, RemoteError>;
    type Asked<'c> = std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + 'c>>;
    type Ask = Box<dyn for<'c> Fn(&'c SiteClient) -> Asked<'c>>;
    async fn get(client: &SiteClient, instance: &str, names: &[&str]) -> Answer {
        let names = names.iter().map(|n| n.to_string()).collect();
        client
            .get_attributes(instance, names, None)
            .await
            .map(|values| json!(values))
    }
    async fn set(client: &SiteClient, instance: &str, values: Value) -> Answer {
        let values = serde_json::from_value(values).expect("a map");
        client
            .set_attributes(instance, values, None)
            .await
            .map(|()| Value::Null)
    }
    async fn call(client: &SiteClient, instance: &str, script: &str, params: Value) -> Answer {
        client.call(instance, script, params, None).await
    }
    async fn both(
        http: &SiteClient,
        local: &SiteClient,
        case: &str,
        ask: impl for<'c> Fn(&'c SiteClient) -> Asked<'c>,
    ) -> Answer {
        let over_http = ask(http).await;
        let in_process = ask(local).await;
        assert_eq!(over_http, in_process, "{case}");
        over_http
    }

    let read = both(&http, &local, "read", |c| {
        Box::pin(get(c, "PUMP-1", &["Speed", "Running", "Speed"]))
    })
    .await;
    assert_eq!(read, Ok(json!({ "Speed": 1450.0, "Running": true })));
    let unknown = both(&http, &local, "unknown attribute", |c| {
        Box::pin(get(c, "PUMP-1", &["Speed", "Pressure"]))
    })
    .await;
    assert_eq!(
        unknown.map_err(|e| (e.kind, e.code, e.status)),
        Err(("not_found".into(), "unknown_attribute".into(), Some(404)))
    );
    let cases: Vec<(&str, Ask)> = vec![
        (
            "read of an unknown instance",
            Box::new(|c| Box::pin(get(c, "PUMP-9", &["Speed"]))),
        ),
        (
            "write",
            Box::new(|c| Box::pin(set(c, "PUMP-1", json!({ "Speed": 1200.5 })))),
        ),
        (
            "mistyped write",
            Box::new(|c| Box::pin(set(c, "PUMP-1", json!({ "Speed": "fast" })))),
        ),
        (
            "write of an unknown attribute",
            Box::new(|c| Box::pin(set(c, "PUMP-1", json!({ "Pressure": 1 })))),
        ),
        (
            "write to an unknown instance",
            Box::new(|c| Box::pin(set(c, "PUMP-9", json!({ "Speed": 1.0 })))),
        ),
        (
            "call",
            Box::new(|c| Box::pin(call(c, "PUMP-1", "Scaled", json!({ "factor": 3 })))),
        ),
        (
            "call of an unknown script",
            Box::new(|c| Box::pin(call(c, "PUMP-1", "Nope", json!({})))),
        ),
        (
            "call with a mistyped parameter",
            Box::new(|c| Box::pin(call(c, "PUMP-1", "Scaled", json!({ "factor": "x" })))),
        ),
        (
            "call with a missing parameter",
            Box::new(|c| Box::pin(call(c, "PUMP-1", "Scaled", json!({})))),
        ),
        (
            "call on an unknown instance",
            Box::new(|c| Box::pin(call(c, "PUMP-9", "Scaled", json!({ "factor": 3 })))),
        ),
    ];
    let mut succeeded = Vec::new();
    for (case, ask) in &cases {
        if both(&http, &local, case, ask).await.is_ok() {
            succeeded.push(*case);
        }
    }
    assert_eq!(succeeded, ["write", "call"], "every other case fails");
    assert_eq!(
        get(&local, "PUMP-1", &["Speed"]).await,
        Ok(json!({ "Speed": 1200.5 }))
    );

    // A call longer than the deadline ends as the same timeout error on both transports.
    let spin = |c: &SiteClient| {
        let c = c.clone();
        async move {
            c.call(
                "PUMP-1",
                "Spin",
                json!({ "factor": 1 }),
                Some(Duration::from_millis(300)),
            )
            .await
        }
    };
    let (over_http, in_process) = tokio::join!(spin(&http), spin(&local));
    assert_eq!(over_http, in_process);
    assert_eq!(
        over_http.map_err(|e| (e.kind, e.code)),
        Err(("timeout".into(), "site_timeout".into()))
    );

    server.abort();
    plant.stop().await;
}

/// With one site in central's process and another reached over HTTP, the same method reads
/// both: the same answers and the same caught errors either way, and one row in the execution
/// log per call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_method_reads_a_site_in_process_and_a_site_elsewhere() {
    let plant = Plant::start().await;
    let mut calls = 0;
    for code in ["PUMP-1", "PUMP-2", "PUMP-2", "PUMP-1"] {
        let (status, body) = plant
            .call(
                "Get",
                json!({ "code": code, "names": ["Running", "Speed"] }),
            )
            .await;
        assert_eq!(
            (status, &body),
            (200, &json!({ "Running": true, "Speed": 1450.0 })),
            "{code}"
        );
        calls += 1;
    }
    // A site's error is caught by the script on both paths.
    for code in ["PUMP-1", "PUMP-2"] {
        let (status, body) = plant
            .call("Get", json!({ "code": code, "names": ["Pressure"] }))
            .await;
        assert_eq!(
            (status, &body),
            (
                200,
                &json!({ "kind": "not_found", "code": "unknown_attribute", "status": 404 })
            ),
            "{code}"
        );
        calls += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows = plant.runs("Get").await;
        if rows.len() >= calls || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(rows.len(), calls, "{rows:#?}");
    assert!(
        rows.iter().all(|row| row["status"] == "SUCCESS"),
        "{rows:#?}"
    );
    plant.stop().await;
}
