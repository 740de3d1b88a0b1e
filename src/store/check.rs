//! `optdesk check`: the trading record reconciles to the cent.
//!
//! * the trade cash in `cash_ledger` equals the fills' premium, settlement and
//!   assignment cash less commissions, exactly (DECIMAL arithmetic); a future's fill
//!   moves no premium;
//! * the variation margin paid on each futures position equals Σ fills quantity ×
//!   multiplier × (last mark − fill price), mark by mark (sql/014_futures.sql);
//! * every fill has its order leg, and that order's latest event says it filled (or
//!   partly filled); every filled order leg is filled exactly its quantity (no
//!   duplicates, no half-filled multi-leg orders); every event follows the life cycle;
//! * orders still pending or submitted are named (the next run completes them);
//! * cash is the sum of the ledger, positions the sum of the fills;
//! * options past expiry still open are named (expire_positions settles them once the
//!   expiry day's bar is in).
//!
//! DuckDB verifies a block's checksum only when it reads the block, and the checks
//! above read a few tables. `deep_check` reads every column of every row of every
//! table from a freshly opened file (nothing cached), so each data block is read
//! from disk and its checksum verified; a damaged table is named with DuckDB's error.

use duckdb::Connection;

#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub cash: String,
    pub open_positions: i64,
    pub fills: i64,
    /// Discrepancies: any makes `optdesk check` exit non-zero.
    pub problems: Vec<String>,
    /// Worth knowing, not wrong.
    pub notes: Vec<String>,
}

fn strings(conn: &Connection, sql: &str) -> Result<Vec<String>, duckdb::Error> {
    let mut s = conn.prepare(sql)?;
    let rows = s.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}

pub fn check(conn: &Connection) -> Result<CheckReport, duckdb::Error> {
    let mut problems = Vec::new();
    let (ledger, from_fills): (String, String) = conn.query_row(
        "SELECT
           (SELECT coalesce(sum(amount), 0) FROM cash_ledger
             WHERE kind IN ('premium', 'commission', 'settlement', 'assignment'))::VARCHAR,
           (SELECT coalesce(sum(CASE WHEN kind = 'future' THEN 0 ELSE -quantity * multiplier * price END - commission), 0) FROM fills)::VARCHAR",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let same: bool = conn.query_row(
        "SELECT (SELECT coalesce(sum(amount), 0) FROM cash_ledger
                  WHERE kind IN ('premium', 'commission', 'settlement', 'assignment'))
              = (SELECT coalesce(sum(CASE WHEN kind = 'future' THEN 0 ELSE -quantity * multiplier * price END - commission), 0) FROM fills)",
        [],
        |r| r.get(0),
    )?;
    if !same {
        problems.push(format!(
            "trade cash in cash_ledger is {ledger}, the fills say {from_fills}"
        ));
    }
    for s in strings(
        conn,
        "SELECT 'fill ' || f.exec_id || ' of ' || f.order_ref || ' leg ' || f.leg || ' has no filled order leg'
         FROM fills f LEFT JOIN orders o ON o.order_ref = f.order_ref AND o.leg = f.leg
                                          AND o.status IN ('filled', 'partly_filled')
         WHERE o.order_ref IS NULL",
    )? {
        problems.push(s);
    }
    for s in strings(
        conn,
        "SELECT 'order ' || o.order_ref || ' leg ' || o.leg || ' is filled ' || coalesce(sum(f.quantity), 0)
                || ' of ' || any_value(o.quantity) || ' (' || count(f.order_ref) || ' fills)'
         FROM orders o LEFT JOIN fills f ON f.order_ref = o.order_ref AND f.leg = o.leg
         WHERE o.status = 'filled' GROUP BY o.order_ref, o.leg
         HAVING coalesce(sum(f.quantity), 0) <> any_value(o.quantity)",
    )? {
        problems.push(s);
    }
    for s in strings(
        conn,
        "SELECT 'order ' || order_ref || ' has events ' || string_agg(status, ' → ' ORDER BY seq)
                || ', not a life cycle (pending first, nothing after the end)'
         FROM order_events GROUP BY order_ref
         HAVING min(seq) <> 0 OR arg_min(status, seq) <> 'pending'
             OR count(*) FILTER (WHERE status IN ('filled', 'cancelled', 'rejected', 'expired')) > 1
             OR max(seq) + 1 <> count(*)",
    )? {
        problems.push(s);
    }
    for s in strings(
        conn,
        "SELECT 'cash ledger entry ' || reference || ' (' || kind || ') has no fill'
         FROM cash_ledger c
         WHERE kind NOT IN ('deposit', 'dividend', 'variation')
           AND NOT EXISTS (SELECT 1 FROM fills f WHERE f.exec_id = c.reference)",
    )? {
        problems.push(s);
    }
    problems.extend(variation_problems(conn)?);
    let mut notes = strings(
        conn,
        "SELECT 'awaiting settlement: ' || instrument || ' expired ' || expiry::VARCHAR
         FROM positions WHERE kind = 'option'
           AND expiry < (SELECT max(as_of) FROM option_quotes)",
    )?;
    notes.extend(strings(
        conn,
        "SELECT 'past expiry: future ' || instrument || ' of ' || strategy || ' expired ' || expiry::VARCHAR
                || ' without a roll (no final settlement is booked)'
         FROM positions WHERE kind = 'future'
           AND expiry < (SELECT max(as_of) FROM futures_quotes)",
    )?);
    notes.extend(strings(
        conn,
        "SELECT 'order ' || order_ref || ' is ' || status || ' since ' || strftime(status_at, '%Y-%m-%d %H:%M')
                || ': the next run completes it'
         FROM orders WHERE leg = 0 AND status IN ('pending', 'submitted', 'partly_filled')",
    )?);
    let (cash, open_positions, fills): (String, i64, i64) = conn.query_row(
        "SELECT (SELECT coalesce(sum(amount), 0) FROM cash_ledger)::VARCHAR,
                (SELECT count(*) FROM positions), (SELECT count(*) FROM fills)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(CheckReport {
        cash,
        open_positions,
        fills,
        problems,
        notes,
    })
}

/// Futures: the variation paid on each position (cash_ledger, kind `variation`) is
/// what its chain of marks says, and equals Σ fills quantity × multiplier × (last mark
/// − fill price) exactly; the chain holds what the fills hold; every fill of a future
/// marked it once.
fn variation_problems(conn: &Connection) -> Result<Vec<String>, duckdb::Error> {
    let mut out = strings(
        conn,
        "SELECT 'variation entry ' || c.reference || ' of ' || c.amount::VARCHAR
                || ' does not match its mark (' || coalesce(v.amount::VARCHAR, 'none') || ')'
         FROM cash_ledger c LEFT JOIN futures_variation v USING (reference)
         WHERE c.kind = 'variation' AND (v.reference IS NULL OR v.amount <> c.amount)
         UNION ALL
         SELECT 'mark ' || v.reference || ' of ' || v.amount::VARCHAR || ' was not paid'
         FROM futures_variation v
         WHERE v.amount <> 0 AND NOT EXISTS
           (SELECT 1 FROM cash_ledger c WHERE c.kind = 'variation' AND c.reference = v.reference)
         UNION ALL
         SELECT 'future fill ' || f.exec_id || ' did not mark its position'
         FROM fills f WHERE f.kind = 'future' AND NOT EXISTS
           (SELECT 1 FROM futures_variation v WHERE v.reference = f.exec_id)",
    )?;
    out.extend(strings(
        conn,
        "WITH last AS (SELECT strategy, instrument, arg_max(mark, seq) AS mark,
                              arg_max(held_after, seq) AS held, sum(amount) AS paid
                       FROM futures_variation GROUP BY ALL),
              owed AS (SELECT strategy, instrument, sum(quantity)::BIGINT AS held,
                              sum(quantity * multiplier * (l.mark - price)) AS owed
                       FROM fills f JOIN last l USING (strategy, instrument)
                       WHERE f.kind = 'future' GROUP BY ALL)
         SELECT 'future ' || strategy || ' ' || instrument || ': variation paid ' || l.paid::VARCHAR
                || ', the fills owe ' || o.owed::VARCHAR || ' (held ' || l.held || ', fills ' || o.held || ')'
         FROM last l JOIN owed o USING (strategy, instrument)
         WHERE l.paid <> o.owed OR l.held <> o.held",
    )?);
    Ok(out)
}

/// What `deep_check` read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeepReport {
    /// Every table read whole, with its row count.
    pub tables: Vec<(String, i64)>,
    /// Tables that could not be read whole, with DuckDB's error (on one line).
    pub damaged: Vec<(String, String)>,
}

/// Read every block of every table: a full scan that hashes every column of every row.
/// Open `conn` afresh for this (a block already in DuckDB's buffer cache is not read
/// from disk again, so its checksum would not be verified).
pub fn deep_check(conn: &Connection) -> Result<DeepReport, duckdb::Error> {
    let tables = strings(
        conn,
        "SELECT table_name FROM information_schema.tables
         WHERE table_type = 'BASE TABLE' ORDER BY table_name",
    )?;
    let mut report = DeepReport::default();
    for t in tables {
        let quoted = format!("\"{}\"", t.replace('"', "\"\""));
        let read = conn.query_row(
            &format!(
                "SELECT count(*), coalesce(sum(hash(x)::HUGEINT), 0)::VARCHAR
                 FROM (SELECT * FROM {quoted}) x"
            ),
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        );
        match read {
            Ok((rows, _)) => report.tables.push((t, rows)),
            Err(e) => report
                .damaged
                .push((t, crate::text::one_line(&e.to_string()))),
        }
    }
    Ok(report)
}
