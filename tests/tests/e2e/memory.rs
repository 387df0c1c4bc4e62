//! `--maxmemory` and its policies: the OOM refusal under noeviction, approximate LRU and
//! nearest-deadline eviction, and the accounting behind `used_memory`.
//!
//! LRU is sampled, as in Redis, so each test keeps the keys that must go a large majority of the
//! keyspace: a sample of 16 without one of them has a probability below 10^-5 per test.

use redis::{Commands, Connection, RedisResult, Value};
use sessiond::store::evict::Policy;
use sessiond::Config;
use sessiond_tests::{info_field, info_number, TestServer};

/// Room for about 220 keys of [`VALUE`] bytes with short names.
const MAXMEMORY: u64 = 232 * 1024;
const VALUE: usize = 1000;

fn server(policy: Policy) -> TestServer {
    TestServer::with_config_and_manual_clock(Config {
        maxmemory: MAXMEMORY,
        maxmemory_policy: policy,
        ..Config::default()
    })
}

fn info(con: &mut Connection) -> String {
    redis::cmd("INFO").query(con).expect("INFO")
}

/// Writes `prefix:0`… `prefix:{n-1}`, with `EX ttl` if given, in one pipeline; the replies.
fn write(con: &mut Connection, prefix: &str, n: usize, ttl: Option<u64>) -> Vec<RedisResult<()>> {
    (0..n)
        .map(|i| {
            let mut cmd = redis::cmd("SET");
            cmd.arg(format!("{prefix}:{i}")).arg(vec![b'v'; VALUE]);
            if let Some(ttl) = ttl {
                cmd.arg("EX").arg(ttl);
            }
            cmd.query(con)
        })
        .collect()
}

fn present(con: &mut Connection, prefix: &str, n: usize) -> usize {
    (0..n)
        .filter(|i| {
            con.exists::<_, bool>(format!("{prefix}:{i}"))
                .expect("EXISTS")
        })
        .count()
}

#[test]
fn noeviction_refuses_writes_with_oom_and_serves_everything_else() {
    let server = server(Policy::NoEviction);
    let mut con = server.client();
    let replies = write(&mut con, "k", 400, None);
    let written = replies.iter().take_while(|r| r.is_ok()).count();
    assert!(
        (150..300).contains(&written),
        "{written} keys fit in 232 KiB"
    );
    let refused = replies[written].as_ref().expect_err("the first refusal");
    assert_eq!(refused.code(), Some("OOM"));
    assert_eq!(
        refused.detail(),
        Some("command not allowed when used memory > 'maxmemory'.")
    );
    assert!(
        replies[written..].iter().all(|r| r.is_err()),
        "nothing after the first refusal fit"
    );
    let text = info(&mut con);
    assert!(info_number(&text, "used_memory_dataset") > MAXMEMORY - 2 * VALUE as u64);
    assert_eq!(info_number(&text, "maxmemory"), MAXMEMORY);
    assert_eq!(info_field(&text, "maxmemory_policy"), "noeviction");
    assert_eq!(info_number(&text, "evicted_keys"), 0);
    // Reads, deletes and sessions' non-growing commands still work; creating a session does not.
    let value: Vec<u8> = con.get("k:0").expect("GET");
    assert_eq!(value.len(), VALUE);
    let session: RedisResult<Value> = redis::cmd("SESSION.CREATE").query(&mut con);
    assert_eq!(session.expect_err("OOM").code(), Some("OOM"));
    let deleted: usize = con.del(&["k:0", "k:1", "k:2"]).expect("DEL");
    assert_eq!(deleted, 3);
    assert!(
        write(&mut con, "again", 1, None)[0].is_ok(),
        "room made by DEL is usable"
    );
    assert_eq!(
        present(&mut con, "k", 400),
        written - 3,
        "nothing was evicted"
    );
}

#[test]
fn allkeys_lru_evicts_the_least_recently_used_keys() {
    let server = server(Policy::AllKeysLru);
    let mut con = server.client();
    assert!(write(&mut con, "old", 180, None).iter().all(|r| r.is_ok()));
    server.advance(10_000);
    assert!(write(&mut con, "hot", 10, None).iter().all(|r| r.is_ok()));
    server.advance(10_000);
    for i in 0..10 {
        let _: Vec<u8> = con.get(format!("hot:{i}")).expect("GET");
    }
    server.advance(10_000);
    assert!(
        write(&mut con, "new", 50, None).iter().all(|r| r.is_ok()),
        "LRU never refuses"
    );
    let text = info(&mut con);
    let evicted = info_number(&text, "evicted_keys");
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut con).expect("DBSIZE");
    assert_eq!(dbsize + evicted, 240);
    assert!(evicted >= 15, "{evicted} evicted");
    // Room is made before a write, so the last write may overshoot by its own size.
    assert!(info_number(&text, "used_memory_dataset") <= MAXMEMORY + 2 * VALUE as u64);
    assert_eq!(present(&mut con, "hot", 10), 10, "recently read keys stay");
    assert_eq!(present(&mut con, "new", 50), 50, "just-written keys stay");
    assert_eq!(present(&mut con, "old", 180) as u64, 180 - evicted);
}

#[test]
fn volatile_lru_evicts_only_keys_with_a_deadline_then_refuses() {
    let server = server(Policy::VolatileLru);
    let mut con = server.client();
    assert!(write(&mut con, "p", 150, None).iter().all(|r| r.is_ok()));
    assert!(write(&mut con, "v", 100, Some(3600))
        .iter()
        .all(|r| r.is_ok()));
    assert_eq!(
        present(&mut con, "p", 150),
        150,
        "persistent keys are never evicted"
    );
    let evicted = info_number(&info(&mut con), "evicted_keys");
    assert!(evicted >= 20, "{evicted}");
    assert_eq!(present(&mut con, "v", 100) as u64, 100 - evicted);
    // More persistent keys take the room of the remaining volatile ones, then are refused.
    let replies = write(&mut con, "q", 150, None);
    let written = replies.iter().take_while(|r| r.is_ok()).count();
    assert!(written < 150);
    assert_eq!(
        replies[written].as_ref().expect_err("OOM").code(),
        Some("OOM")
    );
    assert_eq!(
        present(&mut con, "v", 100),
        0,
        "every volatile key went first"
    );
    assert_eq!(present(&mut con, "p", 150), 150);
    assert_eq!(present(&mut con, "q", 150), written);
}

#[test]
fn volatile_ttl_evicts_the_nearest_deadlines_first() {
    let server = server(Policy::VolatileTtl);
    let mut con = server.client();
    assert!(write(&mut con, "short", 150, Some(100))
        .iter()
        .all(|r| r.is_ok()));
    assert!(write(&mut con, "long", 40, Some(10_000))
        .iter()
        .all(|r| r.is_ok()));
    assert!(write(&mut con, "new", 50, Some(5_000))
        .iter()
        .all(|r| r.is_ok()));
    let evicted = info_number(&info(&mut con), "evicted_keys");
    assert!(evicted >= 15, "{evicted}");
    assert_eq!(present(&mut con, "long", 40), 40);
    assert_eq!(present(&mut con, "new", 50), 50);
    assert_eq!(present(&mut con, "short", 150) as u64, 150 - evicted);
    assert_eq!(
        info_field(&info(&mut con), "maxmemory_policy"),
        "volatile-ttl"
    );
}

#[test]
fn evicted_sessions_leave_their_users_list() {
    let server = server(Policy::VolatileTtl);
    let mut con = server.client();
    // 500 sessions of ada whose deadlines (idle 1000 s) are nearer than the keys' written next:
    // the room the keys need is taken from the sessions.
    let mut pipe = redis::pipe();
    for _ in 0..500 {
        pipe.cmd("SESSION.CREATE")
            .arg("USER")
            .arg("ada")
            .arg("IDLE")
            .arg(1_000_000);
    }
    let _: Vec<String> = pipe.query(&mut con).expect("SESSION.CREATE");
    assert!(write(&mut con, "k", 120, Some(3600))
        .iter()
        .all(|r| r.is_ok()));
    let text = info(&mut con);
    let evicted = info_number(&text, "evicted_keys");
    assert!(evicted >= 30, "{evicted}");
    assert_eq!(present(&mut con, "k", 120), 120);
    let listed: Vec<String> = redis::cmd("SESSION.LIST")
        .arg("ada")
        .query(&mut con)
        .unwrap();
    let count: u64 = redis::cmd("SESSION.COUNT")
        .arg("ada")
        .query(&mut con)
        .unwrap();
    assert_eq!(listed.len() as u64, 500 - evicted);
    assert_eq!(count, 500 - evicted);
    let sessions: String = redis::cmd("INFO").arg("sessions").query(&mut con).unwrap();
    assert_eq!(info_number(&sessions, "sessions"), 500 - evicted);
    for id in listed.iter().take(20) {
        let exists: bool = con.exists(id).unwrap();
        assert!(exists, "a listed session exists");
    }
}

#[test]
fn used_memory_returns_to_zero_when_every_kind_of_key_is_gone() {
    let server = TestServer::with_manual_clock();
    let mut con = server.client();
    let used = |con: &mut Connection| info_number(&info(con), "used_memory_dataset");
    assert_eq!(used(&mut con), 0);
    let _: () = con.set("s", "value").unwrap();
    let _: () = con.append("s", "more").unwrap();
    let _: () = con.set_ex("t", "v", 1).unwrap();
    let _: () = con.hset_multiple("h", &[("a", "1"), ("b", "2")]).unwrap();
    let _: () = con.hdel("h", "a").unwrap();
    let _: i64 = con.hincr("h", "n", 5).unwrap();
    let id: String = redis::cmd("SESSION.CREATE")
        .arg("USER")
        .arg("ada")
        .arg("DATA")
        .arg("cart")
        .arg("[]")
        .query(&mut con)
        .unwrap();
    let _: i64 = redis::cmd("SESSION.SET")
        .arg(&id)
        .arg("x")
        .arg("y")
        .query(&mut con)
        .unwrap();
    let id: String = redis::cmd("SESSION.REGENERATE")
        .arg(&id)
        .query(&mut con)
        .unwrap();
    let _: i64 = redis::cmd("SESSION.UNSET")
        .arg(&id)
        .arg("cart")
        .query(&mut con)
        .unwrap();
    let _: String = redis::cmd("SESSION.CREATE")
        .arg("IDLE")
        .arg(500)
        .query(&mut con)
        .unwrap();
    let with_everything = used(&mut con);
    // Five keys, each at least its fixed overhead.
    let overhead = sessiond::store::KEY_OVERHEAD;
    assert!(with_everything > 5 * overhead, "{with_everything}");
    // Expiry (t and the 500 ms session), deletion and HDEL of the last fields reclaim it all.
    server.advance(2_000);
    let _: () = con.del(&["s", &id]).unwrap();
    let _: () = con.hdel("h", &["b", "n"]).unwrap();
    assert_eq!(redis::cmd("DBSIZE").query::<u64>(&mut con).unwrap(), 0);
    assert_eq!(used(&mut con), 0);
    let _: () = con.set("a", "1").unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    assert_eq!(used(&mut con), 0);
}
