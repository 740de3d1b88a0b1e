//! The `ibkr` source (being written).

use crate::config::IbkrConfig;
use crate::model::DailyBar;
use crate::sources::{MarketData, RiskFreeRate, Snapshot, SourceError};
use chrono::{NaiveDate, NaiveDateTime};

pub struct IbkrSource {
    cfg: IbkrConfig,
    #[allow(dead_code)]
    rate: RiskFreeRate,
}

impl IbkrSource {
    /// Connects on first use.
    pub fn new(cfg: &IbkrConfig, rate: RiskFreeRate) -> Result<IbkrSource, SourceError> {
        Ok(IbkrSource {
            cfg: cfg.clone(),
            rate,
        })
    }
}

impl MarketData for IbkrSource {
    fn name(&self) -> &'static str {
        "ibkr"
    }
    fn default_symbols(&self) -> Vec<String> {
        self.cfg.symbols.clone()
    }
    fn snapshot(
        &self,
        _quote_time: NaiveDateTime,
        _symbols: &[String],
        _max_expiry_days: u32,
    ) -> Result<Snapshot, SourceError> {
        Err(SourceError::Request {
            reason: "not yet".into(),
        })
    }
    fn daily_bars(
        &self,
        _symbols: &[String],
        _dates: &[NaiveDate],
    ) -> Result<Vec<DailyBar>, SourceError> {
        Ok(Vec::new())
    }
}

/// For `optdesk ib check`: a quote of `symbol` and of its nearest ATM option.
pub fn check_quotes(_s: &super::Session, _symbol: &str) -> Result<Vec<String>, super::IbError> {
    Ok(Vec::new())
}
