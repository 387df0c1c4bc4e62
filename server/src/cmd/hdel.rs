//! `HDEL key field [field ...]`.

use sessiond_protocol::cmd::KeyFields;
use sessiond_protocol::Frame;

use super::{wrongtype, Ctx};
use crate::store::ValueMut;

/// Removes the fields; replies with how many existed. A hash left empty is deleted.
pub fn hdel(ctx: &mut Ctx<'_>, cmd: KeyFields) -> Frame {
    let reply = ctx
        .store
        .modify(&cmd.key, ctx.now_ms, |mut entry| match entry.value_mut() {
            ValueMut::Hash(fields) => {
                let removed = cmd
                    .fields
                    .iter()
                    .filter(|f| fields.remove(*f).is_some())
                    .count();
                (fields.is_empty(), Frame::Integer(removed as i64))
            }
            _ => (false, wrongtype()),
        });
    reply.unwrap_or(Frame::Integer(0))
}
