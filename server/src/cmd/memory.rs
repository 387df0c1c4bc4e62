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
            // The figures INFO memory gives, in Redis's MEMORY STATS names: the process's
            // memory (`used_memory`), and the dataset as `maxmemory` counts it.
            let shared = ctx.shared;
            let (memory, peak) = shared.sample_memory();
            let (used, rss) = (memory.anonymous, memory.rss);
            let dataset = shared.dbs.used_memory();
            let keys = shared.dbs.len() as u64;
            let percent = |part: u64, whole: u64| {
                if whole == 0 {
                    0.0
                } else {
                    part as f64 * 100.0 / whole as f64
                }
            };
            let name = |name: &'static str| Frame::Bulk(Bytes::from_static(name.as_bytes()));
            let int = |value: u64| Frame::Integer(i64::try_from(value).unwrap_or(i64::MAX));
            Frame::Map(vec![
                (name("peak.allocated"), int(peak)),
                (name("total.allocated"), int(used)),
                (name("lua.caches"), int(shared.scripts.lua_memory())),
                (name("overhead.total"), int(used.saturating_sub(dataset))),
                (name("keys.count"), int(keys)),
                (
                    name("keys.bytes-per-key"),
                    int(used.checked_div(keys).unwrap_or(0)),
                ),
                (name("dataset.bytes"), int(dataset)),
                (
                    name("dataset.percentage"),
                    Frame::Double(percent(dataset, used)),
                ),
                (name("peak.percentage"), Frame::Double(percent(used, peak))),
                (
                    name("fragmentation"),
                    Frame::Double(if used == 0 {
                        0.0
                    } else {
                        rss as f64 / used as f64
                    }),
                ),
                (
                    name("fragmentation.bytes"),
                    Frame::Integer(rss as i64 - used as i64),
                ),
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
