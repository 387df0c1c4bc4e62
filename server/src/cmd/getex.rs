//! `GETEX key [EX|PX|EXAT|PXAT|PERSIST]`.

use bytes::Bytes;
use sessiond_protocol::cmd::{GetEx, GetExTtl};
use sessiond_protocol::{CommandError, Frame};

use super::{error, wrongtype, Ctx};
use crate::notify::Class;
use crate::store::ValueRef;

/// Reads a string and changes its deadline; a deadline in the past deletes it after the read.
/// As in Redis, a missing key is nil before the deadline is validated.
pub fn getex(ctx: &mut Ctx<'_>, cmd: GetEx) -> Frame {
    let now_ms = ctx.now_ms;
    let deadline = match cmd.ttl {
        GetExTtl::Unchanged => Ok(None),
        GetExTtl::Persist => Ok(Some(0)),
        GetExTtl::Expire(expiry) => match expiry.deadline_ms(now_ms as i64) {
            Some(at) => Ok(Some(at.max(1) as u64)),
            None => Err(CommandError::InvalidExpire("getex")),
        },
        GetExTtl::Invalid(refused) => Err(refused),
    };
    let reply = ctx.store.modify(&cmd.key, now_ms, |mut entry| {
        let value = match entry.value() {
            ValueRef::Str(value) => Bytes::copy_from_slice(value),
            _ => return (false, (wrongtype(), None)),
        };
        let event = match &deadline {
            Err(refused) => return (false, (error(refused.clone()), None)),
            Ok(Some(at)) if *at != 0 && *at <= now_ms => {
                return (true, (Frame::Bulk(value), Some("del")))
            }
            // PERSIST announces only a deadline it removed.
            Ok(Some(0)) if entry.expires_at_ms() == 0 => None,
            Ok(Some(0)) => Some("persist"),
            Ok(Some(_)) => Some("expire"),
            Ok(None) => None,
        };
        if let Ok(Some(at)) = &deadline {
            entry.set_expires_at_ms(*at);
        }
        (false, (Frame::Bulk(value), event))
    });
    ctx.hit(reply.is_some());
    let Some((reply, event)) = reply else {
        return Frame::Null;
    };
    if let Some(event) = event {
        ctx.store.notify(Class::GENERIC, event, &cmd.key);
    }
    reply
}
