//! Helpers for the end-to-end tests: a real sessiond server started in-process on
//! `127.0.0.1:0` (optionally on a manual clock, optionally with a TLS port), clients for it, a
//! raw-socket peer, in [`tls`] test certificates and a TLS peer, and in [`sentinel`] real
//! `redis-server` and `redis-sentinel` processes.
//!
//! Each [`TestServer`] runs on its own tokio runtime in a background thread, so the tests can
//! use the blocking `redis` client; dropping it shuts the server down and joins the thread.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::BytesMut;
use sessiond::{Clock, Config, ManualClock, Server, Shared};
use sessiond_protocol::{Frame, FrameDecoder};
use tokio::sync::oneshot;

pub mod redis_calls;
pub mod sentinel;
pub mod tls;

/// The start of the manual clock: 2026-01-01T00:00:00Z.
pub const CLOCK_START_MS: u64 = 1_767_225_600_000;

/// How long a test waits on a socket before declaring the server stuck.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A server running in-process for one test.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where its TLS listener listens, when `config.tls` asked for one.
    pub tls_addr: Option<SocketAddr>,
    /// Its shared state (store, counters).
    pub shared: Arc<Shared>,
    /// The manual clock, when started with one.
    pub clock: Option<Arc<ManualClock>>,
    runtime: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// A server with the default configuration on the system clock.
    pub fn start() -> TestServer {
        TestServer::with_config(Config::default())
    }

    /// A server whose time only moves with [`TestServer::advance`].
    pub fn with_manual_clock() -> TestServer {
        TestServer::with_config_and_manual_clock(Config::default())
    }

    /// A server with `config` whose time only moves with [`TestServer::advance`].
    pub fn with_config_and_manual_clock(config: Config) -> TestServer {
        let (clock, manual) = Clock::manual(CLOCK_START_MS);
        let mut server = TestServer::with_config(Config { clock, ..config });
        server.clock = Some(manual);
        server
    }

    /// A server with `config`, bound to `127.0.0.1:0` whatever `config` says (and, with
    /// `config.tls`, to `config.bind` on the TLS port: 127.0.0.1:0 with the defaults).
    pub fn with_config(config: Config) -> TestServer {
        TestServer::with_config_at(config, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// A server with `config` bound to `addr`, e.g. the address of a server just stopped, to
    /// test what its clients do when it comes back.
    pub fn with_config_at(config: Config, addr: SocketAddr) -> TestServer {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            // The runtime the binary would run: on two cores (CI), one thread that polls.
            let runtime = sessiond::build_runtime(&config).expect("test runtime");
            let handle = runtime.handle().clone();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
                let server = Server::from_listener(config, listener).expect("server");
                ready_tx
                    .send((
                        server.local_addr(),
                        server.tls_local_addr(),
                        server.shared(),
                        handle,
                    ))
                    .expect("test waits for the server");
                server
                    .run(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("server run");
            });
        });
        let (addr, tls_addr, shared, runtime) = ready_rx.recv().expect("server started");
        TestServer {
            addr,
            tls_addr,
            shared,
            clock: None,
            runtime,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The URL the `redis` crate connects with, in RESP2 or RESP3.
    pub fn url(&self, resp3: bool) -> String {
        let protocol = if resp3 { "?protocol=resp3" } else { "" };
        format!("redis://{}/{protocol}", self.addr)
    }

    /// A `redis` crate connection speaking RESP2.
    pub fn client(&self) -> redis::Connection {
        self.connect(false)
    }

    /// A `redis` crate connection speaking RESP3.
    pub fn client3(&self) -> redis::Connection {
        self.connect(true)
    }

    /// A `redis` crate connection speaking RESP2, or `None` if the server closed it as it
    /// opened: for a poll that runs while something (Sentinel's `CLIENT KILL TYPE normal` in a
    /// failover) may close new connections.
    pub fn try_client(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(self.url(false)).ok()?;
        let connection = client.get_connection_with_timeout(IO_TIMEOUT).ok()?;
        connection.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
        Some(connection)
    }

    /// A `redis` crate connection in RESP2 (`false`) or RESP3 (`true`).
    pub fn connect(&self, resp3: bool) -> redis::Connection {
        let client = redis::Client::open(self.url(resp3)).expect("redis url");
        let connection = client
            .get_connection_with_timeout(IO_TIMEOUT)
            .expect("connect");
        connection
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("read timeout");
        connection
    }

    /// A raw TCP peer.
    pub fn raw(&self) -> RawClient {
        RawClient::connect(self.addr)
    }

    /// Sends `input` on a fresh connection, half-closes, and returns every reply until the
    /// server closes (after a protocol error, or because the input ended). Replies must be
    /// well-formed RESP, and the server must not close in the middle of one.
    pub fn send_and_drain(&self, input: &[u8]) -> Vec<Frame> {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        // The server may close on a protocol error before reading everything; a failed write
        // is then expected, and so is a reset instead of a clean end.
        if stream.write_all(input).is_ok() {
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        let mut buffer = BytesMut::new();
        let mut decoder = FrameDecoder::default();
        let mut replies = Vec::new();
        loop {
            while let Some(frame) = decoder.decode(&mut buffer).expect("well-formed replies") {
                replies.push(frame);
            }
            let mut chunk = [0u8; 16 * 1024];
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("read failed (server stuck?): {e}"),
            }
        }
        assert!(
            buffer.is_empty(),
            "the server closed in the middle of a reply"
        );
        replies
    }

    /// The TLS listener's address; panics if the server has none.
    pub fn tls_addr(&self) -> SocketAddr {
        self.tls_addr.expect("server started with config.tls")
    }

    /// A TLS peer on the TLS port, with `config` (see [`tls::TestPki::client_config`]).
    pub fn tls(&self, config: Arc<rustls::ClientConfig>) -> tls::TlsClient {
        tls::TlsClient::connect(self.tls_addr(), config)
    }

    /// INFO `section` read through a fresh plaintext connection (no password set).
    pub fn info(&self, section: &str) -> String {
        let mut raw = self.raw();
        raw.command(&[b"INFO", section.as_bytes()]);
        match raw.reply() {
            Frame::Bulk(text) => String::from_utf8_lossy(&text).into_owned(),
            other => panic!("INFO {section}: {other:?}"),
        }
    }

    /// Moves the manual clock forward by `ms`, then waits until the active expiry task has run a
    /// full cycle that started after the move.
    pub fn advance(&self, ms: u64) {
        let clock = self
            .clock
            .as_ref()
            .expect("server started with a manual clock");
        let mut cycles = self.shared.dbs.first().expiry_cycles();
        clock.advance(ms);
        self.runtime.block_on(async {
            // The cycle running during the move may have read the old time; the one after it
            // cannot have.
            for _ in 0..2 {
                tokio::time::timeout(IO_TIMEOUT, cycles.changed())
                    .await
                    .expect("expiry cycle within the timeout")
                    .expect("expiry task alive");
            }
        });
    }

    /// Moves the manual clock forward by `ms` and no more: for a replica, whose keys only its
    /// primary's stream removes (it runs no active expiry).
    pub fn advance_clock(&self, ms: u64) {
        self.clock
            .as_ref()
            .expect("server started with a manual clock")
            .advance(ms);
    }

    /// `f`'s result, run in a task on the server's runtime (on one of its threads), while the
    /// server runs.
    pub fn on_server_runtime<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        self.runtime
            .block_on(self.runtime.spawn(async move { f() }))
            .expect("task on the server's runtime")
    }

    /// Now on the server's clock, Unix ms.
    pub fn now_ms(&self) -> u64 {
        self.shared.dbs.first().now_ms()
    }

    /// Keys held by the store, reclaimed or not (what DBSIZE says, read without a command).
    pub fn stored_keys(&self) -> usize {
        self.shared.dbs.len()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A raw TCP peer for malformed input and byte-level checks.
pub struct RawClient {
    stream: TcpStream,
    buffer: BytesMut,
    decoder: FrameDecoder,
}

impl RawClient {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        RawClient {
            stream,
            buffer: BytesMut::new(),
            decoder: FrameDecoder::default(),
        }
    }

    /// Sends bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends a command as a RESP array of bulk strings.
    pub fn command(&mut self, args: &[&[u8]]) {
        let mut out = BytesMut::new();
        sessiond_protocol::ClientCodec::encode_command(args, &mut out);
        self.send(&out);
    }

    /// Reads the next reply frame; `None` if the server closed the connection first.
    pub fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self
                .decoder
                .decode(&mut self.buffer)
                .expect("well-formed reply")
            {
                return Some(frame);
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                // A read with a timeout is not restarted after a signal (signal(7)), whichever
                // thread of the test process it was for: read again.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("read failed (server stuck?): {e}"),
            }
        }
    }

    /// Reads the next reply, which must exist.
    pub fn reply(&mut self) -> Frame {
        self.read_frame()
            .expect("a reply before the connection closed")
    }

    /// Whether the server closes the connection (after any replies still buffered).
    pub fn closed(&mut self) -> bool {
        loop {
            match self.read_frame() {
                None => return true,
                Some(_) => continue,
            }
        }
    }
}

/// The text of an error frame, or panics.
pub fn error_text(frame: &Frame) -> String {
    match frame {
        Frame::Error(text) => String::from_utf8_lossy(text).into_owned(),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The value of `name` in INFO text.
pub fn info_field(info: &str, name: &str) -> String {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name} in INFO:\n{info}"))
        .to_owned()
}

/// The value of the numeric field `name` in INFO text.
pub fn info_number(info: &str, name: &str) -> u64 {
    info_field(info, name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number in INFO:\n{info}"))
}

/// The resident set of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("procfs");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}
