//! Real Redis processes for the Sentinel tests: `redis-server` nodes and `redis-sentinel`s on
//! 127.0.0.1, each on a port reserved by binding port 0 (Sentinel needs a real port to announce),
//! each sentinel with its own config file (Sentinel rewrites it), all killed on drop.
//!
//! Debian's `redis-server` and `redis-sentinel` packages provide them (`.ci/run` installs them);
//! a test calls [`installed`] first and skips, saying why, where one is missing. Nothing here
//! waits on a timer alone: readiness and state changes are polled a bounded number of times.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::IO_TIMEOUT;

/// The pause between two polls of a process's state.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Whether `program` (`redis-server`, `redis-sentinel`) runs here.
pub fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A free TCP port on 127.0.0.1: bound on port 0, then released for the process to take.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind 127.0.0.1:0")
}

/// Polls `probe` up to `attempts` times, [`POLL_INTERVAL`] apart, until it gives a value;
/// panics naming `what` if it never does.
pub fn poll<T>(what: &str, attempts: usize, mut probe: impl FnMut() -> Option<T>) -> T {
    for _ in 0..attempts {
        if let Some(value) = probe() {
            return value;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    panic!("{what}: not after {attempts} polls");
}

/// A scratch directory for config files and logs, removed on drop.
pub struct Scratch(PathBuf);

impl Scratch {
    /// A new, empty directory under the system's temporary directory.
    pub fn new(tag: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "sessiond-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create scratch dir");
        Scratch(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A Redis process (a server or a sentinel) on 127.0.0.1, killed on drop.
pub struct RedisProcess {
    child: Child,
    /// Its port.
    pub port: u16,
    /// Its log file.
    pub log: PathBuf,
}

impl RedisProcess {
    /// `redis-server` on a free port, without persistence, with `args` added (`--replicaof`,
    /// ...); returns once it answers PING.
    pub fn server(dir: &Path, args: &[&str]) -> RedisProcess {
        let port = free_port();
        let log = dir.join(format!("redis-{port}.log"));
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", dir.to_str().expect("utf-8 temp path")])
            .args(["--logfile", log.to_str().expect("utf-8 temp path")])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        RedisProcess { child, port, log }.ready()
    }

    /// `redis-sentinel` on a free port, monitoring `master` at `127.0.0.1:primary_port` with
    /// `quorum`, `settings` (`down-after-milliseconds 500`, ...) applied to that master, from a
    /// config file of its own in `dir`; returns once it answers PING.
    pub fn sentinel(
        dir: &Path,
        master: &str,
        primary_port: u16,
        quorum: u32,
        settings: &[&str],
    ) -> RedisProcess {
        let port = free_port();
        let log = dir.join(format!("sentinel-{port}.log"));
        let mut config = format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nlogfile {}\n\
             sentinel monitor {master} 127.0.0.1 {primary_port} {quorum}\n",
            dir.display(),
            log.display()
        );
        for setting in settings {
            config.push_str(&format!(
                "sentinel {} {master} {}\n",
                word(setting, 0),
                rest(setting)
            ));
        }
        let file = dir.join(format!("sentinel-{port}.conf"));
        std::fs::write(&file, config).expect("write sentinel.conf");
        let child = Command::new("redis-sentinel")
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-sentinel");
        RedisProcess { child, port, log }.ready()
    }

    fn ready(self) -> RedisProcess {
        let port = self.port;
        poll(&format!("redis process on {port} answering"), 200, || {
            let mut connection = self.try_connect()?;
            redis::cmd("PING").query::<String>(&mut connection).ok()
        });
        self
    }

    fn try_connect(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port)).ok()?;
        let connection = client.get_connection_with_timeout(IO_TIMEOUT).ok()?;
        connection.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
        Some(connection)
    }

    /// A new connection (RESP2).
    pub fn connect(&self) -> redis::Connection {
        self.try_connect().expect("connect to the redis process")
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn word(text: &str, index: usize) -> &str {
    text.split_whitespace().nth(index).unwrap_or_default()
}

fn rest(text: &str) -> &str {
    text.trim_start()
        .split_once(char::is_whitespace)
        .map_or("", |(_, rest)| rest.trim_start())
}

/// `SENTINEL get-master-addr-by-name master` on the sentinel at `port`: the primary's port, if
/// it names one on 127.0.0.1.
pub fn primary_port(sentinel: &mut redis::Connection, master: &str) -> Option<u16> {
    let reply: Option<(String, String)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(master)
        .query(sentinel)
        .ok()?;
    reply.and_then(|(_, port)| port.parse().ok())
}

/// The first element of `ROLE` on `node`: `master`, `slave` (or `sentinel`).
pub fn role(node: &mut redis::Connection) -> Option<String> {
    let reply: Vec<redis::Value> = redis::cmd("ROLE").query(node).ok()?;
    match reply.first()? {
        redis::Value::BulkString(role) => String::from_utf8(role.clone()).ok(),
        redis::Value::SimpleString(role) => Some(role.clone()),
        _ => None,
    }
}
