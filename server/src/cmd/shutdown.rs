//! `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]`.

use sessiond_protocol::cmd::Shutdown;
use sessiond_protocol::Frame;

use super::{Ctx, Reply, Then};
use crate::shared::ShutdownRequest;

/// Starts a graceful shutdown; like Redis, a successful SHUTDOWN sends no reply and the
/// connection closes. When the final snapshot may fail (persistence on, neither NOSAVE nor
/// FORCE), the connection waits: if it fails, the server keeps running and the reply is
/// Redis's `ERR Errors trying to SHUTDOWN. Check logs.`. NOW skips the wait for the other
/// connections. ABORT has nothing to cancel: while a shutdown runs, no connection reads commands.
pub fn shutdown(ctx: &mut Ctx<'_>, cmd: Shutdown) -> Reply {
    if cmd.abort {
        return Frame::error("ERR No shutdown in progress.").into();
    }
    let persisting = ctx.shared.persistence.config().is_some();
    if cmd.save && !persisting {
        return Frame::error(
            "ERR SHUTDOWN SAVE needs persistence, which is disabled (--no-persistence)",
        )
        .into();
    }
    tracing::info!(
        peer = %ctx.conn.client().peer,
        nosave = cmd.nosave,
        force = cmd.force,
        now = cmd.now,
        "SHUTDOWN requested by a client"
    );
    let failed_before = ctx.shared.request_shutdown_with(ShutdownRequest {
        save: !cmd.nosave,
        force: cmd.force,
        now: cmd.now,
    });
    let may_fail = persisting && !cmd.nosave && !cmd.force;
    Reply {
        frame: None,
        then: if may_fail {
            Then::AwaitShutdown(failed_before)
        } else {
            Then::Close
        },
    }
}
