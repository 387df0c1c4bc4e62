//! `EVAL`, `EVALSHA`, `EVAL_RO`, `EVALSHA_RO` and `SCRIPT`: the connection's side of
//! [`crate::script`].

use bytes::Bytes;
use sessiond_protocol::cmd::{Eval, Script};
use sessiond_protocol::Frame;

use super::busy::ScriptWatch;
use super::{ConnState, Ctx, Reply};
use crate::script::{self, Caller, Host, Ran, ScriptCall, ScriptConn, Watchdog, NOSCRIPT};
use crate::stats::LocalStats;
use std::sync::Arc;

/// How scripts run their commands: through the commands' own dispatch.
pub const HOST: Host = Host {
    dispatch: dispatch_for_script,
    redis_version: super::REDIS_COMPAT_VERSION,
};

/// Runs a script's command as the script's connection (its checks done by the runner).
fn dispatch_for_script(
    conn: &mut ScriptConn<'_>,
    command: sessiond_protocol::Command,
) -> Option<Frame> {
    let mut state = ConnState::for_script(
        std::sync::Arc::clone(conn.client),
        conn.user.cloned(),
        conn.version,
        conn.db,
    );
    let mut stats = LocalStats::default();
    let mut ctx = Ctx {
        shared: conn.shared,
        store: conn.store,
        conn: &mut state,
        stats: &mut stats,
        now_ms: conn.now_ms,
        out: conn.out,
        out_limit: usize::MAX,
    };
    let reply = super::dispatch(&mut ctx, command);
    match reply.then {
        // WAIT does not block inside a script (as Redis): the count now.
        super::Then::Wait(wait) => Some(wait.now(&conn.shared.repl)),
        _ => reply.frame,
    }
}

/// `EVAL script numkeys [key ...] [arg ...]` and its SHA and read-only forms. A reply that
/// would take the connection past its output limit is not sent: the client is closed, as for
/// any other reply.
pub fn eval(ctx: &mut Ctx<'_>, cmd: Eval) -> Reply {
    // The keys it declares are checked against the user's patterns first, as Redis checks
    // EVAL's key specification; each command it runs is checked again.
    if let Some(patterns) = ctx.conn.key_patterns() {
        if !cmd.keys.iter().all(|key| patterns.allow(key)) {
            let name = if cmd.by_sha { "evalsha" } else { "eval" };
            return super::refuse(ctx.shared, ctx.conn, name, crate::auth::Denied::Key).into();
        }
    }
    let (sha, body) = if cmd.by_sha {
        match script::parse_sha(&cmd.script) {
            Some(sha) => (sha, None),
            None => return Frame::error(NOSCRIPT).into(),
        }
    } else {
        (script::sha1_hex(&cmd.script), Some(cmd.script))
    };
    let call = ScriptCall {
        sha,
        body,
        keys: cmd.keys,
        args: cmd.args,
        read_only: cmd.read_only,
    };
    let caller = Caller {
        client: std::sync::Arc::clone(ctx.conn.client()),
        user: ctx.conn.user().cloned(),
        version: ctx.conn.version(),
        db: ctx.conn.db,
        host: HOST,
    };
    // Inside EXEC the script is part of the transaction's block: it cannot leave it.
    let in_transaction = crate::store::Store::in_block();
    let watch = ScriptWatch::on_this_thread();
    let watching = watch.begin(ctx.shared, in_transaction);
    let watchdog: Arc<dyn Watchdog + Send + Sync> = watch.clone();
    let frame = match script::run(ctx.shared, &call, &caller, &watchdog) {
        Ran::Reply(frame) => frame,
        Ran::Offload => {
            // It ran long and wrote nothing: again from its start, on a blocking thread.
            let block = watch.hand_over();
            drop(watching);
            let Some(block) = block else {
                return Frame::error("ERR the script could not run").into();
            };
            let shared = Arc::clone(ctx.shared);
            return super::busy::offload(ctx.shared, ctx.conn, block, move |watch| {
                let watchdog: Arc<dyn Watchdog + Send + Sync> = watch.clone();
                match script::run(&shared, &call, &caller, &watchdog) {
                    Ran::Reply(frame) => frame,
                    // Its watch never asks it twice.
                    Ran::Offload => Frame::error("ERR the script could not run"),
                }
            });
        }
    };
    drop(watching);
    if !ctx.fits(size(&frame, ctx.out_limit)) {
        return Reply::over_limit();
    }
    frame.into()
}

/// The encoded size of `frame`, about (headers counted at their largest), counting stopped
/// past `bound`.
pub(crate) fn size(frame: &Frame, bound: usize) -> usize {
    fn add(frame: &Frame, total: &mut usize, bound: usize) {
        if *total > bound {
            return;
        }
        let own = match frame {
            Frame::Simple(b) | Frame::Error(b) | Frame::Bulk(b) | Frame::BigNumber(b) => {
                super::bulk_size(b.len())
            }
            Frame::Verbatim { data, .. } => super::bulk_size(data.len() + 4),
            Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
                super::header_size(items.len())
            }
            Frame::Map(pairs) => super::header_size(pairs.len()),
            _ => 32,
        };
        *total = total.saturating_add(own);
        match frame {
            Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
                for item in items {
                    add(item, total, bound);
                }
            }
            Frame::Map(pairs) => {
                for (k, v) in pairs {
                    add(k, total, bound);
                    add(v, total, bound);
                }
            }
            _ => {}
        }
    }
    let mut total = 0;
    add(frame, &mut total, bound);
    total
}

/// `SCRIPT LOAD | EXISTS | FLUSH | KILL | HELP`.
pub fn script(ctx: &mut Ctx<'_>, cmd: Script) -> Frame {
    let scripts = &ctx.shared.scripts;
    match cmd {
        Script::Load(body) => {
            let sha = script::sha1_hex(&body);
            if !scripts.contains(&sha) {
                // Compiled once here so that a script with a syntax error is refused, as Redis.
                if let Err(reply) = script::check_compiles(&body, &HOST) {
                    return reply;
                }
            }
            scripts.add(sha, body, true);
            Frame::Bulk(Bytes::copy_from_slice(&sha))
        }
        Script::Exists(shas) => Frame::Array(
            shas.iter()
                .map(|sha| {
                    let found = script::parse_sha(sha).is_some_and(|sha| scripts.contains(&sha));
                    Frame::Integer(i64::from(found))
                })
                .collect(),
        ),
        Script::Flush => {
            scripts.flush();
            Frame::ok()
        }
        Script::Kill => super::busy::script_kill(ctx.shared),
        Script::Help => help(),
    }
}

fn help() -> Frame {
    let lines = [
        "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "EXISTS <sha1> [<sha1> ...]",
        "    Return information about the existence of the scripts in the script cache.",
        "FLUSH [ASYNC|SYNC]",
        "    Flush the Lua scripts cache. Very dangerous on replicas.",
        "    When called without the optional mode argument, the behavior is determined by the",
        "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
        "    * ASYNC: Asynchronously flush the scripts cache.",
        "    * SYNC: Synchronously flush the scripts cache.",
        "KILL",
        "    Kill the currently executing Lua script.",
        "LOAD <script>",
        "    Load a script into the scripts cache without executing it.",
        "HELP",
        "    Print this help.",
    ];
    Frame::Array(lines.iter().map(|line| Frame::simple(line)).collect())
}
