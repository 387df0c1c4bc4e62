//! `CONFIG GET pattern [pattern ...]`: the settings under redis.conf names; `CONFIG SET
//! parameter value [...]`: those of [`SETTABLE`] changed at run time, all pairs or none.

use bytes::Bytes;
use sessiond_protocol::cmd::Config;
use sessiond_protocol::Frame;

use super::Ctx;
use crate::glob;
use crate::notify::{self, EventFlags};
use crate::shared::Shared;

/// A setting CONFIG SET may change: its name, the check of a new value (the reason it is
/// refused, in Redis's words) and the change, which cannot fail once every value passed.
struct Settable {
    name: &'static str,
    check: fn(&[u8]) -> Result<(), &'static str>,
    apply: fn(&Shared, &[u8]),
}

/// The settings CONFIG SET changes; every other one CONFIG GET shows is immutable.
const SETTABLE: &[Settable] = &[
    Settable {
        name: "slowlog-log-slower-than",
        check: |value| {
            parse_i64(value)
                .filter(|us| *us >= -1)
                .map(drop)
                .ok_or(ARGUMENT)
        },
        apply: |shared, value| {
            shared
                .slowlog
                .set_slower_than_us(parse_i64(value).unwrap_or(-1))
        },
    },
    Settable {
        name: "slowlog-max-len",
        check: |value| {
            parse_i64(value)
                .filter(|len| (0..=crate::slowlog::MAX_LEN as i64).contains(len))
                .map(drop)
                .ok_or(ARGUMENT)
        },
        apply: |shared, value| {
            shared
                .slowlog
                .set_max_len(parse_i64(value).unwrap_or(0) as u64)
        },
    },
    Settable {
        name: "latency-monitor-threshold",
        check: |value| {
            parse_i64(value)
                .filter(|ms| *ms >= 0)
                .map(drop)
                .ok_or(ARGUMENT)
        },
        apply: |shared, value| {
            shared
                .latency
                .set_threshold_ms(parse_i64(value).unwrap_or(0) as u64)
        },
    },
    Settable {
        name: "notify-keyspace-events",
        check: |value| {
            EventFlags::parse(value)
                .map(drop)
                .ok_or(notify::INVALID_CLASS)
        },
        apply: |shared, value| {
            if let Some(flags) = EventFlags::parse(value) {
                shared.dbs.notifier().flags().set(flags);
            }
        },
    },
];

/// Redis's reason for a numeric setting's value out of its range or not a number.
const ARGUMENT: &str = "argument couldn't be parsed into an integer";

/// A setting's value as an integer.
fn parse_i64(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Answers CONFIG GET and CONFIG SET; RESETSTAT and REWRITE are refused.
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
        Config::ResetStat => {
            reset_stats(ctx.shared);
            Frame::ok()
        }
        Config::ReadOnly(sub) => Frame::error(format!(
            "ERR CONFIG {} is not supported: sessiond's settings are fixed at start (flags, \
             SESSIOND_* variables or the config file)",
            sub.to_uppercase()
        )),
        Config::Help => Frame::Array(
            [
                "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET <pattern>",
                "    Return parameters matching the glob-like <pattern> and their values.",
                "SET <directive> <value>",
                "    Set the configuration <directive> to <value>.",
                "RESETSTAT",
                "    Reset statistics reported by the INFO command.",
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
            Some(s) if chosen.iter().any(|(c, _)| std::ptr::eq(*c, s)) => {
                return Err(failed("duplicate parameter"));
            }
            Some(s) => chosen.push((s, value)),
        }
    }
    for (settable, value) in &chosen {
        (settable.check)(value).map_err(|reason| {
            format!(
                "ERR CONFIG SET failed (possibly related to argument '{}') - {reason}",
                settable.name
            )
        })?;
    }
    for (settable, value) in chosen {
        (settable.apply)(ctx.shared, value);
    }
    Ok(())
}

fn settings(ctx: &Ctx<'_>) -> Vec<(&'static str, String)> {
    let config = &ctx.shared.config;
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
        ("maxclients", config.maxclients.to_string()),
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
            config.busy_reply_threshold.as_millis().to_string(),
        ),
        (
            "lua-time-limit",
            config.busy_reply_threshold.as_millis().to_string(),
        ),
        (
            "active-expire-interval",
            format!("{}ms", config.active_expire_interval.as_millis()),
        ),
        ("loglevel", config.log_level.clone()),
        (
            "timeout",
            config.idle_timeout.map_or(0, |t| t.as_secs()).to_string(),
        ),
        ("max-auth-failures", config.max_auth_failures.to_string()),
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
            config.output_limits.config_value(),
        ),
        ("save", String::new()),
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
        ("appendonly", "no".to_owned()),
        ("maxmemory", config.maxmemory.to_string()),
        (
            "maxmemory-policy",
            config.maxmemory_policy.name().to_owned(),
        ),
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
