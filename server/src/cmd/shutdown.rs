//! `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]`.

use sessiond_protocol::cmd::Shutdown;
use sessiond_protocol::Frame;

use super::{Ctx, Reply, Then};

/// Starts a graceful shutdown; like Redis, a successful SHUTDOWN sends no reply and the
/// connection closes.
pub fn shutdown(ctx: &mut Ctx<'_>, cmd: Shutdown) -> Reply {
    if cmd.abort {
        return Frame::error("ERR No shutdown in progress.").into();
    }
    if cmd.save && ctx.shared.persistence.config().is_none() {
        return Frame::error(
            "ERR SHUTDOWN SAVE needs persistence, which is disabled (--no-persistence)",
        )
        .into();
    }
    tracing::info!(peer = %ctx.session.client().peer, nosave = cmd.nosave, "SHUTDOWN requested by a client");
    // With persistence on, the final snapshot is written after the connections have drained,
    // unless NOSAVE.
    ctx.shared.set_final_save(!cmd.nosave);
    ctx.shared.request_shutdown();
    Reply {
        frame: None,
        then: Then::Close,
    }
}
