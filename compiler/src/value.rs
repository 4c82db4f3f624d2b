//! The values a host exchanges with scripts: arguments, results, and the
//! arguments and results of host functions.
//!
//! [`Value`] is plain owned data (`Send + Sync`), independent of the
//! run-time representation: crossing the boundary copies. Host handles
//! ([`HostObject`]) are the exception: they are shared (`Arc`) so a script can
//! hold a `Connection` and pass it back to the host's methods. Map keys and
//! record field names are shared text (`Arc<str>`), so a host that builds many
//! maps with the same keys (a query's rows) copies each key once, not per map.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use crate::runtime::convert::{format_float, json_text};

/// A value crossing between a host and a script.
#[derive(Clone, Debug)]
pub enum Value {
    /// `null` (an optional without a value); also what a `void` function returns.
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    String(String),
    List(Vec<Value>),
    /// A `map<T>`, in insertion order.
    Map(Vec<(Arc<str>, Value)>),
    /// A record, fields in canonical (sorted) order.
    Record(Vec<(Arc<str>, Value)>),
    Json(serde_json::Value),
    Host(HostObject),
}

impl Value {
    /// The value as JSON (records and maps become objects; host handles a
    /// string naming their type).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Int(i) => J::from(*i),
            Value::Float(x) => serde_json::Number::from_f64(*x).map_or(J::Null, J::Number),
            Value::Bool(b) => J::Bool(*b),
            Value::String(s) => J::String(s.clone()),
            Value::List(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Value::Map(entries) | Value::Record(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (String::from(&**k), v.to_json()))
                    .collect(),
            ),
            Value::Json(j) => j.clone(),
            Value::Host(h) => J::String(format!("<{}>", h.type_name())),
        }
    }

    /// [`to_json`](Self::to_json) without the copy when the value already is
    /// [`Value::Json`].
    pub fn into_json(self) -> serde_json::Value {
        match self {
            Value::Json(j) => j,
            other => other.to_json(),
        }
    }

    /// A short description for error messages ("an int", "a list").
    pub fn describe(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Int(_) => "an int",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a bool",
            Value::String(_) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a map",
            Value::Record(_) => "a record",
            Value::Json(_) => "a json value",
            Value::Host(_) => "a host object",
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b || a.is_nan() && b.is_nan(),
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::List(a), Value::List(b)) => a == b,
            (Value::Map(a), Value::Map(b)) | (Value::Record(a), Value::Record(b)) => a == b,
            (Value::Json(a), Value::Json(b)) => a == b,
            (Value::Host(a), Value::Host(b)) => a.same(b),
            _ => false,
        }
    }
}

impl fmt::Display for Value {
    /// The text `string(x)` gives in a script.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => f.write_str(&format_float(*x)),
            Value::Bool(b) => write!(f, "{b}"),
            Value::String(s) => f.write_str(s),
            Value::Host(h) => write!(f, "<{}>", h.type_name()),
            other => f.write_str(&json_text(&other.to_json())),
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident),*) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(v.into())
            }
        })*
    };
}
value_from!(i64 => Int, f64 => Float, bool => Bool, String => String, &str => String, serde_json::Value => Json);

/// An opaque value made by the host (a database connection, a route
/// target), as scripts see a value of a host type.
#[derive(Clone)]
pub struct HostObject {
    type_name: Arc<str>,
    value: Arc<dyn Any + Send + Sync>,
}

impl HostObject {
    /// Wraps `value` as a value of the script-side host type `type_name`.
    pub fn new<T: Any + Send + Sync>(type_name: &str, value: T) -> HostObject {
        HostObject {
            type_name: type_name.into(),
            value: Arc::new(value),
        }
    }

    /// Wraps a shared value as a value of the host type `type_name`.
    pub fn from_arc<T: Any + Send + Sync>(type_name: &str, value: Arc<T>) -> HostObject {
        HostObject {
            type_name: type_name.into(),
            value,
        }
    }

    /// The shared host value, when it is a `T`.
    pub fn downcast_arc<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.value.clone().downcast::<T>().ok()
    }

    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The host's value, when it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.value.downcast_ref::<T>()
    }

    /// Whether both handles are the same host object.
    pub fn same(&self, other: &HostObject) -> bool {
        Arc::ptr_eq(&self.value, &other.value)
    }
}

impl fmt::Debug for HostObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostObject<{}>", self.type_name)
    }
}
