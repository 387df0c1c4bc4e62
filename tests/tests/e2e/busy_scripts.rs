//! Long-running scripts: past `busy-reply-threshold` the commands that need what a script
//! holds are answered BUSY while the others are served, SCRIPT KILL stops a script that has
//! written nothing, and SHUTDOWN NOSAVE ends one that has. Every wait here is for a reply or
//! for the server to end, never a sleep: a command needing the script's key is held until the
//! script turns busy, then answered BUSY.

use std::time::Duration;

use sessiond::Config;
use sessiond_protocol::Frame;
use sessiond_tests::{error_text, RawClient, TestServer};

use super::words::error;

/// A server whose scripts turn busy after 100 ms, on `threads` runtime threads (1: the
/// one-thread runtime CI's two cores get by default).
fn server(threads: usize) -> TestServer {
    TestServer::with_config(Config {
        threads,
        busy_reply_threshold: Duration::from_millis(100),
        ..Config::default()
    })
}

/// A key of a different shard than `key`'s.
fn elsewhere(server: &TestServer, key: &[u8]) -> Vec<u8> {
    let store = server.shared.dbs.first();
    (0..)
        .map(|i| format!("other:{i}").into_bytes())
        .find(|other| store.shard_of_key(other) != store.shard_of_key(key))
        .expect("1024 shards")
}

/// Sends `GET key` until it is answered BUSY: the script has run past the threshold. Before
/// it has, the GET is held (not answered) or, if the script has not started yet, answered.
fn until_busy(client: &mut RawClient, key: &[u8]) {
    loop {
        client.command(&[b"GET", key]);
        match client.reply() {
            Frame::Error(text) if text.starts_with(b"BUSY ") => return,
            Frame::Null | Frame::Bulk(_) => continue,
            other => panic!("GET during a script: {other:?}"),
        }
    }
}

/// Waits until a script has run long enough to register as long (a read-only one then runs
/// again off the runtime's thread). A command sent earlier, in the script's first
/// milliseconds, may wait on the shard's lock for the whole script rather than hear BUSY (as
/// docs/scripting.md says): the tests send theirs after.
fn until_long(server: &TestServer) {
    while server.shared.dbs.long_blocks().counts().0 == 0 {
        std::thread::yield_now();
    }
}

fn script_kill(server: &TestServer) -> Frame {
    let mut client = server.raw();
    client.command(&[b"SCRIPT", b"KILL"]);
    client.reply()
}

/// A script that reads and loops: BUSY for its key only, SCRIPT KILL stops it, its caller gets
/// Redis's error and the key is served again.
fn busy_then_killed(threads: usize) {
    let server = server(threads);
    let key = b"{busy}:lock";
    let mut caller = server.raw();
    caller.command(&[
        b"EVAL",
        b"local v = redis.call('get', KEYS[1]) while true do end",
        b"1",
        key,
    ]);
    until_long(&server);
    let mut blocked = server.raw();
    until_busy(&mut blocked, key);

    // Through redis-rs, in RESP2 and RESP3: BUSY for the script's key, the other keys served.
    let other_key = elsewhere(&server, key);
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let busy = error(&mut con, &format!("GET {}", String::from_utf8_lossy(key)));
        assert!(
            busy.starts_with("BUSY Redis is busy running a script."),
            "{busy}"
        );
        let served: Option<String> = redis::cmd("GET")
            .arg(&other_key)
            .query(&mut con)
            .expect("a key of another shard is served");
        assert_eq!(served, None);
    }

    // Clients of other keys are served as usual; so are commands that touch no key.
    let mut other = server.raw();
    other.command(&[b"SET", &elsewhere(&server, key), b"v"]);
    assert_eq!(other.reply(), Frame::simple("OK"));
    other.command(&[b"PING"]);
    assert_eq!(other.reply(), Frame::simple("PONG"));
    // EXEC refused for BUSY ends the transaction, as Redis's execCommandAbort.
    other.command(&[b"MULTI"]);
    assert_eq!(other.reply(), Frame::simple("OK"));
    other.command(&[b"GET", key]);
    assert_eq!(other.reply(), Frame::simple("QUEUED"));
    other.command(&[b"EXEC"]);
    let aborted = error_text(&other.reply());
    assert!(
        aborted.starts_with("EXECABORT Transaction discarded because of: BUSY "),
        "{aborted}"
    );
    other.command(&[b"PING"]);
    assert_eq!(other.reply(), Frame::simple("PONG"));
    // A command that needs every shard needs the script's too.
    other.command(&[b"DBSIZE"]);
    assert!(error_text(&other.reply()).starts_with("BUSY "));

    // SCRIPT KILL through redis-rs in RESP3.
    let killed: String = redis::cmd("SCRIPT")
        .arg("KILL")
        .query(&mut server.connect(true))
        .expect("SCRIPT KILL");
    assert_eq!(killed, "OK");
    let killed = error_text(&caller.reply());
    assert!(
        killed.contains("Script killed by user with SCRIPT KILL"),
        "{killed}"
    );
    blocked.command(&[b"GET", key]);
    assert_eq!(blocked.reply(), Frame::Null);
    let not_busy = error_text(&script_kill(&server));
    assert_eq!(not_busy, "NOTBUSY No scripts in execution right now.");
}

#[test]
fn a_busy_script_answers_busy_for_its_keys_and_dies_by_script_kill_on_one_thread() {
    busy_then_killed(1);
}

#[test]
fn a_busy_script_answers_busy_for_its_keys_and_dies_by_script_kill_on_two_threads() {
    busy_then_killed(2);
}

#[test]
fn a_script_that_wrote_is_unkillable_and_shutdown_nosave_ends_it() {
    // Two threads: on one, a script that has written keeps the only thread (see
    // docs/scripting.md).
    let server = server(2);
    let key = b"{busy}:written";
    let mut caller = server.raw();
    caller.command(&[
        b"EVAL",
        b"redis.call('set', KEYS[1], 'half') while true do end",
        b"1",
        key,
    ]);
    // Until it has run long, SCRIPT KILL finds nothing to kill; then it refuses. A command
    // sent before the script turned long waits for its lock (on a thread of its own) instead
    // of hearing BUSY, so the GETs come after.
    let refused = loop {
        let reply = error_text(&script_kill(&server));
        if !reply.starts_with("NOTBUSY ") {
            break reply;
        }
    };
    assert!(refused.starts_with("UNKILLABLE "), "{refused}");
    let mut blocked = server.raw();
    until_busy(&mut blocked, key);
    // SHUTDOWN without NOSAVE would save the script's half-done writes: BUSY, as Redis.
    let mut admin = server.raw();
    admin.command(&[b"SHUTDOWN"]);
    assert!(error_text(&admin.reply()).starts_with("BUSY "));
    admin.command(&[b"SHUTDOWN", b"NOSAVE"]);
    // The server ends: the script is stopped, every connection closes.
    assert!(admin.closed());
    assert!(blocked.closed());
    drop(server);
}

#[test]
fn a_command_waiting_for_a_script_runs_once_it_ends() {
    // A threshold of 0 never answers BUSY: the command waits for the script, then runs.
    let server = TestServer::with_config(Config {
        busy_reply_threshold: Duration::ZERO,
        ..Config::default()
    });
    let key = b"{busy}:counter";
    let mut caller = server.raw();
    // Loops a few million instructions, long past the inline budget, then writes.
    caller.command(&[
        b"EVAL",
        b"local n = 0 for i = 1, 3000000 do n = n + 1 end return redis.call('incrby', KEYS[1], n)",
        b"1",
        key,
    ]);
    let mut waiting = server.raw();
    waiting.command(&[b"INCR", key]);
    let (script, incr) = (caller.reply(), waiting.reply());
    // Whichever ran first, both ran, one after the other, and nothing was lost.
    let total = match (script, incr) {
        (Frame::Integer(a), Frame::Integer(b)) => a.max(b),
        other => panic!("{other:?}"),
    };
    assert_eq!(total, 3_000_001);
}

#[test]
fn a_script_that_must_hold_every_shard_waits_off_the_thread_while_a_long_one_runs() {
    // One thread: a script that touches a key it did not declare, in a shard a long script
    // holds, starts over holding every shard on a thread of its own, not on the only one.
    let server = server(1);
    let key = b"{busy}:long";
    let mut long = server.raw();
    long.command(&[b"EVAL", b"while true do end", b"1", key]);
    until_long(&server);
    until_busy(&mut server.raw(), key);
    let declared = elsewhere(&server, key);
    let mut undeclared = server.raw();
    undeclared.command(&[
        b"EVAL",
        b"return redis.call('get', ARGV[1])",
        b"1",
        &declared,
        key,
    ]);
    // The server goes on serving meanwhile.
    let mut other = server.raw();
    other.command(&[b"PING"]);
    assert_eq!(other.reply(), Frame::simple("PONG"));
    assert_eq!(script_kill(&server), Frame::simple("OK"));
    assert!(error_text(&long.reply()).contains("Script killed by user with SCRIPT KILL"));
    // Stopped with the long one (it was waiting, having written nothing), or run after it.
    match undeclared.reply() {
        Frame::Null => {}
        Frame::Error(text) => assert!(
            String::from_utf8_lossy(&text).contains("Script killed by user"),
            "{text:?}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn commands_that_make_session_ids_wait_for_a_busy_script_whatever_shard_the_id_is_in() {
    // A new ID lands in any shard, maybe one a long script holds: SESSION.CREATE and
    // SESSION.REGENERATE count as needing every shard, so they are answered BUSY rather than
    // blocking their thread on the script's lock (REGENERATE's own key may be free).
    let server = server(1);
    let mut con = server.raw();
    con.command(&[b"SESSION.CREATE", b"USER", b"ada"]);
    let Frame::Bulk(id) = con.reply() else {
        panic!("no session");
    };
    let key = elsewhere(&server, &id);
    let mut long = server.raw();
    long.command(&[b"EVAL", b"while true do end", b"1", &key]);
    until_long(&server);
    until_busy(&mut server.raw(), &key);
    for command in [
        &[&b"SESSION.CREATE"[..]][..],
        &[b"SESSION.REGENERATE", &id[..]][..],
        &[b"SESSION.REGENERATE", &id[..], b"USER", b"bob"][..],
    ] {
        con.command(command);
        let reply = con.reply();
        let busy = matches!(&reply, Frame::Error(text) if text.starts_with(b"BUSY "));
        assert!(busy, "{command:?}: {reply:?}");
    }
    // Reading the session needs its own shard only.
    con.command(&[b"SESSION.GET", &id]);
    assert!(matches!(con.reply(), Frame::Array(_) | Frame::Map(_)));
    assert_eq!(script_kill(&server), Frame::simple("OK"));
    assert!(error_text(&long.reply()).contains("Script killed by user with SCRIPT KILL"));
    con.command(&[b"SESSION.REGENERATE", &id]);
    assert!(matches!(con.reply(), Frame::Bulk(_)));
}
