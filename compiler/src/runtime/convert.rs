//! Type-directed conversions between run-time values ([`Val`]), JSON, host
//! [`Value`]s and text. Runtime objects do not carry their static type, so
//! every conversion walks the value together with the [`Type`] the compiler
//! recorded for it.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;

use indexmap::IndexMap;
use scl_lang::types::Type;
use serde_json::Value as Json;

use super::{Body, Obj, Val};
use crate::ir::Repr;
use crate::value::Value;

/// How a value of a static type is held in a register.
pub(crate) fn repr_of(ty: &Type) -> Repr {
    match ty {
        Type::Int => Repr::Int,
        Type::Float => Repr::Float,
        Type::Bool => Repr::Bool,
        _ => Repr::Ptr,
    }
}

/// Formats a float as the shortest text that reads back to the same value,
/// always with a `.` or an exponent (`10.0`, `2.5`, `1e-7`).
pub(crate) fn format_float(x: f64) -> String {
    format!("{x:?}")
}

/// The `string(x)` text of a value.
pub(crate) fn format_val(val: &Val, ty: &Type) -> String {
    match (val, ty) {
        (Val::Null, _) => "null".to_string(),
        (Val::Int(i), _) => i.to_string(),
        (Val::Float(x), _) => format_float(*x),
        (Val::Bool(b), _) => b.to_string(),
        (Val::Obj(obj), _) => match &obj.body {
            Body::Str(s) => s.clone(),
            Body::Int(i) => i.to_string(),
            Body::Float(x) => format_float(*x),
            Body::Bool(b) => b.to_string(),
            Body::Json(Json::String(s)) => s.clone(),
            Body::Json(j) => json_text(j),
            Body::Host(h) => format!("<{}>", h.type_name()),
            Body::List(_) | Body::Map(_) | Body::Record(_) => json_text(&val_to_json(val, ty)),
        },
    }
}

/// Compact JSON text, with floats printed as `format_float` does.
pub(crate) fn json_text(value: &Json) -> String {
    let mut out = String::new();
    write_json(&mut out, value);
    out
}

fn write_json(out: &mut String, value: &Json) {
    match value {
        Json::Number(n) => match n.as_i64() {
            Some(i) => {
                let _ = write!(out, "{i}");
            }
            None => match n.as_u64() {
                Some(u) => {
                    let _ = write!(out, "{u}");
                }
                None => out.push_str(&format_float(n.as_f64().unwrap_or(f64::NAN))),
            },
        },
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Json::Object(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Json::String(key.clone()).to_string());
                out.push(':');
                write_json(out, item);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn float_json(x: f64) -> Json {
    serde_json::Number::from_f64(x).map_or(Json::Null, Json::Number)
}

/// Converts a value of static type `ty` to JSON (records become objects).
pub(crate) fn val_to_json(val: &Val, ty: &Type) -> Json {
    match val {
        Val::Null => Json::Null,
        Val::Int(i) => Json::from(*i),
        Val::Float(x) => float_json(*x),
        Val::Bool(b) => Json::Bool(*b),
        Val::Obj(obj) => match &obj.body {
            Body::Str(s) => Json::String(s.clone()),
            Body::Int(i) => Json::from(*i),
            Body::Float(x) => float_json(*x),
            Body::Bool(b) => Json::Bool(*b),
            Body::Json(j) => j.clone(),
            Body::Host(h) => Json::String(format!("<{}>", h.type_name())),
            Body::List(items) => {
                let element = element_type(ty);
                let items = items.borrow();
                Json::Array(items.iter().map(|v| val_to_json(v, element)).collect())
            }
            Body::Map(entries) => {
                let element = element_type(ty);
                let entries = entries.borrow();
                Json::Object(
                    entries
                        .iter()
                        .map(|(k, v)| (k.clone(), val_to_json(v, element)))
                        .collect(),
                )
            }
            Body::Record(fields) => {
                let mut object = serde_json::Map::new();
                if let Some(record) = record_type(ty) {
                    for ((name, field_ty), v) in record.fields.iter().zip(fields) {
                        object.insert(name.clone(), val_to_json(v, field_ty));
                    }
                }
                Json::Object(object)
            }
        },
    }
}

/// A value of static type `ty` as JSON text: the same text as serializing
/// [`val_to_json`]'s result, written without building that JSON value.
pub(crate) struct JsonOf<'a> {
    pub val: &'a Val,
    pub ty: &'a Type,
}

impl serde::Serialize for JsonOf<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        // A float JSON cannot hold (NaN, infinities) is `null`, as in `float_json`.
        let float = |serializer: S, x: f64| match x.is_finite() {
            true => serializer.serialize_f64(x),
            false => serializer.serialize_unit(),
        };
        match self.val {
            Val::Null => serializer.serialize_unit(),
            Val::Int(i) => serializer.serialize_i64(*i),
            Val::Float(x) => float(serializer, *x),
            Val::Bool(b) => serializer.serialize_bool(*b),
            Val::Obj(obj) => match &obj.body {
                Body::Str(s) => serializer.serialize_str(s),
                Body::Int(i) => serializer.serialize_i64(*i),
                Body::Float(x) => float(serializer, *x),
                Body::Bool(b) => serializer.serialize_bool(*b),
                Body::Json(j) => j.serialize(serializer),
                Body::Host(h) => serializer.collect_str(&format_args!("<{}>", h.type_name())),
                Body::List(items) => {
                    let ty = element_type(self.ty);
                    serializer.collect_seq(items.borrow().iter().map(|val| JsonOf { val, ty }))
                }
                Body::Map(entries) => {
                    let ty = element_type(self.ty);
                    serializer.collect_map(
                        entries
                            .borrow()
                            .iter()
                            .map(|(key, val)| (key, JsonOf { val, ty })),
                    )
                }
                Body::Record(fields) => {
                    let record = record_type(self.ty);
                    let count = record.map_or(0, |r| r.fields.len().min(fields.len()));
                    let mut map = serializer.serialize_map(Some(count))?;
                    if let Some(record) = record {
                        for ((name, ty), val) in record.fields.iter().zip(fields) {
                            map.serialize_entry(name, &JsonOf { val, ty })?;
                        }
                    }
                    map.end()
                }
            },
        }
    }
}

fn strip_optional(ty: &Type) -> &Type {
    match ty {
        Type::Optional(inner) => inner,
        other => other,
    }
}

/// The element type of a list or map type (`json` for anything else); a
/// reference, so converting a list of records clones no type.
fn element_type(ty: &Type) -> &Type {
    static JSON: Type = Type::Json;
    match strip_optional(ty) {
        Type::List(t) | Type::Map(t) => t,
        _ => &JSON,
    }
}

fn record_type(ty: &Type) -> Option<&scl_lang::types::RecordType> {
    match strip_optional(ty) {
        Type::Record(r) => Some(r),
        _ => None,
    }
}

fn describe(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a bool",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn mismatch(path: &Trail, ty: &Type, value: &Json) -> String {
    format!("{path}: expected {ty}, found {}", describe(value))
}

/// Wraps a primitive in the box an optional of it needs.
pub(crate) fn box_val(val: Val) -> Val {
    match val {
        Val::Int(i) => Val::Obj(Obj::new(Body::Int(i))),
        Val::Float(x) => Val::Obj(Obj::new(Body::Float(x))),
        Val::Bool(b) => Val::Obj(Obj::new(Body::Bool(b))),
        other => other,
    }
}

/// Converts JSON to a value of type `ty` (the checked `as`). `path` names the
/// position for the error message (`$.alarms[2]`).
pub(crate) fn json_to_val(value: &Json, ty: &Type, path: &mut Trail) -> Result<Val, String> {
    match ty {
        Type::Json => Ok(Val::Obj(Obj::json(value.clone()))),
        Type::Optional(inner) => {
            if value.is_null() {
                Ok(Val::Null)
            } else {
                json_to_val(value, inner, path).map(box_val)
            }
        }
        Type::Int => match value {
            Json::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Ok(Val::Int(i))
                } else if let Some(x) = n.as_f64()
                    && x.fract() == 0.0
                    && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&x)
                {
                    Ok(Val::Int(x as i64))
                } else {
                    Err(format!(
                        "{path}: expected int, found a number that is not an integer in range"
                    ))
                }
            }
            other => Err(mismatch(path, ty, other)),
        },
        Type::Float => match value {
            Json::Number(n) => Ok(Val::Float(n.as_f64().unwrap_or(f64::NAN))),
            other => Err(mismatch(path, ty, other)),
        },
        Type::Bool => match value {
            Json::Bool(b) => Ok(Val::Bool(*b)),
            other => Err(mismatch(path, ty, other)),
        },
        Type::String => match value {
            Json::String(s) => Ok(Val::Obj(Obj::str(s.clone()))),
            other => Err(mismatch(path, ty, other)),
        },
        Type::List(element) => match value {
            Json::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let len = path.index(i);
                    let converted = json_to_val(item, element, path);
                    path.back(len);
                    out.push(converted?);
                }
                Ok(Val::Obj(Obj::list(out)))
            }
            other => Err(mismatch(path, ty, other)),
        },
        Type::Map(element) => match value {
            Json::Object(entries) => {
                let mut out = IndexMap::with_capacity(entries.len());
                for (key, item) in entries {
                    let len = path.key(key);
                    let converted = json_to_val(item, element, path);
                    path.back(len);
                    out.insert(key.clone(), converted?);
                }
                Ok(Val::Obj(Obj::map(out)))
            }
            other => Err(mismatch(path, ty, other)),
        },
        Type::Record(record) => match value {
            Json::Object(entries) => {
                let mut fields = Vec::with_capacity(record.fields.len());
                for (name, field_ty) in &record.fields {
                    let len = path.key(name);
                    let converted = match entries.get(name) {
                        Some(item) => json_to_val(item, field_ty, path),
                        None if matches!(field_ty, Type::Optional(_)) => Ok(Val::Null),
                        None => Err(format!("{path}: missing field `{name}`")),
                    };
                    path.back(len);
                    fields.push(converted?);
                }
                if let Some(extra) = entries.keys().find(|k| record.field(k).is_none()) {
                    let len = path.key(extra);
                    let message = format!("{path}: unexpected field `{extra}`");
                    path.back(len);
                    return Err(message);
                }
                Ok(Val::Obj(Obj::new(Body::Record(fields))))
            }
            other => Err(mismatch(path, ty, other)),
        },
        Type::Void | Type::Host(_) | Type::Null | Type::Error => {
            Err(format!("{path}: cannot convert JSON to {ty}"))
        }
    }
}

/// Where a conversion is, for the message of a failure (`$.alarms[2]`).
/// Conversions are hot and nearly always succeed, so callers convert with
/// [`Trail::off`], which builds no text, and only when that fails convert
/// again with [`Trail::at`] for the message.
#[derive(Debug)]
pub(crate) struct Trail(Option<String>);

impl Trail {
    /// No text: the message of a failure names no position.
    pub(crate) fn off() -> Trail {
        Trail(None)
    }

    /// Positions named from `root` (`$`, `parameter `x``).
    pub(crate) fn at(root: impl Into<String>) -> Trail {
        Trail(Some(root.into()))
    }

    /// Steps into element `i`; returns the mark to go [`back`](Self::back) to.
    fn index(&mut self, i: usize) -> usize {
        match &mut self.0 {
            Some(path) => {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                len
            }
            None => 0,
        }
    }

    /// Steps into field or entry `key`; returns the mark to go back to.
    fn key(&mut self, key: &str) -> usize {
        match &mut self.0 {
            Some(path) => {
                let len = path.len();
                if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    let _ = write!(path, ".{key}");
                } else {
                    let _ = write!(path, "[{}]", Json::String(key.to_string()));
                }
                len
            }
            None => 0,
        }
    }

    /// Back to a mark of [`index`](Self::index) or [`key`](Self::key).
    fn back(&mut self, mark: usize) {
        if let Some(path) = &mut self.0 {
            path.truncate(mark);
        }
    }
}

impl std::fmt::Display for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_deref().unwrap_or_default())
    }
}

/// The checked `as`: converts `val` of type `from` (json, or a container of
/// json) to type `to`.
pub(crate) fn as_convert(
    val: &Val,
    from: &Type,
    to: &Type,
    path: &mut Trail,
) -> Result<Val, String> {
    if from == to {
        return Ok(val.clone());
    }
    match (from, val) {
        (Type::Json, Val::Obj(obj)) => match &obj.body {
            Body::Json(j) => json_to_val(j, to, path),
            _ => Err(format!("{path}: not a JSON value")),
        },
        (Type::Optional(_), Val::Null) => match to {
            Type::Optional(_) | Type::Json => Ok(Val::Null),
            _ => Err(format!("{path}: expected {to}, found null")),
        },
        (Type::Optional(inner), _) => as_convert(val, inner, strip_optional(to), path).map(box_val),
        (Type::List(from_element), Val::Obj(obj)) => {
            let (Type::List(to_element), Body::List(items)) = (to, &obj.body) else {
                return Err(format!("{path}: expected {to}, found {from}"));
            };
            let items = items.borrow().clone();
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.index(i);
                let converted = as_convert(item, from_element, to_element, path);
                path.back(len);
                out.push(converted?);
            }
            Ok(Val::Obj(Obj::list(out)))
        }
        (Type::Map(from_element), Val::Obj(obj)) => {
            let (Type::Map(to_element), Body::Map(entries)) = (to, &obj.body) else {
                return Err(format!("{path}: expected {to}, found {from}"));
            };
            let entries = entries.borrow().clone();
            let mut out = IndexMap::with_capacity(entries.len());
            for (key, item) in &entries {
                let len = path.key(key);
                let converted = as_convert(item, from_element, to_element, path);
                path.back(len);
                out.insert(key.clone(), converted?);
            }
            Ok(Val::Obj(Obj::map(out)))
        }
        _ => {
            // Anything else: go through JSON (a record of json fields, say).
            let json = val_to_json(val, from);
            json_to_val(&json, to, path)
        }
    }
}

/// Structural equality of two values of the same static type.
pub(crate) fn val_eq(a: &Val, b: &Val) -> bool {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => x == y,
        (Val::Float(x), Val::Float(y)) => x == y,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Null, Val::Null) => true,
        (Val::Obj(x), Val::Obj(y)) => {
            Rc::ptr_eq(x, y) && !matches!(x.body, Body::Float(_)) || obj_eq(x, y)
        }
        _ => false,
    }
}

fn obj_eq(a: &Obj, b: &Obj) -> bool {
    match (&a.body, &b.body) {
        (Body::Str(x), Body::Str(y)) => x == y,
        (Body::Int(x), Body::Int(y)) => x == y,
        (Body::Float(x), Body::Float(y)) => x == y,
        (Body::Bool(x), Body::Bool(y)) => x == y,
        (Body::Json(x), Body::Json(y)) => x == y,
        (Body::Host(x), Body::Host(y)) => x.same(y),
        (Body::Record(x), Body::Record(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| val_eq(a, b))
        }
        (Body::List(x), Body::List(y)) => {
            let (Ok(x), Ok(y)) = (x.try_borrow(), y.try_borrow()) else {
                return false;
            };
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(a, b)| val_eq(a, b))
        }
        (Body::Map(x), Body::Map(y)) => {
            let (Ok(x), Ok(y)) = (x.try_borrow(), y.try_borrow()) else {
                return false;
            };
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| val_eq(v, w)))
        }
        _ => false,
    }
}

/// The order `sort` uses: numbers by value (floats by IEEE total order),
/// strings by UTF-8 bytes, `false < true`, `null` first.
pub(crate) fn val_cmp(a: &Val, b: &Val) -> Ordering {
    match (a, b) {
        (Val::Int(x), Val::Int(y)) => x.cmp(y),
        (Val::Float(x), Val::Float(y)) => x.total_cmp(y),
        (Val::Bool(x), Val::Bool(y)) => x.cmp(y),
        (Val::Null, Val::Null) => Ordering::Equal,
        (Val::Null, _) => Ordering::Less,
        (_, Val::Null) => Ordering::Greater,
        (Val::Obj(x), Val::Obj(y)) => match (&x.body, &y.body) {
            (Body::Str(x), Body::Str(y)) => x.cmp(y),
            (Body::Int(x), Body::Int(y)) => x.cmp(y),
            (Body::Float(x), Body::Float(y)) => x.total_cmp(y),
            (Body::Bool(x), Body::Bool(y)) => x.cmp(y),
            _ => Ordering::Equal,
        },
        _ => Ordering::Equal,
    }
}

/// Converts a run-time value to the host's [`Value`].
pub(crate) fn val_to_value(val: &Val, ty: &Type) -> Value {
    match val {
        Val::Null => Value::Null,
        Val::Int(i) => Value::Int(*i),
        Val::Float(x) => Value::Float(*x),
        Val::Bool(b) => Value::Bool(*b),
        Val::Obj(obj) => match &obj.body {
            Body::Str(s) => Value::String(s.clone()),
            Body::Int(i) => Value::Int(*i),
            Body::Float(x) => Value::Float(*x),
            Body::Bool(b) => Value::Bool(*b),
            Body::Json(j) => Value::Json(j.clone()),
            Body::Host(h) => Value::Host(h.clone()),
            Body::List(items) => {
                let element = element_type(ty);
                Value::List(
                    items
                        .borrow()
                        .iter()
                        .map(|v| val_to_value(v, element))
                        .collect(),
                )
            }
            Body::Map(entries) => {
                let element = element_type(ty);
                Value::Map(
                    entries
                        .borrow()
                        .iter()
                        .map(|(k, v)| (Arc::from(k.as_str()), val_to_value(v, element)))
                        .collect(),
                )
            }
            Body::Record(fields) => Value::Record(
                record_type(ty)
                    .map(|r| r.fields.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .zip(fields)
                    .map(|((name, t), v)| (Arc::from(name.as_str()), val_to_value(v, t)))
                    .collect(),
            ),
        },
    }
}

/// Converts a host [`Value`] to a run-time value of type `ty`, checking that
/// it fits; the error names the position (`path`).
pub(crate) fn value_to_val(value: &Value, ty: &Type, path: &mut Trail) -> Result<Val, String> {
    let wrong = |path: &Trail| format!("{path}: expected {ty}, found {}", value.describe());
    match (ty, value) {
        (Type::Json, Value::Json(j)) => Ok(Val::Obj(Obj::json(j.clone()))),
        (Type::Json, other) => Ok(Val::Obj(Obj::json(other.to_json()))),
        (Type::Optional(_), Value::Null) => Ok(Val::Null),
        (Type::Optional(inner), other) => value_to_val(other, inner, path).map(box_val),
        (Type::Int, Value::Int(i)) => Ok(Val::Int(*i)),
        (Type::Float, Value::Float(x)) => Ok(Val::Float(*x)),
        (Type::Float, Value::Int(i)) => Ok(Val::Float(*i as f64)),
        (Type::Bool, Value::Bool(b)) => Ok(Val::Bool(*b)),
        (Type::String, Value::String(s)) => Ok(Val::Obj(Obj::str(s.clone()))),
        (Type::Host(name), Value::Host(h)) if h.type_name() == name => {
            Ok(Val::Obj(Obj::new(Body::Host(h.clone()))))
        }
        (Type::List(element), Value::List(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let len = path.index(i);
                let converted = value_to_val(item, element, path);
                path.back(len);
                out.push(converted?);
            }
            Ok(Val::Obj(Obj::list(out)))
        }
        (Type::Map(element), Value::Map(entries)) => {
            let mut out = IndexMap::with_capacity(entries.len());
            for (key, item) in entries {
                let len = path.key(key);
                let converted = value_to_val(item, element, path);
                path.back(len);
                out.insert(String::from(&**key), converted?);
            }
            Ok(Val::Obj(Obj::map(out)))
        }
        (Type::Record(record), Value::Record(entries) | Value::Map(entries)) => {
            let mut fields = Vec::with_capacity(record.fields.len());
            for (name, field_ty) in &record.fields {
                let len = path.key(name);
                let converted = match entries.iter().find(|(k, _)| **k == **name) {
                    Some((_, item)) => value_to_val(item, field_ty, path),
                    None if matches!(field_ty, Type::Optional(_)) => Ok(Val::Null),
                    None => Err(format!("{path}: missing field `{name}`")),
                };
                path.back(len);
                fields.push(converted?);
            }
            Ok(Val::Obj(Obj::new(Body::Record(fields))))
        }
        (_, Value::Json(j)) => json_to_val(j, ty, path),
        _ => Err(wrong(path)),
    }
}
