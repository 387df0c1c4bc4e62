//! Connection commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET.

use bytes::Bytes;

use super::args::{is, Args};
use super::CommandError;

/// `PING [message]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ping {
    /// Echoed back as a bulk string when present; `+PONG` otherwise.
    pub message: Option<Bytes>,
}

impl Ping {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let message = args.next_opt();
        args.finish()?;
        Ok(Ping { message })
    }
}

/// `ECHO message`.
#[derive(Debug, Clone, PartialEq)]
pub struct Echo {
    /// The bulk string to send back.
    pub message: Bytes,
}

impl Echo {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let message = args.bytes()?;
        args.finish()?;
        Ok(Echo { message })
    }
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hello {
    /// The protocol version asked for; checked by the server (`NOPROTO`).
    pub protover: Option<i64>,
    /// Credentials to authenticate with before switching.
    pub auth: Option<(Bytes, Bytes)>,
    /// A connection name to set.
    pub setname: Option<Bytes>,
}

impl Hello {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let mut hello = Hello {
            protover: None,
            auth: None,
            setname: None,
        };
        let Some(version) = args.next_opt() else {
            return Ok(hello);
        };
        hello.protover = Some(crate::request::parse_i64(&version).ok_or_else(|| {
            CommandError::other("ERR Protocol version is not an integer or out of range")
        })?);
        while let Some(option) = args.next_opt() {
            if is(&option, "AUTH") && args.remaining() >= 2 {
                hello.auth = Some((args.bytes()?, args.bytes()?));
            } else if is(&option, "SETNAME") && args.remaining() >= 1 {
                hello.setname = Some(args.bytes()?);
            } else {
                return Err(CommandError::other(format!(
                    "ERR Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&option)
                )));
            }
        }
        Ok(hello)
    }
}

/// `AUTH [username] password`.
#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    /// The user; `default` when absent.
    pub username: Option<Bytes>,
    /// The password.
    pub password: Bytes,
}

impl Auth {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        match args.remaining() {
            1 => Ok(Auth {
                username: None,
                password: args.bytes()?,
            }),
            2 => Ok(Auth {
                username: Some(args.bytes()?),
                password: args.bytes()?,
            }),
            _ => Err(CommandError::Syntax),
        }
    }
}

/// `SELECT index`: only database 0 exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    /// The database index asked for.
    pub index: i64,
}

impl Select {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let index = args.i64()?;
        args.finish()?;
        Ok(Select { index })
    }
}
