//! The data directory's lock: one server per directory.
//!
//! Two servers on one directory would each remove the other's temporary files at start and
//! overwrite each other's snapshot. A server therefore holds an exclusive `flock` on
//! [`LOCK_FILE`] in its data directory for as long as it runs; a second one fails to take it
//! and refuses to start. The kernel releases the lock when the process ends, however it ends
//! (kill -9 included), so a stale lock file never blocks a restart.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "sessiond.lock";

/// An exclusive lock on a data directory, released on drop.
#[derive(Debug)]
pub struct DirLock {
    /// The open lock file; the lock lives as long as this description is open.
    _file: File,
}

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "data directory {} is in use by another sessiond (lock file {} is locked); \
         give each server its own --data-dir",
        dir.display(),
        file.display()
    )]
    InUse {
        /// The directory.
        dir: PathBuf,
        /// The lock file.
        file: PathBuf,
    },
    /// The lock file cannot be opened or locked.
    #[error("data directory {}: lock file {}: {source}", dir.display(), file.display())]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The lock file.
        file: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl DirLock {
    /// Takes the lock of `dir` (which exists), without waiting.
    pub fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let file_path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            dir: dir.to_owned(),
            file: file_path.clone(),
            source,
        };
        let mut options = OpenOptions::new();
        // Never truncated: the lock holder's file is not touched by the process it turns away.
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&file_path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockError::InUse {
                dir: dir.to_owned(),
                file: file_path,
            }),
            Err(TryLockError::Error(source)) => Err(io(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_of_one_directory_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("sessiond-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = DirLock::acquire(&dir).unwrap();
        let refused = DirLock::acquire(&dir).unwrap_err();
        assert!(matches!(refused, LockError::InUse { .. }), "{refused}");
        assert!(refused.to_string().contains(&dir.display().to_string()));
        drop(first);
        let again = DirLock::acquire(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(again.is_ok(), "the lock was released: {again:?}");
    }
}
