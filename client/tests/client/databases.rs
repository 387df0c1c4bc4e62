//! Numbered databases: a URL's path (`redis://host:port/3`) or [`Builder::database`] selects a
//! database on every connection, reconnections included.

use sessiond::Config;
use sessiond_client::Client;
use sessiond_protocol::Frame;
use sessiond_tests::TestServer;

/// The value of `key` in database `db`, read on a connection of its own.
fn read(server: &TestServer, db: u32, key: &str) -> Option<String> {
    let mut raw = server.raw();
    raw.command(&[b"SELECT", db.to_string().as_bytes()]);
    assert_eq!(raw.reply(), Frame::ok());
    raw.command(&[b"GET", key.as_bytes()]);
    match raw.reply() {
        Frame::Bulk(value) => Some(String::from_utf8(value.to_vec()).unwrap()),
        Frame::Null => None,
        other => panic!("GET {key}: {other:?}"),
    }
}

#[tokio::test]
async fn a_url_path_selects_its_database_on_every_connection() {
    let server = TestServer::start();
    let addr = server.addr;
    for scheme in ["redis", "sessiond"] {
        let client = Client::builder()
            .node(format!("{scheme}://{addr}/3"))
            .pool_size(2)
            .connect()
            .await
            .unwrap();
        // Enough commands to use both pooled connections.
        for i in 0..8 {
            client.set(format!("{scheme}{i}"), "three").await.unwrap();
        }
        for i in 0..8 {
            let key = format!("{scheme}{i}");
            assert_eq!(read(&server, 3, &key).as_deref(), Some("three"));
            assert_eq!(read(&server, 0, &key), None);
        }
    }
    let client = Client::builder()
        .node(format!("sessiond://{addr}"))
        .database(2)
        .connect()
        .await
        .unwrap();
    client.set("builder", "two").await.unwrap();
    assert_eq!(read(&server, 2, "builder").as_deref(), Some("two"));
    // The URL's path wins over the builder's default.
    let client = Client::builder()
        .node(format!("sessiond://{addr}/0"))
        .database(2)
        .connect()
        .await
        .unwrap();
    client.set("path", "zero").await.unwrap();
    assert_eq!(read(&server, 0, "path").as_deref(), Some("zero"));
}

#[tokio::test]
async fn a_database_the_server_lacks_fails_the_connection_with_its_error() {
    let server = TestServer::start();
    let error = Client::builder()
        .node(format!("redis://{}/16", server.addr))
        .connect()
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("DB index is out of range"),
        "{error}"
    );
}

#[tokio::test]
async fn a_reconnection_selects_the_database_again() {
    let server = TestServer::start();
    let addr = server.addr;
    let client = Client::builder()
        .node(format!("redis://{addr}/5"))
        .pool_size(1)
        .connect()
        .await
        .unwrap();
    client.set("before", "1").await.unwrap();
    drop(server);
    let server = TestServer::with_config_at(Config::default(), addr);
    // A command on the old connection may fail once (see `reconnect.rs`).
    if client.set("after", "2").await.is_err() {
        client.set("after", "2").await.unwrap();
    }
    assert_eq!(read(&server, 5, "after").as_deref(), Some("2"));
    assert_eq!(read(&server, 0, "after"), None);
}
