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
