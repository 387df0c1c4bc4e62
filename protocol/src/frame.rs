//! RESP frames and their encoding.
//!
//! A [`Frame`] is one RESP2 or RESP3 value. Bulk payloads are [`Bytes`], so a frame decoded from
//! a buffer shares the buffer's memory instead of copying it, and a value read from the store is
//! encoded without an intermediate allocation. [`Frame::encode`] writes the frame in the wire
//! format the connection negotiated: RESP3 types are downgraded to their RESP2 equivalents (a
//! map becomes a flat array, a double a bulk string, null a null bulk) the way Redis does.

use bytes::{BufMut, Bytes, BytesMut};

/// The RESP version a connection speaks; `HELLO 3` switches to [`ProtocolVersion::Resp3`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolVersion {
    /// RESP2, every connection's initial protocol.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

impl ProtocolVersion {
    /// The number `HELLO` reports for this version.
    pub fn number(self) -> i64 {
        match self {
            ProtocolVersion::Resp2 => 2,
            ProtocolVersion::Resp3 => 3,
        }
    }
}

/// One RESP value.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+OK`: a status line; must not contain CR or LF.
    Simple(Bytes),
    /// `-ERR ...`: an error line (RESP3 blob errors decode to this too).
    Error(Bytes),
    /// `:42`.
    Integer(i64),
    /// `$5\r\nhello`: a binary-safe string.
    Bulk(Bytes),
    /// `*2\r\n...`: an array.
    Array(Vec<Frame>),
    /// RESP3 `_`; in RESP2 the null bulk string `$-1`.
    Null,
    /// The null array: RESP2 `*-1`, RESP3 `_`.
    NullArray,
    /// RESP3 `%`; in RESP2 a flat array of key, value, key, value...
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~`; in RESP2 an array.
    Set(Vec<Frame>),
    /// RESP3 `,`; in RESP2 a bulk string.
    Double(f64),
    /// RESP3 `#t`/`#f`; in RESP2 the integer 1 or 0.
    Boolean(bool),
    /// RESP3 `(`; in RESP2 a bulk string.
    BigNumber(Bytes),
    /// RESP3 `=`: a string with a three-letter format (`txt`, `mkd`); in RESP2 a bulk string.
    Verbatim {
        /// The three-byte format.
        format: [u8; 3],
        /// The text.
        data: Bytes,
    },
    /// RESP3 `>`: an out-of-band push; in RESP2 an array.
    Push(Vec<Frame>),
}

impl Frame {
    /// `+OK`.
    pub const fn ok() -> Frame {
        Frame::Simple(Bytes::from_static(b"OK"))
    }

    /// A simple string from static text.
    pub const fn simple(text: &'static str) -> Frame {
        Frame::Simple(Bytes::from_static(text.as_bytes()))
    }

    /// An error reply; `message` carries the Redis prefix (`ERR`, `WRONGTYPE`, ...).
    pub fn error(message: impl Into<String>) -> Frame {
        Frame::Error(Bytes::from(message.into()))
    }

    /// A bulk string copied from `data`.
    pub fn bulk(data: impl Into<Bytes>) -> Frame {
        Frame::Bulk(data.into())
    }

    /// An array of bulk strings.
    pub fn bulk_array<I>(items: I) -> Frame
    where
        I: IntoIterator,
        I::Item: Into<Bytes>,
    {
        Frame::Array(items.into_iter().map(|b| Frame::Bulk(b.into())).collect())
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }

    /// Appends the wire encoding of this frame to `out`.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) {
        let resp3 = version == ProtocolVersion::Resp3;
        match self {
            Frame::Simple(s) => line(out, b'+', s),
            Frame::Error(e) => line(out, b'-', e),
            Frame::Integer(n) => {
                out.put_u8(b':');
                put_int(out, *n);
                out.put_slice(b"\r\n");
            }
            Frame::Bulk(data) => put_bulk(out, b'$', data),
            Frame::Array(items) => {
                put_header(out, b'*', items.len());
                for item in items {
                    item.encode(version, out);
                }
            }
            Frame::Null if resp3 => out.put_slice(b"_\r\n"),
            Frame::Null => out.put_slice(b"$-1\r\n"),
            Frame::NullArray if resp3 => out.put_slice(b"_\r\n"),
            Frame::NullArray => out.put_slice(b"*-1\r\n"),
            Frame::Map(pairs) => {
                if resp3 {
                    put_header(out, b'%', pairs.len());
                } else {
                    put_header(out, b'*', pairs.len() * 2);
                }
                for (key, value) in pairs {
                    key.encode(version, out);
                    value.encode(version, out);
                }
            }
            Frame::Set(items) | Frame::Push(items) => {
                let tag = match (resp3, self) {
                    (false, _) => b'*',
                    (true, Frame::Set(_)) => b'~',
                    (true, _) => b'>',
                };
                put_header(out, tag, items.len());
                for item in items {
                    item.encode(version, out);
                }
            }
            Frame::Double(d) => {
                let text = format_double(*d);
                if resp3 {
                    line(out, b',', text.as_bytes());
                } else {
                    put_bulk(out, b'$', text.as_bytes());
                }
            }
            Frame::Boolean(b) if resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            Frame::Boolean(b) => out.put_slice(if *b { b":1\r\n" } else { b":0\r\n" }),
            Frame::BigNumber(n) if resp3 => line(out, b'(', n),
            Frame::BigNumber(n) => put_bulk(out, b'$', n),
            Frame::Verbatim { format, data } if resp3 => {
                put_header(out, b'=', data.len() + 4);
                out.put_slice(format);
                out.put_u8(b':');
                out.put_slice(data);
                out.put_slice(b"\r\n");
            }
            Frame::Verbatim { data, .. } => put_bulk(out, b'$', data),
        }
    }

    /// The encoding of this frame as a new buffer.
    pub fn to_bytes(&self, version: ProtocolVersion) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(version, &mut out);
        out.freeze()
    }
}

/// Formats a double the way Redis does on the wire (`inf`, `-inf`, `nan`, shortest round trip).
pub fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".to_owned()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{d}")
    }
}

/// Appends `$<len>\r\n<data>\r\n` (or another length-prefixed tag) to `out`.
pub fn put_bulk(out: &mut BytesMut, tag: u8, data: &[u8]) {
    put_header(out, tag, data.len());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Appends `<tag><len>\r\n` to `out`: an aggregate's header (`*3`), or the start of a
/// length-prefixed string.
pub fn put_header(out: &mut BytesMut, tag: u8, len: usize) {
    out.put_u8(tag);
    let mut buf = itoa::Buffer::new();
    out.put_slice(buf.format(len).as_bytes());
    out.put_slice(b"\r\n");
}

fn line(out: &mut BytesMut, tag: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(tag);
    // A status or error line cannot carry CR or LF; replace them so one reply stays one line.
    for &b in text {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
}

fn put_int(out: &mut BytesMut, n: i64) {
    let mut buf = itoa::Buffer::new();
    out.put_slice(buf.format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(frame: &Frame, version: ProtocolVersion) -> Vec<u8> {
        frame.to_bytes(version).to_vec()
    }

    #[test]
    fn resp2_downgrades_resp3_types() {
        let v2 = ProtocolVersion::Resp2;
        assert_eq!(enc(&Frame::Null, v2), b"$-1\r\n");
        assert_eq!(enc(&Frame::NullArray, v2), b"*-1\r\n");
        assert_eq!(enc(&Frame::Boolean(true), v2), b":1\r\n");
        assert_eq!(enc(&Frame::Double(1.5), v2), b"$3\r\n1.5\r\n");
        let map = Frame::Map(vec![(Frame::bulk("a"), Frame::Integer(1))]);
        assert_eq!(enc(&map, v2), b"*2\r\n$1\r\na\r\n:1\r\n");
    }

    #[test]
    fn resp3_native_types() {
        let v3 = ProtocolVersion::Resp3;
        assert_eq!(enc(&Frame::Null, v3), b"_\r\n");
        assert_eq!(enc(&Frame::Boolean(false), v3), b"#f\r\n");
        assert_eq!(enc(&Frame::Double(f64::INFINITY), v3), b",inf\r\n");
        let map = Frame::Map(vec![(Frame::bulk("a"), Frame::Integer(1))]);
        assert_eq!(enc(&map, v3), b"%1\r\n$1\r\na\r\n:1\r\n");
        let verbatim = Frame::Verbatim {
            format: *b"txt",
            data: Bytes::from_static(b"hi"),
        };
        assert_eq!(enc(&verbatim, v3), b"=6\r\ntxt:hi\r\n");
    }

    #[test]
    fn status_lines_never_break() {
        let frame = Frame::error("ERR bad\r\nthing");
        assert_eq!(enc(&frame, ProtocolVersion::Resp2), b"-ERR bad  thing\r\n");
    }
}
