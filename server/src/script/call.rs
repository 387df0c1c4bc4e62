//! The `redis` library scripts see: `redis.call`/`redis.pcall`'s Rust side, which runs a
//! command through the server's own dispatch as the calling client, and the helpers
//! (`sha1hex`, `log`, `error_reply`, `status_reply`, `setresp`, `set_repl`...).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use mlua::{HookTriggers, Lua, MultiValue, Table, Value, VmState};
use sessiond_protocol::cmd::{position, CommandFlags, CommandSpec, COMMANDS};
use sessiond_protocol::{Command, Frame, FrameDecoder, Limits, ProtocolVersion};

use super::convert;
use super::memory::Unlimited;
use super::{Host, ScriptConn};
use super::{Interrupt, Watchdog};
use crate::auth::{Denied, User};
use crate::clients::ClientState;
use crate::shared::Shared;
use crate::store::Store;

/// The interpreter's app data for `redis.call`, set once when it is built so that a run
/// allocates none: the running script's context, and a buffer kept from run to run.
#[derive(Default)]
pub(super) struct Current {
    pub running: Option<Running>,
    /// Replies that GET and MGET encode themselves are written here, then decoded.
    pub scratch: BytesMut,
    /// A script stopped the collector (`collectgarbage('stop')`).
    pub gc_stopped: bool,
}

/// The most a scratch buffer keeps between runs; a larger one (a GET of a large value) is
/// dropped.
pub(super) const SCRATCH_KEPT: usize = 64 * 1024;

/// The running script's context.
pub(super) struct Running {
    pub shared: Arc<Shared>,
    /// The database it runs in (resolved once: a SWAPDB waits for the script's shards), and
    /// its index.
    pub store: Arc<Store>,
    pub db: usize,
    /// Its commands run as the caller: its registry entry and user.
    pub client: Arc<ClientState>,
    pub user: Option<Arc<User>>,
    /// The protocol its commands answer in (`redis.setresp`).
    pub version: ProtocolVersion,
    /// How they run: the server's dispatch.
    pub host: Host,
    /// The time every command of the script sees (Redis freezes it for a script).
    pub now_ms: u64,
    pub read_only: bool,
    /// Write commands are refused with OOM (the server was over `maxmemory` at the start).
    pub oom: bool,
    /// A write command ran.
    pub wrote: bool,
    pub watchdog: Arc<dyn Watchdog + Send + Sync>,
}

/// Redis's error table `{err=...}` for a message in Redis's `luaPushError` form: a leading
/// `-CODE ` is kept as the code, anything else gets `ERR`.
pub(super) fn error_table(lua: &Lua, message: &[u8]) -> mlua::Result<Table> {
    let text = error_text(message);
    let table = lua.create_table()?;
    table.raw_set("err", lua.create_string(&text)?)?;
    Ok(table)
}

fn error_text(message: &[u8]) -> Vec<u8> {
    let trimmed = |m: &[u8]| -> Vec<u8> {
        let end = m
            .iter()
            .rposition(|b| *b != b'\r' && *b != b'\n')
            .map_or(0, |i| i + 1);
        m[..end].to_vec()
    };
    if let Some(rest) = message.strip_prefix(b"-") {
        if rest.contains(&b' ') {
            return trimmed(rest);
        }
        let mut text = b"ERR ".to_vec();
        text.extend_from_slice(&trimmed(rest));
        return text;
    }
    let mut text = b"ERR ".to_vec();
    text.extend_from_slice(&trimmed(message));
    text
}

/// What the hook reads: the running script's watchdog, and why it was stopped.
#[derive(Default)]
pub(super) struct Hooked {
    pub watchdog: Option<Arc<dyn Watchdog + Send + Sync>>,
    /// Set once the script must stop; the hook then fails at every tick, so that a `pcall`
    /// cannot catch its way past it.
    pub stop: Option<Stop>,
}

/// Why a running script stops before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The watchdog interrupted it.
    Interrupted(Interrupt),
    /// It touched a shard its block does not hold, before writing: it runs again holding all.
    Restart,
}

/// How many VM instructions run between two calls of the watchdog's `tick`.
pub(super) const TICK_INSTRUCTIONS: u32 = 1000;

/// Sets the count hook to run every `every` instructions. Once a script must stop it runs at
/// every instruction: its error then comes at the first instruction outside any `pcall` the
/// script wraps its loops in, so the script cannot catch its way past it (Redis hooks every
/// line for the same reason). The runner sets it back afterwards.
pub(super) fn install_hook(lua: &Lua, every: u32) -> mlua::Result<()> {
    lua.set_hook(HookTriggers::new().every_nth_instruction(every), hook)
}

fn hook(lua: &Lua, _debug: &mlua::debug::Debug<'_>) -> mlua::Result<VmState> {
    let (stopped, newly) = {
        let Some(mut hooked) = lua.app_data_mut::<Hooked>() else {
            return Ok(VmState::Continue);
        };
        let before = hooked.stop.is_some();
        if !before {
            if let Some(watchdog) = &hooked.watchdog {
                match watchdog.tick() {
                    Ok(()) => {}
                    // Too late to run it elsewhere once it has written: it goes on.
                    Err(Interrupt::Offload) if wrote(lua) => {}
                    Err(interrupt) => hooked.stop = Some(Stop::Interrupted(interrupt)),
                }
            }
        }
        (hooked.stop.is_some(), !before && hooked.stop.is_some())
    };
    if newly {
        install_hook(lua, 1)?;
    }
    if stopped {
        Err(mlua::Error::runtime("script stopped"))
    } else {
        Ok(VmState::Continue)
    }
}

/// Whether the running script has run a write command.
fn wrote(lua: &Lua) -> bool {
    lua.app_data_ref::<Current>()
        .is_some_and(|current| current.running.as_ref().is_some_and(|r| r.wrote))
}

/// An error `redis.call` raises: the command's error line (Redis raises its `{err=...}` table;
/// here the error handler and Lua's `pcall` turn this back into one).
#[derive(Debug)]
pub(super) struct ScriptError(pub Vec<u8>);

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl std::error::Error for ScriptError {}

/// `redis.call`: the command's reply, its error raised. A Rust (C) function, as Redis's: a
/// script's `return redis.call(...)` is then no Lua tail call, so the error handler still
/// finds the script's line.
pub(super) fn call(lua: &Lua, args: MultiValue) -> mlua::Result<Value> {
    let (reply, failed) = raw_call(lua, args)?;
    if !failed {
        return Ok(reply);
    }
    let message = match &reply {
        Value::Table(t) => match t.raw_get::<Value>("err")? {
            Value::String(s) => s.as_bytes().to_vec(),
            _ => b"ERR unknown error".to_vec(),
        },
        _ => b"ERR unknown error".to_vec(),
    };
    Err(mlua::Error::external(ScriptError(message)))
}

/// `redis.pcall`: the command's reply, an error as its `{err=...}` table.
pub(super) fn pcall(lua: &Lua, args: MultiValue) -> mlua::Result<Value> {
    raw_call(lua, args).map(|(reply, _)| reply)
}

/// The message of an error value as Lua's `pcall` returns it in Redis 7: a `redis.call` error
/// or an error table gives its `err` string; anything else is returned as it is.
pub(super) fn error_message(lua: &Lua, error: Value) -> mlua::Result<Value> {
    match &error {
        Value::Error(e) => match e.downcast_ref::<ScriptError>() {
            Some(ScriptError(message)) => Ok(Value::String(lua.create_string(message)?)),
            None => Ok(Value::String(lua.create_string(e.to_string())?)),
        },
        Value::Table(t) => match t.raw_get::<Value>("err")? {
            message @ Value::String(_) => Ok(message),
            _ => Ok(error),
        },
        _ => Ok(error),
    }
}

/// `redis.call`'s and `redis.pcall`'s Rust side: runs the command, answers its reply converted
/// to Lua and whether it is an error (which `redis.call` raises).
fn raw_call(lua: &Lua, args: MultiValue) -> mlua::Result<(Value, bool)> {
    // Lifted until the reply is a Lua value; set again before the script goes on.
    let _unlimited = Unlimited::new(lua);
    if lua
        .app_data_ref::<Hooked>()
        .is_some_and(|h| h.stop.is_some())
    {
        return Err(mlua::Error::runtime("script stopped"));
    }
    let Some(mut current) = lua.app_data_mut::<Current>() else {
        return Err(mlua::Error::runtime("redis.call outside a script"));
    };
    let Current {
        running, scratch, ..
    } = &mut *current;
    let Some(running) = running.as_mut() else {
        return Err(mlua::Error::runtime("redis.call outside a script"));
    };
    let failed = |message: &str| -> mlua::Result<(Value, bool)> {
        Ok((Value::Table(error_table(lua, message.as_bytes())?), true))
    };
    if args.is_empty() {
        return failed("Please specify at least one argument for this redis lib call");
    }
    let invalid = "Lua redis lib command arguments must be strings or integers";
    // The name is found where it lies in Lua, then stands in `argv` as the table's own
    // (static) name: one copy fewer per call. Its place is kept until then.
    let mut argv = Vec::with_capacity(args.len());
    argv.push(Bytes::new());
    for value in args.iter().skip(1) {
        match convert::argument(value) {
            Some(arg) => argv.push(arg),
            None => return failed(invalid),
        }
    }
    let index = match args.front() {
        Some(Value::String(name)) => position(&name.as_bytes()),
        Some(other) => match convert::argument(other) {
            Some(name) => position(&name),
            None => return failed(invalid),
        },
        None => None,
    };
    let Some(spec) = index.and_then(|i| COMMANDS.get(i)) else {
        return failed("Unknown Redis command called from script");
    };
    if let Some(name) = argv.first_mut() {
        *name = Bytes::from_static(spec.name.as_bytes());
    }
    let count = argv.len() as i64;
    let arity = i64::from(spec.arity);
    if (arity > 0 && count != arity) || (arity < 0 && count < -arity) {
        return failed("Wrong number of args calling Redis command from script");
    }
    // SCRIPT's subcommands are `noscript` in Redis but HELP; the container has no flags.
    let script_sub = spec.name == "script"
        && !argv
            .get(1)
            .is_some_and(|sub| sub.eq_ignore_ascii_case(b"help"));
    if script_sub
        || spec
            .flags
            .intersects(CommandFlags::NOSCRIPT.with(CommandFlags::NO_MULTI))
    {
        return failed("This Redis command is not allowed from script");
    }
    // A script's block holds shards of its own database only; these reach others.
    if matches!(
        spec.name,
        "select" | "move" | "swapdb" | "flushall" | "info"
    ) {
        return failed(
            "This command is not allowed from script in sessiond: a script holds its own \
             database only (SELECT, MOVE, SWAPDB, FLUSHALL and INFO reach others)",
        );
    }
    if let Some(user) = &running.user {
        if !user.unrestricted() {
            if let Err(denied) = user.permit(spec, &argv) {
                let message = match denied {
                    Denied::Command => format!(
                        "ACL failure in script: User {} has no permissions to run the '{}' \
                         command",
                        user.name, spec.name
                    ),
                    Denied::Key => "ACL failure in script: No permissions to access a key".into(),
                    Denied::Channel => {
                        "ACL failure in script: No permissions to access a channel".into()
                    }
                };
                return failed(&message);
            }
        }
    }
    let writes = spec.flags.contains(CommandFlags::WRITE);
    if writes && running.read_only {
        return failed("Write commands are not allowed from read-only scripts.");
    }
    if writes && running.shared.repl.gate() == crate::role::Gate::ReadOnly {
        // As Redis: a script on a read-only replica may read, never write.
        return failed(&format!("-{}", crate::role::READONLY));
    }
    if running.oom && spec.flags.contains(CommandFlags::DENYOOM) {
        return failed("-OOM command not allowed when used memory > 'maxmemory'.");
    }
    // The block must hold every shard the command touches (see `runner.rs`).
    let store = &running.store;
    let mut missing = false;
    let mut touched = true;
    match key_shards(store, spec, &argv) {
        Shards::None => {}
        Shards::Some(shards) => {
            for shard in shards {
                if store.block_holds(shard) == Some(false) {
                    missing = true;
                    touched &= running.wrote && store.block_try_hold(shard);
                }
            }
        }
        Shards::All => {
            for shard in 0..crate::store::SHARDS {
                if store.block_holds(shard) == Some(false) {
                    missing = true;
                    touched &= running.wrote && store.block_try_hold(shard);
                }
            }
        }
    }
    if missing {
        if !running.wrote {
            drop(current);
            if let Some(mut hooked) = lua.app_data_mut::<Hooked>() {
                hooked.stop = Some(Stop::Restart);
            }
            install_hook(lua, 1)?;
            return Err(mlua::Error::runtime("script restarts holding every shard"));
        }
        // What the block holds now (a rare path: it may take a walk over the shards).
        let held: Vec<usize> = (0..crate::store::SHARDS)
            .filter(|&shard| store.block_holds(shard) == Some(true))
            .collect();
        if held.len() == crate::store::SHARDS {
            running.watchdog.holding(None);
        } else {
            running.watchdog.holding(Some(&held));
        }
        if !touched {
            return failed(
                "Script attempted to access a key it did not declare while another client \
                 held it, after it had written; declare every key the script uses in KEYS",
            );
        }
    }
    if writes && !running.wrote {
        if let Err(interrupt) = running.watchdog.wrote() {
            // Killed before its first write: it stops, and the write does not run.
            drop(current);
            if let Some(mut hooked) = lua.app_data_mut::<Hooked>() {
                hooked.stop = Some(Stop::Interrupted(interrupt));
            }
            install_hook(lua, 1)?;
            return Err(mlua::Error::runtime("script stopped"));
        }
        running.wrote = true;
    }
    let frame = match Command::parse_indexed(argv).1 {
        Err(e) => Frame::Error(Bytes::from(e.to_string())),
        Ok(command) => {
            scratch.clear();
            let mut conn = ScriptConn {
                shared: &running.shared,
                store: &running.store,
                db: running.db,
                client: &running.client,
                user: running.user.as_ref(),
                version: running.version,
                now_ms: running.now_ms,
                out: scratch,
            };
            match (running.host.dispatch)(&mut conn, command) {
                Some(frame) => frame,
                None => decode(scratch),
            }
        }
    };
    let is_error = matches!(frame, Frame::Error(_));
    let resp3 = running.version == ProtocolVersion::Resp3;
    let value = convert::reply_to_lua(lua, frame, resp3)?;
    Ok((value, is_error))
}

/// A reply a command encoded into `scratch` itself (GET, MGET), as a frame.
fn decode(scratch: &mut BytesMut) -> Frame {
    let limits = Limits {
        max_bulk_len: usize::MAX,
        max_args: usize::MAX,
        max_query_buffer: usize::MAX,
        ..Limits::default()
    };
    match FrameDecoder::new(limits).decode(scratch) {
        Ok(Some(frame)) => frame,
        _ => Frame::error("ERR the command's reply could not be read"),
    }
}

/// The shards a command touches.
enum Shards {
    /// None (PING, ECHO...).
    None,
    /// Those of its declared keys.
    Some(Vec<usize>),
    /// Every one: it touches the keyspace without declaring keys (KEYS, SCAN, FLUSHALL...).
    All,
}

/// The shards `spec` with `args` touches, by the rule EXEC follows (see `cmd/multi.rs`).
fn key_shards(store: &crate::store::Store, spec: &CommandSpec, args: &[Bytes]) -> Shards {
    if spec.touches_no_key() {
        return Shards::None;
    }
    if spec.first_key <= 0 {
        return Shards::All;
    }
    Shards::Some(
        spec.key_args(args)
            .map(|key| store.shard_of_key(key))
            .collect(),
    )
}

/// The one argument of a call that takes one.
fn only(args: &MultiValue) -> Option<&Value> {
    if args.len() == 1 {
        args.front()
    } else {
        None
    }
}

/// The `redis` table, before the sandbox makes it read-only.
pub(super) fn redis_table(lua: &Lua, redis_version: &str) -> mlua::Result<Table> {
    let redis = lua.create_table()?;
    redis.raw_set("call", lua.create_function(call)?)?;
    redis.raw_set("pcall", lua.create_function(pcall)?)?;
    redis.raw_set(
        "sha1hex",
        lua.create_function(|lua, args: MultiValue| {
            let Some(Value::String(s)) = only(&args) else {
                return Err(mlua::Error::runtime("wrong number of arguments"));
            };
            lua.create_string(super::sha1_hex(&s.as_bytes()))
        })?,
    )?;
    redis.raw_set(
        "error_reply",
        lua.create_function(|lua, args: MultiValue| match only(&args) {
            Some(Value::String(s)) => {
                let bytes = s.as_bytes();
                let mut dashed = Vec::with_capacity(bytes.len() + 1);
                if !bytes.starts_with(b"-") {
                    dashed.push(b'-');
                }
                dashed.extend_from_slice(&bytes);
                error_table(lua, &dashed)
            }
            _ => error_table(lua, b"wrong number or type of arguments"),
        })?,
    )?;
    redis.raw_set(
        "status_reply",
        lua.create_function(|lua, args: MultiValue| match only(&args) {
            Some(Value::String(s)) => {
                let table = lua.create_table()?;
                table.raw_set("ok", s.clone())?;
                Ok(table)
            }
            _ => error_table(lua, b"wrong number or type of arguments"),
        })?,
    )?;
    redis.raw_set(
        "log",
        lua.create_function(|_, args: MultiValue| {
            if args.len() < 2 {
                return Err(mlua::Error::runtime(
                    "redis.log() requires two arguments or more.",
                ));
            }
            let mut items = args.iter();
            let Some(level) = items.next().and_then(|l| l.as_integer()) else {
                return Err(mlua::Error::runtime(
                    "First argument must be a number (log level).",
                ));
            };
            let mut message = String::new();
            for item in items {
                if !message.is_empty() {
                    message.push(' ');
                }
                if let Some(bytes) = convert::argument(item) {
                    message.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
            // The script's own text (the application's), not data the server holds.
            match level {
                0 => tracing::debug!(target: "sessiond::script", "{message}"),
                1 => tracing::info!(target: "sessiond::script", "{message}"),
                2 => tracing::info!(target: "sessiond::script", "{message}"),
                3 => tracing::warn!(target: "sessiond::script", "{message}"),
                _ => return Err(mlua::Error::runtime("Invalid debug level.")),
            }
            Ok(())
        })?,
    )?;
    for (name, level) in [
        ("LOG_DEBUG", 0),
        ("LOG_VERBOSE", 1),
        ("LOG_NOTICE", 2),
        ("LOG_WARNING", 3),
    ] {
        redis.raw_set(name, level)?;
    }
    redis.raw_set(
        "setresp",
        lua.create_function(|lua, args: MultiValue| {
            let version = only(&args).and_then(Value::as_integer);
            let version = match version {
                Some(2) => ProtocolVersion::Resp2,
                Some(3) => ProtocolVersion::Resp3,
                _ if args.len() != 1 => {
                    return Err(mlua::Error::runtime(
                        "redis.setresp() requires one argument.",
                    ))
                }
                _ => return Err(mlua::Error::runtime("RESP version must be 2 or 3.")),
            };
            if let Some(running) = lua
                .app_data_mut::<Current>()
                .as_deref_mut()
                .and_then(|current| current.running.as_mut())
            {
                running.version = version;
            }
            Ok(())
        })?,
    )?;
    // No replication yet: every mode is accepted and changes nothing, as Redis 7 (where
    // scripts always replicate their effects).
    redis.raw_set(
        "set_repl",
        lua.create_function(|_, args: MultiValue| match only(&args) {
            Some(value) if value.as_integer().is_some_and(|v| (0..=3).contains(&v)) => Ok(()),
            Some(_) => Err(mlua::Error::runtime(
                "Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
            )),
            _ => Err(mlua::Error::runtime(
                "redis.set_repl() requires one argument.",
            )),
        })?,
    )?;
    redis.raw_set("replicate_commands", lua.create_function(|_, ()| Ok(true))?)?;
    for (name, value) in [
        ("REPL_NONE", 0),
        ("REPL_AOF", 1),
        ("REPL_SLAVE", 2),
        ("REPL_REPLICA", 2),
        ("REPL_ALL", 3),
    ] {
        redis.raw_set(name, value)?;
    }
    redis.raw_set("REDIS_VERSION", redis_version)?;
    let number = redis_version
        .split('.')
        .map(|part| part.parse::<i64>().unwrap_or(0))
        .fold(0, |num, part| (num << 8) | part);
    redis.raw_set("REDIS_VERSION_NUM", number)?;
    redis.raw_set("breakpoint", lua.create_function(|_, ()| Ok(false))?)?;
    redis.raw_set("debug", lua.create_function(|_, _: MultiValue| Ok(()))?)?;
    Ok(redis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_take_redis_s_code_rules() {
        assert_eq!(error_text(b"-WRONGTYPE Operation"), b"WRONGTYPE Operation");
        assert_eq!(error_text(b"-Boom"), b"ERR Boom");
        assert_eq!(error_text(b"plain text\r\n"), b"ERR plain text");
    }
}
