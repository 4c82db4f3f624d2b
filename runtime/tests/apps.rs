//! Connected apps (issue 10): OAuth2 client credentials against two central
//! nodes as real processes sharing one signing key and one data directory —
//! token issue (Basic and form authentication), scopes, expiry, revocation
//! seen by both nodes, secret rotation with an overlap window, IP allow-lists
//! and the optional hourly limit.

mod process_support;

use std::time::Duration;

use base64::Engine as _;
use process_support::{Api, Folder, eventually, free_port};
use serde_json::{Value, json};

const SECRET: &str = "mes-secret-current";
const PREVIOUS: &str = "mes-secret-previous";
const EXPIRED: &str = "old-secret-expired";
const SIGNING_KEY: &str = "apps-test-signing-key-0123456789";

fn deployment(port: u16) -> String {
    let hash = scl_runtime::keys::sha256_hex;
    format!(
        r#"data_dir = "./data"

[central]
listen = "127.0.0.1:{port}"
token_key_env = "APPS_TEST_TOKEN_KEY"

[api_methods.Echo]
script = "scripts/echo.scl"

[api_methods.Admin]
script = "scripts/echo.scl"

[apps.mes]
client_id = "mes-client"
secret_sha256 = "{secret}"
previous_secret_sha256 = "{previous}"
previous_valid_until = "2999-01-01T00:00:00Z"
scopes = ["Echo"]
allow_ips = ["127.0.0.1/32", "::1/128"]
token_ttl_s = 3

[apps.old]
client_id = "old-client"
secret_sha256 = "{other}"
previous_secret_sha256 = "{expired}"
previous_valid_until = "2001-01-01T00:00:00Z"
scopes = ["*"]

[apps.fenced]
client_id = "fenced-client"
secret_sha256 = "{secret}"
scopes = ["*"]
allow_ips = ["10.0.0.0/8"]

[apps.limited]
client_id = "limited-client"
secret_sha256 = "{secret}"
scopes = ["*"]
rate_limit_per_hour = 3
"#,
        secret = hash(SECRET),
        previous = hash(PREVIOUS),
        expired = hash(EXPIRED),
        other = hash("old-secret-current"),
    )
}

async fn token_basic(api: &Api, id: &str, secret: &str, form: &str) -> (u16, Value) {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let response = api
        .http
        .post(format!("{}/oauth/token", api.base))
        .header("Authorization", format!("Basic {basic}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .expect("POST /oauth/token");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post_form(api: &Api, path: &str, form: &str) -> (u16, Value) {
    let response = api
        .http
        .post(format!("{}{path}", api.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .expect("POST form");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn bearer(api: &Api, method: &str, token: &str) -> (u16, Value, Option<String>) {
    let response = api
        .http
        .post(format!("{}/api/{method}", api.base))
        .bearer_auth(token)
        .json(&json!({ "x": 1 }))
        .send()
        .await
        .expect("POST /api");
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, response.json().await.unwrap_or(Value::Null), retry)
}

fn token_of(answer: &(u16, Value)) -> String {
    assert_eq!(answer.0, 200, "{answer:?}");
    answer.1["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_tokens_scopes_expiry_revocation_and_limits() {
    let ports = [free_port(), free_port()];
    let folder = Folder::new(
        &deployment(ports[0]),
        &[(
            "scripts/echo.scl",
            "fn main(x: json) -> json {\n    return x;\n}\n",
        )],
    );
    let env = [("APPS_TEST_TOKEN_KEY", SIGNING_KEY)];
    let _nodes: Vec<_> = ports
        .iter()
        .map(|p| folder.serve("central", &["--listen", &format!("127.0.0.1:{p}")], &env))
        .collect();
    let a = Api::new(format!("http://127.0.0.1:{}", ports[0]));
    let b = Api::new(format!("http://127.0.0.1:{}", ports[1]));
    a.wait_healthy().await;
    b.wait_healthy().await;

    // client_secret_basic: a token for the app's scopes.
    let issued = token_basic(&a, "mes-client", SECRET, "grant_type=client_credentials").await;
    let token = token_of(&issued);
    assert_eq!(issued.1["token_type"], "Bearer");
    assert_eq!(issued.1["expires_in"], 3);
    assert_eq!(issued.1["scope"], "Echo");
    assert_eq!(bearer(&a, "Echo", &token).await.0, 200);
    // A method outside the scopes: 403, as for an unapproved API key.
    let (status, body, _) = bearer(&a, "Admin", &token).await;
    assert_eq!((status, &body["code"]), (403, &json!("key_not_approved")));
    // Any node with the same key accepts the token.
    assert_eq!(bearer(&b, "Echo", &token).await.1, json!(1));
    // A forged or altered token is refused.
    let mut altered = token.clone();
    altered.pop();
    altered.push(if token.ends_with('A') { 'B' } else { 'A' });
    let (status, body, _) = bearer(&a, "Echo", &altered).await;
    assert_eq!((status, &body["code"]), (401, &json!("invalid_token")));

    // client_secret_post, narrowing the scope; asking for more is refused.
    let form = format!(
        "grant_type=client_credentials&client_id=mes-client&client_secret={SECRET}&scope=Echo"
    );
    let posted = post_form(&a, "/oauth/token", &form).await;
    let posted_token = token_of(&posted);
    let form = format!(
        "grant_type=client_credentials&client_id=mes-client&client_secret={SECRET}&scope=Admin"
    );
    let (status, body) = post_form(&a, "/oauth/token", &form).await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_scope")));

    // Wrong secrets, unknown clients, bad grants.
    let (status, body) =
        token_basic(&a, "mes-client", "nope", "grant_type=client_credentials").await;
    assert_eq!((status, &body["error"]), (401, &json!("invalid_client")));
    let (status, _) = token_basic(&a, "who", SECRET, "grant_type=client_credentials").await;
    assert_eq!(status, 401);
    let (status, body) = token_basic(&a, "mes-client", SECRET, "grant_type=password").await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("unsupported_grant_type"))
    );
    let (status, body) = token_basic(&a, "mes-client", SECRET, "").await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_request")));

    // Rotation: the previous secret works inside its window, not after it.
    token_of(&token_basic(&a, "mes-client", PREVIOUS, "grant_type=client_credentials").await);
    let (status, _) = token_basic(&a, "old-client", EXPIRED, "grant_type=client_credentials").await;
    assert_eq!(status, 401);
    token_of(
        &token_basic(
            &a,
            "old-client",
            "old-secret-current",
            "grant_type=client_credentials",
        )
        .await,
    );

    // IP allow-list: this test calls from 127.0.0.1, outside 10.0.0.0/8.
    let (status, body) =
        token_basic(&a, "fenced-client", SECRET, "grant_type=client_credentials").await;
    assert_eq!(
        (status, &body["error"]),
        (403, &json!("unauthorized_client"))
    );

    // Revocation on node A is seen by node B (they share the data directory).
    let form = format!("token={posted_token}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("mes-client:{SECRET}"));
    let response = a
        .http
        .post(format!("{}/oauth/revoke", a.base))
        .header("Authorization", format!("Basic {basic}"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("revoke");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(bearer(&a, "Echo", &posted_token).await.0, 401);
    assert_eq!(bearer(&b, "Echo", &posted_token).await.0, 401);
    assert_eq!(
        bearer(&b, "Echo", &token).await.0,
        200,
        "other tokens stay valid"
    );

    // The hourly limit (per node): three calls, then 429 with Retry-After.
    let limited = token_of(
        &token_basic(
            &a,
            "limited-client",
            SECRET,
            "grant_type=client_credentials",
        )
        .await,
    );
    for _ in 0..3 {
        assert_eq!(bearer(&a, "Admin", &limited).await.0, 200);
    }
    let (status, body, retry) = bearer(&a, "Admin", &limited).await;
    assert_eq!((status, &body["code"]), (429, &json!("rate_limited")));
    assert!(
        retry
            .and_then(|r| r.parse::<u64>().ok())
            .is_some_and(|s| s > 0)
    );

    // Expiry: the 3 s token stops working.
    eventually("the token to expire", Duration::from_secs(15), || async {
        (bearer(&a, "Echo", &token).await.0 == 401).then_some(())
    })
    .await;

    // API keys still work beside apps; no key and no token is a 401.
    let (status, body) = a.call("Echo", None, json!({ "x": 1 })).await;
    assert_eq!((status, &body["code"]), (401, &json!("missing_api_key")));
}

#[test]
fn app_new_and_rotate_print_secrets_once_and_hashes_for_the_file() {
    let folder = Folder::new(
        &deployment(1),
        &[(
            "scripts/echo.scl",
            "fn main(x: json) -> json {\n    return x;\n}\n",
        )],
    );
    let new = folder.scl(&["app", "new", "billing"]);
    let text = String::from_utf8_lossy(&new.stdout);
    assert!(new.status.success(), "{new:?}");
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("client secret (shown once): "))
        .expect("the secret");
    let hash_line = format!(
        "secret_sha256 = \"{}\"",
        scl_runtime::keys::sha256_hex(secret)
    );
    assert!(
        text.contains("[apps.billing]") && text.contains(&hash_line),
        "{text}"
    );

    let config = folder.config();
    let rotate = folder.scl(&[
        "app",
        "rotate",
        "mes",
        "--config",
        &config.to_string_lossy(),
        "--overlap",
        "2h",
    ]);
    let text = String::from_utf8_lossy(&rotate.stdout);
    assert!(rotate.status.success(), "{rotate:?}");
    let previous = format!(
        "previous_secret_sha256 = \"{}\"",
        scl_runtime::keys::sha256_hex(SECRET)
    );
    assert!(
        text.contains(&previous) && text.contains("previous_valid_until = \""),
        "{text}"
    );
    let unknown = folder.scl(&[
        "app",
        "rotate",
        "nope",
        "--config",
        &config.to_string_lossy(),
    ]);
    assert_eq!(unknown.status.code(), Some(2));
}
