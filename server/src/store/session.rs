//! Native sessions: server-issued IDs, the store's session operations, and the per-user index
//! (the record itself, [`SessionRecord`], is one of the values in `value.rs`).
//!
//! A session is an entry of the keyspace whose key is its ID and whose deadline is always
//! `min(last_access + idle, created + absolute)`. IDs are [`ID_BYTES`] bytes from the operating
//! system's CSPRNG, base64url without padding ([`ID_LEN`] characters), and are only ever made
//! here: no command creates a session under a name the client chose.
//!
//! The per-user index maps a user to its session IDs in the order they became the user's
//! (created with it, or moved to it by REGENERATE; after a load, by creation time), with add,
//! remove and count in O(1) amortized (`UserSessions`). It is a second `DashMap`, and one rule
//! keeps the two maps free of deadlock: a keyspace shard lock is never held while a user-index
//! lock is taken (the reverse nesting is allowed). Every path that removes a session from the
//! keyspace removes it from the index right after, with the keyspace lock released; so a user's
//! count is exact but for sessions past their deadline that the active expiry has not reclaimed
//! yet (as DBSIZE counts them). A LIST filters out an ID whose session is past its deadline, and
//! prunes one whose session is gone (its removal is what unindexes one past its deadline: a
//! replica's clock is not its primary's).

use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;

use super::accounting::{Before, Removal, Tally};
use super::fields::Fields;
use super::journal::Recording;
use super::record::{Ending, Record};
use super::table::Table;
use super::user_sessions::UserSessions;
use super::value::{owned, Entry, SessionRecord, Value, ValueMut, ValueRef};
use super::{ended_by, Node, Store};
use crate::histogram::Histogram;
use crate::notify::SessionEvent;

thread_local! {
    /// Sessions (user, ID) an atomic block removed, to unindex once its locks are released.
    static DEFERRED: std::cell::RefCell<Vec<(u16, Bytes, Bytes)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The bytes of entropy in a session ID (256 bits; OWASP asks for at least 64).
pub const ID_BYTES: usize = 32;

/// The characters of the random part of a session ID: `ID_BYTES` in base64url.
pub const ID_LEN: usize = (ID_BYTES * 4).div_ceil(3);
// The slow log redacts keys that end as IDs do.
const _: () = assert!(ID_LEN == crate::slowlog::ID_LEN);

/// A new session ID: `prefix` (the creating user's namespace, often empty) followed by
/// [`ID_BYTES`] from the operating system's CSPRNG in base64url.
pub fn new_id(prefix: &[u8]) -> Result<Bytes, getrandom::Error> {
    let mut raw = [0u8; ID_BYTES];
    getrandom::fill(&mut raw)?;
    let mut id = Vec::with_capacity(prefix.len() + ID_LEN);
    id.extend_from_slice(prefix);
    base64url(&raw, &mut id);
    Ok(Bytes::from(id))
}

/// The namespace part of a session ID: what precedes its random part.
pub fn prefix_of(id: &[u8]) -> &[u8] {
    &id[..id.len().saturating_sub(ID_LEN)]
}

/// The per-user index's key for `user` in the namespace `prefix`: the prefix, a NUL (which no
/// prefix contains, so the split is unambiguous), then the user.
fn index_key(prefix: &[u8], user: &[u8]) -> Bytes {
    let mut key = Vec::with_capacity(prefix.len() + 1 + user.len());
    key.extend_from_slice(prefix);
    key.push(0);
    key.extend_from_slice(user);
    Bytes::from(key)
}

/// base64url without padding (RFC 4648 §5), appended to `out`: IDs are safe in cookies and
/// URLs as they are.
fn base64url(data: &[u8], out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let symbols = chunk.len() + 1;
        for i in 0..symbols {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]);
        }
    }
}

/// Session counters for INFO and the Prometheus endpoint.
#[derive(Debug)]
pub struct SessionStats {
    /// Sessions in the keyspace (expired ones not yet reclaimed included).
    pub live: AtomicI64,
    /// Sessions created.
    pub created: AtomicU64,
    /// Sessions removed because their deadline passed.
    pub expired: AtomicU64,
    /// Sessions destroyed (DESTROY, DESTROYALL, DEL, FLUSHALL, the per-user cap).
    pub destroyed: AtomicU64,
    /// Regenerations.
    pub regenerated: AtomicU64,
    /// SESSION.SET refused for a version mismatch.
    pub conflicts: AtomicU64,
    /// Sessions evicted at `maxmemory` (counted in `destroyed` too, as INFO has it).
    pub evicted: AtomicU64,
    /// How long sessions lived, observed as each leaves the keyspace one by one (expiry,
    /// eviction, a destroy or DEL; not a flush), for the Prometheus endpoint.
    pub lifetimes: Lifetimes,
}

impl Default for SessionStats {
    fn default() -> Self {
        SessionStats {
            live: AtomicI64::new(0),
            created: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            destroyed: AtomicU64::new(0),
            regenerated: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            lifetimes: Histogram::new(LIFETIME_BOUNDS_MS),
        }
    }
}

impl SessionStats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The upper bounds of the session lifetime histogram's buckets: a minute to a week, around
/// the idle (30 min) and absolute (8 h) defaults.
pub const LIFETIME_BOUNDS_MS: [u64; 10] = [
    60_000,
    300_000,
    900_000,
    1_800_000,
    3_600_000,
    7_200_000,
    14_400_000,
    28_800_000,
    86_400_000,
    604_800_000,
];

/// How long sessions lived.
pub type Lifetimes = Histogram<{ LIFETIME_BOUNDS_MS.len() }>;

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(data: &[u8]) -> String {
        let mut out = Vec::new();
        base64url(data, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn base64url_matches_rfc4648() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg");
        assert_eq!(encode(b"fo"), "Zm8");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"foob"), "Zm9vYg");
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn ids_are_43_url_safe_characters_after_the_prefix() {
        assert_eq!(ID_LEN, 43);
        let id = new_id(b"").unwrap();
        assert_eq!(id.len(), 43);
        assert!(id
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_'));
        let id = new_id(b"sess:app1:").unwrap();
        assert_eq!(id.len(), 10 + 43);
        assert!(id.starts_with(b"sess:app1:"));
        assert_eq!(prefix_of(&id), b"sess:app1:");
        assert_eq!(prefix_of(&id[10..]), b"");
    }

    const START: u64 = 1_767_225_600_000;

    fn session_of(user: Option<&'static str>, idle_ms: u64) -> NewSession {
        NewSession {
            prefix: Bytes::new(),
            user: user.map(|user| Bytes::from_static(user.as_bytes())),
            idle_ms,
            absolute_ms: 3_600_000,
            data: Vec::new(),
        }
    }

    #[test]
    fn a_users_index_does_constant_work_per_session() {
        use super::super::user_sessions::VISITED;
        let (clock, manual) = crate::clock::Clock::manual(START);
        let store = Store::new(clock);
        let visited = || VISITED.with(std::cell::Cell::get);
        let before = visited();
        // One user (a shared service account): every index operation used to walk its list.
        let sessions = 20_000;
        let ids: Vec<Bytes> = (0..sessions)
            .map(|_| store.create_session(session_of(Some("svc"), 1_000), START, 0))
            .collect::<Result<_, _>>()
            .unwrap();
        for id in ids.iter().step_by(10) {
            assert!(store.destroy_session(id, START));
        }
        let left = sessions - sessions / 10;
        for id in ids.iter().skip(1).step_by(10) {
            assert!(store
                .regenerate_session(id, None, START, 0)
                .unwrap()
                .is_some());
        }
        for _ in 0..1_000 {
            assert_eq!(store.count_sessions(b"", b"svc"), left);
        }
        manual.advance(1_000);
        store.reclaim_expired();
        assert_eq!(store.count_sessions(b"", b"svc"), 0);
        assert_eq!((store.len(), store.session_users()), (0, 0));
        let work = visited() - before;
        assert!(
            work <= 10 * sessions as u64,
            "{work} index slots visited for {sessions} sessions"
        );
    }

    #[test]
    fn regenerations_alone_keep_the_expiry_index_bounded() {
        // Each move leaves the old ID's position stale: with no other write to compact the
        // index, REGENERATE must.
        let store = Store::new(crate::clock::Clock::manual(START).0);
        let mut ids: Vec<Bytes> = (0..10)
            .map(|_| store.create_session(session_of(Some("ada"), 60_000), START, 0))
            .collect::<Result<_, _>>()
            .unwrap();
        for round in 0..20_000 {
            let id = &mut ids[round % 10];
            *id = store
                .regenerate_session(id, None, START, 0)
                .unwrap()
                .unwrap();
        }
        let positions = store.expiry_index_len();
        assert!(
            positions <= 2 * super::super::INDEX_FLOOR,
            "{positions} positions for 10 sessions"
        );
    }

    #[test]
    fn a_session_moved_to_a_user_at_the_cap_is_not_the_one_evicted() {
        let store = Store::new(crate::clock::Clock::manual(START).0);
        // The anonymous session is the oldest: it sorted first and was evicted at once.
        let anonymous = store
            .create_session(session_of(None, 60_000), START, 2)
            .unwrap();
        let first = store
            .create_session(session_of(Some("ada"), 60_000), START + 10, 2)
            .unwrap();
        let second = store
            .create_session(session_of(Some("ada"), 60_000), START + 20, 2)
            .unwrap();
        let now = START + 30;
        let ada = Bytes::from_static(b"ada");
        let moved = store
            .regenerate_session(&anonymous, Some(&ada), now, 2)
            .unwrap()
            .unwrap();
        assert!(
            store.read_session(&moved, now, |_| ()).unwrap().is_some(),
            "the ID REGENERATE returned works"
        );
        assert_eq!(store.list_sessions(b"", b"ada", now), vec![second, moved]);
        assert!(store.read_session(&first, now, |_| ()).unwrap().is_none());
        assert_eq!(store.count_sessions(b"", b"ada"), 2);
    }

    #[test]
    fn index_keys_of_different_namespaces_differ() {
        assert_ne!(index_key(b"", b"a\0b"), index_key(b"a", b"b"));
        assert_eq!(index_key(b"p:", b"ada"), Bytes::from_static(b"p:\0ada"));
    }
}

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The key exists and is not a session.
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    /// The operating system's random generator failed; no ID could be made.
    #[error("ERR cannot generate a session ID: {0}")]
    Random(#[from] getrandom::Error),
}

/// How [`Store::move_session`] ended.
enum Move {
    /// Moved: the old ID, the new one, and the session's user.
    Moved(Bytes, Bytes, Option<Bytes>),
    /// No live session at the old ID.
    Gone,
    /// The new ID is taken (draw another).
    Taken,
}

/// What `session-max-bytes` counts for each field beyond its name and value: about what one
/// costs in the session's table and encoding, so that many tiny fields are bounded too (each
/// write sends the whole session to the log and the replicas).
pub const FIELD_OVERHEAD: usize = 64;

/// A session's size as `session-max-bytes` counts it: every field's name and value, and
/// [`FIELD_OVERHEAD`] for each.
pub fn data_size(fields: &Fields) -> usize {
    fields.data_bytes() + fields.len() * FIELD_OVERHEAD
}

/// A session's size ([`data_size`]) once `pairs` are set on `fields`: each field counted once,
/// with the last value given it.
pub fn data_size_after(fields: Option<&Fields>, pairs: &[(Bytes, Bytes)]) -> usize {
    let mut last: std::collections::HashMap<&[u8], &[u8]> =
        std::collections::HashMap::with_capacity(pairs.len());
    for (field, value) in pairs {
        last.insert(field, value);
    }
    let before = fields.map_or(0, data_size);
    last.iter().fold(before, |size, (field, value)| {
        let replaced = fields
            .and_then(|fields| fields.get(*field))
            .map_or(0, |old| field.len() + old.len() + FIELD_OVERHEAD);
        size + field.len() + value.len() + FIELD_OVERHEAD - replaced
    })
}

/// The refusal of a change that would make a session's data `bytes`, past `limit`
/// (`session-max-bytes`; 0: none), if it is.
pub fn over_max_bytes(bytes: usize, limit: u64) -> Option<String> {
    (limit > 0 && bytes as u64 > limit)
        .then(|| format!("ERR session would be {bytes} bytes, over session-max-bytes ({limit})"))
}

/// What SESSION.CREATE asks for.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The prefix of the new ID: the creating user's namespace.
    pub prefix: Bytes,
    /// The owner.
    pub user: Option<Bytes>,
    /// Idle timeout, ms.
    pub idle_ms: u64,
    /// Absolute timeout, ms.
    pub absolute_ms: u64,
    /// Initial fields.
    pub data: Vec<(Bytes, Bytes)>,
}

impl Store {
    /// The session counters.
    pub fn session_stats(&self) -> &SessionStats {
        &self.sessions
    }

    /// Users that have at least one session in the index (inside an atomic block, as last
    /// counted outside one: counting locks the index).
    pub fn session_users(&self) -> usize {
        if Table::in_block() {
            return self.users_counted.load(AtomicOrdering::Relaxed) as usize;
        }
        let users = self.users.len();
        self.users_counted
            .store(users as u64, AtomicOrdering::Relaxed);
        users
    }

    /// Creates a session and returns its new ID; with `max_per_user > 0`, the user's oldest
    /// sessions beyond the cap are destroyed.
    pub fn create_session(
        &self,
        new: NewSession,
        now_ms: u64,
        max_per_user: usize,
    ) -> Result<Bytes, SessionError> {
        let mut fields = Fields::default();
        for (field, value) in &new.data {
            fields.insert(owned(field), owned(value));
        }
        let user = new.user.as_ref().map(owned);
        let record = SessionRecord {
            user: user.clone(),
            fields,
            created_ms: now_ms,
            last_access_ms: now_ms,
            idle_ms: new.idle_ms,
            absolute_ms: new.absolute_ms,
            version: 1,
        };
        let deadline = record.deadline_ms();
        let rec = self.journal.recording();
        let id = self.insert_session(&new.prefix, record, deadline, now_ms, &rec)?;
        self.sessions.created.fetch_add(1, AtomicOrdering::Relaxed);
        // Before the cap's `destroyed` events, if any: the new session made them.
        self.notifier
            .session_event(SessionEvent::Created, &id, prefix_of(&id), user.as_deref());
        if let Some(user) = user {
            self.index_session(&user, id.clone(), now_ms, max_per_user, &rec);
        }
        Ok(id)
    }

    /// Stores `record` under a fresh ID (drawing again in the astronomically unlikely case the
    /// ID is taken) and returns the ID.
    fn insert_session(
        &self,
        prefix: &[u8],
        record: SessionRecord,
        deadline_ms: u64,
        now_ms: u64,
        rec: &Recording<'_>,
    ) -> Result<Bytes, SessionError> {
        let mut entry = Entry::new(Value::Session(Box::new(record)), deadline_ms);
        loop {
            let id = new_id(prefix)?;
            match self.insert_new(&id, entry, now_ms, rec) {
                Ok(()) => return Ok(id),
                Err(taken) => entry = taken,
            }
        }
    }

    /// Appends `id` to `user`'s list in the ID's namespace, then enforces the per-user cap by
    /// destroying the oldest sessions of that namespace, never `id` itself: it is the newest, and
    /// a cap is at least one. O(1) amortized, and O(1) per session destroyed. A session past its
    /// deadline that the active expiry has not reclaimed yet still counts against the cap.
    fn index_session(
        &self,
        user: &Bytes,
        id: Bytes,
        now_ms: u64,
        max_per_user: usize,
        rec: &Recording<'_>,
    ) {
        let mut evicted = Vec::new();
        let key = index_key(prefix_of(&id), user);
        {
            let hasher = self.users.hasher();
            let mut list = match self.users.get_mut(&key) {
                Some(list) => list,
                None => self.users.entry(key.clone()).or_default(),
            };
            list.push(id, hasher);
            while max_per_user > 0 && list.len() > max_per_user {
                match list.pop_oldest(hasher) {
                    Some(oldest) => evicted.push(oldest),
                    None => break,
                }
            }
        }
        for id in evicted {
            self.destroy_session_recorded(&id, now_ms, rec);
        }
    }

    /// Appends `id` to `user`'s list without enforcing a cap (a session applied from a log or
    /// a primary, whose cap was enforced where it was created).
    pub(super) fn index_session_uncapped(
        &self,
        user: &Bytes,
        id: Bytes,
        now_ms: u64,
        rec: &Recording<'_>,
    ) {
        self.index_session(user, id, now_ms, 0, rec);
    }

    /// Unindexes the sessions of this database an atomic block removed (see
    /// [`Store::unindex`]); those of other databases stay for theirs.
    pub(super) fn unindex_deferred(&self) {
        let mut deferred = DEFERRED.with(|deferred| std::mem::take(&mut *deferred.borrow_mut()));
        deferred.retain(|(db, user, id)| {
            if *db != self.db {
                return true;
            }
            self.unindex(user, id);
            false
        });
        if !deferred.is_empty() {
            DEFERRED.with(|kept| kept.borrow_mut().append(&mut deferred));
        }
    }

    /// Removes `id` from `user`'s list, and the user when the list empties. O(1) amortized.
    pub(super) fn unindex(&self, user: &Bytes, id: &[u8]) {
        if Table::in_block() {
            // The index's locks come before shard locks: after the block.
            DEFERRED.with(|deferred| {
                deferred
                    .borrow_mut()
                    .push((self.db, user.clone(), Bytes::copy_from_slice(id)))
            });
            return;
        }
        let key = index_key(prefix_of(id), user);
        let now_empty = match self.users.get_mut(&key) {
            Some(mut list) => {
                list.remove(id, self.users.hasher());
                list.is_empty()
            }
            None => false,
        };
        if now_empty {
            self.users.remove_if(&key, |_, list| list.is_empty());
        }
    }

    /// Rebuilds the per-user index from the sessions in the keyspace (after a load): each
    /// user's IDs by creation time.
    pub fn rebuild_user_index(&self) {
        self.users.clear();
        let mut lists: std::collections::HashMap<Bytes, Vec<(u64, Bytes)>> = Default::default();
        for shard in 0..self.map.shard_count() {
            for node in self.map.read(shard).iter() {
                if let Some((user, created_ms)) = node
                    .as_session()
                    .and_then(|s| s.user.clone().map(|user| (user, s.created_ms)))
                {
                    let id = Bytes::copy_from_slice(node.key());
                    lists
                        .entry(index_key(prefix_of(&id), &user))
                        .or_default()
                        .push((created_ms, id));
                }
            }
        }
        let hasher = self.users.hasher();
        for (user, mut list) in lists {
            list.sort();
            let mut sessions = UserSessions::default();
            for (_, id) in list {
                sessions.push(id, hasher);
            }
            self.users.insert(user, sessions);
        }
    }

    /// Whether `id` is a session of `user` that is live (`Some(true)`) or past its deadline
    /// (`Some(false)`); `None` if it is no session of the user's.
    fn session_of(&self, id: &[u8], user: &[u8], now_ms: u64) -> Option<bool> {
        self.peek(id, |node| {
            let node = node?;
            let session = node.as_session()?;
            (session.user.as_deref() == Some(user)).then(|| !node.is_expired(now_ms))
        })
    }

    /// Destroys the session `id`; true if a live session was destroyed. Other kinds of keys are
    /// left alone.
    pub fn destroy_session(&self, id: &[u8], now_ms: u64) -> bool {
        let rec = self.journal.recording();
        self.destroy_session_recorded(id, now_ms, &rec)
    }

    fn destroy_session_recorded(&self, id: &[u8], now_ms: u64, rec: &Recording<'_>) -> bool {
        let judge = |node: &Node| node.is_session().then(|| ended_by(node, now_ms));
        let Some((node, why)) = self.remove_if(id, rec, judge) else {
            return false;
        };
        self.after_remove(&node, Before::of(&node), why);
        why == Removal::Deleted
    }

    /// Runs `f` on the live session `id` under its shard's write lock. `f` returns whether the
    /// call counts as a use of the session, which refreshes its idle timer; the entry's deadline
    /// follows. `Ok(None)` when there is no such session.
    pub fn update_session<R>(
        &self,
        id: &Bytes,
        now_ms: u64,
        f: impl FnOnce(&mut SessionRecord) -> (bool, R),
    ) -> Result<Option<R>, SessionError> {
        let feed_on = self.feed.on();
        let outcome = self.modify(id, now_ms, |mut node| {
            let ValueMut::Session(session) = node.value_mut() else {
                return (false, Err(SessionError::WrongType));
            };
            let seen = feed_on.then(|| (feed_view(session), session.last_access_ms));
            let (used, reply) = f(session);
            if used {
                // Never backwards: another connection's reading may be a little newer.
                session.last_access_ms = session.last_access_ms.max(now_ms);
            }
            if let Some((view, last_access_ms)) = seen {
                use super::feed::{session_use, SessionUse};
                session_use(match (view == feed_view(session), last_access_ms) {
                    (false, _) => SessionUse::Whole,
                    (true, before) if before == session.last_access_ms => SessionUse::Nothing,
                    (true, _) => SessionUse::Touch,
                });
            }
            let deadline = session.deadline_ms();
            node.set_expires_at_ms(deadline);
            (false, Ok(reply))
        });
        outcome.transpose()
    }

    /// Runs `f` on the live session `id` without refreshing it. `Ok(None)` when there is none.
    pub fn read_session<R>(
        &self,
        id: &[u8],
        now_ms: u64,
        f: impl FnOnce(&SessionRecord) -> R,
    ) -> Result<Option<R>, SessionError> {
        self.read(id, now_ms, |node| match node.map(|n| n.value()) {
            None => Ok(None),
            Some(ValueRef::Session(session)) => Ok(Some(f(session))),
            Some(_) => Err(SessionError::WrongType),
        })
    }

    /// Whether `id` names a key that is not a session (for WRONGTYPE replies).
    pub fn is_other_type(&self, id: &[u8], now_ms: u64) -> bool {
        self.read(id, now_ms, |node| node.is_some_and(|n| !n.is_session()))
    }

    /// The live session IDs of `user` in the namespace `prefix`, oldest first. IDs met on the
    /// way that name no session of the user's are pruned; a session past its deadline stays
    /// indexed until its removal unindexes it, as this node's clock may not be its primary's
    /// (a replica's reads hide such a session, but a touch in the stream may yet renew it).
    /// O(the user's sessions).
    pub fn list_sessions(&self, prefix: &[u8], user: &[u8], now_ms: u64) -> Vec<Bytes> {
        let key = index_key(prefix, user);
        let (ids, now_empty) = match self.users.get_mut(&key) {
            None => return Vec::new(),
            Some(mut list) => {
                let mut live = Vec::with_capacity(list.len());
                let mut gone = Vec::new();
                for id in list.ids() {
                    match self.session_of(id, user, now_ms) {
                        Some(true) => live.push(id.clone()),
                        Some(false) => {}
                        None => gone.push(id.clone()),
                    }
                }
                for id in gone {
                    list.remove(&id, self.users.hasher());
                }
                (live, list.is_empty())
            }
        };
        if now_empty {
            self.users.remove_if(&key, |_, list| list.is_empty());
        }
        ids
    }

    /// How many sessions `user` has in the namespace `prefix`: those in its index, which holds
    /// every live one and, until the active expiry reclaims them, those past their deadline (as
    /// DBSIZE counts keys). O(1).
    pub fn count_sessions(&self, prefix: &[u8], user: &[u8]) -> usize {
        self.users
            .get(&index_key(prefix, user))
            .map_or(0, |list| list.len())
    }

    /// Destroys every live session of `user` in the namespace `prefix` but `except`; returns
    /// how many were destroyed.
    pub fn destroy_sessions_of(
        &self,
        prefix: &[u8],
        user: &[u8],
        except: Option<&[u8]>,
        now_ms: u64,
    ) -> usize {
        let rec = self.journal.recording();
        let key = index_key(prefix, user);
        let Some(mut list) = self.users.get_mut(&key) else {
            return 0;
        };
        let mut doomed = std::mem::take(&mut *list);
        if let Some(kept) = except.filter(|&id| doomed.remove(id, self.users.hasher())) {
            list.push(Bytes::copy_from_slice(kept), self.users.hasher());
        }
        // The sessions are destroyed with the list still held (user index, then keyspace: the
        // allowed order), so a REGENERATE, which holds it across its move, either moved a
        // session before (the new ID is destroyed here) or finds it gone after: "log out
        // everywhere" misses nothing. The list is already updated, hence `count_removal`.
        // Their events are published once the list is released (a fan-out is not short).
        let mut removed = Vec::new();
        let announce = self.notifier.flags().session_events();
        let mut destroyed = 0;
        for id in doomed.ids() {
            let judge = |node: &Node| node.is_session().then(|| ended_by(node, now_ms));
            if let Some((node, why)) = self.remove_if(id, &rec, judge) {
                self.count_removal(Before::of(&node), why);
                self.observe_lifetime(&node, now_ms);
                destroyed += usize::from(why == Removal::Deleted);
                if announce {
                    removed.push((node, why));
                }
            }
        }
        let now_empty = list.is_empty();
        drop(list);
        if now_empty {
            self.users.remove_if(&key, |_, list| list.is_empty());
        }
        for (node, why) in removed {
            self.announce_removal(&node, why);
        }
        destroyed
    }

    /// Moves the session `id` to a new ID in the same namespace (and to `new_user` if given) in
    /// one step: the old ID is gone before the new one is returned. `Ok(None)` when there is no such session.
    pub fn regenerate_session(
        &self,
        id: &[u8],
        new_user: Option<&Bytes>,
        now_ms: u64,
        max_per_user: usize,
    ) -> Result<Option<Bytes>, SessionError> {
        // The user of an ID never changes (moving to another user makes a new ID), so it can be
        // read before the move.
        let Some(old_user) = self.read_session(id, now_ms, |s| s.user.clone())? else {
            return Ok(None);
        };
        // The old user's list is held across the move (user index, then keyspace: the allowed
        // order), so SESSION.DESTROYALL, which destroys under the same lock, sees the old ID or
        // the new one, never neither.
        // One recording across the removal and the insertion: a snapshot holds both or neither.
        // Taken before the user's list, as every other path does: the journal's gate, then a
        // user's list (a snapshot waiting to close the gate blocks new recordings).
        let rec = self.journal.recording();
        let old_key = old_user.as_ref().map(|u| index_key(prefix_of(id), u));
        let mut old_list = old_key.as_ref().and_then(|key| self.users.get_mut(key));
        let (old_id, new_id, user) = loop {
            let new_id = new_id(prefix_of(id))?;
            match self.move_session(id, new_id, new_user, now_ms, &rec) {
                Move::Moved(old_id, new_id, user) => break (old_id, new_id, user),
                Move::Gone => return Ok(None),
                // Drawn again in the astronomically unlikely case the ID is taken.
                Move::Taken => {}
            }
        };
        // Skipped inside the block: the old ID's position in the expiry index is stale now.
        self.bound_index();
        self.sessions
            .regenerated
            .fetch_add(1, AtomicOrdering::Relaxed);
        let same_user = old_user.is_some() && old_user == user;
        let mut indexed = false;
        if let Some(mut list) = old_list.take() {
            let hasher = self.users.hasher();
            if same_user {
                // The new ID takes the old one's place; the count is unchanged.
                indexed = list.replace(&old_id, new_id.clone(), hasher);
            } else {
                list.remove(&old_id, hasher);
            }
            let now_empty = list.is_empty();
            drop(list);
            if let (true, Some(key)) = (now_empty, &old_key) {
                self.users.remove_if(key, |_, list| list.is_empty());
            }
        }
        // Before the cap's `destroyed` events, if any: the move made them.
        self.notifier.session_regenerated(
            (&old_id, prefix_of(&old_id)),
            (&new_id, prefix_of(&new_id)),
            user.as_deref(),
        );
        if let (false, Some(new)) = (indexed, &user) {
            // Moved to another user (a login): the user's newest session, whatever its age.
            // The cap's removals are frames of their own, after the move's.
            self.index_session(new, new_id.clone(), now_ms, max_per_user, &rec);
        }
        Ok(Some(new_id))
    }

    /// The move of [`Store::regenerate_session`], as one atomic block over the old ID's shard
    /// and `new_id`'s: no reader sees both IDs or neither, and the move's frame (the new ID's
    /// record, then [`Ending::Regenerated`] for the old one) is emitted while the block holds
    /// them, so that no write to either key, nor a SWAPDB (which needs every shard), falls
    /// between its records and its place in the stream.
    fn move_session(
        &self,
        id: &[u8],
        new_id: Bytes,
        new_user: Option<&Bytes>,
        now_ms: u64,
        rec: &Recording<'_>,
    ) -> Move {
        let mut shards = [self.shard_of_key(id), self.shard_of_key(&new_id)];
        shards.sort_unstable();
        let shards = if shards[0] == shards[1] {
            &shards[..1]
        } else {
            &shards[..]
        };
        let new_user = new_user.map(owned);
        self.map.atomic(Some(shards), || {
            let _nested = super::journal::Nested::enter(rec);
            let _group = self.feed.group();
            if self.peek(&new_id, |node| node.is_some()) {
                return Move::Taken;
            }
            // Recorded once the new ID exists, as a move (a replica announces `regenerated`,
            // not `destroyed` and `created`).
            let removed = self.take_if(id, rec, false, |node| {
                (!node.is_expired(now_ms) && node.is_session()).then_some(Removal::Deleted)
            });
            let Some((old, _)) = removed else {
                return Move::Gone;
            };
            let old_id = Bytes::copy_from_slice(old.key());
            // The old entry leaves the totals (a change, but no removal: the session lives on
            // under the new ID, which counts again when it is inserted).
            self.account(Tally::of(&old), Tally::NOTHING);
            self.changes.add(1);
            let (mut record, deadline) = match old.into_entry() {
                Entry {
                    value: Value::Session(record),
                    expires_at_ms,
                } => (record, expires_at_ms),
                // Judged a session above, under the same lock.
                _ => return Move::Gone,
            };
            if let Some(user) = new_user {
                record.user = Some(user);
            }
            let user = record.user.clone();
            let entry = Entry::new(Value::Session(record), deadline);
            // Free: seen so above, under the same lock.
            let _ = self.insert_new(&new_id, entry, now_ms, rec);
            if self.feed.on() {
                let record = Record::Ended {
                    key: old_id.clone(),
                    why: Ending::Regenerated { to: new_id.clone() },
                };
                self.feed.push(self.logical(), &record);
            }
            Move::Moved(old_id, new_id, user)
        })
    }
}

impl Store {
    /// A session applied from a feed (a replica, a log replayed) that did not exist before:
    /// `created`, as its writer announced it.
    pub(super) fn announce_created(&self, id: &[u8], user: Option<&[u8]>) {
        self.notifier
            .session_event(SessionEvent::Created, id, prefix_of(id), user);
    }

    /// A REGENERATE applied from a feed: the session `node` left for the ID `to`, whose record
    /// came before (`new_user`: its user, if the frame held it). It leaves the totals, is
    /// counted as a regeneration, and is announced `regenerated` with the new ID's user, as
    /// its writer announced it. It leaves its user's list, but for a move within one user,
    /// whose user is returned: the caller puts the new ID in its place
    /// ([`Store::index_moved`]), as the writer did.
    pub(super) fn after_applied_move(
        &self,
        node: &Node,
        to: &Bytes,
        new_user: Option<Option<Bytes>>,
    ) -> Option<Bytes> {
        self.account(Tally::of(node), Tally::NOTHING);
        self.changes.add(1);
        self.sessions
            .regenerated
            .fetch_add(1, AtomicOrdering::Relaxed);
        let old_user = node.as_session().and_then(|s| s.user.clone());
        let same_user = old_user.is_some() && new_user.as_ref() == Some(&old_user);
        if let (false, Some(user)) = (same_user, &old_user) {
            self.unindex(user, node.key());
        }
        let user = new_user.unwrap_or(old_user);
        self.notifier.session_regenerated(
            (node.key(), prefix_of(node.key())),
            (to, prefix_of(to)),
            user.as_deref(),
        );
        user.filter(|_| same_user)
    }

    /// Applied from a feed, with no shard lock held: `user`'s session `old` moved to `new`. If
    /// `still` (`new` is that user's session), `new` takes `old`'s place in the list (or is
    /// appended, `old` not being listed), once; otherwise `old` just leaves the list.
    pub(super) fn index_moved(&self, user: &Bytes, old: &[u8], new: Bytes, still: bool) {
        let key = index_key(prefix_of(&new), user);
        if let Some(mut list) = self.users.get_mut(&key) {
            let hasher = self.users.hasher();
            // Appended already, by the frame's record of the new ID (its `Indexing::Add`).
            list.remove(&new, hasher);
            if still && list.replace(old, new.clone(), hasher) {
                return;
            }
            list.remove(old, hasher);
            let now_empty = list.is_empty();
            drop(list);
            if now_empty {
                self.users.remove_if(&key, |_, list| list.is_empty());
            }
        }
        if still {
            let rec = self.journal.recording();
            self.index_session_uncapped(user, new, 0, &rec);
        }
    }
}

/// What a session's record shows but its data, whose every change bumps the version, and its
/// last access: equal before and after a use, the use is recorded as a touch (see
/// `store::feed`).
fn feed_view(session: &SessionRecord) -> (u64, u64, u64, Option<Bytes>) {
    (
        session.version,
        session.idle_ms,
        session.absolute_ms,
        session.user.clone(),
    )
}
