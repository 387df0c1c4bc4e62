//! Reading a snapshot in two streaming passes over one open file: the first reads and decodes
//! the whole file (framing, every record, record count, checksum) without touching the store,
//! dropping each record once checked; the second reads it again and applies each record as it
//! is decoded. A truncated, corrupt or bad-checksum file is an error naming the file and the
//! byte offset, before anything is loaded; the server does not start on it. Neither pass holds
//! more than one record, so a load takes the loaded keyspace's memory and a frame's.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use crate::persist::format::{FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_FRAME};
use crate::store::Record;
use crate::store::{Keyspaces, MAX_DATABASES};

/// A snapshot that cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[error("snapshot {}: {problem} at byte offset {offset}", path.display())]
pub struct SnapshotError {
    /// The file.
    pub path: PathBuf,
    /// Where the problem was found.
    pub offset: u64,
    /// What is wrong.
    pub problem: String,
}

/// What a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The format version.
    pub format_version: u16,
    /// When it was written, Unix ms.
    pub written_at_ms: u64,
    /// Records in the file.
    pub records: u64,
    /// String records.
    pub strings: u64,
    /// Hash records.
    pub hashes: u64,
    /// Set records.
    pub sets: u64,
    /// Session records.
    pub sessions: u64,
    /// Deletion records (from the journal of changes made during the save).
    pub deletes: u64,
    /// Records that change a key's state rather than give it (the change feed's; none in a
    /// snapshot this build writes).
    pub changes: u64,
    /// Records skipped at load because their deadline had passed.
    pub expired: u64,
    /// File size.
    pub bytes: u64,
}

/// Reads exactly `buf.len()` bytes, or reports truncation at `offset`.
fn read_exact(
    reader: &mut impl Read,
    buf: &mut [u8],
    offset: u64,
    path: &Path,
) -> Result<(), SnapshotError> {
    reader.read_exact(buf).map_err(|e| {
        let problem = if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "truncated file".to_owned()
        } else {
            format!("read error: {e}")
        };
        SnapshotError {
            path: path.to_owned(),
            offset,
            problem,
        }
    })
}

fn open(path: &Path) -> Result<File, SnapshotError> {
    File::open(path).map_err(|e| SnapshotError {
        path: path.to_owned(),
        offset: 0,
        problem: format!("cannot open: {e}"),
    })
}

/// Walks `file` (the snapshot at `path`) from its start, calling `each` with every record's
/// bytes and offset once the header has been checked; returns the header fields, the record
/// count and the file size. Only one frame is held at a time.
fn walk(
    file: &mut File,
    path: &Path,
    mut each: impl FnMut(u16, &[u8], u64) -> Result<(), SnapshotError>,
) -> Result<(u16, u64, u64, u64), SnapshotError> {
    let fail = |offset: u64, problem: String| SnapshotError {
        path: path.to_owned(),
        offset,
        problem,
    };
    file.rewind()
        .map_err(|e| fail(0, format!("cannot seek: {e}")))?;
    let file_len = file
        .metadata()
        .map_err(|e| fail(0, format!("cannot read metadata: {e}")))?
        .len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut crc = crc32fast::Hasher::new();
    let mut header = [0u8; HEADER_LEN];
    read_exact(&mut reader, &mut header, 0, path)?;
    if &header[..8] != MAGIC {
        return Err(fail(0, "not a sessiond snapshot (bad magic)".to_owned()));
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version > FORMAT_VERSION {
        return Err(fail(
            8,
            format!(
                "format version {version} is newer than this sessiond understands \
                 ({FORMAT_VERSION}); upgrade sessiond to load it"
            ),
        ));
    }
    if version == 0 {
        return Err(fail(8, "invalid format version 0".to_owned()));
    }
    let mut written_at = [0u8; 8];
    written_at.copy_from_slice(&header[12..20]);
    crc.update(&header);
    let mut offset = HEADER_LEN as u64;
    let mut records = 0u64;
    let mut frame = Vec::new();
    loop {
        let mut len = [0u8; 4];
        read_exact(&mut reader, &mut len, offset, path)?;
        crc.update(&len);
        let len = u32::from_le_bytes(len);
        if len == 0 {
            offset += 4;
            break;
        }
        if len > MAX_FRAME {
            return Err(fail(offset, format!("corrupt record length {len}")));
        }
        let past_the_end = || {
            fail(
                offset,
                format!("a record of {len} bytes runs past the end (truncated or corrupt file)"),
            )
        };
        // A corrupt length must not make the loader allocate (up to MAX_FRAME) more than the
        // file holds before it finds out.
        if offset + 4 + u64::from(len) > file_len {
            return Err(past_the_end());
        }
        frame.resize(len as usize, 0);
        read_exact(&mut reader, &mut frame, offset + 4, path).map_err(|_| past_the_end())?;
        crc.update(&frame);
        each(version, &frame, offset)?;
        records += 1;
        offset += 4 + u64::from(len);
    }
    let mut count = [0u8; 8];
    read_exact(&mut reader, &mut count, offset, path)?;
    crc.update(&count);
    let count = u64::from_le_bytes(count);
    if count != records {
        return Err(fail(
            offset,
            format!("record count says {count}, file holds {records}"),
        ));
    }
    let mut stored_crc = [0u8; 4];
    read_exact(&mut reader, &mut stored_crc, offset + 8, path)?;
    let stored_crc = u32::from_le_bytes(stored_crc);
    let computed = crc.finalize();
    if stored_crc != computed {
        return Err(fail(
            offset + 8,
            format!("checksum mismatch (file says {stored_crc:08x}, contents give {computed:08x})"),
        ));
    }
    let size = offset + 12;
    let mut extra = [0u8; 1];
    match reader.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => return Err(fail(size, "unexpected bytes after the checksum".to_owned())),
        Err(e) => return Err(fail(size, format!("read error: {e}"))),
    }
    Ok((version, u64::from_le_bytes(written_at), records, size))
}

/// A frame's database and record: version 1 frames are a record of database 0; from
/// version 2 a frame starts with its database's index (u16 LE).
fn decode(
    version: u16,
    frame: &[u8],
    offset: u64,
    path: &Path,
) -> Result<(usize, Record), SnapshotError> {
    let fail = |problem: String| SnapshotError {
        path: path.to_owned(),
        offset: offset + 4,
        problem,
    };
    let (db, body) = match (version, frame) {
        (1, body) => (0, body),
        (_, [low, high, body @ ..]) => (usize::from(u16::from_le_bytes([*low, *high])), body),
        _ => return Err(fail("corrupt record: no database index".to_owned())),
    };
    let record = postcard::from_bytes(body).map_err(|e| fail(format!("corrupt record: {e}")))?;
    Ok((db, record))
}

/// Reads a streamed snapshot's header (from a primary of this version: its format exactly),
/// adding it to `crc`.
fn stream_header(
    reader: &mut impl Read,
    source: &Path,
    crc: &mut crc32fast::Hasher,
) -> Result<[u8; HEADER_LEN], SnapshotError> {
    let fail = |offset: u64, problem: String| SnapshotError {
        path: source.to_owned(),
        offset,
        problem,
    };
    let mut header = [0u8; HEADER_LEN];
    read_exact(reader, &mut header, 0, source)?;
    if &header[..8] != MAGIC {
        return Err(fail(0, "not a sessiond snapshot (bad magic)".to_owned()));
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != FORMAT_VERSION {
        return Err(fail(
            8,
            format!("format version {version}, expected {FORMAT_VERSION}"),
        ));
    }
    crc.update(&header);
    Ok(header)
}

/// Reads a streamed snapshot's trailer at `offset` and checks it: `records` records, and the
/// checksum `crc` of everything before it.
fn stream_trailer(
    reader: &mut impl Read,
    source: &Path,
    offset: u64,
    records: u64,
    mut crc: crc32fast::Hasher,
) -> Result<[u8; 12], SnapshotError> {
    let fail = |offset: u64, problem: String| SnapshotError {
        path: source.to_owned(),
        offset,
        problem,
    };
    let mut trailer = [0u8; 12];
    read_exact(reader, &mut trailer, offset, source)?;
    crc.update(&trailer[..8]);
    let mut count_bytes = [0u8; 8];
    count_bytes.copy_from_slice(&trailer[..8]);
    if u64::from_le_bytes(count_bytes) != records {
        return Err(fail(offset, "record count mismatch".to_owned()));
    }
    let stored = u32::from_le_bytes([trailer[8], trailer[9], trailer[10], trailer[11]]);
    if stored != crc.finalize() {
        return Err(fail(offset + 8, "checksum mismatch".to_owned()));
    }
    Ok(trailer)
}

/// Loads a snapshot streamed by a replica's primary (see `writer::write_stream`) into `dbs`,
/// which the caller emptied: each record is applied as it is decoded, and the count and the
/// checksum are checked at the end. On an error `dbs` holds part of the stream; the caller
/// empties it again. `source` names the stream in errors. Keys past their deadline on this
/// server's clock are kept: the primary decides when they go (its deletion follows in the
/// stream), and a later change from it may keep them alive.
pub fn load_stream(
    mut reader: impl Read,
    source: &Path,
    dbs: &impl Keyspaces,
) -> Result<Summary, SnapshotError> {
    let fail = |offset: u64, problem: String| SnapshotError {
        path: source.to_owned(),
        offset,
        problem,
    };
    let mut crc = crc32fast::Hasher::new();
    stream_header(&mut reader, source, &mut crc)?;
    let version = FORMAT_VERSION;
    let now_ms = dbs.keyspace(0).now_ms();
    let mut summary = Summary {
        format_version: version,
        ..Summary::default()
    };
    let mut offset = HEADER_LEN as u64;
    let mut frame = Vec::new();
    loop {
        let mut len = [0u8; 4];
        read_exact(&mut reader, &mut len, offset, source)?;
        crc.update(&len);
        let len = u32::from_le_bytes(len);
        if len == 0 {
            offset += 4;
            break;
        }
        if len > MAX_FRAME {
            return Err(fail(offset, format!("corrupt record length {len}")));
        }
        // Read through `take`, so that a corrupt length allocates only what arrives.
        frame.clear();
        let got = (&mut reader)
            .take(u64::from(len))
            .read_to_end(&mut frame)
            .map_err(|e| fail(offset + 4, format!("read error: {e}")))?;
        if got != len as usize {
            return Err(fail(offset + 4, "truncated stream".to_owned()));
        }
        crc.update(&frame);
        let (db, record) = decode(version, &frame, offset, source)?;
        if db >= dbs.count() {
            return Err(fail(
                offset + 4,
                format!(
                    "a record of database {db}, but the server has {} databases",
                    dbs.count()
                ),
            ));
        }
        count(&mut summary, &record, now_ms);
        // Time zero: no deadline has passed.
        dbs.keyspace(db).restore(record, 0);
        summary.records += 1;
        offset += 4 + u64::from(len);
    }
    stream_trailer(&mut reader, source, offset, summary.records, crc)?;
    for db in 0..dbs.count() {
        dbs.keyspace(db).rebuild_user_index();
    }
    summary.bytes = offset + 12;
    Ok(summary)
}

/// Copies the snapshot `reader` streams (a replica's primary's) to `out`, checking it whole
/// on the way: its header, its framing, its record count and its checksum, reading nothing
/// past its end (what follows is the primary's stream). Decodes no record and touches no
/// keyspace: a replica loads the copy only once it is known complete, keeping its data
/// meanwhile. `source` names the stream in errors. The bytes copied.
pub fn receive_stream(
    mut reader: impl Read,
    source: &Path,
    mut out: impl std::io::Write,
) -> Result<u64, SnapshotError> {
    let fail = |offset: u64, problem: String| SnapshotError {
        path: source.to_owned(),
        offset,
        problem,
    };
    let write = |out: &mut dyn std::io::Write, bytes: &[u8], offset: u64| {
        out.write_all(bytes)
            .map_err(|e| fail(offset, format!("cannot write the copy: {e}")))
    };
    let mut crc = crc32fast::Hasher::new();
    let header = stream_header(&mut reader, source, &mut crc)?;
    write(&mut out, &header, 0)?;
    let mut offset = HEADER_LEN as u64;
    let mut records = 0u64;
    let mut frame = vec![0u8; 64 * 1024];
    loop {
        let mut len = [0u8; 4];
        read_exact(&mut reader, &mut len, offset, source)?;
        crc.update(&len);
        write(&mut out, &len, offset)?;
        let len = u32::from_le_bytes(len);
        if len == 0 {
            offset += 4;
            break;
        }
        if len > MAX_FRAME {
            return Err(fail(offset, format!("corrupt record length {len}")));
        }
        // In pieces: a corrupt length makes nothing allocate.
        let mut left = len as usize;
        let mut at = offset + 4;
        while left > 0 {
            let piece = &mut frame[..left.min(64 * 1024)];
            read_exact(&mut reader, piece, at, source)?;
            crc.update(piece);
            write(&mut out, piece, at)?;
            left -= piece.len();
            at += piece.len() as u64;
        }
        records += 1;
        offset = at;
    }
    let trailer = stream_trailer(&mut reader, source, offset, records, crc)?;
    write(&mut out, &trailer, offset)?;
    out.flush()
        .map_err(|e| fail(offset, format!("cannot write the copy: {e}")))?;
    Ok(offset + 12)
}

/// Verifies `path` and counts its records by kind, loading nothing (`check-snapshot`).
pub fn check(path: &Path, now_ms: u64) -> Result<Summary, SnapshotError> {
    verify(&mut open(path)?, path, now_ms, MAX_DATABASES)
}

/// The first pass: decodes and counts every record of `file`, dropping each.
fn verify(
    file: &mut File,
    path: &Path,
    now_ms: u64,
    databases: usize,
) -> Result<Summary, SnapshotError> {
    let mut summary = Summary::default();
    // A database at or beyond `databases` is refused (loading it would drop its keys), once
    // the whole file is known to be intact: a damaged file gets the same error from both.
    let mut beyond = None;
    let (version, written_at_ms, records, bytes) = walk(file, path, |version, frame, offset| {
        let (db, record) = decode(version, frame, offset, path)?;
        if db >= databases && beyond.is_none() {
            beyond = Some((db, offset));
        }
        count(&mut summary, &record, now_ms);
        Ok(())
    })?;
    if let Some((db, offset)) = beyond {
        return Err(SnapshotError {
            path: path.to_owned(),
            offset: offset + 4,
            problem: format!(
                "a record of database {db}, but the server has {databases} databases \
                 (raise --databases to load it)"
            ),
        });
    }
    Ok(Summary {
        format_version: version,
        written_at_ms,
        records,
        bytes,
        ..summary
    })
}

fn count(summary: &mut Summary, record: &Record, now_ms: u64) {
    match record {
        Record::String { .. } => summary.strings += 1,
        Record::Hash { .. } => summary.hashes += 1,
        Record::Set { .. } => summary.sets += 1,
        Record::Session { .. } => summary.sessions += 1,
        Record::Delete { .. } => summary.deletes += 1,
        // Changes relative to a state: the change feed's, not a snapshot's.
        _ => summary.changes += 1,
    }
    summary.expired += u64::from(record.deadline_ms().is_some_and(|d| d <= now_ms));
}

/// Verifies `path`, then loads it into `dbs` (which should be empty): keys whose deadline has
/// passed are skipped, and the per-user session index is rebuilt.
///
/// Two passes over the same open file: the first verifies all of it (every record decoded and
/// dropped, the count and the checksum), so a damaged file loads nothing; the second decodes
/// each record again and applies it at once. Holding every decoded record until the checksum
/// is checked would hold a second copy of the dataset; reading the file twice costs time
/// instead (the second read mostly from the page cache). Should the second pass find the
/// file different after all (a read error), the error is returned with part of it loaded: the
/// server does not start on it either.
pub fn load(path: &Path, dbs: &impl Keyspaces) -> Result<Summary, SnapshotError> {
    load_keeping_expired(path, dbs, false)
}

/// [`load`], keeping the keys whose deadline passed when `keep_expired` (the base of the
/// append-only log: a change later in the log may move a deadline later, and it needs the
/// key; the active expiry reclaims what stays past its deadline, and no reader sees it).
pub fn load_keeping_expired(
    path: &Path,
    dbs: &impl Keyspaces,
    keep_expired: bool,
) -> Result<Summary, SnapshotError> {
    let now_ms = dbs.keyspace(0).now_ms();
    let mut file = open(path)?;
    let summary = verify(&mut file, path, now_ms, dbs.count())?;
    // No deadline is at or before 0 but the "none" of 0 itself.
    let restore_at = if keep_expired { 0 } else { now_ms };
    walk(&mut file, path, |version, frame, offset| {
        let (db, record) = decode(version, frame, offset, path)?;
        dbs.keyspace(db).restore(record, restore_at);
        Ok(())
    })?;
    for db in 0..dbs.count() {
        dbs.keyspace(db).rebuild_user_index();
    }
    Ok(summary)
}
