//! Server-wide counters for INFO stats.
//!
//! Connections count commands, hits and bytes locally and add them here once per batch of
//! pipelined commands, into their thread's stripe: a thread's additions touch a cache line of
//! its own, once per read, not per command, and INFO sums the stripes.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::process::{clock_ticks, lap};

use crate::slowlog::ArgCopy;
use commands::{CommandStats, Tally};

pub mod commands;

/// Counters since start.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections_received: AtomicU64,
    /// Connections refused at `maxclients`.
    pub rejected_connections: AtomicU64,
    /// Commands, hits, misses and bytes, per thread stripe.
    traffic: [TrafficStripe; STRIPES],
    /// Connections closed for a protocol error.
    pub protocol_errors: AtomicU64,
    /// Failed AUTH / HELLO AUTH attempts.
    pub auth_failures: AtomicU64,
    /// Connections closed after `--max-auth-failures` failed authentications.
    pub auth_failure_disconnections: AtomicU64,
    /// Connections closed for not authenticating within `--auth-timeout`.
    pub auth_timeouts: AtomicU64,
    /// Commands refused because the user may not run them.
    pub acl_denied_commands: AtomicU64,
    /// Commands refused because the user may not touch one of their keys.
    pub acl_denied_keys: AtomicU64,
    /// Commands refused for a channel the user may not use (`acl_access_denied_channel`).
    pub acl_denied_channels: AtomicU64,
    /// Connections closed for breaking a limit before authenticating.
    pub unauthenticated_limit_disconnections: AtomicU64,
    /// Connections closed by `--timeout`.
    pub idle_timeouts: AtomicU64,
    /// Connections closed for their output buffer limits (`client-output-buffer-limit`, or
    /// the cap of a client not yet authenticated).
    pub client_output_buffer_limit_disconnections: AtomicU64,
    /// Connections to the TLS port closed because the handshake failed (plaintext, no or a
    /// bad client certificate, a timeout).
    pub tls_handshake_failures: AtomicU64,
    /// Per-command calls, time, failures and latency, and error replies by prefix.
    pub commands: CommandStats,
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
    /// Calls and time per command.
    pub tally: Tally,
    /// When the command about to run started, in [`clock_ticks`]: the end of the one before,
    /// or the start of its group ([`LocalStats::start_timing`]); one clock reading per command.
    /// 0: never started.
    pub mark_ticks: u64,
    /// The arguments of the command running, as the slow log would show them.
    pub args: ArgCopy,
}

impl LocalStats {
    /// Starts timing the next command now: at the start of a group of commands, and after
    /// the connection waited for something that is not the command's doing.
    #[inline]
    pub fn start_timing(&mut self) {
        self.mark_ticks = clock_ticks();
    }

    /// The time since the mark, in nanoseconds, moving the mark to now.
    #[inline]
    pub fn lap_nanos(&mut self) -> u64 {
        // Never started (a caller that runs one command alone): no time.
        let (now, since) = lap(self.mark_ticks);
        self.mark_ticks = now;
        since
    }
}

/// One thread stripe of the per-command counters, on a cache line of its own.
#[derive(Debug, Default)]
#[repr(align(64))]
struct TrafficStripe {
    commands: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    input_bytes: AtomicU64,
    output_bytes: AtomicU64,
}

/// The per-command counters, summed over the stripes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Commands executed.
    pub commands: u64,
    /// Reads that found their key.
    pub hits: u64,
    /// Reads that did not.
    pub misses: u64,
    /// Bytes read from clients.
    pub input_bytes: u64,
    /// Bytes written to clients.
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
        let stripe = &self.traffic[STRIPE.with(|s| *s)];
        add(&stripe.commands, local.commands);
        add(&stripe.hits, local.hits);
        add(&stripe.misses, local.misses);
        add(&stripe.input_bytes, local.input_bytes);
        add(&stripe.output_bytes, local.output_bytes);
        local.commands = 0;
        local.hits = 0;
        local.misses = 0;
        local.input_bytes = 0;
        local.output_bytes = 0;
        self.commands.absorb(&mut local.tally);
    }

    /// The per-command counters since start.
    pub fn traffic(&self) -> Traffic {
        let sum = |counter: fn(&TrafficStripe) -> &AtomicU64| {
            self.traffic
                .iter()
                .map(|stripe| counter(stripe).load(Ordering::Relaxed))
                .sum()
        };
        Traffic {
            commands: sum(|s| &s.commands),
            hits: sum(|s| &s.hits),
            misses: sum(|s| &s.misses),
            input_bytes: sum(|s| &s.input_bytes),
            output_bytes: sum(|s| &s.output_bytes),
        }
    }

    /// Zeroes what CONFIG RESETSTAT resets: the counters of INFO stats and the per-command
    /// statistics (not the gauges, nor `connected_clients`).
    pub fn reset(&self) {
        for counter in [
            &self.connections_received,
            &self.rejected_connections,
            &self.protocol_errors,
            &self.auth_failures,
            &self.auth_failure_disconnections,
            &self.auth_timeouts,
            &self.acl_denied_commands,
            &self.acl_denied_keys,
            &self.acl_denied_channels,
            &self.unauthenticated_limit_disconnections,
            &self.idle_timeouts,
            &self.client_output_buffer_limit_disconnections,
            &self.tls_handshake_failures,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        for stripe in &self.traffic {
            for counter in [
                &stripe.commands,
                &stripe.hits,
                &stripe.misses,
                &stripe.input_bytes,
                &stripe.output_bytes,
            ] {
                counter.store(0, Ordering::Relaxed);
            }
        }
        self.commands.reset();
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

/// Stripes of a striped counter; threads share them round-robin.
pub(crate) const STRIPES: usize = 16;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Stripe(AtomicU64);

thread_local! {
    static STRIPE: usize = {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) as usize % STRIPES
    };
}

/// The calling thread's stripe, below [`STRIPES`].
#[inline]
pub(crate) fn this_threads_stripe() -> usize {
    STRIPE.with(|s| *s)
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
