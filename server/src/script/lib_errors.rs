//! What the Rust `cjson` and `bit` libraries share: errors worded and placed as the C
//! libraries' `luaL_argerror` and `luaL_error` place them, and the Lua wrapper that raises
//! them as plain strings.

use mlua::{Function, Lua, Table, Value};

/// `luaL_argerror`'s message: the function named as its caller called it (`'?'` from C,
/// e.g. `pcall(cjson.decode)`), arguments counted without `self` for a method call, and the
/// caller's position. When the script tail-called the wrapper, the call site is gone: then
/// the library's own name stands in, as the call site most likely spelled it.
pub(super) fn argument_error(lua: &Lua, library_name: &str, index: usize, detail: &str) -> String {
    let named = lua
        .inspect_stack(1, |debug| {
            let names = debug.names();
            let method = names.name_what == Some("method");
            names.name.map(|name| (name.into_owned(), method))
        })
        .flatten();
    let (name, method) = named.unwrap_or_else(|| {
        let tail_called = lua.inspect_stack(2, |debug| debug.source().what == "tail");
        if tail_called == Some(true) {
            (library_name.to_string(), false)
        } else {
            ("?".to_string(), false)
        }
    });
    let position = caller_position(lua);
    match (method, index) {
        (true, 1) => format!("{position}calling '{name}' on bad self ({detail})"),
        (true, _) => format!(
            "{position}bad argument #{} to '{name}' ({detail})",
            index.saturating_sub(1)
        ),
        (false, _) => format!("{position}bad argument #{index} to '{name}' ({detail})"),
    }
}

/// `luaL_where(L, 1)` as the C library would see it: `chunk:line: ` of the Lua function that
/// called the library function, or nothing for a C caller. Level 0 is the Rust function,
/// level 1 the Lua wrapper around it, level 2 the script. (If the script tail-called the
/// wrapper, its frame is gone and so is the position; see the module doc.)
pub(super) fn caller_position(lua: &Lua) -> String {
    lua.inspect_stack(2, |debug| {
        let line = debug.current_line()?;
        let source = debug.source().short_src?.into_owned();
        Some(format!("{source}:{line}: "))
    })
    .flatten()
    .unwrap_or_default()
}

/// `lua_typename` of a value, as Lua's error messages spell it.
pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::Integer(_) | Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Table(_) => "table",
        Value::Function(_) => "function",
        Value::Thread(_) => "thread",
        _ => "userdata",
    }
}

/// Lua source of the wrapper factory: `(ok, ...)` from Rust becomes results or a string error
/// raised at level 0 (adding no position: the Rust side already put `luaL_error`'s in).
pub(super) const WRAPPER_SOURCE: &str = r#"
local raise = ...
local function finish(ok, ...)
  if ok then return ... end
  raise((...), 0)
end
return function(inner)
  return function(...) return finish(inner(...)) end
end
"#;

/// A base-library function from `globals`, else from the real globals.
pub(super) fn base_function(lua: &Lua, globals: &Table, name: &str) -> mlua::Result<Function> {
    match globals.raw_get::<Value>(name)? {
        Value::Function(f) => Ok(f),
        _ => lua.globals().raw_get::<Function>(name),
    }
}

/// The wrapper factory (see [`WRAPPER_SOURCE`]) around the base library's `error`, as chunk
/// `name`.
pub(super) fn wrapper_factory(lua: &Lua, globals: &Table, name: &str) -> mlua::Result<Function> {
    let raise = base_function(lua, globals, "error")?;
    lua.load(WRAPPER_SOURCE).set_name(name).call(raise)
}
