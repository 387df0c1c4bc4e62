//! What the keyspace stores for each key, in one allocation per key.
//!
//! A [`Node`] is a thin pointer to a block holding a fixed head (deadline, expiry-index tick,
//! last use, lengths), then the key's bytes, then a string value's bytes. Hashes and sessions
//! keep their fields behind one more pointer in the head. A table slot is therefore 8 bytes, and
//! a session-shaped string key (37-byte key, 160-byte value) is one 240-byte allocation, where a
//! map of `Bytes` keys to `Bytes` values costs three allocations, two shared handles and an
//! 88-byte slot (see README "Performance" for the measurement).
//!
//! Commands describe what to store as an owned [`Entry`] (a [`Value`] and a deadline) and read
//! or change a stored one through a [`Node`]'s views ([`ValueRef`], [`ValueMut`]).
//!
//! This is the crate's only module with `unsafe` code: the node's allocation, its views and its
//! release, each with its reasoning next to it.
#![allow(unsafe_code)]

use std::alloc::{self, Layout};
use std::collections::HashMap;
use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;

use super::session::SessionRecord;

/// A hash's fields, or a session's.
pub type Fields = HashMap<Bytes, Bytes, ahash::RandomState>;

/// A value to store. The larger kinds are boxed so that passing one around stays cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A binary-safe string (integers are strings too, as in Redis). It may be a slice of a
    /// request: storing copies it into the key's node.
    Str(Bytes),
    /// A hash of fields to values.
    Hash(Box<Fields>),
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
    /// A session.
    Session(&'a SessionRecord),
}

impl<'a> ValueRef<'a> {
    /// The name `TYPE` answers.
    pub fn type_name(self) -> &'static str {
        match self {
            ValueRef::Str(_) => "string",
            ValueRef::Hash(_) => "hash",
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
    /// A session.
    Session(&'a mut SessionRecord),
}

/// A key's last use in seconds of the store's LRU clock, written under a shard's read lock by
/// readers (hence atomic).
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

/// A hash's or a session's data, behind the node's one extra pointer.
#[derive(Debug)]
enum Complex {
    Hash(Fields),
    Session(SessionRecord),
}

/// The fixed part at the start of every node: 32 bytes.
#[repr(C)]
struct Head {
    /// Unix ms after which the key is gone; 0 means no deadline.
    expires_at_ms: u64,
    /// The expiry-index tick this key is queued under; 0 means not queued. See
    /// [`super::expiry`]: at most one queued position per key, so sliding deadlines cost nothing.
    queued_tick: u32,
    /// When the key was last read or written, for the LRU eviction policies.
    last_use: LastUse,
    /// The key's length; its bytes follow the head.
    key_len: u32,
    /// A string value's length (its bytes follow the key's); 0 for the other kinds.
    str_len: u32,
    /// A hash's or a session's data; `None` for a string.
    complex: Option<Box<Complex>>,
}

const HEAD: usize = std::mem::size_of::<Head>();

/// The bytes a key is accounted for in `used_memory` beyond its key and value bytes: its node's
/// head, allocation header and rounding, its table slot (8 bytes and a control byte, over the
/// table's load) and its expiry-index position. Calibrated against the resident-set growth of a
/// million session-shaped keys (benches/measure-1m.sh).
pub const KEY_OVERHEAD: u64 = 77;
/// The same for each field of a hash or a session: two allocations and a table slot.
pub const FIELD_OVERHEAD: u64 = 64;
/// A hash's or a session's data block beyond its fields.
pub const COMPLEX_OVERHEAD: u64 = std::mem::size_of::<Complex>() as u64 + 16;

/// One stored key: its bytes, its value, its deadline and its bookkeeping, in one allocation.
pub struct Node {
    head: NonNull<Head>,
}

// SAFETY: a node owns its block outright (no other pointer to it exists), and everything in it
// is `Send + Sync` (integers, an atomic, and a box of fields made of `Bytes`; the assertion
// below stops the build if `Complex` ever stops being so), so moving it to or sharing it with
// another thread is as safe as for a `Box<Head>` followed by plain bytes.
unsafe impl Send for Node {}
// SAFETY: as above; shared access only reads, or writes the atomic last use.
unsafe impl Sync for Node {}

const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Complex>();
};

/// The block layout for a key and a string of these lengths.
fn layout(key_len: usize, str_len: usize) -> Layout {
    HEAD.checked_add(key_len)
        .and_then(|size| size.checked_add(str_len))
        .and_then(|size| Layout::from_size_align(size, std::mem::align_of::<Head>()).ok())
        .expect("key and value lengths are bounded by proto-max-bulk-len")
}

/// A length as stored in the head. Keys and values are bounded by `proto-max-bulk-len`, at most
/// `u32::MAX`, and loaded snapshots by the same check.
fn stored_len(len: usize) -> u32 {
    u32::try_from(len).expect("key and value lengths are bounded by proto-max-bulk-len")
}

impl Node {
    /// A node for `entry` stored under `key`, not yet queued for expiry and never used.
    pub(super) fn new(key: &[u8], entry: Entry) -> Node {
        let Entry {
            value,
            expires_at_ms,
        } = entry;
        match value {
            Value::Str(bytes) => Node::build(key, &bytes, None, expires_at_ms),
            Value::Hash(fields) => Node::build(
                key,
                &[],
                Some(Box::new(Complex::Hash(*fields))),
                expires_at_ms,
            ),
            Value::Session(session) => Node::build(
                key,
                &[],
                Some(Box::new(Complex::Session(*session))),
                expires_at_ms,
            ),
        }
    }

    fn build(key: &[u8], string: &[u8], complex: Option<Box<Complex>>, expires_at_ms: u64) -> Node {
        let layout = layout(key.len(), string.len());
        let head = Head {
            expires_at_ms,
            queued_tick: 0,
            last_use: LastUse::default(),
            key_len: stored_len(key.len()),
            str_len: stored_len(string.len()),
            complex,
        };
        // SAFETY: the layout is non-zero-sized (it holds at least the head) and aligned for
        // `Head`. The head is written at the start of the fresh block, and the key's and the
        // string's bytes right after it, inside the block's `HEAD + key + string` bytes; the
        // sources are borrowed slices that cannot overlap a block just allocated.
        unsafe {
            let block = alloc::alloc(layout);
            let Some(head_ptr) = NonNull::new(block.cast::<Head>()) else {
                alloc::handle_alloc_error(layout);
            };
            head_ptr.as_ptr().write(head);
            let bytes = block.add(HEAD);
            ptr::copy_nonoverlapping(key.as_ptr(), bytes, key.len());
            ptr::copy_nonoverlapping(string.as_ptr(), bytes.add(key.len()), string.len());
            Node { head: head_ptr }
        }
    }

    #[inline]
    fn head(&self) -> &Head {
        // SAFETY: the block lives as long as the node and starts with an initialized head.
        unsafe { self.head.as_ref() }
    }

    #[inline]
    fn head_mut(&mut self) -> &mut Head {
        // SAFETY: as in `head`; `&mut self` makes this the only reference into the block.
        unsafe { self.head.as_mut() }
    }

    /// The key's and the string's bytes, one after the other.
    #[inline]
    fn bytes(&self) -> &[u8] {
        let head = self.head();
        let len = head.key_len as usize + head.str_len as usize;
        // SAFETY: `build` wrote exactly `key_len + str_len` bytes after the head, and they are
        // never changed while shared (`replace` takes `&mut self`).
        unsafe { std::slice::from_raw_parts(self.head.as_ptr().cast::<u8>().add(HEAD), len) }
    }

    /// The key.
    #[inline]
    pub fn key(&self) -> &[u8] {
        &self.bytes()[..self.head().key_len as usize]
    }

    /// The value.
    #[inline]
    pub fn value(&self) -> ValueRef<'_> {
        match self.head().complex.as_deref() {
            None => ValueRef::Str(&self.bytes()[self.head().key_len as usize..]),
            Some(Complex::Hash(fields)) => ValueRef::Hash(fields),
            Some(Complex::Session(session)) => ValueRef::Session(session),
        }
    }

    /// The value, to change a hash's or a session's data in place.
    pub(super) fn value_mut(&mut self) -> ValueMut<'_> {
        let base = self.head.as_ptr();
        // SAFETY: `&mut self` makes this the only reference into the block for the result's
        // lifetime. The head and the bytes after it are disjoint parts of the block, so the
        // mutable head and the shared string slice never overlap.
        unsafe {
            let head = &mut *base;
            let (key_len, str_len) = (head.key_len as usize, head.str_len as usize);
            match head.complex.as_deref_mut() {
                None => ValueMut::Str(std::slice::from_raw_parts(
                    base.cast::<u8>().add(HEAD + key_len),
                    str_len,
                )),
                Some(Complex::Hash(fields)) => ValueMut::Hash(fields),
                Some(Complex::Session(session)) => ValueMut::Session(session),
            }
        }
    }

    /// The session, if this is one.
    pub fn as_session(&self) -> Option<&SessionRecord> {
        self.value().as_session()
    }

    /// Whether this is a session.
    pub fn is_session(&self) -> bool {
        matches!(self.head().complex.as_deref(), Some(Complex::Session(_)))
    }

    /// The deadline in Unix ms; 0 means none.
    #[inline]
    pub fn expires_at_ms(&self) -> u64 {
        self.head().expires_at_ms
    }

    /// Sets the deadline; 0 means none.
    pub(super) fn set_expires_at_ms(&mut self, expires_at_ms: u64) {
        self.head_mut().expires_at_ms = expires_at_ms;
    }

    /// The deadline in Unix ms, if any.
    pub fn deadline_ms(&self) -> Option<u64> {
        let at = self.expires_at_ms();
        (at != 0).then_some(at)
    }

    /// Whether the key is dead at `now_ms`. A key is visible strictly before its deadline.
    #[inline]
    pub fn is_expired(&self, now_ms: u64) -> bool {
        let at = self.expires_at_ms();
        at != 0 && at <= now_ms
    }

    /// The last use, for the LRU policies.
    #[inline]
    pub fn last_use(&self) -> &LastUse {
        &self.head().last_use
    }

    /// The expiry-index tick the key is queued under; 0 means not queued.
    #[inline]
    pub(super) fn queued_tick(&self) -> u32 {
        self.head().queued_tick
    }

    pub(super) fn set_queued_tick(&mut self, tick: u32) {
        self.head_mut().queued_tick = tick;
    }

    /// Stores `entry` in this node's place, keeping the key, its expiry-index position and its
    /// last use. A string replaced by one of the same length is overwritten in place; anything
    /// else takes a new block.
    pub(super) fn replace(&mut self, entry: Entry) {
        if let (Value::Str(string), None) = (&entry.value, &self.head().complex) {
            if string.len() == self.head().str_len as usize {
                let key_len = self.head().key_len as usize;
                // SAFETY: `&mut self` is the only reference into the block, and the string's
                // `str_len` bytes start `key_len` bytes after the head; `string` is a borrowed
                // slice, not part of this block.
                unsafe {
                    let at = self.head.as_ptr().cast::<u8>().add(HEAD + key_len);
                    ptr::copy_nonoverlapping(string.as_ptr(), at, string.len());
                }
                self.head_mut().expires_at_ms = entry.expires_at_ms;
                return;
            }
        }
        let mut new = Node::new(self.key(), entry);
        new.head_mut().queued_tick = self.queued_tick();
        new.last_use().touch(self.last_use().get());
        *self = new;
    }

    /// Takes the value out (the node is dropped): a session keeps its record, a string is copied.
    pub fn into_entry(mut self) -> Entry {
        let expires_at_ms = self.expires_at_ms();
        let value = match self.head_mut().complex.take().map(|complex| *complex) {
            None => match self.value() {
                ValueRef::Str(string) => Value::Str(Bytes::copy_from_slice(string)),
                _ => unreachable!("a node without data is a string"),
            },
            Some(Complex::Hash(fields)) => Value::Hash(Box::new(fields)),
            Some(Complex::Session(session)) => Value::Session(Box::new(session)),
        };
        Entry::new(value, expires_at_ms)
    }

    /// The memory this key is accounted for (`used_memory`, and what `--maxmemory` limits): its
    /// bytes plus fixed estimates of the structures around them.
    pub fn footprint(&self) -> u64 {
        let fields = |fields: &Fields| -> u64 {
            fields
                .iter()
                .map(|(f, v)| (f.len() + v.len()) as u64 + FIELD_OVERHEAD)
                .sum()
        };
        let value = match self.value() {
            ValueRef::Str(string) => string.len() as u64,
            ValueRef::Hash(hash) => COMPLEX_OVERHEAD + fields(hash),
            ValueRef::Session(session) => {
                COMPLEX_OVERHEAD
                    + fields(&session.fields)
                    + session.user.as_ref().map_or(0, |u| u.len() as u64)
            }
        };
        KEY_OVERHEAD + self.key().len() as u64 + value
    }
}

/// A stored key as a command may change it: its value's data and its deadline, never its key
/// (the table found the node by the key's hash) nor the node itself (replacing is the store's
/// job, see [`super::Store::upsert`]). It reads as a [`Node`].
pub struct NodeMut<'a>(&'a mut Node);

impl<'a> NodeMut<'a> {
    pub(super) fn new(node: &'a mut Node) -> NodeMut<'a> {
        NodeMut(node)
    }

    /// The value, to change a hash's or a session's data in place.
    pub fn value_mut(&mut self) -> ValueMut<'_> {
        self.0.value_mut()
    }

    /// Sets the deadline; 0 means none.
    pub fn set_expires_at_ms(&mut self, expires_at_ms: u64) {
        self.0.set_expires_at_ms(expires_at_ms);
    }
}

impl std::ops::Deref for NodeMut<'_> {
    type Target = Node;

    fn deref(&self) -> &Node {
        self.0
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let head = self.head();
        let layout = layout(head.key_len as usize, head.str_len as usize);
        // SAFETY: the block was allocated in `build` with exactly this layout (the lengths never
        // change after it), holds an initialized head, and is released once, here.
        unsafe {
            ptr::drop_in_place(self.head.as_ptr());
            alloc::dealloc(self.head.as_ptr().cast::<u8>(), layout);
        }
    }
}

impl Clone for Node {
    fn clone(&self) -> Node {
        let complex = self.head().complex.as_deref().map(|complex| {
            Box::new(match complex {
                Complex::Hash(fields) => Complex::Hash(fields.clone()),
                Complex::Session(session) => Complex::Session(session.clone()),
            })
        });
        let string = match self.value() {
            ValueRef::Str(string) => string,
            _ => &[],
        };
        let mut node = Node::build(self.key(), string, complex, self.expires_at_ms());
        node.head_mut().queued_tick = self.queued_tick();
        node.last_use().touch(self.last_use().get());
        node
    }
}

impl fmt::Debug for Node {
    /// Never the key's or the value's bytes: keys are session IDs, values session data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("type", &self.value().type_name())
            .field("key_len", &self.key().len())
            .field("expires_at_ms", &self.expires_at_ms())
            .finish_non_exhaustive()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_a_thin_pointer_and_its_head_32_bytes() {
        assert_eq!(std::mem::size_of::<Node>(), 8);
        assert_eq!(std::mem::size_of::<Option<Node>>(), 8);
        assert_eq!(HEAD, 32);
    }

    #[test]
    fn a_node_keeps_key_value_and_deadline() {
        let node = Node::new(b"sess:1", Entry::new(Value::Str(Bytes::from("data")), 42));
        assert_eq!(node.key(), b"sess:1");
        assert_eq!(node.value(), ValueRef::Str(b"data"));
        assert_eq!(node.deadline_ms(), Some(42));
        assert!(node.is_expired(42) && !node.is_expired(41));
        let empty = Node::new(b"", Entry::new(Value::Str(Bytes::new()), 0));
        assert_eq!((empty.key(), empty.value()), (&b""[..], ValueRef::Str(b"")));
    }

    #[test]
    fn replacing_keeps_the_key_and_the_queue_position() {
        let mut node = Node::new(b"k", Entry::new(Value::Str(Bytes::from("aaa")), 5));
        node.set_queued_tick(7);
        node.last_use().touch(3);
        node.replace(Entry::new(Value::Str(Bytes::from("bbb")), 6));
        assert_eq!(
            (node.value(), node.expires_at_ms()),
            (ValueRef::Str(b"bbb"), 6)
        );
        node.replace(Entry::new(Value::Str(Bytes::from("longer")), 0));
        assert_eq!(node.value(), ValueRef::Str(b"longer"));
        let mut fields = Fields::default();
        fields.insert(Bytes::from("f"), Bytes::from("v"));
        node.replace(Entry::new(Value::Hash(Box::new(fields.clone())), 9));
        assert_eq!(node.value(), ValueRef::Hash(&fields));
        if let ValueMut::Hash(hash) = node.value_mut() {
            hash.insert(Bytes::from("g"), Bytes::from("w"));
        }
        assert_eq!(node.key(), b"k");
        assert_eq!((node.queued_tick(), node.last_use().get()), (7, 3));
        let copy = node.clone();
        let entry = node.into_entry();
        assert_eq!(entry.expires_at_ms, 9);
        assert!(matches!(&entry.value, Value::Hash(h) if h.len() == 2));
        assert_eq!(copy.value().type_name(), "hash");
        let string = Node::new(b"s", Entry::new(Value::Str(Bytes::from("x")), 0)).into_entry();
        assert_eq!(string.value, Value::Str(Bytes::from("x")));
    }
}
