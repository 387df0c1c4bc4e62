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
//! Lock order: a map shard's lock is taken before an index shard's lock, never the reverse; the
//! expiry task releases the index lock before touching the map.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Milliseconds per tick, a power of two.
const TICK_SHIFT: u32 = 6;
const SHARDS: usize = 16;

/// One shard of the index: key hashes by tick.
type Queue = Mutex<BTreeMap<u32, Vec<u64>>>;

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

    /// The last tick that may hold keys dead at `now_ms`: the current one, which is only partly
    /// over, so its keys are checked one by one and those still alive are queued again.
    pub fn due_tick(&self, now_ms: u64) -> u32 {
        self.tick_of(now_ms)
    }

    /// Queues the key of hash `hash` at `tick`.
    pub fn queue(&self, hash: u64, tick: u32) {
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
        map.entry(tick).or_default().push(hash);
    }

    /// Removes and returns every hash queued at a tick `<= due`.
    pub fn take_due(&self, due: u32) -> Vec<(u32, Vec<u64>)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut map = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let later = map.split_off(&due.saturating_add(1));
            let due_now = std::mem::replace(&mut *map, later);
            drop(map);
            out.extend(due_now);
        }
        out
    }

    /// How many keys are queued (stale positions included).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .map(Vec::len)
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
    fn a_deadline_is_due_as_soon_as_it_passes() {
        let index = ExpiryIndex::new(1_000_000);
        for deadline in [1_000_000u64, 1_000_050, 1_000_063, 1_000_064, 1_000_200] {
            let tick = index.tick_of(deadline);
            assert!(tick >= 1);
            assert!(
                index.due_tick(deadline) >= tick,
                "deadline {deadline} not due at itself"
            );
            assert!(index.due_tick(deadline - 1_000) < tick);
        }
    }

    #[test]
    fn take_due_splits_by_tick() {
        let index = ExpiryIndex::new(0);
        index.queue(11, 3);
        index.queue(12, 5);
        let due = index.take_due(4);
        assert_eq!(due, vec![(3, vec![11])]);
        assert_eq!(index.len(), 1);
    }
}
