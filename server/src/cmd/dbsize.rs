//! `DBSIZE`.

use sessiond_protocol::Frame;

use super::Ctx;

/// The number of keys held (expired ones not yet reclaimed included, as in Redis).
pub fn dbsize(ctx: &mut Ctx<'_>) -> Frame {
    Frame::Integer(ctx.store.len() as i64)
}
