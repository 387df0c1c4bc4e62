//! Writes the seed corpus of every fuzz target into `fuzz/corpus/<target>/seed-*`.
//!
//! The seeds are small real inputs made with the project's own encoders and snapshot writer
//! rather than by hand, so they stay valid as the formats change: rerun this after changing the
//! wire protocol, the command table or the snapshot format.
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use sessiond::persist::writer;
use sessiond::store::Record;
use sessiond::{Clock, Store};
use sessiond_protocol::{cmd::COMMANDS, ClientCodec, Frame, ProtocolVersion};

/// The snapshot_loader target's fixed "now"; the seed snapshot's deadlines are after it.
const NOW_MS: u64 = 1_767_225_600_000;

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).expect("create the corpus directory");
    for entry in fs::read_dir(&dir)
        .expect("read the corpus directory")
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with("seed-") {
            fs::remove_file(entry.path()).expect("remove an old seed");
        }
    }
    dir
}

/// Writes `bytes` as `seed-<name>`, with any character that is awkward in a file name replaced.
fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let name: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' => c,
            _ => '_',
        })
        .collect();
    fs::write(dir.join(format!("seed-{name}")), bytes).expect("write a seed");
}

fn commands(commands: &[&[&str]]) -> BytesMut {
    let mut out = BytesMut::new();
    for args in commands {
        ClientCodec::encode_command(args, &mut out);
    }
    out
}

/// A split point prefix (little-endian u16) followed by `stream`, for the decoder targets.
fn split_at(at: u16, stream: &[u8]) -> Vec<u8> {
    let mut input = at.to_le_bytes().to_vec();
    input.extend_from_slice(stream);
    input
}

fn request_seeds() {
    let dir = corpus("request_decoder");
    let pipeline = commands(&[
        &["SET", "sess:1", "{\"user\":\"ada\"}", "EX", "1800"],
        &["GET", "sess:1"],
        &["MGET", "sess:1", "sess:2"],
        &["PING"],
    ]);
    write(&dir, "pipeline", &split_at(0, &pipeline));
    write(&dir, "pipeline-split", &split_at(23, &pipeline));
    let session = commands(&[
        &["HELLO", "3"],
        &["SESSION.CREATE", "USER", "ada", "DATA", "cart", "[]"],
        &["SESSION.SET", "id", "IFVERSION", "1", "cart", "[\"book\"]"],
    ]);
    write(&dir, "session", &split_at(9, &session));
    write(
        &dir,
        "inline",
        &split_at(6, b"PING\r\nSET k \"a b\\x41\"\r\nGET 'k'\n\r\n"),
    );
    // Empty and null multibulks are skipped, as Redis skips them.
    let mut skipped = b"*0\r\n*-1\r\n".to_vec();
    skipped.extend_from_slice(&commands(&[&["PING"]]));
    write(&dir, "skipped", &split_at(3, &skipped));
}

fn frame_seeds() {
    let dir = corpus("frame_decoder");
    let replies = [
        Frame::ok(),
        Frame::error("WRONGTYPE Operation against a key holding the wrong kind of value"),
        Frame::Integer(-42),
        Frame::bulk("hello"),
        Frame::Null,
        Frame::NullArray,
        Frame::Map(vec![
            (Frame::bulk("user"), Frame::bulk("ada")),
            (Frame::bulk("version"), Frame::Integer(1)),
        ]),
        Frame::Set(vec![Frame::bulk("a"), Frame::Boolean(true)]),
        Frame::Double(1.5),
        Frame::Double(f64::NEG_INFINITY),
        Frame::BigNumber(Bytes::from_static(
            b"-3492890328409238509324850943850943825024385",
        )),
        Frame::Verbatim {
            format: *b"txt",
            data: Bytes::from_static(b"# Server\r\nredis_version:7.0.0\r\n"),
        },
        Frame::Push(vec![
            Frame::bulk("message"),
            Frame::Array(vec![Frame::Null]),
        ]),
    ];
    for (version, name) in [
        (ProtocolVersion::Resp3, "resp3"),
        (ProtocolVersion::Resp2, "resp2"),
    ] {
        let mut all = BytesMut::new();
        for reply in &replies {
            reply.encode(version, &mut all);
        }
        write(&dir, &format!("{name}-replies"), &split_at(0, &all));
        write(&dir, &format!("{name}-replies-split"), &split_at(17, &all));
    }
    // Frame has no attribute variant: a reply annotated with one, as RESP3 allows.
    let mut attributed = b"|1\r\n+ttl\r\n:3\r\n".to_vec();
    attributed.extend_from_slice(&Frame::Integer(42).to_bytes(ProtocolVersion::Resp3));
    write(&dir, "attribute", &split_at(0, &attributed));
}

fn command_seeds() {
    let dir = corpus("command_parse");
    // Every command in the table with as many placeholder arguments as its arity asks for.
    for spec in COMMANDS {
        let extra = spec.arity.unsigned_abs().saturating_sub(1) as usize;
        let args: Vec<&[u8]> = std::iter::once(spec.name.as_bytes())
            .chain(std::iter::repeat_n(&b"1"[..], extra))
            .collect();
        write(&dir, &format!("table-{}", spec.name), &args.join(&0u8));
    }
    // Options, which placeholders do not reach.
    let full: &[&[&str]] = &[
        &["SET", "k", "v", "NX", "GET", "PX", "100"],
        &["SET", "k", "v", "XX", "KEEPTTL"],
        &["GETEX", "k", "PERSIST"],
        &["EXPIRE", "k", "10", "GT"],
        &[
            "SCAN", "0", "MATCH", "sess:*", "COUNT", "10", "TYPE", "session",
        ],
        &[
            "SESSION.CREATE",
            "USER",
            "ada",
            "IDLE",
            "1000",
            "ABSOLUTE",
            "5000",
            "DATA",
            "f",
            "v",
        ],
        &["SSCAN", "k", "0", "MATCH", "m*", "COUNT", "10"],
        &["SPOP", "k", "3"],
        &["SRANDMEMBER", "k", "-5"],
        &["SINTERSTORE", "d", "a", "b"],
        &["SESSION.SET", "id", "IFVERSION", "1", "f", "v"],
        &["SESSION.DESTROYALL", "ada", "EXCEPT", "id"],
        &["CLIENT", "SETNAME", "web-1"],
        &["HELLO", "3", "AUTH", "default", "pw", "SETNAME", "web-1"],
        &["WATCH", "k1", "k2", "k3"],
    ];
    for args in full {
        write(
            &dir,
            &format!("options-{}", args.join("-").to_lowercase()),
            args.join("\0").as_bytes(),
        );
    }
}

/// phpredis's session lock release (redis_session.c, `LOCK_RELEASE_LUA_STR`), and its SHA1.
const PHPREDIS_UNLOCK: &str =
    "if redis.call(\"get\",KEYS[1]) == ARGV[1] then return redis.call(\"del\",KEYS[1]) else return 0 end";
const PHPREDIS_UNLOCK_SHA: &str = "b70c2384248f88e6b75b9f89241a180f856ad852";

/// redis-py's `Lock.release` script (redis/lock.py, `LUA_RELEASE_SCRIPT`).
const REDIS_PY_RELEASE: &str = "
        local token = redis.call('get', KEYS[1])
        if not token or token ~= ARGV[1] then
            return 0
        end
        redis.call('del', KEYS[1])
        return 1
    ";

/// Sequences of commands on two connections (`@A`, `@B`) with a movable clock (`@T ms`):
/// transactions and scripts as session libraries send them, and their error cases.
fn sequence_seeds() {
    let dir = corpus("command_sequence");
    let seeds: &[(&str, &[&[&str]])] = &[
        (
            "tx-scs-save",
            &[
                &["MULTI"],
                &["SET", "scs:session:abc", "data"],
                &["PEXPIREAT", "scs:session:abc", "1767227400000"],
                &["EXEC"],
                &["GET", "scs:session:abc"],
            ],
        ),
        (
            "tx-watch-other-connection",
            &[
                &["SET", "k", "1"],
                &["WATCH", "k"],
                &["@B"],
                &["INCR", "k"],
                &["@A"],
                &["MULTI"],
                &["INCR", "k"],
                &["EXEC"],
            ],
        ),
        (
            "tx-watch-expiry",
            &[
                &["SET", "k", "v", "PX", "100"],
                &["WATCH", "k", "missing"],
                &["@T", "200"],
                &["MULTI"],
                &["GET", "k"],
                &["EXEC"],
            ],
        ),
        (
            "tx-queue-errors",
            &[
                &["MULTI"],
                &["SET", "k"],
                &["NOSUCHCOMMAND", "x"],
                &["SET", "k", "v"],
                &["EXEC"],
                &["MULTI"],
                &["WATCH"],
                &["EXEC"],
                &["MULTI"],
                &["SET", "k", "v"],
                &["EXEC", "extra"],
                &["EXEC"],
            ],
        ),
        (
            "tx-nested-and-discard",
            &[
                &["MULTI"],
                &["MULTI"],
                &["WATCH", "k"],
                &["SET", "k", "v"],
                &["DISCARD"],
                &["EXEC"],
                &["DISCARD"],
            ],
        ),
        (
            "tx-run-time-error",
            &[
                &["SET", "s", "text"],
                &["MULTI"],
                &["INCR", "s"],
                &["SADD", "s", "m"],
                &["SET", "t", "1"],
                &["EXEC"],
            ],
        ),
        (
            "tx-keyless-and-resp3",
            &[
                &["HELLO", "3"],
                &["MSET", "a", "1", "b", "2"],
                &["MULTI"],
                &["KEYS", "*"],
                &["DBSIZE"],
                &["SCAN", "0"],
                &["FLUSHALL"],
                &["PING"],
                &["EXEC"],
            ],
        ),
        (
            "tx-sessions",
            &[
                &["MULTI"],
                &["SESSION.CREATE", "USER", "ada", "DATA", "cart", "[]"],
                &["SESSION.COUNT", "ada"],
                &["SESSION.DESTROYALL", "ada"],
                &["EXEC"],
            ],
        ),
        (
            "tx-reset-quit",
            &[
                &["WATCH", "k"],
                &["MULTI"],
                &["SET", "k", "v"],
                &["RESET"],
                &["MULTI"],
                &["QUIT"],
                &["EXEC"],
            ],
        ),
        (
            "eval-phpredis-unlock",
            &[
                &["SET", "PHPREDIS_SESSION:abc_LOCK", "tok"],
                &["SCRIPT", "LOAD", PHPREDIS_UNLOCK],
                &[
                    "EVALSHA",
                    PHPREDIS_UNLOCK_SHA,
                    "1",
                    "PHPREDIS_SESSION:abc_LOCK",
                    "tok",
                ],
                &[
                    "EVAL",
                    PHPREDIS_UNLOCK,
                    "1",
                    "PHPREDIS_SESSION:abc_LOCK",
                    "tok",
                ],
                &["SCRIPT", "EXISTS", PHPREDIS_UNLOCK_SHA, "0000"],
            ],
        ),
        (
            "eval-redis-py-release-in-multi",
            &[
                &["SET", "lock", "t1"],
                &["MULTI"],
                &["EVAL", REDIS_PY_RELEASE, "1", "lock", "t1"],
                &["GET", "lock"],
                &["EXEC"],
            ],
        ),
        (
            "eval-watch-and-flush",
            &[
                &["WATCH", "k"],
                &["@B"],
                &[
                    "EVAL",
                    "return redis.call('set', KEYS[1], ARGV[1])",
                    "1",
                    "k",
                    "v",
                ],
                &["EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "0"],
                &["SCRIPT", "FLUSH"],
                &["@A"],
                &["MULTI"],
                &["GET", "k"],
                &["EXEC"],
            ],
        ),
    ];
    for (name, sequence) in seeds {
        write(&dir, name, &commands(sequence));
    }
}

fn snapshot_seeds() {
    let dir = corpus("snapshot_loader");
    let (clock, _manual) = Clock::manual(NOW_MS);
    let store = Store::new(clock);
    let b = Bytes::from_static;
    let records = [
        Record::String {
            key: b(b"plain"),
            value: b(b"value"),
            expires_at_ms: 0,
        },
        Record::String {
            key: b(b"sess:4f1c2a"),
            value: b(b"{\"user\":\"ada\",\"cart\":[]}"),
            expires_at_ms: NOW_MS + 1_800_000,
        },
        Record::Hash {
            key: b(b"h"),
            fields: vec![(b(b"f"), b(b"1"))],
            expires_at_ms: 0,
        },
        Record::Set {
            key: b(b"s"),
            members: vec![b(b"a"), b(b"b")],
            expires_at_ms: NOW_MS + 60_000,
        },
        Record::Session {
            id: b(b"Zr4kPq1xW0sLm9Tg7aYb2Nc5Vd8Ue3Hf6Jo1Ki4Ml7Q"),
            user: Some(b(b"ada")),
            fields: vec![(b(b"cart"), b(b"[]"))],
            created_ms: NOW_MS - 1000,
            last_access_ms: NOW_MS - 500,
            idle_ms: 1_800_000,
            absolute_ms: 28_800_000,
            version: 3,
        },
    ];
    for record in records {
        store.restore(record, NOW_MS);
    }
    let scratch = std::env::temp_dir().join(format!("sessiond-seed-{}", std::process::id()));
    fs::create_dir_all(&scratch).expect("create a scratch directory");
    for (name, store) in [
        ("small", &store),
        ("empty", &Store::new(Clock::manual(NOW_MS).0)),
    ] {
        let path = scratch.join(format!("{name}.sdb"));
        writer::write_snapshot(store, &path, &writer::WriteOptions::default())
            .expect("write a snapshot");
        let file = fs::read(&path).expect("read the snapshot back");
        // Mode 0: the file as it is; mode 1: the harness repairs its framing and trailer.
        for mode in [0u8, 1] {
            let mut input = vec![mode];
            input.extend_from_slice(&file);
            write(&dir, &format!("{name}-mode{mode}"), &input);
        }
    }
    fs::remove_dir_all(&scratch).expect("remove the scratch directory");
}

/// Pattern, NUL, key: each of Redis's glob features and quirks, matching and not.
fn glob_seeds() {
    let dir = corpus("glob");
    let cases: &[(&str, &[u8], &[u8])] = &[
        ("star", b"sess:*:x", b"sess:app1:x"),
        ("stars", b"a*b*c*d", b"aXbYcZd"),
        ("question", b"h?llo", b"hello"),
        ("class", b"h[ae]llo", b"hallo"),
        ("negated", b"h[^e]llo", b"hello"),
        ("range", b"[a-z]*[0-9]", b"key9"),
        ("escape", b"h\\*llo", b"h*llo"),
        ("unclosed", b"a[bc", b"ab"),
        ("dash-bracket", b"[a-]", b"]"),
        ("trailing-backslash", b"a\\", b"a\\"),
        ("signed-range", b"[a-\xff]", b"\xff"),
        ("empty-key", b"*", b""),
        ("backtrack", b"*aaaab", b"aaaaaaaaaaaaaaaaaaab"),
    ];
    for (name, pattern, key) in cases {
        write(&dir, name, &[*pattern, *key].join(&0u8));
    }
}

fn main() {
    request_seeds();
    frame_seeds();
    command_seeds();
    sequence_seeds();
    glob_seeds();
    snapshot_seeds();
    println!(
        "seed corpus written under {}/corpus",
        env!("CARGO_MANIFEST_DIR")
    );
}
