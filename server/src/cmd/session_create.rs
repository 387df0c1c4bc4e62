//! `SESSION.CREATE [USER user] [IDLE ms] [ABSOLUTE ms] [DATA field value ...]`.

use std::time::Duration;

use bytes::Bytes;
use sessiond_protocol::cmd::SessionCreate;
use sessiond_protocol::{CommandError, Frame};

use super::{error, Ctx};
use crate::store::session::NewSession;

/// Creates a session under a new server-issued ID and replies with the ID.
pub fn session_create(ctx: &mut Ctx<'_>, cmd: SessionCreate) -> Frame {
    let live = &ctx.shared.live;
    // As EXPIRE does, a timeout whose deadline does not fit a 64-bit count of ms is refused
    // (a configured default is not: the session's deadline saturates instead).
    let fits = |ms: u64| {
        ctx.now_ms
            .checked_add(ms)
            .is_some_and(|at| i64::try_from(at).is_ok())
    };
    if !cmd.idle_ms.into_iter().chain(cmd.absolute_ms).all(fits) {
        return error(CommandError::InvalidExpire("session.create"));
    }
    let bytes = crate::store::session::data_size_after(None, &cmd.data);
    if let Some(refusal) = crate::store::session::over_max_bytes(bytes, live.session_max_bytes()) {
        return Frame::error(refusal);
    }
    let millis = |timeout: Duration| u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let new = NewSession {
        // The creating user's namespace: its IDs match its key patterns, and only it lists them.
        prefix: ctx
            .conn
            .user()
            .map_or_else(Bytes::new, |u| u.session_prefix.clone()),
        user: cmd.user,
        idle_ms: cmd.idle_ms.unwrap_or(millis(live.session_idle())),
        absolute_ms: cmd.absolute_ms.unwrap_or(millis(live.session_absolute())),
        data: cmd.data,
    };
    match ctx
        .store
        .create_session(new, ctx.now_ms, live.session_max_per_user())
    {
        Ok(id) => Frame::Bulk(id),
        Err(error) => {
            tracing::error!(%error, "SESSION.CREATE failed");
            Frame::error(error.to_string())
        }
    }
}
