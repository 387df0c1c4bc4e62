//! The state every connection shares: the configuration, the store, the client registry, the
//! counters, persistence, the users, and the shutdown handshake between the accept loop
//! (`server`), the connections and the SHUTDOWN command.
//!
//! It sits below the accept loop, the connection loop and the commands, which all use it, so
//! that none of them imports an upper floor.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::auth::{Auth, FailureLog};
use crate::clients::Clients;
use crate::config::Config;
use crate::persist::{self, Persistence};
use crate::stats::Stats;
use crate::store::Databases;

/// State every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// The validated configuration, as the server started with it.
    pub config: Config,
    /// The settings CONFIG SET changes: read these rather than `config`'s.
    pub live: crate::live::Live,
    /// The keyspace: every database.
    pub dbs: Arc<Databases>,
    /// Connected clients.
    pub clients: Clients,
    /// Counters.
    pub stats: Stats,
    /// When the server started (monotonic), for uptime.
    pub started: Instant,
    /// INFO's `run_id`: 40 hex characters from the OS's CSPRNG, new at every start.
    pub run_id: String,
    /// The slow log (SLOWLOG).
    pub slowlog: crate::slowlog::SlowLog,
    /// The latency monitor (LATENCY).
    pub latency: crate::slowlog::LatencyMonitor,
    /// `used_memory_peak`.
    pub memory_peak: crate::process::Peak,
    /// The address the plaintext listener is bound to.
    pub local_addr: SocketAddr,
    /// The address the TLS listener is bound to, if there is one.
    pub tls_local_addr: Option<SocketAddr>,
    /// The address the metrics endpoint is bound to, if there is one (set once, at start).
    pub metrics_local_addr: std::sync::OnceLock<SocketAddr>,
    /// Snapshots.
    pub persistence: Arc<Persistence>,
    /// Who may connect.
    pub auth: Auth,
    /// CLIENT PAUSE's state.
    pub pause: crate::pause::Pause,
    /// Samples the log of authentication failures.
    pub auth_failure_log: FailureLog,
    /// The Lua scripts cache (EVAL, SCRIPT LOAD).
    pub scripts: crate::script_cache::Scripts,
    /// Pub/sub: every subscription, and PUBLISH's delivery.
    pub pubsub: Arc<crate::pubsub::Hub>,
    /// Replication: the role, the replicas served, the link to a primary.
    pub repl: crate::role::Replication,
    /// How the next shutdown goes (SHUTDOWN's options; a signal uses the defaults).
    shutdown_request: std::sync::Mutex<ShutdownRequest>,
    shutdown: watch::Sender<bool>,
    /// The data directory's lock, held while the server lives (see [`persist::lock`]).
    _data_dir_lock: Option<persist::lock::DirLock>,
    /// Connections a drain waits for: every open one but those whose SHUTDOWN waits for the
    /// outcome of the shutdown itself.
    draining: watch::Sender<usize>,
    /// Shutdowns given up because their final save failed; SHUTDOWN callers wait for it to move.
    failed_shutdowns: watch::Sender<u64>,
}

/// A new `run_id`: 20 bytes of the OS's CSPRNG in hex (all zeros if it fails, which the
/// session IDs it also serves would report).
fn run_id() -> String {
    let mut raw = [0u8; 20];
    let _ = getrandom::fill(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHUTDOWN's options, as Redis 7 has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownRequest {
    /// Write a final snapshot (with persistence on); NOSAVE clears it.
    pub save: bool,
    /// Exit even if the final snapshot fails (FORCE).
    pub force: bool,
    /// Do not wait for the connections to finish (NOW).
    pub now: bool,
}

impl Default for ShutdownRequest {
    fn default() -> Self {
        ShutdownRequest {
            save: true,
            force: false,
            now: false,
        }
    }
}

/// SHUTDOWN's error when the final save failed and the server keeps running (Redis's words).
pub const SHUTDOWN_FAILED: &str = "ERR Errors trying to SHUTDOWN. Check logs.";

impl Shared {
    /// The state of a server just bound: no clients, zero counters, no shutdown requested.
    /// `data_dir_lock` is held for as long as the state lives.
    pub(crate) fn new(
        config: Config,
        dbs: Arc<Databases>,
        persistence: Arc<Persistence>,
        auth: Auth,
        local_addr: SocketAddr,
        tls_local_addr: Option<SocketAddr>,
        data_dir_lock: Option<persist::lock::DirLock>,
    ) -> Shared {
        dbs.feed()
            .set_backlog_size(config.replication.backlog_bytes);
        // The events the configuration enables, until CONFIG SET changes them.
        dbs.notifier().flags().set(config.notify_keyspace_events);
        let slowlog =
            crate::slowlog::SlowLog::new(config.slowlog_log_slower_than_us, config.slowlog_max_len);
        let latency = crate::slowlog::LatencyMonitor::new(config.latency_monitor_threshold_ms);
        Shared {
            live: crate::live::Live::new(&config),
            pause: crate::pause::Pause::default(),
            auth,
            auth_failure_log: FailureLog::default(),
            scripts: crate::script_cache::Scripts::default(),
            // One hub for PUBLISH and the store's events (`Notifier`).
            pubsub: Arc::clone(dbs.notifier().hub()),
            repl: crate::role::Replication::new(&config.replication),
            config,
            dbs,
            clients: Clients::default(),
            stats: Stats::default(),
            started: Instant::now(),
            run_id: run_id(),
            slowlog,
            latency,
            memory_peak: crate::process::Peak::default(),
            local_addr,
            tls_local_addr,
            metrics_local_addr: std::sync::OnceLock::new(),
            persistence,
            shutdown_request: std::sync::Mutex::new(ShutdownRequest::default()),
            shutdown: watch::Sender::new(false),
            _data_dir_lock: data_dir_lock,
            draining: watch::Sender::new(0),
            failed_shutdowns: watch::Sender::new(0),
        }
    }

    /// The state of a server that listens nowhere, to run commands in-process through
    /// [`crate::cmd::execute`] (the `command_sequence` fuzz target): empty databases on
    /// `config.clock`, `config`'s users, and no snapshot loaded.
    pub fn unbound(config: Config) -> Shared {
        let store = Arc::new(crate::store::Databases::new(
            config.clock.clone(),
            config.databases,
        ));
        let persistence = Arc::new(Persistence::new(config.persistence.clone(), store.clone()));
        let auth = Auth::new(config.requirepass.as_ref(), &config.users);
        let nowhere = SocketAddr::from(([127, 0, 0, 1], 0));
        Shared::new(config, store, persistence, auth, nowhere, None, None)
    }

    /// Notes the process's memory now in `used_memory_peak`; the memory and the peak.
    pub fn sample_memory(&self) -> (crate::process::Memory, u64) {
        let memory = crate::process::memory();
        (memory, self.memory_peak.note(memory.anonymous))
    }

    /// Restarts `used_memory_peak` from the memory now (CONFIG RESETSTAT).
    pub fn reset_memory_peak(&self) {
        self.memory_peak.reset(crate::process::memory().anonymous);
    }

    /// Asks the server to shut down gracefully, as set by [`Shared::set_final_save`] (a signal).
    pub fn request_shutdown(&self) {
        // Long scripts stop: those that wrote nothing, whose runs leave no trace, and with no
        // final save every one (SHUTDOWN NOSAVE is how Redis ends a script that wrote).
        let saving = self.persistence.config().is_some() && self.take_shutdown_request().save;
        self.dbs.long_blocks().stop_for_shutdown(saving);
        self.shutdown.send_replace(true);
    }

    /// Asks the server to shut down with SHUTDOWN's options; returns how many shutdowns had
    /// failed before (see [`Shared::wait_for_failed_shutdown`]).
    pub fn request_shutdown_with(&self, request: ShutdownRequest) -> u64 {
        let failed_before = *self.failed_shutdowns.borrow();
        *self
            .shutdown_request
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = request;
        self.request_shutdown();
        failed_before
    }

    /// Sets whether shutting down writes a final snapshot.
    pub fn set_final_save(&self, save: bool) {
        self.shutdown_request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .save = save;
    }

    /// The options of the shutdown under way.
    pub(crate) fn take_shutdown_request(&self) -> ShutdownRequest {
        *self
            .shutdown_request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Waits, from a connection that sent SHUTDOWN, until the shutdown fails: its final save
    /// failed and the server serves on (more than `failed_before` shutdowns have failed, the
    /// count [`Shared::request_shutdown_with`] returned, so a failure before the wait began
    /// counts). It never returns when the server exits. The caller's connection does not hold
    /// up the drain meanwhile.
    pub async fn wait_for_failed_shutdown(&self, failed_before: u64) {
        let mut failures = self.failed_shutdowns.subscribe();
        self.release_drain();
        let _ = failures.wait_for(|failed| *failed > failed_before).await;
        self.hold_drain();
    }

    /// Counts a connection that a drain waits for (see [`Shared::drained`]).
    pub(crate) fn hold_drain(&self) {
        self.draining.send_modify(|n| *n += 1);
    }

    /// Uncounts a connection counted by [`Shared::hold_drain`].
    pub(crate) fn release_drain(&self) {
        self.draining.send_modify(|n| *n = n.saturating_sub(1));
    }

    /// Waits until no connection holds up the drain.
    pub(crate) async fn drained(&self) {
        let mut draining = self.draining.subscribe();
        let _ = draining.wait_for(|n| *n == 0).await;
    }

    /// Records that the shutdown under way was given up (its final save failed): the server
    /// serves again, the next shutdown starts from the defaults, and the SHUTDOWN callers
    /// waiting in [`Shared::wait_for_failed_shutdown`] are answered.
    pub(crate) fn shutdown_failed(&self) {
        *self
            .shutdown_request
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = ShutdownRequest::default();
        self.shutdown.send_replace(false);
        self.failed_shutdowns.send_modify(|n| *n += 1);
    }

    /// Whether a shutdown has been requested.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// A receiver that changes to `true` when shutdown begins.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}
