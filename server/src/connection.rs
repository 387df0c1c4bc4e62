//! One task per connection: read, decode every complete command in the buffer, execute them
//! all, write every reply with one write, repeat.
//!
//! Pipelining comes for free: a read that brings 100 commands produces 100 replies in one
//! buffer and one `write`. A malformed stream earns `-ERR Protocol error: ...` and the
//! connection is closed; every other error is a reply and the connection lives on.

use std::sync::Arc;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::clients::ClientState;
use crate::cmd::{self, Session, Then};
use crate::server::Shared;
use crate::stats::LocalStats;
use sessiond_protocol::{Frame, RequestDecoder};

/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// Replies are written early once this much is pending, so one huge pipeline cannot make the
/// output buffer grow without bound.
const WRITE_EARLY: usize = 256 * 1024;
/// Buffers that grew past this are replaced after use rather than kept per idle connection.
const KEEP_CAPACITY: usize = 1024 * 1024;
/// Replies pending for an unauthenticated client that has stopped reading (the socket buffers
/// are full) beyond which it is disconnected (CVE-2025-21605).
pub const UNAUTHENTICATED_OUTPUT_CAP: usize = 16 * 1024;

/// Serves `socket` until the client leaves, misbehaves, or the server shuts down.
pub async fn serve(shared: &Arc<Shared>, mut socket: TcpStream, client: Arc<ClientState>) {
    let full_limits = shared.config.limits;
    let mut session = Session::new(client, shared.auth.initial_user());
    // Before authentication, a peer may make the server hold very little on its behalf.
    let mut authenticated = session.authenticated();
    let mut decoder = RequestDecoder::new(if authenticated {
        full_limits
    } else {
        full_limits.unauthenticated()
    });
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut output = BytesMut::with_capacity(READ_CHUNK);
    let mut local = LocalStats::default();
    let mut stop = shared.shutdown_signal();
    let idle_timeout = shared.config.idle_timeout;
    loop {
        if input.capacity() - input.len() < READ_CHUNK / 4 {
            input.reserve(READ_CHUNK);
        }
        let read = tokio::select! {
            // Shutdown first: a client that never stops sending must not delay it.
            biased;
            _ = stop.wait_for(|stopping| *stopping) => break,
            read = read_some(&mut socket, &mut input, idle_timeout) => read,
        };
        match read {
            Ok(0) => break,
            Ok(n) => local.input_bytes += n as u64,
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                shared.stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::info!(peer = %session.client().peer, "closing idle client (--timeout)");
                break;
            }
            Err(error) => {
                tracing::debug!(%error, peer = %session.client().peer, "read failed");
                break;
            }
        }
        let mut then = Then::Continue;
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(args)) => {
                    let reply = cmd::execute(shared, &mut session, &mut local, args);
                    if let Some(frame) = reply.frame {
                        frame.encode(session.version(), &mut output);
                    }
                    then = reply.then;
                    if session.authenticated() != authenticated {
                        authenticated = session.authenticated();
                        decoder.set_limits(if authenticated {
                            full_limits
                        } else {
                            full_limits.unauthenticated()
                        });
                    }
                    if then == Then::Save {
                        // Replies already encoded go first, then SAVE's own once it is done.
                        let outcome = shared.persistence.save().await;
                        cmd::save::save_reply(outcome).encode(session.version(), &mut output);
                        then = Then::Continue;
                    }
                    if then != Then::Continue {
                        break;
                    }
                    if output.len() >= WRITE_EARLY
                        && !flush(shared, &session, &mut socket, &mut output, &mut local).await
                    {
                        return finish(shared, &mut local);
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    shared.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                    if authenticated {
                        tracing::debug!(%error, peer = %session.client().peer, "closing connection on protocol error");
                    } else {
                        shared
                            .stats
                            .unauthenticated_limit_disconnections
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, peer = %session.client().peer, "closing an unauthenticated client: input beyond the pre-authentication limits, or malformed");
                    }
                    Frame::error(format!("ERR {error}")).encode(session.version(), &mut output);
                    then = Then::Close;
                    break;
                }
            }
        }
        if !flush(shared, &session, &mut socket, &mut output, &mut local).await {
            break;
        }
        shared.stats.absorb(&mut local);
        if then != Then::Continue {
            let _ = socket.shutdown().await;
            break;
        }
        if input.is_empty() && input.capacity() > KEEP_CAPACITY && !decoder.has_partial() {
            input = BytesMut::with_capacity(READ_CHUNK);
        }
    }
    finish(shared, &mut local)
}

fn finish(shared: &Shared, local: &mut LocalStats) {
    shared.stats.absorb(local);
}

/// Reads into `input`; with an idle timeout, a read that waits longer fails with `TimedOut`.
async fn read_some(
    socket: &mut TcpStream,
    input: &mut BytesMut,
    idle_timeout: Option<Duration>,
) -> std::io::Result<usize> {
    match idle_timeout {
        None => socket.read_buf(input).await,
        Some(limit) => match tokio::time::timeout(limit, socket.read_buf(input)).await {
            Ok(read) => read,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        },
    }
}

/// Writes all pending replies; false when the connection must close: the peer is gone, or it
/// does not read its replies while more than its output cap is pending (before authentication
/// the cap is [`UNAUTHENTICATED_OUTPUT_CAP`]; after, `--client-output-buffer-limit`), or a write
/// stalls longer than `--timeout`.
async fn flush(
    shared: &Shared,
    session: &Session,
    socket: &mut TcpStream,
    output: &mut BytesMut,
    local: &mut LocalStats,
) -> bool {
    let cap = if session.authenticated() {
        shared.config.output_limit
    } else {
        Some(UNAUTHENTICATED_OUTPUT_CAP)
    };
    let peer = session.client().peer;
    while !output.is_empty() {
        match socket.try_write(output) {
            Ok(0) => return false,
            Ok(n) => {
                local.output_bytes += n as u64;
                output.advance(n);
            }
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                if cap.is_some_and(|cap| output.len() > cap) {
                    shared
                        .stats
                        .output_limit_disconnections
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%peer, pending = output.len(), "closing a client that does not read its replies");
                    return false;
                }
                let writable = socket.writable();
                let ready = match shared.config.idle_timeout {
                    None => writable.await,
                    Some(limit) => match tokio::time::timeout(limit, writable).await {
                        Ok(ready) => ready,
                        Err(_) => {
                            shared.stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(%peer, "closing a client whose writes stalled past --timeout");
                            return false;
                        }
                    },
                };
                if let Err(error) = ready {
                    tracing::debug!(%error, %peer, "write failed");
                    return false;
                }
            }
            Err(error) => {
                tracing::debug!(%error, %peer, "write failed");
                return false;
            }
        }
    }
    output.clear();
    if output.capacity() > KEEP_CAPACITY {
        *output = BytesMut::with_capacity(READ_CHUNK);
    }
    true
}
