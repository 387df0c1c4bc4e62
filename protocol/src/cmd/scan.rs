//! `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`.

use bytes::Bytes;

use super::args::{is, Args};
use super::CommandError;

/// `SCAN`: incremental iteration over the keyspace.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    /// The cursor from the previous call; 0 starts.
    pub cursor: u64,
    /// Only keys matching this glob pattern are returned.
    pub pattern: Option<Bytes>,
    /// How much work to do per call (a hint, as in Redis); at least 1, default 10.
    pub count: usize,
    /// Only keys of this type (`string`, `hash`, `session`...), lower-cased.
    pub type_name: Option<String>,
}

impl Scan {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let cursor = args.bytes()?;
        let cursor = std::str::from_utf8(&cursor)
            .ok()
            .filter(|text| !text.starts_with('+'))
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| CommandError::other("ERR invalid cursor"))?;
        let mut scan = Scan {
            cursor,
            pattern: None,
            count: 10,
            type_name: None,
        };
        while let Some(option) = args.next_opt() {
            if is(&option, "MATCH") {
                scan.pattern = Some(args.next_opt().ok_or(CommandError::Syntax)?);
            } else if is(&option, "COUNT") {
                let count = args.option_i64()?;
                if count < 1 {
                    return Err(CommandError::Syntax);
                }
                scan.count = usize::try_from(count).unwrap_or(usize::MAX);
            } else if is(&option, "TYPE") {
                let kind = args.next_opt().ok_or(CommandError::Syntax)?;
                scan.type_name = Some(String::from_utf8_lossy(&kind).to_ascii_lowercase());
            } else {
                return Err(CommandError::Syntax);
            }
        }
        Ok(scan)
    }
}
