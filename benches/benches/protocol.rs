//! Micro-benchmarks of the wire format: the server's request decoder on a pipeline of GET/SET,
//! the client's reply decoder, and `Frame::encode` of the replies the hot commands send.
//!
//! `cargo bench -p sessiond-bench --bench protocol`; `cargo test` never runs these (criterion
//! targets are `harness = false` benches, which `cargo test` does not build).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sessiond_protocol::{ClientCodec, Frame, FrameDecoder, ProtocolVersion, RequestDecoder};

/// redis-benchmark's `-d 160`.
const VALUE: [u8; 160] = [b'x'; 160];
/// Commands per pipeline: redis-benchmark's `-P 16`.
const PIPELINE: usize = 16;

/// `PIPELINE` commands, alternately SET and GET of session-shaped keys.
fn pipeline_wire() -> BytesMut {
    let mut wire = BytesMut::new();
    for i in 0..PIPELINE {
        let key = format!("sess:{i:032x}");
        if i % 2 == 0 {
            ClientCodec::encode_command(&[&b"SET"[..], key.as_bytes(), &VALUE], &mut wire);
        } else {
            ClientCodec::encode_command(&[&b"GET"[..], key.as_bytes()], &mut wire);
        }
    }
    wire
}

fn request_decoding(c: &mut Criterion) {
    let wire = pipeline_wire();
    let mut group = c.benchmark_group("request_decoder");
    group.throughput(Throughput::Elements(PIPELINE as u64));
    group.bench_function("pipeline_16_get_set", |b| {
        let mut decoder = RequestDecoder::default();
        b.iter_batched_ref(
            || wire.clone(),
            |buf| {
                while let Some(args) = decoder.decode(buf).expect("valid commands") {
                    black_box(args);
                }
            },
            BatchSize::SmallInput,
        );
    });
    // A read that ends in the middle of a value: the decoder keeps the finished arguments and
    // resumes where it stopped.
    group.bench_function("pipeline_16_in_two_reads", |b| {
        let mut decoder = RequestDecoder::default();
        let split = wire.len() / 2 + 7;
        b.iter_batched_ref(
            || (wire.clone(), BytesMut::new()),
            |(rest, buf)| {
                buf.extend_from_slice(&rest.split_to(split));
                while let Some(args) = decoder.decode(buf).expect("valid commands") {
                    black_box(args);
                }
                buf.extend_from_slice(rest);
                while let Some(args) = decoder.decode(buf).expect("valid commands") {
                    black_box(args);
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn bulk_array(n: usize) -> Frame {
    Frame::Array((0..n).map(|_| Frame::bulk(&VALUE[..])).collect())
}

fn session_map(fields: usize) -> Frame {
    Frame::Map(
        (0..fields)
            .map(|i| {
                (
                    Frame::bulk(format!("field{i}")),
                    Frame::Bulk(Bytes::from_static(&VALUE[..32])),
                )
            })
            .collect(),
    )
}

fn frame_encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame_encode");
    let cases = [
        ("bulk_160", Frame::bulk(&VALUE[..])),
        ("array_10_bulk_160", bulk_array(10)),
        ("map_8_fields", session_map(8)),
    ];
    for (name, frame) in &cases {
        for version in [ProtocolVersion::Resp2, ProtocolVersion::Resp3] {
            let label = format!("{name}/resp{}", version.number());
            let mut out = BytesMut::with_capacity(4096);
            group.bench_function(label, |b| {
                b.iter(|| {
                    out.clear();
                    black_box(frame).encode(version, &mut out);
                    black_box(out.len());
                });
            });
        }
    }
    group.finish();
}

fn client_side(c: &mut Criterion) {
    let mut wire = BytesMut::new();
    for i in 0..PIPELINE {
        let reply = if i % 2 == 0 {
            Frame::ok()
        } else {
            Frame::bulk(&VALUE[..])
        };
        reply.encode(ProtocolVersion::Resp2, &mut wire);
    }
    // The client side: what sessiond-bench and the client crate do per request.
    let mut group = c.benchmark_group("client");
    group.throughput(Throughput::Elements(PIPELINE as u64));
    group.bench_function("decode_pipeline_16_ok_bulk", |b| {
        let mut decoder = FrameDecoder::default();
        b.iter_batched_ref(
            || wire.clone(),
            |buf| {
                while let Some(frame) = decoder.decode(buf).expect("valid replies") {
                    black_box(frame);
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("encode_command_set_160", |b| {
        let mut out = BytesMut::with_capacity(512);
        let key = format!("sess:{:032x}", 7);
        b.iter(|| {
            out.clear();
            ClientCodec::encode_command(&[&b"SET"[..], key.as_bytes(), &VALUE], &mut out);
            black_box(out.len());
        });
    });
    group.finish();
}

criterion_group!(benches, request_decoding, frame_encoding, client_side);
criterion_main!(benches);
