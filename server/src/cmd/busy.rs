//! Long-running scripts as the rest of the server sees them.
//!
//! A script runs on the thread of the connection that called it, in an atomic block over the
//! shards it holds ([`crate::store::Store::atomic`]). For its first [`INLINE_BUDGET`] nothing
//! else happens: others needing its shards wait on their locks, as for a write. Past it, its
//! runner's [`ScriptWatch`] registers it as a long block ([`LongBlocks`](crate::store::LongBlocks)), so that:
//! - a command that needs its shards waits without holding the runtime's thread
//!   ([`Pending::Deferred`]), and once the script has run past `busy-reply-threshold` is
//!   answered [`BUSY`] instead; commands on other shards are served as usual;
//! - SCRIPT KILL ([`script_kill`]) stops it if it has written nothing, and a shutdown stops it
//!   too (every script with SHUTDOWN NOSAVE);
//! - the script leaves the runtime's thread: one that has written nothing yet is stopped and
//!   run again from its start on a blocking thread ([`Interrupt::Offload`], [`offload`]: it
//!   has had no effect, so running it again is unseen); one that has written hands its worker's
//!   other tasks to another thread on the multi-thread runtime (`step_aside`). On the
//!   one-thread runtime a script that writes and then runs long keeps the only thread until it
//!   ends, as on Redis, but without BUSY replies meanwhile (documented in docs/scripting.md).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sessiond_protocol::cmd::{position, CommandSpec, COMMANDS};
use sessiond_protocol::Frame;

use super::{multi, ConnState, Reply, Then};
use crate::script::{Interrupt, Watchdog};
use crate::shared::Shared;
use crate::store::long_blocks::{Gate, Held, Killed, LongBlock};

/// Redis's reply to a command that needs what a busy script holds.
pub const BUSY: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";

/// How long a script runs on its connection's thread before it counts as long.
pub const INLINE_BUDGET: Duration = Duration::from_millis(2);

/// How long a script that steps aside waits for another thread to take its worker's tasks.
const HANDOFF: Duration = Duration::from_millis(1);

/// How often a long script on a worker steps aside again (once its worker's tasks have gone to
/// another thread, a step aside costs nothing: the thread has none left to hand over).
const STEP_ASIDE_AGAIN: Duration = Duration::from_millis(20);

/// What a connection does before its next command, set with [`Then::Pending`].
pub enum Pending {
    /// Waits until the long blocks change past `generation`, then runs `args` (again through
    /// the gate).
    Deferred {
        /// The command, not yet run.
        args: Vec<Bytes>,
        /// The registry's generation when it was deferred.
        generation: u64,
    },
    /// Runs this on a blocking thread and sends its reply: a long script run again there.
    Offload(Box<dyn FnOnce() -> Frame + Send + Sync>),
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pending::Deferred { generation, .. } => f
                .debug_struct("Deferred")
                .field("generation", generation)
                .finish_non_exhaustive(),
            Pending::Offload(_) => f.write_str("Offload"),
        }
    }
}

/// A command about to run while a long block is registered: `Ok(args)` runs it; `Err` is its
/// reply, BUSY, or [`Then::Pending`] with the command deferred.
pub fn gate(shared: &Shared, conn: &mut ConnState, args: Vec<Bytes>) -> Result<Vec<Bytes>, Reply> {
    let blocks = shared.dbs.long_blocks();
    let Some(needed) = needs(shared, conn, &args) else {
        return Ok(args);
    };
    match blocks.gate(&needed) {
        Gate::Go => Ok(args),
        // EXEC refused ends the transaction, as Redis's execCommandAbort.
        Gate::Busy
            if conn.multi.is_some()
                && args
                    .first()
                    .is_some_and(|n| n.eq_ignore_ascii_case(b"exec")) =>
        {
            Err(multi::refuse_exec(conn, &Frame::error(BUSY)).into())
        }
        Gate::Busy => Err(Frame::error(BUSY).into()),
        Gate::Wait(generation) => {
            conn.pending = Some(Box::new(Pending::Deferred { args, generation }));
            Err(Reply {
                frame: None,
                then: Then::Pending,
            })
        }
    }
}

/// The shards `args` needs, `None` when it touches none (or is not a command).
fn needs(shared: &Shared, conn: &ConnState, args: &[Bytes]) -> Option<Held> {
    let spec = args
        .first()
        .and_then(|name| position(name))
        .and_then(|index| COMMANDS.get(index))?;
    // A key is in the same shard of every database: the first one's numbers serve for all.
    let store = &**shared.dbs.first();
    match spec.name {
        // SCRIPT LOAD/EXISTS/FLUSH touch no key; SCRIPT KILL is what a busy server is for.
        "script" => None,
        // A transaction's bookkeeping touches no key (EXEC's queue is below; WATCH reads its
        // keys' shards, as declared).
        "multi" | "discard" | "unwatch" => None,
        "shutdown"
            if args
                .iter()
                .skip(1)
                .any(|a| a.eq_ignore_ascii_case(b"nosave")) =>
        {
            None
        }
        // Its final save reads every shard.
        "shutdown" => Some(Held::All),
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" => {
            // A script known to touch keys it does not declare holds every shard.
            let sha = if spec.name.starts_with("evalsha") {
                crate::script::parse_sha(args.get(1)?)
            } else {
                Some(crate::script::sha1_hex(args.get(1)?))
            };
            if sha.is_some_and(|sha| shared.scripts.holds_all(&sha)) {
                return Some(Held::All);
            }
            // A script declaring no key may touch any: it takes every shard.
            let count = std::str::from_utf8(args.get(2)?)
                .ok()?
                .parse::<usize>()
                .ok()?;
            let keys = args.get(3..3usize.checked_add(count)?)?;
            if keys.is_empty() {
                return Some(Held::All);
            }
            Some(Held::Some(
                keys.iter().map(|key| store.shard_of_key(key)).collect(),
            ))
        }
        "exec" => {
            let queued = conn.multi.as_deref()?;
            let by_db = multi::shards_of(&shared.dbs, conn.db, queued, conn.watch.as_deref());
            Some(by_db.map_or(Held::All, |by_db| {
                Held::Some(by_db.into_iter().flat_map(|(_, shards)| shards).collect())
            }))
        }
        // Keys of two databases, or all of both.
        "swapdb" => Some(Held::All),
        // Its new ID lands in any shard (as SESSION.CREATE's, keyless, does), and a move to
        // another user may destroy that user's oldest sessions anywhere.
        "session.regenerate" => Some(Held::All),
        _ => keyed(store, spec, args),
    }
}

/// The shards of the keys `spec` declares in `args`; every shard for a keyless command that is
/// not a @connection one (as EXEC counts them).
fn keyed(store: &crate::store::Store, spec: &CommandSpec, args: &[Bytes]) -> Option<Held> {
    let mut shards = Vec::new();
    if !multi::key_shards(store, spec, args, &mut shards) {
        return Some(Held::All);
    }
    if shards.is_empty() && spec.touches_no_key() {
        return None;
    }
    Some(Held::Some(shards))
}

/// SCRIPT KILL, with Redis's replies.
pub fn script_kill(shared: &Shared) -> Frame {
    match shared.dbs.long_blocks().kill() {
        Killed::Asked => Frame::ok(),
        Killed::NoneRunning => Frame::error("NOTBUSY No scripts in execution right now."),
        Killed::AllWrote => Frame::error(
            "UNKILLABLE Sorry the script already executed write commands against the dataset. \
             You can either wait the script termination or kill the server in a hard way using \
             the SHUTDOWN NOSAVE command.",
        ),
    }
}

/// What a script's runner reports to while the script runs, and asks every thousand Lua
/// instructions or so ([`ScriptWatch::tick`]). One per thread, reused from run to run
/// ([`ScriptWatch::on_this_thread`]), so that a script's run allocates nothing for it; the
/// runner holds it as a shared trait object, hence the lock (never contended: one run at a
/// time uses it).
#[derive(Debug, Default)]
pub struct ScriptWatch {
    run: Mutex<Option<Run>>,
}

/// The run a [`ScriptWatch`] watches.
#[derive(Debug)]
struct Run {
    shared: Arc<Shared>,
    threshold: Option<Duration>,
    started: Instant,
    /// The shards the script holds (or is about to).
    held: Held,
    wrote: bool,
    /// Its registration, once it runs long.
    long: Option<Arc<LongBlock>>,
    /// Whether it may be stopped and run again elsewhere once long ([`Interrupt::Offload`]).
    may_offload: bool,
    /// Whether it runs on a blocking thread already.
    offloaded: bool,
    /// Whether it runs inside EXEC, whose block holds every shard whatever it declares.
    in_transaction: bool,
    /// When it last handed its worker's tasks over ([`step_aside`]).
    stepped_aside: Instant,
}

thread_local! {
    static WATCH: Arc<ScriptWatch> = Arc::new(ScriptWatch::default());
}

impl ScriptWatch {
    /// This thread's watch.
    pub fn on_this_thread() -> Arc<ScriptWatch> {
        WATCH.with(Arc::clone)
    }

    fn run(&self) -> MutexGuard<'_, Option<Run>> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts watching a script starting now on its connection's thread, until the returned
    /// guard drops. `in_transaction`: it runs inside EXEC, whose block holds every shard (an
    /// EVAL in the queue makes it so), and which it cannot leave to run elsewhere.
    pub fn begin(&self, shared: &Arc<Shared>, in_transaction: bool) -> Watching<'_> {
        *self.run() = Some(Run {
            shared: Arc::clone(shared),
            threshold: threshold(shared),
            started: Instant::now(),
            held: if in_transaction {
                Held::All
            } else {
                Held::Some(Vec::new())
            },
            wrote: false,
            long: None,
            may_offload: !in_transaction && tokio::runtime::Handle::try_current().is_ok(),
            offloaded: false,
            in_transaction,
            stepped_aside: Instant::now(),
        });
        Watching(self)
    }

    /// A watch for a script run again on a blocking thread, registered as `block` by
    /// [`ScriptWatch::hand_over`]; the caller ends it with [`ScriptWatch::end`] (or its guard).
    pub fn offloaded(shared: &Arc<Shared>, block: Arc<LongBlock>) -> Arc<ScriptWatch> {
        let run = Run {
            shared: Arc::clone(shared),
            threshold: threshold(shared),
            started: block.started(),
            held: Held::All,
            wrote: false,
            long: Some(block),
            may_offload: false,
            offloaded: true,
            in_transaction: false,
            stepped_aside: Instant::now(),
        };
        Arc::new(ScriptWatch {
            run: Mutex::new(Some(run)),
        })
    }

    /// Stops watching: a long script leaves the registry.
    pub fn end(&self) {
        if let Some(run) = self.run().take() {
            if let Some(block) = &run.long {
                run.shared.dbs.long_blocks().unregister(block);
            }
        }
    }

    /// Registers the script, stopped with [`Interrupt::Offload`], for its run on a blocking
    /// thread: registered before it leaves this thread, it keeps those needing its shards
    /// waiting until it is back in its block there. The start time is kept: the threshold
    /// counts from the first start. `None` when no run is watched.
    pub fn hand_over(&self) -> Option<Arc<LongBlock>> {
        let run = self.run();
        let run = run.as_ref()?;
        Some(
            run.shared
                .dbs
                .long_blocks()
                .register(run.held.clone(), run.started, false),
        )
    }
}

impl Watchdog for ScriptWatch {
    /// The script is about to hold `shards` (`None`: every shard).
    fn holding(&self, shards: Option<&[usize]>) {
        let mut run = self.run();
        let Some(run) = run.as_mut() else {
            return;
        };
        if run.in_transaction {
            return;
        }
        run.held = shards.map_or(Held::All, |shards| Held::Some(shards.to_vec()));
        if let Some(block) = &run.long {
            run.shared
                .dbs
                .long_blocks()
                .set_held(block, run.held.clone());
        }
    }

    /// The script is about to run its first write: refused if SCRIPT KILL (or a shutdown)
    /// asked it to stop first, as one step with that ask (see [`LongBlock::start_writing`]).
    fn wrote(&self) -> Result<(), Interrupt> {
        let mut run = self.run();
        let Some(run) = run.as_mut() else {
            return Ok(());
        };
        if let Some(block) = &run.long {
            if !block.start_writing() {
                return Err(Interrupt::Killed);
            }
        }
        run.wrote = true;
        Ok(())
    }

    /// Elsewhere when a long script may hold shards this one would wait for here: on the
    /// runtime's thread that wait would hold up every connection on it.
    fn restart_elsewhere(&self) -> bool {
        let mut run = self.run();
        let Some(run) = run.as_mut() else {
            return false;
        };
        let elsewhere = run.may_offload && run.shared.dbs.long_blocks().active();
        if elsewhere {
            // It starts over holding every shard: registered so before it leaves.
            run.held = Held::All;
        }
        elsewhere
    }

    /// Called every thousand instructions or so: `Err` stops the script.
    fn tick(&self) -> Result<(), Interrupt> {
        let mut guard = self.run();
        let Some(run) = guard.as_mut() else {
            return Ok(());
        };
        let mut stepped_in = false;
        let block = match &run.long {
            Some(block) => {
                // What it wrote since is not held for its end either.
                run.shared.dbs.feed().release_held();
                // Again now and then: under load the first hand-over may find no thread ready
                // to take the worker's tasks, which would then wait for the script.
                if !run.offloaded && run.stepped_aside.elapsed() >= STEP_ASIDE_AGAIN {
                    stepped_in = true;
                }
                Arc::clone(block)
            }
            None => {
                if run.started.elapsed() < INLINE_BUDGET {
                    return Ok(());
                }
                if run.may_offload && !run.wrote {
                    return Err(Interrupt::Offload);
                }
                // Running long: the frames of the commands before it in its connection's
                // pipeline go now, not when it ends (the whole stream waits for them).
                run.shared.dbs.feed().release_held();
                let blocks = run.shared.dbs.long_blocks();
                let block = blocks.register(run.held.clone(), run.started, run.wrote);
                run.long = Some(Arc::clone(&block));
                stepped_in = !run.offloaded;
                block
            }
        };
        if block.stop().is_some() {
            return Err(Interrupt::Killed);
        }
        if let Some(threshold) = run.threshold {
            if !block.is_busy() && block.started().elapsed() >= threshold {
                run.shared.dbs.long_blocks().set_busy(&block);
            }
        }
        if stepped_in {
            run.stepped_aside = Instant::now();
        }
        drop(guard);
        if stepped_in {
            step_aside();
        }
        Ok(())
    }
}

/// Ends a [`ScriptWatch`]'s run when dropped, by return or unwind.
#[derive(Debug)]
pub struct Watching<'a>(&'a ScriptWatch);

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The busy-reply threshold, `None` for never.
fn threshold(shared: &Shared) -> Option<Duration> {
    Some(shared.live.busy_reply_threshold()).filter(|t| !t.is_zero())
}

/// A script that has written runs on past its budget on a worker of the multi-thread runtime:
/// the worker's queued tasks go to another thread (tokio's `block_in_place` hands the worker's
/// core over), so that the connections queued behind it are served meanwhile. Nothing to do on
/// the one-thread runtime, or off a runtime's task.
fn step_aside() {
    if crate::store::on_multi_thread_worker() {
        // The core goes to a thread of the blocking pool; waiting a moment lets that thread
        // take it before this one would take it back.
        tokio::task::block_in_place(|| std::thread::sleep(HANDOFF));
    }
}

/// The reply of a script handed over ([`ScriptWatch::hand_over`]): `job` runs it again on a
/// blocking thread with a watch of `block`; the connection sends what it answers.
pub fn offload(
    shared: &Arc<Shared>,
    conn: &mut ConnState,
    block: Arc<LongBlock>,
    job: impl FnOnce(&Arc<ScriptWatch>) -> Frame + Send + Sync + 'static,
) -> Reply {
    let shared = Arc::clone(shared);
    conn.pending = Some(Box::new(Pending::Offload(Box::new(move || {
        let watch = ScriptWatch::offloaded(&shared, block);
        // Unregistered however the job ends, a panic included: a block left registered would
        // hold up every command on its shards.
        let _watching = Watching(&watch);
        // As at dispatch (`cmd::execute`), read again now the script runs: a writable
        // replica's own writes are local, not in the feed that carries its primary's stream.
        if shared.repl.gate() == crate::role::Gate::Writable {
            crate::store::local_writes(|| job(&watch))
        } else {
            job(&watch)
        }
    }))));
    Reply {
        frame: None,
        then: Then::Pending,
    }
}
