//! The set commands through the `redis` crate in RESP2 and RESP3, with the replies and errors
//! Redis 7 gives (its command docs and `t_set.c`): sets (`~`) where Redis 7 sends sets, arrays in
//! RESP2; WRONGTYPE in both directions; deadlines, `used_memory`, `--maxmemory` and the output
//! limit on set keys.

use std::collections::HashMap;

use redis::{Commands, Connection, RedisResult, Value};
use sessiond::store::evict::Policy;
use sessiond::Config;
use sessiond_tests::redis_calls::{bulk, call, error_of, WRONGTYPE};
use sessiond_tests::{info_number, TestServer};

fn texts(items: Vec<Value>) -> Vec<String> {
    items
        .into_iter()
        .map(|item| match item {
            Value::BulkString(bytes) => String::from_utf8(bytes).expect("utf-8"),
            other => panic!("expected a bulk string, got {other:?}"),
        })
        .collect()
}

/// The members of a reply that must be a set in RESP3 and an array in RESP2, sorted.
fn set_reply(value: Value, resp3: bool) -> Vec<String> {
    let items = match (value, resp3) {
        (Value::Set(items), true) | (Value::Array(items), false) => items,
        (other, _) => panic!("expected a {} reply, got {other:?}", set_kind(resp3)),
    };
    let mut texts = texts(items);
    texts.sort();
    texts
}

fn set_kind(resp3: bool) -> &'static str {
    if resp3 {
        "set"
    } else {
        "array"
    }
}

/// The members of an array reply, in order.
fn array_reply(value: Value) -> Vec<String> {
    match value {
        Value::Array(items) => texts(items),
        other => panic!("expected an array, got {other:?}"),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn flushall(con: &mut Connection) {
    let _: () = redis::cmd("FLUSHALL").query(con).expect("FLUSHALL");
}

#[test]
fn sadd_srem_scard_sismember_smismember() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        // SADD answers how many members are new.
        assert_eq!(
            call(&mut con, "SADD", &["s", "a", "b", "a"]).unwrap(),
            Value::Int(2)
        );
        assert_eq!(
            call(&mut con, "SADD", &["s", "b", "c"]).unwrap(),
            Value::Int(1)
        );
        assert_eq!(call(&mut con, "SCARD", &["s"]).unwrap(), Value::Int(3));
        assert_eq!(call(&mut con, "SCARD", &["nokey"]).unwrap(), Value::Int(0));
        assert_eq!(
            call(&mut con, "TYPE", &["s"]).unwrap(),
            Value::SimpleString("set".into())
        );
        assert_eq!(
            call(&mut con, "SISMEMBER", &["s", "a"]).unwrap(),
            Value::Int(1)
        );
        assert_eq!(
            call(&mut con, "SISMEMBER", &["s", "z"]).unwrap(),
            Value::Int(0)
        );
        assert_eq!(
            call(&mut con, "SISMEMBER", &["nokey", "a"]).unwrap(),
            Value::Int(0)
        );
        assert_eq!(
            call(&mut con, "SMISMEMBER", &["s", "a", "z", "c"]).unwrap(),
            Value::Array(vec![Value::Int(1), Value::Int(0), Value::Int(1)])
        );
        assert_eq!(
            call(&mut con, "SMISMEMBER", &["nokey", "a", "b"]).unwrap(),
            Value::Array(vec![Value::Int(0), Value::Int(0)])
        );
        // Members are binary-safe, and the empty string is a member.
        let added: i64 = redis::cmd("SADD")
            .arg("s")
            .arg(&b"\x00\r\n\xff"[..])
            .arg("")
            .query(&mut con)
            .unwrap();
        assert_eq!(added, 2);
        let is: bool = con.sismember("s", &b"\x00\r\n\xff"[..]).unwrap();
        assert!(is);

        // SREM answers how many were members, and deletes the set it empties.
        assert_eq!(
            call(&mut con, "SREM", &["s", "a", "z", "a"]).unwrap(),
            Value::Int(1)
        );
        assert_eq!(
            call(&mut con, "SREM", &["nokey", "a"]).unwrap(),
            Value::Int(0)
        );
        let _: i64 = redis::cmd("SREM")
            .arg("s")
            .arg(&b"\x00\r\n\xff"[..])
            .arg("")
            .arg("b")
            .arg("c")
            .query(&mut con)
            .unwrap();
        assert_eq!(call(&mut con, "EXISTS", &["s"]).unwrap(), Value::Int(0));
        assert_eq!(
            call(&mut con, "TYPE", &["s"]).unwrap(),
            Value::SimpleString("none".into())
        );
        flushall(&mut con);
    }
}

#[test]
fn smembers_and_the_algebra_are_sets_in_resp3_and_arrays_in_resp2() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let _: i64 = con.sadd("a", &["1", "2", "3", "4"]).unwrap();
        let _: i64 = con.sadd("b", &["3", "4", "5"]).unwrap();
        let _: i64 = con.sadd("c", &["4", "6"]).unwrap();
        let members = |con: &mut Connection, name: &str, args: &[&str]| {
            set_reply(call(con, name, args).unwrap(), resp3)
        };
        assert_eq!(
            members(&mut con, "SMEMBERS", &["a"]),
            strings(&["1", "2", "3", "4"])
        );
        assert_eq!(members(&mut con, "SMEMBERS", &["nokey"]), strings(&[]));
        assert_eq!(
            members(&mut con, "SINTER", &["a", "b"]),
            strings(&["3", "4"])
        );
        assert_eq!(
            members(&mut con, "SINTER", &["a", "b", "c"]),
            strings(&["4"])
        );
        assert_eq!(
            members(&mut con, "SINTER", &["a"]),
            strings(&["1", "2", "3", "4"])
        );
        assert_eq!(members(&mut con, "SINTER", &["a", "nokey"]), strings(&[]));
        assert_eq!(
            members(&mut con, "SUNION", &["a", "b", "c", "nokey"]),
            strings(&["1", "2", "3", "4", "5", "6"])
        );
        assert_eq!(members(&mut con, "SUNION", &["nokey"]), strings(&[]));
        assert_eq!(
            members(&mut con, "SDIFF", &["a", "b"]),
            strings(&["1", "2"])
        );
        assert_eq!(
            members(&mut con, "SDIFF", &["a", "b", "c"]),
            strings(&["1", "2"])
        );
        assert_eq!(
            members(&mut con, "SDIFF", &["a", "nokey"]),
            strings(&["1", "2", "3", "4"])
        );
        assert_eq!(members(&mut con, "SDIFF", &["nokey", "a"]), strings(&[]));
        assert_eq!(members(&mut con, "SDIFF", &["a", "a"]), strings(&[]));
        // A typed client reads either shape.
        let typed: std::collections::HashSet<String> = con.smembers("c").unwrap();
        assert_eq!(typed.len(), 2);
        flushall(&mut con);
    }
}

#[test]
fn store_forms_replace_the_destination_and_reply_with_its_size() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let _: i64 = con.sadd("a", &["1", "2", "3"]).unwrap();
        let _: i64 = con.sadd("b", &["2", "3", "4"]).unwrap();
        // Any kind of destination is overwritten, and loses its deadline.
        let _: () = redis::cmd("SET")
            .arg("dest")
            .arg("string")
            .arg("EX")
            .arg(100)
            .query(&mut con)
            .unwrap();
        assert_eq!(
            call(&mut con, "SINTERSTORE", &["dest", "a", "b"]).unwrap(),
            Value::Int(2)
        );
        assert_eq!(call(&mut con, "TTL", &["dest"]).unwrap(), Value::Int(-1));
        assert_eq!(
            call(&mut con, "TYPE", &["dest"]).unwrap(),
            Value::SimpleString("set".into())
        );
        assert_eq!(
            set_reply(call(&mut con, "SMEMBERS", &["dest"]).unwrap(), resp3),
            strings(&["2", "3"])
        );
        let _: i64 = con.hset("h", "f", "v").unwrap();
        assert_eq!(
            call(&mut con, "SUNIONSTORE", &["h", "a", "b"]).unwrap(),
            Value::Int(4)
        );
        assert_eq!(
            set_reply(call(&mut con, "SMEMBERS", &["h"]).unwrap(), resp3),
            strings(&["1", "2", "3", "4"])
        );
        // The destination may be a source.
        assert_eq!(
            call(&mut con, "SDIFFSTORE", &["a", "a", "b"]).unwrap(),
            Value::Int(1)
        );
        assert_eq!(
            set_reply(call(&mut con, "SMEMBERS", &["a"]).unwrap(), resp3),
            strings(&["1"])
        );
        // An empty result deletes the destination.
        assert_eq!(
            call(&mut con, "SINTERSTORE", &["dest", "a", "nokey"]).unwrap(),
            Value::Int(0)
        );
        assert_eq!(call(&mut con, "EXISTS", &["dest"]).unwrap(), Value::Int(0));
        assert_eq!(
            call(&mut con, "SDIFFSTORE", &["nothing", "nokey"]).unwrap(),
            Value::Int(0)
        );
        assert_eq!(
            call(&mut con, "EXISTS", &["nothing"]).unwrap(),
            Value::Int(0)
        );
        // A session is not overwritten: sessions end only by their own commands.
        let id: String = redis::cmd("SESSION.CREATE").query(&mut con).unwrap();
        assert_eq!(error_of(&mut con, "SUNIONSTORE", &[&id, "b"]), WRONGTYPE);
        assert_eq!(
            error_of(&mut con, "SINTERSTORE", &[&id, "nokey"]),
            WRONGTYPE
        );
        assert_eq!(
            call(&mut con, "TYPE", &[&id]).unwrap(),
            Value::SimpleString("session".into())
        );
        flushall(&mut con);
    }
}

#[test]
fn spop_removes_random_members() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let all = ["a", "b", "c", "d", "e"];
        let _: i64 = con.sadd("s", &all).unwrap();
        let Value::BulkString(one) = call(&mut con, "SPOP", &["s"]).unwrap() else {
            panic!("SPOP without a count answers a string");
        };
        let one = String::from_utf8(one).unwrap();
        assert!(all.contains(&one.as_str()));
        assert_eq!(
            call(&mut con, "SISMEMBER", &["s", &one]).unwrap(),
            Value::Int(0)
        );
        // With a count: a set (RESP3) of distinct members, removed.
        let two = set_reply(call(&mut con, "SPOP", &["s", "2"]).unwrap(), resp3);
        assert_eq!(two.len(), 2);
        assert!(!two.contains(&one));
        assert_eq!(call(&mut con, "SCARD", &["s"]).unwrap(), Value::Int(2));
        assert_eq!(
            set_reply(call(&mut con, "SPOP", &["s", "0"]).unwrap(), resp3),
            strings(&[])
        );
        // More than there are: all of them, and the key is gone.
        let rest = set_reply(call(&mut con, "SPOP", &["s", "10"]).unwrap(), resp3);
        assert_eq!(rest.len(), 2);
        let mut popped: Vec<String> = [vec![one], two, rest].concat();
        popped.sort();
        assert_eq!(popped, strings(&all));
        assert_eq!(call(&mut con, "EXISTS", &["s"]).unwrap(), Value::Int(0));
        // A missing key: nil, or an empty set with a count.
        assert_eq!(call(&mut con, "SPOP", &["s"]).unwrap(), Value::Nil);
        assert_eq!(
            set_reply(call(&mut con, "SPOP", &["s", "3"]).unwrap(), resp3),
            strings(&[])
        );
        // The last member popped alone deletes the key too.
        let _: i64 = con.sadd("last", "x").unwrap();
        assert_eq!(call(&mut con, "SPOP", &["last"]).unwrap(), bulk("x"));
        assert_eq!(call(&mut con, "EXISTS", &["last"]).unwrap(), Value::Int(0));

        assert_eq!(
            error_of(&mut con, "SPOP", &["s", "-1"]),
            "ERR value is out of range, must be positive"
        );
        assert_eq!(
            error_of(&mut con, "SPOP", &["s", "x"]),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            error_of(&mut con, "SPOP", &["s", "1", "2"]),
            "ERR syntax error"
        );
        flushall(&mut con);
    }
}

#[test]
fn srandmember_counts_as_redis_does() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let all = ["a", "b", "c", "d"];
        let _: i64 = con.sadd("s", &all).unwrap();
        let Value::BulkString(one) = call(&mut con, "SRANDMEMBER", &["s"]).unwrap() else {
            panic!("SRANDMEMBER without a count answers a string");
        };
        assert!(all.contains(&std::str::from_utf8(&one).unwrap()));
        assert_eq!(
            call(&mut con, "SRANDMEMBER", &["nokey"]).unwrap(),
            Value::Nil
        );
        // A positive count: distinct members, an array in both protocols, the set untouched.
        let mut two = array_reply(call(&mut con, "SRANDMEMBER", &["s", "2"]).unwrap());
        two.sort();
        two.dedup();
        assert_eq!(two.len(), 2);
        let mut every = array_reply(call(&mut con, "SRANDMEMBER", &["s", "10"]).unwrap());
        every.sort();
        assert_eq!(every, strings(&all));
        assert_eq!(call(&mut con, "SCARD", &["s"]).unwrap(), Value::Int(4));
        assert_eq!(
            call(&mut con, "SRANDMEMBER", &["s", "0"]).unwrap(),
            Value::Array(vec![])
        );
        assert_eq!(
            call(&mut con, "SRANDMEMBER", &["nokey", "5"]).unwrap(),
            Value::Array(vec![])
        );
        // A negative count: that many picks, members repeated, spread evenly (each of the
        // four is expected 2500 times in 10000; 2000..3000 is more than ten deviations).
        let picks = array_reply(call(&mut con, "SRANDMEMBER", &["s", "-10000"]).unwrap());
        assert_eq!(picks.len(), 10_000);
        let mut counts: HashMap<String, usize> = HashMap::new();
        for pick in picks {
            *counts.entry(pick).or_default() += 1;
        }
        assert_eq!(counts.len(), 4, "{counts:?}");
        assert!(
            counts.values().all(|&n| (2000..3000).contains(&n)),
            "{counts:?}"
        );
        assert_eq!(
            error_of(&mut con, "SRANDMEMBER", &["s", "-9223372036854775808"]),
            "ERR value is out of range, value must between -9223372036854775807 and \
             9223372036854775807"
        );
        assert_eq!(
            error_of(&mut con, "SRANDMEMBER", &["s", "1", "2"]),
            "ERR syntax error"
        );
        flushall(&mut con);
    }
}

#[test]
fn spop_with_a_count_picks_every_subset_alike() {
    // Two of four members: six pairs, each expected 1000 times in 6000 pops.
    let server = TestServer::start();
    let mut con = server.client();
    let mut counts: HashMap<Vec<String>, usize> = HashMap::new();
    for _ in 0..6_000 {
        let _: i64 = con.sadd("s", &["a", "b", "c", "d"]).unwrap();
        let mut pair = set_reply(call(&mut con, "SPOP", &["s", "2"]).unwrap(), false);
        pair.sort();
        *counts.entry(pair).or_default() += 1;
    }
    assert_eq!(counts.len(), 6, "{counts:?}");
    assert!(
        counts.values().all(|&n| (800..1200).contains(&n)),
        "{counts:?}"
    );
}

#[test]
fn sscan_returns_every_member_once_with_match_and_count() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let mut pipe = redis::pipe();
        for i in 0..1_000 {
            pipe.sadd("s", format!("m{i}")).ignore();
        }
        let _: () = pipe.query(&mut con).unwrap();
        let mut seen = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, members): (u64, Vec<String>) = redis::cmd("SSCAN")
                .arg("s")
                .arg(cursor)
                .arg("COUNT")
                .arg(50)
                .query(&mut con)
                .unwrap();
            assert!(members.len() <= 60, "about COUNT per step");
            seen.extend(members);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        seen.sort();
        let mut expected: Vec<String> = (0..1_000).map(|i| format!("m{i}")).collect();
        expected.sort();
        assert_eq!(seen, expected);
        // MATCH filters what a step examined.
        let mut matched: Vec<String> = con
            .sscan_match("s", "m99*")
            .unwrap()
            .collect::<RedisResult<_>>()
            .unwrap();
        matched.sort();
        assert_eq!(
            matched,
            strings(&[
                "m99", "m990", "m991", "m992", "m993", "m994", "m995", "m996", "m997", "m998",
                "m999"
            ])
        );
        assert_eq!(
            call(&mut con, "SSCAN", &["nokey", "0"]).unwrap(),
            Value::Array(vec![bulk("0"), Value::Array(vec![])])
        );
        assert_eq!(
            error_of(&mut con, "SSCAN", &["s", "x"]),
            "ERR invalid cursor"
        );
        assert_eq!(
            error_of(&mut con, "SSCAN", &["s", "0", "TYPE", "set"]),
            "ERR syntax error"
        );
        assert_eq!(
            error_of(&mut con, "SSCAN", &["s", "0", "COUNT", "0"]),
            "ERR syntax error"
        );
        flushall(&mut con);
    }
}

#[test]
fn wrongtype_in_both_directions() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let _: () = con.set("str", "v").unwrap();
        let _: i64 = con.hset("hash", "f", "v").unwrap();
        let _: i64 = con.sadd("set", "m").unwrap();
        let id: String = redis::cmd("SESSION.CREATE").query(&mut con).unwrap();
        for key in ["str", "hash", id.as_str()] {
            assert_eq!(error_of(&mut con, "SADD", &[key, "m"]), WRONGTYPE, "{key}");
            assert_eq!(error_of(&mut con, "SREM", &[key, "m"]), WRONGTYPE);
            assert_eq!(error_of(&mut con, "SMEMBERS", &[key]), WRONGTYPE);
            assert_eq!(error_of(&mut con, "SISMEMBER", &[key, "m"]), WRONGTYPE);
            assert_eq!(error_of(&mut con, "SMISMEMBER", &[key, "m"]), WRONGTYPE);
            assert_eq!(error_of(&mut con, "SCARD", &[key]), WRONGTYPE);
            assert_eq!(error_of(&mut con, "SPOP", &[key]), WRONGTYPE);
            assert_eq!(error_of(&mut con, "SPOP", &[key, "0"]), WRONGTYPE);
            assert_eq!(error_of(&mut con, "SRANDMEMBER", &[key, "0"]), WRONGTYPE);
            assert_eq!(error_of(&mut con, "SSCAN", &[key, "0"]), WRONGTYPE);
            // Any operand of another type, even after a missing one.
            assert_eq!(error_of(&mut con, "SINTER", &["nokey", key]), WRONGTYPE);
            assert_eq!(error_of(&mut con, "SUNION", &["set", key]), WRONGTYPE);
            assert_eq!(error_of(&mut con, "SDIFF", &["nokey", key]), WRONGTYPE);
            assert_eq!(
                error_of(&mut con, "SDIFFSTORE", &["d", "set", key]),
                WRONGTYPE
            );
        }
        assert_eq!(call(&mut con, "EXISTS", &["d"]).unwrap(), Value::Int(0));
        assert_eq!(error_of(&mut con, "GET", &["set"]), WRONGTYPE);
        assert_eq!(error_of(&mut con, "APPEND", &["set", "x"]), WRONGTYPE);
        assert_eq!(error_of(&mut con, "INCR", &["set"]), WRONGTYPE);
        assert_eq!(error_of(&mut con, "HSET", &["set", "f", "v"]), WRONGTYPE);
        assert_eq!(error_of(&mut con, "HGETALL", &["set"]), WRONGTYPE);
        // SET overwrites a set, as in Redis.
        let _: () = con.set("set", "now a string").unwrap();
        assert_eq!(
            call(&mut con, "TYPE", &["set"]).unwrap(),
            Value::SimpleString("string".into())
        );
        flushall(&mut con);
    }
}

#[test]
fn wrong_arity() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        for (name, args) in [
            ("SADD", &["s"][..]),
            ("SREM", &["s"]),
            ("SMEMBERS", &[]),
            ("SMEMBERS", &["s", "t"]),
            ("SISMEMBER", &["s"]),
            ("SISMEMBER", &["s", "a", "b"]),
            ("SMISMEMBER", &["s"]),
            ("SCARD", &[]),
            ("SPOP", &[]),
            ("SRANDMEMBER", &[]),
            ("SSCAN", &["s"]),
            ("SINTER", &[]),
            ("SUNION", &[]),
            ("SDIFF", &[]),
            ("SINTERSTORE", &["d"]),
            ("SUNIONSTORE", &["d"]),
            ("SDIFFSTORE", &["d"]),
        ] {
            assert_eq!(
                error_of(&mut con, name, args),
                format!(
                    "ERR wrong number of arguments for '{}' command",
                    name.to_lowercase()
                )
            );
        }
    }
}

#[test]
fn command_info_matches_redis_7() {
    let server = TestServer::start();
    let mut con = server.client();
    let info = call(
        &mut con,
        "COMMAND",
        &["INFO", "sadd", "smembers", "sinterstore"],
    )
    .unwrap();
    let Value::Array(commands) = info else {
        panic!("{info:?}");
    };
    let shape = |value: &Value| -> (String, i64, Vec<String>, [i64; 3], Vec<String>) {
        let Value::Array(fields) = value else {
            panic!("{value:?}");
        };
        let text = |v: &Value| match v {
            Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
            Value::SimpleString(s) => s.clone(),
            other => panic!("{other:?}"),
        };
        let list = |v: &Value| match v {
            Value::Array(items) | Value::Set(items) => items.iter().map(text).collect(),
            other => panic!("{other:?}"),
        };
        let int = |v: &Value| match v {
            Value::Int(n) => *n,
            other => panic!("{other:?}"),
        };
        (
            text(&fields[0]),
            int(&fields[1]),
            list(&fields[2]),
            [int(&fields[3]), int(&fields[4]), int(&fields[5])],
            list(&fields[6]),
        )
    };
    assert_eq!(
        shape(&commands[0]),
        (
            "sadd".into(),
            -3,
            strings(&["write", "denyoom", "fast"]),
            [1, 1, 1],
            strings(&["@write", "@set", "@fast"])
        )
    );
    assert_eq!(
        shape(&commands[1]),
        (
            "smembers".into(),
            2,
            strings(&["readonly"]),
            [1, 1, 1],
            strings(&["@read", "@set", "@slow"])
        )
    );
    assert_eq!(
        shape(&commands[2]),
        (
            "sinterstore".into(),
            -3,
            strings(&["write", "denyoom"]),
            [1, -1, 1],
            strings(&["@write", "@set", "@slow"])
        )
    ); // COMMAND DOCS puts them in Redis's `set` group (a flat array in RESP2).
    let docs = call(&mut con, "COMMAND", &["DOCS", "sadd"]).unwrap();
    let Value::Array(outer) = docs else {
        panic!("{docs:?}");
    };
    let Some(Value::Array(fields)) = outer.get(1) else {
        panic!("{outer:?}");
    };
    let group = fields
        .windows(2)
        .find(|pair| pair[0] == bulk("group"))
        .map(|pair| pair[1].clone());
    assert_eq!(group, Some(bulk("set")));
}

#[test]
fn sets_expire_and_keep_their_deadline_across_writes() {
    let server = TestServer::with_manual_clock();
    let mut con = server.client();
    let _: i64 = con.sadd("s", &["a", "b"]).unwrap();
    let _: bool = con.expire("s", 10).unwrap();
    server.advance(4000);
    let _: i64 = con.sadd("s", "c").unwrap();
    let _: i64 = con.srem("s", "a").unwrap();
    let _: Option<String> = con.spop("s").unwrap();
    assert_eq!(call(&mut con, "PTTL", &["s"]).unwrap(), Value::Int(6000));
    server.advance(6000);
    assert_eq!(call(&mut con, "EXISTS", &["s"]).unwrap(), Value::Int(0));
    assert_eq!(call(&mut con, "SCARD", &["s"]).unwrap(), Value::Int(0));
    // Reclaimed by the active expiry, without a read.
    let _: i64 = con.sadd("t", "a").unwrap();
    let _: bool = con.pexpire("t", 500).unwrap();
    server.advance(500);
    assert_eq!(server.stored_keys(), 0);
    // SCAN sees sets by type.
    let _: i64 = con.sadd("u", "a").unwrap();
    let _: () = con.set("v", "a").unwrap();
    let (_, keys): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("TYPE")
        .arg("set")
        .query(&mut con)
        .unwrap();
    assert_eq!(keys, strings(&["u"]));
}

#[test]
fn used_memory_follows_sadd_and_srem() {
    let server = TestServer::start();
    let mut con = server.client();
    let used = || info_number(&server.info("memory"), "used_memory_dataset");
    let empty = used();
    let members: Vec<String> = (0..1_000).map(|i| format!("member:{i:05}")).collect();
    let _: i64 = con.sadd("s", &members).unwrap();
    let full = used();
    // 12 bytes each, and an overhead per member (MEMBER_OVERHEAD, 48).
    let per_member = (full - empty) / 1_000;
    assert!(
        (60..=61).contains(&per_member),
        "{per_member} bytes per member"
    );
    let _: i64 = con.srem("s", &members[..500]).unwrap();
    let half = used();
    assert_eq!(full - half, 500 * 60);
    let _: i64 = con.sunionstore("copy", "s").unwrap();
    assert!(used() > half + 500 * 60 - 1);
    let _: i64 = con.del(&["s", "copy"]).unwrap();
    assert_eq!(used(), empty);
}

#[test]
fn sadd_is_refused_at_maxmemory_and_sets_are_evicted() {
    let server = TestServer::with_config(Config {
        maxmemory: 64 * 1024,
        maxmemory_policy: Policy::NoEviction,
        ..Config::default()
    });
    let mut con = server.client();
    let mut refused = None;
    for i in 0..10_000 {
        if let Err(error) = con.sadd::<_, _, i64>("s", format!("member:{i:05}")) {
            refused = Some(error);
            break;
        }
    }
    let refused = refused.expect("SADD refused before 10000 members");
    assert_eq!(refused.code(), Some("OOM"));
    // SREM frees memory and is not refused.
    let removed: i64 = con.srem("s", "member:00000").unwrap();
    assert_eq!(removed, 1);

    let server = TestServer::with_config(Config {
        maxmemory: 64 * 1024,
        maxmemory_policy: Policy::AllKeysLru,
        ..Config::default()
    });
    let mut con = server.client();
    for i in 0..400 {
        let _: i64 = con.sadd(format!("s{i}"), &["a", "b", "c"]).unwrap();
    }
    let stats = server.info("stats");
    assert!(info_number(&stats, "evicted_keys") > 0);
    assert!(info_number(&server.info("memory"), "used_memory_dataset") <= 64 * 1024 + 1024);
}

#[test]
fn huge_set_replies_past_the_output_limit_close_the_client() {
    let mut config = Config::default();
    config.output_limits.normal = sessiond::output_limit::ClassLimit {
        hard_bytes: 64 * 1024,
        soft_bytes: 0,
        soft_seconds: 0,
    };
    let server = TestServer::with_config(config);
    let mut con = server.client();
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.sadd("big", format!("member:{i:05}")).ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    for args in [
        &["SMEMBERS", "big"][..],
        &["SUNION", "big"],
        &["SRANDMEMBER", "big", "10000"],
        &["SRANDMEMBER", "big", "-100000"],
        &["SRANDMEMBER", "big", "-9223372036854775807"],
        &["SPOP", "big", "10000"],
        &["SSCAN", "big", "0", "COUNT", "10000"],
    ] {
        let mut raw = server.raw();
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        raw.command(&args);
        assert!(raw.read_frame().is_none(), "{args:?} answered");
    }
    // Nothing was popped that the client did not see; what fits is answered.
    assert_eq!(
        call(&mut con, "SCARD", &["big"]).unwrap(),
        Value::Int(10_000)
    );
    let some = array_reply(call(&mut con, "SRANDMEMBER", &["big", "100"]).unwrap());
    assert_eq!(some.len(), 100);
    let stored: i64 = con.sunionstore("copy", "big").unwrap();
    assert_eq!(stored, 10_000);
}
