//! Embedding SCL in a Rust host: register a module with an opaque host type,
//! compile a script once, call it from several threads with limits, and read
//! the result and the execution statistics.
//!
//! `cargo run -p scl-compiler --example embed`

use std::sync::Arc;
use std::time::Duration;

use scl_compiler::{
    CallOptions, CompileOptions, Engine, HostContext, HostError, HostType, Limits, LogLevel, Value,
};
use scl_lang::modules::Owner;

/// A pump the host knows; scripts hold it as the opaque type `Pump`.
struct Pump {
    code: String,
    speed: f64,
}

impl HostType for Pump {
    const NAME: &'static str = "Pump";
}

/// Which site an execution runs for: the host data every host function can read.
struct Site {
    name: &'static str,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut engine = Engine::default();
    let plant = Owner::Module("Plant".into());
    engine.register_fn(
        plant.clone(),
        "Pump",
        &["code"],
        |_: &mut HostContext<'_, '_>, code: String| {
            let speed = if code == "P1" { 1450.0 } else { 0.0 };
            Ok::<Arc<Pump>, HostError>(Arc::new(Pump { code, speed }))
        },
    )?;
    engine.register_fn(
        Owner::HostType("Pump".into()),
        "Speed",
        &[],
        |_: &mut HostContext<'_, '_>, pump: Arc<Pump>| Ok::<f64, HostError>(pump.speed),
    )?;
    engine.register_fn(
        Owner::HostType("Pump".into()),
        "Code",
        &[],
        |_: &mut HostContext<'_, '_>, pump: Arc<Pump>| Ok::<String, HostError>(pump.code.clone()),
    )?;
    engine.register_fn(
        plant,
        "Log",
        &["message"],
        |cx: &mut HostContext<'_, '_>, message: String| {
            let site = cx.host_data::<Site>().map_or("?", |s| s.name);
            cx.log(LogLevel::Info, format!("[{site}] {message}"));
            Ok::<(), HostError>(())
        },
    )?;

    let script = engine.compile(
        r#"
type Status = { code: string, running: bool, speed: float }

fn main(code: string, limit: float) -> Status {
    let pump = Plant.Pump(code);
    let speed = pump.Speed();
    if speed > limit {
        Plant.Log("${pump.Code()} runs at ${speed} rpm (limit ${limit})");
    }
    return { code: pump.Code(), running: speed > 0.0, speed: speed };
}
"#,
        &CompileOptions::default(),
    )?;

    std::thread::scope(|scope| {
        for (site, code) in [("north", "P1"), ("south", "P2")] {
            let script = script.clone();
            scope.spawn(move || {
                let host = Site { name: site };
                let options = CallOptions {
                    limits: Limits {
                        timeout: Some(Duration::from_millis(100)),
                        ..Limits::default()
                    },
                    host_data: Some(&host),
                    ..CallOptions::default()
                };
                let outcome = script.call_main_json(
                    &serde_json::json!({ "code": code, "limit": 1000.0 }),
                    &options,
                );
                match &outcome.result {
                    Ok(value) => println!(
                        "{site}: {} ({})",
                        value.to_json(),
                        outcome.stats.status.name()
                    ),
                    Err(error) => println!("{site}: failed: {error}"),
                }
                for line in &outcome.stats.logs {
                    println!("{site}: log {:?} {}", line.level, line.message);
                }
                println!(
                    "{site}: {:?} wall, {:?} cpu, {} bytes heap peak",
                    outcome.stats.duration, outcome.stats.cpu_time, outcome.stats.heap_peak_bytes
                );
            });
        }
    });

    // Positional arguments work too; a mistyped one is an error of kind "type".
    let outcome = script.call_main(
        vec![Value::Int(1), Value::Float(1.0)],
        &CallOptions::default(),
    );
    println!("mistyped: {}", outcome.result.unwrap_err());
    Ok(())
}
