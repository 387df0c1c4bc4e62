//! `GETEX key [EX s|PX ms|EXAT ts|PXAT ms-ts|PERSIST]`.

use bytes::Bytes;

use super::args::{is, Args};
use super::expiry::{parse_option, Expiry};
use super::CommandError;

/// What GETEX does to the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetExTtl {
    /// No option: the deadline is left alone.
    Unchanged,
    /// `PERSIST`: the deadline is removed.
    Persist,
    /// A new deadline.
    Expire(Expiry),
}

/// `GETEX`: read a string and change its deadline.
#[derive(Debug, Clone, PartialEq)]
pub struct GetEx {
    /// The key.
    pub key: Bytes,
    /// The deadline change.
    pub ttl: GetExTtl,
}

impl GetEx {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let key = args.bytes()?;
        let mut ttl = GetExTtl::Unchanged;
        while let Some(option) = args.next_opt() {
            if ttl != GetExTtl::Unchanged {
                return Err(CommandError::Syntax);
            }
            if is(&option, "PERSIST") {
                ttl = GetExTtl::Persist;
            } else if let Some(expiry) = parse_option(&option, args) {
                ttl = GetExTtl::Expire(expiry?);
            } else {
                return Err(CommandError::Syntax);
            }
        }
        Ok(GetEx { key, ttl })
    }
}
