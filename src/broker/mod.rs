//! Brokers: where approved orders are executed, behind one synchronous trait (IBKR's
//! blocking client fits a batch job). `paper` fills from the stored quotes; the order
//! life cycle (intent committed before submission, events appended, fills keyed by
//! execution id) lives in [`router`], the same for every broker, so entries, exits,
//! expiry settlements and `flatten` all take one path.

pub mod paper;
pub mod router;

use crate::config::{Config, ConfigError};
use crate::model::Price;
use crate::trading::risk::RiskApproved;
use crate::trading::{Order, OrderStatus};
use chrono::NaiveDateTime;

/// What a broker says about one of our orders.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerOrder {
    pub order_ref: String,
    pub broker_order_id: String,
    pub status: OrderStatus,
    pub reason: Option<String>,
}

/// One execution of (part of) a leg, as the broker reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    /// Unique per execution (IBKR's execId); a fill is recorded once per exec id.
    pub exec_id: String,
    pub order_ref: String,
    pub leg: usize,
    pub broker_order_id: String,
    pub at: NaiveDateTime,
    /// Signed: positive bought.
    pub quantity: i64,
    pub price: Price,
    pub commission: Price,
}

/// Broker errors, split as barter's `ClientError` is: retry the transient ones, give up
/// on the final ones.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BrokerError {
    #[error("{broker}: connection lost: {reason}")]
    Disconnected {
        broker: &'static str,
        reason: String,
    },
    #[error("{broker}: no answer within {secs} s")]
    Timeout { broker: &'static str, secs: u64 },
    #[error("{broker}: pacing limit hit: {reason}")]
    RateLimited {
        broker: &'static str,
        reason: String,
    },
    /// The broker refused the order: final for this order.
    #[error("rejected by {broker} ({code}): {reason}")]
    Rejected {
        broker: &'static str,
        code: String,
        reason: String,
    },
    #[error("{broker}: {reason}")]
    Other {
        broker: &'static str,
        reason: String,
    },
}

impl BrokerError {
    /// Worth trying again later (the order stays pending or submitted).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            BrokerError::Disconnected { .. }
                | BrokerError::Timeout { .. }
                | BrokerError::RateLimited { .. }
        )
    }
}

/// Executes approved orders. `submit` takes only what the risk gate approved: an order
/// that skipped the gate does not type-check,
///
/// ```compile_fail
/// fn send(b: &mut dyn optdesk::broker::Broker, o: optdesk::trading::Order, at: chrono::NaiveDateTime) {
///     let _ = b.submit(&o, at);
/// }
/// ```
///
/// and cannot be wrapped by hand (only `trading::risk` makes a `RiskApproved`):
///
/// ```compile_fail
/// use optdesk::trading::{risk::RiskApproved, Order};
/// fn wrap(o: Order) -> RiskApproved<Order> {
///     RiskApproved(o)
/// }
/// ```
pub trait Broker {
    fn name(&self) -> &'static str;
    /// A simulated broker (paper) may be sent orders in a dry run, whose record is rolled
    /// back with the rest; a real one is never sent anything in a dry run.
    fn is_simulated(&self) -> bool {
        false
    }
    /// Send an order; returns the broker's order id. A refusal is
    /// [`BrokerError::Rejected`] with the broker's code and reason.
    fn submit(
        &mut self,
        order: &RiskApproved<Order>,
        at: NaiveDateTime,
    ) -> Result<String, BrokerError>;
    /// What the broker knows of an order by our reference; `None` if it never got it.
    fn order_status(&mut self, order_ref: &str) -> Result<Option<BrokerOrder>, BrokerError>;
    /// The executions of an order so far (each mapped to the order's leg it filled).
    fn executions(&mut self, order: &Order) -> Result<Vec<Execution>, BrokerError>;
    /// Orders the broker is still working.
    fn open_orders(&mut self) -> Result<Vec<BrokerOrder>, BrokerError>;
    /// What the broker holds for the account: (instrument key, net quantity), for
    /// reconciling the book against it.
    fn positions(&mut self) -> Result<Vec<(String, i64)>, BrokerError>;
    /// Ask the broker to cancel a working order.
    fn cancel(&mut self, order_ref: &str) -> Result<(), BrokerError>;
    /// The account's cash at the broker, when the broker keeps an account (`None` for
    /// the paper broker, whose cash is the store's).
    fn cash(&mut self) -> Result<Option<Price>, BrokerError> {
        Ok(None)
    }
}

/// The paper broker's settings: `jobs/desk.toml [broker]`, or for the two keys that
/// used to live in `jobs/select_trades.toml [params]`, the value still there (with a
/// note saying where it moved).
pub fn paper_config(config: &Config) -> Result<(paper::PaperConfig, Vec<String>), ConfigError> {
    let b = &config.desk.broker;
    let mut notes = Vec::new();
    let legacy_path = config.dir.join("select_trades.toml");
    let legacy: Option<toml::Table> = config
        .read_text("select_trades.toml")
        .ok()
        .flatten()
        .and_then(|t| t.parse::<toml::Table>().ok());
    let legacy_key = |key: &str| -> Option<f64> {
        legacy
            .as_ref()?
            .get("params")?
            .get(key)
            .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
    };
    let desk_file = config.dir.join("desk.toml").display().to_string();
    let mut pick = |key: &str, desk: Option<f64>, default: f64| -> f64 {
        match (desk, legacy_key(key)) {
            (Some(v), Some(_)) => {
                notes.push(format!(
                    "{}: [params] {key} is ignored: jobs/desk.toml [broker] {key} = {v} applies (remove it from select_trades.toml)",
                    legacy_path.display()
                ));
                v
            }
            (Some(v), None) => v,
            (None, Some(v)) => {
                notes.push(format!(
                    "{}: [params] {key} = {v} still applies, but it moved to jobs/desk.toml [broker] {key}",
                    legacy_path.display()
                ));
                v
            }
            (None, None) => default,
        }
    };
    let d = paper::PaperConfig::default();
    let toward_mid = pick("fill_toward_mid", b.fill_toward_mid, d.toward_mid);
    let per_contract = pick(
        "commission_per_contract",
        b.commission_per_contract,
        d.commission_per_contract.to_f64(),
    );
    let per_share = b
        .commission_per_share
        .unwrap_or(d.commission_per_share.to_f64());
    let per_future = b
        .commission_per_future
        .unwrap_or(d.commission_per_future.to_f64());
    let bad = |message: String| ConfigError::Invalid {
        file: desk_file.clone(),
        message,
    };
    if !(toward_mid.is_finite() && (0.0..=1.0).contains(&toward_mid)) {
        return Err(bad(format!(
            "broker.fill_toward_mid = {toward_mid}: expected 0 (bid/ask) to 1 (mid)"
        )));
    }
    for (k, v) in [
        ("commission_per_contract", per_contract),
        ("commission_per_share", per_share),
        ("commission_per_future", per_future),
    ] {
        if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
            return Err(bad(format!(
                "broker.{k} = {v}: expected dollars from 0 to 100"
            )));
        }
    }
    Ok((
        paper::PaperConfig {
            toward_mid,
            commission_per_contract: Price::from_f64(per_contract),
            commission_per_share: Price::from_f64(per_share),
            commission_per_future: Price::from_f64(per_future),
        },
        notes,
    ))
}

/// Compare the store's open positions (summed over strategies, by instrument) and cash
/// with what the broker reports; every difference, in words. Positions are compared
/// with every broker; cash with one that keeps an account.
pub fn reconcile(
    conn: &duckdb::Connection,
    broker: &mut dyn Broker,
    as_of: chrono::NaiveDate,
) -> Result<Reconciled, String> {
    use std::collections::BTreeMap;
    let mut ours: BTreeMap<String, i64> = BTreeMap::new();
    for p in
        crate::store::repo::positions::open_positions(conn, as_of).map_err(|e| e.to_string())?
    {
        *ours.entry(p.instrument.key()).or_default() += p.quantity;
    }
    ours.retain(|_, q| *q != 0);
    let theirs: BTreeMap<String, i64> = broker
        .positions()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|(_, q)| *q != 0)
        .collect();
    let mut differences = Vec::new();
    for (k, q) in &ours {
        match theirs.get(k) {
            None => differences.push(format!(
                "{}: the store holds {q}, {} holds none",
                k.trim(),
                broker.name()
            )),
            Some(t) if t != q => differences.push(format!(
                "{}: the store holds {q}, {} holds {t}",
                k.trim(),
                broker.name()
            )),
            _ => {}
        }
    }
    for (k, t) in &theirs {
        if !ours.contains_key(k) {
            differences.push(format!(
                "{}: {} holds {t}, the store holds none",
                k.trim(),
                broker.name()
            ));
        }
    }
    let cash = crate::store::repo::day::cash(conn, as_of).map_err(|e| e.to_string())?;
    let broker_cash = broker.cash().map_err(|e| e.to_string())?;
    if let Some(b) = broker_cash {
        if b != cash {
            differences.push(format!(
                "cash: the store has {cash}, {} reports {b} (difference {})",
                broker.name(),
                b - cash
            ));
        }
    }
    Ok(Reconciled {
        positions: ours.len(),
        cash,
        broker_cash,
        differences,
    })
}

/// What [`reconcile`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Reconciled {
    /// Instruments the store holds.
    pub positions: usize,
    pub cash: Price,
    pub broker_cash: Option<Price>,
    pub differences: Vec<String>,
}
