//! One path for every order, whatever the broker: the intent is written and committed
//! before the broker sees it; the broker's acceptance is an appended `submitted` event,
//! committed at once; its executions become fills keyed by execution id; the end of
//! the order's life (filled, rejected, ...) is another event. A run that dies anywhere
//! leaves either nothing or an intent that [`Router::resume_open`] completes on the next
//! run by asking the broker, never by sending it twice.

use super::{Broker, BrokerError, Execution};
use crate::store::repo::orders::{self, OpenOrder};
use crate::store::repo::RepoError;
use crate::trading::risk::{resume_recorded, RiskApproved};
use crate::trading::{CashKind, Fill, Order, OrderStatus};
use chrono::NaiveDateTime;
use duckdb::Connection;

#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("{0}")]
    Repo(#[from] RepoError),
    #[error("{0}")]
    Broker(#[from] BrokerError),
    #[error("could not commit the order's record: {0}")]
    Commit(duckdb::Error),
    #[error("{0}")]
    Failpoint(String),
}

/// Where an order stands after the router handled it.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub order_ref: String,
    pub status: OrderStatus,
    /// Why it was rejected, or why it is still pending (a retryable broker error).
    pub reason: Option<String>,
    /// Fills recorded by this call.
    pub fills: Vec<Fill>,
}

pub struct Router<'a> {
    conn: &'a Connection,
    broker: &'a mut dyn Broker,
    /// The job placing orders (for failpoints).
    job: &'static str,
    run_id: i64,
    /// The snapshot time orders are decided and sent at (New York).
    at: NaiveDateTime,
    /// Commits what is written so far (a no-op in a dry run).
    checkpoint: &'a dyn Fn() -> Result<(), duckdb::Error>,
}

impl<'a> Router<'a> {
    pub fn new(
        conn: &'a Connection,
        broker: &'a mut dyn Broker,
        job: &'static str,
        run_id: i64,
        at: NaiveDateTime,
        checkpoint: &'a dyn Fn() -> Result<(), duckdb::Error>,
    ) -> Self {
        Router {
            conn,
            broker,
            job,
            run_id,
            at,
            checkpoint,
        }
    }

    fn commit(&self) -> Result<(), RouterError> {
        (self.checkpoint)().map_err(RouterError::Commit)
    }

    /// Place one approved order: intent, commit, submit, record.
    pub fn place(&mut self, approved: RiskApproved<Order>) -> Result<Placed, RouterError> {
        let broker = self.broker.name();
        orders::write_intent(self.conn, approved.inner(), self.at, broker, self.run_id)?;
        self.commit()?;
        self.send(approved)
    }

    fn send(&mut self, approved: RiskApproved<Order>) -> Result<Placed, RouterError> {
        let broker = self.broker.name();
        let reference = approved.inner().reference();
        match self.broker.submit(&approved, self.at) {
            Ok(broker_order_id) => {
                orders::append_event(
                    self.conn,
                    &reference,
                    OrderStatus::Submitted,
                    self.at,
                    broker,
                    Some(&broker_order_id),
                    None,
                    self.run_id,
                )?;
                // The broker has it: so must the store, before anything else can fail.
                self.commit()?;
                crate::failpoint::hit(self.job, "after_submit").map_err(RouterError::Failpoint)?;
                self.collect(approved.inner(), OrderStatus::Submitted)
            }
            Err(e @ BrokerError::Rejected { .. }) => {
                let why = e.to_string();
                orders::append_event(
                    self.conn,
                    &reference,
                    OrderStatus::Rejected,
                    self.at,
                    broker,
                    None,
                    Some(&why),
                    self.run_id,
                )?;
                Ok(Placed {
                    order_ref: reference,
                    status: OrderStatus::Rejected,
                    reason: Some(why),
                    fills: Vec::new(),
                })
            }
            Err(e) if e.is_retryable() => Ok(Placed {
                order_ref: reference,
                status: OrderStatus::Pending,
                reason: Some(format!("{e}; the next run tries again")),
                fills: Vec::new(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Record the broker's executions of an order not yet recorded, and the status
    /// they make.
    fn collect(&mut self, order: &Order, mut status: OrderStatus) -> Result<Placed, RouterError> {
        let broker = self.broker.name();
        let reference = order.reference();
        let executions = self.broker.executions(&reference)?;
        let mut fills = Vec::new();
        for e in &executions {
            let f = fill_of(order, e);
            if orders::write_fill(self.conn, &f, self.run_id)? {
                fills.push(f);
            }
        }
        let done = orders::filled_by_leg(self.conn, &reference)?;
        let complete = order
            .legs
            .iter()
            .enumerate()
            .all(|(i, l)| done.iter().any(|(leg, q)| *leg == i && *q == l.quantity));
        let next = if complete {
            Some(OrderStatus::Filled)
        } else if !fills.is_empty() {
            Some(OrderStatus::PartlyFilled)
        } else {
            None
        };
        if let Some(next) = next.filter(|n| *n != status || *n == OrderStatus::PartlyFilled) {
            let last = executions.last().map_or(self.at, |e| e.at);
            status = orders::append_event(
                self.conn,
                &reference,
                next,
                last,
                broker,
                None,
                None,
                self.run_id,
            )?;
        }
        Ok(Placed {
            order_ref: reference,
            status,
            reason: None,
            fills,
        })
    }

    /// Complete the orders a crash or an unfinished broker left open (pending,
    /// submitted, partly filled): ask the broker what it has; send only what it never
    /// got.
    pub fn resume_open(&mut self) -> Result<Vec<Placed>, RouterError> {
        let broker = self.broker.name();
        let mut out = Vec::new();
        for OpenOrder {
            order,
            status,
            broker: b,
            ..
        } in orders::open_orders(self.conn)?
        {
            if b != broker {
                continue;
            }
            let reference = order.reference();
            match self.broker.order_status(&reference)? {
                Some(known) => {
                    if status == OrderStatus::Pending {
                        orders::append_event(
                            self.conn,
                            &reference,
                            OrderStatus::Submitted,
                            self.at,
                            broker,
                            Some(&known.broker_order_id),
                            None,
                            self.run_id,
                        )?;
                    }
                    match known.status {
                        OrderStatus::Rejected | OrderStatus::Cancelled | OrderStatus::Expired
                            if orders::filled_by_leg(self.conn, &reference)?.is_empty() =>
                        {
                            orders::append_event(
                                self.conn,
                                &reference,
                                known.status,
                                self.at,
                                broker,
                                None,
                                known.reason.as_deref(),
                                self.run_id,
                            )?;
                            out.push(Placed {
                                order_ref: reference,
                                status: known.status,
                                reason: known.reason,
                                fills: Vec::new(),
                            });
                        }
                        _ => out.push(self.collect(&order, OrderStatus::Submitted)?),
                    }
                }
                None if status == OrderStatus::Pending => {
                    // The intent was committed but never reached the broker.
                    out.push(self.send(resume_recorded(order))?);
                }
                None => {
                    let why = format!("{broker} has no record of it");
                    orders::append_event(
                        self.conn,
                        &reference,
                        OrderStatus::Rejected,
                        self.at,
                        broker,
                        None,
                        Some(&why),
                        self.run_id,
                    )?;
                    out.push(Placed {
                        order_ref: reference,
                        status: OrderStatus::Rejected,
                        reason: Some(why),
                        fills: Vec::new(),
                    });
                }
            }
        }
        Ok(out)
    }
}

/// The fill an execution of one of an order's legs makes.
fn fill_of(order: &Order, e: &Execution) -> Fill {
    let leg = &order.legs[e.leg.min(order.legs.len() - 1)];
    Fill {
        order_reference: e.order_ref.clone(),
        leg: e.leg,
        as_of: e.at.date(),
        filled_at: e.at,
        book: order.book_of(leg).to_string(),
        instrument: leg.instrument.clone(),
        quantity: e.quantity,
        price: e.price,
        commission: e.commission,
        cash_kind: leg.settle.map_or(CashKind::Premium, |(_, k)| k),
        exec_id: e.exec_id.clone(),
        broker_order_id: Some(e.broker_order_id.clone()),
    }
}
