//! Running a load: connect every client, prepare the keyspace, drive the closed or the open
//! loop on each connection, and merge what they measured into a [`Report`].
//!
//! - **Closed loop** (no `--rate`): each connection sends a batch of `pipeline` commands in one
//!   write and sends the next batch when every reply is in, as redis-benchmark does. Latency is
//!   from the batch's write to each reply.
//! - **Open loop** (`--rate R`): each connection sends on a fixed schedule (R / clients requests
//!   per second, connections offset from each other), with at most `pipeline` requests
//!   outstanding. Latency is measured from each request's *intended* send time, so a stalled
//!   server is charged for the requests it kept the client from sending (no coordinated
//!   omission). Requests still unsent when the run ends are not sent.
//!
//! Requests sent before the warmup ends are executed but not measured. With `--requests N`,
//! exactly N measured requests are sent, shared among the connections as they go.
//!
//! A request may be several commands written together (multi's MULTI ... EXEC): it is
//! answered, and its latency taken, when its last reply frame is in ([`Replies`]).

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use sessiond_protocol::{ClientCodec, Frame, FrameDecoder, ProtocolError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::config::{Config, Stop, Workload};
use crate::fanout::Subscribed;
use crate::stats::{Recorder, Report, RunInfo, Samples};
use crate::workload::{
    publish_channel, value_buffer, Generator, Op, Outcome, LOCK_RELEASE_SCRIPT, LOCK_RELEASE_SHA,
};

/// Commands per batch while preparing the keyspace.
const SETUP_BATCH: u64 = 512;
/// How often the progress line is redrawn.
const PROGRESS_PERIOD: Duration = Duration::from_millis(500);

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The server could not be reached.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// Reading or writing failed mid-run.
    #[error("connection to {addr}: {source}")]
    Io {
        /// `host:port`.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The server closed a connection.
    #[error("{addr} closed the connection")]
    Closed {
        /// `host:port`.
        addr: String,
    },
    /// The server sent something that is not RESP.
    #[error("malformed reply from {addr}: {source}")]
    Protocol {
        /// `host:port`.
        addr: String,
        /// What was wrong.
        source: ProtocolError,
    },
    /// AUTH was refused.
    #[error("AUTH refused by {addr}: {message}")]
    Auth {
        /// `host:port`.
        addr: String,
        /// The server's error.
        message: String,
    },
    /// Preparing the keyspace failed.
    #[error("preparing the keyspace on {addr}: {message}")]
    Setup {
        /// `host:port`.
        addr: String,
        /// The server's error.
        message: String,
    },
    /// A publish subscriber's SUBSCRIBE was refused.
    #[error("subscribing on {addr}: {message}")]
    Subscribe {
        /// `host:port`.
        addr: String,
        /// The server's error, or the reply that is not a confirmation.
        message: String,
    },
    /// A reply came with no request waiting for it.
    #[error("{addr} sent a reply to no request")]
    UnexpectedReply {
        /// `host:port`.
        addr: String,
    },
    /// The async runtime failed a task (a panic).
    #[error("load task failed: {0}")]
    Task(String),
}

/// State the connections share.
#[derive(Debug)]
struct Shared {
    recorder: Mutex<Recorder>,
    /// Measured replies so far (for the progress line).
    completed: AtomicU64,
    /// Replies so far, warmup included (for the progress line's current rate).
    replies: AtomicU64,
    /// Measured requests not yet claimed by a connection (`--requests`).
    tickets: AtomicU64,
    stop: Stop,
    /// When the run (warmup included) starts.
    start: Instant,
    /// When measuring starts.
    measure_start: Instant,
    /// The last measured reply, ns after `measure_start`.
    last_reply_ns: AtomicU64,
    /// publish: the receivers the PUBLISH replies counted, added up (warmup included).
    receivers: AtomicU64,
}

impl Shared {
    /// Claims up to `want` measured requests; 0 when the run is over.
    fn claim(&self, want: u64, now: Instant) -> u64 {
        match self.stop {
            Stop::After(duration) => {
                if now >= self.measure_start + duration {
                    0
                } else {
                    want
                }
            }
            Stop::Requests(_) => {
                let mut left = self.tickets.load(Ordering::Relaxed);
                loop {
                    if left == 0 {
                        return 0;
                    }
                    let take = want.min(left);
                    match self.tickets.compare_exchange_weak(
                        left,
                        left - take,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return take,
                        Err(now_left) => left = now_left,
                    }
                }
            }
        }
    }

    fn completed(&self, replies: u64, at: Instant) {
        self.completed.fetch_add(replies, Ordering::Relaxed);
        let ns = at.saturating_duration_since(self.measure_start).as_nanos() as u64;
        self.last_reply_ns.fetch_max(ns, Ordering::Relaxed);
    }

    fn absorb(&self, samples: &mut Samples) {
        self.recorder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .absorb(samples);
    }
}

/// Runs the load `config` describes; with `progress`, redraws a status line on stderr.
pub async fn run(config: &Config, progress: bool) -> Result<Report, BenchError> {
    let values = value_buffer(config.value_size.max, config.seed);
    let mut connecting = JoinSet::new();
    for client in 0..config.clients {
        let config = config.clone();
        let values = values.clone();
        connecting.spawn(async move {
            let mut conn = Conn::connect(&config).await?;
            let mut generator = Generator::new(&config, client, values);
            conn.prepare(&config, client, &mut generator).await?;
            Ok::<_, BenchError>((conn, generator))
        });
    }
    let mut clients = Vec::with_capacity(config.clients);
    while let Some(joined) = connecting.join_next().await {
        clients.push(joined.map_err(|e| BenchError::Task(e.to_string()))??);
    }
    let subscribed = match config.workload {
        Workload::Publish { subscribers } => {
            let channel = publish_channel(config.seed);
            Some(Subscribed::connect(config, subscribers, &channel).await?)
        }
        _ => None,
    };

    let start = Instant::now();
    let shared = Arc::new(Shared {
        recorder: Mutex::new(Recorder::default()),
        completed: AtomicU64::new(0),
        replies: AtomicU64::new(0),
        tickets: AtomicU64::new(match config.stop {
            Stop::Requests(n) => n,
            Stop::After(_) => 0,
        }),
        stop: config.stop,
        start,
        measure_start: start + config.warmup,
        last_reply_ns: AtomicU64::new(0),
        receivers: AtomicU64::new(0),
    });
    // Reading before the first PUBLISH leaves.
    let subscribers = subscribed.map(|subscribed| subscribed.start(shared.measure_start));
    let mut load = JoinSet::new();
    let count = clients.len();
    for (index, (conn, generator)) in clients.into_iter().enumerate() {
        let shared = shared.clone();
        let pipeline = config.pipeline;
        let schedule = config.rate.map(|rate| Schedule::new(rate, count, index));
        load.spawn(async move {
            match schedule {
                None => closed_loop(conn, generator, &shared, pipeline).await,
                Some(schedule) => open_loop(conn, generator, &shared, pipeline, schedule).await,
            }
        });
    }
    let progress = progress.then(|| tokio::spawn(show_progress(shared.clone(), config.stop)));
    let mut outcome = Ok(());
    while let Some(joined) = load.join_next().await {
        let result = joined
            .map_err(|e| BenchError::Task(e.to_string()))
            .and_then(|result| result);
        if let Err(error) = result {
            load.abort_all();
            outcome = Err(error);
            break;
        }
    }
    if let Some(progress) = progress {
        progress.abort();
        eprint!("\r\x1b[K");
    }
    outcome?;

    let elapsed = Duration::from_nanos(shared.last_reply_ns.load(Ordering::Relaxed));
    let info = RunInfo {
        workload: config.workload.name(),
        target: config.addr.clone(),
        clients: config.clients,
        pipeline: config.pipeline,
        rate: config.rate,
        value_size: config.value_size.to_string(),
        keyspace: config.keyspace,
    };
    let mut report = shared
        .recorder
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .report(info, elapsed);
    if let Some(subscribers) = subscribers {
        let (delivery, first_error) = subscribers
            .finish(shared.receivers.load(Ordering::Relaxed))
            .await;
        // A subscriber the server cut off is a failure of the run the report must show.
        report.errors += delivery.lost_subscribers;
        if report.first_error.is_none() {
            report.first_error = first_error;
        }
        report.delivery = Some(delivery);
    }
    Ok(report)
}

/// Reads the replies of requests from the frames the server sends: a request of several
/// commands answers with its last frame (EXEC's), or with the first error before it.
#[derive(Default)]
struct Replies {
    decoder: FrameDecoder,
    /// Frames of the current request read so far.
    read: usize,
    /// The first error among them.
    error: Option<Frame>,
}

impl Replies {
    /// The reply of the next request, answered with `frames` frames, if all are buffered.
    fn next(&mut self, buf: &mut BytesMut, frames: usize) -> Result<Option<Frame>, ProtocolError> {
        while let Some(frame) = self.decoder.decode(buf)? {
            self.read += 1;
            if self.read < frames {
                if self.error.is_none() && matches!(frame, Frame::Error(_)) {
                    self.error = Some(frame);
                }
                continue;
            }
            self.read = 0;
            return Ok(Some(self.error.take().unwrap_or(frame)));
        }
        Ok(None)
    }
}

/// One connection with its buffers.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) addr: Arc<str>,
    pub(crate) read: BytesMut,
    pub(crate) write: BytesMut,
    replies: Replies,
}

impl Conn {
    pub(crate) async fn connect(config: &Config) -> Result<Conn, BenchError> {
        let stream =
            TcpStream::connect(&config.addr)
                .await
                .map_err(|source| BenchError::Connect {
                    addr: config.addr.clone(),
                    source,
                })?;
        // Batches are written whole; Nagle's algorithm would only hold them back.
        stream.set_nodelay(true).map_err(|source| BenchError::Io {
            addr: config.addr.clone(),
            source,
        })?;
        Ok(Conn {
            stream,
            addr: config.addr.as_str().into(),
            read: BytesMut::with_capacity(64 * 1024),
            write: BytesMut::with_capacity(64 * 1024),
            replies: Replies::default(),
        })
    }

    fn io_error(&self, source: std::io::Error) -> BenchError {
        BenchError::Io {
            addr: self.addr.to_string(),
            source,
        }
    }

    /// Writes the whole write buffer.
    pub(crate) async fn flush(&mut self) -> Result<(), BenchError> {
        let result = self.stream.write_all(&self.write).await;
        self.write.clear();
        result.map_err(|e| self.io_error(e))
    }

    /// The reply to the next request, of kind `op`, if already buffered whole.
    fn decode(&mut self, op: Op) -> Result<Option<Frame>, BenchError> {
        self.replies
            .next(&mut self.read, op.frames())
            .map_err(|source| BenchError::Protocol {
                addr: self.addr.to_string(),
                source,
            })
    }

    /// Reads more bytes.
    async fn fill(&mut self) -> Result<(), BenchError> {
        match self.stream.read_buf(&mut self.read).await {
            Ok(0) => Err(BenchError::Closed {
                addr: self.addr.to_string(),
            }),
            Ok(_) => Ok(()),
            Err(e) => Err(self.io_error(e)),
        }
    }

    /// The next reply to a one-command request, reading as needed.
    pub(crate) async fn reply(&mut self) -> Result<Frame, BenchError> {
        loop {
            if let Some(frame) = self.decode(Op::Get)? {
                return Ok(frame);
            }
            self.fill().await?;
        }
    }

    /// AUTH, then what the workload needs before measuring: the keys of get and mixed (this
    /// connection's share), the sessions of session-browse, evalsha's script (loaded by the
    /// first connection).
    async fn prepare(
        &mut self,
        config: &Config,
        client: usize,
        generator: &mut Generator,
    ) -> Result<(), BenchError> {
        self.auth(config).await?;
        if config.workload == Workload::EvalSha && client == 0 {
            self.load_script().await?;
        }
        let clients = config.clients as u64;
        let client = client as u64;
        if config.workload.reads_keys() && config.prefill {
            // Keys client, client + clients, client + 2 clients, ...
            let mut key = client;
            while key < config.keyspace {
                let mut batch = 0;
                while batch < SETUP_BATCH && key < config.keyspace {
                    generator.set_key(key, &mut self.write);
                    key += clients;
                    batch += 1;
                }
                self.setup_batch(generator, Op::Set, batch).await?;
            }
        }
        if let Workload::SessionBrowse(_) = config.workload {
            let mut left = config.keyspace.div_ceil(clients);
            while left > 0 {
                let batch = left.min(SETUP_BATCH);
                for _ in 0..batch {
                    generator.create_session(&mut self.write);
                }
                self.setup_batch(generator, Op::SessionCreate, batch)
                    .await?;
                left -= batch;
            }
        }
        Ok(())
    }

    /// AUTH with the run's password, if it has one.
    pub(crate) async fn auth(&mut self, config: &Config) -> Result<(), BenchError> {
        if let Some(password) = &config.password {
            ClientCodec::encode_command(&[&b"AUTH"[..], password.as_bytes()], &mut self.write);
            self.flush().await?;
            if let Frame::Error(message) = self.reply().await? {
                return Err(BenchError::Auth {
                    addr: self.addr.to_string(),
                    message: String::from_utf8_lossy(&message).into_owned(),
                });
            }
        }
        Ok(())
    }

    /// SCRIPT LOAD of phpredis's lock release; the server must answer phpredis's SHA1.
    async fn load_script(&mut self) -> Result<(), BenchError> {
        ClientCodec::encode_command(
            &[&b"SCRIPT"[..], b"LOAD", LOCK_RELEASE_SCRIPT.as_bytes()],
            &mut self.write,
        );
        self.flush().await?;
        let message = match self.reply().await? {
            Frame::Bulk(sha) if sha == LOCK_RELEASE_SHA.as_bytes() => return Ok(()),
            Frame::Error(message) => String::from_utf8_lossy(&message).into_owned(),
            other => format!("SCRIPT LOAD answered {other:?}, not {LOCK_RELEASE_SHA}"),
        };
        Err(BenchError::Setup {
            addr: self.addr.to_string(),
            message,
        })
    }

    async fn setup_batch(
        &mut self,
        generator: &mut Generator,
        op: Op,
        commands: u64,
    ) -> Result<(), BenchError> {
        self.flush().await?;
        for _ in 0..commands {
            let reply = self.reply().await?;
            if let Outcome::Error(message) = generator.on_reply(op, reply) {
                return Err(BenchError::Setup {
                    addr: self.addr.to_string(),
                    message,
                });
            }
        }
        Ok(())
    }
}

/// The closed loop: a batch of `pipeline` commands, then all their replies, again.
async fn closed_loop(
    mut conn: Conn,
    mut generator: Generator,
    shared: &Shared,
    pipeline: usize,
) -> Result<(), BenchError> {
    let mut samples = Samples::default();
    let mut ops = Vec::with_capacity(pipeline);
    loop {
        let now = Instant::now();
        let measured = now >= shared.measure_start;
        let batch = if measured {
            shared.claim(pipeline as u64, now) as usize
        } else {
            pipeline
        };
        if batch == 0 {
            break;
        }
        ops.clear();
        for _ in 0..batch {
            ops.push(generator.next_command(&mut conn.write));
        }
        let sent = Instant::now();
        conn.flush().await?;
        let mut received = 0;
        loop {
            let arrived = Instant::now();
            while received < batch {
                let op = ops[received];
                let Some(frame) = conn.decode(op)? else { break };
                let outcome = generator.on_reply(op, frame);
                if measured && samples.record(op, arrived - sent, outcome) {
                    shared.absorb(&mut samples);
                }
                received += 1;
            }
            if received == batch {
                break;
            }
            conn.fill().await?;
        }
        shared.replies.fetch_add(batch as u64, Ordering::Relaxed);
        if measured {
            shared.completed(batch as u64, Instant::now());
        }
    }
    shared.absorb(&mut samples);
    shared
        .receivers
        .fetch_add(generator.receivers(), Ordering::Relaxed);
    Ok(())
}

/// When a connection's requests are due in an open-loop run.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// Between two requests of this connection.
    interval_ns: f64,
    /// This connection's first request, after the run's start (connections are spread
    /// evenly over one interval, so their requests do not all leave together).
    offset_ns: f64,
}

impl Schedule {
    fn new(rate: f64, clients: usize, index: usize) -> Schedule {
        let interval_ns = 1e9 * clients as f64 / rate;
        Schedule {
            interval_ns,
            offset_ns: interval_ns * index as f64 / clients as f64,
        }
    }

    /// The intended send time of request `k`.
    fn due(&self, start: Instant, k: u64) -> Instant {
        start + Duration::from_nanos((self.offset_ns + self.interval_ns * k as f64) as u64)
    }
}

/// The open loop: requests leave at their scheduled times (at most `pipeline` outstanding),
/// replies are read as they come, latency is from the intended send time.
async fn open_loop(
    mut conn: Conn,
    mut generator: Generator,
    shared: &Shared,
    pipeline: usize,
    schedule: Schedule,
) -> Result<(), BenchError> {
    let mut samples = Samples::default();
    // (kind, intended send time, measured) of each request sent or queued, oldest first.
    let mut in_flight: VecDeque<(Op, Instant, bool)> = VecDeque::with_capacity(pipeline);
    let mut next = 0u64;
    let mut stopping = false;
    let addr = conn.addr.clone();
    let (mut reader, mut writer) = conn.stream.split();
    loop {
        let now = Instant::now();
        while !stopping && in_flight.len() < pipeline {
            let due = schedule.due(shared.start, next);
            if due > now {
                break;
            }
            let measured = due >= shared.measure_start;
            // Judged by the clock, not by `due`: a run ends when its measured time is over,
            // however far behind schedule the server has pushed it.
            if measured && shared.claim(1, now) == 0 {
                stopping = true;
                break;
            }
            in_flight.push_back((generator.next_command(&mut conn.write), due, measured));
            next += 1;
        }
        if stopping && in_flight.is_empty() && conn.write.is_empty() {
            break;
        }
        let can_send = !stopping && in_flight.len() < pipeline;
        let due = schedule.due(shared.start, next);
        tokio::select! {
            read = reader.read_buf(&mut conn.read) => {
                match read {
                    Ok(0) => return Err(BenchError::Closed { addr: addr.to_string() }),
                    Ok(_) => {}
                    Err(source) => return Err(BenchError::Io { addr: addr.to_string(), source }),
                }
                let arrived = Instant::now();
                let mut replies = 0;
                let mut all_replies = 0;
                loop {
                    let frames = in_flight.front().map_or(1, |(op, ..)| op.frames());
                    let next = conn.replies.next(&mut conn.read, frames);
                    let Some(frame) = next.map_err(|source| BenchError::Protocol {
                        addr: addr.to_string(),
                        source,
                    })?
                    else {
                        break;
                    };
                    let Some((op, intended, measured)) = in_flight.pop_front() else {
                        return Err(BenchError::UnexpectedReply { addr: addr.to_string() });
                    };
                    let outcome = generator.on_reply(op, frame);
                    all_replies += 1;
                    if measured {
                        replies += 1;
                        if samples.record(op, arrived.saturating_duration_since(intended), outcome) {
                            shared.absorb(&mut samples);
                        }
                    }
                }
                shared.replies.fetch_add(all_replies, Ordering::Relaxed);
                if replies > 0 {
                    shared.completed(replies, arrived);
                }
            }
            written = writer.write_buf(&mut conn.write), if conn.write.has_remaining() => {
                if let Err(source) = written {
                    return Err(BenchError::Io { addr: addr.to_string(), source });
                }
                if !conn.write.has_remaining() {
                    conn.write.clear();
                }
            }
            () = tokio::time::sleep_until(due.into()), if can_send => {}
        }
    }
    shared.absorb(&mut samples);
    shared
        .receivers
        .fetch_add(generator.receivers(), Ordering::Relaxed);
    Ok(())
}

/// Redraws `elapsed  requests  current rate` on stderr until aborted.
async fn show_progress(shared: Arc<Shared>, stop: Stop) {
    let mut ticker = tokio::time::interval(PROGRESS_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last = (Instant::now(), 0u64);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let done = shared.completed.load(Ordering::Relaxed);
        let replies = shared.replies.load(Ordering::Relaxed);
        let rate = (replies - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
        last = (now, replies);
        let line = if now < shared.measure_start {
            format!(
                "warming up: {:.1} s left  {rate:.0} requests/s now",
                (shared.measure_start - now).as_secs_f64()
            )
        } else {
            let elapsed = (now - shared.measure_start).as_secs_f64();
            let goal = match stop {
                Stop::After(duration) => format!("{elapsed:.1}/{:.1} s", duration.as_secs_f64()),
                Stop::Requests(n) => format!("{elapsed:.1} s, {done}/{n} requests"),
            };
            format!("{goal}  {rate:.0} requests/s now")
        };
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[K{line}");
        let _ = stderr.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reply `Replies` hands out when `wire` arrives cut at `cut`, for requests of
    /// `frames` frames each.
    fn replies(wire: &[u8], cut: usize, frames: usize) -> Vec<Frame> {
        let mut replies = Replies::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for part in [&wire[..cut], &wire[cut..]] {
            buf.extend_from_slice(part);
            while let Some(frame) = replies.next(&mut buf, frames).unwrap() {
                out.push(frame);
            }
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn a_transaction_is_answered_by_exec_or_by_its_first_error() {
        let done = b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:1\r\n";
        let aborted = b"+OK\r\n-ERR bad\r\n+QUEUED\r\n-EXECABORT Transaction discarded\r\n";
        let wire = [&done[..], &aborted[..], &done[..]].concat();
        for cut in 0..=wire.len() {
            assert_eq!(
                replies(&wire, cut, 4),
                [
                    Frame::Array(vec![Frame::ok(), Frame::Integer(1)]),
                    Frame::error("ERR bad"),
                    Frame::Array(vec![Frame::ok(), Frame::Integer(1)]),
                ],
                "cut at {cut}"
            );
        }
        // One frame per request otherwise.
        assert_eq!(
            replies(b"+OK\r\n:0\r\n", 3, 1),
            [Frame::ok(), Frame::Integer(0)]
        );
    }
}
