//! Walking one shard of the map, for SCAN, KEYS, snapshots and eviction samples.
//!
//! dashmap offers no way to iterate a single shard except through its raw table, whose iterator
//! is `unsafe` only because the caller must keep the table alive and unmodified while iterating.
//! Holding the shard's read guard for the whole walk guarantees both; this is the crate's only
//! `unsafe`, kept to this one function.
#![allow(unsafe_code)]

use bytes::Bytes;
use dashmap::DashMap;

use super::Entry;

/// Calls `visit` with every key and entry of shard `shard`, under its read lock.
pub(super) fn for_each_in_shard<S>(
    map: &DashMap<Bytes, Entry, S>,
    shard: usize,
    mut visit: impl FnMut(&Bytes, &Entry),
) where
    S: std::hash::BuildHasher + Clone,
{
    let Some(lock) = map.shards().get(shard) else {
        return;
    };
    let table = lock.read();
    // SAFETY: `table` is a read guard on the shard, held until the end of this function, so the
    // raw table outlives the iterator and no writer can resize or modify it meanwhile; every
    // bucket the iterator yields is full, which is what `as_ref` requires.
    unsafe {
        for bucket in table.iter() {
            let (key, value) = bucket.as_ref();
            visit(key, value.get());
        }
    }
}

/// Calls `visit` with the keys and entries of shard `shard` from the `skip`-th on, wrapping
/// around to the first, under its read lock, until it has returned true `take` times or every
/// entry has been seen (eviction samples).
pub(super) fn sample_shard<S>(
    map: &DashMap<Bytes, Entry, S>,
    shard: usize,
    skip: usize,
    take: usize,
    mut visit: impl FnMut(&Bytes, &Entry) -> bool,
) where
    S: std::hash::BuildHasher + Clone,
{
    let Some(lock) = map.shards().get(shard) else {
        return;
    };
    let table = lock.read();
    let mut taken = 0;
    // SAFETY: as in `for_each_in_shard`: the read guard outlives the iterator and keeps the
    // table unmodified, and every yielded bucket is full.
    unsafe {
        for bucket in table.iter().skip(skip).chain(table.iter().take(skip)) {
            let (key, value) = bucket.as_ref();
            if visit(key, value.get()) {
                taken += 1;
                if taken == take {
                    return;
                }
            }
        }
    }
}

/// The number of keys in shard `shard`.
pub(super) fn shard_len<S>(map: &DashMap<Bytes, Entry, S>, shard: usize) -> usize
where
    S: std::hash::BuildHasher + Clone,
{
    map.shards().get(shard).map_or(0, |lock| lock.read().len())
}
