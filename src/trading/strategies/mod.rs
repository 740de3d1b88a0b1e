//! Strategies: pure functions from the day's stored state to proposals
//! (`Strategy::propose(&DayState) -> Outcome`), each with its own configuration.
//! Every proposal records the numbers that justified it; every ticker a strategy
//! looked at and passed on gets a reason.

pub mod call_premium;
pub mod dispersion;
pub mod wheel;

use super::risk::Proposal;
use crate::model::OptionRight;
use chrono::NaiveDate;
use std::collections::HashMap;

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
}

/// One underlying on the day.
#[derive(Debug, Clone, PartialEq)]
pub struct UnderlyingDay {
    pub spot: f64,
    pub hv30: Option<f64>,
    pub rate: f64,
    pub div_yield: f64,
}

/// Everything a strategy may look at; built from the store by the select_trades job.
#[derive(Debug, Clone, Default)]
pub struct DayState {
    pub as_of: Option<NaiveDate>,
    pub underlyings: HashMap<String, UnderlyingDay>,
    pub chains: HashMap<String, Vec<ChainRow>>,
    /// Open option positions per (strategy, underlying).
    pub open: HashMap<(String, String), u32>,
    /// Shares held per underlying (long), across strategies.
    pub shares: HashMap<String, i64>,
    /// Per index: (implied correlation Z-score, or why there is none) from `correlation`.
    pub correlation_z: HashMap<String, Result<f64, String>>,
}

impl DayState {
    pub fn open_count(&self, strategy: &str, underlying: &str) -> u32 {
        self.open
            .get(&(strategy.to_string(), underlying.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

/// What a strategy proposes, and why it passed on the rest.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub proposals: Vec<Proposal>,
    /// (underlying, reason) for each underlying looked at without a proposal.
    pub skips: Vec<(String, String)>,
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

pub trait Strategy {
    fn name(&self) -> &'static str;
    fn propose(&self, day: &DayState) -> Outcome;
}
