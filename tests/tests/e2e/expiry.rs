//! Expiry through the manual clock: keys vanish from every view at their deadline and are
//! reclaimed by the active expiry task without any read.

use redis::Commands;
use sessiond_tests::TestServer;

#[test]
fn keys_are_invisible_at_their_deadline() {
    let server = TestServer::with_manual_clock();
    let mut con = server.client();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .arg("PX")
        .arg(1000)
        .query(&mut con)
        .unwrap();
    let _: () = con.set("persistent", "p").unwrap();
    server.clock.as_ref().unwrap().advance(999);
    assert_eq!(
        con.get::<_, Option<String>>("k").unwrap().as_deref(),
        Some("v")
    );
    assert_eq!(con.pttl::<_, i64>("k").unwrap(), 1);
    server.clock.as_ref().unwrap().advance(1);
    // Exactly at the deadline the key is gone from every command's view.
    assert_eq!(con.get::<_, Option<String>>("k").unwrap(), None);
    assert_eq!(con.exists::<_, i64>("k").unwrap(), 0);
    assert_eq!(con.ttl::<_, i64>("k").unwrap(), -2);
    assert_eq!(con.pttl::<_, i64>("k").unwrap(), -2);
    assert_eq!(
        redis::cmd("TYPE")
            .arg("k")
            .query::<String>(&mut con)
            .unwrap(),
        "none"
    );
    assert_eq!(con.strlen::<_, i64>("k").unwrap(), 0);
    let mget: Vec<Option<String>> = con.mget(&["k", "persistent"]).unwrap();
    assert_eq!(mget, vec![None, Some("p".to_owned())]);
    let keys: Vec<String> = con.keys("*").unwrap();
    assert_eq!(keys, vec!["persistent".to_owned()]);
    let (_, scanned): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("COUNT")
        .arg(1000)
        .query(&mut con)
        .unwrap();
    assert_eq!(scanned, vec!["persistent".to_owned()]);
    assert_eq!(
        redis::cmd("GETDEL")
            .arg("k")
            .query::<Option<String>>(&mut con)
            .unwrap(),
        None
    );
    assert_eq!(con.expire::<_, i64>("k", 100).unwrap(), 0);
    assert_eq!(con.persist::<_, i64>("k").unwrap(), 0);
    // A write to an expired key starts from nothing: no old value, no old deadline.
    assert_eq!(con.append::<_, _, i64>("k", "x").unwrap(), 1);
    assert_eq!(con.ttl::<_, i64>("k").unwrap(), -1);
}

#[test]
fn expired_keys_are_reclaimed_without_reads() {
    let server = TestServer::with_manual_clock();
    let mut con = server.client();
    let mut pipe = redis::pipe();
    for i in 0..5000 {
        pipe.cmd("SET")
            .arg(format!("short:{i}"))
            .arg("v")
            .arg("EX")
            .arg(10)
            .ignore();
        pipe.cmd("SET")
            .arg(format!("long:{i}"))
            .arg("v")
            .arg("EX")
            .arg(1000)
            .ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    let _: () = con.set("forever", "v").unwrap();
    assert_eq!(server.stored_keys(), 10_001);

    server.advance(10_000);
    assert_eq!(
        server.stored_keys(),
        5_001,
        "short-lived keys reclaimed without any read"
    );
    let info: String = redis::cmd("INFO").arg("stats").query(&mut con).unwrap();
    assert!(info.contains("expired_keys:5000\r\n"), "{info}");
    let keyspace: String = redis::cmd("INFO").arg("keyspace").query(&mut con).unwrap();
    assert!(
        keyspace.contains("db0:keys=5001,expires=5000,"),
        "{keyspace}"
    );

    server.advance(990_000);
    assert_eq!(server.stored_keys(), 1);
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 1);
}

#[test]
fn sliding_and_shortened_deadlines_are_honoured_by_the_reclaimer() {
    let server = TestServer::with_manual_clock();
    let mut con = server.client();
    let _: () = redis::cmd("SET")
        .arg("slides")
        .arg("v")
        .arg("EX")
        .arg(10)
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("shrinks")
        .arg("v")
        .arg("EX")
        .arg(100)
        .query(&mut con)
        .unwrap();
    // Move one deadline later and the other earlier than first queued.
    assert_eq!(con.expire::<_, i64>("slides", 50).unwrap(), 1);
    assert_eq!(con.expire::<_, i64>("shrinks", 5).unwrap(), 1);
    server.advance(5_000);
    assert_eq!(
        server.stored_keys(),
        1,
        "the shortened key is reclaimed at its new deadline"
    );
    server.advance(5_000);
    assert_eq!(
        server.stored_keys(),
        1,
        "the lengthened key survives its first deadline"
    );
    assert_eq!(con.ttl::<_, i64>("slides").unwrap(), 40);
    // PERSIST takes it off the clock entirely.
    assert_eq!(con.persist::<_, i64>("slides").unwrap(), 1);
    server.advance(100_000);
    assert_eq!(server.stored_keys(), 1);
    assert_eq!(con.get::<_, String>("slides").unwrap(), "v");
}
