//! `FLUSHALL` and `FLUSHDB` `[ASYNC|SYNC]`.

use super::args::{is, Args};
use super::CommandError;

/// `FLUSHALL`/`FLUSHDB [ASYNC|SYNC]`: every database, or the connection's. ASYNC empties them
/// at once and frees the keys on a background thread.
#[derive(Debug, Clone, PartialEq)]
pub struct Flush {
    /// Whether ASYNC was asked for.
    pub asynchronous: bool,
    /// FLUSHALL (every database) rather than FLUSHDB.
    pub all: bool,
}

impl Flush {
    pub(crate) fn parse(args: &mut Args, all: bool) -> Result<Self, CommandError> {
        let asynchronous = match args.next_opt() {
            None => false,
            Some(mode) if is(&mode, "ASYNC") => true,
            Some(mode) if is(&mode, "SYNC") => false,
            Some(_) => return Err(CommandError::Syntax),
        };
        if args.remaining() > 0 {
            return Err(CommandError::Syntax);
        }
        Ok(Flush { asynchronous, all })
    }
}
