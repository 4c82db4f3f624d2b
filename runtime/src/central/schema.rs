//! JSON Schema (2020-12, as OpenAPI 3.1 uses it) of script types, for the
//! OpenAPI document. Records are closed objects (`additionalProperties:
//! false`) whose required fields are the non-optional ones, matching what
//! [`crate::params::check`] accepts.

use scl_lang::types::Type;
use serde_json::{Map, Value, json};

/// The JSON Schema (2020-12, as OpenAPI 3.1 uses it) of a script type.
pub(crate) fn json_schema(ty: &Type) -> Value {
    match ty {
        Type::Int => json!({ "type": "integer", "format": "int64" }),
        Type::Float => json!({ "type": "number", "format": "double" }),
        Type::Bool => json!({ "type": "boolean" }),
        Type::String => json!({ "type": "string" }),
        Type::Json | Type::Error | Type::Host(_) => json!({}),
        Type::Void | Type::Null => json!({ "type": "null" }),
        Type::List(element) => json!({ "type": "array", "items": json_schema(element) }),
        Type::Map(element) => {
            json!({ "type": "object", "additionalProperties": json_schema(element) })
        }
        Type::Optional(inner) => json!({ "anyOf": [json_schema(inner), { "type": "null" }] }),
        Type::Record(record) => {
            let mut properties = Map::new();
            let mut required = Vec::new();
            for (name, field_type) in &record.fields {
                properties.insert(name.clone(), json_schema(field_type));
                if !matches!(field_type, Type::Optional(_)) {
                    required.push(Value::String(name.clone()));
                }
            }
            let mut schema = json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            });
            if let (Some(name), Some(object)) = (&record.name, schema.as_object_mut()) {
                object.insert("title".into(), Value::String(name.clone()));
            }
            schema
        }
    }
}

/// The schema of a request body with `main`'s parameters as its fields.
pub(crate) fn parameters_schema(params: &[(String, Type)]) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, ty) in params {
        properties.insert(name.clone(), json_schema(ty));
        if !matches!(ty, Type::Optional(_)) {
            required.push(Value::String(name.clone()));
        }
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scl_lang::types::RecordType;

    #[test]
    fn schema_of_a_record_and_a_body() {
        let item = Type::Record(RecordType::new(
            Some("Item".into()),
            vec![
                ("sku".into(), Type::String),
                ("qty".into(), Type::Int),
                ("note".into(), Type::optional(Type::String)),
            ],
        ));
        let schema = json_schema(&item);
        assert_eq!(schema["required"], json!(["qty", "sku"]));
        assert_eq!(schema["properties"]["qty"]["type"], "integer");
        assert_eq!(schema["properties"]["note"]["anyOf"][1]["type"], "null");
        assert_eq!(schema["title"], "Item");
        let params = vec![
            ("order".to_string(), Type::String),
            ("items".to_string(), Type::list(item)),
            ("urgent".to_string(), Type::optional(Type::Bool)),
        ];
        let body = parameters_schema(&params);
        assert_eq!(body["required"], json!(["order", "items"]));
        assert_eq!(body["properties"]["items"]["items"]["title"], "Item");
        assert_eq!(body["additionalProperties"], false);
    }
}
