//! `PING`, `HELLO`, `AUTH`, `SELECT`, `RESET` (ECHO and QUIT need no code of their own).

use bytes::Bytes;
use sessiond_protocol::cmd::{Auth, Hello, Ping, Select};
use sessiond_protocol::{Frame, ProtocolVersion};

use super::Ctx;

/// The Redis version whose command set and replies sessiond follows, reported to clients that
/// gate features on it.
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";

/// `PING`: `+PONG`, or the message as a bulk string.
pub fn ping(_ctx: &mut Ctx<'_>, cmd: Ping) -> Frame {
    match cmd.message {
        None => Frame::simple("PONG"),
        Some(message) => Frame::Bulk(message),
    }
}

/// `HELLO`: switches the protocol version and answers with the server's description.
pub fn hello(ctx: &mut Ctx<'_>, cmd: Hello) -> Frame {
    let version = match cmd.protover {
        None => ctx.session.version(),
        Some(2) => ProtocolVersion::Resp2,
        Some(3) => ProtocolVersion::Resp3,
        Some(_) => return Frame::error("NOPROTO unsupported protocol version"),
    };
    match cmd.auth {
        Some((user, password)) => {
            if let Some(refusal) = authenticate(ctx, Some(&user), &password) {
                return refusal;
            }
        }
        None if !ctx.session.authenticated() => {
            return Frame::error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
                 HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client \
                 and select the RESP protocol version at the same time",
            );
        }
        None => {}
    }
    if let Some(name) = cmd.setname {
        if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
            return Frame::error(
                "ERR Client names cannot contain spaces, newlines or special characters.",
            );
        }
        ctx.session
            .client()
            .set_name(String::from_utf8_lossy(&name).into_owned());
    }
    ctx.session.set_version(version);
    let text = |s: &'static str| Frame::Bulk(Bytes::from_static(s.as_bytes()));
    Frame::Map(vec![
        (text("server"), text("sessiond")),
        (text("version"), text(REDIS_COMPAT_VERSION)),
        (text("proto"), Frame::Integer(version.number())),
        (text("id"), Frame::Integer(ctx.session.client().id as i64)),
        (text("mode"), text("standalone")),
        (text("role"), text("master")),
        (text("modules"), Frame::Array(Vec::new())),
    ])
}

/// `AUTH [user] password`. Without a configured password the `default` user accepts any
/// password, as Redis's `nopass` default user does, and the one-argument form is an error; when
/// named users disabled the `default` user, the one-argument form is a failed login like any.
pub fn auth(ctx: &mut Ctx<'_>, cmd: Auth) -> Frame {
    let auth = &ctx.shared.auth;
    if cmd.username.is_none() && !auth.default_has_password() && !auth.required() {
        return Frame::error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        );
    }
    authenticate(ctx, cmd.username.as_ref(), &cmd.password).unwrap_or_else(Frame::ok)
}

/// Authenticates the connection: `None` when the credentials are accepted, else the refusal to
/// send. A failure is logged with the peer's address, never the password, and counted.
fn authenticate(ctx: &mut Ctx<'_>, user: Option<&Bytes>, password: &[u8]) -> Option<Frame> {
    if let Some(user) = ctx.shared.auth.check(user.map(|u| &u[..]), password) {
        ctx.session.set_user(Some(user));
        return None;
    }
    ctx.shared
        .stats
        .auth_failures
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(peer = %ctx.session.client().peer, "authentication failed");
    Some(Frame::error(
        "WRONGPASS invalid username-password pair or user is disabled.",
    ))
}

/// `SELECT`: only database 0 exists.
pub fn select(cmd: Select) -> Frame {
    if cmd.index == 0 {
        Frame::ok()
    } else {
        Frame::error("ERR DB index is out of range")
    }
}

/// `RESET`: back to a new connection's state (RESP2, no name, unauthenticated when a password
/// is required).
pub fn reset(ctx: &mut Ctx<'_>) -> Frame {
    ctx.session.set_version(ProtocolVersion::Resp2);
    ctx.session.set_user(ctx.shared.auth.initial_user());
    if !ctx.session.authenticated() {
        ctx.session.client().set_user(String::new());
    }
    ctx.session.client().set_name(String::new());
    Frame::simple("RESET")
}
