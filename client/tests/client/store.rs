//! The tower-sessions store through a behaviour suite: create, load, save, delete, expiry by
//! the record's expiry date (on the server's manual clock), ID collisions, and saves racing
//! deletes.
//!
//! These tests are synchronous: the server's manual clock is moved from outside any runtime,
//! and the store's futures run on a runtime of the test's own.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sessiond_client::{Client, SessiondStore};
use sessiond_tests::TestServer;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_core::SessionStore;

use crate::url;

struct Suite {
    runtime: tokio::runtime::Runtime,
    store: SessiondStore,
    server: TestServer,
}

impl Suite {
    fn new() -> Suite {
        let server = TestServer::with_manual_clock();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = runtime
            .block_on(Client::connect(&url(server.addr)))
            .unwrap();
        Suite {
            runtime,
            store: SessiondStore::new(client),
            server,
        }
    }

    fn run<T>(&self, future: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    /// A record expiring `ttl` from now on the server's clock.
    fn record(&self, ttl: Duration, data: &[(&str, serde_json::Value)]) -> Record {
        let expiry: SystemTime = UNIX_EPOCH + Duration::from_millis(self.server.now_ms()) + ttl;
        Record {
            id: Id::default(),
            data: data
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<HashMap<_, _>>(),
            expiry_date: expiry.into(),
        }
    }

    fn load(&self, id: &Id) -> Option<Record> {
        self.run(self.store.load(id)).unwrap()
    }
}

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn create_load_save_delete() {
    let suite = Suite::new();
    let mut record = suite.record(MINUTE, &[("user", "ada".into())]);
    suite.run(suite.store.create(&mut record)).unwrap();
    assert_eq!(suite.load(&record.id), Some(record.clone()));

    record
        .data
        .insert("cart".into(), serde_json::json!(["book"]));
    suite.run(suite.store.save(&record)).unwrap();
    assert_eq!(suite.load(&record.id), Some(record.clone()));

    suite.run(suite.store.delete(&record.id)).unwrap();
    assert_eq!(suite.load(&record.id), None);
    // Deleting twice, and loading what never existed, are fine.
    suite.run(suite.store.delete(&record.id)).unwrap();
    assert_eq!(suite.load(&Id::default()), None);
}

#[test]
fn expiry_follows_the_records_expiry_date() {
    let suite = Suite::new();
    let mut short = suite.record(MINUTE, &[]);
    let mut long = suite.record(10 * MINUTE, &[]);
    suite.run(suite.store.create(&mut short)).unwrap();
    suite.run(suite.store.create(&mut long)).unwrap();

    suite.server.advance(MINUTE.as_millis() as u64 - 1);
    assert!(
        suite.load(&short.id).is_some(),
        "alive until its expiry date"
    );
    suite.server.advance(1);
    assert_eq!(suite.load(&short.id), None, "gone at its expiry date");
    assert!(suite.load(&long.id).is_some());

    // Saving with a later expiry date extends it.
    long.expiry_date += 20 * MINUTE;
    suite.run(suite.store.save(&long)).unwrap();
    suite.server.advance(15 * MINUTE.as_millis() as u64);
    assert!(suite.load(&long.id).is_some());
    suite.server.advance(15 * MINUTE.as_millis() as u64);
    assert_eq!(suite.load(&long.id), None);
    // The expiry task reclaimed both without anyone reading them.
    assert_eq!(suite.server.stored_keys(), 0);

    // A record saved with an expiry date already past is not loadable.
    let mut past = suite.record(MINUTE, &[]);
    suite.run(suite.store.create(&mut past)).unwrap();
    past.expiry_date -= 2 * MINUTE;
    suite.run(suite.store.save(&past)).unwrap();
    assert_eq!(suite.load(&past.id), None);
}

#[test]
fn create_never_overwrites_an_existing_record() {
    let suite = Suite::new();
    let mut first = suite.record(MINUTE, &[("owner", "first".into())]);
    suite.run(suite.store.create(&mut first)).unwrap();

    // A second record drawn with the same ID (a collision) gets a new one.
    let mut second = suite.record(MINUTE, &[("owner", "second".into())]);
    second.id = first.id;
    suite.run(suite.store.create(&mut second)).unwrap();
    assert_ne!(
        second.id, first.id,
        "the colliding record was given a fresh ID"
    );
    assert_eq!(
        suite.load(&first.id),
        Some(first.clone()),
        "the first is untouched"
    );
    assert_eq!(suite.load(&second.id), Some(second));
}

#[test]
fn a_save_racing_a_delete_does_not_resurrect_the_session() {
    let suite = Suite::new();
    let mut record = suite.record(MINUTE, &[("user", "ada".into())]);
    suite.run(suite.store.create(&mut record)).unwrap();
    // Request 1 loaded the record; request 2 logs out; then request 1 saves.
    let loaded = suite.load(&record.id).unwrap();
    suite.run(suite.store.delete(&record.id)).unwrap();
    suite.run(suite.store.save(&loaded)).unwrap();
    assert_eq!(suite.load(&record.id), None, "logged out stays logged out");
    // Likewise after expiry: a late save does not extend an ended session.
    let mut expiring = suite.record(MINUTE, &[]);
    suite.run(suite.store.create(&mut expiring)).unwrap();
    suite.server.advance(MINUTE.as_millis() as u64);
    expiring.expiry_date += MINUTE;
    suite.run(suite.store.save(&expiring)).unwrap();
    assert_eq!(suite.load(&expiring.id), None);
}

#[test]
fn concurrent_saves_and_deletes() {
    let suite = Suite::new();
    let store = suite.store.clone();
    suite.run(async move {
        let mut records = Vec::new();
        for n in 0..50 {
            let mut record = Record {
                id: Id::default(),
                data: HashMap::from([("n".to_owned(), serde_json::json!(n))]),
                expiry_date: (UNIX_EPOCH
                    + Duration::from_millis(sessiond_tests::CLOCK_START_MS)
                    + MINUTE)
                    .into(),
            };
            store.create(&mut record).await.unwrap();
            records.push(record);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (n, record) in records.iter().cloned().enumerate() {
            let store = store.clone();
            tasks.spawn(async move {
                if n % 2 == 0 {
                    store.delete(&record.id).await.unwrap();
                } else {
                    let mut record = record;
                    record.data.insert("saved".into(), true.into());
                    store.save(&record).await.unwrap();
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        for (n, record) in records.iter().enumerate() {
            let loaded = store.load(&record.id).await.unwrap();
            if n % 2 == 0 {
                assert_eq!(loaded, None);
            } else {
                assert_eq!(loaded.unwrap().data["saved"], true);
            }
        }
    });
}

#[test]
fn records_are_stored_under_the_prefix() {
    let suite = Suite::new();
    let store = SessiondStore::with_prefix(suite.store.client().clone(), "app1:");
    let mut record = suite.record(MINUTE, &[]);
    suite.run(store.create(&mut record)).unwrap();
    let key = format!("app1:{}", record.id);
    let value = suite.run(suite.store.client().get(&key)).unwrap();
    assert!(value.is_some());
    // The default store does not see another prefix's records.
    assert_eq!(suite.load(&record.id), None);
}
