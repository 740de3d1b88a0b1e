//! Cross-sectional and portfolio analytics.

pub mod correlation;
pub mod performance;
