//! `COMMAND [COUNT | INFO name ... | DOCS name ... | LIST | HELP]`: enough for redis-cli and
//! client libraries that introspect the server.

use bytes::Bytes;

use super::args::Args;
use super::CommandError;

/// The `COMMAND` introspection command.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandInfo {
    /// `COMMAND`: every command's description.
    All,
    /// `COMMAND COUNT`.
    Count,
    /// `COMMAND LIST`: every command's name.
    List,
    /// `COMMAND INFO [name ...]`.
    Info(Vec<Bytes>),
    /// `COMMAND DOCS [name ...]`.
    Docs(Vec<Bytes>),
    /// `COMMAND HELP`.
    Help,
}

impl CommandInfo {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let Some(sub) = args.next_opt() else {
            return Ok(CommandInfo::All);
        };
        let upper = sub.to_ascii_uppercase();
        let command = match &upper[..] {
            b"COUNT" if args.remaining() == 0 => CommandInfo::Count,
            b"LIST" => {
                // Filters (FILTERBY) are accepted and ignored: every command is listed.
                args.rest();
                CommandInfo::List
            }
            b"INFO" => CommandInfo::Info(args.rest()),
            b"DOCS" => CommandInfo::Docs(args.rest()),
            b"HELP" if args.remaining() == 0 => CommandInfo::Help,
            b"COUNT" | b"HELP" => {
                return Err(CommandError::other(format!(
                    "ERR wrong number of arguments for 'command|{}' command",
                    String::from_utf8_lossy(&sub).to_lowercase()
                )))
            }
            _ => {
                return Err(CommandError::UnknownSubcommand {
                    command: "COMMAND",
                    sub,
                })
            }
        };
        Ok(command)
    }
}
