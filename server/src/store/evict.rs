//! `--maxmemory`: making room by evicting keys under the configured policy.
//!
//! As in Redis, LRU is approximate: each eviction samples a few keys from random shards (at a
//! random position inside each) and removes the best candidate among them — the least recently
//! used, or for `volatile-ttl` the one whose deadline is nearest. Keys already past their
//! deadline are always the first choice. An evicted key goes through the same bookkeeping as a
//! deleted one (journal, expiry index, per-user session index), and is counted in
//! `evicted_keys`.

use std::cell::Cell;

use super::{Before, Node, Removal, Store};

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

    /// How good a candidate `node` is (lower is evicted first), `None` if the policy may not
    /// evict it.
    fn score(self, node: &Node, now_ms: u64) -> Option<u64> {
        if node.is_expired(now_ms) {
            return Some(0);
        }
        let volatile = node.expires_at_ms() != 0;
        match self {
            Policy::NoEviction => None,
            Policy::VolatileTtl => volatile.then_some(node.expires_at_ms()),
            Policy::VolatileLru => volatile.then(|| u64::from(node.last_use().get())),
            Policy::AllKeysLru => Some(u64::from(node.last_use().get())),
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
        let mut best: Option<(u64, Vec<u8>)> = None;
        let mut sampled = 0;
        let shards = self.map.shard_count();
        let first = random() as usize % shards;
        for offset in 0..shards {
            let shard = self.map.read((first + offset) % shards);
            if shard.is_empty() {
                continue;
            }
            // Buckets from a random one on, wrapping, until PER_SHARD candidates are taken or
            // every bucket was seen.
            let buckets = shard.num_buckets();
            let start = random() as usize % buckets;
            let mut taken = 0;
            for bucket in (start..buckets).chain(0..start) {
                let Some(node) = shard.get_bucket(bucket) else {
                    continue;
                };
                let Some(score) = policy.score(node, now_ms) else {
                    continue;
                };
                if best.as_ref().is_none_or(|(b, _)| score < *b) {
                    best = Some((score, node.key().to_vec()));
                }
                sampled += 1;
                taken += 1;
                if taken == PER_SHARD {
                    break;
                }
            }
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
        let removed = self.remove_if(&key, &rec, |node| policy.score(node, now_ms).is_some());
        if let Some(node) = removed {
            let why = if node.is_expired(now_ms) {
                Removal::Expired
            } else {
                Removal::Evicted
            };
            self.after_remove(&node, Before::of(&node), why);
        }
        // A key that vanished or changed between the sample and the removal: sample again.
        true
    }
}
