//! `SESSION.SET id [IFVERSION v] field value [field value ...]`.

use std::sync::atomic::Ordering;

use sessiond_protocol::cmd::SessionSet;
use sessiond_protocol::Frame;

use super::{session_reply, Ctx};
use crate::store::owned;
use crate::store::session::{data_size, data_size_after, over_max_bytes};

/// Writes the fields and replies with the new version; with IFVERSION, a session at another
/// version is left untouched and the reply is a CONFLICT error naming the current version. A
/// write that would grow the session's data past `session-max-bytes` is refused, the session
/// untouched (one that does not grow it is not, so a session over a lowered limit can shrink).
pub fn session_set(ctx: &mut Ctx<'_>, cmd: SessionSet) -> Frame {
    let limit = ctx.shared.live.session_max_bytes();
    let outcome = ctx.store.update_session(&cmd.id, ctx.now_ms, |session| {
        if let Some(expected) = cmd.if_version {
            if expected != session.version {
                let message = format!(
                    "CONFLICT session is at version {}, not {expected}",
                    session.version
                );
                return (false, Err((message, true)));
            }
        }
        if limit > 0 {
            let bytes = data_size_after(Some(&session.fields), &cmd.pairs);
            if bytes > data_size(&session.fields) {
                if let Some(refusal) = over_max_bytes(bytes, limit) {
                    return (false, Err((refusal, false)));
                }
            }
        }
        for (field, value) in &cmd.pairs {
            session.fields.insert(owned(field), owned(value));
        }
        session.version += 1;
        (true, Ok(session.version))
    });
    match outcome {
        Ok(Some(Err((refusal, conflict)))) => {
            if conflict {
                ctx.store
                    .session_stats()
                    .conflicts
                    .fetch_add(1, Ordering::Relaxed);
            }
            Frame::error(refusal)
        }
        other => session_reply(
            other.map(|o| o.map(|v| Frame::Integer(v.unwrap_or(0) as i64))),
            Frame::Null,
        ),
    }
}
