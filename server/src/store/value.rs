//! The values a key holds, as commands build them ([`Entry`], [`Value`]) and as they read or
//! change a stored one ([`ValueRef`], [`ValueMut`]), the session record among them.
//!
//! These sit below the node (`entry.rs`), which stores them, and below the session logic
//! (`session.rs`), which works on them: neither needs the other to name a value.

use bytes::Bytes;

use super::fields::Fields;

/// A value to store. The larger kinds are boxed so that passing one around stays cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A binary-safe string (integers are strings too, as in Redis). It may be a slice of a
    /// request: storing copies it into the key's node.
    Str(Bytes),
    /// A hash of fields to values.
    Hash(Box<Fields>),
    /// A set: its members are the field names of a [`Fields`] whose values are all empty.
    Set(Box<Fields>),
    /// A native session.
    Session(Box<SessionRecord>),
}

/// What to store under a key: a value and a deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The value.
    pub value: Value,
    /// Unix ms after which the key is gone; 0 means no deadline.
    pub expires_at_ms: u64,
}

impl Entry {
    /// A new entry; `expires_at_ms` 0 means persistent.
    pub fn new(value: Value, expires_at_ms: u64) -> Entry {
        Entry {
            value,
            expires_at_ms,
        }
    }
}

/// A stored value, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueRef<'a> {
    /// A string.
    Str(&'a [u8]),
    /// A hash.
    Hash(&'a Fields),
    /// A set (members as field names, every value empty).
    Set(&'a Fields),
    /// A session.
    Session(&'a SessionRecord),
}

impl<'a> ValueRef<'a> {
    /// The name `TYPE` answers.
    pub fn type_name(self) -> &'static str {
        match self {
            ValueRef::Str(_) => "string",
            ValueRef::Hash(_) => "hash",
            ValueRef::Set(_) => "set",
            ValueRef::Session(_) => "session",
        }
    }

    /// The session, if this is one.
    pub fn as_session(self) -> Option<&'a SessionRecord> {
        match self {
            ValueRef::Session(session) => Some(session),
            _ => None,
        }
    }
}

/// A stored value, mutably borrowed. A string's bytes are read-only: a command that changes a
/// string stores a new [`Entry`] (its length may change, and the node with it).
#[derive(Debug, PartialEq, Eq)]
pub enum ValueMut<'a> {
    /// A string.
    Str(&'a [u8]),
    /// A hash.
    Hash(&'a mut Fields),
    /// A set (insert members with [`Fields::insert_member`]).
    Set(&'a mut Fields),
    /// A session.
    Session(&'a mut SessionRecord),
}

/// One session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The user it belongs to, if any.
    pub user: Option<Bytes>,
    /// Its data.
    pub fields: Fields,
    /// When it was created, Unix ms.
    pub created_ms: u64,
    /// When it was last used (GET, SET, UNSET, TOUCH), Unix ms.
    pub last_access_ms: u64,
    /// The idle timeout, ms.
    pub idle_ms: u64,
    /// The absolute timeout, ms, counted from `created_ms`.
    pub absolute_ms: u64,
    /// Starts at 1, +1 on every SET and UNSET.
    pub version: u64,
}

impl SessionRecord {
    /// The effective deadline: the earlier of the idle and the absolute one.
    pub fn deadline_ms(&self) -> u64 {
        deadline_ms(
            self.created_ms,
            self.last_access_ms,
            self.idle_ms,
            self.absolute_ms,
        )
    }

    /// The bytes of data it holds (field names and values), kept as a running total.
    pub fn data_bytes(&self) -> usize {
        self.fields.data_bytes()
    }
}

/// The latest deadline a session can have, Unix ms: the largest that a reply's 64-bit signed
/// integer holds (EXPIRETIME, SESSION.INFO), so that huge timeouts (a configured default, a
/// loaded record) mean "practically never" instead of wrapping around.
pub const MAX_DEADLINE_MS: u64 = i64::MAX as u64;

/// A session's effective deadline: the earlier of the idle and the absolute one, at most
/// [`MAX_DEADLINE_MS`].
pub fn deadline_ms(created_ms: u64, last_access_ms: u64, idle_ms: u64, absolute_ms: u64) -> u64 {
    let idle = last_access_ms.saturating_add(idle_ms);
    let absolute = created_ms.saturating_add(absolute_ms);
    idle.min(absolute).min(MAX_DEADLINE_MS)
}

/// Copies `data` into an allocation of its own.
///
/// Arguments decoded from a connection are slices of its read buffer; storing one as is would
/// keep the whole buffer alive for as long as the key lives. Hash fields and session data are
/// therefore copied once, into exactly-sized memory (keys and strings are copied into their
/// node instead).
pub fn owned(data: &Bytes) -> Bytes {
    Bytes::copy_from_slice(data)
}
