//! One task per connection: read, decode every complete command in the buffer (up to
//! `DECODE_AHEAD` ahead of the one that runs, their keys prefetched), execute them all, write
//! every reply with one write, repeat. [`serve`] is that loop; `Connection` holds what it
//! keeps between turns, and `Connection::run` is the one place a decoded command meets the
//! connection's state.
//!
//! Pipelining comes for free: a read that brings 100 commands produces 100 replies in one
//! buffer and one `write`. A malformed stream earns `-ERR Protocol error: ...` and the
//! connection is closed; every other error is a reply and the connection lives on.
//!
//! The loop is generic over the stream: a `TcpStream` on the plaintext port, a rustls stream
//! (after its handshake) on the TLS port. Writes are first tried without waiting (see
//! `try_write_now`), so a client that does not read its replies is noticed and held to its
//! output cap on both. On TLS, rustls keeps the records the socket would not take (up to its
//! buffer limit); like the bytes the kernel holds for a plaintext client, they are sent while
//! the loop waits for the next request, never waited for.
//!
//! `client-output-buffer-limit` bounds what the loop holds for a client: a command whose reply
//! would take the pending output past the hard limit does not build it and the client is closed
//! at once (see [`Then::OutputLimit`]); between commands, output past the hard limit is written
//! early, and what the client does not take closes it; while the loop waits for a client to
//! read, pending output above the soft limit for its seconds closes it too.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::clients::{ClientState, Signal};
use crate::clock::BatchClock;
use crate::cmd::{self, ConnState, Then};
use crate::output_limit::{ClassLimit, SoftLimit, Verdict};
use crate::shared::Shared;
use crate::stats::LocalStats;
use sessiond_protocol::{Frame, Limits, ProtocolError, ProtocolVersion, RequestDecoder};

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
pub async fn serve<S>(shared: &Arc<Shared>, socket: S, client: Arc<ClientState>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let signal = std::future::poll_fn(|cx| client.poll_signal(cx));
    tokio::pin!(signal);
    let mut connection = Connection::new(shared, socket, client.clone());
    let mut stop = shared.shutdown_signal();
    // Made once and polled before every read: making a wait takes the shared signal's lock
    // and registers a waiter.
    let stopping = stop.wait_for(|stopping| *stopping);
    tokio::pin!(stopping);
    let end = loop {
        let input = tokio::select! {
            // Shutdown first: a client that never stops sending must not delay it.
            biased;
            _ = &mut stopping => break End::Orderly,
            signal = &mut signal => match signal {
                Signal::Killed => break End::Orderly,
                // The read is dropped (nothing read is lost) and made again under the new
                // timeout; a subscriber, which no timeout holds, is never retimed.
                Signal::Retimed => continue,
            },
            input = connection.next_input() => input,
        };
        let done = match input {
            Err(end) => break end,
            Ok(Input::Read) => connection.run_batch().await,
            Ok(Input::Delivered) => connection.deliver().await,
        };
        if let Err(end) = done {
            break end;
        }
    };
    if end == End::Replicate {
        let Connection {
            socket,
            mut state,
            mut local,
            input,
            ..
        } = connection;
        shared.stats.absorb(&mut local);
        if let Some((hello, psync)) = state.take_psync() {
            crate::replication::primary::serve(shared, socket, client, hello, psync, input).await;
        }
        return;
    }
    connection.close(end).await;
}

/// What woke a waiting connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// The client sent something.
    Read,
    /// Published messages are in the output (a subscribed connection).
    Delivered,
}

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// A TLS `close_notify` and a TCP shutdown (QUIT, EOF, `--timeout`, a protocol error,
    /// shutdown).
    Orderly,
    /// The socket is just dropped: the peer is gone, does not read, or is over its output
    /// limits.
    Abrupt,
    /// The connection becomes a replica's link (PSYNC): the socket is handed over.
    Replicate,
}

/// Where [`Connection::run_stretch`] stopped.
enum Stretch {
    /// Every decoded command ran.
    Done,
    /// A command ran and said what must follow.
    Then(Then),
    /// CLIENT PAUSE is on: the command, not run yet, waits its turn.
    Paused(Vec<Bytes>),
    /// The replies passed the threshold for writing them early.
    Early,
}

/// What [`Connection::decode_ahead`] left in the input.
#[derive(Debug)]
enum Decoded {
    /// Every complete command is decoded; the rest needs another read.
    All,
    /// More complete commands may follow: decoding stopped at [`DECODE_AHEAD`] or after a
    /// command that changes the decoder's limits.
    More,
    /// The stream is malformed after the commands decoded before it.
    Malformed(ProtocolError),
}

/// One client's connection: its socket, what it has read and not yet run, the replies not yet
/// written, and the state its commands run against.
struct Connection<'a, S> {
    shared: &'a Arc<Shared>,
    socket: S,
    /// Bytes read and not yet decoded.
    input: BytesMut,
    decoder: RequestDecoder,
    /// Commands decoded and not yet run, in order (see [`DECODE_AHEAD`]); kept for the
    /// connection's life.
    decoded: VecDeque<Vec<Bytes>>,
    /// Whether the decoder holds the client to the full limits: before authentication, a peer
    /// may make the server hold very little on its behalf.
    authenticated: bool,
    /// The connection's protocol version, user and registry entry.
    state: ConnState,
    /// The time the batch's commands run at.
    clock: BatchClock,
    /// Counters added to the server's after every batch.
    local: LocalStats,
    /// Replies not yet written.
    output: BytesMut,
    writes: WriteState,
    /// Since when the client has been idle, Unix ms (the server's clock), while a read waits:
    /// `--timeout` counts from it, so a read remade under a new timeout (CONFIG SET) keeps it,
    /// and a client idle longer than the new timeout is closed at once, as in Redis.
    idle_since_ms: Option<u64>,
    /// Under `appendfsync always`: the change feed's offset that must be on disk before the
    /// replies in `output` go out (0: none).
    durable_due: u64,
}

impl<'a, S> Connection<'a, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn new(shared: &'a Arc<Shared>, socket: S, client: Arc<ClientState>) -> Self {
        let state = ConnState::new(client, shared.auth.initial_user());
        let authenticated = state.authenticated();
        Connection {
            shared,
            socket,
            input: BytesMut::with_capacity(READ_CHUNK),
            decoder: RequestDecoder::new(decode_limits(shared, authenticated)),
            decoded: VecDeque::with_capacity(DECODE_AHEAD),
            authenticated,
            state,
            clock: BatchClock::default(),
            local: LocalStats::default(),
            output: BytesMut::with_capacity(READ_CHUNK),
            durable_due: 0,
            writes: WriteState::default(),
            idle_since_ms: None,
        }
    }

    /// Reads what the client sent next, waiting at most `--timeout`; `Err` when the client has
    /// left, has been idle too long, or the read failed.
    async fn read(&mut self) -> Result<(), End> {
        if self.input.capacity() - self.input.len() < READ_CHUNK / 4 {
            self.input.reserve(READ_CHUNK);
        }
        // The batch's reading is when the client last had a reply; a fresh one only after
        // something that waited (DEBUG SLEEP, SAVE...) or a long batch.
        let dbs = &self.shared.dbs;
        let since = *self
            .idle_since_ms
            .get_or_insert_with(|| self.clock.last_ms().unwrap_or_else(|| dbs.now_ms()));
        let idle_timeout = self.shared.live.idle_timeout().map(|limit| {
            let idle = Duration::from_millis(dbs.now_ms().saturating_sub(since));
            limit.saturating_sub(idle)
        });
        let read = read_some(
            &mut self.socket,
            &mut self.input,
            &mut self.writes.unflushed,
            idle_timeout,
        );
        let read = read.await;
        self.idle_since_ms = None;
        self.after_read(read)
    }

    /// What comes next: the client's next request, or while it subscribes, the messages
    /// published to it (put in the output, up to a [`write_early`]'s worth), whichever comes
    /// first. A subscriber is not held to `--timeout` (as in Redis), and one cut off by its
    /// output limits ends here.
    async fn next_input(&mut self) -> Result<Input, End> {
        if !self.state.subscribed() {
            return self.read().await.map(|()| Input::Read);
        }
        if self.input.capacity() - self.input.len() < READ_CHUNK / 4 {
            self.input.reserve(READ_CHUNK);
        }
        let room = write_early(self.shared, &self.state);
        let resp3 = self.state.version() == ProtocolVersion::Resp3;
        let Some(subscriber) = self.state.subscriber_mut() else {
            return Ok(Input::Read);
        };
        let mailbox = subscriber.mailbox().clone();
        let read = read_some(
            &mut self.socket,
            &mut self.input,
            &mut self.writes.unflushed,
            None,
        );
        let read = tokio::select! {
            read = read => read,
            () = subscriber.recv_into(resp3, &mut self.output, room) => {
                self.gather_deliveries(resp3, room).await;
                return Ok(Input::Delivered);
            }
            () = mailbox.cut() => {
                closed_for_output_limit(self.shared, &self.state, self.output.len());
                return Err(End::Abrupt);
            }
        };
        self.after_read(read).map(|()| Input::Read)
    }

    /// After a first delivery, lets the tasks that are ready run (publishers among them) before
    /// the write, then takes what they published too: with many subscribers, a write carries
    /// the messages of many PUBLISHes, as Redis's one write per client per event-loop turn.
    async fn gather_deliveries(&mut self, resp3: bool, room: usize) {
        if self.output.len() >= room {
            return;
        }
        tokio::task::yield_now().await;
        if let Some(subscriber) = self.state.subscriber_mut() {
            subscriber.drain_into(resp3, &mut self.output, room);
        }
    }

    /// Writes the messages [`Connection::next_input`] put in the output.
    async fn deliver(&mut self) -> Result<(), End> {
        self.flush().await?;
        self.shared.stats.absorb(&mut self.local);
        Ok(())
    }

    /// Counts what a read brought; `Err` when the client left, was idle too long, or the read
    /// failed.
    fn after_read(&mut self, read: std::io::Result<usize>) -> Result<(), End> {
        match read {
            Ok(0) => Err(End::Orderly),
            Ok(n) => {
                self.local.input_bytes += n as u64;
                crate::idle_poll::note_activity();
                Ok(())
            }
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                let peer = self.state.client().peer;
                self.shared
                    .stats
                    .idle_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(%peer, "closing idle client (--timeout)");
                Err(End::Orderly)
            }
            Err(error) => {
                tracing::debug!(%error, peer = %self.state.client().peer, "read failed");
                Err(End::Abrupt)
            }
        }
    }

    /// Runs every complete command the input holds, a group at a time, and writes their
    /// replies; `Err` when the connection ends.
    async fn run_batch(&mut self) -> Result<(), End> {
        // A new batch: its commands run at a new reading of the clock.
        self.clock.stale();
        let then = loop {
            let decoded = self.decode_ahead();
            self.prefetch();
            let then = self.run_decoded().await?;
            if then != Then::Continue {
                break then;
            }
            match decoded {
                Decoded::All => break Then::Continue,
                Decoded::More => {}
                Decoded::Malformed(error) => break self.protocol_error(&error),
            }
        };
        self.flush().await?;
        self.shared.stats.absorb(&mut self.local);
        if then == Then::Replicate {
            return Err(End::Replicate);
        }
        if then != Then::Continue {
            return Err(End::Orderly);
        }
        if self.input.is_empty()
            && self.input.capacity() > KEEP_CAPACITY
            && !self.decoder.has_partial()
        {
            self.input = BytesMut::with_capacity(READ_CHUNK);
        }
        Ok(())
    }

    /// Decodes the next group of commands: up to [`DECODE_AHEAD`] once authenticated, so that
    /// their keys can be prefetched together, one at a time before; and none past an AUTH,
    /// HELLO or RESET, which change the limits the next command is decoded under.
    fn decode_ahead(&mut self) -> Decoded {
        let ahead = if self.authenticated { DECODE_AHEAD } else { 1 };
        while self.decoded.len() < ahead {
            match self.decoder.decode(&mut self.input) {
                Ok(Some(args)) => {
                    let changer = cmd::may_change_authentication(&args);
                    self.decoded.push_back(args);
                    if changer {
                        return Decoded::More;
                    }
                }
                Ok(None) => return Decoded::All,
                Err(error) => return Decoded::Malformed(error),
            }
        }
        Decoded::More
    }

    /// Starts loading the keys of a group of several commands into the cache.
    fn prefetch(&self) {
        if self.decoded.len() > 1 {
            for args in &self.decoded {
                cmd::prefetch(&self.shared.dbs, &self.state, args);
            }
        }
    }

    /// Runs the decoded group in order, writing the replies early if they pile up. It stops at
    /// a command that closes the connection; those decoded after it are dropped, as unread
    /// input would be.
    async fn run_decoded(&mut self) -> Result<Then, End> {
        // AUTH, HELLO and RESET end a group: the threshold holds for all of it.
        let early = write_early(self.shared, &self.state);
        // A command's time runs from the end of the one before (one clock reading each), so
        // the timer starts again after anything that is not a command's doing.
        self.local.start_timing();
        loop {
            let then = match self.run_stretch(early)? {
                Stretch::Done => return Ok(Then::Continue),
                Stretch::Then(then) => then,
                Stretch::Paused(args) => {
                    // CLIENT PAUSE: the replies so far go out, then the command waits its turn.
                    self.flush().await?;
                    let shared = self.shared;
                    self.interruptible(shared.pause.wait(&args)).await?;
                    self.clock.stale();
                    self.local.start_timing();
                    self.run(args)?
                }
                Stretch::Early => Then::Continue,
            };
            match then {
                Then::Continue => {}
                Then::Save => {
                    self.save().await;
                    self.local.start_timing();
                }
                Then::AwaitShutdown(failed_before) => {
                    self.await_shutdown(failed_before).await?;
                    self.local.start_timing();
                }
                Then::Pending => {
                    self.run_pending().await?;
                    // A script run on another thread may have written.
                    if let Some(feed) = self.fsync_always() {
                        self.durable_due = feed.end_offset();
                    }
                    self.local.start_timing();
                }
                Then::Wait(wait) => {
                    // WAIT: the replies so far go out, then the connection (not the thread)
                    // waits for the replicas.
                    self.flush().await?;
                    let shared = self.shared;
                    let mut reply = None;
                    self.interruptible(async { reply = Some(wait.run(shared).await) })
                        .await?;
                    if let Some(reply) = reply {
                        reply.encode(self.state.version(), &mut self.output);
                    }
                    self.clock.stale();
                    self.local.start_timing();
                }
                Then::Sleep(duration) => {
                    self.interruptible(tokio::time::sleep(duration)).await?;
                    Frame::ok().encode(self.state.version(), &mut self.output);
                    self.clock.stale();
                    self.local.start_timing();
                }
                then => {
                    // The commands decoded after it are dropped, as unread input would be.
                    self.decoded.clear();
                    return Ok(then);
                }
            }
            if self.output.len() >= early {
                self.flush().await?;
                // The flush may have waited for the client to read.
                self.clock.stale();
                self.local.start_timing();
            }
        }
    }

    /// Runs decoded commands back to back until one makes the connection wait, the replies
    /// pile up past `early`, or none is left. Their changes reach the change feed as one run
    /// when it returns ([`crate::store::feed::Feed::hold`]), before anything is awaited.
    fn run_stretch(&mut self, early: usize) -> Result<Stretch, End> {
        let _hold = self.shared.dbs.feed().hold();
        while let Some(args) = self.decoded.pop_front() {
            if self.shared.pause.maybe_on() {
                return Ok(Stretch::Paused(args));
            }
            match self.run(args)? {
                Then::Continue => {}
                then => return Ok(Stretch::Then(then)),
            }
            if self.output.len() >= early {
                return Ok(Stretch::Early);
            }
        }
        Ok(Stretch::Done)
    }

    /// Waits for `wait` (CLIENT PAUSE, DEBUG SLEEP) unless the client is killed or the server
    /// shuts down first, which ends the connection.
    async fn interruptible(&self, wait: impl std::future::Future) -> Result<(), End> {
        let client = self.state.client();
        let mut stop = self.shared.shutdown_signal();
        tokio::select! {
            _ = wait => Ok(()),
            _ = stop.wait_for(|stopping| *stopping) => Err(End::Orderly),
            () = std::future::poll_fn(|cx| client.poll_killed(cx)) => Err(End::Orderly),
        }
    }

    /// The change feed, when replies wait for its fsync (the log on, `appendfsync always`).
    #[inline]
    fn fsync_always(&self) -> Option<&'a Arc<crate::store::feed::Feed>> {
        let shared: &'a Shared = self.shared;
        shared.persistence.fsync_always().then(|| shared.dbs.feed())
    }

    /// Runs one decoded command against the connection's state and encodes its reply. What
    /// the connection does next: `Continue`; `Close` once the replies so far are written;
    /// `Save` or `AwaitShutdown`, which wait; or `Err` to end at once.
    fn run(&mut self, args: Vec<Bytes>) -> Result<Then, End> {
        // Messages published before the command are sent before its reply.
        if self.state.subscribed() {
            if self
                .state
                .subscriber()
                .is_some_and(|s| s.mailbox().is_cut())
            {
                // Cut off by its limits: it ends before any command (one that unsubscribes
                // would otherwise drop what it lost without a word).
                closed_for_output_limit(self.shared, &self.state, self.output.len());
                return Err(End::Abrupt);
            }
            let resp3 = self.state.version() == ProtocolVersion::Resp3;
            if let Some(subscriber) = self.state.subscriber_mut() {
                subscriber.drain_into(resp3, &mut self.output, usize::MAX);
            }
        }
        // Under `appendfsync always`, every reply waits for the fsync of the changes made
        // before it, whoever made them: a reply must not reveal a change a crash could undo
        // (a read of another client's fresh write, a retried logout that finds nothing left
        // to destroy), as Redis answers only after its fsync. A connection with nothing
        // pending on disk does not wait; while the log cannot be written, only a command that
        // wrote waits (and its client is closed unanswered), so reads and INFO still answer.
        // SESSION.GET too: its only change is the idle refresh, which MISCONF lets it make so
        // that a full disk does not log everybody out; losing that refresh in a crash ends the
        // session at most one idle timeout early.
        let log = self.fsync_always();
        let before = log.map(|feed| feed.end_offset());
        let refresh_only = log.is_some()
            && args
                .first()
                .is_some_and(|name| name.eq_ignore_ascii_case(b"session.get"));
        let reply = cmd::execute(
            self.shared,
            &mut self.state,
            &mut self.local,
            args,
            &mut self.clock,
            &mut self.output,
        );
        if let (Some(feed), Some(before)) = (log, before) {
            let end = feed.end_offset();
            let durable = feed.durable();
            let wrote = end != before && !(durable.failed && refresh_only);
            if wrote || (end > durable.offset && !durable.failed) {
                self.durable_due = self.durable_due.max(end);
            }
        }
        if let Some(frame) = reply.frame {
            frame.encode(self.state.version(), &mut self.output);
        }
        if self.state.subscriber().is_some_and(|s| s.is_empty()) {
            // Unsubscribed from everything inside EXEC: what was published before follows
            // EXEC's reply, and the connection leaves the subscribed mode.
            let resp3 = self.state.version() == ProtocolVersion::Resp3;
            if let Some(subscriber) = self.state.subscriber_mut() {
                subscriber.drain_into(resp3, &mut self.output, usize::MAX);
            }
            cmd::pubsub::unsubscribe_all(&mut self.state);
        }
        if reply.then == Then::OutputLimit {
            // As Redis: the client is closed, what is pending is not sent.
            closed_for_output_limit(self.shared, &self.state, self.output.len());
            return Err(End::Abrupt);
        }
        self.follow_authentication();
        Ok(reply.then)
    }

    /// What a command left pending ([`Then::Pending`]): a command deferred while a long
    /// script holds what it needs runs once the script ends or turns busy (its replies so far
    /// are sent first); a long script run again on a blocking thread sends its reply when done.
    async fn run_pending(&mut self) -> Result<(), End> {
        match self.state.take_pending() {
            None => {}
            Some(cmd::busy::Pending::Deferred { args, generation }) => {
                self.flush().await?;
                let blocks = self.shared.dbs.long_blocks();
                blocks.changed_since(generation).await;
                self.clock.stale();
                self.decoded.push_front(args);
            }
            Some(cmd::busy::Pending::Offload(job)) => {
                let blocks = self.shared.dbs.long_blocks();
                let slot = blocks.offload_slot().await;
                let frame = tokio::task::spawn_blocking(job)
                    .await
                    .unwrap_or_else(|_| Frame::error("ERR the script's thread failed"));
                drop(slot);
                self.clock.stale();
                // As for a script run inline (`cmd::eval`): past the hard output limit the
                // client is closed, its reply unsent.
                let limit = cmd::output_class(&self.shared.live, &self.state).hard();
                let size = cmd::reply_size(&frame, limit);
                if self.output.len().saturating_add(size) > limit {
                    closed_for_output_limit(self.shared, &self.state, self.output.len());
                    return Err(End::Abrupt);
                }
                frame.encode(self.state.version(), &mut self.output);
            }
        }
        Ok(())
    }

    /// SAVE: the replies already encoded go first, then SAVE's own once it is done.
    async fn save(&mut self) {
        let outcome = self.shared.persistence.save().await;
        cmd::save::save_reply(outcome).encode(self.state.version(), &mut self.output);
        self.clock.stale();
    }

    /// SHUTDOWN that waits for its outcome: the replies before it go now, as the wait may be
    /// long; the server exits, or the shutdown failed and SHUTDOWN answers so.
    async fn await_shutdown(&mut self, failed_before: u64) -> Result<(), End> {
        self.flush().await?;
        self.shared.wait_for_failed_shutdown(failed_before).await;
        Frame::error(crate::shared::SHUTDOWN_FAILED).encode(self.state.version(), &mut self.output);
        self.clock.stale();
        Ok(())
    }

    /// Holds the decoder to the limits of the connection's authentication, once it changed.
    fn follow_authentication(&mut self) {
        if self.state.authenticated() != self.authenticated {
            self.authenticated = self.state.authenticated();
            self.decoder
                .set_limits(decode_limits(self.shared, self.authenticated));
        }
    }

    /// Counts, logs and answers a malformed stream; the connection closes after the reply.
    fn protocol_error(&mut self, error: &ProtocolError) -> Then {
        let stats = &self.shared.stats;
        let peer = self.state.client().peer;
        stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
        if self.authenticated {
            tracing::debug!(%error, %peer, "closing connection on protocol error");
        } else {
            stats
                .unauthenticated_limit_disconnections
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, %peer, "closing an unauthenticated client: input beyond the pre-authentication limits, or malformed");
        }
        let reply = format!("ERR {error}");
        stats.commands.error_reply(reply.as_bytes());
        Frame::error(reply).encode(self.state.version(), &mut self.output);
        Then::Close
    }

    /// Writes all pending replies; `Err` when the connection must close: the peer is gone, or
    /// while it does not read its replies, more than its hard output limit is pending or more
    /// than its soft limit for the soft limit's seconds (see [`output_limit`]), or a write
    /// stalls longer than `--timeout`.
    ///
    /// On TLS, rustls may take replies into its buffer that the socket does not take yet;
    /// `writes.unflushed` says so, and [`read_some`] sends them while waiting for the next
    /// request.
    async fn flush(&mut self) -> Result<(), End> {
        if self.durable_due != 0 {
            let due = std::mem::take(&mut self.durable_due);
            // Noted only while the log was on; one turned off since lets every waiter go
            // (`Aof::close`).
            if !self.shared.dbs.feed().wait_durable(due).await {
                // The log cannot be written: these writes are not on disk, and the client
                // is told nothing was (no reply), as Redis stops rather than acknowledge.
                tracing::warn!("closing a client whose writes the append-only log could not store");
                return Err(End::Abrupt);
            }
        }
        let shared = self.shared;
        let state = &self.state;
        let socket = &mut self.socket;
        let output = &mut self.output;
        let limit = output_limit(shared, state);
        // A subscriber waiting for its client to read is cut off by what is published
        // meanwhile, if that passes its limits.
        let mailbox = state.subscriber().map(|s| s.mailbox().clone());
        let peer = state.client().peer;
        let stalled = || {
            shared.stats.idle_timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, "closing a client whose writes stalled past --timeout");
            Err(End::Abrupt)
        };
        while !output.is_empty() {
            let written = match try_write_now(socket, output).await {
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    let now = tokio::time::Instant::now();
                    let soft_limit = &mut self.writes.soft_limit;
                    let soft_deadline = match soft_limit.judge(&limit, output.len(), now.into()) {
                        Verdict::Close => {
                            closed_for_output_limit(shared, state, output.len());
                            return Err(End::Abrupt);
                        }
                        Verdict::Wait => None,
                        Verdict::WaitUntil(deadline) => Some(tokio::time::Instant::from(deadline)),
                    };
                    // Within the limits: wait for the client to read, as long as --timeout and
                    // the soft limit allow.
                    let stall_deadline = shared.live.idle_timeout().map(|limit| now + limit);
                    let write = async {
                        let write = socket.write(output);
                        match &mailbox {
                            None => Some(write.await),
                            Some(mailbox) => tokio::select! {
                                written = write => Some(written),
                                () = mailbox.cut() => None,
                            },
                        }
                    };
                    let written = match soft_deadline.into_iter().chain(stall_deadline).min() {
                        None => write.await,
                        Some(deadline) => match tokio::time::timeout_at(deadline, write).await {
                            Ok(written) => written,
                            Err(_) if Some(deadline) == soft_deadline => {
                                closed_for_output_limit(shared, state, output.len());
                                return Err(End::Abrupt);
                            }
                            Err(_) => return stalled(),
                        },
                    };
                    match written {
                        Some(written) => written,
                        None => {
                            closed_for_output_limit(shared, state, output.len());
                            return Err(End::Abrupt);
                        }
                    }
                }
                written => written,
            };
            match written {
                Ok(0) => return Err(End::Abrupt),
                Ok(n) => {
                    self.local.output_bytes += n as u64;
                    output.advance(n);
                }
                Err(error) => {
                    tracing::debug!(%error, %peer, "write failed");
                    return Err(End::Abrupt);
                }
            }
        }
        // Always done on TCP; on TLS, sends the records rustls holds, if the socket takes them
        // now.
        self.writes.soft_limit.clear();
        match try_flush_now(socket).await {
            Ok(done) => self.writes.unflushed = !done,
            Err(error) => {
                tracing::debug!(%error, %peer, "write failed");
                return Err(End::Abrupt);
            }
        }
        output.clear();
        if output.capacity() > KEEP_CAPACITY {
            *output = BytesMut::with_capacity(READ_CHUNK);
        }
        Ok(())
    }

    /// Ends the connection: an orderly end sends what rustls still holds and a `close_notify`
    /// on TLS, a FIN on TCP, within [`CLOSE_TIMEOUT`]. The last counters are added either way.
    async fn close(&mut self, end: End) {
        if end == End::Orderly {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.socket.shutdown()).await;
        }
        self.shared.stats.absorb(&mut self.local);
    }
}

/// The limits commands are decoded under: the configured ones, or before authentication
/// their tight set.
fn decode_limits(shared: &Shared, authenticated: bool) -> Limits {
    if authenticated {
        shared.config.limits
    } else {
        shared.config.limits.unauthenticated()
    }
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
        cmd::output_class(&shared.live, conn)
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
        WRITE_EARLY.min(cmd::output_class(&shared.live, conn).hard() / 2)
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
