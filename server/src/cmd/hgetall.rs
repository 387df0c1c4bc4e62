//! `HGETALL`, `HKEYS`, `HVALS` and `HLEN`: whole-hash reads.

use sessiond_protocol::cmd::KeyOnly;
use sessiond_protocol::Frame;

use super::{bulk_size, header_size, wrongtype, Ctx, Reply};
use crate::store::{Fields, ValueRef};

/// What part of the hash to return.
#[derive(Debug, Clone, Copy)]
pub enum Part {
    /// `HGETALL`: a map of fields to values.
    All,
    /// `HKEYS`: the fields.
    Keys,
    /// `HVALS`: the values.
    Values,
    /// `HLEN`: the count.
    Len,
}

/// Reads the whole hash; a missing key is an empty hash. A reply that would take the
/// connection's output past its limit is measured, not built.
pub fn read(ctx: &mut Ctx<'_>, cmd: KeyOnly, part: Part) -> Reply {
    let size = |fields: &Fields| {
        let items: usize = match part {
            Part::All => fields
                .iter()
                .map(|(f, v)| bulk_size(f.len()) + bulk_size(v.len()))
                .sum(),
            Part::Keys => fields.keys().map(|f| bulk_size(f.len())).sum(),
            Part::Values => fields.values().map(|v| bulk_size(v.len())).sum(),
            Part::Len => 0,
        };
        header_size(fields.len() * 2) + items
    };
    let render = |fields: &Fields| match part {
        Part::All => Frame::Map(
            fields
                .iter()
                .map(|(f, v)| (Frame::Bulk(f.clone()), Frame::Bulk(v.clone())))
                .collect(),
        ),
        Part::Keys => Frame::Array(fields.keys().cloned().map(Frame::Bulk).collect()),
        Part::Values => Frame::Array(fields.values().cloned().map(Frame::Bulk).collect()),
        Part::Len => Frame::Integer(fields.len() as i64),
    };
    let ctx_ref = &*ctx;
    let reply = ctx.store.read(&cmd.key, ctx.now_ms, |entry| {
        entry.map(|entry| match entry.value() {
            ValueRef::Hash(fields) if !ctx_ref.fits(size(fields)) => Reply::over_limit(),
            ValueRef::Hash(fields) => render(fields).into(),
            _ => wrongtype().into(),
        })
    });
    ctx.hit(reply.is_some());
    reply.unwrap_or_else(|| render(&Fields::default()).into())
}
