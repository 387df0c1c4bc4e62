//! `SESSION.COUNT user`.

use sessiond_protocol::cmd::KeyOnly;
use sessiond_protocol::Frame;

use super::Ctx;

/// How many sessions the user has: O(1), from the per-user index, which also counts a session
/// past its deadline until the active expiry reclaims it (as DBSIZE counts keys).
pub fn session_count(ctx: &mut Ctx<'_>, cmd: KeyOnly) -> Frame {
    let count = ctx
        .store
        .count_sessions(ctx.session.session_prefix(), &cmd.key);
    Frame::Integer(i64::try_from(count).unwrap_or(i64::MAX))
}
