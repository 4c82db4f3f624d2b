//! Notify against real servers: the aiosmtpd server (plain, STARTTLS and implicit-TLS ports,
//! PLAIN/LOGIN and XOAUTH2) and the oidc-provider OAuth2 server that tests/run.sh starts
//! (tests/servers/smtp.sh, tests/servers/oauth.sh).
//!
//! Each test sends from its own thread, as a script thread would, through a `NotifyService`
//! built from deployment TOML, and reads what the SMTP server stored (one JSON file per
//! message with its envelope). Messages are told apart by their `Message-ID`, which carries
//! the delivery id the script got back.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use scl_runtime::deployment::Deployment;
use scl_runtime::notify::{NotifyConfig, NotifyService};
use scl_runtime::saf::{Category, Deliverers, Forwarder, ForwarderConfig, Saf, SafConfig, Status};
use scl_stdlib::notify::{DeliveryStatus, EventLog, NotifyEvent};

// --- the servers ---------------------------------------------------------------------------

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("start the servers with tests/run.sh: {name} is unset"))
}

fn port(name: &str) -> u16 {
    env(name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a port number"))
}

/// One message as the SMTP server stored it.
#[derive(Debug, serde::Deserialize)]
struct Stored {
    mail_from: String,
    rcpt_tos: Vec<String>,
    data_b64: String,
    auth_mechanism: Option<String>,
    auth_user: Option<String>,
    oauth_client_id: Option<String>,
    token_sha256: Option<String>,
    tls: bool,
    port: u16,
}

impl Stored {
    fn raw(&self) -> String {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.data_b64)
            .expect("stored data is base64");
        String::from_utf8(bytes).expect("the message is UTF-8 (in fact ASCII)")
    }

    /// The header block, unfolded, and the body.
    fn split(&self) -> (Vec<(String, String)>, String) {
        let raw = self.raw();
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .expect("a header block and a body");
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with(' ') || line.starts_with('\t') {
                if let Some(last) = headers.last_mut() {
                    last.1.push_str(line.trim_start());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        (headers, body.to_owned())
    }

    fn header(&self, name: &str) -> Option<String> {
        self.split()
            .0
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The decoded plain-text body.
    fn text(&self) -> String {
        let (_, body) = self.split();
        let encoding = self
            .header("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let bytes = match encoding.as_str() {
            "base64" => base64::engine::general_purpose::STANDARD
                .decode(body.replace("\r\n", "").trim())
                .expect("base64 body"),
            "quoted-printable" => decode_quoted_printable(&body),
            _ => body.into_bytes(),
        };
        String::from_utf8(bytes).expect("UTF-8 body")
    }
}

/// RFC 2045 quoted-printable, enough for lettre's output.
fn decode_quoted_printable(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'=' if bytes[index + 1..].starts_with(b"\r\n") => index += 3,
            b'=' => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                index += 3;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    out
}

/// RFC 2047 encoded words (`=?utf-8?b?...?=` and `=?utf-8?q?...?=`), enough for lettre's output.
fn decode_header(value: &str) -> String {
    let mut out = String::new();
    for word in value.split_whitespace() {
        let decoded = match word.strip_prefix("=?").and_then(|w| w.strip_suffix("?=")) {
            Some(inner) => {
                let mut parts = inner.splitn(3, '?');
                let (_charset, encoding, text) = (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                );
                let bytes = if encoding.eq_ignore_ascii_case("b") {
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .expect("B-encoded word")
                } else {
                    decode_quoted_printable(&text.replace('_', " "))
                };
                String::from_utf8(bytes).expect("UTF-8 word")
            }
            None => {
                if !out.is_empty() {
                    out.push(' ');
                }
                word.to_owned()
            }
        };
        out.push_str(&decoded);
    }
    out
}

/// Wait until the SMTP server has stored the message of this delivery id.
fn stored_message(delivery_id: &str, deadline: Duration) -> Stored {
    let maildir = PathBuf::from(env("SCL_TEST_SMTP_MAILDIR"));
    let needle = format!("Message-ID: <{delivery_id}@");
    let until = Instant::now() + deadline;
    loop {
        if let Ok(entries) = std::fs::read_dir(&maildir) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                // The JSON text holds the message text with only \r\n escaped.
                if !text.contains(&needle) {
                    continue;
                }
                let Ok(stored) = serde_json::from_str::<Stored>(&text) else {
                    continue;
                };
                if stored.raw().contains(&needle) {
                    return stored;
                }
            }
        }
        assert!(
            Instant::now() < until,
            "the SMTP server did not store message {delivery_id} within {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn tokens_issued(client_id: &str) -> u64 {
    let url = format!("{}/test/issued/{client_id}", env("SCL_TEST_OAUTH_URL"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let answer: serde_json::Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        answer["count"].as_u64().unwrap()
    })
}

// --- a site in a test ----------------------------------------------------------------------

#[derive(Default)]
struct MemoryEvents(Mutex<Vec<NotifyEvent>>);

impl EventLog for MemoryEvents {
    fn record(&self, event: &NotifyEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

struct Site {
    runtime: tokio::runtime::Runtime,
    service: Arc<NotifyService>,
    saf: Saf,
    events: Arc<MemoryEvents>,
    _data: tempfile::TempDir,
}

/// The deployment's `[smtp]` table body (without `from`, which every test shares) and lists.
fn site(smtp: &str, lists: &[(&str, &[&str])], secrets: &[(&str, &str)]) -> Site {
    let mut text =
        format!("[smtp]\nfrom = \"scada@plant.example\"\n{smtp}\n[notification_lists]\n");
    for (name, recipients) in lists {
        let quoted: Vec<String> = recipients.iter().map(|r| format!("\"{r}\"")).collect();
        text.push_str(&format!("{name} = [{}]\n", quoted.join(", ")));
    }
    let deployment = Deployment::from_source(Path::new("/tmp/notify-test/deploy.toml"), text)
        .expect("valid deployment");
    let secrets: BTreeMap<String, String> = secrets
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let config = NotifyConfig::from_deployment(&deployment, |name| secrets.get(name).cloned())
        .expect("valid settings");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let saf = Saf::open(SafConfig::new(data.path().join("saf"))).unwrap();
    let events = Arc::new(MemoryEvents::default());
    let service = NotifyService::new(
        config,
        saf.clone(),
        runtime.handle().clone(),
        events.clone(),
    )
    .expect("service");
    Site {
        runtime,
        service: Arc::new(service),
        saf,
        events,
        _data: data,
    }
}

impl Site {
    fn forwarder(&self) -> Forwarder {
        let _entered = self.runtime.enter();
        let deliverer = self.service.deliverer().expect("SMTP is configured");
        Forwarder::start(
            self.saf.clone(),
            Deliverers::default().with(Category::Notification, deliverer),
            ForwarderConfig::default(),
        )
        .unwrap()
    }

    fn wait_for_status(
        &self,
        id: &str,
        wanted: Status,
        deadline: Duration,
    ) -> scl_runtime::saf::StatusReport {
        let until = Instant::now() + deadline;
        loop {
            let report = self
                .saf
                .status(id)
                .unwrap()
                .expect("the message is in the buffer");
            if report.status == wanted {
                return report;
            }
            assert!(
                Instant::now() < until,
                "message {id} did not become {wanted:?} within {deadline:?}: {report:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every message in the buffer, whatever its status.
    fn buffered_count(&self) -> u64 {
        let stats = self.saf.stats().unwrap();
        stats.queued + stats.parked + stats.delivered + stats.discarded
    }
}

fn plain_basic() -> String {
    format!(
        "host = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nauth = {{ kind = \"basic\", username = \"{}\", password_env = \"SMTP_PASSWORD\" }}\n",
        port("SCL_TEST_SMTP_PLAIN_PORT"),
        env("SCL_TEST_SMTP_USER"),
    )
}

fn password() -> (&'static str, String) {
    ("SMTP_PASSWORD", env("SCL_TEST_SMTP_PASSWORD"))
}

fn oauth2(client_id: &str) -> String {
    format!(
        "host = \"127.0.0.1\"\nport = {}\ntls = \"ssl\"\ntrusted_roots = [\"{}\"]\n\
         auth = {{ kind = \"oauth2\", tenant_id = \"test-tenant\", client_id = \"{client_id}\", \
         client_secret_env = \"SMTP_CLIENT_SECRET\", token_url = \"{}\" }}\n",
        port("SCL_TEST_SMTP_TLS_PORT"),
        env("SCL_TEST_SMTP_CA"),
        env("SCL_TEST_OAUTH_TOKEN_URL"),
    )
}

const STORED_WITHIN: Duration = Duration::from_secs(20);

// --- composition and transport -------------------------------------------------------------

#[test]
fn one_email_with_every_recipient_in_bcc_and_the_sender_in_to() {
    let (key, value) = password();
    let recipients: &[&str] = &[
        "op1@plant.example",
        "op2@plant.example",
        "op1@plant.example",
    ];
    let site = site(
        &plain_basic(),
        &[("Operators", recipients)],
        &[(key, &value)],
    );
    let subject = "Température élevée ✓ on PUMP-001";
    let body = "Pompe à 92.5 °C (limite 80 °C).\nSecond line — with UTF-8 ✓\n";
    let delivery = site
        .service
        .send("Operators", subject, body)
        .expect("delivered");
    assert_eq!(delivery.status, DeliveryStatus::Delivered);

    let stored = stored_message(&delivery.id, STORED_WITHIN);
    // The envelope has every recipient, duplicates kept (no deduplication, CD-NS-2).
    assert_eq!(stored.rcpt_tos, recipients);
    assert_eq!(stored.mail_from, "scada@plant.example");
    // No recipient appears in any header; the sender is in From and To.
    let (headers, _) = stored.split();
    for (name, value) in &headers {
        for recipient in ["op1@plant.example", "op2@plant.example"] {
            assert!(
                !value.contains(recipient),
                "recipient {recipient} leaked into header {name}: {value}"
            );
        }
        assert!(
            !name.eq_ignore_ascii_case("bcc") && !name.eq_ignore_ascii_case("cc"),
            "header {name}"
        );
    }
    assert_eq!(
        stored.header("From").as_deref(),
        Some("scada@plant.example")
    );
    assert_eq!(stored.header("To").as_deref(), Some("scada@plant.example"));
    // Plain text, UTF-8 subject and body decoded back to what the script sent.
    assert_eq!(
        stored.header("Content-Type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert!(
        !stored.raw().to_ascii_lowercase().contains("multipart"),
        "plain text only"
    );
    assert_eq!(decode_header(&stored.header("Subject").unwrap()), subject);
    assert_eq!(
        stored.text().replace("\r\n", "\n").trim_end(),
        body.trim_end()
    );
    // Logged in with PLAIN/LOGIN, without TLS on the plain port.
    assert_eq!(stored.auth_user.as_deref(), Some("alice"));
    assert_eq!(stored.auth_mechanism.as_deref(), Some("PLAIN/LOGIN"));
    assert!(!stored.tls);
    assert_eq!(
        site.buffered_count(),
        0,
        "a delivered notification is not buffered"
    );
}

#[test]
fn starttls_mode_upgrades_before_logging_in() {
    let (key, value) = password();
    let smtp = format!(
        "host = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\ntrusted_roots = [\"{}\"]\n\
         auth = {{ kind = \"basic\", username = \"alice\", password_env = \"SMTP_PASSWORD\" }}\n",
        port("SCL_TEST_SMTP_STARTTLS_PORT"),
        env("SCL_TEST_SMTP_CA"),
    );
    let site = site(&smtp, &[("Ops", &["op@plant.example"])], &[(key, &value)]);
    let delivery = site
        .service
        .send("Ops", "starttls", "body")
        .expect("delivered");
    let stored = stored_message(&delivery.id, STORED_WITHIN);
    assert!(stored.tls, "the message went over TLS");
    assert_eq!(stored.port, port("SCL_TEST_SMTP_STARTTLS_PORT"));
    assert_eq!(stored.auth_user.as_deref(), Some("alice"));
}

#[test]
fn implicit_tls_mode_without_login() {
    let smtp = format!(
        "host = \"127.0.0.1\"\nport = {}\ntls = \"ssl\"\ntrusted_roots = [\"{}\"]\n",
        port("SCL_TEST_SMTP_TLS_PORT"),
        env("SCL_TEST_SMTP_CA"),
    );
    let site = site(&smtp, &[("Ops", &["op@plant.example"])], &[]);
    let delivery = site
        .service
        .send("Ops", "implicit tls", "body")
        .expect("delivered");
    let stored = stored_message(&delivery.id, STORED_WITHIN);
    assert!(stored.tls);
    assert_eq!(stored.port, port("SCL_TEST_SMTP_TLS_PORT"));
    assert_eq!(stored.auth_user, None, "no AUTH without an auth table");
}

#[test]
fn starttls_required_but_not_offered_is_a_permanent_error() {
    let smtp = format!(
        "host = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\ntrusted_roots = [\"{}\"]\n",
        port("SCL_TEST_SMTP_PLAIN_PORT"),
        env("SCL_TEST_SMTP_CA"),
    );
    let site = site(&smtp, &[("Ops", &["op@plant.example"])], &[]);
    let error = site
        .service
        .send("Ops", "s", "b")
        .expect_err("never falls back to clear text");
    assert_eq!(error.kind(), "permanent");
    assert_eq!(error.code().as_str(), "smtp_unsupported");
    assert!(error.to_string().contains("STARTTLS"), "{error}");
    assert_eq!(site.buffered_count(), 0);
}

#[test]
fn an_untrusted_certificate_is_a_transient_tls_failure() {
    // No trusted_roots: the test CA is unknown to the built-in roots.
    let smtp = format!(
        "host = \"127.0.0.1\"\nport = {}\ntls = \"ssl\"\n",
        port("SCL_TEST_SMTP_TLS_PORT")
    );
    let site = site(&smtp, &[("Ops", &["op@plant.example"])], &[]);
    let delivery = site.service.send("Ops", "s", "b").expect("buffered");
    assert_eq!(delivery.status, DeliveryStatus::Buffered);
    let report = site.saf.status(&delivery.id).unwrap().unwrap();
    assert_eq!(report.status, Status::Retrying);
    assert!(
        report
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("TLS"),
        "{report:?}"
    );
}

// --- authentication ------------------------------------------------------------------------

#[test]
fn a_wrong_password_is_a_permanent_535() {
    let site = site(
        &plain_basic(),
        &[("Ops", &["op@plant.example"])],
        &[("SMTP_PASSWORD", "wrong")],
    );
    let error = site.service.send("Ops", "s", "b").expect_err("rejected");
    assert_eq!(error.kind(), "permanent");
    assert_eq!(error.code().as_str(), "smtp_auth_rejected");
    assert_eq!(error.status(), Some(535));
    assert!(
        !error.to_string().contains("wrong"),
        "the password never appears: {error}"
    );
    assert_eq!(site.buffered_count(), 0, "not buffered, not retried");
    let events = site.events.0.lock().unwrap();
    assert!(
        matches!(&events[..], [NotifyEvent::Rejected { retry: false, .. }]),
        "{events:?}"
    );
}

#[test]
fn oauth2_token_is_fetched_once_for_many_concurrent_sends() {
    let client_id = "scl-notify-1";
    let before = tokens_issued(client_id);
    let secret = env("SCL_TEST_OAUTH_CLIENT_SECRET");
    let site = site(
        &oauth2(client_id),
        &[("Ops", &["op@plant.example"])],
        &[("SMTP_CLIENT_SECRET", &secret)],
    );
    let ids: Vec<String> = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..4)
            .map(|thread| {
                let service = &site.service;
                scope.spawn(move || {
                    (0..5)
                        .map(|n| {
                            let delivery = service
                                .send("Ops", &format!("oauth {thread}/{n}"), "body")
                                .expect("delivered");
                            assert_eq!(delivery.status, DeliveryStatus::Delivered);
                            delivery.id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        senders
            .into_iter()
            .flat_map(|sender| sender.join().unwrap())
            .collect()
    });
    assert_eq!(ids.len(), 20);
    let client = site.service.client().unwrap();
    assert_eq!(client.stats().token_fetches, 1, "one token for every send");
    assert_eq!(
        tokens_issued(client_id) - before,
        1,
        "the OAuth server issued one token"
    );
    let hashes: std::collections::HashSet<String> = ids
        .iter()
        .map(|id| {
            let stored = stored_message(id, STORED_WITHIN);
            assert_eq!(stored.auth_mechanism.as_deref(), Some("XOAUTH2"));
            assert_eq!(stored.oauth_client_id.as_deref(), Some(client_id));
            assert_eq!(stored.auth_user.as_deref(), Some("scada@plant.example"));
            stored.token_sha256.unwrap()
        })
        .collect();
    assert_eq!(
        hashes.len(),
        1,
        "every connection logged in with the same token"
    );
}

#[test]
fn oauth2_token_is_refreshed_after_expiry() {
    let client_id = "scl-notify-short-1";
    let before = tokens_issued(client_id);
    let secret = env("SCL_TEST_OAUTH_CLIENT_SECRET");
    let site = site(
        &oauth2(client_id),
        &[("Ops", &["op@plant.example"])],
        &[("SMTP_CLIENT_SECRET", &secret)],
    );
    let first = site
        .service
        .send("Ops", "before expiry", "body")
        .expect("delivered");
    let client = site.service.client().unwrap();
    let cache = client.token_cache().expect("an OAuth2 client");
    assert!(cache.cached().is_some());
    // The short-lived client's tokens live SCL_TEST_OAUTH_SHORT_TTL_S seconds: wait until the
    // cache no longer offers this one (it is refreshed shortly before expiry).
    let until = Instant::now() + Duration::from_secs(30);
    while cache.cached().is_some() {
        assert!(
            Instant::now() < until,
            "the cached token never came due for refresh"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The pooled connection logged in with the old token is retired with it, so this send
    // logs in again, with a fresh token.
    let second = site
        .service
        .send("Ops", "after expiry", "body")
        .expect("delivered");
    assert_eq!(client.stats().token_fetches, 2);
    assert_eq!(tokens_issued(client_id) - before, 2);
    let first_token = stored_message(&first.id, STORED_WITHIN)
        .token_sha256
        .unwrap();
    let second_token = stored_message(&second.id, STORED_WITHIN)
        .token_sha256
        .unwrap();
    assert_ne!(
        first_token, second_token,
        "the second login used the new token"
    );
}

/// The SMTP server rejects the next XOAUTH2 login of `client_id` in `style`, once.
fn reject_next_login(client_id: &str, style: &str) {
    let control = PathBuf::from(env("SCL_TEST_SMTP_CONTROL_DIR"));
    std::fs::create_dir_all(&control).unwrap();
    std::fs::write(control.join(format!("reject_next_{client_id}")), style).unwrap();
}

fn rejected_token_is_refreshed_once(client_id: &str, style: &str) {
    let before = tokens_issued(client_id);
    let secret = env("SCL_TEST_OAUTH_CLIENT_SECRET");
    let site = site(
        &oauth2(client_id),
        &[("Ops", &["op@plant.example"])],
        &[("SMTP_CLIENT_SECRET", &secret)],
    );
    reject_next_login(client_id, style);
    let delivery = site
        .service
        .send("Ops", "after a rejected token", "body")
        .expect("delivered after one refresh");
    assert_eq!(delivery.status, DeliveryStatus::Delivered);
    assert_eq!(
        site.service.client().unwrap().stats().token_fetches,
        2,
        "one refresh after the rejection"
    );
    assert_eq!(tokens_issued(client_id) - before, 2);
    assert_eq!(
        stored_message(&delivery.id, STORED_WITHIN)
            .oauth_client_id
            .as_deref(),
        Some(client_id)
    );
}

#[test]
fn a_token_rejected_with_535_is_refreshed_once() {
    rejected_token_is_refreshed_once("scl-notify-2", "535");
}

#[test]
fn a_token_rejected_with_an_xoauth2_challenge_is_refreshed_once() {
    // lettre answers the Gmail-style `334 <base64 JSON>` with "This mechanism does not
    // expect a challenge"; that must count as a rejected token too.
    rejected_token_is_refreshed_once("scl-notify-3", "challenge");
}

#[test]
fn a_bad_client_secret_is_a_permanent_error() {
    let site = site(
        &oauth2("scl-notify-4"),
        &[("Ops", &["op@plant.example"])],
        &[("SMTP_CLIENT_SECRET", "not-the-secret")],
    );
    let error = site.service.send("Ops", "s", "b").expect_err("rejected");
    assert_eq!(error.kind(), "permanent");
    assert_eq!(error.code().as_str(), "oauth2_token_rejected");
    assert_eq!(error.status(), Some(401));
    assert!(error.to_string().contains("invalid_client"), "{error}");
    assert!(
        !format!("{error} {error:?}").contains("not-the-secret"),
        "the secret never appears"
    );
    assert_eq!(site.buffered_count(), 0, "not buffered, not retried");
}

// --- classification and store-and-forward -------------------------------------------------

/// A loopback port nobody listens on (for now).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn server_down_buffers_then_delivers_when_it_is_up() {
    let port = free_port();
    let smtp = format!(
        "host = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nretry = {{ max_retries = 30, interval_s = 1 }}\n"
    );
    let site = site(&smtp, &[("Ops", &["op@plant.example"])], &[]);
    let started = Instant::now();
    let delivery = site
        .service
        .send("Ops", "while down", "body")
        .expect("buffered");
    assert_eq!(delivery.status, DeliveryStatus::Buffered);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "connection refused does not wait for the timeout"
    );
    let report = site
        .saf
        .status(&delivery.id)
        .unwrap()
        .expect("on disk before Send returned");
    assert_eq!(report.status, Status::Retrying);
    assert_eq!(report.attempts, 1, "the script's own attempt counts");
    assert!(
        report
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("connect"),
        "{report:?}"
    );

    // The server comes up on that port: a proxy to the real SMTP server.
    let target = port_of_plain_server();
    let proxy = site
        .runtime
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .expect("the port is still free");
    site.runtime.spawn(async move {
        while let Ok((mut inbound, _)) = proxy.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) =
                    tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let _forwarder = site.forwarder();
    let report = site.wait_for_status(&delivery.id, Status::Delivered, Duration::from_secs(30));
    assert!(report.attempts >= 2);
    let stored = stored_message(&delivery.id, STORED_WITHIN);
    assert_eq!(stored.rcpt_tos, ["op@plant.example"]);
}

fn port_of_plain_server() -> u16 {
    port("SCL_TEST_SMTP_PLAIN_PORT")
}

#[test]
fn smtp_5xx_is_returned_to_the_script_and_nothing_is_buffered() {
    let (key, value) = password();
    let site = site(
        &plain_basic(),
        &[("Ops", &["reject550@plant.example"])],
        &[(key, &value)],
    );
    let error = site.service.send("Ops", "s", "b").expect_err("permanent");
    assert_eq!(error.kind(), "permanent");
    assert_eq!(error.code().as_str(), "smtp_reply");
    assert_eq!(error.status(), Some(550));
    assert_eq!(error.to_json()["status"], 550);
    assert_eq!(site.buffered_count(), 0, "nothing buffered");
    let events = site.events.0.lock().unwrap();
    assert!(
        matches!(&events[..], [NotifyEvent::Rejected { retry: false, .. }]),
        "written to the event log: {events:?}"
    );
}

#[test]
fn smtp_451_is_buffered_retried_and_parked_after_the_last_retry() {
    let (key, value) = password();
    let smtp = format!(
        "{}retry = {{ max_retries = 2, interval_s = 1 }}\n",
        plain_basic()
    );
    let site = site(
        &smtp,
        &[("Ops", &["tempfail451@plant.example"])],
        &[(key, &value)],
    );
    let delivery = site.service.send("Ops", "s", "b").expect("buffered");
    assert_eq!(delivery.status, DeliveryStatus::Buffered);
    let report = site.saf.status(&delivery.id).unwrap().unwrap();
    assert_eq!(report.status, Status::Retrying);
    assert_eq!(
        report
            .history
            .last()
            .and_then(|attempt| attempt.status_code),
        Some(451)
    );
    let _forwarder = site.forwarder();
    let report = site.wait_for_status(&delivery.id, Status::Parked, Duration::from_secs(30));
    assert_eq!(report.attempts, 3, "the first attempt and two retries");
    assert!(
        report
            .history
            .iter()
            .all(|attempt| attempt.status_code == Some(451)),
        "{report:?}"
    );
}

#[test]
fn a_silent_server_times_out_and_the_notification_is_buffered() {
    // Accepts connections and never says a word.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::thread::spawn(move || listener.accept().map(|(socket, _)| socket));
    let smtp = format!("host = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\ntimeout_s = 1\n");
    let site = site(&smtp, &[("Ops", &["op@plant.example"])], &[]);
    let delivery = site.service.send("Ops", "s", "b").expect("buffered");
    assert_eq!(delivery.status, DeliveryStatus::Buffered);
    let report = site.saf.status(&delivery.id).unwrap().unwrap();
    assert!(
        report
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("timeout"),
        "{report:?}"
    );
    drop(held.join());
}

#[test]
fn the_pool_never_opens_more_than_max_connections() {
    let (key, value) = password();
    let smtp = format!("{}max_connections = 2\n", plain_basic());
    let site = site(&smtp, &[("Ops", &["op@plant.example"])], &[(key, &value)]);
    let ids: Vec<String> = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..6)
            .map(|thread| {
                let service = &site.service;
                let saf = &site.saf;
                scope.spawn(move || {
                    (0..4)
                        .map(|n| {
                            let delivery = service
                                .send("Ops", &format!("pool {thread}/{n}"), "b")
                                .expect("sent");
                            if delivery.status != DeliveryStatus::Delivered {
                                let report = saf.status(&delivery.id).unwrap();
                                panic!("send {thread}/{n} was not delivered: {report:?}");
                            }
                            delivery.id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        senders
            .into_iter()
            .flat_map(|sender| sender.join().unwrap())
            .collect()
    });
    let client = site.service.client().unwrap();
    assert_eq!(client.stats().messages_sent, 24);
    assert!(
        client.stats().connections_opened <= 2,
        "{:?}",
        client.stats()
    );
    assert!(client.open_connections() <= 2);
    for id in &ids {
        stored_message(id, STORED_WITHIN);
    }
}

#[test]
fn an_unknown_list_is_a_runtime_error() {
    let (key, value) = password();
    let site = site(
        &plain_basic(),
        &[("Operators", &["op@plant.example"])],
        &[(key, &value)],
    );
    let error = site
        .service
        .send("Operator", "s", "b")
        .expect_err("unknown list");
    assert_eq!(error.kind(), "not_found");
    assert_eq!(error.code().as_str(), "unknown_notification_list");
    assert!(
        error.to_string().contains("did you mean `Operators`"),
        "{error}"
    );
    assert_eq!(
        site.service.client().unwrap().stats().connections_opened,
        0,
        "nothing was sent"
    );
}

// --- the script-facing wiring --------------------------------------------------------------

#[test]
fn a_script_sends_through_the_engine_and_catches_a_permanent_error() {
    let (key, value) = password();
    let site = site(
        &plain_basic(),
        &[
            ("Operators", &["op@plant.example"]),
            ("Broken", &["reject550@plant.example"]),
        ],
        &[(key, &value)],
    );
    let mut engine = scl_compiler::Engine::default();
    for (name, ty) in scl_stdlib::signatures::module_table().types {
        engine.register_named_type(&name, ty);
    }
    scl_runtime::notify::host::register(&mut engine, Arc::clone(&site.service))
        .expect("registered");
    let source = r#"
fn main() -> string {
    let d = Notify.To("Operators").Send("from a script", "body");
    var code = "none";
    try {
        let ignored = Notify.To("Broken").Send("s", "b");
    } catch e {
        code = e.code;
    }
    var unknown = "none";
    try {
        let ignored = Notify.To("Operatorz");
    } catch e {
        unknown = e.kind;
    }
    return d.id + " " + d.status + " " + code + " " + unknown;
}
"#;
    let options = scl_compiler::CompileOptions {
        kind: Some(scl_lang::ScriptKind::Instance),
        require_main: true,
    };
    let script = engine
        .compile(source, &options)
        .expect("the script compiles");
    // Called on a plain thread, as a script thread would.
    let outcome = std::thread::spawn(move || {
        script.call_main_json(
            &serde_json::json!({}),
            &scl_compiler::CallOptions::default(),
        )
    })
    .join()
    .unwrap();
    let result = outcome.result.expect("the script runs").to_json();
    let text = result.as_str().expect("a string");
    let parts: Vec<&str> = text.split(' ').collect();
    assert_eq!(
        parts[1..],
        ["delivered", "smtp_reply", "not_found"],
        "{text}"
    );
    let stored = stored_message(parts[0], STORED_WITHIN);
    assert_eq!(stored.rcpt_tos, ["op@plant.example"]);
}
