//! "Log out everywhere" against concurrent regenerations: SESSION.DESTROYALL must end every
//! session of the user, including one that a REGENERATE is moving to a new ID at that moment.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed case

use bytes::Bytes;
use sessiond::store::session::NewSession;
use sessiond::{Clock, Store};

#[test]
fn destroyall_ends_sessions_that_are_being_regenerated() {
    for _ in 0..20 {
        let store = Store::new(Clock::system());
        let now = store.now_ms();
        let ada = Bytes::from_static(b"ada");
        let ids: Vec<Bytes> = (0..200)
            .map(|_| {
                let new = NewSession {
                    prefix: Bytes::new(),
                    user: Some(ada.clone()),
                    idle_ms: 3_600_000,
                    absolute_ms: 7_200_000,
                    data: Vec::new(),
                };
                store.create_session(new, now, 0).unwrap()
            })
            .collect();
        let (first, second) = ids.split_at(100);
        std::thread::scope(|scope| {
            // Two threads keep moving their sessions to new IDs until none is left to move.
            for mine in [first.to_vec(), second.to_vec()] {
                let store = &store;
                scope.spawn(move || {
                    let mut mine = mine;
                    // Bounded: a session DESTROYALL missed would otherwise be moved forever.
                    for _ in 0..10_000 {
                        if mine.is_empty() {
                            break;
                        }
                        mine = mine
                            .iter()
                            .filter_map(|id| store.regenerate_session(id, None, now, 0).unwrap())
                            .collect();
                    }
                });
            }
            scope.spawn(|| {
                std::thread::yield_now();
                store.destroy_sessions_of(b"", b"ada", None, now);
            });
        });
        // The regenerating threads only stop when every one of their sessions is gone, which
        // happens only if DESTROYALL reached each, whatever ID it had at that instant.
        assert_eq!(store.len(), 0);
        assert!(store.list_sessions(b"", b"ada", now).is_empty());
        assert_eq!(store.session_users(), 0);
    }
}
