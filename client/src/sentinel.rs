//! Finding a primary through Redis Sentinel, as Redis's guidelines for Sentinel clients say:
//! ask each sentinel in turn `SENTINEL get-master-addr-by-name <master>`, connect to the
//! address the first one to know gives, and check with `ROLE` that the node is a primary (a
//! sentinel that has not yet seen a failover may name the old one). The sentinel that answered
//! is asked first next time.

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use sessiond_protocol::{ClientCodec, Frame};

use crate::connection::Connection;
use crate::settings::Settings;
use crate::url::{NodeAddr, SentinelAddr};
use crate::{Error, Result};

/// The sentinels of one primary, and which of them to ask first.
pub(crate) struct Sentinels {
    addr: SentinelAddr,
    /// The index of the sentinel that answered last.
    first: AtomicUsize,
}

impl Sentinels {
    pub(crate) fn new(addr: SentinelAddr) -> Sentinels {
        Sentinels {
            addr,
            first: AtomicUsize::new(0),
        }
    }

    /// The URL's sentinels and master name.
    pub(crate) fn addr(&self) -> &SentinelAddr {
        &self.addr
    }

    /// The primary's address as the first sentinel that knows it says (sentinels that are
    /// down, or do not monitor the master, are skipped); an error naming each sentinel's
    /// failure when none knows it.
    pub(crate) async fn ask(&self, settings: &Settings) -> Result<NodeAddr> {
        let sentinels = self.addr.sentinels();
        let first = self.first.load(Ordering::Relaxed) % sentinels.len().max(1);
        let mut failures = Vec::new();
        for index in (first..sentinels.len()).chain(0..first) {
            let sentinel = &sentinels[index];
            match self.ask_one(sentinel, settings).await {
                Ok(primary) => {
                    self.first.store(index, Ordering::Relaxed);
                    return Ok(primary);
                }
                Err(error) => failures.push(format!("{sentinel}: {}", error.message())),
            }
        }
        Err(Error::connection(format!(
            "no sentinel named the primary '{}' ({})",
            self.addr.master(),
            failures.join("; ")
        )))
    }

    async fn ask_one(&self, sentinel: &NodeAddr, settings: &Settings) -> Result<NodeAddr> {
        let connection = Connection::open(sentinel, settings).await?;
        let command = encode(&["SENTINEL", "get-master-addr-by-name", self.addr.master()]);
        let reply = round_trip(&connection, command, settings).await?;
        match reply {
            Frame::Array(items) => match &items[..] {
                [Frame::Bulk(host), Frame::Bulk(port)] => {
                    let host = std::str::from_utf8(host).ok();
                    let port = std::str::from_utf8(port)
                        .ok()
                        .and_then(|p| p.parse::<u16>().ok());
                    match (host, port) {
                        (Some(host), Some(port)) if !host.is_empty() && port != 0 => {
                            Ok(self.addr.primary_at(host.to_owned(), port))
                        }
                        _ => Err(Error::unexpected(
                            "SENTINEL get-master-addr-by-name",
                            &Frame::Array(items.clone()),
                        )),
                    }
                }
                _ => Err(Error::unexpected(
                    "SENTINEL get-master-addr-by-name",
                    &Frame::Array(items.clone()),
                )),
            },
            Frame::Null | Frame::NullArray => Err(Error::connection("does not monitor it")),
            Frame::Error(text) => Err(Error::from_reply(&text)),
            other => Err(Error::unexpected(
                "SENTINEL get-master-addr-by-name",
                &other,
            )),
        }
    }
}

/// Checks with `ROLE` that `connection`'s node is a primary.
pub(crate) async fn check_primary(
    connection: &Connection,
    addr: &NodeAddr,
    settings: &Settings,
) -> Result<()> {
    let reply = round_trip(connection, encode(&["ROLE"]), settings).await?;
    let role = match &reply {
        Frame::Array(items) => match items.first() {
            Some(Frame::Bulk(role) | Frame::Simple(role)) => Some(role.clone()),
            _ => None,
        },
        Frame::Error(text) => {
            return Err(Error::from_reply(text).context(format!("ROLE on {addr}")))
        }
        _ => None,
    };
    match role {
        Some(role) if &role[..] == b"master" => Ok(()),
        Some(role) => Err(Error::connection(format!(
            "{addr} is a {}, not the primary (a failover is under way)",
            String::from_utf8_lossy(&role)
        ))),
        None => Err(Error::unexpected("ROLE", &reply)),
    }
}

/// `args` as a RESP command.
fn encode(args: &[&str]) -> Bytes {
    let mut out = BytesMut::new();
    ClientCodec::encode_command(args, &mut out);
    out.freeze()
}

/// One command on `connection` and its reply, within the command timeout.
async fn round_trip(connection: &Connection, command: Bytes, settings: &Settings) -> Result<Frame> {
    let timeout = settings.command_timeout;
    let exchange = async {
        let slot = connection
            .send(command)
            .await
            .map_err(|_| Error::connection("connection lost"))?;
        slot.await
            .map_err(|_| Error::connection("connection lost"))?
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| Error::timeout(format!("no reply within {timeout:?}")))?
}
