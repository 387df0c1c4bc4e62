//! `SESSION.UNSET id field [field ...]`.

use super::args::Args;
use super::hash::KeyFields;
use super::CommandError;

/// Remove fields of a session; the ID is in `key`.
pub type SessionUnset = KeyFields;

pub(crate) fn parse(args: &mut Args) -> Result<SessionUnset, CommandError> {
    KeyFields::parse(args)
}
