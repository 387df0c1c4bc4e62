//! The keyspace: a sharded concurrent map of `Bytes` keys to typed values with deadlines.
//!
//! There is no global lock: the map is a [`DashMap`] with many shards, and every operation holds
//! one shard's lock only for as long as it reads or writes that key — never across an `.await`.
//! Expired keys are invisible at once (every access compares the deadline with the clock) and
//! are reclaimed without any read by [`Store::expire_cycle`], which the active expiry task runs;
//! see [`expiry`] for the deadline index that makes that cheap.
//!
//! Only this module mutates entries, so the bookkeeping that follows every write (the count of
//! keys with a deadline, the expiry index) lives in one place.

mod entry;
pub mod evict;
pub mod expiry;
pub mod journal;
mod scan;
pub mod session;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::mapref::entry::Entry as MapEntry;
use dashmap::DashMap;
use tokio::sync::watch;

pub use entry::{owned, Entry, Fields, Value};
use expiry::ExpiryIndex;
use journal::{Journal, Recording};
pub use session::{SessionRecord, SessionStats};

use crate::clock::Clock;
use crate::glob;
use crate::persist::format::Record;
use crate::stats::StripedCounter;

/// Shards in the map: enough that writers on different cores rarely meet, and that SCAN's unit
/// of work (one shard) stays small for large keyspaces.
pub(crate) const SHARDS: usize = 1024;
const SHARD_BITS: u32 = SHARDS.trailing_zeros();
/// The bits of a key's hash that order keys inside a shard for SCAN.
const POSITION_BITS: u32 = 64 - SHARD_BITS;
const POSITION_MASK: u64 = (1 << POSITION_BITS) - 1;

/// How many due keys one expiry step examines before yielding to connection tasks.
pub const EXPIRY_BATCH: usize = 200;

type Map = DashMap<Bytes, Entry, ahash::RandomState>;

/// The keyspace shared by every connection.
#[derive(Debug)]
pub struct Store {
    map: Map,
    index: ExpiryIndex,
    /// User → that user's sessions as (created, ID), oldest first; see [`session`].
    users: DashMap<Bytes, Vec<(u64, Bytes)>, ahash::RandomState>,
    clock: Clock,
    volatile: AtomicI64,
    expired_keys: AtomicU64,
    sessions: SessionStats,
    /// Changes recorded while a snapshot is written.
    journal: Journal,
    /// Every change ever made (writes and removals), for "changes since the last save".
    changes: StripedCounter,
    /// The accounted bytes of every key (`used_memory`); see [`Entry::footprint`].
    used: StripedCounter,
    evicted_keys: AtomicU64,
    /// When the store was made, Unix ms: the origin of the LRU clock.
    started_ms: u64,
    expiry_cycles: watch::Sender<u64>,
}

/// Why an entry left the keyspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    /// Its deadline passed.
    Expired,
    /// A command removed it.
    Deleted,
    /// `--maxmemory` made room.
    Evicted,
}

/// What an entry was counted as before a change: the bookkeeping that follows compares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Before {
    /// Whether it had a deadline (the volatile count).
    had_deadline: bool,
    /// Its footprint in `used_memory`.
    footprint: u64,
}

impl Before {
    /// Nothing: the key did not exist.
    const NOTHING: Before = Before {
        had_deadline: false,
        footprint: 0,
    };

    /// What `entry` under `key` is counted as now.
    fn of(key: &[u8], entry: &Entry) -> Before {
        Before {
            had_deadline: entry.expires_at_ms != 0,
            footprint: entry.footprint(key),
        }
    }
}

/// What a filter for SCAN and KEYS asks.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyFilter<'a> {
    /// A glob pattern the key must match.
    pub pattern: Option<&'a [u8]>,
    /// The type name the value must have.
    pub type_name: Option<&'a str>,
}

impl KeyFilter<'_> {
    fn accepts(&self, key: &[u8], entry: &Entry) -> bool {
        self.pattern.is_none_or(|p| glob::matches(p, key))
            && self.type_name.is_none_or(|t| entry.value.type_name() == t)
    }
}

impl Store {
    /// An empty store reading time from `clock`.
    pub fn new(clock: Clock) -> Store {
        let now = clock.now_ms();
        Store {
            map: DashMap::with_capacity_and_hasher_and_shard_amount(
                0,
                ahash::RandomState::new(),
                SHARDS,
            ),
            index: ExpiryIndex::new(now),
            users: DashMap::with_hasher(ahash::RandomState::new()),
            clock,
            volatile: AtomicI64::new(0),
            expired_keys: AtomicU64::new(0),
            sessions: SessionStats::default(),
            journal: Journal::new(SHARDS),
            changes: StripedCounter::default(),
            used: StripedCounter::default(),
            evicted_keys: AtomicU64::new(0),
            started_ms: now,
            expiry_cycles: watch::Sender::new(0),
        }
    }

    /// The clock deadlines are measured against.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Now, in Unix ms.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Keys held, expired ones not yet reclaimed included (as Redis's DBSIZE counts them).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Keys held that have a deadline.
    pub fn volatile_len(&self) -> u64 {
        self.volatile.load(Ordering::Relaxed).max(0) as u64
    }

    /// Keys removed because their deadline passed, since start.
    pub fn expired_keys(&self) -> u64 {
        self.expired_keys.load(Ordering::Relaxed)
    }

    /// A receiver that sees the number of completed active-expiry cycles; tests wait on it
    /// instead of sleeping.
    pub fn expiry_cycles(&self) -> watch::Receiver<u64> {
        self.expiry_cycles.subscribe()
    }

    /// Runs `f` on the live entry at `key` (`None` if missing or expired) under a read lock.
    #[inline]
    pub fn read<R>(&self, key: &[u8], now_ms: u64, f: impl FnOnce(Option<&Entry>) -> R) -> R {
        match self.map.get(key) {
            Some(guard) if !guard.is_expired(now_ms) => {
                guard.last_use.touch(self.lru_seconds(now_ms));
                f(Some(guard.value()))
            }
            _ => f(None),
        }
    }

    /// `now_ms` on the LRU clock: seconds since the store was made.
    #[inline]
    fn lru_seconds(&self, now_ms: u64) -> u32 {
        (now_ms.saturating_sub(self.started_ms) / 1000) as u32
    }

    /// The bytes the keyspace is accounted for (`used_memory`): see [`Entry::footprint`].
    pub fn used_memory(&self) -> u64 {
        // The stripes are read one by one: a subtraction seen without the addition it follows
        // can make the sum dip below zero (wrap) for a moment.
        (self.used.sum() as i64).max(0) as u64
    }

    /// Keys evicted to stay under `--maxmemory`, since start.
    pub fn evicted_keys(&self) -> u64 {
        self.evicted_keys.load(Ordering::Relaxed)
    }

    /// Runs `f` on the live entry at `key` under the shard's write lock. `f` may change the
    /// entry in place and return `None`, or return `Some(entry)` to replace it, or to create the
    /// key when it was missing (`f` received `None`). `f` must not replace a session (only the
    /// session functions create and remove sessions, keeping the per-user index right).
    pub fn upsert<R>(
        &self,
        key: &Bytes,
        now_ms: u64,
        f: impl FnOnce(Option<&mut Entry>) -> (Option<Entry>, R),
    ) -> R {
        let rec = self.journal.recording();
        loop {
            // Fast path, the key exists: no copy of the key is made.
            if let Some(mut guard) = self.map.get_mut(key) {
                let (stored_key, entry) = guard.pair_mut();
                if !entry.is_expired(now_ms) {
                    let before = Before::of(stored_key, entry);
                    let (replacement, reply) = f(Some(&mut *entry));
                    if let Some(new) = replacement {
                        replace(entry, new);
                    }
                    self.after_write(stored_key, entry, before, now_ms, &rec);
                    return reply;
                }
                drop(guard);
                self.reclaim_if_expired(key, now_ms, &rec);
            }
            match self.map.entry(owned(key)) {
                MapEntry::Occupied(occupied) if occupied.get().is_expired(now_ms) => {
                    drop(occupied);
                    self.reclaim_if_expired(key, now_ms, &rec);
                }
                MapEntry::Occupied(mut occupied) => {
                    // Another writer created the key since the lookup above.
                    let before = Before::of(occupied.key(), occupied.get());
                    let (replacement, reply) = f(Some(occupied.get_mut()));
                    if let Some(new) = replacement {
                        replace(occupied.get_mut(), new);
                    }
                    let stored_key = occupied.key().clone();
                    self.after_write(&stored_key, occupied.get_mut(), before, now_ms, &rec);
                    return reply;
                }
                MapEntry::Vacant(vacant) => {
                    let (created, reply) = f(None);
                    if let Some(mut new) = created {
                        let stored_key = vacant.key().clone();
                        new.queued_tick = 0;
                        self.after_write(&stored_key, &mut new, Before::NOTHING, now_ms, &rec);
                        vacant.insert(new);
                    }
                    return reply;
                }
            }
        }
    }

    /// Removes `key` if it is expired at `now_ms`, with the bookkeeping of an expiry.
    fn reclaim_if_expired(&self, key: &[u8], now_ms: u64, rec: &Recording<'_>) {
        let removed = self.map.remove_if(key, |key, entry| {
            // The predicate runs under the shard lock: the place to journal the removal.
            let dead = entry.is_expired(now_ms);
            if dead {
                self.journal_delete(key, rec);
            }
            dead
        });
        if let Some((key, entry)) = removed {
            self.after_remove(&key, &entry, Before::of(&key, &entry), Removal::Expired);
        }
    }

    /// Journals that `key` was removed; call under the key's shard lock.
    fn journal_delete(&self, key: &Bytes, rec: &Recording<'_>) {
        if rec.on() {
            self.journal.push(
                self.map.determine_map(key),
                Record::Delete { key: key.clone() },
            );
        }
    }

    /// Runs `f` on the live entry at `key` under the shard's write lock; `f` returns whether to
    /// delete the key. `None` when the key is missing or expired.
    pub fn modify<R>(
        &self,
        key: &Bytes,
        now_ms: u64,
        f: impl FnOnce(&mut Entry) -> (bool, R),
    ) -> Option<R> {
        let rec = self.journal.recording();
        // `entry` wants an owned key; a clone of the request's `Bytes` is a reference count, and
        // `modify` never inserts, so the request buffer is never stored.
        let MapEntry::Occupied(mut occupied) = self.map.entry(key.clone()) else {
            return None;
        };
        if occupied.get().is_expired(now_ms) {
            self.journal_delete(occupied.key(), &rec);
            let (key, entry) = occupied.remove_entry();
            self.after_remove(&key, &entry, Before::of(&key, &entry), Removal::Expired);
            return None;
        }
        let before = Before::of(occupied.key(), occupied.get());
        let (delete, reply) = f(occupied.get_mut());
        if delete {
            self.journal_delete(occupied.key(), &rec);
            let (key, entry) = occupied.remove_entry();
            self.after_remove(&key, &entry, before, Removal::Deleted);
        } else {
            let stored_key = occupied.key().clone();
            self.after_write(&stored_key, occupied.get_mut(), before, now_ms, &rec);
        }
        Some(reply)
    }

    /// Removes `key`; returns the live entry it held, `None` if it was missing or expired.
    pub fn remove(&self, key: &[u8], now_ms: u64) -> Option<Entry> {
        let rec = self.journal.recording();
        let (key, entry) = self.map.remove_if(key, |key, _| {
            self.journal_delete(key, &rec);
            true
        })?;
        let before = Before::of(&key, &entry);
        if entry.is_expired(now_ms) {
            self.after_remove(&key, &entry, before, Removal::Expired);
            return None;
        }
        self.after_remove(&key, &entry, before, Removal::Deleted);
        Some(entry)
    }

    /// Removes every key.
    pub fn flush(&self) {
        let rec = self.journal.recording();
        // The indexes are cleared first: a key written into an already flushed shard while the
        // flush goes on must keep its expiry-index position and its place in its user's list.
        // Positions and IDs of keys the flush removes are stale, and skipped or pruned later.
        self.users.clear();
        self.index.clear();
        let (mut volatile, mut sessions, mut removed, mut footprint) = (0, 0, 0, 0);
        self.map.retain(|key, entry| {
            footprint += entry.footprint(key);
            volatile += i64::from(entry.expires_at_ms != 0);
            sessions += i64::from(matches!(entry.value, Value::Session(_)));
            removed += 1;
            self.journal_delete(key, &rec);
            false
        });
        self.changes.add(removed);
        self.used.sub(footprint);
        self.volatile.fetch_sub(volatile, Ordering::Relaxed);
        self.sessions.live.fetch_sub(sessions, Ordering::Relaxed);
        self.sessions
            .destroyed
            .fetch_add(sessions as u64, Ordering::Relaxed);
    }

    /// The live keys matching `filter` (KEYS).
    pub fn keys(&self, filter: KeyFilter<'_>, now_ms: u64) -> Vec<Bytes> {
        let mut keys = Vec::new();
        for shard in 0..SHARDS {
            scan::for_each_in_shard(&self.map, shard, |key, entry| {
                if !entry.is_expired(now_ms) && filter.accepts(key, entry) {
                    keys.push(key.clone());
                }
            });
        }
        keys
    }

    /// One SCAN step from `cursor`: examines about `count` keys and returns the next cursor (0
    /// when the iteration is complete) and the live keys among them that pass `filter`.
    ///
    /// Keys are visited shard by shard, in the order of their hash inside a shard; the cursor is
    /// the shard and the hash position to resume from. As in Redis, a key present for the whole
    /// iteration is returned, and exactly once if the keyspace does not change; this holds across
    /// table resizes too, because positions are hashes rather than bucket indexes.
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        filter: KeyFilter<'_>,
        now_ms: u64,
    ) -> (u64, Vec<Bytes>) {
        let mut shard = (cursor >> POSITION_BITS) as usize;
        let mut from = cursor & POSITION_MASK;
        let mut budget = count.max(1);
        let mut found = Vec::new();
        let mut candidates: Vec<(u64, Bytes, bool)> = Vec::new();
        while shard < SHARDS {
            candidates.clear();
            scan::for_each_in_shard(&self.map, shard, |key, entry| {
                let position = self.map.hash_usize(key) as u64 & POSITION_MASK;
                if position >= from {
                    let wanted = !entry.is_expired(now_ms) && filter.accepts(key, entry);
                    candidates.push((position, key.clone(), wanted));
                }
            });
            if candidates.len() <= budget {
                budget -= candidates.len();
                found.extend(candidates.drain(..).filter(|c| c.2).map(|c| c.1));
                shard += 1;
                from = 0;
                if budget == 0 {
                    break;
                }
                continue;
            }
            // More keys than the budget: take the `budget` lowest positions, and every key tied
            // with the last of them, so that the cursor never splits equal positions.
            candidates.select_nth_unstable_by_key(budget - 1, |c| c.0);
            let boundary = candidates[budget - 1].0;
            found.extend(
                candidates
                    .drain(..)
                    .filter(|c| c.0 <= boundary && c.2)
                    .map(|c| c.1),
            );
            if boundary == POSITION_MASK {
                shard += 1;
                from = 0;
            } else {
                from = boundary + 1;
            }
            break;
        }
        let next = if shard >= SHARDS {
            0
        } else {
            ((shard as u64) << POSITION_BITS) | from
        };
        (next, found)
    }

    /// Handles one queued key at `tick`: removes it if dead, queues it again if its deadline
    /// moved later, forgets it if the position is stale. The removal happens with the shard lock
    /// released before the bookkeeping, as the per-user index requires.
    fn expire_one(&self, key: &Bytes, tick: u32, now_ms: u64, rec: &Recording<'_>) {
        let MapEntry::Occupied(mut occupied) = self.map.entry(key.clone()) else {
            return;
        };
        let entry = occupied.get_mut();
        if entry.queued_tick != tick {
            return;
        }
        if entry.is_expired(now_ms) {
            self.journal_delete(occupied.key(), rec);
            let (key, entry) = occupied.remove_entry();
            self.after_remove(&key, &entry, Before::of(&key, &entry), Removal::Expired);
            return;
        }
        entry.queued_tick = 0;
        if entry.expires_at_ms != 0 {
            let tick = self.index.tick_of(entry.expires_at_ms);
            entry.queued_tick = tick;
            self.index.queue(occupied.key().clone(), tick);
        }
    }

    /// The active expiry task: every `interval` (and whenever a manual clock moves), reclaims
    /// due keys, yielding to other tasks between batches. Ends when `shutdown` resolves.
    pub async fn run_active_expiry(
        self: Arc<Self>,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticker.tick() => {}
                _ = self.clock.moved() => {}
            }
            self.expire_in_batches().await;
            self.expiry_cycles.send_modify(|cycles| *cycles += 1);
        }
    }

    async fn expire_in_batches(&self) {
        let now_ms = self.now_ms();
        for (tick, keys) in self.index.take_due(self.index.due_tick(now_ms)) {
            for batch in keys.chunks(EXPIRY_BATCH) {
                {
                    // Not held across the yield: a snapshot may need to close the journal.
                    let rec = self.journal.recording();
                    batch
                        .iter()
                        .for_each(|key| self.expire_one(key, tick, now_ms, &rec));
                }
                tokio::task::yield_now().await;
            }
        }
    }

    /// Reclaims every key that is dead now, in one go (for tests and tools; the server uses the
    /// active expiry task, which yields between batches).
    pub fn reclaim_expired(&self) {
        let now_ms = self.now_ms();
        for (tick, keys) in self.index.take_due(self.index.due_tick(now_ms)) {
            let rec = self.journal.recording();
            keys.iter()
                .for_each(|key| self.expire_one(key, tick, now_ms, &rec));
        }
    }

    /// Bookkeeping after `entry` left the keyspace (its shard lock released): what it was
    /// counted as (`before`: in the volatile count, in `used_memory`), the expiry and eviction
    /// counters, and for a session its counters and its place in the per-user index.
    fn after_remove(&self, key: &Bytes, entry: &Entry, before: Before, why: Removal) {
        self.count_removal(entry, before, why);
        if let Value::Session(session) = &entry.value {
            if let Some(user) = &session.user {
                self.unindex(user, key);
            }
        }
    }

    /// [`Store::after_remove`] but for the per-user index, for a caller that holds the user's
    /// list and has taken the session out of it already.
    fn count_removal(&self, entry: &Entry, before: Before, why: Removal) {
        self.changes.add(1);
        self.used.sub(before.footprint);
        if before.had_deadline {
            self.volatile.fetch_sub(1, Ordering::Relaxed);
        }
        match why {
            Removal::Expired => {
                self.expired_keys.fetch_add(1, Ordering::Relaxed);
            }
            Removal::Evicted => {
                self.evicted_keys.fetch_add(1, Ordering::Relaxed);
            }
            Removal::Deleted => {}
        }
        if matches!(entry.value, Value::Session(_)) {
            self.sessions.live.fetch_sub(1, Ordering::Relaxed);
            let counter = match why {
                Removal::Expired => &self.sessions.expired,
                Removal::Deleted | Removal::Evicted => &self.sessions.destroyed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Bookkeeping after `entry` (stored under `stored_key`) was written, `before` being what it
    /// was counted as until then: the count of keys with a deadline, `used_memory`, the last use,
    /// and the entry's position in the expiry index.
    fn after_write(
        &self,
        stored_key: &Bytes,
        entry: &mut Entry,
        before: Before,
        now_ms: u64,
        rec: &Recording<'_>,
    ) {
        self.changes.add(1);
        let footprint = entry.footprint(stored_key);
        if footprint >= before.footprint {
            self.used.add(footprint - before.footprint);
        } else {
            self.used.sub(before.footprint - footprint);
        }
        entry.last_use.touch(self.lru_seconds(now_ms));
        let had_deadline = before.had_deadline;
        if rec.on() {
            self.journal.push(
                self.map.determine_map(stored_key),
                Record::of(stored_key, entry),
            );
        }
        let has_deadline = entry.expires_at_ms != 0;
        if has_deadline != had_deadline {
            self.volatile
                .fetch_add(if has_deadline { 1 } else { -1 }, Ordering::Relaxed);
        }
        if has_deadline {
            let tick = self.index.tick_of(entry.expires_at_ms);
            if entry.queued_tick == 0 || tick < entry.queued_tick {
                entry.queued_tick = tick;
                self.index.queue(stored_key.clone(), tick);
            }
        }
    }

    /// The journal of changes that a snapshot in progress records.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Changes made since start (for "changes since the last save").
    pub fn changes(&self) -> u64 {
        self.changes.sum()
    }

    /// How many shards the map has (the snapshot writer's unit of work).
    pub fn shard_count(&self) -> usize {
        SHARDS
    }

    /// The live records of shard `shard`: handles taken under its read lock, which is released
    /// before they are encoded.
    pub fn snapshot_shard(&self, shard: usize) -> Vec<Record> {
        let now_ms = self.now_ms();
        let mut records = Vec::new();
        scan::for_each_in_shard(&self.map, shard, |key, entry| {
            if !entry.is_expired(now_ms) {
                records.push(Record::of(key, entry));
            }
        });
        records
    }

    /// Applies one record of a snapshot being loaded: the key takes the record's state, or is
    /// removed for a deletion or a deadline that has passed. Counters of activity (created,
    /// destroyed, expired) are not touched: loading is not activity.
    pub fn restore(&self, record: Record, now_ms: u64) {
        let key = record.key().clone();
        let record_key = &key[..];
        let restored = record
            .into_entry()
            .filter(|(_, entry)| !entry.is_expired(now_ms));
        let old = match restored {
            None => self.map.remove(&key).map(|(_, old)| old),
            Some((key, mut entry)) => {
                let tick = self.index.tick_of(entry.expires_at_ms);
                if entry.expires_at_ms != 0 {
                    self.volatile.fetch_add(1, Ordering::Relaxed);
                    entry.queued_tick = tick;
                    self.index.queue(key.clone(), tick);
                }
                if matches!(entry.value, Value::Session(_)) {
                    self.sessions.live.fetch_add(1, Ordering::Relaxed);
                }
                entry.last_use.touch(self.lru_seconds(now_ms));
                self.used.add(entry.footprint(&key));
                self.map.insert(key, entry)
            }
        };
        if let Some(old) = old {
            self.used.sub(old.footprint(record_key));
            if old.expires_at_ms != 0 {
                self.volatile.fetch_sub(1, Ordering::Relaxed);
            }
            if matches!(old.value, Value::Session(_)) {
                self.sessions.live.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Queued positions in the expiry index (stale ones included), for INFO.
    pub fn expiry_index_len(&self) -> usize {
        self.index.len()
    }
}

/// Replaces `entry` with `new`, keeping its position in the expiry index.
fn replace(entry: &mut Entry, new: Entry) {
    let queued_tick = entry.queued_tick;
    *entry = new;
    entry.queued_tick = queued_tick;
}
