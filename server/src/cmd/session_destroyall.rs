//! `SESSION.DESTROYALL user [EXCEPT id]`.

use sessiond_protocol::cmd::SessionDestroyAll;
use sessiond_protocol::Frame;

use super::Ctx;

/// Destroys every session of the user but the one named ("log out everywhere else"); replies
/// with how many were destroyed. Costs O(that user's sessions).
pub fn session_destroyall(ctx: &mut Ctx<'_>, cmd: SessionDestroyAll) -> Frame {
    let destroyed = ctx.store.destroy_sessions_of(
        ctx.conn.session_prefix(),
        &cmd.user,
        cmd.except.as_deref(),
        ctx.now_ms,
    );
    Frame::Integer(destroyed as i64)
}
