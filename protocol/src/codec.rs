//! tokio-util codecs: [`ServerCodec`] reads commands and writes reply frames, [`ClientCodec`]
//! writes commands and reads reply frames.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::put_bulk;
use crate::{Frame, FrameDecoder, Limits, ProtocolError, ProtocolVersion, RequestDecoder};

/// A decoding failure: malformed input, or the transport's I/O error.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The peer sent malformed or over-limit input.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Reading or writing failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// The server side: decodes commands (argument vectors), encodes replies in the negotiated
/// protocol version.
#[derive(Debug, Default)]
pub struct ServerCodec {
    decoder: RequestDecoder,
    version: ProtocolVersion,
}

impl ServerCodec {
    /// A codec enforcing `limits`, speaking RESP2 until told otherwise.
    pub fn new(limits: Limits) -> ServerCodec {
        ServerCodec {
            decoder: RequestDecoder::new(limits),
            version: ProtocolVersion::Resp2,
        }
    }

    /// The protocol version replies are encoded in.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Switches the reply encoding (after `HELLO`).
    pub fn set_version(&mut self, version: ProtocolVersion) {
        self.version = version;
    }

    /// The request decoder, e.g. to change its limits.
    pub fn decoder_mut(&mut self) -> &mut RequestDecoder {
        &mut self.decoder
    }
}

impl Decoder for ServerCodec {
    type Item = Vec<Bytes>;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Vec<Bytes>>, CodecError> {
        Ok(self.decoder.decode(src)?)
    }
}

impl Encoder<&Frame> for ServerCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        frame.encode(self.version, dst);
        Ok(())
    }
}

/// The client side: encodes commands as arrays of bulk strings, decodes any reply frame.
#[derive(Debug, Default)]
pub struct ClientCodec {
    decoder: FrameDecoder,
}

impl ClientCodec {
    /// A codec whose reply decoding enforces `limits`.
    pub fn new(limits: Limits) -> ClientCodec {
        ClientCodec {
            decoder: FrameDecoder::new(limits),
        }
    }

    /// Appends the RESP encoding of the command `args` to `dst`.
    pub fn encode_command<A: AsRef<[u8]>>(args: &[A], dst: &mut BytesMut) {
        dst.extend_from_slice(b"*");
        dst.extend_from_slice(itoa::Buffer::new().format(args.len()).as_bytes());
        dst.extend_from_slice(b"\r\n");
        for arg in args {
            put_bulk(dst, b'$', arg.as_ref());
        }
    }
}

impl Decoder for ClientCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(self.decoder.decode(src)?)
    }
}

impl<A: AsRef<[u8]>> Encoder<&[A]> for ClientCodec {
    type Error = CodecError;

    fn encode(&mut self, args: &[A], dst: &mut BytesMut) -> Result<(), CodecError> {
        ClientCodec::encode_command(args, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_server_codecs_agree() {
        let mut wire = BytesMut::new();
        ClientCodec::default()
            .encode(&["SET", "k", "v\r\n"][..], &mut wire)
            .unwrap();
        let args = ServerCodec::default().decode(&mut wire).unwrap().unwrap();
        assert_eq!(
            args,
            vec![Bytes::from("SET"), Bytes::from("k"), Bytes::from("v\r\n")]
        );

        let mut server = ServerCodec::default();
        server.set_version(ProtocolVersion::Resp3);
        let mut replies = BytesMut::new();
        server.encode(&Frame::Null, &mut replies).unwrap();
        assert_eq!(
            ClientCodec::default().decode(&mut replies).unwrap(),
            Some(Frame::Null)
        );
    }
}
