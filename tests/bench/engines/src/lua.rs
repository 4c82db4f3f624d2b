//! Lua 5.4 or Luau (with its native code generator) through mlua, whichever this build has:
//! mlua links one Lua per build, so `run.sh` builds the harness once per Lua.

use std::hint::black_box;

use mlua::{Function, Lua, LuaSerdeExt, MetaMethod, Table, UserData, UserDataMethods, UserDataRef};

use crate::host::{self, RustData};
use crate::measure::Sink;
use crate::native::BODIES;
use crate::workloads::*;

#[cfg(feature = "lua54")]
pub const ENGINE: &str = "lua54";
#[cfg(all(feature = "luau", not(feature = "lua54")))]
pub const ENGINE: &str = "luau";

#[cfg(feature = "lua54")]
const STRINGS: &str = include_str!("../scripts/strings.lua");
#[cfg(all(feature = "luau", not(feature = "lua54")))]
const STRINGS: &str = include_str!("../scripts/strings.luau");

impl UserData for RustData {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_function("new", |_, s: mlua::LuaString| {
            Ok(RustData(s.to_str()?.to_string()))
        });
        methods.add_meta_method(MetaMethod::Lt, |_, this, other: UserDataRef<RustData>| {
            Ok(this.0 < other.0)
        });
    }
}

fn lua() -> mlua::Result<Lua> {
    let lua = Lua::new();
    #[cfg(feature = "luau")]
    lua.set_compiler(mlua::chunk::Compiler::new().set_optimization_level(2));
    let globals = lua.globals();
    globals.set("RustData", lua.create_proxy::<RustData>()?)?;
    globals.set("rand", lua.create_function(|_, n: i64| Ok(host::rand(n)))?)?;
    // What an embedder gives Lua for JSON: serde_json, converted to tables by mlua.
    globals.set(
        "json_decode",
        lua.create_function(|lua, text: mlua::LuaString| {
            let value: serde_json::Value =
                serde_json::from_slice(&text.as_bytes()).map_err(mlua::Error::external)?;
            lua.to_value(&value)
        })?,
    )?;
    lua.load(include_str!("../scripts/sort_userdata.lua"))
        .set_name("workloads")
        .exec()?;
    lua.load(STRINGS).set_name("strings").exec()?;
    Ok(lua)
}

pub fn bench(sink: &mut Sink) {
    let lua = lua().unwrap_or_else(|e| panic!("{ENGINE}: {e}"));
    let function = |name: &str| -> Function {
        lua.globals()
            .get(name)
            .unwrap_or_else(|e| panic!("{ENGINE}: {name}: {e}"))
    };
    let note = if cfg!(feature = "lua54") {
        ""
    } else {
        "native code generation on"
    };

    let sort = function("sort_userdata");
    sink.run(
        Workload::SortUserdata,
        ENGINE,
        "host `<` as __lt metamethod",
        || {
            host::reset_rand();
            sort.call::<Table>(SORT_ITEMS)
                .unwrap_or_else(|e| panic!("{ENGINE}: {e}"))
        },
        |table| {
            let items: Vec<UserDataRef<RustData>> = table
                .sequence_values::<UserDataRef<RustData>>()
                .collect::<mlua::Result<_>>()
                .expect("RustData items");
            Output::sorted(items.iter().map(|d| d.0.as_str()))
        },
    );

    let int_call = |f: &Function, arg: i64| {
        f.call::<i64>(arg)
            .unwrap_or_else(|e| panic!("{ENGINE}: {e}"))
    };
    let fib = function("fib");
    sink.run(
        Workload::Fib,
        ENGINE,
        note,
        || int_call(&fib, FIB_N),
        |n| Output::Int(*n),
    );
    let count = function("count_loop");
    sink.run(
        Workload::Loop,
        ENGINE,
        note,
        || int_call(&count, LOOP_N),
        |n| Output::Int(*n),
    );
    let sieve = function("sieve");
    sink.run(
        Workload::Sieve,
        ENGINE,
        note,
        || int_call(&sieve, SIEVE_N),
        |n| Output::Int(*n),
    );

    let strings = function("strings");
    sink.run(
        Workload::Strings,
        ENGINE,
        "pieces into a table, table.concat",
        || {
            strings
                .call::<mlua::LuaString>(STRING_PIECES)
                .unwrap_or_else(|e| panic!("{ENGINE}: {e}"))
        },
        |s| Output::text(&s.to_str().expect("UTF-8")),
    );

    let nbody = function("nbody");
    let bodies: Vec<f64> = BODIES.iter().flatten().copied().collect();
    sink.run(
        Workload::NBody,
        ENGINE,
        note,
        || {
            nbody
                .call::<f64>((NBODY_STEPS, bodies.clone()))
                .unwrap_or_else(|e| panic!("{ENGINE}: {e}"))
        },
        |e| Output::Float(*e),
    );

    let json = function("json_sum");
    let document = sink.reference.json_document.clone();
    sink.run(
        Workload::Json,
        ENGINE,
        "host json_decode: serde_json, then mlua's conversion to tables",
        || {
            json.call::<i64>(document.as_str())
                .unwrap_or_else(|e| panic!("{ENGINE}: {e}"))
        },
        |n| Output::Int(*n),
    );

    let source = two_hundred_lines();
    sink.compile(
        ENGINE,
        "load: compile to bytecode (and native code on Luau)",
        || {
            black_box(
                lua.load(source.as_str())
                    .into_function()
                    .unwrap_or_else(|e| panic!("{ENGINE}: {e}")),
            );
        },
    );
}

/// SCL's 200-line compile script in Lua: as many helpers, each with a loop, a table used as
/// a map, string building, pcall for try/catch and a table result.
fn two_hundred_lines() -> String {
    let mut source = String::new();
    let helpers = crate::scl::helper_count();
    for i in 0..helpers {
        source.push_str(&format!(
            "local function helper{i}(n, label)\n\
             \x20   local total = 0\n\
             \x20   local names = {{}}\n\
             \x20   for k = 0, n - 1 do\n\
             \x20       total = total + k * {i}\n\
             \x20       names[\"k\" .. k] = k\n\
             \x20   end\n\
             \x20   local ok = pcall(function()\n\
             \x20       if n == {i} then error(\"division by zero\") end\n\
             \x20       total = total // (n - {i})\n\
             \x20   end)\n\
             \x20   if not ok then total = -1 end\n\
             \x20   local tags = {{}}\n\
             \x20   for key in pairs(names) do tags[#tags + 1] = key end\n\
             \x20   return {{ asset = label .. tostring(total), value = total * 0.5, tags = tags }}\n\
             end\n"
        ));
    }
    source.push_str("function main(n)\n    local sum = 0.0\n");
    for j in 0..helpers {
        source.push_str(&format!("    sum = sum + helper{j}(n, \"a\").value\n"));
    }
    source.push_str("    return sum\nend\n");
    source
}
