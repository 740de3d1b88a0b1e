//! Market-data sources behind one trait. The domain never sees a source's transport.

pub mod sim;

use crate::model::{DailyBar, OptionQuote, Price};
use chrono::{NaiveDate, NaiveDateTime};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{source_name} has no data for symbol {symbol}")]
    UnknownSymbol {
        source_name: &'static str,
        symbol: String,
    },
    #[error("{source_name} has no data for {date}: {reason}")]
    NoData {
        source_name: &'static str,
        date: NaiveDate,
        reason: String,
    },
}

/// One point of ATM implied-vol history: (date, symbol, 30-day ATM IV).
pub type IvPoint = (NaiveDate, String, f64);

/// The underlying at the moment of a chain snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct UnderlyingQuote {
    pub symbol: String,
    pub price: Price,
    /// Risk-free rate, continuously compounded.
    pub rate: f64,
    /// Dividend yield, continuously compounded.
    pub div_yield: f64,
}

/// Everything a source gives for one session at one time of day.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub as_of: NaiveDate,
    /// New York local time of the snapshot.
    pub quote_time: NaiveDateTime,
    pub underlyings: Vec<UnderlyingQuote>,
    pub quotes: Vec<OptionQuote>,
}

pub trait MarketData: Send + Sync {
    fn name(&self) -> &'static str;
    /// The symbols fetched when a job does not name its own.
    fn default_symbols(&self) -> Vec<String>;
    /// Underlying prices and option chains for `symbols` at `quote_time` (New York) on
    /// session `as_of`, expirations up to `max_expiry_days` out.
    fn snapshot(
        &self,
        quote_time: NaiveDateTime,
        symbols: &[String],
        max_expiry_days: u32,
    ) -> Result<Snapshot, SourceError>;
    /// Completed daily bars of `symbols` on `dates` (sessions). Dates a source has no
    /// bar for are absent from the result, never invented.
    fn daily_bars(
        &self,
        symbols: &[String],
        dates: &[NaiveDate],
    ) -> Result<Vec<DailyBar>, SourceError>;
    /// 30-day ATM implied-vol history, `None` when the source cannot give it.
    fn atm_iv_history(
        &self,
        symbols: &[String],
        dates: &[NaiveDate],
    ) -> Result<Option<Vec<IvPoint>>, SourceError>;
}

/// The source `jobs/desk.toml` names.
pub fn from_config(config: &crate::config::Config) -> Box<dyn MarketData> {
    match config.desk.desk.source {
        crate::config::SourceKind::Sim => Box::new(sim::Sim::new(config.desk.sim.seed)),
    }
}
