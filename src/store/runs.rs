//! The outcome of a job run as `job_runs` records it: what the runner returns and what
//! its observers (printing, alerts, a backtest's progress) are told.

use chrono::NaiveDate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Failed,
    Skipped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

/// The outcome of one job run, as recorded in `job_runs`.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub run_id: i64,
    pub job: &'static str,
    pub as_of: NaiveDate,
    pub status: Status,
    pub rows_written: u64,
    pub message: String,
    pub seconds: f64,
    pub dry_run: bool,
}
