//! Open positions and open trades, from the `positions_as_of` macro (positions are
//! derived from fills, never stored).

use super::{read_instrument, RepoError, INSTRUMENT_COLS};
use crate::model::instrument::Instrument;
use crate::model::Price;
use crate::trading::margin::MarginLeg;
use crate::trading::strategies::OpenTrade;
use chrono::NaiveDate;
use duckdb::{params, Connection};
use std::collections::HashMap;

/// One open position: a strategy's net quantity of one instrument.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    pub strategy: String,
    pub instrument: Instrument,
    pub quantity: i64,
    /// Average price of the fills that built it, per unit.
    pub avg_price: f64,
    pub opened: NaiveDate,
}

/// Open positions as of the end of `as_of` (every fill up to that day).
pub fn open_positions(conn: &Connection, as_of: NaiveDate) -> Result<Vec<Position>, RepoError> {
    let mut s = conn.prepare(&format!(
        "SELECT strategy, quantity, coalesce(avg_price, 0)::DOUBLE, opened, {INSTRUMENT_COLS}
         FROM positions_as_of(?::DATE) ORDER BY strategy, kind, instrument"
    ))?;
    let rows = s.query_map(params![as_of], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, f64>(2)?,
            r.get::<_, NaiveDate>(3)?,
            read_instrument("positions_as_of", r, 4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (strategy, quantity, avg_price, opened, instrument) = row?;
        out.push(Position {
            strategy,
            instrument: instrument?,
            quantity,
            avg_price,
            opened,
        });
    }
    Ok(out)
}

/// Long shares held per (strategy, underlying) as of `as_of`.
pub fn shares_held(
    conn: &Connection,
    as_of: NaiveDate,
) -> Result<Vec<(String, String, i64)>, RepoError> {
    let mut s = conn.prepare(
        "SELECT strategy, underlying, quantity FROM positions_as_of(?::DATE)
         WHERE kind = 'shares' ORDER BY strategy, underlying",
    )?;
    let rows = s.query_map(params![as_of], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// (strategy, instrument, order_ref, as_of, quantity) of one order's fills.
/// (strategy, instrument, order_ref, session, quantity, average price).
type FillSum = (String, String, String, NaiveDate, i64, Option<f64>);

/// Open option and futures positions grouped into the trades that opened them: each
/// open (strategy, instrument) quantity is attributed to the fills that built it,
/// latest first, so a multi-leg order is one trade and two trades in one contract stay
/// two. Shares join a trade only when the order that bought them also opened option or
/// futures legs still held (a buy-write's shares); shares an assignment delivered are
/// no trade's (`DayState::shares`).
/// `mark` gives a contract's mark per unit (today's mid); the position's average price
/// stands in without one.
pub fn open_trades(
    conn: &Connection,
    as_of: NaiveDate,
    mark: &dyn Fn(&str) -> Option<Price>,
) -> Result<Vec<OpenTrade>, RepoError> {
    let (mut positions, shares): (Vec<Position>, Vec<Position>) = open_positions(conn, as_of)?
        .into_iter()
        .partition(|p| matches!(p.instrument, Instrument::Option(_) | Instrument::Future(_)));
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    // Shares last: they only join trades the other legs made.
    let first_share = positions.len();
    positions.extend(shares);
    // Every fill of those positions, oldest first.
    let mut s = conn.prepare(
        "SELECT f.strategy, f.instrument, f.order_ref, f.as_of, sum(f.quantity)::BIGINT,
                (sum(f.quantity * f.price) / nullif(sum(f.quantity), 0))::DOUBLE
         FROM fills f
         JOIN (SELECT strategy, instrument FROM positions_as_of(?::DATE)) p
           USING (strategy, instrument)
         WHERE f.as_of <= ?
         GROUP BY f.strategy, f.instrument, f.order_ref, f.as_of
         ORDER BY f.as_of, f.order_ref",
    )?;
    let fills: Vec<FillSum> = s
        .query_map(params![as_of, as_of], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut by_key: HashMap<(&str, &str), Vec<&FillSum>> = HashMap::new();
    for f in &fills {
        by_key.entry((&f.0, &f.1)).or_default().push(f);
    }
    // order_ref → trade
    let mut trades: Vec<OpenTrade> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for (n, p) in positions.iter().enumerate() {
        let is_shares = n >= first_share;
        let key = p.instrument.key();
        let mut left = p.quantity;
        let history = by_key
            .get(&(p.strategy.as_str(), key.as_str()))
            .cloned()
            .unwrap_or_default();
        for f in history.iter().rev() {
            if left == 0 {
                break;
            }
            // Only fills on the position's side built it.
            if f.4.signum() != left.signum() {
                continue;
            }
            let take = if left > 0 {
                f.4.min(left)
            } else {
                f.4.max(left)
            };
            left -= take;
            if is_shares && !index.contains_key(&(p.strategy.clone(), f.2.clone())) {
                continue;
            }
            let i = *index
                .entry((p.strategy.clone(), f.2.clone()))
                .or_insert_with(|| {
                    trades.push(OpenTrade {
                        order_ref: f.2.clone(),
                        strategy: p.strategy.clone(),
                        opened: f.3,
                        legs: Vec::new(),
                        entry_cash: Some(Price::ZERO),
                        entry_prices: Vec::new(),
                    });
                    trades.len() - 1
                });
            let t = &mut trades[i];
            t.opened = t.opened.min(f.3);
            let mult = p.instrument.multiplier();
            t.entry_cash = match (t.entry_cash, f.5) {
                (Some(c), Some(avg)) => Some(c + Price::from_f64(avg).times(-take * mult)),
                _ => None,
            };
            t.entry_prices.push(f.5.map(Price::from_f64));
            t.legs.push(MarginLeg {
                instrument: p.instrument.clone(),
                quantity: take,
                mark: mark(&key).unwrap_or_else(|| Price::from_f64(p.avg_price.abs())),
            });
        }
        if left != 0 && !is_shares {
            // Built by fills not found on its side (should not happen): its own trade.
            trades.push(OpenTrade {
                order_ref: format!("position:{}:{}", p.strategy, key.trim()),
                strategy: p.strategy.clone(),
                opened: p.opened,
                legs: vec![MarginLeg {
                    instrument: p.instrument.clone(),
                    quantity: left,
                    mark: mark(&key).unwrap_or_else(|| Price::from_f64(p.avg_price.abs())),
                }],
                entry_cash: None,
                entry_prices: vec![None],
            });
        }
    }
    trades.sort_by(|a, b| (a.opened, &a.order_ref).cmp(&(b.opened, &b.order_ref)));
    Ok(trades)
}
