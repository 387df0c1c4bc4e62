//! Runs Lua scripts on the Rust `cjson` and `bit` and compares their output, line by line,
//! with the same scripts' output under Redis's own Lua (`deps/lua/src` of redis/redis: its
//! Lua 5.1.5, `lua_cjson.c` and `lua_bit.c`, built with the flags Redis uses;
//! `data/lua/build_reference.sh` regenerates the `.expected` files).

// A test harness: a failure to set up Lua is a failed test.
#![allow(clippy::unwrap_used)]

use mlua::Lua;
use std::sync::{Arc, Mutex};

/// Runs `script` (named `name` in error positions) with both libraries registered and
/// `print` captured, returning what it printed.
fn run(name: &str, script: &[u8]) -> Vec<u8> {
    let lua = Lua::new();
    let globals = lua.globals();
    sessiond::script::cjson::register(&lua, &globals).unwrap();
    sessiond::script::bit::register(&lua, &globals).unwrap();
    // `Arc<Mutex>` rather than `Rc<RefCell>`: callbacks must be `Send` with mlua's `send`.
    let output = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = output.clone();
    let print = lua
        .create_function(move |_, values: mlua::Variadic<mlua::LuaString>| {
            let mut sink = sink.lock().unwrap();
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    sink.push(b'\t');
                }
                sink.extend_from_slice(&value.as_bytes());
            }
            sink.push(b'\n');
            Ok(())
        })
        .unwrap();
    globals.set("print", print).unwrap();
    lua.load(script)
        .set_name(format!("@{name}"))
        .exec()
        .unwrap();
    let printed = output.lock().unwrap().clone();
    printed
}

fn assert_same_lines(expected: &[u8], actual: &[u8]) {
    let expected: Vec<&[u8]> = expected.split(|&b| b == b'\n').collect();
    let actual: Vec<&[u8]> = actual.split(|&b| b == b'\n').collect();
    let mismatches: Vec<String> = expected
        .iter()
        .zip(&actual)
        .filter(|(want, got)| want != got)
        .take(20)
        .map(|(want, got)| {
            format!(
                "C:    {}\nRust: {}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(got)
            )
        })
        .collect();
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert_eq!(expected.len(), actual.len(), "line counts differ");
}

/// Hand-written cases: every documented behaviour and error, with caller positions.
#[test]
fn cases_match_redis_c_libraries() {
    let actual = run(
        "differential.lua",
        include_bytes!("data/lua/differential.lua"),
    );
    assert_same_lines(include_bytes!("data/lua/differential.expected"), &actual);
}

/// ~9600 random cases from a fixed seed: decode inputs from fragments, random tables under
/// random configurations (their round trips, and their text with one byte replaced),
/// random `bit` operands.
#[test]
fn random_cases_match_redis_c_libraries() {
    let actual = run("fuzz.lua", include_bytes!("data/lua/fuzz.lua"));
    assert_same_lines(include_bytes!("data/lua/fuzz.expected"), &actual);
}
