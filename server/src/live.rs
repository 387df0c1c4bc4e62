//! The settings `CONFIG SET` changes while the server runs: each held in an atomic that the
//! code using it reads once per use (a write command reads `maxmemory`, a read its client's
//! `timeout`), so that a change takes effect without a restart and costs the hot path no lock.
//! [`crate::config::Config`] keeps the values the server started with; for these settings,
//! read [`Live`] instead.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use crate::config::Config;
use crate::output_limit::{ClassLimit, OutputLimits};
use crate::store::evict::Policy;

/// The run-time settings, starting from the configuration.
#[derive(Debug)]
pub struct Live {
    maxmemory: AtomicU64,
    maxmemory_policy: AtomicU8,
    idle_timeout_ms: AtomicU64,
    maxclients: AtomicUsize,
    max_auth_failures: AtomicU32,
    busy_reply_threshold_ms: AtomicU64,
    session_idle_ms: AtomicU64,
    session_absolute_ms: AtomicU64,
    session_max_per_user: AtomicUsize,
    session_max_bytes: AtomicU64,
    /// `client-output-buffer-limit`'s normal, replica and pubsub classes.
    output_limits: [ClassSlot; 3],
}

/// One class of `client-output-buffer-limit`, field by field. A reader racing with CONFIG
/// SET may see some fields of the old limit and some of the new, each valid on its own.
#[derive(Debug)]
struct ClassSlot {
    hard_bytes: AtomicUsize,
    soft_bytes: AtomicUsize,
    soft_seconds: AtomicU64,
}

impl ClassSlot {
    fn new(limit: ClassLimit) -> ClassSlot {
        ClassSlot {
            hard_bytes: AtomicUsize::new(limit.hard_bytes),
            soft_bytes: AtomicUsize::new(limit.soft_bytes),
            soft_seconds: AtomicU64::new(limit.soft_seconds),
        }
    }

    #[inline]
    fn get(&self) -> ClassLimit {
        ClassLimit {
            hard_bytes: self.hard_bytes.load(Relaxed),
            soft_bytes: self.soft_bytes.load(Relaxed),
            soft_seconds: self.soft_seconds.load(Relaxed),
        }
    }

    fn set(&self, limit: ClassLimit) {
        self.hard_bytes.store(limit.hard_bytes, Relaxed);
        self.soft_bytes.store(limit.soft_bytes, Relaxed);
        self.soft_seconds.store(limit.soft_seconds, Relaxed);
    }
}

/// Milliseconds of a duration, saturating.
fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Live {
    /// The settings as `config` gives them.
    pub fn new(config: &Config) -> Live {
        Live {
            maxmemory: AtomicU64::new(config.maxmemory),
            maxmemory_policy: AtomicU8::new(policy_index(config.maxmemory_policy)),
            idle_timeout_ms: AtomicU64::new(config.idle_timeout.map_or(0, ms)),
            maxclients: AtomicUsize::new(config.maxclients),
            max_auth_failures: AtomicU32::new(config.max_auth_failures),
            busy_reply_threshold_ms: AtomicU64::new(ms(config.busy_reply_threshold)),
            session_idle_ms: AtomicU64::new(ms(config.session_idle)),
            session_absolute_ms: AtomicU64::new(ms(config.session_absolute)),
            session_max_per_user: AtomicUsize::new(config.session_max_per_user),
            session_max_bytes: AtomicU64::new(config.session_max_bytes),
            output_limits: [
                ClassSlot::new(config.output_limits.normal),
                ClassSlot::new(config.output_limits.replica),
                ClassSlot::new(config.output_limits.pubsub),
            ],
        }
    }

    /// Most bytes the keyspace may be accounted for; 0: no limit.
    #[inline]
    pub fn maxmemory(&self) -> u64 {
        self.maxmemory.load(Relaxed)
    }

    /// Sets `maxmemory`.
    pub fn set_maxmemory(&self, bytes: u64) {
        self.maxmemory.store(bytes, Relaxed);
    }

    /// What a write does at `maxmemory`.
    #[inline]
    pub fn maxmemory_policy(&self) -> Policy {
        let index = usize::from(self.maxmemory_policy.load(Relaxed));
        Policy::ALL.get(index).copied().unwrap_or_default()
    }

    /// Sets `maxmemory-policy`.
    pub fn set_maxmemory_policy(&self, policy: Policy) {
        self.maxmemory_policy.store(policy_index(policy), Relaxed);
    }

    /// How long a client may stay idle; `None`: for ever.
    #[inline]
    pub fn idle_timeout(&self) -> Option<Duration> {
        match self.idle_timeout_ms.load(Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Sets `timeout` (`None`: never).
    pub fn set_idle_timeout(&self, timeout: Option<Duration>) {
        self.idle_timeout_ms.store(timeout.map_or(0, ms), Relaxed);
    }

    /// Most simultaneous clients.
    pub fn maxclients(&self) -> usize {
        self.maxclients.load(Relaxed)
    }

    /// Sets `maxclients`; clients already connected stay.
    pub fn set_maxclients(&self, clients: usize) {
        self.maxclients.store(clients, Relaxed);
    }

    /// Failed authentications a connection may make before it is closed; 0: no limit.
    pub fn max_auth_failures(&self) -> u32 {
        self.max_auth_failures.load(Relaxed)
    }

    /// Sets `max-auth-failures`.
    pub fn set_max_auth_failures(&self, failures: u32) {
        self.max_auth_failures.store(failures, Relaxed);
    }

    /// How long a script runs before it is BUSY; zero: never.
    pub fn busy_reply_threshold(&self) -> Duration {
        Duration::from_millis(self.busy_reply_threshold_ms.load(Relaxed))
    }

    /// Sets `busy-reply-threshold` (`lua-time-limit`).
    pub fn set_busy_reply_threshold(&self, threshold: Duration) {
        self.busy_reply_threshold_ms.store(ms(threshold), Relaxed);
    }

    /// The default idle timeout of new sessions.
    pub fn session_idle(&self) -> Duration {
        Duration::from_millis(self.session_idle_ms.load(Relaxed))
    }

    /// Sets `session-idle`; sessions that exist keep theirs.
    pub fn set_session_idle(&self, idle: Duration) {
        self.session_idle_ms.store(ms(idle), Relaxed);
    }

    /// The default absolute timeout of new sessions.
    pub fn session_absolute(&self) -> Duration {
        Duration::from_millis(self.session_absolute_ms.load(Relaxed))
    }

    /// Sets `session-absolute`; sessions that exist keep theirs.
    pub fn set_session_absolute(&self, absolute: Duration) {
        self.session_absolute_ms.store(ms(absolute), Relaxed);
    }

    /// Most sessions per user; 0: no cap.
    pub fn session_max_per_user(&self) -> usize {
        self.session_max_per_user.load(Relaxed)
    }

    /// Sets `session-max-per-user`; it applies at a user's next new session.
    pub fn set_session_max_per_user(&self, cap: usize) {
        self.session_max_per_user.store(cap, Relaxed);
    }

    /// Most bytes of one session's data; 0: no limit.
    pub fn session_max_bytes(&self) -> u64 {
        self.session_max_bytes.load(Relaxed)
    }

    /// Sets `session-max-bytes`; it applies at the next SESSION.CREATE or SESSION.SET.
    pub fn set_session_max_bytes(&self, bytes: u64) {
        self.session_max_bytes.store(bytes, Relaxed);
    }
}

impl Live {
    /// The normal class of `client-output-buffer-limit`.
    #[inline]
    pub fn normal_output_limit(&self) -> ClassLimit {
        self.output_limits[0].get()
    }

    /// The pubsub class of `client-output-buffer-limit`.
    #[inline]
    pub fn pubsub_output_limit(&self) -> ClassLimit {
        self.output_limits[2].get()
    }

    /// Every class of `client-output-buffer-limit`.
    pub fn output_limits(&self) -> OutputLimits {
        OutputLimits {
            normal: self.output_limits[0].get(),
            replica: self.output_limits[1].get(),
            pubsub: self.output_limits[2].get(),
        }
    }

    /// Sets `client-output-buffer-limit`: connections are held to it from their next command;
    /// a subscriber keeps the pubsub limit it subscribed under.
    pub fn set_output_limits(&self, limits: OutputLimits) {
        self.output_limits[0].set(limits.normal);
        self.output_limits[1].set(limits.replica);
        self.output_limits[2].set(limits.pubsub);
    }
}

fn policy_index(policy: Policy) -> u8 {
    Policy::ALL
        .iter()
        .position(|&p| p == policy)
        .map_or(0, |i| i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_setting_reads_back_what_was_set() {
        let live = Live::new(&Config::default());
        assert_eq!(live.maxmemory_policy(), Policy::NoEviction);
        for policy in Policy::ALL {
            live.set_maxmemory_policy(policy);
            assert_eq!(live.maxmemory_policy(), policy);
        }
        assert_eq!(live.idle_timeout(), None);
        live.set_idle_timeout(Some(Duration::from_secs(3)));
        assert_eq!(live.idle_timeout(), Some(Duration::from_secs(3)));
        live.set_idle_timeout(None);
        assert_eq!(live.idle_timeout(), None);
        assert_eq!(live.session_idle(), Duration::from_secs(30 * 60));
        live.set_session_idle(Duration::from_millis(1500));
        assert_eq!(live.session_idle(), Duration::from_millis(1500));
    }
}
