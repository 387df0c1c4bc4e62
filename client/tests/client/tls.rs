//! `rediss://` and `sessionds://` (feature `tls`) against a server's TLS port, with
//! certificates made at test time: commands and sessions, the password, client certificates,
//! an untrusted server, and TLS settings the builder refuses.

use std::time::Duration;

use sessiond::auth::Secret;
use sessiond::tls::ClientAuth;
use sessiond::Config;
use sessiond_client::{Client, ErrorKind, NewSession};
use sessiond_tests::tls::TestPki;
use sessiond_tests::TestServer;

fn tls_server(pki: &TestPki, auth_clients: ClientAuth, config: Config) -> TestServer {
    TestServer::with_config(Config {
        tls: Some(pki.server_tls(auth_clients)),
        ..config
    })
}

fn builder(url: String) -> sessiond_client::Builder {
    Client::builder()
        .node(url)
        .connect_timeout(Duration::from_secs(10))
        .command_timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn rediss_speaks_to_the_tls_port() {
    let pki = TestPki::generate();
    let server = tls_server(
        &pki,
        ClientAuth::No,
        Config {
            requirepass: Some(Secret::new("pw".into())),
            ..Config::default()
        },
    );
    let port = server.tls_addr().port();
    // By name: the certificate is checked against `localhost`.
    for url in [
        format!("rediss://:pw@127.0.0.1:{port}"),
        format!("sessionds://default:pw@localhost:{port}"),
    ] {
        let client = builder(url)
            .tls_ca_file(pki.path("ca.pem"))
            .connect()
            .await
            .unwrap();
        client.ping().await.unwrap();
        client.set("k", "v").await.unwrap();
        assert_eq!(client.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
        // Larger than a TLS record, both ways.
        let big = vec![b'x'; 1 << 20];
        client.set("big", &big).await.unwrap();
        assert_eq!(client.get("big").await.unwrap().as_deref(), Some(&big[..]));

        let sessions = client.sessions();
        let id = sessions
            .create(NewSession::default().user("ada").field("cart", "[]"))
            .await
            .unwrap();
        let data = sessions
            .get(&id)
            .await
            .unwrap()
            .expect("the session exists");
        assert_eq!(data.get_str("cart"), Some("[]"));
        // Many tasks pipelining over the pool's TLS connections at once.
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..20 {
            let client = client.clone();
            tasks.spawn(async move {
                for i in 0..50 {
                    let key = format!("t{task}:{i}");
                    client.set(&key, &key).await.unwrap();
                    assert_eq!(
                        client.get(&key).await.unwrap().as_deref(),
                        Some(key.as_bytes())
                    );
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        sessions.destroy(&id).await.unwrap();
    }
}

#[tokio::test]
async fn client_certificates_when_the_server_requires_them() {
    let pki = TestPki::generate();
    let server = tls_server(&pki, ClientAuth::Required, Config::default());
    let url = format!("rediss://{}", server.tls_addr());

    let error = builder(url.clone())
        .tls_ca_file(pki.path("ca.pem"))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection, "{error}");

    let error = builder(url.clone())
        .tls_ca_file(pki.path("ca.pem"))
        .tls_client_cert(pki.path("other-client.pem"), pki.path("other-client.key"))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection, "{error}");

    let client = builder(url)
        .tls_ca_file(pki.path("ca.pem"))
        .tls_client_cert(pki.path("client.pem"), pki.path("client.key"))
        .connect()
        .await
        .unwrap();
    client.ping().await.unwrap();
}

#[tokio::test]
async fn a_server_certificate_nobody_vouches_for_is_refused() {
    let pki = TestPki::generate();
    let server = tls_server(&pki, ClientAuth::No, Config::default());
    // Mozilla's roots do not know the test CA.
    let error = builder(format!("rediss://{}", server.tls_addr()))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
    assert!(error.to_string().contains("certificate"), "{error}");
    // The right CA, but a name the certificate does not carry.
    let other = TestPki::generate();
    let error = builder(format!("rediss://{}", server.tls_addr()))
        .tls_ca_file(other.path("ca.pem"))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
}

#[tokio::test]
async fn tls_settings_the_builder_refuses() {
    let pki = TestPki::generate();
    // A CA file with only plaintext URLs: a forgotten rediss://.
    let error = builder("sessiond://127.0.0.1:1".to_owned())
        .tls_ca_file(pki.path("ca.pem"))
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidConfig);
    assert!(error.to_string().contains("rediss://"), "{error}");
    // Files that cannot be used are named.
    let error = builder("rediss://127.0.0.1:1".to_owned())
        .tls_ca_file(pki.path("missing.pem"))
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidConfig);
    assert!(error.to_string().contains("missing.pem"), "{error}");
    let error = builder("rediss://127.0.0.1:1".to_owned())
        .tls_ca_file(pki.path("ca.pem"))
        .tls_client_cert(pki.path("client.pem"), pki.path("server.key"))
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidConfig, "{error}");
}
