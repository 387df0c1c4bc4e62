//! The keyspace's table: shards of open-addressing hash tables of [`Node`]s, each behind its own
//! reader-writer lock.
//!
//! A slot is the node's thin pointer (8 bytes and a control byte); the key lives in the node, so
//! a lookup compares against it there. A key's 64-bit hash picks its shard from bits the
//! table's own tag byte does not use (as dashmap does), so keys in one shard still differ in
//! their tags. The hash also names a key in the expiry index (`expiry.rs`) and orders SCAN.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;

use super::entry::Node;

/// One shard's table.
pub(crate) type Shard = HashTable<Node>;

/// A shard's lock on a cache line of its own, so that writers on different shards never share
/// one.
#[repr(align(64))]
#[derive(Debug, Default)]
struct Padded(RwLock<Shard>);

/// The sharded table.
#[derive(Debug)]
pub(crate) struct Table {
    hasher: ahash::RandomState,
    shards: Box<[Padded]>,
    shard_bits: u32,
}

impl Table {
    /// An empty table of `shards` shards, a power of two.
    pub fn new(shards: usize) -> Table {
        assert!(shards.is_power_of_two() && shards > 1);
        Table {
            hasher: ahash::RandomState::new(),
            shards: (0..shards).map(|_| Padded::default()).collect(),
            shard_bits: shards.trailing_zeros(),
        }
    }

    /// The hash of `key`.
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The shard a hash falls in. hashbrown takes its tag from the top 7 bits and the bucket
    /// from the low ones; the shard comes from the bits just below the tag.
    #[inline]
    pub fn shard_of(&self, hash: u64) -> usize {
        ((hash << 7) >> (64 - self.shard_bits)) as usize
    }

    /// The hash of `key` and the shard it falls in.
    #[inline]
    pub fn locate(&self, key: &[u8]) -> (u64, usize) {
        let hash = self.hash(key);
        (hash, self.shard_of(hash))
    }

    /// `hashes` reordered so that those of one shard are next to each other, in shard order (for
    /// more than a few, a counting sort: two passes over them).
    pub fn group_by_shard(&self, mut hashes: Vec<u64>) -> Vec<u64> {
        if hashes.len() <= 64 {
            // Fewer than a counting sort's table is worth.
            hashes.sort_unstable_by_key(|&hash| self.shard_of(hash));
            return hashes;
        }
        let mut starts = vec![0usize; self.shards.len() + 1];
        for &hash in &hashes {
            starts[self.shard_of(hash) + 1] += 1;
        }
        for shard in 1..starts.len() {
            starts[shard] += starts[shard - 1];
        }
        let mut grouped = vec![0; hashes.len()];
        for hash in hashes {
            let at = &mut starts[self.shard_of(hash)];
            grouped[*at] = hash;
            *at += 1;
        }
        grouped
    }

    /// The runs of hashes of one shard in `hashes` (grouped by [`Table::group_by_shard`]), each
    /// cut into pieces of at most `max`.
    pub fn shard_groups<'a>(
        &'a self,
        hashes: &'a [u64],
        max: usize,
    ) -> impl Iterator<Item = &'a [u64]> + 'a {
        hashes
            .chunk_by(|&a, &b| self.shard_of(a) == self.shard_of(b))
            .flat_map(move |run| run.chunks(max))
    }

    /// How many shards there are.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Shard `shard`, read-locked. A lock poisoned by a panic elsewhere is taken anyway: every
    /// change to a table is a single insertion, removal or in-place update of a node that is
    /// complete or not made.
    #[inline]
    pub fn read(&self, shard: usize) -> RwLockReadGuard<'_, Shard> {
        self.shards[shard]
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Shard `shard`, write-locked.
    #[inline]
    pub fn write(&self, shard: usize) -> RwLockWriteGuard<'_, Shard> {
        self.shards[shard]
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Shards `a` and `b` write-locked together (one lock when they are the same), for an
    /// operation that changes a key in each as one step. The lower index is always locked
    /// first, so two such operations never wait on each other.
    pub fn write_pair(&self, a: usize, b: usize) -> ShardPair<'_> {
        if a == b {
            return ShardPair {
                first: self.write(a),
                second: None,
            };
        }
        let (low, high) = (self.write(a.min(b)), self.write(a.max(b)));
        let (first, second) = if a < b { (low, high) } else { (high, low) };
        ShardPair {
            first,
            second: Some(second),
        }
    }

    /// The hasher a table needs when it grows: every node's key hashed again.
    #[inline]
    pub fn rehash(&self) -> impl Fn(&Node) -> u64 + '_ {
        move |node| self.hash(node.key())
    }

    /// Keys held in every shard (each shard read in turn).
    pub fn len(&self) -> usize {
        (0..self.shards.len()).map(|s| self.read(s).len()).sum()
    }
}

/// Two shards write-locked by [`Table::write_pair`].
pub(crate) struct ShardPair<'a> {
    first: RwLockWriteGuard<'a, Shard>,
    /// `None` when both are the same shard.
    second: Option<RwLockWriteGuard<'a, Shard>>,
}

impl ShardPair<'_> {
    /// The shard given first.
    pub fn first(&mut self) -> &mut Shard {
        &mut self.first
    }

    /// The shard given second (the first, when they are the same).
    pub fn second(&mut self) -> &mut Shard {
        match &mut self.second {
            Some(second) => second,
            None => &mut self.first,
        }
    }
}

/// The predicate that finds `key` in a table.
#[inline]
pub(crate) fn is(key: &[u8]) -> impl Fn(&Node) -> bool + '_ {
    move |node| node.key() == key
}

/// Asks the CPU for the first `lines` cache lines of every node in `shard` whose tag matches
/// `hash` (usually just the one key's), without reading any node: the slots are searched now,
/// the nodes arrive while the caller does other work.
pub(crate) fn prefetch(shard: &Shard, hash: u64, lines: usize) {
    for bucket in shard.iter_hash_buckets(hash) {
        if let Some(node) = shard.get_bucket(bucket) {
            node.prefetch(lines);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_and_tags_use_different_bits() {
        let table = Table::new(1024);
        assert_eq!(table.shard_of(u64::MAX), 1023);
        // The top 7 bits (the tag) do not change the shard.
        assert_eq!(table.shard_of(0xFE00_0000_0000_0000), 0);
        assert_eq!(table.shard_of(1 << 47), 1);
    }

    #[test]
    fn hashes_grouped_by_shard_come_in_runs_of_one_shard_cut_to_size() {
        let table = Table::new(1024);
        // Under Miri (.ci/run) fewer, still past the counting sort's threshold.
        let count = if cfg!(miri) { 500 } else { 5_000u64 };
        let hashes: Vec<u64> = (0..count)
            .map(|i| table.hash(&i.to_le_bytes()))
            .chain([7 << 47; 5])
            .collect();
        let grouped = table.group_by_shard(hashes.clone());
        let (mut sorted, mut expected) = (grouped.clone(), hashes);
        sorted.sort_unstable();
        expected.sort_unstable();
        assert_eq!(sorted, expected, "the same hashes");
        assert!(grouped.is_sorted_by_key(|&h| table.shard_of(h)));
        let groups: Vec<&[u64]> = table.shard_groups(&grouped, 3).collect();
        assert_eq!(groups.iter().map(|g| g.len()).sum::<usize>(), grouped.len());
        for group in &groups {
            assert!((1..=3).contains(&group.len()));
            assert!(group
                .iter()
                .all(|&h| table.shard_of(h) == table.shard_of(group[0])));
        }
        assert!(groups.iter().any(|g| g == &[7 << 47; 3]));
        assert!(table.group_by_shard(Vec::new()).is_empty());
        // A short list takes the plain sort, to the same order of shards.
        let short = table.group_by_shard(vec![u64::MAX, 1 << 47, 0]);
        assert!(short.is_sorted_by_key(|&h| table.shard_of(h)) && short.len() == 3);
    }

    #[test]
    fn a_pair_of_shards_hands_each_back_in_the_order_asked_and_one_once() {
        use crate::store::{Entry, Value};
        let table = Table::new(8);
        let node = |key: &[u8]| Node::new(key, Entry::new(Value::Str(Default::default()), 0));
        let mut pair = table.write_pair(5, 2);
        pair.first().insert_unique(1, node(b"five"), table.rehash());
        pair.second().insert_unique(2, node(b"two"), table.rehash());
        drop(pair);
        assert_eq!((table.read(5).len(), table.read(2).len()), (1, 1));
        let mut same = table.write_pair(3, 3);
        same.first().insert_unique(3, node(b"a"), table.rehash());
        assert_eq!(same.second().len(), 1, "the same shard, locked once");
    }
}
