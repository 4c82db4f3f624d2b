//! Building requests (CD-ESG-1..3): parameters to path, query and body, then headers.
//!
//! Two steps, so that a buffered call is resent byte for byte:
//! - [`encode_call`] turns a method and its parameters into an [`EncodedCall`]: the HTTP
//!   method, the path with `{name}` parameters filled and URL-encoded (and removed from the
//!   remaining parameters), the remaining parameters as the query (GET, DELETE) or as the JSON
//!   body (POST, PUT, PATCH). It checks the payload limit. This is what store-and-forward
//!   keeps; it holds no credential and no time.
//! - [`prepare_request`] adds, on every attempt, the base URL, the credentials, the
//!   `Idempotency-Key` and the Standard Webhooks signature headers (fresh timestamp).
//!
//! Query values: a string goes as written, a number or boolean as its JSON text, `null` is
//! left out, a list repeats the key once per element, an object goes as its JSON text.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::classify::{ErrorCode, ExternalError};
use super::config::{Authentication, HttpVerb, MethodConfig, PathPart, Secret, SystemConfig};
use super::signing;

/// Every byte but the RFC 3986 unreserved characters is percent-encoded, in path parameters
/// and in query keys and values alike.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A call encoded for the wire, independent of the base URL, the credentials and the time:
/// what a buffered call stores and resends unchanged on every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedCall {
    /// The system's name.
    pub system: String,
    /// The method's name.
    pub method: String,
    /// The HTTP method.
    pub verb: HttpVerb,
    /// The path after the base URL, path parameters filled, query appended.
    pub path_and_query: String,
    /// The JSON body (POST, PUT, PATCH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl EncodedCall {
    /// `System.Method`, the label used in messages.
    pub fn label(&self) -> String {
        format!("{}.{}", self.system, self.method)
    }

    /// The size that the payload limit applies to: the body, or the path and query of a
    /// GET or DELETE.
    pub fn payload_bytes(&self) -> usize {
        match &self.body {
            Some(body) => body.len(),
            None => self.path_and_query.len(),
        }
    }
}

/// Encode a call of `method_name` of `system` with `params` (a JSON object, or `null` for
/// none). Fails permanently on parameters that do not fit the method and on a payload
/// over the system's limit; nothing has been sent then.
pub fn encode_call(
    system: &SystemConfig,
    method_name: &str,
    method: &MethodConfig,
    params: &Value,
) -> Result<EncodedCall, ExternalError> {
    let label = format!("{}.{method_name}", system.name);
    let mut remaining: Option<Map<String, Value>> = match params {
        Value::Null => Some(Map::new()),
        Value::Object(object) => Some(object.clone()),
        _ => None,
    };
    let mut path = String::new();
    for part in &method.path.parts {
        match part {
            PathPart::Literal(text) => path.push_str(text),
            PathPart::Parameter(name) => {
                let object = remaining.as_mut().ok_or_else(|| {
                    ExternalError::permanent(
                        ErrorCode::InvalidParams,
                        format!(
                            "{label}: the path `{}` needs parameter `{name}`, so the \
                             parameters must be an object",
                            method.path.as_str()
                        ),
                    )
                })?;
                let value = object.shift_remove(name).unwrap_or(Value::Null);
                let text = path_value(&value).ok_or_else(|| {
                    ExternalError::permanent(
                        ErrorCode::InvalidParams,
                        format!(
                            "{label}: path parameter `{name}` must be a string, number or \
                             boolean, not {}",
                            json_type(&value)
                        ),
                    )
                })?;
                if text.is_empty() {
                    return Err(ExternalError::permanent(
                        ErrorCode::InvalidParams,
                        format!("{label}: path parameter `{name}` is empty"),
                    ));
                }
                path.extend(utf8_percent_encode(&text, COMPONENT));
            }
        }
    }
    let (path_and_query, body) = if method.verb.sends_body() {
        let body = match &remaining {
            Some(object) => Value::Object(object.clone()).to_string(),
            None => params.to_string(),
        };
        (path, Some(body))
    } else {
        let object = remaining.ok_or_else(|| {
            ExternalError::permanent(
                ErrorCode::InvalidParams,
                format!(
                    "{label}: {} parameters become query parameters, so they must be an \
                     object, not {}",
                    method.verb.as_str(),
                    json_type(params)
                ),
            )
        })?;
        (with_query(path, &object), None)
    };
    let call = EncodedCall {
        system: system.name.clone(),
        method: method_name.to_owned(),
        verb: method.verb,
        path_and_query,
        body,
    };
    let size = call.payload_bytes();
    if size > system.max_payload_bytes {
        return Err(ExternalError::permanent(
            ErrorCode::PayloadTooLarge,
            format!(
                "{label}: the payload is {size} bytes, over the system's limit of {} bytes \
                 (max_payload_bytes); nothing was sent",
                system.max_payload_bytes
            ),
        ));
    }
    Ok(call)
}

/// The text of a path parameter.
fn path_value(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Append the parameters as a query to `path` (which may already have one).
fn with_query(mut path: String, params: &Map<String, Value>) -> String {
    let mut separator = if path.contains('?') { '&' } else { '?' };
    let mut push = |path: &mut String, key: &str, value: &str| {
        path.push(separator);
        separator = '&';
        path.extend(utf8_percent_encode(key, COMPONENT));
        path.push('=');
        path.extend(utf8_percent_encode(value, COMPONENT));
    };
    for (key, value) in params {
        match value {
            Value::Null => {}
            Value::Array(items) => {
                for item in items {
                    if !item.is_null() {
                        push(&mut path, key, &query_text(item));
                    }
                }
            }
            other => push(&mut path, key, &query_text(other)),
        }
    }
    path
}

fn query_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A header value; secret ones print masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// Sent and shown as is.
    Plain(String),
    /// Sent as is, shown as `shown` (`***`, `Basic ***`).
    Secret {
        /// The value sent.
        value: Secret,
        /// What a dry run or a log shows instead.
        shown: &'static str,
    },
}

impl HeaderValue {
    /// The value to put on the wire.
    pub fn expose(&self) -> &str {
        match self {
            HeaderValue::Plain(text) => text,
            HeaderValue::Secret { value, .. } => value.expose(),
        }
    }

    /// The value to show: secrets masked.
    pub fn masked(&self) -> &str {
        match self {
            HeaderValue::Plain(text) => text,
            HeaderValue::Secret { shown, .. } => shown,
        }
    }
}

/// A request ready to send: what a transport sends and a dry run prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedRequest {
    /// The HTTP method.
    pub verb: HttpVerb,
    /// The full URL.
    pub url: String,
    /// The headers, in the order they are sent.
    pub headers: Vec<(String, HeaderValue)>,
    /// The JSON body, if any.
    pub body: Option<String>,
}

/// What differs between attempts of the same call.
#[derive(Debug, Clone, Copy)]
pub struct AttemptContext<'a> {
    /// The delivery id: `Idempotency-Key` of a `CachedCall`, `webhook-id` of a signed request.
    pub delivery_id: &'a str,
    /// Whether to send `Idempotency-Key` (every `CachedCall` attempt does).
    pub idempotency_key: bool,
    /// Seconds since the Unix epoch, for `webhook-timestamp`.
    pub unix_seconds: u64,
}

/// The user agent of every request.
pub const USER_AGENT: &str = concat!("scl/", env!("CARGO_PKG_VERSION"));

/// Build the request of one attempt of `call` to `system`.
pub fn prepare_request(
    system: &SystemConfig,
    call: &EncodedCall,
    attempt: AttemptContext<'_>,
) -> PreparedRequest {
    let mut headers: Vec<(String, HeaderValue)> = vec![
        (
            "Accept".to_owned(),
            HeaderValue::Plain("application/json".to_owned()),
        ),
        (
            "User-Agent".to_owned(),
            HeaderValue::Plain(USER_AGENT.to_owned()),
        ),
    ];
    if call.body.is_some() {
        headers.push((
            "Content-Type".to_owned(),
            HeaderValue::Plain("application/json".to_owned()),
        ));
    }
    match &system.authentication {
        Authentication::None => {}
        Authentication::ApiKey { header, value } => headers.push((
            header.clone(),
            HeaderValue::Secret {
                value: value.clone(),
                shown: "***",
            },
        )),
        Authentication::Basic { username, password } => headers.push((
            "Authorization".to_owned(),
            HeaderValue::Secret {
                value: Secret::new(Authentication::basic_credential(username, password)),
                shown: "Basic ***",
            },
        )),
    }
    if attempt.idempotency_key {
        headers.push((
            "Idempotency-Key".to_owned(),
            HeaderValue::Plain(attempt.delivery_id.to_owned()),
        ));
    }
    if !system.signing_secrets.is_empty() {
        let body = call.body.as_deref().unwrap_or("");
        let signature = signing::signature_header(
            &system.signing_secrets,
            attempt.delivery_id,
            attempt.unix_seconds,
            body,
        );
        headers.push((
            "webhook-id".to_owned(),
            HeaderValue::Plain(attempt.delivery_id.to_owned()),
        ));
        headers.push((
            "webhook-timestamp".to_owned(),
            HeaderValue::Plain(attempt.unix_seconds.to_string()),
        ));
        headers.push((
            "webhook-signature".to_owned(),
            HeaderValue::Plain(signature),
        ));
    }
    PreparedRequest {
        verb: call.verb,
        url: format!("{}{}", system.base_url.as_str(), call.path_and_query),
        headers,
        body: call.body.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::external::classify::FailureKind;
    use crate::external::config::{BaseUrl, PathTemplate, SigningSecret};

    fn system() -> SystemConfig {
        SystemConfig::new("MES", BaseUrl::parse("http://peer:1/api/").unwrap())
            .with_method(
                "GetOrder",
                HttpVerb::Get,
                PathTemplate::parse("/orders/{id}").unwrap(),
            )
            .with_method(
                "PostReading",
                HttpVerb::Post,
                PathTemplate::parse("readings").unwrap(),
            )
            .with_method(
                "PutLine",
                HttpVerb::Put,
                PathTemplate::parse("/o/{id}/l/{n}").unwrap(),
            )
            .with_method(
                "Search",
                HttpVerb::Get,
                PathTemplate::parse("/s?fixed=1").unwrap(),
            )
            .with_method(
                "Remove",
                HttpVerb::Delete,
                PathTemplate::parse("/r").unwrap(),
            )
    }

    fn encode(method: &str, params: Value) -> Result<EncodedCall, ExternalError> {
        let system = system();
        let method_config = system.methods[method].clone();
        encode_call(&system, method, &method_config, &params)
    }

    #[test]
    fn get_parameters_become_the_query_and_path_parameters_are_encoded() {
        let call = encode(
            "GetOrder",
            json!({"id": "A/1 ü", "q": "x y&z", "n": 2, "on": true, "none": null, "tags": ["a", "b"], "o": {"k": 1}}),
        )
        .unwrap();
        assert_eq!(
            call.path_and_query,
            "/orders/A%2F1%20%C3%BC?q=x%20y%26z&n=2&on=true&tags=a&tags=b&o=%7B%22k%22%3A1%7D"
        );
        assert_eq!(call.body, None);
        let delete = encode("Remove", json!({"id": 7})).unwrap();
        assert_eq!(delete.path_and_query, "/r?id=7");
        let search = encode("Search", json!({"a": 1})).unwrap();
        assert_eq!(search.path_and_query, "/s?fixed=1&a=1");
    }

    #[test]
    fn post_and_put_parameters_become_the_body_without_path_parameters() {
        let call = encode("PostReading", json!({"asset": "P1", "value": 2.5})).unwrap();
        assert_eq!(call.path_and_query, "/readings");
        assert_eq!(call.body.as_deref(), Some(r#"{"asset":"P1","value":2.5}"#));
        let put = encode("PutLine", json!({"id": 5, "n": "x", "qty": 3})).unwrap();
        assert_eq!(put.path_and_query, "/o/5/l/x");
        assert_eq!(put.body.as_deref(), Some(r#"{"qty":3}"#));
        let empty = encode("PostReading", Value::Null).unwrap();
        assert_eq!(empty.body.as_deref(), Some("{}"));
        let list = encode("PostReading", json!([1, 2])).unwrap();
        assert_eq!(list.body.as_deref(), Some("[1,2]"));
    }

    #[test]
    fn bad_parameters_are_permanent_errors() {
        for (method, params) in [
            ("GetOrder", json!({})),
            ("GetOrder", json!({"id": null})),
            ("GetOrder", json!({"id": [1]})),
            ("GetOrder", json!({"id": ""})),
            ("GetOrder", json!([1])),
            ("Remove", json!("x")),
        ] {
            let error = encode(method, params.clone()).unwrap_err();
            assert_eq!(error.kind, FailureKind::Permanent, "{method} {params}");
            assert_eq!(error.code, ErrorCode::InvalidParams, "{method} {params}");
        }
    }

    #[test]
    fn payloads_over_the_limit_are_refused() {
        let mut system = system();
        system.max_payload_bytes = 20;
        let method = system.methods["PostReading"].clone();
        let error = encode_call(
            &system,
            "PostReading",
            &method,
            &json!({"text": "x".repeat(30)}),
        )
        .unwrap_err();
        assert_eq!(
            (error.kind, error.code),
            (FailureKind::Permanent, ErrorCode::PayloadTooLarge)
        );
        assert!(
            error.message.contains("limit of 20 bytes"),
            "{}",
            error.message
        );
        assert!(encode_call(&system, "PostReading", &method, &json!({"t": "x"})).is_ok());
    }

    #[test]
    fn requests_carry_credentials_idempotency_key_and_signature() {
        let mut system = system();
        system.authentication = Authentication::basic("user", Secret::new("pw")).unwrap();
        system.signing_secrets = vec![SigningSecret::from_key(b"key".to_vec())];
        let call = encode("PostReading", json!({"a": 1})).unwrap();
        let attempt = AttemptContext {
            delivery_id: "id-1",
            idempotency_key: true,
            unix_seconds: 1_700_000_000,
        };
        let request = prepare_request(&system, &call, attempt);
        assert_eq!(request.url, "http://peer:1/api/readings");
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let authorization = header("Authorization").unwrap();
        assert_eq!(authorization.expose(), "Basic dXNlcjpwdw==");
        assert_eq!(authorization.masked(), "Basic ***");
        assert_eq!(header("Idempotency-Key").unwrap().expose(), "id-1");
        assert_eq!(header("webhook-id").unwrap().expose(), "id-1");
        assert_eq!(header("webhook-timestamp").unwrap().expose(), "1700000000");
        assert!(
            header("webhook-signature")
                .unwrap()
                .expose()
                .starts_with("v1,")
        );
        assert_eq!(header("Content-Type").unwrap().expose(), "application/json");
    }
}
