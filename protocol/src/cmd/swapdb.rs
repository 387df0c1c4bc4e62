//! `SWAPDB index1 index2`.

use super::args::Args;
use super::CommandError;
use crate::request::parse_i64;

/// `SWAPDB index1 index2`: the two database indexes name each other's database from now on.
#[derive(Debug, Clone, PartialEq)]
pub struct SwapDb {
    /// The first index, as given (the server checks its range).
    pub first: i64,
    /// The second index.
    pub second: i64,
}

impl SwapDb {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        // Redis reads each as a C int, with an error of its own.
        let mut index = |which: &str| -> Result<i64, CommandError> {
            let arg = args.bytes()?;
            parse_i64(&arg)
                .filter(|n| i32::try_from(*n).is_ok())
                .ok_or_else(|| CommandError::other(format!("ERR invalid {which} DB index")))
        };
        let first = index("first")?;
        let second = index("second")?;
        args.finish()?;
        Ok(SwapDb { first, second })
    }
}
