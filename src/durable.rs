//! Durable files: atomic replacement and directory locks, the one way every component writes
//! what must survive a crash (the run's state, the ledger, the file sink's output).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes` atomically: they are written to a temporary file beside it,
/// synced, renamed over `path`, and the directory is synced, so after a crash `path` holds
/// either its old content or the new one, whole. The parent directory is created if needed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent(path);
    fs::create_dir_all(dir)?;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let temp = dir.join(name);
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    rename_durably(&temp, path)
}

/// Renames `from` to `to` and syncs the directory of `to`, so the rename survives a crash.
pub fn rename_durably(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    sync_dir(parent(to))
}

/// Syncs a directory, making the names created in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// An exclusive lock on a directory, held for the life of the value: the lock file `name`
/// inside it (created if needed) is locked with the operating system's advisory file lock,
/// which is released when the process ends, however it ends.
#[derive(Debug)]
pub struct DirLock {
    dir: PathBuf,
    file: File,
}

impl Drop for DirLock {
    /// Unlocks explicitly rather than by closing: a child process forked meanwhile (by any
    /// thread, before its exec) shares the descriptor, and the lock would outlive the close.
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Why a directory cannot be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("`{0}` is in use by another simulator (its lock is held): give each simulator its own")]
    Held(PathBuf),
    #[error("`{0}` is a file, not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot lock `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl DirLock {
    /// Creates `dir` if needed and locks it through its file `name`.
    pub fn acquire(dir: &Path, name: &str) -> Result<Self, LockError> {
        let path = dir.join(name);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        if dir.is_file() {
            return Err(LockError::NotADirectory(dir.to_owned()));
        }
        fs::create_dir_all(dir).map_err(io)?;
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Self {
                dir: dir.to_owned(),
                file,
            }),
            Err(fs::TryLockError::WouldBlock) => Err(LockError::Held(dir.to_owned())),
            Err(fs::TryLockError::Error(e)) => Err(io(e)),
        }
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_is_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path().join("a")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_directory_is_locked_once() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DirLock::acquire(dir.path(), ".lock").unwrap();
        assert!(matches!(
            DirLock::acquire(dir.path(), ".lock"),
            Err(LockError::Held(_))
        ));
        drop(lock);
        DirLock::acquire(dir.path(), ".lock").unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert_eq!(
            DirLock::acquire(&file, ".lock").unwrap_err().to_string(),
            format!("`{}` is a file, not a directory", file.display())
        );
    }
}
