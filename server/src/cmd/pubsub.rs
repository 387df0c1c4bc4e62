//! `SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE`, their `UNSUBSCRIBE`s, `PUBLISH`, `SPUBLISH` and
//! `PUBSUB`, over the [`Hub`](crate::pubsub::Hub). A connection's first subscription makes its
//! mailbox, its last unsubscription drops it; the connection loop delivers what the mailbox
//! receives (see [`crate::connection`]).

use bytes::Bytes;
use sessiond_protocol::cmd::{Publish, Pubsub, Subscription, SubscriptionKind};
use sessiond_protocol::{Frame, ProtocolVersion};

use super::{ConnState, Ctx, Reply};
use crate::auth::{Denied, KeyPatterns, SESSION_CHANNELS};
use crate::glob;
use crate::pubsub::{Access, Kind};

fn kind(kind: SubscriptionKind) -> Kind {
    match kind {
        SubscriptionKind::Channel => Kind::Channel,
        SubscriptionKind::Pattern => Kind::Pattern,
        SubscriptionKind::Shard => Kind::Shard,
    }
}

/// What a connection's user may receive of the server's session and keyspace events.
fn access(conn: &ConnState) -> Access {
    conn.user().map_or_else(Access::default, |user| Access {
        session_events: user.session_events(),
        // The default user sees every namespace; a named user its own.
        session_namespace: (!user.is_default()).then(|| user.session_prefix.clone()),
        keys: match &user.keys {
            KeyPatterns::All => None,
            KeyPatterns::Only(patterns) => Some(patterns.as_slice().into()),
        },
    })
}

/// The confirmation of one (un)subscription: `[word, name, count]`, a push in RESP3.
fn confirmation(word: &'static str, name: Option<Bytes>, count: usize) -> Frame {
    Frame::Push(vec![
        Frame::Bulk(Bytes::from_static(word.as_bytes())),
        name.map_or(Frame::Null, Frame::Bulk),
        Frame::Integer(count as i64),
    ])
}

/// `(P|S)SUBSCRIBE`: one confirmation per name, in order, each with the connection's count of
/// subscriptions after it.
pub fn subscribe(ctx: &mut Ctx<'_>, cmd: Subscription) -> Reply {
    let kind = kind(cmd.kind);
    if let Some(refusal) = refuse_channels(ctx, kind.subscribe_word(), cmd.names.iter(), kind) {
        return refusal.into();
    }
    if kind == Kind::Pattern {
        let max = ctx.shared.config.max_pattern_len;
        if cmd.names.iter().any(|p| p.len() > max) {
            return Frame::error(glob::TooLong.to_string()).into();
        }
    }
    // A connection's subscriptions are held as long as it lives: they count against
    // `client-query-buffer-limit`, as a transaction's queue does.
    let held = ctx.conn.subscriber().map_or(0, |s| s.bytes());
    let adding: usize = cmd
        .names
        .iter()
        .map(|name| name.len() + crate::pubsub::SUBSCRIPTION_OVERHEAD)
        .sum();
    if held.saturating_add(adding) > ctx.shared.config.limits.max_query_buffer {
        return Frame::error(
            "ERR the connection's subscriptions would exceed 'client-query-buffer-limit'",
        )
        .into();
    }
    let version = ctx.conn.version();
    if ctx.conn.subscriber.is_none() {
        let subscriber = ctx
            .shared
            .pubsub
            .subscriber(ctx.conn.client().id, access(ctx.conn));
        ctx.conn.subscriber = Some(Box::new(subscriber));
    }
    let Some(subscriber) = ctx.conn.subscriber.as_deref_mut() else {
        return Reply::written();
    };
    for name in cmd.names {
        // Kept for as long as the subscription: copied out of the read buffer.
        let name = Bytes::copy_from_slice(&name);
        subscriber.subscribe(kind, name.clone());
        confirmation(
            kind.subscribe_word(),
            Some(name),
            subscriber.count_for(kind),
        )
        .encode(version, ctx.out);
    }
    count_subscriptions(ctx.conn);
    Reply::written()
}

/// `(P|S)UNSUBSCRIBE`: from the names given, or from every subscription of the kind; one
/// confirmation per name (one with a null name when there was none). Messages published
/// before it are delivered before its confirmations.
pub fn unsubscribe(ctx: &mut Ctx<'_>, cmd: Subscription) -> Reply {
    let kind = kind(cmd.kind);
    let version = ctx.conn.version();
    let Some(subscriber) = ctx.conn.subscriber.as_deref_mut() else {
        if cmd.names.is_empty() {
            confirmation(kind.unsubscribe_word(), None, 0).encode(version, ctx.out);
        }
        for name in cmd.names {
            confirmation(kind.unsubscribe_word(), Some(name), 0).encode(version, ctx.out);
        }
        return Reply::written();
    };
    let names = if cmd.names.is_empty() {
        subscriber.names(kind)
    } else {
        cmd.names
    };
    let mut left = subscriber.count_for(kind);
    let removed: Vec<bool> = names
        .iter()
        .map(|name| subscriber.unsubscribe(kind, name))
        .collect();
    // Nothing more can arrive for these names: what did comes first; but not into the reply
    // EXEC is building: they follow it (the connection drains and drops a subscriber left
    // empty, see `connection::Connection::run`).
    let in_exec = crate::store::Store::in_block();
    if !in_exec {
        subscriber.drain_into(version == ProtocolVersion::Resp3, ctx.out, usize::MAX);
    }
    if names.is_empty() {
        confirmation(kind.unsubscribe_word(), None, left).encode(version, ctx.out);
    }
    // Counted down one name at a time, as Redis answers them.
    for (name, removed) in names.into_iter().zip(removed) {
        left -= usize::from(removed);
        confirmation(kind.unsubscribe_word(), Some(name), left).encode(version, ctx.out);
    }
    if subscriber.is_empty() && !in_exec {
        ctx.conn.subscriber = None;
    }
    count_subscriptions(ctx.conn);
    Reply::written()
}

/// NOPERM for a user whose channel patterns do not allow every one of `names` (checked here,
/// so that a user limited in nothing but channels pays no permission check on other commands).
fn refuse_channels<'a>(
    ctx: &Ctx<'_>,
    command: &str,
    names: impl Iterator<Item = &'a Bytes>,
    kind: Kind,
) -> Option<Frame> {
    let user = ctx.conn.user()?;
    if user.allow_channels(names, kind == Kind::Pattern) {
        return None;
    }
    Some(super::refuse(
        ctx.shared,
        ctx.conn,
        command,
        Denied::Channel,
    ))
}

/// Leaves every subscription without a word (RESET, and a connection that ends).
pub fn unsubscribe_all(conn: &mut ConnState) {
    conn.subscriber = None;
    count_subscriptions(conn);
}

/// After the connection's user changed (AUTH, HELLO AUTH while subscribed, in RESP3): the
/// session and keyspace events it receives follow the new user's rights; its subscriptions
/// stay, as in Redis (the connection had the rights to make them).
pub fn follow_user(conn: &mut ConnState) {
    let access = access(conn);
    if let Some(subscriber) = conn.subscriber.as_deref_mut() {
        subscriber.set_access(access);
    }
}

/// CLIENT LIST's `sub`, `psub` and `ssub`.
fn count_subscriptions(conn: &ConnState) {
    let count = |kind| conn.subscriber().map_or(0, |s| s.count(kind));
    conn.client().set_subscriptions([
        count(Kind::Channel),
        count(Kind::Pattern),
        count(Kind::Shard),
    ]);
}

/// `PUBLISH channel message`: how many received it. The channels of session events are the
/// server's own: a client may not forge one.
pub fn publish(ctx: &mut Ctx<'_>, cmd: Publish) -> Frame {
    let channel = [&cmd.channel];
    if let Some(refusal) = refuse_channels(ctx, "publish", channel.into_iter(), Kind::Channel) {
        return refusal;
    }
    if cmd.channel.starts_with(SESSION_CHANNELS) {
        return Frame::error(
            "ERR the __session__: channels carry the server's session events only",
        );
    }
    let hub = &ctx.shared.pubsub;
    if !hub.has_subscribers() {
        return Frame::Integer(0);
    }
    // The hub encodes the message once, into memory of its own: nothing queued for a
    // subscriber pins the read buffer.
    Frame::Integer(hub.publish(&cmd.channel, &cmd.message) as i64)
}

/// `SPUBLISH shardchannel message`.
pub fn spublish(ctx: &mut Ctx<'_>, cmd: Publish) -> Frame {
    let channel = [&cmd.channel];
    if let Some(refusal) = refuse_channels(ctx, "spublish", channel.into_iter(), Kind::Shard) {
        return refusal;
    }
    let hub = &ctx.shared.pubsub;
    if !hub.has_subscribers() {
        return Frame::Integer(0);
    }
    Frame::Integer(hub.publish_shard(&cmd.channel, &cmd.message) as i64)
}

/// `PUBSUB CHANNELS | SHARDCHANNELS | NUMSUB | SHARDNUMSUB | NUMPAT | HELP`.
pub fn pubsub(ctx: &mut Ctx<'_>, cmd: Pubsub) -> Reply {
    let hub = &ctx.shared.pubsub;
    match cmd {
        Pubsub::Channels { shard, pattern } => {
            let max = ctx.shared.config.max_pattern_len;
            let pattern = match pattern.map(|p| glob::key_pattern(&p, max)) {
                Some(Err(too_long)) => return Frame::error(too_long.to_string()).into(),
                Some(Ok(pattern)) => pattern,
                None => None,
            };
            let mut channels = hub.channels(shard, pattern.as_ref());
            // A named user sees only the channels it may use, and of keyspace channels those
            // of keys it may touch (a key's name may be a credential).
            if let Some(user) = ctx.conn.user().filter(|u| !u.is_default()) {
                channels.retain(|c| {
                    user.allow_channel(c, false) && keyspace_key(c).is_none_or(|k| user.keys.allow(k))
                });
            }
            let size: usize = channels.iter().map(|c| super::bulk_size(c.len())).sum();
            if !ctx.fits(size) {
                return Reply::over_limit();
            }
            Frame::Array(channels.into_iter().map(Frame::Bulk).collect()).into()
        }
        Pubsub::NumSub { shard, channels } => {
            let mut pairs = Vec::with_capacity(channels.len() * 2);
            for channel in channels {
                let count = hub.numsub(shard, &channel);
                pairs.push(Frame::Bulk(channel));
                pairs.push(Frame::Integer(count as i64));
            }
            Frame::Array(pairs).into()
        }
        Pubsub::NumPat => Frame::Integer(hub.numpat() as i64).into(),
        Pubsub::Help => Frame::Array(
            [
                "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CHANNELS [<pattern>]",
                "    Return the currently active channels matching a <pattern> (default: '*').",
                "NUMPAT",
                "    Return number of subscriptions to patterns.",
                "NUMSUB [<channel> ...]",
                "    Return the number of subscribers for the specified channels, excluding",
                "    pattern subscriptions(default: no channels).",
                "SHARDCHANNELS [<pattern>]",
                "    Return the currently active shard level channels matching a <pattern> (default: '*').",
                "SHARDNUMSUB [<shardchannel> ...]",
                "    Return the number of subscribers for the specified shard level channel(s)",
                "HELP",
                "    Print this help.",
            ]
            .into_iter()
            .map(Frame::simple)
            .collect(),
        )
        .into(),
    }
}

/// The key a `__keyspace@<db>__:<key>` channel is about.
fn keyspace_key(channel: &[u8]) -> Option<&[u8]> {
    let rest = channel.strip_prefix(b"__keyspace@")?;
    let at = rest.windows(3).position(|w| w == b"__:")?;
    Some(&rest[at + 3..])
}

/// The refusal of a command a RESP2 connection may not run while it subscribes (Redis's
/// words), `None` for those it may.
pub fn refused_while_subscribed(name: &str) -> Option<Frame> {
    let allowed = matches!(
        name,
        "subscribe"
            | "ssubscribe"
            | "psubscribe"
            | "unsubscribe"
            | "sunsubscribe"
            | "punsubscribe"
            | "ping"
            | "quit"
            | "reset"
    );
    (!allowed).then(|| {
        Frame::error(format!(
            "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
             RESET are allowed in this context"
        ))
    })
}
