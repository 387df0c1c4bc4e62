//! `HDEL key field [field ...]`.

use sessiond_protocol::cmd::KeyFields;
use sessiond_protocol::Frame;

use super::{wrongtype, Ctx};
use crate::notify::Class;
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
                let emptied = fields.is_empty();
                (
                    emptied,
                    (Frame::Integer(removed as i64), removed > 0, emptied),
                )
            }
            _ => (false, (wrongtype(), false, false)),
        });
    let Some((reply, removed, emptied)) = reply else {
        return Frame::Integer(0);
    };
    if removed {
        ctx.store.notify(Class::HASH, "hdel", &cmd.key);
    }
    if emptied {
        ctx.store.notify(Class::GENERIC, "del", &cmd.key);
    }
    reply
}
