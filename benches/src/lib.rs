//! The benchmark harness of sessiond: the `sessiond-bench` load generator, as a library so the
//! tests drive the same code, and (in `benches/`) criterion micro-benchmarks.
//!
//! `sessiond-bench` speaks RESP through `sessiond-protocol` (`ClientCodec::encode_command` to
//! write, `FrameDecoder` to read), so its key/value workloads (`set`, `get`, `mixed`) run
//! unchanged against redis-server for side-by-side numbers, as do `multi`, `evalsha` and
//! `publish` (PUBLISH to `--subscribers` subscribed connections, reporting the messages they
//! receive per second); the session workloads use sessiond's SESSION.* commands.
//!
//! - [`config`]: the flags ([`Args`]) and the validated run ([`Config`]).
//! - [`workload`]: what each connection sends ([`Generator`]).
//! - [`run()`]: the closed and open loops, and the [`Report`] they produce; publish's
//!   subscribers count what they receive without decoding it.
//! - [`stats`]: HDR latency histograms, counters, the text and JSON report.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use clap::Parser;
//! use sessiond_bench::{run, Args};
//! let config = Args::parse_from(["sessiond-bench", "get", "-n", "100000"]).validate()?;
//! let report = run(&config, false).await?;
//! println!("{report}");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod config;
mod fanout;
mod run;
pub mod stats;
pub mod workload;

pub use config::{Args, Config, ConfigError, Stop, Workload};
pub use run::{run, BenchError};
pub use stats::{Delivery, Report};
pub use workload::{Generator, Op};
