//! The keyspace events each command publishes, with Redis 7's names and order (every
//! `notifyKeyspaceEvent` of t_string.c, t_hash.c, t_set.c, db.c and expire.c), seen by a
//! subscriber of every channel on an in-process server; MULTI/EXEC and scripts run the same
//! command code, and publish the same events.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed case

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sessiond::clients::ClientState;
use sessiond::clock::BatchClock;
use sessiond::cmd::{self, ConnState};
use sessiond::notify::EventFlags;
use sessiond::pubsub::{Access, Kind, Subscriber};
use sessiond::stats::LocalStats;
use sessiond::{Clock, Config, Shared};
use sessiond_protocol::{Limits, RequestDecoder};

const START: u64 = 1_767_225_600_000;

struct Server {
    shared: Arc<Shared>,
    conn: ConnState,
    stats: LocalStats,
    clock: BatchClock,
    all: Subscriber,
    manual: Arc<sessiond::ManualClock>,
}

impl Server {
    fn new(flags: &str) -> Server {
        let (clock, manual) = Clock::manual(START);
        let config = Config {
            clock,
            notify_keyspace_events: EventFlags::parse(flags.as_bytes()).unwrap(),
            ..Config::default()
        };
        let shared = Arc::new(Shared::unbound(config));
        let addr = shared.local_addr;
        let client: Arc<ClientState> = shared.clients.register(addr, addr);
        let conn = ConnState::new(client, shared.auth.initial_user());
        let access = Access {
            session_events: true,
            session_namespace: None,
            keys: None,
        };
        let mut all = shared.pubsub.subscriber(0, access);
        all.subscribe(Kind::Pattern, Bytes::from_static(b"*"));
        Server {
            shared,
            conn,
            stats: LocalStats::default(),
            clock: BatchClock::default(),
            all,
            manual,
        }
    }

    /// Runs a command given as words; returns its reply, encoded (RESP2).
    fn run(&mut self, words: &[&str]) -> String {
        let args = words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        self.clock.stale();
        let mut out = BytesMut::new();
        let reply = cmd::execute(
            &self.shared,
            &mut self.conn,
            &mut self.stats,
            args,
            &mut self.clock,
            &mut out,
        );
        if let Some(frame) = reply.frame {
            frame.encode(self.conn.version(), &mut out);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The events published since last asked, as `channel message`.
    fn events(&mut self) -> Vec<String> {
        let mut out = BytesMut::new();
        self.all.drain_into(false, &mut out, usize::MAX);
        let mut decoder = RequestDecoder::new(Limits::default());
        let mut events = Vec::new();
        while let Some(parts) = decoder.decode(&mut out).unwrap() {
            // pmessage, pattern, channel, message
            let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
            events.push(format!("{} {}", text(&parts[2]), text(&parts[3])));
        }
        events
    }

    /// Runs `words` and checks the keyevent events it published, in order.
    fn expect(&mut self, words: &[&str], events: &[&str]) {
        self.run(words);
        let got = self.events();
        let expected: Vec<String> = events
            .iter()
            .map(|e| {
                let (event, key) = e.split_once(' ').unwrap();
                format!("__keyevent@0__:{event} {key}")
            })
            .collect();
        assert_eq!(got, expected, "{words:?}");
    }
}

#[test]
fn string_commands_publish_redis_events() {
    let mut s = Server::new("KEA");
    s.run(&["SET", "k", "v"]);
    assert_eq!(
        s.events(),
        ["__keyspace@0__:k set", "__keyevent@0__:set k"],
        "K and E: both channels"
    );
    s.run(&["CONFIG", "SET", "notify-keyspace-events", "EA"]);
    s.expect(&["SET", "k", "v", "EX", "10"], &["set k", "expire k"]);
    s.expect(&["SET", "k", "v", "NX"], &[]);
    s.expect(&["SETNX", "k", "v"], &[]);
    s.expect(&["SETEX", "k", "10", "v"], &["set k", "expire k"]);
    s.expect(&["PSETEX", "k", "10000", "v"], &["set k", "expire k"]);
    s.expect(&["GETSET", "k", "v"], &["set k"]);
    s.expect(&["MSET", "a", "1", "b", "2"], &["set a", "set b"]);
    s.expect(&["APPEND", "a", "x"], &["append a"]);
    s.expect(&["INCR", "b"], &["incrby b"]);
    s.expect(&["DECRBY", "b", "5"], &["incrby b"]);
    s.expect(&["INCR", "a"], &[]);
    s.expect(&["GETEX", "k", "PX", "5000"], &["expire k"]);
    s.expect(&["GETEX", "k", "PERSIST"], &["persist k"]);
    s.expect(&["GETEX", "k", "PERSIST"], &[]);
    s.expect(&["GETEX", "k"], &[]);
    s.expect(&["GETEX", "b", "PXAT", "1"], &["del b"]);
    s.expect(&["GETDEL", "a"], &["del a"]);
    s.expect(&["GETDEL", "a"], &[]);
    s.expect(&["GET", "k"], &[]);
}

#[test]
fn generic_commands_publish_redis_events() {
    let mut s = Server::new("EA");
    s.run(&["MSET", "a", "1", "b", "2", "c", "3"]);
    s.events();
    s.expect(&["DEL", "a", "nothing", "b"], &["del a", "del b"]);
    s.expect(&["UNLINK", "c"], &["del c"]);
    s.run(&["SET", "k", "v"]);
    s.events();
    s.expect(&["EXPIRE", "k", "100"], &["expire k"]);
    s.expect(&["PEXPIRE", "k", "100000", "NX"], &[]);
    s.expect(&["PERSIST", "k"], &["persist k"]);
    s.expect(&["PERSIST", "k"], &[]);
    s.expect(&["PEXPIREAT", "k", "1"], &["del k"]);
    s.run(&["SET", "k", "v"]);
    s.events();
    s.expect(&["RENAME", "k", "k"], &[]);
    s.expect(&["RENAME", "k", "j"], &["rename_from k", "rename_to j"]);
    s.expect(&["RENAMENX", "j", "j"], &[]);
    s.run(&["MOVE", "j", "1"]);
    assert_eq!(
        s.events(),
        ["__keyevent@0__:move_from j", "__keyevent@1__:move_to j"]
    );
    s.run(&["SELECT", "1"]);
    s.run(&["MOVE", "j", "0"]);
    assert_eq!(
        s.events(),
        ["__keyevent@1__:move_from j", "__keyevent@0__:move_to j"]
    );
    s.run(&["SELECT", "0"]);
    // n: a key added, before the command's event; not part of A.
    s.run(&["CONFIG", "SET", "notify-keyspace-events", "EAn"]);
    s.expect(&["SET", "fresh", "v"], &["new fresh", "set fresh"]);
    s.expect(&["SET", "fresh", "w"], &["set fresh"]);
    s.expect(
        &["RENAME", "fresh", "renamed"],
        &["new renamed", "rename_from fresh", "rename_to renamed"],
    );
    // FLUSHDB and SWAPDB announce nothing per key, as in Redis.
    s.expect(&["SWAPDB", "0", "1"], &[]);
    s.expect(&["FLUSHALL"], &[]);
}

#[test]
fn hash_and_set_commands_publish_redis_events() {
    let mut s = Server::new("EA");
    s.expect(&["HSET", "h", "f", "1", "g", "2"], &["hset h"]);
    s.expect(&["HSET", "h", "f", "1"], &["hset h"]);
    s.expect(&["HMSET", "h", "f", "1"], &["hset h"]);
    s.expect(&["HSETNX", "h", "f", "1"], &[]);
    s.expect(&["HSETNX", "h", "new", "1"], &["hset h"]);
    s.expect(&["HINCRBY", "h", "f", "2"], &["hincrby h"]);
    s.expect(&["HDEL", "h", "nothing"], &[]);
    s.expect(&["HDEL", "h", "f", "g"], &["hdel h"]);
    s.expect(&["HDEL", "h", "new"], &["hdel h", "del h"]);

    s.expect(&["SADD", "s", "a", "b", "c"], &["sadd s"]);
    s.expect(&["SADD", "s", "a"], &[]);
    s.expect(&["SREM", "s", "zz"], &[]);
    s.expect(&["SREM", "s", "a"], &["srem s"]);
    s.expect(&["SPOP", "s"], &["spop s"]);
    s.expect(&["SPOP", "s", "0"], &[]);
    s.expect(&["SPOP", "s", "5"], &["spop s", "del s"]);
    s.expect(&["SPOP", "s"], &[]);
    s.run(&["SADD", "x", "1", "2"]);
    s.run(&["SADD", "y", "2", "3"]);
    s.events();
    s.expect(&["SINTERSTORE", "d", "x", "y"], &["sinterstore d"]);
    s.expect(&["SUNIONSTORE", "d", "x", "y"], &["sunionstore d"]);
    s.expect(&["SDIFFSTORE", "d", "x", "y"], &["sdiffstore d"]);
    s.expect(&["SINTERSTORE", "d", "x", "nothing"], &["del d"]);
    s.expect(&["SINTERSTORE", "d", "x", "nothing"], &[]);
    s.expect(&["SREM", "y", "2", "3"], &["srem y", "del y"]);
}

#[test]
fn transactions_and_scripts_publish_what_their_commands_do() {
    let mut s = Server::new("EA");
    s.run(&["MULTI"]);
    s.run(&["SET", "a", "1"]);
    s.run(&["SADD", "s", "m"]);
    s.run(&["DEL", "a"]);
    assert!(s.events().is_empty(), "nothing while queued");
    s.run(&["EXEC"]);
    assert_eq!(
        s.events(),
        [
            "__keyevent@0__:set a",
            "__keyevent@0__:sadd s",
            "__keyevent@0__:del a"
        ]
    );
    let script = "redis.call('SET', KEYS[1], 'v'); redis.call('HSET', KEYS[2], 'f', 'v')";
    s.expect(&["EVAL", script, "2", "k", "h"], &["set k", "hset h"]);
}

#[test]
fn keys_expire_once_each_whoever_reclaims_them() {
    let mut s = Server::new("Ex");
    s.run(&["SET", "quiet", "v", "PX", "100"]);
    s.run(&["SET", "written", "v", "PX", "100"]);
    assert!(s.events().is_empty(), "x only");
    s.manual.advance(100);
    // Found dead by a write, then the active expiry's pass reclaims the other one.
    s.run(&["SET", "written", "w"]);
    for db in s.shared.dbs.iter() {
        db.reclaim_expired();
    }
    assert_eq!(
        s.events(),
        [
            "__keyevent@0__:expired written",
            "__keyevent@0__:expired quiet"
        ]
    );
    for db in s.shared.dbs.iter() {
        db.reclaim_expired();
    }
    assert!(s.events().is_empty());
}

#[test]
fn nothing_is_published_with_no_class_enabled() {
    let mut s = Server::new("");
    for command in [
        &["SET", "k", "v", "PX", "10"][..],
        &["HSET", "h", "f", "v"],
        &["SADD", "s", "m"],
        &["DEL", "h"],
        &["SESSION.CREATE", "USER", "ada", "IDLE", "10"],
    ] {
        s.run(command);
    }
    s.manual.advance(10);
    for db in s.shared.dbs.iter() {
        db.reclaim_expired();
    }
    assert!(s.events().is_empty());
}

/// The bulk string of a RESP2 reply.
fn bulk(reply: &str) -> String {
    reply.lines().nth(1).unwrap().to_owned()
}

#[test]
fn session_commands_publish_one_event_per_step() {
    let mut s = Server::new("SKEA");
    let a = bulk(&s.run(&["SESSION.CREATE", "USER", "ada"]));
    let anon = bulk(&s.run(&["SESSION.CREATE"]));
    assert_eq!(
        s.events(),
        [
            format!("__session__:created {a} ada"),
            format!("__session__:created {anon} ")
        ]
    );
    let b = bulk(&s.run(&["SESSION.REGENERATE", &anon, "USER", "ada"]));
    assert_eq!(
        s.events(),
        [format!("__session__:regenerated {anon} {b} ada")]
    );
    // Reads, writes and touches are no lifecycle steps.
    s.run(&["SESSION.SET", &a, "f", "v"]);
    s.run(&["SESSION.GET", &a]);
    s.run(&["SESSION.TOUCH", &a]);
    assert!(s.events().is_empty());
    let c = bulk(&s.run(&["SESSION.CREATE", "USER", "ada"]));
    s.events();
    s.run(&["SESSION.DESTROYALL", "ada", "EXCEPT", &c]);
    let mut got = s.events();
    got.sort();
    let mut expected = vec![
        format!("__session__:destroyed {a} ada"),
        format!("__session__:destroyed {b} ada"),
    ];
    expected.sort();
    assert_eq!(got, expected);
    // DEL of a session key: `destroyed`, and no keyspace event (the ID is a credential).
    s.run(&["DEL", &c]);
    assert_eq!(s.events(), [format!("__session__:destroyed {c} ada")]);
    let d = bulk(&s.run(&["SESSION.CREATE"]));
    s.events();
    s.run(&["SESSION.DESTROY", &d, &d]);
    assert_eq!(s.events(), [format!("__session__:destroyed {d} ")]);
}

#[test]
fn a_flush_announces_each_session_it_ends_and_no_key() {
    for flush in [&["FLUSHALL"][..], &["FLUSHDB"], &["FLUSHALL", "ASYNC"]] {
        let mut s = Server::new("SKEA");
        let a = bulk(&s.run(&["SESSION.CREATE", "USER", "ada"]));
        let b = bulk(&s.run(&["SESSION.CREATE"]));
        s.run(&["SET", "k", "v"]);
        s.events();
        let mut freed = s.shared.dbs.first().lazyfreed();
        s.run(flush);
        if flush.len() == 2 {
            // ASYNC: the sessions are announced by the thread that frees them, before it counts
            // them freed.
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(freed.wait_for(|&n| n >= 3))
                .unwrap();
        }
        let mut got = s.events();
        got.sort();
        let mut expected = vec![
            format!("__session__:destroyed {a} ada"),
            format!("__session__:destroyed {b} "),
        ];
        expected.sort();
        assert_eq!(got, expected, "{flush:?}");
    }
}
