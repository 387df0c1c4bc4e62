//! `APPEND key value`.

use bytes::Bytes;

use super::args::Args;
use super::CommandError;

/// `APPEND`: extend a string (creating it if missing); the deadline is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Append {
    /// The key.
    pub key: Bytes,
    /// The bytes to add at the end.
    pub value: Bytes,
}

impl Append {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let key = args.bytes()?;
        let value = args.bytes()?;
        args.finish()?;
        Ok(Append { key, value })
    }
}
