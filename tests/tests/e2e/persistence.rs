//! Snapshots end to end. Through the real binary: a random dataset survives SIGTERM and a
//! restart (every key, value and deadline, every session's data, version and user index; keys
//! whose deadline passed during the downtime are gone); a kill -9 during a slow background save
//! leaves the previous snapshot to load and no temp file behind; a corrupt, truncated or newer
//! snapshot stops the start with the file and the offset, and `check-snapshot` says what a file
//! holds; `--snapshot-interval` saves only when something changed; a failed final save keeps the
//! server running (SHUTDOWN FORCE exits anyway), and a second signal forces a long shutdown to
//! end; `--no-persistence` writes nothing; a second server on a data directory in use refuses
//! to start. In-process: the journal makes a background save one consistent instant while
//! clients write, with one record per key and a bound; a failed save keeps the previous snapshot
//! and the server serving, refuses writes with MISCONF and makes SHUTDOWN answer an error;
//! SHUTDOWN [NOSAVE|SAVE]; LASTSAVE on a manual clock; a save while one runs.
//!
//! An in-process test that fails while saves fail can hang in the harness's drop: the server it
//! stops keeps running, by design, when its final save fails.
//!
//! Most servers here run with `--snapshot-interval 0` (or `interval: None`), so that only the
//! saves a test asks for happen, and without the append-only log (`--appendonly no`), which a
//! start would load instead of the snapshot (its own tests are in `aof.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redis::{Connection, FromRedisValue, RedisResult, Value};
use sessiond::persist::aof::AofConfig;
use sessiond::persist::format::FORMAT_VERSION;
use sessiond::persist::{loader, PersistConfig};
use sessiond::store::{Databases, KeyFilter, ValueRef as Stored};
use sessiond::{Clock, Config, Store};
use sessiond_protocol::Frame;
use sessiond_tests::{error_text, info_field, info_number, TestServer, CLOCK_START_MS, IO_TIMEOUT};

use super::daemon::{run_tool, run_until_exit, Daemon, ScratchDir};

/// The snapshot's default file name.
const SNAPSHOT: &str = "dump.sdb";

// ---------------------------------------------------------------------------------------------
// Helpers: commands, waiting, configuration.

/// A command from its arguments, binary-safe.
fn cmd(args: &[&[u8]]) -> redis::Cmd {
    let mut command = redis::Cmd::new();
    for arg in args {
        command.arg(*arg);
    }
    command
}

/// Runs `args`, which must succeed.
fn call<T: FromRedisValue>(con: &mut Connection, args: &[&[u8]]) -> T {
    cmd(args)
        .query(con)
        .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(args[0])))
}

/// The real binary's arguments for a server on port 0 whose data directory is `data` (a path
/// under the test's scratch directory) and that saves only when asked, then `extra`.
fn data_dir_args<'a>(data: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--port",
        "0",
        "--data-dir",
        data,
        "--snapshot-interval",
        "0",
        "--appendonly",
        "no",
    ];
    args.extend_from_slice(extra);
    args
}

/// Runs `args`, which must fail; the error as the server sent it.
fn error_of(con: &mut Connection, args: &[&[u8]]) -> String {
    let result: RedisResult<Value> = cmd(args).query(con);
    match result {
        Ok(value) => panic!(
            "{}: expected an error, got {value:?}",
            String::from_utf8_lossy(args[0])
        ),
        Err(error) => format!(
            "{} {}",
            error.code().unwrap_or("?"),
            error.detail().unwrap_or("")
        ),
    }
}

fn info(con: &mut Connection, section: &str) -> String {
    call(con, &[b"INFO", section.as_bytes()])
}

/// Polls `done` until it holds. For states that nothing signals (a file appearing, a save
/// under way, a periodic save); bounded by [`IO_TIMEOUT`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < IO_TIMEOUT, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// The server's clock (TIME), Unix ms.
fn server_now_ms(con: &mut Connection) -> u64 {
    let (seconds, micros): (u64, u64) = call(con, &[b"TIME"]);
    seconds * 1000 + micros / 1000
}

/// An in-process configuration that snapshots into `dir`, only when asked.
fn persisting(dir: &Path) -> Config {
    Config {
        persistence: Some(PersistConfig {
            dir: dir.to_owned(),
            interval: None,
            aof: AofConfig {
                enabled: false,
                ..AofConfig::default()
            },
            ..PersistConfig::default()
        }),
        ..Config::default()
    }
}

/// A fresh store loaded from `path`.
fn load_fresh(path: &Path) -> Arc<Store> {
    let dbs = Databases::new(Clock::system(), 16);
    loader::load(path, &dbs).unwrap_or_else(|e| panic!("{e}"));
    dbs.first().clone()
}

fn key_names(store: &Store) -> BTreeSet<Vec<u8>> {
    store
        .keys(KeyFilter::default(), store.now_ms())
        .into_iter()
        .map(|key| key.to_vec())
        .collect()
}

fn esc(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn digest(lines: &[String]) -> u64 {
    let mut hasher = DefaultHasher::new();
    lines.hash(&mut hasher);
    hasher.finish()
}

/// Asserts that two canonical dumps have the same digest, showing how they differ if not.
fn assert_same(before: &[String], after: &[String], context: &str) {
    if digest(before) == digest(after) {
        return;
    }
    let old: BTreeSet<&String> = before.iter().collect();
    let new: BTreeSet<&String> = after.iter().collect();
    let lost: Vec<_> = old.difference(&new).take(10).collect();
    let gained: Vec<_> = new.difference(&old).take(10).collect();
    panic!(
        "{context}: the keyspace differs ({} lines before, {} after)\nonly before: {lost:#?}\nonly after: {gained:#?}",
        before.len(),
        after.len()
    );
}

// ---------------------------------------------------------------------------------------------
// A random dataset, and a canonical dump of a server's keyspace read through commands.

/// The users sessions are created for.
const USERS: [&str; 6] = ["ada", "bob", "cy", "dee", "eve", "fay"];

/// Random bytes, binary included, of a length in `len`.
fn random_bytes(rng: &mut StdRng, len: std::ops::Range<usize>) -> Vec<u8> {
    let n = rng.random_range(len);
    (0..n).map(|_| rng.random()).collect()
}

/// Fills the server with strings, hashes, sets and sessions (several per user, some anonymous) with
/// assorted deadlines; bumps session versions with SET and UNSET and regenerates some.
fn populate(con: &mut Connection, rng: &mut StdRng) {
    let now = server_now_ms(con);
    for i in 0..120 {
        let mut key = format!("str:{i}").into_bytes();
        if i % 10 == 0 {
            key.extend_from_slice(b"\x00\xff\r\n");
        }
        let value = random_bytes(rng, 0..64);
        let mut args: Vec<Vec<u8>> = vec![b"SET".to_vec(), key, value];
        match i % 4 {
            0 => {}
            1 => {
                args.push(b"PX".to_vec());
                args.push(rng.random_range(60_000..3_600_000u64).to_string().into());
            }
            2 => {
                args.push(b"PXAT".to_vec());
                let at = now + rng.random_range(60_000..3_600_000u64);
                args.push(at.to_string().into());
            }
            _ => {
                args.push(b"EX".to_vec());
                args.push(rng.random_range(60..3_600u64).to_string().into());
            }
        }
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let _: Value = call(con, &args);
    }
    for i in 0..40 {
        let key = format!("hash:{i}").into_bytes();
        let mut args: Vec<Vec<u8>> = vec![b"HSET".to_vec(), key.clone()];
        for _ in 0..rng.random_range(1..8) {
            args.push(random_bytes(rng, 0..12));
            args.push(random_bytes(rng, 0..40));
        }
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let _: Value = call(con, &args);
        if i % 2 == 0 {
            let ms = rng.random_range(60_000..3_600_000u64).to_string();
            let _: Value = call(con, &[b"PEXPIRE", &key, ms.as_bytes()]);
        }
    }
    let mut sessions = Vec::new();
    let owners = USERS
        .iter()
        .flat_map(|user| std::iter::repeat_n(Some(*user), 1 + user.len() % 4))
        .chain(std::iter::repeat_n(None, 8));
    for user in owners {
        let idle = rng.random_range(600_000..3_600_000u64).to_string();
        let absolute = rng.random_range(3_600_000..86_400_000u64).to_string();
        let mut args: Vec<Vec<u8>> = vec![b"SESSION.CREATE".to_vec()];
        if let Some(user) = user {
            args.extend([b"USER".to_vec(), user.into()]);
        }
        args.extend([b"IDLE".to_vec(), idle.into(), b"ABSOLUTE".to_vec()]);
        args.push(absolute.into());
        args.push(b"DATA".to_vec());
        for field in 0..rng.random_range(1..4) {
            args.push(format!("field{field}").into_bytes());
            args.push(random_bytes(rng, 0..48));
        }
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let id: Vec<u8> = call(con, &args);
        sessions.push(id);
    }
    for id in &mut sessions {
        for _ in 0..rng.random_range(0..4) {
            let field = format!("field{}", rng.random_range(0..5));
            let value = random_bytes(rng, 0..48);
            let _: i64 = call(con, &[b"SESSION.SET", id, field.as_bytes(), &value]);
        }
        if rng.random_bool(0.2) {
            let _: Value = call(con, &[b"SESSION.UNSET", id, b"field0"]);
        }
        if rng.random_bool(0.2) {
            let mut args: Vec<&[u8]> = vec![b"SESSION.REGENERATE", id];
            if rng.random_bool(0.5) {
                args.extend([
                    b"USER".as_slice(),
                    USERS[rng.random_range(0..USERS.len())].as_bytes(),
                ]);
            }
            *id = call(con, &args);
        }
    }
    // Last, so that the draws above are those the session checks were written against.
    for i in 0..20 {
        let key = format!("set:{i}").into_bytes();
        let mut args: Vec<Vec<u8>> = vec![b"SADD".to_vec(), key.clone()];
        for _ in 0..rng.random_range(1..10) {
            args.push(random_bytes(rng, 0..16));
        }
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let _: Value = call(con, &args);
        if i % 2 == 0 {
            let ms = rng.random_range(60_000..3_600_000u64).to_string();
            let _: Value = call(con, &[b"PEXPIRE", &key, ms.as_bytes()]);
        }
    }
}

/// A session's metadata from SESSION.INFO, in a fixed order; `ttl_ms` is left out, as it
/// follows from the clock. Also returns `created_ms`, which orders a user's list.
fn session_meta(con: &mut Connection, id: &[u8]) -> (String, i64) {
    let info: HashMap<String, Value> = call(con, &[b"SESSION.INFO", id]);
    let field = |name: &str| -> String {
        match info.get(name) {
            Some(Value::Int(n)) => n.to_string(),
            Some(Value::BulkString(bytes)) => esc(bytes),
            Some(Value::Nil) | None => "nil".to_owned(),
            Some(other) => format!("{other:?}"),
        }
    };
    let names = [
        "user",
        "created_ms",
        "last_access_ms",
        "idle_ms",
        "absolute_ms",
        "expires_at_ms",
        "version",
        "fields",
        "bytes",
    ];
    let meta = names
        .iter()
        .map(|name| format!("{name}={}", field(name)))
        .collect::<Vec<_>>()
        .join(" ");
    let created = field("created_ms").parse().unwrap_or(-1);
    (meta, created)
}

fn sorted_pairs(pairs: HashMap<Vec<u8>, Vec<u8>>) -> String {
    pairs
        .into_iter()
        .collect::<BTreeMap<_, _>>()
        .iter()
        .map(|(f, v)| format!("{}={}", esc(f), esc(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A canonical dump of a server's keyspace: one line per key (type, value, deadline; for a
/// session its data and metadata) and one per user (its session list), sorted.
///
/// Reading a session's data (SESSION.GET) refreshes it, and nothing reads it without doing so.
/// So the dump reads each session's metadata twice, before and after its GET: `found` is the
/// keyspace as the dump found it (what a restarted server loaded) and `left` the keyspace as
/// the dump left it (what the next snapshot saves).
struct Dump {
    found: Vec<String>,
    left: Vec<String>,
    keys: usize,
}

fn dump(con: &mut Connection) -> Dump {
    let keys: Vec<Vec<u8>> = call(con, &[b"KEYS", b"*"]);
    let (mut found, mut left) = (Vec::new(), Vec::new());
    let mut created = HashMap::new();
    for key in &keys {
        let kind: String = call(con, &[b"TYPE", key]);
        let deadline = || -> Vec<&[u8]> { vec![b"PEXPIRETIME", key] };
        match kind.as_str() {
            "string" => {
                let value: Vec<u8> = call(con, &[b"GET", key]);
                let at: i64 = call(con, &deadline());
                found.push(format!("string {} = {} at {at}", esc(key), esc(&value)));
            }
            "hash" => {
                let fields: HashMap<Vec<u8>, Vec<u8>> = call(con, &[b"HGETALL", key]);
                let at: i64 = call(con, &deadline());
                let fields = sorted_pairs(fields);
                found.push(format!("hash {} = {fields} at {at}", esc(key)));
            }
            "set" => {
                let mut members: Vec<Vec<u8>> = call(con, &[b"SMEMBERS", key]);
                members.sort();
                let members: Vec<String> = members.iter().map(|m| esc(m)).collect();
                let at: i64 = call(con, &deadline());
                found.push(format!("set {} = {} at {at}", esc(key), members.join(" ")));
            }
            "session" => {
                let (meta_found, created_ms) = session_meta(con, key);
                let data: HashMap<Vec<u8>, Vec<u8>> = call(con, &[b"SESSION.GET", key]);
                let (meta_left, _) = session_meta(con, key);
                let data = sorted_pairs(data);
                let line = |meta: &str| format!("session {} = {data} {meta}", esc(key));
                found.push(line(&meta_found));
                left.push(line(&meta_left));
                created.insert(key.clone(), created_ms);
                continue;
            }
            other => panic!("{}: unexpected type {other}", esc(key)),
        }
        left.push(found[found.len() - 1].clone());
    }
    for user in USERS {
        let ids: Vec<Vec<u8>> = call(con, &[b"SESSION.LIST", user.as_bytes()]);
        let mut ordered: Vec<(i64, &Vec<u8>)> = ids
            .iter()
            .map(|id| (created.get(id).copied().unwrap_or(-1), id))
            .collect();
        assert!(
            ordered.windows(2).all(|w| w[0].0 <= w[1].0),
            "SESSION.LIST {user} is oldest first: {ordered:?}"
        );
        // Sessions created in the same millisecond are equally old; the list may give them in
        // any order (a restart orders them by ID), so the dump does.
        ordered.sort();
        let ids: Vec<String> = ordered.iter().map(|(_, id)| esc(id)).collect();
        let line = format!("user {user}: {}", ids.join(" "));
        found.push(line.clone());
        left.push(line);
    }
    found.sort();
    left.sort();
    Dump {
        found,
        left,
        keys: keys.len(),
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary.

/// Keys written to outlive the save at SIGTERM but not the downtime that follows it.
struct ShortLived {
    keys: Vec<Vec<u8>>,
    session: Vec<u8>,
    earliest_ms: u64,
    latest_ms: u64,
}

/// Strings, a hash and a session of `user` whose deadlines are about `margin_ms` from now on the
/// server's clock.
fn write_short_lived(con: &mut Connection, user: &str, margin_ms: u64) -> ShortLived {
    let at = (server_now_ms(con) + margin_ms).to_string();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    for i in 0..3 {
        let key = format!("short:str:{i}").into_bytes();
        let _: Value = call(con, &[b"SET", &key, b"soon gone", b"PXAT", at.as_bytes()]);
        keys.push(key);
    }
    let _: Value = call(con, &[b"HSET", b"short:hash", b"f", b"v"]);
    let _: Value = call(con, &[b"PEXPIREAT", b"short:hash", at.as_bytes()]);
    keys.push(b"short:hash".to_vec());
    let idle = margin_ms.to_string();
    let session: Vec<u8> = call(
        con,
        &[
            b"SESSION.CREATE",
            b"USER",
            user.as_bytes(),
            b"IDLE",
            idle.as_bytes(),
        ],
    );
    let info: HashMap<String, Value> = call(con, &[b"SESSION.INFO", &session]);
    let Some(Value::Int(session_deadline)) = info.get("expires_at_ms") else {
        panic!("SESSION.INFO expires_at_ms: {info:?}");
    };
    let at: u64 = at.parse().expect("a number");
    let session_deadline = *session_deadline as u64;
    ShortLived {
        keys,
        earliest_ms: at.min(session_deadline),
        latest_ms: at.max(session_deadline),
        session,
    }
}

#[test]
fn a_restart_after_sigterm_keeps_every_key_deadline_and_session_and_drops_what_expired_while_down()
{
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let args = data_dir_args(&data, &[]);
    let snapshot = dir.0.join("data").join(SNAPSHOT);
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    populate(&mut con, &mut StdRng::seed_from_u64(0x5e55_104d));

    // The short-lived keys must be in the file (alive at the save) and dead at the load. Their
    // margin is wall-clock time, the one clock the binary reads; if the machine stalls past it
    // before the save, they never reach the file, which proves nothing about expiry during the
    // downtime: that round still checks the data, then a wider margin is tried.
    let mut expired_while_down = false;
    for margin_ms in [300, 1_500, 6_000] {
        let before = dump(&mut con);
        let short = write_short_lived(&mut con, USERS[0], margin_ms);
        daemon.stop();

        let live_before = loader::check(&snapshot, short.earliest_ms - 1).expect("snapshot");
        let dead_after = loader::check(&snapshot, short.latest_ms).expect("snapshot");
        let in_file = live_before.expired == 0 && dead_after.expired == short.keys.len() as u64 + 1;
        if in_file {
            // The downtime must outlast the deadlines, and nothing signals a deadline on a
            // stopped server: wait for the wall clock itself (at most `margin_ms`).
            let left = short.latest_ms.saturating_sub(wall_clock_ms());
            std::thread::sleep(Duration::from_millis(left + 1));
        }

        daemon = Daemon::start_at(&dir.0, &args, &[]);
        con = daemon.client(false);
        let after = dump(&mut con);
        assert_same(&before.left, &after.found, "after a restart");
        // Not loaded at all, rather than loaded and reclaimed: DBSIZE counts keys held, and
        // the reclaimer would count them in expired_keys.
        assert_eq!(
            call::<usize>(&mut con, &[b"DBSIZE"]),
            before.keys,
            "expired keys are not even held"
        );
        assert_eq!(info_number(&info(&mut con, "stats"), "expired_keys"), 0);
        for key in &short.keys {
            assert_eq!(call::<i64>(&mut con, &[b"EXISTS", key]), 0, "{}", esc(key));
        }
        let info: Value = call(&mut con, &[b"SESSION.INFO", &short.session]);
        assert_eq!(info, Value::Nil);
        if in_file {
            expired_while_down = true;
            break;
        }
    }
    assert!(
        expired_while_down,
        "no round saved the short-lived keys before their deadline"
    );

    // Created by the server: the directory 0700, the snapshot 0600 (sessions are credentials).
    let mode = |path: &Path| std::fs::metadata(path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&dir.0.join("data")), 0o700);
    assert_eq!(mode(&snapshot), 0o600);
    daemon.stop();
}

#[test]
fn a_kill_9_during_a_slow_background_save_leaves_the_previous_snapshot_and_no_temp_file() {
    let dir = ScratchDir::new();
    let data_dir = dir.0.join("data");
    let data = dir.arg("data");
    let args = data_dir_args(&data, &[]);
    let snapshot = data_dir.join(SNAPSHOT);

    // The previous snapshot: an explicit SAVE, then kill -9 (no final save).
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    populate(&mut con, &mut StdRng::seed_from_u64(9));
    let saved = dump(&mut con);
    assert_eq!(call::<String>(&mut con, &[b"SAVE"]), "OK");
    let saved_bytes = std::fs::read(&snapshot).expect("snapshot after SAVE");
    let (status, _) = daemon.signal_and_wait("KILL");
    assert_eq!(status.signal(), Some(9));

    // A save that takes seconds (5 ms after each of 1024 shards), killed while it writes.
    let mut slow = args.to_vec();
    slow.extend(["--debug-snapshot-shard-delay", "5ms"]);
    let mut daemon = Daemon::start_at(&dir.0, &slow, &[]);
    let mut con = daemon.client(false);
    // Changes the killed save was writing: none of them may reach the next start.
    let _: Value = call(&mut con, &[b"SET", b"after-the-save", b"lost"]);
    assert_eq!(call::<i64>(&mut con, &[b"DEL", b"str:1", b"hash:1"]), 2);
    let ids: Vec<Vec<u8>> = call(&mut con, &[b"SESSION.LIST", USERS[1].as_bytes()]);
    let _: i64 = call(&mut con, &[b"SESSION.SET", &ids[0], b"field9", b"lost"]);
    let _: Value = call(&mut con, &[b"SESSION.REGENERATE", &ids[ids.len() - 1]]);
    let started: String = call(&mut con, &[b"BGSAVE"]);
    assert_eq!(started, "Background saving started");
    let temp = data_dir.join(format!("{SNAPSHOT}.tmp-{}", daemon.pid()));
    wait_until("a save under way with its temp file", || {
        info_number(&info(&mut con, "persistence"), "rdb_bgsave_in_progress") == 1 && temp.exists()
    });
    let (status, _) = daemon.signal_and_wait("KILL");
    assert_eq!(status.signal(), Some(9));
    assert!(temp.exists(), "the interrupted save left its temp file");
    assert_eq!(
        std::fs::read(&snapshot).expect("snapshot"),
        saved_bytes,
        "the previous snapshot is untouched"
    );
    // So does a full sync's received snapshot, when a replica is killed while it loads.
    let sync = data_dir.join(format!("{SNAPSHOT}.sync-{}", daemon.pid()));
    std::fs::write(&sync, b"every session").expect("received snapshot");

    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    let mut files: Vec<_> = std::fs::read_dir(&data_dir)
        .expect("data dir")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [SNAPSHOT, "sessiond.lock"],
        "the start removed the temp files"
    );
    let after = dump(&mut con);
    assert_same(&saved.left, &after.found, "after kill -9 and a restart");
    daemon.stop();
}

#[test]
fn a_second_server_on_a_data_directory_in_use_refuses_to_start_naming_it() {
    let dir = ScratchDir::new();
    let data_dir = dir.0.join("data");
    let data = dir.arg("data");
    let args = data_dir_args(&data, &[]);
    let mut first = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = first.client(false);
    let _: Value = call(&mut con, &[b"SET", b"k", b"first"]);
    assert_eq!(call::<String>(&mut con, &[b"SAVE"]), "OK");
    let saved = std::fs::read(data_dir.join(SNAPSHOT)).expect("snapshot");
    // The first server's save in progress leaves a temp file: the second must not remove it.
    let temp = data_dir.join(format!("{SNAPSHOT}.tmp-{}", first.pid()));
    std::fs::write(&temp, b"in progress").expect("temp file");

    let (status, log) = run_until_exit(&dir.0, &args, &[]);
    assert_eq!(status.code(), Some(1), "exit status {status}; log:\n{log}");
    assert!(
        log.contains(&format!("data directory {} is in use", data_dir.display())),
        "{log}"
    );
    assert!(
        temp.exists(),
        "the refused server removed the first's temp file"
    );
    assert_eq!(
        std::fs::read(data_dir.join(SNAPSHOT)).expect("snapshot"),
        saved
    );
    let value: String = call(&mut con, &[b"GET", b"k"]);
    assert_eq!(value, "first", "the first server keeps serving");
    std::fs::remove_file(&temp).expect("remove temp file");

    // The lock goes with the process, however it ends: a kill -9 leaves none behind.
    let (status, _) = first.signal_and_wait("KILL");
    assert_eq!(status.signal(), Some(9));
    let mut second = Daemon::start_at(&dir.0, &args, &[]);
    let value: String = call(&mut second.client(false), &[b"GET", b"k"]);
    assert_eq!(value, "first");
    second.stop();
}

#[test]
fn a_corrupt_truncated_or_newer_snapshot_stops_the_start_naming_the_file_and_the_offset() {
    let dir = ScratchDir::new();
    let data_dir = dir.0.join("data");
    let data = dir.arg("data");
    let snapshot = data_dir.join(SNAPSHOT);
    let snapshot_arg = snapshot.to_str().expect("utf-8 temp path");
    {
        let server = TestServer::with_config(persisting(&data_dir));
        let mut con = server.client();
        let _: Value = call(&mut con, &[b"SET", b"a", b"1"]);
        let _: Value = call(&mut con, &[b"SET", b"b", b"2", b"PX", b"600000"]);
        let _: Value = call(&mut con, &[b"HSET", b"h", b"f", b"v"]);
        let _: Value = call(&mut con, &[b"SADD", b"s", b"m1", b"m2"]);
        for user in [b"ada".as_slice(), b"ada", b"bob"] {
            let _: Vec<u8> = call(&mut con, &[b"SESSION.CREATE", b"USER", user]);
        }
        assert_eq!(call::<String>(&mut con, &[b"SAVE"]), "OK");
    }
    let good = std::fs::read(&snapshot).expect("snapshot");

    let checked = run_tool(&["check-snapshot", snapshot_arg]);
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success(), "{checked:?}");
    assert!(
        stdout.contains(&format!("snapshot {snapshot_arg}: OK"))
            && stdout.contains("records: 7 (strings 2, hashes 1, sets 1, sessions 3, deletions 0)"),
        "{stdout}"
    );

    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x20;
    let mut newer = good.clone();
    // The version is checked before anything else, so the checksum need not match.
    newer[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let cases = [
        ("a flipped byte", flipped),
        ("a truncated file", good[..good.len() - 7].to_vec()),
        ("an empty file", Vec::new()),
        ("a newer format version", newer),
    ];
    for (case, bytes) in cases {
        std::fs::write(&snapshot, &bytes).expect("write snapshot");
        let expected = loader::check(&snapshot, wall_clock_ms())
            .expect_err(case)
            .to_string();
        assert!(
            expected.contains(snapshot_arg) && expected.contains("at byte offset"),
            "{case}: {expected}"
        );
        if case.contains("newer") {
            assert!(
                expected.contains("is newer than this sessiond"),
                "{expected}"
            );
        }
        let args = ["--port", "0", "--data-dir", &data, "--appendonly", "no"];
        let (status, log) = run_until_exit(&dir.0, &args, &[]);
        assert_eq!(status.code(), Some(1), "{case}: {status}\n{log}");
        assert!(log.contains(&expected), "{case}: {log}");
        assert_eq!(
            std::fs::read(&snapshot).expect("snapshot"),
            bytes,
            "{case}: a refused snapshot is left as it was"
        );

        let checked = run_tool(&["check-snapshot", snapshot_arg]);
        let stderr = String::from_utf8_lossy(&checked.stderr);
        assert_eq!(checked.status.code(), Some(1), "{case}: {checked:?}");
        assert!(stderr.contains(&expected), "{case}: {stderr}");
    }

    // A data directory that cannot be created (under a regular file) stops the start too.
    let file = dir.file("not-a-directory", "");
    let under_file = file.join("data");
    let under_file = under_file.to_str().expect("utf-8 temp path");
    let (status, log) = run_until_exit(&dir.0, &["--port", "0", "--data-dir", under_file], &[]);
    assert_eq!(status.code(), Some(1), "{status}\n{log}");
    assert!(
        log.contains(&format!("data directory {under_file}")),
        "{log}"
    );
}

#[test]
fn no_persistence_writes_nothing_and_refuses_to_save() {
    let dir = ScratchDir::new();
    let mut daemon = Daemon::start_at(
        &dir.0,
        &[
            "--port",
            "0",
            "--no-persistence",
            "--snapshot-interval",
            "10ms",
        ],
        &[],
    );
    let mut con = daemon.client(false);
    let _: Value = call(&mut con, &[b"SET", b"k", b"v"]);
    let disabled = "ERR persistence is disabled (--no-persistence)";
    assert_eq!(error_of(&mut con, &[b"SAVE"]), disabled);
    assert_eq!(error_of(&mut con, &[b"BGSAVE"]), disabled);
    assert!(error_of(&mut con, &[b"SHUTDOWN", b"SAVE"]).contains("--no-persistence"));
    let persistence = info(&mut con, "persistence");
    assert_eq!(info_field(&persistence, "persistence_enabled"), "0");
    daemon.stop();
    let left: Vec<_> = std::fs::read_dir(&dir.0)
        .expect("scratch dir")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert!(
        left.is_empty(),
        "nothing written (not even ./data): {left:?}"
    );
}

#[test]
fn snapshot_interval_saves_only_when_something_changed() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let snapshot = dir.0.join("data").join(SNAPSHOT);
    let interval = Duration::from_millis(25);
    let args = [
        "--port",
        "0",
        "--data-dir",
        &data,
        "--snapshot-interval",
        "25ms",
    ];
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    let saves = |con: &mut Connection| info_number(&info(con, "persistence"), "rdb_saves");

    let _: Value = call(&mut con, &[b"SET", b"k", b"v"]);
    wait_until("a periodic snapshot", || saves(&mut con) == 1);
    assert_eq!(
        key_names(&load_fresh(&snapshot)),
        BTreeSet::from([b"k".to_vec()])
    );
    let persistence = info(&mut con, "persistence");
    assert_eq!(info_number(&persistence, "rdb_changes_since_last_save"), 0);
    let saved = std::fs::read(&snapshot).expect("snapshot");

    // Nothing changes now. No signal marks a tick that decided not to save, so the test lets
    // ten intervals pass and checks that none of them wrote.
    std::thread::sleep(interval * 10);
    assert_eq!(saves(&mut con), 1);
    assert_eq!(std::fs::read(&snapshot).expect("snapshot"), saved);

    let _: Value = call(&mut con, &[b"SET", b"k2", b"v"]);
    wait_until("the next periodic snapshot", || saves(&mut con) == 2);
    assert_eq!(
        key_names(&load_fresh(&snapshot)),
        BTreeSet::from([b"k".to_vec(), b"k2".to_vec()])
    );
    daemon.stop();
}

/// Waits for the daemon's exit, however long the server takes (bounded only so that a stuck
/// server fails the test rather than hangs it).
fn wait_for_exit(daemon: &mut Daemon) -> (std::process::ExitStatus, String) {
    let started = Instant::now();
    while !daemon.exited() {
        assert!(
            started.elapsed() < IO_TIMEOUT * 6,
            "the daemon did not exit"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    daemon.wait()
}

#[test]
fn sigterm_with_a_failing_final_save_keeps_serving_and_shutdown_force_exits() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let snapshot = dir.0.join("data").join(SNAPSHOT);
    let args = data_dir_args(&data, &[]);
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    let _: Value = call(&mut con, &[b"SET", b"saved", b"1"]);
    assert_eq!(call::<String>(&mut con, &[b"SAVE"]), "OK");
    let previous = std::fs::read(&snapshot).expect("snapshot");
    // See `a_failed_save_refuses_writes_keeps_serving_and_shutdown_says_so` for the obstacle.
    let obstacle = dir
        .0
        .join("data")
        .join(format!("{SNAPSHOT}.tmp-{}", daemon.pid()));
    std::fs::create_dir(&obstacle).expect("create obstacle");
    let _: Value = call(&mut con, &[b"SET", b"unsaved", b"2"]);

    daemon.signal("TERM");
    let log = daemon.wait_for_log("can't exit");
    assert!(log.contains(&snapshot.display().to_string()), "{log}");
    // Still serving, on a new connection (the drain closed the old one): reads work, writes
    // get MISCONF.
    let mut con = daemon.client(false);
    assert_eq!(call::<String>(&mut con, &[b"GET", b"unsaved"]), "2");
    assert!(error_of(&mut con, &[b"SET", b"k", b"v"]).starts_with("MISCONF sessiond is configured"));

    // FORCE exits anyway, non-zero, and says what is lost.
    cmd(&[b"SHUTDOWN", b"FORCE"])
        .query::<Value>(&mut con)
        .expect_err("no reply");
    let (status, log) = daemon.wait();
    assert_eq!(status.code(), Some(1), "{status}\n{log}");
    assert!(
        log.contains("final snapshot failed") && log.contains("lost"),
        "{log}"
    );
    assert_eq!(std::fs::read(&snapshot).expect("snapshot"), previous);
}

#[test]
fn a_second_signal_during_a_long_shutdown_forces_the_exit() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    // A grace period the test would never see the end of.
    let args = data_dir_args(&data, &["--shutdown-timeout", "1h"]);
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    let value = vec![b'x'; 256 * 1024];
    let _: Value = call(&mut con, &[b"SET", b"big", &value]);
    // A client that asks for far more than the socket buffers hold and never reads: its
    // connection waits on the write and holds up the drain.
    let mut stalled = std::net::TcpStream::connect(daemon.addr).expect("connect");
    let gets = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(400);
    std::io::Write::write_all(&mut stalled, &gets).expect("send");
    // Wait until the server holds it: the next command on another connection is served after.
    let _: Value = call(&mut con, &[b"PING"]);
    // The final save will fail too: the second signal exits anyway.
    let obstacle = dir
        .0
        .join("data")
        .join(format!("{SNAPSHOT}.tmp-{}", daemon.pid()));
    std::fs::create_dir(&obstacle).expect("create obstacle");

    daemon.signal("TERM");
    daemon.wait_for_log("draining connections");
    daemon.signal("INT");
    let (status, log) = wait_for_exit(&mut daemon);
    assert_eq!(status.code(), Some(1), "{status}\n{log}");
    assert!(log.contains("second signal"), "{log}");
    assert!(
        log.contains("final snapshot failed") && log.contains("lost"),
        "{log}"
    );
    drop(stalled);
}

// ---------------------------------------------------------------------------------------------
// In-process.

/// A canonical digest of a store's keyspace read through its public reads (not the snapshot
/// code): every live key's value and deadline, every session's record, every user's list (as
/// in [`dump`], sessions created in the same millisecond are ordered by ID).
fn store_digest(store: &Store) -> u64 {
    let now = store.now_ms();
    let mut lines = Vec::new();
    let mut created = HashMap::new();
    for key in store.keys(KeyFilter::default(), now) {
        let Some(entry) = store.read(&key, now, |e| e.cloned()) else {
            continue;
        };
        let deadline = entry.deadline_ms();
        let pairs = |fields: &sessiond::store::Fields| {
            let sorted: BTreeMap<_, _> = fields.iter().collect();
            format!("{sorted:?}")
        };
        lines.push(match entry.value() {
            Stored::Str(value) => format!("string {key:?} {value:?} {deadline:?}"),
            Stored::Hash(fields) => format!("hash {key:?} {} {deadline:?}", pairs(fields)),
            Stored::Set(members) => format!("set {key:?} {} {deadline:?}", pairs(members)),
            Stored::Session(s) => {
                created.insert(key.clone(), s.created_ms);
                format!(
                    "session {key:?} {:?} {} {} {} {} {} v{} {deadline:?}",
                    s.user,
                    pairs(&s.fields),
                    s.created_ms,
                    s.last_access_ms,
                    s.idle_ms,
                    s.absolute_ms,
                    s.version
                )
            }
        });
    }
    for user in USERS {
        let mut ids: Vec<_> = store
            .list_sessions(b"", user.as_bytes(), now)
            .into_iter()
            .map(|id| (created.get(&id).copied(), id))
            .collect();
        ids.sort();
        lines.push(format!("user {user} {ids:?}"));
    }
    lines.sort();
    digest(&lines)
}

#[test]
fn a_background_save_under_writes_is_one_consistent_instant_and_the_writes_reach_the_next() {
    let dir = ScratchDir::new();
    let snapshot = dir.0.join(SNAPSHOT);
    let mut config = persisting(&dir.0);
    if let Some(persistence) = &mut config.persistence {
        // About a second per save (1 ms after each of 1024 shards): time for many writes.
        persistence.shard_delay = Duration::from_millis(1);
    }
    let server = TestServer::with_config(config);
    let store = server.shared.dbs.first().clone();
    let persistence = server.shared.persistence.clone();
    let mut con = server.client();
    let mut rng = StdRng::seed_from_u64(4);

    let mut strings: Vec<Vec<u8>> = Vec::new();
    for i in 0..150 {
        let key = format!("s:{i}").into_bytes();
        let _: Value = call(&mut con, &[b"SET", &key, b"v", b"PX", b"3600000"]);
        strings.push(key);
    }
    let hashes: Vec<Vec<u8>> = (0..30).map(|i| format!("h:{i}").into_bytes()).collect();
    for hash in &hashes {
        let _: Value = call(&mut con, &[b"HSET", hash, b"f", b"v"]);
    }
    // Each chain is one session's IDs, oldest first: a REGENERATE adds the new one.
    let mut chains: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in 0..100 {
        let user = USERS[i % USERS.len()].as_bytes();
        let id: Vec<u8> = call(&mut con, &[b"SESSION.CREATE", b"USER", user]);
        chains.push(vec![id]);
    }

    let started: String = call(&mut con, &[b"BGSAVE"]);
    assert_eq!(started, "Background saving started");
    // The digest of the keyspace after each write: only this client writes, so the live
    // keyspace between two replies is exactly the one after the first.
    let mut digests = vec![store_digest(&store)];
    let mut round = 0u32;
    while persistence.in_progress() {
        let key = format!("new:{round}").into_bytes();
        let _: Value = call(&mut con, &[b"SET", &key, b"x", b"PX", b"3600000"]);
        digests.push(store_digest(&store));
        let doomed = strings.swap_remove(rng.random_range(0..strings.len()));
        strings.push(key);
        assert_eq!(call::<i64>(&mut con, &[b"DEL", &doomed]), 1);
        digests.push(store_digest(&store));
        let chain = rng.random_range(0..chains.len());
        let mut args: Vec<&[u8]> = vec![
            b"SESSION.REGENERATE",
            &chains[chain][chains[chain].len() - 1],
        ];
        if rng.random_bool(0.25) {
            args.extend([
                b"USER".as_slice(),
                USERS[rng.random_range(0..USERS.len())].as_bytes(),
            ]);
        }
        let new_id: Vec<u8> = call(&mut con, &args);
        chains[chain].push(new_id);
        digests.push(store_digest(&store));
        let chain = &chains[rng.random_range(0..chains.len())];
        let field = format!("f{}", round % 5);
        let _: i64 = call(
            &mut con,
            &[
                b"SESSION.SET",
                &chain[chain.len() - 1],
                field.as_bytes(),
                b"x",
            ],
        );
        digests.push(store_digest(&store));
        let hash = &hashes[rng.random_range(0..hashes.len())];
        let _: Value = call(&mut con, &[b"HSET", hash, field.as_bytes(), b"y"]);
        digests.push(store_digest(&store));
        round += 1;
    }
    assert_eq!(
        info_field(&info(&mut con, "persistence"), "rdb_last_bgsave_status"),
        "ok"
    );

    let dbs = Databases::new(Clock::system(), 16);
    let summary = loader::load(&snapshot, &dbs).unwrap_or_else(|e| panic!("{e}"));
    let saved = dbs.first();
    assert!(
        summary.deletes > 0,
        "the journal recorded removals made during the save ({round} rounds): {summary:?}"
    );
    let saved_digest = store_digest(saved);
    let instant = digests.iter().position(|d| *d == saved_digest);
    assert!(
        instant.is_some(),
        "the snapshot is the keyspace as it was between two of the {} writes made during the \
         save ({summary:?})",
        digests.len() - 1
    );
    for chain in &chains {
        let present = chain
            .iter()
            .filter(|id| saved.read(id, saved.now_ms(), |e| e.is_some()))
            .count();
        assert_eq!(
            present, 1,
            "a regenerated session is saved under exactly one of its IDs"
        );
    }

    // The writes stayed in memory, and with nothing written since, the next snapshot is the
    // live keyspace exactly.
    let last = format!("new:{}", round - 1).into_bytes();
    assert_eq!(call::<i64>(&mut con, &[b"EXISTS", &last]), 1);
    assert_eq!(call::<String>(&mut con, &[b"SAVE"]), "OK");
    let next = load_fresh(&snapshot);
    assert_eq!(store_digest(&next), store_digest(&store));
    assert!(key_names(&next).contains(&last));
    // No final save with the delay: the test is done with the file.
    server.shared.set_final_save(false);
}

#[test]
fn a_pipelined_save_answers_in_order_and_holds_what_ran_before_it() {
    let dir = ScratchDir::new();
    let server = TestServer::with_config(persisting(&dir.0));
    let mut raw = server.raw();
    raw.send(b"SET before 1\r\nSAVE\r\nSET after 1\r\nGET before\r\n");
    assert_eq!(raw.reply(), Frame::ok());
    assert_eq!(raw.reply(), Frame::ok(), "SAVE's reply, after the SET's");
    assert_eq!(raw.reply(), Frame::ok());
    assert_eq!(raw.reply(), Frame::bulk("1"));
    let saved = load_fresh(&dir.0.join(SNAPSHOT));
    assert_eq!(key_names(&saved), BTreeSet::from([b"before".to_vec()]));
}

#[test]
fn a_failed_save_refuses_writes_keeps_serving_and_shutdown_says_so() {
    let dir = ScratchDir::new();
    let snapshot = dir.0.join(SNAPSHOT);
    let server = TestServer::with_config(persisting(&dir.0));
    let mut con = server.client();
    let _: Value = call(&mut con, &[b"SET", b"before", b"1"]);
    assert_eq!(call::<String>(&mut con, &[b"SAVE"]), "OK");
    let previous = std::fs::read(&snapshot).expect("snapshot");

    // Tests run as root, which file modes do not stop. A directory where the save's temp file
    // (`dump.sdb.tmp-<pid>`; the server runs in this process) must be created does: opening it
    // for writing fails with EISDIR, whoever asks.
    let obstacle = dir.0.join(format!("{SNAPSHOT}.tmp-{}", std::process::id()));
    std::fs::create_dir(&obstacle).expect("create obstacle");
    let _: Value = call(&mut con, &[b"SET", b"after", b"2"]);
    let error = error_of(&mut con, &[b"SAVE"]);
    assert!(
        error.starts_with("ERR snapshot ") && error.contains(&snapshot.display().to_string()),
        "{error}"
    );
    let persistence = info(&mut con, "persistence");
    assert_eq!(info_field(&persistence, "rdb_last_bgsave_status"), "err");
    assert_ne!(
        info_field(&persistence, "rdb_last_error"),
        "",
        "{persistence}"
    );
    assert_eq!(info_number(&persistence, "rdb_saves"), 1);
    assert!(info_number(&persistence, "rdb_changes_since_last_save") > 0);

    // While saves fail, writes get MISCONF; reads (SESSION.GET included) and logouts are served.
    let misconf = error_of(&mut con, &[b"SET", b"later", b"3"]);
    assert!(
        misconf.starts_with("MISCONF sessiond is configured to save snapshots")
            && misconf.contains("stop-writes-on-bgsave-error"),
        "{misconf}"
    );
    assert!(error_of(&mut con, &[b"DEL", b"before"]).starts_with("MISCONF"));
    assert!(error_of(&mut con, &[b"SESSION.CREATE"]).starts_with("MISCONF"));
    let value: String = call(&mut con, &[b"GET", b"after"]);
    assert_eq!(value, "2", "reads are served");
    let _: Value = call(&mut con, &[b"SESSION.GET", b"no-such-session"]);
    // Logouts are not refused: a session can be ended while the disk is full.
    let destroyed: i64 = call(&mut con, &[b"SESSION.DESTROY", b"no-such-session"]);
    assert_eq!(destroyed, 0);
    let destroyed: i64 = call(&mut con, &[b"SESSION.DESTROYALL", b"nobody"]);
    assert_eq!(destroyed, 0);

    // A background save fails the same way, after its reply.
    let started: String = call(&mut con, &[b"BGSAVE"]);
    assert_eq!(started, "Background saving started");
    wait_until("the background save ends", || {
        !server.shared.persistence.in_progress()
    });
    let status = server.shared.persistence.status();
    assert!(!status.last_ok && status.last_error.is_some(), "{status:?}");

    // SHUTDOWN cannot save, so it does not exit: it says so, and the server serves on.
    let mut shutdown = server.raw();
    shutdown.command(&[b"SHUTDOWN"]);
    assert_eq!(
        error_text(&shutdown.reply()),
        "ERR Errors trying to SHUTDOWN. Check logs."
    );
    shutdown.command(&[b"PING"]);
    assert_eq!(shutdown.reply(), Frame::simple("PONG"));
    // The drain closed the other connections; new ones are served.
    let mut con = server.client();
    let value: String = call(&mut con, &[b"GET", b"before"]);
    assert_eq!(value, "1");

    assert_eq!(std::fs::read(&snapshot).expect("snapshot"), previous);
    assert_eq!(
        key_names(&load_fresh(&snapshot)),
        BTreeSet::from([b"before".to_vec()])
    );

    // With the obstacle gone, the next save succeeds, holds every write, and lifts MISCONF.
    std::fs::remove_dir(&obstacle).expect("remove obstacle");
    assert_eq!(call::<String>(&mut con, &[b"SAVE"]), "OK");
    let persistence = info(&mut con, "persistence");
    assert_eq!(info_field(&persistence, "rdb_last_bgsave_status"), "ok");
    assert_eq!(info_field(&persistence, "rdb_last_error"), "");
    let _: Value = call(&mut con, &[b"SET", b"later", b"3"]);
    let saved: Vec<&[u8]> = vec![b"after", b"before"];
    let saved: BTreeSet<Vec<u8>> = saved.into_iter().map(<[u8]>::to_vec).collect();
    assert_eq!(key_names(&load_fresh(&snapshot)), saved);

    // SHUTDOWN NOSAVE exits whatever the disk does.
    std::fs::create_dir(&obstacle).expect("create obstacle");
    shut_down(server, &[b"NOSAVE"]);
}

#[test]
fn stop_writes_on_bgsave_error_no_keeps_writes_going() {
    let dir = ScratchDir::new();
    let server = TestServer::with_config(Config {
        stop_writes_on_bgsave_error: false,
        ..persisting(&dir.0)
    });
    let obstacle = dir.0.join(format!("{SNAPSHOT}.tmp-{}", std::process::id()));
    std::fs::create_dir(&obstacle).expect("create obstacle");
    let mut con = server.client();
    assert!(error_of(&mut con, &[b"SAVE"]).starts_with("ERR snapshot"));
    let _: Value = call(&mut con, &[b"SET", b"k", b"v"]);
    let setting: Vec<String> = call(
        &mut con,
        &[b"CONFIG", b"GET", b"stop-writes-on-bgsave-error"],
    );
    assert_eq!(setting, ["stop-writes-on-bgsave-error", "no"]);
    shut_down(server, &[b"NOSAVE"]);
}

#[test]
fn a_key_written_thousands_of_times_during_a_save_is_journalled_and_saved_about_once() {
    let dir = ScratchDir::new();
    let mut config = persisting(&dir.0);
    if let Some(persistence) = &mut config.persistence {
        // About two seconds per save (2 ms after each of 1024 shards).
        persistence.shard_delay = Duration::from_millis(2);
    }
    let server = TestServer::with_config(config);
    let journal = || server.shared.dbs.first().journal().held();
    let mut con = server.client();
    let value = vec![b'v'; 16 * 1024];
    let _: Value = call(&mut con, &[b"SET", b"k", &value]);
    let started: String = call(&mut con, &[b"BGSAVE"]);
    assert_eq!(started, "Background saving started");
    let mut most_records = 0;
    let mut during = 0;
    while server.shared.persistence.in_progress() && during < 3_000 {
        let _: Value = call(&mut con, &[b"SET", b"k", &value]);
        most_records = most_records.max(journal().records);
        during += 1;
    }
    let persistence = info(&mut con, "persistence");
    if info_number(&persistence, "rdb_bgsave_in_progress") == 1 {
        // One record (none if the writer has not opened the journal yet): one value's bytes.
        assert!(info_number(&persistence, "rdb_journal_records") <= 1);
        let bytes = info_number(&persistence, "rdb_journal_bytes");
        assert!(bytes < 32_768, "{persistence}");
    }
    wait_until("the background save ends", || {
        !server.shared.persistence.in_progress()
    });
    assert!(most_records <= 1, "{most_records} records for one key");
    assert_eq!(journal().records, 0, "the journal is emptied at the end");
    let status = server.shared.persistence.status();
    assert!(status.last_ok, "{status:?}");
    // The shards' copy and the journal's: about two copies of the value, whatever the writes.
    assert!(status.last_records <= 2, "{status:?} after {during} writes");
    assert!(
        status.last_bytes < 3 * 16 * 1024,
        "{status:?} after {during} writes"
    );
}

#[test]
fn writes_past_the_journal_bound_abandon_the_save_and_keep_the_previous_snapshot() {
    let dir = ScratchDir::new();
    let snapshot = dir.0.join(SNAPSHOT);
    let mut config = persisting(&dir.0);
    if let Some(persistence) = &mut config.persistence {
        persistence.shard_delay = Duration::from_millis(2);
        persistence.journal_max_bytes = 256 * 1024;
    }
    let server = TestServer::with_config(config);
    let mut con = server.client();
    let _: Value = call(&mut con, &[b"SET", b"before", b"1"]);
    assert_eq!(call::<String>(&mut con, &[b"SAVE"]), "OK");
    let previous = std::fs::read(&snapshot).expect("snapshot");

    let started: String = call(&mut con, &[b"BGSAVE"]);
    assert_eq!(started, "Background saving started");
    // Distinct keys of 16 KiB: the journal holds one record each, past 256 KiB after 16.
    let value = vec![b'v'; 16 * 1024];
    let mut written = 0;
    while server.shared.persistence.in_progress() && written < 10_000 {
        let key = format!("during:{written}");
        let _: Value = call(&mut con, &[b"SET", key.as_bytes(), &value]);
        written += 1;
    }
    wait_until("the background save ends", || {
        !server.shared.persistence.in_progress()
    });
    let persistence = info(&mut con, "persistence");
    assert_eq!(info_field(&persistence, "rdb_last_bgsave_status"), "err");
    let error = info_field(&persistence, "rdb_last_error");
    assert!(error.contains("journal's bound of 262144 bytes"), "{error}");
    assert!(
        !error.contains("during:"),
        "the error names no key: {error}"
    );
    assert_eq!(info_number(&persistence, "rdb_journal_bytes"), 0);
    assert_eq!(info_number(&persistence, "rdb_saves"), 1);
    assert_eq!(std::fs::read(&snapshot).expect("snapshot"), previous);
    let temp = dir.0.join(format!("{SNAPSHOT}.tmp-{}", std::process::id()));
    assert!(!temp.exists(), "the abandoned save's temp file is removed");
    let value: String = call(&mut con, &[b"GET", b"before"]);
    assert_eq!(value, "1", "the server keeps serving");
    // Not a disk error: writes are not refused with MISCONF.
    let written: String = call(&mut con, &[b"SET", b"after", b"2"]);
    assert_eq!(written, "OK");
    let limit: Vec<String> = call(&mut con, &[b"CONFIG", b"GET", b"snapshot-journal-limit"]);
    assert_eq!(limit, ["snapshot-journal-limit", "262144"]);
}

/// Sends SHUTDOWN with `options` and waits until the server has stopped (final save included).
fn shut_down(server: TestServer, options: &[&[u8]]) {
    let mut raw = server.raw();
    let mut args: Vec<&[u8]> = vec![b"SHUTDOWN"];
    args.extend(options);
    raw.command(&args);
    assert!(raw.closed(), "SHUTDOWN closes the connection");
    drop(server);
}

#[test]
fn shutdown_nosave_writes_no_final_snapshot_and_shutdown_and_shutdown_save_do() {
    let dir = ScratchDir::new();
    let snapshot = dir.0.join(SNAPSHOT);
    let set = |server: &TestServer, key: &[u8]| {
        let _: Value = call(&mut server.client(), &[b"SET", key, b"v"]);
    };
    let names = |keys: &[&[u8]]| -> BTreeSet<Vec<u8>> { keys.iter().map(|k| k.to_vec()).collect() };

    let server = TestServer::with_config(persisting(&dir.0));
    set(&server, b"one");
    shut_down(server, &[b"NOSAVE"]);
    assert!(!snapshot.exists(), "SHUTDOWN NOSAVE wrote a snapshot");

    let server = TestServer::with_config(persisting(&dir.0));
    set(&server, b"two");
    shut_down(server, &[]);
    assert_eq!(key_names(&load_fresh(&snapshot)), names(&[b"two"]));
    let saved = std::fs::read(&snapshot).expect("snapshot");

    let server = TestServer::with_config(persisting(&dir.0));
    set(&server, b"three");
    shut_down(server, &[b"NOSAVE"]);
    assert_eq!(std::fs::read(&snapshot).expect("snapshot"), saved);

    let server = TestServer::with_config(persisting(&dir.0));
    set(&server, b"four");
    shut_down(server, &[b"SAVE"]);
    assert_eq!(key_names(&load_fresh(&snapshot)), names(&[b"two", b"four"]));
}

#[test]
fn lastsave_moves_with_each_save_on_the_servers_clock() {
    let dir = ScratchDir::new();
    let (clock, manual) = Clock::manual(CLOCK_START_MS);
    let mut server = TestServer::with_config(Config {
        clock,
        ..persisting(&dir.0)
    });
    server.clock = Some(manual);
    let mut con = server.client();
    let start_s = (CLOCK_START_MS / 1000) as i64;
    assert_eq!(
        call::<i64>(&mut con, &[b"LASTSAVE"]),
        start_s,
        "the start time before any save"
    );

    server.advance(5_000);
    assert_eq!(call::<String>(&mut con, &[b"SAVE"]), "OK");
    assert_eq!(call::<i64>(&mut con, &[b"LASTSAVE"]), start_s + 5);
    let persistence = info(&mut con, "persistence");
    assert_eq!(
        info_number(&persistence, "rdb_last_save_time"),
        start_s as u64 + 5
    );
    assert_eq!(info_number(&persistence, "rdb_saves"), 1);

    server.advance(3_000);
    let started: String = call(&mut con, &[b"BGSAVE"]);
    assert_eq!(started, "Background saving started");
    wait_until("the background save ends", || {
        info_number(&info(&mut con, "persistence"), "rdb_bgsave_in_progress") == 0
    });
    assert_eq!(call::<i64>(&mut con, &[b"LASTSAVE"]), start_s + 8);
}

#[test]
fn a_second_save_while_a_background_save_runs_is_refused() {
    let dir = ScratchDir::new();
    let mut config = persisting(&dir.0);
    if let Some(persistence) = &mut config.persistence {
        // About a second per save: the second request arrives long before it ends.
        persistence.shard_delay = Duration::from_millis(1);
    }
    let server = TestServer::with_config(config);
    let mut con = server.client();
    let _: Value = call(&mut con, &[b"SET", b"k", b"v"]);
    let started: String = call(&mut con, &[b"BGSAVE"]);
    assert_eq!(started, "Background saving started");
    let busy = "ERR Background save already in progress";
    assert_eq!(error_of(&mut con, &[b"BGSAVE"]), busy);
    assert_eq!(error_of(&mut con, &[b"SAVE"]), busy);
    let persistence = info(&mut con, "persistence");
    assert_eq!(info_number(&persistence, "rdb_bgsave_in_progress"), 1);
    assert_ne!(
        info_field(&persistence, "rdb_current_bgsave_time_sec"),
        "-1"
    );

    wait_until("the background save ends", || {
        info_number(&info(&mut con, "persistence"), "rdb_bgsave_in_progress") == 0
    });
    let persistence = info(&mut con, "persistence");
    assert_eq!(info_number(&persistence, "rdb_saves"), 1);
    assert_eq!(info_field(&persistence, "rdb_last_bgsave_status"), "ok");
    assert_eq!(info_number(&persistence, "rdb_last_save_records"), 1);
    // No final save with the delay: the test is done.
    server.shared.set_final_save(false);
}

#[test]
fn config_set_snapshot_interval_starts_periodic_saves_without_a_restart() {
    for resp3 in [false, true] {
        let dir = ScratchDir::new();
        let server = TestServer::with_config(persisting(&dir.0));
        let mut con = server.connect(resp3);
        let saves = |con: &mut Connection| info_number(&info(con, "persistence"), "rdb_saves");
        let _: Value = call(&mut con, &[b"SET", b"k", b"v"]);
        assert_eq!(saves(&mut con), 0, "only on demand at start");
        let _: Value = call(
            &mut con,
            &[b"CONFIG", b"SET", b"snapshot-interval", b"25ms"],
        );
        let shown: std::collections::HashMap<String, String> =
            call(&mut con, &[b"CONFIG", b"GET", b"snapshot-interval"]);
        assert_eq!(shown["snapshot-interval"], "25ms");
        wait_until("a periodic snapshot", || saves(&mut con) == 1);
        assert_eq!(
            key_names(&load_fresh(&dir.0.join(SNAPSHOT))),
            BTreeSet::from([b"k".to_vec()])
        );
        let _: Value = call(&mut con, &[b"CONFIG", b"SET", b"snapshot-interval", b"0"]);
        let shown: std::collections::HashMap<String, String> =
            call(&mut con, &[b"CONFIG", b"GET", b"snapshot-interval"]);
        assert_eq!(shown["snapshot-interval"], "0");
        // Redis's `save` rules set the same period: the shortest of their seconds.
        let _: Value = call(&mut con, &[b"CONFIG", b"SET", b"save", b"3600 1 300 100"]);
        let shown: std::collections::HashMap<String, String> =
            call(&mut con, &[b"CONFIG", b"GET", b"s*"]);
        assert_eq!(shown["snapshot-interval"], "5m");
        assert_eq!(shown["save"], "300 1");
        let refused = cmd(&[b"CONFIG", b"SET", b"save", b"300"])
            .query::<()>(&mut con)
            .expect_err("a rule without its changes");
        assert!(
            refused.to_string().contains("Invalid save parameters"),
            "{refused}"
        );
        let _: Value = call(&mut con, &[b"CONFIG", b"SET", b"save", b""]);
        let shown: std::collections::HashMap<String, String> =
            call(&mut con, &[b"CONFIG", b"GET", b"save"]);
        assert_eq!(shown["save"], "");
    }
}
