//! The snapshot loader on arbitrary file bytes: `loader::check` and `loader::load` into a fresh
//! `Store` must return `Ok` or `Err` and never panic; they must agree; and on `Err` the store
//! must be empty (a bad file is never applied, even in part).
//!
//! Input: one mode byte, then the file. With bit 0 of the mode set, the harness repairs the
//! framing first: it keeps the header and the frames that fit, then writes a correct end marker,
//! record count and CRC-32, so that the fuzzer reaches record decoding and the store instead of
//! stopping at the checksum every time.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sessiond::persist::loader;
use sessiond::{Clock, Store};

/// The loader's "now": fixed, so that which records count as expired is reproducible.
const NOW_MS: u64 = 1_767_225_600_000;
const HEADER_LEN: usize = 20;

/// One file per fuzzing process, overwritten by every input.
fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("sessiond-fuzz-{}.sdb", std::process::id()))
    })
}

/// The header and the whole frames of `file`, then a valid end marker and trailer.
fn repair(file: &[u8]) -> Vec<u8> {
    let mut out = file[..file.len().min(HEADER_LEN)].to_vec();
    let mut rest = file.get(HEADER_LEN..).unwrap_or_default();
    let mut records = 0u64;
    while let Some((len, after)) = rest.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*len) as usize;
        if len == 0 || len > after.len() {
            break;
        }
        out.extend_from_slice(&rest[..4 + len]);
        rest = &after[len..];
        records += 1;
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&records.to_le_bytes());
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// CRC-32 (IEEE), bit by bit: the harness must not share the code it checks.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, file)) = data.split_first() else {
        return;
    };
    let file = if mode & 1 == 1 {
        repair(file)
    } else {
        file.to_vec()
    };
    let path = path();
    std::fs::write(path, &file).expect("write the temp snapshot");

    let checked = loader::check(path, NOW_MS);
    let (clock, _manual) = Clock::manual(NOW_MS);
    let store = Store::new(clock);
    match loader::load(path, &store) {
        Ok(summary) => {
            let checked = checked.expect("load accepted a file check-snapshot rejects");
            assert_eq!(
                summary, checked,
                "load and check-snapshot count differently"
            );
            assert!(
                store.len() as u64 <= summary.records,
                "more keys than records"
            );
        }
        Err(error) => {
            let _ = error.to_string();
            assert!(
                checked.is_err(),
                "check-snapshot accepted a file load rejects: {error}"
            );
            assert!(
                store.is_empty(),
                "a rejected snapshot left {} keys",
                store.len()
            );
        }
    }
});
