//! `PING`, `HELLO`, `AUTH`, `SELECT`, `RESET` (ECHO and QUIT need no code of their own).

use bytes::Bytes;
use sessiond_protocol::cmd::{Auth, Hello, Ping, Select};
use sessiond_protocol::{Frame, ProtocolVersion};

use super::{Ctx, Reply, Then};

/// The Redis version whose command set and replies sessiond follows, reported to clients that
/// gate features on it.
pub const REDIS_COMPAT_VERSION: &str = "7.2.0";

/// The answer to every failed login.
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// `PING`: `+PONG`, or the message as a bulk string; in RESP2's subscribed mode, as Redis,
/// `pong` and the message (or an empty string) in an array, like a published message.
pub fn ping(ctx: &mut Ctx<'_>, cmd: Ping) -> Frame {
    if ctx.conn.subscribed() && ctx.conn.version() == ProtocolVersion::Resp2 {
        return Frame::Array(vec![
            Frame::Bulk(Bytes::from_static(b"pong")),
            Frame::Bulk(cmd.message.unwrap_or_default()),
        ]);
    }
    match cmd.message {
        None => Frame::simple("PONG"),
        Some(message) => Frame::Bulk(message),
    }
}

/// `HELLO`: switches the protocol version and answers with the server's description.
pub fn hello(ctx: &mut Ctx<'_>, cmd: Hello) -> Reply {
    let version = match cmd.protover {
        None => ctx.conn.version(),
        Some(2) => ProtocolVersion::Resp2,
        Some(3) => ProtocolVersion::Resp3,
        Some(_) => return Frame::error("NOPROTO unsupported protocol version").into(),
    };
    match cmd.auth {
        Some((user, password)) => {
            if let Some(refusal) = authenticate(ctx, Some(&user), &password) {
                return refusal;
            }
        }
        None if !ctx.conn.authenticated() => {
            return Frame::error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
                 HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client \
                 and select the RESP protocol version at the same time",
            )
            .into();
        }
        None => {}
    }
    if let Some(name) = cmd.setname {
        if name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
            return Frame::error(
                "ERR Client names cannot contain spaces, newlines or special characters.",
            )
            .into();
        }
        ctx.conn
            .client()
            .set_name(String::from_utf8_lossy(&name).into_owned());
    }
    ctx.conn.set_version(version);
    let text = |s: &'static str| Frame::Bulk(Bytes::from_static(s.as_bytes()));
    Frame::Map(vec![
        (text("server"), text("sessiond")),
        (text("version"), text(REDIS_COMPAT_VERSION)),
        (text("proto"), Frame::Integer(version.number())),
        (text("id"), Frame::Integer(ctx.conn.client().id as i64)),
        (text("mode"), text("standalone")),
        (text("role"), text("master")),
        (text("modules"), Frame::Array(Vec::new())),
    ])
    .into()
}

/// `AUTH [user] password`. Without a configured password the `default` user accepts any
/// password, as Redis's `nopass` default user does, and the one-argument form is an error; when
/// named users disabled the `default` user, the one-argument form is a failed login like any.
pub fn auth(ctx: &mut Ctx<'_>, cmd: Auth) -> Reply {
    let auth = &ctx.shared.auth;
    if cmd.username.is_none() && !auth.default_has_password() && !auth.required() {
        return Frame::error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        )
        .into();
    }
    authenticate(ctx, cmd.username.as_ref(), &cmd.password).unwrap_or_else(|| Frame::ok().into())
}

/// Authenticates the connection: `None` when the credentials are accepted, else the refusal to
/// send, which closes the connection at its `--max-auth-failures`th failure. Failures are
/// counted, and logged (sampled: see [`crate::auth::FailureLog`]) with the peer's address, never
/// the user name given or the password. Once the connection is at its limit (more AUTHs queued
/// in one EXEC), the password is not even checked: the close is already due.
fn authenticate(ctx: &mut Ctx<'_>, user: Option<&Bytes>, password: &[u8]) -> Option<Reply> {
    use std::sync::atomic::Ordering::Relaxed;
    let limit = ctx.shared.live.max_auth_failures();
    if limit > 0 && ctx.conn.auth_failures >= limit {
        return Some(Reply {
            frame: Some(Frame::error(WRONGPASS)),
            then: Then::Close,
        });
    }
    if let Some(user) = ctx.shared.auth.check(user.map(|u| &u[..]), password) {
        ctx.conn.set_user(Some(user));
        return None;
    }
    let stats = &ctx.shared.stats;
    stats.auth_failures.fetch_add(1, Relaxed);
    ctx.conn.auth_failures = ctx.conn.auth_failures.saturating_add(1);
    let close = limit > 0 && ctx.conn.auth_failures >= limit;
    if close {
        stats.auth_failure_disconnections.fetch_add(1, Relaxed);
    }
    let peer = ctx.conn.client().peer;
    if let Some(suppressed) = ctx
        .shared
        .auth_failure_log
        .sample(std::time::Instant::now())
    {
        tracing::warn!(
            %peer,
            failures_on_connection = ctx.conn.auth_failures,
            closing = close,
            not_logged_since_last_line = suppressed,
            "authentication failed"
        );
    }
    Some(Reply {
        frame: Some(Frame::error(WRONGPASS)),
        then: if close { Then::Close } else { Then::Continue },
    })
}

/// `SELECT index`: the connection's commands run in database `index` from now on.
pub fn select(ctx: &mut Ctx<'_>, cmd: Select) -> Frame {
    // Redis reads the index as a C int: beyond one, the integer error.
    if i32::try_from(cmd.index).is_err() {
        return Frame::error("ERR value is not an integer or out of range");
    }
    match usize::try_from(cmd.index) {
        Ok(db) if db < ctx.shared.dbs.count() => {
            ctx.conn.set_db(db);
            Frame::ok()
        }
        _ => Frame::error("ERR DB index is out of range"),
    }
}

/// `RESET`: back to a new connection's state (RESP2, no name, unauthenticated when a password
/// is required).
pub fn reset(ctx: &mut Ctx<'_>) -> Frame {
    // Out of any transaction, nothing watched (Redis's clearClientConnectionState).
    ctx.conn.multi = None;
    ctx.conn.watch = None;
    super::pubsub::unsubscribe_all(ctx.conn);
    ctx.conn.set_version(ProtocolVersion::Resp2);
    ctx.conn.set_db(0);
    ctx.conn.set_user(ctx.shared.auth.initial_user());
    if !ctx.conn.authenticated() {
        ctx.conn.client().set_user(String::new());
    }
    ctx.conn.client().set_name(String::new());
    Frame::simple("RESET")
}
