//! `MGET key [key ...]`.

use bytes::Bytes;
use sessiond_protocol::cmd::Keys;
use sessiond_protocol::Frame;

use super::Ctx;
use crate::store::ValueRef;

/// The strings at each key; nil for a missing key or one of another type.
pub fn mget(ctx: &mut Ctx<'_>, cmd: Keys) -> Frame {
    let mut values = Vec::with_capacity(cmd.keys.len());
    for key in &cmd.keys {
        let value = ctx
            .store
            .read(key, ctx.now_ms, |entry| match entry.map(|e| e.value()) {
                Some(ValueRef::Str(value)) => Some(Bytes::copy_from_slice(value)),
                _ => None,
            });
        ctx.hit(value.is_some());
        values.push(value.map_or(Frame::Null, Frame::Bulk));
    }
    Frame::Array(values)
}
