//! `SWAPDB index1 index2`.

use sessiond_protocol::cmd::SwapDb;
use sessiond_protocol::Frame;

use super::Ctx;

/// Swaps what two database indexes name (see [`crate::store::Databases::swap`]): clients
/// connected to one see the other's keys and sessions at once.
pub fn swapdb(ctx: &mut Ctx<'_>, cmd: SwapDb) -> Frame {
    let index = |n: i64| usize::try_from(n).ok();
    match (index(cmd.first), index(cmd.second)) {
        (Some(a), Some(b)) if ctx.shared.dbs.swap(a, b) => Frame::ok(),
        _ => Frame::error("ERR DB index is out of range"),
    }
}
