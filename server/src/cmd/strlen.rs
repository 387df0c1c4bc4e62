//! `STRLEN key`.

use sessiond_protocol::cmd::KeyOnly;
use sessiond_protocol::Frame;

use super::{wrongtype, Ctx};
use crate::store::ValueRef;

/// The length of the string, 0 when missing.
pub fn strlen(ctx: &mut Ctx<'_>, cmd: KeyOnly) -> Frame {
    ctx.store.read(&cmd.key, ctx.now_ms, |entry| {
        match entry.map(|e| e.value()) {
            None => Frame::Integer(0),
            Some(ValueRef::Str(value)) => Frame::Integer(value.len() as i64),
            Some(_) => wrongtype(),
        }
    })
}
