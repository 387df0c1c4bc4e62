//! `MEMORY USAGE key [SAMPLES count]`, `MEMORY STATS`, `MEMORY DOCTOR`, `MEMORY HELP`.

use bytes::Bytes;

use super::args::{is, Args};
use super::CommandError;

/// `MEMORY <subcommand>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Memory {
    /// `MEMORY USAGE key [SAMPLES count]`: the key's accounted footprint. SAMPLES is accepted
    /// and ignored: the footprint is counted exactly, not estimated from samples.
    Usage(Bytes),
    /// `MEMORY STATS`.
    Stats,
    /// `MEMORY DOCTOR`.
    Doctor,
    /// `MEMORY HELP`.
    Help,
}

impl Memory {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let sub = args.bytes()?;
        let arity = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(CommandError::other(format!(
                    "ERR wrong number of arguments for 'memory|{}' command",
                    String::from_utf8_lossy(&sub).to_lowercase()
                )))
            }
        };
        if is(&sub, "USAGE") {
            arity(args.remaining() >= 1)?;
            let key = args.bytes()?;
            while let Some(option) = args.next_opt() {
                if !is(&option, "SAMPLES") {
                    return Err(CommandError::Syntax);
                }
                args.option_i64()?;
            }
            Ok(Memory::Usage(key))
        } else if is(&sub, "STATS") {
            arity(args.remaining() == 0).map(|()| Memory::Stats)
        } else if is(&sub, "DOCTOR") {
            arity(args.remaining() == 0).map(|()| Memory::Doctor)
        } else if is(&sub, "HELP") {
            arity(args.remaining() == 0).map(|()| Memory::Help)
        } else {
            Err(CommandError::UnknownSubcommand {
                command: "MEMORY",
                sub,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Memory, String> {
        let items = words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes()));
        Memory::parse(&mut Args::new("memory", items.collect())).map_err(|e| e.to_string())
    }

    #[test]
    fn memory_usage_takes_a_key_and_samples() {
        assert_eq!(parse(&["usage", "k"]), Ok(Memory::Usage(Bytes::from("k"))));
        assert_eq!(
            parse(&["USAGE", "k", "SAMPLES", "0"]),
            Ok(Memory::Usage(Bytes::from("k")))
        );
        assert_eq!(
            parse(&["usage", "k", "SAMPLES"]),
            Err("ERR syntax error".into())
        );
        assert_eq!(
            parse(&["usage", "k", "x", "1"]),
            Err("ERR syntax error".into())
        );
        assert_eq!(
            parse(&["usage"]),
            Err("ERR wrong number of arguments for 'memory|usage' command".into())
        );
        assert_eq!(parse(&["stats"]), Ok(Memory::Stats));
    }
}
