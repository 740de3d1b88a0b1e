//! `optdesk backup DIR` and `optdesk restore DIR`.
//!
//! A backup is a copy of the store file taken while holding the store's write lock,
//! right after a CHECKPOINT (so everything is in the file and its write-ahead log is
//! empty): no job can write while it is copied. The copy is then opened on its own
//! and every block of every table read (the deep check), so a damaged store is never
//! saved as a good backup. Beside it, `manifest.json` records the schema version, the
//! optdesk version and the SHA-256 of each file; `restore` verifies them first.

use super::{check, latest_schema_version, lock::WriteLock, Store, StoreError};
use duckdb::{AccessMode, Config as DuckConfig, Connection};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const MANIFEST: &str = "manifest.json";
pub const STORE_FILE: &str = "optdesk.duckdb";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupFile {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: i64,
    pub optdesk_version: String,
    /// When the copy was taken (UTC).
    pub created_at: String,
    /// The store it was taken from.
    pub source: String,
    pub files: Vec<BackupFile>,
    /// Every table and its row count, as read back from the copy.
    pub tables: Vec<(String, i64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("backup folder {0} is not empty: choose a new folder")]
    NotEmpty(String),
    #[error("the store is damaged, no backup written: {0}")]
    Damaged(String),
    #[error("{dir} is not an optdesk backup: {message}")]
    NotABackup { dir: String, message: String },
    #[error("backup {dir}: {file} does not match its checksum in {MANIFEST} (sha256 {found}, expected {expected}): the backup is damaged, restore another one")]
    Checksum {
        dir: String,
        file: String,
        found: String,
        expected: String,
    },
    #[error("backup {dir} has schema version {found}; this optdesk {version} knows up to {known}: upgrade optdesk")]
    TooNew {
        dir: String,
        found: i64,
        known: i64,
        version: &'static str,
    },
    #[error("{0} already exists: restore to a new --db, or add --force to replace it")]
    Exists(String),
    #[error("restored store {path} does not read back: {message}")]
    Restored { path: String, message: String },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Copy `from` to `to` (through `to.partial`, synced, then renamed) and return the
/// copy's size and SHA-256, computed over the bytes written.
fn copy_hashed(from: &Path, to: &Path) -> Result<(u64, String), BackupError> {
    let mut tmp = to.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let res = (|| {
        let mut src = std::fs::File::open(from).map_err(io_err(from))?;
        let mut dst = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = src.read(&mut buf).map_err(io_err(from))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            dst.write_all(&buf[..n]).map_err(io_err(&tmp))?;
            total += n as u64;
        }
        dst.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, to).map_err(io_err(to))?;
        Ok((total, hex(&hasher.finalize())))
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_file(path: &Path) -> Result<String, BackupError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Open a store file read-only on its own and read every block of every table.
pub(super) fn deep_check_file(path: &Path) -> Result<check::DeepReport, String> {
    let config = DuckConfig::default()
        .access_mode(AccessMode::ReadOnly)
        .and_then(|c| c.with("autoinstall_known_extensions", "false"))
        .and_then(|c| c.with("autoload_known_extensions", "false"))
        .map_err(|e| e.to_string())?;
    let conn =
        Connection::open_with_flags(path, config).map_err(|e| super::one_line(&e.to_string()))?;
    check::deep_check(&conn).map_err(|e| super::one_line(&e.to_string()))
}

/// The damaged tables by name, and the first one's error (the others are usually the
/// same error at other locations; `check --deep` lists them all).
fn damage_text(r: &check::DeepReport) -> String {
    let names: Vec<&str> = r.damaged.iter().map(|(t, _)| t.as_str()).collect();
    match r.damaged.first() {
        Some((t, e)) => format!(
            "{} damaged table(s): {} (table {t}: {e}); run `optdesk check --deep` for each",
            names.len(),
            names.join(", ")
        ),
        None => String::new(),
    }
}

/// Back the store up into `dir` (created; it must be new or empty). `store` is open
/// for writing, so the write lock is held for the whole copy.
pub fn backup(store: &Store, dir: &Path) -> Result<Manifest, BackupError> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io_err(dir))?;
        if entries.next().is_some() {
            return Err(BackupError::NotEmpty(dir.display().to_string()));
        }
    }
    let created = !dir.exists();
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let res = backup_into(store, dir);
    if res.is_err() && created {
        // Leave no empty folder behind that looks like a backup.
        let _ = std::fs::remove_dir(dir);
    }
    res
}

fn backup_into(store: &Store, dir: &Path) -> Result<Manifest, BackupError> {
    if store._lock.is_none() {
        return Err(BackupError::Io {
            path: store.path().display().to_string(),
            message: "a backup needs the store open for writing (its write lock)".into(),
        });
    }
    // Everything into the file, the write-ahead log emptied.
    store
        .conn
        .execute_batch("CHECKPOINT")
        .map_err(StoreError::from)?;
    let schema_version = store.schema_version()?;
    let copy = dir.join(STORE_FILE);
    let (bytes, sha256) = copy_hashed(store.path(), &copy)?;
    let read_back = match deep_check_file(&copy) {
        Ok(r) if r.damaged.is_empty() => r,
        Ok(r) => {
            let _ = std::fs::remove_file(&copy);
            return Err(BackupError::Damaged(damage_text(&r)));
        }
        Err(e) => {
            let _ = std::fs::remove_file(&copy);
            return Err(BackupError::Damaged(e));
        }
    };
    let manifest = Manifest {
        schema_version,
        optdesk_version: crate::VERSION.to_string(),
        created_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        source: store.path().display().to_string(),
        files: vec![BackupFile {
            name: STORE_FILE.to_string(),
            bytes,
            sha256,
        }],
        tables: read_back.tables,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Io {
        path: dir.join(MANIFEST).display().to_string(),
        message: e.to_string(),
    })?;
    let mpath = dir.join(MANIFEST);
    super::write_atomic(&mpath, &json).map_err(io_err(&mpath))?;
    Ok(manifest)
}

/// Read a backup's manifest and verify every file's checksum.
pub fn verify(dir: &Path) -> Result<Manifest, BackupError> {
    let not_a_backup = |message: String| BackupError::NotABackup {
        dir: dir.display().to_string(),
        message,
    };
    let text = std::fs::read(dir.join(MANIFEST))
        .map_err(|e| not_a_backup(format!("cannot read {MANIFEST}: {e}")))?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| not_a_backup(format!("{MANIFEST} is not valid: {e}")))?;
    if manifest.schema_version > latest_schema_version() {
        return Err(BackupError::TooNew {
            dir: dir.display().to_string(),
            found: manifest.schema_version,
            known: latest_schema_version(),
            version: crate::VERSION,
        });
    }
    if !manifest.files.iter().any(|f| f.name == STORE_FILE) {
        return Err(not_a_backup(format!("{MANIFEST} lists no {STORE_FILE}")));
    }
    for f in &manifest.files {
        if f.name.contains('/') || f.name.contains('\\') || f.name.starts_with('.') {
            return Err(not_a_backup(format!(
                "{MANIFEST} names a file outside the folder: {}",
                f.name
            )));
        }
        let found = sha256_file(&dir.join(&f.name))?;
        if found != f.sha256 {
            return Err(BackupError::Checksum {
                dir: dir.display().to_string(),
                file: f.name.clone(),
                found,
                expected: f.sha256.clone(),
            });
        }
    }
    Ok(manifest)
}

/// Rebuild the store at `db` from the backup in `dir`: verify the checksums, refuse
/// to replace an existing store unless `force`, take `db`'s write lock (so no job is
/// using it), copy, verify the copy's checksum again and read every table back.
pub fn restore(
    dir: &Path,
    db: &Path,
    force: bool,
    timeout: Duration,
    holder: &str,
) -> Result<(Manifest, check::DeepReport), BackupError> {
    let manifest = verify(dir)?;
    if db.exists() && !force {
        return Err(BackupError::Exists(db.display().to_string()));
    }
    if db.is_dir() {
        return Err(BackupError::Io {
            path: db.display().to_string(),
            message: "is a folder, not a store file".into(),
        });
    }
    if let Some(parent) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let lock = WriteLock::acquire(db, timeout, holder)?;
    let expected = manifest
        .files
        .iter()
        .find(|f| f.name == STORE_FILE)
        .map(|f| f.sha256.clone())
        .unwrap_or_default();
    // A write-ahead log left beside the old store belongs to it, not to the backup.
    let mut wal = db.as_os_str().to_owned();
    wal.push(".wal");
    let wal = PathBuf::from(wal);
    match std::fs::remove_file(&wal) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&wal)(e)),
    }
    let (_, found) = copy_hashed(&dir.join(STORE_FILE), db)?;
    if found != expected {
        return Err(BackupError::Checksum {
            dir: dir.display().to_string(),
            file: STORE_FILE.into(),
            found,
            expected,
        });
    }
    let report = deep_check_file(db).map_err(|message| BackupError::Restored {
        path: db.display().to_string(),
        message,
    })?;
    drop(lock);
    if !report.damaged.is_empty() {
        return Err(BackupError::Restored {
            path: db.display().to_string(),
            message: damage_text(&report),
        });
    }
    Ok((manifest, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(1);

    fn store_with_a_row(path: &Path) -> Store {
        let s = Store::open_write(path, T, "test").unwrap();
        s.conn
            .execute_batch(
                "INSERT INTO cash_ledger VALUES (DATE '2024-06-04', 'deposit', 10000, 'starting cash', 1)",
            )
            .unwrap();
        s
    }

    fn rows(path: &Path) -> i64 {
        let s = Store::open_read(path, T).unwrap();
        s.conn
            .query_row("SELECT count(*) FROM cash_ledger", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_backup_restores_and_an_existing_store_is_replaced_only_with_force() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.duckdb");
        let bk = dir.path().join("bk");
        let m = backup(&store_with_a_row(&db), &bk).unwrap();
        assert_eq!(m.schema_version, latest_schema_version());
        assert_eq!(verify(&bk).unwrap(), m);
        assert!(m.tables.contains(&("cash_ledger".to_string(), 1)));

        let new = dir.path().join("restored").join("b.duckdb");
        restore(&bk, &new, false, T, "test").unwrap();
        assert_eq!(rows(&new), 1);
        let e = restore(&bk, &new, false, T, "test").unwrap_err();
        assert!(matches!(e, BackupError::Exists(_)), "{e}");
        // With --force: replaced, and a write-ahead log left by the old store is dropped.
        std::fs::write(dir.path().join("restored").join("b.duckdb.wal"), b"junk").unwrap();
        restore(&bk, &new, true, T, "test").unwrap();
        assert_eq!(rows(&new), 1);
        assert!(!dir.path().join("restored").join("b.duckdb.wal").exists());

        let e = backup(&Store::open_write(&db, T, "test").unwrap(), &bk).unwrap_err();
        assert!(matches!(e, BackupError::NotEmpty(_)), "{e}");
    }

    #[test]
    fn restore_refuses_a_backup_it_cannot_trust() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.duckdb");
        let bk = dir.path().join("bk");
        let m = backup(&store_with_a_row(&db), &bk).unwrap();
        let new = dir.path().join("new.duckdb");
        let write = |m: &Manifest| {
            std::fs::write(bk.join(MANIFEST), serde_json::to_vec(m).unwrap()).unwrap()
        };

        let mut newer = m.clone();
        newer.schema_version = latest_schema_version() + 1;
        write(&newer);
        let e = restore(&bk, &new, false, T, "test").unwrap_err();
        assert!(matches!(e, BackupError::TooNew { .. }), "{e}");

        let mut outside = m.clone();
        outside.files.push(BackupFile {
            name: "../a.duckdb".into(),
            bytes: 0,
            sha256: String::new(),
        });
        write(&outside);
        let e = restore(&bk, &new, false, T, "test").unwrap_err();
        assert!(e.to_string().contains("outside the folder"), "{e}");

        let mut wrong = m.clone();
        wrong.files[0].sha256 = "0".repeat(64);
        write(&wrong);
        let e = restore(&bk, &new, false, T, "test").unwrap_err();
        assert!(matches!(e, BackupError::Checksum { .. }), "{e}");

        std::fs::write(bk.join(MANIFEST), b"{").unwrap();
        let e = restore(&bk, &new, false, T, "test").unwrap_err();
        assert!(matches!(e, BackupError::NotABackup { .. }), "{e}");
        assert!(!new.exists(), "nothing written");

        write(&m);
        restore(&bk, &new, false, T, "test").unwrap();
        assert_eq!(rows(&new), 1);
    }
}
