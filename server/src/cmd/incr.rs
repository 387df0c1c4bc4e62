//! `INCR`, `INCRBY`, `DECR`, `DECRBY`.

use bytes::Bytes;
use sessiond_protocol::cmd::IncrBy;
use sessiond_protocol::{parse_i64, CommandError, Frame};

use super::{error, wrongtype, Ctx};
use crate::notify::Class;
use crate::store::{Entry, Value, ValueRef};

/// Adds the delta to the integer at the key (0 when missing), keeping its deadline.
pub fn incrby(ctx: &mut Ctx<'_>, cmd: IncrBy) -> Frame {
    let format = |n: i64| Bytes::copy_from_slice(itoa::Buffer::new().format(n).as_bytes());
    let reply = ctx
        .store
        .upsert(&cmd.key, ctx.now_ms, |current| match current {
            None => (
                Some(Entry::new(Value::Str(format(cmd.delta)), 0)),
                Frame::Integer(cmd.delta),
            ),
            Some(entry) => match entry.value() {
                ValueRef::Str(value) => {
                    let Some(old) = parse_i64(value) else {
                        return (None, error(CommandError::NotInteger));
                    };
                    let Some(new) = old.checked_add(cmd.delta) else {
                        return (
                            None,
                            Frame::error("ERR increment or decrement would overflow"),
                        );
                    };
                    let replacement = Entry::new(Value::Str(format(new)), entry.expires_at_ms());
                    (Some(replacement), Frame::Integer(new))
                }
                _ => (None, wrongtype()),
            },
        });
    if let Frame::Integer(_) = reply {
        ctx.store.notify(Class::STRING, "incrby", &cmd.key);
    }
    reply
}
