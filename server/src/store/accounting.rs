//! The store's running totals over its keys — `used_memory`, the keys with a deadline, the live
//! sessions — and the one function that changes them.
//!
//! Every mutation states what the keys it touched counted for before and after it ([`Tally`])
//! and calls [`Store::account`]; nothing else writes these three counters, so they always equal
//! a recount of the keyspace. The activity counters (changes, expired, evicted, sessions created
//! or destroyed) are not totals over the keys and stay with the operations that count them.

use std::sync::atomic::Ordering;

use super::entry::Node;
use super::Store;

/// What some keys count for in the store's totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Their footprint in `used_memory` ([`Node::footprint`]).
    pub(crate) bytes: u64,
    /// How many of them have a deadline.
    pub(crate) volatile: u64,
    /// How many of them are sessions.
    pub(crate) sessions: u64,
}

impl Tally {
    /// No key at all.
    pub(crate) const NOTHING: Tally = Tally {
        bytes: 0,
        volatile: 0,
        sessions: 0,
    };

    /// What `node` counts for.
    #[inline]
    pub(crate) fn of(node: &Node) -> Tally {
        let (bytes, session) = node.footprint_and_is_session();
        Tally {
            bytes,
            volatile: u64::from(node.expires_at_ms() != 0),
            sessions: u64::from(session),
        }
    }

    /// Adds `node` to this sum.
    #[inline]
    pub(crate) fn add(&mut self, node: &Node) {
        let one = Tally::of(node);
        self.bytes += one.bytes;
        self.volatile += one.volatile;
        self.sessions += one.sessions;
    }
}

impl Store {
    /// Moves the totals from what some keys counted for (`before`; [`Tally::NOTHING`] for keys
    /// just created) to what they count for now (`after`; [`Tally::NOTHING`] for keys removed).
    /// The one place `used_memory` and the volatile and live-session counts change; it touches
    /// only the counters that differ (the used bytes, striped, always), without allocating.
    #[inline]
    pub(super) fn account(&self, before: Tally, after: Tally) {
        if after.bytes >= before.bytes {
            self.used.add(after.bytes - before.bytes);
        } else {
            self.used.sub(before.bytes - after.bytes);
        }
        if after.volatile != before.volatile {
            // Two's complement: the wrapped difference is the signed change.
            let change = after.volatile.wrapping_sub(before.volatile) as i64;
            self.volatile.fetch_add(change, Ordering::Relaxed);
        }
        if after.sessions != before.sessions {
            let change = after.sessions.wrapping_sub(before.sessions) as i64;
            self.sessions.live.fetch_add(change, Ordering::Relaxed);
        }
    }
}
