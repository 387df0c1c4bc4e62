//! The first layer of the configuration: [`RawConfig`], the settings as given on the command
//! line, in `SESSIOND_*` variables (clap reads both, a flag winning over its variable) and in
//! the TOML file, each value already typed ([`crate::setting`]) but every one optional, so that
//! the layers merge; and the reading of the file, whose errors never quote its contents.

use std::path::{Path, PathBuf};

use std::time::Duration;

use clap::{Arg, Parser};
use serde::Deserialize;
use sessiond_protocol::units::{format_duration, format_size};

use super::{Config, ConfigError, LogFormat};
use crate::auth::RawUser;
use crate::notify::{self, EventFlags};
use crate::output_limit::{ClassLimit, OutputLimits};
use crate::persist::aof::Fsync;
use crate::persist::PersistConfig;
use crate::setting::{self, Address, Millis, Period, PositivePeriod, Size, Value, YesNo};
use crate::store::evict::Policy;
use crate::tls::ClientAuth;

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
/// the config file can be layered; the defaults live in [`Config::default`](super::Config).
#[derive(Debug, Default, Clone, Parser, Deserialize)]
#[command(
    name = "sessiond",
    version,
    about = "A session-store server that speaks RESP",
    mut_args = with_default
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

    /// Address to listen on.
    #[arg(long, env = "SESSIOND_BIND")]
    pub bind: Option<Address>,

    /// TCP port; 0 picks a free one.
    #[arg(long, env = "SESSIOND_PORT")]
    pub port: Option<u16>,

    /// TCP port of a second listener that speaks only TLS; 0 picks a free one [default: none].
    /// Needs --tls-cert-file and --tls-key-file.
    #[arg(long, env = "SESSIOND_TLS_PORT")]
    pub tls_port: Option<u16>,

    /// TCP port of the Prometheus endpoint (`GET /metrics`, `/healthz`, `/readyz`), plain
    /// HTTP; 0 picks a free one [default: none: no endpoint].
    #[arg(long, env = "SESSIOND_METRICS_PORT")]
    pub metrics_port: Option<u16>,

    /// Address of the Prometheus endpoint (--metrics-port); it has no password, so it stays
    /// on loopback unless this says otherwise.
    #[arg(long, env = "SESSIOND_METRICS_BIND")]
    pub metrics_bind: Option<Address>,

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

    /// Refuse to start on a non-loopback address without a password: `yes` or `no`.
    #[arg(long, env = "SESSIOND_PROTECTED_MODE")]
    pub protected_mode: Option<YesNo>,

    /// Disconnect a client after this many failed AUTH / HELLO AUTH attempts on its connection
    /// (0: never).
    #[arg(long, env = "SESSIOND_MAX_AUTH_FAILURES")]
    pub max_auth_failures: Option<u64>,

    /// Close a connection that has not authenticated this long after it was accepted, when a
    /// password is required (a duration; 0: never).
    #[arg(long, env = "SESSIOND_AUTH_TIMEOUT")]
    pub auth_timeout: Option<Period>,

    /// Close a client idle this long (a duration; 0: never).
    #[arg(long, env = "SESSIOND_TIMEOUT")]
    pub timeout: Option<Period>,

    /// Most reply data held for a client, as Redis's `<class> <hard> <soft> <soft-seconds>`,
    /// repeated for the classes normal, replica and pubsub (or one size: the normal class's
    /// hard limit). Past the hard limit, or above the soft one for soft-seconds, the client is
    /// closed.
    #[arg(long, env = "SESSIOND_CLIENT_OUTPUT_BUFFER_LIMIT")]
    pub client_output_buffer_limit: Option<OutputLimits>,

    /// Most memory the keyspace may use (`used_memory`), with units; 0: no limit.
    #[arg(long, env = "SESSIOND_MAXMEMORY")]
    pub maxmemory: Option<Size>,

    /// What a write does at --maxmemory: noeviction (refuse it with OOM), volatile-ttl,
    /// volatile-lru or allkeys-lru (evict keys).
    #[arg(long, env = "SESSIOND_MAXMEMORY_POLICY")]
    pub maxmemory_policy: Option<Policy>,

    /// Keyspace and session events to publish, as Redis's letters (`KEA`, `Ex`) plus `S` for
    /// session events; empty: none. `CONFIG SET notify-keyspace-events` changes it.
    #[arg(long, env = "SESSIOND_NOTIFY_KEYSPACE_EVENTS")]
    pub notify_keyspace_events: Option<EventFlags>,

    /// Most simultaneous clients; more are refused with an error.
    #[arg(long, env = "SESSIOND_MAXCLIENTS")]
    pub maxclients: Option<u64>,

    /// Number of databases (SELECT 0 to N-1), each a keyspace of its own.
    #[arg(long, env = "SESSIOND_DATABASES")]
    pub databases: Option<u64>,

    /// Largest bulk string accepted, with units (`16mb`, `512kb`).
    #[arg(long, env = "SESSIOND_PROTO_MAX_BULK_LEN")]
    pub proto_max_bulk_len: Option<Size>,

    /// Most input buffered for one client.
    #[arg(long, env = "SESSIOND_CLIENT_QUERY_BUFFER_LIMIT")]
    pub client_query_buffer_limit: Option<Size>,

    /// Most arguments in one command.
    #[arg(long, env = "SESSIOND_MAX_COMMAND_ARGS")]
    pub max_command_args: Option<u64>,

    /// Longest inline command line.
    #[arg(long, env = "SESSIOND_MAX_INLINE_LEN")]
    pub max_inline_len: Option<Size>,

    /// Longest glob pattern of KEYS, SCAN MATCH, CONFIG GET and users' key patterns; a match
    /// costs up to key length × pattern length.
    #[arg(long, env = "SESSIOND_MAX_PATTERN_LEN")]
    pub max_pattern_len: Option<Size>,

    /// Most keys one SCAN call examines, whatever its COUNT.
    #[arg(long, env = "SESSIOND_SCAN_MAX_COUNT")]
    pub scan_max_count: Option<u64>,

    /// Threads that run connections and commands; 0: one per CPU core but one, at least one.
    #[arg(long, env = "SESSIOND_THREADS")]
    pub threads: Option<u64>,

    /// With one thread and more than one core: how long, in microseconds, the thread keeps
    /// polling for requests after the last before it sleeps (CPU for lower latency under load);
    /// 0: never.
    #[arg(long, env = "SESSIOND_IDLE_POLL_US")]
    pub idle_poll_us: Option<u64>,

    /// Turn off transparent huge pages for the process (Linux; as Redis's `disable-thp`): `yes`
    /// or `no`.
    #[arg(long, env = "SESSIOND_DISABLE_THP")]
    pub disable_thp: Option<YesNo>,

    /// How long in-flight work may take to finish after SIGTERM/SIGINT/SHUTDOWN.
    #[arg(long, env = "SESSIOND_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<Period>,

    /// How long a script runs before commands needing the keys it holds are answered BUSY and
    /// SCRIPT KILL may stop it (a bare number counts milliseconds, as in redis.conf; 0: never
    /// BUSY, they wait). `--lua-time-limit` is its old name.
    #[arg(long, env = "SESSIOND_BUSY_REPLY_THRESHOLD", alias = "lua-time-limit")]
    #[serde(alias = "lua-time-limit")]
    pub busy_reply_threshold: Option<Millis>,

    /// How often the active expiry task reclaims expired keys.
    #[arg(long, env = "SESSIOND_ACTIVE_EXPIRE_INTERVAL")]
    pub active_expire_interval: Option<PositivePeriod>,

    /// Default idle timeout of a session: it ends this long after its last use.
    #[arg(long, env = "SESSIOND_SESSION_IDLE")]
    pub session_idle: Option<PositivePeriod>,

    /// Default absolute timeout of a session: it ends this long after creation.
    #[arg(long, env = "SESSIOND_SESSION_ABSOLUTE")]
    pub session_absolute: Option<PositivePeriod>,

    /// Most sessions per user; creating one more destroys that user's oldest (0: no cap).
    #[arg(long, env = "SESSIOND_SESSION_MAX_PER_USER")]
    pub session_max_per_user: Option<u64>,

    /// Most bytes of one session (its field names and values, and 64 bytes for each field): a
    /// SESSION.CREATE or SESSION.SET that would grow one past it is refused (0: no limit).
    #[arg(long, env = "SESSIOND_SESSION_MAX_BYTES")]
    pub session_max_bytes: Option<Size>,

    /// Commands that run at least this many microseconds are kept in the slow log (SLOWLOG);
    /// 0: every command; -1: none.
    #[arg(long, env = "SESSIOND_SLOWLOG_LOG_SLOWER_THAN", allow_negative_numbers = true)]
    pub slowlog_log_slower_than: Option<i64>,

    /// Entries the slow log keeps (the oldest dropped first).
    #[arg(long, env = "SESSIOND_SLOWLOG_MAX_LEN")]
    pub slowlog_max_len: Option<u64>,

    /// Commands that run at least this many milliseconds are recorded as latency spikes
    /// (LATENCY); 0: off.
    #[arg(long, env = "SESSIOND_LATENCY_MONITOR_THRESHOLD")]
    pub latency_monitor_threshold: Option<u64>,

    /// Directory of the snapshot file.
    #[arg(long, env = "SESSIOND_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Snapshot file name inside the data directory.
    #[arg(long, env = "SESSIOND_DBFILENAME")]
    pub dbfilename: Option<String>,

    /// Save a snapshot this often when something changed; 0 disables periodic snapshots.
    #[arg(long, env = "SESSIOND_SNAPSHOT_INTERVAL")]
    pub snapshot_interval: Option<Period>,

    /// The most memory the journal of changes made during a snapshot may take (one record per
    /// key written meanwhile, outside maxmemory); past it the snapshot is abandoned and retried
    /// 5 s later; 0: no bound.
    #[arg(long, env = "SESSIOND_SNAPSHOT_JOURNAL_LIMIT")]
    pub snapshot_journal_limit: Option<Size>,

    /// Refuse writes with MISCONF while the last snapshot failed (as Redis's
    /// `stop-writes-on-bgsave-error`): `yes` or `no`.
    #[arg(long, env = "SESSIOND_STOP_WRITES_ON_BGSAVE_ERROR")]
    pub stop_writes_on_bgsave_error: Option<YesNo>,

    /// Run purely in memory: no snapshot or append-only log is loaded or written.
    #[arg(long, env = "SESSIOND_NO_PERSISTENCE", num_args = 0..=1, default_missing_value = "true")]
    pub no_persistence: Option<bool>,

    /// Keep the append-only log: every change appended to a file in the data directory and
    /// replayed at start: `yes` or `no`.
    #[arg(long, env = "SESSIOND_APPENDONLY")]
    pub appendonly: Option<YesNo>,

    /// When the append-only log is fsynced: `always` (a write's reply waits for it), `everysec`
    /// or `no` (the kernel decides).
    #[arg(long, env = "SESSIOND_APPENDFSYNC")]
    pub appendfsync: Option<Fsync>,

    /// The name the append-only log's files start with.
    #[arg(long, env = "SESSIOND_APPENDFILENAME")]
    pub appendfilename: Option<String>,

    /// The append-only log's directory, inside the data directory.
    #[arg(long, env = "SESSIOND_APPENDDIRNAME")]
    pub appenddirname: Option<String>,

    /// Rewrite the append-only log once it grew by this percentage over its size after the
    /// last rewrite; 0: never automatically.
    #[arg(long, env = "SESSIOND_AUTO_AOF_REWRITE_PERCENTAGE")]
    pub auto_aof_rewrite_percentage: Option<u64>,

    /// ...and only once it is at least this big.
    #[arg(long, env = "SESSIOND_AUTO_AOF_REWRITE_MIN_SIZE")]
    pub auto_aof_rewrite_min_size: Option<Size>,

    /// At start, drop a torn last frame of the append-only log (a crash mid-write) with a
    /// warning, rather than refuse to start: `yes` or `no`.
    #[arg(long, env = "SESSIOND_AOF_LOAD_TRUNCATED")]
    pub aof_load_truncated: Option<YesNo>,

    /// Test only: pause this long after each shard while writing a snapshot.
    #[arg(long, env = "SESSIOND_DEBUG_SNAPSHOT_SHARD_DELAY", hide = true)]
    pub debug_snapshot_shard_delay: Option<Period>,

    /// Test only: pause this long after each shard while writing a base of the append-only
    /// log.
    #[arg(long, env = "SESSIOND_DEBUG_AOF_BASE_SHARD_DELAY", hide = true)]
    pub debug_aof_base_shard_delay: Option<Period>,

    /// Replicate the primary at `<host> <port>` from the start (as REPLICAOF; CONFIG REWRITE
    /// writes the current primary back here).
    #[arg(long, env = "SESSIOND_REPLICAOF", alias = "slaveof")]
    #[serde(alias = "slaveof")]
    pub replicaof: Option<String>,

    /// The password a replica authenticates to its primary with (AUTH). Prefer
    /// SESSIOND_MASTERAUTH: a flag shows in `ps`.
    #[arg(long, env = "SESSIOND_MASTERAUTH")]
    pub masterauth: Option<String>,

    /// The user a replica authenticates to its primary as (AUTH user password).
    #[arg(long, env = "SESSIOND_MASTERUSER")]
    pub masteruser: Option<String>,

    /// Refuse writes from clients on a replica with READONLY: `yes` or `no` (a writable
    /// replica's writes stay local).
    #[arg(long, env = "SESSIOND_REPLICA_READ_ONLY", alias = "slave-read-only")]
    #[serde(alias = "slave-read-only")]
    pub replica_read_only: Option<YesNo>,

    /// The address a replica tells its primary it is at (`REPLCONF ip-address`), where
    /// Sentinel then finds it: behind NAT or in a container, the one others reach it at.
    #[arg(long, env = "SESSIOND_REPLICA_ANNOUNCE_IP", alias = "slave-announce-ip")]
    #[serde(alias = "slave-announce-ip")]
    pub replica_announce_ip: Option<String>,

    /// The port a replica tells its primary it serves clients on (0: the one it serves on).
    #[arg(long, env = "SESSIOND_REPLICA_ANNOUNCE_PORT", alias = "slave-announce-port")]
    #[serde(alias = "slave-announce-port")]
    pub replica_announce_port: Option<u64>,

    /// Sentinel promotes the replica with the lowest priority first; 0: never.
    #[arg(long, env = "SESSIOND_REPLICA_PRIORITY", alias = "slave-priority")]
    #[serde(alias = "slave-priority")]
    pub replica_priority: Option<u64>,

    /// The replication backlog: the last bytes of the change stream kept for replicas that
    /// reconnect (a partial resync), and for a full sync's duration.
    #[arg(long, env = "SESSIOND_REPL_BACKLOG_SIZE")]
    pub repl_backlog_size: Option<Size>,

    /// A replication link silent this long is dropped (and a replica reconnects).
    #[arg(long, env = "SESSIOND_REPL_TIMEOUT")]
    pub repl_timeout: Option<PositivePeriod>,

    /// How often a primary asks each replica to acknowledge, which also tells it the primary
    /// is alive, when no WAIT asks sooner.
    #[arg(
        long,
        env = "SESSIOND_REPL_PING_REPLICA_PERIOD",
        alias = "repl-ping-slave-period"
    )]
    #[serde(alias = "repl-ping-slave-period")]
    pub repl_ping_replica_period: Option<PositivePeriod>,

    /// Run a replica's link to its primary over TLS (the primary's port must be its TLS
    /// port): `yes` or `no`. The replica presents tls-cert-file and trusts tls-ca-cert-file.
    #[arg(long, env = "SESSIOND_TLS_REPLICATION")]
    pub tls_replication: Option<YesNo>,

    /// Log level or tracing filter (`info`, `debug`, `sessiond=trace`); RUST_LOG also works.
    #[arg(long, env = "SESSIOND_LOG_LEVEL")]
    pub log_level: Option<String>,

    /// Log line format: `text` or `json`.
    #[arg(long, env = "SESSIOND_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Named users, from the config file only (`[[user]]` tables).
    #[arg(skip)]
    #[serde(default, rename = "user")]
    pub users: Vec<RawUser>,
}
}

/// `arg` with `[default: ...]` after its help, from [`Config::default`](super::Config) and
/// [`PersistConfig::default`], so that `--help` cannot disagree with the code.
fn with_default(arg: Arg) -> Arg {
    let Some(default) = arg.get_long().and_then(default_text) else {
        return arg;
    };
    let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
    arg.help(format!("{help} [default: {default}]"))
}

/// The default of the setting `--<long>`, written as the flag takes it; `None` for settings
/// whose default is a rule rather than a value (`--tls-auth-clients`) or that have none.
fn default_text(long: &str) -> Option<String> {
    let config = Config::default();
    let persist = PersistConfig::default();
    let yes_no = |yes: bool| if yes { "yes" } else { "no" }.to_owned();
    let never_if_zero = |duration: Option<Duration>| format_duration(duration.unwrap_or_default());
    let class = |name: &str, limit: ClassLimit| {
        let (hard, soft) = (limit.hard_bytes as u64, limit.soft_bytes as u64);
        format!(
            "{name} {} {} {}",
            format_size(hard),
            format_size(soft),
            limit.soft_seconds
        )
    };
    let limits = config.output_limits;
    Some(match long {
        "bind" => config.bind.to_string(),
        "port" => config.port.to_string(),
        "metrics-bind" => config.metrics_bind.to_string(),
        "protected-mode" => yes_no(config.protected_mode),
        "max-auth-failures" => config.max_auth_failures.to_string(),
        "auth-timeout" => never_if_zero(config.auth_timeout),
        "timeout" => never_if_zero(config.idle_timeout),
        "client-output-buffer-limit" => [
            class("normal", limits.normal),
            class("replica", limits.replica),
            class("pubsub", limits.pubsub),
        ]
        .join(" "),
        "maxmemory" => format_size(config.maxmemory),
        "maxmemory-policy" => config.maxmemory_policy.name().to_owned(),
        "maxclients" => config.maxclients.to_string(),
        "databases" => config.databases.to_string(),
        "proto-max-bulk-len" => format_size(config.limits.max_bulk_len as u64),
        "client-query-buffer-limit" => format_size(config.limits.max_query_buffer as u64),
        "max-command-args" => config.limits.max_args.to_string(),
        "max-inline-len" => format_size(config.limits.max_inline_len as u64),
        "max-pattern-len" => format_size(config.max_pattern_len as u64),
        "scan-max-count" => config.scan_max_count.to_string(),
        "threads" => config.threads.to_string(),
        "idle-poll-us" => config.idle_poll.as_micros().to_string(),
        "disable-thp" => yes_no(config.disable_thp),
        "shutdown-timeout" => format_duration(config.shutdown_timeout),
        "busy-reply-threshold" => format_duration(config.busy_reply_threshold),
        "active-expire-interval" => format_duration(config.active_expire_interval),
        "session-idle" => format_duration(config.session_idle),
        "session-absolute" => format_duration(config.session_absolute),
        "session-max-per-user" => config.session_max_per_user.to_string(),
        "session-max-bytes" => format_size(config.session_max_bytes),
        "slowlog-log-slower-than" => config.slowlog_log_slower_than_us.to_string(),
        "slowlog-max-len" => config.slowlog_max_len.to_string(),
        "latency-monitor-threshold" => config.latency_monitor_threshold_ms.to_string(),
        "data-dir" => persist.dir.display().to_string(),
        "dbfilename" => persist.file_name,
        "snapshot-interval" => never_if_zero(persist.interval),
        "snapshot-journal-limit" => format_size(persist.journal_max_bytes),
        "stop-writes-on-bgsave-error" => yes_no(config.stop_writes_on_bgsave_error),
        "replica-read-only" => yes_no(config.replication.read_only),
        "replica-priority" => config.replication.priority.to_string(),
        "replica-announce-port" => config.replication.announce_port.to_string(),
        "repl-timeout" => format_duration(config.replication.timeout),
        "repl-ping-replica-period" => format_duration(config.replication.ping_period),
        "repl-backlog-size" => format_size(config.replication.backlog_bytes),
        "tls-replication" => yes_no(config.replication.tls.is_some()),
        "appendonly" => yes_no(persist.aof.enabled),
        "appendfsync" => persist.aof.fsync.name().to_owned(),
        "appendfilename" => persist.aof.file_name.clone(),
        "appenddirname" => persist.aof.dir_name.clone(),
        "auto-aof-rewrite-percentage" => persist.aof.rewrite_percentage.to_string(),
        "auto-aof-rewrite-min-size" => format_size(persist.aof.rewrite_min_size),
        "aof-load-truncated" => yes_no(persist.aof.load_truncated),
        "log-level" => config.log_level,
        "log-format" => config.log_format.name().to_owned(),
        _ => return None,
    })
}

// The words of settings whose types live in their domains, read like the rest.

impl Value for Policy {
    fn parse(text: &str) -> Result<Self, String> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name() == text)
            .ok_or_else(|| "expected noeviction, volatile-ttl, volatile-lru or allkeys-lru".into())
    }
}

impl Value for ClientAuth {
    fn parse(text: &str) -> Result<Self, String> {
        [ClientAuth::Required, ClientAuth::Optional, ClientAuth::No]
            .into_iter()
            .find(|auth| auth.as_str() == text)
            .ok_or_else(|| "expected yes, optional or no".to_owned())
    }
}

/// Redis's `<class> <hard> <soft> <soft-seconds>` triples, or one size; the classes not named
/// keep their defaults.
impl Value for OutputLimits {
    fn parse(text: &str) -> Result<Self, String> {
        OutputLimits::default().parse(text)
    }
}

setting::read_as_setting!(Policy, ClientAuth, OutputLimits, EventFlags, Fsync);

impl Value for Fsync {
    fn parse(text: &str) -> Result<Self, String> {
        Fsync::parse(text).ok_or_else(|| "expected always, everysec or no".to_owned())
    }
}

impl Value for EventFlags {
    fn parse(text: &str) -> Result<Self, String> {
        EventFlags::parse(text.as_bytes()).ok_or_else(|| notify::INVALID_CLASS.to_owned())
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
    /// Verify the append-only log (like redis-check-aof): its manifest (and every file it
    /// names), a base or an incremental log; exits 0 if it would load, 1 otherwise.
    CheckAof {
        /// The manifest, base or incremental log.
        file: PathBuf,
        /// Truncate an incremental log at its first bad frame (a torn tail, or damage: what
        /// follows it is lost).
        #[arg(long)]
        fix: bool,
    },
    /// Read a password from standard input (one line) and print its SHA-256 digest, for the
    /// `password-sha256` of a `[[user]]` in the config file.
    HashPassword,
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
    use std::net::IpAddr;

    use super::*;

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
    fn notify_keyspace_events_is_read_from_flags_and_files() {
        let raw = RawConfig::try_parse_from(["sessiond", "--notify-keyspace-events", "KEA"]);
        let config = raw.unwrap().validate().unwrap();
        assert_eq!(config.notify_keyspace_events.to_string(), "AKE");
        let error = RawConfig::try_parse_from(["sessiond", "--notify-keyspace-events", "Kw"])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("invalid notify-keyspace-events \"Kw\": Invalid event class"),
            "{error}"
        );
        let file: RawConfig = toml::from_str(r#"notify-keyspace-events = "Sx""#).unwrap();
        assert_eq!(
            file.validate().unwrap().notify_keyspace_events.to_string(),
            "xS"
        );
    }

    #[test]
    fn slowlog_and_latency_settings_are_read_from_flags_and_files() {
        let raw = RawConfig::try_parse_from([
            "sessiond",
            "--slowlog-log-slower-than",
            "-1",
            "--slowlog-max-len",
            "5",
            "--latency-monitor-threshold",
            "100",
        ]);
        let config = raw.unwrap().validate().unwrap();
        assert_eq!(config.slowlog_log_slower_than_us, -1);
        assert_eq!(config.slowlog_max_len, 5);
        assert_eq!(config.latency_monitor_threshold_ms, 100);
        let defaults = RawConfig::try_parse_from(["sessiond"]).unwrap().validate();
        let defaults = defaults.unwrap();
        assert_eq!(
            (
                defaults.slowlog_log_slower_than_us,
                defaults.slowlog_max_len,
                defaults.latency_monitor_threshold_ms
            ),
            (10_000, 128, 0)
        );
        let file: RawConfig = toml::from_str("slowlog-log-slower-than = 0").unwrap();
        assert_eq!(file.validate().unwrap().slowlog_log_slower_than_us, 0);
        let bad: RawConfig = toml::from_str("slowlog-log-slower-than = -2").unwrap();
        let error = bad.validate().unwrap_err().to_string();
        assert!(error.contains("slowlog-log-slower-than"), "{error}");
    }

    #[test]
    fn replica_pings_must_come_more_often_than_the_replication_timeout() {
        let file: RawConfig =
            toml::from_str("repl-ping-replica-period = \"10s\"\nrepl-timeout = \"20s\"").unwrap();
        let config = file.validate().unwrap();
        assert_eq!(config.replication.ping_period, Duration::from_secs(10));
        let bad: RawConfig = toml::from_str("repl-ping-replica-period = \"60s\"").unwrap();
        let error = bad.validate().unwrap_err().to_string();
        assert!(
            error.contains("repl-ping-replica-period") && error.contains("repl-timeout"),
            "{error}"
        );
    }

    #[test]
    fn the_words_of_domain_settings_parse() {
        assert_eq!(Policy::parse("volatile-lru"), Ok(Policy::VolatileLru));
        assert_eq!(ClientAuth::parse("optional"), Ok(ClientAuth::Optional));
        assert!(Policy::parse("allkeys-random").is_err());
        let limits = <OutputLimits as Value>::parse("pubsub 1mb 0 0").unwrap();
        assert_eq!(limits.pubsub.hard_bytes, 1 << 20);
        assert_eq!(limits.normal, OutputLimits::default().normal);
    }

    #[test]
    fn help_shows_each_default_as_the_flag_takes_it() {
        use clap::CommandFactory;
        let no_single_default = [
            "config",
            "tls-port",
            "metrics-port",
            "tls-cert-file",
            "tls-key-file",
            "tls-ca-cert-file",
            "tls-auth-clients",
            "requirepass",
            "requirepass-file",
            "no-persistence",
            "debug-snapshot-shard-delay",
            "debug-aof-base-shard-delay",
            "notify-keyspace-events",
            "replicaof",
            "masterauth",
            "masteruser",
            "replica-announce-ip",
        ];
        let mut args = vec!["sessiond".to_owned()];
        for arg in RawConfig::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            match default_text(long) {
                Some(text) => args.extend([format!("--{long}"), text]),
                None => assert!(
                    no_single_default.contains(&long),
                    "--{long} shows no default"
                ),
            }
        }
        // Given explicitly, every default shown makes the configuration no flags make.
        let shown = RawConfig::try_parse_from(&args)
            .unwrap()
            .validate()
            .unwrap();
        let implied = RawConfig::default().validate().unwrap();
        assert_eq!(format!("{shown:?}"), format!("{implied:?}"), "{args:?}");
        let help = RawConfig::command().render_long_help().to_string();
        for shown in [
            "[default: 16mb]",
            "[default: 60s]",
            "[default: ./data]",
            "[default: 8h]",
        ] {
            assert!(help.contains(shown), "{shown} in {help}");
        }
    }

    /// deploy/sessiond.toml, the example the service runs from, names every setting (set, or
    /// commented out where there is no single default), states the defaults the code has, and
    /// is a valid configuration.
    #[test]
    fn the_example_config_file_names_every_setting_with_its_default() {
        use clap::CommandFactory;
        let example = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/sessiond.toml"
        ));
        let named = |key: &str| {
            example.lines().any(|line| {
                let line = line.strip_prefix("# ").unwrap_or(line);
                line.starts_with(&format!("{key} = "))
            })
        };
        for arg in RawConfig::command().get_arguments() {
            let Some(long) = arg.get_long().filter(|_| !arg.is_hide_set()) else {
                continue;
            };
            if long != "config" {
                assert!(named(long), "{long} missing from deploy/sessiond.toml");
            }
        }
        assert!(example.contains("# [[user]]\n"));
        for key in [
            "name",
            "password-sha256",
            "keys",
            "categories",
            "session-prefix",
            "channels",
        ] {
            assert!(
                named(key),
                "[[user]] {key} missing from deploy/sessiond.toml"
            );
        }
        let mut raw: RawConfig = toml::from_str(example).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            raw.data_dir.as_deref(),
            Some(Path::new("/var/lib/sessiond"))
        );
        // The data directory is the service's; every other value is the default.
        raw.data_dir = None;
        let example = raw.validate().unwrap_or_else(|e| panic!("{e}"));
        let defaults = RawConfig::default().validate().unwrap();
        assert_eq!(format!("{example:?}"), format!("{defaults:?}"));
    }

    /// README's Configuration table restates the defaults for readers: it must say what the
    /// code does, and list every flag `--help` shows.
    #[test]
    fn the_readme_table_states_the_defaults_the_code_has() {
        use clap::CommandFactory;
        let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));
        let mut listed = Vec::new();
        for row in readme.lines().filter(|l| l.starts_with("| `--")) {
            let cells: Vec<&str> = row.split(" | ").collect();
            let flag = cells[0].trim_start_matches("| `--");
            let long = flag.split([' ', '`']).next().unwrap();
            let stated = cells[1];
            match default_text(long) {
                Some(text) => assert_eq!(stated, format!("`{text}`"), "--{long} in README"),
                None => assert!(
                    !stated.starts_with('`') || long == "tls-auth-clients",
                    "--{long}: README states {stated}, the code has no single default"
                ),
            }
            listed.push(long.to_owned());
        }
        for arg in RawConfig::command().get_arguments() {
            if let Some(long) = arg.get_long().filter(|_| !arg.is_hide_set()) {
                assert!(
                    listed.iter().any(|l| l == long),
                    "--{long} missing from README"
                );
            }
        }
    }
}
