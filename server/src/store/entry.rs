//! What the keyspace stores for each key, in one allocation per key.
//!
//! A [`Node`] is a thin pointer to a block holding a 16-byte head (deadline, expiry-index tick,
//! last use), the key's and the value's lengths as varints, then the key's bytes, then a string
//! value's bytes, or for a hash or a session the pointer to its fields. A table slot is
//! therefore 8 bytes, and a session-shaped string key (37-byte key, 160-byte value) is one
//! 216-byte block (a 224-byte allocation in glibc and in mimalloc, the daemon's allocator),
//! where a map of `Bytes` keys to `Bytes` values costs three allocations, two shared handles
//! and an 88-byte slot.
//!
//! Commands describe what to store as an owned [`Entry`] (a [`Value`] and a deadline) and read
//! or change a stored one through a [`Node`]'s views ([`ValueRef`], [`ValueMut`]).
//!
//! This module's `unsafe` code (the crate's other is an atomic block's borrow of its shards,
//! in `table.rs`): the node's allocation, its views and its release, each with its reasoning
//! next to it.
#![allow(unsafe_code)]

use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;

use super::fields::Fields;
use super::value::{Entry, SessionRecord, Value, ValueMut, ValueRef};

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
    Set(Fields),
    Session(SessionRecord),
}

/// The fixed part at the start of every node: 16 bytes.
#[repr(C)]
struct Head {
    /// Unix ms after which the key is gone; 0 means no deadline.
    expires_at_ms: u64,
    /// The expiry-index tick this key is queued under; 0 means not queued. See
    /// `expiry.rs`: at most one queued position per key, so sliding deadlines cost nothing.
    queued_tick: u32,
    /// When the key was last read or written, for the LRU eviction policies.
    last_use: LastUse,
}

const HEAD: usize = std::mem::size_of::<Head>();
/// The bytes of the pointer to a hash's or a session's data, stored after the key.
const POINTER: usize = std::mem::size_of::<*mut Complex>();

/// The bytes a key is accounted for in `used_memory` beyond its key and value bytes: its node's
/// head and lengths, allocation header and rounding, its table slot (8 bytes and a control
/// byte, over the table's load) and its expiry-index position: an estimate, which
/// `benches/measure-1m.sh` checks against the resident-set growth of session-shaped keys.
pub const KEY_OVERHEAD: u64 = 66;
/// The same for each field of a hash or a session: two allocations and a table slot.
pub const FIELD_OVERHEAD: u64 = 64;
/// The same for each member of a set: a field's table slot and the member's allocation (its
/// value is the empty static `Bytes`, which allocates nothing).
pub const MEMBER_OVERHEAD: u64 = FIELD_OVERHEAD - 16;
/// A hash's or a session's data block beyond its fields.
pub const COMPLEX_OVERHEAD: u64 = std::mem::size_of::<Complex>() as u64 + 16;

/// Where the parts of a node's block are, from the lengths written after its head.
///
/// The block is the head, then two LEB128 varints — the key's length, and a string's length
/// times two (or 1 for a hash or a session) — then the key's bytes, then the string's bytes or
/// the unaligned pointer to the hash's or the session's data. Short keys and values take one or
/// two bytes of lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    /// Where the key starts in the block.
    key_at: usize,
    /// The key's length.
    key_len: usize,
    /// A string's length; `None` for a hash or a session, whose pointer follows the key.
    str_len: Option<usize>,
}

/// The bytes `value` takes as an LEB128 varint: ceil(bits / 7), as `(bits * 9 + 64) / 64`
/// (exact for 1 to 64 bits; a multiply and a shift, where the division cost two of each and a
/// branch on every SET logged).
pub(super) fn varint_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    (bits * 9 + 64) >> 6
}

impl Shape {
    /// The shape of a block for a key and a string (`Some(len)`) or a pointer (`None`).
    fn new(key_len: usize, str_len: Option<usize>) -> Shape {
        // Keys and values are bounded by proto-max-bulk-len (at most u32::MAX), and loaded
        // snapshots by the same check: neither length overflows below.
        Shape {
            key_at: HEAD + varint_len(key_len as u64) + varint_len(Shape::tag(str_len)),
            key_len,
            str_len,
        }
    }

    /// The second length as written: a string's length times two, or 1 for a pointer.
    fn tag(str_len: Option<usize>) -> u64 {
        str_len.map_or(1, |len| (len as u64) << 1)
    }

    /// Where the string's bytes or the pointer start.
    fn value_at(&self) -> usize {
        self.key_at + self.key_len
    }

    /// The block's layout.
    fn layout(&self) -> Layout {
        self.value_at()
            .checked_add(self.str_len.unwrap_or(POINTER))
            .and_then(|size| Layout::from_size_align(size, std::mem::align_of::<Head>()).ok())
            .expect("key and value lengths are bounded by proto-max-bulk-len")
    }
}

/// Writes `value` as an LEB128 varint at `at` and returns the position after it.
///
/// # Safety
/// `at` must be valid for writing `varint_len(value)` bytes.
unsafe fn write_varint(mut at: *mut u8, mut value: u64) -> *mut u8 {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        // SAFETY: the caller sized the space to the varint, whose last byte is the one that
        // leaves `value` at 0.
        unsafe {
            if value == 0 {
                at.write(byte);
                return at.add(1);
            }
            at.write(byte | 0x80);
            at = at.add(1);
        }
    }
}

/// Reads the LEB128 varint at `at`, and the position after it.
///
/// # Safety
/// `at` must point to a varint written by [`write_varint`], readable to its last byte.
#[inline]
unsafe fn read_varint(mut at: *const u8) -> (u64, *const u8) {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        // SAFETY: the varint's bytes up to the one without the high bit are readable.
        let byte = unsafe { at.read() };
        // SAFETY: as above; the position after the last byte is in (or one past) the block.
        at = unsafe { at.add(1) };
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return (value, at);
        }
        shift += 7;
    }
}

/// What follows a node's key.
#[derive(Debug, Clone, Copy)]
enum Tail {
    /// A string of this many bytes.
    Str(usize),
    /// The pointer to a hash's or a session's data.
    Data(*mut Complex),
}

/// One stored key: its bytes, its value, its deadline and its bookkeeping, in one allocation.
pub struct Node {
    head: NonNull<Head>,
}

// SAFETY: a node owns its block outright (no other pointer to it exists) and the data its
// pointer leads to, and everything in them is `Send + Sync` (integers, an atomic, bytes, and
// fields made of `Bytes`; the assertion below stops the build if `Complex` ever stops being
// so), so moving it to or sharing it with another thread is as safe as for a `Box<Head>`
// followed by plain bytes and a `Box<Complex>`.
unsafe impl Send for Node {}
// SAFETY: as above; shared access only reads, or writes the atomic last use.
unsafe impl Sync for Node {}

const _: () = {
    const fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Complex>();
};

impl Node {
    /// A node for `entry` stored under `key`, not yet queued for expiry and never used.
    pub(super) fn new(key: &[u8], entry: Entry) -> Node {
        let Entry {
            value,
            expires_at_ms,
        } = entry;
        match value {
            Value::Str(bytes) => Node::build(key, Ok(&bytes), expires_at_ms),
            Value::Hash(fields) => {
                Node::build(key, Err(Box::new(Complex::Hash(*fields))), expires_at_ms)
            }
            Value::Set(members) => {
                Node::build(key, Err(Box::new(Complex::Set(*members))), expires_at_ms)
            }
            Value::Session(session) => Node::build(
                key,
                Err(Box::new(Complex::Session(*session))),
                expires_at_ms,
            ),
        }
    }

    /// A block for `key` and a string (`Ok`) or a hash's or a session's data (`Err`).
    fn build(key: &[u8], value: Result<&[u8], Box<Complex>>, expires_at_ms: u64) -> Node {
        let shape = Shape::new(key.len(), value.as_ref().ok().map(|string| string.len()));
        let layout = shape.layout();
        let head = Head {
            expires_at_ms,
            queued_tick: 0,
            last_use: LastUse::default(),
        };
        // SAFETY: the layout is non-zero-sized (it holds at least the head) and aligned for
        // `Head`. The head is written at the start of the fresh block, the two lengths right
        // after it (`Shape::new` counted their bytes into `key_at`), then the key's bytes, then
        // the string's bytes or the pointer, ending at the block's end (`Shape::layout`). The
        // sources are borrowed slices that cannot overlap a block just allocated; the pointer is
        // written unaligned, as it sits after bytes of any length.
        unsafe {
            let block = alloc::alloc(layout);
            let Some(head_ptr) = NonNull::new(block.cast::<Head>()) else {
                alloc::handle_alloc_error(layout);
            };
            head_ptr.as_ptr().write(head);
            let lengths = write_varint(block.add(HEAD), key.len() as u64);
            write_varint(lengths, Shape::tag(shape.str_len));
            ptr::copy_nonoverlapping(key.as_ptr(), block.add(shape.key_at), key.len());
            let at = block.add(shape.value_at());
            match value {
                Ok(string) => ptr::copy_nonoverlapping(string.as_ptr(), at, string.len()),
                Err(complex) => at
                    .cast::<*mut Complex>()
                    .write_unaligned(Box::into_raw(complex)),
            }
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

    /// The block's start.
    #[inline]
    fn base(&self) -> *mut u8 {
        self.head.as_ptr().cast::<u8>()
    }

    /// Where the key and the value are.
    #[inline]
    fn shape(&self) -> Shape {
        // SAFETY: `build` wrote the two varints right after the head, and they never change.
        let (key_len, tag) = unsafe {
            let (key_len, next) = read_varint(self.base().add(HEAD));
            let (tag, _) = read_varint(next);
            (key_len, tag)
        };
        let str_len = (tag & 1 == 0).then_some((tag >> 1) as usize);
        Shape::new(key_len as usize, str_len)
    }

    /// What follows the key, at `shape`.
    #[inline]
    fn tail(&self, shape: Shape) -> Tail {
        match shape.str_len {
            Some(len) => Tail::Str(len),
            // SAFETY: a node without a string length holds the pointer `build` wrote (unaligned)
            // right after the key, and it never changes while the node lives.
            None => Tail::Data(unsafe {
                self.base()
                    .add(shape.value_at())
                    .cast::<*mut Complex>()
                    .read_unaligned()
            }),
        }
    }

    /// Asks the CPU to start loading the node's first `lines` cache lines (two hold the head and
    /// a session-shaped key, four the whole of a session-shaped string; a block need not start
    /// on a line), for a caller about to visit many nodes: their cache misses then overlap
    /// instead of coming one after another. The node is not read.
    #[inline]
    pub fn prefetch(&self, lines: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let base = self.base().cast::<i8>();
            for line in 0..lines {
                // SAFETY: SSE is part of every x86-64 CPU, and a prefetch is a hint that never
                // faults, whatever the address (`wrapping_add`: a line may lie past a short
                // block).
                unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(line * 64)) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = lines;
    }

    /// The key.
    #[inline]
    pub fn key(&self) -> &[u8] {
        self.key_at(self.shape())
    }

    /// The key, at `shape`.
    #[inline]
    fn key_at(&self, shape: Shape) -> &[u8] {
        // SAFETY: `build` wrote the key's `key_len` bytes at `key_at`, and they never change.
        unsafe { std::slice::from_raw_parts(self.base().add(shape.key_at), shape.key_len) }
    }

    /// The key and the value, from one reading of the node's layout.
    #[inline]
    pub fn key_and_value(&self) -> (&[u8], ValueRef<'_>) {
        let shape = self.shape();
        (self.key_at(shape), self.value_at(shape))
    }

    /// A string's bytes, at `shape`.
    #[inline]
    fn string(&self, shape: Shape, len: usize) -> &[u8] {
        // SAFETY: `build` wrote the string's `len` bytes at `value_at`; they change only under
        // `&mut self` (`replace`).
        unsafe { std::slice::from_raw_parts(self.base().add(shape.value_at()), len) }
    }

    /// The value.
    #[inline]
    pub fn value(&self) -> ValueRef<'_> {
        self.value_at(self.shape())
    }

    /// The value, at `shape`.
    #[inline]
    fn value_at(&self, shape: Shape) -> ValueRef<'_> {
        match self.tail(shape) {
            Tail::Str(len) => ValueRef::Str(self.string(shape, len)),
            // SAFETY: the pointer came from `Box::into_raw` in `build` and is released only when
            // the node is (`drop`, `into_entry`); shared access to the node is shared access to
            // its data.
            Tail::Data(data) => match unsafe { &*data } {
                Complex::Hash(fields) => ValueRef::Hash(fields),
                Complex::Set(members) => ValueRef::Set(members),
                Complex::Session(session) => ValueRef::Session(session),
            },
        }
    }

    /// The value, to change a hash's or a session's data in place.
    pub(super) fn value_mut(&mut self) -> ValueMut<'_> {
        let shape = self.shape();
        match self.tail(shape) {
            Tail::Str(len) => ValueMut::Str(self.string(shape, len)),
            // SAFETY: as in `value`; `&mut self` makes this the only reference to the data for
            // the result's lifetime (the data is a separate allocation from the block).
            Tail::Data(data) => match unsafe { &mut *data } {
                Complex::Hash(fields) => ValueMut::Hash(fields),
                Complex::Set(members) => ValueMut::Set(members),
                Complex::Session(session) => ValueMut::Session(session),
            },
        }
    }

    /// The session, if this is one.
    pub fn as_session(&self) -> Option<&SessionRecord> {
        self.value().as_session()
    }

    /// Whether this is a session.
    pub fn is_session(&self) -> bool {
        matches!(self.value(), ValueRef::Session(_))
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
        let shape = self.shape();
        if let Value::Str(string) = &entry.value {
            if shape.str_len == Some(string.len()) {
                // SAFETY: `&mut self` is the only reference into the block, and the string's
                // bytes start at `value_at`, `string.len()` of them; `string` is a borrowed
                // slice, not part of this block.
                unsafe {
                    let at = self.base().add(shape.value_at());
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

    /// The same value and deadline under `key`, in a new node (not yet queued for expiry, never
    /// used); this one is released. A string is copied once, straight into the new block; a
    /// hash's or a session's data moves without a copy.
    pub(super) fn rekeyed(self, key: &[u8]) -> Node {
        let shape = self.shape();
        match self.tail(shape) {
            Tail::Str(len) => Node::build(key, Ok(self.string(shape, len)), self.expires_at_ms()),
            Tail::Data(_) => Node::new(key, self.into_entry()),
        }
    }

    /// Takes the value out (the node is dropped): a hash or a session keeps its data, a string
    /// is copied.
    pub fn into_entry(self) -> Entry {
        let node = std::mem::ManuallyDrop::new(self);
        let shape = node.shape();
        let value = match node.tail(shape) {
            Tail::Str(len) => Value::Str(Bytes::copy_from_slice(node.string(shape, len))),
            // SAFETY: the pointer came from `Box::into_raw` in `build`; the node is not dropped
            // (`ManuallyDrop`), so the data is taken back exactly once, here.
            Tail::Data(data) => match *unsafe { Box::from_raw(data) } {
                Complex::Hash(fields) => Value::Hash(Box::new(fields)),
                Complex::Set(members) => Value::Set(Box::new(members)),
                Complex::Session(session) => Value::Session(Box::new(session)),
            },
        };
        let entry = Entry::new(value, node.expires_at_ms());
        // SAFETY: the block was allocated in `build` with this layout; nothing in it needs
        // dropping any more (the head is plain data, the data was taken above), and the node
        // is never used again.
        unsafe { alloc::dealloc(node.base(), shape.layout()) };
        entry
    }

    /// The memory this key is accounted for (`used_memory`, and what `--maxmemory` limits): its
    /// bytes plus fixed estimates of the structures around them. O(1): a hash's or a session's
    /// field bytes are a running total ([`Fields::data_bytes`]), not a walk.
    pub fn footprint(&self) -> u64 {
        self.footprint_and_is_session().0
    }

    /// [`Node::footprint`], and whether this is a session, from one look at the value: what the
    /// store's totals count on every write.
    #[inline]
    pub(super) fn footprint_and_is_session(&self) -> (u64, bool) {
        let fields = |fields: &Fields| -> u64 {
            fields.data_bytes() as u64 + fields.len() as u64 * FIELD_OVERHEAD
        };
        let (value, session) = match self.value() {
            ValueRef::Str(string) => (string.len() as u64, false),
            ValueRef::Hash(hash) => (COMPLEX_OVERHEAD + fields(hash), false),
            // A member's value is the empty static `Bytes`: no allocation, no bytes.
            ValueRef::Set(members) => (
                COMPLEX_OVERHEAD
                    + members.data_bytes() as u64
                    + members.len() as u64 * MEMBER_OVERHEAD,
                false,
            ),
            ValueRef::Session(session) => (
                COMPLEX_OVERHEAD
                    + fields(&session.fields)
                    + session.user.as_ref().map_or(0, |u| u.len() as u64),
                true,
            ),
        };
        (KEY_OVERHEAD + self.key().len() as u64 + value, session)
    }
}

/// A stored key as a command may change it: its value's data and its deadline, never its key
/// (the table found the node by the key's hash) nor the node itself (replacing is the store's
/// job, see `Store::upsert`). It reads as a [`Node`].
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
        let shape = self.shape();
        if let Tail::Data(data) = self.tail(shape) {
            // SAFETY: the pointer came from `Box::into_raw` in `build` and is taken back once,
            // here, as the node goes.
            drop(unsafe { Box::from_raw(data) });
        }
        // SAFETY: the block was allocated in `build` with exactly this layout (the lengths never
        // change after it), its head is plain data, and it is released once, here.
        unsafe { alloc::dealloc(self.base(), shape.layout()) };
    }
}

impl Clone for Node {
    fn clone(&self) -> Node {
        let value = match self.value() {
            ValueRef::Str(string) => Ok(string),
            ValueRef::Hash(fields) => Err(Box::new(Complex::Hash(fields.clone()))),
            ValueRef::Set(members) => Err(Box::new(Complex::Set(members.clone()))),
            ValueRef::Session(session) => Err(Box::new(Complex::Session(session.clone()))),
        };
        let mut node = Node::build(self.key(), value, self.expires_at_ms());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_a_thin_pointer_and_a_session_shaped_key_one_216_byte_block() {
        assert_eq!(std::mem::size_of::<Node>(), 8);
        assert_eq!(std::mem::size_of::<Option<Node>>(), 8);
        assert_eq!(HEAD, 16);
        let key = [b'k'; 37];
        let node = Node::new(&key, Entry::new(Value::Str(Bytes::from(vec![7; 160])), 1));
        assert_eq!(node.shape().layout().size(), 216);
        assert_eq!(
            (node.key(), node.value()),
            (&key[..], ValueRef::Str(&[7; 160]))
        );
    }

    #[test]
    fn a_varints_length_is_a_seventh_of_its_bits_rounded_up() {
        for bits in 0..=64u32 {
            let value = if bits == 0 { 0 } else { 1u64 << (bits - 1) };
            for value in [value, value.wrapping_mul(2).wrapping_sub(1)] {
                let used = (64 - (value | 1).leading_zeros()) as usize;
                assert_eq!(varint_len(value), used.div_ceil(7), "{value}");
            }
        }
    }

    #[test]
    fn lengths_of_every_size_are_written_and_read_back() {
        for (len, varint) in [(0, 1), (1, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3)] {
            assert_eq!(varint_len(len as u64), varint);
            let key = vec![b'k'; len];
            let string = Bytes::from(vec![b's'; len + 1]);
            let node = Node::new(&key, Entry::new(Value::Str(string.clone()), 3));
            assert_eq!(
                (node.key(), node.value()),
                (&key[..], ValueRef::Str(&string))
            );
            let mut fields = Fields::default();
            fields.insert(Bytes::from("f"), Bytes::from("v"));
            let node = Node::new(&key, Entry::new(Value::Hash(Box::new(fields.clone())), 4));
            assert_eq!(
                (node.key(), node.value()),
                (&key[..], ValueRef::Hash(&fields))
            );
            assert_eq!(
                node.shape().layout().size(),
                node.shape().value_at() + POINTER
            );
            assert_eq!(
                node.into_entry(),
                Entry::new(Value::Hash(Box::new(fields)), 4)
            );
        }
    }

    #[test]
    fn a_set_node_keeps_its_members_and_costs_a_fixed_amount_per_member() {
        let members =
            |n: usize| Fields::from_members((0..n).map(|i| Bytes::from(format!("{i:08}"))));
        let set = members(3);
        let node = Node::new(b"s", Entry::new(Value::Set(Box::new(set.clone())), 7));
        assert_eq!(node.value(), ValueRef::Set(&set));
        assert_eq!(node.value().type_name(), "set");
        assert!(!node.is_session());
        assert_eq!(node.clone().value(), ValueRef::Set(&set));
        assert_eq!(node.into_entry(), Entry::new(Value::Set(Box::new(set)), 7));

        // Bytes per member, as `used_memory` counts them: the member's bytes and
        // MEMBER_OVERHEAD (48: a slot of the fields' table and the member's allocation; the
        // empty value allocates nothing), against FIELD_OVERHEAD (64) plus the value's bytes
        // for a hash field.
        let footprint =
            |n: usize| Node::new(b"s", Entry::new(Value::Set(Box::new(members(n))), 0)).footprint();
        let per_member = (footprint(1_000) - footprint(0)) / 1_000;
        assert_eq!(per_member, 8 + MEMBER_OVERHEAD);
        assert_eq!(per_member, 56);
        // Empty values hold no bytes and share one static buffer.
        let set = members(2);
        assert_eq!(set.data_bytes(), 16);
        assert!(set.iter().all(|(_, value)| value.is_empty()));
    }

    #[test]
    fn a_session_node_is_a_session() {
        let record = SessionRecord {
            user: Some(Bytes::from("ada")),
            fields: Fields::default(),
            created_ms: 1,
            last_access_ms: 2,
            idle_ms: 3,
            absolute_ms: 4,
            version: 5,
        };
        let node = Node::new(
            b"s",
            Entry::new(Value::Session(Box::new(record.clone())), 0),
        );
        assert!(node.is_session());
        assert_eq!(node.as_session(), Some(&record));
        assert!(!Node::new(b"s", Entry::new(Value::Str(Bytes::new()), 0)).is_session());
        assert_eq!(
            node.clone().into_entry().value,
            Value::Session(Box::new(record))
        );
    }

    #[test]
    fn a_footprint_is_counted_without_walking_the_fields() {
        use crate::store::fields::WALKED;
        // Under Miri (.ci/run) fewer fields: enough that a walk would show.
        let count = if cfg!(miri) { 50 } else { 1_000u32 };
        let fields: Fields = (0..count)
            .map(|i| (Bytes::from(format!("f{i}")), Bytes::from(vec![b'v'; 10])))
            .collect();
        let data = fields.iter().map(|(f, v)| f.len() + v.len()).sum::<usize>() as u64;
        let session = SessionRecord {
            user: Some(Bytes::from("ada")),
            fields: fields.clone(),
            created_ms: 1,
            last_access_ms: 1,
            idle_ms: 1,
            absolute_ms: 1,
            version: 1,
        };
        let hash = Node::new(b"h", Entry::new(Value::Hash(Box::new(fields)), 0));
        let session = Node::new(b"s", Entry::new(Value::Session(Box::new(session)), 0));
        WALKED.with(|walked| walked.set(0));
        let per_field = u64::from(count) * FIELD_OVERHEAD + data;
        assert_eq!(
            hash.footprint(),
            KEY_OVERHEAD + 1 + COMPLEX_OVERHEAD + per_field
        );
        assert_eq!(
            session.footprint(),
            KEY_OVERHEAD + 1 + COMPLEX_OVERHEAD + per_field + 3
        );
        assert_eq!(
            session.as_session().map(|s| s.data_bytes() as u64),
            Some(data)
        );
        assert_eq!(
            WALKED.with(|walked| walked.get()),
            0,
            "no field was visited"
        );
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

    #[test]
    fn a_rekeyed_node_keeps_its_value_and_deadline_under_the_new_key() {
        let mut string = Node::new(b"old", Entry::new(Value::Str(Bytes::from("data")), 42));
        string.set_queued_tick(7);
        let moved = string.rekeyed(b"a much longer new key");
        assert_eq!(moved.key(), b"a much longer new key");
        assert_eq!(moved.value(), ValueRef::Str(b"data"));
        assert_eq!((moved.expires_at_ms(), moved.queued_tick()), (42, 0));
        let mut fields = Fields::default();
        fields.insert(Bytes::from("f"), Bytes::from("v"));
        let hash = Node::new(b"h", Entry::new(Value::Hash(Box::new(fields.clone())), 0));
        let moved = hash.rekeyed(b"");
        assert_eq!(
            (moved.key(), moved.value()),
            (&b""[..], ValueRef::Hash(&fields))
        );
        assert_eq!(moved.expires_at_ms(), 0);
    }
}
