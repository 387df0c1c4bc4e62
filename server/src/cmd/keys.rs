//! `KEYS pattern`.

use sessiond_protocol::cmd::KeyOnly;
use sessiond_protocol::Frame;

use super::Ctx;
use crate::glob;
use crate::store::KeyFilter;

/// Every live key matching the pattern. Like Redis's, this walks the whole keyspace: SCAN is
/// the way to iterate a large one without a long reply.
pub fn keys(ctx: &mut Ctx<'_>, cmd: KeyOnly) -> Frame {
    let pattern = match glob::key_pattern(&cmd.key, ctx.shared.config.max_pattern_len) {
        Ok(pattern) => pattern,
        Err(too_long) => return Frame::error(too_long.to_string()),
    };
    let filter = KeyFilter {
        pattern: pattern.as_ref(),
        type_name: None,
    };
    Frame::Array(
        ctx.store
            .keys(filter, ctx.now_ms)
            .into_iter()
            .map(Frame::Bulk)
            .collect(),
    )
}
