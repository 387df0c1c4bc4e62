//! Running the real `sessiond` binary: building it, scratch directories, a daemon handle that
//! learns its addresses from the `listening for TLS on` and `listening on` lines and is killed on drop, and runs that must end
//! before listening. Shared by the `binary` and `persistence` modules.
//!
//! The binary belongs to another package, so `CARGO_BIN_EXE_sessiond` does not exist here; the
//! tests ask cargo to build it (a no-op when it is fresh) and use the path cargo reports, so they
//! never run a stale binary and work from a fresh clone under `cargo test --workspace`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::JoinHandle;

use sessiond_tests::IO_TIMEOUT;

/// The path of an up-to-date `sessiond` binary, built once per test run.
pub fn sessiond_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build_sessiond)
}

fn build_sessiond() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace");
    let mut command = Command::new(cargo);
    // The variables cargo sets for this test process describe the tests crate; build scripts
    // that watch them (ring's watches CARGO_MANIFEST_DIR) would otherwise rebuild, and the
    // next `cargo test` rebuild again, on every run.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_tests = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
        ];
        if set_for_tests.iter().any(|prefix| name.starts_with(prefix)) {
            command.env_remove(&*name);
        }
    }
    let output = command
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
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new() -> ScratchDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sessiond-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create scratch dir");
        ScratchDir(path)
    }

    /// Writes `contents` to the file `name` in the directory and returns its path.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write scratch file");
        path
    }

    /// The path of `name` in the directory, as a UTF-8 string for a command line.
    pub fn arg(&self, name: &str) -> String {
        self.0
            .join(name)
            .to_str()
            .expect("utf-8 temp path")
            .to_owned()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The daemon command run from `cwd`, isolated from the caller's `SESSIOND_*` and `RUST_LOG`.
pub fn daemon_command(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(sessiond_binary());
    command
        .args(args)
        .current_dir(cwd)
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

/// Runs the daemon from `cwd` with a start that must fail: returns the exit status and the whole
/// log. Panics (after killing it) if the daemon starts listening instead.
pub fn run_until_exit(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut child = daemon_command(cwd, args, envs)
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
            panic!("{args:?} {envs:?} started instead of failing:\n{log}{line}");
        }
        log.push_str(&line);
    }
    let status = child.wait().expect("wait for sessiond");
    (status, log)
}

/// Runs one of the binary's tools (`sessiond check-snapshot FILE`) to completion.
pub fn run_tool(args: &[&str]) -> Output {
    Command::new(sessiond_binary())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run sessiond")
}

/// The address at the start of `rest`, the end of a `listening ... on` line.
fn parse_addr(rest: &str, line: &str) -> SocketAddr {
    let addr = rest.split_whitespace().next().unwrap_or_default();
    addr.parse::<SocketAddr>()
        .unwrap_or_else(|e| panic!("bad address {addr:?} in {line:?}: {e}"))
}

/// A running daemon; killed on drop if a test did not stop it.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    /// The TLS listener's address, from the `listening for TLS on` line, with `--tls-port`.
    pub tls_addr: Option<SocketAddr>,
    /// The metrics endpoint's address, from the `metrics on http://...` line, with
    /// `--metrics-port`.
    pub metrics_addr: Option<SocketAddr>,
    /// Log lines up to the `listening on` line, then those read by [`Daemon::wait_for_log`].
    early_log: String,
    /// The rest of stderr, line by line, read by a thread so the daemon never blocks on a full
    /// pipe.
    lines: std::sync::mpsc::Receiver<String>,
    _reader: Option<JoinHandle<()>>,
    /// The scratch directory it runs in, when the daemon owns it.
    _dir: Option<ScratchDir>,
}

impl Daemon {
    /// Starts the daemon in a scratch directory of its own and waits for `listening on <addr>`.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        Daemon::start_in(ScratchDir::new(), args, envs)
    }

    /// Starts the daemon in `dir`, which it removes when dropped.
    pub fn start_in(dir: ScratchDir, args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let mut daemon = Daemon::start_at(&dir.0, args, envs);
        daemon._dir = Some(dir);
        daemon
    }

    /// Starts the daemon from `cwd`, a directory that outlives it (to restart on the same data).
    pub fn start_at(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        let mut child = daemon_command(cwd, args, envs)
            .spawn()
            .expect("spawn sessiond");
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut early_log = String::new();
        let mut tls_addr = None;
        let mut metrics_addr = None;
        let addr = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).expect("read stderr") == 0 {
                let status = child.wait().expect("wait for sessiond");
                panic!("sessiond exited ({status}) before listening:\n{early_log}");
            }
            early_log.push_str(&line);
            if let Some((_, rest)) = line.split_once("listening for TLS on ") {
                tls_addr = Some(parse_addr(rest, &line));
            }
            if let Some((_, rest)) = line.split_once("metrics on http://") {
                metrics_addr = Some(parse_addr(
                    rest.trim_end().trim_end_matches("/metrics"),
                    &line,
                ));
            }
            if let Some((_, rest)) = line.split_once("listening on ") {
                break parse_addr(rest, &line);
            }
        };
        let (sender, lines) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || loop {
            let mut line = String::new();
            match stderr.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    if sender.send(line).is_err() {
                        return;
                    }
                }
            }
        });
        Daemon {
            child,
            addr,
            tls_addr,
            metrics_addr,
            early_log,
            lines,
            _reader: Some(reader),
            _dir: None,
        }
    }

    /// The daemon's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn client(&self, resp3: bool) -> redis::Connection {
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

    /// Sends `signal` (`TERM`, `INT`, `KILL`) and waits for the exit; returns the status and
    /// the log.
    pub fn signal_and_wait(&mut self, signal: &str) -> (ExitStatus, String) {
        self.signal(signal);
        self.wait()
    }

    /// Waits for the daemon to exit by itself (after SHUTDOWN); returns the status and the log.
    pub fn wait(&mut self) -> (ExitStatus, String) {
        let status = self.child.wait().expect("wait for sessiond");
        // The pipe is closed now: the reader sends what is left and stops.
        while let Ok(line) = self.lines.recv() {
            self.early_log.push_str(&line);
        }
        (status, self.early_log.clone())
    }

    /// Waits until the daemon logs a line containing `needle` (panics after a long while, the
    /// daemon being stuck); returns the log so far.
    pub fn wait_for_log(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(IO_TIMEOUT * 6) {
                Ok(line) => {
                    self.early_log.push_str(&line);
                    if line.contains(needle) {
                        return self.early_log.clone();
                    }
                }
                Err(error) => panic!("no {needle:?} in the log ({error}):\n{}", self.early_log),
            }
        }
    }

    /// Whether the daemon has exited.
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` (`TERM`, `INT`) without waiting.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} failed: {sent}");
    }

    /// Stops the daemon with SIGTERM and checks it exited cleanly.
    pub fn stop(&mut self) {
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
