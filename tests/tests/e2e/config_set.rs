//! CONFIG SET on the settings that change at run time: each takes effect without a restart
//! (maxmemory evicts, timeout closes idle clients, maxclients refuses, the session defaults
//! apply to new sessions), the values are checked with Redis's reasons, and a command changes
//! all its settings or none.

use redis::{Connection, Value};
use sessiond::store::evict::Policy;
use sessiond::Config;
use sessiond_tests::redis_calls::config_get;
use sessiond_tests::{error_text, info_number, TestServer};

fn config_set(con: &mut Connection, pairs: &[&str]) -> redis::RedisResult<()> {
    redis::cmd("CONFIG").arg("SET").arg(pairs).query(con)
}

fn refusal(con: &mut Connection, pairs: &[&str]) -> String {
    let error = config_set(con, pairs).expect_err("refused");
    // redis-rs splits the code from the message; put Redis's line back together.
    format!(
        "{} {}",
        error.code().unwrap_or("?"),
        error.detail().unwrap_or("")
    )
}

#[test]
fn maxmemory_and_its_policy_apply_at_the_next_write() {
    for resp3 in [false, true] {
        let server = TestServer::with_config_and_manual_clock(Config {
            maxmemory_policy: Policy::AllKeysLru,
            ..Config::default()
        });
        let mut con = server.connect(resp3);
        for i in 0..400 {
            let _: () = redis::cmd("SET")
                .arg(format!("k:{i}"))
                .arg(vec![b'v'; 1000])
                .query(&mut con)
                .expect("SET without a limit");
        }
        let limit: u64 = 232 * 1024;
        config_set(&mut con, &["maxmemory", "232kb"]).expect("CONFIG SET maxmemory");
        assert_eq!(config_get(&mut con, "maxmemory"), limit.to_string());
        let _: () = redis::cmd("SET")
            .arg("after")
            .arg("v")
            .query(&mut con)
            .expect("SET evicts to make room");
        let info = server.info("memory");
        assert!(info_number(&info, "used_memory_dataset") <= limit, "{info}");
        assert_eq!(info_number(&info, "maxmemory"), limit);
        let keys: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
        assert!(keys < 300, "{keys} keys left under 232 KiB");

        config_set(&mut con, &["maxmemory-policy", "noeviction"]).unwrap();
        assert_eq!(config_get(&mut con, "maxmemory-policy"), "noeviction");
        // Under the limit, a write passes (as in Redis, whatever its size); over it, the next
        // is refused instead of evicting.
        let _: () = redis::cmd("SET")
            .arg("big")
            .arg(vec![b'v'; 64 * 1024])
            .query(&mut con)
            .expect("under the limit");
        let refused = redis::cmd("SET")
            .arg("big2")
            .arg("v")
            .query::<()>(&mut con)
            .expect_err("OOM under noeviction");
        assert_eq!(refused.code(), Some("OOM"), "{refused}");
        config_set(&mut con, &["maxmemory", "0"]).unwrap();
        let _: () = redis::cmd("SET")
            .arg("big2")
            .arg("v")
            .query(&mut con)
            .expect("no limit any more");
    }
}

#[test]
fn timeout_closes_clients_idle_past_it() {
    for resp3 in [false, true] {
        let server = TestServer::start();
        let mut con = server.connect(resp3);
        // Already waiting for its next request when the timeout changes.
        let mut idle = server.raw();
        idle.command(&[b"PING"]);
        assert_eq!(idle.reply(), sessiond_protocol::Frame::simple("PONG"));
        let mut subscriber = server.raw();
        subscriber.command(&[b"SUBSCRIBE", b"news"]);
        subscriber.reply();
        config_set(&mut con, &["timeout", "1"]).expect("CONFIG SET timeout");
        assert_eq!(config_get(&mut con, "timeout"), "1");
        assert!(
            idle.closed(),
            "an idle client is closed 1 s after the change"
        );
        // `con` waits for its next request under the new timeout too.
        assert!(info_number(&server.info("stats"), "idle_timeouts") >= 1);
        // As in Redis, no timeout holds a subscriber.
        subscriber.command(&[b"PING"]);
        assert_eq!(
            subscriber.reply(),
            sessiond_protocol::Frame::Array(vec![
                sessiond_protocol::Frame::bulk("pong"),
                sessiond_protocol::Frame::bulk("")
            ])
        );
        let mut con = server.connect(resp3);
        config_set(&mut con, &["timeout", "0"]).unwrap();
        assert_eq!(config_get(&mut con, "timeout"), "0");
    }
}

/// As Redis's `clientsCronHandleTimeout`: the timeout counts from the client's last
/// interaction, so a client already idle longer than a new timeout is closed at once, and one
/// that just talked is kept. On the manual clock: nothing here waits for real time.
#[test]
fn a_new_timeout_counts_from_each_clients_last_interaction() {
    for resp3 in [false, true] {
        let server = TestServer::with_manual_clock();
        let mut con = server.connect(resp3);
        let mut idle = server.raw();
        idle.command(&[b"PING"]);
        assert_eq!(idle.reply(), sessiond_protocol::Frame::simple("PONG"));
        server.advance(120_000);
        let mut recent = server.raw();
        recent.command(&[b"PING"]);
        assert_eq!(recent.reply(), sessiond_protocol::Frame::simple("PONG"));
        config_set(&mut con, &["timeout", "60"]).expect("CONFIG SET timeout");
        assert!(idle.closed(), "idle for 120 s: closed under a 60 s timeout");
        recent.command(&[b"PING"]);
        assert_eq!(recent.reply(), sessiond_protocol::Frame::simple("PONG"));
        assert_eq!(info_number(&server.info("stats"), "idle_timeouts"), 1);
    }
}

#[test]
fn maxclients_refuses_new_clients_past_it_and_keeps_those_connected() {
    for resp3 in [false, true] {
        let server = TestServer::start();
        let mut con = server.connect(resp3);
        config_set(&mut con, &["maxclients", "1"]).expect("CONFIG SET maxclients");
        assert_eq!(config_get(&mut con, "maxclients"), "1");
        let mut refused = server.raw();
        assert_eq!(
            error_text(&refused.reply()),
            "ERR max number of clients reached"
        );
        let pong: String = redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG");
        config_set(&mut con, &["maxclients", "10"]).unwrap();
        let mut admitted = server.raw();
        admitted.command(&[b"PING"]);
        assert_eq!(admitted.reply(), sessiond_protocol::Frame::simple("PONG"));
    }
}

#[test]
fn session_defaults_apply_to_new_sessions() {
    for resp3 in [false, true] {
        let server = TestServer::with_manual_clock();
        let mut con = server.connect(resp3);
        let create = |con: &mut Connection| -> String {
            redis::cmd("SESSION.CREATE")
                .arg("USER")
                .arg("ann")
                .query(con)
                .expect("SESSION.CREATE")
        };
        let old = create(&mut con);
        config_set(
            &mut con,
            &[
                "session-idle",
                "90s",
                "session-absolute",
                "2h",
                "session-max-per-user",
                "2",
            ],
        )
        .expect("CONFIG SET session defaults");
        assert_eq!(config_get(&mut con, "session-idle"), "90s");
        assert_eq!(config_get(&mut con, "session-absolute"), "2h");
        assert_eq!(config_get(&mut con, "session-max-per-user"), "2");
        let new = create(&mut con);
        let timeouts = |con: &mut Connection, id: &str| -> (i64, i64) {
            let info: Value = redis::cmd("SESSION.INFO").arg(id).query(con).unwrap();
            let pairs: Vec<(String, Value)> = match info {
                Value::Map(pairs) => pairs
                    .into_iter()
                    .map(|(k, v)| (redis::from_redis_value(k).unwrap(), v))
                    .collect(),
                Value::Array(items) => items
                    .chunks(2)
                    .map(|p| (redis::from_redis_value(p[0].clone()).unwrap(), p[1].clone()))
                    .collect(),
                other => panic!("SESSION.INFO: {other:?}"),
            };
            let field = |name: &str| {
                let value = &pairs.iter().find(|(k, _)| k == name).expect(name).1;
                redis::from_redis_value::<i64>(value.clone()).unwrap()
            };
            (field("idle_ms"), field("absolute_ms"))
        };
        assert_eq!(timeouts(&mut con, &old), (30 * 60_000, 8 * 3_600_000));
        assert_eq!(timeouts(&mut con, &new), (90_000, 2 * 3_600_000));
        // The cap applies at the next session: the oldest of three goes.
        create(&mut con);
        let count: i64 = redis::cmd("SESSION.COUNT")
            .arg("ann")
            .query(&mut con)
            .unwrap();
        assert_eq!(count, 2);
        let exists: i64 = redis::cmd("EXISTS").arg(&old).query(&mut con).unwrap();
        assert_eq!(exists, 0);
        let info = server.info("sessions");
        assert_eq!(info_number(&info, "session_idle_default_ms"), 90_000);
        assert_eq!(info_number(&info, "session_max_per_user"), 2);
    }
}

#[test]
fn the_other_run_time_settings_read_back() {
    let server = TestServer::start();
    let mut con = server.client3();
    for (name, value, shown) in [
        ("max-auth-failures", "3", "3"),
        ("busy-reply-threshold", "250", "250"),
        ("lua-time-limit", "1s", "1000"),
    ] {
        config_set(&mut con, &[name, value]).expect(name);
        assert_eq!(config_get(&mut con, name), shown, "{name}");
    }
    assert_eq!(config_get(&mut con, "busy-reply-threshold"), "1000");
}

#[test]
fn values_are_checked_with_redis_s_reasons_and_nothing_changes_on_a_refusal() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let failed = |name: &str, reason: &str| {
            format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}")
        };
        let cases: [(&[&str], String); 11] = [
            (
                &["maxclients", "many"],
                failed("maxclients", "argument couldn't be parsed into an integer"),
            ),
            (
                &["maxclients", "0"],
                failed(
                    "maxclients",
                    "argument must be between 1 and 1048576 inclusive",
                ),
            ),
            (
                &["timeout", "-1"],
                failed(
                    "timeout",
                    "argument must be between 0 and 9223372036854775807 inclusive",
                ),
            ),
            (
                &["maxmemory", "lots"],
                failed("maxmemory", "argument must be a memory value"),
            ),
            (
                &["maxmemory-policy", "allkeys-lfu"],
                failed(
                    "maxmemory-policy",
                    "argument(s) must be one of the following: noeviction, volatile-ttl, \
                     volatile-lru, allkeys-lru",
                ),
            ),
            (
                &["session-idle", "0"],
                failed("session-idle", "must be positive"),
            ),
            (
                &["databases", "4"],
                failed("databases", "can't set immutable config"),
            ),
            // The primary's pings (every second) must come more often than a link times out.
            (
                &["repl-timeout", "1"],
                failed(
                    "repl-timeout",
                    "argument must be longer than repl-ping-replica-period (1s)",
                ),
            ),
            // One setting twice, under two of its names, as Redis refuses one name twice.
            (
                &["replica-read-only", "no", "slave-read-only", "yes"],
                failed("slave-read-only", "duplicate parameter"),
            ),
            (
                &["busy-reply-threshold", "100", "lua-time-limit", "9000"],
                failed("lua-time-limit", "duplicate parameter"),
            ),
            // All or none: the first pair is valid, the second is not.
            (
                &["maxmemory", "1mb", "maxclients", "0"],
                failed(
                    "maxclients",
                    "argument must be between 1 and 1048576 inclusive",
                ),
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(refusal(&mut con, pairs), expected, "{pairs:?}");
        }
        assert_eq!(config_get(&mut con, "maxmemory"), "0");
        assert_eq!(config_get(&mut con, "maxclients"), "10000");
    }
}

#[test]
fn requirepass_holds_new_connections_to_auth_and_keeps_those_connected() {
    for resp3 in [false, true] {
        let server = TestServer::start();
        let mut admin = server.connect(resp3);
        config_set(&mut admin, &["requirepass", "s3cret"]).expect("CONFIG SET requirepass");
        // The connection that set it stays authenticated.
        let pong: String = redis::cmd("PING").query(&mut admin).unwrap();
        assert_eq!(pong, "PONG");
        let mut newcomer = server.raw();
        newcomer.command(&[b"GET", b"k"]);
        assert_eq!(
            error_text(&newcomer.reply()),
            "NOAUTH Authentication required."
        );
        newcomer.command(&[b"AUTH", b"wrong"]);
        assert!(error_text(&newcomer.reply()).starts_with("WRONGPASS"));
        newcomer.command(&[b"AUTH", b"s3cret"]);
        assert_eq!(newcomer.reply(), sessiond_protocol::Frame::simple("OK"));
        // The password is never shown.
        let shown: std::collections::HashMap<String, String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("requirepass")
            .query(&mut admin)
            .unwrap();
        assert!(shown.is_empty(), "{shown:?}");
        config_set(&mut admin, &["requirepass", ""]).expect("clear the password");
        let mut open = server.raw();
        open.command(&[b"GET", b"k"]);
        assert_eq!(open.reply(), sessiond_protocol::Frame::Null);
    }
}

#[test]
fn config_rewrite_keeps_the_file_s_comments_and_a_restart_reads_the_new_values() {
    use super::daemon::{Daemon, ScratchDir};
    for resp3 in [false, true] {
        let dir = ScratchDir::new();
        let file = dir.file(
            "sessiond.toml",
            "# sessiond for the shop\nport = 0\n\n# a small box\nmaxclients = 100 # per node\n\
             no-persistence = true\n",
        );
        let file = file.to_str().expect("utf-8 path").to_owned();
        let mut daemon = Daemon::start_at(&dir.0, &["--config", &file], &[]);
        let mut con = daemon.client(resp3);
        config_set(
            &mut con,
            &[
                "maxclients",
                "200",
                "maxmemory",
                "64mb",
                "session-idle",
                "15m",
                "slowlog-log-slower-than",
                "500",
                "replica-priority",
                "10",
                "repl-backlog-size",
                "2mb",
            ],
        )
        .unwrap();
        let _: () = redis::cmd("CONFIG")
            .arg("REWRITE")
            .query(&mut con)
            .expect("CONFIG REWRITE");
        daemon.stop();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with(
                "# sessiond for the shop\nport = 0\n\n# a small box\nmaxclients = 200 # per node\n"
            ),
            "{text}"
        );
        assert!(text.contains("maxmemory = \"64mb\"\n"), "{text}");
        assert!(text.contains("session-idle = \"15m\"\n"), "{text}");
        let daemon = Daemon::start_at(&dir.0, &["--config", &file], &[]);
        let mut con = daemon.client(resp3);
        assert_eq!(config_get(&mut con, "maxclients"), "200");
        assert_eq!(config_get(&mut con, "maxmemory"), (64u64 << 20).to_string());
        assert_eq!(config_get(&mut con, "session-idle"), "15m");
        // Settings kept outside the shared live ones (the slow log's, replication's) too:
        // Sentinel reads replica-priority to choose whom to promote.
        assert_eq!(config_get(&mut con, "slowlog-log-slower-than"), "500");
        assert_eq!(config_get(&mut con, "replica-priority"), "10");
        assert_eq!(
            config_get(&mut con, "repl-backlog-size"),
            (2u64 << 20).to_string()
        );
    }
}

#[test]
fn config_rewrite_without_a_file_is_redis_s_error() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let error = redis::cmd("CONFIG")
            .arg("REWRITE")
            .query::<()>(&mut con)
            .expect_err("no file");
        assert_eq!(
            format!(
                "{} {}",
                error.code().unwrap_or("?"),
                error.detail().unwrap_or("")
            ),
            "ERR The server is running without a config file"
        );
    }
}
