//! `GET` and `GETDEL`.

use bytes::Bytes;
use sessiond_protocol::cmd::KeyOnly;
use sessiond_protocol::Frame;

use super::{wrongtype, Ctx};
use crate::store::ValueRef;

/// `GET key`: the string, nil when missing.
pub fn get(ctx: &mut Ctx<'_>, cmd: KeyOnly) -> Frame {
    let reply = ctx.store.read(&cmd.key, ctx.now_ms, |entry| {
        let entry = entry?;
        Some(match entry.value() {
            ValueRef::Str(value) => Frame::Bulk(Bytes::copy_from_slice(value)),
            _ => wrongtype(),
        })
    });
    ctx.hit(reply.is_some());
    reply.unwrap_or(Frame::Null)
}

/// `GETDEL key`: the string, and the key is deleted; nil when missing.
pub fn getdel(ctx: &mut Ctx<'_>, cmd: KeyOnly) -> Frame {
    let reply = ctx
        .store
        .modify(&cmd.key, ctx.now_ms, |entry| match entry.value() {
            ValueRef::Str(value) => (true, Frame::Bulk(Bytes::copy_from_slice(value))),
            _ => (false, wrongtype()),
        });
    ctx.hit(reply.is_some());
    reply.unwrap_or(Frame::Null)
}
