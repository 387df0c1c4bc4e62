//! INFO's sections read field by field against what the commands did (calls, rejections,
//! failures, errors, latency), CONFIG RESETSTAT, SLOWLOG (credentials redacted) and LATENCY,
//! with their settings changed by CONFIG SET; in RESP2 and RESP3.

use std::collections::HashMap;

use redis::{Connection, Value};
use sessiond::{Config, RawConfig};
use sessiond_tests::{info_field, info_number, TestServer};

use crate::daemon::ScratchDir;
use crate::words::{cmd, each_protocol, error, query};

/// INFO with `sections`, through `con` (so that the connection count is exact).
fn info(con: &mut Connection, sections: &str) -> String {
    let mut command = redis::cmd("INFO");
    for section in sections.split(' ').filter(|s| !s.is_empty()) {
        command.arg(section);
    }
    command.query(con).expect("INFO")
}

/// The `# Title` lines of an INFO text, lower-cased.
fn sections(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# "))
        .map(str::to_lowercase)
        .collect()
}

/// The `a=1,b=2` fields of the INFO line `name`.
fn fields(text: &str, name: &str) -> HashMap<String, String> {
    info_field(text, name)
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn number(fields: &HashMap<String, String>, name: &str) -> f64 {
    fields[name]
        .parse()
        .unwrap_or_else(|_| panic!("{name}: {fields:?}"))
}

#[test]
fn info_selects_sections_as_redis_7() {
    each_protocol(|_, con| {
        let default = [
            "server",
            "clients",
            "memory",
            "persistence",
            "stats",
            "replication",
            "cpu",
            "modules",
            "errorstats",
            "cluster",
            "keyspace",
        ];
        assert_eq!(sections(&info(con, "")), default);
        assert_eq!(sections(&info(con, "default")), default);
        let all = [
            "server",
            "clients",
            "memory",
            "persistence",
            "stats",
            "replication",
            "cpu",
            "modules",
            "commandstats",
            "errorstats",
            "latencystats",
            "sessions",
            "cluster",
            "keyspace",
        ];
        assert_eq!(sections(&info(con, "all")), all);
        assert_eq!(sections(&info(con, "everything")), all);
        assert_eq!(
            sections(&info(con, "CPU commandstats")),
            ["cpu", "commandstats"]
        );
        let mut with_stats = default.to_vec();
        with_stats.insert(8, "commandstats");
        assert_eq!(sections(&info(con, "default commandstats")), with_stats);
    });
}

#[test]
fn info_server_clients_memory_and_cpu_describe_the_process() {
    each_protocol(|server, con| {
        let text = info(con, "server clients memory cpu");
        let run_id = info_field(&text, "run_id");
        assert_eq!(run_id.len(), 40, "{run_id}");
        assert!(run_id.bytes().all(|b| b.is_ascii_hexdigit()), "{run_id}");
        assert_eq!(info_field(&info(con, "server"), "run_id"), run_id);
        assert_eq!(
            info_number(&text, "process_id"),
            u64::from(std::process::id())
        );
        assert_eq!(
            info_number(&text, "tcp_port"),
            u64::from(server.addr.port())
        );
        assert!(info_number(&text, "uptime_in_seconds") < 3600);
        assert_eq!(info_number(&text, "uptime_in_days"), 0);
        assert!(!info_field(&text, "executable").is_empty());
        assert_eq!(info_field(&text, "config_file"), "");
        assert_eq!(info_field(&text, "redis_version"), "7.2.0");

        assert_eq!(info_number(&text, "connected_clients"), 1);
        assert_eq!(info_number(&text, "maxclients"), 10_000);

        let used = info_number(&text, "used_memory");
        let rss = info_number(&text, "used_memory_rss");
        assert!(used > 0 && used <= rss, "{text}");
        assert!(info_number(&text, "used_memory_peak") >= used);
        assert!(info_number(&text, "total_system_memory") > rss);
        let ratio: f64 = info_field(&text, "mem_fragmentation_ratio")
            .parse()
            .unwrap();
        assert!(ratio >= 1.0, "{text}");
        assert_eq!(info_field(&text, "maxmemory_policy"), "noeviction");
        assert_eq!(info_number(&text, "maxmemory"), 0);
        assert_eq!(info_number(&text, "used_memory_dataset"), 0);
        query(con, &format!("SET big {}", "x".repeat(100_000)));
        let dataset = info_number(&info(con, "memory"), "used_memory_dataset");
        assert!(dataset >= 100_000, "{dataset}");

        for field in [
            "used_cpu_sys",
            "used_cpu_user",
            "used_cpu_sys_children",
            "used_cpu_user_children",
        ] {
            let seconds: f64 = info_field(&text, field).parse().unwrap();
            assert!(seconds >= 0.0, "{field}");
        }
    });
}

#[test]
fn commandstats_errorstats_and_latencystats_follow_the_commands() {
    each_protocol(|_, con| {
        query(con, "SET k v");
        query(con, "GET k");
        query(con, "GET k");
        query(con, "HSET h f v");
        // A failed call (it ran), a rejected one (it did not), an unknown command.
        assert!(error(con, "GET h").starts_with("WRONGTYPE"));
        assert_eq!(
            error(con, "GET"),
            "ERR wrong number of arguments for 'get' command"
        );
        assert!(error(con, "NOSUCH x").starts_with("ERR unknown command"));
        query(con, "CONFIG GET maxmemory");

        let text = info(con, "commandstats errorstats latencystats stats");
        let get = fields(&text, "cmdstat_get");
        assert_eq!(number(&get, "calls"), 3.0);
        assert_eq!(number(&get, "rejected_calls"), 1.0);
        assert_eq!(number(&get, "failed_calls"), 1.0);
        let per_call = number(&get, "usec_per_call");
        assert!(
            (per_call - number(&get, "usec") / 3.0).abs() < 0.01,
            "{get:?}"
        );
        let set = fields(&text, "cmdstat_set");
        assert_eq!(
            (number(&set, "calls"), number(&set, "failed_calls")),
            (1.0, 0.0)
        );
        assert_eq!(number(&fields(&text, "cmdstat_config|get"), "calls"), 1.0);
        assert!(!text.contains("cmdstat_nosuch"));
        // INFO counts itself once it has answered.
        assert!(!text.contains("cmdstat_info"));

        assert_eq!(number(&fields(&text, "errorstat_ERR"), "count"), 2.0);
        assert_eq!(number(&fields(&text, "errorstat_WRONGTYPE"), "count"), 1.0);
        assert_eq!(info_number(&text, "total_error_replies"), 3);

        let latency = fields(&text, "latency_percentiles_usec_get");
        let (p50, p99, p999) = (
            number(&latency, "p50"),
            number(&latency, "p99"),
            number(&latency, "p99.9"),
        );
        assert!(0.0 <= p50 && p50 <= p99 && p99 <= p999, "{latency:?}");
        assert!(text.contains("latency_percentiles_usec_config|get:"));

        let processed = info_number(&text, "total_commands_processed");
        assert!(processed >= 8, "{processed}");
        assert_eq!(query(con, "CONFIG RESETSTAT"), Value::Okay);
        let text = info(con, "commandstats errorstats stats");
        assert!(!text.contains("cmdstat_get"), "{text}");
        assert!(!text.contains("errorstat_"), "{text}");
        assert_eq!(info_number(&text, "total_error_replies"), 0);
        assert_eq!(
            number(&fields(&text, "cmdstat_config|resetstat"), "calls"),
            1.0
        );
        assert!(info_number(&text, "total_commands_processed") <= 2);
        assert_eq!(
            error(con, "CONFIG RESETSTAT now"),
            "ERR wrong number of arguments for 'config|resetstat' command"
        );
    });
}

#[test]
fn commands_a_script_runs_count_as_commands_of_their_own() {
    each_protocol(|_, con| {
        assert_eq!(query(con, "CONFIG RESETSTAT"), Value::Okay);
        let script = "redis.call('set', KEYS[1], 'v'); redis.call('get', KEYS[1]); \
                      redis.pcall('incr', KEYS[1]); redis.pcall('get'); return 1";
        let reply = redis::cmd("EVAL")
            .arg(script)
            .arg(1)
            .arg("k")
            .query::<i64>(con)
            .unwrap();
        assert_eq!(reply, 1);
        let text = info(con, "commandstats latencystats");
        assert_eq!(number(&fields(&text, "cmdstat_eval"), "calls"), 1.0);
        assert_eq!(number(&fields(&text, "cmdstat_set"), "calls"), 1.0);
        let get = fields(&text, "cmdstat_get");
        // As Redis: the call with a wrong arity is rejected, not run.
        assert_eq!(
            (number(&get, "calls"), number(&get, "rejected_calls")),
            (1.0, 1.0)
        );
        let incr = fields(&text, "cmdstat_incr");
        assert_eq!(
            (number(&incr, "calls"), number(&incr, "failed_calls")),
            (1.0, 1.0)
        );
        assert!(text.contains("latency_percentiles_usec_set:"), "{text}");
    });
}

/// `limited` may read and write but not run admin commands.
fn users_config() -> Config {
    let dir = ScratchDir::new();
    let digest = sessiond::auth::password_sha256;
    let toml = format!(
        r#"
        [[user]]
        name = "limited"
        password-sha256 = "{}"
        keys = ["*"]
        categories = ["read", "write"]

        [[user]]
        name = "ops"
        password-sha256 = "{}"
        keys = ["*"]
        categories = ["all"]
        "#,
        digest("pw"),
        digest("pw-ops"),
    );
    let file = dir.file("sessiond.toml", &toml);
    Config {
        persistence: None,
        ..RawConfig::from_file(&file)
            .expect("a valid file")
            .validate()
            .expect("valid users")
    }
}

#[test]
fn a_refused_permission_is_a_rejected_call() {
    for resp3 in [false, true] {
        let server = TestServer::with_config(users_config());
        let protocol = if resp3 { "?protocol=resp3" } else { "" };
        let login = |user: &str, password: &str| {
            redis::Client::open(format!(
                "redis://{user}:{password}@{}/{protocol}",
                server.addr
            ))
            .unwrap()
            .get_connection()
            .unwrap()
        };
        let mut limited = login("limited", "pw");
        assert!(error(&mut limited, "FLUSHALL").starts_with("NOPERM"));
        assert!(error(&mut limited, "SLOWLOG GET").starts_with("NOPERM"));
        let mut ops = login("ops", "pw-ops");
        let text = info(&mut ops, "commandstats errorstats");
        let flushall = fields(&text, "cmdstat_flushall");
        assert_eq!(
            (
                number(&flushall, "calls"),
                number(&flushall, "rejected_calls")
            ),
            (0.0, 1.0)
        );
        assert_eq!(number(&fields(&text, "errorstat_NOPERM"), "count"), 2.0);
    }
}

/// A SLOWLOG GET entry: id, Unix seconds, µs, the arguments, the peer, the client's name.
struct Entry {
    id: i64,
    unix_s: i64,
    args: Vec<String>,
    peer: String,
    name: String,
}

fn text(value: &Value) -> String {
    match value {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(text) => text.clone(),
        Value::VerbatimString { text, .. } => text.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

fn entries(con: &mut Connection, count: &str) -> Vec<Entry> {
    let line = format!("SLOWLOG GET {count}");
    let Value::Array(items) = query(con, line.trim_end()) else {
        panic!("SLOWLOG GET: not an array");
    };
    items
        .iter()
        .map(|item| match item {
            Value::Array(fields) => match &fields[..] {
                [Value::Int(id), Value::Int(unix_s), Value::Int(usec), Value::Array(args), peer, name] =>
                {
                    assert!(*usec >= 0);
                    Entry {
                        id: *id,
                        unix_s: *unix_s,
                        args: args.iter().map(text).collect(),
                        peer: text(peer),
                        name: text(name),
                    }
                }
                other => panic!("entry: {other:?}"),
            },
            other => panic!("entry: {other:?}"),
        })
        .collect()
}

#[test]
fn slowlog_redacts_session_ids_used_as_keys_by_any_command() {
    each_protocol(|_server, con| {
        assert_eq!(
            query(con, "CONFIG SET slowlog-log-slower-than 0"),
            Value::Okay
        );
        let first = text(&query(con, "SESSION.CREATE USER ada"));
        let second = text(&query(con, "SESSION.CREATE USER ada"));
        assert_eq!(query(con, "SLOWLOG RESET"), Value::Okay);
        // Answered or refused (PERSIST of a session is WRONGTYPE), each is logged.
        let mut run = |line: &str| {
            let _ = cmd(line).query::<Value>(con);
        };
        for command in ["TTL", "EXISTS", "TYPE", "PERSIST"] {
            run(&format!("{command} {first}"));
        }
        // Refused: a session keeps the ID the server issued, so every session's key is one.
        run(&format!("RENAME {second} moved"));
        run("TYPE moved");
        run(&format!("DEL {first}"));
        run("GET user:1");

        let shown: Vec<Vec<String>> = entries(con, "-1").into_iter().map(|e| e.args).collect();
        let all = format!("{shown:?}");
        assert!(!all.contains(&first) && !all.contains(&second), "{all}");
        let expected: Vec<Vec<&str>> = vec![
            vec!["GET", "user:1"],
            vec!["DEL", "(redacted)"],
            vec!["TYPE", "moved"],
            vec!["RENAME", "(redacted)", "moved"],
            vec!["PERSIST", "(redacted)"],
            vec!["TYPE", "(redacted)"],
            vec!["EXISTS", "(redacted)"],
            vec!["TTL", "(redacted)"],
            vec!["SLOWLOG", "RESET"],
        ];
        assert_eq!(shown, expected);
    });
}

#[test]
fn a_slow_log_entry_inside_exec_touches_no_key_the_block_does_not_hold() {
    // SPUBLISH's channel sits at a key position of its spec, but EXEC locks no shard for it:
    // building its entry must not read the store (it panicked there, the EXEC half done).
    each_protocol(|_server, con| {
        assert_eq!(
            query(con, "CONFIG SET slowlog-log-slower-than 0"),
            Value::Okay
        );
        let (a, published, b): (String, i64, String) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg("a")
            .arg("1")
            .cmd("SPUBLISH")
            .arg("chan")
            .arg("hello")
            .cmd("SET")
            .arg("b")
            .arg("2")
            .query(con)
            .expect("EXEC");
        assert_eq!((a.as_str(), published, b.as_str()), ("OK", 0, "OK"));
        let shown: Vec<Vec<String>> = entries(con, "3").into_iter().map(|e| e.args).collect();
        assert_eq!(
            shown,
            [
                vec!["SET", "b", "(redacted)"],
                vec!["SPUBLISH", "chan", "(redacted)"],
                vec!["SET", "a", "(redacted)"]
            ]
        );
    });
}

#[test]
fn slowlog_at_zero_logs_every_command_with_credentials_redacted() {
    each_protocol(|server, con| {
        assert_eq!(
            query(con, "CONFIG SET slowlog-log-slower-than 0"),
            Value::Okay
        );
        query(con, "CLIENT SETNAME tester");
        assert_eq!(query(con, "SLOWLOG RESET"), Value::Okay);
        assert_eq!(query(con, "SLOWLOG LEN"), Value::Int(1));
        query(con, "SET user:1 secret-value EX 100");
        query(con, "HSET h field secret-field-value");
        let id = text(&query(con, "SESSION.CREATE USER ada DATA f secret-data"));
        query(con, &format!("SESSION.SET {id} f secret-data-2"));
        let _ = error(con, "AUTH someone secret-password");
        query(con, "CONFIG GET maxmemory");

        let log = entries(con, "-1");
        let shown: Vec<Vec<String>> = log.iter().map(|e| e.args.clone()).collect();
        let expected: Vec<Vec<&str>> = vec![
            vec!["CONFIG", "GET", "(redacted)"],
            vec!["AUTH", "(redacted)", "(redacted)"],
            vec!["SESSION.SET", "(redacted)", "(redacted)", "(redacted)"],
            vec![
                "SESSION.CREATE",
                "(redacted)",
                "(redacted)",
                "(redacted)",
                "(redacted)",
                "(redacted)",
            ],
            vec!["HSET", "h", "(redacted)", "(redacted)"],
            vec!["SET", "user:1", "(redacted)", "(redacted)", "(redacted)"],
            vec!["SLOWLOG", "LEN"],
            vec!["SLOWLOG", "RESET"],
        ];
        assert_eq!(shown, expected);
        let all = format!("{shown:?}");
        assert!(!all.contains("secret") && !all.contains(&id), "{all}");
        // Newest first, numbered in order, with the client's address and name.
        let ids: Vec<i64> = log.iter().map(|e| e.id).collect();
        assert!(ids.windows(2).all(|w| w[0] == w[1] + 1), "{ids:?}");
        let now_s = (server.now_ms() / 1000) as i64;
        assert!(log.iter().all(|e| (e.unix_s - now_s).abs() <= 1));
        assert!(log.iter().all(|e| e.name == "tester"));
        assert!(log[0].peer.starts_with("127.0.0.1:"), "{}", log[0].peer);
        assert_eq!(entries(con, "2").len(), 2);
        // A transaction's commands are logged one by one, EXEC itself not (`skip_slowlog`).
        query(con, "MULTI");
        query(con, "SET tx:1 secret-in-tx");
        query(con, "EXEC");
        let shown: Vec<Vec<String>> = entries(con, "3").into_iter().map(|e| e.args).collect();
        assert_eq!(
            shown,
            [
                vec!["SET", "tx:1", "(redacted)"],
                vec!["MULTI"],
                vec!["SLOWLOG", "GET", "(redacted)"]
            ]
        );
        assert_eq!(entries(con, "").len(), 10);

        // The settings, read back and applied at once.
        assert_eq!(query(con, "CONFIG SET slowlog-max-len 3"), Value::Okay);
        assert_eq!(query(con, "SLOWLOG LEN"), Value::Int(3));
        let settings = query(con, "CONFIG GET slowlog-*");
        let settings: HashMap<String, String> = redis::from_redis_value(settings).unwrap();
        assert_eq!(settings["slowlog-max-len"], "3");
        assert_eq!(settings["slowlog-log-slower-than"], "0");
        assert_eq!(
            query(con, "CONFIG SET slowlog-log-slower-than -1"),
            Value::Okay
        );
        assert_eq!(query(con, "SLOWLOG RESET"), Value::Okay);
        query(con, "GET k");
        assert_eq!(query(con, "SLOWLOG LEN"), Value::Int(0));

        assert_eq!(
            error(con, "SLOWLOG GET -2"),
            "ERR count should be greater than or equal to -1"
        );
        assert_eq!(
            error(con, "SLOWLOG NOPE"),
            "ERR unknown subcommand 'NOPE'. Try SLOWLOG HELP."
        );
        assert_eq!(
            error(con, "SLOWLOG LEN x"),
            "ERR wrong number of arguments for 'slowlog|len' command"
        );
        assert!(
            error(con, "CONFIG SET slowlog-log-slower-than -2").starts_with(
                "ERR CONFIG SET failed (possibly related to argument 'slowlog-log-slower-than')"
            )
        );
        let Value::Array(help) = query(con, "SLOWLOG HELP") else {
            panic!("SLOWLOG HELP");
        };
        assert!(text(&help[0]).starts_with("SLOWLOG <subcommand>"));
    });
}

#[test]
fn a_pipeline_logs_each_command_with_its_own_arguments() {
    // The slow log keeps the case of a command's name and copies of its keys before the
    // command consumes them; in a pipeline every entry shows its own command's, the
    // long-running script's neighbours included.
    each_protocol(|_, con| {
        assert_eq!(
            query(con, "CONFIG SET slowlog-log-slower-than 0"),
            Value::Okay
        );
        assert_eq!(query(con, "SLOWLOG RESET"), Value::Okay);
        let long_key = "k".repeat(200);
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg("first").arg("secret-1");
        pipe.cmd("get").arg(&long_key);
        pipe.cmd("PING");
        pipe.cmd("EVAL").arg(BUSY).arg(1).arg("in-script");
        pipe.cmd("MGET").arg("a").arg("b").arg("c");
        pipe.cmd("CONFIG").arg("GET").arg("maxmemory");
        pipe.cmd("SESSION.CREATE").arg("USER").arg("ada");
        pipe.cmd("Get").arg("last");
        let _: Vec<Value> = pipe.query(con).unwrap();
        let log = entries(con, "8");
        let shown: Vec<Vec<String>> = log.iter().rev().map(|e| e.args.clone()).collect();
        let long_shown = format!("{}... (72 more bytes)", "k".repeat(128));
        let expected: Vec<Vec<&str>> = vec![
            vec!["SET", "first", "(redacted)"],
            vec!["get", &long_shown],
            vec!["PING"],
            // EVAL's keys are movable (none in its key range), so not shown.
            vec!["EVAL", "(redacted)", "(redacted)", "(redacted)"],
            vec!["MGET", "a", "b", "c"],
            vec!["CONFIG", "GET", "(redacted)"],
            vec!["SESSION.CREATE", "(redacted)", "(redacted)"],
            // A name in mixed case is shown in its first letter's.
            vec!["GET", "last"],
        ];
        assert_eq!(shown, expected);
        // Counted once each, in INFO too.
        let text = info(con, "commandstats");
        assert_eq!(number(&fields(&text, "cmdstat_eval"), "calls"), 1.0);
        assert_eq!(number(&fields(&text, "cmdstat_get"), "calls"), 2.0);
    });
}

/// A script that runs for a while: 3 million Lua iterations take tens of milliseconds.
const BUSY: &str = "local i = 0 while i < 3000000 do i = i + 1 end return i";

#[test]
fn latency_records_spikes_past_its_threshold() {
    each_protocol(|_, con| {
        let eval = |con: &mut Connection| {
            let n: i64 = cmd("EVAL").arg(BUSY).arg(0).query(con).unwrap();
            assert_eq!(n, 3_000_000);
        };
        // Off by default.
        eval(con);
        assert_eq!(query(con, "LATENCY LATEST"), Value::Array(vec![]));
        assert!(text(&query(con, "LATENCY DOCTOR")).contains("disabled"));

        assert_eq!(
            query(con, "CONFIG SET latency-monitor-threshold 1"),
            Value::Okay
        );
        eval(con);
        // Other commands may spike too on a busy machine: only the script's event is checked.
        let Value::Array(latest) = query(con, "LATENCY LATEST") else {
            panic!("LATENCY LATEST");
        };
        let command = latest
            .iter()
            .find_map(|event| match event {
                Value::Array(fields) if text(&fields[0]) == "command" => Some(fields.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no command event: {latest:?}"));
        let [_, Value::Int(at), Value::Int(ms), Value::Int(max)] = &command[..] else {
            panic!("{command:?}");
        };
        assert!(*at > 0 && *ms >= 1 && max >= ms, "{command:?}");
        let Value::Array(history) = query(con, "LATENCY HISTORY command") else {
            panic!("LATENCY HISTORY");
        };
        assert!(
            history.contains(&Value::Array(vec![Value::Int(*at), Value::Int(*ms)])),
            "{history:?}"
        );
        assert_eq!(query(con, "LATENCY HISTORY nope"), Value::Array(vec![]));
        assert!(text(&query(con, "LATENCY DOCTOR")).contains("command: "));
        let threshold: HashMap<String, String> =
            redis::from_redis_value(query(con, "CONFIG GET latency-monitor-threshold")).unwrap();
        assert_eq!(threshold["latency-monitor-threshold"], "1");

        // Off again, so that nothing is recorded after the reset.
        assert_eq!(
            query(con, "CONFIG SET latency-monitor-threshold 0"),
            Value::Okay
        );
        assert_eq!(query(con, "LATENCY RESET nope"), Value::Int(0));
        let Value::Int(reset) = query(con, "LATENCY RESET") else {
            panic!("LATENCY RESET");
        };
        assert!(reset >= 1);
        assert_eq!(query(con, "LATENCY LATEST"), Value::Array(vec![]));
        assert_eq!(
            error(con, "LATENCY HISTORY"),
            "ERR wrong number of arguments for 'latency|history' command"
        );
        assert_eq!(
            error(con, "LATENCY GRAPH command"),
            "ERR unknown subcommand 'GRAPH'. Try LATENCY HELP."
        );
    });
}
