//! The client crate against the real server, started in-process on `127.0.0.1:0`: one test
//! binary with a module per area.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed case

mod api;
mod axum_login;
mod concurrency;
mod databases;
mod errors;
mod events;
mod reconnect;
mod sentinel;
mod sharding;
mod store;
mod tls;

use std::net::SocketAddr;
use std::time::Duration;

use sessiond_client::Client;

/// The URL of a server.
pub fn url(addr: SocketAddr) -> String {
    format!("sessiond://{addr}")
}

/// A client of one server with the default settings but short timeouts, so that a hung test
/// fails rather than hangs.
pub async fn connect(addr: SocketAddr) -> Client {
    Client::builder()
        .node(url(addr))
        .command_timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect to the test server")
}
