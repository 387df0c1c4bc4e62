//! `FLUSHALL` and `FLUSHDB`.

use sessiond_protocol::cmd::Flush;
use sessiond_protocol::Frame;

use super::Ctx;

/// Removes every key.
pub fn flush(ctx: &mut Ctx<'_>, _cmd: Flush) -> Frame {
    ctx.store.flush();
    Frame::ok()
}
