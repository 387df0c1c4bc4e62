//! WATCH: which connections watch which keys, and the flag each one's next EXEC reads.
//!
//! A watching connection has one [`Dirty`] flag; every key it watches lists that flag in the
//! stripe of the key's map shard. Every mutation of a key calls [`Watches::touch`] under the
//! key's shard lock (from the same places as the snapshot journal: `after_write` and the
//! removals), which sets the flags of its watchers. When nobody watches anything, that is one
//! relaxed load: WATCH registers before it reads the key under its shard lock, so a mutation
//! that takes the shard lock after that read sees the registration (the lock orders them), and
//! one before it is a change made before WATCH looked. EXEC reads its flag under the locks of
//! its transaction, which include the watched keys' shards, so no change slips between the
//! check and the commands.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::table::is;
use super::Store;

/// A connection's "a watched key changed" flag.
pub type Dirty = Arc<AtomicBool>;

/// Stripes of the watch lists, picked by the key's map shard.
const STRIPES: usize = 64;

/// One connection watching one key.
#[derive(Debug)]
struct Watcher {
    dirty: Dirty,
    /// The key was past its deadline (and not reclaimed) when watched: its reclamation is no
    /// change (Redis's `watchedKey.expired`).
    expired: bool,
}

type Stripe = HashMap<Bytes, Vec<Watcher>, ahash::RandomState>;

/// Every key some connection watches, with its watchers.
#[derive(Debug)]
pub struct Watches {
    /// Watcher entries registered, all stripes together.
    watched: AtomicUsize,
    stripes: Box<[Mutex<Stripe>]>,
}

impl Default for Watches {
    fn default() -> Watches {
        Watches {
            watched: AtomicUsize::new(0),
            stripes: (0..STRIPES).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Watches {
    fn stripe(&self, shard: usize) -> MutexGuard<'_, Stripe> {
        self.stripes[shard % STRIPES]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Watcher entries registered (for tests and INFO-like checks).
    pub fn len(&self) -> usize {
        self.watched.load(Ordering::Relaxed)
    }

    /// Registers `dirty` as a watcher of `key` (in map shard `shard`); false if it already was.
    pub fn add(&self, shard: usize, key: &Bytes, dirty: &Dirty) -> bool {
        let mut stripe = self.stripe(shard);
        let watchers = stripe.entry(key.clone()).or_default();
        if watchers.iter().any(|w| Arc::ptr_eq(&w.dirty, dirty)) {
            return false;
        }
        watchers.push(Watcher {
            dirty: Arc::clone(dirty),
            expired: false,
        });
        self.watched.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Marks `dirty`'s watch of `key` as made on a key past its deadline (call under the key's
    /// shard lock, right after [`Watches::add`]).
    pub fn set_expired(&self, shard: usize, key: &[u8], dirty: &Dirty) {
        if let Some(watchers) = self.stripe(shard).get_mut(key) {
            for watcher in watchers.iter_mut() {
                if Arc::ptr_eq(&watcher.dirty, dirty) {
                    watcher.expired = true;
                }
            }
        }
    }

    /// Forgets `dirty`'s watch of `key`.
    pub fn remove(&self, shard: usize, key: &[u8], dirty: &Dirty) {
        let mut stripe = self.stripe(shard);
        let Some(watchers) = stripe.get_mut(key) else {
            return;
        };
        let before = watchers.len();
        watchers.retain(|w| !Arc::ptr_eq(&w.dirty, dirty));
        let removed = before - watchers.len();
        if watchers.is_empty() {
            stripe.remove(key);
        }
        self.watched.fetch_sub(removed, Ordering::Relaxed);
    }

    /// `key` (in map shard `shard`) changed: its watchers' next EXEC fails. `reclaimed` says
    /// the change is the removal of a key already past its deadline, no change for those who
    /// watched it that way. Call under the key's shard lock.
    #[inline]
    pub fn touch(&self, shard: usize, key: &[u8], reclaimed: bool) {
        if self.watched.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.touch_watched(shard, key, reclaimed);
    }

    /// Flags the watchers of every watched key `changed` accepts (SWAPDB: the keys held in
    /// either database). Call with the shards `changed` reads locked.
    pub fn touch_where(&self, mut changed: impl FnMut(&[u8]) -> bool) {
        if self.watched.load(Ordering::Relaxed) == 0 {
            return;
        }
        for stripe in self.stripes.iter() {
            let stripe = stripe
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for (key, watchers) in stripe.iter() {
                if changed(key) {
                    for watcher in watchers {
                        watcher.dirty.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    #[cold]
    fn touch_watched(&self, shard: usize, key: &[u8], reclaimed: bool) {
        let mut stripe = self.stripe(shard);
        let Some(watchers) = stripe.get_mut(key) else {
            return;
        };
        for watcher in watchers.iter_mut() {
            if watcher.expired && reclaimed {
                // Redis: an expired key now deleted is logically no change.
                watcher.expired = false;
                continue;
            }
            watcher.dirty.store(true, Ordering::Relaxed);
        }
    }
}

impl Store {
    /// WATCH `key` for the connection of flag `dirty`; `Some(expired)` when it was not watched
    /// yet, `expired` saying whether it was already past its deadline (not reclaimed), which
    /// EXEC then ignores (see [`Store::expired_since_watch`]).
    pub fn watch(&self, key: &Bytes, dirty: &Dirty, now_ms: u64) -> Option<bool> {
        self.watch_into(self.watches(), key, dirty, now_ms)
    }

    /// [`Store::watch`] into `list`: the list of the database index the connection named,
    /// whichever database that index names after a SWAPDB (see [`Databases::watch`]).
    ///
    /// [`Databases::watch`]: super::Databases::watch
    pub(super) fn watch_into(
        &self,
        list: &Watches,
        key: &Bytes,
        dirty: &Dirty,
        now_ms: u64,
    ) -> Option<bool> {
        let (hash, shard_index) = self.map.locate(key);
        if !list.add(shard_index, key, dirty) {
            return None;
        }
        // Read after registering, under the shard's lock: a mutation that locks it later sees
        // the registration (see the module's documentation).
        let shard = self.map.read(shard_index);
        let expired = shard
            .find(hash, is(key))
            .is_some_and(|node| node.is_expired(now_ms));
        if expired {
            list.set_expired(shard_index, key, dirty);
        }
        Some(expired)
    }

    /// Forgets the connection of flag `dirty`'s watch of `key`.
    pub fn unwatch(&self, key: &[u8], dirty: &Dirty) {
        self.watches().remove(self.shard_of_key(key), key, dirty);
    }

    /// Whether `key` is held but past its deadline (Redis's `isWatchedKeyExpired`, for a key
    /// that was not when watched: EXEC then fails).
    pub fn expired_since_watch(&self, key: &[u8], now_ms: u64) -> bool {
        self.peek(key, |node| node.is_some_and(|node| node.is_expired(now_ms)))
    }

    /// Watcher entries (a connection watching a key) registered now.
    pub fn watching(&self) -> usize {
        self.watches().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_touch_flags_the_watchers_of_that_key_only_and_a_removal_forgets_them() {
        let watches = Watches::default();
        let (a, b): (Dirty, Dirty) = (Dirty::default(), Dirty::default());
        let key = Bytes::from_static(b"k");
        assert!(watches.add(3, &key, &a));
        assert!(!watches.add(3, &key, &a), "once");
        assert!(watches.add(3, &Bytes::from_static(b"other"), &b));
        assert_eq!(watches.len(), 2);
        watches.touch(3, b"k", false);
        assert!(a.load(Ordering::Relaxed) && !b.load(Ordering::Relaxed));
        watches.remove(3, b"k", &a);
        watches.remove(3, b"other", &b);
        assert_eq!(watches.len(), 0);
        assert!(watches.stripes.iter().all(|s| s.lock().unwrap().is_empty()));
    }

    #[test]
    fn reclaiming_a_key_watched_past_its_deadline_is_no_change_but_a_write_is() {
        let watches = Watches::default();
        let dirty = Dirty::default();
        let key = Bytes::from_static(b"k");
        watches.add(1, &key, &dirty);
        watches.set_expired(1, b"k", &dirty);
        watches.touch(1, b"k", true);
        assert!(!dirty.load(Ordering::Relaxed));
        watches.touch(1, b"k", false);
        assert!(dirty.load(Ordering::Relaxed));
    }

    fn store() -> (Store, std::sync::Arc<crate::clock::ManualClock>) {
        let (clock, manual) = crate::clock::Clock::manual(1_000_000);
        (Store::new(clock), manual)
    }

    fn set(store: &Store, key: &[u8], deadline_ms: u64) {
        store.upsert(key, store.now_ms(), |_| {
            let value = crate::store::Value::Str(Bytes::from_static(b"v"));
            (Some(crate::store::Entry::new(value, deadline_ms)), ())
        });
    }

    /// Every path that changes a key flags its watchers: writes, deletions, the active
    /// expiry, eviction and both flushes.
    #[test]
    fn every_kind_of_change_flags_the_watchers_of_the_key() {
        type Change = fn(&Store, &crate::clock::ManualClock);
        let changes: [(&str, Change); 6] = [
            ("write", |store, _| set(store, b"k", 0)),
            ("delete", |store, _| {
                store.remove(b"k", store.now_ms());
            }),
            ("active expiry", |store, clock| {
                clock.advance(10_000);
                store.reclaim_expired();
            }),
            ("eviction", |store, _| {
                assert!(store.make_room(
                    1,
                    crate::store::evict::Policy::AllKeysLru,
                    store.now_ms()
                ));
            }),
            ("flush", |store, _| store.flush()),
            ("rename", |store, _| {
                store.rename(b"k", b"elsewhere", false, store.now_ms());
            }),
        ];
        for (name, change) in changes {
            let (store, clock) = store();
            set(&store, b"k", store.now_ms() + 5_000);
            let dirty = Dirty::default();
            assert_eq!(
                store.watch(&Bytes::from_static(b"k"), &dirty, store.now_ms()),
                Some(false)
            );
            set(&store, b"unrelated", 0);
            assert!(!dirty.load(Ordering::Relaxed), "{name}: another key");
            change(&store, &clock);
            assert!(dirty.load(Ordering::Relaxed), "{name}");
            store.unwatch(b"k", &dirty);
            assert_eq!(store.watching(), 0);
        }
    }

    #[test]
    fn a_flush_async_flags_the_watchers_of_the_keys_it_drops() {
        let (store, _) = store();
        let store = std::sync::Arc::new(store);
        set(&store, b"k", 0);
        let dirty = Dirty::default();
        store.watch(&Bytes::from_static(b"k"), &dirty, store.now_ms());
        store.flush_async();
        assert!(dirty.load(Ordering::Relaxed));
    }

    #[test]
    fn an_atomic_block_shares_its_journal_recording_and_unindexes_after_its_locks() {
        let (store, _) = store();
        let now = store.now_ms();
        let new = |user: &'static [u8]| crate::store::session::NewSession {
            prefix: Bytes::new(),
            user: Some(Bytes::from_static(user)),
            idle_ms: 60_000,
            absolute_ms: 3_600_000,
            data: Vec::new(),
        };
        let id = store.create_session(new(b"alice"), now, 0).unwrap();
        store.journal().begin(u64::MAX);
        let shards = [store.shard_of_key(b"k"), store.shard_of_key(&id)];
        let destroyed = store.atomic(Some(&shards), || {
            set(&store, b"k", 0);
            store.destroy_session(&id, now)
        });
        assert!(destroyed);
        assert_eq!(store.count_sessions(b"", b"alice"), 0);
        assert_eq!(
            store.session_users(),
            0,
            "unindexed once the locks are released"
        );
        let journalled = store.journal().end().expect("not overflowed");
        assert_eq!(journalled.len(), 2, "the block's changes are journalled");
    }
}
