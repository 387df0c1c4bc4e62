//! The deadline index that lets the active expiry task find dead keys without scanning.
//!
//! Keys with a deadline are queued by *tick* (64 ms of wall-clock time relative to the store's
//! epoch) in a few mutex-protected ordered maps, each key as its 64-bit hash: 8 bytes, where a
//! copy of the key would cost a handle and a shared allocation. The index is lazy: an entry
//! records the tick it is queued under, and a key is queued again only when its deadline moves
//! *earlier* than that tick. When a tick comes due, each hash is looked up in the map, and the
//! keys with that hash still queued under that tick are the ones meant (two keys whose hashes
//! collide are both handled): a key whose deadline has moved later is queued again at its new
//! tick, a key that is gone or queued elsewhere is skipped. A session whose idle deadline slides
//! on every request therefore costs one queue position, not one per request.
//!
//! Each tick also keeps the earliest deadline queued in it, so that the tick under way is taken
//! only once something in it is due: a million keys sharing one deadline are visited once, after
//! it, instead of once before it (to be queued again) and once after.
//!
//! Lock order: a map shard's lock is taken before an index shard's lock, never the reverse; the
//! expiry task releases the index lock before touching the map.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Milliseconds per tick, a power of two.
const TICK_SHIFT: u32 = 6;
const SHARDS: usize = 16;

/// One shard of the index: key hashes by tick.
type Queue = Mutex<BTreeMap<u32, Tick>>;

/// The keys queued under one tick.
#[derive(Debug, Default)]
struct Tick {
    /// The earliest deadline queued here, Unix ms.
    earliest_ms: u64,
    /// The keys' hashes.
    hashes: Vec<u64>,
}

/// Keys queued by the tick of their deadline.
#[derive(Debug)]
pub struct ExpiryIndex {
    epoch_ms: u64,
    shards: Box<[Queue]>,
}

thread_local! {
    static NEXT_SHARD: Cell<usize> = const { Cell::new(0) };
}

impl ExpiryIndex {
    /// An empty index whose tick 0 is just before `epoch_ms`.
    pub fn new(epoch_ms: u64) -> ExpiryIndex {
        ExpiryIndex {
            epoch_ms: epoch_ms.saturating_sub(1 << TICK_SHIFT),
            shards: (0..SHARDS).map(|_| Mutex::new(BTreeMap::new())).collect(),
        }
    }

    /// The tick a deadline falls in; ticks start at 1 so that 0 can mean "not queued".
    pub fn tick_of(&self, deadline_ms: u64) -> u32 {
        let ticks = (deadline_ms.saturating_sub(self.epoch_ms) >> TICK_SHIFT) + 1;
        u32::try_from(ticks).unwrap_or(u32::MAX)
    }

    /// Queues the key of hash `hash` at `tick`, the tick of `deadline_ms` (or an earlier one).
    pub fn queue(&self, hash: u64, tick: u32, deadline_ms: u64) {
        // Any shard will do: the index only says "look at this key then". Spreading by thread
        // keeps writers on different cores off each other's locks.
        let shard = NEXT_SHARD.with(|next| {
            let shard = next.get();
            next.set(shard.wrapping_add(1));
            shard % SHARDS
        });
        let mut map = self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let queued = map.entry(tick).or_insert_with(|| Tick {
            earliest_ms: deadline_ms,
            hashes: Vec::new(),
        });
        queued.earliest_ms = queued.earliest_ms.min(deadline_ms);
        queued.hashes.push(hash);
    }

    /// Removes and returns the hashes of every tick that may hold keys dead at `now_ms`: the
    /// ticks that are over, and the one under way once its earliest deadline has passed (its
    /// keys are checked one by one, and those still alive are queued again).
    /// The lists of one tick from the index's shards come merged, in tick order.
    pub fn take_due(&self, now_ms: u64) -> Vec<(u32, Vec<u64>)> {
        let current = self.tick_of(now_ms);
        let mut out: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for shard in self.shards.iter() {
            let mut map = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let due = match map.get(&current) {
                Some(tick) if tick.earliest_ms <= now_ms => current,
                _ => current - 1,
            };
            // Deadlines beyond the last tick (some 8.7 years after the start) share it.
            let later = match due.checked_add(1) {
                Some(after) => map.split_off(&after),
                None => BTreeMap::new(),
            };
            let due_now = std::mem::replace(&mut *map, later);
            drop(map);
            for (tick, queued) in due_now {
                let hashes = out.entry(tick).or_default();
                if hashes.is_empty() {
                    *hashes = queued.hashes;
                } else {
                    hashes.extend(queued.hashes);
                }
            }
        }
        out.into_iter().collect()
    }

    /// How many keys are queued (stale positions included).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .map(|tick| tick.hashes.len())
                    .sum::<usize>()
            })
            .sum()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets everything (FLUSHALL).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let old = std::mem::take(&mut *shard.lock().unwrap_or_else(|p| p.into_inner()));
            drop(old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_due_as_soon_as_it_passes_and_not_before() {
        for deadline in [1_000_000u64, 1_000_050, 1_000_063, 1_000_064, 1_000_200] {
            let index = ExpiryIndex::new(1_000_000);
            let tick = index.tick_of(deadline);
            assert!(tick >= 1);
            index.queue(7, tick, deadline);
            for early in [deadline - 1_000, deadline - 1] {
                assert_eq!(
                    index.take_due(early),
                    vec![],
                    "deadline {deadline} due at {early}"
                );
            }
            assert_eq!(index.take_due(deadline), vec![(tick, vec![7])]);
        }
    }

    #[test]
    fn take_due_splits_by_tick_and_by_the_earliest_deadline_under_way() {
        let index = ExpiryIndex::new(0);
        let (early, late) = (index.tick_of(200), index.tick_of(600));
        assert_eq!(index.tick_of(610), late);
        let late_starts = (0..).find(|&ms| index.tick_of(ms) == late).unwrap();
        assert!(early < late && late_starts < 600);
        index.queue(11, early, 200);
        index.queue(12, late, 610);
        index.queue(13, late, 600);
        assert_eq!(index.take_due(late_starts - 1), vec![(early, vec![11])]);
        assert_eq!(index.len(), 2);
        // The later tick is under way, its earliest deadline not yet passed: nothing is due.
        assert_eq!(index.take_due(599), vec![]);
        // Once it has, the tick is due where that deadline is queued: 13's shard (12 went to
        // another; in one shard, both would be taken, and 12 queued again by the store).
        assert_eq!(index.take_due(600), vec![(late, vec![13])]);
        assert_eq!(index.take_due(610), vec![(late, vec![12])]);
        assert!(index.is_empty());
    }

    #[test]
    fn one_ticks_lists_come_merged_and_the_last_tick_is_taken_too() {
        let index = ExpiryIndex::new(0);
        for hash in 0..40 {
            index.queue(hash, 3, 100);
        }
        let due = index.take_due(1_000);
        assert_eq!(due.len(), 1);
        let mut hashes = due[0].1.clone();
        hashes.sort_unstable();
        assert_eq!(hashes, (0..40).collect::<Vec<u64>>());
        // Deadlines past the last tick share it, and it is taken once they have passed.
        index.queue(7, index.tick_of(u64::MAX), u64::MAX);
        assert_eq!(index.take_due(u64::MAX), vec![(u32::MAX, vec![7])]);
    }
}
