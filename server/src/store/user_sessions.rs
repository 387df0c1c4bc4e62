//! One user's entry in the per-user session index: the IDs in the order they became the user's,
//! with add, remove, replace and count in O(1) amortized.
//!
//! The IDs sit in an append-only list of slots; a removal leaves a tombstone (`None`) that a
//! table from ID to slot finds without a scan, and the list is compacted once tombstones are
//! more than half of it, which costs at most two slot moves per removal since the last
//! compaction. Most users have a handful of sessions: up to [`LINEAR`] slots, the list is
//! searched directly and no table is allocated.

use std::hash::BuildHasher;

use bytes::Bytes;
use hashbrown::HashTable;

/// Up to this many slots, an ID is found by walking the list: no table for small users.
const LINEAR: usize = 8;

/// A user's session IDs, oldest first (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct UserSessions {
    /// IDs in the order they joined the user; `None` where one has left.
    slots: Vec<Option<Bytes>>,
    /// Every slot before this one is a tombstone.
    head: usize,
    /// ID → its slot, kept while there are more than [`LINEAR`] slots.
    by_id: HashTable<usize>,
    /// The IDs held (slots that are not tombstones).
    live: usize,
}

impl UserSessions {
    /// The IDs held.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Whether no ID is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The IDs, oldest first.
    pub(crate) fn ids(&self) -> impl Iterator<Item = &Bytes> {
        let rest = self.slots.get(self.head..).unwrap_or_default();
        visit(rest.len());
        rest.iter().flatten()
    }

    /// Appends `id`, the user's newest.
    pub(crate) fn push(&mut self, id: Bytes, hasher: &impl BuildHasher) {
        let slot = self.slots.len();
        let hash = hasher.hash_one(&id[..]);
        self.slots.push(Some(id));
        self.live += 1;
        if self.slots.len() == LINEAR + 1 {
            self.rebuild_table(hasher);
        } else if self.slots.len() > LINEAR + 1 {
            visit(1);
            let slots = &self.slots;
            self.by_id
                .insert_unique(hash, slot, |&i| hash_of(slots, i, hasher));
        }
    }

    /// Removes `id`; false if it was not held.
    pub(crate) fn remove(&mut self, id: &[u8], hasher: &impl BuildHasher) -> bool {
        let Some(slot) = self.take_slot(id, hasher) else {
            return false;
        };
        if let Some(entry) = self.slots.get_mut(slot) {
            *entry = None;
        }
        self.after_removal(hasher);
        true
    }

    /// Puts `new` in the place of `old` (a regenerated ID keeps its session's place); false if
    /// `old` was not held.
    pub(crate) fn replace(&mut self, old: &[u8], new: Bytes, hasher: &impl BuildHasher) -> bool {
        let Some(slot) = self.take_slot(old, hasher) else {
            return false;
        };
        let hash = hasher.hash_one(&new[..]);
        if let Some(entry) = self.slots.get_mut(slot) {
            *entry = Some(new);
        }
        if self.slots.len() > LINEAR {
            let slots = &self.slots;
            self.by_id
                .insert_unique(hash, slot, |&i| hash_of(slots, i, hasher));
        }
        true
    }

    /// Removes and returns the oldest ID.
    pub(crate) fn pop_oldest(&mut self, hasher: &impl BuildHasher) -> Option<Bytes> {
        let id = self.slots.get_mut(self.head)?.take()?;
        if self.slots.len() > LINEAR {
            let hash = hasher.hash_one(&id[..]);
            let head = self.head;
            if let Ok(entry) = self.by_id.find_entry(hash, |&i| i == head) {
                entry.remove();
            }
        }
        self.after_removal(hasher);
        Some(id)
    }

    /// Finds `id`, takes it out of the table and returns its slot, which still holds it.
    fn take_slot(&mut self, id: &[u8], hasher: &impl BuildHasher) -> Option<usize> {
        let is_id = |slot: &Option<Bytes>| slot.as_deref() == Some(id);
        if self.slots.len() <= LINEAR {
            let rest = self.slots.get(self.head..)?;
            let found = rest.iter().position(is_id);
            visit(found.map_or(rest.len(), |i| i + 1));
            return found.map(|i| self.head + i);
        }
        visit(1);
        let slots = &self.slots;
        let entry = self
            .by_id
            .find_entry(hasher.hash_one(id), |&i| slots.get(i).is_some_and(is_id))
            .ok()?;
        Some(entry.remove().0)
    }

    /// Counts a removal: moves the head past the tombstones it now faces, and compacts once
    /// tombstones are more than half the slots.
    fn after_removal(&mut self, hasher: &impl BuildHasher) {
        self.live -= 1;
        while self.slots.get(self.head).is_some_and(Option::is_none) {
            visit(1);
            self.head += 1;
        }
        if self.live == 0 {
            *self = UserSessions::default();
        } else if self.slots.len() - self.live > self.live {
            visit(self.slots.len());
            self.slots.retain(Option::is_some);
            self.head = 0;
            self.rebuild_table(hasher);
        }
    }

    /// Indexes every slot anew (or drops the table when the list is short enough to walk).
    fn rebuild_table(&mut self, hasher: &impl BuildHasher) {
        self.by_id.clear();
        if self.slots.len() <= LINEAR {
            self.by_id.shrink_to_fit(|_| 0);
            return;
        }
        visit(self.slots.len());
        let slots = &self.slots;
        for (slot, id) in slots.iter().enumerate() {
            if let Some(id) = id {
                self.by_id
                    .insert_unique(hasher.hash_one(&id[..]), slot, |&i| {
                        hash_of(slots, i, hasher)
                    });
            }
        }
    }
}

/// The hash of the ID in `slots[slot]` (for the table's rehashing; its slots hold IDs).
fn hash_of(slots: &[Option<Bytes>], slot: usize, hasher: &impl BuildHasher) -> u64 {
    slots
        .get(slot)
        .and_then(Option::as_deref)
        .map_or(0, |id| hasher.hash_one(id))
}

#[cfg(test)]
thread_local! {
    /// Slots and table entries visited by this thread: tests bound the index's work with it.
    pub(crate) static VISITED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts `n` slots or table entries visited (in tests; nothing otherwise).
#[inline]
fn visit(n: usize) {
    #[cfg(test)]
    VISITED.with(|visited| visited.set(visited.get() + n as u64));
    #[cfg(not(test))]
    let _ = n;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> Bytes {
        Bytes::from(format!("id{n}"))
    }

    fn ids(user: &UserSessions) -> Vec<Bytes> {
        user.ids().cloned().collect()
    }

    #[test]
    fn ids_keep_their_order_through_removals_replacements_and_compactions() {
        let hasher = ahash::RandomState::new();
        let mut user = UserSessions::default();
        let mut model: Vec<Bytes> = Vec::new();
        for n in 0..100 {
            user.push(id(n), &hasher);
            model.push(id(n));
        }
        // Remove most, from both ends and the middle, checking as the list compacts.
        for n in (0..100).filter(|n| n % 3 != 0) {
            assert!(user.remove(&id(n), &hasher));
            assert!(!user.remove(&id(n), &hasher), "removed once");
            model.retain(|x| *x != id(n));
            assert_eq!(ids(&user), model);
            assert_eq!(user.len(), model.len());
        }
        assert!(user.replace(&id(30), id(1030), &hasher));
        assert!(!user.replace(&id(30), id(2030), &hasher));
        let place = model.iter().position(|x| *x == id(30)).unwrap();
        model[place] = id(1030);
        assert_eq!(ids(&user), model);
        assert_eq!(user.pop_oldest(&hasher), Some(id(0)));
        model.remove(0);
        while let Some(oldest) = user.pop_oldest(&hasher) {
            assert_eq!(oldest, model.remove(0));
            assert!(!user.remove(&oldest, &hasher));
        }
        assert!(model.is_empty() && user.is_empty());
        assert_eq!(user.slots.len(), 0, "an emptied user holds no slots");
    }

    #[test]
    fn small_users_have_no_table() {
        let hasher = ahash::RandomState::new();
        let mut user = UserSessions::default();
        for n in 0..LINEAR {
            user.push(id(n), &hasher);
        }
        assert_eq!(user.by_id.len(), 0);
        user.push(id(LINEAR), &hasher);
        assert_eq!(user.by_id.len(), LINEAR + 1);
        for n in 0..LINEAR {
            user.remove(&id(n), &hasher);
        }
        assert_eq!((user.len(), user.slots.len()), (1, 1), "compacted");
        assert_eq!(user.by_id.len(), 0);
        assert!(user.remove(&id(LINEAR), &hasher));
    }
}
