//! Lua scripting through the `redis` crate, in RESP2 and RESP3: EVAL, EVALSHA, EVAL_RO,
//! SCRIPT LOAD/EXISTS/FLUSH, the conversion rules both ways, `redis.call` vs `redis.pcall`
//! and Redis 7's error wording, the sandbox (and that no script can change what the next one
//! sees), atomicity over undeclared keys, and the session-lock scripts of phpredis and
//! redis-py run verbatim.

use redis::{Connection, Value};
use sessiond::Config;
use sessiond_tests::TestServer;

use super::words::{each_protocol, error, query};

/// `EVAL script numkeys keys... args...`.
fn eval_cmd(script: &str, keys: &[&str], args: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(keys.len());
    for key in keys {
        cmd.arg(*key);
    }
    for arg in args {
        cmd.arg(*arg);
    }
    cmd
}

fn eval(con: &mut Connection, script: &str, keys: &[&str], args: &[&str]) -> Value {
    eval_cmd(script, keys, args)
        .query(con)
        .unwrap_or_else(|e| panic!("{script}: {e}"))
}

/// The whole error line a script is answered with.
fn eval_error(con: &mut Connection, script: &str, keys: &[&str], args: &[&str]) -> String {
    match eval_cmd(script, keys, args).query::<Value>(con) {
        Ok(value) => panic!("{script}: expected an error, got {value:?}"),
        Err(e) => super::words::error_line(&e),
    }
}

fn sha1(script: &str) -> String {
    let mut con_free = String::new();
    let digest = sessiond::script::sha1_hex(script.as_bytes());
    con_free.push_str(std::str::from_utf8(&digest).expect("hex"));
    con_free
}

fn bulk(text: &str) -> Value {
    Value::BulkString(text.as_bytes().to_vec())
}

#[test]
fn lua_values_convert_to_replies_by_redis_rules() {
    each_protocol(|server, con| {
        let resp3 = server_is_resp3(con);
        let _ = server;
        assert_eq!(eval(con, "return 1", &[], &[]), Value::Int(1));
        assert_eq!(eval(con, "return 3.99", &[], &[]), Value::Int(3));
        assert_eq!(eval(con, "return -3.99", &[], &[]), Value::Int(-3));
        assert_eq!(eval(con, "return 'hi'", &[], &[]), bulk("hi"));
        assert_eq!(
            eval(con, "return {1, 'two', {3}}", &[], &[]),
            Value::Array(vec![
                Value::Int(1),
                bulk("two"),
                Value::Array(vec![Value::Int(3)])
            ])
        );
        // An array stops at its first nil.
        assert_eq!(
            eval(con, "return {1, nil, 3}", &[], &[]),
            Value::Array(vec![Value::Int(1)])
        );
        assert_eq!(
            eval(con, "return redis.status_reply('FINE')", &[], &[]),
            Value::SimpleString("FINE".into())
        );
        assert_eq!(
            eval(con, "return {ok='DONE'}", &[], &[]),
            Value::SimpleString("DONE".into())
        );
        assert_eq!(
            eval_error(con, "return redis.error_reply('My Error')", &[], &[]),
            "My Error"
        );
        assert_eq!(
            eval_error(con, "return redis.error_reply('Boom')", &[], &[]),
            "ERR Boom"
        );
        assert_eq!(
            eval_error(con, "return {err='BAD thing'}", &[], &[]),
            "BAD thing"
        );
        assert_eq!(eval(con, "return nil", &[], &[]), Value::Nil);
        if resp3 {
            assert_eq!(eval(con, "return true", &[], &[]), Value::Boolean(true));
            assert_eq!(eval(con, "return false", &[], &[]), Value::Boolean(false));
            assert_eq!(
                eval(con, "return {double=3.5}", &[], &[]),
                Value::Double(3.5)
            );
        } else {
            assert_eq!(eval(con, "return true", &[], &[]), Value::Int(1));
            assert_eq!(eval(con, "return false", &[], &[]), Value::Nil);
            assert_eq!(eval(con, "return {double=3.5}", &[], &[]), bulk("3.5"));
        }
        // {map=}, {set=} and {big_number=}: RESP3 types, flattened or as strings in RESP2.
        let map = eval(con, "return {map={a=1}}", &[], &[]);
        let set = eval(con, "return {set={x=true}}", &[], &[]);
        let big = eval(
            con,
            "return {big_number='123456789012345678901234567890'}",
            &[],
            &[],
        );
        if resp3 {
            assert_eq!(map, Value::Map(vec![(bulk("a"), Value::Int(1))]));
            assert_eq!(set, Value::Set(vec![bulk("x")]));
            assert!(matches!(big, Value::BigNumber(_)), "{big:?}");
        } else {
            assert_eq!(map, Value::Array(vec![bulk("a"), Value::Int(1)]));
            assert_eq!(set, Value::Array(vec![bulk("x")]));
            assert_eq!(big, bulk("123456789012345678901234567890"));
        }
        assert_eq!(
            eval(
                con,
                "return {KEYS[1], KEYS[2], ARGV[1]}",
                &["k1", "k2"],
                &["a1"]
            ),
            Value::Array(vec![bulk("k1"), bulk("k2"), bulk("a1")])
        );
    });
}

/// Whether `con` speaks RESP3 (HELLO's `proto`).
fn server_is_resp3(con: &mut Connection) -> bool {
    let hello: Value = redis::cmd("HELLO").query(con).expect("HELLO");
    let text = format!("{hello:?}");
    text.to_lowercase().contains("int(3)")
}

#[test]
fn replies_convert_to_lua_values_by_redis_rules() {
    each_protocol(|_server, con| {
        // Integer -> number, bulk -> string, nil -> false, status -> {ok=}, array -> table.
        let script = "
            local set = redis.call('SET', KEYS[1], 'v')
            local get = redis.call('GET', KEYS[1])
            local missing = redis.call('GET', KEYS[2])
            local n = redis.call('INCR', KEYS[3])
            local many = redis.call('MGET', KEYS[1], KEYS[2])
            return {type(set), set.ok, get, tostring(missing), type(n), n, #many, many[1],
                    tostring(many[2])}";
        assert_eq!(
            eval(con, script, &["{a}1", "{a}2", "{a}3"], &[]),
            Value::Array(vec![
                bulk("table"),
                bulk("OK"),
                bulk("v"),
                bulk("false"),
                bulk("number"),
                Value::Int(1),
                Value::Int(2),
                bulk("v"),
                bulk("false"),
            ])
        );
        // An error reply becomes {err=...}, which pcall returns and call raises.
        let script = "local r = redis.pcall('INCR', KEYS[1]) return {type(r), r.err}";
        assert_eq!(
            eval(con, script, &["{a}1"], &[]),
            Value::Array(vec![
                bulk("table"),
                bulk("ERR value is not an integer or out of range")
            ])
        );
        // RESP3 conversions after redis.setresp(3).
        let script = "redis.setresp(3)
            local r = redis.call('HGETALL', KEYS[1])
            return {type(r.map), r.map.f, tostring(redis.call('GET', KEYS[2]))}";
        let _: Value = redis::cmd("HSET")
            .arg("h")
            .arg("f")
            .arg("v")
            .query(con)
            .unwrap();
        assert_eq!(
            eval(con, script, &["h", "nothing"], &[]),
            Value::Array(vec![bulk("table"), bulk("v"), bulk("nil")])
        );
    });
}

#[test]
fn call_raises_errors_and_pcall_returns_them_with_redis_wording() {
    each_protocol(|_server, con| {
        let _: Value = redis::cmd("SET").arg("s").arg("text").query(con).unwrap();
        let script = "return redis.call('INCR', KEYS[1])";
        assert_eq!(
            eval_error(con, script, &["s"], &[]),
            format!(
                "ERR value is not an integer or out of range script: {}, on @user_script:1.",
                sha1(script)
            )
        );
        let script = "return redis.pcall('INCR', KEYS[1])";
        assert_eq!(
            eval_error(con, script, &["s"], &[]),
            "ERR value is not an integer or out of range"
        );
        let script = "return redis.call('HGET', KEYS[1], 'f')";
        assert_eq!(
            eval_error(con, script, &["s"], &[]),
            format!(
                "WRONGTYPE Operation against a key holding the wrong kind of value script: {}, \
                 on @user_script:1.",
                sha1(script)
            )
        );
        let script = "\nreturn redis.call('NOSUCH')";
        assert_eq!(
            eval_error(con, script, &[], &[]),
            format!(
                "ERR Unknown Redis command called from script script: {}, on @user_script:2.",
                sha1(script)
            )
        );
        let script = "return redis.call('GET')";
        assert!(eval_error(con, script, &[], &[])
            .starts_with("ERR Wrong number of args calling Redis command from script script: "));
        let script = "return redis.call()";
        assert!(eval_error(con, script, &[], &[]).starts_with(
            "ERR Please specify at least one argument for this redis lib call script: "
        ));
        let script = "return redis.call('GET', {})";
        assert!(eval_error(con, script, &[], &[]).starts_with(
            "ERR Lua redis lib command arguments must be strings or integers script: "
        ));
        // Lua's pcall gives the message of an error table (Redis 7).
        let script = "local ok, e = pcall(redis.call, 'NOSUCH') return {tostring(ok), e}";
        assert_eq!(
            eval(con, script, &[], &[]),
            Value::Array(vec![
                bulk("false"),
                bulk("ERR Unknown Redis command called from script")
            ])
        );
        // A runtime error of the script itself.
        let script = "error('boom')";
        assert_eq!(
            eval_error(con, script, &[], &[]),
            format!(
                "ERR user_script:1: boom script: {}, on @user_script:1.",
                sha1(script)
            )
        );
        assert!(eval_error(con, "return +", &[], &[])
            .starts_with("ERR Error compiling script (new function): user_script:1:"));
        // Numbers are sent as integers when they are.
        assert_eq!(
            eval(
                con,
                "redis.call('SET', KEYS[1], 10 / 2) return redis.call('GET', KEYS[1])",
                &["n"],
                &[]
            ),
            bulk("5")
        );
    });
}

#[test]
fn commands_a_script_may_not_run_are_refused() {
    each_protocol(|_server, con| {
        for command in [
            "'MULTI'",
            "'EXEC'",
            "'WATCH', 'k'",
            "'EVAL', 'return 1', '0'",
            "'SESSION.CREATE'",
            "'SCRIPT', 'FLUSH'",
            "'AUTH', 'x'",
            "'SAVE'",
        ] {
            let script = format!("return redis.call({command})");
            assert!(
                eval_error(con, &script, &[], &[])
                    .starts_with("ERR This Redis command is not allowed from script script: "),
                "{command}"
            );
        }
        // A script holds its own database only: these reach the others.
        for command in [
            "'SELECT', '1'",
            "'MOVE', 'k', '1'",
            "'SWAPDB', '0', '1'",
            "'INFO'",
        ] {
            let script = format!("return redis.call({command})");
            let refused = eval_error(con, &script, &[], &[]);
            assert!(
                refused.starts_with("ERR This command is not allowed from script in sessiond"),
                "{command}: {refused}"
            );
        }
        // TIME and LASTSAVE touch no key: after a write they run without holding every shard.
        let reply = eval(
            con,
            "redis.call('set', KEYS[1], 'v') return #redis.call('time')",
            &["{t}:k"],
            &[],
        );
        assert_eq!(reply, Value::Int(2));
    });
}

#[test]
fn evalsha_script_load_exists_and_flush() {
    each_protocol(|_server, con| {
        let script = "return ARGV[1]";
        let sha = sha1(script);
        assert_eq!(
            error(con, &format!("EVALSHA {sha} 0 x")),
            "NOSCRIPT No matching script. Please use EVAL."
        );
        assert_eq!(
            query(con, &format!("SCRIPT EXISTS {sha} nope")),
            Value::Array(vec![Value::Int(0), Value::Int(0)])
        );
        let loaded: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(script)
            .query(con)
            .unwrap();
        assert_eq!(loaded, sha);
        assert_eq!(query(con, &format!("EVALSHA {sha} 0 x")), bulk("x"));
        // Any case of the SHA.
        assert_eq!(
            query(con, &format!("EVALSHA {} 0 y", sha.to_uppercase())),
            bulk("y")
        );
        assert_eq!(
            query(con, &format!("SCRIPT EXISTS {sha}")),
            Value::Array(vec![Value::Int(1)])
        );
        // EVAL caches what it runs.
        eval(con, "return 2", &[], &[]);
        assert_eq!(
            query(con, &format!("EVALSHA {} 0", sha1("return 2"))),
            Value::Int(2)
        );
        assert_eq!(query(con, "SCRIPT FLUSH"), Value::Okay);
        assert_eq!(query(con, "SCRIPT FLUSH ASYNC"), Value::Okay);
        assert_eq!(
            query(con, &format!("SCRIPT EXISTS {sha}")),
            Value::Array(vec![Value::Int(0)])
        );
        assert_eq!(
            error(con, &format!("EVALSHA {sha} 0 x")),
            "NOSCRIPT No matching script. Please use EVAL."
        );
        assert_eq!(
            error(con, "SCRIPT FLUSH NOW"),
            "ERR SCRIPT FLUSH only support SYNC|ASYNC option"
        );
        assert_eq!(
            error(con, "SCRIPT LOAD"),
            "ERR wrong number of arguments for 'script|load' command"
        );
        assert_eq!(
            error(con, "SCRIPT NOPE"),
            "ERR unknown subcommand 'NOPE'. Try SCRIPT HELP."
        );
        assert!(error(con, "SCRIPT LOAD +")
            .starts_with("ERR Error compiling script (new function): user_script:1:"));
        assert_eq!(
            error(con, "SCRIPT KILL"),
            "NOTBUSY No scripts in execution right now."
        );
        let help = query(con, "SCRIPT HELP");
        assert!(format!("{help:?}").contains("LOAD <script>"));
    });
}

#[test]
fn numkeys_is_checked_as_redis_does() {
    each_protocol(|_server, con| {
        assert_eq!(
            error(con, "EVAL return 2 a"),
            "ERR Number of keys can't be greater than number of args"
        );
        assert_eq!(
            error(con, "EVAL return -1"),
            "ERR Number of keys can't be negative"
        );
        assert_eq!(
            error(con, "EVAL return x"),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            error(con, "EVAL return"),
            "ERR wrong number of arguments for 'eval' command"
        );
    });
}

#[test]
fn the_sandbox_refuses_escapes_and_no_script_changes_what_the_next_sees() {
    each_protocol(|_server, con| {
        for global in [
            "os",
            "io",
            "loadstring",
            "dofile",
            "loadfile",
            "require",
            "module",
            "package",
            "debug",
            "getfenv",
            "setfenv",
            "newproxy",
            "print",
            "load",
        ] {
            let script = format!("return {global}");
            let e = eval_error(con, &script, &[], &[]);
            assert!(
                e.starts_with(&format!(
                    "ERR user_script:1: Script attempted to access nonexistent global variable '{global}'"
                )),
                "{global}: {e}"
            );
        }
        let e = eval_error(con, "x = 1", &[], &[]);
        assert!(
            e.starts_with("ERR user_script:1: Script attempted to create global variable 'x'"),
            "{e}"
        );
        for escape in [
            "redis.call = function() return 'pwned' end",
            "string.rep = function() return 'pwned' end",
            "getmetatable('').__index = {rep = function() return 'pwned' end}",
            "rawset(redis, 'call', function() return 'pwned' end)",
            "rawset(string, 'rep', function() return 'pwned' end)",
            "_G.redis = {}",
            "rawset(_G, 'redis', {})",
            "setmetatable(_G, nil)",
            "setmetatable(redis, {__index = function() return 'pwned' end})",
            "math.floor = nil",
        ] {
            let e = eval_error(con, escape, &[], &[]);
            assert!(e.starts_with("ERR "), "{escape}: {e}");
        }
        // The next script sees everything as it was.
        let script = "redis.call('SET', KEYS[1], 'ok')
            return {redis.call('GET', KEYS[1]), string.rep('a', 2), ('b'):rep(2),
                    tostring(math.floor(1.5))}";
        assert_eq!(
            eval(con, script, &["k"], &[]),
            Value::Array(vec![bulk("ok"), bulk("aa"), bulk("bb"), bulk("1")])
        );
        // Libraries and helpers are there.
        let script = "return {redis.sha1hex(''), table.concat({'a','b'}, ','),
            redis.REDIS_VERSION, redis.LOG_WARNING, redis.REPL_ALL}";
        assert_eq!(
            eval(con, script, &[], &[]),
            Value::Array(vec![
                bulk("da39a3ee5e6b4b0d3255bfef95601890afd80709"),
                bulk("a,b"),
                bulk("7.2.0"),
                Value::Int(3),
                Value::Int(3),
            ])
        );
        let script =
            "redis.log(redis.LOG_NOTICE, 'a script says', 1) redis.set_repl(redis.REPL_ALL)
            redis.replicate_commands() return redis.sha1hex('')";
        assert_eq!(
            eval(con, script, &[], &[]),
            bulk("da39a3ee5e6b4b0d3255bfef95601890afd80709")
        );
    });
}

#[test]
fn a_script_past_its_memory_limit_fails_and_the_next_runs() {
    each_protocol(|_server, con| {
        let script =
            "local t = {} for i = 1, 1000 do t[i] = string.rep('x', 1024 * 1024) .. i end return 1";
        let e = eval_error(con, script, &[], &[]);
        assert!(e.contains("not enough memory"), "{e}");
        assert_eq!(eval(con, "return 7", &[], &[]), Value::Int(7));
    });
}

#[test]
fn read_only_scripts_refuse_writes() {
    each_protocol(|_server, con| {
        let _: Value = redis::cmd("SET").arg("k").arg("v").query(con).unwrap();
        let value: Value = redis::cmd("EVAL_RO")
            .arg("return redis.call('GET', KEYS[1])")
            .arg(1)
            .arg("k")
            .query(con)
            .unwrap();
        assert_eq!(value, bulk("v"));
        let e = redis::cmd("EVAL_RO")
            .arg("return redis.call('SET', KEYS[1], 'w')")
            .arg(1)
            .arg("k")
            .query::<Value>(con)
            .expect_err("refused");
        assert!(super::words::error_line(&e)
            .starts_with("ERR Write commands are not allowed from read-only scripts. script: "));
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg("return redis.call('DEL', KEYS[1])")
            .query(con)
            .unwrap();
        let e = redis::cmd("EVALSHA_RO")
            .arg(&sha)
            .arg(1)
            .arg("k")
            .query::<Value>(con)
            .expect_err("refused");
        assert!(super::words::error_line(&e).starts_with("ERR Write commands are not allowed"));
        assert_eq!(query(con, "GET k"), bulk("v"));
    });
}

#[test]
fn a_script_may_touch_keys_it_does_not_declare() {
    each_protocol(|_server, con| {
        // Before writing: it restarts holding every shard.
        let script = "local n = 0 for i = 1, 50 do n = n + redis.call('INCR', 'undeclared:' .. i) end return n";
        assert_eq!(eval(con, script, &[], &[]), Value::Int(50));
        assert_eq!(
            eval(con, script, &[], &[]),
            Value::Int(100),
            "it ran once per call"
        );
        // After writing: the free shards are taken as it goes.
        let script = "redis.call('SET', KEYS[1], 1)
            local n = 0 for i = 1, 50 do n = n + redis.call('INCR', 'other:' .. i) end return n";
        assert_eq!(eval(con, script, &["declared"], &[]), Value::Int(50));
        assert_eq!(query(con, "GET other:7"), bulk("1"));
        assert_eq!(
            eval(con, "return redis.call('DBSIZE')", &[], &[]),
            Value::Int(101)
        );
    });
}

#[test]
fn eval_runs_inside_multi_exec() {
    each_protocol(|_server, con| {
        assert_eq!(query(con, "MULTI"), Value::Okay);
        let queued: Value = eval_cmd("return redis.call('INCR', KEYS[1])", &["c"], &[])
            .query(con)
            .unwrap();
        assert_eq!(queued, Value::SimpleString("QUEUED".into()));
        assert_eq!(query(con, "INCR c"), Value::SimpleString("QUEUED".into()));
        assert_eq!(
            query(con, "EXEC"),
            Value::Array(vec![Value::Int(1), Value::Int(2)])
        );
    });
}

#[test]
fn command_info_describes_eval_as_redis_7() {
    each_protocol(|_server, con| {
        let info = format!("{:?}", query(con, "COMMAND INFO eval evalsha_ro script"));
        for part in [
            "noscript",
            "stale",
            "skip_monitor",
            "no_mandatory_keys",
            "movablekeys",
            "@slow",
            "@scripting",
            "keynum",
            "keynumidx",
            "firstkey",
            "RW",
            "update",
            "RO",
        ] {
            assert!(info.contains(part), "{part} in {info}");
        }
    });
}

/// phpredis's session lock release (redis_session.c, LOCK_RELEASE_LUA_STR), byte for byte:
/// phpredis sends EVALSHA with its SHA, then EVAL on NOSCRIPT.
const PHPREDIS_LOCK_RELEASE: &str =
    "if redis.call(\"get\",KEYS[1]) == ARGV[1] then return redis.call(\"del\",KEYS[1]) else return 0 end";
/// Its SHA as phpredis hard-codes it (LOCK_RELEASE_SHA_STR).
const PHPREDIS_LOCK_RELEASE_SHA: &str = "b70c2384248f88e6b75b9f89241a180f856ad852";

/// redis-py's `Lock` scripts (redis/lock.py), verbatim, indentation included.
const REDIS_PY_RELEASE: &str = "
        local token = redis.call('get', KEYS[1])
        if not token or token ~= ARGV[1] then
            return 0
        end
        redis.call('del', KEYS[1])
        return 1
    ";
const REDIS_PY_EXTEND: &str = "
        local token = redis.call('get', KEYS[1])
        if not token or token ~= ARGV[1] then
            return 0
        end
        local expiration = redis.call('pttl', KEYS[1])
        if not expiration then
            expiration = 0
        end
        if expiration < 0 then
            return 0
        end

        local newttl = ARGV[2]
        if ARGV[3] == \"0\" then
            newttl = ARGV[2] + expiration
        end
        redis.call('pexpire', KEYS[1], newttl)
        return 1
    ";
const REDIS_PY_REACQUIRE: &str = "
        local token = redis.call('get', KEYS[1])
        if not token or token ~= ARGV[1] then
            return 0
        end
        redis.call('pexpire', KEYS[1], ARGV[2])
        return 1
    ";

/// EVALSHA as redis-py's `Script` and phpredis do it: EVALSHA, and EVAL on NOSCRIPT.
fn evalsha_or_eval(con: &mut Connection, script: &str, keys: &[&str], args: &[&str]) -> Value {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(sha1(script)).arg(keys.len());
    for key in keys {
        cmd.arg(*key);
    }
    for arg in args {
        cmd.arg(*arg);
    }
    match cmd.query::<Value>(con) {
        Ok(value) => value,
        Err(e) if e.code() == Some("NOSCRIPT") => eval(con, script, keys, args),
        Err(e) => panic!("EVALSHA: {e}"),
    }
}

#[test]
fn the_phpredis_session_lock_is_released_only_by_its_owner() {
    each_protocol(|_server, con| {
        assert_eq!(sha1(PHPREDIS_LOCK_RELEASE), PHPREDIS_LOCK_RELEASE_SHA);
        let lock = "PHPREDIS_SESSION:abc_LOCK";
        let acquired: Value = redis::cmd("SET")
            .arg(lock)
            .arg("owner-1")
            .arg("NX")
            .arg("PX")
            .arg(30000)
            .query(con)
            .unwrap();
        assert_eq!(acquired, Value::Okay);
        // Another request's secret does not release it.
        assert_eq!(
            evalsha_or_eval(con, PHPREDIS_LOCK_RELEASE, &[lock], &["owner-2"]),
            Value::Int(0)
        );
        assert_eq!(query(con, &format!("GET {lock}")), bulk("owner-1"));
        // The owner's does, now through EVALSHA on the cached script.
        assert_eq!(
            query(
                con,
                &format!("EVALSHA {PHPREDIS_LOCK_RELEASE_SHA} 1 {lock} owner-1")
            ),
            Value::Int(1)
        );
        assert_eq!(query(con, &format!("EXISTS {lock}")), Value::Int(0));
        // The next request acquires it.
        let acquired: Value = redis::cmd("SET")
            .arg(lock)
            .arg("owner-2")
            .arg("NX")
            .arg("PX")
            .arg(30000)
            .query(con)
            .unwrap();
        assert_eq!(acquired, Value::Okay);
        assert_eq!(
            evalsha_or_eval(con, PHPREDIS_LOCK_RELEASE, &[lock], &["owner-2"]),
            Value::Int(1)
        );
    });
}

#[test]
fn redis_py_lock_scripts_release_extend_and_reacquire() {
    each_protocol(|_server, con| {
        for script in [REDIS_PY_RELEASE, REDIS_PY_EXTEND, REDIS_PY_REACQUIRE] {
            let sha: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(script)
                .query(con)
                .unwrap();
            assert_eq!(sha, sha1(script));
        }
        let _: Value = redis::cmd("SET")
            .arg("lock")
            .arg("tok")
            .arg("NX")
            .arg("PX")
            .arg(10000)
            .query(con)
            .unwrap();
        // Extend by 5 s, adding to the TTL left.
        assert_eq!(
            evalsha_or_eval(con, REDIS_PY_EXTEND, &["lock"], &["tok", "5000", "0"]),
            Value::Int(1)
        );
        let Value::Int(ttl) = query(con, "PTTL lock") else {
            panic!()
        };
        assert!((14_000..=15_000).contains(&ttl), "{ttl}");
        // Replace the TTL.
        assert_eq!(
            evalsha_or_eval(con, REDIS_PY_EXTEND, &["lock"], &["tok", "2000", "1"]),
            Value::Int(1)
        );
        let Value::Int(ttl) = query(con, "PTTL lock") else {
            panic!()
        };
        assert!((1_000..=2_000).contains(&ttl), "{ttl}");
        // Reacquire resets it to the timeout.
        assert_eq!(
            evalsha_or_eval(con, REDIS_PY_REACQUIRE, &["lock"], &["tok", "10000"]),
            Value::Int(1)
        );
        let Value::Int(ttl) = query(con, "PTTL lock") else {
            panic!()
        };
        assert!((9_000..=10_000).contains(&ttl), "{ttl}");
        // Not the owner: nothing changes.
        for script in [REDIS_PY_RELEASE, REDIS_PY_EXTEND, REDIS_PY_REACQUIRE] {
            assert_eq!(
                evalsha_or_eval(con, script, &["lock"], &["other", "1", "1"]),
                Value::Int(0)
            );
        }
        assert_eq!(query(con, "GET lock"), bulk("tok"));
        assert_eq!(
            evalsha_or_eval(con, REDIS_PY_RELEASE, &["lock"], &["tok"]),
            Value::Int(1)
        );
        assert_eq!(query(con, "EXISTS lock"), Value::Int(0));
        // Released: extend and release fail.
        assert_eq!(
            evalsha_or_eval(con, REDIS_PY_EXTEND, &["lock"], &["tok", "1000", "0"]),
            Value::Int(0)
        );
        assert_eq!(
            evalsha_or_eval(con, REDIS_PY_RELEASE, &["lock"], &["tok"]),
            Value::Int(0)
        );
    });
}

/// Scripts on the multi-thread runtime: each thread builds its own interpreter, and
/// concurrent INCR scripts over one key give the exact total (each script is atomic).
#[test]
fn scripts_are_atomic_across_threads() {
    let server = TestServer::with_config(Config {
        threads: 4,
        ..Config::default()
    });
    let script = "local v = tonumber(redis.call('GET', KEYS[1]) or '0') redis.call('SET', KEYS[1], v + 1) return v + 1";
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let mut con = server.connect(false);
                for _ in 0..200 {
                    eval(&mut con, script, &["counter"], &[]);
                }
            });
        }
    });
    let mut con = server.connect(false);
    assert_eq!(query(&mut con, "GET counter"), bulk("800"));
}

#[test]
fn the_shebang_flags_work_as_redis_7() {
    each_protocol(|_server, con| {
        let _: Value = redis::cmd("SET").arg("k").arg("v").query(con).unwrap();
        let script = "#!lua flags=no-writes\nreturn redis.call('SET', KEYS[1], 'w')";
        let e = eval_error(con, script, &["k"], &[]);
        assert_eq!(
            e,
            format!(
                "ERR Write commands are not allowed from read-only scripts. script: {}, on \
                 @user_script:2.",
                sha1(script)
            )
        );
        let reader = "#!lua flags=no-writes\nreturn redis.call('GET', KEYS[1])";
        let value: Value = redis::cmd("EVAL_RO")
            .arg(reader)
            .arg(1)
            .arg("k")
            .query(con)
            .unwrap();
        assert_eq!(value, bulk("v"));
        let writer = "#!lua\nreturn redis.call('GET', KEYS[1])";
        let e = redis::cmd("EVAL_RO")
            .arg(writer)
            .arg(1)
            .arg("k")
            .query::<Value>(con)
            .expect_err("refused");
        assert_eq!(
            super::words::error_line(&e),
            "ERR Can not execute a script with write flag using *_ro command."
        );
        assert_eq!(eval(con, writer, &["k"], &[]), bulk("v"));
        assert_eq!(
            eval_error(con, "#!lua flags=bogus\nreturn 1", &[], &[]),
            "ERR Unexpected flag in script shebang: bogus"
        );
        assert_eq!(
            eval_error(con, "#!perl\nreturn 1", &[], &[]),
            "ERR Unexpected engine in script shebang: #!perl"
        );
        assert_eq!(
            error(con, "SCRIPT LOAD #!lua"),
            "ERR Invalid script shebang"
        );
    });
}

#[test]
fn over_maxmemory_scripts_are_refused_as_redis_refuses_them() {
    let server = TestServer::with_config(Config {
        maxmemory: 1,
        ..Config::default()
    });
    let mut con = server.connect(false);
    let con = &mut con;
    // The first write fits (nothing is stored yet); after it the server is over the limit.
    assert_eq!(query(con, "SET filler x"), Value::Okay);
    // A script without a shebang: each command that adds data is refused.
    let e = eval_error(con, "return redis.call('SET', KEYS[1], 'v')", &["k"], &[]);
    assert!(
        e.starts_with("OOM command not allowed when used memory > 'maxmemory'. script: "),
        "{e}"
    );
    assert_eq!(
        eval(con, "return redis.call('EXISTS', KEYS[1])", &["k"], &[]),
        Value::Int(0)
    );
    // With a shebang: the script is refused unless it may not write or allows OOM.
    assert_eq!(
        eval_error(con, "#!lua\nreturn 1", &[], &[]),
        "OOM allow-oom flag is not set on the script, can not run it when used memory > 'maxmemory'"
    );
    assert_eq!(
        eval(con, "#!lua flags=no-writes\nreturn 1", &[], &[]),
        Value::Int(1)
    );
    assert_eq!(
        eval(
            con,
            "#!lua flags=allow-oom\nreturn redis.call('SET', KEYS[1], 'v')",
            &["k"],
            &[]
        ),
        Value::Okay
    );
}

#[test]
fn info_memory_reports_the_interpreters_and_the_cache() {
    each_protocol(|_server, con| {
        assert_eq!(query(con, "SCRIPT FLUSH"), Value::Okay);
        eval(con, "return 1", &[], &[]);
        let _: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg("return 2")
            .query(con)
            .unwrap();
        let info: String = redis::cmd("INFO").arg("memory").query(con).unwrap();
        assert_eq!(
            sessiond_tests::info_number(&info, "number_of_cached_scripts"),
            2
        );
        assert!(sessiond_tests::info_number(&info, "used_memory_lua") > 0);
    });
}

#[test]
fn scripts_have_cjson_and_bit_and_cannot_change_them() {
    each_protocol(|_server, con| {
        // A session blob as apps store it: decoded, changed, encoded again in one step.
        let stored = r#"{"user":"ada","cart":["book"],"n":2}"#;
        let script = "local s = cjson.decode(ARGV[1]) \
                      table.insert(s.cart, 'pen') s.n = s.n + 1 \
                      return {cjson.encode(s.cart), s.n, s.user, tostring(cjson.decode('null') == cjson.null)}";
        assert_eq!(
            eval(con, script, &[], &[stored]),
            Value::Array(vec![
                bulk(r#"["book","pen"]"#),
                Value::Int(3),
                bulk("ada"),
                bulk("true"),
            ])
        );
        assert_eq!(eval(con, "return cjson.encode({})", &[], &[]), bulk("{}"));
        let bad = eval_error(con, "return cjson.decode('{')", &[], &[]);
        assert!(
            bad.contains("Expected object key string but found T_END"),
            "{bad}"
        );
        assert_eq!(
            eval(
                con,
                "return {bit.band(0xff, 0x0f), bit.bxor(5, 3), bit.tohex(-1), bit.lshift(1, 31)}",
                &[],
                &[]
            ),
            Value::Array(vec![
                Value::Int(15),
                Value::Int(6),
                bulk("ffffffff"),
                Value::Int(-2_147_483_648),
            ])
        );
        // The libraries are read-only like the others: no script changes what the next sees.
        let refused = eval_error(con, "cjson.encode = nil", &[], &[]);
        assert!(
            refused.contains("Attempt to modify a readonly table"),
            "{refused}"
        );
        assert_eq!(eval(con, "return bit.bor(1, 2)", &[], &[]), Value::Int(3));
    });
}
