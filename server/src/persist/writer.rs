//! Writing a snapshot: stream every shard, then the journal, into a temporary file in the data
//! directory; fsync it, rename it over the previous snapshot, fsync the directory.
//!
//! Shard by shard, the writer encodes the shard's records into one buffer under the shard's
//! read lock ([`Store::encode_shard`](crate::store::Store::encode_shard): strings straight from
//! their nodes), releases the lock, and writes the buffer through a buffered writer: the server
//! keeps serving, and a writer only waits for one shard's lock at a time. The journal (see
//! `store::journal`) makes the result one consistent instant; a save whose journal outgrows
//! its bound is abandoned ([`WriteError::JournalFull`]).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::persist::format::{FORMAT_VERSION, MAGIC};
use crate::store::{Keyspaces, Record};

/// The most capacity of the walk's shard buffer kept from one shard to the next: a shard's
/// records of a 16 GB keyspace (1,024 shards), so that most walks allocate it once, while a
/// shard holding a huge hash does not keep its buffer for the rest of the walk.
const SCRATCH_KEPT: usize = 16 << 20;

/// What a finished save wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Records in the file, journal included.
    pub records: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// How long it took.
    pub duration: Duration,
}

/// How a save is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// The most bytes the journal of changes made during the save may hold; past it the save
    /// is abandoned.
    pub journal_max_bytes: u64,
    /// A pause after each shard, for tests that need a save in progress.
    pub shard_delay: Duration,
    /// Whether the snapshot is the keyspace at one instant (the journal's close). Without,
    /// each key is as it was when its shard was read, and nothing is journaled: only for a
    /// base that a complete stream of the changes since before the walk completes (an
    /// append-only log's rewrite; see `store::feed` on why).
    pub consistent: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            journal_max_bytes: u64::MAX,
            shard_delay: Duration::ZERO,
            consistent: true,
        }
    }
}

/// Why a save was not written; the previous snapshot is untouched either way.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The changes made during the save outgrew the journal's bound.
    #[error(
        "the changes made during the save outgrew the journal's bound of {limit_bytes} bytes \
         (snapshot-journal-limit); the save was abandoned"
    )]
    JournalFull {
        /// The bound.
        limit_bytes: u64,
    },
    /// A SWAPDB ran during the save, which walks the databases by index.
    #[error("a SWAPDB ran during the save; the save was abandoned")]
    Swapped,
}

/// Writes through to the file (or a replica's link), counting bytes and keeping the running CRC.
struct Sink<W: Write> {
    file: W,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> Sink<W> {
    fn put(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.crc.update(data);
        self.bytes += data.len() as u64;
        self.file.write_all(data)
    }

    fn record(&mut self, db: u16, record: &Record, scratch: &mut Vec<u8>) -> std::io::Result<()> {
        scratch.clear();
        scratch.extend_from_slice(&db.to_le_bytes());
        let encoded = postcard::to_extend(record, std::mem::take(scratch))
            .map_err(|e| std::io::Error::other(format!("encoding a record: {e}")))?;
        *scratch = encoded;
        let len = u32::try_from(scratch.len())
            .map_err(|_| std::io::Error::other("a record larger than 4 GiB"))?;
        self.put(&len.to_le_bytes())?;
        let data = std::mem::take(scratch);
        let result = self.put(&data);
        *scratch = data;
        result
    }
}

/// The temporary file a save writes before the rename: `<snapshot>.tmp-<pid>`.
pub fn temp_path(snapshot: &Path) -> PathBuf {
    process_file(snapshot, "tmp")
}

/// A file of this process's beside `snapshot`: `<snapshot>.<kind>-<pid>`.
pub fn process_file(snapshot: &Path, kind: &str) -> PathBuf {
    let mut name = snapshot
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{kind}-{}", std::process::id()));
    snapshot.with_file_name(name)
}

/// Writes a snapshot of every database of `store` to `path` (atomically: temp file, fsync,
/// rename, fsync dir).
pub fn write_snapshot(
    store: &impl Keyspaces,
    path: &Path,
    options: &WriteOptions,
) -> Result<Written, WriteError> {
    let started = Instant::now();
    let temp = temp_path(path);
    let result = write_to(store, &temp, path, options, started);
    if result.is_err() {
        // The previous snapshot is untouched; do not leave the partial file behind.
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn write_to(
    store: &impl Keyspaces,
    temp: &Path,
    path: &Path,
    options: &WriteOptions,
    started: Instant,
) -> Result<Written, WriteError> {
    let file = create_private(temp)?;
    let (file, written) = write_stream(
        store,
        BufWriter::with_capacity(1 << 20, file),
        options,
        started,
    )?;
    let file = file.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(temp, path)?;
    sync_dir(path)?;
    Ok(written)
}

/// Streams a snapshot of every database of `store` into `out` (the same bytes a snapshot file
/// holds), for a replica's full synchronization: nothing is held but one shard's handles and
/// what `out` buffers. Returns `out`, not flushed.
pub fn write_stream<W: Write>(
    store: &impl Keyspaces,
    out: W,
    options: &WriteOptions,
    started: Instant,
) -> Result<(W, Written), WriteError> {
    let mut sink = Sink {
        file: out,
        crc: crc32fast::Hasher::new(),
        bytes: 0,
    };
    let mut header = Vec::with_capacity(super::format::HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&store.keyspace(0).now_ms().to_le_bytes());
    sink.put(&header)?;

    let mut records = 0u64;
    let mut scratch = Vec::new();
    let journal = store.keyspace(0).journal();
    if options.consistent {
        journal.begin(options.journal_max_bytes);
    }
    let walked = (|| {
        for index in 0..store.count() {
            let db = store.keyspace(index);
            let index = u16::try_from(index).unwrap_or(u16::MAX);
            for shard in 0..db.shard_count() {
                // A shard's records in one buffer: one checksum update and one write each.
                scratch.clear();
                records += db.encode_shard(shard, index, &mut scratch)?;
                sink.put(&scratch)?;
                if scratch.capacity() > SCRATCH_KEPT {
                    scratch = Vec::new();
                }
                if !options.shard_delay.is_zero() && index == 0 {
                    std::thread::sleep(options.shard_delay);
                }
                if options.consistent && journal.overflowed() {
                    break;
                }
            }
        }
        Ok::<(), std::io::Error>(())
    })();
    if !options.consistent {
        walked?;
        return finish(sink, records, started);
    }
    // Always close the journal, even when the walk failed, so writers stop recording.
    let spoiled = store.keyspace(0).journal();
    let journal = journal.end();
    walked?;
    if spoiled.spoiled() {
        return Err(WriteError::Swapped);
    }
    let journal = journal.ok_or(WriteError::JournalFull {
        limit_bytes: options.journal_max_bytes,
    })?;
    for (db, record) in journal {
        sink.record(db, &record, &mut scratch)?;
        records += 1;
    }
    finish(sink, records, started)
}

/// Ends a snapshot of `records` records: the end marker, the count and the CRC.
fn finish<W: Write>(
    mut sink: Sink<W>,
    records: u64,
    started: Instant,
) -> Result<(W, Written), WriteError> {
    sink.put(&0u32.to_le_bytes())?;
    sink.put(&records.to_le_bytes())?;
    let crc = sink.crc.clone().finalize();
    sink.file.write_all(&crc.to_le_bytes())?;
    let bytes = sink.bytes + 4;
    Ok((
        sink.file,
        Written {
            records,
            bytes,
            duration: started.elapsed(),
        },
    ))
}

/// Creates `path` for writing with mode 0600: snapshots hold every session (credentials).
fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// fsyncs the directory holding `path`, so the rename itself survives a crash.
fn sync_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
