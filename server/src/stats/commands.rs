//! Per-command statistics: calls, time, rejections and failures (`INFO commandstats`), latency
//! histograms (`INFO latencystats`) and error replies by prefix (`INFO errorstats`).
//!
//! The hot path adds nothing shared per command: a connection tallies its commands in a small
//! [`Tally`] (a few entries of command, histogram bucket, calls and time) that
//! [`crate::stats::Stats::absorb`] adds into the thread's stripe once per batch, as it does the
//! other counters. Errors are the rare path: they go straight to the stripe.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use sessiond_protocol::cmd::{
    Client, CommandInfo, Config, Debug, Latency, Memory, Pubsub, Script, Slowlog, COMMANDS,
};
use sessiond_protocol::Command;

use super::{this_threads_stripe, STRIPES};

/// The subcommands counted apart, as Redis names them (`container|sub`); a container's other
/// subcommands count as the container.
const SUBCOMMANDS: &[&str] = &[
    "client|id",
    "client|setname",
    "client|getname",
    "client|setinfo",
    "client|info",
    "client|list",
    "client|kill",
    "client|pause",
    "client|unpause",
    "client|no-evict",
    "client|help",
    "config|get",
    "config|set",
    "config|resetstat",
    "config|rewrite",
    "config|help",
    "script|load",
    "script|exists",
    "script|flush",
    "script|kill",
    "script|help",
    "pubsub|channels",
    "pubsub|numsub",
    "pubsub|numpat",
    "pubsub|shardchannels",
    "pubsub|shardnumsub",
    "pubsub|help",
    "command|count",
    "command|list",
    "command|info",
    "command|docs",
    "command|help",
    "slowlog|get",
    "slowlog|len",
    "slowlog|reset",
    "slowlog|help",
    "latency|latest",
    "latency|history",
    "latency|reset",
    "latency|doctor",
    "latency|help",
    "memory|usage",
    "memory|stats",
    "memory|doctor",
    "memory|help",
    "debug|sleep",
    "debug|help",
];

/// Slots of the statistics table: one per command of [`COMMANDS`], then one per subcommand.
pub fn slot_count() -> usize {
    COMMANDS.len() + SUBCOMMANDS.len()
}

/// The name a slot is reported under (`get`, `config|get`).
pub fn slot_name(slot: usize) -> &'static str {
    match COMMANDS.get(slot) {
        Some(spec) => spec.name,
        None => SUBCOMMANDS
            .get(slot - COMMANDS.len())
            .copied()
            .unwrap_or(""),
    }
}

/// The slot of a parsed command whose index in [`COMMANDS`] is `index`: its subcommand's for
/// the containers, else its own.
#[inline(always)]
pub fn slot(index: usize, command: &Command) -> usize {
    let container = matches!(
        command,
        Command::Client(_)
            | Command::Config(_)
            | Command::Script(_)
            | Command::Pubsub(_)
            | Command::Command(_)
            | Command::Slowlog(_)
            | Command::Latency(_)
            | Command::Memory(_)
            | Command::Debug(_)
    );
    if !container {
        return index;
    }
    match subcommand(command) {
        None => index,
        Some(name) => SUBCOMMANDS
            .iter()
            .position(|sub| *sub == name)
            .map_or(index, |sub| COMMANDS.len() + sub),
    }
}

/// The `container|sub` name of a container's subcommand.
#[inline(never)]
fn subcommand(command: &Command) -> Option<&'static str> {
    Some(match command {
        Command::Client(c) => match c {
            Client::Id => "client|id",
            Client::SetName(_) => "client|setname",
            Client::GetName => "client|getname",
            Client::Info => "client|info",
            Client::SetInfo { .. } => "client|setinfo",
            Client::List { .. } => "client|list",
            Client::Kill(_) => "client|kill",
            Client::Pause { .. } => "client|pause",
            Client::Unpause => "client|unpause",
            Client::NoEvict(_) => "client|no-evict",
            Client::Help => "client|help",
        },
        Command::Config(c) => match c {
            Config::Get(_) => "config|get",
            Config::Set(_) => "config|set",
            Config::ResetStat => "config|resetstat",
            Config::Rewrite => "config|rewrite",
            Config::Help => "config|help",
        },
        Command::Memory(c) => match c {
            Memory::Usage(_) => "memory|usage",
            Memory::Stats => "memory|stats",
            Memory::Doctor => "memory|doctor",
            Memory::Help => "memory|help",
        },
        Command::Debug(c) => match c {
            Debug::Sleep(_) => "debug|sleep",
            Debug::Help => "debug|help",
        },
        Command::Script(c) => match c {
            Script::Load(_) => "script|load",
            Script::Exists(_) => "script|exists",
            Script::Flush => "script|flush",
            Script::Kill => "script|kill",
            Script::Help => "script|help",
        },
        Command::Pubsub(c) => match c {
            Pubsub::Channels { shard: false, .. } => "pubsub|channels",
            Pubsub::Channels { shard: true, .. } => "pubsub|shardchannels",
            Pubsub::NumSub { shard: false, .. } => "pubsub|numsub",
            Pubsub::NumSub { shard: true, .. } => "pubsub|shardnumsub",
            Pubsub::NumPat => "pubsub|numpat",
            Pubsub::Help => "pubsub|help",
        },
        Command::Command(c) => match c {
            CommandInfo::All => return None,
            CommandInfo::Count => "command|count",
            CommandInfo::List => "command|list",
            CommandInfo::Info(_) => "command|info",
            CommandInfo::Docs(_) => "command|docs",
            CommandInfo::Help => "command|help",
        },
        Command::Slowlog(c) => match c {
            Slowlog::Get(_) => "slowlog|get",
            Slowlog::Len => "slowlog|len",
            Slowlog::Reset => "slowlog|reset",
            Slowlog::Help => "slowlog|help",
        },
        Command::Latency(c) => match c {
            Latency::Latest => "latency|latest",
            Latency::History(_) => "latency|history",
            Latency::Reset(_) => "latency|reset",
            Latency::Doctor => "latency|doctor",
            Latency::Help => "latency|help",
        },
        _ => return None,
    })
}

/// Histogram buckets: log-linear over nanoseconds, [`SUB_BITS`] bits under the leading one
/// (an eighth of a power of two, so a percentile is within 12.5%), up to 2^[`TOP_BIT`] ns.
pub const BUCKETS: usize = ((TOP_BIT - SUB_BITS + 2) << SUB_BITS) as usize;
const SUB_BITS: u32 = 3;
const TOP_BIT: u32 = 40;

/// The bucket of a duration in nanoseconds.
#[inline(always)]
pub fn bucket(nanos: u64) -> usize {
    let nanos = nanos.min((1 << (TOP_BIT + 1)) - 1);
    if nanos < (1 << SUB_BITS) {
        return nanos as usize;
    }
    let top = 63 - nanos.leading_zeros();
    let sub = (nanos >> (top - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    (((top - SUB_BITS + 1) << SUB_BITS) as u64 + sub) as usize
}

/// The highest duration, in nanoseconds, that falls in `bucket`.
pub fn bucket_ceiling(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < (1 << SUB_BITS) {
        return bucket;
    }
    let group = bucket >> SUB_BITS;
    let sub = bucket & ((1 << SUB_BITS) - 1);
    let top = group + u64::from(SUB_BITS) - 1;
    let low = (1u64 << top) + (sub << (top - u64::from(SUB_BITS)));
    low + (1u64 << (top - u64::from(SUB_BITS))) - 1
}

/// Entries of a connection's [`Tally`], a power of two: the distinct (command, bucket) pairs
/// of one batch it holds before it is added to the stripe early.
const TALLY: usize = 16;

/// A connection's per-command counts since its last absorb: a small direct-mapped table of
/// (command, bucket) pairs, so that counting a call finds its entry without a search.
#[derive(Debug, Default)]
pub struct Tally {
    entries: [TallyEntry; TALLY],
    /// Bit `i` set: `entries[i]` holds counts.
    used: u16,
}

#[derive(Debug, Default, Clone, Copy)]
struct TallyEntry {
    slot: u32,
    bucket: u32,
    calls: u64,
    nanos: u64,
}

impl Tally {
    /// Counts one call of `slot` that took `nanos`; `false` when its entry holds another pair
    /// (add the tally into the stripe, then record again).
    #[inline(always)]
    pub fn record(&mut self, slot: usize, nanos: u64) -> bool {
        let bucket = bucket(nanos) as u32;
        let slot = slot as u32;
        // Neighbouring buckets of one command, the usual spread of a pipeline, get distinct
        // entries.
        let at = (slot.wrapping_mul(5).wrapping_add(bucket) as usize) % TALLY;
        let Some(entry) = self.entries.get_mut(at) else {
            return false;
        };
        if self.used & (1 << at) == 0 {
            *entry = TallyEntry {
                slot,
                bucket,
                calls: 1,
                nanos,
            };
            self.used |= 1 << at;
            return true;
        }
        if entry.slot != slot || entry.bucket != bucket {
            return false;
        }
        entry.calls += 1;
        entry.nanos += nanos;
        true
    }

    /// The entries holding counts.
    fn entries(&self) -> impl Iterator<Item = &TallyEntry> {
        let mut used = self.used;
        std::iter::from_fn(move || {
            if used == 0 {
                return None;
            }
            let at = used.trailing_zeros() as usize;
            used &= used - 1;
            Some(at)
        })
        .filter_map(|at| self.entries.get(at))
    }
}

/// One command's counters in one stripe.
#[derive(Debug, Default)]
struct Counters {
    /// Time of the calls run; their number is the histogram's total.
    nanos: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    /// Made on the command's first call in the stripe.
    histogram: OnceLock<Box<[AtomicU64]>>,
}

/// The figures of one command, summed over the stripes.
#[derive(Debug, Clone, Default)]
pub struct CommandFigures {
    /// Its name as INFO shows it.
    pub name: &'static str,
    /// Calls run.
    pub calls: u64,
    /// Their time, in microseconds.
    pub usec: u64,
    /// Calls refused before they ran (arity, NOPERM, OOM...).
    pub rejected: u64,
    /// Calls that ran and answered an error.
    pub failed: u64,
    /// The merged latency histogram, [`BUCKETS`] counts (empty if never run).
    pub histogram: Vec<u64>,
}

impl CommandFigures {
    /// The `p`th percentile (0 to 100) of the latency histogram, in microseconds.
    pub fn percentile_usec(&self, p: f64) -> f64 {
        let total: u64 = self.histogram.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((p / 100.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.histogram.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return bucket_ceiling(bucket) as f64 / 1000.0;
            }
        }
        0.0
    }
}

/// Most distinct error prefixes kept, as Redis's `ERRORSTATS_LIMIT`: past it, new prefixes are
/// counted in `total_error_replies` only.
const ERROR_PREFIXES: usize = 128;

/// The server's per-command statistics.
#[derive(Debug, Default)]
pub struct CommandStats {
    /// Per thread stripe, made on its first use: one [`Counters`] per slot.
    stripes: [OnceLock<Box<[Counters]>>; STRIPES],
    /// Error replies by prefix (`ERR`, `WRONGTYPE`...): errors are the rare path.
    errors: Mutex<Vec<(String, u64)>>,
    /// Every error reply, whatever its prefix.
    error_replies: AtomicU64,
}

impl CommandStats {
    fn stripe(&self) -> &[Counters] {
        self.stripes[this_threads_stripe()]
            .get_or_init(|| (0..slot_count()).map(|_| Counters::default()).collect())
    }

    fn counters(&self, slot: usize) -> Option<&Counters> {
        self.stripe().get(slot)
    }

    /// Adds a connection's tally into this thread's stripe and empties it. A command's calls
    /// are its histogram's total, so a call costs two additions here, not three.
    pub fn absorb(&self, tally: &mut Tally) {
        if tally.used == 0 {
            return;
        }
        let stripe = self.stripe();
        for entry in tally.entries() {
            let Some(counters) = stripe.get(entry.slot as usize) else {
                continue;
            };
            counters.nanos.fetch_add(entry.nanos, Ordering::Relaxed);
            let histogram = counters
                .histogram
                .get_or_init(|| (0..BUCKETS).map(|_| AtomicU64::new(0)).collect());
            if let Some(count) = histogram.get(entry.bucket as usize) {
                count.fetch_add(entry.calls, Ordering::Relaxed);
            }
        }
        tally.used = 0;
    }

    /// Counts a call of `slot` refused before it ran.
    pub fn rejected(&self, slot: usize) {
        if let Some(counters) = self.counters(slot) {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a call of `slot` that answered an error.
    pub fn failed(&self, slot: usize) {
        if let Some(counters) = self.counters(slot) {
            counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an error reply whose text is `message` (`-` stripped), by its first word.
    pub fn error_reply(&self, message: &[u8]) {
        self.error_replies.fetch_add(1, Ordering::Relaxed);
        let end = message
            .iter()
            .position(|b| *b == b' ' || *b == b'\r')
            .unwrap_or(message.len());
        let prefix = &message[..end];
        if prefix.is_empty() || prefix.len() > 64 || !prefix.iter().all(u8::is_ascii_graphic) {
            return;
        }
        let Ok(mut errors) = self.errors.lock() else {
            return;
        };
        let full = errors.len() >= ERROR_PREFIXES;
        match errors.iter_mut().find(|(p, _)| p.as_bytes() == prefix) {
            Some((_, count)) => *count += 1,
            None if !full => errors.push((String::from_utf8_lossy(prefix).into_owned(), 1)),
            None => {}
        }
    }

    /// Error replies since start (or the last CONFIG RESETSTAT).
    pub fn total_error_replies(&self) -> u64 {
        self.error_replies.load(Ordering::Relaxed)
    }

    /// Error replies by prefix, sorted by prefix.
    pub fn errors(&self) -> Vec<(String, u64)> {
        let mut errors = self.errors.lock().map(|e| e.clone()).unwrap_or_default();
        errors.sort();
        errors
    }

    /// Every command run or refused at least once, in table order, with its figures.
    pub fn figures(&self) -> Vec<CommandFigures> {
        let mut all: Vec<CommandFigures> = (0..slot_count())
            .map(|slot| CommandFigures {
                name: slot_name(slot),
                ..CommandFigures::default()
            })
            .collect();
        for stripe in self.stripes.iter().filter_map(OnceLock::get) {
            for (figures, counters) in all.iter_mut().zip(stripe.iter()) {
                figures.usec += counters.nanos.load(Ordering::Relaxed);
                figures.rejected += counters.rejected.load(Ordering::Relaxed);
                figures.failed += counters.failed.load(Ordering::Relaxed);
                if let Some(histogram) = counters.histogram.get() {
                    if figures.histogram.is_empty() {
                        figures.histogram = vec![0; BUCKETS];
                    }
                    for (sum, count) in figures.histogram.iter_mut().zip(histogram.iter()) {
                        let count = count.load(Ordering::Relaxed);
                        *sum += count;
                        figures.calls += count;
                    }
                }
            }
        }
        for figures in &mut all {
            figures.usec /= 1000;
        }
        all.retain(|f| f.calls + f.rejected + f.failed > 0);
        all
    }

    /// Zeroes everything (CONFIG RESETSTAT). Counts added meanwhile may survive.
    pub fn reset(&self) {
        for stripe in self.stripes.iter().filter_map(OnceLock::get) {
            for counters in stripe.iter() {
                for counter in [&counters.nanos, &counters.rejected, &counters.failed] {
                    counter.store(0, Ordering::Relaxed);
                }
                if let Some(histogram) = counters.histogram.get() {
                    for count in histogram.iter() {
                        count.store(0, Ordering::Relaxed);
                    }
                }
            }
        }
        self.error_replies.store(0, Ordering::Relaxed);
        if let Ok(mut errors) = self.errors.lock() {
            errors.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_keeps_every_call_of_a_spread_batch() {
        // A pipeline's calls spread over neighbouring buckets and a few commands.
        let mut tally = Tally::default();
        let stats = CommandStats::default();
        let mut expected = std::collections::HashMap::new();
        for i in 0..1000u64 {
            let (slot, nanos) = ((i % 3) as usize, 200 + (i * 37) % 900);
            if !tally.record(slot, nanos) {
                stats.absorb(&mut tally);
                assert!(tally.record(slot, nanos));
            }
            let e = expected.entry(slot).or_insert((0u64, 0u64));
            e.0 += 1;
            e.1 += nanos;
        }
        stats.absorb(&mut tally);
        for figures in stats.figures() {
            let slot = (0..3).find(|s| slot_name(*s) == figures.name).unwrap();
            let (calls, nanos) = expected[&slot];
            assert_eq!((figures.calls, figures.usec), (calls, nanos / 1000));
            assert_eq!(figures.histogram.iter().sum::<u64>(), calls);
        }
    }

    #[test]
    fn buckets_are_monotonic_and_their_ceilings_hold_their_values() {
        let mut last = 0;
        for nanos in (0..100_000u64).chain([1 << 30, 1 << 40, u64::MAX]) {
            let b = bucket(nanos);
            assert!(b >= last && b < BUCKETS, "{nanos}");
            last = b;
            if nanos < 1 << 40 {
                assert!(bucket_ceiling(b) >= nanos, "{nanos}");
                assert!(bucket_ceiling(b) <= nanos + nanos / 8 + 1, "{nanos}");
            }
        }
    }

    #[test]
    fn a_tally_merges_repeats_and_says_when_full() {
        let mut tally = Tally::default();
        for _ in 0..100 {
            assert!(tally.record(1, 1000));
        }
        assert_eq!(tally.entries().count(), 1);
        // Another command whose entry is the same as slot 1's at that bucket.
        let other = 1 + TALLY;
        assert!(!tally.record(other, 1000));
        let stats = CommandStats::default();
        stats.absorb(&mut tally);
        assert_eq!(tally.entries().count(), 0);
        assert!(tally.record(other, 1000));
        stats.absorb(&mut tally);
        let figures = stats.figures();
        let get = figures.iter().find(|f| f.name == slot_name(1)).unwrap();
        assert_eq!((get.calls, get.usec), (100, 100));
        let other = figures.iter().find(|f| f.name == slot_name(other)).unwrap();
        assert_eq!((other.calls, other.usec), (1, 1));
        assert!((get.percentile_usec(50.0) - 1.0).abs() < 0.2);
        stats.reset();
        assert!(stats.figures().is_empty());
    }

    #[test]
    fn subcommands_count_under_their_own_names() {
        for words in [
            &["CLIENT", "KILL", "ID", "1"][..],
            &["CLIENT", "PAUSE", "10"],
            &["CONFIG", "REWRITE"],
            &["MEMORY", "USAGE", "k"],
            &["DEBUG", "SLEEP", "0"],
            &["SLOWLOG", "LEN"],
        ] {
            let args: Vec<bytes::Bytes> = words.iter().map(|w| bytes::Bytes::from(*w)).collect();
            let (index, command) = Command::parse_indexed(args);
            let command = command.unwrap();
            let name = slot_name(slot(index.unwrap(), &command));
            let expected = format!("{}|{}", words[0], words[1]).to_lowercase();
            assert_eq!(name, expected);
        }
    }

    #[test]
    fn errors_count_by_first_word() {
        let stats = CommandStats::default();
        stats.error_reply(b"ERR syntax error");
        stats.error_reply(b"WRONGTYPE Operation");
        stats.error_reply(b"ERR x");
        assert_eq!(stats.total_error_replies(), 3);
        assert_eq!(
            stats.errors(),
            vec![("ERR".to_owned(), 2), ("WRONGTYPE".to_owned(), 1)]
        );
    }
}
