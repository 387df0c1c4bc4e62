//! `MSET key value [key value ...]`.

use bytes::Bytes;

use super::args::Args;
use super::CommandError;

/// `MSET`: write several strings at once, clearing their deadlines.
#[derive(Debug, Clone, PartialEq)]
pub struct MSet {
    /// The key/value pairs; never empty.
    pub pairs: Vec<(Bytes, Bytes)>,
}

impl MSet {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        if args.remaining() == 0 || !args.remaining().is_multiple_of(2) {
            return Err(CommandError::WrongArity(args.name()));
        }
        let mut pairs = Vec::with_capacity(args.remaining() / 2);
        while let (Some(key), Some(value)) = (args.next_opt(), args.next_opt()) {
            pairs.push((key, value));
        }
        Ok(MSet { pairs })
    }
}
