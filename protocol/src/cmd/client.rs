//! `CLIENT` subcommands: ID, SETNAME, GETNAME, SETINFO, INFO, LIST, HELP.

use bytes::Bytes;

use super::args::{is, Args};
use super::CommandError;

/// `CLIENT <subcommand> ...`.
#[derive(Debug, Clone, PartialEq)]
pub enum Client {
    /// `CLIENT ID`: the connection's numeric ID.
    Id,
    /// `CLIENT SETNAME name`: an empty name clears it.
    SetName(Bytes),
    /// `CLIENT GETNAME`.
    GetName,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`.
    SetInfo {
        /// `true` for LIB-NAME, `false` for LIB-VER.
        lib_name: bool,
        /// The value to record.
        value: Bytes,
    },
    /// `CLIENT INFO`: this connection's line of `CLIENT LIST`.
    Info,
    /// `CLIENT LIST [TYPE normal] [ID id ...]`.
    List {
        /// Only these connection IDs, when given.
        ids: Option<Vec<u64>>,
    },
    /// `CLIENT HELP`.
    Help,
}

impl Client {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let sub = args.bytes()?;
        let upper = sub.to_ascii_uppercase();
        let arity = |args: &Args, n: usize| {
            if args.remaining() == n {
                Ok(())
            } else {
                Err(CommandError::other(format!(
                    "ERR wrong number of arguments for 'client|{}' command",
                    String::from_utf8_lossy(&sub).to_lowercase()
                )))
            }
        };
        let client = match &upper[..] {
            b"ID" => arity(args, 0).map(|()| Client::Id)?,
            b"GETNAME" => arity(args, 0).map(|()| Client::GetName)?,
            b"INFO" => arity(args, 0).map(|()| Client::Info)?,
            b"HELP" => arity(args, 0).map(|()| Client::Help)?,
            b"SETNAME" => {
                arity(args, 1)?;
                let name = args.bytes()?;
                if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
                    return Err(CommandError::other(
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    ));
                }
                Client::SetName(name)
            }
            b"SETINFO" => {
                arity(args, 2)?;
                let attribute = args.bytes()?;
                let value = args.bytes()?;
                let lib_name = if is(&attribute, "LIB-NAME") {
                    true
                } else if is(&attribute, "LIB-VER") {
                    false
                } else {
                    return Err(CommandError::other(format!(
                        "ERR Unrecognized option '{}'",
                        String::from_utf8_lossy(&attribute)
                    )));
                };
                if value.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
                    return Err(CommandError::other(
                        "ERR lib-name and lib-ver cannot contain spaces, newlines or special characters.",
                    ));
                }
                Client::SetInfo { lib_name, value }
            }
            b"LIST" => {
                let mut ids = None;
                while let Some(option) = args.next_opt() {
                    if is(&option, "TYPE") {
                        let kind = args.next_opt().ok_or(CommandError::Syntax)?;
                        if !is(&kind, "NORMAL") {
                            return Err(CommandError::other(format!(
                                "ERR Unknown client type '{}'",
                                String::from_utf8_lossy(&kind)
                            )));
                        }
                    } else if is(&option, "ID") {
                        let rest = args.rest();
                        if rest.is_empty() {
                            return Err(CommandError::Syntax);
                        }
                        let parsed = rest
                            .iter()
                            .map(|id| {
                                crate::request::parse_i64(id)
                                    .filter(|&n| n > 0)
                                    .map(|n| n as u64)
                                    .ok_or_else(|| CommandError::other("ERR Invalid client ID"))
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        ids = Some(parsed);
                    } else {
                        return Err(CommandError::Syntax);
                    }
                }
                Client::List { ids }
            }
            _ => {
                return Err(CommandError::UnknownSubcommand {
                    command: "CLIENT",
                    sub,
                })
            }
        };
        Ok(client)
    }
}
