//! `MGET key [key ...]`.

use sessiond_protocol::cmd::Keys;
use sessiond_protocol::Frame;

use super::{Ctx, Reply, Then, REPLY_ROOM};
use crate::store::ValueRef;

/// The strings at each key; nil for a missing key or one of another type. Like GET's, the
/// reply is encoded straight into the connection's output, each string under its shard's read
/// lock.
pub fn mget(ctx: &mut Ctx<'_>, cmd: Keys) -> Reply {
    let version = ctx.session.version();
    sessiond_protocol::put_header(ctx.out, b'*', cmd.keys.len());
    for key in &cmd.keys {
        ctx.out.reserve(REPLY_ROOM);
        let out = &mut *ctx.out;
        let found = ctx
            .store
            .read(key, ctx.now_ms, |entry| match entry.map(|e| e.value()) {
                Some(ValueRef::Str(value)) => {
                    sessiond_protocol::put_bulk(out, b'$', value);
                    true
                }
                _ => false,
            });
        if !found {
            Frame::Null.encode(version, ctx.out);
        }
        ctx.hit(found);
    }
    Reply {
        frame: None,
        then: Then::Continue,
    }
}
