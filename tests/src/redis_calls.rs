//! Small helpers for tests that drive the server through the `redis` crate: a raw call, the
//! full text of an error reply, a setting's value, and Redis's WRONGTYPE wording.

use redis::{Connection, RedisResult, Value};

/// Redis's reply to a command on a key of another type.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// Runs `name args...` and returns the raw reply.
pub fn call(con: &mut Connection, name: &str, args: &[&str]) -> RedisResult<Value> {
    redis::cmd(name).arg(args).query(con)
}

/// The full text of the error reply `name args...` gets, as the server sent it.
pub fn error_of(con: &mut Connection, name: &str, args: &[&str]) -> String {
    match call(con, name, args) {
        Ok(value) => panic!("{name} {args:?}: expected an error, got {value:?}"),
        Err(error) => format!(
            "{} {}",
            error.code().unwrap_or("?"),
            error.detail().unwrap_or("")
        ),
    }
}

/// A bulk string reply holding `text`.
pub fn bulk(text: &str) -> Value {
    Value::BulkString(text.as_bytes().to_vec())
}

/// The value of the setting `name` (CONFIG GET with one setting's exact name; RESP2 or RESP3).
pub fn config_get(con: &mut Connection, name: &str) -> String {
    let pairs: std::collections::HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query(con)
        .expect("CONFIG GET");
    let mut values = pairs.into_values();
    match (values.next(), values.next()) {
        (Some(value), None) => value,
        _ => panic!("CONFIG GET {name}: not exactly one setting"),
    }
}
