//! `docs/deployment.schema.json` stays in step with the loader: for every
//! section, the keys the schema lists are exactly the keys the loader
//! accepts. The loader's own answer to an unknown key ("unknown field `x`,
//! expected one of `a`, `b`") gives the accepted set.

use std::collections::BTreeSet;
use std::path::Path;

use scl_runtime::deployment::Deployment;
use serde_json::Value;

fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deployment.schema.json");
    let text = std::fs::read_to_string(path).expect("the schema is in docs/");
    serde_json::from_str(&text).expect("the schema is JSON")
}

/// The schema node at a JSON pointer, following `$ref`s.
fn node<'a>(schema: &'a Value, pointer: &str) -> &'a Value {
    let found = schema
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in the schema"));
    match found.get("$ref").and_then(Value::as_str) {
        Some(reference) => node(schema, reference.trim_start_matches('#')),
        None => found,
    }
}

fn schema_keys(schema: &Value, pointer: &str) -> BTreeSet<String> {
    node(schema, pointer)["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{pointer} has no properties"))
        .keys()
        .cloned()
        .collect()
}

/// The keys the loader accepts where `document` has `zz_unknown`.
fn loader_keys(document: &str) -> BTreeSet<String> {
    let errors = Deployment::from_source(Path::new("deploy.toml"), document.to_owned())
        .expect_err("an unknown key is refused");
    let message = &errors[0].message;
    assert!(message.contains("unknown field `zz_unknown`"), "{message}");
    let expected = message
        .split_once("expected ")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no expected keys in: {message}"));
    expected
        .trim_start_matches("one of ")
        .split(", ")
        .flat_map(|part| part.split(" or "))
        .map(|k| k.trim().trim_matches('`').to_owned())
        .filter(|k| !k.is_empty())
        .collect()
}

#[test]
fn every_section_lists_exactly_the_keys_the_loader_accepts() {
    let schema = schema();
    let cases: &[(&str, &str)] = &[
        ("", "zz_unknown = 1\n"),
        (
            "/properties/central",
            "[central]\nlisten = \"x\"\nzz_unknown = 1\n",
        ),
        (
            "/properties/apps/additionalProperties",
            "[apps.A]\nclient_id = \"a\"\nsecret_sha256 = \"x\"\nscopes = []\nzz_unknown = 1\n",
        ),
        (
            "/properties/execution_log",
            "[execution_log]\nzz_unknown = 1\n",
        ),
        (
            "/properties/site/items",
            "[[site]]\nname = \"a\"\nlisten = \"x\"\nurl = \"y\"\nzz_unknown = 1\n",
        ),
        (
            "/properties/site/items/properties/standby",
            "[[site]]\nname = \"a\"\nlisten = \"x\"\nurl = \"y\"\nlink = \"l\"\nstandby = { listen = \"x2\", url = \"y2\", link = \"l2\", zz_unknown = 1 }\n",
        ),
        (
            "/properties/smtp",
            "[smtp]\nhost = \"h\"\nport = 25\nfrom = \"f\"\nzz_unknown = 1\n",
        ),
        (
            "/$defs/retry",
            "[smtp]\nhost = \"h\"\nport = 25\nfrom = \"f\"\nretry = { max_retries = 1, zz_unknown = 1 }\n",
        ),
        (
            "/properties/external_systems/additionalProperties",
            "[external_systems.M]\nbase_url = \"u\"\nzz_unknown = 1\n",
        ),
        (
            "/properties/external_systems/additionalProperties/properties/methods/additionalProperties",
            "[external_systems.M]\nbase_url = \"u\"\nmethods.P = { http = \"GET\", path = \"/\", zz_unknown = 1 }\n",
        ),
        (
            "/properties/databases/additionalProperties",
            "[databases.D]\ndriver = \"sqlite\"\nzz_unknown = 1\n",
        ),
        (
            "/properties/templates/additionalProperties",
            "[templates.T]\nzz_unknown = 1\n",
        ),
        (
            "/properties/templates/additionalProperties/properties/attributes/additionalProperties",
            "[templates.T.attributes]\nA = { type = \"int\", zz_unknown = 1 }\n",
        ),
        (
            "/properties/templates/additionalProperties/properties/scripts/additionalProperties",
            "[templates.T.scripts]\nS = { file = \"s.scl\", kind = \"instance\", zz_unknown = 1 }\n",
        ),
        (
            "/properties/instance/items",
            "[[instance]]\ncode = \"c\"\ntemplate = \"T\"\nsite = \"s\"\nzz_unknown = 1\n",
        ),
        (
            "/$defs/key",
            "[api_keys.k]\nsha256 = \"00\"\nzz_unknown = 1\n",
        ),
        (
            "/properties/webhook/items",
            "[[webhook]]\nname = \"w\"\nurl = \"http://h/\"\nevents = []\nzz_unknown = 1\n",
        ),
        (
            "/$defs/webhook_retry",
            "[[webhook]]\nname = \"w\"\nurl = \"http://h/\"\nevents = []\nretry = { zz_unknown = 1 }\n",
        ),
        (
            "/properties/api_methods/additionalProperties",
            "[api_methods.m]\nscript = \"m.scl\"\nzz_unknown = 1\n",
        ),
    ];
    for (pointer, document) in cases {
        assert_eq!(
            schema_keys(&schema, pointer),
            loader_keys(document),
            "schema section `{pointer}` differs from the loader"
        );
    }
}

#[test]
fn the_schema_allows_no_unknown_keys_anywhere() {
    fn walk(value: &Value, path: &str) {
        if let Some(object) = value.as_object() {
            if object.contains_key("properties") {
                assert_eq!(
                    object.get("additionalProperties"),
                    Some(&Value::Bool(false)),
                    "{path} must refuse unknown keys like the loader"
                );
            }
            for (key, child) in object {
                walk(child, &format!("{path}/{key}"));
            }
        }
    }
    walk(&schema(), "");
}
