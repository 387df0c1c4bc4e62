//! Loading a snapshot does not hold every decoded record at once: the heap the load takes at
//! its peak stays close to what the loaded keyspace itself takes. Measured with a counting
//! global allocator, which is why this is a test binary of its own with a single test (another
//! test running beside it would count into the same totals).

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed case

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use sessiond::persist::{loader, writer};
use sessiond::store::{Entry, Value};
use sessiond::{Clock, Store};

/// The system allocator, counting the bytes allocated now and the most at any moment.
struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; the counters only observe sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on to `System` as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `alloc` above with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The manual clock's start: 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;

#[test]
fn loading_takes_about_the_heap_of_the_loaded_keyspace_not_one_and_a_half_times_it() {
    let dir = std::env::temp_dir().join(format!("sessiond-snapshot-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dump.sdb");
    {
        let (clock, _manual) = Clock::manual(T0);
        let store = Store::new(clock);
        // Session-shaped strings: a short key and a value of 150 bytes.
        for i in 0..50_000u32 {
            let key = format!("sess:{i:08}");
            let value = Bytes::from(vec![b'v'; 150]);
            store.upsert(key.as_bytes(), T0, |_| {
                (Some(Entry::new(Value::Str(value), 0)), ())
            });
        }
        writer::write_snapshot(&store, &path, &writer::WriteOptions::default()).unwrap();
    }

    let (clock, _manual) = Clock::manual(T0);
    let store = Store::new(clock);
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let summary = loader::load(&path, &store).unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let kept = CURRENT.load(Ordering::Relaxed) - before;
    let _ = std::fs::remove_dir_all(&dir);

    println!("load: heap peak {peak} bytes, keyspace {kept} bytes");
    assert_eq!((summary.records, store.len()), (50_000, 50_000));
    // The load's buffers (1 MiB of reader, one frame, one record) and the map's growth come on
    // top of the keyspace; holding every decoded record took 1.5 times it.
    assert!(
        peak < kept + kept / 5,
        "the load's heap peaked at {peak} bytes for a keyspace of {kept}"
    );
}
