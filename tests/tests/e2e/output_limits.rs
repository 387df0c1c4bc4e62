//! `client-output-buffer-limit`: a reply that would take a connection's pending output past the
//! hard limit is not built, the client is closed and counted, and the server and its other
//! clients carry on; the soft limit; the setting as CONFIG GET shows it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;

use redis::Commands;
use sessiond::Config;
use sessiond_protocol::Frame;
use sessiond_tests::{info_number, TestServer, IO_TIMEOUT};

/// A server whose normal clients may have `hard` bytes of output pending (and `soft` for
/// `soft_seconds`; 0: no soft limit).
fn limited(hard: usize, soft: usize, soft_seconds: u64) -> TestServer {
    let mut config = Config::default();
    config.output_limits.normal = sessiond::output_limit::ClassLimit {
        hard_bytes: hard,
        soft_bytes: soft,
        soft_seconds,
    };
    TestServer::with_config(config)
}

/// Clients closed for their output buffer limits so far.
fn closed_for_limits(server: &TestServer) -> u64 {
    server
        .shared
        .stats
        .client_output_buffer_limit_disconnections
        .load(Ordering::Relaxed)
}

/// Sends `args` on a fresh connection; the server must close it without a byte of reply.
fn closed_without_a_reply(server: &TestServer, args: &[&[u8]]) {
    let before = closed_for_limits(server);
    let mut raw = server.raw();
    raw.command(args);
    if let Some(frame) = raw.read_frame() {
        let kind = match frame {
            Frame::Array(items) => format!("an array of {}", items.len()),
            Frame::Map(pairs) => format!("a map of {}", pairs.len()),
            Frame::Bulk(bytes) => format!("a bulk string of {} bytes", bytes.len()),
            other => format!("{other:?}"),
        };
        panic!(
            "{}: the server sent {kind} instead of closing",
            String::from_utf8_lossy(args[0])
        );
    }
    assert_eq!(closed_for_limits(server), before + 1, "counted once");
}

#[test]
fn a_reply_past_the_hard_limit_closes_the_client_and_the_server_carries_on() {
    let server = limited(64 * 1024, 0, 0);
    let mut con = server.client();
    let big = vec![b'v'; 48 * 1024];
    let _: () = con.set("big", &big).unwrap();
    // One value fits, and so do replies written while the client reads them.
    let got: Vec<u8> = con.get("big").unwrap();
    assert_eq!(got.len(), big.len());
    let mut raw = server.raw();
    for _ in 0..20 {
        raw.command(&[b"GET", b"big"]);
    }
    for _ in 0..20 {
        assert!(matches!(raw.reply(), Frame::Bulk(v) if v.len() == big.len()));
    }
    // Two copies do not: neither as GETs in one MGET nor many MGETs pipelined.
    closed_without_a_reply(&server, &[b"MGET", b"big", b"big"]);
    let mut mget = b"*301\r\n$4\r\nMGET\r\n".to_vec();
    for _ in 0..300 {
        mget.extend_from_slice(b"$3\r\nbig\r\n");
    }
    let mut pipelined = TcpStream::connect(server.addr).unwrap();
    pipelined.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // The server may close (and reset the connection) before it has read everything.
    let _ = pipelined.write_all(&mget.repeat(8));
    let mut reply = Vec::new();
    match pipelined.read_to_end(&mut reply) {
        Ok(_) => assert!(reply.is_empty(), "{} bytes of reply", reply.len()),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
    }
    assert_eq!(closed_for_limits(&server), 2);
    // The others carry on.
    let got: Vec<u8> = con.get("big").unwrap();
    assert_eq!(got.len(), big.len());
    raw.command(&[b"PING"]);
    assert_eq!(raw.reply(), Frame::simple("PONG"));
    let stats = server.info("stats");
    assert_eq!(
        info_number(&stats, "client_output_buffer_limit_disconnections"),
        2
    );
}

#[test]
fn whole_hash_reads_past_the_limit_close_the_client() {
    let server = limited(64 * 1024, 0, 0);
    let mut con = server.client();
    let value = vec![b'x'; 64];
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.hset("h", format!("field:{i:05}"), &value).ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    let _: () = con.hset("one", "f", vec![b'y'; 48 * 1024]).unwrap();
    closed_without_a_reply(&server, &[b"HGETALL", b"h"]);
    closed_without_a_reply(&server, &[b"HKEYS", b"h"]);
    closed_without_a_reply(&server, &[b"HVALS", b"h"]);
    closed_without_a_reply(&server, &[b"HMGET", b"one", b"f", b"f"]);
    // What fits is still answered.
    let len: usize = con.hlen("h").unwrap();
    assert_eq!(len, 10_000);
    let one: Vec<Vec<u8>> = redis::cmd("HMGET")
        .arg("one")
        .arg("f")
        .query(&mut con)
        .unwrap();
    assert_eq!(one[0].len(), 48 * 1024);
}

#[test]
fn keys_and_scan_past_the_limit_close_the_client() {
    let server = limited(16 * 1024, 0, 0);
    let mut con = server.client();
    let mut pipe = redis::pipe();
    for i in 0..2_000 {
        pipe.set(format!("{i:0>512}"), 1).ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    closed_without_a_reply(&server, &[b"KEYS", b"*"]);
    closed_without_a_reply(&server, &[b"SCAN", b"0", b"COUNT", b"2000"]);
    let (_, keys): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("COUNT")
        .arg(10)
        .query(&mut con)
        .unwrap();
    assert!(keys.len() < 20);
}

#[test]
fn session_reads_past_the_limit_close_the_client() {
    let server = limited(16 * 1024, 0, 0);
    let mut con = server.client();
    let mut pipe = redis::pipe();
    for _ in 0..2_000 {
        pipe.cmd("SESSION.CREATE").arg("USER").arg("alice").ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    let id: String = redis::cmd("SESSION.CREATE")
        .arg("DATA")
        .arg("cart")
        .arg(vec![b'c'; 12 * 1024])
        .arg("profile")
        .arg(vec![b'p'; 12 * 1024])
        .query(&mut con)
        .unwrap();
    closed_without_a_reply(&server, &[b"SESSION.LIST", b"alice"]);
    closed_without_a_reply(&server, &[b"SESSION.GET", id.as_bytes()]);
    closed_without_a_reply(
        &server,
        &[b"SESSION.GET", id.as_bytes(), b"cart", b"profile"],
    );
    let cart: Vec<Vec<u8>> = redis::cmd("SESSION.GET")
        .arg(&id)
        .arg("cart")
        .query(&mut con)
        .unwrap();
    assert_eq!(cart[0].len(), 12 * 1024);
    let count: u64 = redis::cmd("SESSION.COUNT")
        .arg("alice")
        .query(&mut con)
        .unwrap();
    assert_eq!(count, 2_000);
}

#[test]
fn a_client_over_the_soft_limit_for_its_seconds_is_closed() {
    // No hard limit, and a soft limit of one byte for a second: whatever a client that does not
    // read leaves pending is above it.
    let server = limited(0, 1, 1);
    let mut con = server.client();
    let _: () = con.set("v", vec![b'v'; 256 * 1024]).unwrap();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let batch = b"GET v\r\n".repeat(10_000);
    // Requests for 2.5 GiB of replies at a time, never reading one: once the sockets' buffers
    // are full, the server holds the rest until it gives up on us, or stops reading.
    let refused = (0..1_000).find_map(|_| stream.write_all(&batch).err());
    let error = refused.expect("the server kept accepting requests from a client that never reads");
    assert!(
        !matches!(
            error.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ),
        "the server stopped reading without closing: {error}"
    );
    assert_eq!(closed_for_limits(&server), 1);
    let got: Vec<u8> = con.get("v").unwrap();
    assert_eq!(got.len(), 256 * 1024);
}

#[test]
fn config_get_shows_every_class_in_redis_format() {
    let server = TestServer::start();
    let mut con = server.client();
    let reply: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("client-output-buffer-limit")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        reply,
        [
            "client-output-buffer-limit",
            "normal 67108864 0 0 replica 268435456 67108864 60 pubsub 33554432 8388608 60"
        ]
    );
}

/// A field of `/proc/<pid>/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("procfs");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in {status}"))
}

#[test]
fn mget_of_a_large_value_many_times_leaves_the_daemons_memory_bounded() {
    const KEY: &str = "large-value-key-5b1e";
    let mut daemon = crate::daemon::Daemon::start(
        &[
            "--port",
            "0",
            "--no-persistence",
            "--proto-max-bulk-len",
            "256kb",
            // The single-size form: the normal class's hard limit.
            "--client-output-buffer-limit",
            "1mb",
        ],
        &[],
    );
    let mut con = daemon.client(false);
    let value = b"q".repeat(256 * 1024);
    let _: () = con.set(KEY, &value).unwrap();
    let got: Vec<u8> = con.get(KEY).unwrap();
    assert_eq!(got.len(), value.len());
    let peak_before = status_kib(daemon.pid(), "VmHWM");
    // 3 KB of request for 100 MB of reply, twice, from a client that reads nothing until the
    // server has answered or closed.
    let mut mget = String::from("*401\r\n$4\r\nMGET\r\n");
    for _ in 0..400 {
        mget.push_str(&format!("${}\r\n{KEY}\r\n", KEY.len()));
    }
    let mut stream = TcpStream::connect(daemon.addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.write_all(mget.repeat(2).as_bytes()).unwrap();
    let mut first = [0u8; 4096];
    let received = match stream.read(&mut first) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
        Err(e) => panic!("the server neither answered nor closed: {e}"),
    };
    let peak_after = status_kib(daemon.pid(), "VmHWM");
    assert!(
        peak_after < peak_before + 16 * 1024,
        "peak RSS grew from {peak_before} KiB to {peak_after} KiB for a client that does not read"
    );
    assert_eq!(
        received, 0,
        "the server sent part of a reply past the limit"
    );
    // The server carries on, and says what it did.
    let got: Vec<u8> = con.get(KEY).unwrap();
    assert_eq!(got.len(), value.len());
    let stats: String = redis::cmd("INFO").arg("stats").query(&mut con).unwrap();
    assert_eq!(
        info_number(&stats, "client_output_buffer_limit_disconnections"),
        1
    );
    drop(con);
    let (status, log) = daemon.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        log.contains("scheduled to be closed ASAP for overcoming of output buffer limits"),
        "{log}"
    );
    assert!(!log.contains(KEY) && !log.contains("qqqq"), "{log}");
}

/// A script's reply is bounded like any other: one past the hard limit closes the client.
#[test]
fn a_script_reply_past_the_hard_limit_closes_the_client() {
    let server = limited(64 * 1024, 0, 0);
    closed_without_a_reply(
        &server,
        &[b"EVAL", b"return string.rep('x', 100 * 1024)", b"0"],
    );
    closed_without_a_reply(
        &server,
        &[
            b"EVAL",
            b"local t = {} for i = 1, 20000 do t[i] = 'abcdef' end return t",
            b"0",
        ],
    );
    let mut con = server.client();
    let small: String = redis::cmd("EVAL")
        .arg("return string.rep('x', 10)")
        .arg(0)
        .query(&mut con)
        .unwrap();
    assert_eq!(small.len(), 10);
}

#[test]
fn config_set_changes_the_limits_for_the_next_command() {
    for resp3 in [false, true] {
        let mut config = Config::default();
        config.limits.max_bulk_len = 16 * 1024;
        let server = TestServer::with_config(config);
        let mut con = server.connect(resp3);
        let value = vec![b'v'; 16 * 1024];
        for key in ["a", "b", "c"] {
            let _: () = con.set(key, &value).unwrap();
        }
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("client-output-buffer-limit")
            .arg("normal 40kb 0 0")
            .query(&mut con)
            .expect("CONFIG SET client-output-buffer-limit");
        let shown: std::collections::HashMap<String, String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("client-output-buffer-limit")
            .query(&mut con)
            .unwrap();
        assert_eq!(
            shown["client-output-buffer-limit"],
            "normal 40960 0 0 replica 268435456 67108864 60 pubsub 33554432 8388608 60"
        );
        // 48 KiB of values: past the new hard limit.
        closed_without_a_reply(&server, &[b"MGET", b"a", b"b", b"c"]);
        let refused = redis::cmd("CONFIG")
            .arg("SET")
            .arg("client-output-buffer-limit")
            .arg("normal 20kb 0 0")
            .query::<()>(&mut con)
            .expect_err("below twice proto-max-bulk-len");
        assert!(
            refused.to_string().contains("twice proto-max-bulk-len"),
            "{refused}"
        );
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("client-output-buffer-limit")
            .arg("normal 0 0 0")
            .query(&mut con)
            .unwrap();
        let values: Vec<Vec<u8>> = con.mget(&["a", "b", "c"]).unwrap();
        assert_eq!(values.len(), 3);
    }
}
