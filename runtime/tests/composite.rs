//! `POST /api/composite` (issue 10, seed 004's composite shape) against central
//! and a site as real processes: sub-requests in order, each authorised and
//! checked as if called alone, references to earlier results, `allOrNone`.

mod process_support;

use std::time::Duration;

use process_support::{Api, Folder, api_keys, eventually, free_port, nodes};
use serde_json::{Value, json};

const KEY: &str = "scl_composite_key";
const OTHER: &str = "scl_composite_other_key";

fn deployment(central: u16, site: u16) -> String {
    nodes(Some(central), &[("plant-a", site)])
        + &api_keys(&[("erp", KEY), ("other", OTHER)])
        + r#"
[templates.Pump.attributes]
Speed = { type = "float", default = 1450.0 }
Label = { type = "string", default = "" }

[[instance]]
code = "PUMP-1"
template = "Pump"
site = "plant-a"

[api_methods.Status]
script = "scripts/status.scl"
approved_keys = ["erp"]

[api_methods.SetLabel]
script = "scripts/set_label.scl"
approved_keys = ["erp"]

[api_methods.Divide]
script = "scripts/divide.scl"
approved_keys = ["erp"]

[api_methods.Echo]
script = "scripts/echo.scl"
approved_keys = ["erp"]

[api_methods.Secret]
script = "scripts/echo.scl"
approved_keys = ["other"]
"#
}

const SCRIPTS: &[(&str, &str)] = &[
    (
        "scripts/status.scl",
        "fn main(code: string) -> json {\n    return Route.To(code).GetAttributes([\"Speed\", \"Label\"]);\n}\n",
    ),
    (
        "scripts/set_label.scl",
        "fn main(code: string, label: string) -> string {\n    Route.To(code).SetAttribute(\"Label\", label);\n    return label;\n}\n",
    ),
    (
        "scripts/divide.scl",
        "fn main(d: int) -> int {\n    return 10 / d;\n}\n",
    ),
    (
        "scripts/echo.scl",
        "fn main(x: json) -> json {\n    return x;\n}\n",
    ),
];

async fn composite(api: &Api, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = api
        .http
        .post(format!("{}/api/composite", api.base))
        .json(&body);
    if let Some(key) = key {
        request = request.header("X-API-Key", key);
    }
    let response = request.send().await.expect("POST /api/composite");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `(referenceId, httpStatusCode)` of each sub-response, and the bodies.
fn statuses(answer: &Value) -> Vec<(String, u64)> {
    answer["compositeResponse"]
        .as_array()
        .expect("compositeResponse")
        .iter()
        .map(|r| {
            (
                r["referenceId"].as_str().unwrap_or_default().to_owned(),
                r["httpStatusCode"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

fn body<'a>(answer: &'a Value, reference: &str) -> &'a Value {
    answer["compositeResponse"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["referenceId"] == reference))
        .map(|r| &r["body"])
        .unwrap_or_else(|| panic!("no sub-response `{reference}` in {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_requests_run_in_order_with_references_and_all_or_none() {
    let (central_port, site_port) = (free_port(), free_port());
    let folder = Folder::new(&deployment(central_port, site_port), SCRIPTS);
    let _site = folder.serve("site:plant-a", &[], &[]);
    let _central = folder.serve("central", &[], &[]);
    let api = Api::new(format!("http://127.0.0.1:{central_port}"));
    api.wait_healthy().await;
    eventually(
        "the site to run the deployment",
        Duration::from_secs(60),
        || async {
            let answer = api
                .try_call("Status", Some(KEY), &json!({ "code": "PUMP-1" }))
                .await
                .ok()?;
            (answer.0 == 200).then_some(())
        },
    )
    .await;

    // Without allOrNone every sub-request runs and answers for itself.
    let (status, answer) = composite(
        &api,
        Some(KEY),
        json!({ "compositeRequest": [
            { "referenceId": "s", "method": "Status", "params": { "code": "PUMP-1" } },
            { "referenceId": "l", "method": "SetLabel",
              "params": { "code": "PUMP-1", "label": "at @{s.Speed} rpm" } },
            { "referenceId": "zero", "method": "Divide", "params": { "d": 0 } },
            { "referenceId": "echo", "method": "Echo", "params": { "x": { "status": "@{s}", "label": "@{l}" } } },
            { "referenceId": "secret", "method": "Secret", "params": { "x": 1 } },
            { "referenceId": "nope", "method": "Nope" },
            { "referenceId": "dangling", "method": "Echo", "params": { "x": "@{zero.value}" } },
            { "referenceId": "typed", "method": "Divide", "params": { "d": "@{s.Label}" } }
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let expected: Vec<(String, u64)> = [
        ("s", 200),
        ("l", 200),
        ("zero", 500),
        ("echo", 200),
        ("secret", 403),
        ("nope", 404),
        ("dangling", 400),
        ("typed", 400),
    ]
    .iter()
    .map(|(r, s)| ((*r).to_owned(), *s))
    .collect();
    assert_eq!(statuses(&answer), expected, "{answer}");
    assert_eq!(body(&answer, "l"), &json!("at 1450.0 rpm"));
    assert_eq!(
        body(&answer, "echo"),
        &json!({ "status": { "Speed": 1450.0, "Label": "" }, "label": "at 1450.0 rpm" })
    );
    assert_eq!(body(&answer, "zero")["code"], "script_error");
    assert_eq!(body(&answer, "secret")["code"], "key_not_approved");
    assert_eq!(body(&answer, "nope")["code"], "unknown_method");
    assert_eq!(body(&answer, "dangling")["code"], "invalid_reference");
    assert_eq!(body(&answer, "typed")["code"], "invalid_parameter");

    // With allOrNone the first failure stops the rest.
    let (status, answer) = composite(
        &api,
        Some(KEY),
        json!({ "allOrNone": true, "compositeRequest": [
            { "referenceId": "s", "method": "Status", "params": { "code": "PUMP-1" } },
            { "referenceId": "zero", "method": "Divide", "params": { "d": 0 } },
            { "referenceId": "l", "method": "SetLabel", "params": { "code": "PUMP-1", "label": "never" } }
        ]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        statuses(&answer),
        [
            ("s".to_owned(), 200),
            ("zero".to_owned(), 500),
            ("l".to_owned(), 400)
        ]
    );
    assert_eq!(body(&answer, "l")["code"], "processing_halted");
    let (_, now) = api
        .call("Status", Some(KEY), json!({ "code": "PUMP-1" }))
        .await;
    assert_eq!(
        now["Label"], "at 1450.0 rpm",
        "the halted SetLabel did not run"
    );

    // The request itself: key first, then its shape.
    let one = json!({ "compositeRequest": [{ "referenceId": "a", "method": "Echo", "params": { "x": 1 } }] });
    assert_eq!(
        composite(&api, None, one.clone()).await.1["code"],
        "missing_api_key"
    );
    assert_eq!(composite(&api, Some("bad"), one).await.0, 401);
    let many: Vec<Value> = (0..26)
        .map(|i| json!({ "referenceId": format!("r{i}"), "method": "Echo", "params": { "x": i } }))
        .collect();
    let (status, answer) = composite(&api, Some(KEY), json!({ "compositeRequest": many })).await;
    assert_eq!(
        (status, &answer["code"]),
        (400, &json!("invalid_body")),
        "{answer}"
    );
    let twice = json!({ "compositeRequest": [
        { "referenceId": "a", "method": "Echo", "params": { "x": 1 } },
        { "referenceId": "a", "method": "Echo", "params": { "x": 2 } }
    ]});
    assert_eq!(composite(&api, Some(KEY), twice).await.0, 400);
    let (status, answer) = composite(&api, Some(KEY), json!({ "requests": [] })).await;
    assert_eq!((status, &answer["code"]), (400, &json!("invalid_body")));
}
