//! `manage_positions` — at each intraday slot, close what the strategies' exit rules
//! say at that slot's snapshot: profit take, stop, time stop, the futures strategy's
//! maximum hold, the auto-close of 0DTE positions before the close. The slot-time form
//! of `expire_positions`' exit step, through the same function
//! ([`super::exits::close_by_exit_rules`]): each close approved with its rule in
//! `risk_decisions`, sent as `exit:<strategy>:<session>T<slot>:<n>`. A close without a
//! quote at the slot is rejected with that reason and tried again at the next slot.
//! Not part of `run daily` (the daily run's exits are `expire_positions`'): it runs at
//! its `slots` (`optdesk run session`, the daemon, a backtest) or by `job run`.

use super::BrokerChoice;
use super::{Job, JobContext, JobDef, JobError, JobOutput, Prepared};
use crate::config::{Config, ConfigError};
use crate::trading::strategies::Registry;

pub const DEF: JobDef = JobDef {
    name: "manage_positions",
    about: "at each intraday slot: close what the strategies' exit rules say (profit take, stop, time stop, max hold, 0DTE auto-close)",
    writes: &["risk_decisions", "order_legs", "order_events", "fills", "cash_ledger"],
    reads_chains: true,
    prepare,
    daily: false,
};

fn prepare(config: &Config) -> Result<Prepared, ConfigError> {
    super::exits::prepare(config, &DEF, |strategies, broker| {
        Box::new(ManagePositions { strategies, broker })
    })
}

pub struct ManagePositions {
    pub strategies: Registry,
    pub broker: BrokerChoice,
}

impl Job for ManagePositions {
    fn run(&self, ctx: &JobContext) -> Result<JobOutput, JobError> {
        let conn = ctx.conn;
        let mut broker = self.broker.make(conn, ctx.as_of, ctx.quote_time);
        let mut router = ctx.router(broker.as_mut(), DEF.name);
        let mut rows = 0u64;
        for p in router.resume_open()? {
            rows += 1 + 2 * p.fills.len() as u64;
        }
        let mut day = ctx.load_day()?;
        day.session.daily_run = ctx.slot.is_none();
        let open = day.open_trades.len();
        let exits = super::exits::close_by_exit_rules(ctx, &mut router, &self.strategies, &day)?;
        rows += exits.rows;
        let mut summary = format!(
            "{open} open trades at {}: {} closed by their strategy's exit rules",
            ctx.quote_time.format("%H:%M"),
            exits.closed
        );
        if day.underlyings.is_empty() {
            summary.push_str(&format!(
                " (no quotes stored at {}: run fetch_chains and compute_vol at this slot for exits that need prices)",
                ctx.quote_time.format("%H:%M")
            ));
        }
        if !exits.waiting.is_empty() {
            summary.push_str(&format!(
                "; waiting for the next slot: {}",
                exits.waiting.join(", ")
            ));
        }
        Ok(JobOutput {
            rows_written: rows,
            summary,
        })
    }
}
