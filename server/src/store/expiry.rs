//! The deadline index that lets the active expiry task find dead keys without scanning, and
//! the task itself ([`Databases::run_active_expiry`](super::Databases::run_active_expiry)).
//!
//! Keys with a deadline are queued by *tick* (`1 << TICK_SHIFT` ms of wall-clock time from the
//! store's epoch) in a few mutex-protected ordered maps, each key as its 64-bit hash: 8 bytes,
//! where a copy of the key would cost a handle and a shared allocation. The index is lazy: an entry
//! records the tick it is queued under, and a key is queued again only when its deadline moves
//! *earlier* than that tick. When a tick comes due, each hash is looked up in the map, and the
//! keys with that hash still queued under that tick are the ones meant (two keys whose hashes
//! collide are both handled): a key whose deadline has moved later is queued again at its new
//! tick, a key that is gone or queued elsewhere is skipped. A session whose idle deadline slides
//! on every request therefore costs one queue position, not one per request.
//!
//! Each tick also keeps the earliest deadline queued in it, so that the tick under way is taken
//! only once something in it is due: a million keys sharing one deadline are visited once, after
//! it, instead of once before it (to be queued again) and once after. A key's position lies in
//! the shard its hash picks, so a deadline moved earlier within the key's tick only lowers that
//! tick's earliest deadline there ([`ExpiryIndex::lower`]) instead of queuing the key again.
//!
//! Stale positions (keys deleted, or moved to an earlier tick) are dropped when their tick comes
//! due, and before that by [`ExpiryIndex::compact_next`], which the store calls once the index
//! holds more positions than a bound: it takes one shard's positions out, keeps those a
//! predicate confirms and puts them back, so the positions stay within a constant of the keys
//! with a deadline at an amortized cost of O(1) per position queued.
//!
//! Lock order: a map shard's lock is taken before an index shard's lock, never the reverse; the
//! expiry task releases the index lock before touching the map.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::accounting::{Before, Removal};
use super::entry::Node;
use super::journal::Recording;
use super::{table, Store};

/// Milliseconds per tick, a power of two.
const TICK_SHIFT: u32 = 6;
/// Shards of the index.
pub const SHARDS: usize = 16;

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
    /// Positions queued, stale ones included.
    positions: AtomicUsize,
    /// Whether a compaction is under way (one at a time).
    compacting: AtomicBool,
    /// The shard the next compaction takes.
    next_compacted: AtomicUsize,
}

impl ExpiryIndex {
    /// An empty index whose tick 0 is just before `epoch_ms`.
    pub fn new(epoch_ms: u64) -> ExpiryIndex {
        ExpiryIndex {
            epoch_ms: epoch_ms.saturating_sub(1 << TICK_SHIFT),
            shards: (0..SHARDS).map(|_| Mutex::new(BTreeMap::new())).collect(),
            positions: AtomicUsize::new(0),
            compacting: AtomicBool::new(false),
            next_compacted: AtomicUsize::new(0),
        }
    }

    /// The shard that holds the positions of keys of hash `hash`; the hash spreads writers over
    /// the shards' locks.
    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, BTreeMap<u32, Tick>> {
        lock(&self.shards[hash as usize % SHARDS])
    }

    /// The tick a deadline falls in; ticks start at 1 so that 0 can mean "not queued".
    pub fn tick_of(&self, deadline_ms: u64) -> u32 {
        let ticks = (deadline_ms.saturating_sub(self.epoch_ms) >> TICK_SHIFT) + 1;
        u32::try_from(ticks).unwrap_or(u32::MAX)
    }

    /// Queues the key of hash `hash` at `tick`, the tick of `deadline_ms` (or an earlier one).
    pub fn queue(&self, hash: u64, tick: u32, deadline_ms: u64) {
        let mut map = self.shard(hash);
        let queued = map.entry(tick).or_insert_with(|| Tick {
            earliest_ms: deadline_ms,
            hashes: Vec::new(),
        });
        queued.earliest_ms = queued.earliest_ms.min(deadline_ms);
        queued.hashes.push(hash);
        self.positions.fetch_add(1, Ordering::Relaxed);
    }

    /// The key of hash `hash`, queued under `tick`, has a new deadline `deadline_ms` earlier than
    /// its last but in the same tick: the tick's earliest deadline in the key's shard is lowered
    /// to it. If that tick is not there (taken by the expiry or a compaction, its hashes being
    /// examined), the key is queued again, lest the lower deadline be lost.
    pub fn lower(&self, hash: u64, tick: u32, deadline_ms: u64) {
        let mut map = self.shard(hash);
        match map.get_mut(&tick) {
            Some(queued) => queued.earliest_ms = queued.earliest_ms.min(deadline_ms),
            None => {
                drop(map);
                self.queue(hash, tick, deadline_ms);
            }
        }
    }

    /// Removes and returns the hashes of every tick that may hold keys dead at `now_ms`: the
    /// ticks that are over, and the one under way once its earliest deadline has passed (its
    /// keys are checked one by one, and those still alive are queued again).
    /// The lists of one tick from the index's shards come merged, in tick order.
    pub fn take_due(&self, now_ms: u64) -> Vec<(u32, Vec<u64>)> {
        self.take_due_with_earliest(now_ms).0
    }

    /// [`ExpiryIndex::take_due`], and the earliest deadline the taken ticks were queued under
    /// (`None` if none was taken): how late the expiry reaches a deadline.
    pub fn take_due_with_earliest(&self, now_ms: u64) -> (Vec<(u32, Vec<u64>)>, Option<u64>) {
        let current = self.tick_of(now_ms);
        let mut out: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        let mut earliest: Option<u64> = None;
        for shard in self.shards.iter() {
            let mut map = lock(shard);
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
            let taken = due_now.values().map(|tick| tick.hashes.len()).sum();
            self.positions.fetch_sub(taken, Ordering::Relaxed);
            for (tick, queued) in due_now {
                earliest = Some(earliest.map_or(queued.earliest_ms, |e| e.min(queued.earliest_ms)));
                let hashes = out.entry(tick).or_default();
                if hashes.is_empty() {
                    *hashes = queued.hashes;
                } else {
                    hashes.extend(queued.hashes);
                }
            }
        }
        (out.into_iter().collect(), earliest)
    }

    /// How many keys are queued (stale positions included; those a compaction has taken out
    /// to examine are not counted until it puts them back).
    pub fn len(&self) -> usize {
        self.positions.load(Ordering::Relaxed)
    }

    /// Drops the stale positions of the next shard in turn: its positions are taken out, each
    /// tick's duplicates merged, and those that `queued(tick, hash)` confirms (a key of that hash
    /// is queued under that tick) put back beside whatever was queued meanwhile. The predicate
    /// runs with no lock of the index held. Returns how many positions were dropped, `None` if
    /// another compaction is under way.
    pub fn compact_next(&self, mut queued: impl FnMut(u32, u64) -> bool) -> Option<usize> {
        if self.compacting.swap(true, Ordering::Acquire) {
            return None;
        }
        let shard = self.next_compacted.fetch_add(1, Ordering::Relaxed) % SHARDS;
        let taken = std::mem::take(&mut *lock(&self.shards[shard]));
        let before: usize = taken.values().map(|tick| tick.hashes.len()).sum();
        self.positions.fetch_sub(before, Ordering::Relaxed);
        let mut kept = Vec::with_capacity(taken.len());
        for (tick, mut queued_here) in taken {
            queued_here.hashes.sort_unstable();
            queued_here.hashes.dedup();
            queued_here.hashes.retain(|&hash| queued(tick, hash));
            if !queued_here.hashes.is_empty() {
                kept.push((tick, queued_here));
            }
        }
        let after: usize = kept.iter().map(|(_, tick)| tick.hashes.len()).sum();
        let mut map = lock(&self.shards[shard]);
        for (tick, kept) in kept {
            let queued = map.entry(tick).or_insert_with(|| Tick {
                earliest_ms: kept.earliest_ms,
                hashes: Vec::new(),
            });
            queued.earliest_ms = queued.earliest_ms.min(kept.earliest_ms);
            queued.hashes.extend(kept.hashes);
        }
        self.positions.fetch_add(after, Ordering::Relaxed);
        drop(map);
        self.compacting.store(false, Ordering::Release);
        Some(before - after)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `n` queued hashes for an eviction to consider (stale ones included), taken from the
    /// shards in turn from a random one: with `earliest`, a random one of each shard's earliest
    /// tick (`volatile-ttl`); otherwise one at a random place in a random tick. `random` gives
    /// the randomness. O(n log ticks), whatever the keyspace.
    pub fn sample(&self, n: usize, earliest: bool, mut random: impl FnMut() -> u64) -> Vec<u64> {
        let mut sampled = Vec::with_capacity(n);
        let first = random() as usize;
        for turn in 0..n {
            let map = lock(&self.shards[first.wrapping_add(turn) % SHARDS]);
            let tick = if earliest {
                map.values().next()
            } else {
                let (Some(&low), Some(&high)) = (map.keys().next(), map.keys().next_back()) else {
                    continue;
                };
                let span = u64::from(high - low) + 1;
                // Below `high`, so within u32.
                let at = low + (random() % span) as u32;
                map.range(at..).next().map(|(_, tick)| tick)
            };
            let Some(hashes) = tick.map(|tick| &tick.hashes).filter(|h| !h.is_empty()) else {
                continue;
            };
            if let Some(&hash) = hashes.get(random() as usize % hashes.len()) {
                sampled.push(hash);
            }
        }
        sampled
    }

    /// Forgets everything (FLUSHALL).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let old = std::mem::take(&mut *lock(shard));
            let dropped = old.values().map(|tick| tick.hashes.len()).sum();
            self.positions.fetch_sub(dropped, Ordering::Relaxed);
            drop(old);
        }
    }
}

/// A shard, locked. A lock poisoned by a panic elsewhere is taken anyway: the index only says
/// "look at this key then", and every change to it is a single push or removal.
fn lock(shard: &Queue) -> std::sync::MutexGuard<'_, BTreeMap<u32, Tick>> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many due keys one expiry step examines; the task checks its slice of time between steps.
pub const EXPIRY_BATCH: usize = 200;
/// The longest turn of the active expiry on a busy thread (it works for half as long as the
/// tasks it yielded to ran) before it yields again, give or take a step.
const EXPIRY_MAX_SLICE: Duration = Duration::from_millis(1);
/// At most this many due keys of one shard are examined under one hold of its write lock.
const EXPIRY_GROUP: usize = 64;

impl Store {
    /// Reclaims the dead keys among `group`, the hashes of keys queued under `tick` that fall in
    /// one shard, under one write lock: the lookups come one after another, with no lock taken
    /// in between, and every candidate node is prefetched before any is examined, so that their
    /// cache misses overlap instead of coming one after another. Each hash stands for up to
    /// `SAME_HASH` keys (keys whose 64-bit hashes collide); a key found alive is queued
    /// again at its deadline's tick; the dead go to `dead`, for [`Store::bury`] once the lock
    /// is released.
    fn expire_group(
        &self,
        group: &[u64],
        tick: u32,
        now_ms: u64,
        rec: &Recording<'_>,
        dead: &mut Vec<Node>,
    ) {
        /// Keys with one 64-bit hash handled per position; more never meet in practice.
        const SAME_HASH: usize = 4;
        let Some(&first) = group.first() else {
            return;
        };
        let shard_index = self.map.shard_of(first);
        if self.long_blocks.holds(shard_index) {
            // A long script holds the shard: its lock would be waited for until the script
            // ends, on the runtime's thread. The positions go back, as due, for a later cycle.
            for &hash in group {
                self.index.queue(hash, tick, 0);
            }
            return;
        }
        let mut shard = self.map.write(shard_index);
        for &hash in group {
            table::prefetch(&shard, hash, 2);
        }
        for &hash in group {
            debug_assert_eq!(self.map.shard_of(hash), shard_index);
            let mut buckets = [usize::MAX; SAME_HASH];
            let matching = shard.iter_hash_buckets(hash).filter(|&bucket| {
                shard.get_bucket(bucket).is_some_and(|node| {
                    node.queued_tick() == tick && self.map.hash(node.key()) == hash
                })
            });
            let mut found = 0;
            for bucket in matching {
                if let Some(slot) = buckets.get_mut(found) {
                    *slot = bucket;
                }
                found += 1;
            }
            if found > SAME_HASH {
                // The rest are still queued under `tick`: the position goes back for the next
                // cycle (as already due: its keys' deadlines are unknown here).
                self.index.queue(hash, tick, 0);
            }
            for bucket in buckets {
                let Ok(mut occupied) = shard.get_bucket_entry(bucket) else {
                    break;
                };
                let node = occupied.get_mut();
                if node.is_expired(now_ms) {
                    self.journal_delete(shard_index, node.key(), rec, true, Removal::Expired);
                    dead.push(occupied.remove().0);
                    continue;
                }
                node.set_queued_tick(0);
                if node.expires_at_ms() != 0 {
                    let tick = self.index.tick_of(node.expires_at_ms());
                    node.set_queued_tick(tick);
                    self.index.queue(hash, tick, node.expires_at_ms());
                }
            }
        }
    }

    /// The bookkeeping for keys [`Store::expire_group`] took out, and their memory released.
    fn bury(&self, dead: &mut Vec<Node>) {
        for node in dead.drain(..) {
            self.after_remove(&node, Before::of(&node), Removal::Expired);
        }
    }

    /// Reclaims the dead keys among `hashes` (one due tick's, grouped by shard with
    /// [`Table::group_by_shard`](super::table::Table::group_by_shard)) from `*next` on, a shard's group at a time, until about
    /// [`EXPIRY_BATCH`] have been examined; moves `*next` past them and says whether all have
    /// been.
    fn expire_some(&self, tick: u32, hashes: &[u64], next: &mut usize, now_ms: u64) -> bool {
        let rec = self.journal.recording();
        let mut dead = Vec::new();
        let mut examined = 0;
        for group in self.map.shard_groups(&hashes[*next..], EXPIRY_GROUP) {
            self.expire_group(group, tick, now_ms, &rec, &mut dead);
            self.bury(&mut dead);
            *next += group.len();
            examined += group.len();
            if examined >= EXPIRY_BATCH {
                break;
            }
        }
        *next == hashes.len()
    }

    /// Counts a completed active-expiry cycle (see [`Store::expiry_cycles`]).
    pub(super) fn count_expiry_cycle(&self) {
        self.expiry_cycles.send_modify(|cycles| *cycles += 1);
    }

    /// Reclaims the keys due now, yielding to the other tasks between slices of work. A slice
    /// lasts half as long as the other tasks ran while the expiry waited for its turn: at least
    /// one step of [`EXPIRY_BATCH`] keys, at most [`EXPIRY_MAX_SLICE`] and the step that crosses
    /// it (a slice ends only between steps). So on a thread busy with connections a mass expiry
    /// takes about a third of it, more when the others' turns are shorter than a couple of
    /// steps: a fixed step a turn would leave it crawling behind many ready connections, and an
    /// equal share would cost their replies' tail latency. On an idle thread the turns are
    /// short, and so are the slices.
    ///
    /// Returns how late, in ms, the work ended after the earliest deadline it was due for
    /// (`None` when nothing was due): the expiry's lag.
    /// Stops between two slices once `stop` is set (the keyspace started following a
    /// primary, whose stream alone changes it from then on), the keys not examined queued
    /// again.
    pub(super) async fn expire_in_batches(&self, stop: &AtomicBool) -> Option<u64> {
        let now_ms = self.now_ms();
        let mut slice = Duration::ZERO;
        let mut slice_start = Instant::now();
        let (due, earliest_ms) = self.index.take_due_with_earliest(now_ms);
        let mut due = due.into_iter();
        while let Some((tick, hashes)) = due.next() {
            let hashes = self.map.group_by_shard(hashes);
            let mut next = 0;
            loop {
                if stop.load(Ordering::Relaxed) {
                    // What was taken and not examined goes back, for a promotion later.
                    let rest = hashes
                        .get(next..)
                        .unwrap_or_default()
                        .iter()
                        .map(|&h| (tick, h));
                    let later =
                        due.flat_map(|(tick, hashes)| hashes.into_iter().map(move |h| (tick, h)));
                    for (tick, hash) in rest.chain(later) {
                        self.index.queue(hash, tick, now_ms);
                    }
                    return None;
                }
                // The journal's recording is not held across the yield: a snapshot may need to
                // close the journal.
                let done = self.expire_some(tick, &hashes, &mut next, now_ms);
                if slice_start.elapsed() >= slice {
                    let yielded = Instant::now();
                    tokio::task::yield_now().await;
                    slice_start = Instant::now();
                    slice = expiry_slice(slice_start - yielded);
                }
                if done {
                    break;
                }
            }
        }
        earliest_ms.map(|earliest| self.now_ms().saturating_sub(earliest))
    }

    /// Reclaims every key that is dead now, in one go (for tests and tools; the server uses the
    /// active expiry task, which yields between slices of work).
    pub fn reclaim_expired(&self) {
        let now_ms = self.now_ms();
        for (tick, hashes) in self.index.take_due(now_ms) {
            let hashes = self.map.group_by_shard(hashes);
            let mut next = 0;
            while !self.expire_some(tick, &hashes, &mut next, now_ms) {}
        }
    }
}

/// How long the active expiry works before it yields again, after waiting `waited` for its turn
/// (see [`Store::expire_in_batches`]).
fn expiry_slice(waited: Duration) -> Duration {
    (waited / 2).min(EXPIRY_MAX_SLICE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::clock::Clock;

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
    fn lowering_a_tick_makes_it_due_at_the_new_deadline_without_a_new_position() {
        let index = ExpiryIndex::new(0);
        let tick = index.tick_of(150);
        assert_eq!(index.tick_of(140), tick);
        index.queue(5, tick, 150);
        index.lower(5, tick, 140);
        assert_eq!(index.len(), 1);
        assert_eq!(index.take_due(139), vec![]);
        assert_eq!(index.take_due(140), vec![(tick, vec![5])]);
        // The tick taken (its hashes being examined), lowering queues the key again.
        index.lower(5, tick, 130);
        assert_eq!(
            (index.len(), index.take_due(130)),
            (1, vec![(tick, vec![5])])
        );
    }

    #[test]
    fn a_compaction_keeps_what_is_confirmed_once_beside_what_came_meanwhile() {
        let index = ExpiryIndex::new(0);
        let shard = |n: u64| n * SHARDS as u64; // hashes of shard 0
        for (hash, tick, deadline) in [(1, 3, 200), (1, 3, 200), (2, 3, 150), (3, 4, 300)] {
            index.queue(shard(hash), tick, deadline);
        }
        index.queue(7, 3, 100); // another shard, not examined
        let dropped = index.compact_next(|tick, hash| {
            // Queued meanwhile: kept beside the survivors.
            index.queue(shard(9), 3, 190);
            (tick, hash) != (3, shard(2))
        });
        // 1 (merged with its duplicate) and 3 stay, 2 goes.
        assert_eq!(dropped, Some(2));
        assert_eq!(index.len(), 2 + 3 + 1);
        let due = index.take_due(10_000);
        let mut tick3 = due[0].1.clone();
        tick3.sort_unstable();
        assert_eq!(tick3, vec![7, shard(1), shard(9), shard(9), shard(9)]);
        assert_eq!(due[1], (4, vec![shard(3)]));
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

    #[test]
    fn an_expiry_slice_is_half_the_wait_up_to_the_cap() {
        assert_eq!(expiry_slice(Duration::ZERO), Duration::ZERO);
        assert_eq!(
            expiry_slice(Duration::from_micros(400)),
            Duration::from_micros(200)
        );
        assert_eq!(expiry_slice(Duration::from_millis(10)), EXPIRY_MAX_SLICE);
    }

    /// A store whose keys are all past their deadline, and how many there are: enough steps
    /// that a preemption of this thread (a long wait, a 1 ms slice) cannot leave the expiry a
    /// single slice.
    fn all_due() -> (Arc<Store>, usize) {
        let start = 1_000_000;
        let (clock, manual) = Clock::manual(start);
        let store = Arc::new(Store::new(clock));
        let keys = 200 * EXPIRY_BATCH;
        for i in 0..keys {
            store.put_str(format!("sess:{i}").as_bytes(), start, start + 1);
        }
        manual.advance(1_000);
        (store, keys)
    }

    #[test]
    fn a_mass_expiry_yields_to_other_tasks_and_reclaims_every_key() {
        let (store, keys) = all_due();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let expiry = tokio::spawn({
                let store = store.clone();
                async move { store.expire_in_batches(&AtomicBool::new(false)).await }
            });
            // This task and the expiry share the thread: it sees the keyspace between slices.
            let mut seen = Vec::new();
            while !expiry.is_finished() {
                seen.push(store.len());
                tokio::task::yield_now().await;
            }
            expiry.await.unwrap();
            let partway = seen.iter().filter(|&&n| n > 0 && n < keys).count();
            assert!(partway >= 2, "the expiry yielded partway: {seen:?}");
        });
        assert_eq!((store.len(), store.expired_keys()), (0, keys as u64));
    }

    #[test]
    fn a_mass_expiry_stops_between_slices_once_the_keyspace_follows_a_primary() {
        let (store, keys) = all_due();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let following = Arc::new(AtomicBool::new(false));
        runtime.block_on(async {
            let expiry = tokio::spawn({
                let (store, following) = (store.clone(), following.clone());
                async move { store.expire_in_batches(&following).await }
            });
            while store.len() == keys {
                tokio::task::yield_now().await;
            }
            // Partway (this task runs between slices): from now on the primary's stream alone
            // deletes keys.
            following.store(true, Ordering::Relaxed);
            let left = store.len();
            expiry.await.unwrap();
            assert_eq!(store.len(), left, "no slice after the switch");
            assert!(store.index.len() >= left, "the rest queued again");
        });
        assert!(!store.is_empty());
        // Promoted later: the next cycle takes them.
        store.reclaim_expired();
        assert!(store.is_empty());
    }

    #[test]
    fn the_expiry_task_ends_in_the_middle_of_a_mass_expiry_on_shutdown() {
        let start = 1_000_000;
        let (clock, manual) = Clock::manual(start);
        let dbs = Arc::new(super::super::Databases::new(clock, 1));
        let store = Arc::clone(dbs.first());
        let keys = 200 * EXPIRY_BATCH;
        for i in 0..keys {
            store.put_str(format!("sess:{i}").as_bytes(), start, start + 1);
        }
        manual.advance(1_000);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let cycles = store.expiry_cycles();
        runtime.block_on(async {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let expiry = tokio::spawn(dbs.clone().run_active_expiry(
                Duration::from_secs(3600),
                async move {
                    let _ = stopped.await;
                },
            ));
            // This task and the expiry share the thread: it runs between slices.
            while store.len() == keys {
                tokio::task::yield_now().await;
            }
            stop.send(()).unwrap();
            expiry.await.unwrap();
        });
        assert!(!store.is_empty(), "the task ended before the cycle did");
        assert_eq!(*cycles.borrow(), 0);
    }
}
