//! `APPEND key value`.

use bytes::{BufMut, BytesMut};
use sessiond_protocol::cmd::Append;
use sessiond_protocol::Frame;

use super::{wrongtype, Ctx};
use crate::notify::Class;
use crate::store::{Entry, Value, ValueRef};

/// Appends to a string (creating it), keeping its deadline; replies with the new length.
pub fn append(ctx: &mut Ctx<'_>, cmd: Append) -> Frame {
    let max = ctx.shared.config.limits.max_bulk_len;
    let reply = ctx
        .store
        .upsert(&cmd.key, ctx.now_ms, |current| match current {
            None => {
                let len = cmd.value.len() as i64;
                (
                    Some(Entry::new(Value::Str(cmd.value.clone()), 0)),
                    Frame::Integer(len),
                )
            }
            Some(entry) => match entry.value() {
                ValueRef::Str(old) => {
                    if old.len() + cmd.value.len() > max {
                        return (
                            None,
                            Frame::error(
                                "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
                            ),
                        );
                    }
                    let mut joined = BytesMut::with_capacity(old.len() + cmd.value.len());
                    joined.put_slice(old);
                    joined.put_slice(&cmd.value);
                    let len = joined.len() as i64;
                    let joined = Entry::new(Value::Str(joined.freeze()), entry.expires_at_ms());
                    (Some(joined), Frame::Integer(len))
                }
                _ => (None, wrongtype()),
            },
        });
    if let Frame::Integer(_) = reply {
        ctx.store.notify(Class::STRING, "append", &cmd.key);
    }
    reply
}
