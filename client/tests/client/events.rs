//! Session events: the typed subscription against sessiond (RESP3 pushes, several nodes, a
//! named user confined to its namespace, a server that stops) and against fake servers speaking
//! RESP2 (a server without HELLO), refusing the subscription, and never confirming it.
//!
//! The events are published as the server publishes them (`Hub::publish_session`: PUBLISH
//! refuses the `__session__:` channels), with IDs no real session has, and the assertions look
//! only at those: the tests hold whether or not the server emits events of its own.

use bytes::Bytes;
use sessiond::auth::{password_sha256, RawUser};
use sessiond::{Config, RawConfig};
use sessiond_client::{Client, ErrorKind, SessionEvent, SessionEvents, SessionId};
use sessiond_tests::TestServer;

use crate::errors::FakeServer;
use crate::{connect, url};

/// Publishes `message` on `__session__:<event>` as the server does for a session of the
/// namespace `namespace`; returns how many subscribers received it.
pub fn publish(server: &TestServer, event: &str, message: &str, namespace: &str) -> usize {
    let channel = Bytes::from(format!("__session__:{event}"));
    let message = Bytes::from(message.to_owned());
    server
        .shared
        .pubsub
        .publish_session(&channel, &message, &[namespace.as_bytes()])
}

/// The next event whose ID starts with `prefix` (the test's own).
async fn next_of(events: &mut SessionEvents, prefix: &str) -> SessionEvent {
    loop {
        let event = events.next().await.expect("an event").expect("no error");
        if event.id().as_str().starts_with(prefix) {
            return event;
        }
    }
}

fn id(id: &str) -> SessionId {
    SessionId::new(id)
}

#[tokio::test]
async fn every_event_arrives_typed_from_sessiond() {
    let server = TestServer::start();
    let client = connect(server.addr).await;
    let mut events = client.sessions().events().await.unwrap();
    // Subscribed when `events` returns: these reach it, in order.
    assert_eq!(publish(&server, "created", "t-1 ada", ""), 1);
    publish(&server, "created", "t-2 ", "");
    publish(&server, "regenerated", "t-2 t-3 ada", "");
    publish(&server, "destroyed", "t-3 ada", "");
    publish(&server, "expired", "t-1 ada", "");
    publish(&server, "evicted", "t-4 ", "");
    let ada = || Some("ada".to_owned());
    let expected = [
        SessionEvent::Created {
            id: id("t-1"),
            user: ada(),
        },
        SessionEvent::Created {
            id: id("t-2"),
            user: None,
        },
        SessionEvent::Regenerated {
            old_id: id("t-2"),
            new_id: id("t-3"),
            user: ada(),
        },
        SessionEvent::Destroyed {
            id: id("t-3"),
            user: ada(),
        },
        SessionEvent::Expired {
            id: id("t-1"),
            user: ada(),
        },
        SessionEvent::Evicted {
            id: id("t-4"),
            user: None,
        },
    ];
    for want in expected {
        assert_eq!(next_of(&mut events, "t-").await, want);
    }
    // The subscription is a connection of its own: the client's commands carry on.
    client.set("k", "v").await.unwrap();
    assert_eq!(client.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));

    // Dropping the stream closes its connection: nobody receives the next event.
    drop(events);
    // (The server notices the closed socket when it reads it: poll until then.)
    while publish(&server, "created", "t-5 ", "") != 0 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn every_node_is_subscribed() {
    let (one, two) = (TestServer::start(), TestServer::start());
    let client = Client::builder()
        .nodes([url(one.addr), url(two.addr)])
        .connect()
        .await
        .unwrap();
    let mut events = client.sessions().events().await.unwrap();
    assert_eq!(publish(&one, "destroyed", "n-1 ada", ""), 1);
    assert_eq!(next_of(&mut events, "n-").await.id(), &id("n-1"));
    assert_eq!(publish(&two, "destroyed", "n-2 ada", ""), 1);
    assert_eq!(next_of(&mut events, "n-").await.id(), &id("n-2"));
}

#[tokio::test]
async fn a_stopped_server_ends_the_stream_with_one_error() {
    let server = TestServer::start();
    let client = connect(server.addr).await;
    let mut events = client.sessions().events().await.unwrap();
    drop(server);
    loop {
        match events.next().await.expect("an error before the end") {
            Ok(_) => {} // an event of the server's own
            Err(error) => {
                assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
                break;
            }
        }
    }
    assert!(events.next().await.is_none());
}

/// `web` may subscribe to the session channels and has sessions under `sess:web:`; `mute` has
/// no channel permission.
fn users() -> Config {
    let user = |name: &str, prefix: &str, keys: &str, channels: &[&str]| RawUser {
        name: name.to_owned(),
        password_sha256: password_sha256(&format!("pw-{name}")),
        keys: vec![keys.to_owned()],
        categories: vec!["all".to_owned()],
        session_prefix: prefix.to_owned(),
        channels: channels.iter().map(|c| (*c).to_owned()).collect(),
    };
    let raw = RawConfig {
        users: vec![
            user("web", "sess:web:", "sess:web:*", &["__session__:*"]),
            user("mute", "sess:mute:", "sess:mute:*", &[]),
        ],
        ..RawConfig::default()
    };
    Config {
        persistence: None,
        ..raw.validate().expect("valid users")
    }
}

#[tokio::test]
async fn a_named_user_subscribes_by_name_and_gets_only_its_namespace() {
    let server = TestServer::with_config(users());
    let as_user = |name: &str| format!("sessiond://{name}:pw-{name}@{}", server.addr);
    let web = Client::connect(&as_user("web")).await.unwrap();
    let mut events = web.sessions().events().await.unwrap();
    // Another namespace's event does not reach it; its own does.
    assert_eq!(
        publish(&server, "destroyed", "sess:other:x ", "sess:other:"),
        0
    );
    assert_eq!(
        publish(&server, "destroyed", "sess:web:x ada", "sess:web:"),
        1
    );
    assert_eq!(
        next_of(&mut events, "sess:").await,
        SessionEvent::Destroyed {
            id: id("sess:web:x"),
            user: Some("ada".to_owned())
        }
    );

    let mute = Client::connect(&as_user("mute")).await.unwrap();
    let error = mute.sessions().events().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth, "{error}");
    assert!(error.message().contains("NOPERM"), "{error}");
}

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
