//! The RESP wire protocol of sessiond: frames, decoders, a tokio-util codec and typed commands.
//!
//! This crate does no I/O: it turns bytes into [`Frame`]s and [`Command`]s and back. The server,
//! the client crate and the benchmarks share it.
//!
//! - [`Frame`]: one RESP2/RESP3 value, encoded for either version with [`Frame::encode`].
//! - [`RequestDecoder`]: the server side, resumable decoding of commands (arrays of bulk
//!   strings, and inline commands) whose arguments share the read buffer's memory.
//! - [`FrameDecoder`]: the client side, decoding any reply frame.
//! - [`ServerCodec`] and [`ClientCodec`]: the two as tokio-util `Decoder`/`Encoder`s.
//! - [`Command`]: typed commands parsed with Redis's arity rules and error wording.
//! - [`Limits`]: every bound on what a peer's input can make us hold.
//! - [`units`]: sizes (`64mb`) and durations (`500ms`) as config files and flags write them.
//!
//! ```
//! use bytes::BytesMut;
//! use sessiond_protocol::{Command, Frame, ProtocolVersion, RequestDecoder};
//!
//! let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$4\r\nuser\r\n"[..]);
//! let args = RequestDecoder::default().decode(&mut buf).unwrap().unwrap();
//! assert!(matches!(Command::parse(args), Ok(Command::Get(_))));
//!
//! let mut out = BytesMut::new();
//! Frame::Null.encode(ProtocolVersion::Resp2, &mut out);
//! assert_eq!(&out[..], b"$-1\r\n");
//! ```
#![deny(missing_docs)]

pub mod cmd;
mod codec;
mod error;
mod frame;
mod limits;
mod reply;
mod request;
pub mod units;

pub use cmd::{Command, CommandError};
pub use codec::{ClientCodec, CodecError, ServerCodec};
pub use error::{ProtocolError, ProtocolErrorKind};
pub use frame::{format_double, put_bulk, put_header, Frame, ProtocolVersion};
pub use limits::Limits;
pub use reply::FrameDecoder;
pub use request::{parse_i64, RequestDecoder};
