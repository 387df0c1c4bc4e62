//! `--maxmemory`: making room by evicting keys under the configured policy.
//!
//! As in Redis, LRU is approximate: each eviction samples a few keys and removes the best
//! candidate among them — the least recently used, or for `volatile-ttl` the one whose deadline
//! is nearest. Keys already past their deadline are always the first choice. `allkeys-lru`
//! samples the keyspace (from random shards, at a random position inside each); the volatile
//! policies sample the expiry index, which holds only keys with a deadline (at random positions,
//! or for `volatile-ttl` in each index shard's earliest tick), so that an eviction examines a
//! fixed number of keys however few have a deadline, and none when none has. An evicted key
//! goes through the same bookkeeping as a deleted one (journal, expiry index, per-user session
//! index), and is counted in `evicted_keys`.

use std::cell::Cell;

use super::accounting::{Before, Removal};
use super::entry::Node;
use super::Store;

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

#[cfg(test)]
thread_local! {
    /// Keys (or table buckets, or index positions) examined by evictions on this thread, so
    /// that tests can bound the work of one.
    static PROBES: Cell<usize> = const { Cell::new(0) };
}

/// Counts one key, bucket or position examined (tests only).
#[inline]
fn probed() {
    #[cfg(test)]
    PROBES.with(|probes| probes.set(probes.get() + 1));
}

/// A number from this thread's xorshift generator: spread, not secrecy (eviction samples, SPOP
/// and SRANDMEMBER picks).
pub(crate) fn random() -> u64 {
    RANDOM.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    })
}

/// A number in `0..n` (`n` > 0) from [`random`], by multiplication rather than a modulo, so
/// no remainder favours the low numbers beyond one part in 2^64 / n.
pub(crate) fn random_below(n: u64) -> u64 {
    ((u128::from(random()) * u128::from(n)) >> 64) as u64
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
        let Some((_, key)) = self.eviction_sample(policy, now_ms) else {
            return false;
        };
        self.evict(&key, policy, now_ms);
        true
    }

    /// The best candidate (score, key) of a sample of the keys `policy` may evict: the lowest
    /// score is evicted first, and scores compare across the databases of a server.
    pub(super) fn eviction_sample(&self, policy: Policy, now_ms: u64) -> Option<(u64, Vec<u8>)> {
        match policy {
            Policy::NoEviction => None,
            Policy::AllKeysLru if self.keys.sum() as i64 <= 0 => None,
            Policy::AllKeysLru => self.sample_keyspace(policy, now_ms),
            Policy::VolatileTtl | Policy::VolatileLru => self.sample_volatile(policy, now_ms),
        }
    }

    /// Evicts `key`, a sample's best, if `policy` still may (see [`Store::eviction_sample`]).
    pub(super) fn evict(&self, key: &[u8], policy: Policy, now_ms: u64) {
        let rec = self.journal.recording();
        // The sample's lock is gone: the key may have changed since (PERSIST under a volatile
        // policy), so it is judged again under the lock that removes it.
        let removed = self.remove_if(key, &rec, |node| {
            policy.score(node, now_ms)?;
            Some(if node.is_expired(now_ms) {
                Removal::Expired
            } else {
                Removal::Evicted
            })
        });
        if let Some((node, why)) = removed {
            self.after_remove(&node, Before::of(&node), why);
        }
        // A key that vanished or changed between the sample and the removal: the caller
        // samples again.
    }

    /// The best candidate (score, key) among keys with a deadline, sampled from the expiry
    /// index rather than the keyspace: however few keys have a deadline, a sample examines at
    /// most [`SAMPLES`] positions (twice when the first finds only stale ones), where walking the
    /// table for eligible keys examined all of it when none had one.
    fn sample_volatile(&self, policy: Policy, now_ms: u64) -> Option<(u64, Vec<u8>)> {
        if self.volatile_len() == 0 {
            return None;
        }
        let earliest = policy == Policy::VolatileTtl;
        let best_of = |hashes: Vec<u64>| {
            hashes
                .into_iter()
                .filter_map(|hash| self.candidate(hash, policy, now_ms))
                .min_by_key(|(score, _)| *score)
        };
        best_of(self.index.sample(SAMPLES, earliest, random)).or_else(|| {
            // Every position sampled was stale (keys deleted, or queued at an earlier tick
            // since). Drop the stale ones, O(the index), which its bound keeps within a
            // constant of the keys with a deadline, and sample once more.
            self.compact_index();
            best_of(self.index.sample(SAMPLES, earliest, random))
        })
    }

    /// The key of hash `hash`, if there is one the policy may evict, with its score.
    fn candidate(&self, hash: u64, policy: Policy, now_ms: u64) -> Option<(u64, Vec<u8>)> {
        probed();
        let shard_index = self.map.shard_of(hash);
        if self.long_blocks.holds(shard_index) {
            // A long script holds it: its lock would be waited for until the script ends.
            return None;
        }
        let shard = self.map.read(shard_index);
        shard
            .iter_hash(hash)
            .filter(|node| self.map.hash(node.key()) == hash)
            .filter_map(|node| Some((policy.score(node, now_ms)?, node.key().to_vec())))
            .min_by_key(|(score, _)| *score)
    }

    /// The best candidate (score, key) among a sample of the whole keyspace.
    fn sample_keyspace(&self, policy: Policy, now_ms: u64) -> Option<(u64, Vec<u8>)> {
        let mut best: Option<(u64, Vec<u8>)> = None;
        let mut sampled = 0;
        let shards = self.map.shard_count();
        let first = random() as usize % shards;
        for offset in 0..shards {
            let shard_index = (first + offset) % shards;
            if self.long_blocks.holds(shard_index) {
                continue;
            }
            let shard = self.map.read(shard_index);
            if shard.is_empty() {
                continue;
            }
            // Buckets from a random one on, wrapping, until PER_SHARD candidates are taken or
            // every bucket was seen.
            let buckets = shard.num_buckets();
            let start = random() as usize % buckets;
            let mut taken = 0;
            for bucket in (start..buckets).chain(0..start) {
                probed();
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
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    /// The work of one call, in keys, buckets or positions examined.
    fn probes_of<R>(f: impl FnOnce() -> R) -> (R, usize) {
        PROBES.with(|probes| probes.set(0));
        let result = f();
        (result, PROBES.with(|probes| probes.get()))
    }

    #[test]
    fn volatile_eviction_examines_a_bounded_number_of_keys_whatever_the_keyspace() {
        let start = 1_000_000;
        let (clock, _manual) = Clock::manual(start);
        let store = Store::new(clock);
        let put = |key: &[u8], deadline: u64| store.put_str(key, start, deadline);
        for i in 0..100_000 {
            put(format!("k:{i}").as_bytes(), 0);
        }
        for policy in [Policy::VolatileLru, Policy::VolatileTtl] {
            // No key has a deadline: OOM at once.
            let (made, probes) = probes_of(|| store.make_room(0, policy, start));
            assert!(!made);
            assert!(probes <= 2 * SAMPLES, "{policy:?}: {probes} probes");
            // One has: it is found and evicted, and only it.
            put(b"volatile", start + 60_000);
            let limit = store.used_memory() - 1;
            let (made, probes) = probes_of(|| store.make_room(limit, policy, start));
            assert!(made);
            assert!(probes <= 2 * SAMPLES, "{policy:?}: {probes} probes");
            assert!(store.peek(b"volatile", |node| node.is_none()));
            assert_eq!(store.len(), 100_000);
        }
        assert_eq!(store.evicted_keys(), 2);
    }

    #[test]
    fn a_key_with_a_deadline_is_found_among_stale_positions() {
        let start = 1_000_000;
        let (clock, _manual) = Clock::manual(start);
        let store = Store::new(clock);
        let put = |key: &[u8], deadline: u64| store.put_str(key, start, deadline);
        // Keys given a deadline and deleted: their positions stay until they come due or the
        // index outgrows its bound.
        for i in 0..1_000 {
            let key = format!("gone:{i}");
            put(key.as_bytes(), start + 60_000 + i);
            store.remove(key.as_bytes(), start);
        }
        put(b"persistent", 0);
        assert!(store.expiry_index_len() >= 1_000);
        for policy in [Policy::VolatileLru, Policy::VolatileTtl] {
            assert!(!store.make_room(0, policy, start));
            put(b"volatile", start + 120_000);
            let limit = store.used_memory() - 1;
            assert!(store.make_room(limit, policy, start), "{policy:?}");
            assert!(store.peek(b"volatile", |node| node.is_none()));
            assert_eq!(store.len(), 1);
        }
    }
}
