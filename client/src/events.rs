//! Session events: [`SessionEvents`] (from [`Sessions::events`]), a [`Stream`] of
//! [`SessionEvent`]s that sessiond publishes when a session is created, moves to a new ID, or
//! ends.
//!
//! The server publishes on `__session__:<event>` (with the `S` class of
//! `notify-keyspace-events`); the message is `<id> <user>`, or `<old id> <new id> <user>` for
//! `regenerated`, the user empty for an anonymous session. Each node gets a connection of its
//! own (a subscribed connection takes no other command), which `SUBSCRIBE`s to the five channels
//! by name: a named user whose ACL allows `&__session__:*` may subscribe to them, where
//! `PSUBSCRIBE` would need the literal pattern. Both RESP3 pushes and RESP2 `message` arrays are
//! read.
//!
//! Pub/sub delivers at most once: an event published while no subscription is open is lost, so
//! the stream does not reconnect. When a node's connection drops (the server restarts, or cuts
//! off a subscriber that reads too slowly), the stream yields one error and then ends; subscribe
//! again, and treat the gap as unknown (re-check what matters with `info` or `list_for_user`).

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use sessiond_protocol::{ClientCodec, Frame, FrameDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::connection::{open_dedicated, Duplex};
use crate::node::Node;
use crate::{Error, Result, SessionId, Sessions};

/// The channels of session events, in the order of [`SessionEvent`]'s variants.
pub const SESSION_EVENT_CHANNELS: [&str; 5] = [
    "__session__:created",
    "__session__:regenerated",
    "__session__:destroyed",
    "__session__:expired",
    "__session__:evicted",
];

/// Events read ahead of the application before a node's reader stops reading; the server then
/// buffers them, up to its pub/sub output limit.
const QUEUED_EVENTS: usize = 1024;
/// How much the reader asks the socket for at a time.
const READ_CHUNK: usize = 16 * 1024;

/// One step of a session's life, as the server published it.
///
/// `user` is the user the session belongs to, `None` for an anonymous session. `Debug` shows
/// only the first characters of each ID, as [`SessionId`]'s does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// `SESSION.CREATE` made a session.
    Created {
        /// The new session's ID.
        id: SessionId,
        /// Its user.
        user: Option<String>,
    },
    /// `SESSION.REGENERATE` moved a session to a new ID; the old one no longer works.
    Regenerated {
        /// The ID it had.
        old_id: SessionId,
        /// The ID it has now.
        new_id: SessionId,
        /// Its user (after the move, which may have attached one).
        user: Option<String>,
    },
    /// The session was ended: `SESSION.DESTROY`, `SESSION.DESTROYALL`, `DEL`, or the per-user cap.
    Destroyed {
        /// The ended session's ID.
        id: SessionId,
        /// Its user.
        user: Option<String>,
    },
    /// The session reached its idle or absolute timeout.
    Expired {
        /// The ended session's ID.
        id: SessionId,
        /// Its user.
        user: Option<String>,
    },
    /// The server evicted the session to stay within `maxmemory`.
    Evicted {
        /// The ended session's ID.
        id: SessionId,
        /// Its user.
        user: Option<String>,
    },
}

impl SessionEvent {
    /// The event a message on `channel` describes; `None` for another channel or a message
    /// that is not `<id> <user>` (`<old id> <new id> <user>` on `regenerated`).
    pub fn parse(channel: &[u8], message: &[u8]) -> Option<SessionEvent> {
        let event = channel.strip_prefix(b"__session__:")?;
        let message = std::str::from_utf8(message).ok()?;
        let user = |user: &str| (!user.is_empty()).then(|| user.to_owned());
        let id = |id: &str| (!id.is_empty()).then(|| SessionId::new(id));
        if event == b"regenerated" {
            let mut parts = message.splitn(3, ' ');
            let (old_id, new_id, name) = (parts.next()?, parts.next()?, parts.next()?);
            return Some(SessionEvent::Regenerated {
                old_id: id(old_id)?,
                new_id: id(new_id)?,
                user: user(name),
            });
        }
        let (session, name) = message.split_once(' ')?;
        let (id, user) = (id(session)?, user(name));
        Some(match event {
            b"created" => SessionEvent::Created { id, user },
            b"destroyed" => SessionEvent::Destroyed { id, user },
            b"expired" => SessionEvent::Expired { id, user },
            b"evicted" => SessionEvent::Evicted { id, user },
            _ => return None,
        })
    }

    /// The session's ID: the new one for [`SessionEvent::Regenerated`].
    pub fn id(&self) -> &SessionId {
        match self {
            SessionEvent::Created { id, .. }
            | SessionEvent::Destroyed { id, .. }
            | SessionEvent::Expired { id, .. }
            | SessionEvent::Evicted { id, .. } => id,
            SessionEvent::Regenerated { new_id, .. } => new_id,
        }
    }

    /// The session's user; `None` for an anonymous session.
    pub fn user(&self) -> Option<&str> {
        match self {
            SessionEvent::Created { user, .. }
            | SessionEvent::Regenerated { user, .. }
            | SessionEvent::Destroyed { user, .. }
            | SessionEvent::Expired { user, .. }
            | SessionEvent::Evicted { user, .. } => user.as_deref(),
        }
    }

    /// Whether the session is over (destroyed, expired or evicted): its ID no longer works.
    pub fn is_end(&self) -> bool {
        matches!(
            self,
            SessionEvent::Destroyed { .. }
                | SessionEvent::Expired { .. }
                | SessionEvent::Evicted { .. }
        )
    }
}

impl<'a> Sessions<'a> {
    /// Subscribes to the session events of every node: a [`Stream`] of [`SessionEvent`]s.
    ///
    /// Returns once every node has confirmed the subscription, so an event published after
    /// this returns is delivered. The server must publish them (`notify-keyspace-events` with
    /// `S`), and a named user needs the channel permission `&__session__:*` (it then receives
    /// only its own namespace's events). [`SessionEvents`] says what happens when a connection
    /// drops.
    ///
    /// ```no_run
    /// # async fn demo(client: sessiond_client::Client) -> sessiond_client::Result<()> {
    /// use sessiond_client::SessionEvent;
    ///
    /// let mut events = client.sessions().events().await?;
    /// while let Some(event) = events.next().await {
    ///     match event? {
    ///         SessionEvent::Destroyed { id, user: Some(user) } => {
    ///             // close the websockets of `id`, tell `user`'s other tabs
    ///         }
    ///         _ => {}
    ///     }
    /// }
    /// // The stream ended after an error: subscribe again.
    /// # Ok(()) }
    /// ```
    pub async fn events(&self) -> Result<SessionEvents> {
        let (sender, events) = mpsc::channel(QUEUED_EVENTS);
        let mut readers = JoinSet::new();
        for node in self.client.nodes() {
            let subscriber = Subscriber::open(node).await?;
            readers.spawn(subscriber.run(sender.clone()));
        }
        Ok(SessionEvents {
            events,
            readers,
            done: false,
        })
    }
}

/// The session events of every node, as a [`Stream`] of `Result<SessionEvent>` (or with
/// [`SessionEvents::next`], without a stream library).
///
/// Events of one node arrive in the order it published them; events of different nodes are
/// interleaved as they come. Messages on the channels that are not events in the expected
/// format (someone else's `PUBLISH`) are skipped.
///
/// Pub/sub delivers at most once, so the stream does not reconnect: when a node's connection
/// drops, the stream yields an [`ErrorKind::Connection`](crate::ErrorKind::Connection) error,
/// then ends (`None`), and every node's subscription is closed. Subscribe again with
/// [`Sessions::events`]; events published in between are lost. An application that does not
/// keep up is cut off the same way, by the server's pub/sub output limit. Dropping the stream
/// closes its connections.
pub struct SessionEvents {
    events: mpsc::Receiver<Result<SessionEvent>>,
    /// One task per node; dropping the set aborts them, which closes their sockets.
    readers: JoinSet<()>,
    done: bool,
}

impl SessionEvents {
    /// The next event; `None` once the stream has ended (after an error).
    pub async fn next(&mut self) -> Option<Result<SessionEvent>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for SessionEvents {
    type Item = Result<SessionEvent>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match this.events.poll_recv(cx) {
            Poll::Ready(Some(Ok(event))) => Poll::Ready(Some(Ok(event))),
            Poll::Ready(Some(Err(error))) => {
                this.done = true;
                this.readers.abort_all();
                Poll::Ready(Some(Err(error)))
            }
            // Every reader sends its error before it ends, so this is after one.
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl fmt::Debug for SessionEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionEvents")
            .field("nodes", &self.readers.len())
            .field("done", &self.done)
            .finish()
    }
}

/// One node's subscribed connection.
struct Subscriber {
    name: String,
    stream: Box<dyn Duplex>,
    buffer: BytesMut,
    decoder: FrameDecoder,
}

impl Subscriber {
    /// Connects and subscribes, returning once the node has confirmed all five channels
    /// (within the connect timeout).
    async fn open(node: &Node) -> Result<Subscriber> {
        let addr = node.current_addr().await?;
        let (stream, buffer) = open_dedicated(&addr, node.settings()).await?;
        let mut subscriber = Subscriber {
            name: node.name().to_owned(),
            stream,
            buffer,
            decoder: FrameDecoder::default(),
        };
        let timeout = node.settings().connect_timeout;
        tokio::time::timeout(timeout, subscriber.subscribe())
            .await
            .map_err(|_| {
                Error::timeout(format!(
                    "node {}: subscription not confirmed within {timeout:?}",
                    subscriber.name
                ))
            })??;
        Ok(subscriber)
    }

    async fn subscribe(&mut self) -> Result<()> {
        let mut command = BytesMut::new();
        let mut args = vec!["SUBSCRIBE"];
        args.extend(SESSION_EVENT_CHANNELS);
        ClientCodec::encode_command(&args, &mut command);
        let lost = |e: std::io::Error| {
            Error::connection(format!("node {}: subscribe: {e}", self.name)).with_source(e)
        };
        self.stream.write_all(&command).await.map_err(lost)?;
        // Sends what TLS buffered; nothing to do on TCP.
        self.stream.flush().await.map_err(lost)?;
        let mut confirmed = 0;
        while confirmed < SESSION_EVENT_CHANNELS.len() {
            match self.next_frame().await? {
                Frame::Error(text) => {
                    return Err(Error::from_reply(&text)
                        .context(format!("node {}: subscribe to session events", self.name)))
                }
                frame => match Message::of(frame) {
                    Some(Message::Subscribed) => confirmed += 1,
                    // An event of a channel already confirmed.
                    Some(Message::Published { .. }) | None => {}
                },
            }
        }
        Ok(())
    }

    /// Reads frames and forwards the events until the connection fails or the stream is
    /// dropped; a failure is sent on as the last item.
    async fn run(mut self, events: mpsc::Sender<Result<SessionEvent>>) {
        loop {
            let message =
                match self.next_frame().await {
                    Ok(Frame::Error(text)) => Err(Error::from_reply(&text)
                        .context(format!("node {}: session events", self.name))),
                    Ok(frame) => Ok(Message::of(frame)),
                    Err(error) => Err(error),
                };
            let event = match message {
                Ok(Some(Message::Published { channel, payload })) => {
                    match SessionEvent::parse(&channel, &payload) {
                        Some(event) => Ok(event),
                        None => continue,
                    }
                }
                Ok(_) => continue,
                Err(error) => Err(error),
            };
            let failed = event.is_err();
            if events.send(event).await.is_err() || failed {
                return;
            }
        }
    }

    async fn next_frame(&mut self) -> Result<Frame> {
        loop {
            match self.decoder.decode(&mut self.buffer) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e) => {
                    return Err(Error::protocol(format!(
                        "node {}: malformed message: {e}",
                        self.name
                    )))
                }
            }
            self.buffer.reserve(READ_CHUNK);
            match self.stream.read_buf(&mut self.buffer).await {
                Ok(0) => {
                    return Err(Error::connection(format!(
                        "node {}: the server closed the session events connection",
                        self.name
                    )))
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(Error::connection(format!(
                        "node {}: session events: read: {e}",
                        self.name
                    ))
                    .with_source(e))
                }
            }
        }
    }
}

/// What a subscribed connection receives, from a RESP3 push or a RESP2 array.
enum Message {
    /// A confirmation of `SUBSCRIBE`, one per channel.
    Subscribed,
    /// A message published on a channel.
    Published { channel: Bytes, payload: Bytes },
}

impl Message {
    fn of(frame: Frame) -> Option<Message> {
        let (Frame::Push(items) | Frame::Array(items)) = frame else {
            return None;
        };
        let mut items = items.into_iter();
        let kind = text(items.next()?)?;
        match &kind[..] {
            b"subscribe" => Some(Message::Subscribed),
            b"message" => Some(Message::Published {
                channel: text(items.next()?)?,
                payload: text(items.next()?)?,
            }),
            _ => None,
        }
    }
}

fn text(frame: Frame) -> Option<Bytes> {
    match frame {
        Frame::Bulk(bytes) | Frame::Simple(bytes) => Some(bytes),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(channel: &str, message: &str) -> Option<SessionEvent> {
        SessionEvent::parse(channel.as_bytes(), message.as_bytes())
    }

    #[test]
    fn every_event_parses_with_and_without_a_user() {
        let id = || SessionId::new("abc");
        let ada = || Some("ada".to_owned());
        assert_eq!(
            parse("__session__:created", "abc ada"),
            Some(SessionEvent::Created {
                id: id(),
                user: ada()
            })
        );
        assert_eq!(
            parse("__session__:created", "abc "),
            Some(SessionEvent::Created {
                id: id(),
                user: None
            })
        );
        assert_eq!(
            parse("__session__:destroyed", "abc ada"),
            Some(SessionEvent::Destroyed {
                id: id(),
                user: ada()
            })
        );
        assert_eq!(
            parse("__session__:expired", "abc "),
            Some(SessionEvent::Expired {
                id: id(),
                user: None
            })
        );
        assert_eq!(
            parse("__session__:evicted", "abc ada"),
            Some(SessionEvent::Evicted {
                id: id(),
                user: ada()
            })
        );
        let regenerated = parse("__session__:regenerated", "old new ada").unwrap();
        assert_eq!(
            regenerated,
            SessionEvent::Regenerated {
                old_id: SessionId::new("old"),
                new_id: SessionId::new("new"),
                user: ada()
            }
        );
        assert_eq!(regenerated.id().as_str(), "new");
        assert_eq!(regenerated.user(), Some("ada"));
        assert!(!regenerated.is_end());
        assert_eq!(
            parse("__session__:regenerated", "old new "),
            Some(SessionEvent::Regenerated {
                old_id: SessionId::new("old"),
                new_id: SessionId::new("new"),
                user: None
            })
        );
        assert!(parse("__session__:expired", "abc ").unwrap().is_end());
        // A user name is everything after the ID.
        assert_eq!(
            parse("__session__:destroyed", "abc a b").unwrap().user(),
            Some("a b")
        );
    }

    #[test]
    fn other_channels_and_malformed_messages_are_not_events() {
        assert_eq!(parse("__session__:renamed", "abc ada"), None);
        assert_eq!(parse("news", "abc ada"), None);
        assert_eq!(parse("__session__:created", "abc"), None);
        assert_eq!(parse("__session__:created", " ada"), None);
        assert_eq!(parse("__session__:created", ""), None);
        assert_eq!(parse("__session__:regenerated", "old new"), None);
        assert_eq!(parse("__session__:regenerated", "old  ada"), None);
        assert_eq!(
            SessionEvent::parse(b"__session__:created", b"abc \xff"),
            None
        );
    }

    #[test]
    fn pushes_and_arrays_are_read_alike() {
        for wrap in [Frame::Push as fn(Vec<Frame>) -> Frame, Frame::Array] {
            let published = wrap(vec![
                Frame::bulk("message"),
                Frame::bulk("__session__:created"),
                Frame::bulk("abc "),
            ]);
            let Some(Message::Published { channel, payload }) = Message::of(published) else {
                panic!("not a message");
            };
            assert_eq!(
                (&channel[..], &payload[..]),
                (&b"__session__:created"[..], &b"abc "[..])
            );
            let confirmed = wrap(vec![
                Frame::bulk("subscribe"),
                Frame::bulk("__session__:created"),
                Frame::Integer(1),
            ]);
            assert!(matches!(Message::of(confirmed), Some(Message::Subscribed)));
            let pong = wrap(vec![Frame::bulk("pong"), Frame::bulk("")]);
            assert!(Message::of(pong).is_none());
        }
        assert!(Message::of(Frame::Integer(3)).is_none());
    }

    #[test]
    fn debug_does_not_show_whole_ids() {
        let event = parse("__session__:created", "abcdefghijklmnop ada").unwrap();
        assert!(!format!("{event:?}").contains("abcdefghijklmnop"));
    }
}
