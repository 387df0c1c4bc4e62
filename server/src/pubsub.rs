//! Pub/sub: who listens to which channel, and the delivery of a message to each of them.
//!
//! The [`Hub`] maps each channel (and each shard channel, SSUBSCRIBE's separate namespace) to
//! its subscribers in a sharded map, so publishers on different channels never meet on a lock;
//! patterns sit in one map, by pattern, behind a read-write lock that PUBLISH reads only while
//! some pattern exists (it matches the channel against each, as Redis). A subscriber is a
//! [`Mailbox`]: a queue its connection drains between commands and while it waits for input.
//! Publishing never waits: a message is encoded once, a handle to it queued for each
//! subscriber and its size counted, and a subscriber whose queue passes its output limits
//! (`client-output-buffer-limit pubsub`, as Redis) is cut off at once: its connection is closed
//! and what it had queued is freed.
//!
//! It imports nothing above the store, which publishes the events of expiry and eviction.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use dashmap::DashMap;
use tokio::sync::{mpsc, Notify};

use crate::glob;
use crate::output_limit::ClassLimit;

/// The three kinds of subscription, each its own namespace as in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// SUBSCRIBE: one channel by name.
    Channel,
    /// PSUBSCRIBE: every channel a glob pattern matches.
    Pattern,
    /// SSUBSCRIBE: a shard channel (SPUBLISH's; on one node, a channel of its own namespace).
    Shard,
}

impl Kind {
    /// The first element of the confirmation SUBSCRIBE-family commands send.
    pub fn subscribe_word(self) -> &'static str {
        match self {
            Kind::Channel => "subscribe",
            Kind::Pattern => "psubscribe",
            Kind::Shard => "ssubscribe",
        }
    }

    /// The first element of the confirmation the UNSUBSCRIBE family sends.
    pub fn unsubscribe_word(self) -> &'static str {
        match self {
            Kind::Channel => "unsubscribe",
            Kind::Pattern => "punsubscribe",
            Kind::Shard => "sunsubscribe",
        }
    }
}

/// What a subscriber may receive of the server's own events: keyspace events name keys, and
/// session events carry session IDs, which are credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// The subscriber's user may run SESSION commands.
    pub session_events: bool,
    /// The namespace of its sessions (a named user's `session-prefix`): only events of
    /// sessions in exactly that namespace reach it; `None`: every namespace (the default user).
    pub session_namespace: Option<Bytes>,
    /// The keys its user may touch: only their keyspace events reach it (`None`: every key).
    pub keys: Option<Arc<[glob::Pattern]>>,
}

impl Access {
    fn allows_session(&self, namespaces: &[&[u8]]) -> bool {
        self.session_events
            && self
                .session_namespace
                .as_ref()
                .is_none_or(|own| namespaces.iter().all(|n| n == own))
    }

    fn allows_key(&self, key: &[u8]) -> bool {
        self.keys
            .as_ref()
            .is_none_or(|patterns| patterns.iter().any(|p| p.matches(key)))
    }
}

/// One message on its way to a subscriber: its RESP2 frame (`message`, `pmessage` or
/// `smessage`), encoded once per PUBLISH (per pattern for `pmessage`) and shared by every
/// subscriber it goes to; a RESP3 subscriber gets it as a push, the first byte `>` for `*`.
#[derive(Debug, Clone)]
pub struct Delivery(Bytes);

impl Delivery {
    /// `message`/`smessage` `channel` `payload`.
    fn channel(shard: bool, channel: &[u8], payload: &[u8]) -> Delivery {
        let word: &[u8] = if shard { b"smessage" } else { b"message" };
        Delivery::frame(&[word, channel, payload])
    }

    /// `pmessage` `pattern` `channel` `payload`.
    fn pattern(pattern: &[u8], channel: &[u8], payload: &[u8]) -> Delivery {
        Delivery::frame(&[b"pmessage", pattern, channel, payload])
    }

    fn frame(parts: &[&[u8]]) -> Delivery {
        let size =
            decimal_len(parts.len()) + 3 + parts.iter().map(|p| bulk_size(p.len())).sum::<usize>();
        let mut out = BytesMut::with_capacity(size);
        put_header(&mut out, b'*', parts.len());
        for part in parts {
            put_bulk(&mut out, part);
        }
        Delivery(out.freeze())
    }

    /// Its encoded size, the same in RESP2 and RESP3.
    pub fn size(&self) -> usize {
        self.0.len()
    }

    /// What it holds while queued, counted against the limits: its encoded size and the queue
    /// slot it takes (an empty message would otherwise count 30 bytes and hold 80).
    fn cost(&self) -> usize {
        self.size() + QUEUED_OVERHEAD
    }

    /// Writes it into `out`: a push in RESP3, an array in RESP2, as Redis sends it.
    pub fn encode(&self, resp3: bool, out: &mut BytesMut) {
        if resp3 {
            out.put_u8(b'>');
            out.extend_from_slice(self.0.get(1..).unwrap_or_default());
        } else {
            out.extend_from_slice(&self.0);
        }
    }
}

/// The memory a queued delivery takes besides its encoded size: the value in the queue's slot
/// and the slot's share of its block.
const QUEUED_OVERHEAD: usize = std::mem::size_of::<Delivery>() + 16;

/// `$<len>\r\n<bytes>\r\n`'s size.
fn bulk_size(len: usize) -> usize {
    len + decimal_len(len) + 5
}

fn decimal_len(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

fn put_header(out: &mut BytesMut, tag: u8, n: usize) {
    out.put_u8(tag);
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
    out.put_slice(b"\r\n");
}

fn put_bulk(out: &mut BytesMut, bytes: &[u8]) {
    put_header(out, b'$', bytes.len());
    out.put_slice(bytes);
    out.put_slice(b"\r\n");
}

/// One subscribed connection's side of the hub: its queue of deliveries, their size, and
/// whether its limits cut it off.
#[derive(Debug)]
pub struct Mailbox {
    /// The connection's client ID.
    id: u64,
    sender: mpsc::UnboundedSender<Delivery>,
    /// What is queued and not yet taken by the connection: encoded bytes and queue slots
    /// ([`Delivery::cost`]).
    pending: AtomicUsize,
    /// Since when `pending` has been above the soft limit, ms after `epoch`; 0: it is not.
    soft_since_ms: AtomicU64,
    epoch: Instant,
    /// Set once, when the limits cut the subscriber off; nothing more is queued then.
    cut: AtomicBool,
    /// Woken when `cut` is set.
    cut_signal: Notify,
    /// What the subscriber may receive of session and keyspace events; follows the
    /// connection's user.
    access: RwLock<Access>,
}

impl Mailbox {
    /// Queues `delivery` unless the subscriber is over `limits` (which cuts it off); the
    /// subscriber counts as a receiver either way, as in Redis.
    fn deliver(&self, delivery: Delivery, limits: &ClassLimit) {
        if self.cut.load(Ordering::Relaxed) {
            return;
        }
        let size = delivery.cost();
        let pending = self.pending.fetch_add(size, Ordering::Relaxed) + size;
        if pending > limits.hard() {
            return self.cut_off();
        }
        if limits.soft_bytes != 0 && pending > limits.soft_bytes {
            let now = (self.epoch.elapsed().as_millis() as u64).max(1);
            match self.soft_since_ms.load(Ordering::Relaxed) {
                0 => self.soft_since_ms.store(now, Ordering::Relaxed),
                // Above it for longer than its seconds (as Redis: not merely as long).
                since if now.saturating_sub(since) > limits.soft_seconds * 1000 => {
                    return self.cut_off();
                }
                _ => {}
            }
        }
        // The receiver is gone only once the connection ended; nothing to do then.
        let _ = self.sender.send(delivery);
    }

    fn cut_off(&self) {
        if !self.cut.swap(true, Ordering::AcqRel) {
            self.cut_signal.notify_one();
        }
    }

    /// Whether the limits cut the subscriber off.
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// Waits until the limits cut the subscriber off.
    pub async fn cut(&self) {
        while !self.is_cut() {
            self.cut_signal.notified().await;
        }
    }

    fn allows_session(&self, namespaces: &[&[u8]]) -> bool {
        self.access
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .allows_session(namespaces)
    }

    fn allows_key(&self, key: &[u8]) -> bool {
        self.access
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .allows_key(key)
    }
}

type Subscribers = HashMap<u64, Arc<Mailbox>, ahash::RandomState>;

/// The subscribers of one pattern.
#[derive(Debug)]
struct PatternSubscribers {
    glob: glob::Pattern,
    subscribers: Subscribers,
}

/// Every subscription of the server.
#[derive(Debug, Default)]
pub struct Hub {
    channels: DashMap<Bytes, Subscribers, ahash::RandomState>,
    shard_channels: DashMap<Bytes, Subscribers, ahash::RandomState>,
    patterns: RwLock<HashMap<Bytes, PatternSubscribers, ahash::RandomState>>,
    /// `patterns.len()`, read without the lock.
    pattern_count: AtomicUsize,
    /// Subscriptions of every kind, server-wide.
    subscriptions: AtomicUsize,
    /// `client-output-buffer-limit pubsub`, read at each publish: a CONFIG SET holds the
    /// subscribers already there too.
    limits: LiveLimit,
}

/// A [`ClassLimit`] that can change while it is read.
#[derive(Debug, Default)]
struct LiveLimit {
    hard_bytes: AtomicUsize,
    soft_bytes: AtomicUsize,
    soft_seconds: AtomicU64,
}

impl Hub {
    /// Holds every subscriber, present and future, to `limits`.
    pub fn set_limits(&self, limits: ClassLimit) {
        self.limits
            .hard_bytes
            .store(limits.hard_bytes, Ordering::Relaxed);
        self.limits
            .soft_bytes
            .store(limits.soft_bytes, Ordering::Relaxed);
        self.limits
            .soft_seconds
            .store(limits.soft_seconds, Ordering::Relaxed);
    }

    /// The subscribers' output limits now.
    #[inline]
    fn limits(&self) -> ClassLimit {
        ClassLimit {
            hard_bytes: self.limits.hard_bytes.load(Ordering::Relaxed),
            soft_bytes: self.limits.soft_bytes.load(Ordering::Relaxed),
            soft_seconds: self.limits.soft_seconds.load(Ordering::Relaxed),
        }
    }

    /// Whether anyone subscribes to any channel or pattern (one relaxed load): producers of
    /// events check it first and build nothing otherwise.
    #[inline]
    pub fn has_subscribers(&self) -> bool {
        self.subscriptions.load(Ordering::Relaxed) != 0
    }

    /// PUBLISH: queues `message` for the subscribers of `channel` and of every pattern that
    /// matches it; never waits. Returns how many received it (a client subscribed to the
    /// channel and to two matching patterns counts three times, as in Redis).
    pub fn publish(&self, channel: &[u8], message: &[u8]) -> usize {
        self.fan_out(channel, message, |_| true)
    }

    /// A session event about sessions in `namespaces` (their IDs' prefixes): as
    /// [`Hub::publish`], but only to subscribers allowed session events, and to a named user's
    /// only if every one is its own namespace, exactly (one namespace may be another's prefix).
    pub fn publish_session(&self, channel: &[u8], message: &[u8], namespaces: &[&[u8]]) -> usize {
        self.fan_out(channel, message, |mailbox| {
            mailbox.allows_session(namespaces)
        })
    }

    /// A keyspace event about `key`: as [`Hub::publish`], but only to subscribers whose user
    /// may touch the key (a key's name may be a session ID).
    pub fn publish_key_event(&self, channel: &[u8], message: &[u8], key: &[u8]) -> usize {
        self.fan_out(channel, message, |mailbox| mailbox.allows_key(key))
    }

    fn fan_out(&self, channel: &[u8], message: &[u8], allowed: impl Fn(&Mailbox) -> bool) -> usize {
        if !self.has_subscribers() {
            return 0;
        }
        let mut receivers = 0;
        let limits = self.limits();
        if let Some(subscribers) = self.channels.get(channel) {
            let mut delivery = None;
            for mailbox in subscribers.values().filter(|m| allowed(m)) {
                let delivery =
                    delivery.get_or_insert_with(|| Delivery::channel(false, channel, message));
                mailbox.deliver(delivery.clone(), &limits);
                receivers += 1;
            }
        }
        if self.pattern_count.load(Ordering::Relaxed) != 0 {
            let patterns = self.patterns.read().unwrap_or_else(|p| p.into_inner());
            for (pattern, entry) in patterns.iter().filter(|(_, e)| e.glob.matches(channel)) {
                let mut delivery = None;
                for mailbox in entry.subscribers.values().filter(|m| allowed(m)) {
                    let delivery = delivery
                        .get_or_insert_with(|| Delivery::pattern(pattern, channel, message));
                    mailbox.deliver(delivery.clone(), &limits);
                    receivers += 1;
                }
            }
        }
        receivers
    }

    /// SPUBLISH: queues `message` for the subscribers of the shard channel.
    pub fn publish_shard(&self, channel: &[u8], message: &[u8]) -> usize {
        let Some(subscribers) = self.shard_channels.get(channel) else {
            return 0;
        };
        let delivery = Delivery::channel(true, channel, message);
        let limits = self.limits();
        for mailbox in subscribers.values() {
            mailbox.deliver(delivery.clone(), &limits);
        }
        subscribers.len()
    }

    /// A new subscriber: the connection `id`, held to the hub's limits, receiving what
    /// `access` allows. It subscribes to nothing yet.
    pub fn subscriber(self: &Arc<Self>, id: u64, access: Access) -> Subscriber {
        let (sender, inbox) = mpsc::unbounded_channel();
        Subscriber {
            hub: self.clone(),
            mailbox: Arc::new(Mailbox {
                id,
                sender,
                pending: AtomicUsize::new(0),
                soft_since_ms: AtomicU64::new(0),
                epoch: Instant::now(),
                cut: AtomicBool::new(false),
                cut_signal: Notify::new(),
                access: RwLock::new(access),
            }),
            inbox,
            channels: Default::default(),
            patterns: Default::default(),
            shard_channels: Default::default(),
            bytes: 0,
        }
    }

    fn add(&self, kind: Kind, name: &Bytes, mailbox: &Arc<Mailbox>) {
        let map = match kind {
            Kind::Channel => &self.channels,
            Kind::Shard => &self.shard_channels,
            Kind::Pattern => {
                let mut patterns = self.patterns.write().unwrap_or_else(|p| p.into_inner());
                patterns
                    .entry(name.clone())
                    .or_insert_with(|| PatternSubscribers {
                        glob: glob::Pattern::new(name),
                        subscribers: Subscribers::default(),
                    })
                    .subscribers
                    .insert(mailbox.id, mailbox.clone());
                self.pattern_count.store(patterns.len(), Ordering::Relaxed);
                self.subscriptions.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        map.entry(name.clone())
            .or_default()
            .insert(mailbox.id, mailbox.clone());
        self.subscriptions.fetch_add(1, Ordering::Relaxed);
    }

    fn remove(&self, kind: Kind, name: &[u8], id: u64) {
        let map = match kind {
            Kind::Channel => &self.channels,
            Kind::Shard => &self.shard_channels,
            Kind::Pattern => {
                let mut patterns = self.patterns.write().unwrap_or_else(|p| p.into_inner());
                if let Some(entry) = patterns.get_mut(name) {
                    entry.subscribers.remove(&id);
                    if entry.subscribers.is_empty() {
                        patterns.remove(name);
                        self.pattern_count.store(patterns.len(), Ordering::Relaxed);
                    }
                }
                self.subscriptions.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        };
        map.remove_if_mut(name, |_, subscribers| {
            subscribers.remove(&id);
            subscribers.is_empty()
        });
        self.subscriptions.fetch_sub(1, Ordering::Relaxed);
    }

    /// PUBSUB CHANNELS / SHARDCHANNELS: the channels with at least one subscriber, those
    /// `pattern` matches if given.
    pub fn channels(&self, shard: bool, pattern: Option<&glob::Pattern>) -> Vec<Bytes> {
        let map = if shard {
            &self.shard_channels
        } else {
            &self.channels
        };
        map.iter()
            .filter(|e| !e.value().is_empty() && pattern.is_none_or(|p| p.matches(e.key())))
            .map(|e| e.key().clone())
            .collect()
    }

    /// PUBSUB NUMSUB / SHARDNUMSUB: the subscribers of `channel`.
    pub fn numsub(&self, shard: bool, channel: &[u8]) -> usize {
        let map = if shard {
            &self.shard_channels
        } else {
            &self.channels
        };
        map.get(channel).map_or(0, |s| s.len())
    }

    /// PUBSUB NUMPAT: the patterns subscribed to, each counted once.
    pub fn numpat(&self) -> usize {
        self.pattern_count.load(Ordering::Relaxed)
    }

    /// Channels with subscribers (`pubsub_channels` of INFO), shard channels apart.
    pub fn channel_count(&self, shard: bool) -> usize {
        if shard {
            self.shard_channels.len()
        } else {
            self.channels.len()
        }
    }
}

/// A connection's subscriptions and the receiving end of its mailbox; unsubscribes from
/// everything when dropped.
#[derive(Debug)]
pub struct Subscriber {
    hub: Arc<Hub>,
    mailbox: Arc<Mailbox>,
    inbox: mpsc::UnboundedReceiver<Delivery>,
    channels: std::collections::HashSet<Bytes, ahash::RandomState>,
    patterns: std::collections::HashSet<Bytes, ahash::RandomState>,
    shard_channels: std::collections::HashSet<Bytes, ahash::RandomState>,
    /// What its subscriptions hold, names and bookkeeping ([`SUBSCRIPTION_OVERHEAD`] each).
    bytes: usize,
}

/// What one subscription costs besides its name, roughly: its entries in the hub's map and in
/// the connection's set.
pub const SUBSCRIPTION_OVERHEAD: usize = 96;

impl Subscriber {
    /// What its subscriptions hold (see [`SUBSCRIPTION_OVERHEAD`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn set(&self, kind: Kind) -> &std::collections::HashSet<Bytes, ahash::RandomState> {
        match kind {
            Kind::Channel => &self.channels,
            Kind::Pattern => &self.patterns,
            Kind::Shard => &self.shard_channels,
        }
    }

    fn set_mut(&mut self, kind: Kind) -> &mut std::collections::HashSet<Bytes, ahash::RandomState> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard_channels,
        }
    }

    /// Subscribes to `name`; `false` if it already was.
    pub fn subscribe(&mut self, kind: Kind, name: Bytes) -> bool {
        if self.set(kind).contains(&name) {
            return false;
        }
        self.hub.add(kind, &name, &self.mailbox);
        self.bytes += name.len() + SUBSCRIPTION_OVERHEAD;
        self.set_mut(kind).insert(name);
        true
    }

    /// Unsubscribes from `name`; `false` if it was not subscribed.
    pub fn unsubscribe(&mut self, kind: Kind, name: &[u8]) -> bool {
        if !self.set_mut(kind).remove(name) {
            return false;
        }
        self.bytes -= name.len() + SUBSCRIPTION_OVERHEAD;
        self.hub.remove(kind, name, self.mailbox.id);
        true
    }

    /// The names subscribed to of `kind`.
    pub fn names(&self, kind: Kind) -> Vec<Bytes> {
        self.set(kind).iter().cloned().collect()
    }

    /// How many subscriptions of `kind` the connection has.
    pub fn count(&self, kind: Kind) -> usize {
        self.set(kind).len()
    }

    /// The count SUBSCRIBE and PSUBSCRIBE confirmations carry: channels and patterns (shard
    /// channels are counted apart, as in Redis 7).
    pub fn count_for(&self, kind: Kind) -> usize {
        match kind {
            Kind::Shard => self.shard_channels.len(),
            Kind::Channel | Kind::Pattern => self.channels.len() + self.patterns.len(),
        }
    }

    /// Whether it subscribes to anything.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.patterns.is_empty() && self.shard_channels.is_empty()
    }

    /// Moves queued deliveries into `out` until it holds `room` bytes or none is left; returns
    /// whether some are left.
    pub fn drain_into(&mut self, resp3: bool, out: &mut BytesMut, room: usize) -> bool {
        let mut taken = 0;
        let more = loop {
            if out.len() >= room {
                break true;
            }
            match self.inbox.try_recv() {
                Ok(delivery) => {
                    taken += delivery.cost();
                    delivery.encode(resp3, out);
                }
                Err(_) => break false,
            }
        };
        if taken != 0 {
            self.taken(taken);
        }
        more
    }

    /// Waits for a delivery, then drains as [`Subscriber::drain_into`] does.
    pub async fn recv_into(&mut self, resp3: bool, out: &mut BytesMut, room: usize) {
        if let Some(delivery) = self.inbox.recv().await {
            self.taken(delivery.cost());
            delivery.encode(resp3, out);
            self.drain_into(resp3, out, room);
        }
    }

    fn taken(&self, bytes: usize) {
        let mailbox = &self.mailbox;
        let left = mailbox.pending.fetch_sub(bytes, Ordering::Relaxed) - bytes;
        if left <= self.hub.limits.soft_bytes.load(Ordering::Relaxed) {
            mailbox.soft_since_ms.store(0, Ordering::Relaxed);
        }
    }

    /// Its mailbox (to wait for a cut-off).
    pub fn mailbox(&self) -> &Arc<Mailbox> {
        &self.mailbox
    }

    /// The session events it may receive, once its connection's user changed.
    pub fn set_access(&self, access: Access) {
        *self
            .mailbox
            .access
            .write()
            .unwrap_or_else(|p| p.into_inner()) = access;
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let id = self.mailbox.id;
        for (kind, set) in [
            (Kind::Channel, &self.channels),
            (Kind::Pattern, &self.patterns),
            (Kind::Shard, &self.shard_channels),
        ] {
            for name in set {
                self.hub.remove(kind, name, id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    fn drained(sub: &mut Subscriber) -> Vec<u8> {
        let mut out = BytesMut::new();
        sub.drain_into(false, &mut out, usize::MAX);
        out.to_vec()
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn a_message_reaches_channel_and_pattern_subscribers_once_each() {
        let hub = hub();
        let mut a = hub.subscriber(1, Access::default());
        let mut c = hub.subscriber(2, Access::default());
        assert!(a.subscribe(Kind::Channel, b("news")));
        assert!(!a.subscribe(Kind::Channel, b("news")));
        assert!(c.subscribe(Kind::Pattern, b("n*")));
        assert!(c.subscribe(Kind::Pattern, b("*s")));
        assert_eq!(hub.publish(&b("news"), &b("hi")), 3);
        assert_eq!(
            drained(&mut a),
            b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
        let got = drained(&mut c);
        assert_eq!(got.windows(8).filter(|w| w == b"pmessage").count(), 2);
        assert_eq!(hub.publish(&b("other"), &b("x")), 0);
        assert_eq!(hub.numpat(), 2);
        drop(c);
        assert_eq!(hub.numpat(), 0);
        assert_eq!(hub.numsub(false, b"news"), 1);
        assert!(a.unsubscribe(Kind::Channel, b"news"));
        assert!(!hub.has_subscribers());
        assert!(hub.channels(false, None).is_empty());
    }

    #[test]
    fn shard_channels_are_their_own_namespace() {
        let hub = hub();
        let mut s = hub.subscriber(1, Access::default());
        s.subscribe(Kind::Shard, b("orders"));
        assert_eq!(hub.publish(&b("orders"), &b("x")), 0);
        assert_eq!(hub.publish_shard(&b("orders"), &b("x")), 1);
        let mut out = BytesMut::new();
        s.drain_into(true, &mut out, usize::MAX);
        assert_eq!(
            &out[..],
            b">3\r\n$8\r\nsmessage\r\n$6\r\norders\r\n$1\r\nx\r\n"
        );
    }

    #[test]
    fn a_subscriber_past_its_hard_limit_is_cut_off_and_queues_nothing_more() {
        let hub = hub();
        let limits = ClassLimit {
            hard_bytes: 1000,
            ..ClassLimit::default()
        };
        hub.set_limits(limits);
        let mut s = hub.subscriber(1, Access::default());
        s.subscribe(Kind::Channel, b("c"));
        let payload = Bytes::from(vec![b'x'; 100]);
        for _ in 0..100 {
            hub.publish(&b("c"), &payload);
        }
        assert!(s.mailbox().is_cut());
        let out = drained(&mut s);
        assert!(out.len() <= 1000, "{} bytes queued", out.len());
    }

    #[test]
    fn session_events_reach_only_allowed_subscribers_of_their_namespace() {
        let hub = hub();
        let allowed = |namespace: Option<&str>| Access {
            session_events: true,
            session_namespace: namespace.map(b),
            keys: None,
        };
        let mut all = hub.subscriber(1, allowed(None));
        let mut app1 = hub.subscriber(2, allowed(Some("app1:")));
        let mut nobody = hub.subscriber(3, Access::default());
        for s in [&mut all, &mut app1, &mut nobody] {
            s.subscribe(Kind::Pattern, b("*"));
        }
        let channel = b("__session__:created");
        assert_eq!(
            hub.publish_session(&channel, &b("app1:x u"), &[b"app1:"]),
            2
        );
        assert_eq!(
            hub.publish_session(&channel, &b("app2:y u"), &[b"app2:"]),
            1
        );
        // A namespace that merely starts with app1's is another application's.
        assert_eq!(
            hub.publish_session(&channel, &b("app1:adm:z u"), &[b"app1:adm:"]),
            1
        );
        assert_eq!(
            hub.publish_session(&channel, &b("app1:a app2:b u"), &[b"app1:", b"app2:"]),
            1
        );
        assert!(drained(&mut nobody).is_empty());
        assert!(!drained(&mut app1).is_empty());
        app1.set_access(Access::default());
        assert_eq!(
            hub.publish_session(&channel, &b("app1:z u"), &[b"app1:"]),
            1
        );
    }

    #[test]
    fn keyspace_events_reach_only_subscribers_allowed_the_key() {
        let hub = hub();
        let only = |pattern: &str| Access {
            keys: Some(Arc::from([glob::Pattern::new(pattern.as_bytes())])),
            ..Access::default()
        };
        let mut all = hub.subscriber(1, Access::default());
        let mut cache = hub.subscriber(2, only("cache:*"));
        for s in [&mut all, &mut cache] {
            s.subscribe(Kind::Pattern, b("__keyevent@0__:*"));
        }
        let channel = b("__keyevent@0__:del");
        assert_eq!(
            hub.publish_key_event(&channel, &b("cache:1"), b"cache:1"),
            2
        );
        assert_eq!(hub.publish_key_event(&channel, &b("sess:x"), b"sess:x"), 1);
        assert!(!drained(&mut cache).windows(6).any(|w| w == b"sess:x"));
    }
}
