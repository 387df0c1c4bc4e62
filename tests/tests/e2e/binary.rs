//! The real `sessiond` binary, as an operator runs it: it learns its port from `--port 0` and
//! says where it listens on stderr, serves clients, stops cleanly on SIGTERM or SIGINT, refuses a
//! bad configuration with exit code 64 and a message naming the setting, and reads its settings
//! from flags, `SESSIOND_*` variables and a TOML file. How the binary is built and run lives in
//! [`super::daemon`].

use super::daemon::{run_until_exit, Daemon, ScratchDir};
use sessiond_tests::redis_calls::config_get;

/// The exit code for a bad configuration (`EX_USAGE`).
const EXIT_BAD_CONFIG: i32 = 64;

#[test]
fn serves_on_a_free_port_and_exits_cleanly_on_sigterm_and_sigint() {
    for (signal, logged) in [("TERM", "SIGTERM received"), ("INT", "SIGINT received")] {
        let mut daemon = Daemon::start(&["--port", "0", "--log-level", "debug"], &[]);
        assert!(daemon.addr.ip().is_loopback(), "{}", daemon.addr);
        assert_ne!(daemon.addr.port(), 0);

        let mut con = daemon.client(false);
        let pong: String = redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG");
        let _: () = redis::cmd("SET")
            .arg("session:abc")
            .arg("secret-session-value")
            .query(&mut con)
            .unwrap();
        let value: String = redis::cmd("GET")
            .arg("session:abc")
            .query(&mut con)
            .unwrap();
        assert_eq!(value, "secret-session-value");
        let mut con3 = daemon.client(true);
        let value: String = redis::cmd("GET")
            .arg("session:abc")
            .query(&mut con3)
            .unwrap();
        assert_eq!(value, "secret-session-value");
        assert_eq!(config_get(&mut con, "port"), daemon.addr.port().to_string());

        let (status, log) = daemon.signal_and_wait(signal);
        assert_eq!(status.code(), Some(0), "exit status {status}; log:\n{log}");
        assert!(log.contains(logged), "{log}");
        assert!(log.contains("shutdown complete"), "{log}");
        assert!(
            !log.contains("secret-session-value"),
            "values never reach the log:\n{log}"
        );
    }
}

/// One thread (a current-thread runtime that polls before it sleeps, or not) and several (the
/// multi-thread runtime) serve the same: a pipeline from several connections at once, and a
/// graceful stop.
#[test]
fn one_thread_or_several_serve_the_same() {
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    let configurations: [(&[&str], String, &str); 4] = [
        (&[], (cores - 1).max(1).to_string(), "50"),
        (&["--threads", "1"], "1".to_owned(), "50"),
        (
            &["--threads", "1", "--idle-poll-us", "0"],
            "1".to_owned(),
            "0",
        ),
        (
            &["--threads", "3", "--idle-poll-us", "300"],
            "3".to_owned(),
            "300",
        ),
    ];
    for (args, threads, idle_poll) in configurations {
        let mut daemon = Daemon::start(&[&["--port", "0"], args].concat(), &[]);
        let mut con = daemon.client(false);
        assert_eq!(config_get(&mut con, "io-threads"), threads, "{args:?}");
        assert_eq!(config_get(&mut con, "idle-poll-us"), idle_poll, "{args:?}");
        std::thread::scope(|scope| {
            for writer in 0..4 {
                let mut con = daemon.client(writer % 2 == 0);
                scope.spawn(move || {
                    let mut pipe = redis::pipe();
                    for n in 0..200 {
                        pipe.set(format!("k:{writer}:{n}"), n).ignore();
                        pipe.get(format!("k:{writer}:{n}"));
                    }
                    let got: Vec<u32> = pipe.query(&mut con).expect("pipeline");
                    assert_eq!(got, (0..200).collect::<Vec<u32>>(), "{args:?}");
                });
            }
        });
        let size: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
        assert_eq!(size, 800, "{args:?}");
        let (status, log) = daemon.signal_and_wait("TERM");
        assert_eq!(status.code(), Some(0), "{args:?}: {status}; log:\n{log}");
        assert!(log.contains("shutdown complete"), "{args:?}: {log}");
    }
}

/// The process runs without transparent huge pages unless told otherwise (Linux: the
/// `THP_enabled` line of `/proc/<pid>/status`, from kernel 5.0 on).
#[test]
fn transparent_huge_pages_are_off_unless_asked_for() {
    for (args, setting, enabled) in [
        (&[][..], "yes", "0"),
        (&["--disable-thp", "no"][..], "no", "1"),
    ] {
        let mut daemon = Daemon::start(&[&["--port", "0"], args].concat(), &[]);
        let mut con = daemon.client(false);
        assert_eq!(config_get(&mut con, "disable-thp"), setting);
        let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid()));
        if let Some(line) = status
            .iter()
            .flat_map(|status| status.lines())
            .find(|line| line.starts_with("THP_enabled:"))
        {
            assert_eq!(line.split_whitespace().nth(1), Some(enabled), "{args:?}");
        }
        daemon.stop();
    }
}

#[test]
fn sigterm_as_soon_as_it_listens_is_a_graceful_stop() {
    // A supervisor may signal the moment the address is logged; the handler must already be
    // installed by then, or the signal's default action kills the process (status: signal 15).
    for _ in 0..20 {
        let mut daemon = Daemon::start(&["--port", "0"], &[]);
        let (status, log) = daemon.signal_and_wait("TERM");
        assert_eq!(status.code(), Some(0), "exit status {status}; log:\n{log}");
        assert!(log.contains("SIGTERM received"), "{log}");
    }
}

/// Flags, environment variables, and what the error message must name.
type BadConfig<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a [&'a str]);

/// Starts the binary with each case's flags and environment and checks that it exits 64 with a
/// "bad configuration" message containing each of the case's words.
fn assert_refused(dir: &ScratchDir, cases: &[BadConfig<'_>]) {
    for (args, envs, named) in cases {
        let (status, log) = run_until_exit(&dir.0, args, envs);
        assert_eq!(
            status.code(),
            Some(EXIT_BAD_CONFIG),
            "{args:?} {envs:?}: {status}\n{log}"
        );
        assert!(
            log.starts_with("sessiond: bad configuration: "),
            "{args:?} {envs:?}: {log}"
        );
        for name in *named {
            assert!(log.contains(name), "{args:?} {envs:?}: {name:?} in {log}");
        }
    }
}

#[test]
fn bad_configuration_exits_64_naming_the_setting() {
    let dir = ScratchDir::new();
    let unknown_key = dir.file("unknown.toml", "port = 0\nno-such-setting = 1\n");
    let unknown_key = unknown_key.to_str().expect("utf-8 temp path");
    let bad_toml = dir.file("bad.toml", "port = \"zero\n");
    let bad_toml = bad_toml.to_str().expect("utf-8 temp path");
    let missing = dir.0.join("missing.toml");
    let missing = missing.to_str().expect("utf-8 temp path");
    let cases: &[BadConfig<'_>] = &[
        (&["--port", "notaport"], &[], &["--port", "notaport"]),
        (&[], &[("SESSIOND_PORT", "notaport")], &["port", "notaport"]),
        (
            &["--port", "0", "--log-format", "xml"],
            &[],
            &["log-format", "xml"],
        ),
        (
            &["--port", "0", "--proto-max-bulk-len", "lots"],
            &[],
            &["proto-max-bulk-len", "lots"],
        ),
        (&["--port", "0", "--maxclients", "0"], &[], &["maxclients"]),
        (&["--port", "0", "--bind", "localhost:1"], &[], &["bind"]),
        (&["--port", "0", "--no-such-flag"], &[], &["--no-such-flag"]),
        // Protected mode: the network without a password, refused before anything is bound.
        (
            &["--port", "0", "--bind", "0.0.0.0"],
            &[],
            &["protected mode", "0.0.0.0", "--protected-mode no"],
        ),
        (
            &["--port", "0", "--maxmemory-policy", "allkeys-random"],
            &[],
            &["maxmemory-policy", "allkeys-random"],
        ),
        (&["--port", "0", "--threads", "5000"], &[], &["threads"]),
        (
            &["--port", "0", "--idle-poll-us", "10001"],
            &[],
            &["idle-poll-us"],
        ),
        (
            &["--port", "0", "--disable-thp", "maybe"],
            &[],
            &["disable-thp", "maybe"],
        ),
        (
            &["--config", unknown_key],
            &[],
            &["no-such-setting", "unknown.toml"],
        ),
        (&["--config", bad_toml], &[], &["bad.toml"]),
        (
            &["--port", "0", "--config", missing],
            &[],
            &["missing.toml"],
        ),
    ];
    assert_refused(&dir, cases);
}

#[test]
fn settings_come_from_the_config_file_and_the_environment() {
    // The file alone: no --port flag, so port 0 must come from the file.
    let dir = ScratchDir::new();
    let file = dir.file("sessiond.toml", "port = 0\nmaxclients = 7\n");
    let file = file.to_str().expect("utf-8 temp path").to_owned();
    let mut daemon = Daemon::start_in(dir, &["--config", &file], &[]);
    assert_ne!(daemon.addr.port(), 6380, "port from the file");
    let mut con = daemon.client(false);
    assert_eq!(config_get(&mut con, "maxclients"), "7");
    let info: String = redis::cmd("INFO").arg("server").query(&mut con).unwrap();
    assert!(info.contains(&format!("config_file:{file}\r\n")), "{info}");
    daemon.stop();

    // The environment alone.
    let mut daemon = Daemon::start(
        &[],
        &[("SESSIOND_PORT", "0"), ("SESSIOND_MAXCLIENTS", "11")],
    );
    assert_ne!(daemon.addr.port(), 6380, "port from SESSIOND_PORT");
    let mut con = daemon.client(false);
    assert_eq!(config_get(&mut con, "maxclients"), "11");
    daemon.stop();

    // All three layers: a flag beats the environment, which beats the file.
    let dir = ScratchDir::new();
    let file = dir.file(
        "layers.toml",
        "port = 0\nmaxclients = 7\nproto-max-bulk-len = \"2mb\"\nmax-command-args = 100\n",
    );
    let file = file.to_str().expect("utf-8 temp path").to_owned();
    let mut daemon = Daemon::start_in(
        dir,
        &["--maxclients", "9"],
        &[
            ("SESSIOND_CONFIG", &file),
            ("SESSIOND_MAXCLIENTS", "11"),
            ("SESSIOND_MAX_COMMAND_ARGS", "50"),
        ],
    );
    let mut con = daemon.client(false);
    assert_eq!(config_get(&mut con, "maxclients"), "9");
    assert_eq!(config_get(&mut con, "max-command-args"), "50");
    assert_eq!(
        config_get(&mut con, "proto-max-bulk-len"),
        (2 * 1024 * 1024).to_string()
    );
    daemon.stop();
}

#[test]
fn sizes_durations_and_yes_no_layer_flag_env_file_default() {
    // Each kind of value given in three layers (the flag wins), in two (the environment wins
    // over the file), in the file alone, and nowhere (the default).
    let dir = ScratchDir::new();
    let file = dir.file(
        "layers.toml",
        "port = 0\n\
         maxmemory = \"3mb\"\ntimeout = \"9s\"\ndisable-thp = \"yes\"\n\
         proto-max-bulk-len = \"2mb\"\nshutdown-timeout = \"4s\"\nprotected-mode = \"yes\"\n\
         client-query-buffer-limit = \"32mb\"\nauth-timeout = \"20s\"\n\
         stop-writes-on-bgsave-error = \"no\"\n",
    );
    let file = file.to_str().expect("utf-8 temp path").to_owned();
    let mut daemon = Daemon::start_in(
        dir,
        &[
            "--maxmemory",
            "1mb",
            "--timeout",
            "7s",
            "--disable-thp",
            "no",
        ],
        &[
            ("SESSIOND_CONFIG", &file),
            ("SESSIOND_MAXMEMORY", "2mb"),
            ("SESSIOND_TIMEOUT", "8s"),
            ("SESSIOND_DISABLE_THP", "yes"),
            ("SESSIOND_PROTO_MAX_BULK_LEN", "1mb"),
            ("SESSIOND_SHUTDOWN_TIMEOUT", "3s"),
            ("SESSIOND_PROTECTED_MODE", "no"),
        ],
    );
    let mut con = daemon.client(false);
    for (name, value) in [
        ("maxmemory", "1048576"),
        ("timeout", "7"),
        ("disable-thp", "no"),
        ("proto-max-bulk-len", "1048576"),
        ("shutdown-timeout", "3"),
        ("protected-mode", "no"),
        ("client-query-buffer-limit", "33554432"),
        ("auth-timeout", "20"),
        ("stop-writes-on-bgsave-error", "no"),
        ("max-inline-len", "65536"),
        ("active-expire-interval", "100ms"),
        ("snapshot-journal-limit", "268435456"),
    ] {
        assert_eq!(config_get(&mut con, name), value, "{name}");
    }
    daemon.stop();
}

#[test]
fn a_bad_size_duration_or_yes_no_names_the_setting_and_the_reason() {
    let dir = ScratchDir::new();
    let cases: &[BadConfig<'_>] = &[
        (
            &["--port", "0", "--maxmemory", "lots"],
            &[],
            &["invalid maxmemory \"lots\": expected a size such as 512, 64kb or 16mb"],
        ),
        (
            &["--port", "0"],
            &[("SESSIOND_TIMEOUT", "soon")],
            &["invalid timeout \"soon\": expected a duration such as 500ms, 10s, 30m or 8h"],
        ),
        (
            &["--port", "0", "--session-idle", "0s"],
            &[],
            &["invalid session-idle \"0s\": must be positive"],
        ),
        (
            &["--port", "0"],
            &[("SESSIOND_PROTECTED_MODE", "off")],
            &["invalid protected-mode \"off\": expected yes or no"],
        ),
    ];
    assert_refused(&dir, cases);
}

/// A bad value in the config file is refused where the file is read, as redis-server refuses a
/// bad line of redis.conf, even when a flag sets the same setting: the message names the file,
/// the line, the key and the reason, and never quotes the file's value (it may be a secret).
#[test]
fn a_bad_value_in_the_config_file_names_its_place_not_its_value() {
    let dir = ScratchDir::new();
    let file = dir.file("sizes.toml", "port = 0\nmaxmemory = \"lots-of-it\"\n");
    let file = file.to_str().expect("utf-8 temp path");
    for args in [
        &["--config", file][..],
        &["--config", file, "--maxmemory", "1mb"][..],
    ] {
        let (status, log) = run_until_exit(&dir.0, args, &[]);
        assert_eq!(
            status.code(),
            Some(EXIT_BAD_CONFIG),
            "{args:?}: {status}\n{log}"
        );
        let expected = "sessiond: bad configuration: config file ";
        assert!(log.starts_with(expected), "{args:?}: {log}");
        assert!(
            log.contains("sizes.toml: line 2, column 13, key maxmemory: expected a size such as 512, 64kb or 16mb"),
            "{args:?}: {log}"
        );
        assert!(
            !log.contains("lots-of-it"),
            "{args:?}: the value is quoted in {log}"
        );
    }
}
