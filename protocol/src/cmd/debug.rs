//! `DEBUG SLEEP seconds` and `DEBUG HELP`: the parts of Redis's DEBUG that apply here.

use super::args::{is, Args};
use super::CommandError;

/// `DEBUG <subcommand>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Debug {
    /// `DEBUG SLEEP seconds` (a decimal number, as Redis's): the connection waits this long
    /// before its reply.
    Sleep(std::time::Duration),
    /// `DEBUG HELP`.
    Help,
}

impl Debug {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let sub = args.bytes()?;
        if is(&sub, "SLEEP") {
            if args.remaining() != 1 {
                return Err(CommandError::Syntax);
            }
            let seconds = args.bytes()?;
            std::str::from_utf8(&seconds)
                .ok()
                .and_then(|text| text.parse::<f64>().ok())
                .and_then(|seconds| std::time::Duration::try_from_secs_f64(seconds).ok())
                .map(Debug::Sleep)
                .ok_or_else(|| CommandError::other("ERR value is not a valid float"))
        } else if is(&sub, "HELP") {
            Ok(Debug::Help)
        } else {
            Err(CommandError::other(format!(
                "ERR unknown subcommand '{}'. Try DEBUG HELP.",
                String::from_utf8_lossy(&sub)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn parse(words: &[&str]) -> Result<Debug, String> {
        let items: Vec<Bytes> = words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        Debug::parse(&mut Args::new("debug", items)).map_err(|e| e.to_string())
    }

    #[test]
    fn debug_sleep_takes_decimal_seconds() {
        assert_eq!(
            parse(&["sleep", "0.25"]),
            Ok(Debug::Sleep(std::time::Duration::from_millis(250)))
        );
        assert_eq!(
            parse(&["SLEEP", "0"]),
            Ok(Debug::Sleep(std::time::Duration::ZERO))
        );
        for bad in ["-1", "soon", "inf", "NaN"] {
            assert_eq!(
                parse(&["sleep", bad]),
                Err("ERR value is not a valid float".into()),
                "{bad}"
            );
        }
        assert!(parse(&["segfault"]).unwrap_err().contains("Try DEBUG HELP"));
    }
}
