//! Pub/sub: SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their UNSUBSCRIBEs, PUBLISH, SPUBLISH and
//! PUBSUB, through redis-rs in RESP2 and RESP3 and as raw bytes; RESP2's subscribed mode and
//! RESP3's pushes between replies; the pubsub output limit cutting off a subscriber that does
//! not read, with the real server's memory measured; channel permissions of named users.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use redis::{Commands, Connection, Value};
use sessiond::{Config, RawConfig};
use sessiond_protocol::Frame;
use sessiond_tests::{error_text, rss_kib, RawClient, TestServer};

use crate::daemon::{Daemon, ScratchDir};

fn bulk(text: &str) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(text.as_bytes()))
}

/// The frame of a pub/sub confirmation or message: an array in RESP2, a push in RESP3.
fn event(resp3: bool, items: Vec<Frame>) -> Frame {
    if resp3 {
        Frame::Push(items)
    } else {
        Frame::Array(items)
    }
}

fn raw(server: &TestServer, resp3: bool) -> RawClient {
    let mut raw = server.raw();
    if resp3 {
        raw.command(&[b"HELLO", b"3"]);
        assert!(matches!(raw.reply(), Frame::Map(_)));
    }
    raw
}

fn publish(con: &mut Connection, channel: &str, message: &str) -> i64 {
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(message)
        .query(con)
        .expect("PUBLISH")
}

#[test]
fn messages_reach_channel_and_pattern_subscribers_through_redis_rs() {
    for resp3 in [false, true] {
        let server = TestServer::start();
        let mut sub_con = server.connect(resp3);
        let mut publisher = server.client();
        let mut sub = sub_con.as_pubsub();
        sub.subscribe("news").unwrap();
        sub.psubscribe("n*").unwrap();
        assert_eq!(publish(&mut publisher, "news", "hello"), 2);
        assert_eq!(publish(&mut publisher, "nothing-here", "x"), 1);
        assert_eq!(publish(&mut publisher, "other", "x"), 0);
        let mut got = Vec::new();
        for _ in 0..3 {
            let msg = sub.get_message().unwrap();
            let pattern: Option<String> = msg.get_pattern().ok();
            got.push((
                msg.get_channel_name().to_owned(),
                pattern,
                msg.get_payload::<String>().unwrap(),
            ));
        }
        got.sort();
        assert_eq!(
            got,
            [
                ("news".into(), None, "hello".into()),
                ("news".into(), Some("n*".into()), "hello".into()),
                ("nothing-here".into(), Some("n*".into()), "x".into()),
            ],
            "resp3: {resp3}"
        );
        sub.unsubscribe("news").unwrap();
        sub.punsubscribe("n*").unwrap();
        drop(sub);
        assert_eq!(publish(&mut publisher, "news", "late"), 0);
    }
}

#[test]
fn confirmations_count_subscriptions_as_redis_does() {
    for resp3 in [false, true] {
        let server = TestServer::start();
        let mut raw = raw(&server, resp3);
        let e = |items: Vec<Frame>| event(resp3, items);
        let confirm = |word: &str, name: Option<&str>, n: i64| {
            e(vec![
                bulk(word),
                name.map_or(Frame::Null, bulk),
                Frame::Integer(n),
            ])
        };
        // Nothing to leave: one confirmation with a null name.
        raw.command(&[b"UNSUBSCRIBE"]);
        assert_eq!(raw.reply(), confirm("unsubscribe", None, 0));
        raw.command(&[b"PUNSUBSCRIBE", b"x", b"y"]);
        assert_eq!(raw.reply(), confirm("punsubscribe", Some("x"), 0));
        assert_eq!(raw.reply(), confirm("punsubscribe", Some("y"), 0));
        raw.command(&[b"SUBSCRIBE", b"a", b"b", b"a"]);
        assert_eq!(raw.reply(), confirm("subscribe", Some("a"), 1));
        assert_eq!(raw.reply(), confirm("subscribe", Some("b"), 2));
        assert_eq!(raw.reply(), confirm("subscribe", Some("a"), 2));
        raw.command(&[b"PSUBSCRIBE", b"p*"]);
        assert_eq!(raw.reply(), confirm("psubscribe", Some("p*"), 3));
        // Shard channels are counted apart.
        raw.command(&[b"SSUBSCRIBE", b"s1"]);
        assert_eq!(raw.reply(), confirm("ssubscribe", Some("s1"), 1));
        raw.command(&[b"UNSUBSCRIBE", b"b", b"zzz"]);
        assert_eq!(raw.reply(), confirm("unsubscribe", Some("b"), 2));
        assert_eq!(raw.reply(), confirm("unsubscribe", Some("zzz"), 2));
        raw.command(&[b"PUNSUBSCRIBE"]);
        assert_eq!(raw.reply(), confirm("punsubscribe", Some("p*"), 1));
        raw.command(&[b"SUNSUBSCRIBE"]);
        assert_eq!(raw.reply(), confirm("sunsubscribe", Some("s1"), 0));
        raw.command(&[b"UNSUBSCRIBE"]);
        assert_eq!(raw.reply(), confirm("unsubscribe", Some("a"), 0));
        // Out of the subscribed mode: ordinary commands again.
        raw.command(&[b"SET", b"k", b"v"]);
        assert_eq!(raw.reply(), Frame::simple("OK"));
    }
}

#[test]
fn resp2_subscribed_mode_allows_only_the_subscribe_commands_ping_quit_and_reset() {
    let server = TestServer::start();
    let mut raw = raw(&server, false);
    raw.command(&[b"SUBSCRIBE", b"c"]);
    raw.reply();
    raw.command(&[b"GET", b"k"]);
    assert_eq!(
        error_text(&raw.reply()),
        "ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET \
         are allowed in this context"
    );
    raw.command(&[b"PUBLISH", b"c", b"m"]);
    assert!(error_text(&raw.reply()).starts_with("ERR Can't execute 'publish'"));
    raw.command(&[b"PING"]);
    assert_eq!(raw.reply(), Frame::Array(vec![bulk("pong"), bulk("")]));
    raw.command(&[b"PING", b"hi"]);
    assert_eq!(raw.reply(), Frame::Array(vec![bulk("pong"), bulk("hi")]));
    // The connection still works, and receives.
    let mut publisher = server.client();
    assert_eq!(publish(&mut publisher, "c", "m1"), 1);
    assert_eq!(
        raw.reply(),
        Frame::Array(vec![bulk("message"), bulk("c"), bulk("m1")])
    );
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut publisher)
        .unwrap();
    assert!(list.contains("flags=P db=0 sub=1 psub=0 ssub=0"), "{list}");
    // RESET leaves every subscription.
    raw.command(&[b"RESET"]);
    assert_eq!(raw.reply(), Frame::simple("RESET"));
    assert_eq!(publish(&mut publisher, "c", "m2"), 0);
    raw.command(&[b"GET", b"k"]);
    assert_eq!(raw.reply(), Frame::Null);
    raw.command(&[b"SUBSCRIBE", b"c"]);
    raw.reply();
    raw.command(&[b"QUIT"]);
    assert_eq!(raw.reply(), Frame::simple("OK"));
    assert!(raw.closed());
}

#[test]
fn resp3_pushes_come_between_ordinary_replies_on_one_connection() {
    let server = TestServer::start();
    let mut raw = raw(&server, true);
    raw.command(&[b"SUBSCRIBE", b"c"]);
    raw.reply();
    raw.command(&[b"SET", b"k", b"v"]);
    assert_eq!(raw.reply(), Frame::simple("OK"));
    let mut publisher = server.client();
    assert_eq!(publish(&mut publisher, "c", "m1"), 1);
    // The push arrives by itself, with no command sent...
    assert_eq!(
        raw.reply(),
        Frame::Push(vec![bulk("message"), bulk("c"), bulk("m1")])
    );
    // ...and one published while the connection is busy comes before the next reply.
    assert_eq!(publish(&mut publisher, "c", "m2"), 1);
    raw.command(&[b"GET", b"k"]);
    let first = raw.reply();
    let second = raw.reply();
    assert_eq!(
        first,
        Frame::Push(vec![bulk("message"), bulk("c"), bulk("m2")])
    );
    assert_eq!(second, bulk("v"));
    raw.command(&[b"PING"]);
    assert_eq!(raw.reply(), Frame::simple("PONG"));
}

#[test]
fn unsubscribe_delivers_what_was_published_before_it() {
    let server = TestServer::start();
    let mut raw = raw(&server, false);
    raw.command(&[b"SUBSCRIBE", b"c"]);
    raw.reply();
    let mut publisher = server.client();
    for i in 0..100 {
        assert_eq!(publish(&mut publisher, "c", &i.to_string()), 1);
    }
    raw.command(&[b"UNSUBSCRIBE", b"c"]);
    for i in 0..100 {
        assert_eq!(
            raw.reply(),
            Frame::Array(vec![bulk("message"), bulk("c"), bulk(&i.to_string())])
        );
    }
    assert_eq!(
        raw.reply(),
        Frame::Array(vec![bulk("unsubscribe"), bulk("c"), Frame::Integer(0)])
    );
}

#[test]
fn unsubscribe_inside_exec_leaves_messages_out_of_the_exec_reply() {
    let server = TestServer::start();
    let mut raw = raw(&server, true);
    raw.command(&[b"SUBSCRIBE", b"c"]);
    raw.reply();
    raw.command(&[b"MULTI"]);
    assert_eq!(raw.reply(), Frame::simple("OK"));
    // The transaction publishes to its own connection, then unsubscribes: the message is
    // queued for it inside EXEC, and must not land inside EXEC's reply.
    for command in [&[&b"PUBLISH"[..], b"c", b"inside"][..], &[b"UNSUBSCRIBE"]] {
        raw.command(command);
        assert_eq!(raw.reply(), Frame::simple("QUEUED"));
    }
    raw.command(&[b"EXEC"]);
    assert_eq!(
        raw.reply(),
        Frame::Array(vec![
            Frame::Integer(1),
            Frame::Push(vec![bulk("unsubscribe"), bulk("c"), Frame::Integer(0)]),
        ])
    );
    raw.command(&[b"PING"]);
    assert_eq!(
        raw.reply(),
        Frame::Push(vec![bulk("message"), bulk("c"), bulk("inside")])
    );
    assert_eq!(raw.reply(), Frame::simple("PONG"));
}

#[test]
fn shard_channels_are_a_namespace_of_their_own() {
    for resp3 in [false, true] {
        let server = TestServer::start();
        let mut raw = raw(&server, resp3);
        raw.command(&[b"SSUBSCRIBE", b"orders"]);
        raw.reply();
        let mut publisher = server.connect(resp3);
        assert_eq!(publish(&mut publisher, "orders", "x"), 0);
        let n: i64 = redis::cmd("SPUBLISH")
            .arg("orders")
            .arg("y")
            .query(&mut publisher)
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            raw.reply(),
            event(resp3, vec![bulk("smessage"), bulk("orders"), bulk("y")])
        );
        let shard: Vec<String> = redis::cmd("PUBSUB")
            .arg("SHARDCHANNELS")
            .query(&mut publisher)
            .unwrap();
        assert_eq!(shard, ["orders"]);
        let plain: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query(&mut publisher)
            .unwrap();
        assert!(plain.is_empty());
        let counts: Vec<Value> = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg("orders")
            .arg("none")
            .query(&mut publisher)
            .unwrap();
        assert_eq!(
            counts,
            [
                Value::BulkString(b"orders".to_vec()),
                Value::Int(1),
                Value::BulkString(b"none".to_vec()),
                Value::Int(0),
            ]
        );
    }
}

#[test]
fn pubsub_introspection_and_its_errors() {
    for resp3 in [false, true] {
        let server = TestServer::start();
        let mut a = raw(&server, false);
        a.command(&[b"SUBSCRIBE", b"news.tech", b"news.art", b"weather"]);
        for _ in 0..3 {
            a.reply();
        }
        a.command(&[b"PSUBSCRIBE", b"news.*", b"w*"]);
        a.reply();
        a.reply();
        let mut b = raw(&server, false);
        b.command(&[b"PSUBSCRIBE", b"news.*"]);
        b.reply();
        let mut con = server.connect(resp3);
        let mut channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .query(&mut con)
            .unwrap();
        channels.sort();
        assert_eq!(channels, ["news.art", "news.tech", "weather"]);
        let mut news: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg("news.*")
            .query(&mut con)
            .unwrap();
        news.sort();
        assert_eq!(news, ["news.art", "news.tech"]);
        let numsub: Vec<Value> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("weather")
            .arg("news.*")
            .query(&mut con)
            .unwrap();
        assert_eq!(numsub[1], Value::Int(1));
        assert_eq!(numsub[3], Value::Int(0), "patterns are not channels");
        let numpat: i64 = redis::cmd("PUBSUB").arg("NUMPAT").query(&mut con).unwrap();
        assert_eq!(numpat, 2, "each pattern once");
        let help: Vec<String> = redis::cmd("PUBSUB").arg("HELP").query(&mut con).unwrap();
        assert!(help[0].starts_with("PUBSUB <subcommand>"));
        let mut error = |args: &[&str]| {
            redis::cmd(args[0])
                .arg(&args[1..])
                .query::<Value>(&mut con)
                .expect_err("an error")
                .to_string()
        };
        assert!(error(&["PUBSUB", "NOPE"]).contains("unknown subcommand 'NOPE'. Try PUBSUB HELP."));
        assert!(error(&["PUBSUB", "NUMPAT", "x"])
            .contains("wrong number of arguments for 'pubsub|numpat' command"));
        assert!(error(&["PUBSUB", "channels", "a", "b"]).contains(
            "unknown subcommand or wrong number of arguments for 'channels'. Try PUBSUB HELP."
        ));
        assert!(error(&["PUBSUB"]).contains("wrong number of arguments for 'pubsub' command"));
        assert!(error(&["PUBLISH", "c"]).contains("wrong number of arguments for 'publish'"));
        assert!(error(&["SUBSCRIBE"]).contains("wrong number of arguments for 'subscribe'"));
        assert!(error(&["PUBLISH", "__session__:created", "forged x"])
            .contains("the server's session events only"));
        // A pattern is bounded like KEYS's.
        let long = "*".repeat(300);
        assert!(error(&["PSUBSCRIBE", &long]).contains("pattern"));
        // Scripts may not subscribe.
        assert!(error(&["EVAL", "return redis.call('subscribe', 'c')", "0"])
            .contains("This Redis command is not allowed from script"));
        let info = server.info("stats");
        assert!(info.contains("pubsub_channels:3\r\n"), "{info}");
        assert!(info.contains("pubsub_patterns:2\r\n"), "{info}");
        drop(a);
        drop(b);
    }
}

#[test]
fn a_connections_subscriptions_are_bounded_by_the_query_buffer_limit() {
    let mut config = Config::default();
    config.limits.max_query_buffer = 1 << 20;
    let server = TestServer::with_config(config);
    let mut raw = raw(&server, false);
    // 1,000 channels of 900 bytes: under 1 MiB with their bookkeeping.
    for i in 0..1000 {
        let name = format!("{i:0>900}");
        raw.command(&[b"SUBSCRIBE", name.as_bytes()]);
        assert_eq!(
            raw.reply(),
            event(
                false,
                vec![bulk("subscribe"), bulk(&name), Frame::Integer(i + 1)]
            )
        );
    }
    let name = "x".repeat(100_000);
    raw.command(&[b"SUBSCRIBE", name.as_bytes()]);
    assert_eq!(
        error_text(&raw.reply()),
        "ERR the connection's subscriptions would exceed 'client-query-buffer-limit'"
    );
    // Still subscribed to the rest, and leaving makes room again.
    raw.command(&[b"UNSUBSCRIBE"]);
    for _ in 0..1000 {
        raw.reply();
    }
    raw.command(&[b"SUBSCRIBE", name.as_bytes()]);
    assert_eq!(
        raw.reply(),
        event(
            false,
            vec![bulk("subscribe"), bulk(&name), Frame::Integer(1)]
        )
    );
}

/// Clients closed for their output limits so far.
fn cut_off(server: &TestServer) -> u64 {
    server
        .shared
        .stats
        .client_output_buffer_limit_disconnections
        .load(Ordering::Relaxed)
}

#[test]
fn a_subscriber_that_does_not_read_is_cut_off_and_publish_never_waits_for_it() {
    let mut config = Config::default();
    config.output_limits.pubsub = sessiond::output_limit::ClassLimit {
        hard_bytes: 1 << 20,
        soft_bytes: 0,
        soft_seconds: 0,
    };
    let server = TestServer::with_config(config);
    let mut slow = raw(&server, false);
    slow.command(&[b"SUBSCRIBE", b"firehose"]);
    let mut reader = server.connect(true);
    let mut sub = reader.as_pubsub();
    sub.subscribe("firehose").unwrap();
    let mut publisher = server.client();
    // 64 MiB offered to each subscriber, 512 KiB at a time: the slow one never reads, the
    // other reads each half megabyte before the next is published. Every PUBLISH is answered: none
    // waits for the subscriber that does not read.
    let payload = "p".repeat(64 * 1024);
    for _ in 0..128 {
        let mut pipe = redis::pipe();
        for _ in 0..8 {
            pipe.cmd("PUBLISH").arg("firehose").arg(&payload);
        }
        let receivers: Vec<i64> = pipe.query(&mut publisher).unwrap();
        assert_eq!(receivers.len(), 8);
        for _ in 0..8 {
            let message = sub.get_message().unwrap();
            assert_eq!(message.get_payload_bytes().len(), payload.len());
        }
    }
    // The slow subscriber's connection ended (after what the kernel already took), the
    // reader's did not.
    assert!(slow.closed());
    assert_eq!(cut_off(&server), 1);
    // The reader still gets what comes next, and the server serves the rest.
    assert!(publish(&mut publisher, "firehose", "after") >= 1);
    assert_eq!(
        sub.get_message().unwrap().get_payload::<String>().unwrap(),
        "after"
    );
    let _: () = publisher.set("still", "serving").unwrap();
}

/// CONFIG SET client-output-buffer-limit holds the subscribers already there too, not only
/// those that subscribe after it.
#[test]
fn a_new_pubsub_limit_holds_subscribers_already_subscribed() {
    // No limit at first: queued, not cut.
    let mut config = Config::default();
    config.output_limits.pubsub = sessiond::output_limit::ClassLimit::default();
    let server = TestServer::with_config(config);
    let mut slow = raw(&server, false);
    slow.command(&[b"SUBSCRIBE", b"firehose"]);
    assert_eq!(
        slow.reply(),
        Frame::Array(vec![bulk("subscribe"), bulk("firehose"), Frame::Integer(1)])
    );
    let mut publisher = server.client();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("client-output-buffer-limit")
        .arg("pubsub 1mb 0 0")
        .query(&mut publisher)
        .unwrap();
    // 8 MiB offered to a subscriber that does not read: past the new 1 MiB limit.
    let payload = "p".repeat(64 * 1024);
    for _ in 0..16 {
        let mut pipe = redis::pipe();
        for _ in 0..8 {
            pipe.cmd("PUBLISH").arg("firehose").arg(&payload);
        }
        let _: Vec<i64> = pipe.query(&mut publisher).unwrap();
    }
    assert!(slow.closed());
    assert_eq!(cut_off(&server), 1);
}

#[test]
fn subscribers_that_never_read_leave_the_real_servers_memory_bounded() {
    let mut daemon = Daemon::start(
        &[
            "--port",
            "0",
            "--no-persistence",
            "--client-output-buffer-limit",
            "pubsub 4mb 2mb 60",
        ],
        &[],
    );
    let addr = daemon.addr;
    let mut publisher = daemon.client(false);
    let _: () = publisher.set("warm", "up").unwrap();
    let mut slow: Vec<RawClient> = (0..8)
        .map(|_| {
            let mut raw = RawClient::connect(addr);
            raw.command(&[b"SUBSCRIBE", b"firehose"]);
            raw
        })
        .collect();
    let before = rss_kib(daemon.pid());
    // 128 MiB published to 8 subscribers that never read: without the limit the server would
    // hold all of it (shared between them); with it, each is cut off past 4 MiB.
    let payload = "p".repeat(64 * 1024);
    for _ in 0..4 {
        let mut pipe = redis::pipe();
        for _ in 0..512 {
            pipe.cmd("PUBLISH").arg("firehose").arg(&payload);
        }
        let _: Vec<i64> = pipe.query(&mut publisher).unwrap();
    }
    for raw in &mut slow {
        assert!(raw.closed());
    }
    let after = rss_kib(daemon.pid());
    assert!(
        after < before + 48 * 1024,
        "RSS grew from {before} KiB to {after} KiB with 128 MiB published to subscribers that \
         do not read"
    );
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut publisher)
        .unwrap();
    assert!(
        info.contains("client_output_buffer_limit_disconnections:8\r\n"),
        "{info}"
    );
    daemon.stop();
}

/// `news` may use `news.*` channels only; `listener` may have session events of its
/// namespace; `mute` has no channel at all.
fn users() -> Config {
    let digest = sessiond::auth::password_sha256;
    let toml = format!(
        r#"
        requirepass = "admin-pw"

        [[user]]
        name = "news"
        password-sha256 = "{}"
        keys = ["*"]
        categories = ["read", "write"]
        channels = ["news.*"]

        [[user]]
        name = "mute"
        password-sha256 = "{}"
        keys = ["*"]
        categories = ["all"]

        [[user]]
        name = "cache"
        password-sha256 = "{}"
        keys = ["cache:*"]
        categories = ["read"]
        channels = ["*"]
        "#,
        digest("pw-news"),
        digest("pw-mute"),
        digest("pw-cache"),
    );
    let dir = ScratchDir::new();
    let file = dir.file("sessiond.toml", &toml);
    Config {
        persistence: None,
        ..RawConfig::from_file(&file)
            .expect("a valid file")
            .validate()
            .expect("valid users")
    }
}

fn login(server: &TestServer, user: &str, password: &str, resp3: bool) -> RawClient {
    let mut raw = server.raw();
    if resp3 {
        raw.command(&[
            b"HELLO",
            b"3",
            b"AUTH",
            user.as_bytes(),
            password.as_bytes(),
        ]);
        assert!(matches!(raw.reply(), Frame::Map(_)));
    } else {
        raw.command(&[b"AUTH", user.as_bytes(), password.as_bytes()]);
        assert_eq!(raw.reply(), Frame::simple("OK"));
    }
    raw
}

#[test]
fn named_users_use_only_the_channels_their_patterns_allow() {
    const NO_CHANNEL: &str = "NOPERM No permissions to access a channel";
    for resp3 in [false, true] {
        let server = TestServer::with_config(users());
        let mut news = login(&server, "news", "pw-news", resp3);
        news.command(&[b"SUBSCRIBE", b"news.tech"]);
        assert_eq!(
            news.reply(),
            event(
                resp3,
                vec![bulk("subscribe"), bulk("news.tech"), Frame::Integer(1)]
            )
        );
        // One channel out of its patterns refuses the whole command.
        news.command(&[b"SUBSCRIBE", b"news.art", b"sports"]);
        assert_eq!(error_text(&news.reply()), NO_CHANNEL);
        // PSUBSCRIBE needs one of its patterns, literally.
        news.command(&[b"PSUBSCRIBE", b"news.t*"]);
        assert_eq!(error_text(&news.reply()), NO_CHANNEL);
        news.command(&[b"PSUBSCRIBE", b"news.*"]);
        assert_eq!(
            news.reply(),
            event(
                resp3,
                vec![bulk("psubscribe"), bulk("news.*"), Frame::Integer(2)]
            )
        );
        news.command(&[b"SSUBSCRIBE", b"sports"]);
        assert_eq!(error_text(&news.reply()), NO_CHANNEL);
        // Session events are for users allowed SESSION commands.
        news.command(&[b"SUBSCRIBE", b"__session__:created"]);
        assert_eq!(error_text(&news.reply()), NO_CHANNEL);
        let mut mute = login(&server, "mute", "pw-mute", resp3);
        mute.command(&[b"SUBSCRIBE", b"news.tech"]);
        assert_eq!(error_text(&mute.reply()), NO_CHANNEL);
        mute.command(&[b"PUBLISH", b"news.tech", b"m"]);
        assert_eq!(error_text(&mute.reply()), NO_CHANNEL);
        let mut publisher = login(&server, "news", "pw-news", false);
        publisher.command(&[b"PUBLISH", b"news.tech", b"m"]);
        assert_eq!(publisher.reply(), Frame::Integer(2));
        publisher.command(&[b"PUBLISH", b"sports", b"m"]);
        assert_eq!(error_text(&publisher.reply()), NO_CHANNEL);
        let denied = server
            .shared
            .stats
            .acl_denied_channels
            .load(Ordering::Relaxed);
        assert_eq!(denied, 7);
        // The message, and the pattern's.
        for _ in 0..2 {
            assert!(matches!(news.reply(), Frame::Array(_) | Frame::Push(_)));
        }
        // A user whose channels change subscribed keeps its subscriptions, as in Redis.
        news.command(&[b"AUTH", b"mute", b"pw-mute"]);
        if resp3 {
            assert_eq!(news.reply(), Frame::simple("OK"));
            publisher.command(&[b"PUBLISH", b"news.tech", b"after"]);
            assert_eq!(publisher.reply(), Frame::Integer(2));
            assert_eq!(
                news.reply(),
                event(
                    true,
                    vec![bulk("message"), bulk("news.tech"), bulk("after")]
                )
            );
        } else {
            assert!(error_text(&news.reply()).starts_with("ERR Can't execute 'auth'"));
        }
    }
}

#[test]
fn pubsub_channels_hides_the_keyspace_channels_of_keys_a_user_may_not_touch() {
    let server = TestServer::with_config(users());
    let mut admin = login(&server, "default", "admin-pw", false);
    admin.command(&[
        b"SUBSCRIBE",
        b"__keyspace@0__:sess:secret",
        b"__keyspace@0__:cache:1",
        b"plain",
    ]);
    for _ in 0..3 {
        admin.reply();
    }
    let mut cache = login(&server, "cache", "pw-cache", false);
    cache.command(&[b"PUBSUB", b"CHANNELS"]);
    let Frame::Array(mut seen) = cache.reply() else {
        panic!("PUBSUB CHANNELS")
    };
    seen.sort_by_key(|f| format!("{f:?}"));
    assert_eq!(seen, [bulk("__keyspace@0__:cache:1"), bulk("plain")]);
}
