//! `MOVE key db`.

use sessiond_protocol::cmd::Move;
use sessiond_protocol::Frame;

use super::Ctx;
use crate::notify::Class;
use crate::store::Moved;

/// The refusal of a MOVE of a session: it would leave its user's index behind.
pub const SESSION_REFUSED: &str =
    "ERR session keys cannot be moved to another database: a session stays with its user's index";

/// Moves a key, value and deadline, to database `db`: 1, or 0 when the key is missing here or
/// exists there (as Redis).
pub fn move_(ctx: &mut Ctx<'_>, cmd: Move) -> Frame {
    // Redis reads the index as a C int.
    if i32::try_from(cmd.db).is_err() {
        return Frame::error("ERR value is not an integer or out of range");
    }
    let to = match usize::try_from(cmd.db) {
        Ok(to) if to < ctx.shared.dbs.count() => to,
        _ => return Frame::error("ERR DB index is out of range"),
    };
    let from = ctx.conn.db();
    if from == to {
        return Frame::error("ERR source and destination objects are the same");
    }
    match ctx.shared.dbs.move_key(from, to, &cmd.key, ctx.now_ms) {
        Moved::Moved => {
            let target = ctx.shared.dbs.db(to);
            target.notify(Class::NEW, "new", &cmd.key);
            ctx.store.notify(Class::GENERIC, "move_from", &cmd.key);
            target.notify(Class::GENERIC, "move_to", &cmd.key);
            Frame::Integer(1)
        }
        Moved::NotMoved => Frame::Integer(0),
        Moved::Session => Frame::error(SESSION_REFUSED),
    }
}
