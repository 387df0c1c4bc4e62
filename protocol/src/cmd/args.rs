//! A cursor over a command's arguments, with the conversions every parser needs.

use bytes::Bytes;

use super::CommandError;
use crate::request::parse_i64;

/// The arguments after the command name, consumed front to back.
#[derive(Debug)]
pub struct Args {
    name: &'static str,
    items: std::vec::IntoIter<Bytes>,
}

impl Args {
    /// Wraps the arguments of the command `name` (lower case, as errors quote it).
    pub fn new(name: &'static str, items: Vec<Bytes>) -> Args {
        Args {
            name,
            items: items.into_iter(),
        }
    }

    /// The command's lower-case name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// How many arguments are left.
    pub fn remaining(&self) -> usize {
        self.items.len()
    }

    /// The next argument; a missing one is an arity error.
    pub fn bytes(&mut self) -> Result<Bytes, CommandError> {
        self.items.next().ok_or(CommandError::WrongArity(self.name))
    }

    /// The next argument, if any.
    pub fn next_opt(&mut self) -> Option<Bytes> {
        self.items.next()
    }

    /// The next argument as an `i64`; a malformed one is `ERR value is not an integer...`.
    pub fn i64(&mut self) -> Result<i64, CommandError> {
        let arg = self.bytes()?;
        parse_i64(&arg).ok_or(CommandError::NotInteger)
    }

    /// The next argument as the value of an option: missing is a syntax error, as Redis says
    /// for `SET k v EX`.
    pub fn option_i64(&mut self) -> Result<i64, CommandError> {
        let arg = self.items.next().ok_or(CommandError::Syntax)?;
        parse_i64(&arg).ok_or(CommandError::NotInteger)
    }

    /// All remaining arguments.
    pub fn rest(&mut self) -> Vec<Bytes> {
        self.items.by_ref().collect()
    }

    /// Fails with an arity error unless every argument was consumed.
    pub fn finish(&mut self) -> Result<(), CommandError> {
        if self.items.len() == 0 {
            Ok(())
        } else {
            Err(CommandError::WrongArity(self.name))
        }
    }
}

/// Whether `arg` equals the ASCII keyword `upper` (given in upper case), ignoring case.
pub fn is(arg: &[u8], upper: &str) -> bool {
    arg.eq_ignore_ascii_case(upper.as_bytes())
}
