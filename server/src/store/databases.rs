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

use super::journal::{self, Journal};
use super::table::Table;
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
