//! `EVAL`, `EVALSHA`, `EVAL_RO`, `EVALSHA_RO` and `SCRIPT`, as Redis 7 parses them
//! (src/eval.c): the number of keys is checked before anything runs.

use bytes::Bytes;

use super::args::{is, Args};
use super::CommandError;

/// `EVAL script numkeys [key ...] [arg ...]` and its SHA and read-only forms.
#[derive(Debug, Clone, PartialEq)]
pub struct Eval {
    /// The script's body (EVAL) or its SHA-1 in hex, as sent (EVALSHA).
    pub script: Bytes,
    /// Whether `script` is a SHA-1 (EVALSHA, EVALSHA_RO).
    pub by_sha: bool,
    /// Whether the script may only read (EVAL_RO, EVALSHA_RO).
    pub read_only: bool,
    /// `KEYS`.
    pub keys: Vec<Bytes>,
    /// `ARGV`.
    pub args: Vec<Bytes>,
}

impl Eval {
    pub(crate) fn parse(a: &mut Args, by_sha: bool, read_only: bool) -> Result<Eval, CommandError> {
        let script = a.bytes()?;
        let numkeys = a.i64()?;
        if numkeys > a.remaining() as i64 {
            return Err(CommandError::other(
                "ERR Number of keys can't be greater than number of args",
            ));
        }
        if numkeys < 0 {
            return Err(CommandError::other("ERR Number of keys can't be negative"));
        }
        let mut keys = a.rest();
        let args = keys.split_off(numkeys as usize);
        Ok(Eval {
            script,
            by_sha,
            read_only,
            keys,
            args,
        })
    }
}

/// `SCRIPT LOAD | EXISTS | FLUSH | KILL | HELP`.
#[derive(Debug, Clone, PartialEq)]
pub enum Script {
    /// `SCRIPT LOAD script`.
    Load(Bytes),
    /// `SCRIPT EXISTS sha1 [sha1 ...]`.
    Exists(Vec<Bytes>),
    /// `SCRIPT FLUSH [ASYNC|SYNC]` (both empty the cache at once: it holds only sources).
    Flush,
    /// `SCRIPT KILL`.
    Kill,
    /// `SCRIPT HELP`.
    Help,
}

impl Script {
    pub(crate) fn parse(a: &mut Args) -> Result<Script, CommandError> {
        let sub = a.bytes()?;
        // Each subcommand's arity counts `SCRIPT` and the subcommand, as Redis 7's table does.
        let count = a.remaining() + 2;
        let (name, arity_ok): (&'static str, bool) = if is(&sub, "LOAD") {
            ("script|load", count == 3)
        } else if is(&sub, "EXISTS") {
            ("script|exists", count >= 3)
        } else if is(&sub, "FLUSH") {
            ("script|flush", count >= 2)
        } else if is(&sub, "KILL") {
            ("script|kill", count == 2)
        } else if is(&sub, "HELP") {
            ("script|help", count == 2)
        } else {
            return Err(CommandError::UnknownSubcommand {
                command: "SCRIPT",
                sub,
            });
        };
        if !arity_ok {
            return Err(CommandError::WrongArity(name));
        }
        Ok(match name {
            "script|load" => Script::Load(a.bytes()?),
            "script|exists" => Script::Exists(a.rest()),
            "script|flush" => {
                let mode = a.rest();
                match &mode[..] {
                    [] => Script::Flush,
                    [mode] if is(mode, "ASYNC") || is(mode, "SYNC") => Script::Flush,
                    _ => {
                        return Err(CommandError::other(
                            "ERR SCRIPT FLUSH only support SYNC|ASYNC option",
                        ))
                    }
                }
            }
            "script|kill" => Script::Kill,
            _ => Script::Help,
        })
    }
}
