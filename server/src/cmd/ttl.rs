//! `TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME`.

use sessiond_protocol::cmd::{KeyOnly, TtlForm};
use sessiond_protocol::Frame;

use super::Ctx;

/// -2 when the key is missing, -1 when it has no deadline, else the time left or the deadline
/// in the unit asked. TTL rounds to the nearest second, as Redis does.
pub fn ttl(ctx: &mut Ctx<'_>, cmd: KeyOnly, form: TtlForm) -> Frame {
    let now_ms = ctx.now_ms;
    let answer = ctx.store.read(&cmd.key, now_ms, |entry| match entry {
        None => -2,
        Some(entry) => match entry.deadline_ms() {
            None => -1,
            Some(at) => {
                // Saturating: a deadline past i64::MAX (only a loaded record can hold one)
                // answers the largest integer rather than a negative one.
                let int = |ms: u64| i64::try_from(ms).unwrap_or(i64::MAX);
                let left = int(at.saturating_sub(now_ms));
                match form {
                    TtlForm::Seconds => left.saturating_add(500) / 1000,
                    TtlForm::Millis => left,
                    TtlForm::AtSeconds => int(at) / 1000,
                    TtlForm::AtMillis => int(at),
                }
            }
        },
    });
    Frame::Integer(answer)
}
