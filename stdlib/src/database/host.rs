//! The script-facing wiring of the Database module: `Database.Connection(name)`, the
//! `Connection` host type's `Query`, `Execute`, `Scalar`, `Procedure`, `Begin`, `Commit` and
//! `Rollback`, and `Database.CachedWrite(name, sql, params)`, registered in an [`Engine`] with
//! the signatures of [`crate::signatures::module_table`].
//!
//! **Per-run state.** Transactions and counters belong to one script run, so the host
//! functions find the run's [`DatabaseExecution`] through the run's host data
//! ([`scl_compiler::CallOptions::host_data`]), which must be a `T: DatabaseScope` (the
//! embedder's own per-run type). A run without one gets a catchable `unavailable` error. The
//! embedder ends the execution when the run is over ([`DatabaseExecution::end`], also done on
//! drop), which rolls back every transaction the script left open.
//!
//! **Counters.** Each `Query`, `Execute`, `Scalar`, `Procedure` and `CachedWrite` counts one
//! in the run's [`QUERY_COUNTER`] before anything is sent (so a cap in
//! [`scl_compiler::Limits::caps`] stops the statement that would exceed it), and the rows
//! affected by `Execute` and `CachedWrite` count in [`DML_ROWS_COUNTER`] afterwards; both show
//! in the run's `ExecStats::counters`.
//!
//! **Errors** reach the script as catchable errors with [`DatabaseError::script_kind`], the
//! module's code and its message (never a secret); limit errors end the run.

use std::any::Any;
use std::sync::Arc;

use scl_compiler::{Engine, HostContext, HostError, HostObject, Value};
use scl_lang::modules::Owner;
use serde_json::Map;

use super::{
    ConnectionHandle, DML_ROWS_COUNTER, DatabaseError, DatabaseExecution, Delivery, QUERY_COUNTER,
    RowSink, SqlParams, SqlValue,
};

/// The script-side name of a connection handle.
pub const CONNECTION_TYPE: &str = "Connection";

/// What the run's host data must give the Database host functions: the run's execution.
pub trait DatabaseScope: Any + Sync {
    /// The Database state of this run, or `None` where the node has no Database module.
    fn database(&self) -> Option<&DatabaseExecution>;
}

impl DatabaseScope for DatabaseExecution {
    fn database(&self) -> Option<&DatabaseExecution> {
        Some(self)
    }
}

/// Register `Database.Connection`, `Database.CachedWrite` and the `Connection` methods in
/// `engine`. Each call looks up the run's execution in its host data, which must be a `T`.
pub fn register_database<T: DatabaseScope>(engine: &mut Engine) -> Result<(), String> {
    let table = crate::signatures::module_table();
    for (name, ty) in &table.types {
        engine.register_named_type(name, ty.clone());
    }
    let database = Owner::Module("Database".to_owned());
    let connection = Owner::HostType(CONNECTION_TYPE.to_owned());
    for signature in table.functions {
        if signature.owner != database && signature.owner != connection {
            continue;
        }
        let qualified = signature.qualified_name();
        let registered = match (signature.owner == database, signature.name.as_str()) {
            (true, "Connection") => engine.register_raw(signature, |context, args| {
                let execution = execution::<T>(context)?;
                let name = text(&args, 0, "Database.Connection", "name")?;
                let handle = execution.connection(name).map_err(host_error)?;
                Ok(Value::Host(HostObject::new(CONNECTION_TYPE, handle)))
            }),
            (true, "CachedWrite") => engine.register_raw(signature, |context, args| {
                let name = text(&args, 0, "Database.CachedWrite", "name")?;
                let sql = text(&args, 1, "Database.CachedWrite", "sql")?;
                let params = json_list(&args, 2, "Database.CachedWrite")?;
                if !execution::<T>(context)?.can_buffer() {
                    return Err(HostError::new(
                        "unavailable",
                        "no_buffer",
                        "Database.CachedWrite needs a site's store-and-forward buffer, which \
                         this node does not have: use Database.Connection here",
                    ));
                }
                context.count(QUERY_COUNTER, 1)?;
                let execution = execution::<T>(context)?;
                let (result, rows) = with_rows(execution, |e| e.cached_write(name, sql, &params));
                count_rows(context, rows)?;
                result.map(delivery_value).map_err(host_error)
            }),
            (false, "Query") => engine.register_raw(signature, |context, args| {
                let call = QueryCall::from_args(&args)?;
                context.count(QUERY_COUNTER, 1)?;
                call.run(execution::<T>(context)?)
            }),
            (false, "Scalar") => engine.register_raw(signature, |context, args| {
                let handle = receiver(&args, "Connection.Scalar")?;
                let sql = text(&args, 1, "Connection.Scalar", "sql")?;
                let params = json_list(&args, 2, "Connection.Scalar")?;
                context.count(QUERY_COUNTER, 1)?;
                execution::<T>(context)?
                    .scalar(handle, sql, &params)
                    .map(Value::Json)
                    .map_err(host_error)
            }),
            (false, "Execute") => engine.register_raw(signature, |context, args| {
                let handle = receiver(&args, "Connection.Execute")?;
                let sql = text(&args, 1, "Connection.Execute", "sql")?;
                let params = json_list(&args, 2, "Connection.Execute")?;
                context.count(QUERY_COUNTER, 1)?;
                let execution = execution::<T>(context)?;
                let (result, rows) = with_rows(execution, |e| e.execute(handle, sql, &params));
                count_rows(context, rows)?;
                result.map(Value::Int).map_err(host_error)
            }),
            (false, "Procedure") => engine.register_raw(signature, |context, args| {
                let handle = receiver(&args, "Connection.Procedure")?;
                let name = text(&args, 1, "Connection.Procedure", "name")?;
                let params = match args.get(2) {
                    Some(Value::Map(entries)) => entries
                        .iter()
                        .map(|(key, value)| (String::from(&**key), value.to_json()))
                        .collect::<Map<String, serde_json::Value>>(),
                    Some(Value::Json(serde_json::Value::Object(object))) => object.clone(),
                    _ => return Err(argument_error("Connection.Procedure", "params")),
                };
                context.count(QUERY_COUNTER, 1)?;
                execution::<T>(context)?
                    .procedure(handle, name, &params)
                    .map(maps_value)
                    .map_err(host_error)
            }),
            (false, "Begin") => engine.register_raw(signature, |context, args| {
                let execution = execution::<T>(context)?;
                let handle = receiver(&args, "Connection.Begin")?;
                execution.begin(handle).map_err(host_error)?;
                Ok(Value::Null)
            }),
            (false, "Commit") => engine.register_raw(signature, |context, args| {
                let execution = execution::<T>(context)?;
                let handle = receiver(&args, "Connection.Commit")?;
                execution.commit(handle).map_err(host_error)?;
                Ok(Value::Null)
            }),
            (false, "Rollback") => engine.register_raw(signature, |context, args| {
                let execution = execution::<T>(context)?;
                let handle = receiver(&args, "Connection.Rollback")?;
                execution.rollback(handle).map_err(host_error)?;
                Ok(Value::Null)
            }),
            (_, other) => {
                return Err(format!(
                    "`{qualified}` has no host implementation (`{other}`)"
                ));
            }
        };
        registered.map_err(|error| format!("`{qualified}`: {error}"))?;
    }
    Ok(())
}

/// A script's `connection.Query(sql, params)` as the host function receives it: the
/// `Connection` receiver, the SQL and the parameter list. The registered host function reads
/// it, counts one query in the run's [`QUERY_COUNTER`], then [`QueryCall::run`]s it; the
/// database benchmark calls the same two steps (without the engine's counter).
pub struct QueryCall<'a> {
    handle: &'a ConnectionHandle,
    sql: &'a str,
    params: Params<'a>,
}

/// The parameter list as the engine hands it: a script list, or a `json` array.
enum Params<'a> {
    Script(&'a [Value]),
    Json(&'a [serde_json::Value]),
}

impl<'a> QueryCall<'a> {
    /// Read the host call's arguments: `[connection, sql, params]`.
    pub fn from_args(args: &'a [Value]) -> Result<QueryCall<'a>, HostError> {
        let params = match args.get(2) {
            Some(Value::List(items)) => Params::Script(items),
            Some(Value::Json(serde_json::Value::Array(items))) => Params::Json(items),
            _ => return Err(argument_error("Connection.Query", "params")),
        };
        Ok(QueryCall {
            handle: receiver(args, "Connection.Query")?,
            sql: text(args, 1, "Connection.Query", "sql")?,
            params,
        })
    }

    /// Run the query on the run's execution; the rows as the script's `list<map<json>>`,
    /// written by the driver as it reads them ([`ScriptRows`]). Parameters convert straight
    /// from the script's values (no JSON step).
    pub fn run(&self, execution: &DatabaseExecution) -> Result<Value, HostError> {
        let params = match self.params {
            Params::Script(items) => script_params(items),
            Params::Json(items) => SqlValue::list_from_json(items),
        };
        let mut rows = ScriptRows::default();
        params
            .map_err(|e| e.for_connection(self.handle.name()))
            .and_then(|params| execution.query_into(self.handle, self.sql, params, &mut rows))
            .map_err(host_error)?;
        Ok(rows.into_value())
    }
}

/// The script's parameter values as bound values, `@p1` first; the first that cannot be bound is
/// the error. A plain loop into a list of the right size: collecting the `Result`s through an
/// iterator adapter cost about three times as many instructions for a one-parameter query.
fn script_params(items: &[Value]) -> Result<SqlParams, DatabaseError> {
    let mut params = SqlParams::with_capacity(items.len());
    for (index, value) in items.iter().enumerate() {
        params.push(SqlValue::from_script(value, index + 1)?);
    }
    Ok(params)
}

/// A query's rows as the script's `list<map<json>>`, built cell by cell as the driver reads
/// them: one map per row, keys in column order (unique, see [`RowSink`]). The row being read
/// is the list's last map (no separate row vector to move into the list and leave behind).
#[derive(Default)]
struct ScriptRows {
    rows: Vec<Value>,
}

impl ScriptRows {
    fn into_value(self) -> Value {
        Value::List(self.rows)
    }
}

/// The rows list's room at its first row: most queries return one row or a few, and growing
/// from empty went through the vector's general growth path (0.15k instructions for a one-row
/// query against about 0.05k for an allocation of this size).
const FIRST_ROWS: usize = 4;

impl RowSink for ScriptRows {
    fn start_row(&mut self, width: usize) {
        if self.rows.capacity() == 0 {
            self.rows = Vec::with_capacity(FIRST_ROWS);
        }
        self.rows.push(Value::Map(Vec::with_capacity(width)));
    }

    fn cell(&mut self, column: &Arc<str>, value: serde_json::Value) {
        if let Some(Value::Map(row)) = self.rows.last_mut() {
            row.push((Arc::clone(column), Value::Json(value)));
        }
    }

    fn end_row(&mut self) {}
}

/// The run's execution, from its host data.
fn execution<'c, T: DatabaseScope>(
    context: &'c HostContext<'_, '_>,
) -> Result<&'c DatabaseExecution, HostError> {
    context
        .host_data::<T>()
        .and_then(DatabaseScope::database)
        .ok_or_else(|| {
            HostError::new(
                "unavailable",
                "no_database",
                "the Database module is not available in this run",
            )
        })
}

/// Run `operation` and tell how many DML rows it added to the execution's count.
fn with_rows<R>(
    execution: &DatabaseExecution,
    operation: impl FnOnce(&DatabaseExecution) -> R,
) -> (R, u64) {
    let before = execution.counters().dml_rows;
    let result = operation(execution);
    (result, execution.counters().dml_rows.saturating_sub(before))
}

/// Add the DML rows an operation affected to the run's counter (past a cap: a limit error).
fn count_rows(context: &mut HostContext<'_, '_>, rows: u64) -> Result<(), HostError> {
    if rows > 0 {
        context.count(DML_ROWS_COUNTER, rows)?;
    }
    Ok(())
}

fn receiver<'a>(args: &'a [Value], function: &str) -> Result<&'a ConnectionHandle, HostError> {
    match args.first() {
        Some(Value::Host(object)) => object.downcast_ref::<ConnectionHandle>(),
        _ => None,
    }
    .ok_or_else(|| argument_error(function, "connection"))
}

fn text<'a>(
    args: &'a [Value],
    index: usize,
    function: &str,
    parameter: &str,
) -> Result<&'a str, HostError> {
    args.get(index)
        .and_then(Value::as_str)
        .ok_or_else(|| argument_error(function, parameter))
}

fn json_list(
    args: &[Value],
    index: usize,
    function: &str,
) -> Result<Vec<serde_json::Value>, HostError> {
    match args.get(index) {
        Some(Value::List(items)) => Ok(items.iter().map(Value::to_json).collect()),
        Some(Value::Json(serde_json::Value::Array(items))) => Ok(items.clone()),
        _ => Err(argument_error(function, "params")),
    }
}

/// Rows already made into JSON objects as the script's `list<map<json>>`.
fn maps_value(rows: Vec<Map<String, serde_json::Value>>) -> Value {
    Value::List(
        rows.into_iter()
            .map(|row| {
                Value::Map(
                    row.into_iter()
                        .map(|(column, value)| (Arc::from(column), Value::Json(value)))
                        .collect(),
                )
            })
            .collect(),
    )
}

/// The script's `Delivery` record (fields in canonical order).
fn delivery_value(delivery: Delivery) -> Value {
    Value::Record(vec![
        ("id".into(), Value::String(delivery.id)),
        (
            "status".into(),
            Value::String(delivery.status.as_str().to_owned()),
        ),
    ])
}

/// The module's error as a script error: catchable with its kind, code and message, except
/// limit errors, which end the run.
pub fn host_error(error: DatabaseError) -> HostError {
    if error.is_catchable() {
        HostError::new(error.script_kind(), &error.code, error.message)
    } else {
        HostError::limit(&error.code, error.message)
    }
}

fn argument_error(function: &str, parameter: &str) -> HostError {
    HostError::new(
        "type",
        "host_argument",
        format!("{function}: bad `{parameter}` argument"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::RowSet;
    use serde_json::json;

    /// What the host call makes of a driver's rows (drivers without their own row writing go
    /// through [`RowSet::write_to`]).
    fn rows_value(rows: RowSet) -> Value {
        let mut sink = ScriptRows::default();
        rows.write_to(&mut sink);
        sink.into_value()
    }

    fn entries(value: &Value) -> Vec<Vec<(String, serde_json::Value)>> {
        match value {
            Value::List(rows) => rows
                .iter()
                .map(|row| match row {
                    Value::Map(entries) => entries
                        .iter()
                        .map(|(name, value)| (String::from(&**name), value.to_json()))
                        .collect(),
                    _ => Vec::new(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn every_row_gets_every_column_name_in_order() {
        let rows = RowSet {
            columns: vec!["b".into(), "a".into()],
            rows: vec![
                vec![json!(1), json!("x")],
                vec![json!(2), json!(null)],
                vec![json!(3), json!(true)],
            ],
        };
        let expected: Vec<Vec<(String, serde_json::Value)>> = [
            (json!(1), json!("x")),
            (json!(2), json!(null)),
            (json!(3), json!(true)),
        ]
        .into_iter()
        .map(|(b, a)| vec![("b".to_owned(), b), ("a".to_owned(), a)])
        .collect();
        assert_eq!(entries(&rows_value(rows)), expected);
        let one = RowSet {
            columns: vec!["id".into()],
            rows: vec![vec![json!(7)]],
        };
        assert_eq!(entries(&rows_value(one)), [[("id".to_owned(), json!(7))]]);
        assert_eq!(
            entries(&rows_value(RowSet::default())),
            Vec::<Vec<_>>::new()
        );
    }

    #[test]
    fn rows_share_their_keys() {
        let rows = RowSet {
            columns: vec!["id".into(), "id".into()],
            rows: vec![vec![json!(1), json!(2)], vec![json!(3), json!(4)]],
        };
        let Value::List(rows) = rows_value(rows) else {
            panic!("not a list");
        };
        let keys: Vec<Vec<Arc<str>>> = rows
            .iter()
            .map(|row| match row {
                Value::Map(entries) => entries.iter().map(|(key, _)| Arc::clone(key)).collect(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(keys[0], [Arc::from("id"), Arc::from("id_2")]);
        assert_eq!(keys[1], keys[0]);
        assert!(Arc::ptr_eq(&keys[0][0], &keys[1][0]));
        assert!(Arc::ptr_eq(&keys[0][1], &keys[1][1]));
    }
}
