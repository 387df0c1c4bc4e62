//! Authentication and the limits that protect the server from unauthenticated or misbehaving
//! clients: WRONGPASS/NOAUTH, the pre-authentication input caps, a client that never reads its
//! replies, and the idle timeout.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use redis::Value;
use sessiond::auth::Secret;
use sessiond::Config;
use sessiond_protocol::{ClientCodec, Frame};
use sessiond_tests::rss_kib;
use sessiond_tests::{error_text, TestServer};

const PASSWORD: &str = "correct horse battery staple";

fn protected() -> TestServer {
    TestServer::with_config(Config {
        requirepass: Some(Secret::new(PASSWORD.into())),
        ..Config::default()
    })
}

fn stat(server: &TestServer, field: &str) -> u64 {
    let mut con = redis::Client::open(format!(
        "redis://:{}@{}/",
        PASSWORD.replace(' ', "%20"),
        server.addr
    ))
    .expect("test setup")
    .get_connection()
    .expect("test setup");
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut con)
        .expect("test setup");
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in {info}"))
}

#[test]
fn wrong_password_is_wrongpass_and_the_client_stays_unauthenticated() {
    let server = protected();
    let mut raw = server.raw();
    raw.command(&[b"GET", b"k"]);
    assert_eq!(error_text(&raw.reply()), "NOAUTH Authentication required.");
    raw.command(&[b"AUTH", b"wrong"]);
    assert_eq!(
        error_text(&raw.reply()),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    raw.command(&[b"AUTH", b"somebody", PASSWORD.as_bytes()]);
    assert!(error_text(&raw.reply()).starts_with("WRONGPASS"));
    raw.command(&[b"PING"]);
    assert_eq!(error_text(&raw.reply()), "NOAUTH Authentication required.");
    raw.command(&[b"HELLO", b"3"]);
    assert!(error_text(&raw.reply()).starts_with("NOAUTH HELLO must be called"));
    raw.command(&[b"AUTH", PASSWORD.as_bytes()]);
    assert_eq!(raw.reply(), Frame::ok());
    raw.command(&[b"PING"]);
    assert_eq!(raw.reply(), Frame::simple("PONG"));
    // RESET forgets the authentication.
    raw.command(&[b"RESET"]);
    assert_eq!(raw.reply(), Frame::simple("RESET"));
    raw.command(&[b"PING"]);
    assert_eq!(error_text(&raw.reply()), "NOAUTH Authentication required.");
    raw.command(&[b"AUTH", b"default", PASSWORD.as_bytes()]);
    assert_eq!(raw.reply(), Frame::ok());
    assert_eq!(stat(&server, "acl_access_denied_auth"), 2);
}

#[test]
fn hello_auth_and_redis_clients_authenticate_in_both_protocols() {
    let server = protected();
    let mut raw = server.raw();
    raw.command(&[b"HELLO", b"3", b"AUTH", b"default", b"nope"]);
    assert!(error_text(&raw.reply()).starts_with("WRONGPASS"));
    raw.command(&[
        b"HELLO",
        b"3",
        b"AUTH",
        b"default",
        PASSWORD.as_bytes(),
        b"SETNAME",
        b"web",
    ]);
    assert!(matches!(raw.reply(), Frame::Map(_)));
    raw.command(&[b"GET", b"missing"]);
    assert_eq!(raw.reply(), Frame::Null);

    let encoded = PASSWORD.replace(' ', "%20");
    for protocol in ["", "?protocol=resp3"] {
        let url = format!("redis://:{encoded}@{}/{protocol}", server.addr);
        let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
        let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
        let value: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
        assert_eq!(value, "v");
        let bad = format!("redis://:wrong@{}/{protocol}", server.addr);
        let refused = redis::Client::open(bad).unwrap().get_connection();
        assert!(refused.is_err(), "a wrong password must not connect");
    }
    // The password is never shown by CONFIG GET.
    let mut con = redis::Client::open(format!("redis://:{encoded}@{}/", server.addr))
        .unwrap()
        .get_connection()
        .unwrap();
    let config: Value = redis::cmd("CONFIG")
        .arg("GET")
        .arg("*pass*")
        .query(&mut con)
        .unwrap();
    assert_eq!(config, Value::Array(vec![]));
}

#[test]
fn quit_is_allowed_before_authentication() {
    let server = protected();
    let mut raw = server.raw();
    raw.command(&[b"QUIT"]);
    assert_eq!(raw.reply(), Frame::ok());
    assert!(raw.closed());
}

/// Sends `bytes` and reports whether the server then closed the connection, after at most one
/// error reply (writes into a closed connection may fail; that is the point).
fn closed_after(server: &TestServer, bytes: &[u8]) -> (bool, Option<String>) {
    closed_after_at(server.addr, bytes)
}

/// Sends `bytes` to `addr` and reads until the server closes: whether it did, and what it said.
fn closed_after_at(addr: std::net::SocketAddr, bytes: &[u8]) -> (bool, Option<String>) {
    let mut stream = TcpStream::connect(addr).expect("test setup");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("test setup");
    let _ = stream.write_all(bytes);
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server neither answered nor closed: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&reply).into_owned();
    (true, (!text.is_empty()).then_some(text))
}

#[test]
fn unauthenticated_input_is_capped_and_the_connection_closed() {
    let server = protected();
    let before = stat(&server, "unauthenticated_limit_disconnections");

    // Eleven arguments: more than an anonymous peer may send.
    let (closed, reply) = closed_after(&server, b"*11\r\n");
    assert!(closed);
    assert_eq!(
        reply.as_deref(),
        Some("-ERR Protocol error: invalid multibulk length\r\n")
    );

    // One argument of 16,385 bytes: over the 16 KiB per-argument cap.
    let mut big = b"*2\r\n$4\r\nAUTH\r\n$16385\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 16_385));
    big.extend_from_slice(b"\r\n");
    let (closed, reply) = closed_after(&server, &big);
    assert!(closed);
    assert_eq!(
        reply.as_deref(),
        Some("-ERR Protocol error: invalid bulk length\r\n")
    );

    // 2 MiB announced in one argument: refused at the header, before it is buffered.
    let mut huge = b"*2\r\n$4\r\nAUTH\r\n$2097152\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'y', 2 << 20));
    let (closed, _) = closed_after(&server, &huge);
    assert!(closed);

    // An inline line that never ends: closed at the 16 KiB inline cap.
    let (closed, reply) = closed_after(&server, &vec![b'z'; 2 << 20]);
    assert!(closed);
    assert_eq!(
        reply.as_deref(),
        Some("-ERR Protocol error: too big inline request\r\n")
    );

    assert_eq!(
        stat(&server, "unauthenticated_limit_disconnections"),
        before + 4
    );
    // The same sizes are fine once authenticated.
    let mut raw = server.raw();
    raw.command(&[b"AUTH", PASSWORD.as_bytes()]);
    assert_eq!(raw.reply(), Frame::ok());
    let value = vec![b'v'; 16_385];
    raw.command(&[b"SET", b"big", &value]);
    assert_eq!(raw.reply(), Frame::ok());

    // AUTH and what follows it in one write: until AUTH has run, commands are decoded one at a
    // time, so the SET after it is held to the full limits, and the batch after that (decoded
    // ahead together) is answered in order.
    let mut raw = server.raw();
    let mut pipeline = BytesMut::new();
    ClientCodec::encode_command(&[&b"AUTH"[..], PASSWORD.as_bytes()], &mut pipeline);
    ClientCodec::encode_command(&[&b"SET"[..], b"big2", &value], &mut pipeline);
    for i in 0..40 {
        let key = if i % 2 == 0 { &b"big2"[..] } else { b"absent" };
        ClientCodec::encode_command(&[&b"GET"[..], key], &mut pipeline);
    }
    raw.send(&pipeline);
    assert_eq!(raw.reply(), Frame::ok());
    assert_eq!(raw.reply(), Frame::ok());
    for i in 0..40 {
        let expected = if i % 2 == 0 {
            Frame::Bulk(value.clone().into())
        } else {
            Frame::Null
        };
        assert_eq!(raw.reply(), expected, "reply {i}");
    }
}

#[test]
fn commands_after_reset_in_one_write_are_held_to_the_pre_authentication_limits() {
    let server = protected();
    let mut raw = server.raw();
    raw.command(&[b"AUTH", PASSWORD.as_bytes()]);
    assert_eq!(raw.reply(), Frame::ok());
    // RESET logs the connection out; the eleven-argument command after it in the same write is
    // decoded only once RESET has run, under the limits of an anonymous peer.
    let mut pipeline = BytesMut::new();
    ClientCodec::encode_command(&[&b"PING"[..]], &mut pipeline);
    ClientCodec::encode_command(&[&b"RESET"[..]], &mut pipeline);
    ClientCodec::encode_command(&[&b"MGET"[..]; 11], &mut pipeline);
    raw.send(&pipeline);
    assert_eq!(raw.reply(), Frame::simple("PONG"));
    assert_eq!(raw.reply(), Frame::simple("RESET"));
    assert_eq!(
        error_text(&raw.reply()),
        "ERR Protocol error: invalid multibulk length"
    );
    assert!(raw.closed());
}

#[test]
fn unauthenticated_abuse_leaves_the_real_servers_memory_bounded() {
    let mut daemon = crate::daemon::Daemon::start(
        &["--port", "0", "--no-persistence"],
        &[("SESSIOND_PASSWORD", PASSWORD)],
    );
    let addr = daemon.addr;
    // Warm up the runtime's threads and buffers with a few harmless connections first.
    for _ in 0..4 {
        let (closed, _) = closed_after_at(addr, b"*11\r\n");
        assert!(closed);
    }
    let before = rss_kib(daemon.pid());
    // 32 anonymous peers at once, each sending 2 MiB in one argument, 2 MiB of inline garbage,
    // and a 16,385-byte argument: 128 MiB offered in all. Buffering any of it per connection
    // would show in the resident set; the pre-authentication caps refuse it at the header.
    let mut huge = b"*2\r\n$4\r\nAUTH\r\n$2097152\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b'y', 2 << 20));
    let mut big = b"*2\r\n$4\r\nAUTH\r\n$16385\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 16_385));
    let inline = vec![b'z'; 2 << 20];
    std::thread::scope(|scope| {
        for _ in 0..32 {
            scope.spawn(|| {
                for bytes in [&huge, &inline, &big] {
                    let (closed, _) = closed_after_at(addr, bytes);
                    assert!(closed);
                }
            });
        }
    });
    let after = rss_kib(daemon.pid());
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB under 128 MiB of refused input"
    );
    // Still serving.
    let mut con = redis::Client::open(format!("redis://:{}@{addr}/", PASSWORD.replace(' ', "%20")))
        .expect("url")
        .get_connection()
        .expect("connect after the abuse");
    let pong: String = redis::cmd("PING").query(&mut con).expect("PING");
    assert_eq!(pong, "PONG");
    daemon.stop();
}

#[test]
fn an_unauthenticated_client_that_never_reads_is_disconnected() {
    let server = protected();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let batch = b"PING\r\n".repeat(10_000);
    let mut sent = 0usize;
    let mut refused = false;
    // A million PINGs, never reading a reply: the server must hang up rather than buffer.
    for _ in 0..100 {
        match stream.write_all(&batch) {
            Ok(()) => sent += 10_000,
            Err(error) => {
                assert_ne!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock,
                    "the server stopped reading without closing"
                );
                assert_ne!(
                    error.kind(),
                    std::io::ErrorKind::TimedOut,
                    "the server stopped reading without closing"
                );
                refused = true;
                break;
            }
        }
    }
    assert!(
        refused,
        "all {sent} PINGs were accepted without the client reading"
    );
    assert!(stat(&server, "client_output_buffer_limit_disconnections") >= 1);
    // The server is fine.
    let mut raw = server.raw();
    raw.command(&[b"AUTH", PASSWORD.as_bytes()]);
    assert_eq!(raw.reply(), Frame::ok());
}

#[test]
fn the_idle_timeout_closes_idle_clients_only() {
    let server = TestServer::with_config(Config {
        idle_timeout: Some(Duration::from_millis(300)),
        ..Config::default()
    });
    let mut idle = server.raw();
    let mut active = server.raw();
    // The active client keeps talking for three timeouts; each PING is a sign of life. The
    // pauses are the behaviour under test (activity at a pace), not a wait for the server.
    for _ in 0..9 {
        active.command(&[b"PING"]);
        assert_eq!(active.reply(), Frame::simple("PONG"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(idle.closed(), "the idle client was closed");
    active.command(&[b"PING"]);
    assert_eq!(active.reply(), Frame::simple("PONG"));
    let mut con = server.client();
    let info: String = redis::cmd("INFO").arg("stats").query(&mut con).unwrap();
    assert!(info.contains("idle_timeouts:1\r\n"), "{info}");
}

#[test]
fn a_connection_is_closed_at_its_max_auth_failures_th_failed_login() {
    let server = TestServer::with_config(Config {
        requirepass: Some(Secret::new(PASSWORD.into())),
        max_auth_failures: 4,
        ..Config::default()
    });
    let wrongpass = "WRONGPASS invalid username-password pair or user is disabled.";
    let mut guesser = server.raw();
    for guess in [&b"guess1"[..], b"guess2", b"guess3"] {
        guesser.command(&[b"AUTH", guess]);
        assert_eq!(error_text(&guesser.reply()), wrongpass);
    }
    // HELLO AUTH counts as well; the fourth failure is answered, then the connection closed.
    guesser.command(&[b"HELLO", b"3", b"AUTH", b"default", b"guess4"]);
    assert_eq!(error_text(&guesser.reply()), wrongpass);
    assert!(guesser.closed(), "closed after the fourth failure");
    assert_eq!(stat(&server, "auth_failure_disconnections"), 1);
    assert_eq!(stat(&server, "acl_access_denied_auth"), 4);

    // Failures short of the limit, then the right password: the connection is served.
    let mut client = server.raw();
    for _ in 0..3 {
        client.command(&[b"AUTH", b"typo"]);
        assert_eq!(error_text(&client.reply()), wrongpass);
    }
    client.command(&[b"AUTH", PASSWORD.as_bytes()]);
    assert_eq!(client.reply(), Frame::ok());
    client.command(&[b"PING"]);
    assert_eq!(client.reply(), Frame::simple("PONG"));
}

#[test]
fn a_connection_that_does_not_authenticate_in_time_is_closed_and_others_are_not() {
    let server = TestServer::with_config(Config {
        requirepass: Some(Secret::new(PASSWORD.into())),
        // Long enough that `logged_in` authenticates within it on a loaded machine.
        auth_timeout: Some(Duration::from_secs(1)),
        ..Config::default()
    });
    let mut logged_in = server.raw();
    logged_in.command(&[b"AUTH", PASSWORD.as_bytes()]);
    assert_eq!(logged_in.reply(), Frame::ok());
    // Accepted after `logged_in`: by the time its deadline passes, `logged_in`'s has too.
    let mut idle = server.raw();
    let mut chatty = server.raw();
    chatty.command(&[b"PING"]);
    assert_eq!(
        error_text(&chatty.reply()),
        "NOAUTH Authentication required."
    );
    assert!(idle.closed(), "an idle unauthenticated client is closed");
    assert!(chatty.closed(), "so is one that talks but never logs in");
    logged_in.command(&[b"PING"]);
    assert_eq!(logged_in.reply(), Frame::simple("PONG"));
    assert_eq!(stat(&server, "auth_timeouts"), 2);

    // Without a password there is nothing to wait for.
    let open = TestServer::with_config(Config {
        auth_timeout: Some(Duration::from_millis(1)),
        ..Config::default()
    });
    let mut first = open.raw();
    // A second connection accepted, served and closed after the first's deadline passed.
    let mut second = open.raw();
    second.command(&[b"PING"]);
    assert_eq!(second.reply(), Frame::simple("PONG"));
    first.command(&[b"PING"]);
    assert_eq!(first.reply(), Frame::simple("PONG"));
}
