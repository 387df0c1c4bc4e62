//! TLS: commands through a tokio-rustls client on the TLS port while the plaintext port serves
//! too, client-certificate enforcement, plaintext sent to the TLS port, handshakes that stall,
//! the password and the limits over TLS, and the real binary's TLS flags (exit 64 on bad files).
//! Certificates are made at test time ([`sessiond_tests::tls::TestPki`]).

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sessiond::auth::Secret;
use sessiond::tls::ClientAuth;
use sessiond::Config;
use sessiond_protocol::Frame;
use sessiond_tests::tls::{expect_refused, Identity, TestPki};
use sessiond_tests::{error_text, info_number, TestServer, IO_TIMEOUT};

use super::daemon::{run_until_exit, Daemon, ScratchDir};

/// A server with a TLS port on the test PKI, and the plaintext port as usual.
fn tls_server(pki: &TestPki, auth_clients: ClientAuth, config: Config) -> TestServer {
    TestServer::with_config(Config {
        tls: Some(pki.server_tls(auth_clients)),
        ..config
    })
}

fn handshake_failures(server: &TestServer) -> u64 {
    server
        .shared
        .stats
        .tls_handshake_failures
        .load(Ordering::Relaxed)
}

fn bulk(text: &str) -> Frame {
    Frame::Bulk(text.as_bytes().to_vec().into())
}

fn pong() -> Frame {
    Frame::simple("PONG")
}

#[test]
fn commands_over_tls_while_the_plaintext_port_serves() {
    let pki = TestPki::generate();
    let server = tls_server(&pki, ClientAuth::No, Config::default());
    let tls_addr = server.tls_addr();
    assert!(tls_addr.ip().is_loopback());
    assert_ne!(tls_addr.port(), 0);
    assert_ne!(tls_addr.port(), server.addr.port());

    let mut tls = server.tls(pki.client_config(Identity::Anonymous));
    assert_eq!(
        tls.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(tls.call(&[b"PING"]), pong());
    assert_eq!(tls.call(&[b"SET", b"greeting", b"hello"]), Frame::ok());
    assert_eq!(tls.call(&[b"GET", b"greeting"]), bulk("hello"));

    // One store behind both ports.
    let mut plain = server.client();
    let _: () = redis::cmd("SET")
        .arg("from-plaintext")
        .arg("yes")
        .query(&mut plain)
        .unwrap();
    assert_eq!(tls.call(&[b"GET", b"from-plaintext"]), bulk("yes"));
    let greeting: String = redis::cmd("GET").arg("greeting").query(&mut plain).unwrap();
    assert_eq!(greeting, "hello");

    // Sessions.
    let id = match tls.call(&[b"SESSION.CREATE", b"USER", b"ada", b"DATA", b"cart", b"[]"]) {
        Frame::Bulk(id) => id,
        other => panic!("SESSION.CREATE: {other:?}"),
    };
    assert_eq!(
        tls.call(&[b"SESSION.GET", &id]),
        Frame::Array(vec![bulk("cart"), bulk("[]")])
    );
    let id_text = String::from_utf8(id.to_vec()).unwrap();
    let count: i64 = redis::cmd("SESSION.COUNT")
        .arg("ada")
        .query(&mut plain)
        .unwrap();
    assert_eq!(count, 1, "session {id_text} seen from the plaintext port");

    // A pipeline in one write, replies in order.
    let mut pipeline = bytes::BytesMut::new();
    for i in 0..200 {
        let key = format!("k{i}");
        let value = format!("v{i}");
        sessiond_protocol::ClientCodec::encode_command(
            &[b"SET", key.as_bytes(), value.as_bytes()],
            &mut pipeline,
        );
        sessiond_protocol::ClientCodec::encode_command(&[b"GET", key.as_bytes()], &mut pipeline);
    }
    tls.send(&pipeline);
    for i in 0..200 {
        assert_eq!(tls.reply(), Frame::ok());
        assert_eq!(tls.reply(), bulk(&format!("v{i}")));
    }

    // Replies larger than a TLS record, and a batch larger than the early-write threshold.
    let big = vec![b'x'; 1 << 20];
    assert_eq!(tls.call(&[b"SET", b"big", &big]), Frame::ok());
    let mut gets = bytes::BytesMut::new();
    for _ in 0..3 {
        sessiond_protocol::ClientCodec::encode_command(&[b"GET", b"big"], &mut gets);
    }
    tls.send(&gets);
    for _ in 0..3 {
        assert_eq!(tls.reply(), Frame::Bulk(big.clone().into()));
    }

    // TLS 1.2 clients are served too.
    let mut tls12 =
        server.tls(pki.client_config_with(Identity::Anonymous, &[&rustls::version::TLS12]));
    assert_eq!(
        tls12.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(tls12.call(&[b"GET", b"greeting"]), bulk("hello"));

    // The TLS port is reported.
    let info = server.info("server");
    assert_eq!(info_number(&info, "tls_port"), u64::from(tls_addr.port()));
    assert_eq!(
        info_number(&info, "tcp_port"),
        u64::from(server.addr.port())
    );
    let tls_port: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-port")
        .query(&mut plain)
        .unwrap();
    assert_eq!(
        tls_port,
        ["tls-port".to_owned(), tls_addr.port().to_string()]
    );
    assert_eq!(handshake_failures(&server), 0);
}

#[test]
fn client_certificates_are_required_with_a_ca_file() {
    let pki = TestPki::generate();
    let server = tls_server(&pki, ClientAuth::Required, Config::default());
    let addr = server.tls_addr();

    let seen = expect_refused(addr, pki.client_config(Identity::Anonymous));
    assert!(!seen.is_empty());
    expect_refused(addr, pki.client_config(Identity::Untrusted));
    assert_eq!(handshake_failures(&server), 2);

    let mut trusted = server.tls(pki.client_config(Identity::Trusted));
    assert_eq!(trusted.call(&[b"PING"]), pong());
    assert_eq!(trusted.call(&[b"SET", b"k", b"v"]), Frame::ok());
    // The refusals broke nothing, and the plaintext port is not the TLS port's business.
    let mut raw = server.raw();
    raw.command(&[b"GET", b"k"]);
    assert_eq!(raw.reply(), bulk("v"));
    assert_eq!(handshake_failures(&server), 2);
    let info = server.info("stats");
    assert_eq!(info_number(&info, "tls_handshake_failures"), 2);
}

#[test]
fn optional_client_certificates_are_verified_when_sent() {
    let pki = TestPki::generate();
    let server = tls_server(&pki, ClientAuth::Optional, Config::default());
    let addr = server.tls_addr();
    let mut anonymous = server.tls(pki.client_config(Identity::Anonymous));
    assert_eq!(anonymous.call(&[b"PING"]), pong());
    let mut trusted = server.tls(pki.client_config(Identity::Trusted));
    assert_eq!(trusted.call(&[b"PING"]), pong());
    expect_refused(addr, pki.client_config(Identity::Untrusted));
    assert_eq!(handshake_failures(&server), 1);
}

#[test]
fn plaintext_to_the_tls_port_is_refused_cleanly() {
    let pki = TestPki::generate();
    let server = tls_server(&pki, ClientAuth::No, Config::default());
    for (n, request) in [&b"PING\r\n"[..], b"*1\r\n$4\r\nPING\r\n"]
        .into_iter()
        .enumerate()
    {
        let mut raw = sessiond_tests::RawClient::connect(server.tls_addr());
        raw.send(request);
        let text = error_text(&raw.reply());
        assert!(
            text.contains("TLS") && text.contains("redis-cli --tls"),
            "{text}"
        );
        assert!(raw.closed(), "the connection is closed after the error");
        assert_eq!(handshake_failures(&server), n as u64 + 1);
    }
    // Both ports still serve.
    let mut tls = server.tls(pki.client_config(Identity::Anonymous));
    assert_eq!(tls.call(&[b"PING"]), pong());
    let mut raw = server.raw();
    raw.command(&[b"PING"]);
    assert_eq!(raw.reply(), pong());
}

#[test]
fn a_client_that_stalls_its_handshake_holds_up_nobody_and_is_closed() {
    let pki = TestPki::generate();
    // --timeout shortens the handshake limit (10 s otherwise).
    let server = tls_server(
        &pki,
        ClientAuth::No,
        Config {
            idle_timeout: Some(Duration::from_secs(2)),
            ..Config::default()
        },
    );
    let mut silent = TcpStream::connect(server.tls_addr()).unwrap();
    silent.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // While it stalls, other clients get in and are served.
    let mut tls = server.tls(pki.client_config(Identity::Anonymous));
    assert_eq!(tls.call(&[b"PING"]), pong());
    let mut raw = server.raw();
    raw.command(&[b"PING"]);
    assert_eq!(raw.reply(), pong());
    // Then the server gives up on it.
    let mut rest = Vec::new();
    let read = silent.read_to_end(&mut rest);
    assert!(
        matches!(&read, Ok(0))
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the silent client is closed, not left waiting: {read:?}"
    );
    assert_eq!(handshake_failures(&server), 1);
}

const PASSWORD: &str = "tls is not a password";

fn protected(pki: &TestPki) -> TestServer {
    tls_server(
        pki,
        ClientAuth::No,
        Config {
            requirepass: Some(Secret::new(PASSWORD.into())),
            ..Config::default()
        },
    )
}

#[test]
fn the_password_applies_over_tls() {
    let pki = TestPki::generate();
    let server = protected(&pki);
    let mut tls = server.tls(pki.client_config(Identity::Anonymous));
    assert!(error_text(&tls.call(&[b"PING"])).starts_with("NOAUTH"));
    assert!(error_text(&tls.call(&[b"GET", b"k"])).starts_with("NOAUTH"));
    assert!(error_text(&tls.call(&[b"AUTH", b"wrong"])).starts_with("WRONGPASS"));
    assert_eq!(tls.call(&[b"AUTH", PASSWORD.as_bytes()]), Frame::ok());
    assert_eq!(tls.call(&[b"PING"]), pong());
    assert_eq!(tls.call(&[b"SET", b"k", b"v"]), Frame::ok());
}

#[test]
fn an_unauthenticated_tls_client_that_never_reads_is_disconnected() {
    let pki = TestPki::generate();
    let server = protected(&pki);
    let mut tls = server.tls(pki.client_config(Identity::Anonymous));
    let batch = b"PING\r\n".repeat(10_000);
    let mut refused = None;
    // A million PINGs, never reading a reply: the server must hang up rather than buffer, over
    // TLS as over TCP.
    for _ in 0..100 {
        if let Err(error) = tls.try_send(&batch) {
            refused = Some(error);
            break;
        }
    }
    let error =
        refused.expect("the server accepted a million PINGs from a client that never reads");
    assert_ne!(
        error.kind(),
        std::io::ErrorKind::TimedOut,
        "the server stopped reading without closing"
    );
    assert_eq!(
        server
            .shared
            .stats
            .client_output_buffer_limit_disconnections
            .load(Ordering::Relaxed),
        1
    );
    let mut again = server.tls(pki.client_config(Identity::Anonymous));
    assert_eq!(again.call(&[b"AUTH", PASSWORD.as_bytes()]), Frame::ok());
}

#[test]
fn maxclients_counts_both_ports() {
    let pki = TestPki::generate();
    let server = tls_server(
        &pki,
        ClientAuth::No,
        Config {
            maxclients: 1,
            ..Config::default()
        },
    );
    let mut holder = server.tls(pki.client_config(Identity::Anonymous));
    assert_eq!(holder.call(&[b"PING"]), pong());
    let mut raw = server.raw();
    assert_eq!(
        error_text(&raw.reply()),
        "ERR max number of clients reached"
    );
    // A TLS client over the limit completes its handshake and reads the same error.
    let mut refused = server.tls(pki.client_config(Identity::Anonymous));
    assert_eq!(
        error_text(&refused.reply()),
        "ERR max number of clients reached"
    );
    assert_eq!(refused.read_frame(), None);
    assert_eq!(
        server
            .shared
            .stats
            .rejected_connections
            .load(Ordering::Relaxed),
        2
    );
    assert_eq!(holder.call(&[b"PING"]), pong());
}

/// The exit code for a bad configuration (`EX_USAGE`).
const EXIT_BAD_CONFIG: i32 = 64;

#[test]
fn the_binary_serves_tls_beside_plaintext() {
    let pki = TestPki::generate();
    let (cert, key, ca) = (
        pki.arg("server.pem"),
        pki.arg("server.key"),
        pki.arg("ca.pem"),
    );
    let mut daemon = Daemon::start(
        &[
            "--port",
            "0",
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
        ],
        // The environment spells the settings too.
        &[("SESSIOND_TLS_PORT", "0")],
    );
    let tls_addr = daemon.tls_addr.expect("a `listening for TLS on` line");
    assert_ne!(tls_addr.port(), 0);
    let mut tls =
        sessiond_tests::tls::TlsClient::connect(tls_addr, pki.client_config(Identity::Trusted));
    assert_eq!(tls.call(&[b"SET", b"k", b"secret-value"]), Frame::ok());
    expect_refused(tls_addr, pki.client_config(Identity::Anonymous));
    let mut plain = daemon.client(false);
    let value: String = redis::cmd("GET").arg("k").query(&mut plain).unwrap();
    assert_eq!(value, "secret-value");
    let settings: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-*")
        .query(&mut plain)
        .unwrap();
    for expected in [
        tls_addr.port().to_string(),
        cert.clone(),
        key.clone(),
        ca.clone(),
        "yes".to_owned(),
    ] {
        assert!(settings.contains(&expected), "{expected} in {settings:?}");
    }
    drop(tls);
    let (status, log) = daemon.signal_and_wait("TERM");
    assert_eq!(status.code(), Some(0), "exit status {status}; log:\n{log}");
    assert!(
        log.contains(&format!("listening for TLS on {tls_addr}")),
        "{log}"
    );
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(!log.contains("secret-value"), "{log}");
}

#[test]
fn the_binary_refuses_unusable_tls_files_with_exit_64() {
    let pki = TestPki::generate();
    let dir = ScratchDir::new();
    let garbage = dir.file("garbage.pem", "this is not PEM\n");
    let garbage = garbage.to_str().unwrap();
    let missing = dir.arg("missing.pem");
    let (cert, key) = (pki.arg("server.pem"), pki.arg("server.key"));
    let other_key = pki.arg("client.key");
    let key_body = std::fs::read_to_string(pki.path("client.key")).unwrap();
    let key_body = key_body.lines().nth(1).unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (&["--tls-port", "0"], &["tls-port", "--tls-cert-file"]),
        (
            &[
                "--tls-port",
                "0",
                "--tls-cert-file",
                &missing,
                "--tls-key-file",
                &key,
            ],
            &["tls-cert-file", &missing, "cannot read"],
        ),
        (
            &[
                "--tls-port",
                "0",
                "--tls-cert-file",
                garbage,
                "--tls-key-file",
                &key,
            ],
            &["tls-cert-file", garbage, "no certificate"],
        ),
        (
            &[
                "--tls-port",
                "0",
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                garbage,
            ],
            &["tls-key-file", garbage, "no private key"],
        ),
        (
            &[
                "--tls-port",
                "0",
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &other_key,
            ],
            &["tls-key-file", &other_key, "does not match"],
        ),
        (
            &[
                "--tls-port",
                "0",
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                garbage,
            ],
            &["tls-ca-cert-file", garbage],
        ),
        (
            &["--tls-cert-file", &cert, "--tls-key-file", &key],
            &["tls-cert-file", "--tls-port"],
        ),
    ];
    for (args, named) in cases {
        let mut args = args.to_vec();
        args.extend(["--port", "0"]);
        let (status, log) = run_until_exit(&dir.0, &args, &[]);
        assert_eq!(status.code(), Some(EXIT_BAD_CONFIG), "{args:?}: {log}");
        for name in *named {
            assert!(log.contains(name), "{args:?}: {name:?} not in {log}");
        }
        assert!(!log.contains(key_body), "key material in the log: {log}");
    }
}
