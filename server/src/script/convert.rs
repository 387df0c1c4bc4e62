//! Conversions between replies and Lua values, by Redis 7's rules (redis.io, "Lua to RESP2
//! type conversion" and RESP3's).
//!
//! Reply to Lua: integer -> number; bulk -> string; nil bulk or array -> false (RESP3 null ->
//! nil); array -> table; status -> `{ok=...}`; error -> `{err=...}`; with `redis.setresp(3)`:
//! map -> `{map={...}}`, set -> `{set={member=true}}`, double -> `{double=n}`, boolean ->
//! boolean, big number -> `{big_number=s}`, verbatim -> `{verbatim_string={format=, string=}}`.
//!
//! Lua to reply: number -> integer (truncated); string -> bulk; table -> array up to its first
//! nil, or `{ok=}` -> status, `{err=}` -> error, `{double=}`, `{big_number=}`, `{map=}`,
//! `{set=}`; true -> 1 (RESP3: boolean); false -> nil (RESP3: boolean false); nil -> nil.

use bytes::Bytes;
use mlua::{Lua, Table, Value};
use sessiond_protocol::{Frame, ProtocolVersion};

/// The deepest nesting of tables converted into a reply; deeper is an error reply (a table
/// holding itself would otherwise never end).
const MAX_DEPTH: usize = 64;

/// A `redis.call` argument: a string, or a number printed as Redis prints it (an integer when
/// it is one, else `%.17g`); `None` for any other type.
pub(super) fn argument(value: &Value) -> Option<Bytes> {
    match value {
        Value::String(s) => Some(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Integer(i) => Some(Bytes::from(i.to_string())),
        Value::Number(n) => Some(Bytes::from(number_text(*n))),
        _ => None,
    }
}

fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        format!("{}", n as i64)
    } else {
        sessiond_protocol::format_double(n)
    }
}

/// A command's reply as the Lua value a script sees.
pub(super) fn reply_to_lua(lua: &Lua, frame: Frame, resp3: bool) -> mlua::Result<Value> {
    Ok(match frame {
        Frame::Integer(i) => Value::Number(i as f64),
        Frame::Bulk(b) => Value::String(lua.create_string(&b)?),
        Frame::Null | Frame::NullArray if resp3 => Value::Nil,
        Frame::Null | Frame::NullArray => Value::Boolean(false),
        Frame::Simple(s) => single(lua, "ok", Value::String(lua.create_string(&s)?))?,
        Frame::Error(e) => single(lua, "err", Value::String(lua.create_string(&e)?))?,
        Frame::Array(items) | Frame::Push(items) => array(lua, items, resp3)?,
        Frame::Set(items) if !resp3 => array(lua, items, resp3)?,
        Frame::Set(items) => {
            let set = lua.create_table()?;
            for item in items {
                set.raw_set(reply_to_lua(lua, item, resp3)?, true)?;
            }
            single(lua, "set", Value::Table(set))?
        }
        Frame::Map(pairs) if !resp3 => {
            let table = lua.create_table_with_capacity(pairs.len() * 2, 0)?;
            let mut at = 1;
            for (k, v) in pairs {
                table.raw_set(at, reply_to_lua(lua, k, resp3)?)?;
                table.raw_set(at + 1, reply_to_lua(lua, v, resp3)?)?;
                at += 2;
            }
            Value::Table(table)
        }
        Frame::Map(pairs) => {
            let map = lua.create_table()?;
            for (k, v) in pairs {
                map.raw_set(reply_to_lua(lua, k, resp3)?, reply_to_lua(lua, v, resp3)?)?;
            }
            single(lua, "map", Value::Table(map))?
        }
        Frame::Double(d) if resp3 => single(lua, "double", Value::Number(d))?,
        Frame::Double(d) => Value::String(lua.create_string(sessiond_protocol::format_double(d))?),
        Frame::Boolean(b) if resp3 => Value::Boolean(b),
        Frame::Boolean(b) => Value::Number(if b { 1.0 } else { 0.0 }),
        Frame::BigNumber(n) if resp3 => {
            single(lua, "big_number", Value::String(lua.create_string(&n)?))?
        }
        Frame::BigNumber(n) => Value::String(lua.create_string(&n)?),
        Frame::Verbatim { format, data } if resp3 => {
            let inner = lua.create_table()?;
            inner.raw_set("format", lua.create_string(format)?)?;
            inner.raw_set("string", lua.create_string(&data)?)?;
            single(lua, "verbatim_string", Value::Table(inner))?
        }
        Frame::Verbatim { data, .. } => Value::String(lua.create_string(&data)?),
    })
}

fn single(lua: &Lua, key: &str, value: Value) -> mlua::Result<Value> {
    let table = lua.create_table_with_capacity(0, 1)?;
    table.raw_set(key, value)?;
    Ok(Value::Table(table))
}

fn array(lua: &Lua, items: Vec<Frame>, resp3: bool) -> mlua::Result<Value> {
    let table = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.into_iter().enumerate() {
        table.raw_set(i + 1, reply_to_lua(lua, item, resp3)?)?;
    }
    Ok(Value::Table(table))
}

/// A script's result as the reply to its caller, encoded in `version`.
pub(super) fn lua_to_reply(value: &Value, version: ProtocolVersion) -> Frame {
    to_reply(value, version == ProtocolVersion::Resp3, 0)
}

fn to_reply(value: &Value, resp3: bool, depth: usize) -> Frame {
    match value {
        Value::String(s) => Frame::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Integer(i) => Frame::Integer(*i),
        Value::Number(n) => Frame::Integer(truncate(*n)),
        Value::Boolean(b) if resp3 => Frame::Boolean(*b),
        Value::Boolean(true) => Frame::Integer(1),
        Value::Boolean(false) => Frame::Null,
        Value::Table(t) if depth >= MAX_DEPTH => {
            let _ = t;
            Frame::error("ERR reached lua stack limit")
        }
        Value::Table(t) => table_reply(t, resp3, depth),
        _ => Frame::Null,
    }
}

/// A Lua number as Redis converts it: truncated towards zero, saturating.
fn truncate(n: f64) -> i64 {
    if n.is_nan() {
        return i64::MIN;
    }
    n as i64
}

fn table_reply(t: &Table, resp3: bool, depth: usize) -> Frame {
    let field = |name: &str| t.raw_get::<Value>(name).unwrap_or(Value::Nil);
    if let Value::String(err) = field("err") {
        return Frame::Error(line(&err.as_bytes()));
    }
    if let Value::String(ok) = field("ok") {
        return Frame::Simple(line(&ok.as_bytes()));
    }
    if let Some(d) = match field("double") {
        Value::Number(d) => Some(d),
        Value::Integer(i) => Some(i as f64),
        _ => None,
    } {
        return Frame::Double(d);
    }
    if let Value::String(n) = field("big_number") {
        return Frame::BigNumber(line(&n.as_bytes()));
    }
    if let Value::Table(map) = field("map") {
        let mut pairs = Vec::new();
        for pair in map.pairs::<Value, Value>() {
            let Ok((k, v)) = pair else { break };
            pairs.push((
                to_reply(&k, resp3, depth + 1),
                to_reply(&v, resp3, depth + 1),
            ));
        }
        return Frame::Map(pairs);
    }
    if let Value::Table(set) = field("set") {
        let mut members = Vec::new();
        for pair in set.pairs::<Value, Value>() {
            let Ok((k, _)) = pair else { break };
            members.push(to_reply(&k, resp3, depth + 1));
        }
        return Frame::Set(members);
    }
    let mut items = Vec::new();
    let mut at = 1;
    loop {
        let item: Value = t.raw_get(at).unwrap_or(Value::Nil);
        if item.is_nil() {
            break;
        }
        items.push(to_reply(&item, resp3, depth + 1));
        at += 1;
    }
    Frame::Array(items)
}

/// A status or error line: CR and LF become spaces (Redis's `sdsmapchars`).
fn line(bytes: &[u8]) -> Bytes {
    bytes
        .iter()
        .map(|b| if *b == b'\r' || *b == b'\n' { b' ' } else { *b })
        .collect::<Vec<u8>>()
        .into()
}
