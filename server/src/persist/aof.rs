//! The append-only log: every change, as the change feed's frames ([`crate::store::feed`]),
//! appended to a file in the data directory, and replayed at start after the base snapshot it
//! follows (the files: [`super::aof_files`]; the reading: [`super::aof_load`]).
//!
//! **The writer** takes what the feed published since its last turn (the feed's [`Sink`]:
//! every byte, however far behind the writer falls), on the thread that publishes (the feed's
//! pump, or under `always` on a single-threaded runtime the connections' own: see
//! [`Feed::wait_durable`]) right after each publication, writes it with one `write`, then fsyncs as `appendfsync` says; its own
//! thread only ticks (the `everysec` fsync, retries, switches, the rewrite check). `always`: after every write, and a connection
//! sends the replies of its writes only once [`Feed::wait_durable`] says they are on disk — the
//! writes of every connection that arrived during one fsync share the next (group commit).
//! `everysec`: a helper thread fsyncs once a second, so a slow disk never holds up the writes;
//! one still running after 2 s is counted (`aof_delayed_fsync`, as Redis). `no`: the kernel
//! decides. A failed write is undone (the file cut back to its last whole frame) and retried
//! every second, and meanwhile writes are refused with Redis's MISCONF error.
//!
//! **A rewrite** (BGREWRITEAOF, or the log outgrowing `auto-aof-rewrite-percentage` of its
//! size after the last one and `auto-aof-rewrite-min-size`) switches the log at `t0` =
//! [`Feed::cut`]: the writer, reaching `t0`, fsyncs the old log, opens a new one and adds it to
//! the manifest. Then a snapshot of the keyspace (the existing writer, consistent at its
//! journal's close T1 >= T0) becomes the new base, and the manifest is replaced by one naming
//! the new base and the logs from the new one on; the old files go last. Every manifest names
//! complete, fsynced files only, so a crash at any moment leaves the old state or the new one
//! (the feed's documentation argues that base + log from `t0` is the keyspace). A SWAPDB between
//! `t0` and T1 abandons the rewrite, the log being kept whole.
//!
//! **Turned on at run time** (CONFIG SET appendonly yes: [`Aof::start_fresh`]) the log is
//! *uncommitted* until its first rewrite (so is it after a replica's full sync, from
//! [`Aof::set_aside_for_sync`] to [`Aof::finish_restart`]): the frames go to a file no manifest names, a switch
//! adds nothing to the manifest on disk, and the rewrite's commit writes a manifest naming
//! only its base and the logs after it (a crash before restarts as the log was off).
//! **Turned off** ([`Aof::close`]), it is written out and fsynced, and its files stay.
//!
//! Snapshots (SAVE, BGSAVE, the periodic one) go on as before, beside the log, as Redis keeps
//! RDB and AOF independent; at start the log is loaded when it is on and has a manifest.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::aof_files::{create_private, open_at_end, sync_dir, Layout, Manifest, Part};
use super::aof_io::LogFile;
use super::writer;
use crate::store::feed::{Feed, Sink};
use crate::store::Databases;

/// `appendfsync`: when the log is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fsync {
    /// After every write; replies wait for it.
    Always,
    /// Once a second.
    #[default]
    Everysec,
    /// When the kernel decides.
    No,
}

impl Fsync {
    /// The name redis.conf uses.
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Everysec => "everysec",
            Fsync::No => "no",
        }
    }

    /// From its redis.conf name.
    pub fn parse(text: &str) -> Option<Fsync> {
        [Fsync::Always, Fsync::Everysec, Fsync::No]
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(text))
    }

    fn from_u8(value: u8) -> Fsync {
        match value {
            0 => Fsync::Always,
            2 => Fsync::No,
            _ => Fsync::Everysec,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Fsync::Always => 0,
            Fsync::Everysec => 1,
            Fsync::No => 2,
        }
    }
}

/// The log's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AofConfig {
    /// `appendonly`.
    pub enabled: bool,
    /// `appendfsync`.
    pub fsync: Fsync,
    /// `appendfilename`: the name every file of the log starts with.
    pub file_name: String,
    /// `appenddirname`: the log's directory, inside the data directory.
    pub dir_name: String,
    /// `auto-aof-rewrite-percentage`: rewrite once the log grew this much (percent) over its
    /// size after the last rewrite; 0: never automatically.
    pub rewrite_percentage: u64,
    /// `auto-aof-rewrite-min-size`: and is at least this big.
    pub rewrite_min_size: u64,
    /// `aof-load-truncated`: drop a torn last frame at start rather than refuse to start.
    pub load_truncated: bool,
    /// Tests only: a pause after each shard while a base is written (a slow base).
    pub base_shard_delay: Duration,
}

impl Default for AofConfig {
    fn default() -> Self {
        AofConfig {
            enabled: true,
            fsync: Fsync::Everysec,
            file_name: "appendonly.aof".to_owned(),
            dir_name: "appendonlydir".to_owned(),
            rewrite_percentage: 100,
            rewrite_min_size: 64 << 20,
            load_truncated: true,
            base_shard_delay: Duration::ZERO,
        }
    }
}

/// The log's settings as given, each `None` for its default ([`AofConfig::from_settings`]).
#[derive(Debug, Clone, Default)]
pub struct AofSettings {
    /// `appendonly`.
    pub enabled: Option<bool>,
    /// `appendfsync`.
    pub fsync: Option<Fsync>,
    /// `appendfilename`.
    pub file_name: Option<String>,
    /// `appenddirname`.
    pub dir_name: Option<String>,
    /// `auto-aof-rewrite-percentage`.
    pub rewrite_percentage: Option<u64>,
    /// `auto-aof-rewrite-min-size`, bytes.
    pub rewrite_min_size: Option<u64>,
    /// `aof-load-truncated`.
    pub load_truncated: Option<bool>,
    /// `debug-aof-base-shard-delay` (tests only).
    pub base_shard_delay: Option<Duration>,
}

/// How long an `everysec` fsync may run before the next is counted as delayed (Redis's 2 s).
const DELAYED_FSYNC: Duration = Duration::from_secs(2);
/// How often the writer looks at its settings, retries a failed write and checks the size.
const TURN: Duration = Duration::from_millis(100);

/// The outcome of rewrites, for INFO.
#[derive(Debug, Clone, Default)]
pub struct RewriteStatus {
    /// Whether the last rewrite succeeded (true before any).
    pub last_ok: bool,
    /// How long the last one took.
    pub last_duration: Option<Duration>,
    /// When the one in progress started.
    pub started: Option<Instant>,
    /// Rewrites completed.
    pub rewrites: u64,
    /// Its error, if the last failed.
    pub last_error: Option<String>,
    /// When the last one failed, if it did: the automatic rewrite waits after a failure
    /// ([`retry_delay`]) rather than start again at once.
    pub failed_at: Option<Instant>,
    /// Failures in a row (0 after a success).
    pub failures: u32,
}

/// How long the automatic rewrite waits after `failures` failures in a row: [`RETRY_DELAY`],
/// doubling with each further failure up to an hour, as Redis backs off. Each attempt starts a
/// new log file, so a rewrite that keeps failing must not add one every few seconds.
fn retry_delay(failures: u32) -> Duration {
    let doubled = RETRY_DELAY.saturating_mul(1 << failures.saturating_sub(1).min(12));
    doubled.min(Duration::from_secs(3600))
}

/// How long after a failed rewrite the automatic one tries again (as a failed periodic
/// snapshot is retried: `super::RETRY_DELAY`).
const RETRY_DELAY: Duration = super::RETRY_DELAY;

/// The files the writer writes and the manifest names.
#[derive(Debug)]
struct Files {
    manifest: Manifest,
    /// The log being appended to, and its sequence number.
    incr: Option<(LogFile, u64)>,
    /// Its length: where a failed write is cut back to.
    incr_len: u64,
    /// Its size: past `incr_len` by the zeros written ahead under `always` ([`PREALLOCATE`]).
    allocated: u64,
    /// Whether zeros may be written ahead of it: not after a failure to.
    ahead: bool,
    /// The next sequence number.
    next_seq: u64,
}

/// A switch the writer makes once it reaches `at`: a new log, added to the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Switch {
    None,
    At(u64),
    Done { seq: u64 },
    Failed,
}

/// The append-only log of a running server.
#[derive(Debug)]
pub struct Aof {
    layout: Layout,
    dbs: Arc<Databases>,
    feed: Arc<Feed>,
    sink: Arc<Sink>,
    fsync: AtomicU8,
    rewrite_percentage: AtomicU64,
    rewrite_min_size: AtomicU64,
    /// The most bytes the journal of a rewrite's snapshot may hold.
    journal_max_bytes: u64,
    /// [`AofConfig::base_shard_delay`].
    base_shard_delay: Duration,
    files: Mutex<Files>,
    /// Bytes of the stream the writer wrote (stream offset).
    written: AtomicU64,
    /// The size of the base, and of the logs the manifest names.
    base_size: AtomicU64,
    incr_size: AtomicU64,
    /// The log's total size after the last rewrite (what growth is measured against).
    rewrite_base_size: AtomicU64,
    /// Whether the last write failed (writes are refused meanwhile), and its error.
    write_failed: AtomicBool,
    /// The log misses changes: an fsync failed (what the kernel held for the file may be lost
    /// although a later fsync succeeds, "fsyncgate"), or frames that could not be written were
    /// dropped past [`RETRY_LIMIT`]. Nothing is called durable and writes are refused until a
    /// rewrite has put the whole keyspace in new, fsynced files.
    incomplete: AtomicBool,
    /// Times the log was found to miss changes: a rewrite ends `incomplete` only if none was
    /// found since it began (a failure in its own new log is not behind it).
    incomplete_marks: AtomicU64,
    /// The error MISCONF reports. Its lock is also held over every change of `write_failed`,
    /// `incomplete` and the feed's failure with the checks that decide it, so that a recovery
    /// and a new failure cannot interleave (a cleared text, a failure the feed missed).
    write_error: Mutex<Option<String>>,
    delayed_fsync: AtomicU64,
    /// The `everysec` fsync thread, once started.
    fsyncer: Mutex<Option<Arc<FsyncHelper>>>,
    rewriting: AtomicBool,
    rewrite_scheduled: AtomicBool,
    rewrite: Mutex<RewriteStatus>,
    switch: Mutex<Switch>,
    switched: Condvar,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// What a turn of the writer keeps: taken by the publishing thread's call after each
    /// publication (the pump's, or a connection's committing inline), and by the writer
    /// thread's periodic turn.
    writer: Mutex<WriterState>,
    /// The writer thread, to wake before its period is over (a switch, a new setting, a close).
    ticker: std::sync::OnceLock<std::thread::Thread>,
    /// Whether the manifest on disk describes the keyspace. False from a start on a keyspace
    /// the files do not hold ([`Aof::start_fresh`], a replica's full sync) until a rewrite
    /// commits a base of it: meanwhile a switch names no new file on disk (the old manifest
    /// plus new frames would be a mix of two keyspaces), `always` calls nothing durable, and a
    /// rewrite is due (retried as a failed one is).
    committed: AtomicBool,
    /// Turned off ([`Aof::close`]): nothing more is written, switched or committed.
    closed: AtomicBool,
}

/// Why the log cannot start.
#[derive(Debug, thiserror::Error)]
#[error("append-only log {}: {source}", path.display())]
pub struct StartError {
    /// The file or directory.
    pub path: PathBuf,
    /// The error.
    pub source: std::io::Error,
}

impl Aof {
    /// Starts the log for `dbs` (already loaded): the feed is turned on, and the writer appends
    /// to the last log the manifest names, or — without a manifest — a first base is written
    /// from the keyspace as it is and a first log begun.
    pub fn start(
        config: &AofConfig,
        data_dir: &std::path::Path,
        dbs: Arc<Databases>,
        journal_max_bytes: u64,
    ) -> Result<Arc<Aof>, StartError> {
        Aof::open(config, data_dir, dbs, journal_max_bytes, false)
    }

    /// Starts the log on a running server whose keyspace the files do not hold (CONFIG SET
    /// appendonly yes): the frames from now on go to a new log that no manifest names yet,
    /// and the log is uncommitted until a rewrite ([`Aof::rewrite_claimed`], which the caller
    /// starts) writes a base of the keyspace and a manifest naming only it and the logs after
    /// it. A manifest left on disk keeps describing what it did until then, and its files go
    /// at that commit.
    pub fn start_fresh(
        config: &AofConfig,
        data_dir: &std::path::Path,
        dbs: Arc<Databases>,
        journal_max_bytes: u64,
    ) -> Result<Arc<Aof>, StartError> {
        Aof::open(config, data_dir, dbs, journal_max_bytes, true)
    }

    fn open(
        config: &AofConfig,
        data_dir: &std::path::Path,
        dbs: Arc<Databases>,
        journal_max_bytes: u64,
        fresh_from_keyspace: bool,
    ) -> Result<Arc<Aof>, StartError> {
        let layout = Layout {
            dir: data_dir.join(&config.dir_name),
            file_name: config.file_name.clone(),
        };
        let io = |path: &std::path::Path| {
            let path = path.to_owned();
            move |source| StartError { path, source }
        };
        create_dir(&layout.dir).map_err(io(&layout.dir))?;
        let manifest = layout
            .read_manifest()
            .map_err(|e| StartError {
                path: layout.manifest_path(),
                source: std::io::Error::other(e),
            })?
            .unwrap_or_default();
        let feed = Arc::clone(dbs.first().feed());
        feed.enable();
        // The frames are written on the publishing thread, right after it publishes them.
        let driver: Arc<std::sync::OnceLock<Weak<Aof>>> = Arc::default();
        let drives = Arc::clone(&driver);
        let (sink, start) = feed.attach_sink_with(move || {
            if let Some(aof) = drives.get().and_then(Weak::upgrade) {
                aof.drive();
            }
        });
        feed.set_durable(start);
        let aof = Arc::new(Aof {
            layout,
            dbs,
            feed,
            sink,
            fsync: AtomicU8::new(config.fsync.to_u8()),
            rewrite_percentage: AtomicU64::new(config.rewrite_percentage),
            rewrite_min_size: AtomicU64::new(config.rewrite_min_size),
            journal_max_bytes,
            base_shard_delay: config.base_shard_delay,
            files: Mutex::new(Files {
                next_seq: manifest.last_seq() + 1,
                manifest,
                incr: None,
                incr_len: 0,
                allocated: 0,
                ahead: true,
            }),
            written: AtomicU64::new(start),
            base_size: AtomicU64::new(0),
            incr_size: AtomicU64::new(0),
            rewrite_base_size: AtomicU64::new(0),
            write_failed: AtomicBool::new(false),
            incomplete: AtomicBool::new(false),
            incomplete_marks: AtomicU64::new(0),
            write_error: Mutex::new(None),
            delayed_fsync: AtomicU64::new(0),
            fsyncer: Mutex::new(None),
            rewriting: AtomicBool::new(false),
            rewrite_scheduled: AtomicBool::new(false),
            rewrite: Mutex::new(RewriteStatus {
                last_ok: true,
                ..RewriteStatus::default()
            }),
            switch: Mutex::new(Switch::None),
            switched: Condvar::new(),
            threads: Mutex::new(Vec::new()),
            writer: Mutex::new(WriterState {
                retry: Vec::new(),
                retry_at: 0,
                last_fsync: Instant::now(),
            }),
            ticker: std::sync::OnceLock::new(),
            committed: AtomicBool::new(!fresh_from_keyspace),
            closed: AtomicBool::new(false),
        });
        if let Err(error) = aof.begin(fresh_from_keyspace) {
            // The feed as it was: no sink buffers changes no one writes, and a retry does not
            // leave one more behind.
            aof.feed.detach_sink(&aof.sink);
            aof.feed.disable();
            aof.feed.set_durable(u64::MAX);
            return Err(error);
        }
        let _ = driver.set(Arc::downgrade(&aof));
        Ok(aof)
    }

    /// The files of a log being opened, and its writer thread.
    fn begin(self: &Arc<Self>, fresh_from_keyspace: bool) -> Result<(), StartError> {
        let aof = self;
        let fresh = aof.files().manifest.incrs.is_empty();
        if !fresh {
            aof.remove_leftovers();
        }
        if fresh_from_keyspace {
            aof.begin_uncommitted().map_err(|source| StartError {
                path: aof.layout.dir.clone(),
                source,
            })?;
        } else if fresh {
            aof.begin_fresh().map_err(|source| StartError {
                path: aof.layout.dir.clone(),
                source,
            })?;
        } else {
            aof.resume()?;
        }
        aof.measure();
        aof.rewrite_base_size.store(aof.size(), Ordering::Relaxed);
        let writer = Arc::downgrade(aof);
        let thread = std::thread::Builder::new()
            .name("sessiond-aof".to_owned())
            .spawn(move || write_loop(writer))
            .map_err(|source| StartError {
                path: aof.layout.dir.clone(),
                source,
            })?;
        let _ = aof.ticker.set(thread.thread().clone());
        aof.threads().push(thread);
        Ok(())
    }

    /// Removes the files of the log the manifest does not name: a base an interrupted rewrite
    /// wrote, its temporary file, an old manifest's temporary file.
    fn remove_leftovers(&self) {
        let files = self.files();
        let named: Vec<&str> = files
            .manifest
            .base
            .iter()
            .chain(&files.manifest.incrs)
            .map(|p| p.name.as_str())
            .collect();
        let ours = format!("{}.", self.layout.file_name);
        let manifest = format!("{}.manifest", self.layout.file_name);
        let Ok(entries) = std::fs::read_dir(&self.layout.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let leftover = name.starts_with(&ours)
                && name != manifest
                && !named.contains(&name.as_str())
                && (name.contains(".tmp-")
                    || name.ends_with(".base.sdb")
                    || name.ends_with(".incr.aof"));
            if leftover {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => {
                        tracing::info!(file = %entry.path().display(), "removed a file of the append-only log that its manifest does not name")
                    }
                    Err(error) => {
                        tracing::warn!(file = %entry.path().display(), %error, "cannot remove a leftover file of the append-only log")
                    }
                }
            }
        }
    }

    /// No manifest: a base of the keyspace as it is (nothing writes yet) and a first log.
    fn begin_fresh(&self) -> std::io::Result<()> {
        let mut files = self.files();
        let seq = files.next_seq;
        let base = self.layout.base_name(seq);
        writer::write_snapshot(
            &*self.dbs,
            &self.layout.path(&base),
            &writer::WriteOptions {
                journal_max_bytes: u64::MAX,
                ..writer::WriteOptions::default()
            },
        )
        .map_err(std::io::Error::other)?;
        let incr = self.layout.incr_name(seq);
        let incr_path = self.layout.path(&incr);
        let file = create_private(&incr_path)?;
        file.sync_all()?;
        sync_dir(&self.layout.dir)?;
        let manifest = Manifest {
            base: Some(Part { name: base, seq }),
            incrs: vec![Part { name: incr, seq }],
        };
        self.layout.write_manifest(&manifest)?;
        files.manifest = manifest;
        files.incr = Some((LogFile::new(file, &incr_path), seq));
        files.incr_len = 0;
        files.allocated = 0;
        files.ahead = true;
        files.next_seq = seq + 1;
        tracing::info!(dir = %self.layout.dir.display(), seq, "append-only log created");
        Ok(())
    }

    /// A start on a keyspace the files do not hold: a new log, which no manifest names yet.
    /// The manifest read stays in memory only, so that the first commit deletes its files.
    fn begin_uncommitted(&self) -> std::io::Result<()> {
        let mut files = self.files();
        let seq = files.next_seq;
        let name = self.layout.incr_name(seq);
        let path = self.layout.path(&name);
        let file = create_private(&path)?;
        files.manifest.incrs.push(Part { name, seq });
        files.incr = Some((LogFile::new(file, &path), seq));
        files.incr_len = 0;
        files.allocated = 0;
        files.ahead = true;
        files.next_seq = seq + 1;
        tracing::info!(dir = %self.layout.dir.display(), seq, "append-only log started; a rewrite writes its base");
        Ok(())
    }

    /// A manifest: appends continue in its last log.
    fn resume(&self) -> Result<(), StartError> {
        let mut files = self.files();
        let Some(last) = files.manifest.incrs.last().cloned() else {
            return Ok(());
        };
        let path = self.layout.path(&last.name);
        let opened = open_at_end(&path).and_then(|file| Ok((file.metadata()?.len(), file)));
        let (len, file) = opened.map_err(|source| StartError {
            path: path.clone(),
            source,
        })?;
        files.incr = Some((LogFile::new(file, &path), last.seq));
        files.incr_len = len;
        files.allocated = len;
        files.ahead = true;
        Ok(())
    }

    fn files(&self) -> std::sync::MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn threads(&self) -> std::sync::MutexGuard<'_, Vec<std::thread::JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The log's directory and names.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// `appendfsync` now.
    #[inline]
    pub fn fsync(&self) -> Fsync {
        Fsync::from_u8(self.fsync.load(Ordering::Relaxed))
    }

    /// Changes `appendfsync` (CONFIG SET).
    pub fn set_fsync(&self, fsync: Fsync) {
        self.fsync.store(fsync.to_u8(), Ordering::Relaxed);
        self.wake_writer();
    }

    /// `auto-aof-rewrite-percentage` and `auto-aof-rewrite-min-size` now.
    pub fn rewrite_thresholds(&self) -> (u64, u64) {
        (
            self.rewrite_percentage.load(Ordering::Relaxed),
            self.rewrite_min_size.load(Ordering::Relaxed),
        )
    }

    /// Changes `auto-aof-rewrite-percentage` (CONFIG SET).
    pub fn set_rewrite_percentage(&self, percent: u64) {
        self.rewrite_percentage.store(percent, Ordering::Relaxed);
    }

    /// Changes `auto-aof-rewrite-min-size` (CONFIG SET).
    pub fn set_rewrite_min_size(&self, bytes: u64) {
        self.rewrite_min_size.store(bytes, Ordering::Relaxed);
    }

    /// Whether the last write failed: writes are refused until one succeeds.
    #[inline]
    pub fn write_failed(&self) -> bool {
        self.write_failed.load(Ordering::Acquire) || self.incomplete.load(Ordering::Acquire)
    }

    /// The log misses changes (see `incomplete`): writes are refused and nothing more is
    /// called durable until a rewrite succeeds (scheduled here).
    fn mark_incomplete(&self, error: String) {
        self.refuse_writes(error);
        self.schedule_rewrite();
    }

    /// Refuses writes (MISCONF) and calls nothing more durable until a rewrite succeeds: the
    /// log misses changes (`incomplete`), for the retry the caller arranges.
    fn refuse_writes(&self, error: String) {
        // Under the text's lock, as every change of the failure flags: no check of them
        // elsewhere (a recovery) can fall between the flag and the feed's.
        let mut text = self.write_error.lock().unwrap_or_else(|p| p.into_inner());
        self.incomplete_marks.fetch_add(1, Ordering::SeqCst);
        // The text first: a MISCONF refusal that sees the flag reads it.
        *text = Some(error.clone());
        if !self.incomplete.swap(true, Ordering::SeqCst) {
            tracing::error!(%error, "the append-only log misses changes; refusing writes until a rewrite succeeds");
        }
        self.feed.mark_failed(true);
    }

    /// The last write's error, while writes fail.
    pub fn write_error(&self) -> Option<String> {
        self.write_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The change feed the log writes.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    /// The log's size: the base and the logs the manifest names (`aof_current_size`).
    pub fn size(&self) -> u64 {
        self.base_size.load(Ordering::Relaxed) + self.incr_size.load(Ordering::Relaxed)
    }

    /// The base's size (`aof_base_size`).
    pub fn base_size(&self) -> u64 {
        self.base_size.load(Ordering::Relaxed)
    }

    /// Bytes published and not yet written (`aof_buffer_length`).
    pub fn buffered(&self) -> u64 {
        self.sink.pending_bytes()
    }

    /// `everysec` fsyncs that were still running 2 s after they started (`aof_delayed_fsync`).
    pub fn delayed_fsyncs(&self) -> u64 {
        self.delayed_fsync.load(Ordering::Relaxed)
    }

    /// Whether an `everysec` fsync is running (`aof_pending_bio_fsync`).
    pub fn fsync_pending(&self) -> bool {
        let fsyncer = self.fsyncer.lock().unwrap_or_else(|p| p.into_inner());
        fsyncer
            .as_ref()
            .is_some_and(|h| h.running_since().is_some())
    }

    /// Whether a rewrite runs, and whether one waits for a snapshot to finish.
    pub fn rewrite_state(&self) -> (bool, bool) {
        (
            self.rewriting.load(Ordering::Relaxed),
            self.rewrite_scheduled.load(Ordering::Relaxed),
        )
    }

    /// The outcome of rewrites so far.
    pub fn rewrite_status(&self) -> RewriteStatus {
        self.rewrite
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Recomputes the sizes from the files the manifest names (the one being written as long
    /// as its frames, without the zeros written ahead).
    fn measure(&self) {
        let files = self.files();
        let size =
            |part: &Part| std::fs::metadata(self.layout.path(&part.name)).map_or(0, |m| m.len());
        let base = files.manifest.base.as_ref().map_or(0, size);
        let current = files.incr.as_ref().map(|(_, seq)| *seq);
        let incr = files
            .manifest
            .incrs
            .iter()
            .map(|part| match current {
                Some(seq) if seq == part.seq => files.incr_len,
                _ => size(part),
            })
            .sum();
        self.base_size.store(base, Ordering::Relaxed);
        self.incr_size.store(incr, Ordering::Relaxed);
    }

    /// Marks a rewrite as wanted (BGREWRITEAOF while a snapshot runs): it starts once the
    /// snapshot is done.
    pub fn schedule_rewrite(&self) {
        self.rewrite_scheduled.store(true, Ordering::Relaxed);
    }

    /// Claims the right to rewrite; false if one runs.
    pub fn claim_rewrite(&self) -> bool {
        !self.rewriting.swap(true, Ordering::SeqCst)
    }

    /// Runs a rewrite claimed with [`Aof::claim_rewrite`] (on a blocking thread; the caller
    /// holds the snapshot claim too: one snapshot at a time uses the journal).
    pub fn rewrite_claimed(&self) -> Result<(), String> {
        self.rewrite_claimed_from(None)
    }

    /// A rewrite claimed; `restart`: the switch [`Aof::begin_restart`] asked for, and the
    /// SWAPDB count then (`None`: a switch at the feed's end now).
    fn rewrite_claimed_from(&self, restart: Option<u64>) -> Result<(), String> {
        self.rewrite_scheduled.store(false, Ordering::Relaxed);
        let started = Instant::now();
        self.rewrite_lock().started = Some(started);
        tracing::info!(dir = %self.layout.dir.display(), "rewriting the append-only log");
        let marks = self.incomplete_marks.load(Ordering::SeqCst);
        let result = self.rewrite_steps(restart);
        let mut status = self.rewrite_lock();
        status.started = None;
        match &result {
            Ok(()) => {
                // The keyspace is in new, fsynced files: an earlier fsync failure is behind,
                // one found since the rewrite began (in its new log) is not.
                let mut text = self.write_error.lock().unwrap_or_else(|p| p.into_inner());
                if self.incomplete_marks.load(Ordering::SeqCst) == marks
                    && self.incomplete.swap(false, Ordering::SeqCst)
                    && !self.write_failed.load(Ordering::SeqCst)
                    && !self.closed.load(Ordering::SeqCst)
                {
                    tracing::info!("the append-only log is writable again");
                    *text = None;
                    self.feed.mark_failed(false);
                }
                drop(text);
                status.last_ok = true;
                status.last_error = None;
                status.failed_at = None;
                status.failures = 0;
                status.last_duration = Some(started.elapsed());
                status.rewrites += 1;
                tracing::info!(
                    size = self.size(),
                    duration_ms = started.elapsed().as_millis() as u64,
                    "append-only log rewritten"
                );
            }
            Err(error) => {
                status.last_ok = false;
                status.last_error = Some(error.clone());
                status.failed_at = Some(Instant::now());
                status.failures = status.failures.saturating_add(1);
                if self.closed.load(Ordering::SeqCst) {
                    // The feed may serve a log turned on since: this one changes nothing there.
                    tracing::info!(%error, "append-only log rewrite ended: the log was turned off");
                } else if self.committed.load(Ordering::SeqCst) {
                    tracing::error!(%error, "append-only log rewrite failed; the log is intact");
                } else {
                    tracing::error!(%error, "append-only log rewrite failed; the log has no base of the keyspace yet (a restart loads what it loaded before), retrying");
                    // Nothing is stored where a restart would find it: under `always`,
                    // waiting replies are let go unsent, and later writes are refused
                    // (MISCONF) rather than run and their clients closed, until a retry (the
                    // failed rewrites' back-off) succeeds.
                    self.refuse_writes(format!("the log has no base yet: {error}"));
                }
            }
        }
        drop(status);
        self.rewriting.store(false, Ordering::SeqCst);
        result
    }

    fn rewrite_lock(&self) -> std::sync::MutexGuard<'_, RewriteStatus> {
        self.rewrite.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn rewrite_steps(&self, restart: Option<u64>) -> Result<(), String> {
        let swaps = match restart {
            Some(swaps) => swaps,
            None => {
                // The switch: frames from `t0` on go to a new log, which the manifest names at
                // once (once committed). The SWAPDB count is read with it (see `cut_after`).
                let (swaps, t0) = self.feed.cut_after(|| self.feed.swaps());
                *self.switch_lock() = Switch::At(t0);
                self.wake_writer();
                swaps
            }
        };
        let asked = Instant::now();
        let seq = {
            let mut switch = self.switch_lock();
            loop {
                match *switch {
                    Switch::Done { seq } => break seq,
                    Switch::Failed => {
                        *switch = Switch::None;
                        return Err("cannot start a new log file".to_owned());
                    }
                    _ if self.closed.load(Ordering::SeqCst) => {
                        *switch = Switch::None;
                        return Err("the log was turned off".to_owned());
                    }
                    // The writer reaches `t0` only once it can write: while it cannot, the
                    // rewrite (and the save slot it holds) does not wait for ever.
                    _ if self.write_failed.load(Ordering::SeqCst)
                        && asked.elapsed() >= SWITCH_WAIT =>
                    {
                        *switch = Switch::None;
                        return Err("the log cannot be written: no switch to a new file".to_owned());
                    }
                    _ => {
                        switch = self
                            .switched
                            .wait_timeout(switch, TURN)
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                    }
                }
            }
        };
        *self.switch_lock() = Switch::None;
        // The base: the keyspace at the journal's close, after `t0`. Or, when the new log
        // holds every change from `t0` on (this log is committed and misses nothing), each key
        // as its shard was read after `t0`: replayed over it, that log brings every key to the
        // same instant (see `store::feed`), once it is on disk up to the end of the walk
        // (below). That spares every write made during the rewrite its journal record. Not
        // on a replica: it applies its primary's frames record by record and numbers each
        // after, so a walk could see half of one numbered past the end it waits for.
        let fuzzy = restart.is_none()
            && !self.dbs.following()
            && self.committed.load(Ordering::SeqCst)
            && !self.incomplete.load(Ordering::SeqCst);
        let base = self.layout.base_name(seq);
        let base_path = self.layout.path(&base);
        let options = writer::WriteOptions {
            journal_max_bytes: self.journal_max_bytes,
            consistent: !fuzzy,
            shard_delay: self.base_shard_delay,
        };
        let written = writer::write_snapshot(&*self.dbs, &base_path, &options);
        if written.is_ok() && self.feed.swaps() != swaps {
            let _ = std::fs::remove_file(&base_path);
            return Err("a SWAPDB ran during the rewrite; it was abandoned".to_owned());
        }
        written.map_err(|e| format!("{}: {e}", base_path.display()))?;
        if fuzzy {
            let durable = if self.dbs.following() {
                Err("the server became a replica during the rewrite".to_owned())
            } else {
                self.durable_through(self.feed.end_offset())
            };
            if let Err(error) = durable {
                let _ = std::fs::remove_file(&base_path);
                return Err(error);
            }
        }
        // The commit: base `seq` and the logs from `seq` on.
        let mut files = self.files();
        if self.closed.load(Ordering::SeqCst) {
            let _ = std::fs::remove_file(&base_path);
            return Err("the log was turned off".to_owned());
        }
        let old = files.manifest.clone();
        let manifest = Manifest {
            base: Some(Part { name: base, seq }),
            incrs: old.incrs.iter().filter(|p| p.seq >= seq).cloned().collect(),
        };
        if let Err(e) = self.layout.write_manifest(&manifest) {
            // Renamed, the manifest a crash finds may name the new base: it stays (a later
            // start removes it if the old manifest is the one on disk).
            if !e.renamed {
                let _ = std::fs::remove_file(&base_path);
            }
            return Err(format!("{}: {e}", self.layout.manifest_path().display()));
        }
        files.manifest = manifest;
        let was_committed = self.committed.swap(true, Ordering::SeqCst);
        drop(files);
        if !was_committed {
            tracing::info!(dir = %self.layout.dir.display(), seq, "the append-only log holds the keyspace now");
            let text = self.write_error.lock().unwrap_or_else(|p| p.into_inner());
            if !self.write_failed() {
                self.feed.mark_failed(false);
            }
            drop(text);
            // Under `always`, the writes since the start become durable at its next turn.
            self.wake_writer();
        }
        for part in old.base.iter().chain(&old.incrs).filter(|p| p.seq < seq) {
            let _ = std::fs::remove_file(self.layout.path(&part.name));
        }
        self.measure();
        self.rewrite_base_size.store(self.size(), Ordering::Relaxed);
        Ok(())
    }

    /// A replica's full sync is about to replace the keyspace (the caller holds the save slot,
    /// before the load begins): the log is uncommitted and its manifest set aside
    /// (`<name>.stale`), so that from now until a base of the new keyspace is committed a crash
    /// restarts from the snapshot file or empty, never from the old log followed by the new
    /// keyspace's frames.
    pub fn set_aside_for_sync(&self) {
        let files = self.files();
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        // Uncommitted already (CONFIG SET appendonly yes not yet rewritten), the manifest on
        // disk is an earlier log's: older than the keyspace being replaced, set aside too.
        self.committed.store(false, Ordering::SeqCst);
        drop(files);
        super::set_aside_manifest(&self.layout, "a full sync replaces the keyspace");
    }

    /// A snapshot newer than the manifest an earlier log left was written while this log is
    /// uncommitted: that manifest is set aside (`<name>.stale`), so a restart loads the
    /// snapshot. Nothing once this log is committed: the manifest is its own then.
    pub fn set_aside_earlier_manifest(&self) {
        let _files = self.files();
        if self.closed.load(Ordering::SeqCst) || self.committed.load(Ordering::SeqCst) {
            return;
        }
        super::set_aside_manifest(
            &self.layout,
            "a snapshot newer than the log was written before the new log's first rewrite",
        );
    }

    /// The feed just restarted at `offset` on the keyspace a full sync loaded, before anything
    /// changes it (under the replication link's lock: no I/O here, but it waits for a turn of
    /// the writer in progress): frames from `offset` on go to a new log. Returns the SWAPDB
    /// count, for [`Aof::finish_restart`].
    pub fn begin_restart(&self, offset: u64) -> u64 {
        self.committed.store(false, Ordering::SeqCst);
        let swaps = self.feed.swaps();
        {
            // After a turn on frames taken before the restart (its runs carry the old
            // stream's offsets, which the switch point must not fall in): the writer follows
            // the new stream before the switch is asked for.
            let mut state = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            self.follow_restart(&mut state, offset);
            *self.switch_lock() = Switch::At(offset);
        }
        self.wake_writer();
        swaps
    }

    /// Writes the base of the keyspace [`Aof::begin_restart`] began a log for, and commits the
    /// manifest naming it and the new log (the caller holds the save slot). On failure the log
    /// stays uncommitted and a rewrite is retried as a failed one is.
    pub fn finish_restart(&self, swaps: u64) -> Result<(), String> {
        if !self.claim_rewrite() {
            return Err("a rewrite runs already".to_owned());
        }
        self.rewrite_claimed_from(Some(swaps))
    }

    /// Turns the log off (CONFIG SET appendonly no), as Redis's `stopAppendOnly`: every change
    /// made so far is written and fsynced, then the files are closed (they stay on
    /// disk) and the feed loses a user. A rewrite under way fails at its commit; waiters for
    /// durability are let go.
    pub fn close(&self) {
        // Every change made before the stop, queued or published, as Redis flushes its buffer;
        // those this thread holds (CONFIG SET after a write in one pipeline) are sent first.
        self.feed.release_held();
        self.wait_written();
        self.feed.detach_sink(&self.sink);
        {
            let mut state = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let (start, chunks) = self.sink.take(Duration::ZERO);
            self.turn(&mut state, start, chunks, Fsync::No);
            if !state.retry.is_empty() {
                tracing::warn!("the append-only log is turned off with changes it could not write");
            }
            self.closed.store(true, Ordering::SeqCst);
        }
        let mut files = self.files();
        if let Some((file, _)) = files.incr.take() {
            if let Err(error) = file.sync_data() {
                tracing::error!(%error, "cannot fsync the append-only log as it is turned off");
            }
        }
        drop(files);
        if let Some(helper) = &*self.fsyncer.lock().unwrap_or_else(|p| p.into_inner()) {
            helper.stop.store(true, Ordering::SeqCst);
            helper.ready.notify_all();
        }
        self.feed.disable();
        self.feed.set_durable(u64::MAX);
        self.wake_writer();
        tracing::info!(dir = %self.layout.dir.display(), "append-only log turned off");
    }

    /// Stops the log's threads and closes its file, writing nothing more: its server is gone
    /// (dropped, not shut down: a crash, as far as the files go). A thread's cached copy
    /// ([`super::Persistence`]'s `read_aof`) may keep it a while longer, with nothing
    /// running.
    pub fn abandon(&self) {
        {
            // Between two turns of the writer, which then sees the log closed.
            let _turn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            if self.closed.swap(true, Ordering::SeqCst) {
                // Closed already (CONFIG SET appendonly no): nothing runs.
                return;
            }
            self.files().incr = None;
        }
        self.wake_writer();
        if let Some(helper) = &*self.fsyncer.lock().unwrap_or_else(|p| p.into_inner()) {
            helper.stop.store(true, Ordering::SeqCst);
            helper.ready.notify_all();
        }
        self.feed.detach_sink(&self.sink);
        self.feed.disable();
    }

    /// Whether the log's threads (writer, fsync) have all ended.
    #[cfg(test)]
    pub fn threads_ended(&self) -> bool {
        self.threads()
            .iter()
            .all(std::thread::JoinHandle::is_finished)
    }

    /// Takes the rewrite history of the log this one follows (turned off, then on again), so
    /// that INFO's `aof_rewrites` and `aof_last_bgrewrite_status` count for the server, as
    /// Redis's do. Before this log's first rewrite.
    pub fn continue_history(&self, earlier: &RewriteStatus) {
        let mut status = self.rewrite_lock();
        status.rewrites = earlier.rewrites;
        status.last_ok = earlier.last_ok;
        status.last_duration = earlier.last_duration;
        status.last_error = earlier.last_error.clone();
    }

    /// Whether the manifest on disk describes the keyspace (see `committed`).
    pub fn committed(&self) -> bool {
        self.committed.load(Ordering::SeqCst)
    }

    fn switch_lock(&self) -> std::sync::MutexGuard<'_, Switch> {
        self.switch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the log grew past the thresholds since the last rewrite.
    pub fn wants_rewrite(&self) -> bool {
        // A log that misses changes, or that no manifest names yet, is rewritten whatever its
        // size.
        let incomplete =
            self.incomplete.load(Ordering::SeqCst) || !self.committed.load(Ordering::SeqCst);
        let (percent, min_size) = self.rewrite_thresholds();
        let size = self.size();
        let base = self.rewrite_base_size.load(Ordering::Relaxed).max(1);
        let grown =
            percent != 0 && size >= min_size && size.saturating_sub(base) * 100 / base >= percent;
        if !incomplete && !grown {
            return false;
        }
        let status = self.rewrite_lock();
        status
            .failed_at
            .is_none_or(|at| at.elapsed() >= retry_delay(status.failures))
    }

    /// Waits (at most 30 s, and not while writes fail) until everything changed so far is
    /// written, then fsyncs the log (shutdown).
    pub fn sync(&self) {
        self.wait_written();
        let files = self.files();
        if let Some((file, _)) = &files.incr {
            // Durable only where a restart loads it: not in a log no manifest names yet. Not
            // while writes fail either: that would clear the failure, and replies would wait
            // for changes still unwritten instead of being let go.
            if file.sync_data().is_ok()
                && !self.write_failed()
                && self.committed.load(Ordering::SeqCst)
            {
                self.feed.mark_durable(self.written.load(Ordering::SeqCst));
            }
        }
    }
}

impl Aof {
    /// Waits (at most 30 s, and not while writes fail) until every change made so far is
    /// written.
    fn wait_written(&self) {
        self.wait_written_to(self.feed.end_offset());
    }

    /// Makes the log durable up to `target` (a fuzzy base's end) before the base that needs
    /// it is committed: waits for the writer to reach it, then fsyncs.
    fn durable_through(&self, target: u64) -> Result<(), String> {
        self.wait_written_to(target);
        if self.written.load(Ordering::SeqCst) < target {
            return Err("the new log could not be written up to the end of its base".to_owned());
        }
        // On a handle of its own: the writer (and the pump behind it) goes on meanwhile.
        let file = match self.files().incr.as_ref().map(|(file, _)| file.try_clone()) {
            Some(Ok(file)) => file,
            Some(Err(error)) => return Err(strerror(&error)),
            None => return Err("the log is closed".to_owned()),
        };
        if let Err(error) = file.sync_data() {
            let error = strerror(&error);
            self.mark_incomplete(error.clone());
            return Err(error);
        }
        // An `everysec` fsync running meanwhile may have taken the error this one would have
        // seen (the kernel reports a lost write to one caller): wait for it, then look.
        let helper = self
            .fsyncer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(helper) = helper {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !helper.idle() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if !helper.idle() {
                return Err("an fsync of the log did not end in 30 s".to_owned());
            }
            let failed = helper
                .error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(error) = failed {
                self.mark_incomplete(error.clone());
                return Err(error);
            }
        }
        if self.write_failed() {
            return Err("the new log misses changes".to_owned());
        }
        // True of the files named now too: the new log is in the manifest already.
        self.feed.mark_durable(target);
        Ok(())
    }

    /// Waits (at most 30 s, and not while writes fail) until the log is written up to
    /// `target`.
    fn wait_written_to(&self, target: u64) {
        // The pump publishes what was queued before `target` shortly, the writer writes it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.written.load(Ordering::SeqCst) < target && Instant::now() < deadline {
            if self.write_failed() || self.closed.load(Ordering::SeqCst) {
                break;
            }
            self.wake_writer();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Aof {
    fn drop(&mut self) {
        // The writer holds only a weak reference and ends on its own; the fsync thread is told.
        if let Some(helper) = &*self.fsyncer.lock().unwrap_or_else(|p| p.into_inner()) {
            helper.stop.store(true, Ordering::SeqCst);
            helper.ready.notify_all();
        }
    }
}

fn create_dir(dir: &std::path::Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)?;
    // A new directory's entry is in its parent: without this fsync, a power loss soon after
    // the first start could drop the whole log, writes acknowledged under `always` included.
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => super::aof_files::sync_dir(parent),
        _ => super::aof_files::sync_dir(std::path::Path::new(".")),
    }
}

/// An error as Redis's MISCONF reply and log show it: `strerror`'s text, without the
/// " (os error N)" Rust adds (`MISCONF Errors writing to the AOF file: No space left on device`).
fn strerror(error: &std::io::Error) -> String {
    let text = error.to_string();
    match error.raw_os_error() {
        Some(code) => match text.strip_suffix(&format!(" (os error {code})")) {
            Some(bare) => bare.to_owned(),
            None => text,
        },
        None => text,
    }
}

/// How long a rewrite waits for the writer to switch files while the log cannot be written.
/// (Short in tests, which wait for it.)
const SWITCH_WAIT: Duration = Duration::from_millis(if cfg!(test) { 200 } else { 10_000 });

/// The most bytes of frames a log that cannot be written holds for a retry (outside
/// `maxmemory`); past it they are dropped and the log must be rewritten.
/// (Small in tests, which fill it.)
const RETRY_LIMIT: u64 = if cfg!(test) { 64 << 10 } else { 64 << 20 };

/// The writer's state between turns.
#[derive(Debug)]
struct WriterState {
    /// Frames taken but not written (after a failed write), and their first offset.
    retry: Vec<Bytes>,
    retry_at: u64,
    last_fsync: Instant,
}

/// The zeros the writer writes ahead of the log under `always`, at a time: 4 MiB, written
/// once per 4 MiB of log.
const PREALLOCATE: u64 = 4 << 20;

/// The writer thread: until the log is dropped, a turn every [`TURN`] (every
/// second while writes fail) or when woken: the `everysec` fsync, retries, switches, and the
/// automatic rewrite's check. The frames themselves are written by the publishing thread's
/// call ([`Aof::drive`]) as soon as they are published.
fn write_loop(aof: Weak<Aof>) {
    loop {
        let wait = match aof.upgrade() {
            None => return,
            Some(aof) if aof.closed.load(Ordering::SeqCst) => return,
            Some(aof) if aof.write_failed() => Duration::from_secs(1),
            Some(_) => TURN,
        };
        std::thread::park_timeout(wait);
        match aof.upgrade() {
            None => return,
            Some(aof) => aof.drive(),
        }
    }
}

impl Aof {
    /// One turn of the writer on what the feed published since the last.
    fn drive(&self) {
        let mut state = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let (start, chunks) = self.sink.take(Duration::ZERO);
        self.turn(&mut state, start, chunks, self.fsync());
    }

    /// Wakes the writer thread for a turn now.
    fn wake_writer(&self) {
        if let Some(ticker) = self.ticker.get() {
            ticker.unpark();
        }
    }

    /// The stream restarted at `start`: what the writer holds, and its position, belong to
    /// the old one.
    fn follow_restart(&self, state: &mut WriterState, start: u64) {
        state.retry.clear();
        self.written.store(start, Ordering::SeqCst);
        // An `everysec` fsync of the old stream, asked for, running or done, reached an
        // offset of that stream: called durable now, it could lie past the new one.
        if let Some(helper) = &*self.fsyncer.lock().unwrap_or_else(|p| p.into_inner()) {
            let mut request = helper.request.lock().unwrap_or_else(|p| p.into_inner());
            *request = None;
            helper.epoch.fetch_add(1, Ordering::SeqCst);
            helper.synced.store(0, Ordering::SeqCst);
        }
    }

    /// One turn of the writer.
    fn turn(&self, state: &mut WriterState, start: u64, chunks: Vec<Bytes>, fsync: Fsync) {
        // A replica's full sync restarts the feed at its primary's offset (`Feed::reset`):
        // what the writer holds belongs to the keyspace the sync replaced (the sync schedules
        // a rewrite), and its position follows the stream's.
        let held: u64 = state.retry.iter().map(|f| f.len() as u64).sum();
        let expected = if state.retry.is_empty() {
            self.written.load(Ordering::SeqCst)
        } else {
            state.retry_at + held
        };
        if start != expected {
            self.follow_restart(state, start);
        }
        let mut pending = std::mem::take(&mut state.retry);
        let at = if pending.is_empty() {
            start
        } else {
            state.retry_at
        };
        pending.extend(chunks);
        self.maybe_switch(at);
        if !pending.is_empty() {
            match self.write_frames(at, &pending, fsync) {
                Ok(()) => {
                    if self.write_failed.load(Ordering::SeqCst) {
                        let mut text = self.write_error.lock().unwrap_or_else(|p| p.into_inner());
                        if self.write_failed.swap(false, Ordering::SeqCst)
                            && !self.incomplete.load(Ordering::SeqCst)
                        {
                            tracing::info!("the append-only log is writable again");
                            *text = None;
                            self.feed.mark_failed(false);
                        }
                    }
                }
                Err(error) => {
                    let mut text = self.write_error.lock().unwrap_or_else(|p| p.into_inner());
                    // The text first: a MISCONF refusal that sees the flag reads it.
                    *text = Some(strerror(&error));
                    if !self.write_failed.swap(true, Ordering::SeqCst) {
                        tracing::error!(%error, "cannot write the append-only log; refusing writes until it can");
                    }
                    self.feed.mark_failed(true);
                    drop(text);
                    // What a flush before the failure wrote (up to a rewrite's switch) is in
                    // the old file already: only the rest is retried, or a frame would be
                    // written twice (a SWAPDB replayed twice swaps back).
                    let written = self.written.load(Ordering::SeqCst);
                    let mut retry_at = at;
                    let mut kept = Vec::with_capacity(pending.len());
                    for run in pending {
                        let end = retry_at + run.len() as u64;
                        if !kept.is_empty() || end > written {
                            // A run is cut where the switch fell in it.
                            let skip = written.saturating_sub(retry_at) as usize;
                            kept.push(if skip > 0 { run.slice(skip..) } else { run });
                            retry_at = retry_at.max(written);
                        } else {
                            retry_at = end;
                        }
                    }
                    state.retry = kept;
                    state.retry_at = retry_at;
                    // Bounded: past the limit the frames are dropped (the log misses them now)
                    // rather than held while the disk stays full.
                    let held: u64 = state.retry.iter().map(|f| f.len() as u64).sum();
                    if held > RETRY_LIMIT {
                        state.retry.clear();
                        state.retry_at += held;
                        self.written.store(state.retry_at, Ordering::SeqCst);
                        self.mark_incomplete(format!(
                            "{held} bytes of changes dropped while the log could not be written: {}",
                            strerror(&error)
                        ));
                    }
                    return;
                }
            }
        }
        let written = self.written.load(Ordering::SeqCst);
        let (background_error, synced) = self
            .fsyncer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map_or((None, 0), |helper| {
                let error = helper
                    .error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                (error, helper.synced.swap(0, Ordering::SeqCst))
            });
        if let Some(error) = background_error {
            self.mark_incomplete(error);
        }
        // What the fsync thread put on disk is called durable here, after its errors, and only
        // while the log misses nothing: a later fsync that works proves nothing about the
        // bytes an earlier failed one lost.
        if synced != 0
            && !self.incomplete.load(Ordering::SeqCst)
            && self.committed.load(Ordering::SeqCst)
        {
            self.feed.mark_durable(synced);
        }
        match fsync {
            Fsync::Always => {
                if written > self.feed.durable().offset || !pending.is_empty() {
                    let synced = self.files().incr.as_ref().map(|(f, _)| f.sync_data());
                    match synced {
                        Some(Err(error)) => self.mark_incomplete(strerror(&error)),
                        _ if self.incomplete.load(Ordering::SeqCst)
                            || !self.committed.load(Ordering::SeqCst) => {}
                        _ => self.feed.mark_durable(written),
                    }
                }
            }
            Fsync::Everysec if state.last_fsync.elapsed() >= Duration::from_secs(1) => {
                state.last_fsync = Instant::now();
                self.fsync_in_background(written);
            }
            Fsync::Everysec | Fsync::No => {}
        }
        if self.wants_rewrite() && !self.rewrite_state().0 {
            self.schedule_rewrite();
        }
    }

    /// Makes the switch a rewrite asked for when the writer stands at its offset.
    fn maybe_switch(&self, at: u64) {
        let mut switch = self.switch_lock();
        let Switch::At(t0) = *switch else {
            return;
        };
        if self.written.load(Ordering::SeqCst) != t0 || at > t0 {
            // Not there yet (frames before `t0` are still to come); `at > t0` cannot happen:
            // the sink hands out every byte in order.
            return;
        }
        *switch = match self.open_next() {
            Ok(seq) => Switch::Done { seq },
            Err(error) => {
                tracing::error!(%error, "cannot start a new append-only log file");
                Switch::Failed
            }
        };
        drop(switch);
        self.switched.notify_all();
    }

    /// fsyncs the log, starts the next one and names it in the manifest.
    fn open_next(&self) -> std::io::Result<u64> {
        let mut files = self.files();
        if self.closed.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("the log was turned off"));
        }
        if let Some((file, _)) = &files.incr {
            // Its zeros written ahead go: it is complete, and sized as its frames.
            if files.allocated > files.incr_len {
                let _ = file.set_len(files.incr_len);
            }
            if let Err(error) = file.sync_data() {
                // As any failed fsync: what it covered may be lost although a later one works.
                self.mark_incomplete(strerror(&error));
                // The rewrite that asked for the switch fails with this: the automatic one
                // tries again after its delay, not at once over and over.
                self.rewrite_scheduled.store(false, Ordering::Relaxed);
                return Err(error);
            }
        }
        let seq = files.next_seq;
        let name = self.layout.incr_name(seq);
        let path = self.layout.path(&name);
        let file = create_private(&path)?;
        file.sync_all()?;
        sync_dir(&self.layout.dir)?;
        let mut manifest = files.manifest.clone();
        manifest.incrs.push(Part { name, seq });
        // Uncommitted, the manifest on disk still names an older keyspace: adding the new file
        // to it would make a mix; the rewrite's commit names it.
        if self.committed.load(Ordering::SeqCst) {
            self.layout.write_manifest(&manifest)?;
        }
        files.manifest = manifest;
        files.incr = Some((LogFile::new(file, &path), seq));
        files.incr_len = 0;
        files.allocated = 0;
        files.ahead = true;
        files.next_seq = seq + 1;
        Ok(seq)
    }

    /// Writes `frames` (from stream offset `at`) to the log, switching files where a rewrite
    /// asked; on an error the file is cut back to where it was, so no frame is left half
    /// written.
    fn write_frames(&self, at: u64, frames: &[Bytes], fsync: Fsync) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom};
        let mut offset = at;
        // The runs' bytes as they are, written with one `writev` (copying them into one
        // buffer first cost a copy of every byte logged and a reallocation as it grew).
        let mut batch: Vec<&[u8]> = Vec::with_capacity(frames.len());
        let flush = |batch: &mut Vec<&[u8]>, offset: u64| -> std::io::Result<()> {
            let len: usize = batch.iter().map(|run| run.len()).sum();
            if len == 0 {
                batch.clear();
                return Ok(());
            }
            let mut files = self.files();
            let before = files.incr_len;
            let Some((mut file, _)) = files.incr.as_ref().map(|(f, s)| (f, *s)) else {
                return Err(std::io::Error::other("no log file open"));
            };
            let mut allocated = files.allocated;
            let mut ahead = files.ahead;
            let end = before + len as u64;
            if fsync == Fsync::Always {
                if end > allocated && ahead {
                    // Zeros ahead, fsynced with this turn: the file's size then stays put for
                    // the next writes, and their fsyncs flush data only, not the filesystem's
                    // journal (about a quarter more throughput under `always`).
                    let to = end.next_multiple_of(PREALLOCATE) + PREALLOCATE;
                    match file.zero_fill(allocated, to - allocated) {
                        Ok(()) => allocated = to,
                        Err(_) => {
                            // The disk is full, say: this file's writes append as before (not
                            // trying again each turn, which would take the disk's last space
                            // from a snapshot writing meanwhile).
                            let _ = file.set_len(allocated);
                            ahead = false;
                        }
                    }
                }
            } else if allocated > before {
                // Zeros written ahead are for `always` only: writes that wait a second for
                // their fsync could reach the disk out of order across them, and a start
                // would see zeros, then frames.
                if file.set_len(before).is_ok() {
                    allocated = before;
                }
            }
            if let Err(error) = file.write_all_slices(batch) {
                // No frame left half written: the retry appends where this one began. The file
                // is not opened in append mode (a new one is created truncated), so its
                // position is moved back too, or the retry would leave a hole of zeros.
                // Both are tried: the position moved back is what the retry needs (it writes
                // the same frames and more over what the cut left).
                let cut = file.set_len(before).is_ok();
                let undone = file.seek(SeekFrom::Start(before));
                files.allocated = if cut { before } else { allocated };
                files.ahead = ahead;
                if let Err(undo) = undone {
                    // The retry would write after a torn frame: a rewrite replaces the file.
                    self.mark_incomplete(format!(
                        "cannot undo a failed write: {}",
                        strerror(&undo)
                    ));
                }
                return Err(error);
            }
            files.incr_len = end;
            files.allocated = allocated.max(end);
            files.ahead = ahead;
            drop(files);
            self.incr_size.fetch_add(len as u64, Ordering::Relaxed);
            self.written.store(offset, Ordering::SeqCst);
            batch.clear();
            Ok(())
        };
        for run in frames {
            // A run of whole frames; a rewrite's switch point (a frame boundary) may fall in
            // it: what comes before goes to the old log.
            let end = offset + run.len() as u64;
            let split = match *self.switch_lock() {
                Switch::At(t0) if (offset..end).contains(&t0) => Some((t0 - offset) as usize),
                _ => None,
            };
            let mut rest: &[u8] = run;
            if let Some(before) = split {
                batch.push(&rest[..before]);
                offset += before as u64;
                rest = &rest[before..];
                flush(&mut batch, offset)?;
                self.maybe_switch(offset);
            }
            batch.push(rest);
            offset = end;
        }
        flush(&mut batch, offset)?;
        self.maybe_switch(offset);
        Ok(())
    }

    /// `everysec`: asks the helper thread to fsync what is written; counts a delayed fsync when
    /// the previous one still runs after 2 s (it then covers this one's bytes too).
    fn fsync_in_background(&self, written: u64) {
        let file = match self.files().incr.as_ref().map(|(f, _)| f.try_clone()) {
            Some(Ok(file)) => file,
            _ => return,
        };
        let helper = {
            let mut fsyncer = self.fsyncer.lock().unwrap_or_else(|p| p.into_inner());
            if fsyncer.is_none() {
                let helper = Arc::new(FsyncHelper::default());
                let running = Arc::clone(&helper);
                let spawned = std::thread::Builder::new()
                    .name("sessiond-aof-fsync".to_owned())
                    .spawn(move || fsync_loop(&running));
                match spawned {
                    Ok(thread) => self.threads().push(thread),
                    Err(error) => {
                        tracing::error!(%error, "cannot start the fsync thread");
                        return;
                    }
                }
                *fsyncer = Some(helper);
            }
            fsyncer.clone()
        };
        let Some(helper) = helper else {
            return;
        };
        if let Some(since) = helper.running_since() {
            if since.elapsed() >= DELAYED_FSYNC {
                self.delayed_fsync.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        *helper.request.lock().unwrap_or_else(|p| p.into_inner()) = Some((file, written));
        helper.ready.notify_all();
    }
}

/// The thread that fsyncs the log once a second under `everysec`, so that a slow disk holds up
/// neither the writer nor the writes.
#[derive(Debug, Default)]
struct FsyncHelper {
    /// The log to fsync and the stream offset its bytes reach.
    request: Mutex<Option<(LogFile, u64)>>,
    ready: Condvar,
    /// When the fsync running now started.
    started: Mutex<Option<Instant>>,
    /// The last fsync's error, until the writer takes it.
    error: Mutex<Option<String>>,
    /// The offset the last fsync that worked reached (0: none), until the writer takes it and
    /// calls it durable, unless the log misses changes.
    synced: AtomicU64,
    /// Bumped (under `request`'s lock) when the stream restarts: an fsync asked for before
    /// reports no `synced` offset, which belongs to the old stream.
    epoch: AtomicU64,
    stop: AtomicBool,
}

impl FsyncHelper {
    fn running_since(&self) -> Option<Instant> {
        *self.started.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether no fsync is asked for or running.
    fn idle(&self) -> bool {
        let request = self.request.lock().unwrap_or_else(|p| p.into_inner());
        request.is_none() && self.running_since().is_none()
    }
}

fn fsync_loop(helper: &FsyncHelper) {
    loop {
        let request = {
            let mut request = helper.request.lock().unwrap_or_else(|p| p.into_inner());
            while request.is_none() {
                if helper.stop.load(Ordering::SeqCst) {
                    return;
                }
                request = helper
                    .ready
                    .wait_timeout(request, Duration::from_secs(1))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            let taken = request
                .take()
                .map(|r| (r, helper.epoch.load(Ordering::SeqCst)));
            // Under the request's lock: a request is never taken and not yet started
            // ([`FsyncHelper::idle`]).
            if taken.is_some() {
                *helper.started.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            }
            taken
        };
        let Some(((file, offset), epoch)) = request else {
            continue;
        };
        match file.sync_data() {
            Ok(()) => {
                let _request = helper.request.lock().unwrap_or_else(|p| p.into_inner());
                if helper.epoch.load(Ordering::SeqCst) == epoch {
                    helper.synced.store(offset, Ordering::SeqCst);
                }
            }
            Err(error) => {
                *helper.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(strerror(&error));
            }
        }
        *helper.started.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::store::{Entry, Store, Value};

    const START: u64 = 1_700_000_000_000;

    fn set_str(store: &Store, key: &str, value: &str) {
        let value = Bytes::copy_from_slice(value.as_bytes());
        store.upsert(key.as_bytes(), store.now_ms(), |_| {
            (Some(Entry::new(Value::Str(value), 0)), ())
        })
    }

    /// An empty scratch directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sessiond-aof-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn layout(dir: &std::path::Path) -> Layout {
        Layout {
            dir: dir.join("appendonlydir"),
            file_name: "appendonly.aof".to_owned(),
        }
    }

    /// The keys the log of `dir` gives back, loaded into a new keyspace.
    fn reloaded(dir: &std::path::Path) -> Vec<Vec<u8>> {
        reloaded_records(dir)
            .iter()
            .map(|record| record.key().to_vec())
            .collect()
    }

    /// The records the log of `dir` gives back, loaded into a new keyspace ([`contents`]).
    fn reloaded_records(dir: &std::path::Path) -> Vec<crate::store::Record> {
        let layout = layout(dir);
        let manifest = layout
            .read_manifest()
            .expect("readable")
            .expect("a manifest");
        let dbs = Databases::new(Clock::manual(START).0, 1);
        super::super::aof_load::load(&layout, &manifest, &dbs, false).expect("loads");
        contents(&dbs)
    }

    fn keys(names: &[&str]) -> Vec<Vec<u8>> {
        names.iter().map(|k| k.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_log_started_on_a_running_keyspace_is_named_only_once_its_base_is_written() {
        let dir = scratch("fresh");
        let dbs = Arc::new(Databases::new(Clock::manual(START).0, 1));
        set_str(dbs.first(), "before", "1");
        // An older log's manifest: only the new log's commit replaces it.
        let layout = layout(&dir);
        std::fs::create_dir_all(&layout.dir).expect("log dir");
        let old = Manifest {
            base: Some(Part {
                name: layout.base_name(1),
                seq: 1,
            }),
            incrs: vec![Part {
                name: layout.incr_name(1),
                seq: 1,
            }],
        };
        std::fs::write(layout.path(&layout.base_name(1)), b"old").expect("old base");
        std::fs::write(layout.path(&layout.incr_name(1)), b"").expect("old log");
        layout.write_manifest(&old).expect("old manifest");

        let aof =
            Aof::start_fresh(&AofConfig::default(), &dir, dbs.clone(), u64::MAX).expect("starts");
        set_str(dbs.first(), "during", "2");
        assert!(!aof.committed());
        assert_eq!(layout.read_manifest(), Ok(Some(old)));
        assert!(aof.claim_rewrite());
        aof.rewrite_claimed().expect("rewritten");
        assert!(aof.committed());
        set_str(dbs.first(), "after", "3");
        aof.sync();
        let manifest = layout
            .read_manifest()
            .expect("readable")
            .expect("a manifest");
        // 2 took the frames until the rewrite's switch, to 3.
        assert_eq!(manifest.base.as_ref().map(|b| b.seq), Some(3));
        assert_eq!(
            manifest.incrs.iter().map(|p| p.seq).collect::<Vec<_>>(),
            [3]
        );
        for name in [
            layout.base_name(1),
            layout.incr_name(1),
            layout.incr_name(2),
        ] {
            assert!(!layout.path(&name).exists(), "{name} left");
        }
        assert_eq!(reloaded(&dir), keys(&["after", "before", "during"]));
        aof.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_sync_sets_the_log_aside_then_restarts_it_from_the_loaded_keyspace() {
        let dir = scratch("restart");
        let dbs = Arc::new(Databases::new(Clock::manual(START).0, 1));
        let aof = Aof::start(&AofConfig::default(), &dir, dbs.clone(), u64::MAX).expect("starts");
        set_str(dbs.first(), "old", "1");
        aof.sync();
        let layout = layout(&dir);
        aof.set_aside_for_sync();
        assert_eq!(
            layout.read_manifest(),
            Ok(None),
            "set aside as the load begins"
        );
        crate::store::feed::without_recording(|| {
            dbs.flush_all(false);
            set_str(dbs.first(), "synced", "1");
        });
        // The primary's offset.
        dbs.first().feed().reset(1 << 20);
        let swaps = aof.begin_restart(1 << 20);
        aof.finish_restart(swaps).expect("restarted");
        assert!(aof.committed());
        set_str(dbs.first(), "streamed", "1");
        aof.sync();
        assert_eq!(reloaded(&dir), keys(&["streamed", "synced"]));
        aof.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every record of the first database, by key.
    fn contents(dbs: &Databases) -> Vec<crate::store::Record> {
        let store = dbs.first();
        let mut records: Vec<_> = (0..store.shard_count())
            .flat_map(|shard| store.snapshot_shard(shard))
            .collect();
        records.sort_by(|a, b| a.key().cmp(b.key()));
        records
    }

    #[test]
    fn a_base_read_while_keys_change_and_the_log_after_its_cut_give_back_the_keyspace() {
        let dir = scratch("fuzzy");
        let dbs = Arc::new(Databases::new(Clock::manual(START).0, 1));
        let aof = Aof::start(&AofConfig::default(), &dir, dbs.clone(), u64::MAX).expect("starts");
        for i in 0..50_000 {
            set_str(dbs.first(), &format!("key:{i}"), "0");
        }
        // Keys rewritten, deleted and moved (two keys in one frame) while the base is read.
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (dbs, stop) = (dbs.clone(), stop.clone());
            std::thread::spawn(move || {
                let store = dbs.first();
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) || round < 2_000 {
                    let i = round % 2_000;
                    set_str(store, &format!("key:{i}"), &round.to_string());
                    if round.is_multiple_of(3) {
                        store.remove(format!("key:{}", (i * 7) % 2_000).as_bytes(), START);
                    }
                    let feed = store.feed();
                    let _group = feed.group();
                    store.remove(format!("pair:a:{}", round % 50).as_bytes(), START);
                    set_str(store, &format!("pair:b:{}", round % 50), &round.to_string());
                    set_str(store, &format!("pair:a:{}", (round + 1) % 50), "next");
                    round += 1;
                }
            })
        };
        assert!(aof.claim_rewrite());
        aof.rewrite_claimed().expect("rewritten");
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer");
        aof.sync();
        let (live, back) = (contents(&dbs), reloaded_records(&dir));
        assert_eq!(live.len(), back.len());
        assert!(live == back, "the restarted keyspace differs");
        aof.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_write_storm_during_a_rewrite_cannot_fail_it_on_the_journal_bound() {
        let dir = scratch("storm");
        let dbs = Arc::new(Databases::new(Clock::manual(START).0, 1));
        // A journal bound of one byte: a base that journaled the storm would be abandoned.
        let aof = Aof::start(&AofConfig::default(), &dir, dbs.clone(), 1).expect("starts");
        for i in 0..50_000 {
            set_str(dbs.first(), &format!("key:{i}"), "0");
        }
        let (stop, writes) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let writer = {
            let (dbs, stop, writes) = (dbs.clone(), stop.clone(), writes.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let n = writes.fetch_add(1, Ordering::Relaxed);
                    set_str(dbs.first(), &format!("key:{}", n % 50_000), "1");
                }
            })
        };
        while writes.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        assert!(aof.claim_rewrite());
        let rewritten = aof.rewrite_claimed();
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer");
        assert_eq!(rewritten, Ok(()));
        aof.sync();
        assert!(contents(&dbs) == reloaded_records(&dir));
        aof.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rewrite_puts_its_log_on_disk_through_its_base_before_naming_the_base() {
        let dir = scratch("fuzzy-durable");
        let dbs = Arc::new(Databases::new(Clock::manual(START).0, 1));
        // `appendfsync no`: nothing else fsyncs the log.
        let config = AofConfig {
            fsync: Fsync::No,
            ..AofConfig::default()
        };
        let aof = Aof::start(&config, &dir, dbs.clone(), u64::MAX).expect("starts");
        for i in 0..100 {
            set_str(dbs.first(), &format!("key:{i}"), "1");
        }
        assert!(aof.claim_rewrite());
        aof.rewrite_claimed().expect("rewritten");
        assert_eq!(aof.feed().durable().offset, aof.feed().end_offset());
        aof.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_closed_log_keeps_its_files_and_takes_nothing_more() {
        let dir = scratch("close");
        let dbs = Arc::new(Databases::new(Clock::manual(START).0, 1));
        let aof = Aof::start(&AofConfig::default(), &dir, dbs.clone(), u64::MAX).expect("starts");
        set_str(dbs.first(), "a", "1");
        aof.close();
        assert_eq!(aof.feed().durable().offset, u64::MAX, "waiters let go");
        set_str(dbs.first(), "b", "2");
        assert_eq!(reloaded(&dir), keys(&["a"]));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_shutdown_fsync_of_an_uncommitted_log_calls_nothing_durable() {
        let dir = scratch("sync-uncommitted");
        let dbs = Arc::new(Databases::new(Clock::manual(START).0, 1));
        let aof =
            Aof::start_fresh(&AofConfig::default(), &dir, dbs.clone(), u64::MAX).expect("starts");
        set_str(dbs.first(), "a", "1");
        aof.sync();
        assert_eq!(aof.written.load(Ordering::SeqCst), aof.feed().end_offset());
        assert!(aof.feed().durable().offset < aof.feed().end_offset());
        aof.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rewrite_of_a_closed_log_leaves_the_next_logs_waiters_alone() {
        let dir = scratch("closed-rewrite");
        let dir2 = scratch("closed-rewrite-2");
        let dbs = Arc::new(Databases::new(Clock::manual(START).0, 1));
        let config = AofConfig {
            fsync: Fsync::Always,
            ..AofConfig::default()
        };
        let first = Aof::start_fresh(&config, &dir, dbs.clone(), u64::MAX).expect("starts");
        assert!(first.claim_rewrite());
        first.close();
        // Turned on again before the first log's rewrite ends (it fails: the log is off).
        let second = Aof::start_fresh(&config, &dir2, dbs.clone(), u64::MAX).expect("starts");
        assert_eq!(
            first.rewrite_claimed(),
            Err("the log was turned off".to_owned())
        );
        assert!(
            !second.feed().durable().failed,
            "`always` clients not let go"
        );
        second.close();
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&dir2);
    }

    #[test]
    fn a_full_sync_sets_aside_an_earlier_manifest_while_uncommitted() {
        let dir = scratch("sync-uncommitted-aside");
        let dbs = Arc::new(Databases::new(Clock::manual(START).0, 1));
        let layout = layout(&dir);
        std::fs::create_dir_all(&layout.dir).expect("log dir");
        let old = Manifest {
            base: Some(Part {
                name: layout.base_name(1),
                seq: 1,
            }),
            incrs: vec![],
        };
        layout.write_manifest(&old).expect("old manifest");
        let aof =
            Aof::start_fresh(&AofConfig::default(), &dir, dbs.clone(), u64::MAX).expect("starts");
        aof.set_aside_for_sync();
        // A crash during the load restarts from the snapshot file, not the older log.
        assert_eq!(layout.read_manifest(), Ok(None));
        aof.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failing_rewrite_is_retried_less_and_less_often_up_to_an_hour() {
        assert_eq!(retry_delay(0), RETRY_DELAY);
        assert_eq!(retry_delay(1), RETRY_DELAY);
        assert_eq!(retry_delay(2), RETRY_DELAY * 2);
        assert_eq!(retry_delay(3), RETRY_DELAY * 4);
        assert_eq!(retry_delay(40), Duration::from_secs(3600));
        let delays: Vec<Duration> = (1..20).map(retry_delay).collect();
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
    }
}

#[cfg(test)]
#[path = "aof_fault_tests.rs"]
mod fault_tests;
