//! `SESSION.TOUCH id`.

use sessiond_protocol::cmd::KeyOnly;
use sessiond_protocol::Frame;

use super::{session_reply, Ctx};

/// Refreshes the idle timer; replies with the time to live in ms, -2 when there is no session.
pub fn session_touch(ctx: &mut Ctx<'_>, cmd: KeyOnly) -> Frame {
    let now_ms = ctx.now_ms;
    let outcome = ctx.store.update_session(&cmd.key, now_ms, |session| {
        session.last_access_ms = session.last_access_ms.max(now_ms);
        (
            true,
            Frame::Integer(
                i64::try_from(session.deadline_ms().saturating_sub(now_ms)).unwrap_or(i64::MAX),
            ),
        )
    });
    session_reply(outcome, Frame::Integer(-2))
}
