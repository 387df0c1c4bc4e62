//! `CLIENT ID|SETNAME|GETNAME|SETINFO|INFO|LIST|HELP`.

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
        Client::List { ids } => verbatim(ctx.shared.clients.list(ids.as_deref())),
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
