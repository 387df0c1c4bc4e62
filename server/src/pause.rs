//! CLIENT PAUSE: until a deadline (or CLIENT UNPAUSE), the commands of every client (ALL), or
//! those that may write (WRITE), wait before they run. The wait is a connection task's
//! `.await`, never a blocked thread; a connection checks one atomic per command, and only
//! while a pause is on does it look further.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use sessiond_protocol::cmd::{lookup, CommandFlags};
use tokio::sync::watch;
use tokio::time::Instant;

/// A pause: until when, and whether only writes wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Paused {
    until: Instant,
    writes_only: bool,
}

/// The server's pause state.
#[derive(Debug)]
pub struct Pause {
    /// Whether a pause may be on: what a connection reads per command.
    on: AtomicBool,
    state: watch::Sender<Option<Paused>>,
}

impl Default for Pause {
    fn default() -> Pause {
        Pause {
            on: AtomicBool::new(false),
            state: watch::Sender::new(None),
        }
    }
}

impl Pause {
    /// Pauses clients until `until`. As in Redis, a pause already on is only extended: the
    /// later deadline and the stricter mode (ALL over WRITE) win.
    pub fn pause(&self, until: Instant, writes_only: bool) {
        self.state.send_modify(|state| {
            let now = Instant::now();
            *state = Some(match *state {
                Some(old) if old.until > now => Paused {
                    until: old.until.max(until),
                    writes_only: old.writes_only && writes_only,
                },
                _ => Paused { until, writes_only },
            });
        });
        self.on.store(true, Relaxed);
    }

    /// Ends the pause; the clients waiting run.
    pub fn unpause(&self) {
        self.on.store(false, Relaxed);
        self.state.send_replace(None);
    }

    /// Whether a pause may be on (a relaxed load: a command that races with CLIENT PAUSE may
    /// run, as one already running does).
    #[inline]
    pub fn maybe_on(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// Waits while a pause holds the command `args` (its name first): every command under
    /// ALL; under WRITE, those that may write or publish, EVAL and EVALSHA (their scripts may
    /// write) and EXEC (its transaction may).
    pub async fn wait(&self, args: &[bytes::Bytes]) {
        let writes = args
            .first()
            .and_then(|name| lookup(name))
            .is_some_and(|spec| {
                spec.flags.contains(CommandFlags::WRITE)
                    || spec.flags.contains(CommandFlags::MAY_REPLICATE)
                    || matches!(spec.name, "eval" | "evalsha" | "exec")
            });
        let mut changes = self.state.subscribe();
        loop {
            let Some(paused) = *changes.borrow_and_update() else {
                return;
            };
            if paused.until <= Instant::now() {
                // Over: the first to notice ends it for every connection.
                self.state.send_if_modified(|state| {
                    let expired = *state == Some(paused);
                    if expired {
                        *state = None;
                        self.on.store(false, Relaxed);
                    }
                    expired
                });
                return;
            }
            if paused.writes_only && !writes {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep_until(paused.until) => {}
                _ = changes.changed() => {}
            }
        }
    }
}
