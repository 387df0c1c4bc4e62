//! `CLIENT ID|SETNAME|GETNAME|SETINFO|INFO|LIST|KILL|PAUSE|UNPAUSE|NO-EVICT|HELP`.

use std::time::Duration;

use bytes::Bytes;
use sessiond_protocol::cmd::Client;
use sessiond_protocol::Frame;

use super::Ctx;

/// Runs a CLIENT subcommand.
pub fn client(ctx: &mut Ctx<'_>, cmd: Client) -> Frame {
    let me = ctx.conn.client();
    match cmd {
        Client::Id => Frame::Integer(me.id as i64),
        Client::SetName(name) => {
            me.set_name(String::from_utf8_lossy(&name).into_owned());
            Frame::ok()
        }
        Client::GetName => {
            let name = me.name();
            if name.is_empty() {
                Frame::Null
            } else {
                Frame::Bulk(Bytes::from(name))
            }
        }
        Client::SetInfo { lib_name, value } => {
            me.set_lib(lib_name, String::from_utf8_lossy(&value).into_owned());
            Frame::ok()
        }
        Client::Info => verbatim(me.describe() + "\n"),
        Client::List { ids, kind } => verbatim(ctx.shared.clients.list(ids.as_deref(), kind)),
        Client::Kill(filter) => {
            let killed = ctx.shared.clients.kill(&filter, me.id);
            match (filter.legacy, killed) {
                (false, killed) => Frame::Integer(killed as i64),
                (true, 0) => Frame::error("ERR No such client"),
                (true, _) => Frame::ok(),
            }
        }
        Client::Pause {
            timeout_ms,
            writes_only,
        } => {
            let until = tokio::time::Instant::now()
                .checked_add(Duration::from_millis(timeout_ms))
                .unwrap_or_else(far_future);
            ctx.shared.pause.pause(until, writes_only);
            Frame::ok()
        }
        Client::Unpause => {
            ctx.shared.pause.unpause();
            Frame::ok()
        }
        // Accepted for clients that send it: no client is ever evicted for memory here (the
        // output limits close a client, whatever this says), so there is nothing to exempt.
        Client::NoEvict(_) => Frame::ok(),
        Client::Help => Frame::Array(
            [
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "ID",
                "    Return the ID of the current connection.",
                "GETNAME",
                "    Return the name of the current connection.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
                "SETINFO <LIB-NAME|LIB-VER> <value>",
                "    Record the client library's name or version.",
                "INFO",
                "    Return information about the current client connection.",
                "LIST [TYPE normal] [ID <id> [<id> ...]]",
                "    Return information about client connections.",
                "KILL <ip:port>",
                "    Kill connection made from <ip:port>.",
                "KILL <option> <value> [<option> <value> [...]]",
                "    Kill connections. Options are:",
                "    * ADDR (<ip:port>|<unixsocket>:0)",
                "      Kill connections made from the specified address",
                "    * LADDR (<ip:port>|<unixsocket>:0)",
                "      Kill connections made to specified local address",
                "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
                "      Kill connections by type.",
                "    * USER <username>",
                "      Kill connections authenticated by <username>.",
                "    * SKIPME (YES|NO)",
                "      Skip killing current connection (default: yes).",
                "    * ID <client-id>",
                "      Kill connections by client id.",
                "    * MAXAGE <maxage>",
                "      Kill connections older than the specified age.",
                "PAUSE <timeout> [WRITE|ALL]",
                "    Suspend all, or just write, clients for <timeout> milliseconds.",
                "UNPAUSE",
                "    Stop the current client pause, resuming traffic.",
                "NO-EVICT (ON|OFF)",
                "    Accepted; no client is evicted for memory here.",
                "HELP",
                "    Print this help.",
            ]
            .into_iter()
            .map(Frame::simple)
            .collect(),
        ),
    }
}

/// A text reply: a verbatim string in RESP3, a bulk string in RESP2.
pub fn verbatim(text: String) -> Frame {
    Frame::Verbatim {
        format: *b"txt",
        data: Bytes::from(text),
    }
}

/// A deadline no pause reaches (CLIENT PAUSE with a timeout past what an `Instant` holds).
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 86_400)
}
