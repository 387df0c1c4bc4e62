//! One multiplexed connection: many tasks send commands over one socket at once, and replies
//! come back in order.
//!
//! A [`Connection`] is a handle (cheap to clone) to two tasks that own the socket. The writer
//! takes every request queued since its last write and sends them with one `write_all`
//! (pipelining), handing each request's reply slot to the reader *before* writing it; the
//! reader decodes reply frames and fills the slots in order. Two tasks rather than one so that
//! a large pipeline can never deadlock: the reader keeps draining replies while the writer is
//! blocked on a full socket.
//!
//! When the socket fails, the reader marks the connection dead *before* failing the requests in
//! flight, so a caller that sees the failure and retries finds the connection dead and opens a
//! new one. Dropping every handle closes the socket and ends both tasks.
//!
//! On TLS (`rediss://`, feature `tls`) the same two tasks share the rustls stream through
//! `tokio::io::split`; a plain `TcpStream` is split without a lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sessiond_protocol::{ClientCodec, Frame, FrameDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::settings::Settings;
use crate::url::NodeAddr;
use crate::{Error, ErrorKind, Result};

/// Requests queued for the writer before senders wait.
const QUEUE: usize = 4096;
/// Most bytes of commands the writer gathers into one write.
const BATCH_BYTES: usize = 256 * 1024;
/// How much the reader asks the socket for at a time.
const READ_CHUNK: usize = 16 * 1024;

/// The reply slot of one request.
pub(crate) type ReplySlot = oneshot::Receiver<Result<Frame>>;

struct Request {
    command: Bytes,
    reply: oneshot::Sender<Result<Frame>>,
}

/// A handle to one open, multiplexed connection.
#[derive(Clone)]
pub(crate) struct Connection {
    requests: mpsc::Sender<Request>,
    dead: Arc<AtomicBool>,
}

/// A command that was not written because the connection had already died: it is safe to
/// send it again on a new connection.
pub(crate) struct Unsent;

impl Connection {
    /// Connects to `addr` (with TLS for `rediss://`), logs in and switches to RESP3, all within
    /// the connect timeout.
    pub(crate) async fn open(addr: &NodeAddr, settings: &Settings) -> Result<Connection> {
        let handshake = async {
            let stream = tcp(addr).await?;
            #[cfg(feature = "tls")]
            if addr.tls() {
                let stream = tls(stream, addr, settings).await?;
                let (stream, leftover) = hello(stream, addr, settings).await?;
                let (read, write) = tokio::io::split(stream);
                return Ok(Connection::spawn(read, write, leftover));
            }
            let (stream, leftover) = hello(stream, addr, settings).await?;
            let (read, write) = stream.into_split();
            Ok(Connection::spawn(read, write, leftover))
        };
        within_connect_timeout(addr, settings, handshake).await
    }

    /// Starts the writer and reader tasks on the two halves of a logged-in stream.
    fn spawn<R, W>(read: R, write: W, leftover: BytesMut) -> Connection
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (requests, queue) = mpsc::channel(QUEUE);
        let (pending_tx, pending_rx) = mpsc::unbounded_channel();
        let dead = Arc::new(AtomicBool::new(false));
        tokio::spawn(write_loop(queue, write, pending_tx));
        tokio::spawn(read_loop(read, leftover, pending_rx, dead.clone()));
        Connection { requests, dead }
    }

    /// Whether the socket has failed; a dead connection never comes back.
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire) || self.requests.is_closed()
    }

    /// Queues `command` (already encoded) and returns the slot its reply will arrive in.
    pub(crate) async fn send(&self, command: Bytes) -> Result<ReplySlot, Unsent> {
        if self.is_dead() {
            return Err(Unsent);
        }
        let (reply, slot) = oneshot::channel();
        self.requests
            .send(Request { command, reply })
            .await
            .map_err(|_| Unsent)?;
        Ok(slot)
    }
}

/// A logged-in socket of either kind (TCP or TLS).
pub(crate) trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

/// A connection of its own, not multiplexed: connected, logged in (RESP3 where the server has
/// it) and on its database, within the connect timeout, with any bytes read past the login's
/// replies. For a subscriber, whose connection takes no ordinary commands once subscribed.
pub(crate) async fn open_dedicated(
    addr: &NodeAddr,
    settings: &Settings,
) -> Result<(Box<dyn Duplex>, BytesMut)> {
    let handshake = async {
        let stream = tcp(addr).await?;
        #[cfg(feature = "tls")]
        if addr.tls() {
            let stream = tls(stream, addr, settings).await?;
            let (stream, leftover) = hello(stream, addr, settings).await?;
            return Ok((Box::new(stream) as Box<dyn Duplex>, leftover));
        }
        let (stream, leftover) = hello(stream, addr, settings).await?;
        Ok((Box::new(stream) as Box<dyn Duplex>, leftover))
    };
    within_connect_timeout(addr, settings, handshake).await
}

async fn within_connect_timeout<T>(
    addr: &NodeAddr,
    settings: &Settings,
    handshake: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let connect_timeout = settings.connect_timeout;
    tokio::time::timeout(connect_timeout, handshake)
        .await
        .map_err(|_| {
            Error::timeout(format!(
                "connect to {addr}: no answer within {connect_timeout:?}"
            ))
        })?
}

async fn tcp(addr: &NodeAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr.socket_addr())
        .await
        .map_err(|e| Error::connection(format!("connect to {addr}: {e}")).with_source(e))?;
    // Commands are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

#[cfg(feature = "tls")]
async fn tls(
    stream: TcpStream,
    addr: &NodeAddr,
    settings: &Settings,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tls = settings.tls.as_ref().ok_or_else(|| {
        Error::config(format!(
            "{addr}: a TLS node, but the client has no TLS settings"
        ))
    })?;
    tls.handshake(stream, addr).await
}

/// `HELLO 3 [AUTH user password]`; servers without HELLO (or RESP3) get `AUTH` and RESP2.
/// Then `SELECT db` unless the database is 0 (the URL's, or the builder's). Returns the stream
/// and any bytes read past the replies.
async fn hello<S>(stream: S, addr: &NodeAddr, settings: &Settings) -> Result<(S, BytesMut)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut stream, mut buffer) = log_in(stream, addr).await?;
    let database = addr.database().unwrap_or(settings.database);
    if database != 0 {
        let index = database.to_string();
        let args = ["SELECT", index.as_str()];
        if let Frame::Error(text) = round_trip(&mut stream, &mut buffer, &args, addr).await? {
            return Err(
                Error::from_reply(&text).context(format!("select database {database} on {addr}"))
            );
        }
    }
    Ok((stream, buffer))
}

/// `HELLO 3 [AUTH user password]`, or `AUTH` for a server without HELLO (see [`hello`]).
async fn log_in<S>(mut stream: S, addr: &NodeAddr) -> Result<(S, BytesMut)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let user = addr.user().unwrap_or("default");
    let mut args = vec!["HELLO", "3"];
    if let Some(password) = addr.password() {
        args.extend(["AUTH", user, password]);
    }
    let mut buffer = BytesMut::new();
    let reply = round_trip(&mut stream, &mut buffer, &args, addr).await?;
    let Frame::Error(text) = reply else {
        return Ok((stream, buffer));
    };
    let old_server = text.starts_with(b"NOPROTO") || text.starts_with(b"ERR unknown command");
    if !old_server {
        return Err(Error::from_reply(&text).context(format!("log in to {addr}")));
    }
    if let Some(password) = addr.password() {
        let mut auth = vec!["AUTH"];
        auth.extend(addr.user());
        auth.push(password);
        if let Frame::Error(text) = round_trip(&mut stream, &mut buffer, &auth, addr).await? {
            return Err(Error::from_reply(&text).context(format!("log in to {addr}")));
        }
    }
    Ok((stream, buffer))
}

async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    buffer: &mut BytesMut,
    args: &[&str],
    addr: &NodeAddr,
) -> Result<Frame> {
    let mut out = BytesMut::new();
    ClientCodec::encode_command(args, &mut out);
    let lost =
        |e: std::io::Error| Error::connection(format!("log in to {addr}: {e}")).with_source(e);
    stream.write_all(&out).await.map_err(lost)?;
    // Sends what TLS buffered; nothing to do on TCP.
    stream.flush().await.map_err(lost)?;
    let mut decoder = FrameDecoder::default();
    loop {
        match decoder.decode(buffer) {
            Ok(Some(frame)) => return Ok(frame),
            Ok(None) => {}
            Err(e) => return Err(Error::protocol(format!("log in to {addr}: {e}"))),
        }
        buffer.reserve(READ_CHUNK);
        if stream.read_buf(buffer).await.map_err(lost)? == 0 {
            return Err(Error::connection(format!(
                "log in to {addr}: the server closed the connection"
            )));
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut queue: mpsc::Receiver<Request>,
    mut socket: W,
    pending: mpsc::UnboundedSender<oneshot::Sender<Result<Frame>>>,
) {
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let first = tokio::select! {
            biased;
            // The reader is gone: the socket is dead, stop taking requests.
            _ = pending.closed() => break,
            request = queue.recv() => request,
        };
        // Every handle was dropped: closing the socket ends the reader too.
        let Some(first) = first else { break };
        let mut next = Some(first);
        while let Some(request) = next {
            out.extend_from_slice(&request.command);
            // The reader must own the slot before the reply can possibly arrive.
            if pending.send(request.reply).is_err() {
                return;
            }
            next = if out.len() < BATCH_BYTES {
                queue.try_recv().ok()
            } else {
                None
            };
        }
        // The flush sends what TLS buffered; nothing to do on TCP.
        if socket.write_all(&out).await.is_err() || socket.flush().await.is_err() {
            // The reader sees the failure too and fails every slot it holds.
            break;
        }
        out.clear();
        if out.capacity() > 4 * BATCH_BYTES {
            out = BytesMut::with_capacity(READ_CHUNK);
        }
    }
    let _ = socket.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut socket: R,
    mut buffer: BytesMut,
    mut pending: mpsc::UnboundedReceiver<oneshot::Sender<Result<Frame>>>,
    dead: Arc<AtomicBool>,
) {
    let mut decoder = FrameDecoder::default();
    let failure = 'read: loop {
        loop {
            match decoder.decode(&mut buffer) {
                Ok(Some(Frame::Push(_))) => {} // Out-of-band: no request is waiting for it.
                Ok(Some(frame)) => match pending.try_recv() {
                    Ok(slot) => {
                        let _ = slot.send(Ok(frame));
                    }
                    Err(_) => {
                        break 'read Error::protocol(format!(
                            "the server sent a reply nobody asked for: {frame:?}"
                        ))
                    }
                },
                Ok(None) => break,
                Err(e) => break 'read Error::protocol(format!("malformed reply: {e}")),
            }
        }
        buffer.reserve(READ_CHUNK);
        match socket.read_buf(&mut buffer).await {
            Ok(0) => break Error::connection("the server closed the connection"),
            Ok(_) => {}
            Err(e) => break Error::connection(format!("read: {e}")).with_source(e),
        }
    };
    // Dead first, so that a caller who sees the failure and retries opens a new connection.
    dead.store(true, Ordering::Release);
    pending.close();
    let mut first = true;
    while let Ok(slot) = pending.try_recv() {
        // A malformed reply belongs to the oldest request; the others just lost the connection.
        let error = if first || failure.kind() == ErrorKind::Connection {
            failure.clone()
        } else {
            Error::connection(format!(
                "connection dropped after an earlier error: {failure}"
            ))
        };
        first = false;
        let _ = slot.send(Err(error));
    }
}
