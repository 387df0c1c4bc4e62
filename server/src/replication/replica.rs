//! A replica's link to its primary: one task per REPLICAOF, until REPLICAOF NO ONE, another
//! REPLICAOF or the shutdown.
//!
//! Each attempt connects, authenticates (`masteruser`/`masterauth`), says `REPLCONF
//! listening-port` (and `ip-address`: `replica-announce-port`/`-ip`) and `REPLCONF capa psync2`, and asks `PSYNC <replid> <offset + 1>` with
//! this node's replication ID and feed offset, so that a node that followed the same history
//! (its old primary, or a promoted sibling that keeps that ID as its second) continues from
//! its backlog. On `+FULLRESYNC` the streamed snapshot replaces the keyspace, on a blocking
//! thread. With a data directory it is first received whole into a file there (checked: its
//! framing, count and checksum), the old keyspace served meanwhile, as Redis's disk-based
//! load: a transfer that breaks leaves the replica its data. Then (or at once, without a data
//! directory) the keyspace is emptied and the snapshot loaded (clients get `LOADING`
//! meanwhile), and the feed restarts at the primary's offset. The append-only log, set
//! aside as the load begins, restarts from the loaded keyspace (a new base and log) before the
//! stream goes on, so a crash never restarts from the old log followed by the new stream's
//! frames. Then each frame of the stream is applied (recording nothing of its own) and passed
//! on verbatim to this node's feed, so that its own replicas and its backlog carry the
//! primary's bytes at the primary's offsets.
//!
//! The link acknowledges its offset every second and at each GETACK marker, and gives up on a
//! primary silent for `repl-timeout`; a failed attempt is retried after a backoff that doubles
//! up to [`MAX_BACKOFF`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use sessiond_protocol::{Frame, FrameDecoder, Limits};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::primary::GETACK;
use crate::role::{Link, LinkState};
use crate::shared::Shared;
use crate::store::feed;

/// The first wait before trying again.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the replica acknowledges its offset.
const ACK_PERIOD: Duration = Duration::from_secs(1);
/// Read size.
const READ_CHUNK: usize = 64 * 1024;
/// Chunks of a snapshot read ahead of the loader.
const CHUNKS_IN_FLIGHT: usize = 4;
/// The stream read ahead while a full sync's log base is written, at most, when this node sets
/// no hard limit for a replica's buffer: Redis's default limit.
const READ_AHEAD_UNLIMITED: usize = 256 << 20;
/// The stream applied in one go before the link lets the node's other tasks run (a stream
/// read ahead may hold hundreds of MB).
const APPLY_BUDGET: usize = 1 << 20;
/// A full sync's loader: waiting for the save slot, started, or given up by the link first.
const WAITING: u8 = 0;
const STARTED: u8 = 1;
const GAVE_UP: u8 = 2;

/// The stream a replica holds unapplied at most (read ahead while its log's base is written,
/// then while it applies that): its own hard limit for a replica's buffer, or
/// [`READ_AHEAD_UNLIMITED`] without one.
fn read_room(shared: &Shared) -> usize {
    match shared.live.output_limits().replica.hard_bytes {
        0 => READ_AHEAD_UNLIMITED,
        hard => hard,
    }
}

/// Room for a chunk in the loader's channel; none once the loader stopped taking chunks.
async fn reserve(
    tx: &Option<tokio::sync::mpsc::Sender<Bytes>>,
) -> Option<tokio::sync::mpsc::Permit<'_, Bytes>> {
    match tx {
        Some(tx) => tx.reserve().await.ok(),
        None => std::future::pending().await,
    }
}

/// Stream bytes read and not yet used, in order. Read into one buffer whose filled part is
/// split off as a chunk: chunks share its blocks, so a read of a few hundred bytes does not
/// keep a block of its own, and the bytes counted are about the memory held.
#[derive(Debug, Default)]
struct Chunks {
    queue: std::collections::VecDeque<Bytes>,
    /// The bytes `queue` holds.
    bytes: usize,
    buf: BytesMut,
}

impl Chunks {
    /// The buffer the next read goes to, with room for one.
    fn buf(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        &mut self.buf
    }

    /// Queues what the reads since the last call put in the buffer.
    fn queue_read(&mut self) {
        let chunk = self.buf.split().freeze();
        self.bytes += chunk.len();
        self.queue.push_back(chunk);
    }

    /// The oldest chunk.
    fn pop(&mut self) -> Option<Bytes> {
        let chunk = self.queue.pop_front()?;
        self.bytes -= chunk.len();
        Some(chunk)
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// Why an attempt ended.
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the primary closed the link")]
    Closed,
    #[error("the primary refused {step}: {message}")]
    Refused { step: &'static str, message: String },
    #[error("unexpected reply to {0}")]
    Unexpected(&'static str),
    #[error("no data from the primary within repl-timeout")]
    Timeout,
    #[error("the snapshot from the primary: {0}")]
    Snapshot(String),
    #[error("the stream from the primary: {0}")]
    Stream(String),
    #[error("shutting down")]
    Stopped,
}

/// Runs the link to `link`'s primary until the server shuts down (the task is aborted when the
/// node stops following it).
pub async fn run(shared: Arc<Shared>, link: Arc<Link>) {
    let mut backoff = FIRST_BACKOFF;
    let mut stop = shared.shutdown_signal();
    loop {
        let attempt = attempt(&shared, &link);
        let outcome = tokio::select! {
            outcome = attempt => outcome,
            () = stopped(&mut stop) => Err(Failed::Stopped),
        };
        let now_ms = shared.dbs.now_ms();
        link.set_state(LinkState::Connect, now_ms);
        shared.repl.settle_gate(&link);
        match outcome {
            Err(Failed::Stopped) | Ok(()) => return,
            Err(error) => {
                tracing::warn!(host = %link.host, port = link.port, %error, "replication link to the primary failed; retrying");
            }
        }
        // A link that got as far as the stream starts its backoff over.
        if link.reached_stream() {
            backoff = FIRST_BACKOFF;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            () = stopped(&mut stop) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn attempt(shared: &Arc<Shared>, link: &Arc<Link>) -> Result<(), Failed> {
    link.set_state(LinkState::Connecting, shared.dbs.now_ms());
    let timeout = shared.repl.timeout();
    let address = (link.host.as_str(), link.port);
    let socket = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address))
        .await
        .map_err(|_| Failed::Timeout)??;
    let _ = socket.set_nodelay(true);
    match shared.repl.tls_client() {
        Some(crate::role::TlsClient(connector)) => {
            let name = rustls_pki_types::ServerName::try_from(link.host.clone())
                .map_err(|e| Failed::Stream(format!("primary host name for TLS: {e}")))?;
            let tls = tokio::time::timeout(timeout, connector.connect(name, socket))
                .await
                .map_err(|_| Failed::Timeout)??;
            Linked::new(shared, link, tls).run().await
        }
        None => Linked::new(shared, link, socket).run().await,
    }
}

/// One attempt's connection to the primary.
struct Linked<'a, S> {
    shared: &'a Arc<Shared>,
    link: &'a Arc<Link>,
    socket: S,
    input: BytesMut,
    /// The stream read ahead (while a full sync's log base was written, then while that was
    /// applied), after `input`: moved into it a chunk at a time as frames are applied.
    ahead: Chunks,
    replies: FrameDecoder,
}

impl<'a, S> Linked<'a, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn new(shared: &'a Arc<Shared>, link: &'a Arc<Link>, socket: S) -> Self {
        Linked {
            shared,
            link,
            socket,
            input: BytesMut::with_capacity(READ_CHUNK),
            ahead: Chunks::default(),
            replies: FrameDecoder::new(Limits::default()),
        }
    }

    async fn run(mut self) -> Result<(), Failed> {
        let repl = &self.shared.repl;
        self.link
            .set_state(LinkState::Handshake, self.shared.dbs.now_ms());
        if let Some(password) = repl.masterauth() {
            let mut auth = vec![Bytes::from_static(b"AUTH")];
            if let Some(user) = repl.masteruser() {
                auth.push(Bytes::from(user));
            }
            auth.push(Bytes::from(password));
            if let Frame::Error(message) = self.call(&auth, "AUTH").await? {
                return Err(Failed::Refused {
                    step: "AUTH",
                    message: String::from_utf8_lossy(&message).into_owned(),
                });
            }
        }
        let (announce_ip, announce_port) = repl.announce();
        let port = match announce_port {
            0 => self.shared.local_addr.port(),
            port => port,
        };
        // Errors to REPLCONF are ignored, as Redis ignores them (an older primary).
        self.call(
            &[
                Bytes::from_static(b"REPLCONF"),
                Bytes::from_static(b"listening-port"),
                Bytes::from(port.to_string()),
            ],
            "REPLCONF",
        )
        .await?;
        if let Some(ip) = announce_ip {
            self.call(
                &[
                    Bytes::from_static(b"REPLCONF"),
                    Bytes::from_static(b"ip-address"),
                    Bytes::from(ip),
                ],
                "REPLCONF",
            )
            .await?;
        }
        self.call(
            &[
                Bytes::from_static(b"REPLCONF"),
                Bytes::from_static(b"capa"),
                Bytes::from_static(b"psync2"),
            ],
            "REPLCONF",
        )
        .await?;
        let ids = repl.ids();
        let feed = self.shared.dbs.feed().clone();
        repl.enable_feed(&feed);
        let wanted = feed.end_offset() + 1;
        // A node whose feed never carried anything has no history to continue: `? -1`, as a
        // fresh Redis replica asks (it counts as no failed partial resync).
        let (replid, offset) = if wanted == 1 && !repl.has_history() {
            (Bytes::from_static(b"?"), Bytes::from_static(b"-1"))
        } else {
            (
                Bytes::from(ids.replid.clone()),
                Bytes::from(wanted.to_string()),
            )
        };
        let reply = self
            .call(&[Bytes::from_static(b"PSYNC"), replid, offset], "PSYNC")
            .await?;
        let line = match reply {
            Frame::Simple(line) => String::from_utf8_lossy(&line).into_owned(),
            Frame::Error(message) => {
                return Err(Failed::Refused {
                    step: "PSYNC",
                    message: String::from_utf8_lossy(&message).into_owned(),
                })
            }
            _ => return Err(Failed::Unexpected("PSYNC")),
        };
        let mut words = line.split(' ');
        match (words.next(), words.next(), words.next()) {
            (Some("FULLRESYNC"), Some(replid), Some(offset)) => {
                let offset: u64 = offset.parse().map_err(|_| Failed::Unexpected("PSYNC"))?;
                tracing::info!(host = %self.link.host, port = self.link.port, offset, "full resynchronization from the primary");
                self.load(replid, offset).await?;
            }
            (Some("CONTINUE"), replid, _) => {
                if !self.link.begin_apply() {
                    return Err(Failed::Stopped);
                }
                if let Some(replid) = replid.filter(|id| !id.is_empty() && *id != ids.replid) {
                    repl.adopt(replid, Some(feed.end_offset() as i64 + 1));
                    // As Redis: this node's replicas reconnect to learn the new ID (they
                    // continue under the old one, now this node's second).
                    repl.disconnect_replicas();
                }
                repl.note_history();
                if !self.link.end_apply() {
                    repl.link_stopped();
                    return Err(Failed::Stopped);
                }
                tracing::info!(host = %self.link.host, port = self.link.port, offset = wanted - 1, "partial resynchronization from the primary");
            }
            _ => return Err(Failed::Unexpected("PSYNC")),
        }
        self.stream(&feed).await
    }

    /// Sends one command and reads its reply.
    async fn call(&mut self, args: &[Bytes], step: &'static str) -> Result<Frame, Failed> {
        let mut out = BytesMut::new();
        Frame::Array(args.iter().cloned().map(Frame::Bulk).collect())
            .encode(sessiond_protocol::ProtocolVersion::Resp2, &mut out);
        self.socket.write_all(&out).await?;
        let timeout = self.shared.repl.timeout();
        loop {
            match self.replies.decode(&mut self.input) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(_) => return Err(Failed::Unexpected(step)),
            }
            let read = tokio::time::timeout(timeout, self.socket.read_buf(&mut self.input))
                .await
                .map_err(|_| Failed::Timeout)??;
            if read == 0 {
                return Err(Failed::Closed);
            }
        }
    }

    /// Loads the snapshot that follows `+FULLRESYNC`: the stream read into a blocking loader
    /// through a bounded channel (received whole into a file first, with a data directory),
    /// the keyspace emptied and loaded, the primary's ID taken and the feed restarted at
    /// `offset`. The loader ends the load itself ([`Replication::end_load`]),
    /// also when a REPLICAOF abandoned it meanwhile: it then empties what it loaded before
    /// clients may write.
    ///
    /// [`Replication::end_load`]: crate::role::Replication::end_load
    async fn load(&mut self, replid: &str, offset: u64) -> Result<(), Failed> {
        let shared = self.shared;
        let repl = &shared.repl;
        self.link.set_state(LinkState::Sync, shared.dbs.now_ms());
        // Replicas of this node follow a history that ends here.
        repl.disconnect_replicas();
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
        let first = self.input.split().freeze();
        self.link.read_during_sync(first.len());
        let dbs = shared.dbs.clone();
        let loader_shared = shared.clone();
        let link = self.link.clone();
        let replid = replid.to_owned();
        // Set once the node took the snapshot's offset: from then on it acknowledges that
        // offset while its log's base is written (see below).
        let adopted = Arc::new(AtomicBool::new(false));
        let adopting = adopted.clone();
        // Whether the loader started (claimed from `WAITING` by the loader) or the link gave
        // up before it did (by the link): then the keyspace and its history stay as they are.
        let start = Arc::new(AtomicU8::new(WAITING));
        let starting = start.clone();
        let loading = shared.persistence.clone().exclusive(move || {
            let repl = &loader_shared.repl;
            if starting
                .compare_exchange(WAITING, STARTED, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return Err("abandoned".to_owned());
            }
            repl.loaded_bytes.store(0, Ordering::Relaxed);
            repl.load_total.store(0, Ordering::Relaxed);
            let mut reader = ChunkReader {
                rx,
                chunk: first,
                started: false,
                taken: &repl.loaded_bytes,
            };
            // With a data directory, the snapshot is first received whole into a file there,
            // the keyspace served and kept meanwhile (Redis's disk-based load): a transfer
            // that breaks leaves the replica with its data, for Sentinel to promote.
            let spool = loader_shared.persistence.config().map(|c| spool_path(&c.path()));
            let _removed = spool.as_deref().map(RemoveOnDrop);
            if let Some(path) = &spool {
                let len = receive(&mut reader, path)?;
                // INFO's figures are the file's load's from now on (the count first: never a
                // total with the received bytes counted as loaded).
                repl.loaded_bytes.store(0, Ordering::Relaxed);
                repl.load_total.store(len, Ordering::Relaxed);
            }
            // Not if a REPLICAOF came while the loader waited for its turn (or received).
            if !repl.begin_load(&link, loader_shared.dbs.now_ms()) {
                return Err("abandoned".to_owned());
            }
            // From the first record on, the log describes neither keyspace: set aside, a
            // crash restarts from the snapshot file (or empty) until the new base is written.
            if let Some(log) = loader_shared.persistence.aof() {
                log.set_aside_for_sync();
            }
            let mut restart = None;
            let outcome = feed::without_recording(|| {
                dbs.flush_all(false);
                let loaded = match &spool {
                    Some(path) => std::fs::File::open(path)
                        .map_err(|e| format!("{}: {e}", path.display()))
                        .and_then(|file| {
                            let file = Counted {
                                inner: file,
                                taken: &repl.loaded_bytes,
                            };
                            crate::persist::loader::load_stream(
                                std::io::BufReader::with_capacity(1 << 20, file),
                                path,
                                &*dbs,
                            )
                            .map_err(|e| e.to_string())
                        }),
                    None => crate::persist::loader::load_stream(
                        &mut reader,
                        std::path::Path::new("<primary>"),
                        &*dbs,
                    )
                    .map_err(|e| e.to_string()),
                };
                // Whatever came after the snapshot is the stream's start. Drained until the
                // channel says it is over: a chunk the link had room for before the close
                // may still be on its way (`try_recv` would miss it).
                reader.rx.close();
                let mut rest = BytesMut::from(&reader.chunk[..]);
                while let Some(chunk) = reader.rx.blocking_recv() {
                    rest.extend_from_slice(&chunk);
                }
                let adopted = repl.end_load(
                    &link,
                    loaded.is_ok(),
                    |repl| {
                        repl.adopt(&replid, None);
                        dbs.feed().reset(offset);
                        repl.note_history();
                        restart = after_full_sync(&loader_shared, offset);
                    },
                    || dbs.flush_all(false),
                );
                // Once the gate is open: an acknowledgement lets the primary's WAIT count this
                // node, whose clients must no longer be answered LOADING.
                if adopted {
                    adopting.store(true, Ordering::Release);
                }
                match loaded {
                    Ok(summary) if adopted => Ok((summary, rest)),
                    Ok(_) => Err("abandoned".to_owned()),
                    Err(error) => Err(error),
                }
            });
            // Before the stream goes on (nothing of it applied or acknowledged yet), with the
            // save slot still held and the link's lock not: the log restarts from the loaded
            // keyspace. A failure leaves it set aside, and the rewrite is retried.
            if let Some((log, swaps)) = restart {
                if let Err(error) = log.finish_restart(swaps) {
                    tracing::error!(%error, "cannot restart the append-only log from the keyspace of the full sync");
                }
            }
            outcome
        });
        tokio::pin!(loading);
        let timeout = repl.timeout();
        // What was read and not yet taken by the loader: a chunk, or more while the loader waits
        // for the save slot (the link reads on, to notice a lost primary); after the
        // snapshot, the stream read ahead.
        let mut held = Chunks::default();
        let limit = read_room(shared);
        let mut tx = Some(tx);
        // Acknowledgements of the snapshot's offset while its log's base is written (see
        // `read_ahead`); until the node took that offset, nothing.
        let mut ack = tokio::time::interval(ACK_PERIOD);
        ack.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let feed = shared.dbs.feed();
        // Since when the link waits for the primary: a deadline, not a timeout per read, as the
        // ticks restart the select every second.
        let mut silent_from = tokio::time::Instant::now();
        let mut broken = None;
        let mut loader_done = false;
        let outcome = loop {
            let reading =
                held.is_empty() || (start.load(Ordering::Acquire) == WAITING && held.bytes < limit);
            tokio::select! {
                loaded = &mut loading => break loaded.map_err(Failed::Snapshot),
                // (A branch's condition is read once per select: the flag is read in its body.)
                _ = ack.tick() => {
                    if adopted.load(Ordering::Acquire) {
                        if let Err(failed) = self.ack(feed).await {
                            let _ = (&mut loading).await;
                            break Err(failed);
                        }
                    } else if let Err(error) = self.socket.write_all(b"\n").await {
                        // Until it has an offset to acknowledge, a newline a second tells the
                        // primary, which has sent everything, that the replica is alive (a
                        // load from the received file may outlast repl-timeout), as Redis's
                        // replicas do while they load.
                        broken = Some(error.into());
                    }
                }
                read = self.read_into(&mut held, silent_from + timeout), if reading => {
                    match read {
                        Ok(()) => silent_from = tokio::time::Instant::now(),
                        Err(failed) => broken = Some(failed),
                    }
                }
                // Handed over in the select, not after it: the loader claims the save slot
                // only while `loading` is polled, so a wait for room here outside it would
                // wait for ever when a save held the slot as the sync began.
                room = reserve(&tx), if !held.is_empty() => match room {
                    None => loader_done = true,
                    Some(room) => {
                        if let Some(chunk) = held.pop() {
                            room.send(chunk);
                        }
                        // The time the loader took the chunk in is not the primary's silence.
                        silent_from = tokio::time::Instant::now();
                    }
                },
            }
            if loader_done {
                // The loader finished first: what is held is the stream's. The sender goes
                // now: dropping it wakes a loader still draining the channel.
                drop(tx.take());
                break self
                    .read_ahead(&mut loading, &mut held, &mut ack, &adopted)
                    .await;
            }
            // Full while the loader waits for a save, the link stops reading, and so would not
            // see the primary go: the loader would then begin, empty the keyspace and find the
            // snapshot cut short. The sync is given up instead, the keyspace kept, and tried
            // again (by then the save may be done). Not while the loader is only starting.
            if held.bytes >= limit
                && shared.persistence.saving()
                && start
                    .compare_exchange(WAITING, GAVE_UP, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                break Err(Failed::Snapshot(format!(
                    "more than {limit} bytes arrived while a save held the slot; given up, the keyspace kept"
                )));
            }
            if let Some(failed) = broken.take() {
                if start
                    .compare_exchange(WAITING, GAVE_UP, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    // Before the loader began (a save held the slot): nothing changed.
                    break Err(failed);
                }
                // The loader sees the stream end and fails: still receiving into its file, it
                // leaves the keyspace as it was; loading, it empties it. The attempt ends once
                // it did, not before (clients would read half the new data meanwhile).
                drop(tx.take());
                let _ = (&mut loading).await;
                break Err(failed);
            }
        };
        let (summary, rest) = outcome?;
        self.input = rest;
        self.ahead = held;
        tracing::info!(
            records = summary.records,
            bytes = summary.bytes,
            "loaded the snapshot from the primary"
        );
        Ok(())
    }

    /// Once the snapshot is loaded, its log's base is written before anything of the stream is
    /// applied (seconds for a large keyspace): meanwhile the link acknowledges the snapshot's
    /// offset every [`ACK_PERIOD`], as it would idle, or the primary would drop it after
    /// `repl-timeout` (and the next full sync would end the same way). And it reads the stream
    /// ahead onto `held`, up to this node's own hard limit for a replica's buffer
    /// ([`READ_AHEAD_UNLIMITED`] without one; [`read_room`]): a write storm waits here
    /// rather than in the primary's buffer for this replica, which would drop the link past
    /// its limit. A link lost meanwhile ends the attempt once the base is written (the
    /// keyspace loaded stays, at the snapshot's offset: the next attempt may resume from
    /// there).
    async fn read_ahead<T>(
        &mut self,
        loading: &mut std::pin::Pin<&mut impl std::future::Future<Output = Result<T, String>>>,
        held: &mut Chunks,
        ack: &mut tokio::time::Interval,
        adopted: &AtomicBool,
    ) -> Result<T, Failed> {
        let shared = self.shared;
        let feed = shared.dbs.feed();
        let timeout = shared.repl.timeout();
        let room = read_room(shared);
        let first = held.bytes;
        let mut silent_from = tokio::time::Instant::now();
        let mut acking = true;
        let mut lost = None;
        let loaded = loop {
            let reading = lost.is_none() && held.bytes < room;
            tokio::select! {
                loaded = &mut *loading => break loaded.map_err(Failed::Snapshot),
                _ = ack.tick(), if acking => {
                    if adopted.load(Ordering::Acquire) {
                        // A broken link shows when the stream is read next.
                        acking = self.ack(feed).await.is_ok();
                    }
                }
                read = self.read_into(held, silent_from + timeout), if reading => {
                    match read {
                        Ok(()) => silent_from = tokio::time::Instant::now(),
                        Err(failed) => lost = Some(failed),
                    }
                }
            }
        };
        if held.bytes > first {
            tracing::info!(
                bytes = held.bytes - first,
                "read the stream ahead while the log's base was written"
            );
        }
        match (loaded, lost) {
            (Ok(_), Some(failed)) => Err(failed),
            (loaded, _) => loaded,
        }
    }

    /// Reads what the primary sent onto `held`, by `deadline` (the primary's silence since the
    /// last read, up to `repl-timeout`).
    async fn read_into(
        &mut self,
        held: &mut Chunks,
        deadline: tokio::time::Instant,
    ) -> Result<(), Failed> {
        let read = tokio::time::timeout_at(deadline, self.socket.read_buf(held.buf()))
            .await
            .map_err(|_| Failed::Timeout)??;
        if read == 0 {
            return Err(Failed::Closed);
        }
        held.queue_read();
        self.link.touch(self.shared.dbs.now_ms());
        self.link.read_during_sync(read);
        Ok(())
    }

    /// Applies the stream, acknowledging every [`ACK_PERIOD`] and at each GETACK.
    async fn stream(&mut self, feed: &Arc<feed::Feed>) -> Result<(), Failed> {
        let shared = self.shared;
        self.link
            .set_state(LinkState::Connected, shared.dbs.now_ms());
        self.link.touch(shared.dbs.now_ms());
        self.link
            .read_offset
            .store(feed.end_offset(), std::sync::atomic::Ordering::Relaxed);
        let mut ack = tokio::time::interval(ACK_PERIOD);
        ack.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut silent_since = tokio::time::Instant::now();
        let mut acked_at = tokio::time::Instant::now();
        loop {
            let (asked, more) = self.apply_frames(feed)?;
            if asked {
                self.ack(feed).await?;
                acked_at = tokio::time::Instant::now();
            }
            if more {
                // A stream read ahead: the node's other tasks run between budgets, the time
                // spent applying is not the primary's silence, the primary hears from the
                // replica as it applies, and what it sends meanwhile is read (within this
                // node's room), not left to pile up in its buffer for this replica.
                silent_since = tokio::time::Instant::now();
                if acked_at.elapsed() >= ACK_PERIOD {
                    self.ack(feed).await?;
                    acked_at = tokio::time::Instant::now();
                }
                // As much as a budget applies, as far as it is there now, after what is
                // read ahead already.
                let (room, mut read) = (read_room(shared), 0);
                while read < APPLY_BUDGET && self.input.len() + self.ahead.bytes < room {
                    let ready = tokio::select! {
                        biased;
                        ready = self.socket.read_buf(self.ahead.buf()) => ready?,
                        () = std::future::ready(()) => break,
                    };
                    if ready == 0 {
                        return Err(Failed::Closed);
                    }
                    read += ready;
                    self.ahead.queue_read();
                    self.link.touch(shared.dbs.now_ms());
                }
                tokio::task::yield_now().await;
                continue;
            }
            if self.input.capacity() - self.input.len() < READ_CHUNK / 4 {
                self.input.reserve(READ_CHUNK);
            }
            tokio::select! {
                read = self.socket.read_buf(&mut self.input) => {
                    if read? == 0 {
                        return Err(Failed::Closed);
                    }
                    silent_since = tokio::time::Instant::now();
                    self.link.touch(shared.dbs.now_ms());
                }
                _ = ack.tick() => {
                    if silent_since.elapsed() > shared.repl.timeout() {
                        return Err(Failed::Timeout);
                    }
                    self.ack(feed).await?;
                    acked_at = tokio::time::Instant::now();
                }
            }
        }
    }

    /// Applies the whole frames the input holds, then those of the stream read ahead,
    /// [`APPLY_BUDGET`] bytes of them at most; whether a GETACK marker was among them, and
    /// whether the budget ran out first (else `ahead` is empty).
    fn apply_frames(&mut self, feed: &Arc<feed::Feed>) -> Result<(bool, bool), Failed> {
        let mut asked = false;
        let mut spent = 0;
        loop {
            if spent >= APPLY_BUDGET {
                return Ok((asked, true));
            }
            if self.input.len() >= GETACK.len() && self.input[..GETACK.len()] == GETACK {
                self.input.advance(GETACK.len());
                asked = true;
                continue;
            }
            let (changes, len) = match feed::decode_frame(&self.input) {
                Ok(Some(frame)) => frame,
                Ok(None) => match self.ahead.pop() {
                    Some(chunk) => {
                        self.input.extend_from_slice(&chunk);
                        continue;
                    }
                    None => return Ok((asked, false)),
                },
                Err(error) => return Err(Failed::Stream(error.to_string())),
            };
            let frame = self.input.split_to(len).freeze();
            spent += len;
            // A promotion waits for the frame under way, then reads the offset.
            if !self.link.begin_apply() {
                return Err(Failed::Stopped);
            }
            let applying = feed.applying();
            let applied = self.shared.dbs.apply(changes);
            if applied.is_ok() {
                feed.append_verbatim(frame);
            }
            drop(applying);
            if !self.link.end_apply() {
                self.shared.repl.link_stopped();
                return Err(Failed::Stopped);
            }
            applied.map_err(|e| Failed::Stream(e.to_string()))?;
            self.link
                .read_offset
                .store(feed.end_offset(), std::sync::atomic::Ordering::Relaxed);
        }
    }

    async fn ack(&mut self, feed: &feed::Feed) -> Result<(), Failed> {
        let offset = feed.end_offset().to_string();
        let mut out = BytesMut::new();
        Frame::Array(vec![
            Frame::bulk("REPLCONF"),
            Frame::bulk("ACK"),
            Frame::bulk(offset),
        ])
        .encode(sessiond_protocol::ProtocolVersion::Resp2, &mut out);
        self.socket.write_all(&out).await?;
        Ok(())
    }
}

/// The hook run once a full synchronization loaded and the node took its primary's ID and
/// the feed restarted at its `offset` (under the link's lock, before the gate opens: nothing
/// slow here): what derives from the whole keyspace starts over from the loaded one. The
/// append-only log, set aside when the load began, takes the frames from `offset` on in a new
/// file; the caller then writes its base ([`Aof::finish_restart`]), as Redis restarts its log
/// after a sync. Returns the log and what `finish_restart` needs.
///
/// [`Aof::finish_restart`]: crate::persist::aof::Aof::finish_restart
fn after_full_sync(
    shared: &Arc<Shared>,
    offset: u64,
) -> Option<(Arc<crate::persist::aof::Aof>, u64)> {
    let log = shared.persistence.aof()?;
    let swaps = log.begin_restart(offset);
    Some((log, swaps))
}

/// Where a full sync's snapshot is received before it is loaded: beside the snapshot file,
/// named for the process as a save's temporary file is.
fn spool_path(snapshot: &std::path::Path) -> std::path::PathBuf {
    crate::persist::writer::process_file(snapshot, "sync")
}

/// Receives the snapshot `reader` streams into a new file at `path` (mode 0600: it holds
/// every session), checked whole ([`crate::persist::loader::receive_stream`]); its size.
fn receive(reader: &mut ChunkReader<'_>, path: &std::path::Path) -> Result<u64, String> {
    let file = crate::persist::aof_files::create_private(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let out = std::io::BufWriter::with_capacity(1 << 20, file);
    crate::persist::loader::receive_stream(reader, std::path::Path::new("<primary>"), out)
        .map_err(|e| e.to_string())
}

/// A reader that counts what it reads (INFO's `loading_loaded_bytes`).
struct Counted<'a, R> {
    inner: R,
    taken: &'a AtomicU64,
}

impl<R: std::io::Read> std::io::Read for Counted<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.taken.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Removes the file at its path when dropped (a full sync's received snapshot, loaded or not).
struct RemoveOnDrop<'a>(&'a std::path::Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// `io::Read` over the chunks the link task reads, on the loader's blocking thread.
struct ChunkReader<'a> {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    chunk: Bytes,
    /// Whether the snapshot began: the newlines a primary sends while it waits to start one
    /// (keep-alives) are skipped before.
    started: bool,
    /// Counts the bytes read (INFO's `loading_loaded_bytes`).
    taken: &'a AtomicU64,
}

impl std::io::Read for ChunkReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if !self.started {
                let newlines = self.chunk.iter().take_while(|b| **b == b'\n').count();
                self.chunk.advance(newlines);
                self.started = !self.chunk.is_empty();
            }
            if !self.chunk.is_empty() {
                break;
            }
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk,
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        self.taken.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Resolves once the server shuts down (the watch's guard never lives across an await).
async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
