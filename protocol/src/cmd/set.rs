//! `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms-ts|KEEPTTL]` and its older forms
//! `SETEX`, `PSETEX`, `SETNX` and `GETSET`, which are all the same write.

use bytes::Bytes;

use super::args::{is, Args};
use super::expiry::{parse_option, to_ms, Expiry, Unit};
use super::CommandError;

/// Which existing state a SET requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCondition {
    /// `NX`: only if the key does not exist.
    IfMissing,
    /// `XX`: only if the key exists.
    IfExists,
}

/// What a SET does to the key's time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTtl {
    /// No option: the key becomes persistent.
    Clear,
    /// `KEEPTTL`: the key keeps its deadline.
    Keep,
    /// `EX`/`PX`/`EXAT`/`PXAT`.
    Expire(Expiry),
}

/// How the reply is shaped: SET answers OK/nil, SETNX 1/0, GET-style the old value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetReply {
    /// `+OK`, or nil when the condition failed.
    Ok,
    /// `SETNX`: `:1` when set, `:0` otherwise.
    Flag,
    /// `GET` option and `GETSET`: the old value or nil.
    OldValue,
}

/// A string write.
#[derive(Debug, Clone, PartialEq)]
pub struct Set {
    /// The key.
    pub key: Bytes,
    /// The new value.
    pub value: Bytes,
    /// NX/XX.
    pub condition: Option<SetCondition>,
    /// The deadline handling.
    pub ttl: SetTtl,
    /// The reply shape.
    pub reply: SetReply,
    /// The command's name, for error messages (`set`, `setex`, ...).
    pub name: &'static str,
}

impl Set {
    /// `SET key value [options]`.
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let key = args.bytes()?;
        let value = args.bytes()?;
        let mut set = Set {
            key,
            value,
            condition: None,
            ttl: SetTtl::Clear,
            reply: SetReply::Ok,
            name: "set",
        };
        let mut ttl_given = false;
        while let Some(option) = args.next_opt() {
            if is(&option, "NX") || is(&option, "XX") {
                let condition = if is(&option, "NX") {
                    SetCondition::IfMissing
                } else {
                    SetCondition::IfExists
                };
                if set.condition.is_some_and(|c| c != condition) {
                    return Err(CommandError::Syntax);
                }
                set.condition = Some(condition);
            } else if is(&option, "GET") {
                set.reply = SetReply::OldValue;
            } else if is(&option, "KEEPTTL") {
                if ttl_given && set.ttl != SetTtl::Keep {
                    return Err(CommandError::Syntax);
                }
                ttl_given = true;
                set.ttl = SetTtl::Keep;
            } else if let Some(expiry) = parse_option(&option, args) {
                if ttl_given {
                    return Err(CommandError::Syntax);
                }
                ttl_given = true;
                set.ttl = SetTtl::Expire(expiry?);
            } else {
                return Err(CommandError::Syntax);
            }
        }
        Ok(set)
    }

    /// `SETEX key seconds value` and `PSETEX key milliseconds value`.
    pub(crate) fn parse_setex(args: &mut Args, unit_ms: bool) -> Result<Self, CommandError> {
        let key = args.bytes()?;
        let ttl = args.i64()?;
        let value = args.bytes()?;
        args.finish()?;
        let name = args.name();
        let unit = if unit_ms { Unit::Millis } else { Unit::Seconds };
        let ms = to_ms(ttl, unit, name)?;
        Ok(Set {
            key,
            value,
            condition: None,
            ttl: SetTtl::Expire(Expiry::AfterMs(ms)),
            reply: SetReply::Ok,
            name,
        })
    }

    /// `SETNX key value`.
    pub(crate) fn parse_setnx(args: &mut Args) -> Result<Self, CommandError> {
        let key = args.bytes()?;
        let value = args.bytes()?;
        args.finish()?;
        Ok(Set {
            key,
            value,
            condition: Some(SetCondition::IfMissing),
            ttl: SetTtl::Clear,
            reply: SetReply::Flag,
            name: "setnx",
        })
    }

    /// `GETSET key value`.
    pub(crate) fn parse_getset(args: &mut Args) -> Result<Self, CommandError> {
        let key = args.bytes()?;
        let value = args.bytes()?;
        args.finish()?;
        Ok(Set {
            key,
            value,
            condition: None,
            ttl: SetTtl::Clear,
            reply: SetReply::OldValue,
            name: "getset",
        })
    }
}
