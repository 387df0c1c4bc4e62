//! `SESSION.REGENERATE id [USER user]`.

use bytes::Bytes;

use super::args::{is, Args};
use super::CommandError;

/// Move a session to a new server-issued ID in one step, optionally changing its user.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRegenerate {
    /// The current session ID.
    pub id: Bytes,
    /// The new user (e.g. at login); the session's own when absent.
    pub user: Option<Bytes>,
}

impl SessionRegenerate {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let id = args.bytes()?;
        let user = match args.next_opt() {
            None => None,
            Some(option) if is(&option, "USER") => {
                Some(args.next_opt().ok_or(CommandError::Syntax)?)
            }
            Some(_) => return Err(CommandError::Syntax),
        };
        if args.remaining() > 0 {
            return Err(CommandError::Syntax);
        }
        Ok(SessionRegenerate { id, user })
    }
}
