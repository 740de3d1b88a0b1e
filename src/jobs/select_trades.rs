//! `select_trades` — every enabled strategy proposes orders from the day's stored
//! state; the risk gate approves or refuses each (stored in `risk_decisions` with its
//! rule and reason); approved orders go to the paper broker, whose fills and cash are
//! appended to `orders`, `fills` and `cash_ledger`. What each strategy proposed or
//! passed on is in `signals`.
//!
//! A re-run for a snapshot that already has decisions adds nothing: decisions, orders,
//! fills and cash are append-only, and orders carry deterministic references. With
//! `signal_only = true` (the seeds' signal-only mode) signals and decisions are stored
//! and no order is sent; `--dry-run` keeps nothing at all.

use super::{Job, JobContext, JobDef, JobError, JobOutput, Prepared};
use crate::config::{Config, ConfigError};
use crate::model::{OptionRight, Price};
use crate::trading::broker::{fill_order, PaperConfig, Quote};
use crate::trading::ledger::CashKind;
use crate::trading::risk::{evaluate, Decision, RiskConfig, RiskState};
use crate::trading::strategies::call_premium::{CallPremium, Config as CallPremiumConfig};
use crate::trading::strategies::dispersion::{Config as DispersionConfig, Dispersion};
use crate::trading::strategies::wheel::{CashSecuredPut, Config as WheelConfig, CoveredCall};
use crate::trading::strategies::{ChainRow, DayState, Strategy, UnderlyingDay};
use crate::trading::{Fill, Instrument};
use duckdb::{params, Connection};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const DEF: JobDef = JobDef {
    name: "select_trades",
    about: "strategies propose, the risk gate decides, the paper broker fills",
    writes: &[
        "signals",
        "risk_decisions",
        "orders",
        "fills",
        "cash_ledger",
    ],
    prepare,
};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Cash deposited when the ledger is empty, dollars.
    pub starting_cash: f64,
    /// Store signals and risk decisions, send no orders.
    pub signal_only: bool,
    /// The kill file: while it exists, no new entries (relative to the project folder).
    pub kill_file: String,
    /// Event days (CSV with a `date` column; `#` comments): no new entries on them.
    pub events_file: String,
    /// Paper broker: 0 = sell at the bid / buy at the ask, 1 = at the mid.
    pub fill_toward_mid: f64,
    /// Commission per option contract, dollars.
    pub commission_per_contract: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            starting_cash: 400_000.0,
            signal_only: false,
            kill_file: "data/KILL".into(),
            events_file: "data/events.csv".into(),
            fill_toward_mid: 0.0,
            commission_per_contract: 0.65,
        }
    }
}

/// `jobs/select_trades.toml`: the job's envelope plus the risk gate's limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    slots: Vec<String>,
    #[serde(default)]
    params: Params,
    #[serde(default)]
    risk: RiskConfig,
}

fn yes() -> bool {
    true
}

impl Default for FileShape {
    fn default() -> Self {
        FileShape {
            enabled: true,
            slots: Vec::new(),
            params: Params::default(),
            risk: RiskConfig::default(),
        }
    }
}

/// `jobs/strategies/<name>.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct StrategyFile<P> {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    params: P,
}

/// Load `jobs/strategies/<name>.toml` (defaults when absent) and validate its params;
/// an error names the file and the key. Returns (enabled, params, raw text for the hash).
pub(crate) fn load_strategy<P: DeserializeOwned + Default>(
    config: &Config,
    name: &str,
    validate: impl Fn(&P) -> Result<(), String>,
) -> Result<(bool, P, String), ConfigError> {
    let path = config.dir.join("strategies").join(format!("{name}.toml"));
    let (enabled, params, text) = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let f: StrategyFile<P> = crate::config::parse(&path, &text)?;
            (f.enabled, f.params, text)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (true, P::default(), String::new()),
        Err(e) => {
            return Err(ConfigError::Read {
                file: path.display().to_string(),
                source: e,
            })
        }
    };
    validate(&params).map_err(|m| ConfigError::Invalid {
        file: path.display().to_string(),
        message: format!("params.{m}"),
    })?;
    Ok((enabled, params, text))
}

fn prepare(config: &Config) -> Result<Prepared, ConfigError> {
    let path = config.dir.join("select_trades.toml");
    let (shape, text) = match std::fs::read_to_string(&path) {
        Ok(t) => (crate::config::parse::<FileShape>(&path, &t)?, t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (FileShape::default(), String::new()),
        Err(e) => {
            return Err(ConfigError::Read {
                file: path.display().to_string(),
                source: e,
            })
        }
    };
    let bad = |m: String| ConfigError::Invalid {
        file: path.display().to_string(),
        message: m,
    };
    let p = &shape.params;
    if p.starting_cash.is_nan()
        || p.starting_cash <= 0.0
        || !(0.0..=1.0).contains(&p.fill_toward_mid)
        || p.commission_per_contract < 0.0
    {
        return Err(bad(format!(
            "params: starting_cash = {} must be positive, fill_toward_mid = {} within 0..1, commission_per_contract = {} not negative",
            p.starting_cash, p.fill_toward_mid, p.commission_per_contract
        )));
    }
    let r = &shape.risk;
    if r.max_loss_per_trade <= 0.0
        || r.daily_loss_cap <= 0.0
        || r.vol_move_multiple <= 0.0
        || r.vix_jump_points <= 0.0
    {
        return Err(bad("risk: max_loss_per_trade, daily_loss_cap, vol_move_multiple and vix_jump_points must be positive".into()));
    }
    let mut strategies: Vec<Box<dyn Strategy + Send + Sync>> = Vec::new();
    let mut texts = Vec::new();
    let (on, cfg, strategy_text) =
        load_strategy(config, "call_premium", CallPremiumConfig::validate)?;
    texts.push(strategy_text);
    if on {
        strategies.push(Box::new(CallPremium { config: cfg }));
    }
    let (on, cfg, strategy_text) = load_strategy(config, "dispersion", DispersionConfig::validate)?;
    texts.push(strategy_text);
    if on {
        strategies.push(Box::new(Dispersion { config: cfg }));
    }
    let (on, cfg, strategy_text) =
        load_strategy(config, "cash_secured_put", WheelConfig::validate)?;
    texts.push(strategy_text);
    if on {
        strategies.push(Box::new(CashSecuredPut { config: cfg }));
    }
    let (on, cfg, strategy_text) = load_strategy(config, "covered_call", WheelConfig::validate)?;
    texts.push(strategy_text);
    if on {
        strategies.push(Box::new(CoveredCall { config: cfg }));
    }
    let kill_file = config.resolve(&p.kill_file);
    let events_path = config.resolve(&p.events_file);
    let blackout_dates =
        load_events(&events_path).map_err(|m| bad(format!("params.events_file: {m}")))?;
    Ok(Prepared {
        def: &DEF,
        enabled: shape.enabled,
        slots: shape.slots.clone(),
        config_hash: config.hash_with(&format!("{text}\n{}", texts.join("\n"))),
        job: Box::new(SelectTrades {
            params: shape.params,
            risk: shape.risk,
            strategies,
            kill_file,
            blackout_dates,
        }),
    })
}

/// `jobs/select_trades.toml`'s `[params]`, for the jobs and commands that share them.
fn file_params(config: &Config) -> Result<Params, ConfigError> {
    let path = config.dir.join("select_trades.toml");
    Ok(match std::fs::read_to_string(&path) {
        Ok(t) => crate::config::parse::<FileShape>(&path, &t)?.params,
        Err(_) => Params::default(),
    })
}

/// The kill file named in `jobs/select_trades.toml` (default `data/KILL`), resolved
/// against the project folder.
pub fn kill_file_path(config: &Config) -> Result<std::path::PathBuf, ConfigError> {
    Ok(config.resolve(&file_params(config)?.kill_file))
}

/// The paper broker as `jobs/select_trades.toml` configures it (fills toward the mid,
/// commission): entries, exits, expiries and `flatten` all trade through it.
pub fn paper_config(config: &Config) -> Result<PaperConfig, ConfigError> {
    Ok(file_params(config)?.paper())
}

impl Params {
    fn paper(&self) -> PaperConfig {
        PaperConfig {
            toward_mid: self.fill_toward_mid,
            commission_per_contract: Price::from_f64(self.commission_per_contract),
            ..PaperConfig::default()
        }
    }
}

pub struct SelectTrades {
    pub params: Params,
    pub risk: RiskConfig,
    pub strategies: Vec<Box<dyn Strategy + Send + Sync>>,
    pub kill_file: std::path::PathBuf,
    pub blackout_dates: std::collections::BTreeSet<chrono::NaiveDate>,
}

/// Read event dates: a CSV whose first column is `date` (YYYY-MM-DD); `#` lines are
/// comments. A missing file means no blackout days; a bad line is an error naming it.
pub fn load_events(
    path: &std::path::Path,
) -> Result<std::collections::BTreeSet<chrono::NaiveDate>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut out = std::collections::BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with("date") {
            continue;
        }
        let field = l.split(',').next().unwrap_or("");
        let d = chrono::NaiveDate::parse_from_str(field.trim(), "%Y-%m-%d").map_err(|_| {
            format!(
                "{} line {}, field 'date': '{field}' is not a date (YYYY-MM-DD)",
                path.display(),
                i + 1
            )
        })?;
        out.insert(d);
    }
    Ok(out)
}

/// The day's state for the strategies, from the store.
fn load_day(conn: &Connection, ctx: &JobContext) -> Result<DayState, JobError> {
    let mut day = DayState {
        as_of: Some(ctx.as_of),
        ..DayState::default()
    };
    let mut s = conn.prepare(
        "SELECT v.symbol, v.spot, v.hv_30, u.rate, u.div_yield FROM vol_metrics v
         JOIN underlying_quotes u ON u.as_of = v.as_of AND u.quote_time = v.quote_time AND u.symbol = v.symbol
         WHERE v.as_of = ? AND v.quote_time = ?",
    )?;
    for r in s.query_map(params![ctx.as_of, ctx.quote_time], |r| {
        Ok((
            r.get::<_, String>(0)?,
            UnderlyingDay {
                spot: r.get(1)?,
                hv30: r.get(2)?,
                rate: r.get(3)?,
                div_yield: r.get(4)?,
            },
        ))
    })? {
        let (sym, u) = r?;
        day.underlyings.insert(sym, u);
    }
    let mut s = conn.prepare(
        "SELECT a.contract, a.underlying, a.expiry, a.strike::DOUBLE, a.put_call, q.bid::DOUBLE, q.ask::DOUBLE,
                a.iv, a.delta, q.volume, a.t_years
         FROM option_analytics a JOIN option_quotes q USING (as_of, quote_time, contract)
         WHERE a.as_of = ? AND a.quote_time = ?",
    )?;
    for r in s.query_map(params![ctx.as_of, ctx.quote_time], |r| {
        Ok(ChainRow {
            contract: r.get(0)?,
            underlying: r.get(1)?,
            expiry: r.get(2)?,
            strike: r.get(3)?,
            right: OptionRight::from_code(&r.get::<_, String>(4)?),
            bid: r.get(5)?,
            ask: r.get(6)?,
            iv: r.get(7)?,
            delta: r.get(8)?,
            volume: r.get(9)?,
            t_years: r.get(10)?,
        })
    })? {
        let row = r?;
        day.chains
            .entry(row.underlying.clone())
            .or_default()
            .push(row);
    }
    let mut s = conn.prepare(
        "SELECT strategy, underlying, count(*) FROM positions_as_of(?::DATE) WHERE kind = 'option' GROUP BY ALL",
    )?;
    for r in s.query_map(params![ctx.as_of], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (st, u, n) = r?;
        day.open.insert((st, u), n as u32);
    }
    let mut s = conn.prepare(
        "SELECT index_symbol, zscore, coalesce(note, 'no Z-score') FROM correlation
         WHERE as_of = ? AND quote_time = ? AND basis = 'chains'",
    )?;
    for r in s.query_map(params![ctx.as_of, ctx.quote_time], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<f64>>(1)?,
            r.get::<_, String>(2)?,
        ))
    })? {
        let (index, z, note) = r?;
        day.correlation_z.insert(index, z.ok_or(note));
    }
    let mut s = conn.prepare(
        "SELECT underlying, sum(quantity) FROM positions_as_of(?::DATE) WHERE kind = 'shares' GROUP BY ALL HAVING sum(quantity) > 0",
    )?;
    for r in s.query_map(params![ctx.as_of], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })? {
        let (u, q) = r?;
        day.shares.insert(u, q);
    }
    Ok(day)
}

/// The market side of the risk state: VIX's change since the last close, each
/// underlying's move since its last close against a one-day expected move (spot × 30-day
/// ATM IV × √(1/252)), and the realized P&L of positions closed on the previous session
/// (what a morning decision can know).
fn fill_market_risk(
    conn: &Connection,
    ctx: &JobContext,
    day: &DayState,
    state: &mut RiskState,
) -> Result<(), JobError> {
    let prev = crate::calendar::sessions_before(ctx.as_of, 1);
    let Some(&prev) = prev.first() else {
        return Ok(());
    };
    let mut s = conn.prepare(
        "SELECT b.symbol, b.close::DOUBLE, v.atm_iv_30d, q.price::DOUBLE
         FROM underlying_bars b
         JOIN underlying_quotes q ON q.symbol = b.symbol AND q.as_of = ? AND q.quote_time = ?
         LEFT JOIN vol_metrics v ON v.symbol = b.symbol AND v.as_of = q.as_of AND v.quote_time = q.quote_time
         WHERE b.date = ?",
    )?;
    for r in s.query_map(params![ctx.as_of, ctx.quote_time, prev], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, f64>(1)?,
            r.get::<_, Option<f64>>(2)?,
            r.get::<_, f64>(3)?,
        ))
    })? {
        let (sym, prev_close, iv, now) = r?;
        if sym == "VIX" {
            state.vix_change = Some(now - prev_close);
        } else if let Some(iv) = iv.filter(|_| day.underlyings.contains_key(&sym)) {
            state.moves.insert(
                sym,
                (
                    (now - prev_close).abs(),
                    prev_close * iv * (1.0f64 / 252.0).sqrt(),
                ),
            );
        }
    }
    let realized: f64 = conn.query_row(
        "WITH touched AS (SELECT DISTINCT strategy, instrument FROM fills WHERE as_of = ?),
              closed AS (SELECT * FROM touched t WHERE NOT EXISTS
                           (SELECT 1 FROM positions_as_of(?::DATE) p WHERE p.strategy = t.strategy AND p.instrument = t.instrument))
         SELECT coalesce(sum(-f.quantity * f.multiplier * f.price - f.commission), 0)::DOUBLE
         FROM fills f JOIN closed c USING (strategy, instrument) WHERE f.as_of <= ?",
        params![prev, prev, prev],
        |r| r.get(0),
    )?;
    state.realized_pnl_today = Price::from_f64(realized);
    Ok(())
}

fn cash_balance(conn: &Connection, as_of: chrono::NaiveDate) -> Result<Price, JobError> {
    let c: f64 = conn.query_row(
        "SELECT coalesce(sum(amount), 0)::DOUBLE FROM cash_ledger WHERE as_of <= ?",
        params![as_of],
        |r| r.get(0),
    )?;
    Ok(Price::from_f64(c))
}

/// Margin and collateral held by the open option positions, at today's spot.
fn held_requirement(conn: &Connection, day: &DayState) -> Result<Price, JobError> {
    let mut s = conn.prepare(
        "SELECT underlying, strike::DOUBLE, put_call, quantity FROM positions_as_of(?::DATE) WHERE kind = 'option' AND quantity < 0",
    )?;
    let mut total = Price::ZERO;
    for r in s.query_map(params![day.as_of], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, f64>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })? {
        let (u, k, pc, q) = r?;
        let spot = day.underlyings.get(&u).map(|x| x.spot).unwrap_or(k);
        let per = if pc == "P" {
            crate::trading::broker::cash_secured_put_requirement(Price::from_f64(k))
        } else {
            crate::trading::broker::naked_requirement(
                OptionRight::Call,
                Price::from_f64(spot),
                Price::from_f64(k),
                Price::ZERO,
            )
        };
        total += Price::from_raw(per.raw() * q.abs());
    }
    Ok(total)
}

fn instrument_cols(
    i: &Instrument,
) -> (
    &'static str,
    Option<chrono::NaiveDate>,
    Option<f64>,
    Option<&'static str>,
) {
    match i {
        Instrument::Option {
            expiry,
            strike,
            right,
            ..
        } => (
            "option",
            Some(*expiry),
            Some(strike.to_f64()),
            Some(right.code()),
        ),
        Instrument::Shares { .. } => ("shares", None, None, None),
    }
}

/// Close a position at `price` (already the market's, for the side that closes it):
/// one filled order leg and its fill, with the paper broker's commission.
pub(crate) fn close_position(
    ctx: &JobContext,
    strategy: &str,
    reference: &str,
    instrument: Instrument,
    open_quantity: i64,
    price: Price,
    paper: &PaperConfig,
) -> Result<(), JobError> {
    let f = Fill {
        order_reference: reference.to_string(),
        leg: 0,
        as_of: ctx.as_of,
        commission: crate::trading::broker::commission(paper, &instrument, open_quantity),
        instrument,
        quantity: -open_quantity,
        price,
    };
    write_order_leg(
        ctx.conn,
        ctx.as_of,
        reference,
        strategy,
        0,
        &f.instrument,
        f.quantity,
        None,
        "filled",
        None,
        ctx.run_id,
    )?;
    write_fill(ctx.conn, &f, strategy, CashKind::Premium, ctx.run_id)
}

/// Append one order leg to `orders`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_order_leg(
    conn: &Connection,
    as_of: chrono::NaiveDate,
    reference: &str,
    strategy: &str,
    leg: usize,
    instrument: &Instrument,
    quantity: i64,
    limit: Option<Price>,
    status: &str,
    reason: Option<String>,
    run_id: i64,
) -> Result<(), JobError> {
    let (k, expiry, strike, pc) = instrument_cols(instrument);
    conn.execute(
        "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            as_of,
            reference,
            strategy,
            leg as i32,
            instrument.key(),
            instrument.underlying(),
            k,
            expiry,
            strike,
            pc,
            instrument.multiplier() as i32,
            quantity,
            limit.map(|l| l.to_f64()),
            status,
            reason,
            run_id
        ],
    )?;
    Ok(())
}

/// Append a fill to `fills`, and its cash (premium under `kind`, then commission) to
/// `cash_ledger`.
pub(crate) fn write_fill(
    conn: &Connection,
    f: &Fill,
    strategy: &str,
    kind: CashKind,
    run_id: i64,
) -> Result<(), JobError> {
    let (k, expiry, strike, pc) = instrument_cols(&f.instrument);
    conn.execute(
        "INSERT INTO fills VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            f.as_of,
            f.order_reference,
            f.leg as i32,
            strategy,
            f.instrument.key(),
            f.instrument.underlying(),
            k,
            expiry,
            strike,
            pc,
            f.instrument.multiplier() as i32,
            f.quantity,
            f.price.to_f64(),
            f.commission.to_f64(),
            kind.code(),
            run_id
        ],
    )?;
    let reference = format!("{}#{}", f.order_reference, f.leg);
    conn.execute(
        "INSERT INTO cash_ledger VALUES (?, ?, ?, ?, ?)",
        params![
            f.as_of,
            kind.code(),
            f.premium_cash().to_f64(),
            reference,
            run_id
        ],
    )?;
    if f.commission != Price::ZERO {
        conn.execute(
            "INSERT INTO cash_ledger VALUES (?, 'commission', ?, ?, ?)",
            params![f.as_of, (-f.commission).to_f64(), reference, run_id],
        )?;
    }
    Ok(())
}

impl Job for SelectTrades {
    fn run(&self, ctx: &JobContext) -> Result<JobOutput, JobError> {
        let conn = ctx.conn;
        let decided: i64 = conn.query_row(
            "SELECT count(*) FROM risk_decisions WHERE as_of = ? AND quote_time = ?",
            params![ctx.as_of, ctx.quote_time],
            |r| r.get(0),
        )?;
        if decided > 0 {
            return Ok(JobOutput {
                rows_written: 0,
                summary: format!(
                    "already decided for {} {} ({decided} decisions): decisions and orders are append-only, nothing added",
                    ctx.as_of,
                    ctx.quote_time.format("%H:%M")
                ),
            });
        }
        let mut rows = 0u64;
        if cash_balance(conn, ctx.as_of)? == Price::ZERO {
            let n: i64 = conn.query_row("SELECT count(*) FROM cash_ledger", [], |r| r.get(0))?;
            if n == 0 {
                conn.execute(
                    "INSERT INTO cash_ledger VALUES (?, 'deposit', ?, 'starting cash', ?)",
                    params![ctx.as_of, self.params.starting_cash, ctx.run_id],
                )?;
                rows += 1;
            }
        }
        let day = load_day(conn, ctx)?;
        if day.underlyings.is_empty() {
            return Err(JobError::Failed(format!(
                "no vol_metrics for {} at {}: run compute_vol for this session first",
                ctx.as_of,
                ctx.quote_time.format("%H:%M")
            )));
        }
        conn.execute(
            "DELETE FROM signals WHERE as_of = ? AND quote_time = ?",
            params![ctx.as_of, ctx.quote_time],
        )?;
        let mut state = RiskState {
            as_of: Some(ctx.as_of),
            kill_file: self.kill_file.exists(),
            blackout_dates: self.blackout_dates.clone(),
            buying_power: cash_balance(conn, ctx.as_of)? - held_requirement(conn, &day)?,
            ..RiskState::default()
        };
        fill_market_risk(conn, ctx, &day, &mut state)?;
        // Open trades, not instruments: a multi-leg order counts once (per strategy, and
        // once for each underlying it holds).
        let mut s = conn.prepare(
            "SELECT f.strategy, f.underlying, count(DISTINCT f.order_ref)
             FROM fills f JOIN positions_as_of(?::DATE) p USING (strategy, instrument)
             WHERE f.order_ref NOT LIKE 'expire:%' AND f.order_ref NOT LIKE 'exit:%' AND p.kind = 'option'
             GROUP BY GROUPING SETS ((f.strategy), (f.underlying))",
        )?;
        for r in s.query_map(params![ctx.as_of], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })? {
            match r? {
                (Some(st), None, n) => {
                    state.open_by_strategy.insert(st, n as u32);
                }
                (None, Some(u), n) => {
                    state.open_by_underlying.insert(u, n as u32);
                }
                _ => {}
            }
        }

        let quotes: HashMap<String, Quote> = day
            .chains
            .values()
            .flatten()
            .map(|r| {
                (
                    r.contract.clone(),
                    Quote {
                        bid: Price::from_f64(r.bid),
                        ask: Price::from_f64(r.ask),
                    },
                )
            })
            .collect();
        let paper = self.params.paper();
        let (mut proposed, mut approved, mut refused, mut filled, mut rejected) = (0, 0, 0, 0, 0);
        for strategy in &self.strategies {
            let out = strategy.propose(&day);
            for (u, why) in &out.skips {
                conn.execute(
                    "INSERT INTO signals VALUES (?, ?, ?, ?, NULL, 'pass', ?, NULL, ?)",
                    params![
                        ctx.as_of,
                        ctx.quote_time,
                        strategy.name(),
                        u,
                        why,
                        ctx.run_id
                    ],
                )?;
                rows += 1;
            }
            for p in out.proposals {
                proposed += 1;
                let numbers = serde_json::to_string(
                    &p.numbers.iter().cloned().collect::<HashMap<String, f64>>(),
                )
                .unwrap_or_default();
                conn.execute(
                    "INSERT INTO signals VALUES (?, ?, ?, ?, ?, 'propose', NULL, ?, ?)",
                    params![
                        ctx.as_of,
                        ctx.quote_time,
                        p.strategy,
                        p.underlying,
                        p.order.reference,
                        numbers,
                        ctx.run_id
                    ],
                )?;
                let decision = evaluate(&self.risk, &state, p);
                let (p, decision_text, reason) = match &decision {
                    Decision::Approved(p) => (p, "approved", None),
                    Decision::Refused {
                        proposal, reason, ..
                    } => (proposal, "refused", Some(reason.clone())),
                };
                conn.execute(
                    "INSERT INTO risk_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    params![
                        ctx.as_of,
                        ctx.quote_time,
                        p.strategy,
                        p.underlying,
                        p.order.reference,
                        decision_text,
                        decision.rule(),
                        reason,
                        p.max_loss.map(|m| m.to_f64()),
                        p.requirement.to_f64(),
                        ctx.run_id
                    ],
                )?;
                rows += 2;
                let Decision::Approved(p) = decision else {
                    refused += 1;
                    continue;
                };
                approved += 1;
                if self.params.signal_only {
                    continue;
                }
                let result = fill_order(&paper, &p.order, &quotes);
                let (status, why) = match &result {
                    Ok(_) => ("filled", None),
                    Err(e) => ("rejected", Some(e.to_string())),
                };
                for (i, leg) in p.order.legs.iter().enumerate() {
                    write_order_leg(
                        conn,
                        ctx.as_of,
                        &p.order.reference,
                        &p.strategy,
                        i,
                        &leg.instrument,
                        leg.quantity,
                        p.order.limit,
                        status,
                        why.clone(),
                        ctx.run_id,
                    )?;
                    rows += 1;
                }
                match result {
                    Ok(fills) => {
                        filled += 1;
                        for f in &fills {
                            write_fill(conn, f, &p.strategy, CashKind::Premium, ctx.run_id)?;
                            rows += 2;
                            state.buying_power =
                                state.buying_power + f.premium_cash() - f.commission;
                        }
                        state.buying_power = state.buying_power - p.requirement;
                        *state
                            .open_by_strategy
                            .entry(p.strategy.clone())
                            .or_default() += 1;
                        *state
                            .open_by_underlying
                            .entry(p.underlying.clone())
                            .or_default() += 1;
                    }
                    Err(_) => rejected += 1,
                }
            }
        }
        let mut summary = format!(
            "{} strategies: {proposed} proposals, {approved} approved, {refused} refused by the risk gate; {filled} filled, {rejected} rejected by the broker; buying power {}",
            self.strategies.len(),
            state.buying_power
        );
        if self.params.signal_only {
            summary.push_str(" (signal only: no orders sent)");
        }
        if state.kill_file {
            summary.push_str(&format!(" — kill switch on ({})", self.kill_file.display()));
        }
        Ok(JobOutput {
            rows_written: rows,
            summary,
        })
    }
}
