//! `PERSIST key`.

use sessiond_protocol::cmd::KeyOnly;
use sessiond_protocol::Frame;

use super::Ctx;

/// Removes the deadline; 1 if there was one, 0 if none or no key.
pub fn persist(ctx: &mut Ctx<'_>, cmd: KeyOnly) -> Frame {
    let removed = ctx.store.modify(&cmd.key, ctx.now_ms, |entry| {
        let had = entry.expires_at_ms != 0;
        entry.expires_at_ms = 0;
        (false, had)
    });
    Frame::Integer(i64::from(removed.unwrap_or(false)))
}
