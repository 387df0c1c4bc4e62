//! `SESSION.UNSET id field [field ...]`.

use sessiond_protocol::cmd::SessionUnset;
use sessiond_protocol::Frame;

use super::{session_reply, Ctx};

/// Removes the fields and replies with how many existed; the version grows by one. Nil when
/// there is no such session. Refreshes the idle timer.
pub fn session_unset(ctx: &mut Ctx<'_>, cmd: SessionUnset) -> Frame {
    let outcome = ctx.store.update_session(&cmd.key, ctx.now_ms, |session| {
        let removed = cmd
            .fields
            .iter()
            .filter(|f| session.fields.remove(*f).is_some())
            .count();
        session.version += 1;
        (true, Frame::Integer(removed as i64))
    });
    session_reply(outcome, Frame::Null)
}
