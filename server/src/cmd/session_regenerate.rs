//! `SESSION.REGENERATE id [USER user]`.

use sessiond_protocol::cmd::SessionRegenerate;
use sessiond_protocol::Frame;

use super::{session_reply, Ctx};

/// Moves the session to a new ID (the old one stops working in the same step) and replies with
/// the new ID; nil when there is no such session.
pub fn session_regenerate(ctx: &mut Ctx<'_>, cmd: SessionRegenerate) -> Frame {
    let cap = ctx.shared.live.session_max_per_user();
    let outcome = ctx
        .store
        .regenerate_session(&cmd.id, cmd.user.as_ref(), ctx.now_ms, cap);
    session_reply(outcome.map(|id| id.map(Frame::Bulk)), Frame::Null)
}
