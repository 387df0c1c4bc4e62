//! Native sessions through the `redis` crate: every `SESSION.*` command with its options and
//! error paths in RESP2 and RESP3, idle and absolute expiry on the manual clock, server-issued
//! IDs, versioned writes under contention, and how the key commands treat session keys.

use std::collections::{HashMap, HashSet};
use std::sync::Barrier;

use redis::{Commands, Connection, RedisResult, Value};
use sessiond::{Clock, Config};
use sessiond_tests::redis_calls::{call, error_of, WRONGTYPE};
use sessiond_tests::{TestServer, CLOCK_START_MS};

/// `SESSION.CREATE options...`, which must succeed; the new ID.
fn create(con: &mut Connection, options: &[&str]) -> String {
    redis::cmd("SESSION.CREATE")
        .arg(options)
        .query(con)
        .expect("SESSION.CREATE")
}

/// `SESSION.INFO id` as a map of field name to value; `None` for a nil reply.
fn info(con: &mut Connection, id: &str) -> Option<HashMap<String, Value>> {
    redis::cmd("SESSION.INFO")
        .arg(id)
        .query(con)
        .expect("SESSION.INFO")
}

/// An integer field of a `SESSION.INFO` map.
fn int(info: &HashMap<String, Value>, field: &str) -> i64 {
    match info.get(field) {
        Some(Value::Int(n)) => *n,
        other => panic!("SESSION.INFO {field}: expected an integer, got {other:?}"),
    }
}

/// `SESSION.GET id` (all fields) as a map.
fn fields(con: &mut Connection, id: &str) -> Option<HashMap<String, String>> {
    redis::cmd("SESSION.GET")
        .arg(id)
        .query(con)
        .expect("SESSION.GET")
}

fn list(con: &mut Connection, user: &str) -> Vec<String> {
    redis::cmd("SESSION.LIST")
        .arg(user)
        .query(con)
        .expect("SESSION.LIST")
}

fn count(con: &mut Connection, user: &str) -> i64 {
    redis::cmd("SESSION.COUNT")
        .arg(user)
        .query(con)
        .expect("SESSION.COUNT")
}

fn touch(con: &mut Connection, id: &str) -> i64 {
    redis::cmd("SESSION.TOUCH")
        .arg(id)
        .query(con)
        .expect("SESSION.TOUCH")
}

/// A counter of the `INFO sessions` section.
fn session_stat(con: &mut Connection, name: &str) -> i64 {
    let text: String = redis::cmd("INFO")
        .arg("sessions")
        .query(con)
        .expect("INFO sessions");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("INFO sessions has no {name}: {text}"))
        .trim()
        .parse()
        .expect("an integer counter")
}

/// Every key a full `SCAN 0 TYPE kind` iteration returns.
fn scan_type(con: &mut Connection, kind: &str) -> Vec<String> {
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("TYPE")
            .arg(kind)
            .query(con)
            .expect("SCAN");
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// Moves the manual clock without waiting for the active expiry task: enough where nothing
/// checks what has been reclaimed, since expired sessions are invisible at once.
fn move_clock(server: &TestServer, ms: u64) {
    server
        .clock
        .as_ref()
        .expect("server started with a manual clock")
        .advance(ms);
}

/// A manual-clock server with a per-user cap.
fn manual_clock_with_cap(max_per_user: usize) -> TestServer {
    let (clock, manual) = Clock::manual(CLOCK_START_MS);
    let mut server = TestServer::with_config(Config {
        clock,
        session_max_per_user: max_per_user,
        ..Config::default()
    });
    server.clock = Some(manual);
    server
}

/// Decodes unpadded base64url (RFC 4648 §5); `None` unless `text` is canonical.
fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    if text.len() % 4 == 1 {
        return None;
    }
    let (mut acc, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in text.bytes() {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits of the last symbol are zero in a canonical encoding.
    (acc == 0).then_some(out)
}

#[test]
fn create_applies_its_options() {
    let server = TestServer::with_manual_clock();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let now = server.now_ms() as i64;

        let plain = create(&mut con, &[]);
        let plain_info = info(&mut con, &plain).unwrap();
        assert_eq!(plain_info["user"], Value::Nil);
        assert_eq!(int(&plain_info, "idle_ms"), 30 * 60 * 1000, "default idle");
        assert_eq!(
            int(&plain_info, "absolute_ms"),
            8 * 3600 * 1000,
            "default absolute"
        );
        assert_eq!(int(&plain_info, "created_ms"), now);
        assert_eq!(int(&plain_info, "expires_at_ms"), now + 30 * 60 * 1000);
        assert_eq!(int(&plain_info, "version"), 1);
        assert_eq!(int(&plain_info, "fields"), 0);
        assert_eq!(fields(&mut con, &plain), Some(HashMap::new()));

        // Options in any order, keywords in any case; DATA comes last.
        let id = create(
            &mut con,
            &[
                "idle", "5000", "USER", "alice", "ABSOLUTE", "60000", "DATA", "cart", "3", "lang",
                "fr",
            ],
        );
        let full = info(&mut con, &id).unwrap();
        assert_eq!(full["user"], Value::BulkString(b"alice".to_vec()));
        assert_eq!(int(&full, "idle_ms"), 5000);
        assert_eq!(int(&full, "absolute_ms"), 60_000);
        assert_eq!(int(&full, "expires_at_ms"), now + 5000);
        assert_eq!(int(&full, "fields"), 2);
        let data = fields(&mut con, &id).unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(data["cart"], "3");
        assert_eq!(data["lang"], "fr");
        assert_eq!(list(&mut con, "alice"), vec![id.clone()]);

        // An absolute timeout shorter than the idle one is the effective deadline.
        let short = create(&mut con, &["IDLE", "60000", "ABSOLUTE", "2000"]);
        assert_eq!(
            int(&info(&mut con, &short).unwrap(), "expires_at_ms"),
            now + 2000
        );

        // DATA takes everything after it as pairs, so an option after it is data.
        let greedy = create(&mut con, &["DATA", "USER", "bob"]);
        assert_eq!(
            fields(&mut con, &greedy).unwrap(),
            HashMap::from([("USER".to_owned(), "bob".to_owned())])
        );
        assert_eq!(count(&mut con, "bob"), 0);

        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    }
}

#[test]
fn create_rejects_bad_options() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let cases: &[(&[&str], &str)] = &[
            (&["DATA", "a"], "ERR DATA needs field value pairs"),
            (&["DATA", "a", "1", "b"], "ERR DATA needs field value pairs"),
            (&["DATA"], "ERR DATA needs field value pairs"),
            (
                &["IDLE", "0"],
                "ERR IDLE must be a positive number of milliseconds",
            ),
            (
                &["IDLE", "-1"],
                "ERR IDLE must be a positive number of milliseconds",
            ),
            (
                &["ABSOLUTE", "0"],
                "ERR ABSOLUTE must be a positive number of milliseconds",
            ),
            (
                &["ABSOLUTE", "-5"],
                "ERR ABSOLUTE must be a positive number of milliseconds",
            ),
            (
                &["IDLE", "ten"],
                "ERR value is not an integer or out of range",
            ),
            (
                &["ABSOLUTE", "1.5"],
                "ERR value is not an integer or out of range",
            ),
            (
                &["IDLE", "99999999999999999999"],
                "ERR value is not an integer or out of range",
            ),
            (&["IDLE"], "ERR syntax error"),
            (&["ABSOLUTE"], "ERR syntax error"),
            (&["USER"], "ERR syntax error"),
            (&["OWNER", "alice"], "ERR syntax error"),
            (&["USER", "alice", "extra"], "ERR syntax error"),
        ];
        for (options, expected) in cases {
            assert_eq!(
                error_of(&mut con, "SESSION.CREATE", options),
                *expected,
                "SESSION.CREATE {options:?}"
            );
        }
        // Nothing was created by the failed attempts, and the connection still works.
        assert_eq!(server.stored_keys(), 0);
        assert_eq!(session_stat(&mut con, "sessions_created"), i64::from(resp3));
        create(&mut con, &[]);
        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    }
}

#[test]
fn huge_timeouts_are_refused_or_saturate_but_never_wrap() {
    let server = TestServer::with_config_and_manual_clock(Config {
        // A default too large for any deadline: the session's deadline saturates.
        session_idle: std::time::Duration::from_millis(u64::MAX),
        session_absolute: std::time::Duration::from_millis(u64::MAX),
        ..Config::default()
    });
    let mut con = server.client();
    let max = i64::MAX.to_string();
    // As EXPIRE does: a timeout whose deadline overflows is refused.
    for option in ["IDLE", "ABSOLUTE"] {
        assert_eq!(
            error_of(&mut con, "SESSION.CREATE", &[option, &max]),
            "ERR invalid expire time in 'session.create' command",
            "{option} {max}"
        );
    }
    assert_eq!(server.stored_keys(), 0);
    let left = i64::MAX - CLOCK_START_MS as i64;
    let last = left.to_string();
    let id = create(&mut con, &["IDLE", &last, "ABSOLUTE", &last]);
    assert_eq!(con.pttl::<_, i64>(&id).unwrap(), left);
    assert_eq!(con.ttl::<_, i64>(&id).unwrap(), (left + 500) / 1000);
    let defaults = create(&mut con, &[]);
    assert_eq!(con.pttl::<_, i64>(&defaults).unwrap(), left);
    assert_eq!(con.ttl::<_, i64>(&defaults).unwrap(), (left + 500) / 1000);
    let at: i64 = redis::cmd("PEXPIRETIME")
        .arg(&defaults)
        .query(&mut con)
        .unwrap();
    assert_eq!(at, i64::MAX);
    assert_eq!(touch(&mut con, &defaults), left);
    let info = info(&mut con, &defaults).unwrap();
    assert_eq!(int(&info, "expires_at_ms"), i64::MAX);
    assert_eq!(int(&info, "ttl_ms"), left);
}

#[test]
fn wrong_arity_and_syntax_errors() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let id = create(&mut con, &["USER", "u"]);
        let id = id.as_str();
        let arity = |name: &str| format!("ERR wrong number of arguments for '{name}' command");
        let cases: Vec<(&str, Vec<&str>, String)> = vec![
            ("SESSION.GET", vec![], arity("session.get")),
            ("SESSION.SET", vec![], arity("session.set")),
            ("SESSION.SET", vec![id], arity("session.set")),
            ("SESSION.SET", vec![id, "f"], arity("session.set")),
            ("SESSION.SET", vec![id, "a", "1", "b"], arity("session.set")),
            (
                "SESSION.SET",
                vec![id, "IFVERSION", "1", "f"],
                arity("session.set"),
            ),
            // A writer that forgot its pairs gets an error, not a field called IFVERSION.
            (
                "SESSION.SET",
                vec![id, "IFVERSION", "5"],
                arity("session.set"),
            ),
            (
                "SESSION.SET",
                vec![id, "IFVERSION", "one", "f", "v"],
                "ERR value is not an integer or out of range".to_owned(),
            ),
            (
                "SESSION.SET",
                vec![id, "IFVERSION", "-1", "f", "v"],
                "ERR value is not an integer or out of range".to_owned(),
            ),
            ("SESSION.UNSET", vec![], arity("session.unset")),
            ("SESSION.UNSET", vec![id], arity("session.unset")),
            ("SESSION.TOUCH", vec![], arity("session.touch")),
            ("SESSION.TOUCH", vec![id, id], arity("session.touch")),
            ("SESSION.INFO", vec![], arity("session.info")),
            ("SESSION.INFO", vec![id, id], arity("session.info")),
            ("SESSION.REGENERATE", vec![], arity("session.regenerate")),
            (
                "SESSION.REGENERATE",
                vec![id, "USER"],
                "ERR syntax error".to_owned(),
            ),
            (
                "SESSION.REGENERATE",
                vec![id, "OWNER", "x"],
                "ERR syntax error".to_owned(),
            ),
            (
                "SESSION.REGENERATE",
                vec![id, "USER", "x", "y"],
                "ERR syntax error".to_owned(),
            ),
            ("SESSION.DESTROY", vec![], arity("session.destroy")),
            ("SESSION.LIST", vec![], arity("session.list")),
            ("SESSION.LIST", vec!["u", "v"], arity("session.list")),
            ("SESSION.COUNT", vec![], arity("session.count")),
            ("SESSION.COUNT", vec!["u", "v"], arity("session.count")),
            ("SESSION.DESTROYALL", vec![], arity("session.destroyall")),
            (
                "SESSION.DESTROYALL",
                vec!["u", "EXCEPT"],
                "ERR syntax error".to_owned(),
            ),
            (
                "SESSION.DESTROYALL",
                vec!["u", "BUT", id],
                "ERR syntax error".to_owned(),
            ),
            (
                "SESSION.DESTROYALL",
                vec!["u", "EXCEPT", id, "extra"],
                "ERR syntax error".to_owned(),
            ),
        ];
        for (name, args, expected) in &cases {
            assert_eq!(error_of(&mut con, name, args), *expected, "{name} {args:?}");
        }
        // None of the refused commands touched the session or its user.
        let after = info(&mut con, id).unwrap();
        assert_eq!(int(&after, "version"), 1);
        assert_eq!(int(&after, "fields"), 0);
        assert_eq!(list(&mut con, "u"), vec![id.to_owned()]);
        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    }
}

#[test]
fn get_all_fields_is_a_map_in_resp3_and_a_flat_array_in_resp2() {
    let server = TestServer::start();
    let mut con2 = server.connect(false);
    let mut con3 = server.connect(true);
    let id = create(&mut con2, &["DATA", "user_id", "42", "theme", "dark"]);

    let Value::Map(mut pairs) = call(&mut con3, "SESSION.GET", &[&id]).unwrap() else {
        panic!("RESP3 SESSION.GET is a map");
    };
    pairs.sort_by_key(|(field, _)| format!("{field:?}"));
    assert_eq!(
        pairs,
        vec![
            (
                Value::BulkString(b"theme".to_vec()),
                Value::BulkString(b"dark".to_vec())
            ),
            (
                Value::BulkString(b"user_id".to_vec()),
                Value::BulkString(b"42".to_vec())
            ),
        ]
    );

    let Value::Array(flat) = call(&mut con2, "SESSION.GET", &[&id]).unwrap() else {
        panic!("RESP2 SESSION.GET is an array");
    };
    let mut flat: Vec<(Value, Value)> = flat
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    flat.sort_by_key(|(field, _)| format!("{field:?}"));
    assert_eq!(flat, pairs, "the same pairs, flattened");

    // A session without fields is an empty map / an empty array.
    let empty = create(&mut con2, &[]);
    assert_eq!(
        call(&mut con3, "SESSION.GET", &[&empty]).unwrap(),
        Value::Map(vec![])
    );
    assert_eq!(
        call(&mut con2, "SESSION.GET", &[&empty]).unwrap(),
        Value::Array(vec![])
    );
}

#[test]
fn get_named_fields_and_nil_replies_in_both_protocols() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let id = create(&mut con, &["DATA", "a", "1", "b", ""]);
        assert_eq!(
            call(&mut con, "SESSION.GET", &[&id, "b", "missing", "a", "a"]).unwrap(),
            Value::Array(vec![
                Value::BulkString(b"".to_vec()),
                Value::Nil,
                Value::BulkString(b"1".to_vec()),
                Value::BulkString(b"1".to_vec()),
            ])
        );
        let typed: Vec<Option<String>> = redis::cmd("SESSION.GET")
            .arg(&id)
            .arg("a")
            .arg("zz")
            .query(&mut con)
            .unwrap();
        assert_eq!(typed, vec![Some("1".to_owned()), None]);

        // An ID the server never issued: nil (not an empty map or array) everywhere.
        let unknown = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        for (name, args) in [
            ("SESSION.GET", vec![unknown]),
            ("SESSION.GET", vec![unknown, "a"]),
            ("SESSION.SET", vec![unknown, "a", "1"]),
            ("SESSION.SET", vec![unknown, "IFVERSION", "1", "a", "1"]),
            ("SESSION.UNSET", vec![unknown, "a"]),
            ("SESSION.INFO", vec![unknown]),
            ("SESSION.REGENERATE", vec![unknown]),
            ("SESSION.REGENERATE", vec![unknown, "USER", "u"]),
        ] {
            assert_eq!(
                call(&mut con, name, &args).unwrap(),
                Value::Nil,
                "{name} {args:?} (resp3: {resp3})"
            );
        }
        assert_eq!(touch(&mut con, unknown), -2);
        assert_eq!(
            call(&mut con, "SESSION.DESTROY", &[unknown]).unwrap(),
            Value::Int(0)
        );
        // None of that created anything.
        assert_eq!(server.stored_keys(), 1);
        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    }
}

#[test]
fn set_returns_the_new_version_and_ifversion_guards_it() {
    let server = TestServer::with_manual_clock();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let id = create(&mut con, &["DATA", "cart", "0"]);
        let set = |con: &mut Connection, args: &[&str]| -> i64 {
            redis::cmd("SESSION.SET")
                .arg(&id)
                .arg(args)
                .query(con)
                .unwrap()
        };
        assert_eq!(set(&mut con, &["cart", "1"]), 2);
        assert_eq!(set(&mut con, &["cart", "2", "coupon", "X"]), 3);
        assert_eq!(set(&mut con, &["IFVERSION", "3", "cart", "3"]), 4);
        // `ifversion` is a keyword in any case; a later pair may be a field called IFVERSION.
        assert_eq!(set(&mut con, &["ifversion", "4", "IFVERSION", "9"]), 5);

        let before = fields(&mut con, &id).unwrap();
        assert_eq!(before["cart"], "3");
        assert_eq!(before["coupon"], "X");
        assert_eq!(before["IFVERSION"], "9");
        let info_before = info(&mut con, &id).unwrap();
        move_clock(&server, 1000);

        for stale in ["4", "1", "6", "0"] {
            let error = error_of(
                &mut con,
                "SESSION.SET",
                &[&id, "IFVERSION", stale, "cart", "99", "new", "x"],
            );
            assert!(error.starts_with("CONFLICT "), "{error}");
            assert!(error.contains('5'), "names the current version: {error}");
            assert!(!error.contains("99"), "{error}");
        }
        assert_eq!(
            error_of(&mut con, "SESSION.SET", &[&id, "IFVERSION", "1", "a", "b"]),
            "CONFLICT session is at version 5, not 1"
        );
        // A refused write changes nothing: not the version, not the idle timer, not the fields.
        let mut info_after = info(&mut con, &id).unwrap();
        assert_eq!(
            int(&info_after, "ttl_ms"),
            int(&info_before, "ttl_ms") - 1000,
            "only the clock moved"
        );
        info_after.insert("ttl_ms".to_owned(), info_before["ttl_ms"].clone());
        assert_eq!(info_after, info_before);
        assert_eq!(fields(&mut con, &id).unwrap(), before);
        assert_eq!(int(&info_before, "version"), 5);
        assert_eq!(set(&mut con, &["IFVERSION", "5", "cart", "4"]), 6);
        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    }
    let mut con = server.client();
    assert_eq!(session_stat(&mut con, "session_version_conflicts"), 10);
}

#[test]
fn unset_counts_removed_fields_and_bumps_the_version() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let id = create(&mut con, &["DATA", "a", "1", "b", "2", "c", "3"]);
        let unset = |con: &mut Connection, fields: &[&str]| -> i64 {
            redis::cmd("SESSION.UNSET")
                .arg(&id)
                .arg(fields)
                .query(con)
                .unwrap()
        };
        assert_eq!(unset(&mut con, &["a", "missing", "b", "a"]), 2);
        assert_eq!(int(&info(&mut con, &id).unwrap(), "version"), 2);
        assert_eq!(
            fields(&mut con, &id).unwrap(),
            HashMap::from([("c".to_owned(), "3".to_owned())])
        );
        // Every UNSET is a write, even one that removed nothing.
        assert_eq!(unset(&mut con, &["missing"]), 0);
        assert_eq!(int(&info(&mut con, &id).unwrap(), "version"), 3);
        // The last field gone leaves an empty session, not a missing one.
        assert_eq!(unset(&mut con, &["c"]), 1);
        assert_eq!(fields(&mut con, &id), Some(HashMap::new()));
        let empty = info(&mut con, &id).unwrap();
        assert_eq!(int(&empty, "version"), 4);
        assert_eq!(int(&empty, "fields"), 0);
        assert_eq!(int(&empty, "bytes"), 0);
        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    }
}

#[test]
fn info_is_a_map_in_resp3_and_a_flat_array_in_resp2() {
    let server = TestServer::with_manual_clock();
    let mut con2 = server.connect(false);
    let mut con3 = server.connect(true);
    let id = create(
        &mut con2,
        &[
            "USER", "alice", "IDLE", "10000", "ABSOLUTE", "60000", "DATA", "ab", "cde", "f", "",
        ],
    );
    let anonymous = create(&mut con2, &[]);
    move_clock(&server, 1000);
    let start = CLOCK_START_MS as i64;
    let name = |s: &str| Value::BulkString(s.as_bytes().to_vec());
    let expected = vec![
        (name("user"), name("alice")),
        (name("created_ms"), Value::Int(start)),
        (name("last_access_ms"), Value::Int(start)),
        (name("idle_ms"), Value::Int(10_000)),
        (name("absolute_ms"), Value::Int(60_000)),
        (name("expires_at_ms"), Value::Int(start + 10_000)),
        (name("ttl_ms"), Value::Int(9_000)),
        (name("version"), Value::Int(1)),
        (name("fields"), Value::Int(2)),
        (name("bytes"), Value::Int(6)),
    ];
    assert_eq!(
        call(&mut con3, "SESSION.INFO", &[&id]).unwrap(),
        Value::Map(expected.clone())
    );
    let flat: Vec<Value> = expected.into_iter().flat_map(|(k, v)| [k, v]).collect();
    assert_eq!(
        call(&mut con2, "SESSION.INFO", &[&id]).unwrap(),
        Value::Array(flat)
    );
    // No user: a null in the map, a nil in the array.
    for con in [&mut con2, &mut con3] {
        let info = info(con, &anonymous).unwrap();
        assert_eq!(info["user"], Value::Nil);
        assert_eq!(info.len(), 10);
    }
}

#[test]
fn touch_slides_the_idle_deadline_and_info_does_not() {
    let server = TestServer::with_manual_clock();
    let mut con = server.client3();
    let start = CLOCK_START_MS as i64;
    let id = create(&mut con, &["IDLE", "10000", "ABSOLUTE", "60000"]);
    assert_eq!(touch(&mut con, &id), 10_000);

    move_clock(&server, 4000);
    assert_eq!(touch(&mut con, &id), 10_000);
    let touched = info(&mut con, &id).unwrap();
    assert_eq!(int(&touched, "last_access_ms"), start + 4000);
    assert_eq!(int(&touched, "expires_at_ms"), start + 14_000);
    assert_eq!(int(&touched, "ttl_ms"), 10_000);
    assert_eq!(int(&touched, "created_ms"), start);

    // INFO reads without refreshing: the deadline stays put however often it is asked.
    move_clock(&server, 3000);
    for _ in 0..3 {
        let read = info(&mut con, &id).unwrap();
        assert_eq!(int(&read, "last_access_ms"), start + 4000);
        assert_eq!(int(&read, "ttl_ms"), 7000);
    }
    assert_eq!(
        con.pttl::<_, i64>(&id).unwrap(),
        7000,
        "PTTL does not refresh"
    );
    move_clock(&server, 7000);
    assert_eq!(info(&mut con, &id), None, "ended at its last use + idle");
    assert_eq!(touch(&mut con, &id), -2);

    // GET, SET and UNSET refresh it too.
    let id = create(&mut con, &["IDLE", "10000"]);
    let now = server.now_ms() as i64;
    for (i, (name, args)) in [
        ("SESSION.GET", vec![]),
        ("SESSION.GET", vec!["f"]),
        ("SESSION.SET", vec!["f", "v"]),
        ("SESSION.UNSET", vec!["f"]),
    ]
    .into_iter()
    .enumerate()
    {
        move_clock(&server, 9000);
        let mut full = vec![id.as_str()];
        full.extend(args);
        call(&mut con, name, &full).unwrap();
        let refreshed = info(&mut con, &id).unwrap();
        let at = now + 9000 * (i as i64 + 1);
        assert_eq!(int(&refreshed, "last_access_ms"), at, "{name}");
        assert_eq!(int(&refreshed, "expires_at_ms"), at + 10_000, "{name}");
    }

    // Near the absolute deadline TOUCH answers what is left of it.
    let capped = create(&mut con, &["IDLE", "10000", "ABSOLUTE", "15000"]);
    move_clock(&server, 8000);
    assert_eq!(touch(&mut con, &capped), 7000);
}

#[test]
fn regenerate_moves_the_session_to_a_new_id_in_one_step() {
    let server = TestServer::with_manual_clock();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let first = create(&mut con, &["USER", "alice"]);
        let old = create(
            &mut con,
            &[
                "USER", "alice", "IDLE", "10000", "ABSOLUTE", "20000", "DATA", "k", "v",
            ],
        );
        let last = create(&mut con, &["USER", "alice"]);
        let _: i64 = redis::cmd("SESSION.SET")
            .arg(&old)
            .arg("step")
            .arg("login")
            .query(&mut con)
            .unwrap();
        move_clock(&server, 2000);
        let before = info(&mut con, &old).unwrap();

        let new: String = redis::cmd("SESSION.REGENERATE")
            .arg(&old)
            .query(&mut con)
            .unwrap();
        assert_ne!(new, old);
        assert_eq!(new.len(), old.len());

        // The old ID stopped working in the same step.
        assert_eq!(fields(&mut con, &old), None);
        assert_eq!(touch(&mut con, &old), -2);
        assert_eq!(info(&mut con, &old), None);
        assert_eq!(con.exists::<_, i64>(&old).unwrap(), 0);
        assert_eq!(
            call(&mut con, "SESSION.REGENERATE", &[&old]).unwrap(),
            Value::Nil
        );

        // Data, version, user and deadlines came along (INFO first: GET refreshes the idle
        // timer); the list keeps its order.
        let after = info(&mut con, &new).unwrap();
        for field in [
            "user",
            "created_ms",
            "idle_ms",
            "absolute_ms",
            "expires_at_ms",
            "version",
            "fields",
            "bytes",
        ] {
            assert_eq!(after[field], before[field], "{field} carried over");
        }
        assert_eq!(int(&after, "version"), 2);
        assert_eq!(
            int(&after, "last_access_ms"),
            int(&before, "last_access_ms")
        );
        let data = fields(&mut con, &new).unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!((data["k"].as_str(), data["step"].as_str()), ("v", "login"));
        assert_eq!(
            list(&mut con, "alice"),
            vec![first.clone(), new.clone(), last]
        );

        // With USER it changes hands: out of one list, into the other.
        let moved: String = redis::cmd("SESSION.REGENERATE")
            .arg(&new)
            .arg("user")
            .arg("bob")
            .query(&mut con)
            .unwrap();
        assert_eq!(count(&mut con, "alice"), 2);
        assert!(!list(&mut con, "alice").contains(&moved));
        assert_eq!(list(&mut con, "bob"), vec![moved.clone()]);
        let moved_info = info(&mut con, &moved).unwrap();
        assert_eq!(moved_info["user"], Value::BulkString(b"bob".to_vec()));
        assert_eq!(int(&moved_info, "version"), 2);

        // An anonymous session gets a user at login.
        let anonymous = create(&mut con, &["DATA", "cart", "1"]);
        let logged_in: String = redis::cmd("SESSION.REGENERATE")
            .arg(&anonymous)
            .arg("USER")
            .arg("bob")
            .query(&mut con)
            .unwrap();
        assert_eq!(
            list(&mut con, "bob"),
            vec![moved.clone(), logged_in.clone()]
        );
        assert_eq!(fields(&mut con, &logged_in).unwrap()["cart"], "1");

        // The carried absolute deadline (created + 20 s) ends it, however it is used.
        move_clock(&server, 9000);
        assert_eq!(touch(&mut con, &moved), 9000);
        move_clock(&server, 9000);
        assert_eq!(touch(&mut con, &moved), -2);
        assert_eq!(list(&mut con, "bob"), vec![logged_in]);
        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    }
    let mut con = server.client();
    assert_eq!(session_stat(&mut con, "sessions_regenerated"), 6);
}

#[test]
fn destroy_list_count_and_destroyall() {
    let server = TestServer::with_manual_clock();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let mut alice = Vec::new();
        for _ in 0..4 {
            alice.push(create(&mut con, &["USER", "alice"]));
            move_clock(&server, 10);
        }
        let bob = create(&mut con, &["USER", "bob"]);
        let anonymous = create(&mut con, &[]);
        let _: () = con.set("plain", "v").unwrap();

        assert_eq!(list(&mut con, "alice"), alice, "oldest first");
        assert_eq!(count(&mut con, "alice"), 4);
        assert_eq!(list(&mut con, "nobody"), Vec::<String>::new());
        assert_eq!(
            call(&mut con, "SESSION.LIST", &["nobody"]).unwrap(),
            Value::Array(vec![])
        );
        assert_eq!(count(&mut con, "nobody"), 0);
        assert_eq!(session_stat(&mut con, "session_users"), 2);

        // DESTROY counts sessions that existed; other keys are not sessions.
        let destroyed: i64 = redis::cmd("SESSION.DESTROY")
            .arg(&alice[0])
            .arg("unknown")
            .arg(&anonymous)
            .arg("plain")
            .arg(&alice[0])
            .query(&mut con)
            .unwrap();
        assert_eq!(destroyed, 2);
        assert_eq!(con.get::<_, String>("plain").unwrap(), "v");
        assert_eq!(fields(&mut con, &alice[0]), None);
        assert_eq!(list(&mut con, "alice"), alice[1..].to_vec());

        // "Log out my other devices".
        let others: i64 = redis::cmd("SESSION.DESTROYALL")
            .arg("alice")
            .arg("except")
            .arg(&alice[2])
            .query(&mut con)
            .unwrap();
        assert_eq!(others, 2);
        assert_eq!(list(&mut con, "alice"), vec![alice[2].clone()]);
        assert_eq!(touch(&mut con, &alice[1]), -2);
        assert_eq!(touch(&mut con, &alice[3]), -2);
        // EXCEPT naming a session of someone else keeps nothing and spares it.
        let everything: i64 = redis::cmd("SESSION.DESTROYALL")
            .arg("alice")
            .arg("EXCEPT")
            .arg(&bob)
            .query(&mut con)
            .unwrap();
        assert_eq!(everything, 1);
        assert_eq!(count(&mut con, "alice"), 0);
        assert_eq!(list(&mut con, "bob"), vec![bob.clone()]);
        let none: i64 = redis::cmd("SESSION.DESTROYALL")
            .arg("alice")
            .query(&mut con)
            .unwrap();
        assert_eq!(none, 0);
        assert_eq!(session_stat(&mut con, "session_users"), 1);

        let all: i64 = redis::cmd("SESSION.DESTROYALL")
            .arg("bob")
            .query(&mut con)
            .unwrap();
        assert_eq!(all, 1);
        assert_eq!(list(&mut con, "bob"), Vec::<String>::new());
        assert_eq!(session_stat(&mut con, "sessions"), 0);
        assert_eq!(session_stat(&mut con, "session_users"), 0);
        assert_eq!(server.stored_keys(), 1, "only the string is left");
        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    }
    let mut con = server.client();
    assert_eq!(session_stat(&mut con, "sessions_destroyed"), 12);
}

#[test]
fn the_per_user_cap_destroys_the_oldest() {
    let server = manual_clock_with_cap(2);
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let a1 = create(&mut con, &["USER", "alice", "DATA", "n", "1"]);
        move_clock(&server, 10);
        let a2 = create(&mut con, &["USER", "alice"]);
        move_clock(&server, 10);
        let b1 = create(&mut con, &["USER", "bob"]);
        let anonymous: Vec<String> = (0..3).map(|_| create(&mut con, &[])).collect();
        assert_eq!(list(&mut con, "alice"), vec![a1.clone(), a2.clone()]);
        let destroyed = session_stat(&mut con, "sessions_destroyed");

        let a3 = create(&mut con, &["USER", "alice"]);
        assert_eq!(list(&mut con, "alice"), vec![a2.clone(), a3.clone()]);
        assert_eq!(count(&mut con, "alice"), 2);
        assert_eq!(fields(&mut con, &a1), None, "the oldest was destroyed");
        assert_eq!(session_stat(&mut con, "sessions_destroyed"), destroyed + 1);
        assert_eq!(con.exists::<_, i64>(&a1).unwrap(), 0);
        assert_eq!(list(&mut con, "bob"), vec![b1.clone()]);
        for id in &anonymous {
            assert!(
                touch(&mut con, id) > 0,
                "sessions without a user have no cap"
            );
        }

        // Logging in to a user at the cap counts as a new session of theirs.
        let regenerated: String = redis::cmd("SESSION.REGENERATE")
            .arg(&anonymous[0])
            .arg("USER")
            .arg("alice")
            .query(&mut con)
            .unwrap();
        assert_eq!(list(&mut con, "alice"), vec![a3.clone(), regenerated]);
        assert_eq!(fields(&mut con, &a2), None);
        assert_eq!(session_stat(&mut con, "sessions_destroyed"), destroyed + 2);
        // Regenerating within the same user does not count twice.
        let same: String = redis::cmd("SESSION.REGENERATE")
            .arg(&a3)
            .query(&mut con)
            .unwrap();
        assert_eq!(count(&mut con, "alice"), 2);
        assert!(list(&mut con, "alice").contains(&same));
        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    }
    let mut con = server.client();
    assert_eq!(session_stat(&mut con, "session_max_per_user"), 2);
}

#[test]
fn an_idle_session_ends_at_last_access_plus_idle_and_vanishes_everywhere() {
    let server = TestServer::with_manual_clock();
    let mut con = server.client3();
    let idle = create(
        &mut con,
        &["USER", "alice", "IDLE", "10000", "DATA", "k", "v"],
    );
    server.advance(1000);
    let kept = create(&mut con, &["USER", "alice"]);
    // Last use at +2000: the deadline is +12000.
    server.advance(1000);
    assert_eq!(touch(&mut con, &idle), 10_000);
    assert_eq!(server.stored_keys(), 2);

    server.advance(9999);
    assert_eq!(server.stored_keys(), 2);
    assert_eq!(con.pttl::<_, i64>(&idle).unwrap(), 1);
    assert_eq!(list(&mut con, "alice"), vec![idle.clone(), kept.clone()]);

    server.advance(1);
    assert_eq!(
        server.stored_keys(),
        1,
        "reclaimed by the active expiry task before anyone looked"
    );
    assert_expired(&mut con, &idle, "alice", &kept);
    let mut con2 = server.client();
    assert_expired(&mut con2, &idle, "alice", &kept);
}

/// `id` (of `user`, who still has `kept`) is gone from every view.
fn assert_expired(con: &mut Connection, id: &str, user: &str, kept: &str) {
    assert_eq!(fields(con, id), None);
    assert_eq!(info(con, id), None);
    assert_eq!(touch(con, id), -2);
    assert_eq!(list(con, user), vec![kept.to_owned()]);
    assert_eq!(count(con, user), 1);
    assert_eq!(scan_type(con, "session"), vec![kept.to_owned()]);
    let keys: Vec<String> = con.keys("*").expect("KEYS");
    assert_eq!(keys, vec![kept.to_owned()]);
    assert_eq!(con.ttl::<_, i64>(id).expect("TTL"), -2);
    assert_eq!(con.pttl::<_, i64>(id).expect("PTTL"), -2);
    assert_eq!(con.exists::<_, i64>(id).expect("EXISTS"), 0);
    let kind: String = redis::cmd("TYPE").arg(id).query(con).expect("TYPE");
    assert_eq!(kind, "none");
    assert_eq!(session_stat(con, "sessions"), 1);
    assert_eq!(session_stat(con, "session_users"), 1);
    assert_eq!(session_stat(con, "sessions_expired"), 1);
    assert_eq!(session_stat(con, "sessions_destroyed"), 0);
    let dbsize: i64 = redis::cmd("DBSIZE").query(con).expect("DBSIZE");
    assert_eq!(dbsize, 1);
}

#[test]
fn a_session_used_continually_still_ends_at_its_absolute_deadline() {
    let server = TestServer::with_manual_clock();
    let mut con = server.client();
    let start = CLOCK_START_MS as i64;
    let id = create(
        &mut con,
        &[
            "USER", "u", "IDLE", "10000", "ABSOLUTE", "30000", "DATA", "k", "v",
        ],
    );
    // Every use comes well within the idle timeout.
    for (step, expected_ttl) in [10_000, 10_000, 10_000, 10_000, 5_000]
        .into_iter()
        .enumerate()
    {
        server.advance(5000);
        assert_eq!(touch(&mut con, &id), expected_ttl, "use {}", step + 1);
    }
    server.advance(4999);
    assert_eq!(fields(&mut con, &id).unwrap()["k"], "v");
    let last = info(&mut con, &id).unwrap();
    assert_eq!(int(&last, "last_access_ms"), start + 29_999);
    assert_eq!(int(&last, "expires_at_ms"), start + 30_000);
    assert_eq!(int(&last, "ttl_ms"), 1);
    assert_eq!(con.pttl::<_, i64>(&id).unwrap(), 1);

    server.advance(1);
    assert_eq!(server.stored_keys(), 0, "reclaimed without a read");
    assert_eq!(touch(&mut con, &id), -2);
    assert_eq!(fields(&mut con, &id), None);
    assert_eq!(count(&mut con, "u"), 0);
    assert_eq!(scan_type(&mut con, "session"), Vec::<String>::new());
    assert_eq!(session_stat(&mut con, "sessions"), 0);
    assert_eq!(session_stat(&mut con, "sessions_expired"), 1);
}

#[test]
fn ten_thousand_ids_are_distinct_unpadded_base64url_of_at_least_16_bytes() {
    assert_eq!(decode_base64url("Zm9vYg").as_deref(), Some(&b"foob"[..]));
    assert_eq!(decode_base64url("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
    assert_eq!(
        decode_base64url("Zm9vYg=="),
        None,
        "padding is not base64url"
    );
    assert_eq!(decode_base64url("Zm+v"), None, "'+' is not base64url");

    let server = TestServer::start();
    let mut con = server.client();
    let mut pipe = redis::pipe();
    for _ in 0..10_000 {
        pipe.cmd("SESSION.CREATE");
    }
    let ids: Vec<String> = pipe.query(&mut con).unwrap();
    assert_eq!(ids.len(), 10_000);
    let mut seen = HashSet::new();
    for id in &ids {
        let raw = decode_base64url(id).unwrap_or_else(|| panic!("not base64url: {id:?}"));
        assert!(raw.len() >= 16, "{id:?} holds only {} bytes", raw.len());
        assert!(seen.insert(raw), "duplicate ID {id:?}");
    }
    assert_eq!(server.stored_keys(), 10_000);
    assert_eq!(session_stat(&mut con, "sessions"), 10_000);
}

#[test]
fn of_twenty_concurrent_ifversion_writers_exactly_one_wins() {
    const WRITERS: usize = 20;
    let server = TestServer::start();
    let mut con = server.client();
    let id = create(&mut con, &["DATA", "owner", "nobody"]);
    let mut connections: Vec<Connection> =
        (0..WRITERS).map(|i| server.connect(i % 2 == 1)).collect();
    let start = Barrier::new(WRITERS);
    let outcomes: Vec<(usize, RedisResult<i64>)> = std::thread::scope(|scope| {
        let writers: Vec<_> = connections
            .iter_mut()
            .enumerate()
            .map(|(i, writer)| {
                let (start, id) = (&start, &id);
                scope.spawn(move || {
                    start.wait();
                    let outcome = redis::cmd("SESSION.SET")
                        .arg(id)
                        .arg("IFVERSION")
                        .arg(1)
                        .arg("owner")
                        .arg(format!("writer-{i}"))
                        .query(writer);
                    (i, outcome)
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    let winners: Vec<usize> = outcomes
        .iter()
        .filter_map(|(i, outcome)| match outcome {
            Ok(version) => {
                assert_eq!(*version, 2);
                Some(*i)
            }
            Err(error) => {
                assert_eq!(error.code(), Some("CONFLICT"), "{error}");
                assert_eq!(error.detail(), Some("session is at version 2, not 1"));
                None
            }
        })
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert_eq!(
        fields(&mut con, &id).unwrap()["owner"],
        format!("writer-{}", winners[0])
    );
    assert_eq!(int(&info(&mut con, &id).unwrap(), "version"), 2);
    assert_eq!(session_stat(&mut con, "session_version_conflicts"), 19);
}

#[test]
fn key_commands_on_session_keys() {
    let server = TestServer::with_manual_clock();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let start = server.now_ms() as i64;
        let id = create(
            &mut con,
            &[
                "USER", "alice", "IDLE", "10000", "ABSOLUTE", "25000", "DATA", "k", "v",
            ],
        );
        let other = create(&mut con, &["USER", "alice"]);
        let _: () = con.set("plain", "v").unwrap();

        let kind: String = redis::cmd("TYPE").arg(&id).query(&mut con).unwrap();
        assert_eq!(kind, "session");
        assert_eq!(con.exists::<_, i64>(&id).unwrap(), 1);
        assert_eq!(
            con.exists::<_, i64>(&[id.as_str(), other.as_str(), "plain"])
                .unwrap(),
            3
        );
        let mut sessions = scan_type(&mut con, "session");
        sessions.sort();
        let mut expected = vec![id.clone(), other.clone()];
        expected.sort();
        assert_eq!(sessions, expected);
        assert_eq!(scan_type(&mut con, "string"), vec!["plain".to_owned()]);

        // TTL and PTTL follow the effective deadline: idle first, then the absolute one.
        assert_eq!(con.pttl::<_, i64>(&id).unwrap(), 10_000);
        assert_eq!(con.ttl::<_, i64>(&id).unwrap(), 10);
        move_clock(&server, 8000);
        touch(&mut con, &id);
        move_clock(&server, 8000);
        touch(&mut con, &id);
        assert_eq!(con.pttl::<_, i64>(&id).unwrap(), 9000, "absolute deadline");
        let pexpiretime: i64 = redis::cmd("PEXPIRETIME").arg(&id).query(&mut con).unwrap();
        assert_eq!(pexpiretime, start + 25_000);

        let refused: &[(&str, &[&str])] = &[
            ("GET", &[]),
            ("SET", &["x"]),
            ("SET", &["x", "XX"]),
            ("SETNX", &["x"]),
            ("GETSET", &["x"]),
            ("GETDEL", &[]),
            ("GETEX", &["PERSIST"]),
            ("APPEND", &["x"]),
            ("INCR", &[]),
            ("INCRBY", &["2"]),
            ("STRLEN", &[]),
            ("EXPIRE", &["100"]),
            ("PEXPIRE", &["100"]),
            ("EXPIREAT", &["1"]),
            ("PERSIST", &[]),
            ("HSET", &["f", "v"]),
            ("HGET", &["k"]),
            ("HGETALL", &[]),
            ("HDEL", &["k"]),
            ("HINCRBY", &["n", "1"]),
        ];
        for (name, rest) in refused {
            let mut args = vec![id.as_str()];
            args.extend_from_slice(rest);
            assert_eq!(error_of(&mut con, name, &args), WRONGTYPE, "{name}");
        }
        let mset = error_of(&mut con, "MSET", &["plain", "w", &id, "x"]);
        assert_eq!(mset, WRONGTYPE);
        // None of them changed the session, its deadline or the other keys.
        assert_eq!(
            fields(&mut con, &id).unwrap(),
            HashMap::from([("k".to_owned(), "v".to_owned())])
        );
        assert_eq!(con.pttl::<_, i64>(&id).unwrap(), 9000);
        assert_eq!(con.get::<_, String>("plain").unwrap(), "v");

        // DEL ends it like SESSION.DESTROY, and it leaves the user's list.
        assert_eq!(con.del::<_, i64>(&id).unwrap(), 1);
        assert_eq!(fields(&mut con, &id), None);
        assert_eq!(con.pttl::<_, i64>(&id).unwrap(), -2);
        assert_eq!(list(&mut con, "alice"), vec![other.clone()]);
        assert_eq!(con.del::<_, i64>(&id).unwrap(), 0);
        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    }
    let mut con = server.client();
    assert_eq!(session_stat(&mut con, "sessions_destroyed"), 4);
}

#[test]
fn session_commands_on_string_and_hash_keys_are_wrongtype() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        let _: () = con.set("text", "v").unwrap();
        let _: i64 = con.hset("record", "f", "v").unwrap();
        for key in ["text", "record"] {
            for (name, rest) in [
                ("SESSION.GET", vec![]),
                ("SESSION.GET", vec!["f"]),
                ("SESSION.SET", vec!["f", "w"]),
                ("SESSION.SET", vec!["IFVERSION", "1", "f", "w"]),
                ("SESSION.UNSET", vec!["f"]),
                ("SESSION.TOUCH", vec![]),
                ("SESSION.INFO", vec![]),
                ("SESSION.REGENERATE", vec![]),
                ("SESSION.REGENERATE", vec!["USER", "u"]),
            ] {
                let mut args = vec![key];
                args.extend(rest);
                assert_eq!(error_of(&mut con, name, &args), WRONGTYPE, "{name} {key}");
            }
            // DESTROY only ends sessions.
            let destroyed: i64 = redis::cmd("SESSION.DESTROY")
                .arg(key)
                .query(&mut con)
                .unwrap();
            assert_eq!(destroyed, 0);
        }
        assert_eq!(con.get::<_, String>("text").unwrap(), "v");
        assert_eq!(con.hget::<_, _, String>("record", "f").unwrap(), "v");
        assert_eq!(count(&mut con, "u"), 0);
        assert_eq!(server.stored_keys(), 2);
    }
    let mut con = server.client();
    assert_eq!(session_stat(&mut con, "sessions_created"), 0);
    assert_eq!(session_stat(&mut con, "sessions_regenerated"), 0);
}

#[test]
fn flushall_empties_every_user_index() {
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        for user in ["alice", "alice", "bob"] {
            create(&mut con, &["USER", user]);
        }
        assert_eq!(count(&mut con, "alice"), 2);
        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
        assert_eq!(list(&mut con, "alice"), Vec::<String>::new());
        assert_eq!(count(&mut con, "alice"), 0);
        assert_eq!(count(&mut con, "bob"), 0);
        assert_eq!(session_stat(&mut con, "sessions"), 0);
        assert_eq!(session_stat(&mut con, "session_users"), 0);
        let destroyed: i64 = redis::cmd("SESSION.DESTROYALL")
            .arg("alice")
            .query(&mut con)
            .unwrap();
        assert_eq!(destroyed, 0);
        // The index starts afresh.
        let fresh = create(&mut con, &["USER", "alice"]);
        assert_eq!(list(&mut con, "alice"), vec![fresh]);
        let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    }
}

#[test]
fn a_session_s_data_is_bounded_by_session_max_bytes() {
    // Each field counts its name, its value and 64 bytes.
    let server = TestServer::start();
    for resp3 in [false, true] {
        let mut con = server.connect(resp3);
        // The default, 1 MB: a session of 1 MB passes, a field more does not.
        let big = "x".repeat((1 << 20) - 1 - 64);
        let id: String = redis::cmd("SESSION.CREATE")
            .arg("DATA")
            .arg("f")
            .arg(&big)
            .query(&mut con)
            .expect("a session of 1 MB");
        assert_eq!(
            error_of(&mut con, "SESSION.SET", &[&id, "g", "y"]),
            "ERR session would be 1048642 bytes, over session-max-bytes (1048576)"
        );
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("session-max-bytes")
            .arg("200")
            .query(&mut con)
            .expect("CONFIG SET");
        assert_eq!(
            error_of(
                &mut con,
                "SESSION.CREATE",
                &["DATA", "ab", &"v".repeat(140)]
            ),
            "ERR session would be 206 bytes, over session-max-bytes (200)"
        );
        // Many tiny fields are bounded too.
        assert_eq!(
            error_of(
                &mut con,
                "SESSION.CREATE",
                &["DATA", "a", "", "b", "", "c", "", "d", ""]
            ),
            "ERR session would be 260 bytes, over session-max-bytes (200)"
        );
        // A field given twice counts once, with its last value.
        let value = "v".repeat(99);
        let small: String = redis::cmd("SESSION.CREATE")
            .arg(&["DATA", "a", &value, "a", "1"])
            .query(&mut con)
            .expect("within the limit");
        let conflicts = session_stat(&mut con, "session_version_conflicts");
        assert_eq!(
            error_of(&mut con, "SESSION.SET", &[&small, "b", &value]),
            "ERR session would be 230 bytes, over session-max-bytes (200)"
        );
        // Refused, nothing changed: not a version conflict, the version not moved.
        assert_eq!(
            session_stat(&mut con, "session_version_conflicts"),
            conflicts
        );
        let version: i64 = redis::cmd("SESSION.SET")
            .arg(&[&small, "a", &value])
            .query(&mut con)
            .expect("replacing a value, within the limit");
        assert_eq!(version, 2);
        // Over a lowered limit, a write that does not grow it passes: it can shrink.
        let version: i64 = redis::cmd("SESSION.SET")
            .arg(&[&id, "f", "short"])
            .query(&mut con)
            .expect("a smaller value");
        assert_eq!(version, 2);
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("session-max-bytes")
            .arg("0")
            .query(&mut con)
            .expect("no limit");
        let _: i64 = redis::cmd("SESSION.SET")
            .arg(&[&small, "b", &big])
            .query(&mut con)
            .expect("no limit");
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("session-max-bytes")
            .arg("1mb")
            .query(&mut con)
            .expect("CONFIG SET");
    }
}
