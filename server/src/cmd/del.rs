//! `DEL` and `UNLINK`.

use sessiond_protocol::cmd::Keys;
use sessiond_protocol::Frame;

use super::Ctx;
use crate::notify::Class;

/// Deletes the keys; replies with how many existed. UNLINK is the same: entries are freed as
/// they are removed, and none is large enough to need a background free.
pub fn del(ctx: &mut Ctx<'_>, cmd: Keys) -> Frame {
    let removed = cmd
        .keys
        .iter()
        .filter(|key| {
            let Some(node) = ctx.store.remove(key, ctx.now_ms) else {
                return false;
            };
            // A session's end is announced by the store, as `destroyed` on `__session__:`.
            if !node.is_session() {
                ctx.store.notify(Class::GENERIC, "del", key);
            }
            true
        })
        .count();
    Frame::Integer(removed as i64)
}
