//! Redis glob patterns (`KEYS`, `SCAN MATCH`, `CONFIG GET`, user key patterns): `*`, `?`,
//! `[abc]`, `[^a-z]` and `\` escapes, matched on bytes with the results of Redis's
//! `stringmatchlen` (util.c), quirks included: an unclosed `[` takes the rest of the pattern as
//! its class, `[a-]` is the range from `a` to `]`, a trailing `\` is a literal backslash, ranges
//! compare bytes as signed `char`s (as Redis on x86-64 and most Linux targets), and an empty key
//! matches only the empty pattern (Redis's KEYS and SCAN treat a lone `*` as "every key" before
//! they match; so do ours).
//!
//! The cost is linear in the key for a bounded pattern: the pattern is compiled once into
//! one-byte tokens split at the stars into star-free segments; the first segment must match at
//! the start of the key, the last at its end, and each middle one is searched leftmost in what
//! is left (the leftmost match of a segment never loses a match for the rest, so there is no
//! backtracking over stars). That is O(key × longest segment); Redis's recursion is
//! O(key × pattern) and more. Patterns are bounded in length by `max-pattern-len`
//! ([`DEFAULT_MAX_PATTERN_LEN`]); commands refuse longer ones with [`TooLong`]. (One difference
//! remains, past any sensible bound: Redis answers "no match" beyond 1,000 nested stars, which
//! takes a pattern of over 2,000 bytes.)

/// The default bound on a glob pattern's length in bytes (`max-pattern-len`).
pub const DEFAULT_MAX_PATTERN_LEN: usize = 256;

/// A pattern longer than `max-pattern-len`; its message is the error reply (Redis has no such
/// bound, so no wording to follow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ERR glob pattern longer than max-pattern-len")]
pub struct TooLong;

/// Compiles the pattern of KEYS or SCAN MATCH if it is at most `max_len` bytes long; `None`
/// for a lone `*`, which (as in Redis) means every key, the empty one included.
pub fn key_pattern(pattern: &[u8], max_len: usize) -> Result<Option<Pattern>, TooLong> {
    if pattern.len() > max_len {
        return Err(TooLong);
    }
    Ok((pattern != b"*").then(|| Pattern::new(pattern)))
}

/// Whether `text` matches `pattern`. Compiles the pattern on each call: to match many keys,
/// compile a [`Pattern`] once.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    Pattern::new(pattern).matches(text)
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// Every token but the stars, in order.
    tokens: Vec<Token>,
    /// The star-free segments as ranges of `tokens`, in order; one more than there are (runs of)
    /// stars, so that with no star there is exactly one.
    segments: Vec<(usize, usize)>,
    /// Whether the pattern is empty: an empty key matches only that.
    empty: bool,
}

/// What one byte of the key must be.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// This byte.
    Byte(u8),
    /// Any byte (`?`).
    Any,
    /// A byte in this set (a `[...]` class, negation applied), one bit per byte value.
    Class(Box<[u64; 4]>),
}

impl Token {
    #[inline]
    fn accepts(&self, c: u8) -> bool {
        #[cfg(test)]
        STEPS.with(|steps| steps.set(steps.get() + 1));
        match self {
            Token::Byte(b) => *b == c,
            Token::Any => true,
            Token::Class(set) => set[usize::from(c >> 6)] & (1 << (c & 63)) != 0,
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Token comparisons made on this thread: tests bound the work of a match with it.
    static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl Pattern {
    /// Compiles `pattern`, reading classes and escapes as Redis's `stringmatchlen` does.
    pub fn new(pattern: &[u8]) -> Pattern {
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut segments = Vec::new();
        let mut start = 0;
        let mut p = 0;
        while let Some(&c) = pattern.get(p) {
            p += 1;
            let token = match c {
                b'*' => {
                    segments.push((start, tokens.len()));
                    while pattern.get(p) == Some(&b'*') {
                        p += 1;
                    }
                    start = tokens.len();
                    continue;
                }
                b'?' => Token::Any,
                b'[' => {
                    let (set, next) = class(pattern, p);
                    p = next;
                    Token::Class(Box::new(set))
                }
                b'\\' => match pattern.get(p) {
                    Some(&escaped) => {
                        p += 1;
                        Token::Byte(escaped)
                    }
                    // A trailing backslash stands for itself.
                    None => Token::Byte(b'\\'),
                },
                c => Token::Byte(c),
            };
            tokens.push(token);
        }
        segments.push((start, tokens.len()));
        Pattern {
            tokens,
            segments,
            empty: pattern.is_empty(),
        }
    }

    /// Whether `text` matches.
    pub fn matches(&self, text: &[u8]) -> bool {
        if text.is_empty() {
            return self.empty;
        }
        let segment = |(start, end): (usize, usize)| self.tokens.get(start..end).unwrap_or(&[]);
        let (Some(&first), Some(&last)) = (self.segments.first(), self.segments.last()) else {
            return false;
        };
        let (first, last) = (segment(first), segment(last));
        if self.segments.len() == 1 {
            return first.len() == text.len() && matches_at(first, text);
        }
        let Some(middle_len) = text.len().checked_sub(first.len() + last.len()) else {
            return false;
        };
        let (head, rest) = text.split_at(first.len());
        let (mut middle, tail) = rest.split_at(middle_len);
        if !matches_at(first, head) || !matches_at(last, tail) {
            return false;
        }
        let inner = self.segments.len() - 1;
        for &bounds in self.segments.get(1..inner).unwrap_or(&[]) {
            match find(segment(bounds), middle) {
                Some(end) => middle = middle.get(end..).unwrap_or(&[]),
                None => return false,
            }
        }
        true
    }
}

/// Whether `tokens` match the start of `text` (which is at least as long).
#[inline]
fn matches_at(tokens: &[Token], text: &[u8]) -> bool {
    tokens.iter().zip(text).all(|(token, &c)| token.accepts(c))
}

/// Where the leftmost match of `tokens` in `text` ends.
fn find(tokens: &[Token], text: &[u8]) -> Option<usize> {
    let last_start = text.len().checked_sub(tokens.len())?;
    (0..=last_start)
        .find(|&at| matches_at(tokens, text.get(at..).unwrap_or(&[])))
        .map(|at| at + tokens.len())
}

/// Reads the class whose `[` is just before `pattern[open]`: the set of bytes it accepts and the
/// index after it. Redis's reading: `\x` is `x`; `a-z` is a range (even `a-]`), its ends in
/// either order, compared as signed chars; an unclosed class runs to the end of the pattern.
fn class(pattern: &[u8], open: usize) -> ([u64; 4], usize) {
    let mut set = [0u64; 4];
    let mut add = |c: u8| set[usize::from(c >> 6)] |= 1 << (c & 63);
    let mut i = open;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    loop {
        let remaining = pattern.len().saturating_sub(i);
        match pattern.get(i) {
            None => break,
            Some(b'\\') if remaining >= 2 => {
                if let Some(&c) = pattern.get(i + 1) {
                    add(c);
                }
                i += 2;
            }
            Some(b']') => {
                i += 1;
                break;
            }
            Some(&lo) if remaining >= 3 && pattern.get(i + 1) == Some(&b'-') => {
                let hi = pattern.get(i + 2).copied().unwrap_or(lo);
                let (lo, hi) = (lo as i8, hi as i8);
                let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
                for c in lo..=hi {
                    add(c as u8);
                }
                i += 3;
            }
            Some(&c) => {
                add(c);
                i += 1;
            }
        }
    }
    if negate {
        for word in &mut set {
            *word = !*word;
        }
    }
    (set, i)
}

/// A transcription of Redis's `stringmatchlen` (util.c, case-sensitive), recursion and all:
/// the oracle that the tests and the `glob` fuzz target compare [`Pattern`] with. Reads past
/// the end of the pattern see a NUL byte, as in C. Not for the request path: its cost is
/// O(key × pattern).
#[doc(hidden)]
pub fn reference_matches(pattern: &[u8], text: &[u8]) -> bool {
    let mut skip_longer = false;
    reference(pattern, text, &mut skip_longer, 0)
}

fn reference(pattern: &[u8], text: &[u8], skip_longer: &mut bool, nesting: u32) -> bool {
    if nesting > 1000 {
        return false;
    }
    let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    let (mut p, mut s) = (0, 0);
    while p < pattern.len() && s < text.len() {
        match pattern[p] {
            b'*' => {
                while p < pattern.len() && at(pattern, p + 1) == b'*' {
                    p += 1;
                }
                if pattern.len() - p == 1 {
                    return true;
                }
                while s < text.len() {
                    if reference(&pattern[p + 1..], &text[s..], skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s += 1;
                }
                *skip_longer = true;
                return false;
            }
            b'?' => s += 1,
            b'[' => {
                p += 1;
                let negate = at(pattern, p) == b'^';
                if negate {
                    p += 1;
                }
                let mut matched = false;
                loop {
                    let remaining = pattern.len().saturating_sub(p);
                    if at(pattern, p) == b'\\' && remaining >= 2 {
                        p += 1;
                        matched |= at(pattern, p) == text[s];
                    } else if at(pattern, p) == b']' {
                        break;
                    } else if remaining == 0 {
                        p -= 1;
                        break;
                    } else if remaining >= 3 && at(pattern, p + 1) == b'-' {
                        let (mut lo, mut hi) = (at(pattern, p) as i8, at(pattern, p + 2) as i8);
                        if lo > hi {
                            std::mem::swap(&mut lo, &mut hi);
                        }
                        p += 2;
                        matched |= (lo..=hi).contains(&(text[s] as i8));
                    } else {
                        matched |= at(pattern, p) == text[s];
                    }
                    p += 1;
                }
                if matched == negate {
                    return false;
                }
                s += 1;
            }
            c => {
                let c = if c == b'\\' && pattern.len() - p >= 2 {
                    p += 1;
                    pattern[p]
                } else {
                    c
                };
                if c != text[s] {
                    return false;
                }
                s += 1;
            }
        }
        p += 1;
        if s == text.len() {
            while at(pattern, p) == b'*' {
                p += 1;
            }
            break;
        }
    }
    p >= pattern.len() && s == text.len()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{matches, reference_matches, Pattern, STEPS};

    #[test]
    fn redis_glob_semantics() {
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"*", b"anything", true),
            (b"h?llo", b"hello", true),
            (b"h?llo", b"hllo", false),
            (b"h*llo", b"heeeello", true),
            (b"h[ae]llo", b"hallo", true),
            (b"h[ae]llo", b"hillo", false),
            (b"h[^e]llo", b"hallo", true),
            (b"h[^e]llo", b"hello", false),
            (b"h[a-b]llo", b"hbllo", true),
            (b"h[b-a]llo", b"hbllo", true),
            (b"h\\*llo", b"h*llo", true),
            (b"h\\*llo", b"hello", false),
            (b"sess:*:x", b"sess:app1:x", true),
            (b"sess:*:x", b"sess:app1:y", false),
            (b"a*b*c", b"aXXbYYc", true),
            (b"a*b*c", b"aXXbYY", false),
            (b"a*bc*bcd", b"abcbcbcd", true),
            // Redis's quirks.
            (b"*", b"", false),
            (b"", b"", true),
            (b"a[bc", b"ac", true),
            (b"a[bc", b"ab", true),
            (b"a[", b"ab", false),
            (b"a[^", b"ab", true),
            (b"[a-]", b"]", true),
            (b"[a-]", b"^", true),
            (b"[a-]", b"-", false),
            (b"a\\", b"a\\", true),
            (b"[\\]]", b"]", true),
            (b"[a-\xff]", b"\xff", true),
            (b"[a-\xff]", b"b", false),
        ];
        for &(pattern, text, want) in cases {
            let shown = (
                String::from_utf8_lossy(pattern),
                String::from_utf8_lossy(text),
            );
            assert_eq!(matches(pattern, text), want, "{shown:?}");
            assert_eq!(reference_matches(pattern, text), want, "oracle {shown:?}");
        }
    }

    fn steps() -> u64 {
        STEPS.with(|steps| steps.get())
    }

    /// The probe: a 60 KB key and a 30,000-byte pattern took Redis's algorithm (and the
    /// old matcher) O(key × pattern) steps, 1.5 s. Now the work is O(key × longest segment):
    /// here the key times one token, plus the pattern once.
    #[test]
    fn pathological_input_costs_linear_work() {
        let text = vec![b'a'; 60_000];
        let pattern = [b"*".to_vec(), b"a*".repeat(15_000), b"c*a".to_vec()].concat();
        let before = steps();
        assert!(!matches(&pattern, &text));
        let spent = steps() - before;
        assert!(
            spent <= 2 * (text.len() as u64 + pattern.len() as u64),
            "{spent} steps"
        );

        // A long last segment that fails only at its end: tried once, anchored at the key's end
        // (a backtracking matcher tries it at every offset of the key).
        let pattern = [b"*".to_vec(), b"a".repeat(2_999), b"b".to_vec()].concat();
        let before = steps();
        assert!(!matches(&pattern, &text));
        let spent = steps() - before;
        assert!(
            spent <= 2 * (text.len() as u64 + pattern.len() as u64),
            "{spent} steps"
        );

        // A long middle segment that almost matches everywhere: key × segment at most.
        let segment = [b"a".repeat(63), b"b".to_vec()].concat();
        let pattern = [b"*".to_vec(), segment.clone(), b"*".to_vec()].concat();
        let before = steps();
        assert!(!matches(&pattern, &text));
        let spent = steps() - before;
        assert!(
            spent <= text.len() as u64 * segment.len() as u64,
            "{spent} steps"
        );
    }

    fn glob_bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop::sample::select(b"ab*?[]^-\\\xff".to_vec()), 0..12)
    }

    fn key_bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop::sample::select(b"ab]-^\\*\xff".to_vec()), 0..12)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// The linear matcher answers as Redis's recursive one on small random patterns and keys.
        #[test]
        fn agrees_with_redis(pattern in glob_bytes(), text in key_bytes()) {
            prop_assert_eq!(
                Pattern::new(&pattern).matches(&text),
                reference_matches(&pattern, &text),
                "pattern {:?} key {:?}",
                String::from_utf8_lossy(&pattern),
                String::from_utf8_lossy(&text)
            );
        }
    }
}
