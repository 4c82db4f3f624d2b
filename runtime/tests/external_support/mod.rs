//! Test support for the ExternalSystem integration tests: a small HTTP server of our own
//! that counts and records every request, answers from a per-path script of responses, and
//! can be stopped and started again on the same port (a peer that goes down and comes back).
//!
//! It is a real server on a loopback TCP port (axum over tokio), not a mock: the code under
//! test goes through reqwest, the network stack and HTTP/1.1 exactly as with any peer.
//! (`mod.rs` because each file directly in `tests/` is its own test crate.)

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub answered: u16,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Answer {
    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn json(status: u16, body: &str) -> Answer {
        Answer {
            body: body.to_owned(),
            headers: vec![("content-type".into(), "application/json".into())],
            ..Answer::status(status)
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Answer {
        self.delay = delay;
        self
    }
}

#[derive(Default)]
struct Plan {
    /// Answers to give, in order, per path; when a path's queue is empty its default is used.
    queued: HashMap<String, VecDeque<Answer>>,
    /// The answer when nothing is queued, per path.
    defaults: HashMap<String, Answer>,
}

#[derive(Default)]
struct ServerState {
    plan: Mutex<Plan>,
    requests: Mutex<Vec<Recorded>>,
}

/// The counting server.
pub struct CountingServer {
    address: SocketAddr,
    state: Arc<ServerState>,
    task: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>,
}

async fn handle(
    State(state): State<Arc<ServerState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let answer = {
        let mut plan = state.plan.lock().unwrap();
        let queued = plan.queued.get_mut(&path).and_then(VecDeque::pop_front);
        queued
            .or_else(|| plan.defaults.get(&path).cloned())
            .unwrap_or_else(|| Answer::json(200, r#"{"ok":true}"#))
    };
    let recorded = Recorded {
        method: method.to_string(),
        path,
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    value.to_str().unwrap_or("<binary>").to_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        answered: answer.status,
        at: Instant::now(),
    };
    state.requests.lock().unwrap().push(recorded);
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let mut response = (
        StatusCode::from_u16(answer.status).unwrap(),
        answer.body.clone(),
    )
        .into_response();
    for (name, value) in &answer.headers {
        response.headers_mut().insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    response
}

impl CountingServer {
    /// Start on a free loopback port.
    pub fn start(runtime: &Runtime) -> CountingServer {
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind a loopback port");
        let address = listener.local_addr().unwrap();
        let mut server = CountingServer {
            address,
            state: Arc::default(),
            task: None,
        };
        server.serve(runtime, listener);
        server
    }

    /// A server that is not running yet: its port is reserved by binding and releasing it,
    /// so connections to it are refused until [`CountingServer::resume`].
    pub fn stopped(runtime: &Runtime) -> CountingServer {
        let mut server = CountingServer::start(runtime);
        server.stop(runtime);
        server
    }

    fn serve(&mut self, runtime: &Runtime, listener: tokio::net::TcpListener) {
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&self.state));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = runtime.spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        self.task = Some((stop, task));
    }

    /// Stop listening and close every connection (idle keep-alive ones at once, busy ones
    /// after their answer): the peer is down.
    pub fn stop(&mut self, runtime: &Runtime) {
        if let Some((stop, task)) = self.task.take() {
            let _ = stop.send(());
            let _ = runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
        }
    }

    /// Listen again on the same port (retrying while the port is still being released).
    pub fn resume(&mut self, runtime: &Runtime) {
        let address = self.address;
        let listener = runtime.block_on(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match tokio::net::TcpListener::bind(address).await {
                    Ok(listener) => return listener,
                    Err(error) if Instant::now() < deadline => {
                        let _ = error;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(error) => panic!("cannot listen on {address} again: {error}"),
                }
            }
        });
        self.serve(runtime, listener);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Answer the next requests to `path` with these, in order.
    pub fn queue(&self, path: &str, answers: impl IntoIterator<Item = Answer>) {
        let mut plan = self.state.plan.lock().unwrap();
        plan.queued
            .entry(path.to_owned())
            .or_default()
            .extend(answers);
    }

    /// Answer requests to `path` with this when nothing is queued.
    pub fn default_answer(&self, path: &str, answer: Answer) {
        self.state
            .plan
            .lock()
            .unwrap()
            .defaults
            .insert(path.to_owned(), answer);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|request| request.path == path)
            .collect()
    }

    /// Successful (2xx) requests per `Idempotency-Key`: what a deduplicating receiver would
    /// have accepted.
    pub fn accepted_by_key(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for request in self.requests() {
            if (200..300).contains(&request.answered)
                && let Some(key) = request.header("idempotency-key")
            {
                *counts.entry(key.to_owned()).or_insert(0) += 1;
            }
        }
        counts
    }
}

/// A multi-thread runtime for servers, the HTTP client and the forwarder; the test thread
/// itself stays a plain thread, like a script thread.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Wait until `condition` holds, checking every 20 ms, failing after `deadline`.
pub fn await_condition(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < deadline,
            "gave up after {deadline:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The base URL of the httpbin that `tests/run.sh` starts.
pub fn httpbin_url() -> String {
    std::env::var("SCL_TEST_HTTPBIN_URL").unwrap_or_else(|_| {
        panic!("start the servers with tests/run.sh: SCL_TEST_HTTPBIN_URL is unset")
    })
}

/// A loopback port nothing listens on (bound, then released).
pub fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// An event log that keeps every event, to check what was logged.
#[derive(Default)]
pub struct MemoryEventLog(pub Mutex<Vec<scl_stdlib::external::FailureEvent>>);

impl scl_stdlib::external::EventLog for MemoryEventLog {
    fn permanent_failure(&self, event: &scl_stdlib::external::FailureEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

impl MemoryEventLog {
    pub fn events(&self) -> Vec<scl_stdlib::external::FailureEvent> {
        self.0.lock().unwrap().clone()
    }
}
