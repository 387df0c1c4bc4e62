//! `SESSION.SET id [IFVERSION v] field value [field value ...]`.

use std::sync::atomic::Ordering;

use sessiond_protocol::cmd::SessionSet;
use sessiond_protocol::Frame;

use super::{session_reply, Ctx};
use crate::store::owned;

/// Writes the fields and replies with the new version; with IFVERSION, a session at another
/// version is left untouched and the reply is a CONFLICT error naming the current version.
pub fn session_set(ctx: &mut Ctx<'_>, cmd: SessionSet) -> Frame {
    let outcome = ctx.store.update_session(&cmd.id, ctx.now_ms, |session| {
        if let Some(expected) = cmd.if_version {
            if expected != session.version {
                let message = format!(
                    "CONFLICT session is at version {}, not {expected}",
                    session.version
                );
                return (false, Err(message));
            }
        }
        for (field, value) in &cmd.pairs {
            session.fields.insert(owned(field), owned(value));
        }
        session.version += 1;
        (true, Ok(session.version))
    });
    match outcome {
        Ok(Some(Err(conflict))) => {
            ctx.store
                .session_stats()
                .conflicts
                .fetch_add(1, Ordering::Relaxed);
            Frame::error(conflict)
        }
        other => session_reply(
            other.map(|o| o.map(|v| Frame::Integer(v.unwrap_or(0) as i64))),
            Frame::Null,
        ),
    }
}
