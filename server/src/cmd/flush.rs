//! `FLUSHALL` and `FLUSHDB` `[ASYNC|SYNC]`.

use sessiond_protocol::cmd::Flush;
use sessiond_protocol::Frame;

use super::Ctx;

/// Removes every key; with ASYNC, the keys are freed on a background thread.
pub fn flush(ctx: &mut Ctx<'_>, cmd: Flush) -> Frame {
    if cmd.asynchronous {
        ctx.shared.store.flush_async();
    } else {
        ctx.store.flush();
    }
    Frame::ok()
}
