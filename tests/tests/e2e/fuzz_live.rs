//! Random bytes to a live server: a bounded property test that sends random byte strings and
//! random mutations of valid pipelines to the real server (in-process, port 0), each on a fresh
//! connection, and checks after every case that whatever the server answered is well-formed
//! RESP, that it still answers PING on a new connection, and that a key written before the first
//! case is intact. The pipeline includes transactions (WATCH, MULTI, queued commands, a
//! refused one, EXEC, DISCARD), so mutations reach the queuing and EXEC paths too. The coverage-guided version of this is `fuzz/` (cargo-fuzz, run by hand);
//! this one runs in the normal suite, in seconds.

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::sample::Index;
use sessiond_protocol::{ClientCodec, Frame};
use sessiond_tests::{RawClient, TestServer};

/// Cases per run: enough to hit every decoder path many times, few enough to stay fast.
const CASES: u32 = 64;

const SENTINEL_KEY: &[u8] = b"fuzz-live:sentinel";
const SENTINEL_VALUE: &[u8] = b"written before the fuzzing, read after every case";

/// A pipeline of valid commands whose keys cannot be the sentinel's (they are under `fz:`):
/// reaching it would take a mutation to rewrite a whole key name.
fn valid_pipeline() -> Vec<u8> {
    let commands: &[&[&str]] = &[
        &["PING"],
        &["SET", "fz:a", "value", "EX", "100"],
        &["GET", "fz:a"],
        &["MSET", "fz:b", "1", "fz:c", "2"],
        &["INCRBY", "fz:b", "5"],
        &["HSET", "fz:h", "field", "value"],
        &["HGETALL", "fz:h"],
        &["SADD", "fz:s", "a", "b", "c"],
        &["SRANDMEMBER", "fz:s", "-5"],
        &["SSCAN", "fz:s", "0", "COUNT", "2"],
        &["SUNIONSTORE", "fz:u", "fz:s", "fz:h"],
        &["SPOP", "fz:s", "2"],
        &["EXPIRE", "fz:c", "100", "GT"],
        &["SCAN", "0", "MATCH", "fz:*", "COUNT", "10"],
        &["SESSION.CREATE", "USER", "fz-user", "DATA", "cart", "[]"],
        &["SESSION.LIST", "fz-user"],
        &["WATCH", "fz:a", "fz:b"],
        &["MULTI"],
        &["SET", "fz:a", "in-multi"],
        &["INCR", "fz:b"],
        &["SESSION.LIST", "fz-user"],
        &["EXEC"],
        &["MULTI"],
        &["GET", "fz:a"],
        &["DISCARD"],
        &["UNWATCH"],
        &["HELLO", "3"],
        &["TTL", "fz:a"],
    ];
    let mut out = BytesMut::new();
    for args in commands {
        ClientCodec::encode_command(args, &mut out);
    }
    let mut bytes = out.to_vec();
    bytes.extend_from_slice(b"PING inline\r\nECHO \"quoted \\x41\"\r\n");
    bytes
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
    Duplicate(Index, Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<Index>().prop_map(Mutation::Remove),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Duplicate(a, b)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        let len = bytes.len();
        match m {
            Mutation::Flip(at, mask) => bytes[at.index(len)] ^= mask,
            Mutation::Insert(at, byte) => bytes.insert(at.index(len + 1), *byte),
            Mutation::Remove(at) => {
                bytes.remove(at.index(len));
            }
            Mutation::Truncate(at) => bytes.truncate(at.index(len)),
            Mutation::Duplicate(a, b) => {
                let (start, end) = (
                    a.index(len).min(b.index(len)),
                    a.index(len).max(b.index(len)),
                );
                let copy = bytes[start..end].to_vec();
                bytes.splice(end..end, copy);
            }
        }
    }
    bytes
}

/// Random bytes, RESP-looking random bytes, and valid pipelines with a few random edits.
fn hostile_input() -> impl Strategy<Value = Vec<u8>> {
    let resp_token = prop_oneof![
        Just(b"*".to_vec()),
        Just(b"$".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"3".to_vec()),
        Just(b"99999999999".to_vec()),
        Just(b"\"".to_vec()),
        Just(b" ".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        // Half of these start as a multibulk, the rest as an inline command.
        (any::<bool>(), proptest::collection::vec(resp_token, 0..64)).prop_map(|(multibulk, t)| {
            let mut bytes = if multibulk { b"*".to_vec() } else { Vec::new() };
            bytes.extend(t.concat());
            bytes
        }),
        proptest::collection::vec(mutation(), 1..8).prop_map(|m| apply(valid_pipeline(), &m)),
    ]
}

#[test]
fn random_bytes_leave_the_server_serving_and_the_data_intact() {
    let server = TestServer::start();
    let mut setup = server.raw();
    setup.command(&[b"SET", SENTINEL_KEY, SENTINEL_VALUE]);
    assert_eq!(setup.reply(), Frame::ok());
    drop(setup);

    let config = ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    };
    proptest!(config, |(input in hostile_input())| {
        server.send_and_drain(&input);
        let mut fresh = RawClient::connect(server.addr);
        fresh.command(&[b"PING"]);
        prop_assert_eq!(fresh.reply(), Frame::simple("PONG"));
        fresh.command(&[b"GET", SENTINEL_KEY]);
        prop_assert_eq!(fresh.reply(), Frame::bulk(SENTINEL_VALUE));
    });
}
