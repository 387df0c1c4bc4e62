//! Regression tests for what the fuzz targets in `fuzz/` found in the protocol crate, one test
//! per finding, each reduced to a readable input and naming the target that found it.

use bytes::BytesMut;
use sessiond_protocol::{Limits, ProtocolErrorKind, RequestDecoder};

/// Found with the `request_decoder` target (its "buffered input stays bounded" check, on an
/// input written to probe it after the fuzzer's runs stayed clean): a `*<n>` header line whose
/// CR had arrived but not its LF was held without being counted against the query buffer limit,
/// so up to 64 KiB (the header-line cap) could be buffered whatever `max_query_buffer` said.
#[test]
fn a_header_line_waiting_for_its_lf_counts_against_the_query_buffer() {
    let limits = Limits {
        max_query_buffer: 512,
        ..Limits::default()
    };
    let mut line = b"*".to_vec();
    line.extend(std::iter::repeat_n(b'1', 600));
    line.push(b'\r');
    let mut buf = BytesMut::from(&line[..]);
    let error = RequestDecoder::new(limits).decode(&mut buf).unwrap_err();
    assert_eq!(error.kind(), ProtocolErrorKind::QueryBufferLimit);

    // Under the limit, the same wait is just "read more".
    let mut buf = BytesMut::from(&b"*2\r"[..]);
    assert_eq!(RequestDecoder::new(limits).decode(&mut buf).unwrap(), None);
}
