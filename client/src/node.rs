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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sessiond_protocol::Frame;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::connection::Connection;
use crate::settings::Settings;
use crate::url::NodeAddr;
use crate::{Error, ErrorKind, Result};

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
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<Error>,
}

/// One server and its connections.
pub(crate) struct Node {
    addr: NodeAddr,
    name: String,
    settings: Arc<Settings>,
    slots: Box<[Mutex<Slot>]>,
    next: AtomicUsize,
}

impl Node {
    pub(crate) fn new(addr: NodeAddr, settings: Arc<Settings>) -> Node {
        let slots = (0..settings.pool_size.max(1))
            .map(|_| Mutex::new(Slot::default()))
            .collect();
        Node {
            name: addr.to_string(),
            addr,
            settings,
            slots,
            next: AtomicUsize::new(0),
        }
    }

    /// `host:port`, the node's identity for rendezvous hashing.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The server's address, for connections outside the pool (a subscriber's).
    pub(crate) fn addr(&self) -> &NodeAddr {
        &self.addr
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
        let frame = tokio::time::timeout(timeout, self.send(command))
            .await
            .map_err(|_| {
                Error::timeout(format!("node {}: no reply within {timeout:?}", self.name))
            })??;
        match frame {
            Frame::Error(text) => Err(Error::from_reply(&text)),
            frame => Ok(frame),
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
        if let Some(connection) = &slot.connection {
            if !connection.is_dead() {
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
        match Connection::open(&self.addr, &self.settings).await {
            Ok(connection) => {
                *slot = Slot {
                    connection: Some(connection.clone()),
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
