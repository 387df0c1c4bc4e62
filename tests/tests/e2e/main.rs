//! End-to-end tests: one test binary, a module per area, each starting the real server
//! (in-process on port 0, or the real binary) and driving it over TCP.

mod expiry;
mod hashes;
mod sessions;
mod smoke;
