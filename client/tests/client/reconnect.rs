//! A server restart: the client reconnects on its own, at once after losing a working
//! connection, and with backoff while the server stays down.

use std::time::Duration;

use sessiond::Config;
use sessiond_client::{Client, ErrorKind};
use sessiond_tests::TestServer;

use crate::url;

#[tokio::test]
async fn reconnects_after_a_server_restart() {
    let server = TestServer::start();
    let addr = server.addr;
    let client = Client::builder()
        .node(url(addr))
        .pool_size(1)
        .connect()
        .await
        .unwrap();
    client.set("before", "1").await.unwrap();

    drop(server);
    let server = TestServer::with_config_at(Config::default(), addr);

    // The client may not have read the old server's goodbye yet; a command sent on the old
    // connection then fails (it may have been lost), and the next one uses a new connection.
    let mut lost = 0;
    loop {
        match client.set("after", "2").await {
            Ok(()) => break,
            Err(error) => {
                assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
                lost += 1;
                assert!(lost < 2, "still failing after a reconnect: {error}");
            }
        }
    }
    assert_eq!(
        client.get("after").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
    // A new server without persistence: the old key is gone, and the client sees the new one.
    assert_eq!(client.get("before").await.unwrap(), None);
    assert_eq!(server.stored_keys(), 1);
}

#[tokio::test]
async fn backs_off_while_the_server_is_down_and_recovers() {
    let server = TestServer::start();
    let addr = server.addr;
    let backoff = Duration::from_millis(200);
    let client = Client::builder()
        .node(url(addr))
        .pool_size(1)
        .reconnect_backoff(backoff, backoff)
        .connect()
        .await
        .unwrap();
    client.ping().await.unwrap();
    drop(server);

    // Down: the lost connection, then a refused reconnect, then fast failures until the
    // backoff elapses (at most a few commands, whichever the timing).
    let mut fast_failure = None;
    for _ in 0..5 {
        let error = client.ping().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
        assert!(error.to_string().contains(&addr.to_string()), "{error}");
        if error.to_string().contains("next reconnect attempt") {
            fast_failure = Some(error);
            break;
        }
    }
    let fast_failure = fast_failure.expect("a failure from the backoff state");
    assert!(
        fast_failure.to_string().contains("is down"),
        "{fast_failure}"
    );

    let _server = TestServer::with_config_at(Config::default(), addr);
    // Back: the first command after the backoff reconnects. The client has no signal for
    // "the server is back" but time itself, so wait out the backoff between tries.
    let mut tries = 0;
    while let Err(error) = client.ping().await {
        assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
        tries += 1;
        assert!(
            tries < 50,
            "no reconnect after {tries} backoff periods: {error}"
        );
        tokio::time::sleep(backoff).await;
    }
    client.set("k", "v").await.unwrap();
}
