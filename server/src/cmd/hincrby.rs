//! `HINCRBY key field increment`.

use bytes::Bytes;
use sessiond_protocol::cmd::HIncrBy;
use sessiond_protocol::{parse_i64, Frame};

use super::{wrongtype, Ctx};
use crate::notify::Class;
use crate::store::{owned, Entry, Fields, Value, ValueMut};

/// Adds the increment to the integer in the field (0 when missing); replies with the result.
pub fn hincrby(ctx: &mut Ctx<'_>, cmd: HIncrBy) -> Frame {
    let bump = |fields: &mut Fields| -> Frame {
        let old = match fields.get(&cmd.field) {
            None => 0,
            Some(value) => match parse_i64(value) {
                Some(old) => old,
                None => return Frame::error("ERR hash value is not an integer"),
            },
        };
        let Some(new) = old.checked_add(cmd.delta) else {
            return Frame::error("ERR increment or decrement would overflow");
        };
        let text = Bytes::copy_from_slice(itoa::Buffer::new().format(new).as_bytes());
        fields.insert(owned(&cmd.field), text);
        Frame::Integer(new)
    };
    let reply = ctx
        .store
        .upsert(&cmd.key, ctx.now_ms, |current| match current {
            None => {
                let mut fields = Fields::default();
                let reply = bump(&mut fields);
                let created =
                    (!reply.is_error()).then(|| Entry::new(Value::Hash(Box::new(fields)), 0));
                (created, reply)
            }
            Some(mut entry) => match entry.value_mut() {
                ValueMut::Hash(fields) => (None, bump(fields)),
                _ => (None, wrongtype()),
            },
        });
    if let Frame::Integer(_) = reply {
        ctx.store.notify(Class::HASH, "hincrby", &cmd.key);
    }
    reply
}
