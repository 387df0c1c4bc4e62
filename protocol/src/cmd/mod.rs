//! Typed commands: one file per command (or family of commands sharing one effect), each
//! parsing its arguments with Redis's validation order and error wording.
//!
//! [`Command::parse`] looks the name up in [`COMMANDS`] (case-insensitively), checks the arity
//! the way Redis does before any option is read, then hands the arguments to the command's own
//! parser. An unknown name is a value ([`CommandError::Unknown`]), never a panic.

mod append;
mod args;
mod client;
mod command;
mod config;
mod connection;
mod debug;
mod error;
mod eval;
mod expire;
mod expiry;
mod flags;
mod flush;
mod get;
mod getex;
mod hash;
mod incr;
mod info;
mod key_spec;
mod latency;
mod memory;
mod mget;
mod move_;
mod mset;
mod pubsub;
mod rename;
mod replication;
mod scan;
mod session_create;
mod session_destroyall;
mod session_get;
mod session_list;
mod session_regenerate;
mod session_set;
mod session_unset;
mod set;
mod sets;
mod shutdown;
mod slowlog;
mod swapdb;

use bytes::Bytes;

pub use append::Append;
pub use args::{is, Args};
pub use client::{Client, ClientType, KillFilter};
pub use command::CommandInfo;
pub use config::Config;
pub use connection::{Auth, Echo, Hello, Ping, Select};
pub use debug::Debug;
pub use error::CommandError;
pub use eval::{Eval, Script};
pub use expire::{Expire, ExpireCondition};
pub use expiry::Expiry;
pub use flags::{AclCategories, CommandFlags};
pub use flush::Flush;
pub use get::KeyOnly;
pub use getex::{GetEx, GetExTtl};
pub use hash::{HIncrBy, KeyFields, KeyPairs};
pub use incr::IncrBy;
pub use info::Info;
pub use key_spec::{key_specs, keynum_specs, KeySpec, KeynumSpec};
pub use latency::Latency;
pub use memory::Memory;
pub use mget::Keys;
pub use move_::Move;
pub use mset::MSet;
pub use pubsub::{Publish, Pubsub, Subscription, SubscriptionKind};
pub use rename::Rename;
pub use replication::{Psync, ReplConf, ReplConfOption, ReplicaOf, Wait, MAX_REPLICA_ADDRESS};
pub use scan::Scan;
pub use session_create::SessionCreate;
pub use session_destroyall::SessionDestroyAll;
pub use session_get::SessionGet;
pub use session_list::UserOnly;
pub use session_regenerate::SessionRegenerate;
pub use session_set::SessionSet;
pub use session_unset::SessionUnset;
pub use set::{Set, SetCondition, SetReply, SetTtl};
pub use sets::{KeyMembers, SPop, SRandMember, SScan, SetAlgebra, SetOp};
pub use shutdown::Shutdown;
pub use slowlog::Slowlog;
pub use swapdb::SwapDb;

/// What TTL-reading command was asked, which decides the unit and form of the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlForm {
    /// `TTL`: seconds left.
    Seconds,
    /// `PTTL`: milliseconds left.
    Millis,
    /// `EXPIRETIME`: the deadline as a Unix time in seconds.
    AtSeconds,
    /// `PEXPIRETIME`: the deadline as a Unix time in milliseconds.
    AtMillis,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `PING [message]`.
    Ping(Ping),
    /// `ECHO message`.
    Echo(Echo),
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
    Hello(Hello),
    /// `AUTH [user] password`.
    Auth(Auth),
    /// `SELECT index`.
    Select(Select),
    /// `QUIT`.
    Quit,
    /// `(P|S)SUBSCRIBE` and `(P|S)UNSUBSCRIBE`.
    Subscribe(Subscription),
    /// `(P|S)UNSUBSCRIBE`.
    Unsubscribe(Subscription),
    /// `PUBLISH channel message`.
    Publish(Publish),
    /// `SPUBLISH shardchannel message`.
    SPublish(Publish),
    /// `PUBSUB <subcommand>`.
    Pubsub(Pubsub),
    /// `MULTI`.
    Multi,
    /// `EXEC`.
    Exec,
    /// `DISCARD`.
    Discard,
    /// `WATCH key [key ...]`.
    Watch(Keys),
    /// `UNWATCH`.
    Unwatch,
    /// `RESET`.
    Reset,
    /// `CLIENT ...`.
    Client(Client),
    /// `INFO [section ...]`.
    Info(Info),
    /// `DBSIZE`.
    DbSize,
    /// `FLUSHALL`/`FLUSHDB`.
    Flush(Flush),
    /// `TIME`.
    Time,
    /// `COMMAND ...`.
    Command(CommandInfo),
    /// `CONFIG ...`.
    Config(Config),
    /// `MEMORY ...`.
    Memory(Memory),
    /// `DEBUG ...`.
    Debug(Debug),
    /// `SLOWLOG ...`.
    Slowlog(Slowlog),
    /// `LATENCY ...`.
    Latency(Latency),
    /// `SHUTDOWN ...`.
    Shutdown(Shutdown),
    /// `SAVE`.
    Save,
    /// `BGSAVE [SCHEDULE]`.
    BgSave,
    /// `LASTSAVE`.
    LastSave,
    /// `GET key`.
    Get(KeyOnly),
    /// `SET`, `SETEX`, `PSETEX`, `SETNX`, `GETSET`.
    Set(Set),
    /// `GETEX key [...]`.
    GetEx(GetEx),
    /// `GETDEL key`.
    GetDel(KeyOnly),
    /// `MGET key [key ...]`.
    MGet(Keys),
    /// `MSET key value [key value ...]`.
    MSet(MSet),
    /// `APPEND key value`.
    Append(Append),
    /// `STRLEN key`.
    StrLen(KeyOnly),
    /// `INCR`, `INCRBY`, `DECR`, `DECRBY`.
    IncrBy(IncrBy),
    /// `DEL` and `UNLINK`.
    Del(Keys),
    /// `EXISTS key [key ...]`.
    Exists(Keys),
    /// `TYPE key`.
    Type(KeyOnly),
    /// `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT`.
    Expire(Expire),
    /// `TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME`.
    Ttl(KeyOnly, TtlForm),
    /// `PERSIST key`.
    Persist(KeyOnly),
    /// `RENAME key newkey` and `RENAMENX key newkey`.
    Rename(Rename),
    /// `MOVE key db`.
    Move(Move),
    /// `SWAPDB index1 index2`.
    SwapDb(SwapDb),
    /// `SCAN cursor [...]`.
    Scan(Scan),
    /// `KEYS pattern` (the pattern is in `key`).
    Keys(KeyOnly),
    /// `HSET key field value [field value ...]`.
    HSet(KeyPairs),
    /// `HSETNX key field value`.
    HSetNx(KeyPairs),
    /// `HMSET key field value [field value ...]` (HSET with an OK reply, for older clients).
    HMSet(KeyPairs),
    /// `HGET key field` (one field).
    HGet(KeyFields),
    /// `HMGET key field [field ...]`.
    HMGet(KeyFields),
    /// `HGETALL key`.
    HGetAll(KeyOnly),
    /// `HDEL key field [field ...]`.
    HDel(KeyFields),
    /// `HEXISTS key field` (one field).
    HExists(KeyFields),
    /// `HLEN key`.
    HLen(KeyOnly),
    /// `HKEYS key`.
    HKeys(KeyOnly),
    /// `HVALS key`.
    HVals(KeyOnly),
    /// `HINCRBY key field increment`.
    HIncrBy(HIncrBy),
    /// `SADD key member [member ...]`.
    SAdd(KeyMembers),
    /// `SREM key member [member ...]`.
    SRem(KeyMembers),
    /// `SISMEMBER key member` (one member).
    SIsMember(KeyMembers),
    /// `SMISMEMBER key member [member ...]`.
    SMIsMember(KeyMembers),
    /// `SMEMBERS key`.
    SMembers(KeyOnly),
    /// `SCARD key`.
    SCard(KeyOnly),
    /// `SPOP key [count]`.
    SPop(SPop),
    /// `SRANDMEMBER key [count]`.
    SRandMember(SRandMember),
    /// `SSCAN key cursor [MATCH pattern] [COUNT count]`.
    SScan(SScan),
    /// `SINTER`, `SUNION`, `SDIFF` and their `...STORE` forms.
    SetAlgebra(SetAlgebra),
    /// `EVAL`, `EVALSHA`, `EVAL_RO`, `EVALSHA_RO`.
    Eval(Eval),
    /// `SCRIPT LOAD | EXISTS | FLUSH | KILL | HELP`.
    Script(Script),
    /// `SESSION.CREATE [USER u] [IDLE ms] [ABSOLUTE ms] [DATA f v ...]`.
    SessionCreate(SessionCreate),
    /// `SESSION.GET id [field ...]`.
    SessionGet(SessionGet),
    /// `SESSION.SET id [IFVERSION v] field value [...]`.
    SessionSet(SessionSet),
    /// `SESSION.UNSET id field [field ...]` (the ID is in `key`).
    SessionUnset(SessionUnset),
    /// `SESSION.TOUCH id` (the ID is in `key`).
    SessionTouch(KeyOnly),
    /// `SESSION.INFO id` (the ID is in `key`).
    SessionInfo(KeyOnly),
    /// `SESSION.REGENERATE id [USER user]`.
    SessionRegenerate(SessionRegenerate),
    /// `SESSION.DESTROY id [id ...]` (the IDs are in `keys`).
    SessionDestroy(Keys),
    /// `SESSION.LIST user`.
    SessionList(UserOnly),
    /// `SESSION.COUNT user`.
    SessionCount(UserOnly),
    /// `SESSION.DESTROYALL user [EXCEPT id]`.
    SessionDestroyAll(SessionDestroyAll),
    /// `REPLICAOF host port | NO ONE` and its alias `SLAVEOF`.
    ReplicaOf(ReplicaOf),
    /// `ROLE`.
    Role,
    /// `REPLCONF option value [...]`.
    ReplConf(ReplConf),
    /// `PSYNC replicationid offset` and `SYNC`.
    Psync(Psync),
    /// `WAIT numreplicas timeout`.
    Wait(Wait),
}

type Parser = fn(&mut Args) -> Result<Command, CommandError>;

/// One row of the command table, as `COMMAND INFO` reports it.
#[derive(Debug)]
pub struct CommandSpec {
    /// The lower-case name.
    pub name: &'static str,
    /// Redis's arity: positive is exact, negative is a minimum, both counting the name.
    pub arity: i32,
    /// Redis's command flags (`readonly`, `write`, `fast`, ...).
    pub flags: CommandFlags,
    /// Position of the first key argument (0: none).
    pub first_key: i32,
    /// Position of the last key argument (-1: the last argument).
    pub last_key: i32,
    /// Step between key arguments.
    pub step: i32,
    /// The ACL categories the command belongs to (`@read`, `@write`, ...).
    pub categories: AclCategories,
    /// A one-line summary for `COMMAND DOCS`.
    pub summary: &'static str,
    parse: Parser,
}

impl CommandSpec {
    /// The arguments at the key positions the table declares (Redis's legacy key
    /// specification): `first_key`, then every `step`, up to `last_key` (negative: counted
    /// from the end). None for a command that declares no key.
    pub fn key_args<'a>(&self, args: &'a [Bytes]) -> impl Iterator<Item = &'a Bytes> + 'a {
        // Shard channels sit at key positions (for a cluster's routing, Redis's `not_key` key
        // specification) but are channels, held to channel permissions.
        let first = if self.flags.contains(CommandFlags::PUBSUB) {
            0
        } else {
            usize::try_from(self.first_key).unwrap_or(0)
        };
        let last = if self.last_key < 0 {
            args.len()
                .saturating_sub(self.last_key.unsigned_abs() as usize)
        } else {
            self.last_key as usize
        };
        let end = last.saturating_add(1).min(args.len());
        let keys = if first == 0 {
            None
        } else {
            args.get(first..end)
        };
        keys.unwrap_or_default()
            .iter()
            .step_by(self.step.max(1) as usize)
    }

    /// Whether the command declares no key and reaches none either: every @connection command
    /// (PING, AUTH, CLIENT, SELECT...), TIME and LASTSAVE. The other keyless commands (KEYS,
    /// SCAN, DBSIZE, FLUSHALL, INFO...) read or change the whole keyspace, so an atomic block
    /// running one holds every shard.
    pub fn touches_no_key(&self) -> bool {
        self.first_key <= 0
            && (self.categories.contains(AclCategories::CONNECTION)
                || matches!(self.name, "time" | "lastsave"))
    }
}

macro_rules! spec {
    ($name:literal, $arity:expr, [$($flag:ident),*], $first:expr, $last:expr, $step:expr,
     [$($cat:ident),*], $summary:literal, $parse:expr) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: CommandFlags::NONE$(.with(CommandFlags::$flag))*,
            first_key: $first,
            last_key: $last,
            step: $step,
            categories: AclCategories::NONE$(.with(AclCategories::$cat))*,
            summary: $summary,
            parse: $parse,
        }
    };
}

/// Every command the server knows, hot ones first (lookup is a scan of this table).
pub static COMMANDS: &[CommandSpec] = &[
    spec!("get", 2, [READONLY, FAST], 1, 1, 1, [READ, STRING, FAST],
        "Returns the string value of a key.", |a| Ok(Command::Get(KeyOnly::parse(a)?))),
    spec!("set", -3, [WRITE, DENYOOM], 1, 1, 1, [WRITE, STRING, SLOW],
        "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.",
        |a| Ok(Command::Set(Set::parse(a)?))),
    spec!("ping", -1, [FAST], 0, 0, 0, [FAST, CONNECTION],
        "Returns the server's liveliness response.", |a| Ok(Command::Ping(Ping::parse(a)?))),
    spec!("mget", -2, [READONLY, FAST], 1, -1, 1, [READ, STRING, FAST],
        "Atomically returns the string values of one or more keys.", |a| Ok(Command::MGet(Keys::parse(a)?))),
    spec!("mset", -3, [WRITE, DENYOOM], 1, -1, 2, [WRITE, STRING, SLOW],
        "Atomically creates or modifies the string values of one or more keys.",
        |a| Ok(Command::MSet(MSet::parse(a)?))),
    spec!("del", -2, [WRITE], 1, -1, 1, [KEYSPACE, WRITE, SLOW],
        "Deletes one or more keys.", |a| Ok(Command::Del(Keys::parse(a)?))),
    spec!("multi", 1, [NOSCRIPT, LOADING, STALE, FAST, ALLOW_BUSY], 0, 0, 0, [FAST, TRANSACTION],
        "Starts a transaction.", |_| Ok(Command::Multi)),
    spec!("exec", 1, [NOSCRIPT, LOADING, STALE, SKIP_SLOWLOG], 0, 0, 0, [SLOW, TRANSACTION],
        "Executes all commands in a transaction.", |_| Ok(Command::Exec)),
    spec!("discard", 1, [NOSCRIPT, LOADING, STALE, FAST, ALLOW_BUSY], 0, 0, 0, [FAST, TRANSACTION],
        "Discards a transaction.", |_| Ok(Command::Discard)),
    spec!("watch", -2, [NOSCRIPT, LOADING, STALE, FAST, ALLOW_BUSY], 1, -1, 1, [FAST, TRANSACTION],
        "Monitors changes to keys to determine the execution of a transaction.",
        |a| Ok(Command::Watch(Keys::parse(a)?))),
    spec!("unwatch", 1, [NOSCRIPT, LOADING, STALE, FAST, ALLOW_BUSY], 0, 0, 0, [FAST, TRANSACTION],
        "Forgets about watched keys of a transaction.", |_| Ok(Command::Unwatch)),
    spec!("exists", -2, [READONLY, FAST], 1, -1, 1, [KEYSPACE, READ, FAST],
        "Determines whether one or more keys exist.", |a| Ok(Command::Exists(Keys::parse(a)?))),
    spec!("expire", -3, [WRITE, FAST], 1, 1, 1, [KEYSPACE, WRITE, FAST],
        "Sets the expiration time of a key in seconds.",
        |a| Ok(Command::Expire(Expire::parse(a, true, false)?))),
    spec!("pexpire", -3, [WRITE, FAST], 1, 1, 1, [KEYSPACE, WRITE, FAST],
        "Sets the expiration time of a key in milliseconds.",
        |a| Ok(Command::Expire(Expire::parse(a, false, false)?))),
    spec!("expireat", -3, [WRITE, FAST], 1, 1, 1, [KEYSPACE, WRITE, FAST],
        "Sets the expiration time of a key to a Unix timestamp.",
        |a| Ok(Command::Expire(Expire::parse(a, true, true)?))),
    spec!("pexpireat", -3, [WRITE, FAST], 1, 1, 1, [KEYSPACE, WRITE, FAST],
        "Sets the expiration time of a key to a Unix milliseconds timestamp.",
        |a| Ok(Command::Expire(Expire::parse(a, false, true)?))),
    spec!("ttl", 2, [READONLY, FAST], 1, 1, 1, [KEYSPACE, READ, FAST],
        "Returns the expiration time in seconds of a key.",
        |a| Ok(Command::Ttl(KeyOnly::parse(a)?, TtlForm::Seconds))),
    spec!("pttl", 2, [READONLY, FAST], 1, 1, 1, [KEYSPACE, READ, FAST],
        "Returns the expiration time in milliseconds of a key.",
        |a| Ok(Command::Ttl(KeyOnly::parse(a)?, TtlForm::Millis))),
    spec!("expiretime", 2, [READONLY, FAST], 1, 1, 1, [KEYSPACE, READ, FAST],
        "Returns the expiration time of a key as a Unix timestamp.",
        |a| Ok(Command::Ttl(KeyOnly::parse(a)?, TtlForm::AtSeconds))),
    spec!("pexpiretime", 2, [READONLY, FAST], 1, 1, 1, [KEYSPACE, READ, FAST],
        "Returns the expiration time of a key as a Unix milliseconds timestamp.",
        |a| Ok(Command::Ttl(KeyOnly::parse(a)?, TtlForm::AtMillis))),
    spec!("setex", 4, [WRITE, DENYOOM], 1, 1, 1, [WRITE, STRING, SLOW],
        "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.",
        |a| Ok(Command::Set(Set::parse_setex(a, false)?))),
    spec!("psetex", 4, [WRITE, DENYOOM], 1, 1, 1, [WRITE, STRING, SLOW],
        "Sets both string value and expiration time in milliseconds of a key.",
        |a| Ok(Command::Set(Set::parse_setex(a, true)?))),
    spec!("setnx", 3, [WRITE, DENYOOM, FAST], 1, 1, 1, [WRITE, STRING, FAST],
        "Set the string value of a key only when the key doesn't exist.",
        |a| Ok(Command::Set(Set::parse_setnx(a)?))),
    spec!("getset", 3, [WRITE, DENYOOM, FAST], 1, 1, 1, [WRITE, STRING, FAST],
        "Returns the previous string value of a key after setting it to a new value.",
        |a| Ok(Command::Set(Set::parse_getset(a)?))),
    spec!("getex", -2, [WRITE, FAST], 1, 1, 1, [WRITE, STRING, FAST],
        "Returns the string value of a key after setting its expiration time.",
        |a| Ok(Command::GetEx(GetEx::parse(a)?))),
    spec!("getdel", 2, [WRITE, FAST], 1, 1, 1, [WRITE, STRING, FAST],
        "Returns the string value of a key after deleting the key.",
        |a| Ok(Command::GetDel(KeyOnly::parse(a)?))),
    spec!("append", 3, [WRITE, DENYOOM, FAST], 1, 1, 1, [WRITE, STRING, FAST],
        "Appends a string to the value of a key. Creates the key if it doesn't exist.",
        |a| Ok(Command::Append(Append::parse(a)?))),
    spec!("strlen", 2, [READONLY, FAST], 1, 1, 1, [READ, STRING, FAST],
        "Returns the length of a string value.", |a| Ok(Command::StrLen(KeyOnly::parse(a)?))),
    spec!("incr", 2, [WRITE, DENYOOM, FAST], 1, 1, 1, [WRITE, STRING, FAST],
        "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
        |a| Ok(Command::IncrBy(IncrBy::parse_step(a, 1)?))),
    spec!("decr", 2, [WRITE, DENYOOM, FAST], 1, 1, 1, [WRITE, STRING, FAST],
        "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
        |a| Ok(Command::IncrBy(IncrBy::parse_step(a, -1)?))),
    spec!("incrby", 3, [WRITE, DENYOOM, FAST], 1, 1, 1, [WRITE, STRING, FAST],
        "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
        |a| Ok(Command::IncrBy(IncrBy::parse_by(a, false)?))),
    spec!("decrby", 3, [WRITE, DENYOOM, FAST], 1, 1, 1, [WRITE, STRING, FAST],
        "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.",
        |a| Ok(Command::IncrBy(IncrBy::parse_by(a, true)?))),
    // Not `fast` as in Redis: UNLINK is DEL here, which frees a large hash or session on the
    // command's thread.
    spec!("unlink", -2, [WRITE], 1, -1, 1, [KEYSPACE, WRITE, SLOW],
        "Deletes one or more keys.", |a| Ok(Command::Del(Keys::parse(a)?))),
    spec!("type", 2, [READONLY, FAST], 1, 1, 1, [KEYSPACE, READ, FAST],
        "Determines the type of value stored at a key.", |a| Ok(Command::Type(KeyOnly::parse(a)?))),
    spec!("persist", 2, [WRITE, FAST], 1, 1, 1, [KEYSPACE, WRITE, FAST],
        "Removes the expiration time of a key.", |a| Ok(Command::Persist(KeyOnly::parse(a)?))),
    // Not `denyoom`, as in Redis: a rename adds no data (the key's bytes differ at most).
    spec!("rename", 3, [WRITE], 1, 2, 1, [KEYSPACE, WRITE, SLOW],
        "Renames a key and overwrites the destination.",
        |a| Ok(Command::Rename(Rename::parse(a, false)?))),
    spec!("renamenx", 3, [WRITE, FAST], 1, 2, 1, [KEYSPACE, WRITE, FAST],
        "Renames a key only when the target key name doesn't exist.",
        |a| Ok(Command::Rename(Rename::parse(a, true)?))),
    spec!("move", 3, [WRITE, FAST], 1, 1, 1, [KEYSPACE, WRITE, FAST],
        "Moves a key to another database.", |a| Ok(Command::Move(Move::parse(a)?))),
    spec!("scan", -2, [READONLY], 0, 0, 0, [KEYSPACE, READ, SLOW],
        "Iterates over the key names in the database.", |a| Ok(Command::Scan(Scan::parse(a)?))),
    spec!("keys", 2, [READONLY], 0, 0, 0, [KEYSPACE, READ, SLOW, DANGEROUS],
        "Returns all key names that match a pattern.", |a| Ok(Command::Keys(KeyOnly::parse(a)?))),
    spec!("hset", -4, [WRITE, DENYOOM, FAST], 1, 1, 1, [WRITE, HASH, FAST],
        "Creates or modifies the value of a field in a hash.", |a| Ok(Command::HSet(KeyPairs::parse(a)?))),
    spec!("hmset", -4, [WRITE, DENYOOM, FAST], 1, 1, 1, [WRITE, HASH, FAST],
        "Sets the values of multiple fields.", |a| Ok(Command::HMSet(KeyPairs::parse(a)?))),
    spec!("hsetnx", 4, [WRITE, DENYOOM, FAST], 1, 1, 1, [WRITE, HASH, FAST],
        "Sets the value of a field in a hash only when the field doesn't exist.",
        |a| Ok(Command::HSetNx(KeyPairs::parse(a)?))),
    spec!("hget", 3, [READONLY, FAST], 1, 1, 1, [READ, HASH, FAST],
        "Returns the value of a field in a hash.", |a| Ok(Command::HGet(KeyFields::parse(a)?))),
    spec!("hmget", -3, [READONLY, FAST], 1, 1, 1, [READ, HASH, FAST],
        "Returns the values of all fields in a hash.", |a| Ok(Command::HMGet(KeyFields::parse(a)?))),
    spec!("hgetall", 2, [READONLY], 1, 1, 1, [READ, HASH, SLOW],
        "Returns all fields and values in a hash.", |a| Ok(Command::HGetAll(KeyOnly::parse(a)?))),
    spec!("hdel", -3, [WRITE, FAST], 1, 1, 1, [WRITE, HASH, FAST],
        "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain.",
        |a| Ok(Command::HDel(KeyFields::parse(a)?))),
    spec!("hexists", 3, [READONLY, FAST], 1, 1, 1, [READ, HASH, FAST],
        "Determines whether a field exists in a hash.", |a| Ok(Command::HExists(KeyFields::parse(a)?))),
    spec!("hlen", 2, [READONLY, FAST], 1, 1, 1, [READ, HASH, FAST],
        "Returns the number of fields in a hash.", |a| Ok(Command::HLen(KeyOnly::parse(a)?))),
    spec!("hkeys", 2, [READONLY], 1, 1, 1, [READ, HASH, SLOW],
        "Returns all fields in a hash.", |a| Ok(Command::HKeys(KeyOnly::parse(a)?))),
    spec!("hvals", 2, [READONLY], 1, 1, 1, [READ, HASH, SLOW],
        "Returns all values in a hash.", |a| Ok(Command::HVals(KeyOnly::parse(a)?))),
    spec!("hincrby", 4, [WRITE, DENYOOM, FAST], 1, 1, 1, [WRITE, HASH, FAST],
        "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist.",
        |a| Ok(Command::HIncrBy(HIncrBy::parse(a)?))),
    spec!("sadd", -3, [WRITE, DENYOOM, FAST], 1, 1, 1, [WRITE, SET, FAST],
        "Adds one or more members to a set. Creates the key if it doesn't exist.",
        |a| Ok(Command::SAdd(KeyMembers::parse(a)?))),
    spec!("srem", -3, [WRITE, FAST], 1, 1, 1, [WRITE, SET, FAST],
        "Removes one or more members from a set. Deletes the set if the last member was removed.",
        |a| Ok(Command::SRem(KeyMembers::parse(a)?))),
    spec!("smembers", 2, [READONLY], 1, 1, 1, [READ, SET, SLOW],
        "Returns all members of a set.", |a| Ok(Command::SMembers(KeyOnly::parse(a)?))),
    spec!("sismember", 3, [READONLY, FAST], 1, 1, 1, [READ, SET, FAST],
        "Determines whether a member belongs to a set.",
        |a| Ok(Command::SIsMember(KeyMembers::parse(a)?))),
    spec!("smismember", -3, [READONLY, FAST], 1, 1, 1, [READ, SET, FAST],
        "Determines whether multiple members belong to a set.",
        |a| Ok(Command::SMIsMember(KeyMembers::parse(a)?))),
    spec!("scard", 2, [READONLY, FAST], 1, 1, 1, [READ, SET, FAST],
        "Returns the number of members in a set.", |a| Ok(Command::SCard(KeyOnly::parse(a)?))),
    spec!("spop", -2, [WRITE, FAST], 1, 1, 1, [WRITE, SET, FAST],
        "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped.",
        |a| Ok(Command::SPop(SPop::parse(a)?))),
    spec!("srandmember", -2, [READONLY], 1, 1, 1, [READ, SET, SLOW],
        "Get one or multiple random members from a set",
        |a| Ok(Command::SRandMember(SRandMember::parse(a)?))),
    spec!("sscan", -3, [READONLY], 1, 1, 1, [READ, SET, SLOW],
        "Iterates over members of a set.", |a| Ok(Command::SScan(SScan::parse(a)?))),
    spec!("sinter", -2, [READONLY], 1, -1, 1, [READ, SET, SLOW],
        "Returns the intersect of multiple sets.",
        |a| Ok(Command::SetAlgebra(SetAlgebra::parse(a, SetOp::Inter, false)?))),
    spec!("sunion", -2, [READONLY], 1, -1, 1, [READ, SET, SLOW],
        "Returns the union of multiple sets.",
        |a| Ok(Command::SetAlgebra(SetAlgebra::parse(a, SetOp::Union, false)?))),
    spec!("sdiff", -2, [READONLY], 1, -1, 1, [READ, SET, SLOW],
        "Returns the difference of multiple sets.",
        |a| Ok(Command::SetAlgebra(SetAlgebra::parse(a, SetOp::Diff, false)?))),
    spec!("sinterstore", -3, [WRITE, DENYOOM], 1, -1, 1, [WRITE, SET, SLOW],
        "Stores the intersect of multiple sets in a key.",
        |a| Ok(Command::SetAlgebra(SetAlgebra::parse(a, SetOp::Inter, true)?))),
    spec!("sunionstore", -3, [WRITE, DENYOOM], 1, -1, 1, [WRITE, SET, SLOW],
        "Stores the union of multiple sets in a key.",
        |a| Ok(Command::SetAlgebra(SetAlgebra::parse(a, SetOp::Union, true)?))),
    spec!("sdiffstore", -3, [WRITE, DENYOOM], 1, -1, 1, [WRITE, SET, SLOW],
        "Stores the difference of multiple sets in a key.",
        |a| Ok(Command::SetAlgebra(SetAlgebra::parse(a, SetOp::Diff, true)?))),
    // `no_multi` (sessiond's own rule): SESSION.CREATE, REGENERATE, LIST, COUNT and DESTROYALL
    // take the per-user index, which REGENERATE and DESTROYALL hold while they lock shards; EXEC
    // holds its shards first, so inside it they could deadlock against those.
    spec!("session.create", -1, [WRITE, DENYOOM, NO_MULTI], 0, 0, 0, [WRITE, SESSION, SLOW],
        "Creates a session under a new server-issued ID and returns the ID.",
        |a| Ok(Command::SessionCreate(SessionCreate::parse(a)?))),
    spec!("session.get", -2, [WRITE, FAST], 1, 1, 1, [WRITE, SESSION, FAST],
        "Returns a session's fields and refreshes its idle timer.",
        |a| Ok(Command::SessionGet(SessionGet::parse(a)?))),
    spec!("session.set", -4, [WRITE, DENYOOM, FAST], 1, 1, 1, [WRITE, SESSION, FAST],
        "Writes fields of a session, optionally only at a given version; returns the new version.",
        |a| Ok(Command::SessionSet(SessionSet::parse(a)?))),
    spec!("session.unset", -3, [WRITE, FAST], 1, 1, 1, [WRITE, SESSION, FAST],
        "Removes fields of a session; returns how many were removed.",
        |a| Ok(Command::SessionUnset(session_unset::parse(a)?))),
    spec!("session.touch", 2, [WRITE, FAST], 1, 1, 1, [WRITE, SESSION, FAST],
        "Refreshes a session's idle timer; returns its time to live in milliseconds.",
        |a| Ok(Command::SessionTouch(KeyOnly::parse(a)?))),
    spec!("session.info", 2, [READONLY, FAST], 1, 1, 1, [READ, SESSION, FAST],
        "Returns a session's metadata without refreshing it.",
        |a| Ok(Command::SessionInfo(KeyOnly::parse(a)?))),
    spec!("session.regenerate", -2, [WRITE, FAST, NO_MULTI], 1, 1, 1, [WRITE, SESSION, FAST],
        "Moves a session to a new server-issued ID; the old ID stops working in the same step.",
        |a| Ok(Command::SessionRegenerate(SessionRegenerate::parse(a)?))),
    // Not `fast`: like DEL, it frees every field of every session it names.
    spec!("session.destroy", -2, [WRITE], 1, -1, 1, [WRITE, SESSION, SLOW],
        "Destroys sessions; returns how many existed.", |a| Ok(Command::SessionDestroy(Keys::parse(a)?))),
    spec!("session.list", 2, [READONLY, NO_MULTI], 0, 0, 0, [READ, SESSION, SLOW],
        "Returns a user's live session IDs, oldest first.",
        |a| Ok(Command::SessionList(UserOnly::parse(a)?))),
    spec!("session.count", 2, [READONLY, FAST, NO_MULTI], 0, 0, 0, [READ, SESSION, FAST],
        "Returns how many live sessions a user has.", |a| Ok(Command::SessionCount(UserOnly::parse(a)?))),
    spec!("session.destroyall", -2, [WRITE, NO_MULTI], 0, 0, 0, [WRITE, SESSION, SLOW],
        "Destroys every session of a user, optionally except one.",
        |a| Ok(Command::SessionDestroyAll(SessionDestroyAll::parse(a)?))),
    spec!("evalsha", -3, [NOSCRIPT, STALE, SKIP_MONITOR, NO_MANDATORY_KEYS, MOVABLEKEYS], 0, 0, 0,
        [SLOW, SCRIPTING], "Executes a server-side Lua script by SHA1 digest.",
        |a| Ok(Command::Eval(Eval::parse(a, true, false)?))),
    spec!("eval", -3, [NOSCRIPT, STALE, SKIP_MONITOR, NO_MANDATORY_KEYS, MOVABLEKEYS], 0, 0, 0,
        [SLOW, SCRIPTING], "Executes a server-side Lua script.",
        |a| Ok(Command::Eval(Eval::parse(a, false, false)?))),
    spec!("evalsha_ro", -3, [READONLY, NOSCRIPT, STALE, SKIP_MONITOR, NO_MANDATORY_KEYS, MOVABLEKEYS],
        0, 0, 0, [SLOW, SCRIPTING], "Executes a read-only server-side Lua script by SHA1 digest.",
        |a| Ok(Command::Eval(Eval::parse(a, true, true)?))),
    spec!("eval_ro", -3, [READONLY, NOSCRIPT, STALE, SKIP_MONITOR, NO_MANDATORY_KEYS, MOVABLEKEYS],
        0, 0, 0, [SLOW, SCRIPTING], "Executes a read-only server-side Lua script.",
        |a| Ok(Command::Eval(Eval::parse(a, false, true)?))),
    // A container, as CLIENT and CONFIG: its subcommands' own flags are not listed.
    spec!("script", -2, [], 0, 0, 0, [SLOW, SCRIPTING],
        "A container for Lua scripts management commands.",
        |a| Ok(Command::Script(Script::parse(a)?))),
    spec!("echo", 2, [FAST], 0, 0, 0, [FAST, CONNECTION],
        "Returns the given string.", |a| Ok(Command::Echo(Echo::parse(a)?))),
    spec!("hello", -1, [NOSCRIPT, LOADING, STALE, FAST, NO_AUTH], 0, 0, 0, [FAST, CONNECTION],
        "Handshakes with the Redis server.", |a| Ok(Command::Hello(Hello::parse(a)?))),
    spec!("auth", -2, [NOSCRIPT, LOADING, STALE, FAST, NO_AUTH], 0, 0, 0, [FAST, CONNECTION],
        "Authenticates the connection.", |a| Ok(Command::Auth(Auth::parse(a)?))),
    spec!("select", 2, [LOADING, STALE, FAST], 0, 0, 0, [FAST, CONNECTION],
        "Changes the selected database.", |a| Ok(Command::Select(Select::parse(a)?))),
    spec!("quit", -1, [NOSCRIPT, LOADING, STALE, FAST, NO_AUTH], 0, 0, 0, [FAST, CONNECTION],
        "Closes the connection.", |_| Ok(Command::Quit)),
    spec!("reset", 1, [NOSCRIPT, LOADING, STALE, FAST, NO_AUTH], 0, 0, 0, [FAST, CONNECTION],
        "Resets the connection.", |_| Ok(Command::Reset)),
    spec!("publish", 3, [PUBSUB, LOADING, STALE, FAST, MAY_REPLICATE], 0, 0, 0, [PUBSUB, FAST],
        "Posts a message to a channel.", |a| Ok(Command::Publish(Publish::parse(a)?))),
    spec!("spublish", 3, [PUBSUB, LOADING, STALE, FAST, MAY_REPLICATE], 1, 1, 1, [PUBSUB, FAST],
        "Post a message to a shard channel", |a| Ok(Command::SPublish(Publish::parse(a)?))),
    spec!("subscribe", -2, [PUBSUB, NOSCRIPT, LOADING, STALE], 0, 0, 0, [PUBSUB, SLOW],
        "Listens for messages published to channels.",
        |a| Ok(Command::Subscribe(Subscription::parse(a, SubscriptionKind::Channel)?))),
    spec!("unsubscribe", -1, [PUBSUB, NOSCRIPT, LOADING, STALE], 0, 0, 0, [PUBSUB, SLOW],
        "Stops listening to messages posted to channels.",
        |a| Ok(Command::Unsubscribe(Subscription::parse(a, SubscriptionKind::Channel)?))),
    spec!("psubscribe", -2, [PUBSUB, NOSCRIPT, LOADING, STALE], 0, 0, 0, [PUBSUB, SLOW],
        "Listens for messages published to channels that match one or more patterns.",
        |a| Ok(Command::Subscribe(Subscription::parse(a, SubscriptionKind::Pattern)?))),
    spec!("punsubscribe", -1, [PUBSUB, NOSCRIPT, LOADING, STALE], 0, 0, 0, [PUBSUB, SLOW],
        "Stops listening to messages published to channels that match one or more patterns.",
        |a| Ok(Command::Unsubscribe(Subscription::parse(a, SubscriptionKind::Pattern)?))),
    spec!("ssubscribe", -2, [PUBSUB, NOSCRIPT, LOADING, STALE], 1, -1, 1, [PUBSUB, SLOW],
        "Listens for messages published to shard channels.",
        |a| Ok(Command::Subscribe(Subscription::parse(a, SubscriptionKind::Shard)?))),
    spec!("sunsubscribe", -1, [PUBSUB, NOSCRIPT, LOADING, STALE], 1, -1, 1, [PUBSUB, SLOW],
        "Stops listening to messages posted to shard channels.",
        |a| Ok(Command::Unsubscribe(Subscription::parse(a, SubscriptionKind::Shard)?))),
    spec!("pubsub", -2, [], 0, 0, 0, [SLOW],
        "A container for Pub/Sub commands.", |a| Ok(Command::Pubsub(Pubsub::parse(a)?))),
    spec!("client", -2, [NOSCRIPT, LOADING, STALE], 0, 0, 0, [SLOW, CONNECTION],
        "A container for client connection commands.", |a| Ok(Command::Client(Client::parse(a)?))),
    spec!("info", -1, [LOADING, STALE], 0, 0, 0, [SLOW, DANGEROUS],
        "Returns information and statistics about the server.", |a| Ok(Command::Info(Info::parse(a)?))),
    spec!("dbsize", 1, [READONLY, FAST], 0, 0, 0, [KEYSPACE, READ, FAST],
        "Returns the number of keys in the database.", |_| Ok(Command::DbSize)),
    spec!("flushall", -1, [WRITE], 0, 0, 0, [KEYSPACE, WRITE, SLOW, DANGEROUS],
        "Removes all keys from all databases.", |a| Ok(Command::Flush(Flush::parse(a, true)?))),
    spec!("flushdb", -1, [WRITE], 0, 0, 0, [KEYSPACE, WRITE, SLOW, DANGEROUS],
        "Remove all keys from the current database.", |a| Ok(Command::Flush(Flush::parse(a, false)?))),
    spec!("swapdb", 3, [WRITE, FAST], 0, 0, 0, [KEYSPACE, WRITE, FAST, DANGEROUS],
        "Swaps two Redis databases.", |a| Ok(Command::SwapDb(SwapDb::parse(a)?))),
    spec!("time", 1, [LOADING, STALE, FAST], 0, 0, 0, [FAST],
        "Returns the server time.", |_| Ok(Command::Time)),
    spec!("command", -1, [LOADING, STALE], 0, 0, 0, [SLOW, CONNECTION],
        "Returns detailed information about all commands.",
        |a| Ok(Command::Command(CommandInfo::parse(a)?))),
    spec!("config", -2, [ADMIN, NOSCRIPT, LOADING, STALE], 0, 0, 0, [ADMIN, SLOW, DANGEROUS],
        "A container for server configuration commands.", |a| Ok(Command::Config(Config::parse(a)?))),
    // Containers whose subcommands are all @admin in Redis: held to that here.
    spec!("slowlog", -2, [ADMIN, LOADING, STALE], 0, 0, 0, [ADMIN, SLOW, DANGEROUS],
        "A container for slow log commands.", |a| Ok(Command::Slowlog(Slowlog::parse(a)?))),
    spec!("latency", -2, [ADMIN, NOSCRIPT, LOADING, STALE], 0, 0, 0, [ADMIN, SLOW, DANGEROUS],
        "A container for latency diagnostics commands.",
        |a| Ok(Command::Latency(Latency::parse(a)?))),
    spec!("save", 1, [ADMIN, NOSCRIPT, NO_ASYNC_LOADING, NO_MULTI], 0, 0, 0, [ADMIN, SLOW, DANGEROUS],
        "Synchronously saves the database to disk.", |_| Ok(Command::Save)),
    spec!("bgsave", -1, [ADMIN, NOSCRIPT, NO_ASYNC_LOADING], 0, 0, 0, [ADMIN, SLOW, DANGEROUS],
        "Asynchronously saves the database to disk.", |a| {
            match a.next_opt() {
                None => {}
                Some(option) if is(&option, "SCHEDULE") => {}
                Some(_) => return Err(CommandError::Syntax),
            }
            a.finish()?;
            Ok(Command::BgSave)
        }),
    spec!("lastsave", 1, [LOADING, STALE, FAST], 0, 0, 0, [ADMIN, FAST, DANGEROUS],
        "Returns the Unix timestamp of the last successful save to disk.", |_| Ok(Command::LastSave)),
    spec!("shutdown", -1, [ADMIN, NOSCRIPT, LOADING, STALE, NO_MULTI, ALLOW_BUSY], 0, 0, 0,
        [ADMIN, SLOW, DANGEROUS],
        "Synchronously saves the database(s) to disk and shuts down the server.",
        |a| Ok(Command::Shutdown(Shutdown::parse(a)?))),
    spec!("memory", -2, [], 0, 0, 0, [SLOW],
        "A container for memory diagnostics commands.", |a| Ok(Command::Memory(Memory::parse(a)?))),
    spec!("debug", -2, [ADMIN, NOSCRIPT, LOADING, STALE, PROTECTED], 0, 0, 0, [ADMIN, SLOW, DANGEROUS],
        "A container for debugging commands.", |a| Ok(Command::Debug(Debug::parse(a)?))),
    spec!("replicaof", 3, [ADMIN, NOSCRIPT, STALE, NO_ASYNC_LOADING], 0, 0, 0, [ADMIN, SLOW, DANGEROUS],
        "Configures a server as replica of another, or promotes it to a master.",
        |a| Ok(Command::ReplicaOf(ReplicaOf::parse(a)?))),
    spec!("slaveof", 3, [ADMIN, NOSCRIPT, STALE, NO_ASYNC_LOADING], 0, 0, 0, [ADMIN, SLOW, DANGEROUS],
        "Sets a Redis server as a replica of another, or promotes it to being a master.",
        |a| Ok(Command::ReplicaOf(ReplicaOf::parse(a)?))),
    spec!("role", 1, [NOSCRIPT, LOADING, STALE, FAST, SENTINEL], 0, 0, 0, [ADMIN, FAST, DANGEROUS],
        "Returns the replication role.", |_| Ok(Command::Role)),
    spec!("replconf", -1, [ADMIN, NOSCRIPT, LOADING, STALE, ALLOW_BUSY], 0, 0, 0, [ADMIN, SLOW, DANGEROUS],
        "An internal command for configuring the replication stream.",
        |a| Ok(Command::ReplConf(ReplConf::parse(a)?))),
    spec!("psync", -3, [ADMIN, NOSCRIPT, NO_ASYNC_LOADING, NO_MULTI], 0, 0, 0, [ADMIN, SLOW, DANGEROUS],
        "An internal command used in replication.", |a| Ok(Command::Psync(Psync::parse(a)?))),
    spec!("sync", 1, [ADMIN, NOSCRIPT, NO_ASYNC_LOADING, NO_MULTI], 0, 0, 0, [ADMIN, SLOW, DANGEROUS],
        "An internal command used in replication.", |_| Ok(Command::Psync(Psync::full()))),
    spec!("wait", 3, [BLOCKING], 0, 0, 0, [SLOW, CONNECTION],
        "Blocks until the asynchronous replication of all preceding write commands sent by the connection is completed.",
        |a| Ok(Command::Wait(Wait::parse(a)?))),
];

/// The table row of the command called `name`, ignoring ASCII case.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    position(name).and_then(|index| COMMANDS.get(index))
}

/// The index in [`COMMANDS`] of the command called `name`, ignoring ASCII case. The table's
/// first rows (GET, SET and the like, the most asked) are walked; the others are found in an
/// index built once, the name lowercased on the stack (a walk to EVALSHA, far down the table,
/// took hundreds of instructions per request).
pub fn position(name: &[u8]) -> Option<usize> {
    let same = |spec: &CommandSpec| {
        spec.name.len() == name.len() && spec.name.as_bytes().eq_ignore_ascii_case(name)
    };
    if let Some(found) = COMMANDS.iter().take(WALKED).position(same) {
        return Some(found);
    }
    let mut buffer = [0u8; LONGEST_NAME];
    let lower = buffer.get_mut(..name.len())?;
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    names().get(&*lower).copied()
}

/// How many of [`COMMANDS`]' first rows [`position`] walks before it looks in the index.
const WALKED: usize = 8;

/// The longest name [`COMMANDS`] may have (a test checks them); a longer one is unknown.
const LONGEST_NAME: usize = 32;

/// FNV-1a: the keys are the table's own short names, fixed, so that a hash resisting chosen
/// keys (std's SipHash, most of a lookup's cost) buys nothing.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// [`COMMANDS`]' names (all lowercase) and their index; the first of a name, if one repeated.
type Names = std::collections::HashMap<&'static [u8], usize, std::hash::BuildHasherDefault<Fnv>>;

fn names() -> &'static Names {
    static NAMES: std::sync::OnceLock<Names> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names = Names::with_capacity_and_hasher(COMMANDS.len(), Default::default());
        for (index, spec) in COMMANDS.iter().enumerate() {
            names.entry(spec.name.as_bytes()).or_insert(index);
        }
        names
    })
}

impl Command {
    /// Parses a command from its arguments, the name first.
    pub fn parse(args: Vec<Bytes>) -> Result<Command, CommandError> {
        Command::parse_indexed(args).1
    }

    /// Like [`Command::parse`], also returning the command's index in [`COMMANDS`] when the
    /// name is known (even if its arguments are wrong).
    pub fn parse_indexed(args: Vec<Bytes>) -> (Option<usize>, Result<Command, CommandError>) {
        let mut items = args.into_iter();
        let name = items.next().unwrap_or_default();
        let Some(index) = position(&name) else {
            return (
                None,
                Err(CommandError::Unknown {
                    name,
                    args: items.collect(),
                }),
            );
        };
        // `position` returned an index into COMMANDS, so indexing cannot fail.
        (Some(index), Command::parse_known(&COMMANDS[index], items))
    }

    fn parse_known(
        spec: &'static CommandSpec,
        items: std::vec::IntoIter<Bytes>,
    ) -> Result<Command, CommandError> {
        let count = items.len() as i64 + 1;
        let arity = i64::from(spec.arity);
        if (arity > 0 && count != arity) || (arity < 0 && count < -arity) {
            return Err(CommandError::WrongArity(spec.name));
        }
        let mut args = Args::new(spec.name, items.collect());
        (spec.parse)(&mut args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_finds_every_name_in_any_case_as_a_walk_of_the_table_does() {
        for spec in COMMANDS {
            let name = spec.name.as_bytes();
            assert!(name.len() <= LONGEST_NAME, "{}", spec.name);
            assert_eq!(name, spec.name.to_ascii_lowercase().as_bytes());
            let first = COMMANDS.iter().position(|s| s.name == spec.name);
            assert_eq!(position(name), first);
            assert_eq!(position(spec.name.to_ascii_uppercase().as_bytes()), first);
        }
        assert_eq!(position(b""), None);
        assert_eq!(position(b"gett"), None);
        assert_eq!(position(&[b'g'; LONGEST_NAME + 1]), None);
    }

    fn parse(line: &str) -> Result<Command, CommandError> {
        Command::parse(
            line.split(' ')
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect(),
        )
    }

    fn error(line: &str) -> String {
        parse(line).unwrap_err().to_string()
    }

    #[test]
    fn arity_and_unknown_commands_use_redis_wording() {
        assert_eq!(
            error("get"),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            error("GET a b"),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            error("mset a"),
            "ERR wrong number of arguments for 'mset' command"
        );
        assert_eq!(
            error("mset a b c"),
            "ERR wrong number of arguments for 'mset' command"
        );
        assert_eq!(
            error("foo a b"),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            error("CLIENT nope"),
            "ERR unknown subcommand 'nope'. Try CLIENT HELP."
        );
    }

    #[test]
    fn set_options() {
        let Ok(Command::Set(set)) = parse("set k v nx get px 100") else {
            panic!()
        };
        assert_eq!(set.condition, Some(SetCondition::IfMissing));
        assert_eq!(set.reply, SetReply::OldValue);
        assert_eq!(set.ttl, SetTtl::Expire(Expiry::AfterMs(100)));
        assert_eq!(error("set k v nx xx"), "ERR syntax error");
        assert_eq!(error("set k v ex 1 px 1"), "ERR syntax error");
        assert_eq!(error("set k v ex 1 keepttl"), "ERR syntax error");
        assert_eq!(error("set k v ex"), "ERR syntax error");
        assert_eq!(
            error("set k v ex x"),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            error("set k v ex 0"),
            "ERR invalid expire time in 'set' command"
        );
        assert_eq!(
            error("set k v ex -1"),
            "ERR invalid expire time in 'set' command"
        );
        assert_eq!(
            error("set k v ex 9223372036854775807"),
            "ERR invalid expire time in 'set' command"
        );
        assert_eq!(
            error("setex k 0 v"),
            "ERR invalid expire time in 'setex' command"
        );
        assert_eq!(error("getex k persist ex 1"), "ERR syntax error");
    }

    #[test]
    fn expire_options() {
        assert_eq!(
            error("expire k 1 nx xx"),
            "ERR NX and XX, GT or LT options at the same time are not compatible"
        );
        assert_eq!(
            error("expire k 1 gt lt"),
            "ERR GT and LT options at the same time are not compatible"
        );
        assert_eq!(error("expire k 1 foo"), "ERR Unsupported option foo");
        let Ok(Command::Expire(expire)) = parse("expire k 1 xx gt") else {
            panic!()
        };
        assert!(!expire.condition.allows(None, 5));
        assert!(expire.condition.allows(Some(4), 5));
        assert!(!expire.condition.allows(Some(5), 5));
        let Ok(Command::Expire(lt)) = parse("pexpire k 1 lt") else {
            panic!()
        };
        assert!(lt.condition.allows(None, 5));
        assert!(!lt.condition.allows(Some(5), 6));
    }

    #[test]
    fn scan_options() {
        assert_eq!(error("scan x"), "ERR invalid cursor");
        assert_eq!(error("scan 0 count 0"), "ERR syntax error");
        assert_eq!(error("scan 0 match"), "ERR syntax error");
        let Ok(Command::Scan(scan)) =
            parse("scan 18446744073709551615 MATCH a* COUNT 5 TYPE String")
        else {
            panic!()
        };
        assert_eq!(scan.cursor, u64::MAX);
        assert_eq!(scan.count, 5);
        assert_eq!(scan.type_name.as_deref(), Some("string"));
    }

    #[test]
    fn set_commands_parse_with_redis_errors() {
        let Ok(Command::SAdd(sadd)) = parse("sadd k a b a") else {
            panic!()
        };
        assert_eq!((&sadd.key[..], sadd.members.len()), (&b"k"[..], 3));
        assert_eq!(
            error("sadd k"),
            "ERR wrong number of arguments for 'sadd' command"
        );
        assert_eq!(
            error("sismember k a b"),
            "ERR wrong number of arguments for 'sismember' command"
        );
        assert_eq!(
            parse("spop k"),
            Ok(Command::SPop(SPop {
                key: "k".into(),
                count: None
            }))
        );
        assert!(matches!(
            parse("spop k 3"),
            Ok(Command::SPop(SPop { count: Some(3), .. }))
        ));
        assert_eq!(
            error("spop k -1"),
            "ERR value is out of range, must be positive"
        );
        assert_eq!(
            error("spop k x"),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(error("spop k 1 2"), "ERR syntax error");
        assert!(matches!(
            parse("srandmember k -5"),
            Ok(Command::SRandMember(SRandMember {
                count: Some(-5),
                ..
            }))
        ));
        assert_eq!(
            error("srandmember k -9223372036854775808"),
            "ERR value is out of range, value must between -9223372036854775807 and \
             9223372036854775807"
        );
        assert_eq!(error("srandmember k 1 2"), "ERR syntax error");
        assert_eq!(error("sscan k x"), "ERR invalid cursor");
        assert_eq!(error("sscan k 0 type set"), "ERR syntax error");
        assert_eq!(error("sscan k 0 count 0"), "ERR syntax error");
        let Ok(Command::SScan(sscan)) = parse("sscan k 7 match a* count 3") else {
            panic!()
        };
        assert_eq!((sscan.scan.cursor, sscan.scan.count), (7, 3));
        let Ok(Command::SetAlgebra(store)) = parse("sdiffstore d a b") else {
            panic!()
        };
        assert_eq!(store.op, SetOp::Diff);
        assert_eq!(store.destination.as_deref(), Some(&b"d"[..]));
        assert_eq!(store.keys.len(), 2);
        assert_eq!(
            error("sinterstore d"),
            "ERR wrong number of arguments for 'sinterstore' command"
        );
        assert!(matches!(
            parse("sunion a"),
            Ok(Command::SetAlgebra(SetAlgebra {
                destination: None,
                ..
            }))
        ));
    }

    #[test]
    fn session_list_and_count_take_a_user() {
        let alice = UserOnly {
            user: Bytes::from_static(b"alice"),
        };
        assert_eq!(
            parse("session.list alice"),
            Ok(Command::SessionList(alice.clone()))
        );
        assert_eq!(
            parse("SESSION.COUNT alice"),
            Ok(Command::SessionCount(alice))
        );
        assert_eq!(
            error("session.count a b"),
            "ERR wrong number of arguments for 'session.count' command"
        );
    }

    #[test]
    fn transaction_commands_parse_and_watch_takes_keys_to_the_end() {
        assert_eq!(parse("MULTI"), Ok(Command::Multi));
        assert_eq!(parse("exec"), Ok(Command::Exec));
        assert_eq!(parse("Discard"), Ok(Command::Discard));
        assert_eq!(parse("UNWATCH"), Ok(Command::Unwatch));
        assert_eq!(
            parse("WATCH a b"),
            Ok(Command::Watch(Keys {
                keys: vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
            }))
        );
        assert_eq!(
            error("watch"),
            "ERR wrong number of arguments for 'watch' command"
        );
        assert_eq!(
            error("multi x"),
            "ERR wrong number of arguments for 'multi' command"
        );
        assert_eq!(key_specs("watch")[0].flags, ["RO"]);
        assert_eq!(key_specs("watch")[0].last_key, -1);
    }

    #[test]
    fn rename_and_renamenx_take_two_keys() {
        let rename = |only_if_new| {
            Ok(Command::Rename(Rename {
                from: Bytes::from_static(b"a"),
                to: Bytes::from_static(b"b"),
                only_if_new,
            }))
        };
        assert_eq!(parse("RENAME a b"), rename(false));
        assert_eq!(parse("renamenx a b"), rename(true));
        assert_eq!(
            error("renamenx a"),
            "ERR wrong number of arguments for 'renamenx' command"
        );
        assert_eq!(key_specs("rename")[1].flags, ["OW", "update"]);
        assert_eq!(key_specs("renamenx")[1].flags, ["OW", "insert"]);
        assert!(key_specs("get").is_empty());
    }

    /// One line per command as COMMAND INFO shows it: name, arity, key positions, flags and ACL
    /// categories in the order they are printed.
    fn table_line(spec: &CommandSpec) -> String {
        format!(
            "{} {} {} {} {} | {} | {}",
            spec.name,
            spec.arity,
            spec.first_key,
            spec.last_key,
            spec.step,
            spec.flags.names().collect::<Vec<_>>().join(" "),
            spec.categories.names().collect::<Vec<_>>().join(" "),
        )
    }

    /// The names COMMAND INFO, COMMAND DOCS and the ACL checks read from the table are those
    /// of `flags.snapshot`, taken from the table before its flags became typed.
    #[test]
    fn the_table_prints_the_names_it_always_did() {
        let printed: Vec<String> = COMMANDS.iter().map(table_line).collect();
        let expected: Vec<&str> = include_str!("flags.snapshot").lines().collect();
        assert_eq!(printed, expected);
    }
}
