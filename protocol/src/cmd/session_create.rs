//! `SESSION.CREATE [USER user] [IDLE ms] [ABSOLUTE ms] [DATA field value [field value ...]]`.

use bytes::Bytes;

use super::args::{is, Args};
use super::CommandError;

/// Create a session under a server-issued ID.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionCreate {
    /// The user the session belongs to, for LIST/COUNT/DESTROYALL.
    pub user: Option<Bytes>,
    /// The idle timeout in ms; the server default when absent.
    pub idle_ms: Option<u64>,
    /// The absolute timeout in ms; the server default when absent.
    pub absolute_ms: Option<u64>,
    /// The initial fields.
    pub data: Vec<(Bytes, Bytes)>,
}

/// Parses a timeout given in milliseconds: a positive integer.
pub(crate) fn timeout_ms(args: &mut Args, option: &str) -> Result<u64, CommandError> {
    let value = args.option_i64()?;
    if value <= 0 {
        return Err(CommandError::other(format!(
            "ERR {option} must be a positive number of milliseconds"
        )));
    }
    Ok(value as u64)
}

impl SessionCreate {
    pub(crate) fn parse(args: &mut Args) -> Result<Self, CommandError> {
        let mut create = SessionCreate {
            user: None,
            idle_ms: None,
            absolute_ms: None,
            data: Vec::new(),
        };
        while let Some(option) = args.next_opt() {
            if is(&option, "USER") {
                create.user = Some(args.next_opt().ok_or(CommandError::Syntax)?);
            } else if is(&option, "IDLE") {
                create.idle_ms = Some(timeout_ms(args, "IDLE")?);
            } else if is(&option, "ABSOLUTE") {
                create.absolute_ms = Some(timeout_ms(args, "ABSOLUTE")?);
            } else if is(&option, "DATA") {
                if args.remaining() == 0 || !args.remaining().is_multiple_of(2) {
                    return Err(CommandError::other("ERR DATA needs field value pairs"));
                }
                while let (Some(field), Some(value)) = (args.next_opt(), args.next_opt()) {
                    create.data.push((field, value));
                }
            } else {
                return Err(CommandError::Syntax);
            }
        }
        Ok(create)
    }
}
