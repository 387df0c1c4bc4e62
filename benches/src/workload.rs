//! What each connection sends: [`Generator`] encodes the next command of a workload and reads
//! its reply back into the connection's state (the session IDs it knows).
//!
//! Keys are `key:` and 12 digits, uniformly drawn from the keyspace, as redis-benchmark's `-r`
//! makes them, so the two tools load a server with the same keys. Values are slices of one
//! random buffer: generating a value costs nothing.

use bytes::{Bytes, BytesMut};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sessiond_protocol::{ClientCodec, Frame};

use crate::config::{BrowseMix, Config, Ratio, ValueSize, Workload};

/// One kind of command sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `SET`.
    Set,
    /// `GET`.
    Get,
    /// `SESSION.CREATE`.
    SessionCreate,
    /// `SESSION.GET`.
    SessionGet,
    /// `SESSION.SET`.
    SessionSet,
    /// `SESSION.DESTROY`.
    SessionDestroy,
    /// `SESSION.DESTROYALL`.
    SessionDestroyAll,
    /// `MULTI`, `SET`, `PEXPIREAT`, `EXEC`: one request of four commands.
    Multi,
    /// `EVALSHA` of phpredis's lock release.
    EvalSha,
    /// `PUBLISH`.
    Publish,
}

impl Op {
    /// Every kind, in report order.
    pub const ALL: [Op; 10] = [
        Op::Set,
        Op::Get,
        Op::SessionCreate,
        Op::SessionGet,
        Op::SessionSet,
        Op::SessionDestroy,
        Op::SessionDestroyAll,
        Op::Multi,
        Op::EvalSha,
        Op::Publish,
    ];

    /// The command's name.
    pub fn name(self) -> &'static str {
        match self {
            Op::Set => "SET",
            Op::Get => "GET",
            Op::SessionCreate => "SESSION.CREATE",
            Op::SessionGet => "SESSION.GET",
            Op::SessionSet => "SESSION.SET",
            Op::SessionDestroy => "SESSION.DESTROY",
            Op::SessionDestroyAll => "SESSION.DESTROYALL",
            Op::Multi => "MULTI/EXEC",
            Op::EvalSha => "EVALSHA",
            Op::Publish => "PUBLISH",
        }
    }

    /// The reply frames one request of this kind gets: MULTI's OK, a QUEUED per command and
    /// EXEC's array for [`Op::Multi`], one otherwise.
    pub fn frames(self) -> usize {
        match self {
            Op::Multi => 4,
            _ => 1,
        }
    }

    /// A dense index, for per-kind tables.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What a reply says about its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; for reads, the key or session was there.
    Hit,
    /// Done, but the key or session was not there (a nil GET, a DESTROY of a gone session).
    Miss,
    /// An error reply, or a reply the command cannot give; the text says which.
    Error(String),
}

/// The field session workloads store their value under.
const SESSION_FIELD: &[u8] = b"data";

/// phpredis's session lock release, verbatim (redis_session.c, `LOCK_RELEASE_LUA_STR`).
pub const LOCK_RELEASE_SCRIPT: &str = "if redis.call(\"get\",KEYS[1]) == ARGV[1] then return redis.call(\"del\",KEYS[1]) else return 0 end";
/// Its SHA1, as phpredis has it (`LOCK_RELEASE_SHA_STR`): what SCRIPT LOAD must answer.
pub const LOCK_RELEASE_SHA: &str = "b70c2384248f88e6b75b9f89241a180f856ad852";
/// The token evalsha's requests release their lock with.
const LOCK_TOKEN: &[u8] = b"token";
/// multi's deadline without --ttl: scs's default session lifetime.
const MULTI_DEFAULT_TTL_MS: u64 = 24 * 3600 * 1000;

/// The commands of one connection, and the state they need.
#[derive(Debug)]
pub struct Generator {
    workload: Workload,
    rng: SmallRng,
    values: Bytes,
    value_size: ValueSize,
    keyspace: u64,
    /// `EX s` or `PX ms` for SET, from `--ttl`.
    set_ttl: Option<[Bytes; 2]>,
    /// `IDLE ms` for SESSION.CREATE, from `--ttl`.
    idle: Option<[Bytes; 2]>,
    /// How far ahead of now multi's PEXPIREAT puts the deadline.
    multi_ttl_ms: u64,
    /// publish's channel.
    channel: Bytes,
    /// The receivers PUBLISH replies counted, summed: the messages the subscribers are owed.
    receivers: u64,
    /// Distinguishes this run's users from an earlier run's on the same server.
    run_tag: u64,
    client: usize,
    /// The sessions this connection created and has not destroyed (session-browse).
    sessions: Vec<Bytes>,
    /// session-logout-everywhere: the current user, and the logins it still needs.
    user_seq: u64,
    logins_left: usize,
    key: Vec<u8>,
}

impl Generator {
    /// The generator of connection number `client` (0-based) in the run `config`.
    pub fn new(config: &Config, client: usize, values: Bytes) -> Generator {
        let seed = config.seed.wrapping_add(client as u64);
        let devices = match config.workload {
            Workload::SessionLogoutEverywhere { devices } => devices,
            _ => 0,
        };
        Generator {
            workload: config.workload,
            rng: SmallRng::seed_from_u64(seed),
            values,
            value_size: config.value_size,
            keyspace: config.keyspace,
            set_ttl: config.ttl.map(|ttl| match ttl.as_millis() as u64 {
                ms if ms % 1000 == 0 => [Bytes::from("EX"), number_arg(ms / 1000)],
                ms => [Bytes::from("PX"), number_arg(ms)],
            }),
            idle: config
                .ttl
                .map(|ttl| [Bytes::from("IDLE"), number_arg(ttl.as_millis() as u64)]),
            multi_ttl_ms: config
                .ttl
                .map_or(MULTI_DEFAULT_TTL_MS, |ttl| ttl.as_millis() as u64),
            channel: publish_channel(config.seed),
            receivers: 0,
            run_tag: config.seed,
            client,
            sessions: Vec::new(),
            user_seq: 0,
            logins_left: devices,
            key: Vec::with_capacity(64),
        }
    }

    /// The sessions this connection knows of.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The receivers every PUBLISH reply so far counted, added up.
    pub fn receivers(&self) -> u64 {
        self.receivers
    }

    /// Appends the next command to `out`; returns its kind.
    pub fn next_command(&mut self, out: &mut BytesMut) -> Op {
        match self.workload {
            Workload::Set => self.set(out),
            Workload::Get => self.get(out),
            Workload::Mixed(ratio) => match pick_mixed(&mut self.rng, ratio) {
                Op::Set => self.set(out),
                _ => self.get(out),
            },
            Workload::SessionLogin => {
                let user = self.rng.random_range(0..self.keyspace);
                self.key_of(b"user:", user);
                self.session_create(out, true)
            }
            Workload::SessionBrowse(mix) => self.browse(out, mix),
            Workload::SessionLogoutEverywhere { devices } => {
                self.logout_user();
                if self.logins_left == 0 {
                    self.logins_left = devices;
                    self.user_seq += 1;
                    ClientCodec::encode_command(&[b"SESSION.DESTROYALL", &self.key[..]], out);
                    Op::SessionDestroyAll
                } else {
                    self.logins_left -= 1;
                    self.session_create(out, true)
                }
            }
            Workload::Multi => self.multi(out),
            Workload::EvalSha => self.evalsha(out),
            Workload::Publish { .. } => {
                let value = self.value();
                ClientCodec::encode_command(&[&b"PUBLISH"[..], &self.channel, &value], out);
                Op::Publish
            }
        }
    }

    /// Appends the SET of key number `n` (for prefilling the keyspace).
    pub fn set_key(&mut self, n: u64, out: &mut BytesMut) {
        self.key_of(b"key:", n);
        self.encode_set(out);
    }

    /// Appends a SESSION.CREATE without a user (for the sessions session-browse starts with).
    pub fn create_session(&mut self, out: &mut BytesMut) -> Op {
        self.session_create(out, false)
    }

    /// Reads the reply to a command of kind `op`.
    pub fn on_reply(&mut self, op: Op, reply: Frame) -> Outcome {
        if let Frame::Error(message) = &reply {
            return Outcome::Error(String::from_utf8_lossy(message).into_owned());
        }
        match (op, reply) {
            (Op::Set, Frame::Simple(_)) => Outcome::Hit,
            (Op::Get, Frame::Bulk(_)) => Outcome::Hit,
            (Op::Get | Op::SessionGet | Op::SessionSet, Frame::Null) => Outcome::Miss,
            (Op::SessionCreate, Frame::Bulk(id)) => {
                if matches!(self.workload, Workload::SessionBrowse(_)) {
                    self.sessions.push(id);
                }
                Outcome::Hit
            }
            (Op::SessionGet, Frame::Array(_) | Frame::Map(_)) => Outcome::Hit,
            (Op::SessionSet, Frame::Integer(_)) => Outcome::Hit,
            (Op::SessionDestroy, Frame::Integer(1)) => Outcome::Hit,
            (Op::SessionDestroy, Frame::Integer(0)) => Outcome::Miss,
            (Op::SessionDestroyAll, Frame::Integer(n)) => match &self.workload {
                Workload::SessionLogoutEverywhere { devices } if n != *devices as i64 => {
                    Outcome::Error(format!(
                        "SESSION.DESTROYALL destroyed {n} sessions, not the {devices} created"
                    ))
                }
                _ => Outcome::Hit,
            },
            (Op::Multi, Frame::Array(replies)) => match &replies[..] {
                [Frame::Simple(_), Frame::Integer(1)] => Outcome::Hit,
                [Frame::Error(message), _] | [_, Frame::Error(message)] => {
                    Outcome::Error(String::from_utf8_lossy(message).into_owned())
                }
                _ => Outcome::Error(format!("unexpected replies in EXEC's: {replies:?}")),
            },
            (Op::Multi, Frame::Null | Frame::NullArray) => {
                Outcome::Error("EXEC answered a null array: the transaction did not run".into())
            }
            (Op::EvalSha, Frame::Integer(1)) => Outcome::Hit,
            (Op::EvalSha, Frame::Integer(0)) => Outcome::Miss,
            (Op::Publish, Frame::Integer(n)) => {
                self.receivers += n.max(0) as u64;
                if n > 0 {
                    Outcome::Hit
                } else {
                    Outcome::Miss
                }
            }
            (op, reply) => Outcome::Error(format!("unexpected reply to {}: {reply:?}", op.name())),
        }
    }

    fn set(&mut self, out: &mut BytesMut) -> Op {
        let n = self.rng.random_range(0..self.keyspace);
        self.key_of(b"key:", n);
        self.encode_set(out);
        Op::Set
    }

    fn encode_set(&mut self, out: &mut BytesMut) {
        let value = self.value();
        match &self.set_ttl {
            None => ClientCodec::encode_command(&[&b"SET"[..], &self.key, &value], out),
            Some([unit, amount]) => {
                ClientCodec::encode_command(&[&b"SET"[..], &self.key, &value, unit, amount], out)
            }
        }
    }

    /// scs redisstore's Commit: `MULTI; SET key value; PEXPIREAT key ms; EXEC`, written together.
    fn multi(&mut self, out: &mut BytesMut) -> Op {
        let n = self.rng.random_range(0..self.keyspace);
        self.key_of(b"scs:session:", n);
        let value = self.value();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |now| now.as_millis() as u64);
        let mut deadline = itoa::Buffer::new();
        let deadline = deadline.format(now_ms.saturating_add(self.multi_ttl_ms));
        ClientCodec::encode_command(&[&b"MULTI"[..]], out);
        ClientCodec::encode_command(&[&b"SET"[..], &self.key, &value], out);
        ClientCodec::encode_command(&[&b"PEXPIREAT"[..], &self.key, deadline.as_bytes()], out);
        ClientCodec::encode_command(&[&b"EXEC"[..]], out);
        Op::Multi
    }

    /// phpredis's lock release: `EVALSHA sha 1 key token`, on a key of the keyspace.
    fn evalsha(&mut self, out: &mut BytesMut) -> Op {
        let n = self.rng.random_range(0..self.keyspace);
        self.key_of(b"key:", n);
        ClientCodec::encode_command(
            &[
                &b"EVALSHA"[..],
                LOCK_RELEASE_SHA.as_bytes(),
                b"1",
                &self.key,
                LOCK_TOKEN,
            ],
            out,
        );
        Op::EvalSha
    }

    fn get(&mut self, out: &mut BytesMut) -> Op {
        let n = self.rng.random_range(0..self.keyspace);
        self.key_of(b"key:", n);
        ClientCodec::encode_command(&[&b"GET"[..], &self.key], out);
        Op::Get
    }

    fn browse(&mut self, out: &mut BytesMut, mix: BrowseMix) -> Op {
        let op = pick_browse(&mut self.rng, mix);
        if self.sessions.is_empty() || op == Op::SessionCreate {
            return self.session_create(out, false);
        }
        let at = self.rng.random_range(0..self.sessions.len());
        match op {
            Op::SessionSet => {
                let value = self.value();
                ClientCodec::encode_command(
                    &[
                        &b"SESSION.SET"[..],
                        &self.sessions[at],
                        SESSION_FIELD,
                        &value,
                    ],
                    out,
                );
                Op::SessionSet
            }
            Op::SessionDestroy => {
                let id = self.sessions.swap_remove(at);
                ClientCodec::encode_command(&[&b"SESSION.DESTROY"[..], &id], out);
                Op::SessionDestroy
            }
            _ => {
                ClientCodec::encode_command(&[&b"SESSION.GET"[..], &self.sessions[at]], out);
                Op::SessionGet
            }
        }
    }

    /// SESSION.CREATE [USER <self.key>] [IDLE ttl] DATA data <value>.
    fn session_create(&mut self, out: &mut BytesMut, with_user: bool) -> Op {
        let value = self.value();
        let mut args: Vec<&[u8]> = Vec::with_capacity(8);
        args.push(b"SESSION.CREATE");
        if with_user {
            args.extend([&b"USER"[..], &self.key]);
        }
        if let Some([idle, ms]) = &self.idle {
            args.extend([&idle[..], ms]);
        }
        args.extend([&b"DATA"[..], SESSION_FIELD, &value]);
        ClientCodec::encode_command(&args, out);
        Op::SessionCreate
    }

    /// Sets `self.key` to the current logout-everywhere user: unique to the run and connection.
    fn logout_user(&mut self) {
        let mut number = itoa::Buffer::new();
        self.key.clear();
        self.key.extend_from_slice(b"user:");
        self.key
            .extend_from_slice(number.format(self.run_tag).as_bytes());
        self.key.push(b':');
        self.key
            .extend_from_slice(number.format(self.client).as_bytes());
        self.key.push(b':');
        self.key
            .extend_from_slice(number.format(self.user_seq).as_bytes());
    }

    /// Sets `self.key` to `prefix` and `n` in 12 digits (redis-benchmark's `key:000000001234`).
    fn key_of(&mut self, prefix: &[u8], n: u64) {
        let mut number = itoa::Buffer::new();
        self.key.clear();
        self.key.extend_from_slice(prefix);
        let digits = number.format(n).as_bytes();
        self.key.extend(std::iter::repeat_n(
            b'0',
            12usize.saturating_sub(digits.len()),
        ));
        self.key.extend_from_slice(digits);
    }

    fn value(&mut self) -> Bytes {
        let size = self.value_size.sample(&mut self.rng);
        self.values.slice(..size.min(self.values.len()))
    }
}

/// The channel of a publish run: its own, so that another run's subscribers on the same server
/// neither receive its messages nor count in its PUBLISH replies.
pub fn publish_channel(seed: u64) -> Bytes {
    let mut channel = b"sessiond-bench:".to_vec();
    channel.extend_from_slice(itoa::Buffer::new().format(seed).as_bytes());
    channel.into()
}

fn number_arg(n: u64) -> Bytes {
    Bytes::copy_from_slice(itoa::Buffer::new().format(n).as_bytes())
}

/// The buffer values are cut from: `max` random letters and digits.
pub fn value_buffer(max: usize, seed: u64) -> Bytes {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..max)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect::<Vec<u8>>()
        .into()
}

/// SET or GET, in the ratio's proportion.
pub fn pick_mixed(rng: &mut impl Rng, ratio: Ratio) -> Op {
    if rng.random_range(0..ratio.set + ratio.get) < ratio.set {
        Op::Set
    } else {
        Op::Get
    }
}

/// A session-browse operation, in the mix's proportion.
pub fn pick_browse(rng: &mut impl Rng, mix: BrowseMix) -> Op {
    let total = mix.get + mix.set + mix.create + mix.destroy;
    let mut draw = rng.random_range(0..total);
    for (weight, op) in [
        (mix.get, Op::SessionGet),
        (mix.set, Op::SessionSet),
        (mix.create, Op::SessionCreate),
    ] {
        if draw < weight {
            return op;
        }
        draw -= weight;
    }
    Op::SessionDestroy
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use sessiond_protocol::RequestDecoder;

    use super::*;
    use crate::config::Args;
    use clap::Parser;

    fn config(line: &[&str]) -> Config {
        Args::try_parse_from(std::iter::once("b").chain(line.iter().copied()))
            .unwrap()
            .validate()
            .unwrap()
    }

    fn generator(line: &[&str]) -> Generator {
        let config = config(line);
        let values = value_buffer(config.value_size.max, 1);
        Generator::new(&config, 3, values)
    }

    /// Decodes every command in `wire` as the server would.
    fn commands(wire: &mut BytesMut) -> Vec<Vec<Bytes>> {
        let mut decoder = RequestDecoder::default();
        let mut out = Vec::new();
        while let Some(args) = decoder.decode(wire).unwrap() {
            out.push(args);
        }
        assert!(wire.is_empty());
        out
    }

    #[test]
    fn the_browse_mix_is_drawn_in_its_proportions() {
        let mut rng = SmallRng::seed_from_u64(42);
        let mut counts = [0u32; Op::ALL.len()];
        let draws = 100_000;
        for _ in 0..draws {
            counts[pick_browse(&mut rng, BrowseMix::default()).index()] += 1;
        }
        let percent = |op: Op| f64::from(counts[op.index()]) * 100.0 / f64::from(draws);
        assert!((percent(Op::SessionGet) - 80.0).abs() < 1.0);
        assert!((percent(Op::SessionSet) - 15.0).abs() < 1.0);
        assert!((percent(Op::SessionCreate) - 4.0).abs() < 0.5);
        assert!((percent(Op::SessionDestroy) - 1.0).abs() < 0.3);

        // A weight of 0 is never drawn.
        let only_get: BrowseMix = "get=1".parse().unwrap();
        assert!((0..1000).all(|_| pick_browse(&mut rng, only_get) == Op::SessionGet));
        let only_destroy: BrowseMix = "destroy=5".parse().unwrap();
        assert!((0..1000).all(|_| pick_browse(&mut rng, only_destroy) == Op::SessionDestroy));
    }

    #[test]
    fn the_mixed_ratio_is_drawn_in_its_proportion() {
        let mut rng = SmallRng::seed_from_u64(42);
        let ratio: Ratio = "1:3".parse().unwrap();
        let sets = (0..100_000)
            .filter(|_| pick_mixed(&mut rng, ratio) == Op::Set)
            .count();
        assert!((24_000..26_000).contains(&sets), "{sets}");
        let no_sets: Ratio = "0:1".parse().unwrap();
        assert!((0..1000).all(|_| pick_mixed(&mut rng, no_sets) == Op::Get));
    }

    #[test]
    fn set_and_get_use_redis_benchmark_keys_and_the_ttl() {
        let mut gen = generator(&["set", "-r", "10", "-d", "5-7", "--ttl", "30s"]);
        let mut wire = BytesMut::new();
        for _ in 0..50 {
            assert_eq!(gen.next_command(&mut wire), Op::Set);
        }
        for args in commands(&mut wire) {
            assert_eq!(args.len(), 5);
            assert_eq!(&args[0][..], b"SET");
            assert!(args[1].starts_with(b"key:00000000000"), "{:?}", args[1]);
            assert_eq!(args[1].len(), 16);
            assert!((5..=7).contains(&args[2].len()));
            assert_eq!((&args[3][..], &args[4][..]), (&b"EX"[..], &b"30"[..]));
        }

        let mut gen = generator(&["get", "--ttl", "1500ms"]);
        assert_eq!(gen.next_command(&mut wire), Op::Get);
        gen.set_key(123, &mut wire);
        let sent = commands(&mut wire);
        assert_eq!(sent[0].len(), 2);
        assert_eq!(&sent[1][1][..], b"key:000000000123");
        assert_eq!(
            (&sent[1][3][..], &sent[1][4][..]),
            (&b"PX"[..], &b"1500"[..])
        );
    }

    #[test]
    fn browse_uses_the_sessions_it_learned_and_forgets_the_destroyed() {
        let mut gen = generator(&["session-browse", "--browse-mix", "get=1,destroy=1"]);
        let mut wire = BytesMut::new();
        // Without a session, anything becomes a CREATE.
        assert_eq!(gen.next_command(&mut wire), Op::SessionCreate);
        let created = commands(&mut wire);
        assert_eq!(
            created[0][..4],
            [
                Bytes::from("SESSION.CREATE"),
                Bytes::from("DATA"),
                Bytes::from("data"),
                created[0][3].clone()
            ]
        );
        assert_eq!(
            gen.on_reply(Op::SessionCreate, Frame::bulk("id-1")),
            Outcome::Hit
        );
        assert_eq!(gen.sessions(), 1);
        let mut destroyed = false;
        while !destroyed {
            match gen.next_command(&mut wire) {
                Op::SessionGet => {
                    let sent = commands(&mut wire);
                    assert_eq!(
                        sent[0],
                        vec![Bytes::from("SESSION.GET"), Bytes::from("id-1")]
                    );
                }
                Op::SessionDestroy => {
                    let sent = commands(&mut wire);
                    assert_eq!(
                        sent[0],
                        vec![Bytes::from("SESSION.DESTROY"), Bytes::from("id-1")]
                    );
                    destroyed = true;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(gen.sessions(), 0);
        assert_eq!(
            gen.on_reply(Op::SessionGet, Frame::Null),
            Outcome::Miss,
            "a session destroyed by a request still in flight is a miss"
        );
        assert_eq!(
            gen.on_reply(Op::SessionDestroy, Frame::Integer(0)),
            Outcome::Miss
        );
    }

    #[test]
    fn logout_everywhere_logs_in_each_device_then_destroys_all() {
        let mut gen = generator(&[
            "session-logout-everywhere",
            "--devices",
            "2",
            "--ttl",
            "1m",
            "--seed",
            "9",
        ]);
        let mut wire = BytesMut::new();
        let ops: Vec<Op> = (0..6).map(|_| gen.next_command(&mut wire)).collect();
        use Op::{SessionCreate as C, SessionDestroyAll as D};
        assert_eq!(ops, [C, C, D, C, C, D]);
        let sent = commands(&mut wire);
        assert_eq!(
            sent[0][..5],
            [
                Bytes::from("SESSION.CREATE"),
                Bytes::from("USER"),
                Bytes::from("user:9:3:0"),
                Bytes::from("IDLE"),
                Bytes::from("60000"),
            ]
        );
        assert_eq!(
            sent[2],
            vec![Bytes::from("SESSION.DESTROYALL"), Bytes::from("user:9:3:0")]
        );
        assert_eq!(&sent[5][1][..], b"user:9:3:1");
        assert_eq!(
            gen.on_reply(Op::SessionDestroyAll, Frame::Integer(2)),
            Outcome::Hit
        );
        assert!(matches!(
            gen.on_reply(Op::SessionDestroyAll, Frame::Integer(1)),
            Outcome::Error(_)
        ));
    }

    fn unix_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    #[test]
    fn multi_writes_the_scs_save_as_one_request() {
        let mut gen = generator(&["multi", "-r", "10", "-d", "20", "--ttl", "30s"]);
        let mut wire = BytesMut::new();
        let before = unix_ms();
        assert_eq!(gen.next_command(&mut wire), Op::Multi);
        let after = unix_ms();
        let sent = commands(&mut wire);
        assert_eq!(sent.len(), 4, "{sent:?}");
        assert_eq!(sent[0], vec![Bytes::from("MULTI")]);
        let key = &sent[1][1];
        assert!(key.starts_with(b"scs:session:00000000000"), "{key:?}");
        assert_eq!(&sent[1][0][..], b"SET");
        assert_eq!(sent[1][2].len(), 20);
        assert_eq!(sent[1].len(), 3);
        assert_eq!((&sent[2][0][..], &sent[2][1]), (&b"PEXPIREAT"[..], key));
        let deadline: u64 = std::str::from_utf8(&sent[2][2]).unwrap().parse().unwrap();
        assert!((before + 30_000..=after + 30_000).contains(&deadline));
        assert_eq!(sent[3], vec![Bytes::from("EXEC")]);
        assert_eq!(Op::Multi.frames(), 4);

        // Without --ttl, scs's default lifetime: a day.
        let mut gen = generator(&["multi"]);
        let before = unix_ms();
        gen.next_command(&mut wire);
        let deadline: u64 = std::str::from_utf8(&commands(&mut wire)[2][2])
            .unwrap()
            .parse()
            .unwrap();
        assert!(deadline >= before + 86_400_000 && deadline < before + 86_500_000);
    }

    #[test]
    fn multi_is_a_hit_only_when_exec_ran_both_commands() {
        let mut gen = generator(&["multi"]);
        let done = Frame::Array(vec![Frame::ok(), Frame::Integer(1)]);
        assert_eq!(gen.on_reply(Op::Multi, done), Outcome::Hit);
        for failed in [
            Frame::NullArray,
            Frame::Null,
            Frame::error("EXECABORT Transaction discarded because of previous errors."),
            Frame::Array(vec![Frame::ok(), Frame::Integer(0)]),
            Frame::Array(vec![Frame::error("OOM nope"), Frame::Integer(1)]),
        ] {
            assert!(
                matches!(gen.on_reply(Op::Multi, failed.clone()), Outcome::Error(_)),
                "{failed:?}"
            );
        }
    }

    #[test]
    fn evalsha_sends_phpredis_lock_release_on_keyspace_keys() {
        let mut gen = generator(&["evalsha", "-r", "1000"]);
        let mut wire = BytesMut::new();
        for _ in 0..20 {
            assert_eq!(gen.next_command(&mut wire), Op::EvalSha);
        }
        for args in commands(&mut wire) {
            assert_eq!(args.len(), 5);
            assert_eq!(&args[0][..], b"EVALSHA");
            assert_eq!(&args[1][..], LOCK_RELEASE_SHA.as_bytes());
            assert_eq!(&args[2][..], b"1");
            assert!(args[3].starts_with(b"key:000000000"), "{:?}", args[3]);
            assert_eq!(args[3].len(), 16);
            assert_eq!(&args[4][..], LOCK_TOKEN);
        }
        assert_eq!(gen.on_reply(Op::EvalSha, Frame::Integer(1)), Outcome::Hit);
        assert_eq!(gen.on_reply(Op::EvalSha, Frame::Integer(0)), Outcome::Miss);
        assert!(matches!(
            gen.on_reply(
                Op::EvalSha,
                Frame::error("NOSCRIPT No matching script. Please use EVAL.")
            ),
            Outcome::Error(_)
        ));
        // phpredis's script and SHA1, verbatim (redis_session.c).
        assert_eq!(
            LOCK_RELEASE_SCRIPT,
            r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end"#
        );
        assert_eq!(LOCK_RELEASE_SHA, "b70c2384248f88e6b75b9f89241a180f856ad852");
    }

    #[test]
    fn publish_sends_values_to_the_runs_channel_and_sums_the_receivers() {
        let mut gen = generator(&["publish", "-d", "12", "--seed", "4"]);
        let mut wire = BytesMut::new();
        for _ in 0..3 {
            assert_eq!(gen.next_command(&mut wire), Op::Publish);
        }
        for args in commands(&mut wire) {
            assert_eq!(args.len(), 3);
            assert_eq!(&args[0][..], b"PUBLISH");
            assert_eq!(&args[1][..], b"sessiond-bench:4");
            assert_eq!(args[2].len(), 12);
        }
        assert_eq!(gen.on_reply(Op::Publish, Frame::Integer(100)), Outcome::Hit);
        assert_eq!(gen.on_reply(Op::Publish, Frame::Integer(0)), Outcome::Miss);
        assert_eq!(gen.on_reply(Op::Publish, Frame::Integer(7)), Outcome::Hit);
        assert_eq!(gen.receivers(), 107);
        assert!(matches!(
            gen.on_reply(Op::Publish, Frame::ok()),
            Outcome::Error(_)
        ));
    }

    #[test]
    fn replies_are_classified() {
        let mut gen = generator(&["mixed"]);
        assert_eq!(gen.on_reply(Op::Set, Frame::ok()), Outcome::Hit);
        assert_eq!(gen.on_reply(Op::Get, Frame::bulk("v")), Outcome::Hit);
        assert_eq!(gen.on_reply(Op::Get, Frame::Null), Outcome::Miss);
        assert_eq!(
            gen.on_reply(Op::Get, Frame::error("ERR nope")),
            Outcome::Error("ERR nope".to_owned())
        );
        assert!(matches!(
            gen.on_reply(Op::Set, Frame::Integer(1)),
            Outcome::Error(message) if message.contains("unexpected reply to SET")
        ));
    }
}
