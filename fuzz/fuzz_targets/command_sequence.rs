//! A sequence of commands run in-process by `cmd::execute`, the function the connection loop
//! calls, on two interleaved connections of one server (no network): transactions (MULTI,
//! EXEC, DISCARD, WATCH, UNWATCH, queue-time errors, nested MULTI, WATCH of keys the other
//! connection changes or that expire), scripts (EVAL, EVALSHA, SCRIPT) and everything else.
//!
//! Input: what a client sends (RESP or inline commands, as `RequestDecoder` reads them, with
//! tight limits); decoding stops at the first protocol error, as the connection would close.
//! Three pseudo-commands steer the harness and are not executed: `@A` and `@B` send the
//! commands after them on connection A (the start) or B; `@T <ms>` moves the server's manual
//! clock forward (at most a day).
//!
//! What must hold:
//! - no panic (the store panics when an atomic block touches a shard it does not hold);
//! - every command answers exactly one reply frame (SAVE and SHUTDOWN, which answer after they
//!   wait, are not run);
//! - inside MULTI a command answers QUEUED, an error (which makes EXEC answer EXECABORT, except
//!   a nested MULTI or a WATCH), or ends the transaction (EXEC, DISCARD, RESET, QUIT);
//! - EXEC answers EXECABORT exactly when the transaction was flagged, otherwise a null array or
//!   an array of one reply per QUEUED; after EXEC or DISCARD the connection is out of MULTI;
//! - at the end, on a fresh connection: every key `KEYS *` lists exists, and DBSIZE (which
//!   counts expired keys not yet reclaimed) is at least their number;
//! - after a final flush of the store, the counters summed over keys are back to zero: no key,
//!   no volatile key, no `used_memory`.
#![no_main]

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sessiond::clock::BatchClock;
use sessiond::cmd::{self, ConnState, Then};
use sessiond::stats::LocalStats;
use sessiond::{Clock, Config, ManualClock, Shared};
use sessiond_protocol::{Frame, FrameDecoder, Limits, ProtocolVersion, RequestDecoder};

/// The server's clock at the start of every run.
const START_MS: u64 = 1_767_225_600_000;
/// The most one `@T` moves the clock.
const MAX_ADVANCE_MS: u64 = 86_400_000;
/// The most commands one input runs.
const MAX_COMMANDS: usize = 256;

/// Tight enough that the decoder's limits are reachable with small inputs.
const DECODE_LIMITS: Limits = Limits {
    max_bulk_len: 512,
    max_args: 32,
    max_inline_len: 1024,
    max_query_buffer: 8192,
    max_depth: 8,
};

/// The replies are decoded back, with room for whatever the commands above can answer.
const REPLY_LIMITS: Limits = Limits {
    max_bulk_len: 1 << 20,
    max_args: 1 << 20,
    max_inline_len: 1 << 16,
    max_query_buffer: 64 << 20,
    max_depth: 16,
};

/// What the harness knows of one connection's transaction.
#[derive(Default)]
struct Model {
    /// After MULTI.
    in_multi: bool,
    /// QUEUED replies since MULTI.
    queued: usize,
    /// A command was refused while queuing: EXEC must answer EXECABORT.
    flagged: bool,
}

/// What the harness knows of one connection's watched keys.
#[derive(Default)]
struct Watch {
    /// The keys WATCH accepted since the watch began.
    keys: Vec<Bytes>,
    /// Something ran since that may have changed one (a command of either connection that is
    /// not about queuing or watching, a move of the clock): without it, EXEC must not fail.
    may_fail: bool,
    /// A watched key was written for sure (a plain write's success reply): EXEC must fail.
    must_fail: bool,
}

/// What running one command did, for the models of both connections.
struct Ran {
    /// The connection is still open.
    open: bool,
    /// Only queued or watched (WATCH, MULTI, DISCARD, UNWATCH, a QUEUED command): no key
    /// changed.
    inert: bool,
    /// The key a plain write changed for sure.
    wrote: Option<Bytes>,
}

/// One client: its state, counters, clock reading and the models of its transaction and
/// watched keys.
struct Client {
    state: ConnState,
    stats: LocalStats,
    clock: BatchClock,
    model: Model,
    watch: Watch,
}

impl Client {
    fn connect(shared: &Arc<Shared>) -> Client {
        let addr = shared.local_addr;
        let client = shared.clients.register(addr, addr);
        Client {
            state: ConnState::new(client, shared.auth.initial_user()),
            stats: LocalStats::default(),
            clock: BatchClock::default(),
            model: Model::default(),
            watch: Watch::default(),
        }
    }

    /// Something ran that may have changed any key, and `wrote` for sure.
    fn saw(&mut self, wrote: Option<&Bytes>) {
        if self.watch.keys.is_empty() {
            return;
        }
        self.watch.may_fail = true;
        if wrote.is_some_and(|key| self.watch.keys.contains(key)) {
            self.watch.must_fail = true;
        }
    }

    /// Runs `args` and checks its reply.
    fn run(&mut self, shared: &Arc<Shared>, args: Vec<Bytes>) -> Ran {
        let name = args[0].to_ascii_lowercase();
        let argc = args.len();
        let target = written_key(&name, &args);
        let watched: Vec<Bytes> = if name == b"watch" {
            args[1..].to_vec()
        } else {
            Vec::new()
        };
        let was_in_multi = self.state.in_multi();
        assert_eq!(
            was_in_multi, self.model.in_multi,
            "MULTI state before {name:?}"
        );
        let version = self.state.version();
        self.clock.stale();
        let mut out = BytesMut::new();
        let reply = cmd::execute(
            shared,
            &mut self.state,
            &mut self.stats,
            args,
            &mut self.clock,
            &mut out,
        );
        if let Some(frame) = &reply.frame {
            frame.encode(version, &mut out);
        }
        if reply.then == Then::OutputLimit {
            return Ran {
                open: false,
                inert: false,
                wrote: None,
            };
        }
        let frame = one_frame(&mut out, &name);
        let is_error = matches!(frame, Frame::Error(_));
        let in_multi = self.state.in_multi();
        let queued = matches!(&frame, Frame::Simple(s) if &s[..] == b"QUEUED");
        if was_in_multi {
            match (&name[..], &frame) {
                (b"exec", _) => {
                    assert!(!in_multi, "still in MULTI after EXEC: {frame:?}");
                    if argc == 1 {
                        check_exec(&self.model, &self.watch, &frame);
                    } else {
                        assert_execabort(&frame);
                    }
                }
                (_, Frame::Simple(_)) if queued => {
                    assert!(in_multi, "QUEUED out of MULTI");
                    if !self.model.flagged {
                        self.model.queued += 1;
                    }
                }
                (b"multi" | b"watch", Frame::Error(_))
                    if in_multi && arity_is_right(&name, &frame) => {}
                (_, Frame::Error(_)) if in_multi => self.model.flagged = true,
                _ => assert!(
                    !in_multi || reply.then == Then::Close,
                    "{name:?} answered {frame:?} inside MULTI and did not end it"
                ),
            }
        } else if name == b"exec" || name == b"discard" {
            assert!(is_error, "{name:?} out of MULTI answered {frame:?}");
        }
        if !in_multi {
            self.model = Model::default();
        } else if !was_in_multi {
            assert_eq!(&name[..], b"multi", "entered MULTI with {name:?}");
            self.model.in_multi = true;
        }

        // The watched keys: WATCH adds; EXEC (run or aborted), DISCARD, UNWATCH, RESET forget.
        let execabort = matches!(&frame, Frame::Error(e) if e.starts_with(b"EXECABORT "));
        let unwatched = match &name[..] {
            b"exec" => !is_error || execabort,
            b"discard" | b"unwatch" | b"reset" => !is_error,
            _ => false,
        };
        if unwatched {
            self.watch = Watch::default();
        } else if name == b"watch" && !is_error {
            self.watch.keys.extend(watched);
        }
        let inert = queued || matches!(&name[..], b"watch" | b"multi" | b"discard" | b"unwatch");
        let wrote = target.filter(|_| wrote_for_sure(&name, &frame));
        if !inert {
            self.saw(wrote.as_ref());
        }
        Ran {
            open: reply.then != Then::Close,
            inert,
            wrote,
        }
    }
}

/// The one key a plain single-key write names, if `name` is one the harness follows.
fn written_key(name: &[u8], args: &[Bytes]) -> Option<Bytes> {
    let single = match name {
        b"set" | b"incr" | b"decr" | b"incrby" | b"decrby" | b"append" | b"hset" | b"sadd"
        | b"expire" | b"pexpire" | b"persist" | b"getdel" => true,
        b"del" | b"unlink" => args.len() == 2,
        _ => false,
    };
    single.then(|| args.get(1).cloned()).flatten()
}

/// Whether `frame` says the write `name` changed its key: Redis's replies of a done write.
fn wrote_for_sure(name: &[u8], frame: &Frame) -> bool {
    match (name, frame) {
        (b"set", Frame::Simple(ok)) => &ok[..] == b"OK",
        (b"incr" | b"decr" | b"incrby" | b"decrby" | b"append", Frame::Integer(_)) => true,
        (b"hset" | b"sadd", Frame::Integer(n)) => *n > 0,
        (b"expire" | b"pexpire" | b"persist" | b"del" | b"unlink", Frame::Integer(n)) => *n > 0,
        (b"getdel", Frame::Bulk(_)) => true,
        _ => false,
    }
}

/// Whether an error answered to MULTI or WATCH inside MULTI is the one Redis gives without
/// flagging the transaction (nested MULTI, WATCH inside MULTI), not an arity error (which
/// flags it).
fn arity_is_right(name: &[u8], frame: &Frame) -> bool {
    let Frame::Error(message) = frame else {
        return false;
    };
    let expected: &[u8] = if name == b"multi" {
        b"ERR MULTI calls can not be nested"
    } else {
        b"ERR WATCH inside MULTI is not allowed"
    };
    &message[..] == expected
}

fn assert_execabort(frame: &Frame) {
    assert!(
        matches!(frame, Frame::Error(e) if e.starts_with(b"EXECABORT ")),
        "EXEC of a flagged transaction answered {frame:?}"
    );
}

/// EXEC's reply against the models: EXECABORT exactly when flagged, else a null array when a
/// watched key may have changed (and always when one was written), or one reply per queued
/// command.
fn check_exec(model: &Model, watch: &Watch, frame: &Frame) {
    if model.flagged {
        assert_execabort(frame);
        return;
    }
    match frame {
        Frame::NullArray | Frame::Null => assert!(
            watch.may_fail,
            "EXEC failed, but nothing could have changed the watched keys {:?}",
            watch.keys
        ),
        Frame::Array(replies) => {
            assert!(
                !watch.must_fail,
                "EXEC ran after a write to one of the watched keys {:?}",
                watch.keys
            );
            assert_eq!(replies.len(), model.queued, "EXEC's replies");
        }
        other => panic!(
            "EXEC of {} queued commands answered {other:?}",
            model.queued
        ),
    }
}

/// The one complete frame `out` must hold.
fn one_frame(out: &mut BytesMut, name: &[u8]) -> Frame {
    let mut decoder = FrameDecoder::new(REPLY_LIMITS);
    let frame = decoder
        .decode(out)
        .unwrap_or_else(|e| panic!("{name:?}'s reply does not decode: {e}"))
        .unwrap_or_else(|| panic!("{name:?} answered no complete reply"));
    assert!(out.is_empty(), "{name:?} answered more than one reply");
    frame
}

/// The end-of-run cross-check on a fresh connection: every key KEYS lists exists, and DBSIZE
/// counts at least as many.
fn check_keyspace(shared: &Arc<Shared>) {
    let mut client = Client::connect(shared);
    let mut ask = |args: &[&[u8]]| {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        let mut out = BytesMut::new();
        let reply = cmd::execute(
            shared,
            &mut client.state,
            &mut client.stats,
            args,
            &mut client.clock,
            &mut out,
        );
        if let Some(frame) = &reply.frame {
            frame.encode(ProtocolVersion::Resp2, &mut out);
        }
        one_frame(&mut out, b"check")
    };
    let Frame::Array(keys) = ask(&[b"KEYS", b"*"]) else {
        panic!("KEYS * is no array");
    };
    let Frame::Integer(dbsize) = ask(&[b"DBSIZE"]) else {
        panic!("DBSIZE is no integer");
    };
    assert!(
        dbsize >= keys.len() as i64,
        "DBSIZE {dbsize} < KEYS * {}",
        keys.len()
    );
    for key in keys {
        let Frame::Bulk(key) = key else {
            panic!("KEYS listed {key:?}");
        };
        assert_eq!(
            ask(&[b"EXISTS", &key]),
            Frame::Integer(1),
            "KEYS listed {key:?}"
        );
    }
}

/// After every key is removed, what is counted per key must be back to zero: a command that
/// forgot to account for what it added or removed leaves a residue.
fn check_accounting(shared: &Arc<Shared>) {
    let dbs = &shared.dbs;
    // FLUSHALL ASYNC frees on a background thread; the counters drop as it goes.
    while dbs.first().lazyfree_pending() > 0 {
        std::thread::yield_now();
    }
    dbs.flush_all(false);
    assert_eq!(dbs.len(), 0, "keys after a flush");
    assert_eq!(
        dbs.sum(|db| db.volatile_len()),
        0,
        "volatile keys after a flush"
    );
    assert_eq!(dbs.used_memory(), 0, "used_memory after a flush");
}

/// A harness pseudo-command, if `args` is one.
enum Steer {
    Connection(usize),
    Advance(u64),
}

fn steer(args: &[Bytes]) -> Option<Steer> {
    match &args[0][..] {
        b"@A" | b"@a" => Some(Steer::Connection(0)),
        b"@B" | b"@b" => Some(Steer::Connection(1)),
        b"@T" | b"@t" => {
            let ms = args
                .get(1)
                .and_then(|ms| std::str::from_utf8(ms).ok()?.parse::<u64>().ok())
                .unwrap_or(1);
            Some(Steer::Advance(ms.min(MAX_ADVANCE_MS)))
        }
        _ => None,
    }
}

/// Commands the harness does not run: they answer only after waiting on the server's tasks.
fn waits(args: &[Bytes]) -> bool {
    args[0].eq_ignore_ascii_case(b"SAVE") || args[0].eq_ignore_ascii_case(b"SHUTDOWN")
}

fn server() -> (Arc<Shared>, Arc<ManualClock>) {
    let (clock, manual) = Clock::manual(START_MS);
    let mut config = Config {
        clock,
        ..Config::default()
    };
    // Small, so that a transaction's queue reaches its bound.
    config.limits.max_query_buffer = 4096;
    (Arc::new(Shared::unbound(config)), manual)
}

fuzz_target!(|data: &[u8]| {
    let (shared, manual) = server();
    let mut clients = [Client::connect(&shared), Client::connect(&shared)];
    let mut current = 0;
    let mut decoder = RequestDecoder::new(DECODE_LIMITS);
    let mut input = BytesMut::from(data);
    let mut ran = 0;
    while ran < MAX_COMMANDS {
        let Ok(Some(args)) = decoder.decode(&mut input) else {
            break;
        };
        if args.is_empty() {
            continue;
        }
        match steer(&args) {
            Some(Steer::Connection(n)) => current = n,
            Some(Steer::Advance(ms)) => {
                manual.advance(ms);
                // A watched key may have expired.
                clients.iter_mut().for_each(|client| client.saw(None));
            }
            None if waits(&args) => {}
            None => {
                ran += 1;
                let done = clients[current].run(&shared, args);
                if !done.inert {
                    clients[1 - current].saw(done.wrote.as_ref());
                }
                if !done.open {
                    // Closed (QUIT, output limit): the next command comes on a new connection.
                    clients[current] = Client::connect(&shared);
                }
            }
        }
    }
    drop(clients);
    check_keyspace(&shared);
    check_accounting(&shared);
});
