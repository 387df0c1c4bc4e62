//! Every error kind, each provoked for real: a bad URL, nothing listening, a server that never
//! answers, one that answers nonsense, a refused login, error replies and conflicts.

use std::net::SocketAddr;
use std::time::Duration;

use sessiond_client::{Client, ErrorKind, NewSession};
use sessiond_tests::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::{connect, url};

/// A fake server on `127.0.0.1:0`: to the n-th read from a connection it writes `replies[n]`,
/// and after the last reply it reads on without ever answering (holding the socket open).
pub struct FakeServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl FakeServer {
    pub async fn start(replies: &'static [&'static [u8]]) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                connections.spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let mut replies = replies.iter();
                    while let Ok(n) = socket.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        if let Some(reply) = replies.next() {
                            if socket.write_all(reply).await.is_err() {
                                break;
                            }
                        }
                    }
                });
            }
        });
        FakeServer { addr, task }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

/// A HELLO reply, as the first answer of a fake server.
const HELLO: &[u8] = b"%1\r\n$6\r\nserver\r\n$8\r\nsessiond\r\n";

#[tokio::test]
async fn invalid_config() {
    for url in [
        "http://127.0.0.1:1",
        "sessiond://127.0.0.1:0",
        "sessiond://u@h:1",
    ] {
        let error = Client::connect(url).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidConfig, "{url}: {error}");
    }
    let error = Client::builder().build().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidConfig);
    let error = Client::builder()
        .node("sessiond://127.0.0.1:1")
        .pool_size(0)
        .build()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::InvalidConfig);
    let error = Client::builder()
        .nodes(["sessiond://127.0.0.1:1", "redis://127.0.0.1:1"])
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("twice"), "{error}");
}

#[tokio::test]
async fn connection_refused() {
    // A port that was free a moment ago and has nothing listening now.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let error = Client::connect(&url(addr)).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
    assert!(error.to_string().contains(&addr.to_string()), "{error}");

    // A lazily built client gets the same error on first use.
    let client = Client::builder().node(url(addr)).build().unwrap();
    let error = client.get("k").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
}

#[tokio::test]
async fn connect_timeout_fires_when_the_server_never_answers() {
    let silent = FakeServer::start(&[]).await;
    let error = Client::builder()
        .node(url(silent.addr))
        .connect_timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    assert!(
        error.to_string().contains(&silent.addr.to_string()),
        "{error}"
    );
}

#[tokio::test]
async fn command_timeout_fires_when_replies_stop() {
    let stuck = FakeServer::start(&[HELLO]).await;
    let client = Client::builder()
        .node(url(stuck.addr))
        .command_timeout(Duration::from_millis(200))
        .pool_size(1)
        .connect()
        .await
        .unwrap();
    for _ in 0..2 {
        let error = client.get("k").await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    }
    let error = client
        .sessions()
        .create(NewSession::default())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
}

/// Redis's reply to a command sent while the server loads its dataset.
const LOADING: &[u8] = b"-LOADING Redis is loading the dataset in memory\r\n";

#[tokio::test]
async fn a_command_refused_while_the_server_loads_is_sent_again() {
    let loading = FakeServer::start(&[HELLO, LOADING, LOADING, b"$1\r\nv\r\n", b"+OK\r\n"]).await;
    let client = Client::builder()
        .node(url(loading.addr))
        .reconnect_backoff(Duration::from_millis(5), Duration::from_millis(10))
        .pool_size(1)
        .connect()
        .await
        .unwrap();
    // Refused twice (the command did not run), answered the third time.
    assert_eq!(client.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    // The connection stays in step: the next command gets the next reply.
    client.set("k", "w").await.unwrap();
}

#[tokio::test]
async fn a_server_still_loading_at_the_command_timeout_is_reported_as_loading() {
    // More refusals than the timeout leaves room for.
    let replies: Vec<&'static [u8]> = std::iter::once(HELLO)
        .chain(std::iter::repeat_n(LOADING, 200))
        .collect();
    let loading = FakeServer::start(replies.leak()).await;
    let client = Client::builder()
        .node(url(loading.addr))
        .reconnect_backoff(Duration::from_millis(5), Duration::from_millis(10))
        .command_timeout(Duration::from_millis(200))
        .pool_size(1)
        .connect()
        .await
        .unwrap();
    let error = client.get("k").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server, "{error}");
    assert!(error.to_string().starts_with("LOADING"), "{error}");
}

#[tokio::test]
async fn protocol_errors() {
    // Not RESP at all.
    let garbage = FakeServer::start(&[HELLO, b"?what\r\n"]).await;
    let client = Client::connect(&url(garbage.addr)).await.unwrap();
    let error = client.get("k").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Protocol, "{error}");

    // Valid RESP of a shape the command never answers.
    let odd = FakeServer::start(&[HELLO, b":5\r\n", b"*1\r\n:1\r\n"]).await;
    let client = Client::connect(&url(odd.addr)).await.unwrap();
    let error = client.get("k").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Protocol, "{error}");
    assert!(error.to_string().contains("GET"), "{error}");
    let error = client.sessions().list_for_user("ada").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Protocol, "{error}");
}

#[tokio::test]
async fn refused_login() {
    let server = TestServer::start();
    // The server has only the `default` user until passwords arrive.
    let url = format!("sessiond://mallory:secret@{}", server.addr);
    let error = Client::connect(&url).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth, "{error}");
    assert!(error.to_string().starts_with("log in to"), "{error}");
    assert!(!error.to_string().contains("secret"), "{error}");

    // The default user with any password is accepted, as Redis's `nopass` user is.
    let url = format!("sessiond://default:anything@{}", server.addr);
    Client::connect(&url).await.unwrap().ping().await.unwrap();
}

#[tokio::test]
async fn error_replies_leave_the_connection_usable() {
    let server = TestServer::start();
    let client = connect(server.addr).await;
    let id = client
        .sessions()
        .create(NewSession::default())
        .await
        .unwrap();

    // String and TTL commands refuse session keys.
    let error = client.get(id.as_str()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server, "{error}");
    assert!(error.to_string().starts_with("WRONGTYPE"), "{error}");
    assert!(error.is_reply());
    let error = client
        .expire(id.as_str(), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server, "{error}");

    // The server's own validation: a zero timeout.
    let error = client
        .sessions()
        .create(NewSession::default().idle(Duration::ZERO))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Server, "{error}");

    let error = client.command(&["NOSUCHCOMMAND"]).await.unwrap_err();
    assert!(
        error.to_string().starts_with("ERR unknown command"),
        "{error}"
    );
    client.ping().await.unwrap();
}

#[tokio::test]
async fn version_conflict() {
    let server = TestServer::start();
    let client = connect(server.addr).await;
    let sessions = client.sessions();
    let id = sessions
        .create(NewSession::default().field("cart", "[]"))
        .await
        .unwrap();
    // Two requests read version 1; the first write wins, the second conflicts.
    assert_eq!(
        sessions
            .set_if_version(&id, 1, [("cart", r#"["book"]"#)])
            .await
            .unwrap(),
        Some(2)
    );
    let error = sessions
        .set_if_version(&id, 1, [("cart", r#"["pen"]"#)])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Conflict, "{error}");
    assert_eq!(error.current_version(), Some(2));
    let data = sessions.get(&id).await.unwrap().unwrap();
    assert_eq!(
        data.get_str("cart"),
        Some(r#"["book"]"#),
        "the losing write changed nothing"
    );
    // The loser re-reads and writes with the current version.
    assert_eq!(
        sessions
            .set_if_version(&id, 2, [("cart", r#"["book","pen"]"#)])
            .await
            .unwrap(),
        Some(3)
    );
}

#[tokio::test]
async fn serialization() {
    let server = TestServer::start();
    let client = connect(server.addr).await;
    client.set("k", "not json").await.unwrap();
    let error = client.get_json::<Vec<u32>>("k").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Serialization, "{error}");
    assert!(std::error::Error::source(&error).is_some());

    let id = client
        .sessions()
        .create(NewSession::default().field("n", "[1,"))
        .await
        .unwrap();
    let data = client.sessions().get(&id).await.unwrap().unwrap();
    let error = data.json::<Vec<u32>>("n").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Serialization, "{error}");

    // A map with non-string keys cannot become JSON.
    let map: std::collections::HashMap<(u8, u8), u8> = [((1, 2), 3)].into();
    let error = NewSession::default().json("m", &map).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Serialization, "{error}");
}
