//! A node's replication role and history, below the connections and the links that use it:
//! whether it is a primary or follows one (and how the link to it is doing), the replication
//! IDs (PSYNC2's `replid`, `replid2` and `second_repl_offset`), the replicas it serves and
//! what they acknowledged (WAIT), the settings of replication, and the gate every command
//! passes ([`Replication::gate`]: READONLY on a replica, LOADING during a full sync). ROLE's
//! reply and INFO replication are rendered here. The links themselves are
//! [`crate::replication`]'s.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sessiond_protocol::Frame;
use tokio::sync::watch;

/// The error a write gets on a read-only replica (Redis's words).
pub const READONLY: &str = "READONLY You can't write against a read only replica.";
/// The error a command gets while a replica loads its primary's snapshot (Redis's words).
pub const LOADING: &str = "LOADING Redis is loading the dataset in memory";

/// What [`Replication::gate`] answers: how the command path treats a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Gate {
    /// A primary: every command runs.
    Open = 0,
    /// A read-only replica: writes are refused with [`READONLY`].
    ReadOnly = 1,
    /// A replica loading a full synchronization: commands without `loading` get [`LOADING`].
    Loading = 2,
    /// A writable replica (`replica-read-only no`): writes run, recording nothing in the feed.
    Writable = 3,
}

/// The error a command gets at `gate`, if any: writes on a read-only replica, and everything
/// but the `loading` commands during a load.
pub fn refusal(gate: Gate, spec: &sessiond_protocol::cmd::CommandSpec) -> Option<&'static str> {
    use sessiond_protocol::cmd::CommandFlags;
    match gate {
        Gate::Open | Gate::Writable => None,
        Gate::ReadOnly => spec.flags.contains(CommandFlags::WRITE).then_some(READONLY),
        // REPLICAOF too: Redis takes it while a replica's sync transfers (its LOADING covers
        // only the load from disk that follows), and a failover must be able to promote a
        // replica in the middle of one.
        Gate::Loading => (!spec.flags.contains(CommandFlags::LOADING)
            && !matches!(spec.name, "replicaof" | "slaveof"))
        .then_some(LOADING),
    }
}

/// Stops `link`'s task changing the node: waits for a step under way (one frame), unless this
/// thread runs in an atomic block (an EXEC with REPLICAOF), where the frame may wait for the
/// block's shard locks; `false` then, if a step is under way.
fn stop_applying(link: &Link) -> bool {
    if !link.stop() {
        return true;
    }
    if crate::store::Store::in_block() {
        return false;
    }
    while link.applying.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    true
}

/// Whether `slot` holds `link`.
fn follows(slot: &LinkSlot, link: &Arc<Link>) -> bool {
    slot.as_ref().is_some_and(|(l, _)| Arc::ptr_eq(l, link))
}

/// A replication ID: 40 hex characters from the OS's CSPRNG.
pub fn new_replid() -> String {
    let mut raw = [0u8; 20];
    let _ = getrandom::fill(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// The "no ID" of `master_replid2` before any promotion.
pub const NO_REPLID: &str = "0000000000000000000000000000000000000000";

/// A node's replication history: the ID of the stream it follows or serves, and the one before
/// (valid up to `second_offset`), as Redis's PSYNC2 keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ids {
    /// `master_replid`.
    pub replid: String,
    /// `master_replid2`.
    pub replid2: String,
    /// `second_repl_offset`: the first offset (Redis's, 1-based) not valid under `replid2`;
    /// -1 for none.
    pub second_offset: i64,
}

/// How far a replica's link has come (ROLE's state, INFO's `master_link_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    /// Waiting to connect (after a failure: the backoff).
    Connect = 0,
    /// Connecting.
    Connecting = 1,
    /// Authenticating and handshaking.
    Handshake = 2,
    /// Receiving the snapshot of a full synchronization.
    Sync = 3,
    /// Applying the stream.
    Connected = 4,
}

impl LinkState {
    fn from_u8(value: u8) -> LinkState {
        match value {
            1 => LinkState::Connecting,
            2 => LinkState::Handshake,
            3 => LinkState::Sync,
            4 => LinkState::Connected,
            _ => LinkState::Connect,
        }
    }

    /// ROLE's word for it.
    pub fn role_name(self) -> &'static str {
        match self {
            LinkState::Connect => "connect",
            LinkState::Connecting => "connecting",
            LinkState::Handshake => "handshake",
            LinkState::Sync => "sync",
            LinkState::Connected => "connected",
        }
    }
}

/// A replica's view of its link, shared by the link task and INFO.
#[derive(Debug)]
pub struct Link {
    /// The primary's host, as given.
    pub host: String,
    /// The primary's port.
    pub port: u16,
    state: AtomicU8,
    /// When the link last read from the primary, Unix ms (0: never).
    last_io_ms: AtomicU64,
    /// When the link went down, Unix ms (0: never up).
    down_since_ms: AtomicU64,
    /// The primary's offset the link has read up to (`slave_read_repl_offset`).
    pub read_offset: AtomicU64,
    /// Bytes read from the primary since the full sync under way began
    /// (`master_sync_read_bytes`).
    sync_read: AtomicU64,
    /// Whether the attempt under way reached the stream (the backoff starts over).
    reached: AtomicBool,
    /// Whether the link task is applying a frame of its primary (or taking its ID).
    applying: AtomicBool,
    /// Whether the node stopped following this link: the task applies nothing more.
    stopped: AtomicBool,
}

impl Link {
    fn new(host: String, port: u16) -> Link {
        Link {
            host,
            port,
            state: AtomicU8::new(LinkState::Connect as u8),
            last_io_ms: AtomicU64::new(0),
            down_since_ms: AtomicU64::new(0),
            read_offset: AtomicU64::new(0),
            sync_read: AtomicU64::new(0),
            reached: AtomicBool::new(false),
            applying: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        }
    }

    /// Marks the start of one step that changes the node (applying a frame, taking the
    /// primary's ID); `false`, and the step must not run, once the node stopped following the
    /// link. The link's task is aborted only at its next `.await`: these marks are what stop
    /// it between frames, and what a promotion waits on.
    pub fn begin_apply(&self) -> bool {
        // SeqCst with `stop`'s: one of the two sees the other's store.
        self.applying.store(true, Ordering::SeqCst);
        if self.stopped.load(Ordering::SeqCst) {
            self.applying.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Marks the end of the step; `false` if the node stopped following the link meanwhile
    /// (the caller then ends, after [`Replication::link_stopped`]).
    pub fn end_apply(&self) -> bool {
        self.applying.store(false, Ordering::SeqCst);
        !self.stopped.load(Ordering::SeqCst)
    }

    /// Stops the task's steps; whether one is still under way.
    fn stop(&self) -> bool {
        self.stopped.store(true, Ordering::SeqCst);
        self.applying.load(Ordering::SeqCst)
    }

    /// Whether the attempt that just ended had reached the stream; forgets it.
    pub fn reached_stream(&self) -> bool {
        self.reached.swap(false, Ordering::Relaxed)
    }

    /// Where the link is.
    pub fn state(&self) -> LinkState {
        LinkState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Moves the link to `state`; leaving [`LinkState::Connected`] marks it down since `now_ms`.
    pub fn set_state(&self, state: LinkState, now_ms: u64) {
        if state == LinkState::Connected {
            self.reached.store(true, Ordering::Relaxed);
        }
        if state == LinkState::Sync {
            self.sync_read.store(0, Ordering::Relaxed);
        }
        let before = self.state.swap(state as u8, Ordering::Relaxed);
        if before == LinkState::Connected as u8 && state != LinkState::Connected {
            self.down_since_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    /// Notes a read from the primary at `now_ms`.
    pub fn touch(&self, now_ms: u64) {
        self.last_io_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Notes `bytes` read from the primary during a full sync.
    pub fn read_during_sync(&self, bytes: usize) {
        self.sync_read.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// A replica this node serves, as INFO's `slaveN` line and ROLE show it.
#[derive(Debug)]
pub struct Follower {
    /// Its address: the peer's, or what it announced (`REPLCONF ip-address`).
    pub ip: String,
    /// The port it serves clients on (`REPLCONF listening-port`).
    pub port: i64,
    /// Whether it is past its full synchronization (`state=online`).
    pub online: AtomicBool,
    /// The offset it acknowledged.
    pub ack_offset: AtomicU64,
    /// When it last acknowledged, Unix ms.
    pub ack_ms: AtomicU64,
    /// Its connection's registry entry.
    pub client: Arc<crate::clients::ClientState>,
}

/// What the connection of a replica told before its PSYNC (`REPLCONF`), kept in its
/// `ConnState`.
#[derive(Debug, Clone, Default)]
pub struct Hello {
    /// `REPLCONF listening-port`.
    pub port: i64,
    /// `REPLCONF ip-address`.
    pub ip: Option<Bytes>,
}

/// The link to a primary and its task (aborted when dropped).
type LinkSlot = Option<(Arc<Link>, tokio_util::task::AbortOnDropHandle<()>)>;

/// A node's replication state.
#[derive(Debug)]
pub struct Replication {
    /// [`Gate`] as a byte, read by every command.
    gate: AtomicU8,
    ids: Mutex<Ids>,
    /// The link to this node's primary, when it is a replica (REPLICAOF).
    link: Mutex<LinkSlot>,
    replicas: Mutex<Vec<Arc<Follower>>>,
    /// Moves on every acknowledgement (WAIT watches it).
    acks: watch::Sender<u64>,
    /// Moves when a WAIT asks the replicas to acknowledge now (`REPLCONF GETACK`).
    getack: watch::Sender<u64>,
    /// `replica-read-only`.
    read_only: AtomicBool,
    /// `replica-priority`.
    priority: AtomicI64,
    /// `repl-timeout`, ms.
    timeout_ms: AtomicU64,
    /// `repl-ping-replica-period`.
    ping_period_ms: AtomicU64,
    /// `masteruser` and `masterauth`: how the link authenticates (never logged).
    credentials: Mutex<(Option<String>, Option<crate::auth::Secret>)>,
    /// `replica-announce-ip` and `replica-announce-port` (0: the port served on): the address
    /// the link tells its primary, which Sentinel then finds the replica at.
    announce: Mutex<(Option<String>, u16)>,
    /// The TLS client of the link, with `tls-replication`.
    tls: Option<TlsClient>,
    /// Whether replication turned the change feed on (once, for the node's life).
    feed_on: std::sync::Once,
    /// Whether the node's feed carries a replication history: it synchronized from a primary,
    /// or served a replica.
    history: AtomicBool,
    /// Whether a full synchronization's loader holds the keyspace (emptied it and has not
    /// finished): the gate stays [`Gate::Loading`] until it has, also after a REPLICAOF that
    /// abandoned its load, so that no client writes into a keyspace the loader still fills.
    loader: AtomicBool,
    /// The keyspace was emptied for a full sync that has not completed (its load began, no
    /// primary's offset was taken since): the node's offset describes nothing it holds. INFO
    /// then shows Redis's `slave_repl_offset:1` (Redis discards its cached primary at
    /// `+FULLRESYNC`), so that Sentinel promotes a replica that has the data rather than this
    /// one.
    emptied: AtomicBool,
    /// The load under way (or the last one): when it began, Unix ms, and the snapshot's bytes
    /// it has taken (INFO persistence's `loading_start_time`, `loading_loaded_bytes`).
    load_started_ms: AtomicU64,
    /// See `load_started_ms`.
    pub loaded_bytes: AtomicU64,
    /// The bytes the load under way reads in all (`loading_total_bytes`): a received
    /// snapshot's size; 0 while a streamed one's is not known.
    pub load_total: AtomicU64,
    /// INFO stats' `sync_full`, `sync_partial_ok`, `sync_partial_err`.
    pub sync_full: AtomicU64,
    /// Partial resynchronizations accepted.
    pub sync_partial_ok: AtomicU64,
    /// Partial resynchronizations refused (a full one followed).
    pub sync_partial_err: AtomicU64,
}

impl Replication {
    /// A primary with a new replication ID, with `settings`.
    pub fn new(settings: &Settings) -> Replication {
        Replication {
            gate: AtomicU8::new(Gate::Open as u8),
            ids: Mutex::new(Ids {
                replid: new_replid(),
                replid2: NO_REPLID.to_owned(),
                second_offset: -1,
            }),
            link: Mutex::new(None),
            replicas: Mutex::new(Vec::new()),
            acks: watch::Sender::new(0),
            getack: watch::Sender::new(0),
            read_only: AtomicBool::new(settings.read_only),
            priority: AtomicI64::new(settings.priority),
            timeout_ms: AtomicU64::new(settings.timeout.as_millis() as u64),
            ping_period_ms: AtomicU64::new(settings.ping_period.as_millis() as u64),
            credentials: Mutex::new((settings.masteruser.clone(), settings.masterauth.clone())),
            announce: Mutex::new((settings.announce_ip.clone(), settings.announce_port)),
            tls: settings.tls.clone(),
            feed_on: std::sync::Once::new(),
            history: AtomicBool::new(false),
            loader: AtomicBool::new(false),
            emptied: AtomicBool::new(false),
            load_started_ms: AtomicU64::new(0),
            loaded_bytes: AtomicU64::new(0),
            load_total: AtomicU64::new(0),
            sync_full: AtomicU64::new(0),
            sync_partial_ok: AtomicU64::new(0),
            sync_partial_err: AtomicU64::new(0),
        }
    }

    /// How the command path treats commands now: one relaxed load.
    #[inline]
    pub fn gate(&self) -> Gate {
        match self.gate.load(Ordering::Relaxed) {
            0 => Gate::Open,
            1 => Gate::ReadOnly,
            2 => Gate::Loading,
            _ => Gate::Writable,
        }
    }

    /// The gate for the link in `slot` (or [`Gate::Loading`] while a loader holds the
    /// keyspace), stored while the caller holds the lock of `slot`, so that a loader ending and
    /// a REPLICAOF never interleave.
    fn store_gate(&self, slot: &LinkSlot) {
        let gate = match slot {
            _ if self.loader.load(Ordering::Relaxed) => Gate::Loading,
            None => Gate::Open,
            Some(_) if self.read_only.load(Ordering::Relaxed) => Gate::ReadOnly,
            Some(_) => Gate::Writable,
        };
        self.gate.store(gate as u8, Ordering::Relaxed);
    }

    fn set_gate(&self) {
        self.store_gate(&lock(&self.link));
    }

    /// Settles the gate after an attempt of `link` ended; nothing if the node no longer
    /// follows `link` (a REPLICAOF came meanwhile).
    pub fn settle_gate(&self, link: &Arc<Link>) {
        let slot = lock(&self.link);
        if follows(&slot, link) {
            self.store_gate(&slot);
        }
    }

    /// Starts the load of a full synchronization by `link`, which empties the keyspace: the
    /// gate closes ([`Gate::Loading`]) and the node's history ends (a new replication ID and
    /// no second one: the keyspace no longer matches any offset of the old history, so no
    /// former sibling may continue from it). `false`, and nothing changes, if the node no
    /// longer follows `link`.
    pub fn begin_load(&self, link: &Arc<Link>, now_ms: u64) -> bool {
        let slot = lock(&self.link);
        if !follows(&slot, link) {
            return false;
        }
        self.load_started_ms.store(now_ms, Ordering::Relaxed);
        self.emptied.store(true, Ordering::Relaxed);
        self.loader.store(true, Ordering::Relaxed);
        self.store_gate(&slot);
        drop(slot);
        *lock(&self.ids) = Ids {
            replid: new_replid(),
            replid2: NO_REPLID.to_owned(),
            second_offset: -1,
        };
        self.history.store(false, Ordering::Relaxed);
        true
    }

    /// Ends the load [`Replication::begin_load`] started: if it `loaded` and the node still
    /// follows `link`, `adopt` takes the primary's ID and offset; otherwise `flush` empties
    /// what was loaded (the load failed, or a REPLICAOF abandoned it: Redis empties the
    /// keyspace when a load is aborted). Then the gate opens as the node's role says. Whether
    /// it adopted.
    pub fn end_load(
        &self,
        link: &Arc<Link>,
        loaded: bool,
        adopt: impl FnOnce(&Self),
        flush: impl FnOnce(),
    ) -> bool {
        {
            let slot = lock(&self.link);
            if loaded && follows(&slot, link) {
                adopt(self);
                self.loader.store(false, Ordering::Relaxed);
                self.store_gate(&slot);
                return true;
            }
        }
        // Outside the lock: a flush takes shard locks, which an EXEC holding REPLICAOF holds
        // before it takes this one. The gate is closed meanwhile.
        flush();
        let slot = lock(&self.link);
        self.loader.store(false, Ordering::Relaxed);
        self.store_gate(&slot);
        false
    }

    /// Turns the change feed on for replication, once: from then on the backlog keeps the
    /// last `repl-backlog-size` bytes, as Redis keeps its backlog once a replica connected.
    pub fn enable_feed(&self, feed: &Arc<crate::store::feed::Feed>) {
        self.feed_on.call_once(|| {
            feed.keep_backlog();
            feed.enable();
        });
    }

    /// Whether the node's offsets belong to a replication history a primary may continue.
    pub fn has_history(&self) -> bool {
        self.history.load(Ordering::Relaxed)
    }

    /// Notes that the node's offsets belong to a replication history (a sync completed, or a
    /// primary continued it): they describe its keyspace again.
    pub fn note_history(&self) {
        self.emptied.store(false, Ordering::Relaxed);
        self.history.store(true, Ordering::Relaxed);
    }

    /// `repl-timeout`.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed))
    }

    /// `repl-ping-replica-period`: how often a primary asks each replica to acknowledge when
    /// no WAIT asks sooner.
    pub fn ping_period(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.ping_period_ms.load(Ordering::Relaxed))
    }

    /// Sets `repl-ping-replica-period` (the links take it at their next ping).
    pub fn set_ping_period(&self, period: std::time::Duration) {
        self.ping_period_ms
            .store(period.as_millis() as u64, Ordering::Relaxed);
    }

    /// Sets `repl-timeout`.
    pub fn set_timeout(&self, timeout: std::time::Duration) {
        self.timeout_ms
            .store(timeout.as_millis() as u64, Ordering::Relaxed);
    }

    /// `masteruser`.
    pub fn masteruser(&self) -> Option<String> {
        lock(&self.credentials).0.clone()
    }

    /// `masterauth`.
    pub fn masterauth(&self) -> Option<String> {
        lock(&self.credentials)
            .1
            .as_ref()
            .map(|s| s.expose().to_owned())
    }

    /// `replica-announce-ip` and `replica-announce-port` (0: none), as the link's next
    /// connection tells them.
    pub fn announce(&self) -> (Option<String>, u16) {
        lock(&self.announce).clone()
    }

    /// Sets `replica-announce-ip` (empty: none).
    pub fn set_announce_ip(&self, ip: Option<String>) {
        lock(&self.announce).0 = ip.filter(|ip| !ip.is_empty());
    }

    /// Sets `replica-announce-port` (0: the port served on).
    pub fn set_announce_port(&self, port: u16) {
        lock(&self.announce).1 = port;
    }

    /// Sets `masteruser` (empty: none).
    pub fn set_masteruser(&self, user: Option<String>) {
        lock(&self.credentials).0 = user.filter(|u| !u.is_empty());
    }

    /// Sets `masterauth` (empty: none).
    pub fn set_masterauth(&self, password: Option<crate::auth::Secret>) {
        lock(&self.credentials).1 = password.filter(|p| !p.expose().is_empty());
    }

    /// The link's TLS client, with `tls-replication yes`.
    pub fn tls_client(&self) -> Option<TlsClient> {
        self.tls.clone()
    }

    /// `replica-read-only`.
    pub fn read_only(&self) -> bool {
        self.read_only.load(Ordering::Relaxed)
    }

    /// Sets `replica-read-only`.
    pub fn set_read_only(&self, read_only: bool) {
        self.read_only.store(read_only, Ordering::Relaxed);
        if self.gate() != Gate::Loading {
            self.set_gate();
        }
    }

    /// `replica-priority`.
    pub fn priority(&self) -> i64 {
        self.priority.load(Ordering::Relaxed)
    }

    /// Sets `replica-priority`.
    pub fn set_priority(&self, priority: i64) {
        self.priority.store(priority, Ordering::Relaxed);
    }

    /// The replication IDs.
    pub fn ids(&self) -> Ids {
        lock(&self.ids).clone()
    }

    /// Takes `replid` as this node's ID (a replica follows its primary's), keeping the old one
    /// as `replid2` valid up to `offset` (Redis's, 1-based) when `shift` (a partial resync
    /// from a promoted node whose ID changed).
    pub fn adopt(&self, replid: &str, shift_at: Option<i64>) {
        let mut ids = lock(&self.ids);
        if ids.replid == replid {
            return;
        }
        match shift_at {
            Some(offset) => {
                ids.replid2 = std::mem::replace(&mut ids.replid, replid.to_owned());
                ids.second_offset = offset;
            }
            None => {
                ids.replid = replid.to_owned();
                ids.replid2 = NO_REPLID.to_owned();
                ids.second_offset = -1;
            }
        }
    }

    /// The primary's address, when this node is a replica.
    pub fn link(&self) -> Option<Arc<Link>> {
        lock(&self.link).as_ref().map(|(link, _)| link.clone())
    }

    /// Follows the primary at `host`:`port` (REPLICAOF), starting the link with `start`;
    /// `false` if it already follows that primary. Replicas of this node are dropped: they
    /// resynchronize with it, as in Redis.
    pub fn follow(
        &self,
        host: String,
        port: u16,
        start: impl FnOnce(Arc<Link>) -> tokio::task::JoinHandle<()>,
    ) -> bool {
        let mut slot = lock(&self.link);
        if slot
            .as_ref()
            .is_some_and(|(link, _)| link.host.eq_ignore_ascii_case(&host) && link.port == port)
        {
            return false;
        }
        // The old link stops before the new one starts.
        if let Some((was, _)) = slot.take() {
            stop_applying(&was);
        }
        let link = Arc::new(Link::new(host, port));
        let task = start(link.clone());
        *slot = Some((link, tokio_util::task::AbortOnDropHandle::new(task)));
        self.store_gate(&slot);
        drop(slot);
        self.disconnect_replicas();
        true
    }

    /// Stops following (REPLICAOF NO ONE): a new replication ID, the old one kept as
    /// `replid2` valid up to `offset` (the feed's, read once the link applies nothing more),
    /// so that the former siblings resume from this node (PSYNC2). `false` if it was a
    /// primary already.
    pub fn promote(&self, offset: impl FnOnce() -> u64) -> bool {
        let mut slot = lock(&self.link);
        let Some(was) = slot.take() else {
            return false;
        };
        // A frame still being applied inside an atomic block: the gate opens once it is in
        // (`link_stopped`), and the offset read now may miss it (its siblings that have it
        // then sync in full: never a continuation past what this node holds).
        if stop_applying(&was.0) {
            self.store_gate(&slot);
        }
        drop(slot);
        drop(was);
        // Whatever a broken sync left, the keyspace is this node's own now, at its offset.
        self.emptied.store(false, Ordering::Relaxed);
        let offset = offset();
        {
            let mut ids = lock(&self.ids);
            ids.replid2 = std::mem::replace(&mut ids.replid, new_replid());
            ids.second_offset = offset as i64 + 1;
        }
        self.disconnect_replicas();
        true
    }

    /// Called by a link's task that stopped after a step the node stopped following it during:
    /// the gate a promotion left closed opens.
    pub fn link_stopped(&self) {
        let slot = lock(&self.link);
        self.store_gate(&slot);
    }

    /// Whether a replica asking `replid` from `offset` (Redis's: the first byte it wants) may
    /// continue under this node's history, before the backlog is consulted.
    pub fn may_continue(&self, replid: &[u8], offset: i64) -> bool {
        let ids = lock(&self.ids);
        replid == ids.replid.as_bytes()
            || (replid == ids.replid2.as_bytes() && offset <= ids.second_offset)
    }

    /// Registers a replica being served.
    pub fn add_replica(&self, follower: Arc<Follower>) {
        self.note_history();
        lock(&self.replicas).push(follower);
    }

    /// Forgets a replica whose connection ended.
    pub fn remove_replica(&self, follower: &Arc<Follower>) {
        lock(&self.replicas).retain(|f| !Arc::ptr_eq(f, follower));
        self.acks.send_modify(|n| *n += 1);
    }

    /// The replicas being served.
    pub fn replicas(&self) -> Vec<Arc<Follower>> {
        lock(&self.replicas).clone()
    }

    /// Closes the links of the replicas this node serves (their history changed).
    pub fn disconnect_replicas(&self) {
        for follower in lock(&self.replicas).iter() {
            follower.client.kill();
        }
    }

    /// Records a replica's acknowledgement of `offset`.
    pub fn acknowledged(&self, follower: &Follower, offset: u64, now_ms: u64) {
        follower.ack_offset.fetch_max(offset, Ordering::Relaxed);
        follower.ack_ms.store(now_ms, Ordering::Relaxed);
        self.acks.send_modify(|n| *n += 1);
    }

    /// How many online replicas acknowledged at least `offset`.
    pub fn acked_at_least(&self, offset: u64) -> usize {
        lock(&self.replicas)
            .iter()
            .filter(|f| {
                // Only an acknowledgement counts: a replica online since its snapshot was sent
                // may not have loaded it yet (and acknowledged offset 0 is not "nothing").
                f.online.load(Ordering::Relaxed)
                    && f.ack_ms.load(Ordering::Relaxed) != 0
                    && f.ack_offset.load(Ordering::Relaxed) >= offset
            })
            .count()
    }

    /// Waits until at least `replicas` acknowledged `offset`, asking them to acknowledge now;
    /// returns how many did (WAIT, without its timeout).
    pub async fn wait_for_acks(&self, offset: u64, replicas: usize) -> usize {
        let mut acks = self.acks.subscribe();
        self.getack.send_modify(|n| *n += 1);
        loop {
            let count = self.acked_at_least(offset);
            if count >= replicas {
                return count;
            }
            if acks.changed().await.is_err() {
                return count;
            }
        }
    }

    /// A receiver that moves when a WAIT asks for acknowledgements.
    pub fn getack_signal(&self) -> watch::Receiver<u64> {
        self.getack.subscribe()
    }

    /// ROLE's reply, given the feed's offset (this node's `master_repl_offset`).
    pub fn role(&self, offset: u64) -> Frame {
        match self.link() {
            None => {
                let replicas = lock(&self.replicas)
                    .iter()
                    .filter(|f| f.online.load(Ordering::Relaxed))
                    .map(|f| {
                        Frame::Array(vec![
                            Frame::bulk(f.ip.clone()),
                            Frame::bulk(f.port.to_string()),
                            Frame::bulk(f.ack_offset.load(Ordering::Relaxed).to_string()),
                        ])
                    })
                    .collect();
                Frame::Array(vec![
                    Frame::bulk("master"),
                    Frame::Integer(offset as i64),
                    Frame::Array(replicas),
                ])
            }
            Some(link) => {
                let state = link.state();
                let applied = if state == LinkState::Connected {
                    offset as i64
                } else {
                    -1
                };
                Frame::Array(vec![
                    Frame::bulk("slave"),
                    Frame::bulk(link.host.clone()),
                    Frame::Integer(i64::from(link.port)),
                    Frame::bulk(state.role_name()),
                    Frame::Integer(applied),
                ])
            }
        }
    }

    /// Whether a full sync's load holds the keyspace (INFO persistence's `loading`).
    pub fn loading(&self) -> bool {
        self.gate() == Gate::Loading
    }

    /// INFO persistence's fields of a load under way, as Redis's: its start, its size (0
    /// while a streamed snapshot's is not known), the bytes taken, and Redis's estimate.
    pub fn loading_info(&self, out: &mut String, now_ms: u64) {
        let started = self.load_started_ms.load(Ordering::Relaxed);
        let total = self.load_total.load(Ordering::Relaxed);
        let loaded = self.loaded_bytes.load(Ordering::Relaxed);
        let elapsed = now_ms.saturating_sub(started) / 1000;
        let (perc, remaining) = match total {
            // Redis's estimate with no total known: one byte left.
            0 => (0.0, 1),
            total => (
                loaded as f64 / total as f64 * 100.0,
                total.saturating_sub(loaded),
            ),
        };
        let eta = if elapsed == 0 {
            1
        } else {
            elapsed * remaining / (loaded + 1)
        };
        let _ = write!(
            out,
            "loading_start_time:{}\r\nloading_total_bytes:{total}\r\nloading_rdb_used_mem:0\r\n\
             loading_loaded_bytes:{loaded}\r\nloading_loaded_perc:{perc:.2}\r\n\
             loading_eta_seconds:{eta}\r\n",
            started / 1000,
        );
    }

    /// INFO's replication section, given the feed's figures and the time.
    pub fn info(&self, out: &mut String, feed: &FeedFigures, now_ms: u64) {
        let seconds_since = |ms: u64| now_ms.saturating_sub(ms) / 1000;
        match self.link() {
            None => out.push_str("role:master\r\n"),
            Some(link) => {
                let state = link.state();
                let up = state == LinkState::Connected;
                let last_io = link.last_io_ms.load(Ordering::Relaxed);
                let emptied = self.emptied.load(Ordering::Relaxed);
                let _ = write!(
                    out,
                    "role:slave\r\nmaster_host:{}\r\nmaster_port:{}\r\nmaster_link_status:{}\r\n\
                     master_last_io_seconds_ago:{}\r\nmaster_sync_in_progress:{}\r\n\
                     slave_read_repl_offset:{}\r\nslave_repl_offset:{}\r\n",
                    link.host,
                    link.port,
                    if up { "up" } else { "down" },
                    if up && last_io != 0 {
                        seconds_since(last_io) as i64
                    } else {
                        -1
                    },
                    u8::from(state == LinkState::Sync),
                    // Never behind what was applied (a link connecting again has read
                    // nothing yet: Redis shows its cached primary's offsets then).
                    if emptied {
                        1
                    } else {
                        link.read_offset.load(Ordering::Relaxed).max(feed.offset)
                    },
                    if emptied { 1 } else { feed.offset },
                );
                if state == LinkState::Sync {
                    // Redis's fields of a transfer; the snapshot is streamed, its size not
                    // known ahead: -1, as Redis shows before it learns a size.
                    let _ = write!(
                        out,
                        "master_sync_total_bytes:-1\r\nmaster_sync_read_bytes:{}\r\n\
                         master_sync_left_bytes:-1\r\nmaster_sync_perc:0.00\r\n\
                         master_sync_last_io_seconds_ago:{}\r\n",
                        link.sync_read.load(Ordering::Relaxed),
                        seconds_since(last_io),
                    );
                }
                if !up {
                    let down = link.down_since_ms.load(Ordering::Relaxed);
                    let down = if down == 0 {
                        -1
                    } else {
                        seconds_since(down) as i64
                    };
                    let _ = write!(out, "master_link_down_since_seconds:{down}\r\n");
                }
                let _ = write!(
                    out,
                    "slave_priority:{}\r\nslave_read_only:{}\r\nreplica_announced:1\r\n",
                    self.priority(),
                    u8::from(self.read_only()),
                );
            }
        }
        let replicas = self.replicas();
        let _ = write!(out, "connected_slaves:{}\r\n", replicas.len());
        for (n, f) in replicas.iter().enumerate() {
            let online = f.online.load(Ordering::Relaxed);
            let _ = write!(
                out,
                "slave{n}:ip={},port={},state={},offset={},lag={}\r\n",
                f.ip,
                f.port,
                if online { "online" } else { "wait_bgsave" },
                f.ack_offset.load(Ordering::Relaxed),
                match f.ack_ms.load(Ordering::Relaxed) {
                    0 => 0,
                    acked => seconds_since(acked),
                },
            );
        }
        let ids = self.ids();
        let _ = write!(
            out,
            "master_failover_state:no-failover\r\nmaster_replid:{}\r\nmaster_replid2:{}\r\n\
             master_repl_offset:{}\r\nsecond_repl_offset:{}\r\nrepl_backlog_active:{}\r\n\
             repl_backlog_size:{}\r\nrepl_backlog_first_byte_offset:{}\r\n\
             repl_backlog_histlen:{}\r\n",
            ids.replid,
            ids.replid2,
            feed.offset,
            ids.second_offset,
            u8::from(feed.histlen > 0 || !replicas.is_empty() || self.link().is_some()),
            feed.backlog_size,
            feed.first_byte_offset,
            feed.histlen,
        );
    }
}

/// `replicaof` as CONFIG GET shows it and CONFIG REWRITE writes it: `"<host> <port>"` of the
/// primary this node follows now; `None` on a primary.
pub fn replicaof_setting(repl: &Replication) -> Option<String> {
    repl.link()
        .map(|link| format!("{} {}", link.host, link.port))
}

/// The client side of TLS for a replica's link.
#[derive(Clone)]
pub struct TlsClient(pub tokio_rustls::TlsConnector);

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient")
    }
}

/// The replication settings as given (`config/raw.rs`), to validate.
#[derive(Debug, Default)]
pub struct RawSettings {
    /// `replicaof`: `<host> <port>`.
    pub replicaof: Option<String>,
    /// `masteruser`.
    pub masteruser: Option<String>,
    /// `masterauth`.
    pub masterauth: Option<String>,
    /// `replica-read-only`.
    pub read_only: Option<bool>,
    /// `replica-priority`.
    pub priority: Option<u64>,
    /// `repl-timeout`.
    pub timeout: Option<std::time::Duration>,
    /// `repl-ping-replica-period`.
    pub ping_period: Option<std::time::Duration>,
    /// `repl-backlog-size`.
    pub backlog_bytes: Option<u64>,
    /// `tls-replication`.
    pub tls_replication: bool,
    /// `replica-announce-ip`.
    pub announce_ip: Option<String>,
    /// `replica-announce-port`.
    pub announce_port: Option<u64>,
}

/// The smallest `repl-backlog-size`, as Redis's.
pub const MIN_BACKLOG_BYTES: u64 = 16 * 1024;

/// Parses `replicaof`'s `<host> <port>` (also `no one`: none).
pub fn parse_replicaof(text: &str) -> Result<Option<(String, u16)>, String> {
    let mut words = text.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(no), Some(one), None)
            if no.eq_ignore_ascii_case("no") && one.eq_ignore_ascii_case("one") =>
        {
            Ok(None)
        }
        (Some(host), Some(port), None) => port
            .parse()
            .map(|port| Some((host.to_owned(), port)))
            .map_err(|_| "the port must be a number in 0..=65535".to_owned()),
        _ => Err("expected \"<host> <port>\"".to_owned()),
    }
}

impl Settings {
    /// Checks the replication settings; `tls` is the node's TLS listener, whose files the
    /// link uses with `tls-replication`.
    pub fn from_settings(
        raw: RawSettings,
        tls: Option<&crate::tls::TlsConfig>,
    ) -> Result<Settings, crate::setting::Invalid> {
        use crate::setting::Invalid;
        let defaults = Settings::default();
        let replicaof = match raw.replicaof {
            None => None,
            Some(text) => parse_replicaof(&text)
                .map_err(|reason| Invalid::new("replicaof", text.clone(), reason))?,
        };
        let priority = match raw.priority {
            None => defaults.priority,
            Some(priority) => {
                crate::setting::range("replica-priority", priority, 0, i32::MAX as u64)? as i64
            }
        };
        let tls = match (raw.tls_replication, tls) {
            (false, _) => None,
            (true, None) => {
                return Err(Invalid::new(
                    "tls-replication",
                    "yes",
                    "needs the TLS settings (--tls-port, --tls-cert-file, --tls-key-file, \
                     --tls-ca-cert-file)",
                ))
            }
            (true, Some(tls)) => {
                Some(TlsClient(tls.replication_connector().map_err(|error| {
                    Invalid::new("tls-replication", "yes", error.to_string())
                })?))
            }
        };
        let timeout = raw.timeout.unwrap_or(defaults.timeout);
        let ping_period = raw.ping_period.unwrap_or(defaults.ping_period);
        // A replica drops a link silent for repl-timeout, and an idle primary's pings are all
        // it hears: as often or rarer, every idle link would be dropped and resynchronized.
        if ping_period >= timeout {
            return Err(Invalid::new(
                "repl-ping-replica-period",
                sessiond_protocol::units::format_duration(ping_period),
                format!(
                    "must be shorter than repl-timeout ({})",
                    sessiond_protocol::units::format_duration(timeout)
                ),
            ));
        }
        Ok(Settings {
            replicaof,
            masteruser: raw.masteruser.filter(|u| !u.is_empty()),
            masterauth: raw
                .masterauth
                .filter(|p| !p.is_empty())
                .map(crate::auth::Secret::new),
            read_only: raw.read_only.unwrap_or(defaults.read_only),
            priority,
            timeout,
            ping_period,
            backlog_bytes: match raw.backlog_bytes {
                None => defaults.backlog_bytes,
                // Below Redis's least, raised to it, as Redis does.
                Some(bytes) => crate::setting::range("repl-backlog-size", bytes, 0, 1 << 40)?
                    .max(MIN_BACKLOG_BYTES),
            },
            tls,
            announce_ip: match raw.announce_ip.filter(|ip| !ip.is_empty()) {
                Some(ip) => {
                    Some(announce_ip(&ip).map_err(|reason| {
                        Invalid::new("replica-announce-ip", ip.clone(), reason)
                    })?)
                }
                None => None,
            },
            announce_port: match raw.announce_port {
                None => 0,
                Some(port) => {
                    crate::setting::range("replica-announce-port", port, 0, 65535)? as u16
                }
            },
        })
    }
}

/// A `replica-announce-ip`: what `REPLCONF ip-address` may carry (shorter than Redis's 256
/// bytes, no spaces or line breaks).
pub fn announce_ip(ip: &str) -> Result<String, String> {
    if ip.len() >= sessiond_protocol::cmd::MAX_REPLICA_ADDRESS {
        return Err(format!(
            "must be shorter than {} bytes",
            sessiond_protocol::cmd::MAX_REPLICA_ADDRESS
        ));
    }
    if ip.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not hold spaces or control characters".to_owned());
    }
    Ok(ip.to_owned())
}

/// The replication settings, validated (see `config.rs`).
#[derive(Clone)]
pub struct Settings {
    /// `replicaof`: the primary to follow from the start.
    pub replicaof: Option<(String, u16)>,
    /// `masteruser`.
    pub masteruser: Option<String>,
    /// `masterauth`.
    pub masterauth: Option<crate::auth::Secret>,
    /// `replica-read-only`.
    pub read_only: bool,
    /// `replica-priority`.
    pub priority: i64,
    /// `repl-timeout`.
    pub timeout: std::time::Duration,
    /// `repl-ping-replica-period`.
    pub ping_period: std::time::Duration,
    /// `repl-backlog-size`.
    pub backlog_bytes: u64,
    /// `tls-replication`: the link's TLS client (the node's certificate, its CA as roots).
    pub tls: Option<TlsClient>,
    /// `replica-announce-ip`.
    pub announce_ip: Option<String>,
    /// `replica-announce-port` (0: none).
    pub announce_port: u16,
}

impl std::fmt::Debug for Settings {
    // By hand: the password stays out, and the TLS client shows as a yes or no.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("replicaof", &self.replicaof)
            .field("masteruser", &self.masteruser)
            .field("masterauth", &self.masterauth.is_some())
            .field("read_only", &self.read_only)
            .field("priority", &self.priority)
            .field("timeout", &self.timeout)
            .field("ping_period", &self.ping_period)
            .field("backlog_bytes", &self.backlog_bytes)
            .field("tls", &self.tls.is_some())
            .field("announce_ip", &self.announce_ip)
            .field("announce_port", &self.announce_port)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            replicaof: None,
            masteruser: None,
            masterauth: None,
            read_only: true,
            priority: 100,
            timeout: std::time::Duration::from_secs(60),
            ping_period: std::time::Duration::from_secs(1),
            backlog_bytes: crate::store::feed::DEFAULT_BACKLOG_BYTES,
            tls: None,
            announce_ip: None,
            announce_port: 0,
        }
    }
}

/// The feed's figures INFO reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct FeedFigures {
    /// `master_repl_offset`: bytes the feed has carried.
    pub offset: u64,
    /// `repl_backlog_size`.
    pub backlog_size: u64,
    /// `repl_backlog_first_byte_offset` (Redis's, 1-based).
    pub first_byte_offset: u64,
    /// `repl_backlog_histlen`.
    pub histlen: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> &'static sessiond_protocol::cmd::CommandSpec {
        sessiond_protocol::cmd::lookup(name.as_bytes()).expect("a command")
    }

    fn following() -> (Replication, tokio::runtime::Runtime) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let repl = Replication::new(&Settings::default());
        let _guard = runtime.enter();
        assert!(repl.follow("127.0.0.1".into(), 1, |_| tokio::spawn(async {})));
        (repl, runtime)
    }

    #[test]
    fn promotion_waits_for_the_frame_under_way_then_reads_the_offset() {
        let (repl, _runtime) = following();
        let link = repl.link().expect("a link");
        let offset = AtomicU64::new(10);
        assert!(link.begin_apply());
        std::thread::scope(|scope| {
            let promoting = scope.spawn(|| repl.promote(|| offset.load(Ordering::SeqCst)));
            // The frame goes on while the promotion waits; its offset then counts.
            while !link.stopped.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            offset.store(20, Ordering::SeqCst);
            assert!(!link.end_apply());
            assert!(promoting.join().expect("promotion"));
        });
        assert_eq!(repl.ids().second_offset, 21);
        assert_eq!(repl.gate(), Gate::Open);
        // The task applies nothing more.
        assert!(!link.begin_apply());
    }

    #[test]
    fn promotion_keeps_the_old_id_as_the_second_up_to_the_offset() {
        let (repl, _runtime) = following();
        repl.adopt("a".repeat(40).as_str(), None);
        assert!(repl.promote(|| 100));
        let ids = repl.ids();
        assert_eq!(ids.replid2, "a".repeat(40));
        assert_eq!(ids.second_offset, 101);
        assert_ne!(ids.replid, ids.replid2);
        // A sibling that has up to 100 bytes of the old history continues; one ahead does not.
        assert!(repl.may_continue("a".repeat(40).as_bytes(), 101));
        assert!(!repl.may_continue("a".repeat(40).as_bytes(), 102));
        assert!(repl.may_continue(ids.replid.as_bytes(), 5000));
        assert!(!repl.may_continue(b"?", 1));
        // Promoting a primary changes nothing.
        assert!(!repl.promote(|| 200));
        assert_eq!(repl.ids(), ids);
    }

    #[test]
    fn a_continue_under_a_new_id_shifts_the_old_one() {
        let repl = Replication::new(&Settings::default());
        repl.adopt("b".repeat(40).as_str(), None);
        repl.adopt("c".repeat(40).as_str(), Some(51));
        let ids = repl.ids();
        assert_eq!(
            (ids.replid.as_str(), ids.replid2.as_str(), ids.second_offset),
            ("c".repeat(40).as_str(), "b".repeat(40).as_str(), 51)
        );
    }

    #[test]
    fn the_gate_refuses_writes_on_a_replica_and_all_but_loading_commands_in_a_load() {
        let (repl, _runtime) = following();
        assert_eq!(repl.gate(), Gate::ReadOnly);
        assert_eq!(refusal(Gate::ReadOnly, spec("set")), Some(READONLY));
        assert_eq!(refusal(Gate::ReadOnly, spec("get")), None);
        assert_eq!(refusal(Gate::Loading, spec("get")), Some(LOADING));
        assert_eq!(refusal(Gate::Loading, spec("info")), None);
        assert_eq!(refusal(Gate::Loading, spec("replicaof")), None);
        assert_eq!(refusal(Gate::Writable, spec("set")), None);
        repl.set_read_only(false);
        assert_eq!(repl.gate(), Gate::Writable);
        let link = repl.link().expect("a link");
        let before = repl.ids().replid;
        assert!(repl.begin_load(&link, 0));
        assert_eq!(repl.gate(), Gate::Loading);
        assert_ne!(repl.ids().replid, before);
        assert!(repl.end_load(&link, true, |r| r.adopt(&"a".repeat(40), None), || {}));
        assert_eq!(repl.gate(), Gate::Writable);
        assert_eq!(repl.ids().replid, "a".repeat(40));
        // A promotion during a load leaves the gate closed until the loader ended, flushing.
        assert!(repl.begin_load(&link, 0));
        assert!(repl.promote(|| 0));
        assert_eq!(repl.gate(), Gate::Loading);
        let mut flushed = false;
        assert!(!repl.end_load(&link, true, |_| panic!("adopted"), || flushed = true));
        assert!(flushed);
        assert_eq!(repl.gate(), Gate::Open);
        // A load by a link the node no longer follows changes nothing.
        assert!(!repl.begin_load(&link, 0));
        assert_eq!(repl.gate(), Gate::Open);
    }

    #[test]
    fn a_load_s_progress_is_estimated_as_redis_does() {
        let (repl, _runtime) = following();
        let link = repl.link().expect("a link");
        assert!(repl.begin_load(&link, 10_000));
        repl.loaded_bytes.store(250, Ordering::Relaxed);
        let info = |repl: &Replication| {
            let mut out = String::new();
            repl.loading_info(&mut out, 12_000);
            out
        };
        // A streamed snapshot: no total, Redis's estimate of one byte left.
        let streamed = info(&repl);
        for field in [
            "loading_start_time:10\r\n",
            "loading_total_bytes:0\r\n",
            "loading_loaded_bytes:250\r\n",
            "loading_loaded_perc:0.00\r\n",
            "loading_eta_seconds:0\r\n",
        ] {
            assert!(streamed.contains(field), "{field} in {streamed}");
        }
        // A received one: its size known, 2 s for the first quarter.
        repl.load_total.store(1000, Ordering::Relaxed);
        let received = info(&repl);
        for field in [
            "loading_total_bytes:1000\r\n",
            "loading_loaded_perc:25.00\r\n",
            "loading_eta_seconds:5\r\n",
        ] {
            assert!(received.contains(field), "{field} in {received}");
        }
    }

    #[test]
    fn a_promotion_ends_what_a_broken_sync_said_of_the_offset() {
        let (repl, runtime) = following();
        let link = repl.link().expect("a link");
        // A full sync's load begins (the keyspace emptied), then REPLICAOF NO ONE during it.
        assert!(repl.begin_load(&link, 0));
        assert!(repl.promote(|| 0));
        assert!(!repl.end_load(&link, true, |_| panic!("adopted"), || {}));
        // Later the node follows again and continues by a partial resync: nothing emptied.
        {
            let _guard = runtime.enter();
            assert!(repl.follow("127.0.0.2".into(), 2, |_| tokio::spawn(async {})));
        }
        let link = repl.link().expect("a link");
        link.set_state(LinkState::Connected, 0);
        let feed = FeedFigures {
            offset: 5000,
            backlog_size: 1 << 20,
            first_byte_offset: 1,
            histlen: 4999,
        };
        let mut out = String::new();
        repl.info(&mut out, &feed, 0);
        assert!(out.contains("slave_repl_offset:5000"), "{out}");
    }

    #[test]
    fn replicaof_parses_as_the_config_file_writes_it() {
        assert_eq!(
            parse_replicaof("10.0.0.1 6380"),
            Ok(Some(("10.0.0.1".to_owned(), 6380)))
        );
        assert_eq!(parse_replicaof("no one"), Ok(None));
        assert!(parse_replicaof("10.0.0.1").is_err());
        assert!(parse_replicaof("10.0.0.1 70000").is_err());
        assert!(parse_replicaof("a 1 b").is_err());
    }
}
