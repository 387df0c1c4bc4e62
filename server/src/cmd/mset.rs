//! `MSET key value [key value ...]`.

use sessiond_protocol::cmd::MSet;
use sessiond_protocol::Frame;

use super::{wrongtype, Ctx};
use crate::notify::Class;
use crate::store::{Entry, Value};

/// Writes every pair, clearing deadlines.
///
/// Each key is written under its own shard lock, so a concurrent reader may see some of the
/// pairs before the others; there is no global lock to make the set of writes atomic. A session
/// key among them makes the whole command a WRONGTYPE error.
pub fn mset(ctx: &mut Ctx<'_>, cmd: MSet) -> Frame {
    // Sessions end only through the SESSION commands: refuse before writing anything.
    let now_ms = ctx.now_ms;
    if cmd.pairs.iter().any(|(key, _)| {
        ctx.store
            .read(key, now_ms, |e| e.is_some_and(|e| e.is_session()))
    }) {
        return wrongtype();
    }
    for (key, value) in &cmd.pairs {
        ctx.store.upsert(key, ctx.now_ms, |_| {
            (Some(Entry::new(Value::Str(value.clone()), 0)), ())
        });
        ctx.store.notify(Class::STRING, "set", key);
    }
    Frame::ok()
}
