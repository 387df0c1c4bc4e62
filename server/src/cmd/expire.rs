//! `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT`.

use sessiond_protocol::cmd::Expire;
use sessiond_protocol::{CommandError, Frame};

use super::{error, wrongtype, Ctx};
use crate::notify::Class;

/// Sets the deadline when the condition allows; a deadline not in the future deletes the key.
/// Replies 1 when the deadline was set (or the key deleted), 0 otherwise.
pub fn expire(ctx: &mut Ctx<'_>, cmd: Expire) -> Frame {
    let now_ms = ctx.now_ms;
    let when = if cmd.absolute {
        Some(cmd.time_ms)
    } else {
        (now_ms as i64).checked_add(cmd.time_ms)
    };
    let Some(when) = when else {
        return error(CommandError::InvalidExpire(cmd.name));
    };
    let changed = ctx.store.modify(&cmd.key, now_ms, |mut entry| {
        // A session's deadline is its idle and absolute timeouts; SESSION.TOUCH moves it.
        if entry.is_session() {
            return (false, Err(()));
        }
        let current = entry
            .deadline_ms()
            .map(|at| i64::try_from(at).unwrap_or(i64::MAX));
        if !cmd.condition.allows(current, when) {
            return (false, Ok(None));
        }
        if when <= now_ms as i64 {
            return (true, Ok(Some("del")));
        }
        entry.set_expires_at_ms(when as u64);
        (false, Ok(Some("expire")))
    });
    match changed {
        Some(Err(())) => wrongtype(),
        Some(Ok(Some(event))) => {
            // A deadline already past deletes the key: Redis announces `del`.
            ctx.store.notify(Class::GENERIC, event, &cmd.key);
            Frame::Integer(1)
        }
        Some(Ok(None)) | None => Frame::Integer(0),
    }
}
