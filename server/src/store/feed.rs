//! The change feed: every change to the keyspace, as one ordered byte stream of framed
//! [`Record`]s with a byte offset (replication's `master_repl_offset`), for the append-only log
//! and for replicas.
//!
//! **Where changes come from.** The snapshot journal's hook points (`after_write`, the
//! removals, flushes, SWAPDB) are where every change already passes, under the key's shard
//! lock; the feed hooks the same points. While it is off (no log, no replica) a mutation pays
//! one relaxed load and a branch. While it is on, each change is encoded at once (postcard, as
//! snapshots) into a frame in the thread's outbox (one buffer, no allocation per frame), given
//! its offset by one global atomic addition and queued on a lock-free channel — all under the
//! shard lock, so the offsets of one key's changes are in the
//! order of the changes. A connection running pipelined commands back to back holds its frames
//! in its thread's outbox and sends them as one run when it stops ([`Feed::hold`]). One pump
//! thread puts the runs back in offset order (those of different threads may reach the channel
//! out of order) and publishes the contiguous stream: to
//! the backlog (the last `repl-backlog-size` bytes, for partial resyncs, kept once a
//! replication link exists: [`Feed::keep_backlog`]), to the sinks (the
//! log's writer, which must not miss a byte, and takes its frames on the publishing thread:
//! [`Feed::attach_sink_with`]) and to the `published` watch. Under `appendfsync always` on a
//! single-threaded runtime, the connections publish instead of the pump
//! ([`Feed::wait_durable`]).
//!
//! **Frames.** `length u32 LE | CRC-32 of the payload u32 LE | payload`, the payload one or
//! more postcard-encoded `(database index, Record)` pairs. An operation that changes several
//! keys as one step (RENAME, MOVE, REGENERATE, EXEC, a script) is one frame ([`Feed::group`]):
//! a frame applies whole or not at all. FLUSHDB (and FLUSHALL, per database) and SWAPDB are one
//! record each, taken with every shard of the databases held so no other change falls between
//! the flush of two shards.
//!
//! **Records are assignments**, never increments: a key's whole state, fields set to values or
//! removed, members added or removed, a deadline set, a deletion. A change costs what the
//! change is, not the key: HSET of one field of a 300k-field hash is one field in the stream
//! (`Fields` reports the names a command touched while the feed is on). Sessions are small and
//! bounded and travel whole, but for their idle timer, which slides on every use: a use that
//! changes nothing else is a `SessionTouch` of the ID and the new last access (some 60 bytes).
//! Touches are not coalesced: a replica promoted later, or a restart from the log, has each
//! session's exact last access, so neither ends a session earlier (or later) than the primary
//! would have, and a restart after a clean shutdown gives back the keyspace exactly.
//!
//! **Why a log switched at T0 and a snapshot consistent at T1 >= T0 make a complete state**
//! (AOF rewrite, a replica's full sync): take `t0 = cut()` (every change given an offset before
//! has one below `t0`), then write a snapshot whose journal makes it the keyspace at the
//! journal's close T1, after `t0` was taken. Replay the snapshot, then every frame from `t0`.
//! For one key, the frames at or after `t0` are its changes after T0 in order; those that
//! happened before T1 are already in the snapshot. Replaying an assignment over a state that
//! already contains it, and then every later assignment in order, ends in the same state as
//! applying the later ones alone: a key's whole state or deletion overwrites everything; a
//! field (member, deadline) assignment overwrites that field, and every field an earlier
//! change touched is touched again by replay in the original order, so each field ends with its
//! last assignment and untouched fields keep the snapshot's value, which no change after T0
//! altered. A change that saw the feed off (it started before `enable`) cannot be missing
//! either: the snapshot's journal waits at its start for every mutation in flight, so such a
//! change is in the shards before the writer reads them.
//!
//! **The snapshot need not be consistent** when the stream from `t0` is complete (an AOF
//! rewrite, on a primary, of a log that misses nothing): take each key as its shard was read
//! at `Tk >= T0`.
//! The argument above is per key, so it holds with `Tk` for `T1`, and replaying every frame
//! from `t0` brings each key to its last state. A frame of several keys (RENAME) may be in the
//! snapshot for one key and not the other; replay sets both. What the per-key argument needs
//! from the disk is the frames up to the end of the walk: a crash that lost one of those could
//! leave a key as the snapshot read it, ahead of a key the frame also changed. So such a base
//! is named only once the log is fsynced through the walk's end. (A replica applies a frame
//! before it numbers it, so its walk could see a change numbered past that end: its rewrites
//! take the journaled snapshot.)
//!
//! SWAPDB is the one change that is not an assignment (replayed twice, it swaps back): a
//! snapshot for a switch must be abandoned when a SWAPDB ran between the cut and the
//! journal's close ([`Feed::swaps`] tells), as a save is. For
//! that the count is read with the cut, between two frames a replica applies
//! ([`Feed::cut_after`]), and a swap counts only once its frame has its offset: a swap is
//! then either below the cut and counted, or counted after the read.
//!
//! **Durability** is the log writer's: it reports what is on disk with [`Feed::mark_durable`],
//! and a connection under `appendfsync always` awaits [`Feed::wait_durable`] for the end offset
//! read after its writes, before it sends their replies (group commit: one fsync covers every
//! connection's writes that arrived together). On a single-threaded runtime the waiting
//! connection publishes them itself, so the writer writes and fsyncs on the connections' thread
//! once per turn of its runtime, as Redis does before its event loop sleeps; on several threads
//! the pump does, and a fsync holds up only the connections waiting for it.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::{mpsc, watch};

use super::entry::varint_len;
use super::record::Record;

/// Bytes of a frame's header: length and CRC.
pub const FRAME_HEADER: usize = 8;
/// The largest frame payload: an operation whose records encode to more is split into frames
/// of at most this (its atomicity is then lost, not its effect).
pub const MAX_FRAME: usize = 1 << 30;
/// The backlog's default size (Redis's `repl-backlog-size`).
pub const DEFAULT_BACKLOG_BYTES: u64 = 1 << 20;

/// A run of frames with its place, on its way to the pump.
type Queued = (Stamp, Run);

/// Where a frame or a run sits: its offset in the stream of `epoch`. Each [`Feed::reset`]
/// starts a new epoch, so that a run numbered in the old stream (a connection's held frames,
/// sent after the reset) is never taken into the new one, even at an offset it has there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    offset: u64,
    epoch: u64,
}

/// Frames on their way to the pump.
#[derive(Debug)]
enum Run {
    /// This server's: their checksums are the pump's to fill in (off the connection's thread).
    Fresh(BytesMut),
    /// Received whole from elsewhere (a primary's stream).
    Whole(Bytes),
}

impl Run {
    /// The frames, checksummed.
    fn into_frames(self) -> Bytes {
        match self {
            Run::Fresh(mut frames) => {
                checksum_frames(&mut frames);
                frames.freeze()
            }
            Run::Whole(frames) => frames,
        }
    }
}

/// The change feed shared by every database of a server (see the module documentation).
#[derive(Debug)]
pub struct Feed {
    on: AtomicBool,
    /// The offset the next frame gets: everything queued so far lies below it.
    next: AtomicU64,
    /// The stream's epoch ([`Stamp`]): bumped by each [`Feed::reset`].
    epoch: AtomicU64,
    /// Read side: a frame received from elsewhere is being applied and then numbered
    /// ([`Feed::applying`]); write side: a cut that must fall between two such frames
    /// ([`Feed::cut_after`]).
    applying: std::sync::RwLock<()>,
    /// SWAPDBs counted for a switch point ([`Feed::swaps`]).
    swaps: AtomicU64,
    tx: mpsc::UnboundedSender<Queued>,
    /// The channel's other end, taken by whichever thread publishes: the pump, or a connection
    /// committing its writes inline ([`Feed::wait_durable`]). One publishes at a time.
    inbox: Mutex<Inbox>,
    /// Whether the pump's thread was started (by the first [`Feed::enable`]).
    pumping: AtomicBool,
    state: Mutex<State>,
    /// The end of the contiguous stream published so far.
    published: watch::Sender<u64>,
    /// What the log writer reports as on disk.
    durable: watch::Sender<Durable>,
    /// Users of the feed ([`Feed::enable`] / [`Feed::disable`] pairs): on while any.
    users: Mutex<u32>,
    /// The pump's thread, to wake it from its gathering pause ([`GATHER`]).
    pump_thread: std::sync::OnceLock<std::thread::Thread>,
    /// Connections awaiting durability from the pump now: while any, it does not pause.
    urgent: std::sync::atomic::AtomicUsize,
    /// Bumped by each inline commit: while it moves, the pump leaves the writes to them.
    inline_commits: AtomicU64,
    /// The inline commits' moving average duration, in microseconds (see [`INLINE_SLOW`]).
    inline_average_us: AtomicU64,
    /// Microseconds after `created` until which nobody commits inline: they took too long.
    inline_paused_until: AtomicU64,
    created: Instant,
}

/// The channel's receiving end and the runs taken off it, to publish.
#[derive(Debug)]
struct Inbox {
    rx: mpsc::UnboundedReceiver<Queued>,
    batch: Vec<(Stamp, Bytes)>,
}

/// Inline commits that take longer than this on average (a slow disk's fsyncs; the average
/// moves an eighth of the way to each commit's time, so one stall over 16 ms is enough, a
/// few of 5 ms among fast ones are not) turn inline commits off for [`INLINE_PAUSE`]: meanwhile
/// the pump writes, and a slow fsync holds up only the connections that wait for it, not
/// every connection of the thread.
const INLINE_SLOW: Duration = Duration::from_millis(2);
const INLINE_PAUSE: Duration = Duration::from_secs(1);

/// How long the pump gathers frames after publishing some, unless a connection awaits
/// durability (`appendfsync always`): woken per frame, it cost a context switch per write
/// (−30% of unpipelined SET throughput with the log on, on two cores); pausing makes it
/// publish, and the log write, once per gathering, as Redis writes its log once per event-loop
/// turn. A replica or the log gets a change at most this much later.
const GATHER: Duration = Duration::from_millis(1);

/// What is on disk, as the log writer reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durable {
    /// Every frame below this offset is on disk.
    pub offset: u64,
    /// The log cannot write: waiters give up.
    pub failed: bool,
}

/// The pump's side: the stream published so far.
#[derive(Debug)]
struct State {
    /// End of the contiguous stream.
    end: u64,
    /// Frames that arrived ahead of a gap.
    pending: BTreeMap<u64, Bytes>,
    /// The last frames, oldest first, in runs of whole frames with their offsets.
    backlog: VecDeque<(u64, Bytes)>,
    backlog_bytes: u64,
    backlog_limit: u64,
    /// Whether the backlog keeps frames: from the first replication link on
    /// ([`Feed::keep_backlog`]); the log alone needs none, and frames kept for nobody would
    /// only cost memory and cache.
    backlog_on: bool,
    sinks: Vec<Arc<Sink>>,
}

/// The offset asked for is not in the backlog (fell out, or is ahead of the stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("offset {offset} is not in the backlog ({first}..={end})")]
pub struct Gone {
    /// The offset asked for.
    pub offset: u64,
    /// The backlog's first offset.
    pub first: u64,
    /// The stream's end.
    pub end: u64,
}

/// A consumer that must see every byte from the offset it attached at (the append-only log's
/// writer): unbounded, unlike the backlog.
#[derive(Debug)]
pub struct Sink {
    state: Mutex<SinkState>,
    ready: Condvar,
    /// Called by the publishing thread (the pump, or a connection committing inline) right
    /// after it publishes to this sink, outside the stream's lock but under the inbox's, so
    /// that the consumer takes the frames there instead of being woken on its own thread.
    on_publish: Option<OnPublish>,
}

/// A sink's [`Sink::on_publish`] call.
struct OnPublish(Box<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for OnPublish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnPublish")
    }
}

#[derive(Debug, Default)]
struct SinkState {
    /// Offset of the first byte of `chunks`.
    start: u64,
    chunks: Vec<Bytes>,
    bytes: u64,
    /// A [`Sink::wake`] not yet seen by a take.
    woken: bool,
}

impl Sink {
    /// Waits up to `timeout` for data; returns the offset of the first byte and the frames
    /// published since the last take (empty after the timeout).
    pub fn take(&self, timeout: Duration) -> (u64, Vec<Bytes>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.chunks.is_empty() && !state.woken && !timeout.is_zero() {
            state = self
                .ready
                .wait_timeout_while(state, timeout, |s| s.chunks.is_empty() && !s.woken)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        state.woken = false;
        let start = state.start;
        state.start += state.bytes;
        state.bytes = 0;
        (start, std::mem::take(&mut state.chunks))
    }

    /// Bytes published and not taken yet (INFO's `aof_buffer_length`).
    pub fn pending_bytes(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }

    /// Makes the [`Sink::take`] waiting now, or the next, return at once.
    pub fn wake(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).woken = true;
        self.ready.notify_all();
    }
}

impl Default for Feed {
    fn default() -> Self {
        Feed::new(DEFAULT_BACKLOG_BYTES)
    }
}

impl Feed {
    /// An idle feed whose backlog keeps the last `backlog_bytes` bytes.
    pub fn new(backlog_bytes: u64) -> Feed {
        let (tx, rx) = mpsc::unbounded_channel();
        Feed {
            on: AtomicBool::new(false),
            next: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            applying: std::sync::RwLock::new(()),
            swaps: AtomicU64::new(0),
            tx,
            inbox: Mutex::new(Inbox {
                rx,
                batch: Vec::new(),
            }),
            pumping: AtomicBool::new(false),
            state: Mutex::new(State {
                end: 0,
                pending: BTreeMap::new(),
                backlog: VecDeque::new(),
                backlog_bytes: 0,
                backlog_limit: backlog_bytes,
                backlog_on: false,
                sinks: Vec::new(),
            }),
            published: watch::Sender::new(0),
            durable: watch::Sender::new(Durable::default()),
            users: Mutex::new(0),
            pump_thread: std::sync::OnceLock::new(),
            urgent: std::sync::atomic::AtomicUsize::new(0),
            inline_commits: AtomicU64::new(0),
            inline_average_us: AtomicU64::new(0),
            inline_paused_until: AtomicU64::new(0),
            created: Instant::now(),
        }
    }

    /// Whether changes are recorded: one relaxed load, the whole cost of an idle feed.
    #[inline]
    pub fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Starts recording (one more user: the log, replication); starts the pump on first use.
    /// A change that saw the feed off has no frame: see the module documentation for why a
    /// snapshot started after this covers it.
    pub fn enable(self: &Arc<Self>) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        *users += 1;
        if !self.pumping.load(Ordering::SeqCst) {
            let feed = Arc::downgrade(self);
            let spawned = std::thread::Builder::new()
                .name("sessiond-feed".to_owned())
                .spawn(move || pump(feed));
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start the change feed's thread");
                *users -= 1;
                return;
            }
            self.pumping.store(true, Ordering::SeqCst);
        }
        self.on.store(true, Ordering::SeqCst);
    }

    /// One user fewer; recording stops when none is left.
    pub fn disable(&self) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        *users = users.saturating_sub(1);
        if *users == 0 {
            self.on.store(false, Ordering::SeqCst);
        }
    }

    /// The end of the stream: the offset the next frame will get. Every frame queued before
    /// the call lies below it.
    pub fn end_offset(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }

    /// The switch point for a new log or a full sync: every change recorded before this call
    /// has an offset below the result, every later one at or above it (the result is always
    /// a frame boundary: offsets are given a whole frame at a time).
    pub fn cut(&self) -> u64 {
        self.end_offset()
    }

    /// [`Feed::cut`], with `read` of the keyspace's state before it, both between two frames
    /// a replica applies ([`Feed::applying`]): a frame is then either applied and below the
    /// cut, or applied after `read`. (A log rewrite reads the SWAPDB count so: a replica
    /// numbers a frame after applying it, and a swap applied before the count was read but
    /// numbered after the cut would be in both the base and the new log.)
    pub fn cut_after<R>(&self, read: impl FnOnce() -> R) -> (R, u64) {
        let _between = self.applying.write().unwrap_or_else(|p| p.into_inner());
        let read = read();
        (read, self.cut())
    }

    /// SWAPDBs so far, each counted once its frame has its offset (or once applied, when it
    /// has none: the feed off, or a frame received from elsewhere, numbered under
    /// [`Feed::applying`]). Read in [`Feed::cut_after`], a count that includes a swap puts the
    /// swap's frame below the cut: the base a switch point starts from shows the swap exactly
    /// when the stream after it does not carry it.
    pub fn swaps(&self) -> u64 {
        self.swaps.load(Ordering::Acquire)
    }

    /// Counts a SWAPDB just applied ([`Feed::swaps`]), after its frame was pushed: now, or,
    /// in an open group (an EXEC's, a script's), once the group's frame is numbered. Counted
    /// at once there, a swap would be in the count read at a cut that falls before its frame,
    /// and so in both a snapshot after the cut and the stream after it.
    pub fn count_swap(&self) {
        let deferred = GROUP.with(|group| {
            let mut group = group.borrow_mut();
            let grouped = group.depth > 0 && !group.suppressed;
            if grouped {
                group.swaps += 1;
            }
            grouped
        });
        if !deferred {
            self.swaps.fetch_add(1, Ordering::Release);
        }
    }

    /// Held while a frame received from elsewhere is applied and then numbered
    /// ([`Feed::append_verbatim`]), so that no [`Feed::cut_after`] falls in between.
    pub fn applying(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.applying.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The end of the stream published so far (backlog, sinks), as a watch: the "new data"
    /// signal.
    pub fn published(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Sets the backlog's size (`repl-backlog-size`); the oldest frames go at once if over.
    pub fn set_backlog_size(&self, bytes: u64) {
        let mut state = self.state();
        state.backlog_limit = bytes;
        state.trim();
    }

    /// Starts keeping the backlog (replication, once a link exists: as Redis creates its
    /// backlog when the first replica connects, or when it becomes a replica).
    pub fn keep_backlog(&self) {
        self.state().backlog_on = true;
    }

    /// The backlog's size (`repl-backlog-size`).
    pub fn backlog_size(&self) -> u64 {
        self.state().backlog_limit
    }

    /// The backlog's first offset and how many bytes it holds
    /// (`repl_backlog_first_byte_offset`, `repl_backlog_histlen`).
    pub fn backlog_range(&self) -> (u64, u64) {
        let state = self.state();
        (state.end - state.backlog_bytes, state.backlog_bytes)
    }

    /// Whether the backlog holds `offset` as the start of a frame, or it is the end: where a
    /// replica holding the stream up to `offset` may resume (one inside a frame would apply
    /// half a frame).
    pub fn starts_frame(&self, offset: u64) -> bool {
        let state = self.state();
        if offset == state.end {
            return true;
        }
        if offset < state.end - state.backlog_bytes || offset > state.end {
            return false;
        }
        // An entry is a run of whole frames: the one that holds `offset` is walked.
        let at = match state.backlog.binary_search_by_key(&offset, |(o, _)| *o) {
            Ok(_) => return true,
            Err(at) => at.saturating_sub(1),
        };
        let Some((start, run)) = state.backlog.get(at) else {
            return false;
        };
        let mut rest: &[u8] = run;
        let mut position = *start;
        while position < offset {
            let Some(len) = rest.get(..4).and_then(|b| <[u8; 4]>::try_from(b).ok()) else {
                return false;
            };
            let step = FRAME_HEADER + u32::from_le_bytes(len) as usize;
            let Some(next) = rest.get(step..) else {
                return false;
            };
            rest = next;
            position += step as u64;
        }
        position == offset
    }

    /// The published stream from `offset` on, at most about `max_bytes` (whole frames but the
    /// first, which may start mid-frame); empty when `offset` is the end. [`Gone`] when
    /// `offset` fell out of the backlog or is beyond the end.
    pub fn read_from(&self, offset: u64, max_bytes: usize) -> Result<Vec<Bytes>, Gone> {
        let state = self.state();
        let first = state.end - state.backlog_bytes;
        if offset < first || offset > state.end {
            return Err(Gone {
                offset,
                first,
                end: state.end,
            });
        }
        let mut out = Vec::new();
        let at = match state.backlog.binary_search_by_key(&offset, |(o, _)| *o) {
            Ok(at) => at,
            // Inside the frame before (`offset` >= `first`, so there is one).
            Err(at) => at.saturating_sub(1),
        };
        let mut taken = 0;
        for (start, frame) in state.backlog.iter().skip(at) {
            let skip = usize::try_from(offset.saturating_sub(*start)).unwrap_or(usize::MAX);
            let part = frame.slice(skip.min(frame.len())..);
            if part.is_empty() {
                continue;
            }
            taken += part.len();
            out.push(part);
            if taken >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Attaches a sink: it receives every byte published from the returned offset on.
    pub fn attach_sink(&self) -> (Arc<Sink>, u64) {
        self.attach(None)
    }

    /// [`Feed::attach_sink`], with `on_publish` called on the publishing thread after each
    /// publication (the log's writer takes its frames there: one thread hop fewer between a
    /// write and its fsync). Calls never overlap (they run under the inbox's lock); one must
    /// not wait long, nor wait for anything to be published: nothing is meanwhile.
    pub fn attach_sink_with(
        &self,
        on_publish: impl Fn() + Send + Sync + 'static,
    ) -> (Arc<Sink>, u64) {
        self.attach(Some(OnPublish(Box::new(on_publish))))
    }

    fn attach(&self, on_publish: Option<OnPublish>) -> (Arc<Sink>, u64) {
        let mut state = self.state();
        let sink = Arc::new(Sink {
            state: Mutex::new(SinkState {
                start: state.end,
                ..SinkState::default()
            }),
            ready: Condvar::new(),
            on_publish,
        });
        state.sinks.push(Arc::clone(&sink));
        (sink, state.end)
    }

    /// Detaches `sink`.
    pub fn detach_sink(&self, sink: &Arc<Sink>) {
        self.state().sinks.retain(|s| !Arc::ptr_eq(s, sink));
    }

    /// Waits until the frames published reach `offset` (tests, and a log writer's shutdown).
    pub async fn wait_published(&self, offset: u64) {
        let mut rx = self.published.subscribe();
        let _ = rx.wait_for(|end| *end >= offset).await;
    }

    /// The log writer reports every frame below `offset` on disk.
    pub fn mark_durable(&self, offset: u64) {
        self.durable.send_if_modified(|d| {
            let moved = offset > d.offset || d.failed;
            d.offset = d.offset.max(offset);
            d.failed = false;
            moved
        });
    }

    /// Sets what is on disk to `offset` exactly, failure cleared (a log starting, or stopping:
    /// `u64::MAX` lets every waiter go).
    pub fn set_durable(&self, offset: u64) {
        self.durable.send_replace(Durable {
            offset,
            failed: false,
        });
    }

    /// The log writer reports it cannot write (`failed`), or that it recovered.
    pub fn mark_failed(&self, failed: bool) {
        self.durable.send_if_modified(|d| {
            let changed = d.failed != failed;
            d.failed = failed;
            changed
        });
    }

    /// What is on disk now.
    pub fn durable(&self) -> Durable {
        *self.durable.borrow()
    }

    /// Waits until every frame below `offset` is on disk; false if the log failed meanwhile.
    ///
    /// On a single-threaded runtime the caller commits inline, as Redis does before its event
    /// loop sleeps: it lets the other connections this turn of the runtime woke run first and
    /// queue their writes, then publishes everything queued on its own thread, so that the
    /// log's writer writes and fsyncs them there. Handing them to the pump's thread and being
    /// woken back cost two thread switches a commit, which on two cores shared with the
    /// clients weighed more than the fsync. What that leaves (frames from other threads, a log
    /// that cannot be written, an inline commit paused after a slow one) the pump does.
    pub async fn wait_durable(&self, offset: u64) -> bool {
        /// Counts the wait as urgent while it lasts (also when the wait is dropped).
        struct Urgent<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Urgent<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let settled = |durable: Durable| {
            (durable.offset >= offset || durable.failed).then_some(durable.offset >= offset)
        };
        if let Some(reached) = settled(self.durable()) {
            return reached;
        }
        if self.commits_inline() {
            tokio::task::yield_now().await;
            if settled(self.durable()).is_none() {
                self.commit_inline();
            }
            if let Some(reached) = settled(self.durable()) {
                return reached;
            }
        }
        self.urgent.fetch_add(1, Ordering::SeqCst);
        let _urgent = Urgent(&self.urgent);
        if let Some(pump) = self.pump_thread.get() {
            pump.unpark();
        }
        let mut rx = self.durable.subscribe();
        let reached = match rx.wait_for(|d| d.offset >= offset || d.failed).await {
            Ok(d) => d.offset >= offset,
            Err(_) => false,
        };
        reached
    }

    /// Whether a connection on this thread commits its writes inline ([`Feed::wait_durable`]):
    /// on a single-threaded runtime, unless a slow inline commit paused them.
    fn commits_inline(&self) -> bool {
        tokio::runtime::Handle::try_current().is_ok_and(|handle| {
            handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread
        }) && self.micros() >= self.inline_paused_until.load(Ordering::Relaxed)
    }

    /// Publishes what is queued, on this thread. If the pump publishes now, this waits for
    /// it (the wait counts as the commit's time).
    fn commit_inline(&self) {
        let started = Instant::now();
        // Blocking: if the pump publishes now, it takes a turn of the writer at most. Falling
        // back to the pump instead would keep it taking every write after an idle moment,
        // one thread switch each, since inline commits that find nothing do not count.
        let mut inbox = self.inbox();
        if self.drain(&mut inbox, None) {
            self.inline_commits.fetch_add(1, Ordering::SeqCst);
        }
        // Under the inbox's lock: one commit at a time moves the average.
        self.note_inline_commit(started.elapsed());
        drop(inbox);
    }

    /// Moves the inline commits' average an eighth of the way to `took`, and pauses them for
    /// [`INLINE_PAUSE`] once it passes [`INLINE_SLOW`].
    fn note_inline_commit(&self, took: Duration) {
        let took = took.as_micros() as u64;
        let average = self.inline_average_us.load(Ordering::Relaxed);
        let average = average - average / 8 + took / 8;
        if average > INLINE_SLOW.as_micros() as u64 {
            let until = self.micros() + INLINE_PAUSE.as_micros() as u64;
            self.inline_paused_until.store(until, Ordering::Relaxed);
            self.inline_average_us.store(0, Ordering::Relaxed);
        } else {
            self.inline_average_us.store(average, Ordering::Relaxed);
        }
    }

    /// Microseconds since the feed was made.
    fn micros(&self) -> u64 {
        self.created.elapsed().as_micros() as u64
    }

    /// Takes `first` and every run queued now off the channel and publishes them (the log's
    /// writer writes them on this thread: [`Feed::attach_sink_with`]); whether there were any.
    fn drain(&self, inbox: &mut Inbox, first: Option<Queued>) -> bool {
        let Inbox { rx, batch } = inbox;
        if let Some((stamp, run)) = first {
            batch.push((stamp, run.into_frames()));
        }
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok((stamp, run)) => batch.push((stamp, run.into_frames())),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            return false;
        }
        self.publish(batch);
        true
    }

    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Restarts the stream at `offset` with an empty backlog (a replica taking its primary's
    /// offsets after a full sync). Call only while nothing changes the keyspace.
    pub fn reset(&self, offset: u64) {
        let mut state = self.state();
        self.next.store(offset, Ordering::SeqCst);
        // After the new offsets, under the lock `publish` compares it under: a frame stamped
        // with the new epoch was numbered in the new stream ([`Feed::number`]).
        self.epoch.fetch_add(1, Ordering::SeqCst);
        state.end = offset;
        state.pending.clear();
        state.backlog.clear();
        state.backlog_bytes = 0;
        for sink in &state.sinks {
            let mut s = sink.state.lock().unwrap_or_else(|p| p.into_inner());
            s.start = offset;
            s.chunks.clear();
            s.bytes = 0;
        }
        drop(state);
        self.published.send_replace(offset);
        // Nothing of the new stream is on disk yet: where the old one's durability reached
        // says nothing about it (and may lie beyond `offset`).
        self.durable.send_modify(|d| d.offset = offset);
    }

    /// Appends frames received from elsewhere as they are (a replica passing its primary's
    /// stream on, offsets kept): `frames` must be whole frames.
    pub fn append_verbatim(&self, frames: Bytes) {
        if frames.is_empty() {
            return;
        }
        let stamp = self.number(frames.len());
        let _ = self.tx.send((stamp, Run::Whole(frames)));
    }

    /// Gives `len` bytes of frames their place at the end of the stream. The epoch is read
    /// first: one read before a [`Feed::reset`] marks the frame as the old stream's, whichever
    /// offset it then gets.
    fn number(&self, len: usize) -> Stamp {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let offset = self.next.fetch_add(len as u64, Ordering::SeqCst);
        Stamp { offset, epoch }
    }

    /// Opens a group: until the guard drops, the changes recorded on this thread form one frame
    /// (groups nest: the outermost one emits). Open it before taking the shard locks of the
    /// operation and drop it while they are still held, so that no other change to those keys
    /// falls between the group's records and its frame.
    pub fn group(&self) -> Group<'_> {
        if !self.on() {
            // Nothing records (a change that sees the feed turned on meanwhile is a frame of
            // its own: the snapshot that follows an `enable` covers it anyway).
            return Group {
                feed: self,
                open: false,
                _not_send: std::marker::PhantomData,
            };
        }
        GROUP.with(|group| {
            let mut group = group.borrow_mut();
            if group.depth == 0 {
                group.on = self.on();
                group.payload.clear();
                group.payload.resize(FRAME_HEADER, 0);
            }
            group.depth += 1;
        });
        Group {
            feed: self,
            open: true,
            _not_send: std::marker::PhantomData,
        }
    }

    /// Records `record` of database `db`: into this thread's open group, or as a frame of its
    /// own. Call under the key's shard lock, when [`Feed::on`].
    pub fn push(&self, db: u16, record: &Record) {
        self.push_encoded(db, record);
    }

    /// [`Feed::push`] of the string `key` = `value` (a [`Record::String`]), encoded from the
    /// borrowed bytes: the write path of SET copies nothing into a record first.
    pub fn push_string(&self, db: u16, key: &[u8], value: &[u8], expires_at_ms: u64) {
        let record = StringRef {
            key,
            value,
            expires_at_ms,
        };
        let grouped = GROUP.with(|group| {
            let group = group.borrow();
            group.suppressed || group.depth > 0
        });
        if grouped {
            return self.push_encoded(db, &record);
        }
        // A frame of its own, the usual case: encoded by hand, straight into the outbox.
        self.queue(record.encoded_len(db), |buf| {
            record.encode(db, buf);
            true
        });
    }

    fn push_encoded(&self, db: u16, record: &impl serde::Serialize) {
        let single = GROUP.with(|group| {
            let mut group = group.borrow_mut();
            if group.suppressed {
                return false;
            }
            if group.depth == 0 {
                return true;
            }
            if group.on {
                encode(&mut group.payload, db, record);
                if group.payload.len() >= MAX_FRAME {
                    let payload = std::mem::replace(&mut group.payload, new_frame(0));
                    self.emit(payload);
                }
            }
            false
        });
        if single {
            self.queue(64, |buf| {
                // Encoding fails only on serde errors a `Record` cannot produce.
                match postcard::serialize_with_flavor(&(db, record), IntoBuf(buf)) {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::error!(%error, "cannot encode a change");
                        false
                    }
                }
            });
        }
    }

    /// Queues `frame` (from [`new_frame`], a group's); nothing if it holds no change. A small
    /// one is copied into this thread's outbox, a large one goes as it is.
    fn emit(&self, mut frame: Vec<u8>) {
        if frame.len() <= FRAME_HEADER {
            return;
        }
        let payload = &frame[FRAME_HEADER..];
        if payload.len() <= OUTBOX_BLOCK / 4 {
            return self.queue(payload.len(), |buf| {
                buf.extend_from_slice(payload);
                true
            });
        }
        let stamp = seal(self, &mut frame, 0);
        // This thread's held frames end a run here: they go first.
        self.release_held();
        self.send(stamp, BytesMut::from(Bytes::from(frame)));
    }

    /// Appends a frame whose payload `write` appends (about `size` bytes; false: it could not)
    /// to this thread's outbox, gives it its offset, and sends it to the pump: at once, or with
    /// the others of this thread's open [`Feed::hold`].
    fn queue(&self, size: usize, write: impl FnOnce(&mut BytesMut) -> bool) {
        OUTBOX.with(|outbox| {
            let mut outbox = outbox.borrow_mut();
            let outbox = &mut *outbox;
            let holding = std::ptr::eq(outbox.holder, self);
            if !holding && !outbox.buf.is_empty() {
                // Another feed's frames are held on this thread (two servers on one runtime):
                // this one goes on its own.
                let mut own = BytesMut::with_capacity(FRAME_HEADER + size);
                if let Some(stamp) = frame_into(self, &mut own, 0, write) {
                    self.send(stamp, own);
                }
                return;
            }
            let start = outbox.buf.len();
            if outbox.buf.capacity() - start < FRAME_HEADER + size {
                // A new block when the frames sent still use this one (they free it as they
                // are dropped); the held frames move along.
                outbox.buf.reserve(OUTBOX_BLOCK.max(FRAME_HEADER + size));
            }
            let Some(stamp) = frame_into(self, &mut outbox.buf, start, write) else {
                return;
            };
            if !holding {
                let frame = outbox.buf.split();
                return self.send(stamp, frame);
            }
            let follows = Stamp {
                offset: outbox.held.offset + start as u64,
                epoch: outbox.held.epoch,
            };
            if start == 0 {
                outbox.held = stamp;
            } else if follows != stamp {
                // Another thread's frame came between (or a reset): the run held so far goes
                // alone.
                let run = outbox.buf.split_to(start);
                self.send(outbox.held, run);
                outbox.held = stamp;
            }
            if outbox.buf.len() >= OUTBOX_BLOCK {
                self.send_held(outbox);
            }
        });
    }

    /// Sends the frames `outbox` holds for this feed, one run of offsets from `held`.
    fn send_held(&self, outbox: &mut Outbox) {
        if !outbox.buf.is_empty() {
            let run = outbox.buf.split();
            self.send(outbox.held, run);
        }
    }

    /// Queues this server's frames (a run of offsets from `stamp`, checksums not filled in)
    /// for the pump.
    fn send(&self, stamp: Stamp, frames: BytesMut) {
        // Fails only once the pump is gone (the feed is being dropped).
        let _ = self.tx.send((stamp, Run::Fresh(frames)));
    }

    /// Sends the frames this thread holds now, its [`Feed::hold`] staying open: before
    /// anything on this thread waits for the stream to reach its end (turning the log off) or
    /// runs long (a script past its budget), so that nothing waits for frames held here.
    pub fn release_held(&self) {
        OUTBOX.with(|outbox| {
            let mut outbox = outbox.borrow_mut();
            if std::ptr::eq(outbox.holder, self) {
                self.send_held(&mut outbox);
            }
        });
    }

    /// Holds this thread's changes to the feed until the guard drops, then sends them to the
    /// pump together: a connection's pipelined commands cost the channel and the pump once,
    /// not once a frame. Offsets are still given as each change is made (its order among
    /// other keys' changes is kept); the stream published only waits for the held frames.
    /// The guard cannot cross an `.await` (it is not `Send`): a connection holds only while
    /// it runs commands back to back, never while it waits (say for durability).
    pub fn hold(&self) -> Hold<'_> {
        let held = self.on()
            && OUTBOX.with(|outbox| {
                let mut outbox = outbox.borrow_mut();
                if outbox.depth == 0 {
                    outbox.holder = self;
                } else if !std::ptr::eq(outbox.holder, self) {
                    return false;
                }
                outbox.depth += 1;
                true
            });
        Hold {
            feed: held.then_some(self),
            _not_send: std::marker::PhantomData,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes frames taken off the channel (under the inbox's lock), in offset order, as
    /// far as they are contiguous.
    /// Those of an epoch before the last [`Feed::reset`] are dropped.
    fn publish(&self, batch: &mut Vec<(Stamp, Bytes)>) {
        let mut touched = false;
        let mut guard = self.state();
        let state = &mut *guard;
        let epoch = self.epoch.load(Ordering::SeqCst);
        for (stamp, frame) in batch.drain(..) {
            if stamp.epoch != epoch {
                continue;
            }
            let offset = stamp.offset;
            if offset == state.end && state.pending.is_empty() {
                // In order, the usual case: no reordering.
                state.append(offset, frame);
                touched = true;
            } else if offset >= state.end {
                state.pending.insert(offset, frame);
            }
        }
        while let Some(entry) = state.pending.first_entry() {
            if *entry.key() > state.end {
                break;
            }
            let (offset, frame) = entry.remove_entry();
            if offset == state.end {
                state.append(offset, frame);
                touched = true;
            }
            // Below the end: a frame the stream already has (none is expected); dropped, or
            // the stream would stop at it.
        }
        if !touched {
            return;
        }
        state.trim();
        let end = state.end;
        for sink in &state.sinks {
            sink.ready.notify_all();
        }
        let called: Vec<Arc<Sink>> = state
            .sinks
            .iter()
            .filter(|s| s.on_publish.is_some())
            .cloned()
            .collect();
        drop(guard);
        // Waiters woken only when there are some (replication's senders).
        self.published.send_if_modified(|published| {
            *published = end;
            self.published.receiver_count() > 0
        });
        for sink in called {
            if let Some(OnPublish(call)) = &sink.on_publish {
                call();
            }
        }
    }
}

impl State {
    /// Appends the frame at `offset` (the end) to the backlog and the sinks.
    fn append(&mut self, offset: u64, frame: Bytes) {
        let len = frame.len() as u64;
        for sink in &self.sinks {
            let mut s = sink.state.lock().unwrap_or_else(|p| p.into_inner());
            s.chunks.push(frame.clone());
            s.bytes += len;
        }
        if self.backlog_on {
            self.backlog.push_back((offset, frame));
            self.backlog_bytes += len;
        }
        self.end += len;
    }

    fn trim(&mut self) {
        while self.backlog_bytes > self.backlog_limit {
            match self.backlog.pop_front() {
                Some((_, frame)) => self.backlog_bytes -= frame.len() as u64,
                None => break,
            }
        }
    }
}

/// The pump: takes frames off the channel in batches and publishes them in order; ends when
/// the feed is dropped. Idle, it sleeps until a run is sent; after publishing it gathers for
/// [`GATHER`] unless a connection awaits it. While connections commit inline, it leaves the
/// channel to them (unless a connection awaits the pump) instead of being woken by each of
/// their writes and taking them on its own thread; once a [`GATHER`] passes without an inline
/// commit, it takes what they left.
fn pump(feed: Weak<Feed>) {
    if let Some(feed) = feed.upgrade() {
        let _ = feed.pump_thread.set(std::thread::current());
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut inline_seen = 0;
    loop {
        let Some(feed) = feed.upgrade() else {
            return;
        };
        let inline = feed.inline_commits.load(Ordering::SeqCst);
        let inline_active = std::mem::replace(&mut inline_seen, inline) != inline;
        let urgent = feed.urgent.load(Ordering::SeqCst) != 0;
        // Connections commit inline and none waits for the pump: what they leave (a change
        // from another thread) goes with their next commit, or the pump's once they stop.
        let published = (!inline_active || urgent) && {
            let mut inbox = feed.inbox();
            let first = if inline_active {
                inbox.rx.try_recv().ok()
            } else {
                // Registers this thread to be woken by the next send.
                match inbox.rx.poll_recv(&mut cx) {
                    std::task::Poll::Ready(Some(run)) => Some(run),
                    std::task::Poll::Ready(None) => return,
                    std::task::Poll::Pending => None,
                }
            };
            feed.drain(&mut inbox, first)
        };
        let urgent = feed.urgent.load(Ordering::SeqCst) != 0;
        drop(feed);
        match (published, inline_active) {
            (true, _) if urgent => {}
            // Woken by a send or by a waiting connection; the timeout only bounds a wake lost
            // to the feed being dropped.
            (false, false) => std::thread::park_timeout(Duration::from_secs(1)),
            _ => std::thread::park_timeout(GATHER),
        }
    }
}

/// Wakes the pump's thread: the channel's waker while the pump waits for a send.
struct Unpark(std::thread::Thread);

impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// This thread's open group of changes.
#[derive(Default)]
struct GroupState {
    depth: u32,
    /// Whether the feed was on when the group opened (its records are kept).
    on: bool,
    payload: Vec<u8>,
    /// While a frame received from elsewhere is applied: nothing is recorded.
    suppressed: bool,
    /// SWAPDBs in the group, counted once its frame is numbered ([`Feed::count_swap`]).
    swaps: u64,
}

/// This thread's frames on their way to the pump, encoded into one buffer: a frame costs no
/// allocation of its own (the pump, the backlog and the log share the buffer's blocks).
/// Whatever `buf` holds is held for `holder`'s open [`Hold`]; without one it is sent at once.
struct Outbox {
    buf: bytes::BytesMut,
    /// The feed whose [`Hold`] is open on this thread (null: none), and how many are.
    holder: *const Feed,
    depth: u32,
    /// The place of the first frame held.
    held: Stamp,
}

/// The outbox's block: a run held grows to about this before it is sent anyway.
const OUTBOX_BLOCK: usize = 64 << 10;

thread_local! {
    static OUTBOX: RefCell<Outbox> = RefCell::new(Outbox {
        buf: BytesMut::new(),
        holder: std::ptr::null(),
        depth: 0,
        held: Stamp {
            offset: 0,
            epoch: 0,
        },
    });
    static GROUP: RefCell<GroupState> = RefCell::new(GroupState::default());
    /// What a session's use changed, set by the session functions for the write that follows:
    /// 0 not said (the whole session is recorded), 1 only its last access, 2 nothing.
    static SESSION_USE: Cell<u8> = const { Cell::new(0) };
}

/// What a session's use changed: the feed records a touch as its last access alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionUse {
    /// Not said: the whole session is recorded.
    Whole,
    /// Only the last access (the idle timer slid).
    Touch,
    /// Nothing.
    Nothing,
}

/// Says what the session write about to be recorded on this thread changed.
pub(crate) fn session_use(change: SessionUse) {
    let code = match change {
        SessionUse::Whole => 0,
        SessionUse::Touch => 1,
        SessionUse::Nothing => 2,
    };
    SESSION_USE.with(|c| c.set(code));
}

/// What [`session_use`] said for the session write being recorded (and forgets it).
pub(crate) fn take_session_use() -> SessionUse {
    match SESSION_USE.with(|c| c.replace(0)) {
        1 => SessionUse::Touch,
        2 => SessionUse::Nothing,
        _ => SessionUse::Whole,
    }
}

/// An open group of changes ([`Feed::group`]): they become one frame when it drops.
#[derive(Debug)]
pub struct Group<'a> {
    feed: &'a Feed,
    /// Whether it counts in this thread's depth (the feed was on when it opened).
    open: bool,
    /// Closed on the thread it opened on: its payload and swaps are that thread's.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for Group<'_> {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let closed = GROUP.with(|group| {
            let mut group = group.borrow_mut();
            group.depth = group.depth.saturating_sub(1);
            (group.depth == 0).then(|| {
                let swaps = std::mem::take(&mut group.swaps);
                (std::mem::take(&mut group.payload), swaps)
            })
        });
        if let Some((payload, swaps)) = closed {
            self.feed.emit(payload);
            if swaps > 0 {
                self.feed.swaps.fetch_add(swaps, Ordering::Release);
            }
        }
    }
}

/// A stretch of this thread's changes sent to the pump together ([`Feed::hold`]).
#[derive(Debug)]
pub struct Hold<'a> {
    /// The feed held, if this guard holds it.
    feed: Option<&'a Feed>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let Some(feed) = self.feed else {
            return;
        };
        OUTBOX.with(|outbox| {
            let mut outbox = outbox.borrow_mut();
            outbox.depth = outbox.depth.saturating_sub(1);
            if outbox.depth == 0 {
                feed.send_held(&mut outbox);
                outbox.holder = std::ptr::null();
            }
        });
    }
}

/// Runs `f` recording nothing on this thread: applying changes that came from a log or a
/// primary, which is not a change of this server's own.
pub fn without_recording<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GROUP.with(|group| group.borrow_mut().suppressed = self.0);
        }
    }
    let _restore =
        Restore(GROUP.with(|group| std::mem::replace(&mut group.borrow_mut().suppressed, true)));
    f()
}

/// Appends the encoding of `(db, record)` to `payload`.
fn encode(payload: &mut Vec<u8>, db: u16, record: &impl serde::Serialize) {
    let buf = std::mem::take(payload);
    // Encoding into a Vec fails only on serde errors a `Record` cannot produce.
    *payload = match postcard::to_extend(&(db, record), buf) {
        Ok(buf) => buf,
        Err(error) => {
            tracing::error!(%error, "cannot encode a change");
            Vec::new()
        }
    };
}

/// Fills in the length of the frame at `start` of `buf` (its payload runs to the end; the
/// checksum is the pump's: [`checksum_frames`]) and gives it its place in `feed`.
fn seal(feed: &Feed, buf: &mut [u8], start: usize) -> Stamp {
    let frame = &mut buf[start..];
    // MAX_FRAME keeps a payload far below 4 GiB.
    let payload_len = (frame.len() - FRAME_HEADER) as u32;
    frame[..4].copy_from_slice(&payload_len.to_le_bytes());
    feed.number(frame.len())
}

/// Fills in the checksum of every frame of `run` (whole frames, lengths filled in).
fn checksum_frames(run: &mut [u8]) {
    let mut rest = run;
    while let Some((header, after)) = rest.split_first_chunk_mut::<FRAME_HEADER>() {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let Some((payload, next)) = after.split_at_mut_checked(len) else {
            return;
        };
        header[4..].copy_from_slice(&checksum(payload).to_le_bytes());
        rest = next;
    }
}

/// The CRC-32 of `payload`, from a hasher made once per thread (`crc32fast::hash` detects the
/// CPU's features on every call).
fn checksum(payload: &[u8]) -> u32 {
    thread_local! {
        static PROTOTYPE: crc32fast::Hasher = crc32fast::Hasher::new();
    }
    let mut hasher = PROTOTYPE.with(crc32fast::Hasher::clone);
    hasher.update(payload);
    hasher.finalize()
}

/// Appends to `buf` (whose end is `start`) a frame whose payload `write` appends, and gives it
/// its offset; none if it holds nothing or could not be encoded (`buf` is then as it was).
fn frame_into(
    feed: &Feed,
    buf: &mut BytesMut,
    start: usize,
    write: impl FnOnce(&mut BytesMut) -> bool,
) -> Option<Stamp> {
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    if !write(buf) || buf.len() == start + FRAME_HEADER {
        buf.truncate(start);
        return None;
    }
    Some(seal(feed, buf, start))
}

/// postcard's output appended to a `BytesMut`, the bytes of a value copied at once.
struct IntoBuf<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for IntoBuf<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.extend_from_slice(&[data]);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// An empty frame: room for the header ([`Feed::emit`] fills it in; MAX_FRAME keeps a payload
/// far below 4 GiB), then `capacity` bytes for the payload.
fn new_frame(capacity: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME_HEADER + capacity);
    frame.resize(FRAME_HEADER, 0);
    frame
}

/// A [`Record::String`] over borrowed bytes, encoded exactly as the record is (postcard: the
/// variant's index, then the fields in order; `Bytes` serialize as bytes).
pub(super) struct StringRef<'a> {
    pub(super) key: &'a [u8],
    pub(super) value: &'a [u8],
    pub(super) expires_at_ms: u64,
}

impl StringRef<'_> {
    /// The bytes [`StringRef::encode`] appends: a frame of exactly its size converts into
    /// `Bytes` without another allocation.
    fn encoded_len(&self, db: u16) -> usize {
        varint_len(u64::from(db))
            + 1
            + varint_len(self.key.len() as u64)
            + self.key.len()
            + varint_len(self.value.len() as u64)
            + self.value.len()
            + varint_len(self.expires_at_ms)
    }

    /// Appends `(db, self)` as postcard encodes `(u16, Record::String { .. })`: varints for the
    /// database, the variant's index, each length and the deadline; the bytes as they are.
    /// (Serde's path copies the bytes one at a time; SET is the hot path.)
    fn encode(&self, db: u16, out: &mut impl BufMut) {
        varint(out, u64::from(db));
        self.encode_record(out);
    }

    /// Appends the record alone, as postcard encodes `Record::String { .. }`.
    pub(super) fn encode_record(&self, out: &mut impl BufMut) {
        varint(out, 0);
        varint(out, self.key.len() as u64);
        out.put_slice(self.key);
        varint(out, self.value.len() as u64);
        out.put_slice(self.value);
        varint(out, self.expires_at_ms);
    }
}

/// Appends `value` as an LEB128 varint, postcard's encoding of integers wider than a byte.
fn varint(out: &mut impl BufMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// Bytes serialized as serde bytes, as `Bytes` are.
struct BytesRef<'a>(&'a [u8]);

impl serde::Serialize for BytesRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl serde::Serialize for StringRef<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStructVariant;
        // Record::String is the enum's first variant.
        let mut variant = serializer.serialize_struct_variant("Record", 0, "String", 3)?;
        variant.serialize_field("key", &BytesRef(self.key))?;
        variant.serialize_field("value", &BytesRef(self.value))?;
        variant.serialize_field("expires_at_ms", &self.expires_at_ms)?;
        variant.end()
    }
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length field is 0 or above [`MAX_FRAME`].
    #[error("frame length {0} out of range")]
    Length(u32),
    /// The payload does not match its checksum.
    #[error("frame checksum mismatch")]
    Checksum,
    /// The payload does not decode.
    #[error("undecodable record: {0}")]
    Decode(String),
}

/// One decoded frame: its changes, each `(database index, record)`.
pub type Changes = Vec<(u16, Record)>;

/// Decodes the frame at the start of `buf`: its changes and its length in bytes; `Ok(None)`
/// when `buf` holds only part of it (read more, or a torn tail).
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Changes, usize)>, FrameError> {
    let Some(header) = buf.get(..FRAME_HEADER) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len as usize > MAX_FRAME {
        return Err(FrameError::Length(len));
    }
    let total = FRAME_HEADER + len as usize;
    let Some(payload) = buf.get(FRAME_HEADER..total) else {
        return Ok(None);
    };
    if crc32fast::hash(payload) != crc {
        return Err(FrameError::Checksum);
    }
    let mut changes = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let (change, tail) = postcard::take_from_bytes::<(u16, Record)>(rest)
            .map_err(|e| FrameError::Decode(e.to_string()))?;
        changes.push(change);
        rest = tail;
    }
    Ok(Some((changes, total)))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bytes::Bytes;

    use super::{decode_frame, Changes, Feed, Sink, Stamp};
    use crate::clock::{Clock, ManualClock};
    use crate::store::session::NewSession;
    use crate::store::{Databases, Entry, Fields, Record, Store, Value, ValueMut};

    const START: u64 = 1_700_000_000_000;

    fn dbs() -> (Databases, Arc<ManualClock>) {
        let (clock, manual) = Clock::manual(START);
        let dbs = Databases::new(clock, 4);
        dbs.first().feed().enable();
        dbs.first().feed().keep_backlog();
        (dbs, manual)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    }

    /// The frames from `from` to the end, once published.
    fn frames(feed: &Feed, from: u64) -> Vec<(Changes, usize)> {
        let end = feed.end_offset();
        runtime().block_on(feed.wait_published(end));
        let bytes: Vec<u8> = feed
            .read_from(from, usize::MAX)
            .expect("in backlog")
            .concat();
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let (changes, len) = decode_frame(&bytes[at..]).expect("valid").expect("whole");
            out.push((changes, len));
            at += len;
        }
        out
    }

    /// Every live key of every database, by index and key.
    fn dump(dbs: &Databases) -> Vec<(usize, Record)> {
        let mut all = Vec::new();
        for db in 0..dbs.count() {
            let store = dbs.db(db);
            for shard in 0..store.shard_count() {
                for mut record in store.snapshot_shard(shard) {
                    if let Record::Hash { fields, .. } | Record::Session { fields, .. } =
                        &mut record
                    {
                        fields.sort();
                    }
                    if let Record::Set { members, .. } = &mut record {
                        members.sort();
                    }
                    all.push((db, record));
                }
            }
        }
        all.sort_by(|a, b| (a.0, a.1.key()).cmp(&(b.0, b.1.key())));
        all
    }

    fn set_str(store: &Store, key: &str, value: &str, deadline_ms: u64) {
        let value = Bytes::copy_from_slice(value.as_bytes());
        store.upsert(key.as_bytes(), store.now_ms(), |_| {
            (Some(Entry::new(Value::Str(value), deadline_ms)), ())
        })
    }

    /// HSET: fields set in place, or a new hash.
    fn hset(store: &Store, key: &str, pairs: &[(&str, &str)]) {
        let pairs: Vec<(Bytes, Bytes)> = pairs
            .iter()
            .map(|(f, v)| (Bytes::from(f.to_string()), Bytes::from(v.to_string())))
            .collect();
        store.upsert(key.as_bytes(), store.now_ms(), |node| match node {
            Some(mut node) => {
                if let ValueMut::Hash(fields) = node.value_mut() {
                    fields.extend(pairs);
                }
                (None, ())
            }
            None => {
                let fields: Fields = pairs.into_iter().collect();
                (Some(Entry::new(Value::Hash(Box::new(fields)), 0)), ())
            }
        })
    }

    fn hdel(store: &Store, key: &str, field: &str) {
        store.modify(key.as_bytes(), store.now_ms(), |mut node| {
            let ValueMut::Hash(fields) = node.value_mut() else {
                return (false, ());
            };
            fields.remove(field.as_bytes());
            (fields.is_empty(), ())
        });
    }

    fn sadd(store: &Store, key: &str, member: &str, remove: Option<&str>) {
        let member = Bytes::from(member.to_owned());
        store.upsert(key.as_bytes(), store.now_ms(), |node| match node {
            Some(mut node) => {
                if let ValueMut::Set(members) = node.value_mut() {
                    members.insert_member(member);
                    if let Some(gone) = remove {
                        members.remove(gone.as_bytes());
                    }
                }
                (None, ())
            }
            None => {
                let members = Fields::from_members([member]);
                (Some(Entry::new(Value::Set(Box::new(members)), 0)), ())
            }
        })
    }

    fn expire(store: &Store, key: &str, deadline_ms: u64) {
        store.modify(key.as_bytes(), store.now_ms(), |mut node| {
            node.set_expires_at_ms(deadline_ms);
            (false, ())
        });
    }

    fn session(store: &Store, user: &str) -> Bytes {
        let new = NewSession {
            prefix: Bytes::new(),
            user: Some(Bytes::from(user.to_owned())),
            idle_ms: 60_000,
            absolute_ms: 3_600_000,
            data: vec![(Bytes::from("role"), Bytes::from("admin"))],
        };
        store
            .create_session(new, store.now_ms(), 0)
            .expect("session")
    }

    fn touch(store: &Store, id: &Bytes) {
        store
            .update_session(id, store.now_ms(), |_| (true, ()))
            .expect("a session");
    }

    #[test]
    fn regenerations_racing_swapdb_replay_into_the_databases_they_were_made_in() {
        // Each move's frame is emitted while it holds its shards, which SWAPDB needs: its
        // records and its place among the swaps agree, and a replica finds every session
        // where its primary has it.
        let (dbs, _) = dbs();
        let dbs = Arc::new(dbs);
        let store = dbs.db(0).clone();
        // Every frame of the run stays in the backlog.
        store.feed().set_backlog_size(64 << 20);
        let from = store.feed().end_offset();
        let mut ids: Vec<Bytes> = (0..4).map(|_| session(&store, "ada")).collect();
        let swapper = {
            let dbs = Arc::clone(&dbs);
            std::thread::spawn(move || {
                for _ in 0..1_500 {
                    dbs.swap(0, 1);
                }
            })
        };
        for round in 0..6_000 {
            let id = &mut ids[round % 4];
            *id = store
                .regenerate_session(id, None, START, 0)
                .expect("an ID")
                .expect("a session");
        }
        swapper.join().expect("swapper");
        let replica = replay(&[], frames(store.feed(), from));
        for db in 0..2 {
            let count = |dbs: &Databases| dbs.db(db).count_sessions(b"", b"ada");
            assert_eq!(count(&replica), count(&dbs), "database {db}");
            for id in &ids {
                let has = |dbs: &Databases| dbs.db(db).peek(id, |node| node.is_some());
                assert_eq!(has(&replica), has(&dbs), "database {db}");
            }
        }
    }

    #[test]
    fn a_dead_session_replaced_by_rename_or_move_ends_by_its_expiry_in_the_stream() {
        use crate::store::{Ending, Moved, Renamed};
        // The primary announces such a session `expired`: the stream says so, and a replica
        // drops it from its user's list as the primary did.
        let (dbs, manual) = dbs();
        let store = dbs.db(0).clone();
        let from = store.feed().end_offset();
        let renamed_onto = session(&store, "ada");
        let moved_onto = session(dbs.db(1), "bob");
        manual.advance(60_000);
        let now = store.now_ms();
        set_str(&store, "k", "v", 0);
        assert_eq!(
            store.rename(b"k", &renamed_onto, false, now),
            Renamed::Moved
        );
        set_str(&store, &String::from_utf8_lossy(&moved_onto), "v", 0);
        assert_eq!(dbs.move_key(0, 1, &moved_onto, now), Moved::Moved);
        let frames = frames(store.feed(), from);
        let ended: Vec<(u16, Bytes)> = frames
            .iter()
            .flat_map(|(changes, _)| changes.iter())
            .filter_map(|(db, record)| match record {
                Record::Ended {
                    key,
                    why: Ending::Expired,
                } => Some((*db, key.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(ended, [(0, renamed_onto), (1, moved_onto)]);
        let replica = replay(&[], frames);
        assert_eq!(replica.db(0).count_sessions(b"", b"ada"), 0);
        assert_eq!(replica.db(1).count_sessions(b"", b"bob"), 0);
    }

    /// A replica's view: `snapshot` restored as a snapshot loads, then `frames` applied.
    fn replay(snapshot: &[(usize, Record)], frames: Vec<(Changes, usize)>) -> Databases {
        let (clock, _) = Clock::manual(START);
        let replica = Databases::new(clock, 4);
        for (db, record) in snapshot {
            replica.db(*db).restore(record.clone(), START);
        }
        for db in 0..replica.count() {
            replica.db(db).rebuild_user_index();
        }
        for (changes, _) in frames {
            replica.apply(changes).expect("databases exist");
        }
        replica
    }

    #[test]
    fn a_string_from_borrowed_bytes_encodes_as_its_record() {
        let record = Record::String {
            key: Bytes::from("key"),
            value: Bytes::from(vec![7u8; 300]),
            expires_at_ms: START,
        };
        let mut owned = Vec::new();
        super::encode(&mut owned, 3, &record);
        let mut borrowed = Vec::new();
        let by_ref = super::StringRef {
            key: b"key",
            value: &[7u8; 300],
            expires_at_ms: START,
        };
        super::encode(&mut borrowed, 3, &by_ref);
        assert_eq!(owned, borrowed);
        // By hand too, for every size of each varint.
        for (db, len, deadline) in [
            (0u16, 0usize, 0u64),
            (300, 127, 128),
            (65535, 20_000, u64::MAX),
        ] {
            let record = Record::String {
                key: Bytes::from(vec![1u8; len]),
                value: Bytes::from(vec![2u8; len * 3]),
                expires_at_ms: deadline,
            };
            let mut owned = Vec::new();
            super::encode(&mut owned, db, &record);
            let by_ref = super::StringRef {
                key: &vec![1u8; len],
                value: &vec![2u8; len * 3],
                expires_at_ms: deadline,
            };
            let mut by_hand = Vec::new();
            by_ref.encode(db, &mut by_hand);
            assert_eq!(owned, by_hand, "{db} {len} {deadline}");
            assert_eq!(by_hand.len(), by_ref.encoded_len(db));
        }
    }

    #[test]
    fn an_idle_feed_records_nothing() {
        let (clock, _) = Clock::manual(START);
        let dbs = Databases::new(clock, 2);
        let store = dbs.first();
        set_str(store, "k", "v", 0);
        hset(store, "h", &[("f", "v")]);
        store.remove(b"k", START);
        store.flush();
        assert_eq!(dbs.first().feed().end_offset(), 0);
    }

    #[test]
    fn a_multi_key_operation_is_one_frame() {
        let (dbs, _) = dbs();
        let store = dbs.first();
        set_str(store, "a", "1", 0);
        let from = store.feed().end_offset();
        store.rename(b"a", b"b", false, START);
        dbs.move_key(0, 1, b"b", START);
        let frames = frames(store.feed(), from);
        assert_eq!(frames.len(), 2, "one frame per operation");
        assert!(matches!(
            &frames[0].0[..],
            [(0, Record::Delete { .. }), (0, Record::String { .. })]
        ));
        assert!(matches!(
            &frames[1].0[..],
            [(0, Record::Delete { .. }), (1, Record::String { .. })]
        ));
        // An atomic block (EXEC, a script) too, with its SELECTs' databases.
        let from = store.feed().end_offset();
        let shards = [store.shard_of_key(b"x"), store.shard_of_key(b"y")];
        store.atomic(Some(&shards), || {
            set_str(dbs.first(), "x", "1", 0);
            set_str(dbs.first(), "y", "2", 0);
        });
        let frames = self::frames(store.feed(), from);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].0.len(), 2);
    }

    /// A SWAPDB counts for a switch point ([`Feed::swaps`]) only once its frame has its offset:
    /// a cut read between the two would hold the swap in its count (and in a snapshot taken
    /// after it) and its frame after the cut, in the stream too. In a block (EXEC, a script),
    /// the frame is numbered when the block ends.
    #[test]
    fn a_swapdb_counts_for_a_switch_point_once_its_frame_is_numbered() {
        let (dbs, _) = dbs();
        let feed = dbs.first().feed().clone();
        let (swaps, from) = (feed.swaps(), feed.end_offset());
        assert!(dbs.swap(0, 1));
        assert_eq!(feed.swaps(), swaps + 1);
        assert!(feed.end_offset() > from);

        let (swaps, from) = (feed.swaps(), feed.end_offset());
        let during = dbs.atomic(&[(0, None), (1, None)], || {
            assert!(dbs.swap(0, 1));
            (feed.swaps(), feed.end_offset())
        });
        assert_eq!(
            during,
            (swaps, from),
            "counted before its frame had an offset"
        );
        assert_eq!(feed.swaps(), swaps + 1);
        let frames = frames(&feed, from);
        assert_eq!(frames.len(), 1);
        assert!(matches!(
            &frames[0].0[..],
            [(0, Record::SwapDb { with: 1 })]
        ));

        // Applied from elsewhere, unrecorded: counted at once (the frame received is numbered
        // under `applying`, which a cut waits for).
        let swaps = feed.swaps();
        dbs.atomic(&[(0, None), (1, None)], || {
            super::without_recording(|| assert!(dbs.swap(0, 1)));
            assert_eq!(feed.swaps(), swaps + 1);
        });
    }

    #[test]
    fn one_keys_changes_from_many_threads_replay_in_their_order() {
        let (dbs, _) = dbs();
        let dbs = Arc::new(dbs);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let dbs = Arc::clone(&dbs);
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        let key = format!("k{}", i % 7);
                        set_str(dbs.first(), &key, &format!("{t}-{i}"), 0);
                        hset(
                            dbs.first(),
                            "h",
                            &[(&format!("f{}", i % 5), &format!("{t}-{i}"))],
                        );
                        if i % 11 == 0 {
                            dbs.first().remove(key.as_bytes(), START);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("writer");
        }
        let replica = replay(&[], frames(dbs.first().feed(), 0));
        assert_eq!(dump(&replica), dump(&dbs));
    }

    #[test]
    fn replaying_a_suffix_over_a_later_snapshot_gives_the_live_keyspace() {
        let (dbs, clock) = dbs();
        let store = dbs.first();
        set_str(store, "s", "1", 0);
        hset(store, "h", &[("a", "1"), ("b", "2"), ("c", "3")]);
        sadd(store, "set", "m1", None);
        let alice = session(store, "alice");
        let bob = session(store, "bob");
        set_str(dbs.db(2), "two", "x", 0);
        set_str(dbs.db(3), "three", "x", 0);

        // The log switches at T0...
        let t0 = store.feed().cut();
        hset(store, "h", &[("a", "10")]);
        hdel(store, "h", "b");
        sadd(store, "set", "m2", Some("m1"));
        expire(store, "s", START + 50_000);
        clock.advance(1_500);
        touch(store, &alice);
        store.destroy_session(&bob, store.now_ms());
        let carol = session(store, "alice");
        // ...the snapshot is consistent at T1 > T0...
        let snapshot = dump(&dbs);
        dbs.swap(2, 3);
        let after_swap = store.feed().cut();
        hset(store, "h", &[("b", "20"), ("d", "4")]);
        hdel(store, "h", "c");
        sadd(store, "set", "m3", Some("m2"));
        expire(store, "s", 0);
        store.rename(b"s", b"s2", false, store.now_ms());
        dbs.db(2).flush();
        set_str(dbs.db(2), "after-flush", "y", 0);
        clock.advance(1_200);
        touch(store, &carol);
        store
            .update_session(&alice, store.now_ms(), |s| {
                s.fields.insert(Bytes::from("cart"), Bytes::from("3"));
                s.version += 1;
                (true, ())
            })
            .expect("a session");

        // ...and the snapshot plus every frame from T0 is the live keyspace.
        let replica = replay(&snapshot, frames(store.feed(), t0));
        assert_eq!(dump(&replica), dump(&dbs));
        let mut sessions = replica.first().list_sessions(b"", b"alice", store.now_ms());
        sessions.sort();
        let mut expected = vec![alice.clone(), carol.clone()];
        expected.sort();
        assert_eq!(sessions, expected, "the per-user index follows");
        assert!(replica
            .first()
            .list_sessions(b"", b"bob", store.now_ms())
            .is_empty());
        // Applying the stream twice changes nothing either (but across a SWAPDB: see the
        // module documentation).
        let again = replay(&dump(&dbs), frames(store.feed(), after_swap));
        assert_eq!(dump(&again), dump(&dbs));
    }

    #[test]
    fn a_change_to_a_large_hash_costs_the_change() {
        let (dbs, _) = dbs();
        let store = dbs.first();
        let fields: Vec<(String, String)> = (0..100_000)
            .map(|i| (format!("field:{i}"), format!("value:{i}")))
            .collect();
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(f, v)| (&f[..], &v[..])).collect();
        hset(store, "big", &pairs);
        for i in 0..10_000 {
            sadd(store, "bigset", &format!("member:{i}"), None);
        }
        let from = store.feed().end_offset();
        hset(store, "big", &[("field:7", "new")]);
        hdel(store, "big", "field:8");
        sadd(store, "bigset", "one-more", Some("member:3"));
        expire(store, "big", START + 10_000);
        let frames = frames(store.feed(), from);
        let sizes: Vec<usize> = frames.iter().map(|(_, len)| *len).collect();
        assert_eq!(sizes.len(), 4);
        assert!(sizes.iter().all(|len| *len < 100), "{sizes:?}");
        assert!(matches!(&frames[3].0[..], [(0, Record::Deadline { .. })]));
    }

    #[test]
    fn a_deadline_moved_later_survives_a_replay_after_the_first_one_passed() {
        let (dbs, _) = dbs();
        let store = dbs.first();
        set_str(store, "k", "v", START + 1_000);
        expire(store, "k", START + 5_000);
        hset(store, "h", &[("f", "v")]);
        expire(store, "h", START + 1_000);
        hset(store, "h", &[("g", "w")]);
        expire(store, "h", START + 5_000);
        let id = session(store, "alice");
        let frames = frames(store.feed(), 0);
        // Replayed (a restart) when the first deadlines have passed, the last ones not.
        let (clock, _) = Clock::manual(START + 2_000);
        let replica = Databases::new(clock, 4);
        for (changes, _) in frames {
            replica.apply(changes).expect("databases exist");
        }
        let now = START + 2_000;
        let live = |key: &[u8]| replica.first().read(key, now, |node| node.is_some());
        assert!(live(b"k"), "the string whose deadline moved later");
        assert!(live(b"h"), "the hash whose deadline moved later");
        assert!(live(&id), "the session");
        let fields = replica
            .first()
            .read(b"h", now, |node| match node.map(|n| n.value()) {
                Some(crate::store::ValueRef::Hash(fields)) => fields.len(),
                _ => 0,
            });
        assert_eq!(fields, 2, "every field, not only the last change's");
    }

    #[test]
    fn a_sessions_use_is_its_last_access_alone() {
        let (dbs, clock) = dbs();
        let store = dbs.first();
        let id = session(store, "alice");
        let from = store.feed().end_offset();
        clock.advance(50);
        touch(store, &id);
        // A use within the same millisecond changes nothing, and records nothing.
        touch(store, &id);
        let frames = frames(store.feed(), from);
        let [(changes, len)] = &frames[..] else {
            panic!("one record for one use: {frames:?}");
        };
        let [(0, Record::SessionTouch { last_access_ms, .. })] = &changes[..] else {
            panic!("a touch: {changes:?}");
        };
        assert_eq!(*last_access_ms, store.now_ms(), "exact");
        assert!(*len < 80, "{len} bytes");
    }

    #[test]
    fn held_changes_reach_the_stream_as_one_run_when_the_hold_ends() {
        let (dbs, _) = dbs();
        let feed = dbs.first().feed();
        let start = feed.end_offset();
        let mut boundaries = vec![start];
        let hold = feed.hold();
        for i in 0..3 {
            set_str(dbs.first(), &format!("key:{i}"), "value", 0);
            boundaries.push(feed.end_offset());
        }
        // Given offsets as they were made, but held in this thread's outbox, not sent.
        let end = feed.end_offset();
        let held = || super::OUTBOX.with(|outbox| outbox.borrow().buf.len() as u64);
        assert_eq!(held(), end - start);
        drop(hold);
        assert_eq!(held(), 0);
        let replayed = frames(feed, start);
        assert_eq!(replayed.len(), 3);
        assert_eq!(feed.backlog_range().0 + feed.backlog_range().1, end);
        // Every frame boundary inside the run is a place to resume; a byte inside a frame is not.
        for offset in &boundaries {
            assert!(feed.starts_frame(*offset), "{offset}");
        }
        assert!(!feed.starts_frame(start + 1));
        assert!(!feed.starts_frame(boundaries[2] - 1));
        let tail: Vec<u8> = feed.read_from(boundaries[1], usize::MAX).unwrap().concat();
        assert_eq!(tail.len() as u64, end - boundaries[1]);
        assert_eq!(
            decode_frame(&tail).unwrap().unwrap().1 as u64,
            boundaries[2] - boundaries[1]
        );
    }

    #[test]
    fn released_frames_go_at_once_and_the_hold_goes_on() {
        let (dbs, _) = dbs();
        let feed = dbs.first().feed();
        let start = feed.end_offset();
        let held = || super::OUTBOX.with(|outbox| outbox.borrow().buf.len());
        let hold = feed.hold();
        set_str(dbs.first(), "before", "value", 0);
        feed.release_held();
        assert_eq!(held(), 0);
        // Published with the hold still open.
        assert_eq!(frames(feed, start).len(), 1);
        set_str(dbs.first(), "after", "value", 0);
        assert!(held() > 0);
        drop(hold);
        assert_eq!(frames(feed, start).len(), 2);
    }

    #[test]
    fn a_frame_numbered_before_a_reset_does_not_stop_the_stream() {
        let feed = Feed::new(1 << 20);
        feed.keep_backlog();
        let old = feed.epoch.load(Ordering::SeqCst);
        feed.reset(100);
        let new = feed.epoch.load(Ordering::SeqCst);
        let frame = |n: usize| Bytes::from(vec![0u8; n]);
        let at = |offset, epoch| Stamp { offset, epoch };
        // Numbered in the old stream at 104 and at 100, they arrive after the reset: dropped,
        // neither waited for nor taken.
        feed.publish(&mut vec![
            (at(104, old), frame(8)),
            (at(100, old), frame(4)),
        ]);
        feed.publish(&mut vec![(at(100, new), frame(10))]);
        feed.publish(&mut vec![(at(110, new), frame(10))]);
        assert_eq!(feed.backlog_range(), (100, 20));
    }

    #[test]
    fn a_cut_with_its_read_falls_between_two_applied_frames() {
        let feed = Arc::new(Feed::new(1 << 20));
        let applying = feed.applying();
        let (sender, cut) = std::sync::mpsc::channel();
        let cutter = {
            let feed = Arc::clone(&feed);
            std::thread::spawn(move || sender.send(feed.cut_after(|| "read")).unwrap())
        };
        // While a frame is applied and not yet numbered, no cut (only a cut taken too early
        // can fail this).
        assert!(cut
            .recv_timeout(std::time::Duration::from_millis(100))
            .is_err());
        feed.append_verbatim(Bytes::from(vec![0u8; 12]));
        drop(applying);
        assert_eq!(cut.recv().unwrap(), ("read", 12), "after the frame");
        cutter.join().unwrap();
    }

    /// A recording feed whose pump never runs (only inline commits publish), with a sink
    /// standing for the log's writer: each turn takes what was published, calls it durable,
    /// and records the thread it ran on.
    fn feed_with_inline_writer() -> (Arc<Feed>, Arc<Mutex<Vec<std::thread::ThreadId>>>) {
        let feed = Arc::new(Feed::new(1 << 20));
        feed.on.store(true, Ordering::SeqCst);
        let turns = Arc::new(Mutex::new(Vec::new()));
        let sink: Arc<std::sync::OnceLock<Arc<Sink>>> = Arc::default();
        let (writer, recorded, weak) =
            (Arc::clone(&sink), Arc::clone(&turns), Arc::downgrade(&feed));
        let (attached, _) = feed.attach_sink_with(move || {
            let (Some(sink), Some(feed)) = (writer.get(), weak.upgrade()) else {
                return;
            };
            let (start, chunks) = sink.take(Duration::ZERO);
            let end = start + chunks.iter().map(|c| c.len() as u64).sum::<u64>();
            feed.mark_durable(end);
            recorded.lock().unwrap().push(std::thread::current().id());
        });
        sink.set(attached).unwrap();
        (feed, turns)
    }

    fn current_thread_with_time() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    }

    #[test]
    fn connections_on_one_thread_share_one_inline_commit_on_that_thread() {
        let (feed, turns) = feed_with_inline_writer();
        let runtime = current_thread_with_time();
        let reached = runtime.block_on(async {
            assert!(feed.commits_inline());
            let connections: Vec<_> = (0..3)
                .map(|i| {
                    let feed = Arc::clone(&feed);
                    tokio::spawn(async move {
                        feed.push_string(0, format!("key{i}").as_bytes(), b"value", 0);
                        feed.wait_durable(feed.end_offset()).await
                    })
                })
                .collect();
            let all = async {
                let mut reached = Vec::new();
                for connection in connections {
                    reached.push(connection.await.unwrap());
                }
                reached
            };
            // The pump never runs here: without the inline commit the waits never end.
            tokio::time::timeout(Duration::from_secs(30), all)
                .await
                .expect("the writes were committed inline")
        });
        assert_eq!(reached, [true, true, true]);
        assert_eq!(
            *turns.lock().unwrap(),
            [std::thread::current().id()],
            "one write turn, on the connections' thread, covered the three"
        );
        assert_eq!(feed.durable().offset, feed.end_offset());
    }

    #[test]
    fn inline_commits_only_on_one_thread_and_not_after_slow_ones() {
        assert!(!Feed::new(0).commits_inline(), "outside a runtime");
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        assert!(!multi.block_on(async { Feed::new(0).commits_inline() }));
        current_thread_with_time().block_on(async {
            let feed = Feed::new(0);
            assert!(feed.commits_inline());
            // Commits of 1 ms, with some of 5 ms among them, keep going.
            for i in 0..100 {
                feed.note_inline_commit(Duration::from_millis(if i % 10 == 0 { 5 } else { 1 }));
                assert!(feed.commits_inline(), "commit {i}");
            }
            // A single stall of 20 ms pauses them.
            feed.note_inline_commit(Duration::from_millis(20));
            assert!(!feed.commits_inline());

            // So do commits of 3 ms in a row, after a few.
            let feed = Feed::new(0);
            let mut commits = 0;
            while feed.commits_inline() {
                feed.note_inline_commit(Duration::from_millis(3));
                commits += 1;
                assert!(commits < 100, "never paused");
            }
            assert!(commits > 3, "paused after {commits}");
        });
    }

    #[test]
    fn the_pump_publishes_what_inline_commits_leave_behind() {
        let feed = Arc::new(Feed::new(1 << 20));
        let (sink, start) = feed.attach_sink_with(|| {});
        // Recording, and no pump yet: the first change can only be committed inline.
        feed.on.store(true, Ordering::SeqCst);
        current_thread_with_time().block_on(async {
            feed.push_string(0, b"inline", b"value", 0);
            feed.commit_inline();
            assert_eq!(feed.inline_commits.load(Ordering::SeqCst), 1);
            assert_eq!(*feed.published.borrow(), feed.end_offset());
            feed.enable();
            // A change from another thread after the last inline commit: nobody commits
            // inline any more, so the pump must take it.
            let other = Arc::clone(&feed);
            std::thread::spawn(move || other.push_string(0, b"other", b"value", 0))
                .join()
                .unwrap();
            tokio::time::timeout(
                Duration::from_secs(30),
                feed.wait_published(feed.end_offset()),
            )
            .await
            .expect("the pump published it");
        });
        let (_, chunks) = sink.take(Duration::ZERO);
        let taken: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        assert_eq!(start + taken, feed.end_offset());
    }

    #[test]
    fn held_frames_numbered_before_a_reset_stay_out_of_the_new_stream() {
        let (dbs, _) = dbs();
        let feed = dbs.first().feed();
        let start = feed.end_offset();
        let hold = feed.hold();
        set_str(dbs.first(), "old", "value", 0);
        // The new stream starts exactly where the held frame was numbered in the old one
        // (a replica's full sync while a connection's frames wait in its outbox).
        feed.reset(start);
        drop(hold);
        set_str(dbs.first(), "new", "value", 0);
        let replayed = frames(feed, start);
        let [(changes, _)] = &replayed[..] else {
            panic!("one frame: {replayed:?}");
        };
        let [(0, Record::String { key, .. })] = &changes[..] else {
            panic!("a string: {changes:?}");
        };
        assert_eq!(key, "new");
    }

    #[test]
    fn a_hold_on_an_idle_feed_or_another_feed_holds_nothing_of_this_one() {
        let held = || super::OUTBOX.with(|outbox| outbox.borrow().buf.len());
        let (other, _) = dbs();
        let (dbs, _) = dbs();
        let feed = dbs.first().feed();
        let start = feed.end_offset();
        // A hold taken while a feed is off holds nothing.
        let idle = Feed::new(1 << 20);
        let idle_hold = idle.hold();
        set_str(dbs.first(), "key", "value", 0);
        assert_eq!(held(), 0);
        drop(idle_hold);
        // Another feed's frames held here stay held; this one's go on their own.
        let _other_hold = other.first().feed().hold();
        set_str(other.first(), "other", "value", 0);
        let other_held = held();
        assert!(other_held > 0);
        set_str(dbs.first(), "key", "again", 0);
        assert_eq!(held(), other_held);
        assert_eq!(frames(feed, start).len(), 2);
    }

    #[test]
    fn the_backlog_keeps_its_size_and_says_when_an_offset_is_gone() {
        let (dbs, _) = dbs();
        let feed = dbs.first().feed();
        feed.set_backlog_size(4096);
        for i in 0..1_000 {
            set_str(dbs.first(), &format!("key:{i}"), "value", 0);
        }
        runtime().block_on(feed.wait_published(feed.end_offset()));
        let (first, held) = feed.backlog_range();
        assert!(held <= 4096 && held > 3_000, "{held}");
        assert_eq!(first + held, feed.end_offset());
        assert!(feed.read_from(0, usize::MAX).is_err());
        assert!(feed.read_from(feed.end_offset() + 1, 1).is_err());
        assert_eq!(feed.read_from(feed.end_offset(), 1), Ok(vec![]));
    }
}
