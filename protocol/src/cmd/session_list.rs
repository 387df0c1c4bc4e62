//! `SESSION.LIST user` and `SESSION.COUNT user`: a user's sessions.

use bytes::Bytes;

use super::args::Args;
use super::CommandError;

/// A command whose only argument is a user name, not a key (SESSION.LIST, SESSION.COUNT): the
/// table gives it no key positions, so key permissions do not apply to it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserOnly {
    /// The user whose sessions are meant.
    pub user: Bytes,
}

impl UserOnly {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let user = args.bytes()?;
        args.finish()?;
        Ok(UserOnly { user })
    }
}
