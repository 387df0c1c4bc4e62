//! The real `sessiond` binary, as an operator runs it: it learns its port from `--port 0` and
//! says where it listens on stderr, serves clients, stops cleanly on SIGTERM or SIGINT, refuses a
//! bad configuration with exit code 64 and a message naming the setting, and reads its settings
//! from flags, `SESSIOND_*` variables and a TOML file.
//!
//! The binary belongs to another package, so `CARGO_BIN_EXE_sessiond` does not exist here; the
//! tests ask cargo to build it (a no-op when it is fresh) and use the path cargo reports, so they
//! never run a stale binary and work from a fresh clone under `cargo test --workspace`.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::JoinHandle;

use sessiond_tests::IO_TIMEOUT;

/// The exit code for a bad configuration (`EX_USAGE`).
const EXIT_BAD_CONFIG: i32 = 64;

/// The path of an up-to-date `sessiond` binary, built once per test run.
fn sessiond_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build_sessiond)
}

fn build_sessiond() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace");
    let output = Command::new(cargo)
        .current_dir(workspace)
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args(["--package", "sessiond", "--bin", "sessiond"])
        .args(["--profile", &test_profile()])
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .output()
        .expect("run cargo build");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo build -p sessiond failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter(|line| line.contains(r#""reason":"compiler-artifact""#))
        .find_map(executable_path)
        .unwrap_or_else(|| panic!("cargo reported no sessiond executable:\n{stdout}"))
}

/// The cargo profile this test binary was built with, from the directory it runs from
/// (`target/<profile dir>/deps/e2e-<hash>`), so the daemon is built the same way.
fn test_profile() -> String {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .and_then(|name| name.to_str())
        .unwrap_or("debug");
    match dir {
        "debug" => "dev".to_owned(),
        other => other.to_owned(),
    }
}

/// The `"executable"` of a compiler-artifact message, if it names one.
fn executable_path(message: &str) -> Option<PathBuf> {
    let key = r#""executable":""#;
    let start = message.find(key)? + key.len();
    let mut path = String::new();
    let mut chars = message[start..].chars();
    // JSON string: only `\"` and `\\` can occur in a path cargo prints.
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(PathBuf::from(path)),
            '\\' => path.push(chars.next()?),
            c => path.push(c),
        }
    }
    None
}

/// A scratch directory removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> ScratchDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sessiond-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create scratch dir");
        ScratchDir(path)
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write scratch file");
        path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The daemon command in `dir`, isolated from the caller's `SESSIOND_*` and `RUST_LOG`.
fn daemon_command(dir: &ScratchDir, args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(sessiond_binary());
    command
        .args(args)
        .current_dir(&dir.0)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SESSIOND_") {
            command.env_remove(name);
        }
    }
    command.envs(envs.iter().copied());
    command
}

/// A running daemon; killed on drop if a test did not stop it.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    /// Log lines up to the `listening on` line.
    early_log: String,
    /// Collects the rest of stderr, so the daemon never blocks on a full pipe.
    rest_of_log: Option<JoinHandle<String>>,
    _dir: ScratchDir,
}

impl Daemon {
    /// Starts the daemon and waits for its `listening on <addr>` line.
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        Daemon::start_in(ScratchDir::new(), args, envs)
    }

    fn start_in(dir: ScratchDir, args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let mut child = daemon_command(&dir, args, envs)
            .spawn()
            .expect("spawn sessiond");
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut early_log = String::new();
        let addr = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).expect("read stderr") == 0 {
                let status = child.wait().expect("wait for sessiond");
                panic!("sessiond exited ({status}) before listening:\n{early_log}");
            }
            early_log.push_str(&line);
            if let Some((_, rest)) = line.split_once("listening on ") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                break addr
                    .parse::<SocketAddr>()
                    .unwrap_or_else(|e| panic!("bad address {addr:?} in {line:?}: {e}"));
            }
        };
        let rest_of_log = std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stderr.read_to_string(&mut rest);
            rest
        });
        Daemon {
            child,
            addr,
            early_log,
            rest_of_log: Some(rest_of_log),
            _dir: dir,
        }
    }

    fn client(&self, resp3: bool) -> redis::Connection {
        let protocol = if resp3 { "?protocol=resp3" } else { "" };
        let client =
            redis::Client::open(format!("redis://{}/{protocol}", self.addr)).expect("redis url");
        let connection = client
            .get_connection_with_timeout(IO_TIMEOUT)
            .expect("connect to sessiond");
        connection
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("read timeout");
        connection
    }

    /// Sends `signal` (`TERM`, `INT`) and waits for the exit; returns the status and the log.
    fn signal_and_wait(&mut self, signal: &str) -> (ExitStatus, String) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} failed: {sent}");
        let status = self.child.wait().expect("wait for sessiond");
        let rest = self
            .rest_of_log
            .take()
            .map(|reader| reader.join().expect("stderr reader"))
            .unwrap_or_default();
        (status, format!("{}{rest}", self.early_log))
    }

    /// Stops the daemon with SIGTERM and checks it exited cleanly.
    fn stop(&mut self) {
        let (status, log) = self.signal_and_wait("TERM");
        assert_eq!(status.code(), Some(0), "exit status {status}; log:\n{log}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn config_get(con: &mut redis::Connection, name: &str) -> String {
    let pair: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query(con)
        .expect("CONFIG GET");
    match <[String; 2]>::try_from(pair) {
        Ok([_, value]) => value,
        Err(pair) => panic!("CONFIG GET {name}: {pair:?}"),
    }
}

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
    for (args, envs, named) in cases {
        let mut child = daemon_command(&dir, args, envs)
            .spawn()
            .expect("spawn sessiond");
        let mut log = String::new();
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).expect("read stderr") == 0 {
                break;
            }
            if line.contains("listening on") {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{args:?} {envs:?} was accepted:\n{log}{line}");
            }
            log.push_str(&line);
        }
        let status = child.wait().expect("wait for sessiond");
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
