//! `KEYS pattern`.

use sessiond_protocol::cmd::KeyOnly;
use sessiond_protocol::Frame;

use super::{bulk_size, header_size, Ctx, Reply};
use crate::glob;
use crate::store::KeyFilter;

/// Every live key matching the pattern. Like Redis's, this walks the whole keyspace: SCAN is
/// the way to iterate a large one without a long reply. The keys are copied only while their
/// reply fits under the connection's output limit, and encoded from that copy.
pub fn keys(ctx: &mut Ctx<'_>, cmd: KeyOnly) -> Reply {
    let pattern = match glob::key_pattern(&cmd.key, ctx.shared.config.max_pattern_len) {
        Ok(pattern) => pattern,
        Err(too_long) => return Frame::error(too_long.to_string()).into(),
    };
    let filter = KeyFilter {
        pattern: pattern.as_ref(),
        type_name: None,
    };
    // The array's header is at most that of a count of a billion.
    let mut size = header_size(1 << 30);
    let room = ctx.out_limit.saturating_sub(ctx.out.len());
    let keys = ctx.store.keys_within(filter, ctx.now_ms, |len| {
        size = size.saturating_add(bulk_size(len));
        size <= room
    });
    let Some(keys) = keys else {
        return Reply::over_limit();
    };
    // Encoded straight into the output (a frame per key would hold the reply twice more);
    // `size` already bounds it.
    ctx.out.reserve(size.min(room));
    sessiond_protocol::put_header(ctx.out, b'*', keys.len());
    for key in &keys {
        sessiond_protocol::put_bulk(ctx.out, b'$', key);
    }
    Reply::written()
}
