//! Test support for the store-and-forward tests: a real HTTP peer that counts what it
//! receives and answers from a script, a deliverer that POSTs with reqwest, and polling.
#![allow(dead_code)] // Each test crate uses a different part of this module.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use scl_runtime::saf::{Deliverer, DeliveryFuture, Message, Outcome};

/// What the peer answers to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub retry_after_s: Option<u64>,
    pub delay_ms: u64,
}

impl Answer {
    pub const OK: Answer = Answer {
        status: 200,
        retry_after_s: None,
        delay_ms: 0,
    };

    pub fn status(status: u16) -> Answer {
        Answer {
            status,
            ..Answer::OK
        }
    }

    pub fn delayed(self, delay_ms: u64) -> Answer {
        Answer { delay_ms, ..self }
    }
}

/// Decides the answer from the event id and how many times (1-based) it was received.
pub type Script = Arc<dyn Fn(&str, u32) -> Answer + Send + Sync>;

/// One request the peer received.
#[derive(Debug, Clone)]
pub struct Hit {
    pub at: Instant,
    pub run: Option<String>,
    pub status: u16,
    pub body: String,
}

#[derive(Clone)]
struct PeerState {
    hits: Arc<Mutex<HashMap<String, Vec<Hit>>>>,
    script: Arc<Mutex<Script>>,
}

/// A counting HTTP server on 127.0.0.1 with its own runtime thread.
pub struct CountingServer {
    pub addr: SocketAddr,
    state: PeerState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CountingServer {
    pub fn start(script: Script) -> CountingServer {
        let state = PeerState {
            hits: Arc::default(),
            script: Arc::new(Mutex::new(script)),
        };
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app_state = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("test peer runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind test peer");
                addr_tx
                    .send(listener.local_addr().expect("peer address"))
                    .ok();
                let app = axum::Router::new()
                    .route("/deliver", axum::routing::post(receive))
                    .with_state(app_state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("test peer");
            });
        });
        let addr = addr_rx.recv().expect("peer started");
        CountingServer {
            addr,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn always_ok() -> CountingServer {
        CountingServer::start(Arc::new(|_, _| Answer::OK))
    }

    pub fn url(&self) -> String {
        format!("http://{}/deliver", self.addr)
    }

    pub fn set_script(&self, script: Script) {
        *self.state.script.lock().unwrap() = script;
    }

    /// Requests received for one id.
    pub fn hits(&self, id: &str) -> Vec<Hit> {
        self.state
            .hits
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    /// Every id with its hits.
    pub fn all_hits(&self) -> HashMap<String, Vec<Hit>> {
        self.state.hits.lock().unwrap().clone()
    }

    pub fn count(&self, id: &str) -> usize {
        self.hits(id).len()
    }

    /// Ids that got at least one 2xx answer.
    pub fn delivered_ids(&self) -> Vec<String> {
        self.state
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, hits)| hits.iter().any(|hit| (200..300).contains(&hit.status)))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

impl Drop for CountingServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn receive(State(state): State<PeerState>, headers: HeaderMap, body: String) -> Response {
    let id = headers
        .get("x-event-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let run = headers
        .get("x-run")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let script = state.script.lock().unwrap().clone();
    let answer = {
        let mut hits = state.hits.lock().unwrap();
        let entry = hits.entry(id.clone()).or_default();
        let answer = script(&id, entry.len() as u32 + 1);
        entry.push(Hit {
            at: Instant::now(),
            run,
            status: answer.status,
            body,
        });
        answer
    };
    if answer.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(answer.delay_ms)).await;
    }
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, "").into_response();
    if let Some(seconds) = answer.retry_after_s {
        response
            .headers_mut()
            .insert("retry-after", seconds.to_string().parse().unwrap());
    }
    response
}

/// Delivers by POSTing the payload to the peer with the message id in `X-Event-Id`, and
/// classifies like the external system gateway: 2xx delivered; connection errors, timeouts,
/// 408, 429 and 5xx transient; other 4xx permanent.
pub struct HttpDeliverer {
    pub client: reqwest::Client,
    pub url: String,
    pub run: Option<String>,
}

impl HttpDeliverer {
    pub fn new(url: String) -> HttpDeliverer {
        HttpDeliverer {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(64)
                .build()
                .expect("reqwest client"),
            url,
            run: None,
        }
    }
}

impl Deliverer for HttpDeliverer {
    fn deliver<'a>(&'a self, message: &'a Message) -> DeliveryFuture<'a> {
        Box::pin(async move {
            let mut request = self
                .client
                .post(&self.url)
                .header("x-event-id", &message.id)
                .header("content-type", "application/json")
                .body(message.payload.get().to_owned());
            if let Some(run) = &self.run {
                request = request.header("x-run", run);
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    match status {
                        200..=299 => Outcome::Delivered {
                            status: Some(status),
                        },
                        408 | 429 | 500..=599 => Outcome::Transient {
                            error: format!("HTTP {status}"),
                            status: Some(status),
                            retry_after,
                        },
                        _ => Outcome::Permanent {
                            error: format!("HTTP {status}"),
                            status: Some(status),
                        },
                    }
                }
                Err(error) => Outcome::Transient {
                    error: error.to_string(),
                    status: None,
                    retry_after: None,
                },
            }
        })
    }
}

/// Poll `condition` every 10 ms until it holds or `timeout` passes; panics with `what` on
/// timeout.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The async flavour of [`wait_until`].
pub async fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
