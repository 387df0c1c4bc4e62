//! The change journal that makes a background snapshot consistent without stopping writes.
//!
//! A snapshot walks the map shard by shard while clients keep writing, so the shards it has
//! already written go stale. While a snapshot runs, every change to the keyspace is therefore
//! also recorded here — the entry's new state, or its deletion — under the key's shard lock.
//! The writer appends the journal after the shards, and the loader replays the file in order:
//! the result is the keyspace as it was at the moment the journal was closed. Only each key's
//! last state at that moment matters, so the journal keeps one record per key, replaced by each
//! change: a key written thousands of times during a save costs one record, in memory and in
//! the file.
//!
//! That moment is one instant for the whole keyspace: every mutation that journals takes the
//! read side of `gate` before any shard lock, and [`Journal::end`] takes the write side, so no
//! mutation is half journalled when it closes. An operation that changes two keys as one step
//! (REGENERATE removes the old ID and inserts the new one) holds one [`Recording`] across both,
//! so a snapshot holds both changes or neither: a regenerated session is never in the file twice
//! or not at all.
//!
//! The start is one instant too: [`Journal::begin`] waits for the mutations in flight that saw
//! no save running (see its documentation for why none can slip past), so a change lands either
//! in the shards before the writer reads them or in the journal. When no snapshot runs, a
//! mutation pays two atomic operations on its thread's own cache line and one load.
//!
//! The journal is not counted in `maxmemory`, so it has a bound of its own: past `limit` bytes
//! it stops recording and says so ([`Journal::overflowed`]), and the writer abandons the save.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use bytes::Bytes;

use super::record::{Ending, Record};
use crate::stats::{this_threads_stripe, STRIPES};

/// Mutations in flight on the threads of one stripe, on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(64))]
struct InFlight(AtomicU64);

/// One shard's pending records: each key's last change, by database and key.
type Log = HashMap<(u16, Bytes), Record, ahash::RandomState>;

/// Changes recorded while a snapshot is written.
#[derive(Debug)]
pub struct Journal {
    active: AtomicBool,
    gate: RwLock<()>,
    /// Mutations that saw `active` false and have not finished, per thread stripe.
    in_flight: [InFlight; STRIPES],
    /// Whether [`Journal::begin`] is waiting for mutations in flight (for tests).
    draining: AtomicBool,
    /// One log per map shard: a key's record is only changed under its shard's lock (the
    /// shard of the same index in each database shares the log, keyed by database and key).
    logs: Box<[Mutex<Log>]>,
    /// Records the logs hold.
    records: AtomicU64,
    /// Bytes the logs hold (see [`held_bytes`]).
    bytes: AtomicU64,
    /// The bound on `bytes` for the journal open now.
    limit: AtomicU64,
    /// Whether `bytes` passed `limit`: recording stopped, the save must be abandoned.
    overflowed: AtomicBool,
    /// Whether a SWAPDB ran while the journal was open: the save, which walks the databases by
    /// index, must be abandoned ([`Journal::spoil`]).
    spoiled: AtomicBool,
}

/// Whether the current operation journals its changes; held for the whole operation, before
/// any shard lock is taken.
#[derive(Debug)]
pub struct Recording<'a> {
    guard: Option<RwLockReadGuard<'a, ()>>,
    /// The stripe counting this operation in flight, when it journals nothing.
    counted: Option<&'a AtomicU64>,
    /// Inside an atomic block: whether the block's own recording is on (it holds the gate).
    nested_on: bool,
}

impl Recording<'_> {
    /// Whether changes must be journalled.
    #[inline]
    pub fn on(&self) -> bool {
        self.guard.is_some() || self.nested_on
    }
}

thread_local! {
    /// Inside an atomic block (EXEC), the block's recording: 0 none, 1 off, 2 on. The block
    /// takes the gate once, before its shard locks; the operations inside it must not take it
    /// again (a read re-taken while `end` waits for the write side deadlocks).
    static NESTED: Cell<u8> = const { Cell::new(0) };
}

/// Makes [`Journal::recording`] on this thread answer `outer`'s state until dropped: the
/// operations of an atomic block share its recording.
#[derive(Debug)]
pub struct Nested(());

impl Nested {
    /// Shares `outer` with the operations run on this thread until the result is dropped.
    pub fn enter(outer: &Recording<'_>) -> Nested {
        NESTED.with(|nested| nested.set(1 + u8::from(outer.on())));
        Nested(())
    }
}

impl Drop for Nested {
    fn drop(&mut self) {
        NESTED.with(|nested| nested.set(0));
    }
}

impl Drop for Recording<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(counted) = self.counted {
            counted.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// What a journal holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    /// Records (at most one per key).
    pub records: u64,
    /// Their bytes: keys, values, fields, and the record itself.
    pub bytes: u64,
}

/// The bytes `record` holds in a log: its data, the record and the map's slot (key handle).
fn held_bytes(record: &Record) -> u64 {
    const SLOT: usize = std::mem::size_of::<Record>() + std::mem::size_of::<Bytes>() + 8;
    const FIELD: usize = 2 * std::mem::size_of::<Bytes>();
    let fields = |fields: &[(Bytes, Bytes)]| -> usize {
        fields.iter().map(|(f, v)| FIELD + f.len() + v.len()).sum()
    };
    let data = match record {
        Record::String { key, value, .. } => key.len() + value.len(),
        Record::Hash { key, fields: f, .. } => key.len() + fields(f),
        Record::Set { key, members, .. } => {
            let member = std::mem::size_of::<Bytes>();
            key.len() + members.iter().map(|m| member + m.len()).sum::<usize>()
        }
        Record::Session {
            id,
            user,
            fields: f,
            ..
        } => id.len() + user.as_ref().map_or(0, Bytes::len) + fields(f),
        Record::Delete { key }
        | Record::Deadline { key, .. }
        | Record::SessionTouch { id: key, .. } => key.len(),
        Record::Ended { key, why } => match why {
            Ending::Regenerated { to } => key.len() + to.len(),
            Ending::Expired | Ending::Evicted => key.len(),
        },
        // Never journalled (the journal holds whole states), counted for completeness.
        Record::HashFields {
            key, set, removed, ..
        } => key.len() + fields(set) + removed.iter().map(|f| FIELD + f.len()).sum::<usize>(),
        Record::SetMembers {
            key,
            added,
            removed,
            ..
        } => {
            key.len()
                + added
                    .iter()
                    .chain(removed)
                    .map(|m| FIELD + m.len())
                    .sum::<usize>()
        }
        Record::FlushDb | Record::SwapDb { .. } => 0,
    };
    (SLOT + data) as u64
}

impl Journal {
    /// A journal with one log per map shard.
    pub fn new(shards: usize) -> Journal {
        Journal {
            active: AtomicBool::new(false),
            gate: RwLock::new(()),
            in_flight: Default::default(),
            draining: AtomicBool::new(false),
            logs: (0..shards).map(|_| Mutex::new(Log::default())).collect(),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            limit: AtomicU64::new(u64::MAX),
            overflowed: AtomicBool::new(false),
            spoiled: AtomicBool::new(false),
        }
    }

    /// Starts journalling (a snapshot begins), holding at most `limit_bytes`; returns once every
    /// mutation that started before and journals nothing has finished.
    ///
    /// Why none can slip past: a mutation adds one to its thread's stripe of `in_flight`, then
    /// loads `active`; `begin` stores `active`, then reads each stripe until it reads zero once
    /// (all four operations SeqCst, so they fall in one total order). If the mutation's load
    /// saw `false`, it came before the store, so its addition did too and every read of its
    /// stripe by `begin` includes it: a zero then means it has subtracted it again, finished
    /// (the subtraction is in its [`Recording`]'s drop, after its last shard write). If the
    /// load saw `true`, the mutation journals. Mutations that start once `begin` has read its
    /// stripe see `true` for the same reason. A stripe busy with one mutation after another
    /// still reads zero between them; a mutation only counts while it holds a [`Recording`]
    /// (never across an `.await`).
    pub fn begin(&self, limit_bytes: u64) {
        // The logs are empty: `end` drained them, and nothing records while `active` is false.
        self.records.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.limit.store(limit_bytes, Ordering::Relaxed);
        self.overflowed.store(false, Ordering::Relaxed);
        self.spoiled.store(false, Ordering::Relaxed);
        self.active.store(true, Ordering::SeqCst);
        for stripe in &self.in_flight {
            let mut spins = 0u32;
            while stripe.0.load(Ordering::SeqCst) != 0 {
                self.draining.store(true, Ordering::Relaxed);
                spins = spins.saturating_add(1);
                // A mutation holds its count for one key's write, usually; a long one (FLUSHALL
                // over a large keyspace) must not cost a core for as long.
                match spins {
                    0..100 => std::hint::spin_loop(),
                    100..1_000 => std::thread::yield_now(),
                    _ => std::thread::sleep(std::time::Duration::from_micros(100)),
                }
            }
        }
        self.draining.store(false, Ordering::Relaxed);
    }

    /// Whether [`Journal::begin`] is waiting for mutations in flight (for tests).
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Stops journalling and returns every change recorded (each key's last state, or
    /// [`Record::Delete`]) with its database; `None` if the journal overflowed, and the save
    /// must be abandoned.
    pub fn end(&self) -> Option<Vec<(u16, Record)>> {
        // Polled, not waited for: a writer waiting on std's `RwLock` stops new readers, and a
        // long script holds a reader for its whole run, so every later write, on every thread,
        // would wait for the script. This runs on the snapshot's own thread.
        let closed = loop {
            match self.gate.try_write() {
                Ok(closed) => break closed,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    std::thread::sleep(std::time::Duration::from_micros(200))
                }
            }
        };
        self.active.store(false, Ordering::SeqCst);
        let overflowed =
            self.overflowed.load(Ordering::Relaxed) || self.spoiled.load(Ordering::Relaxed);
        let mut changes = Vec::new();
        for log in self.logs.iter() {
            let drained = std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()));
            if !overflowed {
                changes.extend(drained.into_iter().map(|((db, _), record)| (db, record)));
            }
        }
        self.records.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        drop(closed);
        (!overflowed).then_some(changes)
    }

    /// Whether the journal open now passed its bound and stopped recording: the save must be
    /// abandoned.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed) || self.spoiled.load(Ordering::Relaxed)
    }

    /// Marks the open journal's save as abandoned: a SWAPDB ran during it (call with a
    /// [`Recording`] that is on, so that the journal is not closed meanwhile).
    pub fn spoil(&self) {
        self.spoiled.store(true, Ordering::Relaxed);
    }

    /// Whether the last save was abandoned for a SWAPDB (until the next [`Journal::begin`]).
    pub fn spoiled(&self) -> bool {
        self.spoiled.load(Ordering::Relaxed)
    }

    /// What the journal holds now (nothing when no snapshot runs).
    pub fn held(&self) -> Held {
        Held {
            records: self.records.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }

    /// Call at the start of an operation that changes the keyspace, before taking any shard lock.
    #[inline]
    pub fn recording(&self) -> Recording<'_> {
        let nested = NESTED.with(Cell::get);
        if nested != 0 {
            // Inside an atomic block, whose recording holds the gate and counts in flight.
            return Recording {
                guard: None,
                counted: None,
                nested_on: nested == 2,
            };
        }
        let stripe = &self.in_flight[this_threads_stripe()].0;
        stripe.fetch_add(1, Ordering::SeqCst);
        let counted = Recording {
            guard: None,
            counted: Some(stripe),
            nested_on: false,
        };
        if !self.active.load(Ordering::SeqCst) {
            return counted;
        }
        let guard = self.gate.read().unwrap_or_else(|p| p.into_inner());
        if !self.active.load(Ordering::SeqCst) {
            // The journal closed meanwhile: this change comes after its instant. It stays
            // counted, for the next `begin`.
            return counted;
        }
        drop(counted);
        Recording {
            guard: Some(guard),
            counted: None,
            nested_on: false,
        }
    }

    /// Records `change` as its key's last state in database `db`, in the log of map shard
    /// `shard` (the caller holds that shard's lock and a [`Recording`] that is on).
    pub fn push(&self, db: u16, shard: usize, change: Record) {
        if self.overflowed.load(Ordering::Relaxed) {
            return;
        }
        let Some(log) = self.logs.get(shard) else {
            return;
        };
        let added = held_bytes(&change);
        let replaced = log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((db, change.key().clone()), change);
        let removed = match &replaced {
            Some(old) => held_bytes(old),
            None => {
                self.records.fetch_add(1, Ordering::Relaxed);
                0
            }
        };
        let total = if added >= removed {
            self.bytes.fetch_add(added - removed, Ordering::Relaxed) + (added - removed)
        } else {
            self.bytes.fetch_sub(removed - added, Ordering::Relaxed) - (removed - added)
        };
        if total > self.limit.load(Ordering::Relaxed) {
            self.overflowed.store(true, Ordering::Relaxed);
        }
    }
}
