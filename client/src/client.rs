//! [`Client`] and its [`Builder`]: the handle every task shares, routing each command to the
//! node that owns its key, and the plain key commands (`get`, `set`, `del`, `expire`, `ttl`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sessiond_protocol::Frame;
use tokio::task::JoinSet;

use crate::command::{expect_ok, integer, optional_bulk, Cmd};
use crate::node::{Endpoint, Node};
use crate::settings::Settings;
#[cfg(feature = "tls")]
use crate::url::NodeAddr;
use crate::{shard, Error, Result};

/// Settings for a [`Client`]: its nodes, timeouts and pool size.
///
/// ```no_run
/// # async fn demo() -> sessiond_client::Result<()> {
/// use std::time::Duration;
///
/// let client = sessiond_client::Client::builder()
///     .node("sessiond://127.0.0.1:6380")
///     .connect_timeout(Duration::from_secs(2))
///     .command_timeout(Duration::from_millis(500))
///     .pool_size(4)
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    urls: Vec<String>,
    settings: Settings,
    #[cfg(feature = "tls")]
    tls: crate::tls::TlsOptions,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            urls: Vec::new(),
            settings: Settings {
                connect_timeout: Duration::from_secs(5),
                command_timeout: Duration::from_secs(5),
                pool_size: 2,
                reconnect_min: Duration::from_millis(50),
                reconnect_max: Duration::from_secs(1),
                database: 0,
                #[cfg(feature = "tls")]
                tls: None,
            },
            #[cfg(feature = "tls")]
            tls: crate::tls::TlsOptions::default(),
        }
    }
}

impl Builder {
    /// Adds a server: `sessiond://[user:password@]host:port` (or `redis://`; `sessionds://` or
    /// `rediss://` for TLS, with the `tls` feature), or a primary found through Redis Sentinel,
    /// `redis+sentinel://[user:password@]host1:port1,host2:port2/master[/db]` (the sentinels'
    /// addresses, then the name they monitor it under; the login and database are the
    /// primary's), which the client follows across failovers. With more than one, keys and
    /// sessions are spread over them by rendezvous hashing.
    pub fn node(mut self, url: impl Into<String>) -> Builder {
        self.urls.push(url.into());
        self
    }

    /// Adds several servers; see [`Builder::node`].
    pub fn nodes<I>(mut self, urls: I) -> Builder
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.urls.extend(urls.into_iter().map(Into::into));
        self
    }

    /// How long opening a connection (TCP connect and login) may take. Default 5 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Builder {
        self.settings.connect_timeout = timeout;
        self
    }

    /// How long a command may wait for its reply, connecting included. Default 5 s.
    pub fn command_timeout(mut self, timeout: Duration) -> Builder {
        self.settings.command_timeout = timeout;
        self
    }

    /// The database every connection selects (`SELECT`) when it connects or reconnects, for
    /// the nodes whose URL names none (`redis://host:port/3` selects 3). Default 0.
    pub fn database(mut self, index: u32) -> Builder {
        self.settings.database = index;
        self
    }

    /// Connections per node. Each is multiplexed (any number of tasks pipeline their commands
    /// over it), so a few are plenty. Default 2.
    pub fn pool_size(mut self, connections: usize) -> Builder {
        self.settings.pool_size = connections;
        self
    }

    /// The delay before reconnecting to a node after a failed attempt: `min` after the first
    /// failure, doubling with each further one up to `max`. Until it elapses, commands for that
    /// node fail at once. Default 50 ms to 1 s.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Builder {
        self.settings.reconnect_min = min;
        self.settings.reconnect_max = max;
        self
    }

    /// For TLS nodes: trust the CA certificates in this PEM file (a private CA's `ca.pem`)
    /// instead of Mozilla's roots. The server's certificate must name the URL's host.
    #[cfg(feature = "tls")]
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Builder {
        self.tls.ca_file = Some(path.into());
        self
    }

    /// For TLS nodes: present this client certificate (PEM, leaf first) and its private key
    /// (PEM), as a server started with `--tls-ca-cert-file` requires.
    #[cfg(feature = "tls")]
    pub fn tls_client_cert(
        mut self,
        cert_file: impl Into<std::path::PathBuf>,
        key_file: impl Into<std::path::PathBuf>,
    ) -> Builder {
        self.tls.client_cert = Some((cert_file.into(), key_file.into()));
        self
    }

    /// The client, without connecting: each node is connected to on first use. Fails only on
    /// an unusable URL or setting (TLS files are read here).
    pub fn build(self) -> Result<Client> {
        let settings = &self.settings;
        if self.urls.is_empty() {
            return Err(Error::config("no node: add one with Builder::node"));
        }
        if settings.pool_size == 0 || settings.pool_size > 1024 {
            return Err(Error::config(format!(
                "pool size {} is not between 1 and 1024",
                settings.pool_size
            )));
        }
        if settings.connect_timeout.is_zero() || settings.command_timeout.is_zero() {
            return Err(Error::config("timeouts must be longer than zero"));
        }
        if settings.reconnect_min > settings.reconnect_max {
            return Err(Error::config(format!(
                "reconnect backoff minimum {:?} is above its maximum {:?}",
                settings.reconnect_min, settings.reconnect_max
            )));
        }
        let endpoints = self
            .urls
            .iter()
            .map(|url| Endpoint::parse(url))
            .collect::<Result<Vec<_>>>()?;
        let settings = Arc::new(Settings {
            #[cfg(feature = "tls")]
            tls: self.tls_config(endpoints.iter().filter_map(Endpoint::direct))?,
            ..self.settings
        });
        let mut nodes: Vec<Arc<Node>> = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let node = Node::new(endpoint, settings.clone());
            if nodes.iter().any(|n| n.name() == node.name()) {
                return Err(Error::config(format!(
                    "node {} is listed twice",
                    node.name()
                )));
            }
            nodes.push(Arc::new(node));
        }
        Ok(Client {
            inner: Arc::new(Inner {
                nodes,
                next_create: AtomicUsize::new(0),
            }),
        })
    }

    /// The TLS configuration every TLS node shares, if any node uses TLS.
    #[cfg(feature = "tls")]
    fn tls_config<'a>(
        &self,
        mut addrs: impl Iterator<Item = &'a NodeAddr>,
    ) -> Result<Option<crate::tls::TlsConfig>> {
        if addrs.any(NodeAddr::tls) {
            return self.tls.client_config().map(Some);
        }
        if self.tls.is_set() {
            // TLS files with only plaintext URLs: most likely a forgotten `rediss://`.
            return Err(Error::config(
                "TLS settings given, but no node uses TLS: use sessionds:// or rediss:// URLs",
            ));
        }
        Ok(None)
    }

    /// The client, after connecting to (and logging in to) every node: fails if any is
    /// unreachable. Use [`Builder::build`] to start while a node is down.
    pub async fn connect(self) -> Result<Client> {
        let client = self.build()?;
        for node in &client.inner.nodes {
            node.connect().await?;
        }
        Ok(client)
    }
}

/// A connection (pool) to one sessiond server, or to several sharded by key.
///
/// Cheap to clone: clones share the connections. Every method may be called from any number of
/// tasks at once; their commands are pipelined over the node's connections.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    nodes: Vec<Arc<Node>>,
    /// Where the next session is created, so new sessions spread over the nodes.
    next_create: AtomicUsize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field(
                "nodes",
                &self
                    .inner
                    .nodes
                    .iter()
                    .map(|n| n.name())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A key's time to live, as `PTTL` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTtl {
    /// There is no such key (or it has expired).
    Missing,
    /// The key exists and never expires.
    Persistent,
    /// The key expires after this long.
    ExpiresIn(Duration),
}

impl Client {
    /// Connects to one server: `sessiond://[user:password@]host:port` (or `redis://`, or
    /// `redis+sentinel://`; see [`Builder::node`]), with the default settings of [`Builder`].
    pub async fn connect(url: &str) -> Result<Client> {
        Builder::default().node(url).connect().await
    }

    /// A builder for timeouts, pool size and several nodes.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// `PING` every node: `Ok` when all of them answer.
    pub async fn ping(&self) -> Result<()> {
        let command = Cmd::new("PING").encode();
        for (_, reply) in self.fan_out(command).await {
            reply?;
        }
        Ok(())
    }

    /// The value of a string key; `None` if there is none.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        let key = key.as_ref();
        let reply = self.on_key(key, Cmd::new("GET").arg(key)).await?;
        optional_bulk("GET", reply)
    }

    /// The value of a string key decoded from JSON; `None` if there is none.
    pub async fn get_json<T: DeserializeOwned>(&self, key: impl AsRef<[u8]>) -> Result<Option<T>> {
        match self.get(key).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(Error::json),
            None => Ok(None),
        }
    }

    /// Sets a string key with no expiry (an existing expiry is cleared, as `SET` does).
    pub async fn set(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let key = key.as_ref();
        let reply = self
            .on_key(key, Cmd::new("SET").arg(key).arg(value))
            .await?;
        expect_ok("SET", reply)
    }

    /// Sets a string key that expires after `ttl` (millisecond precision, at least 1 ms).
    pub async fn set_with_ttl(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<()> {
        let key = key.as_ref();
        let command = Cmd::new("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .ms(ttl.max(Duration::from_millis(1)));
        expect_ok("SET", self.on_key(key, command).await?)
    }

    /// Sets a string key to `value` encoded as JSON, expiring after `ttl` if one is given.
    pub async fn set_json<T: Serialize + ?Sized>(
        &self,
        key: impl AsRef<[u8]>,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(Error::json)?;
        match ttl {
            Some(ttl) => self.set_with_ttl(key, bytes, ttl).await,
            None => self.set(key, bytes).await,
        }
    }

    /// Deletes a key of any type (a session too); `true` if it existed.
    pub async fn del(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        let reply = self.on_key(key, Cmd::new("DEL").arg(key)).await?;
        Ok(integer("DEL", reply)? > 0)
    }

    /// Makes a key expire after `ttl` (`PEXPIRE`); `false` if there is no such key. Sessions
    /// refuse this (their timeouts are theirs): a server error.
    pub async fn expire(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<bool> {
        let key = key.as_ref();
        let command = Cmd::new("PEXPIRE").arg(key).ms(ttl);
        Ok(integer("PEXPIRE", self.on_key(key, command).await?)? == 1)
    }

    /// A key's time to live (`PTTL`); for a session, the time until its effective deadline.
    pub async fn ttl(&self, key: impl AsRef<[u8]>) -> Result<KeyTtl> {
        let key = key.as_ref();
        let reply = self.on_key(key, Cmd::new("PTTL").arg(key)).await?;
        Ok(match integer("PTTL", reply)? {
            -2 => KeyTtl::Missing,
            -1 => KeyTtl::Persistent,
            ms => KeyTtl::ExpiresIn(Duration::from_millis(ms.max(0) as u64)),
        })
    }

    /// Sends any command and returns the raw reply (an error reply is an `Err`). On several
    /// nodes it goes to the owner of its first argument after the name (the key, for most
    /// commands); a command without arguments goes to the first node.
    pub async fn command<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Frame> {
        let Some((name, rest)) = args.split_first() else {
            return Err(Error::config("a command needs a name"));
        };
        let mut command = Cmd::new_raw(name.as_ref());
        for arg in rest {
            command = command.arg(arg);
        }
        let node = match rest.first() {
            Some(key) => self.node_for(key.as_ref()),
            None => &self.inner.nodes[0],
        };
        node.request(command.encode()).await
    }

    /// The node that owns `key`.
    pub(crate) fn node_for(&self, key: &[u8]) -> &Arc<Node> {
        let nodes = &self.inner.nodes;
        if nodes.len() == 1 {
            return &nodes[0];
        }
        // `nodes` is never empty (the builder refuses that), so there is an owner.
        let index = shard::owner(nodes.iter().map(|n| n.name()), key).unwrap_or(0);
        &nodes[index]
    }

    pub(crate) fn nodes(&self) -> &[Arc<Node>] {
        &self.inner.nodes
    }

    /// The node where the next session is created; successive calls go round the nodes.
    pub(crate) fn next_create_index(&self) -> usize {
        self.inner.next_create.fetch_add(1, Ordering::Relaxed) % self.inner.nodes.len()
    }

    pub(crate) async fn on_key(&self, key: &[u8], command: Cmd) -> Result<Frame> {
        self.node_for(key).request(command.encode()).await
    }

    /// Sends `command` to every node at once; the replies in node order.
    pub(crate) async fn fan_out(&self, command: Bytes) -> Vec<(Arc<Node>, Result<Frame>)> {
        let nodes = &self.inner.nodes;
        if nodes.len() == 1 {
            let reply = nodes[0].request(command).await;
            return vec![(nodes[0].clone(), reply)];
        }
        let mut tasks = JoinSet::new();
        for (index, node) in nodes.iter().enumerate() {
            let node = node.clone();
            let command = command.clone();
            tasks.spawn(async move { (index, node.request(command).await) });
        }
        let mut replies: Vec<Option<Result<Frame>>> = vec![None; nodes.len()];
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, reply)) => replies[index] = Some(reply),
                // Our own task panicked: surface it rather than hide a node's answer.
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(_) => {}
            }
        }
        nodes
            .iter()
            .cloned()
            .zip(replies)
            .map(|(node, reply)| {
                let reply =
                    reply.unwrap_or_else(|| Err(Error::connection("the request was cancelled")));
                (node, reply)
            })
            .collect()
    }
}
