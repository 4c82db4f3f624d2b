//! Connected apps: OAuth2 client credentials for inbound callers (issue 10).
//!
//! `POST /oauth/token` (RFC 6749 §4.4; client authentication by HTTP Basic
//! or by form fields) issues a bearer token; `/api/*` accepts
//! `Authorization: Bearer` as an alternative to `X-API-Key`. A token is
//! `scl1.<payload>.<signature>`: the payload (app, granted scopes, expiry, a
//! random id) signed with HMAC-SHA256 under the key named by
//! `[central] token_key_env`, so any central node with the same key checks it
//! without shared state. `POST /oauth/revoke` (RFC 7009) records the token's
//! id until it expires, in LMDB under the node's data directory: nodes that
//! share a data directory share revocations; elsewhere the token's short
//! lifetime (`token_ttl_s`, default 900 s) bounds it.
//!
//! Client secrets are stored as SHA-256 hashes and compared in constant time;
//! a rotated secret keeps working until `previous_valid_until`. An app may be
//! limited to CIDR ranges (checked against the TCP peer) and to a number of
//! calls per hour per node (off by default: seed 000 asks for no rate limits).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::deployment::{AppDef, Deployment};
use crate::timelog::{TimeLog, Window, now_ms};

type HmacSha256 = Hmac<Sha256>;

/// One app, ready for checks.
struct App {
    name: String,
    client_id: String,
    /// (hash, accepted until ms) — `None`: no end.
    secrets: Vec<([u8; 32], Option<i64>)>,
    /// Empty: every method (`"*"`).
    scopes: Vec<String>,
    allow: Vec<ipnet::IpNet>,
    rate_limit_per_hour: Option<u64>,
    ttl: Duration,
    enabled: bool,
}

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub app: String,
    /// Empty: every method.
    pub scopes: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    app: String,
    scopes: Vec<String>,
    exp: i64,
    jti: String,
}

#[derive(Serialize, Deserialize)]
struct Revoked {
    jti: String,
}

/// Why a token request or a bearer call is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// RFC 6749 `invalid_client` (401).
    InvalidClient,
    /// RFC 6749 `invalid_request` (400) with a description.
    InvalidRequest(String),
    UnsupportedGrantType,
    InvalidScope(String),
    /// The bearer token is malformed, forged, expired or revoked (401).
    InvalidToken,
    /// The caller's address is outside the app's allow-list (403).
    IpNotAllowed,
    /// Over the hourly limit (429), with the seconds to wait.
    RateLimited(u64),
}

/// Every app of the deployment, the signing key and the revocations.
pub(crate) struct Apps {
    apps: Vec<App>,
    key: Vec<u8>,
    revoked: Option<TimeLog>,
    /// app → (hour, calls in it)
    usage: Mutex<HashMap<String, (i64, u64)>>,
}

fn decode_hash(hex: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

fn parse_range(text: &str) -> Option<ipnet::IpNet> {
    text.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

impl App {
    fn from_def(name: &str, def: &AppDef) -> App {
        let mut secrets = Vec::new();
        if let Some(hash) = decode_hash(&def.secret_sha256) {
            secrets.push((hash, None));
        }
        if let (Some(hash), Some(until)) = (
            def.previous_secret_sha256.as_deref().and_then(decode_hash),
            def.previous_valid_until
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()),
        ) {
            secrets.push((hash, Some(until.timestamp_millis())));
        }
        let scopes: Vec<String> = def.scopes.iter().map(|s| s.get_ref().clone()).collect();
        App {
            name: name.to_owned(),
            client_id: def.client_id.clone(),
            secrets,
            scopes: if scopes.iter().any(|s| s == "*") {
                Vec::new()
            } else {
                scopes
            },
            allow: def
                .allow_ips
                .iter()
                .filter_map(|r| parse_range(r))
                .collect(),
            rate_limit_per_hour: def.rate_limit_per_hour,
            ttl: Duration::from_secs(def.token_ttl_s.max(1)),
            enabled: def.enabled,
        }
    }

    /// Constant time over every stored secret.
    fn secret_matches(&self, secret: &str, now: i64) -> bool {
        let presented: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let mut matched = subtle::Choice::from(0);
        for (hash, until) in &self.secrets {
            let live = subtle::Choice::from(u8::from(until.is_none_or(|u| now < u)));
            matched |= hash.ct_eq(&presented) & live;
        }
        matched.into()
    }

    fn allows(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.allow.is_empty() || self.allow.iter().any(|range| range.contains(&peer))
    }
}

impl Apps {
    /// The deployment's apps; `key` signs tokens; revocations are kept in
    /// `data_dir` (none: in no file, only checked by signature and expiry).
    pub(crate) fn new(
        deployment: &Deployment,
        key: Vec<u8>,
        data_dir: Option<&Path>,
    ) -> Result<Apps, String> {
        let apps = deployment
            .file
            .apps
            .iter()
            .map(|(name, def)| App::from_def(name, def))
            .collect();
        let revoked = match data_dir {
            Some(dir) if !deployment.file.apps.is_empty() => Some(TimeLog::open(
                &dir.join("central").join("revoked-tokens"),
                Duration::ZERO,
                "token revocations",
            )?),
            _ => None,
        };
        Ok(Apps {
            apps,
            key,
            revoked,
            usage: Mutex::new(HashMap::new()),
        })
    }

    fn app(&self, name: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.name == name)
    }

    /// Checks the client's credentials (and address); the app on success.
    fn client(&self, client_id: &str, secret: &str, peer: IpAddr) -> Result<&App, Refusal> {
        let now = now_ms();
        let app = self
            .apps
            .iter()
            .find(|a| a.client_id.as_bytes().ct_eq(client_id.as_bytes()).into())
            .filter(|a| a.enabled);
        // Hash and compare even for an unknown client id, so timing says nothing.
        let matched = match app {
            Some(app) => app.secret_matches(secret, now),
            None => {
                let _ = Sha256::digest(secret.as_bytes());
                false
            }
        };
        let app = app.filter(|_| matched).ok_or(Refusal::InvalidClient)?;
        if !app.allows(peer) {
            return Err(Refusal::IpNotAllowed);
        }
        Ok(app)
    }

    /// `POST /oauth/token`: `(token, expires_in_s, scopes)`.
    pub(crate) fn issue(
        &self,
        form: &HashMap<String, String>,
        basic: Option<(String, String)>,
        peer: IpAddr,
    ) -> Result<(String, u64, Vec<String>), Refusal> {
        let (client_id, secret) = match (basic, form.get("client_id"), form.get("client_secret")) {
            (Some(basic), None, None) => basic,
            (None, Some(id), Some(secret)) => (id.clone(), secret.clone()),
            (Some(_), _, _) => {
                return Err(Refusal::InvalidRequest(
                    "use one client authentication: HTTP Basic or client_id/client_secret".into(),
                ));
            }
            _ => return Err(Refusal::InvalidClient),
        };
        let app = self.client(&client_id, &secret, peer)?;
        match form.get("grant_type").map(String::as_str) {
            Some("client_credentials") => {}
            Some(_) => return Err(Refusal::UnsupportedGrantType),
            None => return Err(Refusal::InvalidRequest("`grant_type` is missing".into())),
        }
        let scopes: Vec<String> = match form.get("scope") {
            None => app.scopes.clone(),
            Some(asked) => {
                let asked: Vec<String> = asked.split_whitespace().map(str::to_owned).collect();
                if let Some(extra) = asked
                    .iter()
                    .find(|s| !app.scopes.is_empty() && !app.scopes.contains(s))
                {
                    return Err(Refusal::InvalidScope(format!(
                        "scope `{extra}` is not granted to this app"
                    )));
                }
                asked
            }
        };
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|_| Refusal::InvalidRequest("no randomness".into()))?;
        let payload = Payload {
            app: app.name.clone(),
            scopes: scopes.clone(),
            exp: now_ms() + app.ttl.as_millis() as i64,
            jti: URL_SAFE_NO_PAD.encode(jti),
        };
        let payload = serde_json::to_vec(&payload)
            .map_err(|e| Refusal::InvalidRequest(format!("cannot encode the token: {e}")))?;
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let signature = self
            .sign(&payload)
            .ok_or_else(|| Refusal::InvalidRequest("cannot sign the token".into()))?;
        let signature = URL_SAFE_NO_PAD.encode(signature);
        Ok((
            format!("scl1.{payload}.{signature}"),
            app.ttl.as_secs(),
            scopes,
        ))
    }

    /// HMAC-SHA256 of `payload` (HMAC takes keys of any length, so `None`
    /// does not happen in practice).
    fn sign(&self, payload: &str) -> Option<Vec<u8>> {
        let mut mac = HmacSha256::new_from_slice(&self.key).ok()?;
        mac.update(payload.as_bytes());
        Some(mac.finalize().into_bytes().to_vec())
    }

    /// The payload of a well-signed token (expired or not).
    fn decode(&self, token: &str) -> Option<Payload> {
        let rest = token.strip_prefix("scl1.")?;
        let (payload, signature) = rest.split_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = HmacSha256::new_from_slice(&self.key).ok()?;
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }

    fn is_revoked(&self, jti: &str) -> bool {
        let Some(log) = &self.revoked else {
            return false;
        };
        let window = Window {
            since_ms: Some(now_ms()),
            until_ms: None,
            limit: 1,
        };
        log.query(&window, |r: &Revoked| r.jti == jti)
            .map(|found| !found.is_empty())
            // A log that cannot be read must not let revoked tokens through.
            .unwrap_or(true)
    }

    /// A bearer call: the grant, after the signature, expiry, revocation,
    /// address and rate checks.
    pub(crate) fn bearer(&self, token: &str, peer: IpAddr) -> Result<Grant, Refusal> {
        let payload = self.decode(token).ok_or(Refusal::InvalidToken)?;
        let now = now_ms();
        if payload.exp <= now || self.is_revoked(&payload.jti) {
            return Err(Refusal::InvalidToken);
        }
        let app = self
            .app(&payload.app)
            .filter(|a| a.enabled)
            .ok_or(Refusal::InvalidToken)?;
        if !app.allows(peer) {
            return Err(Refusal::IpNotAllowed);
        }
        if let Some(limit) = app.rate_limit_per_hour {
            let hour = now / 3_600_000;
            let mut usage = self.usage.lock().map_err(|_| Refusal::RateLimited(1))?;
            let entry = usage.entry(app.name.clone()).or_insert((hour, 0));
            if entry.0 != hour {
                *entry = (hour, 0);
            }
            if entry.1 >= limit {
                let wait = ((hour + 1) * 3_600_000 - now).max(1_000) / 1_000;
                return Err(Refusal::RateLimited(wait as u64));
            }
            entry.1 += 1;
        }
        Ok(Grant {
            app: payload.app,
            scopes: payload.scopes,
        })
    }

    /// `POST /oauth/revoke`: the client must be the token's app; unknown
    /// or expired tokens are accepted silently (RFC 7009 §2.2).
    pub(crate) fn revoke(
        &self,
        form: &HashMap<String, String>,
        basic: Option<(String, String)>,
        peer: IpAddr,
    ) -> Result<(), Refusal> {
        let (client_id, secret) = match (basic, form.get("client_id"), form.get("client_secret")) {
            (Some(basic), _, _) => basic,
            (None, Some(id), Some(secret)) => (id.clone(), secret.clone()),
            _ => return Err(Refusal::InvalidClient),
        };
        let app = self.client(&client_id, &secret, peer)?;
        let token = form
            .get("token")
            .ok_or_else(|| Refusal::InvalidRequest("`token` is missing".into()))?;
        let Some(payload) = self.decode(token) else {
            return Ok(());
        };
        if payload.app != app.name || payload.exp <= now_ms() {
            return Ok(());
        }
        if let Some(log) = &self.revoked {
            let row = Revoked { jti: payload.jti };
            log.append(&[(payload.exp, &row)], now_ms())
                .map_err(Refusal::InvalidRequest)?;
        }
        Ok(())
    }
}

/// `Authorization: Basic` credentials (form-URL-decoded, RFC 6749 §2.3.1).
pub(crate) fn basic_credentials(header: Option<&str>) -> Option<(String, String)> {
    let encoded = header?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((decode(id)?, decode(secret)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_url_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%20app:s%3Acret"));
        assert_eq!(
            basic_credentials(Some(&header)),
            Some(("my app".to_owned(), "s:cret".to_owned()))
        );
        assert_eq!(basic_credentials(Some("Bearer x")), None);
        assert_eq!(basic_credentials(Some("Basic !!!")), None);
    }
}
