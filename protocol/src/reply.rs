//! Incremental decoding of arbitrary RESP2/RESP3 frames, as a client reads replies.
//!
//! Decoding is done in two passes, as mini-redis does: [`FrameDecoder`] first *checks* that a
//! whole frame is buffered (a scan over the bytes that allocates nothing), then splits exactly
//! that frame off the buffer and builds the [`Frame`], whose bulk payloads are slices of the split
//! buffer rather than copies. An incomplete frame is `Ok(None)`: read more.

use bytes::{Buf, Bytes, BytesMut};

use crate::request::parse_i64;
use crate::{Frame, Limits, ProtocolError, ProtocolErrorKind};

/// Decodes whole frames of any RESP2/RESP3 type; attributes (`|`) are read and dropped.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    limits: Limits,
}

impl FrameDecoder {
    /// A decoder enforcing `limits` (bulk length, elements per aggregate, nesting depth).
    pub fn new(limits: Limits) -> FrameDecoder {
        FrameDecoder { limits }
    }

    /// Decodes the next complete frame from `buf`, consuming its bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        let Some(end) = scan(buf, 0, 0, &self.limits)? else {
            if buf.len() > self.limits.max_query_buffer {
                return Err(ProtocolError::new(ProtocolErrorKind::QueryBufferLimit));
            }
            return Ok(None);
        };
        let mut frame = buf.split_to(end).freeze();
        build(&mut frame)
    }
}

fn err(kind: ProtocolErrorKind) -> ProtocolError {
    ProtocolError::new(kind)
}

/// The end of the line starting at `pos` (the index of its CR), if the whole line with its LF is
/// buffered.
fn line_end(buf: &[u8], pos: usize) -> Result<Option<usize>, ProtocolError> {
    let Some(rest) = buf.get(pos..) else {
        return Ok(None);
    };
    match memchr::memchr(b'\r', rest) {
        Some(cr) if pos + cr + 1 < buf.len() => {
            if buf[pos + cr + 1] != b'\n' {
                return Err(err(ProtocolErrorKind::InvalidLine));
            }
            Ok(Some(pos + cr))
        }
        Some(_) => Ok(None),
        None if rest.len() > 64 * 1024 => Err(err(ProtocolErrorKind::InvalidLine)),
        None => Ok(None),
    }
}

/// Checks that a whole frame starts at `pos`; returns the index just past it.
fn scan(
    buf: &[u8],
    pos: usize,
    depth: usize,
    limits: &Limits,
) -> Result<Option<usize>, ProtocolError> {
    let Some(&tag) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(cr) = line_end(buf, pos + 1)? else {
        return Ok(None);
    };
    let line = &buf[pos + 1..cr];
    let after = cr + 2;
    match tag {
        b'+' | b'-' => Ok(Some(after)),
        b':' => parse_i64(line)
            .map(|_| Some(after))
            .ok_or(err(ProtocolErrorKind::InvalidLine)),
        b'_' if line.is_empty() => Ok(Some(after)),
        b'#' if line == b"t" || line == b"f" => Ok(Some(after)),
        b',' => parse_double(line)
            .map(|_| Some(after))
            .ok_or(err(ProtocolErrorKind::InvalidLine)),
        b'(' if is_big_number(line) => Ok(Some(after)),
        b'$' | b'!' | b'=' => {
            let len = parse_i64(line).ok_or(err(ProtocolErrorKind::InvalidBulkLength))?;
            if len == -1 && tag == b'$' {
                return Ok(Some(after));
            }
            if len < 0 || len as u64 > limits.max_bulk_len as u64 || (tag == b'=' && len < 4) {
                return Err(err(ProtocolErrorKind::InvalidBulkLength));
            }
            let end = after + len as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(err(ProtocolErrorKind::MissingCrlf));
            }
            Ok(Some(end + 2))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count = parse_i64(line).ok_or(err(ProtocolErrorKind::InvalidMultibulkLength))?;
            if count == -1 && tag == b'*' {
                return Ok(Some(after));
            }
            if count < 0 || count as u64 > limits.max_args as u64 {
                return Err(err(ProtocolErrorKind::InvalidMultibulkLength));
            }
            if depth >= limits.max_depth {
                return Err(err(ProtocolErrorKind::TooDeep));
            }
            let elements = if tag == b'%' || tag == b'|' {
                count as usize * 2
            } else {
                count as usize
            };
            let mut next = after;
            for _ in 0..elements {
                match scan(buf, next, depth + 1, limits)? {
                    Some(end) => next = end,
                    None => return Ok(None),
                }
            }
            if tag == b'|' {
                // An attribute annotates the frame that follows it. That frame counts as nested
                // in the attribute, so a chain of attributes meets the depth limit instead of
                // recursing once per attribute until the stack overflows.
                return scan(buf, next, depth + 1, limits);
            }
            Ok(Some(next))
        }
        b'_' | b'#' | b'(' => Err(err(ProtocolErrorKind::InvalidLine)),
        other => Err(err(ProtocolErrorKind::UnknownType(other))),
    }
}

fn is_big_number(line: &[u8]) -> bool {
    let digits = line.strip_prefix(b"-").unwrap_or(line);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

fn parse_double(line: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(line).ok()?;
    match text {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" | "-nan" => Some(f64::NAN),
        _ if text
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

/// Builds the frame at the start of `src`, which [`scan`] has validated, advancing past it.
fn build(src: &mut Bytes) -> Result<Option<Frame>, ProtocolError> {
    build_one(src).map(Some)
}

fn take_line(src: &mut Bytes) -> Result<Bytes, ProtocolError> {
    let cr = memchr::memchr(b'\r', src).ok_or(err(ProtocolErrorKind::InvalidLine))?;
    let line = src.split_to(cr);
    src.advance(2.min(src.len()));
    Ok(line)
}

fn build_one(src: &mut Bytes) -> Result<Frame, ProtocolError> {
    if src.is_empty() {
        return Err(err(ProtocolErrorKind::InvalidLine));
    }
    let tag = src[0];
    src.advance(1);
    let line = take_line(src)?;
    let number = || parse_i64(&line).ok_or(err(ProtocolErrorKind::InvalidLine));
    let frame = match tag {
        b'+' => Frame::Simple(line),
        b'-' => Frame::Error(line),
        b':' => Frame::Integer(number()?),
        b'_' => Frame::Null,
        b'#' => Frame::Boolean(&line[..] == b"t"),
        b',' => Frame::Double(parse_double(&line).ok_or(err(ProtocolErrorKind::InvalidLine))?),
        b'(' => Frame::BigNumber(line),
        b'$' | b'!' | b'=' => {
            let len = number()?;
            if len < 0 {
                return Ok(Frame::Null);
            }
            let len = len as usize;
            if src.len() < len + 2 {
                return Err(err(ProtocolErrorKind::InvalidBulkLength));
            }
            let data = src.split_to(len);
            src.advance(2);
            match tag {
                b'$' => Frame::Bulk(data),
                b'!' => Frame::Error(data),
                _ => {
                    let mut format = [0u8; 3];
                    format
                        .copy_from_slice(data.get(..3).ok_or(err(ProtocolErrorKind::InvalidLine))?);
                    Frame::Verbatim {
                        format,
                        data: data.slice(4..),
                    }
                }
            }
        }
        b'*' | b'~' | b'>' => {
            let count = number()?;
            if count < 0 {
                return Ok(Frame::NullArray);
            }
            let items = (0..count)
                .map(|_| build_one(src))
                .collect::<Result<Vec<_>, _>>()?;
            match tag {
                b'*' => Frame::Array(items),
                b'~' => Frame::Set(items),
                _ => Frame::Push(items),
            }
        }
        b'%' | b'|' => {
            let count = number()?;
            let mut pairs = Vec::with_capacity(count.max(0) as usize);
            for _ in 0..count {
                pairs.push((build_one(src)?, build_one(src)?));
            }
            if tag == b'|' {
                return build_one(src);
            }
            Frame::Map(pairs)
        }
        other => return Err(err(ProtocolErrorKind::UnknownType(other))),
    };
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProtocolVersion;

    fn decode(input: &[u8]) -> Result<Option<Frame>, ProtocolError> {
        FrameDecoder::default().decode(&mut BytesMut::from(input))
    }

    #[test]
    fn decodes_resp3_types() {
        let input = b"%2\r\n+a\r\n,1.5\r\n$1\r\nb\r\n~2\r\n#t\r\n_\r\n";
        let frame = decode(input).unwrap().unwrap();
        assert_eq!(
            frame,
            Frame::Map(vec![
                (Frame::simple("a"), Frame::Double(1.5)),
                (
                    Frame::bulk("b"),
                    Frame::Set(vec![Frame::Boolean(true), Frame::Null])
                ),
            ])
        );
    }

    #[test]
    fn attributes_are_skipped() {
        let frame = decode(b"|1\r\n+ttl\r\n:3\r\n:42\r\n").unwrap().unwrap();
        assert_eq!(frame, Frame::Integer(42));
    }

    #[test]
    fn incomplete_is_none_and_consumes_nothing() {
        let input = &b"*2\r\n$3\r\nfoo\r\n$3\r\nba"[..];
        let mut buf = BytesMut::from(input);
        assert_eq!(FrameDecoder::default().decode(&mut buf).unwrap(), None);
        assert_eq!(&buf[..], input);
        let round = Frame::Verbatim {
            format: *b"txt",
            data: Bytes::from_static(b"x"),
        };
        assert_eq!(
            decode(&round.to_bytes(ProtocolVersion::Resp3)).unwrap(),
            Some(round)
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = "*1\r\n".repeat(100) + ":1\r\n";
        assert_eq!(
            decode(deep.as_bytes()).unwrap_err().kind(),
            ProtocolErrorKind::TooDeep
        );
    }
}
