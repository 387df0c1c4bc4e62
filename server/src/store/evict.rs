//! `--maxmemory`: making room by evicting keys under the configured policy.
//!
//! As in Redis, LRU is approximate: each eviction samples a few keys from random shards (at a
//! random position inside each) and removes the best candidate among them — the least recently
//! used, or for `volatile-ttl` the one whose deadline is nearest. Keys already past their
//! deadline are always the first choice. An evicted key goes through the same bookkeeping as a
//! deleted one (journal, expiry index, per-user session index), and is counted in
//! `evicted_keys`.

use std::cell::Cell;

use bytes::Bytes;

use super::{scan, Before, Entry, Removal, Store, SHARDS};

/// What to do when a write would exceed `--maxmemory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Refuse the write with an OOM error (Redis's default).
    #[default]
    NoEviction,
    /// Evict the keys with a deadline whose deadline is nearest.
    VolatileTtl,
    /// Evict the least recently used keys among those with a deadline.
    VolatileLru,
    /// Evict the least recently used keys.
    AllKeysLru,
}

impl Policy {
    /// Every policy, by its redis.conf name.
    pub const ALL: [Policy; 4] = [
        Policy::NoEviction,
        Policy::VolatileTtl,
        Policy::VolatileLru,
        Policy::AllKeysLru,
    ];

    /// The redis.conf name.
    pub fn name(self) -> &'static str {
        match self {
            Policy::NoEviction => "noeviction",
            Policy::VolatileTtl => "volatile-ttl",
            Policy::VolatileLru => "volatile-lru",
            Policy::AllKeysLru => "allkeys-lru",
        }
    }

    /// How good a candidate `entry` is (lower is evicted first), `None` if the policy may not
    /// evict it.
    fn score(self, entry: &Entry, now_ms: u64) -> Option<u64> {
        if entry.is_expired(now_ms) {
            return Some(0);
        }
        let volatile = entry.expires_at_ms != 0;
        match self {
            Policy::NoEviction => None,
            Policy::VolatileTtl => volatile.then_some(entry.expires_at_ms),
            Policy::VolatileLru => volatile.then(|| u64::from(entry.last_use.get())),
            Policy::AllKeysLru => Some(u64::from(entry.last_use.get())),
        }
    }
}

/// Candidates compared per eviction.
const SAMPLES: usize = 16;
/// Candidates taken from one shard, so that a sample spans several.
const PER_SHARD: usize = 4;

thread_local! {
    /// A xorshift generator for sample positions: eviction needs spread, not secrecy.
    static RANDOM: Cell<u64> = Cell::new({
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_usize(&RANDOM as *const _ as usize);
        hasher.finish() | 1
    });
}

fn random() -> u64 {
    RANDOM.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    })
}

impl Store {
    /// Evicts keys under `policy` until `used_memory` is at most `limit`; false when it cannot
    /// (`noeviction`, or no key the policy may evict), and the write must be refused.
    pub fn make_room(&self, limit: u64, policy: Policy, now_ms: u64) -> bool {
        while self.used_memory() > limit {
            if !self.evict_one(policy, now_ms) {
                return false;
            }
        }
        true
    }

    /// Evicts the best of a sample of keys; false if no key may be evicted.
    fn evict_one(&self, policy: Policy, now_ms: u64) -> bool {
        if policy == Policy::NoEviction {
            return false;
        }
        let mut best: Option<(u64, Bytes)> = None;
        let mut sampled = 0;
        let first = random() as usize % SHARDS;
        for offset in 0..SHARDS {
            let shard = (first + offset) % SHARDS;
            let len = scan::shard_len(&self.map, shard);
            if len == 0 {
                continue;
            }
            let skip = random() as usize % len;
            scan::sample_shard(&self.map, shard, skip, PER_SHARD, |key, entry| {
                let Some(score) = policy.score(entry, now_ms) else {
                    return false;
                };
                if best.as_ref().is_none_or(|(b, _)| score < *b) {
                    best = Some((score, key.clone()));
                }
                sampled += 1;
                true
            });
            if sampled >= SAMPLES {
                break;
            }
        }
        let Some((_, key)) = best else {
            return false;
        };
        let rec = self.journal.recording();
        // The sample's lock is gone: the key may have changed since (PERSIST under a volatile
        // policy), so it is judged again under the lock that removes it.
        let removed = self.map.remove_if(&key, |key, entry| {
            let still = policy.score(entry, now_ms).is_some();
            if still {
                self.journal_delete(key, &rec);
            }
            still
        });
        if let Some((key, entry)) = removed {
            let why = if entry.is_expired(now_ms) {
                Removal::Expired
            } else {
                Removal::Evicted
            };
            self.after_remove(&key, &entry, Before::of(&key, &entry), why);
        }
        // A key that vanished or changed between the sample and the removal: sample again.
        true
    }
}
