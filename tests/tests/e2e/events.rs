//! Keyspace notifications and session events through the `redis` crate, in RESP2 and RESP3:
//! `notify-keyspace-events` with CONFIG SET and GET (Redis's canonical form and errors).

use redis::Connection;
use sessiond::notify::EventFlags;
use sessiond::Config;
use sessiond_tests::redis_calls::{call, error_of};
use sessiond_tests::TestServer;

fn config_get(con: &mut Connection, name: &str) -> String {
    let pairs: std::collections::HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query(con)
        .expect("CONFIG GET");
    pairs.into_values().next().unwrap_or_default()
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
        notify_keyspace_events: EventFlags::parse(b"Ex").unwrap(),
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
                &["notify-keyspace-events", "KEA", "maxclients", "5"],
                "ERR CONFIG SET failed (possibly related to argument 'maxclients') - can't set \
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
