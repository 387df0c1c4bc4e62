//! Every method of the typed API, against one server.

use std::time::{Duration, UNIX_EPOCH};

use sessiond_client::protocol::Frame;
use sessiond_client::{KeyTtl, NewSession, SessionId};
use sessiond_tests::TestServer;

use crate::connect;

#[tokio::test]
async fn session_lifecycle() {
    let server = TestServer::start();
    let client = connect(server.addr).await;
    let sessions = client.sessions();

    let id = sessions
        .create(
            NewSession::default()
                .user("ada")
                .idle(Duration::from_secs(600))
                .absolute(Duration::from_secs(3600))
                .field("theme", "dark")
                .json("cart", &["book"])
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        id.as_str().len(),
        43,
        "server-issued IDs are 32 bytes in base64url"
    );

    let info = sessions
        .info(&id)
        .await
        .unwrap()
        .expect("the session exists");
    assert_eq!(info.user.as_deref(), Some("ada"));
    assert_eq!(info.idle_timeout, Duration::from_secs(600));
    assert_eq!(info.absolute_timeout, Duration::from_secs(3600));
    assert_eq!(info.version, 1);
    assert_eq!(info.fields, 2);
    assert_eq!(
        info.bytes,
        ("theme".len() + "dark".len() + "cart".len() + r#"["book"]"#.len()) as u64
    );
    assert_eq!(info.expires_at, info.last_access + info.idle_timeout);
    assert!(info.created_at > UNIX_EPOCH && info.ttl <= info.idle_timeout);

    let data = sessions
        .get(&id)
        .await
        .unwrap()
        .expect("the session exists");
    assert_eq!(data.len(), 2);
    assert_eq!(data.get_str("theme"), Some("dark"));
    assert_eq!(
        data.json::<Vec<String>>("cart").unwrap(),
        Some(vec!["book".to_owned()])
    );
    assert_eq!(data.json::<Vec<String>>("missing").unwrap(), None);

    let fields = sessions.get_fields(&id, &["theme", "nope"]).await.unwrap();
    assert_eq!(fields, Some(vec![Some("dark".into()), None]));

    assert_eq!(
        sessions.set(&id, [("theme", "light")]).await.unwrap(),
        Some(2)
    );
    assert_eq!(
        sessions
            .set_if_version(&id, 2, [("a", "1"), ("b", "2")])
            .await
            .unwrap(),
        Some(3)
    );
    assert_eq!(
        sessions
            .set_json(&id, "cart", &["book", "pen"])
            .await
            .unwrap(),
        Some(4)
    );
    let data = sessions.get(&id).await.unwrap().unwrap();
    assert_eq!(data.get_str("theme"), Some("light"));
    assert_eq!(data.json::<Vec<String>>("cart").unwrap().unwrap().len(), 2);

    assert_eq!(
        sessions.unset(&id, &["a", "never-set"]).await.unwrap(),
        Some(1)
    );
    assert_eq!(sessions.info(&id).await.unwrap().unwrap().version, 5);

    let ttl = sessions
        .touch(&id)
        .await
        .unwrap()
        .expect("the session exists");
    assert!(ttl <= Duration::from_secs(600) && ttl > Duration::ZERO);

    // Regeneration: same data, new ID, old ID dead at once.
    let moved = sessions
        .regenerate(&id)
        .await
        .unwrap()
        .expect("the session exists");
    assert_ne!(moved, id);
    assert_eq!(sessions.get(&id).await.unwrap(), None);
    let data = sessions.get(&moved).await.unwrap().unwrap();
    assert_eq!(data.get_str("theme"), Some("light"));
    let as_alan = sessions
        .regenerate_for_user(&moved, "alan")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sessions
            .info(&as_alan)
            .await
            .unwrap()
            .unwrap()
            .user
            .as_deref(),
        Some("alan")
    );

    assert!(sessions.destroy(&as_alan).await.unwrap());
    assert!(!sessions.destroy(&as_alan).await.unwrap());
    assert_eq!(sessions.get(&as_alan).await.unwrap(), None);
}

#[tokio::test]
async fn a_missing_session_is_none_everywhere() {
    let server = TestServer::start();
    let client = connect(server.addr).await;
    let sessions = client.sessions();
    let id = SessionId::new("never-issued-by-the-server");
    assert_eq!(sessions.get(&id).await.unwrap(), None);
    assert_eq!(sessions.get_fields(&id, &["a"]).await.unwrap(), None);
    assert_eq!(sessions.set(&id, [("a", "1")]).await.unwrap(), None);
    assert_eq!(
        sessions.set_if_version(&id, 1, [("a", "1")]).await.unwrap(),
        None
    );
    assert_eq!(sessions.unset(&id, &["a"]).await.unwrap(), None);
    assert_eq!(sessions.touch(&id).await.unwrap(), None);
    assert_eq!(sessions.info(&id).await.unwrap(), None);
    assert_eq!(sessions.regenerate(&id).await.unwrap(), None);
    assert_eq!(
        sessions.regenerate_for_user(&id, "ada").await.unwrap(),
        None
    );
    assert!(!sessions.destroy(&id).await.unwrap());
    // Nothing was created under the client's name (strict session management).
    assert_eq!(server.stored_keys(), 0);
}

#[tokio::test]
async fn per_user_lists_and_log_out_everywhere_else() {
    let server = TestServer::start();
    let client = connect(server.addr).await;
    let sessions = client.sessions();
    let laptop = sessions
        .create(NewSession::default().user("ada"))
        .await
        .unwrap();
    let phone = sessions
        .create(NewSession::default().user("ada"))
        .await
        .unwrap();
    let tablet = sessions
        .create(NewSession::default().user("ada"))
        .await
        .unwrap();
    let other = sessions
        .create(NewSession::default().user("alan"))
        .await
        .unwrap();
    let anonymous = sessions.create(NewSession::default()).await.unwrap();

    assert_eq!(
        sessions.list_for_user("ada").await.unwrap(),
        vec![laptop.clone(), phone.clone(), tablet.clone()],
        "oldest first"
    );
    assert_eq!(sessions.count_for_user("ada").await.unwrap(), 3);
    assert_eq!(sessions.list_for_user("nobody").await.unwrap(), vec![]);

    assert_eq!(
        sessions
            .destroy_all_for_user("ada", Some(&laptop))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        sessions.list_for_user("ada").await.unwrap(),
        vec![laptop.clone()]
    );
    assert_eq!(sessions.get(&phone).await.unwrap(), None);
    assert_eq!(sessions.destroy_all_for_user("ada", None).await.unwrap(), 1);
    assert_eq!(sessions.count_for_user("ada").await.unwrap(), 0);

    // Other users' and anonymous sessions are untouched.
    assert!(sessions.get(&other).await.unwrap().is_some());
    assert!(sessions.get(&anonymous).await.unwrap().is_some());
}

#[tokio::test]
async fn plain_keys() {
    let server = TestServer::start();
    let client = connect(server.addr).await;
    client.ping().await.unwrap();

    assert_eq!(client.get("k").await.unwrap(), None);
    assert_eq!(client.ttl("k").await.unwrap(), KeyTtl::Missing);
    client.set("k", b"v\x00\xff").await.unwrap();
    assert_eq!(
        client.get("k").await.unwrap().as_deref(),
        Some(&b"v\x00\xff"[..])
    );
    assert_eq!(client.ttl("k").await.unwrap(), KeyTtl::Persistent);

    assert!(client.expire("k", Duration::from_secs(100)).await.unwrap());
    let KeyTtl::ExpiresIn(left) = client.ttl("k").await.unwrap() else {
        panic!("k has a deadline now");
    };
    assert!(left <= Duration::from_secs(100) && left > Duration::from_secs(50));
    assert!(!client
        .expire("missing", Duration::from_secs(1))
        .await
        .unwrap());

    client
        .set_with_ttl("t", "1", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        matches!(client.ttl("t").await.unwrap(), KeyTtl::ExpiresIn(d) if d <= Duration::from_secs(30))
    );
    // SET without a TTL clears the old one, as Redis does.
    client.set("t", "2").await.unwrap();
    assert_eq!(client.ttl("t").await.unwrap(), KeyTtl::Persistent);

    client
        .set_json(
            "j",
            &serde_json::json!({"n": 1}),
            Some(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    let value: serde_json::Value = client.get_json("j").await.unwrap().unwrap();
    assert_eq!(value["n"], 1);
    assert_eq!(client.get_json::<u32>("nothing").await.unwrap(), None);

    assert!(client.del("k").await.unwrap());
    assert!(!client.del("k").await.unwrap());

    // The escape hatch: any command, raw reply.
    assert_eq!(
        client.command(&["ECHO", "hi"]).await.unwrap(),
        Frame::Bulk("hi".into())
    );
    assert_eq!(
        client.command(&["DBSIZE"]).await.unwrap(),
        Frame::Integer(2)
    );

    // A session is a key too: TTL and DEL work on it.
    let id = client
        .sessions()
        .create(NewSession::default())
        .await
        .unwrap();
    assert!(matches!(
        client.ttl(id.as_str()).await.unwrap(),
        KeyTtl::ExpiresIn(_)
    ));
    assert!(client.del(id.as_str()).await.unwrap());
    assert_eq!(client.sessions().get(&id).await.unwrap(), None);
}

#[test]
fn session_ids_do_not_leak_into_logs() {
    let id = SessionId::new("Zr4kPq1xW0sLm9Tg7aYb2Nc5Vd8Ue3Hf6Jo1Ki4Ml7Q");
    let debug = format!("{id:?}");
    assert!(!debug.contains("Zr4kPq1x"), "{debug}");
    assert_eq!(
        id.to_string(),
        "Zr4kPq1xW0sLm9Tg7aYb2Nc5Vd8Ue3Hf6Jo1Ki4Ml7Q"
    );
}
