//! `SESSION.CREATE [USER user] [IDLE ms] [ABSOLUTE ms] [DATA field value ...]`.

use bytes::Bytes;
use sessiond_protocol::cmd::SessionCreate;
use sessiond_protocol::Frame;

use super::Ctx;
use crate::store::session::NewSession;

/// Creates a session under a new server-issued ID and replies with the ID.
pub fn session_create(ctx: &mut Ctx<'_>, cmd: SessionCreate) -> Frame {
    let config = &ctx.shared.config;
    let new = NewSession {
        // The creating user's namespace: its IDs match its key patterns, and only it lists them.
        prefix: ctx
            .session
            .user()
            .map_or_else(Bytes::new, |u| u.session_prefix.clone()),
        user: cmd.user,
        idle_ms: cmd
            .idle_ms
            .unwrap_or(config.session_idle.as_millis() as u64),
        absolute_ms: cmd
            .absolute_ms
            .unwrap_or(config.session_absolute.as_millis() as u64),
        data: cmd.data,
    };
    match ctx
        .store
        .create_session(new, ctx.now_ms, config.session_max_per_user)
    {
        Ok(id) => Frame::Bulk(id),
        Err(error) => {
            tracing::error!(%error, "SESSION.CREATE failed");
            Frame::error(error.to_string())
        }
    }
}
