//! String commands through the `redis` crate, each behaviour checked in RESP2 and RESP3 against
//! what Redis 7 answers: GET/SET and every SET option, SETEX, PSETEX, SETNX, GETSET, GETEX,
//! GETDEL, MGET, MSET, APPEND, STRLEN, the INCR family, binary safety, large values and a long
//! pipeline. Time only moves with the manual clock, so nothing here sleeps.

use redis::Value;
use sessiond_tests::TestServer;

use super::words::{each_protocol, error, forward, query};
use sessiond_tests::redis_calls::bulk;

fn now_s(server: &TestServer) -> u64 {
    server.now_ms() / 1000
}

#[test]
fn get_and_set_plain_values() {
    each_protocol(|_, con| {
        assert_eq!(query(con, "GET k"), Value::Nil);
        assert_eq!(query(con, "SET k v"), Value::Okay);
        assert_eq!(query(con, "GET k"), bulk("v"));
        assert_eq!(query(con, "SET k other"), Value::Okay);
        assert_eq!(query(con, "GET k"), bulk("other"));
        // Command names and options are case-insensitive.
        assert_eq!(query(con, "set k lower ex 10"), Value::Okay);
        assert_eq!(query(con, "gEt k"), bulk("lower"));
        assert_eq!(query(con, "TTL k"), Value::Int(10));
        // A plain SET makes the key persistent again.
        assert_eq!(query(con, "SET k plain"), Value::Okay);
        assert_eq!(query(con, "TTL k"), Value::Int(-1));
        // The empty string is a value like any other.
        let empty: Value = redis::cmd("SET").arg("e").arg("").query(con).unwrap();
        assert_eq!(empty, Value::Okay);
        assert_eq!(query(con, "GET e"), Value::BulkString(Vec::new()));
        assert_eq!(query(con, "EXISTS e"), Value::Int(1));
        assert_eq!(
            error(con, "GET"),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            error(con, "GET a b"),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            error(con, "SET k"),
            "ERR wrong number of arguments for 'set' command"
        );
    });
}

#[test]
fn set_nx_and_xx() {
    each_protocol(|_, con| {
        assert_eq!(query(con, "SET k v1 NX"), Value::Okay);
        assert_eq!(query(con, "SET k v2 NX"), Value::Nil);
        assert_eq!(query(con, "GET k"), bulk("v1"));
        // Repeating the same condition is allowed.
        assert_eq!(query(con, "SET k v3 NX NX"), Value::Nil);
        assert_eq!(query(con, "GET k"), bulk("v1"));

        assert_eq!(query(con, "SET missing v XX"), Value::Nil);
        assert_eq!(query(con, "EXISTS missing"), Value::Int(0));
        assert_eq!(query(con, "SET k v4 XX"), Value::Okay);
        assert_eq!(query(con, "GET k"), bulk("v4"));

        // A refused write leaves the deadline alone too.
        assert_eq!(query(con, "SET t v EX 100"), Value::Okay);
        assert_eq!(query(con, "SET t w NX EX 5"), Value::Nil);
        assert_eq!(query(con, "TTL t"), Value::Int(100));
        assert_eq!(query(con, "SET t w XX PX 5000"), Value::Okay);
        assert_eq!(query(con, "PTTL t"), Value::Int(5000));
    });
}

#[test]
fn set_get_returns_the_old_value() {
    each_protocol(|_, con| {
        // Missing: nil, and the key is written.
        assert_eq!(query(con, "SET k v1 GET"), Value::Nil);
        assert_eq!(query(con, "GET k"), bulk("v1"));
        assert_eq!(query(con, "SET k v2 GET"), bulk("v1"));
        assert_eq!(query(con, "GET k"), bulk("v2"));

        // NX GET on an existing key: the old value, and nothing is written.
        assert_eq!(query(con, "SET k v3 NX GET"), bulk("v2"));
        assert_eq!(query(con, "GET k"), bulk("v2"));
        // NX GET on a missing key: nil, and the key is written.
        assert_eq!(query(con, "SET n v NX GET"), Value::Nil);
        assert_eq!(query(con, "GET n"), bulk("v"));

        // XX GET on a missing key: nil, and nothing is written.
        assert_eq!(query(con, "SET x v XX GET"), Value::Nil);
        assert_eq!(query(con, "EXISTS x"), Value::Int(0));
        // XX GET on an existing key: the old value, and the key is written.
        assert_eq!(query(con, "SET k v4 GET XX"), bulk("v2"));
        assert_eq!(query(con, "GET k"), bulk("v4"));

        // GET combines with a deadline.
        assert_eq!(query(con, "SET k v5 GET EX 30"), bulk("v4"));
        assert_eq!(query(con, "TTL k"), Value::Int(30));
    });
}

#[test]
fn set_with_relative_and_absolute_deadlines() {
    each_protocol(|server, con| {
        assert_eq!(query(con, "SET ex v EX 10"), Value::Okay);
        assert_eq!(query(con, "TTL ex"), Value::Int(10));
        assert_eq!(query(con, "PTTL ex"), Value::Int(10_000));

        assert_eq!(query(con, "SET px v PX 1500"), Value::Okay);
        assert_eq!(query(con, "PTTL px"), Value::Int(1500));

        let exat = now_s(server) + 20;
        assert_eq!(query(con, &format!("SET exat v EXAT {exat}")), Value::Okay);
        assert_eq!(query(con, "TTL exat"), Value::Int(20));
        assert_eq!(query(con, "EXPIRETIME exat"), Value::Int(exat as i64));

        let pxat = server.now_ms() + 1234;
        assert_eq!(query(con, &format!("SET pxat v PXAT {pxat}")), Value::Okay);
        assert_eq!(query(con, "PTTL pxat"), Value::Int(1234));
        assert_eq!(query(con, "PEXPIRETIME pxat"), Value::Int(pxat as i64));

        forward(server, 1233);
        assert_eq!(query(con, "GET pxat"), bulk("v"));
        forward(server, 1);
        assert_eq!(query(con, "GET pxat"), Value::Nil);
        assert_eq!(query(con, "GET px"), bulk("v"));
        forward(server, 266);
        assert_eq!(query(con, "GET px"), Value::Nil);
        forward(server, 8_500);
        assert_eq!(query(con, "GET ex"), Value::Nil);
        assert_eq!(query(con, "GET exat"), bulk("v"));
        forward(server, 10_000);
        assert_eq!(query(con, "GET exat"), Value::Nil);

        // An absolute deadline already past: OK, and the key (even an old one) is gone.
        assert_eq!(query(con, "SET old v"), Value::Okay);
        assert_eq!(query(con, "SET old new EXAT 1"), Value::Okay);
        assert_eq!(query(con, "GET old"), Value::Nil);
        assert_eq!(query(con, "EXISTS old"), Value::Int(0));
        let now = server.now_ms();
        assert_eq!(query(con, &format!("SET old v PXAT {now}")), Value::Okay);
        assert_eq!(query(con, "EXISTS old"), Value::Int(0));
    });
}

#[test]
fn set_keepttl_keeps_the_deadline() {
    each_protocol(|server, con| {
        assert_eq!(query(con, "SET k v EX 100"), Value::Okay);
        forward(server, 40_000);
        assert_eq!(query(con, "SET k v2 KEEPTTL"), Value::Okay);
        assert_eq!(query(con, "GET k"), bulk("v2"));
        assert_eq!(query(con, "TTL k"), Value::Int(60));
        assert_eq!(query(con, "SET k v3 XX GET KEEPTTL"), bulk("v2"));
        assert_eq!(query(con, "TTL k"), Value::Int(60));
        assert_eq!(query(con, "SET k v4 KEEPTTL KEEPTTL"), Value::Okay);
        assert_eq!(query(con, "TTL k"), Value::Int(60));
        // Without KEEPTTL the deadline goes.
        assert_eq!(query(con, "SET k v5"), Value::Okay);
        assert_eq!(query(con, "TTL k"), Value::Int(-1));
        // KEEPTTL on a missing key: there is nothing to keep.
        assert_eq!(query(con, "SET fresh v KEEPTTL"), Value::Okay);
        assert_eq!(query(con, "TTL fresh"), Value::Int(-1));
        // An expired key has no deadline to keep either.
        assert_eq!(query(con, "SET gone v PX 10"), Value::Okay);
        forward(server, 10);
        assert_eq!(query(con, "SET gone v KEEPTTL"), Value::Okay);
        assert_eq!(query(con, "TTL gone"), Value::Int(-1));
    });
}

#[test]
fn set_option_errors() {
    each_protocol(|_, con| {
        for line in [
            "SET k v NX XX",
            "SET k v XX NX",
            "SET k v EX 10 PX 100",
            "SET k v PX 100 EXAT 10",
            "SET k v EXAT 10 PXAT 10",
            "SET k v EX 10 KEEPTTL",
            "SET k v KEEPTTL PX 10",
            "SET k v EX",
            "SET k v PXAT",
            "SET k v FOO",
            "SET k v EX 10 BAR",
            "SET k v GET EX",
            // Redis reads every option before it converts the number.
            "SET k v EX abc NX XX",
            "SET k v EX 0 KEEPTTL",
        ] {
            assert_eq!(error(con, line), "ERR syntax error", "{line}");
        }
        for line in [
            "SET k v EX 0",
            "SET k v EX -1",
            "SET k v PX 0",
            "SET k v PX -5",
            "SET k v EXAT 0",
            "SET k v EXAT -10",
            "SET k v PXAT 0",
            "SET k v PXAT -1",
            // Seconds whose milliseconds overflow, and a deadline beyond the end of time.
            "SET k v EX 9223372036854775807",
            "SET k v PX 9223372036854775807",
        ] {
            assert_eq!(
                error(con, line),
                "ERR invalid expire time in 'set' command",
                "{line}"
            );
        }
        for line in [
            "SET k v EX abc",
            "SET k v PX 1.5",
            "SET k v EX 10s",
            "SET k v EXAT 99999999999999999999",
        ] {
            assert_eq!(
                error(con, line),
                "ERR value is not an integer or out of range",
                "{line}"
            );
        }
        // No failed command wrote anything, and the connection lives on.
        assert_eq!(query(con, "EXISTS k"), Value::Int(0));
        assert_eq!(query(con, "SET k v"), Value::Okay);
    });
}

#[test]
fn set_repeated_expiry_option_takes_the_last() {
    each_protocol(|_, con| {
        // Redis accepts the same expiry option twice and keeps the last value.
        assert_eq!(query(con, "SET k v EX 10 EX 20"), Value::Okay);
        assert_eq!(query(con, "TTL k"), Value::Int(20));
        assert_eq!(query(con, "SET k v PX 100 PX 2000"), Value::Okay);
        assert_eq!(query(con, "PTTL k"), Value::Int(2000));
        // Only the value that counts is validated.
        assert_eq!(query(con, "SET k v EX abc EX 30"), Value::Okay);
        assert_eq!(query(con, "TTL k"), Value::Int(30));
        assert_eq!(
            error(con, "SET k v EX 30 EX 0"),
            "ERR invalid expire time in 'set' command"
        );
    });
}

#[test]
fn setex_and_psetex() {
    each_protocol(|server, con| {
        assert_eq!(query(con, "SETEX k 10 v"), Value::Okay);
        assert_eq!(query(con, "GET k"), bulk("v"));
        assert_eq!(query(con, "TTL k"), Value::Int(10));
        assert_eq!(query(con, "PSETEX k 1500 w"), Value::Okay);
        assert_eq!(query(con, "GET k"), bulk("w"));
        assert_eq!(query(con, "PTTL k"), Value::Int(1500));
        // Overwriting a persistent key gives it the deadline.
        assert_eq!(query(con, "SET p v"), Value::Okay);
        assert_eq!(query(con, "SETEX p 5 v2"), Value::Okay);
        assert_eq!(query(con, "TTL p"), Value::Int(5));
        forward(server, 1500);
        assert_eq!(query(con, "GET k"), Value::Nil);
        assert_eq!(query(con, "GET p"), bulk("v2"));

        for (line, name) in [
            ("SETEX k 0 v", "setex"),
            ("SETEX k -1 v", "setex"),
            ("SETEX k 9223372036854775807 v", "setex"),
            ("PSETEX k 0 v", "psetex"),
            ("PSETEX k -10 v", "psetex"),
        ] {
            assert_eq!(
                error(con, line),
                format!("ERR invalid expire time in '{name}' command"),
                "{line}"
            );
        }
        assert_eq!(
            error(con, "SETEX k abc v"),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            error(con, "PSETEX k 1.5 v"),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            error(con, "SETEX k 10"),
            "ERR wrong number of arguments for 'setex' command"
        );
        assert_eq!(
            error(con, "PSETEX k 10 v extra"),
            "ERR wrong number of arguments for 'psetex' command"
        );
        assert_eq!(query(con, "EXISTS k"), Value::Int(0));
    });
}

#[test]
fn setnx_and_getset() {
    each_protocol(|_, con| {
        assert_eq!(query(con, "SETNX k v1"), Value::Int(1));
        assert_eq!(query(con, "SETNX k v2"), Value::Int(0));
        assert_eq!(query(con, "GET k"), bulk("v1"));
        assert_eq!(query(con, "SET t v EX 100"), Value::Okay);
        assert_eq!(query(con, "SETNX t w"), Value::Int(0));
        assert_eq!(query(con, "TTL t"), Value::Int(100));
        assert_eq!(
            error(con, "SETNX k"),
            "ERR wrong number of arguments for 'setnx' command"
        );

        assert_eq!(query(con, "GETSET g v1"), Value::Nil);
        assert_eq!(query(con, "GET g"), bulk("v1"));
        assert_eq!(query(con, "GETSET g v2"), bulk("v1"));
        assert_eq!(query(con, "GET g"), bulk("v2"));
        // GETSET is a plain SET: the deadline goes.
        assert_eq!(query(con, "GETSET t w"), bulk("v"));
        assert_eq!(query(con, "TTL t"), Value::Int(-1));
        assert_eq!(
            error(con, "GETSET g"),
            "ERR wrong number of arguments for 'getset' command"
        );
    });
}

#[test]
fn getex_changes_or_keeps_the_deadline() {
    each_protocol(|server, con| {
        assert_eq!(query(con, "SET k v EX 100"), Value::Okay);
        forward(server, 10_000);
        // No option: a plain read that leaves the deadline alone.
        assert_eq!(query(con, "GETEX k"), bulk("v"));
        assert_eq!(query(con, "TTL k"), Value::Int(90));
        assert_eq!(query(con, "GETEX k EX 50"), bulk("v"));
        assert_eq!(query(con, "TTL k"), Value::Int(50));
        assert_eq!(query(con, "GETEX k px 2500"), bulk("v"));
        assert_eq!(query(con, "PTTL k"), Value::Int(2500));
        let exat = now_s(server) + 30;
        assert_eq!(query(con, &format!("GETEX k EXAT {exat}")), bulk("v"));
        assert_eq!(query(con, "TTL k"), Value::Int(30));
        assert_eq!(query(con, "EXPIRETIME k"), Value::Int(exat as i64));
        let pxat = server.now_ms() + 4321;
        assert_eq!(query(con, &format!("GETEX k PXAT {pxat}")), bulk("v"));
        assert_eq!(query(con, "PTTL k"), Value::Int(4321));
        assert_eq!(query(con, "GETEX k PERSIST"), bulk("v"));
        assert_eq!(query(con, "TTL k"), Value::Int(-1));
        forward(server, 1_000_000);
        assert_eq!(query(con, "GET k"), bulk("v"));
        // On a persistent key, EX gives it a deadline, which then applies.
        assert_eq!(query(con, "GETEX k PX 10"), bulk("v"));
        forward(server, 10);
        assert_eq!(query(con, "GETEX k"), Value::Nil);

        assert_eq!(query(con, "GETEX missing"), Value::Nil);
        assert_eq!(query(con, "GETEX missing EX 10"), Value::Nil);
        assert_eq!(query(con, "GETEX missing PERSIST"), Value::Nil);
        assert_eq!(query(con, "EXISTS missing"), Value::Int(0));
    });
}

#[test]
fn getex_with_a_past_deadline_returns_the_value_and_deletes_the_key() {
    each_protocol(|server, con| {
        assert_eq!(query(con, "SET k v EX 100"), Value::Okay);
        assert_eq!(query(con, "GETEX k EXAT 1"), bulk("v"));
        assert_eq!(query(con, "GET k"), Value::Nil);
        assert_eq!(query(con, "EXISTS k"), Value::Int(0));
        assert_eq!(query(con, "TTL k"), Value::Int(-2));
        // A deadline of exactly now is already past.
        assert_eq!(query(con, "SET p v"), Value::Okay);
        let now = server.now_ms();
        assert_eq!(query(con, &format!("GETEX p PXAT {now}")), bulk("v"));
        assert_eq!(query(con, "EXISTS p"), Value::Int(0));
    });
}

#[test]
fn getex_option_errors() {
    each_protocol(|_, con| {
        assert_eq!(query(con, "SET k v EX 100"), Value::Okay);
        for line in [
            "GETEX k PERSIST EX 10",
            "GETEX k EX 10 PERSIST",
            "GETEX k EX 10 PX 10",
            "GETEX k PXAT 10 EXAT 10",
            "GETEX k KEEPTTL",
            "GETEX k GET",
            "GETEX k NX",
            "GETEX k FOO",
            "GETEX k EX",
            // Every option is read before the number is converted.
            "GETEX k EX abc FOO",
        ] {
            assert_eq!(error(con, line), "ERR syntax error", "{line}");
        }
        for line in [
            "GETEX k EX 0",
            "GETEX k EX -1",
            "GETEX k PX 0",
            "GETEX k EXAT 0",
            "GETEX k PXAT -1",
            "GETEX k EX 9223372036854775807",
        ] {
            assert_eq!(
                error(con, line),
                "ERR invalid expire time in 'getex' command",
                "{line}"
            );
        }
        assert_eq!(
            error(con, "GETEX k EX abc"),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            error(con, "GETEX"),
            "ERR wrong number of arguments for 'getex' command"
        );
        // No failed GETEX touched the deadline.
        assert_eq!(query(con, "TTL k"), Value::Int(100));
    });
}

#[test]
fn getex_checks_the_key_before_the_deadline_and_takes_repeated_options() {
    each_protocol(|_, con| {
        // Redis looks the key up before it validates the deadline: a missing key is nil.
        assert_eq!(query(con, "GETEX missing EX 0"), Value::Nil);
        assert_eq!(query(con, "GETEX missing PX abc"), Value::Nil);
        // The same option twice is accepted; the last value wins.
        assert_eq!(query(con, "SET k v"), Value::Okay);
        assert_eq!(query(con, "GETEX k EX 1 EX 20"), bulk("v"));
        assert_eq!(query(con, "TTL k"), Value::Int(20));
        assert_eq!(query(con, "GETEX k PERSIST PERSIST"), bulk("v"));
        assert_eq!(query(con, "TTL k"), Value::Int(-1));
    });
}

#[test]
fn getdel_returns_and_deletes() {
    each_protocol(|_, con| {
        assert_eq!(query(con, "SET k v EX 100"), Value::Okay);
        assert_eq!(query(con, "GETDEL k"), bulk("v"));
        assert_eq!(query(con, "GET k"), Value::Nil);
        assert_eq!(query(con, "TTL k"), Value::Int(-2));
        assert_eq!(query(con, "GETDEL k"), Value::Nil);
        assert_eq!(query(con, "GETDEL missing"), Value::Nil);
        assert_eq!(
            error(con, "GETDEL a b"),
            "ERR wrong number of arguments for 'getdel' command"
        );
    });
}

#[test]
fn mget_and_mset() {
    each_protocol(|server, con| {
        assert_eq!(query(con, "MSET a 1 b 2 c 3"), Value::Okay);
        assert_eq!(
            query(con, "MGET a missing b c a"),
            Value::Array(vec![bulk("1"), Value::Nil, bulk("2"), bulk("3"), bulk("1")])
        );
        assert_eq!(query(con, "MGET missing"), Value::Array(vec![Value::Nil]));
        // MSET clears deadlines; a repeated key takes its last value.
        assert_eq!(query(con, "SET a x EX 100"), Value::Okay);
        assert_eq!(query(con, "MSET a y d 1 d 2"), Value::Okay);
        assert_eq!(query(con, "TTL a"), Value::Int(-1));
        assert_eq!(
            query(con, "MGET a d"),
            Value::Array(vec![bulk("y"), bulk("2")])
        );
        // Expired keys read as nil.
        assert_eq!(query(con, "SET short v PX 5"), Value::Okay);
        forward(server, 5);
        assert_eq!(
            query(con, "MGET short a"),
            Value::Array(vec![Value::Nil, bulk("y")])
        );
        // A key of another type reads as nil, not WRONGTYPE, as in Redis.
        assert_eq!(query(con, "HSET h f v"), Value::Int(1));
        assert_eq!(
            query(con, "MGET a h a"),
            Value::Array(vec![bulk("y"), Value::Nil, bulk("y")])
        );

        for line in ["MSET a", "MSET a b c", "MSET a 1 b"] {
            assert_eq!(
                error(con, line),
                "ERR wrong number of arguments for 'mset' command",
                "{line}"
            );
        }
        assert_eq!(
            error(con, "MGET"),
            "ERR wrong number of arguments for 'mget' command"
        );
        // The refused MSETs wrote nothing.
        assert_eq!(query(con, "GET a"), bulk("y"));
        assert_eq!(query(con, "EXISTS b c"), Value::Int(2));
        assert_eq!(query(con, "GET b"), bulk("2"));
    });
}

#[test]
fn append_and_strlen() {
    each_protocol(|server, con| {
        assert_eq!(query(con, "STRLEN k"), Value::Int(0));
        assert_eq!(query(con, "APPEND k Hello"), Value::Int(5));
        assert_eq!(query(con, "TTL k"), Value::Int(-1));
        let appended: Value = redis::cmd("APPEND")
            .arg("k")
            .arg(" World")
            .query(con)
            .unwrap();
        assert_eq!(appended, Value::Int(11));
        assert_eq!(query(con, "GET k"), bulk("Hello World"));
        assert_eq!(query(con, "STRLEN k"), Value::Int(11));
        let nothing: Value = redis::cmd("APPEND").arg("k").arg("").query(con).unwrap();
        assert_eq!(nothing, Value::Int(11));

        // APPEND keeps the deadline.
        assert_eq!(query(con, "SET t v EX 100"), Value::Okay);
        forward(server, 10_000);
        assert_eq!(query(con, "APPEND t x"), Value::Int(2));
        assert_eq!(query(con, "TTL t"), Value::Int(90));
        assert_eq!(query(con, "GET t"), bulk("vx"));

        // Digits appended to a number make a number.
        assert_eq!(query(con, "SET n 1"), Value::Okay);
        assert_eq!(query(con, "APPEND n 2"), Value::Int(2));
        assert_eq!(query(con, "INCR n"), Value::Int(13));
        assert_eq!(query(con, "STRLEN n"), Value::Int(2));

        assert_eq!(
            error(con, "APPEND k"),
            "ERR wrong number of arguments for 'append' command"
        );
        assert_eq!(
            error(con, "STRLEN"),
            "ERR wrong number of arguments for 'strlen' command"
        );
    });
}

#[test]
fn incr_decr_and_their_by_forms() {
    each_protocol(|_, con| {
        assert_eq!(query(con, "INCR n"), Value::Int(1));
        assert_eq!(query(con, "INCRBY n 10"), Value::Int(11));
        assert_eq!(query(con, "DECR n"), Value::Int(10));
        assert_eq!(query(con, "DECRBY n 3"), Value::Int(7));
        assert_eq!(query(con, "INCRBY n -7"), Value::Int(0));
        assert_eq!(query(con, "DECRBY n -5"), Value::Int(5));
        // The result is stored as a string.
        assert_eq!(query(con, "GET n"), bulk("5"));
        assert_eq!(query(con, "TYPE n"), Value::SimpleString("string".into()));
        assert_eq!(query(con, "DECR d"), Value::Int(-1));
        assert_eq!(query(con, "DECRBY e 10"), Value::Int(-10));
        assert_eq!(query(con, "INCRBY f -3"), Value::Int(-3));
        assert_eq!(query(con, "SET neg -5"), Value::Okay);
        assert_eq!(query(con, "INCR neg"), Value::Int(-4));
        assert_eq!(query(con, "SET zero 0"), Value::Okay);
        assert_eq!(query(con, "INCRBY zero 0"), Value::Int(0));

        for name in ["incr", "decr"] {
            assert_eq!(
                error(con, name),
                format!("ERR wrong number of arguments for '{name}' command")
            );
        }
        for name in ["incrby", "decrby"] {
            assert_eq!(
                error(con, &format!("{name} n")),
                format!("ERR wrong number of arguments for '{name}' command")
            );
        }
    });
}

#[test]
fn incr_refuses_values_that_are_not_integers() {
    each_protocol(|_, con| {
        // Redis accepts exactly the canonical decimal form of an i64.
        for value in [
            "abc",
            "",
            " 1",
            "1 ",
            "+1",
            "01",
            "-0",
            "1.5",
            "1e3",
            "0x10",
            "99999999999999999999",
            "9223372036854775808",
        ] {
            let set: Value = redis::cmd("SET").arg("s").arg(value).query(con).unwrap();
            assert_eq!(set, Value::Okay);
            for line in ["INCR s", "DECR s", "INCRBY s 1", "DECRBY s 1"] {
                assert_eq!(
                    error(con, line),
                    "ERR value is not an integer or out of range",
                    "{line} on {value:?}"
                );
            }
            assert_eq!(query(con, "GET s"), bulk(value), "{value:?} is left alone");
        }
        // The increment itself must be an integer too.
        assert_eq!(query(con, "SET n 1"), Value::Okay);
        for line in ["INCRBY n abc", "INCRBY n 1.5", "DECRBY n +1", "INCRBY n 01"] {
            assert_eq!(
                error(con, line),
                "ERR value is not an integer or out of range",
                "{line}"
            );
        }
        assert_eq!(query(con, "GET n"), bulk("1"));
    });
}

#[test]
fn incr_refuses_to_overflow() {
    each_protocol(|_, con| {
        assert_eq!(query(con, "SET max 9223372036854775806"), Value::Okay);
        assert_eq!(query(con, "INCR max"), Value::Int(i64::MAX));
        for line in ["INCR max", "INCRBY max 1", "DECRBY max -1"] {
            assert_eq!(
                error(con, line),
                "ERR increment or decrement would overflow",
                "{line}"
            );
        }
        assert_eq!(query(con, "GET max"), bulk("9223372036854775807"));

        assert_eq!(query(con, "SET min -9223372036854775807"), Value::Okay);
        assert_eq!(query(con, "DECR min"), Value::Int(i64::MIN));
        for line in ["DECR min", "DECRBY min 1", "INCRBY min -1"] {
            assert_eq!(
                error(con, line),
                "ERR increment or decrement would overflow",
                "{line}"
            );
        }
        assert_eq!(query(con, "GET min"), bulk("-9223372036854775808"));

        // i64::MIN cannot be negated, so DECRBY refuses it before looking at the key.
        assert_eq!(
            error(con, "DECRBY fresh -9223372036854775808"),
            "ERR decrement would overflow"
        );
        assert_eq!(query(con, "EXISTS fresh"), Value::Int(0));
        assert_eq!(
            query(con, "INCRBY fresh -9223372036854775808"),
            Value::Int(i64::MIN)
        );
        assert_eq!(
            query(con, "INCRBY big 9223372036854775807"),
            Value::Int(i64::MAX)
        );
        assert_eq!(
            error(con, "INCRBY big 9223372036854775808"),
            "ERR value is not an integer or out of range"
        );
    });
}

#[test]
fn incr_keeps_the_deadline() {
    each_protocol(|server, con| {
        assert_eq!(query(con, "SET n 10 EX 100"), Value::Okay);
        forward(server, 1_000);
        assert_eq!(query(con, "INCR n"), Value::Int(11));
        assert_eq!(query(con, "PTTL n"), Value::Int(99_000));
        assert_eq!(query(con, "INCRBY n 5"), Value::Int(16));
        assert_eq!(query(con, "DECR n"), Value::Int(15));
        assert_eq!(query(con, "DECRBY n 5"), Value::Int(10));
        assert_eq!(query(con, "PTTL n"), Value::Int(99_000));
        // Once it expires, INCR starts again from zero, with no deadline.
        forward(server, 99_000);
        assert_eq!(query(con, "INCR n"), Value::Int(1));
        assert_eq!(query(con, "TTL n"), Value::Int(-1));
    });
}

#[test]
fn keys_and_values_are_binary_safe() {
    // Every byte value, the protocol's own delimiters among them.
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let keys: [&[u8]; 4] = [
        b"nul\0key",
        b"crlf\r\nkey",
        b"\xff\xfe high",
        b"*1\r\n$4\r\nPING\r\n",
    ];
    each_protocol(|_, con| {
        for key in keys {
            let value = [key, b"\0\r\n\xff", &all_bytes].concat();
            let set: Value = redis::cmd("SET").arg(key).arg(&value).query(con).unwrap();
            assert_eq!(set, Value::Okay);
            let got: Value = redis::cmd("GET").arg(key).query(con).unwrap();
            assert_eq!(got, Value::BulkString(value.clone()), "{key:?}");
            let len: i64 = redis::cmd("STRLEN").arg(key).query(con).unwrap();
            assert_eq!(len, value.len() as i64);
            let exists: i64 = redis::cmd("EXISTS").arg(key).query(con).unwrap();
            assert_eq!(exists, 1);
        }
        // A key differing only after a NUL is a different key.
        let other: Value = redis::cmd("GET").arg(b"nul\0kez").query(con).unwrap();
        assert_eq!(other, Value::Nil);
        let prefix: Value = redis::cmd("GET").arg(b"nul").query(con).unwrap();
        assert_eq!(prefix, Value::Nil);

        let mget: Vec<Vec<u8>> = redis::cmd("MGET").arg(&keys[..]).query(con).unwrap();
        let expected: Vec<Vec<u8>> = keys
            .iter()
            .map(|key| [*key, b"\0\r\n\xff", &all_bytes].concat())
            .collect();
        assert_eq!(mget, expected);

        let mut listed: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(con).unwrap();
        listed.sort();
        let mut sorted: Vec<Vec<u8>> = keys.iter().map(|key| key.to_vec()).collect();
        sorted.sort();
        assert_eq!(listed, sorted);

        let appended: i64 = redis::cmd("APPEND")
            .arg(keys[0])
            .arg(b"\r\n\0")
            .query(con)
            .unwrap();
        assert_eq!(appended, expected[0].len() as i64 + 3);
        let deleted: Value = redis::cmd("GETDEL").arg(keys[0]).query(con).unwrap();
        assert_eq!(
            deleted,
            Value::BulkString([&expected[0][..], b"\r\n\0"].concat())
        );

        // Binary values round-trip through MSET and GETSET as well.
        let mset: Value = redis::cmd("MSET")
            .arg(b"m\0")
            .arg(b"\xff\r")
            .arg(b"m\n")
            .arg(b"\0")
            .query(con)
            .unwrap();
        assert_eq!(mset, Value::Okay);
        let old: Value = redis::cmd("GETSET")
            .arg(b"m\0")
            .arg(b"\n\n")
            .query(con)
            .unwrap();
        assert_eq!(old, Value::BulkString(b"\xff\r".to_vec()));
        let both: Vec<Vec<u8>> = redis::cmd("MGET")
            .arg(b"m\0")
            .arg(b"m\n")
            .query(con)
            .unwrap();
        assert_eq!(both, vec![b"\n\n".to_vec(), b"\0".to_vec()]);
    });
}

#[test]
fn large_values_round_trip() {
    const HALF_MIB: usize = 512 * 1024;
    let first: Vec<u8> = (0..HALF_MIB).map(|i| (i * 31 % 251) as u8).collect();
    let second: Vec<u8> = (0..HALF_MIB).map(|i| (i * 7 % 256) as u8).collect();
    each_protocol(|_, con| {
        let set: Value = redis::cmd("SET").arg("big").arg(&first).query(con).unwrap();
        assert_eq!(set, Value::Okay);
        let got: Vec<u8> = redis::cmd("GET").arg("big").query(con).unwrap();
        assert!(got == first, "512 KiB value changed on the way");
        assert_eq!(query(con, "STRLEN big"), Value::Int(HALF_MIB as i64));

        let len: i64 = redis::cmd("APPEND")
            .arg("big")
            .arg(&second)
            .query(con)
            .unwrap();
        assert_eq!(len, 2 * HALF_MIB as i64);
        let joined = [&first[..], &second[..]].concat();
        let got: Vec<u8> = redis::cmd("GET").arg("big").query(con).unwrap();
        assert!(got == joined, "1 MiB value changed on the way");

        let old: Vec<u8> = redis::cmd("GETSET")
            .arg("big")
            .arg(&second)
            .query(con)
            .unwrap();
        assert!(old == joined);
        let set: Value = redis::cmd("SET")
            .arg("big2")
            .arg(&first)
            .query(con)
            .unwrap();
        assert_eq!(set, Value::Okay);
        let both: Vec<Vec<u8>> = redis::cmd("MGET")
            .arg("big")
            .arg("big2")
            .query(con)
            .unwrap();
        assert!(both == vec![second.clone(), first.clone()]);
    });
}

#[test]
fn a_pipeline_of_a_thousand_commands_answers_in_order() {
    each_protocol(|_, con| {
        let mut pipe = redis::pipe();
        let mut expected = Vec::with_capacity(1000);
        // Keys written and read within one batch of the commands decoded (and prefetched)
        // together, some of them missing when the batch was decoded.
        for i in 0..200 {
            pipe.cmd("SET")
                .arg(format!("key:{i}"))
                .arg(format!("value:{i}"));
            expected.push(Value::Okay);
            pipe.cmd("GET").arg(format!("key:{i}"));
            expected.push(bulk(&format!("value:{i}")));
            pipe.cmd("INCR").arg("counter");
            expected.push(Value::Int(i + 1));
            pipe.cmd("GET").arg(format!("missing:{i}"));
            expected.push(Value::Nil);
            pipe.cmd("MGET")
                .arg(format!("missing:{i}"))
                .arg(format!("key:{i}"));
            expected.push(Value::Array(vec![Value::Nil, bulk(&format!("value:{i}"))]));
        }
        let replies: Vec<Value> = pipe.query(con).unwrap();
        assert_eq!(replies.len(), 1000);
        assert_eq!(replies, expected);
        assert_eq!(query(con, "DBSIZE"), Value::Int(201));
        assert_eq!(query(con, "GET counter"), bulk("200"));
    });
}
