//! `DEL` and `UNLINK`.

use sessiond_protocol::cmd::Keys;
use sessiond_protocol::Frame;

use super::Ctx;

/// Deletes the keys; replies with how many existed. UNLINK is the same: entries are freed as
/// they are removed, and none is large enough to need a background free.
pub fn del(ctx: &mut Ctx<'_>, cmd: Keys) -> Frame {
    let removed = cmd
        .keys
        .iter()
        .filter(|key| ctx.store.remove(key, ctx.now_ms).is_some())
        .count();
    Frame::Integer(removed as i64)
}
