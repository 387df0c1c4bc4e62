//! Property tests for the wire protocol: every frame survives an encode → decode round trip in
//! both protocol versions and whatever the read boundaries, commands survive the client codec →
//! request decoder trip, and no input, however malformed, makes either decoder panic.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use sessiond_protocol::{
    format_double, ClientCodec, Frame, FrameDecoder, ProtocolVersion, RequestDecoder,
};

/// Text a status or error line can carry: anything but CR and LF.
fn line_text() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(
        any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
        0..24,
    )
    .prop_map(Bytes::from)
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn big_number() -> impl Strategy<Value = Bytes> {
    "-?[0-9]{1,40}".prop_map(Bytes::from)
}

fn finite_double() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |d| d.is_finite()),
        Just(0.0),
        Just(-0.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        (-1_000_000i64..1_000_000).prop_map(|n| n as f64 / 8.0),
    ]
}

/// Frames of the RESP2 subset: what a RESP2 peer can say, nested.
fn resp2_frame() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        line_text().prop_map(Frame::Simple),
        line_text().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        bytes(48).prop_map(Frame::Bulk),
        Just(Frame::Null),
        Just(Frame::NullArray),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        proptest::collection::vec(inner, 0..6).prop_map(Frame::Array)
    })
}

/// Frames of every type, nested.
fn any_frame() -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        line_text().prop_map(Frame::Simple),
        line_text().prop_map(Frame::Error),
        any::<i64>().prop_map(Frame::Integer),
        bytes(48).prop_map(Frame::Bulk),
        Just(Frame::Null),
        Just(Frame::NullArray),
        finite_double().prop_map(Frame::Double),
        any::<bool>().prop_map(Frame::Boolean),
        big_number().prop_map(Frame::BigNumber),
        (any::<[u8; 3]>(), bytes(32)).prop_map(|(format, data)| Frame::Verbatim { format, data }),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Array),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Set),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Frame::Push),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
        ]
    })
}

/// What a RESP3 peer reads back: RESP3 has one null, so the null array reads as null.
fn as_resp3_reads(frame: &Frame) -> Frame {
    let all = |items: &[Frame]| items.iter().map(as_resp3_reads).collect();
    match frame {
        Frame::NullArray => Frame::Null,
        Frame::Array(items) => Frame::Array(all(items)),
        Frame::Set(items) => Frame::Set(all(items)),
        Frame::Push(items) => Frame::Push(all(items)),
        Frame::Map(pairs) => Frame::Map(
            pairs
                .iter()
                .map(|(k, v)| (as_resp3_reads(k), as_resp3_reads(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What a RESP2 peer reads back: the RESP3 types downgraded the way Redis downgrades them.
fn as_resp2_reads(frame: &Frame) -> Frame {
    let all = |items: &[Frame]| items.iter().map(as_resp2_reads).collect();
    match frame {
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => Frame::Array(all(items)),
        Frame::Map(pairs) => Frame::Array(
            pairs
                .iter()
                .flat_map(|(k, v)| [as_resp2_reads(k), as_resp2_reads(v)])
                .collect(),
        ),
        Frame::Double(d) => Frame::Bulk(Bytes::from(format_double(*d))),
        Frame::Boolean(b) => Frame::Integer(i64::from(*b)),
        Frame::BigNumber(n) => Frame::Bulk(n.clone()),
        Frame::Verbatim { data, .. } => Frame::Bulk(data.clone()),
        other => other.clone(),
    }
}

/// Decodes exactly one frame from `wire`, which must hold nothing else.
fn decode_one(wire: &[u8]) -> Frame {
    let mut buf = BytesMut::from(wire);
    let frame = FrameDecoder::default()
        .decode(&mut buf)
        .expect("well-formed frame")
        .expect("a complete frame");
    assert!(buf.is_empty(), "bytes left after the frame: {buf:?}");
    frame
}

/// Feeds `wire` split at `at`: the prefix alone must be incomplete and left untouched.
fn decode_split(wire: &[u8], at: usize) -> Frame {
    let mut decoder = FrameDecoder::default();
    let mut buf = BytesMut::from(&wire[..at]);
    assert_eq!(
        decoder.decode(&mut buf).expect("a prefix is not an error"),
        None,
        "a {at}-byte prefix decoded"
    );
    assert_eq!(buf.len(), at, "an incomplete frame consumes nothing");
    buf.extend_from_slice(&wire[at..]);
    let frame = decoder
        .decode(&mut buf)
        .expect("well-formed frame")
        .expect("a complete frame");
    assert!(buf.is_empty());
    frame
}

fn encode_command(args: &[Vec<u8>]) -> Vec<u8> {
    let mut wire = BytesMut::new();
    ClientCodec::encode_command(args, &mut wire);
    wire.to_vec()
}

fn as_bytes(args: &[Vec<u8>]) -> Vec<Bytes> {
    args.iter().map(|a| Bytes::copy_from_slice(a)).collect()
}

fn command_args() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..8)
}

/// Input that looks like RESP often enough to reach the decoders' deeper paths.
fn resp_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(&b"*"[..]),
        Just(&b"$"[..]),
        Just(&b"%"[..]),
        Just(&b"~"[..]),
        Just(&b">"[..]),
        Just(&b"|"[..]),
        Just(&b"="[..]),
        Just(&b"!"[..]),
        Just(&b"("[..]),
        Just(&b","[..]),
        Just(&b"#"[..]),
        Just(&b"_"[..]),
        Just(&b"+"[..]),
        Just(&b"-"[..]),
        Just(&b":"[..]),
        Just(&b"\r\n"[..]),
        Just(&b"\r"[..]),
        Just(&b"\n"[..]),
        Just(&b"0"[..]),
        Just(&b"1"[..]),
        Just(&b"2"[..]),
        Just(&b"4"[..]),
        Just(&b"-1"[..]),
        Just(&b"999999999999"[..]),
        Just(&b"9223372036854775808"[..]),
        Just(&b"\""[..]),
        Just(&b"'"[..]),
        Just(&b"\\x4"[..]),
        Just(&b" "[..]),
        Just(&b"t"[..]),
        Just(&b"inf"[..]),
        Just(&b"PING"[..]),
    ];
    let chunk = prop_oneof![
        3 => token.prop_map(<[u8]>::to_vec),
        1 => proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(chunk, 0..96).prop_map(|chunks| chunks.concat())
}

fn malformed_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        resp_like_bytes(),
    ]
}

/// Splits `input` into chunks of the given sizes (the last chunk takes the rest).
fn chunks<'a>(input: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = input;
    for &size in sizes {
        let (head, tail) = rest.split_at(size.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out.push(rest);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_frame_round_trips_in_resp3(frame in any_frame()) {
        let wire = frame.to_bytes(ProtocolVersion::Resp3);
        prop_assert_eq!(decode_one(&wire), as_resp3_reads(&frame));
    }

    #[test]
    fn resp2_frames_round_trip_in_resp2(frame in resp2_frame()) {
        let wire = frame.to_bytes(ProtocolVersion::Resp2);
        prop_assert_eq!(decode_one(&wire), frame);
    }

    #[test]
    fn resp3_frames_are_downgraded_in_resp2(frame in any_frame()) {
        let wire = frame.to_bytes(ProtocolVersion::Resp2);
        prop_assert_eq!(decode_one(&wire), as_resp2_reads(&frame));
    }

    #[test]
    fn frames_split_at_any_byte_decode_the_same(frame in any_frame()) {
        for version in [ProtocolVersion::Resp2, ProtocolVersion::Resp3] {
            let wire = frame.to_bytes(version);
            let whole = decode_one(&wire);
            for at in 0..wire.len() {
                prop_assert_eq!(&decode_split(&wire, at), &whole, "split at {}", at);
            }
        }
    }

    #[test]
    fn pipelined_frames_decode_in_order_whatever_the_reads(
        frames in proptest::collection::vec(any_frame(), 1..6),
        sizes in proptest::collection::vec(0usize..32, 0..16),
    ) {
        let mut wire = BytesMut::new();
        for frame in &frames {
            frame.encode(ProtocolVersion::Resp3, &mut wire);
        }
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for chunk in chunks(&wire, &sizes) {
            buf.extend_from_slice(chunk);
            while let Some(frame) = decoder.decode(&mut buf).expect("well-formed frames") {
                decoded.push(frame);
            }
        }
        prop_assert!(buf.is_empty());
        let expected: Vec<Frame> = frames.iter().map(as_resp3_reads).collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn encoded_commands_decode_to_their_arguments(args in command_args()) {
        let wire = encode_command(&args);
        let mut buf = BytesMut::from(&wire[..]);
        let mut decoder = RequestDecoder::default();
        prop_assert_eq!(decoder.decode(&mut buf).expect("well-formed command"), Some(as_bytes(&args)));
        prop_assert!(buf.is_empty());
        prop_assert!(!decoder.has_partial());
    }

    #[test]
    fn commands_split_at_any_byte_decode_the_same(args in command_args()) {
        let wire = encode_command(&args);
        for at in 0..wire.len() {
            let mut decoder = RequestDecoder::default();
            let mut buf = BytesMut::from(&wire[..at]);
            prop_assert_eq!(
                decoder.decode(&mut buf).expect("a prefix is not an error"),
                None,
                "a {}-byte prefix decoded", at
            );
            buf.extend_from_slice(&wire[at..]);
            prop_assert_eq!(
                decoder.decode(&mut buf).expect("well-formed command"),
                Some(as_bytes(&args)),
                "split at {}", at
            );
            prop_assert!(buf.is_empty());
        }
    }

    #[test]
    fn pipelined_commands_decode_in_order_whatever_the_reads(
        commands in proptest::collection::vec(command_args(), 1..6),
        sizes in proptest::collection::vec(0usize..32, 0..24),
    ) {
        let wire: Vec<u8> = commands.iter().flat_map(|args| encode_command(args)).collect();
        let mut decoder = RequestDecoder::default();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for chunk in chunks(&wire, &sizes) {
            buf.extend_from_slice(chunk);
            while let Some(args) = decoder.decode(&mut buf).expect("well-formed commands") {
                decoded.push(args);
            }
        }
        prop_assert!(buf.is_empty());
        let expected: Vec<Vec<Bytes>> = commands.iter().map(|args| as_bytes(args)).collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn request_decoder_never_panics(
        input in malformed_input(),
        sizes in proptest::collection::vec(0usize..64, 0..8),
    ) {
        let mut decoder = RequestDecoder::default();
        let mut buf = BytesMut::new();
        'feed: for chunk in chunks(&input, &sizes) {
            buf.extend_from_slice(chunk);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(args)) => prop_assert!(!args.is_empty(), "commands are never empty"),
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }

    #[test]
    fn frame_decoder_never_panics(
        input in malformed_input(),
        sizes in proptest::collection::vec(0usize..64, 0..8),
    ) {
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        'feed: for chunk in chunks(&input, &sizes) {
            buf.extend_from_slice(chunk);
            loop {
                let before = buf.len();
                match decoder.decode(&mut buf) {
                    Ok(Some(_)) => prop_assert!(buf.len() < before, "a frame consumes input"),
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }
}

/// Attributes (`|`) annotate the frame after them; a chain of them is nesting like any other
/// and must hit the depth limit rather than the stack.
#[test]
fn chained_attributes_are_bounded_by_the_depth_limit() {
    let input = "|0\r\n".repeat(1 << 18) + ":1\r\n";
    let result = FrameDecoder::default().decode(&mut BytesMut::from(input.as_bytes()));
    assert!(result.is_err(), "{result:?}");
    let one = FrameDecoder::default().decode(&mut BytesMut::from(&b"|0\r\n|0\r\n:1\r\n"[..]));
    assert_eq!(
        one.expect("two attributes are fine"),
        Some(Frame::Integer(1))
    );
}
