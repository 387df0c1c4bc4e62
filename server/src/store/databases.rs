//! Numbered databases (SELECT): one keyspace ([`Store`]) per database, and what the server
//! does over all of them.
//!
//! Each database has its own table, expiry index, per-user session index (so sessions, and the
//! per-user cap, are per database) and watch lists. What is server-wide is shared: the
//! accounted bytes (`used_memory`, which `maxmemory` bounds) and the snapshot journal (one
//! instant for the whole snapshot; its records name their database). A connection reaches its
//! database with an index into [`Databases`]'s slice: no lock, no allocation. The activity
//! counters (expired, evicted, changes, sessions) stay per database and are summed when read.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hashbrown::hash_table::Entry as TableEntry;

use super::accounting::{Before, Removal};
use super::entry::Node;
use super::journal::{self, Journal};
use super::table::{is, Table};
use super::{evict, Store, SHARDS};
use crate::clock::Clock;

/// The most databases a server may have (`--databases`): each costs its table's shards.
pub const MAX_DATABASES: usize = 1024;

/// Every database of a server, 0 first.
#[derive(Debug)]
pub struct Databases {
    dbs: Box<[Arc<Store>]>,
    /// The database the last eviction took a key from, tried first by the next.
    evicting: AtomicUsize,
}

impl Databases {
    /// `count` empty databases (at least one, at most [`MAX_DATABASES`]) reading time from
    /// `clock`.
    pub fn new(clock: Clock, count: usize) -> Databases {
        let count = count.clamp(1, MAX_DATABASES);
        let used = Arc::default();
        let journal = Arc::new(Journal::new(SHARDS));
        let dbs = (0..count)
            .map(|db| {
                let db = u16::try_from(db).unwrap_or(u16::MAX);
                Arc::new(Store::new_db(
                    clock.clone(),
                    db,
                    Arc::clone(&used),
                    Arc::clone(&journal),
                ))
            })
            .collect();
        Databases {
            dbs,
            evicting: AtomicUsize::new(0),
        }
    }

    /// How many databases there are.
    pub fn count(&self) -> usize {
        self.dbs.len()
    }

    /// Database `db`, if there is one.
    #[inline]
    pub fn get(&self, db: usize) -> Option<&Arc<Store>> {
        self.dbs.get(db)
    }

    /// Database `db`, or database 0 when there is none (a connection's database is always
    /// one that exists: SELECT checks it).
    #[inline]
    pub fn db(&self, db: usize) -> &Arc<Store> {
        self.dbs.get(db).unwrap_or_else(|| self.first())
    }

    /// Database 0.
    #[inline]
    pub fn first(&self) -> &Arc<Store> {
        // `new` makes at least one.
        &self.dbs[..1][0]
    }

    /// Every database, 0 first.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Store>> {
        self.dbs.iter()
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
    /// database has a key the policy may evict. Each eviction samples one database: the one the
    /// last eviction took from first (most servers use one), then the others in turn, where
    /// Redis compares samples of every database.
    pub fn make_room(&self, limit: u64, policy: evict::Policy, now_ms: u64) -> bool {
        let count = self.dbs.len();
        while self.used_memory() > limit {
            let start = self.evicting.load(Ordering::Relaxed);
            let evicted = (0..count)
                .map(|offset| (start + offset) % count)
                .find(|&db| self.dbs[db].evict_one(policy, now_ms));
            match evicted {
                Some(db) => self.evicting.store(db, Ordering::Relaxed),
                None => return false,
            }
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

    /// The active expiry task of every database (see [`Store::run_active_expiry`]): one task,
    /// which visits the databases that hold keys with a deadline in turn, so that their number
    /// does not multiply the timers. A cycle counts for every database once all were visited.
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
            for db in self.dbs.iter().filter(|db| db.volatile_len() > 0) {
                // Dropped at a yield between slices, as in `Store::run_active_expiry`.
                tokio::select! {
                    biased;
                    _ = &mut shutdown => return,
                    _ = db.expire_in_batches() => {}
                }
            }
            for db in self.dbs.iter() {
                db.count_expiry_cycle();
            }
        }
    }

    /// Runs `f` as one atomic block over several databases (EXEC with SELECT inside): for each
    /// `(db, shards)`, the shards of that database (`None`: every one) are write-locked, the
    /// databases in ascending order and each one's shards in ascending order, for all of `f`
    /// (see [`Store::atomic`], which this generalises, and [`Table::atomic_many`]).
    pub fn atomic<R: 'static>(
        &self,
        blocks: &[(usize, Option<&[usize]>)],
        f: impl FnOnce() -> R,
    ) -> R {
        let mut sorted: Vec<(usize, Option<&[usize]>)> = blocks
            .iter()
            .filter(|(db, _)| *db < self.dbs.len())
            .copied()
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
        let (Some(src), Some(dst)) = (self.dbs.get(from), self.dbs.get(to)) else {
            return Moved::NotMoved;
        };
        if from == to {
            return Moved::NotMoved;
        }
        let rec = src.journal.recording();
        let (src_hash, src_shard) = src.map.locate(key);
        let (dst_hash, dst_shard) = dst.map.locate(key);
        let (mut source, mut target) = if from < to {
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
        src.journal_delete(src_shard, key, &rec, false);
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
        );
        // A dead key of that name in the destination is replaced (reclaimed).
        let replaced = match target.entry(dst_hash, is(key), dst.map.rehash()) {
            TableEntry::Occupied(mut occupied) => Some(std::mem::replace(occupied.get_mut(), node)),
            TableEntry::Vacant(vacant) => {
                vacant.insert(node);
                None
            }
        };
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
}
