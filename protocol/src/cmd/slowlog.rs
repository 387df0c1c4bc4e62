//! `SLOWLOG GET [count] | LEN | RESET | HELP`.

use super::args::{is, Args};
use super::CommandError;

/// `SLOWLOG <subcommand>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Slowlog {
    /// `SLOWLOG GET [count]`: the newest `count` entries (default 10; `None`: all, for -1).
    Get(Option<usize>),
    /// `SLOWLOG LEN`.
    Len,
    /// `SLOWLOG RESET`.
    Reset,
    /// `SLOWLOG HELP`.
    Help,
}

/// Entries `SLOWLOG GET` answers without a count, as Redis.
const DEFAULT_COUNT: usize = 10;

impl Slowlog {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let sub = args.bytes()?;
        let arity = |args: &Args, name: &str, most: usize| {
            if args.remaining() > most {
                Err(CommandError::other(format!(
                    "ERR wrong number of arguments for 'slowlog|{name}' command"
                )))
            } else {
                Ok(())
            }
        };
        if is(&sub, "GET") {
            arity(args, "get", 1)?;
            if args.remaining() == 0 {
                return Ok(Slowlog::Get(Some(DEFAULT_COUNT)));
            }
            match args.i64()? {
                -1 => Ok(Slowlog::Get(None)),
                count if count < -1 => Err(CommandError::other(
                    "ERR count should be greater than or equal to -1",
                )),
                count => Ok(Slowlog::Get(Some(
                    usize::try_from(count).unwrap_or(usize::MAX),
                ))),
            }
        } else if is(&sub, "LEN") {
            arity(args, "len", 0)?;
            Ok(Slowlog::Len)
        } else if is(&sub, "RESET") {
            arity(args, "reset", 0)?;
            Ok(Slowlog::Reset)
        } else if is(&sub, "HELP") {
            arity(args, "help", 0)?;
            Ok(Slowlog::Help)
        } else {
            Err(CommandError::UnknownSubcommand {
                command: "SLOWLOG",
                sub,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn parse(words: &[&str]) -> Result<Slowlog, String> {
        let items = words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes()));
        Slowlog::parse(&mut Args::new("slowlog", items.collect())).map_err(|e| e.to_string())
    }

    #[test]
    fn slowlog_get_takes_a_count_of_at_least_minus_one() {
        assert_eq!(parse(&["get"]), Ok(Slowlog::Get(Some(10))));
        assert_eq!(parse(&["GET", "3"]), Ok(Slowlog::Get(Some(3))));
        assert_eq!(parse(&["get", "-1"]), Ok(Slowlog::Get(None)));
        assert_eq!(
            parse(&["get", "-2"]),
            Err("ERR count should be greater than or equal to -1".to_owned())
        );
        assert_eq!(
            parse(&["get", "x"]),
            Err("ERR value is not an integer or out of range".to_owned())
        );
        assert_eq!(
            parse(&["len", "x"]),
            Err("ERR wrong number of arguments for 'slowlog|len' command".to_owned())
        );
        assert_eq!(
            parse(&["nope"]),
            Err("ERR unknown subcommand 'nope'. Try SLOWLOG HELP.".to_owned())
        );
    }
}
