//! `COMMAND`, `COMMAND COUNT|LIST|INFO|DOCS|HELP`, from the protocol crate's command table.

use bytes::Bytes;
use sessiond_protocol::cmd::{
    key_specs, keynum_specs, lookup, AclCategories, CommandInfo, CommandSpec, KeySpec, KeynumSpec,
    COMMANDS,
};
use sessiond_protocol::Frame;

use super::Ctx;

/// Answers a COMMAND introspection request.
pub fn command(_ctx: &mut Ctx<'_>, cmd: CommandInfo) -> Frame {
    match cmd {
        CommandInfo::All => Frame::Array(COMMANDS.iter().map(describe).collect()),
        CommandInfo::Count => Frame::Integer(COMMANDS.len() as i64),
        CommandInfo::List => Frame::Array(COMMANDS.iter().map(|s| text(s.name)).collect()),
        CommandInfo::Info(names) if names.is_empty() => {
            Frame::Array(COMMANDS.iter().map(describe).collect())
        }
        CommandInfo::Info(names) => Frame::Array(
            names
                .iter()
                // Redis 7 answers an unknown name with a null (`$-1` in RESP2).
                .map(|name| lookup(name).map_or(Frame::Null, describe))
                .collect(),
        ),
        CommandInfo::Docs(names) => {
            let specs: Vec<&CommandSpec> = if names.is_empty() {
                COMMANDS.iter().collect()
            } else {
                names.iter().filter_map(|name| lookup(name)).collect()
            };
            Frame::Map(
                specs
                    .into_iter()
                    .map(|spec| (text(spec.name), docs(spec)))
                    .collect(),
            )
        }
        CommandInfo::Help => Frame::Array(
            [
                "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "(no subcommand)",
                "    Return details about all commands.",
                "COUNT",
                "    Return the total number of commands in this server.",
                "LIST",
                "    Return a list of all commands in this server.",
                "INFO [<command-name> ...]",
                "    Return details about multiple commands.",
                "DOCS [<command-name> ...]",
                "    Return documentation details about multiple commands.",
                "HELP",
                "    Print this help.",
            ]
            .into_iter()
            .map(Frame::simple)
            .collect(),
        ),
    }
}

fn text(s: &'static str) -> Frame {
    Frame::Bulk(Bytes::from_static(s.as_bytes()))
}

/// A set of flags or ACL categories, as COMMAND INFO shows it.
fn statuses(names: impl Iterator<Item = &'static str>) -> Frame {
    Frame::Set(names.map(Frame::simple).collect())
}

/// The COMMAND INFO array of one command, in Redis 7's shape.
fn describe(spec: &CommandSpec) -> Frame {
    Frame::Array(vec![
        text(spec.name),
        Frame::Integer(i64::from(spec.arity)),
        statuses(spec.flags.names()),
        Frame::Integer(i64::from(spec.first_key)),
        Frame::Integer(i64::from(spec.last_key)),
        Frame::Integer(i64::from(spec.step)),
        statuses(spec.categories.names()),
        Frame::Array(Vec::new()),
        Frame::Set(
            key_specs(spec.name)
                .iter()
                .map(key_spec)
                .chain(keynum_specs(spec.name).iter().map(keynum_spec))
                .collect(),
        ),
        Frame::Array(Vec::new()),
    ])
}

/// One key specification, in Redis 7's shape: flags, then a key at a fixed index, then a range
/// of keys from there.
fn key_spec(spec: &KeySpec) -> Frame {
    key_spec_frame(
        spec.flags,
        spec.index,
        "range",
        vec![
            ("lastkey", Frame::Integer(spec.last_key)),
            ("keystep", Frame::Integer(1)),
            ("limit", Frame::Integer(0)),
        ],
    )
}

/// A `keynum` key specification (EVAL's), in Redis 7's shape: the count at `index`, the keys
/// right after it.
fn keynum_spec(spec: &KeynumSpec) -> Frame {
    key_spec_frame(
        spec.flags,
        spec.index,
        "keynum",
        vec![
            ("keynumidx", Frame::Integer(0)),
            ("firstkey", Frame::Integer(1)),
            ("keystep", Frame::Integer(1)),
        ],
    )
}

/// A key specification's map: its flags, an index `begin_search`, and `find_keys` of type
/// `find` with `spec`.
fn key_spec_frame(
    flags: &[&'static str],
    index: i64,
    find: &'static str,
    spec: Vec<(&'static str, Frame)>,
) -> Frame {
    let map = |pairs: Vec<(&'static str, Frame)>| {
        Frame::Map(pairs.into_iter().map(|(k, v)| (text(k), v)).collect())
    };
    map(vec![
        ("flags", statuses(flags.iter().copied())),
        (
            "begin_search",
            map(vec![
                ("type", text("index")),
                ("spec", map(vec![("index", Frame::Integer(index))])),
            ]),
        ),
        (
            "find_keys",
            map(vec![("type", text(find)), ("spec", map(spec))]),
        ),
    ])
}

fn docs(spec: &CommandSpec) -> Frame {
    // No command is in more than one of these categories.
    let group = [
        (AclCategories::STRING, "string"),
        (AclCategories::SET, "set"),
        (AclCategories::KEYSPACE, "generic"),
        (AclCategories::CONNECTION, "connection"),
        (AclCategories::TRANSACTION, "transactions"),
        (AclCategories::SCRIPTING, "scripting"),
    ]
    .into_iter()
    .find_map(|(category, group)| spec.categories.contains(category).then_some(group))
    .unwrap_or("server");
    Frame::Map(vec![
        (text("summary"), text(spec.summary)),
        (text("since"), text("1.0.0")),
        (text("group"), text(group)),
    ])
}
