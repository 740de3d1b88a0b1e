//! The paper broker: fills approved orders against the quotes of the run's snapshot,
//! as a venue would, and keeps its own record of what it was sent (`paper_orders`,
//! `paper_executions`) so an order it has is never executed twice.
//!
//! Fills: a sell at the bid and a buy at the ask by default, or `toward_mid` of the way
//! to the mid (0 = at the touch, 1 = at the mid), rounded to the cent against the
//! account; shares at the underlying's price. A multi-leg order fills all its legs or
//! none. A limit that would not fill, and a leg with no usable quote, are rejected with
//! the numbers. Settlement orders fill at the exchange's prices, without commission.
//! Futures fill against `futures_quotes` on the tick, with a per-contract commission
//! (`broker.commission_per_future`); they move no premium (variation margin instead).

use super::{Broker, BrokerError, BrokerOrder, Execution};
use crate::model::instrument::Instrument;
use crate::model::Price;
use crate::trading::risk::RiskApproved;
use crate::trading::{Order, OrderStatus, OrderType};
use chrono::{NaiveDate, NaiveDateTime};
use duckdb::{params, Connection, OptionalExt};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperConfig {
    /// 0 = sell at the bid and buy at the ask; 1 = at the mid.
    pub toward_mid: f64,
    /// IBKR-like: $0.65 per option contract.
    pub commission_per_contract: Price,
    /// Per share.
    pub commission_per_share: Price,
    /// Per futures contract and side: IBKR's all-in for MES ($0.25 commission, $0.35
    /// exchange, $0.02 clearing and NFA fees, rounded to $0.62).
    pub commission_per_future: Price,
}

impl Default for PaperConfig {
    fn default() -> Self {
        PaperConfig {
            toward_mid: 0.0,
            commission_per_contract: Price::from_cents(65),
            commission_per_share: Price::from_raw(50), // $0.005
            commission_per_future: Price::from_cents(62),
        }
    }
}

/// A two-sided quote.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quote {
    pub bid: Price,
    pub ask: Price,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no usable quote for {key} (bid {bid}, ask {ask})")]
    NoQuote { key: String, bid: Price, ask: Price },
    #[error("no quote at all for {key}")]
    Missing { key: String },
    #[error("limit {limit} not marketable: the order would fill at {price} net per unit")]
    LimitNotMarketable { limit: Price, price: Price },
    #[error("the paper broker does not trade {0}")]
    Unsupported(String),
}

impl Refusal {
    fn code(&self) -> &'static str {
        match self {
            Refusal::NoQuote { .. } => "no_quote",
            Refusal::Missing { .. } => "missing_quote",
            Refusal::LimitNotMarketable { .. } => "limit",
            Refusal::Unsupported(_) => "unsupported",
        }
    }
}

/// Round dollars to the cent, away from the account (up when paying, down when
/// receiving).
fn to_cent(dollars: f64, paying: bool) -> Price {
    let cents = if paying {
        (dollars * 100.0 - 1e-9).ceil()
    } else {
        (dollars * 100.0 + 1e-9).floor()
    };
    Price::from_cents(cents as i64)
}

/// Where one leg fills: sells at the bid, buys at the ask, or toward the mid.
pub fn leg_price(
    cfg: &PaperConfig,
    key: &str,
    quote: &Quote,
    quantity: i64,
) -> Result<Price, Refusal> {
    let (bid, ask) = (quote.bid, quote.ask);
    let buying = quantity > 0;
    if !ask.is_positive() || bid > ask || bid.raw() < 0 || (!buying && !bid.is_positive()) {
        return Err(Refusal::NoQuote {
            key: key.to_string(),
            bid,
            ask,
        });
    }
    let (b, a) = (bid.to_f64(), ask.to_f64());
    let mid = 0.5 * (a + b);
    let f = cfg.toward_mid.clamp(0.0, 1.0);
    Ok(if buying {
        to_cent(a - f * (a - mid), true)
    } else {
        to_cent(b + f * (mid - b), false)
    })
}

pub fn commission(cfg: &PaperConfig, instrument: &Instrument, quantity: i64) -> Price {
    let per = match instrument {
        Instrument::Option(_) => cfg.commission_per_contract,
        Instrument::Future(_) => cfg.commission_per_future,
        Instrument::Equity { .. } => cfg.commission_per_share,
    };
    per.times(quantity.abs())
}

/// Price every leg of an order against `quote` (by instrument), or none: (price,
/// commission) per leg. The net price per unit of the structure (sum of leg prices ×
/// leg ratio, positive = paid) is checked against a limit.
pub fn price_order(
    cfg: &PaperConfig,
    order: &Order,
    quote: &dyn Fn(&Instrument) -> Option<Quote>,
) -> Result<Vec<(Price, Price)>, Refusal> {
    if order.order_type == OrderType::Settlement {
        return Ok(order
            .legs
            .iter()
            .map(|l| (l.settle.map_or(Price::ZERO, |s| s.0), Price::ZERO))
            .collect());
    }
    let mut prices = Vec::with_capacity(order.legs.len());
    for leg in &order.legs {
        let key = leg.instrument.key();
        let q = quote(&leg.instrument).ok_or_else(|| Refusal::Missing { key: key.clone() })?;
        let mut price = leg_price(cfg, &key, &q, leg.quantity)?;
        if let Instrument::Future(f) = &leg.instrument {
            // On the tick, away from the account (toward the mid can fall between).
            let t = f.tick.raw();
            let ticks = price.raw().div_euclid(t);
            let up = price.raw().rem_euclid(t) != 0 && leg.quantity > 0;
            price = Price::from_raw((ticks + i64::from(up)) * t);
        }
        prices.push(price);
    }
    // Net per unit: legs are quoted per share; the structure's unit is its smallest leg.
    let unit = order
        .legs
        .iter()
        .map(|l| l.quantity.abs())
        .min()
        .unwrap_or(1)
        .max(1);
    let net = Price::from_raw(
        order
            .legs
            .iter()
            .zip(&prices)
            .map(|(l, p)| l.quantity / unit * p.raw())
            .sum(),
    );
    if let Some(limit) = order.order_type.limit() {
        if net > limit {
            return Err(Refusal::LimitNotMarketable { limit, price: net });
        }
    }
    Ok(order
        .legs
        .iter()
        .zip(prices)
        .map(|(leg, price)| (price, commission(cfg, &leg.instrument, leg.quantity)))
        .collect())
}

/// The paper broker for one snapshot of one session.
pub struct PaperBroker<'a> {
    conn: &'a Connection,
    cfg: PaperConfig,
    as_of: NaiveDate,
    quote_time: NaiveDateTime,
}

impl<'a> PaperBroker<'a> {
    pub fn new(
        conn: &'a Connection,
        cfg: PaperConfig,
        as_of: NaiveDate,
        quote_time: NaiveDateTime,
    ) -> Self {
        PaperBroker {
            conn,
            cfg,
            as_of,
            quote_time,
        }
    }

    /// The snapshot's time (New York).
    pub fn quote_time(&self) -> NaiveDateTime {
        self.quote_time
    }

    /// The snapshot's quote of an instrument (shares at the underlying's price).
    pub fn quote(&self, i: &Instrument) -> Option<Quote> {
        let row: Option<(f64, f64)> = match i {
            Instrument::Option(o) => self
                .conn
                .query_row(
                    "SELECT bid::DOUBLE, ask::DOUBLE FROM option_quotes WHERE as_of = ? AND quote_time = ? AND contract = ?",
                    params![self.as_of, self.quote_time, o.contract()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .ok()
                .flatten(),
            Instrument::Equity { symbol } => self
                .conn
                .query_row(
                    "SELECT price::DOUBLE, price::DOUBLE FROM underlying_quotes WHERE as_of = ? AND quote_time = ? AND symbol = ?",
                    params![self.as_of, self.quote_time, symbol],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .ok()
                .flatten(),
            Instrument::Future(f) => crate::store::repo::futures::quote(
                self.conn,
                &f.symbol,
                self.as_of,
                self.quote_time,
            )
            .ok()
            .flatten()
            .map(|(b, a, _)| (b.to_f64(), a.to_f64())),
        };
        row.map(|(b, a)| Quote {
            bid: Price::from_f64(b),
            ask: Price::from_f64(a),
        })
    }

    fn db(e: duckdb::Error) -> BrokerError {
        BrokerError::Other {
            broker: "paper",
            reason: format!("its record: {e}"),
        }
    }
}

impl Broker for PaperBroker<'_> {
    fn name(&self) -> &'static str {
        "paper"
    }

    fn is_simulated(&self) -> bool {
        true
    }

    fn submit(
        &mut self,
        approved: &RiskApproved<Order>,
        at: NaiveDateTime,
    ) -> Result<String, BrokerError> {
        let order = approved.inner();
        let reference = order.reference();
        // An order the venue already has is not executed again.
        if let Some(known) = self.order_status(&reference)? {
            return match known.status {
                OrderStatus::Rejected => Err(BrokerError::Rejected {
                    broker: "paper",
                    code: "known".into(),
                    reason: known.reason.unwrap_or_default(),
                }),
                _ => Ok(known.broker_order_id),
            };
        }
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM paper_orders", [], |r| r.get(0))
            .map_err(Self::db)?;
        let broker_order_id = format!("paper-{}", n + 1);
        match price_order(&self.cfg, order, &|i| self.quote(i)) {
            Err(refusal) => {
                self.conn
                    .execute(
                        "INSERT INTO paper_orders VALUES (?, ?, ?, 'rejected', ?)",
                        params![reference, broker_order_id, at, refusal.to_string()],
                    )
                    .map_err(Self::db)?;
                Err(BrokerError::Rejected {
                    broker: "paper",
                    code: refusal.code().into(),
                    reason: refusal.to_string(),
                })
            }
            Ok(priced) => {
                self.conn
                    .execute(
                        "INSERT INTO paper_orders VALUES (?, ?, ?, 'filled', NULL)",
                        params![reference, broker_order_id, at],
                    )
                    .map_err(Self::db)?;
                for (i, (leg, (price, commission))) in order.legs.iter().zip(priced).enumerate() {
                    self.conn
                        .execute(
                            "INSERT INTO paper_executions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            params![
                                format!("{reference}#{i}"),
                                reference,
                                i as i32,
                                leg.instrument.key(),
                                broker_order_id,
                                at,
                                leg.quantity,
                                price.to_f64(),
                                commission.to_f64()
                            ],
                        )
                        .map_err(Self::db)?;
                }
                Ok(broker_order_id)
            }
        }
    }

    fn order_status(&mut self, order_ref: &str) -> Result<Option<BrokerOrder>, BrokerError> {
        let row: Option<(String, String, Option<String>)> = self
            .conn
            .query_row(
                "SELECT broker_order_id, status, reason FROM paper_orders WHERE order_ref = ?",
                params![order_ref],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(Self::db)?;
        Ok(row.map(|(id, status, reason)| BrokerOrder {
            order_ref: order_ref.to_string(),
            broker_order_id: id,
            status: if status == "rejected" {
                OrderStatus::Rejected
            } else {
                OrderStatus::Filled
            },
            reason,
        }))
    }

    fn executions(&mut self, order: &Order) -> Result<Vec<Execution>, BrokerError> {
        let order_ref = &order.reference();
        let mut s = self
            .conn
            .prepare(
                "SELECT exec_id, leg, broker_order_id, executed_at, quantity, price::DOUBLE, commission::DOUBLE
                 FROM paper_executions WHERE order_ref = ? ORDER BY leg",
            )
            .map_err(Self::db)?;
        let rows = s
            .query_map(params![order_ref], |r| {
                Ok(Execution {
                    exec_id: r.get(0)?,
                    order_ref: order_ref.to_string(),
                    leg: r.get::<_, i32>(1)? as usize,
                    broker_order_id: r.get(2)?,
                    at: r.get(3)?,
                    quantity: r.get(4)?,
                    price: Price::from_f64(r.get(5)?),
                    commission: Price::from_f64(r.get(6)?),
                })
            })
            .map_err(Self::db)?;
        rows.collect::<Result<_, _>>().map_err(Self::db)
    }

    fn open_orders(&mut self) -> Result<Vec<BrokerOrder>, BrokerError> {
        // Paper orders fill or are rejected when they arrive: none is ever working.
        Ok(Vec::new())
    }

    fn positions(&mut self) -> Result<Vec<(String, i64)>, BrokerError> {
        let mut s = self
            .conn
            .prepare(
                "SELECT instrument, sum(quantity)::BIGINT FROM paper_executions
                 GROUP BY instrument HAVING sum(quantity) <> 0 ORDER BY instrument",
            )
            .map_err(Self::db)?;
        let rows = s
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(Self::db)?;
        rows.collect::<Result<_, _>>().map_err(Self::db)
    }

    fn cancel(&mut self, order_ref: &str) -> Result<(), BrokerError> {
        // Paper orders fill or are rejected at once: nothing is ever working.
        Err(BrokerError::Rejected {
            broker: "paper",
            code: "not_working".into(),
            reason: format!(
                "{order_ref} is not working (paper orders fill or are rejected at once)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OptionRight;
    use crate::testkit;
    use crate::trading::{ClientOrderId, Intent, Leg};

    fn p(x: f64) -> Price {
        Price::from_f64(x)
    }

    #[test]
    fn sells_at_the_bid_buys_at_the_ask_or_toward_the_mid() {
        let q = Quote {
            bid: p(1.20),
            ask: p(1.30),
        };
        let touch = PaperConfig::default();
        assert_eq!(leg_price(&touch, "x", &q, -1), Ok(p(1.20)));
        assert_eq!(leg_price(&touch, "x", &q, 1), Ok(p(1.30)));
        let half = PaperConfig {
            toward_mid: 0.5,
            ..touch
        };
        // Mid 1.25; half way: sell 1.225 → 1.22 (down), buy 1.275 → 1.28 (up).
        assert_eq!(leg_price(&half, "x", &q, -1), Ok(p(1.22)));
        assert_eq!(leg_price(&half, "x", &q, 1), Ok(p(1.28)));
        // Crossed or empty quotes are refused with the numbers; selling into no bid too.
        for q in [
            Quote {
                bid: p(1.3),
                ask: p(1.2),
            },
            Quote {
                bid: p(0.0),
                ask: p(0.0),
            },
        ] {
            let e = leg_price(&touch, "SPY x", &q, 1).unwrap_err();
            assert!(e.to_string().contains("no usable quote for SPY x"), "{e}");
        }
        let q = Quote {
            bid: p(0.0),
            ask: p(0.05),
        };
        assert!(leg_price(&touch, "x", &q, -1).is_err());
        assert_eq!(leg_price(&touch, "x", &q, 1), Ok(p(0.05)));
    }

    #[test]
    fn a_vertical_fills_whole_or_not_at_all_against_its_limit() {
        let cfg = PaperConfig::default();
        let (short, long) = (
            testkit::option("SPY", OptionRight::Call, 100.0),
            testkit::option("SPY", OptionRight::Call, 105.0),
        );
        let quote = |i: &Instrument| {
            if *i == short {
                Some(Quote {
                    bid: p(2.00),
                    ask: p(2.05),
                })
            } else if *i == long {
                Some(Quote {
                    bid: p(1.10),
                    ask: p(1.15),
                })
            } else {
                None
            }
        };
        let id = ClientOrderId::new(
            Intent::Entry,
            "s",
            testkit::as_of(),
            chrono::NaiveTime::from_hms_opt(9, 35, 0).unwrap(),
            0,
        )
        .unwrap();
        let legs = vec![
            Leg::new(short.clone(), -2).unwrap(),
            Leg::new(long.clone(), 2).unwrap(),
        ];
        // Credit of at least 0.85: net −0.85 per unit.
        let mut order = Order::new_checked(id, legs, OrderType::Limit(p(-0.85))).unwrap();
        let priced = price_order(&cfg, &order, &quote).unwrap();
        assert_eq!(priced, [(p(2.00), p(1.30)), (p(1.15), p(1.30))]);
        order.order_type = OrderType::Limit(p(-0.86));
        assert_eq!(
            price_order(&cfg, &order, &quote).unwrap_err(),
            Refusal::LimitNotMarketable {
                limit: p(-0.86),
                price: p(-0.85)
            }
        );
        // A leg without a quote refuses the whole order.
        order.order_type = OrderType::Market;
        order.legs[1].instrument = testkit::option("SPY", OptionRight::Call, 110.0);
        assert!(matches!(
            price_order(&cfg, &order, &quote),
            Err(Refusal::Missing { .. })
        ));
    }

    #[test]
    fn futures_fill_on_the_tick_with_their_own_commission() {
        let mes = Instrument::Future(crate::trading::futures::parse("MESM25").unwrap());
        let quote = |_: &Instrument| {
            Some(Quote {
                bid: p(5000.0),
                ask: p(5000.25),
            })
        };
        let id = |seq| {
            ClientOrderId::new(
                Intent::Entry,
                "s",
                testkit::as_of(),
                chrono::NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
                seq,
            )
            .unwrap()
        };
        let order = |seq, q| {
            Order::new_checked(
                id(seq),
                vec![Leg::new(mes.clone(), q).unwrap()],
                OrderType::Market,
            )
            .unwrap()
        };
        let cfg = PaperConfig::default();
        assert_eq!(
            price_order(&cfg, &order(0, 3), &quote).unwrap(),
            [(p(5000.25), p(1.86))]
        );
        // Half way to the mid (5000.0625 from the ask) rounds to the tick away from the
        // account: a buy pays 5000.25, a sell gets 5000.00.
        let half = PaperConfig {
            toward_mid: 0.5,
            ..cfg
        };
        assert_eq!(
            price_order(&half, &order(1, 1), &quote).unwrap()[0].0,
            p(5000.25)
        );
        assert_eq!(
            price_order(&half, &order(2, -1), &quote).unwrap()[0].0,
            p(5000.0)
        );
    }
}
