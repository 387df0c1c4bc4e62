//! Applying changes that came from the feed of a server — this one's append-only log at start,
//! or a primary's stream on a replica — with the same bookkeeping as the commands' own writes:
//! the accounted bytes, the expiry index, the per-user session index, WATCH. Nothing applied
//! here is recorded in this server's feed (the caller passes the frames on as they are).

use bytes::Bytes;

use super::feed::{self, Changes};
use super::record::Record;
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

impl Databases {
    /// Applies one frame's changes in order (a frame is one step of the server that wrote it);
    /// records nothing in this server's feed.
    pub fn apply(&self, changes: Changes) -> Result<(), NoSuchDatabase> {
        let count = self.count();
        feed::without_recording(|| {
            let now_ms = self.now_ms();
            for (db, record) in changes {
                if usize::from(db) >= count {
                    return Err(NoSuchDatabase { db, count });
                }
                match record {
                    Record::SwapDb { with } => {
                        if !self.swap(usize::from(db), usize::from(with)) {
                            return Err(NoSuchDatabase { db: with, count });
                        }
                    }
                    record => self.db(usize::from(db)).apply(record, now_ms),
                }
            }
            Ok(())
        })
    }
}

impl Store {
    /// Applies one record (not a SWAPDB, which is [`Databases`]'s): a whole state replaces the
    /// key, a deletion or a deadline already past removes it, a change of fields or members
    /// changes them in place. Sessions enter and leave their user's list.
    pub fn apply(&self, record: Record, now_ms: u64) {
        if record
            .deadline_ms()
            .is_some_and(|deadline| deadline <= now_ms)
        {
            self.remove(record.key(), now_ms);
            return;
        }
        match record {
            Record::FlushDb => self.flush(),
            Record::SwapDb { .. } => {}
            Record::Delete { key } => {
                self.remove(&key, now_ms);
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
            whole => self.apply_whole(whole, now_ms),
        }
    }

    /// A key's whole state: replaces what the key held; a session is indexed under its user
    /// unless it replaces that user's session of the same ID.
    fn apply_whole(&self, record: Record, now_ms: u64) {
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
        if let (false, Some(Some(user))) = (same, new_user) {
            let rec = self.journal.recording();
            self.index_session_uncapped(&user, key, now_ms, &rec);
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
