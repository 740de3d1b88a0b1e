//! Strategies: pure functions from the day's stored state to proposals
//! (`Strategy::propose(&DayState) -> Outcome`), each with its own configuration in
//! `jobs/strategies/<name>.toml`. A strategy also owns its exits
//! ([`Strategy::exits`]), how its trades are margined ([`Strategy::margin_policy`]) and
//! what happens to shares its options deliver ([`Strategy::on_assignment`]), so no job
//! names a strategy. Every proposal records the numbers that justified it; every
//! ticker a strategy looked at and passed on gets a reason.

pub mod buy_write;
pub mod call_premium;
pub mod dispersion;
pub mod intraday;
pub mod iron_condor;
pub mod put_write;
pub mod wheel;
pub mod zscore_reversion;

use super::margin::{MarginLeg, Policy};
use super::risk::{Proposal, RiskProfile};
use super::settlement::OnAssignment;
use crate::config::{Config, ConfigError};
use crate::model::instrument::Instrument;
use crate::model::OptionRight;
use chrono::{NaiveDate, NaiveDateTime};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};

/// One option of the day's chain with its analytics.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainRow {
    pub contract: String,
    pub underlying: String,
    pub expiry: NaiveDate,
    pub strike: f64,
    pub right: OptionRight,
    pub bid: f64,
    pub ask: f64,
    pub iv: Option<f64>,
    pub delta: Option<f64>,
    pub volume: i64,
    pub t_years: f64,
    /// The contract with its terms (multiplier, style, settlement), as the source gave
    /// them.
    pub instrument: Instrument,
}

impl ChainRow {
    pub fn multiplier(&self) -> i64 {
        self.instrument.multiplier()
    }
}

/// One underlying on the day.
#[derive(Debug, Clone, PartialEq)]
pub struct UnderlyingDay {
    pub spot: f64,
    pub hv30: Option<f64>,
    pub rate: f64,
    pub div_yield: f64,
}

/// One open trade: the legs of an order that are still held, at today's marks.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTrade {
    /// The order that opened it.
    pub order_ref: String,
    pub strategy: String,
    pub opened: NaiveDate,
    pub legs: Vec<MarginLeg>,
    /// What the opening fills of the legs still held moved, Σ −quantity × price ×
    /// multiplier (+ premium received, − paid; for a future the notional counted the
    /// same way), without commissions: with the marks, the trade's P&L since entry.
    /// `None` when unknown.
    pub entry_cash: Option<crate::model::Price>,
    /// Each leg's average opening price per unit, beside `legs` (empty when unknown).
    pub entry_prices: Vec<Option<crate::model::Price>>,
}

impl OpenTrade {
    pub fn touches(&self, underlying: &str) -> bool {
        self.legs
            .iter()
            .any(|l| l.instrument.underlying() == underlying)
    }
}

/// Everything a strategy may look at; read from the store (`store::repo::day`).
#[derive(Debug, Clone)]
pub struct DayState {
    pub as_of: NaiveDate,
    /// The snapshot the day's quotes were taken at (New York).
    pub quote_time: NaiveDateTime,
    pub underlyings: HashMap<String, UnderlyingDay>,
    pub chains: HashMap<String, Vec<ChainRow>>,
    /// Open option trades, by the order that opened them.
    pub open_trades: Vec<OpenTrade>,
    /// Shares held per underlying (long), across strategies.
    pub shares: HashMap<String, i64>,
    /// Per index: (implied correlation Z-score, or why there is none) from `correlation`.
    pub correlation_z: HashMap<String, Result<f64, String>>,
    /// The session around the snapshot: its hours, today's minute bars, each
    /// underlying's recent history, VIX, futures quotes, earnings dates. What the
    /// intraday strategies and the intraday risk rules read.
    pub session: SessionContext,
    /// The (underlying, expiry) slices strategies chose to scan (`choose_expiry`),
    /// taken by `select_trades` into `scanned_chains` after each strategy.
    scanned: std::cell::RefCell<BTreeSet<(String, NaiveDate)>>,
}

/// One 1-minute bar, stamped with the minute it opens (New York time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinuteBar {
    pub time: NaiveDateTime,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
}

/// An underlying's recent history as of the snapshot (from stored bars and analytics).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct History {
    /// The previous session's close.
    pub prev_close: Option<f64>,
    /// Realized vol over the last 10 sessions' closes, annualized.
    pub hv10: Option<f64>,
    /// The 30-day at-the-money implied vol at the snapshot.
    pub atm_iv30: Option<f64>,
    /// Where today's 30-day ATM IV sits in its last 252 sessions' range, 0–100.
    pub iv_rank: Option<f64>,
    /// Return over the last 5 sessions (close 5 sessions ago to the snapshot), a fraction.
    pub ret_5d: Option<f64>,
}

/// A futures quote at the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct FutureQuote {
    pub contract: crate::model::instrument::FuturesContract,
    pub bid: f64,
    pub ask: f64,
    pub last: f64,
}

/// What a day's snapshot knows about its session beyond the chains.
#[derive(Debug, Clone, Default)]
pub struct SessionContext {
    /// The session's open and close (New York; early closes included). `None` in
    /// tests that do not set them.
    pub open: Option<NaiveDateTime>,
    pub close: Option<NaiveDateTime>,
    /// The snapshot is the daily run's (the pipeline at `schedule.daily`), not a slot's.
    /// The daily strategies propose only then; the intraday ones only in slots.
    pub daily_run: bool,
    /// Today's 1-minute bars up to the snapshot, per symbol (underlyings, VIX, futures
    /// roots such as `MES`), oldest first.
    pub bars: HashMap<String, Vec<MinuteBar>>,
    /// Per underlying.
    pub history: HashMap<String, History>,
    /// VIX at the snapshot and at the previous close.
    pub vix: Option<(f64, f64)>,
    /// Futures quotes by root (`MES`): the front contract (after the roll) first.
    pub futures: HashMap<String, Vec<FutureQuote>>,
    /// Earnings dates known per single name (the sim's, or `data/earnings.csv`).
    pub earnings: HashMap<String, Vec<NaiveDate>>,
}

impl SessionContext {
    /// Minutes from the snapshot to the session's close (`None` without a close).
    pub fn minutes_to_close(&self, at: NaiveDateTime) -> Option<i64> {
        self.close.map(|c| (c - at).num_minutes())
    }
}

impl DayState {
    pub fn new(as_of: NaiveDate, quote_time: NaiveDateTime) -> DayState {
        DayState {
            as_of,
            quote_time,
            underlyings: HashMap::new(),
            chains: HashMap::new(),
            open_trades: Vec::new(),
            shares: HashMap::new(),
            correlation_z: HashMap::new(),
            session: SessionContext::default(),
            scanned: Default::default(),
        }
    }

    /// The expiry of `underlying`'s `rows` nearest the target days within the window
    /// (`nearest_expiry`), remembered as scanned: a pruned store keeps its quotes.
    pub fn choose_expiry<'a>(
        &self,
        underlying: &str,
        rows: impl Iterator<Item = &'a ChainRow>,
        window: (i64, i64, i64),
    ) -> Option<NaiveDate> {
        let e = nearest_expiry(rows, self.as_of, window)?;
        self.scanned
            .borrow_mut()
            .insert((underlying.to_string(), e));
        Some(e)
    }

    /// The slices scanned since the last call, in order.
    pub fn take_scanned(&self) -> BTreeSet<(String, NaiveDate)> {
        std::mem::take(&mut *self.scanned.borrow_mut())
    }

    /// Open trades of a strategy on an underlying (a multi-leg trade counts once).
    pub fn open_count(&self, strategy: &str, underlying: &str) -> u32 {
        self.open_trades
            .iter()
            .filter(|t| t.strategy == strategy && t.touches(underlying))
            .count() as u32
    }

    /// Contracts a strategy is short of one right on an underlying.
    pub fn short_contracts(&self, strategy: &str, underlying: &str, right: OptionRight) -> i64 {
        self.open_trades
            .iter()
            .filter(|t| t.strategy == strategy)
            .flat_map(|t| &t.legs)
            .filter(|l| {
                l.quantity < 0
                    && l.instrument
                        .as_option()
                        .is_some_and(|o| o.underlying == underlying && o.right() == right)
            })
            .map(|l| -l.quantity)
            .sum()
    }

    /// The snapshot's slot time, for order ids.
    pub fn slot(&self) -> chrono::NaiveTime {
        self.quote_time.time()
    }
}

/// What a strategy proposes, and why it passed on the rest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub proposals: Vec<Proposal>,
    /// (underlying, reason) for each underlying looked at without a proposal.
    pub skips: Vec<(String, String)>,
}

/// A strategy's decision to close one of its open trades at the market.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitSignal {
    /// The order that opened the trade.
    pub order_ref: String,
    /// The exit rule (`hold_sessions`, `profit_take`, `stop`, ...), recorded in
    /// `risk_decisions.rule`.
    pub rule: &'static str,
    pub reason: String,
}

/// Check a (min, target, max) days-to-expiry window.
pub fn validate_dte(min: i64, target: i64, max: i64) -> Result<(), String> {
    if !(1..=1000).contains(&min) || min > max || !(min..=max).contains(&target) {
        return Err(format!(
            "min_dte = {min}, target_dte = {target}, max_dte = {max}: expected 1 ≤ min ≤ target ≤ max"
        ));
    }
    Ok(())
}

/// The expiry in `rows` nearest `target` calendar days after `as_of`, within [min, max].
pub fn nearest_expiry<'a>(
    rows: impl Iterator<Item = &'a ChainRow>,
    as_of: NaiveDate,
    (min, target, max): (i64, i64, i64),
) -> Option<NaiveDate> {
    rows.map(|r| r.expiry)
        .filter(|e| (min..=max).contains(&(*e - as_of).num_days()))
        .min_by_key(|e| ((*e - as_of).num_days() - target).abs())
}

/// For the strategies' tests: each case sets one bad number on a default config, and
/// `validate` must refuse it with a message starting with the key and value (`want`);
/// the default config itself is valid.
#[cfg(test)]
pub(crate) type BadConfigCase<C> = (fn(&mut C), &'static str);

#[cfg(test)]
pub(crate) fn assert_each_refused<C: Default>(
    cases: &[BadConfigCase<C>],
    validate: impl Fn(&C) -> Result<(), String>,
) {
    for (set, want) in cases {
        let mut c = C::default();
        set(&mut c);
        let e = validate(&c).unwrap_err();
        assert!(e.starts_with(want), "{e} / want {want}");
    }
    assert!(validate(&C::default()).is_ok());
}

/// When a strategy proposes: in the daily run (the pipeline at `schedule.daily`), or
/// in the intraday slots of `select_trades` (within its own entry window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    Daily,
    Intraday,
}

pub trait Strategy: Send + Sync {
    fn name(&self) -> &'static str;
    /// Daily by default.
    fn cadence(&self) -> Cadence {
        Cadence::Daily
    }
    fn propose(&self, day: &DayState) -> Outcome;
    /// The symbols it trades, as its file names them: (key, symbols), checked against
    /// the source's universe when the configuration loads.
    fn symbols(&self) -> Vec<(&'static str, Vec<String>)> {
        Vec::new()
    }
    /// Which of its open trades to close today, and why. Default: hold to expiry.
    fn exits(&self, _day: &DayState) -> Vec<ExitSignal> {
        Vec::new()
    }
    /// How its trades are margined. Default: Reg-T naked.
    fn margin_policy(&self) -> Policy {
        Policy::NAKED
    }
    /// What happens to shares its options deliver at expiry. Default: closed at the
    /// settlement price the same day (in effect cash-settled at intrinsic).
    fn on_assignment(&self) -> OnAssignment {
        OnAssignment::CloseShares
    }
    /// Its own risk profile (`[risk]` in its file), applied by the gate over the
    /// desk's. Default: none, the desk's limits only.
    fn risk_profile(&self) -> Option<&RiskProfile> {
        None
    }
}

/// Every strategy optdesk knows, with its file in `jobs/strategies/`.
pub const KNOWN: &[&str] = &[
    "call_premium",
    "dispersion",
    "cash_secured_put",
    "covered_call",
    "put_write",
    "buy_write",
    "iron_condor",
    "zscore_reversion",
];

/// A strategy as loaded: enabled or not (a disabled strategy proposes nothing, but its
/// open trades still follow its exits, margin and assignment rules).
pub struct Loaded {
    pub enabled: bool,
    pub strategy: Box<dyn Strategy>,
}

/// The strategies from `jobs/strategies/*.toml`, each validated (an error names the
/// file and the key; a file for an unknown strategy is refused with the known names),
/// and the files' text for the configuration hash.
pub struct Registry {
    pub strategies: Vec<Loaded>,
    pub text: String,
}

impl Registry {
    pub fn enabled(&self) -> impl Iterator<Item = &dyn Strategy> {
        self.strategies
            .iter()
            .filter(|l| l.enabled)
            .map(|l| l.strategy.as_ref())
    }
    pub fn get(&self, name: &str) -> Option<&dyn Strategy> {
        self.strategies
            .iter()
            .find(|l| l.strategy.name() == name)
            .map(|l| l.strategy.as_ref())
    }
    /// A strategy's margin policy; a strategy optdesk no longer knows is margined naked.
    pub fn margin_policy(&self, name: &str) -> Policy {
        self.get(name).map_or(Policy::NAKED, |s| s.margin_policy())
    }
    pub fn on_assignment(&self, name: &str) -> OnAssignment {
        self.get(name)
            .map_or(OnAssignment::CloseShares, |s| s.on_assignment())
    }
    /// A strategy's own risk profile, if it has one.
    pub fn risk_profile(&self, name: &str) -> Option<&RiskProfile> {
        self.get(name).and_then(|s| s.risk_profile())
    }
}

/// `jobs/strategies/<name>.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StrategyFile<P> {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    params: P,
    /// The strategy's risk profile, over its defaults (intraday strategies only).
    #[serde(default)]
    risk: Option<toml::Table>,
}

fn yes() -> bool {
    true
}

/// Load `jobs/strategies/<name>.toml` (defaults when absent) and validate its params
/// and its `[risk]` (laid over `default_risk`; refused for a strategy without one); an
/// error names the file and the key. Returns (enabled, params, risk, raw text).
fn load<P: DeserializeOwned + Default>(
    config: &Config,
    name: &str,
    validate: impl Fn(&P) -> Result<(), String>,
    default_risk: Option<RiskProfile>,
) -> Result<(bool, P, Option<RiskProfile>, String), ConfigError> {
    let path = config.dir.join("strategies").join(format!("{name}.toml"));
    let bad = |m: String| ConfigError::Invalid {
        file: path.display().to_string(),
        message: m,
    };
    let (enabled, params, risk, text) =
        match config.read_text(&format!("strategies/{name}.toml"))? {
            Some(text) => {
                let f: StrategyFile<P> = crate::config::parse(&path, &text)?;
                (f.enabled, f.params, f.risk, text)
            }
            None => (true, P::default(), None, String::new()),
        };
    validate(&params).map_err(|m| bad(format!("params.{m}")))?;
    let risk = match (default_risk, risk) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(bad(format!(
                "risk: {name} has no risk profile of its own (the desk's [risk] in select_trades.toml applies to it)"
            )))
        }
        (Some(d), None) => Some(d),
        (Some(d), Some(over)) => {
            let mut t = toml::Table::try_from(&d).map_err(|e| bad(format!("risk: {e}")))?;
            t.extend(over);
            Some(
                RiskProfile::deserialize(toml::Value::Table(t))
                    .map_err(|e| bad(format!("risk: {}", e.message())))?,
            )
        }
    };
    if let Some(r) = &risk {
        r.validate().map_err(|m| bad(format!("risk.{m}")))?;
    }
    Ok((enabled, params, risk, text))
}

/// Build the registry from `jobs/strategies/`.
pub fn registry(config: &Config) -> Result<Registry, ConfigError> {
    let dir = config.dir.join("strategies");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        names.sort();
        for n in names {
            let stem = n.trim_end_matches(".toml");
            if !KNOWN.contains(&stem) {
                return Err(ConfigError::Invalid {
                    file: dir.join(&n).display().to_string(),
                    message: format!(
                        "no strategy named '{stem}'; the strategies are: {}",
                        KNOWN.join(", ")
                    ),
                });
            }
        }
    }
    let mut strategies = Vec::new();
    let mut texts = Vec::new();
    // Load one file (validated) and box the strategy it configures.
    fn add<P: DeserializeOwned + Default, S: Strategy + 'static>(
        config: &Config,
        name: &str,
        validate: impl Fn(&P) -> Result<(), String>,
        make: impl Fn(P) -> S,
        strategies: &mut Vec<Loaded>,
        texts: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let (enabled, params, _, text) = load(config, name, validate, None)?;
        strategies.push(Loaded {
            enabled,
            strategy: Box::new(make(params)),
        });
        texts.push(text);
        Ok(())
    }
    // An intraday strategy: its params and its risk profile over `default_risk`.
    fn add_intraday<P: DeserializeOwned + Default, S: Strategy + 'static>(
        config: &Config,
        name: &str,
        validate: impl Fn(&P) -> Result<(), String>,
        default_risk: RiskProfile,
        make: impl Fn(P, RiskProfile) -> S,
        strategies: &mut Vec<Loaded>,
        texts: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        let (enabled, params, risk, text) = load(config, name, validate, Some(default_risk))?;
        let risk = risk.expect("a default profile was given");
        strategies.push(Loaded {
            enabled,
            strategy: Box::new(make(params, risk)),
        });
        texts.push(text);
        Ok(())
    }
    let (s, t) = (&mut strategies, &mut texts);
    add(
        config,
        "call_premium",
        call_premium::Config::validate,
        |config| call_premium::CallPremium { config },
        s,
        t,
    )?;
    add(
        config,
        "dispersion",
        dispersion::Config::validate,
        |config| dispersion::Dispersion { config },
        s,
        t,
    )?;
    add(
        config,
        "cash_secured_put",
        wheel::Config::validate,
        |config| wheel::CashSecuredPut { config },
        s,
        t,
    )?;
    add(
        config,
        "covered_call",
        wheel::Config::validate,
        |config| wheel::CoveredCall { config },
        s,
        t,
    )?;
    add_intraday(
        config,
        "put_write",
        put_write::Config::validate,
        RiskProfile::default(),
        |config, risk| put_write::PutWrite { config, risk },
        s,
        t,
    )?;
    add_intraday(
        config,
        "buy_write",
        buy_write::Config::validate,
        RiskProfile::default(),
        |config, risk| buy_write::BuyWrite { config, risk },
        s,
        t,
    )?;
    add_intraday(
        config,
        "iron_condor",
        iron_condor::Config::validate,
        iron_condor::default_risk(),
        |config, risk| iron_condor::IronCondor { config, risk },
        s,
        t,
    )?;
    add_intraday(
        config,
        "zscore_reversion",
        zscore_reversion::Config::validate,
        zscore_reversion::default_risk(),
        |config, risk| zscore_reversion::ZscoreReversion { config, risk },
        s,
        t,
    )?;
    Ok(Registry {
        strategies,
        text: texts.join("\n"),
    })
}

#[cfg(test)]
mod registry_tests {
    use super::*;

    fn config_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("strategies")).unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join("strategies").join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn a_risk_table_is_laid_over_the_strategy_s_own_defaults() {
        // One key set; the rest keep iron_condor's defaults ($500, not the bots' $50).
        let dir = config_with(&[("iron_condor.toml", "[risk]\ndaily_loss_cap = 100.0\n")]);
        let cfg = Config::load(dir.path(), true).unwrap();
        let reg = registry(&cfg).unwrap();
        let r = reg.risk_profile("iron_condor").unwrap();
        assert_eq!(r.daily_loss_cap, 100.0);
        assert_eq!(r.max_loss_per_trade, 500.0);
        assert_eq!(
            reg.risk_profile("zscore_reversion").unwrap().daily_loss_cap,
            500.0
        );
        assert_eq!(
            reg.risk_profile("put_write").unwrap().max_loss_per_trade,
            50.0
        );
        assert!(reg.risk_profile("call_premium").is_none());
        assert_eq!(reg.get("put_write").unwrap().cadence(), Cadence::Intraday);
        assert_eq!(reg.get("call_premium").unwrap().cadence(), Cadence::Daily);
    }

    #[test]
    fn bad_risk_tables_are_refused_naming_the_file_and_the_key() {
        for (file, text, want) in [
            (
                "put_write.toml",
                "[risk]\nentry_window = [\"13:30\", \"10:30\"]\n",
                "risk.entry_window",
            ),
            (
                "put_write.toml",
                "[risk]\nmax_loss = 5.0\n",
                "unknown field `max_loss`",
            ),
            (
                "zscore_reversion.toml",
                "[risk]\ndaily_loss_cap = -1.0\n",
                "risk.daily_loss_cap = -1",
            ),
            (
                "call_premium.toml",
                "[risk]\ndaily_loss_cap = 100.0\n",
                "call_premium has no risk profile of its own",
            ),
        ] {
            let dir = config_with(&[(file, text)]);
            let cfg = Config::load(dir.path(), true).unwrap();
            let e = registry(&cfg).err().unwrap().to_string();
            assert!(e.contains(file) && e.contains(want), "{e} / want {want}");
        }
    }
}
