//! `SESSION.COUNT user`.

use sessiond_protocol::cmd::UserOnly;
use sessiond_protocol::Frame;

use super::Ctx;

/// How many sessions the user has: O(1), from the per-user index, which also counts a session
/// past its deadline until the active expiry reclaims it (as DBSIZE counts keys).
pub fn session_count(ctx: &mut Ctx<'_>, cmd: UserOnly) -> Frame {
    let count = ctx
        .store
        .count_sessions(ctx.conn.session_prefix(), &cmd.user);
    Frame::Integer(i64::try_from(count).unwrap_or(i64::MAX))
}
