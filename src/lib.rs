//! optdesk — an options paper-trading desk that runs itself.
//!
//! Discrete, idempotent batch jobs (see [`jobs`]) read and write one DuckDB file
//! ([`store`]) on an NYSE-calendar schedule ([`calendar`], [`clock`], [`schedule`]).
//! Market data comes from a [`sources::MarketData`] source; the embedded default is the
//! seeded simulated market [`sources::sim`].
//!
//! Dependencies run one way, lowest first: `model`, `text`, `csvfile` → `calendar`,
//! `clock`, `config`, `refdata` → `pricing`, `analytics` → `trading` → `store` →
//! `sources` → `jobs` → `schedule`, `remote`, `report` → `calc`, `cli`. A module imports its own
//! layer or lower ones; `tests/layering.rs` holds the table and fails on an import
//! that goes up.

pub mod analytics;
pub mod backtest;
pub mod broker;
pub mod calc;
pub mod calendar;
pub mod cli;
pub mod clock;
pub mod config;
pub mod csvfile;
pub mod failpoint;
pub mod ibkr;
pub mod jobs;
pub mod model;
pub mod net;
pub mod pricing;
pub mod refdata;
pub mod remote;
pub mod report;
pub mod schedule;
pub mod selftest;
pub mod serve;
pub mod sources;
pub mod store;
pub mod testkit;
pub mod text;
pub mod trading;

/// The program version recorded with every job run.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
