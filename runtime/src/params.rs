//! Checking a JSON object of parameters against `main`'s signature before a
//! script runs, so a caller's mistake is reported as the caller's (400 on the
//! inbound API, kind `type` to a calling script) and names the parameter by
//! its path (`items[2].qty`), never as a failure inside the script.

use scl_lang::types::Type;

/// A parameter that does not fit `main`'s signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// `missing_parameter`, `unknown_parameter`, `invalid_parameter` or `invalid_params`.
    pub code: &'static str,
    /// The parameter's path (`pumpCode`, `items[2].qty`); empty for the whole body.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Checks `params` (a JSON object) against `main`'s parameters.
pub fn check(params: &serde_json::Value, signature: &[(String, Type)]) -> Result<(), ParamError> {
    let Some(object) = params.as_object() else {
        return Err(ParamError {
            code: "invalid_params",
            path: String::new(),
            message: "the parameters must be a JSON object".to_owned(),
        });
    };
    if let Some(extra) = object
        .keys()
        .find(|k| !signature.iter().any(|(name, _)| name == *k))
    {
        let names: Vec<&str> = signature.iter().map(|(n, _)| n.as_str()).collect();
        return Err(ParamError {
            code: "unknown_parameter",
            path: extra.clone(),
            message: format!(
                "unknown parameter `{extra}` (expected: {})",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ),
        });
    }
    for (name, ty) in signature {
        match object.get(name) {
            None if matches!(ty, Type::Optional(_)) => {}
            None => {
                return Err(ParamError {
                    code: "missing_parameter",
                    path: name.clone(),
                    message: format!("missing parameter `{name}` of type {ty}"),
                });
            }
            Some(value) => {
                let mut path = name.clone();
                check_value(value, ty, &mut path)?;
            }
        }
    }
    Ok(())
}

fn check_value(value: &serde_json::Value, ty: &Type, path: &mut String) -> Result<(), ParamError> {
    use serde_json::Value as J;
    let fits = match (ty, value) {
        (Type::Json | Type::Error, _) => true,
        (Type::Optional(_), J::Null) => true,
        (Type::Optional(inner), _) => return check_value(value, inner, path),
        (Type::Int, J::Number(n)) => n.is_i64(),
        (Type::Float, J::Number(_)) => true,
        (Type::Bool, J::Bool(_)) => true,
        (Type::String, J::String(_)) => true,
        (Type::List(element), J::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                let length = path.len();
                path.push_str(&format!("[{index}]"));
                check_value(item, element, path)?;
                path.truncate(length);
            }
            true
        }
        (Type::Map(element), J::Object(entries)) => {
            for (key, item) in entries {
                let length = path.len();
                path.push_str(&format!("[{key:?}]"));
                check_value(item, element, path)?;
                path.truncate(length);
            }
            true
        }
        (Type::Record(record), J::Object(entries)) => {
            if let Some(extra) = entries.keys().find(|k| record.field(k).is_none()) {
                return Err(ParamError {
                    code: "invalid_parameter",
                    path: format!("{path}.{extra}"),
                    message: format!("`{path}` has no field `{extra}`"),
                });
            }
            for (field, field_ty) in &record.fields {
                let length = path.len();
                path.push('.');
                path.push_str(field);
                match entries.get(field) {
                    Some(item) => check_value(item, field_ty, path)?,
                    None if matches!(field_ty, Type::Optional(_)) => {}
                    None => {
                        return Err(ParamError {
                            code: "invalid_parameter",
                            path: path.clone(),
                            message: format!("missing field `{path}` of type {field_ty}"),
                        });
                    }
                }
                path.truncate(length);
            }
            true
        }
        _ => false,
    };
    if fits {
        Ok(())
    } else {
        Err(ParamError {
            code: "invalid_parameter",
            path: path.clone(),
            message: format!("`{path}` must be {ty}, not {}", json_kind(value)),
        })
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a bool",
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        serde_json::Value::Number(_) => "a float",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scl_lang::types::RecordType;
    use serde_json::json;

    fn signature() -> Vec<(String, Type)> {
        let item = Type::Record(RecordType::new(
            Some("Item".into()),
            vec![
                ("qty".into(), Type::Int),
                ("note".into(), Type::Optional(Box::new(Type::String))),
            ],
        ));
        vec![
            ("code".into(), Type::String),
            ("items".into(), Type::List(Box::new(item))),
            ("limit".into(), Type::Optional(Box::new(Type::Float))),
        ]
    }

    #[test]
    fn accepts_exact_parameters() {
        let params = json!({"code": "P-1", "items": [{"qty": 2}, {"qty": 3, "note": "x"}]});
        assert_eq!(check(&params, &signature()), Ok(()));
    }

    #[test]
    fn names_the_nested_path() {
        let params = json!({"code": "P-1", "items": [{"qty": 2}, {"qty": 2.5}]});
        let error = check(&params, &signature()).expect_err("mistyped");
        assert_eq!(error.path, "items[1].qty");
        assert_eq!(error.code, "invalid_parameter");
    }

    #[test]
    fn missing_and_extra_parameters() {
        let missing = check(&json!({"items": []}), &signature()).expect_err("missing");
        assert_eq!(
            (missing.code, missing.path.as_str()),
            ("missing_parameter", "code")
        );
        let extra =
            check(&json!({"code": "a", "items": [], "x": 1}), &signature()).expect_err("extra");
        assert_eq!(
            (extra.code, extra.path.as_str()),
            ("unknown_parameter", "x")
        );
        let field = check(
            &json!({"code": "a", "items": [{"qty": 1, "y": 0}]}),
            &signature(),
        )
        .expect_err("extra field");
        assert_eq!(field.path, "items[0].y");
    }
}
