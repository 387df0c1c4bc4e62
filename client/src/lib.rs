//! The client web servers use to keep their users' sessions in sessiond.
//!
//! Async on tokio. One [`Client`] per process, cloned into every handler: it keeps a small pool
//! of multiplexed connections per server, pipelines the commands of any number of concurrent
//! tasks over them, reconnects (with backoff) when a server restarts, and can spread sessions
//! over several servers.
//!
//! # Sessions
//!
//! The server issues every session ID, enforces an idle and an absolute timeout, moves a
//! session to a new ID atomically, lists a user's sessions and ends them all at once, and
//! refuses a write based on a stale read.
//!
//! ```no_run
//! use std::time::Duration;
//! use sessiond_client::{Client, ErrorKind, NewSession};
//!
//! # async fn demo() -> sessiond_client::Result<()> {
//! let client = Client::connect("sessiond://127.0.0.1:6380").await?;
//! let sessions = client.sessions();
//!
//! // An anonymous visitor gets a session (the server's default timeouts: 30 min idle, 8 h).
//! let visitor = sessions.create(NewSession::default().json("cart", &["book"])?).await?;
//!
//! // Login: a new ID for the same data, attached to the user; the old ID is dead at once.
//! let id = sessions.regenerate_for_user(&visitor, "ada").await?.expect("still alive");
//!
//! // A request: read the session (this refreshes its idle timer).
//! let Some(data) = sessions.get(&id).await? else {
//!     return Ok(()); // expired or logged out: answer 401
//! };
//! let cart: Vec<String> = data.json("cart")?.unwrap_or_default();
//!
//! // A write that cannot overwrite a concurrent request's write.
//! let version = sessions.info(&id).await?.expect("alive").version;
//! match sessions.set_if_version(&id, version, [("cart", r#"["book","pen"]"#)]).await {
//!     Ok(_) => {}
//!     Err(e) if e.kind() == ErrorKind::Conflict => { /* re-read, merge, write again */ }
//!     Err(e) => return Err(e),
//! }
//!
//! // "Log out my other devices", then log out.
//! sessions.destroy_all_for_user("ada", Some(&id)).await?;
//! sessions.destroy(&id).await?;
//! # let _ = cart; Ok(()) }
//! ```
//!
//! # Session events
//!
//! [`Sessions::events`] subscribes to the server's session events on every node: a
//! [`Stream`](futures_core::Stream) of [`SessionEvent`]s, to close a user's websockets at
//! logout or clean up after an expiry. It does not reconnect (pub/sub delivers at most once):
//! a dropped connection ends it with an error; see [`SessionEvents`].
//!
//! ```no_run
//! # async fn demo(client: sessiond_client::Client) -> sessiond_client::Result<()> {
//! use sessiond_client::SessionEvent;
//!
//! let mut events = client.sessions().events().await?;
//! while let Some(event) = events.next().await {
//!     if let SessionEvent::Destroyed { id, user } = event? {
//!         // close the connections of session `id`, tell `user`'s other devices
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Keys
//!
//! Plain string keys with Redis's semantics, for anything else a web server caches:
//!
//! ```no_run
//! # async fn demo(client: sessiond_client::Client) -> sessiond_client::Result<()> {
//! use std::time::Duration;
//!
//! client.set_with_ttl("rate:ada", "1", Duration::from_secs(60)).await?;
//! let count = client.get("rate:ada").await?;
//! client.expire("rate:ada", Duration::from_secs(10)).await?;
//! client.del("rate:ada").await?;
//! # Ok(()) }
//! ```
//!
//! # Settings, several servers
//!
//! [`Client::builder`] sets the connect and command timeouts, the connections per server, the
//! reconnect backoff and the database every connection selects ([`Builder::database`]; a URL's
//! path, `redis://host:port/1`, names one for its node). Given several nodes, the client owns each key and session on one of
//! them, chosen by rendezvous hashing, and asks every node for per-user operations; a node
//! that is down makes the commands for what it owns fail at once with an
//! [`ErrorKind::Connection`] error naming it, while the others carry on.
//!
//! ```no_run
//! # async fn demo() -> sessiond_client::Result<()> {
//! use std::time::Duration;
//!
//! let client = sessiond_client::Client::builder()
//!     .nodes(["sessiond://10.0.0.1:6380", "sessiond://10.0.0.2:6380"])
//!     .command_timeout(Duration::from_millis(500))
//!     .build()?; // connects on first use
//! # Ok(()) }
//! ```
//!
//! # TLS
//!
//! With the `tls` feature, `sessionds://` and `rediss://` URLs connect with TLS (rustls, TLS 1.2
//! and 1.3), checking the server's certificate against Mozilla's roots, or against a CA file
//! given with [`Builder::tls_ca_file`]; [`Builder::tls_client_cert`] presents a client
//! certificate, for servers started with `--tls-ca-cert-file`.
//!
//! ```no_run
//! # #[cfg(feature = "tls")]
//! # async fn demo() -> sessiond_client::Result<()> {
//! let client = sessiond_client::Client::builder()
//!     .node("rediss://:password@sessiond.internal:6381")
//!     .tls_ca_file("/etc/sessiond/ca.pem")
//!     .tls_client_cert("/etc/sessiond/web1.pem", "/etc/sessiond/web1.key")
//!     .connect()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Failover with Redis Sentinel
//!
//! Where Redis Sentinel watches a primary and its replicas, give the client the sentinels rather
//! than a node: `redis+sentinel://[user:password@]host1:port1,host2:port2/master[/db]` (a
//! sentinel's port defaults to 26379; `master` is the name of `sentinel monitor`; the login and
//! database are the primary's, the sentinels are asked without one). The client asks the sentinels
//! in turn for the primary (`SENTINEL get-master-addr-by-name`), checks with `ROLE` that it is one,
//! and asks again when a connection to it breaks, a command times out or gets `READONLY` or
//! `LOADING` (it was demoted). A command refused with `READONLY` did not run and is sent once more to the new
//! primary; one whose connection broke before its reply is sent again only if it is one of
//! [`IDEMPOTENT`] (reads, and the session reads that refresh the idle timer), else it fails with
//! [`ErrorKind::Connection`] (it may or may not have run). During the failover itself (Sentinel's
//! `down-after-milliseconds`, then its election), commands fail.
//!
//! ```no_run
//! # async fn demo() -> sessiond_client::Result<()> {
//! let client = sessiond_client::Client::connect(
//!     "redis+sentinel://:password@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/sessions",
//! )
//! .await?;
//! # Ok(()) }
//! ```
//!
//! # tower-sessions
//!
//! With the `tower-sessions` feature, [`SessiondStore`] is a
//! `tower_sessions_core::SessionStore`: `SessionManagerLayer::new(SessiondStore::new(client))`.
//!
//! # Errors
//!
//! Every method returns [`Error`], whose [`ErrorKind`] says what happened: a connection that
//! could not be made or was lost, a timeout, a reply that is not RESP, a refused login, the
//! server's error reply, a version conflict, or a value that is not the JSON expected.
//!
//! # Types
//!
//! - [`Client`], [`Builder`]: the connection pool and its settings; [`KeyTtl`].
//! - [`Sessions`]: the session commands; [`SessionId`], [`NewSession`], [`SessionData`],
//!   [`SessionInfo`].
//! - [`SessionEvents`], [`SessionEvent`]: the session events; [`SESSION_EVENT_CHANNELS`].
//! - [`Error`], [`ErrorKind`], [`Result`].
//! - [`NodeAddr`]: a parsed `sessiond://` URL; [`SentinelAddr`]: a parsed `redis+sentinel://`
//!   URL; [`IDEMPOTENT`]: the commands sent again after a failover.
//! - [`protocol`]: the RESP frames and codecs the client is built on.
#![deny(missing_docs)]

mod client;
mod command;
mod connection;
mod error;
mod events;
mod node;
mod sentinel;
mod sessions;
mod settings;
mod shard;
#[cfg(feature = "tower-sessions")]
mod store;
#[cfg(feature = "tls")]
mod tls;
mod url;

pub use client::{Builder, Client, KeyTtl};
pub use error::{Error, ErrorKind, Result};
pub use events::{SessionEvent, SessionEvents, SESSION_EVENT_CHANNELS};
pub use node::IDEMPOTENT;
pub use sessions::{NewSession, SessionData, SessionId, SessionInfo, Sessions};
#[cfg(feature = "tower-sessions")]
pub use store::{SessiondStore, DEFAULT_PREFIX};
pub use url::{NodeAddr, SentinelAddr};

pub use sessiond_protocol as protocol;
