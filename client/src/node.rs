//! One server: a small pool of multiplexed connections, opened on demand, reopened with
//! exponential backoff when the server goes away.
//!
//! Each slot of the pool holds at most one [`Connection`]. A request takes the next slot round
//! robin; a slot whose connection died is reconnected by the first request that needs it while
//! the others wait on the slot's lock. A failed attempt puts the slot in backoff (the delay
//! doubles with each consecutive failure, from `reconnect_min` to `reconnect_max`): until it
//! elapses, requests fail at once with the last connect error instead of queueing behind a
//! server that is down, so a web server gets a prompt, clear error for the sessions that node
//! owns. A connection that dies after working is reopened at once: the first request after a
//! server restart reconnects without waiting.
//!
//! A node given as a `redis+sentinel://` URL has no fixed address: each new connection goes to
//! the primary the sentinels name (checked with `ROLE`), remembered until a connection to it
//! breaks, a command times out or a command gets `READONLY` or `LOADING` (the node was
//! demoted). Each drops every connection of the node, and the next ones ask the sentinels
//! again. A command refused with `READONLY` did not run, and is sent once more; one whose
//! connection broke before its reply may have run, and is sent once more only if running it
//! twice is harmless ([`IDEMPOTENT`]).
//!
//! A command refused with `LOADING` (the server loads its dataset) did not run either: any node
//! sends it again after the backoff's delays, until the command timeout would pass.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sessiond_protocol::Frame;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::connection::Connection;
use crate::sentinel::{check_primary, Sentinels};
use crate::settings::Settings;
use crate::url::{NodeAddr, SentinelAddr};
use crate::{Error, ErrorKind, Result};

/// The commands a node found through Sentinel sends again after its connection broke before
/// the reply: those that only read, and the two that only refresh a session's idle timer.
/// Running one twice changes nothing the first did not (a write such as SET, DEL or
/// SESSION.SET could overwrite a later write, or answer differently the second time).
pub const IDEMPOTENT: &[&str] = &[
    "GET",
    "MGET",
    "EXISTS",
    "TYPE",
    "TTL",
    "PTTL",
    "STRLEN",
    "HGET",
    "HGETALL",
    "HMGET",
    "SMEMBERS",
    "SISMEMBER",
    "PING",
    "SESSION.GET",
    "SESSION.INFO",
    "SESSION.TOUCH",
    "SESSION.LIST",
    "SESSION.COUNT",
];

/// Whether the encoded command `command` is one of [`IDEMPOTENT`].
fn idempotent(command: &[u8]) -> bool {
    // `*<count>\r\n$<len>\r\n<name>\r\n`: the name is the first bulk string.
    let name = command
        .splitn(4, |&b| b == b'\n')
        .nth(2)
        .and_then(|line| line.strip_suffix(b"\r"));
    name.is_some_and(|name| {
        IDEMPOTENT
            .iter()
            .any(|c| c.as_bytes().eq_ignore_ascii_case(name))
    })
}

/// Where a node's connections go.
pub(crate) enum Endpoint {
    /// A fixed address.
    Direct(NodeAddr),
    /// The primary its sentinels name.
    Sentinel(Sentinels),
}

impl Endpoint {
    /// A `redis+sentinel://` URL, or a node's.
    pub(crate) fn parse(url: &str) -> Result<Endpoint> {
        let sentinel = url
            .split_once("://")
            .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("redis+sentinel"));
        if sentinel {
            SentinelAddr::parse(url).map(|addr| Endpoint::Sentinel(Sentinels::new(addr)))
        } else {
            NodeAddr::parse(url).map(Endpoint::Direct)
        }
    }

    /// The fixed address, if it has one.
    pub(crate) fn direct(&self) -> Option<&NodeAddr> {
        match self {
            Endpoint::Direct(addr) => Some(addr),
            Endpoint::Sentinel(_) => None,
        }
    }
}

/// The delay before the next connect attempt after `failures` consecutive failed ones.
pub(crate) fn backoff(settings: &Settings, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    settings
        .reconnect_min
        .saturating_mul(1 << doublings)
        .min(settings.reconnect_max)
}

#[derive(Default)]
struct Slot {
    connection: Option<Connection>,
    /// The node's [`Node::generation`] when the connection was opened.
    generation: u64,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<Error>,
}

/// One server and its connections.
pub(crate) struct Node {
    endpoint: Endpoint,
    name: String,
    settings: Arc<Settings>,
    slots: Box<[Mutex<Slot>]>,
    next: AtomicUsize,
    /// Through Sentinel: the primary the connections go to, once known.
    primary: std::sync::Mutex<Option<NodeAddr>>,
    /// Grows each time the primary is forgotten: a connection opened before is not used again.
    generation: AtomicU64,
}

impl Node {
    pub(crate) fn new(endpoint: Endpoint, settings: Arc<Settings>) -> Node {
        let slots = (0..settings.pool_size.max(1))
            .map(|_| Mutex::new(Slot::default()))
            .collect();
        let name = match &endpoint {
            Endpoint::Direct(addr) => addr.to_string(),
            Endpoint::Sentinel(sentinels) => sentinels.addr().to_string(),
        };
        Node {
            name,
            endpoint,
            settings,
            slots,
            next: AtomicUsize::new(0),
            primary: std::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    /// `host:port` (`master@sentinels` through Sentinel), the node's identity for rendezvous
    /// hashing.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The server's address, for connections outside the pool (a subscriber's): through
    /// Sentinel, the primary's, connecting first if it is not known yet.
    pub(crate) async fn current_addr(&self) -> Result<NodeAddr> {
        match &self.endpoint {
            Endpoint::Direct(addr) => Ok(addr.clone()),
            Endpoint::Sentinel(_) => {
                self.connection(&self.slots[0]).await?;
                self.known_primary().ok_or_else(|| {
                    Error::connection(format!(
                        "node {}: the primary changed while connecting",
                        self.name
                    ))
                })
            }
        }
    }

    /// Through Sentinel: the primary the connections go to, if known.
    fn known_primary(&self) -> Option<NodeAddr> {
        self.primary.lock().ok().and_then(|primary| primary.clone())
    }

    /// Through Sentinel: forgets the primary, so that every connection is opened again to the
    /// one the sentinels name now.
    fn forget_primary(&self) {
        if let Ok(mut primary) = self.primary.lock() {
            *primary = None;
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The settings every connection to the node uses.
    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Opens the first slot's connection now (for an eager `connect`).
    pub(crate) async fn connect(&self) -> Result<()> {
        self.connection(&self.slots[0]).await.map(drop)
    }

    /// Sends one encoded command and waits for its reply, within the command timeout. An error
    /// reply becomes an [`Error`] of kind server, auth or conflict.
    pub(crate) async fn request(&self, command: Bytes) -> Result<Frame> {
        let timeout = self.settings.command_timeout;
        let deadline = Instant::now() + timeout;
        let frame = tokio::time::timeout_at(deadline, self.send_through_loading(command, deadline))
            .await
            .map_err(|_| {
                // Through Sentinel, a primary that stopped answering may have been replaced.
                if self.endpoint.direct().is_none() {
                    self.forget_primary();
                }
                Error::timeout(format!("node {}: no reply within {timeout:?}", self.name))
            })??;
        match frame {
            Frame::Error(text) => Err(Error::from_reply(&text)),
            frame => Ok(frame),
        }
    }

    /// [`Node::send_following`], sent again while the server answers `LOADING` (it is loading
    /// its dataset, as a replica does during a full sync: the command did not run), after the
    /// reconnect backoff's delays, as long as the next attempt falls before `deadline`; then
    /// the `LOADING` reply is the answer. Through Sentinel the primary is also forgotten first:
    /// a node that loads is a replica now.
    async fn send_through_loading(&self, command: Bytes, deadline: Instant) -> Result<Frame> {
        let mut attempts = 0;
        loop {
            let reply = self.send_following(command.clone()).await?;
            if !matches!(&reply, Frame::Error(text) if text.starts_with(b"LOADING")) {
                return Ok(reply);
            }
            if self.endpoint.direct().is_none() {
                self.forget_primary();
            }
            attempts += 1;
            let next = Instant::now() + backoff(&self.settings, attempts);
            if next >= deadline {
                return Ok(reply);
            }
            tokio::time::sleep_until(next).await;
        }
    }

    /// [`Node::send`], and through Sentinel, once more to the primary the sentinels name now
    /// after a `READONLY` refusal, or after a broken connection for an idempotent command.
    async fn send_following(&self, command: Bytes) -> Result<Frame> {
        if self.endpoint.direct().is_some() {
            return self.send(command).await;
        }
        match self.send(command.clone()).await {
            Ok(Frame::Error(text)) if text.starts_with(b"READONLY") => {
                // Refused, so not run: the node is a replica now.
                self.forget_primary();
                self.send(command).await
            }
            Err(error) if error.kind() == ErrorKind::Connection => {
                self.forget_primary();
                if idempotent(&command) {
                    self.send(command).await
                } else {
                    Err(error)
                }
            }
            reply => reply,
        }
    }

    async fn send(&self, command: Bytes) -> Result<Frame> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        // The second round only happens when the connection died before our command was
        // written, so sending it again cannot run it twice.
        for _ in 0..2 {
            let connection = self.connection(slot).await?;
            if let Ok(reply) = connection.send(command.clone()).await {
                return match reply.await {
                    Ok(Ok(frame)) => Ok(frame),
                    Ok(Err(error)) => Err(error.context(format!("node {}", self.name))),
                    Err(_) => Err(Error::connection(format!(
                        "node {}: connection lost",
                        self.name
                    ))),
                };
            }
        }
        Err(Error::connection(format!(
            "node {}: connection lost before the command was sent",
            self.name
        )))
    }

    /// The slot's live connection, reconnecting if it has none and is not in backoff.
    async fn connection(&self, slot: &Mutex<Slot>) -> Result<Connection> {
        let mut slot = slot.lock().await;
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(connection) = &slot.connection {
            if !connection.is_dead() && slot.generation == generation {
                return Ok(connection.clone());
            }
            slot.connection = None;
        }
        let now = Instant::now();
        if let (Some(retry_at), Some(error)) = (slot.retry_at, &slot.last_error) {
            if now < retry_at {
                let state = match error.kind() {
                    ErrorKind::Auth => "refused the login",
                    _ => "is down",
                };
                return Err(Error::new(
                    error.kind(),
                    format!(
                        "node {} {state} ({error}); next reconnect attempt in {:?}",
                        self.name,
                        retry_at - now
                    ),
                ));
            }
        }
        match self.open().await {
            Ok(connection) => {
                *slot = Slot {
                    connection: Some(connection.clone()),
                    generation,
                    ..Slot::default()
                };
                Ok(connection)
            }
            Err(error) => {
                // Every failed attempt backs off, a refused login too (it would fail again just
                // as fast). Login and protocol errors already name the node ("log in to ...").
                slot.failures += 1;
                slot.retry_at = Some(Instant::now() + backoff(&self.settings, slot.failures));
                slot.last_error = Some(error.clone());
                Err(match error.kind() {
                    ErrorKind::Auth | ErrorKind::Protocol => error,
                    _ => error.context(format!("node {}", self.name)),
                })
            }
        }
    }

    /// A new connection: to the node's address, or through Sentinel to the primary (the one
    /// known, else the one the sentinels name), checked with `ROLE`.
    async fn open(&self) -> Result<Connection> {
        let sentinels = match &self.endpoint {
            Endpoint::Direct(addr) => return Connection::open(addr, &self.settings).await,
            Endpoint::Sentinel(sentinels) => sentinels,
        };
        if let Some(known) = self.known_primary() {
            match self.open_primary(&known).await {
                Ok(connection) => return Ok(connection),
                Err(_) => self.forget_primary(),
            }
        }
        let primary = sentinels.ask(&self.settings).await?;
        let connection = self.open_primary(&primary).await?;
        if let Ok(mut known) = self.primary.lock() {
            *known = Some(primary);
        }
        Ok(connection)
    }

    /// A connection to `addr`, once `ROLE` says it is a primary.
    async fn open_primary(&self, addr: &NodeAddr) -> Result<Connection> {
        let connection = Connection::open(addr, &self.settings).await?;
        check_primary(&connection, addr, &self.settings).await?;
        Ok(connection)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_and_idle_refreshes_are_sent_twice() {
        let encoded = |name: &str| {
            let mut out = bytes::BytesMut::new();
            sessiond_protocol::ClientCodec::encode_command(&[name, "k"], &mut out);
            out
        };
        for name in [
            "GET",
            "PTTL",
            "SESSION.GET",
            "SESSION.TOUCH",
            "SESSION.LIST",
            "PING",
        ] {
            assert!(idempotent(&encoded(name)), "{name}");
        }
        assert!(idempotent(&encoded("session.info")));
        for name in [
            "SET",
            "DEL",
            "PEXPIRE",
            "SESSION.CREATE",
            "SESSION.SET",
            "SESSION.DESTROY",
        ] {
            assert!(!idempotent(&encoded(name)), "{name}");
        }
        assert!(!idempotent(b""));
        assert!(!idempotent(b"*1\r\n"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let settings = Settings {
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            pool_size: 1,
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_millis(300),
            database: 0,
            #[cfg(feature = "tls")]
            tls: None,
        };
        let delays: Vec<u128> = (1..=6).map(|n| backoff(&settings, n).as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 300, 300, 300]);
        assert_eq!(backoff(&settings, u32::MAX).as_millis(), 300);
    }
}
