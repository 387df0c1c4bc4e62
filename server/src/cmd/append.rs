//! `APPEND key value`.

use bytes::{BufMut, BytesMut};
use sessiond_protocol::cmd::Append;
use sessiond_protocol::Frame;

use super::{wrongtype, Ctx};
use crate::store::{owned, Entry, Value};

/// Appends to a string (creating it), keeping its deadline; replies with the new length.
pub fn append(ctx: &mut Ctx<'_>, cmd: Append) -> Frame {
    let max = ctx.shared.config.limits.max_bulk_len;
    ctx.store
        .upsert(&cmd.key, ctx.now_ms, |current| match current {
            None => {
                let len = cmd.value.len() as i64;
                (
                    Some(Entry::new(Value::Str(owned(&cmd.value)), 0)),
                    Frame::Integer(len),
                )
            }
            Some(entry) => match &mut entry.value {
                Value::Str(old) => {
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
                    *old = joined.freeze();
                    (None, Frame::Integer(old.len() as i64))
                }
                _ => (None, wrongtype()),
            },
        })
}
