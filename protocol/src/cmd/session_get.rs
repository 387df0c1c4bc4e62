//! `SESSION.GET id [field ...]`.

use bytes::Bytes;

use super::args::Args;
use super::CommandError;

/// Read a session's fields (all, or the ones named), refreshing its idle timer.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionGet {
    /// The session ID.
    pub id: Bytes,
    /// The fields asked for; empty means all.
    pub fields: Vec<Bytes>,
}

impl SessionGet {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let id = args.bytes()?;
        let fields = args.rest();
        Ok(SessionGet { id, fields })
    }
}
