//! Configuration in two layers: [`RawConfig`] (`config/raw.rs`), the flags as given (command
//! line, `SESSIOND_*` environment variables, TOML file — in that order of precedence), each
//! value typed where it is read, and [`Config`], validated and ready to use, with units in its
//! field names. [`RawConfig::validate`] fills in the defaults ([`Config::default`]), checks
//! ranges and the rules that span several settings, and leaves each domain's own rules to its
//! module: users to [`crate::auth`], the TLS listener to [`crate::tls`], snapshots to
//! [`crate::persist`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use sessiond_protocol::Limits;

use crate::auth::{users, Secret, User};
use crate::clock::Clock;
use crate::notify::EventFlags;
use crate::output_limit::OutputLimits;
use crate::persist::PersistConfig;
use crate::setting;
use crate::setting::{range, Address, Invalid, Millis, Period, PositivePeriod, Size, YesNo};
use crate::store::evict::Policy;
use crate::tls::{TlsConfig, TlsFiles};

mod raw;

pub use raw::{describe_toml_error, RawConfig, Tool};

/// The exit code for a configuration the server cannot start with (`EX_USAGE`).
pub const EXIT_BAD_CONFIG: i32 = 64;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The word `--log-format` takes.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl setting::Value for LogFormat {
    fn parse(text: &str) -> Result<Self, String> {
        [LogFormat::Text, LogFormat::Json]
            .into_iter()
            .find(|format| format.name() == text)
            .ok_or_else(|| "expected text or json".to_owned())
    }
}

setting::read_as_setting!(LogFormat);

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address to listen on.
    pub bind: IpAddr,
    /// The TCP port; 0 picks a free one.
    pub port: u16,
    /// The TLS listener (on `bind` too); `None`: plaintext only.
    pub tls: Option<TlsConfig>,
    /// The Prometheus endpoint's port (`crate::metrics`); `None`: no endpoint.
    pub metrics_port: Option<u16>,
    /// The Prometheus endpoint's address.
    pub metrics_bind: IpAddr,
    /// Most simultaneous clients.
    pub maxclients: usize,
    /// Databases (SELECT 0 to `databases - 1`), 1 to [`MAX_DATABASES`](crate::store::MAX_DATABASES).
    pub databases: usize,
    /// Most bytes the keyspace may be accounted for; 0: no limit.
    pub maxmemory: u64,
    /// What a write does at `maxmemory`.
    pub maxmemory_policy: Policy,
    /// The keyspace and session events published at start (`CONFIG SET` changes them).
    pub notify_keyspace_events: EventFlags,
    /// The `default` user's password; `None`: no authentication (unless named users exist).
    pub requirepass: Option<Secret>,
    /// Named users (the config file's `[[user]]` tables).
    pub users: Vec<User>,
    /// Whether a non-loopback bind without a password is refused.
    pub protected_mode: bool,
    /// Failed authentications a connection may make before it is closed; 0: no limit.
    pub max_auth_failures: u32,
    /// How long a connection may stay unauthenticated (when a password is required) before it
    /// is closed, so that sockets that never log in cannot hold every `maxclients` slot;
    /// `None`: no deadline.
    pub auth_timeout: Option<Duration>,
    /// Idle clients are closed after this long; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Most reply data held for a client, per class (`client-output-buffer-limit`).
    pub output_limits: OutputLimits,
    /// Input bounds per connection.
    pub limits: Limits,
    /// Longest glob pattern accepted (KEYS, SCAN MATCH, CONFIG GET, users' key patterns), bytes.
    pub max_pattern_len: usize,
    /// Most keys one SCAN call examines: a larger COUNT is clamped to it.
    pub scan_max_count: usize,
    /// Runtime worker threads; 0 (the default before validation): automatic (see
    /// [`Config::worker_threads`]), which [`RawConfig::validate`] resolves.
    pub threads: usize,
    /// How long a single-threaded runtime polls for requests before it sleeps; zero: never
    /// (see [`crate::idle_poll`]).
    pub idle_poll: Duration,
    /// Whether the binary turns transparent huge pages off for its process: zeroing a 2 MiB page
    /// on the fault that first touches it stalls the thread for milliseconds while the keyspace
    /// grows.
    pub disable_thp: bool,
    /// Grace period for in-flight work at shutdown.
    pub shutdown_timeout: Duration,
    /// How long a script runs before the commands that need what it holds are answered BUSY
    /// and SCRIPT KILL may stop it; zero: never BUSY (they wait).
    pub busy_reply_threshold: Duration,
    /// Period of the active expiry task.
    pub active_expire_interval: Duration,
    /// Default idle timeout of sessions.
    pub session_idle: Duration,
    /// Default absolute timeout of sessions.
    pub session_absolute: Duration,
    /// Most sessions per user (0: no cap).
    pub session_max_per_user: usize,
    /// Most bytes of one session's data (0: no limit).
    pub session_max_bytes: u64,
    /// `slowlog-log-slower-than`: commands of at least this many microseconds are logged; 0:
    /// all, negative: none. CONFIG SET changes the running value (`Shared::slowlog`).
    pub slowlog_log_slower_than_us: i64,
    /// `slowlog-max-len`: entries the slow log keeps.
    pub slowlog_max_len: u64,
    /// `latency-monitor-threshold`: commands of at least this many milliseconds are latency
    /// spikes; 0: off.
    pub latency_monitor_threshold_ms: u64,
    /// Snapshots; `None` runs purely in memory. The library default is in memory; the binary's
    /// flags default to [`PersistConfig::default`].
    pub persistence: Option<PersistConfig>,
    /// Whether writes are refused with MISCONF while the last snapshot failed.
    pub stop_writes_on_bgsave_error: bool,
    /// The tracing filter.
    pub log_level: String,
    /// The log line format.
    pub log_format: LogFormat,
    /// Replication: the primary to follow, the link's credentials and TLS, the replica's
    /// behaviour.
    pub replication: crate::role::Settings,
    /// Where the config file came from, if any (INFO reports it).
    pub config_file: Option<PathBuf>,
    /// The clock; tests pass a manual one.
    pub clock: Clock,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 6380,
            tls: None,
            metrics_port: None,
            metrics_bind: IpAddr::from([127, 0, 0, 1]),
            maxclients: 10_000,
            databases: 16,
            maxmemory: 0,
            maxmemory_policy: Policy::NoEviction,
            notify_keyspace_events: EventFlags::default(),
            requirepass: None,
            users: Vec::new(),
            protected_mode: true,
            max_auth_failures: 10,
            auth_timeout: Some(Duration::from_secs(10)),
            idle_timeout: None,
            output_limits: OutputLimits::default(),
            limits: Limits::default(),
            max_pattern_len: crate::glob::DEFAULT_MAX_PATTERN_LEN,
            scan_max_count: 10_000,
            threads: 0,
            idle_poll: Duration::from_micros(50),
            disable_thp: true,
            shutdown_timeout: Duration::from_secs(10),
            busy_reply_threshold: Duration::from_secs(5),
            active_expire_interval: Duration::from_millis(100),
            session_idle: Duration::from_secs(30 * 60),
            session_absolute: Duration::from_secs(8 * 3600),
            session_max_per_user: 0,
            session_max_bytes: 1 << 20,
            slowlog_log_slower_than_us: 10_000,
            slowlog_max_len: 128,
            latency_monitor_threshold_ms: 0,
            persistence: None,
            stop_writes_on_bgsave_error: true,
            log_level: "info".to_owned(),
            log_format: LogFormat::Text,
            replication: crate::role::Settings::default(),
            config_file: None,
            clock: Clock::system(),
        }
    }
}

/// A setting that cannot be used; the message names the setting and the value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse, is out of range or does not fit the other settings.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The config file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The `default` user's password cannot be used (given twice, empty, or its file
    /// unreadable).
    #[error(transparent)]
    Password(#[from] crate::auth::PasswordError),
    /// A TLS file cannot be used (missing, unreadable, not PEM, a key that does not match).
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The config file is not valid TOML or has unknown keys.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

impl Config {
    /// The threads that run connections and commands: `threads`, or when it is 0, one per core
    /// the process may use but one, at least one. The core left over serves the kernel's
    /// network stack and the processes beside the server (the web servers, a load generator):
    /// on two cores shared with a client, one thread that polls before it sleeps (see
    /// [`crate::idle_poll`]) beats two that wake each other.
    pub fn worker_threads(&self) -> usize {
        match self.threads {
            0 => automatic_threads(),
            threads => threads,
        }
    }
}

/// One thread per core the process may use but one, at least one. The count reads the cgroup's
/// files: [`RawConfig::validate`] works it out once; a `Config` built otherwise (such as
/// `Config::default()`) on each [`Config::worker_threads`] call.
fn automatic_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |cores| cores.get() - 1)
        .max(1)
}

impl RawConfig {
    /// Validates every setting, filling in defaults.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let defaults = Config::default();
        let mut limits = defaults.limits;
        let bind = self.bind.map_or(defaults.bind, |Address(ip)| ip);
        if let Some(Size(bytes)) = self.proto_max_bulk_len {
            limits.max_bulk_len =
                range("proto-max-bulk-len", bytes, 1, u64::from(u32::MAX))? as usize;
        }
        if let Some(Size(bytes)) = self.client_query_buffer_limit {
            limits.max_query_buffer =
                range("client-query-buffer-limit", bytes, 1024, 1 << 34)? as usize;
        }
        if let Some(Size(bytes)) = self.max_inline_len {
            limits.max_inline_len = range("max-inline-len", bytes, 64, 1 << 30)? as usize;
        }
        if let Some(count) = self.max_command_args {
            limits.max_args = range("max-command-args", count, 1, i32::MAX as u64)? as usize;
        }
        if limits.max_query_buffer < limits.max_bulk_len {
            return Err(Invalid::new(
                "client-query-buffer-limit",
                limits.max_query_buffer.to_string(),
                format!(
                    "must be at least proto-max-bulk-len ({}), or no such bulk could be received",
                    limits.max_bulk_len
                ),
            )
            .into());
        }
        let requirepass =
            Secret::from_settings(self.requirepass, self.requirepass_file.as_deref())?;
        let protected_mode = self
            .protected_mode
            .map_or(defaults.protected_mode, |YesNo(yes)| yes);
        let max_pattern_len = match self.max_pattern_len {
            None => defaults.max_pattern_len,
            Some(Size(bytes)) => range("max-pattern-len", bytes, 1, 1 << 20)? as usize,
        };
        let users = users(self.users, max_pattern_len)?;
        if protected_mode && requirepass.is_none() && users.is_empty() && !bind.is_loopback() {
            return Err(Invalid::new(
                "bind",
                bind.to_string(),
                "protected mode: refusing to accept connections from the network without \
                 a password; set --requirepass or named users (or SESSIOND_PASSWORD, --requirepass-file), \
                 bind to 127.0.0.1, or pass --protected-mode no if a firewall protects this \
                 port",
            )
            .into());
        }
        let port = self.port.unwrap_or(defaults.port);
        let tls = TlsFiles::from_settings(
            port,
            self.tls_port,
            self.tls_cert_file,
            self.tls_key_file,
            self.tls_ca_cert_file,
            self.tls_auth_clients,
        )?;
        let tls = match tls {
            Some((tls_port, files)) => Some(TlsConfig::load(tls_port, files)?),
            None => None,
        };
        let replication = crate::role::Settings::from_settings(
            crate::role::RawSettings {
                replicaof: self.replicaof,
                masteruser: self.masteruser,
                masterauth: self.masterauth,
                read_only: self.replica_read_only.map(|YesNo(yes)| yes),
                priority: self.replica_priority,
                timeout: self.repl_timeout.map(|PositivePeriod(period)| period),
                ping_period: self
                    .repl_ping_replica_period
                    .map(|PositivePeriod(period)| period),
                backlog_bytes: self.repl_backlog_size.map(|Size(bytes)| bytes),
                announce_ip: self.replica_announce_ip,
                announce_port: self.replica_announce_port,
                tls_replication: self.tls_replication.is_some_and(|YesNo(yes)| yes),
            },
            tls.as_ref(),
        )?;
        let max_auth_failures = match self.max_auth_failures {
            None => defaults.max_auth_failures,
            Some(count) => range("max-auth-failures", count, 0, u64::from(u32::MAX))? as u32,
        };
        let output_limits = self
            .client_output_buffer_limit
            .unwrap_or(defaults.output_limits);
        if output_limits.normal.hard() < limits.max_bulk_len.saturating_mul(2) {
            return Err(Invalid::new(
                "client-output-buffer-limit",
                output_limits.config_value(),
                format!(
                    "the normal class's hard limit must be at least twice proto-max-bulk-len \
                     ({}), or a value the server accepts could not be read back after another \
                     reply of the same pipeline",
                    limits.max_bulk_len
                ),
            )
            .into());
        }
        let maxclients = self.maxclients.unwrap_or(defaults.maxclients as u64);
        let databases = self.databases.unwrap_or(defaults.databases as u64);
        let scan_max_count = self
            .scan_max_count
            .unwrap_or(defaults.scan_max_count as u64);
        let threads = self.threads.unwrap_or(defaults.threads as u64);
        let session_max_per_user = self
            .session_max_per_user
            .unwrap_or(defaults.session_max_per_user as u64);
        Ok(Config {
            bind,
            port,
            replication,
            tls,
            metrics_port: self.metrics_port,
            metrics_bind: self
                .metrics_bind
                .map_or(defaults.metrics_bind, |Address(ip)| ip),
            requirepass,
            users,
            protected_mode,
            max_auth_failures,
            auth_timeout: self
                .auth_timeout
                .map_or(defaults.auth_timeout, Period::never_if_zero),
            idle_timeout: self
                .timeout
                .map_or(defaults.idle_timeout, Period::never_if_zero),
            output_limits,
            maxmemory: self
                .maxmemory
                .map_or(defaults.maxmemory, |Size(bytes)| bytes),
            maxmemory_policy: self.maxmemory_policy.unwrap_or(defaults.maxmemory_policy),
            notify_keyspace_events: self
                .notify_keyspace_events
                .unwrap_or(defaults.notify_keyspace_events),
            maxclients: range("maxclients", maxclients, 1, 1 << 20)? as usize,
            databases: range(
                "databases",
                databases,
                1,
                crate::store::MAX_DATABASES as u64,
            )? as usize,
            limits,
            max_pattern_len,
            scan_max_count: range("scan-max-count", scan_max_count, 1, 1 << 30)? as usize,
            threads: match range("threads", threads, 0, 1024)? {
                0 => automatic_threads(),
                threads => threads as usize,
            },
            idle_poll: match self.idle_poll_us {
                Some(us) => Duration::from_micros(range("idle-poll-us", us, 0, 10_000)?),
                None => defaults.idle_poll,
            },
            disable_thp: self
                .disable_thp
                .map_or(defaults.disable_thp, |YesNo(yes)| yes),
            shutdown_timeout: self
                .shutdown_timeout
                .map_or(defaults.shutdown_timeout, |Period(d)| d),
            busy_reply_threshold: self
                .busy_reply_threshold
                .map_or(defaults.busy_reply_threshold, |Millis(d)| d),
            active_expire_interval: self
                .active_expire_interval
                .map_or(defaults.active_expire_interval, |PositivePeriod(d)| d),
            session_idle: self
                .session_idle
                .map_or(defaults.session_idle, |PositivePeriod(d)| d),
            session_absolute: self
                .session_absolute
                .map_or(defaults.session_absolute, |PositivePeriod(d)| d),
            session_max_per_user: range("session-max-per-user", session_max_per_user, 0, 1 << 20)?
                as usize,
            session_max_bytes: self
                .session_max_bytes
                .map_or(defaults.session_max_bytes, |Size(bytes)| bytes),
            slowlog_log_slower_than_us: match self.slowlog_log_slower_than {
                None => defaults.slowlog_log_slower_than_us,
                Some(us) if us < -1 => {
                    return Err(Invalid::new(
                        "slowlog-log-slower-than",
                        us.to_string(),
                        "expected -1 (off), 0 (every command) or more",
                    )
                    .into())
                }
                Some(us) => us,
            },
            slowlog_max_len: range(
                "slowlog-max-len",
                self.slowlog_max_len.unwrap_or(defaults.slowlog_max_len),
                0,
                crate::slowlog::MAX_LEN,
            )?,
            latency_monitor_threshold_ms: range(
                "latency-monitor-threshold",
                self.latency_monitor_threshold
                    .unwrap_or(defaults.latency_monitor_threshold_ms),
                0,
                i64::MAX as u64,
            )?,
            persistence: match self.no_persistence {
                Some(true) => None,
                _ => Some(
                    PersistConfig::from_settings(
                        self.data_dir,
                        self.dbfilename,
                        self.snapshot_interval,
                        self.snapshot_journal_limit.map(|Size(bytes)| bytes),
                        self.debug_snapshot_shard_delay.map(|Period(d)| d),
                    )?
                    .with_aof(crate::persist::aof::AofConfig::from_settings(
                        crate::persist::aof::AofSettings {
                            enabled: self.appendonly.map(|YesNo(yes)| yes),
                            fsync: self.appendfsync,
                            file_name: self.appendfilename,
                            dir_name: self.appenddirname,
                            rewrite_percentage: self.auto_aof_rewrite_percentage,
                            rewrite_min_size: self.auto_aof_rewrite_min_size.map(|Size(b)| b),
                            base_shard_delay: self.debug_aof_base_shard_delay.map(|Period(d)| d),
                            load_truncated: self.aof_load_truncated.map(|YesNo(yes)| yes),
                        },
                    )?),
                ),
            },
            stop_writes_on_bgsave_error: self
                .stop_writes_on_bgsave_error
                .map_or(defaults.stop_writes_on_bgsave_error, |YesNo(yes)| yes),
            log_level: self.log_level.unwrap_or(defaults.log_level),
            log_format: self.log_format.unwrap_or(defaults.log_format),
            config_file: self.config,
            clock: defaults.clock,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::tls::ClientAuth;

    fn users_from(toml_text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(toml_text).expect("valid TOML");
        raw.validate()
    }

    /// The configuration the flags make, or the message of the first error, from clap or
    /// validation alike.
    fn from_flags(args: &[&str]) -> Result<Config, String> {
        let raw =
            RawConfig::try_parse_from(std::iter::once("sessiond").chain(args.iter().copied()))
                .map_err(|e| e.to_string())?;
        raw.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn threads_and_idle_polling_resolve_from_their_settings() {
        let config = users_from("").unwrap();
        let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
        assert_eq!(config.worker_threads(), (cores - 1).max(1));
        assert_eq!(config.idle_poll, Duration::from_micros(50));
        let config = users_from("threads = 3\nidle-poll-us = 0").unwrap();
        assert_eq!(config.worker_threads(), 3);
        assert!(config.idle_poll.is_zero());
        let config = users_from("idle-poll-us = 200").unwrap();
        assert_eq!(config.idle_poll, Duration::from_micros(200));
        let error = users_from("idle-poll-us = 10001").unwrap_err().to_string();
        assert!(error.contains("idle-poll-us"), "{error}");
        assert!(users_from("").unwrap().disable_thp);
        assert!(!users_from("disable-thp = \"no\"").unwrap().disable_thp);
        let error = from_flags(&["--disable-thp", "off"]).unwrap_err();
        assert!(
            error.contains("disable-thp") && error.contains("yes or no"),
            "{error}"
        );
    }

    #[test]
    fn the_busy_reply_threshold_counts_milliseconds_under_both_of_redis_s_names() {
        let threshold = |config: Config| config.busy_reply_threshold;
        assert_eq!(threshold(users_from("").unwrap()), Duration::from_secs(5));
        let given = users_from("busy-reply-threshold = 250").unwrap();
        assert_eq!(threshold(given), Duration::from_millis(250));
        let given = users_from("lua-time-limit = \"2s\"").unwrap();
        assert_eq!(threshold(given), Duration::from_secs(2));
        let given = from_flags(&["--lua-time-limit", "100"]).unwrap();
        assert_eq!(threshold(given), Duration::from_millis(100));
        let given = from_flags(&["--busy-reply-threshold", "0"]).unwrap();
        assert!(threshold(given).is_zero());
        assert!(from_flags(&["--busy-reply-threshold", "soon"]).is_err());
    }

    #[test]
    fn the_output_buffer_limit_takes_redis_s_classes_or_one_size() {
        let limits = |text: &str| {
            from_flags(&["--client-output-buffer-limit", text]).map(|config| config.output_limits)
        };
        let defaults = users_from("").unwrap().output_limits;
        assert_eq!(defaults, OutputLimits::default());
        assert_eq!(defaults.normal.hard(), 64 << 20);
        let given = limits("normal 32mb 16mb 10 pubsub 1mb 0 0").unwrap();
        assert_eq!(given.normal.soft_bytes, 16 << 20);
        assert_eq!(given.pubsub.hard_bytes, 1 << 20);
        assert_eq!(given.replica, defaults.replica);
        // The older single size: the normal class's hard limit.
        assert_eq!(limits("1gb").unwrap().normal.hard(), 1 << 30);
        let raw: RawConfig =
            toml::from_str("client-output-buffer-limit = \"normal 0 0 0\"").unwrap();
        assert_eq!(
            raw.validate().unwrap().output_limits.normal.hard(),
            usize::MAX
        );
        for (text, reason) in [
            ("normal 32mb 0", "wrong number of arguments"),
            ("client 32mb 0 0", "invalid client class"),
            ("normal 32mb 0 soon", "soft-seconds"),
            // Below the largest value: a value stored could never be read back.
            ("1mb", "proto-max-bulk-len (16777216)"),
            ("normal 8mb 0 0", "proto-max-bulk-len"),
        ] {
            let message = limits(text).unwrap_err();
            assert!(
                message.contains("invalid client-output-buffer-limit") && message.contains(reason),
                "{text}: {message}"
            );
        }
        let small_values = &[
            "--client-output-buffer-limit",
            "1mb",
            "--proto-max-bulk-len",
            "512kb",
        ];
        assert_eq!(
            from_flags(small_values)
                .unwrap()
                .output_limits
                .normal
                .hard(),
            1 << 20
        );
    }

    #[test]
    fn protected_mode_refuses_the_network_without_a_password() {
        let open = RawConfig {
            bind: Some(Address(IpAddr::from([0, 0, 0, 0]))),
            ..Default::default()
        };
        let message = open.clone().validate().unwrap_err().to_string();
        assert!(
            message.contains("protected mode") && message.contains("--requirepass"),
            "{message}"
        );
        let with_password = RawConfig {
            requirepass: Some("pw".into()),
            ..open.clone()
        };
        assert!(with_password.validate().is_ok());
        let overridden = RawConfig {
            protected_mode: Some(YesNo(false)),
            ..open
        };
        assert!(overridden.validate().is_ok());
        let loopback = RawConfig {
            bind: Some(Address(IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]))),
            ..Default::default()
        };
        assert!(loopback.validate().is_ok());
    }

    #[test]
    fn named_users_satisfy_protected_mode() {
        let config = users_from(&format!(
            "bind = \"0.0.0.0\"\n[[user]]\nname = \"ops\"\npassword-sha256 = \"{}\"\n",
            crate::auth::password_sha256("ops password")
        ))
        .expect("users without requirepass satisfy protected mode");
        assert_eq!(config.users.len(), 1);
    }

    #[test]
    fn tls_files_are_loaded_and_spelled_like_the_flags() {
        // A missing file is named, with the setting.
        let error = RawConfig {
            tls_port: Some(0),
            tls_cert_file: Some(PathBuf::from("/nonexistent/cert.pem")),
            tls_key_file: Some(PathBuf::from("/nonexistent/key.pem")),
            ..Default::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("tls-cert-file /nonexistent/cert.pem: cannot read"),
            "{error}"
        );
        let error = from_flags(&["--tls-auth-clients", "maybe"]).unwrap_err();
        assert!(
            error.contains("invalid tls-auth-clients \"maybe\": expected yes, optional or no"),
            "{error}"
        );
        // The TOML file spells them like the flags.
        let raw: RawConfig =
            toml::from_str("tls-port = 0\ntls-cert-file = \"c.pem\"\ntls-auth-clients = \"no\"\n")
                .unwrap();
        assert_eq!(raw.tls_port, Some(0));
        assert_eq!(raw.tls_auth_clients, Some(ClientAuth::No));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let message = from_flags(&["--proto-max-bulk-len", "lots"]).unwrap_err();
        assert!(
            message.contains("invalid proto-max-bulk-len \"lots\": expected a size"),
            "{message}"
        );
        // A stored key or string records its length in 32 bits.
        let message = from_flags(&[
            "--proto-max-bulk-len",
            "4gb",
            "--client-query-buffer-limit",
            "8gb",
        ])
        .unwrap_err();
        assert!(message.contains("proto-max-bulk-len"), "{message}");
        let message = from_flags(&["--log-format", "xml"]).unwrap_err();
        assert!(message.contains("log-format"), "{message}");
        let message = from_flags(&["--maxmemory-policy", "allkeys-random"]).unwrap_err();
        assert!(message.contains("maxmemory-policy"), "{message}");
        let config =
            from_flags(&["--maxmemory", "1gb", "--maxmemory-policy", "volatile-lru"]).unwrap();
        assert_eq!(config.maxmemory, 1 << 30);
        assert_eq!(config.maxmemory_policy, Policy::VolatileLru);
        let journal_limit = |text: &str| {
            from_flags(&["--snapshot-journal-limit", text])
                .map(|c| c.persistence.map(|p| p.journal_max_bytes))
        };
        assert_eq!(journal_limit("64mb").unwrap(), Some(64 << 20));
        assert_eq!(journal_limit("0").unwrap(), Some(u64::MAX), "0: no bound");
        let message = journal_limit("lots").unwrap_err();
        assert!(message.contains("snapshot-journal-limit"), "{message}");
        let toml = "snapshot-journal-limit = \"1gb\"\n";
        let raw: RawConfig = toml::from_str(toml).unwrap();
        assert_eq!(raw.snapshot_journal_limit, Some(Size(1 << 30)));
        let toml = "port = 1\nno-such-setting = 2\n";
        assert!(toml::from_str::<RawConfig>(toml)
            .unwrap_err()
            .to_string()
            .contains("no-such-setting"));
    }
}
