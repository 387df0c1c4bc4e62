//! `redis+sentinel://` against a real `redis-sentinel` watching real `redis-server` nodes (the
//! client's logic on its own) and sessiond nodes: the primary is found through the sentinel and
//! checked with ROLE, a write that gets READONLY is sent again to the new primary, a dead
//! primary's successor is found, and sessions follow a failover of sessiond nodes. Skipped, saying
//! why, where redis-server or redis-sentinel is missing (`.ci/run` installs both).

use std::time::Duration;

use sessiond_client::{Client, ErrorKind, NewSession};
use sessiond_tests::sentinel::{installed, poll, primary_port, role, RedisProcess, Scratch};
use sessiond_tests::TestServer;

const MASTER: &str = "sessions";

/// A scratch directory, or `None` (with the reason printed) where Redis is missing.
fn scratch() -> Option<Scratch> {
    if !(installed("redis-server") && installed("redis-sentinel")) {
        eprintln!("skipped: redis-server or redis-sentinel is not installed");
        return None;
    }
    Some(Scratch::new("client-sentinel"))
}

/// A primary, its replica (in sync), and one sentinel that never fails over on its own.
fn cluster(dir: &Scratch) -> (RedisProcess, RedisProcess, RedisProcess) {
    let primary = RedisProcess::server(dir.path(), &[]);
    let port = primary.port.to_string();
    let replica = RedisProcess::server(dir.path(), &["--replicaof", "127.0.0.1", &port]);
    let sentinel = RedisProcess::sentinel(
        dir.path(),
        MASTER,
        primary.port,
        1,
        &["down-after-milliseconds 60000", "failover-timeout 10000"],
    );
    (primary, replica, sentinel)
}

async fn connect(sentinel: &RedisProcess) -> Client {
    Client::builder()
        .node(format!(
            "redis+sentinel://127.0.0.1:{}/{MASTER}",
            sentinel.port
        ))
        .command_timeout(Duration::from_secs(10))
        .pool_size(2)
        .connect()
        .await
        .unwrap()
}

/// Waits until the primary's writes so far are on its replica.
fn replicated(primary: &RedisProcess) {
    let mut connection = primary.connect();
    poll("the replica acknowledges", 400, || {
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(50)
            .query(&mut connection)
            .ok()?;
        (acked == 1).then_some(())
    });
}

/// `SENTINEL FAILOVER`, once the sentinel has a replica it can promote (a replica it just
/// found has no link or INFO yet, and the command answers NOGOODSLAVE until it has).
fn force_failover(sentinel: &mut redis::Connection) {
    poll("the sentinel starts a failover", 400, || {
        redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER)
            .query::<()>(sentinel)
            .ok()
    });
}

fn get(node: &RedisProcess, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut node.connect())
        .unwrap()
}

#[tokio::test]
async fn a_write_refused_with_readonly_goes_to_the_new_primary() {
    let Some(dir) = scratch() else { return };
    let (old, new, sentinel) = cluster(&dir);
    let client = connect(&sentinel).await;
    client.set("a", "1").await.unwrap();
    assert_eq!(get(&old, "a").as_deref(), Some("1"));
    replicated(&old);

    // Swap the roles by hand (REPLICAOF leaves the client's connections open, unlike
    // Sentinel's failover) and point the sentinel at the new primary.
    let mut to_new = new.connect();
    let mut to_old = old.connect();
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut to_new)
        .unwrap();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(new.port)
        .query(&mut to_old)
        .unwrap();
    let mut to_sentinel = sentinel.connect();
    let _: () = redis::cmd("SENTINEL")
        .arg("REMOVE")
        .arg(MASTER)
        .query(&mut to_sentinel)
        .unwrap();
    let _: () = redis::cmd("SENTINEL")
        .arg("MONITOR")
        .arg(MASTER)
        .arg("127.0.0.1")
        .arg(new.port)
        .arg(1)
        .query(&mut to_sentinel)
        .unwrap();

    // Synchronized first: a full resync (a hello the new primary had not received yet makes
    // the old one's offset unknown to it) would answer LOADING while it loads.
    replicated(&new);

    // The old primary answers READONLY; the client asks the sentinel again and the write runs
    // on the new one, once.
    client.set("b", "2").await.unwrap();
    assert_eq!(get(&new, "b").as_deref(), Some("2"));
    assert_eq!(client.get("a").await.unwrap().as_deref(), Some(&b"1"[..]));
    let calls: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut to_new)
        .unwrap();
    assert!(calls.contains("cmdstat_set:calls=1,"), "{calls}");
}

#[tokio::test]
async fn follows_a_failover_run_by_sentinel() {
    let Some(dir) = scratch() else { return };
    let (old, new, sentinel) = cluster(&dir);
    let client = connect(&sentinel).await;
    client.set("a", "1").await.unwrap();
    replicated(&old);

    let mut to_sentinel = sentinel.connect();
    force_failover(&mut to_sentinel);
    poll("the sentinel names the new primary", 600, || {
        (primary_port(&mut to_sentinel, MASTER)? == new.port).then_some(())
    });
    poll("the old primary follows the new one", 600, || {
        (role(&mut old.connect())? == "slave").then_some(())
    });

    // Sentinel closed the client's connections to both nodes: the next commands reconnect to
    // the primary the sentinel names.
    client.set("b", "2").await.unwrap();
    assert_eq!(get(&new, "b").as_deref(), Some("2"));
    assert_eq!(client.get("a").await.unwrap().as_deref(), Some(&b"1"[..]));
}

#[tokio::test]
async fn finds_the_successor_of_a_dead_primary() {
    let Some(dir) = scratch() else { return };
    let (mut old, new, sentinel) = cluster(&dir);
    let client = connect(&sentinel).await;
    client.set("a", "1").await.unwrap();
    replicated(&old);

    old.kill9();
    let mut to_sentinel = sentinel.connect();
    force_failover(&mut to_sentinel);
    poll("the replica is promoted", 600, || {
        let named = primary_port(&mut to_sentinel, MASTER)? == new.port;
        (named && role(&mut new.connect())? == "master").then_some(())
    });

    // The connections to the dead primary are broken: the client asks the sentinel again.
    assert_eq!(client.get("a").await.unwrap().as_deref(), Some(&b"1"[..]));
    client.set("b", "2").await.unwrap();
    assert_eq!(get(&new, "b").as_deref(), Some("2"));
}

#[tokio::test]
async fn refuses_what_is_not_the_primary() {
    let Some(dir) = scratch() else { return };
    let (_primary, replica, _sentinel) = cluster(&dir);

    // A sentinel that names a replica (as one that has not seen a failover yet would): ROLE
    // says it is not the primary, and nothing is sent to it.
    let stale = RedisProcess::sentinel(
        dir.path(),
        MASTER,
        replica.port,
        1,
        &["down-after-milliseconds 60000"],
    );
    let error = Client::builder()
        .node(format!(
            "redis+sentinel://127.0.0.1:{}/{MASTER}",
            stale.port
        ))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Connection, "{error}");
    assert!(error.to_string().contains("not the primary"), "{error}");

    // A name no sentinel monitors, and a sentinel that is down: each sentinel's answer.
    let unknown = Client::builder()
        .node(format!("redis+sentinel://127.0.0.1:{}/nobody", stale.port))
        .connect()
        .await
        .unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::Connection, "{unknown}");
    assert!(
        unknown.to_string().contains("does not monitor it"),
        "{unknown}"
    );
    let down = sessiond_tests::sentinel::free_port();
    let nobody = Client::builder()
        .node(format!(
            "redis+sentinel://127.0.0.1:{down},127.0.0.1:{}/x",
            stale.port
        ))
        .connect()
        .await
        .unwrap_err();
    let message = nobody.to_string();
    assert!(message.contains(&format!("127.0.0.1:{down}")), "{message}");
}

#[tokio::test]
async fn follows_a_failover_of_sessiond_nodes() {
    if !installed("redis-sentinel") {
        eprintln!("skipped: redis-sentinel is not installed");
        return;
    }
    let dir = Scratch::new("client-sentinel-sessiond");
    let old = TestServer::start();
    let new = TestServer::start();
    let mut to_new = new.client();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(old.addr.port())
        .query(&mut to_new)
        .unwrap();
    let sentinel = RedisProcess::sentinel(
        dir.path(),
        MASTER,
        old.addr.port(),
        1,
        &["down-after-milliseconds 60000", "failover-timeout 10000"],
    );
    let mut to_sentinel = sentinel.connect();
    poll("the sentinel finds the replica", 400, || {
        let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(MASTER)
            .query(&mut to_sentinel)
            .ok()?;
        (replicas.len() == 1).then_some(())
    });

    let client = connect(&sentinel).await;
    let sessions = client.sessions();
    let id = sessions
        .create(NewSession::default().user("ada").field("cart", "book"))
        .await
        .unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(10_000)
        .query(&mut old.client())
        .unwrap();
    assert_eq!(acked, 1);

    force_failover(&mut to_sentinel);
    poll("the sentinel names the new primary", 600, || {
        (primary_port(&mut to_sentinel, MASTER)? == new.addr.port()).then_some(())
    });
    poll("the old primary follows the new one", 600, || {
        // A connection opened as Sentinel's CLIENT KILL TYPE normal runs there is closed.
        (role(&mut old.try_client()?)? == "slave").then_some(())
    });

    // The session, its user's index and a new write, all on the new primary.
    assert_eq!(
        sessions.list_for_user("ada").await.unwrap(),
        std::slice::from_ref(&id)
    );
    let data = sessions.get(&id).await.unwrap().unwrap();
    assert_eq!(data.get_str("cart"), Some("book"));
    client.set("after", "1").await.unwrap();
    // (Sentinel closed the connections it found on the promoted node: a new one.)
    let stored: Option<String> = redis::cmd("GET")
        .arg("after")
        .query(&mut new.client())
        .unwrap();
    assert_eq!(stored.as_deref(), Some("1"));
}

#[tokio::test]
async fn selects_the_database_on_the_primary_only() {
    let Some(dir) = scratch() else { return };
    let (primary, _replica, sentinel) = cluster(&dir);
    let in_db = |db: u32, key: &str| -> Option<String> {
        let url = format!("redis://127.0.0.1:{}/{db}", primary.port);
        let mut connection = redis::Client::open(url).unwrap().get_connection().unwrap();
        redis::cmd("GET").arg(key).query(&mut connection).unwrap()
    };
    // The builder's database, and the URL's: SELECTed on the primary, never on a sentinel
    // (which has no SELECT).
    let by_builder = Client::builder()
        .node(format!(
            "redis+sentinel://127.0.0.1:{}/{MASTER}",
            sentinel.port
        ))
        .database(2)
        .connect()
        .await
        .unwrap();
    by_builder.set("a", "2").await.unwrap();
    assert_eq!(in_db(2, "a").as_deref(), Some("2"));
    let by_url = Client::connect(&format!(
        "redis+sentinel://127.0.0.1:{}/{MASTER}/3",
        sentinel.port
    ))
    .await
    .unwrap();
    by_url.set("b", "3").await.unwrap();
    assert_eq!(in_db(3, "b").as_deref(), Some("3"));
    assert_eq!(in_db(0, "a"), None);
}
