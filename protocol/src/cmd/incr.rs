//! `INCR`, `INCRBY`, `DECR` and `DECRBY`.

use bytes::Bytes;

use super::args::Args;
use super::CommandError;

/// Add `delta` to the integer stored at `key` (0 when missing); the deadline is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct IncrBy {
    /// The key.
    pub key: Bytes,
    /// The amount to add.
    pub delta: i64,
}

impl IncrBy {
    /// `INCR key` (`delta` 1) and `DECR key` (`delta` -1).
    pub(crate) fn parse_step(args: &mut Args, delta: i64) -> Result<Self, CommandError> {
        let key = args.bytes()?;
        args.finish()?;
        Ok(IncrBy { key, delta })
    }

    /// `INCRBY key n` and `DECRBY key n`.
    pub(crate) fn parse_by(args: &mut Args, negate: bool) -> Result<Self, CommandError> {
        let key = args.bytes()?;
        let amount = args.i64()?;
        args.finish()?;
        let delta = if negate {
            amount
                .checked_neg()
                .ok_or_else(|| CommandError::other("ERR decrement would overflow"))?
        } else {
            amount
        };
        Ok(IncrBy { key, delta })
    }
}
