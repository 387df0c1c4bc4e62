//! `SESSION.DESTROY id [id ...]`.

use sessiond_protocol::cmd::Keys;
use sessiond_protocol::Frame;

use super::Ctx;

/// Destroys the sessions; replies with how many existed. Keys of other types are left alone.
pub fn session_destroy(ctx: &mut Ctx<'_>, cmd: Keys) -> Frame {
    let now_ms = ctx.now_ms;
    let destroyed = cmd
        .keys
        .iter()
        .filter(|id| ctx.store.destroy_session(id, now_ms))
        .count();
    Frame::Integer(destroyed as i64)
}
