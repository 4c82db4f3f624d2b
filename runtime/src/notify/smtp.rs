//! The SMTP client of Notify: lettre's async connection over tokio and rustls, with our own
//! connection pool, login (PLAIN / LOGIN / XOAUTH2) and classification of every failure.
//!
//! What it promises:
//! - **At most `max_connections` connections** exist at once (a semaphore held for the whole
//!   life of each connection, idle ones included). A send that finds none free waits up to
//!   the timeout for an idle one or a free slot, then fails transiently (CD-NS-7).
//! - **Every step is bounded by the timeout**: waiting for a connection, connecting (TCP,
//!   TLS, greeting, `EHLO`, `STARTTLS`, login), and sending one message.
//! - **TLS modes**: none; STARTTLS (a server that does not offer it is a permanent error,
//!   never a fallback to clear text); implicit TLS. Certificates are checked against the
//!   built-in public roots plus the deployment's extra roots.
//! - **Connections are reused** while idle for less than [`IDLE_TIMEOUT`] and while the
//!   OAuth2 token they logged in with is not due for refresh. If a reused connection turns out
//!   dead before the server answered, the message is sent once more on a fresh connection
//!   (the one retry inside an attempt).
//! - **OAuth2**: the token comes from the [`TokenCache`]; when the server rejects it (535, or
//!   the XOAUTH2 `334` error challenge that lettre reports as "This mechanism does not expect
//!   a challenge"), the token is invalidated and the login tried once more with a fresh one
//!   before the failure counts.
//! - **No panics, no secrets**: every lettre, TLS and I/O error becomes an [`SmtpFailure`]
//!   whose text holds no password or token.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use scl_stdlib::notify::{Email, SmtpAuth, SmtpFailure, SmtpSettings, TlsMode};

use super::render::render;
use super::token::TokenCache;

/// How long an idle connection is kept for reuse. Servers close idle sessions after a few
/// minutes (aiosmtpd after 5, Exchange Online after 10); reusing only fresh ones keeps the
/// chance of finding a dead one low.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Counters of one client, for tests, metrics and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SmtpClientStats {
    /// Connections opened (and logged in) since start.
    pub connections_opened: u64,
    /// Messages accepted by the server.
    pub messages_sent: u64,
    /// OAuth2 tokens fetched.
    pub token_fetches: u64,
}

struct IdleConnection {
    connection: AsyncSmtpConnection,
    permit: OwnedSemaphorePermit,
    since: Instant,
    /// When the OAuth2 token it logged in with came due for refresh: no connection outlives
    /// its credential.
    login_valid_until: Option<Instant>,
}

/// A logged-in connection with the permit it occupies.
struct OpenConnection {
    connection: AsyncSmtpConnection,
    permit: OwnedSemaphorePermit,
    login_valid_until: Option<Instant>,
}

/// What a sender gets from the pool.
enum Checkout {
    Idle(Box<IdleConnection>),
    New(OwnedSemaphorePermit),
}

/// How the client logs in, with what it needs at hand.
enum Login {
    None,
    Basic(Credentials),
    OAuth2 {
        username: String,
        tokens: Arc<TokenCache>,
    },
}

/// The SMTP client of one site.
pub struct SmtpClient {
    host: String,
    port: u16,
    tls: TlsMode,
    tls_parameters: Option<TlsParameters>,
    hello: ClientId,
    timeout: Duration,
    login: Login,
    permits: Arc<Semaphore>,
    max_connections: u32,
    idle: Mutex<Vec<IdleConnection>>,
    /// Signalled when a connection is returned to `idle`.
    returned: tokio::sync::Notify,
    connections_opened: AtomicU64,
    messages_sent: AtomicU64,
}

impl std::fmt::Debug for SmtpClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SmtpClient")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl SmtpClient {
    /// A client for these settings. `extra_roots_pem` are the PEM texts of the extra trusted
    /// roots (already read from the files the settings name); `http` is the client for OAuth2
    /// token requests. Fails on settings that cannot work (an unreadable certificate).
    pub fn new(
        settings: &SmtpSettings,
        extra_roots_pem: &[Vec<u8>],
        http: Option<reqwest::Client>,
    ) -> Result<SmtpClient, String> {
        let tls_parameters =
            match settings.tls {
                TlsMode::None => None,
                TlsMode::Starttls | TlsMode::Implicit => {
                    let mut builder = TlsParameters::builder(settings.host.clone());
                    for pem in extra_roots_pem {
                        let certificate = Certificate::from_pem(pem).map_err(|error| {
                            format!("an extra trusted root is not a PEM certificate: {error}")
                        })?;
                        builder = builder.add_root_certificate(certificate);
                    }
                    Some(builder.build_rustls().map_err(|error| {
                        format!("cannot set up TLS for the SMTP server: {error}")
                    })?)
                }
            };
        let login = match &settings.auth {
            SmtpAuth::None => Login::None,
            SmtpAuth::Basic { username, password } => Login::Basic(Credentials::new(
                username.clone(),
                password.expose().to_owned(),
            )),
            SmtpAuth::OAuth2(oauth) => {
                let http = http.ok_or_else(|| {
                    "OAuth2 needs an HTTP client for its token requests".to_owned()
                })?;
                Login::OAuth2 {
                    username: oauth.username.clone(),
                    tokens: Arc::new(TokenCache::new(oauth, http)),
                }
            }
        };
        let max_connections = settings.max_connections.max(1);
        Ok(SmtpClient {
            host: settings.host.clone(),
            port: settings.port,
            tls: settings.tls,
            tls_parameters,
            hello: ClientId::default(),
            timeout: settings.timeout,
            login,
            permits: Arc::new(Semaphore::new(max_connections as usize)),
            max_connections,
            idle: Mutex::new(Vec::new()),
            returned: tokio::sync::Notify::new(),
            connections_opened: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
        })
    }

    /// Counters since start.
    pub fn stats(&self) -> SmtpClientStats {
        SmtpClientStats {
            connections_opened: self.connections_opened.load(Ordering::Relaxed),
            messages_sent: self.messages_sent.load(Ordering::Relaxed),
            token_fetches: match &self.login {
                Login::OAuth2 { tokens, .. } => tokens.fetches(),
                _ => 0,
            },
        }
    }

    /// The OAuth2 token cache, when the client logs in with OAuth2.
    pub fn token_cache(&self) -> Option<&TokenCache> {
        match &self.login {
            Login::OAuth2 { tokens, .. } => Some(tokens),
            _ => None,
        }
    }

    /// Connections open now, idle or busy.
    pub fn open_connections(&self) -> usize {
        self.max_connections as usize - self.permits.available_permits()
    }

    /// Send one email (one attempt). Must run on a tokio runtime.
    pub async fn send(&self, email: &Email) -> Result<(), SmtpFailure> {
        let (envelope, bytes) = render(email)?;
        let permit = match self.checkout().await? {
            Checkout::New(permit) => permit,
            Checkout::Idle(idle) => {
                let IdleConnection {
                    mut connection,
                    permit,
                    login_valid_until,
                    ..
                } = *idle;
                match tokio::time::timeout(self.timeout, connection.send(&envelope, &bytes)).await {
                    Ok(Ok(_)) => {
                        self.sent(OpenConnection {
                            connection,
                            permit,
                            login_valid_until,
                        });
                        return Ok(());
                    }
                    // The server answered: that answer is the outcome.
                    Ok(Err(error)) if error.status().is_some() => return Err(classify(&error)),
                    Ok(Err(error)) => {
                        tracing::debug!(error = %classify(&error), "pooled SMTP connection was dead; reconnecting");
                    }
                    Err(_) => {
                        return Err(SmtpFailure::Timeout {
                            detail: format!(
                                "no answer to the message within {} s",
                                self.timeout.as_secs_f64()
                            ),
                        });
                    }
                }
                // The dead connection's permit is reused for the new one.
                permit
            }
        };
        let open = self.open(permit).await?;
        self.send_on(open, &envelope, &bytes).await
    }

    /// An idle connection, or a permit to open a new one: whichever comes first, waiting at
    /// most the timeout. Idle connections keep their permits, so a sender waiting for a permit
    /// also wakes when a connection is returned to the pool.
    async fn checkout(&self) -> Result<Checkout, SmtpFailure> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            // Registered before looking, so a connection returned in between is not missed.
            let returned = self.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(idle) = self.take_idle() {
                return Ok(Checkout::Idle(Box::new(idle)));
            }
            if let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() {
                return Ok(Checkout::New(permit));
            }
            tokio::select! {
                _ = &mut returned => {}
                permit = Arc::clone(&self.permits).acquire_owned() => match permit {
                    Ok(permit) => return Ok(Checkout::New(permit)),
                    Err(_) => return Err(SmtpFailure::Network { detail: "the SMTP client was shut down".to_owned() }),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(SmtpFailure::Timeout {
                        detail: format!(
                            "no SMTP connection free within {} s (all {} in use)",
                            self.timeout.as_secs_f64(),
                            self.max_connections
                        ),
                    });
                }
            }
        }
    }

    async fn send_on(
        &self,
        mut open: OpenConnection,
        envelope: &lettre::address::Envelope,
        bytes: &[u8],
    ) -> Result<(), SmtpFailure> {
        match tokio::time::timeout(self.timeout, open.connection.send(envelope, bytes)).await {
            Ok(Ok(_)) => {
                self.sent(open);
                Ok(())
            }
            Ok(Err(error)) => Err(classify(&error)),
            Err(_) => Err(SmtpFailure::Timeout {
                detail: format!(
                    "no answer to the message within {} s",
                    self.timeout.as_secs_f64()
                ),
            }),
        }
    }

    fn sent(&self, open: OpenConnection) {
        self.messages_sent.fetch_add(1, Ordering::Relaxed);
        if !open.connection.has_broken() {
            let mut idle = self
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            idle.push(IdleConnection {
                connection: open.connection,
                permit: open.permit,
                since: Instant::now(),
                login_valid_until: open.login_valid_until,
            });
            drop(idle);
            self.returned.notify_one();
        }
    }

    /// The most recently used idle connection that is still fresh; stale ones are dropped
    /// (closing the socket and freeing their permits).
    fn take_idle(&self) -> Option<IdleConnection> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        idle.retain(|idle| {
            now.duration_since(idle.since) < IDLE_TIMEOUT
                && idle.login_valid_until.is_none_or(|until| now < until)
                && !idle.connection.has_broken()
        });
        idle.pop()
    }

    /// Open and log in a connection within the timeout; with OAuth2, one more login with a
    /// fresh token when the server rejects the cached one.
    async fn open(&self, permit: OwnedSemaphorePermit) -> Result<OpenConnection, SmtpFailure> {
        let timed_out = || SmtpFailure::Timeout {
            detail: format!(
                "could not connect and log in to {}:{} within {} s",
                self.host,
                self.port,
                self.timeout.as_secs_f64()
            ),
        };
        let mut refreshed = false;
        loop {
            let attempt = tokio::time::timeout(self.timeout, self.connect_and_login()).await;
            match attempt {
                Ok(Ok((connection, login_valid_until))) => {
                    self.connections_opened.fetch_add(1, Ordering::Relaxed);
                    return Ok(OpenConnection {
                        connection,
                        permit,
                        login_valid_until,
                    });
                }
                Ok(Err(LoginFailure {
                    failure,
                    token_generation: Some(generation),
                })) if failure.is_rejected_credentials() && !refreshed => {
                    if let Login::OAuth2 { tokens, .. } = &self.login {
                        tracing::info!("SMTP server rejected the OAuth2 token; fetching a new one");
                        tokens.invalidate(generation);
                    }
                    refreshed = true;
                }
                Ok(Err(LoginFailure { failure, .. })) => return Err(failure),
                Err(_) => return Err(timed_out()),
            }
        }
    }

    /// A connected, logged-in connection, and until when its login may be reused (the OAuth2
    /// token's refresh time).
    async fn connect_and_login(
        &self,
    ) -> Result<(AsyncSmtpConnection, Option<Instant>), LoginFailure> {
        let implicit = match self.tls {
            TlsMode::Implicit => self.tls_parameters.clone(),
            _ => None,
        };
        let mut connection = AsyncSmtpConnection::connect_tokio1(
            (self.host.as_str(), self.port),
            Some(self.timeout),
            &self.hello,
            implicit,
            None,
        )
        .await
        .map_err(|error| LoginFailure::from(classify(&error)))?;
        if self.tls == TlsMode::Starttls {
            if !connection.can_starttls() {
                connection.abort().await;
                return Err(LoginFailure::from(SmtpFailure::Unsupported {
                    detail: format!(
                        "{}:{} does not offer STARTTLS, and tls = \"starttls\" requires it",
                        self.host, self.port
                    ),
                }));
            }
            let parameters = self.tls_parameters.clone().ok_or_else(|| {
                LoginFailure::from(SmtpFailure::Unsupported {
                    detail: "no TLS parameters for STARTTLS".to_owned(),
                })
            })?;
            connection
                .starttls(parameters, &self.hello)
                .await
                .map_err(|error| LoginFailure::from(classify(&error)))?;
        }
        match &self.login {
            Login::None => Ok((connection, None)),
            Login::Basic(credentials) => {
                connection
                    .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                    .await
                    .map_err(|error| LoginFailure::from(classify(&error)))?;
                Ok((connection, None))
            }
            Login::OAuth2 { username, tokens } => {
                let token = tokens.token().await.map_err(LoginFailure::from)?;
                let credentials =
                    Credentials::new(username.clone(), token.value.expose().to_owned());
                if let Err(error) = connection.auth(&[Mechanism::Xoauth2], &credentials).await {
                    // After an error challenge the server still waits for our answer: this
                    // connection is of no further use.
                    connection.abort().await;
                    return Err(LoginFailure {
                        failure: classify(&error),
                        token_generation: Some(token.generation),
                    });
                }
                Ok((connection, Some(token.refresh_at)))
            }
        }
    }
}

struct LoginFailure {
    failure: SmtpFailure,
    /// The token generation used, when an OAuth2 login failed.
    token_generation: Option<u64>,
}

impl From<SmtpFailure> for LoginFailure {
    fn from(failure: SmtpFailure) -> LoginFailure {
        LoginFailure {
            failure,
            token_generation: None,
        }
    }
}

/// The lettre error as an [`SmtpFailure`]. lettre reports the XOAUTH2 error challenge as a
/// client error "This mechanism does not expect a challenge": that is a rejected token.
pub fn classify(error: &lettre::transport::smtp::Error) -> SmtpFailure {
    let detail = error_chain(error);
    if let Some(code) = error.status() {
        let detail = match std::error::Error::source(error) {
            Some(source) => source.to_string(),
            None => detail,
        };
        return SmtpFailure::Reply {
            code: u16::from(code),
            detail,
        };
    }
    if error.is_timeout() {
        return SmtpFailure::Timeout { detail };
    }
    if error.is_tls() {
        return SmtpFailure::Tls { detail };
    }
    if error.is_client() {
        if detail.contains("does not expect a challenge") {
            return SmtpFailure::AuthChallenge { detail };
        }
        return SmtpFailure::Unsupported { detail };
    }
    match io_error_kind(error) {
        Some(
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NotFound,
        ) => SmtpFailure::Connect { detail },
        Some(io::ErrorKind::TimedOut) => SmtpFailure::Timeout { detail },
        // tokio-rustls reports handshake and certificate failures as InvalidData, which lettre
        // wraps as a connection error.
        Some(io::ErrorKind::InvalidData) => SmtpFailure::Tls { detail },
        _ if detail.starts_with("Connection error") => SmtpFailure::Connect { detail },
        _ => SmtpFailure::Network { detail },
    }
}

fn io_error_kind(error: &lettre::transport::smtp::Error) -> Option<io::ErrorKind> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io_error) = cause.downcast_ref::<io::Error>() {
            return Some(io_error.kind());
        }
        source = cause.source();
    }
    None
}

/// The error's own text and its causes, `: `-separated, without repeats (lettre's `Display`
/// already includes its direct source).
fn error_chain(error: &lettre::transport::smtp::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error).and_then(std::error::Error::source);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
