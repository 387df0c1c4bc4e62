//! Snapshots: crash-safe files of the whole keyspace, written in the background and loaded at
//! start.
//!
//! - [`format`](mod@format): the file layout, framing the store's [`Record`](crate::store::Record)s.
//! - [`writer`]: streaming a snapshot to a temporary file, then fsync, rename, fsync the directory.
//! - [`loader`]: verifying a file completely, then loading it; `check-snapshot`.
//! - [`lock`]: the data directory's lock, one server per directory.
//! - [`aof`]: the append-only log (its files: [`aof_files`]; reading it: [`aof_load`]).
//!
//! [`Persistence`] is the server's side: where the file lives, whether a save is running, the
//! outcome of the last one (for INFO and LASTSAVE), and the triggers (periodic, SAVE, BGSAVE,
//! shutdown).

pub mod aof;
pub mod aof_files;
pub(crate) mod aof_io;
pub mod aof_load;
pub mod format;
pub mod loader;
pub mod lock;
mod settings;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::store::Databases;

/// Where and how snapshots are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistConfig {
    /// The data directory.
    pub dir: PathBuf,
    /// The snapshot's file name in `dir`.
    pub file_name: String,
    /// Period of automatic snapshots when something changed (`None`: only on demand).
    pub interval: Option<Duration>,
    /// The most bytes the journal of changes made during a save may hold (one record per key
    /// written, outside `maxmemory`); past it the save is abandoned (`snapshot-journal-limit`).
    pub journal_max_bytes: u64,
    /// Test-only: a pause after each shard, to observe a save in progress.
    pub shard_delay: Duration,
    /// Test-only: the load waits at this gate until it opens, to observe a load in progress.
    pub load_gate: Option<LoadGate>,
    /// The append-only log.
    pub aof: aof::AofConfig,
}

/// A gate the snapshot load waits at (tests only): it opens when its sender sends or is
/// dropped, so a test that fails early never leaves the load waiting.
#[derive(Clone)]
pub struct LoadGate(Arc<Mutex<Option<std::sync::mpsc::Receiver<()>>>>);

impl LoadGate {
    /// A closed gate, and the sender that opens it.
    pub fn new() -> (LoadGate, std::sync::mpsc::Sender<()>) {
        let (open, opened) = std::sync::mpsc::channel();
        (LoadGate(Arc::new(Mutex::new(Some(opened)))), open)
    }

    /// Waits until the gate opens (once: later waits pass).
    fn wait(&self) {
        let opened = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(opened) = opened {
            let _ = opened.recv();
        }
    }
}

impl PartialEq for LoadGate {
    fn eq(&self, other: &LoadGate) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for LoadGate {}

impl std::fmt::Debug for LoadGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoadGate")
    }
}

impl Default for PersistConfig {
    fn default() -> Self {
        PersistConfig {
            dir: PathBuf::from("./data"),
            file_name: "dump.sdb".to_owned(),
            interval: Some(Duration::from_secs(60)),
            journal_max_bytes: 256 << 20,
            shard_delay: Duration::ZERO,
            load_gate: None,
            aof: aof::AofConfig::default(),
        }
    }
}

impl PersistConfig {
    /// The snapshot's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.file_name)
    }

    /// Where the append-only log's files live.
    pub fn aof_layout(&self) -> aof_files::Layout {
        aof_files::Layout {
            dir: self.dir.join(&self.aof.dir_name),
            file_name: self.aof.file_name.clone(),
        }
    }

    fn write_options(&self) -> writer::WriteOptions {
        writer::WriteOptions {
            journal_max_bytes: self.journal_max_bytes,
            shard_delay: self.shard_delay,
            consistent: true,
        }
    }
}

/// How soon the periodic task tries again after a failed save, as Redis retries a failed
/// BGSAVE (`CONFIG_BGSAVE_RETRY_DELAY`), instead of a whole interval.
pub const RETRY_DELAY: Duration = Duration::from_secs(5);

/// The outcome of the saves so far, for INFO persistence and LASTSAVE.
#[derive(Debug, Clone, Default)]
pub struct SaveStatus {
    /// Unix seconds of the last successful save (the start time before any).
    pub last_save_unix_s: u64,
    /// Whether the last save succeeded.
    pub last_ok: bool,
    /// Its error, if it failed.
    pub last_error: Option<String>,
    /// How long the last successful save took.
    pub last_duration: Duration,
    /// Its size in bytes.
    pub last_bytes: u64,
    /// Its records.
    pub last_records: u64,
    /// Successful saves since start.
    pub saves: u64,
    /// The store's change count when the last successful save began.
    pub changes_at_last_save: u64,
    /// Unix ms when the save in progress started.
    pub current_started_ms: Option<u64>,
}

/// What BGREWRITEAOF did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteStarted {
    /// The rewrite runs.
    Started,
    /// It starts once the snapshot being written is done.
    Scheduled,
}

/// Why BGREWRITEAOF did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    /// A rewrite runs already.
    #[error("ERR Background append only file rewriting already in progress")]
    InProgress,
    /// The log is off.
    #[error("ERR the append-only log is off (appendonly no)")]
    Off,
}

/// Why a save did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// Another save is running.
    #[error("ERR Background save already in progress")]
    InProgress,
    /// Persistence is off (`--no-persistence`).
    #[error("ERR persistence is disabled (--no-persistence)")]
    Disabled,
    /// Writing failed; the previous snapshot is intact.
    #[error("ERR snapshot {path}: {source}")]
    Io {
        /// The snapshot path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The changes made during the save outgrew the journal's bound; the previous snapshot is
    /// intact.
    #[error("ERR snapshot {path}: {source}")]
    JournalFull {
        /// The snapshot path.
        path: String,
        /// The error, [`writer::WriteError::JournalFull`].
        source: writer::WriteError,
    },
}

/// The server's persistence state.
#[derive(Debug)]
pub struct Persistence {
    config: Option<PersistConfig>,
    store: Arc<Databases>,
    /// Whether a save is running; waiters watch it turn false.
    running: watch::Sender<bool>,
    status: Mutex<SaveStatus>,
    /// Whether the last save failed (writes get MISCONF meanwhile; read on every write).
    failing: std::sync::atomic::AtomicBool,
    /// The period of the periodic saves (`None`: only on demand), which CONFIG SET
    /// `snapshot-interval` changes; the periodic task watches it.
    interval: watch::Sender<Option<Duration>>,
    /// The append-only log, when on. CONFIG SET appendonly swaps it (and counts the swap in
    /// `aof_generation`); the hot path reads it through [`Persistence::read_aof`].
    aof: arc_swap::ArcSwapOption<aof::Aof>,
    /// Which swap of `aof` is in place, numbered across the process (a server started where
    /// another was dropped never matches its number): a thread's copy is good while unchanged.
    aof_generation: AtomicU64,
    /// Whether the log may be under `appendfsync always`: false means it is not, and a
    /// command learns so from one relaxed load (set before the log turns `always`, cleared
    /// after it stops being so, under `aof_switching`).
    always_hint: AtomicBool,
    /// The log's settings while it is off (those of the last one on), for the next start.
    aof_settings: Mutex<aof::AofConfig>,
    /// The rewrite history of the last log turned off: INFO shows it while the log is off, and
    /// the next log continues it.
    aof_history: Mutex<aof::RewriteStatus>,
    /// Turning the log on or off, and setting its manifest aside: one at a time.
    aof_switching: Mutex<()>,
    /// The log was turned off with its manifest naming the keyspace at that moment: a later
    /// start with the log on loads it (it is newer than the snapshot), until the first
    /// snapshot started after the stop sets it aside.
    aof_stale: AtomicBool,
}

impl Drop for Persistence {
    /// The log's threads and file go with the server, whoever still holds the log.
    fn drop(&mut self) {
        if let Some(log) = self.aof.load_full() {
            log.abandon();
        }
    }
}

/// A number no swap of any server's log in this process had before ([`Persistence::read_aof`]).
fn next_generation() -> u64 {
    static GENERATIONS: AtomicU64 = AtomicU64::new(1);
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

impl Persistence {
    /// Persistence for `store`; `None` runs purely in memory.
    pub fn new(config: Option<PersistConfig>, store: Arc<Databases>) -> Persistence {
        let status = SaveStatus {
            last_save_unix_s: store.now_ms() / 1000,
            last_ok: true,
            // What is loaded at start is what the files hold: no change to save (Redis's
            // `dirty` is 0 after a load).
            changes_at_last_save: store.changes(),
            ..SaveStatus::default()
        };
        Persistence {
            interval: watch::Sender::new(config.as_ref().and_then(|c| c.interval)),
            store,
            running: watch::Sender::new(false),
            status: Mutex::new(status),
            failing: std::sync::atomic::AtomicBool::new(false),
            aof_settings: Mutex::new(config.as_ref().map(|c| c.aof.clone()).unwrap_or_default()),
            config,
            aof: arc_swap::ArcSwapOption::empty(),
            aof_generation: AtomicU64::new(next_generation()),
            always_hint: AtomicBool::new(false),
            aof_history: Mutex::new(aof::RewriteStatus {
                last_ok: true,
                ..aof::RewriteStatus::default()
            }),
            aof_switching: Mutex::new(()),
            aof_stale: AtomicBool::new(false),
        }
    }

    /// Persistence with the append-only log `aof` (started on the loaded keyspace).
    pub fn with_aof(self, aof: Option<Arc<aof::Aof>>) -> Persistence {
        self.swap_aof(aof);
        self
    }

    /// Puts `aof` in place of the log, the swap counted.
    fn swap_aof(&self, aof: Option<Arc<aof::Aof>>) {
        let always = aof
            .as_ref()
            .is_some_and(|log| log.fsync() == aof::Fsync::Always);
        if always {
            self.always_hint.store(true, Ordering::SeqCst);
        }
        self.aof.store(aof);
        self.aof_generation
            .store(next_generation(), Ordering::Release);
        self.always_hint.store(always, Ordering::SeqCst);
    }

    /// Runs `f` on the log as it is now, from this thread's copy while no swap happened since
    /// it was taken: one atomic load and a comparison, where an `ArcSwap` load costs some 100
    /// instructions (its debt list), which every command paid. A thread keeps its copy, and so
    /// a log turned off (closed) or a dropped server's (abandoned) in memory, until it next
    /// looks.
    #[inline]
    fn read_aof<R>(&self, f: impl FnOnce(Option<&aof::Aof>) -> R) -> R {
        thread_local! {
            static SEEN: std::cell::RefCell<(usize, u64, Option<Arc<aof::Aof>>)> =
                const { std::cell::RefCell::new((0, 0, None)) };
        }
        let generation = self.aof_generation.load(Ordering::Acquire);
        let me = self as *const Persistence as usize;
        SEEN.with(|seen| {
            let mut seen = seen.borrow_mut();
            if seen.0 != me || seen.1 != generation {
                *seen = (me, generation, self.aof.load_full());
            }
            f(seen.2.as_deref())
        })
    }

    /// Takes the right to turn the log on or off. The frames this thread holds go first: the
    /// holder of the lock may be waiting for the stream to reach its end (closing the log),
    /// and this thread would wait for it while holding a part of that stream.
    fn switching(&self) -> std::sync::MutexGuard<'_, ()> {
        self.store.feed().release_held();
        self.aof_switching.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The append-only log, when on.
    pub fn aof(&self) -> Option<Arc<aof::Aof>> {
        self.aof.load_full()
    }

    /// Whether the log is on with `appendfsync always`: replies wait for the fsync of the
    /// changes before them (read for every command: one relaxed load while it is not).
    #[inline]
    pub fn fsync_always(&self) -> bool {
        self.always_hint.load(Ordering::Relaxed)
            && self.read_aof(|log| log.is_some_and(|log| log.fsync() == aof::Fsync::Always))
    }

    /// The log's settings: the running log's, or those the next start takes.
    pub fn aof_settings(&self) -> aof::AofConfig {
        let mut settings = self
            .aof_settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        settings.enabled = false;
        if let Some(log) = self.aof() {
            settings.enabled = true;
            settings.fsync = log.fsync();
            (settings.rewrite_percentage, settings.rewrite_min_size) = log.rewrite_thresholds();
        }
        settings
    }

    /// Changes `appendfsync` (CONFIG SET): of the running log, and of the next start's.
    pub fn set_aof_fsync(&self, fsync: aof::Fsync) {
        let _switching = self.switching();
        let always = fsync == aof::Fsync::Always;
        if always {
            self.always_hint.store(true, Ordering::SeqCst);
        }
        self.aof_settings_lock().fsync = fsync;
        let log = self.aof();
        if let Some(log) = &log {
            log.set_fsync(fsync);
        }
        self.always_hint
            .store(always && log.is_some(), Ordering::SeqCst);
    }

    /// Changes `auto-aof-rewrite-percentage` (CONFIG SET).
    pub fn set_aof_rewrite_percentage(&self, percent: u64) {
        self.aof_settings_lock().rewrite_percentage = percent;
        if let Some(log) = self.aof() {
            log.set_rewrite_percentage(percent);
        }
    }

    /// Changes `auto-aof-rewrite-min-size` (CONFIG SET).
    pub fn set_aof_rewrite_min_size(&self, bytes: u64) {
        self.aof_settings_lock().rewrite_min_size = bytes;
        if let Some(log) = self.aof() {
            log.set_rewrite_min_size(bytes);
        }
    }

    fn aof_settings_lock(&self) -> std::sync::MutexGuard<'_, aof::AofConfig> {
        self.aof_settings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// CONFIG SET appendonly, as Redis's `updateAppendonly`. On: a new log starts taking every
    /// change, and a rewrite (now, or after the snapshot being written) gives it a base of
    /// the keyspace; only then does a manifest name it, so a crash before restarts as the log
    /// was off. Off: the log is written out, fsynced and closed; its files stay, and its
    /// manifest (the keyspace at this moment) until a snapshot started later sets it aside.
    /// The error is Redis's reply text when the log cannot start.
    pub fn set_appendonly(self: &Arc<Self>, on: bool) -> Result<(), String> {
        let Some(config) = &self.config else {
            return match on {
                true => Err("persistence is disabled (--no-persistence)".to_owned()),
                false => Ok(()),
            };
        };
        let switching = self.switching();
        match (on, self.aof.load_full()) {
            (true, Some(_)) | (false, None) => Ok(()),
            (true, None) => {
                let settings = self.aof_settings();
                let started = aof::Aof::start_fresh(
                    &aof::AofConfig {
                        enabled: true,
                        ..settings
                    },
                    &config.dir,
                    self.store.clone(),
                    config.journal_max_bytes,
                );
                let log = match started {
                    Ok(log) => log,
                    Err(error) => {
                        tracing::error!(%error, "cannot turn the append-only log on");
                        return Err("Unable to turn on AOF. Check server logs.".to_owned());
                    }
                };
                log.continue_history(&self.aof_history());
                // The manifest on disk, if any, stays until the new log's first commit
                // replaces it, and `aof_stale` with it: a snapshot written meanwhile is newer
                // and sets it aside, as with the log off.
                self.swap_aof(Some(log.clone()));
                drop(switching);
                if let Err(RewriteError::InProgress) = self.rewrite_aof_in_background() {
                    log.schedule_rewrite();
                }
                Ok(())
            }
            (false, Some(log)) => {
                self.swap_aof(None);
                {
                    let mut settings = self.aof_settings_lock();
                    settings.fsync = log.fsync();
                    (settings.rewrite_percentage, settings.rewrite_min_size) =
                        log.rewrite_thresholds();
                }
                log.close();
                *self.aof_history.lock().unwrap_or_else(|p| p.into_inner()) = aof::RewriteStatus {
                    started: None,
                    ..log.rewrite_status()
                };
                // A committed log's manifest is the keyspace now, the newest state there is:
                // kept until a snapshot is newer. An uncommitted log's is where an earlier
                // stop left it, and `aof_stale` still says what it did then.
                if log.committed() {
                    let manifest = config.aof_layout().manifest_path().exists();
                    self.aof_stale.store(manifest, Ordering::SeqCst);
                }
                drop(switching);
                Ok(())
            }
        }
    }

    /// The rewrite history while the log is off (that of the last log turned off).
    pub fn aof_history(&self) -> aof::RewriteStatus {
        self.aof_history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// After a snapshot that started while the log was off with its manifest left
    /// (`aof_stale`): the snapshot is newer, so the manifest is set aside; also while a log
    /// turned on since is uncommitted (the manifest is still the earlier one).
    fn set_aside_after_snapshot(&self, config: &PersistConfig) {
        let _switching = self.switching();
        if !self.aof_stale.swap(false, Ordering::SeqCst) {
            return;
        }
        match self.aof.load_full() {
            None => set_aside_manifest(
                &config.aof_layout(),
                "appendonly is off and a snapshot newer than the log was written",
            ),
            Some(log) => log.set_aside_earlier_manifest(),
        }
    }

    /// BGREWRITEAOF: starts a rewrite of the log in the background, or schedules it after the
    /// snapshot being written (one snapshot at a time: they share the journal).
    pub fn rewrite_aof_in_background(self: &Arc<Self>) -> Result<RewriteStarted, RewriteError> {
        let aof = self.aof().ok_or(RewriteError::Off)?;
        if aof.rewrite_state().0 {
            return Err(RewriteError::InProgress);
        }
        let claimed = self
            .running
            .send_if_modified(|running| !std::mem::replace(running, true));
        if !claimed {
            aof.schedule_rewrite();
            return Ok(RewriteStarted::Scheduled);
        }
        if !aof.claim_rewrite() {
            self.running.send_replace(false);
            return Err(RewriteError::InProgress);
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _ = aof.rewrite_claimed();
            this.running.send_replace(false);
        });
        Ok(RewriteStarted::Started)
    }

    /// Waits until every change so far is written to the log and fsynced (shutdown).
    pub async fn sync_aof(&self) {
        if let Some(aof) = self.aof() {
            let _ = tokio::task::spawn_blocking(move || aof.sync()).await;
        }
    }

    /// Starts the rewrites the log schedules for itself (grown past its thresholds) or that
    /// waited for a snapshot, until `stop` resolves (whichever log is on: CONFIG SET
    /// appendonly may turn one on later).
    pub async fn run_aof_rewrites(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        if self.config.is_none() {
            stop.await;
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {}
            }
            let Some(aof) = self.aof() else {
                continue;
            };
            if aof.rewrite_state().1 && !self.in_progress() {
                let _ = self.rewrite_aof_in_background();
            }
        }
    }

    /// Whether writes are refused for the disk: bit 0, the last snapshot failed; bit 1, the
    /// append-only log cannot be written. One load of each, read on every write.
    #[inline]
    pub fn disk_errors(&self) -> u8 {
        u8::from(self.last_save_failed())
            | (u8::from(self.read_aof(|log| log.is_some_and(|a| a.write_failed()))) << 1)
    }

    /// The configuration, if persistence is on.
    pub fn config(&self) -> Option<&PersistConfig> {
        self.config.as_ref()
    }

    /// A copy of the save status.
    pub fn status(&self) -> SaveStatus {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the last save, of any kind, failed on the disk (a save given up at the journal's
    /// bound does not count: see `run_claimed`); the next successful one clears it.
    pub fn last_save_failed(&self) -> bool {
        self.failing.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a save is running.
    pub fn in_progress(&self) -> bool {
        *self.running.borrow()
    }

    /// Whether a save (a snapshot or the log's rewrite) runs: one that holds the save slot for
    /// itself, unlike a replica's load waiting for it.
    pub fn saving(&self) -> bool {
        self.status().current_started_ms.is_some()
            || self.aof().is_some_and(|aof| aof.rewrite_state().0)
    }

    /// Waits until no save is running.
    pub async fn idle(&self) {
        let _ = self.running.subscribe().wait_for(|running| !running).await;
    }

    /// Changes since the last successful save began.
    pub fn changes_since_save(&self) -> u64 {
        self.store
            .changes()
            .saturating_sub(self.status().changes_at_last_save)
    }

    /// Saves now on a blocking thread and waits for the outcome (SAVE, shutdown, the periodic
    /// task).
    pub async fn save(self: &Arc<Self>) -> Result<writer::Written, SaveError> {
        let config = self.claim()?;
        let this = self.clone();
        match tokio::task::spawn_blocking(move || this.run_claimed(&config)).await {
            Ok(result) => result,
            Err(join) => {
                self.running.send_replace(false);
                Err(SaveError::Io {
                    path: String::new(),
                    source: std::io::Error::other(join.to_string()),
                })
            }
        }
    }

    /// Starts a save in the background (BGSAVE).
    pub fn save_in_background(self: &Arc<Self>) -> Result<(), SaveError> {
        let config = self.claim()?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _ = this.run_claimed(&config);
        });
        Ok(())
    }

    /// How a snapshot is written: the configured journal bound, or none in memory-only mode.
    pub fn write_options(&self) -> writer::WriteOptions {
        self.config
            .as_ref()
            .map(PersistConfig::write_options)
            .unwrap_or_default()
    }

    /// Runs `work` on a blocking thread while holding the slot saves take (waiting for a save
    /// under way to finish first): a replica's snapshot, which shares the store's one journal
    /// with saves, and a replica's load, which no save may read half done.
    pub async fn exclusive<R: Send + 'static>(
        self: Arc<Self>,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> R {
        let mut running = self.running.subscribe();
        loop {
            let claimed = self
                .running
                .send_if_modified(|running| !std::mem::replace(running, true));
            if claimed {
                break;
            }
            let _ = running.wait_for(|running| !running).await;
        }
        /// Releases the slot however the work ends (a panic, the caller dropped).
        struct Release(Arc<Persistence>);
        impl Drop for Release {
            fn drop(&mut self) {
                self.0.running.send_replace(false);
            }
        }
        // Released by the blocking thread when the work is done, even if the caller stopped
        // waiting for it.
        let release = Release(self);
        let outcome = tokio::task::spawn_blocking(move || {
            let _release = release;
            work()
        })
        .await;
        match outcome {
            Ok(result) => result,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }

    fn claim(&self) -> Result<PersistConfig, SaveError> {
        let config = self.config.clone().ok_or(SaveError::Disabled)?;
        let claimed = self
            .running
            .send_if_modified(|running| !std::mem::replace(running, true));
        if !claimed {
            return Err(SaveError::InProgress);
        }
        Ok(config)
    }

    /// Runs a save already claimed with `running`; records the outcome and releases the claim.
    fn run_claimed(&self, config: &PersistConfig) -> Result<writer::Written, SaveError> {
        let changes = self.store.changes();
        // A manifest the log left when turned off is older than this snapshot, once written.
        let supersedes_log = self.aof_stale.load(Ordering::SeqCst);
        let path = config.path();
        {
            let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
            status.current_started_ms = Some(self.store.now_ms());
        }
        tracing::info!(path = %path.display(), "saving snapshot");
        let result = writer::write_snapshot(&*self.store, &path, &config.write_options());
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        status.current_started_ms = None;
        let outcome = match result {
            Ok(written) => {
                status.last_ok = true;
                status.last_error = None;
                status.last_save_unix_s = self.store.now_ms() / 1000;
                status.last_duration = written.duration;
                status.last_bytes = written.bytes;
                status.last_records = written.records;
                status.saves += 1;
                status.changes_at_last_save = changes;
                tracing::info!(
                    path = %path.display(),
                    records = written.records,
                    bytes = written.bytes,
                    duration_ms = written.duration.as_millis() as u64,
                    "snapshot saved"
                );
                Ok(written)
            }
            Err(source) => {
                tracing::error!(path = %path.display(), error = %source, "snapshot failed; the previous one is intact");
                status.last_ok = false;
                status.last_error = Some(source.to_string());
                let path = path.display().to_string();
                Err(match source {
                    writer::WriteError::Io(source) => SaveError::Io { path, source },
                    // Abandoned rather than failed: retried like a full journal, no MISCONF.
                    given_up @ (writer::WriteError::JournalFull { .. }
                    | writer::WriteError::Swapped) => SaveError::JournalFull {
                        path,
                        source: given_up,
                    },
                })
            }
        };
        // MISCONF is for a disk that cannot take a snapshot. A save given up at the journal's
        // bound is not that: refusing writes for it would turn a burst of writes during a save
        // (or of SESSION.GET refreshes, which MISCONF lets through) into an outage. It is
        // reported and retried like any failure, and writes go on.
        let disk_failed = matches!(outcome, Err(SaveError::Io { .. }));
        self.failing
            .store(disk_failed, std::sync::atomic::Ordering::Relaxed);
        drop(status);
        if supersedes_log && outcome.is_ok() {
            self.set_aside_after_snapshot(config);
        }
        self.running.send_replace(false);
        outcome
    }

    /// The period of the periodic saves; `None`: only on demand.
    pub fn interval(&self) -> Option<Duration> {
        *self.interval.borrow()
    }

    /// Changes the period of the periodic saves (`None`: only on demand): the next is due one
    /// new period after the change (sooner after a failed save).
    pub fn set_interval(&self, interval: Option<Duration>) {
        self.interval.send_replace(interval);
    }

    /// Saves every [`Persistence::interval`] when something changed since the last save, until
    /// `stop` resolves; after a failed save (this task's, SAVE's or BGSAVE's), [`RETRY_DELAY`]
    /// after it began. Without persistence, it only waits for `stop`.
    pub async fn run_periodic(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        if self.config.is_none() {
            stop.await;
            return;
        }
        let mut changes = self.interval.subscribe();
        loop {
            let Some(interval) = *changes.borrow_and_update() else {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = changes.changed() => continue,
                }
            };
            // After a failed save (a shutdown whose final save failed starts this task again),
            // the retry is due soon, not a whole interval later.
            let mut next =
                tokio::time::Instant::now() + next_save_delay(interval, self.status().last_ok);
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    // A new period: the schedule starts again from now.
                    _ = changes.changed() => break,
                    _ = tokio::time::sleep_until(next) => {}
                }
                let started = tokio::time::Instant::now();
                // A failed save is retried even when nothing changed since: until one succeeds,
                // writes may be refused (MISCONF).
                let wanted = self.changes_since_save() > 0 || !self.status().last_ok;
                if wanted && !self.in_progress() {
                    let _ = self.save().await;
                }
                let delay = next_save_delay(interval, self.status().last_ok);
                next = (started + delay).max(tokio::time::Instant::now());
            }
        }
    }
}

/// How long after a periodic save began the next one is due: `interval`, or at most
/// [`RETRY_DELAY`] when the last save failed.
fn next_save_delay(interval: Duration, last_ok: bool) -> Duration {
    if last_ok {
        interval
    } else {
        interval.min(RETRY_DELAY)
    }
}

/// A data directory ready for use: locked for this process, and what was loaded from it.
#[derive(Debug)]
pub struct Prepared {
    /// The directory's lock; keep it for as long as the server runs.
    pub lock: lock::DirLock,
    /// The snapshot loaded, if there was one (the log's base, when the log was loaded).
    pub summary: Option<loader::Summary>,
    /// The append-only log loaded, if it was on and had a manifest.
    pub aof: Option<aof_load::Loaded>,
}

/// Prepares the data directory (creating it with mode 0700, locking it against a second server,
/// removing temp files an interrupted save left) and loads the snapshot into `store` if there
/// is one.
pub fn prepare_and_load(
    config: &PersistConfig,
    store: &Databases,
) -> Result<Prepared, PrepareError> {
    create_dir(&config.dir).map_err(|source| PrepareError::Dir {
        dir: config.dir.clone(),
        source,
    })?;
    // Before anything in the directory is touched: the temp files may be another server's.
    let lock = lock::DirLock::acquire(&config.dir)?;
    remove_temp_files(config);
    let path = config.path();
    if let Some(gate) = &config.load_gate {
        gate.wait();
    }
    // With the log on and written, it is what loads (as Redis loads the AOF over the RDB).
    if config.aof.enabled {
        let layout = config.aof_layout();
        let manifest = layout
            .read_manifest()
            .map_err(|problem| aof_load::AofError {
                path: layout.manifest_path(),
                offset: 0,
                problem,
            })?;
        if let Some(manifest) = manifest {
            let loaded = aof_load::load(&layout, &manifest, store, config.aof.load_truncated)?;
            return Ok(Prepared {
                lock,
                summary: loaded.base.clone(),
                aof: Some(loaded),
            });
        }
    } else {
        set_aside_stale_log(config);
    }
    let summary = if path.exists() {
        Some(loader::load(&path, store)?)
    } else {
        None
    };
    Ok(Prepared {
        lock,
        summary,
        aof: None,
    })
}

/// With the log off, a log left by an earlier run stops describing the data as soon as this
/// run changes anything: loaded by a later run with the log on, it would bring back what this
/// one deleted (logged-out sessions). Its manifest is renamed (`<name>.stale`), so that such a
/// run starts from the snapshot and writes a new base from it.
fn set_aside_stale_log(config: &PersistConfig) {
    set_aside_manifest(
        &config.aof_layout(),
        "appendonly is off and the log was left by an earlier run",
    );
}

/// Renames the log's manifest to `<name>.stale` (and fsyncs the directory), so that no start
/// loads it; `why` goes to the log line.
fn set_aside_manifest(layout: &aof_files::Layout, why: &str) {
    let manifest = layout.manifest_path();
    if !manifest.exists() {
        return;
    }
    let mut stale = manifest.clone().into_os_string();
    stale.push(".stale");
    match std::fs::rename(&manifest, &stale).and_then(|()| aof_files::sync_dir(&layout.dir)) {
        Ok(()) => tracing::warn!(
            manifest = %manifest.display(),
            "{why}: the append-only log is set aside (.stale)"
        ),
        Err(error) => tracing::error!(
            %error,
            manifest = %manifest.display(),
            "{why}: cannot set aside the append-only log"
        ),
    }
}

/// Why the server cannot start on its data directory.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The directory cannot be created or read.
    #[error("data directory {}: {source}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Another server uses the directory, or its lock file cannot be taken.
    #[error(transparent)]
    Locked(#[from] lock::LockError),
    /// The snapshot cannot be loaded.
    #[error(transparent)]
    Snapshot(#[from] loader::SnapshotError),
    /// The append-only log cannot be loaded.
    #[error(transparent)]
    Aof(#[from] aof_load::AofError),
    /// The append-only log cannot be started.
    #[error(transparent)]
    AofStart(#[from] aof::StartError),
}

fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn remove_temp_files(config: &PersistConfig) {
    // A save's temporary file, and a full sync's received snapshot (`replication::replica`).
    let prefixes = [
        format!("{}.tmp-", config.file_name),
        format!("{}.sync-", config.file_name),
    ];
    let Ok(entries) = std::fs::read_dir(&config.dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if prefixes.iter().any(|prefix| name.starts_with(prefix)) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed a temp file left by an interrupted save")
                }
                Err(error) => {
                    tracing::warn!(file = %entry.path().display(), %error, "cannot remove a leftover temp file")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An empty scratch directory named after `name`, persistence settings for it (no
    /// periodic save) and an empty keyspace.
    fn scratch(name: &str) -> (std::path::PathBuf, PersistConfig, Arc<Databases>) {
        let dir =
            std::env::temp_dir().join(format!("sessiond-persist-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let config = PersistConfig {
            dir: dir.clone(),
            interval: None,
            ..PersistConfig::default()
        };
        let store = Arc::new(Databases::new(
            crate::clock::Clock::manual(1_700_000_000_000).0,
            1,
        ));
        (dir, config, store)
    }

    #[test]
    fn a_received_snapshot_is_copied_to_its_end_only_and_only_whole() {
        let (dir, _, store) = scratch("receive");
        for i in 0..300 {
            let key = format!("k{i}");
            store.first().upsert(key.as_bytes(), 0, |_| {
                let value = bytes::Bytes::from(vec![b'v'; 100]);
                (
                    Some(crate::store::Entry::new(crate::store::Value::Str(value), 0)),
                    (),
                )
            });
        }
        let options = writer::WriteOptions::default();
        let (mut stream, written) =
            writer::write_stream(&*store, Vec::new(), &options, std::time::Instant::now())
                .expect("snapshot");
        let snapshot_len = stream.len();
        assert_eq!(written.bytes, snapshot_len as u64);
        // The primary's stream follows the snapshot on the same connection.
        stream.extend_from_slice(b"the stream");
        let source = std::path::Path::new("<primary>");
        let mut reader = &stream[..];
        let mut copy = Vec::new();
        let received = loader::receive_stream(&mut reader, source, &mut copy).expect("whole");
        assert_eq!(received, snapshot_len as u64);
        assert_eq!(copy, stream[..snapshot_len]);
        assert_eq!(reader, b"the stream");
        // What was copied loads as the stream would.
        let loaded = Databases::new(crate::clock::Clock::manual(1_700_000_000_000).0, 1);
        let summary = loader::load_stream(&copy[..], source, &loaded).expect("load");
        assert_eq!(summary.records, 300);
        assert_eq!(loaded.len(), 300);

        // Cut short, or one byte changed: refused.
        let error = loader::receive_stream(&stream[..snapshot_len - 5], source, Vec::new())
            .expect_err("cut short");
        assert!(error.to_string().contains("truncated"), "{error}");
        let mut damaged = stream.clone();
        damaged[snapshot_len / 2] ^= 1;
        // (Whether the byte is a length or a record's, the checksum at the latest says so.)
        loader::receive_stream(&damaged[..], source, Vec::new()).expect_err("damaged");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_snapshot_while_a_new_log_is_uncommitted_sets_the_earlier_manifest_aside() {
        let (dir, config, store) = scratch("stale");
        let manifest = config.aof_layout().manifest_path();
        let persistence = Arc::new(Persistence::new(Some(config.clone()), store));
        // A log turned on, committed, and off: its manifest stays, the newest state there is.
        let slot = persistence.claim().expect("the save slot");
        persistence.set_appendonly(true).expect("on");
        let log = persistence.aof().expect("a log");
        assert!(log.claim_rewrite());
        log.rewrite_claimed().expect("committed");
        persistence.running.send_replace(false);
        persistence.set_appendonly(false).expect("off");
        assert!(manifest.exists());

        // On again, its rewrite behind a save: the save is newer than that manifest.
        let slot2 = persistence.claim().expect("the save slot");
        persistence.set_appendonly(true).expect("on");
        assert!(!persistence.aof().expect("a log").committed());
        persistence.run_claimed(&slot2).expect("saved");
        assert!(!manifest.exists(), "a restart loads the newer snapshot");
        persistence.set_appendonly(false).expect("off");
        assert!(!manifest.exists());
        drop(slot);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_dropped_servers_log_stops_though_a_thread_still_holds_it() {
        let (dir, config, store) = scratch("dropped");
        let log = aof::Aof::start(&config.aof, &dir, Arc::clone(&store), u64::MAX).expect("log");
        let persistence = Persistence::new(Some(config), store).with_aof(Some(Arc::clone(&log)));
        // This thread's copy, as a runtime thread that ran a command keeps it.
        assert!(!persistence.read_aof(|log| log.is_some_and(aof::Aof::write_failed)));
        drop(persistence);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !log.threads_ended() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(log.threads_ended(), "the writer and fsync threads end");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_save_is_retried_after_five_seconds_not_a_whole_interval() {
        let minute = Duration::from_secs(60);
        assert_eq!(next_save_delay(minute, true), minute);
        assert_eq!(next_save_delay(minute, false), RETRY_DELAY);
        let second = Duration::from_secs(1);
        assert_eq!(next_save_delay(second, false), second);
    }
}
