//! Shared helpers: compile SCL source with a small test engine and run it
//! under both the JIT and the reference evaluator, insisting they agree.

#![allow(dead_code)]

use scl_compiler::{
    Backend, CallOptions, CompileOptions, Engine, HostContext, HostError, Limits, LogLevel,
    Outcome, Script, ScriptError, Value,
};
use scl_lang::modules::Owner;

/// An engine with `Log.Info/Warn/Error(message)` and `Test.Fail(kind, code)`.
pub fn engine() -> Engine {
    let mut engine = Engine::default();
    for (name, level) in [
        ("Info", LogLevel::Info),
        ("Warn", LogLevel::Warn),
        ("Error", LogLevel::Error),
    ] {
        engine
            .register_fn(
                Owner::Module("Log".into()),
                name,
                &["message"],
                move |cx: &mut HostContext<'_, '_>, message: String| {
                    cx.log(level, message);
                    Ok::<(), HostError>(())
                },
            )
            .unwrap();
    }
    engine
        .register_fn(
            Owner::Module("Test".into()),
            "Fail",
            &["kind", "code"],
            |_: &mut HostContext<'_, '_>, kind: String, code: String| {
                Err::<(), HostError>(
                    HostError::new(&kind, &code, format!("host failed with {code}"))
                        .with_status(503),
                )
            },
        )
        .unwrap();
    register_helpers(&mut engine);
    engine
}

type Unary = fn(f64) -> f64;
type Binary = fn(f64, f64) -> f64;

/// Small stand-ins for the stdlib's `Json`, `Math` and `Time` modules, so
/// the conformance programs run here without the stdlib crate.
fn register_helpers(engine: &mut Engine) {
    let module = |name: &str| Owner::Module(name.to_string());
    engine
        .register_fn(
            module("Json"),
            "Parse",
            &["text"],
            |_: &mut HostContext<'_, '_>, text: String| {
                serde_json::from_str::<serde_json::Value>(&text)
                    .map_err(|e| HostError::new("script", "invalid_json", e.to_string()))
            },
        )
        .unwrap();
    engine
        .register_fn(
            module("Json"),
            "Stringify",
            &["value"],
            |_: &mut HostContext<'_, '_>, value: serde_json::Value| {
                Ok::<String, HostError>(value.to_string())
            },
        )
        .unwrap();
    engine
        .register_fn(
            module("Time"),
            "UnixMillis",
            &[],
            |_: &mut HostContext<'_, '_>| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                Ok::<i64, HostError>(now.as_millis() as i64)
            },
        )
        .unwrap();
    engine
        .register_fn(module("Time"), "Now", &[], |_: &mut HostContext<'_, '_>| {
            Ok::<String, HostError>("2026-11-23T00:00:00Z".to_string())
        })
        .unwrap();
    let unary: [(&str, Unary); 5] = [
        ("Abs", f64::abs),
        ("Round", f64::round),
        ("Floor", f64::floor),
        ("Ceil", f64::ceil),
        ("Sqrt", f64::sqrt),
    ];
    for (name, f) in unary {
        engine
            .register_fn(
                module("Math"),
                name,
                &["x"],
                move |_: &mut HostContext<'_, '_>, x: f64| Ok::<f64, HostError>(f(x)),
            )
            .unwrap();
    }
    let binary: [(&str, Binary); 3] = [("Min", f64::min), ("Max", f64::max), ("Pow", f64::powf)];
    for (name, f) in binary {
        engine
            .register_fn(
                module("Math"),
                name,
                &["a", "b"],
                move |_: &mut HostContext<'_, '_>, a: f64, b: f64| Ok::<f64, HostError>(f(a, b)),
            )
            .unwrap();
    }
}

pub fn compile(source: &str) -> Script {
    match engine().compile(source, &CompileOptions::default()) {
        Ok(script) => script,
        Err(error) => panic!("compile error:\n{error}\nsource:\n{source}"),
    }
}

/// Runs `main` under both backends with `limits`; panics when they disagree.
pub fn run_with(source: &str, args: Vec<Value>, limits: Limits) -> Outcome {
    let script = compile(source);
    let jit = script.call_main(
        args.clone(),
        &CallOptions {
            limits: limits.clone(),
            ..CallOptions::default()
        },
    );
    let optimized = script.call_main(
        args.clone(),
        &CallOptions {
            limits: limits.clone(),
            backend: Backend::JitOptimized,
            ..CallOptions::default()
        },
    );
    let eval = script.call_main(
        args,
        &CallOptions {
            limits,
            backend: Backend::Eval,
            ..CallOptions::default()
        },
    );
    assert_eq!(
        jit.result,
        eval.result,
        "JIT and evaluator disagree on\n{source}\nIR:\n{}",
        script.lowered()
    );
    assert_eq!(
        jit.result, optimized.result,
        "quick and optimized JIT code disagree on\n{source}"
    );
    assert_eq!(jit.stats.status, optimized.stats.status);
    assert_eq!(jit.stats.logs, eval.stats.logs, "logs differ for\n{source}");
    assert_eq!(jit.stats.status, eval.stats.status);
    jit
}

pub fn run(source: &str, args: Vec<Value>) -> Outcome {
    run_with(source, args, Limits::default())
}

pub fn ok(source: &str, args: Vec<Value>) -> Value {
    match run(source, args).result {
        Ok(value) => value,
        Err(error) => panic!("script failed: {error}\n{source}"),
    }
}

pub fn err(source: &str, args: Vec<Value>) -> ScriptError {
    match run(source, args).result {
        Ok(value) => panic!("script succeeded with {value:?}, expected an error\n{source}"),
        Err(error) => error,
    }
}

/// Evaluates `expr` of type `ty` in a `main` with no parameters.
pub fn eval(ty: &str, expr: &str) -> Value {
    ok(&format!("fn main() -> {ty} {{ return {expr}; }}"), vec![])
}

pub fn eval_err(ty: &str, expr: &str) -> ScriptError {
    err(&format!("fn main() -> {ty} {{ return {expr}; }}"), vec![])
}
