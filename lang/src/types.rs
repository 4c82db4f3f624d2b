//! The static types of SCL, shared by the checker, the HIR and the compiler.

use std::fmt;

/// A static type. Records are structural: two record types are equal when they
/// have the same field names with equal types; the `name` is only for display.
#[derive(Clone, Debug)]
pub enum Type {
    Int,
    Float,
    Bool,
    String,
    /// Any JSON value.
    Json,
    Void,
    List(Box<Type>),
    /// String keys to `T`, insertion-ordered.
    Map(Box<Type>),
    Record(RecordType),
    /// `T?`: `T` or `null`. Never nested (`T??` is `T?`), never `void?`.
    Optional(Box<Type>),
    /// An opaque value made by the host (`Connection`, `RouteTarget`, ...), by name.
    Host(String),
    /// The type of the `null` literal before it meets an expected type.
    Null,
    /// The type of an expression whose checking already failed. It is
    /// compatible with every type, so one mistake gives one diagnostic.
    Error,
}

/// `{ a: T, b: U }` with fields sorted by name (the canonical layout).
#[derive(Clone, Debug)]
pub struct RecordType {
    /// The `type` name this record was declared with, for messages only.
    pub name: Option<String>,
    pub fields: Vec<(String, Type)>,
}

impl RecordType {
    /// Builds a record type; the fields are sorted into canonical order.
    pub fn new(name: Option<String>, mut fields: Vec<(String, Type)>) -> RecordType {
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        RecordType { name, fields }
    }

    /// Canonical index and type of a field.
    pub fn field(&self, name: &str) -> Option<(usize, &Type)> {
        self.fields
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| (i, &self.fields[i].1))
    }
}

impl PartialEq for RecordType {
    fn eq(&self, other: &RecordType) -> bool {
        self.fields == other.fields
    }
}
impl Eq for RecordType {}

impl PartialEq for Type {
    fn eq(&self, other: &Type) -> bool {
        use Type::*;
        match (self, other) {
            (Int, Int) | (Float, Float) | (Bool, Bool) | (String, String) | (Json, Json) => true,
            (Void, Void) | (Null, Null) | (Error, Error) => true,
            (List(a), List(b)) | (Map(a), Map(b)) | (Optional(a), Optional(b)) => a == b,
            (Record(a), Record(b)) => a == b,
            (Host(a), Host(b)) => a == b,
            _ => false,
        }
    }
}
impl Eq for Type {}

impl Type {
    pub fn list(element: Type) -> Type {
        Type::List(Box::new(element))
    }

    pub fn map(value: Type) -> Type {
        Type::Map(Box::new(value))
    }

    /// `T?`, flattening `T??` and leaving `null`/`json`/errors alone.
    pub fn optional(inner: Type) -> Type {
        match inner {
            Type::Optional(_) | Type::Null | Type::Json | Type::Error => inner,
            other => Type::Optional(Box::new(other)),
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Type::Error)
    }

    /// True for types whose values can cross the JSON boundary both ways
    /// (script parameters and results, `as` targets).
    pub fn is_json_representable(&self) -> bool {
        match self {
            Type::Int | Type::Float | Type::Bool | Type::String | Type::Json | Type::Error => true,
            Type::List(t) | Type::Map(t) | Type::Optional(t) => t.is_json_representable(),
            Type::Record(r) => r.fields.iter().all(|(_, t)| t.is_json_representable()),
            Type::Void | Type::Host(_) | Type::Null => false,
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Type::Int => f.write_str("int"),
            Type::Float => f.write_str("float"),
            Type::Bool => f.write_str("bool"),
            Type::String => f.write_str("string"),
            Type::Json => f.write_str("json"),
            Type::Void => f.write_str("void"),
            Type::List(t) => write!(f, "list<{t}>"),
            Type::Map(t) => write!(f, "map<{t}>"),
            Type::Record(r) => match &r.name {
                Some(name) => f.write_str(name),
                None => {
                    f.write_str("{ ")?;
                    for (i, (name, ty)) in r.fields.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        write!(f, "{name}: {ty}")?;
                    }
                    f.write_str(" }")
                }
            },
            Type::Optional(t) => write!(f, "{t}?"),
            Type::Host(name) => f.write_str(name),
            Type::Null => f.write_str("null"),
            Type::Error => f.write_str("{unknown}"),
        }
    }
}
