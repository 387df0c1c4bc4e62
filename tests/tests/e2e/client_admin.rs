//! CLIENT KILL (the old form and every filter), CLIENT PAUSE/UNPAUSE, CLIENT NO-EVICT,
//! MEMORY USAGE/STATS and DEBUG SLEEP.

use redis::{Connection, Value};
use sessiond_protocol::Frame;
use sessiond_tests::{RawClient, TestServer};

fn kill(con: &mut Connection, args: &[&str]) -> redis::RedisResult<Value> {
    redis::cmd("CLIENT").arg("KILL").arg(args).query(con)
}

fn killed(con: &mut Connection, args: &[&str]) -> i64 {
    match kill(con, args).expect("CLIENT KILL") {
        Value::Int(n) => n,
        other => panic!("CLIENT KILL {args:?}: {other:?}"),
    }
}

fn error(result: redis::RedisResult<Value>) -> String {
    let error = result.expect_err("an error");
    format!(
        "{} {}",
        error.code().unwrap_or("?"),
        error.detail().unwrap_or("")
    )
}

/// A raw client and a field of its CLIENT INFO line (`id`, `addr`, `laddr`).
fn client_field(client: &mut RawClient, field: &str) -> String {
    client.command(&[b"CLIENT", b"INFO"]);
    let line = match client.reply() {
        Frame::Bulk(text) | Frame::Verbatim { data: text, .. } => {
            String::from_utf8(text.to_vec()).expect("utf-8")
        }
        other => panic!("CLIENT INFO: {other:?}"),
    };
    line.split_whitespace()
        .find_map(|pair| pair.strip_prefix(&format!("{field}=")))
        .unwrap_or_else(|| panic!("no {field} in {line}"))
        .to_owned()
}

fn alive(client: &mut RawClient) -> bool {
    client.command(&[b"PING"]);
    client.read_frame() == Some(Frame::simple("PONG"))
}

#[test]
fn client_kill_by_address_in_the_old_form() {
    for resp3 in [false, true] {
        let server = TestServer::start();
        let mut admin = server.connect(resp3);
        let mut victim = server.raw();
        let mut bystander = server.raw();
        let addr = client_field(&mut victim, "addr");
        assert_eq!(kill(&mut admin, &[&addr]), Ok(Value::Okay));
        assert!(victim.closed());
        assert!(alive(&mut bystander));
        assert_eq!(error(kill(&mut admin, &[&addr])), "ERR No such client");
        // Unlike the filters (SKIPME yes by default), the old form kills the caller too,
        // after its reply.
        let mine = client_field(&mut bystander, "addr");
        bystander.command(&[b"CLIENT", b"KILL", mine.as_bytes()]);
        assert_eq!(bystander.reply(), Frame::ok());
        assert!(bystander.closed());
    }
}

#[test]
fn client_kill_by_id_addr_laddr_and_user() {
    for resp3 in [false, true] {
        let server = TestServer::start();
        let mut admin = server.connect(resp3);
        let mut victim = server.raw();
        let mut bystander = server.raw();
        let id = client_field(&mut victim, "id");
        assert_eq!(killed(&mut admin, &["ID", &id]), 1);
        assert!(victim.closed());
        assert_eq!(killed(&mut admin, &["ID", &id]), 0);

        let mut victim = server.raw();
        let addr = client_field(&mut victim, "addr");
        assert_eq!(killed(&mut admin, &["ADDR", &addr]), 1);
        assert!(victim.closed());
        assert!(alive(&mut bystander));

        // Every client shares the server's address: LADDR picks all but the caller.
        let laddr = client_field(&mut bystander, "laddr");
        let mut other = server.raw();
        assert!(alive(&mut other));
        assert_eq!(killed(&mut admin, &["LADDR", &laddr, "ID", &id]), 0);
        assert_eq!(killed(&mut admin, &["LADDR", &laddr]), 2);
        assert!(bystander.closed() && other.closed());

        let mut victim = server.raw();
        assert!(alive(&mut victim));
        assert_eq!(killed(&mut admin, &["USER", "nobody"]), 0);
        assert_eq!(killed(&mut admin, &["USER", "default"]), 1);
        assert!(victim.closed());
        let pong: String = redis::cmd("PING").query(&mut admin).unwrap();
        assert_eq!(pong, "PONG");
    }
}

#[test]
fn client_kill_by_type_skipme_and_maxage() {
    for resp3 in [false, true] {
        let server = TestServer::start();
        let mut admin = server.connect(resp3);
        let mut subscriber = server.raw();
        subscriber.command(&[b"SUBSCRIBE", b"news"]);
        subscriber.reply();
        let mut normal = server.raw();
        assert!(alive(&mut normal));
        // No client is that old; none is a replica.
        assert_eq!(killed(&mut admin, &["MAXAGE", "1000000"]), 0);
        assert_eq!(killed(&mut admin, &["TYPE", "replica"]), 0);
        assert_eq!(killed(&mut admin, &["TYPE", "pubsub"]), 1);
        assert!(subscriber.closed());
        assert_eq!(killed(&mut admin, &["TYPE", "normal"]), 1);
        assert!(normal.closed());
        // SKIPME no: the caller too, after its reply.
        let me: i64 = redis::cmd("CLIENT").arg("ID").query(&mut admin).unwrap();
        assert_eq!(
            killed(&mut admin, &["ID", &me.to_string(), "SKIPME", "no"]),
            1
        );
        assert!(redis::cmd("PING").query::<String>(&mut admin).is_err());

        let mut admin = server.connect(resp3);
        for (args, expected) in [
            (&["ID", "0"][..], "ERR client-id should be greater than 0"),
            (&["TYPE", "robot"][..], "ERR Unknown client type 'robot'"),
            (&["SKIPME", "maybe"][..], "ERR syntax error"),
            (&["COLOR", "red"][..], "ERR syntax error"),
            (&["ID", "1", "TYPE"][..], "ERR syntax error"),
            (
                &["MAXAGE", "old"][..],
                "ERR value is not an integer or out of range",
            ),
        ] {
            assert_eq!(error(kill(&mut admin, args)), expected, "{args:?}");
        }
        assert_eq!(
            error(redis::cmd("CLIENT").arg("KILL").query(&mut admin)),
            "ERR wrong number of arguments for 'client|kill' command"
        );
    }
}

#[test]
fn client_pause_write_holds_writes_and_lets_reads_through() {
    for resp3 in [false, true] {
        let server = TestServer::start();
        let mut admin = server.connect(resp3);
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("old")
            .query(&mut admin)
            .unwrap();
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(100_000)
            .arg("WRITE")
            .query(&mut admin)
            .expect("CLIENT PAUSE");
        let mut writer = server.raw();
        writer.command(&[b"SET", b"k", b"new"]);
        // Reads pass, on the pausing connection and on others.
        let mut reader = server.raw();
        reader.command(&[b"GET", b"k"]);
        assert_eq!(reader.reply(), Frame::bulk("old"));
        let value: String = redis::cmd("GET").arg("k").query(&mut admin).unwrap();
        assert_eq!(value, "old");
        let _: () = redis::cmd("CLIENT")
            .arg("UNPAUSE")
            .query(&mut admin)
            .unwrap();
        assert_eq!(writer.reply(), Frame::simple("OK"));
        let value: String = redis::cmd("GET").arg("k").query(&mut admin).unwrap();
        assert_eq!(value, "new");

        // A pause of every command ends by itself at its deadline.
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(50)
            .query(&mut admin)
            .unwrap();
        reader.command(&[b"GET", b"k"]);
        assert_eq!(reader.reply(), Frame::bulk("new"));
        for (args, expected) in [
            (
                &["PAUSE", "soon"][..],
                "ERR timeout is not an integer or out of range",
            ),
            (&["PAUSE", "-1"][..], "ERR timeout is negative"),
            (&["PAUSE", "10", "READS"][..], "ERR syntax error"),
        ] {
            let result = redis::cmd("CLIENT").arg(args).query(&mut admin);
            assert_eq!(error(result), expected, "{args:?}");
        }
        let ok: Value = redis::cmd("CLIENT")
            .arg("NO-EVICT")
            .arg("on")
            .query(&mut admin)
            .unwrap();
        assert_eq!(ok, Value::Okay);
    }
}

#[test]
fn memory_usage_is_the_key_s_accounted_footprint() {
    for resp3 in [false, true] {
        let server = TestServer::start();
        let mut con = server.connect(resp3);
        let _: () = redis::cmd("SET")
            .arg("small")
            .arg("v")
            .query(&mut con)
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg("large")
            .arg(vec![b'v'; 10_000])
            .query(&mut con)
            .unwrap();
        let usage = |con: &mut Connection, key: &str| -> Option<u64> {
            redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(0)
                .query(con)
                .unwrap()
        };
        let small = usage(&mut con, "small").expect("a size");
        let large = usage(&mut con, "large").expect("a size");
        assert!(large >= small + 9_999, "{small} {large}");
        assert_eq!(usage(&mut con, "missing"), None);
        // The keys' footprints are what used_memory adds up.
        let info = server.info("memory");
        assert_eq!(
            sessiond_tests::info_number(&info, "used_memory_dataset"),
            small + large
        );
        let stats: std::collections::HashMap<String, Value> =
            redis::cmd("MEMORY").arg("STATS").query(&mut con).unwrap();
        let number = |name: &str| -> f64 {
            match &stats[name] {
                Value::Int(n) => *n as f64,
                Value::Double(x) => *x,
                Value::BulkString(text) => String::from_utf8_lossy(text).parse().unwrap(),
                other => panic!("{name}: {other:?}"),
            }
        };
        assert_eq!(number("keys.count"), 2.0);
        assert_eq!(number("dataset.bytes") as u64, small + large);
        // The process's memory, as INFO's used_memory: at least the dataset, at most the peak.
        let total = number("total.allocated");
        assert!(total >= number("dataset.bytes"), "{stats:?}");
        assert!(number("peak.allocated") >= total, "{stats:?}");
        assert_eq!(
            number("overhead.total"),
            total - number("dataset.bytes"),
            "{stats:?}"
        );
        let percentage = number("dataset.percentage");
        assert!(percentage > 0.0 && percentage <= 100.0, "{stats:?}");
        assert!(number("fragmentation") > 0.0, "{stats:?}");
        let doctor: String = redis::cmd("MEMORY").arg("DOCTOR").query(&mut con).unwrap();
        assert!(doctor.contains("can't find any memory issue"), "{doctor}");
    }
}

#[test]
fn debug_sleep_holds_only_its_own_connection() {
    for resp3 in [false, true] {
        let server = TestServer::start();
        let mut sleeper = server.raw();
        sleeper.command(&[b"DEBUG", b"SLEEP", b"0.2"]);
        sleeper.command(&[b"PING"]);
        // Others are served while it sleeps.
        let mut con = server.connect(resp3);
        let pong: String = redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG");
        assert_eq!(sleeper.reply(), Frame::simple("OK"));
        assert_eq!(sleeper.reply(), Frame::simple("PONG"));
        let ok: Value = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(0)
            .query(&mut con)
            .unwrap();
        assert_eq!(ok, Value::Okay);
        let refused = redis::cmd("DEBUG").arg("SLEEP").arg("soon").query(&mut con);
        assert_eq!(error(refused), "ERR value is not a valid float");
    }
}

/// `redis-cli --bigkeys` and `--memkeys` (the redis-tools package; skipped where it is not
/// installed) read every type, sessions included, through SCAN, TYPE, the length commands and
/// MEMORY USAGE.
#[test]
fn redis_cli_bigkeys_and_memkeys_read_the_keyspace() {
    let Ok(probe) = std::process::Command::new("redis-cli")
        .arg("--version")
        .output()
    else {
        eprintln!("redis-cli is not installed: skipped");
        return;
    };
    assert!(probe.status.success());
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let _: () = redis::cmd("SET")
            .arg("s")
            .arg("value")
            .query(&mut con)
            .unwrap();
        let _: () = redis::cmd("HSET")
            .arg("h")
            .arg("f")
            .arg("v")
            .query(&mut con)
            .unwrap();
        let _: () = redis::cmd("SADD")
            .arg("set")
            .arg("m")
            .query(&mut con)
            .unwrap();
        // One session per protocol: five keys in all.
        let _: String = redis::cmd("SESSION.CREATE").query(&mut con).unwrap();
    }
    let port = server.addr.port().to_string();
    for (mode, expected) in [
        ("--bigkeys", "Biggest string found '\"s\"' has 5 bytes"),
        ("--memkeys", "Biggest session found"),
    ] {
        let output = std::process::Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port, mode])
            .output()
            .expect("run redis-cli");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{mode}: {text}");
        assert!(
            text.contains("Sampled 5 keys in the keyspace!"),
            "{mode}: {text}"
        );
        assert!(text.contains(expected), "{mode}: {text}");
    }
}

#[test]
fn a_client_waiting_in_a_pause_or_a_sleep_can_be_killed() {
    for resp3 in [false, true] {
        let server = TestServer::start();
        let mut admin = server.connect(resp3);
        let mut sleeper = server.raw();
        let sleeper_id = client_field(&mut sleeper, "id");
        sleeper.command(&[b"DEBUG", b"SLEEP", b"1000"]);
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(100_000)
            .arg("WRITE")
            .query(&mut admin)
            .unwrap();
        let mut writer = server.raw();
        let writer_id = client_field(&mut writer, "id");
        writer.command(&[b"SET", b"k", b"v"]);
        assert_eq!(killed(&mut admin, &["ID", &writer_id]), 1);
        assert!(writer.closed(), "killed while paused");
        assert_eq!(killed(&mut admin, &["ID", &sleeper_id]), 1);
        assert!(sleeper.closed(), "killed while sleeping");
        let _: () = redis::cmd("CLIENT")
            .arg("UNPAUSE")
            .query(&mut admin)
            .unwrap();
        let value: Option<String> = redis::cmd("GET").arg("k").query(&mut admin).unwrap();
        assert_eq!(value, None, "the killed client's write never ran");
    }
}
