//! RENAME and RENAMENX through the `redis` crate, in RESP2 and RESP3, against what Redis 7
//! answers: the value, its type and its deadline move, the destination is overwritten (RENAME)
//! or kept (RENAMENX), `used_memory` follows, the errors; sessions are never renamed; both
//! keys are checked against a restricted user's patterns; neither is refused under
//! `--maxmemory`; the move is one step for concurrent readers on the multi-thread runtime and
//! for a snapshot written meanwhile.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use redis::{Connection, Value};
use sessiond::persist::{loader, PersistConfig};
use sessiond::store::evict::Policy;
use sessiond::store::ValueRef;
use sessiond::{Clock, Config, RawConfig};
use sessiond_tests::{info_number, TestServer};

use super::daemon::ScratchDir;
use super::words::{each_protocol, error, forward, query};

/// The refusal of a rename that involves a session.
const SESSION_REFUSED: &str =
    "ERR session keys cannot be renamed: use SESSION.REGENERATE for a new server-issued ID";

fn int(con: &mut Connection, line: &str) -> i64 {
    match query(con, line) {
        Value::Int(n) => n,
        other => panic!("{line}: expected an integer, got {other:?}"),
    }
}

fn bulk(con: &mut Connection, line: &str) -> Option<String> {
    match query(con, line) {
        Value::BulkString(bytes) => Some(String::from_utf8(bytes).expect("utf-8")),
        Value::Nil => None,
        other => panic!("{line}: expected a bulk string, got {other:?}"),
    }
}

fn used_memory(server: &TestServer) -> u64 {
    info_number(&server.info("memory"), "used_memory_dataset")
}

#[test]
fn rename_moves_value_type_and_deadline_and_overwrites_the_destination() {
    each_protocol(|server, con| {
        // What `b` is accounted for, made directly: small with a deadline, and big.
        let big = "x".repeat(2_000);
        assert_eq!(query(con, "SET b small PX 5000"), Value::Okay);
        let direct_small = used_memory(server);
        assert_eq!(query(con, &format!("SET b {big}")), Value::Okay);
        let direct_big = used_memory(server);
        assert_eq!(query(con, "FLUSHALL"), Value::Okay);
        assert_eq!(used_memory(server), 0);

        // Onto a bigger value.
        assert_eq!(query(con, "SET a small PX 5000"), Value::Okay);
        assert_eq!(query(con, &format!("SET b {big}")), Value::Okay);
        assert_eq!(query(con, "RENAME a b"), Value::Okay);
        assert_eq!(bulk(con, "GET b").as_deref(), Some("small"));
        assert_eq!(int(con, "PTTL b"), 5000);
        assert_eq!(int(con, "EXISTS a"), 0);
        assert_eq!(int(con, "DBSIZE"), 1);
        assert_eq!(
            used_memory(server),
            direct_small,
            "a bigger value overwritten"
        );

        // Onto a smaller one: the deadline goes with the key, so none here.
        assert_eq!(query(con, &format!("SET c {big}")), Value::Okay);
        assert_eq!(query(con, "RENAME c b"), Value::Okay);
        assert_eq!(bulk(con, "GET b"), Some(big.clone()));
        assert_eq!(int(con, "TTL b"), -1);
        assert_eq!(int(con, "DBSIZE"), 1);
        assert_eq!(
            used_memory(server),
            direct_big,
            "a smaller value overwritten"
        );
        assert_eq!(query(con, "DEL b"), Value::Int(1));

        // A hash keeps its type and fields.
        assert_eq!(query(con, "HSET h f1 v1 f2 v2"), Value::Int(2));
        assert_eq!(query(con, "RENAME h h2"), Value::Okay);
        assert_eq!(query(con, "TYPE h2"), Value::SimpleString("hash".into()));
        assert_eq!(bulk(con, "HGET h2 f2").as_deref(), Some("v2"));
        assert_eq!(int(con, "EXISTS h"), 0);
    });
}

#[test]
fn a_renamed_key_expires_at_its_old_deadline_under_its_new_name_once() {
    each_protocol(|server, con| {
        assert_eq!(query(con, "SET a v PX 1000"), Value::Okay);
        assert_eq!(query(con, "RENAME a b"), Value::Okay);
        // Back and forth: every move leaves a stale position behind in the expiry index.
        assert_eq!(query(con, "RENAME b a"), Value::Okay);
        assert_eq!(int(con, "RENAMENX a b"), 1);
        assert_eq!(int(con, "PEXPIRETIME b"), server.now_ms() as i64 + 1000);
        server.advance(999);
        assert_eq!(bulk(con, "GET b").as_deref(), Some("v"));
        server.advance(1);
        assert_eq!(int(con, "EXISTS a b"), 0);
        assert_eq!(server.stored_keys(), 0, "reclaimed by the active expiry");
        let stats = server.info("stats");
        assert_eq!(info_number(&stats, "expired_keys"), 1, "reclaimed once");
        assert_eq!(server.shared.dbs.first().volatile_len(), 0);
        // A key made later under an old name is not reclaimed by a stale position.
        assert_eq!(query(con, "SET a w"), Value::Okay);
        server.advance(10_000);
        assert_eq!(bulk(con, "GET a").as_deref(), Some("w"));
    });
}

#[test]
fn renamenx_same_names_missing_keys_and_arity_answer_as_redis() {
    each_protocol(|server, con| {
        for name in ["RENAME", "RENAMENX"] {
            assert_eq!(error(con, &format!("{name} missing x")), "ERR no such key");
            assert_eq!(
                error(con, &format!("{name} missing missing")),
                "ERR no such key"
            );
            let lower = name.to_ascii_lowercase();
            let arity = format!("ERR wrong number of arguments for '{lower}' command");
            assert_eq!(error(con, &format!("{name} a")), arity);
            assert_eq!(error(con, &format!("{name} a b c")), arity);
        }
        assert_eq!(query(con, "SET a 1 PX 5000"), Value::Okay);
        assert_eq!(query(con, "SET b 2"), Value::Okay);
        // Onto itself: kept as it was (Redis 7), RENAMENX answers 0.
        assert_eq!(query(con, "RENAME a a"), Value::Okay);
        assert_eq!(int(con, "RENAMENX a a"), 0);
        assert_eq!(bulk(con, "GET a").as_deref(), Some("1"));
        assert_eq!(int(con, "PTTL a"), 5000);
        // RENAMENX keeps an existing destination.
        assert_eq!(int(con, "RENAMENX a b"), 0);
        assert_eq!(bulk(con, "GET a").as_deref(), Some("1"));
        assert_eq!(bulk(con, "GET b").as_deref(), Some("2"));
        assert_eq!(int(con, "RENAMENX a c"), 1);
        assert_eq!(bulk(con, "GET c").as_deref(), Some("1"));
        assert_eq!(int(con, "PTTL c"), 5000);
        // An expired source is no key; an expired destination no obstacle.
        assert_eq!(query(con, "SET dead v PX 100"), Value::Okay);
        assert_eq!(query(con, "SET gone v PX 100"), Value::Okay);
        forward(server, 100);
        assert_eq!(error(con, "RENAME dead x"), "ERR no such key");
        assert_eq!(int(con, "RENAMENX b gone"), 1);
        assert_eq!(bulk(con, "GET gone").as_deref(), Some("2"));
        assert_eq!(int(con, "EXISTS x dead b"), 0);
    });
}

#[test]
fn sessions_are_refused_as_source_and_as_destination() {
    each_protocol(|_server, con| {
        let id = bulk(con, "SESSION.CREATE USER ada DATA f v").expect("an ID");
        assert_eq!(query(con, "SET plain v"), Value::Okay);
        for name in ["RENAME", "RENAMENX"] {
            for line in [
                format!("{name} {id} chosen"),
                format!("{name} {id} plain"),
                format!("{name} {id} {id}"),
                format!("{name} plain {id}"),
            ] {
                assert_eq!(error(con, &line), SESSION_REFUSED, "{line}");
            }
        }
        assert_eq!(int(con, "EXISTS chosen"), 0);
        assert_eq!(bulk(con, "GET plain").as_deref(), Some("v"));
        assert_eq!(
            query(con, &format!("TYPE {id}")),
            Value::SimpleString("session".into())
        );
        assert_eq!(int(con, "SESSION.COUNT ada"), 1);
        assert_eq!(
            query(con, "SESSION.LIST ada"),
            Value::Array(vec![Value::BulkString(id.into_bytes())])
        );
    });
}

#[test]
fn command_info_describes_rename_as_redis_7() {
    each_protocol(|_server, con| {
        let info = query(con, "COMMAND INFO rename renamenx");
        let Value::Array(commands) = info else {
            panic!("{info:?}")
        };
        let expected = [
            (
                "rename",
                vec!["write"],
                vec!["@keyspace", "@write", "@slow"],
                "update",
            ),
            (
                "renamenx",
                vec!["write", "fast"],
                vec!["@keyspace", "@write", "@fast"],
                "insert",
            ),
        ];
        for (command, (name, flags, categories, action)) in commands.iter().zip(expected) {
            let text = format!("{command:?}");
            let Value::Array(fields) = command else {
                panic!("{text}")
            };
            assert_eq!(fields[0], Value::BulkString(name.into()), "{text}");
            assert_eq!(
                fields[1..6]
                    .iter()
                    .filter_map(|v| match v {
                        Value::Int(n) => Some(*n),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
                [3, 1, 2, 1],
                "{text}"
            );
            for word in flags.iter().chain(&categories) {
                assert!(text.contains(&format!("\"{word}\"")), "{word} in {text}");
            }
            // Two key specs: the first read and deleted, the second overwritten.
            let specs = format!("{:?}", fields[8]);
            for word in [
                "RW",
                "access",
                "delete",
                "OW",
                action,
                "begin_search",
                "index",
                "find_keys",
                "range",
                "lastkey",
                "keystep",
                "limit",
            ] {
                assert!(specs.contains(&format!("\"{word}\"")), "{word} in {specs}");
            }
            let specs = match &fields[8] {
                Value::Array(specs) | Value::Set(specs) => specs.len(),
                other => panic!("{other:?}"),
            };
            assert_eq!(specs, 2, "{text}");
        }
    });
}

/// A server whose user `app1` may only touch `sess:app1:*`.
fn with_restricted_user() -> TestServer {
    let dir = ScratchDir::new();
    let file = dir.file(
        "sessiond.toml",
        &format!(
            r#"
            [[user]]
            name = "app1"
            password-sha256 = "{}"
            keys = ["sess:app1:*"]
            categories = ["read", "write", "session"]
            session-prefix = "sess:app1:"
            "#,
            sessiond::auth::password_sha256("pw1")
        ),
    );
    let raw = RawConfig::from_file(&file).expect("a valid file");
    TestServer::with_config(Config {
        persistence: None,
        ..raw.validate().expect("valid users")
    })
}

#[test]
fn a_restricted_user_is_refused_either_key_outside_its_patterns() {
    let server = with_restricted_user();
    for resp3 in [false, true] {
        let protocol = if resp3 { "?protocol=resp3" } else { "" };
        let mut con = redis::Client::open(format!("redis://app1:pw1@{}/{protocol}", server.addr))
            .expect("url")
            .get_connection()
            .expect("log in");
        let con = &mut con;
        assert_eq!(query(con, "SET sess:app1:a v"), Value::Okay);
        let no_key = "NOPERM No permissions to access a key";
        for name in ["RENAME", "RENAMENX"] {
            assert_eq!(error(con, &format!("{name} sess:app1:a foreign")), no_key);
            assert_eq!(error(con, &format!("{name} foreign sess:app1:a")), no_key);
        }
        assert_eq!(query(con, "RENAME sess:app1:a sess:app1:b"), Value::Okay);
        assert_eq!(int(con, "RENAMENX sess:app1:b sess:app1:a"), 1);
        assert_eq!(int(con, "EXISTS sess:app1:a sess:app1:b"), 1);
        assert_eq!(query(con, "DEL sess:app1:a"), Value::Int(1));
    }
    assert_eq!(server.stored_keys(), 0, "nothing reached a foreign key");
}

#[test]
fn rename_is_not_refused_over_maxmemory_as_in_redis() {
    // Over the limit under noeviction: SET is refused (denyoom), RENAME is not.
    let server = TestServer::with_config(Config {
        maxmemory: 1,
        maxmemory_policy: Policy::NoEviction,
        ..Config::default()
    });
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let con = &mut con;
        server
            .shared
            .dbs
            .first()
            .upsert(b"a", server.now_ms(), |_| {
                let value = sessiond::store::Value::Str(bytes::Bytes::from_static(b"v"));
                (Some(sessiond::store::Entry::new(value, 0)), ())
            });
        assert!(error(con, "SET c v").starts_with("OOM "));
        assert_eq!(query(con, "RENAME a b"), Value::Okay);
        assert_eq!(int(con, "RENAMENX b a"), 1);
        assert_eq!(query(con, "DEL a"), Value::Int(1));
    }
}

/// A multi-thread server (four workers), whatever the machine's cores.
fn multi_thread() -> TestServer {
    TestServer::with_config(Config {
        threads: 4,
        ..Config::default()
    })
}

#[test]
fn concurrent_readers_never_see_a_renamed_key_under_both_names_or_neither() {
    // Each pair is moved once, `src:i` to `dst:i` (with 1024 shards, nearly every pair spans
    // two). EXISTS reads its keys in order, one at a time, so a reader asking for the source
    // first can only find neither if the move had a moment with neither, and one asking for
    // the destination first can only find both if it had a moment with both.
    const PAIRS: usize = 3_000;
    for resp3 in [false, true] {
        let server = multi_thread();
        let mut writer = server.connect(resp3);
        for chunk in (0..PAIRS).collect::<Vec<_>>().chunks(500) {
            let mut mset = redis::cmd("MSET");
            for i in chunk {
                mset.arg(format!("src:{i}")).arg(i);
            }
            let () = mset.query(&mut writer).expect("MSET");
        }
        // The pair being moved: readers aim at it, so that their reads meet the moves.
        let current = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(3));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (current, done, start) = (current.clone(), done.clone(), start.clone());
                let mut con = server.connect(resp3);
                std::thread::spawn(move || {
                    let mut reads = 0u64;
                    start.wait();
                    while !done.load(Ordering::Relaxed) {
                        let i = current.load(Ordering::Relaxed);
                        let mut pipe = redis::pipe();
                        for _ in 0..8 {
                            pipe.cmd("EXISTS")
                                .arg(format!("src:{i}"))
                                .arg(format!("dst:{i}"));
                            pipe.cmd("EXISTS")
                                .arg(format!("dst:{i}"))
                                .arg(format!("src:{i}"));
                        }
                        let found: Vec<i64> = pipe.query(&mut con).expect("EXISTS");
                        for pair in found.chunks(2) {
                            assert!(pair[0] >= 1, "pair {i}: neither name exists");
                            assert!(pair[1] <= 1, "pair {i}: both names exist");
                        }
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        start.wait();
        for i in 0..PAIRS {
            current.store(i, Ordering::Relaxed);
            assert_eq!(
                query(&mut writer, &format!("RENAME src:{i} dst:{i}")),
                Value::Okay
            );
        }
        done.store(true, Ordering::Relaxed);
        for reader in readers {
            assert!(reader.join().expect("reader") > 0);
        }
        assert_eq!(int(&mut writer, "DBSIZE"), PAIRS as i64);
        assert_eq!(bulk(&mut writer, "GET dst:7").as_deref(), Some("7"));
    }
}

#[test]
fn clients_racing_to_move_one_key_move_it_exactly_once() {
    const ROUNDS: usize = 300;
    const CLIENTS: usize = 4;
    let server = multi_thread();
    let mut setup = server.client();
    for round in 0..ROUNDS {
        assert_eq!(
            query(&mut setup, &format!("SET c:{round} v PX 600000")),
            Value::Okay
        );
    }
    let start = Arc::new(Barrier::new(CLIENTS));
    let racers: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let start = start.clone();
            let mut con = server.connect(client % 2 == 1);
            std::thread::spawn(move || {
                start.wait();
                let mut won = Vec::new();
                for round in 0..ROUNDS {
                    // RENAME onto a name of its own, or RENAMENX onto a shared one.
                    let (line, moved) = if round % 2 == 0 {
                        (format!("RENAME c:{round} d:{round}:{client}"), Value::Okay)
                    } else {
                        (format!("RENAMENX c:{round} d:{round}"), Value::Int(1))
                    };
                    match super::words::cmd(&line).query::<Value>(&mut con) {
                        Ok(reply) if reply == moved => won.push(round),
                        Ok(Value::Int(0)) => {}
                        Err(e) if e.detail() == Some("no such key") => {}
                        other => panic!("{line}: {other:?}"),
                    }
                }
                won
            })
        })
        .collect();
    let mut wins = vec![0; ROUNDS];
    for racer in racers {
        for round in racer.join().expect("racer") {
            wins[round] += 1;
        }
    }
    assert!(
        wins.iter().all(|&w| w == 1),
        "each key moved exactly once: {wins:?}"
    );
    assert_eq!(int(&mut setup, "DBSIZE"), ROUNDS as i64);
    assert_eq!(int(&mut setup, "EXISTS c:0 c:1"), 0);
}

#[test]
fn a_rename_during_a_background_save_reaches_the_snapshot_under_its_new_name() {
    let dir = ScratchDir::new();
    let server = TestServer::with_config(Config {
        persistence: Some(PersistConfig {
            dir: dir.0.clone(),
            interval: None,
            // About a second per save: time for renames while it runs.
            shard_delay: Duration::from_millis(1),
            ..PersistConfig::default()
        }),
        ..Config::default()
    });
    let store = server.shared.dbs.first().clone();
    let mut con = server.client();
    const PAIRS: usize = 400;
    for i in 0..PAIRS {
        assert_eq!(
            query(&mut con, &format!("SET r:{i} v{i} PX 3600000")),
            Value::Okay
        );
        if i % 2 == 1 {
            // Odd pairs overwrite a destination that exists.
            assert_eq!(query(&mut con, &format!("SET m:{i} old")), Value::Okay);
        }
    }
    assert_eq!(
        query(&mut con, "BGSAVE"),
        Value::SimpleString("Background saving started".into())
    );
    // The renames the journal is seen recording: made while the save was open.
    let mut journalled = Vec::new();
    let mut renamed = 0;
    while server.shared.persistence.in_progress() && renamed < PAIRS {
        let before = store.journal().held().records;
        assert_eq!(
            query(&mut con, &format!("RENAME r:{renamed} m:{renamed}")),
            Value::Okay
        );
        if store.journal().held().records > before {
            journalled.push(renamed);
        }
        renamed += 1;
    }
    let persistence = server.shared.persistence.clone();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime to wait on")
        .block_on(persistence.idle());
    assert!(
        !journalled.is_empty(),
        "no rename was made while the journal recorded"
    );
    let dbs = sessiond::store::Databases::new(Clock::system(), 16);
    loader::load(&dir.0.join("dump.sdb"), &dbs).unwrap_or_else(|e| panic!("{e}"));
    let saved = dbs.first();
    let now = saved.now_ms();
    let value = |key: &str| {
        saved.read(key.as_bytes(), now, |node| {
            node.map(|node| match node.value() {
                ValueRef::Str(s) => (
                    String::from_utf8_lossy(s).into_owned(),
                    node.expires_at_ms() != 0,
                ),
                other => panic!("{key}: {}", other.type_name()),
            })
        })
    };
    for i in 0..PAIRS {
        let (from, to) = (value(&format!("r:{i}")), value(&format!("m:{i}")));
        let moved = (None, Some((format!("v{i}"), true)));
        let kept = (
            Some((format!("v{i}"), true)),
            (i % 2 == 1).then(|| ("old".to_owned(), false)),
        );
        assert!(
            (from.clone(), to.clone()) == moved || (from.clone(), to.clone()) == kept,
            "pair {i}: {from:?} {to:?}"
        );
        if journalled.contains(&i) {
            assert_eq!((from, to), moved, "pair {i}, renamed during the save");
        }
    }
    server.shared.set_final_save(false);
}
