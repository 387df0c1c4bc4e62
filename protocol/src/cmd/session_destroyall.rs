//! `SESSION.DESTROYALL user [EXCEPT id]`.

use bytes::Bytes;

use super::args::{is, Args};
use super::CommandError;

/// Destroy every session of a user, optionally keeping one ("log out everywhere else").
#[derive(Debug, Clone, PartialEq)]
pub struct SessionDestroyAll {
    /// The user.
    pub user: Bytes,
    /// A session ID to keep.
    pub except: Option<Bytes>,
}

impl SessionDestroyAll {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let user = args.bytes()?;
        let except = match args.next_opt() {
            None => None,
            Some(option) if is(&option, "EXCEPT") => {
                Some(args.next_opt().ok_or(CommandError::Syntax)?)
            }
            Some(_) => return Err(CommandError::Syntax),
        };
        if args.remaining() > 0 {
            return Err(CommandError::Syntax);
        }
        Ok(SessionDestroyAll { user, except })
    }
}
