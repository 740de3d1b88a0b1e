//! Bounded growth: `optdesk prune --quotes-before D`.
//!
//! Almost all of a store is option quotes and their analytics (the full chain of every
//! underlying at every snapshot). Once a session is past, the audit trail needs only the
//! quotes something used. One retention rule says which (the backtest's `--keep-quotes`
//! uses it too); for a snapshot before the boundary it keeps, in both `option_quotes`
//! and `option_analytics`:
//!
//! - every quote of a contract that was ever traded or held (`order_legs`, `fills`):
//!   the marks of positions, the prices of fills, what the reports chart;
//! - the chain slices each strategy scanned (`scanned_chains`: the expiry it chose on
//!   each underlying), so every quote a decision looked at is still there;
//! - for snapshots decided before `scanned_chains` existed (schema 8), the whole chains
//!   of the underlyings the strategies signalled on that day.
//!
//! Everything else is derived or per-underlying and stays: `vol_metrics`,
//! `expected_moves`, `correlation`, `underlying_quotes`, bars, signals, the ledger.
//! The last stored session is never pruned. Each prune is a `prunes` row; a job that
//! reads full chains refuses a session before the boundary with that reason.
//!
//! Deleted rows free blocks inside the file but do not shrink it, so after the delete
//! commits the store is rewritten into a new file (`COPY FROM DATABASE`), read back
//! whole and renamed over the old one while the write lock is held: a kill at any point
//! leaves either the old file or the new one.

use super::{backup, Store, StoreError};
use chrono::NaiveDate;
use duckdb::{params, Connection, OptionalExt};
use std::path::{Path, PathBuf};

/// The quotes of snapshots before a boundary that the retention rule keeps, as a SQL
/// predicate over a table aliased `q` with `as_of`, `quote_time`, `underlying`,
/// `expiry` and `contract` (both `option_quotes` and `option_analytics` have them).
const KEEP: &str = "(q.contract IN (SELECT instrument FROM order_legs UNION SELECT instrument FROM fills)
     OR EXISTS (SELECT 1 FROM scanned_chains s
                WHERE s.as_of = q.as_of AND s.quote_time = q.quote_time
                  AND s.underlying = q.underlying AND s.expiry = q.expiry)
     OR EXISTS (SELECT 1 FROM signals g
                WHERE g.as_of = q.as_of AND g.quote_time = q.quote_time AND g.underlying = q.underlying
                  AND NOT EXISTS (SELECT 1 FROM scanned_chains s2
                                  WHERE s2.as_of = g.as_of AND s2.quote_time = g.quote_time)))";

/// What a prune did (or, dry, would do).
#[derive(Debug, Clone, PartialEq)]
pub struct PruneReport {
    pub quotes_before: NaiveDate,
    pub quotes_deleted: i64,
    pub analytics_deleted: i64,
    /// Quotes before the boundary the retention rule keeps.
    pub quotes_kept: i64,
    /// Sessions with quotes before the boundary.
    pub sessions: i64,
    pub bytes_before: u64,
    /// The file after the rewrite (equal to before on a dry run).
    pub bytes_after: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("--quotes-before {before} is after the last stored session ({last}): the latest session's chains are always kept; give {last} or earlier")]
    TooLate { before: NaiveDate, last: NaiveDate },
    #[error("the store has no option quotes: nothing to prune")]
    Empty,
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("the rewritten store does not read back, the old one is kept: {0}")]
    Rewrite(String),
}

impl From<duckdb::Error> for PruneError {
    fn from(e: duckdb::Error) -> Self {
        PruneError::Store(e.into())
    }
}

/// The latest prune boundary: sessions before it have thinned chains.
pub fn horizon(conn: &Connection) -> Result<Option<NaiveDate>, StoreError> {
    Ok(conn.query_row("SELECT max(quotes_before) FROM prunes", [], |r| r.get(0))?)
}

/// Why a job that reads full chains must not run for `as_of`, if it must not.
pub fn refuse_pruned(conn: &Connection, as_of: NaiveDate) -> Result<Option<String>, StoreError> {
    let row: Option<(NaiveDate, String)> = conn
        .query_row(
            "SELECT quotes_before, strftime(pruned_at, '%Y-%m-%d') FROM prunes
             WHERE quotes_before > ? ORDER BY pruned_at DESC LIMIT 1",
            params![as_of],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.map(|(before, at)| {
        format!(
            "the option quotes of sessions before {before} were pruned on {at} (optdesk prune): {as_of} cannot be recomputed from a thinned chain; its stored results stand"
        )
    }))
}

fn count(conn: &Connection, sql: &str, before: NaiveDate) -> Result<i64, duckdb::Error> {
    conn.query_row(sql, params![before], |r| r.get(0))
}

/// Count what pruning before `before` deletes and keeps, without changing anything.
pub fn plan(store: &Store, before: NaiveDate) -> Result<PruneReport, PruneError> {
    plan_inner(store, before, false)
}

fn plan_inner(
    store: &Store,
    before: NaiveDate,
    thin_last: bool,
) -> Result<PruneReport, PruneError> {
    let conn = &store.conn;
    let last: Option<NaiveDate> =
        conn.query_row("SELECT max(as_of) FROM option_quotes", [], |r| r.get(0))?;
    let last = last.ok_or(PruneError::Empty)?;
    if before > last && !thin_last {
        return Err(PruneError::TooLate { before, last });
    }
    let quotes_deleted = count(
        conn,
        &format!("SELECT count(*) FROM option_quotes q WHERE q.as_of < ? AND NOT {KEEP}"),
        before,
    )?;
    let analytics_deleted = count(
        conn,
        &format!("SELECT count(*) FROM option_analytics q WHERE q.as_of < ? AND NOT {KEEP}"),
        before,
    )?;
    let quotes_kept = count(
        conn,
        &format!("SELECT count(*) FROM option_quotes q WHERE q.as_of < ? AND {KEEP}"),
        before,
    )?;
    let sessions = count(
        conn,
        "SELECT count(DISTINCT as_of) FROM option_quotes WHERE as_of < ?",
        before,
    )?;
    let bytes = file_bytes(store.path());
    Ok(PruneReport {
        quotes_before: before,
        quotes_deleted,
        analytics_deleted,
        quotes_kept,
        sessions,
        bytes_before: bytes,
        bytes_after: bytes,
    })
}

/// The store file and its write-ahead log, in bytes.
pub fn file_bytes(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    size(path) + size(&with_suffix(path, ".wal"))
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Prune quotes and analytics before `before` by the retention rule, record it in
/// `prunes`, and rewrite the store compactly. `store` must be open for writing; it is
/// returned reopened on the rewritten file.
pub fn prune(store: Store, before: NaiveDate) -> Result<(Store, PruneReport), PruneError> {
    let mut report = thin(&store, before, false)?;
    let store = compact(store)?;
    report.bytes_after = file_bytes(store.path());
    Ok((store, report))
}

/// The delete half of [`prune`]: by the retention rule, delete the quotes and analytics
/// of snapshots before `before` and record it in `prunes`, in one transaction, without
/// rewriting the file (the freed blocks are reused by later writes; [`compact`]
/// shrinks it). A backtest thins after every session and compacts at the end.
/// `thin_last` allows a boundary after the last stored session (its chains thinned
/// too: a backtest's `--keep-quotes none`).
pub fn thin(store: &Store, before: NaiveDate, thin_last: bool) -> Result<PruneReport, PruneError> {
    let report = plan_inner(store, before, thin_last)?;
    {
        let conn = &store.conn;
        conn.execute_batch("BEGIN TRANSACTION")?;
        let res = (|| {
            for table in ["option_quotes", "option_analytics"] {
                conn.execute(
                    &format!("DELETE FROM {table} q WHERE q.as_of < ? AND NOT {KEEP}"),
                    params![before],
                )?;
            }
            conn.execute(
                "INSERT INTO prunes VALUES (now()::TIMESTAMP, ?, ?, ?, ?, ?, ?)",
                params![
                    before,
                    report.quotes_deleted,
                    report.analytics_deleted,
                    report.quotes_kept,
                    report.bytes_before as i64,
                    crate::VERSION
                ],
            )?;
            conn.execute_batch("COMMIT")
        })();
        if let Err(e) = res {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
    }
    Ok(report)
}

/// [`thin`] inside the caller's transaction, for a backtest that thins after every
/// session: only the snapshots from `since` (the previous boundary: everything before
/// it was thinned already, and what the rule keeps only grows) up to `before` are
/// looked at, and the counts come from the deletes themselves, so a session's thinning
/// costs one session's rows, not the whole history's. The `prunes` row is the one
/// [`thin`] writes. Returns the quotes deleted.
pub fn thin_window(
    conn: &Connection,
    path: &Path,
    since: Option<NaiveDate>,
    before: NaiveDate,
) -> Result<usize, duckdb::Error> {
    let bytes_before = file_bytes(path);
    let since = since.unwrap_or(NaiveDate::MIN);
    let mut deleted = [0usize; 2];
    for (n, table) in deleted
        .iter_mut()
        .zip(["option_quotes", "option_analytics"])
    {
        *n = conn.execute(
            &format!("DELETE FROM {table} q WHERE q.as_of >= ? AND q.as_of < ? AND NOT {KEEP}"),
            params![since, before],
        )?;
    }
    let kept: i64 = count(
        conn,
        "SELECT count(*) FROM option_quotes WHERE as_of < ?",
        before,
    )?;
    conn.execute(
        "INSERT INTO prunes VALUES (now()::TIMESTAMP, ?, ?, ?, ?, ?, ?)",
        params![
            before,
            deleted[0] as i64,
            deleted[1] as i64,
            kept,
            bytes_before as i64,
            crate::VERSION
        ],
    )?;
    Ok(deleted[0])
}

/// Rewrite the store into a new file holding only live blocks, verify it, and rename
/// it over the old one (the write lock is held throughout).
pub fn compact(store: Store) -> Result<Store, PruneError> {
    let path = store.path().to_path_buf();
    let tmp = with_suffix(&path, ".compact");
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| PruneError::Io {
            path: p.clone(),
            message: e.to_string(),
        }
    };
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_file(with_suffix(&tmp, ".wal"));
    let conn = &store.conn;
    conn.execute_batch("CHECKPOINT")?;
    let name: String = conn.query_row("SELECT current_database()", [], |r| r.get(0))?;
    let quoted = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let lit = tmp.display().to_string().replace('\'', "''");
    let copied = conn.execute_batch(&format!(
        "ATTACH '{lit}' AS optdesk_compact; COPY FROM DATABASE {} TO optdesk_compact; DETACH optdesk_compact;",
        quoted(&name)
    ));
    if let Err(e) = copied {
        let _ = conn.execute_batch("DETACH DATABASE IF EXISTS optdesk_compact");
        let _ = std::fs::remove_file(&tmp);
        return Err(PruneError::Rewrite(crate::text::one_line(&e.to_string())));
    }
    // Read the new file back whole, and compare every table's row count.
    let before = super::check::deep_check(conn)?;
    let after = backup::deep_check_file(&tmp).map_err(PruneError::Rewrite)?;
    if !after.damaged.is_empty() || after.tables != before.tables {
        let _ = std::fs::remove_file(&tmp);
        return Err(PruneError::Rewrite(format!(
            "tables and row counts differ: {:?} against {:?}",
            after.tables, before.tables
        )));
    }
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    let (conn, path, lock) = store.into_parts();
    drop(conn);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    let _ = std::fs::remove_file(with_suffix(&path, ".wal"));
    Ok(Store::reopen_write(path, lock)?)
}
