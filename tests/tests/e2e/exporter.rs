//! Debian's `prometheus-redis-exporter` (oliver006/redis_exporter) scraping sessiond, as an
//! operator runs it: every scrape succeeds, nothing it sends gets an error reply, and what it
//! reports agrees with INFO. Skipped with a message where the package is not installed
//! (`.ci/run` installs it).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis::Commands;
use sessiond_tests::{info_field, info_number, TestServer, IO_TIMEOUT};

const EXPORTER: &str = "prometheus-redis-exporter";

/// The exporter process, killed when dropped.
struct Exporter {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Exporter {
    /// Starts the exporter against `redis`, on a free port of 127.0.0.1 (the exporter cannot
    /// say which port it took, so one is reserved here and released just before).
    fn start(redis: SocketAddr) -> Option<Exporter> {
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|probe| probe.local_addr())
            .expect("reserve a port");
        let child = Command::new(EXPORTER)
            .arg("-redis.addr")
            .arg(format!("redis://{redis}"))
            .arg("-web.listen-address")
            .arg(addr.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Exporter { child, addr })
    }

    /// One scrape of `/metrics` (HTTP/1.0: the body ends with the connection), once the
    /// exporter listens; its samples by name with labels.
    fn scrape(&mut self) -> HashMap<String, f64> {
        // The exporter starts listening some time after it was spawned: bounded attempts, each
        // a connection refused at once, with a short pause between.
        let mut stream = (0..500)
            .find_map(|_| {
                TcpStream::connect(self.addr).ok().or_else(|| {
                    assert!(
                        self.child.try_wait().expect("poll the exporter").is_none(),
                        "the exporter exited"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                    None
                })
            })
            .expect("the exporter listens");
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set a read timeout");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .expect("send the request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read the response");
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        body.lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect()
    }
}

fn sample(samples: &HashMap<String, f64>, name: &str) -> f64 {
    *samples
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing from the exporter's scrape"))
}

#[test]
fn prometheus_redis_exporter_scrapes_without_an_error_and_agrees_with_info() {
    if Command::new(EXPORTER).arg("-version").output().is_err() {
        eprintln!(
            "{EXPORTER} is not installed (Debian package prometheus-redis-exporter): skipped"
        );
        return;
    }
    let server = TestServer::start();
    let mut con = server.client();
    for i in 0..25 {
        let _: () = con.set(format!("key:{i}"), i).unwrap();
    }
    let _: () = con.set_ex("volatile", 1, 100).unwrap();
    let id: String = redis::cmd("SESSION.CREATE")
        .arg("USER")
        .arg("ada")
        .query(&mut con)
        .unwrap();
    assert!(!id.is_empty());
    // One error of ours, so that the scrape's error counts are checked to be only it.
    let failed: redis::RedisResult<i64> = con.incr("volatile", 1);
    assert!(failed.is_ok(), "1 is an integer");
    let wrong: redis::RedisResult<()> = redis::cmd("NOSUCHCOMMAND").query(&mut con);
    assert!(wrong.is_err());

    let mut exporter = Exporter::start(server.addr).expect("spawn the exporter");
    let first = exporter.scrape();
    let second = exporter.scrape();

    for scrape in [&first, &second] {
        assert_eq!(sample(scrape, "redis_up"), 1.0);
        assert_eq!(
            sample(scrape, "redis_exporter_last_scrape_error{err=\"\"}"),
            0.0,
            "the exporter's last scrape failed"
        );
    }
    // Nothing the exporter sends (INFO ALL, CONFIG GET, SLOWLOG, LATENCY, CLIENT SETNAME, ...)
    // got an error reply: the only one counted is ours.
    let errorstats = server.info("errorstats");
    assert_eq!(
        info_field(&errorstats, "errorstat_ERR"),
        "count=1",
        "{errorstats}"
    );
    assert_eq!(
        errorstats
            .lines()
            .filter(|l| l.starts_with("errorstat_"))
            .count(),
        1,
        "{errorstats}"
    );
    assert_eq!(sample(&second, "redis_errors_total{err=\"ERR\"}"), 1.0);

    // What it reports is INFO's.
    let info = server.info("everything");
    assert_eq!(sample(&second, "redis_commands_total{cmd=\"set\"}"), 25.0);
    assert_eq!(sample(&second, "redis_commands_total{cmd=\"setex\"}"), 1.0);
    assert_eq!(
        sample(&second, "redis_commands_total{cmd=\"session.create\"}"),
        1.0
    );
    let keys: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(keys, 27);
    assert_eq!(sample(&second, "redis_db_keys{db=\"db0\"}"), keys as f64);
    assert_eq!(sample(&second, "redis_db_keys_expiring{db=\"db0\"}"), 2.0);
    assert_eq!(sample(&second, "redis_slowlog_length"), 0.0);
    assert_eq!(
        sample(&second, "redis_connected_clients"),
        info_number(&info, "connected_clients") as f64
    );
    assert!(sample(&second, "redis_memory_used_bytes") > 0.0);
    assert!(sample(&second, "redis_cpu_user_seconds_total") > 0.0);
    let run_id = info_field(&info, "run_id");
    assert!(
        second.keys().any(|k| k.starts_with("redis_instance_info{")
            && k.contains(&format!("run_id=\"{run_id}\""))),
        "redis_instance_info carries INFO's run_id"
    );
    assert!(
        second
            .keys()
            .any(|k| k.starts_with("redis_latency_percentiles_usec{cmd=\"set\"")),
        "latencystats reach the exporter"
    );
}
