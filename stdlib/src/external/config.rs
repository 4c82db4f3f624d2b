//! The definition of one external system, resolved from the deployment: where it is, how to
//! authenticate, how long to wait, how to retry, which methods it has, how to sign, and how
//! large a payload may be.
//!
//! Every precondition that can be checked when the deployment is loaded is checked here, in
//! the constructors ([`BaseUrl::parse`], [`PathTemplate::parse`], [`SigningSecret::parse`],
//! [`Authentication::api_key`]), so that a call never discovers a malformed definition.
//! Secret values live in [`Secret`] and [`SigningSecret`], whose `Debug` and `Display` print
//! `***`: a definition can be logged whole without leaking one.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Largest request payload accepted when the deployment gives no `max_payload_bytes`: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// The timeout of a system whose deployment gives none (`timeout_s` defaults to 30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A secret value, read from the environment variable the deployment names. Its `Debug` and
/// `Display` print `***`; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("***")
    }
}

/// The HTTP method of an external-system method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpVerb {
    Get,
    Post,
    Put,
    Delete,
    Patch,
}

impl HttpVerb {
    /// The method as it goes on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpVerb::Get => "GET",
            HttpVerb::Post => "POST",
            HttpVerb::Put => "PUT",
            HttpVerb::Delete => "DELETE",
            HttpVerb::Patch => "PATCH",
        }
    }

    /// Whether the parameters travel as a JSON body (POST, PUT, PATCH) rather than as query
    /// parameters (GET, DELETE).
    pub fn sends_body(self) -> bool {
        matches!(self, HttpVerb::Post | HttpVerb::Put | HttpVerb::Patch)
    }
}

/// How requests to a system authenticate. Credentials go on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication {
    /// No credentials.
    None,
    /// A header carrying a key, e.g. `X-Api-Key: …`.
    ApiKey {
        /// The header name (validated as an HTTP token).
        header: String,
        /// The key.
        value: Secret,
    },
    /// HTTP Basic authentication (`Authorization: Basic base64(user:password)`).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
}

impl Authentication {
    /// API-key authentication; fails when `header` is not a valid HTTP header name.
    pub fn api_key(header: &str, value: Secret) -> Result<Authentication, String> {
        if !is_header_name(header) {
            return Err(format!(
                "`{header}` is not a valid HTTP header name for the API key"
            ));
        }
        Ok(Authentication::ApiKey {
            header: header.to_owned(),
            value,
        })
    }

    /// Basic authentication; fails when the user name contains a `:` (it separates the user
    /// from the password in the credential).
    pub fn basic(username: &str, password: Secret) -> Result<Authentication, String> {
        if username.contains(':') {
            return Err("a Basic-auth user name cannot contain `:`".to_owned());
        }
        Ok(Authentication::Basic {
            username: username.to_owned(),
            password,
        })
    }

    /// The `Authorization` value of Basic authentication.
    pub(crate) fn basic_credential(username: &str, password: &Secret) -> String {
        let pair = format!("{username}:{}", password.expose());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    /// Every text that must never appear in a message: the key, the password and the encoded
    /// Basic credential.
    pub(crate) fn secret_texts(&self) -> Vec<String> {
        match self {
            Authentication::None => Vec::new(),
            Authentication::ApiKey { value, .. } => vec![value.expose().to_owned()],
            Authentication::Basic { username, password } => {
                let credential = Authentication::basic_credential(username, password);
                let encoded = credential.trim_start_matches("Basic ").to_owned();
                vec![password.expose().to_owned(), encoded]
            }
        }
    }
}

/// An HTTP header name is a non-empty RFC 9110 token.
pub(crate) fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}

/// The wait before each retry of a buffered call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryBackoff {
    /// The same interval before every retry (the seed's "fixed time between retries").
    Fixed(Duration),
    /// Retry `n` waits entry `n - 1`; the last entry repeats.
    Schedule(Vec<Duration>),
}

/// A system's retry settings for buffered calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    /// Retries after the first attempt; the call is parked when they have all failed.
    pub max_retries: u32,
    /// The wait before each retry (a peer's `Retry-After` overrides it).
    pub backoff: RetryBackoff,
}

impl Default for RetrySettings {
    /// Ten retries a minute apart, when the deployment gives no `retry` table.
    fn default() -> RetrySettings {
        RetrySettings {
            max_retries: 10,
            backoff: RetryBackoff::Fixed(Duration::from_secs(60)),
        }
    }
}

/// A base URL: `http` or `https`, a host, an optional path prefix; no query, no fragment, no
/// user information (credentials belong in `auth`). Stored without a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(String);

impl BaseUrl {
    /// Check and normalise a base URL.
    pub fn parse(text: &str) -> Result<BaseUrl, String> {
        let trimmed = text.trim();
        let rest = trimmed
            .strip_prefix("http://")
            .or_else(|| trimmed.strip_prefix("https://"))
            .ok_or_else(|| format!("base URL `{trimmed}` must start with http:// or https://"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!("base URL `{trimmed}` has no host"));
        }
        if authority.contains('@') {
            return Err(
                "the base URL must not carry credentials; use the system's `auth`".to_owned(),
            );
        }
        if rest.contains('?') || rest.contains('#') {
            return Err(format!(
                "base URL `{trimmed}` must not have a query or a fragment"
            ));
        }
        if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("base URL `{trimmed}` contains white space"));
        }
        Ok(BaseUrl(trimmed.trim_end_matches('/').to_owned()))
    }

    /// The URL, without a trailing `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One piece of a method path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathPart {
    /// Text sent as written.
    Literal(String),
    /// `{name}`: filled from the parameter `name`, URL-encoded.
    Parameter(String),
}

/// A method's relative path, such as `/orders/{id}/lines`, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    text: String,
    pub(crate) parts: Vec<PathPart>,
}

impl PathTemplate {
    /// Parse a relative path; `{name}` marks a path parameter (a letter or `_` first, then
    /// letters, digits, `_`). A leading `/` is added when missing.
    pub fn parse(text: &str) -> Result<PathTemplate, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        if !text.starts_with('/') {
            literal.push('/');
        }
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            if rest[open..].starts_with('}') {
                return Err(format!("path `{text}` has a `}}` without a `{{`"));
            }
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("path `{text}` has a `{{` without a `}}`"))?;
            let name = &after[..close];
            if !is_parameter_name(name) {
                return Err(format!(
                    "path `{text}`: `{{{name}}}` is not a parameter name (letters, digits, `_`)"
                ));
            }
            if !literal.is_empty() {
                parts.push(PathPart::Literal(std::mem::take(&mut literal)));
            }
            parts.push(PathPart::Parameter(name.to_owned()));
            rest = &after[close + 1..];
        }
        literal.push_str(rest);
        if literal.contains('#') || literal.chars().any(|c| c.is_whitespace()) {
            return Err(format!(
                "path `{text}` must not contain white space or a fragment"
            ));
        }
        if !literal.is_empty() {
            parts.push(PathPart::Literal(literal));
        }
        Ok(PathTemplate {
            text: text.to_owned(),
            parts,
        })
    }

    /// The path as written in the deployment.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The names of its path parameters, in order.
    pub fn parameters(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            PathPart::Parameter(name) => Some(name.as_str()),
            PathPart::Literal(_) => None,
        })
    }
}

fn is_parameter_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// One method of a system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodConfig {
    /// Its HTTP method.
    pub verb: HttpVerb,
    /// Its path relative to the base URL.
    pub path: PathTemplate,
}

/// A Standard Webhooks signing secret: `whsec_` followed by the base64 of the key (the
/// prefix is optional). Its `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    key: Vec<u8>,
}

impl SigningSecret {
    /// Decode a secret. The error never repeats the secret's text.
    pub fn parse(text: &str) -> Result<SigningSecret, String> {
        let encoded = text.trim();
        let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| {
                "a signing secret must be `whsec_` followed by base64 (Standard Webhooks)"
                    .to_owned()
            })?;
        if key.is_empty() {
            return Err("a signing secret must not be empty".to_owned());
        }
        Ok(SigningSecret { key })
    }

    /// A secret from raw key bytes.
    pub fn from_key(key: Vec<u8>) -> SigningSecret {
        SigningSecret { key }
    }

    pub(crate) fn key(&self) -> &[u8] {
        &self.key
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("SigningSecret(***)")
    }
}

/// Everything needed to call one external system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemConfig {
    /// The system's name in the deployment (`MES`).
    pub name: String,
    /// Where it is.
    pub base_url: BaseUrl,
    /// One timeout for every method: from the start of the request to the end of the
    /// response body.
    pub timeout: Duration,
    /// Credentials attached to every request.
    pub authentication: Authentication,
    /// Retry settings of buffered calls.
    pub retry: RetrySettings,
    /// Its methods by name.
    pub methods: BTreeMap<String, MethodConfig>,
    /// Standard Webhooks secrets: every request is signed with each of them (several during
    /// a rotation). Empty: requests are not signed.
    pub signing_secrets: Vec<SigningSecret>,
    /// Largest payload (JSON body, or path and query for GET/DELETE) accepted before any
    /// attempt.
    pub max_payload_bytes: usize,
}

impl SystemConfig {
    /// A system with no credentials, the default timeout, retry settings and payload limit,
    /// no signing and no methods yet.
    pub fn new(name: impl Into<String>, base_url: BaseUrl) -> SystemConfig {
        SystemConfig {
            name: name.into(),
            base_url,
            timeout: DEFAULT_TIMEOUT,
            authentication: Authentication::None,
            retry: RetrySettings::default(),
            methods: BTreeMap::new(),
            signing_secrets: Vec::new(),
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }

    /// Add a method (builder style, for embedders and tests).
    pub fn with_method(
        mut self,
        name: impl Into<String>,
        verb: HttpVerb,
        path: PathTemplate,
    ) -> SystemConfig {
        self.methods
            .insert(name.into(), MethodConfig { verb, path });
        self
    }

    /// Every text that must never appear in a message, log or event.
    pub fn secret_texts(&self) -> Vec<String> {
        self.authentication
            .secret_texts()
            .into_iter()
            .filter(|text| !text.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_as_stars() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
        let auth = Authentication::basic("u", Secret::new("hunter2")).unwrap();
        assert!(!format!("{auth:?}").contains("hunter2"));
        let signing = SigningSecret::parse("whsec_aGVsbG8=").unwrap();
        assert_eq!(format!("{signing:?}"), "SigningSecret(***)");
    }

    #[test]
    fn base_urls_are_checked_and_normalised() {
        assert_eq!(
            BaseUrl::parse("http://h:1/api/").unwrap().as_str(),
            "http://h:1/api"
        );
        assert!(BaseUrl::parse("ftp://h").is_err());
        assert!(BaseUrl::parse("http://").is_err());
        assert!(BaseUrl::parse("http://u:p@h").is_err());
        assert!(BaseUrl::parse("http://h/?a=1").is_err());
    }

    #[test]
    fn path_templates_find_their_parameters() {
        let path = PathTemplate::parse("/orders/{id}/lines/{line_no}").unwrap();
        assert_eq!(path.parameters().collect::<Vec<_>>(), ["id", "line_no"]);
        assert_eq!(
            PathTemplate::parse("x").unwrap().parts,
            [PathPart::Literal("/x".into())]
        );
        assert!(PathTemplate::parse("/a/{id").is_err());
        assert!(PathTemplate::parse("/a/id}").is_err());
        assert!(PathTemplate::parse("/a/{1d}").is_err());
        assert!(PathTemplate::parse("/a b").is_err());
    }

    #[test]
    fn signing_secrets_decode_with_or_without_prefix() {
        let with = SigningSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let without = SigningSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(with, without);
        let error = SigningSecret::parse("whsec_not base64!").unwrap_err();
        assert!(!error.contains("not base64!"));
    }

    #[test]
    fn api_key_headers_must_be_tokens() {
        assert!(Authentication::api_key("X-Api-Key", Secret::new("k")).is_ok());
        assert!(Authentication::api_key("X Api", Secret::new("k")).is_err());
        assert!(Authentication::api_key("", Secret::new("k")).is_err());
    }
}
