//! `SESSION.LIST user`.

use sessiond_protocol::cmd::UserOnly;
use sessiond_protocol::Frame;

use super::{bulk_size, header_size, Ctx, Reply};

/// The user's live session IDs, oldest first. Costs O(that user's sessions). A list whose
/// reply would take the connection's output past its limit is not answered.
pub fn session_list(ctx: &mut Ctx<'_>, cmd: UserOnly) -> Reply {
    let ids = ctx
        .store
        .list_sessions(ctx.conn.session_prefix(), &cmd.user, ctx.now_ms);
    let size = header_size(ids.len()) + ids.iter().map(|id| bulk_size(id.len())).sum::<usize>();
    if !ctx.fits(size) {
        return Reply::over_limit();
    }
    Frame::Array(ids.into_iter().map(Frame::Bulk).collect()).into()
}
