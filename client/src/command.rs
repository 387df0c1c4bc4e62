//! [`Cmd`], a command being built, and the shapes of the replies the key and session commands
//! expect, with the merge of a fan-out's per-node results: the vocabulary `client.rs`,
//! `sessions.rs` and `store.rs` share, below all three.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sessiond_protocol::{put_bulk, Frame};

use crate::node::Node;
use crate::{Error, ErrorKind, Result};

/// A command being built: its arguments, encoded as RESP bulk strings as they are added.
pub(crate) struct Cmd {
    count: usize,
    body: BytesMut,
}

impl Cmd {
    pub(crate) fn new(name: &'static str) -> Cmd {
        Cmd::new_raw(name.as_bytes())
    }

    pub(crate) fn new_raw(name: &[u8]) -> Cmd {
        Cmd {
            count: 0,
            body: BytesMut::with_capacity(64),
        }
        .arg(name)
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<[u8]>) -> Cmd {
        put_bulk(&mut self.body, b'$', arg.as_ref());
        self.count += 1;
        self
    }

    /// A duration as whole milliseconds, rounded up so that 1.5 ms never becomes 1 ms early.
    pub(crate) fn ms(self, duration: Duration) -> Cmd {
        let nanos = duration.as_nanos();
        let ms = nanos.div_ceil(1_000_000).min(i64::MAX as u128);
        self.arg(ms.to_string())
    }

    pub(crate) fn encode(self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.body.len() + 16);
        out.extend_from_slice(format!("*{}\r\n", self.count).as_bytes());
        out.extend_from_slice(&self.body);
        out.freeze()
    }
}

// Reply shapes shared by the key and session commands. RESP3 and RESP2 forms are both accepted,
// so the client works whichever protocol the server agreed to.

pub(crate) fn expect_ok(command: &str, reply: Frame) -> Result<()> {
    match reply {
        Frame::Simple(_) => Ok(()),
        other => Err(Error::unexpected(command, &other)),
    }
}

pub(crate) fn integer(command: &str, reply: Frame) -> Result<i64> {
    match reply {
        Frame::Integer(n) => Ok(n),
        other => Err(Error::unexpected(command, &other)),
    }
}

pub(crate) fn optional_integer(command: &str, reply: Frame) -> Result<Option<i64>> {
    match reply {
        Frame::Null | Frame::NullArray => Ok(None),
        other => integer(command, other).map(Some),
    }
}

pub(crate) fn optional_bulk(command: &str, reply: Frame) -> Result<Option<Bytes>> {
    match reply {
        Frame::Null | Frame::NullArray => Ok(None),
        Frame::Bulk(bytes) | Frame::Simple(bytes) => Ok(Some(bytes)),
        other => Err(Error::unexpected(command, &other)),
    }
}

pub(crate) fn bulk_array(command: &str, reply: Frame) -> Result<Vec<Bytes>> {
    match reply {
        Frame::Array(items) | Frame::Set(items) => items
            .into_iter()
            .map(|item| match item {
                Frame::Bulk(bytes) | Frame::Simple(bytes) => Ok(bytes),
                other => Err(Error::unexpected(command, &other)),
            })
            .collect(),
        other => Err(Error::unexpected(command, &other)),
    }
}

/// A RESP3 map, or its RESP2 form (a flat key, value, key, value... array).
pub(crate) fn pairs(command: &str, reply: Frame) -> Result<Vec<(Frame, Frame)>> {
    match reply {
        Frame::Map(pairs) => Ok(pairs),
        Frame::Array(items) if items.len() % 2 == 0 => {
            let mut items = items.into_iter();
            let mut pairs = Vec::with_capacity(items.len() / 2);
            while let (Some(key), Some(value)) = (items.next(), items.next()) {
                pairs.push((key, value));
            }
            Ok(pairs)
        }
        other => Err(Error::unexpected(command, &other)),
    }
}

/// Merges the per-node results of a fan-out: the values of the nodes that answered, or, if
/// any failed, an error naming each failed node (of the first failure's kind).
pub(crate) fn merge<T>(
    command: &str,
    replies: Vec<(Arc<Node>, Result<T>)>,
    partial: impl FnOnce(&[T]) -> String,
) -> Result<Vec<T>> {
    let mut values = Vec::with_capacity(replies.len());
    let mut failures: Vec<(String, Error)> = Vec::new();
    for (node, reply) in replies {
        match reply {
            Ok(value) => values.push(value),
            Err(error) => failures.push((node.name().to_owned(), error)),
        }
    }
    let Some((_, first)) = failures.first() else {
        return Ok(values);
    };
    let kind: ErrorKind = first.kind();
    let detail: Vec<String> = failures
        .iter()
        .map(|(name, error)| {
            if error.message().contains(name.as_str()) {
                error.to_string()
            } else {
                format!("node {name}: {error}")
            }
        })
        .collect();
    Err(Error::new(
        kind,
        format!(
            "{command} failed on {} of {} nodes ({}){}",
            failures.len(),
            failures.len() + values.len(),
            detail.join("; "),
            partial(&values)
        ),
    ))
}
