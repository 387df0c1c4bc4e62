//! The glob matcher of KEYS, SCAN MATCH, CONFIG GET and users' key patterns: the input split at
//! its first NUL byte into a pattern and a key. `Pattern::matches` (linear in the key) must
//! answer as `reference_matches`, a transcription of Redis's `stringmatchlen`, and `matches`
//! as the compiled pattern; no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiond::glob::{matches, reference_matches, Pattern};

fuzz_target!(|data: &[u8]| {
    let (pattern, key) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b""[..]),
    };
    // The reference recurses once per star and costs up to key x pattern: keep it small.
    if pattern.len() > 256 || key.len() > 1024 {
        return;
    }
    let compiled = Pattern::new(pattern);
    let got = compiled.matches(key);
    assert_eq!(
        got,
        reference_matches(pattern, key),
        "pattern {:?} key {:?}",
        String::from_utf8_lossy(pattern),
        String::from_utf8_lossy(key)
    );
    assert_eq!(got, matches(pattern, key));
});
