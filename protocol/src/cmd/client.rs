//! `CLIENT` subcommands: ID, SETNAME, GETNAME, SETINFO, INFO, LIST, KILL, PAUSE, UNPAUSE,
//! NO-EVICT, HELP.

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
    /// `CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...]`.
    List {
        /// Only these connection IDs, when given.
        ids: Option<Vec<u64>>,
        /// Only clients of this kind, when given.
        kind: Option<ClientType>,
    },
    /// `CLIENT KILL addr` (the old form: `OK` or an error) or `CLIENT KILL filter value ...`
    /// (the count of clients killed).
    Kill(KillFilter),
    /// `CLIENT PAUSE timeout [WRITE|ALL]`: milliseconds, and whether only writes wait.
    Pause {
        /// How long, in milliseconds.
        timeout_ms: u64,
        /// `WRITE`: only commands that may write wait; `ALL` (the default): every command.
        writes_only: bool,
    },
    /// `CLIENT UNPAUSE`.
    Unpause,
    /// `CLIENT NO-EVICT on|off`.
    NoEvict(bool),
    /// `CLIENT HELP`.
    Help,
}

/// The client kinds of `CLIENT KILL TYPE` (and `CLIENT LIST TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientType {
    /// Ordinary clients.
    Normal,
    /// Clients subscribed to channels or patterns.
    Pubsub,
    /// Replicas connected to this node (`replica`, `slave`).
    Replication,
    /// The link to this node's primary (`master`): not a client here, so none matches.
    Master,
}

impl ClientType {
    /// Redis's names, case-insensitive; `None` for others.
    pub fn parse(name: &[u8]) -> Option<ClientType> {
        if is(name, "NORMAL") {
            Some(ClientType::Normal)
        } else if is(name, "PUBSUB") {
            Some(ClientType::Pubsub)
        } else if is(name, "REPLICA") || is(name, "SLAVE") {
            Some(ClientType::Replication)
        } else if is(name, "MASTER") {
            Some(ClientType::Master)
        } else {
            None
        }
    }
}

/// Which clients `CLIENT KILL` closes: those matching every filter given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KillFilter {
    /// The old form's one address: the reply is `OK`, or an error when no client has it.
    pub legacy: bool,
    /// `ID id`.
    pub id: Option<u64>,
    /// `ADDR ip:port` (the old form's address too): the peer's address.
    pub addr: Option<Bytes>,
    /// `LADDR ip:port`: the server's end of the connection.
    pub laddr: Option<Bytes>,
    /// `USER name`.
    pub user: Option<Bytes>,
    /// `TYPE kind`.
    pub kind: Option<ClientType>,
    /// `SKIPME no` clears it: by default the caller is not killed.
    pub skip_me: bool,
    /// `MAXAGE seconds`: only clients connected at least this long.
    pub max_age_s: Option<u64>,
}

impl KillFilter {
    fn parse(args: &mut Args) -> Result<KillFilter, CommandError> {
        let mut filter = KillFilter {
            skip_me: true,
            ..KillFilter::default()
        };
        if args.remaining() == 1 {
            // As Redis: with the old form, a client can kill itself.
            filter.legacy = true;
            filter.skip_me = false;
            filter.addr = Some(args.bytes()?);
            return Ok(filter);
        }
        while let Some(name) = args.next_opt() {
            let value = args.next_opt().ok_or(CommandError::Syntax)?;
            if is(&name, "ID") {
                let id = crate::request::parse_i64(&value)
                    .filter(|&id| id > 0)
                    .ok_or_else(|| CommandError::other("ERR client-id should be greater than 0"))?;
                filter.id = Some(id as u64);
            } else if is(&name, "ADDR") {
                filter.addr = Some(value);
            } else if is(&name, "LADDR") {
                filter.laddr = Some(value);
            } else if is(&name, "USER") {
                filter.user = Some(value);
            } else if is(&name, "TYPE") {
                let kind = ClientType::parse(&value).ok_or_else(|| {
                    CommandError::other(format!(
                        "ERR Unknown client type '{}'",
                        String::from_utf8_lossy(&value)
                    ))
                })?;
                filter.kind = Some(kind);
            } else if is(&name, "SKIPME") {
                filter.skip_me = if is(&value, "YES") {
                    true
                } else if is(&value, "NO") {
                    false
                } else {
                    return Err(CommandError::Syntax);
                };
            } else if is(&name, "MAXAGE") {
                let age = crate::request::parse_i64(&value).ok_or(CommandError::NotInteger)?;
                // Redis takes any integer; zero or less filters nothing.
                filter.max_age_s = u64::try_from(age).ok().filter(|&age| age > 0);
            } else {
                return Err(CommandError::Syntax);
            }
        }
        Ok(filter)
    }
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
            b"KILL" => {
                if args.remaining() == 0 {
                    return Err(CommandError::other(
                        "ERR wrong number of arguments for 'client|kill' command",
                    ));
                }
                Client::Kill(KillFilter::parse(args)?)
            }
            b"PAUSE" => {
                if !(1..=2).contains(&args.remaining()) {
                    return Err(CommandError::other(
                        "ERR wrong number of arguments for 'client|pause' command",
                    ));
                }
                let timeout = args.bytes()?;
                let timeout_ms = crate::request::parse_i64(&timeout).ok_or_else(|| {
                    CommandError::other("ERR timeout is not an integer or out of range")
                })?;
                let timeout_ms = u64::try_from(timeout_ms)
                    .map_err(|_| CommandError::other("ERR timeout is negative"))?;
                let writes_only = match args.next_opt() {
                    None => false,
                    Some(mode) if is(&mode, "WRITE") => true,
                    Some(mode) if is(&mode, "ALL") => false,
                    Some(_) => return Err(CommandError::Syntax),
                };
                Client::Pause {
                    timeout_ms,
                    writes_only,
                }
            }
            b"UNPAUSE" => arity(args, 0).map(|()| Client::Unpause)?,
            b"NO-EVICT" => {
                arity(args, 1)?;
                let mode = args.bytes()?;
                if is(&mode, "ON") {
                    Client::NoEvict(true)
                } else if is(&mode, "OFF") {
                    Client::NoEvict(false)
                } else {
                    return Err(CommandError::Syntax);
                }
            }
            b"LIST" => {
                let mut ids = None;
                let mut kind = None;
                while let Some(option) = args.next_opt() {
                    if is(&option, "TYPE") {
                        let name = args.next_opt().ok_or(CommandError::Syntax)?;
                        kind = Some(ClientType::parse(&name).ok_or_else(|| {
                            CommandError::other(format!(
                                "ERR Unknown client type '{}'",
                                String::from_utf8_lossy(&name)
                            ))
                        })?);
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
                Client::List { ids, kind }
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
