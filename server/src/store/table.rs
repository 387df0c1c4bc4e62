//! The keyspace's table: shards of open-addressing hash tables of [`Node`]s, each behind its own
//! reader-writer lock.
//!
//! A slot is the node's thin pointer (8 bytes and a control byte); the key lives in the node, so
//! a lookup compares against it there. A key's 64-bit hash picks its shard from bits the
//! table's own tag byte does not use (as dashmap does), so keys in one shard still differ in
//! their tags. The hash also names a key in the expiry index (see [`super::expiry`]) and orders
//! SCAN.

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

/// The predicate that finds `key` in a table.
#[inline]
pub(crate) fn is(key: &[u8]) -> impl Fn(&Node) -> bool + '_ {
    move |node| node.key() == key
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
}
