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
    checkpoint: Box<dyn Fn() -> Result<(), duckdb::Error> + 'a>,
    /// A dry run: nothing it writes is kept, so nothing is sent to a real broker.
    dry_run: bool,
}

impl<'a> Router<'a> {
    pub fn new(
        conn: &'a Connection,
        broker: &'a mut dyn Broker,
        job: &'static str,
        run_id: i64,
        at: NaiveDateTime,
        checkpoint: Box<dyn Fn() -> Result<(), duckdb::Error> + 'a>,
        dry_run: bool,
    ) -> Self {
        Router {
            conn,
            broker,
            job,
            run_id,
            at,
            checkpoint,
            dry_run,
        }
    }

    /// In a dry run a real broker is sent nothing (its order would outlive the rolled
    /// back intent); a simulated one is, inside the transaction that is rolled back.
    fn holds_back(&self) -> bool {
        self.dry_run && !self.broker.is_simulated()
    }

    fn commit(&self) -> Result<(), RouterError> {
        (self.checkpoint)().map_err(RouterError::Commit)
    }

    /// Place one approved order: intent, commit, submit, record.
    pub fn place(&mut self, approved: RiskApproved<Order>) -> Result<Placed, RouterError> {
        let broker = self.broker.name();
        orders::write_intent(self.conn, approved.inner(), self.at, broker, self.run_id)?;
        if self.holds_back() {
            return Ok(Placed {
                order_ref: approved.inner().reference(),
                status: OrderStatus::Pending,
                reason: Some(format!("dry run: not sent to {broker}")),
                fills: Vec::new(),
            });
        }
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
                let placed = self.collect(approved.inner(), OrderStatus::Submitted)?;
                if placed.status != OrderStatus::Submitted || !placed.fills.is_empty() {
                    return Ok(placed);
                }
                // Not filled: a broker that works an order (re-pricing, then cancelling)
                // may have ended it already; record how, with its reason.
                match self.broker.order_status(&reference)? {
                    Some(known)
                        if matches!(
                            known.status,
                            OrderStatus::Cancelled | OrderStatus::Rejected | OrderStatus::Expired
                        ) =>
                    {
                        self.end(reference, known.status, known.reason)
                    }
                    _ => Ok(placed),
                }
            }
            Err(e @ BrokerError::Rejected { .. }) => {
                self.end(reference, OrderStatus::Rejected, Some(e.to_string()))
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

    /// End an order without fills (rejected, cancelled, expired), with the reason.
    fn end(
        &self,
        reference: String,
        status: OrderStatus,
        reason: Option<String>,
    ) -> Result<Placed, RouterError> {
        let broker = self.broker.name();
        orders::append_event(
            self.conn,
            &reference,
            status,
            self.at,
            broker,
            None,
            reason.as_deref(),
            self.run_id,
        )?;
        Ok(Placed {
            order_ref: reference,
            status,
            reason,
            fills: Vec::new(),
        })
    }

    /// Record the broker's executions of an order not yet recorded, and the status
    /// they make.
    fn collect(&mut self, order: &Order, mut status: OrderStatus) -> Result<Placed, RouterError> {
        let broker = self.broker.name();
        let reference = order.reference();
        let executions = self.broker.executions(order)?;
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
        if self.holds_back() {
            return Ok(out);
        }
        for OpenOrder {
            order,
            status,
            broker: b,
            created_at,
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
                            out.push(self.end(reference, known.status, known.reason)?);
                        }
                        _ => out.push(self.collect(&order, OrderStatus::Submitted)?),
                    }
                }
                None if status == OrderStatus::Pending && created_at == self.at => {
                    // The intent was committed but never reached the broker: send it at
                    // the snapshot it was decided on.
                    out.push(self.send(resume_recorded(order))?);
                }
                None if status == OrderStatus::Pending => {
                    // Decided on an earlier snapshot's prices and never sent: not sent
                    // now; today's run decides afresh (the gate sees today's state).
                    let why = format!(
                        "never reached {broker}; decided at {}, not sent on later prices",
                        created_at.format("%Y-%m-%d %H:%M")
                    );
                    out.push(self.end(reference, OrderStatus::Cancelled, Some(why))?);
                }
                None => {
                    let why = format!("{broker} has no record of it");
                    out.push(self.end(reference, OrderStatus::Rejected, Some(why))?);
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

#[cfg(test)]
mod tests {
    //! The life cycle against a broker that times out, then fills in two parts (as IBKR
    //! can), over a real store.
    use super::*;
    use crate::broker::BrokerOrder;
    use crate::model::{OptionRight, Price};
    use crate::store::Store;
    use crate::trading::{ClientOrderId, Intent, Leg, OrderType};
    use std::collections::HashMap;

    #[derive(Default)]
    struct Venue {
        /// Fail the next submission with this.
        fail_next: Option<BrokerError>,
        orders: HashMap<String, (Order, usize)>,
        /// How many executions of each order are reported so far (one more per call).
        submissions: usize,
    }

    impl Broker for Venue {
        fn name(&self) -> &'static str {
            "paper"
        }
        fn submit(
            &mut self,
            o: &RiskApproved<Order>,
            _at: NaiveDateTime,
        ) -> Result<String, BrokerError> {
            if let Some(e) = self.fail_next.take() {
                return Err(e);
            }
            self.submissions += 1;
            let o = o.inner().clone();
            self.orders.insert(o.reference(), (o, 0));
            Ok("V-1".into())
        }
        fn order_status(&mut self, r: &str) -> Result<Option<BrokerOrder>, BrokerError> {
            Ok(self.orders.get(r).map(|_| BrokerOrder {
                order_ref: r.into(),
                broker_order_id: "V-1".into(),
                status: OrderStatus::Submitted,
                reason: None,
            }))
        }
        fn executions(&mut self, order: &Order) -> Result<Vec<Execution>, BrokerError> {
            let r = &order.reference();
            let Some((o, shown)) = self.orders.get_mut(r) else {
                return Ok(Vec::new());
            };
            *shown = (*shown + 1).min(2);
            // Two executions of leg 0: 3 contracts, then 2.
            let at = o.id.at;
            Ok([(3i64, "E1"), (2i64, "E2")][..*shown]
                .iter()
                .map(|(q, id)| Execution {
                    exec_id: id.to_string(),
                    order_ref: r.clone(),
                    leg: 0,
                    broker_order_id: "V-1".into(),
                    at,
                    quantity: -q,
                    price: Price::from_f64(1.5),
                    commission: Price::from_f64(0.65 * *q as f64),
                })
                .collect())
        }
        fn open_orders(&mut self) -> Result<Vec<BrokerOrder>, BrokerError> {
            Ok(Vec::new())
        }
        fn positions(&mut self) -> Result<Vec<(String, i64)>, BrokerError> {
            Ok(Vec::new())
        }
        fn cancel(&mut self, _: &str) -> Result<(), BrokerError> {
            Ok(())
        }
    }

    /// A new store, the fixtures' 09:35 snapshot, and an exit selling `quantity` SPY 95
    /// puts at the market.
    fn exit_order(quantity: i64) -> (tempfile::TempDir, Store, NaiveDateTime, Order) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_write(
            &dir.path().join("s.duckdb"),
            std::time::Duration::from_secs(1),
            "test",
        )
        .unwrap();
        let at = crate::testkit::as_of().and_hms_opt(9, 35, 0).unwrap();
        let id = ClientOrderId::new(Intent::Exit, "s", at.date(), at.time(), 0).unwrap();
        let leg = Leg::new(
            crate::testkit::option("SPY", OptionRight::Put, 95.0),
            quantity,
        )
        .unwrap();
        let order = Order::new_checked(id, vec![leg], OrderType::Market).unwrap();
        (dir, store, at, order)
    }

    #[test]
    fn pending_through_a_timeout_then_partly_filled_then_filled_never_sent_twice() {
        let (_dir, store, at, order) = exit_order(-5);
        let conn = &store.conn;
        let reference = order.reference();
        let mut venue = Venue {
            fail_next: Some(BrokerError::Timeout {
                broker: "paper",
                secs: 10,
            }),
            ..Venue::default()
        };
        let commit = || Box::new(|| Ok(()));
        let status = |conn| orders::latest_status(conn, &reference).unwrap().unwrap().0;
        {
            let mut r = Router::new(conn, &mut venue, "test", 1, at, commit(), false);
            let p = r
                .place(crate::trading::risk::approve_exit(order).unwrap())
                .unwrap();
            assert_eq!(p.status, OrderStatus::Pending);
            assert!(p.reason.unwrap().contains("the next run tries again"));
        }
        assert_eq!(status(conn), OrderStatus::Pending);
        {
            let mut r = Router::new(conn, &mut venue, "test", 2, at, commit(), false);
            let p = r.resume_open().unwrap();
            assert_eq!(p[0].status, OrderStatus::PartlyFilled);
            assert_eq!(p[0].fills.len(), 1);
        }
        {
            let mut r = Router::new(conn, &mut venue, "test", 3, at, commit(), false);
            let p = r.resume_open().unwrap();
            assert_eq!(p[0].status, OrderStatus::Filled);
            assert_eq!(
                p[0].fills.len(),
                1,
                "the first execution is not recorded again"
            );
            assert!(r.resume_open().unwrap().is_empty(), "nothing left open");
        }
        assert_eq!(venue.submissions, 1, "sent once");
        let events: String = conn
            .query_row(
                "SELECT string_agg(status, ',' ORDER BY seq) FROM order_events WHERE order_ref = ?",
                [&reference],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(events, "pending,submitted,partly_filled,filled");
        let (n, q): (i64, i64) = conn
            .query_row(
                "SELECT count(*), sum(quantity)::BIGINT FROM fills",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((n, q), (2, -5));
        // A step the life cycle does not allow is refused before it is written.
        let e = orders::append_event(
            conn,
            &reference,
            OrderStatus::Submitted,
            at,
            "paper",
            None,
            None,
            4,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("illegal transition filled → submitted"),
            "{e}"
        );
        assert!(crate::store::check::check(conn)
            .unwrap()
            .problems
            .is_empty());
    }

    #[test]
    fn an_intent_never_sent_is_not_sent_on_a_later_snapshot() {
        let (_dir, store, at, order) = exit_order(-1);
        let conn = &store.conn;
        let mut venue = Venue {
            fail_next: Some(BrokerError::Disconnected {
                broker: "paper",
                reason: "1100".into(),
            }),
            ..Venue::default()
        };
        Router::new(conn, &mut venue, "test", 1, at, Box::new(|| Ok(())), false)
            .place(crate::trading::risk::approve_exit(order).unwrap())
            .unwrap();
        let next_day = at + chrono::Duration::days(1);
        let p = Router::new(
            conn,
            &mut venue,
            "test",
            2,
            next_day,
            Box::new(|| Ok(())),
            false,
        )
        .resume_open()
        .unwrap();
        assert_eq!(p[0].status, OrderStatus::Cancelled);
        assert!(p[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("not sent on later prices"));
        assert_eq!(venue.submissions, 0);
    }
}
