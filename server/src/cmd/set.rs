//! `SET` with all its options, and `SETEX`, `PSETEX`, `SETNX`, `GETSET`.

use bytes::Bytes;
use sessiond_protocol::cmd::{Set, SetCondition, SetReply, SetTtl};
use sessiond_protocol::{CommandError, Frame};

use super::{error, wrongtype, Ctx};
use crate::notify::Class;
use crate::store::{Entry, Value, ValueRef};

/// Writes a string; see [`Set`] for the options.
pub fn set(ctx: &mut Ctx<'_>, cmd: Set) -> Frame {
    let now_ms = ctx.now_ms;
    let deadline = match cmd.ttl {
        SetTtl::Clear => Some(0),
        SetTtl::Keep => None,
        SetTtl::Expire(expiry) => match expiry.deadline_ms(now_ms as i64) {
            // A deadline already past stores a key that is dead at once, as Redis does.
            Some(at) => Some(at.max(1) as u64),
            None => return error(CommandError::InvalidExpire(cmd.name)),
        },
    };
    // The value is copied from the request into the key's node (in place when the old value
    // has its length).
    let value = cmd.value;
    let (reply, written) = ctx.store.upsert(&cmd.key, now_ms, |current| {
        // Only the SESSION commands create and end sessions (strict session management).
        if current.as_ref().is_some_and(|e| e.is_session()) {
            return (None, (wrongtype(), false));
        }
        let old = match (&current, cmd.reply) {
            (Some(entry), SetReply::OldValue) => match entry.value() {
                ValueRef::Str(old) => Some(Bytes::copy_from_slice(old)),
                _ => return (None, (wrongtype(), false)),
            },
            _ => None,
        };
        let allowed = match cmd.condition {
            None => true,
            Some(SetCondition::IfMissing) => current.is_none(),
            Some(SetCondition::IfExists) => current.is_some(),
        };
        let reply = match cmd.reply {
            SetReply::Ok if allowed => Frame::ok(),
            SetReply::Ok => Frame::Null,
            SetReply::Flag => Frame::Integer(i64::from(allowed)),
            SetReply::OldValue => old.map_or(Frame::Null, Frame::Bulk),
        };
        if !allowed {
            return (None, (reply, false));
        }
        let expires_at_ms =
            deadline.unwrap_or_else(|| current.as_ref().map_or(0, |entry| entry.expires_at_ms()));
        (
            Some(Entry::new(Value::Str(value), expires_at_ms)),
            (reply, true),
        )
    });
    if written {
        // As Redis's setGenericCommand: `set`, then `expire` when a deadline was given.
        ctx.store.notify(Class::STRING, "set", &cmd.key);
        if let SetTtl::Expire(_) = cmd.ttl {
            ctx.store.notify(Class::GENERIC, "expire", &cmd.key);
        }
    }
    reply
}
