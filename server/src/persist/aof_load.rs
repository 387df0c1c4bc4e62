//! Reading the append-only log: at start (the base, then every incremental log replayed in the
//! manifest's order) and for `sessiond check-aof`.
//!
//! An incremental log is a run of the change feed's frames. A crash in the middle of an append
//! leaves its last frame torn: cut short, or (after a power loss) ending in zeros, or with the
//! bytes of its end not yet written. Such a tail is dropped with a warning naming the file and
//! the offset, and the file is truncated there so that appends continue on a frame boundary
//! (`aof-load-truncated yes`, as Redis; with `no` the start fails). A frame that is damaged and
//! followed by more data is not a torn tail: the start fails, naming the file and the offset.
//!
//! Under `appendfsync always` the writer writes zeros ahead of the log (see `Aof`'s
//! preallocation), so a log may end in zeros: at a frame boundary they are the end of the log
//! (the last log is cut there at start, so that appends continue on the frame boundary). A
//! frame that fails its checksum with only zeros after it is the torn last write into that
//! space.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::aof_files::{Layout, Manifest};
use super::loader;
use crate::store::feed::{decode_frame, Changes, FrameError, FRAME_HEADER, MAX_FRAME};
use crate::store::Databases;

/// The log cannot be loaded (or checked).
#[derive(Debug, thiserror::Error)]
#[error("append-only log {}: {problem} at byte offset {offset}", path.display())]
pub struct AofError {
    /// The file.
    pub path: PathBuf,
    /// Where the problem was found.
    pub offset: u64,
    /// What is wrong.
    pub problem: String,
}

impl From<loader::SnapshotError> for AofError {
    fn from(e: loader::SnapshotError) -> AofError {
        AofError {
            path: e.path,
            offset: e.offset,
            problem: e.problem,
        }
    }
}

/// What an incremental log held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IncrSummary {
    /// Whole frames read.
    pub frames: u64,
    /// Records in them.
    pub records: u64,
    /// The bytes of the whole frames (where the file is good up to).
    pub good_bytes: u64,
    /// The file's size.
    pub bytes: u64,
    /// Whether it ends in a torn frame (after `good_bytes`).
    pub torn: bool,
}

/// Where the first problem of a log lies.
#[derive(Debug)]
enum Problem {
    /// A torn last frame at `at`, of `len` bytes (zeros written ahead may follow it).
    Torn { at: u64, len: u64 },
    /// Damage followed by more data.
    Damaged(AofError),
    /// Zeros from this frame boundary to the end: space written ahead, not yet used.
    Spare(u64),
}

/// Reads the frames of the incremental log at `path` in order, handing each to `each`; stops
/// at the first torn or damaged frame.
fn read_incr(
    path: &Path,
    mut each: impl FnMut(Changes) -> Result<(), String>,
) -> Result<(IncrSummary, Option<Problem>), AofError> {
    let fail = |offset: u64, problem: String| AofError {
        path: path.to_owned(),
        offset,
        problem,
    };
    let file = File::open(path).map_err(|e| fail(0, format!("cannot open: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| fail(0, format!("cannot read: {e}")))?
        .len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut summary = IncrSummary {
        bytes: len,
        ..IncrSummary::default()
    };
    let mut frame = Vec::new();
    let mut at = 0u64;
    while at < len {
        let rest = len - at;
        if rest < FRAME_HEADER as u64 {
            return Ok((summary, Some(Problem::Torn { at, len: rest })));
        }
        frame.resize(FRAME_HEADER, 0);
        reader
            .read_exact(&mut frame)
            .map_err(|e| fail(at, format!("read error: {e}")))?;
        let payload = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as u64;
        let total = FRAME_HEADER as u64 + payload;
        if payload == 0 || payload > MAX_FRAME as u64 {
            // Zeros to the end: space written ahead of the log, or a tail a crash left
            // unwritten (both end the log on a frame boundary). Anything else is damage.
            let zeros = frame.iter().all(|b| *b == 0) && rest_is_zero(&mut reader)?;
            let problem = if zeros {
                Problem::Spare(at)
            } else {
                Problem::Damaged(fail(at, format!("frame length {payload} out of range")))
            };
            return Ok((summary, Some(problem)));
        }
        if total > rest {
            // Cut short by a crash, or a damaged length field: after a damaged one, whole
            // frames follow (a tear leaves none after it).
            let follows = whole_frame_follows(&mut reader, rest - FRAME_HEADER as u64)
                .map_err(|e| fail(at, format!("read error: {e}")))?;
            let problem = if follows {
                Problem::Damaged(fail(
                    at,
                    format!("frame length {payload} runs past the end, yet frames follow"),
                ))
            } else {
                Problem::Torn { at, len: rest }
            };
            return Ok((summary, Some(problem)));
        }
        frame.resize(total as usize, 0);
        reader
            .read_exact(&mut frame[FRAME_HEADER..])
            .map_err(|e| fail(at, format!("read error: {e}")))?;
        let changes = match decode_frame(&frame) {
            Ok(Some((changes, _))) => changes,
            // Whole by construction.
            Ok(None) => return Ok((summary, Some(Problem::Torn { at, len: total }))),
            // The last frame's end not yet written when the crash came: at the end of the file,
            // or before the zeros written ahead of the log. Not a damaged length whose span
            // covers whole frames (and ends in the zeros).
            Err(FrameError::Checksum)
                if (total == rest || rest_is_zero(&mut reader)?)
                    && !whole_frame_follows(&mut &frame[FRAME_HEADER..], payload)
                        .map_err(|e| fail(at, format!("read error: {e}")))? =>
            {
                return Ok((summary, Some(Problem::Torn { at, len: total })))
            }
            Err(error) => {
                return Ok((summary, Some(Problem::Damaged(fail(at, error.to_string())))))
            }
        };
        summary.frames += 1;
        summary.records += changes.len() as u64;
        each(changes).map_err(|problem| fail(at, problem))?;
        at += total;
        summary.good_bytes = at;
    }
    Ok((summary, None))
}

/// A tail longer than this after a frame that runs past the end is damage, not a tear: the
/// log is appended a gathering's frames at a time, far less than this.
const LONGEST_TEAR: u64 = 64 << 20;

/// Whether the `rest` bytes left in `reader` hold a whole, valid frame at any offset (its
/// length in range and within `rest`, its checksum right): then the frame before them was
/// damaged, not torn. A tail longer than [`LONGEST_TEAR`] counts as one that does.
fn whole_frame_follows(reader: &mut impl Read, rest: u64) -> std::io::Result<bool> {
    if rest > LONGEST_TEAR {
        return Ok(true);
    }
    let mut tail = Vec::with_capacity(rest as usize);
    reader.take(rest).read_to_end(&mut tail)?;
    let header = FRAME_HEADER;
    for start in 0..tail.len().saturating_sub(header) {
        let Some(h) = tail.get(start..start + header) else {
            break;
        };
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len == 0 || start + header + len > tail.len() {
            continue;
        }
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        if let Some(payload) = tail.get(start + header..start + header + len) {
            if crc32fast::hash(payload) == crc {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Whether what is left of `reader` is all zeros.
fn rest_is_zero(reader: &mut impl Read) -> Result<bool, AofError> {
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) if buf[..n].iter().all(|b| *b == 0) => {}
            Ok(_) => return Ok(false),
            Err(_) => return Ok(false),
        }
    }
}

/// What a load found.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The base's summary, if the manifest names one.
    pub base: Option<loader::Summary>,
    /// Frames replayed from the incremental logs.
    pub frames: u64,
    /// Records in them.
    pub records: u64,
    /// Where a torn tail was dropped: the file and the offset.
    pub truncated: Option<(PathBuf, u64)>,
}

/// Loads the log `manifest` names into `dbs` (which should be empty): the base, then every
/// incremental log in order. A torn last frame of the last log is dropped (and the file cut
/// there) when `load_truncated`; any other damage fails the load, naming file and offset.
pub fn load(
    layout: &Layout,
    manifest: &Manifest,
    dbs: &Databases,
    load_truncated: bool,
) -> Result<Loaded, AofError> {
    let mut loaded = Loaded::default();
    if let Some(base) = &manifest.base {
        let path = layout.path(&base.name);
        loaded.base = Some(loader::load_keeping_expired(&path, dbs, true)?);
    }
    let last = manifest.incrs.len().saturating_sub(1);
    for (index, part) in manifest.incrs.iter().enumerate() {
        let path = layout.path(&part.name);
        // Every log is created and fsynced before a manifest names it: a missing one is lost
        // changes (a logout among them), which `read_incr` refuses to start without.
        let apply = |changes: Changes| dbs.apply(changes).map_err(|e| e.to_string());
        let (summary, problem) = read_incr(&path, apply)?;
        loaded.frames += summary.frames;
        loaded.records += summary.records;
        match problem {
            None => {}
            Some(Problem::Spare(at)) if index == last => {
                // Appends continue at the frame boundary, not after the zeros.
                tracing::info!(
                    file = %path.display(),
                    offset = at,
                    spare_bytes = summary.bytes - at,
                    "the append-only log ends in space written ahead; cutting the file there"
                );
                truncate(&path, at)?;
            }
            Some(Problem::Spare(_)) => {}
            Some(Problem::Damaged(error)) => return Err(error),
            Some(Problem::Torn { at, len }) if index == last && load_truncated => {
                tracing::warn!(
                    file = %path.display(),
                    offset = at,
                    dropped_bytes = len,
                    spare_bytes = summary.bytes - at - len,
                    "the append-only log ends in a torn frame (a crash mid-write); dropping it and truncating the file there"
                );
                truncate(&path, at)?;
                loaded.truncated = Some((path, at));
            }
            Some(Problem::Torn { at, .. }) => {
                let problem = if index == last {
                    "torn last frame (aof-load-truncated is no; `sessiond check-aof --fix` cuts it)"
                } else {
                    "truncated frame in a log that is not the last"
                };
                return Err(AofError {
                    path,
                    offset: at,
                    problem: problem.to_owned(),
                });
            }
        }
    }
    for db in 0..dbs.count() {
        dbs.db(db).rebuild_user_index();
    }
    Ok(loaded)
}

fn truncate(path: &Path, at: u64) -> Result<(), AofError> {
    let cut = || -> std::io::Result<()> {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(at)?;
        file.sync_all()
    };
    cut().map_err(|e| AofError {
        path: path.to_owned(),
        offset: at,
        problem: format!("cannot truncate the log's tail: {e}"),
    })
}

/// What `check-aof` found in one file.
#[derive(Debug)]
pub enum Checked {
    /// A base snapshot, valid.
    Base(PathBuf, loader::Summary),
    /// An incremental log, valid up to `good_bytes` of `bytes`.
    Incr(PathBuf, IncrSummary),
}

/// Checks `path`: a manifest (then every file it names), a base snapshot (`.sdb`) or an
/// incremental log. With `fix`, an incremental log is truncated at its first bad frame. The
/// files checked; the first problem that `fix` did not (or could not) repair fails it.
pub fn check(path: &Path, fix: bool, now_ms: u64) -> Result<Vec<Checked>, AofError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if let Some(file_name) = name.strip_suffix(".manifest") {
        let layout = Layout {
            dir: path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_owned),
            file_name: file_name.to_owned(),
        };
        let manifest = layout
            .read_manifest()
            .map_err(|problem| AofError {
                path: path.to_owned(),
                offset: 0,
                problem,
            })?
            .ok_or_else(|| AofError {
                path: path.to_owned(),
                offset: 0,
                problem: "no such manifest".to_owned(),
            })?;
        // Only the last log may be cut (a torn tail is a crash's, and only the last file is
        // being written): cutting an earlier one would drop changes the later logs build on,
        // and replay them over a state that never was. Redis fixes only the last file too.
        let last = manifest.incrs.len().checked_sub(1);
        let mut checked = Vec::new();
        if let Some(base) = &manifest.base {
            checked.extend(check(&layout.path(&base.name), false, now_ms)?);
        }
        for (i, part) in manifest.incrs.iter().enumerate() {
            checked.extend(check(
                &layout.path(&part.name),
                fix && Some(i) == last,
                now_ms,
            )?);
        }
        return Ok(checked);
    }
    if name.ends_with(".sdb") {
        let summary = loader::check(path, now_ms)?;
        return Ok(vec![Checked::Base(path.to_owned(), summary)]);
    }
    let (mut summary, problem) = read_incr(path, |_| Ok(()))?;
    match problem {
        None | Some(Problem::Spare(_)) => {}
        Some(problem) if fix => {
            truncate(path, summary.good_bytes)?;
            let at = match problem {
                Problem::Torn { at, .. } | Problem::Spare(at) => at,
                Problem::Damaged(error) => error.offset,
            };
            tracing::debug!(at, "truncated");
            summary.bytes = summary.good_bytes;
        }
        Some(Problem::Torn { at, .. }) => {
            return Err(AofError {
                path: path.to_owned(),
                offset: at,
                problem: "torn last frame (--fix truncates it)".to_owned(),
            })
        }
        Some(Problem::Damaged(error)) => {
            return Err(AofError {
                problem: format!(
                    "{} (--fix truncates the file there, dropping {} bytes)",
                    error.problem,
                    summary.bytes - summary.good_bytes
                ),
                ..error
            })
        }
    }
    Ok(vec![Checked::Incr(path.to_owned(), summary)])
}
