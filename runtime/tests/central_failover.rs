//! Several central nodes (seed 7.5-2, issue 9 item 5): two `scl serve --role
//! central` processes of one deployment behind a real haproxy, one site
//! process behind them. Under steady load through the balancer, one central
//! node is killed with SIGKILL; every request still gets its answer from the
//! other node, and the killed node rejoins when it is started again.

mod process_support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use process_support::{Api, Folder, api_keys, eventually, free_port, nodes, server_env, write};
use serde_json::{Value, json};

const KEY: &str = "scl_failover_test_key";

fn deployment(site_port: u16) -> String {
    // `[central] listen` is never used: every node gets `--listen`.
    nodes(Some(1), &[("plant-a", site_port)])
        + &api_keys(&[("erp", KEY)])
        + r#"
[templates.Pump.attributes]
Speed = { type = "float", default = 1450.0 }

[templates.Pump.scripts]
Speed = { file = "scripts/speed.scl", kind = "instance" }

[[instance]]
code = "PUMP-1"
template = "Pump"
site = "plant-a"

[api_methods.PumpSpeed]
script = "scripts/pump_speed.scl"
approved_keys = ["erp"]
timeout_s = 10
"#
}

const SCRIPTS: &[(&str, &str)] = &[
    (
        "scripts/speed.scl",
        "fn main(scale: float) -> float {\n    return (Attributes.Get(\"Speed\") as float) * scale;\n}\n",
    ),
    (
        "scripts/pump_speed.scl",
        "fn main(code: string, scale: float) -> json {\n    return Route.To(code).Call(\"Speed\", {scale: scale});\n}\n",
    ),
];

/// haproxy in the foreground: round robin over the central nodes, health
/// checks every 100 ms, and a request whose node died under it (refused
/// connection, or a connection closed without an answer) is sent again to
/// the other node — safe here because the method only reads (docs/api.md,
/// "Several central nodes").
fn haproxy(folder: &Folder, port: u16, nodes: &[u16]) -> Child {
    let mut config = format!(
        "global\n    maxconn 512\n\n\
         defaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    \
         timeout server 30s\n    retries 3\n    option redispatch 1\n    \
         retry-on conn-failure empty-response\n\n\
         frontend api\n    bind 127.0.0.1:{port}\n    default_backend central\n\n\
         backend central\n    balance roundrobin\n    option httpchk GET /health\n"
    );
    for (i, node) in nodes.iter().enumerate() {
        config.push_str(&format!(
            "    server c{i} 127.0.0.1:{node} check inter 100ms fall 1 rise 2\n"
        ));
    }
    let path = folder.dir.path().join("haproxy.cfg");
    write(&path, &config);
    Command::new(server_env("SCL_TEST_HAPROXY"))
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy starts")
}

/// How many `PumpSpeed` calls a central node answered with 200 (its `/metrics`).
async fn served(api: &Api) -> u64 {
    let text = match api.http.get(format!("{}/metrics", api.base)).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => return 0,
    };
    text.lines()
        .find_map(|line| {
            line.strip_prefix("scl_central_requests_total{method=\"PumpSpeed\",status=\"200\"} ")
        })
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
    first_failure: std::sync::Mutex<Option<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_central_node_killed_under_load_leaves_the_api_served() {
    let site_port = free_port();
    let folder = Folder::new(&deployment(site_port), SCRIPTS);
    let _site = folder.serve("site:plant-a", &[], &[]);
    let ports = [free_port(), free_port()];
    // The peers need not be alike: one serves HTTP on one thread, the other on two.
    let mut nodes: Vec<_> = ports
        .iter()
        .zip(["1", "2"])
        .map(|(port, io_threads)| {
            let listen = format!("127.0.0.1:{port}");
            folder.serve(
                "central",
                &["--listen", &listen, "--io-threads", io_threads],
                &[],
            )
        })
        .collect();
    let params = json!({ "code": "PUMP-1", "scale": 2.0 });
    // Each node answers on its own before the balancer is in front.
    for port in ports {
        let api = Api::new(format!("http://127.0.0.1:{port}"));
        api.wait_healthy().await;
        let answer = eventually(
            "the site to run the deployment",
            Duration::from_secs(60),
            || {
                let (api, params) = (api.clone(), params.clone());
                async move {
                    let answer = api.try_call("PumpSpeed", Some(KEY), &params).await.ok()?;
                    (answer.0 == 200).then_some(answer)
                }
            },
        )
        .await;
        assert_eq!(answer, (200, json!(2900.0)));
    }

    let balancer_port = free_port();
    let mut balancer = haproxy(&folder, balancer_port, &ports);
    let api = Api::new(format!("http://127.0.0.1:{balancer_port}"));
    eventually("haproxy to answer", Duration::from_secs(30), || {
        let (api, params) = (api.clone(), params.clone());
        async move {
            let answer = api.try_call("PumpSpeed", Some(KEY), &params).await.ok()?;
            (answer.0 == 200).then_some(())
        }
    })
    .await;

    let tally = Arc::new(Tally {
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        first_failure: std::sync::Mutex::new(None),
    });
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (api, tally, params) = (api.clone(), Arc::clone(&tally), params.clone());
        workers.push(tokio::spawn(async move {
            while !tally.stop.load(Ordering::Relaxed) {
                match api.try_call("PumpSpeed", Some(KEY), &params).await {
                    Ok((200, body)) if body == json!(2900.0) => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        let mut first = tally.first_failure.lock().expect("lock");
                        first.get_or_insert_with(|| format!("{other:?}"));
                    }
                }
            }
        }));
    }
    // Load is flowing through both nodes; then node 0 dies.
    let wait_for = |n: u64| {
        let tally = Arc::clone(&tally);
        async move {
            eventually("requests to flow", Duration::from_secs(60), || {
                let tally = Arc::clone(&tally);
                async move { (tally.ok.load(Ordering::Relaxed) >= n).then_some(()) }
            })
            .await
        }
    };
    wait_for(300).await;
    let direct: Vec<Api> = ports
        .iter()
        .map(|port| Api::new(format!("http://127.0.0.1:{port}")))
        .collect();
    // Both nodes take a share of the load (one direct call each came before).
    for node in &direct {
        eventually("both nodes to serve", Duration::from_secs(30), || async {
            (served(node).await > 10).then_some(())
        })
        .await;
    }
    nodes[0].kill();
    let at_kill = tally.ok.load(Ordering::Relaxed);
    wait_for(at_kill + 1_000).await;
    tally.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }
    let (ok, failed) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    eprintln!("failover: {ok} answered, {failed} failed, {at_kill} before the kill");
    assert_eq!(
        failed,
        0,
        "first failure: {:?}",
        tally.first_failure.lock().expect("lock")
    );
    let dead = &direct[0];
    assert!(
        dead.try_call("PumpSpeed", Some(KEY), &params)
            .await
            .is_err(),
        "node 0 is really gone"
    );

    // The killed node starts again on the same port and the balancer uses it;
    // then the other node stops, and node 0 alone serves.
    nodes[0] = folder.serve(
        "central",
        &["--listen", &format!("127.0.0.1:{}", ports[0])],
        &[],
    );
    dead.wait_healthy().await;
    eventually(
        "the balancer to use node 0 again",
        Duration::from_secs(30),
        || {
            let (api, params) = (api.clone(), params.clone());
            async move {
                api.try_call("PumpSpeed", Some(KEY), &params).await.ok()?;
                (served(dead).await > 0).then_some(())
            }
        },
    )
    .await;
    nodes[1].stop();
    for _ in 0..20 {
        let (status, body): (u16, Value) = api.call("PumpSpeed", Some(KEY), params.clone()).await;
        assert_eq!((status, body), (200, json!(2900.0)));
    }
    let _ = balancer.kill();
    let _ = balancer.wait();
}
