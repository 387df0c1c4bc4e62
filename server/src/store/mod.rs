//! The keyspace: a sharded concurrent map of keys to typed values with deadlines. A [`Store`]
//! is one database (SELECT's); [`Databases`] holds a server's, and what they share.
//!
//! There is no global lock: the map is a table of many shards (`table.rs`), and every operation
//! holds one shard's lock only for as long as it reads or writes that key (the expiry task, up
//! to `EXPIRY_GROUP` due keys of the shard; RENAME, both keys' shards, lower index first; an
//! atomic block (EXEC, [`Store::atomic`]), its keys' shards in ascending order for its whole
//! run) — never across an `.await`.
//! Expired keys are invisible at once (every access compares the deadline with the clock) and
//! are reclaimed without any read by [`Databases::run_active_expiry`], the active expiry task;
//! see [`expiry`] for the deadline index that makes that cheap.
//!
//! Only this module mutates entries, so the bookkeeping that follows every write lives in one
//! place: the totals over the keys (`used_memory`, the keys with a deadline, the live sessions)
//! change only through `Store::account` (`accounting.rs`).

mod accounting;
mod apply;
mod databases;
mod entry;
pub mod evict;
pub mod expiry;
pub mod feed;
mod fields;
pub mod journal;
mod lazyfree;
mod local_expiry;
pub mod long_blocks;
mod record;
mod rename;
pub mod session;
mod table;
mod user_sessions;
mod value;
mod watched;

use std::sync::atomic::{AtomicI64, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use dashmap::DashMap;
use hashbrown::hash_table::Entry as TableEntry;
use tokio::sync::watch;

use accounting::{Before, Removal, Tally};
pub use apply::NoSuchDatabase;
pub use databases::{Databases, Keyspaces, Moved, EXPIRY_LAG_BOUNDS_MS, MAX_DATABASES};
pub use entry::{Node, NodeMut, KEY_OVERHEAD};
use expiry::ExpiryIndex;
use feed::Feed;
pub use fields::Fields;
use journal::{Journal, Recording};
pub use local_expiry::local_writes;
pub use long_blocks::LongBlocks;
pub use record::{Ending, Record};
pub use rename::Renamed;
pub use session::SessionStats;
pub(crate) use table::on_multi_thread_worker;
use table::{is, Table};
use user_sessions::UserSessions;
pub use value::{owned, Entry, SessionRecord, Value, ValueMut, ValueRef};
pub use watched::Dirty;
use watched::Watches;

use crate::clock::Clock;
use crate::glob;
use crate::notify::{Class, Notifier, SessionEvent};
use crate::stats::StripedCounter;

/// Shards in the map: enough that writers on different cores rarely meet, and that SCAN's unit
/// of work (one shard) stays small for large keyspaces.
pub(crate) const SHARDS: usize = 1024;
const SHARD_BITS: u32 = SHARDS.trailing_zeros();
/// The bits of a key's hash that order keys inside a shard for SCAN.
const POSITION_BITS: u32 = 64 - SHARD_BITS;
const POSITION_MASK: u64 = (1 << POSITION_BITS) - 1;

/// The expiry index is compacted (stale positions dropped) once it holds more positions than
/// twice the keys with a deadline, or than this.
const INDEX_FLOOR: usize = 1024;

/// One database's keyspace, shared by every connection (see [`Databases`] for a server's).
#[derive(Debug)]
pub struct Store {
    map: Table,
    index: ExpiryIndex,
    /// User → that user's session IDs, oldest first; see [`session`].
    users: DashMap<Bytes, UserSessions, ahash::RandomState>,
    clock: Clock,
    volatile: AtomicI64,
    expired_keys: AtomicU64,
    sessions: SessionStats,
    /// Changes recorded while a snapshot is written, shared by every database (one instant
    /// for the whole snapshot); records name their database.
    journal: Arc<Journal>,
    /// The change feed (the append-only log's and replication's), shared by every database;
    /// records name their database.
    feed: Arc<Feed>,
    /// Every change ever made (writes and removals), for "changes since the last save".
    changes: StripedCounter,
    /// The accounted bytes of every key of every database (`used_memory`, server-wide as
    /// `maxmemory` is); see [`Node::footprint`].
    used: Arc<StripedCounter>,
    /// Keys held, as accounted (a key freed in the background leaves it late): eviction's hint
    /// of which databases to sample.
    keys: StripedCounter,
    /// This database's place among its server's (fixed; SELECT's index is `logical`).
    db: u16,
    evicted_keys: AtomicU64,
    /// When the store was made, Unix ms: the origin of the LRU clock.
    started_ms: u64,
    expiry_cycles: watch::Sender<u64>,
    /// Tables flushed by FLUSHALL/FLUSHDB ASYNC, freed by a background thread: the server's
    /// queue and thread, shared by its databases.
    lazy_free: Arc<lazyfree::LazyFree>,
    /// The keys connections WATCH, one list per database (SELECT's index), shared by the
    /// databases of a server: a list stays with its index when SWAPDB swaps what the indexes
    /// name, as Redis's watched keys stay with their database's id.
    watch_lists: Arc<[Watches]>,
    /// The index (SELECT's) this database has now: its watch list and its journal records'.
    /// Changed by SWAPDB only with every shard of this database locked, so stable under any.
    logical: AtomicU16,
    /// Users in the per-user index when last counted outside an atomic block (INFO inside
    /// EXEC reads this: counting takes the index's locks, which must not be taken after shard
    /// locks).
    users_counted: AtomicU64,
    /// Atomic blocks that run long (scripts), and the shards they hold, in every database
    /// (shared).
    long_blocks: Arc<LongBlocks>,
    /// Where keyspace and session events go (the server's, shared by its databases).
    notifier: Arc<Notifier>,
    /// On a writable replica, the keys its clients gave a deadline (see [`local_expiry`]).
    local: local_expiry::LocalVolatile,
}

/// What the databases of one server share (see [`Databases`]).
#[derive(Clone)]
pub(crate) struct Common {
    /// The accounted bytes (`used_memory`).
    pub(crate) used: Arc<StripedCounter>,
    /// The snapshot journal.
    pub(crate) journal: Arc<Journal>,
    /// The change feed.
    pub(crate) feed: Arc<Feed>,
    /// The keys' hasher: a key is in the same shard of every database.
    pub(crate) hasher: ahash::RandomState,
    /// The watch list of each database index.
    pub(crate) watch_lists: Arc<[Watches]>,
    /// FLUSHDB/FLUSHALL ASYNC's queue, and its one thread.
    pub(crate) lazy_free: Arc<lazyfree::LazyFree>,
    /// The long atomic blocks: a key is in the same shard of every database, so a shard
    /// number names it in all of them (a long script in one database makes commands on that
    /// shard number wait in the others too: rare with 1024 shards, and never too little).
    pub(crate) long_blocks: Arc<LongBlocks>,
    /// The publisher of keyspace and session events.
    pub(crate) notifier: Arc<Notifier>,
}

/// How a write changed a key, for the feed.
#[derive(Debug)]
pub(crate) enum Wrote {
    /// Created or replaced: its whole state.
    Whole,
    /// Changed in place: for a hash or a set, the field names touched (tracked only while the
    /// feed is on).
    InPlace(Vec<Bytes>),
}

/// Stops tracking field names if `tracking`, and returns those touched.
#[inline]
fn untrack_fields(tracking: bool) -> Vec<Bytes> {
    if tracking {
        fields::take_touched()
    } else {
        Vec::new()
    }
}

/// Why a command's removal of `node` at `now_ms` counts: `Expired` if its deadline had passed
/// (nobody had reclaimed it yet), `Deleted` otherwise.
fn ended_by(node: &Node, now_ms: u64) -> Removal {
    if node.is_expired(now_ms) {
        Removal::Expired
    } else {
        Removal::Deleted
    }
}

/// A key's whole state as the feed carries it.
fn feed_record(node: &Node) -> Record {
    Record::of(node)
}

/// What a filter for SCAN and KEYS asks.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyFilter<'a> {
    /// A glob pattern the key must match (compiled once for the whole walk).
    pub pattern: Option<&'a glob::Pattern>,
    /// The type name the value must have.
    pub type_name: Option<&'a str>,
}

impl KeyFilter<'_> {
    fn accepts(&self, node: &Node) -> bool {
        self.pattern.is_none_or(|p| p.matches(node.key()))
            && self.type_name.is_none_or(|t| node.value().type_name() == t)
    }
}

impl Store {
    /// An empty store reading time from `clock`: database 0, on its own.
    pub fn new(clock: Clock) -> Store {
        let now = clock.now_ms();
        Store::new_db(
            clock,
            now,
            0,
            Common {
                used: Arc::default(),
                journal: Arc::new(Journal::new(SHARDS)),
                feed: Arc::default(),
                hasher: ahash::RandomState::new(),
                watch_lists: Arc::from([Watches::default()]),
                lazy_free: Arc::default(),
                long_blocks: Arc::default(),
                notifier: Arc::default(),
            },
        )
    }

    /// An empty database `db` reading time from `clock`, its deadlines counted from `now`
    /// (every database of a server has the same origin), sharing `shared` with the other
    /// databases of its server (see [`Databases`]).
    pub(crate) fn new_db(clock: Clock, now: u64, db: u16, common: Common) -> Store {
        let Common {
            used,
            journal,
            feed,
            hasher,
            watch_lists,
            lazy_free,
            long_blocks,
            notifier,
        } = common;
        Store {
            map: Table::with_hasher(SHARDS, hasher),
            index: ExpiryIndex::new(now),
            users: DashMap::with_hasher(ahash::RandomState::new()),
            clock,
            volatile: AtomicI64::new(0),
            expired_keys: AtomicU64::new(0),
            sessions: SessionStats::default(),
            journal,
            feed,
            changes: StripedCounter::default(),
            used,
            keys: StripedCounter::default(),
            db,
            evicted_keys: AtomicU64::new(0),
            started_ms: now,
            expiry_cycles: watch::Sender::new(0),
            lazy_free,
            watch_lists,
            logical: AtomicU16::new(db),
            long_blocks,
            users_counted: AtomicU64::new(0),
            notifier,
            local: local_expiry::LocalVolatile::default(),
        }
    }

    /// This database's index now (SELECT's; SWAPDB changes it). Stable while any of its
    /// shards is locked.
    #[inline]
    pub(crate) fn logical(&self) -> u16 {
        self.logical.load(Ordering::Relaxed)
    }

    /// The watch list of this database's index now.
    #[inline]
    fn watches(&self) -> &Watches {
        let lists = &self.watch_lists;
        // `logical` indexes `watch_lists`: both are set by `Databases`, which swaps indexes of
        // databases it has; a lone store has index 0 and one list.
        &lists[usize::from(self.logical()).min(lists.len() - 1)]
    }

    /// Where this database's keyspace and session events go.
    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
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
        self.len() == 0
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
    pub fn read<R>(&self, key: &[u8], now_ms: u64, f: impl FnOnce(Option<&Node>) -> R) -> R {
        let (hash, shard_index) = self.map.locate(key);
        let shard = self.map.read(shard_index);
        match shard.find(hash, is(key)) {
            Some(node) if !node.is_expired(now_ms) => {
                node.last_use().touch(self.lru_seconds(now_ms));
                f(Some(node))
            }
            _ => f(None),
        }
    }

    /// Starts loading the node of `key` into the cache, for a connection about to run a batch
    /// of pipelined commands: the shard's slots are searched now, under its read lock, but no
    /// node is read (every node whose tag matches the key's is prefetched, usually just the
    /// one), so the batch's nodes arrive together instead of one cache miss after another when
    /// its commands run. Counts no use and changes nothing.
    pub fn prefetch(&self, key: &[u8]) {
        /// A session-shaped string (a 216-byte block) spans four cache lines.
        const LINES: usize = 4;
        let (hash, shard_index) = self.map.locate(key);
        if self.long_blocks.holds(shard_index) {
            // Its lock would be waited for until the block ends, on the runtime's thread.
            return;
        }
        table::prefetch(&self.map.read(shard_index), hash, LINES);
    }

    /// The atomic blocks that run long, and what they hold.
    pub fn long_blocks(&self) -> &LongBlocks {
        &self.long_blocks
    }

    /// Runs `f` on the entry at `key`, expired or not, under a read lock, without counting a use.
    fn peek<R>(&self, key: &[u8], f: impl FnOnce(Option<&Node>) -> R) -> R {
        let (hash, shard_index) = self.map.locate(key);
        f(self.map.read(shard_index).find(hash, is(key)))
    }

    /// `now_ms` on the LRU clock: seconds since the store was made.
    #[inline]
    fn lru_seconds(&self, now_ms: u64) -> u32 {
        (now_ms.saturating_sub(self.started_ms) / 1000) as u32
    }

    /// The bytes the keyspace is accounted for (`used_memory`): see [`Node::footprint`].
    pub fn used_memory(&self) -> u64 {
        // The stripes are read one by one: a subtraction seen without the addition it follows
        // can make the sum dip below zero (wrap) for a moment.
        (self.used.sum() as i64).max(0) as u64
    }

    /// The map shard `key` falls in, for the set of shards an atomic block holds.
    pub fn shard_of_key(&self, key: &[u8]) -> usize {
        self.map.locate(key).1
    }

    /// Runs `f` as one atomic block (EXEC): `shards` (`None`: every shard) are write-locked in
    /// ascending order for all of it, and the operations `f` runs on this thread use them, so no
    /// other client sees part of what `f` does. The journal's gate is taken once, before the
    /// shard locks, and shared by those operations (see [`journal::Nested`]). `shards` must
    /// cover every key `f` touches. Inside, the per-user index is not locked (its locks come
    /// before shard locks): sessions removed are unindexed once the locks are released. Never
    /// call with a shard lock held, nor evict inside (eviction picks keys of any shard).
    pub fn atomic<R: 'static>(&self, shards: Option<&[usize]>, f: impl FnOnce() -> R) -> R {
        if Table::in_block() {
            // Nested: the running block must hold these shards (checked there).
            return self.map.atomic(shards, f);
        }
        let rec = self.journal.recording();
        let result = self.map.atomic(shards, || {
            let _nested = journal::Nested::enter(&rec);
            // One frame for the block, emitted while its locks are held.
            let _group = self.feed.group();
            f()
        });
        drop(rec);
        self.unindex_deferred();
        self.bound_index();
        result
    }

    /// Whether this thread runs in an atomic block ([`Store::atomic`]).
    pub fn in_block() -> bool {
        Table::in_block()
    }

    /// Whether the atomic block running on this thread holds map shard `shard`; `None` outside
    /// a block. A script checks it before each command it runs ([`crate::script`]).
    pub fn block_holds(&self, shard: usize) -> Option<bool> {
        self.map.holds(shard)
    }

    /// Adds map shard `shard` to the atomic block running on this thread if it is free now,
    /// without waiting; whether the block holds it afterwards (see [`Table::try_hold`]).
    pub fn block_try_hold(&self, shard: usize) -> bool {
        self.map.try_hold(shard)
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
        key: &[u8],
        now_ms: u64,
        f: impl FnOnce(Option<NodeMut<'_>>) -> (Option<Entry>, R),
    ) -> R {
        let rec = self.journal.recording();
        let (hash, shard_index) = self.map.locate(key);
        let mut shard = self.map.write(shard_index);
        let mut dead = None;
        let vacant = match shard.entry(hash, is(key), self.map.rehash()) {
            TableEntry::Occupied(occupied) if occupied.get().is_expired(now_ms) => {
                // Reclaimed on the spot; its bookkeeping waits for the lock's release.
                self.journal_delete(shard_index, key, &rec, true, Removal::Expired);
                let (old, vacant) = occupied.remove();
                dead = Some(old);
                vacant
            }
            TableEntry::Occupied(mut occupied) => {
                let node = occupied.get_mut();
                let before = Before::of(node);
                let tracking = self.track_fields(node);
                let (replacement, reply) = f(Some(NodeMut::new(node)));
                let touched = untrack_fields(tracking);
                let wrote = match replacement {
                    Some(new) => {
                        node.replace(new);
                        Wrote::Whole
                    }
                    None => Wrote::InPlace(touched),
                };
                self.after_write(shard_index, hash, node, before, now_ms, &rec, wrote);
                drop(shard);
                self.bound_index();
                return reply;
            }
            TableEntry::Vacant(vacant) => vacant,
        };
        let (created, reply) = f(None);
        let added = created.is_some();
        if let Some(created) = created {
            let mut node = Node::new(key, created);
            let wrote = Wrote::Whole;
            self.after_write(
                shard_index,
                hash,
                &mut node,
                Before::NOTHING,
                now_ms,
                &rec,
                wrote,
            );
            vacant.insert(node);
        }
        drop(shard);
        if let Some(old) = dead {
            self.after_remove(&old, Before::of(&old), Removal::Expired);
        }
        if added {
            // Redis's `dbAdd`: before the command's own event, after the dead key's.
            self.notify(Class::NEW, "new", key);
        }
        self.bound_index();
        reply
    }

    /// Inserts `entry` under `key` if no key of that name exists (dead or alive); hands it back
    /// otherwise.
    fn insert_new(
        &self,
        key: &[u8],
        entry: Entry,
        now_ms: u64,
        rec: &Recording<'_>,
    ) -> Result<(), Entry> {
        let (hash, shard_index) = self.map.locate(key);
        let mut shard = self.map.write(shard_index);
        match shard.entry(hash, is(key), self.map.rehash()) {
            TableEntry::Occupied(_) => return Err(entry),
            TableEntry::Vacant(vacant) => {
                let mut node = Node::new(key, entry);
                let wrote = Wrote::Whole;
                self.after_write(
                    shard_index,
                    hash,
                    &mut node,
                    Before::NOTHING,
                    now_ms,
                    rec,
                    wrote,
                );
                vacant.insert(node);
            }
        }
        drop(shard);
        self.bound_index();
        Ok(())
    }

    /// Removes `key` if `judge` gives a reason for its entry (dead or alive), under the shard's
    /// write lock, journaling the removal there with that reason. The caller does the
    /// bookkeeping.
    fn remove_if(
        &self,
        key: &[u8],
        rec: &Recording<'_>,
        judge: impl FnOnce(&Node) -> Option<Removal>,
    ) -> Option<(Node, Removal)> {
        self.take_if(key, rec, true, judge)
    }

    /// [`Store::remove_if`], recording the removal in the feed only if `feed` (a REGENERATE
    /// records its own [`Ending::Regenerated`] once the new ID exists).
    fn take_if(
        &self,
        key: &[u8],
        rec: &Recording<'_>,
        feed: bool,
        judge: impl FnOnce(&Node) -> Option<Removal>,
    ) -> Option<(Node, Removal)> {
        let (hash, shard_index) = self.map.locate(key);
        let mut shard = self.map.write(shard_index);
        let occupied = shard.find_entry(hash, is(key)).ok()?;
        let why = judge(occupied.get())?;
        if feed {
            self.feed_delete(key, why);
        }
        self.journal_delete_only(shard_index, key, rec, false);
        Some((occupied.remove().0, why))
    }

    /// Journals that `key` was removed (`why`), and tells its watchers; call under the key's
    /// shard lock. `reclaimed`: the key was past its deadline.
    fn journal_delete(
        &self,
        shard_index: usize,
        key: &[u8],
        rec: &Recording<'_>,
        reclaimed: bool,
        why: Removal,
    ) {
        self.feed_delete(key, why);
        self.journal_delete_only(shard_index, key, rec, reclaimed);
    }

    /// Records the removal of `key` in the feed: a command's as [`Record::Delete`], the
    /// server's own (expiry, eviction) as [`Record::Ended`], so that a replica announces what
    /// its primary did.
    fn feed_delete(&self, key: &[u8], why: Removal) {
        if self.feed.on() {
            let key = Bytes::copy_from_slice(key);
            let record = match why {
                Removal::Deleted => Record::Delete { key },
                Removal::Expired => Record::Ended {
                    key,
                    why: Ending::Expired,
                },
                Removal::Evicted => Record::Ended {
                    key,
                    why: Ending::Evicted,
                },
            };
            self.feed.push(self.logical(), &record);
        }
    }

    /// [`Store::journal_delete`] but for the feed: a flush is one record of its own.
    fn journal_delete_only(
        &self,
        shard_index: usize,
        key: &[u8],
        rec: &Recording<'_>,
        reclaimed: bool,
    ) {
        self.watches().touch(shard_index, key, reclaimed);
        if rec.on() {
            self.journal.push(
                self.logical(),
                shard_index,
                Record::Delete {
                    key: Bytes::copy_from_slice(key),
                },
            );
        }
    }

    /// Runs `f` on the live entry at `key` under the shard's write lock; `f` returns whether to
    /// delete the key. `None` when the key is missing or expired.
    pub fn modify<R>(
        &self,
        key: &[u8],
        now_ms: u64,
        f: impl FnOnce(NodeMut<'_>) -> (bool, R),
    ) -> Option<R> {
        let rec = self.journal.recording();
        let (hash, shard_index) = self.map.locate(key);
        let mut shard = self.map.write(shard_index);
        let mut occupied = shard.find_entry(hash, is(key)).ok()?;
        let before = Before::of(occupied.get());
        let (why, reply) = if occupied.get().is_expired(now_ms) {
            (Removal::Expired, None)
        } else {
            let tracking = self.track_fields(occupied.get());
            let (delete, reply) = f(NodeMut::new(occupied.get_mut()));
            let touched = untrack_fields(tracking);
            if !delete {
                let wrote = Wrote::InPlace(touched);
                let node = occupied.get_mut();
                self.after_write(shard_index, hash, node, before, now_ms, &rec, wrote);
                drop(shard);
                self.bound_index();
                return Some(reply);
            }
            (Removal::Deleted, Some(reply))
        };
        self.journal_delete(shard_index, key, &rec, why == Removal::Expired, why);
        let (node, _) = occupied.remove();
        drop(shard);
        self.after_remove(&node, before, why);
        reply
    }

    /// Removes `key`; returns the live entry it held, `None` if it was missing or expired.
    pub fn remove(&self, key: &[u8], now_ms: u64) -> Option<Node> {
        let rec = self.journal.recording();
        let (node, why) = self.remove_if(key, &rec, |node| Some(ended_by(node, now_ms)))?;
        self.after_remove(&node, Before::of(&node), why);
        (why == Removal::Deleted).then_some(node)
    }

    /// Removes every key.
    pub fn flush(&self) {
        let rec = self.journal.recording();
        // The indexes are cleared first: a key written into an already flushed shard while the
        // flush goes on must keep its expiry-index position and its place in its user's list.
        // Positions of keys the flush removes are stale, and skipped later; sessions indexed
        // meanwhile that the flush removes are unindexed (`unindex_flushed`). In an atomic
        // block (which holds every shard: nothing is written meanwhile) the per-user index is
        // not locked: each flushed session is unindexed after the block (see `unindex`).
        if !Table::in_block() {
            self.users.clear();
        }
        self.index.clear();
        if self.feed.on() && !Table::in_block() {
            // One record for the flush, in the stream between the changes before it and those
            // after it in every shard: the shards are held together (a write in a shard
            // already emptied must not be replayed before the flush).
            self.map.atomic(None, || self.flush_shards(&rec));
            drop(rec);
            self.unindex_deferred();
            return;
        }
        self.flush_shards(&rec);
    }

    /// [`Store::flush`] after its indexes were cleared: every shard emptied in turn.
    fn flush_shards(&self, rec: &Recording<'_>) {
        if self.feed.on() {
            self.feed.push(self.logical(), &Record::FlushDb);
        }
        let (mut flushed, mut removed) = (Tally::NOTHING, 0);
        for shard_index in 0..self.map.shard_count() {
            let mut shard = self.map.write(shard_index);
            let sessions_before = flushed.sessions;
            for node in shard.iter() {
                flushed.add(node);
                removed += 1;
                self.journal_delete_only(shard_index, node.key(), rec, false);
            }
            let nodes = std::mem::take(&mut *shard);
            drop(shard);
            // Unindexed (a second walk, only where there are sessions) and freed with the lock
            // released.
            if flushed.sessions > sessions_before {
                self.unindex_flushed(&nodes);
                self.announce_flushed(&nodes);
            }
            drop(nodes);
        }
        self.changes.add(removed);
        self.account(flushed, Tally::NOTHING);
        self.sessions
            .destroyed
            .fetch_add(flushed.sessions, Ordering::Relaxed);
    }

    /// Takes the sessions of a flushed shard out of their users' lists. The per-user index is
    /// cleared before a flush, but a SESSION.CREATE racing the flush may have indexed a session
    /// in a shard the flush had not reached yet, and so removed: without this, its user would
    /// count it until a LIST pruned it. O(1) a session (a miss for all but those).
    fn unindex_flushed(&self, nodes: &table::Shard) {
        for node in nodes.iter() {
            if let Some(user) = node.as_session().and_then(|s| s.user.as_ref()) {
                self.unindex(user, node.key());
            }
        }
    }

    /// Announces the sessions of a flushed shard: FLUSHDB and FLUSHALL end each, `destroyed`
    /// (`expired` if already past its deadline, which nobody had announced yet). Keys are not
    /// announced, as in Redis. A walk only when session events reach someone.
    fn announce_flushed(&self, nodes: &table::Shard) {
        if !self.notifier.wants_sessions() {
            return;
        }
        let now_ms = self.now_ms();
        for node in nodes.iter().filter(|node| node.is_session()) {
            let why = if node.is_expired(now_ms) {
                Removal::Expired
            } else {
                Removal::Deleted
            };
            self.announce_removal(node, why);
        }
    }

    /// Removes every key as [`Store::flush`] does, but frees them on a background thread: each
    /// shard's table is swapped for an empty one under its lock, so the keyspace is empty for
    /// every client at once and the caller's thread only does a swap per shard. The counters
    /// summed over keys (`used_memory`, volatile keys, live sessions) drop when the keys are
    /// freed; [`Store::lazyfree_pending`] says how many are still to be. While a snapshot is
    /// written, each key's removal must be journalled under its shard's lock: then this is
    /// [`Store::flush`].
    pub fn flush_async(self: &Arc<Self>) {
        let rec = self.journal.recording();
        if rec.on() || Table::in_block() {
            drop(rec);
            return self.flush();
        }
        self.users.clear();
        self.index.clear();
        let swap_out = || {
            let mut tables = Vec::new();
            let mut removed = 0;
            for shard_index in 0..self.map.shard_count() {
                let mut shard = self.map.write(shard_index);
                if !shard.is_empty() {
                    for node in shard.iter() {
                        self.watches().touch(shard_index, node.key(), false);
                    }
                    removed += shard.len() as u64;
                    tables.push(std::mem::take(&mut *shard));
                }
            }
            (tables, removed)
        };
        let (tables, removed) = if self.feed.on() {
            // One record, with every shard held (see `flush`).
            self.map.atomic(None, || {
                self.feed.push(self.logical(), &Record::FlushDb);
                swap_out()
            })
        } else {
            swap_out()
        };
        drop(rec);
        self.changes.add(removed);
        if tables.is_empty() || !self.lazy_free.push(self, tables, removed) {
            return;
        }
        let store = Arc::clone(self);
        if let Err(error) = std::thread::Builder::new()
            .name("sessiond-lazyfree".to_owned())
            .spawn(move || store.free_flushed())
        {
            // No thread: free here rather than keep the memory.
            tracing::warn!(%error, "cannot start the lazy-free thread; freeing on this one");
            self.free_flushed();
        }
    }

    /// Frees the tables [`Store::flush_async`] queued, and takes their keys out of the counters.
    /// (Of every database of the server: the queue is theirs.)
    fn free_flushed(&self) {
        while let Some((store, table)) = self.lazy_free.next() {
            store.unindex_flushed(&table);
            store.announce_flushed(&table);
            let freed = lazyfree::free(table);
            store.account(freed.tally, Tally::NOTHING);
            store
                .sessions
                .destroyed
                .fetch_add(freed.tally.sessions, Ordering::Relaxed);
            drop(store);
            self.lazy_free.done(freed.keys);
        }
    }

    /// Keys flushed by FLUSHALL ASYNC and not yet freed, in every database of the server
    /// (Redis's `lazyfree_pending_objects`).
    pub fn lazyfree_pending(&self) -> u64 {
        self.lazy_free.pending()
    }

    /// Keys flushed by FLUSHALL ASYNC and not yet freed, and keys freed in the background since
    /// start, read at one instant (INFO's `lazyfree_pending_objects` and `lazyfreed_objects`).
    pub fn lazyfree_counts(&self) -> (u64, u64) {
        self.lazy_free.counts()
    }

    /// A receiver that sees the number of keys freed in the background since start (Redis's
    /// `lazyfreed_objects`); tests wait on it instead of sleeping.
    pub fn lazyfreed(&self) -> watch::Receiver<u64> {
        self.lazy_free.freed()
    }

    /// The live keys matching `filter` (KEYS).
    pub fn keys(&self, filter: KeyFilter<'_>, now_ms: u64) -> Vec<Bytes> {
        self.keys_within(filter, now_ms, |_| true)
            .unwrap_or_default()
    }

    /// The live keys matching `filter` (KEYS), while `within` accepts each key's length: the
    /// keys, or `None` as soon as it refuses one (a reply too large to build).
    pub fn keys_within(
        &self,
        filter: KeyFilter<'_>,
        now_ms: u64,
        mut within: impl FnMut(usize) -> bool,
    ) -> Option<Vec<Bytes>> {
        let mut keys = Vec::new();
        for shard in 0..self.map.shard_count() {
            for node in self.map.read(shard).iter() {
                if !node.is_expired(now_ms) && filter.accepts(node) {
                    if !within(node.key().len()) {
                        return None;
                    }
                    keys.push(Bytes::copy_from_slice(node.key()));
                }
            }
        }
        Some(keys)
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
        // Only the keys to return are copied.
        let mut candidates: Vec<(u64, Option<Bytes>)> = Vec::new();
        while shard < SHARDS {
            candidates.clear();
            for node in self.map.read(shard).iter() {
                let position = self.map.hash(node.key()) & POSITION_MASK;
                if position >= from {
                    let wanted = !node.is_expired(now_ms) && filter.accepts(node);
                    let key = wanted.then(|| Bytes::copy_from_slice(node.key()));
                    candidates.push((position, key));
                }
            }
            if candidates.len() <= budget {
                budget -= candidates.len();
                found.extend(candidates.drain(..).filter_map(|c| c.1));
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
                    .filter(|c| c.0 <= boundary)
                    .filter_map(|c| c.1),
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

    /// Bookkeeping after `node` left the keyspace (its shard lock released): what it was
    /// counted as (`before`) leaves the store's totals, the expiry and eviction counters count
    /// it, and for a session its counters and its place in the per-user index follow.
    fn after_remove(&self, node: &Node, before: Before, why: Removal) {
        self.after_remove_as(node, before, why, why);
    }

    /// [`Store::after_remove`] of a removal applied from a feed, counted as a deletion but
    /// announced as its writer's reason, `announced`: a session's step only (keyspace events
    /// are published where the command ran, on the primary).
    fn after_applied_removal(&self, node: &Node, announced: Removal) {
        let announced = if node.is_session() {
            announced
        } else {
            Removal::Deleted
        };
        self.after_remove_as(node, Before::of(node), Removal::Deleted, announced);
    }

    fn after_remove_as(&self, node: &Node, before: Before, counted: Removal, announced: Removal) {
        self.count_removal(before, counted);
        if before.tally.sessions != 0 {
            self.observe_lifetime(node, self.now_ms());
            if counted == Removal::Evicted {
                self.sessions.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(user) = node.as_session().and_then(|s| s.user.as_ref()) {
            self.unindex(user, node.key());
        }
        self.announce_removal(node, announced);
    }

    /// Counts the lifetime of `node`, a session leaving the keyspace at `now_ms`.
    fn observe_lifetime(&self, node: &Node, now_ms: u64) {
        if let Some(session) = node.as_session() {
            let lifetime_ms = now_ms.saturating_sub(session.created_ms);
            self.sessions.lifetimes.observe(lifetime_ms);
        }
    }

    /// Publishes what the removal of `node` was, once, beside its counting: `expired` (class
    /// `x`) or `evicted` (`e`) for a key — a command's own deletions are its to announce, with
    /// its event's name — or for a session its step (class `S`: `destroyed`, `expired`,
    /// `evicted`). A session is announced on `__session__:` only, never on the keyspace
    /// channels, which are not filtered by namespace: its ID is a credential.
    #[inline]
    fn announce_removal(&self, node: &Node, why: Removal) {
        if !self.notifier.flags().any() {
            return;
        }
        match node.as_session() {
            Some(session) => {
                let event = match why {
                    Removal::Expired => SessionEvent::Expired,
                    Removal::Evicted => SessionEvent::Evicted,
                    Removal::Deleted => SessionEvent::Destroyed,
                };
                self.notifier.session_event(
                    event,
                    node.key(),
                    session::prefix_of(node.key()),
                    session.user.as_deref(),
                );
            }
            None => match why {
                Removal::Expired => self.notify(Class::EXPIRED, "expired", node.key()),
                Removal::Evicted => self.notify(Class::EVICTED, "evicted", node.key()),
                Removal::Deleted => {}
            },
        }
    }

    /// Publishes the keyspace event `event` of `class` for `key` of this database (Redis's
    /// `notifyKeyspaceEvent`): the commands call it after their change. With the class off, one
    /// relaxed load and a branch.
    #[inline]
    pub fn notify(&self, class: Class, event: &'static str, key: &[u8]) {
        if self.notifier.flags().key_events(class) {
            self.notifier.key_event(class, event, self.logical(), key);
        }
    }

    /// [`Store::after_remove`] but for the per-user index, for a caller that holds the user's
    /// list and has taken the session out of it already.
    fn count_removal(&self, before: Before, why: Removal) {
        self.changes.add(1);
        self.account(before.tally, Tally::NOTHING);
        match why {
            Removal::Expired => {
                self.expired_keys.fetch_add(1, Ordering::Relaxed);
            }
            Removal::Evicted => {
                self.evicted_keys.fetch_add(1, Ordering::Relaxed);
            }
            Removal::Deleted => {}
        }
        if before.tally.sessions != 0 {
            let counter = match why {
                Removal::Expired => &self.sessions.expired,
                Removal::Deleted | Removal::Evicted => &self.sessions.destroyed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Bookkeeping after `node` (of hash `hash`, in shard `shard_index`, whose lock the caller
    /// holds) was written, `before` being what it was counted as until then: the store's totals
    /// ([`Store::account`]), the last use, the journal, and the node's position in the expiry
    /// index.
    #[allow(clippy::too_many_arguments)]
    fn after_write(
        &self,
        shard_index: usize,
        hash: u64,
        node: &mut Node,
        before: Before,
        now_ms: u64,
        rec: &Recording<'_>,
        wrote: Wrote,
    ) {
        self.changes.add(1);
        self.account(before.tally, Tally::of(node));
        node.last_use().touch(self.lru_seconds(now_ms));
        self.watches().touch(shard_index, node.key(), false);
        if rec.on() {
            self.journal
                .push(self.logical(), shard_index, Record::of(node));
        }
        if self.feed.on() {
            self.feed_write(node, before, wrote);
        }
        self.local.wrote(node.key(), node.expires_at_ms());
        if node.expires_at_ms() != 0 {
            let tick = self.index.tick_of(node.expires_at_ms());
            let queued = node.queued_tick();
            let sooner = before.expires_at_ms == 0 || node.expires_at_ms() < before.expires_at_ms;
            if queued == 0 || tick < queued {
                // Queued again when the deadline moved to an earlier tick (the position at the
                // later one goes stale).
                node.set_queued_tick(tick);
                self.index.queue(hash, tick, node.expires_at_ms());
            } else if tick == queued && sooner {
                // Earlier within its tick: the index takes the tick under way only once the
                // earliest deadline it knows there has passed, so that one is lowered.
                self.index.lower(hash, tick, node.expires_at_ms());
            }
        }
    }

    /// Records the write of `node` in the feed: its whole state, or for a change in place only
    /// what changed (`wrote`: the field names a hash's or a set's change touched), so that the
    /// cost is the change's, not the key's; a session's use that only slid its idle timer is
    /// its last access alone.
    fn feed_write(&self, node: &Node, before: Before, wrote: Wrote) {
        let (key_bytes, value) = node.key_and_value();
        let key = || Bytes::copy_from_slice(key_bytes);
        let expires_at_ms = node.expires_at_ms();
        let deadline_moved = expires_at_ms != before.expires_at_ms;
        let record = match (wrote, value) {
            (Wrote::Whole, ValueRef::Str(value)) => {
                // The write path of SET: encoded from the node, nothing copied first.
                let db = self.logical();
                return self.feed.push_string(db, key_bytes, value, expires_at_ms);
            }
            (Wrote::Whole, _) => feed_record(node),
            (Wrote::InPlace(_), ValueRef::Session(session)) => match feed::take_session_use() {
                feed::SessionUse::Nothing => return,
                feed::SessionUse::Touch => Record::SessionTouch {
                    id: key(),
                    last_access_ms: session.last_access_ms,
                },
                feed::SessionUse::Whole => feed_record(node),
            },
            (Wrote::InPlace(touched), ValueRef::Hash(fields)) if !touched.is_empty() => {
                let (mut set, mut removed) = (Vec::new(), Vec::new());
                for name in touched {
                    match fields.get(&name) {
                        Some(value) => set.push((name, value.clone())),
                        None => removed.push(name),
                    }
                }
                Record::HashFields {
                    key: key(),
                    set,
                    removed,
                    expires_at_ms,
                }
            }
            (Wrote::InPlace(touched), ValueRef::Set(members)) if !touched.is_empty() => {
                let (added, removed) = touched
                    .into_iter()
                    .partition(|member| members.contains_key(member));
                Record::SetMembers {
                    key: key(),
                    added,
                    removed,
                    expires_at_ms,
                }
            }
            (Wrote::InPlace(_), _) if deadline_moved => Record::Deadline {
                key: key(),
                expires_at_ms,
            },
            (Wrote::InPlace(_), _) => return,
        };
        self.feed.push(self.logical(), &record);
    }

    /// Starts tracking the field names a change in place to `node` touches, when the feed is on
    /// and `node` is a hash or a set; whether it did.
    #[inline]
    fn track_fields(&self, node: &Node) -> bool {
        if !self.feed.on() || !matches!(node.value(), ValueRef::Hash(_) | ValueRef::Set(_)) {
            return false;
        }
        fields::track_touched();
        true
    }

    /// The change feed all databases share.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    /// Keeps the expiry index within twice the keys with a deadline or [`INDEX_FLOOR`], give or
    /// take a round of its shards: past that, each write compacts one of them (a key's
    /// positions at earlier ticks, those of deleted keys, go; the work is O(the shard), repaid
    /// by the stale positions that made the index outgrow the bound). Call with no map lock
    /// held: the compaction looks keys up.
    fn bound_index(&self) {
        let limit = usize::try_from(self.volatile_len())
            .unwrap_or(usize::MAX)
            .saturating_mul(2)
            .max(INDEX_FLOOR);
        // The compaction looks up keys of any shard, which an atomic block may not hold: inside
        // one it waits for the next write outside.
        if self.index.len() > limit && !Table::in_block() {
            self.index
                .compact_next(|tick, hash| self.is_queued_under(tick, hash));
        }
    }

    /// Compacts every shard of the expiry index (see [`Store::bound_index`]): O(the index).
    fn compact_index(&self) {
        for _ in 0..expiry::SHARDS {
            self.index
                .compact_next(|tick, hash| self.is_queued_under(tick, hash));
        }
    }

    /// Whether a key of hash `hash` with a deadline is queued under `tick`, for a compaction of
    /// the expiry index. One queued there without a deadline any more (PERSIST) is marked as
    /// not queued, as its position is about to be dropped.
    fn is_queued_under(&self, tick: u32, hash: u64) -> bool {
        let mut shard = self.map.write(self.map.shard_of(hash));
        let mut queued = false;
        for node in shard.iter_hash_mut(hash) {
            if node.queued_tick() == tick && self.map.hash(node.key()) == hash {
                if node.expires_at_ms() != 0 {
                    queued = true;
                } else {
                    node.set_queued_tick(0);
                }
            }
        }
        queued
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
        self.map.shard_count()
    }

    /// The live records of shard `shard`, copied under its read lock (a save encodes them in
    /// place instead: [`Store::encode_shard`]).
    pub fn snapshot_shard(&self, shard: usize) -> Vec<Record> {
        let now_ms = self.now_ms();
        self.map
            .read(shard)
            .iter()
            .filter(|node| !node.is_expired(now_ms))
            .map(Record::of)
            .collect()
    }

    /// Appends the live records of shard `shard` to `out` as a snapshot holds each (its length,
    /// then `db` and the record: [`crate::persist::writer`]), encoded under the shard's read
    /// lock; how many. A string is encoded straight from its node, with no copy of its key or
    /// value in between (a save, a rewrite's base and a full sync are mostly strings and
    /// sessions); other values go through their [`Record`].
    pub fn encode_shard(&self, shard: usize, db: u16, out: &mut Vec<u8>) -> std::io::Result<u64> {
        /// Nodes prefetched ahead of the one encoded: their cache misses overlap.
        const AHEAD: usize = 8;
        let now_ms = self.now_ms();
        let shard = self.map.read(shard);
        let mut ahead = shard.iter();
        for node in ahead.by_ref().take(AHEAD) {
            node.prefetch(4);
        }
        let mut records = 0;
        for node in shard.iter() {
            if let Some(next) = ahead.next() {
                next.prefetch(4);
            }
            if node.is_expired(now_ms) {
                continue;
            }
            let start = out.len();
            out.extend_from_slice(&[0; 4]);
            out.extend_from_slice(&db.to_le_bytes());
            match node.key_and_value() {
                (key, ValueRef::Str(value)) => feed::StringRef {
                    key,
                    value,
                    expires_at_ms: node.expires_at_ms(),
                }
                .encode_record(out),
                _ => {
                    *out = postcard::to_extend(&Record::of(node), std::mem::take(out))
                        .map_err(|e| std::io::Error::other(format!("encoding a record: {e}")))?;
                }
            }
            let len = u32::try_from(out.len() - start - 4)
                .map_err(|_| std::io::Error::other("a record larger than 4 GiB"))?;
            out[start..start + 4].copy_from_slice(&len.to_le_bytes());
            records += 1;
        }
        Ok(records)
    }

    /// Applies one record of a snapshot being loaded: the key takes the record's state, or is
    /// removed for a deletion or a deadline that has passed. Counters of activity (created,
    /// destroyed, expired) are not touched: loading is not activity.
    pub fn restore(&self, record: Record, now_ms: u64) {
        let key = record.key().clone();
        let (hash, shard_index) = self.map.locate(&key);
        let restored = record
            .into_entry()
            .map(|(key, entry)| Node::new(&key, entry));
        let mut shard = self.map.write(shard_index);
        let mut added = Tally::NOTHING;
        let old = match restored.filter(|node| !node.is_expired(now_ms)) {
            None => shard
                .find_entry(hash, is(&key))
                .ok()
                .map(|occupied| occupied.remove().0),
            Some(mut node) => {
                if node.expires_at_ms() != 0 {
                    let tick = self.index.tick_of(node.expires_at_ms());
                    node.set_queued_tick(tick);
                    self.index.queue(hash, tick, node.expires_at_ms());
                }
                node.last_use().touch(self.lru_seconds(now_ms));
                added = Tally::of(&node);
                match shard.entry(hash, is(&key), self.map.rehash()) {
                    TableEntry::Occupied(mut occupied) => {
                        Some(std::mem::replace(occupied.get_mut(), node))
                    }
                    TableEntry::Vacant(vacant) => {
                        vacant.insert(node);
                        None
                    }
                }
            }
        };
        drop(shard);
        // The primary's write (or a load): a key this replica's clients had given a deadline
        // is the primary's now.
        self.local.wrote(&key, 0);
        // A change a save must cover, as Redis's replicas count their primary's writes (a
        // load at start is not one: the persistence counts from what it finds loaded).
        self.changes.add(1);
        let replaced = old.as_ref().map_or(Tally::NOTHING, Tally::of);
        self.account(replaced, added);
        self.bound_index();
    }

    /// Queued positions in the expiry index (stale ones included), for INFO.
    pub fn expiry_index_len(&self) -> usize {
        self.index.len()
    }
}

/// Test support: what `SET key v` with a deadline does, in one call.
#[cfg(test)]
impl Store {
    /// Stores the string `v` under `key` with the deadline `deadline_ms` (0: none).
    pub(crate) fn put_str(&self, key: &[u8], now_ms: u64, deadline_ms: u64) {
        self.upsert(key, now_ms, |_| {
            (
                Some(Entry::new(Value::Str(Bytes::from("v")), deadline_ms)),
                (),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_moved_earlier_within_its_tick_is_reclaimed_at_the_new_one() {
        let start = 1_000_000;
        let (clock, manual) = Clock::manual(start);
        let store = Store::new(clock);
        let (early, late) = (start + 40, start + 60);
        assert_eq!(store.index.tick_of(early), store.index.tick_of(late));
        let set = |deadline: u64| store.put_str(b"k", start, deadline);
        set(late);
        set(early);
        manual.advance(early - start);
        store.reclaim_expired();
        assert_eq!((store.len(), store.expired_keys()), (0, 1));
    }

    #[test]
    fn deadlines_moved_earlier_again_and_again_leave_the_index_bounded() {
        // Positions a stale-ridden index may hold before it is compacted, one shard at a time.
        let bound = INDEX_FLOOR + expiry::SHARDS;
        let start = 1_000_000;
        let (clock, manual) = Clock::manual(start);
        let store = Store::new(clock);
        let put = |key: &[u8], deadline: u64| store.put_str(key, start, deadline);
        let pexpire = |key: &[u8], deadline: u64| {
            store.modify(key, start, |mut node| {
                node.set_expires_at_ms(deadline);
                (false, ())
            })
        };
        put(b"k", 0);
        // Within one tick, a deadline moved earlier lowers the tick's earliest deadline.
        let first = start + 400_063;
        assert_eq!(store.index.tick_of(first), store.index.tick_of(first - 40));
        for deadline in (first - 40..=first).rev() {
            pexpire(b"k", deadline);
        }
        assert_eq!(store.expiry_index_len(), 1);
        // 200k PEXPIREs, each 1 ms earlier than the last (a new tick every 64).
        let moves = 200_000;
        let mut max_len = 0;
        for i in 0..moves {
            pexpire(b"k", first - 41 - i);
            max_len = max_len.max(store.expiry_index_len());
        }
        assert!(max_len <= bound, "{max_len} positions for one key");
        // Keys given a deadline and deleted leave stale positions, bounded too.
        for i in 0..10_000 {
            let key = format!("gone:{i}");
            put(key.as_bytes(), start + 500_000);
            store.remove(key.as_bytes(), start);
            max_len = max_len.max(store.expiry_index_len());
        }
        assert!(max_len <= bound, "{max_len} positions for one key");
        // The key still expires at its last deadline, not before.
        let deadline = first - 40 - moves;
        manual.advance(deadline - 1 - start);
        store.reclaim_expired();
        assert_eq!((store.len(), store.expired_keys()), (1, 0));
        manual.advance(1);
        store.reclaim_expired();
        assert_eq!((store.len(), store.expired_keys()), (0, 1));
    }

    #[test]
    fn no_key_escapes_the_active_expiry_while_the_index_is_compacted() {
        // Writers move deadlines earlier, later, away and back, delete and recreate keys, so
        // that the index outgrows its bound and is compacted while the expiry takes due ticks
        // and the clock moves: afterwards every dead key must still be reclaimed actively.
        let start = 1_000_000;
        let (clock, manual) = Clock::manual(start);
        let store = Arc::new(Store::new(clock));
        let writers: Vec<_> = (0..3u64)
            .map(|writer| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut x = writer * 7919 + 1;
                    for _ in 0..60_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let key = format!("k:{writer}:{}", x % 300);
                        let now = store.now_ms();
                        let deadline = match x % 7 {
                            0 => 0,
                            _ => now + 1 + (x >> 8) % 2_000,
                        };
                        match (x >> 4) % 5 {
                            0 => {
                                store.remove(key.as_bytes(), now);
                            }
                            1 => store.put_str(key.as_bytes(), now, deadline),
                            _ => {
                                store.modify(key.as_bytes(), now, |mut node| {
                                    node.set_expires_at_ms(deadline);
                                    (false, ())
                                });
                            }
                        }
                    }
                })
            })
            .collect();
        while !writers.iter().all(|w| w.is_finished()) {
            manual.advance(3);
            store.reclaim_expired();
        }
        for writer in writers {
            writer.join().unwrap();
        }
        manual.advance(10_000);
        store.reclaim_expired();
        let now = store.now_ms();
        let mut dead = 0;
        for shard in 0..store.shard_count() {
            dead += store
                .map
                .read(shard)
                .iter()
                .filter(|n| n.is_expired(now))
                .count();
        }
        assert_eq!(
            dead, 0,
            "keys past their deadline left by the active expiry"
        );
        assert_eq!(store.volatile_len(), 0);
    }

    fn set_string(store: &Store, key: &[u8], value: Bytes, now_ms: u64) {
        store.upsert(key, now_ms, |_| {
            (Some(Entry::new(Value::Str(value), 0)), ())
        });
    }

    #[test]
    fn a_key_written_thousands_of_times_during_a_save_is_one_journal_record() {
        let start = 1_000_000;
        let (clock, _manual) = Clock::manual(start);
        let store = Store::new(clock);
        let value = Bytes::from(vec![b'v'; 4096]);
        set_string(&store, b"k", value.clone(), start);
        store.journal.begin(u64::MAX);
        for _ in 0..5_000 {
            set_string(&store, b"k", value.clone(), start);
        }
        set_string(&store, b"other", Bytes::from_static(b"v"), start);
        store.remove(b"other", start);
        let held = store.journal.held();
        assert_eq!(held.records, 2, "one record per key: {held:?}");
        assert!(
            (4096..8192).contains(&held.bytes),
            "about one copy of the value: {held:?}"
        );
        let records = store.journal.end().unwrap();
        assert_eq!(records.len(), 2);
        assert!(records
            .iter()
            .any(|(db, r)| *db == 0 && matches!(r, Record::Delete { key } if key == "other")));
        assert_eq!(store.journal.held(), journal::Held::default());
    }

    #[test]
    fn a_journal_past_its_bound_stops_recording_and_the_save_is_abandoned() {
        let start = 1_000_000;
        let (clock, _manual) = Clock::manual(start);
        let store = Store::new(clock);
        store.journal.begin(64 * 1024);
        for i in 0..100 {
            set_string(
                &store,
                format!("k{i}").as_bytes(),
                Bytes::from(vec![0; 1024]),
                start,
            );
        }
        assert!(store.journal.overflowed());
        assert!(
            store.journal.held().bytes < 64 * 1024 + 2048,
            "recording stopped"
        );
        assert_eq!(store.journal.end(), None);
        assert_eq!(store.journal.held(), journal::Held::default());
        // The next save starts afresh.
        store.journal.begin(64 * 1024);
        set_string(&store, b"k0", Bytes::from_static(b"v"), start);
        assert!(!store.journal.overflowed());
        assert_eq!(store.journal.end().map(|r| r.len()), Some(1));
    }

    #[test]
    fn a_save_that_begins_during_a_mutation_that_saw_none_waits_for_it_and_holds_its_write() {
        let start = 1_000_000;
        let (clock, _manual) = Clock::manual(start);
        let store = Arc::new(Store::new(clock));
        // A mutation that read "no save running" and has not reached its shard yet.
        let rec = store.journal.recording();
        assert!(!rec.on());
        let saver = std::thread::spawn({
            let store = store.clone();
            move || {
                store.journal.begin(u64::MAX);
                let copied: Vec<Record> = (0..store.shard_count())
                    .flat_map(|shard| store.snapshot_shard(shard))
                    .collect();
                (copied, store.journal.end().unwrap())
            }
        });
        // Until the save waits for the mutation, or (without the wait) has walked every shard.
        while !store.journal.draining() && !saver.is_finished() {
            std::thread::yield_now();
        }
        let entry = Entry::new(Value::Str(Bytes::from_static(b"v")), 0);
        assert!(store.insert_new(b"k", entry, start, &rec).is_ok());
        drop(rec);
        let (copied, journal) = saver.join().unwrap();
        assert!(
            copied
                .iter()
                .chain(journal.iter().map(|(_, r)| r))
                .any(|r| r.key() == "k"),
            "the write is in neither the copy nor the journal"
        );
    }

    #[test]
    fn a_shard_encodes_as_a_snapshot_writes_each_of_its_records() {
        let start = 1_000_000;
        let (clock, manual) = Clock::manual(start);
        let store = Store::new(clock);
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let records = [
            Record::String {
                key: b("plain"),
                value: b("v"),
                expires_at_ms: 0,
            },
            Record::String {
                key: b("long"),
                value: Bytes::from(vec![7u8; 300]),
                expires_at_ms: start + 1_000_000,
            },
            Record::Hash {
                key: b("h"),
                fields: vec![(b("f"), b("1"))],
                expires_at_ms: 0,
            },
            Record::Set {
                key: b("s"),
                members: vec![b("m")],
                expires_at_ms: start + 5_000,
            },
            Record::Session {
                id: b("sid"),
                user: Some(b("alice")),
                fields: vec![(b("cart"), b("3"))],
                created_ms: start,
                last_access_ms: start,
                idle_ms: 60_000,
                absolute_ms: 3_600_000,
                version: 4,
            },
        ];
        for record in records {
            store.restore(record, start);
        }
        store.put_str(b"gone", start, start + 10);
        manual.advance(20);
        for db in [0u16, 300] {
            let (mut encoded, mut expected, mut count) = (Vec::new(), Vec::new(), 0);
            for shard in 0..store.shard_count() {
                count += store.encode_shard(shard, db, &mut encoded).unwrap();
                // As the snapshot writer writes a record: its length, then the database and
                // the record.
                for record in store.snapshot_shard(shard) {
                    let payload = postcard::to_extend(&record, db.to_le_bytes().to_vec()).unwrap();
                    expected.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                    expected.extend_from_slice(&payload);
                }
            }
            assert_eq!(count, 5, "the expired key is left out");
            assert_eq!(encoded, expected);
        }
    }

    #[test]
    fn a_write_to_a_large_hash_visits_none_of_its_fields() {
        let start = 1_000_000;
        let (clock, _manual) = Clock::manual(start);
        let store = Store::new(clock);
        let fields: Fields = (0..10_000u32)
            .map(|i| (Bytes::from(format!("f{i}")), Bytes::from("1")))
            .collect();
        store.upsert(b"h", start, |_| {
            (Some(Entry::new(Value::Hash(Box::new(fields)), 0)), ())
        });
        fields::WALKED.with(|walked| walked.set(0));
        for _ in 0..100 {
            // HINCRBY h f0 1, as the command does it.
            store.modify(b"h", start, |mut node| {
                if let ValueMut::Hash(fields) = node.value_mut() {
                    let old = fields.get(&b"f0"[..]).cloned().unwrap_or_default();
                    fields.insert(
                        Bytes::from("f0"),
                        Bytes::from([old, Bytes::from("1")].concat()),
                    );
                }
                (false, ())
            });
        }
        assert_eq!(fields::WALKED.with(|walked| walked.get()), 0);
        let footprint = store.peek(b"h", |node| node.map(Node::footprint));
        assert_eq!(Some(store.used_memory()), footprint);
    }

    #[test]
    fn a_session_indexed_while_a_flush_runs_and_flushed_leaves_its_users_list() {
        let start = 1_000_000;
        let (clock, _manual) = Clock::manual(start);
        let store = Arc::new(Store::new(clock));
        let create = || {
            store
                .create_session(
                    session::NewSession {
                        prefix: Bytes::new(),
                        user: Some(Bytes::from("ada")),
                        idle_ms: 60_000,
                        absolute_ms: 60_000,
                        data: Vec::new(),
                    },
                    start,
                    0,
                )
                .unwrap()
        };
        // A SESSION.CREATE between the flush's clearing of the index and its reaching the
        // session's shard: indexed after the clear, then removed by the flush.
        for flush_async in [false, true] {
            create();
            store.users.clear();
            store.index.clear();
            store.rebuild_user_index();
            assert_eq!(store.count_sessions(b"", b"ada"), 1);
            if flush_async {
                let mut freed = store.lazyfreed();
                let tables: Vec<_> = (0..store.map.shard_count())
                    .map(|shard| std::mem::take(&mut *store.map.write(shard)))
                    .collect();
                if store.lazy_free.push(&store, tables, 1) {
                    let background = Arc::clone(&store);
                    std::thread::spawn(move || background.free_flushed());
                }
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                runtime.block_on(freed.wait_for(|&n| n >= 1)).unwrap();
            } else {
                store.flush_shards(&store.journal.recording());
            }
            assert!(store.is_empty());
            assert_eq!(store.count_sessions(b"", b"ada"), 0, "async: {flush_async}");
        }
    }

    #[test]
    fn a_prefetch_counts_no_use_and_changes_nothing() {
        let start = 1_000_000;
        let (clock, manual) = Clock::manual(start);
        let store = Store::new(clock);
        store.put_str(b"k", start, 0);
        let last_use = || store.peek(b"k", |node| node.map(|node| node.last_use().get()));
        let before = last_use();
        manual.advance(10_000);
        store.prefetch(b"k");
        store.prefetch(b"absent");
        assert_eq!(
            last_use(),
            before,
            "a prefetch is not a use (the LRU policies)"
        );
        assert_eq!(store.len(), 1);
        let value = store.read(b"k", start + 10_000, |node| {
            node.map(|node| matches!(node.value(), ValueRef::Str(b"v")))
        });
        assert_eq!(value, Some(true));
        assert_ne!(last_use(), before, "a read is a use");
    }
}

/// The events the store publishes itself (expiry, eviction, session lifecycle), seen by a
/// subscriber of every channel.
#[cfg(test)]
mod event_tests {
    use super::evict::Policy;
    use super::session::NewSession;
    use super::*;
    use crate::notify::EventFlags;
    use crate::pubsub::{Access, Kind, Subscriber};
    use sessiond_protocol::{Limits, RequestDecoder};

    const START: u64 = 1_000_000;

    fn store(flags: &str) -> (Store, Arc<crate::clock::ManualClock>) {
        let (clock, manual) = Clock::manual(START);
        let store = Store::new(clock);
        let flags = EventFlags::parse(flags.as_bytes()).unwrap();
        store.notifier().flags().set(flags);
        (store, manual)
    }

    /// A subscriber of every channel, allowed the session events of the namespace `prefix`
    /// (every namespace for an empty one).
    fn listen(store: &Store, prefix: &str) -> Subscriber {
        let access = Access {
            session_events: true,
            session_namespace: (!prefix.is_empty())
                .then(|| Bytes::copy_from_slice(prefix.as_bytes())),
            keys: None,
        };
        let mut all = store.notifier().hub().subscriber(1, access);
        all.subscribe(Kind::Pattern, Bytes::from_static(b"*"));
        all
    }

    /// What `sub` received since last asked: (channel, message) pairs.
    fn received(sub: &mut Subscriber) -> Vec<(String, String)> {
        let mut out = bytes::BytesMut::new();
        sub.drain_into(false, &mut out, usize::MAX);
        let mut decoder = RequestDecoder::new(Limits::default());
        let mut events = Vec::new();
        while let Some(parts) = decoder.decode(&mut out).unwrap() {
            let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
            // pmessage, pattern, channel, message
            events.push((text(&parts[2]), text(&parts[3])));
        }
        events
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(c, m)| (c.to_string(), m.to_string()))
            .collect()
    }

    fn session(store: &Store, user: Option<&'static str>, idle_ms: u64, cap: usize) -> Bytes {
        let new = NewSession {
            prefix: Bytes::new(),
            user: user.map(|u| Bytes::from_static(u.as_bytes())),
            idle_ms,
            absolute_ms: 3_600_000,
            data: Vec::new(),
        };
        store.create_session(new, store.now_ms(), cap).unwrap()
    }

    fn text(id: &Bytes) -> &str {
        std::str::from_utf8(id).unwrap()
    }

    #[test]
    fn an_expired_key_is_announced_once_whoever_reclaims_it() {
        let (store, manual) = store("KEA");
        let mut sub = listen(&store, "");
        store.put_str(b"quiet", START, START + 100);
        store.put_str(b"touched", START, START + 100);
        assert!(received(&mut sub).is_empty(), "n is not in A");
        manual.advance(100);
        // A write finds one dead (the lazy path), the active expiry reclaims the other; the
        // expiry pass after the write finds nothing more to announce.
        store.put_str(b"touched", START + 100, 0);
        store.reclaim_expired();
        store.reclaim_expired();
        assert_eq!(
            received(&mut sub),
            pairs(&[
                ("__keyspace@0__:touched", "expired"),
                ("__keyevent@0__:expired", "touched"),
                ("__keyspace@0__:quiet", "expired"),
                ("__keyevent@0__:expired", "quiet"),
            ])
        );
        // `n`: a key added.
        store
            .notifier()
            .flags()
            .set(EventFlags::parse(b"nE").unwrap());
        store.put_str(b"fresh", START + 100, 0);
        store.put_str(b"fresh", START + 100, 0);
        assert_eq!(
            received(&mut sub),
            pairs(&[("__keyevent@0__:new", "fresh")])
        );
    }

    #[test]
    fn nothing_is_published_with_no_class_enabled() {
        let (store, manual) = store("");
        let mut sub = listen(&store, "");
        store.put_str(b"k", START, START + 10);
        let id = session(&store, Some("ada"), 10, 1);
        session(&store, Some("ada"), 10, 1);
        store.regenerate_session(&id, None, START, 1).unwrap();
        manual.advance(10);
        store.reclaim_expired();
        assert!(store.is_empty());
        assert!(received(&mut sub).is_empty());
        // K and E without a class publish nothing either; S does not need them.
        store
            .notifier()
            .flags()
            .set(EventFlags::parse(b"KE").unwrap());
        store.put_str(b"k", START + 10, START + 20);
        manual.advance(10);
        store.reclaim_expired();
        assert!(received(&mut sub).is_empty());
    }

    #[test]
    fn each_step_of_a_sessions_life_is_one_event() {
        let (store, manual) = store("S");
        let mut sub = listen(&store, "");
        let anonymous = session(&store, None, 60_000, 2);
        let a = session(&store, Some("ada"), 60_000, 2);
        let b = session(&store, Some("ada"), 60_000, 2);
        // The cap: the third of ada's drops the oldest, after its own `created`.
        let c = session(&store, Some("ada"), 60_000, 2);
        let (anon, a, b, c) = (text(&anonymous), text(&a), text(&b), text(&c));
        let anonymous = anonymous.clone();
        assert_eq!(
            received(&mut sub),
            pairs(&[
                ("__session__:created", &format!("{anon} ")),
                ("__session__:created", &format!("{a} ada")),
                ("__session__:created", &format!("{b} ada")),
                ("__session__:created", &format!("{c} ada")),
                ("__session__:destroyed", &format!("{a} ada")),
            ])
        );
        let now = START;
        let moved = store
            .regenerate_session(&anonymous, Some(&Bytes::from_static(b"ada")), now, 2)
            .unwrap()
            .unwrap();
        let moved = text(&moved);
        assert_eq!(
            received(&mut sub),
            pairs(&[
                ("__session__:regenerated", &format!("{anon} {moved} ada")),
                ("__session__:destroyed", &format!("{b} ada")),
            ])
        );
        // DESTROYALL EXCEPT: every other one, one event each.
        let d = session(&store, Some("ada"), 60_000, 0);
        received(&mut sub);
        assert_eq!(
            store.destroy_sessions_of(b"", b"ada", Some(d.as_ref()), now),
            2
        );
        let mut got = received(&mut sub);
        got.sort();
        let mut expected = pairs(&[
            ("__session__:destroyed", &format!("{c} ada")),
            ("__session__:destroyed", &format!("{moved} ada")),
        ]);
        expected.sort();
        assert_eq!(got, expected);
        // DESTROY, then DEL of a session key: `destroyed`, and never a keyspace event.
        store
            .notifier()
            .flags()
            .set(EventFlags::parse(b"SKEA").unwrap());
        assert!(store.destroy_session(&d, now));
        let e = session(&store, None, 60_000, 0);
        assert!(store.remove(&e, now).is_some());
        assert_eq!(
            received(&mut sub),
            pairs(&[
                ("__session__:destroyed", &format!("{} ada", text(&d))),
                ("__session__:created", &format!("{} ", text(&e))),
                ("__session__:destroyed", &format!("{} ", text(&e))),
            ])
        );
        // Expiry: by the active expiry unread, or by an access first; once each.
        let quiet = session(&store, Some("bob"), 1_000, 0);
        let read = session(&store, Some("bob"), 1_000, 0);
        received(&mut sub);
        manual.advance(1_000);
        assert!(!store.destroy_session(&read, START + 1_000));
        store.reclaim_expired();
        store.reclaim_expired();
        assert_eq!(
            received(&mut sub),
            pairs(&[
                ("__session__:expired", &format!("{} bob", text(&read))),
                ("__session__:expired", &format!("{} bob", text(&quiet))),
            ])
        );
    }

    #[test]
    fn evictions_are_announced_for_keys_and_sessions() {
        let (store, _manual) = store("SEe");
        let mut sub = listen(&store, "");
        store.put_str(b"k", START, 0);
        let id = session(&store, None, 60_000, 0);
        received(&mut sub);
        assert!(store.make_room(0, Policy::AllKeysLru, START));
        let mut got = received(&mut sub);
        got.sort();
        assert_eq!(
            got,
            pairs(&[
                ("__keyevent@0__:evicted", "k"),
                ("__session__:evicted", &format!("{} ", text(&id))),
            ])
        );
    }

    #[test]
    fn a_restricted_users_subscriber_sees_only_its_keys_events() {
        let (store, manual) = store("Ex");
        let access = Access {
            keys: Some(Arc::from([glob::Pattern::new(b"cache:*")])),
            ..Access::default()
        };
        let mut cache = store.notifier().hub().subscriber(1, access);
        cache.subscribe(Kind::Pattern, Bytes::from_static(b"__keyevent@*__:*"));
        store.put_str(b"cache:1", START, START + 10);
        store.put_str(b"other", START, START + 10);
        manual.advance(10);
        store.reclaim_expired();
        assert_eq!(
            received(&mut cache),
            pairs(&[("__keyevent@0__:expired", "cache:1")])
        );
    }

    #[test]
    fn a_named_users_subscriber_sees_only_its_namespace() {
        let (store, _manual) = store("S");
        let mut mine = listen(&store, "app1:");
        let new = |prefix: &'static str| NewSession {
            prefix: Bytes::from_static(prefix.as_bytes()),
            user: None,
            idle_ms: 1_000,
            absolute_ms: 1_000,
            data: Vec::new(),
        };
        let own = store.create_session(new("app1:"), START, 0).unwrap();
        store.create_session(new("app2:"), START, 0).unwrap();
        assert_eq!(
            received(&mut mine),
            pairs(&[("__session__:created", &format!("{} ", text(&own)))])
        );
    }
}
