//! Typed reads and writes: the one place that turns the store's rows into domain types
//! (positions, open trades, the day's state, the risk state, orders and fills) and
//! back, used by every job, the brokers and the CLI. Rows that do not make a valid
//! instrument or order are errors naming the table and the row, never a guess.

pub mod day;
pub mod futures;
pub mod orders;
pub mod positions;
pub mod session;

use crate::model::identifiers::OccSymbol;
use crate::model::instrument::{listed_terms, Instrument, OptionContract};
use crate::model::{ExerciseStyle, ModelError, Settlement};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("store: {0}")]
    Db(#[from] duckdb::Error),
    #[error("{table}: {row}: {source}")]
    BadRow {
        table: &'static str,
        row: String,
        source: ModelError,
    },
    #[error("{0}")]
    Transition(#[from] crate::trading::IllegalTransition),
}

/// The instrument columns every trading table shares, in this order.
pub const INSTRUMENT_COLS: &str = "kind, instrument, underlying, multiplier, style, settlement";

/// The instrument of a row read with [`INSTRUMENT_COLS`] starting at column `at`.
pub fn read_instrument(
    table: &'static str,
    r: &duckdb::Row,
    at: usize,
) -> Result<Result<Instrument, RepoError>, duckdb::Error> {
    let kind: String = r.get(at)?;
    let key: String = r.get(at + 1)?;
    let underlying: String = r.get(at + 2)?;
    let multiplier: i64 = r.get(at + 3)?;
    let style: Option<String> = r.get(at + 4)?;
    let settlement: Option<String> = r.get(at + 5)?;
    Ok(instrument(
        &kind,
        &key,
        &underlying,
        multiplier,
        style.as_deref(),
        settlement.as_deref(),
    )
    .map_err(|source| RepoError::BadRow {
        table,
        row: key,
        source,
    }))
}

/// Build an instrument from its stored columns: the OCC symbol is authoritative for an
/// option's expiry, right and strike; style and settlement default to the root's
/// listed terms for rows written before they were stored.
pub fn instrument(
    kind: &str,
    key: &str,
    underlying: &str,
    multiplier: i64,
    style: Option<&str>,
    settlement: Option<&str>,
) -> Result<Instrument, ModelError> {
    match kind {
        "shares" => Ok(Instrument::Equity {
            symbol: key.to_string(),
        }),
        "option" => {
            let occ = OccSymbol::parse(key)?;
            let (s, t) = listed_terms(&occ.root);
            let style = style
                .map(ExerciseStyle::from_code)
                .transpose()?
                .unwrap_or(s);
            let settlement = settlement
                .map(Settlement::from_code)
                .transpose()?
                .unwrap_or(t);
            Ok(Instrument::Option(OptionContract::new_checked(
                underlying, occ, style, settlement, multiplier,
            )?))
        }
        "future" => {
            let c = crate::trading::futures::parse(key)?;
            if c.multiplier != multiplier || c.root != underlying {
                return Err(ModelError::BadInstrument(format!(
                    "{key}: stored as {underlying} × {multiplier}, the product is {} × {}",
                    c.root, c.multiplier
                )));
            }
            Ok(Instrument::Future(c))
        }
        other => Err(ModelError::BadField {
            field: "kind",
            value: other.to_string(),
        }),
    }
}

/// The columns of an instrument as stored: (kind, expiry, strike, put_call, style,
/// settlement).
pub type InstrumentColumns = (
    &'static str,
    Option<chrono::NaiveDate>,
    Option<f64>,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
);

pub fn instrument_columns(i: &Instrument) -> InstrumentColumns {
    match i {
        Instrument::Option(o) => (
            "option",
            Some(o.expiry()),
            Some(o.strike().to_f64()),
            Some(o.right().code()),
            Some(o.style.code()),
            Some(o.settlement.code()),
        ),
        Instrument::Future(f) => ("future", Some(f.expiry), None, None, None, None),
        Instrument::Equity { .. } => ("shares", None, None, None, None, None),
    }
}
