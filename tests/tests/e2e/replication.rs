//! Replication between in-process servers: a full synchronization of every data type, the
//! live stream (deletions, flushes, SWAPDB, expiry, transactions, scripts), a partial
//! resynchronization after a killed link, WAIT, READONLY, a replica of a replica, promotion
//! with REPLICAOF NO ONE and a former sibling following it by partial resync (PSYNC2), the
//! link's authentication and TLS, and the commands' replies and errors in RESP2 and RESP3.
//!
//! Nothing sleeps: a test waits for the replicas with WAIT on the primary (which returns once
//! they acknowledged everything written before it), or polls INFO for a state.

use std::time::{Duration, Instant};

use redis::{Commands, Connection, Value};
use sessiond::store::{Keyspaces, Record};
use sessiond::Config;
use sessiond_tests::redis_calls::error_of;
use sessiond_tests::{info_field, info_number, TestServer};

/// `REPLICAOF` the server `primary`, from `replica`.
fn follow(replica: &TestServer, primary: &TestServer) {
    let mut con = replica.client();
    let reply: String = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.addr.port())
        .query(&mut con)
        .expect("REPLICAOF");
    assert_eq!(reply, "OK");
}

/// `replica` follows `primary`, which then writes `k`, and has it (the link up before the
/// write: it travels in the stream, at an offset past 0).
fn follow_with_a_key(replica: &TestServer, primary: &TestServer) {
    follow(replica, primary);
    wait_for(primary, 1);
    let _: () = primary.client().set("k", "v").expect("reply");
    wait_for(primary, 1);
}

/// `WAIT replicas 0` on `primary`: returns once that many replicas acknowledged every write
/// made before it.
fn wait_for(primary: &TestServer, replicas: i64) {
    let mut con = primary.client();
    let acked: i64 = redis::cmd("WAIT")
        .arg(replicas)
        .arg(0)
        .query(&mut con)
        .expect("WAIT");
    assert_eq!(acked, replicas);
}

/// Polls `server`'s INFO replication until `ready` holds for it (a state, not a time: the
/// bound on the attempts only keeps a broken build from hanging). A pause between polls
/// leaves the core to the servers.
fn until(server: &TestServer, ready: impl Fn(&str) -> bool) -> String {
    const ATTEMPTS: u32 = 6000;
    for _ in 0..ATTEMPTS {
        let info = server.info("replication");
        if ready(&info) {
            return info;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let info = server.info("replication");
    assert!(ready(&info), "never reached:\n{info}");
    info
}

/// Every key of every database, each record normalised: fields and members sorted, a
/// session's last access rounded up to the second (as the stream carries it).
fn keyspace(server: &TestServer) -> Vec<(usize, Record)> {
    let dbs = &server.shared.dbs;
    let mut all = Vec::new();
    for db in 0..dbs.count() {
        let store = dbs.keyspace(db);
        for shard in 0..store.shard_count() {
            for record in store.snapshot_shard(shard) {
                all.push((db, normalised(record)));
            }
        }
    }
    all.sort_by(|a, b| (a.0, a.1.key()).cmp(&(b.0, b.1.key())));
    all
}

fn normalised(record: Record) -> Record {
    match record {
        Record::Hash {
            key,
            mut fields,
            expires_at_ms,
        } => {
            fields.sort();
            Record::Hash {
                key,
                fields,
                expires_at_ms,
            }
        }
        Record::Set {
            key,
            mut members,
            expires_at_ms,
        } => {
            members.sort();
            Record::Set {
                key,
                members,
                expires_at_ms,
            }
        }
        Record::Session {
            id,
            user,
            mut fields,
            created_ms,
            last_access_ms,
            idle_ms,
            absolute_ms,
            version,
        } => {
            fields.sort();
            Record::Session {
                id,
                user,
                fields,
                created_ms,
                last_access_ms: last_access_ms.div_ceil(1000) * 1000,
                idle_ms,
                absolute_ms,
                version,
            }
        }
        other => other,
    }
}

/// Asserts that `replica` holds what `primary` holds, once it acknowledged everything.
fn assert_same(primary: &TestServer, replica: &TestServer) {
    assert_eq!(keyspace(replica), keyspace(primary));
}

/// Fills `con`'s server with every kind of data, in several databases; the session IDs.
fn fill(con: &mut Connection) -> Vec<String> {
    let _: () = con.set("string", "value").expect("reply");
    let _: () = con.set_ex("volatile", "soon", 1000).expect("reply");
    let _: () = con
        .hset_multiple("hash", &[("a", "1"), ("b", "2")])
        .expect("reply");
    let _: () = con.sadd("set", &["x", "y", "z"]).expect("reply");
    let mut ids = Vec::new();
    for user in ["alice", "alice", "bob"] {
        let id: String = redis::cmd("SESSION.CREATE")
            .arg(&["USER", user, "IDLE", "600000", "DATA", "cart", "3"])
            .query(con)
            .expect("reply");
        ids.push(id);
    }
    let _: Value = redis::cmd("SESSION.SET")
        .arg(&ids[0])
        .arg(&["theme", "dark"])
        .query(con)
        .expect("reply");
    let _: () = redis::cmd("SELECT").arg(3).query(con).expect("reply");
    let _: () = con.set("in-three", "3").expect("reply");
    let _: () = redis::cmd("SELECT").arg(0).query(con).expect("reply");
    ids
}

#[test]
fn a_full_sync_copies_every_type_then_the_stream_follows() {
    let primary = TestServer::start();
    let replica = TestServer::start();
    let mut p = primary.client();
    let ids = fill(&mut p);
    follow(&replica, &primary);
    wait_for(&primary, 1);
    assert_same(&primary, &replica);
    let mut r = replica.client();
    // The per-user index came along with the sessions.
    let listed: Vec<String> = redis::cmd("SESSION.LIST")
        .arg("alice")
        .query(&mut r)
        .expect("reply");
    assert_eq!(listed.len(), 2);
    let info: Value = redis::cmd("SESSION.INFO")
        .arg(&ids[0])
        .query(&mut r)
        .expect("reply");
    assert!(format!("{info:?}").contains("version"), "{info:?}");
    assert_eq!(info_number(&primary.info("stats"), "sync_full"), 1);

    // Live changes: writes, deletions, a transaction, a script, sessions, SWAPDB, flushes.
    let _: () = p.set("string", "changed").expect("reply");
    let _: () = p.del("hash").expect("reply");
    let _: () = p.srem("set", "y").expect("reply");
    let _: () = p.hset("hash2", "f", "v").expect("reply");
    let _: () = redis::pipe()
        .atomic()
        .set("in-exec", "1")
        .incr("counter", 5)
        .query(&mut p)
        .expect("reply");
    let _: Value = redis::cmd("EVAL")
        .arg("redis.call('SET', KEYS[1], 'from-lua'); return redis.call('INCR', KEYS[2])")
        .arg(2)
        .arg("scripted")
        .arg("counter")
        .query(&mut p)
        .expect("reply");
    let _: Value = redis::cmd("SESSION.SET")
        .arg(&ids[1])
        .arg(&["IFVERSION", "1", "cart", "4"])
        .query(&mut p)
        .expect("reply");
    let _: Value = redis::cmd("SESSION.DESTROY")
        .arg(&ids[2])
        .query(&mut p)
        .expect("reply");
    let _: String = redis::cmd("SESSION.REGENERATE")
        .arg(&ids[0])
        .query(&mut p)
        .expect("reply");
    wait_for(&primary, 1);
    assert_same(&primary, &replica);
    let listed: Vec<String> = redis::cmd("SESSION.LIST")
        .arg("bob")
        .query(&mut r)
        .expect("reply");
    assert!(listed.is_empty());

    let _: () = redis::cmd("SWAPDB")
        .arg(0)
        .arg(3)
        .query(&mut p)
        .expect("reply");
    wait_for(&primary, 1);
    assert_same(&primary, &replica);
    let moved: Option<String> = r.get("in-three").expect("reply");
    assert_eq!(moved.as_deref(), Some("3"));

    let _: () = redis::cmd("FLUSHDB").query(&mut p).expect("reply");
    wait_for(&primary, 1);
    assert_same(&primary, &replica);
    let _: () = redis::cmd("FLUSHALL").query(&mut p).expect("reply");
    wait_for(&primary, 1);
    assert_same(&primary, &replica);
    assert!(keyspace(&replica).is_empty());
}

/// A primary and a replica, each on its own manual clock (both at the same start).
fn on_own_clocks() -> (TestServer, TestServer) {
    let primary = TestServer::with_manual_clock();
    let replica = TestServer::with_manual_clock();
    follow(&replica, &primary);
    (primary, replica)
}

#[test]
fn the_replica_deletes_an_expired_key_when_the_primary_says_so() {
    let (primary, replica) = on_own_clocks();
    let mut p = primary.client();
    let _: () = p.pset_ex("short", "v", 1000).expect("reply");
    let _: () = p.set("stays", "v").expect("reply");
    wait_for(&primary, 1);
    assert_eq!(replica.stored_keys(), 2);
    // The replica's clock passes the deadline first: reads hide the key, but it stays stored,
    // as the replica runs no expiry of its own.
    replica.clock.as_ref().expect("manual clock").advance(2000);
    let mut r = replica.client();
    assert!(!r.exists::<_, bool>("short").expect("reply"));
    let _: () = p.set("later", "v").expect("reply");
    wait_for(&primary, 1);
    assert_eq!(replica.stored_keys(), 3);
    // The primary's expiry reaches it as a deletion.
    primary.advance(2000);
    wait_for(&primary, 1);
    assert_eq!(replica.stored_keys(), 2);
    assert!(!r.exists::<_, bool>("short").expect("reply"));
    assert_same(&primary, &replica);
}

#[test]
fn a_change_the_replica_applies_after_its_own_deadline_keeps_the_key() {
    let (primary, replica) = on_own_clocks();
    let mut p = primary.client();
    let _: () = p
        .hset_multiple("h", &[("f1", "a"), ("f2", "b")])
        .expect("reply");
    let _: () = p.pexpire("h", 1000).expect("reply");
    let _: () = p.pset_ex("k", "v", 1000).expect("reply");
    wait_for(&primary, 1);
    // The replica's clock runs ahead, past both deadlines, before the changes that keep the
    // keys alive on the primary arrive.
    replica.clock.as_ref().expect("manual clock").advance(5000);
    let _: () = p.hset("h", "f3", "x").expect("reply");
    let _: () = p.persist("h").expect("reply");
    let _: () = p.expire("k", 3600).expect("reply");
    wait_for(&primary, 1);
    let mut r = replica.client();
    let fields: std::collections::BTreeMap<String, String> = r.hgetall("h").expect("reply");
    assert_eq!(fields.len(), 3, "{fields:?}");
    assert_eq!(r.ttl::<_, i64>("h").expect("reply"), -1);
    let ttl: i64 = r.ttl("k").expect("reply");
    assert!(ttl > 3000, "{ttl}");
    assert_same(&primary, &replica);
}

/// A writable replica's clients' keys are its own: its primary never expires them, so the
/// replica does (Redis's `expireSlaveKeys`), while the primary's keys, hidden from reads past
/// their deadline, still wait for the primary's word.
#[test]
fn a_writable_replica_expires_its_own_keys_but_not_its_primary_s() {
    let (primary, replica) = on_own_clocks();
    let mut p = primary.client();
    let _: () = p.pset_ex("primary", "v", 1000).expect("reply");
    wait_for(&primary, 1);
    let mut r = replica.client();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "replica-read-only", "no"])
        .query(&mut r)
        .expect("CONFIG SET");
    for i in 0..100 {
        let _: () = r.pset_ex(format!("local:{i}"), "v", 500).expect("reply");
    }
    let _: () = r.pset_ex("local:persisted", "v", 500).expect("reply");
    let _: bool = r.persist("local:persisted").expect("reply");
    // Given a deadline here, then written by the primary: the primary's key now.
    let _: () = r.pset_ex("rewritten", "mine", 500).expect("reply");
    let _: () = p
        .pset_ex("rewritten", "the primary's", 1000)
        .expect("reply");
    wait_for(&primary, 1);
    assert_eq!(replica.stored_keys(), 1 + 100 + 1 + 1);

    replica.advance_clock(2000);
    let mut stored = replica.stored_keys();
    for _ in 0..6000 {
        if stored == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        stored = replica.stored_keys();
    }
    assert_eq!(
        stored, 3,
        "the replica's own expired keys deleted, the rest kept"
    );
    assert_eq!(info_number(&replica.info("stats"), "expired_keys"), 100);
    assert!(!r.exists::<_, bool>("primary").expect("reply"));
    assert!(r.exists::<_, bool>("local:persisted").expect("reply"));

    // The primary's expiry reaches it as deletions.
    primary.advance_clock(2000);
    let _: () = p.set("later", "v").expect("reply");
    wait_for(&primary, 1);
    let mut keys: Vec<String> = r.keys("*").expect("reply");
    keys.sort();
    assert_eq!(keys, ["later", "local:persisted"]);
    assert_eq!(replica.stored_keys(), 2);
}

/// A replica counts what its primary sends as changes its snapshots must cover, as Redis's
/// do: its periodic save then writes them (else a replica promoted after a crash would come
/// back empty from its files).
#[test]
fn a_replica_counts_its_primary_s_writes_as_changes_to_save() {
    let primary = TestServer::start();
    let replica = TestServer::start();
    let changes = |server: &TestServer| {
        info_number(&server.info("persistence"), "rdb_changes_since_last_save")
    };
    let mut p = primary.client();
    let _: () = p.set("before", "v").expect("reply");
    follow(&replica, &primary);
    wait_for(&primary, 1);
    // The full sync's keyspace: in no snapshot of the replica's yet.
    let loaded = changes(&replica);
    assert!(loaded >= 1, "{loaded}");
    for i in 0..10 {
        let _: () = p.set(format!("k{i}"), "v").expect("reply");
    }
    let _: () = p.del("before").expect("reply");
    wait_for(&primary, 1);
    assert_eq!(changes(&replica), loaded + 11);
}

#[test]
fn a_killed_link_resumes_with_a_partial_resync() {
    let primary = TestServer::start();
    let replica = TestServer::start();
    follow(&replica, &primary);
    let mut p = primary.client();
    let _: () = p.set("before", "1").expect("reply");
    wait_for(&primary, 1);
    // The link is a `replica` client, listed as one; `master` is the link to one's own
    // primary, which a primary has none of.
    let listed = |p: &mut redis::Connection, kind: &str| -> String {
        redis::cmd("CLIENT")
            .arg(&["LIST", "TYPE", kind])
            .query(p)
            .expect("CLIENT LIST")
    };
    let replicas = listed(&mut p, "replica");
    assert_eq!(replicas.lines().count(), 1, "{replicas}");
    assert!(replicas.contains("flags=S"), "{replicas}");
    assert!(!listed(&mut p, "normal").contains("flags=S"));
    assert_eq!(listed(&mut p, "master"), "");
    let killed: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "master"])
        .query(&mut p)
        .expect("reply");
    assert_eq!(killed, 0);
    let killed: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "replica"])
        .query(&mut p)
        .expect("reply");
    assert_eq!(killed, 1);
    // CLIENT KILL closes the link asynchronously: the write must come once it is closed, or
    // it could travel on the old link.
    until(&primary, |info| info_number(info, "connected_slaves") == 0);
    let before = info_number(&primary.info("replication"), "master_repl_offset");
    let _: () = p.set("meanwhile", "2").expect("reply");
    let after = info_number(&primary.info("replication"), "master_repl_offset");
    assert!(after > before, "{before} {after}");
    wait_for(&primary, 1);
    assert_same(&primary, &replica);
    let stats = primary.info("stats");
    assert_eq!(info_number(&stats, "sync_full"), 1, "{stats}");
    assert_eq!(info_number(&stats, "sync_partial_ok"), 1, "{stats}");
    assert_eq!(info_number(&stats, "sync_partial_err"), 0, "{stats}");
}

#[test]
fn wait_counts_the_replicas_that_acknowledged() {
    let primary = TestServer::start();
    let mut p = primary.client();
    // No replica: at once, whatever the timeout.
    let none: i64 = redis::cmd("WAIT")
        .arg(0)
        .arg(0)
        .query(&mut p)
        .expect("reply");
    assert_eq!(none, 0);
    let replica = TestServer::start();
    follow(&replica, &primary);
    let _: () = p.set("k", "v").expect("reply");
    wait_for(&primary, 1);
    // More than there are: the count once the timeout passes.
    for resp3 in [false, true] {
        let mut con = primary.connect(resp3);
        let acked: i64 = redis::cmd("WAIT")
            .arg(2)
            .arg(50)
            .query(&mut con)
            .expect("reply");
        assert_eq!(acked, 1);
    }
    // Inside a transaction it does not block.
    let (acked,): (i64,) = redis::pipe()
        .atomic()
        .cmd("WAIT")
        .arg(5)
        .arg(0)
        .query(&mut p)
        .expect("reply");
    assert_eq!(acked, 1);
    for resp3 in [false, true] {
        let mut con = primary.connect(resp3);
        assert_eq!(
            error_of(&mut con, "WAIT", &["1", "-1"]),
            "ERR timeout is negative"
        );
        assert_eq!(
            error_of(&mut con, "WAIT", &["x", "0"]),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            error_of(&mut con, "WAIT", &["1"]),
            "ERR wrong number of arguments for 'wait' command"
        );
    }
    let mut r = replica.client();
    assert!(error_of(&mut r, "WAIT", &["1", "0"])
        .starts_with("ERR WAIT cannot be used with replica instances."));
}

#[test]
fn a_replica_refuses_writes_but_reads() {
    let primary = TestServer::start();
    let replica = TestServer::start();
    let mut p = primary.client();
    let _: () = p.set("k", "v").expect("reply");
    follow(&replica, &primary);
    wait_for(&primary, 1);
    for resp3 in [false, true] {
        let mut r = replica.connect(resp3);
        let value: String = r.get("k").expect("reply");
        assert_eq!(value, "v");
        let readonly = "READONLY You can't write against a read only replica.";
        assert_eq!(error_of(&mut r, "SET", &["k", "x"]), readonly);
        assert_eq!(error_of(&mut r, "DEL", &["k"]), readonly);
        assert_eq!(error_of(&mut r, "SESSION.CREATE", &[]), readonly);
        // A script may read on a replica, never write.
        let read: String = redis::cmd("EVAL")
            .arg("return redis.call('GET', KEYS[1])")
            .arg(1)
            .arg("k")
            .query(&mut r)
            .expect("reply");
        assert_eq!(read, "v");
        let error = error_of(
            &mut r,
            "EVAL",
            &["return redis.call('SET', KEYS[1], 'x')", "1", "k"],
        );
        assert!(error.starts_with("READONLY"), "{error}");
        // A transaction with a write is refused at EXEC.
        let exec: redis::RedisResult<Value> = redis::pipe().atomic().set("k", "y").query(&mut r);
        let error = exec.unwrap_err().to_string();
        assert!(error.contains("read only replica"), "{error}");
    }
    let value: String = p.get("k").expect("reply");
    assert_eq!(value, "v");
    // CONFIG SET replica-read-only no: writes run, and stay local.
    let mut r = replica.client();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "replica-read-only", "no"])
        .query(&mut r)
        .expect("reply");
    let _: () = r.set("local", "1").expect("reply");
    let _: () = p.set("k", "w").expect("reply");
    wait_for(&primary, 1);
    let value: String = r.get("k").expect("reply");
    assert_eq!(value, "w");
    assert!(!p.exists::<_, bool>("local").expect("reply"));
}

#[test]
fn a_transaction_queued_before_a_demotion_is_refused_at_exec() {
    let primary = TestServer::start();
    let node = TestServer::start();
    for resp3 in [false, true] {
        let mut con = node.connect(resp3);
        let _: () = redis::cmd("MULTI").query(&mut con).expect("reply");
        let queued: String = redis::cmd("SET")
            .arg(&["k", "v"])
            .query(&mut con)
            .expect("reply");
        assert_eq!(queued, "QUEUED");
        follow(&node, &primary);
        until(&node, |info| info.contains("master_link_status:up"));
        // As Redis: the queued write is not run on what is now a read-only replica.
        assert_eq!(
            error_of(&mut con, "EXEC", &[]),
            "EXECABORT Transaction discarded because of: READONLY You can't write against a \
             read only replica."
        );
        // The transaction is over.
        assert_eq!(error_of(&mut con, "EXEC", &[]), "ERR EXEC without MULTI");
        let _: () = redis::cmd("REPLICAOF")
            .arg(&["NO", "ONE"])
            .query(&mut con)
            .expect("reply");
    }
    // Nothing of its own entered the stream it passes on: its offset is its primary's.
    follow(&node, &primary);
    let mut p = primary.client();
    let _: () = p.set("after", "1").expect("reply");
    wait_for(&primary, 1);
    let offset = info_number(&primary.info("replication"), "master_repl_offset");
    let info = until(&node, |info| {
        info_number(info, "master_repl_offset") == offset
    });
    assert_eq!(info_number(&info, "slave_repl_offset"), offset);
    assert!(!node.client().exists::<_, bool>("k").expect("reply"));
}

#[test]
fn role_and_info_say_what_redis_says() {
    let primary = TestServer::start();
    let replica = TestServer::start();
    follow_with_a_key(&replica, &primary);
    let info = primary.info("replication");
    assert_eq!(info_field(&info, "role"), "master");
    assert_eq!(info_number(&info, "connected_slaves"), 1);
    let offset = info_number(&info, "master_repl_offset");
    assert!(offset > 0);
    let line = format!(
        "slave0:ip=127.0.0.1,port={},state=online,offset={offset},lag=",
        replica.addr.port()
    );
    assert!(info.contains(&line), "{info}");
    for field in [
        "master_failover_state:no-failover",
        "master_replid2:0000000000000000000000000000000000000000",
        "second_repl_offset:-1",
        "repl_backlog_active:1",
        "repl_backlog_size:1048576",
        "repl_backlog_first_byte_offset:",
        "repl_backlog_histlen:",
    ] {
        assert!(info.contains(field), "{field} in {info}");
    }
    let replid = info_field(&info, "master_replid");
    assert_eq!(replid.len(), 40);
    let rinfo = replica.info("replication");
    assert_eq!(info_field(&rinfo, "role"), "slave");
    assert_eq!(info_field(&rinfo, "master_host"), "127.0.0.1");
    assert_eq!(
        info_number(&rinfo, "master_port"),
        u64::from(primary.addr.port())
    );
    assert_eq!(info_field(&rinfo, "master_link_status"), "up");
    assert_eq!(info_number(&rinfo, "master_sync_in_progress"), 0);
    assert_eq!(info_number(&rinfo, "slave_repl_offset"), offset);
    assert_eq!(info_number(&rinfo, "slave_read_repl_offset"), offset);
    assert_eq!(info_number(&rinfo, "slave_priority"), 100);
    assert_eq!(info_number(&rinfo, "slave_read_only"), 1);
    assert_eq!(info_number(&rinfo, "replica_announced"), 1);
    assert_eq!(info_field(&rinfo, "master_replid"), replid);
    for resp3 in [false, true] {
        let mut con = primary.connect(resp3);
        let role: (String, i64, Vec<(String, String, String)>) =
            redis::cmd("ROLE").query(&mut con).expect("reply");
        assert_eq!(role.0, "master");
        assert_eq!(role.1, offset as i64);
        assert_eq!(
            role.2,
            vec![(
                "127.0.0.1".to_owned(),
                replica.addr.port().to_string(),
                offset.to_string()
            )]
        );
        let mut con = replica.connect(resp3);
        let role: (String, String, u16, String, i64) =
            redis::cmd("ROLE").query(&mut con).expect("reply");
        assert_eq!(
            role,
            (
                "slave".to_owned(),
                "127.0.0.1".to_owned(),
                primary.addr.port(),
                "connected".to_owned(),
                offset as i64
            )
        );
        assert_eq!(
            error_of(&mut con, "ROLE", &["x"]),
            "ERR wrong number of arguments for 'role' command"
        );
    }
    // Already following it: Redis's own OK.
    let mut r = replica.client();
    let again: String = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.addr.port())
        .query(&mut r)
        .expect("reply");
    assert_eq!(again, "OK Already connected to specified master");
    let priority: Vec<String> = redis::cmd("CONFIG")
        .arg(&["GET", "replicaof"])
        .query(&mut r)
        .expect("reply");
    assert_eq!(
        priority,
        [
            "replicaof".to_owned(),
            format!("127.0.0.1 {}", primary.addr.port())
        ]
    );
    // Following a primary that is not there: the link has read nothing of it, and both
    // offsets stay what was applied, as Redis's.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let gone_port = gone.local_addr().expect("address").port();
    drop(gone);
    replicate_from(&mut r, gone_port);
    let rinfo = until(&replica, |info| {
        info_number(info, "master_port") == u64::from(gone_port)
    });
    assert_eq!(info_field(&rinfo, "master_link_status"), "down");
    assert_eq!(info_number(&rinfo, "slave_repl_offset"), offset);
    assert_eq!(info_number(&rinfo, "slave_read_repl_offset"), offset);
}

/// Behind NAT or in a container, a replica tells its primary the address others reach it at
/// (`replica-announce-ip`, `replica-announce-port`): the primary's INFO and ROLE, where
/// Sentinel finds its replicas, list that one.
#[test]
fn a_replica_announces_the_address_it_is_given() {
    let primary = TestServer::start();
    let replica = TestServer::start();
    let mut r = replica.client();
    let set = |con: &mut Connection, name: &str, value: &str| -> redis::RedisResult<()> {
        redis::cmd("CONFIG").arg(&["SET", name, value]).query(con)
    };
    let get = |con: &mut Connection, name: &str| -> String {
        sessiond_tests::redis_calls::config_get(con, name)
    };
    assert_eq!(get(&mut r, "replica-announce-ip"), "");
    assert_eq!(get(&mut r, "replica-announce-port"), "0");
    set(&mut r, "replica-announce-ip", "203.0.113.7").expect("CONFIG SET");
    set(&mut r, "slave-announce-port", "6390").expect("CONFIG SET");
    assert_eq!(get(&mut r, "slave-announce-ip"), "203.0.113.7");
    assert_eq!(get(&mut r, "replica-announce-port"), "6390");
    assert!(set(&mut r, "replica-announce-ip", "203.0.113.7 x").is_err());
    assert!(set(&mut r, "replica-announce-port", "70000").is_err());

    follow(&replica, &primary);
    wait_for(&primary, 1);
    let info = primary.info("replication");
    assert!(
        info.contains("slave0:ip=203.0.113.7,port=6390,state=online"),
        "{info}"
    );
    let mut p = primary.client();
    let role: (String, i64, Vec<(String, String, String)>) =
        redis::cmd("ROLE").query(&mut p).expect("ROLE");
    assert_eq!(role.2[0].0, "203.0.113.7");
    assert_eq!(role.2[0].1, "6390");
}

#[test]
fn replication_commands_refuse_bad_arguments_in_redis_words() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        assert_eq!(
            error_of(&mut con, "REPLICAOF", &["127.0.0.1", "99999"]),
            "ERR Invalid master port"
        );
        assert_eq!(
            error_of(&mut con, "REPLICAOF", &["127.0.0.1", "port"]),
            "ERR Invalid master port"
        );
        assert_eq!(
            error_of(&mut con, "SLAVEOF", &["NO"]),
            "ERR wrong number of arguments for 'slaveof' command"
        );
        assert_eq!(
            error_of(&mut con, "REPLCONF", &["listening-port"]),
            "ERR syntax error"
        );
        assert_eq!(
            error_of(&mut con, "REPLCONF", &["bogus", "1"]),
            "ERR Unrecognized REPLCONF option: bogus"
        );
        assert_eq!(
            error_of(&mut con, "PSYNC", &["?"]),
            "ERR wrong number of arguments for 'psync' command"
        );
        let ok: String = redis::cmd("REPLCONF")
            .arg(&["listening-port", "7000", "capa", "psync2"])
            .query(&mut con)
            .expect("reply");
        assert_eq!(ok, "OK");
        // A primary promoted again is still a primary.
        let ok: String = redis::cmd("REPLICAOF")
            .arg(&["NO", "ONE"])
            .query(&mut con)
            .expect("reply");
        assert_eq!(ok, "OK");
        let role: (String, i64, Vec<Value>) = redis::cmd("ROLE").query(&mut con).expect("reply");
        assert_eq!(role.0, "master");
    }
}

#[test]
fn a_replica_of_a_replica_carries_the_primary_s_stream() {
    let primary = TestServer::start();
    let middle = TestServer::start();
    let leaf = TestServer::start();
    let mut p = primary.client();
    let ids = fill(&mut p);
    follow(&middle, &primary);
    wait_for(&primary, 1);
    follow(&leaf, &middle);
    until(&middle, |info| info.contains("state=online"));
    let _: () = p.set("later", "1").expect("reply");
    let _: Value = redis::cmd("SESSION.DESTROY")
        .arg(&ids[1])
        .query(&mut p)
        .expect("reply");
    wait_for(&primary, 1);
    let offset = info_number(&primary.info("replication"), "master_repl_offset");
    // Same offsets and ID all the way down.
    let info = until(&leaf, |info| {
        info_number(info, "slave_repl_offset") == offset
    });
    assert_eq!(
        info_field(&info, "master_replid"),
        info_field(&primary.info("replication"), "master_replid")
    );
    assert_same(&primary, &leaf);
}

#[test]
fn a_promoted_replica_is_followed_by_its_sibling_with_a_partial_resync() {
    let primary = TestServer::start();
    let a = TestServer::start();
    let b = TestServer::start();
    let mut p = primary.client();
    fill(&mut p);
    follow(&a, &primary);
    follow(&b, &primary);
    wait_for(&primary, 2);
    let old_id = info_field(&primary.info("replication"), "master_replid");
    drop(primary);
    let mut con = a.client();
    let ok: String = redis::cmd("REPLICAOF")
        .arg(&["NO", "ONE"])
        .query(&mut con)
        .expect("reply");
    assert_eq!(ok, "OK");
    let info = a.info("replication");
    assert_eq!(info_field(&info, "role"), "master");
    assert_eq!(info_field(&info, "master_replid2"), old_id);
    assert_ne!(info_field(&info, "master_replid"), old_id);
    let _: () = con.set("after-failover", "1").expect("reply");
    follow(&b, &a);
    wait_for(&a, 1);
    assert_same(&a, &b);
    let stats = a.info("stats");
    assert_eq!(info_number(&stats, "sync_partial_ok"), 1, "{stats}");
    assert_eq!(info_number(&stats, "sync_full"), 0, "{stats}");
    // B took A's new ID and keeps the old one as its second.
    let info = b.info("replication");
    assert_eq!(
        info_field(&info, "master_replid"),
        info_field(&a.info("replication"), "master_replid")
    );
    assert_eq!(info_field(&info, "master_replid2"), old_id);
}

#[test]
fn the_link_authenticates_with_masterauth() {
    let primary = TestServer::with_config(Config {
        requirepass: Some(sessiond::auth::Secret::new("s3cret".to_owned())),
        ..Config::default()
    });
    let replica = TestServer::with_config(Config {
        replication: sessiond::role::Settings {
            masterauth: Some(sessiond::auth::Secret::new("s3cret".to_owned())),
            ..Default::default()
        },
        ..Config::default()
    });
    follow(&replica, &primary);
    let info = until(&replica, |info| {
        info_field(info, "master_link_status") == "up"
    });
    assert_eq!(info_number(&info, "master_sync_in_progress"), 0);
    // A wrong password: the primary refuses it, the link stays down.
    let other = TestServer::with_config(Config {
        replication: sessiond::role::Settings {
            masterauth: Some(sessiond::auth::Secret::new("wrong".to_owned())),
            ..Default::default()
        },
        ..Config::default()
    });
    follow(&other, &primary);
    let client = redis::Client::open(format!("redis://:s3cret@{}/", primary.addr)).expect("reply");
    let mut admin = client.get_connection().expect("reply");
    let stats = |admin: &mut Connection| -> String {
        redis::cmd("INFO").arg("stats").query(admin).expect("reply")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while info_number(&stats(&mut admin), "acl_access_denied_auth") == 0 {
        assert!(
            Instant::now() < deadline,
            "the link never tried to authenticate"
        );
        std::thread::yield_now();
    }
    let info = other.info("replication");
    assert_eq!(info_field(&info, "master_link_status"), "down");
    assert!(info.contains("master_link_down_since_seconds:"), "{info}");
}

#[test]
fn a_replica_that_does_not_read_is_cut_off_at_its_output_limit() {
    let limits = sessiond::output_limit::OutputLimits {
        replica: sessiond::output_limit::ClassLimit {
            hard_bytes: 1 << 20,
            soft_bytes: 0,
            soft_seconds: 0,
        },
        ..Default::default()
    };
    let primary = TestServer::with_config(Config {
        output_limits: limits,
        ..Config::default()
    });
    // A replica that asks for the stream and never reads it.
    let mut stalled = primary.raw();
    stalled.command(&[b"PSYNC", b"?", b"-1"]);
    let reply = stalled.reply();
    assert!(format!("{reply:?}").contains("FULLRESYNC"), "{reply:?}");
    until(&primary, |info| info.contains("state=online"));
    let mut p = primary.client();
    let value = "x".repeat(100_000);
    let mut written = 0;
    while info_number(&primary.info("replication"), "connected_slaves") == 1 {
        let _: () = p.set(format!("k{written}"), &value).expect("SET");
        written += 1;
        assert!(written < 2_000, "never cut off");
    }
    let stats = primary.info("stats");
    assert_eq!(
        info_number(&stats, "client_output_buffer_limit_disconnections"),
        1,
        "{stats}"
    );
}

#[test]
fn a_replica_that_stops_reading_its_full_sync_is_cut_off_after_repl_timeout() {
    use std::io::Write;
    // Pings every half second, so that a timeout of one second may be set.
    let mut config = Config::default();
    config.replication.ping_period = Duration::from_millis(500);
    let primary = TestServer::with_config(config);
    let mut p = primary.client();
    // Redis's whole seconds, rounded up: not 0.
    let period: Vec<String> = redis::cmd("CONFIG")
        .arg(&["GET", "repl-ping-replica-period"])
        .query(&mut p)
        .expect("CONFIG GET");
    assert_eq!(period, ["repl-ping-replica-period", "1"]);
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "repl-timeout", "1"])
        .query(&mut p)
        .expect("CONFIG SET");
    // A snapshot far larger than the sockets' buffers.
    let value = "v".repeat(4096);
    for i in 0..4000 {
        let _: () = p.set(format!("k{i}"), &value).expect("SET");
    }
    // A replica that asks for a full sync and reads nothing of it, while the primary is idle
    // (its output buffer does not grow: the output limit never cuts it off).
    let mut stalled = std::net::TcpStream::connect(primary.addr).expect("connect");
    stalled.write_all(b"PSYNC ? -1\r\n").expect("PSYNC");
    until(&primary, |info| info_number(info, "connected_slaves") == 1);
    until(&primary, |info| info_number(info, "connected_slaves") == 0);
    // The persistence slot is free again: a save runs.
    let saved: redis::RedisResult<String> = redis::cmd("SAVE").query(&mut p);
    assert!(
        !matches!(&saved, Err(e) if e.is_timeout()),
        "SAVE waited: {saved:?}"
    );
    drop(stalled);
}

/// A replica loading what it was sent (from its file: the primary has sent everything) has no
/// offset to acknowledge yet: it sends an empty line a second, and the primary counts that as
/// a sign of life, as Redis's, rather than dropping it after `repl-timeout`.
#[test]
fn a_replica_that_sends_empty_lines_while_it_loads_keeps_its_link() {
    use std::io::{Read, Write};
    let mut config = Config::default();
    config.replication.ping_period = Duration::from_millis(500);
    let primary = TestServer::with_config(config);
    let mut p = primary.client();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "repl-timeout", "1"])
        .query(&mut p)
        .expect("CONFIG SET");
    let _: () = p.set("k", "v").expect("SET");
    let mut replica = std::net::TcpStream::connect(primary.addr).expect("connect");
    replica.write_all(b"PSYNC ? -1\r\n").expect("PSYNC");
    // Everything the primary sends is read (and dropped), as a loading replica reads ahead.
    let mut reader = replica.try_clone().expect("clone");
    let drain = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });
    until(&primary, |info| info_number(info, "connected_slaves") == 1);
    // Three times the timeout, a newline every quarter of a second: the link stays.
    for _ in 0..12 {
        replica.write_all(b"\n").expect("newline");
        std::thread::sleep(Duration::from_millis(250));
        let info = primary.info("replication");
        assert_eq!(info_number(&info, "connected_slaves"), 1, "{info}");
    }
    // Silent again: dropped after the timeout, as before.
    until(&primary, |info| info_number(info, "connected_slaves") == 0);
    drop(replica);
    drain.join().expect("drain");
}

#[test]
fn config_get_and_set_the_replication_settings() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let set = |con: &mut Connection, name: &str, value: &str| -> redis::RedisResult<()> {
            redis::cmd("CONFIG").arg(&["SET", name, value]).query(con)
        };
        let get = |con: &mut Connection, name: &str| -> String {
            sessiond_tests::redis_calls::config_get(con, name)
        };
        set(&mut con, "repl-backlog-size", "2mb").expect("CONFIG SET");
        assert_eq!(get(&mut con, "repl-backlog-size"), "2097152");
        assert_eq!(
            info_number(&server.info("replication"), "repl_backlog_size"),
            2 << 20
        );
        // Below Redis's least, raised to it, as Redis does.
        set(&mut con, "repl-backlog-size", "1kb").expect("CONFIG SET");
        assert_eq!(get(&mut con, "repl-backlog-size"), "16384");
        set(&mut con, "replica-priority", "7").expect("CONFIG SET");
        assert_eq!(get(&mut con, "slave-priority"), "7");
        set(&mut con, "repl-timeout", "30").expect("CONFIG SET");
        assert_eq!(get(&mut con, "repl-timeout"), "30");
        set(&mut con, "repl-ping-replica-period", "5").expect("CONFIG SET");
        assert_eq!(get(&mut con, "repl-ping-slave-period"), "5");
        set(&mut con, "repl-ping-slave-period", "10").expect("CONFIG SET");
        assert_eq!(get(&mut con, "repl-ping-replica-period"), "10");
        assert_eq!(
            set(&mut con, "repl-ping-replica-period", "30")
                .expect_err("not shorter than repl-timeout")
                .to_string(),
            "ResponseError: CONFIG SET failed (possibly related to argument \
             'repl-ping-replica-period') - argument must be shorter than repl-timeout (30s)"
        );
        set(&mut con, "repl-ping-replica-period", "1").expect("CONFIG SET");
        assert_eq!(get(&mut con, "replica-read-only"), "yes");
        assert_eq!(get(&mut con, "replicaof"), "");
        assert!(set(&mut con, "replica-read-only", "maybe").is_err());
        assert!(set(&mut con, "replicaof", "127.0.0.1 1").is_err());
    }
}

#[test]
fn the_link_runs_over_tls_with_tls_replication() {
    let pki = sessiond_tests::tls::TestPki::generate();
    let primary = TestServer::with_config(Config {
        tls: Some(pki.server_tls(sessiond::tls::ClientAuth::Required)),
        ..Config::default()
    });
    // The replica presents its tls-cert-file: here one made for client authentication.
    let tls = sessiond::tls::TlsConfig::load(
        0,
        sessiond::tls::TlsFiles {
            cert_file: pki.path("client.pem"),
            key_file: pki.path("client.key"),
            ca_cert_file: Some(pki.path("ca.pem")),
            auth_clients: sessiond::tls::ClientAuth::Required,
        },
    )
    .expect("the test PKI loads");
    let connector = tls.replication_connector().expect("TLS client of the link");
    let replica = TestServer::with_config(Config {
        tls: Some(tls),
        replication: sessiond::role::Settings {
            tls: Some(sessiond::role::TlsClient(connector)),
            ..Default::default()
        },
        ..Config::default()
    });
    let mut p = primary.client();
    let _: () = p.set("over-tls", "1").expect("SET");
    let mut r = replica.client();
    let reply: String = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.tls_addr().port())
        .query(&mut r)
        .expect("REPLICAOF");
    assert_eq!(reply, "OK");
    wait_for(&primary, 1);
    assert_same(&primary, &replica);
    let info = replica.info("replication");
    assert_eq!(info_field(&info, "master_link_status"), "up");
    assert_eq!(
        info_number(&info, "master_port"),
        u64::from(primary.tls_addr().port())
    );
}

#[test]
fn config_rewrite_writes_the_primary_followed_back() {
    let dir = std::env::temp_dir().join(format!("sessiond-repl-rewrite-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let file = dir.join("sessiond.toml");
    std::fs::write(&file, "# a replica\nport = 0\n").expect("config file");
    let primary = TestServer::start();
    let replica = TestServer::with_config(Config {
        config_file: Some(file.clone()),
        ..Config::default()
    });
    follow(&replica, &primary);
    let mut r = replica.client();
    let rewrite = |r: &mut Connection| -> String {
        let _: () = redis::cmd("CONFIG")
            .arg("REWRITE")
            .query(r)
            .expect("CONFIG REWRITE");
        std::fs::read_to_string(&file).expect("rewritten file")
    };
    let text = rewrite(&mut r);
    assert!(
        text.contains(&format!(
            "replicaof = \"127.0.0.1 {}\"",
            primary.addr.port()
        )),
        "{text}"
    );
    assert!(text.starts_with("# a replica\n"), "{text}");
    // The file reads back as the same setting.
    let raw = sessiond::RawConfig::from_file(&file).expect("the file reads back");
    let config = raw.validate().expect("valid");
    assert_eq!(
        config.replication.replicaof,
        Some(("127.0.0.1".to_owned(), primary.addr.port()))
    );
    let _: String = redis::cmd("REPLICAOF")
        .arg(&["NO", "ONE"])
        .query(&mut r)
        .expect("REPLICAOF NO ONE");
    let text = rewrite(&mut r);
    assert!(!text.contains("replicaof"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// REPLICAOF 127.0.0.1 `port` on `con`.
fn replicate_from(con: &mut Connection, port: u16) {
    let _: String = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(port)
        .query(con)
        .expect("REPLICAOF");
}

/// Answers a replica's PSYNC on `link` with `+FULLRESYNC` (an ID of 40 `a`s, offset 0) and
/// `snapshot`, the start of one.
fn full_resync(link: &mut std::net::TcpStream, snapshot: &[u8]) {
    use std::io::Write;
    let mut answer = b"+FULLRESYNC ".to_vec();
    answer.extend_from_slice(&[b'a'; 40]);
    answer.extend_from_slice(b" 0\r\n");
    answer.extend_from_slice(snapshot);
    link.write_all(&answer).expect("answer");
}

/// A snapshot's first bytes: the magic, the format version, then zeros.
fn snapshot_start() -> Vec<u8> {
    let mut start = b"SESSIOND".to_vec();
    start.extend_from_slice(&2u16.to_le_bytes());
    start.extend_from_slice(&[0; 10]);
    start
}

/// Plays a primary's side of the handshake on `primary`: accepts the replica, answers each
/// REPLCONF `+OK` (the replica waits for every reply), and returns the link once PSYNC came,
/// with everything the replica said.
fn handshake(primary: &std::net::TcpListener) -> (std::net::TcpStream, Vec<u8>) {
    use std::io::{Read, Write};
    let (mut link, _) = primary.accept().expect("the replica connects");
    link.set_read_timeout(Some(sessiond_tests::IO_TIMEOUT))
        .expect("timeout");
    let mut heard = Vec::new();
    let mut answered = 0;
    while !String::from_utf8_lossy(&heard).contains("PSYNC") {
        let mut chunk = [0u8; 1024];
        let n = link.read(&mut chunk).expect("the handshake");
        assert!(n > 0, "the replica hung up");
        heard.extend_from_slice(&chunk[..n]);
        let asked = String::from_utf8_lossy(&heard).matches("REPLCONF").count();
        while answered < asked {
            link.write_all(b"+OK\r\n").expect("answer");
            answered += 1;
        }
    }
    (link, heard)
}

#[test]
fn clients_get_loading_while_a_replica_loads_its_primary_s_snapshot() {
    // A primary that answers the handshake, sends the start of a snapshot and holds.
    let primary = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = primary.local_addr().expect("address").port();
    let replica = TestServer::start();
    let mut r = replica.client();
    let _: () = r.set("old", "data").expect("SET");
    replicate_from(&mut r, port);
    let (mut link, heard) = handshake(&primary);
    let said = String::from_utf8_lossy(&heard);
    assert!(said.contains("listening-port"), "{said}");
    assert!(said.contains("psync2"), "{said}");
    assert!(said.contains("PSYNC\r\n$1\r\n?\r\n$2\r\n-1"), "{said}");
    full_resync(&mut link, &snapshot_start());
    let info = until(&replica, |info| {
        info_number(info, "master_sync_in_progress") == 1
    });
    assert_eq!(info_field(&info, "master_link_status"), "down");
    // Once the loader empties the keyspace.
    poll_loading(&mut replica.client(), true, &["GET", "old"]).expect_err("LOADING");
    // INFO says so, in Redis's fields of a load and of a transfer (health checks read
    // `loading` and `master_sync_left_bytes`); the snapshot's size is not known ahead.
    let sent = snapshot_start().len().to_string();
    let mut info = String::new();
    for _ in 0..6000 {
        info = replica.info("persistence") + &replica.info("replication");
        if info_field(&info, "loading_loaded_bytes") == sent {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(info_field(&info, "loading"), "1", "{info}");
    assert_eq!(info_field(&info, "loading_loaded_bytes"), sent, "{info}");
    assert_eq!(info_field(&info, "loading_total_bytes"), "0");
    assert!(
        info_number(&info, "loading_start_time") > 1_600_000_000,
        "{info}"
    );
    assert_eq!(info_field(&info, "master_sync_read_bytes"), sent);
    assert_eq!(info_field(&info, "master_sync_total_bytes"), "-1");
    assert_eq!(info_field(&info, "master_sync_left_bytes"), "-1");
    assert_eq!(info_field(&info, "master_sync_perc"), "0.00");
    for resp3 in [false, true] {
        let mut con = replica.connect(resp3);
        assert_eq!(
            error_of(&mut con, "GET", &["old"]),
            "LOADING Redis is loading the dataset in memory"
        );
        let role: (String, String, u16, String, i64) =
            redis::cmd("ROLE").query(&mut con).expect("ROLE");
        assert_eq!(role.3, "sync");
        // REPLICAOF is taken during a sync (a failover may promote the replica).
        let again: String = redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(port)
            .query(&mut con)
            .expect("REPLICAOF");
        assert_eq!(again, "OK Already connected to specified master");
    }
    // The primary goes away mid-snapshot: the load is abandoned, the keyspace left empty (its
    // old data went at the load's start), and clients read again.
    drop(link);
    drop(primary);
    until(&replica, |info| {
        info_number(info, "master_sync_in_progress") == 0
    });
    let mut con = replica.client();
    let old: Option<String> = con.get("old").expect("GET");
    assert_eq!(old, None);
    let info = replica.info("persistence") + &replica.info("replication");
    assert_eq!(info_field(&info, "loading"), "0");
    assert!(!info.contains("loading_start_time"), "{info}");
    assert!(!info.contains("master_sync_left_bytes"), "{info}");
}

/// A replica whose keyspace a full sync emptied holds no primary's offset until a sync
/// completes: INFO shows Redis's `slave_repl_offset:1` (Redis discards its cached primary at
/// `+FULLRESYNC`), not the offset of the data it no longer has. Sentinel promotes the replica
/// with the highest offset: a replica whose sync broke as its primary died must not be it.
#[test]
fn a_replica_emptied_by_a_full_sync_shows_no_offset_until_one_completes() {
    let primary = TestServer::start();
    let replica = TestServer::start();
    follow_with_a_key(&replica, &primary);
    let offset = info_number(&replica.info("replication"), "slave_repl_offset");
    assert!(offset > 1, "{offset}");

    // Sent to a primary that starts a snapshot, then dies in the middle of it.
    let fake = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut r = replica.client();
    replicate_from(&mut r, fake.local_addr().expect("address").port());
    let (mut link, _) = handshake(&fake);
    full_resync(&mut link, &snapshot_start());
    poll_loading(&mut replica.client(), true, &["GET", "k"]).expect_err("LOADING");
    let info = replica.info("replication");
    assert_eq!(info_number(&info, "slave_repl_offset"), 1, "{info}");
    assert_eq!(info_number(&info, "slave_read_repl_offset"), 1, "{info}");
    drop(link);
    drop(fake);
    let info = until(&replica, |info| {
        info_number(info, "master_sync_in_progress") == 0
    });
    assert_eq!(info_number(&info, "slave_repl_offset"), 1, "{info}");
    assert_eq!(replica.stored_keys(), 0);

    // A sync that completes gives it its primary's offset again.
    replicate_from(&mut r, primary.addr.port());
    wait_for(&primary, 1);
    let info = replica.info("replication");
    assert_eq!(info_number(&info, "slave_repl_offset"), offset, "{info}");
    assert_eq!(replica.stored_keys(), 1);
}

/// With a data directory, a replica receives its primary's snapshot whole into a file there
/// before it replaces its keyspace (Redis's disk-based load): it serves its data meanwhile,
/// and a transfer that breaks leaves it its data and its offset, for Sentinel to promote and
/// for its next attempt to continue from.
#[test]
fn a_replica_with_a_data_dir_keeps_its_data_until_the_whole_snapshot_arrived() {
    let dir = super::daemon::ScratchDir::new();
    let primary = TestServer::start();
    let replica = TestServer::with_config(Config {
        persistence: Some(sessiond::persist::PersistConfig {
            dir: dir.0.clone(),
            interval: None,
            aof: sessiond::persist::aof::AofConfig {
                enabled: false,
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Config::default()
    });
    follow_with_a_key(&replica, &primary);
    let offset = info_number(&replica.info("replication"), "slave_repl_offset");

    // Sent to a primary that starts a snapshot, then dies in the middle of it.
    let fake = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut r = replica.client();
    replicate_from(&mut r, fake.local_addr().expect("address").port());
    let (mut link, _) = handshake(&fake);
    full_resync(&mut link, &snapshot_start());
    let spool = dir.0.join(format!("dump.sdb.sync-{}", std::process::id()));
    for _ in 0..6000 {
        if spool.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        spool.exists(),
        "the snapshot is received into {}",
        spool.display()
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&spool)
        .expect("spool")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "it holds every session");
    // Receiving: the data is served, no load is under way.
    let value: Option<String> = r.get("k").expect("GET");
    assert_eq!(value.as_deref(), Some("v"));
    assert_eq!(info_field(&replica.info("persistence"), "loading"), "0");
    let info = replica.info("replication");
    assert_eq!(info_number(&info, "master_sync_in_progress"), 1, "{info}");
    assert_eq!(info_number(&info, "slave_repl_offset"), offset, "{info}");
    drop(link);
    drop(fake);
    let info = until(&replica, |info| {
        info_number(info, "master_sync_in_progress") == 0
    });
    assert_eq!(info_number(&info, "slave_repl_offset"), offset, "{info}");
    assert_eq!(replica.stored_keys(), 1);
    assert!(!spool.exists(), "the received part is removed");

    // Back to its primary: it continues from its offset, without a full sync.
    let before = info_number(&primary.info("stats"), "sync_partial_ok");
    replicate_from(&mut r, primary.addr.port());
    wait_for(&primary, 1);
    assert_eq!(
        info_number(&primary.info("stats"), "sync_partial_ok"),
        before + 1
    );
    let value: Option<String> = r.get("k").expect("GET");
    assert_eq!(value.as_deref(), Some("v"));
}

/// A primary that falls silent mid-snapshot (its process hung, its socket open) is given up
/// after `repl-timeout`, as any silent link: the replica abandons the load and connects again.
#[test]
fn a_replica_gives_up_a_primary_silent_in_the_middle_of_its_snapshot() {
    let primary = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = primary.local_addr().expect("address").port();
    let replica = TestServer::start();
    let mut r = replica.client();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "repl-timeout", "2"])
        .query(&mut r)
        .expect("CONFIG SET");
    replicate_from(&mut r, port);
    let (mut link, _) = handshake(&primary);
    full_resync(&mut link, &snapshot_start());
    until(&replica, |info| {
        info_number(info, "master_sync_in_progress") == 1
    });
    // Nothing more, the link held open: the replica gives up and tries again.
    until(&replica, |info| {
        info_number(info, "master_sync_in_progress") == 0
    });
    let (again, _) = handshake(&primary);
    drop((link, again));
}

/// Sends `args` on `con`, polling a bounded number of times until the reply is not
/// `LOADING` (or, with `loading`, until it is); the last reply.
fn poll_loading(con: &mut Connection, loading: bool, args: &[&str]) -> redis::RedisResult<Value> {
    let mut reply = Ok(Value::Nil);
    for _ in 0..6000 {
        reply = redis::cmd(args[0]).arg(&args[1..]).query::<Value>(con);
        let is_loading = matches!(&reply, Err(e) if e.code() == Some("LOADING"));
        if is_loading == loading {
            return reply;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("{args:?} still {reply:?}");
}

#[test]
fn a_promotion_during_a_full_sync_empties_the_half_loaded_keyspace() {
    use std::io::{Read, Write};
    // A real snapshot's start, taken from a primary with enough keys that it spans chunks.
    let source = TestServer::start();
    let mut s = source.client();
    for i in 0..200 {
        let _: () = s.set(format!("k{i}"), "v".repeat(50)).expect("SET");
    }
    let mut taken = std::net::TcpStream::connect(source.addr).expect("connect");
    taken
        .set_read_timeout(Some(sessiond_tests::IO_TIMEOUT))
        .expect("timeout");
    taken.write_all(b"PSYNC ? -1\r\n").expect("PSYNC");
    let mut stream = Vec::new();
    let line_end = loop {
        let mut chunk = [0u8; 4096];
        let n = taken.read(&mut chunk).expect("the snapshot");
        assert!(n > 0, "the source hung up");
        stream.extend_from_slice(&chunk[..n]);
        if let Some(end) = stream.windows(2).position(|w| w == b"\r\n") {
            if stream.len() >= end + 2 + 3000 {
                break end + 2;
            }
        }
    };
    let prefix = &stream[line_end..line_end + 2000];
    // A primary that answers the handshake, sends that start and holds.
    let primary = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = primary.local_addr().expect("address").port();
    let replica = TestServer::start();
    let mut r = replica.client();
    let _: () = r.set("old", "data").expect("SET");
    let before = info_field(&replica.info("replication"), "master_replid");
    replicate_from(&mut r, port);
    let (mut link, _) = handshake(&primary);
    full_resync(&mut link, prefix);
    poll_loading(&mut r, true, &["GET", "old"]).expect_err("LOADING");
    // Part of the snapshot is in: more than the one key before (which the load's start
    // removed before it restored any).
    for _ in 0..6000 {
        if replica.stored_keys() > 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(replica.stored_keys() > 1);
    // A failover promotes the replica mid-load.
    let _: () = redis::cmd("REPLICAOF")
        .arg(&["NO", "ONE"])
        .query(&mut r)
        .expect("REPLICAOF NO ONE");
    let size = poll_loading(&mut r, false, &["DBSIZE"]).expect("DBSIZE");
    // Nothing half-loaded is left under the new history, and nothing of the old one (its
    // data went at the load's start): no sibling may continue from this keyspace.
    assert_eq!(size, Value::Int(0));
    let _: () = r.set("new", "1").expect("SET");
    let size: i64 = redis::cmd("DBSIZE").query(&mut r).expect("DBSIZE");
    assert_eq!(size, 1);
    let info = replica.info("replication");
    assert_eq!(info_field(&info, "role"), "master");
    assert_ne!(info_field(&info, "master_replid2"), before);
    assert_ne!(info_field(&info, "master_replid"), before);
    drop(link);
}

#[test]
fn a_partial_resync_needs_the_id_and_an_offset_the_backlog_still_holds() {
    let primary = TestServer::with_config(Config {
        replication: sessiond::role::Settings {
            backlog_bytes: 16 * 1024,
            ..Default::default()
        },
        ..Config::default()
    });
    let psync = |replid: &str, offset: u64| -> String {
        let mut replica = primary.raw();
        replica.command(&[b"PSYNC", replid.as_bytes(), offset.to_string().as_bytes()]);
        match replica.reply() {
            sessiond_protocol::Frame::Simple(line) => String::from_utf8_lossy(&line).into_owned(),
            other => panic!("PSYNC: {other:?}"),
        }
    };
    // The first replica turns the feed on.
    assert!(psync("?", 0).starts_with("FULLRESYNC "));
    let mut p = primary.client();
    let value = "v".repeat(1000);
    for i in 0..100 {
        let _: () = p.set(format!("k{i}"), &value).expect("SET");
    }
    // Once the backlog holds the stream's end (the feed publishes in the background).
    let info = until(&primary, |info| {
        info_number(info, "repl_backlog_first_byte_offset") - 1
            + info_number(info, "repl_backlog_histlen")
            == info_number(info, "master_repl_offset")
    });
    let replid = info_field(&info, "master_replid");
    let end = info_number(&info, "master_repl_offset");
    assert!(info_number(&info, "repl_backlog_histlen") <= 16 * 1024 + 2048);
    assert!(info_number(&info, "repl_backlog_first_byte_offset") > 1);
    // The start fell out of the backlog: a full resync.
    assert!(psync(&replid, 1).starts_with("FULLRESYNC "));
    // The end is in it: a partial one.
    assert_eq!(psync(&replid, end + 1), format!("CONTINUE {replid}"));
    // Another history: a full one.
    assert!(psync(&"f".repeat(40), end + 1).starts_with("FULLRESYNC "));
    // Inside the last frame (a SET's, longer than a byte): a full one, not half a frame.
    assert!(psync(&replid, end).starts_with("FULLRESYNC "));
    let stats = primary.info("stats");
    assert_eq!(info_number(&stats, "sync_full"), 4, "{stats}");
    assert_eq!(info_number(&stats, "sync_partial_ok"), 1, "{stats}");
    assert_eq!(info_number(&stats, "sync_partial_err"), 3, "{stats}");
}

#[test]
fn sentinel_s_failover_transactions_promote_and_repoint() {
    let primary = TestServer::start();
    let a = TestServer::start();
    let b = TestServer::start();
    follow(&a, &primary);
    follow(&b, &primary);
    let mut p = primary.client();
    let _: () = p.set("k", "v").expect("SET");
    wait_for(&primary, 2);
    drop(primary);
    // What Sentinel sends the replica it promotes, then the others (but CONFIG REWRITE, which
    // needs a config file: see config_rewrite_writes_the_primary_followed_back).
    let mut con = a.client();
    let (promoted, _normal, _pubsub): (String, i64, i64) = redis::pipe()
        .atomic()
        .cmd("SLAVEOF")
        .arg(&["NO", "ONE"])
        .cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal"])
        .cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"])
        .query(&mut con)
        .expect("the promotion's transaction");
    assert_eq!(promoted, "OK");
    let mut con = b.client();
    let (repointed, _, _): (String, i64, i64) = redis::pipe()
        .atomic()
        .cmd("SLAVEOF")
        .arg("127.0.0.1")
        .arg(a.addr.port())
        .cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal"])
        .cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"])
        .query(&mut con)
        .expect("the repointing transaction");
    assert_eq!(repointed, "OK");
    let mut con = a.client();
    let _: () = con.set("after", "1").expect("SET on the promoted replica");
    wait_for(&a, 1);
    assert_same(&a, &b);
}

#[test]
fn a_chain_learns_the_new_id_after_a_failover_without_a_full_sync() {
    let primary = TestServer::start();
    let a = TestServer::start();
    let middle = TestServer::start();
    let leaf = TestServer::start();
    let mut p = primary.client();
    fill(&mut p);
    follow(&a, &primary);
    follow(&middle, &primary);
    wait_for(&primary, 2);
    follow(&leaf, &middle);
    until(&middle, |info| info.contains("state=online"));
    let _: () = p.set("more", "1").expect("SET");
    wait_for(&primary, 2);
    drop(primary);
    let mut con = a.client();
    let _: String = redis::cmd("REPLICAOF")
        .arg(&["NO", "ONE"])
        .query(&mut con)
        .expect("REPLICAOF NO ONE");
    follow(&middle, &a);
    wait_for(&a, 1);
    let _: () = con.set("after", "1").expect("SET");
    wait_for(&a, 1);
    let new_id = info_field(&a.info("replication"), "master_replid");
    let offset = info_number(&a.info("replication"), "master_repl_offset");
    until(&leaf, |info| {
        info_field(info, "master_replid") == new_id
            && info_number(info, "slave_repl_offset") == offset
    });
    assert_same(&a, &leaf);
    // Every step after the first syncs was partial: the middle's to the promoted node, and the
    // leaf's, after the middle closed it to pass the new ID on.
    for (node, partial) in [(&a, 1), (&middle, 1)] {
        let stats = node.info("stats");
        assert_eq!(info_number(&stats, "sync_partial_ok"), partial, "{stats}");
    }
    assert_eq!(info_number(&a.info("stats"), "sync_full"), 0);
    assert_eq!(info_number(&middle.info("stats"), "sync_full"), 1);
}

/// A replica the test plays on a raw socket: resumed at the primary's offset (`+CONTINUE`),
/// it reads the stream frame by frame and answers each acknowledgement request (an empty
/// frame header) with the offset of the frames read before it, as a replica does.
fn played_replica(primary: &TestServer) -> std::thread::JoinHandle<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    let info = primary.info("replication");
    let replid = info_field(&info, "master_replid").to_owned();
    let mut offset = info_number(&info, "master_repl_offset");
    let mut socket = std::net::TcpStream::connect(primary.addr).expect("connect");
    let psync = format!("PSYNC {replid} {}\r\n", offset + 1);
    socket.write_all(psync.as_bytes()).expect("PSYNC");
    let mut reader = BufReader::new(socket.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("+CONTINUE");
    assert!(line.starts_with("+CONTINUE"), "{line}");
    std::thread::spawn(move || loop {
        let mut header = [0u8; 8];
        if reader.read_exact(&mut header).is_err() {
            return;
        }
        if header == [0; 8] {
            let ack = offset.to_string();
            let reply = format!(
                "*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n${}\r\n{ack}\r\n",
                ack.len()
            );
            if socket.write_all(reply.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        let mut payload = vec![0; len as usize];
        if reader.read_exact(&mut payload).is_err() {
            return;
        }
        offset += 8 + u64::from(len);
    })
}

#[test]
fn wait_is_answered_by_the_acknowledgement_it_asks_for() {
    // The periodic requests are put off past the test, so only the request each WAIT makes
    // can answer it: made before its write reached the stream, the replica would acknowledge
    // an offset short of it, and the WAIT would answer 0 at its timeout (a bound that only
    // keeps a broken build from hanging: the answer comes with the acknowledgement).
    let mut config = Config::default();
    config.replication.ping_period = Duration::from_secs(3600);
    let primary = TestServer::with_config(config);
    let replica = played_replica(&primary);
    let mut con = primary.client();
    for i in 0..50 {
        let _: () = con.set(format!("k{i}"), i).expect("SET");
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5000)
            .query(&mut con)
            .expect("WAIT");
        assert_eq!(acked, 1, "write {i}");
    }
    drop(primary);
    replica.join().expect("the played replica");
}

#[test]
fn a_replica_whose_link_is_down_refuses_replicas_of_its_own() {
    // A primary that never answers (its port held, nothing accepted): the link never connects.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let node = TestServer::start();
    let mut con = node.client();
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(port)
        .query(&mut con)
        .expect("REPLICAOF");
    for psync in [&[&b"PSYNC"[..], b"?", b"-1"][..], &[b"SYNC"]] {
        let mut raw = node.raw();
        raw.command(psync);
        assert_eq!(
            raw.reply(),
            sessiond_protocol::Frame::error(
                "NOMASTERLINK Can't SYNC while not connected with my master"
            )
        );
    }
    drop(silent);
    // Once it follows none, it serves replicas again.
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut con)
        .expect("REPLICAOF NO ONE");
    let replica = TestServer::start();
    follow(&replica, &node);
    let _: () = con.set("k", "v").expect("SET");
    wait_for(&node, 1);
}

#[test]
fn a_session_listed_past_its_deadline_on_a_replica_stays_indexed_for_its_primary_s_touch() {
    let primary = TestServer::with_manual_clock();
    let replica = TestServer::with_manual_clock();
    follow(&replica, &primary);
    let mut p = primary.client();
    let id: String = redis::cmd("SESSION.CREATE")
        .arg("USER")
        .arg("alice")
        .arg("IDLE")
        .arg(10_000)
        .query(&mut p)
        .expect("SESSION.CREATE");
    wait_for(&primary, 1);
    let list = |server: &TestServer| -> Vec<String> {
        redis::cmd("SESSION.LIST")
            .arg("alice")
            .query(&mut server.client())
            .expect("SESSION.LIST")
    };
    // The replica's clock runs ahead: there the session is past its deadline, and hidden.
    replica.advance_clock(15_000);
    assert_eq!(list(&replica), Vec::<String>::new());
    // On the primary it is not, and a touch renews it past the replica's clock.
    primary.advance(9_000);
    let touched: i64 = redis::cmd("SESSION.TOUCH")
        .arg(&id)
        .query(&mut p)
        .expect("SESSION.TOUCH");
    assert_eq!(touched, 10_000, "the idle timeout, renewed");
    wait_for(&primary, 1);
    assert_eq!(list(&replica), vec![id.clone()]);
    // Promoted, the replica still logs the user out everywhere.
    let mut r = replica.client();
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut r)
        .expect("REPLICAOF NO ONE");
    let destroyed: i64 = redis::cmd("SESSION.DESTROYALL")
        .arg("alice")
        .query(&mut r)
        .expect("SESSION.DESTROYALL");
    assert_eq!(destroyed, 1);
}

#[test]
fn a_replica_with_threads_shows_a_transaction_whole_or_not_at_all() {
    let primary = TestServer::start();
    let replica = TestServer::with_config(Config {
        threads: 2,
        ..Config::default()
    });
    follow(&replica, &primary);
    // Loaded and following before the reads begin.
    let _: () = primary.client().set("ready", 1).expect("SET");
    wait_for(&primary, 1);
    let keys: Vec<String> = (1..=6).map(|i| format!("k{i}")).collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let mut p = primary.client();
        let keys = keys.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            for i in 0..2000 {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for key in &keys {
                    pipe.set(key, i).ignore();
                }
                let () = pipe.query(&mut p).expect("EXEC");
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    // Read on the replica while the primary's transactions arrive: each read, itself a
    // transaction, sees one of them whole (or none yet).
    let mut r = replica.client();
    let mut reads = 0;
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for key in &keys {
            pipe.get(key);
        }
        let values: Vec<Option<i64>> = pipe.query(&mut r).expect("EXEC on the replica");
        assert!(
            values.windows(2).all(|pair| pair[0] == pair[1]),
            "a transaction seen in part: {values:?}"
        );
        reads += 1;
    }
    writer.join().expect("writer");
    assert!(reads > 0);
    wait_for(&primary, 1);
    assert_same(&primary, &replica);
}
