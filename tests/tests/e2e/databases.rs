//! Numbered databases through the `redis` crate, in RESP2 and RESP3, against what Redis 7
//! answers: SELECT and its errors, keys and sessions (and the per-user cap) per database,
//! DBSIZE, FLUSHDB against FLUSHALL, INFO keyspace and CLIENT LIST, RESET, MULTI with SELECT
//! inside (atomic across databases on the multi-thread runtime), WATCH per database, a
//! snapshot holding several databases across a restart, and `redis://host:port/N`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use redis::{Connection, ConnectionLike, Value};
use sessiond::Config;
use sessiond_tests::{info_number, TestServer};

use super::daemon::{run_until_exit, Daemon, ScratchDir};
use super::words::{each_protocol, error, query};

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

fn number(con: &mut Connection, line: &str) -> i64 {
    bulk(con, line).and_then(|n| n.parse().ok()).expect(line)
}

fn text(con: &mut Connection, line: &str) -> String {
    redis::FromRedisValue::from_redis_value(query(con, line)).expect("text")
}

#[test]
fn databases_hold_their_own_keys_and_select_refuses_what_redis_refuses() {
    each_protocol(|_server, con| {
        assert_eq!(query(con, "SET k zero"), Value::Okay);
        assert_eq!(query(con, "SELECT 1"), Value::Okay);
        assert_eq!(bulk(con, "GET k"), None);
        assert_eq!(int(con, "EXISTS k"), 0);
        assert_eq!(int(con, "DBSIZE"), 0);
        assert_eq!(query(con, "SET k one PX 100000"), Value::Okay);
        assert_eq!(query(con, "SET other x"), Value::Okay);
        assert_eq!(int(con, "DBSIZE"), 2);
        assert_eq!(bulk(con, "GET k").as_deref(), Some("one"));
        let mut keys: Vec<String> =
            redis::FromRedisValue::from_redis_value(query(con, "KEYS *")).unwrap();
        keys.sort();
        assert_eq!(keys, ["k", "other"]);
        let keyspace = text(con, "INFO keyspace");
        assert!(
            keyspace.contains("db0:keys=1,expires=0,avg_ttl=0"),
            "{keyspace}"
        );
        assert!(
            keyspace.contains("db1:keys=2,expires=1,avg_ttl=0"),
            "{keyspace}"
        );
        assert!(!keyspace.contains("db2:"), "{keyspace}");
        assert!(text(con, "CLIENT INFO").contains(" db=1 "));
        assert_eq!(query(con, "SELECT 0"), Value::Okay);
        assert_eq!(bulk(con, "GET k").as_deref(), Some("zero"));
        assert_eq!(int(con, "DBSIZE"), 1);
        assert_eq!(query(con, "SELECT 15"), Value::Okay);
        for (line, expected) in [
            ("SELECT 16", "ERR DB index is out of range"),
            ("SELECT -1", "ERR DB index is out of range"),
            ("SELECT abc", "ERR value is not an integer or out of range"),
            (
                "SELECT 4294967296",
                "ERR value is not an integer or out of range",
            ),
            (
                "SELECT 1 2",
                "ERR wrong number of arguments for 'select' command",
            ),
        ] {
            assert_eq!(error(con, line), expected, "{line}");
        }
        assert!(
            text(con, "CLIENT INFO").contains(" db=15 "),
            "a refused SELECT stays"
        );
        let databases: std::collections::HashMap<String, String> =
            redis::FromRedisValue::from_redis_value(query(con, "CONFIG GET databases")).unwrap();
        assert_eq!(databases.len(), 1, "{databases:?}");
        assert_eq!(databases["databases"], "16");
        // RESET goes back to database 0.
        assert_eq!(query(con, "SELECT 1"), Value::Okay);
        assert_eq!(query(con, "RESET"), Value::SimpleString("RESET".into()));
        assert_eq!(bulk(con, "GET k").as_deref(), Some("zero"));
    });
}

#[test]
fn flushdb_empties_the_selected_database_and_flushall_every_one() {
    each_protocol(|_server, con| {
        for mode in ["", " SYNC", " ASYNC"] {
            query(con, "SELECT 0");
            query(con, "MSET a 1 b 2");
            query(con, "SELECT 2");
            query(con, "MSET a 1 c 3");
            assert_eq!(query(con, &format!("FLUSHDB{mode}")), Value::Okay);
            assert_eq!(int(con, "DBSIZE"), 0, "FLUSHDB{mode}");
            query(con, "SELECT 0");
            assert_eq!(int(con, "DBSIZE"), 2, "FLUSHDB{mode} left db 0");
            query(con, "SELECT 2");
            query(con, "SET a 1");
            assert_eq!(query(con, &format!("FLUSHALL{mode}")), Value::Okay);
            assert_eq!(int(con, "DBSIZE"), 0);
            query(con, "SELECT 0");
            assert_eq!(int(con, "DBSIZE"), 0, "FLUSHALL{mode} empties db 0 too");
        }
        assert_eq!(error(con, "FLUSHDB LATER"), "ERR syntax error");
    });
}

#[test]
fn sessions_their_index_and_the_per_user_cap_are_per_database() {
    for resp3 in [false, true] {
        let server = TestServer::with_config_and_manual_clock(Config {
            session_max_per_user: 2,
            ..Config::default()
        });
        let mut con = server.connect(resp3);
        let create = |con: &mut Connection| -> String {
            redis::cmd("SESSION.CREATE")
                .arg("USER")
                .arg("ada")
                .query(con)
                .expect("SESSION.CREATE")
        };
        query(&mut con, "SELECT 1");
        let in_one = create(&mut con);
        create(&mut con);
        assert_eq!(int(&mut con, "SESSION.COUNT ada"), 2);
        query(&mut con, "SELECT 0");
        assert_eq!(int(&mut con, "SESSION.COUNT ada"), 0);
        assert_eq!(
            query(&mut con, &format!("SESSION.GET {in_one}")),
            Value::Nil,
            "a session of db 1 is invisible from db 0"
        );
        // The cap counts per database: two here as well, and none of db 1's destroyed.
        let first_here = create(&mut con);
        create(&mut con);
        create(&mut con);
        assert_eq!(int(&mut con, "SESSION.COUNT ada"), 2);
        assert_eq!(int(&mut con, &format!("EXISTS {first_here}")), 0);
        query(&mut con, "SELECT 1");
        assert_eq!(int(&mut con, "SESSION.COUNT ada"), 2);
        assert_eq!(int(&mut con, &format!("EXISTS {in_one}")), 1);
        assert_eq!(int(&mut con, "SESSION.DESTROYALL ada"), 2);
        query(&mut con, "SELECT 0");
        assert_eq!(int(&mut con, "SESSION.COUNT ada"), 2);
    }
}

#[test]
fn move_takes_the_key_and_its_deadline_to_another_database_as_redis_does() {
    each_protocol(|server, con| {
        let used = |server: &TestServer| info_number(&server.info("memory"), "used_memory_dataset");
        assert_eq!(query(con, "SET k v PX 5000"), Value::Okay);
        let before = used(server);
        assert_eq!(int(con, "MOVE k 2"), 1);
        assert_eq!(int(con, "EXISTS k"), 0);
        assert_eq!(used(server), before);
        assert_eq!(int(con, "MOVE k 2"), 0, "no such key");
        query(con, "SET k here");
        assert_eq!(int(con, "MOVE k 2"), 0, "exists there");
        assert_eq!(bulk(con, "GET k").as_deref(), Some("here"));
        query(con, "SELECT 2");
        assert_eq!(bulk(con, "GET k").as_deref(), Some("v"));
        assert_eq!(int(con, "PTTL k"), 5000, "the deadline goes with it");
        for (line, expected) in [
            (
                "MOVE k 2",
                "ERR source and destination objects are the same",
            ),
            ("MOVE k 16", "ERR DB index is out of range"),
            ("MOVE k -1", "ERR DB index is out of range"),
            ("MOVE k x", "ERR value is not an integer or out of range"),
            (
                "MOVE k 4294967296",
                "ERR value is not an integer or out of range",
            ),
            ("MOVE k", "ERR wrong number of arguments for 'move' command"),
        ] {
            assert_eq!(error(con, line), expected, "{line}");
        }
        let id: String = redis::cmd("SESSION.CREATE")
            .arg("USER")
            .arg("ada")
            .query(con)
            .expect("SESSION.CREATE");
        assert_eq!(
            error(con, &format!("MOVE {id} 0")),
            "ERR session keys cannot be moved to another database: a session stays with its \
             user's index"
        );
        assert_eq!(int(con, "SESSION.COUNT ada"), 1);
        // Inside a transaction, both databases' shards are held.
        assert_eq!(query(con, "MULTI"), Value::Okay);
        query(con, "MOVE k 7");
        query(con, "SELECT 7");
        query(con, "GET k");
        assert_eq!(
            query(con, "EXEC"),
            Value::Array(vec![
                Value::Int(1),
                Value::Okay,
                Value::BulkString(b"v".to_vec())
            ])
        );
    });
}

#[test]
fn swapdb_swaps_two_databases_for_every_client_at_once() {
    each_protocol(|server, con| {
        let mut in_one = server.connect(false);
        query(con, "SET k zero");
        let id: String = redis::cmd("SESSION.CREATE")
            .arg("USER")
            .arg("ada")
            .query(con)
            .expect("SESSION.CREATE");
        query(&mut in_one, "SELECT 1");
        query(&mut in_one, "SET k one");
        query(&mut in_one, "SET only-one x");
        // A watcher in database 0 of a key held in either: its EXEC fails.
        assert_eq!(query(con, "WATCH only-one"), Value::Okay);
        assert_eq!(query(&mut in_one, "SWAPDB 0 1"), Value::Okay);
        assert_eq!(query(con, "MULTI"), Value::Okay);
        query(con, "GET k");
        assert_eq!(query(con, "EXEC"), Value::Nil);
        assert_eq!(bulk(con, "GET k").as_deref(), Some("one"));
        assert_eq!(bulk(&mut in_one, "GET k").as_deref(), Some("zero"));
        assert_eq!(int(con, "DBSIZE"), 2);
        assert_eq!(
            int(&mut in_one, "SESSION.COUNT ada"),
            1,
            "sessions go with their db"
        );
        assert_eq!(int(con, "SESSION.COUNT ada"), 0);
        assert_eq!(int(&mut in_one, &format!("EXISTS {id}")), 1);
        let keyspace = text(con, "INFO keyspace");
        assert!(keyspace.contains("db0:keys=2,"), "{keyspace}");
        assert!(keyspace.contains("db1:keys=2,"), "{keyspace}");
        assert_eq!(query(con, "SWAPDB 2 2"), Value::Okay);
        for (line, expected) in [
            ("SWAPDB 0 16", "ERR DB index is out of range"),
            ("SWAPDB -1 0", "ERR DB index is out of range"),
            ("SWAPDB x 1", "ERR invalid first DB index"),
            ("SWAPDB 0 y", "ERR invalid second DB index"),
            ("SWAPDB 0 4294967296", "ERR invalid second DB index"),
            (
                "SWAPDB 0",
                "ERR wrong number of arguments for 'swapdb' command",
            ),
        ] {
            assert_eq!(error(con, line), expected, "{line}");
        }
        // Inside a transaction: the commands after it see the swap.
        assert_eq!(query(con, "MULTI"), Value::Okay);
        query(con, "SWAPDB 0 1");
        query(con, "GET k");
        assert_eq!(
            query(con, "EXEC"),
            Value::Array(vec![Value::Okay, Value::BulkString(b"zero".to_vec())])
        );
    });
}

#[test]
fn a_select_queued_in_multi_moves_the_commands_after_it_and_the_connection() {
    each_protocol(|_server, con| {
        query(con, "SET k zero");
        assert_eq!(query(con, "MULTI"), Value::Okay);
        for line in [
            "GET k",
            "SELECT 3",
            "SET k three",
            "GET k",
            "SELECT 99",
            "DBSIZE",
        ] {
            assert_eq!(
                query(con, line),
                Value::SimpleString("QUEUED".into()),
                "{line}"
            );
        }
        // The reply as sent: `query` would turn the array's error into one error.
        let reply = con
            .req_packed_command(&redis::cmd("EXEC").get_packed_command())
            .expect("EXEC");
        let Value::Array(replies) = reply else {
            panic!("EXEC: {reply:?}")
        };
        assert_eq!(replies[0], Value::BulkString(b"zero".to_vec()));
        assert_eq!(replies[1], Value::Okay);
        assert_eq!(replies[2], Value::Okay);
        assert_eq!(replies[3], Value::BulkString(b"three".to_vec()));
        assert!(
            matches!(&replies[4], Value::ServerError(e) if e.details() == Some("DB index is out of range")),
            "{:?}",
            replies[4]
        );
        assert_eq!(replies[5], Value::Int(1));
        // The connection stays in database 3.
        assert_eq!(bulk(con, "GET k").as_deref(), Some("three"));
        assert!(text(con, "CLIENT INFO").contains(" db=3 "));
    });
}

#[test]
fn watch_follows_the_key_of_its_database_and_flushes_of_it() {
    each_protocol(|server, con| {
        let mut other = server.connect(false);
        let watched_exec = |con: &mut Connection, change: &mut dyn FnMut()| -> Value {
            assert_eq!(query(con, "WATCH k"), Value::Okay);
            change();
            assert_eq!(query(con, "MULTI"), Value::Okay);
            query(con, "SET done 1");
            query(con, "EXEC")
        };
        query(con, "SET k v");
        // The same name in another database is another key; a flush of it too.
        let ran = watched_exec(con, &mut || {
            query(&mut other, "SELECT 1");
            query(&mut other, "SET k changed");
            query(&mut other, "FLUSHDB");
        });
        assert!(matches!(ran, Value::Array(_)), "{ran:?}");
        let aborted = watched_exec(con, &mut || {
            query(&mut other, "SELECT 0");
            query(&mut other, "SET k changed");
        });
        assert_eq!(aborted, Value::Nil);
        let aborted = watched_exec(con, &mut || {
            query(&mut other, "SELECT 5");
            query(&mut other, "FLUSHALL");
        });
        assert_eq!(aborted, Value::Nil, "FLUSHALL touches every database");
        // A key watched in database 1, then SELECT 0 before EXEC: still db 1's key.
        query(con, "SELECT 1");
        query(con, "SET k v");
        assert_eq!(query(con, "WATCH k"), Value::Okay);
        query(con, "SELECT 0");
        query(&mut other, "SELECT 1");
        query(&mut other, "SET k changed");
        assert_eq!(query(con, "MULTI"), Value::Okay);
        query(con, "GET k");
        assert_eq!(query(con, "EXEC"), Value::Nil);
    });
}

#[test]
fn readers_never_see_half_of_a_transfer_across_databases() {
    const TRANSFERS: usize = 1_000;
    const TOTAL: i64 = 1_000_000;
    // With SWAPDB 0 1 in a loop meanwhile too: the sum holds whichever index names which.
    for (resp3, swapping) in [(false, false), (true, false), (false, true)] {
        let server = TestServer::with_config(Config {
            threads: 4,
            ..Config::default()
        });
        let mut writer = server.connect(resp3);
        query(&mut writer, &format!("SET a {TOTAL}"));
        query(&mut writer, "SELECT 1");
        query(&mut writer, "SET a 0");
        query(&mut writer, "SELECT 0");
        let done = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(3));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let mut con = server.connect(resp3);
                let (done, start) = (done.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let mut reads = 0u64;
                    while !done.load(Ordering::Relaxed) {
                        let (_, x, _, y, _): ((), i64, (), i64, ()) = redis::pipe()
                            .atomic()
                            .cmd("SELECT")
                            .arg(0)
                            .get("a")
                            .cmd("SELECT")
                            .arg(1)
                            .get("a")
                            .cmd("SELECT")
                            .arg(0)
                            .query(&mut con)
                            .expect("read");
                        assert_eq!(x + y, TOTAL, "half a transfer seen: {x} + {y}");
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        let swapper = swapping.then(|| {
            let mut con = server.connect(resp3);
            let done = done.clone();
            std::thread::spawn(move || {
                let mut swaps = 0u64;
                while !done.load(Ordering::Relaxed) {
                    assert_eq!(query(&mut con, "SWAPDB 0 1"), Value::Okay);
                    swaps += 1;
                }
                swaps
            })
        });
        start.wait();
        for _ in 0..TRANSFERS {
            let (_, _, _, _): (i64, (), i64, ()) = redis::pipe()
                .atomic()
                .decr("a", 1)
                .cmd("SELECT")
                .arg(1)
                .incr("a", 1)
                .cmd("SELECT")
                .arg(0)
                .query(&mut writer)
                .expect("transfer");
        }
        done.store(true, Ordering::Relaxed);
        for reader in readers {
            assert!(reader.join().expect("reader") > 0);
        }
        let swapped = swapper.map(|swapper| swapper.join().expect("swapper"));
        let zero = number(&mut writer, "GET a");
        query(&mut writer, "SELECT 1");
        let one = number(&mut writer, "GET a");
        assert_eq!(zero + one, TOTAL);
        if swapped.is_none() {
            assert_eq!(one, TRANSFERS as i64);
        }
    }
}

#[test]
fn a_url_with_a_database_selects_it_on_connect() {
    let server = TestServer::start();
    let mut zero = server.connect(false);
    query(&mut zero, "SELECT 3");
    query(&mut zero, "SET k three");
    for protocol in ["", "?protocol=resp3"] {
        let url = format!("redis://{}/3{protocol}", server.addr);
        let client = redis::Client::open(url).expect("url");
        let mut con = client.get_connection().expect("connect");
        assert_eq!(bulk(&mut con, "GET k").as_deref(), Some("three"));
        assert!(text(&mut con, "CLIENT INFO").contains(" db=3 "));
    }
}

#[test]
fn a_snapshot_keeps_every_database_across_a_restart() {
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    // The snapshot's own test: without the append-only log, which would load in its place.
    let args = [
        "--port",
        "0",
        "--data-dir",
        &data,
        "--snapshot-interval",
        "0",
        "--appendonly",
        "no",
    ];
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    let mut sessions = Vec::new();
    for db in [0, 3, 15] {
        query(&mut con, &format!("SELECT {db}"));
        query(&mut con, &format!("SET k in-{db}"));
        query(&mut con, &format!("SET only-{db} x EX 1000"));
        let id: String = redis::cmd("SESSION.CREATE")
            .arg("USER")
            .arg("ada")
            .query(&mut con)
            .expect("SESSION.CREATE");
        sessions.push((db, id));
    }
    daemon.stop();

    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(true);
    for (db, id) in &sessions {
        query(&mut con, &format!("SELECT {db}"));
        assert_eq!(bulk(&mut con, "GET k"), Some(format!("in-{db}")));
        assert_eq!(int(&mut con, "DBSIZE"), 3, "db {db}");
        assert!(int(&mut con, &format!("TTL only-{db}")) > 0);
        assert_eq!(int(&mut con, &format!("EXISTS {id}")), 1);
        assert_eq!(
            int(&mut con, "SESSION.COUNT ada"),
            1,
            "db {db}: its index rebuilt"
        );
    }
    query(&mut con, "SELECT 1");
    assert_eq!(int(&mut con, "DBSIZE"), 0);
    // What a SWAPDB made is what the next snapshot holds, by index.
    query(&mut con, "SWAPDB 1 3");
    daemon.stop();
    let mut daemon = Daemon::start_at(&dir.0, &args, &[]);
    let mut con = daemon.client(false);
    assert_eq!(bulk(&mut con, "GET k").as_deref(), Some("in-0"));
    query(&mut con, "SELECT 1");
    assert_eq!(bulk(&mut con, "GET k").as_deref(), Some("in-3"));
    assert_eq!(int(&mut con, "SESSION.COUNT ada"), 1);
    query(&mut con, "SELECT 3");
    assert_eq!(int(&mut con, "DBSIZE"), 0);
    daemon.stop();

    // Fewer databases than the file holds: refused, not dropped.
    let mut fewer = args.to_vec();
    fewer.extend(["--databases", "4"]);
    let (status, stderr) = run_until_exit(&dir.0, &fewer, &[]);
    assert!(!status.success());
    assert!(
        stderr.contains("a record of database 15, but the server has 4 databases"),
        "{stderr}"
    );
}

/// The strings of an array (or set) reply, sorted.
fn words(value: &Value) -> Vec<String> {
    let items = match value {
        Value::Array(items) | Value::Set(items) => items,
        other => panic!("{other:?}"),
    };
    let mut words: Vec<String> = items
        .iter()
        .map(|item| match item {
            Value::SimpleString(s) => s.clone(),
            Value::BulkString(b) => String::from_utf8(b.clone()).expect("utf-8"),
            other => panic!("{other:?}"),
        })
        .collect();
    words.sort();
    words
}

#[test]
fn command_info_describes_the_database_commands_as_redis_7() {
    each_protocol(|_server, con| {
        type Expected = (
            &'static str,
            [i64; 4],
            &'static [&'static str],
            &'static [&'static str],
            usize,
        );
        let expected: [Expected; 6] = [
            (
                "select",
                [2, 0, 0, 0],
                &["fast", "loading", "stale"],
                &["@connection", "@fast"],
                0,
            ),
            (
                "dbsize",
                [1, 0, 0, 0],
                &["fast", "readonly"],
                &["@fast", "@keyspace", "@read"],
                0,
            ),
            (
                "flushdb",
                [-1, 0, 0, 0],
                &["write"],
                &["@dangerous", "@keyspace", "@slow", "@write"],
                0,
            ),
            (
                "flushall",
                [-1, 0, 0, 0],
                &["write"],
                &["@dangerous", "@keyspace", "@slow", "@write"],
                0,
            ),
            (
                "move",
                [3, 1, 1, 1],
                &["fast", "write"],
                &["@fast", "@keyspace", "@write"],
                1,
            ),
            (
                "swapdb",
                [3, 0, 0, 0],
                &["fast", "write"],
                &["@dangerous", "@fast", "@keyspace", "@write"],
                0,
            ),
        ];
        for (name, numbers, flags, categories, specs) in expected {
            let info = query(con, &format!("COMMAND INFO {name}"));
            let Value::Array(commands) = &info else {
                panic!("{info:?}")
            };
            let Value::Array(fields) = &commands[0] else {
                panic!("{info:?}")
            };
            assert_eq!(fields[0], Value::BulkString(name.into()));
            let ints: Vec<i64> = [1, 3, 4, 5]
                .iter()
                .map(|&at| match fields[at] {
                    Value::Int(n) => n,
                    ref other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(ints, numbers, "{name}");
            assert_eq!(words(&fields[2]), flags, "{name}");
            assert_eq!(words(&fields[6]), categories, "{name}");
            let found = match &fields[8] {
                Value::Array(specs) | Value::Set(specs) => specs.len(),
                other => panic!("{other:?}"),
            };
            assert_eq!(found, specs, "{name}");
        }
        let specs = format!("{:?}", query(con, "COMMAND INFO move"));
        for word in ["RW", "access", "update"] {
            assert!(specs.contains(&format!("\"{word}\"")), "{word} in {specs}");
        }
    });
}
