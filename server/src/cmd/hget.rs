//! `HGET`, `HMGET` and `HEXISTS`.

use sessiond_protocol::cmd::KeyFields;
use sessiond_protocol::Frame;

use super::{wrongtype, Ctx};
use crate::store::{Fields, ValueRef};

/// Runs `f` on the hash at the key; `missing` when there is none, WRONGTYPE for another type.
fn with_hash(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    missing: Frame,
    f: impl FnOnce(&Fields) -> Frame,
) -> Frame {
    let reply = ctx.store.read(key, ctx.now_ms, |entry| {
        entry.map(|entry| match entry.value() {
            ValueRef::Hash(fields) => f(fields),
            _ => wrongtype(),
        })
    });
    ctx.hit(reply.is_some());
    reply.unwrap_or(missing)
}

/// `HGET key field`: the value, nil when the key or field is missing.
pub fn hget(ctx: &mut Ctx<'_>, cmd: KeyFields) -> Frame {
    let field = &cmd.fields[..];
    with_hash(ctx, &cmd.key, Frame::Null, |fields| {
        field
            .first()
            .and_then(|f| fields.get(f))
            .map_or(Frame::Null, |v| Frame::Bulk(v.clone()))
    })
}

/// `HMGET key field [...]`: the values, nil for each missing field.
pub fn hmget(ctx: &mut Ctx<'_>, cmd: KeyFields) -> Frame {
    let missing = Frame::Array(vec![Frame::Null; cmd.fields.len()]);
    with_hash(ctx, &cmd.key, missing, |fields| {
        Frame::Array(
            cmd.fields
                .iter()
                .map(|f| {
                    fields
                        .get(f)
                        .map_or(Frame::Null, |v| Frame::Bulk(v.clone()))
                })
                .collect(),
        )
    })
}

/// `HEXISTS key field`: 1 or 0.
pub fn hexists(ctx: &mut Ctx<'_>, cmd: KeyFields) -> Frame {
    let field = &cmd.fields[..];
    with_hash(ctx, &cmd.key, Frame::Integer(0), |fields| {
        Frame::Integer(i64::from(
            field.first().is_some_and(|f| fields.contains_key(f)),
        ))
    })
}
