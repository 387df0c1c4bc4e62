//! The hash commands through the `redis` crate in RESP2 and RESP3, with the replies and errors
//! Redis 7 gives (checked against `redis-server`), WRONGTYPE between strings and hashes, and
//! deadlines on hash keys through the manual clock.

use redis::{Commands, Connection, Value};
use sessiond_tests::redis_calls::{bulk, call, error_of, WRONGTYPE};
use sessiond_tests::TestServer;

/// A reply that is an array of bulk strings, sorted (hash order is unspecified, as in Redis).
fn sorted(value: Value) -> Vec<String> {
    let Value::Array(items) = value else {
        panic!("expected an array, got {value:?}");
    };
    let mut texts: Vec<String> = items
        .into_iter()
        .map(|item| match item {
            Value::BulkString(bytes) => String::from_utf8(bytes).expect("utf-8"),
            other => panic!("expected a bulk string, got {other:?}"),
        })
        .collect();
    texts.sort();
    texts
}

fn flushall(con: &mut Connection) {
    let _: () = redis::cmd("FLUSHALL").query(con).expect("FLUSHALL");
}

#[test]
fn hset_hsetnx_hget_hmget() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        // HSET answers how many fields are new, not how many were written.
        assert_eq!(
            call(&mut con, "HSET", &["h", "a", "1", "b", "2"]).unwrap(),
            Value::Int(2)
        );
        assert_eq!(
            call(&mut con, "HSET", &["h", "a", "3", "c", "4"]).unwrap(),
            Value::Int(1)
        );
        assert_eq!(
            call(&mut con, "HSET", &["h", "a", "5", "a", "6"]).unwrap(),
            Value::Int(0)
        );
        assert_eq!(
            call(&mut con, "HSETNX", &["h", "a", "x"]).unwrap(),
            Value::Int(0)
        );
        assert_eq!(
            call(&mut con, "HSETNX", &["h", "z", "9"]).unwrap(),
            Value::Int(1)
        );
        assert_eq!(
            call(&mut con, "HSETNX", &["fresh", "f", "v"]).unwrap(),
            Value::Int(1)
        );

        assert_eq!(call(&mut con, "HGET", &["h", "a"]).unwrap(), bulk("6"));
        assert_eq!(call(&mut con, "HGET", &["h", "z"]).unwrap(), bulk("9"));
        assert_eq!(call(&mut con, "HGET", &["h", "nope"]).unwrap(), Value::Nil);
        assert_eq!(call(&mut con, "HGET", &["nokey", "a"]).unwrap(), Value::Nil);
        assert_eq!(call(&mut con, "HGET", &["fresh", "f"]).unwrap(), bulk("v"));
        assert_eq!(
            call(&mut con, "HMGET", &["h", "a", "nope", "c", "a"]).unwrap(),
            Value::Array(vec![bulk("6"), Value::Nil, bulk("4"), bulk("6")])
        );
        assert_eq!(
            call(&mut con, "HMGET", &["nokey", "a", "b"]).unwrap(),
            Value::Array(vec![Value::Nil, Value::Nil])
        );
        let typed: Vec<Option<String>> = con.hmget("h", &["b", "nope"]).unwrap();
        assert_eq!(typed, vec![Some("2".to_owned()), None]);

        // Fields and values are binary-safe, and an empty value is a value.
        let _: i64 = redis::cmd("HSET")
            .arg("bin")
            .arg(&b"\x00\xff"[..])
            .arg(&b"\r\n\x00"[..])
            .arg("empty")
            .arg("")
            .query(&mut con)
            .unwrap();
        let raw: Vec<u8> = con.hget("bin", &b"\x00\xff"[..]).unwrap();
        assert_eq!(raw, b"\r\n\x00");
        assert_eq!(call(&mut con, "HGET", &["bin", "empty"]).unwrap(), bulk(""));
        assert_eq!(call(&mut con, "HLEN", &["bin"]).unwrap(), Value::Int(2));
        flushall(&mut con);
    }
}

#[test]
fn hgetall_is_a_map_in_resp3_and_a_flat_array_in_resp2() {
    let server = TestServer::start();
    let mut con2 = server.connect(false);
    let mut con3 = server.connect(true);
    assert_eq!(
        call(&mut con2, "HSET", &["h", "z", "1", "a", "2", "m", "3"]).unwrap(),
        Value::Int(3)
    );

    let Value::Map(mut pairs) = call(&mut con3, "HGETALL", &["h"]).unwrap() else {
        panic!("RESP3 HGETALL is a map");
    };
    pairs.sort_by_key(|(field, _)| format!("{field:?}"));
    assert_eq!(
        pairs,
        vec![
            (bulk("a"), bulk("2")),
            (bulk("m"), bulk("3")),
            (bulk("z"), bulk("1")),
        ]
    );
    let Value::Array(flat) = call(&mut con2, "HGETALL", &["h"]).unwrap() else {
        panic!("RESP2 HGETALL is an array");
    };
    let mut flat: Vec<(Value, Value)> = flat
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    flat.sort_by_key(|(field, _)| format!("{field:?}"));
    assert_eq!(flat, pairs);

    // A missing key reads as an empty hash.
    assert_eq!(
        call(&mut con3, "HGETALL", &["nokey"]).unwrap(),
        Value::Map(vec![])
    );
    assert_eq!(
        call(&mut con2, "HGETALL", &["nokey"]).unwrap(),
        Value::Array(vec![])
    );
    for con in [&mut con2, &mut con3] {
        let all: std::collections::HashMap<String, i64> = con.hgetall("h").unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all["m"], 3);
    }
}

#[test]
fn hdel_hexists_hlen_hkeys_hvals() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        assert_eq!(
            call(&mut con, "HSET", &["h", "a", "1", "b", "2", "c", "3"]).unwrap(),
            Value::Int(3)
        );
        assert_eq!(call(&mut con, "HLEN", &["h"]).unwrap(), Value::Int(3));
        assert_eq!(call(&mut con, "HLEN", &["nokey"]).unwrap(), Value::Int(0));
        assert_eq!(
            sorted(call(&mut con, "HKEYS", &["h"]).unwrap()),
            ["a", "b", "c"]
        );
        assert_eq!(
            sorted(call(&mut con, "HVALS", &["h"]).unwrap()),
            ["1", "2", "3"]
        );
        assert_eq!(
            call(&mut con, "HKEYS", &["nokey"]).unwrap(),
            Value::Array(vec![])
        );
        assert_eq!(
            call(&mut con, "HVALS", &["nokey"]).unwrap(),
            Value::Array(vec![])
        );
        assert_eq!(
            call(&mut con, "HEXISTS", &["h", "b"]).unwrap(),
            Value::Int(1)
        );
        assert_eq!(
            call(&mut con, "HEXISTS", &["h", "x"]).unwrap(),
            Value::Int(0)
        );
        assert_eq!(
            call(&mut con, "HEXISTS", &["nokey", "b"]).unwrap(),
            Value::Int(0)
        );

        assert_eq!(
            call(&mut con, "HDEL", &["h", "a", "nope", "a"]).unwrap(),
            Value::Int(1)
        );
        assert_eq!(
            call(&mut con, "HEXISTS", &["h", "a"]).unwrap(),
            Value::Int(0)
        );
        assert_eq!(call(&mut con, "HLEN", &["h"]).unwrap(), Value::Int(2));
        assert_eq!(
            call(&mut con, "HDEL", &["nokey", "a"]).unwrap(),
            Value::Int(0)
        );
        assert_eq!(
            con.exists::<_, i64>("nokey").unwrap(),
            0,
            "HDEL creates nothing"
        );

        // Deleting the last field deletes the key.
        assert_eq!(
            call(&mut con, "HDEL", &["h", "b", "c"]).unwrap(),
            Value::Int(2)
        );
        assert_eq!(con.exists::<_, i64>("h").unwrap(), 0);
        let kind: String = redis::cmd("TYPE").arg("h").query(&mut con).unwrap();
        assert_eq!(kind, "none");
        assert_eq!(server.stored_keys(), 0);
        assert_eq!(call(&mut con, "HGETALL", &["h"]).unwrap(), {
            if resp3 {
                Value::Map(vec![])
            } else {
                Value::Array(vec![])
            }
        });
    }
}

#[test]
fn hincrby_creates_adds_and_refuses_what_redis_refuses() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        assert_eq!(
            call(&mut con, "HINCRBY", &["h", "n", "5"]).unwrap(),
            Value::Int(5)
        );
        assert_eq!(
            call(&mut con, "HINCRBY", &["h", "n", "-7"]).unwrap(),
            Value::Int(-2)
        );
        assert_eq!(
            call(&mut con, "HINCRBY", &["h", "m", "0"]).unwrap(),
            Value::Int(0)
        );
        assert_eq!(call(&mut con, "HGET", &["h", "n"]).unwrap(), bulk("-2"));
        let kind: String = redis::cmd("TYPE").arg("h").query(&mut con).unwrap();
        assert_eq!(kind, "hash");

        for value in ["abc", " 5", "05", "+5", "1.5", ""] {
            let _: i64 = con.hset("h", "s", value).unwrap();
            assert_eq!(
                error_of(&mut con, "HINCRBY", &["h", "s", "1"]),
                "ERR hash value is not an integer",
                "field holding {value:?}"
            );
            assert_eq!(call(&mut con, "HGET", &["h", "s"]).unwrap(), bulk(value));
        }
        let _: i64 = con.hset("h", "max", i64::MAX).unwrap();
        assert_eq!(
            error_of(&mut con, "HINCRBY", &["h", "max", "1"]),
            "ERR increment or decrement would overflow"
        );
        let _: i64 = con.hset("h", "min", i64::MIN).unwrap();
        assert_eq!(
            error_of(&mut con, "HINCRBY", &["h", "min", "-1"]),
            "ERR increment or decrement would overflow"
        );
        assert_eq!(
            call(&mut con, "HGET", &["h", "max"]).unwrap(),
            bulk(&i64::MAX.to_string())
        );
        assert_eq!(
            call(&mut con, "HINCRBY", &["h", "max", "-1"]).unwrap(),
            Value::Int(i64::MAX - 1)
        );

        for increment in ["x", "1.5", "99999999999999999999", ""] {
            assert_eq!(
                error_of(&mut con, "HINCRBY", &["h", "n", increment]),
                "ERR value is not an integer or out of range",
                "increment {increment:?}"
            );
            assert_eq!(
                error_of(&mut con, "HINCRBY", &["other", "n", increment]),
                "ERR value is not an integer or out of range"
            );
        }
        assert_eq!(call(&mut con, "HGET", &["h", "n"]).unwrap(), bulk("-2"));
        assert_eq!(
            con.exists::<_, i64>("other").unwrap(),
            0,
            "a refused HINCRBY creates nothing"
        );
        flushall(&mut con);
    }
}

#[test]
fn wrong_arity() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let cases: &[(&str, &[&str])] = &[
            ("HSET", &[]),
            ("HSET", &["h"]),
            ("HSET", &["h", "a"]),
            ("HSET", &["h", "a", "1", "b"]),
            ("HSETNX", &["h", "a"]),
            ("HSETNX", &["h", "a", "b", "c"]),
            ("HGET", &["h"]),
            ("HGET", &["h", "a", "b"]),
            ("HMGET", &["h"]),
            ("HDEL", &["h"]),
            ("HEXISTS", &["h"]),
            ("HEXISTS", &["h", "a", "b"]),
            ("HLEN", &[]),
            ("HLEN", &["a", "b"]),
            ("HKEYS", &["a", "b"]),
            ("HVALS", &["a", "b"]),
            ("HGETALL", &[]),
            ("HGETALL", &["a", "b"]),
            ("HINCRBY", &["h", "f"]),
            ("HINCRBY", &["h", "f", "1", "2"]),
        ];
        for (name, args) in cases {
            assert_eq!(
                error_of(&mut con, name, args),
                format!(
                    "ERR wrong number of arguments for '{}' command",
                    name.to_lowercase()
                ),
                "{name} {args:?}"
            );
        }
        assert_eq!(server.stored_keys(), 0, "no refused command wrote anything");
    }
}

#[test]
fn wrongtype_between_strings_and_hashes() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let _: () = con.set("s", "text").unwrap();
        let _: i64 = con.hset("h", "f", "7").unwrap();

        let on_string: &[(&str, &[&str])] = &[
            ("HSET", &["f", "v"]),
            ("HSETNX", &["f", "v"]),
            ("HGET", &["f"]),
            ("HMGET", &["f", "g"]),
            ("HGETALL", &[]),
            ("HDEL", &["f"]),
            ("HEXISTS", &["f"]),
            ("HLEN", &[]),
            ("HKEYS", &[]),
            ("HVALS", &[]),
            ("HINCRBY", &["f", "1"]),
        ];
        for (name, rest) in on_string {
            let mut args = vec!["s"];
            args.extend_from_slice(rest);
            assert_eq!(
                error_of(&mut con, name, &args),
                WRONGTYPE,
                "{name} on a string"
            );
        }
        let on_hash: &[(&str, &[&str])] = &[
            ("GET", &[]),
            ("GETDEL", &[]),
            ("GETEX", &[]),
            ("GETSET", &["v"]),
            ("APPEND", &["v"]),
            ("INCR", &[]),
            ("DECRBY", &["2"]),
            ("STRLEN", &[]),
            ("SET", &["v", "GET"]),
        ];
        for (name, rest) in on_hash {
            let mut args = vec!["h"];
            args.extend_from_slice(rest);
            assert_eq!(
                error_of(&mut con, name, &args),
                WRONGTYPE,
                "{name} on a hash"
            );
        }
        let mget: Vec<Option<String>> = con.mget(&["s", "h"]).unwrap();
        assert_eq!(
            mget,
            vec![Some("text".to_owned()), None],
            "MGET skips other types"
        );
        // Nothing was changed by the refused commands.
        assert_eq!(con.get::<_, String>("s").unwrap(), "text");
        assert_eq!(call(&mut con, "HGETALL", &["h"]).unwrap(), {
            let pairs = vec![(bulk("f"), bulk("7"))];
            if resp3 {
                Value::Map(pairs)
            } else {
                Value::Array(vec![bulk("f"), bulk("7")])
            }
        });
        flushall(&mut con);
    }
}

#[test]
fn set_overwrites_a_hash_and_its_deadline() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let _: i64 = con.hset("k", "f", "v").unwrap();
        assert_eq!(con.expire::<_, i64>("k", 100).unwrap(), 1);
        let _: () = con.set("k", "plain").unwrap();
        let kind: String = redis::cmd("TYPE").arg("k").query(&mut con).unwrap();
        assert_eq!(kind, "string");
        assert_eq!(con.get::<_, String>("k").unwrap(), "plain");
        assert_eq!(
            con.ttl::<_, i64>("k").unwrap(),
            -1,
            "SET clears the deadline"
        );
        assert_eq!(error_of(&mut con, "HGET", &["k", "f"]), WRONGTYPE);
        // And the other way round: DEL, then HSET makes a hash again.
        assert_eq!(con.del::<_, i64>("k").unwrap(), 1);
        let _: i64 = con.hset("k", "f", "w").unwrap();
        let kind: String = redis::cmd("TYPE").arg("k").query(&mut con).unwrap();
        assert_eq!(kind, "hash");
        flushall(&mut con);
    }
}

#[test]
fn hashes_expire_and_keep_their_deadline_across_writes() {
    let server = TestServer::with_manual_clock();
    let mut con = server.client3();
    let _: i64 = con.hset("cart", "apples", "1").unwrap();
    let _: i64 = con.hset("forever", "f", "v").unwrap();
    assert_eq!(con.ttl::<_, i64>("cart").unwrap(), -1);
    assert_eq!(con.expire::<_, i64>("cart", 10).unwrap(), 1);
    assert_eq!(con.pttl::<_, i64>("cart").unwrap(), 10_000);

    // Field writes keep the deadline (as in Redis), they do not slide it.
    server.advance(4000);
    assert_eq!(
        call(&mut con, "HSET", &["cart", "pears", "2"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(
        call(&mut con, "HINCRBY", &["cart", "apples", "2"]).unwrap(),
        Value::Int(3)
    );
    assert_eq!(
        call(&mut con, "HDEL", &["cart", "pears"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(con.pttl::<_, i64>("cart").unwrap(), 6000);

    server.advance(5999);
    assert_eq!(
        call(&mut con, "HGET", &["cart", "apples"]).unwrap(),
        bulk("3")
    );
    server.advance(1);
    assert_eq!(server.stored_keys(), 1, "reclaimed without a read");
    assert_eq!(
        call(&mut con, "HGETALL", &["cart"]).unwrap(),
        Value::Map(vec![])
    );
    assert_eq!(call(&mut con, "HLEN", &["cart"]).unwrap(), Value::Int(0));
    assert_eq!(con.exists::<_, i64>("cart").unwrap(), 0);
    assert_eq!(con.ttl::<_, i64>("cart").unwrap(), -2);

    // A hash written after it expired starts from nothing, without the old deadline.
    assert_eq!(
        call(&mut con, "HINCRBY", &["cart", "apples", "1"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(con.ttl::<_, i64>("cart").unwrap(), -1);
    assert_eq!(call(&mut con, "HLEN", &["cart"]).unwrap(), Value::Int(1));

    // PERSIST takes a hash off the clock.
    assert_eq!(con.pexpire::<_, i64>("forever", 500).unwrap(), 1);
    assert_eq!(con.persist::<_, i64>("forever").unwrap(), 1);
    server.advance(1000);
    assert_eq!(
        call(&mut con, "HGET", &["forever", "f"]).unwrap(),
        bulk("v")
    );
    assert_eq!(server.stored_keys(), 2);
}
