//! The append-only log end to end, through the real binary: with `appendfsync always` every
//! write acknowledged to concurrent clients survives a SIGKILL (sessions with their IDs,
//! versions, deadlines and per-user index); with `everysec` what an fsync covered does; a torn
//! last frame is dropped with a warning naming the file and the offset, a damaged frame in the
//! middle stops the start naming them; BGREWRITEAOF under load and the automatic rewrite shrink
//! the log and lose nothing; `check-aof` with and without `--fix`; FLUSHDB, SWAPDB, expiry and
//! eviction replay; BGREWRITEAOF's replies and the CONFIG settings in RESP2 and RESP3.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use redis::{Connection, FromRedisValue, RedisResult, Value};
use sessiond_tests::{info_field, info_number, IO_TIMEOUT};

use super::daemon::{run_tool, run_until_exit, Daemon, ScratchDir};

/// Runs `args`, which must succeed.
fn call<T: FromRedisValue>(con: &mut Connection, args: &[&[u8]]) -> T {
    redis::cmd(std::str::from_utf8(args[0]).expect("utf-8 name"))
        .arg(&args[1..])
        .query(con)
        .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(args[0])))
}

/// Runs `args`, which must fail; the error as the server sent it.
fn error_of(con: &mut Connection, args: &[&[u8]]) -> String {
    let result: RedisResult<Value> = redis::cmd(std::str::from_utf8(args[0]).expect("utf-8"))
        .arg(&args[1..])
        .query(con);
    match result {
        Err(e) => e.to_string(),
        Ok(value) => panic!("expected an error, got {value:?}"),
    }
}

fn info(con: &mut Connection) -> String {
    call(con, &[b"INFO", b"persistence"])
}

/// CONFIG GET of one setting.
fn config_get(con: &mut Connection, name: &str) -> String {
    let got: BTreeMap<String, String> = call(con, &[b"CONFIG", b"GET", name.as_bytes()]);
    got.get(name).cloned().unwrap_or_default()
}

/// Polls `done` until it holds: for what the server does in the background (an fsync, a
/// rewrite), which INFO reports; bounded by [`IO_TIMEOUT`] several times over.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < IO_TIMEOUT * 6,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The daemon's arguments: data in `data`, no periodic snapshot, then `extra`.
fn args<'a>(data: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--port",
        "0",
        "--data-dir",
        data,
        "--snapshot-interval",
        "0",
    ];
    args.extend_from_slice(extra);
    args
}

/// The log's directory under `data`.
fn log_dir(data: &str) -> PathBuf {
    Path::new(data).join("appendonlydir")
}

/// The incremental log the manifest names last.
fn last_incr(data: &str) -> PathBuf {
    let dir = log_dir(data);
    let manifest =
        std::fs::read_to_string(dir.join("appendonly.aof.manifest")).expect("a manifest");
    let name = manifest
        .lines()
        .rev()
        .filter(|l| l.ends_with("type i"))
        .find_map(|l| l.split_whitespace().nth(1))
        .expect("an incremental log")
        .to_owned();
    dir.join(name)
}

/// Every key of databases 0..4 with its type, value and deadline, for comparing a keyspace
/// before a kill and after the restart.
fn keyspace(con: &mut Connection) -> BTreeMap<(u8, Vec<u8>), String> {
    let mut all = BTreeMap::new();
    for db in 0..4u8 {
        let _: () = call(con, &[b"SELECT", db.to_string().as_bytes()]);
        let keys: Vec<Vec<u8>> = call(con, &[b"KEYS", b"*"]);
        for key in keys {
            let kind: String = call(con, &[b"TYPE", &key]);
            let value = match kind.as_str() {
                "string" => format!("{:?}", call::<Vec<u8>>(con, &[b"GET", &key])),
                "hash" => {
                    let map: BTreeMap<Vec<u8>, Vec<u8>> = call(con, &[b"HGETALL", &key]);
                    format!("{map:?}")
                }
                "set" => {
                    let mut members: Vec<Vec<u8>> = call(con, &[b"SMEMBERS", &key]);
                    members.sort();
                    format!("{members:?}")
                }
                _ => {
                    // Its record but the time left, which moves with the clock.
                    let info: BTreeMap<String, Value> = call(con, &[b"SESSION.INFO", &key]);
                    let info: Vec<_> = info.iter().filter(|(k, _)| *k != "ttl_ms").collect();
                    format!("{info:?}")
                }
            };
            let deadline: i64 = call(con, &[b"PEXPIRETIME", &key]);
            all.insert((db, key), format!("{kind} {value} {deadline}"));
        }
    }
    let _: () = call(con, &[b"SELECT", b"0"]);
    all
}

/// Asserts two keyspaces are equal, naming the first keys that differ.
fn assert_same(after: &BTreeMap<(u8, Vec<u8>), String>, before: &BTreeMap<(u8, Vec<u8>), String>) {
    let differ: Vec<String> = before
        .iter()
        .filter(|(key, value)| after.get(*key) != Some(*value))
        .map(|(key, value)| format!("{key:?}: {value} before, {:?} after", after.get(key)))
        .chain(
            after
                .keys()
                .filter(|key| !before.contains_key(*key))
                .map(|key| format!("{key:?} only after")),
        )
        .take(5)
        .collect();
    assert!(
        differ.is_empty(),
        "{} keys before, {} after: {differ:#?}",
        before.len(),
        after.len()
    );
}

#[test]
fn with_always_every_acknowledged_write_survives_a_kill_9() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let args = args(&data, &["--appendfsync", "always"]);
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let mut con = daemon.client(t % 2 == 1);
            std::thread::spawn(move || {
                let mut sessions = Vec::new();
                for i in 0..150 {
                    let key = format!("k:{t}:{i}");
                    let _: () = call(&mut con, &[b"SET", key.as_bytes(), b"v", b"PX", b"3600000"]);
                    let _: i64 = call(&mut con, &[b"HSET", b"shared-hash", key.as_bytes(), b"1"]);
                    if i % 10 == 0 {
                        let user = format!("user{}", t % 3);
                        let id: Vec<u8> =
                            call(&mut con, &[b"SESSION.CREATE", b"USER", user.as_bytes()]);
                        let _: Value = call(&mut con, &[b"SESSION.SET", &id, b"cart", b"3"]);
                        sessions.push((user, id));
                    }
                    if i % 7 == 0 {
                        let _: i64 = call(&mut con, &[b"DEL", key.as_bytes()]);
                    }
                }
                sessions
            })
        })
        .collect();
    let sessions: Vec<(String, Vec<u8>)> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("writer"))
        .collect();
    let mut con = daemon.client(false);
    let before = keyspace(&mut con);
    let counts: Vec<i64> = (0..3)
        .map(|u| call(&mut con, &[b"SESSION.COUNT", format!("user{u}").as_bytes()]))
        .collect();
    let (status, _) = daemon.signal_and_wait("KILL");
    assert_eq!(status.code(), None, "killed");

    let daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(true);
    assert_same(&keyspace(&mut con), &before);
    for (u, count) in counts.iter().enumerate() {
        let now: i64 = call(&mut con, &[b"SESSION.COUNT", format!("user{u}").as_bytes()]);
        assert_eq!(now, *count, "the per-user index");
    }
    for (user, id) in sessions {
        let listed: Vec<Vec<u8>> = call(&mut con, &[b"SESSION.LIST", user.as_bytes()]);
        assert!(listed.contains(&id), "{user} lists its session");
    }
}

#[test]
fn with_everysec_what_an_fsync_covered_survives_a_kill_9() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let args = args(&data, &[]);
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    assert_eq!(info_field(&info(&mut con), "aof_enabled"), "1");
    for i in 0..500 {
        let _: () = call(&mut con, &[b"SET", format!("key:{i}").as_bytes(), b"v"]);
    }
    let id: Vec<u8> = call(&mut con, &[b"SESSION.CREATE", b"USER", b"alice"]);
    let written = info_number(&info(&mut con), "aof_stream_offset");
    wait_until("an fsync covering the writes", || {
        info_number(&info(&mut con), "aof_fsync_offset") >= written
    });
    let before = keyspace(&mut con);
    daemon.signal_and_wait("KILL");

    let daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(true);
    assert_same(&keyspace(&mut con), &before);
    let listed: Vec<Vec<u8>> = call(&mut con, &[b"SESSION.LIST", b"alice"]);
    assert_eq!(listed, vec![id]);
}

#[test]
fn a_torn_last_frame_is_dropped_with_a_warning_and_check_aof_fix_cuts_it() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let args = args(&data, &["--appendfsync", "always"]);
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    for i in 0..20 {
        let _: () = call(&mut con, &[b"SET", format!("key:{i}").as_bytes(), b"value"]);
    }
    let _: () = call(&mut con, &[b"SET", b"last", b"the torn one"]);
    daemon.signal_and_wait("KILL");

    // Under `always` the writer writes zeros ahead of the log.
    let incr = last_incr(&data);
    let len = log_end(&incr);
    assert!(std::fs::metadata(&incr).expect("log").len() > len);
    // A crash in the middle of the last append: its frame is cut short.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&incr)
        .expect("open");
    file.set_len(len - 5).expect("truncate");
    drop(file);
    let incr_arg = incr.to_str().expect("utf-8");

    let checked = run_tool(&["check-aof", incr_arg]);
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(1), "{checked:?}");
    assert!(
        stderr.contains(incr_arg) && stderr.contains("torn"),
        "{stderr}"
    );

    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(true);
    assert_eq!(call::<Option<Vec<u8>>>(&mut con, &[b"GET", b"last"]), None);
    assert_eq!(call::<Vec<u8>>(&mut con, &[b"GET", b"key:19"]), b"value");
    let _: () = call(&mut con, &[b"SET", b"after", b"restart"]);
    daemon.stop();
    let (_, log) = daemon.wait();
    assert!(
        log.contains("torn frame") && log.contains(incr_arg) && log.contains("offset="),
        "{log}"
    );
    // The file was cut at the torn frame, and appends went on after it.
    let checked = run_tool(&["check-aof", incr_arg]);
    assert_eq!(checked.status.code(), Some(0), "{checked:?}");

    // --fix cuts a torn tail too (the restarted server wrote zeros ahead again).
    let len = log_end(&incr);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&incr)
        .expect("open");
    file.set_len(len - 3).expect("truncate");
    drop(file);
    let fixed = run_tool(&["check-aof", "--fix", incr_arg]);
    assert_eq!(fixed.status.code(), Some(0), "{fixed:?}");
    let manifest = log_dir(&data).join("appendonly.aof.manifest");
    let checked = run_tool(&["check-aof", manifest.to_str().expect("utf-8")]);
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(0), "{checked:?}");
    assert!(
        stdout.contains("base ") && stdout.contains("log "),
        "{stdout}"
    );
    // A manifest that is not there is an error, not an empty, valid log.
    let missing = log_dir(&data).join("missing.aof.manifest");
    let checked = run_tool(&["check-aof", missing.to_str().expect("utf-8")]);
    assert_ne!(checked.status.code(), Some(0), "{checked:?}");
    assert!(
        String::from_utf8_lossy(&checked.stderr).contains("no such manifest"),
        "{checked:?}"
    );
    let daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    assert_eq!(call::<Vec<u8>>(&mut con, &[b"GET", b"key:0"]), b"value");
}

/// Twenty SETs, each its own frame in the log, then the server killed with SIGKILL.
fn twenty_writes_then_kill_9(dir: &ScratchDir, args: &[&str]) {
    let mut daemon = Daemon::start_at(&dir.0, args, &[]);
    let mut con = daemon.client(false);
    for i in 0..20 {
        let _: () = call(&mut con, &[b"SET", format!("key:{i}").as_bytes(), b"value"]);
    }
    daemon.signal_and_wait("KILL");
}

/// Where the frames of the log at `path` end: at its end, or where the zeros written ahead of
/// it begin.
fn log_end(path: &Path) -> u64 {
    let bytes = std::fs::read(path).expect("log");
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            break;
        }
        at += 8 + len;
    }
    at as u64
}

/// The byte offset of frame `n` (from 0) of a log: frames are length u32, CRC u32, payload.
fn frame_offset(bytes: &[u8], n: usize) -> usize {
    (0..n).fold(0, |at, _| {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        at + 8 + len
    })
}

/// Under `always` the writer writes zeros ahead of the log, so that its fsyncs need not
/// change the file's size: they end the log, a start cuts them so that appends continue on the
/// last frame, and a write into them that a crash tore (its end still zeros) is a torn tail.
#[test]
fn zeros_written_ahead_end_the_log_and_a_write_torn_into_them_is_dropped() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let args = args(&data, &["--appendfsync", "always"]);
    twenty_writes_then_kill_9(&dir, &args);
    let incr = last_incr(&data);
    let end = log_end(&incr);
    assert!(std::fs::metadata(&incr).expect("log").len() >= end + (1 << 20));
    let incr_arg = incr.to_str().expect("utf-8");
    let checked = run_tool(&["check-aof", incr_arg]);
    assert_eq!(checked.status.code(), Some(0), "{checked:?}");

    // A restart loads every frame and cuts the zeros; its writes follow the last frame.
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(true);
    assert_eq!(call::<i64>(&mut con, &[b"DBSIZE"]), 20);
    let _: () = call(&mut con, &[b"SET", b"after", b"the restart"]);
    daemon.signal_and_wait("KILL");
    let (_, log) = daemon.wait();
    assert!(!log.contains("torn"), "{log}");
    let bytes = std::fs::read(&incr).expect("log");
    let after = frame_offset(&bytes, 20);
    assert_eq!(
        after as u64, end,
        "the write after the restart follows the last frame"
    );
    let last_end = log_end(&incr) as usize;
    assert!(bytes.len() > last_end, "zeros written ahead again");

    // The crash tore that write: the end of its frame never reached the disk.
    let mut torn = bytes;
    torn[last_end - 3..last_end].fill(0);
    std::fs::write(&incr, &torn).expect("write");
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(true);
    assert_eq!(call::<i64>(&mut con, &[b"DBSIZE"]), 20);
    assert_eq!(call::<Option<Vec<u8>>>(&mut con, &[b"GET", b"after"]), None);
    daemon.stop();
    let (_, log) = daemon.wait();
    assert!(
        log.contains("torn frame") && log.contains(&format!("offset={after}")),
        "{log}"
    );
    // The frame dropped is counted apart from the zeros after it.
    let frame = last_end - after;
    let spare = torn.len() - last_end;
    assert!(
        log.contains(&format!("dropped_bytes={frame} spare_bytes={spare}")),
        "{frame} and {spare} in:\n{log}"
    );
}

/// Every log a manifest names is created and fsynced before it is named: one missing is lost
/// changes (say a logout), so the start fails rather than bring back what they removed.
#[test]
fn a_missing_log_named_by_the_manifest_stops_the_start() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let args = args(&data, &["--appendfsync", "always"]);
    twenty_writes_then_kill_9(&dir, &args);
    let incr = last_incr(&data);
    std::fs::remove_file(&incr).expect("remove the log");
    let incr_arg = incr.to_str().expect("utf-8");

    let (status, log) = run_until_exit(&dir.0, &args, &[]);
    assert_eq!(status.code(), Some(1), "{status}\n{log}");
    assert!(
        log.contains(incr_arg) && log.contains("cannot open"),
        "{log}"
    );
    let manifest = log_dir(&data).join("appendonly.aof.manifest");
    let checked = run_tool(&["check-aof", manifest.to_str().expect("utf-8")]);
    assert_eq!(checked.status.code(), Some(1), "{checked:?}");
}

#[test]
fn a_damaged_frame_in_the_middle_stops_the_start_naming_the_file_and_the_offset() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let args = args(&data, &["--appendfsync", "always"]);
    twenty_writes_then_kill_9(&dir, &args);

    // One byte of the third frame's payload flipped.
    let incr = last_incr(&data);
    let mut bytes = std::fs::read(&incr).expect("log");
    let third = frame_offset(&bytes, 2);
    bytes[third + 10] ^= 0x40;
    std::fs::write(&incr, &bytes).expect("write");
    let incr_arg = incr.to_str().expect("utf-8");

    let (status, log) = run_until_exit(&dir.0, &args, &[]);
    assert_eq!(status.code(), Some(1), "{status}\n{log}");
    let expected = format!("{incr_arg}: frame checksum mismatch at byte offset {third}");
    assert!(log.contains(&expected), "{expected} in:\n{log}");

    let checked = run_tool(&["check-aof", incr_arg]);
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(1), "{checked:?}");
    let offset = format!("at byte offset {third}");
    assert!(
        stderr.contains(incr_arg) && stderr.contains("checksum") && stderr.contains(&offset),
        "{stderr}"
    );
    // --fix cuts the log at the damage: what came before loads.
    let fixed = run_tool(&["check-aof", "--fix", incr_arg]);
    assert_eq!(fixed.status.code(), Some(0), "{fixed:?}");
    assert_eq!(std::fs::metadata(&incr).expect("log").len(), third as u64);
    let daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    assert_eq!(call::<i64>(&mut con, &[b"DBSIZE"]), 2);
}

#[test]
fn a_rewrite_under_load_loses_nothing_and_shrinks_the_log() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let args = args(&data, &["--appendfsync", "always"]);
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    // The same keys written over and over: the log holds every write, the base one per key.
    for round in 0..20 {
        for i in 0..100 {
            let value = format!("{round}");
            let _: () = call(
                &mut con,
                &[b"SET", format!("key:{i}").as_bytes(), value.as_bytes()],
            );
        }
    }
    let grown = info_number(&info(&mut con), "aof_current_size");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let mut con = daemon.client(false);
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut acknowledged = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = format!("load:{t}:{acknowledged}");
                    let _: () = call(&mut con, &[b"SET", key.as_bytes(), b"x"]);
                    acknowledged += 1;
                }
                acknowledged
            })
        })
        .collect();
    let reply: String = call(&mut con, &[b"BGREWRITEAOF"]);
    assert_eq!(reply, "Background append only file rewriting started");
    wait_until("the rewrite", || {
        info_number(&info(&mut con), "aof_rewrites") == 1
            && info_number(&info(&mut con), "aof_rewrite_in_progress") == 0
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged: Vec<u64> = writers
        .into_iter()
        .map(|w| w.join().expect("writer"))
        .collect();
    let status = info(&mut con);
    assert_eq!(info_field(&status, "aof_last_bgrewrite_status"), "ok");
    assert!(info_number(&status, "aof_current_size") < grown, "{status}");
    let before = keyspace(&mut con);
    daemon.signal_and_wait("KILL");
    let names: Vec<String> = std::fs::read_dir(log_dir(&data))
        .expect("log dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains(".1.")),
        "old files removed: {names:?}"
    );
    // What a rewrite interrupted by a crash leaves (its base, written but not named) goes at
    // the next start.
    let leftover = log_dir(&data).join("appendonly.aof.9.base.sdb");
    std::fs::write(&leftover, b"partial").expect("leftover");

    let daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    assert!(
        !leftover.exists(),
        "a file the manifest does not name is removed"
    );
    assert_same(&keyspace(&mut con), &before);
    for (t, count) in acknowledged.iter().enumerate() {
        let last = format!("load:{t}:{}", count - 1);
        assert_eq!(call::<i64>(&mut con, &[b"EXISTS", last.as_bytes()]), 1);
    }
}

#[test]
fn the_log_rewrites_itself_past_its_thresholds() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let args = args(
        &data,
        &[
            "--auto-aof-rewrite-min-size",
            "8kb",
            "--auto-aof-rewrite-percentage",
            "100",
        ],
    );
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(true);
    for round in 0..50 {
        let _: () = call(
            &mut con,
            &[b"SET", b"counter", round.to_string().as_bytes()],
        );
        let _: () = call(&mut con, &[b"SET", b"filler", &[b'x'; 400][..]]);
    }
    wait_until("an automatic rewrite", || {
        info_number(&info(&mut con), "aof_rewrites") >= 1
    });
    wait_until("its end", || {
        info_number(&info(&mut con), "aof_rewrite_in_progress") == 0
    });
    assert!(info_number(&info(&mut con), "aof_current_size") < 8 * 1024);
    daemon.stop();
    let daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    assert_eq!(call::<Vec<u8>>(&mut con, &[b"GET", b"counter"]), b"49");
}

#[test]
fn flushes_swaps_expiry_and_eviction_replay_from_the_log() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let args = args(
        &data,
        &[
            "--appendfsync",
            "always",
            "--maxmemory",
            "200kb",
            "--maxmemory-policy",
            "allkeys-lru",
        ],
    );
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    for db in ["1", "2", "3"] {
        let _: () = call(&mut con, &[b"SELECT", db.as_bytes()]);
        let _: () = call(&mut con, &[b"SET", b"in", db.as_bytes()]);
        let _: i64 = call(&mut con, &[b"SADD", b"set", b"a", b"b", b"c"]);
        let _: i64 = call(&mut con, &[b"SREM", b"set", b"b"]);
    }
    let _: () = call(&mut con, &[b"FLUSHDB"]);
    let _: () = call(&mut con, &[b"SET", b"after-flush", b"3"]);
    let _: () = call(&mut con, &[b"SWAPDB", b"1", b"2"]);
    let _: () = call(&mut con, &[b"SELECT", b"0"]);
    let _: () = call(&mut con, &[b"SET", b"short", b"lived", b"PX", b"30"]);
    wait_until("the active expiry", || {
        info_number(
            &call::<String>(&mut con, &[b"INFO", b"stats"]),
            "expired_keys",
        ) == 1
    });
    // Past maxmemory: keys evicted as the writes go.
    let big = vec![b'v'; 2000];
    for i in 0..300 {
        let _: () = call(&mut con, &[b"SET", format!("big:{i}").as_bytes(), &big]);
    }
    assert!(
        info_number(
            &call::<String>(&mut con, &[b"INFO", b"stats"]),
            "evicted_keys"
        ) > 0
    );
    let _: () = call(&mut con, &[b"FLUSHALL"]);
    let _: () = call(&mut con, &[b"SET", b"after-flushall", b"0"]);
    for i in 0..50 {
        let _: () = call(&mut con, &[b"SET", format!("big:{i}").as_bytes(), &big]);
    }
    let before = keyspace(&mut con);
    daemon.signal_and_wait("KILL");

    let daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    assert_same(&keyspace(&mut con), &before);
}

#[test]
fn bgrewriteaof_and_the_log_settings_in_resp2_and_resp3() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let args = args(&data, &["--snapshot-journal-limit", "0"]);
    let daemon = Daemon::start_at(&dir.0, &args, &[]);
    for resp3 in [false, true] {
        let mut con = daemon.client(resp3);
        let _: () = call(&mut con, &[b"SET", b"k", b"v"]);
        let started: String = call(&mut con, &[b"BGREWRITEAOF"]);
        assert_eq!(started, "Background append only file rewriting started");
        // A second one while it runs is refused, or it finished first and starts anew.
        let second: RedisResult<String> = redis::cmd("BGREWRITEAOF").query(&mut con);
        match second {
            Ok(reply) => assert_eq!(reply, "Background append only file rewriting started"),
            Err(e) => assert!(
                e.to_string()
                    .contains("Background append only file rewriting already in progress"),
                "{e}"
            ),
        }
        wait_until("the rewrites", || {
            info_number(&info(&mut con), "aof_rewrite_in_progress") == 0
        });
        assert!(error_of(&mut con, &[b"BGREWRITEAOF", b"x"]).contains("wrong number of arguments"));

        let get = |con: &mut Connection, pattern: &[u8]| -> BTreeMap<String, String> {
            call(con, &[b"CONFIG", b"GET", pattern])
        };
        assert_eq!(get(&mut con, b"appendfsync")["appendfsync"], "everysec");
        let _: () = call(&mut con, &[b"CONFIG", b"SET", b"appendfsync", b"always"]);
        assert_eq!(get(&mut con, b"appendfsync")["appendfsync"], "always");
        let _: () = call(&mut con, &[b"SET", b"durable", b"yes"]);
        let _: () = call(&mut con, &[b"CONFIG", b"SET", b"appendfsync", b"everysec"]);
        let error = error_of(&mut con, &[b"CONFIG", b"SET", b"appendfsync", b"sometimes"]);
        assert!(
            error.contains("must be one of the following: always, everysec, no"),
            "{error}"
        );
        let _: () = call(
            &mut con,
            &[
                b"CONFIG",
                b"SET",
                b"auto-aof-rewrite-percentage",
                b"50",
                b"auto-aof-rewrite-min-size",
                b"1mb",
            ],
        );
        let got = get(&mut con, b"auto-aof-rewrite-*");
        assert_eq!(got["auto-aof-rewrite-percentage"], "50");
        assert_eq!(got["auto-aof-rewrite-min-size"], "1048576");
        assert_eq!(get(&mut con, b"appendonly")["appendonly"], "yes");
        let error = error_of(
            &mut con,
            &[b"CONFIG", b"SET", b"appenddirname", b"elsewhere"],
        );
        assert!(error.contains("can't set immutable config"), "{error}");
    }
    // The log's files hold sessions: owner-only.
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(log_dir(&data)).expect("log dir") {
        let entry = entry.expect("entry");
        let mode = entry.metadata().expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{:?}", entry.file_name());
    }
}

#[test]
fn appendonly_no_writes_no_log_and_bgrewriteaof_says_so() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let args = args(&data, &["--appendonly", "no"]);
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    for resp3 in [false, true] {
        let mut con = daemon.client(resp3);
        let _: () = call(&mut con, &[b"SET", b"k", b"v"]);
        assert_eq!(info_field(&info(&mut con), "aof_enabled"), "0");
        let error = error_of(&mut con, &[b"BGREWRITEAOF"]);
        assert!(error.contains("append-only log is off"), "{error}");
        // As Redis, the log's settings change while it is off: its next start takes them.
        let _: () = call(&mut con, &[b"CONFIG", b"SET", b"appendfsync", b"always"]);
        assert_eq!(config_get(&mut con, "appendfsync"), "always");
    }
    daemon.stop();
    assert!(!log_dir(&data).exists());
}

#[test]
fn a_log_that_cannot_be_written_refuses_writes_with_misconf_but_not_logouts() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let args = args(&data, &[]);
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    let id: Vec<u8> = call(&mut con, &[b"SESSION.CREATE", b"USER", b"alice"]);
    // Into the base, so that the log written from now on can be lost.
    let _: String = call(&mut con, &[b"BGREWRITEAOF"]);
    wait_until("the rewrite", || {
        info_number(&info(&mut con), "aof_rewrites") == 1
            && info_number(&info(&mut con), "aof_rewrite_in_progress") == 0
    });
    daemon.stop();
    // The log's file on a full disk: /dev/full fails every write with ENOSPC.
    let incr = last_incr(&data);
    std::fs::remove_file(&incr).expect("remove the log");
    std::os::unix::fs::symlink("/dev/full", &incr).expect("symlink");

    let daemon = Daemon::start_at(&dir.0, &args, &[]);
    for resp3 in [false, true] {
        let mut con = daemon.client(resp3);
        // Taken in memory, then the write to the log fails.
        let _: RedisResult<Value> = redis::cmd("SET").arg("first").arg("v").query(&mut con);
        wait_until("the failed write", || {
            info_field(&info(&mut con), "aof_last_write_status") == "err"
        });
        let error = error_of(&mut con, &[b"SET", b"k", b"v"]);
        assert!(
            error.contains("MISCONF") && error.contains("Errors writing to the AOF file"),
            "{error}"
        );
        assert!(error.contains("No space left on device"), "{error}");
        assert_eq!(call::<Option<Vec<u8>>>(&mut con, &[b"GET", b"k"]), None);
    }
    // A logout still passes.
    let mut con = daemon.client(false);
    let destroyed: i64 = call(&mut con, &[b"SESSION.DESTROY", &id]);
    assert_eq!(destroyed, 1);
    // A rewrite cannot switch files meanwhile: it gives up (after 10 s) rather than hold the
    // save slot for ever, and a snapshot runs after it.
    let _: String = call(&mut con, &[b"BGREWRITEAOF"]);
    wait_until("the rewrite given up", || {
        let persistence = info(&mut con);
        info_field(&persistence, "aof_last_bgrewrite_status") == "err"
            && info_field(&persistence, "aof_rewrite_in_progress") == "0"
    });
    let saving: String = call(&mut con, &[b"BGSAVE"]);
    assert_eq!(saving, "Background saving started");
}

/// Waits until the node of `r` wrote its log's first base (at start, with the log on): no
/// rewrite under way or scheduled.
fn wait_for_the_first_base(r: &mut Connection) {
    wait_until("the node's own first base written", || {
        let persistence = info(r);
        info_field(&persistence, "aof_rewrite_in_progress") == "0"
            && info_field(&persistence, "aof_rewrite_scheduled") == "0"
    });
}

/// Makes the node of `r` a replica of the primary on `port` (REPLICAOF), and waits until its
/// link is up and its log's base of the loaded keyspace is written.
fn follow_and_write_the_base(r: &mut Connection, port: u16) {
    let rewrites = info_number(&info(r), "aof_rewrites");
    let port = port.to_string();
    let _: () = call(r, &[b"REPLICAOF", b"127.0.0.1", port.as_bytes()]);
    wait_until("the replica's link up and its log's base written", || {
        let replication: String = call(r, &[b"INFO", b"replication"]);
        let persistence = info(r);
        info_field(&replication, "master_link_status") == "up"
            && info_number(&persistence, "aof_rewrites") > rewrites
            && info_field(&persistence, "aof_rewrite_in_progress") == "0"
    });
}

/// A replica's log after a full sync: the log held the replica's old keyspace, not the one it
/// loaded from its primary, so the sync rewrites it. Killed afterwards and restarted alone,
/// the replica has the primary's data and what the stream brought since, not its old keys.
#[test]
fn a_replica_rewrites_its_log_after_a_full_sync() {
    let dir = ScratchDir::new();
    let primary_data = dir.arg("primary");
    let primary = Daemon::start_at(&dir.0, &args(&primary_data, &["--appendonly", "no"]), &[]);
    let mut p = primary.client(false);
    for i in 0..50 {
        let _: () = call(&mut p, &[b"SET", format!("key:{i}").as_bytes(), b"v"]);
    }
    let id: Vec<u8> = call(&mut p, &[b"SESSION.CREATE", b"USER", b"ada"]);

    let replica_data = dir.arg("replica");
    let replica_args = args(&replica_data, &["--appendfsync", "always"]);
    let mut replica = Daemon::start_at(&dir.0, &replica_args, &[]);
    let mut r = replica.client(false);
    let _: () = call(&mut r, &[b"SET", b"before-the-sync", b"1"]);
    follow_and_write_the_base(&mut r, primary.addr.port());
    let _: () = call(&mut p, &[b"SET", b"after-the-sync", b"1"]);
    let replicas: i64 = call(&mut p, &[b"WAIT", b"1", b"0"]);
    assert_eq!(replicas, 1);
    let before = keyspace(&mut r);
    assert_eq!(
        before.len(),
        52,
        "the primary's 50 keys, its session and the later key"
    );
    replica.signal_and_wait("KILL");

    // Alone: the restarted replica follows no primary (it was not started with --replicaof).
    let replica = Daemon::start_at(&dir.0, &replica_args, &[]);
    let mut r = replica.client(true);
    assert_same(&keyspace(&mut r), &before);
    let listed: Vec<Vec<u8>> = call(&mut r, &[b"SESSION.LIST", b"ada"]);
    assert_eq!(listed, vec![id]);
    let old: Option<String> = call(&mut r, &[b"GET", b"before-the-sync"]);
    assert_eq!(old, None, "the keyspace the sync replaced");
}

/// A replica whose log's base, written after a full sync, takes longer than its primary's
/// `repl-timeout` acknowledges the snapshot's offset meanwhile: the primary keeps the link,
/// idle or taking writes. Dropped, the link would resume from the backlog at best; past it, a
/// full sync would start over and time out the same way.
#[test]
fn a_replica_keeps_its_link_while_it_writes_its_base_after_a_full_sync() {
    for busy in [Busy::Idle, Busy::Writes] {
        replica_keeps_its_link_while_it_writes_its_base(busy);
    }
}

/// Meanwhile the replica reads the stream ahead into its own memory: a write storm during its
/// base does not pile up in the primary's buffer for it, past the primary's
/// `client-output-buffer-limit replica` (8 MB here, against tens of MB of 2 KB writes during
/// the base's 4 s, and the sockets' few MB), which would drop the link. The replica holds up to
/// its own limit (512 MB here, so that a fast machine's storm fits too).
#[test]
fn a_replica_reads_the_stream_ahead_while_it_writes_its_base() {
    replica_keeps_its_link_while_it_writes_its_base(Busy::Storm);
}

/// What the primary does while its replica writes its log's base.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Busy {
    Idle,
    /// Small writes.
    Writes,
    /// 2 KB writes, with an 8 MB limit on the primary's buffer for a replica.
    Storm,
}

fn replica_keeps_its_link_while_it_writes_its_base(busy: Busy) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = ScratchDir::new();
    let primary_data = dir.arg("primary");
    let mut primary_args = args(
        &primary_data,
        &["--appendonly", "no", "--repl-timeout", "2s"],
    );
    if busy == Busy::Storm {
        primary_args.extend(["--client-output-buffer-limit", "replica 8mb 0 0"]);
    }
    let primary = Daemon::start_at(&dir.0, &primary_args, &[]);
    let mut p = primary.client(false);
    for i in 0..50 {
        let _: () = call(&mut p, &[b"SET", format!("key:{i}").as_bytes(), b"v"]);
    }

    // A base takes about 4 s (4 ms after each of 1,024 shards): twice the primary's timeout.
    let replica_data = dir.arg("replica");
    let mut replica_args = args(&replica_data, &["--debug-aof-base-shard-delay", "4ms"]);
    if busy == Busy::Storm {
        replica_args.extend(["--client-output-buffer-limit", "replica 512mb 0 0"]);
    }
    let mut replica = Daemon::start_at(&dir.0, &replica_args, &[]);
    let mut r = replica.client(false);
    wait_for_the_first_base(&mut r);
    // Writes on the primary throughout the sync and the base: the stream keeps coming.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let value = match busy {
        Busy::Storm => vec![b'v'; 2048],
        _ => b"v".to_vec(),
    };
    let writer = (busy != Busy::Idle).then(|| {
        let (stop, mut con) = (stop.clone(), primary.client(false));
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _: () = call(
                    &mut con,
                    &[b"SET", format!("busy:{}", i % 1000).as_bytes(), &value],
                );
                i += 1;
            }
        })
    });
    follow_and_write_the_base(&mut r, primary.addr.port());
    stop.store(true, Ordering::Relaxed);
    if let Some(writer) = writer {
        writer.join().expect("writer");
    }
    let _: () = call(&mut p, &[b"SET", b"after-the-sync", b"1"]);
    let replicas: i64 = call(&mut p, &[b"WAIT", b"1", b"20000"]);
    assert_eq!(
        replicas, 1,
        "the replica acknowledges on the link it synced on"
    );
    let stats: String = call(&mut p, &[b"INFO", b"stats"]);
    // The link was never dropped: no second full sync, nor a partial one from the backlog.
    assert_eq!(info_number(&stats, "sync_full"), 1, "{busy:?}\n{stats}");
    assert_eq!(
        info_number(&stats, "sync_partial_ok"),
        0,
        "{busy:?}\n{stats}"
    );
    let after: Option<String> = call(&mut r, &[b"GET", b"after-the-sync"]);
    assert_eq!(after.as_deref(), Some("1"));
    if busy == Busy::Storm {
        replica.wait_for_log("read the stream ahead while the log's base was written");
    }
}

/// A full sync that begins while a save holds the replica's save slot (here a rewrite of its
/// log): the link reads the snapshot into the loader's channel and waits there for room while
/// the loader waits for the slot, which it claims once the save ends. (Waited for outside the
/// loader's polling, the room never came: the loader never claimed the slot, and the link hung
/// until the next REPLICAOF.)
#[test]
fn a_full_sync_waits_for_a_save_under_way_on_the_replica() {
    let dir = ScratchDir::new();
    let primary_data = dir.arg("primary");
    let primary = Daemon::start_at(&dir.0, &args(&primary_data, &["--appendonly", "no"]), &[]);
    let mut p = primary.client(false);
    fill_32_mb(&mut p);

    // A rewrite takes about 2 s (2 ms after each of 1,024 shards).
    let replica_data = dir.arg("replica");
    let replica_args = args(&replica_data, &["--debug-aof-base-shard-delay", "2ms"]);
    let replica = Daemon::start_at(&dir.0, &replica_args, &[]);
    let mut r = replica.client(false);
    wait_for_the_first_base(&mut r);
    let rewrites = info_number(&info(&mut r), "aof_rewrites");
    let started: String = call(&mut r, &[b"BGREWRITEAOF"]);
    assert_eq!(started, "Background append only file rewriting started");
    let port = primary.addr.port().to_string();
    let _: () = call(&mut r, &[b"REPLICAOF", b"127.0.0.1", port.as_bytes()]);
    // The rewrite holds the slot to its end (it fails then: the node became a replica); then
    // the sync loads, and writes the base of what it loaded.
    wait_until("the replica's link up and its log's base written", || {
        let replication: String = call(&mut r, &[b"INFO", b"replication"]);
        let persistence = info(&mut r);
        info_field(&replication, "master_link_status") == "up"
            && info_number(&persistence, "aof_rewrites") > rewrites
            && info_field(&persistence, "aof_rewrite_in_progress") == "0"
    });
    let keys: i64 = call(&mut r, &[b"DBSIZE"]);
    assert_eq!(keys, 32 * 256);
}

/// Writes 32 MB (8,192 keys of 4 KB) through `con`: more than a replica's loader channel, the
/// sockets and a primary's chunks in flight hold.
fn fill_32_mb(con: &mut Connection) {
    let value = vec![b'v'; 4096];
    for batch in 0..32 {
        let mut mset: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
        for i in 0..256 {
            mset.push(format!("key:{batch}:{i}").into_bytes());
            mset.push(value.clone());
        }
        let mset: Vec<&[u8]> = mset.iter().map(Vec::as_slice).collect();
        let _: () = call(con, &mset);
    }
}

/// A full sync whose primary goes away while the replica's loader still waits for the save slot
/// gives up before the loader begins: the replica keeps its keyspace (as Redis keeps its data
/// until a snapshot arrives) rather than emptying it for a load that cannot complete. The
/// snapshot (32 MB) is more than the loader's channel holds: the link reads on meanwhile, and
/// so sees the primary go.
#[test]
fn a_sync_lost_before_its_loader_began_keeps_the_keyspace() {
    let dir = ScratchDir::new();
    let (mut primary, mut replica, mut r) = a_sync_during_a_rewrite(&dir, &[]);
    primary.wait_for_log("snapshot sent to replica");
    primary.signal_and_wait("KILL");
    replica.wait_for_log("replication link to the primary failed");
    // The rewrite ends (failed: the node became a replica) and frees the slot the loader
    // would have taken; a later automatic retry would count.
    wait_until("the rewrite done", || {
        let persistence = info(&mut r);
        info_field(&persistence, "aof_rewrite_in_progress") == "0"
    });
    let mine: Option<String> = call(&mut r, &[b"GET", b"mine"]);
    assert_eq!(mine.as_deref(), Some("kept"));
    let replication: String = call(&mut r, &[b"INFO", b"replication"]);
    assert_eq!(info_field(&replication, "master_link_status"), "down");
}

/// A primary holding 32 MB and a replica (with `replica_extra` arguments) that set `mine` =
/// `kept`, began a rewrite of about 3 s (3 ms after each of 1,024 shards), then was told to
/// follow the primary: its full sync waits for the save slot.
fn a_sync_during_a_rewrite(
    dir: &ScratchDir,
    replica_extra: &[&str],
) -> (Daemon, Daemon, redis::Connection) {
    let primary_data = dir.arg("primary");
    let primary = Daemon::start_at(&dir.0, &args(&primary_data, &["--appendonly", "no"]), &[]);
    let mut p = primary.client(false);
    fill_32_mb(&mut p);
    let replica_data = dir.arg("replica");
    let mut extra = vec!["--debug-aof-base-shard-delay", "3ms"];
    extra.extend_from_slice(replica_extra);
    let replica = Daemon::start_at(&dir.0, &args(&replica_data, &extra), &[]);
    let mut r = replica.client(false);
    wait_for_the_first_base(&mut r);
    let _: () = call(&mut r, &[b"SET", b"mine", b"kept"]);
    let started: String = call(&mut r, &[b"BGREWRITEAOF"]);
    assert_eq!(started, "Background append only file rewriting started");
    let port = primary.addr.port().to_string();
    let _: () = call(&mut r, &[b"REPLICAOF", b"127.0.0.1", port.as_bytes()]);
    (primary, replica, r)
}

/// As above, with a snapshot larger than what the replica reads ahead (its replica-class hard
/// limit): full while the loader waits, the link stops reading and could not see its primary
/// go, so it gives the sync up at once, and the keyspace stays.
#[test]
fn a_sync_past_the_read_room_before_its_loader_began_keeps_the_keyspace() {
    let dir = ScratchDir::new();
    let (mut primary, mut replica, mut r) =
        a_sync_during_a_rewrite(&dir, &["--client-output-buffer-limit", "replica 1mb 0 0"]);
    replica.wait_for_log("while a save held the slot; given up, the keyspace kept");
    // Gone before the slot frees: no later attempt replaces the keyspace either.
    primary.signal_and_wait("KILL");
    wait_until("the rewrite done", || {
        let persistence = info(&mut r);
        info_field(&persistence, "aof_rewrite_in_progress") == "0"
    });
    let mine: Option<String> = call(&mut r, &[b"GET", b"mine"]);
    assert_eq!(mine.as_deref(), Some("kept"));
}

/// A SWAPDB between a full sync's start (the stream's offset) and its snapshot's walk would be
/// in both: the primary fails that sync before the snapshot's last bytes leave, so the replica
/// never completes it nor resumes after it from the backlog (which would swap its databases
/// back), and the next sync is whole.
#[test]
fn a_swapdb_before_a_full_syncs_walk_reaches_the_replica_once() {
    let dir = ScratchDir::new();
    let primary_data = dir.arg("primary");
    // A save takes about 3 s (3 ms after each of 1,024 shards): the sync's snapshot waits for
    // the slot a BGSAVE holds, after the sync's start.
    let primary_args = args(
        &primary_data,
        &["--appendonly", "no", "--debug-snapshot-shard-delay", "3ms"],
    );
    let mut primary = Daemon::start_at(&dir.0, &primary_args, &[]);
    let mut p = primary.client(false);
    let _: () = call(&mut p, &[b"SET", b"was-in-0", b"a"]);
    let _: () = call(&mut p, &[b"SELECT", b"1"]);
    let _: () = call(&mut p, &[b"SET", b"was-in-1", b"b"]);
    let _: () = call(&mut p, &[b"SELECT", b"0"]);
    let saving: String = call(&mut p, &[b"BGSAVE"]);
    assert_eq!(saving, "Background saving started");

    let replica_data = dir.arg("replica");
    let replica = Daemon::start_at(&dir.0, &args(&replica_data, &["--appendonly", "no"]), &[]);
    let mut r = replica.client(false);
    let port = primary.addr.port().to_string();
    let _: () = call(&mut r, &[b"REPLICAOF", b"127.0.0.1", port.as_bytes()]);
    primary.wait_for_log("full resynchronization");
    let _: () = call(&mut p, &[b"SWAPDB", b"0", b"1"]);

    wait_until("the replica's link up", || {
        let replication: String = call(&mut r, &[b"INFO", b"replication"]);
        info_field(&replication, "master_link_status") == "up"
    });
    let _: () = call(&mut p, &[b"SET", b"after", b"1"]);
    let replicas: i64 = call(&mut p, &[b"WAIT", b"1", b"20000"]);
    assert_eq!(replicas, 1);
    let in_0: Vec<String> = call(&mut r, &[b"KEYS", b"*"]);
    let _: () = call(&mut r, &[b"SELECT", b"1"]);
    let in_1: Vec<String> = call(&mut r, &[b"KEYS", b"*"]);
    let mut in_0 = in_0;
    in_0.sort();
    assert_eq!(
        (in_0, in_1),
        (
            vec!["after".to_owned(), "was-in-1".to_owned()],
            vec!["was-in-0".to_owned()]
        )
    );
    // The sync the swap spoiled failed (before the walk: "came during the snapshot"; during
    // it, on a slow start: "ran during the save").
    let log = primary.wait_for_log("replica link lost");
    assert!(log.contains("SWAPDB"), "{log}");
}

/// A log left by a run with `appendonly yes` is set aside by a run with `no`: loaded again by a
/// later run with the log on, it would bring back the sessions the run without it destroyed.
#[test]
fn a_run_without_the_log_sets_the_old_log_aside_so_a_logout_stays() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let with_log = args(&data, &[]);
    let mut daemon = Daemon::start_at(&dir.0, &with_log, &[]);
    let mut con = daemon.client(false);
    let id: Vec<u8> = call(&mut con, &[b"SESSION.CREATE", b"USER", b"alice"]);
    daemon.stop();

    let without = args(&data, &["--appendonly", "no"]);
    let mut daemon = Daemon::start_at(&dir.0, &without, &[]);
    let mut con = daemon.client(false);
    let destroyed: i64 = call(&mut con, &[b"SESSION.DESTROY", &id]);
    assert_eq!(destroyed, 1);
    daemon.stop();
    let manifest = log_dir(&data).join("appendonly.aof.manifest");
    assert!(!manifest.exists(), "the old log is still in place");
    assert!(log_dir(&data)
        .join("appendonly.aof.manifest.stale")
        .exists());

    let daemon = Daemon::start_at(&dir.0, &with_log, &[]);
    let mut con = daemon.client(true);
    let exists: i64 = call(&mut con, &[b"EXISTS", &id]);
    assert_eq!(exists, 0, "the logged-out session came back");
    let listed: Vec<Vec<u8>> = call(&mut con, &[b"SESSION.LIST", b"alice"]);
    assert!(listed.is_empty(), "{listed:?}");
}

/// A damaged length field that makes a frame in the middle seem to run past the end is damage,
/// not a torn tail (whole frames follow it): the start fails rather than drop every later
/// change, logouts included.
#[test]
fn a_damaged_length_in_the_middle_is_not_taken_for_a_torn_tail() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let args = args(&data, &["--appendfsync", "always"]);
    twenty_writes_then_kill_9(&dir, &args);

    let incr = last_incr(&data);
    let mut bytes = std::fs::read(&incr).expect("log");
    let third = frame_offset(&bytes, 2);
    let end = frame_offset(&bytes, 20);
    // The third frame's length: past the end of the file.
    let past_the_end = (bytes.len() - third) as u32 + 1000;
    bytes[third..third + 4].copy_from_slice(&past_the_end.to_le_bytes());
    std::fs::write(&incr, &bytes).expect("write");
    let incr_arg = incr.to_str().expect("utf-8");

    let (status, log) = run_until_exit(&dir.0, &args, &[]);
    assert_eq!(status.code(), Some(1), "{status}\n{log}");
    let expected = format!("{incr_arg}: frame length {past_the_end} runs past the end");
    assert!(log.contains(&expected), "{expected} in:\n{log}");
    assert!(log.contains(&format!("offset {third}")), "{log}");

    // A length that ends in the zeros written ahead of the log instead: its checksum fails
    // with only zeros after it, as a torn last write's would, but it spans whole frames.
    assert!(bytes[end..].len() >= 1000 && bytes[end..].iter().all(|b| *b == 0));
    let into_the_zeros = (end - third - 8) as u32 + 1000;
    bytes[third..third + 4].copy_from_slice(&into_the_zeros.to_le_bytes());
    std::fs::write(&incr, &bytes).expect("write");
    let (status, log) = run_until_exit(&dir.0, &args, &[]);
    assert_eq!(status.code(), Some(1), "{status}\n{log}");
    let expected = format!("{incr_arg}: frame checksum mismatch at byte offset {third}");
    assert!(log.contains(&expected), "{expected} in:\n{log}");
}

/// The names the manifest of `data`'s log holds, in order.
fn manifest_names(data: &str) -> Vec<String> {
    let text =
        std::fs::read_to_string(log_dir(data).join("appendonly.aof.manifest")).expect("a manifest");
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

/// Waits until the log's rewrite (the first after it was turned on) is done.
fn wait_for_the_rewrite(con: &mut Connection) {
    wait_until("the log's rewrite", || {
        let persistence = info(con);
        info_number(&persistence, "aof_rewrites") >= 1
            && info_field(&persistence, "aof_rewrite_in_progress") == "0"
            && info_field(&persistence, "aof_rewrite_scheduled") == "0"
    });
}

/// CONFIG SET appendonly yes on a server started without the log, as Redis's: the log is on
/// at once (`aof_enabled:1`), its rewrite waits for the snapshot being written
/// (`aof_rewrite_scheduled:1`), then writes a base of the keyspace; killed afterwards and
/// restarted with the log on, the server has everything, what was there before the log
/// included.
#[test]
fn config_set_appendonly_yes_starts_a_log_that_a_restart_loads() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let slow_saves = args(
        &data,
        &[
            "--appendonly",
            "no",
            "--appendfsync",
            "always",
            "--debug-snapshot-shard-delay",
            "5ms",
        ],
    );
    let mut daemon = Daemon::start_at(&dir.0, &slow_saves, &[]);
    let mut con = daemon.client(false);
    let id: Vec<u8> = call(&mut con, &[b"SESSION.CREATE", b"USER", b"ada"]);
    for i in 0..50 {
        let _: () = call(&mut con, &[b"SET", format!("before:{i}").as_bytes(), b"v"]);
    }
    // A snapshot that takes seconds (5 ms after each shard): the rewrite waits for it.
    let saving: String = call(&mut con, &[b"BGSAVE"]);
    assert_eq!(saving, "Background saving started");
    for resp3 in [false, true] {
        let mut con = daemon.client(resp3);
        let error = error_of(&mut con, &[b"CONFIG", b"SET", b"appendonly", b"maybe"]);
        assert!(
            error.contains("CONFIG SET failed (possibly related to argument 'appendonly')")
                && error.contains("argument must be 'yes' or 'no'"),
            "{error}"
        );
        // The second time, already on: nothing changes.
        let ok: String = call(&mut con, &[b"CONFIG", b"SET", b"appendonly", b"yes"]);
        assert_eq!(ok, "OK");
        assert_eq!(config_get(&mut con, "appendonly"), "yes");
        let persistence = info(&mut con);
        assert_eq!(info_field(&persistence, "aof_enabled"), "1");
        if info_field(&persistence, "rdb_bgsave_in_progress") == "1" {
            assert_eq!(info_field(&persistence, "aof_rewrite_scheduled"), "1");
            assert_eq!(info_field(&persistence, "aof_rewrite_in_progress"), "0");
        }
    }
    // Taken meanwhile: in the log from its start, in the base or after it.
    let _: () = call(&mut con, &[b"SET", b"during", b"v"]);
    wait_for_the_rewrite(&mut con);
    assert_eq!(
        info_field(&info(&mut con), "aof_last_bgrewrite_status"),
        "ok"
    );
    let names = manifest_names(&data);
    assert_eq!(names.len(), 2, "a base and a log: {names:?}");
    for i in 0..20 {
        let _: () = call(&mut con, &[b"SET", format!("after:{i}").as_bytes(), b"v"]);
    }
    let before = keyspace(&mut con);
    assert_eq!(before.len(), 1 + 50 + 1 + 20);
    daemon.signal_and_wait("KILL");

    let with_log = args(&data, &["--appendonly", "yes"]);
    let daemon = Daemon::start_at(&dir.0, &with_log, &[]);
    let mut con = daemon.client(true);
    assert_same(&keyspace(&mut con), &before);
    let listed: Vec<Vec<u8>> = call(&mut con, &[b"SESSION.LIST", b"ada"]);
    assert_eq!(listed, vec![id]);
}

/// A write pipelined before CONFIG SET appendonly no is in the log it closes: the connection's
/// thread still holds the write's frame when the log waits to take every change before it.
#[test]
fn a_write_pipelined_before_config_set_appendonly_no_is_in_the_log() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let with_log = args(&data, &[]);
    let mut daemon = Daemon::start_at(&dir.0, &with_log, &[]);
    let mut con = daemon.client(false);
    // One write, so one batch: the SET's frame is still held by the connection's thread when
    // CONFIG SET waits for the log to take every change made before it.
    let (set, off): (String, String) = redis::pipe()
        .cmd("SET")
        .arg("pipelined")
        .arg("v")
        .cmd("CONFIG")
        .arg(&["SET", "appendonly", "no"])
        .query(&mut con)
        .expect("the pipeline");
    assert_eq!((set.as_str(), off.as_str()), ("OK", "OK"));
    daemon.signal_and_wait("KILL");

    let daemon = Daemon::start_at(&dir.0, &with_log, &[]);
    let mut con = daemon.client(true);
    let value: Option<String> = call(&mut con, &[b"GET", b"pipelined"]);
    assert_eq!(value.as_deref(), Some("v"));
}

/// CONFIG SET appendonly no, as Redis's: the log is written out, fsynced and closed, and its
/// files stay. A restart with the log on then loads it as it stood at that moment (the changes
/// made later are not in it: the keyspace of that moment, not a mix), until a snapshot started
/// after the stop is newer: that one sets the log aside, and a restart loads the snapshot.
#[test]
fn config_set_appendonly_no_leaves_the_log_as_it_stood_until_a_newer_snapshot() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let with_log = args(&data, &["--appendfsync", "always"]);
    let mut daemon = Daemon::start_at(&dir.0, &with_log, &[]);
    let mut con = daemon.client(false);
    let id: Vec<u8> = call(&mut con, &[b"SESSION.CREATE", b"USER", b"ada"]);
    for i in 0..30 {
        let _: () = call(&mut con, &[b"SET", format!("key:{i}").as_bytes(), b"v"]);
    }
    let at_stop = keyspace(&mut con);
    for resp3 in [false, true] {
        let mut con = daemon.client(resp3);
        let ok: String = call(&mut con, &[b"CONFIG", b"SET", b"appendonly", b"no"]);
        assert_eq!(ok, "OK");
        assert_eq!(config_get(&mut con, "appendonly"), "no");
        assert_eq!(info_field(&info(&mut con), "aof_enabled"), "0");
        let error = error_of(&mut con, &[b"BGREWRITEAOF"]);
        assert!(error.contains("append-only log is off"), "{error}");
    }
    // Changes the log does not take.
    let _: () = call(&mut con, &[b"SET", b"after-the-stop", b"v"]);
    let _: i64 = call(&mut con, &[b"DEL", b"key:0"]);
    let destroyed: i64 = call(&mut con, &[b"SESSION.DESTROY", &id]);
    assert_eq!(destroyed, 1);
    daemon.signal_and_wait("KILL");

    let mut daemon = Daemon::start_at(&dir.0, &with_log, &[]);
    let mut con = daemon.client(true);
    assert_same(&keyspace(&mut con), &at_stop);

    // Off again, then a snapshot newer than the log: the log is set aside.
    let _: String = call(&mut con, &[b"CONFIG", b"SET", b"appendonly", b"no"]);
    let _: i64 = call(&mut con, &[b"DEL", b"key:1"]);
    let saved: String = call(&mut con, &[b"SAVE"]);
    assert_eq!(saved, "OK");
    let at_save = keyspace(&mut con);
    assert!(!log_dir(&data).join("appendonly.aof.manifest").exists());
    assert!(log_dir(&data)
        .join("appendonly.aof.manifest.stale")
        .exists());
    daemon.signal_and_wait("KILL");

    let daemon = Daemon::start_at(&dir.0, &with_log, &[]);
    let mut con = daemon.client(false);
    assert_same(&keyspace(&mut con), &at_save);
}

/// Off, then on again in the same process: the new log starts from the keyspace as it is, not
/// from the old log (which misses what changed while the log was off), and its first commit
/// replaces the old files.
#[test]
fn appendonly_turned_off_then_on_again_logs_the_keyspace_as_it_is() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let with_log = args(&data, &["--appendfsync", "always"]);
    let mut daemon = Daemon::start_at(&dir.0, &with_log, &[]);
    let mut con = daemon.client(false);
    let id: Vec<u8> = call(&mut con, &[b"SESSION.CREATE", b"USER", b"ada"]);
    let _: () = call(&mut con, &[b"SET", b"k1", b"v"]);
    let _: String = call(&mut con, &[b"BGREWRITEAOF"]);
    wait_for_the_rewrite(&mut con);
    let old = manifest_names(&data);
    let _: String = call(&mut con, &[b"CONFIG", b"SET", b"appendonly", b"no"]);
    // INFO counts the server's rewrites, as Redis, whichever log made them.
    let persistence = info(&mut con);
    assert_eq!(
        info_number(&persistence, "aof_rewrites"),
        1,
        "{persistence}"
    );
    assert_eq!(info_field(&persistence, "aof_last_bgrewrite_status"), "ok");
    let _: () = call(&mut con, &[b"SET", b"k2", b"v"]);
    let _: i64 = call(&mut con, &[b"DEL", b"k1"]);
    let destroyed: i64 = call(&mut con, &[b"SESSION.DESTROY", &id]);
    assert_eq!(destroyed, 1);
    let _: String = call(&mut con, &[b"CONFIG", b"SET", b"appendonly", b"yes"]);
    wait_until("the new log's rewrite", || {
        let persistence = info(&mut con);
        info_number(&persistence, "aof_rewrites") == 2
            && info_field(&persistence, "aof_rewrite_in_progress") == "0"
    });
    let _: () = call(&mut con, &[b"SET", b"k3", b"v"]);
    let before = keyspace(&mut con);
    let new = manifest_names(&data);
    assert_eq!(new.len(), 2, "{new:?}");
    for name in &old {
        assert!(!new.contains(name), "{name} in {new:?}");
        assert!(!log_dir(&data).join(name).exists(), "{name} left");
    }
    daemon.signal_and_wait("KILL");

    let daemon = Daemon::start_at(&dir.0, &with_log, &[]);
    let mut con = daemon.client(true);
    assert_same(&keyspace(&mut con), &before);
    let exists: i64 = call(&mut con, &[b"EXISTS", b"k1", &id]);
    assert_eq!(
        exists, 0,
        "a key deleted and a session destroyed while the log was off"
    );
}

/// CONFIG REWRITE writes `appendonly` back when it changed at run time.
#[test]
fn config_rewrite_writes_appendonly() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let file = dir.file("sessiond.toml", "# the log\nappendonly = \"no\"\n");
    let file = file.to_str().expect("utf-8 path").to_owned();
    let mut daemon = Daemon::start_at(&dir.0, &args(&data, &["--config", &file]), &[]);
    let mut con = daemon.client(false);
    let _: String = call(&mut con, &[b"CONFIG", b"SET", b"appendonly", b"yes"]);
    let _: String = call(&mut con, &[b"CONFIG", b"REWRITE"]);
    let text = std::fs::read_to_string(&file).expect("config file");
    assert_eq!(text, "# the log\nappendonly = \"yes\"\n");
    wait_for_the_rewrite(&mut con);
    daemon.stop();
}

/// A replica whose log holds an old keyspace, killed as soon as its full sync is done (the
/// link up, nothing more awaited): the log restarted from the loaded keyspace before the link
/// went on, so the restarted replica has exactly its primary's keyspace, nothing of its old
/// one (not even a key both had, with the replica's old value).
#[test]
fn a_replica_killed_right_after_its_full_sync_restarts_with_its_primary_s_keyspace() {
    let dir = ScratchDir::new();
    let primary_data = dir.arg("primary");
    let primary = Daemon::start_at(&dir.0, &args(&primary_data, &["--appendonly", "no"]), &[]);
    let mut p = primary.client(false);
    for i in 0..100 {
        let _: () = call(&mut p, &[b"SET", format!("key:{i}").as_bytes(), b"primary"]);
    }
    let _: Vec<u8> = call(&mut p, &[b"SESSION.CREATE", b"USER", b"ada"]);
    let expected = keyspace(&mut p);

    let replica_data = dir.arg("replica");
    let replica_args = args(&replica_data, &["--appendfsync", "always"]);
    let mut replica = Daemon::start_at(&dir.0, &replica_args, &[]);
    let mut r = replica.client(false);
    for i in 0..100 {
        let _: () = call(&mut r, &[b"SET", format!("key:{i}").as_bytes(), b"replica"]);
        let _: () = call(&mut r, &[b"SET", format!("old:{i}").as_bytes(), b"replica"]);
    }
    let _: Vec<u8> = call(&mut r, &[b"SESSION.CREATE", b"USER", b"bob"]);
    let port = primary.addr.port().to_string();
    let _: () = call(&mut r, &[b"REPLICAOF", b"127.0.0.1", port.as_bytes()]);
    wait_until("the replica's link up", || {
        let replication: String = call(&mut r, &[b"INFO", b"replication"]);
        info_field(&replication, "master_link_status") == "up"
    });
    replica.signal_and_wait("KILL");

    let replica = Daemon::start_at(&dir.0, &replica_args, &[]);
    let mut r = replica.client(true);
    assert_same(&keyspace(&mut r), &expected);
    let bob: Vec<Vec<u8>> = call(&mut r, &[b"SESSION.LIST", b"bob"]);
    assert!(bob.is_empty(), "{bob:?}");
    assert_eq!(manifest_names(&replica_data).len(), 2);
}

/// What depends on the log follows it when it is turned off: a log that cannot be written
/// refuses writes with MISCONF until then, and `always` replies stop waiting for an fsync; on
/// again, INFO shows the log's fields again.
#[test]
fn misconf_and_always_follow_the_log_turned_off_and_on() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let args = args(&data, &["--appendfsync", "always"]);
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    daemon.stop();
    // The log's file on a full disk: /dev/full fails every write with ENOSPC.
    let incr = last_incr(&data);
    std::fs::remove_file(&incr).expect("remove the log");
    std::os::unix::fs::symlink("/dev/full", &incr).expect("symlink");

    let daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    let _: RedisResult<Value> = redis::cmd("SET").arg("first").arg("v").query(&mut con);
    let mut con = daemon.client(false);
    wait_until("the failed write", || {
        info_field(&info(&mut con), "aof_last_write_status") == "err"
    });
    assert!(error_of(&mut con, &[b"SET", b"k", b"v"]).contains("MISCONF"));
    for resp3 in [false, true] {
        let mut con = daemon.client(resp3);
        let ok: String = call(&mut con, &[b"CONFIG", b"SET", b"appendonly", b"no"]);
        assert_eq!(ok, "OK");
        let _: () = call(&mut con, &[b"SET", b"k", b"v"]);
        let persistence = info(&mut con);
        assert_eq!(info_field(&persistence, "aof_enabled"), "0");
        assert_eq!(info_field(&persistence, "aof_last_write_status"), "ok");
        assert!(!persistence.contains("aof_current_size"), "{persistence}");
    }
    // On again, in a new file: `always` replies wait for its fsync and get it.
    std::fs::remove_file(&incr).expect("remove the symlink");
    let ok: String = call(&mut con, &[b"CONFIG", b"SET", b"appendonly", b"yes"]);
    assert_eq!(ok, "OK");
    let _: () = call(&mut con, &[b"SET", b"again", b"v"]);
    wait_for_the_rewrite(&mut con);
    let persistence = info(&mut con);
    assert_eq!(info_field(&persistence, "aof_last_write_status"), "ok");
    assert!(
        info_number(&persistence, "aof_fsync_offset")
            >= info_number(&persistence, "aof_stream_offset"),
        "{persistence}"
    );
}

/// Without persistence there is no log to turn on; `no` changes nothing.
#[test]
fn config_set_appendonly_yes_needs_persistence() {
    let dir = ScratchDir::new();
    let mut daemon = Daemon::start_at(&dir.0, &["--port", "0", "--no-persistence"], &[]);
    for resp3 in [false, true] {
        let mut con = daemon.client(resp3);
        let error = error_of(&mut con, &[b"CONFIG", b"SET", b"appendonly", b"yes"]);
        assert!(
            error.contains("CONFIG SET failed (possibly related to argument 'appendonly')")
                && error.contains("persistence is disabled"),
            "{error}"
        );
        let ok: String = call(&mut con, &[b"CONFIG", b"SET", b"appendonly", b"no"]);
        assert_eq!(ok, "OK");
        assert_eq!(config_get(&mut con, "appendonly"), "no");
    }
    daemon.stop();
}
