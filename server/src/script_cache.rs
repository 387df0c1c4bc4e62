//! The Lua scripts cache every thread shares (EVAL, EVALSHA, SCRIPT LOAD): SHA-1 to source,
//! in a sharded map, so that EVALSHA takes no global lock. SCRIPT LOAD'ed scripts stay; at most
//! [`EVAL_SCRIPTS_KEPT`] scripts only EVAL'ed are kept, the oldest evicted first, as Redis 7.4
//! does. SCRIPT FLUSH empties it and moves a generation counter that each thread's interpreter
//! ([`crate::script`]) compares before it runs. It sits below the shared state, which holds it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dashmap::DashMap;
use sha1::{Digest, Sha1};

/// How many scripts only EVAL'ed (never SCRIPT LOAD'ed) the cache keeps, as Redis 7.4.
pub const EVAL_SCRIPTS_KEPT: usize = 500;

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
    /// The memory of every thread's interpreter, as each last reported it.
    lua_memory: AtomicU64,
}

impl Scripts {
    /// Caches `body` under `sha` (SCRIPT LOAD when `loaded`, else EVAL).
    pub fn add(&self, sha: Sha, body: Bytes, loaded: bool) {
        // One insertion even when two threads bring the same new script at once, so that it
        // is queued for eviction once. The entry's guard goes before the queue's lock (FLUSH
        // takes the queue, then the map).
        match self.by_sha.entry(sha) {
            dashmap::Entry::Occupied(cached) => {
                if loaded {
                    cached.get().loaded.store(true, Ordering::Relaxed);
                }
                return;
            }
            dashmap::Entry::Vacant(slot) => {
                slot.insert(Arc::new(Cached {
                    body,
                    loaded: AtomicBool::new(loaded),
                    holds_all: AtomicBool::new(false),
                }));
            }
        }
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

    /// What the interpreters use, bytes (INFO's `used_memory_lua`).
    pub fn lua_memory(&self) -> u64 {
        self.lua_memory.load(Ordering::Relaxed)
    }

    /// An interpreter's memory went from `before` to `after` bytes.
    pub fn lua_memory_moved(&self, before: u64, after: u64) {
        if after >= before {
            self.lua_memory.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.lua_memory.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    /// The count of flushes so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the script `sha` must run holding every shard.
    pub(crate) fn holds_all(&self, sha: &Sha) -> bool {
        self.by_sha
            .get(sha)
            .is_some_and(|cached| cached.holds_all.load(Ordering::Relaxed))
    }

    /// Remembers that the script `sha` touches keys it does not declare.
    pub(crate) fn set_holds_all(&self, sha: &Sha) {
        if let Some(cached) = self.by_sha.get(sha) {
            cached.holds_all.store(true, Ordering::Relaxed);
        }
    }
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
