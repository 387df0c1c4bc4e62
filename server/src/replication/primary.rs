//! The primary's side of one replica's link, once its connection sent PSYNC (or SYNC).
//!
//! The connection leaves the command loop and becomes the replica's stream: `+CONTINUE
//! <replid>` and the feed from the replica's offset when the backlog still holds it and the
//! replication ID matches (this node's, or its previous one up to `second_repl_offset`);
//! otherwise `+FULLRESYNC <replid> <offset>`, the snapshot streamed from a blocking thread
//! through a bounded channel (never held whole, never written to disk), then the feed from
//! that offset.
//!
//! From the moment the link is answered, the feed's frames for this replica are taken by a
//! feed sink attached then: everything the replica needs after its offset is either in the
//! backlog or in the sink. The sink is the replica's output buffer, held to
//! `client-output-buffer-limit replica` as Redis holds its replica clients (past the hard limit,
//! or the soft one for its seconds, the link is cut and the replica starts over).
//!
//! The replica answers `REPLCONF ACK <offset>` (RESP, as Redis's); the primary sends, between
//! whole frames, an empty frame header ([`GETACK`]) every `repl-ping-replica-period` and when a WAIT asks:
//! the replica acknowledges at once, and knows its primary is alive. These markers are not part
//! of the feed and count in no offset.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};
use sessiond_protocol::{Limits, RequestDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::clients::ClientState;
use crate::role::{Follower, Hello};
use crate::shared::Shared;
use crate::store::feed::{Feed, Sink};

/// How long a new link waits for the frames numbered before it to be published.
const PUBLISH_WAIT: Duration = Duration::from_secs(1);

/// The marker a primary sends to ask for an acknowledgement (and to show it is alive): a frame
/// header of length 0, which no feed frame has.
pub const GETACK: [u8; 8] = [0; 8];
/// Most bytes of the snapshot in flight between the writer's thread and the socket.
const CHUNK: usize = 256 * 1024;
/// Chunks the writer may be ahead of the socket.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Why a replica's link ended (logged).
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("the replica closed the link")]
    Closed,
    #[error("link i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the replica fell behind past client-output-buffer-limit replica")]
    OutputLimit,
    #[error("no acknowledgement within repl-timeout")]
    Timeout,
    #[error("the replica read nothing of its full sync within repl-timeout")]
    SyncTimeout,
    #[error("the snapshot for the replica failed: {0}")]
    Snapshot(String),
    #[error("killed or shutting down")]
    Stopped,
    #[error("malformed input from the replica")]
    Malformed,
}

/// Serves a replica on `socket` after its `PSYNC replid offset` (Redis's offset: the first byte
/// it wants). `input` holds what the connection had read past the PSYNC.
pub async fn serve<S>(
    shared: &Arc<Shared>,
    socket: S,
    client: Arc<ClientState>,
    hello: Hello,
    psync: sessiond_protocol::cmd::Psync,
    input: BytesMut,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let feed = shared.dbs.feed().clone();
    shared.repl.enable_feed(&feed);
    let ip = match &hello.ip {
        Some(ip) => String::from_utf8_lossy(ip).into_owned(),
        None => client.peer.ip().to_string(),
    };
    let follower = Arc::new(Follower {
        ip,
        port: hello.port,
        online: Default::default(),
        ack_offset: Default::default(),
        ack_ms: Default::default(),
        client: client.clone(),
    });
    client.set_replica();
    shared.repl.add_replica(follower.clone());
    // The SWAPDBs so far, read before the sink is attached: one after it may come before the
    // snapshot's walk starts, and would reach the replica twice (see `send_snapshot`). Read
    // with the end of the frames numbered so far, between two frames this node relays as a
    // replica (`Feed::cut_after`, as a log rewrite reads it): a swap's frame has its offset
    // before it counts (an EXEC's too: `Feed::count_swap`), and a relayed one is numbered
    // right after it is applied, so a swap counted here lies below `numbered`, then below
    // `start` once that is published.
    let (swaps, numbered) = feed.cut_after(|| feed.swaps());
    // The frames numbered so far are published first (the pump gathers for a millisecond):
    // a replica that already has them (a sibling after a failover, fed by the same primary)
    // resumes only from an offset this node has published.
    let _ = tokio::time::timeout(PUBLISH_WAIT, feed.wait_published(numbered)).await;
    // Attached before the answer: every frame after `start` reaches the sink.
    let (sink, start) = feed.attach_sink();
    let mut link = Served {
        shared,
        feed: &feed,
        sink: &sink,
        follower: &follower,
        input,
        decoder: RequestDecoder::new(Limits::default()),
        last_ack: Instant::now(),
        over_soft_since: None,
        swaps,
    };
    let (mut reader, mut writer) = tokio::io::split(socket);
    let result = link.run(&mut reader, &mut writer, psync, start).await;
    let mut socket = reader.unsplit(writer);
    feed.detach_sink(&sink);
    shared.repl.remove_replica(&follower);
    match result {
        Ok(()) | Err(Ended::Stopped) | Err(Ended::Closed) => {
            tracing::info!(peer = %client.peer, "replica link closed");
        }
        Err(error) => tracing::warn!(peer = %client.peer, %error, "replica link lost"),
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.shutdown()).await;
}

/// One replica's link, as it is served.
struct Served<'a> {
    shared: &'a Arc<Shared>,
    feed: &'a Arc<Feed>,
    sink: &'a Arc<Sink>,
    follower: &'a Arc<Follower>,
    /// What the replica sent and was not decoded yet.
    input: BytesMut,
    decoder: RequestDecoder,
    last_ack: Instant,
    over_soft_since: Option<Instant>,
    /// [`crate::store::feed::Feed::swaps`] before the sink was attached.
    swaps: u64,
}

impl Served<'_> {
    async fn run<R, W>(
        &mut self,
        reader: &mut R,
        socket: &mut W,
        psync: sessiond_protocol::cmd::Psync,
        start: u64,
    ) -> Result<(), Ended>
    where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send,
    {
        let repl = &self.shared.repl;
        // What the replica has: Redis's offset is the first byte it wants.
        let has = u64::try_from(psync.offset.saturating_sub(1)).ok();
        let backlog = has.filter(|has| {
            psync.offset > 0
                && repl.may_continue(&psync.replid, psync.offset)
                && *has <= start
                && self.feed.starts_frame(*has)
        });
        let replid = repl.ids().replid;
        let mut position = match backlog {
            Some(has) => {
                repl.sync_partial_ok.fetch_add(1, Ordering::Relaxed);
                socket
                    .write_all(format!("+CONTINUE {replid}\r\n").as_bytes())
                    .await?;
                tracing::info!(peer = %self.follower.client.peer, offset = has, "partial resynchronization accepted");
                has
            }
            None => {
                if &psync.replid[..] != b"?" {
                    repl.sync_partial_err.fetch_add(1, Ordering::Relaxed);
                }
                repl.sync_full.fetch_add(1, Ordering::Relaxed);
                socket
                    .write_all(format!("+FULLRESYNC {replid} {start}\r\n").as_bytes())
                    .await?;
                tracing::info!(peer = %self.follower.client.peer, offset = start, "full resynchronization");
                self.send_snapshot(reader, socket).await?;
                start
            }
        };
        // The backlog's part: from the replica's offset up to the sink's start.
        while position < start {
            let chunks = self
                .feed
                .read_from(position, CHUNK)
                .map_err(|_| Ended::OutputLimit)?;
            let mut sent = 0u64;
            for chunk in chunks {
                let take = chunk.len().min((start - position - sent) as usize);
                socket.write_all(&chunk[..take]).await?;
                sent += take as u64;
                if position + sent >= start {
                    break;
                }
            }
            if sent == 0 {
                break;
            }
            position += sent;
        }
        // Online from now; what it holds only its acknowledgements say (WAIT counts on them:
        // a replica that was sent a snapshot may not have loaded it yet).
        self.follower.online.store(true, Ordering::Relaxed);
        self.last_ack = Instant::now();
        self.stream(reader, socket).await
    }

    /// Streams the snapshot: written on a blocking thread (which holds the persistence slot, so
    /// that no save runs meanwhile), sent chunk by chunk. Meanwhile the replica's output buffer
    /// (the sink, filling with the stream) is held to its limits, also while a write waits for a
    /// replica that does not read.
    async fn send_snapshot<R, W>(&mut self, reader: &mut R, socket: &mut W) -> Result<(), Ended>
    where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send,
    {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
        let dbs = self.shared.dbs.clone();
        let options = self.shared.persistence.write_options();
        let swaps = self.swaps;
        let writing = self.shared.persistence.clone().exclusive(move || {
            let out = ChunkWriter {
                tx,
                buf: Vec::with_capacity(CHUNK),
            };
            let written =
                crate::persist::writer::write_stream(&*dbs, out, &options, Instant::now());
            match written {
                Ok((mut out, written)) => {
                    // A SWAPDB since the sink's start is in the stream, and may be in the
                    // snapshot too (before its walk began; one during the walk fails it):
                    // applied twice, it would swap the databases back. Checked before the
                    // snapshot's last bytes leave (the writer holds them until the flush), so
                    // that the replica never completes such a snapshot, nor resumes after it
                    // from the backlog; the sync fails as a save does, and it tries again. A
                    // swap after this check is after the walk: in the stream only.
                    if dbs.feed().swaps() != swaps {
                        return Err("a SWAPDB came during the snapshot".to_owned());
                    }
                    std::io::Write::flush(&mut out).map_err(|e| e.to_string())?;
                    Ok(written)
                }
                Err(error) => Err(error.to_string()),
            }
        });
        tokio::pin!(writing);
        let mut written = None;
        let mut chunk = Bytes::new();
        let mut closed = false;
        // Until the snapshot starts (a save under way holds the slot), a newline every
        // repl-ping-replica-period tells the replica its primary is alive, as Redis's do.
        let mut started = false;
        let mut ping = tokio::time::interval(self.shared.repl.ping_period());
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut published = self.feed.published();
        let mut stop = self.shared.shutdown_signal();
        // When the socket last took bytes of the snapshot: a replica that stops reading is
        // cut off after repl-timeout, as Redis's "timedout replica (full sync)", rather than
        // holding the writer's thread and the persistence slot (no save runs meanwhile).
        let mut progress = Instant::now();
        loop {
            if chunk.is_empty() && closed && written.is_some() {
                break;
            }
            self.check_output_limit(chunk.len())?;
            tokio::select! {
                next = rx.recv(), if chunk.is_empty() && !closed => match next {
                    Some(next) => {
                        if !started {
                            progress = Instant::now();
                        }
                        started = true;
                        chunk = next;
                    }
                    None => closed = true,
                },
                _ = ping.tick() => {
                    follow_period(&mut ping, self.shared.repl.ping_period());
                    if !started {
                        socket.write_all(b"\n").await?;
                    } else if progress.elapsed() > self.shared.repl.timeout() {
                        return Err(Ended::SyncTimeout);
                    }
                }
                sent = socket.write(&chunk), if !chunk.is_empty() => {
                    let sent = sent?;
                    if sent == 0 {
                        return Err(Ended::Closed);
                    }
                    progress = Instant::now();
                    chunk.advance(sent);
                }
                result = &mut writing, if written.is_none() => {
                    written = Some(result.map_err(Ended::Snapshot)?);
                }
                _ = published.changed() => {}
                read = reader.read_buf(&mut self.input) => {
                    if read? == 0 {
                        return Err(Ended::Closed);
                    }
                    self.take_acks()?;
                }
                () = stopped(&mut stop) => return Err(Ended::Stopped),
            }
            if self.follower.client.is_killed() {
                return Err(Ended::Stopped);
            }
        }
        if let Some(written) = written {
            tracing::info!(
                peer = %self.follower.client.peer,
                records = written.records,
                bytes = written.bytes,
                duration_ms = written.duration.as_millis() as u64,
                "snapshot sent to replica"
            );
        }
        Ok(())
    }

    /// The stream: the sink's frames as they are published, a GETACK marker every
    /// `repl-ping-replica-period` and when a WAIT asks (always between whole frames: the queue holds
    /// whole frames, the first maybe partly sent); the replica's acknowledgements read
    /// meanwhile, and its output held to its limits while a write waits.
    async fn stream<R, W>(&mut self, reader: &mut R, socket: &mut W) -> Result<(), Ended>
    where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send,
    {
        let mut published = self.feed.published();
        let mut getack = self.shared.repl.getack_signal();
        let mut ping = tokio::time::interval(self.shared.repl.ping_period());
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = self.shared.shutdown_signal();
        let killed = std::future::poll_fn(|cx| self.follower.client.poll_signal(cx));
        tokio::pin!(killed);
        let mut queue: VecDeque<Bytes> = VecDeque::new();
        let mut queued = 0usize;
        loop {
            let (_, chunks) = self.sink.take(Duration::ZERO);
            for chunk in chunks {
                queued += chunk.len();
                queue.push_back(chunk);
            }
            self.check_output_limit(queued)?;
            let timeout = self.shared.repl.timeout();
            let front = queue.front().cloned().unwrap_or_default();
            tokio::select! {
                sent = socket.write(&front), if !front.is_empty() => {
                    let sent = sent?;
                    if sent == 0 {
                        return Err(Ended::Closed);
                    }
                    queued -= sent;
                    if let Some(first) = queue.front_mut() {
                        first.advance(sent);
                        if first.is_empty() {
                            queue.pop_front();
                        }
                    }
                }
                _ = published.changed() => {}
                _ = getack.changed() => {
                    // After every frame published so far: the WAIT that asks waited for its
                    // writes to be published, and `published` may be ready in this same turn.
                    let (_, chunks) = self.sink.take(Duration::ZERO);
                    for chunk in chunks {
                        queued += chunk.len();
                        queue.push_back(chunk);
                    }
                    queued += GETACK.len();
                    queue.push_back(Bytes::from_static(&GETACK));
                }
                _ = ping.tick() => {
                    follow_period(&mut ping, self.shared.repl.ping_period());
                    if self.last_ack.elapsed() > timeout {
                        return Err(Ended::Timeout);
                    }
                    queued += GETACK.len();
                    queue.push_back(Bytes::from_static(&GETACK));
                }
                read = reader.read_buf(&mut self.input) => {
                    if read? == 0 {
                        return Err(Ended::Closed);
                    }
                    self.take_acks()?;
                }
                signal = &mut killed => {
                    if signal == crate::clients::Signal::Killed {
                        return Err(Ended::Stopped);
                    }
                }
                () = stopped(&mut stop) => return Err(Ended::Stopped),
            }
        }
    }

    /// Cuts the link when what waits for the replica (`queued` bytes taken from the sink, and
    /// what the sink holds) passes its output limits.
    fn check_output_limit(&mut self, queued: usize) -> Result<(), Ended> {
        let limit = self.shared.live.output_limits().replica;
        let pending = usize::try_from(self.sink.pending_bytes())
            .unwrap_or(usize::MAX)
            .saturating_add(queued);
        if pending > limit.hard() {
            return self.cut_off(pending);
        }
        if limit.soft_bytes > 0 && pending > limit.soft_bytes {
            let since = *self.over_soft_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(limit.soft_seconds) {
                return self.cut_off(pending);
            }
        } else {
            self.over_soft_since = None;
        }
        Ok(())
    }

    fn cut_off(&self, pending: usize) -> Result<(), Ended> {
        self.shared
            .stats
            .client_output_buffer_limit_disconnections
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            peer = %self.follower.client.peer,
            pending,
            "replica scheduled to be closed ASAP for overcoming of output buffer limits"
        );
        Err(Ended::OutputLimit)
    }

    /// Reads the `REPLCONF ACK <offset>` commands the replica sent (anything else is ignored,
    /// as Redis ignores what a replica sends but ACKs).
    fn take_acks(&mut self) -> Result<(), Ended> {
        loop {
            // An empty line: the replica is alive, loading what it was sent (Redis's
            // replicas send one a second then, and Redis counts it as an acknowledgement's
            // time).
            let newlines = self
                .input
                .iter()
                .take_while(|b| matches!(b, b'\n' | b'\r'))
                .count();
            if newlines > 0 {
                self.input.advance(newlines);
                self.last_ack = Instant::now();
            }
            match self.decoder.decode(&mut self.input) {
                Ok(Some(args)) => {
                    if let [name, option, offset, ..] = &args[..] {
                        if name.eq_ignore_ascii_case(b"REPLCONF")
                            && option.eq_ignore_ascii_case(b"ACK")
                        {
                            if let Some(offset) = sessiond_protocol::parse_i64(offset)
                                .and_then(|o| u64::try_from(o).ok())
                            {
                                let now_ms = self.shared.dbs.now_ms();
                                self.shared.repl.acknowledged(self.follower, offset, now_ms);
                                self.last_ack = Instant::now();
                            }
                        }
                    }
                }
                Ok(None) => return Ok(()),
                Err(_) => return Err(Ended::Malformed),
            }
        }
    }
}

/// `io::Write` into a bounded channel of chunks, from the snapshot's blocking thread.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::other("the replica's link closed"))
    }
}

impl std::io::Write for ChunkWriter {
    /// A full chunk goes when more data comes, so that the last bytes wait for the flush.
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        let room = CHUNK - self.buf.len();
        let taken = data.len().min(room);
        self.buf.extend_from_slice(&data[..taken]);
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Restarts `ping` on `period` when `repl-ping-replica-period` changed since it began: the
/// next tick comes a new period from now.
fn follow_period(ping: &mut tokio::time::Interval, period: Duration) {
    if ping.period() != period {
        *ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
}

/// Resolves once the server shuts down (the watch's guard never lives across an await).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
