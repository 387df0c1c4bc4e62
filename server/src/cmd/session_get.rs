//! `SESSION.GET id [field ...]`.

use sessiond_protocol::cmd::SessionGet;
use sessiond_protocol::Frame;

use super::{session_reply, Ctx};

/// All fields as a map (a flat array in RESP2), or the values of the fields named (nil where
/// missing); nil when there is no such session. Refreshes the idle timer.
pub fn session_get(ctx: &mut Ctx<'_>, cmd: SessionGet) -> Frame {
    let outcome = ctx.store.update_session(&cmd.id, ctx.now_ms, |session| {
        let reply = if cmd.fields.is_empty() {
            Frame::Map(
                session
                    .fields
                    .iter()
                    .map(|(f, v)| (Frame::Bulk(f.clone()), Frame::Bulk(v.clone())))
                    .collect(),
            )
        } else {
            Frame::Array(
                cmd.fields
                    .iter()
                    .map(|f| {
                        session
                            .fields
                            .get(f)
                            .map_or(Frame::Null, |v| Frame::Bulk(v.clone()))
                    })
                    .collect(),
            )
        };
        (true, reply)
    });
    if let Ok(found) = &outcome {
        ctx.hit(found.is_some());
    }
    session_reply(outcome, Frame::Null)
}
