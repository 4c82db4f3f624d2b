//! Host implementations of the modules that need nothing from the world:
//! `Log`, `Json`, `Time` and `Math`. Their signatures come from
//! [`crate::signatures::module_table`], so script side and host side cannot
//! drift apart: a function declared there and missing here is reported by
//! [`register_core_modules`].

use scl_compiler::{Engine, HostContext, HostError, LogLevel, Value};
use scl_lang::modules::{HostFnSig, Owner};

/// The modules implemented here.
pub const CORE_MODULES: &[&str] = &["Log", "Json", "Time", "Math"];

/// Registers `Log`, `Json`, `Time` and `Math` in `engine`, with the
/// signatures of the module table. Fails with the names of declared
/// functions that have no implementation (or a registration error).
pub fn register_core_modules(engine: &mut Engine) -> Result<(), String> {
    let table = crate::signatures::module_table();
    for name in &table.types {
        engine.register_named_type(&name.0, name.1.clone());
    }
    for signature in table.functions {
        let Owner::Module(module) = &signature.owner else {
            continue;
        };
        if !CORE_MODULES.contains(&module.as_str()) {
            continue;
        }
        let qualified = signature.qualified_name();
        let implementation = implementation(&signature)
            .ok_or_else(|| format!("`{qualified}` is declared but has no host implementation"))?;
        engine
            .register_raw(signature, implementation)
            .map_err(|error| format!("`{qualified}`: {error:?}"))?;
    }
    Ok(())
}

type Implementation =
    Box<dyn Fn(&mut HostContext<'_, '_>, Vec<Value>) -> Result<Value, HostError> + Send + Sync>;

fn implementation(signature: &HostFnSig) -> Option<Implementation> {
    let Owner::Module(module) = &signature.owner else {
        return None;
    };
    let name = signature.name.as_str();
    let implementation: Implementation = match (module.as_str(), name) {
        ("Log", "Info") => log(LogLevel::Info),
        ("Log", "Warn") => log(LogLevel::Warn),
        ("Log", "Error") => log(LogLevel::Error),
        ("Json", "Parse") => Box::new(|_, args| {
            let text = string_argument(&args, 0)?;
            serde_json::from_str::<serde_json::Value>(text)
                .map(Value::Json)
                .map_err(|error| {
                    HostError::new("script", "invalid_json", format!("Json.Parse: {error}"))
                })
        }),
        ("Json", "Stringify") => Box::new(|_, args| {
            let value = args
                .first()
                .map(Value::to_json)
                .unwrap_or(serde_json::Value::Null);
            Ok(Value::String(value.to_string()))
        }),
        ("Time", "Now") => Box::new(|_, _| Ok(Value::String(rfc3339_now()))),
        ("Time", "UnixMillis") => Box::new(|_, _| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            Ok(Value::Int(
                i64::try_from(now.as_millis()).unwrap_or(i64::MAX),
            ))
        }),
        ("Math", "Abs") => unary(f64::abs),
        ("Math", "Round") => unary(f64::round),
        ("Math", "Floor") => unary(f64::floor),
        ("Math", "Ceil") => unary(f64::ceil),
        ("Math", "Sqrt") => unary(f64::sqrt),
        ("Math", "Min") => binary(f64::min),
        ("Math", "Max") => binary(f64::max),
        ("Math", "Pow") => binary(f64::powf),
        _ => return None,
    };
    Some(implementation)
}

fn log(level: LogLevel) -> Implementation {
    Box::new(move |context, args| {
        let message = string_argument(&args, 0)?;
        context.log(level, message.to_string());
        Ok(Value::Null)
    })
}

fn unary(function: fn(f64) -> f64) -> Implementation {
    Box::new(move |_, args| Ok(Value::Float(function(float_argument(&args, 0)?))))
}

fn binary(function: fn(f64, f64) -> f64) -> Implementation {
    Box::new(move |_, args| {
        Ok(Value::Float(function(
            float_argument(&args, 0)?,
            float_argument(&args, 1)?,
        )))
    })
}

fn string_argument(args: &[Value], index: usize) -> Result<&str, HostError> {
    args.get(index)
        .and_then(Value::as_str)
        .ok_or_else(|| HostError::new("type", "invalid_argument", "expected a string argument"))
}

fn float_argument(args: &[Value], index: usize) -> Result<f64, HostError> {
    match args.get(index) {
        Some(Value::Float(x)) => Ok(*x),
        _ => Err(HostError::new(
            "type",
            "invalid_argument",
            "expected a float argument",
        )),
    }
}

/// The current UTC time as RFC 3339 with millisecond precision.
pub fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_millis())
}

/// Formats seconds since the Unix epoch (UTC) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339(unix_seconds: i64, millis: u32) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let seconds_of_day = unix_seconds.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        seconds_of_day / 3_600,
        seconds_of_day % 3_600 / 60,
        seconds_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_795_392_000, 0), "2026-11-23T00:00:00.000Z");
    }

    #[test]
    fn every_core_function_is_implemented() {
        let mut engine = Engine::default();
        register_core_modules(&mut engine).expect("every core function has an implementation");
        let registered = engine.module_table().functions.len();
        let declared = crate::signatures::module_table()
            .functions
            .iter()
            .filter(|f| matches!(&f.owner, Owner::Module(m) if CORE_MODULES.contains(&m.as_str())))
            .count();
        assert_eq!(registered, declared);
    }
}
