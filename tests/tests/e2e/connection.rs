//! Connection and server commands: PING, ECHO, HELLO and the protocol switch, AUTH, SELECT,
//! QUIT, RESET, CLIENT, INFO, COMMAND, CONFIG, TIME, `maxclients` and SHUTDOWN, checked on the
//! wire where the encoding matters and through the `redis` crate where a client library's view
//! does.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use bytes::BytesMut;
use redis::Value;
use sessiond::Config;
use sessiond_protocol::{Frame, FrameDecoder};
use sessiond_tests::{
    error_text, info_field, info_number, RawClient, TestServer, CLOCK_START_MS, IO_TIMEOUT,
};

/// A raw peer that also checks replies byte for byte, where the decoded frames of two protocol
/// versions would look alike (`$-1` and `_` both decode to [`Frame::Null`]).
struct Wire {
    stream: TcpStream,
    buffer: BytesMut,
}

impl Wire {
    fn connect(server: &TestServer) -> Wire {
        let stream = TcpStream::connect(server.addr).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        Wire {
            stream,
            buffer: BytesMut::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).expect("read");
        assert!(n > 0, "connection closed while a reply was expected");
        self.buffer.extend_from_slice(&chunk[..n]);
    }

    /// The next reply, decoded.
    fn frame(&mut self) -> Frame {
        let mut decoder = FrameDecoder::default();
        loop {
            if let Some(frame) = decoder.decode(&mut self.buffer).expect("well-formed reply") {
                return frame;
            }
            self.fill();
        }
    }

    /// The next reply, exactly as sent: `expected.len()` bytes.
    fn bytes(&mut self, expected: &[u8]) {
        while self.buffer.len() < expected.len() {
            self.fill();
        }
        let got = self.buffer.split_to(expected.len());
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected)
        );
    }
}

/// The value under `key` in a map reply, whether sent as a RESP3 map or as RESP2's flat array.
fn field<'a>(reply: &'a Frame, key: &str) -> &'a Frame {
    let key = Frame::bulk(key.to_owned());
    match reply {
        Frame::Map(pairs) => pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
        Frame::Array(items) => items
            .chunks(2)
            .find(|pair| pair[0] == key)
            .and_then(|pair| pair.get(1)),
        other => panic!("expected a map, got {other:?}"),
    }
    .unwrap_or_else(|| panic!("no {key:?} in {reply:?}"))
}

fn text(frame: &Frame) -> String {
    match frame {
        Frame::Bulk(b) | Frame::Simple(b) => String::from_utf8_lossy(b).into_owned(),
        Frame::Verbatim { data, .. } => String::from_utf8_lossy(data).into_owned(),
        other => panic!("expected text, got {other:?}"),
    }
}

fn integer(frame: &Frame) -> i64 {
    match frame {
        Frame::Integer(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

fn items(frame: &Frame) -> &[Frame] {
    match frame {
        Frame::Array(items) | Frame::Set(items) => items,
        other => panic!("expected an array, got {other:?}"),
    }
}

fn call(raw: &mut RawClient, args: &[&str]) -> Frame {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    raw.command(&args);
    raw.reply()
}

#[test]
fn ping_and_echo() {
    let server = TestServer::start();
    let mut raw = server.raw();
    assert_eq!(call(&mut raw, &["PING"]), Frame::simple("PONG"));
    assert_eq!(call(&mut raw, &["ping", "hello"]), Frame::bulk("hello"));
    assert_eq!(
        error_text(&call(&mut raw, &["PING", "a", "b"])),
        "ERR wrong number of arguments for 'ping' command"
    );
    assert_eq!(
        call(&mut raw, &["ECHO", "hello world"]),
        Frame::bulk("hello world")
    );
    raw.command(&[b"ECHO", b"\x00\r\n\xff"]);
    assert_eq!(raw.reply(), Frame::bulk(&b"\x00\r\n\xff"[..]));
    assert_eq!(
        error_text(&call(&mut raw, &["ECHO"])),
        "ERR wrong number of arguments for 'echo' command"
    );

    let mut con = server.client();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let echoed: Vec<u8> = redis::cmd("ECHO")
        .arg(&b"bin\x00ary"[..])
        .query(&mut con)
        .unwrap();
    assert_eq!(echoed, b"bin\x00ary");
}

#[test]
fn hello_describes_the_server_in_the_current_protocol() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let id = integer(&call(&mut raw, &["CLIENT", "ID"]));
    // Without arguments HELLO keeps RESP2, so the map arrives as a flat array.
    let hello = call(&mut raw, &["HELLO"]);
    assert!(
        matches!(hello, Frame::Array(ref items) if items.len() == 14),
        "{hello:?}"
    );
    assert_eq!(text(field(&hello, "server")), "sessiond");
    assert!(!text(field(&hello, "version")).is_empty());
    assert_eq!(field(&hello, "proto"), &Frame::Integer(2));
    assert_eq!(field(&hello, "id"), &Frame::Integer(id));
    assert_eq!(text(field(&hello, "mode")), "standalone");
    assert_eq!(text(field(&hello, "role")), "master");
    assert_eq!(field(&hello, "modules"), &Frame::Array(Vec::new()));
    let hello = call(&mut raw, &["HELLO", "2"]);
    assert_eq!(field(&hello, "proto"), &Frame::Integer(2));
}

#[test]
fn hello_3_switches_the_reply_encoding() {
    let server = TestServer::start();
    let mut wire = Wire::connect(&server);
    wire.send(b"GET missing\r\n");
    wire.bytes(b"$-1\r\n");

    wire.send(b"HELLO 3\r\n");
    let hello = wire.frame();
    assert!(matches!(hello, Frame::Map(_)), "{hello:?}");
    assert_eq!(field(&hello, "proto"), &Frame::Integer(3));
    wire.send(b"GET missing\r\n");
    wire.bytes(b"_\r\n");
    wire.send(b"CONFIG GET maxclients\r\n");
    wire.bytes(b"%1\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n");
    wire.send(b"CLIENT SETNAME web-1\r\nCLIENT INFO\r\n");
    wire.bytes(b"+OK\r\n");
    match wire.frame() {
        Frame::Verbatim { format, data } => {
            assert_eq!(&format, b"txt");
            assert!(data.starts_with(b"id="), "{data:?}");
        }
        other => panic!("CLIENT INFO is verbatim text in RESP3, got {other:?}"),
    }

    // HELLO without a version reports the current one; HELLO 2 switches back.
    wire.send(b"HELLO\r\n");
    assert_eq!(field(&wire.frame(), "proto"), &Frame::Integer(3));
    wire.send(b"HELLO 2\r\n");
    let hello = wire.frame();
    assert!(matches!(hello, Frame::Array(_)), "{hello:?}");
    wire.send(b"GET missing\r\n");
    wire.bytes(b"$-1\r\n");
    wire.send(b"CONFIG GET maxclients\r\n");
    wire.bytes(b"*2\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n");
}

#[test]
fn hello_refuses_unknown_versions_and_bad_options() {
    let server = TestServer::start();
    let mut raw = server.raw();
    for version in ["4", "1", "0"] {
        assert_eq!(
            error_text(&call(&mut raw, &["HELLO", version])),
            "NOPROTO unsupported protocol version"
        );
    }
    assert_eq!(
        error_text(&call(&mut raw, &["HELLO", "three"])),
        "ERR Protocol version is not an integer or out of range"
    );
    assert_eq!(
        error_text(&call(&mut raw, &["HELLO", "3", "SETNAME"])),
        "ERR Syntax error in HELLO option 'SETNAME'"
    );
    assert_eq!(
        error_text(&call(&mut raw, &["HELLO", "3", "SETNAME", "a b"])),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
    assert_eq!(
        error_text(&call(&mut raw, &["HELLO", "3", "AUTH", "bob", "secret"])),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    // None of the failed HELLOs switched the protocol.
    assert_eq!(
        field(&call(&mut raw, &["HELLO"]), "proto"),
        &Frame::Integer(2)
    );
}

#[test]
fn hello_3_with_setname_and_auth() {
    let server = TestServer::start();
    let mut raw = server.raw();
    // Without a password, the default user accepts any password, as in Redis.
    let hello = call(
        &mut raw,
        &[
            "HELLO", "3", "AUTH", "default", "anything", "SETNAME", "name",
        ],
    );
    assert_eq!(field(&hello, "proto"), &Frame::Integer(3));
    assert_eq!(call(&mut raw, &["CLIENT", "GETNAME"]), Frame::bulk("name"));

    let mut con = server.client3();
    let hello: Value = redis::cmd("HELLO").arg(3).query(&mut con).unwrap();
    assert!(matches!(hello, Value::Map(_)), "{hello:?}");
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("resp3-client")
        .query(&mut con)
        .unwrap();
    let name: Option<String> = redis::cmd("CLIENT").arg("GETNAME").query(&mut con).unwrap();
    assert_eq!(name.as_deref(), Some("resp3-client"));
}

#[test]
fn auth_without_a_password_configured() {
    let server = TestServer::start();
    let mut raw = server.raw();
    assert_eq!(
        error_text(&call(&mut raw, &["AUTH", "secret"])),
        "ERR AUTH <password> called without any password configured for the default user. \
         Are you sure your configuration is correct?"
    );
    assert_eq!(
        call(&mut raw, &["AUTH", "default", "anything"]),
        Frame::ok()
    );
    assert_eq!(
        error_text(&call(&mut raw, &["AUTH", "bob", "secret"])),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(
        error_text(&call(&mut raw, &["AUTH"])),
        "ERR wrong number of arguments for 'auth' command"
    );
    assert_eq!(call(&mut raw, &["PING"]), Frame::simple("PONG"));
}

#[test]
fn select_knows_only_the_databases_configured() {
    let server = TestServer::with_config(Config {
        databases: 1,
        ..Config::default()
    });
    let mut raw = server.raw();
    assert_eq!(call(&mut raw, &["SELECT", "0"]), Frame::ok());
    assert_eq!(
        error_text(&call(&mut raw, &["SELECT", "1"])),
        "ERR DB index is out of range"
    );
    assert_eq!(
        error_text(&call(&mut raw, &["SELECT", "x"])),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(call(&mut raw, &["PING"]), Frame::simple("PONG"));
}

#[test]
fn quit_replies_ok_then_closes() {
    let server = TestServer::start();
    let mut raw = server.raw();
    assert_eq!(call(&mut raw, &["QUIT"]), Frame::ok());
    assert!(raw.closed());

    // Commands pipelined after QUIT are not run, as in Redis.
    let mut raw = server.raw();
    raw.send(b"PING hi\r\nQUIT\r\nSET after-quit 1\r\n");
    assert_eq!(raw.reply(), Frame::bulk("hi"));
    assert_eq!(raw.reply(), Frame::ok());
    assert!(raw.closed());
    let mut raw = server.raw();
    assert_eq!(call(&mut raw, &["EXISTS", "after-quit"]), Frame::Integer(0));
}

#[test]
fn a_broken_frame_after_quit_is_neither_answered_nor_counted() {
    let server = TestServer::start();
    let mut raw = server.raw();
    // Decoded together with QUIT in one read, the broken frame is dropped with the connection.
    raw.send(b"*1\r\n$4\r\nQUIT\r\n*1\r\n$-10\r\n");
    assert_eq!(raw.reply(), Frame::ok());
    assert!(raw.closed());
    let stats = server.info("stats");
    assert_eq!(info_number(&stats, "total_error_replies_protocol"), 0);
}

#[test]
fn reset_returns_to_a_new_connections_state() {
    let server = TestServer::start();
    let mut wire = Wire::connect(&server);
    wire.send(b"HELLO 3 SETNAME before-reset\r\n");
    assert!(matches!(wire.frame(), Frame::Map(_)));
    wire.send(b"RESET\r\n");
    wire.bytes(b"+RESET\r\n");
    wire.send(b"CLIENT GETNAME\r\n");
    wire.bytes(b"$-1\r\n");
    wire.send(b"HELLO\r\n");
    let hello = wire.frame();
    assert!(matches!(hello, Frame::Array(_)), "{hello:?}");
    assert_eq!(field(&hello, "proto"), &Frame::Integer(2));
}

#[test]
fn client_subcommands() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let mut other = server.raw();
    let id = integer(&call(&mut raw, &["CLIENT", "ID"]));
    let other_id = integer(&call(&mut other, &["CLIENT", "ID"]));
    assert!(id > 0 && other_id > 0 && id != other_id);

    assert_eq!(call(&mut raw, &["CLIENT", "GETNAME"]), Frame::Null);
    assert_eq!(call(&mut raw, &["CLIENT", "SETNAME", "web-1"]), Frame::ok());
    assert_eq!(call(&mut raw, &["CLIENT", "GETNAME"]), Frame::bulk("web-1"));
    assert_eq!(
        error_text(&call(&mut raw, &["CLIENT", "SETNAME", "web 1"])),
        "ERR Client names cannot contain spaces, newlines or special characters."
    );
    assert_eq!(call(&mut raw, &["CLIENT", "GETNAME"]), Frame::bulk("web-1"));
    assert_eq!(
        call(&mut raw, &["CLIENT", "SETINFO", "LIB-NAME", "mylib"]),
        Frame::ok()
    );
    assert_eq!(
        call(&mut raw, &["CLIENT", "SETINFO", "lib-ver", "1.2.3"]),
        Frame::ok()
    );
    assert_eq!(
        error_text(&call(&mut raw, &["CLIENT", "SETINFO", "colour", "blue"])),
        "ERR Unrecognized option 'colour'"
    );
    assert_eq!(
        error_text(&call(&mut raw, &["CLIENT", "NOPE"])),
        "ERR unknown subcommand 'NOPE'. Try CLIENT HELP."
    );

    // RESP2 sends CLIENT INFO and CLIENT LIST as bulk strings.
    let info = call(&mut raw, &["CLIENT", "INFO"]);
    assert!(matches!(info, Frame::Bulk(_)), "{info:?}");
    let info = text(&info);
    assert!(info.starts_with(&format!("id={id} ")), "{info}");
    assert!(info.ends_with('\n'), "{info:?}");
    for part in [
        " name=web-1 ",
        " lib-name=mylib lib-ver=1.2.3",
        " resp=2 ",
        " db=0 ",
        " cmd=client ",
        &format!(" laddr={} ", server.addr),
    ] {
        assert!(info.contains(part), "{part:?} in {info}");
    }

    let list = text(&call(&mut raw, &["CLIENT", "LIST"]));
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(lines[0].starts_with(&format!("id={id} ")), "{list}");
    assert!(lines[1].starts_with(&format!("id={other_id} ")), "{list}");
    let only = text(&call(
        &mut raw,
        &["CLIENT", "LIST", "ID", &other_id.to_string()],
    ));
    assert_eq!(only.lines().count(), 1, "{only}");
    assert!(only.starts_with(&format!("id={other_id} ")), "{only}");
    let typed = text(&call(&mut raw, &["CLIENT", "LIST", "TYPE", "normal"]));
    assert_eq!(typed.lines().count(), 2, "{typed}");
    // By kind, as Redis: a subscriber is `pubsub` and no longer `normal`.
    let mut subscriber = server.raw();
    subscriber.command(&[b"SUBSCRIBE", b"news"]);
    subscriber.reply();
    let pubsub = text(&call(&mut raw, &["CLIENT", "LIST", "TYPE", "PubSub"]));
    assert_eq!(pubsub.lines().count(), 1, "{pubsub}");
    assert!(pubsub.contains("cmd=subscribe"), "{pubsub}");
    let typed = text(&call(&mut raw, &["CLIENT", "LIST", "TYPE", "normal"]));
    assert_eq!(typed.lines().count(), 2, "{typed}");
    for kind in ["replica", "slave", "master"] {
        assert_eq!(text(&call(&mut raw, &["CLIENT", "LIST", "TYPE", kind])), "");
    }
    assert_eq!(
        call(&mut raw, &["CLIENT", "LIST", "TYPE", "robot"]),
        Frame::error("ERR Unknown client type 'robot'")
    );

    // An empty name clears it.
    assert_eq!(call(&mut raw, &["CLIENT", "SETNAME", ""]), Frame::ok());
    assert_eq!(call(&mut raw, &["CLIENT", "GETNAME"]), Frame::Null);
}

#[test]
fn info_reports_redis_fields_by_section() {
    let server = TestServer::start();
    let mut con = server.client();
    let mut other = server.raw();
    assert_eq!(call(&mut other, &["PING"]), Frame::simple("PONG"));
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    let _: () = redis::cmd("SET")
        .arg("volatile")
        .arg("v")
        .arg("EX")
        .arg(100)
        .query(&mut con)
        .unwrap();

    let info: String = redis::cmd("INFO").query(&mut con).unwrap();
    for title in [
        "# Server\r\n",
        "# Clients\r\n",
        "# Memory\r\n",
        "# Stats\r\n",
        "# Keyspace\r\n",
    ] {
        assert!(info.contains(title), "{title:?} in {info}");
    }
    assert!(!info_field(&info, "redis_version").is_empty());
    assert_eq!(
        info_number(&info, "tcp_port"),
        u64::from(server.addr.port())
    );
    assert_eq!(info_number(&info, "connected_clients"), 2);
    assert_eq!(info_number(&info, "maxclients"), 10_000);
    assert!(info_number(&info, "used_memory") > 0, "{info}");
    assert!(info_number(&info, "total_commands_processed") >= 2);
    info_number(&info, "keyspace_hits");
    info_number(&info, "keyspace_misses");
    assert!(
        info.contains("db0:keys=2,expires=1,avg_ttl=0\r\n"),
        "{info}"
    );

    // One section only.
    let server_only: String = redis::cmd("INFO").arg("server").query(&mut con).unwrap();
    assert!(server_only.starts_with("# Server\r\n"), "{server_only}");
    assert!(!server_only.contains("# Clients"), "{server_only}");
    let two: String = redis::cmd("INFO")
        .arg("CLIENTS")
        .arg("memory")
        .query(&mut con)
        .unwrap();
    assert!(
        two.contains("# Clients\r\n") && two.contains("# Memory\r\n"),
        "{two}"
    );
    assert!(!two.contains("# Server"), "{two}");

    // Counters move with the commands of this connection.
    let before: String = redis::cmd("INFO").arg("stats").query(&mut con).unwrap();
    let found: Option<String> = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert!(found.is_some());
    let missing: Option<String> = redis::cmd("GET").arg("nope").query(&mut con).unwrap();
    assert!(missing.is_none());
    let after: String = redis::cmd("INFO").arg("stats").query(&mut con).unwrap();
    assert_eq!(
        info_number(&after, "keyspace_hits"),
        info_number(&before, "keyspace_hits") + 1
    );
    assert_eq!(
        info_number(&after, "keyspace_misses"),
        info_number(&before, "keyspace_misses") + 1
    );
    assert!(
        info_number(&after, "total_commands_processed")
            >= info_number(&before, "total_commands_processed") + 2
    );

    // RESP3 sends INFO as verbatim text.
    let mut raw = server.raw();
    call(&mut raw, &["HELLO", "3"]);
    let reply = call(&mut raw, &["INFO", "keyspace"]);
    assert!(
        matches!(&reply, Frame::Verbatim { format, .. } if format == b"txt"),
        "{reply:?}"
    );
}

#[test]
fn command_introspection() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let count = integer(&call(&mut raw, &["COMMAND", "COUNT"]));
    let list = call(&mut raw, &["COMMAND", "LIST"]);
    assert_eq!(items(&list).len() as i64, count);
    assert!(items(&list).contains(&Frame::bulk("get")));
    assert_eq!(items(&call(&mut raw, &["COMMAND"])).len() as i64, count);

    let info = call(&mut raw, &["COMMAND", "INFO", "get", "NOSUCH", "SET"]);
    let [get, missing, set] = items(&info) else {
        panic!("three entries: {info:?}");
    };
    let get = items(get);
    assert_eq!(get[0], Frame::bulk("get"));
    assert_eq!(get[1], Frame::Integer(2));
    let flags: Vec<String> = items(&get[2]).iter().map(text).collect();
    assert!(flags.contains(&"readonly".to_owned()), "{flags:?}");
    assert_eq!(
        &get[3..6],
        &[Frame::Integer(1), Frame::Integer(1), Frame::Integer(1)]
    );
    // Redis 7 answers an unknown name with a null.
    assert_eq!(missing, &Frame::Null);
    assert_eq!(items(set)[1], Frame::Integer(-3));

    let docs = call(&mut raw, &["COMMAND", "DOCS", "get"]);
    let get_docs = field(&docs, "get");
    assert_eq!(text(field(get_docs, "group")), "string");
    assert!(!text(field(get_docs, "summary")).is_empty());

    call(&mut raw, &["HELLO", "3"]);
    let docs = call(&mut raw, &["COMMAND", "DOCS", "get"]);
    assert!(matches!(docs, Frame::Map(_)), "{docs:?}");
    assert!(matches!(field(&docs, "get"), Frame::Map(_)), "{docs:?}");
    let info = call(&mut raw, &["COMMAND", "INFO", "get"]);
    assert!(matches!(&items(&info)[0], Frame::Array(get) if matches!(get[2], Frame::Set(_))));

    assert_eq!(
        error_text(&call(&mut raw, &["COMMAND", "NOPE"])),
        "ERR unknown subcommand 'NOPE'. Try COMMAND HELP."
    );
}

#[test]
fn config_get_is_a_read_only_view() {
    let server = TestServer::with_config(Config {
        maxclients: 123,
        ..Config::default()
    });
    let mut con = server.client();
    let maxclients: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxc*")
        .query(&mut con)
        .unwrap();
    assert_eq!(maxclients, vec!["maxclients", "123"]);
    let upper: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("MAXCLIENTS")
        .query(&mut con)
        .unwrap();
    assert_eq!(upper, vec!["maxclients", "123"]);
    let two: std::collections::HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("port")
        .arg("bind")
        .query(&mut con)
        .unwrap();
    assert_eq!(two["port"], server.addr.port().to_string());
    assert_eq!(two["bind"], "127.0.0.1");
    let none: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("no-such-setting")
        .query(&mut con)
        .unwrap();
    assert!(none.is_empty());
    let everything: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("*")
        .query(&mut con)
        .unwrap();
    for name in ["proto-max-bulk-len", "maxclients", "databases"] {
        assert!(
            everything.iter().any(|n| n == name),
            "{name} in {everything:?}"
        );
    }

    let mut raw = server.raw();
    let refused = error_text(&call(&mut raw, &["CONFIG", "SET", "databases", "5"]));
    assert_eq!(
        refused,
        "ERR CONFIG SET failed (possibly related to argument 'databases') - can't set immutable config"
    );
    assert_eq!(
        call(&mut raw, &["CONFIG", "GET", "maxclients"]),
        Frame::Array(vec![Frame::bulk("maxclients"), Frame::bulk("123")])
    );
    assert_eq!(
        error_text(&call(&mut raw, &["CONFIG", "GET"])),
        "ERR wrong number of arguments for 'config|get' command"
    );

    // A map in RESP3.
    let mut con3 = server.client3();
    let map: Value = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxclients")
        .query(&mut con3)
        .unwrap();
    assert_eq!(
        map,
        Value::Map(vec![(
            Value::BulkString(b"maxclients".to_vec()),
            Value::BulkString(b"123".to_vec())
        )])
    );
}

#[test]
fn time_comes_from_the_server_clock() {
    let server = TestServer::with_manual_clock();
    let mut raw = server.raw();
    let seconds = (CLOCK_START_MS / 1000).to_string();
    assert_eq!(
        call(&mut raw, &["TIME"]),
        Frame::Array(vec![Frame::bulk(seconds), Frame::bulk("0")])
    );
    server.clock.as_ref().unwrap().advance(1_234);
    let seconds = (CLOCK_START_MS / 1000 + 1).to_string();
    assert_eq!(
        call(&mut raw, &["TIME"]),
        Frame::Array(vec![Frame::bulk(seconds), Frame::bulk("234000")])
    );

    let server = TestServer::start();
    let mut con = server.client();
    let unix_seconds = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs()
    };
    let before = unix_seconds();
    let (seconds, micros): (u64, u64) = redis::cmd("TIME").query(&mut con).unwrap();
    let after = unix_seconds();
    // The server reads the same system clock between our two readings.
    assert!(
        (before..=after).contains(&seconds),
        "{before} <= {seconds} <= {after}"
    );
    assert!(micros < 1_000_000);
}

#[test]
fn maxclients_refuses_extra_connections_and_keeps_serving_the_others() {
    let server = TestServer::with_config(Config {
        maxclients: 5,
        ..Config::default()
    });
    let mut admitted: Vec<RawClient> = (0..5).map(|_| server.raw()).collect();
    for raw in &mut admitted {
        // A reply proves the connection was accepted and counted.
        assert_eq!(call(raw, &["PING"]), Frame::simple("PONG"));
    }
    let mut refused: Vec<RawClient> = (0..105).map(|_| server.raw()).collect();
    for raw in &mut refused {
        assert_eq!(
            error_text(&raw.reply()),
            "ERR max number of clients reached"
        );
        assert!(raw.closed());
    }
    for raw in &mut admitted {
        assert_eq!(call(raw, &["PING"]), Frame::simple("PONG"));
    }
    let info = text(&call(&mut admitted[0], &["INFO"]));
    assert_eq!(info_number(&info, "connected_clients"), 5);
    assert_eq!(info_number(&info, "maxclients"), 5);
    assert_eq!(info_number(&info, "rejected_connections"), 105);
}

#[test]
fn shutdown_from_a_client_stops_the_server() {
    let server = TestServer::start();
    let mut bystander = server.raw();
    assert_eq!(call(&mut bystander, &["PING"]), Frame::simple("PONG"));
    let mut raw = server.raw();
    assert_eq!(
        error_text(&call(&mut raw, &["SHUTDOWN", "ABORT"])),
        "ERR No shutdown in progress."
    );
    assert_eq!(
        error_text(&call(&mut raw, &["SHUTDOWN", "SAVE", "NOSAVE"])),
        "ERR syntax error"
    );
    // Like Redis, a successful SHUTDOWN sends no reply: the connection just closes.
    raw.command(&[b"SHUTDOWN"]);
    assert_eq!(raw.read_frame(), None);
    assert!(bystander.closed(), "every connection is closed");
    // The listener goes away: new connections are refused. One that slips in before the
    // accept loop has stopped is closed without being served, or reset by the kernel when the
    // listener closes during its handshake, so each attempt ends.
    loop {
        match TcpStream::connect(server.addr) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => continue,
            Err(e) => panic!("connect failed unexpectedly: {e}"),
            Ok(mut late) => {
                late.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
                let _ = late.write_all(b"PING\r\n");
                let mut reply = Vec::new();
                match late.read_to_end(&mut reply) {
                    Ok(_) => assert!(
                        !reply.starts_with(b"+PONG"),
                        "served a command after SHUTDOWN"
                    ),
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
                    Err(e) => panic!("a connection after SHUTDOWN hangs: {e}"),
                }
            }
        }
    }
    assert!(server.shared.shutting_down());
}

/// The runtime is the binary's: on two cores or more, one thread runs everything and polls its
/// sockets before it sleeps (a poller task on that thread), unless `--idle-poll-us 0`. That no
/// multi-thread runtime polls is `idle_poll::applies`'s unit test: a probe sent here would run
/// on whichever worker took it, and miss a poller on the other.
#[test]
fn the_server_thread_polls_when_it_is_alone_on_a_core_to_spare() {
    let spare_core = std::thread::available_parallelism().is_ok_and(|cores| cores.get() > 1);
    for (config, polls) in [
        (
            Config::default(),
            spare_core && Config::default().worker_threads() == 1,
        ),
        (
            Config {
                threads: 1,
                ..Config::default()
            },
            spare_core,
        ),
        (
            Config {
                threads: 1,
                idle_poll: std::time::Duration::ZERO,
                ..Config::default()
            },
            false,
        ),
    ] {
        let threads = config.threads;
        let server = TestServer::with_config(config);
        let mut con = server.client();
        let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
        let value: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
        assert_eq!(value, "v");
        assert_eq!(
            server.on_server_runtime(sessiond::idle_poll::running),
            polls,
            "threads {threads}"
        );
    }
}
