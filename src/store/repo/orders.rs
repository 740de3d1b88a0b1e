//! Orders, their events, fills and cash: written append-only, read back as domain
//! types. The intent (`order_legs` and a `pending` event) is written before a broker
//! sees the order; every later status is an appended event checked against the life
//! cycle; a fill is keyed by its execution id, so recording it twice is impossible.

use super::{instrument, instrument_columns, read_instrument, RepoError, INSTRUMENT_COLS};
use crate::model::identifiers::{ClientOrderId, Intent};
use crate::model::{ModelError, Price};
use crate::trading::{CashKind, Fill, Leg, Order, OrderStatus, OrderType};
use chrono::{NaiveDate, NaiveDateTime};
use duckdb::{params, Connection, OptionalExt};

/// Write an order's intent: one `order_legs` row per leg and its `pending` event.
pub fn write_intent(
    conn: &Connection,
    order: &Order,
    created_at: NaiveDateTime,
    broker: &str,
    run_id: i64,
) -> Result<(), RepoError> {
    let reference = order.reference();
    for (i, leg) in order.legs.iter().enumerate() {
        let (kind, expiry, strike, pc, style, settlement) = instrument_columns(&leg.instrument);
        let (settle_price, cash_kind) = match leg.settle {
            Some((p, k)) => (Some(p.to_f64()), k),
            None => (None, CashKind::Premium),
        };
        conn.execute(
            "INSERT INTO order_legs (order_ref, leg, as_of, created_at, strategy, book, intent, instrument,
                 underlying, kind, expiry, strike, put_call, style, settlement, multiplier, quantity,
                 order_type, limit_net, settle_price, cash_kind, run_id)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params![
                reference,
                i as i32,
                order.as_of(),
                created_at,
                order.strategy(),
                order.book_of(leg),
                order.id.intent.code(),
                leg.instrument.key(),
                leg.instrument.underlying(),
                kind,
                expiry,
                strike,
                pc,
                style,
                settlement,
                leg.instrument.multiplier() as i32,
                leg.quantity,
                order.order_type.code(),
                order.order_type.limit().map(|l| l.to_f64()),
                settle_price,
                cash_kind.code(),
                run_id
            ],
        )?;
    }
    conn.execute(
        "INSERT INTO order_events VALUES (?, 0, ?, 'pending', ?, NULL, NULL, ?)",
        params![reference, created_at, broker, run_id],
    )?;
    Ok(())
}

/// The latest status of an order and its sequence number, if it exists.
pub fn latest_status(
    conn: &Connection,
    order_ref: &str,
) -> Result<Option<(OrderStatus, i32, Option<String>)>, RepoError> {
    let row: Option<(String, i32, Option<String>)> = conn
        .query_row(
            "SELECT status, seq, broker_order_id FROM order_events WHERE order_ref = ? ORDER BY seq DESC LIMIT 1",
            params![order_ref],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    row.map(|(s, seq, id)| {
        OrderStatus::from_code(&s)
            .map(|s| (s, seq, id))
            .map_err(|source| RepoError::BadRow {
                table: "order_events",
                row: order_ref.to_string(),
                source,
            })
    })
    .transpose()
}

/// Append an event after checking the transition from the latest status. Returns the
/// new status.
#[allow(clippy::too_many_arguments)]
pub fn append_event(
    conn: &Connection,
    order_ref: &str,
    to: OrderStatus,
    at: NaiveDateTime,
    broker: &str,
    broker_order_id: Option<&str>,
    reason: Option<&str>,
    run_id: i64,
) -> Result<OrderStatus, RepoError> {
    let (from, seq, known_id) =
        latest_status(conn, order_ref)?.ok_or_else(|| RepoError::BadRow {
            table: "order_events",
            row: order_ref.to_string(),
            source: ModelError::BadField {
                field: "order",
                value: "an event for an order without an intent".into(),
            },
        })?;
    let status = from.transition(order_ref, to)?;
    conn.execute(
        "INSERT INTO order_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            order_ref,
            seq + 1,
            at,
            status.code(),
            broker,
            broker_order_id.map(str::to_string).or(known_id),
            reason,
            run_id
        ],
    )?;
    Ok(status)
}

/// Record a fill and its cash (premium or settlement under the fill's kind, then the
/// commission; for a future, the variation since its last mark instead of a premium)
/// unless its execution id is already recorded. Returns whether it was new.
pub fn write_fill(conn: &Connection, f: &Fill, run_id: i64) -> Result<bool, RepoError> {
    let seen: i64 = conn.query_row(
        "SELECT count(*) FROM fills WHERE exec_id = ?",
        params![f.exec_id],
        |r| r.get(0),
    )?;
    if seen > 0 {
        return Ok(false);
    }
    let (kind, expiry, strike, pc, style, settlement) = instrument_columns(&f.instrument);
    conn.execute(
        "INSERT INTO fills (as_of, order_ref, leg, strategy, instrument, underlying, kind, expiry, strike,
             put_call, multiplier, quantity, price, commission, cash_kind, run_id, filled_at, exec_id,
             broker_order_id, style, settlement)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            f.as_of,
            f.order_reference,
            f.leg as i32,
            f.book,
            f.instrument.key(),
            f.instrument.underlying(),
            kind,
            expiry,
            strike,
            pc,
            f.instrument.multiplier() as i32,
            f.quantity,
            f.price.to_f64(),
            f.commission.to_f64(),
            f.cash_kind.code(),
            run_id,
            f.filled_at,
            f.exec_id,
            f.broker_order_id,
            style,
            settlement
        ],
    )?;
    if let crate::trading::Instrument::Future(_) = f.instrument {
        // No premium: the position is marked at the fill's price (variation margin).
        super::futures::mark_fill(conn, f, run_id)?;
    } else {
        conn.execute(
            "INSERT INTO cash_ledger VALUES (?, ?, ?, ?, ?)",
            params![
                f.as_of,
                f.cash_kind.code(),
                f.premium_cash().to_f64(),
                f.exec_id,
                run_id
            ],
        )?;
    }
    if f.commission != Price::ZERO {
        conn.execute(
            "INSERT INTO cash_ledger VALUES (?, 'commission', ?, ?, ?)",
            params![f.as_of, (-f.commission).to_f64(), f.exec_id, run_id],
        )?;
    }
    Ok(true)
}

/// Every fill up to the end of `as_of`, in the order they were executed: by session,
/// then by the run that recorded them, then in the order that run recorded them (a run
/// writes its fills as its broker reports them). That order decides which order opens
/// a position and which one closes it, so closed trades depend on it. Prices and
/// commissions are read as exact integers of 1/10,000 $ (`DECIMAL(18,4)` × 10,000).
pub fn fills_up_to(conn: &Connection, as_of: NaiveDate) -> Result<Vec<Fill>, RepoError> {
    let mut s = conn.prepare(&format!(
        "SELECT order_ref, leg, as_of, filled_at, strategy, quantity,
                CAST(price * 10000 AS BIGINT), CAST(commission * 10000 AS BIGINT), cash_kind,
                exec_id, broker_order_id, {INSTRUMENT_COLS}
         FROM fills WHERE as_of <= ? ORDER BY as_of, run_id, rowid"
    ))?;
    let rows = s.query_map(params![as_of], |r| {
        Ok((
            (
                r.get::<_, String>(0)?,
                r.get::<_, i32>(1)?,
                r.get::<_, NaiveDate>(2)?,
                r.get::<_, NaiveDateTime>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ),
            (
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, String>(9)?,
                r.get::<_, Option<String>>(10)?,
            ),
            read_instrument("fills", r, 11)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (
            (order_reference, leg, as_of, filled_at, book, quantity),
            (price, commission, cash_kind, exec_id, broker_order_id),
            instrument,
        ) = row?;
        let cash_kind = CashKind::from_code(&cash_kind).map_err(|source| RepoError::BadRow {
            table: "fills",
            row: exec_id.clone(),
            source,
        })?;
        out.push(Fill {
            order_reference,
            leg: leg as usize,
            as_of,
            filled_at,
            book,
            instrument: instrument?,
            quantity,
            price: Price::from_raw(price),
            commission: Price::from_raw(commission),
            cash_kind,
            exec_id,
            broker_order_id,
        });
    }
    Ok(out)
}

/// Quantity filled so far per leg of an order.
pub fn filled_by_leg(conn: &Connection, order_ref: &str) -> Result<Vec<(usize, i64)>, RepoError> {
    let mut s = conn.prepare(
        "SELECT leg, sum(quantity)::BIGINT FROM fills WHERE order_ref = ? GROUP BY leg ORDER BY leg",
    )?;
    let rows = s.query_map(params![order_ref], |r| {
        Ok((r.get::<_, i32>(0)? as usize, r.get(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// An order whose life is not over: its intent as recorded and where it stands.
#[derive(Debug, Clone)]
pub struct OpenOrder {
    pub order: Order,
    pub status: OrderStatus,
    pub broker: String,
    pub broker_order_id: Option<String>,
    pub created_at: NaiveDateTime,
}

/// Orders whose latest event is pending, submitted or partly filled (a crash or a
/// broker that has not finished), oldest first.
pub fn open_orders(conn: &Connection) -> Result<Vec<OpenOrder>, RepoError> {
    let mut s = conn.prepare(
        "WITH latest AS (SELECT * FROM order_events
                         QUALIFY row_number() OVER (PARTITION BY order_ref ORDER BY seq DESC) = 1)
         SELECT e.order_ref, e.status, e.broker, e.broker_order_id FROM latest e
         WHERE e.status IN ('pending', 'submitted', 'partly_filled') ORDER BY e.event_at, e.order_ref",
    )?;
    let heads: Vec<(String, String, String, Option<String>)> = s
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for (reference, status, broker, broker_order_id) in heads {
        let bad = |source| RepoError::BadRow {
            table: "order_legs",
            row: reference.clone(),
            source,
        };
        let status = OrderStatus::from_code(&status).map_err(bad)?;
        let (order, created_at) = read_order(conn, &reference)?;
        out.push(OpenOrder {
            order,
            status,
            broker,
            broker_order_id,
            created_at,
        });
    }
    Ok(out)
}

/// (book, instrument) of every leg of an order still open (pending, submitted, partly
/// filled): a position with a close on its way is not closed a second time.
pub fn legs_in_flight(
    conn: &Connection,
) -> Result<std::collections::HashSet<(String, String)>, RepoError> {
    let mut s = conn.prepare(
        "SELECT DISTINCT book, instrument FROM orders
         WHERE status IN ('pending', 'submitted', 'partly_filled')",
    )?;
    let rows = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

type LegRow = (
    i32,
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    i64,
    String,
    Option<f64>,
    Option<f64>,
    String,
    String,
    NaiveDateTime,
);

/// An order's intent as recorded.
pub fn read_order(conn: &Connection, reference: &str) -> Result<(Order, NaiveDateTime), RepoError> {
    let bad = |source| RepoError::BadRow {
        table: "order_legs",
        row: reference.to_string(),
        source,
    };
    let id = ClientOrderId::parse(reference).map_err(bad)?;
    let mut s = conn.prepare(
        "SELECT leg, kind, instrument, underlying, strategy, multiplier, style, settlement, quantity,
                order_type, limit_net::DOUBLE, settle_price::DOUBLE, cash_kind, book, created_at
         FROM order_legs WHERE order_ref = ? ORDER BY leg",
    )?;
    let rows: Vec<LegRow> = s
        .query_map(params![reference], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
                r.get(13)?,
                r.get(14)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut legs = Vec::new();
    let mut order_type = OrderType::Market;
    let mut created = id.at;
    for (
        _,
        kind,
        key,
        underlying,
        strategy,
        mult,
        style,
        settlement,
        qty,
        ot,
        limit,
        settle,
        ck,
        book,
        at,
    ) in rows
    {
        let inst = instrument(
            &kind,
            &key,
            &underlying,
            mult,
            style.as_deref(),
            settlement.as_deref(),
        )
        .map_err(bad)?;
        let mut leg = Leg::new(inst, qty).map_err(bad)?;
        if book != strategy {
            leg.book = Some(book);
        }
        let price = |x: Option<f64>| x.map(Price::try_from_f64).transpose().map_err(bad);
        order_type = match ot.as_str() {
            "limit" => OrderType::Limit(price(limit)?.unwrap_or(Price::ZERO)),
            "settlement" => OrderType::Settlement,
            _ => OrderType::Market,
        };
        if let Some(p) = price(settle)? {
            leg.settle = Some((p, CashKind::from_code(&ck).map_err(bad)?));
        }
        created = at;
        legs.push(leg);
    }
    let order = Order::new_checked(id, legs, order_type).map_err(bad)?;
    Ok((order, created))
}

/// The next free sequence number for orders of (intent, strategy) at a snapshot, so a
/// second close on the same snapshot (a retry after a rejection) never reuses an id.
pub fn next_sequence(
    conn: &Connection,
    intent: Intent,
    strategy: &str,
    as_of: NaiveDate,
    at: NaiveDateTime,
) -> Result<u32, RepoError> {
    let prefix = ClientOrderId::new(intent, strategy, as_of, at.time(), 0)
        .map_err(|source| RepoError::BadRow {
            table: "order_legs",
            row: strategy.to_string(),
            source,
        })?
        .to_string();
    let prefix = prefix.trim_end_matches('0');
    let n: i64 = conn.query_row(
        "SELECT count(DISTINCT order_ref) FROM order_legs WHERE starts_with(order_ref, ?)",
        params![prefix],
        |r| r.get(0),
    )?;
    Ok(n as u32)
}

/// Record a risk decision (an entry's verdict, or an approved close with its rule).
#[allow(clippy::too_many_arguments)]
pub fn write_decision(
    conn: &Connection,
    as_of: NaiveDate,
    quote_time: NaiveDateTime,
    strategy: &str,
    underlying: &str,
    order_ref: &str,
    approved: bool,
    rule: &str,
    reason: Option<&str>,
    max_loss: Option<Price>,
    requirement: Price,
    intent: Intent,
    run_id: i64,
) -> Result<(), RepoError> {
    conn.execute(
        "INSERT INTO risk_decisions (as_of, quote_time, strategy, underlying, order_ref, decision, rule,
             reason, max_loss, requirement, run_id, intent)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            as_of,
            quote_time,
            strategy,
            underlying,
            order_ref,
            if approved { "approved" } else { "refused" },
            rule,
            reason,
            max_loss.map(|m| m.to_f64()),
            requirement.to_f64(),
            run_id,
            intent.code()
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OptionRight;
    use crate::store::Store;
    use crate::testkit;
    use crate::trading::Instrument;
    use std::time::Duration;

    fn fill(exec_id: &str, as_of: NaiveDate, instrument: Instrument, price: i64) -> Fill {
        Fill {
            order_reference: format!("o:{exec_id}"),
            leg: 1,
            as_of,
            filled_at: as_of.and_hms_opt(10, 0, 0).unwrap(),
            book: "wheel".into(),
            instrument,
            quantity: -3,
            price: Price::from_raw(price),
            commission: Price::from_raw(1),
            cash_kind: CashKind::Premium,
            exec_id: exec_id.into(),
            broker_order_id: Some("b1".into()),
        }
    }

    #[test]
    fn fills_are_read_back_exactly_in_execution_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_write(&dir.path().join("s.duckdb"), Duration::from_secs(1), "test")
            .unwrap();
        let d1 = testkit::as_of();
        let d2 = d1.succ_opt().unwrap();
        let put = testkit::option("SPY", OptionRight::Put, 95.0);
        let shares = Instrument::Equity {
            symbol: "SPY".into(),
        };
        // (fill, run): a later session first, then a later run of the first session
        // before an earlier one, which records two fills.
        let written = [
            (fill("x", d2, put.clone(), 12_345), 5),
            (fill("y", d1, shares.clone(), 1_000_001), 7),
            (fill("z", d1, put.clone(), 1), 6),
            (fill("w", d1, shares, 99_999), 6),
        ];
        for (f, run) in &written {
            assert!(write_fill(&s.conn, f, *run).unwrap());
        }
        let ids = |fills: &[Fill]| fills.iter().map(|f| f.exec_id.clone()).collect::<Vec<_>>();
        let all = fills_up_to(&s.conn, d2).unwrap();
        assert_eq!(ids(&all), ["z", "w", "y", "x"]);
        // Every field as written: prices to the 1/10,000, the option's terms.
        assert_eq!(all[3], written[0].0);
        assert_eq!(all[0], written[2].0);
        assert_eq!(all[2], written[1].0);
        assert_eq!(ids(&fills_up_to(&s.conn, d1).unwrap()), ["z", "w", "y"]);
    }
}
