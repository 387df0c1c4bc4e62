//! The one source of time: wall-clock Unix milliseconds for deadlines.
//!
//! Production uses [`Clock::system`]. Tests use [`Clock::manual`] and move time with
//! [`ManualClock::advance`], so expiry is tested without sleeping; the active expiry task is woken
//! whenever the manual clock moves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

/// A clock shared by everything that reads the time.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<ManualClock>>,
}

impl Clock {
    /// The operating system's wall clock.
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that only moves when told, starting at `start_ms`.
    pub fn manual(start_ms: u64) -> (Clock, Arc<ManualClock>) {
        let manual = Arc::new(ManualClock {
            now_ms: AtomicU64::new(start_ms),
            moved: Notify::new(),
        });
        (
            Clock {
                manual: Some(manual.clone()),
            },
            manual,
        )
    }

    /// Now, in Unix milliseconds.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        match &self.manual {
            None => system_now_ms(),
            Some(manual) => manual.now_ms.load(Ordering::Acquire),
        }
    }

    /// Resolves when a manual clock moves; never for the system clock.
    pub async fn moved(&self) {
        match &self.manual {
            Some(manual) => manual.moved.notified().await,
            None => std::future::pending().await,
        }
    }
}

fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The time for a connection's pipelined commands: one reading of the clock serves up to
/// [`BatchClock::REUSE`] commands of one batch (the commands one read brought), so a pipeline
/// of GETs reads the clock once, not once per GET, whose CPU it would take a visible share of.
/// The connection marks the reading [`stale`](BatchClock::stale) when a read brings a new batch
/// and after anything it waits for, and `cmd::execute` after any command that may take long:
/// one neither `fast` nor `denyoom`, or one with more arguments, or more bytes of arguments and
/// reply, than `cmd::Work`'s `SHORT_ARGS` and `SHORT_BYTES` (a huge MGET, a GET of a huge
/// value). So no command sees a time older than the start of its batch plus the run time of at
/// most `REUSE - 1` short commands before it.
#[derive(Debug, Default)]
pub struct BatchClock {
    now_ms: u64,
    left: u8,
}

impl BatchClock {
    /// Commands one reading serves.
    pub const REUSE: u8 = 16;

    /// Now, in Unix milliseconds: the last reading of `clock`, or a new one.
    #[inline]
    pub fn now_ms(&mut self, clock: &Clock) -> u64 {
        if self.left == 0 {
            self.now_ms = clock.now_ms();
            self.left = Self::REUSE;
        }
        self.left -= 1;
        self.now_ms
    }

    /// The last reading, if the next command would still use it (not [`BatchClock::stale`]).
    #[inline]
    pub fn last_ms(&self) -> Option<u64> {
        (self.left != 0).then_some(self.now_ms)
    }

    /// The next command reads the clock afresh.
    #[inline]
    pub fn stale(&mut self) {
        self.left = 0;
    }
}

/// The handle a test uses to move a manual [`Clock`].
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicU64,
    moved: Notify,
}

impl ManualClock {
    /// Moves the clock forward by `ms` and wakes whoever waits on it.
    pub fn advance(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::AcqRel);
        self.moved.notify_waiters();
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reading_serves_reuse_commands_then_is_read_again() {
        let (clock, manual) = Clock::manual(1_000);
        let mut batch = BatchClock::default();
        assert_eq!(batch.now_ms(&clock), 1_000);
        manual.advance(5);
        for _ in 1..BatchClock::REUSE {
            assert_eq!(batch.now_ms(&clock), 1_000, "within one reading's reuse");
        }
        assert_eq!(batch.now_ms(&clock), 1_005, "the reading is used up");
        manual.advance(5);
        batch.stale();
        assert_eq!(
            batch.now_ms(&clock),
            1_010,
            "a stale reading is replaced at once"
        );
    }
}
