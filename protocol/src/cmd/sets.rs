//! The set commands' shapes: `SADD`/`SREM`/`SISMEMBER`/`SMISMEMBER` (a key and members),
//! `SPOP` and `SRANDMEMBER` (a key and an optional count), `SSCAN`, and the set algebra
//! (`SINTER`, `SUNION`, `SDIFF` and their `...STORE` forms). `SMEMBERS` and `SCARD` take a key
//! only ([`super::KeyOnly`]).

use bytes::Bytes;

use super::args::Args;
use super::scan::Scan;
use super::CommandError;
use crate::request::parse_i64;

/// A key and one or more members (`SADD`, `SREM`, `SMISMEMBER`; `SISMEMBER` with exactly one).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyMembers {
    /// The key.
    pub key: Bytes,
    /// The members, in the order sent; never empty.
    pub members: Vec<Bytes>,
}

impl KeyMembers {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let key = args.bytes()?;
        let members = args.rest();
        if members.is_empty() {
            return Err(CommandError::WrongArity(args.name()));
        }
        Ok(KeyMembers { key, members })
    }
}

/// Reads `SPOP`'s and `SRANDMEMBER`'s optional count: more than one argument after the key is a
/// syntax error, as Redis answers before it reads the count.
fn optional_count(args: &mut Args) -> Result<Option<i64>, CommandError> {
    let count = args.next_opt();
    if args.remaining() > 0 {
        return Err(CommandError::Syntax);
    }
    count
        .map(|count| parse_i64(&count).ok_or(CommandError::NotInteger))
        .transpose()
}

/// `SPOP key [count]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SPop {
    /// The key.
    pub key: Bytes,
    /// How many members to pop; `None`: one, answered as a string rather than a set.
    pub count: Option<u64>,
}

impl SPop {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let key = args.bytes()?;
        let count = optional_count(args)?
            .map(|count| {
                u64::try_from(count)
                    .map_err(|_| CommandError::other("ERR value is out of range, must be positive"))
            })
            .transpose()?;
        Ok(SPop { key, count })
    }
}

/// `SRANDMEMBER key [count]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SRandMember {
    /// The key.
    pub key: Bytes,
    /// `None`: one member, as a string. Positive: that many distinct members (at most the
    /// set). Negative: that many picks, a member possibly more than once.
    pub count: Option<i64>,
}

impl SRandMember {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let key = args.bytes()?;
        let count = optional_count(args)?;
        if count == Some(i64::MIN) {
            // Redis takes the count's absolute value, so it accepts -LONG_MAX..=LONG_MAX.
            return Err(CommandError::other(
                "ERR value is out of range, value must between -9223372036854775807 and \
                 9223372036854775807",
            ));
        }
        Ok(SRandMember { key, count })
    }
}

/// `SSCAN key cursor [MATCH pattern] [COUNT count]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SScan {
    /// The key.
    pub key: Bytes,
    /// The cursor and options, as SCAN reads them; `type_name` is always `None` (TYPE is a
    /// syntax error here, as in Redis).
    pub scan: Scan,
}

impl SScan {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let key = args.bytes()?;
        let scan = Scan::parse(args)?;
        if scan.type_name.is_some() {
            return Err(CommandError::Syntax);
        }
        Ok(SScan { key, scan })
    }
}

/// Which set operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    /// Members of every set.
    Inter,
    /// Members of any set.
    Union,
    /// Members of the first set that are in none of the others.
    Diff,
}

/// `SINTER`, `SUNION`, `SDIFF key [key ...]` and `SINTERSTORE`, `SUNIONSTORE`,
/// `SDIFFSTORE destination key [key ...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SetAlgebra {
    /// The operation.
    pub op: SetOp,
    /// Where the `...STORE` forms store the result; `None`: it is the reply.
    pub destination: Option<Bytes>,
    /// The sets, in the order sent; never empty.
    pub keys: Vec<Bytes>,
}

impl SetAlgebra {
    pub(crate) fn parse(args: &mut Args, op: SetOp, store: bool) -> Result<Self, CommandError> {
        let destination = if store { Some(args.bytes()?) } else { None };
        let keys = args.rest();
        if keys.is_empty() {
            return Err(CommandError::WrongArity(args.name()));
        }
        Ok(SetAlgebra {
            op,
            destination,
            keys,
        })
    }
}
