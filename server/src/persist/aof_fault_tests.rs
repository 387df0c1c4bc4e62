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
