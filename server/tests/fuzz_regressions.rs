//! Regression tests for what the fuzz targets in `fuzz/` found, one test per crash, each reduced
//! to a readable input and naming the target that found it.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed case

use std::path::PathBuf;

use bytes::Bytes;
use sessiond::persist::format::{Record, FORMAT_VERSION, MAGIC};
use sessiond::persist::loader;
use sessiond::{Clock, Store};

const NOW_MS: u64 = 1_767_225_600_000;

/// A file in the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "sessiond-fuzz-regression-{}-{name}.sdb",
            std::process::id()
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn header() -> Vec<u8> {
    let mut file = MAGIC.to_vec();
    file.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    file.extend_from_slice(&0u16.to_le_bytes());
    file.extend_from_slice(&NOW_MS.to_le_bytes());
    file
}

/// A snapshot made of `frames` (raw record bytes) with a correct header, end marker, record
/// count and CRC: everything the verification of the framing looks at is right.
fn snapshot(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut file = header();
    for frame in frames {
        file.extend_from_slice(&u32::try_from(frame.len()).unwrap().to_le_bytes());
        file.extend_from_slice(frame);
    }
    file.extend_from_slice(&0u32.to_le_bytes());
    file.extend_from_slice(&(frames.len() as u64).to_le_bytes());
    let crc = crc32fast::hash(&file);
    file.extend_from_slice(&crc.to_le_bytes());
    file
}

/// Found by `snapshot_loader`: the verification pass checked the framing and the checksum but
/// not that each record decodes, so a file whose first record was good and whose second did not
/// decode loaded the first into the store and then failed — a rejected snapshot applied in part.
#[test]
fn a_record_that_does_not_decode_after_good_ones_loads_nothing() {
    let good = postcard::to_allocvec(&Record::String {
        key: Bytes::from_static(b"plain"),
        value: Bytes::from_static(b"value"),
        expires_at_ms: 0,
    })
    .unwrap();
    // 0x7f is no variant of `Record`.
    let bad = vec![0x7f, 0x01, b'k'];
    let file = TempFile::new("corrupt-second-record", &snapshot(&[good.clone(), bad]));

    let store = Store::new(Clock::manual(NOW_MS).0);
    let error = loader::load(&file.0, &store).unwrap_err();
    assert!(error.problem.starts_with("corrupt record"), "{error}");
    let second_record = 20 + 4 + good.len() as u64 + 4;
    assert_eq!(error.offset, second_record, "{error}");
    assert!(
        store.is_empty(),
        "a rejected snapshot left {} keys",
        store.len()
    );
    assert_eq!(
        loader::check(&file.0, NOW_MS).unwrap_err().to_string(),
        error.to_string(),
        "check-snapshot rejects it the same way"
    );
}
