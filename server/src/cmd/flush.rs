//! `FLUSHALL` and `FLUSHDB` `[ASYNC|SYNC]`.

use sessiond_protocol::cmd::Flush;
use sessiond_protocol::Frame;

use super::Ctx;

/// Removes every key of the connection's database (FLUSHDB) or of every database (FLUSHALL);
/// with ASYNC, the keys are freed on a background thread.
pub fn flush(ctx: &mut Ctx<'_>, cmd: Flush) -> Frame {
    if cmd.all {
        ctx.shared.dbs.flush_all(cmd.asynchronous);
    } else if cmd.asynchronous {
        ctx.shared.dbs.db(ctx.conn.db()).flush_async();
    } else {
        ctx.store.flush();
    }
    Frame::ok()
}
