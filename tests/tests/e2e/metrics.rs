//! The Prometheus endpoint (`--metrics-port`): `/metrics` parsed and checked against INFO,
//! `/healthz`, `/readyz` during a snapshot load, and the HTTP limits.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use redis::Connection;
use sessiond::metrics::{MetricsEndpoint, MAX_CONNECTIONS, MAX_REQUEST_HEAD};
use sessiond::persist::{LoadGate, PersistConfig};
use sessiond::store::evict::Policy;
use sessiond::{Config, Server};
use sessiond_tests::{info_number, TestServer, IO_TIMEOUT};

use super::daemon::ScratchDir;

/// One HTTP exchange: `request` sent as is; the status and the body.
fn http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set a read timeout");
    stream.write_all(request).expect("send the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    let response = String::from_utf8(response).expect("utf-8 response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {response:?}"));
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head:?}"));
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    if !request.starts_with(b"HEAD ") {
        assert_eq!(body.len(), length, "{head}");
    }
    (status, body.to_owned())
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
}

/// A parsed exposition: each sample's name with its labels (`name{le="60"}`) → value, and each
/// family's `# TYPE`. Every sample must belong to a family with HELP and TYPE.
struct Exposition {
    samples: HashMap<String, f64>,
    types: HashMap<String, String>,
}

fn parse(body: &str) -> Exposition {
    let mut samples = HashMap::new();
    let mut types = HashMap::new();
    let mut helped = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(!help.is_empty(), "{line}");
            helped.push(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(helped.iter().any(|h| h == name), "TYPE before HELP: {line}");
            types.insert(name.to_owned(), kind.to_owned());
        } else if !line.is_empty() {
            let (series, value) = line.rsplit_once(' ').expect("sample value");
            let name = series.split('{').next().unwrap_or_default();
            assert!(name.starts_with("sessiond_"), "{line}");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|family| types.get(*family).is_some_and(|t| t == "histogram"))
                .unwrap_or(name);
            assert!(types.contains_key(family), "no TYPE for {line}");
            let value = match value {
                "+Inf" => f64::INFINITY,
                value => value.parse().unwrap_or_else(|e| panic!("{line}: {e}")),
            };
            samples.insert(series.to_owned(), value);
        }
    }
    Exposition { samples, types }
}

impl Exposition {
    fn value(&self, series: &str) -> u64 {
        let value = self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no sample {series}"));
        *value as u64
    }
}

fn metrics_config() -> Config {
    Config {
        metrics_port: Some(0),
        ..Config::default()
    }
}

fn metrics_addr(server: &TestServer) -> SocketAddr {
    *server
        .shared
        .metrics_local_addr
        .get()
        .expect("the metrics endpoint is bound")
}

fn create(con: &mut Connection, options: &[&str]) -> String {
    redis::cmd("SESSION.CREATE")
        .arg(options)
        .query(con)
        .expect("SESSION.CREATE")
}

#[test]
fn the_counters_of_metrics_match_info() {
    let server = TestServer::with_config_and_manual_clock(metrics_config());
    let addr = metrics_addr(&server);
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let kept = create(&mut con, &["IDLE", "600000", "USER", "alice"]);
        let doomed = create(&mut con, &["USER", "bob"]);
        let _short = create(&mut con, &["IDLE", "1000"]);
        let destroyed: i64 = redis::cmd("SESSION.DESTROY")
            .arg(&doomed)
            .query(&mut con)
            .unwrap();
        assert_eq!(destroyed, 1);
        let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
        assert!(!kept.is_empty());
    }
    // The short sessions expire on the manual clock.
    server.advance(2000);

    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("alice") && !body.contains("bob"),
        "no user or ID in a label: {body}"
    );
    let metrics = parse(&body);
    let sessions = server.info("sessions");
    let stats = server.info("stats");
    for (series, field) in [
        ("sessiond_sessions", "sessions"),
        ("sessiond_session_users", "session_users"),
        ("sessiond_sessions_created_total", "sessions_created"),
        ("sessiond_sessions_expired_total", "sessions_expired"),
        ("sessiond_sessions_destroyed_total", "sessions_destroyed"),
        (
            "sessiond_sessions_regenerated_total",
            "sessions_regenerated",
        ),
        (
            "sessiond_session_version_conflicts_total",
            "session_version_conflicts",
        ),
    ] {
        assert_eq!(
            metrics.value(series),
            info_number(&sessions, field),
            "{series}"
        );
    }
    assert_eq!(metrics.value("sessiond_sessions"), 2);
    assert_eq!(metrics.value("sessiond_sessions_created_total"), 6);
    assert_eq!(metrics.value("sessiond_sessions_expired_total"), 2);
    assert_eq!(metrics.value("sessiond_sessions_destroyed_total"), 2);
    assert_eq!(
        metrics.value("sessiond_expired_keys_total"),
        info_number(&stats, "expired_keys")
    );
    // INFO's own command comes after the scrape.
    assert!(
        metrics.value("sessiond_commands_processed_total")
            <= info_number(&stats, "total_commands_processed")
    );
    assert!(metrics.value("sessiond_commands_processed_total") >= 10);
    assert!(metrics.types.contains_key("sessiond_connected_clients"));
    assert_eq!(metrics.value("sessiond_ready"), 1);
    // Per command, as INFO commandstats counts them: the six SESSION.CREATEs, all timed.
    let commandstats = server.info("commandstats");
    let calls = |command: &str| -> u64 {
        let line = commandstats
            .lines()
            .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
            .unwrap_or_else(|| panic!("no cmdstat_{command}: {commandstats}"));
        let field = line
            .split(&[':', ','][..])
            .find_map(|f| f.strip_prefix("calls="));
        field.and_then(|n| n.parse().ok()).expect("calls=")
    };
    assert_eq!(calls("session.create"), 6);
    let created = "sessiond_command_calls_total{command=\"session.create\"}";
    assert_eq!(metrics.value(created), 6, "{body}");
    let timed = "sessiond_command_duration_seconds_count{command=\"session.create\"}";
    assert_eq!(metrics.value(timed), 6);
    let all = "sessiond_command_duration_seconds_bucket{command=\"session.create\",le=\"+Inf\"}";
    assert_eq!(metrics.value(all), 6);
    assert_eq!(
        metrics.value("sessiond_command_calls_total{command=\"session.destroy\"}"),
        calls("session.destroy")
    );
    assert!(metrics.value("sessiond_resident_memory_bytes") > 0);
    assert_eq!(
        metrics.types.get("sessiond_session_lifetime_seconds"),
        Some(&"histogram".to_owned())
    );
    // Four sessions ended: two destroyed at once, two expired two seconds in.
    assert_eq!(metrics.value("sessiond_session_lifetime_seconds_count"), 4);
    assert_eq!(
        metrics.value("sessiond_session_lifetime_seconds_bucket{le=\"60\"}"),
        4
    );
    assert_eq!(
        metrics.value("sessiond_session_lifetime_seconds_bucket{le=\"+Inf\"}"),
        4
    );
    assert_eq!(
        metrics.samples["sessiond_session_lifetime_seconds_sum"], 4.0,
        "{body}"
    );

    // The short sessions' deadline passed 1 s before the clock jumped to the cycle that took
    // them; the cycles before found nothing due.
    assert_eq!(metrics.value("sessiond_expiry_lag_seconds_count"), 1);
    assert_eq!(metrics.samples["sessiond_expiry_lag_seconds_sum"], 1.0);
    assert_eq!(
        metrics.value("sessiond_expiry_lag_seconds_bucket{le=\"1\"}"),
        1
    );

    // The counters move with the commands.
    let mut con = server.client();
    create(&mut con, &[]);
    let metrics = parse(&get(addr, "/metrics").1);
    assert_eq!(metrics.value("sessiond_sessions_created_total"), 7);
    assert_eq!(metrics.value("sessiond_sessions"), 3);

    // Settings as CONFIG SET left them, as INFO shows them.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("64mb")
        .query(&mut con)
        .unwrap();
    let info: String = redis::cmd("INFO").arg("memory").query(&mut con).unwrap();
    assert_eq!(info_number(&info, "maxmemory"), 64 << 20);
    let metrics = parse(&get(addr, "/metrics").1);
    assert_eq!(metrics.value("sessiond_maxmemory_bytes"), 64 << 20);
}

#[test]
fn sessions_evicted_at_maxmemory_are_counted_and_their_lifetimes_observed() {
    let server = TestServer::with_config(Config {
        maxmemory: 64 * 1024,
        maxmemory_policy: Policy::AllKeysLru,
        ..metrics_config()
    });
    let addr = metrics_addr(&server);
    let mut con = server.client3();
    for _ in 0..2000 {
        create(&mut con, &["DATA", "cart", "a-few-bytes-of-cart"]);
    }
    let metrics = parse(&get(addr, "/metrics").1);
    let stats = server.info("stats");
    let evicted = metrics.value("sessiond_sessions_evicted_total");
    assert!(evicted > 0, "maxmemory evicted sessions");
    // Every key is a session: the key and session counts agree, and destroyed includes them.
    assert_eq!(evicted, info_number(&stats, "evicted_keys"));
    assert_eq!(metrics.value("sessiond_evicted_keys_total"), evicted);
    assert_eq!(metrics.value("sessiond_sessions_destroyed_total"), evicted);
    assert_eq!(
        metrics.value("sessiond_session_lifetime_seconds_count"),
        evicted
    );
    assert_eq!(
        metrics.value("sessiond_sessions") + evicted,
        metrics.value("sessiond_sessions_created_total")
    );
    assert_eq!(metrics.value("sessiond_maxmemory_bytes"), 64 * 1024);
}

#[test]
fn healthz_readyz_and_the_limits_of_the_endpoint() {
    let server = TestServer::with_config(metrics_config());
    let addr = metrics_addr(&server);
    assert_eq!(get(addr, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(get(addr, "/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(get(addr, "/metrics?x=1").0, 200);
    let (status, body) = http(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(get(addr, "/").0, 404);
    assert_eq!(get(addr, "/metrics/../healthz").0, 404);
    assert_eq!(
        http(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").0,
        405
    );
    assert_eq!(http(addr, b"GET /metrics\r\n\r\n").0, 400);
    assert_eq!(http(addr, b"GET /metrics SPDY/3\r\n\r\n").0, 400);
    assert_eq!(http(addr, b"\x16\x03\x01\x00\r\n\r\n").0, 400);
    // A head past the bound is refused without reading on.
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    huge.resize(MAX_REQUEST_HEAD + 1000, b'a');
    huge.extend_from_slice(b"\r\n\r\n");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let _ = stream.write_all(&huge);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    assert!(
        response.starts_with(b"HTTP/1.1 431 "),
        "{:?}",
        String::from_utf8_lossy(&response)
    );
    // Clients that connect and send nothing, below the limit, hold up no one else.
    let _idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    assert_eq!(get(addr, "/healthz").0, 200);

    let mut con = server.client();
    let port: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("metrics-port")
        .query(&mut con)
        .unwrap();
    assert_eq!(port, ["metrics-port".to_owned(), addr.port().to_string()]);
}

#[test]
fn connections_past_the_limit_are_closed_unanswered_until_slots_free() {
    let server = TestServer::with_config(metrics_config());
    let addr = metrics_addr(&server);
    // Silent clients take every slot (accepted in order, each holds one until it closes or
    // its time is up).
    let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let mut refused = TcpStream::connect(addr).unwrap();
    refused.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let _ = refused.write_all(b"GET /healthz HTTP/1.1\r\n\r\n");
    let mut response = Vec::new();
    let _ = refused.read_to_end(&mut response);
    assert!(
        response.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&response)
    );
    // Once they close, their slots come back (as each task sees its client's end).
    drop(idle);
    let give_up = std::time::Instant::now() + IO_TIMEOUT;
    loop {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\n\r\n");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        if response.starts_with(b"HTTP/1.1 200 ") {
            break;
        }
        assert!(
            response.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&response)
        );
        assert!(std::time::Instant::now() < give_up, "no slot came back");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn readyz_is_503_while_a_snapshot_loads() {
    let dir = ScratchDir::new();
    let persisting = |load_gate: Option<LoadGate>| Config {
        persistence: Some(PersistConfig {
            dir: dir.0.clone(),
            interval: None,
            load_gate,
            ..PersistConfig::default()
        }),
        ..metrics_config()
    };
    // A snapshot of 50k sessions.
    {
        let server = TestServer::with_config(persisting(None));
        let mut con = server.client();
        let mut pipe = redis::pipe();
        for i in 0..50_000 {
            pipe.cmd("SESSION.CREATE")
                .arg("DATA")
                .arg("n")
                .arg(i)
                .ignore();
        }
        let _: () = pipe.query(&mut con).unwrap();
        let _: () = redis::cmd("SAVE").query(&mut con).unwrap();
    }

    let (gate, open) = LoadGate::new();
    let config = persisting(Some(gate));
    let endpoint = MetricsEndpoint::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let metrics = endpoint.local_addr();
    let (started, server_addr) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = sessiond::build_runtime(&config).unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let server = Server::start(config, listener, Some(endpoint))
                .await
                .unwrap();
            started.send(server.local_addr()).unwrap();
            server
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
    });

    // The load waits at the gate: alive, not ready, and /metrics says so.
    assert_eq!(get(metrics, "/healthz").0, 200);
    assert_eq!(get(metrics, "/readyz"), (503, "not ready\n".to_owned()));
    let exposition = parse(&get(metrics, "/metrics").1);
    assert_eq!(exposition.value("sessiond_ready"), 0);
    assert!(!exposition.samples.contains_key("sessiond_sessions"));

    open.send(()).unwrap();
    let addr = server_addr
        .recv_timeout(IO_TIMEOUT)
        .expect("the server starts once the gate opens");
    // A reply means the accept loop runs, which it does only once ready.
    let mut con = redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(10))
        .unwrap();
    let sessions: String = redis::cmd("INFO").arg("sessions").query(&mut con).unwrap();
    assert_eq!(info_number(&sessions, "sessions"), 50_000);
    assert_eq!(get(metrics, "/readyz"), (200, "ready\n".to_owned()));
    let exposition = parse(&get(metrics, "/metrics").1);
    assert_eq!(exposition.value("sessiond_sessions"), 50_000);
    let _ = stop.send(());
    thread.join().unwrap();
}
