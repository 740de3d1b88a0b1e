//! Futures in the store: quotes (`futures_quotes`), the day's quotes for the
//! strategies ([`load_futures`]), and variation margin (`futures_variation` and
//! `cash_ledger` kind `variation`, see sql/014_futures.sql): each fill marks the
//! position held before it at the fill's price ([`mark_fill`], called by
//! `orders::write_fill`), each settlement at the settlement price
//! ([`post_settlement`]).

use super::RepoError;
use crate::model::instrument::FuturesContract;
use crate::model::Price;
use crate::trading::futures;
use crate::trading::strategies::{DayState, FutureQuote};
use crate::trading::{Fill, Instrument};
use chrono::{NaiveDate, NaiveDateTime};
use duckdb::{params, Connection, OptionalExt};

/// One futures quote to store.
#[derive(Debug, Clone, PartialEq)]
pub struct QuoteRow {
    pub contract: FuturesContract,
    pub bid: Price,
    pub ask: Price,
    pub last: Price,
}

/// Replace the quotes of `contract`s at one snapshot.
pub fn write_quotes(
    conn: &Connection,
    as_of: NaiveDate,
    quote_time: NaiveDateTime,
    rows: &[QuoteRow],
    source: &str,
    run_id: i64,
) -> Result<u64, RepoError> {
    for q in rows {
        conn.execute(
            "DELETE FROM futures_quotes WHERE as_of = ? AND quote_time = ? AND contract = ?",
            params![as_of, quote_time, q.contract.symbol],
        )?;
        conn.execute(
            "INSERT INTO futures_quotes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params![
                as_of,
                quote_time,
                q.contract.root,
                q.contract.symbol,
                q.contract.expiry,
                q.contract.multiplier as i32,
                q.bid.to_f64(),
                q.ask.to_f64(),
                q.last.to_f64(),
                source,
                run_id
            ],
        )?;
    }
    Ok(rows.len() as u64)
}

/// A contract's (bid, ask, last) at one snapshot.
pub fn quote(
    conn: &Connection,
    contract: &str,
    as_of: NaiveDate,
    quote_time: NaiveDateTime,
) -> Result<Option<(Price, Price, Price)>, RepoError> {
    let row: Option<(i64, i64, i64)> = conn
        .query_row(
            "SELECT CAST(bid * 10000 AS BIGINT), CAST(ask * 10000 AS BIGINT), CAST(last * 10000 AS BIGINT)
             FROM futures_quotes WHERE as_of = ? AND quote_time = ? AND contract = ?",
            params![as_of, quote_time, contract],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(row.map(|(b, a, l)| (Price::from_raw(b), Price::from_raw(a), Price::from_raw(l))))
}

/// Fill `day.session.futures` from the quotes stored at the day's snapshot: per root,
/// the front contract (by the product's roll) first, then the others by expiry.
pub fn load_futures(
    conn: &Connection,
    day: &mut DayState,
    roll_days_before: i64,
) -> Result<(), RepoError> {
    let mut s = conn.prepare(
        "SELECT contract, bid::DOUBLE, ask::DOUBLE, last::DOUBLE FROM futures_quotes
         WHERE as_of = ? AND quote_time = ? ORDER BY root, expiry",
    )?;
    let rows: Vec<(String, f64, f64, f64)> = s
        .query_map(params![day.as_of, day.quote_time], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<Result<_, _>>()?;
    for (symbol, bid, ask, last) in rows {
        let contract = futures::parse(&symbol).map_err(|source| RepoError::BadRow {
            table: "futures_quotes",
            row: symbol.clone(),
            source,
        })?;
        let quotes = day
            .session
            .futures
            .entry(contract.root.clone())
            .or_default();
        quotes.push(FutureQuote {
            contract,
            bid,
            ask,
            last,
        });
    }
    for (root, quotes) in day.session.futures.iter_mut() {
        let Some(p) = futures::product(root) else {
            continue;
        };
        if let Ok(front) = futures::front(p, day.as_of, roll_days_before) {
            // Stable: the front first, the rest keep their expiry order.
            quotes.sort_by_key(|q| q.contract != front);
        }
    }
    Ok(())
}

/// The last mark of a (strategy, instrument): (seq, held after it, mark, when).
fn last_mark(
    conn: &Connection,
    strategy: &str,
    instrument: &str,
) -> Result<Option<(i32, i64, Price, NaiveDateTime)>, RepoError> {
    let row: Option<(i32, i64, i64, NaiveDateTime)> = conn
        .query_row(
            "SELECT seq, held_after, CAST(mark * 10000 AS BIGINT), marked_at FROM futures_variation
             WHERE strategy = ? AND instrument = ? ORDER BY seq DESC LIMIT 1",
            params![strategy, instrument],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    Ok(row.map(|(s, h, m, at)| (s, h, Price::from_raw(m), at)))
}

/// Append one mark to the chain and pay its variation. Returns the amount.
#[allow(clippy::too_many_arguments)]
fn append_mark(
    conn: &Connection,
    strategy: &str,
    instrument: &Instrument,
    as_of: NaiveDate,
    at: NaiveDateTime,
    cause: &str,
    added: i64,
    mark: Price,
    reference: &str,
    run_id: i64,
) -> Result<Price, RepoError> {
    let key = instrument.key();
    let multiplier = instrument.multiplier();
    let last = last_mark(conn, strategy, &key)?;
    let (seq, held, prev) = match last {
        Some((s, h, m, _)) => (s + 1, h, Some(m)),
        None => (0, 0, None),
    };
    let amount = match prev {
        Some(p) => (mark - p).times(held * multiplier),
        None => Price::ZERO,
    };
    conn.execute(
        "INSERT INTO futures_variation VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            strategy,
            key,
            seq,
            as_of,
            at,
            cause,
            held,
            held + added,
            multiplier as i32,
            prev.map(|p| p.to_f64()),
            mark.to_f64(),
            amount.to_f64(),
            reference,
            run_id
        ],
    )?;
    if amount != Price::ZERO {
        conn.execute(
            "INSERT INTO cash_ledger VALUES (?, 'variation', ?, ?, ?)",
            params![as_of, amount.to_f64(), reference, run_id],
        )?;
    }
    Ok(amount)
}

/// Mark a futures position at a fill's price before the fill changes it: the piece of
/// variation since the last mark (at a close, the last piece). Called by
/// `orders::write_fill` for every futures fill.
pub fn mark_fill(conn: &Connection, f: &Fill, run_id: i64) -> Result<Price, RepoError> {
    append_mark(
        conn,
        &f.book,
        &f.instrument,
        f.as_of,
        f.filled_at,
        "fill",
        f.quantity,
        f.price,
        &f.exec_id,
        run_id,
    )
}

/// An open futures position as its variation chain has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub strategy: String,
    pub contract: FuturesContract,
    pub quantity: i64,
    pub mark: Price,
    pub marked_at: NaiveDateTime,
}

/// Futures positions held now (the chains' last rows with contracts held).
pub fn held(conn: &Connection) -> Result<Vec<Held>, RepoError> {
    let mut s = conn.prepare(
        "SELECT strategy, instrument, held_after, CAST(mark * 10000 AS BIGINT), marked_at
         FROM futures_variation
         QUALIFY row_number() OVER (PARTITION BY strategy, instrument ORDER BY seq DESC) = 1
             AND held_after <> 0
         ORDER BY strategy, instrument",
    )?;
    let rows: Vec<(String, String, i64, i64, NaiveDateTime)> = s
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(strategy, symbol, quantity, mark, marked_at)| {
            let contract = futures::parse(&symbol).map_err(|source| RepoError::BadRow {
                table: "futures_variation",
                row: symbol.clone(),
                source,
            })?;
            Ok(Held {
                strategy,
                contract,
                quantity,
                mark: Price::from_raw(mark),
                marked_at,
            })
        })
        .collect()
}

/// Mark a held position at a session's settlement price (its close `at`), once per
/// position and session, paid on `paid_on` (the run's session: a re-run of an earlier
/// session sees the cash and the marks it saw). Returns the variation paid, `None` when
/// this settlement was already posted or the position was marked later than it.
pub fn post_settlement(
    conn: &Connection,
    h: &Held,
    session: NaiveDate,
    at: NaiveDateTime,
    price: Price,
    paid_on: NaiveDate,
    run_id: i64,
) -> Result<Option<Price>, RepoError> {
    if h.marked_at >= at {
        return Ok(None);
    }
    let reference = format!("variation:{}:{}:{session}", h.strategy, h.contract.symbol);
    let amount = append_mark(
        conn,
        &h.strategy,
        &Instrument::Future(h.contract.clone()),
        paid_on,
        at,
        "settlement",
        0,
        price,
        &reference,
        run_id,
    )?;
    Ok(Some(amount))
}
