//! The command line of `sessiond-bench`: raw flags ([`Args`], parsed by clap) and the validated
//! run description ([`Config`]) the load generator uses.
//!
//! Flag names follow redis-benchmark where one exists (`-c`, `-P`, `-n`, `-r`, `-d`, `-a`), so
//! a command line moves from one tool to the other with few changes.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use rand::Rng;
use sessiond_protocol::units::parse_duration;

/// The flags of `sessiond-bench`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "sessiond-bench",
    version,
    about = "Load generator for sessiond (and, for the key/value workloads, any Redis server)",
    after_help = "Examples:\n  \
        sessiond-bench get -c 50 -P 16 --duration 10s\n  \
        sessiond-bench session-browse --rate 20000 --duration 30s --warmup 5s\n  \
        sessiond-bench publish --subscribers 100 -c 50 --duration 10s\n  \
        sessiond-bench set --port 6379 -n 200000 --json"
)]
pub struct Args {
    /// What to send.
    #[arg(value_enum, default_value_t = WorkloadKind::Set)]
    pub workload: WorkloadKind,

    /// Server host name or address.
    #[arg(long, short = 'H', default_value = "127.0.0.1")]
    pub host: String,

    /// Server port.
    #[arg(long, short = 'p', default_value_t = 6380)]
    pub port: u16,

    /// Password sent with AUTH on every connection.
    #[arg(
        long,
        short = 'a',
        env = "SESSIOND_BENCH_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,

    /// Connections, each with its own requests in flight.
    #[arg(long, short = 'c', default_value_t = 50)]
    pub clients: usize,

    /// Requests in flight per connection. Closed loop: sent as one batch, and the next batch
    /// goes when every reply is in (as redis-benchmark -P does). With --rate: the most that may
    /// be outstanding.
    #[arg(long, short = 'P', default_value_t = 1)]
    pub pipeline: usize,

    /// How long to measure (500ms, 10s, 2m; a bare number is seconds). Default 10s unless
    /// --requests is given.
    #[arg(long, value_parser = parse_duration_arg, conflicts_with = "requests")]
    pub duration: Option<Duration>,

    /// How many requests to measure, across all connections.
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,

    /// Load sent before measuring starts, not counted (0 for none).
    #[arg(long, value_parser = parse_duration_arg, default_value = "0s")]
    pub warmup: Duration,

    /// Keys for set/get/mixed/evalsha (uniformly chosen from key:000000000000 on) and multi
    /// (scs:session:000000000000 on); users for session-login; sessions created up front for
    /// session-browse.
    #[arg(long, short = 'r', default_value_t = 100_000)]
    pub keyspace: u64,

    /// Bytes per value: fixed (160) or a uniform range (100-400).
    #[arg(long, short = 'd', default_value = "160")]
    pub value_size: ValueSize,

    /// Time to live of written keys (SET ... EX/PX, multi's PEXPIREAT, 24h by default there)
    /// and idle timeout of created sessions (SESSION.CREATE ... IDLE); none by default
    /// (sessions get the server's default).
    #[arg(long, value_parser = parse_duration_arg)]
    pub ttl: Option<Duration>,

    /// Open loop: send this many requests per second in total, on a fixed schedule, and
    /// measure latency from each request's intended send time (no coordinated omission).
    #[arg(long)]
    pub rate: Option<f64>,

    /// mixed: SET:GET ratio.
    #[arg(long, default_value = "1:10")]
    pub ratio: Ratio,

    /// session-browse: weights of SESSION.GET, SET, CREATE and DESTROY.
    #[arg(long, default_value = "get=80,set=15,create=4,destroy=1")]
    pub browse_mix: BrowseMix,

    /// session-logout-everywhere: sessions each user logs in before logging out everywhere.
    #[arg(long, default_value_t = 3)]
    pub devices: usize,

    /// publish: connections that SUBSCRIBE to the channel the clients PUBLISH to, and count
    /// the messages they receive (0 for none).
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,

    /// Do not write the keyspace before a get or mixed run (GETs then mostly miss).
    #[arg(long)]
    pub no_prefill: bool,

    /// Runtime worker threads of the load generator. One is redis-benchmark's default, and
    /// leaves the other cores to the server on a small machine.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// Seed of the random choices (keys, values, operations); random by default.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// No live progress line.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadKind {
    /// SET key value [EX ttl].
    Set,
    /// GET key, on a prefilled keyspace.
    Get,
    /// SET and GET in the --ratio proportion, on a prefilled keyspace.
    Mixed,
    /// SESSION.CREATE USER user DATA data value: logins.
    SessionLogin,
    /// SESSION.GET/SET/CREATE/DESTROY on the client's sessions, in the --browse-mix proportion.
    SessionBrowse,
    /// Each user logs in on --devices devices (SESSION.CREATE), then SESSION.DESTROYALL.
    SessionLogoutEverywhere,
    /// Go scs redisstore's save: MULTI, SET key value, PEXPIREAT key (now + --ttl, 24h by
    /// default), EXEC in one write, counted as one request.
    Multi,
    /// phpredis's session lock release: EVALSHA of its script (SCRIPT LOAD once at the start)
    /// on a key of the keyspace and a token.
    Evalsha,
    /// PUBLISH channel value, to --subscribers connections subscribed to the channel; reports
    /// the messages they received per second beside PUBLISH's rate.
    Publish,
}

impl WorkloadKind {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Set => "set",
            WorkloadKind::Get => "get",
            WorkloadKind::Mixed => "mixed",
            WorkloadKind::SessionLogin => "session-login",
            WorkloadKind::SessionBrowse => "session-browse",
            WorkloadKind::SessionLogoutEverywhere => "session-logout-everywhere",
            WorkloadKind::Multi => "multi",
            WorkloadKind::Evalsha => "evalsha",
            WorkloadKind::Publish => "publish",
        }
    }
}

/// When the measured run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this long (requests in flight then are still counted).
    After(Duration),
    /// After exactly this many requests.
    Requests(u64),
}

/// A workload with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// SET only.
    Set,
    /// GET only.
    Get,
    /// SET and GET.
    Mixed(Ratio),
    /// SESSION.CREATE with a user.
    SessionLogin,
    /// Browsing on existing sessions.
    SessionBrowse(BrowseMix),
    /// Log in on `devices` devices, then log out everywhere.
    SessionLogoutEverywhere {
        /// Sessions per user before SESSION.DESTROYALL.
        devices: usize,
    },
    /// MULTI, SET, PEXPIREAT, EXEC.
    Multi,
    /// EVALSHA of phpredis's lock release.
    EvalSha,
    /// PUBLISH to one channel.
    Publish {
        /// Connections subscribed to it.
        subscribers: usize,
    },
}

impl Workload {
    /// The name on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Workload::Set => "set",
            Workload::Get => "get",
            Workload::Mixed(_) => "mixed",
            Workload::SessionLogin => "session-login",
            Workload::SessionBrowse(_) => "session-browse",
            Workload::SessionLogoutEverywhere { .. } => "session-logout-everywhere",
            Workload::Multi => "multi",
            Workload::EvalSha => "evalsha",
            Workload::Publish { .. } => "publish",
        }
    }

    /// Whether the keyspace is written before a run, so reads find keys.
    pub fn reads_keys(&self) -> bool {
        matches!(self, Workload::Get | Workload::Mixed(_))
    }
}

/// A validated run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `host:port`.
    pub addr: String,
    /// AUTH password, if any.
    pub password: Option<String>,
    /// Connections.
    pub clients: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// When the measured run ends.
    pub stop: Stop,
    /// Unmeasured load before the measured run.
    pub warmup: Duration,
    /// Keys, users or initial sessions; see [`Args::keyspace`].
    pub keyspace: u64,
    /// Size of written values.
    pub value_size: ValueSize,
    /// TTL of written keys, idle timeout of created sessions.
    pub ttl: Option<Duration>,
    /// Open loop at this many requests per second in total; closed loop if `None`.
    pub rate: Option<f64>,
    /// What to send.
    pub workload: Workload,
    /// Write the keyspace before get and mixed runs.
    pub prefill: bool,
    /// Seed of the random choices.
    pub seed: u64,
}

/// A flag value that cannot be used; the message names the flag.
#[derive(Debug, thiserror::Error)]
#[error("invalid --{flag}: {reason}")]
pub struct ConfigError {
    flag: &'static str,
    reason: String,
}

impl ConfigError {
    fn new(flag: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            flag,
            reason: reason.into(),
        }
    }
}

/// The most connections one run opens (redis-benchmark and the server's default maxclients
/// allow 10,000).
pub const MAX_CLIENTS: usize = 10_000;
/// The most requests in flight per connection.
pub const MAX_PIPELINE: usize = 100_000;

impl Args {
    /// Checks the flags and derives the run.
    pub fn validate(self) -> Result<Config, ConfigError> {
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return Err(ConfigError::new(
                "clients",
                format!("{} is not between 1 and {MAX_CLIENTS}", self.clients),
            ));
        }
        if self.pipeline == 0 || self.pipeline > MAX_PIPELINE {
            return Err(ConfigError::new(
                "pipeline",
                format!("{} is not between 1 and {MAX_PIPELINE}", self.pipeline),
            ));
        }
        if self.keyspace == 0 {
            return Err(ConfigError::new("keyspace", "must be at least 1"));
        }
        if self.threads == 0 {
            return Err(ConfigError::new("threads", "must be at least 1"));
        }
        if self.subscribers > MAX_CLIENTS {
            return Err(ConfigError::new(
                "subscribers",
                format!("{} is above {MAX_CLIENTS}", self.subscribers),
            ));
        }
        if self.devices == 0 {
            return Err(ConfigError::new("devices", "must be at least 1"));
        }
        let stop = match (self.duration, self.requests) {
            (_, Some(0)) => return Err(ConfigError::new("requests", "must be at least 1")),
            (_, Some(requests)) => Stop::Requests(requests),
            (Some(duration), None) if duration.is_zero() => {
                return Err(ConfigError::new("duration", "must be longer than 0"))
            }
            (Some(duration), None) => Stop::After(duration),
            (None, None) => Stop::After(Duration::from_secs(10)),
        };
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(ConfigError::new(
                    "rate",
                    format!("{rate} is not a positive number of requests per second"),
                ));
            }
        }
        if self.ttl.is_some_and(|ttl| ttl.as_millis() == 0) {
            return Err(ConfigError::new("ttl", "must be at least 1ms"));
        }
        let workload = match self.workload {
            WorkloadKind::Set => Workload::Set,
            WorkloadKind::Get => Workload::Get,
            WorkloadKind::Mixed => Workload::Mixed(self.ratio),
            WorkloadKind::SessionLogin => Workload::SessionLogin,
            WorkloadKind::SessionBrowse => Workload::SessionBrowse(self.browse_mix),
            WorkloadKind::SessionLogoutEverywhere => Workload::SessionLogoutEverywhere {
                devices: self.devices,
            },
            WorkloadKind::Multi => Workload::Multi,
            WorkloadKind::Evalsha => Workload::EvalSha,
            WorkloadKind::Publish => Workload::Publish {
                subscribers: self.subscribers,
            },
        };
        Ok(Config {
            addr: format!("{}:{}", self.host, self.port),
            password: self.password,
            clients: self.clients,
            pipeline: self.pipeline,
            stop,
            warmup: self.warmup,
            keyspace: self.keyspace,
            value_size: self.value_size,
            ttl: self.ttl,
            rate: self.rate,
            workload,
            prefill: !self.no_prefill,
            seed: self.seed.unwrap_or_else(rand::random),
        })
    }
}

/// The largest value `--value-size` accepts (the server's default largest bulk string is 16 MiB).
pub const MAX_VALUE_SIZE: usize = 16 << 20;

/// Bytes per written value: fixed, or uniform in an inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueSize {
    /// Smallest size.
    pub min: usize,
    /// Largest size (equal to `min` for a fixed size).
    pub max: usize,
}

impl ValueSize {
    /// A size for the next value.
    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        if self.min == self.max {
            self.min
        } else {
            rng.random_range(self.min..=self.max)
        }
    }
}

impl FromStr for ValueSize {
    type Err = String;

    fn from_str(text: &str) -> Result<ValueSize, String> {
        let parse = |part: &str| {
            part.trim()
                .parse::<usize>()
                .map_err(|_| format!("{text:?} is not a size in bytes (160) or a range (100-400)"))
        };
        let (min, max) = match text.split_once('-') {
            Some((min, max)) => (parse(min)?, parse(max)?),
            None => {
                let size = parse(text)?;
                (size, size)
            }
        };
        if min > max {
            return Err(format!(
                "{text:?}: the range's minimum is above its maximum"
            ));
        }
        if max > MAX_VALUE_SIZE {
            return Err(format!(
                "{text:?}: values are at most {MAX_VALUE_SIZE} bytes"
            ));
        }
        Ok(ValueSize { min, max })
    }
}

impl fmt::Display for ValueSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// The proportion of SETs to GETs in the mixed workload, `SET:GET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    /// SET's share.
    pub set: u32,
    /// GET's share.
    pub get: u32,
}

impl FromStr for Ratio {
    type Err = String;

    fn from_str(text: &str) -> Result<Ratio, String> {
        let bad = || format!("{text:?} is not a SET:GET ratio such as 1:10");
        let (set, get) = text.split_once(':').ok_or_else(bad)?;
        let set: u32 = set.trim().parse().map_err(|_| bad())?;
        let get: u32 = get.trim().parse().map_err(|_| bad())?;
        if set.checked_add(get).is_none_or(|total| total == 0) {
            return Err(bad());
        }
        Ok(Ratio { set, get })
    }
}

/// The weights of the session-browse operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrowseMix {
    /// SESSION.GET.
    pub get: u32,
    /// SESSION.SET.
    pub set: u32,
    /// SESSION.CREATE.
    pub create: u32,
    /// SESSION.DESTROY.
    pub destroy: u32,
}

impl Default for BrowseMix {
    fn default() -> BrowseMix {
        BrowseMix {
            get: 80,
            set: 15,
            create: 4,
            destroy: 1,
        }
    }
}

impl FromStr for BrowseMix {
    type Err = String;

    /// `get=80,set=15,create=4,destroy=1`; operations left out weigh 0.
    fn from_str(text: &str) -> Result<BrowseMix, String> {
        let mut mix = BrowseMix {
            get: 0,
            set: 0,
            create: 0,
            destroy: 0,
        };
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let bad = || format!("{part:?} is not op=weight (op: get, set, create, destroy)");
            let (op, weight) = part.split_once('=').ok_or_else(bad)?;
            let weight: u32 = weight.trim().parse().map_err(|_| bad())?;
            let slot = match op.trim().to_ascii_lowercase().as_str() {
                "get" => &mut mix.get,
                "set" => &mut mix.set,
                "create" => &mut mix.create,
                "destroy" => &mut mix.destroy,
                _ => return Err(bad()),
            };
            *slot = weight;
        }
        let total = [mix.get, mix.set, mix.create, mix.destroy]
            .iter()
            .try_fold(0u32, |sum, w| sum.checked_add(*w));
        match total {
            Some(0) | None => Err(format!(
                "{text:?}: the weights must add up to more than 0 (and less than 2^32)"
            )),
            Some(_) => Ok(mix),
        }
    }
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 500ms, 10s, 2m or 1h"))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn args(line: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("sessiond-bench").chain(line.iter().copied())).unwrap()
    }

    #[test]
    fn value_sizes_are_fixed_or_ranges() {
        assert_eq!("160".parse(), Ok(ValueSize { min: 160, max: 160 }));
        assert_eq!("100-400".parse(), Ok(ValueSize { min: 100, max: 400 }));
        assert_eq!(" 0 - 1 ".parse(), Ok(ValueSize { min: 0, max: 1 }));
        assert!("400-100".parse::<ValueSize>().is_err());
        assert!("big".parse::<ValueSize>().is_err());
        assert!("1-".parse::<ValueSize>().is_err());
        assert!("-5".parse::<ValueSize>().is_err());
        assert!("20000000".parse::<ValueSize>().is_err());
        assert_eq!(ValueSize { min: 1, max: 9 }.to_string(), "1-9");
    }

    #[test]
    fn sampled_value_sizes_stay_in_range_and_cover_it() {
        let size: ValueSize = "10-13".parse().unwrap();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let mut seen = [false; 4];
        for _ in 0..1000 {
            let n = size.sample(&mut rng);
            assert!((10..=13).contains(&n), "{n}");
            seen[n - 10] = true;
        }
        assert_eq!(seen, [true; 4]);
        let fixed: ValueSize = "160".parse().unwrap();
        assert_eq!(fixed.sample(&mut rng), 160);
    }

    #[test]
    fn ratios_and_browse_mixes_parse() {
        assert_eq!("1:10".parse(), Ok(Ratio { set: 1, get: 10 }));
        assert_eq!("0:1".parse(), Ok(Ratio { set: 0, get: 1 }));
        assert!("0:0".parse::<Ratio>().is_err());
        assert!("1/10".parse::<Ratio>().is_err());

        let mix: BrowseMix = "get=80,set=15,create=4,destroy=1".parse().unwrap();
        assert_eq!(mix, BrowseMix::default());
        assert_eq!(
            "GET=1, destroy=2".parse(),
            Ok(BrowseMix {
                get: 1,
                set: 0,
                create: 0,
                destroy: 2
            })
        );
        assert!("get=0".parse::<BrowseMix>().is_err());
        assert!("fetch=3".parse::<BrowseMix>().is_err());
        assert!("get=x".parse::<BrowseMix>().is_err());
        assert!("get=4294967295,set=1".parse::<BrowseMix>().is_err());
    }

    #[test]
    fn defaults_make_a_ten_second_closed_loop_set_run() {
        let config = args(&["--seed", "1"]).validate().unwrap();
        assert_eq!(config.workload, Workload::Set);
        assert_eq!(config.addr, "127.0.0.1:6380");
        assert_eq!(config.stop, Stop::After(Duration::from_secs(10)));
        assert_eq!((config.clients, config.pipeline), (50, 1));
        assert_eq!(config.value_size, ValueSize { min: 160, max: 160 });
        assert_eq!((config.rate, config.ttl, config.seed), (None, None, 1));
    }

    #[test]
    fn flags_become_the_run() {
        let config = args(&[
            "session-browse",
            "--port",
            "6379",
            "-c",
            "4",
            "-P",
            "16",
            "-n",
            "1000",
            "--browse-mix",
            "get=1",
            "--rate",
            "500.5",
            "--ttl",
            "30m",
            "--warmup",
            "2s",
        ])
        .validate()
        .unwrap();
        assert_eq!(config.addr, "127.0.0.1:6379");
        assert_eq!(config.stop, Stop::Requests(1000));
        assert_eq!((config.clients, config.pipeline), (4, 16));
        assert_eq!(config.rate, Some(500.5));
        assert_eq!(config.ttl, Some(Duration::from_secs(1800)));
        assert_eq!(config.warmup, Duration::from_secs(2));
        assert!(
            matches!(config.workload, Workload::SessionBrowse(mix) if mix.get == 1 && mix.set == 0)
        );
    }

    #[test]
    fn unusable_flags_are_refused_by_name() {
        let refused = |line: &[&str]| args(line).validate().unwrap_err().to_string();
        assert!(refused(&["-c", "0"]).contains("--clients"));
        assert!(refused(&["-P", "0"]).contains("--pipeline"));
        assert!(refused(&["-n", "0"]).contains("--requests"));
        assert!(refused(&["--rate", "0"]).contains("--rate"));
        assert!(refused(&["--rate", "NaN"]).contains("--rate"));
        assert!(refused(&["--duration", "0s"]).contains("--duration"));
        assert!(refused(&["--keyspace", "0"]).contains("--keyspace"));
        assert!(refused(&["--ttl", "0ms"]).contains("--ttl"));
        assert!(refused(&["publish", "--subscribers", "10001"]).contains("--subscribers"));
        // --duration and --requests exclude each other.
        assert!(Args::try_parse_from(["b", "--duration", "1s", "-n", "5"]).is_err());
    }
}
