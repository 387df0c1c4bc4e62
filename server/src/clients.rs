//! The registry of connected clients, for CLIENT LIST and KILL, INFO clients and `maxclients`.
//!
//! Each connection owns an `Arc<ClientState>`; the fields it updates on every command are
//! atomics written only by that connection, so the registry costs the hot path no lock.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::process::{clock_ticks, nanos_between};
use dashmap::DashMap;
use futures_util::task::AtomicWaker;
use sessiond_protocol::cmd::{ClientType, KillFilter};

/// What CLIENT LIST shows of one connection.
#[derive(Debug)]
pub struct ClientState {
    /// The connection ID (CLIENT ID).
    pub id: u64,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Our address for this connection.
    pub local: SocketAddr,
    /// When the connection was accepted.
    pub since: Instant,
    /// [`clock_ticks`] when the connection was accepted, and when its last command started
    /// (0: none yet): CLIENT LIST's `idle`, from the reading that times the command.
    since_ticks: u64,
    last_command_at: AtomicU64,
    last_command: AtomicUsize,
    resp: AtomicU8,
    /// The selected database (SELECT), for CLIENT LIST's `db=`.
    db: AtomicUsize,
    /// Whether the connection has ever authenticated (ends its `--auth-timeout` deadline).
    authenticated: AtomicBool,
    /// Its subscriptions: channels, patterns, shard channels (`sub=`, `psub=`, `ssub=`).
    subscriptions: [AtomicUsize; 3],
    names: Mutex<Names>,
    /// Set by CLIENT KILL; the connection closes at its next wait for input.
    killed: AtomicBool,
    /// Whether the connection is a replica's link (after its PSYNC): `CLIENT KILL TYPE replica`.
    replica: AtomicBool,
    /// Set by CONFIG SET timeout: a connection waiting for input starts its wait again, under
    /// the new timeout.
    retimed: AtomicBool,
    /// Wakes the connection's wait when `killed` or `retimed` is set (lock-free, unlike tokio's `Notify`,
    /// because the connection polls it before every read).
    kill_waker: AtomicWaker,
}

#[derive(Debug, Default, Clone)]
struct Names {
    name: String,
    user: String,
    lib_name: String,
    lib_ver: String,
}

impl ClientState {
    /// Marks the connection as a replica's link.
    pub fn set_replica(&self) {
        self.replica.store(true, Ordering::Relaxed);
    }

    /// Whether CLIENT KILL picked the connection.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Asks the connection to close (CLIENT KILL): once the batch it runs has its replies
    /// written, or at once if it waits for input.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.kill_waker.wake();
    }

    /// Asks the connection, if it waits for a request, to wait again under the current
    /// `timeout` (CONFIG SET timeout). A subscriber, which no timeout holds, ignores it.
    pub fn retime(&self) {
        self.retimed.store(true, Ordering::Release);
        self.kill_waker.wake();
    }

    /// What the connection loop waits for beside input: `Killed` once [`ClientState::kill`]
    /// was called, `Retimed` once after [`ClientState::retime`].
    #[inline]
    pub fn poll_signal(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Signal> {
        let signal = || {
            if self.killed.load(Ordering::Acquire) {
                Some(Signal::Killed)
            } else if self.retimed.load(Ordering::Relaxed)
                && self.retimed.swap(false, Ordering::Acquire)
                && !self
                    .subscriptions
                    .iter()
                    .any(|n| n.load(Ordering::Relaxed) != 0)
            {
                Some(Signal::Retimed)
            } else {
                None
            }
        };
        if let Some(signal) = signal() {
            return std::task::Poll::Ready(signal);
        }
        self.kill_waker.register(cx.waker());
        match signal() {
            Some(signal) => std::task::Poll::Ready(signal),
            None => std::task::Poll::Pending,
        }
    }

    /// Ready once [`ClientState::kill`] was called.
    #[inline]
    pub fn poll_killed(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.killed.load(Ordering::Acquire) {
            return std::task::Poll::Ready(());
        }
        self.kill_waker.register(cx.waker());
        if self.killed.load(Ordering::Acquire) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }

    /// Whether the client is of `kind` (Redis's: a subscriber is `pubsub`, a replica's link
    /// `replica`, anything else `normal`).
    pub fn is_kind(&self, kind: ClientType) -> bool {
        let pubsub = self
            .subscriptions
            .iter()
            .any(|n| n.load(Ordering::Relaxed) != 0);
        let replica = self.replica.load(Ordering::Relaxed);
        match kind {
            ClientType::Normal => !pubsub && !replica,
            ClientType::Pubsub => pubsub,
            ClientType::Replication => replica,
            ClientType::Master => false,
        }
    }

    /// Whether CLIENT KILL's filter picks this client (the caller's own ID is `me`).
    pub fn matches(&self, filter: &KillFilter, me: u64) -> bool {
        if filter.skip_me && self.id == me {
            return false;
        }
        if filter.id.is_some_and(|id| id != self.id) {
            return false;
        }
        let same_addr = |want: &Option<bytes::Bytes>, addr: SocketAddr| {
            want.as_ref()
                .is_none_or(|want| want[..] == *addr.to_string().as_bytes())
        };
        if !same_addr(&filter.addr, self.peer) || !same_addr(&filter.laddr, self.local) {
            return false;
        }
        if let Some(user) = &filter.user {
            let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
            let name = if names.user.is_empty() {
                "default"
            } else {
                &names.user
            };
            if user[..] != *name.as_bytes() {
                return false;
            }
        }
        if filter.kind.is_some_and(|kind| !self.is_kind(kind)) {
            return false;
        }
        filter
            .max_age_s
            .is_none_or(|age| self.since.elapsed().as_secs() >= age)
    }

    /// Records a command (an index in the protocol's command table) that started at
    /// `started` ([`clock_ticks`]; 0: read the clock now).
    #[inline]
    pub fn record_command(&self, command: usize, started: u64) {
        let at = if started == 0 { clock_ticks() } else { started };
        self.last_command_at.store(at, Ordering::Relaxed);
        self.last_command.store(command, Ordering::Relaxed);
    }

    /// Records its counts of subscriptions: channels, patterns, shard channels.
    pub fn set_subscriptions(&self, counts: [usize; 3]) {
        for (slot, count) in self.subscriptions.iter().zip(counts) {
            slot.store(count, Ordering::Relaxed);
        }
    }

    /// Records the protocol version in use.
    pub fn set_resp(&self, version: u8) {
        self.resp.store(version, Ordering::Relaxed);
    }

    /// Records the selected database.
    pub fn set_db(&self, db: usize) {
        self.db.store(db, Ordering::Relaxed);
    }

    /// Sets or clears (empty) the connection name.
    pub fn set_name(&self, name: String) {
        self.names.lock().unwrap_or_else(|p| p.into_inner()).name = name;
    }

    /// Records the user the connection authenticated as (empty: none, after RESET).
    pub fn set_user(&self, user: String) {
        if !user.is_empty() {
            self.authenticated.store(true, Ordering::Relaxed);
        }
        self.names.lock().unwrap_or_else(|p| p.into_inner()).user = user;
    }

    /// Whether the connection has authenticated at least once (or needed not to).
    pub fn has_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Relaxed)
    }

    /// The connection name; empty when unset.
    pub fn name(&self) -> String {
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .name
            .clone()
    }

    /// Records CLIENT SETINFO.
    pub fn set_lib(&self, lib_name: bool, value: String) {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if lib_name {
            names.lib_name = value;
        } else {
            names.lib_ver = value;
        }
    }

    /// The CLIENT LIST line for this connection (without the trailing newline).
    pub fn describe(&self) -> String {
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let subs = self
            .subscriptions
            .each_ref()
            .map(|n| n.load(Ordering::Relaxed));
        let age = self.since.elapsed();
        let last = match self.last_command_at.load(Ordering::Relaxed) {
            0 => self.since_ticks,
            at => at,
        };
        let idle_s = nanos_between(last, clock_ticks()) / 1_000_000_000;
        let command = sessiond_protocol::cmd::COMMANDS
            .get(self.last_command.load(Ordering::Relaxed))
            .map_or("NULL", |spec| spec.name);
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} \
             multi=-1 watch=0 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 \
             omem=0 tot-mem=0 events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.peer,
            self.local,
            names.name,
            age.as_secs(),
            idle_s,
            if self.replica.load(Ordering::Relaxed) {
                "S"
            } else if subs.iter().any(|&n| n != 0) {
                "P"
            } else {
                "N"
            },
            self.db.load(Ordering::Relaxed),
            subs[0],
            subs[1],
            subs[2],
            command,
            if names.user.is_empty() {
                "default"
            } else {
                &names.user
            },
            self.resp.load(Ordering::Relaxed),
            names.lib_name,
            names.lib_ver,
        )
    }
}

/// What woke a connection besides its input (see [`ClientState::poll_signal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// CLIENT KILL picked it.
    Killed,
    /// `timeout` changed while it waited.
    Retimed,
}

/// Every connected client.
#[derive(Debug, Default)]
pub struct Clients {
    next_id: AtomicU64,
    connected: DashMap<u64, Arc<ClientState>>,
}

impl Clients {
    /// Registers a new connection and returns its state.
    pub fn register(&self, peer: SocketAddr, local: SocketAddr) -> Arc<ClientState> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let state = Arc::new(ClientState {
            id,
            peer,
            local,
            since: Instant::now(),
            since_ticks: clock_ticks(),
            last_command_at: AtomicU64::new(0),
            last_command: AtomicUsize::new(usize::MAX),
            resp: AtomicU8::new(2),
            db: AtomicUsize::new(0),
            authenticated: AtomicBool::new(false),
            subscriptions: Default::default(),
            names: Mutex::new(Names::default()),
            killed: AtomicBool::new(false),
            replica: AtomicBool::new(false),
            retimed: AtomicBool::new(false),
            kill_waker: AtomicWaker::new(),
        });
        self.connected.insert(id, state.clone());
        state
    }

    /// Forgets a closed connection.
    pub fn unregister(&self, id: u64) {
        self.connected.remove(&id);
    }

    /// Kills the clients `filter` picks (`me`: the caller's ID); how many.
    pub fn kill(&self, filter: &KillFilter, me: u64) -> usize {
        let mut killed = 0;
        for client in self.connected.iter() {
            if client.matches(filter, me) {
                client.kill();
                killed += 1;
            }
        }
        killed
    }

    /// Makes every client waiting for a request wait again under the current `timeout`.
    pub fn retime_all(&self) {
        for client in self.connected.iter() {
            client.retime();
        }
    }

    /// How many clients are connected.
    pub fn len(&self) -> usize {
        self.connected.len()
    }

    /// Whether no client is connected.
    pub fn is_empty(&self) -> bool {
        self.connected.is_empty()
    }

    /// The CLIENT LIST text, optionally restricted to some IDs, ordered by ID.
    pub fn list(&self, ids: Option<&[u64]>, kind: Option<ClientType>) -> String {
        let mut states: Vec<Arc<ClientState>> = self
            .connected
            .iter()
            .filter(|c| ids.is_none_or(|ids| ids.contains(c.key())))
            .filter(|c| kind.is_none_or(|kind| c.value().is_kind(kind)))
            .map(|c| c.value().clone())
            .collect();
        states.sort_by_key(|c| c.id);
        let mut text = String::new();
        for state in states {
            text.push_str(&state.describe());
            text.push('\n');
        }
        text
    }
}
