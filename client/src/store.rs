//! [`SessiondStore`]: a [`tower_sessions_core::SessionStore`] that keeps tower-sessions'
//! records in sessiond (feature `tower-sessions`).
//!
//! tower-sessions makes its own session IDs and keeps its own expiry date, so its records are
//! plain string keys (`<prefix><id>`) holding the record as JSON, written with `PXAT` at the
//! record's expiry date: the server's clock ends them, and every web server sees the same
//! answer. Each operation is one command, atomic on the server:
//!
//! | method | command | why |
//! |---|---|---|
//! | `create` | `SET key record NX PXAT expiry` | never overwrites: on a taken ID, draw another |
//! | `save` | `SET key record XX PXAT expiry` | only updates a live record: a save racing a logout or an expiry does not bring the session back |
//! | `load` | `GET key` | `None` once missing or expired |
//! | `delete` | `DEL key` | idempotent |
//!
//! For server-issued IDs, idle and absolute timeouts, regeneration, per-user lists and
//! versioned writes, use [`Sessions`](crate::Sessions) directly.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use sessiond_protocol::Frame;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::session_store::{self, SessionStore};

use crate::command::{optional_bulk, Cmd};
use crate::Client;

/// The key prefix when none is given.
pub const DEFAULT_PREFIX: &str = "tower-sessions:";

/// How many fresh IDs `create` draws before giving up (a collision of 128-bit random IDs is
/// already astronomically unlikely once).
const CREATE_TRIES: usize = 16;

/// A tower-sessions store backed by sessiond.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use sessiond_client::{Client, SessiondStore};
///
/// let client = Client::connect("sessiond://127.0.0.1:6380").await?;
/// let store = SessiondStore::new(client);
/// // tower_sessions::SessionManagerLayer::new(store) ... as with any other store.
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SessiondStore {
    client: Client,
    prefix: String,
}

impl SessiondStore {
    /// A store keeping records under `tower-sessions:<id>`.
    pub fn new(client: Client) -> SessiondStore {
        SessiondStore::with_prefix(client, DEFAULT_PREFIX)
    }

    /// A store keeping records under `<prefix><id>` (one prefix per application sharing the
    /// server).
    pub fn with_prefix(client: Client, prefix: impl Into<String>) -> SessiondStore {
        SessiondStore {
            client,
            prefix: prefix.into(),
        }
    }

    /// The client the store uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn key(&self, id: &Id) -> String {
        format!("{}{id}", self.prefix)
    }

    /// `SET key record <condition> PXAT expiry`; `true` if the condition held and it was set.
    async fn set(&self, record: &Record, condition: &'static str) -> session_store::Result<bool> {
        let value = serde_json::to_vec(record).map_err(|e| encode(&e))?;
        let key = self.key(&record.id);
        let deadline_ms = unix_ms(record.expiry_date.into());
        let command = Cmd::new("SET")
            .arg(&key)
            .arg(value)
            .arg(condition)
            .arg("PXAT")
            .arg(deadline_ms.to_string());
        match self.client.on_key(key.as_bytes(), command).await {
            Ok(Frame::Simple(_)) => Ok(true),
            Ok(Frame::Null | Frame::NullArray) => Ok(false),
            Ok(other) => Err(backend(format!("unexpected reply to SET: {other:?}"))),
            Err(error) => Err(backend(error)),
        }
    }
}

#[async_trait]
impl SessionStore for SessiondStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        for _ in 0..CREATE_TRIES {
            if self.set(record, "NX").await? {
                return Ok(());
            }
            // The ID is taken: never overwrite another session, draw a new ID.
            record.id = Id::default();
        }
        Err(backend(format!(
            "no free session ID after {CREATE_TRIES} tries"
        )))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        // `false`: the record was deleted or expired since it was loaded; it stays gone.
        self.set(record, "XX").await.map(drop)
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let key = self.key(session_id);
        let reply = self
            .client
            .on_key(key.as_bytes(), Cmd::new("GET").arg(&key))
            .await
            .map_err(backend)?;
        let Some(bytes): Option<Bytes> = optional_bulk("GET", reply).map_err(backend)? else {
            return Ok(None);
        };
        let record: Record = serde_json::from_slice(&bytes)
            .map_err(|e| session_store::Error::Decode(format!("session record: {e}")))?;
        Ok(Some(record))
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        let key = self.key(session_id);
        self.client
            .on_key(key.as_bytes(), Cmd::new("DEL").arg(&key))
            .await
            .map(drop)
            .map_err(backend)
    }
}

/// Unix milliseconds, at least 1 (`PXAT 0` is refused; any past time means "already expired").
fn unix_ms(at: SystemTime) -> u64 {
    let ms = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    ms.clamp(1, i64::MAX as u128) as u64
}

fn backend(error: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(format!("sessiond: {error}"))
}

fn encode(error: &serde_json::Error) -> session_store::Error {
    session_store::Error::Encode(error.to_string())
}
