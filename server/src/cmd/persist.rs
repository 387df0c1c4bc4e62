//! `PERSIST key`.

use sessiond_protocol::cmd::KeyOnly;
use sessiond_protocol::Frame;

use super::{wrongtype, Ctx};
use crate::notify::Class;

/// Removes the deadline; 1 if there was one, 0 if none or no key.
pub fn persist(ctx: &mut Ctx<'_>, cmd: KeyOnly) -> Frame {
    let removed = ctx.store.modify(&cmd.key, ctx.now_ms, |mut entry| {
        // Sessions always keep their timeouts (OWASP: every session ends).
        if entry.is_session() {
            return (false, None);
        }
        let had = entry.expires_at_ms() != 0;
        entry.set_expires_at_ms(0);
        (false, Some(had))
    });
    match removed {
        Some(None) => wrongtype(),
        Some(Some(had)) => {
            if had {
                ctx.store.notify(Class::GENERIC, "persist", &cmd.key);
            }
            Frame::Integer(i64::from(had))
        }
        None => Frame::Integer(0),
    }
}
