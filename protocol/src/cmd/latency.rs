//! `LATENCY LATEST | HISTORY event | RESET [event ...] | DOCTOR | HELP`.

use bytes::Bytes;

use super::args::{is, Args};
use super::CommandError;

/// `LATENCY <subcommand>`.
#[derive(Debug, Clone, PartialEq)]
pub enum Latency {
    /// `LATENCY LATEST`: every event's latest and highest spike.
    Latest,
    /// `LATENCY HISTORY event`: the event's spikes, oldest first.
    History(Bytes),
    /// `LATENCY RESET [event ...]`: those events' (none named: all) spikes forgotten.
    Reset(Vec<Bytes>),
    /// `LATENCY DOCTOR`: a report in words.
    Doctor,
    /// `LATENCY HELP`.
    Help,
}

impl Latency {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let sub = args.bytes()?;
        let exactly = |args: &Args, name: &str, count: usize| {
            if args.remaining() == count {
                Ok(())
            } else {
                Err(CommandError::other(format!(
                    "ERR wrong number of arguments for 'latency|{name}' command"
                )))
            }
        };
        if is(&sub, "LATEST") {
            exactly(args, "latest", 0)?;
            Ok(Latency::Latest)
        } else if is(&sub, "HISTORY") {
            exactly(args, "history", 1)?;
            Ok(Latency::History(args.bytes()?))
        } else if is(&sub, "RESET") {
            Ok(Latency::Reset(args.rest()))
        } else if is(&sub, "DOCTOR") {
            exactly(args, "doctor", 0)?;
            Ok(Latency::Doctor)
        } else if is(&sub, "HELP") {
            exactly(args, "help", 0)?;
            Ok(Latency::Help)
        } else {
            Err(CommandError::UnknownSubcommand {
                command: "LATENCY",
                sub,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Latency, String> {
        let items = words.iter().map(|w| Bytes::copy_from_slice(w.as_bytes()));
        Latency::parse(&mut Args::new("latency", items.collect())).map_err(|e| e.to_string())
    }

    #[test]
    fn latency_subcommands_take_their_arguments() {
        assert_eq!(parse(&["latest"]), Ok(Latency::Latest));
        assert_eq!(
            parse(&["HISTORY", "command"]),
            Ok(Latency::History(Bytes::from("command")))
        );
        assert_eq!(parse(&["reset"]), Ok(Latency::Reset(vec![])));
        assert_eq!(
            parse(&["history"]),
            Err("ERR wrong number of arguments for 'latency|history' command".to_owned())
        );
        assert_eq!(
            parse(&["graph", "command"]),
            Err("ERR unknown subcommand 'graph'. Try LATENCY HELP.".to_owned())
        );
    }
}
