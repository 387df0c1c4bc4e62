//! One task per connection: read, decode every complete command in the buffer, execute them
//! all, write every reply with one write, repeat.
//!
//! Pipelining comes for free: a read that brings 100 commands produces 100 replies in one
//! buffer and one `write`. A malformed stream earns `-ERR Protocol error: ...` and the
//! connection is closed; every other error is a reply and the connection lives on.

use std::sync::Arc;

use bytes::BytesMut;
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

/// Serves `socket` until the client leaves, misbehaves, or the server shuts down.
pub async fn serve(shared: &Arc<Shared>, mut socket: TcpStream, client: Arc<ClientState>) {
    let mut decoder = RequestDecoder::new(shared.config.limits);
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut output = BytesMut::with_capacity(READ_CHUNK);
    let mut session = Session::new(client);
    let mut local = LocalStats::default();
    let mut stop = shared.shutdown_signal();
    loop {
        if input.capacity() - input.len() < READ_CHUNK / 4 {
            input.reserve(READ_CHUNK);
        }
        let read = tokio::select! {
            // Shutdown first: a client that never stops sending must not delay it.
            biased;
            _ = stop.wait_for(|stopping| *stopping) => break,
            read = socket.read_buf(&mut input) => read,
        };
        match read {
            Ok(0) => break,
            Ok(n) => local.input_bytes += n as u64,
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
                        && !flush(&mut socket, &mut output, &mut local).await
                    {
                        return finish(shared, &mut local);
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    shared
                        .stats
                        .protocol_errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::debug!(%error, peer = %session.client().peer, "closing connection on protocol error");
                    Frame::error(format!("ERR {error}")).encode(session.version(), &mut output);
                    then = Then::Close;
                    break;
                }
            }
        }
        if !flush(&mut socket, &mut output, &mut local).await {
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

/// Writes all pending replies; false when the peer is gone.
async fn flush(socket: &mut TcpStream, output: &mut BytesMut, local: &mut LocalStats) -> bool {
    if output.is_empty() {
        return true;
    }
    if let Err(error) = socket.write_all(output).await {
        tracing::debug!(%error, "write failed");
        return false;
    }
    local.output_bytes += output.len() as u64;
    output.clear();
    if output.capacity() > KEEP_CAPACITY {
        *output = BytesMut::with_capacity(READ_CHUNK);
    }
    true
}
