//! `GET /api/openapi.json`: an OpenAPI 3.1 document generated from the typed
//! `main` signatures of the deployed API methods — one `POST /api/{name}`
//! per method with the request body's JSON Schema (required = the
//! non-optional parameters), the return type's schema, every error response
//! with the error body schema, and the `X-API-Key` security scheme.

use scl_lang::types::Type;
use serde_json::{Map, Value, json};

use super::schema::{json_schema, parameters_schema};
use crate::deployment::Deployment;

/// The document for `methods` (name, parameters, return type).
pub(crate) fn document<'a>(
    deployment: &Deployment,
    methods: impl Iterator<Item = (&'a str, &'a [(String, Type)], Type)>,
) -> Value {
    let mut methods: Vec<_> = methods.collect();
    methods.sort_by(|a, b| a.0.cmp(b.0));
    let mut paths = Map::new();
    for (name, params, ret) in methods {
        let timeout_s = deployment
            .file
            .api_methods
            .get(name)
            .and_then(|m| m.timeout_s)
            .unwrap_or(30);
        let error = |description: &str| {
            json!({
                "description": description,
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
            })
        };
        let operation = json!({
            "operationId": name,
            "summary": format!("Runs the API method `{name}` (timeout {timeout_s} s)."),
            "security": [{ "ApiKey": [] }],
            "requestBody": {
                "required": true,
                "content": { "application/json": { "schema": parameters_schema(params) } }
            },
            "responses": {
                "200": {
                    "description": "The method's return value.",
                    "content": { "application/json": { "schema": json_schema(&ret) } }
                },
                "400": error("Invalid JSON or parameters (missing_parameter, unknown_parameter, invalid_parameter, invalid_json, invalid_body)."),
                "401": error("Missing, unknown or disabled API key (missing_api_key, invalid_api_key)."),
                "403": error("The API key is not approved for this method (key_not_approved)."),
                "404": error("No such method (unknown_method)."),
                "405": error("Only POST is accepted (method_not_allowed)."),
                "413": error("The body is too large (payload_too_large)."),
                "415": error("The body is not JSON (unsupported_media_type)."),
                "500": error("The method failed (script_error, timeout, site_unreachable, limit_exceeded)."),
                "503": error("The node is shutting down (shutting_down).")
            }
        });
        paths.insert(format!("/api/{name}"), json!({ "post": operation }));
    }
    let error = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
        })
    };
    paths.insert(
        "/api/deliveries/{id}".to_owned(),
        json!({ "get": {
            "operationId": "deliveryStatus",
            "summary": "Where a CachedCall, notification or cached write stands, from the buffer of the site that holds it.",
            "security": [{ "ApiKey": [] }],
            "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
            "responses": {
                "200": {
                    "description": "The delivery's status and attempt history.",
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Delivery" } } }
                },
                "401": error("Missing, unknown or disabled API key (missing_api_key, invalid_api_key)."),
                "404": error("No site holds the id (unknown_delivery)."),
                "502": error("A site that may hold the id did not answer (site_unreachable).")
            }
        }}),
    );
    paths.insert(
        "/api/composite".to_owned(),
        json!({ "post": {
            "operationId": "composite",
            "summary": "Up to 25 method calls in order; `@{ref.path}` in a parameter takes a value from an earlier result; `allOrNone` stops at the first failure.",
            "security": [{ "ApiKey": [] }],
            "requestBody": {
                "required": true,
                "content": { "application/json": { "schema": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["compositeRequest"],
                    "properties": {
                        "allOrNone": { "type": "boolean", "default": false },
                        "compositeRequest": {
                            "type": "array", "minItems": 1, "maxItems": 25,
                            "items": {
                                "type": "object",
                                "additionalProperties": false,
                                "required": ["referenceId", "method"],
                                "properties": {
                                    "referenceId": { "type": "string", "pattern": "^[A-Za-z0-9_-]+$" },
                                    "method": { "type": "string" },
                                    "params": { "type": "object" }
                                }
                            }
                        }
                    }
                } } }
            },
            "responses": {
                "200": {
                    "description": "One answer per sub-request, in request order.",
                    "content": { "application/json": { "schema": {
                        "type": "object",
                        "required": ["compositeResponse"],
                        "properties": { "compositeResponse": { "type": "array", "items": {
                            "type": "object",
                            "required": ["referenceId", "httpStatusCode", "body"],
                            "properties": {
                                "referenceId": { "type": "string" },
                                "httpStatusCode": { "type": "integer" },
                                "body": {}
                            }
                        } } }
                    } } }
                },
                "400": error("Not a composite request, or not 1 to 25 sub-requests with distinct referenceIds (invalid_body, invalid_json)."),
                "401": error("Missing, unknown or disabled API key (missing_api_key, invalid_api_key)."),
                "503": error("The node is shutting down (shutting_down).")
            }
        }}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "SCL inbound API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Methods are api scripts; parameters are the top-level fields of the JSON body."
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {
                        "error": { "type": "string", "description": "A message for people." },
                        "code": { "type": "string", "description": "A stable code for programs." }
                    },
                    "required": ["error", "code"]
                },
                "Delivery": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string" },
                        "site": { "type": "string" },
                        "category": { "enum": ["external_call", "notification", "cached_write", "webhook"] },
                        "target": { "type": "string", "description": "System/Method, notification list or connection name." },
                        "status": { "enum": ["pending", "retrying", "delivered", "parked", "discarded"] },
                        "attempts": { "type": "integer" },
                        "attempts_remaining": { "type": "integer" },
                        "last_error": { "type": "string" },
                        "created_at_ms": { "type": "integer" },
                        "updated_at_ms": { "type": "integer" },
                        "next_attempt_at_ms": { "type": "integer" },
                        "history": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "at_ms": { "type": "integer" },
                                    "outcome": { "enum": ["delivered", "transient", "permanent"] },
                                    "status_code": { "type": "integer" },
                                    "error": { "type": "string" },
                                    "duration_ms": { "type": "integer" },
                                    "response_body": { "type": "string", "description": "Webhooks: the first 1 KiB of the receiver's answer." }
                                },
                                "required": ["at_ms", "outcome", "duration_ms"]
                            }
                        }
                    },
                    "required": ["id", "site", "category", "target", "status", "attempts", "attempts_remaining", "created_at_ms", "updated_at_ms", "history"]
                }
            },
            "securitySchemes": {
                "ApiKey": { "type": "apiKey", "in": "header", "name": "X-API-Key" }
            }
        },
        "security": [{ "ApiKey": [] }]
    })
}
