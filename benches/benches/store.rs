//! Micro-benchmarks of the store's hot operations on session-shaped keys (`sess:` and 32 hex
//! digits, 160-byte values, a deadline): `Store::read` (GET), `Store::upsert` (SET over an
//! existing key, and of a new one), `create_session`, `update_session` (SESSION.SET) and
//! `read_session`.
//!
//! `cargo bench -p sessiond-bench --bench store`; `cargo test` never runs these.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use sessiond::store::session::NewSession;
use sessiond::store::{owned, Entry, Value, ValueRef};
use sessiond::{Clock, Store};

/// Keys in the store while measuring.
const KEYS: u64 = 100_000;
/// An hour from now: keys stay alive while measuring.
const TTL_MS: u64 = 3_600_000;

fn key(i: u64) -> Bytes {
    Bytes::from(format!(
        "sess:{:032x}",
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    ))
}

fn value() -> Bytes {
    Bytes::from(vec![b'v'; 160])
}

/// What `SET key value EX 3600` does to the store.
fn set(store: &Store, key: &Bytes, value: &Bytes, now_ms: u64) {
    store.upsert(key, now_ms, |_| {
        (
            Some(Entry::new(Value::Str(value.clone()), now_ms + TTL_MS)),
            (),
        )
    });
}

fn filled_store() -> (Store, Vec<Bytes>) {
    let store = Store::new(Clock::system());
    let now_ms = store.now_ms();
    let keys: Vec<Bytes> = (0..KEYS).map(key).collect();
    let value = value();
    for key in &keys {
        set(&store, key, &value, now_ms);
    }
    (store, keys)
}

fn strings(c: &mut Criterion) {
    let (store, keys) = filled_store();
    let value = value();
    let mut group = c.benchmark_group("store");
    let mut i = 0usize;
    group.bench_function("read_hit", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            let now_ms = store.now_ms();
            store.read(&keys[i], now_ms, |entry| {
                black_box(entry.map(|e| matches!(e.value(), ValueRef::Str(_))))
            })
        });
    });
    group.bench_function("read_miss", |b| {
        let missing = key(KEYS + 1);
        b.iter(|| {
            let now_ms = store.now_ms();
            store.read(&missing, now_ms, |entry| black_box(entry.is_none()))
        });
    });
    group.bench_function("upsert_overwrite", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            set(&store, &keys[i], &value, store.now_ms());
        });
    });
    // New keys, timed; the store is emptied between samples, untimed, so it does not grow
    // without bound while criterion repeats the measurement.
    group.bench_function("upsert_new", |b| {
        let fresh = Store::new(Clock::system());
        let mut n = 0u64;
        b.iter_custom(|iters| {
            fresh.flush();
            let start = Instant::now();
            for _ in 0..iters {
                n += 1;
                set(&fresh, &key(KEYS + n), &value, fresh.now_ms());
            }
            start.elapsed()
        });
    });
    group.finish();
}

fn new_session(user: Option<Bytes>) -> NewSession {
    NewSession {
        prefix: Bytes::new(),
        user,
        idle_ms: 30 * 60 * 1000,
        absolute_ms: 8 * 3600 * 1000,
        data: vec![(Bytes::from_static(b"data"), value())],
    }
}

fn sessions(c: &mut Criterion) {
    let store = Store::new(Clock::system());
    let now_ms = store.now_ms();
    let ids: Vec<Bytes> = (0..KEYS)
        .map(|i| {
            let user = Bytes::from(format!("user:{}", i % 10_000));
            store
                .create_session(new_session(Some(user)), now_ms, 0)
                .expect("session id")
        })
        .collect();
    let field = Bytes::from_static(b"data");
    let value = value();
    let mut group = c.benchmark_group("sessions");
    let mut i = 0usize;
    group.bench_function("read_session", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            let outcome = store.read_session(&ids[i], store.now_ms(), |s| s.version);
            black_box(outcome.expect("a session"))
        });
    });
    // SESSION.SET id data <160 bytes>: refreshes the idle timer, bumps the version.
    group.bench_function("update_session_set_field", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            let (field, value) = (owned(&field), owned(&value));
            let outcome = store.update_session(&ids[i], store.now_ms(), |session| {
                session.fields.insert(field, value);
                session.version += 1;
                (true, session.version)
            });
            black_box(outcome.expect("a session"))
        });
    });
    // SESSION.CREATE with a user and one field (an ID from the OS's CSPRNG each time); the
    // store is emptied between samples, untimed.
    group.bench_function("create_session", |b| {
        let fresh = Store::new(Clock::system());
        let mut n = 0u64;
        b.iter_custom(|iters| {
            fresh.flush();
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let new = new_session(Some(Bytes::from(format!("user:{}", n % 10_000))));
                let start = Instant::now();
                let id = fresh.create_session(new, fresh.now_ms(), 0);
                elapsed += start.elapsed();
                black_box(id.expect("session id"));
            }
            elapsed
        });
    });
    group.finish();
}

criterion_group!(benches, strings, sessions);
criterion_main!(benches);
