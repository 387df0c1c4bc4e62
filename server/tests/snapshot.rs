//! Snapshots at the library level, where the file's bytes and the clock are in the test's hands:
//! every single-byte flip and every truncation of a small snapshot is refused with the file and
//! a byte offset and loads nothing; so is a record that does not decode under a valid checksum,
//! and a file of a newer format version; and a load on a later clock skips the keys whose
//! wall-clock deadline passed while the server was down, keeping every other deadline as it was.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed case

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use sessiond::persist::format::{FORMAT_VERSION, HEADER_LEN, MAGIC};
use sessiond::persist::loader::{self, SnapshotError, Summary};
use sessiond::persist::writer;
use sessiond::store::session::NewSession;
use sessiond::store::Databases;
use sessiond::store::Record;
use sessiond::store::{Entry, Fields, KeyFilter, Value};
use sessiond::{Clock, Store};

/// The manual clock's start: 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;

/// A scratch directory removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> ScratchDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sessiond-snapshot-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        ScratchDir(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn put_string(store: &Store, key: &[u8], value: &[u8], expires_at_ms: u64) {
    let key = Bytes::copy_from_slice(key);
    let entry = Entry::new(Value::Str(Bytes::copy_from_slice(value)), expires_at_ms);
    store.upsert(&key, store.now_ms(), |_| (Some(entry), ()));
}

fn put_hash(store: &Store, key: &str, fields: &[(&str, &str)], expires_at_ms: u64) {
    let fields = fields
        .iter()
        .map(|(f, v)| (Bytes::from(f.to_string()), Bytes::from(v.to_string())))
        .collect();
    let entry = Entry::new(Value::Hash(Box::new(fields)), expires_at_ms);
    store.upsert(&Bytes::from(key.to_owned()), store.now_ms(), |_| {
        (Some(entry), ())
    });
}

fn create_session(store: &Store, user: Option<&str>, idle_ms: u64, absolute_ms: u64) -> Bytes {
    let new = NewSession {
        prefix: Bytes::new(),
        user: user.map(|u| Bytes::from(u.to_owned())),
        idle_ms,
        absolute_ms,
        data: vec![(Bytes::from_static(b"role"), Bytes::from_static(b"reader"))],
    };
    store.create_session(new, store.now_ms(), 0).unwrap()
}

/// Writes a field of a session and bumps its version, as SESSION.SET does.
fn set_session_field(store: &Store, id: &Bytes, field: &'static str, value: &'static str) {
    store
        .update_session(id, store.now_ms(), |session| {
            session
                .fields
                .insert(Bytes::from_static(field.as_bytes()), Bytes::from(value));
            session.version += 1;
            (true, ())
        })
        .unwrap()
        .unwrap();
}

/// A store on a manual clock at [`T0`] with a few keys of each type: strings (one binary, one
/// empty), hashes, sessions with and without a user, deadlines and none.
fn small_store() -> Store {
    let (clock, _manual) = Clock::manual(T0);
    let store = Store::new(clock);
    put_string(&store, b"greeting", b"hello", 0);
    put_string(&store, b"bin\x00\xffkey", b"\x00\x01\xfe\xff", T0 + 60_000);
    put_string(&store, b"empty", b"", 0);
    put_hash(&store, "profile", &[("name", "ada"), ("lang", "rust")], 0);
    put_hash(&store, "cart", &[("apples", "3")], T0 + 120_000);
    let ada = create_session(&store, Some("ada"), 1_800_000, 28_800_000);
    set_session_field(&store, &ada, "cart", "3");
    create_session(&store, None, 600_000, 3_600_000);
    store
}

/// Every live key's value and deadline (values compare field sets, not their order) and each
/// user's session list, read through the store's public reads rather than the snapshot code.
type State = (
    BTreeMap<Bytes, (Value, Option<u64>)>,
    BTreeMap<&'static str, Vec<Bytes>>,
);

fn state(store: &Store, users: &[&'static str]) -> State {
    let now = store.now_ms();
    let keys = store
        .keys(KeyFilter::default(), now)
        .into_iter()
        .filter_map(|key| {
            let node = store.read(&key, now, |e| e.cloned())?;
            let deadline = node.deadline_ms();
            Some((key, (node.into_entry().value, deadline)))
        })
        .collect();
    let lists = users
        .iter()
        .map(|user| (*user, store.list_sessions(b"", user.as_bytes(), now)))
        .collect();
    (keys, lists)
}

/// Writes a snapshot of `store` into `dir` and returns its path and bytes.
fn snapshot_of(store: &Store, dir: &ScratchDir) -> (PathBuf, Vec<u8>) {
    let path = dir.0.join("dump.sdb");
    writer::write_snapshot(store, &path, &writer::WriteOptions::default()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

/// Loads `path` into `store`, turning a panic into a test failure that says which case it was.
fn load_without_panic(path: &Path, store: &Store, case: &str) -> Result<Summary, SnapshotError> {
    catch_unwind(AssertUnwindSafe(|| loader::load(path, store)))
        .unwrap_or_else(|_| panic!("{case}: the loader panicked"))
}

fn check_without_panic(path: &Path, case: &str) -> Result<Summary, SnapshotError> {
    catch_unwind(AssertUnwindSafe(|| loader::check(path, T0)))
        .unwrap_or_else(|_| panic!("{case}: check panicked"))
}

/// `bytes` written to `path` must be refused by both `load` and `check` with an error naming
/// the file and an offset no later than `max_offset`, and the load must leave `store` empty.
fn assert_refused(path: &Path, bytes: &[u8], store: &Store, max_offset: u64, case: &str) {
    // A new file each time: rewriting one in place makes ext4 flush it on close (its
    // replace-by-truncate heuristic), which slows a thousand cases down to seconds.
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).unwrap();
    let error = match load_without_panic(path, store, case) {
        Ok(summary) => panic!("{case}: loaded {summary:?}"),
        Err(error) => error,
    };
    let message = error.to_string();
    assert_eq!(error.path, path, "{case}: {message}");
    assert!(
        message.contains(&path.display().to_string())
            && message.contains(&format!("at byte offset {}", error.offset)),
        "{case}: {message}"
    );
    assert!(error.offset <= max_offset, "{case}: {message}");
    assert!(store.is_empty(), "{case}: a refused file loaded keys");
    match check_without_panic(path, case) {
        Ok(summary) => panic!("{case}: check accepted {summary:?}"),
        Err(checked) => assert_eq!(checked.to_string(), message, "{case}"),
    }
}

#[test]
fn every_flipped_byte_and_every_truncation_is_refused_with_the_file_and_an_offset() {
    let dir = ScratchDir::new();
    let store = small_store();
    let (good, bytes) = snapshot_of(&store, &dir);
    let len = bytes.len() as u64;
    // The unmodified file loads: the refusals below are about the changes, not the file.
    let fresh = Store::new(store.clock().clone());
    let summary = loader::load(&good, &fresh).unwrap();
    assert_eq!(
        (summary.strings, summary.hashes, summary.sessions),
        (3, 2, 2)
    );
    assert_eq!(fresh.len(), 7);

    let path = dir.0.join("corrupt.sdb");
    let empty = Store::new(store.clock().clone());
    for position in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut corrupt = bytes.clone();
            corrupt[position] ^= mask;
            let case = format!("byte {position} of {len} xor {mask:#04x}");
            assert_refused(&path, &corrupt, &empty, len, &case);
        }
    }
    for cut in 0..bytes.len() {
        let case = format!("truncated to {cut} of {len} bytes");
        // A truncated file is reported where the missing bytes were expected, never later.
        assert_refused(&path, &bytes[..cut], &empty, cut as u64, &case);
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_refused(&path, &longer, &empty, len, "one byte appended");
}

/// A snapshot file of `records` with a correct framing, count and checksum.
fn file_of(version: u16, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    bytes.extend_from_slice(&T0.to_le_bytes());
    assert_eq!(bytes.len(), HEADER_LEN);
    for frame in frames {
        bytes.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        bytes.extend_from_slice(frame);
    }
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&(frames.len() as u64).to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

fn encoded(record: &Record) -> Vec<u8> {
    postcard::to_stdvec(record).unwrap()
}

#[test]
fn a_record_that_does_not_decode_under_a_valid_checksum_loads_nothing() {
    // What a writer bug, or a newer build that added a record kind without a new format
    // version, would produce: the framing and the checksum are right, a record is not.
    let dir = ScratchDir::new();
    let path = dir.0.join("dump.sdb");
    let good = Record::String {
        key: Bytes::from_static(b"greeting"),
        value: Bytes::from_static(b"hello"),
        expires_at_ms: 0,
    };
    let undecodable = vec![0xff, 0xff, 0xff];
    let good_frame = encoded(&good);
    let bytes = file_of(1, &[good_frame.clone(), undecodable]);
    std::fs::write(&path, &bytes).unwrap();
    let bad_record_at = (HEADER_LEN + 4 + good_frame.len() + 4) as u64;

    let store = Store::new(Clock::manual(T0).0);
    let error = load_without_panic(&path, &store, "undecodable record").unwrap_err();
    assert_eq!(error.offset, bad_record_at, "{error}");
    assert!(error.problem.contains("corrupt record"), "{error}");
    assert!(
        store.is_empty(),
        "a refused file must load nothing, yet {} key(s) were loaded",
        store.len()
    );
    let checked = check_without_panic(&path, "undecodable record").unwrap_err();
    assert_eq!(checked.to_string(), error.to_string());

    // The same file without the bad record loads.
    std::fs::write(&path, file_of(1, &[good_frame])).unwrap();
    loader::load(&path, &store).unwrap();
    assert_eq!(store.len(), 1);
}

#[test]
fn a_newer_format_version_is_refused_saying_so() {
    let dir = ScratchDir::new();
    let store = small_store();
    let (path, mut bytes) = snapshot_of(&store, &dir);
    let newer = FORMAT_VERSION + 1;
    bytes[8..10].copy_from_slice(&newer.to_le_bytes());
    // A well-formed file of that version: its checksum matches its contents.
    let body = bytes.len() - 4;
    let crc = crc32fast::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();

    let fresh = Store::new(store.clock().clone());
    let error = loader::load(&path, &fresh).unwrap_err();
    let message = error.to_string();
    assert_eq!(error.offset, 8, "{message}");
    assert!(
        message.contains(&format!("format version {newer} is newer"))
            && message.contains("upgrade sessiond"),
        "{message}"
    );
    assert!(fresh.is_empty());
    assert_eq!(loader::check(&path, T0).unwrap_err().to_string(), message);
}

#[test]
fn keys_whose_deadline_passed_while_down_are_not_loaded_and_the_rest_keep_their_deadlines() {
    let (clock, manual) = Clock::manual(T0);
    let store = Store::new(clock.clone());
    put_string(&store, b"forever", b"1", 0);
    put_string(&store, b"gone-at-10s", b"2", T0 + 10_000);
    put_string(&store, b"gone-at-100s", b"3", T0 + 100_000);
    put_hash(&store, "hash-gone-at-10s", &[("f", "v")], T0 + 10_000);
    put_hash(&store, "hash-forever", &[("f", "v")], 0);
    let idle_5s = create_session(&store, Some("ada"), 5_000, 3_600_000);
    let ada_long = create_session(&store, Some("ada"), 3_600_000, 7_200_000);
    set_session_field(&store, &ada_long, "cart", "2");
    let bob_absolute_8s = create_session(&store, Some("bob"), 3_600_000, 8_000);
    let bob_long = create_session(&store, Some("bob"), 3_600_000, 7_200_000);
    let anonymous = create_session(&store, None, 600_000, 7_200_000);
    let users = ["ada", "bob", "cy"];

    let dir = ScratchDir::new();
    let (path, _) = snapshot_of(&store, &dir);

    // The server is down for 9 s: two sessions ended in the meantime, nothing else did.
    manual.advance(9_000);
    let later = Store::new(clock.clone());
    let summary = loader::load(&path, &later).unwrap();
    assert_eq!(summary.records, 10);
    assert_eq!(summary.expired, 2, "{summary:?}");
    assert_eq!(later.len(), 8, "expired keys are not even held");
    for id in [&idle_5s, &bob_absolute_8s] {
        assert!(later.read(id, later.now_ms(), |e| e.is_none()));
    }
    assert_eq!(state(&later, &users), state(&store, &users));
    assert_eq!(
        later.list_sessions(b"", b"ada", later.now_ms()),
        vec![ada_long]
    );
    assert_eq!(
        later.list_sessions(b"", b"bob", later.now_ms()),
        vec![bob_long]
    );
    let live_sessions = later.session_stats().live.load(Ordering::Relaxed);
    assert_eq!(live_sessions, 3);
    assert_eq!(later.volatile_len(), 6);

    // Down for 200 s: only what has no deadline, and sessions still within their timeouts.
    manual.advance(191_000);
    let much_later = Store::new(clock);
    let summary = loader::load(&path, &much_later).unwrap();
    assert_eq!(summary.expired, 5, "{summary:?}");
    assert_eq!(state(&much_later, &users), state(&store, &users));
    assert_eq!(much_later.len(), 5);
    assert!(much_later.read(&anonymous, much_later.now_ms(), |e| e.is_some()));
}

#[test]
fn per_application_session_lists_are_rebuilt_in_their_namespaces() {
    let (clock, _manual) = Clock::manual(T0);
    let store = Store::new(clock.clone());
    let create = |prefix: &'static [u8]| {
        let new = NewSession {
            prefix: Bytes::from_static(prefix),
            user: Some(Bytes::from_static(b"ada")),
            idle_ms: 3_600_000,
            absolute_ms: 7_200_000,
            data: Vec::new(),
        };
        store.create_session(new, store.now_ms(), 0).unwrap()
    };
    let plain = create(b"");
    let app1 = create(b"sess:app1:");
    let app2 = create(b"sess:app2:");

    let dir = ScratchDir::new();
    let (path, _) = snapshot_of(&store, &dir);
    let later = Store::new(clock);
    loader::load(&path, &later).unwrap();
    let now = later.now_ms();
    assert_eq!(later.list_sessions(b"", b"ada", now), vec![plain]);
    assert_eq!(later.list_sessions(b"sess:app1:", b"ada", now), vec![app1]);
    assert_eq!(
        later.list_sessions(b"sess:app2:", b"ada", now),
        vec![app2.clone()]
    );
    assert_eq!(
        later.destroy_sessions_of(b"sess:app2:", b"ada", None, now),
        1
    );
    assert_eq!(later.len(), 2, "only app2's session of ada was destroyed");
    assert!(later.read(&app2, now, |e| e.is_none()));
}

fn put_set(store: &Store, key: &str, members: &[&str], expires_at_ms: u64) {
    let members = Fields::from_members(members.iter().map(|m| Bytes::from(m.to_string())));
    let entry = Entry::new(Value::Set(Box::new(members)), expires_at_ms);
    store.upsert(&Bytes::from(key.to_owned()), store.now_ms(), |_| {
        (Some(entry), ())
    });
}

#[test]
fn sets_round_trip_and_are_counted() {
    let dir = ScratchDir::new();
    let store = small_store();
    put_set(&store, "roles", &["admin", "editor", ""], 0);
    put_set(&store, "index:ada", &["s1", "s2"], T0 + 30_000);
    let (path, _) = snapshot_of(&store, &dir);

    let summary = loader::check(&path, T0).unwrap();
    assert_eq!(
        (
            summary.strings,
            summary.hashes,
            summary.sets,
            summary.sessions
        ),
        (3, 2, 2, 2)
    );
    let fresh = Store::new(store.clock().clone());
    loader::load(&path, &fresh).unwrap();
    assert_eq!(state(&fresh, &["ada"]), state(&store, &["ada"]));
    assert_eq!(fresh.used_memory(), store.used_memory());
}

#[test]
fn a_file_written_before_sets_existed_still_loads() {
    // Postcard encodes a record's variant as its index: these are the bytes a build without
    // sets wrote (String 0, Hash 1, Session 2, Delete 3), so the set record must come after.
    let string = vec![0, 1, b'g', 2, b'h', b'i', 0];
    let hash = vec![1, 1, b'h', 1, 1, b'f', 1, b'v', 0];
    let gone = vec![3, 1, b'x'];
    assert_eq!(
        postcard::from_bytes::<Record>(&hash).unwrap(),
        Record::Hash {
            key: Bytes::from_static(b"h"),
            fields: vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))],
            expires_at_ms: 0,
        }
    );
    let set = Record::Set {
        key: Bytes::from_static(b"s"),
        members: vec![Bytes::from_static(b"m")],
        expires_at_ms: 0,
    };
    assert_eq!(encoded(&set), vec![4, 1, b's', 1, 1, b'm', 0]);

    let dir = ScratchDir::new();
    let path = dir.0.join("dump.sdb");
    std::fs::write(&path, file_of(1, &[string, hash, gone])).unwrap();
    let store = Store::new(Clock::manual(T0).0);
    let summary = loader::load(&path, &store).unwrap();
    assert_eq!(
        (
            summary.strings,
            summary.hashes,
            summary.sets,
            summary.deletes
        ),
        (1, 1, 0, 1)
    );
    assert_eq!(store.len(), 2);
}

/// Files of format version 1 (before numbered databases) load into database 0; version 2
/// frames name their database, and a database the server lacks refuses the file whole.
#[test]
fn a_version_1_file_loads_into_database_0_and_version_2_frames_name_theirs() {
    let string = |key: &'static str| {
        encoded(&Record::String {
            key: Bytes::from_static(key.as_bytes()),
            value: Bytes::from_static(b"v"),
            expires_at_ms: 0,
        })
    };
    let in_db = |db: u16, frame: Vec<u8>| [db.to_le_bytes().to_vec(), frame].concat();
    let dir = ScratchDir::new();
    let path = dir.0.join("dump.sdb");
    let count = |dbs: &Databases, db: usize| dbs.db(db).len();

    std::fs::write(&path, file_of(1, &[string("old")])).unwrap();
    let dbs = Databases::new(Clock::manual(T0).0, 16);
    assert_eq!(loader::load(&path, &dbs).unwrap().format_version, 1);
    assert_eq!((count(&dbs, 0), dbs.len()), (1, 1));

    let frames = [
        in_db(0, string("a")),
        in_db(9, string("b")),
        in_db(15, string("c")),
    ];
    std::fs::write(&path, file_of(FORMAT_VERSION, &frames)).unwrap();
    let dbs = Databases::new(Clock::manual(T0).0, 16);
    loader::load(&path, &dbs).unwrap();
    assert_eq!((count(&dbs, 0), count(&dbs, 9), count(&dbs, 15)), (1, 1, 1));

    let fewer = Databases::new(Clock::manual(T0).0, 10);
    let error = loader::load(&path, &fewer).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("a record of database 15, but the server has 10 databases"),
        "{error}"
    );
    assert!(fewer.is_empty(), "nothing of a refused file is loaded");
    // A lone store is one database: a file with others is refused too.
    let lone = Store::new(Clock::manual(T0).0);
    assert!(loader::load(&path, &lone).is_err());
    assert!(lone.is_empty());
}
