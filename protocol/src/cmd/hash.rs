//! The hash commands' shapes: `HSET`/`HSETNX` (key and field/value pairs), `HGET`/`HMGET`/
//! `HEXISTS`/`HDEL` (key and fields), `HINCRBY`. `HGETALL`, `HKEYS`, `HVALS` and `HLEN` take a
//! key only ([`super::KeyOnly`]).

use bytes::Bytes;

use super::args::Args;
use super::CommandError;

/// A key and field/value pairs (`HSET`, `HSETNX`).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPairs {
    /// The key.
    pub key: Bytes,
    /// The pairs, in the order sent; never empty.
    pub pairs: Vec<(Bytes, Bytes)>,
}

impl KeyPairs {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let key = args.bytes()?;
        let pairs = pairs(args)?;
        Ok(KeyPairs { key, pairs })
    }
}

/// Reads the remaining arguments as field/value pairs: at least one, and an even count.
pub(crate) fn pairs(args: &mut Args) -> Result<Vec<(Bytes, Bytes)>, CommandError> {
    if args.remaining() == 0 || !args.remaining().is_multiple_of(2) {
        return Err(CommandError::WrongArity(args.name()));
    }
    let mut pairs = Vec::with_capacity(args.remaining() / 2);
    while let (Some(field), Some(value)) = (args.next_opt(), args.next_opt()) {
        pairs.push((field, value));
    }
    Ok(pairs)
}

/// A key and one or more fields (`HMGET`, `HDEL`; `HGET` and `HEXISTS` with exactly one).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyFields {
    /// The key.
    pub key: Bytes,
    /// The fields; never empty.
    pub fields: Vec<Bytes>,
}

impl KeyFields {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let key = args.bytes()?;
        let fields = args.rest();
        if fields.is_empty() {
            return Err(CommandError::WrongArity(args.name()));
        }
        Ok(KeyFields { key, fields })
    }
}

/// `HINCRBY key field increment`.
#[derive(Debug, Clone, PartialEq)]
pub struct HIncrBy {
    /// The key.
    pub key: Bytes,
    /// The field.
    pub field: Bytes,
    /// The amount to add.
    pub delta: i64,
}

impl HIncrBy {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let key = args.bytes()?;
        let field = args.bytes()?;
        let delta = args.i64()?;
        args.finish()?;
        Ok(HIncrBy { key, field, delta })
    }
}
