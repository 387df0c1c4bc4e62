//! The reply frame decoder (`FrameDecoder`, what a client runs) on arbitrary bytes.
//!
//! Every frame it decodes must re-encode (RESP3) to bytes that decode again, and that second
//! decoding must re-encode to the same bytes: decoding normalises (attributes are dropped, `!`
//! becomes `-`), but only once. The same stream fed in two reads cut at an arbitrary point must
//! decode to the same frames. With tight `Limits`, and never a panic.
//!
//! Input: two bytes choosing the split point (little-endian, modulo the stream's length + 1),
//! then the stream.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sessiond_protocol::{Frame, FrameDecoder, Limits, ProtocolVersion};

const LIMITS: Limits = Limits {
    max_bulk_len: 256,
    max_args: 16,
    max_inline_len: 256,
    max_query_buffer: 2048,
    max_depth: 8,
};

/// The frames decoded from `chunks`, and whether decoding stopped on an error.
fn run(chunks: &[&[u8]]) -> (Vec<Frame>, bool) {
    let mut decoder = FrameDecoder::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(buf.len() < before, "a frame was decoded from no input");
                    frames.push(frame);
                }
                Ok(None) => {
                    assert!(
                        buf.len() <= LIMITS.max_query_buffer,
                        "{} bytes held",
                        buf.len()
                    );
                    break;
                }
                Err(error) => {
                    let _ = error.to_string();
                    return (frames, true);
                }
            }
        }
    }
    (frames, false)
}

fn encode(frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    frame.encode(ProtocolVersion::Resp3, &mut out);
    out
}

fn decode_one(wire: &BytesMut) -> Frame {
    let mut buf = wire.clone();
    let frame = FrameDecoder::new(LIMITS)
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("re-encoded frame {wire:?} does not decode: {e}"))
        .unwrap_or_else(|| panic!("re-encoded frame {wire:?} is incomplete"));
    assert!(
        buf.is_empty(),
        "re-encoded frame {wire:?} has bytes left over"
    );
    frame
}

fuzz_target!(|data: &[u8]| {
    let Some((split, stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let split = usize::from(u16::from_le_bytes(*split)) % (stream.len() + 1);
    let (head, tail) = stream.split_at(split);
    let (frames, whole_failed) = run(&[stream]);
    let (split_frames, split_failed) = run(&[head, tail]);
    assert_eq!(
        whole_failed, split_failed,
        "one read and two reads disagree"
    );
    // Frames are compared through their encoding: a NaN double is not equal to itself.
    let whole_wire: Vec<_> = frames.iter().map(encode).collect();
    let split_wire: Vec<_> = split_frames.iter().map(encode).collect();
    assert_eq!(
        whole_wire, split_wire,
        "one read and two reads decode differently"
    );
    for wire in &whole_wire {
        let again = encode(&decode_one(wire));
        assert_eq!(wire, &again, "re-encoding is not stable");
    }
});
