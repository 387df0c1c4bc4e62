//! The load generator against a real sessiond started in-process on `127.0.0.1:0`: every
//! workload, closed and open loop, and the binary's `--json` report. Request counts and error
//! counts are asserted; times never are.

use std::process::Command;

use clap::Parser;
use sessiond_bench::{run, Args, Report};
use sessiond_tests::TestServer;

fn args(server: &TestServer, line: &[&str]) -> Args {
    let port = server.addr.port().to_string();
    let mut full = vec!["sessiond-bench", "--port", &port];
    full.extend_from_slice(line);
    Args::try_parse_from(full).expect("flags")
}

fn bench(server: &TestServer, line: &[&str]) -> Report {
    let config = args(server, line).validate().expect("valid flags");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(&config, false)).expect("run")
}

#[test]
fn every_workload_sends_exactly_the_requests_asked_without_errors() {
    let server = TestServer::start();
    let common = [
        "-n", "1000", "-c", "3", "-P", "7", "-r", "200", "--seed", "5",
    ];
    for workload in [
        "set",
        "get",
        "mixed",
        "session-login",
        "session-browse",
        "session-logout-everywhere",
        "multi",
        "publish",
    ] {
        let mut line = vec![workload];
        line.extend_from_slice(&common);
        let report = bench(&server, &line);
        assert_eq!(report.requests, 1000, "{workload}: {report}");
        assert_eq!(report.errors, 0, "{workload}: {report}");
        assert_eq!(report.hits + report.misses, 1000, "{workload}");
        let per_command: u64 = report.commands.iter().map(|c| c.requests).sum();
        assert_eq!(per_command, 1000, "{workload}");
    }
    // get and mixed ran on a prefilled keyspace: every GET found its key.
    let stats = &server.shared.dbs.first();
    assert!(stats.len() >= 200);
}

#[test]
fn get_finds_every_prefilled_key_and_browse_uses_its_sessions() {
    let server = TestServer::start();
    let report = bench(&server, &["get", "-n", "500", "-c", "2", "-r", "50"]);
    assert_eq!((report.hits, report.misses), (500, 0), "{report}");
    assert_eq!(server.stored_keys(), 50);

    let report = bench(
        &server,
        &[
            "session-browse",
            "-n",
            "2000",
            "-c",
            "2",
            "-P",
            "4",
            "-r",
            "40",
            "--browse-mix",
            "get=1,set=1",
        ],
    );
    // Only GET and SET of sessions that exist: all hits, no creation beyond the 40 prepared.
    assert_eq!((report.hits, report.errors), (2000, 0), "{report}");
    let names: Vec<&str> = report.commands.iter().map(|c| c.command).collect();
    assert_eq!(names, ["SESSION.GET", "SESSION.SET"]);
    assert_eq!(server.stored_keys(), 50 + 40);

    let report = bench(
        &server,
        &[
            "session-logout-everywhere",
            "-n",
            "800",
            "-c",
            "2",
            "--devices",
            "3",
        ],
    );
    // Each user's DESTROYALL found exactly the sessions it had logged in (else: an error).
    assert_eq!(report.errors, 0, "{report}");
    // Every finished cycle destroyed its sessions; the run may end in the middle of one cycle
    // per connection, whose logins (fewer than --devices) stay.
    let left = server.stored_keys() - (50 + 40);
    assert!(left < 2 * 3, "{left} sessions left");
}

#[test]
fn the_open_loop_sends_the_requests_asked_on_schedule() {
    let server = TestServer::start();
    let report = bench(
        &server,
        &[
            "set", "--rate", "20000", "-n", "600", "-c", "4", "-P", "8", "--warmup", "20ms",
        ],
    );
    assert_eq!((report.requests, report.errors), (600, 0), "{report}");
    assert_eq!(report.run.rate, Some(20000.0));
}

#[test]
fn a_transaction_is_one_request_in_the_open_loop_too() {
    let server = TestServer::start();
    let report = bench(
        &server,
        &[
            "multi", "--rate", "20000", "-n", "600", "-c", "4", "-P", "8", "-r", "50",
        ],
    );
    assert_eq!((report.requests, report.errors), (600, 0), "{report}");
    assert_eq!(report.hits, 600, "{report}");
    // Every key the transactions wrote has PEXPIREAT's deadline.
    assert_eq!(
        server.shared.dbs.first().volatile_len(),
        server.stored_keys() as u64
    );
}

/// evalsha loads phpredis's script first. Until the server has scripting, the run stops there
/// with the server's error; once it has, every request runs the script (all misses: no key
/// holds the token).
#[test]
fn evalsha_loads_the_script_then_runs_it_or_stops_with_the_servers_error() {
    let server = TestServer::start();
    let config = args(&server, &["evalsha", "-n", "300", "-c", "3", "-P", "4"])
        .validate()
        .expect("valid flags");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(run(&config, false)) {
        Ok(report) => {
            assert_eq!((report.requests, report.errors), (300, 0), "{report}");
            assert_eq!(report.misses, 300, "{report}");
        }
        Err(error) => assert!(
            error.to_string().contains("unknown command 'SCRIPT'"),
            "{error}"
        ),
    }
}

#[test]
fn publish_reaches_every_subscriber_and_reports_the_fan_out() {
    let server = TestServer::start();
    let report = bench(
        &server,
        &[
            "publish",
            "--subscribers",
            "3",
            "-n",
            "400",
            "-c",
            "2",
            "-P",
            "5",
        ],
    );
    assert_eq!(
        (report.requests, report.hits, report.errors),
        (400, 400, 0),
        "{report}"
    );
    let delivery = report.delivery.clone().expect("publish reports delivery");
    assert_eq!(delivery.subscribers, 3);
    // No warmup: every message arrived while measuring.
    assert_eq!(delivery.messages, 3 * 400, "{report}");
    assert_eq!((delivery.missing, delivery.lost_subscribers), (0, 0));
    assert!(report.to_string().contains("delivered"), "{report}");

    // The open loop, and nobody listening: every PUBLISH reaches no one (a miss).
    let report = bench(
        &server,
        &[
            "publish",
            "--subscribers",
            "0",
            "--rate",
            "20000",
            "-n",
            "300",
            "-c",
            "3",
        ],
    );
    assert_eq!(
        (report.requests, report.misses, report.errors),
        (300, 300, 0)
    );
    assert_eq!(report.delivery.map(|d| d.messages), Some(0));
}

#[test]
fn a_refused_password_stops_the_run_with_the_servers_message() {
    let server = TestServer::start();
    let config = args(&server, &["-n", "10", "-c", "1", "--password", "secret"])
        .validate()
        .expect("valid flags");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let error = runtime.block_on(run(&config, false)).unwrap_err();
    assert!(error.to_string().contains("AUTH refused"), "{error}");
}

#[test]
fn the_binary_prints_a_json_report() {
    let server = TestServer::start();
    let output = Command::new(env!("CARGO_BIN_EXE_sessiond-bench"))
        .args(["mixed", "--port", &server.addr.port().to_string()])
        .args(["-n", "300", "-c", "2", "-P", "3", "-r", "30", "--json"])
        .output()
        .expect("run sessiond-bench");
    assert!(output.status.success(), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["workload"], "mixed");
    assert_eq!(report["requests"], 300);
    assert_eq!(report["errors"], 0);
    for key in ["p50", "p90", "p99", "p99.9", "max"] {
        assert!(report["latency_ms"][key].is_number(), "{key}: {report}");
    }
    assert!(output.stderr.is_empty(), "no progress line into a pipe");

    let refused = Command::new(env!("CARGO_BIN_EXE_sessiond-bench"))
        .args(["--clients", "0"])
        .output()
        .expect("run sessiond-bench");
    assert_eq!(refused.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--clients"));
}
