//! `HGET`, `HMGET` and `HEXISTS`.

use sessiond_protocol::cmd::KeyFields;
use sessiond_protocol::Frame;

use super::{bulk_size, header_size, wrongtype, Ctx, Reply};
use crate::store::{Fields, ValueRef};

/// Runs `f` on the hash at the key; `missing` when there is none, WRONGTYPE for another type.
fn with_hash(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    missing: Frame,
    f: impl FnOnce(&Ctx<'_>, &Fields) -> Reply,
) -> Reply {
    let ctx_ref = &*ctx;
    let reply = ctx.store.read(key, ctx.now_ms, |entry| {
        entry.map(|entry| match entry.value() {
            ValueRef::Hash(fields) => f(ctx_ref, fields),
            _ => wrongtype().into(),
        })
    });
    ctx.hit(reply.is_some());
    reply.unwrap_or_else(|| missing.into())
}

/// `HGET key field`: the value, nil when the key or field is missing.
pub fn hget(ctx: &mut Ctx<'_>, cmd: KeyFields) -> Reply {
    let field = &cmd.fields[..];
    with_hash(ctx, &cmd.key, Frame::Null, |_, fields| {
        field
            .first()
            .and_then(|f| fields.get(f))
            .map_or(Frame::Null, |v| Frame::Bulk(v.clone()))
            .into()
    })
}

/// `HMGET key field [...]`: the values, nil for each missing field. A reply that would take
/// the connection's output past its limit is measured, not built.
pub fn hmget(ctx: &mut Ctx<'_>, cmd: KeyFields) -> Reply {
    let missing = Frame::Array(vec![Frame::Null; cmd.fields.len()]);
    with_hash(ctx, &cmd.key, missing, |ctx, fields| {
        let size = header_size(cmd.fields.len())
            + cmd
                .fields
                .iter()
                .map(|f| fields.get(f).map_or(5, |v| bulk_size(v.len())))
                .sum::<usize>();
        if !ctx.fits(size) {
            return Reply::over_limit();
        }
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
        .into()
    })
}

/// `HEXISTS key field`: 1 or 0.
pub fn hexists(ctx: &mut Ctx<'_>, cmd: KeyFields) -> Reply {
    let field = &cmd.fields[..];
    with_hash(ctx, &cmd.key, Frame::Integer(0), |_, fields| {
        Frame::Integer(i64::from(
            field.first().is_some_and(|f| fields.contains_key(f)),
        ))
        .into()
    })
}
