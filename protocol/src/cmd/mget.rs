//! `MGET key [key ...]` and the multi-key commands shaped like it (DEL, UNLINK, EXISTS).

use bytes::Bytes;

use super::args::Args;
use super::CommandError;

/// A command taking one or more keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Keys {
    /// The keys, in the order sent; never empty.
    pub keys: Vec<Bytes>,
}

impl Keys {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let keys = args.rest();
        if keys.is_empty() {
            return Err(CommandError::WrongArity(args.name()));
        }
        Ok(Keys { keys })
    }
}
