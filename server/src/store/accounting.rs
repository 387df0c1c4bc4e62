//! The store's running totals over its keys — `used_memory`, the keys with a deadline, the live
//! sessions — and the one function that changes them.
//!
//! Every mutation states what the keys it touched counted for before and after it ([`Tally`])
//! and calls [`Store::account`]; nothing else writes these three counters, so they always equal
//! a recount of the keyspace (a test below checks that after a random mix of mutations). The
//! activity counters (changes, expired, evicted, sessions created or destroyed) are not totals
//! over the keys and stay with the operations that count them; [`Removal`] tells them why a key
//! left, and [`Before`] carries what a key counted for across a change.

use std::sync::atomic::Ordering;

use super::entry::Node;
use super::Store;

/// What some keys count for in the store's totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Their footprint in `used_memory` ([`Node::footprint`]).
    pub(crate) bytes: u64,
    /// How many of them have a deadline.
    pub(crate) volatile: u64,
    /// How many of them are sessions.
    pub(crate) sessions: u64,
    /// How many keys they are.
    pub(crate) keys: u64,
}

impl Tally {
    /// No key at all.
    pub(crate) const NOTHING: Tally = Tally {
        bytes: 0,
        volatile: 0,
        sessions: 0,
        keys: 0,
    };

    /// What `node` counts for.
    #[inline]
    pub(crate) fn of(node: &Node) -> Tally {
        let (bytes, session) = node.footprint_and_is_session();
        Tally {
            bytes,
            volatile: u64::from(node.expires_at_ms() != 0),
            sessions: u64::from(session),
            keys: 1,
        }
    }

    /// Adds `node` to this sum.
    #[inline]
    pub(crate) fn add(&mut self, node: &Node) {
        let one = Tally::of(node);
        self.bytes += one.bytes;
        self.volatile += one.volatile;
        self.sessions += one.sessions;
        self.keys += one.keys;
    }
}

/// Why an entry left the keyspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    /// Its deadline passed.
    Expired,
    /// A command removed it.
    Deleted,
    /// `--maxmemory` made room.
    Evicted,
}

/// What an entry was counted as before a change: the bookkeeping that follows compares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Before {
    /// Its deadline, Unix ms; 0 means none (the expiry index).
    pub(crate) expires_at_ms: u64,
    /// What it counted for in the store's totals.
    pub(crate) tally: Tally,
}

impl Before {
    /// Nothing: the key did not exist.
    pub(crate) const NOTHING: Before = Before {
        expires_at_ms: 0,
        tally: Tally::NOTHING,
    };

    /// What `node` is counted as now.
    #[inline]
    pub(crate) fn of(node: &Node) -> Before {
        Before {
            expires_at_ms: node.expires_at_ms(),
            tally: Tally::of(node),
        }
    }
}

impl Store {
    /// Moves the totals from what some keys counted for (`before`; [`Tally::NOTHING`] for keys
    /// just created) to what they count for now (`after`; [`Tally::NOTHING`] for keys removed).
    /// The one place `used_memory` and the volatile and live-session counts change; it touches
    /// only the counters that differ (the used bytes, striped, always), without allocating.
    #[inline]
    pub(super) fn account(&self, before: Tally, after: Tally) {
        if after.bytes >= before.bytes {
            self.used.add(after.bytes - before.bytes);
        } else {
            self.used.sub(before.bytes - after.bytes);
        }
        if after.volatile != before.volatile {
            // Two's complement: the wrapped difference is the signed change.
            let change = after.volatile.wrapping_sub(before.volatile) as i64;
            self.volatile.fetch_add(change, Ordering::Relaxed);
        }
        if after.sessions != before.sessions {
            let change = after.sessions.wrapping_sub(before.sessions) as i64;
            self.sessions.live.fetch_add(change, Ordering::Relaxed);
        }
        // Only when keys come or go (an overwrite changes nothing here), on the thread's stripe.
        if after.keys > before.keys {
            self.keys.add(after.keys - before.keys);
        } else if after.keys < before.keys {
            self.keys.sub(before.keys - after.keys);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::clock::Clock;
    use crate::store::evict::Policy;
    use crate::store::session::NewSession;
    use crate::store::{Entry, Fields, Record, Renamed, Value, ValueMut};

    /// The totals, recounted from every key held (dead ones not yet reclaimed included).
    fn recount(store: &Store) -> Tally {
        let mut tally = Tally::NOTHING;
        for shard in 0..store.shard_count() {
            for node in store.map.read(shard).iter() {
                tally.add(node);
            }
        }
        tally
    }

    /// The totals as the store keeps them.
    fn totals(store: &Store) -> Tally {
        Tally {
            bytes: store.used_memory(),
            volatile: store.volatile_len(),
            sessions: store.sessions.live.load(Ordering::Relaxed).max(0) as u64,
            keys: store.keys.sum(),
        }
    }

    fn fields(x: u64) -> Fields {
        (0..x % 4)
            .map(|i| {
                (
                    Bytes::from(format!("f{i}")),
                    Bytes::from(vec![b'v'; (x % 50) as usize]),
                )
            })
            .collect()
    }

    #[test]
    fn the_totals_equal_a_recount_after_any_mix_of_mutations() {
        let start = 1_000_000;
        let (clock, manual) = Clock::manual(start);
        let store = Arc::new(Store::new(clock));
        let mut sessions: Vec<Bytes> = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut renamed = 0;
        for step in 0..6_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let now = store.now_ms();
            let key = format!("k{}", x % 48);
            let key = key.as_bytes();
            let deadline = match (x >> 8) % 3 {
                0 => 0,
                _ => now + 1 + (x >> 12) % 400,
            };
            let user = Bytes::from(format!("u{}", (x >> 24) % 3));
            let session = (!sessions.is_empty())
                .then(|| sessions[((x >> 28) as usize) % sessions.len()].clone());
            match (x >> 40) % 21 {
                // SET, overwriting a string of the same length in place or not.
                0..=2 => {
                    let value = Bytes::from(vec![b's'; ((x >> 16) % 3 * 40) as usize]);
                    store.upsert(key, now, |_| {
                        (Some(Entry::new(Value::Str(value), deadline)), ())
                    });
                }
                // HSET: a new hash, or a field more in one.
                3 => store.upsert(key, now, |node| match node {
                    Some(mut node) => {
                        if let ValueMut::Hash(hash) = node.value_mut() {
                            hash.insert(Bytes::from(format!("g{x}")), Bytes::from("w"));
                        }
                        (None, ())
                    }
                    None => {
                        let hash = Value::Hash(Box::new(fields(x)));
                        (Some(Entry::new(hash, deadline)), ())
                    }
                }),
                4 => {
                    store.remove(key, now);
                }
                // EXPIRE and PERSIST.
                5 => {
                    store.modify(key, now, |mut node| {
                        node.set_expires_at_ms(deadline);
                        (false, ())
                    });
                }
                // A change that ends in the key's deletion (HDEL of the last field): the totals
                // drop what the key counted for before the change.
                6 => {
                    store.modify(key, now, |mut node| {
                        if let ValueMut::Hash(hash) = node.value_mut() {
                            hash.insert(Bytes::from("late"), Bytes::from("field"));
                        }
                        (true, ())
                    });
                }
                7 | 8 => {
                    let new = NewSession {
                        prefix: Bytes::new(),
                        user: (x & 1 == 0).then_some(user),
                        idle_ms: 1 + (x >> 12) % 300,
                        absolute_ms: 1 + (x >> 20) % 600,
                        data: vec![(Bytes::from("a"), Bytes::from("b"))],
                    };
                    sessions.push(store.create_session(new, now, 3).unwrap());
                }
                9 => {
                    if let Some(id) = session {
                        store.destroy_session(&id, now);
                    }
                }
                10 => {
                    if let Some(id) = session {
                        let user = (x & 1 == 0).then_some(&user);
                        if let Ok(Some(new)) = store.regenerate_session(&id, user, now, 3) {
                            sessions.push(new);
                        }
                    }
                }
                11 => {
                    if let Some(id) = session {
                        // The ID of a dead session may name a string renamed onto it since.
                        let updated = store.update_session(&id, now, |s| {
                            s.fields
                                .insert(Bytes::from(format!("d{x}")), Bytes::from("v"));
                            (x & 1 == 0, ())
                        });
                        assert!(matches!(
                            updated,
                            Ok(_) | Err(crate::store::session::SessionError::WrongType)
                        ));
                    }
                }
                12 => {
                    store.destroy_sessions_of(b"", &user, None, now);
                }
                13 => {
                    manual.advance((x >> 12) % 150);
                    store.reclaim_expired();
                }
                14 => {
                    let limit = store.used_memory().saturating_sub(500);
                    let policy = match x & 1 {
                        0 => Policy::AllKeysLru,
                        _ => Policy::VolatileTtl,
                    };
                    store.make_room(limit, policy, now);
                }
                15 => {
                    let key = Bytes::copy_from_slice(key);
                    let pairs = |x: u64| fields(x).into_iter().collect::<Vec<_>>();
                    let record = match (x >> 16) % 5 {
                        0 => Record::String {
                            key,
                            value: Bytes::from("r"),
                            expires_at_ms: deadline,
                        },
                        1 => Record::Hash {
                            key,
                            fields: pairs(x),
                            expires_at_ms: deadline,
                        },
                        2 => Record::Session {
                            id: key,
                            user: Some(user),
                            fields: pairs(x),
                            created_ms: now.saturating_sub(x % 500),
                            last_access_ms: now,
                            idle_ms: 1 + x % 300,
                            absolute_ms: 1 + x % 700,
                            version: 1,
                        },
                        3 => Record::Set {
                            key,
                            members: pairs(x).into_iter().map(|(f, _)| f).collect(),
                            expires_at_ms: deadline,
                        },
                        _ => Record::Delete { key },
                    };
                    store.restore(record, now);
                }
                16 if x.is_multiple_of(40) => store.flush(),
                17 if x.is_multiple_of(40) => {
                    store.flush_async();
                    while store.lazyfree_pending() != 0 {
                        std::thread::yield_now();
                    }
                }
                // RENAME and RENAMENX, onto a bigger or smaller value, a dead key, a session
                // (refused) or from one.
                18 => {
                    let to = format!("k{}", (x >> 16) % 48);
                    let to = match (x >> 22) % 4 {
                        0 => session.clone().unwrap_or_else(|| Bytes::from(to)),
                        _ => Bytes::from(to),
                    };
                    let from = match (x >> 26) % 5 {
                        0 => session.unwrap_or_else(|| Bytes::copy_from_slice(key)),
                        _ => Bytes::copy_from_slice(key),
                    };
                    if store.rename(&from, &to, x & 1 == 0, now) == Renamed::Moved {
                        renamed += 1;
                    }
                }
                // SADD: a new set, or a member more in one.
                19 => store.upsert(key, now, |node| match node {
                    Some(mut node) => {
                        if let ValueMut::Set(set) = node.value_mut() {
                            set.insert_member(Bytes::from(format!("m{}", x % 7)));
                        }
                        (None, ())
                    }
                    None => {
                        let set = Fields::from_members(fields(x).into_iter().map(|(f, _)| f));
                        (Some(Entry::new(Value::Set(Box::new(set)), deadline)), ())
                    }
                }),
                // SREM, deleting the set it leaves empty.
                20 => {
                    store.modify(key, now, |mut node| match node.value_mut() {
                        ValueMut::Set(set) => {
                            set.remove(&format!("m{}", x % 7).into_bytes()[..]);
                            (set.is_empty(), ())
                        }
                        _ => (false, ()),
                    });
                }
                _ => {}
            }
            assert_eq!(totals(&store), recount(&store), "after step {step}");
        }
        assert!(store.expired_keys() > 0 && store.evicted_keys() > 0 && renamed > 0);
        assert!(store.session_stats().created.load(Ordering::Relaxed) > 0);
    }
}
