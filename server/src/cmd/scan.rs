//! `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.

use bytes::Bytes;
use sessiond_protocol::cmd::Scan;
use sessiond_protocol::Frame;

use super::{bulk_size, header_size, Ctx, Reply};
use crate::glob;
use crate::store::KeyFilter;

/// One step of the iteration: `[next cursor, [keys...]]`. COUNT is clamped to `scan-max-count`,
/// so that one call examines a bounded number of keys (it may then return fewer than COUNT with a
/// non-zero cursor, as Redis's SCAN may). A step whose reply would take the connection's output
/// past its limit is not answered.
pub fn scan(ctx: &mut Ctx<'_>, cmd: Scan) -> Reply {
    let config = &ctx.shared.config;
    let pattern = match cmd.pattern.as_deref() {
        None => None,
        Some(pattern) => match glob::key_pattern(pattern, config.max_pattern_len) {
            Ok(pattern) => pattern,
            Err(too_long) => return Frame::error(too_long.to_string()).into(),
        },
    };
    let filter = KeyFilter {
        pattern: pattern.as_ref(),
        type_name: cmd.type_name.as_deref(),
    };
    let count = cmd.count.min(config.scan_max_count);
    let (next, mut keys) = ctx.store.scan(cmd.cursor, count, filter, ctx.now_ms);
    // A user limited to some keys sees only those (a step may then return fewer than COUNT,
    // which SCAN allows); the cursor still walks the whole keyspace.
    if let Some(allowed) = ctx.conn.key_patterns() {
        keys.retain(|key| allowed.allow(key));
    }
    let size = header_size(2)
        + bulk_size(20)
        + header_size(keys.len())
        + keys.iter().map(|key| bulk_size(key.len())).sum::<usize>();
    if !ctx.fits(size) {
        return Reply::over_limit();
    }
    let cursor = Bytes::copy_from_slice(itoa::Buffer::new().format(next).as_bytes());
    Frame::Array(vec![
        Frame::Bulk(cursor),
        Frame::Array(keys.into_iter().map(Frame::Bulk).collect()),
    ])
    .into()
}
