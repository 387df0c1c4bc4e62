//! Replication: a primary streams its keyspace to replicas, which apply it and serve reads.
//!
//! What operators and Sentinel see is Redis's: the handshake (`AUTH`, `REPLCONF
//! listening-port`, `REPLCONF capa psync2`, `PSYNC <replid> <offset>`), `+FULLRESYNC` and
//! `+CONTINUE`, ROLE, WAIT, `REPLCONF ACK`/`GETACK` and INFO replication's fields. What flows
//! after the handshake is sessiond's own: a full synchronization is the snapshot format
//! (`persist::writer::write_stream`) streamed over the socket, never written to disk, then the
//! store's change feed (`store::feed`: framed records in one ordered byte stream, whose offsets
//! are the replication offsets); a partial one is the feed from the replica's offset, out of the
//! primary's backlog.
//!
//! - [`crate::role`] (below the connections) holds a node's replication state: its role, the
//!   replication IDs (PSYNC2: `replid`, `replid2` and `second_repl_offset`, so that a replica
//!   of the old primary resumes from a promoted sibling), the replicas it serves, and the gate
//!   the command path reads once per command.
//! - `primary.rs` serves one replica's connection after its PSYNC.
//! - `replica.rs` is a replica's link to its primary: connect (TCP or TLS), authenticate,
//!   handshake, load or resume, apply, acknowledge every second, reconnect with backoff.
//!
//! A replica never expires or evicts keys itself: reads hide keys past their deadline, and the
//! primary's stream deletes them. A replica of a replica re-streams what it applies, with its
//! primary's offsets and ID.

pub mod primary;
pub mod replica;
