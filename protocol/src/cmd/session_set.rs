//! `SESSION.SET id [IFVERSION v] field value [field value ...]`.

use bytes::Bytes;

use super::args::{is, Args};
use super::hash::pairs;
use super::CommandError;

/// Write fields of a session, optionally only if its version is still `if_version`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSet {
    /// The session ID.
    pub id: Bytes,
    /// The version the writer read; a different current version is a CONFLICT.
    pub if_version: Option<u64>,
    /// The fields to write; never empty.
    pub pairs: Vec<(Bytes, Bytes)>,
}

impl SessionSet {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let id = args.bytes()?;
        // `IFVERSION` right after the ID is always the option, so a writer that forgot its pairs
        // gets an error rather than an unchecked write of a field called IFVERSION; such a field
        // can still be written as a later pair.
        let mut rest = args.rest();
        let mut if_version = None;
        if rest.len() >= 2 && is(&rest[0], "IFVERSION") {
            let version = crate::request::parse_i64(&rest[1])
                .filter(|v| *v >= 0)
                .ok_or(CommandError::NotInteger)?;
            if_version = Some(version as u64);
            rest.drain(..2);
        }
        let mut args = Args::new(args.name(), rest);
        let pairs = pairs(&mut args)?;
        Ok(SessionSet {
            id,
            if_version,
            pairs,
        })
    }
}
