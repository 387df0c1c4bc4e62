//! Malformed and hostile input on a raw socket: a broken frame earns Redis's
//! `-ERR Protocol error: ...` and a close, a mistake inside a well-formed command earns an error
//! reply and the connection lives on, and whatever one connection sends, the others are served.

use rand::{Rng, SeedableRng};
use sessiond::Config;
use sessiond_protocol::{Frame, Limits};
use sessiond_tests::{error_text, RawClient, TestServer};

/// Sends `input` on a fresh connection and checks that the server answers the protocol error
/// `message` in Redis's words, then closes.
fn assert_protocol_error(server: &TestServer, input: &[u8], message: &str) {
    let mut raw = server.raw();
    raw.send(input);
    assert_eq!(
        error_text(&raw.reply()),
        format!("ERR Protocol error: {message}"),
        "input {:?}",
        String::from_utf8_lossy(input)
    );
    assert!(raw.closed(), "connection closed after a protocol error");
}

/// A connection opened before the hostile input still gets answers.
fn assert_served(observer: &mut RawClient) {
    observer.command(&[b"PING"]);
    assert_eq!(observer.reply(), Frame::simple("PONG"));
}

#[test]
fn negative_multibulk_count_is_ignored() {
    let server = TestServer::start();
    let mut raw = server.raw();
    // Redis skips `*<n>` with n <= 0 and reads on; so do we, across reads and within one.
    raw.send(b"*-10\r\n");
    raw.command(&[b"PING"]);
    assert_eq!(raw.reply(), Frame::simple("PONG"));
    raw.send(b"*-1\r\n*0\r\n*1\r\n$4\r\nPING\r\n");
    assert_eq!(raw.reply(), Frame::simple("PONG"));
}

#[test]
fn malformed_headers_get_redis_protocol_errors_and_a_close() {
    let server = TestServer::start();
    let mut observer = server.raw();
    assert_served(&mut observer);
    let cases: &[(&[u8], &str)] = &[
        (b"*3000000000\r\n", "invalid multibulk length"),
        (b"*abc\r\n", "invalid multibulk length"),
        (b"*1\r\n$-10\r\n", "invalid bulk length"),
        (b"*1\r\n$2000000000\r\n", "invalid bulk length"),
        (b"*1\r\n$blabla\r\n", "invalid bulk length"),
        // A bulk without its `$`: Redis names the byte it found instead.
        (b"*1\r\nPING\r\n", "expected '$', got 'P'"),
        (b"*2\r\n$3\r\nGET\r\n:1\r\n", "expected '$', got ':'"),
    ];
    for (input, message) in cases {
        assert_protocol_error(&server, input, message);
        assert_served(&mut observer);
    }
    // The command before the broken one in the same read is still answered.
    let mut raw = server.raw();
    raw.send(b"*1\r\n$4\r\nPING\r\n*1\r\n$-10\r\n");
    assert_eq!(raw.reply(), Frame::simple("PONG"));
    assert_eq!(
        error_text(&raw.reply()),
        "ERR Protocol error: invalid bulk length"
    );
    assert!(raw.closed());
    assert_served(&mut observer);
}

#[test]
fn bulk_over_the_configured_limit_is_refused() {
    let server = TestServer::with_config(Config {
        limits: Limits {
            max_bulk_len: 1024,
            ..Default::default()
        },
        ..Default::default()
    });
    let mut observer = server.raw();
    assert_served(&mut observer);

    // Exactly at the limit is fine.
    let mut raw = server.raw();
    let largest = vec![b'x'; 1024];
    raw.command(&[b"ECHO", &largest]);
    assert_eq!(raw.reply(), Frame::bulk(largest));

    // One byte more is refused from the header alone, before any payload arrives.
    assert_protocol_error(
        &server,
        b"*2\r\n$4\r\nECHO\r\n$1025\r\n",
        "invalid bulk length",
    );
    assert_served(&mut observer);

    // An inline argument is held to the same limit.
    let mut inline = b"ECHO ".to_vec();
    inline.extend(std::iter::repeat_n(b'y', 1025));
    inline.extend_from_slice(b"\r\n");
    assert_protocol_error(&server, &inline, "invalid bulk length");
    assert_served(&mut observer);
}

#[test]
fn a_frame_sent_one_byte_at_a_time_is_answered_normally() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let commands: &[u8] =
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n";
    for byte in commands {
        raw.send(std::slice::from_ref(byte));
    }
    assert_eq!(raw.reply(), Frame::ok());
    assert_eq!(raw.reply(), Frame::bulk("hello"));
    assert_eq!(raw.reply(), Frame::simple("PONG"));
}

#[test]
fn inline_commands_work() {
    let server = TestServer::start();
    let mut raw = server.raw();
    raw.send(b"PING\r\n");
    assert_eq!(raw.reply(), Frame::simple("PONG"));
    // A bare LF ends a line too, and blank lines are skipped.
    raw.send(b"\r\n   \r\nping\n");
    assert_eq!(raw.reply(), Frame::simple("PONG"));
    raw.send(b"SET a \"b c\"\r\nGET a\r\n");
    assert_eq!(raw.reply(), Frame::ok());
    assert_eq!(raw.reply(), Frame::bulk("b c"));
    // sdssplitargs escapes: \x41 and \n in double quotes, \' in single quotes.
    raw.send(b"SET q \"\\x41\\n\" \r\nGET q\r\nECHO 'it\\'s'\r\n");
    assert_eq!(raw.reply(), Frame::ok());
    assert_eq!(raw.reply(), Frame::bulk("A\n"));
    assert_eq!(raw.reply(), Frame::bulk("it's"));
    // Inline and RESP commands mix on one connection.
    raw.command(&[b"GET", b"a"]);
    raw.send(b"GET a\r\n");
    assert_eq!(raw.reply(), Frame::bulk("b c"));
    assert_eq!(raw.reply(), Frame::bulk("b c"));
}

#[test]
fn unbalanced_quotes_are_a_protocol_error() {
    let server = TestServer::start();
    let mut observer = server.raw();
    let cases: &[&[u8]] = &[
        b"SET a \"b c\r\n",
        b"SET a 'b c\r\n",
        // A closing quote must be followed by a space or the end of the line.
        b"SET a \"b\"c\r\n",
    ];
    for input in cases {
        assert_protocol_error(&server, input, "unbalanced quotes in request");
        assert_served(&mut observer);
    }
}

#[test]
fn inline_line_over_the_limit_is_a_protocol_error() {
    let server = TestServer::start();
    let mut observer = server.raw();
    let limit = Limits::default().max_inline_len;
    // One byte over the limit with no end of line in sight; all of it is read before the
    // server decides, so its close cannot reset the connection before the reply arrives.
    let line = vec![b'a'; limit + 1];
    assert_protocol_error(&server, &line, "too big inline request");
    assert_served(&mut observer);
}

#[test]
fn nul_and_random_bytes_never_bring_the_server_down() {
    let server = TestServer::start();
    let mut observer = server.raw();
    for seed in 0..16u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut garbage = vec![0u8];
        garbage.extend((0..4096).map(|_| rng.random::<u8>()));
        let replies = server.send_and_drain(&garbage);
        for reply in &replies {
            assert!(
                reply.is_error(),
                "seed {seed}: garbage only earns errors, got {reply:?}"
            );
        }
        assert_served(&mut observer);
    }
    let mut con = server.client();
    assert_eq!(
        redis::cmd("DBSIZE").query::<i64>(&mut con).unwrap(),
        0,
        "garbage wrote nothing"
    );
}

#[test]
fn unknown_commands_are_named_in_the_error_and_the_connection_lives() {
    let server = TestServer::start();
    let mut raw = server.raw();
    raw.command(&[b"foo", b"a", b"b"]);
    assert_eq!(
        error_text(&raw.reply()),
        "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
    );
    raw.send(b"foo a b\r\n");
    assert_eq!(
        error_text(&raw.reply()),
        "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
    );
    raw.command(&[b"nope"]);
    assert_eq!(
        error_text(&raw.reply()),
        "ERR unknown command 'nope', with args beginning with: "
    );
    assert_served(&mut raw);
}

#[test]
fn wrong_arity_uses_redis_wording_and_the_connection_lives() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let cases: &[(&[&[u8]], &str)] = &[
        (&[b"GET"], "get"),
        (&[b"get", b"a", b"b"], "get"),
        (&[b"SET", b"k"], "set"),
        (&[b"MSET", b"a", b"1", b"b"], "mset"),
        (&[b"ECHO"], "echo"),
        (&[b"PING", b"a", b"b"], "ping"),
    ];
    for (args, name) in cases {
        raw.command(args);
        assert_eq!(
            error_text(&raw.reply()),
            format!("ERR wrong number of arguments for '{name}' command")
        );
    }
    assert_served(&mut raw);
}
