//! Command execution: the effect of each parsed [`Command`] on the store and the connection,
//! one file per command (or family sharing one effect), named as in `sessiond-protocol`.

mod append;
mod client;
mod command;
mod config;
mod connection;
mod dbsize;
mod del;
mod exists;
mod expire;
mod flush;
mod get;
mod getex;
mod incr;
pub mod info;
mod keys;
mod mget;
mod mset;
mod persist;
mod scan;
mod set;
mod shutdown;
mod strlen;
mod time;
mod ttl;
mod type_;

use std::sync::Arc;

use bytes::Bytes;
use sessiond_protocol::{Command, CommandError, Frame, ProtocolVersion};

use crate::clients::ClientState;
use crate::server::Shared;
use crate::stats::LocalStats;
use crate::store::Store;

/// The error every type mismatch answers.
pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// What the connection does after sending a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Read the next command.
    Continue,
    /// Close the connection after writing the replies so far (QUIT, protocol errors).
    Close,
}

/// The reply to one command.
#[derive(Debug)]
pub struct Reply {
    /// The frame to send; `None` sends nothing (SHUTDOWN).
    pub frame: Option<Frame>,
    /// What the connection does next.
    pub then: Then,
}

impl From<Frame> for Reply {
    fn from(frame: Frame) -> Reply {
        Reply {
            frame: Some(frame),
            then: Then::Continue,
        }
    }
}

/// Per-connection state that commands read and change.
#[derive(Debug)]
pub struct Session {
    client: Arc<ClientState>,
    version: ProtocolVersion,
}

impl Session {
    /// The state of a new connection: RESP2, no name.
    pub fn new(client: Arc<ClientState>) -> Session {
        Session {
            client,
            version: ProtocolVersion::Resp2,
        }
    }

    /// The protocol version replies are encoded in.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The registry entry of this connection.
    pub fn client(&self) -> &Arc<ClientState> {
        &self.client
    }

    fn set_version(&mut self, version: ProtocolVersion) {
        self.version = version;
        self.client.set_resp(version.number() as u8);
    }
}

/// What a command's effect sees: the shared state, its connection, and the time.
pub struct Ctx<'a> {
    /// Shared server state.
    pub shared: &'a Arc<Shared>,
    /// The keyspace.
    pub store: &'a Store,
    /// This connection.
    pub session: &'a mut Session,
    /// This connection's counters.
    pub stats: &'a mut LocalStats,
    /// The time the command runs at, Unix ms (one reading per command).
    pub now_ms: u64,
}

impl Ctx<'_> {
    /// Counts a keyspace hit or miss.
    pub fn hit(&mut self, found: bool) {
        if found {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
    }
}

/// An error reply from a command error.
pub fn error(error: CommandError) -> Frame {
    Frame::Error(Bytes::from(error.to_string()))
}

/// The WRONGTYPE error reply.
pub fn wrongtype() -> Frame {
    Frame::Error(Bytes::from_static(WRONGTYPE.as_bytes()))
}

/// Executes one command, given as its argument vector.
pub fn execute(
    shared: &Arc<Shared>,
    session: &mut Session,
    stats: &mut LocalStats,
    args: Vec<Bytes>,
) -> Reply {
    stats.commands += 1;
    let (index, parsed) = Command::parse_indexed(args);
    if let Some(index) = index {
        session.client.record_command(index);
    }
    let command = match parsed {
        Ok(command) => command,
        Err(e) => return error(e).into(),
    };
    let now_ms = shared.store.now_ms();
    let mut ctx = Ctx {
        shared,
        store: &shared.store,
        session,
        stats,
        now_ms,
    };
    dispatch(&mut ctx, command)
}

fn dispatch(ctx: &mut Ctx<'_>, command: Command) -> Reply {
    let frame = match command {
        Command::Get(c) => get::get(ctx, c),
        Command::Set(c) => set::set(ctx, c),
        Command::GetDel(c) => get::getdel(ctx, c),
        Command::GetEx(c) => getex::getex(ctx, c),
        Command::MGet(c) => mget::mget(ctx, c),
        Command::MSet(c) => mset::mset(ctx, c),
        Command::Append(c) => append::append(ctx, c),
        Command::StrLen(c) => strlen::strlen(ctx, c),
        Command::IncrBy(c) => incr::incrby(ctx, c),
        Command::Del(c) => del::del(ctx, c),
        Command::Exists(c) => exists::exists(ctx, c),
        Command::Type(c) => type_::type_(ctx, c),
        Command::Expire(c) => expire::expire(ctx, c),
        Command::Ttl(c, form) => ttl::ttl(ctx, c, form),
        Command::Persist(c) => persist::persist(ctx, c),
        Command::Scan(c) => scan::scan(ctx, c),
        Command::Keys(c) => keys::keys(ctx, c),
        Command::Ping(c) => connection::ping(ctx, c),
        Command::Echo(c) => Frame::Bulk(c.message),
        Command::Hello(c) => connection::hello(ctx, c),
        Command::Auth(c) => connection::auth(ctx, c),
        Command::Select(c) => connection::select(c),
        Command::Quit => {
            return Reply {
                frame: Some(Frame::ok()),
                then: Then::Close,
            }
        }
        Command::Reset => connection::reset(ctx),
        Command::Client(c) => client::client(ctx, c),
        Command::Info(c) => info::info(ctx, c),
        Command::DbSize => dbsize::dbsize(ctx),
        Command::Flush(c) => flush::flush(ctx, c),
        Command::Time => time::time(ctx),
        Command::Command(c) => command::command(ctx, c),
        Command::Config(c) => config::config(ctx, c),
        Command::Shutdown(c) => return shutdown::shutdown(ctx, c),
    };
    frame.into()
}
