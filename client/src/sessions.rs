//! The typed session API: [`Sessions`] (from [`Client::sessions`]) and its values,
//! [`SessionId`], [`NewSession`], [`SessionData`] and [`SessionInfo`].
//!
//! Every method is one `SESSION.*` command. On several nodes, a session lives on the node its
//! ID hashes to. The server picks IDs, so `create` and `regenerate` ask the node for a new ID
//! until one hashes to that node (each step is a `SESSION.REGENERATE`, atomic, so no stray
//! session is left behind): on N nodes they take N round trips on average, every other command
//! one. Per-user commands (`list_for_user`, `count_for_user`, `destroy_all_for_user`) ask every
//! node and merge the answers.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sessiond_protocol::Frame;

use crate::command::{bulk_array, integer, merge, optional_bulk, optional_integer, pairs, Cmd};
use crate::node::Node;
use crate::{Client, Error, ErrorKind, Result};

/// A session's ID, as the server issued it (43 base64url characters).
///
/// `Display` and [`SessionId::as_str`] give the whole ID, for the cookie; `Debug` shows only
/// its first characters, so that logging a value that holds one does not leak a credential.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(String);

impl SessionId {
    /// Wraps an ID received from a browser (a cookie). Nothing is checked: an ID the server
    /// did not issue simply finds no session.
    pub fn new(id: impl Into<String>) -> SessionId {
        SessionId(id.into())
    }

    /// The ID.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ID as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }

    fn from_reply(command: &str, bytes: Bytes) -> Result<SessionId> {
        String::from_utf8(bytes.to_vec())
            .map(SessionId)
            .map_err(|_| Error::protocol(format!("{command} replied with a non-UTF-8 ID")))
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.0.chars().take(4).collect();
        write!(f, "SessionId({shown:?}…)")
    }
}

impl From<String> for SessionId {
    fn from(id: String) -> SessionId {
        SessionId(id)
    }
}

impl From<&str> for SessionId {
    fn from(id: &str) -> SessionId {
        SessionId(id.to_owned())
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// What [`Sessions::create`] makes: an optional user, the two timeouts (the server's defaults
/// when not given) and the initial fields.
///
/// ```
/// use std::time::Duration;
/// use sessiond_client::NewSession;
///
/// let new = NewSession::default()
///     .user("ada")
///     .idle(Duration::from_secs(30 * 60))
///     .absolute(Duration::from_secs(8 * 3600))
///     .field("theme", "dark")
///     .json("cart", &["book", "pen"])?;
/// # Ok::<(), sessiond_client::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    user: Option<String>,
    idle: Option<Duration>,
    absolute: Option<Duration>,
    data: Vec<(Bytes, Bytes)>,
}

impl NewSession {
    /// The user the session belongs to, for `list_for_user` and `destroy_all_for_user`.
    pub fn user(mut self, user: impl Into<String>) -> NewSession {
        self.user = Some(user.into());
        self
    }

    /// The idle timeout: the session ends this long after its last use.
    pub fn idle(mut self, timeout: Duration) -> NewSession {
        self.idle = Some(timeout);
        self
    }

    /// The absolute timeout: the session ends this long after its creation, however busy.
    pub fn absolute(mut self, timeout: Duration) -> NewSession {
        self.absolute = Some(timeout);
        self
    }

    /// An initial field.
    pub fn field(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> NewSession {
        self.data.push((
            Bytes::copy_from_slice(name.as_ref()),
            Bytes::copy_from_slice(value.as_ref()),
        ));
        self
    }

    /// An initial field holding `value` encoded as JSON.
    pub fn json<T: Serialize + ?Sized>(
        self,
        name: impl AsRef<[u8]>,
        value: &T,
    ) -> Result<NewSession> {
        let bytes = serde_json::to_vec(value).map_err(Error::json)?;
        Ok(self.field(name, bytes))
    }

    fn command(&self) -> Cmd {
        let mut command = Cmd::new("SESSION.CREATE");
        if let Some(user) = &self.user {
            command = command.arg("USER").arg(user);
        }
        if let Some(idle) = self.idle {
            command = command.arg("IDLE").ms(idle);
        }
        if let Some(absolute) = self.absolute {
            command = command.arg("ABSOLUTE").ms(absolute);
        }
        if !self.data.is_empty() {
            command = command.arg("DATA");
            for (name, value) in &self.data {
                command = command.arg(name).arg(value);
            }
        }
        command
    }
}

/// A session's fields, as [`Sessions::get`] read them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionData {
    fields: BTreeMap<Bytes, Bytes>,
}

impl SessionData {
    /// A field's value.
    pub fn get(&self, name: impl AsRef<[u8]>) -> Option<&Bytes> {
        self.fields.get(name.as_ref())
    }

    /// A field's value as text; `None` if it is missing or not UTF-8.
    pub fn get_str(&self, name: impl AsRef<[u8]>) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// A field's value decoded from JSON; `Ok(None)` if it is missing.
    pub fn json<T: DeserializeOwned>(&self, name: impl AsRef<[u8]>) -> Result<Option<T>> {
        self.get(name)
            .map(|bytes| serde_json::from_slice(bytes).map_err(Error::json))
            .transpose()
    }

    /// How many fields there are.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The fields, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.fields.iter()
    }

    /// The fields as a map.
    pub fn into_map(self) -> BTreeMap<Bytes, Bytes> {
        self.fields
    }
}

/// A session's metadata, from [`Sessions::info`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The user it belongs to.
    pub user: Option<String>,
    /// When it was created (server clock).
    pub created_at: SystemTime,
    /// When it was last used (read, written or touched).
    pub last_access: SystemTime,
    /// Its idle timeout.
    pub idle_timeout: Duration,
    /// Its absolute timeout, counted from `created_at`.
    pub absolute_timeout: Duration,
    /// When it ends unless used again: the earlier of the two timeouts.
    pub expires_at: SystemTime,
    /// The time left until `expires_at`.
    pub ttl: Duration,
    /// Its version: 1 at creation, one more with every `set` and `unset`.
    pub version: u64,
    /// How many fields it holds.
    pub fields: u64,
    /// The size of its fields' names and values, in bytes.
    pub bytes: u64,
}

impl SessionInfo {
    fn from_reply(reply: Frame) -> Result<SessionInfo> {
        let mut user = None;
        let mut numbers: BTreeMap<String, u64> = BTreeMap::new();
        for (key, value) in pairs("SESSION.INFO", reply)? {
            let key = match key {
                Frame::Bulk(key) | Frame::Simple(key) => String::from_utf8_lossy(&key).into_owned(),
                other => return Err(Error::unexpected("SESSION.INFO", &other)),
            };
            match (key.as_str(), value) {
                ("user", Frame::Bulk(name)) => {
                    user = Some(String::from_utf8_lossy(&name).into_owned())
                }
                ("user", _) => {}
                (_, Frame::Integer(n)) => {
                    numbers.insert(key, n.max(0) as u64);
                }
                _ => {}
            }
        }
        let number = |name: &str| {
            numbers.get(name).copied().ok_or_else(|| {
                Error::protocol(format!("SESSION.INFO reply has no integer {name:?}"))
            })
        };
        let at = |name: &str| number(name).map(|ms| UNIX_EPOCH + Duration::from_millis(ms));
        let ms = |name: &str| number(name).map(Duration::from_millis);
        Ok(SessionInfo {
            user,
            created_at: at("created_ms")?,
            last_access: at("last_access_ms")?,
            idle_timeout: ms("idle_ms")?,
            absolute_timeout: ms("absolute_ms")?,
            expires_at: at("expires_at_ms")?,
            ttl: ms("ttl_ms")?,
            version: number("version")?,
            fields: number("fields")?,
            bytes: number("bytes")?,
        })
    }
}

/// The session commands of a [`Client`]; see the [crate documentation](crate) for a tour.
#[derive(Debug, Clone, Copy)]
pub struct Sessions<'a> {
    pub(crate) client: &'a Client,
}

impl Client {
    /// The session commands.
    pub fn sessions(&self) -> Sessions<'_> {
        Sessions { client: self }
    }
}

impl<'a> Sessions<'a> {
    /// Creates a session and returns its new, server-issued ID.
    pub async fn create(&self, new: NewSession) -> Result<SessionId> {
        let nodes = self.client.nodes();
        let command = new.command().encode();
        if nodes.len() == 1 {
            let reply = nodes[0].request(command).await?;
            return new_id("SESSION.CREATE", reply);
        }
        // Start on the next node round the ring; a node that is down passes to the next one,
        // so sessions can be created while any node is up.
        let start = self.client.next_create_index();
        let mut last_error = None;
        for offset in 0..nodes.len() {
            let node = &nodes[(start + offset) % nodes.len()];
            match node.request(command.clone()).await {
                Ok(reply) => {
                    let id = new_id("SESSION.CREATE", reply)?;
                    return self.settle(node, id).await;
                }
                Err(error)
                    if matches!(error.kind(), ErrorKind::Connection | ErrorKind::Timeout) =>
                {
                    last_error = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::connection("no node to create the session on")))
    }

    /// Regenerates `id` on `node` until the new ID hashes to `node`, the one that holds it.
    /// (Each regeneration keeps the user, data, version and deadlines.)
    async fn settle(&self, node: &Arc<Node>, mut id: SessionId) -> Result<SessionId> {
        // Each try succeeds with probability 1/N; 64 N tries all failing has odds below e^-64.
        let tries = 64 * self.client.nodes().len();
        for _ in 0..=tries {
            if Arc::ptr_eq(self.client.node_for(id.as_str().as_bytes()), node) {
                return Ok(id);
            }
            let command = Cmd::new("SESSION.REGENERATE").arg(id.as_str());
            match optional_bulk("SESSION.REGENERATE", node.request(command.encode()).await?)? {
                Some(new) => id = SessionId::from_reply("SESSION.REGENERATE", new)?,
                None => {
                    return Err(Error::protocol(format!(
                        "node {}: the new session vanished while its ID was being placed \
                         (its timeout is shorter than a round trip?)",
                        node.name()
                    )))
                }
            }
        }
        Err(Error::protocol(format!(
            "node {}: no ID owned by this node after {tries} regenerations",
            node.name()
        )))
    }

    /// All of a session's fields; `None` if there is no such session (never issued, expired,
    /// destroyed). Refreshes its idle timer.
    pub async fn get(&self, id: &SessionId) -> Result<Option<SessionData>> {
        let reply = self
            .on(id, Cmd::new("SESSION.GET").arg(id.as_str()))
            .await?;
        if matches!(reply, Frame::Null | Frame::NullArray) {
            return Ok(None);
        }
        let mut fields = BTreeMap::new();
        for (name, value) in pairs("SESSION.GET", reply)? {
            match (name, value) {
                (Frame::Bulk(name), Frame::Bulk(value)) => {
                    fields.insert(name, value);
                }
                (_, other) => return Err(Error::unexpected("SESSION.GET", &other)),
            }
        }
        Ok(Some(SessionData { fields }))
    }

    /// The values of the named fields, in order (`None` where a field is missing); `None` if
    /// there is no such session. Refreshes its idle timer.
    pub async fn get_fields<F: AsRef<[u8]>>(
        &self,
        id: &SessionId,
        fields: &[F],
    ) -> Result<Option<Vec<Option<Bytes>>>> {
        if fields.is_empty() {
            return Err(Error::config("get_fields needs at least one field"));
        }
        let mut command = Cmd::new("SESSION.GET").arg(id.as_str());
        for field in fields {
            command = command.arg(field);
        }
        match self.on(id, command).await? {
            Frame::Null | Frame::NullArray => Ok(None),
            Frame::Array(values) => values
                .into_iter()
                .map(|value| optional_bulk("SESSION.GET", value))
                .collect::<Result<Vec<_>>>()
                .map(Some),
            other => Err(Error::unexpected("SESSION.GET", &other)),
        }
    }

    /// Writes fields; returns the session's new version, or `None` if there is no such
    /// session. Refreshes its idle timer.
    pub async fn set<I, K, V>(&self, id: &SessionId, fields: I) -> Result<Option<u64>>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        self.set_inner(id, None, fields).await
    }

    /// Writes fields only if the session is still at `version` (the one read before): else
    /// nothing is written and the error is [`ErrorKind::Conflict`], with the session's
    /// [current version](Error::current_version). This is how two concurrent requests avoid
    /// overwriting each other's changes.
    pub async fn set_if_version<I, K, V>(
        &self,
        id: &SessionId,
        version: u64,
        fields: I,
    ) -> Result<Option<u64>>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        self.set_inner(id, Some(version), fields).await
    }

    /// Writes one field holding `value` encoded as JSON; see [`Sessions::set`].
    pub async fn set_json<T: Serialize + ?Sized>(
        &self,
        id: &SessionId,
        field: impl AsRef<[u8]>,
        value: &T,
    ) -> Result<Option<u64>> {
        let bytes = serde_json::to_vec(value).map_err(Error::json)?;
        self.set(id, [(field.as_ref(), bytes)]).await
    }

    async fn set_inner<I, K, V>(
        &self,
        id: &SessionId,
        version: Option<u64>,
        fields: I,
    ) -> Result<Option<u64>>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let mut command = Cmd::new("SESSION.SET").arg(id.as_str());
        if let Some(version) = version {
            command = command.arg("IFVERSION").arg(version.to_string());
        }
        let mut any = false;
        for (name, value) in fields {
            command = command.arg(name).arg(value);
            any = true;
        }
        if !any {
            return Err(Error::config("set needs at least one field"));
        }
        let reply = self.on(id, command).await?;
        Ok(optional_integer("SESSION.SET", reply)?.map(|v| v.max(0) as u64))
    }

    /// Removes fields; returns how many existed, or `None` if there is no such session. The
    /// version grows by one; the idle timer is refreshed.
    pub async fn unset<F: AsRef<[u8]>>(&self, id: &SessionId, fields: &[F]) -> Result<Option<u64>> {
        if fields.is_empty() {
            return Err(Error::config("unset needs at least one field"));
        }
        let mut command = Cmd::new("SESSION.UNSET").arg(id.as_str());
        for field in fields {
            command = command.arg(field);
        }
        let reply = self.on(id, command).await?;
        Ok(optional_integer("SESSION.UNSET", reply)?.map(|n| n.max(0) as u64))
    }

    /// Refreshes the idle timer without reading; returns the time left, or `None` if there is
    /// no such session.
    pub async fn touch(&self, id: &SessionId) -> Result<Option<Duration>> {
        let reply = self
            .on(id, Cmd::new("SESSION.TOUCH").arg(id.as_str()))
            .await?;
        Ok(match integer("SESSION.TOUCH", reply)? {
            ms if ms >= 0 => Some(Duration::from_millis(ms as u64)),
            _ => None,
        })
    }

    /// The session's metadata, without refreshing it; `None` if there is no such session.
    pub async fn info(&self, id: &SessionId) -> Result<Option<SessionInfo>> {
        match self
            .on(id, Cmd::new("SESSION.INFO").arg(id.as_str()))
            .await?
        {
            Frame::Null | Frame::NullArray => Ok(None),
            reply => SessionInfo::from_reply(reply).map(Some),
        }
    }

    /// Moves the session to a new ID with the same data, version and deadlines; the old ID
    /// stops working in the same step. Do this at login (and at any change of privilege) so
    /// that an ID planted before login is worthless. `None` if there is no such session.
    pub async fn regenerate(&self, id: &SessionId) -> Result<Option<SessionId>> {
        self.regenerate_inner(id, None).await
    }

    /// [`Sessions::regenerate`], attaching the session to `user` (the usual login step).
    pub async fn regenerate_for_user(
        &self,
        id: &SessionId,
        user: &str,
    ) -> Result<Option<SessionId>> {
        self.regenerate_inner(id, Some(user)).await
    }

    async fn regenerate_inner(
        &self,
        id: &SessionId,
        user: Option<&str>,
    ) -> Result<Option<SessionId>> {
        let mut command = Cmd::new("SESSION.REGENERATE").arg(id.as_str());
        if let Some(user) = user {
            command = command.arg("USER").arg(user);
        }
        let node = self.client.node_for(id.as_str().as_bytes());
        let Some(new) = optional_bulk("SESSION.REGENERATE", node.request(command.encode()).await?)?
        else {
            return Ok(None);
        };
        let new = SessionId::from_reply("SESSION.REGENERATE", new)?;
        self.settle(node, new).await.map(Some)
    }

    /// Ends the session (logout); `true` if it existed.
    pub async fn destroy(&self, id: &SessionId) -> Result<bool> {
        let reply = self
            .on(id, Cmd::new("SESSION.DESTROY").arg(id.as_str()))
            .await?;
        Ok(integer("SESSION.DESTROY", reply)? > 0)
    }

    /// The user's live sessions, oldest first (on several nodes: oldest first within each
    /// node, nodes in the order they were given).
    pub async fn list_for_user(&self, user: &str) -> Result<Vec<SessionId>> {
        let command = Cmd::new("SESSION.LIST").arg(user).encode();
        let replies = self
            .client
            .fan_out(command)
            .await
            .into_iter()
            .map(|(node, reply)| {
                let ids = reply.and_then(|frame| bulk_array("SESSION.LIST", frame));
                (node, ids)
            })
            .collect();
        let lists = merge("SESSION.LIST", replies, |_| String::new())?;
        lists
            .into_iter()
            .flatten()
            .map(|id| SessionId::from_reply("SESSION.LIST", id))
            .collect()
    }

    /// How many live sessions the user has.
    pub async fn count_for_user(&self, user: &str) -> Result<u64> {
        let command = Cmd::new("SESSION.COUNT").arg(user).encode();
        let replies = self
            .client
            .fan_out(command)
            .await
            .into_iter()
            .map(|(node, reply)| (node, reply.and_then(|f| integer("SESSION.COUNT", f))))
            .collect();
        let counts = merge("SESSION.COUNT", replies, |_| String::new())?;
        Ok(counts.into_iter().map(|n| n.max(0) as u64).sum())
    }

    /// Ends every session of the user except `except` ("log out my other devices"), or all
    /// of them ("log out everywhere"); returns how many ended. On several nodes every node
    /// that answers ends its share even if another fails, and the error then says how many
    /// ended and which nodes did not answer.
    pub async fn destroy_all_for_user(
        &self,
        user: &str,
        except: Option<&SessionId>,
    ) -> Result<u64> {
        let mut command = Cmd::new("SESSION.DESTROYALL").arg(user);
        if let Some(except) = except {
            command = command.arg("EXCEPT").arg(except.as_str());
        }
        let replies = self
            .client
            .fan_out(command.encode())
            .await
            .into_iter()
            .map(|(node, reply)| (node, reply.and_then(|f| integer("SESSION.DESTROYALL", f))))
            .collect();
        let counts = merge("SESSION.DESTROYALL", replies, |done| {
            let ended: i64 = done.iter().sum();
            format!("; {ended} sessions ended on the others")
        })?;
        Ok(counts.into_iter().map(|n| n.max(0) as u64).sum())
    }

    async fn on(&self, id: &SessionId, command: Cmd) -> Result<Frame> {
        self.client.on_key(id.as_str().as_bytes(), command).await
    }
}

fn new_id(command: &str, reply: Frame) -> Result<SessionId> {
    match reply {
        Frame::Bulk(id) => SessionId::from_reply(command, id),
        other => Err(Error::unexpected(command, &other)),
    }
}
