//! One thread's Lua interpreter: Lua 5.1 with Redis 7's libraries, sandboxed.
//!
//! The sandbox, as Redis 7 (src/script_lua.c) has it, with the brief's stricter deny list:
//! the libraries are `string`, `table`, `math`, `coroutine` and the base functions but
//! `print`, `dofile`, `loadfile`, `load`, `loadstring`, `getfenv`, `setfenv`, `newproxy`
//! (no `os`, `io`, `debug`, `package`, `require`, `module`). Scripts cannot change what
//! another script sees: their globals are a proxy that refuses to create a global or read a
//! missing one (Redis's errors), every library table they see is a read-only proxy of the
//! real one, `rawset` refuses the proxies, the string metatable is hidden, and `setmetatable`
//! cannot replace a proxy's (protected) metatable. Vanilla Lua 5.1 has no read-only tables
//! (Redis patches its Lua for them): the proxies give the same guarantees, but `pairs` over a
//! library table sees nothing.

use std::collections::HashMap;

use mlua::{Function, Lua, LuaOptions, LuaString, StdLib, Table, Value};
use sessiond_protocol::Frame;

use super::call::Hooked;
use super::memory::Unlimited;
use super::{Sha, LUA_MEMORY_LIMIT};

/// The Lua code that builds the sandbox from the real globals (`real`, which scripts never
/// see) and the Rust functions: the read-only proxies, the globals' proxy, Redis 7's `pcall`
/// (an error table or a `redis.call` error comes back as its message).
const SANDBOX: &str = r#"
local real, error_message, gc_stopped = ...
local setmetatable, error, rawget, rawset, tostring, pcall =
      setmetatable, error, rawget, rawset, tostring, pcall
local protected = setmetatable({}, {__mode = 'k'})
local function refuse() error("Attempt to modify a readonly table", 2) end
local function readonly(t)
  local proxy = setmetatable({}, {__index = t, __newindex = refuse, __metatable = false})
  protected[proxy] = true
  return proxy
end
real.rawset = function(t, k, v)
  if protected[t] then error("Attempt to modify a readonly table", 2) end
  return rawset(t, k, v)
end
local function unwrap(ok, ...)
  if ok then return ok, ... end
  return false, error_message((...))
end
real.pcall = function(...) return unwrap(pcall(...)) end
-- The runner restarts a collector a script stopped, and only then (a restart starts a cycle).
local collectgarbage = real.collectgarbage
real.collectgarbage = function(option, ...)
  if option == 'stop' then gc_stopped() end
  return collectgarbage(option, ...)
end
for _, name in ipairs({'string', 'table', 'math', 'coroutine', 'redis'}) do
  real[name] = readonly(real[name])
end
-- cjson and bit: registered into `real` by the Rust side before this runs, made read-only here.
for _, name in ipairs({'cjson', 'bit'}) do
  if real[name] ~= nil then real[name] = readonly(real[name]) end
end
getmetatable('').__metatable = false
-- A global found is read straight from `real` (a table's __index, no function called); only a
-- missing one reaches the function of `real`'s own metatable, called from the script's frame
-- as before (hence level 2).
local env = setmetatable({}, {
  __index = real,
  __newindex = function(_, k)
    error("Script attempted to create global variable '" .. tostring(k) .. "'", 2)
  end,
  __metatable = false,
})
protected[env] = true
real._G = env
setmetatable(real, {
  __index = function(_, k)
    error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
  end,
  __metatable = false,
})
return env
"#;

/// The base functions scripts keep (Redis 7's allow list, less the brief's deny list).
const BASE: &[&str] = &[
    "assert",
    "collectgarbage",
    "error",
    "gcinfo",
    "getmetatable",
    "ipairs",
    "next",
    "pairs",
    "pcall",
    "rawequal",
    "rawget",
    "rawset",
    "select",
    "setmetatable",
    "tonumber",
    "tostring",
    "type",
    "unpack",
    "xpcall",
    "_VERSION",
    "string",
    "table",
    "math",
    "coroutine",
];

/// One thread's interpreter.
pub(super) struct Vm {
    pub lua: Lua,
    /// The real globals, where KEYS and ARGV are set.
    pub real: Table,
    /// The names `KEYS` and `ARGV` as Lua strings, made once: a `&str` key is made into one
    /// (hashed, found among Lua's strings) at every use.
    pub keys_name: LuaString,
    pub args_name: LuaString,
    /// The tables `KEYS` and `ARGV` (globals in `real`), empty between runs and kept from run
    /// to run while scripts leave them as they were filled (see [`Vm::reset_arguments`]).
    pub keys: Table,
    pub args: Table,
    /// What scripts see as their globals.
    pub env: Table,
    /// Lua's `xpcall`, called from Rust with the error handler: no Lua instruction runs after
    /// the script's last (a stopped script's hook fails at every one).
    pub xpcall: Function,
    /// Redis's error handler.
    pub handler: Function,
    /// Compiled scripts, with their shebang's flags.
    pub functions: HashMap<Sha, (Function, ScriptFlags), ahash::RandomState>,
    /// The cache generation `functions` belong to.
    pub generation: u64,
    /// The memory last reported to the cache (INFO's `used_memory_lua`).
    pub reported_memory: u64,
}

impl Vm {
    /// A new interpreter with the sandbox; `redis.REDIS_VERSION` is `redis_version`.
    pub fn new(redis_version: &str) -> mlua::Result<Vm> {
        let lua = Lua::new_with(
            StdLib::STRING | StdLib::TABLE | StdLib::MATH,
            LuaOptions::default(),
        )?;
        lua.set_memory_limit(LUA_MEMORY_LIMIT)?;
        let globals = lua.globals();
        let real = lua.create_table()?;
        for name in BASE {
            let value: Value = globals.raw_get(*name)?;
            real.raw_set(*name, value)?;
        }
        let redis = super::call::redis_table(&lua, redis_version)?;
        real.raw_set("redis", redis)?;
        register_modules(&lua, &real)?;
        let handler = lua.create_function(error_handler)?;
        let error_message = lua.create_function(super::call::error_message)?;
        let gc_stopped = lua.create_function(|lua, ()| {
            if let Some(mut current) = lua.app_data_mut::<super::call::Current>() {
                current.gc_stopped = true;
            }
            Ok(())
        })?;
        let env: Table = lua.load(SANDBOX).set_name("=sandbox").call((
            real.clone(),
            error_message,
            gc_stopped,
        ))?;
        let xpcall: Function = globals.raw_get("xpcall")?;
        lua.set_app_data(Hooked::default());
        lua.set_app_data(super::call::Current::default());
        super::call::install_hook(&lua, super::call::TICK_INSTRUCTIONS)?;
        let keys_name = lua.create_string("KEYS")?;
        let args_name = lua.create_string("ARGV")?;
        let keys = lua.create_table()?;
        let args = lua.create_table()?;
        real.raw_set(&keys_name, &keys)?;
        real.raw_set(&args_name, &args)?;
        Ok(Vm {
            lua,
            real,
            keys_name,
            args_name,
            keys,
            args,
            env,
            xpcall,
            handler,
            functions: HashMap::default(),
            generation: 0,
            reported_memory: 0,
        })
    }

    /// Empties KEYS and ARGV after a run that filled them with `keys` and `args` items, for
    /// the next. A table the script changed beyond its items (a key added, a metatable set) is
    /// replaced by a new one, so that nothing a script does reaches the next; so are both once
    /// the interpreter uses more than half its limit, as a script may have grown one and
    /// emptied it again (Lua never shrinks a table's parts). Its limit lifted (see
    /// [`Unlimited`]).
    pub fn reset_arguments(&mut self, keys: usize, args: usize) -> mlua::Result<()> {
        let _unlimited = Unlimited::new(&self.lua);
        let large = self.lua.used_memory() > LUA_MEMORY_LIMIT / 2;
        for (table, name, len) in [
            (&mut self.keys, &self.keys_name, keys),
            (&mut self.args, &self.args_name, args),
        ] {
            for i in 1..=len {
                table.raw_set(i, Value::Nil)?;
            }
            if large || table.metatable().is_some() || !table.is_empty() {
                *table = self.lua.create_table()?;
                self.real.raw_set(name, &*table)?;
            }
        }
        Ok(())
    }

    /// Compiles `body` as a script, after its `#!lua` line if it has one (kept as an empty
    /// line, so that line numbers are the user's, as Redis does). The error is the reply.
    pub fn compile(&self, body: &[u8]) -> Result<(Function, ScriptFlags), Frame> {
        let (skip, flags) = shebang(body)?;
        let function = self
            .lua
            .load(body.get(skip..).unwrap_or_default())
            .set_name("@user_script")
            .set_environment(self.env.clone())
            .into_function()
            .map_err(|e| compile_error(&e))?;
        Ok((function, flags))
    }
}

/// Registers the `cjson` and `bit` modules into the scripts' globals (`real`): each is a
/// `register(lua, globals)` that sets its table there. The sandbox then makes them read-only
/// like the other libraries. This is the one place they plug in.
fn register_modules(lua: &Lua, real: &Table) -> mlua::Result<()> {
    super::cjson::register(lua, real)?;
    super::bit::register(lua, real)
}

/// Redis's `__redis__err__handler`: turns any error into a table `{err=...}` and records where
/// in the script it was raised (`source`, `line`), skipping C functions and the sandbox's own
/// wrappers (`redis.call`).
fn error_handler(lua: &Lua, err: Value) -> mlua::Result<Table> {
    let table = match err {
        Value::Table(table) => table,
        Value::Error(e) if e.downcast_ref::<super::call::ScriptError>().is_some() => {
            let table = lua.create_table()?;
            if let Some(super::call::ScriptError(message)) = e.downcast_ref() {
                table.raw_set("err", lua.create_string(message)?)?;
            }
            table
        }
        other => {
            let message = match &other {
                Value::String(s) => s.as_bytes().to_vec(),
                other => other.to_string()?.into_bytes(),
            };
            let table = lua.create_table()?;
            let mut text = b"ERR ".to_vec();
            text.extend_from_slice(&message);
            table.raw_set("err", lua.create_string(&text)?)?;
            table
        }
    };
    for level in 1..8 {
        let found = lua.inspect_stack(level, |debug| {
            let source = debug.source();
            let user = source.source.as_deref() == Some("@user_script");
            user.then(|| debug.current_line())
        });
        match found {
            None => break,
            Some(None) => continue,
            Some(Some(line)) => {
                table.raw_set("source", "@user_script")?;
                if let Some(line) = line {
                    table.raw_set("line", line)?;
                }
                break;
            }
        }
    }
    Ok(table)
}

/// A script's `#!lua flags=...` (Redis 7); a script without a shebang runs in Redis's
/// compatibility mode (`compat`), where each command is checked on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ScriptFlags {
    /// No shebang.
    pub compat: bool,
    /// `no-writes`: the script may only read.
    pub no_writes: bool,
    /// `allow-oom`: the script may run, and add data, over `maxmemory`.
    pub allow_oom: bool,
}

/// The shebang's length (up to its line feed) and flags, with Redis's errors
/// (`evalExtractShebangFlags`).
fn shebang(body: &[u8]) -> Result<(usize, ScriptFlags), Frame> {
    if !body.starts_with(b"#!") {
        return Ok((
            0,
            ScriptFlags {
                compat: true,
                ..ScriptFlags::default()
            },
        ));
    }
    let Some(end) = body.iter().position(|b| *b == b'\n') else {
        return Err(Frame::error("ERR Invalid script shebang"));
    };
    let line = String::from_utf8_lossy(&body[..end]);
    let mut parts = line.split_ascii_whitespace();
    match parts.next() {
        None => return Err(Frame::error("ERR Invalid engine in script shebang")),
        Some("#!lua") => {}
        Some(engine) => {
            return Err(Frame::error(format!(
                "ERR Unexpected engine in script shebang: {engine}"
            )))
        }
    }
    let mut flags = ScriptFlags::default();
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(Frame::error(format!(
                "ERR Unknown lua shebang option: {part}"
            )));
        };
        for flag in list.split(',') {
            match flag {
                "no-writes" => flags.no_writes = true,
                "allow-oom" => flags.allow_oom = true,
                // Replicas and cluster: nothing to allow in sessiond.
                "allow-stale" | "no-cluster" | "allow-cross-slot-keys" => {}
                other => {
                    return Err(Frame::error(format!(
                        "ERR Unexpected flag in script shebang: {other}"
                    )))
                }
            }
        }
    }
    Ok((end, flags))
}

/// Redis's reply to a script that does not compile.
fn compile_error(error: &mlua::Error) -> Frame {
    let message = match error {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    };
    Frame::error(format!(
        "ERR Error compiling script (new function): {}",
        message.replace(['\r', '\n'], " ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shebang_gives_redis_s_flags_and_errors() {
        let flags = |body: &str| shebang(body.as_bytes()).map(|(_, f)| f);
        assert!(flags("return 1").unwrap().compat);
        let f = flags("#!lua flags=no-writes,allow-oom\nreturn 1").unwrap();
        assert!(!f.compat && f.no_writes && f.allow_oom);
        assert_eq!(shebang(b"#!lua\nreturn 1").unwrap().0, 5);
        let error = |body: &str| match shebang(body.as_bytes()) {
            Err(Frame::Error(e)) => String::from_utf8_lossy(&e).into_owned(),
            other => panic!("{other:?}"),
        };
        assert_eq!(error("#!lua"), "ERR Invalid script shebang");
        assert_eq!(
            error("#!python\n"),
            "ERR Unexpected engine in script shebang: #!python"
        );
        assert_eq!(
            error("#!lua flags=x\n"),
            "ERR Unexpected flag in script shebang: x"
        );
        assert_eq!(
            error("#!lua name=x\n"),
            "ERR Unknown lua shebang option: name=x"
        );
    }
}
