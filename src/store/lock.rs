//! Exclusive ownership of a data directory: an advisory lock on `<data dir>/LOCK`, held for
//! as long as the process has the directory open, released by the kernel when it exits.

use super::StoreError;
use std::fs::{File, OpenOptions};
use std::path::Path;

/// The lock file's name.
pub const LOCK_FILE: &str = "LOCK";

/// A held lock on a data directory.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock, or answers [`StoreError::Locked`] when another process holds it.
    pub fn acquire(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::io(format!("creating {}", data_dir.display()), e))?;
        let path = data_dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Self { _file: file }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(StoreError::Locked),
            Err(e) => Err(StoreError::io(
                format!("locking {}", path.display()),
                std::io::Error::from(e),
            )),
        }
    }
}
