//! `MOVE key db`.

use bytes::Bytes;

use super::args::Args;
use super::CommandError;

/// `MOVE key db`: moves a key, value and deadline, from the connection's database to `db`.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    /// The key to move.
    pub key: Bytes,
    /// The destination database, as given (the server checks its range).
    pub db: i64,
}

impl Move {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let key = args.bytes()?;
        let db = args.i64()?;
        args.finish()?;
        Ok(Move { key, db })
    }
}
