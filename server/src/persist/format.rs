//! The snapshot file format.
//!
//! ```text
//! header   magic "SESSIOND" (8 bytes) | format version u16 LE | flags u16 LE (0) | written at, Unix ms u64 LE
//! frames   { length u32 LE (1..=MAX_FRAME) | database u16 LE | postcard-encoded Record }*
//! end      length 0 (u32 LE)
//! trailer  frame count u64 LE | CRC-32 (IEEE) of every byte before it, u32 LE
//! ```
//!
//! Records are the store's ([`Record`](crate::store::Record)); this module only frames them. They are replayed in
//! order: a key's last record wins and `Record::Delete` removes it, which is how the journal
//! of changes made during the save (appended after the shards) brings the file to one
//! consistent instant.

/// The first bytes of every snapshot.
pub const MAGIC: &[u8; 8] = b"SESSIOND";
/// The format version this build writes and reads. Version 1 (no database index in a frame:
/// every record is of database 0) is still read.
pub const FORMAT_VERSION: u16 = 2;
/// Header length in bytes.
pub const HEADER_LEN: usize = 8 + 2 + 2 + 8;
/// Trailer length in bytes.
pub const TRAILER_LEN: usize = 8 + 4;
/// The largest frame accepted (a record is at most a few `proto-max-bulk-len`s in practice).
pub const MAX_FRAME: u32 = 1 << 30;
