//! `DEBUG SLEEP seconds` and `DEBUG HELP`.
//!
//! Redis's DEBUG SLEEP blocks its whole event loop, every client with it; here only the
//! connection that sent it waits ([`super::Then::Sleep`]: a timer its task awaits), and the
//! server serves everyone else meanwhile.

use sessiond_protocol::cmd::Debug;
use sessiond_protocol::Frame;

use super::{Reply, Then};

/// Runs a DEBUG subcommand.
pub fn debug(cmd: Debug) -> Reply {
    match cmd {
        Debug::Sleep(duration) => Reply {
            frame: None,
            then: Then::Sleep(duration),
        },
        Debug::Help => Reply {
            frame: Some(Frame::Array(
                [
                    "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                    "SLEEP <seconds>",
                    "    Reply after <seconds> (a decimal number); only this connection waits.",
                    "HELP",
                    "    Print this help.",
                ]
                .into_iter()
                .map(Frame::simple)
                .collect(),
            )),
            then: Then::Continue,
        },
    }
}
