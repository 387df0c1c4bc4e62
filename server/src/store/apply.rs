//! Applying changes that came from the feed of a server — this one's append-only log at start,
//! or a primary's stream on a replica — with the same bookkeeping as the commands' own writes:
//! the accounted bytes, the expiry index, the per-user session index, WATCH. Nothing applied
//! here is recorded in this server's feed (the caller passes the frames on as they are).

use std::sync::Arc;

use bytes::Bytes;

use super::accounting::Removal;
use super::feed::{self, Changes};
use super::record::{Ending, Record};
use super::value::{Entry, Value, ValueMut, ValueRef};
use super::{Databases, Fields, Store};

/// A change names a database this server does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a change names database {db}, beyond the {count} this server has (--databases)")]
pub struct NoSuchDatabase {
    /// The database named.
    pub db: u16,
    /// The databases there are.
    pub count: usize,
}

/// The REGENERATEs of a frame: each new ID ([`Ending::Regenerated`]'s `to`) with the user of its
/// session record in the frame, read before anything is applied (so that no shard the frame's
/// atomic block does not hold is read for it).
#[derive(Debug, Default)]
struct Moves(Vec<(Bytes, Option<Option<Bytes>>)>);

impl Moves {
    fn of(changes: &Changes) -> Moves {
        let user_of = |to: &Bytes| {
            changes.iter().find_map(|(_, record)| match record {
                Record::Session { id, user, .. } if id == to => Some(user.clone()),
                _ => None,
            })
        };
        Moves(
            changes
                .iter()
                .filter_map(|(_, record)| match record {
                    Record::Ended {
                        why: Ending::Regenerated { to },
                        ..
                    } => Some((to.clone(), user_of(to))),
                    _ => None,
                })
                .collect(),
        )
    }

    /// Whether a REGENERATE of the frame made the ID `id`.
    fn made(&self, id: &[u8]) -> bool {
        self.0.iter().any(|(to, _)| to == id)
    }

    /// The user of the session a REGENERATE of the frame moved to `to`, if the frame holds
    /// its record.
    fn user_of(&self, to: &[u8]) -> Option<Option<Bytes>> {
        self.0
            .iter()
            .find(|(id, _)| id == to)
            .and_then(|(_, user)| user.clone())
    }
}

/// What a record applied leaves to do in the per-user index, once the frame's block has
/// released its shard locks (the index's locks come before shard locks).
#[derive(Debug)]
enum Indexing {
    /// Nothing.
    Nothing,
    /// The session `id` enters `user`'s list: (user, id).
    Add(Bytes, Bytes),
    /// A REGENERATE for the same user: the new ID takes the old one's place in the user's
    /// list, as on the writer: (user, old, new).
    Replace(Bytes, Bytes, Bytes),
}

impl Databases {
    /// Applies one frame's changes in order (a frame is one step of the server that wrote it);
    /// records nothing in this server's feed. No key is judged expired by this server's clock:
    /// the writer's decided what exists (a replica whose clock runs ahead would otherwise drop a
    /// key that a later PERSIST or field change keeps alive on its primary, for good, as Redis's
    /// `expireIfNeeded` avoids for its master's commands). Reads still hide keys past their
    /// deadline; the writer's deletion removes them. (A log replayed after a downtime would
    /// otherwise lose a key whose first deadline passed while the server was down but whose
    /// last one did not.)
    ///
    /// Several changes of one step (an EXEC, a script, a REGENERATE, an MSET) are applied as
    /// one atomic block over their keys' shards, as their writer made them, so that a reader
    /// of this server never sees part of them. A frame with a FLUSHDB or a SWAPDB is applied
    /// change by change.
    pub fn apply(&self, changes: Changes) -> Result<(), NoSuchDatabase> {
        let count = self.count();
        for (db, record) in &changes {
            let with = match record {
                Record::SwapDb { with } => Some(*with),
                _ => None,
            };
            if let Some(db) = std::iter::once(*db)
                .chain(with)
                .find(|db| usize::from(*db) >= count)
            {
                return Err(NoSuchDatabase { db, count });
            }
        }
        let moves = Moves::of(&changes);
        let whole_keyspace =
            |record: &Record| matches!(record, Record::FlushDb | Record::SwapDb { .. });
        if changes.len() > 1 && !changes.iter().any(|(_, record)| whole_keyspace(record)) {
            self.apply_atomically(changes, &moves);
            return Ok(());
        }
        feed::without_recording(|| {
            // Time zero: no deadline has passed.
            let now_ms = 0;
            for (db, record) in changes {
                match record {
                    Record::SwapDb { with } => {
                        self.swap(usize::from(db), usize::from(with));
                    }
                    record => {
                        let store = self.db(usize::from(db));
                        let indexing = store.apply(record, now_ms, &moves);
                        store.index_applied(indexing);
                    }
                }
            }
            Ok(())
        })
    }

    /// Applies `changes` (keyed records only) as one atomic block over their keys' shards;
    /// sessions that enter a user's list are indexed once the block's locks are released (the
    /// index's locks come before shard locks), after those it removed are unindexed.
    fn apply_atomically(&self, changes: Changes, moves: &Moves) {
        let mut shards: Vec<(usize, Vec<usize>)> = Vec::new();
        for (db, record) in &changes {
            let db = usize::from(*db);
            let shard = self.db(db).shard_of_key(record.key());
            match shards.iter_mut().find(|(d, _)| *d == db) {
                Some((_, list)) => list.push(shard),
                None => shards.push((db, vec![shard])),
            }
        }
        for (_, list) in &mut shards {
            list.sort_unstable();
            list.dedup();
        }
        let blocks: Vec<(usize, Option<&[usize]>)> = shards
            .iter()
            .map(|(db, list)| (*db, Some(&list[..])))
            .collect();
        // A writable replica's own SWAPDB may come between the numbers and the locks.
        let to_index = self.atomic_unswapped(&blocks, || {
            let mut to_index = Vec::new();
            feed::without_recording(|| {
                for (db, record) in changes {
                    // The store itself: a SWAPDB after the block would renumber it.
                    let store = self.db(usize::from(db));
                    match store.apply(record, 0, moves) {
                        Indexing::Nothing => {}
                        indexing => to_index.push((Arc::clone(store), indexing)),
                    }
                }
            });
            to_index
        });
        for (store, indexing) in to_index {
            store.index_applied(indexing);
        }
    }
}

impl Store {
    /// Does what [`Store::apply`] left for the per-user index (the frame's block released).
    fn index_applied(&self, indexing: Indexing) {
        // Unless a later change of the frame removed the new ID again (its unindexing,
        // deferred, came first).
        let still = |id: &Bytes, user: &Bytes| {
            self.peek(id, |node| {
                node.and_then(|node| node.as_session())
                    .is_some_and(|session| session.user.as_ref() == Some(user))
            })
        };
        match indexing {
            Indexing::Nothing => {}
            Indexing::Add(user, id) => {
                if still(&id, &user) {
                    let rec = self.journal.recording();
                    self.index_session_uncapped(&user, id, 0, &rec);
                }
            }
            Indexing::Replace(user, old, new) => {
                let still = still(&new, &user);
                self.index_moved(&user, &old, new, still);
            }
        }
    }

    /// Applies one record (not a SWAPDB, which is [`Databases`]'s): a whole state replaces the
    /// key, a deletion removes it, a change of fields or members changes them in place.
    /// Sessions leave their user's list here; what enters it is returned ([`Indexing`]) for the
    /// caller to do (after the atomic block it may run in). Keys whose deadline is
    /// before `now_ms` count as missing ([`Databases::apply`] passes 0: none). `moves`: the
    /// new IDs the frame's REGENERATEs gave ([`Ending::Regenerated`]).
    fn apply(&self, record: Record, now_ms: u64, moves: &Moves) -> Indexing {
        match record {
            Record::FlushDb => self.flush(),
            Record::SwapDb { .. } => {}
            Record::Delete { key } => {
                self.remove(&key, now_ms);
            }
            Record::Ended { key, why } => return self.apply_ended(&key, why, moves),
            Record::SessionTouch { id, last_access_ms } => {
                self.modify(&id, now_ms, |mut node| {
                    if let ValueMut::Session(session) = node.value_mut() {
                        session.last_access_ms = last_access_ms;
                        let deadline = session.deadline_ms();
                        if deadline <= now_ms {
                            // Past its idle timeout already: gone, as a lazy expiry would.
                            return (true, ());
                        }
                        node.set_expires_at_ms(deadline);
                    }
                    (false, ())
                });
            }
            Record::Deadline { key, expires_at_ms } => {
                self.modify(&key, now_ms, |mut node| {
                    node.set_expires_at_ms(expires_at_ms);
                    (false, ())
                });
            }
            Record::HashFields {
                key,
                set,
                removed,
                expires_at_ms,
            } => self.apply_fields(&key, set, removed, expires_at_ms, now_ms, false),
            Record::SetMembers {
                key,
                added,
                removed,
                expires_at_ms,
            } => {
                let added = added.into_iter().map(|m| (m, Bytes::new())).collect();
                self.apply_fields(&key, added, removed, expires_at_ms, now_ms, true)
            }
            whole => return self.apply_whole(whole, now_ms, moves),
        }
        Indexing::Nothing
    }

    /// The server that wrote `key`'s removal removed it itself (`why`): the same removal here,
    /// an expiry or an eviction counted as a deletion (the writer counted them; a log replayed
    /// at start does not count them again) and a move as a regeneration, announced as the
    /// writer announced it.
    fn apply_ended(&self, key: &[u8], why: Ending, moves: &Moves) -> Indexing {
        let rec = self.journal.recording();
        let Some((node, _)) = self.remove_if(key, &rec, |_| Some(Removal::Deleted)) else {
            return Indexing::Nothing;
        };
        match why {
            Ending::Expired => self.after_applied_removal(&node, Removal::Expired),
            Ending::Evicted => self.after_applied_removal(&node, Removal::Evicted),
            Ending::Regenerated { to } => {
                // From the frame; else (a frame split at `MAX_FRAME`, applied alone and so
                // outside any block) from the store.
                let new_user = moves.user_of(&to).or_else(|| {
                    if super::table::Table::in_block() {
                        return None;
                    }
                    self.peek(&to, |n| {
                        n.and_then(super::Node::as_session).map(|s| s.user.clone())
                    })
                });
                let user = self.after_applied_move(&node, &to, new_user);
                if let Some(user) = user {
                    let old = Bytes::copy_from_slice(node.key());
                    return Indexing::Replace(user, old, to);
                }
            }
        }
        Indexing::Nothing
    }

    /// A key's whole state: replaces what the key held; a session is to be indexed under its
    /// user ([`Indexing::Add`]) unless it replaces that user's session of the same ID.
    /// A session that did not exist is announced `created`, unless `moves` names it (a
    /// later record of the frame announces it as the new ID of a regenerated session).
    fn apply_whole(&self, record: Record, now_ms: u64, moves: &Moves) -> Indexing {
        let key = record.key().clone();
        let new_user = match &record {
            Record::Session { user, .. } => Some(user.clone()),
            _ => None,
        };
        let old_user = self.peek(&key, |node| {
            node.and_then(|n| n.as_session()).map(|s| s.user.clone())
        });
        let same = matches!((&old_user, &new_user), (Some(a), Some(b)) if a == b);
        if old_user.is_some() && !same {
            // The session leaves the keyspace and its user's list the usual way.
            self.remove(&key, now_ms);
        }
        self.restore(record, now_ms);
        if let (None, Some(user)) = (&old_user, &new_user) {
            if !moves.made(&key) {
                self.announce_created(&key, user.as_deref());
            }
        }
        match (same, new_user) {
            (false, Some(Some(user))) => Indexing::Add(user, key),
            _ => Indexing::Nothing,
        }
    }

    /// Sets `set` and removes `removed` in the hash (a set if `members`) at `key`, made if
    /// missing or of another type, and sets its deadline; an emptied key is removed.
    fn apply_fields(
        &self,
        key: &[u8],
        set: Vec<(Bytes, Bytes)>,
        removed: Vec<Bytes>,
        expires_at_ms: u64,
        now_ms: u64,
        members: bool,
    ) {
        let fits = |node: &super::Node| match node.value() {
            ValueRef::Hash(_) => !members,
            ValueRef::Set(_) => members,
            _ => false,
        };
        if self.peek(key, |node| node.is_some_and(|n| !fits(n))) {
            self.remove(key, now_ms);
        }
        let emptied = self.upsert(key, now_ms, |node| match node {
            Some(mut node) => {
                let fields = match node.value_mut() {
                    ValueMut::Hash(fields) | ValueMut::Set(fields) => fields,
                    // Removed above: another writer's key meanwhile (none on a replica).
                    _ => return (None, false),
                };
                for (name, value) in set {
                    fields.insert(name, value);
                }
                for name in &removed {
                    fields.remove(name);
                }
                let emptied = fields.is_empty();
                node.set_expires_at_ms(expires_at_ms);
                (None, emptied)
            }
            None if set.is_empty() => (None, false),
            None => {
                let fields: Fields = set.into_iter().collect();
                let value = if members {
                    Value::Set(Box::new(fields))
                } else {
                    Value::Hash(Box::new(fields))
                };
                (Some(Entry::new(value, expires_at_ms)), false)
            }
        });
        if emptied {
            self.remove(key, now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    fn session(id: &'static [u8], user: &'static [u8]) -> Record {
        Record::Session {
            id: Bytes::from_static(id),
            user: Some(Bytes::from_static(user)),
            fields: vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))],
            created_ms: 1_000,
            last_access_ms: 1_000,
            idle_ms: 60_000,
            absolute_ms: 600_000,
            version: 1,
        }
    }

    #[test]
    fn a_frame_of_several_changes_leaves_the_user_index_as_its_last_change_says() {
        let (clock, _) = Clock::manual(1_000);
        let dbs = Databases::new(clock, 2);
        let store = dbs.db(0).clone();
        // A REGENERATE's frame: the old ID leaves the user's list, the new one enters it.
        dbs.apply(vec![(0, session(b"old", b"ada"))]).unwrap();
        dbs.apply(vec![
            (
                0,
                Record::Delete {
                    key: Bytes::from_static(b"old"),
                },
            ),
            (0, session(b"new", b"ada")),
        ])
        .unwrap();
        assert_eq!(store.list_sessions(b"", b"ada", 1_000), [&b"new"[..]]);
        // Added then removed in one frame: not listed.
        dbs.apply(vec![
            (0, session(b"brief", b"bob")),
            (
                0,
                Record::Delete {
                    key: Bytes::from_static(b"brief"),
                },
            ),
        ])
        .unwrap();
        assert_eq!(store.count_sessions(b"", b"bob"), 0);
        // A database this server does not have: nothing of the frame is applied.
        let refused = dbs.apply(vec![
            (0, session(b"kept-out", b"cy")),
            (7, session(b"x", b"cy")),
        ]);
        assert_eq!(refused, Err(NoSuchDatabase { db: 7, count: 2 }));
        assert_eq!(store.count_sessions(b"", b"cy"), 0);
    }

    #[test]
    fn a_move_whose_records_name_two_databases_applies_without_reading_elsewhere() {
        // A SWAPDB on the primary between a REGENERATE's two records numbers them apart: the
        // move is applied in the old ID's database, and nothing of the new ID's is read there
        // (its shard is not one the frame's block holds).
        let (clock, _) = Clock::manual(1_000);
        let dbs = Databases::new(clock, 2);
        let (old, new) = (Bytes::from_static(b"old"), Bytes::from_static(b"new"));
        assert_ne!(dbs.db(1).shard_of_key(&old), dbs.db(1).shard_of_key(&new));
        dbs.apply(vec![(1, session(b"old", b"ada"))]).unwrap();
        dbs.apply(vec![
            (0, session(b"new", b"ada")),
            (
                1,
                Record::Ended {
                    key: old.clone(),
                    why: Ending::Regenerated { to: new.clone() },
                },
            ),
        ])
        .unwrap();
        assert_eq!(dbs.db(1).count_sessions(b"", b"ada"), 0);
        assert_eq!(dbs.db(0).list_sessions(b"", b"ada", 1_000), [&b"new"[..]]);
        let regenerated = |db: usize| {
            let stats = &dbs.db(db).sessions;
            stats.regenerated.load(std::sync::atomic::Ordering::Relaxed)
        };
        assert_eq!(regenerated(1), 1);
    }

    #[test]
    fn a_move_within_one_user_keeps_the_new_id_where_the_old_one_was_listed() {
        // As on the writer (`list.replace`): the per-user cap of a promoted replica ends the
        // same session the primary would have.
        let (clock, _) = Clock::manual(1_000);
        let dbs = Databases::new(clock, 1);
        let store = dbs.db(0).clone();
        for id in [&b"first"[..], b"old", b"last"] {
            dbs.apply(vec![(0, session(id, b"ada"))]).unwrap();
        }
        let moved = |old: &'static [u8], new: &'static [u8], user: &'static [u8]| {
            vec![
                (0, session(new, user)),
                (
                    0,
                    Record::Ended {
                        key: Bytes::from_static(old),
                        why: Ending::Regenerated {
                            to: Bytes::from_static(new),
                        },
                    },
                ),
            ]
        };
        dbs.apply(vec![(0, session(b"bob-before", b"bob"))])
            .unwrap();
        dbs.apply(moved(b"old", b"new", b"ada")).unwrap();
        // The count first: listing prunes IDs listed without a session.
        let listed = |user: &[u8]| {
            let count = store.count_sessions(b"", user);
            let list = store.list_sessions(b"", user, 1_000);
            assert_eq!(count, list.len(), "{list:?}");
            list
        };
        assert_eq!(listed(b"ada"), [&b"first"[..], b"new", b"last"]);
        // To another user (a login): that user's newest, gone from the first's list.
        dbs.apply(moved(b"first", b"bobs", b"bob")).unwrap();
        assert_eq!(listed(b"ada"), [&b"new"[..], b"last"]);
        assert_eq!(listed(b"bob"), [&b"bob-before"[..], b"bobs"]);
    }
}
