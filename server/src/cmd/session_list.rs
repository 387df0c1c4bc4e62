//! `SESSION.LIST user`.

use sessiond_protocol::cmd::KeyOnly;
use sessiond_protocol::Frame;

use super::Ctx;

/// The user's live session IDs, oldest first. Costs O(that user's sessions).
pub fn session_list(ctx: &mut Ctx<'_>, cmd: KeyOnly) -> Frame {
    Frame::Array(
        ctx.store
            .list_sessions(ctx.session.session_prefix(), &cmd.key, ctx.now_ms)
            .into_iter()
            .map(Frame::Bulk)
            .collect(),
    )
}
