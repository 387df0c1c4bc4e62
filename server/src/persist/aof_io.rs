//! The append-only log's open file, as its writer uses it: a `std::fs::File` that, in the
//! crate's tests only, passes every write and fsync through a fault hook ([`faults`]), so
//! that tests can fill the disk, fail an fsync or hold one back. In other builds the wrapper
//! is the file and nothing more: no field, no branch, no dynamic dispatch.

use std::fs::File;
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::path::Path;

/// An incremental log file the writer appends to.
#[derive(Debug)]
pub(crate) struct LogFile {
    file: File,
    /// The faults a test installed for the file's directory.
    #[cfg(test)]
    faults: Option<std::sync::Arc<faults::Faults>>,
}

impl LogFile {
    /// `file`, opened at `path`.
    #[inline]
    pub(crate) fn new(file: File, path: &Path) -> LogFile {
        #[cfg(not(test))]
        let _ = path;
        LogFile {
            file,
            #[cfg(test)]
            faults: faults::installed(path),
        }
    }

    /// `fdatasync`.
    #[inline]
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        #[cfg(test)]
        if let Some(faults) = &self.faults {
            return faults.sync(|| self.file.sync_data());
        }
        self.file.sync_data()
    }

    /// Cuts the file to `len` bytes (the file position does not move).
    #[inline]
    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        #[cfg(test)]
        if self.faults.as_ref().is_some_and(|f| f.cuts_fail()) {
            // EIO.
            return Err(io::Error::from_raw_os_error(5));
        }
        self.file.set_len(len)
    }

    /// Writes `len` zeros at `offset`, the file position unmoved: space the log is written
    /// into later (see `Aof`'s preallocation). Under a test's faults it fails, as on a full
    /// disk (their writes model the disk's room, which space written ahead would change).
    pub(crate) fn zero_fill(&self, offset: u64, len: u64) -> io::Result<()> {
        #[cfg(test)]
        if self.faults.is_some() {
            // ENOSPC.
            return Err(io::Error::from_raw_os_error(28));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            let zeros = vec![0u8; len.min(1 << 20) as usize];
            let mut at = offset;
            let end = offset + len;
            while at < end {
                let n = (end - at).min(zeros.len() as u64) as usize;
                self.file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
        }
        #[cfg(not(unix))]
        let _ = (offset, len);
        Ok(())
    }

    /// Writes every byte of `slices`, in order, at the file's position: one `writev` for
    /// them all when the kernel takes them (`Write::write_all_vectored` is not stable yet).
    pub(crate) fn write_all_slices(&self, slices: &[&[u8]]) -> io::Result<()> {
        let mut io: Vec<IoSlice<'_>> = slices
            .iter()
            .filter(|slice| !slice.is_empty())
            .map(|slice| IoSlice::new(slice))
            .collect();
        let mut rest = &mut io[..];
        let mut writer = self;
        while !rest.is_empty() {
            match writer.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Another handle to the same file (the `everysec` fsync thread's).
    pub(crate) fn try_clone(&self) -> io::Result<LogFile> {
        Ok(LogFile {
            file: self.file.try_clone()?,
            #[cfg(test)]
            faults: self.faults.clone(),
        })
    }
}

impl Write for &LogFile {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        #[cfg(test)]
        if let Some(faults) = &self.faults {
            let room = faults.room(buf.len())?;
            return (&self.file).write(&buf[..room]);
        }
        (&self.file).write(buf)
    }

    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        #[cfg(test)]
        if self.faults.is_some() {
            // One slice at a time, through `write`'s faults.
            let buf = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            return self.write(buf);
        }
        (&self.file).write_vectored(bufs)
    }

    #[inline]
    fn flush(&mut self) -> io::Result<()> {
        (&self.file).flush()
    }
}

impl Seek for &LogFile {
    #[inline]
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        (&self.file).seek(pos)
    }
}

/// Faults for the log files of one directory (tests only): [`install`] them before the log
/// opens its files there.
#[cfg(test)]
pub(crate) mod faults {
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Condvar, Mutex, Weak};

    /// What the log's files of one directory do wrong, and what they did.
    #[derive(Debug, Default)]
    pub(crate) struct Faults {
        /// Bytes the disk still takes (`None`: unlimited); past them a write fails with ENOSPC
        /// after writing what fits, as on a full disk.
        room: Mutex<Option<u64>>,
        /// Write calls that failed.
        failed_writes: AtomicU64,
        /// fsyncs fail with EIO.
        fail_syncs: AtomicBool,
        /// Cutting a file back (`set_len`) fails with EIO.
        fail_cuts: AtomicBool,
        /// fsyncs of the directory itself so far, and the first of them to fail with EIO.
        dir_syncs: AtomicU64,
        fail_dir_syncs_from: AtomicU64,
        /// fsyncs wait while this is true ([`Faults::hold_syncs`]), and how many wait now.
        hold: Mutex<(bool, u64)>,
        changed: Condvar,
        /// fsyncs that succeeded.
        syncs: AtomicU64,
        /// fsyncs that failed.
        failed_syncs: AtomicU64,
    }

    static INSTALLED: Mutex<Vec<(PathBuf, Weak<Faults>)>> = Mutex::new(Vec::new());

    /// Faults for the files the log opens in `dir` from now on (while the result lives).
    pub(crate) fn install(dir: &Path) -> Arc<Faults> {
        let faults = Arc::new(Faults::default());
        let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
        installed.retain(|(_, f)| f.strong_count() > 0);
        installed.push((dir.to_owned(), Arc::downgrade(&faults)));
        faults
    }

    /// Counts an fsync of `dir`; whether it fails ([`Faults::fail_dir_syncs_from`]).
    pub(crate) fn dir_sync_fails(dir: &Path) -> bool {
        installed(&dir.join("_")).is_some_and(|f| {
            let number = f.dir_syncs.fetch_add(1, Ordering::SeqCst);
            let from = f.fail_dir_syncs_from.load(Ordering::SeqCst);
            from != 0 && number + 1 >= from
        })
    }

    /// The faults installed for the directory of `path`, if any.
    pub(super) fn installed(path: &Path) -> Option<Arc<Faults>> {
        let dir = path.parent()?;
        let installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
        installed
            .iter()
            .find(|(d, _)| d == dir)
            .and_then(|(_, f)| f.upgrade())
    }

    impl Faults {
        /// The disk takes `bytes` more, then is full.
        pub(crate) fn fill_after(&self, bytes: u64) {
            *self.room.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        }

        /// The disk has room again.
        pub(crate) fn free(&self) {
            *self.room.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }

        /// Write calls that failed so far.
        pub(crate) fn failed_writes(&self) -> u64 {
            self.failed_writes.load(Ordering::SeqCst)
        }

        /// fsyncs fail (`true`) or work.
        pub(crate) fn fail_syncs(&self, fail: bool) {
            self.fail_syncs.store(fail, Ordering::SeqCst);
        }

        /// fsyncs of the directory fail from the `number`th on (counting from 1 since the
        /// faults were installed; 0: none fail).
        pub(crate) fn fail_dir_syncs_from(&self, number: u64) {
            self.fail_dir_syncs_from.store(number, Ordering::SeqCst);
        }

        /// fsyncs of the directory so far.
        pub(crate) fn dir_syncs(&self) -> u64 {
            self.dir_syncs.load(Ordering::SeqCst)
        }

        /// Cutting a file back fails (`true`) or works.
        pub(crate) fn fail_cuts(&self, fail: bool) {
            self.fail_cuts.store(fail, Ordering::SeqCst);
        }

        pub(super) fn cuts_fail(&self) -> bool {
            self.fail_cuts.load(Ordering::SeqCst)
        }

        /// fsyncs wait (`true`) until released (`false`).
        pub(crate) fn hold_syncs(&self, hold: bool) {
            self.hold.lock().unwrap_or_else(|p| p.into_inner()).0 = hold;
            self.changed.notify_all();
        }

        /// Waits until `count` fsyncs are held back.
        pub(crate) fn wait_held(&self, count: u64) {
            let hold = self.hold.lock().unwrap_or_else(|p| p.into_inner());
            let _held = self
                .changed
                .wait_while(hold, |(_, held)| *held < count)
                .unwrap_or_else(|p| p.into_inner());
        }

        /// Waits until `count` fsyncs succeeded in all.
        pub(crate) fn wait_syncs(&self, count: u64) {
            let hold = self.hold.lock().unwrap_or_else(|p| p.into_inner());
            let _hold = self
                .changed
                .wait_while(hold, |_| self.syncs.load(Ordering::SeqCst) < count)
                .unwrap_or_else(|p| p.into_inner());
        }

        /// Waits until `count` fsyncs failed in all.
        pub(crate) fn wait_failed_syncs(&self, count: u64) {
            let hold = self.hold.lock().unwrap_or_else(|p| p.into_inner());
            let _hold = self
                .changed
                .wait_while(hold, |_| self.failed_syncs.load(Ordering::SeqCst) < count)
                .unwrap_or_else(|p| p.into_inner());
        }

        /// fsyncs that succeeded so far.
        pub(crate) fn syncs(&self) -> u64 {
            self.syncs.load(Ordering::SeqCst)
        }

        /// How much of a write of `len` bytes the disk takes; an error when none.
        pub(super) fn room(&self, len: usize) -> io::Result<usize> {
            let mut room = self.room.lock().unwrap_or_else(|p| p.into_inner());
            match &mut *room {
                None => Ok(len),
                Some(0) if len > 0 => {
                    self.failed_writes.fetch_add(1, Ordering::SeqCst);
                    // ENOSPC.
                    Err(io::Error::from_raw_os_error(28))
                }
                Some(left) => {
                    let taken = len.min(usize::try_from(*left).unwrap_or(usize::MAX));
                    *left -= taken as u64;
                    Ok(taken)
                }
            }
        }

        /// An fsync: held while asked, then failed (EIO) or `real`.
        pub(super) fn sync(&self, real: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
            let mut hold = self.hold.lock().unwrap_or_else(|p| p.into_inner());
            if hold.0 {
                hold.1 += 1;
                self.changed.notify_all();
                hold = self
                    .changed
                    .wait_while(hold, |(held, _)| *held)
                    .unwrap_or_else(|p| p.into_inner());
                hold.1 -= 1;
            }
            drop(hold);
            let result = if self.fail_syncs.load(Ordering::SeqCst) {
                // EIO.
                Err(io::Error::from_raw_os_error(5))
            } else {
                real()
            };
            let _hold = self.hold.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(()) => self.syncs.fetch_add(1, Ordering::SeqCst),
                Err(_) => self.failed_syncs.fetch_add(1, Ordering::SeqCst),
            };
            self.changed.notify_all();
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sessiond-aof-io-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn open(path: &Path) -> LogFile {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)
            .unwrap();
        LogFile::new(file, path)
    }

    #[test]
    fn slices_are_written_in_order_and_a_full_disk_stops_them_where_it_fills() {
        let dir = scratch("slices");
        let path = dir.join("log");
        let file = open(&path);
        file.write_all_slices(&[b"ab", b"", b"cdef", b"g"]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abcdefg");

        // Partial writes, one slice at a time (the faults' `write_vectored`), resume mid-slice.
        let faults_dir = dir.join("faulty");
        std::fs::create_dir_all(&faults_dir).unwrap();
        let faults = faults::install(&faults_dir);
        let path = faults_dir.join("log");
        let file = open(&path);
        faults.fill_after(5);
        let error = file.write_all_slices(&[b"abc", b"defg", b"h"]).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(28));
        assert_eq!(std::fs::read(&path).unwrap(), b"abcde");
        faults.free();
        file.write_all_slices(&[b"xy", b"z"]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abcdexyz");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
