//! The day's session context (`DayState.session`) from the store: the session's hours,
//! today's minute bars up to the snapshot, each underlying's recent history, VIX, and
//! the earnings dates known.

use super::RepoError;
use crate::pricing::hv::{close_to_close, Ohlc};
use crate::trading::strategies::{DayState, History, MinuteBar};
use chrono::Duration;
use duckdb::{params, Connection};
use std::collections::HashMap;

/// Sessions of closes behind `History::hv10` (10 returns).
const HV_SESSIONS: usize = 10;
/// Sessions behind `History::ret_5d`.
const RET_SESSIONS: usize = 5;
/// Earnings dates kept in the context: from this many days before the session on.
const EARNINGS_BEHIND_DAYS: i64 = 30;

/// Fill `day.session` (all but `daily_run`, which the runner sets, and `futures`):
/// * `open`/`close` from the NYSE calendar (early closes included);
/// * `bars`: today's 1-minute bars from `intraday_bars` that closed by the snapshot;
/// * `history` for every symbol quoted at the snapshot: the previous session's close,
///   10-session close-to-close vol and the 5-session return from `underlying_bars`
///   (5 sessions ago's close to the snapshot's price), the 30-day ATM IV and its rank
///   (0–100) from `vol_metrics` when `compute_vol` stored them;
/// * `vix`: (the snapshot's VIX, the previous close) when both are stored;
/// * `earnings`: the dates in `earnings_dates` from a month before the session on.
pub fn load_session(conn: &Connection, day: &mut DayState) -> Result<(), RepoError> {
    let (as_of, qt) = (day.as_of, day.quote_time);
    if let Ok(Some(s)) = crate::calendar::session(as_of) {
        day.session.open = Some(as_of.and_time(s.open));
        day.session.close = Some(as_of.and_time(s.close));
    }

    let mut s = conn.prepare(
        "SELECT symbol, ts, open, high, low, close, volume FROM intraday_bars
         WHERE ts >= ?::DATE AND ts < ?::DATE + INTERVAL 1 DAY AND ts + INTERVAL 1 MINUTE <= ?
         ORDER BY symbol, ts",
    )?;
    for r in s.query_map(params![as_of, as_of, qt], |r| {
        Ok((
            r.get::<_, String>(0)?,
            MinuteBar {
                time: r.get(1)?,
                open: r.get(2)?,
                high: r.get(3)?,
                low: r.get(4)?,
                close: r.get(5)?,
                volume: r.get(6)?,
            },
        ))
    })? {
        let (sym, bar) = r?;
        day.session.bars.entry(sym).or_default().push(bar);
    }

    // The snapshot's prices, then the closes of the sessions before it.
    let mut now: HashMap<String, f64> = HashMap::new();
    let mut s = conn.prepare(
        "SELECT symbol, price::DOUBLE FROM underlying_quotes WHERE as_of = ? AND quote_time = ?",
    )?;
    for r in s.query_map(params![as_of, qt], |r| Ok((r.get(0)?, r.get(1)?)))? {
        let (sym, p) = r?;
        now.insert(sym, p);
    }
    let window = crate::calendar::sessions_before(as_of, HV_SESSIONS + 1);
    let mut closes: HashMap<String, Vec<(chrono::NaiveDate, Ohlc)>> = HashMap::new();
    if let (Some(first), Some(last)) = (window.first(), window.last()) {
        let mut s = conn.prepare(
            "SELECT symbol, date, open::DOUBLE, high::DOUBLE, low::DOUBLE, close::DOUBLE,
                    dividend::DOUBLE, split_ratio
             FROM underlying_bars WHERE date BETWEEN ? AND ? ORDER BY symbol, date",
        )?;
        for r in s.query_map(params![first, last], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, chrono::NaiveDate>(1)?,
                Ohlc {
                    open: r.get(2)?,
                    high: r.get(3)?,
                    low: r.get(4)?,
                    close: r.get(5)?,
                    dividend: r.get(6)?,
                    split_ratio: r.get(7)?,
                },
            ))
        })? {
            let (sym, d, bar) = r?;
            if now.contains_key(&sym) {
                closes.entry(sym).or_default().push((d, bar));
            }
        }
    }
    let prev = window.last().copied();
    let five_back = window
        .len()
        .checked_sub(RET_SESSIONS)
        .and_then(|i| window.get(i))
        .copied();
    for (sym, price) in &now {
        let bars = closes.get(sym).map(Vec::as_slice).unwrap_or(&[]);
        let close_on = |d: Option<chrono::NaiveDate>| {
            d.and_then(|d| bars.iter().find(|(b, _)| *b == d).map(|(_, o)| o.close))
        };
        // hv10 only over an unbroken run of the window's sessions.
        let full: Vec<Ohlc> = if bars.len() == window.len() {
            bars.iter().map(|(_, o)| *o).collect()
        } else {
            Vec::new()
        };
        day.session.history.insert(
            sym.clone(),
            History {
                prev_close: close_on(prev),
                hv10: close_to_close(&full, HV_SESSIONS),
                atm_iv30: None,
                iv_rank: None,
                ret_5d: close_on(five_back)
                    .filter(|c| *c > 0.0)
                    .map(|c| price / c - 1.0),
            },
        );
    }
    let mut s = conn.prepare(
        "SELECT symbol, atm_iv_30d, iv_rank_252 FROM vol_metrics WHERE as_of = ? AND quote_time = ?",
    )?;
    for r in s.query_map(params![as_of, qt], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<f64>>(1)?,
            r.get::<_, Option<f64>>(2)?,
        ))
    })? {
        let (sym, iv, rank) = r?;
        let h = day.session.history.entry(sym).or_default();
        h.atm_iv30 = iv;
        h.iv_rank = rank.map(|x| 100.0 * x);
    }
    day.session.vix = match (now.get("VIX"), day.session.history.get("VIX")) {
        (
            Some(v),
            Some(History {
                prev_close: Some(p),
                ..
            }),
        ) => Some((*v, *p)),
        _ => None,
    };

    let mut s = conn.prepare(
        "SELECT DISTINCT symbol, date FROM earnings_dates WHERE date >= ? ORDER BY symbol, date",
    )?;
    for r in s.query_map(params![as_of - Duration::days(EARNINGS_BEHIND_DAYS)], |r| {
        Ok((r.get::<_, String>(0)?, r.get(1)?))
    })? {
        let (sym, d) = r?;
        day.session.earnings.entry(sym).or_default().push(d);
    }
    futures_bars(day, &now);
    Ok(())
}

/// A futures root's minute bars, where the store has none of its own: its index's bars
/// (SPX for MES) times the front contract's basis at the snapshot (its mid over the
/// index's price), on the tick. The sim prices futures off the index exactly so; the
/// Z-score strategy reads these.
fn futures_bars(day: &mut DayState, now: &HashMap<String, f64>) {
    let mut derived = Vec::new();
    for (root, quotes) in &day.session.futures {
        if day.session.bars.contains_key(root) {
            continue;
        }
        let (Some(p), Some(front)) = (crate::trading::futures::product(root), quotes.first())
        else {
            continue;
        };
        let (Some(bars), Some(spot)) = (day.session.bars.get(p.index), now.get(p.index)) else {
            continue;
        };
        let mid = (front.bid + front.ask) / 2.0;
        if !(mid > 0.0 && *spot > 0.0) {
            continue;
        }
        let basis = mid / spot;
        let tick = p.tick.to_f64();
        let on_tick = |x: f64| (x * basis / tick).round() * tick;
        derived.push((
            root.clone(),
            bars.iter()
                .map(|b| MinuteBar {
                    time: b.time,
                    open: on_tick(b.open),
                    high: on_tick(b.high),
                    low: on_tick(b.low),
                    close: on_tick(b.close),
                    volume: 0,
                })
                .collect::<Vec<_>>(),
        ));
    }
    day.session.bars.extend(derived);
}
