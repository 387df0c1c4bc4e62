//! Helpers shared by the command tests: commands written as space-separated words, run once per
//! protocol version on a fresh server with a manual clock, and Redis's error lines.

use redis::{Connection, RedisError, Value};
use sessiond_tests::TestServer;

/// Runs `test` once per protocol version, each time on a fresh server with a manual clock.
pub fn each_protocol(test: impl Fn(&TestServer, &mut Connection)) {
    for resp3 in [false, true] {
        // Captured, and shown only when the test fails: it says which protocol broke.
        eprintln!("protocol: {}", if resp3 { "RESP3" } else { "RESP2" });
        let server = TestServer::with_manual_clock();
        let mut con = server.connect(resp3);
        test(&server, &mut con);
    }
}

/// A command from space-separated words.
pub fn cmd(line: &str) -> redis::Cmd {
    let mut cmd = redis::Cmd::new();
    for word in line.split(' ') {
        cmd.arg(word);
    }
    cmd
}

/// The reply to `line`, which must not be an error.
pub fn query(con: &mut Connection, line: &str) -> Value {
    cmd(line)
        .query(con)
        .unwrap_or_else(|e| panic!("{line}: {e}"))
}

/// The whole error line (`ERR syntax error`) that `line` is answered with.
pub fn error(con: &mut Connection, line: &str) -> String {
    match cmd(line).query::<Value>(con) {
        Ok(value) => panic!("{line}: expected an error, got {value:?}"),
        Err(e) => error_line(&e),
    }
}

/// The error line as the server sent it: the code, a space, the detail.
pub fn error_line(e: &RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => panic!("not an error reply from the server: {e}"),
    }
}

/// Moves the manual clock; expired keys then vanish from every command's view at once.
pub fn forward(server: &TestServer, ms: u64) {
    server
        .clock
        .as_ref()
        .expect("server started with a manual clock")
        .advance(ms);
}
