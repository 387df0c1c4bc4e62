//! `appendfsync always` and the log's failures as a client sees them: a server in this
//! process, its log's files under the faults of `persist::aof_io`. (Here, not beside the
//! writer's own fault tests, so that `persist` imports neither `config` nor `server`.)

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::persist::aof::{AofConfig, Fsync};
use crate::persist::aof_io::faults::{install, Faults};
use crate::persist::PersistConfig;
use crate::server::Server;
use crate::store::feed::Feed;

/// A fresh data directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("sessiond-aof-served-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A server in this process whose log's files have faults, for its connections' view.
struct Served {
    dir: PathBuf,
    faults: Arc<Faults>,
    addr: std::net::SocketAddr,
    feed: Arc<Feed>,
    dbs: Arc<crate::store::Databases>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn serve(name: &str, fsync: Fsync) -> Served {
    serve_at(name, fsync, crate::clock::Clock::system())
}

/// [`serve`] on `clock`.
fn serve_at(name: &str, fsync: Fsync, clock: crate::clock::Clock) -> Served {
    let dir = scratch(name);
    let faults = install(&dir.join("appendonlydir"));
    let config = Config {
        persistence: Some(PersistConfig {
            dir: dir.clone(),
            interval: None,
            aof: AofConfig {
                fsync,
                ..AofConfig::default()
            },
            ..PersistConfig::default()
        }),
        clock,
        ..Config::default()
    };
    let (ready, started) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let server = Server::from_listener(config, listener).unwrap();
            let feed = Arc::clone(server.shared().persistence.aof().unwrap().feed());
            let dbs = Arc::clone(&server.shared().dbs);
            ready.send((server.local_addr(), feed, dbs)).unwrap();
            server
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
    });
    let (addr, feed, dbs) = started.recv().unwrap();
    Served {
        dir,
        faults,
        addr,
        feed,
        dbs,
        stop: Some(stop),
        thread: Some(thread),
    }
}

impl Served {
    fn connect(&self) -> std::net::TcpStream {
        let client = std::net::TcpStream::connect(self.addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client
    }

    /// Waits until the feed's end passes `offset`: a write sent was executed.
    fn wait_end_past(&self, offset: u64) -> u64 {
        while self.feed.end_offset() <= offset {
            std::thread::yield_now();
        }
        self.feed.end_offset()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.faults.free();
        self.faults.fail_syncs(false);
        self.faults.hold_syncs(false);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn send(client: &mut std::net::TcpStream, args: &[&str]) {
    pipeline(client, &[args]);
}

/// Sends `commands` in one write.
fn pipeline(client: &mut std::net::TcpStream, commands: &[&[&str]]) {
    use std::io::Write as _;
    let mut out = String::new();
    for args in commands {
        out.push_str(&format!("*{}\r\n", args.len()));
        for arg in *args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
    }
    client.write_all(out.as_bytes()).unwrap();
}

/// One reply: a line (simple string, error, integer), or a bulk string's contents.
fn reply(client: &mut std::net::TcpStream) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut line = Vec::new();
    let mut byte = [0u8];
    while !line.ends_with(b"\r\n") {
        if client.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        line.push(byte[0]);
    }
    let line = String::from_utf8(line[..line.len() - 2].to_vec()).unwrap();
    let Some(len) = line.strip_prefix('$') else {
        return Ok(line);
    };
    let mut bulk = vec![0; len.parse::<usize>().unwrap() + 2];
    client.read_exact(&mut bulk)?;
    Ok(String::from_utf8_lossy(&bulk[..bulk.len() - 2]).into_owned())
}

/// Whether `client` has no reply after a grace of 100 ms. Only a reply sent too early can
/// make it false: the check cannot fail where the server is right, however slow.
fn no_reply_yet(client: &mut std::net::TcpStream) -> bool {
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut byte = [0u8];
    let nothing = matches!(
        std::io::Read::read(client, &mut byte),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
    );
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    nothing
}

fn info_field(info: &str, name: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("{name} not in INFO"))
        .to_owned()
}

#[test]
fn an_always_reply_waits_for_its_fsync_and_one_fsync_serves_the_writes_that_waited() {
    let served = serve("server-always", Fsync::Always);
    let (mut c1, mut c2, mut c3) = (served.connect(), served.connect(), served.connect());
    send(&mut c1, &["SET", "a", "1"]);
    assert_eq!(reply(&mut c1).unwrap(), "+OK");

    // The fsync of the next write is held back: its reply waits.
    served.faults.hold_syncs(true);
    let before = served.feed.end_offset();
    send(&mut c1, &["SET", "b", "2"]);
    served.faults.wait_held(1);
    assert!(no_reply_yet(&mut c1));
    let durable = served.feed.durable();
    assert!(durable.offset <= before && !durable.failed);

    // Two more writers arrive during that fsync, and wait too.
    let after_b = served.wait_end_past(before);
    send(&mut c2, &["SET", "c", "3"]);
    let after_c = served.wait_end_past(after_b);
    send(&mut c3, &["SET", "d", "4"]);
    served.wait_end_past(after_c);
    assert!(no_reply_yet(&mut c2));
    assert!(no_reply_yet(&mut c3));

    // Released: b's fsync, then one fsync for c and d together.
    let syncs = served.faults.syncs();
    served.faults.hold_syncs(false);
    assert_eq!(reply(&mut c1).unwrap(), "+OK");
    assert_eq!(reply(&mut c2).unwrap(), "+OK");
    assert_eq!(reply(&mut c3).unwrap(), "+OK");
    assert_eq!(served.faults.syncs(), syncs + 2);
    assert_eq!(served.feed.durable().offset, served.feed.end_offset());
}

#[test]
fn a_failed_fsync_closes_its_waiter_and_refuses_writes_with_misconf_until_a_rewrite() {
    let served = serve("server-misconf", Fsync::Always);
    let mut c1 = served.connect();
    send(&mut c1, &["SET", "a", "1"]);
    assert_eq!(reply(&mut c1).unwrap(), "+OK");

    // The write whose fsync fails gets no reply: the connection is closed.
    served.faults.fail_syncs(true);
    send(&mut c1, &["SET", "b", "2"]);
    assert!(reply(&mut c1).is_err());

    let mut c2 = served.connect();
    send(&mut c2, &["SET", "c", "3"]);
    assert_eq!(
        reply(&mut c2).unwrap(),
        "-MISCONF Errors writing to the AOF file: Input/output error"
    );
    send(&mut c2, &["INFO", "persistence"]);
    let info = reply(&mut c2).unwrap();
    assert_eq!(info_field(&info, "aof_last_write_status"), "err");
    // Logouts still pass (none here), reads too.
    send(&mut c2, &["GET", "a"]);
    assert_eq!(reply(&mut c2).unwrap(), "1");

    // Working fsyncs alone do not lift it; a rewrite does.
    served.faults.fail_syncs(false);
    send(&mut c2, &["SET", "c", "3"]);
    assert!(reply(&mut c2).unwrap().starts_with("-MISCONF"));
    // (The automatic rewrite scheduled by the failure may be running.)
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        send(&mut c2, &["BGREWRITEAOF"]);
        let started = reply(&mut c2).unwrap();
        if started == "+Background append only file rewriting started" {
            break;
        }
        assert!(started.contains("already in progress"), "{started}");
        std::thread::yield_now();
    }
    loop {
        send(&mut c2, &["INFO", "persistence"]);
        let info = reply(&mut c2).unwrap();
        if info_field(&info, "aof_last_write_status") == "ok" {
            break;
        }
        assert!(Instant::now() < deadline, "no rewrite succeeded: {info}");
        std::thread::yield_now();
    }
    send(&mut c2, &["SET", "c", "3"]);
    assert_eq!(reply(&mut c2).unwrap(), "+OK");
}

#[test]
fn a_session_read_answers_while_the_log_cannot_be_written_but_a_logout_waits() {
    let (clock, manual) = crate::clock::Clock::manual(1_700_000_000_000);
    let served = serve_at("server-session-read", Fsync::Always, clock);
    let mut c1 = served.connect();
    send(&mut c1, &["SESSION.CREATE", "USER", "alice"]);
    let id = reply(&mut c1).unwrap();
    served.faults.fail_syncs(true);
    send(&mut c1, &["SET", "b", "2"]);
    assert!(reply(&mut c1).is_err(), "a write is not acknowledged");

    // The read refreshes the idle timer: a change, whose frame cannot reach the disk.
    manual.advance(1_000);
    let before = served.feed.end_offset();
    let mut c2 = served.connect();
    send(&mut c2, &["SESSION.GET", &id]);
    assert_eq!(reply(&mut c2).unwrap(), "*0", "the session is read");
    assert!(
        served.feed.end_offset() > before,
        "the refresh was a change"
    );
    send(&mut c2, &["PING"]);
    assert_eq!(
        reply(&mut c2).unwrap(),
        "+PONG",
        "the connection stays open"
    );

    // A logout is not acknowledged until it is on disk: its client is closed unanswered.
    send(&mut c2, &["SESSION.DESTROY", &id]);
    assert!(reply(&mut c2).is_err());
}

#[test]
fn a_long_command_does_not_hold_back_the_writes_pipelined_before_it() {
    // KEYS, and SUNIONSTORE (flagged `denyoom` as SET is, but it reads whole sets), each wait
    // for a shard lock the test holds: commands as long as the test wants.
    let long: [(&[&str], &[&str]); 2] = [
        (&["KEYS", "*"], &["*1", "KEY"]),
        (&["SUNIONSTORE", "dest", "held"], &[":0"]),
    ];
    for (command, replies) in long {
        let served = serve("server-long-command", Fsync::Everysec);
        let store = served.dbs.first();
        let blocked = "held";
        let key = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| store.shard_of_key(k.as_bytes()) != store.shard_of_key(blocked.as_bytes()))
            .unwrap();
        let (locked, is_locked) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let dbs = Arc::clone(&served.dbs);
        let holder = std::thread::spawn(move || {
            let store = dbs.first();
            store.upsert(blocked.as_bytes(), store.now_ms(), |_| {
                locked.send(()).unwrap();
                let _ = released.recv();
                (None, ())
            });
        });
        is_locked.recv().unwrap();

        let mut client = served.connect();
        let mut published = served.feed.published();
        let before = served.feed.end_offset();
        pipeline(&mut client, &[&["SET", &key, "v"], command]);
        let after = served.wait_end_past(before);
        // The SET's change reaches the stream while the long command still runs: it was sent
        // before it.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let reached = runtime.block_on(async {
            let wait = published.wait_for(|end| *end >= after);
            tokio::time::timeout(Duration::from_secs(10), wait)
                .await
                .is_ok_and(|waited| waited.is_ok())
        });
        assert!(reached, "published only after {command:?}");
        assert!(
            no_reply_yet(&mut client),
            "{command:?} still waits for the lock"
        );
        release.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(reply(&mut client).unwrap(), "+OK");
        for expected in replies {
            let expected = if *expected == "KEY" {
                key.as_str()
            } else {
                expected
            };
            assert_eq!(reply(&mut client).unwrap(), expected, "{command:?}");
        }
    }
}
