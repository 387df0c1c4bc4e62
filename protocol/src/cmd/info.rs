//! `INFO [section ...]`.

use super::args::Args;
use super::CommandError;

/// `INFO [section ...]`: no section means the default set; `all`/`everything` mean every one.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    /// The sections asked for, lower-cased.
    pub sections: Vec<String>,
}

impl Info {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let sections = args
            .rest()
            .iter()
            .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
            .collect();
        Ok(Info { sections })
    }
}
