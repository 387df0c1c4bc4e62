//! `TYPE key`.

use bytes::Bytes;
use sessiond_protocol::cmd::KeyOnly;
use sessiond_protocol::Frame;

use super::Ctx;

/// The value's type name, `none` when missing.
pub fn type_(ctx: &mut Ctx<'_>, cmd: KeyOnly) -> Frame {
    let name = ctx.store.read(&cmd.key, ctx.now_ms, |e| {
        e.map_or("none", |e| e.value().type_name())
    });
    Frame::Simple(Bytes::from_static(name.as_bytes()))
}
