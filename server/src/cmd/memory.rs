//! `MEMORY USAGE key [SAMPLES n]`, `MEMORY STATS`, `MEMORY DOCTOR`, `MEMORY HELP`.

use bytes::Bytes;
use sessiond_protocol::cmd::Memory;
use sessiond_protocol::Frame;

use super::Ctx;

/// Runs a MEMORY subcommand.
pub fn memory(ctx: &mut Ctx<'_>, cmd: Memory) -> Frame {
    match cmd {
        Memory::Usage(key) => {
            // MEMORY is a container without key positions, so the user's key patterns are
            // checked here: a key's size is not for a user who may not read it.
            if ctx
                .conn
                .key_patterns()
                .is_some_and(|keys| !keys.allow(&key))
            {
                return Frame::error("NOPERM No permissions to access a key");
            }
            ctx.store.read(&key, ctx.now_ms, |node| {
                node.map_or(Frame::Null, |node| Frame::Integer(node.footprint() as i64))
            })
        }
        Memory::Stats => {
            let dbs = &ctx.shared.dbs;
            let used = dbs.used_memory();
            let keys = dbs.len() as u64;
            let field = |name: &'static str, value: u64| {
                (
                    Frame::Bulk(Bytes::from_static(name.as_bytes())),
                    Frame::Integer(value as i64),
                )
            };
            Frame::Map(vec![
                field("total.allocated", used),
                field("dataset.bytes", used),
                field("keys.count", keys),
                field("keys.bytes-per-key", used.checked_div(keys).unwrap_or(0)),
            ])
        }
        Memory::Doctor => super::client::verbatim(
            "Hi Sam, I can't find any memory issue in your instance. I can only account for \
             what occurs on this base."
                .to_owned(),
        ),
        Memory::Help => Frame::Array(
            [
                "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "DOCTOR",
                "    Return memory problems reports.",
                "STATS",
                "    Return information about the memory usage of the server.",
                "USAGE <key> [SAMPLES <count>]",
                "    Return memory in bytes used by <key> and its value. Nested values are",
                "    counted exactly; SAMPLES is accepted and ignored.",
                "HELP",
                "    Print this help.",
            ]
            .into_iter()
            .map(Frame::simple)
            .collect(),
        ),
    }
}
