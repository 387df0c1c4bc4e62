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

/// Whether `option` is one of the expiry options EX, PX, EXAT, PXAT.
fn is_expiry_keyword(option: &[u8]) -> bool {
    ["EX", "PX", "EXAT", "PXAT"]
        .iter()
        .any(|keyword| is(option, keyword))
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
        let mut keep_ttl = false;
        // The EX/PX/EXAT/PXAT keyword and its value; like Redis, the value is converted only
        // once every option has been read, so a syntax error wins over a bad number.
        let mut expiry_option: Option<(Bytes, Bytes)> = None;
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
                if expiry_option.is_some() {
                    return Err(CommandError::Syntax);
                }
                keep_ttl = true;
            } else if is_expiry_keyword(&option) {
                // Redis takes the same keyword again (the last value wins), not another one.
                let other_given = expiry_option
                    .as_ref()
                    .is_some_and(|(given, _)| !given.eq_ignore_ascii_case(&option));
                if keep_ttl || other_given {
                    return Err(CommandError::Syntax);
                }
                let value = args.next_opt().ok_or(CommandError::Syntax)?;
                expiry_option = Some((option, value));
            } else {
                return Err(CommandError::Syntax);
            }
        }
        if keep_ttl {
            set.ttl = SetTtl::Keep;
        } else if let Some((keyword, value)) = expiry_option {
            let mut value = Args::new(set.name, vec![value]);
            // `keyword` passed `is_expiry_keyword`, so `parse_option` recognises it.
            let expiry = parse_option(&keyword, &mut value).unwrap_or(Err(CommandError::Syntax))?;
            set.ttl = SetTtl::Expire(expiry);
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
