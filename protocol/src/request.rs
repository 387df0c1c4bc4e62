//! Incremental decoding of client commands: RESP arrays of bulk strings, and inline commands.
//!
//! A command arrives as `*<n>\r\n` followed by `n` bulk strings, possibly spread over many reads.
//! [`RequestDecoder`] is resumable: every complete argument is split off the buffer as a
//! [`Bytes`] that shares the read buffer's memory (no copy), and a command that is still
//! incomplete keeps its finished arguments, so a large command is never re-scanned from its
//! start on every read. "Incomplete" is `Ok(None)`, never an error.
//!
//! Anything that does not start with `*` is an inline command (`PING\r\n` typed in telnet),
//! split on whitespace with Redis's quoting rules.

use bytes::{Buf, Bytes, BytesMut};

use crate::{Limits, ProtocolError, ProtocolErrorKind};

/// The longest `*<n>` or `$<n>` header line accepted before it is declared malformed; a valid one
/// fits in 22 bytes, so this only guards against a peer that never sends CRLF.
const MAX_HEADER_LINE: usize = 64 * 1024;

/// Decodes client commands from a read buffer; see the module documentation.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    limits: Limits,
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    remaining: usize,
    args: Vec<Bytes>,
    /// Bytes held by `args`, counted against the query buffer limit.
    held: usize,
}

impl RequestDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> RequestDecoder {
        RequestDecoder {
            limits,
            pending: None,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Replaces the limits, e.g. when a connection authenticates.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Whether part of a command has been consumed but the command is not complete yet.
    pub fn has_partial(&self) -> bool {
        self.pending.is_some()
    }

    /// Decodes the next complete command from `buf`, consuming its bytes.
    ///
    /// Returns `Ok(None)` when more input is needed. Empty commands (`*0`, `*-1`, blank inline
    /// lines) are skipped as Redis skips them. The returned vector is never empty.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            if self.pending.is_none() {
                let Some(&first) = buf.first() else {
                    return Ok(None);
                };
                if first != b'*' {
                    match self.decode_inline(buf)? {
                        Some(args) if args.is_empty() => continue,
                        other => return Ok(other),
                    }
                }
                let Some(count) = self.header(buf, ProtocolErrorKind::MultibulkCountTooBig)? else {
                    return Ok(None);
                };
                let count = match count {
                    Ok(n) if n <= 0 => continue,
                    Ok(n) if (n as u64) <= self.limits.max_args as u64 => n as usize,
                    _ => {
                        return Err(ProtocolError::new(
                            ProtocolErrorKind::InvalidMultibulkLength,
                        ))
                    }
                };
                self.pending = Some(Pending {
                    remaining: count,
                    // A peer announcing a million arguments must send them before we hold room
                    // for them.
                    args: Vec::with_capacity(count.min(64)),
                    held: 0,
                });
            }
            return self.decode_args(buf);
        }
    }

    fn decode_args(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let limits = self.limits;
        let Some(pending) = self.pending.as_mut() else {
            return Ok(None);
        };
        while pending.remaining > 0 {
            let Some(&first) = buf.first() else {
                return Ok(None);
            };
            if first != b'$' {
                return Err(ProtocolError::new(ProtocolErrorKind::ExpectedBulk(first)));
            }
            let Some((len, header_len)) = bulk_header(buf, &limits)? else {
                check_query_buffer(buf.len() + pending.held, &limits)?;
                return Ok(None);
            };
            if buf.len() < header_len + len + 2 {
                check_query_buffer(buf.len() + pending.held, &limits)?;
                return Ok(None);
            }
            if &buf[header_len + len..header_len + len + 2] != b"\r\n" {
                return Err(ProtocolError::new(ProtocolErrorKind::MissingCrlf));
            }
            buf.advance(header_len);
            pending.args.push(buf.split_to(len).freeze());
            buf.advance(2);
            pending.held += len;
            pending.remaining -= 1;
        }
        Ok(self.pending.take().map(|p| p.args))
    }

    /// Parses a `*<n>\r\n` line, consuming it. `Ok(None)`: the line is not complete yet;
    /// `Ok(Some(Err(())))`: the number is malformed.
    fn header(
        &self,
        buf: &mut BytesMut,
        too_long: ProtocolErrorKind,
    ) -> Result<Option<Result<i64, ()>>, ProtocolError> {
        let Some(cr) = find_cr(buf, MAX_HEADER_LINE) else {
            if buf.len() > MAX_HEADER_LINE {
                return Err(ProtocolError::new(too_long));
            }
            check_query_buffer(buf.len(), &self.limits)?;
            return Ok(None);
        };
        if buf.len() < cr + 2 {
            // The CR is in but not its LF: still input held for an incomplete command.
            check_query_buffer(buf.len(), &self.limits)?;
            return Ok(None);
        }
        let number = parse_i64(&buf[1..cr]).ok_or(());
        buf.advance(cr + 2);
        Ok(Some(number))
    }

    fn decode_inline(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let Some(newline) = memchr::memchr(b'\n', buf) else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ProtocolError::new(ProtocolErrorKind::InlineTooBig));
            }
            return Ok(None);
        };
        if newline > self.limits.max_inline_len {
            return Err(ProtocolError::new(ProtocolErrorKind::InlineTooBig));
        }
        let line = buf.split_to(newline + 1);
        let mut text = &line[..newline];
        if let [rest @ .., b'\r'] = text {
            text = rest;
        }
        let args = split_inline(text)?;
        if args.len() > self.limits.max_args {
            return Err(ProtocolError::new(
                ProtocolErrorKind::InvalidMultibulkLength,
            ));
        }
        if args.iter().any(|a| a.len() > self.limits.max_bulk_len) {
            return Err(ProtocolError::new(ProtocolErrorKind::InvalidBulkLength));
        }
        Ok(Some(args))
    }
}

/// Parses `$<len>\r\n` at the start of `buf` without consuming it: `(len, header length)`.
fn bulk_header(buf: &[u8], limits: &Limits) -> Result<Option<(usize, usize)>, ProtocolError> {
    let Some(cr) = find_cr(buf, MAX_HEADER_LINE) else {
        if buf.len() > MAX_HEADER_LINE {
            return Err(ProtocolError::new(ProtocolErrorKind::BulkCountTooBig));
        }
        return Ok(None);
    };
    if buf.len() < cr + 2 {
        return Ok(None);
    }
    match parse_i64(&buf[1..cr]) {
        Some(len) if len >= 0 && (len as u64) <= limits.max_bulk_len as u64 => {
            Ok(Some((len as usize, cr + 2)))
        }
        _ => Err(ProtocolError::new(ProtocolErrorKind::InvalidBulkLength)),
    }
}

fn check_query_buffer(buffered: usize, limits: &Limits) -> Result<(), ProtocolError> {
    if buffered > limits.max_query_buffer {
        return Err(ProtocolError::new(ProtocolErrorKind::QueryBufferLimit));
    }
    Ok(())
}

fn find_cr(buf: &[u8], within: usize) -> Option<usize> {
    let window = &buf[..buf.len().min(within + 1)];
    memchr::memchr(b'\r', window)
}

/// Parses a decimal `i64` the strict way Redis's `string2ll` does: optional `-`, digits, no
/// leading `+`, no spaces, no leading zeros, no overflow.
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    if negative && digits == b"0" {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(d - b'0');
        value = if negative {
            value.checked_mul(10)?.checked_sub(digit)?
        } else {
            value.checked_mul(10)?.checked_add(digit)?
        };
    }
    Some(value)
}

/// Splits an inline command line into arguments like Redis's `sdssplitargs`: whitespace
/// separates, `"..."` understands `\n \r \t \b \a \\ \"` and `\xHH`, `'...'` understands `\'`,
/// and a closing quote must be followed by whitespace or the end of the line.
fn split_inline(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    let unbalanced = || ProtocolError::new(ProtocolErrorKind::UnbalancedQuotes);
    let mut args = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            break;
        }
        let mut arg = Vec::new();
        match line[i] {
            b'"' => {
                i += 1;
                loop {
                    let Some(&c) = line.get(i) else {
                        return Err(unbalanced());
                    };
                    match c {
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\\'
                            if line.get(i + 1) == Some(&b'x')
                                && hex_pair(line.get(i + 2..i + 4)).is_some() =>
                        {
                            arg.extend(hex_pair(line.get(i + 2..i + 4)));
                            i += 4;
                        }
                        b'\\' if i + 1 < line.len() => {
                            arg.push(match line[i + 1] {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 0x08,
                                b'a' => 0x07,
                                other => other,
                            });
                            i += 2;
                        }
                        _ => {
                            arg.push(c);
                            i += 1;
                        }
                    }
                }
                if i < line.len() && !line[i].is_ascii_whitespace() {
                    return Err(unbalanced());
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    let Some(&c) = line.get(i) else {
                        return Err(unbalanced());
                    };
                    match c {
                        b'\'' => {
                            i += 1;
                            break;
                        }
                        b'\\' if line.get(i + 1) == Some(&b'\'') => {
                            arg.push(b'\'');
                            i += 2;
                        }
                        _ => {
                            arg.push(c);
                            i += 1;
                        }
                    }
                }
                if i < line.len() && !line[i].is_ascii_whitespace() {
                    return Err(unbalanced());
                }
            }
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    arg.push(line[i]);
                    i += 1;
                }
            }
        }
        args.push(Bytes::from(arg));
    }
    Ok(args)
}

fn hex_pair(pair: Option<&[u8]>) -> Option<u8> {
    let [hi, lo] = pair? else {
        return None;
    };
    let value = |c: u8| (c as char).to_digit(16);
    Some((value(*hi)? * 16 + value(*lo)?) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtocolError> {
        let mut decoder = RequestDecoder::default();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(args) = decoder.decode(&mut buf)? {
            out.push(args);
        }
        Ok(out)
    }

    fn kind(input: &[u8]) -> ProtocolErrorKind {
        match decode_all(input) {
            Err(e) => e.kind(),
            Ok(v) => panic!("expected an error, decoded {v:?}"),
        }
    }

    #[test]
    fn decodes_pipelined_commands() {
        let got = decode_all(b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").unwrap();
        assert_eq!(
            got,
            vec![
                vec![Bytes::from("PING")],
                vec![Bytes::from("GET"), Bytes::from("k")]
            ]
        );
    }

    #[test]
    fn empty_and_negative_counts_are_skipped() {
        let got = decode_all(b"*0\r\n*-10\r\n\r\n*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(got, vec![vec![Bytes::from("PING")]]);
    }

    #[test]
    fn malformed_headers_use_redis_wording() {
        assert_eq!(
            kind(b"*3000000000\r\n"),
            ProtocolErrorKind::InvalidMultibulkLength
        );
        assert_eq!(kind(b"*abc\r\n"), ProtocolErrorKind::InvalidMultibulkLength);
        assert_eq!(
            kind(b"*1\r\n$-10\r\n"),
            ProtocolErrorKind::InvalidBulkLength
        );
        assert_eq!(
            kind(b"*1\r\n$2000000000\r\n"),
            ProtocolErrorKind::InvalidBulkLength
        );
        assert_eq!(
            kind(b"*1\r\n$blabla\r\n"),
            ProtocolErrorKind::InvalidBulkLength
        );
        assert_eq!(
            kind(b"*1\r\n4\r\nPING\r\n"),
            ProtocolErrorKind::ExpectedBulk(b'4')
        );
        assert_eq!(kind(b"*1\r\n$4\r\nPINGxx"), ProtocolErrorKind::MissingCrlf);
        let err = decode_all(b"*1\r\nx").unwrap_err();
        assert_eq!(err.to_string(), "Protocol error: expected '$', got 'x'");
    }

    #[test]
    fn inline_commands_follow_sdssplitargs() {
        let got = decode_all(b"set k \"a b\\x41\\n\" 'it\\'s'\r\nPING\n   \r\n").unwrap();
        assert_eq!(
            got,
            vec![
                vec![
                    Bytes::from("set"),
                    Bytes::from("k"),
                    Bytes::from("a bA\n"),
                    Bytes::from("it's")
                ],
                vec![Bytes::from("PING")],
            ]
        );
        assert_eq!(kind(b"set \"abc\r\n"), ProtocolErrorKind::UnbalancedQuotes);
        assert_eq!(
            kind(b"set \"abc\"x\r\n"),
            ProtocolErrorKind::UnbalancedQuotes
        );
    }

    #[test]
    fn inline_length_is_bounded() {
        let mut decoder = RequestDecoder::new(Limits {
            max_inline_len: 8,
            ..Limits::default()
        });
        let mut buf = BytesMut::from(&b"PINGPINGPING"[..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap_err().kind(),
            ProtocolErrorKind::InlineTooBig
        );
    }

    #[test]
    fn resumes_without_rescanning_finished_arguments() {
        let mut decoder = RequestDecoder::default();
        let mut buf = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhel"[..]);
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        assert!(decoder.has_partial());
        // The finished arguments left the buffer; only the partial bulk remains.
        assert_eq!(&buf[..], b"$5\r\nhel");
        buf.extend_from_slice(b"lo\r\n");
        let args = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(args[2], Bytes::from("hello"));
    }

    #[test]
    fn query_buffer_counts_held_arguments() {
        let limits = Limits {
            max_query_buffer: 10,
            ..Limits::default()
        };
        let mut decoder = RequestDecoder::new(limits);
        let mut buf = BytesMut::from(&b"*3\r\n$8\r\nAAAAAAAA\r\n$8\r\nBBB"[..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap_err().kind(),
            ProtocolErrorKind::QueryBufferLimit
        );
    }

    #[test]
    fn parse_i64_is_strict() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        for bad in [&b""[..], b"-", b"+1", b" 1", b"01", b"-0", b"1.0", b"1e3"] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }
}
