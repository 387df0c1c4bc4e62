//! Keyspace notifications and session events through the `redis` crate, in RESP2 and RESP3:
//! `notify-keyspace-events` with CONFIG SET and GET (Redis's canonical form and errors), an
//! event of every class seen by a pattern subscriber, `expired` for keys and sessions nobody
//! reads (on the manual clock, published by the active expiry, once each), every step of a
//! session's life, eviction, and silence with no class enabled. Silence is checked without
//! waiting: a marker PUBLISHed after the commands must be the next message.

use redis::{Connection, PubSub};
use sessiond::clock::Clock;
use sessiond::notify::EventFlags;
use sessiond::store::evict::Policy;
use sessiond::{Config, RawConfig};
use sessiond_tests::redis_calls::{call, config_get, error_of};
use sessiond_tests::{TestServer, IO_TIMEOUT};

use crate::daemon::ScratchDir;

const START: u64 = 1_767_225_600_000;

/// A server on the manual clock with `flags` enabled and `config`'s other settings.
fn server_with(flags: &str, config: Config) -> TestServer {
    let (clock, manual) = Clock::manual(START);
    let mut server = TestServer::with_config(Config {
        clock,
        notify_keyspace_events: EventFlags::parse(flags.as_bytes()).expect("valid flags"),
        ..config
    });
    server.clock = Some(manual);
    server
}

/// The messages `sub` receives up to the marker that `con` publishes now, as
/// `channel message`: everything published before the marker, in order.
fn until_marker(sub: &mut PubSub<'_>, con: &mut Connection) -> Vec<String> {
    until("marker", sub, con)
}

/// [`until_marker`] with the marker on `channel`.
fn until(marker: &str, sub: &mut PubSub<'_>, con: &mut Connection) -> Vec<String> {
    let _: i64 = redis::cmd("PUBLISH")
        .arg(marker)
        .arg("end")
        .query(con)
        .expect("PUBLISH");
    let mut got = Vec::new();
    loop {
        let message = sub.get_message().expect("a message before the timeout");
        let channel = message.get_channel_name().to_owned();
        if channel == marker {
            return got;
        }
        let payload: String = message.get_payload().expect("a text payload");
        got.push(format!("{channel} {payload}"));
    }
}

/// Runs a command given as words on `con`; its reply as text (a bulk string's).
fn run(con: &mut Connection, words: &[&str]) -> String {
    let (name, args) = words.split_first().expect("a command");
    match call(con, name, args).expect(name) {
        redis::Value::BulkString(bytes) => String::from_utf8(bytes).expect("utf-8"),
        _ => String::new(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn config_set(con: &mut Connection, pairs: &[&str]) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(pairs)
        .query(con)
        .expect("CONFIG SET");
}

#[test]
fn config_set_and_get_notify_keyspace_events() {
    let config = Config {
        notify_keyspace_events: EventFlags::parse(b"Ex").expect("valid flags"),
        ..Config::default()
    };
    let server = TestServer::with_config(config);
    assert_eq!(
        config_get(&mut server.client(), "notify-keyspace-events"),
        "xE"
    );
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        config_set(&mut con, &["notify-keyspace-events", "Ex"]);
        assert_eq!(config_get(&mut con, "notify-keyspace-events"), "xE");
        config_set(&mut con, &["NOTIFY-KEYSPACE-EVENTS", "KEA"]);
        assert_eq!(config_get(&mut con, "notify-keyspace-events"), "AKE");
        config_set(&mut con, &["notify-keyspace-events", "SKEA$n"]);
        assert_eq!(config_get(&mut con, "notify-keyspace-events"), "AnSKE");
        config_set(&mut con, &["notify-keyspace-events", ""]);
        assert_eq!(config_get(&mut con, "notify-keyspace-events"), "");

        // Errors, in Redis's words; nothing changes on any of them.
        config_set(&mut con, &["notify-keyspace-events", "gE"]);
        let cases: [(&[&str], &str); 6] = [
            (
                &["notify-keyspace-events", "KEw"],
                "ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - \
                 Invalid event class character. Use 'Ag$lshzxeKEtmdnS'.",
            ),
            (
                &["no-such-thing", "1"],
                "ERR Unknown option or number of arguments for CONFIG SET - 'no-such-thing'",
            ),
            (
                &["notify-keyspace-events", "KEA", "databases", "5"],
                "ERR CONFIG SET failed (possibly related to argument 'databases') - can't set \
                 immutable config",
            ),
            (
                &[
                    "notify-keyspace-events",
                    "KEA",
                    "notify-keyspace-events",
                    "E",
                ],
                "ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - \
                 duplicate parameter",
            ),
            (
                &["notify-keyspace-events"],
                "ERR wrong number of arguments for 'config|set' command",
            ),
            (&["notify-keyspace-events", "KEA", "x"], "ERR syntax error"),
        ];
        for (args, expected) in cases {
            let mut full = vec!["SET"];
            full.extend_from_slice(args);
            assert_eq!(error_of(&mut con, "CONFIG", &full), expected, "{args:?}");
        }
        assert_eq!(config_get(&mut con, "notify-keyspace-events"), "gE");
        assert!(call(&mut con, "PING", &[]).is_ok());
        config_set(&mut con, &["notify-keyspace-events", ""]);
    }
}

#[test]
fn every_keyspace_class_reaches_a_pattern_subscriber() {
    let server = server_with("KEA", Config::default());
    for resp3 in [false, true] {
        let mut listener = server.connect(resp3);
        let mut sub = listener.as_pubsub();
        sub.psubscribe("__key*__:*").expect("PSUBSCRIBE");
        sub.subscribe("marker").expect("SUBSCRIBE");
        let mut con = server.connect(resp3);
        run(&mut con, &["FLUSHALL"]);
        run(
            &mut con,
            &["CONFIG", "SET", "notify-keyspace-events", "KEA"],
        );
        run(&mut con, &["SET", "k", "v"]);
        assert_eq!(
            until_marker(&mut sub, &mut con),
            strings(&["__keyspace@0__:k set", "__keyevent@0__:set k"])
        );
        run(
            &mut con,
            &["CONFIG", "SET", "notify-keyspace-events", "EAn"],
        );
        for words in [
            &["SET", "s1", "v", "EX", "100"][..],
            &["APPEND", "s1", "w"],
            &["INCR", "n"],
            &["EXPIRE", "n", "100"],
            &["PERSIST", "n"],
            &["RENAME", "n", "m"],
            &["DEL", "m"],
            &["HSET", "h", "f", "1"],
            &["HINCRBY", "h", "f", "1"],
            &["HDEL", "h", "f"],
            &["SADD", "s", "a", "b"],
            &["SREM", "s", "a"],
            &["SPOP", "s"],
        ] {
            run(&mut con, words);
        }
        let expected: Vec<String> = [
            "new s1",
            "set s1",
            "expire s1",
            "append s1",
            "new n",
            "incrby n",
            "expire n",
            "persist n",
            "new m",
            "rename_from n",
            "rename_to m",
            "del m",
            "new h",
            "hset h",
            "hincrby h",
            "hdel h",
            "del h",
            "new s",
            "sadd s",
            "srem s",
            "spop s",
            "del s",
        ]
        .iter()
        .map(|e| {
            let (event, key) = e.split_once(' ').expect("event and key");
            format!("__keyevent@0__:{event} {key}")
        })
        .collect();
        assert_eq!(until_marker(&mut sub, &mut con), expected, "resp3: {resp3}");
        // SELECT's index names the database.
        run(&mut con, &["SELECT", "3"]);
        run(&mut con, &["SET", "k", "v"]);
        assert_eq!(
            until_marker(&mut sub, &mut con),
            strings(&["__keyevent@3__:new k", "__keyevent@3__:set k"])
        );
    }
}

#[test]
fn keys_and_sessions_nobody_reads_expire_once_each() {
    let server = server_with("ExS", Config::default());
    for resp3 in [false, true] {
        let mut listener = server.connect(resp3);
        let mut sub = listener.as_pubsub();
        sub.psubscribe("__keyevent@*__:expired")
            .expect("PSUBSCRIBE");
        sub.psubscribe("__session__:*").expect("PSUBSCRIBE");
        sub.subscribe("marker").expect("SUBSCRIBE");
        let mut con = server.connect(resp3);
        run(&mut con, &["SET", "quiet", "v", "PX", "1000"]);
        let id = run(&mut con, &["SESSION.CREATE", "USER", "ada", "IDLE", "1000"]);
        let anon = run(&mut con, &["SESSION.CREATE", "IDLE", "5000"]);
        assert_eq!(
            until_marker(&mut sub, &mut con),
            [
                format!("__session__:created {id} ada"),
                format!("__session__:created {anon} ")
            ]
        );
        // No command touches them: the active expiry reclaims and announces both.
        server.advance(1_000);
        let mut got = until_marker(&mut sub, &mut con);
        got.sort();
        assert_eq!(
            got,
            [
                "__keyevent@0__:expired quiet".to_owned(),
                format!("__session__:expired {id} ada")
            ]
        );
        server.advance(5_000);
        server.advance(5_000);
        assert_eq!(
            until_marker(&mut sub, &mut con),
            [format!("__session__:expired {anon} ")],
            "once"
        );
        // A session and a key read as their deadline passes, racing the active expiry: each
        // is announced once, by whichever reclaims it first.
        let read = run(&mut con, &["SESSION.CREATE", "IDLE", "1000"]);
        run(&mut con, &["SET", "read", "v", "PX", "1000"]);
        until_marker(&mut sub, &mut con);
        server.clock.as_ref().expect("manual clock").advance(1_000);
        assert_eq!(
            call(&mut con, "SESSION.GET", &[&read]).expect("GET"),
            redis::Value::Nil
        );
        assert_eq!(
            call(&mut con, "SET", &["read", "w", "NX"]).expect("SET"),
            redis::Value::Okay
        );
        server.advance(0);
        let mut got = until_marker(&mut sub, &mut con);
        got.sort();
        assert_eq!(
            got,
            [
                "__keyevent@0__:expired read".to_owned(),
                format!("__session__:expired {read} ")
            ]
        );
    }
}

#[test]
fn each_step_of_a_sessions_life_is_one_event() {
    let server = server_with(
        "S",
        Config {
            session_max_per_user: 2,
            ..Config::default()
        },
    );
    for resp3 in [false, true] {
        let mut listener = server.connect(resp3);
        let mut sub = listener.as_pubsub();
        sub.psubscribe("__session__:*").expect("PSUBSCRIBE");
        sub.subscribe("marker").expect("SUBSCRIBE");
        let mut con = server.connect(resp3);
        let anon = run(&mut con, &["SESSION.CREATE"]);
        let a = run(&mut con, &["SESSION.CREATE", "USER", "ada"]);
        let b = run(&mut con, &["SESSION.CREATE", "USER", "ada"]);
        // Login: the anonymous session becomes ada's third; the cap drops her oldest.
        let c = run(&mut con, &["SESSION.REGENERATE", &anon, "USER", "ada"]);
        assert_eq!(
            until_marker(&mut sub, &mut con),
            [
                format!("__session__:created {anon} "),
                format!("__session__:created {a} ada"),
                format!("__session__:created {b} ada"),
                format!("__session__:regenerated {anon} {c} ada"),
                format!("__session__:destroyed {a} ada"),
            ]
        );
        // Reads and writes are no steps; "log out my other devices" is one event each.
        run(&mut con, &["SESSION.SET", &c, "cart", "[]"]);
        run(&mut con, &["SESSION.GET", &c]);
        run(&mut con, &["SESSION.DESTROYALL", "ada", "EXCEPT", &c]);
        assert_eq!(
            until_marker(&mut sub, &mut con),
            [format!("__session__:destroyed {b} ada")]
        );
        let d = run(&mut con, &["SESSION.CREATE", "USER", "bob"]);
        run(&mut con, &["DEL", &d]);
        run(&mut con, &["SESSION.DESTROY", &c, &c]);
        assert_eq!(
            until_marker(&mut sub, &mut con),
            [
                format!("__session__:created {d} bob"),
                format!("__session__:destroyed {d} bob"),
                format!("__session__:destroyed {c} ada"),
            ]
        );
    }
}

#[test]
fn keys_and_sessions_evicted_under_maxmemory_are_announced() {
    for resp3 in [false, true] {
        let server = server_with(
            "SEe",
            Config {
                maxmemory: 64 * 1024,
                maxmemory_policy: Policy::VolatileTtl,
                ..Config::default()
            },
        );
        let mut listener = server.connect(resp3);
        let mut sub = listener.as_pubsub();
        sub.psubscribe("__session__:evicted").expect("PSUBSCRIBE");
        sub.psubscribe("__keyevent@0__:evicted")
            .expect("PSUBSCRIBE");
        sub.subscribe("marker").expect("SUBSCRIBE");
        let mut con = server.connect(resp3);
        let id = run(&mut con, &["SESSION.CREATE"]);
        run(&mut con, &["SET", "volatile", "v", "EX", "100"]);
        // Strings without a deadline fill the memory; only the two volatile keys may go.
        let filler = "x".repeat(1024);
        for i in 0..1_000 {
            if call(&mut con, "SET", &[&format!("fill:{i}"), &filler]).is_err() {
                break;
            }
        }
        let mut got = until_marker(&mut sub, &mut con);
        got.sort();
        let mut expected = vec![
            "__keyevent@0__:evicted volatile".to_owned(),
            format!("__session__:evicted {id} "),
        ];
        expected.sort();
        assert_eq!(got, expected, "resp3: {resp3}");
    }
}

#[test]
fn nothing_is_published_with_no_class_enabled() {
    let server = server_with("", Config::default());
    for resp3 in [false, true] {
        let mut listener = server.connect(resp3);
        let mut sub = listener.as_pubsub();
        sub.psubscribe("__*").expect("PSUBSCRIBE");
        sub.subscribe("marker").expect("SUBSCRIBE");
        let mut con = server.connect(resp3);
        run(&mut con, &["SET", "k", "v", "PX", "10"]);
        run(&mut con, &["HSET", "h", "f", "v"]);
        run(&mut con, &["SADD", "s", "m"]);
        run(&mut con, &["DEL", "h", "s"]);
        let id = run(&mut con, &["SESSION.CREATE", "USER", "ada", "IDLE", "10"]);
        run(&mut con, &["SESSION.REGENERATE", &id]);
        server.advance(10);
        assert!(until_marker(&mut sub, &mut con).is_empty());
    }
}

/// A connection as `user`, in RESP2 or RESP3.
fn connect_as(server: &TestServer, user: &str, password: &str, resp3: bool) -> Connection {
    let protocol = if resp3 { "?protocol=resp3" } else { "" };
    let url = format!("redis://{user}:{password}@{}/{protocol}", server.addr);
    let con = redis::Client::open(url)
        .expect("redis url")
        .get_connection_with_timeout(IO_TIMEOUT)
        .expect("connect");
    con.set_read_timeout(Some(IO_TIMEOUT))
        .expect("read timeout");
    con
}

#[test]
fn a_named_user_sees_only_its_own_namespaces_session_events() {
    let digest = sessiond::auth::password_sha256;
    let toml = format!(
        r#"
        requirepass = "admin-pw"
        notify-keyspace-events = "S"

        [[user]]
        name = "app1"
        password-sha256 = "{}"
        keys = ["sess:app1:*"]
        categories = ["read", "write", "session"]
        session-prefix = "sess:app1:"
        channels = ["__session__:*", "marker*"]

        [[user]]
        name = "app2"
        password-sha256 = "{}"
        keys = ["sess:app2:*"]
        categories = ["read", "write", "session"]
        session-prefix = "sess:app2:"
        channels = ["__session__:*", "marker*"]
        "#,
        digest("pw1"),
        digest("pw2"),
    );
    let dir = ScratchDir::new();
    let file = dir.file("sessiond.toml", &toml);
    let config = RawConfig::from_file(&file)
        .expect("a valid file")
        .validate()
        .expect("valid users");
    let server = TestServer::with_config(Config {
        persistence: None,
        ..config
    });
    for resp3 in [false, true] {
        let mut app1 = connect_as(&server, "app1", "pw1", resp3);
        let mut app2 = connect_as(&server, "app2", "pw2", resp3);
        let mut admin = connect_as(&server, "default", "admin-pw", resp3);
        let mut listener1 = connect_as(&server, "app1", "pw1", resp3);
        let mut sub1 = listener1.as_pubsub();
        sub1.psubscribe("__session__:*").expect("PSUBSCRIBE");
        sub1.subscribe("marker1").expect("SUBSCRIBE");
        let mut listener_all = connect_as(&server, "default", "admin-pw", resp3);
        let mut sub_all = listener_all.as_pubsub();
        sub_all.psubscribe("__session__:*").expect("PSUBSCRIBE");
        sub_all.subscribe("marker2").expect("SUBSCRIBE");
        let own = run(&mut app1, &["SESSION.CREATE", "USER", "ada"]);
        let other = run(&mut app2, &["SESSION.CREATE", "USER", "ada"]);
        assert!(own.starts_with("sess:app1:") && other.starts_with("sess:app2:"));
        assert_eq!(
            until("marker1", &mut sub1, &mut app1),
            [format!("__session__:created {own} ada")]
        );
        for (con, id) in [(&mut app1, &own), (&mut app2, &other)] {
            let destroyed = call(con, "SESSION.DESTROY", &[id]).expect("DESTROY");
            assert_eq!(destroyed, redis::Value::Int(1));
        }
        assert_eq!(
            until("marker2", &mut sub_all, &mut admin),
            [
                format!("__session__:created {own} ada"),
                format!("__session__:created {other} ada"),
                format!("__session__:destroyed {own} ada"),
                format!("__session__:destroyed {other} ada"),
            ]
        );
        assert_eq!(
            until("marker1", &mut sub1, &mut app1),
            [format!("__session__:destroyed {own} ada")]
        );
    }
}

#[test]
fn a_replica_announces_each_step_as_its_primary_did() {
    // Expiry and eviction on the primary reach the replica as removals of the primary's; a
    // REGENERATE as a move. The replica announces them as the primary did, not as deletions.
    let primary = server_with(
        "SEx",
        Config {
            session_max_per_user: 2,
            maxmemory: 64 * 1024,
            maxmemory_policy: Policy::VolatileTtl,
            ..Config::default()
        },
    );
    let replica = server_with("SEx", Config::default());
    let mut to_replica = replica.client();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.addr.port())
        .query(&mut to_replica)
        .expect("REPLICAOF");
    let mut con = primary.client();
    // Every change made before it is applied on the replica when WAIT returns.
    let caught_up = |con: &mut Connection| {
        let acked: i64 = redis::cmd("WAIT").arg(1).arg(0).query(con).expect("WAIT");
        assert_eq!(acked, 1);
    };
    caught_up(&mut con);
    let mut listeners = [primary.client(), replica.client()];
    let [on_primary, on_replica] = &mut listeners;
    let mut subs = [on_primary.as_pubsub(), on_replica.as_pubsub()];
    for sub in &mut subs {
        sub.psubscribe("__session__:*").expect("PSUBSCRIBE");
        sub.psubscribe("__keyevent@0__:*").expect("PSUBSCRIBE");
        sub.subscribe("marker").expect("SUBSCRIBE");
    }
    let [primary_sub, replica_sub] = &mut subs;
    let mut both_saw = |con: &mut Connection, expected: Vec<String>| {
        caught_up(con);
        assert_eq!(until_marker(primary_sub, con), expected, "on the primary");
        assert_eq!(
            until_marker(replica_sub, &mut to_replica),
            expected,
            "on the replica"
        );
    };

    let anon = run(&mut con, &["SESSION.CREATE"]);
    let a = run(&mut con, &["SESSION.CREATE", "USER", "ada"]);
    let b = run(&mut con, &["SESSION.CREATE", "USER", "ada"]);
    let c = run(&mut con, &["SESSION.REGENERATE", &anon, "USER", "ada"]);
    both_saw(
        &mut con,
        vec![
            format!("__session__:created {anon} "),
            format!("__session__:created {a} ada"),
            format!("__session__:created {b} ada"),
            format!("__session__:regenerated {anon} {c} ada"),
            format!("__session__:destroyed {a} ada"),
        ],
    );
    // Same user: the new ID takes the old one's place.
    let d = run(&mut con, &["SESSION.REGENERATE", &c]);
    run(&mut con, &["SESSION.DESTROYALL", "ada", "EXCEPT", &d]);
    run(&mut con, &["SESSION.DESTROY", &d]);
    both_saw(
        &mut con,
        vec![
            format!("__session__:regenerated {c} {d} ada"),
            format!("__session__:destroyed {b} ada"),
            format!("__session__:destroyed {d} ada"),
        ],
    );
    // The primary's active expiry; the replica's own clock never moves.
    let e = run(&mut con, &["SESSION.CREATE", "USER", "eve", "IDLE", "1000"]);
    run(&mut con, &["SET", "k", "v", "PX", "1000"]);
    caught_up(&mut con);
    until_marker(primary_sub, &mut con);
    until_marker(replica_sub, &mut to_replica);
    primary.advance(1_000);
    caught_up(&mut con);
    let mut seen = [
        until_marker(primary_sub, &mut con),
        until_marker(replica_sub, &mut to_replica),
    ];
    for events in &mut seen {
        events.sort();
    }
    let expired = [
        "__keyevent@0__:expired k".to_owned(),
        format!("__session__:expired {e} eve"),
    ];
    assert_eq!(seen[0][..], expired[..], "on the primary");
    // Keyspace events are the primary's only, as for every applied change.
    assert_eq!(seen[1][..], expired[1..], "on the replica");
    // Eviction: strings without a deadline fill the primary's memory; only the session may go.
    let f = run(&mut con, &["SESSION.CREATE"]);
    let filler = "x".repeat(1024);
    for i in 0..1_000 {
        if call(&mut con, "SET", &[&format!("fill:{i}"), &filler]).is_err() {
            break;
        }
    }
    caught_up(&mut con);
    let steps = [
        format!("__session__:created {f} "),
        format!("__session__:evicted {f} "),
    ];
    let primary_saw = until_marker(primary_sub, &mut con);
    let sessions: Vec<_> = primary_saw
        .iter()
        .filter(|event| event.starts_with("__session__:"))
        .collect();
    assert_eq!(sessions, [&steps[0], &steps[1]], "on the primary");
    let replica_saw = until_marker(replica_sub, &mut to_replica);
    assert_eq!(replica_saw, steps, "on the replica");
}
