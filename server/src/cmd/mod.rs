//! Command execution: the effect of each parsed [`Command`] on the store and the connection,
//! one file per command (or family sharing one effect), named as in `sessiond-protocol`.

mod append;
pub mod busy;
mod client;
mod command;
mod config;
mod config_rewrite;
mod connection;
mod dbsize;
mod debug;
mod del;
mod eval;
mod exists;
mod expire;
mod flush;
mod get;
mod getex;
mod hdel;
mod hget;
mod hgetall;
mod hincrby;
mod hset;
mod incr;
pub mod info;
mod keys;
mod latency;
mod memory;
mod mget;
mod move_;
mod mset;
mod multi;
mod persist;
pub mod pubsub;
mod rename;
pub mod replication;
pub mod save;
mod scan;
mod session_count;
mod session_create;
mod session_destroy;
mod session_destroyall;
mod session_get;
mod session_info;
mod session_list;
mod session_regenerate;
mod session_set;
mod session_touch;
mod session_unset;
mod set;
mod sets;
mod shutdown;
mod slowlog;
mod strlen;
mod swapdb;
mod time;
mod ttl;
mod type_;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sessiond_protocol::cmd::CommandFlags;
use sessiond_protocol::{Command, CommandError, Frame, ProtocolVersion};

pub use connection::REDIS_COMPAT_VERSION;
pub(crate) use eval::size as reply_size;
pub use eval::HOST as SCRIPT_HOST;

use crate::auth::{Denied, KeyPatterns, User};
use crate::clients::ClientState;
use crate::clock::BatchClock;
use crate::shared::Shared;
use crate::stats::LocalStats;
use crate::store::{Databases, Store};

/// Room a command that encodes into the output under a shard's lock (GET, MGET) makes first,
/// so that the output's growth (a copy of every pending reply) seldom happens under the lock.
pub const REPLY_ROOM: usize = 1024;

/// The error every type mismatch answers.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// What the connection does after sending a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Read the next command.
    Continue,
    /// Close the connection after writing the replies so far (QUIT, protocol errors).
    Close,
    /// Save a snapshot, then reply (SAVE): one of the two commands that wait.
    Save,
    /// The reply would take the connection's pending output past its hard limit
    /// (`client-output-buffer-limit`): it was not built, and the connection is closed at once
    /// without sending what is pending, as Redis closes such a client.
    OutputLimit,
    /// Wait for the shutdown just requested (SHUTDOWN whose final save may fail): the server
    /// exits, or it answers [`crate::shared::SHUTDOWN_FAILED`] and the connection goes on. It
    /// carries the count of failed shutdowns before this one was requested, so a failure that
    /// comes before the connection starts waiting is not missed.
    AwaitShutdown(u64),
    /// Do what [`ConnState::take_pending`] holds before the next command: wait for a long
    /// script, or run one on a blocking thread (see [`busy`]).
    Pending,
    /// The connection becomes a replica's link (PSYNC, SYNC): it leaves the command loop once
    /// its replies so far are written (see [`crate::replication::primary`]).
    Replicate,
    /// WAIT: the connection waits for replicas' acknowledgements, then replies.
    Wait(replication::WaitFor),
    /// Wait this long, then reply `OK` (DEBUG SLEEP): the connection's task waits, not the
    /// server.
    Sleep(std::time::Duration),
}

/// The reply to one command.
#[derive(Debug)]
pub struct Reply {
    /// The frame to send; `None` sends nothing more: SHUTDOWN's, or a reply the command wrote
    /// into the connection's output itself ([`Ctx::out`]).
    pub frame: Option<Frame>,
    /// What the connection does next.
    pub then: Then,
}

impl Reply {
    /// The reply of a command that wrote it into [`Ctx::out`] itself.
    pub fn written() -> Reply {
        Reply {
            frame: None,
            then: Then::Continue,
        }
    }

    /// No reply: it would not fit under the connection's output limit ([`Then::OutputLimit`]).
    pub fn over_limit() -> Reply {
        Reply {
            frame: None,
            then: Then::OutputLimit,
        }
    }
}

impl From<Frame> for Reply {
    fn from(frame: Frame) -> Reply {
        Reply {
            frame: Some(frame),
            then: Then::Continue,
        }
    }
}

/// Per-connection state that commands read and change.
#[derive(Debug)]
pub struct ConnState {
    client: Arc<ClientState>,
    version: ProtocolVersion,
    /// Who the connection is authenticated as; `None`: nobody yet.
    user: Option<Arc<User>>,
    /// Whether `user` is limited (the permission check runs only then).
    restricted: bool,
    /// Failed AUTH / HELLO AUTH attempts on this connection (see `--max-auth-failures`).
    auth_failures: u32,
    /// The transaction being queued, after MULTI.
    multi: Option<Box<multi::Queued>>,
    /// The keys the connection watches (WATCH); unwatched when dropped.
    watch: Option<Box<multi::Watching>>,
    /// The selected database (SELECT), one that exists.
    db: usize,
    /// What [`Then::Pending`] asks the connection to do.
    pending: Option<Box<busy::Pending>>,
    /// Its subscriptions (SUBSCRIBE...), while it has some.
    subscriber: Option<Box<crate::pubsub::Subscriber>>,
    /// What it said as a replica (REPLCONF), and its PSYNC once sent.
    replica: Option<Box<(crate::role::Hello, Option<sessiond_protocol::cmd::Psync>)>>,
}

impl ConnState {
    /// The state of a new connection: RESP2, no name, and the user new connections start as
    /// (`None` when a password is required).
    pub fn new(client: Arc<ClientState>, user: Option<Arc<User>>) -> ConnState {
        let mut conn = ConnState {
            client,
            version: ProtocolVersion::Resp2,
            user: None,
            restricted: false,
            auth_failures: 0,
            multi: None,
            watch: None,
            db: 0,
            pending: None,
            subscriber: None,
            replica: None,
        };
        conn.set_user(user);
        conn
    }

    /// What the last command's [`Then::Pending`] asks for.
    pub fn take_pending(&mut self) -> Option<busy::Pending> {
        self.pending.take().map(|pending| *pending)
    }

    /// The connection a script's commands run as: the caller's registry entry and user, in
    /// `version` (the script's, `redis.setresp`), in database `db`, outside any transaction.
    /// Allocates nothing.
    pub(crate) fn for_script(
        client: Arc<ClientState>,
        user: Option<Arc<User>>,
        version: ProtocolVersion,
        db: usize,
    ) -> ConnState {
        ConnState {
            client,
            version,
            restricted: user.as_ref().is_some_and(|u| !u.unrestricted()),
            user,
            auth_failures: 0,
            multi: None,
            watch: None,
            db,
            pending: None,
            subscriber: None,
            replica: None,
        }
    }

    /// Whether the connection may run commands other than AUTH, HELLO, QUIT and RESET.
    pub fn authenticated(&self) -> bool {
        self.user.is_some()
    }

    /// The user the connection is authenticated as.
    pub fn user(&self) -> Option<&Arc<User>> {
        self.user.as_ref()
    }

    /// The keys the connection's user may touch; `None`: every key.
    pub fn key_patterns(&self) -> Option<&KeyPatterns> {
        self.user
            .as_ref()
            .map(|u| &u.keys)
            .filter(|keys| **keys != KeyPatterns::All)
    }

    /// The namespace of the sessions the connection's user creates and lists.
    pub fn session_prefix(&self) -> &[u8] {
        self.user.as_ref().map_or(&[], |u| &u.session_prefix[..])
    }

    fn set_user(&mut self, user: Option<Arc<User>>) {
        self.restricted = user.as_ref().is_some_and(|u| !u.unrestricted());
        if let Some(user) = &user {
            self.client.set_user(user.name.clone());
        }
        self.user = user;
        if self.subscriber.is_some() {
            pubsub::follow_user(self);
        }
    }

    /// Its subscriptions, if it has any.
    pub fn subscriber(&self) -> Option<&crate::pubsub::Subscriber> {
        self.subscriber.as_deref()
    }

    /// Its subscriptions, if it has any.
    pub fn subscriber_mut(&mut self) -> Option<&mut crate::pubsub::Subscriber> {
        self.subscriber.as_deref_mut()
    }

    /// Whether it subscribes to something: its output is then held to the pubsub class's
    /// limits, and in RESP2 only the subscribe commands, PING, QUIT and RESET may run.
    #[inline]
    pub fn subscribed(&self) -> bool {
        self.subscriber.is_some()
    }

    /// The selected database.
    pub fn db(&self) -> usize {
        self.db
    }

    fn set_db(&mut self, db: usize) {
        self.db = db;
        self.client.set_db(db);
    }

    /// Whether a transaction is being queued (after MULTI, before EXEC or DISCARD).
    pub fn in_multi(&self) -> bool {
        self.multi.is_some()
    }

    /// The protocol version replies are encoded in.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The registry entry of this connection.
    pub fn client(&self) -> &Arc<ClientState> {
        &self.client
    }

    fn set_version(&mut self, version: ProtocolVersion) {
        self.version = version;
        self.client.set_resp(version.number() as u8);
    }
}

/// What a command's effect sees: the shared state, its connection, and the time.
pub struct Ctx<'a> {
    /// Shared server state.
    pub shared: &'a Arc<Shared>,
    /// The connection's database (SELECT).
    pub store: &'a Store,
    /// This connection.
    pub conn: &'a mut ConnState,
    /// This connection's counters.
    pub stats: &'a mut LocalStats,
    /// The time the command runs at, Unix ms (one reading serves a few pipelined commands: see
    /// [`BatchClock`]).
    pub now_ms: u64,
    /// The connection's pending replies. A command whose reply is a copy of stored bytes (GET,
    /// MGET) encodes it here under the shard's lock and returns no frame, rather than copying
    /// the bytes into a frame that is then copied here.
    pub out: &'a mut BytesMut,
    /// The most `out` may hold: the hard limit of `client-output-buffer-limit` (`usize::MAX`
    /// for none). A command whose reply size the data decides checks it ([`Ctx::fits`]) before
    /// it builds the reply, and answers [`Reply::over_limit`] instead of crossing it.
    pub out_limit: usize,
}

impl Ctx<'_> {
    /// Whether a reply of `bytes` fits in the connection's output under its hard limit.
    #[inline]
    pub fn fits(&self, bytes: usize) -> bool {
        self.out.len().saturating_add(bytes) <= self.out_limit
    }

    /// Counts a keyspace hit or miss.
    pub fn hit(&mut self, found: bool) {
        if found {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
    }
}

/// The encoded size of a bulk string of `len` bytes: `$<len>\r\n<bytes>\r\n`.
pub fn bulk_size(len: usize) -> usize {
    len.saturating_add(header_size(len) + 2)
}

/// The encoded size of an aggregate's header (`*<n>\r\n`, `%<n>\r\n`), or of a bulk
/// string's.
pub fn header_size(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1) + 3
}

/// An error reply from a command error.
pub fn error(error: CommandError) -> Frame {
    Frame::Error(Bytes::from(error.to_string()))
}

/// The WRONGTYPE error reply.
pub fn wrongtype() -> Frame {
    Frame::Error(Bytes::from_static(WRONGTYPE.as_bytes()))
}

/// The reply to a session operation: its frame, `missing` when there is no such session, or
/// the error.
pub fn session_reply(
    outcome: Result<Option<Frame>, crate::store::session::SessionError>,
    missing: Frame,
) -> Frame {
    match outcome {
        Ok(Some(frame)) => frame,
        Ok(None) => missing,
        Err(error) => Frame::error(error.to_string()),
    }
}

/// The most keys of one MGET that are prefetched (four cache lines each).
const PREFETCH_KEYS: usize = 32;

/// Whether a command may change the connection's authentication (AUTH, HELLO with AUTH,
/// RESET), and with it the limits the commands after it are decoded under.
pub fn may_change_authentication(args: &[Bytes]) -> bool {
    args.first().is_some_and(|name| {
        [&b"AUTH"[..], b"HELLO", b"RESET"]
            .iter()
            .any(|changer| name.eq_ignore_ascii_case(changer))
    })
}

/// Starts loading into the cache the keys of a GET, SET or MGET about to run in a batch of
/// pipelined commands (see [`Store::prefetch`]); any other command is left alone, and so are
/// the commands of a client not yet authenticated or of a restricted user, whose keys are only
/// touched once they are permitted.
pub fn prefetch(dbs: &Databases, conn: &ConnState, args: &[Bytes]) {
    let [name, keys @ ..] = args else {
        return;
    };
    if conn.user.is_none() || conn.restricted || keys.is_empty() {
        return;
    }
    let store = dbs.db(conn.db);
    if name.eq_ignore_ascii_case(b"GET") || name.eq_ignore_ascii_case(b"SET") {
        store.prefetch(&keys[0]);
    } else if name.eq_ignore_ascii_case(b"MGET") {
        // More lines than the first-level cache holds would evict each other before use.
        for key in keys.iter().take(PREFETCH_KEYS) {
            store.prefetch(key);
        }
    }
}

/// Executes one command, given as its argument vector, at `clock`'s time. Its reply is in the
/// returned frame or, for a command that writes it itself, already at the end of `out`. After
/// MULTI, the command is queued instead (see [`multi`]), its arguments kept as decoded.
pub fn execute(
    shared: &Arc<Shared>,
    conn: &mut ConnState,
    stats: &mut LocalStats,
    args: Vec<Bytes>,
    clock: &mut BatchClock,
    out: &mut BytesMut,
) -> Reply {
    let args = match conn.multi {
        // Inside MULTI: queued, or refused (and the transaction flagged), or one of the
        // commands that run at once.
        Some(_) => match multi::queue(shared, conn, args) {
            Ok(frame) => {
                count_error(shared, &frame);
                return frame.into();
            }
            Err(args) => args,
        },
        None => args,
    };
    // Once no long script holds what it needs (see [`busy::gate`]). An unauthenticated client
    // is refused (NOAUTH) before it may learn that a script runs.
    let args = if shared.dbs.long_blocks().active() && conn.user.is_some() {
        match busy::gate(shared, conn, args) {
            Ok(args) => args,
            Err(reply) => {
                if let Some(frame) = &reply.frame {
                    count_error(shared, frame);
                }
                return reply;
            }
        }
    } else {
        args
    };
    execute_now(shared, conn, stats, args, clock, out)
}

/// Counts a call of the command in `slot` that ran and answered the error `message`.
#[cold]
fn failed(shared: &Shared, slot: usize, message: &[u8]) {
    shared.stats.commands.failed(slot);
    shared.stats.commands.error_reply(message);
}

/// Counts a command refused before it ran, `slot` its command's (`rejected_calls`; None: no
/// such command), with the error it answered: `reply`, returned.
#[cold]
#[inline(never)]
fn not_run(shared: &Shared, stats: &mut LocalStats, slot: Option<usize>, reply: Reply) -> Reply {
    // Its time is no other command's.
    stats.lap_nanos();
    if let Some(slot) = slot {
        shared.stats.commands.rejected(slot);
    }
    if let Some(Frame::Error(message)) = &reply.frame {
        shared.stats.commands.error_reply(message);
    }
    reply
}

/// Logs a command that took `nanos`, if that is past the slow log's threshold (its arguments
/// were kept if `slowlog_on`) or the latency monitor's.
#[cold]
#[inline(never)]
fn notable(
    shared: &Shared,
    conn: &ConnState,
    stats: &LocalStats,
    spec: &'static sessiond_protocol::cmd::CommandSpec,
    slot: usize,
    nanos: u64,
    slowlog_on: bool,
) {
    let slow = slowlog_on && shared.slowlog.is_slow(nanos / 1000);
    if slow && !spec.flags.contains(CommandFlags::SKIP_SLOWLOG) {
        log_slow(shared, conn, stats, spec, slot, nanos / 1000);
    }
    let ms = nanos / 1_000_000;
    if shared.latency.is_spike(ms) {
        let event = if spec.flags.contains(CommandFlags::FAST) {
            "fast-command"
        } else {
            "command"
        };
        let unix_s = shared.dbs.now_ms() / 1000;
        shared.latency.observe(event, ms, unix_s);
    }
}

/// Counts a call of the command in `slot` that took `nanos`.
#[inline(always)]
fn count_call(shared: &Shared, stats: &mut LocalStats, slot: usize, nanos: u64) {
    if !stats.tally.record(slot, nanos) {
        shared.stats.commands.absorb(&mut stats.tally);
        stats.tally.record(slot, nanos);
    }
}

/// Counts `frame` in the error statistics if it is an error; whether it was.
fn count_error(shared: &Shared, frame: &Frame) -> bool {
    match frame {
        Frame::Error(message) => {
            shared.stats.commands.error_reply(message);
            true
        }
        _ => false,
    }
}

/// The text of the error a command answered (without the `-`), if it did: its frame's, or
/// the start of what it wrote into `out` after `written`.
fn error_message<'a>(reply: &'a Reply, out: &'a [u8], written: usize) -> Option<&'a [u8]> {
    match &reply.frame {
        Some(Frame::Error(message)) => Some(message),
        Some(_) => None,
        None => match out.get(written..) {
            Some([b'-', message @ ..]) => Some(message),
            _ => None,
        },
    }
}

/// Adds a slow command to the slow log, its arguments redacted ([`crate::slowlog`]).
#[cold]
fn log_slow(
    shared: &Shared,
    conn: &ConnState,
    stats: &LocalStats,
    spec: &'static sessiond_protocol::cmd::CommandSpec,
    slot: usize,
    usec: u64,
) {
    let sub = crate::stats::commands::slot_name(slot).contains('|');
    let client = conn.client();
    shared.slowlog.push(crate::slowlog::SlowEntry {
        id: 0,
        unix_s: shared.dbs.now_ms() / 1000,
        usec,
        args: stats.args.shown(spec, sub),
        peer: client.peer.to_string(),
        client_name: client.name(),
    });
}

/// [`execute`] outside MULTI's queuing: the command run, timed and counted.
///
/// What every command costs here is kept to a clock reading, a [`Tally`](crate::stats::
/// commands::Tally) entry and a few comparisons: the slow log's and the latency monitor's work
/// is done only past a threshold, and refusals and errors are counted off the straight path.
/// The counting is done where each reply is built, which spares moving the reply. With the slow
/// log on, what it would show of the arguments is copied first, as the command consumes them.
#[inline]
fn execute_now(
    shared: &Arc<Shared>,
    conn: &mut ConnState,
    stats: &mut LocalStats,
    args: Vec<Bytes>,
    clock: &mut BatchClock,
    out: &mut BytesMut,
) -> Reply {
    stats.commands += 1;
    let slowlog_on = shared.slowlog.slower_than_us() >= 0;
    let work = Work {
        args: args.len(),
        bytes: args.iter().map(Bytes::len).sum(),
    };
    // A limited user's permissions are checked against the arguments once they parse (Redis
    // answers arity errors before NOPERM); the argument handles are kept only for them.
    let kept = conn.restricted.then(|| args.clone());
    let index = args
        .first()
        .and_then(|name| sessiond_protocol::cmd::position(name));
    let spec = index.and_then(|i| sessiond_protocol::cmd::COMMANDS.get(i));
    if let (Some(spec), true) = (spec, slowlog_on) {
        stats.args.capture(spec, &args);
    }
    let parsed = match index {
        Some(index) => {
            conn.client.record_command(index, stats.mark_ticks);
            Command::parse_at(index, args)
        }
        None => Command::parse(args),
    };
    let (Some(index), Some(spec)) = (index, spec) else {
        let refusal = match parsed {
            Err(e) if conn.user.is_some() => error(e),
            _ => Frame::error("NOAUTH Authentication required."),
        };
        return not_run(shared, stats, None, refused(conn, None, refusal));
    };
    if conn.user.is_none() && !spec.flags.contains(CommandFlags::NO_AUTH) {
        let refusal = Frame::error("NOAUTH Authentication required.");
        return not_run(
            shared,
            stats,
            Some(index),
            refused(conn, Some(spec), refusal),
        );
    }
    let command = match parsed {
        Ok(command) => command,
        Err(e) => {
            return not_run(
                shared,
                stats,
                Some(index),
                refused(conn, Some(spec), error(e)),
            );
        }
    };
    let slot = crate::stats::commands::slot(index, &command);
    if let (Some(args), Some(user)) = (kept, &conn.user) {
        if let Err(denied) = user.permit(spec, &args) {
            let refusal = refuse(shared, conn, spec.name, denied);
            return not_run(
                shared,
                stats,
                Some(slot),
                refused(conn, Some(spec), refusal),
            );
        }
    }
    if conn.subscribed() && conn.version == ProtocolVersion::Resp2 {
        if let Some(refusal) = pubsub::refused_while_subscribed(spec.name) {
            return not_run(
                shared,
                stats,
                Some(slot),
                refused(conn, Some(spec), refusal),
            );
        }
    }
    let gate = shared.repl.gate();
    if gate != crate::role::Gate::Open {
        if let Some(refusal) = crate::role::refusal(gate, spec) {
            return not_run(
                shared,
                stats,
                Some(slot),
                refused(conn, Some(spec), Frame::error(refusal)),
            );
        }
    }
    let now_ms = clock.now_ms(shared.dbs.clock());
    // A write MISCONF refuses must not evict (log out) keys to make room first.
    if refused_while_saves_fail(spec) {
        let disk_errors = shared.persistence.disk_errors();
        if disk_errors != 0 {
            if let Some(refusal) = misconf(shared, disk_errors) {
                return not_run(shared, stats, Some(slot), Frame::error(refusal).into());
            }
        }
    }
    let maxmemory = shared.live.maxmemory();
    // A replica never evicts (Redis's replica-ignore-maxmemory): its primary's stream decides
    // its keys, and a removal of its own would not be in its feed.
    if maxmemory > 0
        && gate == crate::role::Gate::Open
        && spec.flags.contains(CommandFlags::DENYOOM)
        && !shared
            .dbs
            .make_room(maxmemory, shared.live.maxmemory_policy(), now_ms)
    {
        let refusal = Frame::error("OOM command not allowed when used memory > 'maxmemory'.");
        return not_run(shared, stats, Some(slot), refusal.into());
    }
    if !keeps_the_time(spec) || !work.is_short() {
        // It may run long (KEYS, DEL of a large hash, FLUSHALL SYNC, a script, an MGET of
        // 100,000 keys): the changes this thread holds from the commands before it go to the
        // stream now, not once it is done (replicated, written, fsynced: `always` replies
        // wait for them).
        shared.dbs.feed().release_held();
    }
    let written = out.len();
    let out_limit = output_class(&shared.live, conn).hard();
    let mut ctx = Ctx {
        shared,
        store: shared.dbs.db(conn.db),
        conn,
        stats,
        now_ms,
        out,
        out_limit,
    };
    let reply = if gate == crate::role::Gate::Writable {
        // A writable replica's own writes are local: its feed carries its primary's stream,
        // and its expiry deletes those keys (the primary never will).
        crate::store::local_writes(|| dispatch(&mut ctx, command))
    } else {
        dispatch(&mut ctx, command)
    };
    let keeps = keeps_the_reading(Some(spec), work, |bytes| {
        let bytes = bytes + out.len().saturating_sub(written);
        reply
            .frame
            .as_ref()
            .map_or(bytes, |frame| frame_bytes(frame, bytes))
    });
    if !keeps {
        clock.stale();
    }
    let nanos = stats.lap_nanos();
    count_call(shared, stats, slot, nanos);
    // The thresholds as they are now: a CONFIG SET that lowers one applies to itself, as in
    // Redis (the arguments were kept if the slow log was on before it ran).
    if nanos >= shared.slowlog.from_ns().min(shared.latency.from_ns()) {
        notable(shared, conn, stats, spec, slot, nanos, slowlog_on);
    }
    if let Some(message) = error_message(&reply, out, written) {
        failed(shared, slot, message);
    }
    reply
}

/// The output limits a connection is held to: `client-output-buffer-limit`'s pubsub class while
/// it subscribes (as Redis), the normal class otherwise.
#[inline]
pub fn output_class(live: &crate::live::Live, conn: &ConnState) -> crate::output_limit::ClassLimit {
    if conn.subscribed() {
        live.pubsub_output_limit()
    } else {
        live.normal_output_limit()
    }
}

/// The reply to a command of `spec` refused before it runs: `refusal`, but EXECABORT for EXEC,
/// whose refusal also ends the transaction ([`multi::refuse_exec`]).
fn refused(
    conn: &mut ConnState,
    spec: Option<&sessiond_protocol::cmd::CommandSpec>,
    refusal: Frame,
) -> Reply {
    if spec.is_some_and(|spec| spec.name == "exec") {
        return multi::refuse_exec(conn, &refusal).into();
    }
    refusal.into()
}

/// Whether the commands after one of `spec` may run at the same reading of the clock, given its
/// [`Work`] without its reply; `reply` adds the reply's bytes (counted only when they matter).
fn keeps_the_reading(
    spec: Option<&sessiond_protocol::cmd::CommandSpec>,
    work: Work,
    reply: impl FnOnce(usize) -> usize,
) -> bool {
    spec.is_some_and(keeps_the_time)
        && Work {
            bytes: reply(work.bytes),
            ..work
        }
        .is_short()
}

/// How much a command was given and answered: with a `fast` flag, what bounds its run time.
#[derive(Debug, Clone, Copy)]
struct Work {
    /// Its arguments, the name included.
    args: usize,
    /// The bytes of its arguments and of its reply.
    bytes: usize,
}

impl Work {
    /// Most arguments of a short command: MGET, MSET, HSET, SESSION.SET of a few dozen.
    const SHORT_ARGS: usize = 64;
    /// Most bytes in and out of a short command: copying them takes microseconds.
    const SHORT_BYTES: usize = 64 * 1024;

    fn is_short(&self) -> bool {
        self.args <= Self::SHORT_ARGS && self.bytes <= Self::SHORT_BYTES
    }
}

/// `counted` plus the bytes of `frame`'s strings, counting stopped past [`Work::SHORT_BYTES`].
fn frame_bytes(frame: &Frame, counted: usize) -> usize {
    fn elements<'a>(frames: impl Iterator<Item = &'a Frame>, mut total: usize) -> usize {
        for frame in frames {
            if total > Work::SHORT_BYTES {
                break;
            }
            total = frame_bytes(frame, total + 1);
        }
        total
    }
    match frame {
        Frame::Simple(b)
        | Frame::Error(b)
        | Frame::Bulk(b)
        | Frame::BigNumber(b)
        | Frame::Verbatim { data: b, .. } => counted + b.len(),
        Frame::Array(v) | Frame::Set(v) | Frame::Push(v) => elements(v.iter(), counted),
        Frame::Map(pairs) => elements(pairs.iter().flat_map(|(k, v)| [k, v]), counted),
        _ => counted + 16,
    }
}

/// Redis's MISCONF error, for sessiond.
pub const MISCONF: &str = "MISCONF sessiond is configured to save snapshots, but it's currently \
     unable to persist to disk. Commands that may modify the data set are disabled, because this \
     instance is configured to report errors during writes if snapshotting fails \
     (stop-writes-on-bgsave-error option). Please check the sessiond logs for details about the \
     snapshot error.";

/// The MISCONF refusal for the disk errors `disk_errors` ([`crate::persist::Persistence::
/// disk_errors`]): the append-only log's, whatever `stop-writes-on-bgsave-error` says (as
/// Redis), else the snapshot's when that setting is on.
fn misconf(shared: &Shared, disk_errors: u8) -> Option<String> {
    if disk_errors & 2 != 0 {
        let error = shared
            .persistence
            .aof()
            .and_then(|aof| aof.write_error())
            .unwrap_or_default();
        return Some(format!("MISCONF Errors writing to the AOF file: {error}"));
    }
    (disk_errors & 1 != 0 && shared.config.stop_writes_on_bgsave_error).then(|| MISCONF.to_owned())
}

/// Whether `spec` is refused with MISCONF while saves fail: every `write` command but
/// SESSION.GET, whose only write is the idle refresh of the session it reads (refusing it would
/// turn a full disk into an outage of every logged-in page rather than of logins and changes),
/// and SESSION.DESTROY and SESSION.DESTROYALL, which only end sessions: a logout, or "log out
/// everywhere" after a compromise, must work while the disk is full.
fn refused_while_saves_fail(spec: &sessiond_protocol::cmd::CommandSpec) -> bool {
    spec.flags.contains(CommandFlags::WRITE)
        && !matches!(
            spec.name,
            "session.get" | "session.destroy" | "session.destroyall"
        )
}

/// Whether the clock's reading may serve the commands after `spec`'s: only if its cost is
/// bounded by its own arguments and reply, as for the `fast` commands and those that add data
/// (`denyoom`: SET, MSET, SESSION.CREATE..., but the set-algebra stores, which read whole
/// sets), and then only if those were short ([`Work`]): a GET of a 16 MB value or an MGET of
/// 100,000 keys takes milliseconds. After any other (KEYS, SCAN, FLUSHALL, INFO, DEL,
/// SUNIONSTORE, SESSION.LIST...), the next command reads the clock afresh; so a reading serves
/// a batch for at most `BatchClock::REUSE - 1` short commands' time.
fn keeps_the_time(spec: &sessiond_protocol::cmd::CommandSpec) -> bool {
    spec.flags.contains(CommandFlags::FAST)
        || (spec.flags.contains(CommandFlags::DENYOOM)
            && !matches!(spec.name, "sinterstore" | "sunionstore" | "sdiffstore"))
}

/// The NOPERM reply to a refused command, counted and logged (the user and the command, never
/// the key: it may be a session ID).
pub(crate) fn refuse(shared: &Shared, conn: &ConnState, command: &str, denied: Denied) -> Frame {
    let user = conn.user.as_ref().map_or("", |u| u.name.as_str());
    let peer = conn.client.peer;
    let stats = &shared.stats;
    let (counter, what, reply) = match denied {
        Denied::Command => (
            &stats.acl_denied_commands,
            "command",
            format!("NOPERM User {user} has no permissions to run the '{command}' command"),
        ),
        Denied::Key => (
            &stats.acl_denied_keys,
            "key",
            "NOPERM No permissions to access a key".to_owned(),
        ),
        Denied::Channel => (
            &stats.acl_denied_channels,
            "channel",
            "NOPERM No permissions to access a channel".to_owned(),
        ),
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(%peer, user, command, "permission denied: {what}");
    Frame::error(reply)
}

/// Runs a parsed command (its checks done by the caller: the connection loop, EXEC, a script).
fn dispatch(ctx: &mut Ctx<'_>, command: Command) -> Reply {
    let frame = match command {
        Command::Get(c) => return get::get(ctx, c),
        Command::Set(c) => set::set(ctx, c),
        Command::GetDel(c) => get::getdel(ctx, c),
        Command::GetEx(c) => getex::getex(ctx, c),
        Command::MGet(c) => return mget::mget(ctx, c),
        Command::MSet(c) => mset::mset(ctx, c),
        Command::Append(c) => append::append(ctx, c),
        Command::StrLen(c) => strlen::strlen(ctx, c),
        Command::IncrBy(c) => incr::incrby(ctx, c),
        Command::Del(c) => del::del(ctx, c),
        Command::Exists(c) => exists::exists(ctx, c),
        Command::Type(c) => type_::type_(ctx, c),
        Command::Expire(c) => expire::expire(ctx, c),
        Command::Ttl(c, form) => ttl::ttl(ctx, c, form),
        Command::Persist(c) => persist::persist(ctx, c),
        Command::Rename(c) => rename::rename(ctx, c),
        Command::Move(c) => move_::move_(ctx, c),
        Command::Scan(c) => return scan::scan(ctx, c),
        Command::Keys(c) => return keys::keys(ctx, c),
        Command::Ping(c) => connection::ping(ctx, c),
        Command::Echo(c) => Frame::Bulk(c.message),
        Command::Hello(c) => return connection::hello(ctx, c),
        Command::Auth(c) => return connection::auth(ctx, c),
        Command::Select(c) => connection::select(ctx, c),
        Command::Subscribe(c) => return pubsub::subscribe(ctx, c),
        Command::Unsubscribe(c) => return pubsub::unsubscribe(ctx, c),
        Command::Publish(c) => pubsub::publish(ctx, c),
        Command::SPublish(c) => pubsub::spublish(ctx, c),
        Command::Pubsub(c) => return pubsub::pubsub(ctx, c),
        Command::Quit => {
            return Reply {
                frame: Some(Frame::ok()),
                then: Then::Close,
            }
        }
        Command::Reset => connection::reset(ctx),
        Command::Multi => multi::multi(ctx),
        Command::Exec => return multi::exec(ctx),
        Command::Discard => multi::discard(ctx),
        Command::Watch(c) => multi::watch(ctx, c.keys),
        Command::Unwatch => multi::unwatch(ctx),
        Command::Client(c) => client::client(ctx, c),
        Command::Info(c) => info::info(ctx, c),
        Command::DbSize => dbsize::dbsize(ctx),
        Command::Flush(c) => flush::flush(ctx, c),
        Command::SwapDb(c) => swapdb::swapdb(ctx, c),
        Command::Time => time::time(ctx),
        Command::Command(c) => command::command(ctx, c),
        Command::Config(c) => config::config(ctx, c),
        Command::Memory(c) => memory::memory(ctx, c),
        Command::Debug(c) => return debug::debug(c),
        Command::Slowlog(c) => slowlog::slowlog(ctx, c),
        Command::Latency(c) => latency::latency(ctx, c),
        Command::Shutdown(c) => return shutdown::shutdown(ctx, c),
        Command::Save => {
            return Reply {
                frame: None,
                then: Then::Save,
            }
        }
        Command::BgSave => save::bgsave(ctx),
        Command::BgRewriteAof => save::bgrewriteaof(ctx),
        Command::LastSave => save::lastsave(ctx),
        Command::HSet(c) => hset::hset(ctx, c),
        Command::HSetNx(c) => hset::hsetnx(ctx, c),
        Command::HMSet(c) => hset::hmset(ctx, c),
        Command::HGet(c) => return hget::hget(ctx, c),
        Command::HMGet(c) => return hget::hmget(ctx, c),
        Command::HExists(c) => return hget::hexists(ctx, c),
        Command::HGetAll(c) => return hgetall::read(ctx, c, hgetall::Part::All),
        Command::HKeys(c) => return hgetall::read(ctx, c, hgetall::Part::Keys),
        Command::HVals(c) => return hgetall::read(ctx, c, hgetall::Part::Values),
        Command::HLen(c) => return hgetall::read(ctx, c, hgetall::Part::Len),
        Command::HDel(c) => hdel::hdel(ctx, c),
        Command::HIncrBy(c) => hincrby::hincrby(ctx, c),
        Command::SAdd(c) => sets::sadd(ctx, c),
        Command::SRem(c) => sets::srem(ctx, c),
        Command::SIsMember(c) => return sets::sismember(ctx, c),
        Command::SMIsMember(c) => return sets::smismember(ctx, c),
        Command::SCard(c) => return sets::scard(ctx, c),
        Command::SMembers(c) => return sets::smembers(ctx, c),
        Command::SPop(c) => return sets::spop(ctx, c),
        Command::SRandMember(c) => return sets::srandmember(ctx, c),
        Command::SScan(c) => return sets::sscan(ctx, c),
        Command::SetAlgebra(c) => return sets::algebra(ctx, c),
        Command::Eval(c) => return eval::eval(ctx, c),
        Command::Script(c) => eval::script(ctx, c),
        Command::SessionCreate(c) => session_create::session_create(ctx, c),
        Command::SessionGet(c) => return session_get::session_get(ctx, c),
        Command::SessionSet(c) => session_set::session_set(ctx, c),
        Command::SessionUnset(c) => session_unset::session_unset(ctx, c),
        Command::SessionTouch(c) => session_touch::session_touch(ctx, c),
        Command::SessionInfo(c) => session_info::session_info(ctx, c),
        Command::SessionRegenerate(c) => session_regenerate::session_regenerate(ctx, c),
        Command::SessionDestroy(c) => session_destroy::session_destroy(ctx, c),
        Command::SessionList(c) => return session_list::session_list(ctx, c),
        Command::SessionCount(c) => session_count::session_count(ctx, c),
        Command::SessionDestroyAll(c) => session_destroyall::session_destroyall(ctx, c),
        Command::ReplicaOf(c) => replication::replicaof(ctx, c),
        Command::Role => replication::role(ctx),
        Command::ReplConf(c) => return replication::replconf(ctx, c),
        Command::Psync(c) => return replication::psync(ctx, c),
        Command::Wait(c) => return replication::wait(ctx, c),
    };
    frame.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessiond_protocol::cmd::COMMANDS;

    fn spec(name: &str) -> &'static sessiond_protocol::cmd::CommandSpec {
        COMMANDS.iter().find(|spec| spec.name == name).unwrap()
    }

    #[test]
    fn only_short_commands_keep_the_clock_reading_for_the_next() {
        for name in [
            "get",
            "set",
            "mget",
            "mset",
            "hset",
            "expire",
            "session.get",
            "session.create",
        ] {
            assert!(keeps_the_time(spec(name)), "{name}");
        }
        for name in [
            "keys",
            "scan",
            "flushall",
            "info",
            "del",
            "unlink",
            "session.destroy",
            "session.list",
            "session.destroyall",
            "sinterstore",
            "sunionstore",
            "sdiffstore",
        ] {
            assert!(!keeps_the_time(spec(name)), "{name}");
        }
    }

    /// The probe: a batch whose first command took long (here an MGET of 100,000 keys,
    /// flagged `fast`; the manual clock moves 600 ms while it runs) served the next command a
    /// key 600 ms past its deadline, at the batch's first reading of the clock.
    #[test]
    fn a_long_command_ends_the_reuse_of_the_batch_reading() {
        let (clock, manual) = crate::Clock::manual(1_000_000);
        let store = Store::new(clock.clone());
        let key = Bytes::from_static(b"k");
        store.upsert(&key, 1_000_000, |_| {
            let value = crate::store::Value::Str(Bytes::from_static(b"v"));
            (Some(crate::store::Entry::new(value, 1_000_100)), ())
        });
        let mut batch = BatchClock::default();
        let run = |batch: &mut BatchClock, name: &str, work: Work, reply: usize| {
            let now_ms = batch.now_ms(&clock);
            manual.advance(if work.args > Work::SHORT_ARGS { 600 } else { 0 });
            if !keeps_the_reading(Some(spec(name)), work, |bytes| bytes + reply) {
                batch.stale();
            }
            now_ms
        };
        let short = Work { args: 2, bytes: 8 };
        run(&mut batch, "get", short, 8);
        let mget = Work {
            args: 100_001,
            bytes: 700_000,
        };
        run(&mut batch, "mget", mget, 100_000 * 5);
        let now_ms = run(&mut batch, "get", short, 8);
        assert_eq!(now_ms, 1_000_600);
        assert!(
            store.read(&key, now_ms, |node| node.is_none()),
            "served past its deadline"
        );

        // Short commands keep it; a large value (in or out) ends it.
        let now_ms = run(&mut batch, "get", short, 8);
        assert_eq!(run(&mut batch, "get", short, 8), now_ms);
        run(&mut batch, "get", short, 16 << 20);
        manual.advance(1);
        assert_eq!(run(&mut batch, "get", short, 8), now_ms + 1);
    }

    #[test]
    fn frame_bytes_counts_strings_and_stops_past_the_bound() {
        let bulk = |n: usize| Frame::Bulk(Bytes::from(vec![b'x'; n]));
        assert_eq!(frame_bytes(&bulk(10), 5), 15);
        let map = Frame::Map(vec![(bulk(3), bulk(4))]);
        assert_eq!(frame_bytes(&map, 0), 3 + 4 + 2);
        let huge = Frame::Array((0..1_000_000).map(|_| bulk(1)).collect());
        assert!(frame_bytes(&huge, 0) > Work::SHORT_BYTES);
    }

    #[test]
    fn auth_hello_and_reset_end_a_decode_ahead() {
        let args = |words: &[&'static str]| -> Vec<Bytes> {
            words
                .iter()
                .map(|w| Bytes::from_static(w.as_bytes()))
                .collect()
        };
        for changer in [
            &["auth", "pw"][..],
            &["HELLO", "3", "AUTH", "u", "p"],
            &["Reset"],
        ] {
            assert!(may_change_authentication(&args(changer)), "{changer:?}");
        }
        for other in [&["GET", "auth"][..], &["PING"], &[]] {
            assert!(!may_change_authentication(&args(other)), "{other:?}");
        }
    }
}
