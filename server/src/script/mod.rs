//! Lua scripting: EVAL, EVALSHA and SCRIPT's cache, the interpreter and its sandbox.
//!
//! - [`Scripts`] is the cache every thread shares: SHA-1 to source, in a sharded map (no
//!   global lock on the EVALSHA path). SCRIPT LOAD'ed scripts stay; at most
//!   [`EVAL_SCRIPTS_KEPT`] scripts only EVAL'ed are kept, the oldest evicted first, as Redis 7.4
//!   does. SCRIPT FLUSH empties it and moves a generation counter that each interpreter
//!   compares before it runs.
//! - Each thread has its own interpreter (`vm.rs`; `mlua::Lua` is not `Send`), built on first
//!   use, which compiles a script the first time that thread runs it and keeps the function.
//! - [`run`] runs one script: in one atomic block of the store over the shards of its declared
//!   keys (`runner.rs`), with `redis.call` going through the server's own dispatch (`call.rs`)
//!   and the conversions of `convert.rs`.
//!
//! The runner reports to a [`Watchdog`] (long scripts: BUSY, SCRIPT KILL); the EVAL handlers
//! pass [`Unwatched`].

mod call;
mod convert;
mod runner;
mod vm;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dashmap::DashMap;
use sessiond_protocol::{Frame, ProtocolVersion};
use sha1::{Digest, Sha1};

use crate::auth::User;
use crate::clients::ClientState;
use crate::shared::Shared;

pub use runner::{check_compiles, run};

/// How many scripts only EVAL'ed (never SCRIPT LOAD'ed) the cache keeps, as Redis 7.4.
pub const EVAL_SCRIPTS_KEPT: usize = 500;

/// The most memory one thread's interpreter may use; a script that needs more fails with an
/// error reply. A constant: with one interpreter per thread, 64 MiB each bounds the total by
/// the thread count.
pub const LUA_MEMORY_LIMIT: usize = 64 * 1024 * 1024;

/// A script's SHA-1, in lower-case hex, as SCRIPT LOAD answers it.
pub type Sha = [u8; 40];

/// The SHA-1 of `body` in lower-case hex.
pub fn sha1_hex(body: &[u8]) -> Sha {
    let digest = Sha1::digest(body);
    let mut out = [0u8; 40];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, byte) in digest.iter().enumerate() {
        out[2 * i] = HEX[usize::from(byte >> 4)];
        out[2 * i + 1] = HEX[usize::from(byte & 15)];
    }
    out
}

/// `sha` as given by a client (any case), or `None` when it cannot be a SHA-1.
pub fn parse_sha(sha: &[u8]) -> Option<Sha> {
    let mut out: Sha = [0; 40];
    if sha.len() != 40 {
        return None;
    }
    for (o, b) in out.iter_mut().zip(sha) {
        *o = b.to_ascii_lowercase();
    }
    Some(out)
}

/// One cached script.
#[derive(Debug)]
struct Cached {
    body: Bytes,
    /// SCRIPT LOAD'ed: never evicted.
    loaded: AtomicBool,
    /// It touched a key of a shard it did not declare: it runs holding every shard.
    holds_all: AtomicBool,
}

/// The script cache every thread shares.
#[derive(Debug, Default)]
pub struct Scripts {
    by_sha: DashMap<Sha, Arc<Cached>, ahash::RandomState>,
    /// The scripts only EVAL'ed, oldest first (taken only when EVAL brings a new script).
    evaluated: Mutex<VecDeque<Sha>>,
    /// Moved by SCRIPT FLUSH: each interpreter forgets its functions when it sees it change.
    generation: AtomicU64,
}

impl Scripts {
    /// Caches `body` under `sha` (SCRIPT LOAD when `loaded`, else EVAL).
    pub fn add(&self, sha: Sha, body: Bytes, loaded: bool) {
        if let Some(cached) = self.by_sha.get(&sha) {
            if loaded {
                cached.loaded.store(true, Ordering::Relaxed);
            }
            return;
        }
        self.by_sha.insert(
            sha,
            Arc::new(Cached {
                body,
                loaded: AtomicBool::new(loaded),
                holds_all: AtomicBool::new(false),
            }),
        );
        if loaded {
            return;
        }
        let mut evaluated = self.evaluated.lock().unwrap_or_else(|p| p.into_inner());
        evaluated.push_back(sha);
        while evaluated.len() > EVAL_SCRIPTS_KEPT {
            let Some(oldest) = evaluated.pop_front() else {
                break;
            };
            self.by_sha
                .remove_if(&oldest, |_, cached| !cached.loaded.load(Ordering::Relaxed));
        }
    }

    /// The source cached under `sha`.
    pub fn body(&self, sha: &Sha) -> Option<Bytes> {
        self.by_sha.get(sha).map(|cached| cached.body.clone())
    }

    /// Whether `sha` is cached.
    pub fn contains(&self, sha: &Sha) -> bool {
        self.by_sha.contains_key(sha)
    }

    /// How many scripts are cached.
    pub fn len(&self) -> usize {
        self.by_sha.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.by_sha.is_empty()
    }

    /// Empties the cache (SCRIPT FLUSH); every interpreter forgets its functions before its
    /// next script.
    pub fn flush(&self) {
        let mut evaluated = self.evaluated.lock().unwrap_or_else(|p| p.into_inner());
        self.by_sha.clear();
        evaluated.clear();
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The count of flushes so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the script `sha` must run holding every shard.
    fn holds_all(&self, sha: &Sha) -> bool {
        self.by_sha
            .get(sha)
            .is_some_and(|cached| cached.holds_all.load(Ordering::Relaxed))
    }

    /// Remembers that the script `sha` touches keys it does not declare.
    fn set_holds_all(&self, sha: &Sha) {
        if let Some(cached) = self.by_sha.get(sha) {
            cached.holds_all.store(true, Ordering::Relaxed);
        }
    }
}

/// What the runner asks while a script runs.
pub trait Watchdog {
    /// The script is about to run holding `shards` of the map (`None`: every shard); called
    /// again when that changes (restart holding everything, a shard added).
    fn holding(&self, shards: Option<&[usize]>);
    /// Called from a Lua count hook every ~1000 VM instructions. `Err` stops the script.
    fn tick(&self) -> Result<(), Interrupt>;
    /// The script is about to run its first write command.
    fn wrote(&self);
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

    fn wrote(&self) {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_is_lower_case_hex() {
        assert_eq!(
            &sha1_hex(b"return 1"),
            b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
        assert_eq!(
            parse_sha(b"E0E1F9FABFC9D4800C877A703B823AC0578FF8DB"),
            Some(sha1_hex(b"return 1"))
        );
        assert_eq!(parse_sha(b"abc"), None);
    }

    #[test]
    fn the_cache_keeps_at_most_its_bound_of_evaluated_scripts_and_every_loaded_one() {
        let scripts = Scripts::default();
        let loaded = sha1_hex(b"loaded");
        scripts.add(loaded, Bytes::from_static(b"loaded"), true);
        for i in 0..EVAL_SCRIPTS_KEPT + 10 {
            let body = Bytes::from(format!("return {i}"));
            scripts.add(sha1_hex(&body), body, false);
        }
        assert_eq!(scripts.len(), EVAL_SCRIPTS_KEPT + 1);
        assert!(scripts.contains(&loaded));
        assert!(
            !scripts.contains(&sha1_hex(b"return 0")),
            "the oldest went first"
        );
        assert!(scripts.contains(&sha1_hex(b"return 509")));
        let generation = scripts.generation();
        scripts.flush();
        assert!(scripts.is_empty());
        assert_eq!(scripts.generation(), generation + 1);
    }
}
