//! publish's subscribers: connections that `SUBSCRIBE` to the run's channel before the load
//! starts and count the messages they receive, for the fan-out rate beside PUBLISH's.
//!
//! A subscriber counts whole frames without building them ([`skip_frames`]): after its
//! subscription is confirmed it receives nothing but `message` arrays, and with a thousand
//! subscribers the load generator reads a thousand times as many messages as it publishes, so
//! decoding each one would make the generator, not the server, the bound.
//!
//! At the end of the run the subscribers are given time to receive what the PUBLISH replies
//! counted (they stop when every message is in, or when none has arrived for
//! [`DRAIN_TIMEOUT`]); what never came is reported as missing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use sessiond_protocol::{ClientCodec, Frame};
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::run::{BenchError, Conn};
use crate::stats::Delivery;

/// How long the end of a run waits for a message that is owed when none arrives.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Read buffer of a subscriber (a thousand of them stay small).
const READ_CHUNK: usize = 16 * 1024;
/// Nesting a counted frame may have (a message is one array of three strings).
const MAX_DEPTH: usize = 4;

/// What the subscribers received, shared with their tasks.
#[derive(Debug, Default)]
struct Counts {
    /// Messages received, warmup included.
    all: AtomicU64,
    /// Messages received once measuring had started.
    measured: AtomicU64,
    /// The last measured message, ns after the start of measuring.
    last_ns: AtomicU64,
    /// Subscribers whose connection failed, and the first failure.
    lost: AtomicU64,
    first_error: Mutex<Option<String>>,
}

/// Subscribed connections, not yet reading.
pub(crate) struct Subscribed {
    conns: Vec<Conn>,
}

/// Subscribers reading and counting.
pub(crate) struct Subscribers {
    count: usize,
    tasks: JoinSet<()>,
    counts: Arc<Counts>,
}

impl Subscribed {
    /// Opens `subscribers` connections and subscribes each to `channel`, returning when the
    /// server has confirmed every subscription.
    pub(crate) async fn connect(
        config: &Config,
        subscribers: usize,
        channel: &[u8],
    ) -> Result<Subscribed, BenchError> {
        let mut connecting = JoinSet::new();
        for _ in 0..subscribers {
            let config = config.clone();
            let channel = channel.to_vec();
            connecting.spawn(async move {
                let mut conn = Conn::connect(&config).await?;
                conn.auth(&config).await?;
                ClientCodec::encode_command(&[&b"SUBSCRIBE"[..], &channel], &mut conn.write);
                conn.flush().await?;
                let message = match conn.reply().await? {
                    Frame::Array(items) | Frame::Push(items)
                        if items.first() == Some(&Frame::bulk("subscribe")) =>
                    {
                        // A thousand idle buffers of 64 KiB each would be memory for nothing.
                        conn.write = BytesMut::new();
                        conn.read = BytesMut::with_capacity(READ_CHUNK);
                        return Ok(conn);
                    }
                    Frame::Error(message) => String::from_utf8_lossy(&message).into_owned(),
                    other => format!("SUBSCRIBE answered {other:?}"),
                };
                Err(BenchError::Subscribe {
                    addr: config.addr.clone(),
                    message,
                })
            });
        }
        let mut conns = Vec::with_capacity(subscribers);
        while let Some(joined) = connecting.join_next().await {
            conns.push(joined.map_err(|e| BenchError::Task(e.to_string()))??);
        }
        Ok(Subscribed { conns })
    }

    /// Starts counting; messages before `measure_start` count only towards what is owed.
    pub(crate) fn start(self, measure_start: Instant) -> Subscribers {
        let counts = Arc::new(Counts::default());
        let mut tasks = JoinSet::new();
        let count = self.conns.len();
        for conn in self.conns {
            tasks.spawn(count_messages(conn, counts.clone(), measure_start));
        }
        Subscribers {
            count,
            tasks,
            counts,
        }
    }
}

impl Subscribers {
    /// Waits until the subscribers have received the `owed` messages the PUBLISH replies
    /// counted (or none arrives for [`DRAIN_TIMEOUT`], or every subscriber is lost), then
    /// closes them and reports what they received.
    /// The first failure of a subscriber's connection comes with it.
    pub(crate) async fn finish(mut self, owed: u64) -> (Delivery, Option<String>) {
        let counts = &self.counts;
        let mut last = (counts.all.load(Ordering::Relaxed), Instant::now());
        loop {
            let received = counts.all.load(Ordering::Relaxed);
            let lost = counts.lost.load(Ordering::Relaxed) as usize;
            if received >= owed || lost == self.count {
                break;
            }
            if received != last.0 {
                last = (received, Instant::now());
            } else if last.1.elapsed() >= DRAIN_TIMEOUT {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let messages = counts.measured.load(Ordering::Relaxed);
        let elapsed_s = Duration::from_nanos(counts.last_ns.load(Ordering::Relaxed)).as_secs_f64();
        let first_error = counts
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let delivery = Delivery {
            subscribers: self.count,
            messages,
            elapsed_s,
            messages_per_s: if elapsed_s > 0.0 {
                messages as f64 / elapsed_s
            } else {
                0.0
            },
            missing: owed.saturating_sub(counts.all.load(Ordering::Relaxed)),
            lost_subscribers: counts.lost.load(Ordering::Relaxed),
        };
        (delivery, first_error)
    }
}

/// Reads and counts until aborted or the connection fails.
async fn count_messages(mut conn: Conn, counts: Arc<Counts>, measure_start: Instant) {
    let failure = loop {
        conn.read.reserve(READ_CHUNK);
        match conn.stream.read_buf(&mut conn.read).await {
            Ok(0) => break format!("subscriber: {} closed the connection", conn.addr),
            Ok(_) => {}
            Err(error) => break format!("subscriber: connection to {}: {error}", conn.addr),
        }
        let messages = match skip_frames(&mut conn.read) {
            Ok(messages) => messages,
            Err(Malformed) => break format!("subscriber: malformed message from {}", conn.addr),
        };
        counts.all.fetch_add(messages, Ordering::Relaxed);
        let now = Instant::now();
        if now >= measure_start {
            counts.measured.fetch_add(messages, Ordering::Relaxed);
            let ns = (now - measure_start).as_nanos() as u64;
            counts.last_ns.fetch_max(ns, Ordering::Relaxed);
        }
    };
    counts.lost.fetch_add(1, Ordering::Relaxed);
    counts
        .first_error
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert(failure);
}

/// A frame that is not RESP2.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

/// Consumes the whole RESP2 frames at the start of `buf` and returns how many there were; a
/// partial frame at the end stays for the next read. Only the framing is checked.
pub(crate) fn skip_frames(buf: &mut BytesMut) -> Result<u64, Malformed> {
    let mut pos = 0;
    let mut frames = 0;
    while let Some(end) = frame_end(buf, pos, 0)? {
        pos = end;
        frames += 1;
    }
    buf.advance(pos);
    Ok(frames)
}

/// Where the frame starting at `pos` ends, if it is all in `buf`.
fn frame_end(buf: &[u8], pos: usize, depth: usize) -> Result<Option<usize>, Malformed> {
    let Some(&tag) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(cr) = buf[pos..].iter().position(|&b| b == b'\r') else {
        return Ok(None);
    };
    let line = &buf[pos + 1..pos + cr];
    let after = pos + cr + 2;
    if after > buf.len() {
        return Ok(None);
    }
    let number = || -> Result<i64, Malformed> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or(Malformed)
    };
    match tag {
        b'+' | b'-' | b':' => Ok(Some(after)),
        b'$' => match usize::try_from(number()?) {
            // `$-1`, the null bulk string.
            Err(_) => Ok(Some(after)),
            Ok(len) => {
                let end = after.checked_add(len).and_then(|e| e.checked_add(2));
                Ok(end.filter(|&end| end <= buf.len()))
            }
        },
        b'*' if depth < MAX_DEPTH => {
            let mut end = after;
            for _ in 0..number()?.max(0) {
                match frame_end(buf, end, depth + 1)? {
                    Some(next) => end = next,
                    None => return Ok(None),
                }
            }
            Ok(Some(end))
        }
        _ => Err(Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_frames_are_counted_and_a_partial_one_waits() {
        let message = b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\nhello\r\n";
        let wire = [
            &message[..],
            b":1\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            &message[..],
        ]
        .concat();
        for cut in 0..=wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            let first = skip_frames(&mut buf).unwrap();
            buf.extend_from_slice(&wire[cut..]);
            let second = skip_frames(&mut buf).unwrap();
            assert_eq!(first + second, 5, "cut at {cut}");
            assert!(buf.is_empty(), "cut at {cut}");
        }
        // A message whose payload holds CR LF is one frame.
        let mut buf = BytesMut::from(&b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$4\r\na\r\nb\r\n"[..]);
        assert_eq!(skip_frames(&mut buf), Ok(1));
        assert!(buf.is_empty());
    }

    #[test]
    fn what_is_not_resp2_is_refused() {
        for wire in [
            &b"?x\r\n"[..],
            b"$x\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert_eq!(
                skip_frames(&mut BytesMut::from(wire)),
                Err(Malformed),
                "{wire:?}"
            );
        }
    }
}
