//! `CONFIG GET pattern [pattern ...]` and `CONFIG SET parameter value [parameter value ...]`.

use bytes::Bytes;

use super::args::{is, Args};
use super::CommandError;

/// `CONFIG <subcommand>`: GET, SET, RESETSTAT, REWRITE and HELP.
#[derive(Debug, Clone, PartialEq)]
pub enum Config {
    /// `CONFIG GET pattern [pattern ...]`.
    Get(Vec<Bytes>),
    /// `CONFIG SET parameter value [parameter value ...]`: every pair, or none.
    Set(Vec<(Bytes, Bytes)>),
    /// `CONFIG RESETSTAT`: zero the statistics INFO reports.
    ResetStat,
    /// `CONFIG REWRITE`: the running settings written back into the config file.
    Rewrite,
    /// `CONFIG HELP`.
    Help,
}

impl Config {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let sub = args.bytes()?;
        if is(&sub, "GET") {
            let patterns = args.rest();
            if patterns.is_empty() {
                return Err(CommandError::other(
                    "ERR wrong number of arguments for 'config|get' command",
                ));
            }
            Ok(Config::Get(patterns))
        } else if is(&sub, "SET") {
            let mut rest = args.rest().into_iter();
            // Redis's arity for `config|set` is -4; an odd count is a syntax error.
            if rest.len() < 2 {
                return Err(CommandError::other(
                    "ERR wrong number of arguments for 'config|set' command",
                ));
            }
            if !rest.len().is_multiple_of(2) {
                return Err(CommandError::Syntax);
            }
            let mut pairs = Vec::with_capacity(rest.len() / 2);
            while let (Some(name), Some(value)) = (rest.next(), rest.next()) {
                pairs.push((name, value));
            }
            Ok(Config::Set(pairs))
        } else if is(&sub, "RESETSTAT") {
            if args.remaining() > 0 {
                return Err(CommandError::other(
                    "ERR wrong number of arguments for 'config|resetstat' command",
                ));
            }
            Ok(Config::ResetStat)
        } else if is(&sub, "REWRITE") {
            if args.remaining() != 0 {
                return Err(CommandError::other(
                    "ERR wrong number of arguments for 'config|rewrite' command",
                ));
            }
            Ok(Config::Rewrite)
        } else if is(&sub, "HELP") {
            Ok(Config::Help)
        } else {
            Err(CommandError::UnknownSubcommand {
                command: "CONFIG",
                sub,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Config, String> {
        let items = words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes()));
        Config::parse(&mut Args::new("config", items.collect())).map_err(|e| e.to_string())
    }

    #[test]
    fn config_set_takes_pairs_as_redis_does() {
        assert_eq!(
            parse(&["set", "a", "1", "b", ""]),
            Ok(Config::Set(vec![
                (Bytes::from("a"), Bytes::from("1")),
                (Bytes::from("b"), Bytes::new())
            ]))
        );
        assert_eq!(
            parse(&["SET", "a"]),
            Err("ERR wrong number of arguments for 'config|set' command".to_owned())
        );
        assert_eq!(
            parse(&["SET", "a", "1", "b"]),
            Err("ERR syntax error".to_owned())
        );
    }
}
