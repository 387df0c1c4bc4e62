//! `HSET`, `HMSET` and `HSETNX`.

use sessiond_protocol::cmd::KeyPairs;
use sessiond_protocol::Frame;

use super::{wrongtype, Ctx};
use crate::notify::Class;
use crate::store::{owned, Entry, Fields, Value, ValueMut};

/// `HSET key field value [...]`: replies with the number of fields added (not updated).
pub fn hset(ctx: &mut Ctx<'_>, cmd: KeyPairs) -> Frame {
    write(ctx, cmd, false)
}

/// Announces `hset` after a write that succeeded (Redis: whether or not a field was added).
fn announce(ctx: &Ctx<'_>, key: &[u8], reply: &Frame) {
    if let Frame::Integer(_) = reply {
        ctx.store.notify(Class::HASH, "hset", key);
    }
}

/// `HMSET key field value [...]`: HSET that replies OK (deprecated in Redis, still sent by
/// older clients and by redis-rs's `hset_multiple`).
pub fn hmset(ctx: &mut Ctx<'_>, cmd: KeyPairs) -> Frame {
    match write(ctx, cmd, false) {
        Frame::Integer(_) => Frame::ok(),
        other => other,
    }
}

/// `HSETNX key field value`: sets the field only if absent; 1 if set, 0 otherwise.
pub fn hsetnx(ctx: &mut Ctx<'_>, cmd: KeyPairs) -> Frame {
    write(ctx, cmd, true)
}

fn write(ctx: &mut Ctx<'_>, cmd: KeyPairs, only_new: bool) -> Frame {
    let put = |fields: &mut Fields| {
        let mut added = 0;
        for (field, value) in &cmd.pairs {
            if only_new && fields.contains_key(field) {
                continue;
            }
            added += i64::from(fields.insert(owned(field), owned(value)).is_none());
        }
        added
    };
    let reply = ctx
        .store
        .upsert(&cmd.key, ctx.now_ms, |current| match current {
            None => {
                let mut fields = Fields::default();
                let added = put(&mut fields);
                (
                    Some(Entry::new(Value::Hash(Box::new(fields)), 0)),
                    Frame::Integer(added),
                )
            }
            Some(mut entry) => match entry.value_mut() {
                ValueMut::Hash(fields) => (None, Frame::Integer(put(fields))),
                _ => (None, wrongtype()),
            },
        });
    // HSETNX announces only a field it set.
    if !only_new || reply == Frame::Integer(1) {
        announce(ctx, &cmd.key, &reply);
    }
    reply
}
