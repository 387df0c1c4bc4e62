//! `GETEX key [EX s|PX ms|EXAT ts|PXAT ms-ts|PERSIST]`.

use bytes::Bytes;

use super::args::{is, Args};
use super::expiry::{parse_option, Expiry};
use super::CommandError;

/// What GETEX does to the deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetExTtl {
    /// No option: the deadline is left alone.
    Unchanged,
    /// `PERSIST`: the deadline is removed.
    Persist,
    /// A new deadline.
    Expire(Expiry),
    /// An EX/PX/EXAT/PXAT value Redis refuses (not an integer, not positive). Redis looks the
    /// key up first, so this error is the reply only when the key holds a string; a missing key
    /// is still answered with nil.
    Invalid(CommandError),
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
        let mut persist = false;
        // The EX/PX/EXAT/PXAT keyword and its value; like Redis, the value is converted only
        // once every option has been read, so a syntax error wins over a bad number.
        let mut expiry_option: Option<(Bytes, Bytes)> = None;
        while let Some(option) = args.next_opt() {
            if is(&option, "PERSIST") {
                if expiry_option.is_some() {
                    return Err(CommandError::Syntax);
                }
                persist = true;
            } else if ["EX", "PX", "EXAT", "PXAT"]
                .iter()
                .any(|keyword| is(&option, keyword))
            {
                // Redis takes the same keyword again (the last value wins), not another one.
                let other_given = expiry_option
                    .as_ref()
                    .is_some_and(|(given, _)| !given.eq_ignore_ascii_case(&option));
                if persist || other_given {
                    return Err(CommandError::Syntax);
                }
                let value = args.next_opt().ok_or(CommandError::Syntax)?;
                expiry_option = Some((option, value));
            } else {
                return Err(CommandError::Syntax);
            }
        }
        let ttl = match expiry_option {
            None if persist => GetExTtl::Persist,
            None => GetExTtl::Unchanged,
            Some((keyword, value)) => {
                let mut value = Args::new(args.name(), vec![value]);
                // `keyword` is one of the four expiry keywords, so `parse_option` knows it.
                match parse_option(&keyword, &mut value).unwrap_or(Err(CommandError::Syntax)) {
                    Ok(expiry) => GetExTtl::Expire(expiry),
                    Err(error) => GetExTtl::Invalid(error),
                }
            }
        };
        Ok(GetEx { key, ttl })
    }
}
