//! `Connection.Procedure(name, params)`: a stored-procedure call built as a statement.
//!
//! The procedure name and the parameter names are identifiers, checked character by character
//! (they cannot be bound, so they are never taken verbatim from anything that is not a plain
//! identifier); the values are bound like every other parameter.
//!
//! - MS SQL: `EXEC name @a = @P1, @b = @P2`; the rows of its first result set come back.
//! - PostgreSQL: `CALL name(a => $1, b => $2)`; a procedure's `INOUT`/`OUT` parameters come
//!   back as one row (no row when it has none). A set-returning *function* is called with
//!   `Query("SELECT * FROM f(@p1)")` instead.
//! - SQLite has no stored procedures: a clear `not_supported` error.

use serde_json::{Map, Value};

use super::error::{DatabaseError, DatabaseErrorKind};
use super::placeholders::Driver;
use super::value::{SqlValue, Statement};

/// The statement that calls procedure `name` with named `params` (in the map's order).
pub fn procedure_statement(
    driver: Driver,
    name: &str,
    params: &Map<String, Value>,
) -> Result<Statement, DatabaseError> {
    if driver == Driver::Sqlite {
        return Err(DatabaseError::new(
            DatabaseErrorKind::NotSupported,
            "not_supported",
            "SQLite has no stored procedures; run the statements with Execute or Query instead",
        ));
    }
    check_procedure_name(driver, name)?;
    let mut values = Vec::with_capacity(params.len());
    let mut arguments = Vec::with_capacity(params.len());
    for (index, (parameter_name, value)) in params.iter().enumerate() {
        let position = index + 1;
        let bare = match driver {
            Driver::Mssql => parameter_name.strip_prefix('@').unwrap_or(parameter_name),
            _ => parameter_name.as_str(),
        };
        if !is_plain_identifier(bare) {
            return Err(DatabaseError::parameter(format!(
                "procedure parameter name `{parameter_name}` is not a plain identifier \
                 (letters, digits and `_`, not starting with a digit)"
            )));
        }
        values.push(SqlValue::from_json(value, position).map_err(|mut error| {
            error.message = error
                .message
                .replace(&format!("@p{position}"), &format!("`{parameter_name}`"));
            error
        })?);
        arguments.push(match driver {
            Driver::Mssql => format!("@{bare} = @P{position}"),
            _ => format!("{bare} => ${position}"),
        });
    }
    let sql = match driver {
        Driver::Mssql if arguments.is_empty() => format!("EXEC {name}"),
        Driver::Mssql => format!("EXEC {name} {}", arguments.join(", ")),
        _ => format!("CALL {name}({})", arguments.join(", ")),
    };
    Ok(Statement {
        sql: sql.into(),
        params: values.into(),
    })
}

fn is_plain_identifier(text: &str) -> bool {
    let mut characters = text.chars();
    characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && characters.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `name`, `schema.name`, `db.schema.name`; each part a plain identifier or a quoted one
/// (`[part]` on MS SQL, `"part"` on PostgreSQL) without its closing quote inside.
fn check_procedure_name(driver: Driver, name: &str) -> Result<(), DatabaseError> {
    let valid_part = |part: &str| {
        if is_plain_identifier(part) {
            return true;
        }
        let (open, close) = match driver {
            Driver::Mssql => ('[', ']'),
            _ => ('"', '"'),
        };
        part.len() > 2
            && part.starts_with(open)
            && part.ends_with(close)
            && !part[1..part.len() - 1].contains(close)
            && !part[1..part.len() - 1].contains(['\0', '\n', '\r'])
    };
    let parts: Vec<&str> = name.split('.').collect();
    if name.is_empty() || parts.len() > 3 || !parts.iter().all(|part| valid_part(part)) {
        return Err(DatabaseError::parameter(format!(
            "`{name}` is not a procedure name: use `name` or `schema.name` with plain identifiers"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn mssql_exec_with_named_parameters() {
        let statement = procedure_statement(
            Driver::Mssql,
            "dbo.AddReading",
            &params(json!({"asset": "P1", "@value": 2.5})),
        );
        let statement = statement.ok();
        assert_eq!(
            statement.as_ref().map(|s| &*s.sql),
            Some("EXEC dbo.AddReading @asset = @P1, @value = @P2")
        );
        assert_eq!(
            statement.map(|s| s.params.into_vec()),
            Some(vec![SqlValue::Text("P1".into()), SqlValue::Float(2.5)])
        );
    }

    #[test]
    fn postgres_call_with_named_notation() {
        let statement = procedure_statement(
            Driver::Postgres,
            "add_reading",
            &params(json!({"asset": "P1"})),
        );
        assert_eq!(
            statement.ok().map(|s| s.sql.to_string()),
            Some("CALL add_reading(asset => $1)".to_owned())
        );
        let empty = procedure_statement(Driver::Postgres, "\"Odd Name\"", &Map::new());
        assert_eq!(
            empty.ok().map(|s| s.sql.to_string()),
            Some("CALL \"Odd Name\"()".to_owned())
        );
    }

    #[test]
    fn sqlite_is_not_supported() {
        let error = procedure_statement(Driver::Sqlite, "p", &Map::new()).err();
        assert_eq!(error.map(|e| e.code), Some("not_supported".to_owned()));
    }

    #[test]
    fn names_that_could_inject_sql_are_refused() {
        for name in ["p; DROP TABLE t", "", "a.b.c.d", "[x]]y]", "p--", "1p"] {
            assert!(
                procedure_statement(Driver::Mssql, name, &Map::new()).is_err(),
                "{name}"
            );
        }
        let bad_parameter =
            procedure_statement(Driver::Mssql, "p", &params(json!({"a = 1; --": 1})));
        assert!(bad_parameter.is_err());
    }
}
