//! Freeing flushed shards off the command thread (FLUSHALL/FLUSHDB ASYNC).
//!
//! `Store::flush_async` swaps every shard's table for an empty one under its lock, so that the
//! keyspace is empty for every client at once, and queues the old tables here. One background
//! thread at a time (started on demand, ended when the queue is empty, so an idle server has
//! none) walks them, frees their nodes, and only then takes their keys out of the counters that
//! sum over keys (`used_memory`, the volatile and session counts): until then those still count
//! the memory the process holds, as Redis's `used_memory` counts lazyfree's pending objects.
//! The queue and its thread are the server's, shared by its databases: each table goes with
//! the database it was flushed from, whose counters its keys leave.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

use std::sync::Arc;

use super::accounting::Tally;
use super::table::Shard;
use super::Store;

/// The queue of swapped-out tables and its counters.
#[derive(Debug)]
pub(crate) struct LazyFree {
    queue: Mutex<Queue>,
    /// Keys freed in the background since start; tests and INFO watch it.
    freed: watch::Sender<u64>,
}

#[derive(Default)]
struct Queue {
    /// Each table, with the database it was flushed from.
    tables: Vec<(Arc<Store>, Shard)>,
    /// Keys in `tables` and in the table the worker holds.
    pending: u64,
    /// Whether a worker thread runs (and will look at `tables` again before it ends).
    working: bool,
}

/// Counts only: a queued table's store holds this queue (printing it would recurse).
impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("tables", &self.tables.len())
            .field("pending", &self.pending)
            .field("working", &self.working)
            .finish()
    }
}

/// What the freed keys were counted as.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Freed {
    pub keys: u64,
    pub tally: Tally,
}

impl Default for LazyFree {
    fn default() -> Self {
        LazyFree {
            queue: Mutex::default(),
            freed: watch::Sender::new(0),
        }
    }
}

impl LazyFree {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `tables` holding `keys` keys; returns whether the caller must start a worker
    /// (none runs).
    pub(crate) fn push(&self, from: &Arc<Store>, tables: Vec<Shard>, keys: u64) -> bool {
        let mut queue = self.queue();
        queue
            .tables
            .extend(tables.into_iter().map(|table| (Arc::clone(from), table)));
        queue.pending += keys;
        !std::mem::replace(&mut queue.working, true)
    }

    /// The next table for the worker, or `None`, in which case the worker ends (and a later
    /// `push` starts another).
    pub(crate) fn next(&self) -> Option<(Arc<Store>, Shard)> {
        let mut queue = self.queue();
        let table = queue.tables.pop();
        if table.is_none() {
            queue.working = false;
        }
        table
    }

    /// Counts `keys` freed: they move from pending to freed in one step under the queue's lock,
    /// so [`counts`](Self::counts) never sees them in both or in neither.
    pub(crate) fn done(&self, keys: u64) {
        let mut queue = self.queue();
        queue.pending = queue.pending.saturating_sub(keys);
        self.freed.send_modify(|freed| *freed += keys);
        drop(queue);
    }

    /// Keys pending and keys freed, read at one instant (INFO's two lazyfree fields).
    pub(crate) fn counts(&self) -> (u64, u64) {
        let queue = self.queue();
        (queue.pending, *self.freed.borrow())
    }

    /// Keys flushed but not yet freed (Redis's `lazyfree_pending_objects`).
    pub(crate) fn pending(&self) -> u64 {
        self.queue().pending
    }

    /// Keys freed in the background since start (Redis's `lazyfreed_objects`).
    pub(crate) fn freed(&self) -> watch::Receiver<u64> {
        self.freed.subscribe()
    }
}

/// Walks `table`: what its keys were counted as. Drops it (freeing every node) on return.
pub(crate) fn free(table: Shard) -> Freed {
    let mut freed = Freed::default();
    for node in table.iter() {
        freed.keys += 1;
        freed.tally.add(node);
    }
    freed
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use crate::store::{Entry, Store, Value};
    use crate::Clock;

    /// FLUSHALL ASYNC: the keyspace is empty at once, the keys are freed on another thread, and
    /// the counters over keys come back to zero once they are.
    #[test]
    fn an_async_flush_empties_at_once_and_frees_in_the_background() {
        const KEYS: u64 = 10_000;
        let start = 1_000_000;
        let (clock, _manual) = Clock::manual(start);
        let store = Arc::new(Store::new(clock));
        let mut freed = store.lazyfreed();
        for i in 0..KEYS {
            let deadline = if i % 2 == 0 { start + 60_000 } else { 0 };
            store.upsert(format!("key:{i}").as_bytes(), start, |_| {
                let value = Value::Str(Bytes::from(vec![b'v'; 100]));
                (Some(Entry::new(value, deadline)), ())
            });
        }
        assert_eq!(store.volatile_len(), KEYS / 2);
        let used = store.used_memory();
        assert!(used > 0);

        store.flush_async();
        assert_eq!(store.len(), 0, "the keyspace is empty at once");
        assert!(store.read(b"key:1", start, |node| node.is_none()));
        // Every key is either pending or freed already (the thread may be done).
        let (pending, freed_now) = store.lazyfree_counts();
        assert_eq!(pending + freed_now, KEYS);

        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime
            .block_on(freed.wait_for(|&n| n == KEYS))
            .expect("the store lives");
        assert_eq!(store.lazyfree_pending(), 0);
        assert_eq!(store.used_memory(), 0);
        assert_eq!(store.volatile_len(), 0);

        // The store works on: a key written after the flush is counted, and a second flush of
        // an empty keyspace queues nothing.
        store.put_str(b"after", start, 0);
        assert_eq!(store.len(), 1);
        store.flush_async();
        assert_eq!(store.len(), 0);
        runtime
            .block_on(freed.wait_for(|&n| n == KEYS + 1))
            .expect("the store lives");
        assert_eq!(store.used_memory(), 0);
    }
}
