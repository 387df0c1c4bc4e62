//! `TIME`.

use bytes::Bytes;
use sessiond_protocol::Frame;

use super::Ctx;

/// `[unix seconds, microseconds]` as bulk strings, from the server's clock.
pub fn time(ctx: &mut Ctx<'_>) -> Frame {
    let now_ms = ctx.store.now_ms();
    let text = |n: u64| {
        Frame::Bulk(Bytes::copy_from_slice(
            itoa::Buffer::new().format(n).as_bytes(),
        ))
    };
    Frame::Array(vec![text(now_ms / 1000), text((now_ms % 1000) * 1000)])
}
