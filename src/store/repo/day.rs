//! The day's state for the strategies and the risk state for the gate, read from what
//! the earlier jobs stored for one snapshot.

use super::positions::open_trades;
use super::{instrument, RepoError};
use crate::model::{OptionRight, Price};
use crate::trading::margin::{self, Policy};
use crate::trading::risk::RiskState;
use crate::trading::strategies::{ChainRow, DayState, UnderlyingDay};
use chrono::{NaiveDate, NaiveDateTime};
use duckdb::arrow::array::{Array, AsArray, Float64Array, Int64Array, StringArray};
use duckdb::arrow::compute::cast;
use duckdb::arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{params, Connection};
use std::collections::{BTreeSet, HashMap};

fn arrow_err(e: duckdb::arrow::error::ArrowError) -> duckdb::Error {
    duckdb::Error::ToSqlConversionFailure(Box::new(e))
}

/// The day's state at one snapshot: underlyings, chains with analytics, open trades
/// (marked at the snapshot's mids), shares held, the correlation Z-scores, and the
/// session context ([`super::session::load_session`]).
pub fn load(
    conn: &Connection,
    as_of: NaiveDate,
    quote_time: NaiveDateTime,
    roll_days_before: i64,
) -> Result<DayState, RepoError> {
    let mut day = DayState::new(as_of, quote_time);
    let mut s = conn.prepare(
        "SELECT v.symbol, v.spot, v.hv_30, u.rate, u.div_yield FROM vol_metrics v
         JOIN underlying_quotes u ON u.as_of = v.as_of AND u.quote_time = v.quote_time AND u.symbol = v.symbol
         WHERE v.as_of = ? AND v.quote_time = ?",
    )?;
    for r in s.query_map(params![as_of, quote_time], |r| {
        Ok((
            r.get::<_, String>(0)?,
            UnderlyingDay {
                spot: r.get(1)?,
                hv30: r.get(2)?,
                rate: r.get(3)?,
                div_yield: r.get(4)?,
            },
        ))
    })? {
        let (sym, u) = r?;
        day.underlyings.insert(sym, u);
    }
    let mut s = conn.prepare(
        "SELECT a.contract, a.underlying, a.expiry, a.strike::DOUBLE, a.put_call, q.bid::DOUBLE, q.ask::DOUBLE,
                a.iv, a.delta, q.volume, a.t_years, q.multiplier, q.style, q.settlement
         FROM option_analytics a JOIN option_quotes q USING (as_of, quote_time, contract)
         WHERE a.as_of = ? AND a.quote_time = ?",
    )?;
    // Read as Arrow batches: the day's whole chain (tens of thousands of rows) in
    // columns, without a conversion call per value.
    let batches: Vec<RecordBatch> = s.query_arrow(params![as_of, quote_time])?.collect();
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch");
    for b in &batches {
        let str_col = |i: usize| -> Result<StringArray, duckdb::Error> {
            let a = cast(b.column(i), &DataType::Utf8).map_err(arrow_err)?;
            Ok(a.as_string::<i32>().clone())
        };
        let f64_col = |i: usize| -> Result<Float64Array, duckdb::Error> {
            let a = cast(b.column(i), &DataType::Float64).map_err(arrow_err)?;
            Ok(a.as_primitive::<Float64Type>().clone())
        };
        let i64_col = |i: usize| -> Result<Int64Array, duckdb::Error> {
            let a = cast(b.column(i), &DataType::Int64).map_err(arrow_err)?;
            Ok(a.as_primitive::<Int64Type>().clone())
        };
        let expiry = cast(b.column(2), &DataType::Date32).map_err(arrow_err)?;
        let expiry = expiry.as_primitive::<Date32Type>();
        let (contract, underlying, pc) = (str_col(0)?, str_col(1)?, str_col(4)?);
        let (strike, bid, ask, iv, delta) = (
            f64_col(3)?,
            f64_col(5)?,
            f64_col(6)?,
            f64_col(7)?,
            f64_col(8)?,
        );
        let (volume, t_years, mult) = (i64_col(9)?, f64_col(10)?, i64_col(11)?);
        let (style, settlement) = (str_col(12)?, str_col(13)?);
        for i in 0..b.num_rows() {
            // Every column but iv and delta is NOT NULL in the tables.
            let contract = contract.value(i).to_string();
            let underlying = underlying.value(i).to_string();
            let bad = |source| RepoError::BadRow {
                table: "option_quotes",
                row: contract.clone(),
                source,
            };
            let right = OptionRight::from_code(pc.value(i)).map_err(bad)?;
            let inst = instrument(
                "option",
                &contract,
                &underlying,
                mult.value(i),
                Some(style.value(i)),
                Some(settlement.value(i)),
            )
            .map_err(bad)?;
            let opt = |a: &Float64Array| (!a.is_null(i)).then(|| a.value(i));
            day.chains
                .entry(underlying.clone())
                .or_default()
                .push(ChainRow {
                    contract,
                    underlying,
                    expiry: epoch + chrono::Duration::days(expiry.value(i) as i64),
                    strike: strike.value(i),
                    right,
                    bid: bid.value(i),
                    ask: ask.value(i),
                    iv: opt(&iv),
                    delta: opt(&delta),
                    volume: volume.value(i),
                    t_years: t_years.value(i),
                    instrument: inst,
                });
        }
    }
    super::futures::load_futures(conn, &mut day, roll_days_before)?;
    let futures_mids = day.session.futures.values().flatten().map(|q| {
        (
            q.contract.symbol.clone(),
            Price::from_f64((q.bid + q.ask) / 2.0),
        )
    });
    let mids: HashMap<String, Price> = day
        .chains
        .values()
        .flatten()
        .filter(|r| r.bid > 0.0 && r.ask >= r.bid)
        .map(|r| (r.contract.clone(), Price::from_f64((r.bid + r.ask) / 2.0)))
        .chain(futures_mids)
        .collect();
    day.open_trades = open_trades(conn, as_of, &|k| mids.get(k).copied())?;
    let mut s = conn.prepare(
        "SELECT index_symbol, zscore, coalesce(note, 'no Z-score') FROM correlation
         WHERE as_of = ? AND quote_time = ? AND basis = 'chains'",
    )?;
    for r in s.query_map(params![as_of, quote_time], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<f64>>(1)?,
            r.get::<_, String>(2)?,
        ))
    })? {
        let (index, z, note) = r?;
        day.correlation_z.insert(index, z.ok_or(note));
    }
    let mut s = conn.prepare(
        "SELECT underlying, sum(quantity)::BIGINT FROM positions_as_of(?::DATE) WHERE kind = 'shares' GROUP BY ALL HAVING sum(quantity) > 0",
    )?;
    for r in s.query_map(params![as_of], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })? {
        let (u, q) = r?;
        day.shares.insert(u, q);
    }
    super::session::load_session(conn, &mut day)?;
    Ok(day)
}

/// Cash as of the end of `as_of`: the sum of the ledger.
pub fn cash(conn: &Connection, as_of: NaiveDate) -> Result<Price, RepoError> {
    let c: f64 = conn.query_row(
        "SELECT coalesce(sum(amount), 0)::DOUBLE FROM cash_ledger WHERE as_of <= ?",
        params![as_of],
        |r| r.get(0),
    )?;
    Ok(Price::from_f64(c))
}

/// Margin the open trades hold, each by its structure and its strategy's policy, at
/// the day's underlying prices and marks.
pub fn held_margin(day: &DayState, policy: &dyn Fn(&str) -> Policy) -> Price {
    let spot = |u: &str| day.underlyings.get(u).map(|x| Price::from_f64(x.spot));
    let mut free_shares = day.shares.clone();
    day.open_trades
        .iter()
        .map(|t| {
            margin::requirement(&t.legs, &spot, policy(&t.strategy), &mut free_shares).requirement
        })
        .sum()
}

/// What the gate knows: buying power (cash − margin held by structure), open trades
/// per strategy and per underlying, the kill switch and blackout days, and the market
/// side (VIX's change, each underlying's move against its expected move, the last
/// session's realized P&L).
pub fn risk_state(
    conn: &Connection,
    day: &DayState,
    policy: &dyn Fn(&str) -> Policy,
    kill_file: bool,
    blackout_dates: BTreeSet<NaiveDate>,
) -> Result<RiskState, RepoError> {
    let mut state = RiskState {
        as_of: Some(day.as_of),
        kill_file,
        blackout_dates,
        buying_power: cash(conn, day.as_of)? - held_margin(day, policy),
        ..RiskState::default()
    };
    for t in &day.open_trades {
        *state
            .open_by_strategy
            .entry(t.strategy.clone())
            .or_default() += 1;
        let mut us: Vec<&str> = t.legs.iter().map(|l| l.instrument.underlying()).collect();
        us.sort_unstable();
        us.dedup();
        for u in us {
            *state.open_by_underlying.entry(u.to_string()).or_default() += 1;
        }
    }
    market_risk(conn, day, &mut state)?;
    Ok(state)
}

/// VIX's change since the last close, each underlying's move since its last close
/// against a one-day expected move (spot × 30-day ATM IV × √(1/252)), and the realized
/// P&L of positions closed on the previous session (what a morning decision can know).
fn market_risk(conn: &Connection, day: &DayState, state: &mut RiskState) -> Result<(), RepoError> {
    let prev = crate::calendar::sessions_before(day.as_of, 1);
    let Some(&prev) = prev.first() else {
        return Ok(());
    };
    let mut s = conn.prepare(
        "SELECT b.symbol, b.close::DOUBLE, v.atm_iv_30d, q.price::DOUBLE
         FROM underlying_bars b
         JOIN underlying_quotes q ON q.symbol = b.symbol AND q.as_of = ? AND q.quote_time = ?
         LEFT JOIN vol_metrics v ON v.symbol = b.symbol AND v.as_of = q.as_of AND v.quote_time = q.quote_time
         WHERE b.date = ?",
    )?;
    for r in s.query_map(params![day.as_of, day.quote_time, prev], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, f64>(1)?,
            r.get::<_, Option<f64>>(2)?,
            r.get::<_, f64>(3)?,
        ))
    })? {
        let (sym, prev_close, iv, now) = r?;
        if sym == "VIX" {
            state.vix_change = Some(now - prev_close);
        } else if let Some(iv) = iv.filter(|_| day.underlyings.contains_key(&sym)) {
            state.moves.insert(
                sym,
                (
                    (now - prev_close).abs(),
                    prev_close * iv * (1.0f64 / 252.0).sqrt(),
                ),
            );
        }
    }
    let realized: f64 = conn.query_row(
        "WITH touched AS (SELECT DISTINCT strategy, instrument FROM fills WHERE as_of = ?),
              closed AS (SELECT * FROM touched t WHERE NOT EXISTS
                           (SELECT 1 FROM positions_as_of(?::DATE) p WHERE p.strategy = t.strategy AND p.instrument = t.instrument))
         SELECT coalesce(sum(-f.quantity * f.multiplier * f.price - f.commission), 0)::DOUBLE
         FROM fills f JOIN closed c USING (strategy, instrument) WHERE f.as_of <= ?",
        params![prev, prev, prev],
        |r| r.get(0),
    )?;
    state.realized_pnl_today = Price::from_f64(realized);
    Ok(())
}

/// What a strategy's own risk profile needs, for the `strategies` named (those with a
/// profile): the snapshot's time; per strategy today's P&L, realized (trades closed
/// today, net of commissions) plus open (open trades at the snapshot's marks against
/// their entry), and today's closed trades with their closing times (the loss pause);
/// per underlying today's range against its one-day expected move (prev close × 30-day
/// ATM IV × √(1/252)); VIX's change since its last close; the names reporting today.
/// Fills after the snapshot (a later slot's, on a re-run) are not counted.
pub fn intraday_risk(
    conn: &Connection,
    day: &DayState,
    strategies: &[&str],
    state: &mut RiskState,
) -> Result<(), RepoError> {
    use crate::trading::strategies::intraday;
    state.now = Some(day.quote_time);
    let fills: Vec<crate::trading::Fill> = super::orders::fills_up_to(conn, day.as_of)?
        .into_iter()
        .filter(|f| strategies.contains(&f.book.as_str()) && f.filled_at <= day.quote_time)
        .collect();
    for t in crate::trading::trades::closed_trades(&fills) {
        if t.closed != day.as_of {
            continue;
        }
        *state.pnl_today.entry(t.book.clone()).or_default() += t.pnl;
        state
            .closed_today
            .entry(t.book)
            .or_default()
            .push((t.closed_at, t.pnl));
    }
    for v in state.closed_today.values_mut() {
        v.sort_by_key(|(at, _)| *at);
    }
    for t in &day.open_trades {
        if let Some(pnl) = strategies
            .contains(&t.strategy.as_str())
            .then(|| intraday::trade_pnl(t))
            .flatten()
        {
            *state.pnl_today.entry(t.strategy.clone()).or_default() += pnl;
        }
    }
    for (sym, bars) in &day.session.bars {
        let h = day.session.history.get(sym).copied().unwrap_or_default();
        let (Some(prev), Some(iv)) = (h.prev_close, h.atm_iv30) else {
            continue;
        };
        let (Some(high), Some(low)) = (
            bars.iter().map(|b| b.high).reduce(f64::max),
            bars.iter().map(|b| b.low).reduce(f64::min),
        ) else {
            continue;
        };
        state.ranges.insert(
            sym.clone(),
            (high - low, intraday::daily_expected_move(prev, iv)),
        );
    }
    state.vix_intraday_change = day.session.vix.map(|(now, prev)| now - prev);
    state.earnings_today = day
        .session
        .earnings
        .iter()
        .filter(|(_, dates)| dates.contains(&day.as_of))
        .map(|(s, _)| s.clone())
        .collect();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::instrument::Instrument;
    use crate::trading::{CashKind, Fill};

    #[test]
    fn intraday_risk_counts_today_s_realized_and_open_pnl_and_the_closing_times() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open_write(
            &dir.path().join("t.duckdb"),
            std::time::Duration::from_secs(5),
            "test",
        )
        .unwrap();
        let conn = &store.conn;
        let d = crate::testkit::as_of();
        let at = |h: u32, m: u32| d.and_hms_opt(h, m, 0).unwrap();
        let put = |k: f64| crate::testkit::option_on("SPY", d, crate::model::OptionRight::Put, k);
        let mut n = 0;
        let mut fill = |book: &str, r: &str, leg: usize, i: &Instrument, q: i64, p: f64, t| {
            n += 1;
            let f = Fill {
                order_reference: r.into(),
                leg,
                as_of: d,
                filled_at: t,
                book: book.into(),
                instrument: i.clone(),
                quantity: q,
                price: Price::from_f64(p),
                commission: Price::ZERO,
                cash_kind: CashKind::Premium,
                exec_id: format!("x{n}"),
                broker_order_id: None,
            };
            super::super::orders::write_fill(conn, &f, 1).unwrap();
        };
        // Trade A: 95/94 put spread sold at 0.40/0.10 (credit 30) at 10:30, bought back
        // at 0.60/0.05 (55) at 10:45: −25.
        let a = "put_write:2025-03-14T1030:0";
        fill("put_write", a, 0, &put(95.0), -1, 0.40, at(10, 30));
        fill("put_write", a, 1, &put(94.0), 1, 0.10, at(10, 30));
        let xa = "exit:put_write:2025-03-14T1045:0";
        fill("put_write", xa, 0, &put(95.0), 1, 0.60, at(10, 45));
        fill("put_write", xa, 1, &put(94.0), -1, 0.05, at(10, 45));
        // Trade B, open: the 96/95 spread at 0.50/0.20 (credit 30) at 11:00.
        let b = "put_write:2025-03-14T1100:0";
        fill("put_write", b, 0, &put(96.0), -1, 0.50, at(11, 0));
        fill("put_write", b, 1, &put(95.0), 1, 0.20, at(11, 0));
        // (Futures positions join the trades the same way once the store reads a
        // future's row: the futures branch's `repo::instrument`.)
        // A later slot's fill (12:00) is not seen at 11:30.
        let c = "put_write:2025-03-14T1200:0";
        fill("put_write", c, 0, &put(90.0), -1, 9.0, at(12, 0));

        // A buy-write: 200 SPY bought and one call sold in one order; and 100 SPY an
        // assignment delivered to the wheel, which are no trade's.
        let spy = Instrument::equity("SPY").unwrap();
        let call = crate::testkit::option_on("SPY", d, crate::model::OptionRight::Call, 101.0);
        let bw = "buy_write:2025-03-14T1100:0";
        fill("buy_write", bw, 0, &spy, 200, 100.0, at(11, 0));
        fill("buy_write", bw, 1, &call, -1, 0.40, at(11, 0));
        fill(
            "cash_secured_put",
            "assign:cash_secured_put:2025-03-14T0935:0",
            0,
            &spy,
            100,
            95.0,
            at(9, 35),
        );

        // Marks at 11:30: 96 put 0.70, 95 put 0.25 → B is worth −45: −15 since entry.
        let marks: HashMap<String, Price> = [(put(96.0).key(), 0.70), (put(95.0).key(), 0.25)]
            .into_iter()
            .map(|(k, v)| (k, Price::from_f64(v)))
            .collect();
        let mut day = DayState::new(d, at(11, 30));
        day.open_trades = open_trades(conn, d, &|k| marks.get(k).copied()).unwrap();
        day.open_trades.retain(|t| t.order_ref != c);
        let b_trade = day.open_trades.iter().find(|t| t.order_ref == b).unwrap();
        assert_eq!(b_trade.entry_cash, Some(Price::from_f64(30.0)));
        let bw_trade = day.open_trades.iter().find(|t| t.order_ref == bw).unwrap();
        assert_eq!(bw_trade.legs.len(), 2, "the shares ride with the call");
        assert_eq!(bw_trade.entry_cash, Some(Price::from_f64(40.0 - 20_000.0)));
        assert!(bw_trade.entry_prices.contains(&Some(Price::from_f64(0.40))));
        assert!(day
            .open_trades
            .iter()
            .all(|t| t.strategy != "cash_secured_put"));
        let mut state = RiskState::default();
        intraday_risk(conn, &day, &["put_write", "zscore_reversion"], &mut state).unwrap();
        assert_eq!(
            state.closed_today["put_write"],
            vec![(at(10, 45), Price::from_f64(-25.0))]
        );
        assert_eq!(state.pnl_today["put_write"], Price::from_f64(-40.0));
        assert_eq!(state.now, Some(at(11, 30)));
    }
}
