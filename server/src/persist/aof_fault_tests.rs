//! The log writer's failure handling, driven through the faults of [`super::super::aof_io`]:
//! a full disk, failed and held fsyncs, the retry bound, a rewrite that cannot switch, a
//! restarted stream. A test takes the writer's turn itself ([`Aof::drive`]) where the writer
//! thread would take it a second later, so nothing waits for the retry period.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::clock::Clock;
use crate::persist::aof_io::faults::{install, Faults};
use crate::persist::aof_load;
use crate::store::{Databases, Entry, Record, Value};

const START: u64 = 1_700_000_000_000;

/// A fresh data directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("sessiond-aof-faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A log with faults on its files, for an empty keyspace.
struct Log {
    dir: PathBuf,
    dbs: Arc<Databases>,
    faults: Arc<Faults>,
    aof: Arc<Aof>,
}

fn start(name: &str, fsync: Fsync) -> Log {
    let dir = scratch(name);
    let faults = install(&dir.join("appendonlydir"));
    let dbs = Arc::new(Databases::new(Clock::manual(START).0, 2));
    let config = AofConfig {
        fsync,
        ..AofConfig::default()
    };
    let aof = Aof::start(&config, &dir, Arc::clone(&dbs), u64::MAX).unwrap();
    Log {
        dir,
        dbs,
        faults,
        aof,
    }
}

impl Log {
    /// Sets `key` to `value`, and lets the writer take its turn on it.
    fn set(&self, key: &str, value: &str) {
        let store = self.dbs.first();
        let value = Bytes::copy_from_slice(value.as_bytes());
        store.upsert(key.as_bytes(), store.now_ms(), |_| {
            (Some(Entry::new(Value::Str(value), 0)), ())
        });
        self.settle();
    }

    /// Waits until everything changed so far is published, then takes a turn of the writer
    /// (after the pump's own, which holds the writer's lock while it runs).
    fn settle(&self) {
        let feed = self.aof.feed();
        let end = feed.end_offset();
        runtime().block_on(feed.wait_published(end));
        self.aof.drive();
    }

    fn written(&self) -> u64 {
        self.aof.written.load(Ordering::SeqCst)
    }

    fn incomplete(&self) -> bool {
        self.aof.incomplete.load(Ordering::SeqCst)
    }

    /// The length of the file being appended to.
    fn incr_len(&self) -> u64 {
        let files = self.aof.files();
        let (_, seq) = files.incr.as_ref().unwrap();
        let path = self.aof.layout.path(&self.aof.layout.incr_name(*seq));
        std::fs::metadata(path).unwrap().len()
    }

    /// What a restart would load from the files.
    fn reloaded(&self) -> Vec<(usize, Record)> {
        let dbs = Databases::new(Clock::manual(START).0, 2);
        let manifest = self.aof.layout.read_manifest().unwrap().unwrap();
        aof_load::load(&self.aof.layout, &manifest, &dbs, false).unwrap();
        dump(&dbs)
    }

    /// Runs a rewrite now, as BGREWRITEAOF would.
    fn rewrite(&self) -> Result<(), String> {
        assert!(self.aof.claim_rewrite());
        self.aof.rewrite_claimed()
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.faults.free();
        self.faults.fail_syncs(false);
        self.faults.hold_syncs(false);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Every key of every database.
fn dump(dbs: &Databases) -> Vec<(usize, Record)> {
    let mut all = Vec::new();
    for db in 0..dbs.count() {
        let store = dbs.db(db);
        for shard in 0..store.shard_count() {
            all.extend(store.snapshot_shard(shard).into_iter().map(|r| (db, r)));
        }
    }
    all.sort_by(|a, b| (a.0, a.1.key()).cmp(&(b.0, b.1.key())));
    all
}

#[test]
fn a_full_disk_is_undone_retried_and_loses_nothing() {
    let log = start("full-disk", Fsync::No);
    log.set("a", "1");
    let before = log.incr_len();
    assert_eq!(log.written(), log.aof.feed().end_offset());

    // The disk takes part of the next frame, then is full.
    log.faults.fill_after(5);
    log.set("b", "2");
    assert!(log.aof.write_failed());
    assert_eq!(
        log.aof.write_error().as_deref(),
        Some("No space left on device")
    );
    assert!(log.aof.feed().durable().failed);
    // The half-written frame was cut off.
    assert_eq!(log.incr_len(), before);

    // Held, and retried with every turn, while the disk stays full.
    let failed = log.faults.failed_writes();
    log.set("c", "3");
    assert!(log.faults.failed_writes() > failed);
    assert!(log.aof.write_failed());
    assert_eq!(log.incr_len(), before);

    // Room again: the next turn (the writer's retry) writes every frame held, once.
    log.faults.free();
    log.settle();
    assert!(!log.aof.write_failed());
    assert_eq!(log.aof.write_error(), None);
    assert!(!log.aof.feed().durable().failed);
    assert_eq!(log.written(), log.aof.feed().end_offset());
    assert_eq!(log.reloaded(), dump(&log.dbs));
    assert_eq!(log.reloaded().len(), 3);
}

#[test]
fn a_failed_fsync_refuses_writes_until_a_rewrite_under_always() {
    let log = start("fsync-always", Fsync::Always);
    log.set("a", "1");
    let durable = log.aof.feed().durable();
    assert_eq!(durable.offset, log.aof.feed().end_offset());
    assert!(!durable.failed);

    log.faults.fail_syncs(true);
    log.set("b", "2");
    assert!(log.incomplete());
    assert!(log.aof.write_failed());
    assert_eq!(log.aof.write_error().as_deref(), Some("Input/output error"));
    // The waiters of `always` give up; nothing more is called durable.
    let after = log.aof.feed().durable();
    assert!(after.failed);
    assert_eq!(after.offset, durable.offset);
    assert!(log.aof.rewrite_state().1, "a rewrite is scheduled");

    // fsyncs work again, but what the failed one covered may be lost: still refused.
    log.faults.fail_syncs(false);
    log.set("c", "3");
    assert!(log.aof.write_failed());
    assert_eq!(log.aof.feed().durable(), after);

    // The rewrite puts the keyspace in new, fsynced files: writable again.
    log.rewrite().unwrap();
    assert!(!log.incomplete());
    assert!(!log.aof.write_failed());
    assert_eq!(log.aof.write_error(), None);
    assert!(!log.aof.feed().durable().failed);
    assert_eq!(log.aof.rewrite_status().rewrites, 1);
    log.set("d", "4");
    assert_eq!(log.aof.feed().durable().offset, log.aof.feed().end_offset());
    assert_eq!(log.reloaded(), dump(&log.dbs));
    assert_eq!(log.reloaded().len(), 4);
}

/// Makes the next turn's `everysec` fsync due.
fn fsync_due(log: &Log) {
    let mut state = log.aof.writer.lock().unwrap();
    state.last_fsync = Instant::now().checked_sub(Duration::from_secs(2)).unwrap();
}

/// Waits until the `everysec` fsync thread is idle, its outcome recorded.
fn fsync_done(log: &Log) {
    while log.aof.fsync_pending()
        || log
            .aof
            .fsyncer
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|h| h.request.lock().unwrap().is_some())
    {
        std::thread::yield_now();
    }
}

#[test]
fn a_failed_background_fsync_refuses_writes_and_calls_nothing_durable_until_a_rewrite() {
    let log = start("fsync-everysec", Fsync::Everysec);
    log.set("a", "1");
    fsync_due(&log);
    let syncs = log.faults.syncs();
    log.settle();
    log.faults.wait_syncs(syncs + 1);
    fsync_done(&log);
    log.settle();
    let end = log.aof.feed().end_offset();
    assert_eq!(log.aof.feed().durable().offset, end);

    log.faults.fail_syncs(true);
    log.set("b", "2");
    fsync_due(&log);
    log.settle();
    log.faults.wait_failed_syncs(1);
    fsync_done(&log);
    // The writer's next turn takes the fsync thread's error.
    log.settle();
    assert!(log.incomplete());
    assert_eq!(log.aof.write_error().as_deref(), Some("Input/output error"));
    assert!(log.aof.feed().durable().failed);

    // A later fsync that works proves nothing about the bytes the failed one lost.
    log.faults.fail_syncs(false);
    log.set("c", "3");
    fsync_due(&log);
    log.settle();
    fsync_done(&log);
    log.settle();
    assert!(log.aof.write_failed());
    let durable = log.aof.feed().durable();
    assert_eq!(durable.offset, end);
    assert!(durable.failed);

    log.rewrite().unwrap();
    assert!(!log.aof.write_failed());
    assert_eq!(log.reloaded(), dump(&log.dbs));
}

#[test]
fn frames_past_the_retry_limit_are_dropped_and_the_log_rewritten() {
    let log = start("retry-limit", Fsync::No);
    log.set("a", "1");
    log.faults.fill_after(0);
    let value = "x".repeat(8 << 10);
    for key in 0..(RETRY_LIMIT / (8 << 10) - 1) {
        log.set(&format!("k{key}"), &value);
    }
    assert!(!log.incomplete(), "held up to the limit");
    assert!(log.aof.write_failed());
    log.set("last", &value);
    assert!(log.incomplete(), "dropped past it");
    assert!(log.aof.writer.lock().unwrap().retry.is_empty());
    assert_eq!(log.written(), log.aof.feed().end_offset());
    let error = log.aof.write_error().unwrap();
    assert!(
        error.contains("dropped") && error.ends_with("No space left on device"),
        "{error}"
    );

    // Room again: new frames are written, but the log misses the dropped ones.
    log.faults.free();
    log.set("b", "2");
    assert!(log.aof.write_failed());
    assert!(log.aof.rewrite_state().1, "a rewrite is scheduled");
    log.rewrite().unwrap();
    assert!(!log.aof.write_failed());
    assert_eq!(log.reloaded(), dump(&log.dbs));
}

#[test]
fn a_rewrite_gives_up_while_the_log_cannot_be_written() {
    let log = start("switch-wait", Fsync::Everysec);
    log.set("a", "1");
    log.faults.fill_after(0);
    log.set("b", "2");
    assert!(log.aof.write_failed());

    let error = log.rewrite().unwrap_err();
    assert_eq!(error, "the log cannot be written: no switch to a new file");
    assert_eq!(*log.aof.switch_lock(), Switch::None);
    let status = log.aof.rewrite_status();
    assert!(!status.last_ok);
    assert_eq!(status.failures, 1);
    assert!(!log.aof.rewrite_state().0, "the save slot is free");

    // Room again: the held frame is written where it belongs, and a rewrite succeeds.
    log.faults.free();
    log.settle();
    assert!(!log.aof.write_failed());
    log.rewrite().unwrap();
    log.set("c", "3");
    assert_eq!(log.reloaded(), dump(&log.dbs));
    assert_eq!(log.reloaded().len(), 3);
}

#[test]
fn the_writer_follows_a_restarted_stream() {
    let log = start("reset", Fsync::Always);
    let feed = Arc::clone(log.aof.feed());
    log.set("a", "1");
    // Frames held for a retry belong to the keyspace a full sync replaces (it schedules a
    // rewrite): a restart of the stream ahead drops them, and the writer follows.
    log.faults.fill_after(0);
    log.set("b", "2");
    assert!(log.aof.write_failed());
    feed.reset(feed.end_offset() + 1000);
    log.faults.free();
    log.set("c", "3");
    assert!(!log.aof.write_failed());
    assert!(log.aof.writer.lock().unwrap().retry.is_empty());
    assert_eq!(log.written(), feed.end_offset());
    assert_eq!(feed.durable().offset, feed.end_offset());

    // A restart behind what was on disk (a primary behind this node's old stream): a new
    // frame is not durable before its fsync.
    feed.reset(5);
    log.faults.hold_syncs(true);
    let store = log.dbs.first();
    store.upsert(b"d", store.now_ms(), |_| {
        (Some(Entry::new(Value::Str(Bytes::from("4")), 0)), ())
    });
    // The pump's turn wrote the frame and waits in its fsync.
    log.faults.wait_held(1);
    assert_eq!(log.written(), feed.end_offset());
    assert!(feed.durable().offset < feed.end_offset());
    log.faults.hold_syncs(false);
    log.settle();
    assert_eq!(feed.durable().offset, feed.end_offset());
}

#[test]
fn a_failed_fsync_at_a_rewrites_switch_counts_as_any_failed_fsync() {
    let log = start("switch-fsync", Fsync::Everysec);
    log.set("a", "1");
    log.faults.fail_syncs(true);
    let error = log.rewrite().unwrap_err();
    assert_eq!(error, "cannot start a new log file");
    // The old log's last frames may be lost although a later fsync works.
    assert!(log.incomplete());
    assert!(log.aof.write_failed());
    assert_eq!(log.aof.write_error().as_deref(), Some("Input/output error"));
    assert!(log.aof.feed().durable().failed);
    // Retried after the automatic rewrite's delay, not at once.
    assert!(!log.aof.rewrite_state().1);
    assert!(!log.aof.wants_rewrite());

    log.faults.fail_syncs(false);
    log.rewrite().unwrap();
    assert!(!log.aof.write_failed());
    log.set("b", "2");
    assert_eq!(log.reloaded(), dump(&log.dbs));
}

#[test]
fn an_everysec_fsync_still_running_after_two_seconds_is_counted_delayed() {
    let log = start("delayed", Fsync::Everysec);
    log.set("a", "1");
    log.faults.hold_syncs(true);
    fsync_due(&log);
    log.settle();
    log.faults.wait_held(1);
    assert!(log.aof.fsync_pending(), "aof_pending_bio_fsync:1");
    // The held fsync started 3 s ago, as the writer's clock sees it.
    let helper = log.aof.fsyncer.lock().unwrap().clone().unwrap();
    *helper.started.lock().unwrap() = Instant::now().checked_sub(Duration::from_secs(3));
    log.set("b", "2");
    fsync_due(&log);
    log.settle();
    assert_eq!(log.aof.delayed_fsyncs(), 1);
    // The writes go on meanwhile, and the running fsync is not asked for again.
    assert!(!log.aof.write_failed());
    assert!(helper.request.lock().unwrap().is_none());

    log.faults.hold_syncs(false);
    fsync_done(&log);
    log.settle();
    assert!(!log.aof.fsync_pending());
    assert_eq!(log.aof.delayed_fsyncs(), 1);
    assert!(!log.aof.feed().durable().failed);
}

#[test]
fn a_log_that_cannot_start_leaves_the_feed_as_it_was() {
    let dir = scratch("cannot-start");
    // The new log's file cannot be created: a directory has its name.
    std::fs::create_dir_all(dir.join("appendonlydir/appendonly.aof.1.incr.aof")).unwrap();
    let dbs = Arc::new(Databases::new(Clock::manual(START).0, 1));
    let feed = Arc::clone(dbs.first().feed());
    for _ in 0..2 {
        let started = Aof::start_fresh(&AofConfig::default(), &dir, Arc::clone(&dbs), u64::MAX);
        assert!(started.is_err());
        assert!(
            !feed.on(),
            "no change is buffered for a log that is not there"
        );
        assert_eq!(feed.durable().offset, u64::MAX);
    }
}

#[test]
fn a_failed_write_that_cannot_be_cut_back_is_retried_where_it_began() {
    let log = start("no-cut", Fsync::No);
    log.set("a", "1");
    // The disk takes part of the next frame, and the file cannot be cut back.
    log.faults.fill_after(5);
    log.faults.fail_cuts(true);
    log.set("b", "2");
    assert!(log.aof.write_failed());

    // The retry writes over the torn bytes: the frames read back whole.
    log.faults.free();
    log.faults.fail_cuts(false);
    log.settle();
    assert!(!log.aof.write_failed());
    assert!(!log.incomplete());
    assert_eq!(log.written(), log.aof.feed().end_offset());
    assert_eq!(log.reloaded(), dump(&log.dbs));
    assert_eq!(log.reloaded().len(), 2);
}

#[test]
fn an_everysec_fsync_of_a_stream_restarted_since_calls_nothing_durable() {
    let log = start("fsync-reset", Fsync::Everysec);
    let feed = Arc::clone(log.aof.feed());
    for key in ["a", "b", "c", "d", "e", "f"] {
        log.set(key, "an old stream's value");
    }
    // An fsync done on the old stream, not yet taken by the writer.
    fsync_due(&log);
    log.settle();
    fsync_done(&log);
    let old_end = feed.end_offset();

    // A full sync restarts the stream behind it.
    feed.reset(1);
    log.set("g", "7");
    assert!(feed.end_offset() < old_end);
    assert!(feed.durable().offset <= feed.end_offset());

    // An fsync held while the stream restarts reports nothing of the old stream.
    for key in ["h", "i", "j", "k", "l", "m", "n", "o"] {
        log.set(key, "a value of the stream restarted");
    }
    log.faults.hold_syncs(true);
    fsync_due(&log);
    log.settle();
    log.faults.wait_held(1);
    let held_end = feed.end_offset();
    feed.reset(2);
    // The writer follows the restart while the fsync still runs.
    log.set("p", "16");
    log.faults.hold_syncs(false);
    while log.aof.fsync_pending() {
        std::thread::yield_now();
    }
    log.set("q", "17");
    assert!(feed.end_offset() < held_end);
    assert!(feed.durable().offset <= feed.end_offset());
}

#[test]
fn a_restart_is_followed_before_its_switch_is_asked_for() {
    let log = start("restart-switch", Fsync::Always);
    let feed = Arc::clone(log.aof.feed());
    log.set("a", "1");
    // Frames of the old stream held for a retry, the new stream's switch point among them.
    log.faults.fill_after(0);
    log.set("b", "a value long enough to hold the switch point");
    let held_at = log.written();
    assert!(!log.aof.writer.lock().unwrap().retry.is_empty());
    let offset = held_at + 4;
    feed.reset(offset);
    let swaps = log.aof.begin_restart(offset);
    // No run of the old stream is left to be compared with the switch point.
    assert!(log.aof.writer.lock().unwrap().retry.is_empty());
    assert_eq!(log.written(), offset);

    log.faults.free();
    log.set("c", "3");
    log.aof.finish_restart(swaps).unwrap();
    log.set("d", "4");
    assert_eq!(log.reloaded(), dump(&log.dbs));
}

#[test]
fn a_failed_first_rewrite_refuses_writes_until_a_retry_succeeds() {
    let dir = scratch("first-rewrite");
    let dbs = Arc::new(Databases::new(Clock::manual(START).0, 1));
    let config = AofConfig {
        fsync: Fsync::Always,
        ..AofConfig::default()
    };
    // A log turned on at run time (CONFIG SET appendonly yes): no base until a rewrite.
    let aof = Aof::start_fresh(&config, &dir, Arc::clone(&dbs), u64::MAX).unwrap();
    // The rewrite's new log file cannot be created: a directory has its name.
    let blocker = dir.join("appendonlydir/appendonly.aof.2.incr.aof");
    std::fs::create_dir_all(&blocker).unwrap();
    assert!(aof.claim_rewrite());
    assert!(aof.rewrite_claimed().is_err());
    assert!(aof.write_failed(), "writes are refused with MISCONF");
    assert!(aof.feed().durable().failed, "waiting replies are let go");

    std::fs::remove_dir(&blocker).unwrap();
    assert!(aof.claim_rewrite());
    aof.rewrite_claimed().unwrap();
    assert!(!aof.write_failed(), "a rewrite that succeeds lifts MISCONF");
    assert!(!aof.feed().durable().failed);
    aof.close();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sync_while_writes_fail_keeps_the_failure() {
    let log = start("sync-failing", Fsync::Always);
    log.set("a", "1");
    log.faults.fill_after(0);
    log.set("b", "2");
    assert!(log.aof.write_failed());
    let end = log.aof.feed().end_offset();
    // SHUTDOWN's sync (the server serves on if its final save fails).
    log.aof.sync();
    let durable = log.aof.feed().durable();
    assert!(durable.offset < end);
    assert!(
        durable.failed,
        "{durable:?}: replies would wait for what is unwritten"
    );
}

#[test]
fn a_manifest_renamed_but_not_fsynced_keeps_the_files_it_names() {
    let log = start("manifest-dir-sync", Fsync::Always);
    log.set("a", "1");
    // How many fsyncs of the directory a rewrite makes: its commit's is the last.
    let before = log.faults.dir_syncs();
    log.rewrite().unwrap();
    let per_rewrite = log.faults.dir_syncs() - before;
    log.set("b", "2");
    log.faults
        .fail_dir_syncs_from(log.faults.dir_syncs() + per_rewrite);
    let failed = log.rewrite().unwrap_err();
    assert!(failed.contains("manifest"), "{failed}");
    log.faults.fail_dir_syncs_from(0);
    // The new manifest took the old one's place: a restart may find either, and each must
    // name files that are there.
    log.set("c", "3");
    assert_eq!(log.reloaded(), dump(&log.dbs));
}
