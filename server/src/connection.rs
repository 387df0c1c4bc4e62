//! One task per connection: read, decode every complete command in the buffer (up to 16 ahead
//! of the one that runs, their keys prefetched), execute them all, write every reply with one
//! write, repeat.
//!
//! Pipelining comes for free: a read that brings 100 commands produces 100 replies in one
//! buffer and one `write`. A malformed stream earns `-ERR Protocol error: ...` and the
//! connection is closed; every other error is a reply and the connection lives on.
//!
//! The loop is generic over the stream: a `TcpStream` on the plaintext port, a rustls stream
//! (after its handshake) on the TLS port. Writes are first tried without waiting (see
//! `try_write_now`), so a client that does not read its replies is noticed and held to its
//! output cap on both. On TLS, rustls keeps up to 64 KiB of records the socket would not take;
//! like the bytes the kernel holds for a plaintext client, they are sent while the loop waits
//! for the next request, never waited for.
//!
//! `client-output-buffer-limit` bounds what the loop holds for a client: a command whose reply
//! would take the pending output past the hard limit does not build it and the client is closed
//! at once (see [`Then::OutputLimit`]); between commands, output past the hard limit is written
//! early, and what the client does not take closes it; while the loop waits for a client to
//! read, pending output above the soft limit for its seconds closes it too.

use std::pin::Pin;
use std::sync::Arc;

use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::clients::ClientState;
use crate::clock::BatchClock;
use crate::cmd::{self, ConnState, Then};
use crate::output_limit::{ClassLimit, SoftLimit, Verdict};
use crate::shared::Shared;
use crate::stats::LocalStats;
use sessiond_protocol::{Frame, RequestDecoder};

/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// Replies are written early once this much is pending, so one huge pipeline cannot make the
/// output buffer grow without bound.
const WRITE_EARLY: usize = 256 * 1024;
/// Commands decoded before the first of them runs, so that the keys of a pipelined batch are
/// prefetched together (see `Store::prefetch`); one pipeline of `redis-benchmark -P 16`.
const DECODE_AHEAD: usize = 16;
/// Buffers that grew past this are replaced after use rather than kept per idle connection.
const KEEP_CAPACITY: usize = 1024 * 1024;
/// Replies pending for an unauthenticated client that has stopped reading (the socket buffers
/// are full) beyond which it is disconnected (CVE-2025-21605).
pub const UNAUTHENTICATED_OUTPUT_CAP: usize = 16 * 1024;
/// Longest an orderly close (a TLS `close_notify`, then the TCP shutdown) may wait on a client
/// that does not read.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves `socket` (plaintext or TLS) until the client leaves, misbehaves, or the server shuts
/// down.
pub async fn serve<S>(shared: &Arc<Shared>, mut socket: S, client: Arc<ClientState>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let full_limits = shared.config.limits;
    let mut conn = ConnState::new(client, shared.auth.initial_user());
    // Before authentication, a peer may make the server hold very little on its behalf.
    let mut authenticated = conn.authenticated();
    let mut decoder = RequestDecoder::new(if authenticated {
        full_limits
    } else {
        full_limits.unauthenticated()
    });
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut output = BytesMut::with_capacity(READ_CHUNK);
    let mut local = LocalStats::default();
    let mut clock = BatchClock::default();
    // Commands decoded and not yet run (see DECODE_AHEAD); kept for the connection's life.
    let mut decoded: Vec<Vec<Bytes>> = Vec::with_capacity(DECODE_AHEAD);
    let mut stop = shared.shutdown_signal();
    // One wait per connection, polled before every read: made anew for each read, it took the
    // shared signal's lock and added and removed a waiter every time.
    let stopping = stop.wait_for(|stopping| *stopping);
    tokio::pin!(stopping);
    let idle_timeout = shared.config.idle_timeout;
    let mut writes = WriteState::default();
    // Whether the close is orderly (a TLS close_notify, a TCP shutdown) or the socket is just
    // dropped (the peer is gone or does not read).
    let orderly = loop {
        if input.capacity() - input.len() < READ_CHUNK / 4 {
            input.reserve(READ_CHUNK);
        }
        let read = tokio::select! {
            // Shutdown first: a client that never stops sending must not delay it.
            biased;
            _ = &mut stopping => break true,
            read = read_some(&mut socket, &mut input, &mut writes.unflushed, idle_timeout) => read,
        };
        match read {
            Ok(0) => break true,
            Ok(n) => {
                local.input_bytes += n as u64;
                crate::idle_poll::note_activity();
            }
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                shared.stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::info!(peer = %conn.client().peer, "closing idle client (--timeout)");
                break true;
            }
            Err(error) => {
                tracing::debug!(%error, peer = %conn.client().peer, "read failed");
                break false;
            }
        }
        let mut then = Then::Continue;
        // A new batch: its commands run at a new reading of the clock.
        clock.stale();
        'batch: loop {
            // Up to DECODE_AHEAD commands are decoded before any runs, so that their keys can
            // be prefetched together. One at a time before authentication, and none past an
            // AUTH, HELLO or RESET: they change the limits the next command is decoded under.
            let ahead = if authenticated { DECODE_AHEAD } else { 1 };
            let mut malformed = None;
            let mut more = false;
            while decoded.len() < ahead {
                match decoder.decode(&mut input) {
                    Ok(Some(args)) => {
                        let changer = cmd::may_change_authentication(&args);
                        decoded.push(args);
                        more = decoded.len() == ahead || changer;
                        if changer {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        malformed = Some(error);
                        break;
                    }
                }
            }
            if decoded.len() > 1 {
                for args in &decoded {
                    cmd::prefetch(&shared.store, &conn, args);
                }
            }
            // AUTH, HELLO and RESET end a group: the threshold holds for all of it.
            let early = write_early(shared, &conn);
            for args in decoded.drain(..) {
                let reply =
                    cmd::execute(shared, &mut conn, &mut local, args, &mut clock, &mut output);
                if let Some(frame) = reply.frame {
                    frame.encode(conn.version(), &mut output);
                }
                then = reply.then;
                if then == Then::OutputLimit {
                    // As Redis: the client is closed, what is pending is not sent.
                    closed_for_output_limit(shared, &conn, output.len());
                    return finish(shared, &mut local);
                }
                if conn.authenticated() != authenticated {
                    authenticated = conn.authenticated();
                    decoder.set_limits(if authenticated {
                        full_limits
                    } else {
                        full_limits.unauthenticated()
                    });
                }
                if then == Then::Save {
                    // Replies already encoded go first, then SAVE's own once it is done.
                    let outcome = shared.persistence.save().await;
                    cmd::save::save_reply(outcome).encode(conn.version(), &mut output);
                    clock.stale();
                    then = Then::Continue;
                }
                if let Then::AwaitShutdown(failed_before) = then {
                    // The replies before it go now; the wait may be long.
                    if !flush(
                        shared,
                        &conn,
                        &mut socket,
                        &mut output,
                        &mut writes,
                        &mut local,
                    )
                    .await
                    {
                        return finish(shared, &mut local);
                    }
                    shared.wait_for_failed_shutdown(failed_before).await;
                    Frame::error(crate::shared::SHUTDOWN_FAILED)
                        .encode(conn.version(), &mut output);
                    clock.stale();
                    then = Then::Continue;
                }
                if then != Then::Continue {
                    // The commands decoded after it are dropped, as unread input would be.
                    break 'batch;
                }
                if output.len() >= early {
                    if !flush(
                        shared,
                        &conn,
                        &mut socket,
                        &mut output,
                        &mut writes,
                        &mut local,
                    )
                    .await
                    {
                        return finish(shared, &mut local);
                    }
                    // The flush may have waited for the client to read.
                    clock.stale();
                }
            }
            if let Some(error) = malformed {
                shared.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                if authenticated {
                    tracing::debug!(%error, peer = %conn.client().peer, "closing connection on protocol error");
                } else {
                    shared
                        .stats
                        .unauthenticated_limit_disconnections
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, peer = %conn.client().peer, "closing an unauthenticated client: input beyond the pre-authentication limits, or malformed");
                }
                Frame::error(format!("ERR {error}")).encode(conn.version(), &mut output);
                then = Then::Close;
                break;
            }
            if !more {
                break;
            }
        }
        if !flush(
            shared,
            &conn,
            &mut socket,
            &mut output,
            &mut writes,
            &mut local,
        )
        .await
        {
            break false;
        }
        shared.stats.absorb(&mut local);
        if then != Then::Continue {
            break true;
        }
        if input.is_empty() && input.capacity() > KEEP_CAPACITY && !decoder.has_partial() {
            input = BytesMut::with_capacity(READ_CHUNK);
        }
    };
    if orderly {
        // Sends what rustls still holds and a close_notify on TLS; a FIN on TCP.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.shutdown()).await;
    }
    finish(shared, &mut local)
}

fn finish(shared: &Shared, local: &mut LocalStats) {
    shared.stats.absorb(local);
}

/// What the connection keeps about its writes between batches.
#[derive(Debug, Default)]
struct WriteState {
    /// TLS only: rustls holds records the socket has not taken yet.
    unflushed: bool,
    /// Since when the client has left more output pending than its soft limit.
    soft_limit: SoftLimit,
}

/// The output limits of the connection's class: `client-output-buffer-limit`'s normal class,
/// or before authentication a hard cap of [`UNAUTHENTICATED_OUTPUT_CAP`].
fn output_limit(shared: &Shared, conn: &ConnState) -> ClassLimit {
    if conn.authenticated() {
        shared.config.output_limits.normal
    } else {
        ClassLimit {
            hard_bytes: UNAUTHENTICATED_OUTPUT_CAP,
            ..ClassLimit::default()
        }
    }
}

/// Pending output at which replies are written before the batch ends: [`WRITE_EARLY`], or
/// once authenticated half the hard limit if that is less, so that a reply of up to half of it
/// always fits after others, and output past the limit (a reply no command checks) is offered
/// to the client at once, what it does not take closing it. (Before authentication, the cap
/// is meant to close a client that does not read, not to make it wait.)
fn write_early(shared: &Shared, conn: &ConnState) -> usize {
    if conn.authenticated() {
        WRITE_EARLY.min(shared.config.output_limits.normal.hard() / 2)
    } else {
        WRITE_EARLY
    }
}

/// Counts and logs a client closed for its output limits, in Redis's words (never a key or a
/// value: only the peer, the user and the size).
fn closed_for_output_limit(shared: &Shared, conn: &ConnState, pending: usize) {
    shared
        .stats
        .client_output_buffer_limit_disconnections
        .fetch_add(1, Ordering::Relaxed);
    let user = conn.user().map_or("", |u| u.name.as_str());
    tracing::warn!(
        peer = %conn.client().peer,
        user,
        pending,
        "client scheduled to be closed ASAP for overcoming of output buffer limits"
    );
}

/// Reads into `input`; with an idle timeout, a read that waits longer fails with `TimedOut`.
/// While it waits, it sends what rustls holds (`unflushed`), as the kernel would on TCP.
async fn read_some<S: AsyncRead + AsyncWrite + Unpin>(
    socket: &mut S,
    input: &mut BytesMut,
    unflushed: &mut bool,
    idle_timeout: Option<Duration>,
) -> std::io::Result<usize> {
    let read = std::future::poll_fn(|cx| {
        if *unflushed {
            match Pin::new(&mut *socket).poll_flush(cx) {
                Poll::Ready(Ok(())) => *unflushed = false,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => {}
            }
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut *socket), cx, input)
    });
    match idle_timeout {
        None => read.await,
        Some(limit) => match tokio::time::timeout(limit, read).await {
            Ok(read) => read,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        },
    }
}

/// Writes all pending replies; false when the connection must close: the peer is gone, or
/// while it does not read its replies, more than its hard output limit is pending or more than
/// its soft limit for the soft limit's seconds (see [`output_limit`]), or a write stalls longer
/// than `--timeout`.
///
/// On TLS, rustls may take replies into its buffer (at most 64 KiB) that the socket does not
/// take yet; `writes.unflushed` says so, and [`read_some`] sends them while waiting for the
/// next request.
async fn flush<S: AsyncWrite + Unpin>(
    shared: &Shared,
    conn: &ConnState,
    socket: &mut S,
    output: &mut BytesMut,
    writes: &mut WriteState,
    local: &mut LocalStats,
) -> bool {
    let limit = output_limit(shared, conn);
    let peer = conn.client().peer;
    let stalled = || {
        shared.stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%peer, "closing a client whose writes stalled past --timeout");
        false
    };
    while !output.is_empty() {
        let written = match try_write_now(socket, output).await {
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                let now = tokio::time::Instant::now();
                let soft_deadline = match writes.soft_limit.judge(&limit, output.len(), now.into())
                {
                    Verdict::Close => {
                        closed_for_output_limit(shared, conn, output.len());
                        return false;
                    }
                    Verdict::Wait => None,
                    Verdict::WaitUntil(deadline) => Some(tokio::time::Instant::from(deadline)),
                };
                // Within the limits: wait for the client to read, as long as --timeout and the
                // soft limit allow.
                let stall_deadline = shared.config.idle_timeout.map(|limit| now + limit);
                let write = socket.write(output);
                match soft_deadline.into_iter().chain(stall_deadline).min() {
                    None => write.await,
                    Some(deadline) => match tokio::time::timeout_at(deadline, write).await {
                        Ok(written) => written,
                        Err(_) if Some(deadline) == soft_deadline => {
                            closed_for_output_limit(shared, conn, output.len());
                            return false;
                        }
                        Err(_) => return stalled(),
                    },
                }
            }
            written => written,
        };
        match written {
            Ok(0) => return false,
            Ok(n) => {
                local.output_bytes += n as u64;
                output.advance(n);
            }
            Err(error) => {
                tracing::debug!(%error, %peer, "write failed");
                return false;
            }
        }
    }
    // Always done on TCP; on TLS, sends the records rustls holds, if the socket takes them now.
    writes.soft_limit.clear();
    match try_flush_now(socket).await {
        Ok(done) => writes.unflushed = !done,
        Err(error) => {
            tracing::debug!(%error, %peer, "write failed");
            return false;
        }
    }
    output.clear();
    if output.capacity() > KEEP_CAPACITY {
        *output = BytesMut::with_capacity(READ_CHUNK);
    }
    true
}

/// Writes what `socket` takes from `buf` right now, or fails with `WouldBlock` if it would have
/// to wait: `TcpStream::try_write` for any stream (a rustls stream has no `try_write`).
///
/// The stream is polled once. `unconstrained` because tokio's cooperative budget can also make
/// a poll return `Pending` (after many ready operations in a row), and that must not look like
/// a client that stopped reading.
async fn try_write_now<S: AsyncWrite + Unpin>(
    socket: &mut S,
    buf: &[u8],
) -> std::io::Result<usize> {
    tokio::task::unconstrained(std::future::poll_fn(|cx| {
        match Pin::new(&mut *socket).poll_write(cx, buf) {
            Poll::Pending => Poll::Ready(Err(std::io::ErrorKind::WouldBlock.into())),
            ready => ready,
        }
    }))
    .await
}

/// Flushes `socket` if it can without waiting: `Ok(false)` if it would have to wait.
async fn try_flush_now<S: AsyncWrite + Unpin>(socket: &mut S) -> std::io::Result<bool> {
    tokio::task::unconstrained(std::future::poll_fn(|cx| {
        match Pin::new(&mut *socket).poll_flush(cx) {
            Poll::Pending => Poll::Ready(Ok(false)),
            Poll::Ready(flushed) => Poll::Ready(flushed.map(|()| true)),
        }
    }))
    .await
}
