//! [`Settings`]: what the builder validated and every node and connection reads, in a module
//! of its own so that `node.rs` (the pool) and `connection.rs` (one connection) both sit above it.

use std::time::Duration;

/// Timeouts, pool size and backoff, as the builder validated them.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub pool_size: usize,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// The database every connection selects, for nodes whose URL names none.
    pub database: u32,
    /// For `sessionds://`/`rediss://` nodes; made by the builder when one is listed.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::TlsConfig>,
}
