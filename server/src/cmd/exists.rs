//! `EXISTS key [key ...]`.

use sessiond_protocol::cmd::Keys;
use sessiond_protocol::Frame;

use super::Ctx;

/// How many of the keys exist; a key named twice counts twice, as in Redis.
pub fn exists(ctx: &mut Ctx<'_>, cmd: Keys) -> Frame {
    let now_ms = ctx.now_ms;
    let found = cmd
        .keys
        .iter()
        .filter(|key| ctx.store.read(key, now_ms, |e| e.is_some()))
        .count();
    Frame::Integer(found as i64)
}
