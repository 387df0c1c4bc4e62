//! The client crate web servers use to talk to sessiond.
//!
//! For now it re-exports the protocol crate, so that frames and commands are shared; the typed,
//! pooled session API is the subject of its own issue.
#![deny(missing_docs)]

pub use sessiond_protocol as protocol;
