//! Session compliance, the drills, and the pre-live checklist (the quant scalper's
//! "before going live" list, and Market Watch's 20–30 compliant paper sessions), all
//! read from the store.
//!
//! A session is compliant for a strategy when:
//! * no job of the session failed (the latest run of each job and slot);
//! * every 0DTE option position of an intraday strategy was closed before the close
//!   (none is still held at the end of its expiry day);
//! * no entry was made once the strategy's session loss (its trades of the day: the
//!   cash they moved plus what is still open, marked at the entry's snapshot) had
//!   reached its daily loss cap: the halt took effect at the slot the cap was reached;
//! * no entry was made while a halt applied: after a refusal by a halting rule earlier
//!   the same session (the daily loss cap, the event blackout, the volatility kill
//!   switches; the consecutive-loss pause for its 30 minutes), or on a blackout date.

use super::repo::RepoError;
use crate::analytics::performance::{self, Point};
use crate::model::identifiers::{ClientOrderId, Intent};
use crate::model::Price;
use chrono::{Duration, NaiveDate, NaiveDateTime};
use duckdb::{params, Connection, OptionalExt};
use std::collections::{BTreeMap, BTreeSet};

/// What the review needs to know of a strategy.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyRules {
    pub name: String,
    pub enabled: bool,
    /// Trades in slots (0DTE and futures): its 0DTE positions must be closed by the close.
    pub intraday: bool,
    /// Its daily loss cap, dollars (the strategy's risk profile, or the desk's).
    pub daily_loss_cap: f64,
}

/// Rules whose refusal halts a strategy's entries for the rest of the session.
pub const HALTING_RULES: &[&str] = &["daily_loss_cap", "event_blackout", "vix_jump"];

/// Rules whose refusal halts a strategy's entries on that underlying for the rest of
/// the session.
pub const UNDERLYING_HALTING_RULES: &[&str] = &["earnings_blackout", "volatility_kill_switch"];

/// The consecutive-loss pause's rule, and how long it halts entries.
pub const PAUSE_RULE: &str = "loss_pause";
pub const PAUSE_MINUTES: i64 = 30;

/// One row of `session_compliance`.
#[derive(Debug, Clone, PartialEq)]
pub struct Compliance {
    pub as_of: NaiveDate,
    pub strategy: String,
    pub intraday: bool,
    pub compliant: bool,
    /// (rule, times) of the refusals and exit rules of the session.
    pub rules_fired: Vec<(String, i64)>,
    pub violations: Vec<String>,
    pub entries: i64,
    pub exits: i64,
    pub pnl: Price,
}

/// One fill of the session, as the review reads it.
#[derive(Debug, Clone)]
struct SessionFill {
    order_ref: String,
    strategy: String,
    instrument: String,
    kind: String,
    multiplier: i64,
    quantity: i64,
    price: Price,
    commission: Price,
    filled_at: NaiveDateTime,
}

impl SessionFill {
    /// What the fill is worth to the session's P&L: − paid, + received, net of
    /// commission. A future moves no premium (its P&L arrives as variation margin), but
    /// over a session its variation sums to exactly this: (exit − entry) × quantity ×
    /// multiplier, with what is still open marked below.
    fn cash(&self) -> Price {
        -(self.price.times(self.quantity * self.multiplier)) - self.commission
    }
    fn intent(&self) -> Option<Intent> {
        ClientOrderId::parse(&self.order_ref)
            .ok()
            .map(|id| id.intent)
    }
}

fn session_fills(conn: &Connection, as_of: NaiveDate) -> Result<Vec<SessionFill>, RepoError> {
    let mut s = conn.prepare(
        "SELECT order_ref, strategy, instrument, kind, multiplier, quantity,
                CAST(price * 10000 AS BIGINT), CAST(commission * 10000 AS BIGINT), filled_at
         FROM fills WHERE as_of = ? ORDER BY filled_at, run_id, rowid",
    )?;
    let rows = s.query_map(params![as_of], |r| {
        Ok(SessionFill {
            order_ref: r.get(0)?,
            strategy: r.get(1)?,
            instrument: r.get(2)?,
            kind: r.get(3)?,
            multiplier: r.get(4)?,
            quantity: r.get(5)?,
            price: Price::from_raw(r.get(6)?),
            commission: Price::from_raw(r.get(7)?),
            filled_at: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The mid of an instrument at the latest snapshot of `as_of` at or before `at` (any
/// snapshot of the day when `at` is `None`).
fn mark(
    conn: &Connection,
    as_of: NaiveDate,
    instrument: &str,
    kind: &str,
    at: Option<NaiveDateTime>,
) -> Result<Option<Price>, RepoError> {
    let until = at.unwrap_or(as_of.and_hms_opt(23, 59, 59).expect("a time"));
    let sql = match kind {
        "option" => {
            "SELECT ((bid + ask) / 2)::DOUBLE FROM option_quotes
             WHERE as_of = ? AND contract = ? AND quote_time <= ? AND ask >= bid AND bid >= 0
             ORDER BY quote_time DESC LIMIT 1"
        }
        "shares" => {
            "SELECT price::DOUBLE FROM underlying_quotes
             WHERE as_of = ? AND symbol = ? AND quote_time <= ? ORDER BY quote_time DESC LIMIT 1"
        }
        "future" => {
            "SELECT ((bid + ask) / 2)::DOUBLE FROM futures_quotes
             WHERE as_of = ? AND contract = ? AND quote_time <= ? ORDER BY quote_time DESC LIMIT 1"
        }
        _ => return Ok(None),
    };
    let v: Option<f64> = conn
        .query_row(sql, params![as_of, instrument, until], |r| r.get(0))
        .optional()?;
    Ok(v.map(Price::from_f64))
}

/// The session P&L of `fills` (one strategy's, in time order) up to `at`: the cash they
/// moved plus the positions they left open, marked at `at` (at the fill price when
/// there is no mark).
fn session_pnl(
    conn: &Connection,
    as_of: NaiveDate,
    fills: &[&SessionFill],
    at: Option<NaiveDateTime>,
) -> Result<Price, RepoError> {
    let mut cash = Price::from_raw(0);
    // instrument → (kind, multiplier, net quantity, last price)
    let mut open: BTreeMap<&str, (&str, i64, i64, Price)> = BTreeMap::new();
    for f in fills.iter().filter(|f| at.is_none_or(|t| f.filled_at < t)) {
        cash += f.cash();
        let e = open
            .entry(&f.instrument)
            .or_insert((&f.kind, f.multiplier, 0, f.price));
        e.2 += f.quantity;
        e.3 = f.price;
    }
    let mut value = Price::from_raw(0);
    for (instrument, (kind, mult, qty, last)) in open {
        if qty == 0 {
            continue;
        }
        let m = mark(conn, as_of, instrument, kind, at)?.unwrap_or(last);
        value += m.times(qty * mult);
    }
    Ok(cash + value)
}

/// Review one session for each strategy that was enabled or traded: see the module.
pub fn review(
    conn: &Connection,
    as_of: NaiveDate,
    strategies: &[StrategyRules],
    blackout: &BTreeSet<NaiveDate>,
) -> Result<Vec<Compliance>, RepoError> {
    // The latest run of each job and slot of the session.
    let mut s = conn.prepare(
        "SELECT job, coalesce(slot, 'daily'), coalesce(message, '') FROM (
             SELECT *, row_number() OVER (PARTITION BY job, slot ORDER BY run_id DESC) AS n
             FROM job_runs WHERE as_of = ? AND NOT dry_run AND job <> 'review_session')
         WHERE n = 1 AND status = 'failed' ORDER BY job, slot",
    )?;
    let failed: Vec<String> = s
        .query_map(params![as_of], |r| {
            Ok(format!(
                "{} ({}) failed: {}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?
            ))
        })?
        .collect::<Result<_, _>>()?;
    let fills = session_fills(conn, as_of)?;
    let mut out = Vec::new();
    for st in strategies {
        let mine: Vec<&SessionFill> = fills.iter().filter(|f| f.strategy == st.name).collect();
        // (quote_time, decision, rule, order_ref, underlying) of the session's decisions.
        let mut s = conn.prepare(
            "SELECT quote_time, decision, rule, order_ref, underlying FROM risk_decisions
             WHERE as_of = ? AND strategy = ? ORDER BY quote_time, rowid",
        )?;
        let decisions: Vec<(NaiveDateTime, String, String, String, String)> = s
            .query_map(params![as_of, st.name], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        if !st.enabled && mine.is_empty() && decisions.is_empty() {
            continue;
        }
        let mut violations = failed.clone();
        let mut fired: BTreeMap<String, i64> = BTreeMap::new();
        for (_, decision, rule, order_ref, _) in &decisions {
            let exit = ClientOrderId::parse(order_ref).is_ok_and(|id| id.intent != Intent::Entry);
            if decision == "refused" || (exit && decision == "approved") {
                *fired.entry(rule.clone()).or_default() += 1;
            }
        }
        // Entries made while a halt applied, or with the daily cap already reached.
        for (t, decision, _, order_ref, underlying) in &decisions {
            let entry = ClientOrderId::parse(order_ref).is_ok_and(|id| id.intent == Intent::Entry);
            if decision != "approved" || !entry {
                continue;
            }
            let hhmm = t.format("%H:%M");
            if blackout.contains(&as_of) {
                violations.push(format!(
                    "entry {order_ref} at {hhmm} on an event day ({as_of} is in the blackout)"
                ));
            }
            for (t0, d0, r0, _, u0) in &decisions {
                if t0 >= t || d0 != "refused" {
                    continue;
                }
                let halted = HALTING_RULES.contains(&r0.as_str())
                    || (UNDERLYING_HALTING_RULES.contains(&r0.as_str()) && u0 == underlying)
                    || (r0 == PAUSE_RULE && *t - *t0 < Duration::minutes(PAUSE_MINUTES));
                if halted {
                    violations.push(format!(
                        "entry {order_ref} at {hhmm} after {r0} halted entries at {}",
                        t0.format("%H:%M")
                    ));
                    break;
                }
            }
            let loss = -session_pnl(conn, as_of, &mine, Some(*t))?.to_f64();
            if loss >= st.daily_loss_cap {
                violations.push(format!(
                    "entry {order_ref} at {hhmm} with the session's loss at {loss:.2}, at or over the daily cap {:.2}",
                    st.daily_loss_cap
                ));
            }
        }
        if st.intraday {
            let mut s = conn.prepare(
                "SELECT instrument, sum(quantity)::BIGINT FROM fills
                 WHERE strategy = ? AND kind = 'option' AND expiry = ? AND as_of <= ?
                 GROUP BY instrument HAVING sum(quantity) <> 0 ORDER BY instrument",
            )?;
            for r in s.query_map(params![st.name, as_of, as_of], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })? {
                let (instrument, q) = r?;
                // A long option nobody bids for cannot be sold: it carries no risk and
                // expires worthless. Named, not a violation.
                let last_bid: Option<f64> = conn
                    .query_row(
                        "SELECT bid::DOUBLE FROM option_quotes WHERE as_of = ? AND contract = ?
                         ORDER BY quote_time DESC LIMIT 1",
                        params![as_of, instrument],
                        |r| r.get(0),
                    )
                    .optional()?;
                if q > 0 && last_bid == Some(0.0) {
                    *fired.entry("left_without_a_bid".into()).or_default() += 1;
                    continue;
                }
                violations.push(format!(
                    "0DTE {instrument} ({q:+}) still held at the close: the auto-close did not close it"
                ));
            }
        }
        let count = |intent: Intent| {
            mine.iter()
                .filter(|f| f.intent() == Some(intent))
                .map(|f| f.order_ref.as_str())
                .collect::<BTreeSet<_>>()
                .len() as i64
        };
        out.push(Compliance {
            as_of,
            strategy: st.name.clone(),
            intraday: st.intraday,
            compliant: violations.is_empty(),
            rules_fired: fired.into_iter().collect(),
            violations,
            entries: count(Intent::Entry),
            exits: count(Intent::Exit),
            pnl: session_pnl(conn, as_of, &mine, None)?,
        });
    }
    Ok(out)
}

/// Replace a session's rows of `session_compliance`.
pub fn write(
    conn: &Connection,
    as_of: NaiveDate,
    rows: &[Compliance],
    run_id: i64,
) -> Result<usize, RepoError> {
    conn.execute(
        "DELETE FROM session_compliance WHERE as_of = ?",
        params![as_of],
    )?;
    for c in rows {
        let fired: Vec<String> = c
            .rules_fired
            .iter()
            .map(|(r, n)| format!("{r}×{n}"))
            .collect();
        conn.execute(
            "INSERT INTO session_compliance VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params![
                c.as_of,
                c.strategy,
                c.intraday,
                c.compliant,
                fired.join(", "),
                c.violations.join("\n"),
                c.entries,
                c.exits,
                c.pnl.to_f64(),
                run_id
            ],
        )?;
    }
    Ok(rows.len())
}

/// Record a drill that ran.
pub fn record_drill(
    conn: &Connection,
    drill: &str,
    passed: bool,
    detail: &str,
) -> Result<(), RepoError> {
    conn.execute(
        "INSERT INTO drills VALUES (?, now()::TIMESTAMP, ?, ?, ?)",
        params![drill, passed, detail, crate::VERSION],
    )?;
    Ok(())
}

/// The drills `checklist` reads, with the line each stands for.
pub const DRILLS: &[(&str, &str)] = &[
    ("kill9_recovery", "recovery after kill -9 tested"),
    ("reconnect", "reconnect tested"),
    ("circuit_breakers", "circuit breakers tested"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    NotTested,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::NotTested => "NOT TESTED",
        }
    }
}

/// One line of the checklist: what is checked, the verdict, and the figure behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub item: String,
    pub verdict: Verdict,
    pub figure: String,
}

/// The pre-live checklist's thresholds (the quant scalper's).
pub const MIN_WIN_RATE: f64 = 0.45;
pub const MIN_PROFIT_FACTOR: f64 = 1.2;
pub const MAX_DRAWDOWN: f64 = 0.10;
pub const NO_FAILURE_DAYS: i64 = 30;
pub const MIN_COMPLIANT_SESSIONS: i64 = 20;

fn pass_if(ok: bool) -> Verdict {
    if ok {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
}

/// The pre-live checklist for one strategy (or the whole book), from the store. No
/// line passes by default: without trades, snapshots, runs or drills, a line fails or
/// says "not tested". `bots` are the strategies whose compliant-session streak counts
/// (the premium bots).
pub fn checklist(
    conn: &Connection,
    strategy: Option<&str>,
    bots: &[String],
) -> Result<Vec<Line>, RepoError> {
    let mut lines = Vec::new();
    let last: Option<NaiveDate> =
        conn.query_row("SELECT max(as_of) FROM fills", [], |r| r.get(0))?;
    let fills = match last {
        Some(d) => super::repo::orders::fills_up_to(conn, d)?,
        None => Vec::new(),
    };
    let pnls: Vec<f64> = crate::trading::trades::closed_trades(&fills)
        .iter()
        .filter(|t| strategy.is_none_or(|s| t.book == s))
        .map(|t| t.pnl.to_f64())
        .collect();
    let stats = performance::trade_stats(&pnls);
    let who = strategy.unwrap_or("the book");
    let closed = format!("{} closed trades of {who}", stats.trades);
    let none = format!("no closed trades of {who}");
    lines.push(match stats.win_rate {
        Some(w) => Line {
            item: format!("win rate > {:.0}%", MIN_WIN_RATE * 100.0),
            verdict: pass_if(w > MIN_WIN_RATE),
            figure: format!("{:.1}% ({} won of {closed})", w * 100.0, stats.wins),
        },
        None => Line {
            item: format!("win rate > {:.0}%", MIN_WIN_RATE * 100.0),
            verdict: Verdict::Fail,
            figure: none.clone(),
        },
    });
    lines.push(Line {
        item: format!("profit factor > {MIN_PROFIT_FACTOR}"),
        verdict: match stats.profit_factor {
            Some(p) => pass_if(p > MIN_PROFIT_FACTOR),
            // Wins and no loss: infinite; no trade at all: nothing to judge.
            None => pass_if(stats.wins > 0),
        },
        figure: match stats.profit_factor {
            Some(p) => format!("{p:.2} over {closed}"),
            None if stats.wins > 0 => format!("no losing trade among {closed}"),
            None => none,
        },
    });
    // Equity: the book's snapshots, or the account's start plus the strategy's P&L.
    let curve: Vec<Point> = {
        let sql = match strategy {
            None => "SELECT as_of, arg_max(equity, quote_time)::DOUBLE FROM portfolio_snapshots GROUP BY as_of ORDER BY as_of".to_string(),
            Some(_) => "SELECT s.as_of, (any_value(p.start_equity) + arg_max(s.pnl, s.quote_time))::DOUBLE
                        FROM strategy_snapshots s JOIN portfolio_snapshots p USING (as_of, quote_time)
                        WHERE s.strategy = ? GROUP BY s.as_of ORDER BY s.as_of".to_string(),
        };
        let mut s = conn.prepare(&sql)?;
        let map = |r: &duckdb::Row| {
            Ok(Point {
                date: r.get(0)?,
                value: r.get(1)?,
            })
        };
        let rows = match strategy {
            None => s.query_map([], map)?.collect::<Result<Vec<_>, _>>()?,
            Some(st) => s
                .query_map(params![st], map)?
                .collect::<Result<Vec<_>, _>>()?,
        };
        rows
    };
    let dd = performance::drawdown(&curve);
    lines.push(Line {
        item: format!("max drawdown < {:.0}%", MAX_DRAWDOWN * 100.0),
        verdict: pass_if(curve.len() >= 2 && -dd.max_drawdown < MAX_DRAWDOWN),
        figure: if curve.len() < 2 {
            format!("{} sessions of equity: too few to judge", curve.len())
        } else {
            format!(
                "{:.2}% over {} sessions{}",
                dd.max_drawdown * 100.0,
                curve.len(),
                match (dd.peak, dd.trough) {
                    (Some(p), Some(t)) => format!(" (peak {p}, trough {t})"),
                    _ => String::new(),
                }
            )
        },
    });
    let latest: Option<NaiveDate> = conn.query_row(
        "SELECT max(as_of) FROM job_runs WHERE NOT dry_run",
        [],
        |r| r.get(0),
    )?;
    lines.push(match latest {
        None => Line {
            item: format!("no failed run in the last {NO_FAILURE_DAYS} days"),
            verdict: Verdict::Fail,
            figure: "no run recorded".into(),
        },
        Some(d) => {
            let since = d - Duration::days(NO_FAILURE_DAYS);
            let (n, sessions, last_fail): (i64, i64, Option<String>) = conn.query_row(
                "SELECT count(*) FILTER (WHERE status = 'failed'),
                        count(DISTINCT as_of),
                        arg_max(job || ' on ' || as_of || coalesce(' ' || slot, '') || ': ' || coalesce(message, ''), run_id)
                            FILTER (WHERE status = 'failed')
                 FROM job_runs WHERE NOT dry_run AND as_of > ?",
                params![since],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            Line {
                item: format!("no failed run in the last {NO_FAILURE_DAYS} days"),
                verdict: pass_if(n == 0),
                figure: match last_fail {
                    None => format!("0 failed runs over {sessions} sessions since {since}"),
                    Some(f) => format!("{n} failed run(s) since {since}; the latest: {f}"),
                },
            }
        }
    });
    for (drill, item) in DRILLS {
        let last: Option<(bool, NaiveDateTime, String)> = conn
            .query_row(
                "SELECT passed, ran_at, detail FROM drills WHERE drill = ? ORDER BY ran_at DESC LIMIT 1",
                params![drill],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        lines.push(match last {
            None => Line {
                item: item.to_string(),
                verdict: Verdict::NotTested,
                figure: match *drill {
                    "reconnect" => {
                        "not tested: no successful reconnect of the ibkr source is recorded".into()
                    }
                    _ => "not tested: run `optdesk selftest`".into(),
                },
            },
            Some((passed, at, detail)) => Line {
                item: item.to_string(),
                verdict: pass_if(passed),
                figure: format!(
                    "{} at {} UTC: {detail}",
                    if passed { "passed" } else { "failed" },
                    at.format("%Y-%m-%d %H:%M")
                ),
            },
        });
    }
    let bots: Vec<&String> = bots
        .iter()
        .filter(|b| strategy.is_none_or(|s| s == b.as_str()))
        .collect();
    for bot in bots {
        let mut s = conn.prepare(
            "SELECT compliant, violations FROM session_compliance WHERE strategy = ? ORDER BY as_of DESC",
        )?;
        let rows: Vec<(bool, String)> = s
            .query_map(params![bot], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let streak = rows.iter().take_while(|(c, _)| *c).count() as i64;
        let reviewed = rows.len();
        let broken = rows
            .get(streak as usize)
            .map(|(_, v)| v.lines().next().unwrap_or("").to_string());
        lines.push(Line {
            item: format!("{bot}: {MIN_COMPLIANT_SESSIONS}–30 consecutive compliant sessions"),
            verdict: pass_if(streak >= MIN_COMPLIANT_SESSIONS),
            figure: match broken {
                None => format!("{streak} consecutive compliant sessions ({reviewed} reviewed)"),
                Some(v) => format!("{streak} consecutive compliant sessions ({reviewed} reviewed); the streak broke on: {v}"),
            },
        });
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn d() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 3, 14).unwrap()
    }
    fn at(h: u32, m: u32) -> NaiveDateTime {
        d().and_hms_opt(h, m, 0).unwrap()
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_write(
            &dir.path().join("c.duckdb"),
            std::time::Duration::from_secs(5),
            "test",
        )
        .unwrap();
        (dir, s)
    }

    /// A fill of one SPY option leg of `strategy`, ordered at `t`.
    fn fill(
        conn: &Connection,
        strategy: &str,
        intent: &str,
        t: NaiveDateTime,
        contract: &str,
        qty: i64,
        price: f64,
    ) {
        let order_ref = format!("{intent}{strategy}:{}:0", t.format("%Y-%m-%dT%H%M"));
        conn.execute(
            "INSERT INTO fills (as_of, order_ref, leg, strategy, instrument, underlying, kind, expiry, strike, put_call,
                                multiplier, quantity, price, commission, cash_kind, run_id, filled_at, exec_id, style, settlement)
             VALUES (?, ?, 0, ?, ?, 'SPY', 'option', ?, 560, 'P', 100, ?, ?, 0.65, 'premium', 1, ?, ?, 'american', 'physical')",
            params![d(), order_ref, strategy, contract, d(), qty, price, t, format!("x-{order_ref}-{contract}")],
        )
        .unwrap();
    }

    fn decision(
        conn: &Connection,
        strategy: &str,
        t: NaiveDateTime,
        decision: &str,
        rule: &str,
        order_ref: &str,
    ) {
        conn.execute(
            "INSERT INTO risk_decisions (as_of, quote_time, strategy, underlying, order_ref, decision, rule, reason, max_loss, requirement, run_id, intent)
             VALUES (?, ?, ?, 'SPY', ?, ?, ?, 'test', NULL, 0, 1, 'entry')",
            params![d(), t, strategy, order_ref, decision, rule],
        )
        .unwrap();
    }

    fn rules(name: &str, intraday: bool) -> StrategyRules {
        StrategyRules {
            name: name.into(),
            enabled: true,
            intraday,
            daily_loss_cap: 150.0,
        }
    }

    const C: &str = "SPY250314P00560000";

    #[test]
    fn a_round_trip_closed_before_the_close_is_compliant_with_its_exact_pnl() {
        let (_d, s) = store();
        decision(
            &s.conn,
            "put_write",
            at(10, 30),
            "approved",
            "all rules passed",
            "put_write:2025-03-14T1030:0",
        );
        fill(&s.conn, "put_write", "", at(10, 30), C, -1, 0.50);
        fill(&s.conn, "put_write", "exit:", at(11, 0), C, 1, 0.25);
        let r = review(
            &s.conn,
            d(),
            &[rules("put_write", true)],
            &Default::default(),
        )
        .unwrap();
        assert_eq!(r.len(), 1);
        let c = &r[0];
        assert!(c.compliant, "{:?}", c.violations);
        assert_eq!((c.entries, c.exits), (1, 1));
        // +50 − 25 − 2 × 0.65
        assert_eq!(c.pnl, Price::from_f64(23.70));
    }

    #[test]
    fn each_violation_is_named() {
        let (_d, s) = store();
        // A failed job of the session.
        s.conn
            .execute(
                "INSERT INTO job_runs VALUES (1, 'fetch_chains', ?, '10:30', now(), now(), 'failed', 0, 'the source refused', 'h', 'v', false, 'schedule')",
                params![d()],
            )
            .unwrap();
        // A 0DTE short left open, an entry after the daily cap's halt, and an entry with
        // the session's loss over the cap.
        decision(
            &s.conn,
            "put_write",
            at(10, 30),
            "approved",
            "all rules passed",
            "put_write:2025-03-14T1030:0",
        );
        fill(&s.conn, "put_write", "", at(10, 30), C, -1, 0.50);
        decision(
            &s.conn,
            "put_write",
            at(11, 0),
            "refused",
            "daily_loss_cap",
            "put_write:2025-03-14T1100:0",
        );
        decision(
            &s.conn,
            "put_write",
            at(11, 30),
            "approved",
            "all rules passed",
            "put_write:2025-03-14T1130:0",
        );
        // The 10:30 short marked at 3.00 at 11:30: a loss of 250 − 0.65 ≥ the 150 cap.
        s.conn
            .execute(
                "INSERT INTO option_quotes (as_of, quote_time, underlying, contract, root, expiry, strike, put_call, style, settlement,
                                            multiplier, bid, ask, bid_size, ask_size, volume, open_interest, underlying_price, source_iv, source, run_id)
                 VALUES (?, ?, 'SPY', ?, 'SPY', ?, 560, 'P', 'american', 'physical', 100, 2.9, 3.1, 1, 1, 0, 0, 555, NULL, 'sim', 1)",
                params![d(), at(11, 25), C, d()],
            )
            .unwrap();
        let r = review(
            &s.conn,
            d(),
            &[rules("put_write", true), rules("call_premium", false)],
            &Default::default(),
        )
        .unwrap();
        let pw = r.iter().find(|c| c.strategy == "put_write").unwrap();
        assert!(!pw.compliant);
        let v = pw.violations.join("\n");
        assert!(
            v.contains("fetch_chains (10:30) failed: the source refused"),
            "{v}"
        );
        assert!(
            v.contains("0DTE SPY250314P00560000 (-1) still held at the close"),
            "{v}"
        );
        assert!(
            v.contains("after daily_loss_cap halted entries at 11:00"),
            "{v}"
        );
        assert!(
            v.contains("with the session's loss at 250.65, at or over the daily cap 150.00"),
            "{v}"
        );
        assert_eq!(pw.rules_fired, vec![("daily_loss_cap".to_string(), 1)]);
        // The daily strategy holds no 0DTE rule, but the failed job is the session's.
        let cp = r.iter().find(|c| c.strategy == "call_premium").unwrap();
        assert_eq!(cp.violations.len(), 1, "{:?}", cp.violations);
        // The pause halts for 30 minutes only.
        let (_d2, s2) = store();
        decision(
            &s2.conn,
            "put_write",
            at(10, 0),
            "refused",
            PAUSE_RULE,
            "put_write:2025-03-14T1000:0",
        );
        decision(
            &s2.conn,
            "put_write",
            at(10, 25),
            "approved",
            "all rules passed",
            "put_write:2025-03-14T1025:0",
        );
        decision(
            &s2.conn,
            "put_write",
            at(10, 30),
            "approved",
            "all rules passed",
            "put_write:2025-03-14T1030:0",
        );
        let r = review(
            &s2.conn,
            d(),
            &[rules("put_write", true)],
            &Default::default(),
        )
        .unwrap();
        assert_eq!(r[0].violations.len(), 1, "{:?}", r[0].violations);
        assert!(r[0].violations[0].contains("at 10:25 after loss_pause"));
        // And an entry on a blackout day.
        let r = review(
            &s2.conn,
            d(),
            &[rules("put_write", true)],
            &[d()].into_iter().collect(),
        )
        .unwrap();
        assert_eq!(r[0].violations.len(), 3, "{:?}", r[0].violations);
    }

    #[test]
    fn no_line_of_the_checklist_passes_on_an_empty_store_and_drills_count_once_recorded() {
        let (_d, s) = store();
        let bots = vec!["put_write".to_string()];
        let lines = checklist(&s.conn, None, &bots).unwrap();
        assert_eq!(lines.len(), 8);
        assert!(
            lines.iter().all(|l| l.verdict != Verdict::Pass),
            "{lines:?}"
        );
        assert!(lines.iter().all(|l| !l.figure.is_empty()));
        record_drill(&s.conn, "kill9_recovery", true, "killed twice, recovered").unwrap();
        record_drill(
            &s.conn,
            "circuit_breakers",
            false,
            "the kill switch let an entry through",
        )
        .unwrap();
        let lines = checklist(&s.conn, None, &bots).unwrap();
        let v = |item: &str| {
            lines
                .iter()
                .find(|l| l.item.contains(item))
                .unwrap()
                .verdict
        };
        assert_eq!(v("kill -9"), Verdict::Pass);
        assert_eq!(v("circuit breakers"), Verdict::Fail);
        assert_eq!(v("reconnect"), Verdict::NotTested);
    }
}
