//! `POST /api/composite`: several method calls in one request (seed 004's
//! composite shape).
//!
//! ```json
//! {"allOrNone": true, "compositeRequest": [
//!   {"referenceId": "pump", "method": "PumpStatus", "params": {"code": "PUMP-1"}},
//!   {"referenceId": "order", "method": "PlaceOrder", "params": {"speed": "@{pump.speed}"}}]}
//! ```
//!
//! Sub-requests run in order, each checked as if called alone (approval,
//! parameters, the method's own timeout, the failures log). A parameter string
//! that is exactly `@{ref.path}` becomes the JSON value at `path` in the result
//! of the earlier sub-request `ref`; inside a longer string the value is
//! spliced in as text. With `allOrNone` the first failure stops the rest,
//! which are answered `processing_halted`; what earlier sub-requests did is
//! not undone (each method is its own unit of work). The answer is always 200
//! with `{"compositeResponse": [{"referenceId", "httpStatusCode", "body"}]}` in
//! request order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ApiError, Caller, Central, Form, Params, Reply, approved_method, caller, codes, invoke,
    peer_of, read_body, refuse_when_stopping,
};

/// The most sub-requests one composite request may carry.
pub const MAX_SUBREQUESTS: usize = 25;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Composite {
    #[serde(rename = "allOrNone", default)]
    all_or_none: bool,
    #[serde(rename = "compositeRequest")]
    requests: Vec<SubRequest>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubRequest {
    #[serde(rename = "referenceId")]
    reference_id: String,
    method: String,
    #[serde(default = "empty_object")]
    params: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

pub(super) async fn composite(State(central): State<Arc<Central>>, request: Request) -> Response {
    let started = Instant::now();
    let response = match answer(&central, request).await {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(error) => error.into_response(),
    };
    central
        .metrics
        .observe("_composite", response.status().as_u16(), started.elapsed());
    response
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, codes::INVALID_BODY, message)
}

async fn answer(central: &Arc<Central>, request: Request) -> Result<Value, ApiError> {
    refuse_when_stopping(central)?;
    let caller = caller(central, request.headers(), peer_of())?;
    let body = read_body(request, central.body_read_timeout, central.max_body_bytes)
        .await?
        .ok_or_else(|| bad("the body must be a composite request"))?;
    let composite: Composite = serde_json::from_slice(&body).map_err(|error| {
        bad(format!(
            "the body is not a composite request ({{\"allOrNone\", \"compositeRequest\": [{{\"referenceId\", \"method\", \"params\"}}]}}): {error}"
        ))
    })?;
    if composite.requests.is_empty() || composite.requests.len() > MAX_SUBREQUESTS {
        return Err(bad(format!(
            "`compositeRequest` holds 1 to {MAX_SUBREQUESTS} sub-requests, not {}",
            composite.requests.len()
        )));
    }
    let mut seen = HashMap::new();
    for (index, sub) in composite.requests.iter().enumerate() {
        let valid = !sub.reference_id.is_empty()
            && sub
                .reference_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(bad(format!(
                "`referenceId` of sub-request {index} must be letters, digits, `_` or `-`"
            )));
        }
        if seen.insert(sub.reference_id.as_str(), index).is_some() {
            return Err(bad(format!(
                "`referenceId` `{}` is used twice",
                sub.reference_id
            )));
        }
    }

    let mut results: HashMap<String, Value> = HashMap::new();
    let mut responses = Vec::with_capacity(composite.requests.len());
    let mut halted = false;
    for sub in composite.requests {
        let (status, body) = if halted {
            halted_answer()
        } else {
            let outcome = run_one(central, &caller, &sub, &results).await;
            match outcome {
                Ok(value) => {
                    results.insert(sub.reference_id.clone(), value.clone());
                    (StatusCode::OK, value)
                }
                Err(error) => {
                    halted = composite.all_or_none;
                    (
                        error.status,
                        json!({ "error": error.message, "code": error.code }),
                    )
                }
            }
        };
        responses.push(json!({
            "referenceId": sub.reference_id,
            "httpStatusCode": status.as_u16(),
            "body": body,
        }));
    }
    Ok(json!({ "compositeResponse": responses }))
}

fn halted_answer() -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({
            "error": "not run: an earlier sub-request failed and allOrNone is set",
            "code": codes::PROCESSING_HALTED,
        }),
    )
}

async fn run_one(
    central: &Arc<Central>,
    caller: &Caller,
    sub: &SubRequest,
    results: &HashMap<String, Value>,
) -> Result<Value, ApiError> {
    let started = Instant::now();
    let method = approved_method(central, caller, &sub.method)?;
    let params = resolve(&sub.params, results)?;
    let label = caller.label();
    let answer = invoke(
        central,
        &label,
        &sub.method,
        method,
        Params::Value(params),
        started,
        Form::Value,
    )
    .await
    .map(Reply::into_value);
    let status = match &answer {
        Ok(_) => 200,
        Err(error) => error.status.as_u16(),
    };
    central
        .metrics
        .observe(&sub.method, status, started.elapsed());
    answer
}

/// `value` with every `@{ref.path}` replaced from `results`.
fn resolve(value: &Value, results: &HashMap<String, Value>) -> Result<Value, ApiError> {
    Ok(match value {
        Value::String(text) => resolve_text(text, results)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| resolve(item, results))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, item)| Ok((name.clone(), resolve(item, results)?)))
                .collect::<Result<_, ApiError>>()?,
        ),
        other => other.clone(),
    })
}

fn resolve_text(text: &str, results: &HashMap<String, Value>) -> Result<Value, ApiError> {
    if let Some(inner) = text.strip_prefix("@{").and_then(|t| t.strip_suffix('}'))
        && !inner.contains('}')
    {
        return lookup(inner, results).cloned();
    }
    if !text.contains("@{") {
        return Ok(Value::String(text.to_owned()));
    }
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("@{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(reference_error(format!("`{text}` has an unclosed `@{{`")));
        };
        match lookup(&after[..end], results)? {
            Value::String(s) => out.push_str(s),
            other => out.push_str(&other.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

/// The value at `ref.field.0.field` in the results.
fn lookup<'r>(reference: &str, results: &'r HashMap<String, Value>) -> Result<&'r Value, ApiError> {
    let mut parts = reference.split('.');
    let name = parts.next().unwrap_or_default();
    let mut value = results.get(name).ok_or_else(|| {
        reference_error(format!(
            "`@{{{reference}}}`: no earlier successful sub-request `{name}`"
        ))
    })?;
    for part in parts {
        let next = match value {
            Value::Object(fields) => fields.get(part),
            Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        value = next.ok_or_else(|| {
            reference_error(format!(
                "`@{{{reference}}}`: the result has nothing at `{part}`"
            ))
        })?;
    }
    Ok(value)
}

fn reference_error(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, codes::INVALID_REFERENCE, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results() -> HashMap<String, Value> {
        HashMap::from([(
            "pump".to_owned(),
            json!({ "speed": 1450.5, "code": "P-1", "alarms": ["hot", "stalled"] }),
        )])
    }

    #[test]
    fn whole_strings_take_the_value_and_longer_strings_splice_text() {
        let params = json!({
            "speed": "@{pump.speed}",
            "first": "@{pump.alarms.1}",
            "label": "pump @{pump.code} at @{pump.speed} rpm",
            "list": ["@{pump.alarms}", 3],
            "plain": "no reference"
        });
        assert_eq!(
            resolve(&params, &results()).map_err(|e| e.message),
            Ok(json!({
                "speed": 1450.5,
                "first": "stalled",
                "label": "pump P-1 at 1450.5 rpm",
                "list": [["hot", "stalled"], 3],
                "plain": "no reference"
            }))
        );
    }

    #[test]
    fn unknown_references_and_paths_are_errors() {
        for text in [
            "@{nope.x}",
            "@{pump.missing}",
            "@{pump.alarms.9}",
            "a @{pump.code",
        ] {
            let error = resolve(&json!(text), &results()).expect_err(text);
            assert_eq!(error.code, codes::INVALID_REFERENCE, "{text}");
        }
    }
}
