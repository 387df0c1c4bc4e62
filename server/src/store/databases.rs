//! Numbered databases (SELECT): one keyspace ([`Store`]) per database, and what the server
//! does over all of them.
//!
//! Each database has its own table, expiry index, per-user session index (so sessions, and the
//! per-user cap, are per database) and watch lists. What is server-wide is shared: the
//! accounted bytes (`used_memory`, which `maxmemory` bounds) and the snapshot journal (one
//! instant for the whole snapshot; its records name their database). A connection reaches its
//! database with an index into [`Databases`]'s slice: no lock, no allocation. The activity
//! counters (expired, evicted, changes, sessions) stay per database and are summed when read.

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hashbrown::hash_table::Entry as TableEntry;

use super::accounting::{Before, Removal};
use super::entry::Node;
use super::journal::{self, Journal};
use super::table::{is, Table};
use super::watched::Watches;
use super::{evict, Common, Dirty, Store, Wrote, SHARDS};
use crate::clock::Clock;
use crate::histogram::Histogram;
use crate::notify::Notifier;
use bytes::Bytes;

/// The most databases a server may have (`--databases`): each costs its table's shards.
pub const MAX_DATABASES: usize = 1024;

/// Every database of a server.
///
/// SWAPDB swaps what two indexes name rather than their keys: `mapping` takes a database index
/// (SELECT's) to a [`Store`] of `dbs`, read with one relaxed load per command. A command that
/// read the mapping just before a swap acts on the database the index named then, as if it had
/// run before the swap. Watch lists belong to indexes, not stores (Redis's watched keys stay
/// with their database's id). Every holder of several databases' locks takes them in the order
/// of `dbs` (not of indexes, which swaps reorder), each database's shards in ascending order.
#[derive(Debug)]
pub struct Databases {
    dbs: Box<[Arc<Store>]>,
    /// Index (SELECT's) → place in `dbs`.
    mapping: Box<[AtomicU16]>,
    /// SWAPDBs so far: EXEC checks under its locks that none came after it resolved indexes.
    swaps: AtomicU64,
    /// Held by a SWAPDB for its whole run: two at once would each read the mapping before the
    /// other stored its own, and leave it naming one store twice.
    swapping: std::sync::Mutex<()>,
    /// Each index's watch list (shared with the stores, which touch the list of their index).
    watch_lists: Arc<[Watches]>,
    /// Per active-expiry cycle that had keys due: how long after the earliest of their
    /// deadlines it finished with them (the Prometheus endpoint's expiry lag).
    expiry_lag: Histogram<{ EXPIRY_LAG_BOUNDS_MS.len() }>,
    /// A replica's: the keyspace follows a primary's stream, which deletes expired keys; the
    /// active expiry leaves them (reads hide them meanwhile).
    following: std::sync::atomic::AtomicBool,
}

/// The upper bounds of the expiry lag histogram's buckets: from a tick of the index (64 ms) to
/// a minute.
pub const EXPIRY_LAG_BOUNDS_MS: [u64; 10] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 20_000, 30_000, 60_000,
];

impl Databases {
    /// `count` empty databases (at least one, at most [`MAX_DATABASES`]) reading time from
    /// `clock`. Their events go through a [`Notifier`] of their own, whose hub `Shared` serves
    /// PUBLISH with too.
    pub fn new(clock: Clock, count: usize) -> Databases {
        let notifier = Arc::new(Notifier::default());
        let count = count.clamp(1, MAX_DATABASES);
        let now = clock.now_ms();
        let watch_lists: Arc<[Watches]> = (0..count).map(|_| Watches::default()).collect();
        let common = Common {
            used: Arc::default(),
            journal: Arc::new(Journal::new(SHARDS)),
            feed: Arc::default(),
            hasher: ahash::RandomState::new(),
            watch_lists: Arc::clone(&watch_lists),
            lazy_free: Arc::default(),
            long_blocks: Arc::default(),
            notifier,
        };
        // `count` is at most MAX_DATABASES, which fits in a u16.
        let index = |db: usize| u16::try_from(db).unwrap_or(u16::MAX);
        let dbs = (0..count)
            .map(|db| Arc::new(Store::new_db(clock.clone(), now, index(db), common.clone())))
            .collect();
        Databases {
            dbs,
            mapping: (0..count).map(|db| AtomicU16::new(index(db))).collect(),
            swaps: AtomicU64::new(0),
            swapping: std::sync::Mutex::new(()),
            watch_lists,
            expiry_lag: Histogram::new(EXPIRY_LAG_BOUNDS_MS),
            following: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The change feed every database records into (replication's offsets).
    pub fn feed(&self) -> &Arc<super::feed::Feed> {
        &self.first().feed
    }

    /// Whether the keyspace follows a primary (no active expiry of its own).
    pub fn following(&self) -> bool {
        self.following.load(Ordering::Relaxed)
    }

    /// Marks the keyspace as following a primary, or not.
    pub fn set_following(&self, following: bool) {
        self.following.store(following, Ordering::SeqCst);
        if !following {
            // Promoted: the keys its clients wrote as a replica expire as any other now.
            for db in self.dbs.iter() {
                db.forget_local_keys(&self.following);
            }
        }
    }

    /// How late the active expiry finishes with the keys due (see [`EXPIRY_LAG_BOUNDS_MS`]).
    pub fn expiry_lag(&self) -> &Histogram<{ EXPIRY_LAG_BOUNDS_MS.len() }> {
        &self.expiry_lag
    }

    /// Where the databases' keyspace and session events go.
    pub fn notifier(&self) -> &Arc<Notifier> {
        self.first().notifier()
    }

    /// The long atomic blocks of every database (see [`super::long_blocks`]).
    pub fn long_blocks(&self) -> &super::LongBlocks {
        self.first().long_blocks()
    }

    /// The place in `dbs` of database index `db` (one that exists).
    #[inline]
    fn physical(&self, db: usize) -> usize {
        self.mapping
            .get(db)
            .map_or(0, |at| usize::from(at.load(Ordering::Relaxed)))
    }

    /// How many databases there are.
    pub fn count(&self) -> usize {
        self.dbs.len()
    }

    /// Database `db` (SELECT's index), if there is one.
    #[inline]
    pub fn get(&self, db: usize) -> Option<&Arc<Store>> {
        if db >= self.mapping.len() {
            return None;
        }
        self.dbs.get(self.physical(db))
    }

    /// Database `db`, or database 0 when there is none (a connection's database is always
    /// one that exists: SELECT checks it).
    #[inline]
    pub fn db(&self, db: usize) -> &Arc<Store> {
        self.get(db).unwrap_or_else(|| self.first())
    }

    /// Database 0.
    #[inline]
    pub fn first(&self) -> &Arc<Store> {
        let first = self.dbs.get(self.physical(0));
        // `new` makes at least one, and the mapping names only stores it made.
        first.unwrap_or_else(|| &self.dbs[..1][0])
    }

    /// Every database, in no particular order (for what sums over them all).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Store>> {
        self.dbs.iter()
    }

    /// Every database with its index (SELECT's), 0 first.
    pub fn indexed(&self) -> impl Iterator<Item = (usize, &Arc<Store>)> {
        (0..self.mapping.len()).map(|db| (db, self.db(db)))
    }

    /// SWAPDBs so far, each counted once the mapping changed (see [`Databases::atomic`]; a
    /// switch point reads [`Feed::swaps`](super::feed::Feed::swaps) instead).
    pub fn swaps(&self) -> u64 {
        // Acquire, with the swap's Release: whoever sees the new count sees the new mapping.
        self.swaps.load(Ordering::Acquire)
    }

    /// WATCH `key` in database `db` for the connection of flag `dirty` (see [`Store::watch`]):
    /// registered in the index's list, which stays with the index across SWAPDB.
    pub fn watch(&self, db: usize, key: &Bytes, dirty: &Dirty, now_ms: u64) -> Option<bool> {
        let list = self.watch_lists.get(db)?;
        self.db(db).watch_into(list, key, dirty, now_ms)
    }

    /// Forgets a [`Databases::watch`].
    pub fn unwatch(&self, db: usize, key: &[u8], dirty: &Dirty) {
        if let Some(list) = self.watch_lists.get(db) {
            // Every database hashes alike: the key's shard is the same in each.
            list.remove(self.first().shard_of_key(key), key, dirty);
        }
    }

    /// Watcher entries registered now, every database's.
    pub fn watching(&self) -> usize {
        self.watch_lists.iter().map(Watches::len).sum()
    }

    /// SWAPDB `a` `b`: the two indexes name each other's database from now on, keys, deadlines,
    /// sessions and their per-user index with them; nothing is copied. False when an index
    /// does not exist. Runs with every shard of both databases locked: no command sees one
    /// swapped and not the other, no EXEC holding any of them runs across it, and the watchers
    /// of a key held in either (in either index's list) are flagged, as Redis's
    /// `touchAllWatchedKeysInDb`. A snapshot being written is abandoned (it walks indexes).
    pub fn swap(&self, a: usize, b: usize) -> bool {
        let count = self.mapping.len();
        if a >= count || b >= count {
            return false;
        }
        if a == b {
            return true;
        }
        let swapping = self.swapping.lock().unwrap_or_else(|p| p.into_inner());
        let journal = self.first().journal();
        let rec = journal.recording();
        if rec.on() {
            journal.spoil();
        }
        // Stable while `swapping` is held: only a swap changes the mapping.
        let (pa, pb) = (self.physical(a), self.physical(b));
        let (sa, sb) = (&self.dbs[pa], &self.dbs[pb]);
        let mut tables = [(&sa.map, pa), (&sb.map, pb)];
        tables.sort_by_key(|(_, at)| *at);
        let blocks = tables.map(|(table, _)| (table, None));
        Table::atomic_many(&blocks, || {
            self.mapping[a].store(pb as u16, Ordering::Relaxed);
            self.mapping[b].store(pa as u16, Ordering::Relaxed);
            sa.logical.store(b as u16, Ordering::Relaxed);
            sb.logical.store(a as u16, Ordering::Relaxed);
            let now_ms = sa.now_ms();
            let held = |key: &[u8]| {
                [sa, sb]
                    .iter()
                    .any(|db| db.peek(key, |node| node.is_some_and(|n| !n.is_expired(now_ms))))
            };
            for db in [a, b] {
                self.watch_lists[db].touch_where(held);
            }
            // A change for "changes since the last save" (Redis's `dirty++`): the next
            // periodic save writes the new layout.
            sa.changes.add(1);
            if sa.feed.on() {
                // Under every shard of both: between their changes before and after.
                let with = b as u16;
                sa.feed.push(a as u16, &super::Record::SwapDb { with });
            }
            // After the mapping: an EXEC that reads the new count reads the new mapping too.
            self.swaps.fetch_add(1, Ordering::Release);
            // After the frame's offset: a log rewrite or a full sync that reads the new count
            // cuts its stream past the frame, so its base (which shows the swap) is not
            // followed by the frame.
            sa.feed.count_swap();
        });
        drop(rec);
        drop(swapping);
        true
    }

    /// The clock deadlines are measured against.
    pub fn clock(&self) -> &Clock {
        self.first().clock()
    }

    /// Now, in Unix ms.
    pub fn now_ms(&self) -> u64 {
        self.first().now_ms()
    }

    /// The bytes every database's keys are accounted for (`used_memory`).
    pub fn used_memory(&self) -> u64 {
        self.first().used_memory()
    }

    /// Keys held in every database.
    pub fn len(&self) -> usize {
        self.dbs.iter().map(|db| db.len()).sum()
    }

    /// Whether no database holds a key.
    pub fn is_empty(&self) -> bool {
        self.dbs.iter().all(|db| db.is_empty())
    }

    /// The snapshot journal all databases share.
    pub fn journal(&self) -> &Journal {
        self.first().journal()
    }

    /// The sum of `f` over the databases.
    pub fn sum(&self, f: impl Fn(&Store) -> u64) -> u64 {
        self.dbs.iter().map(|db| f(db)).sum()
    }

    /// Changes made since start, in every database (for "changes since the last save").
    pub fn changes(&self) -> u64 {
        self.sum(Store::changes)
    }

    /// Evicts keys under `policy` until `used_memory` is at most `limit`; false when no
    /// database has a key the policy may evict. As Redis, each eviction compares a sample of
    /// every database that holds eligible keys and evicts the best of them all (the databases'
    /// scores share their origin); a database without any is skipped at the cost of a sum.
    pub fn make_room(&self, limit: u64, policy: evict::Policy, now_ms: u64) -> bool {
        while self.used_memory() > limit {
            let mut best: Option<(u64, &Store, Vec<u8>)> = None;
            for db in self.dbs.iter() {
                if let Some((score, key)) = db.eviction_sample(policy, now_ms) {
                    if best.as_ref().is_none_or(|(lowest, _, _)| score < *lowest) {
                        best = Some((score, db, key));
                    }
                }
            }
            let Some((_, db, key)) = best else {
                return false;
            };
            db.evict(&key, policy, now_ms);
        }
        true
    }

    /// Removes every key of every database (FLUSHALL); with `asynchronous`, each database's
    /// keys are freed on a background thread.
    pub fn flush_all(&self, asynchronous: bool) {
        for db in self.dbs.iter() {
            if asynchronous {
                db.flush_async();
            } else {
                db.flush();
            }
        }
    }

    /// The active expiry task: every `interval` (and whenever a manual clock moves), reclaims
    /// due keys, yielding to other tasks between slices of work. One task visits the databases
    /// that hold keys with a deadline in turn, so that their number does not multiply the
    /// timers; a cycle counts for every database once all were visited. Ends when `shutdown`
    /// resolves, also in the middle of a cycle (at the end of a slice): a mass expiry must not
    /// hold up a shutdown, and the keys it leaves are dead to every reader and to the final
    /// snapshot.
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
                biased;
                _ = &mut shutdown => return,
                _ = ticker.tick() => {}
                _ = self.clock().moved() => {}
            }
            if self.following() {
                // The primary expires its keys; a writable replica its clients' own.
                let now_ms = self.now_ms();
                for db in self.dbs.iter() {
                    db.expire_local(now_ms);
                }
                continue;
            }
            // A write a replica's client began before a promotion may have noted its key
            // since: the regular expiry covers it now.
            for db in self.dbs.iter() {
                db.forget_local_keys(&self.following);
            }
            let mut lag_ms = None;
            for db in self.dbs.iter().filter(|db| db.volatile_len() > 0) {
                // Dropped at a yield between slices, where no lock or recording is held; the
                // due positions it had taken are lost with it, which only a shutdown affords.
                tokio::select! {
                    biased;
                    _ = &mut shutdown => return,
                    lag = db.expire_in_batches(&self.following) => lag_ms = lag_ms.max(lag),
                }
            }
            if let Some(lag_ms) = lag_ms {
                self.expiry_lag.observe(lag_ms);
            }
            for db in self.dbs.iter() {
                db.count_expiry_cycle();
            }
        }
    }

    /// [`Databases::atomic`] for a caller that named its databases by number: a SWAPDB between
    /// that and the locks may have given the locks to the databases the numbers named before
    /// it, so nothing runs then and the locks are taken again; `f` runs once, under the locks
    /// of the databases its numbers name.
    pub fn atomic_unswapped<R: 'static>(
        &self,
        blocks: &[(usize, Option<&[usize]>)],
        f: impl FnOnce() -> R,
    ) -> R {
        let mut f = Some(f);
        loop {
            let swaps = self.swaps();
            let ran = self.atomic(blocks, || {
                if self.swaps() != swaps {
                    return None;
                }
                f.take().map(|f| f())
            });
            if let Some(result) = ran {
                return result;
            }
        }
    }

    /// Runs `f` as one atomic block over several databases (EXEC with SELECT inside): for each
    /// `(db, shards)`, the shards of that database (`None`: every one) are write-locked, the
    /// databases in the order of every multi-database holder and each one's shards in
    /// ascending order, for all of `f` (see [`Store::atomic`], which this generalises, and
    /// `Table::atomic_many`). A SWAPDB may come between the caller's reading of the indexes
    /// and the locks: `f` compares [`Databases::swaps`] with what the caller read and starts
    /// over when they differ.
    pub fn atomic<R: 'static>(
        &self,
        blocks: &[(usize, Option<&[usize]>)],
        f: impl FnOnce() -> R,
    ) -> R {
        if let [(db, shards)] = blocks {
            // The usual EXEC, in one database: no lists to sort.
            return self.db(*db).atomic(*shards, f);
        }
        // By place in `dbs`, the order of every holder of several databases' locks.
        let mut sorted: Vec<(usize, Option<&[usize]>)> = blocks
            .iter()
            .filter(|(db, _)| *db < self.mapping.len())
            .map(|(db, shards)| (self.physical(*db), *shards))
            .collect();
        sorted.sort_by_key(|(db, _)| *db);
        let tables: Vec<(&Table, Option<&[usize]>)> = sorted
            .iter()
            .map(|(db, shards)| (&self.dbs[*db].map, *shards))
            .collect();
        if Table::in_block() {
            return Table::atomic_many(&tables, f);
        }
        let rec = self.journal().recording();
        let result = Table::atomic_many(&tables, || {
            let _nested = journal::Nested::enter(&rec);
            // One frame for the block, emitted while its locks are held.
            let _group = self.first().feed.group();
            f()
        });
        drop(rec);
        for (db, _) in &sorted {
            self.dbs[*db].unindex_deferred();
            self.dbs[*db].bound_index();
        }
        result
    }
}

/// What a MOVE did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    /// The key lives in the destination database now.
    Moved,
    /// No live key of that name in the source, or a live one in the destination: nothing
    /// changed (Redis answers 0 to both).
    NotMoved,
    /// The key is a live session: nothing changed (a session stays in its user's index).
    Session,
}

impl Databases {
    /// Moves the live key `key`, value and deadline, from database `from` to database `to`
    /// (MOVE), unless the destination holds a live key of that name. Both shards are
    /// write-locked together, the lower database first (the order of every multi-database
    /// holder), and one journal recording spans the removal and the insertion, so neither a
    /// reader nor a snapshot sees the key in both databases or in neither. Sessions are refused:
    /// they stay in their user's index. `from` and `to` must differ and exist.
    pub fn move_key(&self, from: usize, to: usize, key: &[u8], now_ms: u64) -> Moved {
        let count = self.mapping.len();
        if from >= count || to >= count || from == to {
            return Moved::NotMoved;
        }
        // Each index read once: the stores and the lock order come from the same reading (a
        // SWAPDB between two readings would reverse the order against another MOVE).
        let (pf, pt) = (self.physical(from), self.physical(to));
        let (src, dst) = (&self.dbs[pf], &self.dbs[pt]);
        // The order of every holder of several databases' locks.
        let source_first = pf < pt;
        let rec = src.journal.recording();
        // One frame for both changes, emitted before the locks are released.
        let group = src.feed.group();
        let (src_hash, src_shard) = src.map.locate(key);
        let (dst_hash, dst_shard) = dst.map.locate(key);
        let (mut source, mut target) = if source_first {
            let source = src.map.write(src_shard);
            (source, dst.map.write(dst_shard))
        } else {
            let target = dst.map.write(dst_shard);
            (src.map.write(src_shard), target)
        };
        let live = |node: &&Node| !node.is_expired(now_ms);
        match source.find(src_hash, is(key)).filter(live) {
            None => return Moved::NotMoved,
            Some(node) if node.is_session() => return Moved::Session,
            Some(_) => {}
        }
        if target.find(dst_hash, is(key)).filter(live).is_some() {
            return Moved::NotMoved;
        }
        // Found live above, under the same lock.
        let Ok(occupied) = source.find_entry(src_hash, is(key)) else {
            return Moved::NotMoved;
        };
        let mut node = occupied.remove().0;
        src.journal_delete(src_shard, key, &rec, false, Removal::Deleted);
        if target.find(dst_hash, is(key)).is_some() {
            // Dead (found not live above): it ends by its expiry, as announced below; recorded
            // so, a replica announces it the same way.
            dst.feed_delete(key, Removal::Expired);
        }
        let left = Before::of(&node);
        // Queued afresh in the destination's expiry index; the source's position goes stale.
        node.set_queued_tick(0);
        dst.after_write(
            dst_shard,
            dst_hash,
            &mut node,
            Before::NOTHING,
            now_ms,
            &rec,
            Wrote::Whole,
        );
        // A dead key of that name in the destination is replaced (reclaimed).
        let replaced = match target.entry(dst_hash, is(key), dst.map.rehash()) {
            TableEntry::Occupied(mut occupied) => Some(std::mem::replace(occupied.get_mut(), node)),
            TableEntry::Vacant(vacant) => {
                vacant.insert(node);
                None
            }
        };
        drop(group);
        drop((source, target));
        // The key leaves the source's totals (it is no session) and entered the
        // destination's in `after_write`: `used_memory`, shared, is unchanged.
        src.count_removal(left, Removal::Deleted);
        if let Some(replaced) = replaced {
            dst.after_remove(&replaced, Before::of(&replaced), Removal::Expired);
        }
        drop(rec);
        src.bound_index();
        dst.bound_index();
        Moved::Moved
    }
}

/// The databases a snapshot is written from and loaded into: a server's [`Databases`], or a
/// lone [`Store`] (one database, 0).
pub trait Keyspaces {
    /// How many databases there are.
    fn count(&self) -> usize;
    /// Database `index` (below [`Keyspaces::count`]; database 0 otherwise).
    fn keyspace(&self, index: usize) -> &Store;
}

impl Keyspaces for Databases {
    fn count(&self) -> usize {
        self.dbs.len()
    }

    fn keyspace(&self, index: usize) -> &Store {
        self.db(index)
    }
}

impl Keyspaces for Store {
    fn count(&self) -> usize {
        1
    }

    fn keyspace(&self, _index: usize) -> &Store {
        self
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use std::sync::atomic::Ordering;

    use super::*;
    use crate::store::accounting::Tally;
    use crate::store::session::NewSession;
    use crate::store::{Entry, Record, Value, ValueRef};

    const START: u64 = 1_000_000;

    fn dbs() -> Databases {
        let (clock, _manual) = Clock::manual(START);
        Databases::new(clock, 4)
    }

    fn get(store: &Store, key: &[u8]) -> Option<(Vec<u8>, u64)> {
        store.read(key, START, |node| {
            node.map(|node| match node.value() {
                ValueRef::Str(s) => (s.to_vec(), node.expires_at_ms()),
                other => (other.type_name().as_bytes().to_vec(), 0),
            })
        })
    }

    fn session(store: &Store, user: &'static str) -> Bytes {
        let new = NewSession {
            prefix: Bytes::new(),
            user: Some(Bytes::from_static(user.as_bytes())),
            idle_ms: 60_000,
            absolute_ms: 60_000,
            data: Vec::new(),
        };
        store.create_session(new, START, 1).unwrap()
    }

    #[test]
    fn databases_hold_their_own_keys_sessions_and_caps_but_share_used_memory() {
        let dbs = dbs();
        let (zero, one) = (dbs.db(0), dbs.db(1));
        zero.put_str(b"k", START, 0);
        let used = dbs.used_memory();
        assert!(used > 0);
        assert_eq!(get(one, b"k"), None);
        one.put_str(b"k", START, START + 5_000);
        assert_eq!(dbs.used_memory(), 2 * used, "one count for every database");
        assert_eq!((zero.volatile_len(), one.volatile_len()), (0, 1));
        // A cap of one per user, per database.
        let first = session(zero, "ada");
        session(one, "ada");
        assert_eq!(zero.count_sessions(b"", b"ada"), 1);
        assert_eq!(one.count_sessions(b"", b"ada"), 1);
        session(zero, "ada");
        assert!(
            !zero.destroy_session(&first, START),
            "the cap ended db 0's oldest"
        );
        assert_eq!(one.count_sessions(b"", b"ada"), 1, "and left db 1's");
        assert_eq!(dbs.len(), 4);
        one.flush();
        assert_eq!((zero.len(), one.len()), (2, 0));
        dbs.flush_all(false);
        assert!(dbs.is_empty());
        assert_eq!(dbs.used_memory(), 0);
    }

    #[test]
    fn move_keeps_the_deadline_and_the_totals_and_refuses_what_redis_does() {
        let dbs = dbs();
        let (zero, two) = (dbs.db(0), dbs.db(2));
        zero.put_str(b"k", START, START + 5_000);
        let used = dbs.used_memory();
        assert_eq!(dbs.move_key(0, 2, b"k", START), Moved::Moved);
        assert_eq!(get(zero, b"k"), None);
        assert_eq!(get(two, b"k"), Some((b"v".to_vec(), START + 5_000)));
        assert_eq!(dbs.used_memory(), used);
        assert_eq!((zero.volatile_len(), two.volatile_len()), (0, 1));
        assert_eq!(dbs.move_key(0, 2, b"k", START), Moved::NotMoved, "missing");
        zero.put_str(b"k", START, 0);
        assert_eq!(
            dbs.move_key(0, 2, b"k", START),
            Moved::NotMoved,
            "exists there"
        );
        assert_eq!(dbs.move_key(2, 0, b"k", START), Moved::NotMoved);
        // A dead key in the destination is replaced; the moved key expires there.
        two.put_str(b"dead", START, START - 1);
        zero.put_str(b"dead", START, START + 1);
        assert_eq!(dbs.move_key(0, 2, b"dead", START), Moved::Moved);
        assert_eq!(get(two, b"dead"), Some((b"v".to_vec(), START + 1)));
        let id = session(zero, "ada");
        assert_eq!(dbs.move_key(0, 1, &id, START), Moved::Session);
        assert_eq!(zero.count_sessions(b"", b"ada"), 1);
        let mut fresh = Tally::NOTHING;
        for db in dbs.iter() {
            for shard in 0..db.shard_count() {
                for node in db.map.read(shard).iter() {
                    fresh.add(node);
                }
            }
        }
        assert_eq!(dbs.used_memory(), fresh.bytes, "a recount");
    }

    #[test]
    fn a_move_during_a_snapshot_is_in_it_as_one_change() {
        let dbs = dbs();
        dbs.db(1).put_str(b"k", START, 0);
        dbs.journal().begin(u64::MAX);
        assert_eq!(dbs.move_key(1, 3, b"k", START), Moved::Moved);
        let mut journal = dbs.journal().end().unwrap();
        journal.sort_by_key(|(db, _)| *db);
        assert!(matches!(
            &journal[..],
            [(1, Record::Delete { .. }), (3, Record::String { .. })]
        ));
    }

    #[test]
    fn a_block_over_two_databases_holds_both_and_unindexes_each_ones_sessions() {
        let dbs = dbs();
        let (zero, three) = (dbs.db(0), dbs.db(3));
        let id = session(three, "ada");
        let blocks = [
            (3, Some(&[three.shard_of_key(&id)][..])),
            (0, Some(&[zero.shard_of_key(b"k")][..])),
        ];
        let destroyed = dbs.atomic(&blocks, || {
            zero.upsert(b"k", START, |_| {
                let value = Value::Str(Bytes::from_static(b"v"));
                (Some(Entry::new(value, 0)), ())
            });
            three.destroy_session(&id, START)
        });
        assert!(destroyed);
        assert_eq!(three.count_sessions(b"", b"ada"), 0);
        assert_eq!(three.session_users(), 0, "unindexed after the block");
        assert!(get(zero, b"k").is_some());
    }

    /// Concurrent SWAPDBs over overlapping pairs leave every index naming a different
    /// database, each still holding its own key (a swap that read the mapping before another
    /// stored its own would name one database twice and lose one).
    #[test]
    fn concurrent_swaps_keep_the_mapping_a_permutation() {
        let dbs = std::sync::Arc::new(dbs());
        for db in 0..4 {
            dbs.db(db).put_str(format!("db{db}").as_bytes(), START, 0);
        }
        let rounds = if cfg!(miri) { 5 } else { 2_000 };
        let swappers: Vec<_> = [(0, 1), (1, 2), (2, 3), (3, 0)]
            .into_iter()
            .map(|(a, b)| {
                let dbs = std::sync::Arc::clone(&dbs);
                std::thread::spawn(move || {
                    for _ in 0..rounds {
                        assert!(dbs.swap(a, b));
                    }
                })
            })
            .collect();
        for swapper in swappers {
            swapper.join().unwrap();
        }
        let mut found: Vec<String> = (0..4)
            .map(|db| {
                let keys = dbs.db(db).len();
                assert_eq!(keys, 1, "database {db} holds {keys} keys");
                (0..4)
                    .map(|k| format!("db{k}"))
                    .find(|key| get(dbs.db(db), key.as_bytes()).is_some())
                    .unwrap()
            })
            .collect();
        found.sort();
        assert_eq!(found, ["db0", "db1", "db2", "db3"]);
    }

    #[test]
    fn swapdb_swaps_what_two_indexes_name_and_flags_their_watchers() {
        let dbs = dbs();
        dbs.db(0).put_str(b"zero", START, START + 5_000);
        let id = session(dbs.db(0), "ada");
        dbs.db(1).put_str(b"one", START, 0);
        let (before_zero, before_one) = (Arc::as_ptr(dbs.db(0)), Arc::as_ptr(dbs.db(1)));
        let (watched, unwatched, elsewhere) =
            (Dirty::default(), Dirty::default(), Dirty::default());
        dbs.watch(0, &Bytes::from_static(b"one"), &watched, START);
        dbs.watch(0, &Bytes::from_static(b"nowhere"), &unwatched, START);
        dbs.watch(2, &Bytes::from_static(b"one"), &elsewhere, START);
        let changes = dbs.changes();
        assert!(dbs.swap(0, 1));
        assert_eq!(dbs.changes(), changes + 1, "a change to save");
        assert_eq!(Arc::as_ptr(dbs.db(1)), before_zero, "nothing copied");
        assert_eq!(Arc::as_ptr(dbs.db(0)), before_one);
        assert_eq!(
            get(dbs.db(1), b"zero"),
            Some((b"v".to_vec(), START + 5_000))
        );
        assert_eq!(get(dbs.db(0), b"one"), Some((b"v".to_vec(), 0)));
        assert_eq!(
            dbs.db(1).count_sessions(b"", b"ada"),
            1,
            "the index goes with it"
        );
        assert!(matches!(
            dbs.db(1).read_session(&id, START, |_| ()),
            Ok(Some(()))
        ));
        assert!(
            watched.load(Ordering::Relaxed),
            "a watched key held in either"
        );
        assert!(!unwatched.load(Ordering::Relaxed));
        assert!(
            !elsewhere.load(Ordering::Relaxed),
            "another database's watch"
        );
        // The lists stay with their index: a write to index 0 flags its watcher still.
        let again = Dirty::default();
        dbs.watch(0, &Bytes::from_static(b"k"), &again, START);
        dbs.db(1).put_str(b"k", START, 0);
        assert!(!again.load(Ordering::Relaxed));
        dbs.db(0).put_str(b"k", START, 0);
        assert!(again.load(Ordering::Relaxed));
        for dirty in [&watched, &unwatched, &again] {
            for key in [&b"one"[..], b"nowhere", b"k"] {
                dbs.unwatch(0, key, dirty);
            }
        }
        dbs.unwatch(2, b"one", &elsewhere);
        assert_eq!(dbs.watching(), 0);
        assert!(dbs.swap(3, 3));
        assert!(!dbs.swap(0, 4));
        // A move after a swap locks by store, and lands in the index asked for.
        assert_eq!(dbs.move_key(0, 1, b"one", START), Moved::Moved);
        assert_eq!(get(dbs.db(1), b"one"), Some((b"v".to_vec(), 0)));
    }

    #[test]
    fn a_swapdb_during_a_save_abandons_it_and_journal_records_name_indexes() {
        let dbs = dbs();
        dbs.journal().begin(u64::MAX);
        dbs.db(2).put_str(b"k", START, 0);
        assert!(dbs.swap(2, 3));
        assert!(dbs.journal().spoiled());
        assert_eq!(dbs.journal().end(), None);
        dbs.journal().begin(u64::MAX);
        assert!(!dbs.journal().spoiled());
        // The store that was index 2 is index 3 now: its changes are journalled as 3's.
        dbs.db(3).put_str(b"k", START, 0);
        let journal = dbs.journal().end().unwrap();
        assert!(matches!(&journal[..], [(3, Record::String { .. })]));
    }

    #[test]
    fn eviction_takes_the_least_recently_used_keys_of_whichever_database() {
        let (clock, manual) = Clock::manual(START);
        let dbs = Databases::new(clock, 4);
        for i in 0..50 {
            dbs.db(1).put_str(format!("old{i}").as_bytes(), START, 0);
        }
        manual.advance(60_000);
        let now = START + 60_000;
        for i in 0..50 {
            dbs.db(0).put_str(format!("new{i}").as_bytes(), now, 0);
        }
        let full = dbs.used_memory();
        assert!(dbs.make_room(full / 2 + full / 10, evict::Policy::AllKeysLru, now));
        assert!(
            dbs.db(1).len() < 25,
            "the old keys went first: {}",
            dbs.db(1).len()
        );
        assert!(
            dbs.db(0).len() > 40,
            "the new ones mostly stay: {}",
            dbs.db(0).len()
        );
        assert!(
            !dbs.make_room(0, evict::Policy::VolatileLru, now),
            "none has a deadline"
        );
        assert!(dbs.make_room(0, evict::Policy::AllKeysLru, now));
        assert!(dbs.is_empty());
    }

    #[test]
    fn flushall_async_frees_every_database_on_the_servers_one_queue() {
        let dbs = dbs();
        for (db, keys) in [(0, 30), (2, 20)] {
            for i in 0..keys {
                dbs.db(db)
                    .put_str(format!("k{i}").as_bytes(), START, START + 5_000);
            }
        }
        session(dbs.db(2), "ada");
        let mut freed = dbs.first().lazyfreed();
        dbs.flush_all(true);
        assert!(dbs.is_empty(), "empty at once");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(freed.wait_for(|&n| n >= 51)).unwrap();
        assert_eq!(dbs.first().lazyfree_counts(), (0, 51), "one queue's counts");
        assert_eq!(dbs.db(2).lazyfree_counts(), (0, 51));
        assert_eq!(dbs.used_memory(), 0);
        assert_eq!(dbs.sum(Store::volatile_len), 0);
        assert_eq!(dbs.db(2).count_sessions(b"", b"ada"), 0);
    }
}
