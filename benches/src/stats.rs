//! What a run measured: latency histograms per command kind (HDR, microseconds), counts of
//! requests, hits, misses and errors, and the [`Report`] made of them.
//!
//! Connections record into a [`Samples`] buffer of their own and hand it to the shared
//! [`Recorder`] every few thousand replies, so one set of histograms serves the whole run (an HDR
//! histogram at 3 significant digits is a few hundred KiB; one per connection would not scale to
//! thousands of connections) and the lock is taken rarely.

use std::fmt::{self, Write as _};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::workload::{Op, Outcome};

/// The largest latency recorded, in microseconds (60 s); longer ones are recorded as this.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Samples a connection buffers before taking the recorder's lock.
pub const SAMPLE_BATCH: usize = 4096;

/// The run's histograms and counters.
#[derive(Debug)]
pub struct Recorder {
    per_op: Vec<Option<Histogram<u64>>>,
    counts: Counts,
}

/// Counters of a run or of a connection's buffered samples.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Replies received to measured requests.
    pub requests: u64,
    /// Reads that found their key or session, and writes that succeeded.
    pub hits: u64,
    /// Reads of a missing key or session.
    pub misses: u64,
    /// Error replies and replies the command cannot give.
    pub errors: u64,
    /// The first error's text.
    pub first_error: Option<String>,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.hits += other.hits;
        self.misses += other.misses;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

/// One connection's measurements since its last flush.
#[derive(Debug, Default)]
pub struct Samples {
    latencies: Vec<(Op, u64)>,
    counts: Counts,
}

impl Samples {
    /// Records the reply to a measured request of kind `op`, `latency` after it was (meant to
    /// be) sent. Returns whether the buffer is full and wants a [`Recorder::absorb`].
    #[inline]
    pub fn record(&mut self, op: Op, latency: Duration, outcome: Outcome) -> bool {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latencies.push((op, us.clamp(1, MAX_LATENCY_US)));
        self.counts.requests += 1;
        match outcome {
            Outcome::Hit => self.counts.hits += 1,
            Outcome::Miss => self.counts.misses += 1,
            Outcome::Error(message) => {
                self.counts.errors += 1;
                if self.counts.first_error.is_none() {
                    self.counts.first_error = Some(message);
                }
            }
        }
        self.latencies.len() >= SAMPLE_BATCH
    }

    /// Counts an error that came with no reply.
    pub fn error(&mut self, message: String) {
        self.counts.errors += 1;
        if self.counts.first_error.is_none() {
            self.counts.first_error = Some(message);
        }
    }
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            per_op: Op::ALL.iter().map(|_| None).collect(),
            counts: Counts::default(),
        }
    }
}

impl Recorder {
    /// Moves a connection's samples into the run's histograms, leaving `samples` empty.
    pub fn absorb(&mut self, samples: &mut Samples) {
        for (op, us) in samples.latencies.drain(..) {
            let histogram = self.per_op[op.index()].get_or_insert_with(new_histogram);
            histogram.saturating_record(us);
        }
        self.counts.add(&samples.counts);
        samples.counts = Counts::default();
    }

    /// The counters so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The report of a run that measured for `elapsed`.
    pub fn report(&self, run: RunInfo, elapsed: Duration) -> Report {
        let mut all = new_histogram();
        let mut commands = Vec::new();
        for op in Op::ALL {
            if let Some(histogram) = &self.per_op[op.index()] {
                // Same bounds and precision, so adding cannot fail.
                let _ = all.add(histogram);
                commands.push(CommandReport {
                    command: op.name(),
                    requests: histogram.len(),
                    latency_ms: Latency::of(histogram),
                });
            }
        }
        let elapsed_s = elapsed.as_secs_f64();
        let throughput_rps = if elapsed_s > 0.0 {
            self.counts.requests as f64 / elapsed_s
        } else {
            0.0
        };
        Report {
            run,
            requests: self.counts.requests,
            hits: self.counts.hits,
            misses: self.counts.misses,
            errors: self.counts.errors,
            first_error: self.counts.first_error.clone(),
            elapsed_s,
            throughput_rps,
            latency_ms: Latency::of(&all),
            commands,
            delivery: None,
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits: constant arguments that are always valid.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .unwrap_or_else(|_| unreachable!("valid histogram bounds"))
}

/// What was run, as the report repeats it.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// The workload's name.
    pub workload: &'static str,
    /// `host:port`.
    pub target: String,
    /// Connections.
    pub clients: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// The open-loop rate asked for, requests per second; `None` for a closed loop.
    pub rate: Option<f64>,
    /// Bytes per value, `160` or `100-400`.
    pub value_size: String,
    /// Keys, users or initial sessions.
    pub keyspace: u64,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    #[serde(rename = "p99.9")]
    pub p999: f64,
    /// The largest.
    pub max: f64,
    /// The mean.
    pub mean: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
        }
    }
}

/// One command kind's share of a run.
#[derive(Debug, Clone, Serialize)]
pub struct CommandReport {
    /// The command's name.
    pub command: &'static str,
    /// Replies measured.
    pub requests: u64,
    /// Their latency.
    pub latency_ms: Latency,
}

/// The result of a run; `Display` is the text report, `serde` the `--json` one.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was run.
    #[serde(flatten)]
    pub run: RunInfo,
    /// Replies measured.
    pub requests: u64,
    /// Reads that found their key or session, and writes that succeeded.
    pub hits: u64,
    /// Reads of a missing key or session.
    pub misses: u64,
    /// Error replies and replies the command cannot give.
    pub errors: u64,
    /// The first error's text.
    pub first_error: Option<String>,
    /// Seconds from the start of measuring to the last measured reply.
    pub elapsed_s: f64,
    /// Measured requests per second.
    pub throughput_rps: f64,
    /// Latency of every measured request; from its intended send time in an open-loop run.
    pub latency_ms: Latency,
    /// Per command kind.
    pub commands: Vec<CommandReport>,
    /// publish: what the subscribers received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
}

/// What publish's subscribers received.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delivery {
    /// Connections subscribed to the channel.
    pub subscribers: usize,
    /// Messages they received while measuring, all subscribers together.
    pub messages: u64,
    /// Seconds from the start of measuring to the last message received.
    pub elapsed_s: f64,
    /// `messages / elapsed_s`: the server's fan-out rate.
    pub messages_per_s: f64,
    /// Messages the PUBLISH replies counted (warmup included) that no subscriber received: the
    /// server cut a subscriber off, or delivery stalled at the end of the run.
    pub missing: u64,
    /// Subscribers whose connection failed during the run.
    pub lost_subscribers: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let run = &self.run;
        let mode = match run.rate {
            Some(rate) => format!("open loop at {rate} req/s"),
            None => "closed loop".to_owned(),
        };
        writeln!(
            f,
            "{} on {}: {} clients, pipeline {}, {mode}, {}-byte values, keyspace {}",
            run.workload, run.target, run.clients, run.pipeline, run.value_size, run.keyspace
        )?;
        writeln!(
            f,
            "  throughput  {:.0} requests/s ({} requests in {:.3} s)",
            self.throughput_rps, self.requests, self.elapsed_s
        )?;
        let mut errors = self.errors.to_string();
        if let Some(first) = &self.first_error {
            let _ = write!(errors, " (first: {first})");
        }
        writeln!(f, "  errors      {errors}")?;
        if let Some(delivery) = &self.delivery {
            writeln!(
                f,
                "  delivered   {:.0} messages/s ({} messages to {} subscribers in {:.3} s)",
                delivery.messages_per_s,
                delivery.messages,
                delivery.subscribers,
                delivery.elapsed_s
            )?;
            if delivery.missing > 0 || delivery.lost_subscribers > 0 {
                writeln!(
                    f,
                    "  undelivered {} messages, {} subscribers lost",
                    delivery.missing, delivery.lost_subscribers
                )?;
            }
        }
        if self.misses > 0 {
            writeln!(f, "  misses      {} (hits {})", self.misses, self.hits)?;
        }
        let corrected = if run.rate.is_some() {
            ", from intended send times"
        } else {
            ""
        };
        writeln!(
            f,
            "  latency ms  {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}{corrected}",
            "", "p50", "p90", "p99", "p99.9", "max"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, l: &Latency| {
            writeln!(
                f,
                "  {:>22} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
                name, l.p50, l.p90, l.p99, l.p999, l.max
            )
        };
        row(f, "all", &self.latency_ms)?;
        if self.commands.len() > 1 {
            for command in &self.commands {
                row(f, command.command, &command.latency_ms)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RunInfo {
        RunInfo {
            workload: "mixed",
            target: "127.0.0.1:6380".to_owned(),
            clients: 2,
            pipeline: 1,
            rate: None,
            value_size: "160".to_owned(),
            keyspace: 10,
        }
    }

    #[test]
    fn samples_become_percentiles_per_command_and_overall() {
        let mut recorder = Recorder::default();
        let mut samples = Samples::default();
        for ms in 1..=100u64 {
            samples.record(Op::Get, Duration::from_millis(ms), Outcome::Hit);
        }
        samples.record(Op::Set, Duration::from_secs(1), Outcome::Miss);
        samples.record(
            Op::Set,
            Duration::from_secs(3600),
            Outcome::Error("ERR x".into()),
        );
        recorder.absorb(&mut samples);
        assert_eq!(samples.latencies.len(), 0);
        let report = recorder.report(info(), Duration::from_secs(2));
        assert_eq!(report.requests, 102);
        assert_eq!((report.hits, report.misses, report.errors), (100, 1, 1));
        assert_eq!(report.first_error.as_deref(), Some("ERR x"));
        assert!((report.throughput_rps - 51.0).abs() < 1e-9);
        let get = report.commands.iter().find(|c| c.command == "GET").unwrap();
        assert_eq!(get.requests, 100);
        assert!(
            (get.latency_ms.p50 - 50.0).abs() < 0.1,
            "{:?}",
            get.latency_ms
        );
        assert!((get.latency_ms.p99 - 99.0).abs() < 0.1);
        assert!((get.latency_ms.max - 100.0).abs() < 0.1);
        // An hour is recorded as the 60-second ceiling.
        assert!((report.latency_ms.max - 60_000.0).abs() < 60.0);
        assert_eq!(
            report.commands[0].command, "SET",
            "report order follows Op::ALL"
        );

        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["workload"], "mixed");
        assert_eq!(json["requests"], 102);
        assert!(json["latency_ms"]["p99.9"].is_number());
        let text = report.to_string();
        assert!(text.contains("errors      1 (first: ERR x)"), "{text}");
        assert!(text.contains("GET"), "{text}");
    }
}
