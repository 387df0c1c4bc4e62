//! A hash's or a session's fields, with the bytes they hold kept as a running total.
//!
//! Every write to a key adjusts `used_memory` by the difference of its footprint before and
//! after, and a hash's or a session's footprint counts the bytes of its field names and values:
//! summed by a walk, a write to a large hash would cost two walks of all its fields. [`Fields`]
//! therefore keeps the sum beside the map, updated by every insertion and removal.
//! The map is private and no method hands out a mutable value, so nothing can change a field
//! without the total following.

use std::borrow::Borrow;
use std::cell::{Cell, RefCell};
use std::collections::hash_map::{self, HashMap};
use std::hash::Hash;

use bytes::Bytes;

/// Field names to values, and the bytes they hold.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    map: HashMap<Bytes, Bytes, ahash::RandomState>,
    /// The sum of the lengths of every field name and value in `map`.
    bytes: usize,
}

#[cfg(test)]
thread_local! {
    /// Fields visited by walks ([`Fields::iter`] and the like) on this thread, so that tests
    /// can tell that a path does not walk.
    pub(crate) static WALKED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts a walk of `len` fields (tests only).
#[inline]
fn walked(len: usize) {
    #[cfg(test)]
    WALKED.with(|walked| walked.set(walked.get() + len));
    #[cfg(not(test))]
    let _ = len;
}

thread_local! {
    /// Whether [`Fields`] report the names they change on this thread (a change in place to a
    /// hash or a set while the change feed is on: the feed records the change, not the key).
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static TOUCHED: RefCell<Vec<Bytes>> = const { RefCell::new(Vec::new()) };
}

/// Starts reporting the names that [`Fields`] change on this thread (see [`take_touched`]).
#[inline]
pub(crate) fn track_touched() {
    TOUCHED.with(|touched| touched.borrow_mut().clear());
    TRACKING.with(|tracking| tracking.set(true));
}

/// Stops reporting, and returns the names changed since [`track_touched`].
#[inline]
pub(crate) fn take_touched() -> Vec<Bytes> {
    TRACKING.with(|tracking| tracking.set(false));
    TOUCHED.with(|touched| std::mem::take(&mut *touched.borrow_mut()))
}

/// `name` was set or removed: reported while tracking (a thread-local load otherwise).
#[inline]
fn touched(name: &Bytes) {
    if TRACKING.with(Cell::get) {
        TOUCHED.with(|touched| touched.borrow_mut().push(name.clone()));
    }
}

impl Fields {
    /// Sets `field` to `value`; returns the value it replaces, if any.
    pub fn insert(&mut self, field: Bytes, value: Bytes) -> Option<Bytes> {
        touched(&field);
        let added = field.len() + value.len();
        let field_len = field.len();
        let old = self.map.insert(field, value);
        self.bytes += added;
        if let Some(old) = &old {
            // The map keeps its key, which equals (so is as long as) `field`.
            self.bytes -= field_len + old.len();
        }
        old
    }

    /// Removes `field`; returns its value, if it was there.
    pub fn remove<Q>(&mut self, field: &Q) -> Option<Bytes>
    where
        Bytes: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (field, value) = self.map.remove_entry(field)?;
        touched(&field);
        self.bytes -= field.len() + value.len();
        Some(value)
    }

    /// The value of `field`.
    pub fn get<Q>(&self, field: &Q) -> Option<&Bytes>
    where
        Bytes: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(field)
    }

    /// Whether `field` is set.
    pub fn contains_key<Q>(&self, field: &Q) -> bool
    where
        Bytes: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.contains_key(field)
    }

    /// How many fields there are.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The bytes of every field name and value, summed (kept, not counted).
    pub fn data_bytes(&self) -> usize {
        self.bytes
    }

    /// The fields and their values, in no particular order.
    pub fn iter(&self) -> hash_map::Iter<'_, Bytes, Bytes> {
        walked(self.map.len());
        self.map.iter()
    }

    /// The field names.
    pub fn keys(&self) -> hash_map::Keys<'_, Bytes, Bytes> {
        walked(self.map.len());
        self.map.keys()
    }

    /// The values.
    pub fn values(&self) -> hash_map::Values<'_, Bytes, Bytes> {
        walked(self.map.len());
        self.map.values()
    }
}

/// Sets keep their members as the names of a [`Fields`] whose values are all the empty static
/// `Bytes` (no allocation): the hashes' representation, running total and footprint, reused.
impl Fields {
    /// A set of `members` (duplicates count once).
    pub fn from_members(members: impl IntoIterator<Item = Bytes>) -> Fields {
        let mut set = Fields::default();
        for member in members {
            set.insert_member(member);
        }
        set
    }

    /// Adds `member` to a set; whether it was new.
    pub fn insert_member(&mut self, member: Bytes) -> bool {
        self.insert(member, Bytes::new()).is_none()
    }

    /// The member at position `n` of the iteration order (O(n): a walk).
    pub fn nth_key(&self, n: usize) -> Option<&Bytes> {
        walked(n);
        self.map.keys().nth(n)
    }

    /// One step of SSCAN: the members whose scan position (a hash, stable for the process) is
    /// at least `cursor`, the `count` lowest of them (members sharing the last position come
    /// too), and the cursor of the next step (0: done). Positions are hashes, not places in
    /// the map, so a member present throughout an iteration is returned exactly once however
    /// the map grows or shrinks between steps. One step walks the whole set (twice) but
    /// holds at most `count` positions.
    pub fn scan_keys(&self, cursor: u64, count: usize) -> (u64, Vec<&Bytes>) {
        let count = count.max(1);
        walked(self.map.len() * 2);
        let mut lowest = std::collections::BinaryHeap::with_capacity(count.min(self.map.len()));
        for member in self.map.keys() {
            let position = scan_position(member);
            if position < cursor {
                continue;
            }
            if lowest.len() < count {
                lowest.push(position);
            } else if lowest.peek().is_some_and(|&top| position < top) {
                lowest.pop();
                lowest.push(position);
            }
        }
        let last = match lowest.peek() {
            Some(&last) if lowest.len() == count => last,
            // Fewer than `count` left: this step takes them all.
            _ => u64::MAX,
        };
        let members = self
            .map
            .keys()
            .filter(|member| (cursor..=last).contains(&scan_position(member)))
            .collect();
        (last.checked_add(1).unwrap_or(0), members)
    }
}

/// A member's SSCAN position: its hash under one hasher per process, so that cursors stay
/// valid from one step to the next.
fn scan_position(member: &[u8]) -> u64 {
    static STATE: std::sync::OnceLock<ahash::RandomState> = std::sync::OnceLock::new();
    STATE.get_or_init(ahash::RandomState::new).hash_one(member)
}

impl PartialEq for Fields {
    fn eq(&self, other: &Fields) -> bool {
        // The totals follow from the maps.
        self.map == other.map
    }
}

impl Eq for Fields {}

impl FromIterator<(Bytes, Bytes)> for Fields {
    fn from_iter<I: IntoIterator<Item = (Bytes, Bytes)>>(pairs: I) -> Fields {
        let mut fields = Fields::default();
        fields.extend(pairs);
        fields
    }
}

impl Extend<(Bytes, Bytes)> for Fields {
    fn extend<I: IntoIterator<Item = (Bytes, Bytes)>>(&mut self, pairs: I) {
        for (field, value) in pairs {
            self.insert(field, value);
        }
    }
}

impl IntoIterator for Fields {
    type Item = (Bytes, Bytes);
    type IntoIter = hash_map::IntoIter<Bytes, Bytes>;

    fn into_iter(self) -> Self::IntoIter {
        self.map.into_iter()
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = (&'a Bytes, &'a Bytes);
    type IntoIter = hash_map::Iter<'a, Bytes, Bytes>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The total, counted the slow way (without counting the walk).
    fn recount(fields: &Fields) -> usize {
        fields.map.iter().map(|(f, v)| f.len() + v.len()).sum()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, usize),
        Remove(u8),
        Extend(Vec<(u8, usize)>),
        Clone,
        Collect,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<u8>(), 0..40usize).prop_map(|(f, v)| Op::Insert(f, v)),
            2 => any::<u8>().prop_map(Op::Remove),
            1 => prop::collection::vec((any::<u8>(), 0..40usize), 0..8).prop_map(Op::Extend),
            1 => Just(Op::Clone),
            1 => Just(Op::Collect),
        ]
    }

    /// A field name of a length that depends on `f`, so that names differ in length too.
    fn name(f: u8) -> Bytes {
        let mut name = vec![b'f'; usize::from(f % 16)];
        name.push(f);
        Bytes::from(name)
    }

    proptest! {
        #[test]
        fn the_total_equals_a_recount_after_every_change(ops in prop::collection::vec(op(), 1..200)) {
            let mut fields = Fields::default();
            for op in ops {
                match op {
                    Op::Insert(f, v) => {
                        // A new field, or a replaced value of another length.
                        fields.insert(name(f), Bytes::from(vec![b'v'; v]));
                    }
                    Op::Remove(f) => {
                        fields.remove(&name(f)[..]);
                    }
                    Op::Extend(pairs) => fields.extend(
                        pairs.into_iter().map(|(f, v)| (name(f), Bytes::from(vec![b'w'; v]))),
                    ),
                    Op::Clone => fields = fields.clone(),
                    Op::Collect => fields = fields.clone().into_iter().collect(),
                }
                prop_assert_eq!(fields.data_bytes(), recount(&fields));
            }
        }
    }

    #[test]
    fn replacing_and_removing_adjust_the_total() {
        let mut fields = Fields::default();
        assert_eq!(fields.insert(Bytes::from("ab"), Bytes::from("cde")), None);
        assert_eq!(fields.data_bytes(), 5);
        let old = fields.insert(Bytes::from("ab"), Bytes::from("x"));
        assert_eq!(old, Some(Bytes::from("cde")));
        assert_eq!(fields.data_bytes(), 3);
        assert_eq!(fields.remove(&b"zz"[..]), None);
        assert_eq!(fields.remove(&b"ab"[..]), Some(Bytes::from("x")));
        assert_eq!((fields.data_bytes(), fields.len()), (0, 0));
    }

    #[test]
    fn a_scan_returns_every_member_present_throughout_exactly_once() {
        let member = |i: u32| Bytes::from(format!("m{i}"));
        let mut set = Fields::from_members((0..500).map(member));
        let mut seen = std::collections::HashMap::new();
        let (mut cursor, mut steps) = (0, 0);
        loop {
            let (next, members) = set.scan_keys(cursor, 7);
            assert!(members.len() >= 7 || next == 0);
            for m in members {
                *seen.entry(m.clone()).or_insert(0) += 1;
            }
            // Between steps, the set grows past a resize and loses members.
            set.insert_member(member(1_000 + steps));
            set.remove(&member(400 + steps % 100)[..]);
            steps += 1;
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        for i in 0..400 {
            assert_eq!(seen.get(&member(i)), Some(&1), "member {i}");
        }
        assert!(seen.values().all(|&times| times == 1));
        // A set of at most COUNT members takes one step.
        let small = Fields::from_members((0..5).map(member));
        let (next, all) = small.scan_keys(0, 10);
        assert_eq!((next, all.len()), (0, 5));
    }

    #[test]
    fn members_have_empty_values_and_count_their_bytes() {
        let mut set = Fields::default();
        assert!(set.insert_member(Bytes::from("abc")));
        assert!(!set.insert_member(Bytes::from("abc")));
        assert!(set.insert_member(Bytes::from("")));
        assert_eq!((set.len(), set.data_bytes()), (2, 3));
        assert!(set.nth_key(1).is_some() && set.nth_key(2).is_none());
    }
}
