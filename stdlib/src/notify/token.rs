//! The OAuth2 client-credentials grant for SMTP (CD-NS-6), without the I/O: the form to post
//! to the token endpoint, how to read its answer, and when a cached token must be refreshed.
//!
//! The runtime posts [`TokenForm`] to the token URL, hands the status and body to
//! [`parse_token_response`], and caches the [`AccessToken`] until [`refresh_after`] its
//! lifetime. The client secret and the token are [`Secret`]s: no error or `Debug` output of
//! this module contains either.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::classify::SmtpFailure;
use super::settings::{OAuth2Settings, Secret};

/// The lifetime assumed when the token endpoint gives no `expires_in`.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// The longest margin before expiry at which a token is refreshed.
pub const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The form body of a client-credentials token request (`client_secret_post`, which
/// Microsoft's endpoint and every other OAuth2 server accept).
#[derive(Clone)]
pub struct TokenForm {
    client_id: String,
    client_secret: Secret,
    scope: String,
}

impl TokenForm {
    /// The request for these settings.
    pub fn new(settings: &OAuth2Settings) -> TokenForm {
        TokenForm {
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            scope: settings.scope.clone(),
        }
    }

    /// The form fields, secret included: only for the HTTP client that posts them.
    pub fn fields(&self) -> [(&'static str, &str); 4] {
        [
            ("grant_type", "client_credentials"),
            ("client_id", &self.client_id),
            ("client_secret", self.client_secret.expose()),
            ("scope", &self.scope),
        ]
    }
}

impl fmt::Debug for TokenForm {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("TokenForm")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("scope", &self.scope)
            .finish()
    }
}

/// An access token and how long it is valid from when it was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The bearer token.
    pub value: Secret,
    /// Its lifetime, from `expires_in`.
    pub lifetime: Duration,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<ExpiresIn>,
    token_type: Option<String>,
}

/// `expires_in` is a number by the standard; some servers send a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum ExpiresIn {
    Number(f64),
    Text(String),
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: Option<String>,
    error_description: Option<String>,
}

/// Read the token endpoint's answer: a token, or a classified failure. 408, 429 and 5xx are
/// transient ([`SmtpFailure::TokenUnavailable`]); every other non-2xx status means the
/// endpoint refused these client credentials ([`SmtpFailure::TokenRejected`]). A 2xx answer
/// that is not a bearer token is transient (a proxy or a misbehaving server).
pub fn parse_token_response(status: u16, body: &[u8]) -> Result<AccessToken, SmtpFailure> {
    if !(200..300).contains(&status) {
        let detail = error_detail(body);
        return Err(
            if status == 408 || status == 429 || (500..600).contains(&status) {
                SmtpFailure::TokenUnavailable {
                    status: Some(status),
                    detail,
                }
            } else {
                SmtpFailure::TokenRejected { status, detail }
            },
        );
    }
    let not_a_token = |why: &str| SmtpFailure::TokenUnavailable {
        status: Some(status),
        detail: format!("the answer is not an access token: {why}"),
    };
    let answer: TokenAnswer =
        serde_json::from_slice(body).map_err(|_| not_a_token("not a JSON object"))?;
    let value = answer
        .access_token
        .filter(|token| !token.is_empty())
        .ok_or_else(|| not_a_token("no access_token"))?;
    if let Some(token_type) = &answer.token_type
        && !token_type.eq_ignore_ascii_case("bearer")
    {
        return Err(not_a_token("token_type is not Bearer"));
    }
    let seconds = match answer.expires_in {
        None => None,
        Some(ExpiresIn::Number(seconds)) => Some(seconds),
        Some(ExpiresIn::Text(text)) => text.trim().parse::<f64>().ok(),
    };
    let lifetime = match seconds {
        Some(seconds) if seconds.is_finite() && seconds > 0.0 => {
            Duration::from_secs_f64(seconds.min(1e9))
        }
        Some(_) => return Err(not_a_token("expires_in is not a positive number")),
        None => DEFAULT_TOKEN_LIFETIME,
    };
    Ok(AccessToken {
        value: Secret::new(value),
        lifetime,
    })
}

/// How long after receiving a token with this lifetime it is refreshed: shortly before it
/// expires, by a tenth of its lifetime and at most [`MAX_REFRESH_MARGIN`], so a send never
/// starts with a token about to expire.
pub fn refresh_after(lifetime: Duration) -> Duration {
    lifetime - (lifetime / 10).min(MAX_REFRESH_MARGIN)
}

/// `error: error_description` from an OAuth2 error body, shortened; the body itself if it is
/// not one (an HTML error page, say), shortened too.
fn error_detail(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<ErrorAnswer>(body) {
        Ok(ErrorAnswer {
            error: Some(error),
            error_description: Some(description),
        }) => {
            format!("{error}: {description}")
        }
        Ok(ErrorAnswer {
            error: Some(error), ..
        }) => error,
        _ => String::from_utf8_lossy(body).trim().to_owned(),
    };
    let text = if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        text
    };
    shorten(&text, 300)
}

fn shorten(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_answer_is_a_token() {
        let body = br#"{"access_token":"abc","expires_in":3599,"token_type":"Bearer","scope":"s"}"#;
        let token = parse_token_response(200, body).unwrap();
        assert_eq!(token.value.expose(), "abc");
        assert_eq!(token.lifetime, Duration::from_secs(3599));
        assert!(!format!("{token:?}").contains("abc"));
    }

    #[test]
    fn expires_in_may_be_text_or_missing() {
        let token =
            parse_token_response(200, br#"{"access_token":"a","expires_in":"60"}"#).unwrap();
        assert_eq!(token.lifetime, Duration::from_secs(60));
        let token = parse_token_response(200, br#"{"access_token":"a"}"#).unwrap();
        assert_eq!(token.lifetime, DEFAULT_TOKEN_LIFETIME);
        assert!(parse_token_response(200, br#"{"access_token":"a","expires_in":-5}"#).is_err());
    }

    #[test]
    fn a_bad_secret_is_permanent_and_a_down_endpoint_transient() {
        let body =
            br#"{"error":"invalid_client","error_description":"client authentication failed"}"#;
        match parse_token_response(401, body) {
            Err(SmtpFailure::TokenRejected {
                status: 401,
                detail,
            }) => {
                assert_eq!(detail, "invalid_client: client authentication failed");
            }
            other => panic!("{other:?}"),
        }
        for status in [408, 429, 500, 502, 503] {
            assert!(matches!(
                parse_token_response(status, b"<html>busy</html>"),
                Err(SmtpFailure::TokenUnavailable { .. })
            ));
        }
        assert!(matches!(
            parse_token_response(200, b"<html>login</html>"),
            Err(SmtpFailure::TokenUnavailable { .. })
        ));
        assert!(matches!(
            parse_token_response(200, br#"{"access_token":"a","token_type":"mac"}"#),
            Err(SmtpFailure::TokenUnavailable { .. })
        ));
    }

    #[test]
    fn refresh_comes_shortly_before_expiry() {
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(3540)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(3)),
            Duration::from_millis(2700)
        );
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn the_form_hides_its_secret() {
        let settings = OAuth2Settings {
            tenant_id: "t".into(),
            client_id: "c".into(),
            client_secret: Secret::new("s3cret"),
            token_url: "http://127.0.0.1/token".into(),
            scope: "smtp".into(),
            username: "a@x.example".into(),
        };
        let form = TokenForm::new(&settings);
        assert!(!format!("{form:?}").contains("s3cret"));
        assert!(form.fields().contains(&("client_secret", "s3cret")));
    }
}
