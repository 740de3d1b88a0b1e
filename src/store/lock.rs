//! The store's write lock: an OS file lock on `<db>.lock`, released by the OS when the
//! process exits for any reason (so a kill -9 never leaves a stale lock). The holder
//! writes who it is into the file so a waiting writer can name it.

use super::StoreError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct WriteLock {
    file: File,
    path: PathBuf,
}

pub fn lock_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

impl WriteLock {
    pub fn acquire(db: &Path, timeout: Duration, holder: &str) -> Result<WriteLock, StoreError> {
        let path = lock_path(db);
        let open_err = |e: std::io::Error| StoreError::Open {
            path: db.display().to_string(),
            message: format!("cannot open lock file {}: {e}", path.display()),
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(open_err)?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    if started.elapsed() >= timeout {
                        return Err(StoreError::Locked {
                            path: db.display().to_string(),
                            holder: read_holder(&path),
                            waited_secs: started.elapsed().as_secs(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(TryLockError::Error(e)) => return Err(open_err(e)),
            }
        }
        let since = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
        let text = format!("pid {} ({holder}), since {since}\n", std::process::id());
        // Best effort: the lock itself is what matters, the text only names the holder.
        let _ = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(text.as_bytes()))
            .and_then(|_| file.flush());
        Ok(WriteLock { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Who holds the lock, as the holder wrote it.
pub fn read_holder(path: &Path) -> String {
    let mut s = String::new();
    match File::open(path).and_then(|mut f| f.read_to_string(&mut s)) {
        Ok(_) if !s.trim().is_empty() => s.trim().to_string(),
        _ => "another optdesk process (holder unknown)".to_string(),
    }
}
