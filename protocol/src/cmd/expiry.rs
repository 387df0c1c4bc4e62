//! The expiry options shared by SET, GETEX and the SETEX family.

use super::args::{is, Args};
use super::CommandError;

/// When a key written by a command expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// After this many milliseconds (`EX`, `PX`, SETEX, PSETEX); always positive.
    AfterMs(i64),
    /// At this Unix time in milliseconds (`EXAT`, `PXAT`); always positive.
    AtMs(i64),
}

impl Expiry {
    /// The absolute deadline in Unix ms for a command executed at `now_ms`; `None` when it
    /// overflows, which the server reports as `ERR invalid expire time`.
    pub fn deadline_ms(self, now_ms: i64) -> Option<i64> {
        match self {
            Expiry::AfterMs(ms) => now_ms.checked_add(ms),
            Expiry::AtMs(at) => Some(at),
        }
    }
}

/// The unit of an expiry argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Seconds,
    Millis,
}

/// Converts an expiry argument to milliseconds the way Redis validates it: non-positive values
/// and values whose millisecond form overflows are invalid for the command `name`.
pub(crate) fn to_ms(value: i64, unit: Unit, name: &'static str) -> Result<i64, CommandError> {
    if value <= 0 {
        return Err(CommandError::InvalidExpire(name));
    }
    match unit {
        Unit::Seconds => value
            .checked_mul(1000)
            .ok_or(CommandError::InvalidExpire(name)),
        Unit::Millis => Ok(value),
    }
}

/// Parses the argument after `EX`/`PX`/`EXAT`/`PXAT` (`keyword`, upper case) into an expiry, or
/// returns `None` when `keyword` is not one of them.
pub(crate) fn parse_option(
    keyword: &[u8],
    args: &mut Args,
) -> Option<Result<Expiry, CommandError>> {
    let (unit, absolute) = if is(keyword, "EX") {
        (Unit::Seconds, false)
    } else if is(keyword, "PX") {
        (Unit::Millis, false)
    } else if is(keyword, "EXAT") {
        (Unit::Seconds, true)
    } else if is(keyword, "PXAT") {
        (Unit::Millis, true)
    } else {
        return None;
    };
    let name = args.name();
    Some(args.option_i64().and_then(|value| {
        let ms = to_ms(value, unit, name)?;
        Ok(if absolute {
            Expiry::AtMs(ms)
        } else {
            Expiry::AfterMs(ms)
        })
    }))
}
