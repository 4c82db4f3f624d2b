//! The OAuth2 access-token cache of the SMTP client (CD-NS-6).
//!
//! What it promises:
//! - **Fetched on first use**, not at start-up: a site whose token endpoint is down still
//!   starts, and its first notification is buffered.
//! - **Cached** until shortly before it expires ([`refresh_after`]); the warm path
//!   ([`TokenCache::cached`]) is a read lock, a clock read and a reference-count increment:
//!   no I/O, no await, well under a microsecond.
//! - **One refresh at a time**: concurrent sends that find no usable token wait for the same
//!   fetch (an async mutex; the holder re-checks the cache), so a burst of sends after expiry
//!   makes one token request.
//! - **Refreshed once after an authentication failure**: the SMTP client calls
//!   [`TokenCache::invalidate`] with the generation of the token that was rejected; only the
//!   first such call for a generation drops it, so many sends rejected with the same stale
//!   token still cause one refresh.
//! - **Secrets stay inside**: the client secret and the token are [`Secret`]s; errors carry
//!   the endpoint's `error` code and the transport's message, never either value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use scl_stdlib::notify::token::{TokenForm, parse_token_response, refresh_after};
use scl_stdlib::notify::{OAuth2Settings, Secret, SmtpFailure};

/// A token in the cache.
#[derive(Debug)]
pub struct CachedToken {
    /// The bearer token.
    pub value: Secret,
    /// Counts fetches: the SMTP client hands it back to [`TokenCache::invalidate`].
    pub generation: u64,
    /// When it stops being used (shortly before it expires).
    pub refresh_at: Instant,
}

/// The access-token cache of one SMTP client.
pub struct TokenCache {
    token_url: String,
    form: TokenForm,
    http: reqwest::Client,
    current: RwLock<Option<Arc<CachedToken>>>,
    refresh: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TokenCache")
            .field("token_url", &self.token_url)
            .field("form", &self.form)
            .field("fetches", &self.fetches.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache for these settings, fetching with `http` (which carries the timeout and any
    /// extra trusted roots).
    pub fn new(settings: &OAuth2Settings, http: reqwest::Client) -> TokenCache {
        TokenCache {
            token_url: settings.token_url.clone(),
            form: TokenForm::new(settings),
            http,
            current: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        }
    }

    /// The cached token, if there is one that is not due for refresh: the warm path.
    pub fn cached(&self) -> Option<Arc<CachedToken>> {
        let current = self
            .current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        current
            .as_ref()
            .filter(|token| Instant::now() < token.refresh_at)
            .cloned()
    }

    /// A usable token: the cached one, or a fresh one (one fetch shared by every caller that
    /// needs it at the same time).
    pub async fn token(&self) -> Result<Arc<CachedToken>, SmtpFailure> {
        if let Some(token) = self.cached() {
            return Ok(token);
        }
        let _refreshing = self.refresh.lock().await;
        // Whoever held the lock before us may have fetched one already.
        if let Some(token) = self.cached() {
            return Ok(token);
        }
        let received = Instant::now();
        let fetched = self.fetch().await?;
        let generation = self.fetches.fetch_add(1, Ordering::Relaxed) + 1;
        let token = Arc::new(CachedToken {
            value: fetched.value,
            generation,
            refresh_at: received + refresh_after(fetched.lifetime),
        });
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::clone(&token));
        tracing::debug!(
            generation,
            lifetime_s = fetched.lifetime.as_secs(),
            "SMTP OAuth2 token fetched"
        );
        Ok(token)
    }

    /// Drop the cached token if it is still the one of `generation` (the server rejected it),
    /// so the next [`TokenCache::token`] fetches a new one.
    pub fn invalidate(&self, generation: u64) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if current
            .as_ref()
            .is_some_and(|token| token.generation == generation)
        {
            *current = None;
        }
    }

    /// How many tokens were fetched since start.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    async fn fetch(&self) -> Result<scl_stdlib::notify::token::AccessToken, SmtpFailure> {
        let response = self
            .http
            .post(&self.token_url)
            .form(&self.form.fields())
            .send()
            .await
            .map_err(|error| unavailable(&error))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|error| unavailable(&error))?;
        parse_token_response(status, &body)
    }
}

/// A transport failure of the token request: transient. The message names the endpoint (no
/// secret is in a URL we build) and what failed, without the request body.
fn unavailable(error: &reqwest::Error) -> SmtpFailure {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    };
    let mut detail = format!("token endpoint {what}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    SmtpFailure::TokenUnavailable {
        status: None,
        detail,
    }
}

/// The HTTP client for token requests: the SMTP timeout, extra trusted roots, no redirects
/// (a token endpoint that redirects is misconfigured).
pub fn http_client(
    timeout: Duration,
    extra_roots: &[reqwest::Certificate],
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    for root in extra_roots {
        builder = builder.add_root_certificate(root.clone());
    }
    builder
        .build()
        .map_err(|error| format!("cannot build the HTTP client for OAuth2 tokens: {error}"))
}
