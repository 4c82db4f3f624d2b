//! The script-facing wiring of Notify: `Notify.To(list)` and `NotifyTarget.Send(subject,
//! body)` registered in the engine under the signatures `scl_stdlib::signatures` declares, so
//! the checker, the language server and the engine agree on them.
//!
//! `Notify.To(list)` checks the list at once (an unknown list is a `not_found` error at the
//! call, with the nearest name suggested) and returns a `NotifyTarget` handle; `Send` runs
//! [`NotifyService::send`] on the calling script thread and returns the `Delivery` record
//! `{id, status}`, or the module's error as a catchable script error with its kind, code,
//! message and status.

use std::sync::Arc;

use scl_compiler::{Engine, HostError, HostObject, Value};
use scl_lang::modules::Owner;
use scl_stdlib::notify::NotifyError;

use super::NotifyService;

/// What `Notify.To(list)` returns: a list the deployment defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    /// The list name.
    pub list: String,
}

/// The script-side name of [`NotifyTarget`].
pub const NOTIFY_TARGET: &str = "NotifyTarget";

/// Register `Notify.To` and `NotifyTarget.Send` in `engine`, sending through `service`.
/// Each `Send` counts in the execution's `notifications` statistic.
pub fn register(engine: &mut Engine, service: Arc<NotifyService>) -> Result<(), String> {
    let table = scl_stdlib::signatures::module_table();
    let signature = |owner: Owner, name: &str| {
        table
            .lookup(&owner, name)
            .map(|id| table.function(id).clone())
            .ok_or_else(|| format!("scl_stdlib::signatures declares no `{name}` for Notify"))
    };
    let to = signature(Owner::Module("Notify".to_owned()), "To")?;
    let send = signature(Owner::HostType(NOTIFY_TARGET.to_owned()), "Send")?;

    let lists = Arc::clone(&service);
    engine
        .register_raw(to, move |_context, arguments| {
            let list = match arguments.first() {
                Some(Value::String(list)) => list.clone(),
                _ => return Err(argument_error("Notify.To", "list")),
            };
            lists.check_list(&list).map_err(host_error)?;
            Ok(Value::Host(HostObject::new(
                NOTIFY_TARGET,
                NotifyTarget { list },
            )))
        })
        .map_err(|error| format!("Notify.To: {error}"))?;

    let send_id = engine
        .register_raw(send, move |_context, arguments| {
            let mut arguments = arguments.into_iter();
            let target = match arguments.next() {
                Some(Value::Host(handle)) => handle.downcast_arc::<NotifyTarget>(),
                _ => None,
            }
            .ok_or_else(|| argument_error("NotifyTarget.Send", "target"))?;
            let subject = match arguments.next() {
                Some(Value::String(subject)) => subject,
                _ => return Err(argument_error("NotifyTarget.Send", "subject")),
            };
            let body = match arguments.next() {
                Some(Value::String(body)) => body,
                _ => return Err(argument_error("NotifyTarget.Send", "body")),
            };
            let delivery = service
                .send(&target.list, &subject, &body)
                .map_err(host_error)?;
            // Record fields in canonical (sorted) order.
            Ok(Value::Record(vec![
                ("id".into(), Value::String(delivery.id)),
                (
                    "status".into(),
                    Value::String(delivery.status.as_str().to_owned()),
                ),
            ]))
        })
        .map_err(|error| format!("NotifyTarget.Send: {error}"))?;
    engine.set_category(send_id, "notifications");
    Ok(())
}

/// The module's error as a script error: same kind, code, message and status.
pub fn host_error(error: NotifyError) -> HostError {
    let mut host = HostError::new(error.kind(), error.code().as_str(), error.to_string());
    host.status = error.status().map(i64::from);
    host
}

fn argument_error(function: &str, parameter: &str) -> HostError {
    HostError::new(
        "type",
        "host_argument",
        format!("{function}: bad `{parameter}` argument"),
    )
}
