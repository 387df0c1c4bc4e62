//! `CONFIG GET pattern [pattern ...]`: the settings under redis.conf names; `CONFIG SET
//! parameter value [...]`: those of [`SETTABLE`] changed at run time, all pairs or none;
//! `CONFIG REWRITE` (`config_rewrite.rs`).

use bytes::Bytes;
use sessiond_protocol::cmd::Config;
use sessiond_protocol::units::format_duration;
use sessiond_protocol::Frame;

use std::time::Duration;

use super::Ctx;
use crate::auth::Secret;
use crate::glob;
use crate::notify::{self, EventFlags};
use crate::output_limit::OutputLimits;
use crate::setting::{Millis, Period, PositivePeriod, Size, Value};
use crate::shared::Shared;
use crate::store::evict::Policy;

/// A setting CONFIG SET may change: its name, the check of a new value (the reason it is
/// refused, in Redis's words) and the change, which cannot fail once every value passed.
struct Settable {
    name: &'static str,
    check: fn(&Shared, &[u8]) -> Result<(), String>,
    apply: fn(&Shared, &[u8]),
}

/// The settings CONFIG SET changes; every other one CONFIG GET shows is immutable. Each takes
/// effect at its next use: `maxmemory` at the next write, `timeout` at once (clients waiting
/// for a request wait again under it), `maxclients` at the next accept, the session defaults at the next new
/// session, `snapshot-interval` from the change on; clients and sessions that exist keep what
/// they have.
const SETTABLE: &[Settable] = &[
    Settable {
        name: "notify-keyspace-events",
        check: |_, value| {
            EventFlags::parse(value)
                .map(drop)
                .ok_or_else(|| notify::INVALID_CLASS.to_owned())
        },
        apply: |shared, value| {
            if let Some(flags) = EventFlags::parse(value) {
                shared.dbs.notifier().flags().set(flags);
            }
        },
    },
    Settable {
        name: "maxmemory",
        check: |_, value| memory(value).map(drop),
        apply: |shared, value| {
            if let Ok(bytes) = memory(value) {
                shared.live.set_maxmemory(bytes);
            }
        },
    },
    Settable {
        name: "maxmemory-policy",
        check: |_, value| policy(value).map(drop),
        apply: |shared, value| {
            if let Ok(policy) = policy(value) {
                shared.live.set_maxmemory_policy(policy);
            }
        },
    },
    Settable {
        name: "timeout",
        check: |_, value| integer(value, 0, i64::MAX as u64).map(drop),
        apply: |shared, value| {
            if let Ok(seconds) = integer(value, 0, i64::MAX as u64) {
                let timeout = Some(Duration::from_secs(seconds)).filter(|t| !t.is_zero());
                shared.live.set_idle_timeout(timeout);
                // Clients already waiting wait again under it, from now.
                shared.clients.retime_all();
            }
        },
    },
    Settable {
        name: "maxclients",
        check: |_, value| integer(value, 1, MAX_CLIENTS).map(drop),
        apply: |shared, value| {
            if let Ok(clients) = integer(value, 1, MAX_CLIENTS) {
                shared.live.set_maxclients(clients as usize);
            }
        },
    },
    Settable {
        name: "max-auth-failures",
        check: |_, value| integer(value, 0, u64::from(u32::MAX)).map(drop),
        apply: |shared, value| {
            if let Ok(failures) = integer(value, 0, u64::from(u32::MAX)) {
                shared.live.set_max_auth_failures(failures as u32);
            }
        },
    },
    Settable {
        name: "busy-reply-threshold",
        check: |_, value| duration::<Millis>(value).map(drop),
        apply: |shared, value| {
            if let Ok(Millis(threshold)) = duration(value) {
                shared.live.set_busy_reply_threshold(threshold);
            }
        },
    },
    Settable {
        name: "lua-time-limit",
        check: |_, value| duration::<Millis>(value).map(drop),
        apply: |shared, value| {
            if let Ok(Millis(threshold)) = duration(value) {
                shared.live.set_busy_reply_threshold(threshold);
            }
        },
    },
    Settable {
        name: "session-idle",
        check: |_, value| duration::<PositivePeriod>(value).map(drop),
        apply: |shared, value| {
            if let Ok(PositivePeriod(idle)) = duration(value) {
                shared.live.set_session_idle(idle);
            }
        },
    },
    Settable {
        name: "session-absolute",
        check: |_, value| duration::<PositivePeriod>(value).map(drop),
        apply: |shared, value| {
            if let Ok(PositivePeriod(absolute)) = duration(value) {
                shared.live.set_session_absolute(absolute);
            }
        },
    },
    Settable {
        name: "session-max-per-user",
        check: |_, value| integer(value, 0, MAX_SESSIONS_PER_USER).map(drop),
        apply: |shared, value| {
            if let Ok(cap) = integer(value, 0, MAX_SESSIONS_PER_USER) {
                shared.live.set_session_max_per_user(cap as usize);
            }
        },
    },
    Settable {
        name: "session-max-bytes",
        check: |_, value| memory(value).map(drop),
        apply: |shared, value| {
            if let Ok(bytes) = memory(value) {
                shared.live.set_session_max_bytes(bytes);
            }
        },
    },
    Settable {
        name: "client-output-buffer-limit",
        check: |shared, value| output_limits(shared, value).map(drop),
        apply: |shared, value| {
            if let Ok(limits) = output_limits(shared, value) {
                shared.live.set_output_limits(limits);
                shared.pubsub.set_limits(limits.pubsub);
            }
        },
    },
    Settable {
        name: "snapshot-interval",
        check: |_, value| duration::<Period>(value).map(drop),
        apply: |shared, value| {
            if let Ok(period) = duration::<Period>(value) {
                shared.persistence.set_interval(period.never_if_zero());
            }
        },
    },
    // Applied first, by `set`: turning the log on can fail (its files), and then nothing
    // changes.
    Settable {
        name: APPENDONLY,
        check: |shared, value| {
            let on = yes_no(value)?;
            if on && shared.persistence.config().is_none() {
                return Err("persistence is disabled (--no-persistence)".to_owned());
            }
            Ok(())
        },
        apply: |_, _| {},
    },
    // The log's settings change while it is off too: the next start takes them.
    Settable {
        name: "appendfsync",
        check: |shared, value| persistence_on(shared).and(fsync(value).map(drop)),
        apply: |shared, value| {
            if let Ok(fsync) = fsync(value) {
                shared.persistence.set_aof_fsync(fsync);
            }
        },
    },
    Settable {
        name: "auto-aof-rewrite-percentage",
        check: |shared, value| persistence_on(shared).and(count(value).map(drop)),
        apply: |shared, value| {
            if let Ok(percent) = count(value) {
                shared.persistence.set_aof_rewrite_percentage(percent);
            }
        },
    },
    Settable {
        name: "auto-aof-rewrite-min-size",
        check: |shared, value| persistence_on(shared).and(memory(value).map(drop)),
        apply: |shared, value| {
            if let Ok(bytes) = memory(value) {
                shared.persistence.set_aof_rewrite_min_size(bytes);
            }
        },
    },
    Settable {
        name: "save",
        check: |_, value| save_rules(value).map(drop),
        apply: |shared, value| {
            if let Ok(interval) = save_rules(value) {
                shared.persistence.set_interval(interval);
            }
        },
    },
    Settable {
        name: "requirepass",
        check: |_, value| password(value).map(drop),
        apply: |shared, value| {
            if let Ok(password) = password(value) {
                shared.auth.set_requirepass(password.as_ref());
            }
        },
    },
    Settable {
        name: "slowlog-log-slower-than",
        check: |_, value| signed(value, -1).map(drop),
        apply: |shared, value| {
            if let Ok(us) = signed(value, -1) {
                shared.slowlog.set_slower_than_us(us);
            }
        },
    },
    Settable {
        name: "slowlog-max-len",
        check: |_, value| integer(value, 0, crate::slowlog::MAX_LEN).map(drop),
        apply: |shared, value| {
            if let Ok(len) = integer(value, 0, crate::slowlog::MAX_LEN) {
                shared.slowlog.set_max_len(len);
            }
        },
    },
    Settable {
        name: "latency-monitor-threshold",
        check: |_, value| integer(value, 0, i64::MAX as u64).map(drop),
        apply: |shared, value| {
            if let Ok(ms) = integer(value, 0, i64::MAX as u64) {
                shared.latency.set_threshold_ms(ms);
            }
        },
    },
    Settable {
        name: "replica-read-only",
        check: |_, value| yes_no(value).map(drop),
        apply: |shared, value| {
            if let Ok(yes) = yes_no(value) {
                shared.repl.set_read_only(yes);
            }
        },
    },
    Settable {
        name: "slave-read-only",
        check: |_, value| yes_no(value).map(drop),
        apply: |shared, value| {
            if let Ok(yes) = yes_no(value) {
                shared.repl.set_read_only(yes);
            }
        },
    },
    Settable {
        name: "replica-priority",
        check: |_, value| integer(value, 0, i32::MAX as u64).map(drop),
        apply: |shared, value| {
            if let Ok(priority) = integer(value, 0, i32::MAX as u64) {
                shared.repl.set_priority(priority as i64);
            }
        },
    },
    Settable {
        name: "slave-priority",
        check: |_, value| integer(value, 0, i32::MAX as u64).map(drop),
        apply: |shared, value| {
            if let Ok(priority) = integer(value, 0, i32::MAX as u64) {
                shared.repl.set_priority(priority as i64);
            }
        },
    },
    Settable {
        name: "repl-timeout",
        check: |shared, value| {
            let seconds = integer(value, 1, i32::MAX as u64)?;
            // See `role::Settings`: the primary's pings must come more often.
            if Duration::from_secs(seconds) <= shared.repl.ping_period() {
                return Err(format!(
                    "argument must be longer than repl-ping-replica-period ({}s)",
                    shared.repl.ping_period().as_secs_f64()
                ));
            }
            Ok(())
        },
        apply: |shared, value| {
            if let Ok(seconds) = integer(value, 1, i32::MAX as u64) {
                shared.repl.set_timeout(Duration::from_secs(seconds));
            }
        },
    },
    Settable {
        name: "replica-announce-ip",
        check: |_, value| announce_ip(value).map(drop),
        apply: |shared, value| {
            if let Ok(ip) = announce_ip(value) {
                shared.repl.set_announce_ip(Some(ip));
            }
        },
    },
    Settable {
        name: "slave-announce-ip",
        check: |_, value| announce_ip(value).map(drop),
        apply: |shared, value| {
            if let Ok(ip) = announce_ip(value) {
                shared.repl.set_announce_ip(Some(ip));
            }
        },
    },
    Settable {
        name: "replica-announce-port",
        check: |_, value| integer(value, 0, 65535).map(drop),
        apply: |shared, value| {
            if let Ok(port) = integer(value, 0, 65535) {
                shared.repl.set_announce_port(port as u16);
            }
        },
    },
    Settable {
        name: "slave-announce-port",
        check: |_, value| integer(value, 0, 65535).map(drop),
        apply: |shared, value| {
            if let Ok(port) = integer(value, 0, 65535) {
                shared.repl.set_announce_port(port as u16);
            }
        },
    },
    Settable {
        name: "repl-ping-replica-period",
        check: |shared, value| ping_period(shared, value).map(drop),
        apply: |shared, value| {
            if let Ok(period) = ping_period(shared, value) {
                shared.repl.set_ping_period(period);
            }
        },
    },
    Settable {
        name: "repl-ping-slave-period",
        check: |shared, value| ping_period(shared, value).map(drop),
        apply: |shared, value| {
            if let Ok(period) = ping_period(shared, value) {
                shared.repl.set_ping_period(period);
            }
        },
    },
    Settable {
        name: "repl-backlog-size",
        check: |_, value| backlog(value).map(drop),
        apply: |shared, value| {
            if let Ok(bytes) = backlog(value) {
                shared.dbs.feed().set_backlog_size(bytes);
            }
        },
    },
    Settable {
        name: "masterauth",
        check: |_, value| password(value).map(drop),
        apply: |shared, value| {
            if let Ok(password) = password(value) {
                shared.repl.set_masterauth(password);
            }
        },
    },
    Settable {
        name: "masteruser",
        check: |_, value| {
            std::str::from_utf8(value)
                .map(drop)
                .map_err(|_| "argument must be UTF-8".to_owned())
        },
        apply: |shared, value| {
            if let Ok(user) = std::str::from_utf8(value) {
                shared.repl.set_masteruser(Some(user.to_owned()));
            }
        },
    },
];

/// The names of the settings CONFIG SET changes (aliases included).
#[cfg(test)]
pub(super) fn settable_names() -> impl Iterator<Item = &'static str> {
    SETTABLE.iter().map(|settable| settable.name)
}

/// A new `repl-backlog-size`: a size (`1mb`), raised to Redis's least, 16kb, as Redis does.
fn backlog(value: &[u8]) -> Result<u64, String> {
    Ok(memory(value)?.max(crate::role::MIN_BACKLOG_BYTES))
}

/// A new `replica-announce-ip` (empty: none).
fn announce_ip(value: &[u8]) -> Result<String, String> {
    let ip = std::str::from_utf8(value).map_err(|_| "argument must be UTF-8".to_owned())?;
    crate::role::announce_ip(ip).map_err(|reason| format!("argument {reason}"))
}

/// A new `repl-ping-replica-period`, in seconds: shorter than `repl-timeout` (see
/// `role::Settings`: a replica must hear from its primary within its timeout).
fn ping_period(shared: &crate::shared::Shared, value: &[u8]) -> Result<Duration, String> {
    let period = Duration::from_secs(integer(value, 1, i32::MAX as u64)?);
    if period >= shared.repl.timeout() {
        return Err(format!(
            "argument must be shorter than repl-timeout ({}s)",
            shared.repl.timeout().as_secs_f64()
        ));
    }
    Ok(period)
}

/// A yes/no setting's value, Redis's words for anything else.
fn yes_no(value: &[u8]) -> Result<bool, String> {
    if value.eq_ignore_ascii_case(b"yes") {
        Ok(true)
    } else if value.eq_ignore_ascii_case(b"no") {
        Ok(false)
    } else {
        Err("argument must be 'yes' or 'no'".to_owned())
    }
}

/// New output limits: the classes `value` names change, the others keep theirs. The normal
/// hard limit stays at least twice `proto-max-bulk-len`, as at start (see [`crate::config`]).
fn output_limits(shared: &Shared, value: &[u8]) -> Result<OutputLimits, String> {
    let text = std::str::from_utf8(value).map_err(|_| "argument must be UTF-8".to_owned())?;
    let limits = shared.live.output_limits().parse(text)?;
    let least = shared.config.limits.max_bulk_len.saturating_mul(2);
    if limits.normal.hard() < least {
        return Err(format!(
            "the normal class's hard limit must be at least {least} bytes, twice \
             proto-max-bulk-len"
        ));
    }
    Ok(limits)
}

/// Redis's `save` rules, `<seconds> <changes>` pairs (empty: none), as the one period
/// sessiond has: it saves when at least one key changed, so each rule counts as its seconds and
/// the shortest wins (a save at least as often as Redis's rules would make).
fn save_rules(value: &[u8]) -> Result<Option<Duration>, String> {
    let invalid = || "Invalid save parameters".to_owned();
    let text = std::str::from_utf8(value).map_err(|_| invalid())?;
    let numbers = text
        .split_whitespace()
        .map(|word| word.parse::<u64>().map_err(|_| invalid()))
        .collect::<Result<Vec<_>, _>>()?;
    // As Redis: whole pairs, at least a second each.
    if !numbers.len().is_multiple_of(2) || numbers.iter().step_by(2).any(|&s| s == 0) {
        return Err(invalid());
    }
    Ok(numbers
        .iter()
        .step_by(2)
        .min()
        .map(|&s| Duration::from_secs(s)))
}

/// A new `requirepass`: empty for none. Connections already authenticated stay so, as in Redis.
fn password(value: &[u8]) -> Result<Option<Secret>, String> {
    let text = std::str::from_utf8(value).map_err(|_| "the password must be UTF-8".to_owned())?;
    Ok(Some(text)
        .filter(|text| !text.is_empty())
        .map(|text| Secret::new(text.to_owned())))
}

/// The bounds the flags put on `maxclients` and `session-max-per-user` (see
/// [`crate::config`]).
const MAX_CLIENTS: u64 = 1 << 20;
const MAX_SESSIONS_PER_USER: u64 = 1 << 20;

/// A whole number at least `min` (`slowlog-log-slower-than`: -1 turns it off).
fn signed(value: &[u8], min: i64) -> Result<i64, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .filter(|n| *n >= min)
        .ok_or_else(|| "argument couldn't be parsed into an integer".to_owned())
}

/// A whole number in `min..=max`, with Redis's reasons for the rest.
fn integer(value: &[u8], min: u64, max: u64) -> Result<u64, String> {
    let number = std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse::<i128>().ok())
        .ok_or("argument couldn't be parsed into an integer")?;
    u64::try_from(number)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("argument must be between {min} and {max} inclusive"))
}

/// Bytes, with redis.conf's units (`100mb`).
fn memory(value: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| Size::parse(text).ok())
        .map(|Size(bytes)| bytes)
        .ok_or_else(|| "argument must be a memory value".to_owned())
}

/// A `maxmemory-policy` name.
fn policy(value: &[u8]) -> Result<Policy, String> {
    Policy::ALL
        .into_iter()
        .find(|p| p.name().as_bytes().eq_ignore_ascii_case(value))
        .ok_or_else(|| {
            let names: Vec<_> = Policy::ALL.iter().map(|p| p.name()).collect();
            format!(
                "argument(s) must be one of the following: {}",
                names.join(", ")
            )
        })
}

/// A duration as the flag of the same name takes it (a bare number: seconds, or milliseconds
/// for the busy-reply threshold).
fn duration<T: Value>(value: &[u8]) -> Result<T, String> {
    let text = std::str::from_utf8(value).map_err(|_| "argument must be a duration".to_owned())?;
    T::parse(text)
}

/// Answers CONFIG GET, SET, RESETSTAT, REWRITE and HELP.
pub fn config(ctx: &mut Ctx<'_>, cmd: Config) -> Frame {
    match cmd {
        Config::Get(patterns) => {
            let max_len = ctx.shared.config.max_pattern_len;
            if patterns.iter().any(|p| p.len() > max_len) {
                return Frame::error(glob::TooLong.to_string());
            }
            let patterns: Vec<_> = patterns
                .iter()
                .map(|p| glob::Pattern::new(&p.to_ascii_lowercase()))
                .collect();
            let settings = settings(ctx);
            let mut pairs = Vec::new();
            for (name, value) in &settings {
                if patterns.iter().any(|p| p.matches(name.as_bytes())) {
                    pairs.push((
                        Frame::Bulk(Bytes::from_static(name.as_bytes())),
                        Frame::Bulk(Bytes::from(value.clone())),
                    ));
                }
            }
            Frame::Map(pairs)
        }
        Config::Set(pairs) => match set(ctx, &pairs) {
            Ok(()) => Frame::ok(),
            Err(message) => Frame::error(message),
        },
        Config::Rewrite => match super::config_rewrite::rewrite(ctx.shared) {
            Ok(()) => Frame::ok(),
            Err(message) => Frame::error(message),
        },
        Config::ResetStat => {
            reset_stats(ctx.shared);
            Frame::ok()
        }
        Config::Help => Frame::Array(
            [
                "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET <pattern>",
                "    Return parameters matching the glob-like <pattern> and their values.",
                "SET <directive> <value>",
                "    Set the configuration <directive> to <value>.",
                "RESETSTAT",
                "    Reset statistics reported by the INFO command.",
                "REWRITE",
                "    Rewrite the configuration file.",
                "HELP",
                "    Print this help.",
            ]
            .into_iter()
            .map(Frame::simple)
            .collect(),
        ),
    }
}

/// CONFIG RESETSTAT, as Redis's: the counters of INFO stats, commandstats, errorstats and
/// latencystats are zeroed and the peak memory restarts from now; the slow log and the latency
/// monitor are kept (SLOWLOG RESET and LATENCY RESET clear them).
fn reset_stats(shared: &Shared) {
    shared.stats.reset();
    shared.reset_memory_peak();
}

/// `appendonly`: the one setting whose change can fail once checked ([`Persistence::
/// set_appendonly`] starts files), so `set` applies it before the others.
///
/// [`Persistence::set_appendonly`]: crate::persist::Persistence::set_appendonly
const APPENDONLY: &str = "appendonly";

/// The append-only log's settings need persistence (`--no-persistence` has no log).
fn persistence_on(shared: &Shared) -> Result<(), String> {
    match shared.persistence.config() {
        Some(_) => Ok(()),
        None => Err("persistence is disabled (--no-persistence)".to_owned()),
    }
}

/// `appendfsync`'s words.
fn fsync(value: &[u8]) -> Result<crate::persist::aof::Fsync, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(crate::persist::aof::Fsync::parse)
        .ok_or_else(|| "argument(s) must be one of the following: always, everysec, no".to_owned())
}

/// A period in Redis's whole seconds, rounded up: a sub-second period (a config file may give
/// `500ms`) never reads as 0, which Redis's settings would take for "none".
fn whole_seconds(period: Duration) -> String {
    period.as_millis().div_ceil(1000).to_string()
}

/// A non-negative integer.
fn count(value: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| "argument couldn't be parsed into an integer".to_owned())
}

/// CONFIG SET: every pair is checked before any is applied, so the command changes all its
/// settings or none, with Redis's error for the first that fails (names are case-insensitive).
fn set(ctx: &Ctx<'_>, pairs: &[(Bytes, Bytes)]) -> Result<(), String> {
    let known = settings(ctx);
    let mut chosen: Vec<(&Settable, &[u8])> = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        let lower = name.to_ascii_lowercase();
        let failed = |reason: &str| {
            let name = String::from_utf8_lossy(name);
            format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {reason}")
        };
        match SETTABLE.iter().find(|s| s.name.as_bytes() == lower) {
            None if known.iter().any(|(k, _)| k.as_bytes() == lower) => {
                return Err(failed("can't set immutable config"));
            }
            None => {
                let name = String::from_utf8_lossy(name);
                return Err(format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                ));
            }
            Some(s) if chosen.iter().any(|(c, _)| same_setting(c.name, s.name)) => {
                return Err(failed("duplicate parameter"));
            }
            Some(s) => chosen.push((s, value)),
        }
    }
    for (settable, value) in &chosen {
        (settable.check)(ctx.shared, value).map_err(|reason: String| {
            format!(
                "ERR CONFIG SET failed (possibly related to argument '{}') - {reason}",
                settable.name
            )
        })?;
    }
    if let Some((_, value)) = chosen.iter().find(|(s, _)| s.name == APPENDONLY) {
        let on = yes_no(value).unwrap_or_default();
        ctx.shared.persistence.set_appendonly(on).map_err(|reason| {
            format!("ERR CONFIG SET failed (possibly related to argument '{APPENDONLY}') - {reason}")
        })?;
    }
    for (settable, value) in chosen {
        (settable.apply)(ctx.shared, value);
    }
    Ok(())
}

/// Whether two names of [`SETTABLE`] change one setting: the same name, or one an alias of
/// the other (as Redis's `slave-*` names and `lua-time-limit`; `save` sets the snapshot period).
fn same_setting(a: &str, b: &str) -> bool {
    fn canonical(name: &str) -> &str {
        match name {
            "slave-read-only" => "replica-read-only",
            "slave-priority" => "replica-priority",
            "lua-time-limit" => "busy-reply-threshold",
            "save" => "snapshot-interval",
            name => name,
        }
    }
    canonical(a) == canonical(b)
}

fn yes_no_text(yes: bool) -> String {
    if yes { "yes" } else { "no" }.to_owned()
}

fn settings(ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    let config = &ctx.shared.config;
    let live = &ctx.shared.live;
    let aof_config = ctx.shared.persistence.aof_settings();
    let yes_no = |yes: bool| if yes { "yes" } else { "no" }.to_owned();
    vec![
        ("bind", config.bind.to_string()),
        ("port", ctx.shared.local_addr.port().to_string()),
        (
            "tls-port",
            ctx.shared
                .tls_local_addr
                .map_or(0, |addr| addr.port())
                .to_string(),
        ),
        (
            "metrics-port",
            ctx.shared
                .metrics_local_addr
                .get()
                .map_or(0, |addr| addr.port())
                .to_string(),
        ),
        ("metrics-bind", config.metrics_bind.to_string()),
        ("tls-cert-file", tls_path(config, |f| Some(&f.cert_file))),
        ("tls-key-file", tls_path(config, |f| Some(&f.key_file))),
        (
            "tls-ca-cert-file",
            tls_path(config, |f| f.ca_cert_file.as_ref()),
        ),
        (
            "tls-auth-clients",
            config
                .tls
                .as_ref()
                .map_or("no", |tls| tls.files.auth_clients.as_str())
                .to_owned(),
        ),
        ("maxclients", live.maxclients().to_string()),
        ("databases", config.databases.to_string()),
        ("io-threads", config.worker_threads().to_string()),
        ("idle-poll-us", config.idle_poll.as_micros().to_string()),
        (
            "disable-thp",
            if config.disable_thp { "yes" } else { "no" }.to_owned(),
        ),
        ("proto-max-bulk-len", config.limits.max_bulk_len.to_string()),
        (
            "client-query-buffer-limit",
            config.limits.max_query_buffer.to_string(),
        ),
        ("max-command-args", config.limits.max_args.to_string()),
        ("max-inline-len", config.limits.max_inline_len.to_string()),
        ("max-pattern-len", config.max_pattern_len.to_string()),
        ("scan-max-count", config.scan_max_count.to_string()),
        (
            "shutdown-timeout",
            config.shutdown_timeout.as_secs().to_string(),
        ),
        // Milliseconds, under both of Redis's names.
        (
            "busy-reply-threshold",
            live.busy_reply_threshold().as_millis().to_string(),
        ),
        (
            "lua-time-limit",
            live.busy_reply_threshold().as_millis().to_string(),
        ),
        (
            "active-expire-interval",
            format!("{}ms", config.active_expire_interval.as_millis()),
        ),
        ("loglevel", config.log_level.clone()),
        (
            "timeout",
            live.idle_timeout().map_or(0, |t| t.as_secs()).to_string(),
        ),
        ("max-auth-failures", live.max_auth_failures().to_string()),
        (
            "auth-timeout",
            config.auth_timeout.map_or(0, |t| t.as_secs()).to_string(),
        ),
        (
            "protected-mode",
            if config.protected_mode { "yes" } else { "no" }.to_owned(),
        ),
        (
            "client-output-buffer-limit",
            live.output_limits().config_value(),
        ),
        // The one period as Redis's rules: after that many seconds, if one key changed.
        (
            "save",
            ctx.shared
                .persistence
                .interval()
                .map(|every| format!("{} 1", every.as_secs().max(1)))
                .unwrap_or_default(),
        ),
        (
            "snapshot-interval",
            format_duration(ctx.shared.persistence.interval().unwrap_or_default()),
        ),
        (
            "snapshot-journal-limit",
            config
                .persistence
                .as_ref()
                .map(|p| p.journal_max_bytes)
                .filter(|&bytes| bytes != u64::MAX)
                .unwrap_or(0)
                .to_string(),
        ),
        (
            "stop-writes-on-bgsave-error",
            if config.stop_writes_on_bgsave_error {
                "yes"
            } else {
                "no"
            }
            .to_owned(),
        ),
        (
            "replicaof",
            crate::role::replicaof_setting(&ctx.shared.repl).unwrap_or_default(),
        ),
        (
            "slaveof",
            crate::role::replicaof_setting(&ctx.shared.repl).unwrap_or_default(),
        ),
        (
            "replica-read-only",
            yes_no_text(ctx.shared.repl.read_only()),
        ),
        ("slave-read-only", yes_no_text(ctx.shared.repl.read_only())),
        (
            "repl-backlog-size",
            ctx.shared.dbs.feed().backlog_size().to_string(),
        ),
        ("replica-priority", ctx.shared.repl.priority().to_string()),
        (
            "replica-announce-ip",
            ctx.shared.repl.announce().0.unwrap_or_default(),
        ),
        (
            "slave-announce-ip",
            ctx.shared.repl.announce().0.unwrap_or_default(),
        ),
        (
            "replica-announce-port",
            ctx.shared.repl.announce().1.to_string(),
        ),
        (
            "slave-announce-port",
            ctx.shared.repl.announce().1.to_string(),
        ),
        ("slave-priority", ctx.shared.repl.priority().to_string()),
        ("repl-timeout", whole_seconds(ctx.shared.repl.timeout())),
        (
            "repl-ping-replica-period",
            whole_seconds(ctx.shared.repl.ping_period()),
        ),
        (
            "repl-ping-slave-period",
            whole_seconds(ctx.shared.repl.ping_period()),
        ),
        (
            "masteruser",
            ctx.shared.repl.masteruser().unwrap_or_default(),
        ),
        (
            "tls-replication",
            yes_no_text(ctx.shared.repl.tls_client().is_some()),
        ),
        ("appendonly", yes_no(aof_config.enabled)),
        ("appendfsync", aof_config.fsync.name().to_owned()),
        ("appendfilename", aof_config.file_name.clone()),
        ("appenddirname", aof_config.dir_name.clone()),
        (
            "auto-aof-rewrite-percentage",
            aof_config.rewrite_percentage.to_string(),
        ),
        (
            "auto-aof-rewrite-min-size",
            aof_config.rewrite_min_size.to_string(),
        ),
        ("aof-load-truncated", yes_no(aof_config.load_truncated)),
        ("maxmemory", live.maxmemory().to_string()),
        (
            "maxmemory-policy",
            live.maxmemory_policy().name().to_owned(),
        ),
        // As the flags write them: durations with a unit.
        ("session-idle", format_duration(live.session_idle())),
        ("session-absolute", format_duration(live.session_absolute())),
        (
            "session-max-per-user",
            live.session_max_per_user().to_string(),
        ),
        ("session-max-bytes", live.session_max_bytes().to_string()),
        (
            "slowlog-log-slower-than",
            ctx.shared.slowlog.slower_than_us().to_string(),
        ),
        ("slowlog-max-len", ctx.shared.slowlog.max_len().to_string()),
        (
            "latency-monitor-threshold",
            ctx.shared.latency.threshold_ms().to_string(),
        ),
        (
            "notify-keyspace-events",
            ctx.shared.dbs.notifier().flags().get().to_string(),
        ),
    ]
}

/// A TLS file's path as CONFIG GET shows it; empty without TLS (or without that file).
fn tls_path(
    config: &crate::config::Config,
    path: impl Fn(&crate::tls::TlsFiles) -> Option<&std::path::PathBuf>,
) -> String {
    config
        .tls
        .as_ref()
        .and_then(|tls| path(&tls.files))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}
