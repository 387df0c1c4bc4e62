//! RENAME and RENAMENX: a key's value and deadline moved to another name in one step.
//!
//! Both names' shards are write-locked together, the lower index first
//! ([`Table::write_pair`](super::table::Table::write_pair)), so no reader ever finds both names
//! or neither, whichever shards they fall in; one journal [`Recording`](super::journal::Recording)
//! spans the removal and the insertion, so a snapshot holds both changes or neither. Sessions
//! are never moved: their IDs are issued by the server only (strict mode), and
//! SESSION.REGENERATE is the way to a new one.

use hashbrown::hash_table::Entry as TableEntry;

use super::accounting::{Before, Removal};
use super::entry::Node;
use super::table::is;
use super::{Store, Wrote};

/// What a rename did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renamed {
    /// The key lives under the new name now (RENAME of a key onto itself: it is left as it was).
    Moved,
    /// RENAMENX: the new name exists (or is the old one); nothing changed.
    Exists,
    /// No live key has the old name.
    NoSuchKey,
    /// One of the two names is a live session; nothing changed.
    Session,
}

impl Store {
    /// Moves the live key `from`, value and deadline, to `to`, replacing what `to` held unless
    /// `only_if_new` (RENAMENX). Refused when either name is a live session. O(1) but for a
    /// string, whose bytes are copied into the new key's block (the key is part of it).
    pub fn rename(&self, from: &[u8], to: &[u8], only_if_new: bool, now_ms: u64) -> Renamed {
        let rec = self.journal.recording();
        // One frame for both changes, emitted before the locks are released.
        let group = self.feed.group();
        let (from_hash, from_shard) = self.map.locate(from);
        let (to_hash, to_shard) = self.map.locate(to);
        let mut shards = self.map.write_pair(from_shard, to_shard);
        let live = |node: &&Node| !node.is_expired(now_ms);
        match shards.first().find(from_hash, is(from)).filter(live) {
            None => return Renamed::NoSuchKey,
            Some(node) if node.is_session() => return Renamed::Session,
            Some(_) => {}
        }
        if from == to {
            // Redis answers a rename onto itself without touching the key.
            return if only_if_new {
                Renamed::Exists
            } else {
                Renamed::Moved
            };
        }
        match shards.second().find(to_hash, is(to)).filter(live) {
            Some(node) if node.is_session() => return Renamed::Session,
            Some(_) if only_if_new => return Renamed::Exists,
            _ => {}
        }
        // Found live above, under the same lock.
        let Ok(occupied) = shards.first().find_entry(from_hash, is(from)) else {
            return Renamed::NoSuchKey;
        };
        let old = occupied.remove().0;
        self.journal_delete(from_shard, from, &rec, false, Removal::Deleted);
        if shards
            .second()
            .find(to_hash, is(to))
            .is_some_and(|n| n.is_expired(now_ms))
        {
            // A dead key replaced ends by its expiry, as announced below: recorded so, a
            // replica announces it the same way.
            self.feed_delete(to, Removal::Expired);
        }
        let left = Before::of(&old);
        let mut node = old.rekeyed(to);
        // A new node under a new hash: queued for expiry afresh; the old name's position in
        // the index goes stale (no key of that hash is queued under it any more).
        let wrote = Wrote::Whole;
        self.after_write(
            to_shard,
            to_hash,
            &mut node,
            Before::NOTHING,
            now_ms,
            &rec,
            wrote,
        );
        let replaced = match shards.second().entry(to_hash, is(to), self.map.rehash()) {
            TableEntry::Occupied(mut occupied) => Some(std::mem::replace(occupied.get_mut(), node)),
            TableEntry::Vacant(vacant) => {
                vacant.insert(node);
                None
            }
        };
        drop(group);
        drop(shards);
        // The old name leaves the totals, through the removals' bookkeeping (it is no session,
        // so no user's list holds it); the new one entered them in `after_write`.
        self.count_removal(left, Removal::Deleted);
        if let Some(replaced) = replaced {
            let why = if replaced.is_expired(now_ms) {
                Removal::Expired
            } else {
                Removal::Deleted
            };
            // A dead session it replaced leaves its user's list here.
            self.after_remove(&replaced, Before::of(&replaced), why);
        }
        drop(rec);
        self.bound_index();
        Renamed::Moved
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::clock::Clock;
    use crate::store::session::NewSession;
    use crate::store::{Entry, Fields, Record, Value, ValueRef};

    const START: u64 = 1_000_000;

    fn store() -> (Store, Arc<crate::clock::ManualClock>) {
        let (clock, manual) = Clock::manual(START);
        (Store::new(clock), manual)
    }

    fn set(store: &Store, key: &[u8], value: &str, deadline_ms: u64) {
        let value = Bytes::copy_from_slice(value.as_bytes());
        store.upsert(key, START, |_| {
            (Some(Entry::new(Value::Str(value), deadline_ms)), ())
        });
    }

    fn get(store: &Store, key: &[u8]) -> Option<(Vec<u8>, u64)> {
        store.read(key, store.now_ms(), |node| {
            node.map(|node| match node.value() {
                ValueRef::Str(s) => (s.to_vec(), node.expires_at_ms()),
                other => (other.type_name().as_bytes().to_vec(), node.expires_at_ms()),
            })
        })
    }

    /// `used_memory` recounted from the keys held.
    fn recount(store: &Store) -> u64 {
        (0..store.shard_count())
            .flat_map(|shard| {
                store
                    .map
                    .read(shard)
                    .iter()
                    .map(Node::footprint)
                    .collect::<Vec<_>>()
            })
            .sum()
    }

    fn session(store: &Store, user: &str) -> Bytes {
        let new = NewSession {
            prefix: Bytes::new(),
            user: Some(Bytes::copy_from_slice(user.as_bytes())),
            idle_ms: 60_000,
            absolute_ms: 60_000,
            data: Vec::new(),
        };
        store.create_session(new, START, 0).unwrap()
    }

    /// A key whose shard differs from `key`'s.
    fn elsewhere(store: &Store, key: &[u8]) -> Vec<u8> {
        let shard = store.map.locate(key).1;
        (0..)
            .map(|i| format!("other:{i}").into_bytes())
            .find(|other| store.map.locate(other).1 != shard)
            .unwrap()
    }

    #[test]
    fn a_rename_moves_value_and_deadline_and_overwrites_the_destination() {
        let (store, _manual) = store();
        set(&store, b"a", "short", START + 5_000);
        let b = elsewhere(&store, b"a");
        set(&store, &b, &"x".repeat(500), 0);
        assert_eq!(store.volatile_len(), 1);
        assert_eq!(store.rename(b"a", &b, false, START), Renamed::Moved);
        assert_eq!(get(&store, b"a"), None);
        assert_eq!(get(&store, &b), Some((b"short".to_vec(), START + 5_000)));
        assert_eq!((store.len(), store.volatile_len()), (1, 1));
        assert_eq!(
            store.used_memory(),
            recount(&store),
            "a bigger value replaced"
        );
        // Onto a smaller value, and the deadline goes with the key (none here).
        set(&store, b"c", &"y".repeat(300), 0);
        assert_eq!(store.rename(b"c", &b, false, START), Renamed::Moved);
        assert_eq!(get(&store, &b), Some(("y".repeat(300).into_bytes(), 0)));
        assert_eq!((store.len(), store.volatile_len()), (1, 0));
        assert_eq!(
            store.used_memory(),
            recount(&store),
            "a smaller value replaced"
        );
        // A hash keeps its type and fields.
        let fields: Fields = [(Bytes::from("f"), Bytes::from("v"))].into_iter().collect();
        store.upsert(b"h", START, |_| {
            (Some(Entry::new(Value::Hash(Box::new(fields)), 0)), ())
        });
        assert_eq!(store.rename(b"h", b"h2", false, START), Renamed::Moved);
        assert_eq!(get(&store, b"h2"), Some((b"hash".to_vec(), 0)));
        assert_eq!(store.used_memory(), recount(&store));
    }

    #[test]
    fn renamenx_same_names_and_missing_keys_answer_as_redis() {
        let (store, manual) = store();
        assert_eq!(store.rename(b"a", b"b", false, START), Renamed::NoSuchKey);
        assert_eq!(store.rename(b"a", b"a", true, START), Renamed::NoSuchKey);
        set(&store, b"a", "1", 0);
        set(&store, b"b", "2", START + 10);
        assert_eq!(store.rename(b"a", b"b", true, START), Renamed::Exists);
        assert_eq!(store.rename(b"a", b"a", true, START), Renamed::Exists);
        assert_eq!(store.rename(b"a", b"a", false, START), Renamed::Moved);
        assert_eq!(get(&store, b"a"), Some((b"1".to_vec(), 0)));
        // A dead destination does not exist: RENAMENX moves onto it.
        manual.advance(10);
        let before = store.expired_keys();
        assert_eq!(store.rename(b"a", b"b", true, START + 10), Renamed::Moved);
        assert_eq!(get(&store, b"b"), Some((b"1".to_vec(), 0)));
        assert_eq!(
            store.expired_keys(),
            before + 1,
            "the dead one was reclaimed"
        );
        // A dead source is no key.
        set(&store, b"gone", "1", START + 10);
        assert_eq!(
            store.rename(b"gone", b"x", false, START + 10),
            Renamed::NoSuchKey
        );
        assert_eq!(store.used_memory(), recount(&store));
    }

    #[test]
    fn sessions_are_never_renamed_nor_overwritten() {
        let (store, _manual) = store();
        let id = session(&store, "ada");
        set(&store, b"plain", "v", 0);
        for only_if_new in [false, true] {
            assert_eq!(
                store.rename(&id, b"mine", only_if_new, START),
                Renamed::Session
            );
            assert_eq!(store.rename(&id, &id, only_if_new, START), Renamed::Session);
            assert_eq!(
                store.rename(b"plain", &id, only_if_new, START),
                Renamed::Session
            );
        }
        assert_eq!(
            get(&store, &id),
            Some((b"session".to_vec(), START + 60_000))
        );
        assert_eq!(get(&store, b"plain"), Some((b"v".to_vec(), 0)));
        assert_eq!(store.count_sessions(b"", b"ada"), 1);
    }

    #[test]
    fn a_dead_session_overwritten_leaves_its_users_list() {
        let (store, manual) = store();
        let id = session(&store, "ada");
        set(&store, b"plain", "v", 0);
        manual.advance(60_000);
        assert_eq!(
            store.rename(b"plain", &id, false, START + 60_000),
            Renamed::Moved
        );
        assert_eq!(store.count_sessions(b"", b"ada"), 0);
        assert_eq!(
            store
                .session_stats()
                .live
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        assert_eq!(store.used_memory(), recount(&store));
    }

    #[test]
    fn a_renamed_key_expires_at_its_deadline_under_its_new_name_once() {
        let (store, manual) = store();
        set(&store, b"a", "v", START + 1_000);
        let b = elsewhere(&store, b"a");
        assert_eq!(store.rename(b"a", &b, false, START), Renamed::Moved);
        // And back and forth, each move a new position in the expiry index.
        assert_eq!(store.rename(&b, b"a", false, START), Renamed::Moved);
        assert_eq!(store.rename(b"a", &b, false, START), Renamed::Moved);
        manual.advance(999);
        store.reclaim_expired();
        assert_eq!((store.len(), store.expired_keys()), (1, 0));
        manual.advance(1);
        store.reclaim_expired();
        assert_eq!((store.len(), store.expired_keys()), (0, 1));
        assert_eq!((store.volatile_len(), store.used_memory()), (0, 0));
        // A key later made under the old name is not reclaimed by its stale position.
        set(&store, b"a", "new", 0);
        manual.advance(10_000);
        store.reclaim_expired();
        assert_eq!((store.len(), store.expired_keys()), (1, 1));
    }

    #[test]
    fn a_rename_during_a_snapshot_reaches_it_as_one_change() {
        let (store, _manual) = store();
        set(&store, b"a", "v", START + 60_000);
        let b = elsewhere(&store, b"a");
        store.journal.begin(u64::MAX);
        // The shards are copied before the rename: the journal must carry both of its changes.
        let copied: Vec<Record> = (0..store.shard_count())
            .flat_map(|shard| store.snapshot_shard(shard))
            .collect();
        assert_eq!(store.rename(b"a", &b, false, START), Renamed::Moved);
        let journal = store.journal.end().unwrap();
        let (clock, _manual) = Clock::manual(START);
        let loaded = Store::new(clock);
        for record in copied
            .into_iter()
            .chain(journal.into_iter().map(|(_, r)| r))
        {
            loaded.restore(record, START);
        }
        assert_eq!(get(&loaded, b"a"), None);
        assert_eq!(get(&loaded, &b), Some((b"v".to_vec(), START + 60_000)));
    }

    #[test]
    fn no_reader_holding_both_shards_sees_both_names_or_neither() {
        let (clock, _manual) = Clock::manual(START);
        let store = Arc::new(Store::new(clock));
        set(&store, b"a", "v", 0);
        let b = elsewhere(&store, b"a");
        let (a_hash, a_shard) = store.map.locate(b"a");
        let (b_hash, b_shard) = store.map.locate(&b);
        let rounds = if cfg!(miri) { 50 } else { 20_000 };
        let writer = std::thread::spawn({
            let (store, b) = (store.clone(), b.clone());
            move || {
                for _ in 0..rounds {
                    assert_eq!(store.rename(b"a", &b, false, START), Renamed::Moved);
                    assert_eq!(store.rename(&b, b"a", false, START), Renamed::Moved);
                }
            }
        });
        while !writer.is_finished() {
            // Both shards read-locked in the writers' order: one instant of the keyspace.
            let (low, high) = (a_shard.min(b_shard), a_shard.max(b_shard));
            let low_guard = store.map.read(low);
            let high_guard = store.map.read(high);
            let in_shard = |shard: usize| {
                if shard == low {
                    &low_guard
                } else {
                    &high_guard
                }
            };
            let a = in_shard(a_shard).find(a_hash, is(b"a")).is_some();
            let b = in_shard(b_shard).find(b_hash, is(&b)).is_some();
            assert!(a != b, "both names or neither: a {a}, b {b}");
        }
        writer.join().unwrap();
        assert_eq!(store.len(), 1);
        assert_eq!(store.used_memory(), recount(&store));
    }
}
