//! Keyspace notifications and session events: which classes `notify-keyspace-events` enables
//! ([`EventFlags`], in Redis's letters), and the [`Notifier`] that commands and the store call
//! where a key changes or a session's lifecycle takes a step.
//!
//! The flags are one atomic word: a producer of a disabled class pays one relaxed load and a
//! branch, and builds nothing (nor does it when nobody subscribes to anything). Keyspace events
//! go to `__keyspace@<db>__:<key>` (message: the event) and `__keyevent@<db>__:<event>`
//! (message: the key), as Redis's `notifyKeyspaceEvent`; session events (class `S`, sessiond's
//! own) to `__session__:<event>`, only to the subscribers allowed to see that session.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::pubsub::Hub;

/// A class of events, one of Redis's `NOTIFY_*` bits (and `S`, sessiond's session events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class(u32);

impl Class {
    /// `K`: publish on `__keyspace@<db>__:<key>`.
    pub const KEYSPACE: Class = Class(1 << 0);
    /// `E`: publish on `__keyevent@<db>__:<event>`.
    pub const KEYEVENT: Class = Class(1 << 1);
    /// `g`: generic commands (DEL, EXPIRE, RENAME, ...).
    pub const GENERIC: Class = Class(1 << 2);
    /// `$`: string commands.
    pub const STRING: Class = Class(1 << 3);
    /// `l`: list commands (sessiond has none; accepted for Redis's configurations).
    pub const LIST: Class = Class(1 << 4);
    /// `s`: set commands.
    pub const SET: Class = Class(1 << 5);
    /// `h`: hash commands.
    pub const HASH: Class = Class(1 << 6);
    /// `z`: sorted-set commands (none here).
    pub const ZSET: Class = Class(1 << 7);
    /// `x`: a key reclaimed at its deadline (`expired`).
    pub const EXPIRED: Class = Class(1 << 8);
    /// `e`: a key evicted under `maxmemory` (`evicted`).
    pub const EVICTED: Class = Class(1 << 9);
    /// `t`: stream commands (none here).
    pub const STREAM: Class = Class(1 << 10);
    /// `m`: key misses (not published by sessiond; outside `A`, as in Redis).
    pub const KEY_MISS: Class = Class(1 << 11);
    /// `d`: module events (none here).
    pub const MODULE: Class = Class(1 << 13);
    /// `n`: a key created (`new`; outside `A`, as in Redis).
    pub const NEW: Class = Class(1 << 14);
    /// `S`: session events on `__session__:<event>` (sessiond's; outside `A`).
    pub const SESSION: Class = Class(1 << 15);

    /// `A`: every class of Redis's `NOTIFY_ALL` (`g$lshzxetd`).
    const ALL: u32 = Class::GENERIC.0
        | Class::STRING.0
        | Class::LIST.0
        | Class::SET.0
        | Class::HASH.0
        | Class::ZSET.0
        | Class::EXPIRED.0
        | Class::EVICTED.0
        | Class::STREAM.0
        | Class::MODULE.0;
}

/// The letter of each class, in the order `CONFIG GET` writes them (Redis's
/// `keyspaceEventsFlagsToString`: the classes of `A`, then the others).
const LETTERS: [(u8, Class); 11] = [
    (b'g', Class::GENERIC),
    (b'$', Class::STRING),
    (b'l', Class::LIST),
    (b's', Class::SET),
    (b'h', Class::HASH),
    (b'z', Class::ZSET),
    (b'x', Class::EXPIRED),
    (b'e', Class::EVICTED),
    (b't', Class::STREAM),
    (b'd', Class::MODULE),
    // Written after `A` too: Redis drops `n` when `A` is set, and so loses it on a rewrite.
    (b'n', Class::NEW),
];

/// The value of `notify-keyspace-events`: a set of [`Class`]es, written with Redis's letters
/// (`KEA`, `Ex`, ...) plus `S`. Empty (the default): nothing is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventFlags(u32);

/// Redis's error for a letter that names no class, with sessiond's `S` added to the list.
pub const INVALID_CLASS: &str = "Invalid event class character. Use 'Ag$lshzxeKEtmdnS'.";

impl EventFlags {
    /// Parses Redis's letters (any order, repeats allowed); `None` for a letter that names no
    /// class (see [`INVALID_CLASS`]).
    pub fn parse(text: &[u8]) -> Option<EventFlags> {
        let mut bits = 0;
        for &letter in text {
            bits |= match letter {
                b'A' => Class::ALL,
                b'K' => Class::KEYSPACE.0,
                b'E' => Class::KEYEVENT.0,
                b'm' => Class::KEY_MISS.0,
                b'S' => Class::SESSION.0,
                _ => LETTERS.iter().find(|(l, _)| *l == letter)?.1 .0,
            };
        }
        Some(EventFlags(bits))
    }

    /// Whether `class` is enabled.
    pub fn has(self, class: Class) -> bool {
        self.0 & class.0 != 0
    }
}

/// The canonical form `CONFIG GET` shows: `A` for all of Redis's classes (else each letter),
/// then `n`, `S`, `K`, `E`, `m` (`KEA` reads back as `AKE`).
impl fmt::Display for EventFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::new();
        let all = self.0 & Class::ALL == Class::ALL;
        if all {
            text.push('A');
        }
        for (letter, class) in LETTERS {
            if self.has(class) && (!all || class == Class::NEW) {
                text.push(char::from(letter));
            }
        }
        for (letter, class) in [
            ('S', Class::SESSION),
            ('K', Class::KEYSPACE),
            ('E', Class::KEYEVENT),
            ('m', Class::KEY_MISS),
        ] {
            if self.has(class) {
                text.push(letter);
            }
        }
        f.write_str(&text)
    }
}

/// [`EventFlags`] that can change while the server runs (`CONFIG SET`): one word, read with one
/// relaxed load by every producer.
#[derive(Debug, Default)]
pub struct Flags(AtomicU32);

impl Flags {
    /// The classes enabled now.
    pub fn get(&self) -> EventFlags {
        EventFlags(self.0.load(Ordering::Relaxed))
    }

    /// Enables exactly `flags`.
    pub fn set(&self, flags: EventFlags) {
        self.0.store(flags.0, Ordering::Relaxed);
    }

    /// Whether a keyspace event of `class` is published anywhere: its class and `K` or `E`.
    #[inline]
    pub fn key_events(&self, class: Class) -> bool {
        let bits = self.0.load(Ordering::Relaxed);
        bits & class.0 != 0 && bits & (Class::KEYSPACE.0 | Class::KEYEVENT.0) != 0
    }

    /// Whether any class is enabled.
    #[inline]
    pub fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed) != 0
    }

    /// Whether session events are published.
    #[inline]
    pub fn session_events(&self) -> bool {
        self.0.load(Ordering::Relaxed) & Class::SESSION.0 != 0
    }
}

/// A step of a session's life, published on `__session__:<event>` (class `S`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// SESSION.CREATE.
    Created,
    /// SESSION.DESTROY, DESTROYALL, DEL or UNLINK of its ID, or the per-user cap.
    Destroyed,
    /// Its idle or absolute timeout passed (found by the active expiry or by an access).
    Expired,
    /// Removed to stay under `maxmemory`.
    Evicted,
}

impl SessionEvent {
    fn channel(self) -> Bytes {
        Bytes::from_static(match self {
            SessionEvent::Created => b"__session__:created",
            SessionEvent::Destroyed => b"__session__:destroyed",
            SessionEvent::Expired => b"__session__:expired",
            SessionEvent::Evicted => b"__session__:evicted",
        })
    }
}

/// The publisher of a server's events: the enabled classes and the [`Hub`] they go through,
/// shared by the commands (through the store they run on) and by the store's own removals
/// (expiry, eviction, the per-user cap), so that no producer needs the server's shared state.
#[derive(Debug, Default)]
pub struct Notifier {
    flags: Flags,
    hub: Arc<Hub>,
}

impl Notifier {
    /// The classes enabled now.
    pub fn flags(&self) -> &Flags {
        &self.flags
    }

    /// The pub/sub hub events are published through (the server's, PUBLISH's too).
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Whether a keyspace event of `class` would reach anyone: its class and `K` or `E` are
    /// enabled, and someone subscribes to something. A producer that must work to learn the
    /// event's key asks this first.
    #[inline]
    pub fn wants(&self, class: Class) -> bool {
        self.flags.key_events(class) && self.hub.has_subscribers()
    }

    /// Whether session events would reach anyone (see [`Notifier::wants`]).
    #[inline]
    pub fn wants_sessions(&self) -> bool {
        self.flags.session_events() && self.hub.has_subscribers()
    }

    /// Redis's `notifyKeyspaceEvent(class, event, key, db)`: `event` on
    /// `__keyspace@<db>__:<key>` (with `K`) and `key` on `__keyevent@<db>__:<event>` (with
    /// `E`). With the class off, one relaxed load and a branch.
    #[inline]
    pub fn key_event(&self, class: Class, event: &'static str, db: u16, key: &[u8]) {
        if self.wants(class) {
            self.publish_key_event(event, db, key);
        }
    }

    #[cold]
    #[inline(never)]
    fn publish_key_event(&self, event: &'static str, db: u16, key: &[u8]) {
        let flags = self.flags.get();
        let channel = |kind: &str, name: &[u8]| {
            let mut channel = Vec::with_capacity(kind.len() + 10 + name.len());
            channel.extend_from_slice(kind.as_bytes());
            channel.extend_from_slice(db.to_string().as_bytes());
            channel.extend_from_slice(b"__:");
            channel.extend_from_slice(name);
            Bytes::from(channel)
        };
        let event_name = Bytes::from_static(event.as_bytes());
        // Only to subscribers whose user may touch the key (a restricted user's patterns).
        if flags.has(Class::KEYSPACE) {
            let channel = channel("__keyspace@", key);
            self.hub.publish_key_event(&channel, &event_name, key);
        }
        if flags.has(Class::KEYEVENT) {
            let channel = channel("__keyevent@", event.as_bytes());
            let name = Bytes::copy_from_slice(key);
            self.hub.publish_key_event(&channel, &name, key);
        }
    }

    /// A session's step `event`: `<id> <user>` (the user empty when anonymous) on
    /// `__session__:<event>`, to the subscribers allowed the events of `namespace` (the ID's
    /// prefix, `store::session::prefix_of`).
    #[inline]
    pub fn session_event(
        &self,
        event: SessionEvent,
        id: &[u8],
        namespace: &[u8],
        user: Option<&[u8]>,
    ) {
        if self.wants_sessions() {
            let message = session_message(&[id], user);
            self.hub
                .publish_session(&event.channel(), &message, &[namespace]);
        }
    }

    /// SESSION.REGENERATE: `<old id> <new id> <user>` on `__session__:regenerated`, to the
    /// subscribers allowed both IDs' namespaces.
    pub fn session_regenerated(
        &self,
        (old_id, old_namespace): (&[u8], &[u8]),
        (new_id, new_namespace): (&[u8], &[u8]),
        user: Option<&[u8]>,
    ) {
        if self.wants_sessions() {
            let message = session_message(&[old_id, new_id], user);
            let channel = Bytes::from_static(b"__session__:regenerated");
            self.hub
                .publish_session(&channel, &message, &[old_namespace, new_namespace]);
        }
    }
}

/// `ids` and `user`, each followed by a space but the user.
fn session_message(ids: &[&[u8]], user: Option<&[u8]>) -> Bytes {
    let user = user.unwrap_or_default();
    let len = ids.iter().map(|id| id.len() + 1).sum::<usize>() + user.len();
    let mut message = Vec::with_capacity(len);
    for id in ids {
        message.extend_from_slice(id);
        message.push(b' ');
    }
    message.extend_from_slice(user);
    Bytes::from(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(text: &str) -> Option<String> {
        EventFlags::parse(text.as_bytes()).map(|flags| flags.to_string())
    }

    #[test]
    fn flags_read_back_in_redis_canonical_form() {
        assert_eq!(canonical("KEA").as_deref(), Some("AKE"));
        assert_eq!(canonical("").as_deref(), Some(""));
        assert_eq!(canonical("Ex").as_deref(), Some("xE"));
        assert_eq!(canonical("Egx").as_deref(), Some("gxE"));
        assert_eq!(canonical("KEA$").as_deref(), Some("AKE"));
        assert_eq!(canonical("hs$gK").as_deref(), Some("g$shK"));
        assert_eq!(canonical("SE").as_deref(), Some("SE"));
        assert_eq!(canonical("AnSKEm").as_deref(), Some("AnSKEm"));
        assert_eq!(canonical("g$lshzxetd").as_deref(), Some("A"));
        assert_eq!(canonical("KEAw"), None);
        assert_eq!(canonical("a"), None);
    }

    #[test]
    fn a_key_event_needs_its_class_and_a_channel_kind() {
        let flags = Flags::default();
        assert!(!flags.key_events(Class::GENERIC));
        flags.set(EventFlags::parse(b"g").unwrap());
        assert!(!flags.key_events(Class::GENERIC), "neither K nor E");
        flags.set(EventFlags::parse(b"gE").unwrap());
        assert!(flags.key_events(Class::GENERIC));
        assert!(!flags.key_events(Class::STRING));
        assert!(!flags.session_events());
        flags.set(EventFlags::parse(b"S").unwrap());
        assert!(flags.session_events());
        assert!(
            !flags.key_events(Class::SESSION),
            "S alone publishes no keyspace event"
        );
    }
}
