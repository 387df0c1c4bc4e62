//! sessiond: a session-store server that speaks RESP.
//!
//! The binary (`src/bin/sessiond.rs`) only parses flags, sets up logging, binds and calls
//! [`Server::run`]; everything else is here, so tests drive the same code:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use sessiond::{Config, Server};
//! let server = Server::bind(Config { port: 0, ..Config::default() }).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! - [`config`]: flags, environment and TOML file → validated [`Config`].
//! - [`server`]: the accept loops (plaintext and TLS), `maxclients`, graceful shutdown.
//! - [`shared`]: the state every connection shares, below the connections and the commands.
//! - [`connection`]: one task per connection; decode all, execute all, one write.
//! - [`tls`]: the TLS listener's certificates (rustls, ring) and handshake.
//! - [`cmd`]: the effect of each command.
//! - [`script`]: Lua scripting (EVAL): the script cache, one interpreter per thread, the
//!   sandbox; [`script_cache`]: the scripts cache, below [`shared`].
//! - [`store`]: the sharded keyspace, deadlines and active expiry.
//! - [`notify`]: keyspace notifications and session events (`notify-keyspace-events`).
//! - [`clock`]: the one source of time, manual in tests.
//! - [`idle_poll`]: a single-threaded server polls a little before it sleeps.
//! - [`pubsub`]: channels, patterns and the delivery of PUBLISH's messages.
//! - [`output_limit`]: `client-output-buffer-limit`, the most reply data held for a client.

pub mod auth;
pub mod clients;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod connection;
pub mod glob;
pub mod histogram;
pub mod idle_poll;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod output_limit;
pub mod pause;
pub mod persist;
pub mod process;
pub mod pubsub;
pub mod replication;
pub mod role;
pub mod script;
pub mod script_cache;
pub mod server;
#[cfg(test)]
mod server_aof_tests;
pub mod setting;
pub mod shared;
pub mod slowlog;
pub mod stats;
pub mod store;
pub mod tls;

pub use clock::{Clock, ManualClock};
pub use config::{Config, ConfigError, LogFormat, RawConfig};
pub use server::{build_runtime, run, Server, ServerError};
pub use shared::Shared;
pub use store::Store;
