//! `CONFIG GET pattern [pattern ...]`: a read-only view of the settings.

use bytes::Bytes;

use super::args::{is, Args};
use super::CommandError;

/// `CONFIG <subcommand>`; only GET is served, the settings being fixed at start.
#[derive(Debug, Clone, PartialEq)]
pub enum Config {
    /// `CONFIG GET pattern [pattern ...]`.
    Get(Vec<Bytes>),
    /// `CONFIG SET`, `RESETSTAT`, `REWRITE`: refused with an explanation.
    ReadOnly(&'static str),
    /// `CONFIG HELP`.
    Help,
}

impl Config {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let sub = args.bytes()?;
        if is(&sub, "GET") {
            let patterns = args.rest();
            if patterns.is_empty() {
                return Err(CommandError::other(
                    "ERR wrong number of arguments for 'config|get' command",
                ));
            }
            Ok(Config::Get(patterns))
        } else if is(&sub, "SET") {
            args.rest();
            Ok(Config::ReadOnly("set"))
        } else if is(&sub, "RESETSTAT") {
            Ok(Config::ReadOnly("resetstat"))
        } else if is(&sub, "REWRITE") {
            Ok(Config::ReadOnly("rewrite"))
        } else if is(&sub, "HELP") {
            Ok(Config::Help)
        } else {
            Err(CommandError::UnknownSubcommand {
                command: "CONFIG",
                sub,
            })
        }
    }
}
