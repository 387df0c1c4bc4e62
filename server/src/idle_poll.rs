//! Idle polling: a single-threaded server that has just served requests keeps polling its
//! sockets for a short while (`--idle-poll-us`) before it sleeps in the kernel.
//!
//! A request that reaches a sleeping server costs twice: the client's `send` has to wake the
//! server's thread (the scheduler, often an interrupt to the other core), and the server's reply
//! waits for that thread to be scheduled. Under steady traffic the gaps between requests are a
//! few microseconds, so a server that looks again before sleeping rarely sleeps at all (the
//! Seastar reactor's `--idle-poll-time-us` and Go's spinning threads do the same). The price is
//! CPU: after the last request the thread stays busy for the window, then sleeps until the next;
//! an idle server costs nothing.
//!
//! Only a current-thread runtime polls: there, one task that yields to the scheduler makes it
//! look at the sockets without blocking (`epoll_wait` with a zero timeout) instead of sleeping.
//! A multi-thread runtime's workers hand the sockets to whichever of them sleeps, which such a
//! task cannot reach.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

thread_local! {
    static POLLER: Poller = const {
        Poller {
            activity: Cell::new(0),
            asleep: Cell::new(false),
            running: Cell::new(false),
            waker: RefCell::new(None),
        }
    };
}

/// The state of the poller of the runtime on this thread (none on most threads).
struct Poller {
    /// Reads by connections on this thread; the poller stops after a window without one.
    activity: Cell<u64>,
    /// Whether the poller waits for the next read to start polling again.
    asleep: Cell<bool>,
    /// Whether a poller runs on this thread (two servers on one runtime share one).
    running: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// Called by a connection that has read from its socket: keeps this thread's poller polling, or
/// wakes it. A counter increment on threads without a poller.
#[inline]
pub fn note_activity() {
    POLLER.with(|poller| {
        poller.activity.set(poller.activity.get().wrapping_add(1));
        if poller.asleep.replace(false) {
            let waker = poller.waker.borrow_mut().take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    });
}

/// Whether `window` of idle polling applies to the runtime this is called on: a current-thread
/// runtime, a window above zero, and a core to spare (on a single core, polling would take the
/// CPU from the clients whose requests it waits for).
pub fn applies(window: Duration) -> bool {
    !window.is_zero()
        && tokio::runtime::Handle::try_current().is_ok_and(|handle| {
            handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread
        })
        && std::thread::available_parallelism().is_ok_and(|cores| cores.get() > 1)
}

/// The poller: spawned on a current-thread runtime (see [`applies`]), it runs until dropped
/// (aborted). It sleeps until a connection reads, then keeps the runtime polling until `window`
/// passes without a read. A second poller on the same thread (a second server on the same
/// runtime) returns at once: the first serves every connection on the thread while it runs;
/// once it stops, the other server's connections go without polling (slower, never stuck).
pub(crate) async fn run(window: Duration) {
    if POLLER.with(|poller| poller.running.replace(true)) {
        return;
    }
    // Dropped with the task: the thread's state is left as if no poller had run.
    struct Stopped;
    impl Drop for Stopped {
        fn drop(&mut self) {
            // `try_with`: the task may be dropped while the thread's locals are torn down.
            let _ = POLLER.try_with(|poller| {
                poller.running.set(false);
                poller.asleep.set(false);
                poller.waker.borrow_mut().take()
            });
        }
    }
    let _stopped = Stopped;
    loop {
        POLLER.with(|poller| poller.asleep.set(true));
        poll_fn(|cx| {
            POLLER.with(|poller| {
                if poller.asleep.get() {
                    *poller.waker.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
        })
        .await;
        poll_until_idle(window).await;
    }
}

/// Yields to the scheduler until `window` passes without a read. The scheduler, having only
/// this task's wake-up deferred, polls the sockets without blocking each time.
async fn poll_until_idle(window: Duration) {
    let activity = || POLLER.with(|poller| poller.activity.get());
    let mut seen = activity();
    let mut since = Instant::now();
    loop {
        tokio::task::yield_now().await;
        let now = activity();
        if now != seen {
            seen = now;
            since = Instant::now();
        } else if since.elapsed() >= window {
            return;
        }
    }
}

/// Whether a poller runs on this thread.
pub fn running() -> bool {
    POLLER.with(|poller| poller.running.get())
}

/// Whether this thread's poller waits for a read.
#[cfg(test)]
fn asleep() -> bool {
    POLLER.with(|poller| poller.asleep.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Yields until the poller is `asleep` (or not): the poller runs on this same thread. The
    /// bound only turns a poller that never sleeps into a failure instead of a hang.
    async fn until_asleep(asleep: bool) {
        let wait = async {
            while super::asleep() != asleep {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .expect("the poller never changed state");
    }

    #[test]
    fn the_poller_sleeps_until_a_read_and_again_after_a_window_without_one() {
        current_thread().block_on(async {
            let poller = tokio::spawn(run(Duration::from_micros(200)));
            until_asleep(true).await;
            // Nothing read: it stays asleep however often the runtime turns.
            for _ in 0..100 {
                tokio::task::yield_now().await;
                assert!(super::asleep());
            }
            note_activity();
            // Once the reads stop, it goes back to sleep after the window; and wakes again.
            until_asleep(true).await;
            note_activity();
            assert!(!super::asleep());
            until_asleep(true).await;

            // A second poller on the thread leaves the work to the first.
            tokio::spawn(run(Duration::from_micros(200))).await.unwrap();
            note_activity();
            assert!(!super::asleep(), "the first still answers reads");
            until_asleep(true).await;
            // Once the first is gone, the thread's state is as before, and a new one runs.
            poller.abort();
            assert!(poller.await.unwrap_err().is_cancelled());
            assert!(!super::asleep());
            let poller = tokio::spawn(run(Duration::from_micros(200)));
            until_asleep(true).await;
            poller.abort();
            let _ = poller.await;

            // Within its window, a woken poller keeps polling, however often the runtime turns.
            let poller = tokio::spawn(run(Duration::from_secs(3600)));
            until_asleep(true).await;
            note_activity();
            for _ in 0..1000 {
                tokio::task::yield_now().await;
                assert!(!super::asleep());
            }
            poller.abort();
        });
    }

    #[test]
    fn only_a_current_thread_runtime_with_a_window_and_a_spare_core_polls() {
        let spare_core = std::thread::available_parallelism().is_ok_and(|cores| cores.get() > 1);
        current_thread().block_on(async {
            assert_eq!(applies(Duration::from_micros(50)), spare_core);
            assert!(!applies(Duration::ZERO));
        });
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        multi.block_on(async { assert!(!applies(Duration::from_micros(50))) });
        assert!(!applies(Duration::from_micros(50)), "outside a runtime");
    }
}
