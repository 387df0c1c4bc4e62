//! MULTI, EXEC, DISCARD, WATCH and UNWATCH through the `redis` crate, in RESP2 and RESP3,
//! against what Redis 7 answers: queuing, queue-time errors (EXECABORT), run-time errors left
//! in the reply without rollback, WATCH failing EXEC after any change of a watched key (write,
//! deletion, rename, expiry, flush, session command), the queue's bound; and EXEC atomic and
//! isolated across shards on the multi-thread runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use redis::{Connection, ConnectionLike, Value};
use sessiond::{Config, RawConfig};
use sessiond_protocol::{ClientCodec, Frame, Limits};
use sessiond_tests::{error_text, TestServer};

use super::daemon::ScratchDir;
use super::words::{each_protocol, error, forward, query};
use sessiond_tests::rss_kib;

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

fn queued(con: &mut Connection, line: &str) {
    assert_eq!(
        query(con, line),
        Value::SimpleString("QUEUED".into()),
        "{line}"
    );
}

/// EXEC's reply: the array of replies, or `None` for the null array of a failed WATCH.
fn exec(con: &mut Connection) -> Option<Vec<Value>> {
    match query(con, "EXEC") {
        Value::Array(replies) => Some(replies),
        Value::Nil => None,
        other => panic!("EXEC: {other:?}"),
    }
}

fn bulk(value: &str) -> Value {
    Value::BulkString(value.as_bytes().to_vec())
}

/// A multi-thread server (four workers), whatever the machine's cores.
fn multi_thread() -> TestServer {
    TestServer::with_config(Config {
        threads: 4,
        ..Config::default()
    })
}

#[test]
fn multi_queues_and_exec_answers_every_reply_in_order() {
    each_protocol(|_server, con| {
        assert_eq!(query(con, "MULTI"), Value::Okay);
        queued(con, "SET a 1");
        queued(con, "INCRBY a 41");
        queued(con, "GET a");
        queued(con, "GET missing");
        queued(con, "PING");
        assert_eq!(
            exec(con),
            Some(vec![
                Value::Okay,
                Value::Int(42),
                bulk("42"),
                Value::Nil,
                Value::SimpleString("PONG".into()),
            ])
        );
        // An empty transaction.
        assert_eq!(query(con, "MULTI"), Value::Okay);
        assert_eq!(exec(con), Some(vec![]));
        // The Go scs save: MULTI; SET; PEXPIREAT; EXEC.
        let deadline = sessiond_tests::CLOCK_START_MS + 60_000;
        assert_eq!(query(con, "MULTI"), Value::Okay);
        queued(con, "SET scs:session:abc payload");
        queued(con, &format!("PEXPIREAT scs:session:abc {deadline}"));
        assert_eq!(exec(con), Some(vec![Value::Okay, Value::Int(1)]));
        assert_eq!(query(con, "PTTL scs:session:abc"), Value::Int(60_000));
    });
}

#[test]
fn transaction_errors_use_redis_wording() {
    each_protocol(|_server, con| {
        assert_eq!(error(con, "EXEC"), "ERR EXEC without MULTI");
        assert_eq!(error(con, "DISCARD"), "ERR DISCARD without MULTI");
        assert_eq!(
            error(con, "MULTI extra"),
            "ERR wrong number of arguments for 'multi' command"
        );
        assert_eq!(
            error(con, "WATCH"),
            "ERR wrong number of arguments for 'watch' command"
        );
        assert_eq!(query(con, "MULTI"), Value::Okay);
        // Neither a nested MULTI nor WATCH inside MULTI aborts the transaction.
        assert_eq!(error(con, "MULTI"), "ERR MULTI calls can not be nested");
        assert_eq!(
            error(con, "WATCH a"),
            "ERR WATCH inside MULTI is not allowed"
        );
        queued(con, "SET a 1");
        assert_eq!(exec(con), Some(vec![Value::Okay]));
        // DISCARD forgets the queue.
        assert_eq!(query(con, "MULTI"), Value::Okay);
        queued(con, "SET a 2");
        assert_eq!(query(con, "DISCARD"), Value::Okay);
        assert_eq!(query(con, "GET a"), bulk("1"));
        assert_eq!(error(con, "EXEC"), "ERR EXEC without MULTI");
    });
}

#[test]
fn queue_time_errors_abort_the_whole_transaction() {
    each_protocol(|_server, con| {
        for refused in [
            (
                "NOSUCHCOMMAND x",
                "ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'x' ",
            ),
            ("GET", "ERR wrong number of arguments for 'get' command"),
            // The commands that run at once inside MULTI are flagged on arity errors too.
            ("WATCH", "ERR wrong number of arguments for 'watch' command"),
            (
                "MULTI x",
                "ERR wrong number of arguments for 'multi' command",
            ),
            (
                "DISCARD x",
                "ERR wrong number of arguments for 'discard' command",
            ),
            ("SAVE", "ERR Command not allowed inside a transaction"),
            ("SHUTDOWN", "ERR Command not allowed inside a transaction"),
            (
                "SESSION.DESTROYALL u",
                "ERR Command not allowed inside a transaction",
            ),
        ] {
            assert_eq!(query(con, "MULTI"), Value::Okay);
            queued(con, "SET a queued-before");
            assert_eq!(error(con, refused.0), refused.1);
            queued(con, "SET b queued-after");
            assert_eq!(error(con, "EXEC"), EXECABORT, "{}", refused.0);
            assert_eq!(query(con, "EXISTS a b"), Value::Int(0), "nothing ran");
            assert_eq!(error(con, "EXEC"), "ERR EXEC without MULTI");
        }
    });
}

#[test]
fn an_exec_of_the_wrong_arity_discards_the_transaction_and_the_watches() {
    each_protocol(|_server, con| {
        assert_eq!(query(con, "WATCH w"), Value::Okay);
        assert_eq!(query(con, "MULTI"), Value::Okay);
        queued(con, "SET a 1");
        assert_eq!(
            error(con, "EXEC extra"),
            "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' \
             command"
        );
        assert_eq!(error(con, "EXEC"), "ERR EXEC without MULTI");
        assert_eq!(query(con, "EXISTS a"), Value::Int(0), "nothing ran");
        // w is no longer watched: changing it does not fail the next transaction.
        assert_eq!(query(con, "SET w changed"), Value::Okay);
        assert_eq!(query(con, "MULTI"), Value::Okay);
        queued(con, "SET a 2");
        assert_eq!(exec(con), Some(vec![Value::Okay]));
    });
}

/// As Redis's rejectCommand: an EXEC refused before it runs answers EXECABORT with the
/// reason, outside MULTI too, and before authentication.
#[test]
fn an_exec_refused_before_it_runs_answers_execabort_with_the_reason() {
    each_protocol(|_server, con| {
        assert_eq!(
            error(con, "EXEC extra"),
            "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' \
             command"
        );
    });
    let server = TestServer::with_config(Config {
        requirepass: Some(sessiond::auth::Secret::new("pw".into())),
        ..Config::default()
    });
    let mut raw = server.raw();
    raw.command(&[b"EXEC"]);
    assert_eq!(
        error_text(&raw.reply()),
        "EXECABORT Transaction discarded because of: NOAUTH Authentication required."
    );
    raw.command(&[b"DISCARD"]);
    assert_eq!(error_text(&raw.reply()), "NOAUTH Authentication required.");
}

#[test]
fn run_time_errors_stay_in_the_reply_and_nothing_is_rolled_back() {
    each_protocol(|_server, con| {
        assert_eq!(query(con, "MULTI"), Value::Okay);
        queued(con, "SET a text");
        queued(con, "INCR a");
        queued(con, "SET b 1 BADOPTION");
        queued(con, "HSET a f v");
        queued(con, "SET c done");
        // The reply as sent: `query` would turn the array's errors into one error.
        let reply = con
            .req_packed_command(&redis::cmd("EXEC").get_packed_command())
            .expect("EXEC");
        let Value::Array(replies) = reply else {
            panic!("EXEC: {reply:?}")
        };
        assert_eq!(replies.len(), 5);
        assert_eq!(replies[0], Value::Okay);
        let errors: Vec<String> = [&replies[1], &replies[2], &replies[3]]
            .iter()
            .map(|v| match v {
                Value::ServerError(e) => {
                    format!("{} {}", e.code(), e.details().unwrap_or_default())
                }
                other => panic!("expected an error, got {other:?}"),
            })
            .collect();
        assert_eq!(
            errors,
            [
                "ERR value is not an integer or out of range",
                "ERR syntax error",
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ]
        );
        assert_eq!(replies[4], Value::Okay);
        assert_eq!(query(con, "GET a"), bulk("text"));
        assert_eq!(query(con, "GET c"), bulk("done"));
        assert_eq!(query(con, "EXISTS b"), Value::Int(0));
    });
}

#[test]
fn an_atomic_pipeline_of_redis_rs_runs_as_one_transaction() {
    each_protocol(|_server, con| {
        let (set, incr, get): (String, i64, String) = redis::pipe()
            .atomic()
            .set("k", 10)
            .incr("k", 5)
            .get("k")
            .query(con)
            .expect("atomic pipeline");
        assert_eq!((set.as_str(), incr, get.as_str()), ("OK", 15, "15"));
    });
}

#[test]
fn reset_and_quit_inside_multi_behave_as_in_redis() {
    each_protocol(|server, con| {
        assert_eq!(query(con, "WATCH w"), Value::Okay);
        assert_eq!(query(con, "MULTI"), Value::Okay);
        queued(con, "SET a 1");
        assert_eq!(query(con, "RESET"), Value::SimpleString("RESET".into()));
        assert_eq!(error(con, "EXEC"), "ERR EXEC without MULTI");
        assert_eq!(query(con, "EXISTS a"), Value::Int(0));
        assert_eq!(server.shared.dbs.first().watching(), 0, "RESET unwatches");

        let mut raw = server.raw();
        raw.command(&[b"MULTI"]);
        raw.command(&[b"SET", b"q", b"1"]);
        raw.command(&[b"QUIT"]);
        assert_eq!(raw.reply(), sessiond_protocol::Frame::simple("OK"));
        assert_eq!(raw.reply(), sessiond_protocol::Frame::simple("QUEUED"));
        assert_eq!(raw.reply(), sessiond_protocol::Frame::simple("OK"));
        assert!(raw.closed());
        assert_eq!(query(con, "EXISTS q"), Value::Int(0));
    });
}

#[test]
fn exec_fails_with_a_null_array_after_any_change_to_a_watched_key() {
    each_protocol(|server, con| {
        let mut other = server.connect(false);
        let changes: &[(&str, &str)] = &[
            ("SET k v", "SET k changed"),
            ("SET k v", "DEL k"),
            ("SET k v", "RENAME k elsewhere"),
            ("SET src v", "RENAME src k"),
            ("SET k v", "EXPIRE k 100"),
            ("SET k v", "FLUSHALL"),
            ("SET k v", "FLUSHALL ASYNC"),
            ("SET k 1", "INCR k"),
            ("DEL k", "SET k new"),
        ];
        for (setup, change) in changes {
            query(&mut other, "FLUSHALL");
            query(&mut other, setup);
            assert_eq!(query(con, "WATCH k"), Value::Okay);
            query(&mut other, change);
            assert_eq!(query(con, "MULTI"), Value::Okay);
            queued(con, "SET k mine");
            assert_eq!(exec(con), None, "{change}");
            assert_ne!(
                query(&mut other, "GET k"),
                bulk("mine"),
                "{change}: not run"
            );
            assert_eq!(server.shared.dbs.first().watching(), 0, "EXEC unwatches");
        }
        // A write to another key, or to the key before WATCH, changes nothing.
        query(&mut other, "SET k before");
        assert_eq!(query(con, "WATCH k"), Value::Okay);
        query(&mut other, "SET unrelated 1");
        assert_eq!(query(con, "MULTI"), Value::Okay);
        queued(con, "SET k mine");
        assert_eq!(exec(con), Some(vec![Value::Okay]));
        // UNWATCH and DISCARD forget the watch.
        assert_eq!(query(con, "WATCH k"), Value::Okay);
        assert_eq!(query(con, "UNWATCH"), Value::Okay);
        query(&mut other, "SET k theirs");
        assert_eq!(query(con, "MULTI"), Value::Okay);
        queued(con, "GET k");
        assert_eq!(exec(con), Some(vec![bulk("theirs")]));
        assert_eq!(query(con, "WATCH k"), Value::Okay);
        assert_eq!(query(con, "MULTI"), Value::Okay);
        assert_eq!(query(con, "DISCARD"), Value::Okay);
        query(&mut other, "SET k again");
        assert_eq!(query(con, "MULTI"), Value::Okay);
        assert_eq!(exec(con), Some(vec![]));
        assert_eq!(server.shared.dbs.first().watching(), 0);
    });
}

#[test]
fn a_watched_key_that_expires_fails_exec_one_already_expired_does_not() {
    each_protocol(|server, con| {
        // The deadline passes after WATCH: nobody reclaimed the key yet, EXEC still fails.
        assert_eq!(query(con, "SET k v PX 100"), Value::Okay);
        assert_eq!(query(con, "WATCH k"), Value::Okay);
        forward(server, 200);
        assert_eq!(query(con, "MULTI"), Value::Okay);
        queued(con, "SET other 1");
        assert_eq!(exec(con), None);
        assert_eq!(query(con, "EXISTS other"), Value::Int(0));

        // Already past its deadline when watched: its reclamation is no change.
        assert_eq!(query(con, "SET j v PX 100"), Value::Okay);
        forward(server, 200);
        assert_eq!(query(con, "WATCH j"), Value::Okay);
        server.shared.dbs.first().reclaim_expired();
        assert_eq!(query(con, "MULTI"), Value::Okay);
        queued(con, "SET other 1");
        assert_eq!(exec(con), Some(vec![Value::Okay]));
    });
}

#[test]
fn session_commands_on_a_watched_session_fail_exec() {
    each_protocol(|server, con| {
        let mut other = server.connect(false);
        for change in [
            "SESSION.SET {id} f v",
            "SESSION.DESTROY {id}",
            "SESSION.TOUCH {id}",
        ] {
            let id = match query(&mut other, "SESSION.CREATE DATA a 1") {
                Value::BulkString(id) => String::from_utf8(id).expect("utf-8"),
                other => panic!("{other:?}"),
            };
            assert_eq!(query(con, &format!("WATCH {id}")), Value::Okay);
            query(&mut other, &change.replace("{id}", &id));
            assert_eq!(query(con, "MULTI"), Value::Okay);
            queued(con, "SET x 1");
            assert_eq!(exec(con), None, "{change}");
        }
    });
}

#[test]
fn clients_racing_with_watch_lose_no_increment() {
    const CLIENTS: usize = 8;
    const INCREMENTS: usize = 200;
    for resp3 in [false, true] {
        let server = multi_thread();
        let start = Arc::new(Barrier::new(CLIENTS));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let mut con = server.connect(resp3);
                let start = start.clone();
                std::thread::spawn(move || {
                    start.wait();
                    let mut retries = 0u64;
                    for _ in 0..INCREMENTS {
                        loop {
                            let () = redis::cmd("WATCH").arg("counter").query(&mut con).unwrap();
                            let n: Option<i64> =
                                redis::cmd("GET").arg("counter").query(&mut con).unwrap();
                            let committed: Option<(String,)> = redis::pipe()
                                .atomic()
                                .set("counter", n.unwrap_or(0) + 1)
                                .query(&mut con)
                                .unwrap();
                            if committed.is_some() {
                                break;
                            }
                            retries += 1;
                        }
                    }
                    retries
                })
            })
            .collect();
        let retries: u64 = clients.into_iter().map(|c| c.join().expect("client")).sum();
        let mut con = server.connect(resp3);
        assert_eq!(
            query(&mut con, "GET counter"),
            bulk(&(CLIENTS * INCREMENTS).to_string()),
            "retries: {retries}"
        );
        assert_eq!(server.shared.dbs.first().watching(), 0);
    }
}

/// Two keys in different shards (found through the store's own hashing).
fn keys_in_two_shards(server: &TestServer) -> (String, String) {
    let store = &server.shared.dbs.first();
    let a = "account:a".to_owned();
    let b = (0..)
        .map(|i| format!("account:b{i}"))
        .find(|b| store.shard_of_key(b.as_bytes()) != store.shard_of_key(a.as_bytes()))
        .expect("another shard");
    (a, b)
}

#[test]
fn readers_never_see_half_of_a_transfer_across_shards() {
    const TRANSFERS: usize = 2_000;
    const TOTAL: i64 = 1_000_000;
    for resp3 in [false, true] {
        let server = multi_thread();
        let (a, b) = keys_in_two_shards(&server);
        let mut writer = server.connect(resp3);
        query(&mut writer, &format!("MSET {a} {TOTAL} {b} 0"));
        let done = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(3));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let mut con = server.connect(resp3);
                let (a, b, done, start) = (a.clone(), b.clone(), done.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let mut reads = 0u64;
                    while !done.load(Ordering::Relaxed) {
                        let (x, y): (i64, i64) = redis::pipe()
                            .atomic()
                            .get(&a)
                            .get(&b)
                            .query(&mut con)
                            .expect("read");
                        assert_eq!(x + y, TOTAL, "half a transfer seen: {x} + {y}");
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        start.wait();
        for _ in 0..TRANSFERS {
            let (_, _): (i64, i64) = redis::pipe()
                .atomic()
                .decr(&a, 1)
                .incr(&b, 1)
                .query(&mut writer)
                .expect("transfer");
        }
        done.store(true, Ordering::Relaxed);
        for reader in readers {
            assert!(reader.join().expect("reader") > 0);
        }
        let (x, y): (i64, i64) = redis::cmd("MGET")
            .arg(&a)
            .arg(&b)
            .query(&mut writer)
            .unwrap();
        assert_eq!((x, y), (TOTAL - TRANSFERS as i64, TRANSFERS as i64));
    }
}

#[test]
fn a_transaction_without_declared_keys_holds_the_whole_keyspace() {
    each_protocol(|_server, con| {
        query(con, "MSET a 1 b 2");
        assert_eq!(query(con, "MULTI"), Value::Okay);
        queued(con, "DBSIZE");
        queued(con, "KEYS *");
        queued(con, "FLUSHALL");
        queued(con, "DBSIZE");
        queued(con, "SET c 3");
        queued(con, "INFO keyspace");
        let replies = exec(con).expect("ran");
        assert_eq!(replies[0], Value::Int(2));
        assert_eq!(replies[2], Value::Okay);
        assert_eq!(replies[3], Value::Int(0));
        assert_eq!(replies[4], Value::Okay);
        assert_eq!(query(con, "DBSIZE"), Value::Int(1));
    });
}

#[test]
fn the_queue_and_the_watched_keys_are_bounded_by_the_query_buffer_limit() {
    let limits = Limits {
        max_query_buffer: 1024 * 1024,
        max_bulk_len: 512 * 1024,
        ..Limits::default()
    };
    let server = TestServer::with_config(Config {
        limits,
        ..Config::default()
    });
    let mut con = server.client();
    let value = "v".repeat(10_000);
    assert_eq!(query(&mut con, "MULTI"), Value::Okay);
    let mut refused = None;
    for i in 0..300 {
        match redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(&value)
            .query::<Value>(&mut con)
        {
            Ok(reply) => assert_eq!(reply, Value::SimpleString("QUEUED".into())),
            Err(e) => {
                refused.get_or_insert((i, super::words::error_line(&e)));
            }
        }
    }
    let (at, refusal) = refused.expect("the queue has a bound");
    assert_eq!(
        refusal,
        "ERR the transaction's queued commands exceed 'client-query-buffer-limit'"
    );
    assert!(
        (90..=105).contains(&at),
        "refused at command {at}: ~1 MB of 10 kB commands"
    );
    assert_eq!(error(&mut con, "EXEC"), EXECABORT);
    assert_eq!(query(&mut con, "DBSIZE"), Value::Int(0));

    // Watched keys: the same budget, over several WATCH commands (each fits the buffer).
    let watch = |from: usize| {
        let mut watch = redis::cmd("WATCH");
        for i in from..from + 50 {
            watch.arg(format!("{i:0>10000}"));
        }
        watch
    };
    for from in [0, 50] {
        assert_eq!(
            watch(from).query::<Value>(&mut con).expect("WATCH"),
            Value::Okay
        );
    }
    let refusal = watch(100).query::<Value>(&mut con).expect_err("bounded");
    assert_eq!(
        super::words::error_line(&refusal),
        "ERR the watched keys exceed 'client-query-buffer-limit'"
    );
    assert!(server.shared.dbs.first().watching() < 110);
    assert_eq!(query(&mut con, "UNWATCH"), Value::Okay);
    assert_eq!(server.shared.dbs.first().watching(), 0);
}

/// The real binary with a 4 MiB query-buffer bound (which the queue and the watched keys count
/// against) and 1 MiB bulks, for the tests that measure its resident set.
fn small_buffer_daemon() -> super::daemon::Daemon {
    super::daemon::Daemon::start(
        &[
            "--port",
            "0",
            "--no-persistence",
            "--client-query-buffer-limit",
            "4mb",
            "--proto-max-bulk-len",
            "1mb",
        ],
        &[],
    )
}

#[test]
fn queuing_cannot_grow_the_real_servers_memory_past_the_bound() {
    let daemon = small_buffer_daemon();
    let mut raw = sessiond_tests::RawClient::connect(daemon.addr);
    raw.command(&[b"MULTI"]);
    assert_eq!(raw.reply(), Frame::simple("OK"));
    let before = rss_kib(daemon.pid());
    // 64 MiB offered to the queue, 64 KiB a command, replies read batch by batch.
    let value = vec![b'v'; 64 * 1024];
    let (mut queued, mut refused) = (0, 0);
    for batch in 0..32 {
        for i in 0..32 {
            let key = format!("k{batch}:{i}");
            raw.command(&[b"SET", key.as_bytes(), &value]);
        }
        for _ in 0..32 {
            match raw.reply() {
                Frame::Simple(s) if &s[..] == b"QUEUED" => queued += 1,
                Frame::Error(_) => refused += 1,
                other => panic!("{other:?}"),
            }
        }
    }
    let after = rss_kib(daemon.pid());
    assert_eq!(refused, 1, "refused once, then no longer held");
    assert!(queued > 1000);
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB with 64 MiB queued under a 4 MiB bound"
    );
    raw.command(&[b"EXEC"]);
    assert_eq!(raw.reply(), Frame::error(EXECABORT));
}

#[test]
fn a_client_that_disconnects_frees_what_it_watched() {
    let server = TestServer::start();
    let mut con = server.client();
    let mut watch = redis::cmd("WATCH");
    for i in 0..10_000 {
        watch.arg(format!("key:{i}"));
    }
    let () = watch.query(&mut con).expect("WATCH");
    assert_eq!(server.shared.dbs.first().watching(), 10_000);
    drop(con);
    // The server notices the close on its own time: wait for it (bounded), never sleep a guess.
    let deadline = std::time::Instant::now() + sessiond_tests::IO_TIMEOUT;
    while server.shared.dbs.first().watching() != 0 {
        assert!(std::time::Instant::now() < deadline, "watches leaked");
        std::thread::yield_now();
    }
}

#[test]
fn command_info_describes_the_transaction_commands_as_redis_7() {
    each_protocol(|_server, con| {
        let info = format!(
            "{:?}",
            query(con, "COMMAND INFO multi exec discard watch unwatch")
        );
        for word in [
            "multi",
            "exec",
            "discard",
            "watch",
            "unwatch",
            "noscript",
            "loading",
            "stale",
            "allow_busy",
            "skip_slowlog",
            "@transaction",
            "RO",
            "lastkey",
        ] {
            assert!(info.contains(&format!("\"{word}\"")), "{word} in {info}");
        }
        let Value::Array(watch) = query(con, "COMMAND INFO watch") else {
            panic!("COMMAND INFO")
        };
        let text = format!("{:?}", watch[0]);
        let Value::Array(fields) = &watch[0] else {
            panic!("{text}")
        };
        assert_eq!(fields[1], Value::Int(-2), "{text}");
        assert_eq!(
            &fields[3..6],
            &[Value::Int(1), Value::Int(-1), Value::Int(1)],
            "{text}"
        );
        // One key spec: from the first argument to the last.
        let lastkey = text.find("lastkey").expect("a range key spec");
        let after: String = text[lastkey..].chars().take(32).collect();
        assert!(after.contains("int(-1)"), "{text}");
    });
}

/// The configuration of a server with a user limited to `cache:*`.
fn with_restricted_user() -> TestServer {
    let dir = ScratchDir::new();
    let toml = format!(
        r#"
        [[user]]
        name = "cache"
        password-sha256 = "{}"
        keys = ["cache:*"]
        categories = ["read", "write"]
        "#,
        sessiond::auth::password_sha256("pw")
    );
    let file = dir.file("sessiond.toml", &toml);
    let raw = RawConfig::from_file(&file).expect("a valid file");
    TestServer::with_config(Config {
        persistence: None,
        ..raw.validate().expect("valid users")
    })
}

#[test]
fn a_refused_permission_while_queuing_aborts_the_transaction() {
    let server = with_restricted_user();
    for resp3 in [false, true] {
        let protocol = if resp3 { "?protocol=resp3" } else { "" };
        let mut con = redis::Client::open(format!("redis://cache:pw@{}/{protocol}", server.addr))
            .expect("url")
            .get_connection()
            .expect("log in");
        assert_eq!(
            error(&mut con, "WATCH other:key"),
            "NOPERM No permissions to access a key"
        );
        assert_eq!(query(&mut con, "MULTI"), Value::Okay);
        queued(&mut con, "SET cache:a 1");
        assert_eq!(
            error(&mut con, "SET other:b 1"),
            "NOPERM No permissions to access a key"
        );
        assert_eq!(
            error(&mut con, "FLUSHALL"),
            "NOPERM User cache has no permissions to run the 'flushall' command"
        );
        assert_eq!(error(&mut con, "EXEC"), EXECABORT);
        assert_eq!(query(&mut con, "EXISTS cache:a"), Value::Int(0));
    }
}

#[test]
fn queued_auth_commands_cannot_get_around_max_auth_failures() {
    use sessiond::auth::Secret;
    const PASSWORD: &str = "the right one";
    let server = TestServer::with_config(Config {
        requirepass: Some(Secret::new(PASSWORD.into())),
        max_auth_failures: 3,
        ..Config::default()
    });
    let stats = &server.shared.stats;
    let wrongpass = "WRONGPASS invalid username-password pair or user is disabled.";
    let login: [&[&[u8]]; 2] = [
        &[b"AUTH", PASSWORD.as_bytes()],
        &[b"HELLO", b"3", b"AUTH", b"default", PASSWORD.as_bytes()],
    ];
    for (round, login) in login.into_iter().enumerate() {
        let mut raw = server.raw();
        raw.command(login);
        assert!(!matches!(raw.reply(), Frame::Error(_)), "logged in");
        raw.command(&[b"MULTI"]);
        assert_eq!(raw.reply(), Frame::ok());
        for guess in 0..10 {
            let guess = format!("guess{guess}");
            if guess.ends_with('9') {
                raw.command(&[b"HELLO", b"3", b"AUTH", b"default", guess.as_bytes()]);
            } else {
                raw.command(&[b"AUTH", guess.as_bytes()]);
            }
            assert_eq!(raw.reply(), Frame::simple("QUEUED"));
        }
        raw.command(&[b"EXEC"]);
        let Frame::Array(replies) = raw.reply() else {
            panic!("EXEC answers its array");
        };
        assert_eq!(replies.len(), 10);
        assert!(replies.iter().all(|r| error_text(r) == wrongpass));
        assert!(
            raw.closed(),
            "closed after EXEC's reply, as after a plain AUTH"
        );
        let round = round as u64 + 1;
        assert_eq!(
            stats.auth_failures.load(Ordering::Relaxed),
            3 * round,
            "checked"
        );
        assert_eq!(
            stats.auth_failure_disconnections.load(Ordering::Relaxed),
            round
        );
    }
}

#[test]
fn a_reply_over_the_output_limit_still_runs_the_whole_transaction_then_closes() {
    let mut config = Config::default();
    config.output_limits.normal = sessiond::output_limit::ClassLimit {
        hard_bytes: 16 * 1024,
        soft_bytes: 0,
        soft_seconds: 0,
    };
    let server = TestServer::with_config(config);
    let mut con = server.client();
    let mut mset = redis::cmd("MSET");
    for i in 0..3000 {
        mset.arg(format!("key:{i:05}")).arg(i);
    }
    let _: () = mset.query(&mut con).expect("MSET");
    let closed = || {
        server
            .shared
            .stats
            .client_output_buffer_limit_disconnections
            .load(Ordering::Relaxed)
    };
    for (round, hello) in [&b"2"[..], b"3"].into_iter().enumerate() {
        let mut raw = server.raw();
        raw.command(&[b"HELLO", hello]);
        assert!(!matches!(raw.reply(), Frame::Error(_)));
        raw.command(&[b"MULTI"]);
        assert_eq!(raw.reply(), Frame::ok());
        // ~45 kB of keys, over the 16 kB limit, then a write and another read.
        for args in [
            &[&b"KEYS"[..], b"*"][..],
            &[b"SET", b"a", hello],
            &[b"INCR", b"n"],
        ] {
            raw.command(args);
            assert_eq!(raw.reply(), Frame::simple("QUEUED"));
        }
        raw.command(&[b"EXEC"]);
        assert_eq!(raw.read_frame(), None, "closed without EXEC's reply");
        assert_eq!(closed(), round as u64 + 1, "counted once");
        // All or none: the commands after the one over the limit ran.
        assert_eq!(
            query(&mut con, "GET a"),
            bulk(if round == 0 { "2" } else { "3" })
        );
        assert_eq!(query(&mut con, "GET n"), bulk(&(round + 1).to_string()));
    }
}

#[test]
fn small_watched_keys_and_queued_arguments_do_not_pin_large_read_buffers() {
    let daemon = small_buffer_daemon();
    let mut raw = sessiond_tests::RawClient::connect(daemon.addr);
    let big = vec![b'x'; 1000 * 1024];
    // Each round: a ~1 MB argument the server drops at once (ECHO's, or a WATCH refused inside
    // MULTI), and in the same write a small one it keeps (a watched key, a queued argument):
    // slices of the read buffer would keep the whole 1 MB of each round alive. The RSS the
    // rounds add, in KiB.
    let rounds =
        |raw: &mut sessiond_tests::RawClient, first: &[u8], keep: &[u8], tail: &[&[u8]]| {
            let before = rss_kib(daemon.pid());
            for round in 0..48 {
                let mut input = bytes::BytesMut::new();
                ClientCodec::encode_command(&[first, &big], &mut input);
                let key = format!("key:{round}");
                let kept: Vec<&[u8]> = [keep, key.as_bytes()]
                    .into_iter()
                    .chain(tail.iter().copied())
                    .collect();
                ClientCodec::encode_command(&kept, &mut input);
                raw.send(&input);
                let _ = raw.reply();
                let kept = raw.reply();
                assert!(!matches!(kept, Frame::Error(_)), "{kept:?}");
            }
            rss_kib(daemon.pid()).saturating_sub(before)
        };
    // The allocator keeps some of what is freed: rounds that keep nothing fill that first.
    rounds(&mut raw, b"ECHO", b"PING", &[]);
    let grown = rounds(&mut raw, b"ECHO", b"WATCH", &[]);
    assert!(grown < 16 * 1024, "48 watched keys grew RSS by {grown} KiB");
    raw.command(&[b"MULTI"]);
    assert_eq!(raw.reply(), Frame::simple("OK"));
    let grown = rounds(&mut raw, b"WATCH", b"SET", &[b"v"]);
    assert!(grown < 16 * 1024, "48 queued SETs grew RSS by {grown} KiB");
    raw.command(&[b"EXEC"]);
    let Frame::Array(replies) = raw.reply() else {
        panic!("EXEC runs the 48 SETs");
    };
    assert_eq!(replies.len(), 48);
}
