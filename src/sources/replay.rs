//! The `replay` source: sessions served from the archive `optdesk import` filled
//! (`option_archive`, `archive_bars`). A replayed session's snapshot is the vendor's
//! end-of-day snapshot (its `quote_time`: 15:45 for DataShop, the close for the
//! others), not the 09:35 of live runs: the jobs decide and fill at those quotes and
//! read nothing later.

use super::{IvPoint, MarketData, RiskFreeRate, Snapshot, SourceError, UnderlyingQuote};
use crate::model::{DailyBar, OptionQuote, OptionRight, Price, Settlement};
use chrono::{NaiveDate, NaiveDateTime};
use duckdb::{params, Connection};
use std::sync::Mutex;

pub struct Replay {
    conn: Mutex<Connection>,
    rate: RiskFreeRate,
    div_yield: f64,
}

const NAME: &str = "replay";

fn db(e: duckdb::Error) -> SourceError {
    SourceError::Request {
        reason: format!(
            "reading the archive: {}",
            crate::text::one_line(&e.to_string())
        ),
    }
}

impl Replay {
    /// A replay over the store `conn` is open on (a second connection to it).
    pub fn new(
        conn: &Connection,
        rate: RiskFreeRate,
        div_yield: f64,
    ) -> Result<Replay, SourceError> {
        Ok(Replay {
            conn: Mutex::new(conn.try_clone().map_err(db)?),
            rate,
            div_yield,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The snapshot time of the archive on `as_of`, or why there is none.
pub fn snapshot_time(conn: &Connection, as_of: NaiveDate) -> Result<NaiveDateTime, String> {
    let (t, first, last): (Option<NaiveDateTime>, Option<NaiveDate>, Option<NaiveDate>) = conn
        .query_row(
            // The time of the day's rows with a market (bid and ask) first: LEAN universe
            // rows have none.
            "SELECT (SELECT coalesce(max(quote_time) FILTER (WHERE bid IS NOT NULL AND ask IS NOT NULL), max(quote_time))
                     FROM option_archive WHERE as_of = ?), min(as_of), max(as_of) FROM option_archive",
            params![as_of],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(|e| e.to_string())?;
    match (t, first, last) {
        (Some(t), _, _) => Ok(t),
        (None, Some(a), Some(b)) => Err(format!(
            "the replay archive has no quotes on {as_of}: it holds {a} to {b} (optdesk sql \"SELECT * FROM imports\")"
        )),
        _ => Err("the replay archive is empty: load files with `optdesk import PATH...` first".into()),
    }
}

impl MarketData for Replay {
    fn name(&self) -> &'static str {
        NAME
    }

    fn default_symbols(&self) -> Vec<String> {
        let conn = self.conn();
        let Ok(mut s) = conn.prepare("SELECT DISTINCT underlying FROM option_archive ORDER BY 1")
        else {
            return Vec::new();
        };
        s.query_map([], |r| r.get::<_, String>(0))
            .map(|rows| rows.filter_map(Result::ok).collect())
            .unwrap_or_default()
    }

    fn snapshot(
        &self,
        quote_time: NaiveDateTime,
        symbols: &[String],
        max_expiry_days: u32,
    ) -> Result<Snapshot, SourceError> {
        let as_of = quote_time.date();
        let (rate, rate_from) = self.rate.on(NAME, as_of)?;
        let conn = self.conn();
        let mut underlyings = Vec::new();
        let mut quotes = Vec::new();
        for sym in symbols {
            // Rows with a market; the underlying's price from them, else from any row of
            // the day (a LEAN universe file's underlying row), else the day's imported
            // daily bar (LEAN quote zips carry no underlying price).
            let (n, unquoted, price, first, last): (i64, i64, Option<f64>, Option<NaiveDate>, Option<NaiveDate>) = conn
                .query_row(
                    "SELECT count(*) FILTER (WHERE as_of = ? AND quote_time = ? AND bid IS NOT NULL AND ask IS NOT NULL),
                            count(*) FILTER (WHERE as_of = ? AND (bid IS NULL OR ask IS NULL)),
                            coalesce(median(underlying_price::DOUBLE) FILTER (WHERE as_of = ? AND quote_time = ?),
                                     median(underlying_price::DOUBLE) FILTER (WHERE as_of = ?),
                                     (SELECT close::DOUBLE FROM archive_bars WHERE symbol = ? AND date = ?)),
                            min(as_of), max(as_of)
                     FROM option_archive WHERE underlying = ?",
                    params![as_of, quote_time, as_of, as_of, quote_time, as_of, sym, as_of, sym],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .map_err(db)?;
            let (Some(first), Some(last)) = (first, last) else {
                // Not in the archive at all: the jobs that need it say so.
                continue;
            };
            if n == 0 && unquoted > 0 {
                return Err(SourceError::NoData {
                    source_name: NAME,
                    date: as_of,
                    reason: format!(
                        "the archive's {sym} rows on {as_of} have no bid/ask (LEAN universe files: a close, the vendor's IV and greeks, the underlying's price); import a chain with quotes for that day (LEAN quote zips, DataShop, ...) to trade on it"
                    ),
                });
            }
            if n == 0 {
                return Err(SourceError::NoData {
                    source_name: NAME,
                    date: as_of,
                    reason: format!(
                        "the archive has no {sym} quotes at {}; it holds {sym} from {first} to {last}",
                        quote_time.format("%H:%M")
                    ),
                });
            }
            let price = price
                .filter(|p| *p > 0.0)
                .ok_or_else(|| SourceError::NoData {
                    source_name: NAME,
                    date: as_of,
                    reason: format!("the archive's {sym} quotes carry no underlying price, and no LEAN universe file or imported daily bar of {sym} on {as_of} gives one"),
                })?;
            let price = Price::from_f64(price);
            underlyings.push(UnderlyingQuote {
                symbol: sym.clone(),
                price,
                rate,
                div_yield: self.div_yield,
            });
            let mut s = conn
                .prepare(
                    "SELECT root, expiry, strike::DOUBLE, put_call, settlement, bid::DOUBLE, ask::DOUBLE,
                            coalesce(bid_size, 0), coalesce(ask_size, 0), coalesce(volume, 0),
                            coalesce(open_interest, max(open_interest) OVER (PARTITION BY contract), 0),
                            -- A quote without the vendor's IV takes it from a LEAN universe row of
                            -- the same contract and snapshot.
                            coalesce(vendor_iv, max(vendor_iv) OVER (PARTITION BY contract))
                     FROM option_archive
                     WHERE as_of = ? AND quote_time = ? AND underlying = ? AND expiry <= ?
                     -- Only rows with a market are traded; two files quoting the same contract
                     -- at the same time: the later import wins.
                     QUALIFY bid IS NOT NULL AND ask IS NOT NULL
                         AND row_number() OVER (PARTITION BY contract ORDER BY (bid IS NULL OR ask IS NULL), import_id DESC, line) = 1
                     ORDER BY expiry, put_call, strike",
                )
                .map_err(db)?;
            let max_expiry = as_of + chrono::Duration::days(max_expiry_days as i64);
            let rows = s
                .query_map(params![as_of, quote_time, sym, max_expiry], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, NaiveDate>(1)?,
                        r.get::<_, f64>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, f64>(5)?,
                        r.get::<_, f64>(6)?,
                        (
                            r.get::<_, i32>(7)?,
                            r.get::<_, i32>(8)?,
                            r.get::<_, i64>(9)?,
                            r.get::<_, i64>(10)?,
                            r.get::<_, Option<f64>>(11)?,
                        ),
                    ))
                })
                .map_err(db)?;
            for row in rows {
                let (root, expiry, strike, pc, settlement, bid, ask, (bsz, asz, vol, oi, iv)) =
                    row.map_err(db)?;
                let right = OptionRight::from_code(&pc).map_err(|e| SourceError::BadData {
                    file_or_source: "option_archive".into(),
                    line: None,
                    field: "put_call".into(),
                    reason: e.to_string(),
                })?;
                quotes.push(OptionQuote {
                    underlying: sym.clone(),
                    root,
                    expiry,
                    strike: Price::from_f64(strike),
                    right,
                    settlement: if settlement == "cash" {
                        Settlement::Cash
                    } else {
                        Settlement::Physical
                    },
                    bid: Price::from_f64(bid),
                    ask: Price::from_f64(ask),
                    bid_size: bsz,
                    ask_size: asz,
                    volume: vol,
                    open_interest: oi,
                    underlying_price: price,
                    source_iv: iv.filter(|v| v.is_finite() && *v > 0.0),
                });
            }
        }
        Ok(Snapshot {
            as_of,
            quote_time,
            underlyings,
            quotes,
            notes: vec![format!("risk-free rate {:.4}% ({rate_from})", rate * 100.0)],
            rejects: Vec::new(),
        })
    }

    fn daily_bars(
        &self,
        symbols: &[String],
        dates: &[NaiveDate],
    ) -> Result<Vec<DailyBar>, SourceError> {
        let (Some(from), Some(to)) = (dates.iter().min(), dates.iter().max()) else {
            return Ok(Vec::new());
        };
        let wanted: std::collections::HashSet<&NaiveDate> = dates.iter().collect();
        let conn = self.conn();
        let mut s = conn
            .prepare(
                "SELECT date, open::DOUBLE, high::DOUBLE, low::DOUBLE, close::DOUBLE, volume, dividend::DOUBLE, split_ratio
                 FROM archive_bars WHERE symbol = ? AND date BETWEEN ? AND ? ORDER BY date",
            )
            .map_err(db)?;
        let mut out = Vec::new();
        for sym in symbols {
            let rows = s
                .query_map(params![sym, from, to], |r| {
                    Ok(DailyBar {
                        date: r.get(0)?,
                        symbol: sym.clone(),
                        open: Price::from_f64(r.get(1)?),
                        high: Price::from_f64(r.get(2)?),
                        low: Price::from_f64(r.get(3)?),
                        close: Price::from_f64(r.get(4)?),
                        volume: r.get(5)?,
                        dividend: Price::from_f64(r.get(6)?),
                        split_ratio: r.get(7)?,
                    })
                })
                .map_err(db)?;
            for b in rows {
                let b = b.map_err(db)?;
                if wanted.contains(&b.date) {
                    out.push(b);
                }
            }
        }
        Ok(out)
    }

    /// The minute bars `optdesk import` put in `archive_minute_bars` (minute-bars layout):
    /// the session's bars that have closed by `until`.
    fn minute_bars(
        &self,
        symbols: &[String],
        session: NaiveDate,
        until: NaiveDateTime,
    ) -> Result<Vec<super::IntradayBar>, SourceError> {
        let conn = self.conn();
        let mut s = conn
            .prepare(
                "SELECT time, open::DOUBLE, high::DOUBLE, low::DOUBLE, close::DOUBLE, volume
                 FROM archive_minute_bars
                 WHERE symbol = ? AND time::DATE = ? AND time + INTERVAL 1 MINUTE <= ?
                 ORDER BY time",
            )
            .map_err(db)?;
        let mut out = Vec::new();
        for sym in symbols {
            let rows = s
                .query_map(params![sym, session, until], |r| {
                    Ok(super::IntradayBar {
                        symbol: sym.clone(),
                        time: r.get(0)?,
                        open: r.get(1)?,
                        high: r.get(2)?,
                        low: r.get(3)?,
                        close: r.get(4)?,
                        volume: r.get(5)?,
                    })
                })
                .map_err(db)?;
            for b in rows {
                out.push(b.map_err(db)?);
            }
        }
        Ok(out)
    }

    fn atm_iv_history(
        &self,
        _symbols: &[String],
        _dates: &[NaiveDate],
    ) -> Result<Option<Vec<IvPoint>>, SourceError> {
        Ok(None)
    }
}
