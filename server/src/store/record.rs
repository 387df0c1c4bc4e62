//! [`Record`], the store's word for a change to the keyspace: a key's whole state, or its
//! removal.
//!
//! Snapshots are a stream of records (the live keys, shard by shard, then the changes the
//! journal recorded meanwhile), and a stream of records replayed in order
//! rebuilds the keyspace: a key's last record wins and [`Record::Delete`] removes it. The
//! persistence layer only frames, checksums and stores their serde encoding. Deadlines are
//! wall-clock Unix milliseconds, so a key whose deadline passed while the server was down is
//! not loaded.
//!
//! The change feed ([`super::feed`]) carries the same vocabulary, plus variants that keep a
//! change's cost proportional to the change rather than to the key: fields set or removed,
//! members added or removed, a deadline set, a database flushed or two swapped. Every variant
//! is an assignment (a state, never an increment), so replaying a record twice, or a suffix of
//! the stream over a snapshot that already holds part of it, gives the same keyspace.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::entry::Node;
use super::fields::Fields;
use super::value::{deadline_ms, Entry, SessionRecord, Value, ValueRef};

/// One change to the keyspace: a key's whole state, or its removal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A string key.
    String {
        /// The key.
        key: Bytes,
        /// The value.
        value: Bytes,
        /// Deadline, Unix ms; 0: none.
        expires_at_ms: u64,
    },
    /// A hash key.
    Hash {
        /// The key.
        key: Bytes,
        /// The fields.
        fields: Vec<(Bytes, Bytes)>,
        /// Deadline, Unix ms; 0: none.
        expires_at_ms: u64,
    },
    /// A session; its deadline follows from its timeouts.
    Session {
        /// The session ID.
        id: Bytes,
        /// The user, if any.
        user: Option<Bytes>,
        /// The data.
        fields: Vec<(Bytes, Bytes)>,
        /// Creation, Unix ms.
        created_ms: u64,
        /// Last use, Unix ms.
        last_access_ms: u64,
        /// Idle timeout, ms.
        idle_ms: u64,
        /// Absolute timeout, ms.
        absolute_ms: u64,
        /// Version.
        version: u64,
    },
    /// The key was removed (journal only).
    Delete {
        /// The key.
        key: Bytes,
    },
    /// A set key. Last of the variants, because postcard encodes a variant as its index:
    /// files written before sets existed keep loading.
    Set {
        /// The key.
        key: Bytes,
        /// The members.
        members: Vec<Bytes>,
        /// Deadline, Unix ms; 0: none.
        expires_at_ms: u64,
    },
    /// Fields of a hash set to these values, others removed, and its deadline (feed only).
    /// On a missing key (or one of another type) the hash is made of the fields set.
    HashFields {
        /// The key.
        key: Bytes,
        /// Fields and their new values.
        set: Vec<(Bytes, Bytes)>,
        /// Fields removed.
        removed: Vec<Bytes>,
        /// Deadline, Unix ms; 0: none.
        expires_at_ms: u64,
    },
    /// Members added to a set, others removed, and its deadline (feed only).
    SetMembers {
        /// The key.
        key: Bytes,
        /// Members added.
        added: Vec<Bytes>,
        /// Members removed.
        removed: Vec<Bytes>,
        /// Deadline, Unix ms; 0: none.
        expires_at_ms: u64,
    },
    /// A key's deadline set (0: removed), its value unchanged (feed only).
    Deadline {
        /// The key.
        key: Bytes,
        /// Deadline, Unix ms; 0: none.
        expires_at_ms: u64,
    },
    /// Every key of the record's database removed (FLUSHDB, and FLUSHALL per database; feed
    /// only).
    FlushDb,
    /// The record's database and database `with` swapped (SWAPDB; feed only).
    SwapDb {
        /// The other database's index.
        with: u16,
    },
    /// A session used: its last access set (its idle timer slid), nothing else changed (feed
    /// only).
    SessionTouch {
        /// The session ID.
        id: Bytes,
        /// Last use, Unix ms.
        last_access_ms: u64,
    },
    /// The key was removed by the server rather than by a command (feed only; a command's
    /// removal is [`Record::Delete`]): a replica announces the removal as its primary did.
    Ended {
        /// The key.
        key: Bytes,
        /// Why it left.
        why: Ending,
    },
}

/// Why the server removed a key ([`Record::Ended`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ending {
    /// Its deadline passed.
    Expired,
    /// `maxmemory` made room.
    Evicted,
    /// The session moved to the ID `to` (SESSION.REGENERATE), whose record comes before this
    /// one in the same frame.
    Regenerated {
        /// The new ID.
        to: Bytes,
    },
}

/// The key of the records about no key (FLUSHDB, SWAPDB).
static NO_KEY: Bytes = Bytes::new();

fn pairs(fields: &Fields) -> Vec<(Bytes, Bytes)> {
    fields.iter().map(|(f, v)| (f.clone(), v.clone())).collect()
}

impl Record {
    /// The record of the stored key `node`: copies of its bytes (field names and values are
    /// handles).
    pub fn of(node: &Node) -> Record {
        let key = Bytes::copy_from_slice(node.key());
        let expires_at_ms = node.expires_at_ms();
        match node.value() {
            ValueRef::Str(value) => Record::String {
                key,
                value: Bytes::copy_from_slice(value),
                expires_at_ms,
            },
            ValueRef::Hash(fields) => Record::Hash {
                key,
                fields: pairs(fields),
                expires_at_ms,
            },
            ValueRef::Set(members) => Record::Set {
                key,
                members: members.keys().cloned().collect(),
                expires_at_ms,
            },
            ValueRef::Session(session) => Record::Session {
                id: key,
                user: session.user.clone(),
                fields: pairs(&session.fields),
                created_ms: session.created_ms,
                last_access_ms: session.last_access_ms,
                idle_ms: session.idle_ms,
                absolute_ms: session.absolute_ms,
                version: session.version,
            },
        }
    }

    /// The key this record is about.
    pub fn key(&self) -> &Bytes {
        match self {
            Record::String { key, .. }
            | Record::Hash { key, .. }
            | Record::Set { key, .. }
            | Record::Delete { key }
            | Record::HashFields { key, .. }
            | Record::SetMembers { key, .. }
            | Record::Deadline { key, .. }
            | Record::Ended { key, .. } => key,
            Record::Session { id, .. } | Record::SessionTouch { id, .. } => id,
            Record::FlushDb | Record::SwapDb { .. } => &NO_KEY,
        }
    }

    /// The deadline the record's entry would have, Unix ms; `None`: no deadline (or a deletion).
    pub fn deadline_ms(&self) -> Option<u64> {
        match self {
            Record::String { expires_at_ms, .. }
            | Record::Hash { expires_at_ms, .. }
            | Record::Set { expires_at_ms, .. }
            | Record::HashFields { expires_at_ms, .. }
            | Record::SetMembers { expires_at_ms, .. }
            | Record::Deadline { expires_at_ms, .. } => {
                (*expires_at_ms != 0).then_some(*expires_at_ms)
            }
            Record::Session {
                created_ms,
                last_access_ms,
                idle_ms,
                absolute_ms,
                ..
            } => Some(deadline_ms(
                *created_ms,
                *last_access_ms,
                *idle_ms,
                *absolute_ms,
            )),
            Record::Delete { .. }
            | Record::Ended { .. }
            | Record::FlushDb
            | Record::SwapDb { .. }
            | Record::SessionTouch { .. } => None,
        }
    }

    /// Whether the record is a key's whole state or its deletion (what snapshots hold), as
    /// opposed to a change relative to the key's state (the feed's other variants).
    pub fn is_whole(&self) -> bool {
        matches!(
            self,
            Record::String { .. }
                | Record::Hash { .. }
                | Record::Session { .. }
                | Record::Delete { .. }
                | Record::Set { .. }
        )
    }

    /// The kind, for counts: `string`, `hash`, `set`, `session`, `delete`, `hash-fields`,
    /// `set-members`, `deadline`, `flushdb`, `swapdb`, `session-touch` or `ended`.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::String { .. } => "string",
            Record::Hash { .. } => "hash",
            Record::Set { .. } => "set",
            Record::Session { .. } => "session",
            Record::Delete { .. } => "delete",
            Record::HashFields { .. } => "hash-fields",
            Record::SetMembers { .. } => "set-members",
            Record::Deadline { .. } => "deadline",
            Record::FlushDb => "flushdb",
            Record::SwapDb { .. } => "swapdb",
            Record::SessionTouch { .. } => "session-touch",
            Record::Ended { .. } => "ended",
        }
    }

    /// The key and entry this record restores; `None` for a deletion and for the records that
    /// are not a whole state ([`Record::is_whole`]).
    pub fn into_entry(self) -> Option<(Bytes, Entry)> {
        let collect = |fields: Vec<(Bytes, Bytes)>| fields.into_iter().collect::<Fields>();
        match self {
            Record::String {
                key,
                value,
                expires_at_ms,
            } => Some((key, Entry::new(Value::Str(value), expires_at_ms))),
            Record::Hash {
                key,
                fields,
                expires_at_ms,
            } => Some((
                key,
                Entry::new(Value::Hash(Box::new(collect(fields))), expires_at_ms),
            )),
            Record::Set {
                key,
                members,
                expires_at_ms,
            } => {
                let members = Fields::from_members(members);
                Some((
                    key,
                    Entry::new(Value::Set(Box::new(members)), expires_at_ms),
                ))
            }
            Record::Session {
                id,
                user,
                fields,
                created_ms,
                last_access_ms,
                idle_ms,
                absolute_ms,
                version,
            } => {
                let session = SessionRecord {
                    user,
                    fields: collect(fields),
                    created_ms,
                    last_access_ms,
                    idle_ms,
                    absolute_ms,
                    version,
                };
                let deadline = session.deadline_ms();
                Some((id, Entry::new(Value::Session(Box::new(session)), deadline)))
            }
            Record::Delete { .. }
            | Record::HashFields { .. }
            | Record::SetMembers { .. }
            | Record::Deadline { .. }
            | Record::FlushDb
            | Record::SwapDb { .. }
            | Record::SessionTouch { .. }
            | Record::Ended { .. } => None,
        }
    }
}
