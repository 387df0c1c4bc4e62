//! The service files in deploy/: the real binary started from the example configuration (with
//! the data directory and the ports overridden, as a test must), its readiness told to systemd
//! through `NOTIFY_SOCKET` and to probes through `/readyz`, and its stop on SIGTERM.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixDatagram;

use sessiond_tests::redis_calls::config_get;
use sessiond_tests::IO_TIMEOUT;

use super::daemon::{Daemon, ScratchDir};

fn get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set a read timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    response
}

#[test]
fn the_example_config_starts_the_server_which_tells_systemd_it_is_ready() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/sessiond.toml");
    let dir = ScratchDir::new();
    let data = dir.arg("data");
    let notify_path = dir.arg("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
    notify.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut daemon = Daemon::start_in(
        dir,
        &[
            "--config",
            example,
            "--port",
            "0",
            "--metrics-port",
            "0",
            "--data-dir",
            &data,
        ],
        &[("NOTIFY_SOCKET", &notify_path)],
    );
    let mut message = [0u8; 64];
    let len = notify.recv(&mut message).expect("READY=1 from the server");
    assert_eq!(&message[..len], b"READY=1");

    let metrics = daemon.metrics_addr.expect("the `metrics on` line");
    assert!(metrics.ip().is_loopback(), "{metrics}");
    assert!(get(metrics, "/readyz").starts_with("HTTP/1.1 200 "));
    let mut con = daemon.client(false);
    let id: String = redis::cmd("SESSION.CREATE").query(&mut con).unwrap();
    assert!(!id.is_empty());
    let exposition = get(metrics, "/metrics");
    assert!(
        exposition.contains("\nsessiond_sessions_created_total 1\n"),
        "{exposition}"
    );
    assert!(!exposition.contains(&id), "no session ID in the metrics");

    let (status, log) = daemon.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("shutdown complete"), "{log}");
    assert!(
        std::path::Path::new(&data).join("dump.sdb").exists(),
        "the final snapshot in the data directory:\n{log}"
    );
}

#[test]
fn the_metrics_endpoint_is_off_by_default_and_set_from_the_environment() {
    let mut daemon = Daemon::start(&["--port", "0", "--no-persistence"], &[]);
    assert_eq!(daemon.metrics_addr, None);
    let mut con = daemon.client(true);
    assert_eq!(config_get(&mut con, "metrics-port"), "0");
    assert_eq!(config_get(&mut con, "metrics-bind"), "127.0.0.1");
    daemon.stop();

    let mut daemon = Daemon::start(
        &["--port", "0", "--no-persistence"],
        &[
            ("SESSIOND_METRICS_PORT", "0"),
            ("SESSIOND_METRICS_BIND", "127.0.0.1"),
        ],
    );
    let metrics = daemon.metrics_addr.expect("the `metrics on` line");
    let mut con = daemon.client(false);
    assert_eq!(
        config_get(&mut con, "metrics-port"),
        metrics.port().to_string()
    );
    assert!(get(metrics, "/healthz").starts_with("HTTP/1.1 200 "));
    daemon.stop();
}

#[test]
fn the_unit_lets_config_rewrite_replace_the_file_the_server_starts_from() {
    // CONFIG REWRITE writes a temporary file beside the config and renames it over it, so the
    // config's directory must be writable under ProtectSystem=strict: Sentinel's failover runs
    // it to record each node's role.
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/sessiond.service"
    ))
    .expect("the unit");
    let exec = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let config = exec
        .split_whitespace()
        .skip_while(|word| *word != "--config")
        .nth(1)
        .expect("--config in ExecStart");
    let dir = std::path::Path::new(config).parent().expect("a directory");
    let writable: Vec<&str> = unit
        .lines()
        .filter_map(|line| line.strip_prefix("ReadWritePaths="))
        .flat_map(str::split_whitespace)
        .map(|path| path.trim_start_matches('-'))
        .collect();
    assert!(
        writable.contains(&dir.to_str().expect("utf-8")),
        "{} is not writable: {writable:?}",
        dir.display()
    );
    assert!(unit.contains("ProtectSystem=strict"));
}
