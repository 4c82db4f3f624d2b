//! Values crossing between scripts and databases, both ways.
//!
//! **Parameters** arrive from the script as `json` values and become [`SqlValue`]s: `null`,
//! `int` (any integral JSON number that fits in 64 bits), `float`, `bool` and `string`. Dates,
//! times and decimals are passed as strings (`"2024-05-01T12:00:00Z"`, `"12.50"`) and the server
//! converts them to the column's type. Lists and objects are refused (pass
//! `Json.Stringify(value)` to store JSON text) rather than guessed at.
//!
//! **Results** come back from a driver as a [`RowSet`] of JSON values (each driver converts
//! its own column types, see `docs/modules/database.md`), which [`RowSet::into_maps`] turns into
//! the `list<map<json>>` a script receives: one map per row, keys in column order, unique.

use std::sync::Arc;

use serde_json::{Map, Value};
use smallvec::SmallVec;

use super::backend::RowSink;
use super::error::DatabaseError;

/// Parameter values inline for up to this many (most statements bind a few).
const INLINE_PARAMS: usize = 4;

/// A statement's parameter values, `@p1` first: inline up to a few values, so a statement
/// needs no allocation for them (a `Vec` was an allocation and a free per statement).
pub type SqlParams = SmallVec<[SqlValue; INLINE_PARAMS]>;

/// One bound parameter value.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// A 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A boolean (SQLite stores it as 0/1).
    Bool(bool),
    /// Text; also how dates, times and decimals are passed.
    Text(String),
}

impl SqlValue {
    /// Convert the script's value for parameter `@p{position}`.
    pub fn from_json(value: &Value, position: usize) -> Result<SqlValue, DatabaseError> {
        match value {
            Value::Null => Ok(SqlValue::Null),
            Value::Bool(flag) => Ok(SqlValue::Bool(*flag)),
            Value::String(text) => Ok(SqlValue::Text(text.clone())),
            Value::Number(number) => {
                if let Some(int) = number.as_i64() {
                    Ok(SqlValue::Int(int))
                } else if number.is_u64() {
                    Err(DatabaseError::parameter(format!(
                        "parameter @p{position} is {number}, above the largest 64-bit integer"
                    )))
                } else {
                    number.as_f64().map(SqlValue::Float).ok_or_else(|| {
                        DatabaseError::parameter(format!(
                            "parameter @p{position} is not a number SQL can hold"
                        ))
                    })
                }
            }
            Value::Array(_) | Value::Object(_) => Err(DatabaseError::parameter(format!(
                "parameter @p{position} is a {}; SQL parameters are null, int, float, bool or \
                 string (pass Json.Stringify(value) to store JSON text)",
                if value.is_array() {
                    "list"
                } else {
                    "map or record"
                }
            ))),
        }
    }

    /// Convert the script's value for parameter `@p{position}` without going through JSON for
    /// the common scalars (the same result as `from_json(&value.to_json(), position)`).
    pub fn from_script(
        value: &scl_compiler::Value,
        position: usize,
    ) -> Result<SqlValue, DatabaseError> {
        use scl_compiler::Value as V;
        match value {
            V::Null => Ok(SqlValue::Null),
            V::Int(int) => Ok(SqlValue::Int(*int)),
            V::Float(float) if float.is_finite() => Ok(SqlValue::Float(*float)),
            V::Bool(flag) => Ok(SqlValue::Bool(*flag)),
            V::String(text) => Ok(SqlValue::Text(text.clone())),
            V::Json(json) => SqlValue::from_json(json, position),
            other => SqlValue::from_json(&other.to_json(), position),
        }
    }

    /// Convert a whole parameter list (`@p1` is the first).
    pub fn list_from_json(values: &[Value]) -> Result<SqlParams, DatabaseError> {
        values
            .iter()
            .enumerate()
            .map(|(index, value)| SqlValue::from_json(value, index + 1))
            .collect()
    }

    /// The value as the script would write it, for messages and the buffered entry.
    pub fn to_json(&self) -> Value {
        match self {
            SqlValue::Null => Value::Null,
            SqlValue::Int(int) => Value::from(*int),
            SqlValue::Float(float) => float_to_json(*float),
            SqlValue::Bool(flag) => Value::Bool(*flag),
            SqlValue::Text(text) => Value::String(text.clone()),
        }
    }
}

/// A float as JSON; NaN and the infinities (which JSON cannot hold) become the strings
/// `"NaN"`, `"Infinity"` and `"-Infinity"`, as PostgreSQL writes them.
pub fn float_to_json(float: f64) -> Value {
    serde_json::Number::from_f64(float).map_or_else(
        || {
            Value::String(
                if float.is_nan() {
                    "NaN"
                } else if float > 0.0 {
                    "Infinity"
                } else {
                    "-Infinity"
                }
                .to_owned(),
            )
        },
        Value::Number,
    )
}

/// A statement ready for one driver: SQL in the driver's own placeholder syntax and the
/// values to bind.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    /// The SQL, with `@pN` already rewritten (shared with the connector's cache of rewritten
    /// statements, so a repeated statement costs no copy).
    pub sql: Arc<str>,
    /// The values, `params[0]` bound to the first placeholder.
    pub params: SqlParams,
}

/// The rows of one result set, as a driver returns them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RowSet {
    /// Column names in order (may be empty or repeated; see [`RowSet::into_maps`]).
    pub columns: Vec<String>,
    /// One entry per row, one value per column.
    pub rows: Vec<Vec<Value>>,
}

impl RowSet {
    /// The script's `list<map<json>>`. Keys follow column order. An unnamed column (MS SQL's
    /// `SELECT 1`) is called `column1`, `column2`, … by its 1-based position; a repeated name
    /// gets `_2`, `_3`, … (`SELECT a.id, b.id` gives `id` and `id_2`), so no value is lost.
    pub fn into_maps(self) -> Vec<Map<String, Value>> {
        let RowSet { columns, rows } = self.with_unique_columns();
        rows.into_iter()
            .map(|row| columns.iter().cloned().zip(row).collect())
            .collect()
    }

    /// The same rows with the column names [`RowSet::into_maps`] would use as keys (unnamed
    /// and repeated columns renamed); names that are already unique are kept as they are.
    pub fn with_unique_columns(mut self) -> RowSet {
        let renaming_needed = self
            .columns
            .iter()
            .enumerate()
            .any(|(index, column)| column.is_empty() || self.columns[..index].contains(column));
        if renaming_needed {
            self.columns = unique_column_names(&self.columns);
        }
        self
    }

    /// The rows, with unique column names, written to `sink` (what a driver without its own
    /// [`super::SqlSession::query_into`] does). Each name becomes one shared `Arc<str>` that
    /// every row's cell gets (nothing is made for a result without rows).
    pub fn write_to(self, sink: &mut dyn RowSink) {
        if self.rows.is_empty() {
            return;
        }
        let RowSet { columns, rows } = self.with_unique_columns();
        let columns: Vec<Arc<str>> = columns.into_iter().map(Arc::from).collect();
        for row in rows {
            sink.start_row(row.len());
            for (column, value) in columns.iter().zip(row) {
                sink.cell(column, value);
            }
            sink.end_row();
        }
    }

    /// `columns` made unique as [`RowSet::with_unique_columns`] does; a driver that keeps
    /// column lists between queries stores them this way once, so that it can hand them to a
    /// [`RowSink`] as they are.
    pub fn unique_columns(columns: Vec<String>) -> Vec<String> {
        RowSet {
            columns,
            rows: Vec::new(),
        }
        .with_unique_columns()
        .columns
    }

    /// The first column of the first row, or `null` when there is no row.
    pub fn into_scalar(self) -> Value {
        self.rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next())
            .unwrap_or(Value::Null)
    }
}

fn unique_column_names(columns: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(columns.len());
    for (index, column) in columns.iter().enumerate() {
        let base = if column.is_empty() {
            format!("column{}", index + 1)
        } else {
            column.clone()
        };
        let mut name = base.clone();
        let mut suffix = 2;
        while names.contains(&name) {
            name = format!("{base}_{suffix}");
            suffix += 1;
        }
        names.push(name);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameters_convert_from_json() {
        let values = [
            json!(null),
            json!(42),
            json!(2.5),
            json!(true),
            json!("héllo"),
        ];
        let converted = SqlValue::list_from_json(&values).ok();
        assert_eq!(
            converted.as_deref(),
            Some(
                &[
                    SqlValue::Null,
                    SqlValue::Int(42),
                    SqlValue::Float(2.5),
                    SqlValue::Bool(true),
                    SqlValue::Text("héllo".into())
                ][..]
            )
        );
    }

    #[test]
    fn lists_maps_and_huge_numbers_are_refused_with_their_position() {
        let error = SqlValue::list_from_json(&[json!(1), json!([1])]).err();
        assert!(error.is_some_and(|e| e.message.contains("@p2 is a list")));
        let error = SqlValue::from_json(&json!({"a": 1}), 1).err();
        assert!(error.is_some_and(|e| e.message.contains("map or record")));
        let error = SqlValue::from_json(&json!(u64::MAX), 3).err();
        assert!(error.is_some_and(|e| e.message.contains("@p3")));
    }

    #[test]
    fn rows_become_maps_with_unique_keys() {
        let rows = RowSet {
            columns: vec!["id".into(), "id".into(), String::new()],
            rows: vec![vec![json!(1), json!(2), json!(3)]],
        };
        let maps = rows.into_maps();
        assert_eq!(
            Value::Object(maps[0].clone()),
            json!({"id": 1, "id_2": 2, "column3": 3})
        );
        let keys: Vec<&String> = maps[0].keys().collect();
        assert_eq!(keys, ["id", "id_2", "column3"]);
    }

    #[test]
    fn unique_columns_rename_only_when_needed() {
        let rows = RowSet {
            columns: vec!["id_2".into(), "id".into(), "id".into(), String::new()],
            rows: vec![vec![json!(1), json!(2), json!(3), json!(4)]],
        };
        assert_eq!(
            rows.with_unique_columns().columns,
            ["id_2", "id", "id_3", "column4"]
        );
        let rows = RowSet {
            columns: vec!["b".into(), "a".into()],
            rows: vec![],
        };
        assert_eq!(rows.with_unique_columns().columns, ["b", "a"]);
    }

    #[test]
    fn scalar_is_null_without_rows() {
        assert_eq!(RowSet::default().into_scalar(), Value::Null);
    }

    #[test]
    fn non_finite_floats_become_text() {
        assert_eq!(float_to_json(f64::NAN), json!("NaN"));
        assert_eq!(float_to_json(f64::NEG_INFINITY), json!("-Infinity"));
        assert_eq!(float_to_json(1.5), json!(1.5));
    }
}
