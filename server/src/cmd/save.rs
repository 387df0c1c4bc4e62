//! `SAVE`, `BGSAVE`, `BGREWRITEAOF` and `LASTSAVE` (SAVE itself runs in the connection loop, the one command
//! that waits: see [`super::Then::Save`]).

use sessiond_protocol::Frame;

use super::Ctx;
use crate::persist::{RewriteStarted, SaveError};

/// `BGSAVE`: starts a snapshot in the background.
pub fn bgsave(ctx: &mut Ctx<'_>) -> Frame {
    match ctx.shared.persistence.save_in_background() {
        Ok(()) => Frame::simple("Background saving started"),
        Err(error) => Frame::error(error.to_string()),
    }
}

/// `BGREWRITEAOF`: starts a rewrite of the append-only log, or schedules it after the snapshot
/// being written.
pub fn bgrewriteaof(ctx: &mut Ctx<'_>) -> Frame {
    match ctx.shared.persistence.rewrite_aof_in_background() {
        Ok(RewriteStarted::Started) => {
            Frame::simple("Background append only file rewriting started")
        }
        Ok(RewriteStarted::Scheduled) => {
            Frame::simple("Background append only file rewriting scheduled")
        }
        Err(error) => Frame::error(error.to_string()),
    }
}

/// `LASTSAVE`: Unix seconds of the last successful snapshot (the start time before any).
pub fn lastsave(ctx: &mut Ctx<'_>) -> Frame {
    Frame::Integer(ctx.shared.persistence.status().last_save_unix_s as i64)
}

/// The reply to SAVE once the snapshot is written.
pub fn save_reply(outcome: Result<crate::persist::writer::Written, SaveError>) -> Frame {
    match outcome {
        Ok(_) => Frame::ok(),
        Err(error) => Frame::error(error.to_string()),
    }
}
