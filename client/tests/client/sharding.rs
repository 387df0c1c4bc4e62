//! Three servers behind one client: keys and sessions spread by rendezvous hashing, per-user
//! commands fan out, and a stopped node fails only what it owns, promptly and by name.

use std::time::Duration;

use sessiond_client::{Client, ErrorKind, NewSession, SessionId};
use sessiond_tests::TestServer;

use crate::url;

/// Which of `servers` hold `key` (asked directly, not through the client).
fn holders(servers: &[&TestServer], key: &str) -> Vec<usize> {
    servers
        .iter()
        .enumerate()
        .filter(|(_, server)| {
            let mut raw = server.raw();
            raw.command(&[b"EXISTS", key.as_bytes()]);
            raw.reply() == sessiond_client::protocol::Frame::Integer(1)
        })
        .map(|(index, _)| index)
        .collect()
}

#[tokio::test]
async fn three_nodes_one_stopped() {
    let (a, b, c) = (
        TestServer::start(),
        TestServer::start(),
        TestServer::start(),
    );
    let client = Client::builder()
        .nodes([url(a.addr), url(b.addr), url(c.addr)])
        // Long enough that a test waiting on a dead node would be seen to hang: the failures
        // below must come from the node being known down, not from a timeout.
        .command_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let sessions = client.sessions();

    // Sessions spread over the nodes, each stored on exactly one.
    let mut ids: Vec<SessionId> = Vec::new();
    for n in 0..30 {
        let id = sessions
            .create(NewSession::default().user("ada").field("n", n.to_string()))
            .await
            .unwrap();
        ids.push(id);
    }
    let mut per_node = [0; 3];
    for id in &ids {
        let holders = holders(&[&a, &b, &c], id.as_str());
        assert_eq!(holders.len(), 1, "one copy of each session");
        per_node[holders[0]] += 1;
    }
    assert_eq!(per_node, [10, 10, 10], "creation goes round the nodes");
    for (n, id) in ids.iter().enumerate() {
        let data = sessions.get(id).await.unwrap().unwrap();
        assert_eq!(data.get_str("n"), Some(n.to_string().as_str()));
    }

    // Keys too.
    let keys: Vec<String> = (0..30).map(|n| format!("key:{n}")).collect();
    let mut key_nodes = [0; 3];
    for key in &keys {
        client.set(key, key).await.unwrap();
        let holders = holders(&[&a, &b, &c], key);
        assert_eq!(holders.len(), 1);
        key_nodes[holders[0]] += 1;
    }
    assert!(key_nodes.iter().all(|&n| n > 0), "{key_nodes:?}");

    // Per-user commands see every node.
    let mut listed = sessions.list_for_user("ada").await.unwrap();
    listed.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(sessions.count_for_user("ada").await.unwrap(), 30);

    // Regeneration keeps a session on its node, reachable under its new ID.
    let moved = sessions.regenerate(&ids[0]).await.unwrap().unwrap();
    assert_eq!(holders(&[&a, &b, &c], moved.as_str()).len(), 1);
    assert!(sessions.get(&moved).await.unwrap().is_some());
    ids[0] = moved;

    // Stop B.
    let b_addr = b.addr.to_string();
    let on_b = |key: &str| holders(&[&a, &b, &c], key) == [1];
    let ids_on_b: Vec<SessionId> = ids.iter().filter(|id| on_b(id.as_str())).cloned().collect();
    let keys_on_b: Vec<&String> = keys.iter().filter(|key| on_b(key)).collect();
    drop(b);

    // What B owns fails with a connection error naming B; the rest works.
    for id in &ids {
        match sessions.get(id).await {
            Ok(data) => {
                assert!(!ids_on_b.contains(id));
                assert!(data.is_some());
            }
            Err(error) => {
                assert!(ids_on_b.contains(id), "{error}");
                assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
                assert!(error.to_string().contains(&b_addr), "{error}");
            }
        }
    }
    for key in &keys {
        let result = client.get(key).await;
        assert_eq!(
            result.is_err(),
            keys_on_b.contains(&key),
            "{key}: {result:?}"
        );
    }

    // Per-user reads fail, naming B; log-out-everywhere still ends what A and C hold.
    let error = sessions.list_for_user("ada").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection);
    assert!(error.to_string().contains(&b_addr), "{error}");
    let keep = ids
        .iter()
        .find(|id| !ids_on_b.contains(id))
        .unwrap()
        .clone();
    let error = sessions
        .destroy_all_for_user("ada", Some(&keep))
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&b_addr), "{error}");
    let ended = 30 - ids_on_b.len() - 1;
    assert!(
        error
            .to_string()
            .contains(&format!("{ended} sessions ended")),
        "{error}"
    );
    for id in ids.iter().filter(|id| !ids_on_b.contains(id)) {
        let alive = sessions.get(id).await.unwrap().is_some();
        assert_eq!(alive, *id == keep);
    }

    // New sessions go to the nodes that are up.
    for _ in 0..6 {
        let id = sessions
            .create(NewSession::default().user("alan"))
            .await
            .unwrap();
        assert!(sessions.get(&id).await.unwrap().is_some());
        assert_eq!(holders(&[&a, &c], id.as_str()).len(), 1);
    }
}
