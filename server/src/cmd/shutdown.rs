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
    tracing::info!(peer = %ctx.session.client().peer, "SHUTDOWN requested by a client");
    ctx.shared.request_shutdown();
    Reply {
        frame: None,
        then: Then::Close,
    }
}
