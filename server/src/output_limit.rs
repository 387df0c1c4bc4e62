//! `client-output-buffer-limit`: how much reply data the server holds for one client, per
//! class of client, in Redis's syntax and with Redis's meaning.
//!
//! Each class (`normal`; `replica` and `pubsub`, parsed and reported for the features that will
//! use them) has a hard limit, past which the client is closed at once, and a soft limit, above
//! which it may stay for `soft-seconds` at most. Pending output is what the server holds and
//! the client has not taken: replies already in the kernel's socket buffer do not count.
//! Commands check the hard limit while they build a reply (`Ctx::fits` in `cmd`), so a reply
//! that would cross it is never built; the connection loop checks both while it waits for a
//! client to read.

use std::time::{Duration, Instant};

use sessiond_protocol::units::parse_size;

/// One class's limits. Zero turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassLimit {
    /// Pending output past which the client is closed at once; 0: no hard limit.
    pub hard_bytes: usize,
    /// Pending output the client may stay above for `soft_seconds`; 0: no soft limit.
    pub soft_bytes: usize,
    /// How long the client may stay above `soft_bytes`, in seconds.
    pub soft_seconds: u64,
}

impl ClassLimit {
    /// The hard limit as a bound: `usize::MAX` when there is none.
    #[inline]
    pub fn hard(&self) -> usize {
        if self.hard_bytes == 0 {
            usize::MAX
        } else {
            self.hard_bytes
        }
    }
}

/// The limits of every class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Ordinary clients.
    pub normal: ClassLimit,
    /// Replicas: the stream waiting for one, as Redis counts its replica clients.
    pub replica: ClassLimit,
    /// Clients subscribed to channels (none yet).
    pub pubsub: ClassLimit,
}

const MIB: usize = 1 << 20;

impl Default for OutputLimits {
    /// Redis's defaults, but for the normal class, which Redis leaves unlimited: 64 MiB, four
    /// times the largest value (`proto-max-bulk-len`'s default, 16 MiB), so that no single
    /// client can make the server hold more, and any value can be read back with room to spare.
    fn default() -> Self {
        OutputLimits {
            normal: ClassLimit {
                hard_bytes: 64 * MIB,
                soft_bytes: 0,
                soft_seconds: 0,
            },
            replica: ClassLimit {
                hard_bytes: 256 * MIB,
                soft_bytes: 64 * MIB,
                soft_seconds: 60,
            },
            pubsub: ClassLimit {
                hard_bytes: 32 * MIB,
                soft_bytes: 8 * MIB,
                soft_seconds: 60,
            },
        }
    }
}

/// Largest hard or soft limit accepted: 16 GiB.
const MAX_LIMIT: u64 = 1 << 34;
/// Longest soft period accepted: a year.
const MAX_SOFT_SECONDS: u64 = 365 * 24 * 3600;

impl OutputLimits {
    /// `self` with the classes `text` sets changed: `<class> <hard> <soft> <soft-seconds>`,
    /// repeated (class `normal`, `replica` — or `slave` — or `pubsub`; sizes with redis.conf
    /// units), or a single size, the normal class's hard limit (an older form of the setting).
    /// The error says what is wrong, never quoting more than the offending word.
    pub fn parse(mut self, text: &str) -> Result<OutputLimits, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        if let [size] = words[..] {
            let hard_bytes = limit_size(size)?;
            self.normal = ClassLimit {
                hard_bytes,
                soft_bytes: 0,
                soft_seconds: 0,
            };
            return Ok(self);
        }
        if words.is_empty() || !words.len().is_multiple_of(4) {
            return Err(
                "wrong number of arguments in buffer limit configuration: expected \
                        <class> <hard> <soft> <soft-seconds>, repeated, or one size"
                    .to_owned(),
            );
        }
        for group in words.chunks(4) {
            let [class, hard, soft, seconds] = group else {
                continue;
            };
            let limit = ClassLimit {
                hard_bytes: limit_size(hard)?,
                soft_bytes: limit_size(soft)?,
                soft_seconds: seconds
                    .parse()
                    .ok()
                    .filter(|s| *s <= MAX_SOFT_SECONDS)
                    .ok_or_else(|| {
                        format!(
                            "error in soft-seconds {seconds:?}: expected a whole number of \
                             seconds, at most {MAX_SOFT_SECONDS}"
                        )
                    })?,
            };
            if limit.hard_bytes > 0 && limit.soft_bytes > limit.hard_bytes {
                return Err(format!(
                    "the soft limit of class {class} ({}) is above its hard limit ({}): it \
                     could never be reached",
                    limit.soft_bytes, limit.hard_bytes
                ));
            }
            match class.to_ascii_lowercase().as_str() {
                "normal" => self.normal = limit,
                "replica" | "slave" => self.replica = limit,
                "pubsub" => self.pubsub = limit,
                _ => {
                    return Err(format!(
                        "invalid client class {class:?} in buffer limit configuration: \
                         expected normal, replica or pubsub"
                    ))
                }
            }
        }
        Ok(self)
    }

    /// The setting as Redis's `CONFIG GET client-output-buffer-limit` shows it: every class,
    /// sizes in bytes.
    pub fn config_value(&self) -> String {
        [
            ("normal", &self.normal),
            ("replica", &self.replica),
            ("pubsub", &self.pubsub),
        ]
        .iter()
        .map(|(name, l)| {
            format!(
                "{name} {} {} {}",
                l.hard_bytes, l.soft_bytes, l.soft_seconds
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
    }
}

fn limit_size(word: &str) -> Result<usize, String> {
    parse_size(word)
        .filter(|n| *n <= MAX_LIMIT)
        .map(|n| n as usize)
        .ok_or_else(|| {
            format!(
                "error in the size {word:?}: expected a size such as 0, 512kb or 64mb, at most \
                 16gb"
            )
        })
}

/// A connection's standing against its soft limit: since when its pending output has been
/// above it.
#[derive(Debug, Default)]
pub struct SoftLimit {
    over_since: Option<Instant>,
}

/// What a connection that must wait for its client to read does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Wait, without a deadline from the limits.
    Wait,
    /// Wait until then at most: the soft limit's time runs out.
    WaitUntil(Instant),
    /// Close the client: past the hard limit, or above the soft one for too long.
    Close,
}

impl SoftLimit {
    /// Judges `pending` bytes the client has not taken, at `now`, against `limit`.
    pub fn judge(&mut self, limit: &ClassLimit, pending: usize, now: Instant) -> Verdict {
        if pending > limit.hard() {
            return Verdict::Close;
        }
        if limit.soft_bytes == 0 || pending <= limit.soft_bytes {
            self.over_since = None;
            return Verdict::Wait;
        }
        let since = *self.over_since.get_or_insert(now);
        let deadline = since + Duration::from_secs(limit.soft_seconds);
        if now >= deadline {
            Verdict::Close
        } else {
            Verdict::WaitUntil(deadline)
        }
    }

    /// The client has taken everything: it is under any soft limit again.
    pub fn clear(&mut self) {
        self.over_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_redis_s_but_for_a_finite_normal_class() {
        assert_eq!(
            OutputLimits::default().config_value(),
            "normal 67108864 0 0 replica 268435456 67108864 60 pubsub 33554432 8388608 60"
        );
    }

    #[test]
    fn classes_parse_in_redis_s_syntax() {
        let limits = OutputLimits::default()
            .parse("normal 8mb 2mb 30  SLAVE 1gb 512mb 120\tpubsub 0 0 0")
            .unwrap();
        assert_eq!(
            limits.normal,
            ClassLimit {
                hard_bytes: 8 * MIB,
                soft_bytes: 2 * MIB,
                soft_seconds: 30
            }
        );
        assert_eq!(limits.replica.hard_bytes, 1 << 30);
        assert_eq!(limits.replica.soft_seconds, 120);
        assert_eq!(limits.pubsub, ClassLimit::default());
        assert_eq!(limits.pubsub.hard(), usize::MAX);
        // A class not named keeps its default.
        let limits = OutputLimits::default().parse("pubsub 1m 0 0").unwrap();
        assert_eq!(limits.normal, OutputLimits::default().normal);
        assert_eq!(limits.pubsub.hard_bytes, 1_000_000);
        // Redis's own default line, as CONFIG GET shows it, reads back as itself.
        let line = "normal 0 0 0 replica 268435456 67108864 60 pubsub 33554432 8388608 60";
        assert_eq!(
            OutputLimits::default().parse(line).unwrap().config_value(),
            line
        );
    }

    #[test]
    fn a_single_size_is_the_normal_class_s_hard_limit() {
        let limits = OutputLimits::default().parse("1mb").unwrap();
        assert_eq!(
            limits.normal,
            ClassLimit {
                hard_bytes: MIB,
                soft_bytes: 0,
                soft_seconds: 0
            }
        );
        assert_eq!(limits.replica, OutputLimits::default().replica);
        assert_eq!(
            OutputLimits::default().parse("0").unwrap().normal.hard(),
            usize::MAX
        );
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        let error = |text: &str| OutputLimits::default().parse(text).unwrap_err();
        assert!(error("").contains("wrong number of arguments"));
        assert!(error("normal 1mb 0").contains("wrong number of arguments"));
        assert!(error("normal 1mb 0 0 pubsub").contains("wrong number of arguments"));
        assert!(error("master 1mb 0 0").contains("invalid client class \"master\""));
        assert!(error("normal lots 0 0").contains("\"lots\""));
        assert!(error("normal 1mb 0 -1").contains("soft-seconds \"-1\""));
        assert!(error("normal 1mb 0 1.5").contains("soft-seconds"));
        assert!(error("normal 32gb 0 0").contains("at most 16gb"));
        assert!(error("normal 1mb 2mb 10").contains("above its hard limit"));
        assert!(error("12qb").contains("\"12qb\""));
    }

    #[test]
    fn the_soft_limit_closes_only_after_its_seconds_above_it() {
        let limit = ClassLimit {
            hard_bytes: 1000,
            soft_bytes: 100,
            soft_seconds: 10,
        };
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut soft = SoftLimit::default();
        assert_eq!(soft.judge(&limit, 100, at(0)), Verdict::Wait);
        assert_eq!(soft.judge(&limit, 101, at(1)), Verdict::WaitUntil(at(11)));
        // Still above: the same deadline, and past it the client is closed.
        assert_eq!(soft.judge(&limit, 500, at(5)), Verdict::WaitUntil(at(11)));
        assert_eq!(soft.judge(&limit, 101, at(11)), Verdict::Close);
        // Dropping under the soft limit starts the count again.
        let mut soft = SoftLimit::default();
        soft.judge(&limit, 500, at(0));
        assert_eq!(soft.judge(&limit, 50, at(5)), Verdict::Wait);
        assert_eq!(soft.judge(&limit, 500, at(6)), Verdict::WaitUntil(at(16)));
        soft.clear();
        assert_eq!(soft.judge(&limit, 500, at(20)), Verdict::WaitUntil(at(30)));
        // Past the hard limit, at once.
        assert_eq!(
            SoftLimit::default().judge(&limit, 1001, at(0)),
            Verdict::Close
        );
    }
}
