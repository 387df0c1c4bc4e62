//! Session events: the typed subscription against fake servers speaking RESP2 (a server
//! without HELLO), refusing the subscription, and going away.

use sessiond_client::{Client, ErrorKind, SessionEvent, SessionId};

use crate::errors::FakeServer;
use crate::url;

/// HELLO refused as by a server that only speaks RESP2, then the five confirmations.
const RESP2_LOGIN: &[u8] = b"-ERR unknown command 'HELLO'\r\n";
macro_rules! confirmations {
    () => {
        "*3\r\n$9\r\nsubscribe\r\n$19\r\n__session__:created\r\n:1\r\n\
    *3\r\n$9\r\nsubscribe\r\n$23\r\n__session__:regenerated\r\n:2\r\n\
    *3\r\n$9\r\nsubscribe\r\n$21\r\n__session__:destroyed\r\n:3\r\n\
    *3\r\n$9\r\nsubscribe\r\n$19\r\n__session__:expired\r\n:4\r\n\
    *3\r\n$9\r\nsubscribe\r\n$19\r\n__session__:evicted\r\n:5\r\n"
    };
}

fn client(server: &FakeServer) -> Client {
    Client::builder()
        .node(url(server.addr))
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn resp2_messages_become_events_and_a_lost_connection_ends_the_stream() {
    // The confirmations, a message that is not an event (skipped), then two events.
    const SUBSCRIBED: &[u8] = concat!(
        confirmations!(),
        "*3\r\n$7\r\nmessage\r\n$19\r\n__session__:created\r\n$7\r\nnospace\r\n",
        "*3\r\n$7\r\nmessage\r\n$21\r\n__session__:destroyed\r\n$7\r\nabc ada\r\n",
        "*3\r\n$7\r\nmessage\r\n$23\r\n__session__:regenerated\r\n$8\r\nold new \r\n",
    )
    .as_bytes();
    let server = FakeServer::start(&[RESP2_LOGIN, SUBSCRIBED]).await;
    let client = client(&server);
    let mut events = client.sessions().events().await.unwrap();
    assert_eq!(
        events.next().await.unwrap().unwrap(),
        SessionEvent::Destroyed {
            id: SessionId::new("abc"),
            user: Some("ada".to_owned())
        }
    );
    assert_eq!(
        events.next().await.unwrap().unwrap(),
        SessionEvent::Regenerated {
            old_id: SessionId::new("old"),
            new_id: SessionId::new("new"),
            user: None
        }
    );

    // The server goes away: one connection error, then the end.
    drop(server);
    let error = events.next().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
    assert!(events.next().await.is_none());
    assert!(events.next().await.is_none());
}

#[tokio::test]
async fn a_refused_subscription_is_an_error_of_its_kind() {
    const REFUSED: &[u8] =
        b"-NOPERM User web has no permissions to access the '__session__:created' channel\r\n";
    let server = FakeServer::start(&[RESP2_LOGIN, REFUSED]).await;
    let error = client(&server).sessions().events().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth, "{error}");
    assert!(error.message().contains("NOPERM"), "{error}");
    assert!(error.message().contains("subscribe"), "{error}");
}

#[tokio::test]
async fn an_unconfirmed_subscription_times_out() {
    // HELLO is answered, SUBSCRIBE never is.
    let server = FakeServer::start(&[RESP2_LOGIN]).await;
    let client = Client::builder()
        .node(url(server.addr))
        .connect_timeout(std::time::Duration::from_millis(200))
        .build()
        .unwrap();
    let error = client.sessions().events().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
}
