//! The server-side request decoder on arbitrary bytes, whole and split at an arbitrary point.
//!
//! Input: two bytes choosing the split point (little-endian, modulo the stream's length + 1),
//! then the byte stream a client sends. The stream is decoded twice with tight `Limits` — in one
//! read, and in two reads cut at the split point — and must never panic; every command decoded
//! must respect the limits; while a command is incomplete the buffered input stays bounded; and
//! both runs must decode the same commands up to the point where either stops on an error (the
//! query-buffer limit may legitimately stop the two-read run earlier, as it would a real
//! connection).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sessiond_protocol::{Limits, ProtocolError, RequestDecoder};

/// Tight enough that every limit is reachable with small inputs.
const LIMITS: Limits = Limits {
    max_bulk_len: 64,
    max_args: 8,
    max_inline_len: 128,
    max_query_buffer: 512,
    max_depth: 4,
};

/// What decoding a stream delivered in `chunks` produced.
struct Run {
    commands: Vec<Vec<Bytes>>,
    error: Option<ProtocolError>,
    partial: bool,
}

fn run(chunks: &[&[u8]]) -> Run {
    let mut decoder = RequestDecoder::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(args)) => {
                    assert!(buf.len() < before, "a command was decoded from no input");
                    assert!(!args.is_empty(), "an empty command was returned");
                    assert!(args.len() <= LIMITS.max_args, "{} arguments", args.len());
                    for arg in &args {
                        assert!(
                            arg.len() <= LIMITS.max_bulk_len,
                            "argument of {}",
                            arg.len()
                        );
                    }
                    commands.push(args);
                }
                Ok(None) => {
                    let bound = LIMITS.max_query_buffer.max(LIMITS.max_inline_len);
                    assert!(
                        buf.len() <= bound,
                        "{} bytes left buffered for an incomplete command",
                        buf.len()
                    );
                    break;
                }
                Err(error) => {
                    // The message is what the client gets; building it must not panic either.
                    let _ = error.to_string();
                    return Run {
                        commands,
                        error: Some(error),
                        partial: decoder.has_partial(),
                    };
                }
            }
        }
    }
    Run {
        commands,
        error: None,
        partial: decoder.has_partial(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((split, stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let split = usize::from(u16::from_le_bytes(*split)) % (stream.len() + 1);
    let (head, tail) = stream.split_at(split);
    let whole = run(&[stream]);
    let parts = run(&[head, tail]);
    let common = whole.commands.len().min(parts.commands.len());
    assert_eq!(
        whole.commands[..common],
        parts.commands[..common],
        "one read and two reads decode different commands"
    );
    if whole.error.is_none() && parts.error.is_none() {
        assert_eq!(whole.commands, parts.commands, "different commands");
        assert_eq!(whole.partial, parts.partial, "different pending state");
    }
});
