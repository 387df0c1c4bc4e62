//! Redis 7's key specifications, the ninth element of COMMAND INFO, for the commands whose
//! keys play different roles (RENAME reads and deletes its first key, overwrites its second).
//! Commands not listed here report none; the table's first/last/step positions still drive
//! the ACL checks of every command.

/// Key arguments as Redis 7 describes them: found at a fixed index (`begin_search` of type
/// `index`), a range of keys from there (`find_keys` of type `range`, step 1, limit 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// Redis's flags as COMMAND INFO prints them: `RW`/`OW`/`RO`/`RM`, then what is done to
    /// the key (`access`, `update`, `insert`, `delete`).
    pub flags: &'static [&'static str],
    /// The argument index of the key (the command's name is 0).
    pub index: i64,
    /// The range's last key relative to `index`: 0 for that one key, -1 for every argument
    /// to the end.
    pub last_key: i64,
}

const RENAME: &[KeySpec] = &[
    KeySpec {
        flags: &["RW", "access", "delete"],
        index: 1,
        last_key: 0,
    },
    KeySpec {
        flags: &["OW", "update"],
        index: 2,
        last_key: 0,
    },
];

const RENAMENX: &[KeySpec] = &[
    KeySpec {
        flags: &["RW", "access", "delete"],
        index: 1,
        last_key: 0,
    },
    KeySpec {
        flags: &["OW", "insert"],
        index: 2,
        last_key: 0,
    },
];

const MOVE: &[KeySpec] = &[KeySpec {
    flags: &["RW", "access", "update"],
    index: 1,
    last_key: 0,
}];

const WATCH: &[KeySpec] = &[KeySpec {
    flags: &["RO"],
    index: 1,
    last_key: -1,
}];

/// Shard channels: at key positions for a cluster's routing, but not keys.
const SHARD_CHANNELS: &[KeySpec] = &[KeySpec {
    flags: &["not_key"],
    index: 1,
    last_key: -1,
}];

const SPUBLISH: &[KeySpec] = &[KeySpec {
    flags: &["not_key"],
    index: 1,
    last_key: 0,
}];

/// The key specifications of the command called `name` (lower case); empty when none are
/// described.
pub fn key_specs(name: &str) -> &'static [KeySpec] {
    match name {
        "rename" => RENAME,
        "move" => MOVE,
        "renamenx" => RENAMENX,
        "watch" => WATCH,
        "ssubscribe" | "sunsubscribe" => SHARD_CHANNELS,
        "spublish" => SPUBLISH,
        _ => &[],
    }
}

/// A key specification whose keys follow a count among the arguments (Redis 7's `keynum`
/// `find_keys`), as EVAL's: `numkeys` at `index`, then that many keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeynumSpec {
    /// Redis's flags, as in [`KeySpec::flags`].
    pub flags: &'static [&'static str],
    /// The argument index where the search begins (the count, for EVAL).
    pub index: i64,
}

const EVAL: &[KeynumSpec] = &[KeynumSpec {
    flags: &["RW", "access", "update"],
    index: 2,
}];

const EVAL_RO: &[KeynumSpec] = &[KeynumSpec {
    flags: &["RO", "access"],
    index: 2,
}];

/// The `keynum` key specifications of the command called `name` (lower case), reported after
/// its [`key_specs`]; empty for most commands.
pub fn keynum_specs(name: &str) -> &'static [KeynumSpec] {
    match name {
        "eval" | "evalsha" => EVAL,
        "eval_ro" | "evalsha_ro" => EVAL_RO,
        _ => &[],
    }
}
