//! `EXPIRE`, `PEXPIRE`, `EXPIREAT` and `PEXPIREAT` `key time [NX|XX|GT|LT]`.

use bytes::Bytes;

use super::args::{is, Args};
use super::CommandError;
use crate::request::parse_i64;

/// The conditions on the current deadline (Redis 7); XX may combine with GT or LT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpireCondition {
    /// `NX`: only if the key has no deadline.
    pub if_none: bool,
    /// `XX`: only if the key has a deadline.
    pub if_some: bool,
    /// `GT`: only if the new deadline is later (no deadline counts as infinite).
    pub if_later: bool,
    /// `LT`: only if the new deadline is earlier (no deadline counts as infinite).
    pub if_earlier: bool,
}

impl ExpireCondition {
    /// Whether a key whose deadline is `current_ms` (`None`: persistent) may take `new_ms`.
    pub fn allows(&self, current_ms: Option<i64>, new_ms: i64) -> bool {
        match current_ms {
            None => !self.if_some && !self.if_later,
            Some(current) => {
                let refused = self.if_none
                    || (self.if_later && new_ms <= current)
                    || (self.if_earlier && new_ms >= current);
                !refused
            }
        }
    }
}

/// Set a key's deadline; a deadline in the past deletes the key.
#[derive(Debug, Clone, PartialEq)]
pub struct Expire {
    /// The key.
    pub key: Bytes,
    /// The time as sent, already in milliseconds (relative or absolute).
    pub time_ms: i64,
    /// Whether `time_ms` is a Unix time (EXPIREAT/PEXPIREAT) rather than a duration.
    pub absolute: bool,
    /// NX/XX/GT/LT.
    pub condition: ExpireCondition,
    /// The command's name, for error messages.
    pub name: &'static str,
}

impl Expire {
    /// Parses any of the four forms; `seconds` and `absolute` say which.
    pub(crate) fn parse(
        args: &mut Args,
        seconds: bool,
        absolute: bool,
    ) -> Result<Self, CommandError> {
        let name = args.name();
        let key = args.bytes()?;
        // Converted after the options, as Redis does: an option error wins over a bad number.
        let time = args.bytes()?;
        let mut condition = ExpireCondition::default();
        while let Some(option) = args.next_opt() {
            if is(&option, "NX") {
                condition.if_none = true;
            } else if is(&option, "XX") {
                condition.if_some = true;
            } else if is(&option, "GT") {
                condition.if_later = true;
            } else if is(&option, "LT") {
                condition.if_earlier = true;
            } else {
                return Err(CommandError::other(format!(
                    "ERR Unsupported option {}",
                    String::from_utf8_lossy(&option)
                )));
            }
        }
        if condition.if_none && (condition.if_some || condition.if_later || condition.if_earlier) {
            return Err(CommandError::other(
                "ERR NX and XX, GT or LT options at the same time are not compatible",
            ));
        }
        if condition.if_later && condition.if_earlier {
            return Err(CommandError::other(
                "ERR GT and LT options at the same time are not compatible",
            ));
        }
        let time = parse_i64(&time).ok_or(CommandError::NotInteger)?;
        let time_ms = if seconds {
            time.checked_mul(1000)
                .ok_or(CommandError::InvalidExpire(name))?
        } else {
            time
        };
        Ok(Expire {
            key,
            time_ms,
            absolute,
            condition,
            name,
        })
    }
}
