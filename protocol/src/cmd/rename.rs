//! `RENAME key newkey` and `RENAMENX key newkey`.

use bytes::Bytes;

use super::args::Args;
use super::CommandError;

/// `RENAME`/`RENAMENX`: move a key's value and deadline to another name in one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Rename {
    /// The key to move.
    pub from: Bytes,
    /// Its new name.
    pub to: Bytes,
    /// RENAMENX: move only when `to` does not exist (reply 0 otherwise); RENAME overwrites it.
    pub only_if_new: bool,
}

impl Rename {
    pub(crate) fn parse(args: &mut Args, only_if_new: bool) -> Result<Self, CommandError> {
        let from = args.bytes()?;
        let to = args.bytes()?;
        args.finish()?;
        Ok(Rename {
            from,
            to,
            only_if_new,
        })
    }
}
