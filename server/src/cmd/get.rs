//! `GET` and `GETDEL`.

use bytes::Bytes;
use sessiond_protocol::cmd::KeyOnly;
use sessiond_protocol::Frame;

use super::{wrongtype, Ctx, Reply, REPLY_ROOM};
use crate::notify::Class;
use crate::store::ValueRef;

/// `GET key`: the string, nil when missing. A string is encoded straight into the
/// connection's output while the shard is read-locked: one copy, no allocation; one that
/// would take the output past its limit is not copied at all.
pub fn get(ctx: &mut Ctx<'_>, cmd: KeyOnly) -> Reply {
    // Room made before the lock, so that a usual value is not written while the output grows.
    ctx.out.reserve(REPLY_ROOM);
    let limit = ctx.out_limit;
    let out = &mut *ctx.out;
    let found = ctx.store.read(&cmd.key, ctx.now_ms, |entry| {
        let entry = entry?;
        Some(match entry.value() {
            // The bulk header's few bytes are left out of the comparison.
            ValueRef::Str(value) if out.len() + value.len() > limit => Reply::over_limit(),
            ValueRef::Str(value) => {
                sessiond_protocol::put_bulk(out, b'$', value);
                Reply::written()
            }
            _ => wrongtype().into(),
        })
    });
    ctx.hit(found.is_some());
    found.unwrap_or_else(|| Frame::Null.into())
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
    if let Some(Frame::Bulk(_)) = reply {
        ctx.store.notify(Class::GENERIC, "del", &cmd.key);
    }
    reply.unwrap_or(Frame::Null)
}
