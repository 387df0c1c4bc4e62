//! End-to-end tests: one test binary, a module per area, each starting the real server
//! (in-process on port 0, or the real binary) and driving it over TCP.

mod aof;
mod binary;
mod busy_scripts;
mod client_admin;
mod config_set;
mod connection;
mod daemon;
mod databases;
mod events;
mod expiry;
mod exporter;
mod fuzz_live;
mod hashes;
mod introspection;
mod keys;
mod malformed;
mod memory;
mod metrics;
mod output_limits;
mod persistence;
mod pubsub;
mod rename;
mod replication;
mod scripting;
mod security;
mod sentinel;
mod service;
mod sessions;
mod sets;
mod smoke;
mod strings;
mod tls;
mod transactions;
mod users;
mod words;
