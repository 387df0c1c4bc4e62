//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH, as Redis 7 (src/multi.c).
//!
//! After MULTI, [`queue`] keeps each command's already decoded arguments (checked for what
//! Redis checks at queue time: an unknown command, the arity, authentication, `no_multi`, the
//! user's permissions; any of those makes EXEC answer EXECABORT, and an EXEC of the wrong
//! arity discards the transaction at once) and answers QUEUED. EXEC runs them in one atomic
//! block ([`Databases::atomic`]): the map shards of every key the commands declare (their key
//! positions in the command table, each in the database it will run in: a queued SELECT moves
//! the commands after it, and MOVE's destination counts) and of the watched keys are
//! write-locked in ascending order for the whole of it, every shard of every database when a
//! command declares no keys (FLUSHALL, KEYS, SCAN, DBSIZE, INFO, SWAPDB...), so no other client
//! sees half of a transaction. Run-time errors stay in the reply array; nothing is rolled back.
//! A reply over
//! `client-output-buffer-limit` closes the client, as Redis does, but only once every queued
//! command has run.
//!
//! The queue and the watched keys of a connection count against its
//! `client-query-buffer-limit` (Redis has no bound of their own), so queuing cannot grow the
//! server's memory without bound.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use sessiond_protocol::cmd::{position, CommandFlags, CommandSpec, COMMANDS};
use sessiond_protocol::{Command, CommandError, Frame};

use super::{dispatch, error, misconf, refuse, refused_while_saves_fail, Ctx, Reply, Then};
use crate::auth::Denied;
use crate::shared::Shared;
use crate::store::{Databases, Dirty, Store};

/// Bytes a queued command or watched key costs beyond its arguments: its vector and handles.
const QUEUED_OVERHEAD: usize = 64;
/// Bytes each argument's handle costs.
const ARG_OVERHEAD: usize = std::mem::size_of::<Bytes>();

/// The commands queued since MULTI.
#[derive(Debug, Default)]
pub struct Queued {
    /// Each command's index in the command table and its arguments, the name first.
    commands: Vec<(usize, Vec<Bytes>)>,
    /// What they hold, counted against `client-query-buffer-limit`.
    bytes: usize,
    /// A command was refused while queuing: EXEC answers EXECABORT (Redis's DIRTY_EXEC).
    failed: bool,
}

/// The keys a connection watches; dropping it unwatches them.
#[derive(Debug)]
pub struct Watching {
    dbs: Arc<Databases>,
    /// Set by any change to a watched key.
    dirty: Dirty,
    /// Each key, its database, and whether it was past its deadline when watched.
    keys: Vec<(Bytes, usize, bool)>,
    /// What they hold, counted against `client-query-buffer-limit`.
    bytes: usize,
}

impl Drop for Watching {
    fn drop(&mut self) {
        for (key, db, _) in &self.keys {
            self.dbs.unwatch(*db, key, &self.dirty);
        }
    }
}

/// The most a connection's queue and watched keys may hold.
fn budget(shared: &Shared) -> usize {
    shared.config.limits.max_query_buffer
}

/// The bytes `args` cost in a queue.
fn cost(args: &[Bytes]) -> usize {
    args.iter()
        .map(|arg| arg.len() + ARG_OVERHEAD)
        .sum::<usize>()
        + QUEUED_OVERHEAD
}

/// Whether `spec` runs at once inside MULTI instead of being queued (as in Redis's
/// processCommand).
fn runs_at_once(spec: &CommandSpec) -> bool {
    matches!(
        spec.name,
        "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
    )
}

/// Inside MULTI: queues `args` and answers QUEUED, or refuses it and flags the transaction.
/// `Err(args)` hands back a command that runs at once (EXEC, DISCARD, MULTI, WATCH, QUIT,
/// RESET).
pub fn queue(
    shared: &Arc<Shared>,
    conn: &mut super::ConnState,
    args: Vec<Bytes>,
) -> Result<Frame, Vec<Bytes>> {
    let index = args.first().and_then(|name| position(name));
    let Some((index, spec)) = index.and_then(|i| COMMANDS.get(i).map(|spec| (i, spec))) else {
        let mut items = args.into_iter();
        let name = items.next().unwrap_or_default();
        let unknown = CommandError::Unknown {
            name,
            args: items.collect(),
        };
        return Ok(flag(conn, error(unknown)));
    };
    let count = args.len() as i64;
    let arity = i64::from(spec.arity);
    let wrong_arity = (arity > 0 && count != arity) || (arity < 0 && count < -arity);
    if runs_at_once(spec) && !wrong_arity {
        return Err(args);
    }
    conn.client.record_command(index, 0);
    if wrong_arity {
        // As Redis's rejectCommand: the arity error of any command flags the transaction, the
        // ones that otherwise run at once (MULTI, WATCH, DISCARD...) included; EXEC's discards
        // it and answers EXECABORT with the reason.
        let wrong = error(CommandError::WrongArity(spec.name));
        if spec.name == "exec" {
            return Ok(refuse_exec(conn, &wrong));
        }
        return Ok(flag(conn, wrong));
    }
    if conn.user.is_none() && !spec.flags.contains(CommandFlags::NO_AUTH) {
        return Ok(flag(conn, Frame::error("NOAUTH Authentication required.")));
    }
    let gate = shared.repl.gate();
    if gate != crate::role::Gate::Open {
        if let Some(refusal) = crate::role::refusal(gate, spec) {
            return Ok(flag(conn, Frame::error(refusal)));
        }
    }
    if spec.flags.contains(CommandFlags::NO_MULTI) {
        return Ok(flag(
            conn,
            Frame::error("ERR Command not allowed inside a transaction"),
        ));
    }
    if conn.restricted {
        if let Some(user) = &conn.user {
            if let Err(denied) = user.permit(spec, &args) {
                let refused = refuse(shared, conn, spec.name, denied);
                return Ok(flag(conn, refused));
            }
        }
    }
    let Some(queued) = conn.multi.as_deref_mut() else {
        return Err(args);
    };
    if queued.failed {
        // No sense holding what EXEC will discard (Redis does not queue either).
        return Ok(Frame::simple("QUEUED"));
    }
    let bytes = queued.bytes.saturating_add(cost(&args));
    let watched = conn.watch.as_ref().map_or(0, |w| w.bytes);
    if bytes.saturating_add(watched) > budget(shared) {
        queued.commands = Vec::new();
        queued.bytes = 0;
        queued.failed = true;
        return Ok(Frame::error(
            "ERR the transaction's queued commands exceed 'client-query-buffer-limit'",
        ));
    }
    queued.bytes = bytes;
    // Copies: each argument is a slice of the read buffer, and would keep all of it alive
    // until EXEC, with only the argument counted against the bound. One copy of what the
    // budget already bounds, as Redis copies its arguments out of the query buffer.
    let mut args = args;
    for arg in &mut args {
        *arg = Bytes::copy_from_slice(arg);
    }
    queued.commands.push((index, args));
    Ok(Frame::simple("QUEUED"))
}

/// Flags the transaction (EXEC will answer EXECABORT) and answers `reply`.
fn flag(conn: &mut super::ConnState, reply: Frame) -> Frame {
    if let Some(queued) = conn.multi.as_deref_mut() {
        queued.failed = true;
    }
    reply
}

/// `MULTI`.
pub fn multi(ctx: &mut Ctx<'_>) -> Frame {
    if ctx.conn.multi.is_some() {
        return Frame::error("ERR MULTI calls can not be nested");
    }
    ctx.conn.multi = Some(Box::default());
    Frame::ok()
}

/// `DISCARD`: forgets the queue and the watched keys.
pub fn discard(ctx: &mut Ctx<'_>) -> Frame {
    if ctx.conn.multi.take().is_none() {
        return Frame::error("ERR DISCARD without MULTI");
    }
    ctx.conn.watch = None;
    Frame::ok()
}

/// `UNWATCH`.
pub fn unwatch(ctx: &mut Ctx<'_>) -> Frame {
    ctx.conn.watch = None;
    Frame::ok()
}

/// `WATCH key [key ...]`.
pub fn watch(ctx: &mut Ctx<'_>, keys: Vec<Bytes>) -> Frame {
    if ctx.conn.multi.is_some() {
        return Frame::error("ERR WATCH inside MULTI is not allowed");
    }
    let budget = budget(ctx.shared);
    let watching = ctx.conn.watch.get_or_insert_with(|| {
        Box::new(Watching {
            dbs: Arc::clone(&ctx.shared.dbs),
            dirty: Dirty::default(),
            keys: Vec::new(),
            bytes: 0,
        })
    });
    if watching.dirty.load(std::sync::atomic::Ordering::Relaxed) {
        // EXEC fails anyway: no point in watching more (as Redis).
        return Frame::ok();
    }
    for key in keys {
        let bytes = watching.bytes.saturating_add(key.len() + QUEUED_OVERHEAD);
        if bytes > budget {
            return Frame::error("ERR the watched keys exceed 'client-query-buffer-limit'");
        }
        // A copy: the argument is a slice of the read buffer, and would keep all of it alive
        // for as long as the key is watched, with only the key counted.
        let key = Bytes::copy_from_slice(&key);
        // A watched key is (database, key): the same name in another database is another key.
        let db = ctx.conn.db;
        if let Some(expired) = watching.dbs.watch(db, &key, &watching.dirty, ctx.now_ms) {
            watching.bytes = bytes;
            watching.keys.push((key, db, expired));
        }
    }
    Frame::ok()
}

/// The map shards, by database, the queued commands declare keys in (each in the database it
/// will run in: a queued SELECT moves the ones after it) and the watched keys'; `None` when one
/// of them touches the keyspace without declaring keys (it takes every shard of every
/// database).
pub(super) fn shards_of(
    dbs: &Databases,
    start_db: usize,
    queued: &Queued,
    watching: Option<&Watching>,
) -> Option<Vec<(usize, Vec<usize>)>> {
    let mut shards: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut add = |db: usize, shard: usize| match shards.iter_mut().find(|(d, _)| *d == db) {
        Some((_, list)) => list.push(shard),
        None => shards.push((db, vec![shard])),
    };
    let mut db = start_db;
    for (index, args) in &queued.commands {
        let spec = COMMANDS.get(*index)?;
        if spec.name == "select" {
            // As SELECT will do at run time: an index it refuses leaves the database as it is.
            if let Some(to) = args.get(1).and_then(|arg| db_index(arg, dbs)) {
                db = to;
            }
            continue;
        }
        let mut keyed = Vec::new();
        if !key_shards(dbs.db(db), spec, args, &mut keyed) {
            return None;
        }
        for shard in keyed {
            add(db, shard);
        }
        if spec.name == "move" {
            // Its key in the destination database too, which no key position declares.
            if let (Some(key), Some(to)) = (args.get(1), args.get(2).and_then(|a| db_index(a, dbs)))
            {
                add(to, dbs.db(to).shard_of_key(key));
            }
        }
    }
    for (key, db, _) in watching.map_or(&[][..], |w| &w.keys[..]) {
        add(*db, dbs.db(*db).shard_of_key(key));
    }
    Some(shards)
}

/// `arg` as the index of an existing database, as SELECT and MOVE read it.
fn db_index(arg: &[u8], dbs: &Databases) -> Option<usize> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|arg| arg.parse::<i64>().ok())
        .and_then(|index| usize::try_from(index).ok())
        .filter(|&index| index < dbs.count())
}

/// Adds the shards of the keys `spec` declares in `args` to `shards`; false when it declares
/// none but touches the keyspace (it takes every shard). A keyless @connection command (PING,
/// ECHO, CLIENT, COMMAND, HELLO, AUTH...) touches no shard.
pub(super) fn key_shards(
    store: &Store,
    spec: &CommandSpec,
    args: &[Bytes],
    shards: &mut Vec<usize>,
) -> bool {
    if spec.first_key <= 0 {
        return spec.touches_no_key();
    }
    shards.extend(spec.key_args(args).map(|key| store.shard_of_key(key)));
    true
}

/// `EXEC`: runs the queue in one atomic block and answers the array of their replies; a null
/// array when a watched key changed, EXECABORT when a command was refused while queuing.
pub fn exec(ctx: &mut Ctx<'_>) -> Reply {
    let Some(queued) = ctx.conn.multi.take() else {
        return Frame::error("ERR EXEC without MULTI").into();
    };
    // Unwatched when the transaction ends, whatever its outcome.
    let watching = ctx.conn.watch.take();
    // The role may have changed since the commands were queued (a REPLICAOF, a full sync
    // begun): as Redis's processCommand judges EXEC by its queued commands' flags, a write
    // queued on a primary does not run on a read-only replica, nor anything during a load.
    let gate = ctx.shared.repl.gate();
    if gate != crate::role::Gate::Open {
        let refused = queued
            .commands
            .iter()
            .filter_map(|(i, _)| COMMANDS.get(*i))
            .find_map(|spec| crate::role::refusal(gate, spec));
        if let Some(refusal) = refused {
            return abort(refusal).into();
        }
    }
    if queued.failed {
        return Frame::error("EXECABORT Transaction discarded because of previous errors.").into();
    }
    let dirty = |watching: &Option<Box<Watching>>| {
        watching
            .as_ref()
            .is_some_and(|w| w.dirty.load(std::sync::atomic::Ordering::Relaxed))
    };
    if dirty(&watching) {
        return Frame::NullArray.into();
    }
    // MISCONF and OOM are checked once for the transaction as a whole, before any lock (as
    // Redis checks EXEC against its queued commands' flags).
    let specs = || queued.commands.iter().filter_map(|(i, _)| COMMANDS.get(*i));
    let disk_errors = ctx.shared.persistence.disk_errors();
    if disk_errors != 0 && specs().any(refused_while_saves_fail) {
        if let Some(refusal) = misconf(ctx.shared, disk_errors) {
            return abort(&refusal).into();
        }
    }
    let maxmemory = ctx.shared.live.maxmemory();
    if maxmemory > 0
        && specs().any(|spec| spec.flags.contains(CommandFlags::DENYOOM))
        && !ctx
            .shared
            .dbs
            .make_room(maxmemory, ctx.shared.live.maxmemory_policy(), ctx.now_ms)
    {
        return abort("OOM command not allowed when used memory > 'maxmemory'.").into();
    }
    let dbs = Arc::clone(&ctx.shared.dbs);
    let shards = shards_of(&dbs, ctx.conn.db, &queued, watching.as_deref());
    let blocks: Vec<(usize, Option<&[usize]>)> = match &shards {
        Some(shards) => shards
            .iter()
            .map(|(db, list)| (*db, Some(&list[..])))
            .collect(),
        None => (0..dbs.count()).map(|db| (db, None)).collect(),
    };
    let commands = queued.commands;
    let now_ms = ctx.now_ms;
    // The block's contract: every key the commands touch is in `shards`, and none of them
    // awaits (SAVE and SHUTDOWN are `no_multi`, refused while queuing).
    let then = dbs.atomic_unswapped(&blocks, || exec_locked(ctx, &watching, commands, now_ms));
    drop(watching);
    match then {
        Then::OutputLimit => Reply::over_limit(),
        then => Reply { frame: None, then },
    }
}

/// EXEC's work once its locks are held: the watched keys checked, then every command run.
fn exec_locked(
    ctx: &mut Ctx<'_>,
    watching: &Option<Box<Watching>>,
    commands: Vec<(usize, Vec<Bytes>)>,
    now_ms: u64,
) -> Then {
    let dirty = |watching: &Option<Box<Watching>>| {
        watching
            .as_ref()
            .is_some_and(|w| w.dirty.load(std::sync::atomic::Ordering::Relaxed))
    };
    // Under the locks: no change to a watched key can come between this check and the
    // commands.
    let expired = watching.as_ref().is_some_and(|w| {
        w.keys
            .iter()
            .any(|(key, db, was)| !was && ctx.shared.dbs.db(*db).expired_since_watch(key, now_ms))
    });
    if dirty(watching) || expired {
        Frame::NullArray.encode(ctx.conn.version(), ctx.out);
        return Then::Continue;
    }
    let start = ctx.out.len();
    let _ = write!(ctx.out, "*{}\r\n", commands.len());
    // A command that closes the connection (AUTH at `--max-auth-failures`) does so after
    // EXEC's reply, as after the command on its own. A reply over the output limit closes
    // it without one (as Redis), but only after the rest has run: all or none. Their
    // replies are dropped as they come, so the output stays under the limit meanwhile.
    let mut then = Then::Continue;
    for (index, args) in commands {
        let reply = run_queued(ctx, index, args);
        if then == Then::OutputLimit {
            ctx.out.truncate(start);
            continue;
        }
        if let Some(frame) = reply.frame {
            frame.encode(ctx.conn.version(), ctx.out);
        } else if let Then::Wait(wait) = reply.then {
            // WAIT does not block inside a transaction (as Redis): the count now.
            wait.now(&ctx.shared.repl)
                .encode(ctx.conn.version(), ctx.out);
        } else if let Then::Sleep(_) = reply.then {
            // DEBUG SLEEP: a transaction holds its keys, so it does not wait inside one.
            Frame::ok().encode(ctx.conn.version(), ctx.out);
        }
        if reply.then == Then::OutputLimit {
            ctx.out.truncate(start);
            then = Then::OutputLimit;
        } else if reply.then == Then::Close {
            then = Then::Close;
        }
    }
    then
}

/// EXEC refused before it runs (its arity, authentication, permission): as Redis's
/// rejectCommand and execCommandAbort, the transaction and the watches end, and the refusal
/// comes as EXECABORT's reason (without ERR, which Redis's format-built refusals lack).
pub fn refuse_exec(conn: &mut super::ConnState, refusal: &Frame) -> Frame {
    conn.multi = None;
    conn.watch = None;
    let Frame::Error(message) = refusal else {
        return refusal.clone();
    };
    let message = String::from_utf8_lossy(message);
    abort(message.strip_prefix("ERR ").unwrap_or(&message))
}

/// EXECABORT for a reason found at EXEC.
fn abort(reason: &str) -> Frame {
    Frame::error(format!(
        "EXECABORT Transaction discarded because of: {reason}"
    ))
}

/// Runs one queued command inside EXEC's block.
fn run_queued(ctx: &mut Ctx<'_>, index: usize, args: Vec<Bytes>) -> Reply {
    ctx.stats.commands += 1;
    // Permissions again, in case the user changed since queuing (an AUTH in the transaction).
    if ctx.conn.restricted {
        if let (Some(user), Some(spec)) = (&ctx.conn.user, COMMANDS.get(index)) {
            if let Err(denied) = user.permit(spec, &args) {
                let reason = match denied {
                    Denied::Command => "no permission to execute the command or subcommand",
                    Denied::Key => "no permission to touch the specified keys",
                    Denied::Channel => {
                        "no permission to access one of the channels used as arguments"
                    }
                };
                return Frame::error(format!(
                    "NOPERM ACLs rules changed between the moment the transaction was \
                     accumulated and the EXEC call. This command is no longer allowed for the \
                     following reason: {reason}"
                ))
                .into();
            }
        }
    }
    // The database as it is now: a SELECT queued before this command moved it.
    let shared = ctx.shared;
    ctx.store = shared.dbs.db(ctx.conn.db);
    // As in `execute_now`: what the slow log would show, copied before parsing consumes it.
    let slowlog_on = shared.slowlog.slower_than_us() >= 0;
    if let (Some(spec), true) = (COMMANDS.get(index), slowlog_on) {
        ctx.stats.args.capture(spec, &args);
    }
    let command = match Command::parse_at(index, args) {
        Ok(command) => command,
        Err(e) => {
            let reply = error(e);
            ctx.shared.stats.commands.rejected(index);
            super::count_error(ctx.shared, &reply);
            return reply.into();
        }
    };
    // Counted and timed as a command of its own, as Redis does, besides EXEC's whole.
    let slot = crate::stats::commands::slot(index, &command);
    let started = std::time::Instant::now();
    let reply = dispatch(ctx, command);
    let nanos = started.elapsed().as_nanos() as u64;
    super::count_call(ctx.shared, ctx.stats, slot, nanos);
    if slowlog_on && shared.slowlog.is_slow(nanos / 1000) {
        if let Some(spec) = COMMANDS.get(index) {
            super::log_slow(shared, ctx.conn, ctx.stats, spec, slot, nanos / 1000);
        }
    }
    if let Some(frame) = &reply.frame {
        if super::count_error(ctx.shared, frame) {
            ctx.shared.stats.commands.failed(slot);
        }
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    /// EXEC holds no shard for a keyless @connection command (see [`shards_of`]); an atomic block
    /// that then touches a shard panics ([`crate::store`]'s table). These are the ones known to
    /// touch none: a new one must be checked before it joins them.
    #[test]
    fn the_keyless_commands_exec_holds_no_shard_for_touch_no_key() {
        let mut skipped: Vec<&str> = COMMANDS
            .iter()
            .filter(|spec| spec.touches_no_key())
            .map(|spec| spec.name)
            .collect();
        skipped.sort_unstable();
        assert_eq!(
            skipped,
            [
                "auth", "client", "command", "echo", "hello", "lastsave", "ping", "quit", "reset",
                "select", "time", "wait"
            ]
        );
    }
}
