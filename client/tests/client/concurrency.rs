//! 100 tasks share one client: their commands are pipelined over its connections and every
//! task gets its own replies.

use std::collections::HashSet;

use sessiond_client::NewSession;
use sessiond_tests::TestServer;

use crate::connect;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_tasks_share_one_client() {
    let server = TestServer::start();
    let client = connect(server.addr).await;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..100 {
        let client = client.clone();
        tasks.spawn(async move {
            let sessions = client.sessions();
            let id = sessions
                .create(
                    NewSession::default()
                        .user(format!("user{}", task % 10))
                        .field("task", task.to_string()),
                )
                .await
                .unwrap();
            for round in 0..20 {
                let version = sessions
                    .set(&id, [("round", round.to_string())])
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(version, round + 2);
                let data = sessions.get(&id).await.unwrap().unwrap();
                assert_eq!(data.get_str("task"), Some(task.to_string().as_str()));
                assert_eq!(data.get_str("round"), Some(round.to_string().as_str()));
                let key = format!("task:{task}");
                client.set(&key, format!("{round}")).await.unwrap();
                assert_eq!(
                    client.get(&key).await.unwrap().as_deref(),
                    Some(round.to_string().as_bytes())
                );
            }
            id
        });
    }
    let mut ids = HashSet::new();
    while let Some(id) = tasks.join_next().await {
        ids.insert(id.expect("task succeeded"));
    }
    assert_eq!(ids.len(), 100, "every session got its own ID");
    for user in 0..10 {
        let count = client
            .sessions()
            .count_for_user(&format!("user{user}"))
            .await
            .unwrap();
        assert_eq!(count, 10);
    }
    assert_eq!(server.stored_keys(), 200);
}
