//! The keyspace's table: shards of open-addressing hash tables of [`Node`]s, each behind its own
//! reader-writer lock.
//!
//! A slot is the node's thin pointer (8 bytes and a control byte); the key lives in the node, so
//! a lookup compares against it there. A key's 64-bit hash picks its shard from bits the
//! table's own tag byte does not use (as dashmap does), so keys in one shard still differ in
//! their tags. The hash also names a key in the expiry index (`expiry.rs`) and orders SCAN.
//!
//! An atomic block ([`Table::atomic`], EXEC) write-locks a set of shards, in ascending order,
//! for the whole of a closure (of several tables, one per database, in the databases' order:
//! [`Table::atomic_many`]): while it runs, [`Table::read`] and [`Table::write`] on that
//! thread hand out the shards it holds instead of locking them again (std's locks are not
//! re-entrant), so the store's operations run unchanged inside it. Every holder of several
//! shard locks takes them in ascending order (here, and [`Table::write_pair`]), so two never
//! wait on each other. That borrowing is this module's `unsafe` code, its reasoning at
//! [`Held`].
#![allow(unsafe_code)]

use std::cell::{Cell, RefCell};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

use hashbrown::HashTable;

use super::entry::Node;

/// One shard's table.
pub(crate) type Shard = HashTable<Node>;

/// A shard's lock on a cache line of its own, so that writers on different shards never share
/// one.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Padded(RwLock<Shard>);

/// The sharded table.
#[derive(Debug)]
pub(crate) struct Table {
    hasher: ahash::RandomState,
    shards: Box<[Padded]>,
    shard_bits: u32,
}

impl Table {
    /// An empty table of `shards` shards, a power of two, with a hasher of its own.
    #[cfg(test)]
    pub fn new(shards: usize) -> Table {
        Table::with_hasher(shards, ahash::RandomState::new())
    }

    /// An empty table of `shards` shards hashing with `hasher`: the databases of a server share
    /// one, so that a key falls in the same shard of each (SWAPDB moves no key, and a watch
    /// list keyed by shard stays right across it).
    pub fn with_hasher(shards: usize, hasher: ahash::RandomState) -> Table {
        assert!(shards.is_power_of_two() && shards > 1);
        Table {
            hasher,
            shards: (0..shards).map(|_| Padded::default()).collect(),
            shard_bits: shards.trailing_zeros(),
        }
    }

    /// The hash of `key`.
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The shard a hash falls in. hashbrown takes its tag from the top 7 bits and the bucket
    /// from the low ones; the shard comes from the bits just below the tag.
    #[inline]
    pub fn shard_of(&self, hash: u64) -> usize {
        ((hash << 7) >> (64 - self.shard_bits)) as usize
    }

    /// The hash of `key` and the shard it falls in.
    #[inline]
    pub fn locate(&self, key: &[u8]) -> (u64, usize) {
        let hash = self.hash(key);
        (hash, self.shard_of(hash))
    }

    /// `hashes` reordered so that those of one shard are next to each other, in shard order (for
    /// more than a few, a counting sort: two passes over them).
    pub fn group_by_shard(&self, mut hashes: Vec<u64>) -> Vec<u64> {
        if hashes.len() <= 64 {
            // Fewer than a counting sort's table is worth.
            hashes.sort_unstable_by_key(|&hash| self.shard_of(hash));
            return hashes;
        }
        let mut starts = vec![0usize; self.shards.len() + 1];
        for &hash in &hashes {
            starts[self.shard_of(hash) + 1] += 1;
        }
        for shard in 1..starts.len() {
            starts[shard] += starts[shard - 1];
        }
        let mut grouped = vec![0; hashes.len()];
        for hash in hashes {
            let at = &mut starts[self.shard_of(hash)];
            grouped[*at] = hash;
            *at += 1;
        }
        grouped
    }

    /// The runs of hashes of one shard in `hashes` (grouped by [`Table::group_by_shard`]), each
    /// cut into pieces of at most `max`.
    pub fn shard_groups<'a>(
        &'a self,
        hashes: &'a [u64],
        max: usize,
    ) -> impl Iterator<Item = &'a [u64]> + 'a {
        hashes
            .chunk_by(|&a, &b| self.shard_of(a) == self.shard_of(b))
            .flat_map(move |run| run.chunks(max))
    }

    /// How many shards there are.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Shard `shard`, read-locked, or borrowed from the atomic block this thread runs in. A
    /// lock poisoned by a panic elsewhere is taken anyway: every change to a table is a single
    /// insertion, removal or in-place update of a node that is complete or not made.
    #[inline]
    pub fn read(&self, shard: usize) -> ShardRead<'_> {
        if let Some(held) = self.held(shard) {
            // SAFETY: see `Held`: this thread holds the shard's write lock for the block, which
            // outlives the borrow, and no `&mut` to it is live (that would be a read taken while
            // a write guard of the same shard is live, which deadlocks outside a block).
            return ShardRead::Held(unsafe { held.as_ref() });
        }
        let lock = &self.shards[shard].0;
        ShardRead::Locked(match lock.try_read() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                wait_aside(|| lock.read().unwrap_or_else(|poisoned| poisoned.into_inner()))
            }
        })
    }

    /// Shard `shard`, write-locked, or borrowed from the atomic block this thread runs in.
    #[inline]
    pub fn write(&self, shard: usize) -> ShardWrite<'_> {
        if let Some(mut held) = self.held(shard) {
            // SAFETY: see `Held`: this thread holds the shard's write lock for the block, and no
            // other borrow of it is live (two guards of one shard on one thread, one of them a
            // write, deadlock outside a block, so the store never takes them).
            return ShardWrite::Held(unsafe { held.as_mut() });
        }
        ShardWrite::Locked(self.lock_write(shard))
    }

    /// Shard `shard`'s write lock, whatever the thread holds.
    fn lock_write(&self, shard: usize) -> RwLockWriteGuard<'_, Shard> {
        let lock = &self.shards[shard].0;
        match lock.try_write() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => wait_aside(|| {
                lock.write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
            }),
        }
    }

    /// The shard `shard` of this table if the current thread holds it in an atomic block: one
    /// thread-local load when it runs in none.
    #[inline]
    fn held(&self, shard: usize) -> Option<NonNull<Shard>> {
        let held = HELD.with(Cell::get);
        if held.is_null() {
            return None;
        }
        self.held_in(held, shard)
    }

    #[cold]
    fn held_in(&self, held: *const Held, shard: usize) -> Option<NonNull<Shard>> {
        // SAFETY: `HELD` points at the `Held` of the block running on this thread, which
        // `Table::atomic_many` keeps alive (on its stack) until it has reset `HELD`.
        let held = unsafe { &*held };
        // Inside a block, a shard it does not hold would be locked out of the ascending order
        // (a deadlock against another block) and released before the block ends (no isolation).
        // No input reaches this: EXEC holds the shards of every key position its commands
        // declare (in the database each runs in) and of the watched keys, every shard of every
        // database for a keyless command, and the only keyless commands it does not count
        // (@connection: PING, AUTH, CLIENT...) touch no shard. Only a command that touches an
        // undeclared key can, a bug its tests should meet here, loudly, in release too: the
        // task unwinds and the guards are released. Another table (database) is no exception.
        match held.find(self, shard) {
            Some(found) => Some(found),
            None => missed(shard),
        }
    }

    /// Runs `f` with `shards` (`None`: every shard) write-locked for this thread, taken in
    /// ascending order and released after it, in an atomic block: the store's operations that
    /// `f` runs on this thread use them (see [`Table::read`]) instead of locking. `f` must not
    /// block on anything another holder of shard locks may wait for. A nested call runs `f` in
    /// the block already running, which must hold every shard asked for.
    pub fn atomic<R: 'static>(&self, shards: Option<&[usize]>, f: impl FnOnce() -> R) -> R {
        Table::atomic_many(&[(self, shards)], f)
    }

    /// [`Table::atomic`] over several tables (databases) at once: each table's shards in
    /// ascending order, the tables in the order given, which every caller keeps the same (the
    /// databases' order), so two blocks never wait on each other. A table given twice is
    /// locked once, with the union of its shards.
    pub fn atomic_many<R: 'static>(
        blocks: &[(&Table, Option<&[usize]>)],
        f: impl FnOnce() -> R,
    ) -> R {
        let running = HELD.with(Cell::get);
        if !running.is_null() {
            // SAFETY: as in `held_in`: the running block's `Held` outlives this call.
            let running = unsafe { &*running };
            for (table, shards) in blocks {
                let all = 0..table.shards.len();
                let wanted: Vec<usize> = shards.map_or_else(|| all.collect(), <[usize]>::to_vec);
                for shard in wanted {
                    if shard < table.shards.len() && running.find(table, shard).is_none() {
                        missed(shard);
                    }
                }
            }
            return f();
        }
        let mut guards = Vec::new();
        let mut tables: Vec<(*const Table, Shards)> = Vec::with_capacity(blocks.len());
        for (at, (table, _)) in blocks.iter().enumerate() {
            if blocks[..at].iter().any(|(t, _)| std::ptr::eq(*t, *table)) {
                continue;
            }
            // Every entry for this table, merged: `None` anywhere means every shard.
            let same = blocks.iter().filter(|(t, _)| std::ptr::eq(*t, *table));
            let mut every = false;
            let mut sorted = Vec::new();
            for (_, shards) in same {
                match shards {
                    None => every = true,
                    Some(shards) => sorted.extend_from_slice(shards),
                }
            }
            let held = if every {
                guards.reserve(table.shards.len());
                let mut all = Vec::with_capacity(table.shards.len());
                for shard in 0..table.shards.len() {
                    let mut guard = table.lock_write(shard);
                    all.push(NonNull::from(&mut *guard));
                    guards.push(guard);
                }
                Shards::All(all)
            } else {
                sorted.sort_unstable();
                sorted.dedup();
                sorted.retain(|&shard| shard < table.shards.len());
                let mut some = Vec::with_capacity(sorted.len());
                for shard in sorted {
                    let mut guard = table.lock_write(shard);
                    some.push((shard, NonNull::from(&mut *guard)));
                    guards.push(guard);
                }
                Shards::Some(some)
            };
            tables.push((*table as *const Table, held));
        }
        let held = Held {
            tables,
            added: RefCell::new(Vec::new()),
            added_guards: RefCell::new(Vec::new()),
        };
        /// Resets `HELD` when the block ends, by return or unwind, before the guards go.
        struct Leave;
        impl Drop for Leave {
            fn drop(&mut self) {
                HELD.with(|held| held.set(std::ptr::null()));
            }
        }
        HELD.with(|cell| cell.set(&held));
        let leave = Leave;
        let result = f();
        drop(leave);
        drop(held.added_guards.take());
        drop(guards);
        result
    }

    /// Whether the atomic block running on this thread holds `shard` of this table; `None`
    /// when it runs in none (of this table).
    pub fn holds(&self, shard: usize) -> Option<bool> {
        let held = HELD.with(Cell::get);
        if held.is_null() {
            return None;
        }
        // SAFETY: as in `held_in`: the block that set `HELD` keeps its `Held` alive until it
        // resets it.
        let held = unsafe { &*held };
        if !held
            .tables
            .iter()
            .any(|(table, _)| std::ptr::eq(*table, self))
        {
            return None;
        }
        Some(held.find(self, shard).is_some())
    }

    /// Adds `shard` to the atomic block running on this thread if its lock is free now: never
    /// waits (it would be taken out of the ascending order, so waiting could deadlock against
    /// another block). Whether the block holds it afterwards; false outside a block.
    pub fn try_hold(&self, shard: usize) -> bool {
        match self.holds(shard) {
            Some(true) => return true,
            None => return false,
            Some(false) => {}
        }
        let Some(padded) = self.shards.get(shard) else {
            return false;
        };
        let mut guard = match padded.0.try_write() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        let pointer = NonNull::from(&mut *guard);
        // SAFETY: as in `holds`.
        let held = unsafe { &*HELD.with(Cell::get) };
        // SAFETY: the guard is released by `Table::atomic` (`added_guards`) before the block
        // returns, so it never outlives `self`, which the block borrows; 'static only lets it
        // sit in `Held`, whose type has no lifetime.
        let guard: RwLockWriteGuard<'static, Shard> = unsafe { std::mem::transmute(guard) };
        held.added_guards.borrow_mut().push(guard);
        held.added.borrow_mut().push((self, shard, pointer));
        true
    }

    /// Whether the current thread runs in an atomic block.
    #[inline]
    pub fn in_block() -> bool {
        !HELD.with(Cell::get).is_null()
    }

    /// Shards `a` and `b` write-locked together (one lock when they are the same), for an
    /// operation that changes a key in each as one step. The lower index is always locked
    /// first, so two such operations never wait on each other.
    pub fn write_pair(&self, a: usize, b: usize) -> ShardPair<'_> {
        if a == b {
            return ShardPair {
                first: self.write(a),
                second: None,
            };
        }
        let (low, high) = (self.write(a.min(b)), self.write(a.max(b)));
        let (first, second) = if a < b { (low, high) } else { (high, low) };
        ShardPair {
            first,
            second: Some(second),
        }
    }

    /// The hasher a table needs when it grows: every node's key hashed again.
    #[inline]
    pub fn rehash(&self) -> impl Fn(&Node) -> u64 + '_ {
        move |node| self.hash(node.key())
    }

    /// Keys held in every shard (each shard read in turn).
    pub fn len(&self) -> usize {
        (0..self.shards.len()).map(|s| self.read(s).len()).sum()
    }
}

/// Whether this thread runs a task of the multi-thread runtime as one of its workers, where
/// `tokio::task::block_in_place` can hand the worker's other tasks to another thread.
pub(crate) fn on_multi_thread_worker() -> bool {
    use tokio::runtime::{Handle, RuntimeFlavor};
    tokio::task::try_id().is_some()
        && Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread)
}

/// Waits for a shard lock another thread holds. That holder may be a script that runs for
/// seconds (one that had written before it turned long, see `long_blocks.rs`): on a worker of
/// the multi-thread runtime, the worker's other tasks go to another thread meanwhile, so that
/// the connections queued behind this one are served (and SCRIPT KILL or SHUTDOWN NOSAVE can
/// reach the server). Contention is rare and short otherwise; this is its slow path only.
#[cold]
#[inline(never)]
fn wait_aside<T>(wait: impl FnOnce() -> T) -> T {
    if on_multi_thread_worker() {
        tokio::task::block_in_place(wait)
    } else {
        wait()
    }
}

/// An atomic block touched shard `shard`, which it does not hold (see [`Table::held_in`]).
#[cold]
#[inline(never)]
fn missed(shard: usize) -> ! {
    panic!(
        "atomic block touched shard {shard}, which it does not hold: a command inside it \
         touches a key it does not declare"
    )
}

/// The shards an atomic block holds, for [`Table::read`] and [`Table::write`] on its thread.
///
/// The aliasing argument for the `&`/`&mut` they hand out from these pointers (of one table or
/// several: the same for each): each points into a shard whose write lock the block's guards hold until after `HELD` is reset, so no
/// other thread touches it and the pointer outlives every borrow made from it (borrows end
/// within `f`: [`Table::atomic_many`] returns only `'static` results). On the block's own thread,
/// the guards are not used while `f` runs, and the store never has two guards of one shard live
/// at once where one of them writes: outside a block that is a second lock of a shard the
/// thread holds, which deadlocks (std's `RwLock` is not re-entrant). So at any time a shard has
/// either one `&mut` or only `&`s, as if each borrow were the lock guard it replaces.
struct Held {
    /// Each table of the block and the shards of it that the block holds.
    tables: Vec<(*const Table, Shards)>,
    /// Shards added while the block runs ([`Table::try_hold`]), each taken without waiting;
    /// their guards are released with the block's.
    added: RefCell<Vec<(*const Table, usize, NonNull<Shard>)>>,
    added_guards: RefCell<Vec<RwLockWriteGuard<'static, Shard>>>,
}

impl Held {
    /// Shard `shard` of `table`, if the block holds it.
    fn find(&self, table: &Table, shard: usize) -> Option<NonNull<Shard>> {
        let (_, shards) = self.tables.iter().find(|(t, _)| std::ptr::eq(*t, table))?;
        let found = match shards {
            Shards::All(all) => all.get(shard).copied(),
            Shards::Some(some) => some
                .binary_search_by_key(&shard, |(index, _)| *index)
                .ok()
                .and_then(|at| some.get(at))
                .map(|(_, shard)| *shard),
        };
        found.or_else(|| {
            self.added
                .borrow()
                .iter()
                .find(|(t, index, _)| std::ptr::eq(*t, table) && *index == shard)
                .map(|(_, _, shard)| *shard)
        })
    }
}

/// The shards of a [`Held`]: every one (indexed by shard), or some in ascending order.
enum Shards {
    All(Vec<NonNull<Shard>>),
    Some(Vec<(usize, NonNull<Shard>)>),
}

thread_local! {
    /// The atomic block running on this thread, or null.
    static HELD: Cell<*const Held> = const { Cell::new(std::ptr::null()) };
}

/// A shard read: locked, or borrowed from the thread's atomic block.
pub(crate) enum ShardRead<'a> {
    Locked(RwLockReadGuard<'a, Shard>),
    Held(&'a Shard),
}

impl Deref for ShardRead<'_> {
    type Target = Shard;

    #[inline]
    fn deref(&self) -> &Shard {
        match self {
            ShardRead::Locked(guard) => guard,
            ShardRead::Held(shard) => shard,
        }
    }
}

/// A shard written: locked, or borrowed from the thread's atomic block.
pub(crate) enum ShardWrite<'a> {
    Locked(RwLockWriteGuard<'a, Shard>),
    Held(&'a mut Shard),
}

impl Deref for ShardWrite<'_> {
    type Target = Shard;

    #[inline]
    fn deref(&self) -> &Shard {
        match self {
            ShardWrite::Locked(guard) => guard,
            ShardWrite::Held(shard) => shard,
        }
    }
}

impl DerefMut for ShardWrite<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Shard {
        match self {
            ShardWrite::Locked(guard) => guard,
            ShardWrite::Held(shard) => shard,
        }
    }
}

/// Two shards write-locked by [`Table::write_pair`].
pub(crate) struct ShardPair<'a> {
    first: ShardWrite<'a>,
    /// `None` when both are the same shard.
    second: Option<ShardWrite<'a>>,
}

impl ShardPair<'_> {
    /// The shard given first.
    pub fn first(&mut self) -> &mut Shard {
        &mut self.first
    }

    /// The shard given second (the first, when they are the same).
    pub fn second(&mut self) -> &mut Shard {
        match &mut self.second {
            Some(second) => second,
            None => &mut self.first,
        }
    }
}

/// The predicate that finds `key` in a table.
#[inline]
pub(crate) fn is(key: &[u8]) -> impl Fn(&Node) -> bool + '_ {
    move |node| node.key() == key
}

/// Asks the CPU for the first `lines` cache lines of every node in `shard` whose tag matches
/// `hash` (usually just the one key's), without reading any node: the slots are searched now,
/// the nodes arrive while the caller does other work.
pub(crate) fn prefetch(shard: &Shard, hash: u64, lines: usize) {
    for bucket in shard.iter_hash_buckets(hash) {
        if let Some(node) = shard.get_bucket(bucket) {
            node.prefetch(lines);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_and_tags_use_different_bits() {
        let table = Table::new(1024);
        assert_eq!(table.shard_of(u64::MAX), 1023);
        // The top 7 bits (the tag) do not change the shard.
        assert_eq!(table.shard_of(0xFE00_0000_0000_0000), 0);
        assert_eq!(table.shard_of(1 << 47), 1);
    }

    #[test]
    fn hashes_grouped_by_shard_come_in_runs_of_one_shard_cut_to_size() {
        let table = Table::new(1024);
        // Under Miri (.ci/run) fewer, still past the counting sort's threshold.
        let count = if cfg!(miri) { 500 } else { 5_000u64 };
        let hashes: Vec<u64> = (0..count)
            .map(|i| table.hash(&i.to_le_bytes()))
            .chain([7 << 47; 5])
            .collect();
        let grouped = table.group_by_shard(hashes.clone());
        let (mut sorted, mut expected) = (grouped.clone(), hashes);
        sorted.sort_unstable();
        expected.sort_unstable();
        assert_eq!(sorted, expected, "the same hashes");
        assert!(grouped.is_sorted_by_key(|&h| table.shard_of(h)));
        let groups: Vec<&[u64]> = table.shard_groups(&grouped, 3).collect();
        assert_eq!(groups.iter().map(|g| g.len()).sum::<usize>(), grouped.len());
        for group in &groups {
            assert!((1..=3).contains(&group.len()));
            assert!(group
                .iter()
                .all(|&h| table.shard_of(h) == table.shard_of(group[0])));
        }
        assert!(groups.iter().any(|g| g == &[7 << 47; 3]));
        assert!(table.group_by_shard(Vec::new()).is_empty());
        // A short list takes the plain sort, to the same order of shards.
        let short = table.group_by_shard(vec![u64::MAX, 1 << 47, 0]);
        assert!(short.is_sorted_by_key(|&h| table.shard_of(h)) && short.len() == 3);
    }

    #[test]
    fn a_pair_of_shards_hands_each_back_in_the_order_asked_and_one_once() {
        use crate::store::{Entry, Value};
        let table = Table::new(8);
        let node = |key: &[u8]| Node::new(key, Entry::new(Value::Str(Default::default()), 0));
        let mut pair = table.write_pair(5, 2);
        pair.first().insert_unique(1, node(b"five"), table.rehash());
        pair.second().insert_unique(2, node(b"two"), table.rehash());
        drop(pair);
        assert_eq!((table.read(5).len(), table.read(2).len()), (1, 1));
        let mut same = table.write_pair(3, 3);
        same.first().insert_unique(3, node(b"a"), table.rehash());
        assert_eq!(same.second().len(), 1, "the same shard, locked once");
    }

    fn node(key: &[u8]) -> Node {
        use crate::store::{Entry, Value};
        Node::new(key, Entry::new(Value::Str(Default::default()), 0))
    }

    #[test]
    fn a_block_takes_a_free_shard_it_does_not_hold_and_never_waits_for_a_busy_one() {
        let table = Table::new(8);
        assert_eq!(table.holds(3), None, "outside a block");
        assert!(!table.try_hold(3));
        // Another thread holds shard 6 for the whole block.
        let busy = table.shards[6].0.write().unwrap();
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    table.atomic(Some(&[1]), || {
                        assert_eq!(table.holds(1), Some(true));
                        assert_eq!(table.holds(3), Some(false));
                        assert!(table.try_hold(3), "free: taken");
                        assert_eq!(table.holds(3), Some(true));
                        assert!(table.try_hold(3), "held already");
                        table
                            .write(3)
                            .insert_unique(3, node(b"three"), table.rehash());
                        assert!(!table.try_hold(6), "busy: refused at once");
                        assert_eq!(table.holds(6), Some(false));
                    });
                })
                .join()
                .unwrap();
        });
        drop(busy);
        assert!(
            table.shards[3].0.try_write().is_ok(),
            "released with the block"
        );
        assert_eq!(table.read(3).len(), 1);
    }

    #[test]
    fn a_block_hands_out_the_shards_it_holds_without_locking_them_again() {
        let table = Table::new(8);
        let done = table.atomic(Some(&[5, 2, 5]), || {
            assert!(Table::in_block());
            // Held: another lock of them would fail (and a blocking one deadlock).
            assert!(table.shards[2].0.try_read().is_err());
            assert!(table.shards[5].0.try_read().is_err());
            assert!(table.shards[3].0.try_read().is_ok(), "only those asked");
            table
                .write(5)
                .insert_unique(1, node(b"five"), table.rehash());
            {
                let mut pair = table.write_pair(5, 2);
                pair.second().insert_unique(2, node(b"two"), table.rehash());
                assert_eq!(pair.first().len(), 1);
            }
            // Two reads of one shard at once are shared borrows.
            let (a, b) = (table.read(5), table.read(5));
            assert_eq!(a.len() + b.len(), 2);
            // A nested block runs in this one.
            table.atomic(Some(&[2]), || table.read(2).len())
        });
        assert_eq!(done, 1);
        assert!(!Table::in_block());
        assert!(table.shards[5].0.try_write().is_ok(), "released");
        assert_eq!((table.read(5).len(), table.read(2).len()), (1, 1));
    }

    #[test]
    fn a_block_of_every_shard_holds_them_all_and_others_wait_for_its_end() {
        let table = &Table::new(8);
        let seen = std::sync::atomic::AtomicUsize::new(usize::MAX);
        std::thread::scope(|scope| {
            let (entered, wait) = std::sync::mpsc::channel();
            let (release, released) = std::sync::mpsc::channel::<()>();
            let writer = scope.spawn(move || {
                table.atomic(None, move || {
                    entered.send(()).unwrap();
                    for shard in 0..8 {
                        table
                            .write(shard)
                            .insert_unique(shard as u64, node(b"k"), table.rehash());
                    }
                    released.recv().unwrap();
                })
            });
            wait.recv().unwrap();
            // Another thread is not in the block: it locks, and waits.
            assert!((0..8).all(|shard| table.shards[shard].0.try_read().is_err()));
            release.send(()).unwrap();
            writer.join().unwrap();
            seen.store(table.len(), std::sync::atomic::Ordering::Relaxed);
        });
        assert_eq!(seen.into_inner(), 8, "the whole block at once");
    }

    #[test]
    fn a_block_that_panics_leaves_and_releases_its_shards() {
        let table = Table::new(8);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            table.atomic(Some(&[1]), || {
                table.write(1).insert_unique(1, node(b"k"), table.rehash());
                panic!("inside the block");
            })
        }));
        assert!(outcome.is_err());
        assert!(!Table::in_block());
        assert_eq!(table.read(1).len(), 1);
        // Released (poisoned, which the table ignores).
        assert!(!matches!(
            table.shards[1].0.try_write(),
            Err(std::sync::TryLockError::WouldBlock)
        ));
    }

    #[test]
    fn a_block_that_touches_a_shard_it_does_not_hold_panics_and_releases_its_shards() {
        let table = Table::new(8);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            table.atomic(Some(&[2, 6]), || {
                table.write(2).insert_unique(2, node(b"k"), table.rehash());
                // Shard 4 is not held: neither locked out of order nor borrowed.
                table.read(4).len()
            })
        }));
        let message = outcome.expect_err("a miss panics, in release too");
        let message = message
            .downcast_ref::<String>()
            .expect("a formatted message");
        assert!(
            message.contains("shard 4, which it does not hold"),
            "{message}"
        );
        assert!(!Table::in_block());
        for shard in [2, 4, 6] {
            assert!(
                !matches!(
                    table.shards[shard].0.try_write(),
                    Err(std::sync::TryLockError::WouldBlock)
                ),
                "shard {shard} released"
            );
        }
        assert_eq!(table.read(2).len(), 1);
    }

    #[test]
    fn a_block_over_two_tables_holds_both_and_another_table_is_a_miss() {
        let (table, other, third) = (Table::new(8), Table::new(8), Table::new(8));
        Table::atomic_many(&[(&table, Some(&[4][..])), (&other, Some(&[1, 4]))], || {
            other.write(4).insert_unique(4, node(b"k"), other.rehash());
            table.write(4).insert_unique(4, node(b"k"), table.rehash());
            assert!(other.shards[4].0.try_write().is_err(), "held by the block");
            // A nested block over what is held runs in it.
            other.atomic(Some(&[1]), || other.read(1).len());
        });
        assert_eq!((table.read(4).len(), other.read(4).len()), (1, 1));
        for nested in [false, true] {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                table.atomic(Some(&[4]), || {
                    if nested {
                        // Not silently unlocked: a nested block on a table not held.
                        third.atomic(Some(&[4]), || ());
                    } else {
                        third.read(4).len();
                    }
                })
            }));
            assert!(outcome.is_err(), "nested: {nested}");
            assert!(!Table::in_block());
            // Released (poisoned, which the table ignores).
            for shard in [&third.shards[4].0, &table.shards[4].0] {
                assert!(!matches!(
                    shard.try_write(),
                    Err(std::sync::TryLockError::WouldBlock)
                ));
            }
        }
    }
}
