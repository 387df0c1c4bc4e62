//! Server-wide counters for INFO stats.
//!
//! Connections count commands, hits and bytes locally and add them here once per batch of
//! pipelined commands, so the shared cache lines are touched once per read, not per command.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters since start.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections_received: AtomicU64,
    /// Connections refused at `maxclients`.
    pub rejected_connections: AtomicU64,
    /// Commands executed.
    pub commands_processed: AtomicU64,
    /// Reads that found their key.
    pub keyspace_hits: AtomicU64,
    /// Reads that did not.
    pub keyspace_misses: AtomicU64,
    /// Bytes read from clients.
    pub net_input_bytes: AtomicU64,
    /// Bytes written to clients.
    pub net_output_bytes: AtomicU64,
    /// Connections closed for a protocol error.
    pub protocol_errors: AtomicU64,
    /// Failed AUTH / HELLO AUTH attempts.
    pub auth_failures: AtomicU64,
    /// Commands refused because the user may not run them.
    pub acl_denied_commands: AtomicU64,
    /// Commands refused because the user may not touch one of their keys.
    pub acl_denied_keys: AtomicU64,
    /// Connections closed for breaking a limit before authenticating.
    pub unauthenticated_limit_disconnections: AtomicU64,
    /// Connections closed by `--timeout`.
    pub idle_timeouts: AtomicU64,
    /// Connections closed for not reading their replies.
    pub output_limit_disconnections: AtomicU64,
    /// Connections to the TLS port closed because the handshake failed (plaintext, no or a
    /// bad client certificate, a timeout).
    pub tls_handshake_failures: AtomicU64,
}

/// A connection's counts since its last flush into [`Stats`].
#[derive(Debug, Default)]
pub struct LocalStats {
    /// Commands executed.
    pub commands: u64,
    /// Keyspace hits.
    pub hits: u64,
    /// Keyspace misses.
    pub misses: u64,
    /// Bytes read.
    pub input_bytes: u64,
    /// Bytes written.
    pub output_bytes: u64,
}

impl Stats {
    /// Adds `local` into the totals and resets it.
    pub fn absorb(&self, local: &mut LocalStats) {
        let add = |counter: &AtomicU64, value: u64| {
            if value > 0 {
                counter.fetch_add(value, Ordering::Relaxed);
            }
        };
        add(&self.commands_processed, local.commands);
        add(&self.keyspace_hits, local.hits);
        add(&self.keyspace_misses, local.misses);
        add(&self.net_input_bytes, local.input_bytes);
        add(&self.net_output_bytes, local.output_bytes);
        *local = LocalStats::default();
    }

    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// A counter that many threads add to without sharing a cache line: each thread adds to its own
/// stripe, and a read sums the stripes. For counts taken on every write (changes since the last
/// snapshot), where one shared atomic would bounce between cores.
#[derive(Debug, Default)]
pub struct StripedCounter {
    stripes: [Stripe; STRIPES],
}

const STRIPES: usize = 16;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Stripe(AtomicU64);

thread_local! {
    static STRIPE: usize = {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) as usize % STRIPES
    };
}

impl StripedCounter {
    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        let stripe = STRIPE.with(|s| *s);
        self.stripes[stripe].0.fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts `n`, for a counter used as a gauge: a stripe may wrap below zero, the sum of
    /// all of them does not as long as the gauge itself does not.
    #[inline]
    pub fn sub(&self, n: u64) {
        let stripe = STRIPE.with(|s| *s);
        self.stripes[stripe].0.fetch_sub(n, Ordering::Relaxed);
    }

    /// The total.
    pub fn sum(&self) -> u64 {
        self.stripes
            .iter()
            .fold(0u64, |sum, s| sum.wrapping_add(s.0.load(Ordering::Relaxed)))
    }
}
