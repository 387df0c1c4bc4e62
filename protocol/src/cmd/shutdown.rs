//! `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]`.

use super::args::{is, Args};
use super::CommandError;

/// `SHUTDOWN`: stop the server gracefully.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Shutdown {
    /// `NOSAVE`: skip the final snapshot.
    pub nosave: bool,
    /// `SAVE`: force a final snapshot.
    pub save: bool,
    /// `NOW`: do not wait for in-flight work.
    pub now: bool,
    /// `FORCE`: ignore errors that would prevent shutdown.
    pub force: bool,
    /// `ABORT`: cancel a shutdown in progress.
    pub abort: bool,
}

impl Shutdown {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let mut shutdown = Shutdown::default();
        while let Some(option) = args.next_opt() {
            if is(&option, "NOSAVE") {
                shutdown.nosave = true;
            } else if is(&option, "SAVE") {
                shutdown.save = true;
            } else if is(&option, "NOW") {
                shutdown.now = true;
            } else if is(&option, "FORCE") {
                shutdown.force = true;
            } else if is(&option, "ABORT") {
                shutdown.abort = true;
            } else {
                return Err(CommandError::Syntax);
            }
        }
        if (shutdown.save && shutdown.nosave)
            || (shutdown.abort
                && (shutdown.save || shutdown.nosave || shutdown.now || shutdown.force))
        {
            return Err(CommandError::Syntax);
        }
        Ok(shutdown)
    }
}
