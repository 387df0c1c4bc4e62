//! What the keyspace stores for each key: a typed value and a deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

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
    /// When the key was last read or written, for the LRU eviction policies. It fills what was
    /// padding: an entry is 56 bytes with or without it.
    pub(crate) last_use: LastUse,
}

/// A key's last use in seconds of the store's LRU clock, written under a shard's read lock by
/// readers (hence atomic). Two entries compare equal whatever their last use.
#[derive(Debug, Default)]
pub struct LastUse(AtomicU32);

impl LastUse {
    /// Records a use at `seconds`.
    #[inline]
    pub fn touch(&self, seconds: u32) {
        // A plain store: losing a concurrent reader's update costs LRU precision, not safety.
        if self.0.load(Ordering::Relaxed) != seconds {
            self.0.store(seconds, Ordering::Relaxed);
        }
    }

    /// The last use.
    pub fn get(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Clone for LastUse {
    fn clone(&self) -> LastUse {
        LastUse(AtomicU32::new(self.get()))
    }
}

impl PartialEq for LastUse {
    fn eq(&self, _: &LastUse) -> bool {
        true
    }
}

impl Eq for LastUse {}

/// The bytes a key is accounted for in `used_memory` beyond its key and value bytes: its map
/// slot (key and entry handles, control byte, free slots of the table), the allocations'
/// headers and rounding, and its expiry-index position. Calibrated against the resident-set
/// growth of a million session-shaped keys (benches/measure-1m.sh).
pub const KEY_OVERHEAD: u64 = 192;
/// The same for each field of a hash or a session: two allocations and a table slot.
pub const FIELD_OVERHEAD: u64 = 64;
/// A session's record beyond its fields.
pub const SESSION_OVERHEAD: u64 = 128;

impl Entry {
    /// A new entry; `expires_at_ms` 0 means persistent.
    pub fn new(value: Value, expires_at_ms: u64) -> Entry {
        Entry {
            value,
            expires_at_ms,
            queued_tick: 0,
            last_use: LastUse::default(),
        }
    }

    /// The memory the key `key` holding this entry is accounted for (`used_memory`, and what
    /// `--maxmemory` limits): its bytes plus fixed estimates of the structures around them.
    pub fn footprint(&self, key: &[u8]) -> u64 {
        let fields = |fields: &Fields| -> u64 {
            fields
                .iter()
                .map(|(f, v)| (f.len() + v.len()) as u64 + FIELD_OVERHEAD)
                .sum()
        };
        let value = match &self.value {
            Value::Str(value) => value.len() as u64,
            Value::Hash(hash) => fields(hash),
            Value::Session(session) => {
                fields(&session.fields)
                    + session.user.as_ref().map_or(0, |u| u.len() as u64)
                    + SESSION_OVERHEAD
            }
        };
        KEY_OVERHEAD + key.len() as u64 + value
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
