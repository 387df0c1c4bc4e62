//! `SLOWLOG GET [count] | LEN | RESET | HELP`: the slow log ([`crate::slowlog`]) in Redis's
//! shapes.

use bytes::Bytes;
use sessiond_protocol::cmd::Slowlog;
use sessiond_protocol::Frame;

use super::Ctx;

/// Answers SLOWLOG.
pub fn slowlog(ctx: &mut Ctx<'_>, cmd: Slowlog) -> Frame {
    let log = &ctx.shared.slowlog;
    match cmd {
        Slowlog::Get(count) => Frame::Array(
            log.newest(count)
                .into_iter()
                .map(|entry| {
                    Frame::Array(vec![
                        Frame::Integer(entry.id as i64),
                        Frame::Integer(entry.unix_s as i64),
                        Frame::Integer(entry.usec as i64),
                        Frame::Array(entry.args.into_iter().map(Frame::Bulk).collect()),
                        Frame::Bulk(Bytes::from(entry.peer)),
                        Frame::Bulk(Bytes::from(entry.client_name)),
                    ])
                })
                .collect(),
        ),
        Slowlog::Len => Frame::Integer(log.len() as i64),
        Slowlog::Reset => {
            log.reset();
            Frame::ok()
        }
        Slowlog::Help => Frame::Array(
            [
                "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET [<count>]",
                "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                "    Entries are made of:",
                "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                "    client name",
                "LEN",
                "    Return the length of the slowlog.",
                "RESET",
                "    Reset the slowlog.",
                "HELP",
                "    Print this help.",
            ]
            .into_iter()
            .map(Frame::simple)
            .collect(),
        ),
    }
}
