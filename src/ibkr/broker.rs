//! The `ibkr` broker: approved orders go to IB's paper account through TWS or IB
//! Gateway (`[broker] kind = "ibkr"`).
//!
//! - The router has committed the order's intent before [`IbkrBroker::submit`] runs;
//!   the order's reference travels as IB's `orderRef`, and `submit` first looks the
//!   reference up at IB (open and completed orders): an order IB already knows is never
//!   sent again.
//! - Legs on one underlying go as one order: a single leg as an option (or share) order,
//!   several as a BAG combo (symbol set, legs by conId, ratios reduced). An order with
//!   legs on several underlyings (dispersion) goes as one IB order per underlying, with
//!   references `<ref>#1`, `<ref>#2`, ...
//! - The limit starts at the mid of the snapshot's quotes and is stepped toward the
//!   natural price `[ibkr] reprice_steps` times, `reprice_wait_secs` apart (never past
//!   the order's own limit); still unfilled, it is cancelled and recorded as cancelled
//!   with the prices tried.
//! - Executions (IB's exec ids kept) and their commission reports become fills; the
//!   executions of a combo's legs, not the combo's own summary execution.
//! - Settlement orders (expiry, assignment) are not sent: IB settles those itself; they
//!   are booked by the paper broker's settlement path at the exchange's prices.

use super::{contract_of, Session};
use crate::broker::paper::{PaperBroker, PaperConfig};
use crate::broker::{Broker, BrokerError, BrokerOrder, Execution};
use crate::config::IbkrConfig;
use crate::model::identifiers::OccSymbol;
use crate::model::instrument::{Instrument, OptionContract};
use crate::model::{OptionRight, Price};
use crate::trading::risk::RiskApproved;
use crate::trading::{Leg, Order, OrderStatus, OrderType};
use chrono::{NaiveDate, NaiveDateTime};
use duckdb::Connection;
use ibapi::contracts::{ComboLeg, Contract, Currency, Exchange, LegAction, SecurityType, Symbol};
use ibapi::orders::{Action, OrderStatusKind, PlaceOrder};
use ibapi::subscriptions::SubscriptionItem;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NAME: &str = "ibkr";

pub struct IbkrBroker<'c> {
    cfg: IbkrConfig,
    session: Option<Arc<Session>>,
    /// Quotes of the snapshot (for the mid and the natural), and the settlement path.
    paper: PaperBroker<'c>,
    /// Why this process cancelled an order (by reference), for the record.
    cancelled: HashMap<String, String>,
    /// Contract ids learned, by instrument key.
    con_ids: HashMap<String, i32>,
}

/// One IB order of an optdesk order: the legs of one underlying.
struct Part {
    order_ref: String,
    /// (leg index in the optdesk order, leg).
    legs: Vec<(usize, Leg)>,
}

/// A part as IB takes it: the contract (a BAG for several legs), the side, the number
/// of units, and each leg's signed units per unit.
struct IbOrder {
    contract: Contract,
    action: Action,
    quantity: i64,
    ratios: Vec<(i64, Leg)>,
}

/// What IB knows of one part of our orders.
#[derive(Debug)]
struct KnownPart {
    status: OrderStatusKind,
    filled: f64,
    order_ref: String,
    /// IB's warning or rejection text, when it gave one.
    warning: String,
}

/// What IB knows of one of our orders (all its parts), by IB order id.
#[derive(Debug, Default)]
struct Known {
    parts: BTreeMap<i32, KnownPart>,
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

impl<'c> IbkrBroker<'c> {
    pub fn new(
        conn: &'c Connection,
        cfg: &IbkrConfig,
        paper: PaperConfig,
        as_of: NaiveDate,
        quote_time: NaiveDateTime,
    ) -> Self {
        IbkrBroker {
            cfg: cfg.clone(),
            session: None,
            paper: PaperBroker::new(conn, paper, as_of, quote_time),
            cancelled: HashMap::new(),
            con_ids: HashMap::new(),
        }
    }

    fn session(&mut self) -> Result<Arc<Session>, BrokerError> {
        if let Some(s) = &self.session {
            if s.client.is_connected() {
                return Ok(s.clone());
            }
        }
        let s = super::session(&self.cfg)?;
        self.session = Some(s.clone());
        Ok(s)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.request_timeout_secs)
    }

    /// The time left until `deadline` (a request's bound), or the timeout.
    fn left_until(&self, deadline: Instant) -> Result<Duration, BrokerError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(BrokerError::Timeout {
                broker: NAME,
                secs: self.cfg.request_timeout_secs,
            });
        }
        Ok(left)
    }

    /// Whether the paper book holds this order (a settlement booked here).
    fn settled_here(&mut self, order_ref: &str) -> Result<Option<BrokerOrder>, BrokerError> {
        self.paper.order_status(order_ref)
    }

    /// The order's parts: one per underlying, in the legs' order.
    fn parts(order: &Order) -> Vec<Part> {
        let mut by: Vec<(String, Vec<(usize, Leg)>)> = Vec::new();
        for (i, l) in order.legs.iter().enumerate() {
            let u = l.instrument.underlying().to_string();
            match by.iter_mut().find(|(k, _)| *k == u) {
                Some((_, v)) => v.push((i, l.clone())),
                None => by.push((u, vec![(i, l.clone())])),
            }
        }
        let reference = order.reference();
        let n = by.len();
        by.into_iter()
            .enumerate()
            .map(|(k, (_, legs))| Part {
                order_ref: if n == 1 {
                    reference.clone()
                } else {
                    format!("{reference}#{}", k + 1)
                },
                legs,
            })
            .collect()
    }

    /// IB's contract id of an instrument, from contract details.
    fn con_id(&mut self, s: &Session, i: &Instrument) -> Result<i32, BrokerError> {
        let key = i.key();
        if let Some(id) = self.con_ids.get(&key) {
            return Ok(*id);
        }
        let c = contract_of(i);
        let what = format!("contract details of {}", key.trim());
        let sub = s
            .client
            .contract_details_stream(&c)
            .subscribe()
            .map_err(|e| s.err(e, &what))?;
        let rows = sub
            .collect_to_end_within(self.timeout())
            .map_err(|e| s.err(e, &what))?;
        let id = match rows.as_slice() {
            [one] => one.contract.contract_id,
            [] => {
                return Err(BrokerError::Rejected {
                    broker: NAME,
                    code: "200".into(),
                    reason: format!("IB does not know {}", key.trim()),
                })
            }
            many => {
                // Several listings (SPX and SPXW of one date): the trading class decides.
                let class = c.trading_class.clone();
                many.iter()
                    .find(|d| d.contract.trading_class == class)
                    .unwrap_or(&many[0])
                    .contract
                    .contract_id
            }
        };
        self.con_ids.insert(key, id);
        Ok(id)
    }

    /// The IB contract and order side/quantity of a part: a single leg as itself, several
    /// as a BAG bought `unit` times.
    fn part_contract(&mut self, s: &Session, part: &Part) -> Result<IbOrder, BrokerError> {
        if let [(_, leg)] = part.legs.as_slice() {
            let mut c = contract_of(&leg.instrument);
            c.contract_id = self.con_id(s, &leg.instrument)?;
            let action = if leg.quantity > 0 {
                Action::Buy
            } else {
                Action::Sell
            };
            return Ok(IbOrder {
                contract: c,
                action,
                quantity: leg.quantity.abs(),
                ratios: vec![(leg.quantity.signum(), leg.clone())],
            });
        }
        let unit = part
            .legs
            .iter()
            .fold(0, |g, (_, l)| gcd(g, l.quantity))
            .max(1);
        let mut combo_legs = Vec::new();
        let mut ratios = Vec::new();
        for (_, l) in &part.legs {
            let id = self.con_id(s, &l.instrument)?;
            combo_legs.push(ComboLeg {
                contract_id: id,
                ratio: (l.quantity.abs() / unit) as i32,
                action: if l.quantity > 0 {
                    LegAction::Buy
                } else {
                    LegAction::Sell
                },
                exchange: "SMART".into(),
                ..Default::default()
            });
            ratios.push((l.quantity / unit, l.clone()));
        }
        let underlying = part.legs[0].1.instrument.underlying().to_string();
        let c = Contract {
            symbol: Symbol::from(underlying.as_str()),
            security_type: SecurityType::Spread,
            exchange: Exchange::from("SMART"),
            currency: Currency::from("USD"),
            combo_legs,
            ..Default::default()
        };
        Ok(IbOrder {
            contract: c,
            action: Action::Buy,
            quantity: unit,
            ratios,
        })
    }

    /// The prices to try for a part, per unit of the IB order as IB takes its limit
    /// (a single sell leg: the positive price received; a BAG: the net paid, negative
    /// for a credit): the mid first, then `reprice_steps` steps to the natural.
    fn ladder(
        &self,
        ratios: &[(i64, Leg)],
        action: Action,
        limit: Option<Price>,
    ) -> Result<Vec<f64>, BrokerError> {
        let (mut mid, mut natural) = (0.0, 0.0);
        for (r, l) in ratios {
            let Some(q) = self.paper.quote(&l.instrument) else {
                return Err(BrokerError::Rejected {
                    broker: NAME,
                    code: "no_quote".into(),
                    reason: format!(
                        "no quote for {} in the snapshot to price the limit from",
                        l.instrument.key().trim()
                    ),
                });
            };
            let (bid, ask) = (q.bid.to_f64(), q.ask.to_f64());
            if !(ask > 0.0 && bid <= ask) {
                return Err(BrokerError::Rejected {
                    broker: NAME,
                    code: "no_quote".into(),
                    reason: format!(
                        "no usable quote for {} (bid {bid}, ask {ask})",
                        l.instrument.key().trim()
                    ),
                });
            }
            mid += *r as f64 * 0.5 * (bid + ask);
            natural += *r as f64 * if *r > 0 { ask } else { bid };
        }
        // `mid`/`natural` are paid per unit (negative = received).
        let steps = self.cfg.reprice_steps;
        let mut out = Vec::new();
        for k in 0..=steps {
            let f = if steps == 0 {
                0.0
            } else {
                k as f64 / steps as f64
            };
            let mut pay = mid + (natural - mid) * f;
            if let Some(l) = limit {
                pay = pay.min(l.to_f64());
            }
            let pay = (pay * 100.0).round() / 100.0;
            let ib = if ratios.len() == 1 && action == Action::Sell {
                -pay
            } else {
                pay
            };
            if out.last() != Some(&ib) {
                out.push(ib);
            }
        }
        Ok(out)
    }

    /// What IB knows of our reference (every part): open orders, then completed ones.
    fn lookup(&mut self, reference: &str) -> Result<Known, BrokerError> {
        let s = self.session()?;
        let t = self.timeout();
        let mut known = Known::default();
        let matches = |r: &str| r == reference || r.starts_with(&format!("{reference}#"));
        let what = format!("the open orders (looking for {reference})");
        let sub = s.client.all_open_orders().map_err(|e| s.err(e, &what))?;
        let mut statuses: HashMap<i32, (OrderStatusKind, f64, f64)> = HashMap::new();
        let mut refs: HashMap<i32, (String, OrderStatusKind, String)> = HashMap::new();
        for item in sub.collect_to_end_within(t).map_err(|e| s.err(e, &what))? {
            match item {
                ibapi::orders::Orders::OrderData(d) => {
                    refs.insert(
                        d.order_id,
                        (
                            d.order.order_ref.clone(),
                            d.order_state.status.clone(),
                            d.order_state.warning_text.clone(),
                        ),
                    );
                }
                ibapi::orders::Orders::OrderStatus(st) => {
                    statuses.insert(st.order_id, (st.status.clone(), st.filled, st.remaining));
                }
            }
        }
        drop(sub);
        let what = format!("the completed orders (looking for {reference})");
        let sub = s
            .client
            .completed_orders(true)
            .map_err(|e| s.err(e, &what))?;
        for item in sub.collect_to_end_within(t).map_err(|e| s.err(e, &what))? {
            if let ibapi::orders::Orders::OrderData(d) = item {
                let filled = d.order.filled_quantity;
                refs.insert(
                    d.order.order_id.max(d.order_id),
                    (
                        d.order.order_ref.clone(),
                        d.order_state.status.clone(),
                        d.order_state.warning_text.clone(),
                    ),
                );
                statuses.entry(d.order.order_id.max(d.order_id)).or_insert((
                    d.order_state.status.clone(),
                    filled,
                    0.0,
                ));
            }
        }
        for (id, (r, status, warning)) in refs {
            if !matches(&r) {
                continue;
            }
            let (status, filled) = statuses
                .get(&id)
                .map(|(st, filled, _)| (st.clone(), *filled))
                .unwrap_or((status, 0.0));
            known.parts.insert(
                id,
                KnownPart {
                    status,
                    filled,
                    order_ref: r,
                    warning,
                },
            );
        }
        Ok(known)
    }

    /// Send one part and work it: each price of the ladder for `reprice_wait_secs`,
    /// then cancel. Returns the IB order id and, when it was cancelled, why.
    fn work(
        &mut self,
        s: &Session,
        part: &Part,
        ib: &IbOrder,
        ladder: &[f64],
        account: &str,
    ) -> Result<(i32, Option<String>), BrokerError> {
        let (contract, action, quantity) = (&ib.contract, ib.action, ib.quantity);
        let id = s
            .client
            .next_valid_order_id()
            .map_err(|e| s.err(e, "the next order id"))?;
        let wait = Duration::from_secs_f64(self.cfg.reprice_wait_secs);
        let is_combo = contract.security_type == SecurityType::Spread;
        for (k, price) in ladder.iter().enumerate() {
            let mut o = if is_combo {
                ibapi::orders::order_builder::combo_limit_order(action, quantity as f64, *price)
            } else {
                ibapi::orders::order_builder::limit_order(action, quantity as f64, *price)
            };
            o.order_ref = part.order_ref.clone();
            o.account = account.to_string();
            o.tif = ibapi::orders::TimeInForce::Day;
            let what = format!(
                "order {} ({})",
                part.order_ref,
                if k == 0 { "placed" } else { "re-priced" }
            );
            let sub = s
                .client
                .place_order(id, contract, &o)
                .map_err(|e| s.err(e, &what))?;
            if k == 0 {
                crate::failpoint::hit(NAME, "after_send").map_err(|m| BrokerError::Other {
                    broker: NAME,
                    reason: m,
                })?;
            }
            let deadline = Instant::now() + wait;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match sub.next_timeout(left) {
                    Some(Ok(SubscriptionItem::Data(PlaceOrder::OrderStatus(st)))) => {
                        match st.status {
                            OrderStatusKind::Filled if st.remaining <= 0.0 => {
                                return Ok((id, None));
                            }
                            OrderStatusKind::Cancelled | OrderStatusKind::ApiCancelled => {
                                return Ok((id, Some("cancelled by IB".into())));
                            }
                            OrderStatusKind::Inactive => {
                                return Err(BrokerError::Rejected {
                                    broker: NAME,
                                    code: "inactive".into(),
                                    reason: format!(
                                        "IB made order {} inactive (rejected: {})",
                                        part.order_ref,
                                        if st.why_held.is_empty() {
                                            "no reason given"
                                        } else {
                                            &st.why_held
                                        }
                                    ),
                                });
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(ibapi::Error::Notice(n))) => {
                        let (class, advice) = super::classify(n.code, &n.message);
                        if matches!(class, super::Class::Info | super::Class::Warning) {
                            continue;
                        }
                        let reason = if advice.is_empty() {
                            format!("{} ({})", n.message, n.code)
                        } else {
                            format!("{} ({}) — {advice}", n.message, n.code)
                        };
                        return Err(BrokerError::Rejected {
                            broker: NAME,
                            code: n.code.to_string(),
                            reason,
                        });
                    }
                    Some(Err(e)) => return Err(s.err(e, &what).into()),
                    None => {
                        if !s.client.is_connected() {
                            return Err(BrokerError::Disconnected {
                                broker: NAME,
                                reason: format!(
                                    "the connection dropped while {} was working",
                                    part.order_ref
                                ),
                            });
                        }
                        std::thread::sleep(Duration::from_millis(20).min(left));
                    }
                }
            }
        }
        // Unfilled at every price: cancel, and wait for IB to confirm.
        let tried = ladder
            .iter()
            .map(|p| format!("{p:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        let why = format!(
            "not filled at {} price(s) from the mid toward the natural ({tried}), {} s each; cancelled",
            ladder.len(),
            self.cfg.reprice_wait_secs
        );
        let what = format!("cancelling order {}", part.order_ref);
        let sub = s.client.cancel_order(id, "").map_err(|e| s.err(e, &what))?;
        let deadline = Instant::now() + self.timeout();
        loop {
            let left = self.left_until(deadline)?;
            match sub.next_timeout(left) {
                Some(Ok(SubscriptionItem::Data(ibapi::orders::CancelOrder::OrderStatus(st)))) => {
                    match st.status {
                        OrderStatusKind::Cancelled | OrderStatusKind::ApiCancelled => break,
                        OrderStatusKind::Filled if st.remaining <= 0.0 => return Ok((id, None)),
                        _ => {}
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(ibapi::Error::Notice(n))) if n.code == 202 => break,
                Some(Err(e)) => return Err(s.err(e, &what).into()),
                None => std::thread::sleep(Duration::from_millis(20).min(left)),
            }
        }
        Ok((id, Some(why)))
    }
}

/// The instrument an IB contract is, for reconciling positions and executions.
pub fn instrument_of(c: &Contract) -> Option<Instrument> {
    match c.security_type {
        SecurityType::Stock => Instrument::equity(&c.symbol.to_string()).ok(),
        SecurityType::Option => {
            let expiry =
                NaiveDate::parse_from_str(c.last_trade_date_or_contract_month.get(..8)?, "%Y%m%d")
                    .ok()?;
            let right = match c.right? {
                ibapi::contracts::OptionRight::Call => OptionRight::Call,
                ibapi::contracts::OptionRight::Put => OptionRight::Put,
            };
            let underlying = c.symbol.to_string();
            let root = if c.trading_class.is_empty() {
                underlying.clone()
            } else {
                c.trading_class.clone()
            };
            let occ =
                OccSymbol::new_checked(&root, expiry, right, Price::from_f64(c.strike)).ok()?;
            let mut o = OptionContract::listed(&underlying, occ).ok()?;
            if let Ok(m) = c.multiplier.parse::<f64>() {
                if m >= 1.0 {
                    o.multiplier = m as i64;
                }
            }
            Some(Instrument::Option(o))
        }
        _ => None,
    }
}

/// An execution's time ("YYYYMMDD HH:MM:SS[ zone]" or "YYYYMMDD-HH:MM:SS"), New York.
fn exec_time(t: &str) -> Option<NaiveDateTime> {
    let head = t.get(..17)?.replace('-', " ");
    NaiveDateTime::parse_from_str(&head, "%Y%m%d %H:%M:%S").ok()
}

impl Broker for IbkrBroker<'_> {
    fn name(&self) -> &'static str {
        NAME
    }

    fn submit(
        &mut self,
        order: &RiskApproved<Order>,
        at: NaiveDateTime,
    ) -> Result<String, BrokerError> {
        let o = order.inner();
        if o.order_type == OrderType::Settlement {
            return self.paper.submit(order, at);
        }
        let reference = o.reference();
        // What IB already has of this order (a run that died after sending some or all
        // of its parts) is never sent again; only the parts it lacks are.
        let known: HashMap<String, i32> = self
            .lookup(&reference)?
            .parts
            .into_iter()
            .map(|(id, p)| (p.order_ref, id))
            .collect();
        let parts = Self::parts(o);
        if parts.iter().all(|p| known.contains_key(&p.order_ref)) {
            return Ok(parts
                .iter()
                .map(|p| known[&p.order_ref].to_string())
                .collect::<Vec<_>>()
                .join(","));
        }
        let s = self.session()?;
        let account = s.trading_account()?.to_string();
        let limit = match o.order_type {
            OrderType::Limit(p) if parts.len() == 1 => Some(p),
            _ => None,
        };
        // Price every part before sending any: a part that cannot be priced rejects the
        // whole order before IB sees it.
        let mut ready = Vec::new();
        for part in parts.iter().filter(|p| !known.contains_key(&p.order_ref)) {
            let ib = self.part_contract(&s, part)?;
            let ladder = self.ladder(&ib.ratios, ib.action, limit)?;
            ready.push((ib, ladder));
        }
        let mut ready = ready.into_iter();
        let mut ids = Vec::new();
        let mut why_cancelled = Vec::new();
        for part in &parts {
            if let Some(id) = known.get(&part.order_ref) {
                ids.push(id.to_string());
                continue;
            }
            let (ib, ladder) = ready.next().expect("one priced part per unknown part");
            let (id, cancelled) = self.work(&s, part, &ib, &ladder, &account)?;
            ids.push(id.to_string());
            if let Some(w) = cancelled {
                why_cancelled.push(if parts.len() == 1 {
                    w
                } else {
                    format!("{}: {w}", part.order_ref)
                });
            }
        }
        if !why_cancelled.is_empty() {
            self.cancelled.insert(reference, why_cancelled.join("; "));
        }
        Ok(ids.join(","))
    }

    fn order_status(&mut self, order_ref: &str) -> Result<Option<BrokerOrder>, BrokerError> {
        if let Some(b) = self.settled_here(order_ref)? {
            return Ok(Some(b));
        }
        let known = self.lookup(order_ref)?;
        if known.parts.is_empty() {
            return Ok(None);
        }
        let ids = known
            .parts
            .keys()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let all = |f: &dyn Fn(&OrderStatusKind) -> bool| known.parts.values().all(|p| f(&p.status));
        let any_filled = known.parts.values().any(|p| p.filled > 0.0);
        let (status, reason) = if all(&|s| *s == OrderStatusKind::Filled) {
            (OrderStatus::Filled, None)
        } else if all(&|s| {
            matches!(
                s,
                OrderStatusKind::Cancelled
                    | OrderStatusKind::ApiCancelled
                    | OrderStatusKind::Filled
            )
        }) {
            let why = self
                .cancelled
                .get(order_ref)
                .cloned()
                .unwrap_or_else(|| "cancelled at IB".into());
            (
                if any_filled {
                    OrderStatus::PartlyFilled
                } else {
                    OrderStatus::Cancelled
                },
                Some(why),
            )
        } else if known
            .parts
            .values()
            .any(|p| p.status == OrderStatusKind::Inactive)
        {
            let w = known
                .parts
                .values()
                .map(|p| p.warning.clone())
                .find(|w| !w.is_empty())
                .unwrap_or_else(|| "inactive at IB".into());
            (OrderStatus::Rejected, Some(w))
        } else {
            (OrderStatus::Submitted, None)
        };
        Ok(Some(BrokerOrder {
            order_ref: order_ref.to_string(),
            broker_order_id: ids,
            status,
            reason,
        }))
    }

    fn executions(&mut self, order: &Order) -> Result<Vec<Execution>, BrokerError> {
        let reference = order.reference();
        if order.order_type == OrderType::Settlement || self.settled_here(&reference)?.is_some() {
            return self.paper.executions(order);
        }
        let s = self.session()?;
        let what = format!("the executions of {reference}");
        let sub = s
            .client
            .executions(ibapi::orders::ExecutionFilter::default())
            .map_err(|e| s.err(e, &what))?;
        let items = sub
            .collect_to_end_within(self.timeout())
            .map_err(|e| s.err(e, &what))?;
        let mut commissions: HashMap<String, f64> = HashMap::new();
        let mut execs = Vec::new();
        for item in items {
            match item {
                ibapi::orders::Executions::ExecutionData(d) => execs.push(d),
                ibapi::orders::Executions::CommissionReport(c) => {
                    commissions.insert(c.execution_id.clone(), c.commission);
                }
            }
        }
        let decided = order.id.at;
        let mut out = Vec::new();
        for d in execs {
            let r = &d.execution.order_reference;
            if !(*r == reference || r.starts_with(&format!("{reference}#"))) {
                continue;
            }
            // A combo's own summary execution: its legs' executions are the fills.
            if d.contract.security_type == SecurityType::Spread {
                continue;
            }
            let Some(inst) = instrument_of(&d.contract) else {
                continue;
            };
            let key = inst.key();
            let Some(leg) = order.legs.iter().position(|l| l.instrument.key() == key) else {
                continue;
            };
            let sign = match d.execution.side {
                ibapi::orders::ExecutionSide::Bought => 1,
                ibapi::orders::ExecutionSide::Sold => -1,
            };
            // The run's clock is the truth for a run on a simulated date; a real
            // execution is never after the run that records it.
            let at = exec_time(&d.execution.time)
                .filter(|t| t.date() <= self.paper_at().date() && t.date() >= decided.date())
                .unwrap_or_else(|| self.paper_at());
            out.push(Execution {
                exec_id: d.execution.execution_id.clone(),
                order_ref: reference.clone(),
                leg,
                broker_order_id: d.execution.order_id.to_string(),
                at,
                quantity: sign * d.execution.shares.round() as i64,
                price: Price::from_f64(d.execution.price),
                commission: Price::from_f64(
                    commissions
                        .get(&d.execution.execution_id)
                        .copied()
                        .unwrap_or(0.0),
                ),
            });
        }
        out.sort_by(|a, b| (a.at, &a.exec_id).cmp(&(b.at, &b.exec_id)));
        Ok(out)
    }

    fn open_orders(&mut self) -> Result<Vec<BrokerOrder>, BrokerError> {
        let s = self.session()?;
        let what = "the open orders";
        let sub = s.client.all_open_orders().map_err(|e| s.err(e, what))?;
        let mut out = Vec::new();
        for item in sub
            .collect_to_end_within(self.timeout())
            .map_err(|e| s.err(e, what))?
        {
            if let ibapi::orders::Orders::OrderData(d) = item {
                if d.order.order_ref.is_empty() {
                    continue;
                }
                out.push(BrokerOrder {
                    order_ref: d.order.order_ref.clone(),
                    broker_order_id: d.order_id.to_string(),
                    status: OrderStatus::Submitted,
                    reason: None,
                });
            }
        }
        Ok(out)
    }

    fn positions(&mut self) -> Result<Vec<(String, i64)>, BrokerError> {
        let s = self.session()?;
        let account = s.trading_account()?.to_string();
        let what = "the positions";
        let sub = s.client.positions().map_err(|e| s.err(e, what))?;
        let deadline = Instant::now() + self.timeout();
        let mut out: BTreeMap<String, i64> = BTreeMap::new();
        loop {
            let left = self.left_until(deadline)?;
            match sub.next_timeout(left) {
                Some(Ok(SubscriptionItem::Data(ibapi::accounts::PositionUpdate::Position(p)))) => {
                    if p.account != account || p.position == 0.0 {
                        continue;
                    }
                    let key = instrument_of(&p.contract)
                        .map(|i| i.key())
                        .unwrap_or_else(|| {
                            format!(
                                "{} {} (IB conId {})",
                                p.contract.security_type, p.contract.symbol, p.contract.contract_id
                            )
                        });
                    *out.entry(key).or_default() += p.position.round() as i64;
                }
                Some(Ok(SubscriptionItem::Data(ibapi::accounts::PositionUpdate::PositionEnd))) => {
                    break
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(s.err(e, what).into()),
                None => {}
            }
        }
        Ok(out.into_iter().filter(|(_, q)| *q != 0).collect())
    }

    fn cash(&mut self) -> Result<Option<Price>, BrokerError> {
        let s = self.session()?;
        let account = s.trading_account()?.to_string();
        let what = "the account summary";
        let sub = s
            .client
            .account_summary(
                &ibapi::accounts::types::AccountGroup("All".into()),
                &["TotalCashValue"],
            )
            .map_err(|e| s.err(e, what))?;
        let deadline = Instant::now() + self.timeout();
        let mut cash = None;
        loop {
            let left = self.left_until(deadline)?;
            match sub.next_timeout(left) {
                Some(Ok(SubscriptionItem::Data(
                    ibapi::accounts::AccountSummaryResult::Summary(r),
                ))) if r.account == account && r.tag == "TotalCashValue" => {
                    cash = r.value.trim().parse::<f64>().ok().map(Price::from_f64);
                }
                Some(Ok(SubscriptionItem::Data(ibapi::accounts::AccountSummaryResult::End))) => {
                    break
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(s.err(e, what).into()),
                None => {}
            }
        }
        Ok(cash)
    }

    fn cancel(&mut self, order_ref: &str) -> Result<(), BrokerError> {
        let known = self.lookup(order_ref)?;
        let s = self.session()?;
        for (id, p) in known.parts {
            if matches!(
                p.status,
                OrderStatusKind::Filled
                    | OrderStatusKind::Cancelled
                    | OrderStatusKind::ApiCancelled
            ) {
                continue;
            }
            let what = format!("cancelling order {order_ref}");
            let _sub = s.client.cancel_order(id, "").map_err(|e| s.err(e, &what))?;
        }
        Ok(())
    }
}

impl IbkrBroker<'_> {
    fn paper_at(&self) -> NaiveDateTime {
        self.paper.quote_time()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legs_on_one_underlying_are_one_part_and_ratios_reduce() {
        let at = crate::testkit::as_of().and_hms_opt(9, 35, 0).unwrap();
        let id = crate::model::identifiers::ClientOrderId::new(
            crate::model::identifiers::Intent::Entry,
            "s",
            at.date(),
            at.time(),
            0,
        )
        .unwrap();
        let legs = vec![
            Leg::new(crate::testkit::option("SPY", OptionRight::Call, 100.0), -2).unwrap(),
            Leg::new(crate::testkit::option("SPY", OptionRight::Put, 100.0), -2).unwrap(),
            Leg::new(crate::testkit::option("QQQ", OptionRight::Call, 100.0), 4).unwrap(),
        ];
        let order = Order::new_checked(id, legs, OrderType::Market).unwrap();
        let parts = IbkrBroker::parts(&order);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].order_ref, format!("{}#1", order.reference()));
        assert_eq!(parts[0].legs.len(), 2);
        assert_eq!(parts[1].legs[0].0, 2);
        assert_eq!(gcd(-2, -2), 2);
        assert_eq!(gcd(0, 4), 4);
    }

    #[test]
    fn contracts_map_back_to_instruments() {
        let i = crate::testkit::option("SPY", OptionRight::Put, 95.0);
        let c = contract_of(&i);
        assert_eq!(instrument_of(&c), Some(i));
        assert_eq!(
            instrument_of(&super::super::underlying_contract("SPY")),
            Some(Instrument::equity("SPY").unwrap())
        );
        assert_eq!(
            exec_time("20241121 10:05:03 America/New_York"),
            NaiveDate::from_ymd_opt(2024, 11, 21)
                .unwrap()
                .and_hms_opt(10, 5, 3)
        );
        assert_eq!(
            exec_time("20241121-15:05:03"),
            NaiveDate::from_ymd_opt(2024, 11, 21)
                .unwrap()
                .and_hms_opt(15, 5, 3)
        );
    }
}
