//! `GET key`, `GETDEL key` and `STRLEN key`: single-key string reads.

use bytes::Bytes;

use super::args::Args;
use super::CommandError;

/// A command whose only argument is one key (GET, GETDEL, STRLEN, TYPE, TTL, PERSIST, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyOnly {
    /// The key.
    pub key: Bytes,
}

impl KeyOnly {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let key = args.bytes()?;
        args.finish()?;
        Ok(KeyOnly { key })
    }
}
