//! The errors a well-formed but wrong command earns: Redis's prefixes and wording.

use std::fmt;

use bytes::Bytes;

/// A command the server understood as a frame but refuses; it becomes an error reply and the
/// connection stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// `ERR wrong number of arguments for '<name>' command`.
    WrongArity(&'static str),
    /// `ERR unknown command '<name>', with args beginning with: '<arg>' ...`.
    Unknown {
        /// The name as sent.
        name: Bytes,
        /// The arguments as sent.
        args: Vec<Bytes>,
    },
    /// `ERR unknown subcommand '<sub>'. Try <COMMAND> HELP.`.
    UnknownSubcommand {
        /// The parent command, upper case.
        command: &'static str,
        /// The subcommand as sent.
        sub: Bytes,
    },
    /// `ERR syntax error`.
    Syntax,
    /// `ERR value is not an integer or out of range`.
    NotInteger,
    /// `ERR invalid expire time in '<name>' command`.
    InvalidExpire(&'static str),
    /// Any other reply, its prefix (`ERR`, `WRONGTYPE`, `NOAUTH` ...) included.
    Other(String),
}

impl CommandError {
    /// An error with a full message, prefix included.
    pub fn other(message: impl Into<String>) -> CommandError {
        CommandError::Other(message.into())
    }
}

fn lossy(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned()
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::WrongArity(name) => {
                write!(f, "ERR wrong number of arguments for '{name}' command")
            }
            CommandError::Unknown { name, args } => {
                // Redis quotes arguments until 128 characters of them have been shown.
                let mut shown = String::new();
                for arg in args {
                    if shown.len() >= 128 {
                        break;
                    }
                    let room = 128 - shown.len();
                    shown.push('\'');
                    shown.push_str(&lossy(arg, room));
                    shown.push_str("' ");
                }
                write!(
                    f,
                    "ERR unknown command '{}', with args beginning with: {shown}",
                    lossy(name, 128)
                )
            }
            CommandError::UnknownSubcommand { command, sub } => write!(
                f,
                "ERR unknown subcommand '{}'. Try {command} HELP.",
                lossy(sub, 128)
            ),
            CommandError::Syntax => f.write_str("ERR syntax error"),
            CommandError::NotInteger => f.write_str("ERR value is not an integer or out of range"),
            CommandError::InvalidExpire(name) => {
                write!(f, "ERR invalid expire time in '{name}' command")
            }
            CommandError::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for CommandError {}
