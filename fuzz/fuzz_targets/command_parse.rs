//! `Command::parse` on arbitrary argument vectors: the input split on NUL bytes, the command
//! name first. It must return a command or a `CommandError` whose message (the error reply a
//! client gets) renders, and never panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sessiond_protocol::{cmd, Command};

fuzz_target!(|data: &[u8]| {
    let args: Vec<Bytes> = data
        .split(|&b| b == 0)
        .map(Bytes::copy_from_slice)
        .collect();
    let known = cmd::lookup(&args[0]).is_some();
    let (index, parsed) = Command::parse_indexed(args);
    assert_eq!(
        index.is_some(),
        known,
        "the command table and the parser disagree"
    );
    match parsed {
        Ok(command) => {
            let _ = format!("{command:?}");
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
