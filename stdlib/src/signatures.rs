//! The signatures of the built-in modules, declared once.
//!
//! Promise: [`module_table`] lists every module function and host-type
//! method of `docs/language.md` with its parameter and result types, the
//! script kinds that may call it (the kind table of `docs/language.md`), the
//! arguments that name deployment objects (checked by `scl check --config`)
//! and a one-sentence doc. The checker, the engine and the language server
//! all read this one table; the order of entries is the `HostFnId` order.
//!
//! `params` and `name_args` count the written arguments only: the receiver of
//! a host-type method (`Connection`, `RouteTarget`, `NotifyTarget`) is passed
//! first at run time but is not listed.

use scl_lang::checker::error_value_type;
use scl_lang::modules::{HostFnSig, ModuleTable, NameRef, Owner, ScriptKind};
use scl_lang::types::{RecordType, Type};

/// Sites' kinds: everything but `api` (which runs on central).
const SITE_KINDS: &[ScriptKind] = &[ScriptKind::Instance, ScriptKind::Alarm, ScriptKind::Shared];
/// Scripts bound to one instance.
const INSTANCE_KINDS: &[ScriptKind] = &[ScriptKind::Instance, ScriptKind::Alarm];
/// Only api scripts.
const API_KINDS: &[ScriptKind] = &[ScriptKind::Api];
/// Every kind (an empty list means every kind).
const ALL_KINDS: &[ScriptKind] = &[];

/// `Delivery = { id: string, status: string }`: what a store-and-forward
/// hand-off returns; `status` is `"delivered"` or `"buffered"`.
pub fn delivery_type() -> Type {
    Type::Record(RecordType::new(
        Some("Delivery".to_string()),
        vec![
            ("id".to_string(), Type::String),
            ("status".to_string(), Type::String),
        ],
    ))
}

/// `DeliveryStatus`: what `Deliveries.Status(id)` returns.
pub fn delivery_status_type() -> Type {
    Type::Record(RecordType::new(
        Some("DeliveryStatus".to_string()),
        vec![
            ("id".to_string(), Type::String),
            ("status".to_string(), Type::String),
            ("attempts".to_string(), Type::Int),
            ("last_error".to_string(), Type::optional(Type::String)),
            ("created_at".to_string(), Type::String),
            ("updated_at".to_string(), Type::String),
        ],
    ))
}

/// Builds the table entry by entry, in `HostFnId` order.
struct TableBuilder {
    table: ModuleTable,
}

impl TableBuilder {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        owner: Owner,
        name: &str,
        params: &[(&str, Type)],
        ret: Type,
        kinds: &[ScriptKind],
        name_args: &[(usize, NameRef)],
        doc: &str,
    ) {
        self.table.functions.push(HostFnSig {
            owner,
            name: name.to_string(),
            params: params
                .iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect(),
            ret,
            kinds: kinds.to_vec(),
            name_args: name_args.to_vec(),
            doc: doc.to_string(),
        });
    }
}

fn module(name: &str) -> Owner {
    Owner::Module(name.to_string())
}

fn host_type(name: &str) -> Owner {
    Owner::HostType(name.to_string())
}

/// Every built-in module and host type.
pub fn module_table() -> ModuleTable {
    use Type::{Float, Int, Json, String as Str, Void};
    let list_json = || Type::list(Json);
    let map_json = || Type::map(Json);
    let rows = || Type::list(Type::map(Json));
    let mut t = TableBuilder {
        table: ModuleTable::default(),
    };

    // ExternalSystem: REST/JSON systems defined in the deployment.
    let system = [
        (0, NameRef::ExternalSystem),
        (1, NameRef::ExternalMethod { system_arg: 0 }),
    ];
    t.add(
        module("ExternalSystem"),
        "Call",
        &[("system", Str), ("method", Str), ("params", Json)],
        Json,
        SITE_KINDS,
        &system,
        "Calls a method of an external system now and returns its JSON result; every failure is an error for the script.",
    );
    t.add(
        module("ExternalSystem"),
        "CachedCall",
        &[("system", Str), ("method", Str), ("params", Json)],
        delivery_type(),
        SITE_KINDS,
        &system,
        "Calls a method of an external system, buffering it for retry on a transient failure; a permanent failure is an error at once.",
    );

    // Notify: email to notification lists.
    t.add(
        module("Notify"),
        "To",
        &[("list", Str)],
        Type::Host("NotifyTarget".to_string()),
        SITE_KINDS,
        &[(0, NameRef::NotificationList)],
        "Selects a notification list of the deployment to send to.",
    );
    t.add(
        host_type("NotifyTarget"),
        "Send",
        &[("subject", Str), ("body", Str)],
        delivery_type(),
        SITE_KINDS,
        &[],
        "Sends one plain-text email to every recipient of the list (in BCC), through store-and-forward.",
    );

    // Database: named connections of the deployment.
    let connection = || Type::Host("Connection".to_string());
    t.add(
        module("Database"),
        "Connection",
        &[("name", Str)],
        connection(),
        ALL_KINDS,
        &[(0, NameRef::Database)],
        "Opens a database connection of the deployment by name.",
    );
    t.add(
        host_type("Connection"),
        "Query",
        &[("sql", Str), ("params", list_json())],
        rows(),
        ALL_KINDS,
        &[],
        "Runs a query with bound parameters (`@p1`, `@p2`, ...) and returns its rows as maps from column name to value.",
    );
    t.add(
        host_type("Connection"),
        "Execute",
        &[("sql", Str), ("params", list_json())],
        Int,
        ALL_KINDS,
        &[],
        "Runs a statement with bound parameters and returns the number of rows affected.",
    );
    t.add(
        host_type("Connection"),
        "Scalar",
        &[("sql", Str), ("params", list_json())],
        Json,
        ALL_KINDS,
        &[],
        "Runs a query with bound parameters and returns the first column of the first row (null when there is none).",
    );
    t.add(
        host_type("Connection"),
        "Procedure",
        &[("name", Str), ("params", map_json())],
        rows(),
        ALL_KINDS,
        &[],
        "Runs a stored procedure with named parameters and returns the rows it produces.",
    );
    t.add(
        host_type("Connection"),
        "Begin",
        &[],
        Void,
        ALL_KINDS,
        &[],
        "Starts a transaction on this connection.",
    );
    t.add(
        host_type("Connection"),
        "Commit",
        &[],
        Void,
        ALL_KINDS,
        &[],
        "Commits the transaction on this connection.",
    );
    t.add(
        host_type("Connection"),
        "Rollback",
        &[],
        Void,
        ALL_KINDS,
        &[],
        "Rolls back the transaction on this connection.",
    );
    t.add(
        module("Database"),
        "CachedWrite",
        &[("name", Str), ("sql", Str), ("params", list_json())],
        delivery_type(),
        SITE_KINDS,
        &[(0, NameRef::Database)],
        "Hands a write (connection name, SQL and parameters) to store-and-forward, which runs it until it succeeds or is parked.",
    );

    // Route: central reaching instances on sites.
    let route_target = || Type::Host("RouteTarget".to_string());
    t.add(
        module("Route"),
        "To",
        &[("instance", Str)],
        route_target(),
        API_KINDS,
        &[(0, NameRef::Instance)],
        "Selects an instance by code, on whichever site hosts it.",
    );
    t.add(
        host_type("RouteTarget"),
        "Call",
        &[("script", Str), ("params", Json)],
        Json,
        API_KINDS,
        &[(0, NameRef::RoutedScript)],
        "Runs a script of the instance with parameters by name and returns its result as JSON.",
    );
    t.add(
        host_type("RouteTarget"),
        "GetAttribute",
        &[("name", Str)],
        Json,
        API_KINDS,
        &[(0, NameRef::RoutedAttribute)],
        "Reads one attribute of the instance.",
    );
    t.add(
        host_type("RouteTarget"),
        "GetAttributes",
        &[("names", Type::list(Str))],
        map_json(),
        API_KINDS,
        &[(0, NameRef::RoutedAttribute)],
        "Reads several attributes of the instance at once, by name.",
    );
    t.add(
        host_type("RouteTarget"),
        "SetAttribute",
        &[("name", Str), ("value", Json)],
        Void,
        API_KINDS,
        &[(0, NameRef::RoutedAttribute)],
        "Writes one attribute of the instance.",
    );
    t.add(
        host_type("RouteTarget"),
        "SetAttributes",
        &[("values", map_json())],
        Void,
        API_KINDS,
        &[(0, NameRef::RoutedAttribute)],
        "Writes several attributes of the instance at once, from a map of name to value.",
    );

    // The script's own instance.
    t.add(
        module("Attributes"),
        "Get",
        &[("name", Str)],
        Json,
        INSTANCE_KINDS,
        &[(0, NameRef::Attribute)],
        "Reads an attribute of this script's instance.",
    );
    t.add(
        module("Attributes"),
        "Set",
        &[("name", Str), ("value", Json)],
        Void,
        INSTANCE_KINDS,
        &[(0, NameRef::Attribute)],
        "Writes an attribute of this script's instance.",
    );
    t.add(
        module("Instance"),
        "Code",
        &[],
        Str,
        INSTANCE_KINDS,
        &[],
        "The code of this script's instance.",
    );
    t.add(
        module("Scripts"),
        "Call",
        &[("name", Str), ("params", Json)],
        Json,
        INSTANCE_KINDS,
        &[(0, NameRef::Script)],
        "Runs another script of this instance with parameters by name and returns its result as JSON.",
    );
    t.add(
        module("Shared"),
        "Call",
        &[("name", Str), ("params", Json)],
        Json,
        SITE_KINDS,
        &[(0, NameRef::SharedScript)],
        "Runs a shared script of this site with parameters by name and returns its result as JSON.",
    );

    // Store-and-forward status.
    t.add(
        module("Deliveries"),
        "Status",
        &[("id", Str)],
        delivery_status_type(),
        SITE_KINDS,
        &[],
        "The store-and-forward state of a delivery by id (pending, delivered, retrying, parked), with its attempts and last error.",
    );

    // Everywhere.
    for (name, doc) in [
        ("Info", "Writes an informational line to the execution log."),
        ("Warn", "Writes a warning to the execution log."),
        (
            "Error",
            "Writes an error line to the execution log (it does not stop the script).",
        ),
    ] {
        t.add(
            module("Log"),
            name,
            &[("message", Str)],
            Void,
            ALL_KINDS,
            &[],
            doc,
        );
    }
    t.add(
        module("Json"),
        "Parse",
        &[("text", Str)],
        Json,
        ALL_KINDS,
        &[],
        "Parses JSON text; malformed text is an error.",
    );
    t.add(
        module("Json"),
        "Stringify",
        &[("value", Json)],
        Str,
        ALL_KINDS,
        &[],
        "Writes a value as compact JSON text.",
    );
    t.add(
        module("Time"),
        "Now",
        &[],
        Str,
        ALL_KINDS,
        &[],
        "The current time in UTC as RFC 3339 text.",
    );
    t.add(
        module("Time"),
        "UnixMillis",
        &[],
        Int,
        ALL_KINDS,
        &[],
        "The current time as milliseconds since 1970-01-01 UTC.",
    );
    for (name, doc) in [
        ("Abs", "The absolute value."),
        (
            "Round",
            "Rounds to the nearest integer value, halves away from zero.",
        ),
        ("Floor", "Rounds down to an integer value."),
        ("Ceil", "Rounds up to an integer value."),
        ("Sqrt", "The square root (NaN for a negative number)."),
    ] {
        t.add(
            module("Math"),
            name,
            &[("x", Float)],
            Float,
            ALL_KINDS,
            &[],
            doc,
        );
    }
    t.add(
        module("Math"),
        "Min",
        &[("a", Float), ("b", Float)],
        Float,
        ALL_KINDS,
        &[],
        "The smaller of two numbers.",
    );
    t.add(
        module("Math"),
        "Max",
        &[("a", Float), ("b", Float)],
        Float,
        ALL_KINDS,
        &[],
        "The larger of two numbers.",
    );
    t.add(
        module("Math"),
        "Pow",
        &[("base", Float), ("exponent", Float)],
        Float,
        ALL_KINDS,
        &[],
        "`base` raised to the power `exponent`.",
    );

    t.table.types = vec![
        ("Delivery".to_string(), delivery_type()),
        ("DeliveryStatus".to_string(), delivery_status_type()),
        ("Error".to_string(), error_value_type()),
    ];
    t.table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_is_declared_once_with_a_doc() {
        let table = module_table();
        for (index, function) in table.functions.iter().enumerate() {
            assert!(
                !function.doc.is_empty(),
                "{} has no doc",
                function.qualified_name()
            );
            let first = table
                .lookup(&function.owner, &function.name)
                .map(|id| id.0 as usize);
            assert_eq!(
                first,
                Some(index),
                "{} is declared twice",
                function.qualified_name()
            );
            for (arg, _) in &function.name_args {
                assert!(
                    *arg < function.params.len(),
                    "{} names a missing argument",
                    function.qualified_name()
                );
            }
        }
    }
}
