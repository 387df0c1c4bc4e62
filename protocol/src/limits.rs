//! Bounds on everything a peer's input controls.
//!
//! The names follow redis.conf where it has one. The defaults are those of DESIGN.md "Limits";
//! [`Limits::unauthenticated`] is the much tighter set a connection gets before it has
//! authenticated, so that an anonymous peer cannot make the server buffer much on its behalf.

/// Bounds applied while decoding a peer's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string, in bytes (`proto-max-bulk-len`, default 16 MiB).
    pub max_bulk_len: usize,
    /// Most arguments in one command, the command name included (default 1,048,576).
    pub max_args: usize,
    /// Longest inline command line, in bytes (default 64 KiB).
    pub max_inline_len: usize,
    /// Most input buffered for one client, complete arguments of a pending command included
    /// (`client-query-buffer-limit`, default 64 MiB).
    pub max_query_buffer: usize,
    /// Deepest nesting of aggregate frames the general frame decoder accepts (default 64).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 16 * 1024 * 1024,
            max_args: 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_query_buffer: 64 * 1024 * 1024,
            max_depth: 64,
        }
    }
}

impl Limits {
    /// The limits for a connection that has not authenticated yet: 10 arguments of 16 KiB,
    /// 1 MiB of buffered input; each is never looser than `self`.
    pub fn unauthenticated(&self) -> Limits {
        Limits {
            max_bulk_len: self.max_bulk_len.min(16 * 1024),
            max_args: self.max_args.min(10),
            max_inline_len: self.max_inline_len.min(16 * 1024),
            max_query_buffer: self.max_query_buffer.min(1024 * 1024),
            max_depth: self.max_depth.min(2),
        }
    }
}
