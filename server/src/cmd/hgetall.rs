//! `HGETALL`, `HKEYS`, `HVALS` and `HLEN`: whole-hash reads.

use sessiond_protocol::cmd::KeyOnly;
use sessiond_protocol::Frame;

use super::{wrongtype, Ctx};
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

/// Reads the whole hash; a missing key is an empty hash.
pub fn read(ctx: &mut Ctx<'_>, cmd: KeyOnly, part: Part) -> Frame {
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
    let reply = ctx.store.read(&cmd.key, ctx.now_ms, |entry| {
        entry.map(|entry| match entry.value() {
            ValueRef::Hash(fields) => render(fields),
            _ => wrongtype(),
        })
    });
    ctx.hit(reply.is_some());
    reply.unwrap_or_else(|| render(&Fields::default()))
}
