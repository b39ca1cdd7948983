//! How far into a file the spool already holds, kept across restarts in the private state
//! directory (`.siteward/` inside the drop directory), one small JSON file per file being
//! taken. Written atomically (temporary file, fsync, rename, fsync of the directory), so a
//! crash leaves the old count or the new one, never a torn one. A record applies only to
//! the very same file: name, inode, size, modification time and content hash all match;
//! anything else (a new file under an old name) starts from the beginning.
//!
//! Blocking I/O: call from `spawn_blocking`.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const SUFFIX: &str = ".progress";
const TEMPORARY: &str = ".progress.tmp";

/// Which file a progress record is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub inode: u64,
    pub size: u64,
    pub mtime_s: i64,
    pub mtime_ns: i64,
    pub sha256: String,
}

impl FileIdentity {
    pub fn new(metadata: &fs::Metadata, sha256: &str) -> FileIdentity {
        FileIdentity {
            inode: metadata.ino(),
            size: metadata.size(),
            mtime_s: metadata.mtime(),
            mtime_ns: metadata.mtime_nsec(),
            sha256: sha256.to_string(),
        }
    }

    /// The same file as far as the metadata tells (before its content is read again).
    pub fn same_metadata(&self, metadata: &fs::Metadata) -> bool {
        self.inode == metadata.ino()
            && self.size == metadata.size()
            && self.mtime_s == metadata.mtime()
            && self.mtime_ns == metadata.mtime_nsec()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// For a person reading the state directory; the record's own name is what matches.
    pub name: String,
    pub identity: FileIdentity,
    /// Records of the file durable in the spool, counted from the first.
    pub durable: u64,
}

/// The progress records of one drop directory.
#[derive(Debug, Clone)]
pub struct ProgressStore {
    directory: PathBuf,
}

impl ProgressStore {
    pub fn new(directory: PathBuf) -> ProgressStore {
        ProgressStore { directory }
    }

    /// A name of fixed length whatever the file's name is (which may be up to NAME_MAX
    /// already, or not UTF-8).
    fn path(&self, name: &OsStr, suffix: &str) -> PathBuf {
        let digest = hex::encode(Sha256::digest(name.as_bytes()));
        self.directory.join(format!("{digest}{suffix}"))
    }

    /// The record for `name`, if there is one and it is readable.
    pub fn load(&self, name: &OsStr) -> io::Result<Option<Progress>> {
        match fs::read(self.path(name, SUFFIX)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Records of `identity` already durable (0 without a matching record).
    pub fn durable(&self, name: &OsStr, identity: &FileIdentity) -> io::Result<u64> {
        Ok(match self.load(name)? {
            Some(progress) if progress.identity == *identity => progress.durable,
            _ => 0,
        })
    }

    pub fn store(&self, name: &OsStr, progress: &Progress) -> io::Result<()> {
        let temporary = self.path(name, TEMPORARY);
        let bytes = serde_json::to_vec(progress).map_err(io::Error::other)?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, self.path(name, SUFFIX))?;
        sync_directory(&self.directory)
    }

    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        match fs::remove_file(self.path(name, SUFFIX)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Deletes temporary files a crash left and records of files no longer waiting in the
    /// drop directory (taken, then the crash came before the record was removed).
    pub fn forget_all_but<'a>(
        &self,
        waiting: impl IntoIterator<Item = &'a OsStr>,
    ) -> io::Result<()> {
        let keep: std::collections::HashSet<PathBuf> = waiting
            .into_iter()
            .map(|name| self.path(name, SUFFIX))
            .collect();
        for entry in fs::read_dir(&self.directory)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_file() && !keep.contains(&path) {
                fs::remove_file(&path)?;
            }
        }
        Ok(())
    }
}

/// Makes a rename or a new name in `directory` durable.
pub fn sync_directory(directory: &Path) -> io::Result<()> {
    fs::File::open(directory)?.sync_all()
}
