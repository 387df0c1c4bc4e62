//! Walking one shard of the map, for SCAN.
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
