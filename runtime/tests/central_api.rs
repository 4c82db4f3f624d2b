//! The central inbound API over real HTTP: central on 127.0.0.1:0 with a
//! deployment in a temp dir, driven with reqwest; `Route.To()` against a
//! stand-in of the site internal API (a real HTTP peer).

mod central_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use central_support::{ADMIN_KEY, ERP_KEY, Fixture, OLD_KEY, OTHER_KEY};
use serde_json::{Value, json};

fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["code"], code, "body: {body}");
    assert!(
        body["error"].as_str().is_some_and(|m| !m.is_empty()),
        "body: {body}"
    );
    assert_eq!(body.as_object().map(|o| o.len()), Some(2), "body: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_returns_the_value() {
    let mut fixture = Fixture::start().await;
    let (status, body) = fixture
        .call("Echo", Some(ERP_KEY), json!({ "name": "a", "count": 3 }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "name": "a", "count": 3 }));
    let (status, body) = fixture
        .call(
            "Order",
            Some(ERP_KEY),
            json!({
                "order": "A-1",
                "items": [{ "sku": "x", "qty": 2 }, { "sku": "y", "qty": 5, "note": "n" }],
                "tags": { "priority": 1.5 }
            }),
        )
        .await;
    assert_eq!((status, body), (200, json!(7)));
    // Each method has a literal route; a percent-encoded name takes the
    // generic `/api/{method}` route and reaches the same method.
    let response = fixture
        .client
        .post(format!("{}/api/Ech%6F", fixture.base))
        .header("X-API-Key", ERP_KEY)
        .json(&json!({ "name": "b", "count": 4 }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({ "name": "b", "count": 4 })
    );
    // Database.Connection reaches central's own databases (seed CD-IA-10).
    let (status, body) = fixture
        .call("DbAnswer", Some(ERP_KEY), json!({ "value": 42 }))
        .await;
    assert_eq!((status, body), (200, json!(42)));
    fixture.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_checked() {
    let mut fixture = Fixture::start().await;
    let params = json!({ "name": "a", "count": 3 });
    let (status, body) = fixture.call("Echo", None, params.clone()).await;
    assert_eq!(status, 401);
    assert_error(&body, "missing_api_key");
    let (status, body) = fixture.call("Echo", Some("wrong"), params.clone()).await;
    assert_eq!(status, 401);
    assert_error(&body, "invalid_api_key");
    // A disabled key is approved for the method but still 401, like an unknown one.
    let (status, body) = fixture.call("Echo", Some(OLD_KEY), params.clone()).await;
    assert_eq!(status, 401);
    assert_error(&body, "invalid_api_key");
    let (status, body) = fixture.call("Echo", Some(OTHER_KEY), params.clone()).await;
    assert_eq!(status, 403);
    assert_error(&body, "key_not_approved");
    // The key is checked before the method, so callers without one learn nothing.
    let (status, _) = fixture.call("Nope", None, json!({})).await;
    assert_eq!(status, 401);
    let (status, body) = fixture.call("Nope", Some(ERP_KEY), json!({})).await;
    assert_eq!(status, 404);
    assert_error(&body, "unknown_method");
    // Nothing secret comes back.
    assert!(!body.to_string().contains(ERP_KEY));
    fixture.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_level_errors_are_json() {
    let mut fixture = Fixture::start_with_limit(1024).await;
    let url = format!("{}/api/Echo", fixture.base);
    // Other verbs: 405 with the JSON body and Allow: POST.
    let response = fixture
        .client
        .get(&url)
        .header("X-API-Key", ERP_KEY)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(
        response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    assert_error(&response.json().await.expect("json"), "method_not_allowed");
    let response = fixture.client.delete(&url).send().await.expect("request");
    assert_eq!(response.status().as_u16(), 405);

    // Wrong content type: 415.
    let response = fixture
        .client
        .post(&url)
        .header("X-API-Key", ERP_KEY)
        .header("content-type", "text/plain")
        .body(r#"{"name":"a","count":1}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 415);
    assert_error(
        &response.json().await.expect("json"),
        "unsupported_media_type",
    );

    // Malformed JSON: 400.
    let response = fixture
        .client
        .post(&url)
        .header("X-API-Key", ERP_KEY)
        .header("content-type", "application/json")
        .body(r#"{"name": "a", "count": "#)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 400);
    assert_error(&response.json().await.expect("json"), "invalid_json");

    // Not an object: 400.
    let (status, body) = fixture.call("Echo", Some(ERP_KEY), json!([1, 2])).await;
    assert_eq!(status, 400);
    assert_error(&body, "invalid_body");

    // Over the body limit (1 KiB here): 413, with and without Content-Length.
    let big = json!({ "name": "x".repeat(4096), "count": 1 });
    let (status, body) = fixture.call("Echo", Some(ERP_KEY), big.clone()).await;
    assert_eq!(status, 413);
    assert_error(&body, "payload_too_large");
    // Chunked, so the server only learns the size while reading.
    let text = big.to_string();
    let (first, second) = text.split_at(600);
    let raw = format!(
        "POST /api/Echo HTTP/1.1\r\nHost: x\r\nX-API-Key: {ERP_KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        first.len(),
        second.len()
    );
    let answer = raw_http(&fixture.base, &raw).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""code":"payload_too_large""#), "{answer}");

    // Unknown route: JSON 404.
    let response = fixture
        .client
        .get(format!("{}/nowhere", fixture.base))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 404);
    assert_error(&response.json().await.expect("json"), "not_found");
    fixture.stop().await;
}

/// Sends raw bytes to the server and reads the answer until it closes.
async fn raw_http(base: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_validated_exactly() {
    let mut fixture = Fixture::start().await;
    let cases = [
        (json!({ "name": "a" }), "missing_parameter", "`count`"),
        (
            json!({ "name": "a", "count": 1, "extra": true }),
            "unknown_parameter",
            "`extra`",
        ),
        (
            json!({ "name": "a", "count": "1" }),
            "invalid_parameter",
            "`count`",
        ),
        (
            json!({ "name": "a", "count": 1.5 }),
            "invalid_parameter",
            "`count`",
        ),
        (
            json!({ "name": null, "count": 1 }),
            "invalid_parameter",
            "`name`",
        ),
    ];
    for (params, code, named) in cases {
        let (status, body) = fixture.call("Echo", Some(ERP_KEY), params.clone()).await;
        assert_eq!(status, 400, "{params}");
        assert_error(&body, code);
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{params}: {message}");
    }
    let order = |items: Value, tags: Value| json!({ "order": "A-1", "items": items, "tags": tags });
    let nested = [
        (
            order(
                json!([{ "sku": "a", "qty": 1 }, { "sku": "b", "qty": 1 }, { "sku": "c", "qty": "3" }]),
                json!({}),
            ),
            "items[2].qty",
        ),
        (order(json!([{ "sku": "a" }]), json!({})), "items[0].qty"),
        (
            order(
                json!([{ "sku": "a", "qty": 1, "colour": "red" }]),
                json!({}),
            ),
            "`items[0]` has no field `colour`",
        ),
        (
            order(json!([{ "sku": "a", "qty": 1, "note": 5 }]), json!({})),
            "items[0].note",
        ),
        (order(json!([]), json!({ "p": "high" })), "tags"),
        (order(json!({}), json!({})), "items"),
    ];
    for (params, path) in nested {
        let (status, body) = fixture.call("Order", Some(ERP_KEY), params.clone()).await;
        assert_eq!(status, 400, "{params}");
        assert_eq!(body["code"], "invalid_parameter", "{body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(path), "{params}: {message}");
    }
    // The optional parameter may be null or absent; a wrong type is named.
    let mut ok = order(json!([{ "sku": "a", "qty": 1, "note": null }]), json!({}));
    ok["urgent"] = json!(null);
    assert_eq!(fixture.call("Order", Some(ERP_KEY), ok).await.0, 200);
    let mut bad = order(json!([]), json!({}));
    bad["urgent"] = json!("yes");
    let (status, body) = fixture.call("Order", Some(ERP_KEY), bad).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("urgent")
    );
    fixture.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_logged_and_successes_are_not() {
    let mut fixture = Fixture::start().await;
    for _ in 0..3 {
        let (status, body) = fixture
            .call("Echo", Some(ERP_KEY), json!({ "name": "a", "count": 1 }))
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = fixture.call("Echo", Some(ERP_KEY), json!({})).await;
    assert_eq!(status, 400);
    let admin = |query: &str| {
        fixture
            .client
            .get(format!("{}/admin/failures{query}", fixture.base))
            .header("X-Admin-Key", ADMIN_KEY)
    };
    let rows: Value = admin("")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(
        rows["failures"],
        json!([]),
        "successes and 400s are not logged"
    );

    for _ in 0..2 {
        let (status, body) = fixture.call("Fail", Some(ERP_KEY), json!({})).await;
        assert_eq!(status, 500);
        assert_error(&body, "script_error");
        // A safe message: nothing of the script's error text.
        let text = body.to_string();
        assert!(!text.contains("/srv") && !text.contains("SELECT"), "{text}");
    }
    let rows: Value = admin("")
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let failures = rows["failures"].as_array().cloned().unwrap_or_default();
    assert_eq!(failures.len(), 2, "{rows}");
    let row = &failures[0];
    assert_eq!(row["method"], "Fail");
    assert_eq!(row["key"], "erp");
    assert_eq!(row["code"], "script_error");
    assert!(row["message"].as_str().unwrap_or_default().contains("boom"));
    assert!(row["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(row["duration_ms"].is_u64());
    assert!(!rows.to_string().contains(ERP_KEY), "no key in the log");

    // Filters, and the admin key.
    let rows: Value = admin("?method=Echo")
        .send()
        .await
        .expect("r")
        .json()
        .await
        .expect("j");
    assert_eq!(rows["failures"], json!([]));
    let rows: Value = admin("?since=1h&limit=1")
        .send()
        .await
        .expect("r")
        .json()
        .await
        .expect("j");
    assert_eq!(rows["failures"].as_array().map(Vec::len), Some(1));
    let response = admin("?since=soon").send().await.expect("request");
    assert_eq!(response.status().as_u16(), 400);
    for key in [None, Some(ERP_KEY)] {
        let mut request = fixture
            .client
            .get(format!("{}/admin/failures", fixture.base));
        if let Some(key) = key {
            request = request.header("X-Admin-Key", key);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status().as_u16(), 401);
        assert_error(&response.json().await.expect("json"), "invalid_admin_key");
    }

    // With central stopped, `scl failures` reads the same rows.
    fixture.stop().await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_scl"))
        .args(["failures", "--config"])
        .arg(&fixture.config_path)
        .args(["--method", "Fail", "--format", "json"])
        .output()
        .expect("scl runs");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["method"], "Fail");
    let human = std::process::Command::new(env!("CARGO_BIN_EXE_scl"))
        .args(["failures", "--config"])
        .arg(&fixture.config_path)
        .args(["--since", "1d"])
        .output()
        .expect("scl runs");
    assert!(human.status.success());
    assert_eq!(String::from_utf8_lossy(&human.stdout).lines().count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_that_runs_too_long_answers_timeout() {
    let mut fixture = Fixture::start().await;
    let started = Instant::now();
    let (status, body) = fixture.call("Spin", Some(ERP_KEY), json!({})).await;
    let took = started.elapsed();
    assert_eq!(status, 500);
    assert_error(&body, "timeout");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let rows: Value = fixture
        .client
        .get(format!("{}/admin/failures?method=Spin", fixture.base))
        .header("X-Admin-Key", ADMIN_KEY)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(rows["failures"][0]["code"], "timeout");
    fixture.stop().await;
}

/// A method that calls no host function (it runs without a modules scope) answers
/// right whether it is short, loops long or keeps a large heap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pure_method_answers_short_long_and_large() {
    let mut fixture = Fixture::start().await;
    let cases = [
        (10, 1, 45, 65_537),
        // 200,000 loop steps.
        (200_000, 0, 19_999_900_000_i64, 0),
        // 300 strings of 64 KiB: about 19 MiB live, well inside a run's heap limit
        // (128 MiB).
        (10, 300, 45, 19_661_100),
    ];
    for (n, width, total, length) in cases {
        let (status, body) = fixture
            .call("Sum", Some(ERP_KEY), json!({ "n": n, "width": width }))
            .await;
        assert_eq!(status, 200, "n = {n}, width = {width}: {body}");
        assert_eq!(body, json!({ "total": total, "length": length }));
    }
    fixture.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_describes_the_methods() {
    let mut fixture = Fixture::start().await;
    let response = fixture
        .client
        .get(format!("{}/api/openapi.json", fixture.base))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let document: Value = response.json().await.expect("json");
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(
        document["components"]["securitySchemes"]["ApiKey"],
        json!({ "type": "apiKey", "in": "header", "name": "X-API-Key" })
    );
    let order = &document["paths"]["/api/Order"]["post"];
    let schema = &order["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(schema["required"], json!(["order", "items", "tags"]));
    assert_eq!(schema["additionalProperties"], false);
    let item = &schema["properties"]["items"]["items"];
    assert_eq!(item["title"], "Item");
    assert_eq!(item["required"], json!(["qty", "sku"]));
    assert_eq!(item["properties"]["qty"]["type"], "integer");
    assert_eq!(
        schema["properties"]["tags"]["additionalProperties"]["type"],
        "number"
    );
    assert_eq!(
        schema["properties"]["urgent"]["anyOf"],
        json!([{ "type": "boolean" }, { "type": "null" }])
    );
    let ok = &order["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(ok["type"], "integer");
    for status in ["400", "401", "403", "404", "413", "415", "500"] {
        assert_eq!(
            order["responses"][status]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Error",
            "{status}"
        );
    }
    assert_eq!(
        document["components"]["schemas"]["Error"]["required"],
        json!(["error", "code"])
    );
    let echo = &document["paths"]["/api/Echo"]["post"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    assert_eq!(echo["required"], json!(["count", "name"]));
    // The methods, the delivery status route and the composite route.
    assert_eq!(document["paths"].as_object().map(|p| p.len()), Some(12 + 2));
    assert_eq!(
        document["paths"]["/api/deliveries/{id}"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/Delivery"
    );
    fixture.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics() {
    let mut fixture = Fixture::start().await;
    let health: Value = fixture
        .client
        .get(format!("{}/health", fixture.base))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok");
    fixture
        .call("Echo", Some(ERP_KEY), json!({ "name": "a", "count": 1 }))
        .await;
    fixture.call("Echo", Some(ERP_KEY), json!({})).await;
    fixture.call("Nope", Some(ERP_KEY), json!({})).await;
    let response = fixture
        .client
        .get(format!("{}/metrics", fixture.base))
        .send()
        .await
        .expect("request");
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/plain"))
    );
    let text = response.text().await.expect("text");
    assert!(
        text.contains(r#"scl_central_requests_total{method="Echo",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"scl_central_requests_total{method="Echo",status="400"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"scl_central_requests_total{method="_unknown",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"scl_central_request_duration_seconds_count{method="Echo"} 2"#),
        "{text}"
    );
    fixture.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_reaches_the_instance_on_its_site() {
    let mut fixture = Fixture::start().await;
    let code = json!({ "code": "PUMP-001" });
    let (status, body) = fixture.call("RouteCall", Some(ERP_KEY), code.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "instance": "PUMP-001", "params": { "x": 1 } })
    );

    let sets = fixture.site.state.set_requests.load(Ordering::SeqCst);
    let gets = fixture.site.state.get_requests.load(Ordering::SeqCst);
    let (status, body) = fixture
        .call("RouteAttributes", Some(ERP_KEY), code.clone())
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "Speed": 1500.0, "Running": true }));
    // Batches: one round trip each.
    assert_eq!(
        fixture.site.state.set_requests.load(Ordering::SeqCst),
        sets + 1
    );
    assert_eq!(
        fixture.site.state.get_requests.load(Ordering::SeqCst),
        gets + 1
    );

    let (status, body) = fixture.call("RouteOne", Some(ERP_KEY), code.clone()).await;
    assert_eq!((status, body), (200, json!(12.5)));
    fixture.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_errors_unknown_instance_and_unreachable_site() {
    let mut fixture = Fixture::start().await;
    let calls = fixture.site.state.get_requests.load(Ordering::SeqCst);
    let (status, body) = fixture
        .call("RouteKind", Some(ERP_KEY), json!({ "code": "NO-SUCH" }))
        .await;
    assert_eq!((status, body), (200, json!("not_found")));
    assert_eq!(
        fixture.site.state.get_requests.load(Ordering::SeqCst),
        calls,
        "an unknown instance never reaches a site"
    );

    // PUMP-900 is on plant-b, whose port is closed: an error at once, not buffered.
    let started = Instant::now();
    let (status, body) = fixture
        .call("RouteKind", Some(ERP_KEY), json!({ "code": "PUMP-900" }))
        .await;
    assert_eq!((status, body), (200, json!("unreachable")));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Uncaught, it is a 500 with its own code.
    let (status, body) = fixture
        .call("RouteRaw", Some(ERP_KEY), json!({ "code": "PUMP-900" }))
        .await;
    assert_eq!(status, 500);
    assert_error(&body, "site_unreachable");
    let (status, body) = fixture
        .call("RouteRaw", Some(ERP_KEY), json!({ "code": "NO-SUCH" }))
        .await;
    assert_eq!(status, 500);
    assert_error(&body, "script_error");
    fixture.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routed_calls_get_the_remaining_time() {
    let mut fixture = Fixture::start().await;
    // The site takes 10 s; the method has 1 s. The script's `catch` does not
    // take the timeout: the method answers 500 `timeout` after about 1 s.
    let started = Instant::now();
    let (status, body) = fixture
        .call("RouteSlow", Some(ERP_KEY), json!({ "code": "PUMP-001" }))
        .await;
    let took = started.elapsed();
    assert_eq!(status, 500, "{body}");
    assert_error(&body, "timeout");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    fixture.stop().await;
}
