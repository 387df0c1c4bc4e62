//! Regression tests for what the fuzz targets in `fuzz/` found, one test per crash, each reduced
//! to a readable input and naming the target that found it.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed case

use std::path::PathBuf;

use bytes::Bytes;
use sessiond::persist::format::{MAGIC, MAX_FRAME};
use sessiond::persist::loader;
use sessiond::store::Record;
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
    file.extend_from_slice(&1u16.to_le_bytes());
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

/// The process's peak resident memory, in KiB (Linux's `VmHWM`).
#[cfg(target_os = "linux")]
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Found by `snapshot_loader` (an out-of-memory report under `-rss_limit_mb=512`): a record
/// length is trusted up to `MAX_FRAME` (1 GiB), and the loader grew its buffer to that length
/// before reading, so a 40-byte file claiming a 1 GiB record made it allocate and zero 1 GiB only
/// to report a truncated file. The length is now checked against the file's size first.
#[cfg(target_os = "linux")]
#[test]
fn a_huge_record_length_in_a_small_file_is_refused_without_allocating_it() {
    let mut file = header();
    file.extend_from_slice(&MAX_FRAME.to_le_bytes());
    file.extend_from_slice(b"a few bytes, not a GiB");
    let file = TempFile::new("huge-length", &file);
    let before_kib = peak_rss_kib();

    let store = Store::new(Clock::manual(NOW_MS).0);
    let error = loader::load(&file.0, &store).unwrap_err();
    assert_eq!(error.offset, 20, "{error}");
    assert_eq!(
        error.problem,
        format!("a record of {MAX_FRAME} bytes runs past the end (truncated or corrupt file)")
    );
    assert!(store.is_empty());
    loader::check(&file.0, NOW_MS).unwrap_err();

    let grown_mib = peak_rss_kib().saturating_sub(before_kib) / 1024;
    assert!(
        grown_mib < 256,
        "loading a {}-byte file raised peak memory by {grown_mib} MiB",
        file.0.metadata().unwrap().len()
    );
}

/// Runs `commands` in order on one in-process connection, as `cmd::execute` runs them for a
/// client, and returns each one's reply.
fn replies(commands: &[&[&str]]) -> Vec<sessiond_protocol::Frame> {
    use sessiond::clock::BatchClock;
    use sessiond::cmd::{self, ConnState};
    use sessiond::stats::LocalStats;
    use sessiond::{Config, Shared};
    use sessiond_protocol::{Frame, FrameDecoder, ProtocolVersion};

    let config = Config {
        clock: Clock::manual(NOW_MS).0,
        ..Config::default()
    };
    let shared = std::sync::Arc::new(Shared::unbound(config));
    let addr = shared.local_addr;
    let client = shared.clients.register(addr, addr);
    let mut conn = ConnState::new(client, shared.auth.initial_user());
    let mut stats = LocalStats::default();
    let mut clock = BatchClock::default();
    let mut decoder = FrameDecoder::default();
    let mut out = bytes::BytesMut::new();
    let mut replies = Vec::new();
    for args in commands {
        let args = args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes()));
        let reply = cmd::execute(
            &shared,
            &mut conn,
            &mut stats,
            args.collect(),
            &mut clock,
            &mut out,
        );
        if let Some(frame) = reply.frame {
            frame.encode(ProtocolVersion::Resp2, &mut out);
        }
        let frame: Frame = decoder.decode(&mut out).unwrap().unwrap();
        assert!(out.is_empty(), "one reply per command");
        replies.push(frame);
    }
    replies
}

/// Found by `command_sequence`: inside MULTI, the arity error of a command that runs at once
/// (EXEC, DISCARD, MULTI, WATCH) neither flagged the transaction nor, for EXEC, ended it, so
/// `EXEC extra` left the client in MULTI and the next EXEC ran the queue. Redis flags the
/// transaction on any arity error, and discards it at an EXEC of the wrong arity.
#[test]
fn an_exec_of_the_wrong_arity_discards_the_transaction() {
    use sessiond_protocol::Frame;

    let got = replies(&[
        &["MULTI"],
        &["SET", "a", "1"],
        &["EXEC", "extra"],
        &["EXEC"],
        &["EXISTS", "a"],
    ]);
    assert_eq!(
        got[2],
        Frame::error(
            "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' \
             command"
        )
    );
    assert_eq!(got[3], Frame::error("ERR EXEC without MULTI"));
    assert_eq!(got[4], Frame::Integer(0), "nothing ran");
    // Outside MULTI too, as Redis.
    assert_eq!(replies(&[&["EXEC", "extra"]])[0], got[2]);

    for wrong in [&["WATCH"][..], &["DISCARD", "x"], &["MULTI", "x"]] {
        let got = replies(&[
            &["MULTI"],
            &["SET", "a", "1"],
            wrong,
            &["EXEC"],
            &["EXISTS", "a"],
        ]);
        assert_eq!(
            got[3],
            Frame::error("EXECABORT Transaction discarded because of previous errors."),
            "{wrong:?}"
        );
        assert_eq!(got[4], Frame::Integer(0), "{wrong:?}: nothing ran");
    }
}
