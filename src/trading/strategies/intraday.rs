//! What the four intraday strategies (`put_write`, `buy_write`, `iron_condor`,
//! `zscore_reversion`) share: the session's close and the 0DTE auto-close (one rule for
//! all: 30 minutes before the close, 15:30 New York on a regular day, 12:30 on a 13:00
//! early close), a trade's P&L since entry, when it was opened, the expected move and
//! the rolling Z-score.

use super::{ChainRow, DayState, ExitSignal, OpenTrade, Outcome};
use crate::model::identifiers::ClientOrderId;
use crate::model::Price;
use crate::trading::risk::Proposal;
use chrono::{Duration, NaiveDateTime};

/// Minutes before the session's close at which every 0DTE position is closed.
pub const AUTO_CLOSE_MINUTES_BEFORE_CLOSE: i64 = 30;

/// The session's close: the day's `session.close`, else the exchange calendar's.
/// A strategy's proposals over its tickers: `one(ticker, sequence)` proposes or says
/// why it passed.
pub fn propose_each(
    tickers: &[String],
    mut one: impl FnMut(&str, usize) -> Result<Proposal, String>,
) -> Outcome {
    let mut out = Outcome::default();
    for (seq, t) in tickers.iter().enumerate() {
        match one(t, seq) {
            Ok(p) => out.proposals.push(p),
            Err(why) => out.skips.push((t.clone(), why)),
        }
    }
    out
}

pub fn session_close(day: &DayState) -> Option<NaiveDateTime> {
    day.session.close.or_else(|| {
        crate::calendar::session(day.as_of)
            .ok()
            .flatten()
            .map(|s| s.close_at().naive_local())
    })
}

/// The session's open: the day's `session.open`, else the exchange calendar's.
pub fn session_open(day: &DayState) -> Option<NaiveDateTime> {
    day.session.open.or_else(|| {
        crate::calendar::session(day.as_of)
            .ok()
            .flatten()
            .map(|s| s.open_at().naive_local())
    })
}

/// The auto-close time: `close − 30m`.
pub fn auto_close_at(day: &DayState) -> Option<NaiveDateTime> {
    session_close(day).map(|c| c - Duration::minutes(AUTO_CLOSE_MINUTES_BEFORE_CLOSE))
}

/// `Err(reason)` when the snapshot is at or after the auto-close: no new entry then
/// (it would be closed at once).
pub fn entries_open(day: &DayState) -> Result<(), String> {
    match auto_close_at(day) {
        Some(at) if day.quote_time >= at => Err(format!(
            "{} is at or after the auto-close {} ({} minutes before the close): no new entries",
            day.quote_time.format("%H:%M"),
            at.format("%H:%M"),
            AUTO_CLOSE_MINUTES_BEFORE_CLOSE
        )),
        _ => Ok(()),
    }
}

/// What every premium bot checks before it looks at a ticker: room under its
/// `max_open_per_ticker`, entries still open (before the auto-close), and a quote and a
/// chain at this snapshot. `Ok` with them, or the pass's reason.
pub fn ready<'a>(
    day: &'a DayState,
    strategy: &str,
    ticker: &str,
    max_open: u32,
) -> Result<(&'a super::UnderlyingDay, &'a [ChainRow]), String> {
    let open = day.open_count(strategy, ticker);
    if open >= max_open {
        return Err(format!("{open} open (at most {max_open})"));
    }
    entries_open(day)?;
    match (day.underlyings.get(ticker), day.chains.get(ticker)) {
        (Some(u), Some(chain)) => Ok((u, chain)),
        _ => Err("no quote or chain at this snapshot".into()),
    }
}

/// The auto-close exit of one trade, when the snapshot is at or after the auto-close.
pub fn auto_close(day: &DayState, t: &OpenTrade) -> Option<ExitSignal> {
    let at = auto_close_at(day)?;
    (day.quote_time >= at).then(|| ExitSignal {
        order_ref: t.order_ref.clone(),
        rule: "auto_close",
        reason: format!(
            "{} is at or after the auto-close {} (the close {} − {} minutes)",
            day.quote_time.format("%H:%M"),
            at.format("%H:%M"),
            (at + Duration::minutes(AUTO_CLOSE_MINUTES_BEFORE_CLOSE)).format("%H:%M"),
            AUTO_CLOSE_MINUTES_BEFORE_CLOSE
        ),
    })
}

/// The value of a trade's legs at their marks: Σ quantity × mark × multiplier (what
/// closing it at the marks would move, negated).
pub fn marked_value(t: &OpenTrade) -> Price {
    t.legs
        .iter()
        .map(|l| l.mark.times(l.quantity * l.instrument.multiplier()))
        .sum()
}

/// A trade's P&L since entry at the snapshot's marks (before commissions), when its
/// entry is known.
pub fn trade_pnl(t: &OpenTrade) -> Option<Price> {
    Some(t.entry_cash? + marked_value(t))
}

/// When a trade was opened: the slot time in its order reference.
pub fn opened_at(t: &OpenTrade) -> Option<NaiveDateTime> {
    ClientOrderId::parse(&t.order_ref).ok().map(|id| id.at)
}

/// The open trades of one strategy.
pub fn mine<'a>(day: &'a DayState, strategy: &'a str) -> impl Iterator<Item = &'a OpenTrade> {
    day.open_trades
        .iter()
        .filter(move |t| t.strategy == strategy)
}

/// The move one standard deviation of `iv` implies over `t_years`: spot × IV × √t.
pub fn expected_move(spot: f64, iv: f64, t_years: f64) -> f64 {
    spot * iv * t_years.max(0.0).sqrt()
}

/// One session's expected move: spot × IV × √(1/252).
pub fn daily_expected_move(spot: f64, iv: f64) -> f64 {
    expected_move(spot, iv, 1.0 / 252.0)
}

/// The implied vol at the money of one expiry: the IV of the strike nearest spot
/// (calls and puts averaged when both are there).
pub fn atm_iv<'a>(rows: impl Iterator<Item = &'a ChainRow>, spot: f64) -> Option<f64> {
    let rows: Vec<&ChainRow> = rows.filter(|r| r.iv.is_some()).collect();
    let k = rows
        .iter()
        .map(|r| r.strike)
        .min_by(|a, b| (a - spot).abs().total_cmp(&(b - spot).abs()))?;
    let ivs: Vec<f64> = rows
        .iter()
        .filter(|r| r.strike == k)
        .filter_map(|r| r.iv)
        .collect();
    Some(ivs.iter().sum::<f64>() / ivs.len() as f64)
}

/// Z = (last − mean) / std over the last `window` values (population standard
/// deviation); `None` with fewer values or no dispersion.
pub fn zscore(values: &[f64], window: usize) -> Option<f64> {
    if window < 2 || values.len() < window {
        return None;
    }
    let w = &values[values.len() - window..];
    let n = window as f64;
    let mean = w.iter().sum::<f64>() / n;
    let var = w.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    (std > 1e-12).then(|| (w[window - 1] - mean) / std)
}

/// The exits of a strategy's credit trades (spreads, condors): the auto-close, then
/// the profit take once the P&L reaches `profit_take_pct` of the credit, then the stop
/// once the loss reaches `stop_loss_pct` of it (0 = no stop: the wings bound the loss).
pub fn credit_exits(
    day: &DayState,
    strategy: &str,
    profit_take_pct: f64,
    stop_loss_pct: f64,
) -> Vec<ExitSignal> {
    let mut out = Vec::new();
    for t in mine(day, strategy) {
        if let Some(x) = auto_close(day, t) {
            out.push(x);
            continue;
        }
        let (Some(credit), Some(pnl)) = (t.entry_cash, trade_pnl(t)) else {
            continue;
        };
        if credit <= Price::ZERO {
            continue;
        }
        let target = credit.to_f64() * profit_take_pct / 100.0;
        if pnl.to_f64() >= target {
            out.push(ExitSignal {
                order_ref: t.order_ref.clone(),
                rule: "profit_take",
                reason: format!(
                    "P&L {pnl} reached {profit_take_pct}% of the credit {credit} ({target:.2})"
                ),
            });
            continue;
        }
        let stop = credit.to_f64() * stop_loss_pct / 100.0;
        if stop_loss_pct > 0.0 && -pnl.to_f64() >= stop {
            out.push(ExitSignal {
                order_ref: t.order_ref.clone(),
                rule: "stop",
                reason: format!(
                    "loss {} reached {stop_loss_pct}% of the credit {credit} ({stop:.2})",
                    -pnl
                ),
            });
        }
    }
    out
}

/// Check a 0–1 DTE style window: 0 ≤ min ≤ max ≤ 7 days.
pub fn validate_short_dte(min: i64, max: i64) -> Result<(), String> {
    if !(0..=7).contains(&min) || !(0..=7).contains(&max) || min > max {
        return Err(format!(
            "min_dte = {min}, max_dte = {max}: expected 0 ≤ min ≤ max ≤ 7 days"
        ));
    }
    Ok(())
}

/// Check a percent in (0, 100].
pub fn validate_pct(k: &str, v: f64) -> Result<(), String> {
    if !(v.is_finite() && v > 0.0 && v <= 100.0) {
        return Err(format!(
            "{k} = {v}: expected a percent above 0 and at most 100 (50 = 50%)"
        ));
    }
    if v < 1.0 {
        return Err(format!(
            "{k} = {v}: looks like a fraction; this key is in percent (50 = 50%)"
        ));
    }
    Ok(())
}

/// Check a positive, finite number.
pub fn validate_positive(k: &str, v: f64) -> Result<(), String> {
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("{k} = {v}: expected a positive, finite number"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn the_auto_close_is_thirty_minutes_before_the_close_early_closes_included() {
        let d = NaiveDate::from_ymd_opt(2025, 3, 14).unwrap();
        let mut day = DayState::new(d, d.and_hms_opt(15, 29, 0).unwrap());
        // Without session hours, the calendar's: 16:00 → 15:30.
        assert_eq!(auto_close_at(&day), d.and_hms_opt(15, 30, 0));
        assert!(entries_open(&day).is_ok());
        day.quote_time = d.and_hms_opt(15, 30, 0).unwrap();
        assert!(entries_open(&day).is_err());
        // A 13:00 early close (the day after Thanksgiving 2025): 12:30.
        let e = NaiveDate::from_ymd_opt(2025, 11, 28).unwrap();
        let mut day = DayState::new(e, e.and_hms_opt(12, 29, 0).unwrap());
        assert_eq!(auto_close_at(&day), e.and_hms_opt(12, 30, 0));
        day.session.close = e.and_hms_opt(13, 0, 0);
        let t = crate::testkit::open_trade("put_write", "put_write:2025-11-28T1030:0", vec![]);
        assert!(auto_close(&day, &t).is_none());
        day.quote_time = e.and_hms_opt(12, 30, 0).unwrap();
        let x = auto_close(&day, &t).unwrap();
        assert_eq!(x.rule, "auto_close");
        assert!(
            x.reason.contains("auto-close 12:30 (the close 13:00"),
            "{}",
            x.reason
        );
    }

    #[test]
    fn zscore_of_a_known_series() {
        // 1..=4 then 7: mean 3.4, population std √(((2.4²+1.4²+0.4²+0.6²+3.6²)/5) = √4.24.
        let z = zscore(&[1.0, 2.0, 3.0, 4.0, 7.0], 5).unwrap();
        assert!((z - 3.6 / 4.24f64.sqrt()).abs() < 1e-12);
        assert_eq!(zscore(&[1.0, 2.0], 3), None);
        assert_eq!(zscore(&[2.0, 2.0, 2.0], 3), None);
        assert_eq!(
            opened_at(&crate::testkit::open_trade(
                "x",
                "zscore_reversion:2025-03-14T1105:0",
                vec![]
            )),
            NaiveDate::from_ymd_opt(2025, 3, 14)
                .unwrap()
                .and_hms_opt(11, 5, 0)
        );
    }
}
