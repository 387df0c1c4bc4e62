//! `SESSION.INFO id`.

use bytes::Bytes;
use sessiond_protocol::cmd::KeyOnly;
use sessiond_protocol::Frame;

use super::{session_reply, Ctx};

/// The session's metadata as a map; nil when there is none. Does not refresh the session.
pub fn session_info(ctx: &mut Ctx<'_>, cmd: KeyOnly) -> Frame {
    let now_ms = ctx.now_ms;
    let outcome = ctx.store.read_session(&cmd.key, now_ms, |session| {
        let name = |s: &'static str| Frame::Bulk(Bytes::from_static(s.as_bytes()));
        let int = |n: u64| Frame::Integer(n.min(i64::MAX as u64) as i64);
        let deadline = session.deadline_ms();
        Frame::Map(vec![
            (
                name("user"),
                session.user.clone().map_or(Frame::Null, Frame::Bulk),
            ),
            (name("created_ms"), int(session.created_ms)),
            (name("last_access_ms"), int(session.last_access_ms)),
            (name("idle_ms"), int(session.idle_ms)),
            (name("absolute_ms"), int(session.absolute_ms)),
            (name("expires_at_ms"), int(deadline)),
            (name("ttl_ms"), int(deadline.saturating_sub(now_ms))),
            (name("version"), int(session.version)),
            (name("fields"), int(session.fields.len() as u64)),
            (name("bytes"), int(session.data_bytes() as u64)),
        ])
    });
    session_reply(outcome, Frame::Null)
}
