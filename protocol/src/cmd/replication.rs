//! The replication commands: `REPLICAOF`/`SLAVEOF`, `REPLCONF`, `PSYNC`/`SYNC` and `WAIT`
//! (ROLE takes no argument).

use bytes::Bytes;

use super::args::{is, Args};
use super::CommandError;
use crate::request::parse_i64;

/// `REPLICAOF host port` or `REPLICAOF NO ONE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaOf {
    /// `NO ONE`: stop replicating, become a primary.
    NoOne,
    /// Replicate the primary at `host`:`port`.
    Primary {
        /// The primary's host name or address, as given.
        host: String,
        /// Its port.
        port: u16,
    },
}

impl ReplicaOf {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let host = args.bytes()?;
        let port = args.bytes()?;
        args.finish()?;
        if is(&host, "NO") && is(&port, "ONE") {
            return Ok(ReplicaOf::NoOne);
        }
        // Redis reads the port as a long in 0..=65535, with an error of its own for anything
        // else, a word included.
        let port = parse_i64(&port)
            .and_then(|port| u16::try_from(port).ok())
            .ok_or_else(|| CommandError::other("ERR Invalid master port"))?;
        let host = String::from_utf8(host.to_vec()).map_err(|_| CommandError::Syntax)?;
        Ok(ReplicaOf::Primary { host, port })
    }
}

/// One option of `REPLCONF option value [option value ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplConfOption {
    /// `listening-port <port>`: the port the replica serves clients on.
    ListeningPort(i64),
    /// `ip-address <address>`: the address the replica announces.
    IpAddress(Bytes),
    /// `capa <capability>`: understood or ignored.
    Capa(Bytes),
    /// `ack <offset>`: the replica has applied the stream up to `offset` (no reply).
    Ack(i64),
    /// `getack *`: the primary asks for an ACK at once (no reply).
    GetAck,
}

/// Redis's limit on an announced address (`NET_HOST_STR_LEN`).
pub const MAX_REPLICA_ADDRESS: usize = 256;

/// `REPLCONF option value [option value ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplConf {
    /// The options, in order.
    pub options: Vec<ReplConfOption>,
}

impl ReplConf {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        if !args.remaining().is_multiple_of(2) {
            return Err(CommandError::Syntax);
        }
        let mut options = Vec::with_capacity(args.remaining() / 2);
        while let Some(name) = args.next_opt() {
            let value = args.bytes()?;
            let option = if is(&name, "LISTENING-PORT") {
                ReplConfOption::ListeningPort(parse_i64(&value).ok_or(CommandError::NotInteger)?)
            } else if is(&name, "IP-ADDRESS") {
                if value.len() >= MAX_REPLICA_ADDRESS {
                    return Err(CommandError::other(format!(
                        "ERR REPLCONF ip-address provided by replica instance is too long: {} bytes",
                        value.len()
                    )));
                }
                ReplConfOption::IpAddress(value)
            } else if is(&name, "CAPA") {
                ReplConfOption::Capa(value)
            } else if is(&name, "ACK") {
                // A malformed ACK is ignored, as Redis ignores it.
                ReplConfOption::Ack(parse_i64(&value).unwrap_or(-1))
            } else if is(&name, "GETACK") {
                ReplConfOption::GetAck
            } else {
                return Err(CommandError::other(format!(
                    "ERR Unrecognized REPLCONF option: {}",
                    String::from_utf8_lossy(&name)
                )));
            };
            options.push(option);
        }
        Ok(ReplConf { options })
    }
}

/// `PSYNC replicationid offset`, or `SYNC` (always a full resynchronization).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Psync {
    /// The replication ID the replica follows (`?`: none).
    pub replid: Bytes,
    /// The offset of the first byte it wants (Redis's: its offset plus one); -1 with `?`.
    pub offset: i64,
}

impl Psync {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let replid = args.bytes()?;
        let offset = args.bytes()?;
        // Redis ignores what follows (a later version's options).
        let _ = args.rest();
        // An offset that is not a number asks for a full resynchronization, as in Redis.
        let offset = parse_i64(&offset).unwrap_or(-1);
        Ok(Psync { replid, offset })
    }

    /// SYNC: a full resynchronization, always.
    pub fn full() -> Psync {
        Psync {
            replid: Bytes::from_static(b"?"),
            offset: -1,
        }
    }
}

/// `WAIT numreplicas timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// How many replicas must acknowledge.
    pub replicas: i64,
    /// The most it waits, ms; 0: forever.
    pub timeout_ms: u64,
}

impl Wait {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let replicas = args.i64()?;
        let timeout = args.bytes()?;
        args.finish()?;
        let timeout = parse_i64(&timeout)
            .ok_or_else(|| CommandError::other("ERR timeout is not an integer or out of range"))?;
        let timeout_ms =
            u64::try_from(timeout).map_err(|_| CommandError::other("ERR timeout is negative"))?;
        Ok(Wait {
            replicas,
            timeout_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::Command;

    fn parse(line: &str) -> Result<Command, CommandError> {
        Command::parse(
            line.split(' ')
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect(),
        )
    }

    fn error(line: &str) -> String {
        parse(line).expect_err("an error").to_string()
    }

    #[test]
    fn replicaof_takes_no_one_or_a_host_and_a_port() {
        assert_eq!(
            parse("REPLICAOF no One"),
            Ok(Command::ReplicaOf(ReplicaOf::NoOne))
        );
        assert_eq!(
            parse("slaveof example.org 6380"),
            Ok(Command::ReplicaOf(ReplicaOf::Primary {
                host: "example.org".into(),
                port: 6380
            }))
        );
        assert_eq!(error("replicaof h 65536"), "ERR Invalid master port");
        assert_eq!(error("replicaof h -1"), "ERR Invalid master port");
        // Redis's `getRangeLongFromObjectOrReply` gives its message for a word too.
        assert_eq!(error("replicaof h abc"), "ERR Invalid master port");
    }

    #[test]
    fn replconf_takes_pairs_in_redis_words() {
        let Ok(Command::ReplConf(conf)) = parse("REPLCONF listening-port 7 capa psync2 ack 12")
        else {
            panic!("REPLCONF parses")
        };
        assert_eq!(
            conf.options,
            [
                ReplConfOption::ListeningPort(7),
                ReplConfOption::Capa(Bytes::from_static(b"psync2")),
                ReplConfOption::Ack(12)
            ]
        );
        assert_eq!(error("replconf ack"), "ERR syntax error");
        assert_eq!(
            error("replconf nope 1"),
            "ERR Unrecognized REPLCONF option: nope"
        );
        assert_eq!(
            error("replconf listening-port x"),
            "ERR value is not an integer or out of range"
        );
        let long = "a".repeat(MAX_REPLICA_ADDRESS);
        assert_eq!(
            error(&format!("replconf ip-address {long}")),
            format!(
                "ERR REPLCONF ip-address provided by replica instance is too long: {} bytes",
                MAX_REPLICA_ADDRESS
            )
        );
    }

    #[test]
    fn psync_and_wait() {
        assert_eq!(
            parse("PSYNC ? -1"),
            Ok(Command::Psync(Psync {
                replid: Bytes::from_static(b"?"),
                offset: -1
            }))
        );
        assert_eq!(parse("SYNC"), Ok(Command::Psync(Psync::full())));
        assert_eq!(
            parse("WAIT 2 100"),
            Ok(Command::Wait(Wait {
                replicas: 2,
                timeout_ms: 100
            }))
        );
        assert_eq!(error("wait 1 -5"), "ERR timeout is negative");
        assert_eq!(
            error("wait 1 x"),
            "ERR timeout is not an integer or out of range"
        );
    }
}
