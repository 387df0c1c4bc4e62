//! Model-based property test of native sessions: random interleavings of create, set, touch,
//! regenerate, destroy, destroyall and the passing of time, run against the real `Store` and a
//! simple model; after every step the per-user index (LIST, COUNT) of every namespace (the
//! session-ID prefix of an application's ACL user) and every session's data, version, user and
//! deadline must agree with the model.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed case

use std::collections::HashMap;

use bytes::Bytes;
use proptest::prelude::*;
use sessiond::store::session::NewSession;
use sessiond::{Clock, Store};

const USERS: [&str; 3] = ["ada", "bob", "cy"];
/// Session-ID namespaces: the default user's, and an application's.
const PREFIXES: [&str; 2] = ["", "sess:app1:"];

/// The model's index key: a user in a namespace.
fn slot(ns: usize, user: usize) -> usize {
    ns * USERS.len() + user
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        ns: usize,
        user: Option<usize>,
        idle_s: u64,
        absolute_s: u64,
    },
    Set {
        session: usize,
        field: u8,
        stale_version: bool,
    },
    Touch {
        session: usize,
    },
    Regenerate {
        session: usize,
        user: Option<usize>,
    },
    Destroy {
        session: usize,
    },
    DestroyAll {
        ns: usize,
        user: usize,
        except: Option<usize>,
    },
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let user = prop::option::weighted(0.8, 0..USERS.len());
    prop_oneof![
        3 => (0..PREFIXES.len(), user.clone(), 1..60u64, 1..120u64)
            .prop_map(|(ns, user, idle_s, absolute_s)| Op::Create { ns, user, idle_s, absolute_s }),
        3 => (any::<usize>(), 0..4u8, any::<bool>())
            .prop_map(|(session, field, stale_version)| Op::Set { session, field, stale_version }),
        2 => any::<usize>().prop_map(|session| Op::Touch { session }),
        2 => (any::<usize>(), prop::option::of(0..USERS.len()))
            .prop_map(|(session, user)| Op::Regenerate { session, user }),
        1 => any::<usize>().prop_map(|session| Op::Destroy { session }),
        1 => (0..PREFIXES.len(), 0..USERS.len(), prop::option::of(any::<usize>()))
            .prop_map(|(ns, user, except)| Op::DestroyAll { ns, user, except }),
        3 => (0..40_000u64).prop_map(|ms| Op::Advance { ms }),
    ]
}

#[derive(Debug, Clone)]
struct ModelSession {
    ns: usize,
    user: Option<usize>,
    fields: HashMap<Bytes, Bytes>,
    created_ms: u64,
    last_access_ms: u64,
    idle_ms: u64,
    absolute_ms: u64,
    version: u64,
}

impl ModelSession {
    fn deadline_ms(&self) -> u64 {
        (self.last_access_ms + self.idle_ms).min(self.created_ms + self.absolute_ms)
    }
}

#[derive(Default)]
struct Model {
    /// Every ID ever issued, so operations can name dead ones too.
    issued: Vec<Bytes>,
    live: HashMap<Bytes, ModelSession>,
    /// Each user's IDs in index order (the order they became the user's), by [`slot`].
    lists: HashMap<usize, Vec<Bytes>>,
}

impl Model {
    fn pick(&self, n: usize) -> Option<Bytes> {
        (!self.issued.is_empty()).then(|| self.issued[n % self.issued.len()].clone())
    }

    fn expire(&mut self, now_ms: u64) {
        self.live.retain(|_, s| s.deadline_ms() > now_ms);
        let live = &self.live;
        for list in self.lists.values_mut() {
            list.retain(|id| live.contains_key(id));
        }
    }

    fn unlist(&mut self, slot: Option<usize>, id: &Bytes) {
        if let Some(slot) = slot {
            self.lists.entry(slot).or_default().retain(|x| x != id);
        }
    }

    /// Puts `id` in the place of `replacing` (a regeneration within the user), or last: a
    /// session joins its user's list when created with it or moved to it, whatever its age.
    /// The cap destroys the oldest others.
    fn list(&mut self, slot: usize, id: Bytes, replacing: Option<&Bytes>, cap: usize) {
        let live = &self.live;
        let list = self.lists.entry(slot).or_default();
        match replacing.and_then(|old| list.iter().position(|x| *x == *old)) {
            Some(position) => list[position] = id.clone(),
            None => list.push(id.clone()),
        }
        if cap > 0 && list.len() > cap {
            list.retain(|id| live.contains_key(id));
            let excess = list.len().saturating_sub(cap);
            let evicted: Vec<Bytes> = list.drain(..excess).collect();
            for evicted in evicted {
                assert_ne!(evicted, id, "the session being listed is never evicted");
                self.live.remove(&evicted);
            }
        }
    }
}

fn run(ops: Vec<Op>, cap: usize) -> Result<(), TestCaseError> {
    let (clock, manual) = Clock::manual(1_767_225_600_000);
    let store = Store::new(clock);
    let mut model = Model::default();
    for op in ops {
        let now = manual.now_ms();
        match op {
            Op::Create {
                ns,
                user,
                idle_s,
                absolute_s,
            } => {
                let new = NewSession {
                    prefix: Bytes::from_static(PREFIXES[ns].as_bytes()),
                    user: user.map(|u| Bytes::from_static(USERS[u].as_bytes())),
                    idle_ms: idle_s * 1000,
                    absolute_ms: absolute_s * 1000,
                    data: vec![(Bytes::from_static(b"f0"), Bytes::from_static(b"initial"))],
                };
                let id = store.create_session(new, now, cap).unwrap();
                prop_assert!(!model.issued.contains(&id), "an ID was issued twice");
                prop_assert!(id.starts_with(PREFIXES[ns].as_bytes()));
                prop_assert_eq!(id.len(), PREFIXES[ns].len() + 43);
                model.issued.push(id.clone());
                model.live.insert(
                    id.clone(),
                    ModelSession {
                        ns,
                        user,
                        fields: [(Bytes::from_static(b"f0"), Bytes::from_static(b"initial"))]
                            .into(),
                        created_ms: now,
                        last_access_ms: now,
                        idle_ms: idle_s * 1000,
                        absolute_ms: absolute_s * 1000,
                        version: 1,
                    },
                );
                if let Some(user) = user {
                    model.list(slot(ns, user), id, None, cap);
                }
            }
            Op::Set {
                session,
                field,
                stale_version,
            } => {
                let Some(id) = model.pick(session) else {
                    continue;
                };
                let field = Bytes::from(format!("f{field}"));
                let value = Bytes::from(format!("v{now}"));
                let expected = model.live.get(&id).map(|s| s.version);
                let claimed = expected.map(|v| if stale_version { v + 7 } else { v });
                let got = store
                    .update_session(&id, now, |s| {
                        if Some(s.version) != claimed {
                            return (false, None);
                        }
                        s.fields.insert(field.clone(), value.clone());
                        s.version += 1;
                        (true, Some(s.version))
                    })
                    .unwrap();
                match model.live.get_mut(&id) {
                    None => prop_assert_eq!(got, None),
                    Some(_) if stale_version => prop_assert_eq!(got, Some(None)),
                    Some(m) => {
                        m.fields.insert(field, value);
                        m.version += 1;
                        m.last_access_ms = now;
                        prop_assert_eq!(got, Some(Some(m.version)));
                    }
                }
            }
            Op::Touch { session } => {
                let Some(id) = model.pick(session) else {
                    continue;
                };
                let got = store.update_session(&id, now, |_| (true, ())).unwrap();
                match model.live.get_mut(&id) {
                    None => prop_assert_eq!(got, None),
                    Some(m) => {
                        m.last_access_ms = now;
                        prop_assert_eq!(got, Some(()));
                    }
                }
            }
            Op::Regenerate { session, user } => {
                let Some(id) = model.pick(session) else {
                    continue;
                };
                let new_user = user.map(|u| Bytes::from_static(USERS[u].as_bytes()));
                let got = store
                    .regenerate_session(&id, new_user.as_ref(), now, cap)
                    .unwrap();
                match model.live.remove(&id) {
                    None => prop_assert_eq!(got, None),
                    Some(mut m) => {
                        let new_id = got.expect("a live session regenerates");
                        prop_assert!(new_id != id);
                        prop_assert!(new_id.starts_with(PREFIXES[m.ns].as_bytes()));
                        prop_assert!(!model.issued.contains(&new_id));
                        model.issued.push(new_id.clone());
                        let old_user = m.user;
                        if user.is_some() {
                            m.user = user;
                        }
                        let same_user = old_user.is_some() && old_user == m.user;
                        let new_owner = m.user;
                        let ns = m.ns;
                        model.live.insert(new_id.clone(), m);
                        if same_user {
                            let owner = slot(ns, new_owner.unwrap_or_default());
                            model.list(owner, new_id, Some(&id), cap);
                        } else {
                            model.unlist(old_user.map(|u| slot(ns, u)), &id);
                            if let Some(owner) = new_owner {
                                model.list(slot(ns, owner), new_id, None, cap);
                            }
                        }
                    }
                }
            }
            Op::Destroy { session } => {
                let Some(id) = model.pick(session) else {
                    continue;
                };
                let destroyed = store.destroy_session(&id, now);
                let was_live = model.live.remove(&id);
                prop_assert_eq!(destroyed, was_live.is_some());
                if let Some(m) = was_live {
                    model.unlist(m.user.map(|u| slot(m.ns, u)), &id);
                }
            }
            Op::DestroyAll { ns, user, except } => {
                let except = except.and_then(|n| model.pick(n));
                let count = store.destroy_sessions_of(
                    PREFIXES[ns].as_bytes(),
                    USERS[user].as_bytes(),
                    except.as_deref(),
                    now,
                );
                let doomed: Vec<Bytes> = model
                    .live
                    .iter()
                    .filter(|(id, s)| {
                        s.ns == ns && s.user == Some(user) && Some(*id) != except.as_ref()
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                prop_assert_eq!(count, doomed.len());
                for id in doomed {
                    model.live.remove(&id);
                    model.unlist(Some(slot(ns, user)), &id);
                }
            }
            Op::Advance { ms } => {
                manual.advance(ms);
                store.reclaim_expired();
                model.expire(manual.now_ms());
                prop_assert_eq!(
                    store.len(),
                    model.live.len(),
                    "dead sessions reclaimed without reads"
                );
            }
        }
        check(&store, &mut model, manual.now_ms())?;
    }
    Ok(())
}

fn check(store: &Store, model: &mut Model, now: u64) -> Result<(), TestCaseError> {
    model.expire(now);
    for (ns, prefix) in PREFIXES.iter().enumerate() {
        for (u, name) in USERS.iter().enumerate() {
            let expected: Vec<Bytes> = model.lists.get(&slot(ns, u)).cloned().unwrap_or_default();
            let counted = store.count_sessions(prefix.as_bytes(), name.as_bytes());
            prop_assert_eq!(counted, expected.len(), "COUNT {} in {:?}", name, prefix);
            let listed = store.list_sessions(prefix.as_bytes(), name.as_bytes(), now);
            prop_assert_eq!(&listed, &expected, "LIST {} in {:?}", name, prefix);
        }
    }
    for id in &model.issued {
        let got = store.read_session(id, now, |s| s.clone()).unwrap();
        match model.live.get(id) {
            None => prop_assert!(got.is_none(), "dead session {:?} visible", id),
            Some(m) => {
                let s = got.expect("live session visible");
                prop_assert_eq!(
                    s.user.clone(),
                    m.user.map(|u| Bytes::from_static(USERS[u].as_bytes()))
                );
                prop_assert_eq!(s.version, m.version);
                prop_assert_eq!(s.deadline_ms(), m.deadline_ms());
                let fields: HashMap<Bytes, Bytes> = s.fields.into_iter().collect();
                prop_assert_eq!(&fields, &m.fields);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn sessions_match_the_model(ops in prop::collection::vec(op(), 1..80)) {
        run(ops, 0)?;
    }

    #[test]
    fn sessions_match_the_model_with_a_per_user_cap(ops in prop::collection::vec(op(), 1..80)) {
        run(ops, 2)?;
    }
}
