//! Configuration in two layers: [`RawConfig`], the flags as given (command line, `SESSIOND_*`
//! environment variables, TOML file — in that order of precedence), and [`Config`], validated
//! and ready to use, with units in its field names.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;
use sessiond_protocol::Limits;

use crate::auth::{users, RawUser, Secret, User};
use crate::clock::Clock;
use crate::output_limit::OutputLimits;
use crate::persist::PersistConfig;
use crate::setting;
use crate::setting::{range, Address, Invalid, Period, PositivePeriod, Size, YesNo};
use crate::store::evict::Policy;
use crate::tls::{ClientAuth, TlsConfig, TlsFiles};

/// The exit code for a configuration the server cannot start with (`EX_USAGE`).
pub const EXIT_BAD_CONFIG: i32 = 64;

/// Declares [`RawConfig`] and its merge ([`RawConfig::or`]) from one list of fields, so that a
/// setting added to the struct is layered without a second list to keep in step.
macro_rules! layered {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$field_meta:meta])* pub $field:ident: $type:ty,)*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$field_meta])* pub $field: $type,)*
        }

        impl $name {
            /// Each setting from `self`, or from `fallback` where `self` has none.
            pub fn or(self, fallback: $name) -> $name {
                $name {
                    $($field: Layer::or(self.$field, fallback.$field),)*
                }
            }
        }
    };
}

/// A setting that one layer of the configuration may leave unset for the next to give.
trait Layer {
    /// `self` if it is set, else `fallback`.
    fn or(self, fallback: Self) -> Self;
}

impl<T> Layer for Option<T> {
    fn or(self, fallback: Self) -> Self {
        Option::or(self, fallback)
    }
}

/// A list is set when it is not empty (the `[[user]]` tables).
impl<T> Layer for Vec<T> {
    fn or(self, fallback: Self) -> Self {
        if self.is_empty() {
            fallback
        } else {
            self
        }
    }
}

layered! {
/// The flags as given. Every field is optional so that the command line, the environment and
/// the config file can be layered; the defaults live in [`Config::default`].
#[derive(Debug, Default, Clone, Parser, Deserialize)]
#[command(
    name = "sessiond",
    version,
    about = "A session-store server that speaks RESP"
)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RawConfig {
    /// A tool to run instead of the server.
    #[command(subcommand)]
    #[serde(skip)]
    pub tool: Option<Tool>,

    /// TOML file with the same settings (keys named like the flags, e.g. `proto-max-bulk-len`).
    #[arg(long, env = "SESSIOND_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, env = "SESSIOND_BIND")]
    pub bind: Option<Address>,

    /// TCP port; 0 picks a free one [default: 6380].
    #[arg(long, env = "SESSIOND_PORT")]
    pub port: Option<u16>,

    /// TCP port of a second listener that speaks only TLS; 0 picks a free one [default: none].
    /// Needs --tls-cert-file and --tls-key-file.
    #[arg(long, env = "SESSIOND_TLS_PORT")]
    pub tls_port: Option<u16>,

    /// The server's certificate chain for --tls-port, PEM, leaf first.
    #[arg(long, env = "SESSIOND_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// The private key of --tls-cert-file, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SESSIOND_TLS_KEY_FILE", value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// CA certificates, PEM: TLS clients must present a certificate signed by one of them
    /// (see --tls-auth-clients).
    #[arg(long, env = "SESSIOND_TLS_CA_CERT_FILE", value_name = "FILE")]
    pub tls_ca_cert_file: Option<PathBuf>,

    /// Client certificates on --tls-port: `yes` (required), `optional` (verified if sent) or
    /// `no` [default: yes with --tls-ca-cert-file, no without].
    #[arg(long, env = "SESSIOND_TLS_AUTH_CLIENTS")]
    pub tls_auth_clients: Option<ClientAuth>,

    /// Password of the `default` user; clients must AUTH before other commands. Prefer
    /// SESSIOND_PASSWORD or --requirepass-file, which keep it out of `ps`.
    #[arg(long, env = "SESSIOND_PASSWORD", hide_env_values = true)]
    pub requirepass: Option<String>,

    /// File holding the `default` user's password (one line; a trailing newline is ignored).
    #[arg(long, env = "SESSIOND_REQUIREPASS_FILE")]
    pub requirepass_file: Option<PathBuf>,

    /// Refuse to start on a non-loopback address without a password: `yes` or `no`
    /// [default: yes].
    #[arg(long, env = "SESSIOND_PROTECTED_MODE")]
    pub protected_mode: Option<YesNo>,

    /// Disconnect a client after this many failed AUTH / HELLO AUTH attempts on its connection
    /// (0: never) [default: 10].
    #[arg(long, env = "SESSIOND_MAX_AUTH_FAILURES")]
    pub max_auth_failures: Option<u64>,

    /// Close a connection that has not authenticated this long after it was accepted, when a
    /// password is required (a duration; 0: never) [default: 10s].
    #[arg(long, env = "SESSIOND_AUTH_TIMEOUT")]
    pub auth_timeout: Option<Period>,

    /// Close a client idle this long (a duration; 0: never) [default: 0].
    #[arg(long, env = "SESSIOND_TIMEOUT")]
    pub timeout: Option<Period>,

    /// Most reply data held for a client, as Redis's `<class> <hard> <soft> <soft-seconds>`,
    /// repeated for the classes normal, replica and pubsub (or one size: the normal class's
    /// hard limit). Past the hard limit, or above the soft one for soft-seconds, the client is
    /// closed [default: normal 64mb 0 0 replica 256mb 64mb 60 pubsub 32mb 8mb 60].
    #[arg(long, env = "SESSIOND_CLIENT_OUTPUT_BUFFER_LIMIT")]
    pub client_output_buffer_limit: Option<OutputLimits>,

    /// Most memory the keyspace may use (`used_memory`), with units; 0: no limit [default: 0].
    #[arg(long, env = "SESSIOND_MAXMEMORY")]
    pub maxmemory: Option<Size>,

    /// What a write does at --maxmemory: noeviction (refuse it with OOM), volatile-ttl,
    /// volatile-lru or allkeys-lru (evict keys) [default: noeviction].
    #[arg(long, env = "SESSIOND_MAXMEMORY_POLICY")]
    pub maxmemory_policy: Option<Policy>,

    /// Most simultaneous clients; more are refused with an error [default: 10000].
    #[arg(long, env = "SESSIOND_MAXCLIENTS")]
    pub maxclients: Option<u64>,

    /// Largest bulk string accepted, with units (`16mb`, `512kb`) [default: 16mb].
    #[arg(long, env = "SESSIOND_PROTO_MAX_BULK_LEN")]
    pub proto_max_bulk_len: Option<Size>,

    /// Most input buffered for one client [default: 64mb].
    #[arg(long, env = "SESSIOND_CLIENT_QUERY_BUFFER_LIMIT")]
    pub client_query_buffer_limit: Option<Size>,

    /// Most arguments in one command [default: 1048576].
    #[arg(long, env = "SESSIOND_MAX_COMMAND_ARGS")]
    pub max_command_args: Option<u64>,

    /// Longest inline command line [default: 64kb].
    #[arg(long, env = "SESSIOND_MAX_INLINE_LEN")]
    pub max_inline_len: Option<Size>,

    /// Longest glob pattern of KEYS, SCAN MATCH, CONFIG GET and users' key patterns; a match
    /// costs up to key length × pattern length [default: 256].
    #[arg(long, env = "SESSIOND_MAX_PATTERN_LEN")]
    pub max_pattern_len: Option<Size>,

    /// Most keys one SCAN call examines, whatever its COUNT [default: 10000].
    #[arg(long, env = "SESSIOND_SCAN_MAX_COUNT")]
    pub scan_max_count: Option<u64>,

    /// Threads that run connections and commands; 0: one per CPU core but one, at least one
    /// [default: 0].
    #[arg(long, env = "SESSIOND_THREADS")]
    pub threads: Option<u64>,

    /// With one thread and more than one core: how long, in microseconds, the thread keeps
    /// polling for requests after the last before it sleeps (CPU for lower latency under load);
    /// 0: never [default: 50].
    #[arg(long, env = "SESSIOND_IDLE_POLL_US")]
    pub idle_poll_us: Option<u64>,

    /// Turn off transparent huge pages for the process (Linux; as Redis's `disable-thp`): `yes`
    /// or `no` [default: yes].
    #[arg(long, env = "SESSIOND_DISABLE_THP")]
    pub disable_thp: Option<YesNo>,

    /// How long in-flight work may take to finish after SIGTERM/SIGINT/SHUTDOWN [default: 10s].
    #[arg(long, env = "SESSIOND_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<Period>,

    /// How often the active expiry task reclaims expired keys [default: 100ms].
    #[arg(long, env = "SESSIOND_ACTIVE_EXPIRE_INTERVAL")]
    pub active_expire_interval: Option<PositivePeriod>,

    /// Default idle timeout of a session: it ends this long after its last use [default: 30m].
    #[arg(long, env = "SESSIOND_SESSION_IDLE")]
    pub session_idle: Option<PositivePeriod>,

    /// Default absolute timeout of a session: it ends this long after creation [default: 8h].
    #[arg(long, env = "SESSIOND_SESSION_ABSOLUTE")]
    pub session_absolute: Option<PositivePeriod>,

    /// Most sessions per user; creating one more destroys that user's oldest (0: no cap)
    /// [default: 0].
    #[arg(long, env = "SESSIOND_SESSION_MAX_PER_USER")]
    pub session_max_per_user: Option<u64>,

    /// Directory of the snapshot file [default: ./data].
    #[arg(long, env = "SESSIOND_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Snapshot file name inside the data directory [default: dump.sdb].
    #[arg(long, env = "SESSIOND_DBFILENAME")]
    pub dbfilename: Option<String>,

    /// Save a snapshot this often when something changed; 0 disables periodic snapshots
    /// [default: 60s].
    #[arg(long, env = "SESSIOND_SNAPSHOT_INTERVAL")]
    pub snapshot_interval: Option<Period>,

    /// The most memory the journal of changes made during a snapshot may take (one record per
    /// key written meanwhile, outside maxmemory); past it the snapshot is abandoned and retried
    /// 5 s later; 0: no bound [default: 256mb].
    #[arg(long, env = "SESSIOND_SNAPSHOT_JOURNAL_LIMIT")]
    pub snapshot_journal_limit: Option<Size>,

    /// Refuse writes with MISCONF while the last snapshot failed (as Redis's
    /// `stop-writes-on-bgsave-error`): `yes` or `no` [default: yes].
    #[arg(long, env = "SESSIOND_STOP_WRITES_ON_BGSAVE_ERROR")]
    pub stop_writes_on_bgsave_error: Option<YesNo>,

    /// Run purely in memory: no snapshot is loaded or written.
    #[arg(long, env = "SESSIOND_NO_PERSISTENCE", num_args = 0..=1, default_missing_value = "true")]
    pub no_persistence: Option<bool>,

    /// Test only: pause this long after each shard while writing a snapshot.
    #[arg(long, env = "SESSIOND_DEBUG_SNAPSHOT_SHARD_DELAY", hide = true)]
    pub debug_snapshot_shard_delay: Option<Period>,

    /// Log level or tracing filter (`info`, `debug`, `sessiond=trace`); RUST_LOG also works
    /// [default: info].
    #[arg(long, env = "SESSIOND_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// Log line format: `text` or `json` [default: text].
    #[arg(long, env = "SESSIOND_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Named users, from the config file only (`[[user]]` tables).
    #[arg(skip)]
    #[serde(default, rename = "user")]
    pub users: Vec<RawUser>,
}
}

/// Tools the binary runs instead of the server.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Tool {
    /// Verify a snapshot file and print its counts by type (like redis-check-rdb); exits 0 if
    /// the file would load, 1 otherwise.
    CheckSnapshot {
        /// The snapshot file.
        file: PathBuf,
    },
    /// Read a password from standard input (one line) and print its SHA-256 digest, for the
    /// `password-sha256` of a `[[user]]` in the config file.
    HashPassword,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl setting::Value for LogFormat {
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".to_owned()),
        }
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
    /// Most simultaneous clients.
    pub maxclients: usize,
    /// Most bytes the keyspace may be accounted for; 0: no limit.
    pub maxmemory: u64,
    /// What a write does at `maxmemory`.
    pub maxmemory_policy: Policy,
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
    /// Period of the active expiry task.
    pub active_expire_interval: Duration,
    /// Default idle timeout of sessions.
    pub session_idle: Duration,
    /// Default absolute timeout of sessions.
    pub session_absolute: Duration,
    /// Most sessions per user (0: no cap).
    pub session_max_per_user: usize,
    /// Snapshots; `None` runs purely in memory. The library default is in memory; the binary's
    /// flags default to `./data/dump.sdb` every 60 s.
    pub persistence: Option<PersistConfig>,
    /// Whether writes are refused with MISCONF while the last snapshot failed.
    pub stop_writes_on_bgsave_error: bool,
    /// The tracing filter.
    pub log_level: String,
    /// The log line format.
    pub log_format: LogFormat,
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
            maxclients: 10_000,
            maxmemory: 0,
            maxmemory_policy: Policy::NoEviction,
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
            active_expire_interval: Duration::from_millis(100),
            session_idle: Duration::from_secs(30 * 60),
            session_absolute: Duration::from_secs(8 * 3600),
            session_max_per_user: 0,
            persistence: None,
            stop_writes_on_bgsave_error: true,
            log_level: "info".to_owned(),
            log_format: LogFormat::Text,
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
    /// Loads the config file named by `config` (if any) under the flags already given.
    pub fn with_file(self) -> Result<RawConfig, ConfigError> {
        let Some(path) = self.config.clone() else {
            return Ok(self);
        };
        let file = RawConfig::from_file(&path)?;
        Ok(self.or(file))
    }

    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut raw: RawConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: describe_toml_error(&text, &e),
        })?;
        raw.config = Some(path.to_owned());
        Ok(raw)
    }

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
        let requirepass = match (self.requirepass, &self.requirepass_file) {
            (Some(_), Some(_)) => {
                return Err(Invalid::new(
                    "requirepass-file",
                    "",
                    "give the password once: --requirepass (SESSIOND_PASSWORD) or \
                     --requirepass-file, not both",
                )
                .into())
            }
            (Some(password), None) => Some(password),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Some(text.trim_end_matches(['\r', '\n']).to_owned())
            }
            (None, None) => None,
        };
        if requirepass.as_ref().is_some_and(|p| p.is_empty()) {
            return Err(Invalid::new(
                "requirepass",
                "",
                "an empty password is no password; leave it unset instead",
            )
            .into());
        }
        let requirepass = requirepass.map(Secret::new);
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
            tls,
            requirepass,
            users,
            protected_mode,
            max_auth_failures: match self.max_auth_failures {
                None => defaults.max_auth_failures,
                Some(count) => range("max-auth-failures", count, 0, u64::from(u32::MAX))? as u32,
            },
            auth_timeout: self
                .auth_timeout
                .map_or(defaults.auth_timeout, never_if_zero),
            idle_timeout: self.timeout.map_or(defaults.idle_timeout, never_if_zero),
            output_limits,
            maxmemory: self
                .maxmemory
                .map_or(defaults.maxmemory, |Size(bytes)| bytes),
            maxmemory_policy: self.maxmemory_policy.unwrap_or(defaults.maxmemory_policy),
            maxclients: range("maxclients", maxclients, 1, 1 << 20)? as usize,
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
            persistence: match self.no_persistence {
                Some(true) => None,
                _ => Some(PersistConfig::from_settings(
                    self.data_dir,
                    self.dbfilename,
                    self.snapshot_interval.map(|Period(d)| d),
                    self.snapshot_journal_limit.map(|Size(bytes)| bytes),
                    self.debug_snapshot_shard_delay.map(|Period(d)| d),
                )?),
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

/// A duration where zero means "never".
fn never_if_zero(Period(duration): Period) -> Option<Duration> {
    Some(duration).filter(|d| !d.is_zero())
}

/// A config file's parse error told without the file's contents, which may hold a password:
/// toml's `Display` quotes the offending line, and serde's messages quote the value
/// (`invalid type: string "hunter2", expected ...`). What is left: the line and column, the key
/// and the table it is in, and the message with every quoted value taken out.
pub fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let mut place = String::new();
    let mut offending = None;
    if let Some(span) = error.span() {
        let start = floor_char_boundary(text, span.start);
        let before = &text[..start];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line_number = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        place = format!("line {line_number}, column {column}");
        let line = text[line_start..].lines().next().unwrap_or("");
        offending = Some(line);
        if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            let bare = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
            if !key.is_empty() && key.chars().all(bare) {
                place.push_str(&format!(", key {key}"));
            }
        }
        let table = before[..line_start]
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('[') && l.ends_with(']'))
            .filter(|l| {
                l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "[]-_.".contains(c))
            });
        if let Some(table) = table {
            place.push_str(&format!(" in {table}"));
        }
    }
    let mut message = redact_quoted(error.message().trim());
    // Whatever shape a message takes, the offending line's value never appears in it.
    let value = offending
        .and_then(|line| line.split_once('=').map(|(_, value)| value))
        .map(|value| value.trim().trim_matches(['"', '\'']).trim())
        .filter(|value| !value.is_empty());
    if value.is_some_and(|value| message.contains(value)) {
        message = "invalid value".to_owned();
    }
    let message = message.replace('\n', "; ");
    if place.is_empty() {
        message
    } else {
        format!("{place}: {message}")
    }
}

/// `message` with the values serde and toml quote replaced by `...`: every double-quoted run, and
/// the backquoted value of `invalid type: integer `5`, expected ...` (toml's own backquotes name
/// expected tokens and stay).
fn redact_quoted(message: &str) -> String {
    let (head, tail) = match message.split_once(", expected") {
        Some((head, tail)) if head.starts_with("invalid ") => (head, Some(tail)),
        _ => (message, None),
    };
    let mut out = String::with_capacity(message.len());
    let mut quote = None;
    for c in head.chars() {
        match quote {
            Some(open) if c == open => {
                out.push_str("...");
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '"' || (c == '`' && tail.is_some()) {
                    quote = Some(c);
                }
            }
        }
    }
    if quote.is_some() {
        out.push_str("...");
    }
    if let Some(tail) = tail {
        out.push_str(", expected");
        out.push_str(&redact_double_quoted(tail));
    }
    out
}

/// `text` with every double-quoted run replaced by `"..."`.
fn redact_double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for c in text.chars() {
        if c == '"' {
            if inside {
                out.push_str("...");
            }
            inside = !inside;
            out.push(c);
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// The largest char boundary of `text` at or below `index`.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn config_file_errors_name_the_place_never_the_value() {
        let path = std::env::temp_dir().join(format!("sessiond-secret-{}", std::process::id()));
        let cases = [
            // A malformed line: toml's Display would quote it.
            ("port = 0\nrequirepass = hunter2 oops\n", 2, "requirepass"),
            // Unterminated.
            ("requirepass = \"hunter2\n", 1, "requirepass"),
            // A type error: serde would quote the value.
            ("port = \"hunter2\"\n", 1, "port"),
            ("no-persistence = \"hunter2\"\n", 1, "no-persistence"),
            (
                "[[user]]\nname = \"app\"\npassword-sha256 = 12345hunter2\n",
                3,
                "password-sha256",
            ),
            (
                "[[user]]\nname = \"app\"\npassword-sha256 = 1234\n",
                3,
                "password-sha256",
            ),
            ("requirepass = [\"hunter2\"]\n", 1, "requirepass"),
        ];
        for (text, line, key) in cases {
            std::fs::write(&path, text).unwrap();
            let message = RawConfig::from_file(&path).unwrap_err().to_string();
            assert!(
                !message.contains("hunter2") && !message.contains("1234"),
                "{text:?}: {message}"
            );
            assert!(
                message.contains(&format!("line {line}")),
                "{text:?}: {message}"
            );
            assert!(message.contains(key), "{text:?}: {message}");
        }
        std::fs::remove_file(path).unwrap();
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
    fn flags_win_over_the_file() {
        let flags = RawConfig {
            port: Some(7000),
            ..Default::default()
        };
        let file = RawConfig {
            port: Some(8000),
            bind: Some(Address(IpAddr::from([0, 0, 0, 0]))),
            requirepass: Some("pw".into()),
            ..Default::default()
        };
        let config = flags.or(file).validate().unwrap();
        assert_eq!(config.port, 7000);
        assert_eq!(config.bind.to_string(), "0.0.0.0");
        // A list is set when it is not empty: the file's users, unless the flags had some.
        let file = RawConfig {
            users: vec![RawUser::default()],
            ..Default::default()
        };
        assert_eq!(RawConfig::default().or(file.clone()).users.len(), 1);
        let two = RawConfig {
            users: vec![RawUser::default(), RawUser::default()],
            ..Default::default()
        };
        assert_eq!(two.or(file).users.len(), 2);
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
    fn the_password_can_come_from_a_file_but_only_once() {
        let path = std::env::temp_dir().join(format!("sessiond-pass-{}", std::process::id()));
        std::fs::write(&path, "from-file\n").unwrap();
        let raw = RawConfig {
            requirepass_file: Some(path.clone()),
            ..Default::default()
        };
        let config = raw.clone().validate().unwrap();
        assert_eq!(
            config.requirepass.as_ref().map(Secret::expose),
            Some("from-file")
        );
        assert!(
            !format!("{config:?}").contains("from-file"),
            "the password is redacted"
        );
        let both = RawConfig {
            requirepass: Some("flag".into()),
            ..raw
        };
        assert!(both
            .validate()
            .unwrap_err()
            .to_string()
            .contains("requirepass-file"));
        std::fs::remove_file(path).unwrap();
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
