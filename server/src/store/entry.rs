//! What the keyspace stores for each key: a typed value and a deadline.

use std::collections::HashMap;

use bytes::Bytes;

use super::session::SessionRecord;

/// A hash's fields, or a session's.
pub type Fields = HashMap<Bytes, Bytes, ahash::RandomState>;

/// A stored value. The larger kinds are boxed so that every entry stays as small as a string's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A binary-safe string (integers are strings too, as in Redis).
    Str(Bytes),
    /// A hash of fields to values.
    Hash(Box<Fields>),
    /// A native session.
    Session(Box<SessionRecord>),
}

impl Value {
    /// The name `TYPE` answers.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
            Value::Session(_) => "session",
        }
    }

    /// The session, if this is one.
    pub fn as_session(&self) -> Option<&SessionRecord> {
        match self {
            Value::Session(session) => Some(session),
            _ => None,
        }
    }
}

/// One key's value and deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub(crate) value: Value,
    /// Unix ms after which the key is gone; 0 means no deadline.
    pub(crate) expires_at_ms: u64,
    /// The expiry-index tick this key is queued under; 0 means not queued. See
    /// [`super::expiry`]: at most one queued position per key, so sliding deadlines cost nothing.
    pub(crate) queued_tick: u32,
}

impl Entry {
    /// A new entry; `expires_at_ms` 0 means persistent.
    pub fn new(value: Value, expires_at_ms: u64) -> Entry {
        Entry {
            value,
            expires_at_ms,
            queued_tick: 0,
        }
    }

    /// The value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The deadline in Unix ms, if any.
    pub fn deadline_ms(&self) -> Option<u64> {
        (self.expires_at_ms != 0).then_some(self.expires_at_ms)
    }

    /// Whether the key is dead at `now_ms`. A key is visible strictly before its deadline.
    #[inline]
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms != 0 && self.expires_at_ms <= now_ms
    }
}

/// Copies `data` into an allocation of its own.
///
/// Arguments decoded from a connection are slices of its read buffer; storing one as is would
/// keep the whole buffer alive for as long as the key lives. Stored keys and values are
/// therefore copied once, into exactly-sized memory (Redis copies arguments at parse time
/// instead; the count of copies is the same).
pub fn owned(data: &Bytes) -> Bytes {
    Bytes::copy_from_slice(data)
}
