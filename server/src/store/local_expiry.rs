//! A writable replica's own keys with a deadline (`replica-read-only no`): Redis's
//! `slaveKeysWithExpire`.
//!
//! A replica runs no active expiry: its primary expires the keys it sent, and says so in the
//! stream (a replica deleting one early could lose it, when the primary moved its deadline
//! meanwhile). The keys a writable replica's clients write are not the primary's, which never
//! says anything about them, so without this they would stay in memory after their deadline
//! (hidden from reads) until the next full sync. Each write a client makes on a writable
//! replica ([`local_writes`]) notes the key's deadline here; the replica's expiry cycle
//! deletes those past it ([`Store::expire_local`]). A write of the primary's to such a key
//! makes it the primary's again, and takes it off.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

use super::accounting::{Before, Removal};
use super::table::is;
use super::{feed, Store};

/// The most due keys one cycle of a database looks at: the rest wait for the next cycle.
const BATCH: usize = 1024;

thread_local! {
    /// Whether the writes on this thread are a writable replica's clients' (see
    /// [`local_writes`]).
    static LOCAL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the writes it makes counted as this node's own, on a writable replica: not
/// recorded in the feed (which carries the primary's stream) and, when they set a deadline,
/// noted for the replica's expiry.
pub fn local_writes<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            LOCAL.with(|local| local.set(self.0));
        }
    }
    let _restore = Restore(LOCAL.with(|local| local.replace(true)));
    feed::without_recording(f)
}

/// The keys of one database a writable replica's clients gave a deadline.
#[derive(Debug, Default)]
pub(super) struct LocalVolatile {
    keys: Mutex<Keys>,
    /// Keys noted (a lock-free look for the writes of a node that has none).
    len: AtomicUsize,
}

#[derive(Debug, Default)]
struct Keys {
    deadline: HashMap<Bytes, u64>,
    due: BTreeSet<(u64, Bytes)>,
}

impl LocalVolatile {
    fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A write to `key`, which now has `deadline` (0: none): a local one notes it, the
    /// primary's takes the key off. Call under the key's shard lock.
    #[inline]
    pub(super) fn wrote(&self, key: &[u8], deadline: u64) {
        if LOCAL.with(Cell::get) {
            self.note(key, deadline);
        } else if self.len.load(Ordering::Relaxed) > 0 {
            self.note(key, 0);
        }
    }

    fn note(&self, key: &[u8], deadline: u64) {
        let mut keys = self.keys();
        let Keys {
            deadline: by_key,
            due,
        } = &mut *keys;
        let old = if deadline == 0 {
            by_key.remove(key)
        } else {
            by_key.insert(Bytes::copy_from_slice(key), deadline)
        };
        if let Some(old) = old.filter(|&old| old != deadline) {
            due.remove(&(old, Bytes::copy_from_slice(key)));
        }
        if deadline != 0 {
            due.insert((deadline, Bytes::copy_from_slice(key)));
        }
        self.len.store(by_key.len(), Ordering::Relaxed);
    }

    /// Forgets every key unless `following` (read under the lock a note is made under: a
    /// note made once the node follows again stays); a relaxed load when there is none.
    pub(super) fn clear_unless(&self, following: &AtomicBool) {
        if self.len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut keys = self.keys();
        if following.load(Ordering::SeqCst) {
            return;
        }
        keys.deadline.clear();
        keys.due.clear();
        self.len.store(0, Ordering::Relaxed);
    }

    /// Takes off up to `max` keys whose deadline is at or before `now_ms`, with it.
    fn take_due(&self, now_ms: u64, max: usize) -> Vec<(Bytes, u64)> {
        if self.len.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let mut keys = self.keys();
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some((deadline, _)) = keys.due.first() else {
                break;
            };
            if *deadline > now_ms {
                break;
            }
            let Some((deadline, key)) = keys.due.pop_first() else {
                break;
            };
            keys.deadline.remove(&key);
            taken.push((key, deadline));
        }
        self.len.store(keys.deadline.len(), Ordering::Relaxed);
        taken
    }
}

impl Store {
    /// A writable replica's expiry of its own keys: deletes those noted whose deadline passed
    /// (and that still have the deadline noted), as a primary's active expiry deletes its keys,
    /// events and counts included, but not in the feed. A key in a shard a long script holds
    /// waits for the next cycle.
    pub fn expire_local(&self, now_ms: u64) {
        let due = self.local.take_due(now_ms, BATCH);
        if due.is_empty() {
            return;
        }
        let rec = self.journal.recording();
        for (key, deadline) in due {
            let (hash, shard_index) = self.map.locate(&key);
            if self.long_blocks.holds(shard_index) {
                self.local.note(&key, deadline);
                continue;
            }
            let mut shard = self.map.write(shard_index);
            let removed = match shard.find_entry(hash, is(&key)) {
                Ok(occupied)
                    if occupied.get().expires_at_ms() == deadline
                        && occupied.get().is_expired(now_ms) =>
                {
                    feed::without_recording(|| {
                        self.journal_delete(shard_index, &key, &rec, true, Removal::Expired)
                    });
                    Some(occupied.remove().0)
                }
                _ => None,
            };
            drop(shard);
            if let Some(node) = removed {
                self.after_remove(&node, Before::of(&node), Removal::Expired);
            }
        }
        drop(rec);
        self.bound_index();
    }

    /// Forgets the keys noted as this node's own (see [`local_writes`]) unless `following`
    /// says the node follows a primary (again).
    pub fn forget_local_keys(&self, following: &AtomicBool) {
        self.local.clear_unless(following);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(local: &LocalVolatile, now_ms: u64) -> Vec<(Vec<u8>, u64)> {
        local
            .take_due(now_ms, BATCH)
            .into_iter()
            .map(|(key, deadline)| (key.to_vec(), deadline))
            .collect()
    }

    #[test]
    fn a_key_is_due_once_at_its_last_deadline_and_a_primary_s_write_takes_it_off() {
        let local = LocalVolatile::default();
        local_writes(|| {
            local.wrote(b"a", 100);
            local.wrote(b"a", 300);
            local.wrote(b"b", 200);
            local.wrote(b"persisted", 150);
            local.wrote(b"persisted", 0);
            local.wrote(b"taken", 250);
        });
        // Not local: the primary's write of `taken`.
        local.wrote(b"taken", 400);
        assert_eq!(due(&local, 199), []);
        assert_eq!(
            due(&local, 1000),
            [(b"b".to_vec(), 200), (b"a".to_vec(), 300)]
        );
        assert_eq!(due(&local, 1000), []);
        assert_eq!(local.len.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn outside_local_writes_nothing_is_noted() {
        let local = LocalVolatile::default();
        local.wrote(b"k", 100);
        assert_eq!(due(&local, 1000), []);
        local_writes(|| local.wrote(b"k", 100));
        local.clear_unless(&AtomicBool::new(true));
        assert_eq!(due(&local, 1000), [(b"k".to_vec(), 100)]);
        local_writes(|| local.wrote(b"k", 100));
        local.clear_unless(&AtomicBool::new(false));
        assert_eq!(due(&local, 1000), []);
    }
}
