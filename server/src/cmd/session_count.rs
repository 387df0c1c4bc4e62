//! `SESSION.COUNT user`.

use sessiond_protocol::cmd::KeyOnly;
use sessiond_protocol::Frame;

use super::Ctx;

/// How many live sessions the user has. Costs O(that user's sessions).
pub fn session_count(ctx: &mut Ctx<'_>, cmd: KeyOnly) -> Frame {
    Frame::Integer(
        ctx.store
            .list_sessions(ctx.session.session_prefix(), &cmd.key, ctx.now_ms)
            .len() as i64,
    )
}
