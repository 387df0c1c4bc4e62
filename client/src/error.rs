//! [`Error`], the one error type of the crate, and [`ErrorKind`], what a caller matches on.
//!
//! An error is an opaque struct with a kind, a message that names the values that explain it
//! (the node's address, the server's reply), and for a version conflict the session's current
//! version. Messages are lowercase without a trailing period, as the server's own are.

use std::fmt;
use std::sync::Arc;

/// What went wrong, for callers that react differently to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A URL or builder setting the client cannot use; nothing was sent.
    InvalidConfig,
    /// The server could not be reached, or the connection to it was lost. A command that was
    /// in flight when the connection broke may or may not have run.
    Connection,
    /// The server did not answer within the connect or command timeout.
    Timeout,
    /// The server sent something that is not RESP, or a reply of an unexpected shape.
    Protocol,
    /// The server refused the credentials (`WRONGPASS`, `NOAUTH`, `NOPERM`).
    Auth,
    /// The server answered with an error reply (`WRONGTYPE`, `ERR ...`, `OOM ...`).
    Server,
    /// A versioned write (`set_if_version`) found the session at another version; see
    /// [`Error::current_version`]. Nothing was written.
    Conflict,
    /// A value could not be encoded to or decoded from JSON.
    Serialization,
}

/// An error from the client: see [`Error::kind`] and the message.
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    current_version: Option<u64>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// `Result<T, sessiond_client::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            current_version: None,
            source: None,
        }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        self.source = Some(Arc::new(source));
        self
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidConfig, message)
    }

    pub(crate) fn connection(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Connection, message)
    }

    pub(crate) fn timeout(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Timeout, message)
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Protocol, message)
    }

    /// A reply whose shape the command does not allow.
    pub(crate) fn unexpected(command: &str, reply: &sessiond_protocol::Frame) -> Error {
        Error::protocol(format!("unexpected reply to {command}: {reply:?}"))
    }

    pub(crate) fn json(error: serde_json::Error) -> Error {
        Error::new(ErrorKind::Serialization, format!("json: {error}")).with_source(error)
    }

    /// The error for an error reply, classified by its prefix.
    pub(crate) fn from_reply(text: &[u8]) -> Error {
        let text = String::from_utf8_lossy(text).into_owned();
        let prefix = text.split(' ').next().unwrap_or("");
        match prefix {
            "CONFLICT" => {
                // "CONFLICT session is at version 7, not 5"
                let current_version = text
                    .strip_prefix("CONFLICT session is at version ")
                    .and_then(|rest| rest.split(',').next())
                    .and_then(|n| n.parse().ok());
                Error {
                    current_version,
                    ..Error::new(ErrorKind::Conflict, text)
                }
            }
            "WRONGPASS" | "NOAUTH" | "NOPERM" => Error::new(ErrorKind::Auth, text),
            _ => Error::new(ErrorKind::Server, text),
        }
    }

    /// Prefixes the message with where the error happened (`node 127.0.0.1:6380: ...`).
    pub(crate) fn context(mut self, context: impl fmt::Display) -> Error {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// For [`ErrorKind::Conflict`], the session's version when the write was refused: re-read
    /// the session, merge, and write again with this version.
    pub fn current_version(&self) -> Option<u64> {
        self.current_version
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the error is the server's answer to a well-formed request (a reply, a conflict
    /// or a refusal), after which the connection is as good as before.
    pub fn is_reply(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Server | ErrorKind::Conflict | ErrorKind::Auth
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Error");
        debug
            .field("kind", &self.kind)
            .field("message", &self.message);
        if let Some(version) = self.current_version {
            debug.field("current_version", &version);
        }
        debug.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_classified_by_prefix() {
        let conflict = Error::from_reply(b"CONFLICT session is at version 7, not 5");
        assert_eq!(conflict.kind(), ErrorKind::Conflict);
        assert_eq!(conflict.current_version(), Some(7));
        assert_eq!(
            Error::from_reply(b"WRONGPASS invalid username-password pair").kind(),
            ErrorKind::Auth
        );
        let wrongtype = Error::from_reply(b"WRONGTYPE Operation against a key");
        assert_eq!(wrongtype.kind(), ErrorKind::Server);
        assert_eq!(wrongtype.current_version(), None);
        assert_eq!(wrongtype.to_string(), "WRONGTYPE Operation against a key");
    }
}
