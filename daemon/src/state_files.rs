//! Files in the state directory: created private (0700 directories, 0600 files) and
//! replaced atomically, so a crash never leaves a half-written token store or key.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

/// Creates `dir` (and parents) with mode 0700 if it does not exist.
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating directory {}", dir.display()))
}

/// Writes `contents` to `path` with mode 0600 (in a 0700 directory, created if needed):
/// to a temporary file beside it, synced, then renamed over the old one.
pub fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    ensure_private_dir(directory_of(path))?;
    replace_atomically(path, contents, 0o600)
}

/// Replaces `path` with `contents` the same way, giving the new file `mode`; the
/// directory's entry is synced too, so the rename survives a power cut.
pub fn replace_atomically(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = directory_of(path);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp"));
    // Created 0600 whatever the final mode, so a secret is never readable in between.
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(contents)
        .and_then(|_| file.set_permissions(fs::Permissions::from_mode(mode)))
        .and_then(|_| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Removes the file at `path`; one that is not there is already removed.
pub fn remove_if_exists(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// The directory holding `path` ("." for a bare file name, never "").
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_0600_in_0700_dirs() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("state/sub/secret.txt");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }
}
