//! Lua scripting: EVAL, EVALSHA and SCRIPT's cache, the interpreter and its sandbox.
//!
//! - [`Scripts`] (`script_cache.rs`, below the shared state that holds it) is the cache every
//!   thread shares: SHA-1 to source.
//! - Each thread has its own interpreter (`vm.rs`; `mlua::Lua` is not `Send`), built on first
//!   use, which compiles a script the first time that thread runs it and keeps the function.
//! - [`run`] runs one script: in one atomic block of the store over the shards of its declared
//!   keys (`runner.rs`), with `redis.call` going through the server's own dispatch (`call.rs`)
//!   and the conversions of `convert.rs`.
//!
//! The runner reports to a [`Watchdog`] (long scripts: BUSY, SCRIPT KILL); the EVAL handlers
//! pass [`Unwatched`].

pub mod bit;
mod call;
pub mod cjson;
mod convert;
mod lib_errors;
mod memory;
mod runner;
mod vm;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sessiond_protocol::{Command, Frame, ProtocolVersion};

use crate::auth::User;
use crate::clients::ClientState;
use crate::shared::Shared;
use crate::store::Store;

pub use crate::script_cache::{parse_sha, sha1_hex, Scripts, Sha, EVAL_SCRIPTS_KEPT};
pub use runner::{check_compiles, run};

/// The most memory one thread's interpreter may use; a script that needs more fails with an
/// error reply. A constant: with one interpreter per thread, 64 MiB each bounds the total by
/// the thread count.
pub const LUA_MEMORY_LIMIT: usize = 64 * 1024 * 1024;

/// What the runner asks while a script runs.
pub trait Watchdog {
    /// The script is about to run holding `shards` of the map (`None`: every shard); called
    /// again when that changes (restart holding everything, a shard added).
    fn holding(&self, shards: Option<&[usize]>);
    /// Called from a Lua count hook every ~1000 VM instructions. `Err` stops the script.
    fn tick(&self) -> Result<(), Interrupt>;
    /// The script is about to run its first write command; `Err` stops it instead (it was
    /// killed an instant before: the write must not run).
    fn wrote(&self) -> Result<(), Interrupt>;
    /// The script, which wrote nothing, must start over holding every shard: whether it should
    /// rather start over elsewhere (`Ran::Offload`), where waiting for every shard holds up no
    /// other connection (a long script may hold some for seconds).
    fn restart_elsewhere(&self) -> bool {
        false
    }
}

/// Why a [`Watchdog`] stops a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// SCRIPT KILL: the script stops with Redis's error (`ERR Script killed by user with
    /// SCRIPT KILL...`, exact text from Redis 7.0).
    Killed,
    /// It ran long before writing anything: stop it, leave its block, and have the runner
    /// return `Ran::Offload`, so that the caller runs it again from the start elsewhere.
    Offload,
}

/// A [`Watchdog`] that never interrupts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unwatched;

impl Watchdog for Unwatched {
    fn holding(&self, _shards: Option<&[usize]>) {}

    fn tick(&self) -> Result<(), Interrupt> {
        Ok(())
    }

    fn wrote(&self) -> Result<(), Interrupt> {
        Ok(())
    }
}

/// The script to run, owned (`Send + 'static`), so that it can run on any thread.
#[derive(Debug, Clone)]
pub struct ScriptCall {
    /// Its SHA-1.
    pub sha: Sha,
    /// Its source (EVAL); `None` for EVALSHA, which finds it in the cache.
    pub body: Option<Bytes>,
    /// `KEYS`.
    pub keys: Vec<Bytes>,
    /// `ARGV`.
    pub args: Vec<Bytes>,
    /// EVAL_RO / EVALSHA_RO: write commands are refused.
    pub read_only: bool,
}

/// Who runs the script, owned: its commands run as this client, under its user's ACL.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The caller's registry entry (its ID, name).
    pub client: Arc<ClientState>,
    /// Its user; `None` only before authentication, which EVAL is never run in.
    pub user: Option<Arc<User>>,
    /// The protocol version the reply is encoded in (HELLO).
    pub version: ProtocolVersion,
    /// The database (SELECT's index) the script runs in.
    pub db: usize,
    /// How its commands run.
    pub host: Host,
}

/// How a script's commands reach the server, given by the commands' layer (`cmd`), so that
/// this module sits below it: the dispatch of a parsed command as the script's connection,
/// checks done (the runner has checked the command, its ACL and its shards).
#[derive(Debug, Clone, Copy)]
pub struct Host {
    /// Runs `command`; its reply, or `None` when it encoded it into [`ScriptConn::out`]
    /// itself (GET, MGET).
    pub dispatch: fn(&mut ScriptConn<'_>, Command) -> Option<Frame>,
    /// What `redis.REDIS_VERSION` says.
    pub redis_version: &'static str,
}

/// The connection a script's command runs as.
#[derive(Debug)]
pub struct ScriptConn<'a> {
    /// Shared server state.
    pub shared: &'a Arc<Shared>,
    /// The caller's registry entry.
    pub client: &'a Arc<ClientState>,
    /// The caller's user.
    pub user: Option<&'a Arc<User>>,
    /// The database the script runs in, and its index.
    pub store: &'a Arc<Store>,
    /// The database's index (SELECT's).
    pub db: usize,
    /// The script's protocol version (`redis.setresp`).
    pub version: ProtocolVersion,
    /// The time the script runs at (frozen for the whole script, as Redis).
    pub now_ms: u64,
    /// Where GET and MGET encode their reply.
    pub out: &'a mut BytesMut,
}

/// What [`run`] did.
#[derive(Debug)]
pub enum Ran {
    /// The script ran (or failed): its reply.
    Reply(Frame),
    /// The watchdog asked for it to run again from the start elsewhere
    /// ([`Interrupt::Offload`]); it wrote nothing.
    Offload,
}

/// The NOSCRIPT error, as Redis words it.
pub const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

/// Shared handle used by the EVAL handlers (keeps the `Arc<Shared>` signature in one place).
pub fn run_unwatched(shared: &Arc<Shared>, call: &ScriptCall, caller: &Caller) -> Ran {
    let watchdog: Arc<dyn Watchdog + Send + Sync> = UNWATCHED.with(Arc::clone);
    run(shared, call, caller, &watchdog)
}

thread_local! {
    /// One [`Unwatched`] per thread, so that handing it to the runner allocates nothing.
    static UNWATCHED: Arc<dyn Watchdog + Send + Sync> = Arc::new(Unwatched);
}
