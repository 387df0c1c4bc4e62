//! The Prometheus endpoint (`--metrics-port`): `GET /metrics` in the Prometheus text format
//! (0.0.4), `GET /healthz` (the process serves HTTP) and `GET /readyz` (the snapshot is loaded
//! and the listeners accept), for scrapers and orchestrators.
//!
//! The listener is bound and served before the snapshot loads ([`crate::Server::bind`]), so
//! `/readyz` answers 503 during a long load instead of refusing connections. A scrape reads
//! the server's atomic counters, in a task of its own; the only locks it takes are those INFO
//! takes, each alone and for a read (the per-user index's shards, to count users; the save
//! status), never a keyspace shard's: it never stalls the clients' commands.
//!
//! The HTTP side is a small HTTP/1.1 responder rather than a framework: three GET paths with no
//! request body need none of hyper's features, and the server crate does not otherwise depend
//! on hyper. Every request is bounded: [`MAX_REQUEST_HEAD`] bytes of request line and headers,
//! [`REQUEST_TIMEOUT`] for the whole exchange, [`MAX_CONNECTIONS`] served at once (more are
//! closed at accept), one request per connection (`Connection: close`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::histogram::Counts;
use crate::shared::Shared;
use crate::stats::commands::{bucket_ceiling, CommandFigures};
use crate::stats::Stats;
use crate::store::session::LIFETIME_BOUNDS_MS;
use crate::store::EXPIRY_LAG_BOUNDS_MS;
use crate::store::{SessionStats, Store};

/// The most bytes of request line and headers read; a longer head is answered 431.
pub const MAX_REQUEST_HEAD: usize = 4096;

/// How long one connection may take to send its request and take the reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections served at once; one more is closed at accept, unanswered.
pub const MAX_CONNECTIONS: usize = 16;

/// What the endpoint reports: readiness, and the server's state once it exists.
#[derive(Debug, Default)]
pub struct Health {
    /// Whether the snapshot is loaded and the accept loop runs (`/readyz`).
    ready: AtomicBool,
    /// The server's state, set once the snapshot is loaded.
    shared: OnceLock<Arc<Shared>>,
}

impl Health {
    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The accept loop runs (true) or has stopped for a shutdown (false).
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The server's state, from now on reported by `/metrics`.
    pub(crate) fn attach(&self, shared: Arc<Shared>) {
        let _ = self.shared.set(shared);
    }
}

/// The endpoint's listener, bound; [`MetricsEndpoint::spawn`] starts serving it.
#[derive(Debug)]
pub struct MetricsEndpoint {
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
}

impl MetricsEndpoint {
    /// Binds `addr` now (tests bind `127.0.0.1:0` and read [`MetricsEndpoint::local_addr`]).
    pub fn bind(addr: SocketAddr) -> std::io::Result<MetricsEndpoint> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        Ok(MetricsEndpoint {
            listener,
            local_addr,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves the endpoint in a task of its own, until the handle is dropped. Must be called
    /// within a tokio runtime.
    pub(crate) fn spawn(
        self,
        health: Arc<Health>,
    ) -> std::io::Result<tokio_util::task::AbortOnDropHandle<()>> {
        let listener = TcpListener::from_std(self.listener)?;
        Ok(tokio_util::task::AbortOnDropHandle::new(tokio::spawn(
            serve(listener, health),
        )))
    }
}

/// Accepts and answers until the task is aborted, which aborts the connections' tasks too (they
/// are its `JoinSet`'s): none outlives the server, holding its state.
async fn serve(listener: TcpListener, health: Arc<Health>) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Collector(health.clone())));
    let registry = Arc::new(registry);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next() => continue,
        };
        let socket = match accepted {
            Ok((socket, _)) => socket,
            Err(error) => {
                tracing::debug!(%error, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        // Over the limit the socket is dropped at once: a scraper retries, a flood gets nothing.
        if connections.len() >= MAX_CONNECTIONS {
            continue;
        }
        let (health, registry) = (health.clone(), registry.clone());
        connections.spawn(async move {
            let _ =
                tokio::time::timeout(REQUEST_TIMEOUT, respond(socket, &health, &registry)).await;
        });
    }
}

/// Reads one request head and answers it.
async fn respond(
    mut socket: TcpStream,
    health: &Health,
    registry: &Registry,
) -> std::io::Result<()> {
    let mut head = [0u8; MAX_REQUEST_HEAD];
    let mut len = 0;
    let end = loop {
        if let Some(end) = head[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if len == head.len() {
            return reply(&mut socket, false, 431, "request header too large\n", TEXT).await;
        }
        let read = socket.read(&mut head[len..]).await?;
        if read == 0 {
            return Ok(());
        }
        len += read;
    };
    let request_line = head[..end].split(|&b| b == b'\r').next().unwrap_or(&[]);
    let mut parts = request_line.split(|&b| b == b' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version), None) = (method, target, version, parts.next())
    else {
        return reply(&mut socket, false, 400, "bad request\n", TEXT).await;
    };
    if !version.starts_with(b"HTTP/1.") {
        return reply(&mut socket, false, 400, "bad request\n", TEXT).await;
    }
    let head_only = match method {
        b"GET" => false,
        b"HEAD" => true,
        _ => return reply(&mut socket, false, 405, "method not allowed\n", TEXT).await,
    };
    let path = target.split(|&b| b == b'?').next().unwrap_or(&[]);
    match path {
        b"/metrics" => {
            let mut body = String::new();
            match prometheus_client::encoding::prometheus_text::encode(&mut body, registry) {
                Ok(()) => {
                    let content_type = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
                    reply(&mut socket, head_only, 200, &body, content_type).await
                }
                Err(_) => reply(&mut socket, head_only, 500, "cannot encode\n", TEXT).await,
            }
        }
        b"/healthz" => reply(&mut socket, head_only, 200, "ok\n", TEXT).await,
        b"/readyz" if health.is_ready() => {
            reply(&mut socket, head_only, 200, "ready\n", TEXT).await
        }
        b"/readyz" => reply(&mut socket, head_only, 503, "not ready\n", TEXT).await,
        _ => reply(&mut socket, head_only, 404, "not found\n", TEXT).await,
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

async fn reply(
    socket: &mut TcpStream,
    head_only: bool,
    status: u16,
    body: &str,
    content_type: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let allow = if status == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {allow}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await?;
    if !head_only {
        socket.write_all(body.as_bytes()).await?;
    }
    socket.shutdown().await
}

/// Encodes the server's figures at each scrape, from its counters (see the module's doc).
#[derive(Debug)]
struct Collector(Arc<Health>);

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let health = &self.0;
        gauge(
            &mut encoder,
            "sessiond_ready",
            "1 once the snapshot is loaded and the listeners accept (as /readyz), else 0",
            u64::from(health.is_ready()),
        )?;
        let Some(shared) = health.shared.get() else {
            return Ok(());
        };
        encode_sessions(&mut encoder, shared)?;
        encode_server(&mut encoder, shared)?;
        encode_commands(&mut encoder, shared)
    }
}

fn encode_sessions(encoder: &mut DescriptorEncoder<'_>, shared: &Shared) -> std::fmt::Result {
    let store = &shared.dbs;
    let sum = |counter: fn(&SessionStats) -> &AtomicU64| {
        store.sum(|db| SessionStats::get(counter(db.session_stats())))
    };
    let live = store.sum(|db| db.session_stats().live.load(Ordering::Relaxed).max(0) as u64);
    gauge(
        encoder,
        "sessiond_sessions",
        "Sessions in the keyspace (INFO sessions: sessions)",
        live,
    )?;
    gauge(
        encoder,
        "sessiond_session_users",
        "Users with at least one session (INFO sessions: session_users)",
        store.sum(|db| db.session_users() as u64),
    )?;
    for (name, help, value) in [
        (
            "sessiond_sessions_created",
            "Sessions created",
            sum(|s| &s.created),
        ),
        (
            "sessiond_sessions_expired",
            "Sessions ended by their idle or absolute timeout",
            sum(|s| &s.expired),
        ),
        (
            "sessiond_sessions_destroyed",
            "Sessions destroyed (SESSION.DESTROY/DESTROYALL, DEL, a flush, the per-user cap, eviction)",
            sum(|s| &s.destroyed),
        ),
        (
            "sessiond_sessions_regenerated",
            "Session IDs regenerated",
            sum(|s| &s.regenerated),
        ),
        (
            "sessiond_sessions_evicted",
            "Sessions evicted at maxmemory (also counted as destroyed)",
            sum(|s| &s.evicted),
        ),
        (
            "sessiond_session_version_conflicts",
            "SESSION.SET calls refused for a version mismatch",
            sum(|s| &s.conflicts),
        ),
    ] {
        counter(encoder, name, help, value)?;
    }
    // The databases' histograms, summed bucket by bucket.
    let mut lifetimes = Counts::zero();
    for (_, db) in store.indexed() {
        lifetimes.add(&db.session_stats().lifetimes.read());
    }
    histogram(
        encoder,
        "sessiond_session_lifetime_seconds",
        "How long sessions lived, from creation to removal (expiry, eviction, destroy, DEL)",
        &LIFETIME_BOUNDS_MS,
        &lifetimes,
    )
}

fn encode_server(encoder: &mut DescriptorEncoder<'_>, shared: &Shared) -> std::fmt::Result {
    let store = &shared.dbs;
    let stats = &shared.stats;
    let traffic = stats.traffic();
    gauge(
        encoder,
        "sessiond_connected_clients",
        "Client connections open",
        shared.clients.len() as u64,
    )?;
    gauge(
        encoder,
        "sessiond_keys",
        "Keys in every database, expired ones not yet reclaimed included",
        store.len() as u64,
    )?;
    gauge(
        encoder,
        "sessiond_used_memory_bytes",
        "Memory the keyspace is accounted for (INFO memory: used_memory_dataset; maxmemory holds it)",
        store.used_memory(),
    )?;
    gauge(
        encoder,
        "sessiond_resident_memory_bytes",
        "The process's resident set size (INFO memory: used_memory_rss)",
        crate::process::memory().rss,
    )?;
    gauge(
        encoder,
        "sessiond_maxmemory_bytes",
        "The maxmemory setting, as CONFIG SET left it; 0: no limit",
        shared.live.maxmemory(),
    )?;
    for (name, help, value) in [
        (
            "sessiond_connections_received",
            "Connections accepted",
            Stats::get(&stats.connections_received),
        ),
        (
            "sessiond_rejected_connections",
            "Connections refused at maxclients",
            Stats::get(&stats.rejected_connections),
        ),
        (
            "sessiond_commands_processed",
            "Commands executed (INFO stats: total_commands_processed)",
            traffic.commands,
        ),
        (
            "sessiond_net_input_bytes",
            "Bytes read from clients",
            traffic.input_bytes,
        ),
        (
            "sessiond_net_output_bytes",
            "Bytes written to clients",
            traffic.output_bytes,
        ),
        (
            "sessiond_keyspace_hits",
            "Reads that found their key",
            traffic.hits,
        ),
        (
            "sessiond_keyspace_misses",
            "Reads that did not find their key",
            traffic.misses,
        ),
        (
            "sessiond_expired_keys",
            "Keys removed because their deadline passed",
            store.sum(Store::expired_keys),
        ),
        (
            "sessiond_evicted_keys",
            "Keys evicted at maxmemory",
            store.sum(Store::evicted_keys),
        ),
    ] {
        counter(encoder, name, help, value)?;
    }
    histogram(
        encoder,
        "sessiond_expiry_lag_seconds",
        "Per active-expiry cycle with keys due: how long after the earliest of their deadlines it finished with them",
        &EXPIRY_LAG_BOUNDS_MS,
        &store.expiry_lag().read(),
    )?;
    let persistence = &shared.persistence;
    if persistence.config().is_some() {
        let status = persistence.status();
        gauge(
            encoder,
            "sessiond_snapshot_last_save_timestamp_seconds",
            "Unix time of the last successful snapshot (the start time before any)",
            status.last_save_unix_s,
        )?;
        gauge(
            encoder,
            "sessiond_snapshot_last_save_ok",
            "1 if the last snapshot succeeded, 0 if it failed",
            u64::from(status.last_ok),
        )?;
        gauge_f64(
            encoder,
            "sessiond_snapshot_last_duration_seconds",
            "How long the last successful snapshot took",
            status.last_duration.as_secs_f64(),
        )?;
        gauge(
            encoder,
            "sessiond_snapshot_in_progress",
            "1 while a snapshot is being written",
            u64::from(persistence.in_progress()),
        )?;
        gauge(
            encoder,
            "sessiond_snapshot_changes_since_last_save",
            "Changes to the keyspace since the last successful snapshot began",
            persistence.changes_since_save(),
        )?;
        counter(
            encoder,
            "sessiond_snapshots_saved",
            "Successful snapshots since start",
            status.saves,
        )?;
    }
    Ok(())
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    // Gauges are i64 in the encoder; a count beyond it is not a real figure.
    let metric = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge_f64(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: f64,
) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

/// The upper bounds of the per-command latency histogram, in microseconds: INFO latencystats'
/// finer buckets summed into these.
const COMMAND_BOUNDS_US: [u64; 16] = [
    1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 250_000,
    1_000_000,
];

/// A per-command counter: its name, its help, and where [`CommandFigures`] has it.
type CommandCounter = (&'static str, &'static str, fn(&CommandFigures) -> u64);

/// Per command that ran (its INFO commandstats and latencystats): calls, rejected and failed
/// calls, and the histogram of its run times, labelled with the command's name (as INFO names
/// it, `config|get` for a subcommand); nothing about its arguments.
fn encode_commands(encoder: &mut DescriptorEncoder<'_>, shared: &Shared) -> std::fmt::Result {
    let figures: Vec<_> = shared
        .stats
        .commands
        .figures()
        .into_iter()
        .filter(|f| f.calls + f.rejected + f.failed > 0)
        .collect();
    let counters: [CommandCounter; 3] = [
        (
            "sessiond_command_calls",
            "Calls of a command that ran (INFO commandstats: calls)",
            |f| f.calls,
        ),
        (
            "sessiond_command_rejected_calls",
            "Calls of a command refused before it ran: arity, NOPERM, OOM... (rejected_calls)",
            |f| f.rejected,
        ),
        (
            "sessiond_command_failed_calls",
            "Calls of a command that ran and answered an error (failed_calls)",
            |f| f.failed,
        ),
    ];
    for (name, help, value) in counters {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for figure in &figures {
            let labels = [("command", figure.name)];
            metric
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&value(figure), None)?;
        }
    }
    let mut metric = encoder.encode_descriptor(
        "sessiond_command_duration_seconds",
        "How long a command ran (INFO latencystats)",
        None,
        MetricType::Histogram,
    )?;
    for figure in figures.iter().filter(|f| !f.histogram.is_empty()) {
        let mut counts = [0u64; COMMAND_BOUNDS_US.len()];
        let mut overflow = 0;
        for (bucket, &count) in figure.histogram.iter().enumerate() {
            let ceiling_us = bucket_ceiling(bucket) / 1000;
            match COMMAND_BOUNDS_US
                .iter()
                .position(|&bound| ceiling_us < bound)
            {
                Some(at) => counts[at] += count,
                None => overflow += count,
            }
        }
        // Per bucket: the encoder makes them cumulative.
        let total = counts.iter().sum::<u64>() + overflow;
        let buckets: Vec<(f64, u64)> = COMMAND_BOUNDS_US
            .iter()
            .map(|&bound| bound as f64 / 1_000_000.0)
            .zip(counts)
            .chain([(f64::INFINITY, overflow)])
            .collect();
        let labels = [("command", figure.name)];
        metric
            .encode_family(&labels)?
            .encode_histogram::<NoLabelSet>(
                figure.usec as f64 / 1_000_000.0,
                total,
                &buckets,
                None,
            )?;
    }
    Ok(())
}

/// A histogram of durations, in seconds as Prometheus has them.
fn histogram<const N: usize>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    bounds_ms: &[u64; N],
    counts: &Counts<N>,
) -> std::fmt::Result {
    let buckets: Vec<(f64, u64)> = bounds_ms
        .iter()
        .map(|&bound| bound as f64 / 1000.0)
        .zip(counts.buckets)
        .chain([(f64::INFINITY, counts.overflow)])
        .collect();
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    metric.encode_histogram::<NoLabelSet>(
        counts.sum_ms as f64 / 1000.0,
        counts.count(),
        &buckets,
        None,
    )
}
