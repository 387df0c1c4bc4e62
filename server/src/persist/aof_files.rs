//! The append-only log's files, as Redis 7's multi-part AOF lays them out in `appenddirname`
//! (inside the data directory): a base (a snapshot, written by [`super::writer`]), one or more
//! incremental logs (the change feed's frames, appended), and the manifest naming them in order.
//!
//! ```text
//! appendonlydir/appendonly.aof.3.base.sdb     the keyspace when the log last restarted
//! appendonlydir/appendonly.aof.3.incr.aof     frames since then (an older one may precede it)
//! appendonlydir/appendonly.aof.manifest       "file <name> seq <n> type b|i" per line
//! ```
//!
//! The manifest is the commit point: it is only ever replaced whole (a temporary file, fsync,
//! rename, fsync the directory), and every file it names is complete and fsynced before it is
//! named, so a crash leaves either the old set or the new one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file of the log: its name in the directory and its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The file name.
    pub name: String,
    /// Its sequence number.
    pub seq: u64,
}

/// What the manifest names: the base, then the incremental logs, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The base snapshot, if any.
    pub base: Option<Part>,
    /// The incremental logs in replay order.
    pub incrs: Vec<Part>,
}

/// Where the log's files live and how they are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The directory (`data-dir`/`appenddirname`).
    pub dir: PathBuf,
    /// The name every file starts with (`appendfilename`).
    pub file_name: String,
}

impl Layout {
    /// The manifest's path.
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(format!("{}.manifest", self.file_name))
    }

    /// The name of base number `seq`.
    pub fn base_name(&self, seq: u64) -> String {
        format!("{}.{seq}.base.sdb", self.file_name)
    }

    /// The name of incremental log number `seq`.
    pub fn incr_name(&self, seq: u64) -> String {
        format!("{}.{seq}.incr.aof", self.file_name)
    }

    /// The path of a file named `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Reads the manifest; `Ok(None)` when there is none.
    pub fn read_manifest(&self) -> Result<Option<Manifest>, String> {
        let path = self.manifest_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Manifest::parse(&text)
            .map(Some)
            .map_err(|problem| format!("{}: {problem}", path.display()))
    }

    /// Replaces the manifest with `manifest` atomically.
    pub fn write_manifest(&self, manifest: &Manifest) -> Result<(), ManifestError> {
        let path = self.manifest_path();
        let temp = path.with_extension(format!("manifest.tmp-{}", std::process::id()));
        let written = (|| {
            let mut file = create_private(&temp)?;
            file.write_all(manifest.render().as_bytes())?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&temp, &path)
        })();
        if let Err(error) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(ManifestError {
                error,
                renamed: false,
            });
        }
        sync_dir(&self.dir).map_err(|error| ManifestError {
            error,
            renamed: true,
        })
    }
}

/// A manifest not (durably) written. `renamed`: it replaced the old one all the same, only
/// the directory's fsync failed, so a crash may find either: the files of both must stay.
#[derive(Debug)]
pub struct ManifestError {
    pub error: std::io::Error,
    pub renamed: bool,
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl From<ManifestError> for std::io::Error {
    fn from(e: ManifestError) -> Self {
        e.error
    }
}

impl Manifest {
    /// Parses Redis's manifest lines: `file <name> seq <n> type <b|i>` (keys in any order;
    /// blank lines and `#` comments skipped).
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let mut manifest = Manifest::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            if !words.len().is_multiple_of(2) {
                return Err(format!("line {}: expected key value pairs", number + 1));
            }
            let (mut name, mut seq, mut kind) = (None, None, None);
            for pair in words.chunks(2) {
                match pair {
                    ["file", value] => name = Some(*value),
                    ["seq", value] => seq = value.parse::<u64>().ok(),
                    ["type", value] => kind = Some(*value),
                    _ => {}
                }
            }
            let (Some(name), Some(seq), Some(kind)) = (name, seq, kind) else {
                return Err(format!("line {}: needs file, seq and type", number + 1));
            };
            if name.contains('/') || name == "." || name == ".." {
                return Err(format!("line {}: not a plain file name", number + 1));
            }
            let part = Part {
                name: name.to_owned(),
                seq,
            };
            match kind {
                "b" if manifest.base.is_none() => manifest.base = Some(part),
                "b" => return Err(format!("line {}: a second base", number + 1)),
                "i" => manifest.incrs.push(part),
                _ => return Err(format!("line {}: unknown type {kind:?}", number + 1)),
            }
        }
        Ok(manifest)
    }

    /// The manifest as its file holds it.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Some(base) = &self.base {
            text.push_str(&format!("file {} seq {} type b\n", base.name, base.seq));
        }
        for incr in &self.incrs {
            text.push_str(&format!("file {} seq {} type i\n", incr.name, incr.seq));
        }
        text
    }

    /// The highest sequence number it names (0: none).
    pub fn last_seq(&self) -> u64 {
        self.base
            .iter()
            .chain(&self.incrs)
            .map(|p| p.seq)
            .max()
            .unwrap_or(0)
    }
}

/// Creates `path` (truncating it) with mode 0600: the log holds every session.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Opens `path` to write after its last byte, creating it with mode 0600 if missing. Not in
/// append mode: the writer writes zeros ahead of the log at given offsets, which append mode
/// would put at the end instead.
pub fn open_at_end(path: &Path) -> std::io::Result<File> {
    use std::io::{Seek, SeekFrom};
    let mut options = OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.seek(SeekFrom::End(0))?;
    Ok(file)
}

/// fsyncs `dir`, so that a rename or creation in it survives a crash.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(test)]
    if super::aof_io::faults::dir_sync_fails(dir) {
        return Err(std::io::Error::from_raw_os_error(5));
    }
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_reads_back_what_it_writes_and_refuses_paths() {
        let manifest = Manifest {
            base: Some(Part {
                name: "appendonly.aof.2.base.sdb".into(),
                seq: 2,
            }),
            incrs: vec![
                Part {
                    name: "appendonly.aof.2.incr.aof".into(),
                    seq: 2,
                },
                Part {
                    name: "appendonly.aof.3.incr.aof".into(),
                    seq: 3,
                },
            ],
        };
        assert_eq!(Manifest::parse(&manifest.render()), Ok(manifest.clone()));
        assert_eq!(manifest.last_seq(), 3);
        // Redis's own lines read too, keys in any order.
        let redis = "file appendonly.aof.1.base.rdb seq 1 type b\nseq 1 type i file x.incr.aof\n";
        assert_eq!(Manifest::parse(redis).map(|m| m.incrs.len()), Ok(1));
        assert!(Manifest::parse("file ../etc/passwd seq 1 type i").is_err());
        assert!(Manifest::parse("file a seq x type i").is_err());
    }
}
