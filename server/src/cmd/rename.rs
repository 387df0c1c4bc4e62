//! `RENAME key newkey` and `RENAMENX key newkey`.

use sessiond_protocol::cmd::Rename;
use sessiond_protocol::Frame;

use super::Ctx;
use crate::notify::Class;
use crate::store::Renamed;

/// The refusal of a rename that involves a session: a session moves only to an ID the server
/// issues (strict mode), which SESSION.REGENERATE does.
pub const SESSION_REFUSED: &str =
    "ERR session keys cannot be renamed: use SESSION.REGENERATE for a new server-issued ID";

/// Moves a key, value and deadline, to a new name in one step: RENAME replies OK (overwriting
/// the new name), RENAMENX 1, or 0 when the new name exists; `ERR no such key` without a source.
pub fn rename(ctx: &mut Ctx<'_>, cmd: Rename) -> Frame {
    let renamed = ctx
        .store
        .rename(&cmd.from, &cmd.to, cmd.only_if_new, ctx.now_ms);
    if renamed == Renamed::Moved && cmd.from != cmd.to {
        // Redis's dbAdd of the new name, then the rename's two events.
        ctx.store.notify(Class::NEW, "new", &cmd.to);
        ctx.store.notify(Class::GENERIC, "rename_from", &cmd.from);
        ctx.store.notify(Class::GENERIC, "rename_to", &cmd.to);
    }
    match renamed {
        Renamed::Moved if cmd.only_if_new => Frame::Integer(1),
        Renamed::Moved => Frame::ok(),
        Renamed::Exists => Frame::Integer(0),
        Renamed::NoSuchKey => Frame::error("ERR no such key"),
        Renamed::Session => Frame::error(SESSION_REFUSED),
    }
}
