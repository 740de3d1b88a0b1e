//! The store: one DuckDB file that is the whole state and the audit trail.
//!
//! * Schema migrations are the numbered files in `sql/`, compiled into the binary,
//!   applied in order when a writer opens the file and recorded in `schema_migrations`.
//!   A file written by a newer optdesk (a higher schema version) is refused.
//! * One writer at a time: a writer holds an OS lock on `<db>.lock` (and DuckDB's own
//!   lock on the file). A second writer waits up to `lock_timeout`, then fails with a
//!   message naming the holder. Readers open read-only and never write.

pub mod backup;
pub mod bulk;
pub mod check;
pub mod compliance;
mod lock;
pub mod query;
pub mod repo;
pub mod retention;
pub mod runs;

pub use lock::{lock_path as lock_path_for, WriteLock};

/// Whether the store has a table of that name (a store made by an older optdesk, or
/// another DuckDB file, may not).
pub fn table_exists(conn: &duckdb::Connection, table: &str) -> Result<bool, duckdb::Error> {
    conn.query_row(
        "SELECT count(*) > 0 FROM information_schema.tables WHERE table_name = ?",
        [table],
        |r| r.get(0),
    )
}

/// Who holds the write lock right now, or `None` when nobody does.
pub fn current_writer(lock_file: &Path) -> Option<String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(lock_file)
        .ok()?;
    match f.try_lock() {
        Ok(()) => {
            let _ = f.unlock();
            None
        }
        Err(std::fs::TryLockError::WouldBlock) => Some(lock::read_holder(lock_file)),
        Err(_) => None,
    }
}

use duckdb::{AccessMode, Config as DuckConfig, Connection};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. A test checks this list against the files in `sql/`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "001_core.sql",
        sql: include_str!("../../sql/001_core.sql"),
    },
    Migration {
        version: 2,
        name: "002_market_data.sql",
        sql: include_str!("../../sql/002_market_data.sql"),
    },
    Migration {
        version: 3,
        name: "003_analytics.sql",
        sql: include_str!("../../sql/003_analytics.sql"),
    },
    Migration {
        version: 4,
        name: "004_trading.sql",
        sql: include_str!("../../sql/004_trading.sql"),
    },
    Migration {
        version: 5,
        name: "005_reporting.sql",
        sql: include_str!("../../sql/005_reporting.sql"),
    },
    Migration {
        version: 6,
        name: "006_position_marks.sql",
        sql: include_str!("../../sql/006_position_marks.sql"),
    },
    Migration {
        version: 7,
        name: "007_trading_core.sql",
        sql: include_str!("../../sql/007_trading_core.sql"),
    },
    Migration {
        version: 8,
        name: "008_retention.sql",
        sql: include_str!("../../sql/008_retention.sql"),
    },
    Migration {
        version: 9,
        name: "009_archive.sql",
        sql: include_str!("../../sql/009_archive.sql"),
    },
    Migration {
        version: 10,
        name: "010_quote_rejects_rule.sql",
        sql: include_str!("../../sql/010_quote_rejects_rule.sql"),
    },
    Migration {
        version: 11,
        name: "011_archive_quoteless_minute_bars.sql",
        sql: include_str!("../../sql/011_archive_quoteless_minute_bars.sql"),
    },
    Migration {
        version: 12,
        name: "012_backtests.sql",
        sql: include_str!("../../sql/012_backtests.sql"),
    },
    Migration {
        version: 13,
        name: "013_intraday.sql",
        sql: include_str!("../../sql/013_intraday.sql"),
    },
    Migration {
        version: 14,
        name: "014_futures.sql",
        sql: include_str!("../../sql/014_futures.sql"),
    },
    Migration {
        version: 15,
        name: "015_compliance.sql",
        sql: include_str!("../../sql/015_compliance.sql"),
    },
    Migration {
        version: 16,
        name: "016_commands.sql",
        sql: include_str!("../../sql/016_commands.sql"),
    },
];

pub fn latest_schema_version() -> i64 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path} is locked by another writer: {holder}; waited {waited_secs} s (desk.lock_timeout_secs in jobs/desk.toml)")]
    Locked {
        path: String,
        holder: String,
        waited_secs: u64,
    },
    #[error("store {path} is open in another process (a writer, or a reader such as `optdesk sql` or the duckdb CLI): {holder}; waited {waited_secs} s (desk.lock_timeout_secs in jobs/desk.toml)")]
    InUse {
        path: String,
        holder: String,
        waited_secs: u64,
    },
    #[error("store {path} was written by a newer optdesk (schema version {found}; this optdesk {version} knows up to {known}): upgrade optdesk or use another --db")]
    TooNew {
        path: String,
        found: i64,
        known: i64,
        version: &'static str,
    },
    #[error("store {path} does not exist yet: run `optdesk run daily` (or any job) to create it")]
    Missing { path: String },
    #[error("cannot open store {path}: {message}")]
    Open { path: String, message: String },
    #[error("store {path}: migration {migration} failed: {message}")]
    Migration {
        path: String,
        migration: String,
        message: String,
    },
    #[error("store: {0}")]
    Db(#[from] duckdb::Error),
}

/// The daemon's one gate on the store inside its own process: a firing holds it while its
/// jobs run, and the dashboard server and the Telegram commands hold it while they answer,
/// so nothing in the daemon opens the file while a job has it (DuckDB allows one writing
/// process, and a second handle in the same process would conflict with the writer).
pub fn process_gate() -> &'static std::sync::Mutex<()> {
    static GATE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    &GATE
}

/// Take the process gate, waiting up to `timeout`; `None` when a job still holds it.
pub fn try_gate(timeout: Duration) -> Option<std::sync::MutexGuard<'static, ()>> {
    let started = Instant::now();
    loop {
        match process_gate().try_lock() {
            Ok(g) => return Some(g),
            Err(std::sync::TryLockError::Poisoned(e)) => return Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {
                if started.elapsed() >= timeout {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// An open store. A writer holds the write lock for as long as it lives.
pub struct Store {
    pub conn: Connection,
    path: PathBuf,
    _lock: Option<WriteLock>,
}

impl Store {
    /// Open for writing: take the write lock (waiting up to `timeout`), open the file
    /// (creating it and its folder if needed) and bring its schema up to date.
    /// `holder` describes this process for the message a waiting writer sees.
    pub fn open_write(path: &Path, timeout: Duration, holder: &str) -> Result<Store, StoreError> {
        refuse_non_store(path)?;
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                    path: path.display().to_string(),
                    message: format!("cannot create folder {}: {e}", dir.display()),
                })?;
            }
        }
        let started = Instant::now();
        let lock = WriteLock::acquire(path, timeout, holder)?;
        let remaining = timeout.saturating_sub(started.elapsed());
        let conn = open_with_retry(path, false, remaining)?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
            _lock: Some(lock),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Open read-only (for `optdesk sql`, `status`, reports). Waits up to `timeout` while
    /// a writer has the file open.
    pub fn open_read(path: &Path, timeout: Duration) -> Result<Store, StoreError> {
        refuse_non_store(path)?;
        if !path.exists() {
            return Err(StoreError::Missing {
                path: path.display().to_string(),
            });
        }
        let conn = open_with_retry(path, true, timeout)?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
            _lock: None,
        };
        let v = store.schema_version()?;
        if v > latest_schema_version() {
            return Err(store.too_new(v));
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, path and write lock, to close the file while keeping the lock
    /// (`retention::compact` renames a rewritten file over it).
    pub(crate) fn into_parts(self) -> (Connection, PathBuf, Option<WriteLock>) {
        (self.conn, self.path, self._lock)
    }

    /// Open `path` for writing again under a lock already held.
    pub(crate) fn reopen_write(
        path: PathBuf,
        lock: Option<WriteLock>,
    ) -> Result<Store, StoreError> {
        let conn = open_with_retry(&path, false, Duration::from_secs(5))?;
        let store = Store {
            conn,
            path,
            _lock: lock,
        };
        store.migrate()?;
        Ok(store)
    }

    fn too_new(&self, found: i64) -> StoreError {
        StoreError::TooNew {
            path: self.path.display().to_string(),
            found,
            known: latest_schema_version(),
            version: crate::VERSION,
        }
    }

    /// The highest applied migration, 0 for a new file.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        if !table_exists(&self.conn, "schema_migrations")? {
            return Ok(0);
        }
        Ok(self.conn.query_row(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        self.conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY, name VARCHAR NOT NULL,
                applied_at TIMESTAMP NOT NULL, optdesk_version VARCHAR NOT NULL)",
        )?;
        let current = self.schema_version()?;
        if current > latest_schema_version() {
            return Err(self.too_new(current));
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            let fail = |e: duckdb::Error| StoreError::Migration {
                path: self.path.display().to_string(),
                migration: m.name.to_string(),
                message: e.to_string(),
            };
            self.conn.execute_batch("BEGIN TRANSACTION").map_err(fail)?;
            let applied = self.conn.execute_batch(m.sql).and_then(|_| {
                self.conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, now()::TIMESTAMP, ?)",
                    duckdb::params![m.version, m.name, crate::VERSION],
                )
            });
            match applied {
                Ok(_) => self.conn.execute_batch("COMMIT").map_err(fail)?,
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(fail(e));
                }
            }
            tracing::info!(migration = m.name, "applied schema migration");
        }
        Ok(())
    }
}

/// Where DuckDB's file header carries its magic bytes (checked on a store file: the
/// first 8 bytes are a checksum, then `DUCK`).
const DUCKDB_MAGIC_OFFSET: usize = 8;
const DUCKDB_MAGIC: &[u8; 4] = b"DUCK";

/// A store is a DuckDB file or a path where one will be created. DuckDB itself would
/// open `:memory:` as an in-memory database and a CSV or Parquet file as a view over
/// it: a whole run would then succeed and keep nothing. Checked before the lock file
/// is created, so a refused path leaves nothing beside it.
fn refuse_non_store(path: &Path) -> Result<(), StoreError> {
    let refuse = |why: String| StoreError::Open {
        path: path.display().to_string(),
        message: format!("{why}; --db (or OPTDESK_DB) must name a DuckDB store file or a new path"),
    };
    let name = path.to_string_lossy();
    if name.trim().is_empty() {
        return Err(refuse("the path is empty".into()));
    }
    if name.starts_with(":memory:") {
        return Err(refuse(
            "an in-memory database keeps nothing after the command".into(),
        ));
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(refuse(format!("cannot read it: {e}"))),
    };
    if meta.is_dir() {
        return Err(refuse("it is a folder".into()));
    }
    if meta.len() == 0 {
        // DuckDB refuses an empty file too ("not a valid DuckDB database file").
        return Err(refuse(
            "it is an empty file (remove it, and a new store is created there)".into(),
        ));
    }
    let mut head = [0u8; DUCKDB_MAGIC_OFFSET + 4];
    let read = std::fs::File::open(path).and_then(|mut f| {
        use std::io::Read;
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    });
    match read {
        Ok(n) if n == head.len() && &head[DUCKDB_MAGIC_OFFSET..] == DUCKDB_MAGIC => Ok(()),
        Ok(_) => {
            let kind = if head.starts_with(b"PAR1") {
                "a Parquet file"
            } else {
                "not a DuckDB file (a CSV or other file?)"
            };
            Err(refuse(format!("it is {kind}, not a DuckDB store")))
        }
        Err(e) => Err(refuse(format!("cannot read it: {e}"))),
    }
}

/// DuckDB refuses to open a file another process has open for writing. Retry until
/// `timeout`, then report DuckDB's message (which names the holding process).
fn open_with_retry(
    path: &Path,
    read_only: bool,
    timeout: Duration,
) -> Result<Connection, StoreError> {
    let started = Instant::now();
    loop {
        let access = if read_only {
            AccessMode::ReadOnly
        } else {
            AccessMode::ReadWrite
        };
        // No extension is ever downloaded or loaded behind the user's back: optdesk
        // runs offline, and what it needs (parquet) is compiled in.
        let config = DuckConfig::default()
            .access_mode(access)
            .and_then(|c| c.threads(2))
            .and_then(|c| c.with("autoinstall_known_extensions", "false"))
            .and_then(|c| c.with("autoload_known_extensions", "false"));
        let res = config.and_then(|c| Connection::open_with_flags(path, c));
        match res {
            Ok(c) => return Ok(c),
            Err(e) => {
                let msg = e.to_string();
                let busy = msg.contains("Could not set lock") || msg.contains("Conflicting lock");
                if busy && started.elapsed() < timeout {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                if busy {
                    return Err(StoreError::InUse {
                        path: path.display().to_string(),
                        holder: one_line(&msg),
                        waited_secs: started.elapsed().as_secs(),
                    });
                }
                return Err(StoreError::Open {
                    path: path.display().to_string(),
                    message: one_line(&msg),
                });
            }
        }
    }
}

pub(crate) use crate::text::{error_chain, one_line};

/// Write a file whole or not at all: a temporary file beside it, synced, then renamed;
/// on failure the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = std::path::PathBuf::from(tmp);
    let res = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_match_sql_folder() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sql");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.ends_with(".sql") && n.as_bytes()[0].is_ascii_digit())
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|m| m.name.to_string()).collect();
        assert_eq!(
            files, listed,
            "every numbered file in sql/ must be in MIGRATIONS, in order"
        );
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            assert!(m.name.starts_with(&format!("{:03}_", m.version)));
        }
    }

    #[test]
    fn a_store_of_schema_6_is_upgraded_keeping_every_order_fill_and_cent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.duckdb");
        {
            let c = Connection::open(&p).unwrap();
            c.execute_batch(
                "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name VARCHAR NOT NULL,
                 applied_at TIMESTAMP NOT NULL, optdesk_version VARCHAR NOT NULL)",
            )
            .unwrap();
            for m in MIGRATIONS.iter().filter(|m| m.version <= 6) {
                c.execute_batch(m.sql).unwrap();
                c.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, now()::TIMESTAMP, 'old')",
                    duckdb::params![m.version, m.name],
                )
                .unwrap();
            }
            // An entry, its expiry, and the old slot bug's repeated reference.
            c.execute_batch(
                "INSERT INTO cash_ledger VALUES (DATE '2024-06-04', 'deposit', 10000, 'starting cash', 1);
                 INSERT INTO orders VALUES
                   (DATE '2024-06-04', 'call_premium:2024-06-04:0', 'call_premium', 0, 'SPY   240621C00550000', 'SPY', 'option', DATE '2024-06-21', 550, 'C', 100, -1, -2.00, 'filled', NULL, 2),
                   (DATE '2024-06-04', 'call_premium:2024-06-04:0', 'call_premium', 0, 'SPY   240621C00550000', 'SPY', 'option', DATE '2024-06-21', 550, 'C', 100, -1, -2.00, 'filled', NULL, 3),
                   (DATE '2024-06-04', 'call_premium:2024-06-04:1', 'call_premium', 0, 'QQQ   240621C00480000', 'QQQ', 'option', DATE '2024-06-21', 480, 'C', 100, -1, -2.00, 'rejected', 'no quote', 2),
                   (DATE '2024-06-24', 'expire:SPY   240621C00550000', 'call_premium', 0, 'SPY   240621C00550000', 'SPY', 'option', DATE '2024-06-21', 550, 'C', 100, 2, NULL, 'filled', NULL, 4),
                   (DATE '2024-06-05', 'call_premium:2024-06-05:0', 'call_premium', 0, 'SPY   240621C00560000', 'SPY', 'option', DATE '2024-06-21', 560, 'C', 100, -1, -2.00, 'rejected', 'no quote', 5),
                   (DATE '2024-06-05', 'call_premium:2024-06-05:0', 'call_premium', 0, 'SPY   240621C00560000', 'SPY', 'option', DATE '2024-06-21', 560, 'C', 100, -1, -2.00, 'filled', NULL, 6);
                 INSERT INTO fills VALUES
                   (DATE '2024-06-04', 'call_premium:2024-06-04:0', 0, 'call_premium', 'SPY   240621C00550000', 'SPY', 'option', DATE '2024-06-21', 550, 'C', 100, -1, 2.00, 0.65, 'premium', 2),
                   (DATE '2024-06-04', 'call_premium:2024-06-04:0', 0, 'call_premium', 'SPY   240621C00550000', 'SPY', 'option', DATE '2024-06-21', 550, 'C', 100, -1, 2.00, 0.65, 'premium', 3),
                   (DATE '2024-06-24', 'expire:SPY   240621C00550000', 0, 'call_premium', 'SPY   240621C00550000', 'SPY', 'option', DATE '2024-06-21', 550, 'C', 100, 2, 0, 0, 'settlement', 4),
                   (DATE '2024-06-05', 'call_premium:2024-06-05:0', 0, 'call_premium', 'SPY   240621C00560000', 'SPY', 'option', DATE '2024-06-21', 560, 'C', 100, -1, 2.00, 0.65, 'premium', 6);
                 INSERT INTO cash_ledger VALUES
                   (DATE '2024-06-04', 'premium', 200, 'call_premium:2024-06-04:0#0', 2),
                   (DATE '2024-06-04', 'commission', -0.65, 'call_premium:2024-06-04:0#0', 2),
                   (DATE '2024-06-04', 'premium', 200, 'call_premium:2024-06-04:0#0', 3),
                   (DATE '2024-06-04', 'commission', -0.65, 'call_premium:2024-06-04:0#0', 3),
                   (DATE '2024-06-24', 'settlement', 0, 'expire:SPY   240621C00550000#0', 4),
                   (DATE '2024-06-05', 'premium', 200, 'call_premium:2024-06-05:0#0', 6),
                   (DATE '2024-06-05', 'commission', -0.65, 'call_premium:2024-06-05:0#0', 6);",
            )
            .unwrap();
        }
        let s = Store::open_write(&p, Duration::from_secs(1), "test").unwrap();
        assert_eq!(s.schema_version().unwrap(), latest_schema_version());
        let rows: Vec<(String, String, String)> = {
            let mut q = s
                .conn
                .prepare("SELECT order_ref, status, intent FROM orders ORDER BY order_ref")
                .unwrap();
            q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .map(|r| r.unwrap())
                .collect()
        };
        let rows: Vec<(&str, &str, &str)> = rows
            .iter()
            .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("call_premium:2024-06-04:0", "filled", "entry"),
                ("call_premium:2024-06-04:0~2", "filled", "entry"),
                ("call_premium:2024-06-04:1", "rejected", "entry"),
                ("call_premium:2024-06-05:0", "rejected", "entry"),
                ("call_premium:2024-06-05:0~2", "filled", "entry"),
                ("expire:SPY   240621C00550000", "filled", "expire"),
            ]
        );
        let (fills, unique, style): (i64, i64, String) = s
            .conn
            .query_row(
                "SELECT count(*), count(DISTINCT exec_id), min(style) FROM fills",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((fills, unique, style.as_str()), (4, 4, "american"));
        // The old slot bug's repeated order is kept as what it was, under a ~2
        // suffix, and the record reconciles to the cent.
        let report = check::check(&s.conn).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.cash, "10598.0500");
    }

    #[test]
    fn new_store_is_migrated_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.duckdb");
        {
            let s = Store::open_write(&p, Duration::from_secs(1), "test").unwrap();
            assert_eq!(s.schema_version().unwrap(), latest_schema_version());
        }
        let s = Store::open_write(&p, Duration::from_secs(1), "test").unwrap();
        let n: i64 = s
            .conn
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, MIGRATIONS.len() as i64);
    }

    #[test]
    fn older_store_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.duckdb");
        {
            // A store at schema 1 only, with a run in it.
            let c = Connection::open(&p).unwrap();
            c.execute_batch(
                "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name VARCHAR NOT NULL,
                 applied_at TIMESTAMP NOT NULL, optdesk_version VARCHAR NOT NULL);",
            )
            .unwrap();
            c.execute_batch(MIGRATIONS[0].sql).unwrap();
            c.execute_batch("INSERT INTO schema_migrations VALUES (1, '001_core.sql', now()::TIMESTAMP, '0.0.1')")
                .unwrap();
            c.execute_batch(
                "INSERT INTO job_runs VALUES (1, 'fetch_chains', DATE '2025-03-14', NULL, now()::TIMESTAMP,
                 now()::TIMESTAMP, 'ok', 5, 'x', 'h', '0.0.1', false, 'cli')",
            )
            .unwrap();
        }
        let s = Store::open_write(&p, Duration::from_secs(1), "test").unwrap();
        assert_eq!(s.schema_version().unwrap(), latest_schema_version());
        let n: i64 = s
            .conn
            .query_row("SELECT count(*) FROM job_runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "existing rows survive the upgrade");
    }

    #[test]
    fn newer_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("new.duckdb");
        {
            let s = Store::open_write(&p, Duration::from_secs(1), "test").unwrap();
            s.conn
                .execute_batch("INSERT INTO schema_migrations VALUES (999, '999_future.sql', now()::TIMESTAMP, '9.9.9')")
                .unwrap();
        }
        let e = Store::open_write(&p, Duration::from_secs(1), "test")
            .err()
            .unwrap();
        assert!(matches!(e, StoreError::TooNew { found: 999, .. }), "{e}");
        let e = Store::open_read(&p, Duration::from_secs(1)).err().unwrap();
        assert!(e.to_string().contains("newer optdesk"), "{e}");
    }

    #[test]
    fn corrupt_store_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.duckdb");
        std::fs::write(
            &p,
            b"this is not a duckdb file, just some text padding it out",
        )
        .unwrap();
        let e = Store::open_write(&p, Duration::from_secs(1), "test")
            .err()
            .unwrap();
        assert!(matches!(e, StoreError::Open { .. }), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn only_a_duckdb_file_or_a_new_path_is_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("quotes.csv");
        std::fs::write(&csv, "a,b\n1,2\n").unwrap();
        let parquet = dir.path().join("q.parquet");
        std::fs::write(&parquet, b"PAR1\x15\x04\x15\x10\x15\x14PAR1").unwrap();
        let folder = dir.path().join("folder");
        std::fs::create_dir(&folder).unwrap();
        let cases: [(&Path, &str); 4] = [
            (&csv, "not a DuckDB file"),
            (&parquet, "a Parquet file"),
            (Path::new(":memory:"), "in-memory"),
            (&folder, "a folder"),
        ];
        for (p, why) in cases {
            let before = std::fs::metadata(p).ok().map(|m| m.len());
            let e = Store::open_write(p, Duration::from_secs(1), "test")
                .err()
                .unwrap();
            assert!(matches!(e, StoreError::Open { .. }), "{e}");
            assert!(e.to_string().contains(why), "{e}");
            let e = Store::open_read(p, Duration::from_secs(1)).err().unwrap();
            assert!(e.to_string().contains(why), "{e}");
            assert!(!lock_path_for(p).exists(), "lock file left for {p:?}");
            assert_eq!(before, std::fs::metadata(p).ok().map(|m| m.len()));
        }
        let empty = dir.path().join("empty.duckdb");
        std::fs::write(&empty, b"").unwrap();
        let e = Store::open_write(&empty, Duration::from_secs(1), "test")
            .err()
            .unwrap();
        assert!(e.to_string().contains("an empty file"), "{e}");
        assert!(!lock_path_for(&empty).exists());
        // A new path and a real store are accepted.
        let store = dir.path().join("s.duckdb");
        drop(Store::open_write(&store, Duration::from_secs(1), "test").unwrap());
        assert_eq!(&std::fs::read(&store).unwrap()[8..12], b"DUCK");
        drop(Store::open_read(&store, Duration::from_secs(1)).unwrap());
        drop(Store::open_write(&store, Duration::from_secs(1), "test").unwrap());
    }

    #[test]
    fn read_only_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ro.duckdb");
        drop(Store::open_write(&p, Duration::from_secs(1), "test").unwrap());
        let s = Store::open_read(&p, Duration::from_secs(1)).unwrap();
        assert!(s.conn.execute_batch("DELETE FROM job_runs").is_err());
    }
}
