//! The slow log (`SLOWLOG`, `slowlog-log-slower-than`, `slowlog-max-len`) and the latency
//! monitor (`LATENCY`, `latency-monitor-threshold`).
//!
//! Session IDs, values and passwords are credentials, so an entry keeps only the command's name,
//! its subcommand and the keys of a command that is not a session command; every other
//! argument reads `(redacted)`, as Redis writes AUTH's. The arguments are copied (at most
//! [`COPIED_ARGS`], [`COPY_BYTES`] in all) into a connection's [`ArgCopy`] before the command
//! consumes them, without allocating; an entry is built from it only for a slow command. The
//! name is the table's, in the case the client sent its first letter in.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use sessiond_protocol::cmd::{AclCategories, CommandSpec};

/// The most arguments an entry shows, the last saying how many more there were (Redis's
/// `SLOWLOG_ENTRY_MAX_ARGC`).
const MAX_ARGC: usize = 32;
/// The most bytes an argument shows, then `... (N more bytes)` (`SLOWLOG_ENTRY_MAX_STRING`).
const MAX_STRING: usize = 128;
/// Arguments (the name included) an [`ArgCopy`] keeps.
const COPIED_ARGS: usize = 9;
/// Bytes an [`ArgCopy`] keeps in all.
const COPY_BYTES: usize = 512;
const _: () = assert!(MAX_STRING <= COPY_BYTES && COPIED_ARGS > 0);
/// The longest `slowlog-max-len` (an entry holds at most 32 arguments of 128 bytes).
pub const MAX_LEN: u64 = 1 << 20;
/// The characters that end every session ID (its random part, in base64url): the store's
/// `session::ID_LEN`, which checks that the two agree (the store sits above this module).
pub const ID_LEN: usize = 43;
/// What an argument that is not shown reads.
const REDACTED: &[u8] = b"(redacted)";

/// The first arguments of the command about to run, kept before it consumes them: the case
/// of its name, and copies of the other arguments an entry could show.
#[derive(Debug)]
pub struct ArgCopy {
    /// The name was sent with an upper-case first letter: shown upper case, else lower case.
    /// It matched the table's regardless of case, and clients send names in one case: keeping
    /// the name itself, or the case of each letter, cost ~30 instructions a command, a fifth
    /// of what counting it costs.
    upper: bool,
    bytes: [u8; COPY_BYTES],
    /// (offset, bytes kept, length as sent) of each copied argument after the name.
    spans: [(u16, u16, u32); COPIED_ARGS],
    copied: usize,
    argc: usize,
}

impl Default for ArgCopy {
    fn default() -> Self {
        ArgCopy {
            upper: false,
            bytes: [0; COPY_BYTES],
            spans: [(0, 0, 0); COPIED_ARGS],
            copied: 0,
            argc: 0,
        }
    }
}

impl ArgCopy {
    /// Keeps what an entry could show of `args`, the arguments of a command of `spec`: the
    /// case of its name, and copies of a container's subcommand and of the keys of a command
    /// that is not a session command. Values, session IDs and passwords are not even copied,
    /// since they are never shown.
    #[inline(always)]
    pub fn capture(&mut self, spec: &CommandSpec, args: &[Bytes]) {
        let argc = args.len();
        self.argc = argc;
        let Some((name, rest)) = args.split_first() else {
            self.copied = 0;
            return;
        };
        // A letter is upper case when its 0x20 bit is clear; the other characters of a name
        // ('.', '-', '|') read as they are whatever their bit says.
        self.upper = name.first().is_some_and(u8::is_ascii_uppercase);
        let session = is_session(spec);
        if spec.first_key == 1 && spec.last_key == 1 && !session {
            // One key, first (GET, SET, INCR, EXPIRE...): the one argument shown but the name.
            // Indexed: `kept` is at most MAX_STRING, within both, so no check is left.
            let key = rest.first().map_or(&[][..], |key| &key[..]);
            let kept = key.len().min(MAX_STRING);
            self.bytes[..kept].copy_from_slice(&key[..kept]);
            self.spans[0] = (0, kept as u16, key.len() as u32);
            self.copied = usize::from(!rest.is_empty());
            return;
        }
        self.copied = 0;
        let mut used = 0;
        // Only the arguments shown are copied, each with its span; the spans of the others
        // are never read (`shown` redacts them).
        let mut keep = |position: usize| {
            let (Some(arg), Some(span)) =
                (rest.get(position - 1), self.spans.get_mut(position - 1))
            else {
                return;
            };
            let kept = arg.len().min(MAX_STRING).min(COPY_BYTES - used);
            if let (Some(to), Some(from)) = (self.bytes.get_mut(used..used + kept), arg.get(..kept))
            {
                to.copy_from_slice(from);
            }
            *span = (used as u16, kept as u16, arg.len() as u32);
            used += kept;
            self.copied = position;
        };
        // Most commands with keys have their first key first, and are no containers.
        if spec.first_key != 1 && is_container(spec) {
            keep(1);
        }
        if spec.first_key > 0 && !session {
            let (first, last, step) = key_bounds(spec, argc);
            let mut position = first;
            while position <= last.min(COPIED_ARGS) {
                keep(position);
                position += step;
            }
        }
    }

    /// The arguments an entry shows for a command of `spec` (`sub`: it has a subcommand). A
    /// key that could be a session ID ([`could_be_session_id`]) is redacted like any session
    /// command's argument.
    pub fn shown(&self, spec: &CommandSpec, sub: bool) -> Vec<Bytes> {
        let shown_argc = self.argc.min(MAX_ARGC);
        let mut shown = Vec::with_capacity(shown_argc);
        let keys_shown = !is_session(spec);
        for position in 0..shown_argc {
            if position == 0 {
                shown.push(self.name(spec));
                continue;
            }
            if shown_argc < self.argc && position == MAX_ARGC - 1 {
                shown.push(Bytes::from(format!(
                    "... ({} more arguments)",
                    self.argc - MAX_ARGC + 1
                )));
                break;
            }
            let key = keys_shown && is_key(spec, position, self.argc);
            let copied = self.copied_arg(position);
            let visible = (sub && position == 1)
                || (key && copied.is_some_and(|(bytes, full)| !could_be_session_id(bytes, full)));
            shown.push(match copied {
                Some((bytes, full)) if visible => {
                    if full > bytes.len() {
                        let mut text = bytes.to_vec();
                        text.extend_from_slice(
                            format!("... ({} more bytes)", full - bytes.len()).as_bytes(),
                        );
                        Bytes::from(text)
                    } else {
                        Bytes::copy_from_slice(bytes)
                    }
                }
                _ => Bytes::from_static(REDACTED),
            });
        }
        shown
    }

    /// The name of `spec`, the command captured, in the case it was sent in.
    fn name(&self, spec: &CommandSpec) -> Bytes {
        if self.upper {
            Bytes::from(spec.name.to_ascii_uppercase())
        } else {
            Bytes::from_static(spec.name.as_bytes())
        }
    }

    fn copied_arg(&self, position: usize) -> Option<(&[u8], usize)> {
        if position == 0 || position > self.copied {
            return None;
        }
        let (offset, kept, full) = *self.spans.get(position - 1)?;
        let bytes = self
            .bytes
            .get(offset as usize..offset as usize + kept as usize)?;
        Some((bytes, full as usize))
    }
}

/// Whether a key an entry would show, `kept` of its `full` bytes, could be a session ID, a
/// credential: DEL, TTL, EXISTS, RENAME... take session IDs as keys. It is when the key ends as
/// every ID does, in [`ID_LEN`] base64url characters: every session's key does (the server
/// issues them, and no command renames a session), and so does one the command removed, or a
/// guess (as secret). The store is not asked: inside EXEC an entry is built while the block
/// holds only its commands' shards. A key cut at [`MAX_STRING`] is checked by its length
/// alone: what is shown of it must end before where such an ending would begin.
fn could_be_session_id(kept: &[u8], full: usize) -> bool {
    if full > kept.len() {
        return full.saturating_sub(ID_LEN) < kept.len();
    }
    kept.len() >= ID_LEN
        && kept[kept.len() - ID_LEN..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

/// Whether `spec` is a session command, whose keys are session IDs (never shown).
#[inline]
fn is_session(spec: &CommandSpec) -> bool {
    spec.categories.contains(AclCategories::SESSION)
}

/// Whether `spec` is a container, whose second argument is a subcommand (shown).
fn is_container(spec: &CommandSpec) -> bool {
    matches!(
        spec.name,
        "client"
            | "config"
            | "script"
            | "pubsub"
            | "command"
            | "slowlog"
            | "latency"
            | "memory"
            | "debug"
            | "object"
            | "acl"
            | "function"
            | "cluster"
            | "xinfo"
    )
}

/// The key positions of a command of `spec` with `argc` arguments: first, last and step
/// (none when the first is past the last).
#[inline]
fn key_bounds(spec: &CommandSpec, argc: usize) -> (usize, usize, usize) {
    let first = match usize::try_from(spec.first_key) {
        Ok(first) if first > 0 => first,
        _ => return (usize::MAX, 0, 1),
    };
    let last = if spec.last_key < 0 {
        argc.checked_sub(spec.last_key.unsigned_abs() as usize)
    } else {
        Some(spec.last_key as usize)
    };
    match last {
        Some(last) => (first, last, spec.step.max(1) as usize),
        None => (usize::MAX, 0, 1),
    }
}

/// Whether argument `position` of a command of `spec` with `argc` arguments is a key.
fn is_key(spec: &CommandSpec, position: usize, argc: usize) -> bool {
    let (first, last, step) = key_bounds(spec, argc);
    position >= first && position <= last && (position - first).is_multiple_of(step)
}

/// One slow log entry.
#[derive(Debug, Clone)]
pub struct SlowEntry {
    /// Its number, from 0 since start.
    pub id: u64,
    /// When the command ran, Unix seconds.
    pub unix_s: u64,
    /// How long it ran, microseconds.
    pub usec: u64,
    /// Its arguments as shown ([`ArgCopy::shown`]).
    pub args: Vec<Bytes>,
    /// The client's address, `ip:port`.
    pub peer: String,
    /// The client's name.
    pub client_name: String,
}

/// The slow log and its settings.
#[derive(Debug)]
pub struct SlowLog {
    /// `slowlog-log-slower-than`, microseconds; negative: off.
    slower_than_us: AtomicI64,
    /// The same in nanoseconds, `u64::MAX` when off: the hot path's first look.
    from_ns: AtomicU64,
    /// `slowlog-max-len`.
    max_len: AtomicU64,
    next_id: AtomicU64,
    entries: Mutex<VecDeque<SlowEntry>>,
}

impl SlowLog {
    /// An empty log with these settings.
    pub fn new(slower_than_us: i64, max_len: u64) -> SlowLog {
        SlowLog {
            slower_than_us: AtomicI64::new(slower_than_us),
            from_ns: AtomicU64::new(slow_from_ns(slower_than_us)),
            max_len: AtomicU64::new(max_len),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(VecDeque::new()),
        }
    }

    /// `slowlog-log-slower-than`, microseconds.
    pub fn slower_than_us(&self) -> i64 {
        self.slower_than_us.load(Ordering::Relaxed)
    }

    /// Sets `slowlog-log-slower-than`.
    pub fn set_slower_than_us(&self, us: i64) {
        // Both under the entries' lock: two CONFIG SETs at once leave a matching pair.
        let _set = self.entries.lock();
        self.slower_than_us.store(us, Ordering::Relaxed);
        self.from_ns.store(slow_from_ns(us), Ordering::Relaxed);
    }

    /// The nanoseconds from which a command may be logged (`u64::MAX`: never). A bound to
    /// look at first: [`SlowLog::is_slow`] decides, by the threshold in microseconds.
    #[inline]
    pub fn from_ns(&self) -> u64 {
        self.from_ns.load(Ordering::Relaxed)
    }

    /// `slowlog-max-len`.
    pub fn max_len(&self) -> u64 {
        self.max_len.load(Ordering::Relaxed)
    }

    /// Sets `slowlog-max-len`, dropping the oldest entries past it.
    pub fn set_max_len(&self, len: u64) {
        self.max_len.store(len, Ordering::Relaxed);
        if let Ok(mut entries) = self.entries.lock() {
            entries.truncate(usize::try_from(len).unwrap_or(usize::MAX));
        }
    }

    /// Whether a command that ran `usec` is logged.
    #[inline]
    pub fn is_slow(&self, usec: u64) -> bool {
        let threshold = self.slower_than_us();
        threshold >= 0 && usec >= threshold as u64
    }

    /// Adds an entry (its id given here), the newest first.
    pub fn push(&self, mut entry: SlowEntry) {
        let max_len = usize::try_from(self.max_len()).unwrap_or(usize::MAX);
        entry.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut entries) = self.entries.lock() {
            entries.push_front(entry);
            entries.truncate(max_len);
        }
    }

    /// The newest `count` entries (`None`: all).
    pub fn newest(&self, count: Option<usize>) -> Vec<SlowEntry> {
        let Ok(entries) = self.entries.lock() else {
            return Vec::new();
        };
        entries
            .iter()
            .take(count.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every entry.
    pub fn reset(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

/// Samples a latency event keeps, as Redis's `LATENCY_TS_LEN`.
const HISTORY: usize = 160;

/// One event's spikes.
#[derive(Debug, Clone, Default)]
pub struct LatencyEvent {
    /// (Unix seconds, milliseconds), oldest first; one per second (the highest).
    pub samples: VecDeque<(u64, u64)>,
    /// The highest spike since the event was last reset.
    pub max_ms: u64,
}

/// [`SlowLog::from_ns`] of a `slowlog-log-slower-than` of `us`.
fn slow_from_ns(us: i64) -> u64 {
    u64::try_from(us).map_or(u64::MAX, |us| us.saturating_mul(1000))
}

/// [`LatencyMonitor::from_ns`] of a `latency-monitor-threshold` of `ms`.
fn spike_from_ns(ms: u64) -> u64 {
    if ms == 0 {
        u64::MAX
    } else {
        ms.saturating_mul(1_000_000)
    }
}

/// The latency monitor: spikes of at least `latency-monitor-threshold` ms, by event.
#[derive(Debug)]
pub struct LatencyMonitor {
    /// `latency-monitor-threshold`, milliseconds; 0: off.
    threshold_ms: AtomicU64,
    /// The same in nanoseconds, `u64::MAX` when off: the hot path's first look.
    from_ns: AtomicU64,
    events: Mutex<Vec<(&'static str, LatencyEvent)>>,
}

impl LatencyMonitor {
    /// A monitor with this threshold.
    pub fn new(threshold_ms: u64) -> LatencyMonitor {
        LatencyMonitor {
            threshold_ms: AtomicU64::new(threshold_ms),
            from_ns: AtomicU64::new(spike_from_ns(threshold_ms)),
            events: Mutex::default(),
        }
    }

    /// `latency-monitor-threshold`, milliseconds.
    pub fn threshold_ms(&self) -> u64 {
        self.threshold_ms.load(Ordering::Relaxed)
    }

    /// Sets `latency-monitor-threshold`.
    pub fn set_threshold_ms(&self, ms: u64) {
        // Both under the events' lock: two CONFIG SETs at once leave a matching pair.
        let _set = self.events.lock();
        self.threshold_ms.store(ms, Ordering::Relaxed);
        self.from_ns.store(spike_from_ns(ms), Ordering::Relaxed);
    }

    /// The nanoseconds from which a command is a spike (`u64::MAX`: never); a bound to look at
    /// first, as [`SlowLog::from_ns`].
    #[inline]
    pub fn from_ns(&self) -> u64 {
        self.from_ns.load(Ordering::Relaxed)
    }

    /// Whether `ms` reaches the threshold (and the monitor is on).
    #[inline]
    pub fn is_spike(&self, ms: u64) -> bool {
        let threshold = self.threshold_ms();
        threshold != 0 && ms >= threshold
    }

    /// Records a spike of `event` if `ms` reaches the threshold (and the monitor is on).
    #[cold]
    pub fn observe(&self, event: &'static str, ms: u64, unix_s: u64) {
        if !self.is_spike(ms) {
            return;
        }
        let Ok(mut events) = self.events.lock() else {
            return;
        };
        let index = match events.iter().position(|(name, _)| *name == event) {
            Some(index) => index,
            None => {
                events.push((event, LatencyEvent::default()));
                events.len() - 1
            }
        };
        let Some((_, entry)) = events.get_mut(index) else {
            return;
        };
        entry.max_ms = entry.max_ms.max(ms);
        match entry.samples.back_mut() {
            Some((at, worst)) if *at == unix_s => *worst = (*worst).max(ms),
            _ => {
                if entry.samples.len() == HISTORY {
                    entry.samples.pop_front();
                }
                entry.samples.push_back((unix_s, ms));
            }
        }
    }

    /// Every event with spikes, by name.
    pub fn events(&self) -> Vec<(&'static str, LatencyEvent)> {
        let mut events = self.events.lock().map(|e| e.clone()).unwrap_or_default();
        events.sort_by_key(|(name, _)| *name);
        events
    }

    /// Forgets the named events' spikes (none named: all); how many events were reset.
    pub fn reset(&self, names: &[Bytes]) -> usize {
        let Ok(mut events) = self.events.lock() else {
            return 0;
        };
        let before = events.len();
        if names.is_empty() {
            events.clear();
        } else {
            events.retain(|(name, _)| !names.iter().any(|n| n.as_ref() == name.as_bytes()));
        }
        before - events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessiond_protocol::cmd::lookup;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn shown(words: &[&str], sub: bool) -> Vec<String> {
        let mut copy = ArgCopy::default();
        let spec = lookup(words[0].as_bytes()).unwrap();
        copy.capture(spec, &args(words));
        copy.shown(spec, sub)
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn entries_show_names_and_keys_and_redact_the_rest() {
        assert_eq!(
            shown(&["SET", "k", "secret", "EX", "10"], false),
            ["SET", "k", "(redacted)", "(redacted)", "(redacted)"]
        );
        assert_eq!(
            shown(&["mset", "a", "1", "b", "2"], false),
            ["mset", "a", "(redacted)", "b", "(redacted)"]
        );
        assert_eq!(
            shown(&["session.get", "id", "f"], false),
            ["session.get", "(redacted)", "(redacted)"]
        );
        assert_eq!(
            shown(&["auth", "user", "pw"], false),
            ["auth", "(redacted)", "(redacted)"]
        );
        assert_eq!(
            shown(&["config", "get", "x"], true),
            ["config", "get", "(redacted)"]
        );
        let long = "k".repeat(200);
        assert_eq!(
            shown(&["get", &long], false)[1],
            format!("{}... (72 more bytes)", "k".repeat(128))
        );
        let many: Vec<String> = (0..40).map(|i| i.to_string()).collect();
        let mut words = vec!["del"];
        words.extend(many.iter().map(String::as_str));
        let entry = shown(&words, false);
        assert_eq!(entry.len(), 32);
        assert_eq!(entry[31], "... (10 more arguments)");
    }

    #[test]
    fn a_key_that_could_be_a_session_id_is_redacted() {
        let spec = lookup(b"del").unwrap();
        let show = |key: &str| {
            let mut copy = ArgCopy::default();
            copy.capture(spec, &args(&["del", key]));
            let shown = copy.shown(spec, false);
            String::from_utf8_lossy(&shown[1]).into_owned()
        };
        // As the store draws them: ID_LEN base64url characters.
        let id = "AbC-_9".repeat(8)[..ID_LEN].to_owned();
        let id = id.as_str();
        assert_eq!(show(id), "(redacted)");
        assert_eq!(
            show(&format!("app:{id}")),
            "(redacted)",
            "an ID in a namespace"
        );
        assert_eq!(show("user:1"), "user:1");
        // Cut at 128 bytes: shown only when an ID's ending would lie past what is shown.
        let long = format!("{}{id}", "p".repeat(120));
        assert_eq!(show(&long), "(redacted)");
        let longer = format!("{}{id}", "p".repeat(200));
        assert_eq!(
            show(&longer),
            format!("{}... (115 more bytes)", "p".repeat(128))
        );
    }

    #[test]
    fn the_name_is_shown_in_the_case_it_was_sent_in_and_the_arguments_stay() {
        let mut copy = ArgCopy::default();
        let spec = lookup(b"get").unwrap();
        let first = args(&["GeT", "key:1"]);
        copy.capture(spec, &first);
        assert_eq!(first[0], "GeT", "the name stays for the command");
        assert_eq!(first[1], "key:1", "the key stays for the command");
        assert_eq!(
            copy.shown(spec, false),
            ["GET", "key:1"],
            "in its first letter's case"
        );
        copy.capture(spec, &args(&["get", "key:2"]));
        assert_eq!(copy.shown(spec, false), ["get", "key:2"]);
        let spec = lookup(b"session.create").unwrap();
        copy.capture(spec, &args(&["SESSION.CREATE", "user", "ada"]));
        assert_eq!(copy.shown(spec, false)[0], "SESSION.CREATE");
        let spec = lookup(b"config").unwrap();
        copy.capture(spec, &args(&["CONFIG", "set", "maxmemory", "1"]));
        assert_eq!(
            copy.shown(spec, true),
            ["CONFIG", "set", "(redacted)", "(redacted)"]
        );
    }

    #[test]
    fn values_and_session_ids_are_not_even_copied() {
        let mut copy = ArgCopy::default();
        let held =
            |copy: &ArgCopy, secret: &[u8]| copy.bytes.windows(secret.len()).any(|w| w == secret);
        copy.capture(
            lookup(b"set").unwrap(),
            &args(&["SET", "k", "secret-value"]),
        );
        assert!(!held(&copy, b"secret-value"));
        copy.capture(
            lookup(b"session.set").unwrap(),
            &args(&["SESSION.SET", "the-id", "f", "secret-field-value"]),
        );
        assert!(!held(&copy, b"secret-field-value"));
        assert!(!held(&copy, b"the-id"));
        copy.capture(lookup(b"auth").unwrap(), &args(&["AUTH", "the-password"]));
        assert!(!held(&copy, b"the-password"));
    }

    #[test]
    fn the_log_keeps_the_newest_up_to_its_length() {
        let log = SlowLog::new(0, 2);
        for usec in 0..3 {
            log.push(SlowEntry {
                id: 0,
                unix_s: 1,
                usec,
                args: vec![],
                peer: String::new(),
                client_name: String::new(),
            });
        }
        let entries = log.newest(None);
        assert_eq!(
            entries.iter().map(|e| (e.id, e.usec)).collect::<Vec<_>>(),
            [(2, 2), (1, 1)]
        );
        assert!(log.is_slow(0));
        log.set_slower_than_us(-1);
        assert!(!log.is_slow(u64::MAX));
    }

    #[test]
    fn latency_keeps_one_sample_a_second_and_the_max() {
        let monitor = LatencyMonitor::new(0);
        monitor.observe("command", 500, 1);
        assert!(monitor.events().is_empty());
        monitor.set_threshold_ms(10);
        monitor.observe("command", 5, 1);
        monitor.observe("command", 20, 1);
        monitor.observe("command", 30, 1);
        monitor.observe("command", 15, 2);
        let events = monitor.events();
        assert_eq!(events[0].1.samples, [(1, 30), (2, 15)]);
        assert_eq!(events[0].1.max_ms, 30);
        assert_eq!(monitor.reset(&[Bytes::from("nope")]), 0);
        assert_eq!(monitor.reset(&[]), 1);
    }
}
