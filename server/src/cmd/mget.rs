//! `MGET key [key ...]`.

use sessiond_protocol::cmd::Keys;
use sessiond_protocol::Frame;

use super::{Ctx, Reply, REPLY_ROOM};
use crate::store::ValueRef;

/// What one key contributed to the reply.
enum Read {
    /// Its string, encoded.
    Written,
    /// Nothing yet: it is missing or not a string (nil).
    Nil,
    /// Nothing: its string would take the output past its limit.
    OverLimit,
}

/// The strings at each key; nil for a missing key or one of another type. Like GET's, the
/// reply is encoded straight into the connection's output, each string under its shard's read
/// lock; at the first string that would take the output past its limit, the reply stops (the
/// connection is then closed).
pub fn mget(ctx: &mut Ctx<'_>, cmd: Keys) -> Reply {
    let version = ctx.conn.version();
    let limit = ctx.out_limit;
    sessiond_protocol::put_header(ctx.out, b'*', cmd.keys.len());
    for key in &cmd.keys {
        ctx.out.reserve(REPLY_ROOM);
        let out = &mut *ctx.out;
        let read = ctx
            .store
            .read(key, ctx.now_ms, |entry| match entry.map(|e| e.value()) {
                Some(ValueRef::Str(value)) if out.len() + value.len() > limit => Read::OverLimit,
                Some(ValueRef::Str(value)) => {
                    sessiond_protocol::put_bulk(out, b'$', value);
                    Read::Written
                }
                _ => Read::Nil,
            });
        match read {
            Read::Written => ctx.hit(true),
            Read::Nil => {
                Frame::Null.encode(version, ctx.out);
                ctx.hit(false);
            }
            Read::OverLimit => return Reply::over_limit(),
        }
    }
    Reply::written()
}
