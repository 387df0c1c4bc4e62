//! Errors raised while decoding a peer's input.
//!
//! A [`ProtocolError`] means the byte stream itself is malformed or breaks a limit: the server
//! answers `-ERR Protocol error: ...` and closes the connection, as Redis does, because it can no
//! longer tell where the next command starts. Mistakes inside a well-formed command are
//! [`crate::CommandError`]s instead and leave the connection open.

use std::fmt;

/// What was wrong with the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolErrorKind {
    /// A `*` count that is not a number or is above the argument limit.
    InvalidMultibulkLength,
    /// A `*` header line with no CRLF within the inline limit.
    MultibulkCountTooBig,
    /// A `$` length that is not a number, negative, or above `proto-max-bulk-len`.
    InvalidBulkLength,
    /// A `$` header line with no CRLF within the inline limit.
    BulkCountTooBig,
    /// An element of a command array that is not a bulk string.
    ExpectedBulk(u8),
    /// A bulk string not followed by CRLF.
    MissingCrlf,
    /// An inline command longer than the inline limit.
    InlineTooBig,
    /// An inline command with an unterminated quote.
    UnbalancedQuotes,
    /// More input buffered than the query buffer limit allows.
    QueryBufferLimit,
    /// A frame type byte the decoder does not know.
    UnknownType(u8),
    /// A malformed line in a reply frame (bad integer, double, boolean...).
    InvalidLine,
    /// Aggregates nested deeper than the limit.
    TooDeep,
}

/// A malformed or over-limit input stream; the connection cannot continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    kind: ProtocolErrorKind,
}

impl ProtocolError {
    pub(crate) fn new(kind: ProtocolErrorKind) -> ProtocolError {
        ProtocolError { kind }
    }

    /// What was wrong.
    pub fn kind(&self) -> ProtocolErrorKind {
        self.kind
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Redis's wording, so that clients and operators see the same messages.
        f.write_str("Protocol error: ")?;
        match self.kind {
            ProtocolErrorKind::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            ProtocolErrorKind::MultibulkCountTooBig => f.write_str("too big mbulk count string"),
            ProtocolErrorKind::InvalidBulkLength => f.write_str("invalid bulk length"),
            ProtocolErrorKind::BulkCountTooBig => f.write_str("too big bulk count string"),
            ProtocolErrorKind::ExpectedBulk(got) => {
                write!(
                    f,
                    "expected '$', got '{}'",
                    char::from(got).escape_default()
                )
            }
            ProtocolErrorKind::MissingCrlf => f.write_str("expected CRLF after bulk string"),
            ProtocolErrorKind::InlineTooBig => f.write_str("too big inline request"),
            ProtocolErrorKind::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            ProtocolErrorKind::QueryBufferLimit => f.write_str("query buffer limit exceeded"),
            ProtocolErrorKind::UnknownType(got) => {
                write!(
                    f,
                    "unknown frame type '{}'",
                    char::from(got).escape_default()
                )
            }
            ProtocolErrorKind::InvalidLine => f.write_str("invalid frame line"),
            ProtocolErrorKind::TooDeep => f.write_str("frames nested too deep"),
        }
    }
}

impl std::error::Error for ProtocolError {}
