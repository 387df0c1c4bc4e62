//! The change journal that makes a background snapshot consistent without stopping writes.
//!
//! A snapshot walks the map shard by shard while clients keep writing, so the shards it has
//! already written go stale. While a snapshot runs, every change to the keyspace is therefore
//! also recorded here — the entry's new state, or its deletion — under the key's shard lock, so
//! the records of one key are in the order the changes happened. The writer appends the journal
//! after the shards, and the loader replays the file in order: the result is the keyspace as it
//! was at the moment the journal was closed.
//!
//! That moment is one instant for the whole keyspace: every mutation that journals takes the
//! read side of `gate` before any shard lock, and [`Journal::end`] takes the write side, so no
//! mutation is half journalled when it closes. An operation that changes two keys as one step
//! (REGENERATE removes the old ID and inserts the new one) holds one [`Recording`] across both,
//! so a snapshot holds both changes or neither: a regenerated session is never in the file twice
//! or not at all. When no snapshot runs, a mutation pays one atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use crate::persist::format::Record;

/// Changes recorded while a snapshot is written.
#[derive(Debug)]
pub struct Journal {
    active: AtomicBool,
    gate: RwLock<()>,
    /// One log per map shard: a shard's log is only pushed to under that shard's lock.
    logs: Box<[Mutex<Vec<Record>>]>,
}

/// Whether the current operation journals its changes; held for the whole operation, before
/// any shard lock is taken.
#[derive(Debug)]
pub struct Recording<'a> {
    guard: Option<RwLockReadGuard<'a, ()>>,
}

impl Recording<'_> {
    /// Whether changes must be journalled.
    #[inline]
    pub fn on(&self) -> bool {
        self.guard.is_some()
    }
}

impl Journal {
    /// A journal with one log per map shard.
    pub fn new(shards: usize) -> Journal {
        Journal {
            active: AtomicBool::new(false),
            gate: RwLock::new(()),
            logs: (0..shards).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    /// Starts journalling (a snapshot begins).
    pub fn begin(&self) {
        let _closed = self.gate.write().unwrap_or_else(|p| p.into_inner());
        for log in self.logs.iter() {
            log.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        self.active.store(true, Ordering::Release);
    }

    /// Stops journalling and returns every change recorded (an entry's new state, or
    /// [`Record::Delete`]), each shard's in order.
    pub fn end(&self) -> Vec<Record> {
        let closed = self.gate.write().unwrap_or_else(|p| p.into_inner());
        self.active.store(false, Ordering::Release);
        let mut changes = Vec::new();
        for log in self.logs.iter() {
            changes.append(&mut log.lock().unwrap_or_else(|p| p.into_inner()));
        }
        drop(closed);
        changes
    }

    /// Call at the start of an operation that changes the keyspace, before taking any shard lock.
    #[inline]
    pub fn recording(&self) -> Recording<'_> {
        if !self.active.load(Ordering::Acquire) {
            return Recording { guard: None };
        }
        let guard = self.gate.read().unwrap_or_else(|p| p.into_inner());
        if self.active.load(Ordering::Acquire) {
            Recording { guard: Some(guard) }
        } else {
            Recording { guard: None }
        }
    }

    /// Records `change` in the log of map shard `shard` (the caller holds that shard's lock).
    pub fn push(&self, shard: usize, change: Record) {
        if let Some(log) = self.logs.get(shard) {
            log.lock().unwrap_or_else(|p| p.into_inner()).push(change);
        }
    }
}
