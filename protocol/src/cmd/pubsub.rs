//! The pub/sub commands: `SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE` and their `UNSUBSCRIBE`s,
//! `PUBLISH`, `SPUBLISH` and `PUBSUB <subcommand>`.

use bytes::Bytes;

use super::args::{is, Args};
use super::CommandError;

/// The three namespaces of subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionKind {
    /// Channels by name (SUBSCRIBE).
    Channel,
    /// Glob patterns of channels (PSUBSCRIBE).
    Pattern,
    /// Shard channels (SSUBSCRIBE), their own namespace.
    Shard,
}

/// `(P|S)SUBSCRIBE name [name ...]` or `(P|S)UNSUBSCRIBE [name ...]` (none: every one).
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// Which namespace.
    pub kind: SubscriptionKind,
    /// The channels or patterns, in order.
    pub names: Vec<Bytes>,
}

impl Subscription {
    pub(crate) fn parse(args: &mut Args, kind: SubscriptionKind) -> Result<Self, CommandError> {
        Ok(Subscription {
            kind,
            names: args.rest(),
        })
    }
}

/// `PUBLISH channel message` / `SPUBLISH shardchannel message`.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    /// The channel.
    pub channel: Bytes,
    /// The message.
    pub message: Bytes,
}

impl Publish {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let channel = args.bytes()?;
        let message = args.bytes()?;
        args.finish()?;
        Ok(Publish { channel, message })
    }
}

/// `PUBSUB <subcommand>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Pubsub {
    /// `CHANNELS [pattern]` (`shard`: `SHARDCHANNELS`).
    Channels {
        /// SHARDCHANNELS.
        shard: bool,
        /// Only the channels it matches.
        pattern: Option<Bytes>,
    },
    /// `NUMSUB [channel ...]` (`shard`: `SHARDNUMSUB`).
    NumSub {
        /// SHARDNUMSUB.
        shard: bool,
        /// The channels to count the subscribers of.
        channels: Vec<Bytes>,
    },
    /// `NUMPAT`.
    NumPat,
    /// `HELP`.
    Help,
}

impl Pubsub {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let sub = args.bytes()?;
        let arity = |name: &str| {
            CommandError::other(format!(
                "ERR wrong number of arguments for 'pubsub|{name}' command"
            ))
        };
        for (word, shard) in [("CHANNELS", false), ("SHARDCHANNELS", true)] {
            if is(&sub, word) {
                let pattern = args.next_opt();
                if args.remaining() != 0 {
                    // Redis's pubsubCommand checks this count itself, in these words.
                    return Err(CommandError::other(format!(
                        "ERR unknown subcommand or wrong number of arguments for '{}'. Try \
                         PUBSUB HELP.",
                        String::from_utf8_lossy(&sub[..sub.len().min(128)])
                    )));
                }
                return Ok(Pubsub::Channels { shard, pattern });
            }
        }
        for (word, shard) in [("NUMSUB", false), ("SHARDNUMSUB", true)] {
            if is(&sub, word) {
                let channels = args.rest();
                return Ok(Pubsub::NumSub { shard, channels });
            }
        }
        if is(&sub, "NUMPAT") || is(&sub, "HELP") {
            if args.remaining() != 0 {
                return Err(arity(&String::from_utf8_lossy(&sub).to_ascii_lowercase()));
            }
            return Ok(if is(&sub, "NUMPAT") {
                Pubsub::NumPat
            } else {
                Pubsub::Help
            });
        }
        Err(CommandError::UnknownSubcommand {
            command: "PUBSUB",
            sub,
        })
    }
}
