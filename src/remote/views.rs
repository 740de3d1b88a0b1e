//! What `/status`, `/positions`, `/pnl` and `/flatten` read from the store: plain text
//! for a phone, read the way `optdesk positions` and the report read it.

use chrono::{NaiveDate, NaiveDateTime};
use duckdb::{params, Connection};

type Db<T> = Result<T, duckdb::Error>;

/// The refusals that halt new entries (as the `risk_halt` alert names them).
const HALT_RULES: &str =
    "'kill_switch', 'daily_loss_cap', 'vix_jump', 'volatility_kill_switch', 'loss_pause'";

/// `+$1,234.56` / `-$1,234.56`.
pub fn signed_usd(v: f64) -> String {
    let m = crate::report::money(v.abs());
    if v < 0.0 {
        format!("-${m}")
    } else {
        format!("+${m}")
    }
}

/// The last session on or before `today` the desk ran jobs for.
fn last_session(conn: &Connection, today: NaiveDate) -> Db<Option<NaiveDate>> {
    conn.query_row(
        "SELECT max(as_of) FROM job_runs WHERE NOT dry_run AND as_of <= ?",
        params![today],
        |r| r.get(0),
    )
}

/// The latest chain snapshot on or before `today`: (session, its last quote time).
pub fn latest_snapshot(
    conn: &Connection,
    today: NaiveDate,
) -> Db<Option<(NaiveDate, NaiveDateTime)>> {
    let d: Option<NaiveDate> = conn.query_row(
        "SELECT max(as_of) FROM option_quotes WHERE as_of <= ?",
        params![today],
        |r| r.get(0),
    )?;
    let Some(d) = d else { return Ok(None) };
    let t: Option<NaiveDateTime> = conn.query_row(
        "SELECT max(quote_time) FROM option_quotes WHERE as_of = ?",
        params![d],
        |r| r.get(0),
    )?;
    Ok(t.map(|t| (d, t)))
}

/// Open positions as of `as_of`.
pub fn open_positions(conn: &Connection, as_of: NaiveDate) -> Db<i64> {
    conn.query_row(
        "SELECT count(*) FROM positions_as_of(?)",
        params![as_of],
        |r| r.get(0),
    )
}

/// `/status`: the last session's runs (the latest of each job and slot), equity, the
/// kill switch and the halts.
pub fn status(conn: &Connection, today: NaiveDate, kill: &str) -> Db<String> {
    let Some(d) = last_session(conn, today)? else {
        return Ok(format!(
            "optdesk: no job has run yet (nothing in job_runs on or before {today}).\n{kill}"
        ));
    };
    let mut s = conn.prepare(
        "SELECT job, coalesce(slot, ''), status, message FROM job_runs
         WHERE as_of = ? AND NOT dry_run
         QUALIFY row_number() OVER (PARTITION BY job, slot ORDER BY run_id DESC) = 1
         ORDER BY run_id",
    )?;
    let runs: Vec<(String, String, String, String)> = s
        .query_map(params![d], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    let count = |st: &str| runs.iter().filter(|r| r.2 == st).count();
    let mut out = format!(
        "optdesk status — session {d}\njobs: {} ok, {} failed, {} skipped",
        count("ok"),
        count("failed"),
        count("skipped")
    );
    for (job, slot, _, msg) in runs.iter().filter(|r| r.2 == "failed") {
        let at = if slot.is_empty() {
            String::new()
        } else {
            format!(" at {slot}")
        };
        let mut msg = crate::config::redact_secrets(msg);
        if msg.chars().count() > 200 {
            msg = msg.chars().take(200).collect::<String>() + "…";
        }
        out.push_str(&format!("\n  FAILED {job}{at}: {msg}"));
    }
    let eq: Option<(NaiveDate, NaiveDateTime, f64, f64)> = conn
        .query_row(
            "SELECT as_of, quote_time, equity::DOUBLE, total_return
             FROM portfolio_snapshots WHERE as_of <= ? ORDER BY as_of DESC, quote_time DESC LIMIT 1",
            params![today],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .map(Some)
        .or_else(|e| match e {
            duckdb::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    match eq {
        Some((as_of, t, equity, ret)) => out.push_str(&format!(
            "\nequity ${} ({:+.2}% since the start) at the {as_of} {} snapshot",
            crate::report::money(equity),
            ret * 100.0,
            t.format("%H:%M")
        )),
        None => out.push_str("\nequity: no portfolio snapshot yet"),
    }
    out.push_str(&format!(
        "\n{} open position(s) now",
        open_positions(conn, today)?
    ));
    out.push_str(&format!("\n{kill}"));
    let mut s = conn.prepare(&format!(
        "SELECT rule, count(*), string_agg(DISTINCT strategy, ', ' ORDER BY strategy)
         FROM risk_decisions WHERE as_of = ? AND decision = 'refused' AND rule IN ({HALT_RULES})
         GROUP BY rule ORDER BY rule"
    ))?;
    let halts: Vec<String> = s
        .query_map(params![d], |r| {
            Ok(format!(
                "{} ×{} ({})",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?
            ))
        })?
        .collect::<Result<_, _>>()?;
    if halts.is_empty() {
        out.push_str(&format!("\nhalts on {d}: none"));
    } else {
        out.push_str(&format!("\nhalts on {d}: {}", halts.join("; ")));
    }
    Ok(out)
}

/// `/positions`: the open positions marked at the latest snapshot, as
/// `optdesk positions` shows them.
pub fn positions(conn: &Connection, today: NaiveDate) -> Db<String> {
    let Some((d, t)) = latest_snapshot(conn, today)? else {
        return Ok("No snapshot in the store yet: no positions to show.".into());
    };
    let mut s = conn.prepare(
        "SELECT strategy, trim(instrument), quantity, avg_price::DOUBLE, mark::DOUBLE,
                ((mark - avg_price) * quantity * multiplier)::DOUBLE, stale
         FROM position_marks(?, ?) ORDER BY strategy, underlying, expiry, instrument",
    )?;
    type Line = (
        String,
        String,
        i64,
        f64,
        Option<f64>,
        Option<f64>,
        Option<bool>,
    );
    let rows: Vec<Line> = s
        .query_map(params![d, t], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    if rows.is_empty() {
        return Ok(format!(
            "No positions are open (as of {d} {}).",
            t.format("%H:%M")
        ));
    }
    let mut out = format!(
        "{} open position(s), marked at {d} {}:",
        rows.len(),
        t.format("%H:%M")
    );
    for (strategy, inst, qty, avg, mark, pnl, stale) in rows.iter().take(40) {
        let mark = mark
            .map(|m| format!("{m:.2}"))
            .unwrap_or_else(|| "n/a".into());
        let pnl = pnl.map(signed_usd).unwrap_or_else(|| "n/a".into());
        let stale = if stale.unwrap_or(false) {
            " (stale mark)"
        } else {
            ""
        };
        out.push_str(&format!(
            "\n{strategy}: {inst} {qty:+} @ {avg:.2}, mark {mark}, {pnl}{stale}"
        ));
    }
    if rows.len() > 40 {
        out.push_str(&format!("\n… and {} more", rows.len() - 40));
    }
    Ok(out)
}

/// `/pnl`: the last snapshotted session's P&L by strategy (its last snapshot against the
/// previous session's last), and the total.
pub fn pnl(conn: &Connection, today: NaiveDate) -> Db<String> {
    let d: Option<NaiveDate> = conn.query_row(
        "SELECT max(as_of) FROM strategy_snapshots WHERE as_of <= ?",
        params![today],
        |r| r.get(0),
    )?;
    let Some(d) = d else {
        return Ok("No P&L yet: snapshot_benchmarks has not run (it ends the daily run).".into());
    };
    let mut s = conn.prepare(
        "WITH last AS (
             SELECT strategy, pnl, quote_time FROM strategy_snapshots WHERE as_of = ?
             QUALIFY row_number() OVER (PARTITION BY strategy ORDER BY quote_time DESC) = 1),
         prev AS (
             SELECT strategy, pnl FROM strategy_snapshots WHERE as_of < ?
             QUALIFY row_number() OVER (PARTITION BY strategy ORDER BY as_of DESC, quote_time DESC) = 1)
         SELECT l.strategy, (l.pnl - coalesce(p.pnl, 0))::DOUBLE, l.pnl::DOUBLE, l.quote_time
         FROM last l LEFT JOIN prev p USING (strategy) ORDER BY l.strategy",
    )?;
    let rows: Vec<(String, f64, f64, NaiveDateTime)> = s
        .query_map(params![d, d], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    let at = rows
        .iter()
        .map(|r| r.3)
        .max()
        .map(|t| t.format("%H:%M").to_string())
        .unwrap_or_default();
    let label = if d == today {
        format!("today ({d}, at {at})")
    } else {
        format!("{d} (the last session with a snapshot, at {at})")
    };
    let mut out = format!("P&L {label}, by strategy (day; since the start):");
    for (strategy, day, total, _) in &rows {
        out.push_str(&format!(
            "\n{strategy}: {}; {}",
            signed_usd(*day),
            signed_usd(*total)
        ));
    }
    let day: f64 = rows.iter().map(|r| r.1).sum();
    let total: f64 = rows.iter().map(|r| r.2).sum();
    out.push_str(&format!(
        "\ntotal: {}; {}",
        signed_usd(day),
        signed_usd(total)
    ));
    Ok(out)
}
