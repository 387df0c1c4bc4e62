//! `SESSION.GET id [field ...]`.

use sessiond_protocol::cmd::SessionGet;
use sessiond_protocol::Frame;

use super::{bulk_size, header_size, session_reply, Ctx, Reply};

/// All fields as a map (a flat array in RESP2), or the values of the fields named (nil where
/// missing); nil when there is no such session. Refreshes the idle timer. A reply that would
/// take the connection's output past its limit is measured, not built (and the session is
/// left as it was).
pub fn session_get(ctx: &mut Ctx<'_>, cmd: SessionGet) -> Reply {
    let room = ctx.out_limit.saturating_sub(ctx.out.len());
    let outcome = ctx.store.update_session(&cmd.id, ctx.now_ms, |session| {
        let fields = &session.fields;
        let size = if cmd.fields.is_empty() {
            header_size(fields.len() * 2)
                + fields
                    .iter()
                    .map(|(f, v)| bulk_size(f.len()) + bulk_size(v.len()))
                    .sum::<usize>()
        } else {
            header_size(cmd.fields.len())
                + cmd
                    .fields
                    .iter()
                    .map(|f| fields.get(f).map_or(5, |v| bulk_size(v.len())))
                    .sum::<usize>()
        };
        if size > room {
            return (false, None);
        }
        let reply = if cmd.fields.is_empty() {
            Frame::Map(
                fields
                    .iter()
                    .map(|(f, v)| (Frame::Bulk(f.clone()), Frame::Bulk(v.clone())))
                    .collect(),
            )
        } else {
            Frame::Array(
                cmd.fields
                    .iter()
                    .map(|f| {
                        fields
                            .get(f)
                            .map_or(Frame::Null, |v| Frame::Bulk(v.clone()))
                    })
                    .collect(),
            )
        };
        (true, Some(reply))
    });
    if let Ok(found) = &outcome {
        ctx.hit(found.is_some());
    }
    match outcome {
        Ok(Some(None)) => Reply::over_limit(),
        outcome => session_reply(outcome.map(Option::flatten), Frame::Null).into(),
    }
}
