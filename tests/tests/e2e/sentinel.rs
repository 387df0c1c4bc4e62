//! Redis Sentinel, unchanged, against sessiond: real `redis-sentinel` processes monitor a
//! sessiond primary without an error reply, find each other through `__sentinel__:hello` on it,
//! and the transaction Sentinel wraps a reconfiguration in runs in one EXEC. Skipped, saying
//! why, where redis-sentinel is missing (`.ci/run` installs it).

use sessiond::Config;
use sessiond_tests::sentinel::{installed, poll, RedisProcess, Scratch};
use sessiond_tests::{info_field, TestServer};

const MASTER: &str = "sessions";

/// `SENTINEL MASTER name` as field → value pairs.
fn sentinel_master(sentinel: &mut redis::Connection) -> Option<Vec<(String, String)>> {
    let flat: Vec<String> = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(MASTER)
        .query(sentinel)
        .ok()?;
    Some(
        flat.chunks(2)
            .filter_map(|pair| match pair {
                [field, value] => Some((field.clone(), value.clone())),
                _ => None,
            })
            .collect(),
    )
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find_map(|(field, value)| (field == name).then_some(value.as_str()))
}

#[test]
fn sentinels_monitor_a_primary_and_find_each_other_without_an_error() {
    if !installed("redis-sentinel") {
        eprintln!("skipped: redis-sentinel is not installed");
        return;
    }
    let server = TestServer::start();
    let dir = Scratch::new("sentinel-monitor");
    let settings = ["down-after-milliseconds 1000", "failover-timeout 5000"];
    let sentinels: Vec<RedisProcess> = (0..3)
        .map(|_| RedisProcess::sentinel(dir.path(), MASTER, server.addr.port(), 2, &settings))
        .collect();

    // Each sees the primary up (no s_down), has read its INFO (run_id, role) and knows the
    // two others, which it can only have learnt from their hellos published on sessiond.
    for sentinel in &sentinels {
        let mut connection = sentinel.connect();
        let fields = poll("the sentinel knows its two peers", 400, || {
            let fields = sentinel_master(&mut connection)?;
            (field(&fields, "num-other-sentinels") == Some("2")).then_some(fields)
        });
        assert_eq!(field(&fields, "flags"), Some("master"), "{fields:?}");
        assert_eq!(
            field(&fields, "role-reported"),
            Some("master"),
            "{fields:?}"
        );
        let run_id = info_field(&server.info("server"), "run_id");
        assert_eq!(field(&fields, "runid"), Some(run_id.as_str()), "{fields:?}");
        let quorum: String = redis::cmd("SENTINEL")
            .arg("CKQUORUM")
            .arg(MASTER)
            .query(&mut connection)
            .unwrap();
        assert!(quorum.starts_with("OK 3 usable Sentinels"), "{quorum}");
    }

    // Every sentinel has a command and a pub/sub connection, named as Sentinel names them,
    // and nothing any of them sent was answered with an error.
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut server.client())
        .unwrap();
    let named = |suffix: &str| {
        clients
            .lines()
            .filter(|line| line.contains(" name=sentinel-") && line.contains(suffix))
            .count()
    };
    assert_eq!((named("-cmd "), named("-pubsub ")), (3, 3), "{clients}");
    let errors = server.info("errorstats");
    assert!(!errors.contains("errorstat_"), "{errors}");
    assert_eq!(
        info_field(&server.info("stats"), "total_error_replies"),
        "0"
    );
}

#[test]
fn the_reconfiguration_transaction_runs_in_one_exec() {
    for resp3 in [false, true] {
        let dir = Scratch::new("sentinel-exec");
        let file = dir.path().join("sessiond.toml");
        std::fs::write(&file, "# sessiond\ndatabases = 16\n").unwrap();
        let server = TestServer::with_config(Config {
            config_file: Some(file.clone()),
            ..Config::default()
        });
        let mut sentinel = server.connect(resp3);
        let mut other = server.connect(resp3);
        let _: String = redis::cmd("PING").query(&mut other).unwrap();
        let mut subscriber = server.connect(resp3);
        // Held to the end: dropping it would unsubscribe.
        let mut pubsub = subscriber.as_pubsub();
        pubsub.subscribe("__sentinel__:hello").unwrap();

        // As Sentinel sends it (sentinelSendSlaveOf in src/sentinel.c), less SLAVEOF.
        let (rewrite, normal, subscribers): (String, i64, i64) = redis::pipe()
            .atomic()
            .cmd("CONFIG")
            .arg("REWRITE")
            .cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut sentinel)
            .unwrap();
        assert_eq!(
            (rewrite.as_str(), normal, subscribers),
            ("OK", 1, 1),
            "resp3={resp3}"
        );

        // The connection that ran EXEC lives on; the others were closed.
        let pong: String = redis::cmd("PING").query(&mut sentinel).unwrap();
        assert_eq!(pong, "PONG");
        assert!(redis::cmd("PING").query::<String>(&mut other).is_err());
        assert!(pubsub.get_message().is_err());
        let rewritten = std::fs::read_to_string(&file).unwrap();
        assert!(
            rewritten.starts_with("# sessiond\ndatabases = 16\n"),
            "{rewritten}"
        );
    }
}
