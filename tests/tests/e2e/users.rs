//! Named users from the config file: key patterns, command categories, NOPERM, and the
//! per-application session namespaces that keep two applications' sessions apart.

use std::io::Write;
use std::process::{Command, Stdio};

use redis::{Connection, RedisResult, Value};
use sessiond::{Config, RawConfig};
use sessiond_protocol::Frame;
use sessiond_tests::{error_text, info_number, TestServer};

use crate::daemon::{sessiond_binary, Daemon, ScratchDir};

/// `app1` and `app2` are applications confined to their keys and session namespaces; `reader`
/// may only read `cache:*`; `ops` may do everything.
fn users_toml() -> String {
    let digest = sessiond::auth::password_sha256;
    format!(
        r#"
        [[user]]
        name = "app1"
        password-sha256 = "{}"
        keys = ["sess:app1:*"]
        categories = ["read", "write", "session"]
        session-prefix = "sess:app1:"

        [[user]]
        name = "app2"
        password-sha256 = "{}"
        keys = ["sess:app2:*"]
        categories = ["read", "write", "session"]
        session-prefix = "sess:app2:"

        [[user]]
        name = "reader"
        password-sha256 = "{}"
        keys = ["cache:*"]
        categories = ["read"]

        [[user]]
        name = "ops"
        password-sha256 = "{}"
        keys = ["*"]
        categories = ["all"]
        "#,
        digest("pw1"),
        digest("pw2"),
        digest("pw-reader"),
        digest("pw-ops"),
    )
}

/// The configuration a file with `extra` settings and the users gives, in memory.
fn config(extra: &str) -> Config {
    let dir = ScratchDir::new();
    let file = dir.file("sessiond.toml", &format!("{extra}\n{}", users_toml()));
    let raw = RawConfig::from_file(&file).expect("a valid file");
    Config {
        persistence: None,
        ..raw.validate().expect("valid users")
    }
}

fn with_users(extra: &str) -> TestServer {
    TestServer::with_config(config(extra))
}

/// A redis-rs connection as `user`, in RESP2 (AUTH user password) or RESP3 (HELLO 3 AUTH).
fn login(server: &TestServer, user: &str, password: &str, resp3: bool) -> Connection {
    let protocol = if resp3 { "?protocol=resp3" } else { "" };
    redis::Client::open(format!(
        "redis://{user}:{password}@{}/{protocol}",
        server.addr
    ))
    .expect("url")
    .get_connection()
    .expect("log in")
}

fn error_of<T: std::fmt::Debug>(result: RedisResult<T>) -> String {
    let error = result.expect_err("a refusal");
    format!(
        "{} {}",
        error.code().unwrap_or_default(),
        error.detail().unwrap_or_default()
    )
}

const NO_KEY: &str = "NOPERM No permissions to access a key";

fn no_command(user: &str, command: &str) -> String {
    format!("NOPERM User {user} has no permissions to run the '{command}' command")
}

fn stat(con: &mut Connection, field: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(con).expect("INFO");
    info_number(&info, field)
}

#[test]
fn a_user_limited_to_its_keys_can_neither_read_others_nor_run_flushall() {
    let server = with_users("");
    let mut ops = login(&server, "ops", "pw-ops", false);
    let () = redis::cmd("SET")
        .arg("sess:app2:x")
        .arg("app2's")
        .query(&mut ops)
        .unwrap();
    let () = redis::cmd("SET")
        .arg("sess:app1:y")
        .arg("app1's")
        .query(&mut ops)
        .unwrap();
    for resp3 in [false, true] {
        let mut app1 = login(&server, "app1", "pw1", resp3);
        let own: String = redis::cmd("GET")
            .arg("sess:app1:y")
            .query(&mut app1)
            .unwrap();
        assert_eq!(own, "app1's");
        let e = error_of(
            redis::cmd("GET")
                .arg("sess:app2:x")
                .query::<Value>(&mut app1),
        );
        assert_eq!(e, NO_KEY);
        let e = error_of(redis::cmd("FLUSHALL").query::<Value>(&mut app1));
        assert_eq!(e, no_command("app1", "flushall"));
        for command in [
            &["KEYS", "*"][..],
            &["INFO"],
            &["CONFIG", "GET", "*"],
            &["CLIENT", "LIST"],
        ] {
            let e = error_of(
                redis::cmd(command[0])
                    .arg(&command[1..])
                    .query::<Value>(&mut app1),
            );
            assert!(e.starts_with("NOPERM User app1"), "{command:?}: {e}");
        }
        // A command with several keys is refused whole: nothing of it is applied.
        let e = error_of(
            redis::cmd("MSET")
                .arg("sess:app1:a")
                .arg("1")
                .arg("sess:app2:b")
                .arg("2")
                .query::<Value>(&mut app1),
        );
        assert_eq!(e, NO_KEY);
        let e = error_of(
            redis::cmd("DEL")
                .arg("sess:app1:y")
                .arg("sess:app2:x")
                .query::<Value>(&mut app1),
        );
        assert_eq!(e, NO_KEY);
        // The connection keeps working after a refusal.
        let pong: String = redis::cmd("PING").query(&mut app1).unwrap();
        assert_eq!(pong, "PONG");
        // SCAN walks the keyspace but shows only the user's keys.
        let (cursor, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(0)
            .arg("COUNT")
            .arg(1000)
            .query(&mut app1)
            .unwrap();
        assert_eq!((cursor, keys), (0, vec!["sess:app1:y".to_owned()]));
    }
    let exists: (String, String, Option<String>) = redis::pipe()
        .get("sess:app2:x")
        .get("sess:app1:y")
        .get("sess:app1:a")
        .query(&mut ops)
        .unwrap();
    assert_eq!(exists, ("app2's".into(), "app1's".into(), None));
    // Per protocol: GET + MSET + DEL refused for a key; FLUSHALL, KEYS, INFO, CONFIG, CLIENT LIST
    // for the command.
    assert_eq!(stat(&mut ops, "acl_access_denied_key"), 6);
    assert_eq!(stat(&mut ops, "acl_access_denied_cmd"), 10);
}

#[test]
fn categories_limit_what_a_user_may_run() {
    let server = with_users("");
    let mut ops = login(&server, "ops", "pw-ops", false);
    let () = redis::cmd("SET")
        .arg("cache:a")
        .arg("1")
        .query(&mut ops)
        .unwrap();
    let mut reader = login(&server, "reader", "pw-reader", true);
    let value: String = redis::cmd("GET").arg("cache:a").query(&mut reader).unwrap();
    assert_eq!(value, "1");
    let ttl: i64 = redis::cmd("TTL").arg("cache:a").query(&mut reader).unwrap();
    assert_eq!(ttl, -1);
    let e = error_of(
        redis::cmd("SET")
            .arg("cache:a")
            .arg("2")
            .query::<Value>(&mut reader),
    );
    assert_eq!(e, no_command("reader", "set"));
    let e = error_of(redis::cmd("SESSION.CREATE").query::<Value>(&mut reader));
    assert_eq!(e, no_command("reader", "session.create"));
    let e = error_of(
        redis::cmd("SESSION.LIST")
            .arg("ada")
            .query::<Value>(&mut reader),
    );
    assert_eq!(e, no_command("reader", "session.list"));
    // Arity is checked before permissions, as in Redis.
    let e = error_of(redis::cmd("SET").arg("cache:a").query::<Value>(&mut reader));
    assert!(e.contains("wrong number of arguments"), "{e}");
    let value: String = redis::cmd("GET").arg("cache:a").query(&mut ops).unwrap();
    assert_eq!(value, "1");
}

#[test]
fn sessions_of_two_applications_never_meet() {
    // A cap of one session per user: counted per application, so app2 cannot evict app1's.
    let server = with_users("session-max-per-user = 1");
    let mut app1 = login(&server, "app1", "pw1", false);
    let mut app2 = login(&server, "app2", "pw2", true);
    let create = |con: &mut Connection| -> String {
        redis::cmd("SESSION.CREATE")
            .arg("USER")
            .arg("ada")
            .arg("DATA")
            .arg("cart")
            .arg("[]")
            .query(con)
            .unwrap()
    };
    let ada1 = create(&mut app1);
    assert!(
        ada1.starts_with("sess:app1:") && ada1.len() == 10 + 43,
        "{ada1}"
    );
    let ada2_first = create(&mut app2);
    let ada2 = create(&mut app2);
    assert!(ada2.starts_with("sess:app2:"), "{ada2}");

    let list = |con: &mut Connection| -> Vec<String> {
        redis::cmd("SESSION.LIST").arg("ada").query(con).unwrap()
    };
    assert_eq!(
        list(&mut app1),
        vec![ada1.clone()],
        "app2's sessions did not evict app1's"
    );
    assert_eq!(
        list(&mut app2),
        vec![ada2.clone()],
        "the cap applies within app2"
    );
    let count: i64 = redis::cmd("SESSION.COUNT")
        .arg("ada")
        .query(&mut app1)
        .unwrap();
    assert_eq!(count, 1);
    let gone: Value = redis::cmd("SESSION.GET")
        .arg(&ada2_first)
        .query(&mut app2)
        .unwrap();
    assert_eq!(gone, Value::Nil);

    // Another application's session IDs are out of reach, whatever the command.
    for command in [
        "SESSION.GET",
        "SESSION.INFO",
        "SESSION.TOUCH",
        "SESSION.DESTROY",
        "SESSION.REGENERATE",
        "DEL",
        "TTL",
    ] {
        let e = error_of(redis::cmd(command).arg(&ada1).query::<Value>(&mut app2));
        assert_eq!(e, NO_KEY, "{command}");
    }
    let e = error_of(
        redis::cmd("SESSION.SET")
            .arg(&ada1)
            .arg("role")
            .arg("admin")
            .query::<Value>(&mut app2),
    );
    assert_eq!(e, NO_KEY);

    // "Log out everywhere" in app2 ends app2's sessions of ada only.
    let destroyed: i64 = redis::cmd("SESSION.DESTROYALL")
        .arg("ada")
        .query(&mut app2)
        .unwrap();
    assert_eq!(destroyed, 1);
    assert_eq!(list(&mut app2), Vec::<String>::new());
    assert_eq!(list(&mut app1), vec![ada1.clone()]);

    // Regenerating keeps the namespace.
    let renewed: String = redis::cmd("SESSION.REGENERATE")
        .arg(&ada1)
        .query(&mut app1)
        .unwrap();
    assert!(renewed.starts_with("sess:app1:") && renewed != ada1);
    assert_eq!(list(&mut app1), vec![renewed.clone()]);
    let data: std::collections::HashMap<String, String> = redis::cmd("SESSION.GET")
        .arg(&renewed)
        .query(&mut app1)
        .unwrap();
    assert_eq!(data.get("cart").map(String::as_str), Some("[]"));

    // The server-wide admin sees every key, sessions included, but lists per namespace: the
    // default namespace has no session of ada.
    let mut ops = login(&server, "ops", "pw-ops", false);
    let empty: Vec<String> = redis::cmd("SESSION.LIST")
        .arg("ada")
        .query(&mut ops)
        .unwrap();
    assert!(empty.is_empty());
    let kind: String = redis::cmd("TYPE").arg(&renewed).query(&mut ops).unwrap();
    assert_eq!(kind, "session");
}

#[test]
fn named_users_disable_the_passwordless_default_user() {
    let server = with_users("");
    let mut raw = server.raw();
    raw.command(&[b"PING"]);
    assert_eq!(error_text(&raw.reply()), "NOAUTH Authentication required.");
    raw.command(&[b"AUTH", b"default", b"anything"]);
    assert!(error_text(&raw.reply()).starts_with("WRONGPASS"));
    raw.command(&[b"AUTH", b"anything"]);
    assert!(error_text(&raw.reply()).starts_with("WRONGPASS"));
    raw.command(&[b"AUTH", b"app1", b"pw2"]);
    assert!(error_text(&raw.reply()).starts_with("WRONGPASS"));
    raw.command(&[b"AUTH", b"app1", b"pw1"]);
    assert_eq!(raw.reply(), Frame::ok());
    raw.command(&[b"GET", b"sess:app1:nothing"]);
    assert_eq!(raw.reply(), Frame::Null);

    let mut ops = login(&server, "ops", "pw-ops", false);
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut ops).unwrap();
    assert!(clients.contains(" user=app1 "), "{clients}");
    assert!(clients.contains(" user=ops "), "{clients}");
    assert_eq!(stat(&mut ops, "acl_access_denied_auth"), 3);

    // RESET goes back to a new connection's state: nobody.
    raw.command(&[b"RESET"]);
    assert_eq!(raw.reply(), Frame::Simple("RESET".into()));
    raw.command(&[b"GET", b"sess:app1:nothing"]);
    assert_eq!(error_text(&raw.reply()), "NOAUTH Authentication required.");
}

#[test]
fn requirepass_keeps_the_default_user_beside_named_users() {
    let server = with_users("requirepass = \"default pw\"");
    let mut raw = server.raw();
    raw.command(&[b"AUTH", b"default pw"]);
    assert_eq!(raw.reply(), Frame::ok());
    raw.command(&[b"FLUSHALL"]);
    assert_eq!(raw.reply(), Frame::ok());
    let mut app1 = login(&server, "app1", "pw1", true);
    let e = error_of(redis::cmd("FLUSHALL").query::<Value>(&mut app1));
    assert_eq!(e, no_command("app1", "flushall"));
}

#[test]
fn the_binary_takes_users_from_its_config_file_with_a_hashed_password() {
    // `sessiond hash-password` turns a password on stdin into the digest the file holds.
    let mut hasher = Command::new(sessiond_binary())
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sessiond hash-password");
    hasher
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"app1 secret\n")
        .expect("write the password");
    let output = hasher.wait_with_output().expect("hash-password");
    assert!(output.status.success());
    let digest = String::from_utf8(output.stdout)
        .expect("hex")
        .trim()
        .to_owned();
    assert_eq!(digest, sessiond::auth::password_sha256("app1 secret"));

    let dir = ScratchDir::new();
    let file = dir.file(
        "sessiond.toml",
        &format!(
            "[[user]]\nname = \"app1\"\npassword-sha256 = \"{digest}\"\nkeys = [\"sess:app1:*\"]\n\
             categories = [\"read\", \"write\", \"session\"]\nsession-prefix = \"sess:app1:\"\n"
        ),
    );
    let config_arg = format!("--config={}", file.display());
    let mut daemon = Daemon::start_in(dir, &["--port", "0", "--no-persistence", &config_arg], &[]);
    let mut con = redis::Client::open(format!("redis://app1:app1%20secret@{}/", daemon.addr))
        .expect("url")
        .get_connection()
        .expect("log in as app1");
    let id: String = redis::cmd("SESSION.CREATE")
        .arg("USER")
        .arg("ada")
        .query(&mut con)
        .unwrap();
    assert!(id.starts_with("sess:app1:"));
    let e = error_of(
        redis::cmd("GET")
            .arg("sess:app2:x")
            .query::<Value>(&mut con),
    );
    assert_eq!(e, NO_KEY);
    let mut anonymous = daemon.client(false);
    let e = error_of(redis::cmd("GET").arg("k").query::<Value>(&mut anonymous));
    assert_eq!(e, "NOAUTH Authentication required.");
    daemon.stop();
}

#[test]
fn set_commands_obey_key_patterns_and_categories() {
    let server = with_users("");
    let mut ops = login(&server, "ops", "pw-ops", false);
    for key in ["sess:app2:s", "cache:s"] {
        let _: i64 = redis::cmd("SADD")
            .arg(key)
            .arg("m")
            .query(&mut ops)
            .unwrap();
    }
    for resp3 in [false, true] {
        let mut app1 = login(&server, "app1", "pw1", resp3);
        let added: i64 = redis::cmd("SADD")
            .arg("sess:app1:s")
            .arg("m")
            .query(&mut app1)
            .unwrap();
        assert_eq!(added, i64::from(!resp3));
        // Every key of the algebra is checked: sources and destination.
        for command in [
            &["SMEMBERS", "sess:app2:s"][..],
            &["SINTER", "sess:app1:s", "sess:app2:s"],
            &["SUNIONSTORE", "sess:app1:d", "sess:app2:s"],
            &["SDIFFSTORE", "sess:app2:s", "sess:app1:s"],
            &["SPOP", "sess:app2:s"],
            &["SSCAN", "sess:app2:s", "0"],
        ] {
            let e = error_of(
                redis::cmd(command[0])
                    .arg(&command[1..])
                    .query::<Value>(&mut app1),
            );
            assert_eq!(e, NO_KEY, "{command:?}");
        }
        let mut reader = login(&server, "reader", "pw-reader", resp3);
        let members: Vec<String> = redis::cmd("SMEMBERS")
            .arg("cache:s")
            .query(&mut reader)
            .unwrap();
        assert_eq!(members, vec!["m".to_owned()]);
        let e = error_of(
            redis::cmd("SADD")
                .arg("cache:s")
                .arg("x")
                .query::<Value>(&mut reader),
        );
        assert_eq!(e, no_command("reader", "sadd"));
    }
}

/// A restricted user's script is checked command by command: its key patterns and categories
/// hold inside `redis.call`, with Redis's wording for scripts.
#[test]
fn a_restricted_user_s_script_is_refused_on_a_foreign_key() {
    let server = with_users("");
    for resp3 in [false, true] {
        let mut app1 = login(&server, "app1", "pw1", resp3);
        let script = "return redis.call('SET', KEYS[1], 'x')";
        let own: Value = redis::cmd("EVAL")
            .arg(script)
            .arg(1)
            .arg("sess:app1:lock")
            .query(&mut app1)
            .unwrap();
        assert_eq!(own, Value::Okay);
        // A declared foreign key is refused before the script runs.
        let declared = error_of(
            redis::cmd("EVAL")
                .arg(script)
                .arg(1)
                .arg("sess:app2:lock")
                .query::<Value>(&mut app1),
        );
        assert_eq!(declared, NO_KEY);
        // An undeclared one, by the command that touches it.
        let foreign = error_of(
            redis::cmd("EVAL")
                .arg("return redis.call('SET', ARGV[1], 'x')")
                .arg(0)
                .arg("sess:app2:lock")
                .query::<Value>(&mut app1),
        );
        assert!(
            foreign
                .starts_with("ERR ACL failure in script: No permissions to access a key script: "),
            "{foreign}"
        );
        let mut reader = login(&server, "reader", "pw-reader", resp3);
        let refused = error_of(
            redis::cmd("EVAL")
                .arg(script)
                .arg(1)
                .arg("cache:a")
                .query::<Value>(&mut reader),
        );
        assert!(
            refused.starts_with(
                "ERR ACL failure in script: User reader has no permissions to run the 'set' \
                 command script: "
            ),
            "{refused}"
        );
        let mut ops = login(&server, "ops", "pw-ops", resp3);
        let stored: Value = redis::cmd("GET")
            .arg("sess:app2:lock")
            .query(&mut ops)
            .unwrap();
        assert_eq!(stored, Value::Nil);
    }
}
