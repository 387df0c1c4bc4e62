//! The accept loop and graceful shutdown.
//!
//! [`Server::run`] accepts connections until its shutdown future resolves or a client sends
//! `SHUTDOWN`; then it stops accepting, tells every connection to finish the commands it has
//! read and close, and waits for them up to the configured grace period.
//!
//! With `--tls-port`, one loop accepts on two listeners, plaintext and TLS; both share
//! `maxclients`, the client registry, the counters and shutdown. A TLS connection's handshake
//! runs in its own task, bounded in time, so a client that stalls it never holds up accepts.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use crate::clients::ClientState;
use crate::config::Config;
use crate::connection;
use crate::metrics::{Health, MetricsEndpoint};
use crate::persist::{self, Persistence};
use crate::shared::Shared;
use crate::store::Databases;
use crate::tls;

/// How long a client refused at `maxclients` gets to take the error (over TLS, to finish its
/// handshake first) before its socket is dropped.
const REFUSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Failures that stop the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bound listener has no address (should not happen).
    #[error("listener address: {0}")]
    LocalAddr(std::io::Error),
    /// The data directory or the snapshot cannot be used.
    #[error(transparent)]
    Data(#[from] persist::PrepareError),
    /// The thread loading the snapshot failed (panicked).
    #[error("loading the snapshot failed: {0}")]
    Load(String),
    /// The final snapshot at shutdown failed, and the exit was forced (SHUTDOWN FORCE, or a
    /// second signal during the shutdown).
    #[error("final snapshot failed: {0}; exiting anyway as asked: the writes since the last good snapshot are lost")]
    FinalSave(persist::SaveError),
}

/// A server bound to its listeners, ready to run.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: Option<TlsListener>,
    /// What the metrics endpoint reports as `/readyz`.
    health: Arc<Health>,
    /// The metrics endpoint's task, stopped when the server is dropped or its run ends.
    _metrics: Option<AbortOnDropHandle<()>>,
}

/// The keyspace with the snapshot loaded, and the data directory's lock.
type Loaded = (Arc<Databases>, Option<persist::lock::DirLock>);

/// Creates the keyspace and loads the snapshot into it, if persistence is on.
fn load(
    clock: crate::Clock,
    databases: usize,
    persist: Option<&persist::PersistConfig>,
) -> Result<Loaded, ServerError> {
    let store = Arc::new(Databases::new(clock, databases));
    let Some(persist) = persist else {
        return Ok((store, None));
    };
    let path = persist.path();
    let prepared = persist::prepare_and_load(persist, &store)?;
    match prepared.summary {
        Some(summary) => tracing::info!(
            path = %path.display(),
            records = summary.records,
            skipped_expired = summary.expired,
            keys = store.len(),
            "snapshot loaded"
        ),
        None => tracing::info!(path = %path.display(), "no snapshot yet; starting empty"),
    }
    Ok((store, Some(prepared.lock)))
}

/// Starts serving the metrics endpoint, if there is one, and announces its address (before
/// the snapshot loads: a supervisor can probe `/readyz` meanwhile).
fn serve_metrics(
    endpoint: Option<MetricsEndpoint>,
    health: &Arc<Health>,
) -> Result<Option<(SocketAddr, AbortOnDropHandle<()>)>, ServerError> {
    let Some(endpoint) = endpoint else {
        return Ok(None);
    };
    let addr = endpoint.local_addr();
    let task = endpoint
        .spawn(health.clone())
        .map_err(|source| ServerError::Bind { addr, source })?;
    tracing::info!("metrics on http://{addr}/metrics");
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "the metrics endpoint has no password: anyone who can reach it reads the server's figures (no session IDs, keys or values)"
        );
    }
    Ok(Some((addr, task)))
}

/// The TLS port's listener and the acceptor that runs handshakes on its connections.
struct TlsListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

/// The metrics endpoint `--metrics-port` asks for, bound; `None` without one.
fn bind_metrics(config: &Config) -> Result<Option<MetricsEndpoint>, ServerError> {
    config
        .metrics_port
        .map(|port| {
            let addr = SocketAddr::new(config.metrics_bind, port);
            MetricsEndpoint::bind(addr).map_err(|source| ServerError::Bind { addr, source })
        })
        .transpose()
}

impl Server {
    /// Binds `config.bind:config.port`, and `config.bind` on the TLS port if there is one, and
    /// loads the snapshot. With `--metrics-port`, the endpoint is bound and served first, so
    /// that `/readyz` answers (503) while a long load runs; the load runs on a blocking thread.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        let metrics = bind_metrics(&config)?;
        let addr = SocketAddr::new(config.bind, config.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Server::start(config, listener, metrics).await
    }

    /// [`Server::from_listener`] with the metrics endpoint `metrics` (tests bind
    /// `127.0.0.1:0`), served while the snapshot loads on a blocking thread.
    pub async fn start(
        config: Config,
        listener: TcpListener,
        metrics: Option<MetricsEndpoint>,
    ) -> Result<Server, ServerError> {
        let health = Arc::new(Health::default());
        let metrics = serve_metrics(metrics, &health)?;
        let (clock, databases, persist) = (
            config.clock.clone(),
            config.databases,
            config.persistence.clone(),
        );
        let loaded = tokio::task::spawn_blocking(move || load(clock, databases, persist.as_ref()))
            .await
            .map_err(|join| ServerError::Load(join.to_string()))??;
        Server::assemble(config, listener, loaded, health, metrics)
    }

    /// Uses an already bound plaintext listener (tests bind `127.0.0.1:0`); the TLS listener,
    /// if `config.tls` asks for one, is bound here on `config.bind`, and so is the metrics
    /// endpoint with `config.metrics_port`. The snapshot loads on this thread. Must be called
    /// within a tokio runtime.
    pub fn from_listener(config: Config, listener: TcpListener) -> Result<Server, ServerError> {
        let metrics = bind_metrics(&config)?;
        let health = Arc::new(Health::default());
        let metrics = serve_metrics(metrics, &health)?;
        let loaded = load(
            config.clock.clone(),
            config.databases,
            config.persistence.as_ref(),
        )?;
        Server::assemble(config, listener, loaded, health, metrics)
    }

    fn assemble(
        config: Config,
        listener: TcpListener,
        (store, data_dir_lock): Loaded,
        health: Arc<Health>,
        metrics: Option<(SocketAddr, AbortOnDropHandle<()>)>,
    ) -> Result<Server, ServerError> {
        // The command clock calibrates once (a few ms): before serving, not in the first
        // command.
        crate::process::clock_ticks();
        let local_addr = listener.local_addr().map_err(ServerError::LocalAddr)?;
        let tls = match &config.tls {
            None => None,
            Some(tls) => Some(TlsListener {
                listener: listen(SocketAddr::new(config.bind, tls.port))?,
                acceptor: tls.acceptor(),
            }),
        };
        let tls_local_addr = match &tls {
            None => None,
            Some(tls) => Some(tls.listener.local_addr().map_err(ServerError::LocalAddr)?),
        };
        let persistence = Arc::new(Persistence::new(config.persistence.clone(), store.clone()));
        let auth = crate::auth::Auth::new(config.requirepass.as_ref(), &config.users);
        if !config.protected_mode && !auth.required() && !config.bind.is_loopback() {
            tracing::warn!(
                bind = %config.bind,
                "protected mode is off and no password is set: anyone who can reach this port can read and end every session"
            );
        }
        let shared = Arc::new(Shared::new(
            config,
            store,
            persistence,
            auth,
            local_addr,
            tls_local_addr,
            data_dir_lock,
        ));
        let (metrics_addr, metrics_task) = metrics.unzip();
        if let Some(addr) = metrics_addr {
            let _ = shared.metrics_local_addr.set(addr);
        }
        health.attach(shared.clone());
        Ok(Server {
            shared,
            listener,
            tls,
            health,
            _metrics: metrics_task,
        })
    }

    /// The address plaintext clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The address TLS clients connect to, if `--tls-port` is set.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.shared.tls_local_addr
    }

    /// The shared state (store, clients, counters).
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until `shutdown` resolves or a client sends SHUTDOWN, then drains connections
    /// within the grace period and writes the final snapshot. See [`Server::run_with_signals`].
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let (signals, received) = mpsc::unbounded_channel();
        let forward = async move {
            shutdown.await;
            let _ = signals.send(());
            // Holding the sender: no more signals, but the channel stays open.
            std::future::pending::<()>().await;
        };
        tokio::select! {
            result = self.run_with_signals(received) => result,
            () = forward => Ok(()),
        }
    }

    /// Serves until a stop signal arrives on `signals` (SIGTERM, SIGINT) or a client sends
    /// SHUTDOWN; then stops accepting, drains connections within the grace period and writes
    /// the final snapshot. If that snapshot fails, the server does not exit, as Redis does not:
    /// it logs why, answers the SHUTDOWN caller with an error and serves again, unless the
    /// exit was forced (SHUTDOWN FORCE, or a second signal during the shutdown). A second
    /// signal also ends the wait for connections at once; a save already running is finished.
    pub async fn run_with_signals(
        self,
        mut signals: mpsc::UnboundedReceiver<()>,
    ) -> Result<(), ServerError> {
        let Server {
            shared,
            listener,
            tls,
            health,
            _metrics,
        } = self;
        let (tls_listener, acceptor) = match tls {
            Some(tls) => (Some(tls.listener), Some(tls.acceptor)),
            None => (None, None),
        };
        let tracker = TaskTracker::new();
        let idle_poll = shared.config.idle_poll;
        // Stopped however `run` ends, dropped included.
        let _poller = crate::idle_poll::applies(idle_poll).then(|| {
            tokio_util::task::AbortOnDropHandle::new(tokio::spawn(crate::idle_poll::run(idle_poll)))
        });
        // `used_memory_peak`'s samples, as Redis's cron takes them.
        let _memory_sampler = {
            let shared = Arc::clone(&shared);
            tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
                let mut tick = tokio::time::interval(crate::process::PEAK_PERIOD);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    shared.sample_memory();
                }
            }))
        };
        // `--replicaof`: the link starts with the server.
        if let Some((host, port)) = shared.config.replication.replicaof.clone() {
            crate::cmd::replication::follow(&shared, host, port);
        }
        // Once the sender is gone, no signal will come: the branch is turned off.
        let mut signals_open = true;
        loop {
            let mut stop = shared.shutdown_signal();
            let expiry = tokio::spawn(shared.dbs.clone().run_active_expiry(
                shared.config.active_expire_interval,
                wait_for_true(shared.shutdown_signal()),
            ));
            let periodic = tokio::spawn(
                shared
                    .persistence
                    .clone()
                    .run_periodic(wait_for_true(shared.shutdown_signal())),
            );
            // Accepting; the listeners stay open while shutting down (a connection waits in the
            // backlog) so that the server can serve again if the final save fails.
            health.set_ready(true);
            loop {
                tokio::select! {
                    signal = signals.recv(), if signals_open => match signal {
                        Some(()) => break,
                        None => signals_open = false,
                    },
                    _ = stop.wait_for(|stopping| *stopping) => break,
                    accepted = listener.accept() => match accepted {
                        Ok((socket, peer)) => admit(&shared, &tracker, socket, peer, None),
                        Err(error) => accept_failed(error).await,
                    },
                    accepted = accept_if_some(tls_listener.as_ref()) => match accepted {
                        Ok((socket, peer)) => admit(&shared, &tracker, socket, peer, acceptor.as_ref()),
                        Err(error) => accept_failed(error).await,
                    },
                }
            }
            health.set_ready(false);
            shared.request_shutdown();
            let request = shared.take_shutdown_request();
            let mut forced = false;
            let grace = shared.config.shutdown_timeout;
            tracing::info!(
                connections = shared.clients.len(),
                grace_ms = grace.as_millis() as u64,
                "shutting down: no longer accepting, draining connections"
            );
            if !request.now {
                let drained = tokio::time::timeout(grace, shared.drained());
                tokio::select! {
                    drained = drained => if drained.is_err() {
                        tracing::warn!(
                            connections = shared.clients.len(),
                            "grace period over; closing remaining connections"
                        );
                    },
                    Some(()) = signals.recv(), if signals_open => {
                        forced = true;
                        tracing::warn!(
                            connections = shared.clients.len(),
                            "second signal: no longer waiting for connections; exiting after the final snapshot, whatever its outcome"
                        );
                    }
                }
            }
            let _ = expiry.await;
            let _ = periodic.await;
            let persistence = &shared.persistence;
            if persistence.config().is_none() || !request.save {
                tracing::info!("shutdown complete");
                return Ok(());
            }
            let save = async {
                // A BGSAVE may still be running; the final snapshot must come after it.
                persistence.idle().await;
                persistence.save().await
            };
            tokio::pin!(save);
            let outcome = loop {
                tokio::select! {
                    outcome = &mut save => break outcome,
                    Some(()) = signals.recv(), if signals_open && !forced => {
                        forced = true;
                        tracing::warn!("second signal: exiting after the final snapshot, whatever its outcome (a save in progress is finished)");
                    }
                }
            };
            match outcome {
                Ok(_) => {
                    tracing::info!("shutdown complete");
                    return Ok(());
                }
                Err(error) if request.force || forced => return Err(ServerError::FinalSave(error)),
                Err(error) => {
                    tracing::error!(
                        %error,
                        "Error trying to save the DB, can't exit: the final snapshot failed, so \
                         sessiond keeps serving (SHUTDOWN NOSAVE or FORCE, or a second signal \
                         during a shutdown, exits without it)"
                    );
                    shared.shutdown_failed();
                }
            }
        }
    }
}

/// The runtime for a server with `config`: with one thread, the current-thread runtime, which
/// has no work to share between threads and can poll before it sleeps (`--idle-poll-us`, see
/// [`crate::idle_poll`]); with more, the multi-thread runtime with that many workers.
pub fn build_runtime(config: &Config) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match config.worker_threads() {
        1 => tokio::runtime::Builder::new_current_thread(),
        threads => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
    };
    builder.enable_all().build()
}

/// Runs a server on `listener` with `config` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    Server::from_listener(config, listener)?.run(shutdown).await
}

async fn wait_for_true(mut signal: watch::Receiver<bool>) {
    let _ = signal.wait_for(|stopping| *stopping).await;
}

/// Binds a listener now, without awaiting (`TcpListener::bind` is async only because it may
/// resolve a host name; this address is already resolved).
fn listen(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    let bind = || {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does: a restart can bind while old connections are in TIME_WAIT.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(1024)
    };
    bind().map_err(|source| ServerError::Bind { addr, source })
}

/// Accepts on `listener`, or waits forever if there is none.
async fn accept_if_some(
    listener: Option<&TcpListener>,
) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

async fn accept_failed(error: std::io::Error) {
    // Out of file descriptors and the like: log, back off briefly, go on.
    tracing::warn!(%error, "accept failed");
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
}

/// Takes a new connection: refused at `maxclients`, otherwise registered and served in a task of
/// its own, which first runs the TLS handshake when `tls` is given.
fn admit(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    mut socket: TcpStream,
    peer: SocketAddr,
    tls: Option<&TlsAcceptor>,
) {
    shared
        .stats
        .connections_received
        .fetch_add(1, Ordering::Relaxed);
    if shared.clients.len() >= shared.live.maxclients() {
        shared
            .stats
            .rejected_connections
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%peer, maxclients = shared.live.maxclients(), "refusing connection: max number of clients reached");
        // Answer without holding up the accept loop; the client may never read (or, on the TLS
        // port, never finish its handshake), so all of it is bounded.
        let tls = tls.cloned();
        tracker.spawn(async move {
            let reply = b"-ERR max number of clients reached\r\n";
            let refuse = async {
                match tls {
                    None => {
                        let _ = socket.write_all(reply).await;
                        let _ = socket.shutdown().await;
                    }
                    Some(acceptor) => {
                        if let Ok(mut stream) = acceptor.accept(socket).await {
                            let _ = stream.write_all(reply).await;
                            let _ = stream.shutdown().await;
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(REFUSE_TIMEOUT, refuse).await;
        });
        return;
    }
    if let Err(error) = socket.set_nodelay(true) {
        tracing::debug!(%peer, %error, "set_nodelay failed");
    }
    let local = socket.local_addr().unwrap_or(shared.local_addr);
    let client = shared.clients.register(peer, local);
    let shared = shared.clone();
    let tls = tls.cloned();
    shared.hold_drain();
    tracker.spawn(async move {
        let id = client.id;
        tracing::debug!(%peer, id, tls = tls.is_some(), "client connected");
        let serve = async {
            match tls {
                None => connection::serve(&shared, socket, client.clone()).await,
                Some(acceptor) => serve_tls(&shared, &acceptor, socket, client.clone()).await,
            }
        };
        match shared.config.auth_timeout {
            Some(limit) if shared.auth.required() => {
                tokio::pin!(serve);
                tokio::select! {
                    () = &mut serve => {}
                    () = tokio::time::sleep(limit) => {
                        if client.has_authenticated() {
                            serve.await;
                        } else {
                            // Dropping the connection's future closes its socket.
                            shared.stats.auth_timeouts.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(%peer, id, "closing a client that did not authenticate within --auth-timeout");
                        }
                    }
                }
            }
            _ => serve.await,
        }
        shared.clients.unregister(id);
        shared.release_drain();
        tracing::debug!(%peer, id, "client disconnected");
    });
}

/// Runs the TLS handshake (bounded by [`tls::HANDSHAKE_TIMEOUT`], or `--timeout` if shorter),
/// then serves the connection. A failed handshake is counted and logged with the peer's address
/// before the socket is closed.
async fn serve_tls(
    shared: &Arc<Shared>,
    acceptor: &TlsAcceptor,
    mut socket: TcpStream,
    client: Arc<ClientState>,
) {
    let peer = client.peer;
    let limit = shared
        .live
        .idle_timeout()
        .map_or(tls::HANDSHAKE_TIMEOUT, |idle| {
            idle.min(tls::HANDSHAKE_TIMEOUT)
        });
    let mut stop = shared.shutdown_signal();
    let handshake = tokio::select! {
        biased;
        _ = stop.wait_for(|stopping| *stopping) => return,
        handshake = tls::accept(acceptor, &mut socket, limit) => handshake,
    };
    match handshake {
        Ok(stream) => connection::serve(shared, stream, client).await,
        Err(error) => {
            shared
                .stats
                .tls_handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, %error, "TLS handshake failed; closing the connection");
        }
    }
}
